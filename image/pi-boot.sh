#!/usr/bin/env bash
# Raspberry Pi boot files on the ESP (FAT, partition 1): the Pi firmware
# (Debian raspi-firmware), U-Boot (Debian u-boot-rpi) as the "kernel" the
# firmware starts, the board's device trees and config.txt. U-Boot's UEFI then
# starts /EFI/BOOT/BOOTAA64.EFI (GRUB), which does the A/B choice from grubenv
# like on x86_64. Best effort: this chain is not tested here (no Pi in QEMU).
#   image/pi-boot.sh ESP_IMAGE BOOT_DIR ROOTFS_DIR      (called by build-image.sh;
#   BOOT_DIR: the board's BOOT_PACKAGES unpacked)
. "$(dirname "$0")/lib.sh"
esp="$1" boot="$2" root="$3"
x="$(mktemp -d)"
trap 'rm -rf "$x"' EXIT
fw="$boot/usr/lib/raspi-firmware"
[ -d "$fw" ] || die "raspi-firmware files not found in $boot"
files=()
for f in "$fw"/start4*.elf "$fw"/fixup4*.dat "$fw"/bootcode.bin "$fw"/LICENCE.broadcom; do
    [ -e "$f" ] && files+=("$f")
done
uboot="$boot/usr/lib/u-boot/$PI_UBOOT"
[ -s "$uboot" ] || die "U-Boot $PI_UBOOT not found in $boot"
cp "$uboot" "$x/u-boot.bin"
files+=("$x/u-boot.bin")
kver="$(ls -1 "$root/usr/lib/modules" | sort -V | tail -n1)"
for dtb in $PI_DTBS; do
    f="$(find "$root/usr/lib/linux-image-$kver" -name "$dtb" | head -n1)"
    [ -n "$f" ] && files+=("$f") || say "warning: $dtb not in linux-image-$kver"
done
[ -d "$fw/overlays" ] && mcopy -s -i "$esp" "$fw/overlays" ::/
printf '# HomeSec %s: Pi firmware -> U-Boot (UEFI) -> /EFI/BOOT/BOOTAA64.EFI (GRUB, A/B)\n[all]\n%s' "$BOARD" "$PI_CONFIG_TXT" > "$x/config.txt"
files+=("$x/config.txt")
mcopy -i "$esp" "${files[@]}" ::/
say "Pi boot files on the ESP: $(for f in "${files[@]}"; do basename "$f"; done | paste -sd' ')"
