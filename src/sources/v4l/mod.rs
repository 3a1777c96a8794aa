//! USB camera source (V4L2): captures MJPEG, YUYV or H.264 from a video device,
//! encodes raw and MJPEG frames to H.264 with openh264 (H.264 capture is passed
//! through), runs the motion detector on the luma plane at `detect_fps`, and feeds
//! the shared recorder, which writes pre/post-roll clips and hands them to the
//! pipeline.
//!
//! Threads: one dedicated capture thread per camera does device I/O, JPEG
//! decode, pixel conversion, H.264 encode and motion (all blocking CPU work, off
//! the async workers).
//!
//! - [`capture`]: the thin device layer (open, negotiate, stream mmap buffers).
//! - [`processor`]: buffers to H.264 packets + motion samples, without a device.
//! - [`convert`], [`h264`]: pixel conversions, Annex-B/AVCC, the encoder.

pub mod capture;
pub mod convert;
pub mod h264;
pub mod processor;

use std::fmt;
use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::live::{self, HealthRules, LiveHealth, Role, log_due};
use super::recorder::{EncodedPacket, RecorderEvent, RecordingConfig};
use super::{ClipSource, SourceError, SourceHealth};
use crate::backoff::Backoff;
use crate::domain::{CameraName, now_ms};
use crate::media::motion::MotionConfig;
use crate::media::mp4write::{Mp4WriteError, SampleEntry};
use crate::pipeline::ClipSink;
use crate::plugin::{PluginBuildError, PluginContext};
use crate::plugin::{PluginConfig, Validator};
use capture::{CaptureError, CaptureSpec, Negotiated};

pub use processor::{CapturedFrame, FrameProcessor, H264Packet, Processed, ProcessorSettings, ProcessorStats};

/// The backend name in configs and clip records.
pub const BACKEND: &str = "v4l";
/// Events queued between the capture thread and the recorder (~8 s at 30 fps).
const QUEUE: usize = 512;

/// The pixel format asked of the camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// Motion JPEG: what most USB cameras offer at 720p/1080p and 15-30 fps.
    #[default]
    Mjpeg,
    /// Uncompressed 4:2:2: full quality, but USB 2 limits it to low sizes or rates.
    Yuyv,
    /// The camera's own H.264, recorded unchanged (no encode on the box).
    H264,
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Mjpeg => "MJPEG",
            Self::Yuyv => "YUYV",
            Self::H264 => "H.264",
        })
    }
}

/// The `config:` block of a `v4l` camera source.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct V4lConfig {
    /// The video device. `/dev/v4l/by-id/usb-…-video-index0` survives re-plugging
    /// and reboots better than `/dev/videoN`.
    pub device: PathBuf,
    /// What to ask the camera for: `mjpeg`, `yuyv` or `h264`.
    pub format: PixelFormat,
    /// Capture size; the camera may pick the nearest size it offers (logged).
    pub width: u32,
    pub height: u32,
    /// Capture frame rate.
    pub fps: u32,
    /// Target bitrate of the H.264 encoder (mjpeg / yuyv only).
    pub bitrate_kbps: u32,
    /// Seconds between keyframes of the H.264 encoder (mjpeg / yuyv only). Clips
    /// start and split at keyframes, so this is the pre-roll's granularity.
    pub keyframe_interval_s: f64,
    /// Motion detections per second at most (the detector skips frames in between).
    pub detect_fps: f64,
    pub motion: MotionConfig,
    pub recording: RecordingConfig,
    /// A device that delivers no frame for this long is closed and reopened; the
    /// source is unhealthy after three times as long without frames.
    pub frame_timeout_s: f64,
    /// Retry backoff after a failure: first delay, doubled per failure up to
    /// `reconnect_max_s` (±20 % jitter). A missing device or an unsupported
    /// format waits `reconnect_max_s` straight away.
    pub reconnect_initial_s: f64,
    pub reconnect_max_s: f64,
}

impl Default for V4lConfig {
    fn default() -> Self {
        Self {
            device: PathBuf::from("/dev/video0"),
            format: PixelFormat::Mjpeg,
            width: 1280,
            height: 720,
            fps: 15,
            bitrate_kbps: 2000,
            keyframe_interval_s: 2.0,
            detect_fps: 5.0,
            motion: MotionConfig::default(),
            recording: RecordingConfig::default(),
            frame_timeout_s: 5.0,
            reconnect_initial_s: 1.0,
            reconnect_max_s: 30.0,
        }
    }
}

impl PluginConfig for V4lConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        v.check(!self.device.as_os_str().is_empty(), "device", "must name a video device, e.g. /dev/video0");
        // openh264 encodes up to 3840x2160; 4:2:0 needs even sizes.
        v.check(
            (16..=3840).contains(&self.width) && self.width.is_multiple_of(2),
            "width",
            "must be an even number in [16, 3840]",
        );
        v.check(
            (16..=2160).contains(&self.height) && self.height.is_multiple_of(2),
            "height",
            "must be an even number in [16, 2160]",
        );
        v.check((1..=120).contains(&self.fps), "fps", "must be in [1, 120]");
        v.check((100..=50_000).contains(&self.bitrate_kbps), "bitrate_kbps", "must be in [100, 50000]");
        v.check(
            self.keyframe_interval_s.is_finite() && self.keyframe_interval_s > 0.0 && self.keyframe_interval_s <= 60.0,
            "keyframe_interval_s",
            "must be in (0, 60]",
        );
        if !(self.detect_fps.is_finite() && self.detect_fps > 0.0 && self.detect_fps <= 60.0) {
            v.error("detect_fps", "must be in (0, 60]");
        } else if self.detect_fps > f64::from(self.fps) {
            v.error("detect_fps", format!("must not exceed fps ({})", self.fps));
        }
        let in_range = |x: f64, lo: f64, hi: f64| x.is_finite() && x >= lo && x <= hi;
        v.check(in_range(self.frame_timeout_s, 1.0, 300.0), "frame_timeout_s", "must be in [1, 300]");
        v.check(in_range(self.reconnect_initial_s, 0.1, 600.0), "reconnect_initial_s", "must be in [0.1, 600]");
        if !in_range(self.reconnect_max_s, 1.0, 3600.0) {
            v.error("reconnect_max_s", "must be in [1, 3600]");
        } else if self.reconnect_max_s < self.reconnect_initial_s {
            v.error("reconnect_max_s", format!("must be at least reconnect_initial_s ({})", self.reconnect_initial_s));
        }
        self.motion.validate(&mut v.nested("motion"));
        self.recording.validate(&mut v.nested("recording"));
    }
}

impl V4lConfig {
    fn capture_spec(&self) -> CaptureSpec {
        CaptureSpec {
            device: self.device.clone(),
            format: self.format,
            width: self.width,
            height: self.height,
            fps: self.fps,
        }
    }

    /// The processor's settings for a device delivering `fps` frames a second.
    pub fn processor_settings(&self, fps: f64) -> ProcessorSettings {
        ProcessorSettings {
            fps,
            bitrate_kbps: self.bitrate_kbps,
            keyframe_interval_s: self.keyframe_interval_s,
            detect_fps: self.detect_fps,
            motion: self.motion.clone(),
        }
    }
}

/// Turns the processor's output into recorder events: a `Stream` event whenever
/// the H.264 parameters change, then the frame's packet, then its motion verdict.
#[derive(Debug)]
pub struct RecorderFeed {
    /// Picture size for the sample entry when the SPS cannot be parsed.
    fallback_size: (u32, u32),
    /// Wall-clock time (unix ms) of pts 0; set from the first frame when not given.
    wall0_ms: Option<i64>,
    announced: bool,
}

impl RecorderFeed {
    /// MP4 timescale of USB recordings (the usual 90 kHz video clock).
    pub const TIMESCALE: u32 = 90_000;

    pub fn new(width: u32, height: u32) -> Self {
        Self { fallback_size: (width, height), wall0_ms: None, announced: false }
    }

    /// Fixes the wall-clock time of pts 0 (tests, replays).
    pub fn with_wall_clock_origin(mut self, wall0_ms: i64) -> Self {
        self.wall0_ms = Some(wall0_ms);
        self
    }

    fn ticks(pts: Duration) -> i64 {
        (pts.as_secs_f64() * f64::from(Self::TIMESCALE)).round() as i64
    }

    /// The events for one processed frame, in the order the recorder needs them.
    pub fn events(
        &mut self,
        processed: Processed,
        processor: &FrameProcessor,
        pts: Duration,
    ) -> Result<Vec<RecorderEvent>, Mp4WriteError> {
        let mut events = Vec::with_capacity(3);
        if (processed.parameters_changed || (!self.announced && processed.packet.is_some()))
            && let Some(ps) = processor.parameter_sets()
        {
            let (w, h) = ps.dimensions().unwrap_or(self.fallback_size);
            let (w, h) = (u16::try_from(w).unwrap_or(u16::MAX), u16::try_from(h).unwrap_or(u16::MAX));
            let entry = SampleEntry::avc1_from_parameter_sets(&ps.sps, &ps.pps, w, h)?;
            events.push(RecorderEvent::Stream { entry, timescale: Self::TIMESCALE });
            self.announced = true;
        }
        let wall0 = *self.wall0_ms.get_or_insert_with(|| now_ms() - pts.as_millis() as i64);
        if let Some(packet) = processed.packet
            && self.announced
        {
            events.push(RecorderEvent::Packet(EncodedPacket {
                pts: Self::ticks(packet.pts),
                wall_ms: wall0 + packet.pts.as_millis() as i64,
                is_keyframe: packet.keyframe,
                data: packet.data,
            }));
        }
        if let Some(sample) = processed.motion
            && self.announced
        {
            events.push(RecorderEvent::Motion { pts: Some(Self::ticks(pts)), motion: sample.motion });
        }
        Ok(events)
    }
}

/// What the capture thread learns about the device, for diagnostics (the
/// camera's health is in its [`LiveHealth`]).
#[derive(Debug, Default)]
struct DeviceState {
    negotiated: Option<Negotiated>,
    bad_frames: u64,
}

/// Per-camera detail beyond [`SourceHealth`] (for diagnostics).
#[derive(Debug, Clone, Serialize)]
pub struct V4lStatus {
    pub device: String,
    pub format: PixelFormat,
    /// Card name, size and rate the device agreed to (none before it opened).
    pub card: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub negotiated_fps: Option<f64>,
    /// Frames per second actually received.
    pub fps: f64,
    pub frames: u64,
    pub bad_frames: u64,
    pub reconnects: u64,
    pub last_frame_age_s: Option<f64>,
    pub last_error: Option<String>,
}

/// A USB (V4L2) camera.
pub struct V4lSource {
    camera: CameraName,
    cfg: V4lConfig,
    recordings: PathBuf,
    health: Arc<LiveHealth>,
    device: Arc<Mutex<DeviceState>>,
}

/// Builds the source. A device that is missing now is not an error (USB cameras
/// come and go): the source starts unhealthy, says why, and retries slowly. A
/// path that exists but is not a device is a configuration error.
pub fn build(camera: CameraName, cfg: V4lConfig, ctx: &PluginContext) -> Result<V4lSource, PluginBuildError> {
    let rules = HealthRules { stale_after: 3 * cfg.frame_timeout(), first_frame_grace: cfg.frame_timeout() };
    let health = Arc::new(LiveHealth::new(camera.clone(), BACKEND, rules, false));
    match std::fs::metadata(&cfg.device) {
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_char_device() {
                return Err(PluginBuildError::new(
                    "source",
                    BACKEND,
                    format!("{} is not a video device (not a character device)", cfg.device.display()),
                ));
            }
        }
        Err(_) => {
            let e = CaptureError::Missing { device: cfg.device.display().to_string() };
            warn!(camera = %camera, error = %e, "USB camera not present yet; will keep trying");
            health.set_error(Role::Main, Some(e.to_string()));
        }
    }
    Ok(V4lSource {
        recordings: ctx.layout.camera_recordings(camera.as_str()),
        camera,
        cfg,
        health,
        device: Arc::default(),
    })
}

impl V4lSource {
    pub fn config(&self) -> &V4lConfig {
        &self.cfg
    }

    fn job(&self, tx: mpsc::Sender<RecorderEvent>, stop: Arc<AtomicBool>) -> CaptureJob {
        CaptureJob {
            camera: self.camera.clone(),
            cfg: self.cfg.clone(),
            health: self.health.clone(),
            device: self.device.clone(),
            stop,
            tx,
        }
    }

    /// The capture loop on the calling thread: opens the device, streams frames
    /// through the processor into `tx` as recorder events, and on failure retries
    /// with backoff (`reconnect_initial_s` doubling to `reconnect_max_s`; the
    /// maximum straight away for a missing device, a missing permission or an
    /// unsupported format). Returns once `stop` is set or `tx` is closed.
    /// [`ClipSource::run`] runs it on a dedicated thread.
    pub fn capture_blocking(&self, tx: mpsc::Sender<RecorderEvent>, stop: Arc<AtomicBool>) {
        self.job(tx, stop).run();
    }

    pub fn status(&self) -> V4lStatus {
        let health = self.health.report();
        let frames = self.health.frames();
        let d = lock(&self.device);
        V4lStatus {
            device: self.cfg.device.display().to_string(),
            format: self.cfg.format,
            card: d.negotiated.as_ref().map(|n| n.card.clone()),
            width: d.negotiated.as_ref().map(|n| n.width),
            height: d.negotiated.as_ref().map(|n| n.height),
            negotiated_fps: d.negotiated.as_ref().map(|n| n.fps),
            fps: health.fps.unwrap_or(0.0),
            frames,
            bad_frames: d.bad_frames,
            reconnects: health.reconnects.unwrap_or(0),
            last_frame_age_s: health.last_heartbeat_age_s,
            last_error: health.last_error,
        }
    }
}

fn lock(device: &Mutex<DeviceState>) -> MutexGuard<'_, DeviceState> {
    // Only plain field updates happen under the lock: a panic cannot leave it half-done.
    device.lock().unwrap_or_else(PoisonError::into_inner)
}

impl V4lConfig {
    fn frame_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.frame_timeout_s.clamp(1.0, 300.0))
    }

    /// The retry schedule: doubling from `reconnect_initial_s` to
    /// `reconnect_max_s`; problems a retry will not fix soon wait
    /// [`Backoff::max_delay`] straight away.
    fn backoff(&self) -> Backoff {
        let secs = |s: f64| Duration::from_secs_f64(s.clamp(0.1, 3600.0));
        Backoff::new(secs(self.reconnect_initial_s), secs(self.reconnect_max_s))
    }
}

/// Everything the capture thread needs.
struct CaptureJob {
    camera: CameraName,
    cfg: V4lConfig,
    health: Arc<LiveHealth>,
    device: Arc<Mutex<DeviceState>>,
    stop: Arc<AtomicBool>,
    tx: mpsc::Sender<RecorderEvent>,
}

/// How a capture session ended.
enum SessionEnd {
    Stopped,
    /// The recorder is gone (shutdown).
    RecorderGone,
    Failed(CaptureError),
}

impl CaptureJob {
    /// Opens the device, streams until stopped or failing, retries with backoff.
    fn run(self) {
        let mut backoff = self.cfg.backoff();
        let mut last_logged: Option<String> = None;
        while !self.stop.load(Ordering::Relaxed) {
            let frames_before = self.health.frames();
            let end = match catch_unwind(AssertUnwindSafe(|| self.session())) {
                Ok(end) => end,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_else(|| "unknown panic".into());
                    SessionEnd::Failed(CaptureError::Ioctl {
                        device: self.cfg.device.display().to_string(),
                        what: "capture",
                        source: std::io::Error::other(format!("the V4L2 layer panicked: {what}")),
                    })
                }
            };
            // The clip in progress ends with the stream.
            if self.tx.blocking_send(RecorderEvent::StreamEnd).is_err() {
                return;
            }
            let err = match end {
                SessionEnd::Stopped | SessionEnd::RecorderGone => return,
                SessionEnd::Failed(e) => e,
            };
            let got_frames = self.health.frames() > frames_before;
            if got_frames {
                backoff.reset();
            }
            let msg = crate::telemetry::chain(&err);
            let delay = if err.is_configuration() { backoff.max_delay() } else { backoff.next_delay() };
            // One clear error per distinct problem; repeats only at debug level.
            if last_logged.as_deref() != Some(msg.as_str()) {
                error!(camera = %self.camera, device = %self.cfg.device.display(), error = %msg,
                    retry_in_s = delay.as_secs_f64().round(), "USB camera unavailable");
                last_logged = Some(msg.clone());
            } else {
                debug!(camera = %self.camera, error = %msg, failures = backoff.failures(), "USB camera still unavailable");
            }
            self.health.set_error(Role::Main, Some(msg));
            self.health.reconnected();
            let until = Instant::now() + delay;
            while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    fn session(&self) -> SessionEnd {
        let spec = self.cfg.capture_spec();
        let (dev, negotiated) = match capture::open(&spec) {
            Ok(v) => v,
            Err(e) => return SessionEnd::Failed(e),
        };
        lock(&self.device).negotiated = Some(negotiated.clone());
        let mut processor = FrameProcessor::new(self.cfg.processor_settings(negotiated.fps));
        let mut feed = RecorderFeed::new(negotiated.width, negotiated.height);
        let mut recorder_gone = false;
        let mut bad_in_a_row = 0u64;
        let result = capture::stream(&dev, &spec, &negotiated, self.cfg.frame_timeout(), &self.stop, &mut |frame| {
            let processed = processor.process(frame);
            // Any frame is a heartbeat; a bad one sets the error again below.
            self.health.frame(Role::Main);
            let processed = match processed {
                Ok(p) => {
                    if bad_in_a_row > 0 {
                        info!(camera = %self.camera, bad_frames = bad_in_a_row, "good frames again");
                    }
                    bad_in_a_row = 0;
                    p
                }
                Err(e) => {
                    bad_in_a_row += 1;
                    if log_due(bad_in_a_row) {
                        warn!(camera = %self.camera, error = %e, bad_in_a_row, "skipping a frame the camera sent");
                    }
                    lock(&self.device).bad_frames += 1;
                    self.health.set_error(Role::Main, Some(format!("bad frames from the camera: {e}")));
                    return ControlFlow::Continue(());
                }
            };
            let events = match feed.events(processed, &processor, frame.pts) {
                Ok(ev) => ev,
                Err(e) => {
                    warn!(camera = %self.camera, error = %e, "cannot describe the H.264 stream for MP4");
                    return ControlFlow::Continue(());
                }
            };
            for ev in events {
                if self.tx.blocking_send(ev).is_err() {
                    recorder_gone = true;
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        let stats = processor.stats();
        debug!(camera = %self.camera, ?stats, "capture session ended");
        match result {
            Ok(()) if recorder_gone => SessionEnd::RecorderGone,
            Ok(()) => SessionEnd::Stopped,
            Err(e) => SessionEnd::Failed(e),
        }
    }
}

#[async_trait]
impl ClipSource for V4lSource {
    fn camera(&self) -> &CameraName {
        &self.camera
    }

    async fn run(&self, sink: ClipSink, shutdown: CancellationToken) -> Result<(), SourceError> {
        info!(camera = %self.camera, device = %self.cfg.device.display(), format = %self.cfg.format,
            width = self.cfg.width, height = self.cfg.height, fps = self.cfg.fps, "starting USB camera");
        loop {
            let (tx, recording) = live::spawn_recorder(
                &self.health,
                self.cfg.recording.clone(),
                self.recordings.clone(),
                QUEUE,
                sink.clone(),
            );
            let stop = Arc::new(AtomicBool::new(false));
            let job = self.job(tx, stop.clone());
            let capture = std::thread::Builder::new()
                .name(format!("v4l-{}", self.camera))
                .spawn(move || job.run())
                .map_err(|source| SourceError::Io { path: self.cfg.device.display().to_string(), source })?;
            let mut capture_done = tokio::task::spawn_blocking(move || capture.join());
            tokio::select! {
                _ = shutdown.cancelled() => {
                    // The capture thread notices within one poll interval; the recorder
                    // then finishes the clip in progress once the sender is dropped.
                    stop.store(true, Ordering::Relaxed);
                    if !matches!(capture_done.await, Ok(Ok(()))) {
                        error!(camera = %self.camera, "the capture thread ended abnormally");
                    }
                    if recording.await.is_err() {
                        error!(camera = %self.camera, "the recorder ended abnormally");
                    }
                    info!(camera = %self.camera, "USB camera stopped");
                    return Ok(());
                }
                _ = &mut capture_done => {
                    // Capture only ends on its own when the recorder is gone (a bug):
                    // start both again rather than leave the camera dead.
                    let reason = match recording.await {
                        Err(e) if e.is_panic() => "the recorder panicked".to_owned(),
                        _ => "the capture thread ended".to_owned(),
                    };
                    error!(camera = %self.camera, %reason, "USB camera pipeline failed; restarting it in 5 s");
                    self.health.set_error(Role::Main, Some(reason));
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                }
            }
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} ({:?} {}x{} @ {} fps)",
            self.cfg.device.display(),
            self.cfg.format,
            self.cfg.width,
            self.cfg.height,
            self.cfg.fps
        )
    }

    fn health(&self) -> SourceHealth {
        self.health.report()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yuyv_frame(w: u32, h: u32, shade: u8) -> Vec<u8> {
        let mut buf = vec![128u8; (w * h * 2) as usize];
        buf.iter_mut().step_by(2).for_each(|y| *y = shade);
        buf
    }

    #[test]
    fn the_feed_announces_the_stream_before_its_first_packet() {
        let cfg = V4lConfig { width: 64, height: 48, fps: 10, detect_fps: 5.0, ..V4lConfig::default() };
        let mut processor = FrameProcessor::new(cfg.processor_settings(10.0));
        let mut feed = RecorderFeed::new(64, 48).with_wall_clock_origin(1_000_000);
        let mut kinds = Vec::new();
        for i in 0..4u64 {
            let data = yuyv_frame(64, 48, 100);
            let pts = Duration::from_millis(i * 100);
            let frame = CapturedFrame { data: &data, pts, format: PixelFormat::Yuyv, width: 64, height: 48, stride: 0 };
            let processed = processor.process(&frame).unwrap();
            for ev in feed.events(processed, &processor, pts).unwrap() {
                kinds.push(match ev {
                    RecorderEvent::Stream { entry, timescale } => {
                        assert_eq!((entry.width(), entry.height(), timescale), (64, 48, RecorderFeed::TIMESCALE));
                        "stream".to_owned()
                    }
                    RecorderEvent::Packet(p) => {
                        assert_eq!(p.pts, (i * 9000) as i64);
                        assert_eq!(p.wall_ms, 1_000_000 + (i * 100) as i64);
                        assert_eq!(p.is_keyframe, i == 0);
                        "packet".to_owned()
                    }
                    RecorderEvent::Motion { pts, .. } => format!("motion@{}", pts.unwrap_or(-1)),
                    RecorderEvent::StreamEnd => "end".to_owned(),
                });
            }
        }
        // 5 of 10 fps are analysed: frames 0 and 2.
        assert_eq!(kinds, ["stream", "packet", "motion@0", "packet", "packet", "motion@18000", "packet"]);
    }

    #[test]
    fn retries_back_off_and_configuration_problems_wait_longest() {
        let cfg = V4lConfig { reconnect_initial_s: 1.0, reconnect_max_s: 30.0, ..V4lConfig::default() };
        let within = |d: Duration, s: f64| (d.as_secs_f64() - s).abs() <= 0.2 * s + 1e-9;
        let backoff = cfg.backoff();
        assert!(within(backoff.delay(1), 1.0));
        assert!(within(backoff.delay(3), 4.0));
        assert!(within(backoff.delay(20), 30.0));
        assert!(within(backoff.max_delay(), 30.0));
    }

    #[test]
    fn health_reports_a_missing_device_before_the_first_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = PluginContext {
            layout: crate::plugin::DataLayout::new(dir.path()),
            config_dir: dir.path().into(),
            device_id: "t".into(),
            cameras: vec![],
            update: None,
        };
        let cfg = V4lConfig { device: dir.path().join("video7"), ..V4lConfig::default() };
        let src = build("desk".into(), cfg, &ctx).unwrap();
        let h = src.health();
        assert!(!h.healthy);
        assert_eq!((h.fps, h.reconnects), (Some(0.0), Some(0)));
        assert!(h.last_error.unwrap().contains("video7 does not exist"));
        let st = src.status();
        assert_eq!((st.frames, st.card), (0, None));
    }
}
