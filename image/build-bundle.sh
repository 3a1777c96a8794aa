#!/usr/bin/env bash
# Builds a signed RAUC bundle (format=verity, squashfs zstd) of the board's root
# filesystem -- the same rootfs.ext4 that image/build-image.sh puts into slot A.
#
#   image/build-bundle.sh     -> $OUT_DIR/homesec-<board>-<version>.raucb (path printed)
#
# Environment: as image/build-image.sh (BOARD, VERSION, OUT_DIR, ROOTFS_OVERLAY, …), and
#   RAUC_KEY / RAUC_CERT    signing key (file or PKCS#11 URI) and certificate
#                           (default: the development PKI, image/pki.sh -> .homesec/pki/)
#   RAUC_KEYRING            CA the bundle is checked against after signing
#   ROOTFS_IMAGE            bundle this ext4 image instead of building one
. "$(dirname "$0")/lib.sh"

version="$(image_version)"
pki="$("$image_dir/pki.sh")"
key="${RAUC_KEY:-$pki/signing.key.pem}"
cert="${RAUC_CERT:-$pki/signing.cert.pem}"
keyring="${RAUC_KEYRING:-$pki/ca.cert.pem}"

rootfs="${ROOTFS_IMAGE:-}"
if [ -z "$rootfs" ]; then
    VERSION="$version" "$image_dir/build-image.sh" --rootfs >/dev/null
    rootfs="$out_dir/rootfs.ext4"
fi
[ -s "$rootfs" ] || die "no root filesystem image $rootfs"

bdir="$out_dir/bundle"
rm -rf "$bdir"
mkdir -p "$bdir"
cp --sparse=always "$rootfs" "$bdir/rootfs.ext4"
cat > "$bdir/manifest.raucm" <<EOM
[update]
compatible=homesec-$BOARD
version=$version
description=HomeSec $BOARD firmware $version

[bundle]
format=verity

[image.rootfs]
filename=rootfs.ext4
EOM
out="$out_dir/homesec-$BOARD-$version.raucb"
rm -f "$out"
say "rauc bundle (format=verity, squashfs zstd) of $(human "$(stat -c %s "$rootfs")") rootfs.ext4"
rauc bundle --cert="$cert" --key="$key" --keyring="$keyring" \
    --mksquashfs-args="-comp zstd -Xcompression-level 6$([ -t 2 ] || echo " -no-progress")" "$bdir" "$out" >&2
rm -rf "$bdir"
say "bundle: $out ($(human "$(stat -c %s "$out")"))"
echo "$out"
