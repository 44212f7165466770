#!/usr/bin/env bash
# Create a kind cluster, load the operator and trainer images, install the chart and run the
# e2e tier (tests/e2e) against it. Needs docker, kind, helm, kubectl on PATH (the CI workflow
# .github/workflows/e2e-kind.yaml runs it on a hosted runner).
#   scripts/kind-e2e.sh              # create/reuse cluster "polya-e2e", test, keep it
#   KEEP=0 scripts/kind-e2e.sh       # delete the cluster afterwards
#   scripts/kind-e2e.sh --helm-args  # print the chart's install arguments and exit
#                                    # (tests/artifacts/test_artifacts_kind.py renders them)
set -euo pipefail
cd "$(dirname "$0")/.."
CLUSTER=${CLUSTER:-polya-e2e}
NS=${POLYA_E2E_NAMESPACE:-polya-e2e}
OPERATOR_IMAGE=${OPERATOR_IMAGE:-polyarun/operator:e2e}
TRAINER_IMAGE=${TRAINER_IMAGE:-polyarun/trainer:e2e}
KUBECONFIG_FILE=${KUBECONFIG_FILE:-$PWD/.cache/kind-$CLUSTER.kubeconfig}
PYTHON=${PYTHON:-.venv/bin/python}

# image and trainer.image are objects in the chart's values schema: repository and tag.
# The e2e runs ask for gpus: 0 in every stage, so the chart's GPU-sized default resources
# never apply to them (resources.with_defaults); none are overridden here.
HELM_ARGS=(
  --set "image.repository=${OPERATOR_IMAGE%:*}" --set "image.tag=${OPERATOR_IMAGE##*:}"
  --set "trainer.image.repository=${TRAINER_IMAGE%:*}"
  --set "trainer.image.tag=${TRAINER_IMAGE##*:}"
)
if [ "${1:-}" = "--helm-args" ]; then
  printf '%s\n' "${HELM_ARGS[@]}"
  exit 0
fi

for tool in docker kind helm kubectl; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done
mkdir -p .cache

if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --wait 120s
fi
kind get kubeconfig --name "$CLUSTER" > "$KUBECONFIG_FILE"
export KUBECONFIG=$KUBECONFIG_FILE

docker build --target operator -t "$OPERATOR_IMAGE" .
docker build --target trainer -t "$TRAINER_IMAGE" .
kind load docker-image --name "$CLUSTER" "$OPERATOR_IMAGE" "$TRAINER_IMAGE"

helm upgrade --install polyarun charts/polyarun --namespace polya-system --create-namespace \
  "${HELM_ARGS[@]}" --wait --timeout 5m
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -

# The happy path's model: an untrained tiny Qwen2 and its tokenizer
# (polya_trainer.toy.build_tiny_model, no hub), written by a Job of the trainer image into a
# claim that the e2e runs then use as their workspace (spec.storage.pvc).
MODEL_CLAIM=polya-e2e-models
kubectl -n "$NS" delete job polya-e2e-model --ignore-not-found
kubectl -n "$NS" apply -f - <<YAML
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $MODEL_CLAIM}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 2Gi}}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: polya-e2e-model}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      securityContext: {runAsUser: 1000, runAsGroup: 1000, runAsNonRoot: true, fsGroup: 1000}
      containers:
      - name: build
        image: $TRAINER_IMAGE
        env: [{name: HOME, value: /tmp}, {name: HF_HUB_OFFLINE, value: "1"}]
        command: [python, -c, "from polya_trainer.toy import build_tiny_model; build_tiny_model('/workspace/models/tiny')"]
        volumeMounts: [{name: models, mountPath: /workspace}]
      volumes: [{name: models, persistentVolumeClaim: {claimName: $MODEL_CLAIM}}]
YAML
kubectl -n "$NS" wait --for=condition=complete job/polya-e2e-model --timeout=10m

status=0
POLYA_E2E_NAMESPACE=$NS POLYA_E2E_MODEL=/workspace/models/tiny POLYA_E2E_CLAIM=$MODEL_CLAIM \
  "$PYTHON" -m pytest tests/e2e -m e2e -v -rs || status=$?
if [ "$status" != 0 ]; then  # what the operator saw, for the CI log
  kubectl -n polya-system logs deploy/polyarun-operator --tail=200 || true
  kubectl -n "$NS" get polyaruns,jobs,pods,pvc -o wide || true
fi
if [ "${KEEP:-1}" = "0" ]; then kind delete cluster --name "$CLUSTER"; fi
exit $status
