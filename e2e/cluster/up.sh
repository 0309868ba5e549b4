#!/usr/bin/env bash
# Starts a Kubernetes control plane on 127.0.0.1 from the binaries build.sh made:
# etcd, kube-apiserver (RBAC, client certificates, bound service-account tokens, the
# default admission plugins, Pod Security Admission among them),
# kube-controller-manager and kube-scheduler. Writes $WORK/admin.kubeconfig and
# $WORK/pids; down.sh stops it.
#
# Usage: up.sh WORK_DIR [API_PORT]
set -euo pipefail
WORK="$1"
PORT="${2:-6443}"
VERSION="${WEIR_K8S_VERSION:-1.37.2}"
BIN="${WEIR_K8S_BIN:-$HOME/.cache/weir/k8s-$VERSION/bin}"
mkdir -p "$WORK/pki" "$WORK/logs" "$WORK/etcd"
cd "$WORK"

# A CA, the API server's serving certificate, an admin client certificate, and
# the service-account signing key.
if [ ! -f pki/ca.crt ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=weir-e2e-ca" \
    -keyout pki/ca.key -out pki/ca.crt 2>/dev/null
  cat > pki/server.ext <<EXT
subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc
EXT
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout pki/server.key -out pki/server.csr 2>/dev/null
  openssl x509 -req -in pki/server.csr -CA pki/ca.crt -CAkey pki/ca.key -CAcreateserial \
    -days 30 -extfile pki/server.ext -out pki/server.crt 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=admin/O=system:masters" \
    -keyout pki/admin.key -out pki/admin.csr 2>/dev/null
  openssl x509 -req -in pki/admin.csr -CA pki/ca.crt -CAkey pki/ca.key -CAcreateserial \
    -days 30 -out pki/admin.crt 2>/dev/null
  openssl genrsa -out pki/sa.key 2048 2>/dev/null
  openssl rsa -in pki/sa.key -pubout -out pki/sa.pub 2>/dev/null
fi

kubeconfig() {
  cat > "$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://127.0.0.1:$PORT
    certificate-authority: $WORK/pki/ca.crt
users:
- name: admin
  user:
    client-certificate: $WORK/pki/admin.crt
    client-key: $WORK/pki/admin.key
contexts:
- name: e2e
  context: {cluster: e2e, user: admin}
current-context: e2e
KC
}
kubeconfig admin.kubeconfig

: > pids
"$BIN/etcd" --name e2e --data-dir "$WORK/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 > logs/etcd.log 2>&1 &
echo $! >> pids

"$BIN/kube-apiserver" \
  --etcd-servers=http://127.0.0.1:2379 \
  --bind-address=127.0.0.1 --secure-port="$PORT" \
  --advertise-address=127.0.0.1 \
  --tls-cert-file=pki/server.crt --tls-private-key-file=pki/server.key \
  --client-ca-file=pki/ca.crt \
  --authorization-mode=RBAC \
  --service-account-key-file=pki/sa.pub \
  --service-account-signing-key-file=pki/sa.key \
  --service-account-issuer=https://kubernetes.default.svc \
  --service-cluster-ip-range=10.96.0.0/16 \
  --endpoint-reconciler-type=none \
  --allow-privileged=true \
  > logs/kube-apiserver.log 2>&1 &
echo $! >> pids

for _ in $(seq 1 120); do
  if "$BIN/kubectl" --kubeconfig admin.kubeconfig get --raw /readyz >/dev/null 2>&1; then
    break
  fi
  sleep 0.5
done
"$BIN/kubectl" --kubeconfig admin.kubeconfig get --raw /readyz >/dev/null

"$BIN/kube-controller-manager" \
  --kubeconfig=admin.kubeconfig \
  --authentication-kubeconfig=admin.kubeconfig --authorization-kubeconfig=admin.kubeconfig \
  --bind-address=127.0.0.1 --secure-port=10257 \
  --service-account-private-key-file=pki/sa.key --root-ca-file=pki/ca.crt \
  --use-service-account-credentials=true \
  --controllers='*,-node-ipam-controller,-node-lifecycle-controller' \
  --leader-elect=false \
  > logs/kube-controller-manager.log 2>&1 &
echo $! >> pids

"$BIN/kube-scheduler" \
  --kubeconfig=admin.kubeconfig \
  --authentication-kubeconfig=admin.kubeconfig --authorization-kubeconfig=admin.kubeconfig \
  --bind-address=127.0.0.1 --secure-port=10259 \
  --leader-elect=false \
  > logs/kube-scheduler.log 2>&1 &
echo $! >> pids
# Both must be listening: a flag a release no longer takes ends the process at once.
for component in kube-controller-manager:10257 kube-scheduler:10259; do
  for _ in $(seq 60); do
    (exec 3<>"/dev/tcp/127.0.0.1/${component#*:}") 2>/dev/null && break
    sleep 0.5
  done
  (exec 3<>"/dev/tcp/127.0.0.1/${component#*:}") 2>/dev/null || {
    echo "${component%:*} is not serving; its log:"; tail -5 "logs/${component%:*}.log"; exit 1; }
done
echo "control plane up on https://127.0.0.1:$PORT (kubeconfig $WORK/admin.kubeconfig)"
