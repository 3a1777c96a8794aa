//! The `filter.config` block of the `yolo` backend and its validation.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::postprocess::{COCO_CLASSES, class_index};
use crate::plugin::{PluginConfig, Validator};

/// Which output layout (and input convention) the model has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum YoloHead {
    #[default]
    Yolox,
    Yolov8,
}

/// Where inference runs. Anything but `cpu` falls back to the CPU, with a warning,
/// when the ONNX Runtime build or the machine lacks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionProvider {
    #[default]
    Cpu,
    Cuda,
    Tensorrt,
    Openvino,
}

impl ExecutionProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionProvider::Cpu => "cpu",
            ExecutionProvider::Cuda => "cuda",
            ExecutionProvider::Tensorrt => "tensorrt",
            ExecutionProvider::Openvino => "openvino",
        }
    }
}

pub(super) fn default_classes() -> Vec<String> {
    vec!["person".to_owned()]
}
pub(super) fn default_min_confidence() -> f32 {
    0.5
}
pub(super) fn default_nms_iou() -> f32 {
    0.45
}
pub(super) fn default_sample_fps() -> f64 {
    2.0
}
pub(super) fn default_max_frames() -> u32 {
    40
}
pub(super) fn default_intra_threads() -> usize {
    1
}
pub(super) fn default_workers() -> usize {
    1
}
pub(super) fn default_confirm_frames() -> u32 {
    2
}
pub(super) fn default_confirm_window_s() -> f64 {
    1.0
}

/// `filter.config` of the `yolo` backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YoloConfig {
    /// The ONNX model (relative paths resolve against the config file's folder).
    pub model_path: PathBuf,
    /// The ONNX Runtime shared library; default `$ORT_DYLIB_PATH`.
    #[serde(default)]
    pub ort_library: Option<PathBuf>,
    #[serde(default)]
    pub head: YoloHead,
    /// Model input side in pixels; default: the model's declared input.
    #[serde(default)]
    pub input_size: Option<u32>,
    /// COCO class names to report.
    #[serde(default = "default_classes")]
    pub classes: Vec<String>,
    #[serde(default = "default_min_confidence")]
    pub min_confidence: f32,
    #[serde(default = "default_nms_iou")]
    pub nms_iou: f32,
    /// Frames per second of video run through the model.
    #[serde(default = "default_sample_fps")]
    pub sample_fps: f64,
    /// At most this many frames per clip.
    #[serde(default = "default_max_frames")]
    pub max_frames: u32,
    #[serde(default)]
    pub execution_provider: ExecutionProvider,
    /// ONNX Runtime intra-op threads (1 is fastest on a 2-core box).
    #[serde(default = "default_intra_threads")]
    pub intra_threads: usize,
    /// Model sessions serving every live camera and the clips (each its own
    /// thread and memory; one per spare core at most).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// An object is confirmed when its class is detected in this many frames ...
    #[serde(default = "default_confirm_frames")]
    pub confirm_frames: u32,
    /// ... within this many seconds (live cameras; clips count sampled frames).
    #[serde(default = "default_confirm_window_s")]
    pub confirm_window_s: f64,
}

impl PluginConfig for YoloConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        // Files are checked when the filter is built: relative paths need the config's folder.
        v.check(!self.model_path.as_os_str().is_empty(), "model_path", "must name an ONNX model file");
        if let Some(lib) = &self.ort_library {
            v.check(!lib.as_os_str().is_empty(), "ort_library", "must name the ONNX Runtime library (or be left out)");
        }
        if let Some(size) = self.input_size {
            v.check(
                (32..=4096).contains(&size) && size % 32 == 0,
                "input_size",
                format!("{size} is not a multiple of 32 between 32 and 4096"),
            );
        }
        if self.classes.is_empty() {
            v.error("classes", "must name at least one COCO class (e.g. [person])");
        }
        let mut seen = Vec::new();
        for (i, class) in self.classes.iter().enumerate() {
            if class_index(class).is_none() {
                v.error(&format!("classes[{i}]"), format!("unknown COCO class `{class}` ({})", suggest_class(class)));
            } else if seen.contains(&class) {
                v.error(&format!("classes[{i}]"), format!("`{class}` is listed twice"));
            }
            seen.push(class);
        }
        let unit = |x: f32| x.is_finite() && x > 0.0 && x <= 1.0;
        v.check(unit(self.min_confidence), "min_confidence", "must be in (0, 1]");
        v.check(unit(self.nms_iou), "nms_iou", "must be in (0, 1]");
        v.check(
            self.sample_fps.is_finite() && self.sample_fps > 0.0 && self.sample_fps <= 60.0,
            "sample_fps",
            "must be in (0, 60]",
        );
        v.check((1..=10_000).contains(&self.max_frames), "max_frames", "must be between 1 and 10000");
        v.check((1..=256).contains(&self.intra_threads), "intra_threads", "must be between 1 and 256");
        v.check((1..=16).contains(&self.workers), "workers", "must be between 1 and 16");
        v.check((1..=10).contains(&self.confirm_frames), "confirm_frames", "must be between 1 and 10");
        v.check(
            self.confirm_window_s.is_finite() && self.confirm_window_s > 0.0 && self.confirm_window_s <= 60.0,
            "confirm_window_s",
            "must be in (0, 60]",
        );
    }
}

fn suggest_class(name: &str) -> String {
    let lower = name.trim().to_lowercase().replace(['_', '-'], " ");
    if COCO_CLASSES.contains(&lower.as_str()) {
        return format!("did you mean {lower}?");
    }
    let close: Vec<&str> = COCO_CLASSES
        .iter()
        .copied()
        .filter(|c| *c == lower || c.contains(&lower) || (lower.len() > 3 && lower.contains(c)))
        .take(3)
        .collect();
    if close.is_empty() {
        "names are COCO-80: person, bicycle, car, motorcycle, bus, truck, bird, cat, dog, horse, …".to_owned()
    } else {
        format!("did you mean {}?", close.join(" / "))
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn validate(cfg: &YoloConfig) -> Vec<String> {
        let mut issues = Vec::new();
        let locate = |_: &str| None;
        let mut v = Validator::new("filter.config", &mut issues, &locate);
        cfg.validate(&mut v);
        issues.iter().map(|i| i.to_string()).collect()
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        let cfg: YoloConfig = serde_json::from_value(serde_json::json!({"model_path": "m.onnx"})).unwrap();
        assert_eq!(cfg.head, YoloHead::Yolox);
        assert_eq!(cfg.classes, vec!["person".to_owned()]);
        assert_eq!((cfg.min_confidence, cfg.nms_iou, cfg.sample_fps, cfg.max_frames), (0.5, 0.45, 2.0, 40));
        assert_eq!((cfg.execution_provider, cfg.intra_threads, cfg.input_size), (ExecutionProvider::Cpu, 1, None));
        assert_eq!((cfg.workers, cfg.confirm_frames, cfg.confirm_window_s), (1, 2, 1.0));
        assert!(validate(&cfg).is_empty());

        let bad = serde_json::from_value::<YoloConfig>(serde_json::json!({"model_path": "m", "modle": 1}));
        assert!(bad.is_err());
        let bad = serde_json::from_value::<YoloConfig>(serde_json::json!({"model_path": "m", "head": "yolov5"}));
        assert!(bad.is_err());
        let ok = serde_json::from_value::<YoloConfig>(
            serde_json::json!({"model_path": "m", "head": "yolov8", "execution_provider": "tensorrt"}),
        )
        .unwrap();
        assert_eq!((ok.head, ok.execution_provider), (YoloHead::Yolov8, ExecutionProvider::Tensorrt));
    }

    #[test]
    fn validation_reports_every_problem() {
        let cfg = YoloConfig {
            model_path: PathBuf::new(),
            ort_library: None,
            head: YoloHead::Yolox,
            input_size: Some(400),
            classes: vec!["person".into(), "persn".into(), "person".into(), "Dog".into()],
            min_confidence: 0.0,
            nms_iou: 1.5,
            sample_fps: 0.0,
            max_frames: 0,
            execution_provider: ExecutionProvider::Cpu,
            intra_threads: 0,
            workers: 0,
            confirm_frames: 0,
            confirm_window_s: f64::NAN,
        };
        let issues = validate(&cfg);
        let joined = issues.join("\n");
        for field in [
            "filter.config.model_path",
            "filter.config.input_size",
            "filter.config.classes[1]: unknown COCO class `persn`",
            "filter.config.classes[2]: `person` is listed twice",
            "filter.config.classes[3]: unknown COCO class `Dog` (did you mean dog?)",
            "filter.config.min_confidence",
            "filter.config.nms_iou",
            "filter.config.sample_fps",
            "filter.config.max_frames",
            "filter.config.intra_threads",
            "filter.config.workers",
            "filter.config.confirm_frames",
            "filter.config.confirm_window_s",
        ] {
            assert!(joined.contains(field), "missing {field} in:\n{joined}");
        }
        assert_eq!(issues.len(), 13, "{joined}");
    }
}
