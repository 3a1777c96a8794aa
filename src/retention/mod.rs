//! The disk budget and the store's bounds.
//!
//! Every byte HomeSec keeps on the data partition (recordings with their VLM
//! frames, snapshots, quarantine, and a local storage's archive when it lives on
//! that partition) is counted once, hard links once ([`disk`]). A pass deletes
//! the oldest clips that may go until the bytes are within
//! `max_local_size_bytes` and the partition has `min_free_bytes` free, and
//! every clip older than `max_age_days` that may go ([`plan`]):
//! - with the archive on the box, a finished clip may go (with its archive copy:
//!   the archive is what the quota bounds);
//! - with a remote storage (or a local storage on another file system), only a
//!   clip that is uploaded: one that is not stays, and the box says so;
//! - a clip that failed (`error`, `quarantined`) may go `keep_failed_days` after it failed;
//! - a clip the pipeline still works on never goes.
//!
//! The same pass keeps the store bounded: records of pruned clips shrink to a
//! summary after `keep_records_days` and are forgotten after `keep_summaries_days`.
//! Passes run when a clip lands and on a timer, one at a time.

pub mod disk;
pub mod plan;
pub mod quarantine;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::SharedClock;
use crate::plugin::Validator;
use crate::store::{Store, StoreError};
pub use disk::{Places, Usage};
pub use plan::{Deletion, Kept, Outcome, Plan, PlanError, Reason};

const DAY_MS: f64 = 86_400_000.0;
/// Share of the data partition the clips may take unless `max_local_size_bytes` says.
const DEFAULT_QUOTA_SHARE: f64 = 0.8;
/// Free-space floor unless `min_free_bytes` says: a share of the partition, capped.
const DEFAULT_FLOOR_SHARE: f64 = 0.05;
const DEFAULT_FLOOR_MAX: u64 = 1 << 30;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Bytes HomeSec's files may take on the data partition. Default: 80 % of it.
    pub max_local_size_bytes: Option<u64>,
    /// Free space the partition keeps. Default: 5 % of it, at most 1 GiB.
    pub min_free_bytes: Option<u64>,
    /// Clips older than this go even within the quota (when they may go at all).
    pub max_age_days: Option<f64>,
    /// Clips that failed (`error`, `quarantined`) may go this long after they failed.
    pub keep_failed_days: f64,
    /// Records of pruned clips are kept whole this long, then reduced to a summary.
    pub keep_records_days: f64,
    /// Summaries are forgotten after this long.
    pub keep_summaries_days: f64,
    /// Seconds between passes (a pass also runs whenever a clip lands).
    pub interval_s: f64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            max_local_size_bytes: None,
            min_free_bytes: None,
            max_age_days: None,
            keep_failed_days: 7.0,
            keep_records_days: 30.0,
            keep_summaries_days: 365.0,
            interval_s: 60.0,
        }
    }
}

impl RetentionConfig {
    pub fn validate(&self, v: &mut Validator<'_>) {
        let days = |d: f64| d.is_finite() && d > 0.0 && d <= 36_500.0;
        if let Some(d) = self.max_age_days {
            v.check(days(d), "max_age_days", "must be more than 0 and at most 36500");
        }
        v.check(days(self.keep_failed_days), "keep_failed_days", "must be more than 0 and at most 36500");
        v.check(days(self.keep_records_days), "keep_records_days", "must be more than 0 and at most 36500");
        v.check(
            days(self.keep_summaries_days) && self.keep_summaries_days >= self.keep_records_days,
            "keep_summaries_days",
            "must be at least keep_records_days and at most 36500",
        );
        v.check(
            self.interval_s.is_finite() && (1.0..=86_400.0).contains(&self.interval_s),
            "interval_s",
            "must be between 1 and 86400",
        );
        if let Some(b) = self.max_local_size_bytes {
            v.check(b >= 1 << 20, "max_local_size_bytes", "must be at least 1048576 (1 MiB)");
        }
    }

    /// The budget on a partition of `total` bytes.
    pub fn budget(&self, total: u64) -> Budget {
        let share = |s: f64| (total as f64 * s) as u64;
        Budget {
            max_bytes: self.max_local_size_bytes.unwrap_or_else(|| share(DEFAULT_QUOTA_SHARE)),
            min_free: self.min_free_bytes.unwrap_or_else(|| share(DEFAULT_FLOOR_SHARE).min(DEFAULT_FLOOR_MAX)),
            max_age_ms: self.max_age_days.map(|d| (d * DAY_MS) as i64),
            keep_failed_ms: (self.keep_failed_days * DAY_MS) as i64,
        }
    }
}

/// The limits a pass holds the box to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    pub max_bytes: u64,
    pub min_free: u64,
    pub max_age_ms: Option<i64>,
    pub keep_failed_ms: i64,
}

/// The disk as the last pass left it (health, Home Assistant, diagnostics).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DiskStatus {
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub total_bytes: u64,
    pub quota_bytes: u64,
    pub min_free_bytes: u64,
    /// Space is wanted but nothing more may go: what stays and why.
    pub stuck: Option<String>,
    pub last_pass_ms: Option<i64>,
    /// Clips and bytes deleted since the daemon started.
    pub pruned_clips: u64,
    pub pruned_bytes: u64,
}

/// Why clips stay when space is wanted, in one line.
pub fn stuck_reason(plan: &Plan) -> Option<String> {
    if !plan.stuck() {
        return None;
    }
    let mb = |b: u64| b as f64 / 1e6;
    let kept: Vec<String> =
        plan.kept.iter().map(|(why, k)| format!("{} clips ({:.1} MB) {why}", k.clips, mb(k.bytes))).collect();
    let wanted = if plan.used_after > plan.budget.max_bytes {
        format!("{:.1} MB used of a {:.1} MB quota", mb(plan.used_after), mb(plan.budget.max_bytes))
    } else {
        format!("{:.1} MB free, below the {:.1} MB floor", mb(plan.free_after), mb(plan.budget.min_free))
    };
    let kept = if kept.is_empty() { "no clip may go".to_owned() } else { kept.join(", ") };
    Some(format!("{wanted}; nothing more may go: {kept}; recording goes on into the free space"))
}

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("retention task failed: {0}")]
    Task(String),
}

/// What one pass did: the plan it followed, the deletions, the store compaction.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PassReport {
    pub plan: Plan,
    pub outcome: Outcome,
    pub records_compacted: usize,
    pub records_forgotten: usize,
}

/// What `homesec cleanup` did or would do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CleanupReport {
    /// Quarantined files re-checked (when asked).
    pub rechecked: Vec<quarantine::Recheck>,
    pub plan: Plan,
    /// What was deleted (`None` on a dry run).
    pub pass: Option<PassReport>,
}

/// `homesec cleanup`, blocking: re-checks quarantined files when asked, then
/// plans a pass and, with `apply`, runs it.
pub fn cleanup(
    store: &Store,
    places: &Places,
    cfg: &RetentionConfig,
    now: i64,
    apply: bool,
    recheck: bool,
) -> Result<CleanupReport, RetentionError> {
    let rechecked = match (recheck, places.folders.first()) {
        (true, Some(recordings)) => quarantine::recheck(store, recordings, apply)?,
        _ => Vec::new(),
    };
    if apply {
        let report = pass(store, places, cfg, now)?;
        Ok(CleanupReport { rechecked, plan: report.plan.clone(), pass: Some(report) })
    } else {
        Ok(CleanupReport { rechecked, plan: make_plan(store, places, cfg, now)?, pass: None })
    }
}

/// The retention service: passes one at a time, woken when a clip lands.
pub struct Retention {
    store: Store,
    places: Places,
    cfg: RetentionConfig,
    clock: SharedClock,
    wake: Arc<Notify>,
    pass_lock: tokio::sync::Mutex<()>,
    status: watch::Sender<DiskStatus>,
}

impl Retention {
    /// `wake` is notified when a clip lands; `status` gets the disk as each pass leaves it.
    pub fn new(
        store: Store,
        places: Places,
        cfg: RetentionConfig,
        clock: SharedClock,
        wake: Arc<Notify>,
        status: watch::Sender<DiskStatus>,
    ) -> Arc<Self> {
        Arc::new(Retention { store, places, cfg, clock, wake, pass_lock: tokio::sync::Mutex::new(()), status })
    }

    /// The disk as the last pass left it, and its changes.
    pub fn status(&self) -> watch::Receiver<DiskStatus> {
        self.status.subscribe()
    }

    /// The disk as the last pass left it.
    pub fn disk(&self) -> DiskStatus {
        self.status.borrow().clone()
    }

    /// `homesec cleanup` on the running daemon, between its passes.
    pub async fn cleanup(&self, apply: bool, recheck: bool) -> Result<CleanupReport, RetentionError> {
        let _one = self.pass_lock.lock().await;
        let (store, places, cfg, now) =
            (self.store.clone(), self.places.clone(), self.cfg.clone(), self.clock.now_ms());
        let report = blocking(move || cleanup(&store, &places, &cfg, now, apply, recheck)).await?;
        if let Some(pass) = &report.pass {
            self.publish(pass, now);
        }
        Ok(report)
    }

    /// One pass: plan, delete, compact the store; the status follows.
    pub async fn pass(&self) -> Result<PassReport, RetentionError> {
        let _one = self.pass_lock.lock().await;
        let (store, places, cfg, now) =
            (self.store.clone(), self.places.clone(), self.cfg.clone(), self.clock.now_ms());
        let report = blocking(move || pass(&store, &places, &cfg, now)).await?;
        self.publish(&report, now);
        Ok(report)
    }

    fn publish(&self, report: &PassReport, now: i64) {
        self.status.send_modify(|s| {
            let p = &report.plan;
            *s = DiskStatus {
                used_bytes: p.used_after,
                free_bytes: p.free_after,
                total_bytes: p.usage.total,
                quota_bytes: p.budget.max_bytes,
                min_free_bytes: p.budget.min_free,
                stuck: stuck_reason(p),
                last_pass_ms: Some(now),
                pruned_clips: s.pruned_clips + report.outcome.clips as u64,
                pruned_bytes: s.pruned_bytes + report.outcome.bytes,
            };
        });
    }

    /// Passes when a clip lands and every `interval_s`, until shutdown.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let every = Duration::from_secs_f64(self.cfg.interval_s);
        let mut was_stuck = false;
        loop {
            match self.pass().await {
                Ok(r) => {
                    if r.outcome.clips > 0 {
                        info!(
                            clips = r.outcome.clips,
                            bytes = r.outcome.bytes,
                            used = r.plan.used_after,
                            quota = r.plan.budget.max_bytes,
                            free = r.plan.free_after,
                            "retention deleted clips"
                        );
                    }
                    if r.records_compacted + r.records_forgotten > 0 {
                        info!(
                            compacted = r.records_compacted,
                            forgotten = r.records_forgotten,
                            "retention reduced old records"
                        );
                    }
                    let stuck = stuck_reason(&r.plan);
                    match (&stuck, was_stuck) {
                        (Some(why), false) => warn!(reason = %why, "disk budget cannot be held"),
                        (None, true) => info!("disk budget holds again"),
                        _ => {}
                    }
                    was_stuck = stuck.is_some();
                }
                Err(e) => warn!(error = %crate::telemetry::chain(&e), "retention pass failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RetentionError> + Send + 'static,
) -> Result<T, RetentionError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| RetentionError::Task(e.to_string()))?
}

/// The plan for `cfg` on the partition as it is now.
pub fn make_plan(store: &Store, places: &Places, cfg: &RetentionConfig, now: i64) -> Result<Plan, PlanError> {
    let (_, total) =
        disk::space(&places.data_dir).map_err(|source| PlanError::Measure { path: places.data_dir.clone(), source })?;
    plan::plan(store, places, &cfg.budget(total), now)
}

/// One whole pass, blocking: plan, delete, compact the store.
pub fn pass(store: &Store, places: &Places, cfg: &RetentionConfig, now: i64) -> Result<PassReport, RetentionError> {
    let plan = make_plan(store, places, cfg, now)?;
    let outcome = plan::apply(store, &plan, now)?;
    let days = |d: f64| now - (d * DAY_MS) as i64;
    let records_compacted = store.compact_before(days(cfg.keep_records_days))?;
    let records_forgotten = store.forget_before(days(cfg.keep_summaries_days))?;
    store.forget_source_files(days(cfg.keep_records_days))?;
    Ok(PassReport { plan, outcome, records_compacted, records_forgotten })
}
