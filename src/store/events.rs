//! The event log: what happened to each clip, kept by clip (`(clip_id, n)`,
//! one tree to update per event), at most [`MAX_EVENTS_PER_CLIP`] a clip, and
//! the sync outbox of events not yet copied to Postgres (written only when
//! something drains it).

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

use super::codec::{decode, encode};
use super::{MAX_EVENTS_PER_CLIP, Store, StoreError, Writer};
use crate::domain::{Clip, ClipEvent, EventKind};

/// Events by `(clip_id, n)`, `n` counting from 1 per clip.
pub(super) const EVENTS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("clip_event_log");
/// Events not yet copied to Postgres.
pub(super) const SYNC_OUTBOX: TableDefinition<(&str, u32), ()> = TableDefinition::new("clip_event_sync");

/// Layout 1: events by a global sequence number, with a clip → numbers index
/// and a sync outbox of numbers.
mod v1 {
    use redb::{MultimapTableDefinition, TableDefinition};
    pub(super) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
    pub(super) const CLIP_EVENTS: MultimapTableDefinition<&str, u64> = MultimapTableDefinition::new("clip_events");
    pub(super) const SYNC_OUTBOX: TableDefinition<u64, ()> = TableDefinition::new("sync_outbox");
}

/// One event in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventId {
    pub clip_id: String,
    pub n: u32,
}

/// Moves layout 1's events to the log by clip, in their order; drops layout
/// 1's sync outbox (nothing drained it). Events that cannot be read are
/// returned with the reason and dropped.
pub(super) fn migrate(txn: &WriteTransaction) -> Result<Vec<(String, String)>, StoreError> {
    let mut unreadable = Vec::new();
    {
        let old = txn.open_table(v1::EVENTS)?;
        let mut new = txn.open_table(EVENTS)?;
        let mut counts = std::collections::HashMap::<String, u32>::new();
        for row in old.iter()? {
            let (k, v) = row?;
            match decode::<ClipEvent>(&format!("event {}", k.value()), v.value()) {
                Ok(e) => {
                    let n = counts.entry(e.clip_id.0.clone()).or_default();
                    *n += 1;
                    new.insert((e.clip_id.as_str(), *n), encode(&e)?.as_slice())?;
                }
                Err(e) => unreadable.push((format!("event {}", k.value()), e.to_string())),
            }
        }
    }
    txn.delete_table(v1::EVENTS)?;
    txn.delete_multimap_table(v1::CLIP_EVENTS)?;
    txn.delete_table(v1::SYNC_OUTBOX)?;
    Ok(unreadable)
}

/// The range of one clip's keys.
fn of(clip_id: &str) -> std::ops::RangeInclusive<(&str, u32)> {
    (clip_id, 0)..=(clip_id, u32::MAX)
}

impl Store {
    /// A clip's events, oldest first.
    pub fn events_for(&self, id: &str) -> Result<Vec<ClipEvent>, StoreError> {
        let txn = self.db.begin_read()?;
        let events = txn.open_table(EVENTS)?;
        let mut out = Vec::new();
        for row in events.range(of(id))? {
            let (k, v) = row?;
            out.push(decode(&format!("event {id}/{}", k.value().1), v.value())?);
        }
        Ok(out)
    }

    /// A clip's events with their numbers, oldest first.
    pub fn numbered_events_for(&self, id: &str) -> Result<Vec<(EventId, ClipEvent)>, StoreError> {
        let txn = self.db.begin_read()?;
        let events = txn.open_table(EVENTS)?;
        let mut out = Vec::new();
        for row in events.range(of(id))? {
            let (k, v) = row?;
            let n = k.value().1;
            out.push((EventId { clip_id: id.to_owned(), n }, decode(&format!("event {id}/{n}"), v.value())?));
        }
        Ok(out)
    }

    /// When the oldest event not yet copied to Postgres happened (reads every
    /// waiting event: for diagnostics, not for hot paths).
    pub fn sync_oldest_pending_ms(&self) -> Result<Option<i64>, StoreError> {
        let txn = self.db.begin_read()?;
        let pending = txn.open_table(SYNC_OUTBOX)?;
        let events = txn.open_table(EVENTS)?;
        let mut oldest = None;
        for row in pending.iter()? {
            let (k, _) = row?;
            let (clip_id, n) = k.value();
            if let Some(v) = events.get((clip_id, n))?
                && let Ok(e) = decode::<ClipEvent>(&format!("event {clip_id}/{n}"), v.value())
            {
                oldest = Some(oldest.map_or(e.ts_ms, |o: i64| o.min(e.ts_ms)));
            }
        }
        Ok(oldest)
    }

    /// Number of events not yet copied to Postgres.
    pub fn sync_backlog(&self) -> Result<u64, StoreError> {
        Ok(self.db.begin_read()?.open_table(SYNC_OUTBOX)?.len()?)
    }

    /// Up to `limit` events not yet copied to Postgres, each clip's in order.
    pub fn sync_batch(&self, limit: usize) -> Result<Vec<(EventId, ClipEvent)>, StoreError> {
        let txn = self.db.begin_read()?;
        let pending = txn.open_table(SYNC_OUTBOX)?;
        let events = txn.open_table(EVENTS)?;
        let mut out = Vec::new();
        for row in pending.iter()?.take(limit) {
            let (k, _) = row?;
            let (clip_id, n) = k.value();
            if let Some(v) = events.get((clip_id, n))? {
                let id = EventId { clip_id: clip_id.to_owned(), n };
                out.push((id, decode(&format!("event {clip_id}/{n}"), v.value())?));
            }
        }
        Ok(out)
    }
}

impl Writer<'_> {
    /// Appends an event, dated now, to the clip's log (and queues it for
    /// Postgres when something drains the sync outbox). A clip keeps its first
    /// event and its latest ones, [`MAX_EVENTS_PER_CLIP`] in all.
    pub(super) fn event(&mut self, clip: &Clip, kind: EventKind) -> Result<(), StoreError> {
        let event = ClipEvent { ts_ms: self.clock.now_ms(), ..ClipEvent::new(clip, kind) };
        let id = event.clip_id.as_str();
        let excess = {
            let mut events = self.txn.open_table(EVENTS)?;
            let n = events.range(of(id))?.next_back().transpose()?.map_or(1, |(k, _)| k.value().1 + 1);
            events.insert((id, n), encode(&event)?.as_slice())?;
            if self.sync_outbox {
                self.txn.open_table(SYNC_OUTBOX)?.insert((id, n), ())?;
            }
            let count = events.range(of(id))?.count();
            let keep_from = events.range(of(id))?.nth(count.saturating_sub(MAX_EVENTS_PER_CLIP - 1));
            match (count > MAX_EVENTS_PER_CLIP, keep_from.transpose()?) {
                // Between the first and the oldest kept.
                (true, Some((k, _))) => Some(2..k.value().1),
                _ => None,
            }
        };
        if let Some(ns) = excess {
            self.remove_events(id, ns)?;
        }
        Ok(())
    }

    /// Drops a clip's events (its record goes).
    pub(super) fn drop_events(&mut self, id: &str) -> Result<(), StoreError> {
        self.remove_events(id, 0..u32::MAX)
    }

    /// Drops a clip's events but its latest (its record shrinks): an event
    /// that comes later still gets the next number, never one Postgres has.
    pub(super) fn drop_events_but_last(&mut self, id: &str) -> Result<(), StoreError> {
        let last = self.txn.open_table(EVENTS)?.range(of(id))?.next_back().transpose()?.map(|(k, _)| k.value().1);
        match last {
            Some(n) => self.remove_events(id, 0..n),
            None => Ok(()),
        }
    }

    /// Removes a clip's events numbered `ns` (and their sync outbox entries).
    fn remove_events(&mut self, clip_id: &str, ns: std::ops::Range<u32>) -> Result<(), StoreError> {
        let mut events = self.txn.open_table(EVENTS)?;
        let mut sync = self.txn.open_table(SYNC_OUTBOX)?;
        events.retain_in((clip_id, ns.start)..(clip_id, ns.end), |_, _| false)?;
        sync.retain_in((clip_id, ns.start)..(clip_id, ns.end), |_, _| false)?;
        Ok(())
    }

    /// Marks events as copied to Postgres.
    pub fn ack_synced(&mut self, ids: &[EventId]) -> Result<(), StoreError> {
        let mut pending = self.txn.open_table(SYNC_OUTBOX)?;
        for id in ids {
            pending.remove((id.clip_id.as_str(), id.n))?;
        }
        Ok(())
    }
}
