#!/usr/bin/env bash
# Build the pinned Kubernetes components (and etcd) from their Go modules into a cache
# directory outside the repository. Idempotent: a component whose binary already exists in
# the cache is not rebuilt. The cache key is the Kubernetes version plus a hash of this
# script, so changing the recipe invalidates it.
#
# usage: build-kube.sh <out-dir> [component...]
#   components: etcd kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy
#   (default: etcd kube-apiserver kubectl)
set -euo pipefail

OUT=${1:?usage: build-kube.sh <out-dir> [component...]}
shift
COMPONENTS=("$@")
if [ ${#COMPONENTS[@]} -eq 0 ]; then COMPONENTS=(etcd kube-apiserver kubectl); fi

KUBE_VERSION=${KUBE_VERSION:-v1.36.3}
STAGING_VERSION="v0.${KUBE_VERSION#v1.}"
MINOR=$(echo "$KUBE_VERSION" | cut -d. -f2)

command -v go >/dev/null || { echo "build-kube: Go toolchain not found (need go >= 1.25 on PATH)" >&2; exit 1; }

mkdir -p "$OUT"
MOD="$OUT/.build-module"
mkdir -p "$MOD"
cd "$MOD"

if [ ! -f go.sum ]; then
  echo "build-kube: resolving k8s.io/kubernetes@$KUBE_VERSION module graph" >&2
  cat > go.mod <<GOMOD
module waggle.dev/kubebuild

go 1.25
GOMOD
  # etcd server main: three lines calling etcdmain.Main.
  mkdir -p etcd
  cat > etcd/main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubectl/pkg/cmd"
)
GO
  go mod edit -require="k8s.io/kubernetes@$KUBE_VERSION"
  # k8s.io/kubernetes replaces each staging module with ./staging/...; mirror those replaces
  # with the published staging module versions.
  KMOD=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -f "$KMOD" ] || { echo "build-kube: could not download k8s.io/kubernetes@$KUBE_VERSION go.mod" >&2; exit 1; }
  grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$KMOD" | awk '{print $1}' | sort -u | while read -r m; do
    go mod edit -replace="$m=$m@$STAGING_VERSION"
  done
  go mod tidy >&2
fi

LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$MINOR -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitTreeState=clean"

for c in "${COMPONENTS[@]}"; do
  if [ -x "$OUT/$c" ]; then continue; fi
  start=$(date +%s)
  echo "build-kube: building $c ($KUBE_VERSION)" >&2
  case "$c" in
    etcd) pkg=./etcd ;;
    kubectl) pkg=k8s.io/kubernetes/cmd/kubectl ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy) pkg=k8s.io/kubernetes/cmd/$c ;;
    *) echo "build-kube: unknown component '$c'" >&2; exit 2 ;;
  esac
  # Verify the output exists: a cold build on a fresh machine once exited 0 without writing it.
  for attempt in 1 2; do
    CGO_ENABLED=0 go build -trimpath -ldflags "$LDFLAGS" -o "$OUT/$c.tmp" "$pkg"
    if [ -s "$OUT/$c.tmp" ]; then break; fi
    echo "build-kube: go build of $c exited 0 but wrote no $OUT/$c.tmp (attempt $attempt)" >&2
    [ "$attempt" -eq 2 ] && exit 1
  done
  mv "$OUT/$c.tmp" "$OUT/$c"
  echo "build-kube: built $c in $(( $(date +%s) - start ))s" >&2
done
