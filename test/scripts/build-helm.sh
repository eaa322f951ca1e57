#!/usr/bin/env bash
# Build helm from its Go module into a cache directory outside the repository (idempotent).
# usage: build-helm.sh <out-dir>     (HELM_VERSION, default v4.3.1)
set -euo pipefail
OUT=${1:?usage: build-helm.sh <out-dir>}
HELM_VERSION=${HELM_VERSION:-v4.3.1}
if [ -x "$OUT/helm" ]; then exit 0; fi
command -v go >/dev/null || { echo "build-helm: Go toolchain not found" >&2; exit 1; }
mkdir -p "$OUT"
echo "build-helm: building helm $HELM_VERSION from helm.sh/helm/v4 (first time only, ~3 min)" >&2
start=$(date +%s)
GOBIN="$OUT/.gobin" CGO_ENABLED=0 go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
  "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
mv "$OUT/.gobin/helm" "$OUT/helm.tmp"
"$OUT/helm.tmp" version >/dev/null
mv "$OUT/helm.tmp" "$OUT/helm"
rm -rf "$OUT/.gobin"
echo "build-helm: built helm $HELM_VERSION in $(( $(date +%s) - start ))s" >&2
