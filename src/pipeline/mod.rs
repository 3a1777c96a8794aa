//! The orchestrator: per clip, upload ‖ filter → VLM → policy → notify, each
//! stage result committed to the store with its event. Knows only traits, the
//! store and the domain.

mod outbox;
mod stage;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, error, info, info_span, warn};

pub use stage::{AttemptError, StageError, StageOutcome};

use crate::analyzer::VlmAnalyzer;
use crate::backoff::Backoff;
use crate::clock::SharedClock;
use crate::config::{ConcurrencyConfig, RetryConfig, RunMode};
use crate::domain::{
    Alert, AnalysisResult, Clip, ClipId, ClipRecord, EventKind, FilterResult, Quarantine, Stage, StageStatus,
    UnixMillis, rfc3339,
};
use crate::filter::ObjectFilter;
use crate::notify::multiplex::Notifiers;
use crate::policy::AlertPolicy;
use crate::storage::StorageBackend;
use crate::store::{OutboxEntry, Store, StoreError};

/// When the VLM runs.
#[derive(Debug, Clone)]
pub struct VlmGate {
    pub run_mode: RunMode,
    pub trigger_classes: Vec<String>,
}

impl VlmGate {
    pub fn should_run(&self, filter: &FilterResult) -> bool {
        match self.run_mode {
            RunMode::Never => false,
            RunMode::Always => true,
            RunMode::TriggerOnly => filter.detected_classes.iter().any(|c| self.trigger_classes.contains(c)),
        }
    }
}

/// Where an uploaded clip is.
#[derive(Debug, Clone)]
struct Uploaded {
    storage_uri: String,
    view_url: Option<String>,
}

/// The object filter's result, with the alert snapshot's path.
#[derive(Debug, Clone)]
struct Filtered {
    result: FilterResult,
    snapshot_path: Option<String>,
}

/// The parts a pipeline is made of.
pub struct Parts {
    pub store: Store,
    pub storage: Arc<dyn StorageBackend>,
    pub filter: Arc<dyn ObjectFilter>,
    pub analyzer: Option<Arc<dyn VlmAnalyzer>>,
    pub vlm_gate: VlmGate,
    pub policy: Arc<dyn AlertPolicy>,
    pub notifiers: Notifiers,
    pub retry: RetryConfig,
    pub concurrency: ConcurrencyConfig,
    /// Where alert snapshots are written.
    pub snapshots_dir: PathBuf,
    /// Dates records and alerts, ages notifications against their TTL, times
    /// the loop's heartbeat.
    pub clock: SharedClock,
}

/// Counters for health and metrics.
#[derive(Default)]
pub struct Stats {
    pub clips_received: AtomicU64,
    pub clips_completed: AtomicU64,
    pub clips_failed: AtomicU64,
    pub clips_quarantined: AtomicU64,
    pub alerts_delivered: AtomicU64,
    pub alerts_expired: AtomicU64,
}

pub struct Pipeline {
    parts: Parts,
    global: Semaphore,
    upload_slots: Semaphore,
    filter_slots: Semaphore,
    vlm_slots: Semaphore,
    in_flight: Mutex<HashSet<ClipId>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    outbox_wake: tokio::sync::Notify,
    /// When the pipeline's own loop last ran (the clock's monotonic time, in ms):
    /// a wedged pipeline stops updating it.
    heartbeat_ms: AtomicU64,
    /// Delays between stage attempts and between notification attempts.
    schedule: Backoff,
    pub stats: Stats,
}

/// Removes a clip from the in-flight set when its task ends, however it ends.
struct InFlight<'a>(&'a Pipeline, ClipId);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.0.in_flight.lock() {
            set.remove(&self.1);
        }
    }
}

impl Pipeline {
    pub fn new(parts: Parts, shutdown: CancellationToken) -> Arc<Self> {
        let c = &parts.concurrency;
        Arc::new(Self {
            global: Semaphore::new(c.max_clips_in_flight),
            upload_slots: Semaphore::new(c.upload_workers),
            filter_slots: Semaphore::new(c.filter_workers),
            vlm_slots: Semaphore::new(c.vlm_workers),
            schedule: parts.retry.schedule(),
            heartbeat_ms: AtomicU64::new(millis(parts.clock.monotonic())),
            parts,
            in_flight: Mutex::new(HashSet::new()),
            tasks: TaskTracker::new(),
            shutdown,
            outbox_wake: tokio::sync::Notify::new(),
            stats: Stats::default(),
        })
    }

    pub fn store(&self) -> &Store {
        &self.parts.store
    }

    pub fn clock(&self) -> &SharedClock {
        &self.parts.clock
    }

    fn now(&self) -> UnixMillis {
        self.parts.clock.now_ms()
    }

    /// The pipeline's own loop is running now.
    fn beat(&self) {
        self.heartbeat_ms.store(millis(self.parts.clock.monotonic()), Ordering::Relaxed);
    }

    /// How long ago the pipeline's own loop last ran.
    pub fn heartbeat_age(&self) -> Duration {
        let last = Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed));
        self.parts.clock.monotonic().saturating_sub(last)
    }

    pub fn notifiers(&self) -> &Notifiers {
        &self.parts.notifiers
    }

    pub fn storage(&self) -> &Arc<dyn StorageBackend> {
        &self.parts.storage
    }

    /// The handle sources use to hand clips in.
    pub fn sink(self: &Arc<Self>) -> ClipSink {
        ClipSink { pipeline: self.clone() }
    }

    /// Number of clips being processed now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Starts the background loops (notification outbox, upload retry) and
    /// resumes every clip the store says is unfinished, newest first.
    pub async fn start(self: &Arc<Self>, recordings_dir: &Path) -> Result<usize, StoreError> {
        let me = self.clone();
        self.tasks.spawn(async move { me.outbox_loop().await });
        let me = self.clone();
        self.tasks.spawn(async move { me.upload_retry_loop().await });

        let adopted = self.adopt_orphans(recordings_dir).await?;
        if adopted > 0 {
            info!(adopted, "adopted clip files that had no record");
        }
        let pending = self.parts.store.run(|s| s.unfinished_clips()).await?;
        let n = pending.len();
        if n > 0 {
            info!(clips = n, "resuming unfinished clips, newest first");
        }
        for record in pending {
            self.spawn_clip(record.clip.clip_id);
        }
        Ok(n)
    }

    /// Files `<recordings>/<camera>/<clip>.mp4` with no record (a crash between
    /// the rename and the commit) get a record now.
    async fn adopt_orphans(&self, recordings_dir: &Path) -> Result<usize, StoreError> {
        let dir = recordings_dir.to_path_buf();
        let clock = self.parts.clock.clone();
        self.parts
            .store
            .run(move |store| {
                let mut adopted = 0;
                let Ok(cams) = std::fs::read_dir(&dir) else { return Ok(0) };
                for cam in cams.filter_map(Result::ok).filter(|e| e.path().is_dir()) {
                    let camera = cam.file_name().to_string_lossy().into_owned();
                    let Ok(files) = std::fs::read_dir(cam.path()) else { continue };
                    for f in files.filter_map(Result::ok) {
                        let path = f.path();
                        if path.extension().is_none_or(|e| e != "mp4") {
                            continue;
                        }
                        let Some(stem) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
                            continue;
                        };
                        if store.get_clip(&stem)?.is_some() {
                            continue;
                        }
                        let mtime = f
                            .metadata()
                            .and_then(|m| m.modified())
                            .map(|t| chrono::DateTime::<chrono::Utc>::from(t).timestamp_millis())
                            .unwrap_or_else(|_| clock.now_ms());
                        let clip = Clip {
                            clip_id: ClipId(stem),
                            camera: camera.as_str().into(),
                            local_path: path.display().to_string(),
                            start_ms: mtime,
                            end_ms: mtime,
                            source_backend: "recovered".into(),
                        };
                        if store.write(|w| w.insert_clip(&ClipRecord::new(clip)))? {
                            adopted += 1;
                        }
                    }
                }
                Ok(adopted)
            })
            .await
    }

    /// Processes a clip in the background (once: a clip already in flight is not started twice).
    pub fn spawn_clip(self: &Arc<Self>, id: ClipId) {
        if self.shutdown.is_cancelled() {
            return;
        }
        let fresh = self.in_flight.lock().map(|mut set| set.insert(id.clone())).unwrap_or(false);
        if !fresh {
            return;
        }
        let me = self.clone();
        let span = info_span!("clip", clip_id = %id, camera = tracing::field::Empty);
        self.tasks.spawn(
            async move {
                let _guard = InFlight(&me, id.clone());
                let Ok(_permit) = me.global.acquire().await else { return };
                if me.shutdown.is_cancelled() {
                    return;
                }
                if let Err(e) = me.process(&id).await {
                    error!(error = %crate::telemetry::chain(&e), "clip processing stopped; it resumes on next start");
                }
            }
            .instrument(span),
        );
    }

    /// Stops taking clips, waits up to `grace` for in-flight work, then leaves the
    /// rest resumable, and shuts the plugins down.
    pub async fn shutdown(&self, grace: Duration) {
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_err() {
            warn!(in_flight = self.in_flight(), "in-flight clips did not finish in time; they resume on next start");
        }
        self.parts.filter.shutdown().await;
        if let Some(a) = &self.parts.analyzer {
            a.shutdown().await;
        }
        self.parts.storage.shutdown().await;
        self.parts.notifiers.shutdown().await;
    }

    /// The per-clip flow. Errors here are store failures: stage failures are
    /// recorded in the clip's journal and handled as the rules say.
    async fn process(self: &Arc<Self>, id: &ClipId) -> Result<(), StoreError> {
        let key = id.0.clone();
        let Some(record) = self.parts.store.run(move |s| s.get_clip(&key)).await? else {
            warn!("no record for clip; nothing to do");
            return Ok(());
        };
        if !record.needs_processing() {
            return Ok(());
        }
        let clip = record.clip.clone();
        let camera = clip.camera.clone();
        tracing::Span::current().record("camera", camera.as_str());
        info!(camera = %camera, path = %clip.local_path, "processing clip");

        // Upload ‖ filter; either may be done already when resuming.
        let (upload, filter) = tokio::join!(self.upload_stage(&record), self.filter_stage(&record));
        let upload = match upload? {
            StageOutcome::Done(u) => Some(u),
            // Degrades: the alert goes out without a link.
            StageOutcome::Failed(_) => None,
            StageOutcome::Interrupted => return Ok(()),
        };
        let Filtered { result: filter, snapshot_path } = match filter? {
            StageOutcome::Done(f) => f,
            StageOutcome::Failed(e) => {
                error!(camera = %camera, error = %crate::telemetry::chain(&e), "filter failed; the clip ends in error");
                self.complete(&clip, |_| {}).await?;
                self.stats.clips_failed.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            StageOutcome::Interrupted => return Ok(()),
        };

        // VLM, when the gate says so.
        let analysis = match self.vlm_stage(&record, &filter).await? {
            StageOutcome::Done(a) => Some(a),
            // Degrades: the policy decides on the filter alone.
            StageOutcome::Skipped(_) | StageOutcome::Failed(_) => None,
            StageOutcome::Interrupted => return Ok(()),
        };

        // Policy.
        let decision = self.parts.policy.decide(&camera, &filter, analysis.as_ref());
        info!(camera = %camera, notify = decision.notify, reason = %decision.reason, "alert decision");
        let notifiers = self.parts.notifiers.names();
        if !decision.notify || notifiers.is_empty() {
            let reason = if decision.notify { "no notifiers configured".to_owned() } else { decision.reason.clone() };
            let d = decision.clone();
            let now = self.now();
            self.commit(
                &clip,
                vec![
                    EventKind::AlertDecided { notify: d.notify, reason: d.reason.clone() },
                    EventKind::StageSkipped { stage: Stage::Notify, reason },
                    EventKind::ClipCompleted,
                ],
                move |r| {
                    r.decision = Some(d);
                    r.notify.status = StageStatus::Skipped;
                    r.completed_ms = Some(now);
                },
            )
            .await?;
            self.stats.clips_completed.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }

        // Notify through the outbox: queued durably with the decision, delivered
        // by the outbox loop (now, and again after failures until the TTL).
        let alert = Alert {
            clip_id: clip.clip_id.clone(),
            camera_name: camera.clone(),
            storage_uri: upload.as_ref().map(|u| u.storage_uri.clone()),
            view_url: upload.as_ref().and_then(|u| u.view_url.clone()),
            risk_level: analysis.as_ref().map(|a| a.risk_level),
            activity_type: analysis.as_ref().map(|a| a.activity_type.clone()),
            notify_reason: decision.reason.clone(),
            summary: analysis.as_ref().map(|a| a.summary.clone()),
            ts: rfc3339(self.now()),
            dedupe_key: clip.clip_id.0.clone(),
            upload_failed: upload.is_none(),
            detected_classes: filter.detected_classes.clone(),
            snapshot_path,
        };
        let now = self.now();
        let ttl_ms = (self.parts.retry.notify_ttl_s as i64).saturating_mul(1000);
        let clip_for_write = clip.clone();
        let d = decision.clone();
        self.parts
            .store
            .run(move |s| {
                s.write(|w| {
                    for name in &notifiers {
                        w.enqueue_notification(&OutboxEntry {
                            clip_id: clip_for_write.clip_id.clone(),
                            notifier: name.clone(),
                            alert: alert.clone(),
                            created_ms: now,
                            attempts: 0,
                            next_attempt_ms: now,
                            expires_ms: now.saturating_add(ttl_ms),
                            last_error: None,
                        })?;
                    }
                    w.update_clip(
                        clip_for_write.clip_id.as_str(),
                        [
                            EventKind::AlertDecided { notify: true, reason: d.reason.clone() },
                            EventKind::StageStarted { stage: Stage::Notify, attempt: 1 },
                            EventKind::ClipCompleted,
                        ],
                        |r| {
                            r.decision = Some(d);
                            r.notify.status = StageStatus::Running;
                            r.notify.started_ms = Some(now);
                            r.completed_ms = Some(now);
                        },
                    )
                })
            })
            .await?;
        self.stats.clips_completed.fetch_add(1, Ordering::Relaxed);
        self.outbox_wake.notify_one();
        Ok(())
    }

    /// Upload stage: [`StageOutcome::Failed`] degrades the clip (the alert goes
    /// without a link; the upload is retried in the background).
    async fn upload_stage(&self, record: &ClipRecord) -> Result<StageOutcome<Uploaded>, StoreError> {
        if record.upload.status == StageStatus::Ok {
            let storage_uri = record.storage_uri.clone().unwrap_or_default();
            return Ok(StageOutcome::Done(Uploaded { storage_uri, view_url: record.view_url.clone() }));
        }
        let clip = &record.clip;
        let storage = self.parts.storage.clone();
        let result = self
            .run_stage(clip, Stage::Upload, &self.upload_slots, || {
                let storage = storage.clone();
                let clip = clip.clone();
                async move {
                    let path = PathBuf::from(&clip.local_path);
                    storage.put(&clip, &path).await.map_err(|e| AttemptError::new(true, e))
                }
            })
            .await?;
        Ok(match result {
            StageOutcome::Done(obj) => {
                let uploaded = Uploaded { storage_uri: obj.storage_uri.clone(), view_url: obj.view_url.clone() };
                let now = self.now();
                self.commit(clip, vec![EventKind::StageSucceeded { stage: Stage::Upload }], move |r| {
                    r.upload.status = StageStatus::Ok;
                    r.upload.finished_ms = Some(now);
                    r.upload.last_error = None;
                    r.storage_uri = Some(obj.storage_uri);
                    r.view_url = obj.view_url;
                })
                .await?;
                StageOutcome::Done(uploaded)
            }
            StageOutcome::Failed(e) => {
                warn!(camera = %clip.camera, error = %crate::telemetry::chain(&e), "upload failed; alert goes out without a link, upload retried in the background");
                StageOutcome::Failed(e)
            }
            StageOutcome::Interrupted => StageOutcome::Interrupted,
        })
    }

    /// Filter stage: the result and the snapshot's path; [`StageOutcome::Failed`]
    /// ends the clip in error.
    async fn filter_stage(&self, record: &ClipRecord) -> Result<StageOutcome<Filtered>, StoreError> {
        if record.filter.status == StageStatus::Ok
            && let Some(f) = &record.filter_result
        {
            return Ok(StageOutcome::Done(Filtered { result: f.clone(), snapshot_path: record.snapshot_path.clone() }));
        }
        let clip = &record.clip;
        let filter = self.parts.filter.clone();
        let result = self
            .run_stage(clip, Stage::Filter, &self.filter_slots, || {
                let filter = filter.clone();
                let path = PathBuf::from(&clip.local_path);
                async move { filter.detect(&path).await.map_err(|e| AttemptError::new(e.is_transient(), e)) }
            })
            .await?;
        let output = match result {
            StageOutcome::Done(o) => o,
            StageOutcome::Failed(e) => return Ok(StageOutcome::Failed(e)),
            StageOutcome::Interrupted => return Ok(StageOutcome::Interrupted),
        };
        let snapshot_path = match &output.snapshot_jpeg {
            Some(jpeg) => self.write_snapshot(clip, jpeg).await,
            None => None,
        };
        let (fr, snap) = (output.result.clone(), snapshot_path.clone());
        info!(camera = %clip.camera, classes = ?fr.detected_classes, confidence = fr.confidence, frames = fr.sampled_frames, "filter done");
        let now = self.now();
        self.commit(clip, vec![EventKind::StageSucceeded { stage: Stage::Filter }], move |r| {
            r.filter.status = StageStatus::Ok;
            r.filter.finished_ms = Some(now);
            r.filter.last_error = None;
            r.filter_result = Some(fr);
            r.snapshot_path = snap;
        })
        .await?;
        Ok(StageOutcome::Done(Filtered { result: output.result, snapshot_path }))
    }

    async fn write_snapshot(&self, clip: &Clip, jpeg: &[u8]) -> Option<String> {
        let path = self.parts.snapshots_dir.join(format!("{}.jpg", clip.clip_id));
        let (p, bytes) = (path.clone(), jpeg.to_vec());
        match tokio::task::spawn_blocking(move || crate::fsutil::write_durable(&p, &bytes)).await {
            Ok(Ok(())) => Some(path.display().to_string()),
            Ok(Err(e)) => {
                warn!(camera = %clip.camera, path = %path.display(), error = %e, "cannot write snapshot; alert goes without it");
                None
            }
            Err(e) => {
                warn!(error = %e, "snapshot task failed");
                None
            }
        }
    }

    /// VLM stage: the analysis, or [`StageOutcome::Skipped`] with the reason
    /// when the gate says no; [`StageOutcome::Failed`] degrades the clip (the
    /// policy decides without analysis).
    async fn vlm_stage(
        &self,
        record: &ClipRecord,
        filter: &FilterResult,
    ) -> Result<StageOutcome<AnalysisResult, String>, StoreError> {
        if record.vlm.status == StageStatus::Ok
            && let Some(a) = &record.analysis
        {
            return Ok(StageOutcome::Done(a.clone()));
        }
        let clip = &record.clip;
        let skip_reason = match &self.parts.analyzer {
            None => Some("no VLM configured".to_owned()),
            Some(_) if !self.parts.vlm_gate.should_run(filter) => Some(format!(
                "run_mode {:?}: no trigger class in {:?}",
                self.parts.vlm_gate.run_mode, filter.detected_classes
            )),
            Some(_) => None,
        };
        let Some(analyzer) = self.parts.analyzer.clone().filter(|_| skip_reason.is_none()) else {
            let reason = skip_reason.unwrap_or_default();
            let event = EventKind::StageSkipped { stage: Stage::Vlm, reason: reason.clone() };
            self.commit(clip, vec![event], |r| {
                r.vlm.status = StageStatus::Skipped;
            })
            .await?;
            return Ok(StageOutcome::Skipped(reason));
        };
        let result = self
            .run_stage(clip, Stage::Vlm, &self.vlm_slots, || {
                let analyzer = analyzer.clone();
                let (clip, filter) = (clip.clone(), filter.clone());
                async move { analyzer.analyze(&clip, &filter).await.map_err(|e| AttemptError::new(e.is_transient(), e)) }
            })
            .await?;
        Ok(match result {
            StageOutcome::Done(a) => {
                info!(camera = %clip.camera, risk = %a.risk_level, activity = %a.activity_type, "analysis done");
                let stored = a.clone();
                let now = self.now();
                self.commit(clip, vec![EventKind::StageSucceeded { stage: Stage::Vlm }], move |r| {
                    r.vlm.status = StageStatus::Ok;
                    r.vlm.finished_ms = Some(now);
                    r.vlm.last_error = None;
                    r.analysis = Some(stored);
                })
                .await?;
                StageOutcome::Done(a)
            }
            StageOutcome::Failed(e) => {
                warn!(camera = %clip.camera, error = %crate::telemetry::chain(&e), "VLM failed; deciding without analysis");
                StageOutcome::Failed(e)
            }
            StageOutcome::Interrupted => StageOutcome::Interrupted,
        })
    }

    /// Commits a change to a clip record with its events, off the async workers.
    async fn commit(
        &self,
        clip: &Clip,
        events: Vec<EventKind>,
        change: impl FnOnce(&mut ClipRecord) + Send + 'static,
    ) -> Result<ClipRecord, StoreError> {
        let id = clip.clip_id.0.clone();
        self.parts.store.run(move |s| s.write(|w| w.update_clip(&id, events, change))).await
    }

    async fn complete(
        &self,
        clip: &Clip,
        change: impl FnOnce(&mut ClipRecord) + Send + 'static,
    ) -> Result<(), StoreError> {
        let now = self.now();
        self.commit(clip, vec![EventKind::ClipCompleted], move |r| {
            change(r);
            r.completed_ms = Some(now);
        })
        .await
        .map(|_| ())
    }

    /// Background: uploads that failed are retried until they succeed.
    async fn upload_retry_loop(self: Arc<Self>) {
        let every = Duration::from_secs(self.parts.retry.upload_retry_interval_s.max(1));
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let records = match self.parts.store.run(|s| s.all_clips()).await {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %crate::telemetry::chain(&e), "upload retry: cannot read the store");
                    continue;
                }
            };
            for record in records
                .into_iter()
                .filter(|r| r.completed_ms.is_some() && r.quarantine.is_none() && r.upload.status == StageStatus::Error)
            {
                if self.shutdown.is_cancelled() {
                    return;
                }
                let clip = record.clip.clone();
                let Ok(_slot) = self.upload_slots.acquire().await else { return };
                match self.parts.storage.put(&clip, Path::new(&clip.local_path)).await {
                    Ok(obj) => {
                        info!(camera = %clip.camera, clip_id = %clip.clip_id, uri = %obj.storage_uri, "background upload succeeded");
                        let now = self.now();
                        let res = self
                            .commit(&clip, vec![EventKind::StageSucceeded { stage: Stage::Upload }], move |r| {
                                r.upload.status = StageStatus::Ok;
                                r.upload.attempts += 1;
                                r.upload.finished_ms = Some(now);
                                r.upload.last_error = None;
                                r.storage_uri = Some(obj.storage_uri);
                                r.view_url = obj.view_url;
                            })
                            .await;
                        if let Err(e) = res {
                            warn!(error = %crate::telemetry::chain(&e), "cannot record background upload");
                        }
                    }
                    Err(e) => {
                        warn!(camera = %clip.camera, clip_id = %clip.clip_id, error = %crate::telemetry::chain(&e), "background upload failed again");
                    }
                }
            }
        }
    }
}

/// Milliseconds of a monotonic reading, for an atomic.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What sources use to hand in clips: commits the record, then queues the clip.
#[derive(Clone)]
pub struct ClipSink {
    pipeline: Arc<Pipeline>,
}

impl ClipSink {
    /// Records a finished clip (status `queued_local`) and starts its processing.
    /// Returns false when a clip with that id was recorded already.
    pub async fn submit(&self, clip: Clip) -> Result<bool, StoreError> {
        let id = clip.clip_id.clone();
        let record = ClipRecord::new(clip);
        let fresh = self.pipeline.parts.store.run(move |s| s.write(|w| w.insert_clip(&record))).await?;
        if fresh {
            self.pipeline.stats.clips_received.fetch_add(1, Ordering::Relaxed);
            self.pipeline.spawn_clip(id);
        }
        Ok(fresh)
    }

    /// Records a clip file that could not be read and was moved aside, so that it
    /// shows in `clips list` with the reason.
    pub async fn quarantined(&self, clip: Clip, reason: String, moved_to: PathBuf) -> Result<(), StoreError> {
        let mut record = ClipRecord::new(clip);
        record.clip.local_path = moved_to.display().to_string();
        record.quarantine = Some(Quarantine { reason: reason.clone(), moved_to: moved_to.display().to_string() });
        let clip = record.clip.clone();
        self.pipeline
            .parts
            .store
            .run(move |s| {
                s.write(|w| {
                    if w.insert_clip(&record)? {
                        w.update_clip(clip.clip_id.as_str(), [EventKind::Quarantined { reason }], |_| {})?;
                    }
                    Ok(())
                })
            })
            .await?;
        self.pipeline.stats.clips_quarantined.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub fn store(&self) -> &Store {
        &self.pipeline.parts.store
    }

    /// Whether the daemon is stopping.
    pub fn is_shutting_down(&self) -> bool {
        self.pipeline.shutdown.is_cancelled()
    }
}

#[cfg(test)]
mod tests;
