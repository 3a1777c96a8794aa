//! Keeping the store bounded: records of pruned clips shrink to a summary,
//! summaries go after a longer horizon, old source-file entries are forgotten.
//! Each pass reads only the clips past its cutoff (through the set indexes) and
//! commits in batches, so a pass cut by a power loss leaves whole records.

use redb::{ReadableDatabase, ReadableTable};

use super::index::{self, INDEX, Index, Set};
use super::{CLIPS, EARLY_ALERTS, SOURCE_FILES, SourceFileEntry, Store, StoreError, Writer, codec};
use crate::domain::UnixMillis;

/// Records changed per transaction.
const BATCH: usize = 256;

/// A stage error kept in a summary is cut to this many characters.
const SUMMARY_ERROR_CHARS: usize = 200;

impl Store {
    /// Reduces the records of pruned clips that started before `before_ms` to
    /// their summary: status, times, the stored copy's link, classes, risk and
    /// VLM summary stay; detections, the VLM timeline, the paths of the deleted
    /// files and the events but the latest go. Returns how many.
    pub fn compact_before(&self, before_ms: UnixMillis) -> Result<usize, StoreError> {
        self.in_batches(Set::Pruned, before_ms, |w, start, id| w.compact_clip(start, id))
    }

    /// Deletes the summaries of clips that started before `before_ms`. Returns how many.
    pub fn forget_before(&self, before_ms: UnixMillis) -> Result<usize, StoreError> {
        self.in_batches(Set::Compacted, before_ms, |w, start, id| w.delete_clip(start, id))
    }

    /// Forgets what sources remember of files they saw before `before_ms`
    /// (their files left the source's folder long ago). Returns how many.
    pub fn forget_source_files(&self, before_ms: UnixMillis) -> Result<usize, StoreError> {
        let mut old = Vec::new();
        for row in self.db.begin_read()?.open_table(SOURCE_FILES)?.iter()? {
            let (k, v) = row?;
            // An entry that cannot be read is of no use either.
            let seen = codec::decode::<SourceFileEntry>("source file", v.value()).map_or(i64::MIN, |e| e.seen_ms);
            if seen < before_ms {
                old.push(k.value().to_owned());
            }
        }
        // Nothing to forget: no commit (an idle pass writes nothing).
        if !old.is_empty() {
            self.write(|w| {
                let mut table = w.txn.open_table(SOURCE_FILES)?;
                old.iter().try_for_each(|key| table.remove(key.as_str()).map(|_| ()))?;
                Ok(())
            })?;
        }
        Ok(old.len())
    }

    fn in_batches(
        &self,
        set: Set,
        before_ms: UnixMillis,
        change: impl Fn(&mut Writer<'_>, i64, &str) -> Result<(), StoreError>,
    ) -> Result<usize, StoreError> {
        let name = Index::Set(set).name();
        let mut done = 0;
        loop {
            // Nothing past the cutoff: no commit (an idle pass writes nothing).
            let range = (name.as_str(), i64::MIN, "")..(name.as_str(), before_ms, "");
            if self.db.begin_read()?.open_table(INDEX)?.range(range)?.next().is_none() {
                return Ok(done);
            }
            let n = self.write(|w| {
                let keys: Vec<(i64, String)> = {
                    let table = w.txn.open_table(INDEX)?;
                    let rows = table.range((name.as_str(), i64::MIN, "")..(name.as_str(), before_ms, ""))?.take(BATCH);
                    rows.map(|row| row.map(|(k, _)| (k.value().1, k.value().2.to_owned()))).collect::<Result<_, _>>()?
                };
                for (start, id) in &keys {
                    change(w, *start, id)?;
                }
                Ok(keys.len())
            })?;
            done += n;
            if n < BATCH {
                return Ok(done);
            }
        }
    }
}

impl Writer<'_> {
    /// Reduces one record to its summary and drops its events.
    fn compact_clip(&mut self, start: i64, id: &str) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let old = match self.clip(id) {
            Ok(r) => r,
            // Unreadable: it cannot be shrunk; it leaves the set and stays as it is.
            Err(StoreError::Corrupt { .. }) => {
                self.txn.open_table(INDEX)?.remove((Index::Set(Set::Pruned).name().as_str(), start, id))?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mut r = old.clone();
        if let Some(f) = &mut r.filter_result {
            f.detections = Vec::new();
        }
        if let Some(a) = &mut r.analysis {
            a.entities_timeline = Vec::new();
        }
        // Their files are gone.
        r.snapshot_path = None;
        r.clip.local_path = String::new();
        for log in [&mut r.upload, &mut r.filter, &mut r.vlm, &mut r.notify] {
            if let Some(e) = &mut log.last_error
                && let Some((cut, _)) = e.char_indices().nth(SUMMARY_ERROR_CHARS)
            {
                e.truncate(cut);
            }
        }
        r.compacted_ms = Some(now);
        self.txn.open_table(CLIPS)?.insert(id, codec::encode(&r)?.as_slice())?;
        index::reindex(self.txn, Some(&old), Some(&r))?;
        self.drop_events_but_last(id)
    }

    /// Deletes a record with its index entries and events.
    fn delete_clip(&mut self, start: i64, id: &str) -> Result<(), StoreError> {
        match self.clip(id) {
            Ok(old) => index::reindex(self.txn, Some(&old), None)?,
            Err(StoreError::Corrupt { .. }) => {
                self.txn.open_table(INDEX)?.remove((Index::Set(Set::Compacted).name().as_str(), start, id))?;
            }
            Err(e) => return Err(e),
        }
        self.txn.open_table(CLIPS)?.remove(id)?;
        self.txn.open_table(EARLY_ALERTS)?.remove(id)?;
        self.drop_events(id)
    }
}
