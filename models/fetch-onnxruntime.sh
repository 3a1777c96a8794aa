#!/usr/bin/env bash
# Installs the ONNX Runtime shared library from the `onnxruntime` wheel on PyPI
# (no Python needed) into ${HOMESEC_HOME:-<repo>/.homesec}/lib/ and prints its path.
# Point ORT_DYLIB_PATH (or `filter.config.ort_library`) at that path.
#
#   models/fetch-onnxruntime.sh            version 1.31.1
#   ORT_VERSION=1.31.1 models/fetch-onnxruntime.sh
#   ORT_ARCH=aarch64 models/fetch-onnxruntime.sh   another architecture's library (for
#                                          images), into .homesec/lib-aarch64/
#
# Idempotent: an installed library is kept. The wheel's sha256 comes from PyPI's
# simple index and is always checked.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$script_dir/.." && pwd)"
version="${ORT_VERSION:-1.31.1}"
index_url="${PYPI_SIMPLE_URL:-https://pypi.org/simple}/onnxruntime/"
case "$(uname -m)" in
    x86_64 | amd64) host_arch=x86_64 ;;
    aarch64 | arm64) host_arch=aarch64 ;;
    *) host_arch="$(uname -m)" ;;
esac
arch="${ORT_ARCH:-$host_arch}"
case "$arch" in
    x86_64 | aarch64) ;;
    *) echo "fetch-onnxruntime.sh: error: no onnxruntime wheel on PyPI for $arch; use the board vendor's build and set ORT_DYLIB_PATH" >&2; exit 1 ;;
esac
lib_dir="${HOMESEC_HOME:-$repo/.homesec}/lib"
# Another architecture's library (for a firmware image) goes into a directory of its own.
[ "$arch" = "$host_arch" ] || lib_dir="$lib_dir-$arch"
lib_name="libonnxruntime.so.$version"
dest="$lib_dir/$lib_name"
# Hidden so that nothing looking for libonnxruntime.so* picks it up.
hash_file="$lib_dir/.$lib_name.sha256"

die() { echo "fetch-onnxruntime.sh: error: $*" >&2; exit 1; }
say() { echo "fetch-onnxruntime.sh: $*" >&2; }

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | awk '{print $1}'
    else
        shasum -a 256 "$1" | awk '{print $1}'
    fi
}

# The library's own hash, recorded at install, tells an intact install from a damaged one.
if [ -s "$dest" ] && [ -s "$hash_file" ]; then
    if [ "$(sha256_of "$dest")" = "$(cat "$hash_file")" ]; then
        say "already installed"
        echo "$dest"
        exit 0
    fi
    say "$dest does not match its recorded sha256: reinstalling"
fi

[ "$(uname -s)" = Linux ] || die "this script installs the Linux library only"
command -v curl >/dev/null 2>&1 || die "curl is required"
command -v unzip >/dev/null 2>&1 || die "unzip is required (apt-get install unzip)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

say "looking up onnxruntime $version ($arch) in $index_url"
curl -fsSL --retry 3 --connect-timeout 20 -H 'Accept: text/html' -o "$work/index.html" "$index_url" \
    || die "cannot read the PyPI index $index_url"

# Any CPython manylinux wheel of this version carries the same native library; prefer
# cp312, skip free-threaded (cp31Xt) builds.
links="$(grep -o "href=\"[^\"]*/onnxruntime-$version-cp3[0-9]*-cp3[0-9]*-manylinux[^\"]*_$arch\.whl#sha256=[0-9a-f]*\"" "$work/index.html" \
    | sed 's/^href="//; s/"$//' || true)"
[ -n "$links" ] || die "no manylinux $arch wheel of onnxruntime $version in $index_url"
link="$(printf '%s\n' "$links" | grep -- "-cp312-cp312-" | head -n 1 || true)"
[ -n "$link" ] || link="$(printf '%s\n' "$links" | head -n 1)"
url="${link%%#*}"
sha="${link##*#sha256=}"
wheel="$work/${url##*/}"

say "downloading $url"
curl -fsSL --retry 3 --connect-timeout 20 -o "$wheel" "$url" || die "download failed: $url"
actual="$(sha256_of "$wheel")"
[ "$actual" = "$sha" ] || die "sha256 mismatch for ${url##*/}: got $actual, expected $sha"
say "sha256 ok ($sha)"

member="onnxruntime/capi/$lib_name"
unzip -q -o "$wheel" "$member" -d "$work/x" || die "$member not found in ${url##*/}"
mkdir -p "$lib_dir"
cp "$work/x/$member" "$lib_dir/.$lib_name.part"
chmod 0644 "$lib_dir/.$lib_name.part"
sha256_of "$lib_dir/.$lib_name.part" > "$hash_file.part"
mv -f "$lib_dir/.$lib_name.part" "$dest"
mv -f "$hash_file.part" "$hash_file"
say "installed $dest (set ORT_DYLIB_PATH=$dest)"
echo "$dest"
