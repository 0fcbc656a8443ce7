#!/usr/bin/env bash
# I/O through a bot, side by side with a plain directory and a plain overlay
# of the same Debian base, in one run, cold and warm cache.
#
#   bash bench/io.sh [RUNS]     (median and spread of RUNS warm runs, default 5)
#
# Operations: `find -ls`, `cat` of every file, `tar -c`, `dpkg -V` in a
# chroot, and `dpkg -i` (re)installing the base's security updates (real
# .debs from the mirror apt uses) in a chroot. Cold runs drop the page cache first (echo 3 > drop_caches).
# Results go to bench/results/io.md, as seconds and as ratios to the plain
# overlay.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUNS=${1:-5}
W=$PWD/bench/cache/io
cleanup() { umount "$W/overlay" 2>/dev/null || true; BOTYARD_HOME=$W/store "$B" bot unmount -q io 2>/dev/null || true; }
trap cleanup EXIT
cleanup; rm -rf "$W"; mkdir -p "$W"
cp -a "$ROOTFS" "$W/plain"
mkdir -p "$W/upper" "$W/work" "$W/overlay"
mount -t overlay overlay -o "lowerdir=$W/plain,upperdir=$W/upper,workdir=$W/work" "$W/overlay"
export BOTYARD_HOME=$W/store
"$B" init -q; "$B" image import -q debian:bookworm --dir "$ROOTFS"
"$B" bot create -q io --image debian:bookworm; "$B" bot mount -q io --dev
BOT=$W/store/bots/io/root
DEBS=$W/debs; mkdir -p "$DEBS/partial"
apt-get -q -o "Dir::State::status=$ROOTFS/var/lib/dpkg/status" -o "Dir::Cache::archives=$DEBS" --download-only -y upgrade >/dev/null

op() { # name root
  case $1 in
    find) find "$2" -ls >/dev/null ;;
    cat) find "$2" -type f -print0 | xargs -0 cat >/dev/null ;;
    tar) tar -C "$2" -cf - . | cat >/dev/null ;;
    dpkg) chroot "$2" dpkg -V >/dev/null 2>&1 || true ;;
    install) cp "$DEBS"/*.deb "$2/tmp/"; chroot "$2" sh -c 'dpkg -i /tmp/*.deb >/dev/null 2>&1; rm -f /tmp/*.deb' ;;
  esac
}
secs() { local s; s=$(date +%s.%N); op "$1" "$2"; awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN {printf "%.3f", b-a}'; }
declare -A T S
ROOTS="plain:$W/plain overlay:$W/overlay bot:$BOT"
for o in find cat tar dpkg install; do
  for r in $ROOTS; do
    n=${r%%:*}; root=${r#*:}
    sync; echo 3 > /proc/sys/vm/drop_caches
    T[$o,$n,cold]=$(secs "$o" "$root")
    op "$o" "$root"
  done
  # Warm: the three take turns, one run each per round, so the machine's
  # drift shifts them alike; the median and the spread (min-max) are shown.
  for _ in $(seq "$RUNS"); do
    for r in $ROOTS; do S[$o,${r%%:*}]+="$(secs "$o" "${r#*:}") "; done
  done
  for r in $ROOTS; do
    n=${r%%:*}
    T[$o,$n,warm]=$(tr ' ' '\n' <<<"${S[$o,$n]}" | grep . | median)
    T[$o,$n,spread]=$(tr ' ' '\n' <<<"${S[$o,$n]}" | grep . | sort -n | sed -n '1p;$p' | paste -sd-)
  done
done
r() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
{
  echo "## I/O through a bot"
  echo
  echo "Debian bookworm minbase, $(nproc) cores, $(uname -r); warm = median of $RUNS runs taken in turns (min-max below it); ratios are to the plain overlay."
  echo
  echo "| operation | plain dir | plain overlay | bot | bot / overlay |"
  echo "| --- | --- | --- | --- | --- |"
  for o in find cat tar dpkg install; do
    for c in cold warm; do
      label="\`$o\` ($c)"; [ "$o" = find ] && label="\`find -ls\` ($c)"; [ "$o" = dpkg ] && label="\`dpkg -V\` ($c)"; [ "$o" = tar ] && label="\`tar -c\` ($c)"; [ "$o" = cat ] && label="\`cat\` every file ($c)"; [ "$o" = install ] && label="\`dpkg -i\` security updates ($c)"
      if [ "$c" = warm ]; then
        echo "| $label | ${T[$o,plain,$c]} s (${T[$o,plain,spread]}) | ${T[$o,overlay,$c]} s (${T[$o,overlay,spread]}) | ${T[$o,bot,$c]} s (${T[$o,bot,spread]}) | $(r "${T[$o,bot,$c]}" "${T[$o,overlay,$c]}")× |"
      else
        echo "| $label | ${T[$o,plain,$c]} s | ${T[$o,overlay,$c]} s | ${T[$o,bot,$c]} s | $(r "${T[$o,bot,$c]}" "${T[$o,overlay,$c]}")× |"
      fi
    done
  done
} | tee bench/results/io.md
