#!/usr/bin/env bash
# Builds (or finds in the cache) a guest artifact and prints the directory that holds it.
#
#   images/guest/build.sh kernel           -> <dir>/vmlinuz, <dir>/initramfs.img, <dir>/kernel.version
#   images/guest/build.sh rootfs <runtime> -> <dir>/rootfs.ext4 and the OCI layout <dir>/oci:rootfs
#                                              (runtime: python | node | shell)
#   images/guest/build.sh toolbox          -> <dir>/toolbox/ (becomes /.waggle in OCI-image guests)
#
# Artifacts live in ${WAGGLE_CACHE_DIR:-~/.cache/waggle}/images/<name>-<hash12>, where the hash
# covers every file of the recipe. An unchanged recipe is never rebuilt; a build writes into a
# temporary directory that is renamed into place only when complete.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${WAGGLE_CACHE_DIR:-$HOME/.cache/waggle}/images
target=${1:?usage: build.sh kernel | rootfs <runtime> | toolbox}

recipe_hash() { # files... -> 12 hex chars
  (cd "$HERE" && sha256sum "$@" | sha256sum | cut -c1-12)
}

case "$target" in
  kernel)
    name="kernel-$(recipe_hash build.sh build-kernel.sh initramfs/init)"
    builder=("$HERE/build-kernel.sh")
    ;;
  rootfs)
    runtime=${2:?usage: build.sh rootfs <python|node|shell>}
    [ -f "$HERE/rootfs/packages-$runtime.txt" ] || {
      echo "build.sh: unknown runtime '$runtime' (no rootfs/packages-$runtime.txt)" >&2
      exit 2
    }
    name="rootfs-$runtime-$(recipe_hash build.sh build-rootfs.sh rootfs/packages-common.txt "rootfs/packages-$runtime.txt" rootfs/waggle-init rootfs/sshd_config)"
    builder=("$HERE/build-rootfs.sh" "$runtime")
    ;;
  toolbox)
    name="toolbox-$(recipe_hash build.sh build-toolbox.sh toolbox/packages.txt toolbox/binaries.txt toolbox/waggle-init toolbox/sshd_config)"
    builder=("$HERE/build-toolbox.sh")
    ;;
  *)
    echo "build.sh: unknown target '$target'" >&2
    exit 2
    ;;
esac

out="$CACHE/$name"
if [ -f "$out/.complete" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$CACHE"
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
