//! Where the benchmarks find the repository, the test data and ONNX Runtime,
//! and what they read of a process in `/proc`.

use std::path::PathBuf;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `HOMESEC_TESTDATA`, default `../shared/testdata` beside the repository.
pub fn testdata() -> PathBuf {
    std::env::var_os("HOMESEC_TESTDATA").map(PathBuf::from).unwrap_or_else(|| repo_root().join("../shared/testdata"))
}

/// `ORT_DYLIB_PATH`, else the library `make fetch` put in `.homesec/lib`.
#[allow(dead_code)] // not every benchmark runs the model
pub fn ort_library() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return Some(PathBuf::from(p));
    }
    std::fs::read_dir(repo_root().join(".homesec/lib")).ok()?.filter_map(Result::ok).map(|e| e.path()).find(|p| {
        p.file_name().is_some_and(|n| {
            let n = n.to_string_lossy();
            n.starts_with("libonnxruntime.so") && !n.ends_with(".sha256")
        })
    })
}

/// Clock ticks per second (`getconf CLK_TCK`, else 100).
#[allow(dead_code)] // not every benchmark measures a process
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process (all its threads), in clock ticks.
#[allow(dead_code)]
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// A `/proc/PID/status` figure in kB (`VmRSS`, `VmHWM`).
#[allow(dead_code)]
pub fn status_kb(pid: u32, key: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
