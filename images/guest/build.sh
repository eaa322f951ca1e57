#!/usr/bin/env bash
# Builds (or finds in the cache) a guest artifact and prints the directory that holds it.
#
#   images/guest/build.sh kernel           -> <dir>/vmlinuz, <dir>/initramfs.img, <dir>/kernel.version
#   images/guest/build.sh rootfs <runtime> -> <dir>/rootfs.ext4 and the OCI layout <dir>/oci:rootfs
#                                              (runtime: python | node | shell)
#   images/guest/build.sh toolbox          -> <dir>/toolbox/ (becomes /.waggle in OCI-image guests)
#   images/guest/build.sh key <target> ...  -> the artifact's cache name only (builds nothing)
#
# Artifacts live in ${WAGGLE_CACHE_DIR:-~/.cache/waggle}/images/<name>-<key12>, where the key is
# a hash of every file of the recipe and of the exact package versions the Debian mirror would
# install now (guest-apt.sh; WAGGLE_GUEST_SUITE, default trixie). An unchanged recipe on an
# unchanged mirror is never rebuilt; an update of any package in the image makes a new one. A
# build writes into a temporary directory that is renamed into place only when complete.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${WAGGLE_CACHE_DIR:-$HOME/.cache/waggle}/images
key_only=false
if [ "${1:-}" = key ]; then
  key_only=true
  shift
fi
target=${1:?usage: build.sh [key] kernel | rootfs <runtime> | toolbox}
# shellcheck source=guest-apt.sh
. "$HERE/guest-apt.sh"
mkdir -p "$CACHE"
guest_apt_setup "$CACHE"

packages() { # package list files... -> their package names
  (cd "$HERE" && cat "$@" | grep -v '^#' | grep -v '^[[:space:]]*$')
}

# 12 hex chars: the recipe (this script and the target's files), the suite and its package sources
# (they end up in the guest's sources.list), and the package versions the mirror would install.
key() { # mode packages-file...
  local mode=$1 recipe versions
  shift
  recipe=$(cd "$HERE" && sha256sum build.sh "${recipe_files[@]}" | sha256sum | cut -c1-12)
  # shellcheck disable=SC2046 # one package name per line
  versions=$(guest_packages_key "$mode" $(packages "$@")) || exit 1
  { printf '%s\n%s\n' "$recipe" "$GUEST_SUITE"; cat "$WAGGLE_GUEST_SOURCES_LIST"; echo "$versions"; } |
    sha256sum | cut -c1-12
}

case "$target" in
  kernel)
    recipe_files=(build-kernel.sh initramfs/init kernel/packages.txt)
    name="kernel-$(key exact kernel/packages.txt)"
    builder=("$HERE/build-kernel.sh")
    ;;
  rootfs)
    runtime=${2:?usage: build.sh rootfs <python|node|shell>}
    [ -f "$HERE/rootfs/packages-$runtime.txt" ] || {
      echo "build.sh: unknown runtime '$runtime' (no rootfs/packages-$runtime.txt)" >&2
      exit 2
    }
    recipe_files=(build-rootfs.sh rootfs/packages-common.txt "rootfs/packages-$runtime.txt" rootfs/waggle-init rootfs/sshd_config)
    name="rootfs-$runtime-$(key minbase rootfs/packages-common.txt "rootfs/packages-$runtime.txt")"
    builder=("$HERE/build-rootfs.sh" "$runtime")
    ;;
  toolbox)
    recipe_files=(build-toolbox.sh toolbox/packages.txt toolbox/binaries.txt toolbox/waggle-init toolbox/sshd_config)
    name="toolbox-$(key minbase toolbox/packages.txt)"
    builder=("$HERE/build-toolbox.sh")
    ;;
  *)
    echo "build.sh: unknown target '$target'" >&2
    exit 2
    ;;
esac

out="$CACHE/$name"
if $key_only; then
  echo "$name"
  exit 0
fi
if [ -f "$out/.complete" ]; then
  echo "$out"
  exit 0
fi
tmp=$(mktemp -d "$CACHE/.build-$name-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
echo "build.sh: building $name" >&2
"${builder[@]}" "$tmp"
touch "$tmp/.complete"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "build.sh: built $name in $(($(date +%s) - start))s" >&2
echo "$out"
