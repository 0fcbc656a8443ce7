#!/usr/bin/env bash
# One copy in memory: N bots of one image each read the same installed
# packages (every file under /usr of a Debian minbase with python3, gcc,
# g++, make, git and curl installed by dpkg), per strategy, in one run.
# Reported: how much the page cache grew, against reading one plain copy
# once.
#
#   bash bench/pagecache.sh [N]     (default 12)
#
# Strategies, each on its own loop-mounted filesystem (loop devices in
# direct-I/O mode, so the backing file adds no second cached copy):
#   one copy         a plain directory, read once (the reference)
#   full copies      N `cp -a` copies on XFS (rsync's result)
#   reflink copies   N `cp --reflink=always` copies on XFS (the dedupe
#                    practice's result: shared blocks, separate files)
#   btrfs snapshots  N snapshots of one subvolume
#   botyard copy     N bots of the copy driver (reflinked) on XFS
#   botyard overlay  N bots of the overlay driver on XFS, mounted
# Each starts from dropped caches. Results go to bench/results/pagecache.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
N=${1:-12}
W=$PWD/bench/cache/pagecache
unmount_bots() {
  for d in "$W"/*/store; do
    [ -d "$d/bots" ] || continue
    for b in "$d"/bots/*/; do BOTYARD_HOME=$d "$B" bot unmount -q "$(basename "$b")" 2>/dev/null || true; done
  done
}
cleanup() { unmount_bots; loop_cleanup; for l in $(losetup -j "$W/xfs.img" -O NAME -n 2>/dev/null; losetup -j "$W/btrfs.img" -O NAME -n 2>/dev/null); do losetup -d "$l" 2>/dev/null || true; done; }
trap 'cleanup; rm -f "$W"/*.img' EXIT
cleanup; rm -rf "$W"; mkdir -p "$W"

newfs() { # KIND -> mount point, on a direct-I/O loop device
  local img=$W/$1.img mnt=$W/$1 dev
  truncate -s 40G "$img"
  dev=$(losetup -f --show --direct-io=on "$img")
  if [ "$1" = btrfs ]; then mkfs.btrfs -q "$dev" >/dev/null; else mkfs.xfs -q -m reflink=1 "$dev" >/dev/null; fi
  mkdir -p "$mnt"; mount "$dev" "$mnt"; echo "$mnt"
}
XFS=$(newfs xfs); BTRFS=$(newfs btrfs)

# The root: the packages installed by the real dpkg in a chroot.
DEBS=$W/debs; mkdir -p "$DEBS/partial"
apt-get -q -o "Dir::State::status=$ROOTFS/var/lib/dpkg/status" -o "Dir::Cache::archives=$DEBS" \
  --download-only -y --no-install-recommends install python3 gcc g++ make git curl >/dev/null
ROOT=$XFS/one; cp -a "$ROOTFS" "$ROOT"; mkdir -p "$ROOT/tmp/debs"; cp "$DEBS"/*.deb "$ROOT/tmp/debs/"
chroot "$ROOT" sh -c "$DPKG_INSTALL"
rm -rf "$ROOT/tmp/debs"
read_bytes=$(find "$ROOT/usr" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
read_files=$(find "$ROOT/usr" -type f | wc -l)

cached() { awk '/^(Cached|Buffers):/ {s += $2} END {printf "%.0f\n", s * 1024}' /proc/meminfo; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# Page-cache growth, in bytes, while every root given reads all of /usr.
measure() { # ROOT...
  local a b r
  drop; a=$(cached)
  for r in "$@"; do find "$r/usr" -type f -print0 | xargs -0 cat > /dev/null; done
  b=$(cached); echo $((b - a))
}
results=()
add() { results+=("$1|$2"); }

add "one copy, read once (reference)" "$(measure "$ROOT")"

roots=(); for i in $(seq "$N"); do cp -a "$ROOT" "$XFS/full-$i"; roots+=("$XFS/full-$i"); done
add "full copies (\`cp -a\`, rsync's result), XFS" "$(measure "${roots[@]}")"
rm -rf "${roots[@]}"

roots=(); for i in $(seq "$N"); do cp -a --reflink=always "$ROOT" "$XFS/reflink-$i"; roots+=("$XFS/reflink-$i"); done
add "reflink copies (the dedupe practice's result), XFS" "$(measure "${roots[@]}")"
rm -rf "${roots[@]}"

btrfs subvolume create "$BTRFS/base" >/dev/null; cp -a "$ROOT/." "$BTRFS/base/"
roots=(); for i in $(seq "$N"); do btrfs subvolume snapshot "$BTRFS/base" "$BTRFS/snap-$i" >/dev/null; roots+=("$BTRFS/snap-$i"); done
add "btrfs snapshots" "$(measure "${roots[@]}")"

for driver in copy overlay; do
  export BOTYARD_HOME=$XFS/$driver/store
  "$B" init -q; "$B" image import -q pkgs:1 --dir "$ROOT"
  roots=()
  for i in $(seq "$N"); do
    "$B" bot create -q "b$i" --image pkgs:1 --driver "$driver"
    [ "$driver" = overlay ] && "$B" bot mount -q "b$i"
    roots+=("$BOTYARD_HOME/bots/b$i/root")
  done
  add "botyard, $driver driver, XFS" "$(measure "${roots[@]}")"
done

python3 - "$N" "$read_bytes" "$read_files" "${results[@]}" <<'PY' | tee bench/results/pagecache.md
import sys
n, read_bytes, files = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rows = [r.split("|") for r in sys.argv[4:]]
one = int(rows[0][1])
mib = lambda b: f"{b / 1048576:.0f}"
print("## One copy in memory")
print()
print(f"{n} bots per strategy each read every file under `/usr` ({files} files, {mib(read_bytes)} MiB: a Debian "
      "minbase with python3, gcc, g++, make, git and curl installed by dpkg), starting from dropped caches; "
      "the page cache's growth (`Cached` + `Buffers` in `/proc/meminfo`) against one plain copy read once. "
      "Loop devices in direct-I/O mode, so only the filesystem under test caches.")
print()
print("| strategy | page cache grew, MiB | vs one copy |")
print("| --- | --- | --- |")
for name, grew in rows:
    print(f"| {name} | {mib(int(grew))} | {int(grew) / one:.2f}× |")
PY
