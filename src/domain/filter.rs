//! What the object filter found in a clip.

use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};
use serde::{Deserialize, Serialize};

/// One object seen in one sampled frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct Detection {
    pub class: String,
    pub confidence: f32,
    /// `[x1, y1, x2, y2]` in pixels of the decoded frame.
    pub bbox: [f32; 4],
    /// Seconds from the start of the clip.
    pub ts_s: f32,
    /// The object stood still through the event (or where it stood in the
    /// camera's earlier events): recorded, but not a reason to alert.
    #[serde(default)]
    pub stationary: bool,
    /// The camera's zones its foot point was in (those that care about its class).
    #[serde(default)]
    pub zones: Vec<String>,
}

impl Detection {
    /// A detection as the model reports it: not yet tracked, in no zone.
    pub fn new(class: impl Into<String>, confidence: f32, bbox: [f32; 4], ts_s: f32) -> Self {
        Self { class: class.into(), confidence, bbox, ts_s, stationary: false, zones: Vec::new() }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct FilterResult {
    /// Distinct classes found, most confident first (everything seen, stationary
    /// objects too).
    pub detected_classes: Vec<String>,
    /// The classes with at least one detection that is a reason to alert: it
    /// moved or had motion on it, and stood in a required zone when the camera
    /// has zones. The alert policy decides on these.
    #[serde(default)]
    pub alert_classes: Vec<String>,
    /// Highest confidence over all detections (0 when none).
    pub confidence: f32,
    pub model: String,
    pub sampled_frames: u32,
    /// The best detection of each tracked object, reasons to alert first, at
    /// most `filter::tracking::MAX_DETECTIONS`.
    pub detections: Vec<Detection>,
}
