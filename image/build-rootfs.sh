#!/usr/bin/env bash
# Builds the Debian root filesystem of a board with mmdebstrap (minbase +
# systemd + kernel + rauc) and caches it as a tarball:
#   $HOME/.cache/homesec/rootfs/<board>-<hash of packages and board files>.tar
# Prints the tarball's path. A cached tarball is reused (FORCE=1 rebuilds).
# Cross-architecture (arm64 on x86_64) runs under qemu-user via binfmt_misc.
. "$(dirname "$0")/lib.sh"

tarball="$(rootfs_tarball)"
if [ -s "$tarball" ] && [ "${FORCE:-0}" != 1 ]; then
    say "cached root filesystem: $tarball"
    echo "$tarball"
    exit 0
fi
command -v mmdebstrap >/dev/null || die "mmdebstrap is not installed (apt-get install mmdebstrap)"
mkdir -p "$(dirname "$tarball")"

host_arch="$(dpkg --print-architecture)"
if [ "$DEB_ARCH" != "$host_arch" ]; then
    # arm64 maintainer scripts run under qemu-user-static.
    [ -d /proc/sys/fs/binfmt_misc ] && { mountpoint -q /proc/sys/fs/binfmt_misc \
        || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; }
    case "$DEB_ARCH" in arm64) q=qemu-aarch64 ;; armhf) q=qemu-arm ;; *) q="qemu-$DEB_ARCH" ;; esac
    update-binfmts --enable "$q" 2>/dev/null || true
    [ -e "/proc/sys/fs/binfmt_misc/$q" ] || die "binfmt for $q is not registered (apt-get install qemu-user-static binfmt-support)"
fi

pkgs="$(package_list | paste -sd, -)"
modules="$INITRAMFS_MODULES"
say "mmdebstrap $SUITE $DEB_ARCH ($(package_list | wc -l) packages + dependencies); takes minutes"

tmp="$tarball.part"
rm -f "$tmp"
# setup-hook: the initramfs config (image/initramfs/) is in place before the
# kernel's postinst runs mkinitramfs, so it runs once, with MODULES=list
# (MODULES=most under qemu-user takes ~15 min per run on arm64). The module
# list comes in through a hook; the conffile /etc/initramfs-tools/modules stays
# untouched. The initramfs also grows the data partition on first boot.
# Boards with BOOT_PACKAGES: those .debs (GRUB EFI modules, Pi firmware, U-Boot) are only
# downloaded into /var/cache/homesec/boot-debs/; the image build unpacks them
# onto the boot partition and keeps them out of the root filesystem.
mods_file="$(mktemp)"
trap 'rm -f "$mods_file"' EXIT
{ echo "# board $BOARD (board/$BOARD/board.conf INITRAMFS_MODULES)"; printf '%s\n' $modules; } > "$mods_file"
extra=()
if [ -n "${BOOT_PACKAGES:-}" ]; then
    # The host's apt with the chroot's apt config (the chroot has no resolver by now).
    extra+=(--customize-hook="mkdir -p \"\$1/var/cache/homesec/boot-debs\" && cd \"\$1/var/cache/homesec/boot-debs\" && APT_CONFIG=\"\$MMDEBSTRAP_APT_CONFIG\" apt-get download $BOOT_PACKAGES")
fi
mmdebstrap --variant=minbase --format=tar --architectures="$DEB_ARCH" --components="${COMPONENTS// /,}" \
    --include="$pkgs" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --aptopt='APT::Install-Recommends "false"' \
    --setup-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/etc/initramfs-tools/hooks" "$1/etc/initramfs-tools/scripts/local-premount"' \
    --setup-hook="copy-in $image_dir/initramfs/conf.d/homesec.conf /etc/initramfs-tools/conf.d/" \
    --setup-hook="copy-in $image_dir/initramfs/hooks/homesec /etc/initramfs-tools/hooks/" \
    --setup-hook="copy-in $image_dir/initramfs/scripts/local-premount/homesec-grow-data /etc/initramfs-tools/scripts/local-premount/" \
    --setup-hook="upload $mods_file /etc/initramfs-tools/homesec-modules" \
    "${extra[@]}" \
    --customize-hook='rm -f "$1/etc/hostname" "$1/etc/resolv.conf"; : > "$1/etc/machine-id"; rm -f "$1/var/lib/dbus/machine-id"' \
    --customize-hook='rm -rf "$1/var/cache/apt/"* "$1/var/lib/apt/lists/"* "$1/var/log/"*.log' \
    "$SUITE" "$tmp" 2>&1 | sed -u 's/^/  /' >&2
mv -f "$tmp" "$tarball"
say "root filesystem: $tarball ($(human "$(stat -c %s "$tarball")"))"
# Keep only the newest two tarballs per board.
ls -1t "$(dirname "$tarball")/$BOARD-"*.tar 2>/dev/null | tail -n +3 | xargs -r rm -f
echo "$tarball"
