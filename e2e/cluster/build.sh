#!/usr/bin/env bash
# Builds a Kubernetes v1.20.2 control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl) from Debian 12's own `kubernetes` source package with Debian's Go,
# once, into $WEIR_K8S_BIN (default ~/.cache/weir/k8s-1.20.2/bin). Later runs on the
# same machine reuse it; a fresh machine rebuilds (about 7-15 minutes on two cores).
# See ../shared/COMPONENTS.md for why this route (no kind, no Docker, no downloads).
set -euo pipefail

CACHE="${WEIR_K8S_CACHE:-$HOME/.cache/weir/k8s-1.20.2}"
BIN="${WEIR_K8S_BIN:-$CACHE/bin}"
VERSION="1.20.5+really1.20.2-1.1+deb12u1"
if [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-controller-manager" ] && [ -x "$BIN/kube-scheduler" ] && [ -x "$BIN/kubectl" ]; then
  echo "control plane binaries in $BIN"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in golang-1.19-go etcd-server golang-github-modern-go-reflect2-dev rsync make dpkg-dev openssl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq "${need[@]}"
fi

mkdir -p "$CACHE"
cd "$CACHE"
if [ ! -d src ]; then
  # A temporary deb-src entry copied from the machine's own sources (no archive
  # host is written anywhere), removed right after the download.
  src_list=/etc/apt/sources.list.d/weir-k8s-src.sources
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$src_list"
  trap 'rm -f "$src_list"; apt-get update -qq || true' EXIT
  apt-get update -qq
  apt-get source --download-only "kubernetes=$VERSION"
  rm -f "$src_list"
  trap - EXIT
  apt-get update -qq || true
  dpkg-source -x kubernetes_*.dsc src
  # The vendored reflect2 v1.0.1 crashes when built with Go >= 1.18: use Debian's.
  rm -rf src/vendor/github.com/modern-go/reflect2
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 src/vendor/github.com/modern-go/reflect2
  find src/vendor/github.com/modern-go/reflect2 -name '*_test.go' -delete
fi

export GOPATH="$CACHE/gopath" GO111MODULE=off GOPROXY=off CGO_ENABLED=0 GOFLAGS=
export PATH="/usr/lib/go-1.19/bin:$PATH"
mkdir -p "$GOPATH/src/k8s.io"
ln -sfn "$CACHE/src" "$GOPATH/src/k8s.io/kubernetes"
cd "$GOPATH/src/k8s.io/kubernetes"
if [ ! -f pkg/generated/openapi/zz_generated.openapi.go ]; then
  make gen_openapi || { rm -rf _output; make gen_openapi; }
fi
ldflags=""
for pkg in k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version k8s.io/kubernetes/vendor/k8s.io/component-base/version; do
  ldflags="$ldflags -X $pkg.gitVersion=v1.20.2 -X $pkg.gitMajor=1 -X $pkg.gitMinor=20"
done
mkdir -p "$BIN"
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  echo "building $cmd"
  go build -ldflags "$ldflags" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
  mv "$BIN/$cmd.tmp" "$BIN/$cmd"
done
echo "control plane binaries in $BIN"
