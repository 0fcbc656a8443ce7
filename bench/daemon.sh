#!/usr/bin/env bash
# The daemon under load: MESSAGES messages over GROUPS groups (one bot
# each, a no-op agent: `cat`), at most 5 live sandboxes. Reports
# throughput, queue wait (p50, p99), the daemon's peak memory, the cost per
# message beyond a sandbox's own start, and the rate of
# `GET /v1/messages/{id}` under a load generator on the unix socket.
#
#   bash bench/daemon.sh [MESSAGES] [GROUPS]     (default 10000 100)
#
# Results go to bench/results/daemon.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
MESSAGES=${1:-10000}
GROUPS_N=${2:-100}
W=$PWD/bench/cache/daemon
export BOTYARD_HOME=$W/store
cleanup() { [ -n "${DPID:-}" ] && kill -TERM "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null || true; }
trap cleanup EXIT
rm -rf "$W"; mkdir -p "$W/root"/{bin,etc,tmp,proc,sys,dev,root,run,mnt}
cp /bin/busybox "$W/root/bin/"; for c in sh cat true; do ln -s busybox "$W/root/bin/$c"; done
chmod 1777 "$W/root/tmp"
"$B" init -q; "$B" image import -q bb:1 --dir "$W/root"
printf 'max_sessions = 5\ncommit_on_close = false\n' > "$W/daemon.toml"
"$B" serve -q --config "$W/daemon.toml" & DPID=$!
until [ -S "$BOTYARD_HOME/daemon/daemon.sock" ]; do sleep 0.05; done
for g in $(seq "$GROUPS_N"); do
  "$B" bot create -q "b$g" --image bb:1
  "$B" group add -q "g$g" --bot "b$g" --agent cat
done
python3 - "$BOTYARD_HOME/daemon/daemon.sock" "$MESSAGES" "$GROUPS_N" "$DPID" <<'PY' | tee bench/results/daemon.md
import http.client, json, os, socket, statistics, sys, threading, time
sock, n, groups, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
class C(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.connect(sock)
def req(method, path, body=None):
    c = C("botyard"); c.request(method, path, body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse(); data = r.read(); c.close(); return r.status, data
def rss_peak():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM"): return int(line.split()[1]) // 1024
t0 = time.time()
ids = []
for i in range(n):
    s, d = req("POST", f"/v1/groups/g{i % groups + 1}/messages", json.dumps({"i": i}))
    assert s == 202, d
    ids.append(json.loads(d)["id"])
enqueued = time.time() - t0
rss_queued = rss_peak()
# Load generator while the queue drains: 4 threads reading messages.
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
while True:
    s, d = req("GET", "/v1/status")
    st = json.loads(d)
    if st["queued"] == 0 and st["running"] == 0: break
    time.sleep(0.5)
total = time.time() - t0
msgs = []
for lo in range(0, n, 1000):
    s, d = req("GET", f"/v1/messages?limit=100000")
    msgs = json.loads(d); break
done = [m for m in msgs if m["state"] == "done"]
waits = sorted(m["started"] - m["created"] for m in done)
p = lambda q: waits[min(len(waits) - 1, int(q * len(waits)))]
s, metrics = req("GET", "/metrics"); metrics = metrics.decode()
def metric(name):
    for line in metrics.splitlines():
        if line.startswith(name + " "): return float(line.split()[1])
    return 0.0
starts = metric("botyard_session_starts_total")
start_mean = metric("botyard_session_start_seconds_sum") / max(1, metric("botyard_session_start_seconds_count"))
stops = metric("botyard_session_stop_seconds_count")
stop_mean = metric("botyard_session_stop_seconds_sum") / max(1, stops)
first = min(m["started"] for m in done); last = max(m["finished"] for m in done)
slot_per_msg = (last - first) * 5 / len(done)
print("## Daemon under load")
print()
print(f"{n} messages over {groups} groups (a bot each, agent `cat`), at most 5 live sandboxes, round-robin, static busybox root; {os.cpu_count()} cores.")
print()
print("| what | value |")
print("| --- | --- |")
print(f"| messages done / failed | {len(done)} / {len(msgs) - len(done)} |")
print(f"| accepting {n} messages (one POST each) | {enqueued:.1f} s |")
print(f"| throughput while draining | {len(done) / (last - first):.1f} messages/s |")
print(f"| queue wait p50 / p99 | {p(0.5):.1f} s / {p(0.99):.1f} s |")
print(f"| sandboxes started | {int(starts)} |")
print(f"| sandbox start (mean, start to first message taken) | {start_mean * 1000:.0f} ms |")
print(f"| slot time per message (5 slots × drain time / messages) | {slot_per_msg * 1000:.0f} ms |")
print(f"| sandbox stop (mean, asked to close to slot free; {int(stops)} stops) | {stop_mean * 1000:.0f} ms |")
print(f"| beyond sandbox starts (slot time − starts × mean start / messages) | {(slot_per_msg - starts * start_mean / len(done)) * 1000:.0f} ms |")
print(f"| beyond sandbox starts and stops | {(slot_per_msg - (starts * start_mean + stops * stop_mean) / len(done)) * 1000:.0f} ms |")
print(f"| `GET /v1/messages/{{id}}`, 4 clients on the unix socket | {rate:.0f} requests/s |")
print(f"| daemon peak RSS with {n} messages queued / at the end | {rss_queued} MiB / {rss_peak()} MiB |")
PY
