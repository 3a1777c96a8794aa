//! What the live detector saw during one clip: the best detection per class,
//! the snapshot (the frame of the most confident detection), up to
//! `vlm_frames` JPEGs spread over the event for the VLM, and which classes are
//! confirmed: seen in `confirm_frames` frames within `confirm_window_s`, or in
//! that many frames the detector looked at in a row (when the detector is
//! saturated its frames come further apart than the window). Memory is bounded:
//! one snapshot and at most `2 * vlm_frames` JPEGs.

use std::collections::{HashMap, VecDeque};

use crate::domain::{Detection, FilterResult};
use crate::filter::FilterOutput;
use crate::filter::service::LiveSettings;
use crate::media::Jpeg;

/// One frame the live detector looked at, as the recorder gets it.
#[derive(Debug, Clone)]
pub struct ObjectFrame {
    /// When the frame was seen (unix ms).
    pub wall_ms: i64,
    /// Most confident first; `ts_s` is set by the recorder (from the clip start).
    pub detections: Vec<Detection>,
    /// The frame as a JPEG (for the snapshot and the VLM).
    pub jpeg: Jpeg,
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
    best: HashMap<String, Detection>,
    snapshot: Option<(f32, Vec<u8>)>,
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
    pub(super) fn new(settings: LiveSettings, start_wall_ms: i64) -> Self {
        Self {
            settings,
            start_wall_ms,
            frames_seen: 0,
            best: HashMap::new(),
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

        // Confirmation: this many frames with the class within the window.
        let window_ms = (self.settings.confirm_window_s * 1000.0).round() as i64;
        let mut newly = false;
        let mut classes: Vec<&str> = frame.detections.iter().map(|d| d.class.as_str()).collect();
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

        for d in &frame.detections {
            if self.best.get(&d.class).is_none_or(|b| d.confidence > b.confidence) {
                self.best.insert(d.class.clone(), d.clone());
            }
        }
        let top = frame.detections.first().map_or(0.0, |d| d.confidence);
        let confirmed = newly.then(|| Confirmed { classes: self.confirmed.clone(), jpeg: frame.jpeg.bytes.clone() });
        if top > 0.0 && self.snapshot.as_ref().is_none_or(|(c, _)| top > *c) {
            self.snapshot = Some((top, frame.jpeg.bytes.clone()));
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
        let mut detections: Vec<Detection> = self.best.into_values().collect();
        detections.sort_by(|a, b| b.confidence.total_cmp(&a.confidence).then_with(|| a.class.cmp(&b.class)));
        let result = FilterResult {
            detected_classes: detections.iter().map(|d| d.class.clone()).collect(),
            confidence: detections.first().map_or(0.0, |d| d.confidence),
            model: format!("{} (live)", self.settings.model),
            sampled_frames: self.frames_seen,
            detections,
        };
        let wanted = self.settings.vlm_frames as usize;
        let frames = spread(self.kept, wanted);
        Some((FilterOutput { result, snapshot_jpeg: self.snapshot.map(|(_, j)| j) }, frames))
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

    fn frame(ms: i64, seen: &[(&str, f32)]) -> ObjectFrame {
        ObjectFrame {
            wall_ms: ms,
            detections: seen
                .iter()
                .map(|(c, conf)| Detection { class: (*c).into(), confidence: *conf, bbox: [0.0; 4], ts_s: 0.0 })
                .collect(),
            jpeg: Jpeg { ts_s: 0.0, width: 4, height: 4, bytes: ms.to_le_bytes().to_vec() },
        }
    }

    #[test]
    fn a_class_is_confirmed_by_two_frames_within_a_second_once() {
        let mut o = ClipObjects::new(settings(0), 10_000);
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
        let mut o = ClipObjects::new(settings(0), 0);
        assert_eq!(o.observe(frame(0, &[("person", 0.7)])), None);
        assert!(o.observe(frame(1_500, &[("person", 0.7)])).is_some(), "two frames in a row");
    }

    #[test]
    fn vlm_frames_are_spread_over_the_event_and_bounded() {
        let mut o = ClipObjects::new(settings(4), 0);
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
        assert!(ClipObjects::new(settings(4), 0).finish().is_none());
    }
}
