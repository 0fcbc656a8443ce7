# Sourced by every benchmark: installs what they use, builds the release
# binary ($B), and finds the cached Debian base ($ROOTFS).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/deps.sh
cargo build --release --locked -q
B=$(bash scripts/release-bin.sh)
ROOTFS=$(bash scripts/debian-rootfs.sh)
# Median of numbers on stdin.
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# Milliseconds per item between two `date +%s.%N` stamps.
ms_per() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN {printf "%.0f", (b-a)/n*1000}'; }
