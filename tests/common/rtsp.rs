//! A real RTSP camera for the tests: GStreamer's RTSP server
//! (`tests/rtsp_server.py`) serving real footage, which a test can kill,
//! freeze and restart on the same port; and the daemon's view of a camera.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::peers::{Daemon, free_port, wait_for};

/// `tests/rtsp_server.py` under Debian's python3 (which has `gi`).
pub struct RtspServer {
    pub port: u16,
    args: Vec<String>,
    child: Option<Child>,
    /// Stdout lines with the time they were read.
    lines: Arc<Mutex<Vec<(SystemTime, String)>>>,
}

impl RtspServer {
    pub fn start(file: &Path, extra: &[&str]) -> RtspServer {
        let mut args = vec![
            super::repo_root().join("tests/rtsp_server.py").display().to_string(),
            "--file".into(),
            file.display().to_string(),
            "--mount".into(),
            "/cam".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut s = RtspServer { port: free_port(), args, child: None, lines: Arc::default() };
        s.restart();
        s
    }

    /// Starts the server (again) on its port; returns once it listens.
    pub fn restart(&mut self) {
        self.kill();
        let python = std::env::var("HOMESEC_GST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
        let mut child = Command::new(&python)
            .args(&self.args)
            .args(["--port", &self.port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {python} (apt-get install python3-gi gir1.2-gst-rtsp-server-1.0): {e}")
            });
        let stdout = child.stdout.take().unwrap();
        let lines = self.lines.clone();
        lines.lock().unwrap().clear();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push((SystemTime::now(), line));
            }
        });
        self.child = Some(child);
        wait_for("the RTSP server to listen", Duration::from_secs(20), || {
            let lines = self.lines.lock().unwrap();
            if let Some((_, l)) = lines.iter().find(|(_, l)| l.starts_with("ERROR")) {
                panic!("RTSP server: {l}");
            }
            lines.iter().any(|(_, l)| l.starts_with("READY")).then_some(())
        });
    }

    /// Sends a signal (`STOP` freezes the camera: the connection stays open, no frames come).
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("server running").id();
        assert!(Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap().success());
    }

    /// SIGKILL: the camera vanishes mid-stream.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/cam", self.port)
    }

    /// When the server's latest session started streaming.
    pub fn playing_since(&self) -> Option<SystemTime> {
        self.line_at("PLAYING")
    }

    /// When the server (last started) began to listen: from then on it answers.
    pub fn listening_since(&self) -> Option<SystemTime> {
        self.line_at("READY")
    }

    /// When the server last printed a line starting with `prefix`.
    fn line_at(&self, prefix: &str) -> Option<SystemTime> {
        self.lines.lock().unwrap().iter().rev().find(|(_, l)| l.starts_with(prefix)).map(|(t, _)| *t)
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `camera`'s entry in the daemon's `/health`.
pub fn source_health(daemon: &Daemon, camera: &str) -> Option<Value> {
    let (_, h) = daemon.get("/health")?;
    h["sources"].as_array()?.iter().find(|s| s["camera"] == camera).cloned()
}

/// The daemon's log without terminal colour codes.
pub fn plain_log(daemon: &Daemon) -> String {
    let raw = daemon.log_text();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
