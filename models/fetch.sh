#!/usr/bin/env bash
# Installs detector models listed in models/manifest.toml into
# ${HOMESEC_HOME:-<repo>/.homesec}/models/, verifying each file's sha256.
#
#   models/fetch.sh                 all models in the manifest
#   models/fetch.sh yolox_nano_416  one model
#
# Sources, in order: an installed file with the right hash (nothing to do), a copy in
# ${HOMESEC_TESTDATA:-<repo>/../shared/testdata}/models/, the upstream URL (curl).
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$script_dir/.." && pwd)"
manifest="$script_dir/manifest.toml"
dest_dir="${HOMESEC_HOME:-$repo/.homesec}/models"
testdata="${HOMESEC_TESTDATA:-$repo/../shared/testdata}"

die() { echo "fetch.sh: error: $*" >&2; exit 1; }
say() { echo "fetch.sh: $*" >&2; }

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | awk '{print $1}'
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 "$1" | awk '{print $1}'
    else
        die "neither sha256sum nor shasum is installed"
    fi
}

# manifest_get SECTION KEY: the quoted value of KEY in [SECTION], or nothing.
manifest_get() {
    awk -v section="[$1]" -v key="$2" '
        /^\[/ { in_section = ($0 == section); next }
        in_section {
            line = $0
            sub(/^[ \t]+/, "", line)
            if (index(line, key " =") == 1 || index(line, key "=") == 1) {
                sub(/^[^=]*=[ \t]*"/, "", line)
                sub(/"[ \t]*$/, "", line)
                print line
                exit
            }
        }' "$manifest"
}

model_names() {
    sed -n 's/^\[\([A-Za-z0-9_.-]*\)\][ \t]*$/\1/p' "$manifest"
}

install_model() {
    local name="$1" file url sha dest tmp src actual
    file="$(manifest_get "$name" file)"
    [ -n "$file" ] || die "model '$name' is not in $manifest (known: $(model_names | tr '\n' ' '))"
    url="$(manifest_get "$name" url)"
    sha="$(manifest_get "$name" sha256)"
    [ -n "$sha" ] || die "manifest entry '$name' has no sha256"
    dest="$dest_dir/$file"

    if [ -f "$dest" ]; then
        actual="$(sha256_of "$dest")"
        if [ "$actual" = "$sha" ]; then
            say "$name: already installed with the right sha256"
            echo "$dest"
            return 0
        fi
        say "$name: $dest has sha256 $actual, expected $sha: replacing it"
    fi

    mkdir -p "$dest_dir"
    tmp="$dest.part.$$"
    trap 'rm -f "$tmp"' EXIT
    src="$testdata/models/$file"
    if [ -f "$src" ]; then
        say "$name: copying from $src"
        cp "$src" "$tmp"
    elif [ -n "$url" ]; then
        command -v curl >/dev/null 2>&1 || die "curl is needed to download $url"
        say "$name: downloading $url"
        curl -fsSL --retry 3 --connect-timeout 20 -o "$tmp" "$url" \
            || die "$name: download failed from $url"
    else
        local derived
        derived="$(manifest_get "$name" derived_from)"
        die "$name: not found at $src and it has no upstream download (derived from '${derived:-?}': $(manifest_get "$name" derivation)); set HOMESEC_TESTDATA to a folder holding models/$file"
    fi

    chmod 0644 "$tmp"
    actual="$(sha256_of "$tmp")"
    if [ "$actual" != "$sha" ]; then
        rm -f "$tmp"
        die "$name: sha256 mismatch: got $actual, expected $sha (file discarded)"
    fi
    mv -f "$tmp" "$dest"
    trap - EXIT
    say "$name: installed $dest"
    echo "$dest"
}

[ -f "$manifest" ] || die "manifest not found: $manifest"
if [ "$#" -gt 1 ]; then
    die "usage: $0 [MODEL_NAME]"
fi
if [ "$#" -eq 1 ]; then
    install_model "$1"
else
    for name in $(model_names); do
        install_model "$name"
    done
fi
