//! Indexes over the clip records, so that listing, recovery, the upload retry
//! and retention read the clips they need and not the whole table. Each index
//! is kept in the same transaction as the record it derives from
//! ([`reindex`]); a store without them (an earlier version) gets them built
//! once at open ([`rebuild`]).

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{CLIPS, StoreError, codec::decode};
use crate::domain::{ClipRecord, ClipStatus, StageStatus};

/// Every index in one table (one tree to update per transaction):
/// `(index name, start_ms, clip_id)`; see [`Index`].
pub(super) const INDEX: TableDefinition<(&str, i64, &str), ()> = TableDefinition::new("clip_index");

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

    fn name(self) -> &'static str {
        match self {
            Set::Unfinished => "set/unfinished",
            Set::UploadRetry => "set/upload_retry",
            Set::OnDisk => "set/on_disk",
            Set::Pruned => "set/pruned",
            Set::Compacted => "set/compacted",
        }
    }
}

/// An index: the clips under one name, ordered by start time.
#[derive(Clone, Copy, Debug)]
pub(super) enum Index<'a> {
    /// Every clip.
    Time,
    Camera(&'a str),
    Status(ClipStatus),
    /// One camera's clips of one status.
    CameraStatus(&'a str, ClipStatus),
    Set(Set),
}

impl Index<'_> {
    pub(super) fn name(self) -> String {
        match self {
            Index::Time => "time".into(),
            Index::Camera(c) => format!("camera/{c}"),
            Index::Status(s) => format!("status/{}", s.as_str()),
            Index::CameraStatus(c, s) => format!("camera_status/{c}/{}", s.as_str()),
            Index::Set(s) => s.name().into(),
        }
    }
}

/// The index names a record is under.
fn names(r: &ClipRecord) -> Vec<String> {
    let (camera, status) = (r.clip.camera.as_str(), r.status());
    let mut out = vec![
        Index::Time.name(),
        Index::Camera(camera).name(),
        Index::Status(status).name(),
        Index::CameraStatus(camera, status).name(),
    ];
    out.extend(Set::ALL.into_iter().filter(|s| s.contains(r)).map(|s| s.name().to_owned()));
    out
}

/// Creates the index table (so that readers never meet a missing one).
pub(super) fn create(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(INDEX)?;
    Ok(())
}

/// Moves a record's index entries from what `old` was to what `new` is
/// (`None`: no record).
pub(super) fn reindex(
    txn: &WriteTransaction,
    old: Option<&ClipRecord>,
    new: Option<&ClipRecord>,
) -> Result<(), StoreError> {
    let key = |r: &ClipRecord| (r.clip.start_ms, r.clip.clip_id.0.clone());
    let (old_key, new_key) = (old.map(key), new.map(key));
    let (old_names, new_names) = (old.map(names).unwrap_or_default(), new.map(names).unwrap_or_default());
    let mut table = txn.open_table(INDEX)?;
    if let Some((start, id)) = &old_key {
        for name in old_names.iter().filter(|n| old_key != new_key || !new_names.contains(n)) {
            table.remove((name.as_str(), *start, id.as_str()))?;
        }
    }
    if let Some((start, id)) = &new_key {
        for name in new_names.iter().filter(|n| old_key != new_key || !old_names.contains(n)) {
            table.insert((name.as_str(), *start, id.as_str()), ())?;
        }
    }
    Ok(())
}

/// Builds every index from the records, rewriting each record in the current
/// layout (a one-off migration). Records that cannot be read are left as they
/// are and returned with the reason.
pub(super) fn rebuild(txn: &WriteTransaction) -> Result<Vec<(String, String)>, StoreError> {
    txn.delete_table(INDEX)?;
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
