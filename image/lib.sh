# Common helpers for image/*.sh (sourced). Reads the board profile.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
image_dir="$repo/image"
BOARD="${BOARD:-x86_64}"
board_dir="$repo/board/$BOARD"
[ -f "$board_dir/board.conf" ] || { echo "unknown board '$BOARD' (board/*/board.conf)" >&2; exit 2; }
# shellcheck disable=SC1091
. "$board_dir/board.conf"

cache_root="${HOMESEC_CACHE:-$HOME/.cache/homesec}"
out_dir="${OUT_DIR:-$repo/.homesec/image/$BOARD}"
mkdir -p "$out_dir"

t_start=$(date +%s)
say() { echo "[$(basename "$0") +$(( $(date +%s) - t_start ))s] $*" >&2; }
die() { echo "$(basename "$0"): error: $*" >&2; exit 1; }

# Version written into os-release and the bundle manifest.
image_version() {
    if [ -n "${VERSION:-}" ]; then echo "$VERSION"; return; fi
    git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown
}

# Packages: image/packages.common + the board's kernel and extra packages.
package_list() {
    { grep -v '^\s*#' "$image_dir/packages.common" | sed '/^\s*$/d'
      for p in $KERNEL_PACKAGES $BOARD_PACKAGES; do echo "$p"; done; } | sort -u
}

# Cache key of the Debian root filesystem: everything that goes into it.
# (Only what changes the Debian tree; the rest is applied at image assembly.)
rootfs_key() {
    { package_list
      printf '%s\n' "$DEB_ARCH" "$SUITE" "$COMPONENTS" "${EXTRA_APT_SOURCES:-}" "$INITRAMFS_MODULES" "${BOOT_PACKAGES:-}"
      cat "$image_dir/build-rootfs.sh" $(find "$image_dir/initramfs" -type f | sort); } | sha256sum | cut -c1-16
}
rootfs_tarball() { echo "$cache_root/rootfs/$BOARD-$(rootfs_key).tar"; }

human() { numfmt --to=iec --suffix=B "$1"; }
