#!/usr/bin/env bash
# Builds a Kubernetes control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl) and its etcd from their Go modules, once, into
# $WEIR_K8S_BIN (default ~/.cache/weir/k8s-$WEIR_K8S_VERSION/bin). Later runs on the
# same machine reuse it; a fresh machine downloads the modules from the Go module
# proxy and compiles them (about 15 minutes on two cores; Go's build cache and the
# module cache are kept under ~/.cache/weir too).
#
# k8s.io/kubernetes is not meant to be required as a module: its go.mod points each
# staging module (k8s.io/api, k8s.io/apiserver, ...) at a directory of its own tree.
# A throwaway module requires it and pins each of those to the release's v0.x tag
# instead; etcd is the server whose libraries that release requires.
#
#   WEIR_K8S_VERSION  the release (default 1.37.2; the oldest the operator supports: 1.33.13)
set -euo pipefail

VERSION="${WEIR_K8S_VERSION:-1.37.2}"
CACHE="$HOME/.cache/weir"
BIN="${WEIR_K8S_BIN:-$CACHE/k8s-$VERSION/bin}"
TOOLS=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd)
missing=0
for tool in "${TOOLS[@]}"; do
  [ -x "$BIN/$tool" ] || missing=1
done
if [ "$missing" = 0 ]; then
  echo "control plane v$VERSION in $BIN"
  exit 0
fi

command -v go >/dev/null || { echo "Go 1.26 or newer is required to build the control plane (https://go.dev/dl)"; exit 1; }
export GOPATH="$CACHE/gopath" GOCACHE="$CACHE/go-build" GOFLAGS=-mod=mod CGO_ENABLED=0
module="$CACHE/k8s-$VERSION/module"
mkdir -p "$module" "$BIN"
cd "$module"
if [ ! -f go.sum ]; then
  go mod download -json "k8s.io/kubernetes@v$VERSION" > download.json
  upstream="$GOPATH/pkg/mod/cache/download/k8s.io/kubernetes/@v/v$VERSION.mod"
  staging="v0.${VERSION#1.}"
  {
    echo "module weir.dev/e2e/k8s-control-plane"
    echo
    echo "go $(awk '$1 == "go" {print $2; exit}' "$upstream")"
    echo
    echo "require k8s.io/kubernetes v$VERSION"
    echo
    echo "replace ("
    awk -v v="$staging" '$2 == "=>" && $3 ~ /^\.\/staging\// {print "\t" $1 " => " $1 " " v}' "$upstream"
    echo ")"
  } > go.mod
  cat > tools.go <<'GO'
//go:build tools

// Package tools names what this module builds, so that `go mod tidy` keeps it.
package tools

import (
	_ "go.etcd.io/etcd/server/v3/etcdmain"
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
	_ "k8s.io/kubectl/pkg/cmd"
)
GO
  go mod tidy
fi

minor="${VERSION#1.}"
minor="${minor%%.*}"
ldflags=""
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  ldflags="$ldflags -X $pkg.gitVersion=v$VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
done
for tool in "${TOOLS[@]}"; do
  [ -x "$BIN/$tool" ] && continue
  case "$tool" in
    etcd) package=go.etcd.io/etcd/server/v3 ;;
    *) package="k8s.io/kubernetes/cmd/$tool" ;;
  esac
  echo "building $tool (Kubernetes v$VERSION)"
  go build -trimpath -ldflags "-s -w $ldflags" -o "$BIN/$tool.tmp" "$package"
  mv "$BIN/$tool.tmp" "$BIN/$tool"
done
echo "control plane v$VERSION in $BIN"
