#!/usr/bin/env bash
# Build helm from its Go module into a cache directory outside the repository (idempotent).
# usage: build-helm.sh <out-dir>     (HELM_VERSION, default v4.3.1; v3.x builds helm.sh/helm/v3)
set -euo pipefail
OUT=${1:?usage: build-helm.sh <out-dir>}
HELM_VERSION=${HELM_VERSION:-v4.3.1}
if [ -x "$OUT/helm" ]; then exit 0; fi
command -v go >/dev/null || { echo "build-helm: Go toolchain not found" >&2; exit 1; }
MAJOR=${HELM_VERSION%%.*}   # v3 | v4
case "$MAJOR" in
  v3|v4) ;;
  *) echo "build-helm: HELM_VERSION must be v3.x.y or v4.x.y, got $HELM_VERSION" >&2; exit 1 ;;
esac
MODULE="helm.sh/helm/$MAJOR"
mkdir -p "$OUT"
echo "build-helm: building helm $HELM_VERSION from $MODULE (first time only, ~3 min)" >&2
start=$(date +%s)
LDFLAGS="-s -w -X $MODULE/internal/version.version=$HELM_VERSION"
if [ "$MAJOR" = v3 ]; then
  # Helm 3 takes its default Kubernetes version (for `template`, `lint`) from ldflags, as its
  # Makefile sets them from the client-go it is built with; without them it assumes v1.20.0 and
  # refuses charts that need a newer one. (Helm 4 reads it from the build info itself.)
  gomod=$(go mod download -json "$MODULE@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  minor=$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$gomod" | head -1)
  [ -n "$minor" ] || { echo "build-helm: no k8s.io/client-go version in $gomod" >&2; exit 1; }
  for pkg in pkg/lint/rules pkg/chartutil; do
    LDFLAGS="$LDFLAGS -X $MODULE/$pkg.k8sVersionMajor=1 -X $MODULE/$pkg.k8sVersionMinor=$minor"
  done
fi
GOBIN="$OUT/.gobin" CGO_ENABLED=0 go install -trimpath -ldflags "$LDFLAGS" "$MODULE/cmd/helm@$HELM_VERSION"
mv "$OUT/.gobin/helm" "$OUT/helm.tmp"
"$OUT/helm.tmp" version >/dev/null
mv "$OUT/helm.tmp" "$OUT/helm"
rm -rf "$OUT/.gobin"
echo "build-helm: built helm $HELM_VERSION in $(( $(date +%s) - start ))s" >&2
