//! The status page under test: a daemon with a folder camera fed real footage,
//! and a small HTTP/1.1 client that shows status, headers and body as sent.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use super::config::ConfigBuilder;
use super::peers::{Broker, Daemon, FakeVlm, wait_for};

/// The clip every status page test has.
pub const CLIP_ID: &str = "porch_20261202120000";

/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request (the path as given, not normalised) and reads the whole answer.
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    // To the end, or to Content-Length (some servers keep the connection open).
    let mut raw = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = s.read(&mut chunk).unwrap();
        raw.extend_from_slice(&chunk[..n]);
        let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n");
        let length = head_end.and_then(|end| {
            String::from_utf8_lossy(&raw[..end]).lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok()).flatten()
            })
        });
        if n == 0 || matches!((head_end, length), (Some(end), Some(len)) if raw.len() >= end + 4 + len) {
            break;
        }
    }
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP answer");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let code = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) {
        body = unchunk(&body);
    }
    Reply { code, headers, body }
}

fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
    out
}

/// The peers and daemon of a status page test; dropped together.
pub struct Box {
    pub broker: Broker,
    pub vlm: FakeVlm,
    pub daemon: Daemon,
}

/// A daemon (API key from `key` when given) whose porch camera recorded one
/// real clip with people in it, analysed and done.
pub fn daemon_with_a_clip(dir: &Path, key: Option<&str>) -> Box {
    let broker = Broker::start();
    let vlm = FakeVlm::start(
        serde_json::json!({
            "risk_level": "medium",
            "activity_type": "person_passing",
            "summary": "Two people walk along the path and leave.",
            "entities_timeline": [
                {"ts_s": 3.0, "entity": "person", "description": "enters from the left"},
                {"ts_s": 21.0, "entity": "person", "description": "leaves on the right"}
            ],
            "requires_review": false
        }),
        Duration::ZERO,
    );
    let garage = dir.join("garage-inbox");
    std::fs::create_dir_all(&garage).unwrap();
    let garage = format!("backend: folder\nconfig:\n  path: {}\n  poll_interval_s: 1", garage.display());
    let mut builder = ConfigBuilder::new("web", dir)
        .folder_camera("porch")
        .camera("garage", &garage)
        .storage("backend: local\nconfig:\n  view_url_prefix: http://viewer:s3cretpw@nas.local/clips")
        .filter(&["classes: [person, car]", "sample_fps: 1"])
        .vlm(&format!(
            "backend: openai\nrun_mode: trigger_only\ntrigger_classes: [person]\nconfig:\n  \
             base_url: http://127.0.0.1:{}/v1\n  model: test-vlm\n  api_key_env: WEB_VLM_KEY\n  max_frames: 3",
            vlm.port
        ))
        .policy("backend: default\nconfig:\n  min_risk_level: medium")
        .mqtt(broker.port);
    let mut env = vec![("WEB_VLM_KEY", "sk-web-test")];
    if let Some(k) = key {
        builder = builder.server("api_key_env: WEB_API_KEY");
        env.push(("WEB_API_KEY", k));
    } else {
        // Reachable from the network too: only loopback peers may see the page.
        builder = builder.server("host: 0.0.0.0");
    }
    let daemon = Daemon::start(dir, &builder.build(), &env);
    daemon.drop_clip(&super::footage("scene_empty_people_empty.mp4"), &format!("{CLIP_ID}.mp4"));
    wait_for("the clip done", Duration::from_secs(180), || {
        let clips = daemon
            .get_with_key("/api/v1/clips?limit=10", key)
            .and_then(|(_, v)| v["clips"].as_array().cloned())
            .unwrap_or_default();
        clips.iter().any(|c| c["clip"]["clip_id"] == CLIP_ID && c["status"] == "done").then_some(())
    });
    Box { broker, vlm, daemon }
}

/// This machine's address on its network (not loopback), if it has one: the
/// source address of a route out (a UDP "connect" sends nothing).
pub fn lan_address() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// `request` to `ip` instead of 127.0.0.1.
pub fn request_to(ip: std::net::IpAddr, port: u16, path: &str) -> Reply {
    let mut s = std::net::TcpStream::connect((ip, port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.as_bytes().to_vec()).unwrap_or_default();
    Reply { code, headers: Vec::new(), body }
}
