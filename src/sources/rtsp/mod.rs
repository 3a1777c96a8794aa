//! Source `rtsp`: an IP camera over RTSP (retina). The main stream is recorded
//! by passthrough (its H.264/H.265 packets go into MP4 unchanged); motion comes
//! from decoding the optional sub-stream, else the main stream, at most
//! `detect_fps` times a second, and while motion is on the same pictures go to
//! the shared object detector at `object_fps` (early alert, live filter result).
//!
//! This module is the transport: one async stream loop per RTSP stream (main,
//! and detect when configured), network receive only, a fraction of a percent
//! of a core ([`session`]). The rest is the live-camera harness
//! ([`crate::sources::live`]): the motion worker (decode + motion, fed through a
//! bounded queue that never blocks the network loop), the recorder thread, and
//! health.
//!
//! Reconnects ([`reconnect`]): a camera that is down is probed every
//! `probe_interval_s` and set up again as soon as it answers, so video resumes
//! within about a probe interval of the camera's return however long it was
//! away; set-ups that fail while it answers back off.
//!
//! Health: frames within 3x `frame_timeout_s` (on every configured stream) make
//! the camera healthy, and so does the time up to `first_frame_timeout_s` after
//! start; `/health` shows last frame age, fps, reconnects and the last error,
//! with credentials scrubbed, and the camera's connectivity: connected (every
//! stream delivers) or not, its outages, the current one's start and length,
//! the last one's length ([`Connectivity`]).

mod config;
mod reconnect;
mod session;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::{ResolvedUrls, RtspConfig, RtspTransport, StreamUrl};

use super::connectivity::Connectivity;
use super::latest::LatestFrame;
use super::live::{self, HealthRules, LiveHealth, MotionFeed, Role};
use super::{ClipSource, SourceError, SourceHealth};
use crate::clock::SystemClock;
use crate::domain::CameraName;
use crate::filter::service::LiveDetector;
use crate::media::detect::DetectSettings;
use crate::pipeline::ClipSink;
use crate::plugin::{PluginBuildError, PluginContext};

/// Events queued for the recorder (about 8 s of video at 30 fps).
const RECORDER_QUEUE: usize = 256;

pub struct RtspSource {
    camera: CameraName,
    cfg: RtspConfig,
    urls: ResolvedUrls,
    recordings: PathBuf,
    health: Arc<LiveHealth>,
    /// Connected or not, and the outages.
    link: Arc<Connectivity>,
    /// The shared object detector, for detecting while recording.
    live: Option<LiveDetector>,
    latest: Arc<LatestFrame>,
}

/// Builds the source: resolves URLs and credentials from the environment.
/// With `live` (and `object_fps` above 0) objects are detected while recording.
pub fn build(
    camera: CameraName,
    cfg: RtspConfig,
    ctx: &PluginContext,
    live: Option<LiveDetector>,
) -> Result<RtspSource, PluginBuildError> {
    let urls = cfg.resolve().map_err(|problems| {
        let text: Vec<String> = problems.into_iter().map(|(field, m)| format!("{field}: {m}")).collect();
        PluginBuildError::new("source", "rtsp", text.join("; "))
    })?;
    let rules = HealthRules {
        stale_after: Duration::from_secs_f64(3.0 * cfg.frame_timeout_s.max(0.0)),
        first_frame_grace: Duration::from_secs_f64(cfg.first_frame_timeout_s.max(0.0)),
    };
    let health = Arc::new(LiveHealth::new(camera.clone(), "rtsp", rules, urls.detect.is_some()));
    let link = Arc::new(Connectivity::new(SystemClock::shared(), urls.detect.is_some()));
    let live = live.filter(|_| cfg.object_fps > 0.0);
    let recordings = ctx.layout.camera_recordings(camera.as_str());
    Ok(RtspSource { recordings, camera, cfg, urls, health, link, live, latest: LatestFrame::new() })
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
            probe_interval: secs(self.cfg.probe_interval_s),
            health: self.health.clone(),
            link: self.link.clone(),
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

        let (rec_tx, recorder_task) = live::spawn_recorder(
            &self.health,
            self.cfg.recording.clone(),
            self.recordings.clone(),
            RECORDER_QUEUE,
            sink,
            self.live.as_ref(),
        );
        let detect_settings = DetectSettings {
            detect_fps: self.cfg.detect_fps,
            source_fps: None,
            motion: self.cfg.motion.clone(),
            keyframes_when_idle: self.cfg.keyframes_when_idle,
        };
        let objects = self.live.as_ref().and_then(|l| live::live_objects(&camera, l, self.cfg.object_fps));
        let (motion_inlet, motion_task) =
            live::spawn_motion(camera.clone(), rec_tx.clone(), detect_settings, &self.latest, objects);

        // Stream loops.
        let streams = shutdown.child_token();
        let main_feed = self.urls.detect.is_none().then(|| MotionFeed::new(motion_inlet.clone()));
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
                    MotionFeed::new(motion_inlet.clone()),
                )),
                streams.clone(),
            )
        });
        drop(motion_inlet);
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
        SourceHealth { link: Some(self.link.report()), ..self.health.report() }
    }

    fn connectivity(&self) -> Option<watch::Receiver<bool>> {
        Some(self.link.subscribe())
    }

    fn latest_frame(&self) -> Option<Arc<LatestFrame>> {
        Some(self.latest.clone())
    }
}
