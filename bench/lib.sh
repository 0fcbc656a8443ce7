# Sourced by every benchmark: installs what they use, builds the release
# binary ($B), and finds the cached Debian base ($ROOTFS).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/deps.sh
cargo build --release --locked -q
B=$(bash scripts/release-bin.sh)
ROOTFS=$(bash scripts/debian-rootfs.sh)
# BLAKE3 (the store's hash) for the benchmarks' hashing references.
.venv-tools/bin/python -c "import blake3" 2>/dev/null ||
  .venv-tools/bin/pip install -q --disable-pip-version-check blake3==1.0.11
# Runs `botyard run BOT -- CMD...`; prints its start and end stamps.
t_run() { local a b bot=$1; shift; a=$(date +%s.%N); "$B" run "$bot" -- "$@" >/dev/null; b=$(date +%s.%N); echo "$a $b"; }
# Median of numbers on stdin.
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# Milliseconds per item between two `date +%s.%N` stamps.
ms_per() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN {printf "%.0f", (b-a)/n*1000}'; }

# Loop-mounted filesystems under $W, one per contender, so statvfs
# measures only it. `xfs_new NAME` prints its mount point (the empty
# filesystem's own use recorded), `fs_used MNT` the bytes added since,
# `loop_cleanup` unmounts everything below $W.
loop_cleanup() {
  for m in $(awk -v w="$W/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}
xfs_new() {
  local img=$W/$1.img mnt=$W/$1
  mkdir -p "$mnt"; truncate -s 40G "$img"; mkfs.xfs -q -m reflink=1 "$img"
  mount -o loop "$img" "$mnt"
  sync -f "$mnt"; df -B1 --output=used "$mnt" | tail -n1 > "$mnt.empty"
  echo "$mnt"
}
fs_used() { sync -f "$1"; echo $(( $(df -B1 --output=used "$1" | tail -n1) - $(cat "$1.empty") )); }
# Where a store's bytes go: "objects trees layers bots" (du, in bytes).
split_of() { (cd "$1" && for d in objects trees.db layers bots; do if [ -e "$d" ]; then du -sB1 "$d" | cut -f1; else echo 0; fi; done | paste -sd' '); }
# Installs the .debs in /tmp/debs of the root it runs in (`chroot ROOT sh
# -c "$DPKG_INSTALL"`) with the real dpkg. dpkg alone cannot order
# pre-dependencies as apt does: a pass leaves some packages unpacked, so
# configuring and installing what is still missing repeats (at most 3
# times) until everything is installed.
DPKG_INSTALL='dpkg -i /tmp/debs/*.deb >/dev/null 2>&1
for pass in 1 2 3; do
  dpkg --configure -a >/dev/null 2>&1
  missing=$(for d in /tmp/debs/*.deb; do
    dpkg -s "$(dpkg-deb -f "$d" Package)" 2>/dev/null | grep -q "^Status: install ok installed" || echo "$d"
  done)
  [ -z "$missing" ] && break
  dpkg -i $missing >/dev/null 2>&1 || true
done
test -z "$missing" && test -z "$(dpkg --audit)"'
