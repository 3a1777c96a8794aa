//! The one live-camera harness, shared by the RTSP and USB (v4l) sources, which
//! keep only their transport (connecting, capturing, depacketising, encoding):
//!
//! - the recorder thread ([`spawn_recorder`]): a bounded queue into a
//!   [`Recorder`] on a blocking thread, which writes the clips and hands them to
//!   the pipeline;
//! - the detect stream's motion wiring: every decoded picture goes through the
//!   camera's [`DetectPipeline`] (`media::detect`) and its verdicts go to the
//!   recorder. Encoded detect streams (RTSP) reach it on a worker thread through
//!   a bounded queue that skips to the next keyframe when full ([`MotionFeed`],
//!   [`spawn_motion`]); USB cameras, which have the pixels on their capture
//!   thread already, run the pipeline there;
//! - live object detection ([`objects`]): the pictures that go to the shared
//!   detector and the answers that come back to the recorder;
//! - the camera's health ([`LiveHealth`]): heartbeat, fps, errors, reconnects
//!   and the recorder's failures, as [`SourceHealth`];
//! - one rule for problems that repeat in the log ([`log_due`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::SourceHealth;
use super::recorder::{ClipOutput, Recorder, RecorderError, RecorderEvent, RecordingConfig, SinkOutput};
use crate::domain::{CameraName, Clip};
use crate::filter::FilterOutput;
use crate::filter::service::LiveDetector;
use crate::media::codec::VideoCodec;
use crate::media::detect::{DetectPipeline, DetectSettings, EncodedFrame, NalFormat};
use crate::pipeline::{ClipSink, Sighting};

mod objects;
pub(crate) use objects::{ObjectResults, ObjectTap, check_object_fps, default_object_fps, live_objects};

/// Window over which fps is measured.
const FPS_WINDOW: Duration = Duration::from_secs(5);
/// How long a recorder failure counts when no clip is handed over after it.
const RECORDER_ERROR_SHOWN: Duration = Duration::from_secs(600);
/// Encoded frames queued for the detect stream's decoder (a few seconds at
/// camera rates).
const MOTION_QUEUE: usize = 96;

/// The one throttling rule for a problem that repeats (frames dropped, decode
/// errors, bad frames from a device): it is logged the 1st, 2nd, 4th, 8th… time
/// (`count` counts from 1), so a flood costs a few lines and a long one still
/// shows that it goes on.
pub(crate) fn log_due(count: u64) -> bool {
    count.is_power_of_two()
}

/// A session that delivered frames this long was stable: its loss resets the
/// reconnect backoff and is worth a warning again.
pub(crate) const STABLE_SESSION: Duration = Duration::from_secs(30);

/// The one rule for logging a camera that keeps failing to connect: a new kind
/// of failure, or the loss of a stable session, is worth a warning; the same
/// failure again is logged at debug level only.
#[derive(Debug, Default)]
pub(crate) struct OutageLog {
    last_kind: Option<String>,
}

impl OutageLog {
    /// Whether this failure (`kind` groups repeats of one problem) is worth a
    /// warning; `stable` says the session before it was stable.
    pub(crate) fn is_news(&mut self, kind: &str, stable: bool) -> bool {
        let news = stable || self.last_kind.as_deref() != Some(kind);
        self.last_kind = Some(kind.to_owned());
        news
    }
}

/// Which of a camera's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The recorded stream.
    Main,
    /// A separate stream decoded for detection (an RTSP sub-stream).
    Detect,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Main => "main",
            Role::Detect => "detect",
        }
    }
}

/// What a transport's health depends on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HealthRules {
    /// A stream without a frame for this long is down (three frame timeouts).
    pub stale_after: Duration,
    /// How long after start a stream may go without its first frame, as long
    /// as it has not failed.
    pub first_frame_grace: Duration,
}

#[derive(Debug)]
struct StreamStats {
    last_frame: Option<Instant>,
    frames: u64,
    window_start: Instant,
    window_frames: u64,
    /// Frames per second over the last complete window.
    fps: Option<f64>,
    /// Why the stream is not delivering (cleared by its next frame).
    error: Option<String>,
    /// Why the stream's frames cannot be decoded for detection (kept while
    /// frames arrive; cleared when the stream's parameters change).
    undecodable: Option<String>,
}

impl StreamStats {
    fn new(now: Instant) -> Self {
        Self {
            last_frame: None,
            frames: 0,
            window_start: now,
            window_frames: 0,
            fps: None,
            error: None,
            undecodable: None,
        }
    }

    fn frame(&mut self, now: Instant) {
        if self.last_frame.is_none_or(|t| now.duration_since(t) > FPS_WINDOW) {
            // First frame after a gap: start measuring afresh.
            self.window_start = now;
            self.window_frames = 0;
            self.fps = None;
        }
        self.last_frame = Some(now);
        self.frames += 1;
        self.window_frames += 1;
        self.error = None;
        let span = now.duration_since(self.window_start);
        if span >= FPS_WINDOW {
            self.fps = Some((self.window_frames - 1) as f64 / span.as_secs_f64());
            self.window_start = now;
            self.window_frames = 1;
        }
    }

    /// The last window's rate (the current window's until one is complete);
    /// 0 when frames stopped for two windows or never came.
    fn fps(&self, now: Instant) -> f64 {
        match self.last_frame {
            Some(t) if now.duration_since(t) <= FPS_WINDOW * 2 => self.fps.unwrap_or_else(|| {
                let span = t.duration_since(self.window_start).as_secs_f64();
                if self.window_frames > 1 && span > 0.0 { (self.window_frames - 1) as f64 / span } else { 0.0 }
            }),
            _ => 0.0,
        }
    }

    fn fresh(&self, rules: &HealthRules, started: Instant, now: Instant) -> bool {
        if self.undecodable.is_some() {
            // Motion never starts: no clip will be recorded.
            return false;
        }
        match self.last_frame {
            Some(t) => now.duration_since(t) <= rules.stale_after,
            // Starting up: healthy until the first-frame grace ends, unless it failed already.
            None => now.duration_since(started) <= rules.first_frame_grace && self.error.is_none(),
        }
    }
}

#[derive(Debug)]
struct HealthState {
    started: Instant,
    main: StreamStats,
    detect: Option<StreamStats>,
    /// The recorder's last failure and when it happened.
    recorder_error: Option<(Instant, String)>,
    reconnects: u64,
}

impl HealthState {
    fn new(has_detect: bool, now: Instant) -> Self {
        Self {
            started: now,
            main: StreamStats::new(now),
            detect: has_detect.then(|| StreamStats::new(now)),
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

    /// The recorder's failure while it counts: until a clip is handed over again,
    /// for at most [`RECORDER_ERROR_SHOWN`].
    fn recorder_error(&self, now: Instant) -> Option<&str> {
        self.recorder_error
            .as_ref()
            .filter(|(at, _)| now.duration_since(*at) < RECORDER_ERROR_SHOWN)
            .map(|(_, e)| e.as_str())
    }

    fn healthy(&self, rules: &HealthRules, now: Instant) -> bool {
        let fresh = |s: &StreamStats| s.fresh(rules, self.started, now);
        fresh(&self.main) && self.detect.as_ref().is_none_or(fresh) && self.recorder_error(now).is_none()
    }

    /// The main stream's problem, else the detect stream's, else the recorder's.
    fn last_error(&self, now: Instant) -> Option<String> {
        let detect = self
            .detect
            .as_ref()
            .and_then(|d| d.error.as_ref().or(d.undecodable.as_ref()))
            .map(|e| format!("detect stream: {e}"));
        let recorder = self.recorder_error(now).map(|e| format!("recording: {e}"));
        self.main.error.clone().or_else(|| self.main.undecodable.clone()).or(detect).or(recorder)
    }
}

/// A live camera's health, shared by its stream loops or capture thread, its
/// recorder and `health()`.
///
/// Healthy means: every stream delivered a frame within `stale_after` (before
/// its first frame: the camera started less than `first_frame_grace` ago and the
/// stream has not failed), and no recorder failure counts. A recorder failure
/// counts until a clip is handed over again, for at most ten minutes.
#[derive(Debug)]
pub(crate) struct LiveHealth {
    camera: CameraName,
    backend: &'static str,
    rules: HealthRules,
    state: Mutex<HealthState>,
    /// The camera's `/metrics` counters.
    metrics: crate::metrics::CameraMetrics,
}

impl LiveHealth {
    pub(crate) fn new(camera: CameraName, backend: &'static str, rules: HealthRules, has_detect: bool) -> Self {
        let metrics = crate::metrics::global().camera(camera.as_str());
        Self { camera, backend, rules, state: Mutex::new(HealthState::new(has_detect, Instant::now())), metrics }
    }

    fn lock(&self) -> MutexGuard<'_, HealthState> {
        // Only plain field updates happen under the lock: a panic cannot leave it half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A frame arrived on `role`'s stream: heartbeat, fps, and its error is cleared.
    pub(crate) fn frame(&self, role: Role) {
        if role == Role::Main {
            self.metrics.frames_received.inc();
        }
        if let Some(s) = self.lock().stats(role) {
            s.frame(Instant::now());
        }
    }

    /// Why `role`'s stream is not delivering (`None`: it is again).
    pub(crate) fn set_error(&self, role: Role, error: Option<String>) {
        if let Some(s) = self.lock().stats(role) {
            s.error = error;
        }
    }

    /// Why `role`'s frames cannot be decoded for detection (`None`: they can).
    /// Unlike [`LiveHealth::set_error`], frames do not clear it: the camera is
    /// unhealthy until the stream's parameters change.
    pub(crate) fn set_undecodable(&self, role: Role, error: Option<String>) {
        if let Some(s) = self.lock().stats(role) {
            s.undecodable = error;
        }
    }

    pub(crate) fn reconnected(&self) {
        self.lock().reconnects += 1;
    }

    /// Frames received on the main stream since start.
    pub(crate) fn frames(&self) -> u64 {
        self.lock().main.frames
    }

    pub(crate) fn recorder_failed(&self, error: &RecorderError) {
        self.lock().recorder_error = Some((Instant::now(), crate::telemetry::chain(error)));
    }

    pub(crate) fn recorder_ok(&self) {
        self.lock().recorder_error = None;
    }

    pub(crate) fn report(&self) -> SourceHealth {
        let now = Instant::now();
        let h = self.lock();
        SourceHealth {
            camera: self.camera.clone(),
            backend: self.backend,
            healthy: h.healthy(&self.rules, now),
            last_heartbeat_age_s: h.main.last_frame.map(|t| now.duration_since(t).as_secs_f64()),
            last_error: h.last_error(now),
            fps: Some((h.main.fps(now) * 10.0).round() / 10.0),
            reconnects: Some(h.reconnects),
            link: None,
        }
    }
}

/// Hands clips to the pipeline and keeps the recorder's health.
struct HealthOutput {
    inner: SinkOutput,
    health: Arc<LiveHealth>,
}

impl ClipOutput for HealthOutput {
    fn is_taken(&mut self, id: &str) -> Result<bool, RecorderError> {
        self.inner.is_taken(id)
    }

    fn submit(&mut self, clip: Clip, live: Option<FilterOutput>) -> Result<(), RecorderError> {
        self.inner.submit(clip, live)?;
        self.health.recorder_ok();
        Ok(())
    }

    fn sighted(&mut self, sighting: Sighting) -> Result<(), RecorderError> {
        self.inner.sighted(sighting)
    }
}

/// Starts the camera's recorder on a blocking thread, writing into `dir` and
/// handing clips to `sink`; it is fed through a queue of `queue` events and
/// finishes the clip in progress once every sender is gone. With `live`, clips
/// carry what the live detector saw. Call it from the daemon's runtime.
pub(crate) fn spawn_recorder(
    health: &Arc<LiveHealth>,
    cfg: RecordingConfig,
    dir: PathBuf,
    queue: usize,
    sink: ClipSink,
    live: Option<&LiveDetector>,
) -> (mpsc::Sender<RecorderEvent>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(queue);
    let output =
        HealthOutput { inner: SinkOutput::new(sink, tokio::runtime::Handle::current()), health: health.clone() };
    let mut recorder = Recorder::new(health.camera.clone(), health.backend, cfg, dir, Box::new(output));
    if let Some(live) = live {
        recorder = recorder.with_objects(live.settings().clone(), live.tracking(&health.camera));
    }
    let health = health.clone();
    let task = tokio::task::spawn_blocking(move || recorder.run(rx, move |e| health.recorder_failed(e)));
    (tx, task)
}

/// What the motion worker is fed.
pub(crate) enum MotionInput {
    /// One encoded frame (4-byte length-prefixed NAL units, parameter sets in band
    /// at keyframes). `ts_s` is its time on its own stream's clock (for
    /// `detect_fps`); `report_pts` is what the verdict carries to the recorder
    /// (the recorded stream's pts when this is that stream, else `None`: now).
    /// `gop` numbers the feed's keyframes (see [`MotionInlet`]).
    Frame { ts_s: f64, report_pts: Option<i64>, is_keyframe: bool, gop: u64, codec: VideoCodec, data: Vec<u8> },
    /// The stream restarted or changed: start over with a fresh decoder.
    Reset,
}

/// The sending end of a camera's motion worker; each stream loop makes its
/// [`MotionFeed`] from a clone.
#[derive(Clone)]
pub(crate) struct MotionInlet {
    tx: SyncSender<MotionInput>,
    /// The GOP (numbered by the feed's keyframes from 1) whose other frames the
    /// worker does not decode (`keyframes_when_idle`), 0 for none: the feed
    /// does not send them, so an idle camera's worker wakes once per GOP.
    skip_gop: Arc<AtomicU64>,
}

impl MotionInlet {
    pub(crate) fn new(tx: SyncSender<MotionInput>) -> Self {
        Self { tx, skip_gop: Arc::new(AtomicU64::new(0)) }
    }
}

/// The feeding end of the motion worker, kept by a stream loop.
pub(crate) struct MotionFeed {
    inlet: MotionInlet,
    /// The stream's codec, from its parameters.
    codec: VideoCodec,
    /// Frames were dropped: skip to the next keyframe.
    gap: bool,
    dropped: u64,
    /// The current GOP's number (keyframes sent so far).
    gop: u64,
}

impl MotionFeed {
    pub(crate) fn new(inlet: MotionInlet) -> Self {
        Self { inlet, codec: VideoCodec::H264, gap: true, dropped: 0, gop: 0 }
    }

    /// The stream's (new) codec: the worker starts a fresh decoder for it.
    pub(crate) fn set_codec(&mut self, codec: VideoCodec) {
        self.codec = codec;
        self.reset();
    }

    /// Whether a frame would be queued now (not while skipping to a keyframe,
    /// nor the rest of a GOP the worker does not decode): a caller that must
    /// copy the frame for [`Self::offer`] asks first.
    pub(crate) fn wants(&self, is_keyframe: bool) -> bool {
        is_keyframe || !(self.gap || self.inlet.skip_gop.load(Ordering::Acquire) == self.gop)
    }

    /// Queues a frame (moved in: no copy) without ever blocking the network
    /// loop. When the queue is full the frame is dropped and so is everything up
    /// to the next keyframe, so the decoder never sees a broken reference chain.
    pub(crate) fn offer(
        &mut self,
        camera: &CameraName,
        ts_s: f64,
        report_pts: Option<i64>,
        is_keyframe: bool,
        data: Vec<u8>,
    ) {
        if !self.wants(is_keyframe) {
            return;
        }
        if is_keyframe {
            self.gop += 1;
        }
        let input = MotionInput::Frame { ts_s, report_pts, is_keyframe, gop: self.gop, codec: self.codec, data };
        match self.inlet.tx.try_send(input) {
            Ok(()) => self.gap = false,
            Err(TrySendError::Full(_)) => {
                self.gap = true;
                self.dropped += 1;
                if log_due(self.dropped) {
                    warn!(camera = %camera, dropped = self.dropped, "motion detection falls behind; skipping to the next keyframe");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    pub(crate) fn reset(&mut self) {
        self.gap = true;
        let _ = self.inlet.tx.try_send(MotionInput::Reset);
    }
}

/// Starts the motion worker for an encoded detect stream on a blocking thread:
/// frames from the returned inlet (a [`MotionFeed`] per stream)
/// through the camera's [`DetectPipeline`], verdicts (and, with `objects`, what
/// the object detector saw) to `recorder`. It ends when every sender is gone or
/// the recorder is. Call it from the daemon's runtime.
pub(crate) fn spawn_motion(
    camera: CameraName,
    recorder: mpsc::Sender<RecorderEvent>,
    settings: DetectSettings,
    latest: &Arc<crate::sources::latest::LatestFrame>,
    objects: Option<(ObjectTap, ObjectResults)>,
) -> (MotionInlet, JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::sync_channel(MOTION_QUEUE);
    let inlet = MotionInlet::new(tx);
    let skip_gop = inlet.skip_gop.clone();
    let pipeline = DetectPipeline::new(&settings).with_tap(latest.tap());
    let task = tokio::task::spawn_blocking(move || run_motion(&camera, &rx, &skip_gop, &recorder, pipeline, objects));
    (inlet, task)
}

fn run_motion(
    camera: &CameraName,
    rx: &Receiver<MotionInput>,
    skip_gop: &AtomicU64,
    recorder: &mpsc::Sender<RecorderEvent>,
    mut pipeline: DetectPipeline,
    objects: Option<(ObjectTap, ObjectResults)>,
) {
    let mut results = None;
    if let Some((tap, r)) = objects {
        pipeline = pipeline.with_tap(Box::new(tap));
        results = Some(r);
    }
    let mut was_motion = false;
    let metrics = crate::metrics::global().camera(camera.as_str());
    while let Ok(input) = rx.recv() {
        if let Some(r) = &results
            && !r.forward(camera, recorder)
        {
            return;
        }
        let (ts_s, report_pts, is_keyframe, gop, codec, data) = match input {
            MotionInput::Frame { ts_s, report_pts, is_keyframe, gop, codec, data } => {
                (ts_s, report_pts, is_keyframe, gop, codec, data)
            }
            MotionInput::Reset => {
                pipeline.reset();
                skip_gop.store(0, Ordering::Release);
                if was_motion {
                    was_motion = false;
                    debug!(camera = %camera, "motion state reset with the stream");
                }
                continue;
            }
        };
        let frame = EncodedFrame {
            ts_s,
            keyframe: is_keyframe,
            codec,
            format: NalFormat::Avcc,
            data: &data,
            parameter_sets: None,
        };
        let pushed = pipeline.push_encoded(&frame);
        if is_keyframe {
            skip_gop.store(if pipeline.skipping_gop() { gop } else { 0 }, Ordering::Release);
        }
        let sample = match pushed {
            Ok(Some(sample)) => sample,
            Ok(None) => continue,
            Err(e) => {
                let errors = pipeline.decode_errors();
                if log_due(errors) {
                    warn!(camera = %camera, error = %e, errors, "detect stream decode failed; waiting for the next keyframe");
                }
                continue;
            }
        };
        metrics.frames_decoded.inc();
        if sample.motion != was_motion {
            was_motion = sample.motion;
            if sample.motion {
                metrics.motion_events.inc();
            }
            info!(camera = %camera, motion = sample.motion, score = sample.score, "motion {}", if sample.motion { "started" } else { "ended" });
        }
        if recorder.blocking_send(RecorderEvent::Motion { pts: report_pts, motion: sample.motion }).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_news_when_it_changes_or_follows_a_stable_session() {
        let mut log = OutageLog::default();
        assert!(log.is_news("status 401", false), "the first failure");
        assert!(!log.is_news("status 401", false), "the same failure again");
        assert!(log.is_news("stalled", false), "another kind of failure");
        assert!(!log.is_news("stalled", false));
        assert!(log.is_news("stalled", true), "a stable stream was lost again");
    }

    const RULES: HealthRules =
        HealthRules { stale_after: Duration::from_secs(15), first_frame_grace: Duration::from_secs(20) };

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn repeated_problems_are_logged_at_powers_of_two() {
        let logged: Vec<u64> = (1..=1000).filter(|n| log_due(*n)).collect();
        assert_eq!(logged, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]);
        assert!(!log_due(0));
    }

    #[test]
    fn a_camera_is_healthy_while_frames_come_and_during_the_first_frame_grace() {
        let t0 = Instant::now();
        let mut h = HealthState::new(false, t0);
        assert!(h.healthy(&RULES, t0 + secs(19.0)), "starting up");
        assert!(!h.healthy(&RULES, t0 + secs(21.0)), "no first frame in time");
        h.main.error = Some("no video frame within 20 s of connecting".into());
        assert!(!h.healthy(&RULES, t0 + secs(1.0)), "failed already");
        h.main.frame(t0 + secs(2.0));
        assert_eq!(h.main.error, None, "a frame clears the stream's error");
        assert!(h.healthy(&RULES, t0 + secs(17.0)));
        assert!(!h.healthy(&RULES, t0 + secs(17.1)), "stale after 15 s without a frame");
    }

    #[test]
    fn the_detect_stream_counts_too() {
        let t0 = Instant::now();
        let mut h = HealthState::new(true, t0);
        h.main.frame(t0 + secs(1.0));
        h.detect.as_mut().unwrap().error = Some("401".into());
        assert!(!h.healthy(&RULES, t0 + secs(2.0)));
        assert_eq!(h.last_error(t0).as_deref(), Some("detect stream: 401"));
        h.main.error = Some("stalled".into());
        assert_eq!(h.last_error(t0).as_deref(), Some("stalled"), "the main stream's problem first");
        // A camera without a detect stream ignores detect updates.
        let mut h = HealthState::new(false, t0);
        assert!(h.stats(Role::Detect).is_none());
    }

    #[test]
    fn an_undecodable_stream_stays_reported_while_its_frames_come() {
        let live = LiveHealth::new("attic".into(), "rtsp", RULES, false);
        live.frame(Role::Main);
        live.set_undecodable(Role::Main, Some("the stream's codec mp4v.20 cannot be decoded".into()));
        live.frame(Role::Main);
        let r = live.report();
        assert!(!r.healthy, "no motion, so no clip will ever be recorded: {r:?}");
        assert_eq!(r.last_error.as_deref(), Some("the stream's codec mp4v.20 cannot be decoded"));
        live.set_undecodable(Role::Main, None);
        let r = live.report();
        assert!(r.healthy && r.last_error.is_none(), "{r:?}");
    }

    #[test]
    fn a_recorder_failure_counts_until_a_clip_is_handed_over_or_for_ten_minutes() {
        let t0 = Instant::now();
        let mut h = HealthState::new(false, t0);
        h.main.frame(t0);
        h.recorder_error = Some((t0, "cannot write the clip: disk full".into()));
        assert!(!h.healthy(&RULES, t0 + secs(1.0)));
        assert_eq!(h.last_error(t0 + secs(1.0)).as_deref(), Some("recording: cannot write the clip: disk full"));
        // Frames keep coming; the failure ages out.
        h.main.frame(t0 + RECORDER_ERROR_SHOWN);
        assert!(h.healthy(&RULES, t0 + RECORDER_ERROR_SHOWN));
        assert_eq!(h.last_error(t0 + RECORDER_ERROR_SHOWN), None);

        // Through the shared handle: a clip handed over clears it at once.
        let live = LiveHealth::new("porch".into(), "rtsp", RULES, false);
        live.frame(Role::Main);
        live.recorder_failed(&RecorderError::Submit {
            clip_id: "porch_1".into(),
            source: crate::store::StoreError::Task("test".into()),
        });
        let r = live.report();
        assert!(!r.healthy);
        assert!(r.last_error.as_deref().is_some_and(|e| e.starts_with("recording: cannot hand clip porch_1")), "{r:?}");
        live.recorder_ok();
        let r = live.report();
        assert!(r.healthy && r.last_error.is_none(), "{r:?}");
        assert_eq!((r.backend, r.reconnects), ("rtsp", Some(0)));
    }

    #[test]
    fn fps_is_measured_over_one_window() {
        let t0 = Instant::now();
        let mut s = StreamStats::new(t0);
        assert_eq!(s.fps(t0), 0.0, "no frame yet");
        // 10 fps for 12 s.
        for i in 0..=120 {
            s.frame(t0 + secs(f64::from(i) * 0.1));
            if i == 10 {
                assert!((s.fps(t0 + secs(1.0)) - 10.0).abs() < 1e-6, "the first window while it fills");
            }
        }
        let end = t0 + secs(12.0);
        assert!((s.fps(end) - 10.0).abs() < 1e-6, "{}", s.fps(end));
        assert_eq!(s.frames, 121);
        // Frames stop: the rate holds for two windows, then reads 0.
        assert!(s.fps(end + secs(10.0)) > 9.0);
        assert_eq!(s.fps(end + secs(10.1)), 0.0);
        // After a gap, measuring starts afresh.
        s.frame(end + secs(30.0));
        assert_eq!(s.fps(end + secs(30.0)), 0.0);
    }

    #[test]
    fn the_report_carries_heartbeat_fps_and_reconnects() {
        let live = LiveHealth::new("desk".into(), "v4l", RULES, false);
        let r = live.report();
        assert!(r.healthy, "within the first-frame grace");
        assert_eq!((r.fps, r.reconnects, r.last_heartbeat_age_s), (Some(0.0), Some(0), None));
        live.set_error(Role::Main, Some("video device /dev/video7 does not exist".into()));
        live.reconnected();
        let r = live.report();
        assert!(!r.healthy);
        assert_eq!(r.reconnects, Some(1));
        live.frame(Role::Main);
        let r = live.report();
        assert!(r.healthy && r.last_error.is_none() && r.last_heartbeat_age_s.is_some(), "{r:?}");
        assert_eq!(live.frames(), 1);
    }

    #[test]
    fn the_feed_skips_to_a_keyframe_after_overflow() {
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        let mut feed = MotionFeed::new(MotionInlet::new(tx));
        let cam: CameraName = "c".into();
        feed.offer(&cam, 0.0, None, false, [0, 0, 0, 1, 0x41].to_vec()); // before any keyframe: skipped
        feed.offer(&cam, 0.1, None, true, [0, 0, 0, 1, 0x65].to_vec());
        feed.offer(&cam, 0.2, None, false, [0, 0, 0, 1, 0x41].to_vec());
        feed.offer(&cam, 0.3, None, false, [0, 0, 0, 1, 0x41].to_vec()); // full: dropped, gap
        assert_eq!(rx.try_iter().count(), 2);
        feed.offer(&cam, 0.4, None, false, [0, 0, 0, 1, 0x41].to_vec()); // gap: skipped
        feed.offer(&cam, 0.5, None, true, [0, 0, 0, 1, 0x65].to_vec());
        let got: Vec<f64> = rx
            .try_iter()
            .filter_map(|i| match i {
                MotionInput::Frame { ts_s, .. } => Some(ts_s),
                MotionInput::Reset => None,
            })
            .collect();
        assert_eq!(got, vec![0.5]);
    }

    #[test]
    fn the_feed_leaves_out_the_rest_of_a_gop_the_worker_does_not_decode() {
        let (tx, rx) = std::sync::mpsc::sync_channel(8);
        let inlet = MotionInlet::new(tx);
        let mut feed = MotionFeed::new(inlet.clone());
        let cam: CameraName = "c".into();
        let (key, p) = ([0, 0, 0, 1, 0x65], [0, 0, 0, 1, 0x41]);
        feed.offer(&cam, 0.0, None, true, key.to_vec()); // GOP 1
        feed.offer(&cam, 0.1, None, false, p.to_vec());
        inlet.skip_gop.store(1, Ordering::Release); // the worker: nothing stirs in GOP 1
        assert!(!feed.wants(false) && feed.wants(true));
        feed.offer(&cam, 0.2, None, false, p.to_vec()); // left out
        feed.offer(&cam, 2.0, None, true, key.to_vec()); // GOP 2: the worker has not decided yet
        feed.offer(&cam, 2.1, None, false, p.to_vec());
        let got: Vec<(f64, u64)> = rx
            .try_iter()
            .filter_map(|i| match i {
                MotionInput::Frame { ts_s, gop, .. } => Some((ts_s, gop)),
                MotionInput::Reset => None,
            })
            .collect();
        assert_eq!(got, vec![(0.0, 1), (0.1, 1), (2.0, 2), (2.1, 2)]);
    }
}
