//! Where the benchmarks find the repository, the test data and ONNX Runtime,
//! what they read of a process in `/proc`, and the RTSP server they stream
//! footage from.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

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

#[allow(dead_code)]
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free local port")
}

/// Polls `f` every 50 ms until it holds or `timeout` passes.
#[allow(dead_code)]
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// `v` with `digits` decimals, or "-".
#[allow(dead_code)]
pub fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

/// `tests/rtsp_server.py` serving one file at /cam, from its start per
/// session, with the time of each line it printed (`READY`, `PLAYING`, `EOS`).
#[allow(dead_code)]
pub struct RtspServer {
    port: u16,
    child: Child,
    lines: Arc<Mutex<Vec<(SystemTime, String)>>>,
}

#[allow(dead_code)]
impl RtspServer {
    /// Starts the server under `python`; `args` go to it as well (`--exit-on-eos`).
    pub fn start(python: &str, file: &Path, args: &[&str]) -> Result<RtspServer, String> {
        let port = free_port();
        let mut child = Command::new(python)
            .arg(repo_root().join("tests/rtsp_server.py"))
            .arg("--file")
            .arg(file)
            .args(["--mount", "/cam", "--port", &port.to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {python}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let lines: Arc<Mutex<Vec<(SystemTime, String)>>> = Arc::default();
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                l.lock().expect("lines lock").push((SystemTime::now(), line));
            }
        });
        let s = RtspServer { port, child, lines };
        let ready = wait_until(Duration::from_secs(20), || s.count("READY") + s.count("ERROR") > 0);
        if !ready || s.count("ERROR") > 0 {
            return Err("the RTSP server did not start".into());
        }
        Ok(s)
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/cam", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lines that start with `what` (`PLAYING`: sessions that started streaming;
    /// `EOS`: sessions whose file ended).
    pub fn count(&self, what: &str) -> usize {
        self.lines.lock().expect("lines lock").iter().filter(|(_, l)| l.starts_with(what)).count()
    }

    /// When the first session started streaming.
    pub fn playing_since(&self) -> Option<SystemTime> {
        self.lines.lock().expect("lines lock").iter().find(|(_, l)| l == "PLAYING").map(|(t, _)| *t)
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
