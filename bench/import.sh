#!/usr/bin/env bash
# Import benchmark: botyard importing a real Debian rootfs, side by side with
# `cp -a` and `tar -x` of the same tree in one run, reported as ratios.
#
#   bash bench/import.sh [RUNS]        (default 5 runs each; median reported)
#
# All copies and stores live on one filesystem (bench/cache/work). The
# source is read once first so every contender starts with it in the page
# cache. botyard syncs the filesystem before it writes a ref (that is its
# crash safety), so it is compared with `cp -a; sync` as well as `cp -a`.
# Peak memory is the maximum resident set size reported by GNU time, for the
# rootfs and for a synthetic tree of 100,000 small files and 1 GiB of large
# ones, and for a tarball of 1,000,000 empty files (the per-entry cost of
# the in-memory tree). A 20 GiB sparse file with 10 MiB of data is imported
# beside `cp --sparse=always` and a plain read of it (what hashing it byte
# by byte would cost). Results go to bench/results/import.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUNS=${1:-5}
W=$PWD/bench/cache/work
rm -rf "$W"; mkdir -p "$W"
TARBALL=$W/rootfs.tar
tar --xattrs --xattrs-include='*' --numeric-owner --format=pax -C "$ROOTFS" -cf "$TARBALL" .
cat "$TARBALL" >/dev/null; tar -C "$ROOTFS" -cf - . >/dev/null

# Prints "seconds maxrss_kib" of a command.
measure() {
  /usr/bin/time -o "$W/time" -f '%e %M' "$@" >/dev/null 2>"$W/err" || { cat "$W/err" >&2; exit 1; }
  tail -n1 "$W/time"
}
reset() { rm -rf "$W/dst" "$W/store"; sync; }

declare -A T M
run() { # name, command...
  local name=$1; shift
  local ts=() ms=()
  for _ in $(seq "$RUNS"); do
    reset
    [ "$name" = reimport ] && { "$B" --store "$W/store" init -q; "$B" --store "$W/store" image import -q d:1 --dir "$ROOTFS"; sync; }
    [ "$name" = import_dir ] || [ "$name" = import_tar ] && "$B" --store "$W/store" init -q
    read -r t m < <(measure "$@")
    ts+=("$t"); ms+=("$m")
  done
  T[$name]=$(printf '%s\n' "${ts[@]}" | median)
  M[$name]=$(printf '%s\n' "${ms[@]}" | sort -n | tail -n1)
}

run cp       sh -c "cp -a '$ROOTFS' '$W/dst'"
run cp_sync  sh -c "cp -a '$ROOTFS' '$W/dst' && sync -f '$W'"
run tar_x    sh -c "mkdir '$W/dst' && tar --xattrs --xattrs-include='*' --numeric-owner -C '$W/dst' -xf '$TARBALL'"
run import_dir "$B" --store "$W/store" image import -q d:1 --dir "$ROOTFS"
run import_tar "$B" --store "$W/store" image import -q d:1 --tar "$TARBALL"
run reimport   "$B" --store "$W/store" image import -q d:1 --dir "$ROOTFS"

# Peak memory on a bigger tree: 100,000 small files and 8 files of 128 MiB.
BIG=$W/big
mkdir -p "$BIG"
python3 - "$BIG" <<'PY'
import os, sys
root = sys.argv[1]
for i in range(100_000):
    d = os.path.join(root, "d%03d" % (i % 500))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%06d" % i), "w") as f:
        f.write("small file %d\n" % i * 3)
block = os.urandom(1 << 20)
for j in range(8):
    with open(os.path.join(root, "large%d" % j), "wb") as f:
        for k in range(128):
            f.write(bytes([j]) + block[1:])
PY
reset; "$B" --store "$W/store" init -q
read -r big_t big_m < <(measure "$B" --store "$W/store" image import -q big:1 --dir "$BIG")
big_files=$(find "$BIG" -type f | wc -l); big_bytes=$(du -sb "$BIG" | cut -f1)

# Peak memory per entry: a tarball of 1,000,000 empty files in 1,000 dirs.
MANY=$W/many.tar
python3 - "$MANY" <<'PY'
import sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.GNU_FORMAT) as t:
    for d in range(1000):
        ti = tarfile.TarInfo("d%04d" % d); ti.type = tarfile.DIRTYPE; ti.mode = 0o755; t.addfile(ti)
        for i in range(1000):
            ti = tarfile.TarInfo("d%04d/f%04d" % (d, i)); ti.size = 0; t.addfile(ti)
PY
reset; "$B" --store "$W/store" init -q
read -r many_t many_m < <(measure "$B" --store "$W/store" image import -q many:1 --tar "$MANY")
rm -f "$MANY"

# A sparse file: 20 GiB, 10 MiB of data in the middle.
SP=$W/sparse; mkdir -p "$SP"
truncate -s 20G "$SP/disk.img"
dd if=/dev/urandom of="$SP/disk.img" bs=1M count=10 seek=10000 conv=notrunc status=none
reset
read -r sp_cp _ < <(measure cp --sparse=always "$SP/disk.img" "$W/dst")
rm -f "$W/dst"
read -r sp_cat _ < <(measure sh -c "cat '$SP/disk.img' >/dev/null")
reset; "$B" --store "$W/store" init -q
read -r sp_by sp_m < <(measure "$B" --store "$W/store" image import -q sp:1 --dir "$SP")
rm -rf "$SP"

files=$(find "$ROOTFS" -type f | wc -l); bytes=$(du -sb "$ROOTFS" | cut -f1)
r() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.0f MiB", k/1024}'; }
{
  echo "## Import benchmark"
  echo
  echo "Debian bookworm minbase: $files files, $((bytes / 1024 / 1024)) MiB; median of $RUNS runs; $(nproc) cores; $(uname -r); store on $(df -T "$W" | awk 'NR==2 {print $2}')."
  echo
  echo "| contender | seconds | vs cp -a | vs cp -a + sync | peak RSS |"
  echo "| --- | --- | --- | --- | --- |"
  for n in cp cp_sync tar_x import_dir import_tar reimport; do
    label=$n
    case $n in
      cp) label='`cp -a`';; cp_sync) label='`cp -a` + `sync`';; tar_x) label='`tar -x`';;
      import_dir) label='`botyard image import --dir`';; import_tar) label='`botyard image import --tar`';;
      reimport) label='`botyard image import --dir`, unchanged tree again';;
    esac
    echo "| $label | ${T[$n]} | $(r "${T[$n]}" "${T[cp]}")× | $(r "${T[$n]}" "${T[cp_sync]}")× | $(mib "${M[$n]}") |"
  done
  echo
  echo "Peak memory on a larger tree ($big_files files, $((big_bytes / 1024 / 1024)) MiB): $(mib "$big_m") in ${big_t} s."
  echo
  echo "Peak memory for 1,000,000 empty files from a tarball: $(mib "$many_m") in ${many_t} s ($(awk -v k="$many_m" 'BEGIN {printf "%.0f", k*1024/1000000}') bytes an entry, the binary and its buffers included)."
  echo
  echo "| 20 GiB sparse file, 10 MiB of data | seconds | vs botyard |"
  echo "| --- | --- | --- |"
  echo "| \`botyard image import --dir\` (peak RSS $(mib "$sp_m")) | $sp_by | 1.00× |"
  echo "| \`cp --sparse=always\` | $sp_cp | $(r "$sp_cp" "$sp_by")× |"
  echo "| reading every byte (\`cat > /dev/null\`) | $sp_cat | $(r "$sp_cat" "$sp_by")× |"
} | tee bench/results/import.md
rm -rf "$W"
