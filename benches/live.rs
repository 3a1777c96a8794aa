//! Live-path benchmark: what the live cameras' object detection costs and how
//! fast its alerts come (the figures of issue 8). Not a timed test: it prints
//! figures and fails only when it cannot run.
//!
//! `cargo bench --bench live` (release; `make bench-live`). It runs the release
//! daemon against real peers: GStreamer RTSP servers (`tests/rtsp_server.py`
//! under `/usr/bin/python3` or `HOMESEC_GST_PYTHON`) streaming the scene footage
//! (empty, people walk in at ~8 s and out at ~27 s, 34 s in all) in real time, a
//! Mosquitto broker of its own (`/usr/sbin/mosquitto` or `HOMESEC_MOSQUITTO`),
//! and a local OpenAI-compatible server answering every request after
//! [`VLM_DELAY`]. Missing tools give a SKIPPED message.
//!
//! 1. "The person appears": the real detector (same model and threshold as the
//!    daemon's config) runs over every frame of the footage at bench start; the
//!    first of the first two consecutive frames with a person (not the static
//!    post at the left edge) is the appear time. Early-alert latency = MQTT
//!    receive time of the `detected` alert − (the camera's detect stream
//!    `PLAYING` time + appear time).
//! 2. Clip end → final alert: receive time of the `analyzed` alert − the clip
//!    record's `created_ms` (when the finished clip reached the pipeline) − the
//!    fake VLM's delay.
//! 3. VLM request built from the live frames: `prep_ms` of the daemon's
//!    `VLM request prepared` debug line.
//! 4. CPU per camera: the daemon's utime+stime (`/proc/<pid>/stat`) over an idle
//!    window (streaming, no motion yet) and over the event window (person in
//!    view), divided by cameras, in % of one core. Cameras as the issue has them:
//!    1080p20 H.264 main stream (passthrough) + 360p20 H.264 sub-stream (decoded
//!    for motion and objects), made at bench start with ffmpeg from the footage.
//! 5. Eight cameras (360p20 sub-streams only) with the event at once: per camera
//!    the frames sent to the shared detector and those dropped because it was
//!    busy (`/api/v1/diagnostics`, `live_detection`), the early-alert latency;
//!    the daemon's peak RSS and CPU.
//!
//! Test data: `HOMESEC_TESTDATA`, default `../shared/testdata`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use homesec::domain::Detection;
use homesec::filter::yolo::{self, Detector, DetectorOptions};
use serde_json::{Value, json};

mod common;
use common::{RtspServer, clock_ticks, cpu_ticks, free_port, opt, ort_library, status_kb, testdata, wait_until};

/// The fake VLM answers after this long.
const VLM_DELAY: Duration = Duration::from_millis(1000);
/// The daemon's (and the appear-time detector's) person threshold.
const MIN_CONFIDENCE: f32 = 0.6;
/// Cameras with a 1080p main + 360p sub-stream each (figures 1-4).
const MAIN_CAMERAS: usize = 4;
/// Cameras (sub-streams only) with the event at once (figure 5).
const MANY_CAMERAS: usize = 8;
/// The static post at the left edge of the scene (768x576), which the model
/// scores about 0.5 as a person.
const POST: [f32; 4] = [31.0, 111.0, 48.0, 141.0];
const FOOTAGE: &str = "scene_empty_people_empty.mp4";
/// The daemon's API key (diagnostics need one).
const API_KEY: &str = "bench-api-key";
/// The RTSP servers stop at the end of the footage.
const EOS: &[&str] = &["--exit-on-eos"];

fn unix_s(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// "median (min-max) unit" of `v`, or "n/a".
fn stats(v: &[f64], unit: &str, digits: usize) -> String {
    let Some(m) = median(v) else { return "n/a".into() };
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{m:.digits$} {unit} (min {lo:.digits$}, max {hi:.digits$}, n={})", v.len())
}

// ---------------------------------------------------------------- peers

struct Broker {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Broker {
    fn start(bin: &Path) -> Result<Broker, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"))
            .map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let b = Broker { port, child, _dir: dir };
        if !wait_until(Duration::from_secs(10), || TcpStream::connect(("127.0.0.1", port)).is_ok()) {
            return Err("mosquitto does not listen".into());
        }
        Ok(b)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Alerts received: (receive time, topic, payload).
type Alerts = Arc<Mutex<Vec<(SystemTime, String, Value)>>>;

fn subscribe(port: u16) -> Result<Alerts, String> {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let mut opts = MqttOptions::new(format!("livebench-{}", free_port()), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_max_packet_size(10 * 1024 * 1024, 10 * 1024 * 1024);
    let (client, mut conn) = Client::new(opts, 100);
    client.subscribe("homecam/alerts/#", QoS::AtLeastOnce).map_err(|e| e.to_string())?;
    let alerts: Alerts = Arc::default();
    let a = alerts.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _client = client;
        for ev in conn.iter() {
            match ev {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = tx.send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let now = SystemTime::now();
                    if let Ok(v) = serde_json::from_slice(&p.payload) {
                        a.lock().expect("alerts lock").push((now, p.topic.clone(), v));
                    }
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10)).map_err(|_| "no SUBACK from mosquitto".to_string())?;
    Ok(alerts)
}

/// A local OpenAI-compatible chat-completions server: every request gets a
/// valid analysis after [`VLM_DELAY`].
struct FakeVlm {
    port: u16,
    _rt: tokio::runtime::Runtime,
}

impl FakeVlm {
    fn start() -> Result<FakeVlm, String> {
        use axum::{Json, Router, routing::post};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let content = json!({
            "risk_level": "high",
            "activity_type": "suspicious",
            "summary": "Two people walk across the yard.",
            "entities_timeline": [{"ts_s": 8.0, "entity": "person", "description": "enters from the left"}],
            "requires_review": false
        })
        .to_string();
        let app = Router::new().route(
            "/v1/chat/completions",
            post(move |Json(_body): Json<Value>| {
                let content = content.clone();
                async move {
                    tokio::time::sleep(VLM_DELAY).await;
                    Json(json!({
                        "id": "chatcmpl-bench",
                        "object": "chat.completion",
                        "model": "bench-vlm",
                        "choices": [{ "index": 0, "finish_reason": "stop",
                            "message": { "role": "assistant", "content": content, "refusal": null } }],
                        "usage": { "prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050 }
                    }))
                }
            }),
        );
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeVlm { port, _rt: rt })
    }
}

struct Daemon {
    child: Child,
    api_port: u16,
    log: PathBuf,
}

impl Daemon {
    fn start(dir: &Path, config: &str, api_port: u16, env: &[(String, String)]) -> Result<Daemon, String> {
        let path = dir.join("homesec.yaml");
        std::fs::write(&path, config).map_err(|e| e.to_string())?;
        let log = dir.join("daemon.log");
        let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_homesec"));
        cmd.args(["run", "--config"])
            .arg(&path)
            .env("HOMESEC_LOG", "info,homesec::analyzer=debug")
            .env("HOMESEC_LOG_FORMAT", "json")
            .env("BENCH_VLM_KEY", "bench-key")
            .env("BENCH_API_KEY", API_KEY)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(out)
            .stderr(err);
        let child = cmd.spawn().map_err(|e| format!("cannot run the daemon: {e}"))?;
        let mut d = Daemon { child, api_port, log };
        let up = wait_until(Duration::from_secs(60), || {
            matches!(d.child.try_wait(), Ok(Some(_))) || TcpStream::connect(("127.0.0.1", api_port)).is_ok()
        });
        if !up || matches!(d.child.try_wait(), Ok(Some(_))) {
            let log = std::fs::read_to_string(&d.log).unwrap_or_default();
            return Err(format!(
                "the daemon did not start:\n{}",
                log.lines().rev().take(10).collect::<Vec<_>>().join("\n")
            ));
        }
        Ok(d)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn get(&self, path: &str) -> Option<Value> {
        let mut s = TcpStream::connect(("127.0.0.1", self.api_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\nX-API-Key: {API_KEY}\r\n\r\n").ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        serde_json::from_str(buf.split_once("\r\n\r\n")?.1).ok()
    }

    /// The JSON log lines (`fields` flattened into the line).
    fn log_lines(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|mut v| {
                if let Some(Value::Object(f)) = v.get("fields").cloned()
                    && let Value::Object(o) = &mut v
                {
                    o.extend(f);
                }
                v
            })
            .collect()
    }

    fn stop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        if !wait_until(Duration::from_secs(20), || matches!(self.child.try_wait(), Ok(Some(_)))) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- process figures

/// Samples a process's CPU time every 100 ms.
struct CpuSampler {
    samples: Arc<Mutex<Vec<(SystemTime, u64)>>>,
    stop: Arc<AtomicBool>,
}

impl CpuSampler {
    fn start(pid: u32) -> CpuSampler {
        let samples: Arc<Mutex<Vec<(SystemTime, u64)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (samples.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                if let Some(t) = cpu_ticks(pid) {
                    s.lock().expect("samples lock").push((SystemTime::now(), t));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        CpuSampler { samples, stop }
    }

    /// CPU of the process between `from` and `to` (unix seconds), in % of one core,
    /// with the window's actual length.
    fn percent(&self, from: f64, to: f64, ticks_per_s: f64) -> Option<(f64, f64)> {
        let s = self.samples.lock().expect("samples lock");
        let a = s.iter().rev().find(|(t, _)| unix_s(*t) <= from)?;
        let b = s.iter().find(|(t, _)| unix_s(*t) >= to)?;
        let secs = unix_s(b.0) - unix_s(a.0);
        (secs > 0.5).then(|| ((b.1 - a.1) as f64 / ticks_per_s / secs * 100.0, secs))
    }
}

impl Drop for CpuSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------- set-up

fn is_the_post(d: &Detection) -> bool {
    yolo::iou(&d.bbox, &POST) > 0.5
}

/// The footage time of the first of the first two consecutive frames with a
/// person (not the post), and of the first such frame alone.
fn appear_time(footage: &Path, model: &Path, ort: &Path) -> Result<(f64, f64, u32), String> {
    let opts = DetectorOptions { classes: vec!["person".into()], min_confidence: MIN_CONFIDENCE, ..Default::default() };
    let mut det = Detector::new(model, ort, &opts).map_err(|e| e.to_string())?;
    let (mut first, mut pair, mut prev, mut err) = (None, None, None::<f64>, None);
    let frames = homesec::media::sample_frames(footage, 0.0, 0, &mut |frame| match det.detect_rgb(&frame) {
        Ok((d, _)) => {
            let person = d.iter().any(|d| d.class == "person" && !is_the_post(d));
            if person {
                first.get_or_insert(frame.ts_s);
                if let Some(p) = prev {
                    pair = Some(p);
                    return false;
                }
                prev = Some(frame.ts_s);
            } else {
                prev = None;
            }
            true
        }
        Err(e) => {
            err = Some(e.to_string());
            false
        }
    })
    .map_err(|e| e.to_string())?;
    if let Some(e) = err {
        return Err(e);
    }
    match (pair, first) {
        (Some(p), Some(f)) => Ok((p, f, frames)),
        _ => Err("no person found in the footage".into()),
    }
}

/// Re-encodes the footage at `w`x`h`, 20 fps, GOP 40, no B-frames.
fn make_stream(src: &Path, dir: &Path, label: &str, w: u32, h: u32) -> Result<PathBuf, String> {
    let out = dir.join(format!("{label}.mp4"));
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(src)
        .args(["-vf", &format!("scale={w}:{h},fps=20"), "-c:v", "libx264", "-preset", "veryfast"])
        .args(["-pix_fmt", "yuv420p", "-g", "40", "-keyint_min", "40", "-sc_threshold", "0", "-bf", "0", "-an"])
        .arg(&out)
        .status()
        .map_err(|e| format!("ffmpeg not available ({e})"))?;
    if !status.success() {
        return Err(format!("ffmpeg failed ({status}) making {label}"));
    }
    Ok(out)
}

struct Tools {
    python: String,
    mosquitto: PathBuf,
    model: PathBuf,
    ort: PathBuf,
    footage: PathBuf,
}

fn check_tools() -> Result<Tools, String> {
    let footage = testdata().join("footage").join(FOOTAGE);
    if !footage.is_file() {
        return Err(format!("test footage not found at {} (set HOMESEC_TESTDATA)", footage.display()));
    }
    let model = testdata().join("models/yolox_nano_416.onnx");
    if !model.is_file() {
        return Err(format!("detector model not found at {}", model.display()));
    }
    let ort = ort_library().ok_or("ONNX Runtime not found (run `make fetch` or set ORT_DYLIB_PATH)")?;
    let ffmpeg_ok = Command::new("ffmpeg").arg("-version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !ffmpeg_ok.is_ok_and(|s| s.success()) {
        return Err("ffmpeg not available (apt-get install ffmpeg)".into());
    }
    let mosquitto =
        std::env::var_os("HOMESEC_MOSQUITTO").map(PathBuf::from).unwrap_or_else(|| "/usr/sbin/mosquitto".into());
    if !mosquitto.is_file() {
        return Err(format!("mosquitto not found at {} (apt-get install mosquitto)", mosquitto.display()));
    }
    let python = std::env::var("HOMESEC_GST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
    let gst = Command::new(&python)
        .args(["-c", "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0')"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !gst.is_ok_and(|s| s.success()) {
        return Err(format!(
            "GStreamer's RTSP server not usable from {python} (apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 \
             gstreamer1.0-rtsp gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)"
        ));
    }
    Ok(Tools { python, mosquitto, model, ort, footage })
}

// ---------------------------------------------------------------- one run

/// One camera of a run: its name and streams.
struct Cam {
    name: String,
    main: RtspServer,
    sub: Option<RtspServer>,
}

impl Cam {
    /// The stream motion and objects are detected on.
    fn detect(&self) -> &RtspServer {
        self.sub.as_ref().unwrap_or(&self.main)
    }
}

fn config(dir: &Path, tools: &Tools, cams: &[Cam], broker: u16, vlm: u16, api: u16) -> String {
    let mut y = format!("device_id: livebench\ndata_dir: {}/data\ncameras:\n", dir.display());
    for c in cams {
        let up = c.name.to_uppercase();
        y.push_str(&format!(
            "  - name: {}\n    source:\n      backend: rtsp\n      config:\n        rtsp_url_env: {up}_URL\n",
            c.name
        ));
        if c.sub.is_some() {
            y.push_str(&format!("        detect_url_env: {up}_SUB\n"));
        }
        y.push_str(
            "        frame_timeout_s: 5\n        first_frame_timeout_s: 10\n        reconnect_initial_s: 0.5\n        \
             reconnect_max_s: 2\n        recording: {pre_roll_s: 5, post_roll_s: 3, max_clip_s: 120, min_clip_s: 2}\n",
        );
    }
    y.push_str("storage:\n  backend: local\n");
    y.push_str(&format!(
        "filter:\n  backend: yolo\n  config:\n    model_path: {}\n    ort_library: {}\n    classes: [person]\n    \
         min_confidence: {MIN_CONFIDENCE}\n",
        tools.model.display(),
        tools.ort.display()
    ));
    y.push_str(&format!(
        "vlm:\n  backend: openai\n  run_mode: trigger_only\n  trigger_classes: [person]\n  config:\n    \
         base_url: http://127.0.0.1:{vlm}/v1\n    model: bench-vlm\n    api_key_env: BENCH_VLM_KEY\n"
    ));
    y.push_str("alert_policy:\n  backend: default\n");
    y.push_str(&format!("notifiers:\n  - backend: mqtt\n    config:\n      host: 127.0.0.1\n      port: {broker}\n"));
    y.push_str(&format!("server:\n  port: {api}\n  api_key_env: BENCH_API_KEY\n"));
    y
}

#[derive(Default)]
struct CamResult {
    name: String,
    /// Early alert − (PLAYING + appear), s.
    early_s: Option<f64>,
    /// Final alert − clip created − VLM delay, s.
    final_s: Option<f64>,
    prep_ms: Option<f64>,
    /// Frames sent to the shared detector, and dropped because it was busy.
    sent: Option<u64>,
    dropped: Option<u64>,
    stage: String,
}

/// Bytes the daemon wrote to the data partition during the run, and how many
/// of them were the recorded clips themselves.
#[derive(Default)]
struct Writes {
    total: u64,
    clips: u64,
    clip_count: usize,
    snapshots: u64,
    store: u64,
}

struct RunResult {
    writes: Option<Writes>,
    cams: Vec<CamResult>,
    idle_cpu: Option<(f64, f64)>,
    event_cpu: Option<(f64, f64)>,
    peak_rss_mb: Option<f64>,
}

fn run(
    tools: &Tools,
    broker: &Broker,
    alerts: &Alerts,
    vlm: &FakeVlm,
    cams: &[Cam],
    appear: f64,
) -> Result<RunResult, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let api = free_port();
    let mut env = Vec::new();
    for c in cams {
        let up = c.name.to_uppercase();
        env.push((format!("{up}_URL"), c.main.url()));
        if let Some(s) = &c.sub {
            env.push((format!("{up}_SUB"), s.url()));
        }
    }
    let cfg = config(dir.path(), tools, cams, broker.port, vlm.port, api);
    let mut daemon = Daemon::start(dir.path(), &cfg, api, &env)?;
    let written_before = io_written(daemon.pid());
    let store_before = std::fs::metadata(dir.path().join("data/homesec.redb")).map_or(0, |m| m.len());
    let sampler = CpuSampler::start(daemon.pid());
    let ticks = clock_ticks();

    let playing = |c: &Cam| c.detect().playing_since().map(unix_s);
    if !wait_until(Duration::from_secs(30), || {
        cams.iter().all(|c| playing(c).is_some() && c.main.playing_since().is_some())
    }) {
        return Err("not every camera started streaming".into());
    }
    let starts: Vec<f64> = cams.iter().filter_map(playing).collect();
    let (first, last) =
        (starts.iter().copied().fold(f64::INFINITY, f64::min), starts.iter().copied().fold(0.0, f64::max));

    // Every camera's early and final alert (the footage is 34 s long).
    let topic = |c: &Cam| format!("homecam/alerts/{}", c.name);
    let done = |stage: &str| {
        let a = alerts.lock().expect("alerts lock");
        cams.iter().all(|c| a.iter().any(|(_, t, v)| *t == topic(c) && v["stage"] == stage))
    };
    let all_final = wait_until(Duration::from_secs(75), || done("analyzed") || done("final"));
    if !all_final {
        println!("  (not every camera's final alert came within 75 s)");
    }
    std::thread::sleep(Duration::from_millis(300));
    let peak_rss_mb = status_kb(daemon.pid(), "VmHWM").map(|kb| kb / 1024.0);
    let clips = daemon.get("/api/v1/clips?limit=1000").and_then(|v| v["clips"].as_array().cloned()).unwrap_or_default();
    let feeds =
        daemon.get("/api/v1/diagnostics").and_then(|v| v["live_detection"].as_array().cloned()).unwrap_or_default();
    let idle_cpu = sampler.percent(last + 1.5, first + 6.0, ticks);
    let event_cpu = sampler.percent(last + appear, first + 26.0, ticks);
    drop(sampler);
    // Dirty pages reach the disk (and the daemon's write_bytes) on writeback: flush first.
    let _ = Command::new("sync").status();
    let writes = written_before.zip(io_written(daemon.pid())).map(|(before, after)| {
        let data = dir.path().join("data");
        let (clips, clip_count) = files_under(&data.join("recordings"), |p| p.extension().is_some_and(|e| e == "mp4"));
        let store_after = std::fs::metadata(data.join("homesec.redb")).map_or(0, |m| m.len());
        Writes {
            total: after - before,
            clips,
            clip_count,
            snapshots: files_under(&data.join("snapshots"), |_| true).0,
            store: store_after.saturating_sub(store_before),
        }
    });
    daemon.stop();
    let log = daemon.log_lines();

    let alerts = alerts.lock().expect("alerts lock");
    let mut out = Vec::new();
    for c in cams {
        let mut r = CamResult { name: c.name.clone(), ..Default::default() };
        let mine: Vec<&(SystemTime, String, Value)> = alerts.iter().filter(|(_, t, _)| *t == topic(c)).collect();
        let early = mine.iter().find(|(_, _, v)| v["stage"] == "detected");
        if let (Some((t, _, _)), Some(p)) = (early, playing(c)) {
            r.early_s = Some(unix_s(*t) - p - appear);
        }
        let fin = mine.iter().find(|(_, _, v)| v["stage"] != "detected");
        if let Some((t, _, v)) = fin {
            r.stage = v["stage"].as_str().unwrap_or("?").to_owned();
            let clip = clips.iter().find(|k| k["clip"]["clip_id"] == v["clip_id"]);
            if let Some(created) = clip.and_then(|k| k["created_ms"].as_f64()) {
                r.final_s = Some(unix_s(*t) - created / 1000.0 - VLM_DELAY.as_secs_f64());
            }
        }
        if let Some(f) = feeds.iter().find(|f| f["camera"] == c.name.as_str()) {
            r.sent = f["frames_sent"].as_u64();
            r.dropped = f["frames_dropped"].as_u64();
        }
        let of_cam = |l: &&Value| l["camera"].as_str() == Some(c.name.as_str());
        r.prep_ms = log
            .iter()
            .filter(of_cam)
            .find(|l| l["message"] == "VLM request prepared")
            .and_then(|l| l["prep_ms"].as_f64());
        out.push(r);
    }
    Ok(RunResult { writes, cams: out, idle_cpu, event_cpu, peak_rss_mb })
}

/// Bytes a process caused to be written to storage: `write_bytes` of
/// /proc/PID/io, less `cancelled_write_bytes` (pages of files deleted before
/// they reached the disk).
fn io_written(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let field = |name: &str| -> Option<u64> {
        io.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok())
    };
    Some(field("write_bytes:")?.saturating_sub(field("cancelled_write_bytes:")?))
}

/// Total size and count of the files under `dir` that `keep` accepts.
fn files_under(dir: &Path, keep: fn(&Path) -> bool) -> (u64, usize) {
    let Ok(entries) = std::fs::read_dir(dir) else { return (0, 0) };
    let mut out = (0, 0);
    for e in entries.filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            let (b, n) = files_under(&p, keep);
            out = (out.0 + b, out.1 + n);
        } else if keep(&p) {
            out = (out.0 + e.metadata().map_or(0, |m| m.len()), out.1 + 1);
        }
    }
    out
}

/// The SD-card figure: bytes written per clip beyond the clip itself.
fn writes_text(w: &Writes) -> String {
    let n = w.clip_count.max(1) as f64;
    let kb = |b: u64| b as f64 / 1e3 / n;
    format!(
        "{:.0} kB per clip beyond the clip ({} clips of {:.0} kB; of that: snapshot {:.0} kB, store growth {:.0} kB, \
         the rest the VLM's frames (deleted once used), recording journals, store pages rewritten)",
        kb(w.total.saturating_sub(w.clips)),
        w.clip_count,
        kb(w.clips),
        kb(w.snapshots),
        kb(w.store),
    )
}

fn print_cams(r: &RunResult) {
    println!(
        "  {:<7} {:>12} {:>16} {:>8} {:>9} {:>8} {:>9}",
        "camera", "early (s)", "final (s, -VLM)", "prep_ms", "detector", "dropped", "final"
    );
    for c in &r.cams {
        println!(
            "  {:<7} {:>12} {:>16} {:>8} {:>9} {:>8} {:>9}",
            c.name,
            opt(c.early_s, 2),
            opt(c.final_s, 2),
            opt(c.prep_ms, 0),
            c.sent.map_or("-".into(), |n| n.to_string()),
            c.dropped.map_or("-".into(), |n| n.to_string()),
            if c.stage.is_empty() { "-" } else { &c.stage },
        );
    }
}

fn cpu_text(cpu: Option<(f64, f64)>, cams: usize) -> String {
    cpu.map_or_else(
        || "n/a".into(),
        |(pct, secs)| {
            format!("{:.1} % of one core per camera ({pct:.0} % in all, over {secs:.1} s)", pct / cams as f64)
        },
    )
}

fn main() {
    println!(
        "HomeSec live-path benchmark (release daemon, real RTSP servers, Mosquitto, fake VLM answering after {:.1} s)",
        VLM_DELAY.as_secs_f64()
    );
    let tools = match check_tools() {
        Ok(t) => t,
        Err(e) => return println!("SKIPPED: {e}"),
    };
    let started = Instant::now();

    let (appear, first_seen, frames) = match appear_time(&tools.footage, &tools.model, &tools.ort) {
        Ok(a) => a,
        Err(e) => return println!("SKIPPED: cannot find when the person appears: {e}"),
    };
    println!(
        "\nperson appears at {appear:.1} s into {FOOTAGE} (first of two consecutive frames with a person >= \
         {MIN_CONFIDENCE}, static post excluded; first such frame {first_seen:.1} s; {frames} frames at 10 fps run)"
    );

    let tmp = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return println!("SKIPPED: cannot create a temp dir: {e}"),
    };
    println!("making the streams with ffmpeg (libx264 veryfast, 20 fps, GOP 40, no B-frames) ...");
    let t0 = Instant::now();
    let sub = match make_stream(&tools.footage, tmp.path(), "sub_360p20", 640, 360) {
        Ok(p) => p,
        Err(e) => return println!("SKIPPED: {e}"),
    };
    let main_stream = make_stream(&tools.footage, tmp.path(), "main_1080p20", 1920, 1080);
    println!("  done in {:.0} s", t0.elapsed().as_secs_f64());

    let broker = match Broker::start(&tools.mosquitto) {
        Ok(b) => b,
        Err(e) => return println!("SKIPPED: {e}"),
    };
    let alerts = match subscribe(broker.port) {
        Ok(a) => a,
        Err(e) => return println!("SKIPPED: {e}"),
    };
    let vlm = match FakeVlm::start() {
        Ok(v) => v,
        Err(e) => return println!("SKIPPED: cannot start the fake VLM: {e}"),
    };

    let servers = |n: usize, prefix: &str, with_main: Option<&Path>| -> Result<Vec<Cam>, String> {
        (1..=n)
            .map(|i| {
                let name = format!("{prefix}{i}");
                Ok(match with_main {
                    Some(m) => Cam {
                        name,
                        main: RtspServer::start(&tools.python, m, EOS)?,
                        sub: Some(RtspServer::start(&tools.python, &sub, EOS)?),
                    },
                    None => Cam { name, main: RtspServer::start(&tools.python, &sub, EOS)?, sub: None },
                })
            })
            .collect()
    };

    // Figures 1-4: cameras as the issue has them.
    let (label, cams) = match &main_stream {
        Ok(m) => ("1080p20 main (passthrough) + 360p20 sub-stream", servers(MAIN_CAMERAS, "cam", Some(m))),
        Err(e) => {
            println!("  no 1080p main stream ({e}): the 360p stream is the only stream");
            ("360p20 single stream", servers(MAIN_CAMERAS, "cam", None))
        }
    };
    let cams = match cams {
        Ok(c) => c,
        Err(e) => return println!("SKIPPED: {e}"),
    };
    println!("\n== {MAIN_CAMERAS} cameras at once, {label} each ==");
    let first = match run(&tools, &broker, &alerts, &vlm, &cams, appear) {
        Ok(r) => r,
        Err(e) => return println!("FAILED: {e}"),
    };
    drop(cams);
    print_cams(&first);

    // Figure 5: more cameras with the event at once.
    println!("\n== {MANY_CAMERAS} cameras at once, 360p20 single stream each, the event on all of them ==");
    let many = match servers(MANY_CAMERAS, "many", None).and_then(|c| run(&tools, &broker, &alerts, &vlm, &c, appear)) {
        Ok(r) => {
            print_cams(&r);
            Some(r)
        }
        Err(e) => {
            println!("  FAILED: {e}");
            None
        }
    };

    let col = |r: &RunResult, f: fn(&CamResult) -> Option<f64>| r.cams.iter().filter_map(f).collect::<Vec<f64>>();
    println!("\n== summary ==");
    println!("  figure                                          value");
    println!("  person appears (footage time)                   {appear:.1} s");
    println!(
        "  person appears -> early alert ({MAIN_CAMERAS} cams)         {}",
        stats(&col(&first, |c| c.early_s), "s", 2)
    );
    println!(
        "  clip end -> final alert, minus VLM ({MAIN_CAMERAS} cams)    {}",
        stats(&col(&first, |c| c.final_s), "s", 2)
    );
    println!(
        "  (clips that end together wait for a VLM slot: concurrency.vlm_workers, default 2, so the 3rd and 4th \
         final alerts come one VLM delay later; the minimum is the path without that wait)"
    );
    println!("  VLM request prep from live frames               {}", stats(&col(&first, |c| c.prep_ms), "ms", 0));
    println!("  CPU idle (streaming, no motion)                 {}", cpu_text(first.idle_cpu, MAIN_CAMERAS));
    println!("  CPU event (person in view)                      {}", cpu_text(first.event_cpu, MAIN_CAMERAS));
    println!("  peak RSS ({MAIN_CAMERAS} cams)                              {}", opt(first.peak_rss_mb, 0) + " MB");
    if let Some(w) = &first.writes {
        println!("  data partition writes                           {}", writes_text(w));
    }
    if let Some(m) = &many {
        println!(
            "  {MANY_CAMERAS} cams: person appears -> early alert          {}",
            stats(&col(m, |c| c.early_s), "s", 2)
        );
        let sent: u64 = m.cams.iter().filter_map(|c| c.sent).sum();
        let dropped: u64 = m.cams.iter().filter_map(|c| c.dropped).sum();
        println!("  {MANY_CAMERAS} cams: frames to the detector / dropped     {sent} / {dropped}");
        println!("  {MANY_CAMERAS} cams: CPU idle                             {}", cpu_text(m.idle_cpu, MANY_CAMERAS));
        println!("  {MANY_CAMERAS} cams: CPU event                            {}", cpu_text(m.event_cpu, MANY_CAMERAS));
        println!("  {MANY_CAMERAS} cams: peak RSS                             {}", opt(m.peak_rss_mb, 0) + " MB");
    }
    println!("\n(total {:.0} s)", started.elapsed().as_secs_f64());
}
