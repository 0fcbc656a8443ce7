#!/usr/bin/env bash
# A fleet moved to a new base image, side by side with doing it by hand, in
# one run, each on its own loop-mounted XFS:
#
#   the fleet: N bots of a Debian bookworm minbase (the old image), each
#   with the same real packages installed by dpkg (PKGS) and OWN MiB of
#   its own files; the new image: the same base with the security updates
#   apt would apply today, installed by dpkg in a copy.
#   botyard: `bot rebase --all --from OLD --image NEW`, then `gc
#   --keep-commits 1` (the old states let go).
#   by hand: for each bot, a fresh bot of the new image, the same packages
#   installed again with dpkg, the bot's own files copied over, committed.
#
# Reported: seconds per bot, and the bytes the fleet holds before and after
# against the physical minimum, measured from the rebased bots' own roots by
# bench/minimum.py (one copy of each distinct file content, as a file of its
# own in whole 4 KiB blocks; the bytes alone are shown too), and where the
# store's bytes go.
#
#   bash bench/rebase.sh [N] [OWN]     (default 12 5; PKGS="jq git curl")
#
# Results go to bench/results/rebase.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
N=${1:-12}
OWN=${2:-5}
PKGS=${PKGS:-jq git curl}
W=$PWD/bench/cache/rebase
trap 'loop_cleanup; rm -f "$W"/*.img' EXIT
loop_cleanup; rm -rf "$W"; mkdir -p "$W"
debs() { # DIR ARGS...
  mkdir -p "$1/partial"
  apt-get -q -o "Dir::State::status=$ROOTFS/var/lib/dpkg/status" -o "Dir::Cache::archives=$1" \
    --download-only -y --no-install-recommends "${@:2}" >/dev/null
}
debs "$W/updates" upgrade
# shellcheck disable=SC2086
debs "$W/pkgs" install $PKGS
INSTALL='dpkg -i /tmp/debs/*.deb >/dev/null 2>&1 || dpkg -i /tmp/debs/*.deb >/dev/null; dpkg --configure -a; rm -rf /tmp/debs'
chroot_install() { # ROOT DEBS
  mkdir -p "$1/tmp/debs"; cp "$2"/*.deb "$1/tmp/debs/"; chroot "$1" /bin/sh -c "$INSTALL"
}
# The new base, and what the packages write (captured once, as fleet.sh does).
cp -a "$ROOTFS" "$W/new-root"; chroot_install "$W/new-root" "$W/updates"
cp -a "$ROOTFS" "$W/ref"; touch "$W/mark"; sleep 1; chroot_install "$W/ref" "$W/pkgs"
(cd "$W/ref" && find . -cnewer "$W/mark" ! -type d ! -type c ! -path './tmp/*' -print0 | tar --null -T - -cf "$W/delta.tar")
delta_bytes=$(tar -tvf "$W/delta.tar" | awk '{s += $3} END {print s}')
rm -rf "$W/ref"
mkdir -p "$W/own"
for i in $(seq "$N"); do head -c $((OWN * 1048576)) /dev/urandom > "$W/own/own-$i"; done

fleet() { # FS: the old fleet in the store on FS
  export BOTYARD_HOME=$1/store
  "$B" init -q
  "$B" image import -q deb:old --dir "$ROOTFS"
  "$B" image import -q deb:new --dir "$W/new-root"
  for i in $(seq "$N"); do
    "$B" bot create -q "b$i" --image deb:old
    "$B" bot mount -q "b$i"
    r=$1/store/bots/b$i/root
    tar -xf "$W/delta.tar" -C "$r"; mkdir -p "$r/root/own"; cp "$W/own/own-$i" "$r/root/own/"
    "$B" bot unmount -q "b$i"; "$B" bot commit -q "b$i"
  done
}

# botyard.
A=$(xfs_new botyard)
fleet "$A"
"$B" gc -q >/dev/null
before=$(fs_used "$A")
t0=$(date +%s.%N)
"$B" bot rebase -q --all --from deb:old --image deb:new
t1=$(date +%s.%N)
after=$(fs_used "$A")
"$B" image rm -q deb:old
"$B" gc -q --keep-commits 1 >/dev/null
after_gc=$(fs_used "$A")
split=$(split_of "$A/store")
"$B" bot mount -q b1 --dev
audit=$(chroot "$A/store/bots/b1/root" dpkg --audit | wc -l)
"$B" bot unmount -q b1
roots=()
for i in $(seq "$N"); do "$B" bot mount -q "b$i"; roots+=("$A/store/bots/b$i/root"); done
min_json=$(python3 bench/minimum.py "${roots[@]}")
for i in $(seq "$N"); do "$B" bot unmount -q "b$i"; done
rebase_s=$(awk -v a="$t0" -v b="$t1" -v n="$N" 'BEGIN {printf "%.2f", (b - a) / n}')

# By hand.
H=$(xfs_new byhand)
fleet "$H"
t0=$(date +%s.%N)
for i in $(seq "$N"); do
  "$B" bot create -q "h$i" --image deb:new
  "$B" bot mount -q "h$i" --dev
  r=$H/store/bots/h$i/root
  chroot_install "$r" "$W/pkgs"
  mkdir -p "$r/root/own"; cp "$H/store/bots/b$i/root/root/own/own-$i" "$r/root/own/" 2>/dev/null || cp "$W/own/own-$i" "$r/root/own/"
  "$B" bot unmount -q "h$i"; "$B" bot commit -q "h$i"
done
t1=$(date +%s.%N)
hand_s=$(awk -v a="$t0" -v b="$t1" -v n="$N" 'BEGIN {printf "%.2f", (b - a) / n}')

minimum=$(echo "$min_json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["blocks"])')
apparent=$(echo "$min_json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["apparent"])')
read -r s_objects s_trees s_layers _ <<<"$split"
s_rest=$(( after_gc - s_objects - s_trees - s_layers ))
mib() { awk -v b="$1" -v n="${2:-1}" 'BEGIN {printf "%.1f", b / 1048576 / n}'; }
{
  echo "## Fleet rebase"
  echo
  echo "$N bots of a Debian bookworm minbase, each with $PKGS installed by dpkg ($(mib "$delta_bytes") MiB written) and $OWN MiB of its own; the new image adds $(ls "$W"/updates/*.deb | wc -l) security updates; XFS; $(nproc) cores."
  echo
  echo "| what | seconds per bot | vs botyard |"
  echo "| --- | --- | --- |"
  echo "| botyard bot rebase --all | $rebase_s | 1.0× |"
  echo "| by hand: a fresh bot of the new image, dpkg -i of the same packages, own files copied | $hand_s | $(awk -v a="$hand_s" -v b="$rebase_s" 'BEGIN {printf "%.1f×", a / b}') slower |"
  echo
  echo "| the fleet's store | MiB | vs the physical minimum |"
  echo "| --- | --- | --- |"
  echo "| before (old image, old fleet, new image imported) | $(mib "$before") | $(awk -v a="$before" -v b="$minimum" 'BEGIN {printf "%.2f×", a / b}') |"
  echo "| after the rebase (the old states still in the history) | $(mib "$after") | $(awk -v a="$after" -v b="$minimum" 'BEGIN {printf "%.2f×", a / b}') |"
  echo "| after image rm of the old image and gc --keep-commits 1 | $(mib "$after_gc") | $(awk -v a="$after_gc" -v b="$minimum" 'BEGIN {printf "%.2f×", a / b}') |"
  echo "| physical minimum: one copy of each distinct file content, as files in 4 KiB blocks | $(mib "$minimum") | 1.00× |"
  echo "| the same contents' bytes alone | $(mib "$apparent") | $(awk -v a="$apparent" -v b="$minimum" 'BEGIN {printf "%.2f×", a / b}') |"
  echo
  echo "Where the store's bytes go after gc: objects $(mib "$s_objects") MiB, trees $(mib "$s_trees") MiB, layers $(mib "$s_layers") MiB, the rest (refs, bot records, caches, filesystem metadata) $(mib "$s_rest") MiB."
  echo
  echo "\`dpkg --audit\` in a rebased bot: $audit lines."
} | tee bench/results/rebase.md
