//! One retention pass: which clips go and why (the plan, also what
//! `homesec cleanup` shows), then deleting them.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::ControlFlow;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::Budget;
use super::disk::{self, Places, Usage};
use crate::domain::{ClipRecord, ClipStatus, EventKind, Pruned, StageStatus, UnixMillis};
use crate::store::{Set, Store, StoreError};

/// Clips marked pruned per transaction.
const BATCH: usize = 64;

/// Why a clip's files go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    MaxAge,
    Quota,
    FreeFloor,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::MaxAge => "older than max_age_days",
            Reason::Quota => "over the quota (oldest first)",
            Reason::FreeFloor => "below the free-space floor (oldest first)",
        })
    }
}

/// Why a clip's files stay although space is wanted.
pub const NOT_UPLOADED: &str = "not uploaded yet";
pub const IN_PIPELINE: &str = "still in the pipeline";
pub const FAILED_RECENTLY: &str = "failed recently (kept for keep_failed_days)";

/// One clip whose files go.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Deletion {
    pub clip_id: String,
    pub camera: String,
    pub start_ms: UnixMillis,
    pub status: ClipStatus,
    pub bytes: u64,
    pub reason: Reason,
    pub files: Vec<PathBuf>,
}

/// Clips that stay although space is wanted, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    pub clips: usize,
    pub bytes: u64,
}

/// What a pass will do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    pub usage: Usage,
    pub budget: Budget,
    pub deletions: Vec<Deletion>,
    pub kept: BTreeMap<String, Kept>,
    /// Bytes used after the deletions.
    pub used_after: u64,
    /// Free bytes after the deletions.
    pub free_after: u64,
}

impl Plan {
    /// Space is still wanted after the deletions: nothing more may go.
    pub fn stuck(&self) -> bool {
        self.used_after > self.budget.max_bytes || self.free_after < self.budget.min_free
    }

    pub fn bytes(&self) -> u64 {
        self.deletions.iter().map(|d| d.bytes).sum()
    }
}

/// Whether a clip's files may go when space is wanted, or why not.
/// `archive_on_box`: the clip's stored copy is on the box (local storage), so
/// the archive is what the quota bounds; otherwise a clip that is not uploaded stays.
fn verdict(r: &ClipRecord, now: UnixMillis, budget: &Budget, archive_on_box: bool) -> Result<(), &'static str> {
    if r.pruned.is_some() {
        // A copy an earlier version left in the archive.
        return Ok(());
    }
    if r.needs_processing() {
        return Err(IN_PIPELINE);
    }
    let uploaded = archive_on_box || r.upload.status == StageStatus::Ok;
    match r.status() {
        ClipStatus::Done if uploaded => Ok(()),
        ClipStatus::Done | ClipStatus::Error if !uploaded => Err(NOT_UPLOADED),
        ClipStatus::Error | ClipStatus::Quarantined => {
            let failed_at = r.completed_ms.unwrap_or(r.updated_ms);
            if now - failed_at >= budget.keep_failed_ms { Ok(()) } else { Err(FAILED_RECENTLY) }
        }
        _ => Err(IN_PIPELINE),
    }
}

/// Decides a pass: measures the partition, then walks the clips that still
/// have files, oldest first, while space is wanted or clips are past
/// `max_age_days`.
pub fn plan(store: &Store, places: &Places, budget: &Budget, now: UnixMillis) -> Result<Plan, PlanError> {
    let usage = disk::measure(places).map_err(|source| PlanError::Measure { path: places.data_dir.clone(), source })?;
    Ok(decide(store, places, budget, now, usage)?)
}

/// [`plan`] for a measured `usage`.
pub fn decide(
    store: &Store,
    places: &Places,
    budget: &Budget,
    now: UnixMillis,
    usage: Usage,
) -> Result<Plan, StoreError> {
    let (mut used, mut free) = (usage.used, usage.free);
    let age_cut = budget.max_age_ms.map(|a| now - a);
    let mut deletions = Vec::new();
    let mut kept: BTreeMap<String, Kept> = BTreeMap::new();
    store.scan_set(Set::OnDisk, None, |r| {
        let over_quota = used > budget.max_bytes;
        let below_floor = free < budget.min_free;
        let too_old = age_cut.is_some_and(|cut| r.clip.start_ms < cut);
        if !over_quota && !below_floor && !too_old {
            // Oldest first: no later clip is older.
            return ControlFlow::Break(());
        }
        let files = disk::clip_files(&r, places);
        let bytes = disk::freed_bytes(&files);
        let reason = if too_old {
            Reason::MaxAge
        } else if over_quota {
            Reason::Quota
        } else {
            Reason::FreeFloor
        };
        match verdict(&r, now, budget, places.archive.is_some()) {
            Ok(()) => {
                used = used.saturating_sub(bytes);
                free = free.saturating_add(bytes);
                deletions.push(Deletion {
                    clip_id: r.clip.clip_id.0.clone(),
                    camera: r.clip.camera.as_str().to_owned(),
                    start_ms: r.clip.start_ms,
                    status: r.status(),
                    bytes,
                    reason,
                    files,
                });
            }
            Err(why) => {
                let k = kept.entry(why.to_owned()).or_default();
                k.clips += 1;
                k.bytes += bytes;
            }
        }
        ControlFlow::Continue(())
    })?;
    Ok(Plan { usage, budget: *budget, deletions, kept, used_after: used, free_after: free })
}

/// What a pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub clips: usize,
    pub bytes: u64,
    /// Clips whose files could not be deleted (logged).
    pub failed: usize,
}

/// Deletes what the plan says, marking each clip pruned once its files are gone.
/// A power loss between the two leaves a record whose files are gone; the next
/// pass finds nothing to free for it and marks it then.
pub fn apply(store: &Store, plan: &Plan, now: UnixMillis) -> Result<Outcome, StoreError> {
    let mut out = Outcome::default();
    for batch in plan.deletions.chunks(BATCH) {
        let mut gone = Vec::new();
        for d in batch {
            match disk::delete(&d.files) {
                Ok(()) => gone.push(d),
                Err((path, e)) => {
                    warn!(camera = %d.camera, clip_id = %d.clip_id, path = %path.display(), error = %e, "retention cannot delete a clip's file");
                    out.failed += 1;
                }
            }
        }
        store.write(|w| {
            for d in &gone {
                let pruned = Pruned { at_ms: now, bytes: d.bytes, reason: d.reason.to_string(), archive_left: false };
                w.update_clip(&d.clip_id, [EventKind::LocalFilePruned { bytes: d.bytes }], |r| {
                    r.pruned = Some(pruned);
                })?;
            }
            Ok(())
        })?;
        out.clips += gone.len();
        out.bytes += gone.iter().map(|d| d.bytes).sum::<u64>();
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot measure the data partition at {path}")]
    Measure {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}
