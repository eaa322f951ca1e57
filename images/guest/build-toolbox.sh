#!/usr/bin/env bash
# Guest toolbox: what Waggle needs inside any guest, under /.waggle, brought by Waggle instead of
# asked of the image: its init, an SSH server, the root helpers exec uses (prlimit, setpriv,
# pkill), resize2fs, tini and a static busybox for everything else. Dynamic programs are taken
# from Debian and re-pointed (patchelf) at a glibc loader and libraries inside /.waggle/lib, so
# they neither need nor touch the image's own libc.
# usage: build-toolbox.sh <out-dir>   (normally called through build.sh, which caches)
#   <out-dir>/toolbox/{bin,lib,etc}   copied into an image's root as /.waggle
set -euo pipefail

OUT=${1:?usage: build-toolbox.sh <out-dir>}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=guest-apt.sh
. "$HERE/guest-apt.sh" # GUEST_SUITE; the package sources (those build.sh keyed the image on)
[ -n "${WAGGLE_GUEST_SOURCES_LIST:-}" ] || guest_apt_setup "${WAGGLE_CACHE_DIR:-$HOME/.cache/waggle}/images"
unset APT_CONFIG # mmdebstrap sets up its own apt
PREFIX=/.waggle

for tool in mmdebstrap patchelf; do
  command -v "$tool" >/dev/null || { echo "build-toolbox: missing $tool (apt-get install mmdebstrap patchelf)" >&2; exit 1; }
done

packages=$(grep -v '^#' "$HERE/toolbox/packages.txt" | paste -sd, -)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tree="$work/root"
mmdebstrap --variant=minbase --mode=root --quiet --skip=output/mknod --include="$packages" "$GUEST_SUITE" "$tree" "$WAGGLE_GUEST_SOURCES_LIST" >&2

box="$OUT/toolbox"
mkdir -p "$box/bin" "$box/lib" "$box/etc"
loader=/lib64/ld-linux-x86-64.so.2
declare -A libs=()
while read -r bin; do
  [ -z "$bin" ] || [[ "$bin" == \#* ]] && continue
  if [[ "$bin" == \?* ]]; then
    bin=${bin#\?}
    [ -f "$tree$bin" ] || continue
  fi
  [ -f "$tree$bin" ] || { echo "build-toolbox: $bin is not in the packages" >&2; exit 1; }
  name=$(basename "$bin")
  [ "$name" = tini-static ] && name=tini
  cp -L "$tree$bin" "$box/bin/$name"
  if patchelf --print-interpreter "$box/bin/$name" >/dev/null 2>&1; then
    # Libraries as the image's own loader would resolve them in the Debian tree.
    while read -r lib; do libs[$lib]=1; done < <(
      chroot "$tree" "$loader" --list "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3}'
    )
    patchelf --set-interpreter "$PREFIX/lib/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$PREFIX/lib" "$box/bin/$name"
  fi
done < "$HERE/toolbox/binaries.txt"
cp -L "$tree$loader" "$box/lib/ld-linux-x86-64.so.2"
for lib in "${!libs[@]}"; do cp -L "$tree$lib" "$box/lib/"; done
# Programs of the toolbox that sshd execs by its compiled-in paths are called through the config.
# busybox applets the init uses, by name, without depending on the image's PATH.
for applet in sh mount umount mkdir chmod chown cat head rm env ip hostname grep sed sleep ln \
  cut tr date touch ls stat; do
  ln -s busybox "$box/bin/$applet"
done
install -m 0755 "$HERE/toolbox/waggle-init" "$box/bin/waggle-init"
install -m 0644 "$HERE/toolbox/sshd_config" "$box/etc/sshd_config"
# sshd's helpers at their toolbox paths (the options exist only where the helpers do).
[ -f "$box/bin/sshd-session" ] && echo "SshdSessionPath $PREFIX/bin/sshd-session" >> "$box/etc/sshd_config"
[ -f "$box/bin/sshd-auth" ] && echo "SshdAuthPath $PREFIX/bin/sshd-auth" >> "$box/etc/sshd_config"
for helper in sshd-session sshd-auth; do
  if grep -qa "/usr/lib/openssh/$helper" "$box/bin/sshd" && [ ! -f "$box/bin/$helper" ]; then
    echo "build-toolbox: this sshd runs /usr/lib/openssh/$helper, which the toolbox lacks" >&2
    exit 1
  fi
done
chmod -R go-w "$box"
# A smoke test in an empty root: every dynamic program must start with only /.waggle present.
probe="$work/probe"
mkdir -p "$probe/dev" "$probe/etc" "$probe/run/sshd"
printf 'root:x:0:0:root:/root:/bin/sh\nsshd:x:74:74::/run/sshd:/bin/false\n' > "$probe/etc/passwd"
: > "$probe/dev/null" # a plain file will do for sanitise_stdfd() (no mknod in containers)
cp -a "$box" "$probe$PREFIX"
mkdir -p "$probe/run/waggle"
chroot "$probe" "$PREFIX/bin/ssh-keygen" -q -t ecdsa -N '' -f /run/waggle/ssh_host_ecdsa_key >/dev/null
: > "$probe/run/waggle/authorized_keys"
chroot "$probe" "$PREFIX/bin/sshd" -t -f "$PREFIX/etc/sshd_config"
for p in "$box"/bin/*; do
  [ -L "$p" ] || ! patchelf --print-interpreter "$p" >/dev/null 2>&1 && continue
  p=$PREFIX/bin/$(basename "$p")
  if ! deps=$(chroot "$probe" "$PREFIX/lib/ld-linux-x86-64.so.2" --list "$p" 2>&1) || grep -q 'not found' <<<"$deps"; then
    echo "build-toolbox: $p does not load in an empty root:" >&2
    echo "$deps" >&2
    exit 1
  fi
done
chroot "$probe" "$PREFIX/bin/tini" --version >/dev/null
chroot "$probe" "$PREFIX/bin/sh" -c 'echo ok' >/dev/null
echo "build-toolbox: $(du -sh "$box" | cut -f1) in $box ($(ls "$box/lib" | wc -l) libraries)" >&2
