#!/usr/bin/env bash
# End to end on a real Kubernetes cluster made with kind: builds the
# plugin's image, installs the chart, pulls a Debian image into the node's
# store, runs the example StatefulSet (with user namespaces off, as kind's
# nodes keep the store on the overlay of their container), and checks that
# each bot's root is there, that `apt`'s database works, and that a write
# survives the pod being deleted.
#
#   bash scripts/e2e-kind.sh          (needs docker, kind, kubectl, helm)
#
# CI does not run it: no cluster can run on the CI machines.
set -euo pipefail
cd "$(dirname "$0")/.."
for t in docker kind kubectl helm; do
  command -v "$t" >/dev/null || { echo "e2e: $t is needed" >&2; exit 1; }
done
CLUSTER=${CLUSTER:-botyard-e2e}
TAG=botyard/botyard:e2e
docker build -f deploy/Dockerfile -t "$TAG" .
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER"
kind load docker-image --name "$CLUSTER" "$TAG"
helm upgrade --install botyard deploy/helm/botyard -n kube-system \
  --set image.repository=botyard/botyard --set image.tag=e2e --set image.pullPolicy=Never \
  --set storageClass.image=docker.io/library/debian:bookworm --set storageClass.driver=overlay
kubectl -n kube-system rollout status ds/botyard-csi --timeout=300s
sed 's/^      hostUsers: false$/      hostUsers: true/' deploy/examples/statefulset.yaml | kubectl apply -f -
kubectl rollout status statefulset/agent --timeout=600s
kubectl exec agent-0 -- dpkg --audit
kubectl exec agent-0 -- sh -c 'echo kept > /root/e2e-note'
kubectl delete pod agent-0 --wait
kubectl wait --for=condition=Ready pod/agent-0 --timeout=300s
test "$(kubectl exec agent-0 -- cat /root/e2e-note)" = kept
kubectl get pvc
echo "e2e: ok"
