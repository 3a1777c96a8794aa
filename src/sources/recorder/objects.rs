//! What the live detector saw during one clip: the objects tracked across the
//! frames (with the camera's zones and memory of stationary objects, and the
//! motion detector's mask: `filter::tracking`), the snapshot (the frame of the
//! most confident reason to alert, else of the most confident detection), up
//! to `vlm_frames` JPEGs spread over the event for the VLM, and which classes
//! are confirmed: a reason to alert in `confirm_frames` frames within
//! `confirm_window_s`, or in that many frames the detector looked at in a row
//! (when the detector is saturated its frames come further apart than the
//! window). A post or a parked car confirms nothing. Memory is bounded: the
//! tracker's, one snapshot and at most `2 * vlm_frames` JPEGs.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::domain::{Detection, FilterResult};
use crate::filter::FilterOutput;
use crate::filter::service::LiveSettings;
use crate::filter::tracking::{CameraTracking, EventTracker, MotionMask};
use crate::media::Jpeg;

/// One frame the live detector looked at, as the recorder gets it.
#[derive(Debug, Clone)]
pub struct ObjectFrame {
    /// When the frame was seen (unix ms).
    pub wall_ms: i64,
    /// The size of the frame the boxes are in.
    pub width: u32,
    pub height: u32,
    /// Most confident first; `ts_s` is set by the recorder (from the clip start).
    pub detections: Vec<Detection>,
    /// The frame as a JPEG (for the snapshot and the VLM).
    pub jpeg: Jpeg,
    /// Where the camera's motion detector saw change in the frame.
    pub motion: Option<MotionMask>,
}

/// A class confirmed for the first time in this clip.
#[derive(Debug, Clone, PartialEq)]
pub struct Confirmed {
    /// Every class confirmed so far, in the order they were.
    pub classes: Vec<String>,
    /// The frame that confirmed the newest one.
    pub jpeg: Vec<u8>,
}

pub(super) struct ClipObjects {
    settings: LiveSettings,
    start_wall_ms: i64,
    frames_seen: u32,
    tracker: EventTracker,
    /// The last frame's size and time (what the tracker's summary is in).
    last: (u32, u32, i64),
    /// (was a reason to alert, confidence, JPEG).
    snapshot: Option<(bool, f32, Vec<u8>)>,
    /// JPEGs kept for the VLM: every `stride`-th frame; when more than twice the
    /// wanted number are kept, every other one goes and the stride doubles.
    kept: Vec<Jpeg>,
    stride: u32,
    /// Per class, when it was seen in the frames of the confirmation window,
    /// and in how many frames in a row up to the last one.
    recent: HashMap<String, (VecDeque<i64>, u32)>,
    confirmed: Vec<String>,
}

impl ClipObjects {
    pub(super) fn new(settings: LiveSettings, start_wall_ms: i64, tracking: Arc<CameraTracking>) -> Self {
        Self {
            settings,
            start_wall_ms,
            frames_seen: 0,
            tracker: EventTracker::new(tracking),
            last: (0, 0, start_wall_ms),
            snapshot: None,
            kept: Vec::new(),
            stride: 1,
            recent: HashMap::new(),
            confirmed: Vec::new(),
        }
    }

    /// Takes one frame's detections; returns what it newly confirmed.
    pub(super) fn observe(&mut self, mut frame: ObjectFrame) -> Option<Confirmed> {
        let ts_s = (frame.wall_ms - self.start_wall_ms).max(0) as f32 / 1000.0;
        for d in &mut frame.detections {
            d.ts_s = ts_s;
        }
        let n = self.frames_seen;
        self.frames_seen += 1;
        let (w, h) = (frame.width, frame.height);
        self.last = (w, h, frame.wall_ms);
        let mask = frame.motion.take();
        let motion = |b: &[f32; 4]| mask.as_ref().and_then(|m| m.fraction_in(b, w, h));
        let reasons = self.tracker.observe(&mut frame.detections, w, h, &motion, frame.wall_ms);

        // Confirmation: this many frames with the class a reason to alert, within the window.
        let window_ms = (self.settings.confirm_window_s * 1000.0).round() as i64;
        let mut newly = false;
        let mut classes: Vec<&str> =
            frame.detections.iter().zip(&reasons).filter(|(_, r)| **r).map(|(d, _)| d.class.as_str()).collect();
        classes.sort_unstable();
        classes.dedup();
        for (class, (_, streak)) in &mut self.recent {
            if !classes.contains(&class.as_str()) {
                *streak = 0;
            }
        }
        let wanted = self.settings.confirm_frames.max(1);
        for class in classes {
            let (seen, streak) = self.recent.entry(class.to_owned()).or_default();
            seen.push_back(frame.wall_ms);
            while seen.front().is_some_and(|t| frame.wall_ms - t > window_ms) {
                seen.pop_front();
            }
            *streak += 1;
            let enough = seen.len() as u32 >= wanted || *streak >= wanted;
            if enough && !self.confirmed.iter().any(|c| c == class) {
                self.confirmed.push(class.to_owned());
                newly = true;
            }
        }

        let confirmed = newly.then(|| Confirmed { classes: self.confirmed.clone(), jpeg: frame.jpeg.bytes.clone() });
        let top = |only_reasons: bool| {
            let seen = frame.detections.iter().zip(&reasons).filter(|(_, r)| **r || !only_reasons);
            seen.map(|(d, _)| d.confidence).fold(0.0f32, f32::max)
        };
        let (top_reason, top_any) = (top(true), top(false));
        let candidate =
            if top_reason > 0.0 { Some((true, top_reason)) } else { (top_any > 0.0).then_some((false, top_any)) };
        if let Some((r, c)) = candidate
            && self.snapshot.as_ref().is_none_or(|(br, bc, _)| (r, c) > (*br, *bc))
        {
            self.snapshot = Some((r, c, frame.jpeg.bytes.clone()));
        }
        let wanted = self.settings.vlm_frames as usize;
        if wanted > 0 && n.is_multiple_of(self.stride) {
            frame.jpeg.ts_s = f64::from(ts_s);
            self.kept.push(frame.jpeg);
            if self.kept.len() > 2 * wanted {
                let mut i = 0;
                self.kept.retain(|_| {
                    i += 1;
                    i % 2 == 1
                });
                self.stride *= 2;
            }
        }
        confirmed
    }

    /// Whether any class was confirmed in this clip.
    pub(super) fn confirmed_any(&self) -> bool {
        !self.confirmed.is_empty()
    }

    /// The clip's filter result (`None` when the detector saw no frame of it)
    /// and the VLM's frames, spread evenly over the clip.
    pub(super) fn finish(self) -> Option<(FilterOutput, Vec<Jpeg>)> {
        if self.frames_seen == 0 {
            return None;
        }
        let (w, h, at) = self.last;
        let tracked = self.tracker.finish(w, h, at);
        let result = FilterResult {
            confidence: tracked.detections.iter().map(|d| d.confidence).fold(0.0, f32::max),
            detected_classes: tracked.detected_classes,
            alert_classes: tracked.alert_classes,
            model: format!("{} (live)", self.settings.model),
            sampled_frames: self.frames_seen,
            detections: tracked.detections,
        };
        let wanted = self.settings.vlm_frames as usize;
        let frames = spread(self.kept, wanted);
        Some((FilterOutput { result, snapshot_jpeg: self.snapshot.map(|(_, _, j)| j) }, frames))
    }
}

/// At most `n` of `items`, evenly spread (the middle of each of `n` slices).
fn spread<T>(items: Vec<T>, n: usize) -> Vec<T> {
    let len = items.len();
    if len <= n {
        return items;
    }
    let wanted: Vec<usize> = (0..n).map(|i| (2 * i + 1) * len / (2 * n)).collect();
    items.into_iter().enumerate().filter(|(i, _)| wanted.contains(i)).map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vlm_frames: u32) -> LiveSettings {
        LiveSettings { model: "yolox".into(), confirm_frames: 2, confirm_window_s: 1.0, vlm_frames }
    }

    use crate::filter::tracking::{Zone, ZoneConfig, Zones};

    const PERSON: [f32; 4] = [100.0, 100.0, 130.0, 180.0];
    const CAR: [f32; 4] = [300.0, 200.0, 420.0, 280.0];

    fn camera() -> Arc<CameraTracking> {
        CameraTracking::new("porch".into(), Zones::default())
    }

    /// A 640x480 frame whose motion mask (64x48) changed inside `moving`.
    fn seen_in(ms: i64, seen: &[(&str, f32, [f32; 4])], moving: &[[f32; 4]]) -> ObjectFrame {
        let mut changed = vec![0u8; 64 * 48];
        for b in moving {
            for y in (b[1] / 10.0) as usize..(b[3] / 10.0) as usize {
                for x in (b[0] / 10.0) as usize..(b[2] / 10.0) as usize {
                    changed[y * 64 + x] = 1;
                }
            }
        }
        ObjectFrame {
            wall_ms: ms,
            width: 640,
            height: 480,
            detections: seen.iter().map(|(c, conf, b)| Detection::new(*c, *conf, *b, 0.0)).collect(),
            jpeg: Jpeg { ts_s: 0.0, width: 4, height: 4, bytes: ms.to_le_bytes().to_vec() },
            motion: Some(MotionMask { width: 64, height: 48, changed }),
        }
    }

    /// Persons and cars at their places, with motion on everything.
    fn frame(ms: i64, seen: &[(&str, f32)]) -> ObjectFrame {
        let seen: Vec<_> = seen.iter().map(|(c, conf)| (*c, *conf, if *c == "car" { CAR } else { PERSON })).collect();
        seen_in(ms, &seen, &[[0.0, 0.0, 640.0, 480.0]])
    }

    #[test]
    fn a_post_without_motion_on_it_confirms_nothing_while_a_person_walking_by_does() {
        let post = [20.0, 100.0, 40.0, 140.0];
        let cam = camera();
        let mut o = ClipObjects::new(settings(0), 0, cam.clone());
        // Motion elsewhere (a tree); the post scores "person" in every frame.
        for ms in [0, 500, 1_000, 1_500] {
            assert_eq!(o.observe(seen_in(ms, &[("person", 0.5, post)], &[[500.0, 0.0, 640.0, 100.0]])), None);
        }
        // Someone walks by with motion on them: confirmed.
        let walker = |ms: i64| ("person", 0.8, [300.0 + ms as f32 / 50.0, 200.0, 330.0, 280.0]);
        let moving = |ms: i64| [[300.0 + ms as f32 / 50.0, 200.0, 330.0, 280.0]];
        assert_eq!(o.observe(seen_in(2_000, &[walker(2_000), ("person", 0.5, post)], &moving(2_000))), None);
        let c = o.observe(seen_in(2_500, &[walker(2_500), ("person", 0.5, post)], &moving(2_500))).expect("confirmed");
        assert_eq!(c.classes, ["person"]);
        let (out, _) = o.finish().unwrap();
        assert_eq!(out.result.alert_classes, ["person"]);
        let post_seen = out.result.detections.iter().find(|d| d.bbox == post).expect("the post is kept");
        assert!(post_seen.stationary);
        assert_eq!(out.snapshot_jpeg.unwrap(), 2_000i64.to_le_bytes(), "the walker's frame, not the post's");

        // The next event: motion crosses the post, but the camera remembers it there.
        let mut o = ClipObjects::new(settings(0), 10_000, cam);
        for ms in [10_000, 10_500, 11_000] {
            assert_eq!(o.observe(seen_in(ms, &[("person", 0.5, post)], &[post])), None);
        }
        let (out, _) = o.finish().unwrap();
        assert!(out.result.alert_classes.is_empty() && out.result.detected_classes == ["person"]);
    }

    #[test]
    fn only_objects_in_a_required_zone_confirm() {
        let right_half = Zone::new(&ZoneConfig {
            name: "drive".into(),
            points: vec![[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]],
            classes: vec!["car".into()],
            required: true,
        });
        let cam = CameraTracking::new("porch".into(), Zones::new(vec![right_half]));
        let mut o = ClipObjects::new(settings(0), 0, cam);
        let car_right = [400.0, 200.0, 520.0, 280.0];
        let mut confirmed = None;
        for ms in [0, 500, 1_000] {
            let seen = [("person", 0.9, PERSON), ("car", 0.6, [150.0, 200.0, 270.0, 280.0]), ("car", 0.7, car_right)];
            confirmed = confirmed.or(o.observe(seen_in(ms, &seen, &[[0.0, 0.0, 640.0, 480.0]])));
        }
        assert_eq!(confirmed.expect("the car in the zone").classes, ["car"], "the person and the left car are outside");
        let (out, _) = o.finish().unwrap();
        assert_eq!(out.result.alert_classes, ["car"]);
        assert_eq!(out.result.detected_classes, ["person", "car"]);
        let zones: Vec<_> = out.result.detections.iter().map(|d| (d.bbox[0], d.zones.clone())).collect();
        assert!(zones.contains(&(400.0, vec!["drive".to_string()])) && zones.contains(&(150.0, vec![])), "{zones:?}");
    }

    #[test]
    fn a_class_is_confirmed_by_two_frames_within_a_second_once() {
        let mut o = ClipObjects::new(settings(0), 10_000, camera());
        assert_eq!(o.observe(frame(10_000, &[("person", 0.7)])), None, "one frame is not enough");
        assert_eq!(o.observe(frame(10_500, &[])), None);
        assert_eq!(o.observe(frame(11_500, &[("person", 0.6)])), None, "1.5 s apart, a frame without between");
        let c = o.observe(frame(12_000, &[("person", 0.8), ("car", 0.85)])).expect("confirmed");
        assert_eq!(c.classes, ["person"]);
        assert_eq!(c.jpeg, 12_000i64.to_le_bytes(), "the confirming frame");
        assert_eq!(o.observe(frame(12_500, &[("person", 0.9)])), None, "already confirmed");
        let c = o.observe(frame(12_900, &[("car", 0.5)])).expect("car confirmed");
        assert_eq!(c.classes, ["person", "car"]);

        let (out, frames) = o.finish().unwrap();
        assert!(frames.is_empty(), "no VLM");
        assert_eq!(out.result.detected_classes, ["person", "car"]);
        assert_eq!((out.result.sampled_frames, out.result.model.as_str()), (6, "yolox (live)"));
        let person = &out.result.detections[0];
        assert_eq!((person.confidence, person.ts_s), (0.9, 2.5), "the best detection, timed from the clip start");
        assert_eq!(out.snapshot_jpeg.unwrap(), 12_500i64.to_le_bytes(), "the most confident frame");
    }

    #[test]
    fn a_saturated_detector_confirms_by_frames_in_a_row() {
        // The detector reaches this camera every 1.5 s only.
        let mut o = ClipObjects::new(settings(0), 0, camera());
        assert_eq!(o.observe(frame(0, &[("person", 0.7)])), None);
        assert!(o.observe(frame(1_500, &[("person", 0.7)])).is_some(), "two frames in a row");
    }

    #[test]
    fn vlm_frames_are_spread_over_the_event_and_bounded() {
        let mut o = ClipObjects::new(settings(4), 0, camera());
        let mut most = 0;
        for i in 0..101 {
            o.observe(frame(i * 500, &[]));
            most = most.max(o.kept.len());
        }
        assert!(most <= 8, "kept at most twice the frames wanted, got {most}");
        let (out, frames) = o.finish().unwrap();
        assert!(out.result.detected_classes.is_empty() && out.snapshot_jpeg.is_none());
        let ts: Vec<f64> = frames.iter().map(|f| f.ts_s).collect();
        assert_eq!(ts.len(), 4);
        assert!(ts[0] < 15.0 && ts[3] > 35.0, "spread over the 50 s event: {ts:?}");
        assert!(ts.windows(2).all(|w| w[1] > w[0]));
        // Nothing seen at all: no live result, the clip is filtered from its file.
        assert!(ClipObjects::new(settings(4), 0, camera()).finish().is_none());
    }
}
