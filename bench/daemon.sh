#!/usr/bin/env bash
# The daemon, in two runs side by side with their baselines:
#
# 1. Overhead per message: 1000 messages to one group, answered by one
#    kept-alive session (agent `cat`), against the same agent run 1000
#    times by a shell loop in the same sandbox (no daemon, no IPC). The
#    difference is what the daemon adds per message beyond the sandbox's
#    own start.
# 2. Load: MESSAGES messages over GROUPS groups (one bot each, agent `cat`),
#    at most 5 live sandboxes, posted by 8 clients: throughput, queue wait
#    (p50, p99), sandbox starts and stops, the daemon's peak memory, and the
#    rate of `GET /v1/messages/{id}` from 4 clients on the unix socket.
#
#   bash bench/daemon.sh [MESSAGES] [GROUPS]     (default 10000 100)
#
# Results go to bench/results/daemon.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
MESSAGES=${1:-10000}
GROUPS_N=${2:-100}
SEQ=1000
W=$PWD/bench/cache/daemon
export BOTYARD_HOME=$W/store
cleanup() { [ -n "${DPID:-}" ] && kill -TERM "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null || true; }
trap cleanup EXIT
rm -rf "$W"; mkdir -p "$W/root"/{bin,etc,tmp,proc,sys,dev,root,run,mnt}
cp /bin/busybox "$W/root/bin/"; for c in sh cat true seq; do ln -s busybox "$W/root/bin/$c"; done
chmod 1777 "$W/root/tmp"
"$B" init -q; "$B" image import -q bb:1 --dir "$W/root"
"$B" bot create -q seq --image bb:1

# Baseline: the agent alone, SEQ times in one sandbox, less an empty run.
read -r a0 b0 < <(t_run seq true)
read -r a1 b1 < <(t_run seq sh -c "for i in \$(seq $SEQ); do echo '{\"i\": 1}' | cat >/dev/null; done")
BASE_MS=$(awk -v a0="$a0" -v b0="$b0" -v a1="$a1" -v b1="$b1" -v n="$SEQ" \
  'BEGIN {printf "%.2f", ((b1-a1)-(b0-a0))/n*1000}')

printf 'max_sessions = 5\ncommit_on_close = false\n' > "$W/daemon.toml"
"$B" serve -q --config "$W/daemon.toml" & DPID=$!
until [ -S "$BOTYARD_HOME/daemon/daemon.sock" ]; do sleep 0.05; done
"$B" group add -q seq --bot seq --agent cat
for g in $(seq "$GROUPS_N"); do
  "$B" bot create -q "b$g" --image bb:1
  "$B" group add -q "g$g" --bot "b$g" --agent cat
done
python3 - "$BOTYARD_HOME/daemon/daemon.sock" "$MESSAGES" "$GROUPS_N" "$DPID" "$SEQ" "$BASE_MS" <<'PY' | tee bench/results/daemon.md
import http.client, json, os, socket, sys, threading, time
sock, n, groups, pid, nseq, base_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
class C(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.connect(sock)
def req(method, path, body=None):
    c = C("botyard"); c.request(method, path, body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse(); data = r.read(); c.close(); return r.status, data
def rss_peak():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM"): return int(line.split()[1]) // 1024
def post_all(targets, clients=8):
    ids = [None] * len(targets)
    def poster(k):
        for i in range(k, len(targets), clients):
            s, d = req("POST", f"/v1/groups/{targets[i]}/messages", json.dumps({"i": i}))
            assert s == 202, d
            ids[i] = json.loads(d)["id"]
    ts = [threading.Thread(target=poster, args=(k,)) for k in range(clients)]
    for t in ts: t.start()
    for t in ts: t.join()
    return ids
def settle():
    while True:
        st = json.loads(req("GET", "/v1/status")[1])
        if st["queued"] == 0 and st["running"] == 0: return
        time.sleep(0.2)
def metrics():
    text = req("GET", "/metrics")[1].decode()
    def m(name):
        for line in text.splitlines():
            if line.startswith(name + " "): return float(line.split()[1])
        return 0.0
    return m

# 1. One kept-alive session.
post_all(["seq"] * nseq)
settle()
seq = json.loads(req("GET", f"/v1/messages?group=seq&limit={nseq}")[1])
fin = sorted(m["finished"] for m in seq if m["state"] == "done")
assert len(fin) == nseq, f"{len(fin)} of {nseq} done"
per_ms = (fin[-1] - fin[0]) / (len(fin) - 1) * 1000
m0 = metrics()
starts0, start_sum0, start_n0 = m0("botyard_session_starts_total"), m0("botyard_session_start_seconds_sum"), m0("botyard_session_start_seconds_count")
stop_sum0, stop_n0 = m0("botyard_session_stop_seconds_sum"), m0("botyard_session_stop_seconds_count")
req("DELETE", "/v1/sessions/seq")

# 2. Load.
def cpu():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(f) - f[3] - f[4], sum(f)  # busy, all (idle and iowait excluded from busy)
cpu0 = cpu()
t0 = time.time()
ids = post_all([f"g{i % groups + 1}" for i in range(n)])
enqueued = time.time() - t0
rss_queued = rss_peak()
stop = False; reads = [0]
def reader():
    k = 0
    while not stop:
        req("GET", f"/v1/messages/{ids[k % len(ids)]}"); reads[0] += 1; k += 7
threads = [threading.Thread(target=reader) for _ in range(4)]
t_load = time.time()
for t in threads: t.start()
time.sleep(5)
stop = True
for t in threads: t.join()
rate = reads[0] / (time.time() - t_load)
settle()
cpu1 = cpu()
busy = (cpu1[0] - cpu0[0]) / max(1, cpu1[1] - cpu0[1])
msgs = [m for m in json.loads(req("GET", f"/v1/messages?limit={n + nseq + 10}")[1]) if m["group"] != "seq"]
done = [m for m in msgs if m["state"] == "done"]
waits = sorted(m["started"] - m["created"] for m in done)
p = lambda q: waits[min(len(waits) - 1, int(q * len(waits)))]
m1 = metrics()
starts = m1("botyard_session_starts_total") - starts0
start_mean = (m1("botyard_session_start_seconds_sum") - start_sum0) / max(1, m1("botyard_session_start_seconds_count") - start_n0)
stops = m1("botyard_session_stop_seconds_count") - stop_n0
stop_mean = (m1("botyard_session_stop_seconds_sum") - stop_sum0) / max(1, stops)
first = min(m["started"] for m in done); last = max(m["finished"] for m in done)
slot_per_msg = (last - first) * 5 / len(done)
beyond = slot_per_msg - (starts * start_mean + stops * stop_mean) / len(done)
cores = os.cpu_count()
print("## Daemon")
print()
print(f"Static busybox root, agent `cat`, {cores} cores.")
print()
print(f"### Overhead per message ({nseq} messages to one kept-alive session)")
print()
print("| what | per message |")
print("| --- | --- |")
print(f"| through the daemon (accepted → IPC file → supervisor → agent → framed answer → done) | {per_ms:.2f} ms |")
print(f"| baseline: the same agent run by a shell loop in the same sandbox | {base_ms:.2f} ms |")
print(f"| **overhead the daemon adds** (target ≤ 5 ms) | **{per_ms - base_ms:.2f} ms** ({per_ms / max(base_ms, 0.01):.1f}× the agent alone) |")
print()
print(f"### Load ({n} messages over {groups} groups, at most 5 live sandboxes)")
print()
print("| what | value |")
print("| --- | --- |")
print(f"| messages done / failed | {len(done)} / {len(msgs) - len(done)} |")
print(f"| accepting {n} messages (8 clients, each synced to disk) | {enqueued:.1f} s ({n / enqueued:.0f}/s) |")
print(f"| throughput while draining | {len(done) / (last - first):.0f} messages/s |")
print(f"| queue wait p50 / p99 | {p(0.5):.1f} s / {p(0.99):.1f} s |")
print(f"| sandboxes started / stopped | {int(starts)} / {int(stops)} |")
print(f"| sandbox start (mean, start to first message taken) | {start_mean * 1000:.0f} ms |")
print(f"| sandbox stop (mean, asked to close to slot free) | {stop_mean * 1000:.0f} ms |")
print(f"| slot time per message (5 slots × drain time / messages) | {slot_per_msg * 1000:.1f} ms |")
print(f"| slot time per message beyond sandbox starts and stops | {beyond * 1000:.1f} ms |")
print(f"| the machine's CPUs busy, posting to drained (all processes) | {busy * 100:.0f}% |")
print(f"| `GET /v1/messages/{{id}}`, 4 clients on the unix socket, while draining | {rate:.0f} requests/s |")
print(f"| daemon peak RSS with {n} messages queued / at the end | {rss_queued} MiB / {rss_peak()} MiB |")
PY
