#!/usr/bin/env bash
# Commit cost: two bots install the same real packages (python3, gcc, g++,
# make, git, curl with their dependencies, by dpkg in a chroot); the first
# commit stores them, the second finds them already stored. Each is timed
# with its peak memory, beside `cp -a` + `sync` of the same upper dir and
# BLAKE3 of the second upper's bytes from the page cache (bench/blake3sum.py),
# and `rm -rf` of a copy of that upper (a commit empties it).
#
#   bash bench/commit.sh
#
# Results go to bench/results/commit.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
W=$PWD/bench/cache/commit
export BOTYARD_HOME=$W/store
cleanup() { for b in c1 c2; do "$B" bot unmount -q "$b" 2>/dev/null || true; done; }
trap cleanup EXIT
[ -d "$BOTYARD_HOME" ] && cleanup
rm -rf "$W"; mkdir -p "$W/debs/partial"
apt-get -q -o "Dir::State::status=$ROOTFS/var/lib/dpkg/status" -o "Dir::Cache::archives=$W/debs" \
  --download-only -y --no-install-recommends install python3 gcc g++ make git curl >/dev/null
"$B" init -q; "$B" image import -q debian:bookworm --dir "$ROOTFS"
for b in c1 c2; do
  "$B" bot create -q "$b" --image debian:bookworm; "$B" bot mount -q "$b" --dev
  cp "$W"/debs/*.deb "$BOTYARD_HOME/bots/$b/root/tmp/"
  chroot "$BOTYARD_HOME/bots/$b/root" sh -c 'dpkg -i /tmp/*.deb || dpkg -i /tmp/*.deb; dpkg --configure -a; rm -f /tmp/*.deb' >/dev/null 2>&1
  "$B" bot unmount -q "$b"
done
upper=$(du -sm "$BOTYARD_HOME/bots/c2/upper" | cut -f1)
sync
measure() { /usr/bin/time -o "$W/time" -f '%e %M' "$@" >/dev/null; cat "$W/time"; }
read -r cp_s cp_m < <(measure sh -c "cp -a '$BOTYARD_HOME/bots/c2/upper' '$W/upper-copy' && sync -f '$W'")
read -r c1_s c1_m < <(measure "$B" bot commit -q c1)
# The reference for a commit of content already stored: BLAKE3 of the
# same files' bytes from the page cache (read once first), on all cores.
.venv-tools/bin/python bench/blake3sum.py "$BOTYARD_HOME/bots/c2/upper" >/dev/null
read -r h_s h_m < <(measure .venv-tools/bin/python bench/blake3sum.py "$BOTYARD_HOME/bots/c2/upper")
# What emptying the upper costs by itself: removing a copy of it.
cp -a "$BOTYARD_HOME/bots/c2/upper" "$W/upper-c2"; sync
read -r rm_s _ < <(measure rm -rf "$W/upper-c2")
read -r c2_s c2_m < <(measure "$B" bot commit -q c2)
per100() { awk -v s="$1" -v m="$upper" 'BEGIN {printf "%.2f", s/m*100}'; }
{
  echo "## Commit cost"
  echo
  echo "Upper dir of each bot: $upper MiB (78 packages installed by dpkg); store on $(df -T "$W" | awk 'NR==2 {print $2}'); $(nproc) cores."
  echo
  echo "| what | seconds | s per 100 MiB | peak RSS |"
  echo "| --- | --- | --- | --- |"
  echo "| \`cp -a\` + \`sync\` of the upper (baseline) | $cp_s | $(per100 "$cp_s") | $((cp_m / 1024)) MiB |"
  echo "| \`bot commit\`, new content | $c1_s | $(per100 "$c1_s") | $((c1_m / 1024)) MiB |"
  echo "| \`bot commit\`, content another bot already committed | $c2_s | $(per100 "$c2_s") | $((c2_m / 1024)) MiB |"
  echo "| BLAKE3 of the same upper's files from the page cache (reference) | $h_s | $(per100 "$h_s") | $((h_m / 1024)) MiB |"
  echo "| \`rm -rf\` of a copy of the same upper (what emptying it costs) | $rm_s | $(per100 "$rm_s") | - |"
  echo
  echo "A commit of content already stored takes $(awk -v a="$c2_s" -v b="$h_s" 'BEGIN {printf "%.1f", a/b}')× the time of hashing the same files' bytes; without the removal of the upper's files, which the filesystem does whoever asks, $(awk -v a="$c2_s" -v r="$rm_s" -v b="$h_s" 'BEGIN {printf "%.1f", (a-r)/b}')×."
} | tee bench/results/commit.md
