#!/usr/bin/env bash
# A thousand bots on one node: create and mount N bots of one Debian
# minbase image in a store on a loop-mounted XFS, run a small command in
# each (`botyard run`, runc), unmount and commit them all (a commit needs
# the bot unmounted).
#
#   bash bench/scale.sh [N]     (default 1000)
#
# Reported: milliseconds per bot for each step, for the first and the last
# tenth of the fleet (so growth with the fleet's size shows); the node's
# kernel memory per mounted bot (slab, page tables, kernel stacks, and page
# cache, measured from /proc/meminfo after dropping what the kernel can
# drop, so only what the mounts pin is counted); the mounts and loop devices
# in use; the fleet's bytes. Results go to bench/results/scale.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
N=${1:-1000}
W=$PWD/bench/cache/scale
export BOTYARD_HOME=$W/fs/store
unmount_all() {
  [ -d "$BOTYARD_HOME/bots" ] || return 0
  for d in "$BOTYARD_HOME"/bots/*/; do "$B" bot unmount -q "$(basename "$d")" 2>/dev/null || true; done
}
trap 'unmount_all; loop_cleanup; rm -f "$W"/*.img' EXIT
loop_cleanup; rm -rf "$W"; mkdir -p "$W"
FS=$(xfs_new fs)
"$B" init -q
"$B" image import -q deb:1 --dir "$ROOTFS"
image_used=$(fs_used "$FS")

# meminfo fields in KiB after dropping clean caches and reclaimable slab.
mem() {
  sync; echo 3 > /proc/sys/vm/drop_caches
  awk '/^(Slab|SUnreclaim|SReclaimable|KernelStack|PageTables|Cached|Buffers):/ {gsub(":","",$1); printf "%s=%s ", $1, $2} END {print ""}' /proc/meminfo
}
# Runs "$@" once per bot (BOT in the command is the bot's name); one
# millisecond figure per line to $W/STEP.ms.
step() { # STEP CMD...
  local s=$1; shift
  : > "$W/$s.ms"
  for i in $(seq "$N"); do
    local a b args=()
    for x in "$@"; do args+=("${x//BOT/b$i}"); done
    a=$(date +%s%N)
    "${args[@]}" >/dev/null
    b=$(date +%s%N)
    echo $(( (b - a) / 1000 )) >> "$W/$s.ms"
  done
}
mounts() { wc -l < /proc/self/mountinfo; }
loops() { losetup -a | wc -l; }

mem >/dev/null; m0=$(mem); mounts0=$(mounts); loops0=$(loops)
step create "$B" bot create -q BOT --image deb:1
step mount "$B" bot mount -q BOT
m1=$(mem); mounts1=$(mounts); loops1=$(loops)
step run "$B" run BOT -- sh -c 'echo hello > /tmp/hello; cat /etc/debian_version'
m2=$(mem)
step unmount "$B" bot unmount -q BOT
step commit "$B" bot commit -q BOT
m3=$(mem); mounts3=$(mounts); loops3=$(loops)
read -r objects trees layers bots <<<"$(split_of "$BOTYARD_HOME")"
used=$(fs_used "$FS")
nofile=$(ulimit -n)

python3 - "$W" "$N" "$m0" "$m1" "$m2" "$m3" "$mounts0 $mounts1 $mounts3" "$loops0 $loops1 $loops3" \
  "$used $objects $trees $layers $bots $image_used" "$nofile" <<'PY' | tee bench/results/scale.md
import os, statistics, sys
w, n = sys.argv[1], int(sys.argv[2])
mem = [dict(kv.split("=") for kv in s.split()) for s in sys.argv[3:7]]
mounts = [int(x) for x in sys.argv[7].split()]
loops = [int(x) for x in sys.argv[8].split()]
used, objects, trees, layers, bots, image_used = (int(x) for x in sys.argv[9].split())
nofile = sys.argv[10]
tenth = max(1, n // 10)
print("## A thousand bots on one node")
print()
print(f"{n} bots of one Debian minbase image in a store on a loop-mounted XFS, {os.cpu_count()} cores; "
      "each step is one `botyard` process per bot, bots in order. Milliseconds per bot (median; "
      f"the first and the last {tenth} bots, and the slowest).")
print()
print("| step | first bots, ms | last bots, ms | last / first | slowest ms | total s |")
print("| --- | --- | --- | --- | --- | --- |")
for s, what in [("create", "`bot create`"), ("mount", "`bot mount`"),
                ("run", "`run BOT -- sh -c 'echo hello > /tmp/hello; cat /etc/debian_version'`"),
                ("unmount", "`bot unmount`"), ("commit", "`bot commit`")]:
    xs = [int(l) / 1000 for l in open(f"{w}/{s}.ms")]
    a, b = statistics.median(xs[:tenth]), statistics.median(xs[-tenth:])
    print(f"| {what} | {a:.1f} | {b:.1f} | {b / a:.2f}× | {max(xs):.1f} | {sum(xs) / 1000:.1f} |")
cm = [int(l) / 1000 for l in open(f"{w}/create.ms")]
mm = [int(l) / 1000 for l in open(f"{w}/mount.ms")]
cm_last = statistics.median([c + m for c, m in zip(cm[-tenth:], mm[-tenth:])])
print()
print(f"Create and mount, the last {tenth} bots: {cm_last:.1f} ms per bot (median).")
print()
def kib(m, k): return int(m.get(k, 0))
def kernel(m): return kib(m, "Slab") + kib(m, "KernelStack") + kib(m, "PageTables")
print("Kernel memory the mounted bots pin (`/proc/meminfo` after `sync` and `echo 3 > drop_caches`, "
      "so clean page cache and reclaimable slab the kernel can let go are not counted):")
print()
print("| state | slab MiB | of which unreclaimable | page cache MiB | per bot, slab + page tables + stacks | per bot, with page cache |")
print("| --- | --- | --- | --- | --- | --- |")
for label, m in [("no bot mounted (start)", mem[0]), (f"{n} bots mounted", mem[1]),
                 (f"{n} bots mounted, each ran once", mem[2]), ("all unmounted and committed", mem[3])]:
    dk = (kernel(m) - kernel(mem[0])) / n
    dc = dk + (kib(m, "Cached") + kib(m, "Buffers") - kib(mem[0], "Cached") - kib(mem[0], "Buffers")) / n
    print(f"| {label} | {kib(m, 'Slab') / 1024:.0f} | {kib(m, 'SUnreclaim') / 1024:.0f} | "
          f"{kib(m, 'Cached') / 1024:.0f} | {dk:.0f} KiB | {dc:.0f} KiB |")
print()
print(f"Mounts in the node's mount table: {mounts[0]} before, {mounts[1]} with {n} bots mounted "
      f"({(mounts[1] - mounts[0]) / n:.2f} per bot), {mounts[2]} after. "
      f"Loop devices attached: {loops[0]} before, {loops[1]} with the bots mounted, {loops[2]} after "
      "(layers are EROFS images the kernel mounts straight from their files). "
      f"Open-file limit of the shell that ran it: {nofile} (each step is a process of its own, so it never mattered).")
print()
mib = lambda b: f"{b / 1048576:.1f} MiB"
print(f"The fleet's bytes after the run: {mib(used)} on the filesystem (objects {mib(objects)}, trees {mib(trees)}, "
      f"layers {mib(layers)}, bots {mib(bots)}): the image took {mib(image_used)}, each bot "
      f"{(used - image_used) / n / 1024:.1f} KiB more (its history, its diff layer and its directory).")
PY
