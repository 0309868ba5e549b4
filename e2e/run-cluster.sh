#!/usr/bin/env bash
# The operator end to end on a real Kubernetes control plane: brings up what is
# missing (a v1.20 control plane built from Debian's source package, the node agent
# test fixture, an S3 server), runs every scenario of e2e/cluster/scenarios.py,
# tears down what it started, and ends with "N passed, N failed".
#
# Usage: e2e/run-cluster.sh [--only scenario,scenario]
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
K8S_BIN="${WEIR_K8S_BIN:-$HOME/.cache/weir/k8s-1.20.2/bin}"
WORK=$(mktemp -d /tmp/weir-e2e-XXXXXX)
API_PORT=6443

if [ -n "${KUBECONFIG:-}" ]; then
  echo "KUBECONFIG is set: the scenarios read job output from this machine and run S3 on"
  echo "127.0.0.1, which pods of an external cluster (kind, k3d) cannot reach; unset KUBECONFIG"
  echo "to run them on the local control plane."
  exit 2
fi

# The toolchain, s3s-fs, the cached RocksDB library and Helm's library.
source .ci/setup.sh
bash e2e/cluster/build.sh
cargo build --release --bin weir --bin weir-controller 2>&1 | tail -1

agent=""
cleanup() {
  [ -n "$agent" ] && kill "$agent" 2>/dev/null && wait "$agent" 2>/dev/null
  bash e2e/cluster/down.sh "$WORK/cluster"
  pkill -f "$WORK" 2>/dev/null || true
  echo "logs in $WORK"
}
trap cleanup EXIT

bash e2e/cluster/up.sh "$WORK/cluster" "$API_PORT"
python3 e2e/cluster/node_agent.py --kubeconfig "$WORK/cluster/admin.kubeconfig" --work "$WORK/node" \
  --api-port "$API_PORT" \
  --image "weir:dev=$CARGO_TARGET_DIR/release/weir" \
  --image "weir-controller:0.1.0=$CARGO_TARGET_DIR/release/weir-controller" \
  2> "$WORK/node-agent.log" &
agent=$!

"$HELM_VENV/bin/python" e2e/cluster/scenarios.py \
  --kubectl "$K8S_BIN/kubectl" --kubeconfig "$WORK/cluster/admin.kubeconfig" \
  --weir "$CARGO_TARGET_DIR/release/weir" --s3-server "$WEIR_S3S_FS" --s3-dir "$WORK/s3" \
  --s3-port 9101 --out "$WORK/out" --chart "$REPO/charts/weir" --repo "$REPO" "$@"
