#!/usr/bin/env bash
# Start-to-first-output of a trivial agent (`echo hi`) in a sandbox:
# `botyard run` on a bot, `runc run` of a prepared bundle of the same root,
# and `bwrap` on the same root, in one run; medians and ratios to runc.
#
#   bash bench/start.sh [RUNS]     (default 30)
#   BEFORE=PATH bash bench/start.sh  adds the rows of another botyard build
#                                    (say, before a change), in the same run
#
# The root is a static busybox tree. `botyard run` is measured with the bot
# already mounted (as a daemon keeps it) and unmounted (the run mounts and
# unmounts it). The contenders take turns, one run each per round, so a
# machine that speeds up or slows down meanwhile shifts them all alike.
# Results go to bench/results/start.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUNS=${1:-30}
W=$PWD/bench/cache/start
export BOTYARD_HOME=$W/store
cleanup() { "$B" bot unmount -q s 2>/dev/null || true; runc delete --force bench-runc >/dev/null 2>&1 || true; }
trap cleanup EXIT
[ -d "$BOTYARD_HOME" ] && cleanup
rm -rf "$W"; mkdir -p "$W/root"/{bin,etc,tmp,proc,sys,dev,root,run,mnt}
cp /bin/busybox "$W/root/bin/"
for c in sh echo cat true; do ln -s busybox "$W/root/bin/$c"; done
chmod 1777 "$W/root/tmp"
"$B" init -q; "$B" image import -q bb:1 --dir "$W/root"; "$B" bot create -q s --image bb:1
# runc's own bundle: the same root, the same namespaces and user as botyard's.
mkdir -p "$W/bundle"; cp -a "$W/root" "$W/bundle/rootfs"
(cd "$W/bundle" && runc spec --rootless >/dev/null 2>&1 || runc spec)
python3 - "$W/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/echo", "hi"]
c["process"]["user"] = {"uid": 1000, "gid": 1000}
c["root"] = {"path": "rootfs", "readonly": False}
c["linux"].pop("uidMappings", None); c["linux"].pop("gidMappings", None)
c["linux"]["namespaces"] = [{"type": t} for t in ["pid", "ipc", "uts", "mount", "network"]]
json.dump(c, open(p, "w"))
PY
python3 - "$RUNS" "$B" "$W" "${BEFORE:-}" <<'PY' | tee bench/results/start.md
import os, statistics, subprocess, sys, time
runs, b, w, before = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
env = dict(os.environ)
def first_output(cmd, **kw):
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, **kw)
    first = p.stdout.read(1)
    dt = time.perf_counter() - t
    p.stdout.read(); p.wait()
    assert first == b"h", (cmd, first)
    return dt * 1000
contenders = [
    ("`runc run` of a prepared bundle (baseline)", ["runc", "run", "--bundle", w + "/bundle", "bench-runc"], None),
    ("`bwrap` on the same root", ["bwrap", "--bind", w + "/root", "/", "--proc", "/proc", "--dev", "/dev",
                                 "--unshare-all", "--uid", "1000", "--gid", "1000", "/bin/echo", "hi"], None),
    ("`botyard run`, bot mounted", [b, "run", "s", "--", "echo", "hi"], "mount"),
    ("`botyard run`, bot not mounted (mounted for the run)", [b, "run", "s", "--", "echo", "hi"], "unmount"),
]
if before:
    # Next to the same state's row: the bot is mounted and unmounted once
    # per round, as without them.
    contenders.insert(3, ("`botyard run` of the BEFORE build, bot mounted", [before, "run", "s", "--", "echo", "hi"], "mount"))
    contenders.append(("`botyard run` of the BEFORE build, bot not mounted", [before, "run", "s", "--", "echo", "hi"], "unmount"))
mounted = False
def set_state(state):
    global mounted
    if state == "mount" and not mounted:
        subprocess.run([b, "bot", "mount", "-q", "s"], check=True, env=env)
        # A kept mount has served runs before: the first run on a fresh
        # mount reads the layer's metadata, and is not timed as "mounted".
        subprocess.run([b, "run", "s", "--", "true"], check=True, env=env)
        mounted = True
    if state == "unmount" and mounted:
        subprocess.run([b, "bot", "unmount", "-q", "s"], check=True, env=env)
        mounted = False
times = [[] for _ in contenders]
for r in range(runs + 1):
    for i, (name, cmd, state) in enumerate(contenders):
        set_state(state)
        t = first_output(cmd)
        if r > 0:  # the first round warms up
            times[i].append(t)
# Each run against runc's run of the same round: the machine's drift
# (on a shared or virtual machine) moves both, and their ratio less than
# either.
results = [(c[0], statistics.median(xs), min(xs), max(xs),
            statistics.median(x / r for x, r in zip(xs, times[0])))
           for c, xs in zip(contenders, times)]
base = results[0][1]
print("## Sandbox start")
print()
print(f"Time from starting the command to its first byte of output (`echo hi`, static busybox root, non-root user, pid/ipc/uts/mount/network namespaces); median of {runs} runs after one warm-up round, the contenders taking turns; {os.cpu_count()} cores. \"vs runc\" is the median of each run's ratio to runc's run in the same round.")
print()
print("| contender | median ms | min ms | max ms | vs runc |")
print("| --- | --- | --- | --- | --- |")
for name, med, lo, hi, ratio in results:
    print(f"| {name} | {med:.1f} | {lo:.1f} | {hi:.1f} | {ratio:.2f}× |")
PY
