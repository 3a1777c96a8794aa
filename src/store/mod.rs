//! The local queue and manifest in redb: clip records, the append-only event
//! log, the notification outbox, the sync outbox (for Postgres), the source
//! manifests, the early alerts of clips still being recorded, the open alerts
//! of the cooldown ([`alerts`]), the log outbox (log records waiting for
//! Postgres) and the cameras' runtime controls. Values are rkyv archives behind
//! a 2-byte version of their type ([`Stored::VERSION`]); values an earlier
//! version wrote are upgraded when read.
//!
//! The repository rule: every state change goes through [`Store::write`], so a
//! stage result and its events are committed in one transaction.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};

use crate::clock::{Clock, SharedClock, SystemClock};
use crate::domain::{Alert, AlertStage, CameraName, ClipId, ClipRecord, EventKind, UnixMillis};

mod alerts;
mod codec;
mod controls;
mod events;
mod index;
mod logs;
mod maintenance;
mod query;

pub use alerts::{OpenAlert, OpenAlerts};
pub use codec::Stored;
use codec::{decode, encode};
pub use controls::ControlsRecord;
pub use events::EventId;
use events::{EVENTS, SYNC_OUTBOX};
pub use index::Set;
use logs::LOG_OUTBOX;
pub use logs::{LogBatch, MAX_LOG_RECORDS};
pub use query::{ClipPage, ClipQuery, Cursor};

const CLIPS: TableDefinition<&str, &[u8]> = TableDefinition::new("clips");
const NOTIFY_OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("notify_outbox");
const SOURCE_FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("source_files");
/// Early alerts sent for clips not yet handed to the pipeline (kept until the
/// clip's final alert is decided).
const EARLY_ALERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("early_alerts");
/// The store's own facts: `layout` is the version of the tables' layout.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// 2: the clip indexes ([`index`]); records rewritten in their current version;
/// events kept by clip ([`events`]); the sync outbox kept only when something drains it.
const LAYOUT: u64 = 2;
/// redb's page cache (its default is 1 GiB: the whole file would end up in memory).
const CACHE_BYTES: usize = 16 << 20;
/// Events kept per clip: a clip retried for days keeps its first event and its latest ones.
pub const MAX_EVENTS_PER_CLIP: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}")]
    Open {
        path: String,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("store I/O failed")]
    Db(#[from] redb::Error),
    #[error("stored {what} is unreadable: {reason}")]
    Corrupt { what: String, reason: String },
    #[error("no clip {0} in the store")]
    UnknownClip(ClipId),
    #[error("store task failed: {0}")]
    Task(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
from_redb!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

/// One notification owed to one notifier, kept until delivered or expired.
#[derive(Clone, Debug, PartialEq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct OutboxEntry {
    pub clip_id: ClipId,
    pub notifier: String,
    pub alert: Alert,
    pub created_ms: UnixMillis,
    pub attempts: u32,
    pub next_attempt_ms: UnixMillis,
    pub expires_ms: UnixMillis,
    pub last_error: Option<String>,
}

/// An early alert sent for a clip that is still being recorded: the final
/// alert for the clip is sent even when the policy would not alert, so that the
/// early one can be updated.
#[derive(Clone, Debug, PartialEq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct EarlyAlert {
    pub camera: CameraName,
    pub sent_ms: UnixMillis,
    /// Why it was sent, e.g. `detected=person (early)`.
    pub reason: String,
}

/// Whether an outbox entry is an early alert (sent while the clip records; it
/// does not count for the clip's notify stage).
pub fn is_early(entry: &OutboxEntry) -> bool {
    entry.alert.stage == AlertStage::Detected
}

/// What a source remembers about a file it has seen (so nothing is processed twice).
#[derive(Clone, Debug, PartialEq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct SourceFileEntry {
    pub clip_id: ClipId,
    pub size: u64,
    pub seen_ms: UnixMillis,
}

/// Handle to the store; cheap to clone. Calls block on disk I/O: from async code
/// use [`Store::run`].
#[derive(Clone)]
pub struct Store {
    db: Arc<redb::Database>,
    /// Dates what the [`Writer`] writes: records' `created_ms` / `updated_ms`, events.
    clock: SharedClock,
    /// Whether events are queued for Postgres (only when something drains them).
    sync_outbox: bool,
    /// Records that could not be read, with the reason: skipped by listings,
    /// recovery and retention, reported in the log and the diagnostics.
    unreadable: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Store {
    /// Opens (or creates) the store, dating writes by the system clock.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_clock(path, SystemClock::shared())
    }

    /// Opens (or creates) the store, dating writes by `clock`.
    pub fn open_with_clock(path: &Path, clock: SharedClock) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open { path: path.display().to_string(), source };
        // A bounded page cache: memory stays flat however long the history.
        let db = redb::Builder::new().set_cache_size(CACHE_BYTES).create(path).map_err(open_err)?;
        let store = Self { db: Arc::new(db), clock, sync_outbox: false, unreadable: Arc::default() };
        // Create every table so that readers never meet a missing one.
        store.write(|_| Ok(()))?;
        store.migrate()?;
        Ok(store)
    }

    /// Queues every event for Postgres from now on (for the sync drain).
    pub fn with_sync_outbox(mut self) -> Self {
        self.sync_outbox = true;
        self
    }

    /// Brings a store an earlier version wrote to the current layout, once.
    fn migrate(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        let layout = txn.open_table(META)?.get("layout")?.map(|v| v.value()).unwrap_or(1);
        if layout >= LAYOUT {
            return Ok(());
        }
        let mut unreadable = index::rebuild(&txn)?;
        unreadable.extend(events::migrate(&txn)?);
        let records = txn.open_table(CLIPS)?.len()?;
        txn.open_table(META)?.insert("layout", LAYOUT)?;
        txn.commit()?;
        tracing::info!(from = layout, to = LAYOUT, records, "store upgraded");
        for (key, reason) in unreadable {
            self.report_unreadable(&key, reason);
        }
        Ok(())
    }

    /// Notes a record that cannot be read (logged the first time).
    fn report_unreadable(&self, key: &str, reason: String) {
        let Ok(mut seen) = self.unreadable.lock() else { return };
        if !seen.contains_key(key) {
            tracing::warn!(record = key, %reason, "skipping an unreadable store record");
            seen.insert(key.to_owned(), reason);
        }
    }

    /// Records skipped because they could not be read, with the reason.
    pub fn unreadable(&self) -> Vec<(String, String)> {
        self.unreadable.lock().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
    }

    /// [`Store::open_with_clock`] from async code: opening may check and repair
    /// the file after a crash, so it runs off the async workers.
    pub async fn open_async(path: PathBuf, clock: SharedClock) -> Result<Self, StoreError> {
        tokio::task::spawn_blocking(move || Self::open_with_clock(&path, clock))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Runs blocking store work off the async workers.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store)).await.map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// One write transaction: everything `f` does through the [`Writer`] is
    /// committed together or not at all.
    pub fn write<T>(&self, f: impl FnOnce(&mut Writer<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let txn = self.db.begin_write()?;
        let result = {
            txn.open_table(CLIPS)?;
            txn.open_table(EVENTS)?;
            txn.open_table(NOTIFY_OUTBOX)?;
            txn.open_table(SYNC_OUTBOX)?;
            txn.open_table(SOURCE_FILES)?;
            txn.open_table(EARLY_ALERTS)?;
            txn.open_table(alerts::OPEN_ALERTS)?;
            txn.open_table(LOG_OUTBOX)?;
            txn.open_table(META)?;
            txn.open_table(controls::CONTROLS)?;
            index::create(&txn)?;
            let mut w = Writer { txn: &txn, clock: &*self.clock, sync_outbox: self.sync_outbox };
            f(&mut w)?
        };
        txn.commit()?;
        Ok(result)
    }

    pub fn get_clip(&self, id: &str) -> Result<Option<ClipRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CLIPS)?;
        table.get(id)?.map(|v| decode(&format!("clip {id}"), v.value())).transpose()
    }

    /// Clips the pipeline still owes a run, newest first (startup recovery order).
    pub fn unfinished_clips(&self) -> Result<Vec<ClipRecord>, StoreError> {
        let mut all = self.set(Set::Unfinished, None)?;
        all.reverse();
        Ok(all)
    }

    pub fn source_file(&self, key: &str) -> Result<Option<SourceFileEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SOURCE_FILES)?;
        table.get(key)?.map(|v| decode(&format!("source file {key}"), v.value())).transpose()
    }

    /// The early alert sent for a clip, if one was.
    pub fn early_alert(&self, clip_id: &str) -> Result<Option<EarlyAlert>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EARLY_ALERTS)?;
        table.get(clip_id)?.map(|v| decode(&format!("early alert {clip_id}"), v.value())).transpose()
    }

    /// Every notification still owed, oldest first.
    pub fn outbox(&self) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(NOTIFY_OUTBOX)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            out.push((k.value(), decode(&format!("outbox entry {}", k.value()), v.value())?));
        }
        Ok(out)
    }

    /// Number of notifications still owed.
    pub fn outbox_len(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(NOTIFY_OUTBOX)?.len()?)
    }

    /// Checks that the database answers (for health).
    pub fn ping(&self) -> bool {
        self.db.begin_read().map(|t| t.open_table(CLIPS).is_ok()).unwrap_or(false)
    }

    /// The clock that dates what this store writes.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

/// The operations allowed inside one write transaction.
pub struct Writer<'t> {
    txn: &'t redb::WriteTransaction,
    clock: &'t dyn Clock,
    sync_outbox: bool,
}

impl Writer<'_> {
    /// Adds a new clip with its `clip_recorded` event, dated now (`created_ms`,
    /// `updated_ms`). Returns false (and writes nothing) when a record with that
    /// id exists already.
    pub fn insert_clip(&mut self, record: &ClipRecord) -> Result<bool, StoreError> {
        let id = record.clip.clip_id.as_str();
        {
            let mut clips = self.txn.open_table(CLIPS)?;
            if clips.get(id)?.is_some() {
                return Ok(false);
            }
            let now = self.clock.now_ms();
            let dated = ClipRecord { created_ms: now, updated_ms: now, ..record.clone() };
            clips.insert(id, encode(&dated)?.as_slice())?;
            index::reindex(self.txn, None, Some(&dated))?;
        }
        self.event(&record.clip, EventKind::ClipRecorded)?;
        Ok(true)
    }

    pub fn clip(&self, id: &str) -> Result<ClipRecord, StoreError> {
        let clips = self.txn.open_table(CLIPS)?;
        let value = clips.get(id)?.ok_or_else(|| StoreError::UnknownClip(ClipId(id.to_owned())))?;
        decode(&format!("clip {id}"), value.value())
    }

    /// Changes a clip record and appends the events that explain the change.
    pub fn update_clip(
        &mut self,
        id: &str,
        events: impl IntoIterator<Item = EventKind>,
        change: impl FnOnce(&mut ClipRecord),
    ) -> Result<ClipRecord, StoreError> {
        let old = self.clip(id)?;
        let mut record = old.clone();
        change(&mut record);
        record.updated_ms = self.clock.now_ms();
        self.txn.open_table(CLIPS)?.insert(id, encode(&record)?.as_slice())?;
        index::reindex(self.txn, Some(&old), Some(&record))?;
        for kind in events {
            self.event(&record.clip, kind)?;
        }
        Ok(record)
    }

    pub fn enqueue_notification(&mut self, entry: &OutboxEntry) -> Result<u64, StoreError> {
        let mut outbox = self.txn.open_table(NOTIFY_OUTBOX)?;
        let seq = outbox.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
        outbox.insert(seq, encode(entry)?.as_slice())?;
        Ok(seq)
    }

    pub fn update_notification(&mut self, seq: u64, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.txn.open_table(NOTIFY_OUTBOX)?.insert(seq, encode(entry)?.as_slice())?;
        Ok(())
    }

    pub fn remove_notification(&mut self, seq: u64) -> Result<(), StoreError> {
        self.txn.open_table(NOTIFY_OUTBOX)?.remove(seq)?;
        Ok(())
    }

    /// Final notifications still owed for a clip (other than `except`).
    pub fn pending_notifications(&self, clip_id: &str, except: u64) -> Result<usize, StoreError> {
        Ok(self.notifications_of(clip_id)?.into_iter().filter(|(seq, e)| *seq != except && !is_early(e)).count())
    }

    /// Drops a clip's early alerts still waiting in the outbox: its final alert
    /// supersedes them.
    pub fn remove_pending_early_notifications(&mut self, clip_id: &str) -> Result<usize, StoreError> {
        let early: Vec<u64> =
            self.notifications_of(clip_id)?.into_iter().filter(|(_, e)| is_early(e)).map(|(s, _)| s).collect();
        let mut outbox = self.txn.open_table(NOTIFY_OUTBOX)?;
        for seq in &early {
            outbox.remove(*seq)?;
        }
        Ok(early.len())
    }

    fn notifications_of(&self, clip_id: &str) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        let outbox = self.txn.open_table(NOTIFY_OUTBOX)?;
        let mut out = Vec::new();
        for row in outbox.iter()? {
            let (k, v) = row?;
            let entry: OutboxEntry = decode(&format!("outbox entry {}", k.value()), v.value())?;
            if entry.clip_id.as_str() == clip_id {
                out.push((k.value(), entry));
            }
        }
        Ok(out)
    }

    pub fn put_source_file(&mut self, key: &str, entry: &SourceFileEntry) -> Result<(), StoreError> {
        self.txn.open_table(SOURCE_FILES)?.insert(key, encode(entry)?.as_slice())?;
        Ok(())
    }

    /// Remembers that an early alert went out for a clip being recorded.
    pub fn put_early_alert(&mut self, clip_id: &str, entry: &EarlyAlert) -> Result<(), StoreError> {
        self.txn.open_table(EARLY_ALERTS)?.insert(clip_id, encode(entry)?.as_slice())?;
        Ok(())
    }

    /// The early alert of a clip, if one was sent.
    pub fn early_alert(&self, clip_id: &str) -> Result<Option<EarlyAlert>, StoreError> {
        let table = self.txn.open_table(EARLY_ALERTS)?;
        table.get(clip_id)?.map(|v| decode(&format!("early alert {clip_id}"), v.value())).transpose()
    }

    /// Forgets a clip's early alert (its final alert is decided).
    pub fn remove_early_alert(&mut self, clip_id: &str) -> Result<(), StoreError> {
        self.txn.open_table(EARLY_ALERTS)?.remove(clip_id)?;
        Ok(())
    }

    /// Forgets early alerts sent before `before_ms` whose clip never arrived
    /// (its recording was lost): no final alert can follow them. Returns their clip ids.
    pub fn forget_orphan_early_alerts(&mut self, before_ms: UnixMillis) -> Result<Vec<String>, StoreError> {
        let mut orphans = Vec::new();
        {
            let early = self.txn.open_table(EARLY_ALERTS)?;
            let clips = self.txn.open_table(CLIPS)?;
            for row in early.iter()? {
                let (k, v) = row?;
                let entry: EarlyAlert = decode(&format!("early alert {}", k.value()), v.value())?;
                if entry.sent_ms < before_ms && clips.get(k.value())?.is_none() {
                    orphans.push(k.value().to_owned());
                }
            }
        }
        let mut early = self.txn.open_table(EARLY_ALERTS)?;
        for id in &orphans {
            early.remove(id.as_str())?;
        }
        Ok(orphans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Clip, Stage, StageStatus};
    use std::path::Path;

    fn clip(id: &str, start: i64) -> Clip {
        Clip {
            clip_id: id.into(),
            camera: "front".into(),
            local_path: format!("/r/{id}.mp4"),
            start_ms: start,
            end_ms: start + 1000,
            source_backend: "folder".into(),
        }
    }

    #[test]
    fn records_and_events_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("homesec.redb");
        {
            let store = Store::open(&path).unwrap();
            store
                .write(|w| {
                    assert!(w.insert_clip(&ClipRecord::new(clip("a", 1)))?);
                    assert!(!w.insert_clip(&ClipRecord::new(clip("a", 1)))?, "duplicate ids are refused");
                    w.insert_clip(&ClipRecord::new(clip("b", 2)))?;
                    w.update_clip("a", [EventKind::StageSucceeded { stage: Stage::Filter }], |r| {
                        r.filter.status = StageStatus::Ok;
                    })?;
                    Ok(())
                })
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let a = store.get_clip("a").unwrap().unwrap();
        assert_eq!(a.filter.status, StageStatus::Ok);
        let kinds: Vec<_> = store.events_for("a").unwrap().into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, vec![EventKind::ClipRecorded, EventKind::StageSucceeded { stage: Stage::Filter }]);
        let order: Vec<_> = store.unfinished_clips().unwrap().into_iter().map(|r| r.clip.clip_id.0).collect();
        assert_eq!(order, vec!["b", "a"], "recovery goes newest first");
        assert_eq!(store.sync_backlog().unwrap(), 0, "nothing drains the sync outbox: nothing is queued");
    }

    #[test]
    fn an_alert_queued_by_the_previous_version_is_read_and_delivered_as_a_final_alert() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        // What version 1 wrote: the old layout behind version 1.
        let body = rkyv::to_bytes::<rkyv::rancor::Error>(&codec::v1::entry("front_1")).unwrap();
        let mut old = 1u16.to_le_bytes().to_vec();
        old.extend_from_slice(&body);
        let txn = store.db.begin_write().unwrap();
        txn.open_table(NOTIFY_OUTBOX).unwrap().insert(7, old.as_slice()).unwrap();
        txn.commit().unwrap();

        let entries = store.outbox().unwrap();
        assert_eq!(entries.len(), 1);
        let (seq, e) = &entries[0];
        assert_eq!((*seq, e.alert.stage, e.alert.dedupe_key.as_str()), (7, AlertStage::Analyzed, "front_1"));
        assert_eq!(e.alert.summary.as_deref(), Some("someone"));
        // A value from a newer build is refused with a clear reason, not misread.
        let mut newer = 9u16.to_le_bytes().to_vec();
        newer.extend_from_slice(&body);
        let err = decode::<OutboxEntry>("outbox entry 8", &newer).unwrap_err();
        assert!(err.to_string().contains("outbox entry 8 is unreadable: version 9 is newer"), "{err}");
    }

    #[test]
    fn a_clip_record_written_by_version_2_is_read_without_an_analysis_uri() {
        let now = ClipRecord::new(Clip {
            clip_id: ClipId("front_2".into()),
            camera: "front".into(),
            local_path: "/x/front_2.mp4".into(),
            start_ms: 1,
            end_ms: 2,
            source_backend: "folder".into(),
        });
        let old = codec::v2::ClipRecord {
            schema_version: now.schema_version,
            clip: now.clip.clone(),
            created_ms: 1,
            updated_ms: 2,
            upload: now.upload.clone(),
            filter: now.filter.clone(),
            vlm: now.vlm.clone(),
            notify: now.notify.clone(),
            storage_uri: Some("s3://clips/front/front_2.mp4".into()),
            view_url: Some("https://view/front_2".into()),
            filter_result: None,
            analysis: None,
            decision: None,
            snapshot_path: None,
            completed_ms: Some(3),
            quarantine: None,
            pruned: None,
            compacted_ms: None,
        };
        let mut bytes = 2u16.to_le_bytes().to_vec();
        bytes.extend_from_slice(&rkyv::to_bytes::<rkyv::rancor::Error>(&old).unwrap());
        let read = decode::<ClipRecord>("clip front_2", &bytes).unwrap();
        assert_eq!(read.storage_uri.as_deref(), Some("s3://clips/front/front_2.mp4"));
        assert_eq!(read.completed_ms, Some(3));
        assert_eq!(read.analysis_uri, None);
    }

    #[test]
    fn early_alerts_are_kept_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let early = EarlyAlert { camera: "front".into(), sent_ms: 5, reason: "detected=person (early)".into() };
        store.write(|w| w.put_early_alert("front_1", &early)).unwrap();
        assert_eq!(store.early_alert("front_1").unwrap(), Some(early));
        store.write(|w| w.remove_early_alert("front_1")).unwrap();
        assert_eq!(store.early_alert("front_1").unwrap(), None);

        // Old early alerts whose clip never arrived go; recent ones and those of recorded clips stay.
        let at = |sent_ms| EarlyAlert { sent_ms, ..early_alert_of("front") };
        store
            .write(|w| {
                w.put_early_alert("lost", &at(1_000))?;
                w.put_early_alert("recording", &at(9_000))?;
                w.put_early_alert("a", &at(1_000))?;
                w.insert_clip(&ClipRecord::new(clip("a", 1)))
            })
            .unwrap();
        assert_eq!(store.write(|w| w.forget_orphan_early_alerts(5_000)).unwrap(), ["lost"]);
        assert!(store.early_alert("lost").unwrap().is_none());
        assert!(store.early_alert("recording").unwrap().is_some() && store.early_alert("a").unwrap().is_some());
    }

    fn early_alert_of(camera: &str) -> EarlyAlert {
        EarlyAlert { camera: camera.into(), sent_ms: 0, reason: "detected=person (early)".into() }
    }

    #[test]
    fn a_failed_transaction_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let res: Result<(), _> = store.write(|w| {
            w.insert_clip(&ClipRecord::new(clip("a", 1)))?;
            w.update_clip("missing", [], |_| {})?;
            Ok(())
        });
        assert!(matches!(res, Err(StoreError::UnknownClip(_))));
        assert!(store.get_clip("a").unwrap().is_none());
        assert!(store.recent_clips(10).unwrap().is_empty(), "no index entry either");
    }

    #[test]
    fn writes_are_dated_by_the_stores_clock() {
        let dir = tempfile::tempdir().unwrap();
        let clock = crate::clock::SimulatedClock::starting_at(1_000_000);
        let store = Store::open_with_clock(&dir.path().join("s.redb"), clock.clone()).unwrap();
        store.write(|w| w.insert_clip(&ClipRecord::new(clip("a", 1)))).unwrap();
        clock.advance(std::time::Duration::from_secs(5));
        store.write(|w| w.update_clip("a", [EventKind::StageSucceeded { stage: Stage::Filter }], |_| {})).unwrap();
        let a = store.get_clip("a").unwrap().unwrap();
        assert_eq!((a.created_ms, a.updated_ms), (1_000_000, 1_005_000));
        let dates: Vec<_> = store.events_for("a").unwrap().into_iter().map(|e| e.ts_ms).collect();
        assert_eq!(dates, vec![1_000_000, 1_005_000]);
    }

    #[test]
    fn sync_outbox_drains_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap().with_sync_outbox();
        store.write(|w| w.insert_clip(&ClipRecord::new(clip("a", 1)))).unwrap();
        store.write(|w| w.insert_clip(&ClipRecord::new(clip("b", 2)))).unwrap();
        let batch = store.sync_batch(10).unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].1.clip_id.as_str(), "a");
        store.write(|w| w.ack_synced(&[batch[0].0.clone()])).unwrap();
        assert_eq!(store.sync_backlog().unwrap(), 1);
    }

    /// A store as the previous version left it (tests/fixtures/README.md).
    fn previous_version_store(dir: &Path) -> PathBuf {
        let path = dir.join("homesec.redb");
        std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/store-v1.redb"), &path).unwrap();
        path
    }

    #[test]
    fn a_store_the_previous_version_wrote_is_read_listed_resumed_and_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = previous_version_store(dir.path());
        let store = Store::open(&path).unwrap();
        assert!(store.unreadable().is_empty(), "{:?}", store.unreadable());
        let ids = |v: Vec<ClipRecord>| v.into_iter().map(|r| r.clip.clip_id.0).collect::<Vec<_>>();
        assert_eq!(
            ids(store.recent_clips(10).unwrap()),
            ["front_door_1790000200", "front_door_1790000100", "front_door_1790000000", "front_door_1789990000"]
        );
        assert_eq!(ids(store.unfinished_clips().unwrap()), ["front_door_1790000100"]);
        let done = store.get_clip("front_door_1790000000").unwrap().unwrap();
        assert_eq!(done.status(), crate::domain::ClipStatus::Done);
        assert_eq!(done.analysis.unwrap().summary, "A person tries the door handle.");
        assert_eq!(done.filter_result.unwrap().detections.len(), 1);
        assert_eq!(store.events_for("front_door_1790000000").unwrap().len(), 7);
        let pruned = store.get_clip("front_door_1789990000").unwrap().unwrap().pruned.unwrap();
        assert_eq!((pruned.at_ms, pruned.archive_left), (1_790_000_300_000, false));
        let q = ClipQuery { status: Some(crate::domain::ClipStatus::Quarantined), limit: 10, ..Default::default() };
        assert_eq!(ids(store.clips(&q).unwrap().clips), ["front_door_1790000200"]);
        assert_eq!(ids(store.set(Set::OnDisk, None).unwrap()).len(), 3, "the pruned clip has no files left");
        assert_eq!(store.source_file("front_door/a.mp4").unwrap().unwrap().size, 2_100_000);
        drop(store);
        // The records were rewritten in the current layout: readable without the upgrade.
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let clips = txn.open_table(CLIPS).unwrap();
        for row in clips.iter().unwrap() {
            let (_, v) = row.unwrap();
            assert_eq!(u16::from_le_bytes([v.value()[0], v.value()[1]]), <ClipRecord as Stored>::VERSION);
        }
    }

    #[test]
    fn an_unreadable_record_is_skipped_and_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        store.write(|w| w.insert_clip(&ClipRecord::new(clip("a", 1)))).unwrap();
        store.write(|w| w.insert_clip(&ClipRecord::new(clip("c", 3)))).unwrap();
        store
            .write(|w| {
                w.insert_clip(&ClipRecord::new(clip("b", 2)))?;
                // A record from a newer build, as a downgrade would leave it.
                let mut newer = 99u16.to_le_bytes().to_vec();
                newer.extend_from_slice(b"whatever");
                w.txn.open_table(CLIPS)?.insert("b", newer.as_slice())?;
                Ok(())
            })
            .unwrap();
        let ids: Vec<_> = store.recent_clips(10).unwrap().into_iter().map(|r| r.clip.clip_id.0).collect();
        assert_eq!(ids, ["c", "a"]);
        assert_eq!(store.unfinished_clips().unwrap().len(), 2, "recovery goes on past it");
        let bad = store.unreadable();
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, "clip b");
        assert!(bad[0].1.contains("version 99 is newer than this build reads"), "{}", bad[0].1);
    }

    #[test]
    fn listing_pages_follow_the_cursor_newest_first_per_camera_and_status() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        store
            .write(|w| {
                for i in 0..7 {
                    let mut c = clip(&format!("c{i}"), i * 1000);
                    if i % 2 == 1 {
                        c.camera = "back".into();
                    }
                    w.insert_clip(&ClipRecord::new(c))?;
                }
                w.update_clip("c4", [], |r| r.completed_ms = Some(1))?;
                w.update_clip("c3", [], |r| r.completed_ms = Some(1))?;
                Ok(())
            })
            .unwrap();
        let pages = |q: ClipQuery| {
            let mut out = Vec::new();
            let mut q = q;
            loop {
                let page = store.clips(&q).unwrap();
                out.push(page.clips.iter().map(|r| r.clip.clip_id.0.clone()).collect::<Vec<_>>());
                match page.next {
                    Some(c) => q.after = Some(Cursor::parse(&c.to_string()).unwrap()),
                    None => return out,
                }
            }
        };
        assert_eq!(
            pages(ClipQuery { limit: 3, ..Default::default() }),
            [vec!["c6", "c5", "c4"], vec!["c3", "c2", "c1"], vec!["c0"]]
        );
        assert_eq!(
            pages(ClipQuery { camera: Some("back".into()), limit: 2, ..Default::default() }),
            [vec!["c5", "c3"], vec!["c1"]]
        );
        let done = ClipQuery { status: Some(crate::domain::ClipStatus::Done), limit: 1, ..Default::default() };
        assert_eq!(pages(done.clone()), [vec!["c4"], vec!["c3"]]);
        let back_done = ClipQuery { camera: Some("back".into()), limit: 5, ..done };
        assert_eq!(pages(back_done), [vec!["c3"]]);
    }

    #[test]
    fn a_clip_keeps_its_first_and_latest_events_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        store.write(|w| w.insert_clip(&ClipRecord::new(clip("a", 1)))).unwrap();
        for attempt in 1..=(MAX_EVENTS_PER_CLIP as u32 + 20) {
            let kind = EventKind::StageStarted { stage: Stage::Upload, attempt };
            store.write(|w| w.update_clip("a", [kind], |_| {})).unwrap();
        }
        let events = store.events_for("a").unwrap();
        assert_eq!(events.len(), MAX_EVENTS_PER_CLIP);
        assert_eq!(events[0].kind, EventKind::ClipRecorded);
        assert_eq!(events[1].kind, EventKind::StageStarted { stage: Stage::Upload, attempt: 22 });
        assert_eq!(events.last().unwrap().kind, EventKind::StageStarted { stage: Stage::Upload, attempt: 70 });
    }
}
