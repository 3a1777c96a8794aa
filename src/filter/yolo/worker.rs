//! One clip through the detector ([`run_clip`]: sampling, best detection per
//! class, snapshot) and the [`YoloFilter`]: a worker thread that owns the
//! detector and takes clips from the async side.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use super::config::{default_max_frames, default_sample_fps};
use super::session::{Detector, Timings};
use crate::domain::{Detection, FilterResult};
use crate::filter::{FilterError, FilterOutput, ObjectFilter};
use crate::media::{self, RgbFrame};

/// Longer side and quality of the snapshot JPEG.
pub const SNAPSHOT_MAX_SIZE: u32 = 1280;
pub const SNAPSHOT_QUALITY: u8 = 85;

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
