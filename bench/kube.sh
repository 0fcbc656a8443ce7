#!/usr/bin/env bash
# The daemon's Kubernetes backend against the project's FAKE API server
# (crates/fake-apiserver: no cluster runs here), side by side with the runc
# backend on the same workload, in one run:
#
# 1. Per message: MESSAGES messages to one group (agent `cat`), answered by
#    one kept-alive session; the time per message, less the agent run alone
#    by a shell loop (as in bench/daemon.sh), is the daemon's overhead.
# 2. Per session start: SESSIONS sessions of the group, each closed before
#    the next message: the time from the session's start to its first
#    message taken, and the API calls each start made (counted by the fake).
#
# The fake answers each call after LATENCY (a cluster's API server is a
# network hop away); it is run with 0 and with LATENCY. Its kubelet starts
# containers in bubblewrap on this host, so a pod's start here is not a
# cluster's: the figures to read are the calls and what the daemon adds.
#
#   bash bench/kube.sh [MESSAGES] [SESSIONS] [LATENCY]   (default 300 20 5ms)
#
# Results go to bench/results/kube.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
MESSAGES=${1:-300}
SESSIONS=${2:-20}
LATENCY=${3:-5ms}
FAKE_BIN=$(dirname "$B")/botyard-fake-apiserver
W=$PWD/bench/cache/kube
export BOTYARD_HOME=$W/store
DPID=; FPID=
stop_all() {
  [ -n "$DPID" ] && kill -TERM "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null || true
  [ -n "$FPID" ] && kill "$FPID" 2>/dev/null && wait "$FPID" 2>/dev/null || true
  DPID=; FPID=
}
trap stop_all EXIT
rm -rf "$W"; mkdir -p "$W/root"/{bin,etc,tmp,proc,sys,dev,root,run,mnt} "$W/supervisor" "$W/shared"
cp /bin/busybox "$W/root/bin/"; for c in sh cat true seq; do ln -s busybox "$W/root/bin/$c"; done
chmod 1777 "$W/root/tmp"
ln "$B" "$W/supervisor/botyard" 2>/dev/null || cp "$B" "$W/supervisor/botyard"
"$B" init -q; "$B" image import -q bb:1 --dir "$W/root"
"$B" bot create -q b1 --image bb:1

# The agent alone, MESSAGES times in one runc sandbox, less an empty run.
read -r a0 b0 < <(t_run b1 true)
read -r a1 b1 < <(t_run b1 sh -c "for i in \$(seq $MESSAGES); do echo '{\"i\": 1}' | cat >/dev/null; done")
BASE_MS=$(awk -v a0="$a0" -v b0="$b0" -v a1="$a1" -v b1="$b1" -v n="$MESSAGES" \
  'BEGIN {printf "%.3f", ((b1-a1)-(b0-a0))/n*1000}')

# One contender: a fresh daemon state, the group, the two runs. Prints one
# JSON line.
contender() { # NAME RUNTIME LATENCY
  local name=$1 runtime=$2 latency=$3 fake_url=""
  rm -rf "$BOTYARD_HOME/daemon" "$W/shared"/* "$W/fake" "$W/fake.url"
  printf 'max_sessions = 5\ncommit_on_close = false\n' > "$W/daemon.toml"
  if [ "$runtime" = kubernetes ]; then
    "$FAKE_BIN" --latency "$latency" --work "$W/fake" --kubeconfig "$W/kubeconfig" \
      --image bb:1 --image "botyard/supervisor:bench=$W/supervisor" \
      --shared-claim "shared=$W/shared" > "$W/fake.url" & FPID=$!
    until [ -s "$W/fake.url" ]; do sleep 0.05; done
    fake_url=$(cat "$W/fake.url")
    curl -sf -X POST -H 'Content-Type: application/json' "$fake_url/api/v1/namespaces/botyard/persistentvolumeclaims" \
      -d '{"metadata":{"name":"shared"},"spec":{"accessModes":["ReadWriteMany"]}}' >/dev/null
    printf '[kubernetes]\nnamespace = "botyard"\nsupervisor_image = "botyard/supervisor:bench"\nshared_claim = "shared"\nshared_mount = "%s"\n' \
      "$W/shared" >> "$W/daemon.toml"
  fi
  KUBECONFIG=$W/kubeconfig "$B" serve -q --runtime "$runtime" --config "$W/daemon.toml" & DPID=$!
  until [ -S "$BOTYARD_HOME/daemon/daemon.sock" ]; do sleep 0.05; done
  "$B" group add -q g --bot b1 --agent cat
  python3 - "$BOTYARD_HOME/daemon/daemon.sock" "$MESSAGES" "$SESSIONS" "$name" "$fake_url" <<'PY'
import http.client, json, socket, sys, time, urllib.request
sock, n, sessions, name, fake = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
class C(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.connect(sock)
def req(method, path, body=None):
    c = C("botyard"); c.request(method, path, body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse(); data = r.read(); c.close(); return r.status, data
def settle():
    while True:
        st = json.loads(req("GET", "/v1/status")[1])
        if st["queued"] == 0 and st["running"] == 0: return
        time.sleep(0.05)
def calls():
    return json.load(urllib.request.urlopen(fake + "/fake/calls"))["calls"] if fake else 0
def metric(name):
    for line in req("GET", "/metrics")[1].decode().splitlines():
        if line.startswith(name + " "): return float(line.split()[1])
    return 0.0
# 1. Per message.
for i in range(n):
    s, d = req("POST", "/v1/groups/g/messages", json.dumps({"i": i})); assert s == 202, d
settle()
msgs = json.loads(req("GET", f"/v1/messages?group=g&limit={n}")[1])
fin = sorted(m["finished"] for m in msgs if m["state"] == "done")
assert len(fin) == n, f"{name}: {len(fin)} of {n} done"
per_ms = (fin[-1] - fin[0]) / (len(fin) - 1) * 1000
# 2. Per session start: close the session, then one message starts the next.
starts, calls_per = [], []
for i in range(sessions):
    req("DELETE", "/v1/sessions/g")
    while json.loads(req("GET", "/v1/status")[1])["sessions"]: time.sleep(0.02)
    c0, s0, k0 = calls(), metric("botyard_session_start_seconds_sum"), metric("botyard_session_start_seconds_count")
    s, d = req("POST", "/v1/groups/g/messages", json.dumps({"s": i})); assert s == 202, d
    settle()
    starts.append((metric("botyard_session_start_seconds_sum") - s0) / max(1, metric("botyard_session_start_seconds_count") - k0))
    calls_per.append(calls() - c0)
starts.sort(); calls_per.sort()
print(json.dumps({"name": name, "per_ms": per_ms, "start_ms": starts[len(starts) // 2] * 1000,
                  "calls": calls_per[len(calls_per) // 2], "calls_max": calls_per[-1]}))
PY
  stop_all
}

{
  contender "runc (one host)" runc 0s
  contender "kubernetes, fake API, 0 ms per call" kubernetes 0s
  contender "kubernetes, fake API, $LATENCY per call" kubernetes "$LATENCY"
} > "$W/rows.json"

python3 - "$W/rows.json" "$BASE_MS" "$MESSAGES" "$SESSIONS" "$LATENCY" <<'PY' | tee bench/results/kube.md
import json, os, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
base, n, sessions, latency = float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
runc = rows[0]
print("## Sessions on Kubernetes (against the FAKE API server)")
print()
print(f"Agent `cat`, one group; {n} messages to one kept-alive session, then {sessions} session starts (median); {os.cpu_count()} cores. "
      f"Baseline: the agent alone, run by a shell loop in a runc sandbox: {base:.2f} ms per message.")
print()
print("| backend | per message | daemon overhead per message (target ≤ 5 ms) | session start (start → first message taken) | vs runc | API calls per session start, median / max (target ≤ 6) |")
print("| --- | --- | --- | --- | --- | --- |")
for r in rows:
    calls = "-" if r["name"].startswith("runc") else f"{r['calls']} / {r['calls_max']}"
    print(f"| {r['name']} | {r['per_ms']:.2f} ms | {r['per_ms'] - base:.2f} ms | {r['start_ms']:.0f} ms | {r['start_ms'] / runc['start_ms']:.2f}× | {calls} |")
PY
