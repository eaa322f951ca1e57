#!/usr/bin/env bash
# Guest kernel + initramfs: linux-image-cloud-amd64 of the guest suite (kernel/packages.txt; from
# the guest package sources, not the host's) and a busybox initramfs that loads the few modules a
# QEMU microvm guest needs, mounts /dev/vda and switches to the rootfs.
# usage: build-kernel.sh <out-dir>   (normally called through build.sh, which caches)
set -euo pipefail

OUT=${1:?usage: build-kernel.sh <out-dir>}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=guest-apt.sh
. "$HERE/guest-apt.sh"
if [ -z "${WAGGLE_GUEST_SOURCES_LIST:-}" ]; then
  guest_apt_setup "${WAGGLE_CACHE_DIR:-$HOME/.cache/waggle}/images"
  guest_apt_update || { echo "build-kernel: apt-get update failed: is a Debian mirror reachable?" >&2; exit 1; }
fi
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

meta=$(grep -v '^#' "$HERE/kernel/packages.txt" | head -1)
# Under the lock that keeps other builds' `apt-get update` off the package lists meanwhile.
exec 9> "$WAGGLE_GUEST_APT_LOCK"
flock 9
pkg=$({ apt-cache depends "$meta" 2>/dev/null || true; } | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
[ -n "$pkg" ] || { echo "build-kernel: cannot resolve $meta from the guest package sources" >&2; exit 1; }
apt-get download -q "$pkg" >&2
exec 9>&-
dpkg-deb -x ./*.deb x
# trixie's merged /usr puts modules in /usr/lib/modules; depmod -b wants <base>/lib/modules.
[ -d x/lib/modules ] || { mkdir -p x/lib && mv x/usr/lib/modules x/lib/modules; }
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
  # busybox insmod takes plain modules; trixie's are xz-compressed (the initramfs is gzipped).
  ko=$(basename "$p" | sed -E 's/\.ko\.[a-z]+$/.ko/')
  case "$p" in
    *.ko.xz) "$BUSYBOX" xzcat "x/lib/modules/$version/$p" > "$root/lib/modules/$ko" ;;
    *.ko) cp "x/lib/modules/$version/$p" "$root/lib/modules/$ko" ;;
    *) echo "build-kernel: cannot unpack module $p" >&2; exit 1 ;;
  esac
  echo "$ko" >> "$root/lib/modules/load-order"
done
install -m 0755 "$HERE/initramfs/init" "$root/init"
(cd "$root" && find . -print0 | sort -z | cpio --null -o -H newc --quiet --reproducible) | gzip -9n > "$OUT/initramfs.img"
printf '%s\n' "${ordered[@]}" > "$OUT/modules.txt"
echo "build-kernel: $version, initramfs $(du -h "$OUT/initramfs.img" | cut -f1) with ${#ordered[@]} modules" >&2
