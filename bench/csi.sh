#!/usr/bin/env bash
# Bot volumes through the CSI plugin, against what a bot fleet does today,
# in one run:
#
# 1. Provisioning one volume of a Debian bookworm minbase (CreateVolume +
#    NodePublishVolume over the plugin's socket, the image already in the
#    node's store) against `rsync -axH` of the same root into an empty
#    directory on the same filesystem (a fresh PVC's init container).
# 2. Publishing N volumes of one image on one node (default 100): time per
#    volume, mounts made, and the node memory each mounted bot costs beyond
#    the page cache (MemTotal - MemFree - Buffers - Cached - SReclaimable,
#    before and after).
#
# Both drivers: overlay on the cache's filesystem, and copy (the default of
# CSI volumes, for pods with user namespaces) on a loop-mounted XFS, where
# its files are reflinks, and on a loop-mounted btrfs, where each volume is
# a snapshot of the image's root (built by the first volume).
#
#   bash bench/csi.sh [N]
#
# Results go to bench/results/csi.md. The CSI client is Python's grpcio,
# pinned, in .venv-tools.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
N=${1:-100}
W=$PWD/bench/cache/csi
PY=$PWD/.venv-tools/bin/python
"$PY" -c "import grpc_tools" 2>/dev/null || .venv-tools/bin/pip install -q --disable-pip-version-check grpcio==1.68.1 grpcio-tools==1.68.1
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for m in $(awk -v w="$W" '$5 ~ "^"w {print $5}' /proc/self/mountinfo | sort -r); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
}
# The loop images hold tens of GB once written: gone with the run.
trap 'cleanup; rm -f "$W"/*.img' EXIT
cleanup; rm -rf "$W"; mkdir -p "$W/gen" "$W/xfs" "$W/btrfs"
"$PY" -m grpc_tools.protoc -I crates/csi/proto --python_out="$W/gen" --grpc_python_out="$W/gen" csi.proto
truncate -s 8G "$W/xfs.img"; mkfs.xfs -q -f "$W/xfs.img"; mount -o loop "$W/xfs.img" "$W/xfs"
truncate -s 8G "$W/btrfs.img"; mkfs.btrfs -q -f "$W/btrfs.img"; mount -o loop "$W/btrfs.img" "$W/btrfs"

run_driver() { # row driver storedir
  local row=$1 d=$2 s=$3
  BOTYARD_HOME=$s "$B" init -q
  BOTYARD_HOME=$s "$B" image import -q debian:bookworm --dir "$ROOTFS"
  BOTYARD_HOME=$s "$B" csi -q --endpoint "unix://$s/csi.sock" --node-id bench & PIDS+=($!)
  until [ -S "$s/csi.sock" ]; do sleep 0.05; done
  "$PY" - "$W/gen" "$s/csi.sock" "$d" "$N" "$s" "$row" <<'PY'
import os, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
import grpc, csi_pb2 as pb, csi_pb2_grpc as rpc
sock, driver, n, store, row = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
# A socket path is no authority; Go clients (kubelet, the sidecars) send
# "localhost" for unix sockets too.
ch = grpc.insecure_channel("unix://" + sock, options=[("grpc.default_authority", "localhost")])
ctl, node = rpc.ControllerStub(ch), rpc.NodeStub(ch)
cap = pb.VolumeCapability(mount=pb.VolumeCapability.MountVolume(),
                          access_mode=pb.VolumeCapability.AccessMode(mode=pb.VolumeCapability.AccessMode.SINGLE_NODE_WRITER))
def provision(i):
    t = time.perf_counter()
    v = ctl.CreateVolume(pb.CreateVolumeRequest(name=f"pvc-{i}", volume_capabilities=[cap],
                                                parameters={"image": "debian:bookworm", "driver": driver})).volume
    target = f"{store}/pods/{i}/mount"
    node.NodePublishVolume(pb.NodePublishVolumeRequest(volume_id=v.volume_id, target_path=target, volume_capability=cap))
    return time.perf_counter() - t, target
def meminfo():
    m = {}
    for line in open("/proc/meminfo"):
        k, v = line.split(":"); m[k] = int(v.split()[0]) * 1024
    return m["MemTotal"] - m["MemFree"] - m["Buffers"] - m["Cached"] - m["SReclaimable"]
def mounts():
    return sum(1 for l in open("/proc/self/mountinfo") if store in l.split()[4])
first, target = provision(0)
assert os.path.exists(target + "/usr/bin/dpkg")
subprocess.run(["sync"]); time.sleep(1)
m0, k0 = meminfo(), mounts()
t0 = time.perf_counter()
times = [provision(i)[0] for i in range(1, n + 1)]
total = time.perf_counter() - t0
subprocess.run(["sync"]); time.sleep(1)
m1, k1 = meminfo(), mounts()
times.sort()
print(f"{row}\t{first*1000:.1f}\t{times[len(times)//2]*1000:.1f}\t{total/n*1000:.1f}\t{(k1-k0)/n:.1f}\t{(m1-m0)/n/1024/1024:.2f}")
PY
  kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
}
OUT=$W/rows.tsv; : > "$OUT"
run_driver overlay overlay "$W/overlay-store" >> "$OUT"
run_driver copy-xfs copy "$W/xfs/store" >> "$OUT"
run_driver copy-btrfs copy "$W/btrfs/store" >> "$OUT"
# The baseline: rsync of the same root into an empty directory, on each
# filesystem, the source in the page cache.
cat "$ROOTFS"/usr/bin/* > /dev/null 2>&1 || true
rs() { local s e; mkdir -p "$1"; s=$(date +%s.%N); rsync -axH "$ROOTFS/" "$1/"; sync; e=$(date +%s.%N); awk -v a="$s" -v b="$e" 'BEGIN {printf "%.1f", (b-a)*1000}'; }
RS_EXT=$(rs "$W/rsync-target")
RS_XFS=$(rs "$W/xfs/rsync-target")
RS_BTRFS=$(rs "$W/btrfs/rsync-target")
SIZE=$(du -sh --apparent-size "$ROOTFS" | cut -f1)
FILES=$(find "$ROOTFS" | wc -l)
python3 - "$OUT" "$RS_EXT" "$RS_XFS" "$RS_BTRFS" "$N" "$SIZE" "$FILES" <<'PY' | tee bench/results/csi.md
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
rs = {"overlay": float(sys.argv[2]), "copy-xfs": float(sys.argv[3]), "copy-btrfs": float(sys.argv[4])}
n, size, files = sys.argv[5], sys.argv[6], sys.argv[7]
print("## CSI volumes")
print()
print(f"Debian bookworm minbase ({files} files, {size}), image already in the node's store; {n} volumes of it published on one node; 2 cores.")
print()
print("The first volume of an image on a node also builds what the driver keeps per image: the EROFS layer (overlay) or the read-only image root (copy on btrfs).")
print()
print("| driver (filesystem) | first volume (CreateVolume + NodePublishVolume) | per volume, median of the next " + n + " | per volume, mean | `rsync -axH` of the same root | vs rsync, first / next | mounts per volume | node memory per mounted bot, beyond the page cache |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
fsname = {"overlay": "overlay (ext4)", "copy-xfs": "copy (XFS, reflinks)", "copy-btrfs": "copy (btrfs, snapshots)"}
# Below 0.1 MiB a bot's cost is lost in the noise of the node's own use.
def memory(m):
    return "< 0.1 MiB" if m < 0.1 else f"{m:.2f} MiB"
for d, first, med, mean, mounts, mem in rows:
    print(f"| {fsname[d]} | {float(first):.1f} ms | {float(med):.1f} ms | {float(mean):.1f} ms | {rs[d]:.0f} ms | {rs[d]/float(first):.0f}× / {rs[d]/float(med):.0f}× faster | {mounts} | {memory(float(mem))} |")
PY
