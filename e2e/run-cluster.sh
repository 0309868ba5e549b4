#!/usr/bin/env bash
# The operator end to end on a real Kubernetes cluster. Ends with "N passed, N failed".
#
# Without KUBECONFIG: brings up what is missing (a Kubernetes control plane built
# from its Go modules, v1.37.2 unless WEIR_K8S_VERSION names another release, the
# node agent test fixture that runs the pods, an S3 server), runs every scenario of
# e2e/cluster/scenarios.py, and tears down what it started. Needs root (it edits
# /etc/hosts, and the node agent mounts each pod's volumes in a namespace of its own).
#
# With KUBECONFIG pointing at a reachable cluster (kind, k3d): runs the same
# scenarios there. The images must be in the cluster already (see e2e/README.md);
# the S3 server runs on this machine and the jobs' output goes to a host
# directory the nodes share (e2e/cluster/kind.yaml). Settings:
#   WEIR_E2E_IMAGE             the runtime image          (weir:dev)
#   WEIR_E2E_CONTROLLER_IMAGE  the controller image       (weir-controller:0.1.0)
#   WEIR_E2E_S3_ENDPOINT       how pods reach this machine's S3 server
#                              (default: the gateway of docker's "kind" network)
#   WEIR_E2E_OUT               the shared output directory (/tmp/weir-e2e-out)
#   WEIR_E2E_PROXY             1: reach coordinators through the API server's pod
#                              proxy (default; kind's pod IPs are not routable from
#                              the host), 0: at their pod IPs
#
# Usage: e2e/run-cluster.sh [--only scenario,scenario]
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
export WEIR_K8S_VERSION="${WEIR_K8S_VERSION:-1.37.2}"
K8S_BIN="${WEIR_K8S_BIN:-$HOME/.cache/weir/k8s-$WEIR_K8S_VERSION/bin}"
WORK=$(mktemp -d /tmp/weir-e2e-XXXXXX)
# The work directories of the two runs before this one stay for their logs;
# older ones go (each held copies of the binaries and the S3 objects).
ls -dt /tmp/weir-e2e-?????? 2>/dev/null | tail -n +4 | xargs -r rm -rf
# Job pods run as their own non-root user and reach the node agent's copies of
# the binaries under here.
chmod 755 "$WORK"
API_PORT=6443
S3_PORT=9101

# The toolchain, s3s-fs, the cached RocksDB library and Helm's library.
source .ci/setup.sh
# The test profile's binaries (dependencies optimised): the ones `.ci/run`
# has built for the tests already, where a release build would compile every
# dependency again.
cargo build --bin weir --bin weir-controller 2>&1 | tail -1

if [ -n "${KUBECONFIG:-}" ]; then
  kubectl cluster-info >/dev/null || { echo "KUBECONFIG=$KUBECONFIG: the cluster does not answer"; exit 2; }
  OUT="${WEIR_E2E_OUT:-/tmp/weir-e2e-out}"
  mkdir -p "$OUT"
  rm -rf "${OUT:?}"/*
  endpoint="${WEIR_E2E_S3_ENDPOINT:-}"
  if [ -z "$endpoint" ]; then
    gateway=$(docker network inspect kind -f '{{range .IPAM.Config}}{{.Gateway}} {{end}}' 2>/dev/null \
      | tr ' ' '\n' | grep -m1 '\.' || true)
    [ -n "$gateway" ] || { echo "set WEIR_E2E_S3_ENDPOINT to the address pods reach this machine at (http://HOST:$S3_PORT)"; exit 2; }
    endpoint="http://$gateway:$S3_PORT"
  fi
  trap 'pkill -f "$WORK" 2>/dev/null || true; echo "logs in $WORK"' EXIT
  echo "running on the cluster of $KUBECONFIG; pods reach S3 at $endpoint"
  "$HELM_VENV/bin/python" e2e/cluster/scenarios.py \
    --kubectl "$(command -v kubectl)" --kubeconfig "$KUBECONFIG" \
    --weir "$CARGO_TARGET_DIR/debug/weir" --s3-server "$WEIR_S3S_FS" --s3-dir "$WORK/s3" \
    --s3-host 0.0.0.0 --s3-port "$S3_PORT" --s3-endpoint "$endpoint" \
    $([ "${WEIR_E2E_PROXY:-1}" = 1 ] && echo --proxy) \
    --image "${WEIR_E2E_IMAGE:-weir:dev}" \
    --controller-image "${WEIR_E2E_CONTROLLER_IMAGE:-weir-controller:0.1.0}" \
    --out "$OUT" --chart "$REPO/charts/weir" --repo "$REPO" "$@"
  exit
fi

bash e2e/cluster/build.sh
# The node agent runs pods as processes on this host, so their emptyDir volumes
# (/var/lib/weir, where examples/state-machine.yaml writes its output) are this
# host's directories, kept from an earlier run: start them empty, as new pods'.
rm -rf /var/lib/weir
agent=""
cleanup() {
  [ -n "$agent" ] && kill "$agent" 2>/dev/null && wait "$agent" 2>/dev/null
  bash e2e/cluster/down.sh "$WORK/cluster"
  pkill -f "$WORK" 2>/dev/null || true
  # Logs stay; the copies of the binaries and the S3 objects go.
  find "$WORK" -type f -size +16M -delete 2>/dev/null || true
  echo "logs in $WORK"
}
trap cleanup EXIT

bash e2e/cluster/up.sh "$WORK/cluster" "$API_PORT"
python3 e2e/cluster/node_agent.py --kubeconfig "$WORK/cluster/admin.kubeconfig" --work "$WORK/node" \
  --api-port "$API_PORT" \
  --image "weir:dev=$CARGO_TARGET_DIR/debug/weir" \
  --image "weir-controller:0.1.0=$CARGO_TARGET_DIR/debug/weir-controller" \
  2> "$WORK/node-agent.log" &
agent=$!

"$HELM_VENV/bin/python" e2e/cluster/scenarios.py \
  --kubectl "$K8S_BIN/kubectl" --kubeconfig "$WORK/cluster/admin.kubeconfig" \
  --weir "$CARGO_TARGET_DIR/debug/weir" --s3-server "$WEIR_S3S_FS" --s3-dir "$WORK/s3" \
  --s3-port "$S3_PORT" --out "$WORK/out" --chart "$REPO/charts/weir" --repo "$REPO" "$@"
