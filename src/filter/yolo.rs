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
//! Inference runs on one dedicated worker thread per filter, which owns the ONNX
//! session and also decodes the clip; the async side only sends it paths.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider as _, ExecutionProviderDispatch};
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::TensorRef;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::domain::{Detection, FilterResult};
use crate::filter::{FilterError, FilterOutput, ObjectFilter};
use crate::media::{self, ResizeQuality, RgbFrame, RgbResizer};
use crate::plugin::{PluginBuildError, PluginContext};
use crate::plugin::{PluginConfig, Validator};

/// The 80 COCO class names, in the models' output order.
#[rustfmt::skip]
pub const COCO_CLASSES: [&str; 80] = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
];

/// Longer side and quality of the snapshot JPEG.
pub const SNAPSHOT_MAX_SIZE: u32 = 1280;
pub const SNAPSHOT_QUALITY: u8 = 85;

const YOLOX_STRIDES: [u32; 3] = [8, 16, 32];
const PAD_VALUE: u8 = 114;

// ---------------------------------------------------------------------------
// Config

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

fn default_classes() -> Vec<String> {
    vec!["person".to_owned()]
}
fn default_min_confidence() -> f32 {
    0.5
}
fn default_nms_iou() -> f32 {
    0.45
}
fn default_sample_fps() -> f64 {
    2.0
}
fn default_max_frames() -> u32 {
    40
}
fn default_intra_threads() -> usize {
    1
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
    }
}

/// The COCO index of a class name.
pub fn class_index(name: &str) -> Option<usize> {
    COCO_CLASSES.iter().position(|c| *c == name)
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

// ---------------------------------------------------------------------------
// Geometry: letterbox, IoU, NMS

/// How a frame is scaled and padded into the model input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub scale: f32,
    pub new_w: u32,
    pub new_h: u32,
    pub pad_x: u32,
    pub pad_y: u32,
}

impl Letterbox {
    /// Fits `src` into `dst` keeping the aspect ratio; `centred` pads on both sides,
    /// otherwise the image sits in the top-left corner.
    pub fn new(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32, centred: bool) -> Self {
        let scale = (dst_w as f32 / src_w.max(1) as f32).min(dst_h as f32 / src_h.max(1) as f32);
        // Truncation, as YOLOX's reference preprocessing does.
        let new_w = ((src_w as f32 * scale) as u32).clamp(1, dst_w);
        let new_h = ((src_h as f32 * scale) as u32).clamp(1, dst_h);
        let (pad_x, pad_y) = if centred { ((dst_w - new_w) / 2, (dst_h - new_h) / 2) } else { (0, 0) };
        Self { scale, new_w, new_h, pad_x, pad_y }
    }

    /// Maps a box in model-input pixels back to frame pixels, clipped to the frame.
    pub fn to_frame(&self, b: [f32; 4], frame_w: u32, frame_h: u32) -> [f32; 4] {
        let (px, py) = (self.pad_x as f32, self.pad_y as f32);
        let (fw, fh) = (frame_w as f32, frame_h as f32);
        [
            ((b[0] - px) / self.scale).clamp(0.0, fw),
            ((b[1] - py) / self.scale).clamp(0.0, fh),
            ((b[2] - px) / self.scale).clamp(0.0, fw),
            ((b[3] - py) / self.scale).clamp(0.0, fh),
        ]
    }
}

/// A scored box in model-input pixels, before NMS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// COCO class index.
    pub class: usize,
    pub score: f32,
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Per-class greedy non-maximum suppression: within each class, a box is dropped
/// when it overlaps a higher-scoring kept box by more than `iou_threshold`.
/// Returns the kept boxes, highest score first.
pub fn nms_per_class(mut candidates: Vec<Candidate>, iou_threshold: f32) -> Vec<Candidate> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Candidate> = Vec::new();
    for c in candidates {
        if kept.iter().all(|k| k.class != c.class || iou(&k.bbox, &c.bbox) <= iou_threshold) {
            kept.push(c);
        }
    }
    kept
}

// ---------------------------------------------------------------------------
// Head decoding

/// One YOLOX grid point: cell coordinates and stride.
#[derive(Debug, Clone, Copy, PartialEq)]
struct GridPoint {
    gx: f32,
    gy: f32,
    stride: f32,
}

/// The anchor-free grid of YOLOX for an input of `w` x `h`: strides 8/16/32, each
/// grid row-major.
fn yolox_grid(w: u32, h: u32) -> Vec<GridPoint> {
    let mut grid = Vec::new();
    for s in YOLOX_STRIDES {
        let (gw, gh) = (w / s, h / s);
        for gy in 0..gh {
            for gx in 0..gw {
                grid.push(GridPoint { gx: gx as f32, gy: gy as f32, stride: s as f32 });
            }
        }
    }
    grid
}

/// Decodes YOLOX rows `[dx, dy, log_w, log_h, obj, classes…]` into candidates of
/// the wanted classes scoring at least `min_score`.
fn decode_yolox(data: &[f32], grid: &[GridPoint], wanted: &[usize], min_score: f32) -> Vec<Candidate> {
    let row_len = 5 + COCO_CLASSES.len();
    let mut out = Vec::new();
    for (row, g) in data.chunks_exact(row_len).zip(grid) {
        let obj = row[4];
        // Every class score is at most 1, so the objectness bounds the score.
        if obj < min_score {
            continue;
        }
        let cx = (row[0] + g.gx) * g.stride;
        let cy = (row[1] + g.gy) * g.stride;
        let w = row[2].exp() * g.stride;
        let h = row[3].exp() * g.stride;
        for &class in wanted {
            let score = obj * row[5 + class];
            if score >= min_score {
                out.push(Candidate { class, score, bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0] });
            }
        }
    }
    out
}

/// Decodes YOLOv8 output (`channels_first`: `[4 + 80, n]`, else `[n, 4 + 80]`).
fn decode_yolov8(data: &[f32], n: usize, channels_first: bool, wanted: &[usize], min_score: f32) -> Vec<Candidate> {
    let channels = 4 + COCO_CLASSES.len();
    let at = |i: usize, k: usize| if channels_first { data[k * n + i] } else { data[i * channels + k] };
    let mut out = Vec::new();
    for i in 0..n {
        for &class in wanted {
            let score = at(i, 4 + class);
            if score >= min_score {
                let (cx, cy, w, h) = (at(i, 0), at(i, 1), at(i, 2), at(i, 3));
                out.push(Candidate { class, score, bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0] });
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Detector: one ONNX session and its buffers

#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error(
        "cannot load the ONNX Runtime library {path}: {reason} (run models/fetch-onnxruntime.sh, or set ORT_DYLIB_PATH / ort_library)"
    )]
    Library { path: String, reason: String },
    #[error("model file {path} not found (run models/fetch.sh, or fix model_path)")]
    ModelMissing { path: String },
    #[error("cannot load the model {path}: {reason}")]
    Model { path: String, reason: String },
    #[error("model {path} does not fit the `{head}` head: {reason}")]
    Shape { path: String, head: &'static str, reason: String },
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("bad frame: {0}")]
    Frame(String),
}

/// Per-stage time of one or more frames.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    /// Resize and tensor fill.
    pub preprocess: Duration,
    /// `Session::run` and reading the output.
    pub inference: Duration,
    /// Head decoding, NMS, letterbox undo.
    pub postprocess: Duration,
}

impl Timings {
    pub fn total(&self) -> Duration {
        self.preprocess + self.inference + self.postprocess
    }
}

impl std::ops::AddAssign for Timings {
    fn add_assign(&mut self, o: Self) {
        self.preprocess += o.preprocess;
        self.inference += o.inference;
        self.postprocess += o.postprocess;
    }
}

/// What a [`Detector`] runs.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorOptions {
    pub head: YoloHead,
    /// Square input side; `None`: the model's declared input.
    pub input_size: Option<u32>,
    /// COCO names to report; empty: all 80.
    pub classes: Vec<String>,
    pub min_confidence: f32,
    pub nms_iou: f32,
    pub execution_provider: ExecutionProvider,
    pub intra_threads: usize,
}

impl Default for DetectorOptions {
    fn default() -> Self {
        Self {
            head: YoloHead::Yolox,
            input_size: None,
            classes: default_classes(),
            min_confidence: default_min_confidence(),
            nms_iou: default_nms_iou(),
            execution_provider: ExecutionProvider::Cpu,
            intra_threads: default_intra_threads(),
        }
    }
}

/// The process-wide ONNX Runtime environment (ort allows one per process), with the
/// library it was loaded from.
static ORT_ENV: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);

fn ort_environment(library: &Path) -> Result<Environment, DetectorError> {
    let shown = library.display().to_string();
    let mut slot = ORT_ENV.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((loaded, env)) = slot.as_ref() {
        if loaded != library {
            tracing::warn!(
                loaded = %loaded.display(),
                requested = %shown,
                "ONNX Runtime is loaded once per process; keeping the library loaded first"
            );
        }
        return Ok(env.clone());
    }
    if !library.is_file() {
        return Err(DetectorError::Library { path: shown, reason: "no such file".into() });
    }
    let env = ort::init_from(library)
        .map_err(|e| DetectorError::Library { path: shown.clone(), reason: e.to_string() })?
        .with_name("homesec")
        .build()
        .map_err(|e| DetectorError::Library { path: shown.clone(), reason: e.to_string() })?;
    tracing::info!(library = %shown, "ONNX Runtime loaded");
    *slot = Some((library.to_path_buf(), env.clone()));
    Ok(env)
}

/// Registers the execution providers for `wanted` that this ONNX Runtime build and
/// machine support; returns the builder and the provider that will run.
fn register_provider(mut builder: SessionBuilder, wanted: ExecutionProvider) -> (SessionBuilder, &'static str) {
    type Candidate = (&'static str, fn() -> ort::Result<bool>, fn() -> ExecutionProviderDispatch);
    let cuda: Candidate = ("cuda", ep::CUDA::is_available, || ep::CUDA::default().build().error_on_failure());
    let tensorrt: Candidate =
        ("tensorrt", ep::TensorRT::is_available, || ep::TensorRT::default().build().error_on_failure());
    let openvino: Candidate =
        ("openvino", ep::OpenVINO::is_available, || ep::OpenVINO::default().build().error_on_failure());
    let candidates: Vec<Candidate> = match wanted {
        ExecutionProvider::Cpu => return (builder, "cpu"),
        ExecutionProvider::Cuda => vec![cuda],
        // TensorRT hands the nodes it cannot run to CUDA.
        ExecutionProvider::Tensorrt => vec![tensorrt, cuda],
        ExecutionProvider::Openvino => vec![openvino],
    };
    let mut active = None;
    for (name, available, make) in candidates {
        match available() {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(provider = name, "execution provider not in this ONNX Runtime build; skipping it");
                continue;
            }
            Err(e) => {
                tracing::warn!(provider = name, error = %e, "cannot list execution providers; skipping it");
                continue;
            }
        }
        match builder.with_execution_providers([make()]) {
            Ok(b) => {
                builder = b;
                active.get_or_insert(name);
            }
            Err(e) => {
                tracing::warn!(provider = name, error = %e, "cannot register execution provider; skipping it");
                builder = e.recover();
            }
        }
    }
    match active {
        Some(name) => (builder, name),
        None => {
            tracing::warn!(wanted = wanted.as_str(), "falling back to the CPU execution provider");
            (builder, "cpu")
        }
    }
}

/// A YOLO model in an ONNX Runtime session, with reusable buffers.
pub struct Detector {
    session: Session,
    model_name: String,
    provider: &'static str,
    head: YoloHead,
    input_w: u32,
    input_h: u32,
    class_ids: Vec<usize>,
    min_confidence: f32,
    nms_iou: f32,
    grid: Vec<GridPoint>,
    tensor: Vec<f32>,
    resized: Vec<u8>,
    resizer: RgbResizer,
    /// The letterbox the tensor's padding was last written for.
    padded_for: Option<Letterbox>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("model", &self.model_name)
            .field("provider", &self.provider)
            .field("head", &self.head)
            .field("input", &(self.input_w, self.input_h))
            .finish_non_exhaustive()
    }
}

fn dims_of(outlet: &ort::value::Outlet) -> Vec<i64> {
    outlet.dtype().tensor_shape().map(|s| s.to_vec()).unwrap_or_default()
}

impl Detector {
    /// Loads ONNX Runtime (once per process) from `ort_library` and the model.
    pub fn new(model: &Path, ort_library: &Path, opts: &DetectorOptions) -> Result<Self, DetectorError> {
        let path = model.display().to_string();
        if !model.is_file() {
            return Err(DetectorError::ModelMissing { path });
        }
        let env = ort_environment(ort_library)?;
        let (session, provider) = match Self::session(&env, model, opts, opts.execution_provider) {
            Ok(s) => s,
            Err(e) if opts.execution_provider != ExecutionProvider::Cpu => {
                tracing::warn!(error = %e, provider = opts.execution_provider.as_str(), "session failed; retrying on the CPU");
                Self::session(&env, model, opts, ExecutionProvider::Cpu)?
            }
            Err(e) => return Err(e),
        };

        let head = opts.head;
        let head_name = match head {
            YoloHead::Yolox => "yolox",
            YoloHead::Yolov8 => "yolov8",
        };
        let shape_err = |reason: String| DetectorError::Shape { path: path.clone(), head: head_name, reason };
        let (Some(input), Some(output)) = (session.inputs().first(), session.outputs().first()) else {
            return Err(shape_err("the model has no input or no output".into()));
        };
        let in_dims = dims_of(input);
        let out_dims = dims_of(output);
        if in_dims.len() != 4 || in_dims[1] != 3 {
            return Err(shape_err(format!("input {in_dims:?} is not [1, 3, H, W]")));
        }
        let declared = (in_dims[2], in_dims[3]);
        let (input_h, input_w) = match (declared, opts.input_size) {
            ((h, w), None) if h > 0 && w > 0 => (h as u32, w as u32),
            ((h, w), Some(s)) if h > 0 && w > 0 && (h as u32 != s || w as u32 != s) => {
                return Err(shape_err(format!("input_size {s} but the model's input is fixed at {w}x{h}")));
            }
            (_, Some(s)) => (s, s),
            _ => return Err(shape_err("the model's input size is dynamic: set input_size".into())),
        };
        if input_w % 32 != 0 || input_h % 32 != 0 {
            return Err(shape_err(format!("input {input_w}x{input_h} is not a multiple of 32")));
        }

        let grid = match head {
            YoloHead::Yolox => {
                let grid = yolox_grid(input_w, input_h);
                let expected = [1, grid.len() as i64, 5 + COCO_CLASSES.len() as i64];
                let fits = out_dims.len() == 3 && out_dims.iter().zip(expected).all(|(d, e)| *d < 0 || *d == e);
                if !fits {
                    return Err(shape_err(format!("output {out_dims:?}, expected {expected:?}")));
                }
                grid
            }
            YoloHead::Yolov8 => {
                let channels = 4 + COCO_CLASSES.len() as i64;
                let fits =
                    out_dims.len() == 3 && (out_dims[1] == channels || out_dims[2] == channels || out_dims[1] < 0);
                if !fits {
                    return Err(shape_err(format!("output {out_dims:?}, expected [1, {channels}, N]")));
                }
                Vec::new()
            }
        };

        let class_ids = if opts.classes.is_empty() {
            (0..COCO_CLASSES.len()).collect()
        } else {
            opts.classes
                .iter()
                .map(|c| class_index(c).ok_or_else(|| shape_err(format!("unknown COCO class `{c}`"))))
                .collect::<Result<Vec<_>, _>>()?
        };
        let model_name = model.file_stem().map_or_else(|| path.clone(), |s| s.to_string_lossy().into_owned());
        tracing::info!(
            model = %model_name,
            provider,
            head = head_name,
            input_w,
            input_h,
            classes = ?opts.classes,
            "detector ready"
        );
        Ok(Self {
            session,
            model_name,
            provider,
            head,
            input_w,
            input_h,
            class_ids,
            min_confidence: opts.min_confidence,
            nms_iou: opts.nms_iou,
            grid,
            tensor: vec![0.0; 3 * input_w as usize * input_h as usize],
            resized: Vec::new(),
            resizer: RgbResizer::new(ResizeQuality::Bilinear),
            padded_for: None,
        })
    }

    fn session(
        env: &Environment,
        model: &Path,
        opts: &DetectorOptions,
        provider: ExecutionProvider,
    ) -> Result<(Session, &'static str), DetectorError> {
        let path = model.display().to_string();
        let err = |e: &dyn std::fmt::Display| DetectorError::Model { path: path.clone(), reason: e.to_string() };
        let builder = Session::builder(env)
            .map_err(|e| err(&e))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| err(&e))?
            .with_intra_threads(opts.intra_threads.max(1))
            .map_err(|e| err(&e))?
            .with_inter_threads(1)
            .map_err(|e| err(&e))?;
        let (mut builder, active) = register_provider(builder, provider);
        let session = builder.commit_from_file(model).map_err(|e| err(&e))?;
        Ok((session, active))
    }

    /// The model file's stem, e.g. `yolox_nano_416`.
    pub fn model_name(&self) -> &str {
        &self.model_name
    }

    /// The execution provider that runs the model (`cpu` after a fallback).
    pub fn execution_provider(&self) -> &'static str {
        self.provider
    }

    /// Model input width and height.
    pub fn input_size(&self) -> (u32, u32) {
        (self.input_w, self.input_h)
    }

    /// The COCO names this detector reports.
    pub fn classes(&self) -> Vec<&'static str> {
        self.class_ids.iter().map(|&c| COCO_CLASSES[c]).collect()
    }

    fn letterbox_for(&self, w: u32, h: u32) -> Letterbox {
        Letterbox::new(w, h, self.input_w, self.input_h, self.head == YoloHead::Yolov8)
    }

    /// Resizes `frame` into the input tensor (NCHW planes). Returns the letterbox.
    fn preprocess(&mut self, frame: &RgbFrame) -> Result<Letterbox, DetectorError> {
        let expected = frame.width as usize * frame.height as usize * 3;
        if frame.width == 0 || frame.height == 0 || frame.data.len() != expected {
            return Err(DetectorError::Frame(format!(
                "{}x{} frame with {} bytes",
                frame.width,
                frame.height,
                frame.data.len()
            )));
        }
        let lb = self.letterbox_for(frame.width, frame.height);
        self.resizer
            .resize(&frame.data, frame.width, frame.height, &mut self.resized, lb.new_w, lb.new_h)
            .map_err(|e| DetectorError::Frame(e.to_string()))?;

        let (yolox, pad) = match self.head {
            YoloHead::Yolox => (true, f32::from(PAD_VALUE)),
            YoloHead::Yolov8 => (false, f32::from(PAD_VALUE) / 255.0),
        };
        // The padding stays valid while frames keep their size: write it only on change.
        if self.padded_for != Some(lb) {
            self.tensor.fill(pad);
            self.padded_for = Some(lb);
        }
        let plane = self.input_w as usize * self.input_h as usize;
        let (p0, rest) = self.tensor.split_at_mut(plane);
        let (p1, p2) = rest.split_at_mut(plane);
        let (in_w, new_w) = (self.input_w as usize, lb.new_w as usize);
        for (y, row) in self.resized.chunks_exact(new_w * 3).enumerate() {
            let start = (y + lb.pad_y as usize) * in_w + lb.pad_x as usize;
            let (d0, d1, d2) =
                (&mut p0[start..start + new_w], &mut p1[start..start + new_w], &mut p2[start..start + new_w]);
            if yolox {
                // BGR, raw 0..255.
                for (x, px) in row.chunks_exact(3).enumerate() {
                    d0[x] = f32::from(px[2]);
                    d1[x] = f32::from(px[1]);
                    d2[x] = f32::from(px[0]);
                }
            } else {
                // RGB, 0..1.
                const K: f32 = 1.0 / 255.0;
                for (x, px) in row.chunks_exact(3).enumerate() {
                    d0[x] = f32::from(px[0]) * K;
                    d1[x] = f32::from(px[1]) * K;
                    d2[x] = f32::from(px[2]) * K;
                }
            }
        }
        Ok(lb)
    }

    /// Runs the model on one RGB frame: the configured classes at or above
    /// `min_confidence` after NMS (boxes in frame pixels, `ts_s` from the frame),
    /// most confident first, and the time each stage took.
    pub fn detect_rgb(&mut self, frame: &RgbFrame) -> Result<(Vec<Detection>, Timings), DetectorError> {
        let t0 = Instant::now();
        let lb = self.preprocess(frame)?;
        let t1 = Instant::now();

        let Self { session, tensor, grid, class_ids, head, input_w, input_h, min_confidence, .. } = self;
        let shape = [1usize, 3, *input_h as usize, *input_w as usize];
        let input = TensorRef::from_array_view((shape, tensor.as_slice()))
            .map_err(|e| DetectorError::Inference(e.to_string()))?;
        let outputs = session.run(ort::inputs![input]).map_err(|e| DetectorError::Inference(e.to_string()))?;
        // Index 0 exists: `Detector::new` checked the model has an output.
        let (out_shape, data) =
            outputs[0].try_extract_tensor::<f32>().map_err(|e| DetectorError::Inference(e.to_string()))?;
        let t2 = Instant::now();

        let dims: &[i64] = out_shape;
        let candidates = match head {
            YoloHead::Yolox => {
                let expected = grid.len() * (5 + COCO_CLASSES.len());
                if data.len() != expected {
                    return Err(DetectorError::Inference(format!(
                        "output {dims:?} has {} values, expected {expected}",
                        data.len()
                    )));
                }
                decode_yolox(data, grid, class_ids, *min_confidence)
            }
            YoloHead::Yolov8 => {
                let channels = 4 + COCO_CLASSES.len();
                let (channels_first, n) = match dims {
                    [1, c, n] if *c as usize == channels => (true, *n as usize),
                    [1, n, c] if *c as usize == channels => (false, *n as usize),
                    _ => return Err(DetectorError::Inference(format!("output {dims:?} is not [1, {channels}, N]"))),
                };
                if data.len() != n * channels {
                    return Err(DetectorError::Inference(format!("output {dims:?} has {} values", data.len())));
                }
                decode_yolov8(data, n, channels_first, class_ids, *min_confidence)
            }
        };
        drop(outputs);
        let kept = nms_per_class(candidates, self.nms_iou);
        let ts_s = frame.ts_s as f32;
        let detections = kept
            .into_iter()
            .map(|c| Detection {
                class: COCO_CLASSES[c.class].to_owned(),
                confidence: c.score,
                bbox: lb.to_frame(c.bbox, frame.width, frame.height),
                ts_s,
            })
            .filter(|d| d.bbox[2] > d.bbox[0] && d.bbox[3] > d.bbox[1])
            .collect();
        let t3 = Instant::now();
        Ok((detections, Timings { preprocess: t1 - t0, inference: t2 - t1, postprocess: t3 - t2 }))
    }
}

// ---------------------------------------------------------------------------
// One clip

/// How a clip is sampled and summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipSettings {
    pub sample_fps: f64,
    pub max_frames: u32,
    pub snapshot_max_size: u32,
    pub snapshot_quality: u8,
}

impl Default for ClipSettings {
    fn default() -> Self {
        Self {
            sample_fps: default_sample_fps(),
            max_frames: default_max_frames(),
            snapshot_max_size: SNAPSHOT_MAX_SIZE,
            snapshot_quality: SNAPSHOT_QUALITY,
        }
    }
}

/// Where the time of one clip went.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClipStats {
    /// Frames run through the model.
    pub frames: u32,
    /// Model stages, summed over the frames.
    pub timings: Timings,
    /// Wall time of the whole clip (decode, model, snapshot).
    pub total: Duration,
    /// Whether sampling stopped early because every configured class was seen.
    pub early_exit: bool,
}

/// Decodes `path`, runs sampled frames through `detector` (stopping once every
/// configured class was seen) and summarises: the best detection per class, and
/// a JPEG of the frame holding the most confident detection. Blocking.
pub fn run_clip(
    detector: &mut Detector,
    path: &Path,
    settings: &ClipSettings,
) -> Result<(FilterOutput, ClipStats), FilterError> {
    let start = Instant::now();
    let wanted = detector.class_ids.len();
    let mut best: HashMap<String, Detection> = HashMap::new();
    let mut best_frame: Option<(f32, RgbFrame)> = None;
    let mut stats = ClipStats::default();
    let mut failure = None;

    media::sample_frames(path, settings.sample_fps, settings.max_frames, &mut |frame| {
        let (detections, timings) = match detector.detect_rgb(&frame) {
            Ok(r) => r,
            Err(e) => {
                failure = Some(e);
                return false;
            }
        };
        stats.frames += 1;
        stats.timings += timings;
        let frame_best = detections.iter().map(|d| d.confidence).fold(0.0f32, f32::max);
        for d in detections {
            match best.get(&d.class) {
                Some(b) if b.confidence >= d.confidence => {}
                _ => {
                    best.insert(d.class.clone(), d);
                }
            }
        }
        if frame_best > 0.0 && best_frame.as_ref().is_none_or(|(c, _)| frame_best > *c) {
            best_frame = Some((frame_best, frame));
        }
        // Every configured class seen at >= min_confidence: nothing more to learn.
        let done = best.len() >= wanted;
        stats.early_exit = done;
        !done
    })
    .map_err(|source| FilterError::Media { path: path.display().to_string(), source })?;
    if let Some(e) = failure {
        return Err(FilterError::Inference(Box::new(e)));
    }

    let mut detections: Vec<Detection> = best.into_values().collect();
    detections.sort_by(|a, b| b.confidence.total_cmp(&a.confidence).then_with(|| a.class.cmp(&b.class)));
    let snapshot_jpeg = best_frame.and_then(|(_, frame)| {
        match media::encode_jpeg(&frame, settings.snapshot_max_size, settings.snapshot_quality) {
            Ok(jpeg) => Some(jpeg.bytes),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot encode the snapshot");
                None
            }
        }
    });
    let result = FilterResult {
        detected_classes: detections.iter().map(|d| d.class.clone()).collect(),
        confidence: detections.first().map_or(0.0, |d| d.confidence),
        model: detector.model_name().to_owned(),
        sampled_frames: stats.frames,
        detections,
    };
    stats.total = start.elapsed();
    tracing::info!(
        path = %path.display(),
        model = %result.model,
        frames = stats.frames,
        classes = ?result.detected_classes,
        confidence = result.confidence,
        early_exit = stats.early_exit,
        total_ms = stats.total.as_millis() as u64,
        inference_ms = stats.timings.inference.as_millis() as u64,
        "filter done"
    );
    Ok((FilterOutput { result, snapshot_jpeg }, stats))
}

// ---------------------------------------------------------------------------
// The filter: a worker thread owning the detector

struct Job {
    path: PathBuf,
    reply: oneshot::Sender<Result<FilterOutput, FilterError>>,
}

/// The `yolo` object filter.
pub struct YoloFilter {
    name: String,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for YoloFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YoloFilter").field("name", &self.name).finish_non_exhaustive()
    }
}

impl YoloFilter {
    /// Starts the worker thread that owns `detector`.
    pub fn start(detector: Detector, settings: ClipSettings) -> Result<Self, std::io::Error> {
        let name = detector.model_name().to_owned();
        // A few clips may queue; more wait in `detect` (backpressure).
        let (tx, mut rx) = mpsc::channel::<Job>(4);
        let worker = std::thread::Builder::new().name(format!("yolo-{name}")).spawn(move || {
            let mut detector = detector;
            while let Some(job) = rx.blocking_recv() {
                let result = catch_unwind(AssertUnwindSafe(|| run_clip(&mut detector, &job.path, &settings)))
                    .unwrap_or_else(|_| {
                        tracing::error!(path = %job.path.display(), "filter panicked on this clip");
                        Err(FilterError::Inference("the detector panicked".into()))
                    });
                // The caller may have given up waiting; nothing to do then.
                let _ = job.reply.send(result.map(|(output, _stats)| output));
            }
            tracing::debug!("yolo worker stopped");
        })?;
        Ok(Self { name, jobs: Mutex::new(Some(tx)), worker: Mutex::new(Some(worker)) })
    }
}

#[async_trait]
impl ObjectFilter for YoloFilter {
    fn name(&self) -> &str {
        &self.name
    }

    async fn detect(&self, video: &Path) -> Result<FilterOutput, FilterError> {
        let tx = self.jobs.lock().unwrap_or_else(|p| p.into_inner()).clone().ok_or(FilterError::WorkerGone)?;
        let (reply, answer) = oneshot::channel();
        tx.send(Job { path: video.to_path_buf(), reply }).await.map_err(|_| FilterError::WorkerGone)?;
        answer.await.map_err(|_| FilterError::WorkerGone)?
    }

    async fn shutdown(&self) {
        // Closing the queue lets the worker finish the clip in hand and stop.
        drop(self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take());
        let handle = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            let joined = tokio::task::spawn_blocking(move || handle.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::warn!(filter = %self.name, "yolo worker did not stop cleanly");
            }
        }
    }
}

/// Builds the `yolo` filter: resolves paths against the config's folder, loads
/// ONNX Runtime and the model, and starts the worker thread.
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
    let detector = Detector::new(&model, &library, &opts).map_err(|e| fail(Box::new(e)))?;
    let settings = ClipSettings { sample_fps: cfg.sample_fps, max_frames: cfg.max_frames, ..ClipSettings::default() };
    YoloFilter::start(detector, settings).map_err(|e| fail(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(class: usize, score: f32, bbox: [f32; 4]) -> Candidate {
        Candidate { class, score, bbox }
    }

    #[test]
    fn iou_of_simple_boxes() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert!((iou(&a, &a) - 1.0).abs() < 1e-6);
        assert_eq!(iou(&a, &[20.0, 20.0, 30.0, 30.0]), 0.0);
        // Half overlap: 50 / 150.
        assert!((iou(&a, &[5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
        // Degenerate boxes do not divide by zero.
        assert_eq!(iou(&[1.0, 1.0, 1.0, 1.0], &[1.0, 1.0, 1.0, 1.0]), 0.0);
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes_per_class() {
        let kept = nms_per_class(
            vec![
                cand(0, 0.6, [1.0, 1.0, 11.0, 11.0]),   // overlaps the 0.9 person: dropped
                cand(0, 0.9, [0.0, 0.0, 10.0, 10.0]),   // best person
                cand(16, 0.7, [0.0, 0.0, 10.0, 10.0]),  // a dog in the same place: other class, kept
                cand(0, 0.8, [50.0, 50.0, 60.0, 60.0]), // a second person elsewhere
                cand(0, 0.55, [5.0, 0.0, 15.0, 10.0]),  // IoU 1/3 with the best: under 0.45, kept
            ],
            0.45,
        );
        let summary: Vec<(usize, f32)> = kept.iter().map(|c| (c.class, c.score)).collect();
        assert_eq!(summary, vec![(0, 0.9), (0, 0.8), (16, 0.7), (0, 0.55)]);
    }

    #[test]
    fn letterbox_top_left_and_centred() {
        // 768x576 into 416: scale 416/768, 416x312, YOLOX pads below.
        let lb = Letterbox::new(768, 576, 416, 416, false);
        assert_eq!((lb.new_w, lb.new_h, lb.pad_x, lb.pad_y), (416, 312, 0, 0));
        let b = lb.to_frame([208.0, 104.0, 416.0, 312.0], 768, 576);
        assert!((b[0] - 384.0).abs() < 0.01 && (b[1] - 192.0).abs() < 0.01);
        assert!((b[2] - 768.0).abs() < 0.01 && (b[3] - 576.0).abs() < 0.01);

        // Centred: 52 px of padding above and below.
        let lb = Letterbox::new(768, 576, 416, 416, true);
        assert_eq!((lb.pad_x, lb.pad_y), (0, 52));
        let b = lb.to_frame([0.0, 52.0, 416.0, 364.0], 768, 576);
        assert!(b[1].abs() < 0.01 && (b[3] - 576.0).abs() < 0.01);

        // Portrait: padding on the right (top-left) or both sides (centred).
        let lb = Letterbox::new(300, 600, 640, 640, true);
        assert_eq!((lb.new_w, lb.new_h, lb.pad_x, lb.pad_y), (320, 640, 160, 0));
        // Boxes outside the image are clipped to the frame.
        let b = lb.to_frame([0.0, -10.0, 640.0, 700.0], 300, 600);
        assert_eq!(b, [0.0, 0.0, 300.0, 600.0]);
    }

    #[test]
    fn yolox_grid_matches_the_declared_outputs() {
        assert_eq!(yolox_grid(416, 416).len(), 3549);
        assert_eq!(yolox_grid(640, 640).len(), 8400);
        let g = yolox_grid(416, 416);
        // Row-major per stride: the second point is x + 1 on the stride-8 grid;
        // the stride-16 grid starts after 52².
        assert_eq!(g[1], GridPoint { gx: 1.0, gy: 0.0, stride: 8.0 });
        assert_eq!(g[52], GridPoint { gx: 0.0, gy: 1.0, stride: 8.0 });
        assert_eq!(g[52 * 52], GridPoint { gx: 0.0, gy: 0.0, stride: 16.0 });
        assert_eq!(g[3548], GridPoint { gx: 12.0, gy: 12.0, stride: 32.0 });
    }

    #[test]
    fn yolox_rows_decode_to_boxes() {
        let grid = yolox_grid(64, 64); // 8² + 4² + 2² = 84 points
        let mut data = vec![0.0f32; grid.len() * 85];
        // Point (gx 3, gy 2) of stride 8: centre (3.5 * 8, 2.5 * 8) = (28, 20), 16x8 box.
        let i = 2 * 8 + 3;
        let row = &mut data[i * 85..(i + 1) * 85];
        row[..5].copy_from_slice(&[0.5, 0.5, 2.0f32.ln(), 1.0f32.ln(), 0.9]);
        row[5] = 0.8; // person
        row[5 + 16] = 0.3; // dog: 0.27 overall, under the threshold
        let c = decode_yolox(&data, &grid, &[0, 16], 0.5);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].class, 0);
        assert!((c[0].score - 0.72).abs() < 1e-6);
        let expected = [20.0, 16.0, 36.0, 24.0];
        for (a, b) in c[0].bbox.iter().zip(expected) {
            assert!((a - b).abs() < 1e-4, "{:?}", c[0].bbox);
        }
        // Classes not configured are ignored even when they score high.
        assert!(decode_yolox(&data, &grid, &[16], 0.5).is_empty());
    }

    #[test]
    fn yolov8_rows_decode_in_both_layouts() {
        let n = 3;
        let channels = 84;
        let mut first = vec![0.0f32; channels * n];
        // Anchor 1: centre (100, 50), 20x10, class 2 (car) 0.9.
        for (k, v) in [(0, 100.0), (1, 50.0), (2, 20.0), (3, 10.0), (4 + 2, 0.9)] {
            first[k * n + 1] = v;
        }
        let mut last = vec![0.0f32; channels * n];
        for i in 0..n {
            for k in 0..channels {
                last[i * channels + k] = first[k * n + i];
            }
        }
        for (data, channels_first) in [(&first, true), (&last, false)] {
            let c = decode_yolov8(data, n, channels_first, &[0, 2], 0.5);
            assert_eq!(c, vec![cand(2, 0.9, [90.0, 45.0, 110.0, 55.0])]);
        }
    }

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
        ] {
            assert!(joined.contains(field), "missing {field} in:\n{joined}");
        }
        assert_eq!(issues.len(), 10, "{joined}");
    }

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
