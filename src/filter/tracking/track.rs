//! The objects of one event ([`EventTracker`]): detections of the frames the
//! detector looked at are linked into tracks (same class, boxes overlapping or
//! close relative to their size), and each track is judged:
//!
//! - it **moved** when its box's centre left its first place by more than
//!   [`MOVE_SHIFT`] of the box's size, or the box changed so that it overlaps its
//!   first place less than [`MOVE_IOU`];
//! - it **had motion on it** when at least [`MOTION_FRACTION`] of its box changed
//!   in a frame (between sampled frames of a clip, or in the camera's motion
//!   detector);
//! - it is **active** when it moved, or had motion on it and does not stand
//!   where the camera's memory knows a stationary object of its class;
//! - a detection is a **reason to alert** when its track is active and, when
//!   the camera has required zones, its foot point lies in one that cares about
//!   its class.
//!
//! At the end ([`EventTracker::finish`]) tracks that stood still in at least two
//! frames go into the camera's memory, remembered objects that moved away leave
//! it, and the clip's detections are the best one per track.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::CameraTracking;
use super::geometry::{centre_shift, iou, normalise};
use crate::domain::{Detection, UnixMillis};

/// Boxes of one class in successive frames that overlap at least this much
/// are the same object ...
const MATCH_IOU: f32 = 0.2;
/// ... or whose centres are at most this far apart (relative to the box size).
const MATCH_SHIFT: f32 = 0.75;
/// A centre shift beyond this (relative to the box's larger side) is a move.
pub const MOVE_SHIFT: f32 = 0.25;
/// A box overlapping its first place less than this has moved.
pub const MOVE_IOU: f32 = 0.4;
/// The fraction of a box that must change in a frame for motion on it.
pub const MOTION_FRACTION: f32 = 0.1;
/// Tracks followed per event (the least recently seen goes first).
const MAX_TRACKS: usize = 64;
/// Detections a clip keeps: the best of each track, reasons to alert first.
pub const MAX_DETECTIONS: usize = 20;

struct Track {
    class: String,
    /// Where it was first seen in this event (pixels).
    anchor: [f32; 4],
    last: [f32; 4],
    last_frame: u64,
    frames: u32,
    moved: bool,
    motion_frames: u32,
    /// The camera's memory knows a stationary object of its class there.
    remembered: bool,
    active_frames: u32,
    reason_frames: u32,
    zones: BTreeSet<String>,
    /// Its most confident detection, and the most confident one that was a reason.
    best: Detection,
    best_reason: Option<Detection>,
}

impl Track {
    fn active(&self) -> bool {
        self.moved || (self.motion_frames > 0 && !self.remembered)
    }
}

/// The clip's summary of what was tracked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tracked {
    /// The best detection per track (`stationary` and `zones` set), reasons to
    /// alert first, at most [`MAX_DETECTIONS`].
    pub detections: Vec<Detection>,
    /// Every class seen, most confident first.
    pub detected_classes: Vec<String>,
    /// Classes with a detection that was a reason to alert, most confident first.
    pub alert_classes: Vec<String>,
}

/// The objects of one event of one camera.
pub struct EventTracker {
    camera: Arc<CameraTracking>,
    tracks: Vec<Track>,
    frame: u64,
}

impl EventTracker {
    pub fn new(camera: Arc<CameraTracking>) -> Self {
        Self { camera, tracks: Vec::new(), frame: 0 }
    }

    /// Takes the detections of one `width` x `height` frame (most confident
    /// first) and `motion`, the fraction of a box that changed in this frame
    /// (`None`: unknown). Sets each detection's `stationary` and `zones` as
    /// judged so far; returns whether each is a reason to alert.
    pub fn observe(
        &mut self,
        detections: &mut [Detection],
        width: u32,
        height: u32,
        motion: &dyn Fn(&[f32; 4]) -> Option<f32>,
        now_ms: UnixMillis,
    ) -> Vec<bool> {
        self.frame += 1;
        let frame = self.frame;
        let mut reasons = Vec::with_capacity(detections.len());
        for d in detections.iter_mut() {
            let i = match self.matching(d, frame) {
                Some(i) => i,
                None => self.start(d, width, height, now_ms),
            };
            let zones = self.camera.zones();
            let in_zones = zones.names_at(&d.class, &d.bbox, width, height);
            let admitted = zones.admits(&d.class, &d.bbox, width, height);
            let t = &mut self.tracks[i];
            t.last = d.bbox;
            t.last_frame = frame;
            t.frames += 1;
            if centre_shift(&t.anchor, &d.bbox) > MOVE_SHIFT || iou(&t.anchor, &d.bbox) < MOVE_IOU {
                t.moved = true;
            }
            if motion(&d.bbox).is_some_and(|f| f >= MOTION_FRACTION) {
                t.motion_frames += 1;
            }
            let active = t.active();
            let reason = active && admitted;
            t.active_frames += u32::from(active);
            t.reason_frames += u32::from(reason);
            t.zones.extend(in_zones.iter().cloned());
            d.stationary = !active;
            d.zones = in_zones;
            if d.confidence > t.best.confidence {
                t.best = d.clone();
            }
            if reason && t.best_reason.as_ref().is_none_or(|b| d.confidence > b.confidence) {
                t.best_reason = Some(d.clone());
            }
            reasons.push(reason);
        }
        reasons
    }

    /// The track this detection continues: same class, not seen in this frame
    /// yet, overlapping or close to its last box; the best such.
    fn matching(&self, d: &Detection, frame: u64) -> Option<usize> {
        self.tracks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.class == d.class && t.last_frame != frame)
            .map(|(i, t)| (i, iou(&t.last, &d.bbox), centre_shift(&t.last, &d.bbox)))
            .filter(|(_, o, s)| *o >= MATCH_IOU || *s <= MATCH_SHIFT)
            .max_by(|a, b| (a.1 - a.2).total_cmp(&(b.1 - b.2)))
            .map(|(i, _, _)| i)
    }

    fn start(&mut self, d: &Detection, width: u32, height: u32, now_ms: UnixMillis) -> usize {
        if self.tracks.len() >= MAX_TRACKS
            && let Some(oldest) = self.tracks.iter().enumerate().min_by_key(|(_, t)| t.last_frame).map(|(i, _)| i)
        {
            self.tracks.swap_remove(oldest);
        }
        let remembered = self.camera.memory().knows(&d.class, &normalise(&d.bbox, width, height), now_ms);
        self.tracks.push(Track {
            class: d.class.clone(),
            anchor: d.bbox,
            last: d.bbox,
            last_frame: 0,
            frames: 0,
            moved: false,
            motion_frames: 0,
            remembered,
            active_frames: 0,
            reason_frames: 0,
            zones: BTreeSet::new(),
            best: d.clone(),
            best_reason: None,
        });
        self.tracks.len() - 1
    }

    /// Whether any object was a reason to alert so far.
    pub fn any_reason(&self) -> bool {
        self.tracks.iter().any(|t| t.reason_frames > 0)
    }

    /// The event's summary; updates the camera's memory of stationary objects
    /// (boxes were in a `width` x `height` frame).
    pub fn finish(self, width: u32, height: u32, now_ms: UnixMillis) -> Tracked {
        {
            let mut memory = self.camera.memory();
            for t in &self.tracks {
                if t.remembered && t.moved {
                    memory.forget(&t.class, &normalise(&t.anchor, width, height), now_ms);
                } else if t.active_frames == 0 && t.frames >= 2 {
                    memory.remember(&t.class, normalise(&t.last, width, height), now_ms);
                }
            }
        }
        let mut kept: Vec<(bool, Detection)> = self
            .tracks
            .into_iter()
            .map(|t| {
                let reason = t.reason_frames > 0;
                let mut d = t.best_reason.unwrap_or(t.best);
                d.stationary = t.active_frames == 0;
                d.zones = t.zones.into_iter().collect();
                (reason, d)
            })
            .collect();
        kept.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.confidence.total_cmp(&a.1.confidence)));
        let classes = |only_reasons: bool| {
            let mut by_conf: Vec<&(bool, Detection)> = kept.iter().filter(|(r, _)| *r || !only_reasons).collect();
            by_conf.sort_by(|a, b| b.1.confidence.total_cmp(&a.1.confidence).then_with(|| a.1.class.cmp(&b.1.class)));
            let mut out: Vec<String> = Vec::new();
            for (_, d) in by_conf {
                if !out.contains(&d.class) {
                    out.push(d.class.clone());
                }
            }
            out
        };
        let (detected_classes, alert_classes) = (classes(false), classes(true));
        kept.truncate(MAX_DETECTIONS);
        Tracked { detections: kept.into_iter().map(|(_, d)| d).collect(), detected_classes, alert_classes }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Zone, ZoneConfig, Zones};
    use super::*;

    const W: u32 = 768;
    const H: u32 = 576;
    const POST: [f32; 4] = [31.0, 111.0, 48.0, 141.0];

    fn det(class: &str, bbox: [f32; 4]) -> Detection {
        Detection::new(class, 0.5, bbox, 0.0)
    }

    fn shifted(b: [f32; 4], dx: f32) -> [f32; 4] {
        [b[0] + dx, b[1], b[2] + dx, b[3]]
    }

    fn still(_: &[f32; 4]) -> Option<f32> {
        Some(0.0)
    }

    fn camera(zones: Zones) -> Arc<CameraTracking> {
        CameraTracking::new("front".into(), zones)
    }

    #[test]
    fn an_object_that_stands_still_without_motion_is_no_reason_even_the_first_time() {
        let cam = camera(Zones::default());
        let mut t = EventTracker::new(cam.clone());
        for i in 0..6 {
            // The detector's box jitters by a pixel or two.
            let mut d = [det("person", shifted(POST, (i % 2) as f32 * 1.5))];
            assert_eq!(t.observe(&mut d, W, H, &still, 0), [false]);
            assert!(d[0].stationary);
        }
        let out = t.finish(W, H, 1_000);
        assert_eq!(out.detected_classes, ["person"]);
        assert!(out.alert_classes.is_empty());
        assert!(out.detections[0].stationary);
        assert_eq!(cam.memory().entries().len(), 1, "remembered for the next events");
    }

    #[test]
    fn a_walking_person_is_a_reason_and_a_parked_car_beside_it_is_not() {
        let mut t = EventTracker::new(camera(Zones::default()));
        let car = [500.0, 300.0, 620.0, 380.0];
        let mut reasons = Vec::new();
        for i in 0..5 {
            let person = shifted([300.0, 200.0, 330.0, 280.0], i as f32 * 12.0);
            let mut d = [det("person", person), det("car", car)];
            reasons.push(t.observe(&mut d, W, H, &still, 0));
        }
        assert_eq!(reasons[0], [false, false], "one frame says nothing about moving");
        assert!(reasons[2..].iter().all(|r| r == &[true, false]), "{reasons:?}");
        let out = t.finish(W, H, 0);
        assert_eq!(out.alert_classes, ["person"]);
        assert_eq!(out.detected_classes.len(), 2);
        let car = out.detections.iter().find(|d| d.class == "car").unwrap();
        assert!(car.stationary && !out.detections[0].stationary && out.detections[0].class == "person");
    }

    #[test]
    fn motion_on_a_box_makes_it_a_reason_unless_the_camera_remembers_the_object_there() {
        let cam = camera(Zones::default());
        let moving = |_: &[f32; 4]| Some(0.3);
        let mut t = EventTracker::new(cam.clone());
        let mut d = [det("person", POST)];
        assert_eq!(t.observe(&mut d, W, H, &moving, 0), [true], "motion on it, not remembered");

        // Two events with the post standing still: remembered.
        for _ in 0..2 {
            let mut t = EventTracker::new(cam.clone());
            for _ in 0..3 {
                t.observe(&mut [det("person", POST)], W, H, &still, 0);
            }
            t.finish(W, H, 0);
        }
        let mut t = EventTracker::new(cam.clone());
        let mut d = [det("person", POST)];
        assert_eq!(t.observe(&mut d, W, H, &moving, 10), [false], "remembered: motion crossing it is not its own");
        // It moves: a reason again, and forgotten.
        let mut d = [det("person", shifted(POST, 12.0))];
        assert_eq!(t.observe(&mut d, W, H, &moving, 10), [true]);
        assert_eq!(t.finish(W, H, 20).alert_classes, ["person"]);
        assert!(cam.memory().entries().is_empty());
    }

    #[test]
    fn a_stationary_object_that_starts_moving_becomes_a_reason() {
        let mut t = EventTracker::new(camera(Zones::default()));
        let mut got = Vec::new();
        for i in 0..8 {
            let dx = if i < 4 { 0.0 } else { (i - 3) as f32 * 12.0 };
            got.push(t.observe(&mut [det("car", shifted([100.0, 300.0, 200.0, 360.0], dx))], W, H, &still, 0)[0]);
        }
        assert_eq!(got, [false, false, false, false, false, false, true, true]);
        let out = t.finish(W, H, 0);
        assert_eq!(out.alert_classes, ["car"]);
        assert!(!out.detections[0].stationary);
    }

    #[test]
    fn required_zones_gate_reasons_and_every_zone_labels() {
        let zone = |name: &str, x0: f32, x1: f32, required: bool| {
            Zone::new(&ZoneConfig {
                name: name.into(),
                points: vec![[x0, 0.0], [x1, 0.0], [x1, 1.0], [x0, 1.0]],
                classes: vec![],
                required,
            })
        };
        let walk = |zones: Zones| {
            let mut t = EventTracker::new(camera(zones));
            for i in 0..4 {
                t.observe(
                    &mut [det("person", shifted([100.0, 200.0, 130.0, 280.0], i as f32 * 12.0))],
                    W,
                    H,
                    &still,
                    0,
                );
            }
            t.finish(W, H, 0)
        };
        let out = walk(Zones::new(vec![zone("right", 0.5, 1.0, true), zone("left", 0.0, 0.5, false)]));
        assert!(out.alert_classes.is_empty(), "the person walks in the left half only");
        assert_eq!(out.detections[0].zones, ["left"]);
        assert!(!out.detections[0].stationary, "moving, only outside the required zone");
        let out = walk(Zones::new(vec![zone("left", 0.0, 0.5, true)]));
        assert_eq!(out.alert_classes, ["person"]);
    }

    #[test]
    fn tracks_and_kept_detections_are_bounded() {
        let mut t = EventTracker::new(camera(Zones::default()));
        for i in 0..200 {
            let x = (i % 40) as f32 * 19.0;
            let y = (i / 40) as f32 * 100.0;
            t.observe(&mut [det("person", [x, y, x + 10.0, y + 10.0])], W, H, &still, 0);
        }
        assert!(t.tracks.len() <= MAX_TRACKS);
        assert_eq!(t.finish(W, H, 0).detections.len(), MAX_DETECTIONS);
    }
}
