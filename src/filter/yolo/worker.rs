//! One clip through the detector ([`run_clip`]: sampling, best detection per
//! class, snapshot, early stop) and the [`YoloFilter`]: detector worker threads,
//! each owning a model session, that serve clips and live cameras through one
//! detector [`Service`].

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::oneshot;

use super::config::{default_confirm_frames, default_max_frames, default_sample_fps};
use super::session::{Detector, Timings};
use crate::domain::FilterResult;
use crate::filter::service::{
    ClipJob, InferenceMeter, LiveDetector, LiveResult, LiveSettings, LiveWork, Service, Work,
};
use crate::filter::tracking::{EventTracker, TrackContext, box_change};
use crate::filter::{FilterError, FilterOutput, ObjectFilter, SNAPSHOT_MAX_SIZE, SNAPSHOT_QUALITY};
use crate::media::{self, RgbFrame};

// ---------------------------------------------------------------------------
// One clip

/// How a clip is sampled and summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipSettings {
    pub sample_fps: f64,
    pub max_frames: u32,
    pub snapshot_max_size: u32,
    pub snapshot_quality: u8,
    /// A decisive class seen in this many sampled frames ends sampling.
    pub confirm_frames: u32,
}

impl Default for ClipSettings {
    fn default() -> Self {
        Self {
            sample_fps: default_sample_fps(),
            max_frames: default_max_frames(),
            snapshot_max_size: SNAPSHOT_MAX_SIZE,
            snapshot_quality: SNAPSHOT_QUALITY,
            confirm_frames: default_confirm_frames(),
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
    /// Whether sampling stopped early (a decisive class confirmed, or every
    /// configured class seen).
    pub early_exit: bool,
    /// Zones and stationary-object tracking (motion in boxes included), summed
    /// over the frames.
    pub tracking: Duration,
}

/// Decodes `path`, runs sampled frames through `detector` and tracks the
/// objects with the camera's zones and memory (`tracking`; motion on a box is
/// measured between sampled frames). Summarises: the best detection per
/// tracked object, the classes seen and the classes that are a reason to
/// alert, and a JPEG of the frame holding the most confident reason (else the
/// most confident detection). Sampling stops once a `decisive` class was a
/// reason to alert in `confirm_frames` frames, or every configured class was.
/// `between` runs before each frame (the worker serves waiting live frames
/// there). Blocking.
pub fn run_clip(
    detector: &mut Detector,
    path: &Path,
    settings: &ClipSettings,
    decisive: &[String],
    tracking: &TrackContext,
    between: &mut dyn FnMut(&mut Detector),
) -> Result<(FilterOutput, ClipStats), FilterError> {
    let start = Instant::now();
    let wanted = detector.class_ids.len();
    let mut tracker = EventTracker::new(tracking.camera.clone());
    let mut reasons_seen: HashMap<String, u32> = HashMap::new();
    // The snapshot: (is a reason, confidence, frame).
    let mut best_frame: Option<(bool, f32, RgbFrame)> = None;
    let mut prev: Option<RgbFrame> = None;
    let mut size = (0, 0);
    let mut stats = ClipStats::default();
    let mut failure = None;

    media::sample_frames(path, settings.sample_fps, settings.max_frames, &mut |frame| {
        between(detector);
        let (mut detections, timings) = match detector.detect_rgb(&frame) {
            Ok(r) => r,
            Err(e) => {
                failure = Some(e);
                return false;
            }
        };
        stats.frames += 1;
        stats.timings += timings;
        let t0 = Instant::now();
        size = (frame.width, frame.height);
        let motion = |b: &[f32; 4]| prev.as_ref().and_then(|p| box_change(p, &frame, b));
        let reasons = tracker.observe(&mut detections, frame.width, frame.height, &motion, tracking.now_ms);
        stats.tracking += t0.elapsed();
        let mut classes: Vec<&str> =
            detections.iter().zip(&reasons).filter(|(_, r)| **r).map(|(d, _)| d.class.as_str()).collect();
        classes.sort_unstable();
        classes.dedup();
        for class in classes {
            *reasons_seen.entry(class.to_owned()).or_default() += 1;
        }
        let top_reason =
            detections.iter().zip(&reasons).filter(|(_, r)| **r).map(|(d, _)| d.confidence).fold(0.0f32, f32::max);
        let top = detections.iter().map(|d| d.confidence).fold(0.0f32, f32::max);
        let candidate = if top_reason > 0.0 { Some((true, top_reason)) } else { (top > 0.0).then_some((false, top)) };
        let better = candidate.filter(|(r, c)| best_frame.as_ref().is_none_or(|(br, bc, _)| (*r, *c) > (*br, *bc)));
        if let Some((r, c)) = better {
            best_frame = Some((r, c, frame.clone()));
        }
        prev = Some(frame);
        let confirmed =
            decisive.iter().any(|c| reasons_seen.get(c).is_some_and(|n| *n >= settings.confirm_frames.max(1)));
        let done = confirmed || reasons_seen.len() >= wanted;
        stats.early_exit = done;
        !done
    })
    .map_err(|source| FilterError::Media { path: path.display().to_string(), source })?;
    if let Some(e) = failure {
        return Err(FilterError::Inference(Box::new(e)));
    }

    let t0 = Instant::now();
    let tracked = tracker.finish(size.0, size.1, tracking.now_ms);
    stats.tracking += t0.elapsed();
    let snapshot_jpeg = best_frame.and_then(|(_, _, frame)| {
        match media::encode_jpeg(&frame, settings.snapshot_max_size, settings.snapshot_quality) {
            Ok(jpeg) => Some(jpeg.bytes),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot encode the snapshot");
                None
            }
        }
    });
    let result = FilterResult {
        confidence: tracked.detections.iter().map(|d| d.confidence).fold(0.0, f32::max),
        detected_classes: tracked.detected_classes,
        alert_classes: tracked.alert_classes,
        model: detector.model_name().to_owned(),
        sampled_frames: stats.frames,
        detections: tracked.detections,
    };
    stats.total = start.elapsed();
    tracing::info!(
        path = %path.display(),
        camera = %tracking.camera.camera(),
        model = %result.model,
        frames = stats.frames,
        classes = ?result.detected_classes,
        alert_classes = ?result.alert_classes,
        confidence = result.confidence,
        early_exit = stats.early_exit,
        total_ms = stats.total.as_millis() as u64,
        inference_ms = stats.timings.inference.as_millis() as u64,
        tracking_us = stats.tracking.as_micros() as u64,
        "filter done"
    );
    Ok((FilterOutput { result, snapshot_jpeg }, stats))
}

// ---------------------------------------------------------------------------
// The filter: detector workers serving the detector service

/// Runs one live frame through the model and sends the result back to its
/// camera (which may have gone; then nothing is sent).
fn serve_live(detector: &mut Detector, work: LiveWork, inference: &InferenceMeter) {
    let LiveWork { item, reply } = work;
    let detections = match catch_unwind(AssertUnwindSafe(|| detector.detect_rgb(&item.frame))) {
        Ok(Ok((detections, timings))) => {
            inference.record(timings.inference);
            detections
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "live detection failed on a frame");
            Vec::new()
        }
        Err(_) => {
            tracing::error!("the detector panicked on a live frame");
            Vec::new()
        }
    };
    let _ = reply.send(LiveResult { frame: item.frame, wall_ms: item.wall_ms, detections, motion: item.motion });
}

fn worker_loop(detector: &mut Detector, service: &Service, settings: &ClipSettings) {
    while let Some(work) = service.next() {
        match work {
            Work::Live(live) => serve_live(detector, live, &service.inference),
            Work::Clip(job) => {
                let mut between = |d: &mut Detector| {
                    while let Some(live) = service.next_live() {
                        serve_live(d, live, &service.inference);
                    }
                };
                let result = catch_unwind(AssertUnwindSafe(|| {
                    run_clip(detector, &job.path, settings, &job.decisive, &job.tracking, &mut between)
                }))
                .unwrap_or_else(|_| {
                    tracing::error!(path = %job.path.display(), "filter panicked on this clip");
                    Err(FilterError::Inference("the detector panicked".into()))
                });
                // The caller may have given up waiting; nothing to do then.
                if let Ok((_, stats)) = &result
                    && stats.frames > 0
                {
                    service.inference.record(stats.timings.inference / stats.frames);
                }
                let _ = job.reply.send(result.map(|(output, _stats)| output));
            }
        }
    }
}

/// The `yolo` object filter: `workers` threads, each owning a model session,
/// serving clips and live cameras through one [`Service`].
pub struct YoloFilter {
    name: String,
    service: Arc<Service>,
    live: LiveSettings,
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for YoloFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YoloFilter").field("name", &self.name).finish_non_exhaustive()
    }
}

impl YoloFilter {
    /// Starts one worker thread per detector (at least one).
    pub fn start(detectors: Vec<Detector>, settings: ClipSettings, live: LiveSettings) -> Result<Self, std::io::Error> {
        let name = detectors.first().map_or_else(String::new, |d| d.model_name().to_owned());
        let service = Service::new();
        let mut workers = Vec::new();
        for (i, mut detector) in detectors.into_iter().enumerate() {
            let (shared, settings) = (service.clone(), settings.clone());
            let handle = std::thread::Builder::new().name(format!("detector-{i}")).spawn(move || {
                worker_loop(&mut detector, &shared, &settings);
                tracing::debug!(worker = i, "detector worker stopped");
            });
            match handle {
                Ok(h) => workers.push(h),
                Err(e) => {
                    service.close();
                    return Err(e);
                }
            }
        }
        Ok(Self { name, service, live, workers: Mutex::new(workers) })
    }
}

#[async_trait]
impl ObjectFilter for YoloFilter {
    fn name(&self) -> &str {
        &self.name
    }

    async fn detect(
        &self,
        video: &Path,
        decisive: &[String],
        tracking: &TrackContext,
    ) -> Result<FilterOutput, FilterError> {
        let (reply, answer) = oneshot::channel();
        let job = ClipJob { path: video.to_path_buf(), decisive: decisive.to_vec(), tracking: tracking.clone(), reply };
        self.service.submit_clip(job).map_err(|_| FilterError::WorkerGone)?;
        answer.await.map_err(|_| FilterError::WorkerGone)?
    }

    fn live(&self) -> Option<LiveDetector> {
        Some(LiveDetector::new(self.service.clone(), self.live.clone()))
    }

    async fn shutdown(&self) {
        // Closing the service lets the workers finish what is queued and stop.
        self.service.close();
        let handles: Vec<_> = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        let joined = tokio::task::spawn_blocking(move || handles.into_iter().all(|h| h.join().is_ok())).await;
        if !matches!(joined, Ok(true)) {
            tracing::warn!(filter = %self.name, "a detector worker did not stop cleanly");
        }
    }
}
