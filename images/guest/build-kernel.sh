#!/usr/bin/env bash
# Guest kernel + initramfs: Debian's linux-image-cloud-amd64 and a busybox initramfs that loads
# the few modules a QEMU microvm guest needs, mounts /dev/vda and switches to the rootfs.
# usage: build-kernel.sh <out-dir>   (normally called through build.sh, which caches)
set -euo pipefail

OUT=${1:?usage: build-kernel.sh <out-dir>}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Modules the guest needs; dependencies are resolved from modules.dep. ext4 and the 8250 serial
# console are built into the cloud kernel.
MODULES=(virtio_mmio virtio_blk virtio_net qemu_fw_cfg)
BUSYBOX=/bin/busybox

for tool in apt-get dpkg-deb /sbin/depmod cpio gzip; do
  command -v "$tool" >/dev/null || { echo "build-kernel: missing $tool (apt-get install kmod cpio)" >&2; exit 1; }
done
[ -x "$BUSYBOX" ] || { echo "build-kernel: need a static busybox at $BUSYBOX (apt-get install busybox-static)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

resolve_kernel_package() {
  { apt-cache depends linux-image-cloud-amd64 2>/dev/null || true; } | awk '/Depends: linux-image-[0-9]/{print $2; exit}'
}
pkg=$(resolve_kernel_package)
if [ -z "$pkg" ]; then
  # Container images ship without package lists (the node-agent image among them).
  echo "build-kernel: no package lists for linux-image-cloud-amd64; running apt-get update" >&2
  apt-get update -q >&2 || { echo "build-kernel: apt-get update failed: is a Debian mirror reachable?" >&2; exit 1; }
  pkg=$(resolve_kernel_package)
fi
[ -n "$pkg" ] || { echo "build-kernel: cannot resolve linux-image-cloud-amd64 from the apt sources" >&2; exit 1; }
apt-get download -q "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true
dpkg-deb -x ./*.deb x
version=$(ls x/lib/modules)
/sbin/depmod -b x "$version"
cp "x/boot/vmlinuz-$version" "$OUT/vmlinuz"
echo "$version" > "$OUT/kernel.version"

# Resolve module dependencies, dependencies first, each once.
declare -A seen=()
ordered=()
add_module() {
  local name=$1 line path dep
  line=$(grep -E "/${name}\.ko(\.[a-z]+)?:" "x/lib/modules/$version/modules.dep" | head -1)
  [ -n "$line" ] || { echo "build-kernel: module $name not found in $version" >&2; exit 1; }
  path=${line%%:*}
  [ -n "${seen[$path]:-}" ] && return
  for dep in ${line#*:}; do add_module "$(basename "$dep" | sed -E 's/\.ko(\.[a-z]+)?$//')"; done
  seen[$path]=1
  ordered+=("$path")
}
for m in "${MODULES[@]}"; do add_module "$m"; done

root="$work/initramfs"
mkdir -p "$root"/{bin,dev,proc,sys,newroot,lib/modules}
cp "$BUSYBOX" "$root/bin/busybox"
for p in "${ordered[@]}"; do
  cp "x/lib/modules/$version/$p" "$root/lib/modules/"
  basename "$p" >> "$root/lib/modules/load-order"
done
install -m 0755 "$HERE/initramfs/init" "$root/init"
(cd "$root" && find . -print0 | sort -z | cpio --null -o -H newc --quiet --reproducible) | gzip -9n > "$OUT/initramfs.img"
printf '%s\n' "${ordered[@]}" > "$OUT/modules.txt"
echo "build-kernel: $version, initramfs $(du -h "$OUT/initramfs.img" | cut -f1) with ${#ordered[@]} modules" >&2
