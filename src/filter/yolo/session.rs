//! The ONNX Runtime side: the process-wide environment, execution providers,
//! and the [`Detector`] (one session, its input tensor and buffers) that turns an
//! RGB frame into detections.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider as _, ExecutionProviderDispatch};
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::TensorRef;

use super::config::{
    ExecutionProvider, YoloHead, default_classes, default_intra_threads, default_min_confidence, default_nms_iou,
};
use super::postprocess::{
    COCO_CLASSES, GridPoint, Letterbox, class_index, decode_yolov8, decode_yolox, nms_per_class, yolox_grid,
};
use crate::domain::Detection;
use crate::media::{ResizeQuality, RgbFrame, RgbResizer};

const PAD_VALUE: u8 = 114;

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
    /// COCO indices of the classes reported.
    pub(super) class_ids: Vec<usize>,
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
        frame.check().map_err(DetectorError::Frame)?;
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
            .map(|c| {
                Detection::new(COCO_CLASSES[c.class], c.score, lb.to_frame(c.bbox, frame.width, frame.height), ts_s)
            })
            .filter(|d| d.bbox[2] > d.bbox[0] && d.bbox[3] > d.bbox[1])
            .collect();
        let t3 = Instant::now();
        crate::metrics::global().observe_inference((t2 - t1).as_secs_f64());
        Ok((detections, Timings { preprocess: t1 - t0, inference: t2 - t1, postprocess: t3 - t2 }))
    }
}
