#!/usr/bin/env bash
# End to end on a real Kubernetes cluster made with kind: builds the
# plugin's image and the supervisor's, installs the chart with the daemon,
# pulls a Debian image into the node's store, and then
#
# 1. bot volumes: runs the example StatefulSet (hostUsers: false, copy
#    volumes) and checks that each bot's root is there, that `apt`'s
#    database works, and that a write survives the pod being deleted;
# 2. sessions as pods: adds a group to the daemon and sends it messages,
#    each group's session a Job whose supervisor comes from its image.
#
# The node's store is a directory of the host (kind's extraMounts): copy
# volumes are idmapped for hostUsers: false pods, which the node
# container's own overlay would refuse.
#
#   bash scripts/e2e-kind.sh          (needs docker, kind, kubectl, helm, skopeo)
#
# CI does not run it: no cluster can run on the CI machines.
set -euo pipefail
cd "$(dirname "$0")/.."
for t in docker kind kubectl helm skopeo; do
  command -v "$t" >/dev/null || { echo "e2e: $t is needed" >&2; exit 1; }
done
CLUSTER=${CLUSTER:-botyard-e2e}
TAG=botyard/botyard:e2e
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/store"
docker build -f deploy/Dockerfile -t "$TAG" .
bash scripts/supervisor-image.sh "$WORK/supervisor" e2e
skopeo copy "oci:$WORK/supervisor:e2e" docker-daemon:botyard/supervisor:e2e
cat > "$WORK/kind.yaml" <<KIND
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
featureGates:
  ImageVolume: true
nodes:
  - role: control-plane
    extraMounts:
      - hostPath: $WORK/store
        containerPath: /var/lib/botyard
KIND
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --config "$WORK/kind.yaml"
kind load docker-image --name "$CLUSTER" "$TAG" botyard/supervisor:e2e
helm upgrade --install botyard deploy/helm/botyard -n kube-system \
  --set image.repository=botyard/botyard --set image.tag=e2e --set image.pullPolicy=Never \
  --set storageClass.image=docker.io/library/debian:bookworm \
  --set daemon.enabled=true --set daemon.supervisorImage=botyard/supervisor:e2e \
  --set daemon.sessionNamespace=default
kubectl -n kube-system rollout status ds/botyard-csi --timeout=300s
kubectl -n kube-system rollout status deploy/botyard-daemon --timeout=300s

# 1. Bot volumes.
kubectl apply -f deploy/examples/statefulset.yaml
kubectl rollout status statefulset/agent --timeout=600s
kubectl exec agent-0 -- dpkg --audit
kubectl exec agent-0 -- sh -c 'echo kept > /root/e2e-note'
kubectl delete pod agent-0 --wait
kubectl wait --for=condition=Ready pod/agent-0 --timeout=300s
test "$(kubectl exec agent-0 -- cat /root/e2e-note)" = kept

# 2. Sessions as pods, through the daemon's API.
kubectl -n kube-system port-forward svc/botyard-daemon 18080:8080 >/dev/null &
sleep 3
export BOTYARD_DAEMON=tcp:127.0.0.1:18080
BOTYARD_TOKEN=$(kubectl -n kube-system get secret botyard-daemon-token -o jsonpath='{.data.token}' | base64 -d)
export BOTYARD_TOKEN
B=target/release/botyard
[ -x "$B" ] || cargo build --release --locked -p botyard
"$B" group add e2e --bot e2e --agent "sh -c 'read m; echo \"got \$m\"; uname -n'"
out=$("$B" message send e2e '"hello"' --follow)
echo "$out" | grep -q 'got "hello"'
out=$("$B" message send e2e '"again"' --follow)
echo "$out" | grep -q 'got "again"'
kubectl get jobs,pods -l app.kubernetes.io/managed-by=botyard
kubectl get pvc
echo "e2e: ok"
