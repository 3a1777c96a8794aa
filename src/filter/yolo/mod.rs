//! YOLO object filter through ONNX Runtime (`ort`, library loaded at run time).
//!
//! Heads:
//! - `yolox` (YOLOX, e.g. `models/` yolox_nano_416): input BGR, raw 0..255, letterboxed
//!   into the **top-left** corner with padding 114; output `[1, N, 5 + 80]` =
//!   `[dx, dy, log_w, log_h, objectness, class scores]` per grid point of strides
//!   8/16/32, decoded as `cx = (dx + gx) * s`, `w = exp(log_w) * s`, score =
//!   objectness × class score.
//! - `yolov8` (Ultralytics YOLOv8/v11 detect export): input RGB scaled to 0..1,
//!   letterboxed **centred** (as Ultralytics does) with padding 114/255; output
//!   `[1, 4 + 80, N]` = `[cx, cy, w, h, class scores]` in input pixels (the transposed
//!   `[1, N, 4 + 80]` is accepted too).
//!
//! Both: per-class NMS, boxes mapped back through the letterbox to frame pixels,
//! only the configured classes at or above `min_confidence` kept.
//!
//! Inference runs on `workers` dedicated threads, each owning an ONNX session;
//! they serve the live cameras' frames and the clips (which they also decode)
//! through one detector service (`filter::service`).

use std::path::PathBuf;

use crate::filter::service::LiveSettings;
use crate::plugin::{PluginBuildError, PluginContext};

mod config;
mod postprocess;
mod session;
mod worker;

pub use config::{ExecutionProvider, YoloConfig, YoloHead};
pub use postprocess::{COCO_CLASSES, Candidate, Letterbox, class_index, iou, nms_per_class};
pub use session::{Detector, DetectorError, DetectorOptions, Timings};
pub use worker::{ClipSettings, ClipStats, YoloFilter, run_clip};

/// Builds the `yolo` filter: resolves paths against the config's folder, loads
/// ONNX Runtime and the model (one session per worker), and starts the workers.
pub fn build(cfg: YoloConfig, ctx: &PluginContext) -> Result<YoloFilter, PluginBuildError> {
    let fail = |e: Box<dyn std::error::Error + Send + Sync>| PluginBuildError::new("filter", "yolo", e);
    let model = ctx.resolve(&cfg.model_path);
    if !model.is_file() {
        return Err(fail(Box::new(DetectorError::ModelMissing { path: model.display().to_string() })));
    }
    let library = match &cfg.ort_library {
        Some(p) => ctx.resolve(p),
        None => match std::env::var_os("ORT_DYLIB_PATH") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => {
                return Err(fail(
                    "no ONNX Runtime library: set filter.config.ort_library or ORT_DYLIB_PATH \
                     (models/fetch-onnxruntime.sh installs one)"
                        .into(),
                ));
            }
        },
    };
    if !library.is_file() {
        return Err(fail(Box::new(DetectorError::Library {
            path: library.display().to_string(),
            reason: "no such file".into(),
        })));
    }
    let opts = DetectorOptions {
        head: cfg.head,
        input_size: cfg.input_size,
        classes: cfg.classes.clone(),
        min_confidence: cfg.min_confidence,
        nms_iou: cfg.nms_iou,
        execution_provider: cfg.execution_provider,
        intra_threads: cfg.intra_threads,
    };
    let detectors = (0..cfg.workers.max(1))
        .map(|_| Detector::new(&model, &library, &opts))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(Box::new(e)))?;
    let settings = ClipSettings {
        sample_fps: cfg.sample_fps,
        max_frames: cfg.max_frames,
        confirm_frames: cfg.confirm_frames,
        ..ClipSettings::default()
    };
    let live = LiveSettings {
        model: detectors.first().map_or_else(String::new, |d| d.model_name().to_owned()),
        confirm_frames: cfg.confirm_frames,
        confirm_window_s: cfg.confirm_window_s,
        vlm_frames: 0,
    };
    YoloFilter::start(detectors, settings, live).map_err(|e| fail(Box::new(e)))
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_names_a_missing_model() {
        let ctx = PluginContext {
            layout: crate::plugin::DataLayout::new(PathBuf::from("/tmp")),
            config_dir: PathBuf::from("/nonexistent-config-dir"),
            device_id: "test".into(),
            cameras: Vec::new(),
            client_tag: None,
        };
        let cfg: YoloConfig = serde_json::from_value(serde_json::json!({"model_path": "models/x.onnx"})).unwrap();
        let err = build(cfg, &ctx).unwrap_err();
        let chain = format!("{err}: {}", std::error::Error::source(&err).map(|s| s.to_string()).unwrap_or_default());
        assert!(chain.contains("/nonexistent-config-dir/models/x.onnx"), "{chain}");
    }
}
