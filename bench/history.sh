#!/usr/bin/env bash
# A bot's life over time, measured side by side with the baselines, in one
# run, each contender on its own loop-mounted XFS so statvfs measures only
# it:
#
# 1. Adoption: N full copies of a Debian root (what `rsync -axH` onto N
#    volumes leaves), each with the same "installed package" (SHARED MiB of
#    identical files) and OWN MiB of its own. Bytes before; bytes after
#    `botyard bot adopt` of every copy (copies then deleted); bytes after
#    an `rmlint` + FIDEDUPERANGE pass over the same copies; and bytes of N
#    botyard-native bots that hold the same content (the target: adoption
#    within 1.05× of native).
# 2. Live commit: a mounted bot wrote the same package another bot had
#    committed, while a writer keeps rewriting a file in it: bytes given
#    back and the time `bot commit --live` took.
#
#   bash bench/history.sh [N] [SHARED] [OWN]     (default 12 20 5)
#
# Results go to bench/results/history.md. The fleet rebase is
# bench/rebase.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
N=${1:-12}
SHARED=${2:-20}
OWN=${3:-5}
W=$PWD/bench/cache/history
trap 'loop_cleanup; rm -f "$W"/*.img' EXIT
loop_cleanup; rm -rf "$W"; mkdir -p "$W/pkg"
# The "package": SHARED MiB of files every bot installs alike.
for i in $(seq 0 $((SHARED - 1))); do head -c 1048576 /dev/urandom > "$W/pkg/lib$i.so"; done

own() { # DIR SEED: OWN MiB of this bot's own
  mkdir -p "$1/root/own"; head -c $((OWN * 1048576)) /dev/urandom > "$1/root/own/data-$2"
}
make_copies() { # FS: N rsync copies with the package and their own files
  for i in $(seq "$N"); do
    rsync -aH "$ROOTFS/" "$1/copy$i/"
    mkdir -p "$1/copy$i/usr/lib/pkg"; cp "$W"/pkg/* "$1/copy$i/usr/lib/pkg/"
    own "$1/copy$i" "$i"
  done
}

# Adoption.
A=$(xfs_new adopt)
export BOTYARD_HOME=$A/store
"$B" init -q; "$B" image import -q deb:1 --dir "$ROOTFS"
make_copies "$A"
copies_bytes=$(fs_used "$A")
t0=$(date +%s.%N)
for i in $(seq "$N"); do "$B" bot adopt -q "a$i" --from "$A/copy$i" --image deb:1; done
t1=$(date +%s.%N)
for i in $(seq "$N"); do rm -rf "$A/copy$i"; done
adopted_bytes=$(fs_used "$A")
adopt_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')

# The same copies, deduplicated in place by rmlint + FIDEDUPERANGE.
R=$(xfs_new rmlint)
make_copies "$R"
t0=$(date +%s.%N)
(cd "$R" && rmlint -T df -g -o sh:rmlint.sh -c sh:handler=clone copy* >/dev/null 2>&1 && sh ./rmlint.sh -d -q >/dev/null 2>&1; rm -f rmlint.sh rmlint.json)
t1=$(date +%s.%N)
rmlint_bytes=$(fs_used "$R")
rmlint_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')

# Native bots of the same content.
NV=$(xfs_new native)
export BOTYARD_HOME=$NV/store
"$B" init -q; "$B" image import -q deb:1 --dir "$ROOTFS"
for i in $(seq "$N"); do
  "$B" bot create -q "n$i" --image deb:1
  "$B" bot mount -q "n$i"
  r=$NV/store/bots/n$i/root
  mkdir -p "$r/usr/lib/pkg"; cp "$W"/pkg/* "$r/usr/lib/pkg/"; own "$r" "$i"
  "$B" bot unmount -q "n$i"; "$B" bot commit -q "n$i"
done
native_bytes=$(fs_used "$NV")

# Live commit: bot l1 committed the package; mounted bot l2 wrote it too,
# and a writer keeps rewriting a file in l2 meanwhile.
L=$(xfs_new live)
export BOTYARD_HOME=$L/store
"$B" init -q; "$B" image import -q deb:1 --dir "$ROOTFS"
for b in l1 l2; do "$B" bot create -q "$b" --image deb:1; "$B" bot mount -q "$b"; done
mkdir -p "$L/store/bots/l1/root/usr/lib/pkg"; cp "$W"/pkg/* "$L/store/bots/l1/root/usr/lib/pkg/"
"$B" bot unmount -q l1; "$B" bot commit -q l1
mkdir -p "$L/store/bots/l2/root/usr/lib/pkg"; cp "$W"/pkg/* "$L/store/bots/l2/root/usr/lib/pkg/"
( while :; do head -c 4194304 /dev/urandom > "$L/store/bots/l2/root/root/busy"; done ) & WPID=$!
live0=$(fs_used "$L")
t0=$(date +%s.%N)
out=$("$B" bot commit l2 --live --json)
t1=$(date +%s.%N)
kill "$WPID"; wait "$WPID" 2>/dev/null || true
live1=$(fs_used "$L")
live_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
shared=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["shared_bytes"])')
"$B" bot unmount -q l2

mib() { awk -v b="$1" -v n="${2:-1}" 'BEGIN {printf "%.1f", b / 1048576 / n}'; }
{
  echo "## A bot's life: adoption and live commit"
  echo
  echo "$N copies of a Debian bookworm minbase ($(du -sm "$ROOTFS" | cut -f1) MiB), each with the same $SHARED MiB package and $OWN MiB of its own; XFS with reflink; $(nproc) cores."
  echo
  echo "| contender | MiB on disk | MiB per bot | time | vs botyard-native |"
  echo "| --- | --- | --- | --- | --- |"
  echo "| $N rsync copies | $(mib "$copies_bytes") | $(mib "$copies_bytes" "$N") | - | $(awk -v a="$copies_bytes" -v b="$native_bytes" 'BEGIN {printf "%.2f×", a / b}') |"
  echo "| the copies after rmlint + FIDEDUPERANGE | $(mib "$rmlint_bytes") | $(mib "$rmlint_bytes" "$N") | ${rmlint_s} s | $(awk -v a="$rmlint_bytes" -v b="$native_bytes" 'BEGIN {printf "%.2f×", a / b}') |"
  echo "| botyard bot adopt of each copy (copies then removed) | $(mib "$adopted_bytes") | $(mib "$adopted_bytes" "$N") | ${adopt_s} s | $(awk -v a="$adopted_bytes" -v b="$native_bytes" 'BEGIN {printf "%.2f×", a / b}') |"
  echo "| botyard-native bots of the same content | $(mib "$native_bytes") | $(mib "$native_bytes" "$N") | - | 1.00× |"
  echo
  echo "Live commit of a mounted bot that wrote the $SHARED MiB package another bot had committed, while a writer rewrote a 4 MiB file in it: $(mib "$shared") MiB shared with the store in ${live_s} s; the filesystem's use went from $(mib "$live0") to $(mib "$live1") MiB."
} | tee bench/results/history.md
