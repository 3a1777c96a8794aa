//! Capacity benchmark: what a live camera costs HomeSec, side by side with the
//! plain-ffmpeg way of doing the same job, on the same streams (issue 14). Not a
//! timed test: it prints figures and fails only when it cannot run.
//!
//! `cargo bench --bench capacity` (release; `make bench-capacity`). In one run:
//!
//! 1. Streams are made with ffmpeg from the real footage (libx264 veryfast,
//!    20 fps, GOP 40, no B-frames): a 1920x1080 main stream and a 640x360
//!    sub-stream, looped to last the run, and cached in
//!    `$HOME/.cache/homesec/bench-streams/` (keyed by their parameters) so reruns
//!    skip the encode. The scene (`HOMESEC_CAPACITY_SCENE`): `idle` (default) loops
//!    the empty first seconds of `scene_empty_people_empty.mp4` (sensor noise, no
//!    motion: what a camera costs most of the day); `busy` loops `vtest_h264.mp4`
//!    (people in every frame: motion, recording and detection all the time).
//! 2. GStreamer RTSP servers (`tests/rtsp_server.py` under `/usr/bin/python3` or
//!    `HOMESEC_GST_PYTHON`), one per file, fresh for every run; every session
//!    gets its own pipeline, so one server serves all cameras.
//! 3. For every N of `HOMESEC_CAPACITY_CAMERAS` (default `8,16`), one after the
//!    other, never at the same time:
//!    - HomeSec: the release daemon (or `HOMESEC_CAPACITY_BIN`) with N RTSP
//!      cameras (main stream recorded by passthrough when motion comes, the
//!      sub-stream decoded for motion). Once `/health` shows every camera
//!      connected and receiving, and after a settle time, the daemon's CPU
//!      (utime+stime of /proc/PID/stat) is measured over the window
//!      (`HOMESEC_CAPACITY_WINDOW_S`, default 30 s), then its RSS (VmRSS at the
//!      end, VmHWM, PSS). A daemon with no camera gives the fixed base: the
//!      marginal memory per camera is (RSS(N) − RSS(0)) / N; the summary also
//!      gives the slope between consecutive N (what one more camera costs,
//!      without the first camera's one-time costs).
//!    - The reference: per camera one `ffmpeg -c copy` recorder of the main
//!      stream into 60 s MP4 segments and one `ffmpeg` decoding the sub-stream to
//!      5 fps grey frames on a pipe that the bench reads and discards. Summed CPU
//!      and RSS (and PSS: the ffmpeg processes share their libraries) of all of
//!      them over the same window.
//!
//!    Per run also: context switches per second per camera (all threads of the
//!    measured processes), the RTSP servers' own CPU and how busy the whole box
//!    was (so a saturated box shows), and what was delivered (decoded pictures
//!    per second per camera) so a stalled stream cannot pass for a cheap one.
//!
//! `HOMESEC_CAPACITY_REFERENCE=0` skips the reference runs.
//! `HOMESEC_CAPACITY_KEYFRAMES_WHEN_IDLE=1` sets `keyframes_when_idle` on
//! HomeSec's cameras (the reference is unchanged).
//! `HOMESEC_CAPACITY_X264_PARAMS` (e.g. `weightp=0`) is passed to libx264 as
//! `-x264-params` when the streams are made (and keys their cache): camera
//! encoders differ from libx264's defaults, and decode cost follows.
//! `HOMESEC_CAPACITY_PERF_DIR=DIR` records `perf record -g` of the daemon for
//! 20 s after each HomeSec window into `DIR/homesec-N<n>.data` (build the daemon
//! with `--profile profiling` for symbols and pass it as `HOMESEC_CAPACITY_BIN`).
//!
//! It runs the built daemon only: nothing here depends on HomeSec's decoder.
//! Test data: `HOMESEC_TESTDATA`, default `../shared/testdata`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{RtspServer, clock_ticks, cpu_ticks, free_port, opt, ort_library, testdata, wait_until};

/// Time between "every camera streams" and the measuring window.
const SETTLE: Duration = Duration::from_secs(5);
/// Length of the streams beyond the window (start-up, settle, stragglers).
const STREAM_MARGIN_S: u64 = 60;
/// Streams are never shorter than this (one cached pair serves short windows).
const MIN_STREAM_S: u64 = 90;
/// The idle scene: this many seconds from the start of [`IDLE_FOOTAGE`] are the
/// empty scene (the people fade in at 8 s).
const IDLE_FOOTAGE: &str = "scene_empty_people_empty.mp4";
const IDLE_CUT_S: u32 = 7;
const BUSY_FOOTAGE: &str = "vtest_h264.mp4";
const MAIN: (u32, u32) = (1920, 1080);
const SUB: (u32, u32) = (640, 360);
/// The reference's motion input: grey frames per second from the sub-stream.
const REFERENCE_FPS: u32 = 5;
const API_KEY: &str = "bench-api-key";
/// `perf record` length after the window, when asked for.
const PERF_S: u64 = 20;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

// ---------------------------------------------------------------- streams

/// Where made streams are kept between runs.
fn cache_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache/homesec/bench-streams")
}

/// Runs ffmpeg writing `out` (through a `.part` file, so an interrupted encode
/// is never taken for a made stream).
fn ffmpeg_to(out: &Path, args: &[&str]) -> Result<(), String> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let part = out.with_extension("part.mp4");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(args)
        .arg(&part)
        .status()
        .map_err(|e| format!("ffmpeg not available ({e})"))?;
    if !status.success() {
        let _ = std::fs::remove_file(&part);
        return Err(format!("ffmpeg failed ({status}) making {}", out.display()));
    }
    std::fs::rename(&part, out).map_err(|e| e.to_string())
}

/// The footage to loop: the idle scene's empty start (cut without re-encoding),
/// or the busy footage as it is.
fn loop_source(busy: bool) -> Result<PathBuf, String> {
    if busy {
        return Ok(testdata().join("footage").join(BUSY_FOOTAGE));
    }
    let out = cache_dir().join(format!("empty_scene_{IDLE_CUT_S}s.mp4"));
    if !out.is_file() {
        let src = testdata().join("footage").join(IDLE_FOOTAGE);
        ffmpeg_to(&out, &["-i", &src.to_string_lossy(), "-t", &IDLE_CUT_S.to_string(), "-c", "copy", "-an"])?;
    }
    Ok(out)
}

/// `src` looped for `secs` s, re-encoded at `w`x`h`, 20 fps, GOP 40, no
/// B-frames (libx264 veryfast); cached by its parameters.
fn make_stream(
    src: &Path,
    scene: &str,
    (w, h): (u32, u32),
    secs: u64,
    x264_params: Option<&str>,
) -> Result<(PathBuf, bool), String> {
    let extra = x264_params.map_or_else(String::new, |p| format!("_{}", p.replace([':', '='], "-")));
    let out = cache_dir().join(format!("{scene}_{w}x{h}_20fps_gop40_nob_veryfast{extra}_{secs}s.mp4"));
    if out.is_file() {
        return Ok((out, true));
    }
    let vf = format!("scale={w}:{h},fps=20");
    let t = secs.to_string();
    let src = src.to_string_lossy();
    let mut args = vec![
        "-stream_loop",
        "-1",
        "-i",
        &src,
        "-t",
        &t,
        "-vf",
        &vf,
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-g",
        "40",
        "-keyint_min",
        "40",
        "-sc_threshold",
        "0",
        "-bf",
        "0",
        "-an",
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
    ];
    if let Some(p) = x264_params {
        args.extend(["-x264-params", p]);
    }
    ffmpeg_to(&out, &args)?;
    Ok((out, false))
}

// ---------------------------------------------------------------- peers

/// The two servers of a run: main and sub-stream.
struct Servers {
    main: RtspServer,
    sub: RtspServer,
}

impl Servers {
    fn start(tools: &Tools) -> Result<Servers, String> {
        Ok(Servers {
            main: RtspServer::start(&tools.python, &tools.main, &[])?,
            sub: RtspServer::start(&tools.python, &tools.sub, &[])?,
        })
    }

    fn pids(&self) -> Vec<u32> {
        vec![self.main.pid(), self.sub.pid()]
    }

    /// Every one of `n` cameras has both its sessions streaming.
    fn all_playing(&self, n: usize) -> bool {
        self.main.count("PLAYING") >= n && self.sub.count("PLAYING") >= n
    }
}

// ---------------------------------------------------------------- process figures

/// A `key:  value kB` line of a /proc file.
fn proc_kb(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Voluntary and involuntary context switches of all threads of a process.
fn ctxt_switches(pid: u32) -> (u64, u64) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return (0, 0) };
    let mut out = (0, 0);
    for t in tasks.filter_map(Result::ok) {
        let status = t.path().join("status");
        let s = status.to_string_lossy();
        out.0 += proc_kb(&s, "voluntary_ctxt_switches:").unwrap_or(0);
        out.1 += proc_kb(&s, "nonvoluntary_ctxt_switches:").unwrap_or(0);
    }
    out
}

fn threads(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count() as u64)
}

/// (busy, total) jiffies of the whole machine.
fn box_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> =
        stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What a window measured of a set of processes.
#[derive(Clone, Copy, Default)]
struct Figures {
    /// utime+stime over the window, % of one core (all processes summed).
    cpu_pct: f64,
    secs: f64,
    /// At the end of the window, summed, kB.
    rss_kb: u64,
    hwm_kb: u64,
    pss_kb: u64,
    /// Per second, all threads summed.
    voluntary_per_s: f64,
    involuntary_per_s: f64,
    threads: u64,
    /// The RTSP servers' CPU over the window, % of one core.
    server_cpu_pct: f64,
    /// The whole machine over the window, % of all its cores.
    box_busy_pct: f64,
}

/// Measures `pids` (and the servers') over `window`.
fn measure(pids: &[u32], servers: &[u32], window: Duration) -> Figures {
    let ticks = clock_ticks();
    let sum = |pids: &[u32]| pids.iter().filter_map(|p| cpu_ticks(*p)).sum::<u64>();
    let ctxt = || pids.iter().map(|p| ctxt_switches(*p)).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let (cpu0, srv0, ctx0, box0, t0) = (sum(pids), sum(servers), ctxt(), box_jiffies(), Instant::now());
    std::thread::sleep(window);
    let (cpu1, srv1, ctx1, box1, secs) = (sum(pids), sum(servers), ctxt(), box_jiffies(), t0.elapsed().as_secs_f64());
    let kb = |path: &str, key: &str| pids.iter().filter_map(|p| proc_kb(&format!("/proc/{p}/{path}"), key)).sum();
    let pct = |a: u64, b: u64| b.saturating_sub(a) as f64 / ticks / secs * 100.0;
    Figures {
        cpu_pct: pct(cpu0, cpu1),
        secs,
        rss_kb: kb("status", "VmRSS:"),
        hwm_kb: kb("status", "VmHWM:"),
        pss_kb: kb("smaps_rollup", "Pss:"),
        voluntary_per_s: ctx1.0.saturating_sub(ctx0.0) as f64 / secs,
        involuntary_per_s: ctx1.1.saturating_sub(ctx0.1) as f64 / secs,
        threads: pids.iter().map(|p| threads(*p)).sum(),
        server_cpu_pct: pct(srv0, srv1),
        box_busy_pct: (box1.0 - box0.0) as f64 / (box1.1 - box0.1).max(1) as f64 * 100.0,
    }
}

// ---------------------------------------------------------------- HomeSec

struct Daemon {
    child: Child,
    api_port: u16,
    log: PathBuf,
}

impl Daemon {
    fn start(bin: &Path, dir: &Path, config: &str, api_port: u16, env: &[(String, String)]) -> Result<Daemon, String> {
        let path = dir.join("homesec.yaml");
        std::fs::write(&path, config).map_err(|e| e.to_string())?;
        let log = dir.join("daemon.log");
        let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .args(["run", "--config"])
            .arg(&path)
            .env("HOMESEC_LOG", "info")
            .env("BENCH_API_KEY", API_KEY)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run the daemon {}: {e}", bin.display()))?;
        let mut d = Daemon { child, api_port, log };
        let up = wait_until(Duration::from_secs(60), || {
            matches!(d.child.try_wait(), Ok(Some(_))) || TcpStream::connect(("127.0.0.1", api_port)).is_ok()
        });
        if !up || matches!(d.child.try_wait(), Ok(Some(_))) {
            return Err(format!("the daemon did not start:\n{}", d.log_tail()));
        }
        Ok(d)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut tail: Vec<&str> = log.lines().rev().take(10).collect();
        tail.reverse();
        tail.join("\n")
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn get_text(&self, path: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.api_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\nX-API-Key: {API_KEY}\r\n\r\n").ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        Some(buf.split_once("\r\n\r\n")?.1.to_owned())
    }

    fn get(&self, path: &str) -> Option<Value> {
        serde_json::from_str(&self.get_text(path)?).ok()
    }

    /// Every one of `n` cameras is connected and receiving frames.
    fn all_streaming(&self, n: usize) -> bool {
        let Some(h) = self.get("/health") else { return false };
        let sources = h["sources"].as_array().cloned().unwrap_or_default();
        sources.len() == n
            && sources.iter().all(|s| s["connected"] == true && s["fps"].as_f64().is_some_and(|f| f > 0.0))
    }

    /// The sum over cameras of a per-camera counter of /metrics.
    fn counter(&self, name: &str) -> Option<f64> {
        let text = self.get_text("/metrics")?;
        let prefix = format!("{name}{{");
        Some(
            text.lines()
                .filter(|l| l.starts_with(&prefix))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        )
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

/// N RTSP cameras, main stream + sub-stream, default motion and recording
/// settings; the yolo filter (the only one; it runs only on motion).
/// `HOMESEC_CAPACITY_KEYFRAMES_WHEN_IDLE=1`: the cameras decode only keyframes while idle.
fn keyframes_when_idle() -> bool {
    std::env::var("HOMESEC_CAPACITY_KEYFRAMES_WHEN_IDLE").is_ok_and(|v| v == "1")
}

fn config(dir: &Path, tools: &Tools, n: usize, api: u16) -> String {
    let mut y = format!("device_id: capacity\ndata_dir: {}/data\ncameras:", dir.display());
    if n == 0 {
        y.push_str(" []\n");
    } else {
        y.push('\n');
    }
    for i in 1..=n {
        y.push_str(&format!(
            "  - name: cam{i}\n    source:\n      backend: rtsp\n      config:\n        rtsp_url_env: CAM{i}_URL\n        \
             detect_url_env: CAM{i}_SUB\n        keyframes_when_idle: {}\n",
            keyframes_when_idle()
        ));
    }
    y.push_str(&format!(
        "filter:\n  backend: yolo\n  config:\n    model_path: {}\n    ort_library: {}\n    classes: [person]\n",
        tools.model.display(),
        tools.ort.display()
    ));
    y.push_str(&format!("server:\n  port: {api}\n  api_key_env: BENCH_API_KEY\n"));
    y
}

struct HomesecRun {
    fig: Figures,
    /// Detect-stream pictures through motion (`detect_fps` of the decoded
    /// ones), and main-stream frames received, per second per camera over the
    /// window.
    decoded_fps: Option<f64>,
    received_fps: Option<f64>,
}

fn run_homesec(tools: &Tools, n: usize, window: Duration) -> Result<HomesecRun, String> {
    let servers = if n > 0 { Some(Servers::start(tools)?) } else { None };
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let api = free_port();
    let mut env = Vec::new();
    if let Some(s) = &servers {
        for i in 1..=n {
            env.push((format!("CAM{i}_URL"), s.main.url()));
            env.push((format!("CAM{i}_SUB"), s.sub.url()));
        }
    }
    let mut daemon = Daemon::start(&tools.bin, dir.path(), &config(dir.path(), tools, n, api), api, &env)?;
    let streaming = wait_until(Duration::from_secs(90), || {
        daemon.all_streaming(n) && servers.as_ref().is_none_or(|s| s.all_playing(n))
    });
    if !streaming {
        return Err(format!("not every camera streamed within 90 s; daemon log:\n{}", daemon.log_tail()));
    }
    std::thread::sleep(SETTLE);
    let server_pids = servers.as_ref().map(Servers::pids).unwrap_or_default();
    let decoded0 = daemon.counter("homesec_camera_frames_decoded_total");
    let received0 = daemon.counter("homesec_camera_frames_received_total");
    let t0 = Instant::now();
    let fig = measure(&[daemon.pid()], &server_pids, window);
    let secs = t0.elapsed().as_secs_f64();
    let per_cam_fps = |a: Option<f64>, b: Option<f64>| Some((b? - a?) / secs / n.max(1) as f64).filter(|_| n > 0);
    let decoded_fps = per_cam_fps(decoded0, daemon.counter("homesec_camera_frames_decoded_total"));
    let received_fps = per_cam_fps(received0, daemon.counter("homesec_camera_frames_received_total"));
    if let Some(s) = &servers
        && s.main.count("EOS") + s.sub.count("EOS") > 0
    {
        println!("  (a stream ended during the window: make the streams longer)");
    }
    if n > 0
        && let Some(out) = std::env::var_os("HOMESEC_CAPACITY_PERF_DIR").map(PathBuf::from)
    {
        perf_record(daemon.pid(), &out.join(format!("homesec-N{n}.data")));
    }
    daemon.stop();
    Ok(HomesecRun { fig, decoded_fps, received_fps })
}

fn perf_record(pid: u32, out: &Path) {
    if let Some(dir) = out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    println!("  perf record -g of the daemon for {PERF_S} s -> {}", out.display());
    let status = Command::new("perf")
        .args(["record", "-g", "-p", &pid.to_string(), "-o"])
        .arg(out)
        .args(["--", "sleep", &PERF_S.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !status.is_ok_and(|s| s.success()) {
        println!("  (perf record failed)");
    }
}

// ---------------------------------------------------------------- the reference

/// Per camera: an ffmpeg recorder of the main stream and an ffmpeg decoding
/// the sub-stream to grey frames that a thread reads and discards.
struct Reference {
    children: Vec<Child>,
    /// Bytes of grey frames read, per camera.
    bytes: Vec<Arc<AtomicU64>>,
    dir: tempfile::TempDir,
}

impl Reference {
    fn start(servers: &Servers, n: usize) -> Result<Reference, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut r = Reference { children: Vec::new(), bytes: Vec::new(), dir };
        for i in 1..=n {
            let log = |name: &str| std::fs::File::create(r.dir.path().join(name)).map(Stdio::from);
            let rec = Command::new("ffmpeg")
                .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-rtsp_transport", "tcp", "-i"])
                .arg(servers.main.url())
                .args(["-c", "copy", "-f", "segment", "-segment_time", "60", "-reset_timestamps", "1"])
                .arg(r.dir.path().join(format!("cam{i}_%03d.mp4")))
                .stdout(Stdio::null())
                .stderr(log(&format!("rec{i}.log")).map_err(|e| e.to_string())?)
                .spawn()
                .map_err(|e| format!("cannot run ffmpeg: {e}"))?;
            r.children.push(rec);
            let vf = format!("fps={REFERENCE_FPS},format=gray");
            let mut dec = Command::new("ffmpeg")
                .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-rtsp_transport", "tcp", "-i"])
                .arg(servers.sub.url())
                .args(["-vf", &vf, "-f", "rawvideo", "pipe:1"])
                .stdout(Stdio::piped())
                .stderr(log(&format!("dec{i}.log")).map_err(|e| e.to_string())?)
                .spawn()
                .map_err(|e| format!("cannot run ffmpeg: {e}"))?;
            let mut out = dec.stdout.take().ok_or("no stdout")?;
            r.children.push(dec);
            let count = Arc::new(AtomicU64::new(0));
            let c = count.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                while let Ok(k) = out.read(&mut buf) {
                    if k == 0 {
                        break;
                    }
                    c.fetch_add(k as u64, Ordering::Relaxed);
                }
            });
            r.bytes.push(count);
        }
        Ok(r)
    }

    fn pids(&mut self) -> Vec<u32> {
        self.children.iter_mut().filter_map(|c| matches!(c.try_wait(), Ok(None)).then(|| c.id())).collect()
    }

    fn grey_bytes(&self) -> u64 {
        self.bytes.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Bytes of the recorded segments.
    fn recorded_bytes(&self) -> u64 {
        std::fs::read_dir(self.dir.path()).map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "mp4"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct ReferenceRun {
    fig: Figures,
    /// Grey frames delivered per second per camera over the window.
    grey_fps: f64,
    /// Recorded bytes per second per camera over the window.
    recorded_kbps: f64,
}

fn run_reference(tools: &Tools, n: usize, window: Duration) -> Result<ReferenceRun, String> {
    let servers = Servers::start(tools)?;
    let mut r = Reference::start(&servers, n)?;
    let streaming = wait_until(Duration::from_secs(90), || {
        servers.all_playing(n) && r.bytes.iter().all(|b| b.load(Ordering::Relaxed) > 0)
    });
    if !streaming {
        return Err("not every reference camera streamed within 90 s".into());
    }
    std::thread::sleep(SETTLE);
    let pids = r.pids();
    if pids.len() != 2 * n {
        return Err(format!("{} of the {} ffmpeg processes exited", 2 * n - pids.len(), 2 * n));
    }
    let (grey0, rec0, t0) = (r.grey_bytes(), r.recorded_bytes(), Instant::now());
    let fig = measure(&pids, &servers.pids(), window);
    let secs = t0.elapsed().as_secs_f64();
    let frame = (SUB.0 * SUB.1) as f64;
    let grey_fps = (r.grey_bytes() - grey0) as f64 / frame / secs / n as f64;
    let recorded_kbps = r.recorded_bytes().saturating_sub(rec0) as f64 * 8.0 / 1000.0 / secs / n as f64;
    if r.pids().len() != 2 * n {
        println!("  (an ffmpeg process exited during the window)");
    }
    Ok(ReferenceRun { fig, grey_fps, recorded_kbps })
}

// ---------------------------------------------------------------- set-up

struct Tools {
    python: String,
    bin: PathBuf,
    model: PathBuf,
    ort: PathBuf,
    main: PathBuf,
    sub: PathBuf,
}

fn check_tools() -> Result<(String, PathBuf, PathBuf, PathBuf), String> {
    let model = testdata().join("models/yolox_nano_416.onnx");
    if !model.is_file() {
        return Err(format!("detector model not found at {} (set HOMESEC_TESTDATA)", model.display()));
    }
    let ort = ort_library().ok_or("ONNX Runtime not found (run `make fetch` or set ORT_DYLIB_PATH)")?;
    let ffmpeg_ok = Command::new("ffmpeg").arg("-version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !ffmpeg_ok.is_ok_and(|s| s.success()) {
        return Err("ffmpeg not available (apt-get install ffmpeg)".into());
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
    let bin = std::env::var_os("HOMESEC_CAPACITY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_homesec")));
    if !bin.is_file() {
        return Err(format!("daemon binary not found at {}", bin.display()));
    }
    Ok((python, bin, model, ort))
}

fn camera_counts() -> Result<Vec<usize>, String> {
    let spec = std::env::var("HOMESEC_CAPACITY_CAMERAS").unwrap_or_else(|_| "8,16".into());
    let counts: Result<Vec<usize>, _> = spec.split(',').map(|s| s.trim().parse::<usize>()).collect();
    match counts {
        Ok(c) if !c.is_empty() && c.iter().all(|n| *n > 0) => Ok(c),
        _ => Err(format!("HOMESEC_CAPACITY_CAMERAS must be a list of camera counts like 8,16 (got `{spec}`)")),
    }
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn main() {
    println!("HomeSec capacity benchmark: HomeSec vs per-camera ffmpeg processes on the same RTSP streams");
    let counts = match camera_counts() {
        Ok(c) => c,
        Err(e) => return println!("FAILED: {e}"),
    };
    let (python, bin, model, ort) = match check_tools() {
        Ok(t) => t,
        Err(e) => return println!("SKIPPED: {e}"),
    };
    let window = Duration::from_secs(env_u64("HOMESEC_CAPACITY_WINDOW_S", 30).max(5));
    let reference = std::env::var("HOMESEC_CAPACITY_REFERENCE").map_or(true, |v| v != "0");
    let busy = std::env::var("HOMESEC_CAPACITY_SCENE").is_ok_and(|v| v == "busy");
    let x264 = std::env::var("HOMESEC_CAPACITY_X264_PARAMS").ok().filter(|p| !p.is_empty());
    let started = Instant::now();

    let secs = (window.as_secs() + STREAM_MARGIN_S).max(MIN_STREAM_S);
    let (scene, scene_text) = if busy {
        ("busy", format!("{BUSY_FOOTAGE} looped (people in every frame: motion, recording, detection)"))
    } else {
        ("idle", format!("the empty first {IDLE_CUT_S} s of {IDLE_FOOTAGE} looped (no motion)"))
    };
    let mut scene_text = match &x264 {
        Some(p) => format!("{scene_text}; -x264-params {p}"),
        None => scene_text,
    };
    if keyframes_when_idle() {
        scene_text.push_str("; HomeSec with keyframes_when_idle");
    }
    let t0 = Instant::now();
    let streams = loop_source(busy).and_then(|src| {
        let m = make_stream(&src, scene, MAIN, secs, x264.as_deref())?;
        let s = make_stream(&src, scene, SUB, secs, x264.as_deref())?;
        Ok((m, s))
    });
    let ((main_stream, cached_main), (sub_stream, cached_sub)) = match streams {
        Ok(s) => s,
        Err(e) => return println!("SKIPPED: cannot make the streams: {e}"),
    };
    println!(
        "streams: {}x{} and {}x{} H.264, 20 fps, GOP 40, no B-frames, {secs} s: {scene_text}; {}",
        MAIN.0,
        MAIN.1,
        SUB.0,
        SUB.1,
        if cached_main && cached_sub {
            "cached".to_owned()
        } else {
            format!("made in {:.0} s", t0.elapsed().as_secs_f64())
        }
    );
    let tools = Tools { python, bin, model, ort, main: main_stream, sub: sub_stream };
    println!(
        "machine: {} cores; window {} s after {} s settle; daemon {}",
        cores(),
        window.as_secs(),
        SETTLE.as_secs(),
        tools.bin.display()
    );

    // The daemon with no camera: its fixed memory and idle CPU.
    println!("\n== HomeSec, no camera (the fixed base) ==");
    let base = match run_homesec(&tools, 0, window) {
        Ok(r) => r.fig,
        Err(e) => return println!("FAILED: {e}"),
    };
    println!(
        "  CPU {:.2} % of one core, RSS {:.1} MB (VmHWM {:.1} MB, PSS {:.1} MB), {} threads",
        base.cpu_pct,
        mb(base.rss_kb),
        mb(base.hwm_kb),
        mb(base.pss_kb),
        base.threads
    );

    let mut rows = Vec::new();
    for &n in &counts {
        println!("\n== {n} cameras: HomeSec ==");
        let hs = match run_homesec(&tools, n, window) {
            Ok(r) => {
                print_run(&r.fig, n);
                let decoded = if keyframes_when_idle() {
                    "only keyframes are decoded while idle"
                } else {
                    "every reference picture is decoded; motion takes detect_fps of them"
                };
                println!(
                    "  per camera: {} main-stream frames received/s, {} detect-stream pictures through motion/s \
                     ({decoded})",
                    opt(r.received_fps, 1),
                    opt(r.decoded_fps, 1)
                );
                Some(r)
            }
            Err(e) => {
                println!("  FAILED: {e}");
                None
            }
        };
        let rf = if reference {
            println!("== {n} cameras: reference (ffmpeg -c copy recorder + ffmpeg grey-frame decoder per camera) ==");
            match run_reference(&tools, n, window) {
                Ok(r) => {
                    print_run(&r.fig, n);
                    println!(
                        "  per camera: {:.1} grey frames/s delivered, {:.0} kbit/s recorded",
                        r.grey_fps, r.recorded_kbps
                    );
                    Some(r)
                }
                Err(e) => {
                    println!("  FAILED: {e}");
                    None
                }
            }
        } else {
            None
        };
        rows.push((n, hs, rf));
    }

    println!("\n== summary ({} cores; CPU in % of one core, memory in MB) ==", cores());
    println!(
        "  {:>3} | {:>20} | {:>36} | {:>22} | {:>28} | {:>14}",
        "N",
        "HomeSec CPU %/camera",
        "HomeSec RSS MB (total, marginal/cam)",
        "reference CPU %/camera",
        "reference RSS MB (total, /cam)",
        "box busy %"
    );
    for (n, hs, rf) in &rows {
        let nf = *n as f64;
        let hs_cpu = hs.as_ref().map_or("-".into(), |r| format!("{:.2}", r.fig.cpu_pct / nf));
        let hs_mem = hs.as_ref().map_or("-".into(), |r| {
            format!("{:.1} ({:+.2}/cam)", mb(r.fig.rss_kb), (mb(r.fig.rss_kb) - mb(base.rss_kb)) / nf)
        });
        let rf_cpu = rf.as_ref().map_or("-".into(), |r| format!("{:.2}", r.fig.cpu_pct / nf));
        let rf_mem =
            rf.as_ref().map_or("-".into(), |r| format!("{:.1} ({:.2}/cam)", mb(r.fig.rss_kb), mb(r.fig.rss_kb) / nf));
        let busy = [hs.as_ref().map(|r| r.fig.box_busy_pct), rf.as_ref().map(|r| r.fig.box_busy_pct)]
            .map(|b| opt(b, 0))
            .join(" / ");
        println!("  {n:>3} | {hs_cpu:>20} | {hs_mem:>36} | {rf_cpu:>22} | {rf_mem:>28} | {busy:>14}");
    }
    println!(
        "  (marginal/cam = (RSS(N) - RSS(no camera, {:.1} MB)) / N. The reference's RSS sums 2N processes that share \
         their libraries; its PSS is in the run lines above. box busy: HomeSec run / reference run, % of all cores.)",
        mb(base.rss_kb)
    );
    // The slope between runs leaves out what the first camera brings once
    // (the live path's code pages, libavcodec's tables).
    let measured: Vec<(usize, f64)> =
        rows.iter().filter_map(|(n, hs, _)| Some((*n, mb(hs.as_ref()?.fig.rss_kb)))).collect();
    for pair in measured.windows(2) {
        let [(n0, r0), (n1, r1)] = pair else { continue };
        if n1 > n0 {
            println!(
                "  HomeSec RSS from {n0} to {n1} cameras: {:+.2} MB per added camera",
                (r1 - r0) / (n1 - n0) as f64
            );
        }
    }
    let saturated = rows.iter().any(|(_, hs, rf)| {
        hs.as_ref().is_some_and(|r| r.fig.box_busy_pct > 90.0) || rf.as_ref().is_some_and(|r| r.fig.box_busy_pct > 90.0)
    });
    if saturated {
        println!("  WARNING: the box was over 90 % busy in a run: that row measures a saturated machine");
    }
    println!("\n(total {:.0} s)", started.elapsed().as_secs_f64());
}

fn print_run(f: &Figures, n: usize) {
    let nf = n as f64;
    println!(
        "  CPU {:.1} % of one core in all = {:.2} %/camera (over {:.1} s); RSS {:.1} MB, VmHWM {:.1} MB, PSS {:.1} MB; \
         {} threads",
        f.cpu_pct,
        f.cpu_pct / nf,
        f.secs,
        mb(f.rss_kb),
        mb(f.hwm_kb),
        mb(f.pss_kb),
        f.threads
    );
    println!(
        "  context switches per camera per second: {:.0} voluntary, {:.0} involuntary; RTSP servers {:.1} % of one \
         core; box {:.0} % busy",
        f.voluntary_per_s / nf,
        f.involuntary_per_s / nf,
        f.server_cpu_pct,
        f.box_busy_pct
    );
}
