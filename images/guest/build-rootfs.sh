#!/usr/bin/env bash
# Runtime root filesystem: Debian trixie (minbase; WAGGLE_GUEST_SUITE) + the runtime's packages +
# sshd + the Waggle guest init, as an ext4 image (rootfs.ext4) and as an OCI image layout (oci:rootfs). No secrets: host keys and authorized keys arrive per VM.
# usage: build-rootfs.sh <runtime> <out-dir>   (normally called through build.sh, which caches)
set -euo pipefail

RUNTIME=${1:?usage: build-rootfs.sh <runtime> <out-dir>}
OUT=${2:?usage: build-rootfs.sh <runtime> <out-dir>}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=guest-apt.sh
. "$HERE/guest-apt.sh" # GUEST_SUITE; the package sources (those build.sh keyed the image on)
[ -n "${WAGGLE_GUEST_SOURCES_LIST:-}" ] || guest_apt_setup "${WAGGLE_CACHE_DIR:-$HOME/.cache/waggle}/images"
unset APT_CONFIG # mmdebstrap sets up its own apt

for tool in mmdebstrap mkfs.ext4 umoci; do
  command -v "$tool" >/dev/null || { echo "build-rootfs: missing $tool (apt-get install mmdebstrap e2fsprogs umoci)" >&2; exit 1; }
done

packages=$(cat "$HERE/rootfs/packages-common.txt" "$HERE/rootfs/packages-$RUNTIME.txt" | grep -v '^#' | paste -sd, -)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tree="$work/root"

mmdebstrap --variant=minbase --mode=root --quiet --skip=output/mknod \
  --include="$packages" \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_* "$1"/etc/machine-id; : > "$1"/etc/machine-id' \
  --customize-hook='chroot "$1" useradd --create-home --uid 1000 --user-group --shell /bin/bash sandbox' \
  --customize-hook='chroot "$1" usermod --password "*" sandbox' \
  --customize-hook="install -m 0755 '$HERE/rootfs/waggle-init' \"\$1\"/sbin/waggle-init" \
  --customize-hook="install -m 0644 '$HERE/rootfs/sshd_config' \"\$1\"/etc/ssh/sshd_config" \
  --customize-hook='printf "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n" > "$1"/etc/pip.conf' \
  --customize-hook='printf "cafile=/etc/ssl/certs/ca-certificates.crt\n" > "$1"/etc/npmrc' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/usr/share/doc/* "$1"/usr/share/man/*' \
  "$GUEST_SUITE" "$tree" "$WAGGLE_GUEST_SOURCES_LIST" >&2

# The same tree as an OCI image (one layer), which `pnpm waggle up` pushes to the node's registry
# and node-agents pull (WAGGLE_IMAGE_<RUNTIME>=<reference>) instead of building it from a mirror.
tar -C "$tree" --numeric-owner --xattrs --xattrs-include='*' -cf "$work/root.tar" .
umoci init --layout "$OUT/oci"
umoci new --image "$OUT/oci:rootfs"
umoci raw add-layer --image "$OUT/oci:rootfs" "$work/root.tar"
umoci config --image "$OUT/oci:rootfs" --config.env 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --config.label "dev.waggle.runtime=$RUNTIME"
rm -f "$work/root.tar"

used_mib=$(du -sm "$tree" | cut -f1)
size_mib=$((used_mib + used_mib / 4 + 128))
mkfs.ext4 -q -F -L waggle-root -d "$tree" -m 0 -E lazy_itable_init=0,lazy_journal_init=0 "$OUT/rootfs.ext4" "${size_mib}M" >&2
echo "$RUNTIME" > "$OUT/runtime"
echo "build-rootfs: $RUNTIME rootfs ${used_mib} MiB used, image ${size_mib} MiB" >&2
