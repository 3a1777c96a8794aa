#!/usr/bin/env bash
# Builds the part of FFmpeg that HomeSec decodes video with: libavcodec with
# only the H.264 and H.265 decoders, and libavutil, as static PIC libraries
# (LGPL-2.1-or-later; see vendor/ffmpeg/README.md).
#
#   vendor/ffmpeg/build.sh PREFIX CC [ARCH]
#
# PREFIX gets include/ and lib/libavcodec.a, lib/libavutil.a. CC is the C
# compiler for the target; ARCH (e.g. aarch64) makes it a cross build.
#
# The source is FFmpeg's release tarball as Debian stable ships it (the 5.1
# line, with Debian's security updates): the tarball named by the signed
# Sources index of Debian 12 (InRelease checked with gpgv against
# debian-archive-keyring, then the index's SHA-256 of the tarball). It is
# kept in $HOMESEC_CACHE (default $HOME/.cache/homesec) and reused. Offline,
# HOMESEC_FFMPEG_SRC=/path/to/ffmpeg-5.1.x.tar.xz uses that tarball instead.
set -euo pipefail

prefix=${1:?usage: build.sh PREFIX CC [ARCH]}
cc=${2:?usage: build.sh PREFIX CC [ARCH]}
arch=${3:-}
cache=${HOMESEC_CACHE:-${HOME:-/tmp}/.cache/homesec}/ffmpeg-src
mirror=${HOMESEC_DEBIAN_MIRROR:-http://deb.debian.org/debian}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
say() { echo "ffmpeg/build.sh: $*" >&2; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# --- the source tarball -------------------------------------------------
fetch_source() {
    mkdir -p "$cache"
    local tmp; tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' RETURN
    say "finding FFmpeg's source in Debian 12's signed index ($mirror)"
    curl -fsS --retry 3 -o "$tmp/InRelease" "$mirror/dists/bookworm/InRelease"
    [ -f "$keyring" ] || { say "no $keyring (apt-get install debian-archive-keyring), or set HOMESEC_FFMPEG_SRC"; exit 1; }
    gpgv --keyring "$keyring" --output "$tmp/Release" "$tmp/InRelease" 2>/dev/null \
        || { say "the signature of $mirror/dists/bookworm/InRelease does not verify"; exit 1; }
    local want
    want=$(awk '/^SHA256:/{s=1;next} /^[^ ]/{s=0} s && $3=="main/source/Sources.xz"{print $1}' "$tmp/Release")
    curl -fsS --retry 3 -o "$tmp/Sources.xz" "$mirror/dists/bookworm/main/source/Sources.xz"
    echo "$want  $tmp/Sources.xz" | sha256sum -c --quiet - || { say "Sources.xz does not match the signed index"; exit 1; }
    local entry dir sum name
    # (awk reads to the end: an early exit would fail the pipe under pipefail)
    entry=$(xz -dc "$tmp/Sources.xz" | awk '!done && /^Package: ffmpeg$/{p=1} p && /^$/{p=0; done=1} p')
    dir=$(awk '/^Directory:/{print $2}' <<<"$entry")
    read -r sum name < <(awk '/^Checksums-Sha256:/{s=1;next} /^[^ ]/{s=0} s && $3 ~ /orig\.tar\.xz$/{print $1, $3}' <<<"$entry")
    [ -n "$dir" ] && [ -n "$name" ] || { say "no ffmpeg source package in the index"; exit 1; }
    say "downloading $name"
    curl -fsS --retry 3 -o "$tmp/$name" "$mirror/$dir/$name"
    echo "$sum  $tmp/$name" | sha256sum -c --quiet - || { say "$name does not match the signed index"; exit 1; }
    mv "$tmp/$name" "$cache/$name"
}

src=${HOMESEC_FFMPEG_SRC:-}
if [ -z "$src" ]; then
    src=$(ls "$cache"/ffmpeg_*.orig.tar.xz 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$src" ]; then fetch_source; src=$(ls "$cache"/ffmpeg_*.orig.tar.xz | sort -V | tail -n 1); fi
fi
[ -f "$src" ] || { say "no source tarball at $src"; exit 1; }

# --- configure and build --------------------------------------------------
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xf "$src"
cd "$work"/ffmpeg-*
# Every patch beside this script, by name (build.rs hashes the same set).
for p in "$here"/*.patch; do
    patch -p1 --quiet --forward <"$p" || { say "cannot apply $(basename "$p")"; exit 1; }
done
# Installed next to PREFIX and moved into place at the end, so an interrupted
# build never leaves a PREFIX that looks complete.
rm -rf "$prefix.partial"
flags=(
    --prefix="$prefix.partial" --cc="$cc"
    --enable-static --disable-shared --enable-pic
    --disable-everything --disable-autodetect --disable-programs --disable-doc
    --disable-network --disable-avdevice --disable-avformat --disable-avfilter
    --disable-swscale --disable-swresample --disable-postproc --disable-debug
    --enable-decoder=h264,hevc
)
if [ -n "$arch" ]; then
    flags+=(--enable-cross-compile --arch="$arch" --target-os=linux)
    # aarch64-linux-gnu-gcc -> aarch64-linux-gnu- for ar, nm, strip.
    case "$(basename "$cc")" in *-gcc) flags+=(--cross-prefix="${cc%gcc}") ;; esac
fi
if ! command -v nasm >/dev/null && [ -z "$arch" ]; then
    say "nasm not found: building without x86 assembly (decoding is several times slower; apt-get install nasm)"
    flags+=(--disable-x86asm)
fi
say "configuring ($(basename "$src")${arch:+, $arch})"
./configure "${flags[@]}" >configure.log 2>&1 || { tail -n 30 configure.log >&2; exit 1; }
say "building"
make -j"$(nproc)" >make.log 2>&1 || { tail -n 30 make.log >&2; exit 1; }
make install >/dev/null
rm -rf "$prefix"
mv "$prefix.partial" "$prefix"
say "installed into $prefix"
