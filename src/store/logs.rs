//! The log outbox: log records captured for Postgres (`logs`), kept by a
//! sequence number of their own until the sync has copied them, bounded (the
//! oldest go first, counted in `meta`).

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::codec::{decode, encode};
use super::{META, Store, StoreError, Writer};
use crate::domain::LogRecord;

/// Records by their sequence number (never reused: `meta.log_next`).
pub(super) const LOG_OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("log_outbox");
/// Records the outbox keeps before it drops the oldest.
pub const MAX_LOG_RECORDS: usize = 10_000;
/// `meta`: the next record's sequence number.
const NEXT: &str = "log_next";
/// `meta`: records dropped before Postgres had them, since the store was created.
const DROPPED: &str = "log_dropped";

/// A batch of the log outbox, oldest first.
#[derive(Debug, Default)]
pub struct LogBatch {
    pub records: Vec<(u64, LogRecord)>,
    /// Records that cannot be read (a newer build wrote them): acked with the batch.
    pub unreadable: Vec<u64>,
}

impl LogBatch {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.unreadable.is_empty()
    }

    /// Every record's sequence number, to ack once copied.
    pub fn seqs(&self) -> Vec<u64> {
        self.records.iter().map(|(s, _)| *s).chain(self.unreadable.iter().copied()).collect()
    }
}

impl Store {
    /// Records waiting for Postgres.
    pub fn log_backlog(&self) -> Result<u64, StoreError> {
        Ok(self.db.begin_read()?.open_table(LOG_OUTBOX)?.len()?)
    }

    /// Records dropped before Postgres had them (the outbox or the capture
    /// queue was full), since the store was created.
    pub fn logs_dropped(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(META)?.get(DROPPED)?.map_or(0, |v| v.value()))
    }

    /// Up to `limit` records waiting for Postgres, oldest first.
    pub fn log_batch(&self, limit: usize) -> Result<LogBatch, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOG_OUTBOX)?;
        let mut batch = LogBatch::default();
        for row in table.iter()?.take(limit) {
            let (k, v) = row?;
            match decode(&format!("log record {}", k.value()), v.value()) {
                Ok(r) => batch.records.push((k.value(), r)),
                Err(e) => {
                    self.report_unreadable(&format!("log record {}", k.value()), e.to_string());
                    batch.unreadable.push(k.value());
                }
            }
        }
        Ok(batch)
    }
}

impl Writer<'_> {
    /// Appends `records` (oldest first) and counts `dropped` records lost
    /// before they got here; keeps the newest `keep` records, counting those
    /// that go. Returns how many went.
    pub fn push_logs(&mut self, records: &[LogRecord], dropped: u64, keep: usize) -> Result<u64, StoreError> {
        let mut meta = self.txn.open_table(META)?;
        let mut table = self.txn.open_table(LOG_OUTBOX)?;
        let mut next = meta.get(NEXT)?.map_or(1, |v| v.value());
        for r in records {
            table.insert(next, encode(r)?.as_slice())?;
            next += 1;
        }
        meta.insert(NEXT, next)?;
        let excess = (table.len()? as usize).saturating_sub(keep);
        let cut = match excess {
            0 => None,
            n => table.iter()?.nth(n - 1).transpose()?.map(|(k, _)| k.value()),
        };
        if let Some(cut) = cut {
            table.retain_in(..=cut, |_, _| false)?;
        }
        let lost = dropped + excess as u64;
        if lost > 0 {
            let before = meta.get(DROPPED)?.map_or(0, |v| v.value());
            meta.insert(DROPPED, before + lost)?;
        }
        Ok(excess as u64)
    }

    /// Forgets records Postgres has.
    pub fn ack_logs(&mut self, seqs: &[u64]) -> Result<(), StoreError> {
        let mut table = self.txn.open_table(LOG_OUTBOX)?;
        for s in seqs {
            table.remove(*s)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{FieldValue, LogField, LogLevel};

    fn record(n: i64) -> LogRecord {
        LogRecord {
            id: n * 1_000,
            ts_ms: 1_700_000_000_000 + n,
            level: LogLevel::Warn,
            target: "homesec::sources::folder".into(),
            message: format!("warning {n}"),
            fields: vec![LogField { name: "camera".into(), value: FieldValue::Str("porch".into()) }],
        }
    }

    fn messages(store: &Store) -> Vec<String> {
        store.log_batch(100).unwrap().records.into_iter().map(|(_, r)| r.message).collect()
    }

    #[test]
    fn records_wait_in_order_until_acked_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let store = Store::open(&path).unwrap();
            assert_eq!(store.log_backlog().unwrap(), 0);
            store.write(|w| w.push_logs(&[record(1), record(2)], 0, MAX_LOG_RECORDS)).unwrap();
            store.write(|w| w.push_logs(&[record(3)], 0, MAX_LOG_RECORDS)).unwrap();
        }
        let store = Store::open(&path).unwrap();
        let batch = store.log_batch(2).unwrap();
        assert_eq!(batch.records, [(1, record(1)), (2, record(2))]);
        store.write(|w| w.ack_logs(&batch.seqs())).unwrap();
        assert_eq!(messages(&store), ["warning 3"]);
        store.write(|w| w.ack_logs(&[3])).unwrap();
        assert_eq!(store.log_backlog().unwrap(), 0);
        // Numbers are never reused, even once the outbox is empty.
        store.write(|w| w.push_logs(&[record(4)], 0, MAX_LOG_RECORDS)).unwrap();
        assert_eq!(store.log_batch(10).unwrap().seqs(), [4]);
        assert_eq!(store.logs_dropped().unwrap(), 0);
    }

    #[test]
    fn the_outbox_keeps_the_newest_and_counts_what_it_drops() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let went = store.write(|w| w.push_logs(&(1..=4).map(record).collect::<Vec<_>>(), 0, 3)).unwrap();
        assert_eq!(went, 1);
        assert_eq!(messages(&store), ["warning 2", "warning 3", "warning 4"]);
        // Records the capture queue dropped count too.
        store.write(|w| w.push_logs(&[record(5), record(6)], 7, 3)).unwrap();
        assert_eq!(messages(&store), ["warning 4", "warning 5", "warning 6"]);
        assert_eq!(store.logs_dropped().unwrap(), 1 + 2 + 7);
        assert_eq!(store.log_backlog().unwrap(), 3);
        // A batch read before the oldest went is acked harmlessly.
        store.write(|w| w.ack_logs(&[1, 2, 4])).unwrap();
        assert_eq!(messages(&store), ["warning 5", "warning 6"]);
    }

    #[test]
    fn an_unreadable_record_is_handed_over_to_be_acked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        store
            .write(|w| {
                w.push_logs(&[record(1), record(2)], 0, MAX_LOG_RECORDS)?;
                let mut newer = 99u16.to_le_bytes().to_vec();
                newer.extend_from_slice(b"whatever");
                w.txn.open_table(LOG_OUTBOX)?.insert(1, newer.as_slice())?;
                Ok(())
            })
            .unwrap();
        let batch = store.log_batch(10).unwrap();
        assert_eq!(batch.records, [(2, record(2))]);
        assert_eq!(batch.unreadable, [1]);
        store.write(|w| w.ack_logs(&batch.seqs())).unwrap();
        assert!(store.log_batch(10).unwrap().is_empty());
    }
}
