//! The status page in a real browser: headless Chromium, driven over its
//! DevTools protocol, against the real daemon with a real clip. Each page
//! loads without a JavaScript error or a failed request, is screenshotted
//! (paths printed; under target/web-screenshots/), and the clip's video plays.

mod common;

use std::io::ErrorKind;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::peers::{free_port, wait_for};
use common::web::{CLIP_ID, daemon_with_a_clip};
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

/// Headless Chromium with a DevTools port, killed on drop.
struct Chromium {
    child: Child,
    port: u16,
}

impl Chromium {
    fn start(profile: &Path) -> Chromium {
        let port = free_port();
        let bin = ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find(|b| Command::new("which").arg(b).stdout(Stdio::null()).status().is_ok_and(|s| s.success()))
            .expect("chromium is not installed (Debian: apt-get install chromium)");
        let child = Command::new(bin)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--mute-audio",
                "--autoplay-policy=no-user-gesture-required",
                "--remote-allow-origins=*",
                &format!("--remote-debugging-port={port}"),
                &format!("--user-data-dir={}", profile.display()),
                "about:blank",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Chromium { child, port }
    }

    /// A new tab, over its DevTools websocket.
    fn tab(&self) -> Tab {
        let target = wait_for("Chromium's DevTools", Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", self.port)).ok()?;
            let r = common::web::request(self.port, "PUT", "/json/new?about:blank", &[], "");
            serde_json::from_slice::<Value>(&r.body).ok()
        });
        let url = target["webSocketDebuggerUrl"].as_str().unwrap().to_owned();
        let stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let (ws, _) = tungstenite::client(url.as_str(), stream).unwrap();
        let mut tab = Tab { ws, next_id: 0, events: Vec::new() };
        for domain in ["Page", "Runtime", "Log", "Network"] {
            tab.call(&format!("{domain}.enable"), json!({}));
        }
        tab
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Tab {
    ws: WebSocket<TcpStream>,
    next_id: u64,
    events: Vec<Value>,
}

impl Tab {
    /// The next message, or `None` after the read timeout.
    fn read(&mut self) -> Option<Value> {
        match self.ws.read() {
            Ok(Message::Text(t)) => serde_json::from_str(&t).ok(),
            Ok(_) => None,
            Err(tungstenite::Error::Io(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(e) => panic!("DevTools connection: {e}"),
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.ws.send(Message::text(json!({"id": id, "method": method, "params": params}).to_string())).unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Some(m) = self.read() {
                if m["id"] == id {
                    assert!(m.get("error").is_none(), "{method}: {m}");
                    return m["result"].clone();
                }
                self.events.push(m);
            }
        }
        panic!("{method}: no answer");
    }

    /// Collects events for `d`.
    fn pump(&mut self, d: Duration) {
        let start = Instant::now();
        while start.elapsed() < d {
            if let Some(m) = self.read() {
                self.events.push(m);
            }
        }
    }

    /// Opens `url` and waits for its load event and a moment of quiet.
    fn open(&mut self, url: &str) {
        self.events.clear();
        self.call("Page.navigate", json!({"url": url}));
        let start = Instant::now();
        while !self.events.iter().any(|e| e["method"] == "Page.loadEventFired") {
            assert!(start.elapsed() < Duration::from_secs(30), "{url} did not load");
            if let Some(m) = self.read() {
                self.events.push(m);
            }
        }
        self.pump(Duration::from_millis(1500));
    }

    /// JavaScript errors, console errors and failed requests since the last `open`.
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for e in &self.events {
            let p = &e["params"];
            match e["method"].as_str().unwrap_or_default() {
                "Runtime.exceptionThrown" => out.push(format!("exception: {}", p["exceptionDetails"])),
                "Runtime.consoleAPICalled" if p["type"] == "error" => out.push(format!("console.error: {}", p["args"])),
                "Log.entryAdded" if p["entry"]["level"] == "error" => out.push(format!("log: {}", p["entry"])),
                "Network.loadingFailed" => {
                    // A video element cancels the ranges it no longer wants: not a failure.
                    let aborted_media = p["type"] == "Media" && p["errorText"] == "net::ERR_ABORTED";
                    if !aborted_media {
                        out.push(format!("request failed: {p}"));
                    }
                }
                "Network.responseReceived" if p["response"]["status"].as_u64().unwrap_or(0) >= 400 => {
                    out.push(format!("HTTP {} for {}", p["response"]["status"], p["response"]["url"]))
                }
                _ => {}
            }
        }
        out
    }

    fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call("Runtime.evaluate", json!({"expression": expression, "awaitPromise": true, "returnByValue": true}));
        assert!(r.get("exceptionDetails").is_none(), "{expression}: {r}");
        r["result"]["value"].clone()
    }

    /// The whole page, or only what the window shows (`whole: false`).
    fn screenshot(&mut self, path: &Path, whole: bool) {
        let params = if whole {
            let size = self.call("Page.getLayoutMetrics", json!({}))["cssContentSize"].clone();
            let clip = json!({"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1});
            json!({"format": "png", "captureBeyondViewport": true, "clip": clip})
        } else {
            json!({"format": "png"})
        };
        let r = self.call("Page.captureScreenshot", params);
        let png = base64::engine::general_purpose::STANDARD.decode(r["data"].as_str().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
        println!("screenshot: {}", path.display());
    }

    fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }
}

fn shots_dir() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| common::repo_root().join("target"));
    let dir = target.join("web-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_page_loads_cleanly_in_chromium_and_the_clip_plays() {
    let tmp = tempfile::tempdir().unwrap();
    let b = daemon_with_a_clip(tmp.path(), None);
    let base = format!("http://127.0.0.1:{}", b.daemon.api_port);
    let browser = Chromium::start(&tmp.path().join("chromium-profile"));
    let mut tab = browser.tab();
    let shots = shots_dir();

    tab.viewport(1280, 900, false);
    for (path, name, must_show) in [
        ("/", "cameras", "porch"),
        ("/events", "events", "Two people walk along the path and leave."),
        (&format!("/clips/{CLIP_ID}") as &str, "clip", "Two people walk along the path and leave."),
        ("/system", "system", "Disk budget"),
    ] {
        tab.open(&format!("{base}{path}"));
        let problems = tab.problems();
        assert!(problems.is_empty(), "{path}: {problems:#?}");
        let text = tab.eval("document.body.innerText").as_str().unwrap_or_default().to_owned();
        assert!(text.contains(must_show), "{path} does not show `{must_show}`:\n{text}");
        // The System page's config names this machine's paths: its window only.
        tab.screenshot(&shots.join(format!("{name}.png")), name != "system");
    }

    // Every image on the Events and Cameras pages decoded (snapshots are real JPEGs).
    for path in ["/", "/events"] {
        tab.open(&format!("{base}{path}"));
        let broken = tab.eval("[...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)");
        assert_eq!(broken, json!([]), "{path}: images that did not load");
    }

    // The clip plays: its duration is known and matches the clip, and time moves.
    tab.open(&format!("{base}/clips/{CLIP_ID}"));
    let played = tab.eval(
        "new Promise((resolve, reject) => {
           const v = document.getElementById('clip-video');
           v.muted = true;
           v.addEventListener('error', () => reject('video error ' + (v.error && v.error.code)));
           const go = () => v.play().then(() => setTimeout(() =>
             resolve({duration: v.duration, time: v.currentTime, width: v.videoWidth}), 1500), reject);
           if (v.readyState >= 1) go(); else v.addEventListener('loadedmetadata', go, {once: true});
         })",
    );
    let probe = common::ffprobe(&common::footage("scene_empty_people_empty.mp4"));
    let duration = played["duration"].as_f64().unwrap();
    assert!((duration - probe.duration_s).abs() < 0.5, "video duration {duration} s, clip {} s", probe.duration_s);
    assert!(played["time"].as_f64().unwrap() > 0.2, "the video did not play: {played}");
    assert_eq!(played["width"], 768, "{played}");
    let problems = tab.problems();
    assert!(problems.is_empty(), "while playing: {problems:#?}");

    // A phone: the pages fit the screen (no sideways scrolling).
    tab.viewport(390, 844, true);
    for (path, name) in [("/", "cameras-phone"), ("/events", "events-phone")] {
        tab.open(&format!("{base}{path}"));
        let overflow = tab.eval("document.documentElement.scrollWidth - document.documentElement.clientWidth");
        assert!(overflow.as_i64().unwrap_or(1) <= 0, "{path} scrolls sideways by {overflow} px on a phone");
        tab.screenshot(&shots.join(format!("{name}.png")), false);
    }
}
