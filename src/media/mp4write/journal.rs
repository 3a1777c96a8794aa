//! The recovery journal of a clip being written: `<clip>.mp4.part.idx`, what
//! [`recover`](super::recover) needs to write `moov` for a `.part` file whose
//! writer never finished (the daemon killed, the power cut).
//!
//! Format, version 1, all integers big-endian:
//!
//! ```text
//! header   magic "HSMP4J" | version u16 = 1 | timescale u32 | data_at u64
//!          | start_wall_ms i64 (i64::MIN: unknown) | entry_len u32
//!          | sample entry box (entry_len bytes) | crc32 u32 of everything before
//! entries  size u32 | pts i64 | flags u32 (bit 0: sync sample) | crc32 u32 of the 16 bytes before
//! ```
//!
//! Samples lie back to back in the `.part` file from `data_at` on, in the
//! order of the entries. Entries are appended in batches, each only after the
//! samples it describes were written to the `.part` file, so the journal never
//! points past data the file has. A reader keeps the entries up to the first
//! one that is cut short or fails its checksum.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::SampleEntry;
use super::moov::SampleTable;

const MAGIC: &[u8; 6] = b"HSMP4J";
const VERSION: u16 = 1;
/// Header bytes before the sample entry.
const FIXED_HEADER: usize = 6 + 2 + 4 + 8 + 8 + 4;
const ENTRY: usize = 20;
const SYNC: u32 = 1;
const UNKNOWN_WALL: i64 = i64::MIN;

/// `<dest>.part.idx`: the journal of the `.part` file for `dest`.
pub fn journal_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part.idx");
    dest.with_file_name(name)
}

/// What a journal's header says about its clip.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Header {
    pub(super) entry: SampleEntry,
    pub(super) timescale: u32,
    pub(super) data_at: u64,
    pub(super) start_wall_ms: Option<i64>,
}

/// The appending end, owned by the writer.
pub(super) struct JournalWriter {
    pub(super) path: PathBuf,
    file: File,
    /// Samples journaled so far.
    journaled: usize,
    /// Presentation time of the first sample not journaled yet.
    pending_since: Option<i64>,
    /// Reused for each batch.
    buf: Vec<u8>,
    dir_synced: bool,
}

impl JournalWriter {
    /// Creates (or truncates) the journal at `path` and writes its header.
    pub(super) fn create(path: &Path, header: &Header) -> io::Result<Self> {
        let mut file = File::create(path)?;
        file.write_all(&encode_header(header))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            journaled: 0,
            pending_since: None,
            buf: Vec::with_capacity(64 * ENTRY),
            dir_synced: false,
        })
    }

    /// Whether a batch is due after a sample at `pts`: at each sync sample, and
    /// once the samples waiting span `every` timescale units.
    pub(super) fn due(&mut self, pts: i64, is_sync: bool, every: u32) -> bool {
        let since = *self.pending_since.get_or_insert(pts);
        is_sync || pts.abs_diff(since) >= u64::from(every)
    }

    /// Appends the entries of the samples not journaled yet. The caller has
    /// written (flushed) their data to the `.part` file first.
    pub(super) fn append(&mut self, samples: &SampleTable) -> io::Result<()> {
        self.buf.clear();
        for i in self.journaled..samples.len() {
            let flags = if samples.is_sync(i) { SYNC } else { 0 };
            let at = self.buf.len();
            self.buf.extend_from_slice(&samples.sizes[i].to_be_bytes());
            self.buf.extend_from_slice(&samples.pts[i].to_be_bytes());
            self.buf.extend_from_slice(&flags.to_be_bytes());
            let crc = crc32fast::hash(&self.buf[at..]);
            self.buf.extend_from_slice(&crc.to_be_bytes());
        }
        self.file.write_all(&self.buf)?;
        self.journaled = samples.len();
        self.pending_since = None;
        Ok(())
    }

    /// Makes the journal durable; the first time, the directory too (so that the
    /// `.part` file and the journal are found after a power cut).
    pub(super) fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        if !self.dir_synced {
            if let Some(dir) = self.path.parent() {
                crate::fsutil::sync_dir(dir)?;
            }
            self.dir_synced = true;
        }
        Ok(())
    }

    /// Closes and removes the journal.
    pub(super) fn remove(self) -> io::Result<()> {
        drop(self.file);
        remove_if_present(&self.path)
    }
}

pub(super) fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn encode_header(h: &Header) -> Vec<u8> {
    let entry = h.entry.as_bytes();
    let mut out = Vec::with_capacity(FIXED_HEADER + entry.len() + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&h.timescale.to_be_bytes());
    out.extend_from_slice(&h.data_at.to_be_bytes());
    out.extend_from_slice(&h.start_wall_ms.unwrap_or(UNKNOWN_WALL).to_be_bytes());
    // Sample entries are small boxes (parameter sets), far below 4 GiB.
    out.extend_from_slice(&(entry.len() as u32).to_be_bytes());
    out.extend_from_slice(entry);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// A journal as read back.
#[derive(Debug)]
pub(super) struct Contents {
    pub(super) header: Header,
    pub(super) samples: SampleTable,
    /// Why reading stopped before the end of the file, if it did.
    pub(super) torn: Option<String>,
}

/// Why a journal cannot be used at all.
#[derive(Debug)]
pub(super) enum ReadError {
    Missing,
    Io(io::Error),
    /// The header is cut short, of another version, or fails its checksum.
    Invalid(String),
}

/// Reads the journal at `path`: its header and every entry up to the first
/// one that is cut short or damaged.
pub(super) fn read(path: &Path) -> Result<Contents, ReadError> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadError::Missing),
        Err(e) => return Err(ReadError::Io(e)),
    };
    let invalid = |m: &str| ReadError::Invalid(m.to_owned());
    if data.len() < FIXED_HEADER {
        return Err(invalid("its header is cut short"));
    }
    if &data[..6] != MAGIC {
        return Err(invalid("it is not a HomeSec recording journal"));
    }
    let version = u16::from_be_bytes([data[6], data[7]]);
    if version != VERSION {
        return Err(ReadError::Invalid(format!("journal version {version} is not supported (only {VERSION})")));
    }
    let u32_at = |at: usize| u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    let u64_at = |at: usize| {
        let mut b = [0; 8];
        b.copy_from_slice(&data[at..at + 8]);
        u64::from_be_bytes(b)
    };
    let timescale = u32_at(8);
    let data_at = u64_at(12);
    let wall = u64_at(20) as i64;
    let entry_len = u32_at(28) as usize;
    let header_end = FIXED_HEADER.saturating_add(entry_len);
    if data.len() < header_end.saturating_add(4) {
        return Err(invalid("its header is cut short"));
    }
    if crc32fast::hash(&data[..header_end]) != u32_at(header_end) {
        return Err(invalid("its header fails its checksum"));
    }
    if timescale == 0 {
        return Err(invalid("its timescale is 0"));
    }
    let entry = SampleEntry::from_box(data[FIXED_HEADER..header_end].to_vec())
        .map_err(|e| ReadError::Invalid(format!("its sample entry is unusable: {e}")))?;
    let header = Header { entry, timescale, data_at, start_wall_ms: (wall != UNKNOWN_WALL).then_some(wall) };

    let mut samples = SampleTable::default();
    let mut torn = None;
    let body = &data[header_end + 4..];
    for (i, e) in body.chunks(ENTRY).enumerate() {
        if e.len() < ENTRY {
            torn = Some(format!("entry {} is cut short", i + 1));
            break;
        }
        let crc = u32::from_be_bytes([e[16], e[17], e[18], e[19]]);
        if crc32fast::hash(&e[..16]) != crc {
            torn = Some(format!("entry {} fails its checksum", i + 1));
            break;
        }
        let size = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
        let mut pts = [0; 8];
        pts.copy_from_slice(&e[4..12]);
        let flags = u32::from_be_bytes([e[12], e[13], e[14], e[15]]);
        samples.push(size, i64::from_be_bytes(pts), flags & SYNC != 0);
    }
    Ok(Contents { header, samples, torn })
}

#[cfg(test)]
mod tests {
    use super::super::sample_entry::tests::entry;
    use super::*;

    fn header() -> Header {
        Header { entry: entry(), timescale: 90000, data_at: 44, start_wall_ms: Some(1_700_000_000_000) }
    }

    #[test]
    fn entries_read_back_up_to_the_first_damaged_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = journal_path(&dir.path().join("c.mp4"));
        assert!(path.ends_with("c.mp4.part.idx"));
        let mut w = JournalWriter::create(&path, &header()).unwrap();
        let mut t = SampleTable::default();
        for i in 0..10i64 {
            t.push(100 + i as u32, i * 3000, i % 5 == 0);
            if w.due(i * 3000, i % 5 == 0, 9000) {
                w.append(&t).unwrap();
            }
        }
        w.append(&t).unwrap();
        w.sync().unwrap();
        let c = read(&path).unwrap();
        assert_eq!(c.header, header());
        assert_eq!(c.samples, t);
        assert!(c.torn.is_none());

        // Cut mid-entry: the whole entries stay.
        let full = fs::read(&path).unwrap();
        fs::write(&path, &full[..full.len() - 7]).unwrap();
        let c = read(&path).unwrap();
        assert_eq!(c.samples.len(), 9);
        assert_eq!(c.torn.as_deref(), Some("entry 10 is cut short"));

        // A flipped bit in entry 4: entries 1-3 stay.
        let mut bad = full.clone();
        let at = full.len() - 7 * ENTRY + 5;
        bad[at] ^= 0x10;
        fs::write(&path, &bad).unwrap();
        let c = read(&path).unwrap();
        assert_eq!((c.samples.len(), c.samples.sync.clone()), (3, vec![1]));

        // A damaged or cut header makes the journal unusable.
        let mut bad = full.clone();
        bad[10] ^= 1;
        fs::write(&path, &bad).unwrap();
        assert!(matches!(read(&path), Err(ReadError::Invalid(m)) if m.contains("checksum")));
        fs::write(&path, &full[..20]).unwrap();
        assert!(matches!(read(&path), Err(ReadError::Invalid(m)) if m.contains("cut short")));
        fs::remove_file(&path).unwrap();
        assert!(matches!(read(&path), Err(ReadError::Missing)));
    }
}
