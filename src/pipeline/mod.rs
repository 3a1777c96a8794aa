//! The orchestrator: per clip, upload ‖ filter → VLM → policy → notify, each
//! stage result committed to the store with its event. Knows only traits, the
//! store, the domain and the cameras' runtime controls.

mod artifacts;
pub mod cooldown;
mod flow;
mod outbox;
mod recovery;
mod sink;
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

pub use artifacts::Reanalysis;
pub use sink::{ClipSink, Sighting};
pub use stage::{AttemptError, StageError, StageOutcome};

use crate::analyzer::VlmAnalyzer;
use crate::backoff::Backoff;
use crate::clock::SharedClock;
use crate::config::{ConcurrencyConfig, RetryConfig, RunMode};
use crate::controls::Controls;
use crate::domain::{Alert, Clip, ClipId, ClipRecord, EventKind, FilterResult, UnixMillis};
use crate::filter::ObjectFilter;
use crate::notify::multiplex::Notifiers;
use crate::policy::AlertPolicy;
use crate::storage::StorageBackend;
use crate::store::{OutboxEntry, Store, StoreError};

/// Age after which an early alert whose clip never arrived is forgotten.
const ORPHAN_EARLY_ALERT: Duration = Duration::from_secs(24 * 3600);

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
            // Stationary objects and objects outside the camera's zones trigger nothing.
            RunMode::TriggerOnly => filter.alert_classes.iter().any(|c| self.trigger_classes.contains(c)),
        }
    }
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
    /// Where clips whose recording is gone are fetched back from the storage.
    pub fetched_dir: PathBuf,
    /// Dates records and alerts, ages notifications against their TTL, times
    /// the loop's heartbeat.
    pub clock: SharedClock,
    /// The cameras' runtime switches (detection, alerts, minimum risk level).
    pub controls: Controls,
    /// Every camera's zones and memory of stationary objects (shared with its
    /// live detector).
    pub tracking: Arc<crate::filter::tracking::Tracking>,
}

/// Counters for health and metrics (the daemon registers them for `/metrics`).
pub type Stats = crate::metrics::ClipCounters;

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
    /// Notified whenever a new clip lands (retention runs a pass then).
    landed: Arc<tokio::sync::Notify>,
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
            landed: Arc::default(),
            stats: Stats::default(),
        })
    }

    /// Notified whenever a new clip lands.
    pub fn clip_landed(&self) -> Arc<tokio::sync::Notify> {
        self.landed.clone()
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
        // A recording lasts at most an hour (max_clip_s); an early alert a day
        // old whose clip never arrived lost its recording.
        let before = self.now() - ORPHAN_EARLY_ALERT.as_millis() as i64;
        let forgotten = self.parts.store.run(move |s| s.write(|w| w.forget_orphan_early_alerts(before))).await?;
        if !forgotten.is_empty() {
            warn!(
                early_alerts = forgotten.len(),
                "forgot early alerts whose recording was lost; no final alert follows them"
            );
        }
        // Alerts whose cooldown ended while the daemon was down go; those still
        // open are updated by the next clips as before the restart.
        let (policy, now) = (self.parts.policy.clone(), self.now());
        let closed = self
            .parts
            .store
            .run(move |s| {
                s.write(|w| {
                    w.forget_closed_alerts(|camera, a| {
                        let cooldown_ms = (policy.cooldown_s(&camera.into()) as i64).saturating_mul(1000);
                        cooldown::is_open(a, now, cooldown_ms)
                    })
                })
            })
            .await?;
        if closed > 0 {
            info!(closed, "forgot alerts whose cooldown ended");
        }
        // Their snapshots belong to no clip: nothing else would ever delete them.
        for id in &forgotten {
            let _ = tokio::fs::remove_file(self.parts.snapshots_dir.join(format!("{id}.jpg"))).await;
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

    /// One outbox entry per notifier for `alert`, due now.
    fn outbox_entries(&self, notifiers: &[String], alert: &Alert, now: UnixMillis) -> Vec<OutboxEntry> {
        outbox_entries(notifiers, alert, now, self.notify_ttl_ms())
    }

    /// How long a notification is retried.
    fn notify_ttl_ms(&self) -> i64 {
        (self.parts.retry.notify_ttl_s as i64).saturating_mul(1000)
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
}

/// One outbox entry per notifier for `alert`, due now, kept for `ttl_ms`.
fn outbox_entries(notifiers: &[String], alert: &Alert, now: UnixMillis, ttl_ms: i64) -> Vec<OutboxEntry> {
    notifiers
        .iter()
        .map(|name| OutboxEntry {
            clip_id: alert.clip_id.clone(),
            notifier: name.clone(),
            alert: alert.clone(),
            created_ms: now,
            attempts: 0,
            next_attempt_ms: now,
            expires_ms: now.saturating_add(ttl_ms),
            last_error: None,
        })
        .collect()
}

/// Milliseconds of a monotonic reading, for an atomic.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
