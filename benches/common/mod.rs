//! Where the benchmarks find the repository, the test data and ONNX Runtime.

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
