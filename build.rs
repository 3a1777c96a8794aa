//! Builds the video decoder's C side: FFmpeg's libavcodec with the H.264 and
//! H.265 decoders only, as static libraries (`vendor/ffmpeg/build.sh`, cached
//! per target and script version under `$HOMESEC_CACHE` or
//! `$HOME/.cache/homesec`), and `src/media/avdecode.c` against it.
//!
//! `HOMESEC_FFMPEG_DIR` points at an FFmpeg prefix built elsewhere instead
//! (`include/`, `lib/libavcodec.a`, `lib/libavutil.a`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

const SCRIPT: &str = "vendor/ffmpeg/build.sh";
const SHIM: &str = "src/media/avdecode.c";
/// Every `*.patch` here is applied by the script to FFmpeg's source.
const PATCH_DIR: &str = "vendor/ffmpeg";

/// The patches the script applies, in its order (by name).
fn patches() -> Vec<PathBuf> {
    let dir = std::fs::read_dir(PATCH_DIR).unwrap_or_else(|e| panic!("cannot read {PATCH_DIR}: {e}"));
    let mut found: Vec<PathBuf> = dir
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "patch"))
        .collect();
    found.sort();
    found
}

fn main() {
    println!("cargo:rerun-if-changed={SCRIPT}");
    println!("cargo:rerun-if-changed={SHIM}");
    // The directory: a patch added or removed changes its listing.
    println!("cargo:rerun-if-changed={PATCH_DIR}");
    for patch in patches() {
        println!("cargo:rerun-if-changed={}", patch.display());
    }
    println!("cargo:rerun-if-env-changed=HOMESEC_FFMPEG_DIR");
    println!("cargo:rerun-if-env-changed=HOMESEC_CACHE");

    let prefix = match std::env::var_os("HOMESEC_FFMPEG_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => build_ffmpeg(),
    };
    if !prefix.join("lib/libavcodec.a").is_file() {
        panic!("no lib/libavcodec.a under {} (HOMESEC_FFMPEG_DIR)", prefix.display());
    }
    cc::Build::new().file(SHIM).include(prefix.join("include")).opt_level(2).warnings(true).compile("avdecode");
    println!("cargo:rustc-link-search=native={}", prefix.join("lib").display());
    println!("cargo:rustc-link-lib=static=avcodec");
    println!("cargo:rustc-link-lib=static=avutil");
    println!("cargo:rustc-link-lib=m");
}

/// The cached prefix for this target and script, built on first use (under a
/// lock, so parallel builds of the same target wait for one another).
fn build_ffmpeg() -> PathBuf {
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    let mut script = std::fs::read(SCRIPT).unwrap_or_else(|e| panic!("cannot read {SCRIPT}: {e}"));
    for patch in patches() {
        script.extend(std::fs::read(&patch).unwrap_or_else(|e| panic!("cannot read {}: {e}", patch.display())));
    }
    let cache = std::env::var_os("HOMESEC_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/homesec")))
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()));
    let prefix = cache.join("ffmpeg").join(format!("{target}-{:016x}", fnv1a(&script)));
    let built = || prefix.join("lib/libavcodec.a").is_file();
    if built() {
        return prefix;
    }
    std::fs::create_dir_all(cache.join("ffmpeg")).unwrap_or_else(|e| panic!("cannot create {}: {e}", cache.display()));
    let lock_path = cache.join("ffmpeg").join(format!("{target}.lock"));
    let lock = File::create(&lock_path).unwrap_or_else(|e| panic!("cannot create {}: {e}", lock_path.display()));
    lock.lock().unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));
    if built() {
        return prefix;
    }
    let compiler = cc::Build::new().get_compiler();
    let mut cmd = Command::new("bash");
    cmd.arg(SCRIPT).arg(&prefix).arg(compiler.path());
    if target != host {
        cmd.arg(std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default());
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run {SCRIPT}: {e}"));
    if !status.success() {
        panic!("{SCRIPT} failed ({status}): see its output above");
    }
    prefix
}

/// FNV-1a: a change to the build script or its patches builds FFmpeg again.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
