//! Reading clips through the indexes: pages of a listing (newest first, with a
//! cursor) and the sets background tasks work through (oldest first).

use std::fmt;
use std::ops::ControlFlow;

use redb::{ReadableDatabase, ReadableTable};

use super::index::{INDEX, Index, Set};
use super::{CLIPS, Store, StoreError, codec::decode};
use crate::domain::{ClipRecord, ClipStatus, UnixMillis};

/// Where a page of a listing ends: the next page starts after this clip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub start_ms: UnixMillis,
    pub clip_id: String,
}

impl Cursor {
    fn of(r: &ClipRecord) -> Self {
        Cursor { start_ms: r.clip.start_ms, clip_id: r.clip.clip_id.0.clone() }
    }

    /// Reads a cursor as [`Cursor`]'s `Display` writes it (`<start_ms>.<clip_id>`).
    pub fn parse(s: &str) -> Option<Self> {
        let (start, id) = s.split_once('.')?;
        Some(Cursor { start_ms: start.parse().ok()?, clip_id: id.to_owned() })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.start_ms, self.clip_id)
    }
}

/// Which clips a listing shows: newest first, optionally one camera's or one status's.
#[derive(Clone, Debug, Default)]
pub struct ClipQuery {
    pub camera: Option<String>,
    pub status: Option<ClipStatus>,
    /// Continue after this clip (the previous page's `next`).
    pub after: Option<Cursor>,
    pub limit: usize,
}

/// One page of a listing.
#[derive(Clone, Debug, Default)]
pub struct ClipPage {
    pub clips: Vec<ClipRecord>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

impl Store {
    /// One page of clips, newest first. Records that cannot be read are
    /// skipped (and reported, see [`Store::unreadable`]).
    pub fn clips(&self, q: &ClipQuery) -> Result<ClipPage, StoreError> {
        let txn = self.db.begin_read()?;
        let clips = txn.open_table(CLIPS)?;
        let index = match (q.status, q.camera.as_deref()) {
            (Some(status), Some(camera)) => Index::CameraStatus(camera, status),
            (Some(status), None) => Index::Status(status),
            (None, Some(camera)) => Index::Camera(camera),
            (None, None) => Index::Time,
        };
        let name = index.name();
        let end = q.after.as_ref().map_or((i64::MAX, ""), |c| (c.start_ms, c.clip_id.as_str()));
        let table = txn.open_table(INDEX)?;
        let mut page = ClipPage::default();
        for row in table.range((name.as_str(), i64::MIN, "")..(name.as_str(), end.0, end.1))?.rev() {
            let (k, _) = row?;
            if page.clips.len() == q.limit {
                page.next = page.clips.last().map(Cursor::of);
                break;
            }
            if let Some(r) = self.read_clip(&clips, k.value().2)? {
                page.clips.push(r);
            }
        }
        Ok(page)
    }

    /// The newest `limit` clips.
    pub fn recent_clips(&self, limit: usize) -> Result<Vec<ClipRecord>, StoreError> {
        Ok(self.clips(&ClipQuery { limit, ..ClipQuery::default() })?.clips)
    }

    /// Every clip of a set that started before `before_ms` (all when `None`), oldest first.
    pub fn set(&self, set: Set, before_ms: Option<UnixMillis>) -> Result<Vec<ClipRecord>, StoreError> {
        let mut out = Vec::new();
        self.scan_set(set, before_ms, |r| {
            out.push(r);
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    /// Hands the clips of a set that started before `before_ms` to `f`, oldest
    /// first, until `f` breaks.
    pub fn scan_set(
        &self,
        set: Set,
        before_ms: Option<UnixMillis>,
        mut f: impl FnMut(ClipRecord) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_read()?;
        let clips = txn.open_table(CLIPS)?;
        let table = txn.open_table(INDEX)?;
        let name = Index::Set(set).name();
        let end = before_ms.unwrap_or(i64::MAX);
        for row in table.range((name.as_str(), i64::MIN, "")..(name.as_str(), end, ""))? {
            let (k, _) = row?;
            if let Some(r) = self.read_clip(&clips, k.value().2)?
                && f(r).is_break()
            {
                break;
            }
        }
        Ok(())
    }

    /// Number of clips in a set (counts index entries; reads no record).
    pub fn set_len(&self, set: Set) -> Result<u64, StoreError> {
        let table = self.db.begin_read()?.open_table(INDEX)?;
        let name = Index::Set(set).name();
        let mut n = 0;
        for row in table.range((name.as_str(), i64::MIN, "")..(name.as_str(), i64::MAX, ""))? {
            row?;
            n += 1;
        }
        Ok(n)
    }

    /// A record found through an index; `None` when it is gone or cannot be
    /// read (then reported).
    fn read_clip(
        &self,
        clips: &impl ReadableTable<&'static str, &'static [u8]>,
        id: &str,
    ) -> Result<Option<ClipRecord>, StoreError> {
        let Some(v) = clips.get(id)? else { return Ok(None) };
        match decode::<ClipRecord>(&format!("clip {id}"), v.value()) {
            Ok(r) => Ok(Some(r)),
            Err(e) => {
                self.report_unreadable(&format!("clip {id}"), e.to_string());
                Ok(None)
            }
        }
    }
}
