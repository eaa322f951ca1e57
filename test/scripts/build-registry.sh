#!/usr/bin/env bash
# Build the CNCF distribution registry (the reference OCI registry) from its Go module into a
# cache directory outside the repository (idempotent).
# usage: build-registry.sh <out-dir>     (REGISTRY_VERSION, default v3.1.2)
set -euo pipefail
OUT=${1:?usage: build-registry.sh <out-dir>}
REGISTRY_VERSION=${REGISTRY_VERSION:-v3.1.2}
if [ -x "$OUT/registry" ]; then exit 0; fi
command -v go >/dev/null || { echo "build-registry: Go toolchain not found" >&2; exit 1; }
MODULE=github.com/distribution/distribution/v3
mkdir -p "$OUT"
echo "build-registry: building registry $REGISTRY_VERSION from $MODULE (first time only)" >&2
start=$(date +%s)
GOBIN="$OUT/.gobin" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w -X $MODULE/version.version=$REGISTRY_VERSION" \
  "$MODULE/cmd/registry@$REGISTRY_VERSION"
mv "$OUT/.gobin/registry" "$OUT/registry.tmp"
"$OUT/registry.tmp" --version >/dev/null
mv "$OUT/registry.tmp" "$OUT/registry"
rm -rf "$OUT/.gobin"
echo "build-registry: built registry $REGISTRY_VERSION in $(( $(date +%s) - start ))s" >&2
