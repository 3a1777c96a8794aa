//! USB camera source (V4L2): captures MJPEG, YUYV or H.264 from a video device,
//! encodes raw and MJPEG frames to H.264 with openh264 (H.264 capture is passed
//! through), and hands packets and motion verdicts to the live-camera harness
//! ([`crate::sources::live`]): its recorder thread writes pre/post-roll clips
//! and hands them to the pipeline, and it keeps the camera's health.
//!
//! Threads: one dedicated capture thread per camera does device I/O, JPEG
//! decode, pixel conversion, H.264 encode and motion (all blocking CPU work, off
//! the async workers); the recorder runs on its own blocking thread.
//!
//! - [`capture`]: the thin device layer (open, negotiate, stream mmap buffers).
//! - [`processor`]: buffers to H.264 packets + motion samples (through
//!   `media::detect`), without a device.
//! - [`convert`], [`h264`]: pixel conversions, Annex-B/AVCC, the encoder.
//! - `config`, `feed` (processor output as recorder events), `job` (the capture
//!   thread's loop: sessions, retries, health).

pub mod capture;
mod config;
pub mod convert;
mod feed;
pub mod h264;
mod job;
pub mod processor;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::latest::LatestFrame;
use super::live::{self, HealthRules, LiveHealth, Role};
use super::recorder::RecorderEvent;
use super::{ClipSource, SourceError, SourceHealth};
use crate::domain::CameraName;
use crate::filter::service::LiveDetector;
use crate::pipeline::ClipSink;
use crate::plugin::{PluginBuildError, PluginContext};
use capture::CaptureError;
use job::{CaptureJob, DeviceState, lock};

pub use config::{PixelFormat, V4lConfig};
pub use feed::RecorderFeed;
pub use processor::{CapturedFrame, FrameProcessor, H264Packet, Processed, ProcessorSettings, ProcessorStats};

/// The backend name in configs and clip records.
pub const BACKEND: &str = "v4l";
/// Events queued between the capture thread and the recorder (~8 s at 30 fps).
const QUEUE: usize = 512;

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
    /// The shared object detector, for detecting while recording.
    live: Option<LiveDetector>,
    latest: Arc<LatestFrame>,
}

/// Builds the source. A device that is missing now is not an error (USB cameras
/// come and go): the source starts unhealthy, says why, and retries slowly. A
/// path that exists but is not a device is a configuration error.
/// With `live` (and `object_fps` above 0) objects are detected while recording.
pub fn build(
    camera: CameraName,
    cfg: V4lConfig,
    ctx: &PluginContext,
    live: Option<LiveDetector>,
) -> Result<V4lSource, PluginBuildError> {
    let rules = HealthRules { stale_after: 3 * cfg.frame_timeout(), first_frame_grace: cfg.frame_timeout() };
    let cfg_object_fps = cfg.object_fps;
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
        live: live.filter(|_| cfg_object_fps > 0.0),
        latest: LatestFrame::new(),
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
            live: self.live.clone(),
            latest: self.latest.clone(),
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
                self.live.as_ref(),
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

    fn latest_frame(&self) -> Option<Arc<LatestFrame>> {
        Some(self.latest.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_reports_a_missing_device_before_the_first_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = PluginContext {
            layout: crate::plugin::DataLayout::new(dir.path()),
            config_dir: dir.path().into(),
            device_id: "t".into(),
            cameras: vec![],
            client_tag: None,
        };
        let cfg = V4lConfig { device: dir.path().join("video7"), ..V4lConfig::default() };
        let src = build("desk".into(), cfg, &ctx, None).unwrap();
        let h = src.health();
        assert!(!h.healthy);
        assert_eq!((h.fps, h.reconnects), (Some(0.0), Some(0)));
        assert!(h.last_error.unwrap().contains("video7 does not exist"));
        let st = src.status();
        assert_eq!((st.frames, st.card), (0, None));
    }
}
