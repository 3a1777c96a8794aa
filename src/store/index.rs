//! Indexes over the clip records, so that listing, recovery, the upload retry
//! and retention read the clips they need and not the whole table. Each index
//! is kept in the same transaction as the record it derives from
//! ([`reindex`]); a store without them (an earlier version) gets them built
//! once at open ([`rebuild`]).

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{CLIPS, StoreError, codec::decode};
use crate::domain::{ClipRecord, ClipStatus, StageStatus, UnixMillis};

/// Every clip by start time: `(start_ms, clip_id)`.
pub(super) const BY_TIME: TableDefinition<(i64, &str), ()> = TableDefinition::new("clips_by_time");
/// Every clip by camera, then start time.
pub(super) const BY_CAMERA: TableDefinition<(&str, i64, &str), ()> = TableDefinition::new("clips_by_camera");
/// Every clip by derived status, then start time.
pub(super) const BY_STATUS: TableDefinition<(&str, i64, &str), ()> = TableDefinition::new("clips_by_status");

/// A set of clips a background task works through, oldest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Set {
    /// The pipeline still owes these a run (startup recovery).
    Unfinished,
    /// Finished, but the upload failed: retried in the background.
    UploadRetry,
    /// Some of their files are still on the box (retention's candidates).
    OnDisk,
    /// Their files are gone and their record is whole (compaction's candidates).
    Pruned,
    /// Reduced to a summary (forgotten after the longer horizon).
    Compacted,
}

impl Set {
    pub(super) const ALL: [Set; 5] = [Set::Unfinished, Set::UploadRetry, Set::OnDisk, Set::Pruned, Set::Compacted];

    pub(super) fn table(self) -> TableDefinition<'static, (i64, &'static str), ()> {
        match self {
            Set::Unfinished => TableDefinition::new("clips_unfinished"),
            Set::UploadRetry => TableDefinition::new("clips_upload_retry"),
            Set::OnDisk => TableDefinition::new("clips_on_disk"),
            Set::Pruned => TableDefinition::new("clips_pruned"),
            Set::Compacted => TableDefinition::new("clips_compacted"),
        }
    }

    fn contains(self, r: &ClipRecord) -> bool {
        match self {
            Set::Unfinished => r.needs_processing(),
            Set::UploadRetry => {
                r.completed_ms.is_some()
                    && r.quarantine.is_none()
                    && r.pruned.is_none()
                    && r.upload.status == StageStatus::Error
            }
            Set::OnDisk => r.has_files(),
            Set::Pruned => !r.has_files() && r.compacted_ms.is_none(),
            Set::Compacted => r.compacted_ms.is_some(),
        }
    }
}

/// What the indexes hold of one record.
struct Keys<'r> {
    id: &'r str,
    start: UnixMillis,
    camera: &'r str,
    status: ClipStatus,
    sets: Vec<Set>,
}

impl<'r> Keys<'r> {
    fn of(r: &'r ClipRecord) -> Self {
        Keys {
            id: r.clip.clip_id.as_str(),
            start: r.clip.start_ms,
            camera: r.clip.camera.as_str(),
            status: r.status(),
            sets: Set::ALL.into_iter().filter(|s| s.contains(r)).collect(),
        }
    }
}

/// Creates every index table (so that readers never meet a missing one).
pub(super) fn create(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(BY_TIME)?;
    txn.open_table(BY_CAMERA)?;
    txn.open_table(BY_STATUS)?;
    for set in Set::ALL {
        txn.open_table(set.table())?;
    }
    Ok(())
}

/// Moves a record's index entries from what `old` was to what `new` is
/// (`None`: no record).
pub(super) fn reindex(
    txn: &WriteTransaction,
    old: Option<&ClipRecord>,
    new: Option<&ClipRecord>,
) -> Result<(), StoreError> {
    let (old, new) = (old.map(Keys::of), new.map(Keys::of));
    let same_place = |a: &Keys<'_>, b: &Keys<'_>| a.id == b.id && a.start == b.start && a.camera == b.camera;
    let moved = match (&old, &new) {
        (Some(a), Some(b)) => !same_place(a, b),
        _ => true,
    };
    if let Some(o) = &old {
        if moved {
            txn.open_table(BY_TIME)?.remove((o.start, o.id))?;
            txn.open_table(BY_CAMERA)?.remove((o.camera, o.start, o.id))?;
        }
        if moved || new.as_ref().is_some_and(|n| n.status != o.status) {
            txn.open_table(BY_STATUS)?.remove((o.status.as_str(), o.start, o.id))?;
        }
        for set in &o.sets {
            if moved || new.as_ref().is_some_and(|n| !n.sets.contains(set)) {
                txn.open_table(set.table())?.remove((o.start, o.id))?;
            }
        }
    }
    if let Some(n) = &new {
        if moved {
            txn.open_table(BY_TIME)?.insert((n.start, n.id), ())?;
            txn.open_table(BY_CAMERA)?.insert((n.camera, n.start, n.id), ())?;
        }
        if moved || old.as_ref().is_some_and(|o| o.status != n.status) {
            txn.open_table(BY_STATUS)?.insert((n.status.as_str(), n.start, n.id), ())?;
        }
        for set in &n.sets {
            if moved || old.as_ref().is_some_and(|o| !o.sets.contains(set)) {
                txn.open_table(set.table())?.insert((n.start, n.id), ())?;
            }
        }
    }
    Ok(())
}

/// Builds every index from the records, rewriting each record in the current
/// layout (a one-off migration). Records that cannot be read are left as they
/// are and returned with the reason.
pub(super) fn rebuild(txn: &WriteTransaction) -> Result<Vec<(String, String)>, StoreError> {
    txn.delete_table(BY_TIME)?;
    txn.delete_table(BY_CAMERA)?;
    txn.delete_table(BY_STATUS)?;
    for set in Set::ALL {
        txn.delete_table(set.table())?;
    }
    create(txn)?;
    let mut records = Vec::new();
    let mut unreadable = Vec::new();
    for row in txn.open_table(CLIPS)?.iter()? {
        let (k, v) = row?;
        let key = k.value().to_owned();
        match decode::<ClipRecord>(&format!("clip {key}"), v.value()) {
            Ok(r) => records.push(r),
            Err(e) => unreadable.push((key, e.to_string())),
        }
    }
    let mut clips = txn.open_table(CLIPS)?;
    for r in &records {
        clips.insert(r.clip.clip_id.as_str(), super::codec::encode(r)?.as_slice())?;
        reindex(txn, None, Some(r))?;
    }
    Ok(unreadable)
}
