//! Source `rtsp`: an IP camera over RTSP (retina). The main stream is recorded
//! by passthrough (its H.264/H.265 packets go into MP4 unchanged); motion comes
//! from decoding the optional sub-stream, else the main stream, at most
//! `detect_fps` times a second.
//!
//! Tasks per camera:
//! - one async stream loop per RTSP stream (main, and detect when configured):
//!   network receive only, a fraction of a percent of a core ([`session`]);
//! - one blocking thread for decode + motion ([`detect`]), fed through a bounded
//!   queue that never blocks the network loop;
//! - one blocking thread for the [`Recorder`] (ring buffer, MP4 writing, fsync,
//!   handing clips to the pipeline).
//!
//! Health: frames within 3x `frame_timeout_s` (on every configured stream) make
//! the camera healthy; `/health` shows last frame age, fps, reconnects and the
//! last error, with credentials scrubbed.

mod config;
mod detect;
mod session;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::{ResolvedUrls, RtspConfig, RtspTransport, StreamUrl};

use super::recorder::{ClipOutput, Recorder, RecorderError, SinkOutput};
use super::{ClipSource, SourceError, SourceHealth};
use crate::domain::{CameraName, Clip};
use crate::pipeline::ClipSink;
use crate::plugin::{PluginBuildError, PluginContext};

/// Events queued for the recorder (about 8 s of video at 30 fps).
const RECORDER_QUEUE: usize = 256;
/// Window over which fps is measured.
const FPS_WINDOW: Duration = Duration::from_secs(5);

/// Which of a camera's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Main,
    Detect,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Main => "main",
            Role::Detect => "detect",
        }
    }
}

#[derive(Debug)]
struct StreamStats {
    last_frame: Option<Instant>,
    window_start: Instant,
    window_frames: u64,
    fps: Option<f64>,
    error: Option<String>,
}

impl StreamStats {
    fn new() -> Self {
        Self { last_frame: None, window_start: Instant::now(), window_frames: 0, fps: None, error: None }
    }

    fn frame(&mut self) {
        let now = Instant::now();
        if self.last_frame.is_none_or(|t| now.duration_since(t) > FPS_WINDOW) {
            // First frame after a gap: start measuring afresh.
            self.window_start = now;
            self.window_frames = 0;
        }
        self.last_frame = Some(now);
        self.window_frames += 1;
        let span = now.duration_since(self.window_start);
        if span >= FPS_WINDOW {
            self.fps = Some((self.window_frames - 1) as f64 / span.as_secs_f64());
            self.window_start = now;
            self.window_frames = 1;
        }
    }

    fn fps(&self) -> Option<f64> {
        match self.last_frame {
            Some(t) if t.elapsed() <= FPS_WINDOW * 2 => self.fps,
            Some(_) => Some(0.0),
            None => None,
        }
    }
}

/// Shared between the stream loops, the recorder and `health()`.
#[derive(Debug)]
pub(crate) struct HealthState {
    started: Instant,
    main: StreamStats,
    detect: Option<StreamStats>,
    recorder_error: Option<String>,
    reconnects: u64,
}

impl HealthState {
    fn new(has_detect: bool) -> Self {
        Self {
            started: Instant::now(),
            main: StreamStats::new(),
            detect: has_detect.then(StreamStats::new),
            recorder_error: None,
            reconnects: 0,
        }
    }

    fn stats(&mut self, role: Role) -> Option<&mut StreamStats> {
        match role {
            Role::Main => Some(&mut self.main),
            Role::Detect => self.detect.as_mut(),
        }
    }

    pub(crate) fn frame(&mut self, role: Role) {
        if let Some(s) = self.stats(role) {
            s.frame();
        }
    }

    pub(crate) fn set_error(&mut self, role: Role, error: Option<String>) {
        if let Some(s) = self.stats(role) {
            s.error = error;
        }
    }

    fn last_error(&self) -> Option<String> {
        let detect = self.detect.as_ref().and_then(|d| d.error.as_ref()).map(|e| format!("detect stream: {e}"));
        let recorder = self.recorder_error.as_ref().map(|e| format!("recording: {e}"));
        self.main.error.clone().or(detect).or(recorder)
    }
}

/// Hands clips to the pipeline and keeps the recorder's health.
struct HealthOutput {
    inner: SinkOutput,
    health: Arc<Mutex<HealthState>>,
}

impl ClipOutput for HealthOutput {
    fn is_taken(&mut self, id: &str) -> Result<bool, RecorderError> {
        self.inner.is_taken(id)
    }

    fn submit(&mut self, clip: Clip) -> Result<(), RecorderError> {
        self.inner.submit(clip)?;
        if let Ok(mut h) = self.health.lock() {
            h.recorder_error = None;
        }
        Ok(())
    }
}

pub struct RtspSource {
    camera: CameraName,
    cfg: RtspConfig,
    urls: ResolvedUrls,
    recordings: PathBuf,
    health: Arc<Mutex<HealthState>>,
}

/// Builds the source: resolves URLs and credentials from the environment.
pub fn build(camera: CameraName, cfg: RtspConfig, ctx: &PluginContext) -> Result<RtspSource, PluginBuildError> {
    let urls = cfg.resolve().map_err(|problems| {
        let text: Vec<String> = problems.into_iter().map(|(field, m)| format!("{field}: {m}")).collect();
        PluginBuildError::new("source", "rtsp", text.join("; "))
    })?;
    let health = Arc::new(Mutex::new(HealthState::new(urls.detect.is_some())));
    Ok(RtspSource { recordings: ctx.layout.camera_recordings(camera.as_str()), camera, cfg, urls, health })
}

impl RtspSource {
    /// The streams' URLs as they may be shown (no credentials).
    pub fn display_urls(&self) -> (String, Option<String>) {
        (self.urls.main.display.clone(), self.urls.detect.as_ref().map(|d| d.display.clone()))
    }

    fn spec(&self, role: Role, url: StreamUrl) -> session::StreamSpec {
        let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
        session::StreamSpec {
            camera: self.camera.clone(),
            role,
            url,
            transport: self.cfg.transport,
            frame_timeout: secs(self.cfg.frame_timeout_s),
            first_frame_timeout: secs(self.cfg.first_frame_timeout_s),
            reconnect_initial: secs(self.cfg.reconnect_initial_s),
            reconnect_max: secs(self.cfg.reconnect_max_s),
            health: self.health.clone(),
        }
    }
}

#[async_trait]
impl ClipSource for RtspSource {
    fn camera(&self) -> &CameraName {
        &self.camera
    }

    async fn run(&self, sink: ClipSink, shutdown: CancellationToken) -> Result<(), SourceError> {
        let camera = self.camera.clone();
        info!(
            camera = %camera,
            url = %self.urls.main.display,
            detect_url = self.urls.detect.as_ref().map(|d| d.display.as_str()).unwrap_or("(main stream)"),
            "RTSP camera starting"
        );

        // Recorder thread.
        let (rec_tx, rec_rx) = tokio::sync::mpsc::channel(RECORDER_QUEUE);
        let output = HealthOutput {
            inner: SinkOutput::new(sink, tokio::runtime::Handle::current()),
            health: self.health.clone(),
        };
        let recorder = Recorder::new(
            camera.clone(),
            "rtsp",
            self.cfg.recording.clone(),
            self.recordings.clone(),
            Box::new(output),
        );
        let health = self.health.clone();
        let recorder_task = tokio::task::spawn_blocking(move || {
            recorder.run(rec_rx, move |e| {
                if let Ok(mut h) = health.lock() {
                    h.recorder_error = Some(crate::telemetry::chain(e));
                }
            })
        });

        // Motion thread.
        let (motion_tx, motion_rx) = std::sync::mpsc::sync_channel(detect::QUEUE);
        let (cam, rec, mcfg, fps) = (camera.clone(), rec_tx.clone(), self.cfg.motion.clone(), self.cfg.detect_fps);
        let motion_task = tokio::task::spawn_blocking(move || detect::run(cam, motion_rx, rec, mcfg, fps));

        // Stream loops.
        let streams = shutdown.child_token();
        let main_feed = self.urls.detect.is_none().then(|| detect::MotionFeed::new(motion_tx.clone()));
        let main = session::supervise(
            self.spec(Role::Main, self.urls.main.clone()),
            session::Handler::Main(session::MainHandler::new(camera.clone(), rec_tx, main_feed)),
            streams.clone(),
        );
        let detect = self.urls.detect.clone().map(|url| {
            session::supervise(
                self.spec(Role::Detect, url),
                session::Handler::Detect(session::DetectHandler::new(
                    camera.clone(),
                    detect::MotionFeed::new(motion_tx.clone()),
                )),
                streams.clone(),
            )
        });
        drop(motion_tx);
        match detect {
            Some(detect) => {
                // Either loop ending early (recorder gone) stops both.
                let (a, b) = (streams.clone(), streams.clone());
                tokio::join!(
                    async move {
                        main.await;
                        a.cancel();
                    },
                    async move {
                        detect.await;
                        b.cancel();
                    }
                );
            }
            None => main.await,
        }
        // The loops are gone with their senders: the motion thread ends, then the
        // recorder finishes the clip in progress and hands it over.
        let _ = motion_task.await;
        if recorder_task.await.is_err() {
            warn!(camera = %camera, "the recorder thread panicked");
        }
        info!(camera = %camera, "RTSP camera stopped");
        Ok(())
    }

    fn describe(&self) -> String {
        match self.display_urls() {
            (main, Some(detect)) => format!("{main} (motion on {detect})"),
            (main, None) => main,
        }
    }

    fn health(&self) -> SourceHealth {
        let limit = Duration::from_secs_f64(3.0 * self.cfg.frame_timeout_s.max(0.0));
        let grace = Duration::from_secs_f64(self.cfg.first_frame_timeout_s.max(0.0));
        let Ok(h) = self.health.lock() else {
            return SourceHealth {
                camera: self.camera.clone(),
                backend: "rtsp",
                healthy: false,
                last_heartbeat_age_s: None,
                last_error: Some("health state poisoned".into()),
                fps: None,
                reconnects: None,
            };
        };
        let fresh = |s: &StreamStats| match s.last_frame {
            Some(t) => t.elapsed() <= limit,
            // Starting up: healthy until the first-frame deadline, unless it failed already.
            None => h.started.elapsed() <= grace && s.error.is_none(),
        };
        let healthy = fresh(&h.main) && h.detect.as_ref().is_none_or(fresh) && h.recorder_error.is_none();
        SourceHealth {
            camera: self.camera.clone(),
            backend: "rtsp",
            healthy,
            last_heartbeat_age_s: h.main.last_frame.map(|t| t.elapsed().as_secs_f64()),
            last_error: h.last_error(),
            fps: h.main.fps().map(|f| (f * 10.0).round() / 10.0),
            reconnects: Some(h.reconnects),
        }
    }
}
