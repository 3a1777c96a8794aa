//! The capture thread of a USB camera: opens the device, streams its frames
//! through the [`FrameProcessor`] into the recorder, and on failure retries
//! with backoff; what it learns goes to the camera's [`LiveHealth`].

use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::capture::{self, CaptureError, Negotiated};
use super::{FrameProcessor, RecorderFeed, V4lConfig};
use crate::domain::CameraName;
use crate::filter::service::LiveDetector;
use crate::sources::live::{self, LiveHealth, OutageLog, Role, STABLE_SESSION, log_due};
use crate::sources::recorder::RecorderEvent;

/// What the capture thread learns about the device, for diagnostics (the
/// camera's health is in its [`LiveHealth`]).
#[derive(Debug, Default)]
pub(super) struct DeviceState {
    pub(super) negotiated: Option<Negotiated>,
    pub(super) bad_frames: u64,
}

pub(super) fn lock(device: &Mutex<DeviceState>) -> MutexGuard<'_, DeviceState> {
    // Only plain field updates happen under the lock: a panic cannot leave it half-done.
    device.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Everything the capture thread needs.
pub(super) struct CaptureJob {
    pub(super) camera: CameraName,
    pub(super) cfg: V4lConfig,
    pub(super) health: Arc<LiveHealth>,
    pub(super) device: Arc<Mutex<DeviceState>>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) tx: mpsc::Sender<RecorderEvent>,
    pub(super) live: Option<LiveDetector>,
    pub(super) latest: Arc<crate::sources::latest::LatestFrame>,
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
    pub(super) fn run(self) {
        let mut backoff = self.cfg.backoff();
        let mut outages = OutageLog::default();
        while !self.stop.load(Ordering::Relaxed) {
            let frames_before = self.health.frames();
            let started = Instant::now();
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
            let stable = self.health.frames() > frames_before && started.elapsed() >= STABLE_SESSION;
            if stable {
                backoff.reset();
            }
            let msg = crate::telemetry::chain(&err);
            let delay = if err.is_configuration() { backoff.max_delay() } else { backoff.next_delay() };
            if outages.is_news(&msg, stable) {
                error!(camera = %self.camera, device = %self.cfg.device.display(), error = %msg,
                    retry_in_s = delay.as_secs_f64().round(), "USB camera unavailable");
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
        processor.add_tap(self.latest.tap());
        let objects = self.live.as_ref().and_then(|l| live::live_objects(&self.camera, l, self.cfg.object_fps));
        let results = objects.map(|(tap, results)| {
            processor.add_tap(Box::new(tap));
            results
        });
        let mut feed = RecorderFeed::new(negotiated.width, negotiated.height);
        let mut recorder_gone = false;
        let mut bad_in_a_row = 0u64;
        // `/metrics`: pictures run through motion detection, and motion starts.
        let metrics = crate::metrics::global().camera(self.camera.as_str());
        let mut was_motion = false;
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
                    if let Some(sample) = &p.motion {
                        metrics.frames_decoded.inc();
                        if sample.motion && !was_motion {
                            metrics.motion_events.inc();
                        }
                        was_motion = sample.motion;
                    }
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
            if let Some(r) = &results
                && !r.forward(&self.camera, &self.tx)
            {
                recorder_gone = true;
                return ControlFlow::Break(());
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
