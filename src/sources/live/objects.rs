//! Live object detection of one camera: which detect-stream pictures go to
//! the shared detector, and the answers coming back to the recorder.

use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::log_due;
use crate::controls::DetectionSwitch;
use crate::domain::{CameraName, now_ms};
use crate::filter::service::{CameraFeed, LiveDetector, LiveFrame, LiveResult};
use crate::filter::tracking::MotionMask;
use crate::filter::{SNAPSHOT_MAX_SIZE, SNAPSHOT_QUALITY};
use crate::media::detect::{DetectFrame, FrameTap, RateGate};
use crate::media::motion::{MotionDetector, MotionSample};
use crate::plugin::Validator;
use crate::sources::recorder::{ObjectFrame, RecorderEvent};

/// Seconds the object detector goes on looking after motion ends.
const OBJECT_HOLD_S: f64 = 2.0;

pub(crate) fn default_object_fps() -> f64 {
    2.0
}

/// `object_fps`: 0 (off) or up to `detect_fps` (the frames motion looks at).
pub(crate) fn check_object_fps(object_fps: f64, detect_fps: f64, v: &mut Validator<'_>) {
    if !(object_fps.is_finite() && (0.0..=30.0).contains(&object_fps)) {
        v.error("object_fps", "must be in [0, 30] (0 turns live object detection off)");
    } else if object_fps > detect_fps {
        v.error(
            "object_fps",
            format!("must not exceed detect_fps ({detect_fps}): the detector sees the frames motion sees"),
        );
    }
}

/// Live object detection of one camera: the tap that sends the detect
/// stream's pictures to the shared detector while motion is on (and for
/// [`OBJECT_HOLD_S`] after), at most `object_fps` a second, and the results
/// coming back, which [`ObjectResults::forward`] hands to the recorder.
pub(crate) fn live_objects(
    camera: &CameraName,
    live: &LiveDetector,
    object_fps: f64,
) -> Option<(ObjectTap, ObjectResults)> {
    if object_fps <= 0.0 {
        return None;
    }
    let (feed, results) = live.register(camera);
    let gate = RateGate::new(object_fps, None);
    let tap = ObjectTap { camera: camera.clone(), feed, gate, last_motion: None, detection: live.detection(camera) };
    Some((tap, ObjectResults { results }))
}

/// Sends due pictures to the detector (see [`live_objects`]).
pub(crate) struct ObjectTap {
    camera: CameraName,
    feed: CameraFeed,
    gate: RateGate,
    /// Stream time of the last picture with motion.
    last_motion: Option<f64>,
    /// The camera's *Detection* switch: off, no picture goes to the detector.
    detection: DetectionSwitch,
}

impl FrameTap for ObjectTap {
    fn frame(&mut self, frame: &DetectFrame<'_>, motion: &MotionSample, detector: &MotionDetector) {
        if !self.detection.is_on() {
            return;
        }
        if motion.motion {
            self.last_motion = Some(frame.ts_s);
        }
        // A stream clock that went back restarts the hold too.
        let watching = self.last_motion.is_some_and(|t| frame.ts_s >= t && frame.ts_s - t <= OBJECT_HOLD_S);
        if !watching || !self.gate.is_due(frame.ts_s) {
            return;
        }
        if self.feed.submit(LiveFrame { frame: frame.to_rgb(), wall_ms: now_ms(), motion: MotionMask::of(detector) }) {
            let dropped = self.feed.stats().dropped;
            if log_due(dropped) {
                warn!(camera = %self.camera, dropped, "the object detector is busy; this camera's oldest frame was dropped");
            }
        }
    }
}

/// The detector's answers for one camera.
pub(crate) struct ObjectResults {
    results: std::sync::mpsc::Receiver<LiveResult>,
}

impl ObjectResults {
    /// Hands the answers that arrived to the recorder, each with its frame as
    /// a JPEG. Returns false once the recorder is gone.
    pub(crate) fn forward(&self, camera: &CameraName, recorder: &mpsc::Sender<RecorderEvent>) -> bool {
        for r in self.results.try_iter() {
            let jpeg = match crate::media::encode_jpeg(&r.frame, SNAPSHOT_MAX_SIZE, SNAPSHOT_QUALITY) {
                Ok(j) => j,
                Err(e) => {
                    warn!(camera = %camera, error = %e, "cannot encode a detector frame");
                    continue;
                }
            };
            if !r.detections.is_empty() {
                debug!(camera = %camera, detections = ?r.detections.iter().map(|d| (&d.class, d.confidence)).collect::<Vec<_>>(), "objects seen");
            }
            let (width, height) = (r.frame.width, r.frame.height);
            let frame =
                ObjectFrame { wall_ms: r.wall_ms, width, height, detections: r.detections, jpeg, motion: r.motion };
            if recorder.blocking_send(RecorderEvent::Objects(frame)).is_err() {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_off_sends_no_picture_to_the_detector_and_on_again_does() {
        use crate::controls::{Change, Controls};
        use crate::filter::service::{LiveSettings, Service};
        let service = Service::new();
        let cam = CameraName::from("porch");
        let controls = Controls::in_memory(std::slice::from_ref(&cam));
        let settings = LiveSettings { model: "m".into(), confirm_frames: 2, confirm_window_s: 1.0, vlm_frames: 0 };
        let live = LiveDetector::new(service.clone(), settings).with_controls(controls.clone());
        let (mut tap, _results) = live_objects(&cam, &live, 30.0).expect("object detection on");
        let (y, uv) = (vec![128u8; 16], vec![128u8; 4]);
        let picture = crate::media::codec::Picture::from_planes((4, 4), (&y, &uv, &uv), (4, 2));
        let moving = MotionSample { score: 0.5, motion: true, recalibrated: false };
        let detector = crate::media::motion::MotionDetector::new(&Default::default());
        let served = |ts_s: f64, tap: &mut ObjectTap| {
            tap.frame(&DetectFrame { ts_s, picture }, &moving, &detector);
            std::iter::from_fn(|| service.next_live()).count()
        };
        assert_eq!(served(0.0, &mut tap), 1, "on: a picture with motion goes to the detector");
        controls.set(&cam, Change::Detection(false));
        assert_eq!(served(1.0, &mut tap), 0, "off at once: nothing goes");
        controls.set(&cam, Change::Detection(true));
        assert_eq!(served(2.0, &mut tap), 1);
    }
}
