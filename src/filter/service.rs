//! The detector service: the work queues that the detector workers (each owning
//! one model session) serve, shared by every live camera and the clip filter.
//!
//! - Each live camera registers once ([`LiveDetector::register`]) and gets a
//!   [`CameraFeed`] (its bounded queue: when the detector is busy the **oldest**
//!   frame is dropped, and counted) and a receiver for its results.
//! - Workers take live frames before clips, round-robin across cameras, so a
//!   busy camera cannot starve the others and a clip being filtered does not
//!   hold up live detection: between two frames of a clip the worker serves the
//!   live frames waiting ([`Service::next_live`]).
//!
//! The service is plain data behind a mutex and a condition variable; the
//! model is the worker's, so this module is tested without one.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

use super::tracking::{CameraTracking, MotionMask, Tracking};
use super::{FilterError, FilterOutput};
use crate::controls::{Controls, DetectionSwitch};
use crate::domain::{CameraName, Detection};
use crate::media::RgbFrame;

/// Frames a camera may have waiting for the detector; older ones are dropped.
pub const LIVE_QUEUE: usize = 2;

/// How live detections confirm an object and what a live event keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveSettings {
    /// The model's name, recorded as the filter result's model.
    pub model: String,
    /// A class is confirmed by this many frames with it ...
    pub confirm_frames: u32,
    /// ... within this many seconds.
    pub confirm_window_s: f64,
    /// JPEGs kept per clip for the VLM, spread over the event.
    pub vlm_frames: u32,
}

/// A decoded frame a camera hands to the detector.
#[derive(Debug)]
pub struct LiveFrame {
    pub frame: RgbFrame,
    /// When the frame was seen (unix ms).
    pub wall_ms: i64,
    /// Where the camera's motion detector saw change in this frame.
    pub motion: Option<MotionMask>,
}

/// The detector's answer for a [`LiveFrame`]; the frame and its motion come back with it.
#[derive(Debug)]
pub struct LiveResult {
    pub frame: RgbFrame,
    pub wall_ms: i64,
    /// The configured classes at or above `min_confidence`, most confident first.
    pub detections: Vec<Detection>,
    pub motion: Option<MotionMask>,
}

/// A clip to filter from its file.
pub struct ClipJob {
    pub path: PathBuf,
    /// Classes whose confirmation ends sampling early.
    pub decisive: Vec<String>,
    /// The camera's zones and memory of stationary objects.
    pub tracking: super::tracking::TrackContext,
    pub reply: oneshot::Sender<Result<FilterOutput, FilterError>>,
}

/// A live frame taken by a worker, with where its result goes.
pub struct LiveWork {
    pub item: LiveFrame,
    pub reply: mpsc::Sender<LiveResult>,
}

/// What a worker does next.
pub enum Work {
    Live(LiveWork),
    Clip(ClipJob),
}

/// Frames sent and dropped for one camera.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedStats {
    pub submitted: u64,
    pub dropped: u64,
}

struct CameraQueue {
    camera: CameraName,
    frames: VecDeque<LiveFrame>,
    results: mpsc::Sender<LiveResult>,
    stats: FeedStats,
    /// The camera's `/metrics` counters (the same numbers as `stats`, since start).
    metrics: crate::metrics::CameraMetrics,
    open: bool,
}

#[derive(Default)]
struct State {
    cameras: Vec<CameraQueue>,
    /// The camera whose turn it is (round-robin).
    next: usize,
    clips: VecDeque<ClipJob>,
    closed: bool,
}

/// The queues the detector workers serve.
#[derive(Default)]
pub struct Service {
    state: Mutex<State>,
    ready: Condvar,
    /// The workers' recent inference time.
    pub inference: InferenceMeter,
}

/// The detector's recent inference time per frame (`Session::run`): a moving
/// average over about the last ten frames, one atomic, read without a lock.
#[derive(Debug, Clone, Default)]
pub struct InferenceMeter(Arc<AtomicU64>);

impl InferenceMeter {
    /// Adds one frame's inference time. Two workers recording at once may lose
    /// one sample of the average, which is fine for a figure.
    pub fn record(&self, inference: Duration) {
        let ms = inference.as_secs_f64() * 1e3;
        let old = f64::from_bits(self.0.load(Ordering::Relaxed));
        let new = if old > 0.0 { old + (ms - old) * 0.1 } else { ms.max(f64::MIN_POSITIVE) };
        self.0.store(new.to_bits(), Ordering::Relaxed);
    }

    /// The average in milliseconds, once a frame was detected.
    pub fn recent_ms(&self) -> Option<f64> {
        let ms = f64::from_bits(self.0.load(Ordering::Relaxed));
        (ms > 0.0).then_some(ms)
    }
}

impl Service {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Only queue operations happen under the lock: a panic cannot leave it half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a clip; `Err` gives it back when the service is closed.
    pub fn submit_clip(&self, job: ClipJob) -> Result<(), ClipJob> {
        let mut s = self.lock();
        if s.closed {
            return Err(job);
        }
        s.clips.push_back(job);
        drop(s);
        self.ready.notify_one();
        Ok(())
    }

    /// The next piece of work, waiting for one; `None` once the service is
    /// closed and nothing is left.
    pub fn next(&self) -> Option<Work> {
        let mut s = self.lock();
        loop {
            if let Some(live) = take_live(&mut s) {
                return Some(Work::Live(live));
            }
            if let Some(job) = s.clips.pop_front() {
                return Some(Work::Clip(job));
            }
            if s.closed {
                return None;
            }
            s = self.ready.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// A live frame waiting now, if any (for a worker in the middle of a clip).
    pub fn next_live(&self) -> Option<LiveWork> {
        take_live(&mut self.lock())
    }

    /// No more clips are taken; workers finish what is queued and stop.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    fn register(&self, camera: &CameraName) -> (usize, mpsc::Receiver<LiveResult>) {
        let (tx, rx) = mpsc::channel();
        let mut s = self.lock();
        let queue = CameraQueue {
            camera: camera.clone(),
            frames: VecDeque::new(),
            results: tx,
            stats: FeedStats::default(),
            metrics: crate::metrics::global().camera(camera.as_str()),
            open: true,
        };
        // Reuse the slot of a camera that went away (a restarted source).
        let slot = match s.cameras.iter().position(|c| !c.open) {
            Some(i) => {
                s.cameras[i] = queue;
                i
            }
            None => {
                s.cameras.push(queue);
                s.cameras.len() - 1
            }
        };
        (slot, rx)
    }

    /// Queues a camera's frame, dropping its oldest when the queue is full.
    /// Returns whether a frame was dropped.
    fn submit_live(&self, slot: usize, item: LiveFrame) -> bool {
        let mut s = self.lock();
        let Some(q) = s.cameras.get_mut(slot).filter(|q| q.open) else { return false };
        q.stats.submitted += 1;
        q.metrics.detector_submitted.inc();
        let dropped = q.frames.len() >= LIVE_QUEUE;
        if dropped {
            q.frames.pop_front();
            q.stats.dropped += 1;
            q.metrics.detector_dropped.inc();
        }
        q.frames.push_back(item);
        drop(s);
        self.ready.notify_one();
        dropped
    }

    fn stats(&self, slot: usize) -> FeedStats {
        self.lock().cameras.get(slot).map(|q| q.stats).unwrap_or_default()
    }

    fn unregister(&self, slot: usize) {
        if let Some(q) = self.lock().cameras.get_mut(slot) {
            q.open = false;
            q.frames.clear();
        }
    }

    /// Per camera: frames sent to the detector and frames dropped (diagnostics).
    pub fn feed_stats(&self) -> Vec<(CameraName, FeedStats)> {
        self.lock().cameras.iter().filter(|q| q.open).map(|q| (q.camera.clone(), q.stats)).collect()
    }
}

/// Round-robin: the first camera with a frame, from the one whose turn it is.
fn take_live(s: &mut State) -> Option<LiveWork> {
    let n = s.cameras.len();
    for i in 0..n {
        let slot = (s.next + i) % n;
        let q = &mut s.cameras[slot];
        if let Some(item) = q.frames.pop_front() {
            let reply = q.results.clone();
            s.next = slot + 1;
            return Some(LiveWork { item, reply });
        }
    }
    None
}

/// The live side of a detector service, handed to live cameras.
#[derive(Clone)]
pub struct LiveDetector {
    service: Arc<Service>,
    settings: LiveSettings,
    /// Each camera's *Detection* switch.
    controls: Controls,
    tracking: Arc<Tracking>,
}

impl std::fmt::Debug for LiveDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveDetector").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl LiveDetector {
    pub fn new(service: Arc<Service>, settings: LiveSettings) -> Self {
        Self { service, settings, controls: Controls::default(), tracking: Arc::default() }
    }

    /// Cameras detect only while their *Detection* switch in `controls` is on.
    pub fn with_controls(mut self, controls: Controls) -> Self {
        self.controls = controls;
        self
    }

    /// Whether `camera` detects objects now.
    pub fn detection(&self, camera: &CameraName) -> DetectionSwitch {
        self.controls.detection(camera)
    }

    /// Cameras judge their objects with their zones and memory from `tracking`
    /// (shared with the clip filter).
    pub fn with_tracking(mut self, tracking: Arc<Tracking>) -> Self {
        self.tracking = tracking;
        self
    }

    /// A camera's zones and memory of stationary objects.
    pub fn tracking(&self, camera: &CameraName) -> Arc<CameraTracking> {
        self.tracking.camera(camera)
    }

    pub fn settings(&self) -> &LiveSettings {
        &self.settings
    }

    /// Live clips keep `n` JPEGs for the VLM (0 when no VLM is configured).
    pub fn with_vlm_frames(mut self, n: u32) -> Self {
        self.settings.vlm_frames = n;
        self
    }

    /// A camera's queue into the detector, and where its results arrive.
    pub fn register(&self, camera: &CameraName) -> (CameraFeed, mpsc::Receiver<LiveResult>) {
        let (slot, rx) = self.service.register(camera);
        (CameraFeed { service: self.service.clone(), slot }, rx)
    }

    /// Per camera: frames sent to the detector and frames dropped.
    pub fn feed_stats(&self) -> Vec<(CameraName, FeedStats)> {
        self.service.feed_stats()
    }

    /// The detector's recent inference time (live frames and clips).
    pub fn inference(&self) -> InferenceMeter {
        self.service.inference.clone()
    }
}

/// One camera's queue into the detector service; dropping it unregisters the camera.
pub struct CameraFeed {
    service: Arc<Service>,
    slot: usize,
}

impl CameraFeed {
    /// Queues a frame without waiting; returns whether the camera's oldest
    /// waiting frame was dropped to make room.
    pub fn submit(&self, item: LiveFrame) -> bool {
        self.service.submit_live(self.slot, item)
    }

    pub fn stats(&self) -> FeedStats {
        self.service.stats(self.slot)
    }
}

impl Drop for CameraFeed {
    fn drop(&mut self) {
        self.service.unregister(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::tracking::TrackContext;

    fn frame(ts: f64) -> LiveFrame {
        LiveFrame { frame: RgbFrame { ts_s: ts, width: 1, height: 1, data: vec![0; 3] }, wall_ms: 0, motion: None }
    }

    fn serve(service: &Service) -> Vec<f64> {
        let mut served = Vec::new();
        while let Some(w) = service.next_live() {
            served.push(w.item.frame.ts_s);
            let _ = w.reply.send(LiveResult { frame: w.item.frame, wall_ms: 0, detections: vec![], motion: None });
        }
        served
    }

    #[test]
    fn the_inference_time_is_a_recent_average() {
        let m = InferenceMeter::default();
        assert_eq!(m.recent_ms(), None);
        m.record(Duration::from_millis(40));
        assert_eq!(m.recent_ms(), Some(40.0));
        for _ in 0..50 {
            m.record(Duration::from_millis(10));
        }
        let ms = m.recent_ms().unwrap();
        assert!((10.0..10.5).contains(&ms), "{ms}: the old figure fades");
    }

    #[test]
    fn a_busy_camera_drops_its_oldest_frames_and_counts_them() {
        let service = Service::new();
        let live = LiveDetector::new(
            service.clone(),
            LiveSettings { model: "m".into(), confirm_frames: 2, confirm_window_s: 1.0, vlm_frames: 4 },
        );
        let (feed, results) = live.register(&"porch".into());
        let dropped: Vec<bool> = (0..5).map(|i| feed.submit(frame(f64::from(i)))).collect();
        assert_eq!(dropped, [false, false, true, true, true]);
        assert_eq!(serve(&service), [3.0, 4.0], "the newest frames are served");
        assert_eq!(results.try_iter().count(), 2);
        assert_eq!(feed.stats(), FeedStats { submitted: 5, dropped: 3 });
        assert_eq!(live.feed_stats(), vec![(CameraName::from("porch"), FeedStats { submitted: 5, dropped: 3 })]);
    }

    #[test]
    fn cameras_are_served_in_turn_and_live_frames_before_clips() {
        let service = Service::new();
        let live = LiveDetector::new(
            service.clone(),
            LiveSettings { model: "m".into(), confirm_frames: 2, confirm_window_s: 1.0, vlm_frames: 4 },
        );
        let (a, _ra) = live.register(&"a".into());
        let (b, _rb) = live.register(&"b".into());
        let (reply, _answer) = oneshot::channel();
        assert!(
            service
                .submit_clip(ClipJob {
                    path: "x.mp4".into(),
                    decisive: vec![],
                    tracking: TrackContext::standalone("c", 0),
                    reply
                })
                .is_ok()
        );
        a.submit(frame(1.0));
        a.submit(frame(2.0));
        b.submit(frame(10.0));
        let mut order = Vec::new();
        for _ in 0..4 {
            match service.next() {
                Some(Work::Live(w)) => order.push(format!("live {}", w.item.frame.ts_s)),
                Some(Work::Clip(j)) => order.push(format!("clip {}", j.path.display())),
                None => order.push("none".into()),
            }
        }
        assert_eq!(order, ["live 1", "live 10", "live 2", "clip x.mp4"]);
        // A camera that goes away stops being served; its slot is reused.
        a.submit(frame(3.0));
        drop(a);
        assert!(service.next_live().is_none());
        let (c, _rc) = live.register(&"c".into());
        c.submit(frame(7.0));
        assert_eq!(serve(&service), [7.0]);
        assert_eq!(live.feed_stats().len(), 2);
    }

    #[test]
    fn closing_lets_workers_finish_the_queue_and_stop() {
        let service = Service::new();
        let (reply, _answer) = oneshot::channel();
        assert!(
            service
                .submit_clip(ClipJob {
                    path: "x.mp4".into(),
                    decisive: vec![],
                    tracking: TrackContext::standalone("c", 0),
                    reply
                })
                .is_ok()
        );
        service.close();
        assert!(matches!(service.next(), Some(Work::Clip(_))));
        assert!(service.next().is_none());
        let (reply, _answer) = oneshot::channel();
        assert!(
            service
                .submit_clip(ClipJob {
                    path: "y.mp4".into(),
                    decisive: vec![],
                    tracking: TrackContext::standalone("c", 0),
                    reply
                })
                .is_err()
        );
        // A worker waiting wakes up when the service closes.
        let service = Service::new();
        let s2 = service.clone();
        let waiter = std::thread::spawn(move || s2.next().is_none());
        std::thread::sleep(std::time::Duration::from_millis(50));
        service.close();
        assert!(waiter.join().unwrap());
    }
}
