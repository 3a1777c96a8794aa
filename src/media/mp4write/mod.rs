//! Streaming MP4 writer for passthrough H.264 / H.265: the camera's encoded
//! samples go into the file unchanged.
//!
//! Layout: `ftyp`, one `mdat` that grows as samples arrive, then `moov` (written
//! by [`Mp4Writer::finish`]). Only the sample tables are kept in memory (about
//! 12 bytes per sample), never the video. The file is written as
//! `<dest>.part`, fsynced, renamed to `<dest>` and the directory fsynced
//! ([`PartFile`](crate::fsutil::PartFile)), so a finished clip is either
//! absent or complete (ARCHITECTURE §5.1).
//!
//! Beside the `.part` file the writer keeps a recovery journal,
//! `<dest>.part.idx` ([`journal_path`]): the sample entry, the timescale, the
//! clip's start time and, per sample, size, presentation time and sync flag.
//! It is appended at each keyframe and at least once a second of samples,
//! always after the samples it describes were flushed to the `.part` file, and
//! both files are fsynced at keyframes. When the writer never finishes (the
//! daemon killed, the power cut), [`recover`] turns the `.part` file into a
//! playable clip of every journaled sample: a crash loses at most about the
//! last GOP.
//!
//! Samples are length-prefixed NAL units (AVCC / HVCC with 4-byte lengths, the
//! way retina delivers them with its default frame format). The sample entry
//! (`avc1` / `hvc1` box with its `avcC` / `hvcC`) comes from retina
//! (`VideoParameters::mp4_sample_entry()`), or is built here from the SPS and
//! PPS ([`SampleEntry::avc1_from_parameter_sets`]) for sources without retina.
//!
//! Timestamps are presentation times; samples arrive in decode order. When
//! presentation order differs (B-frames), decode times are derived from the
//! sorted presentation times and a `ctts` plus an edit list make the first
//! presented frame start at 0.

use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::fsutil::PartFile;
pub use crate::fsutil::part_path;

mod journal;
mod moov;
mod recover;
mod sample_entry;

pub use journal::journal_path;
pub use recover::{Recovered, recover};
pub use sample_entry::SampleEntry;

use journal::{Header, JournalWriter};
use moov::{SampleTable, Tables, Track};

#[derive(Debug, thiserror::Error)]
pub enum Mp4WriteError {
    #[error("cannot write {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid MP4 sample entry: {0}")]
    SampleEntry(String),
    #[error("the first sample of {path} is not a keyframe")]
    NotKeyframe { path: String },
    #[error("sample of {size} bytes is not length-prefixed video")]
    BadSample { size: usize },
    #[error("no samples were written to {path}")]
    Empty { path: String },
    #[error("the writer for {path} failed earlier and was closed")]
    Closed { path: String },
    #[error("cannot recover {path}: it is not a `<clip>.mp4.part` file")]
    NotPart { path: String },
    #[error("cannot recover {part}: {dest} exists already (both are left for a person to look at)")]
    DestExists { part: String, dest: String },
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> Mp4WriteError + '_ {
    move |source| Mp4WriteError::Io { path: path.display().to_string(), source }
}

/// What [`Mp4Writer::finish`] (or [`recover`]) wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Mp4Summary {
    pub path: PathBuf,
    pub samples: u32,
    pub keyframes: u32,
    /// Presentation duration in track timescale units.
    pub duration: u64,
    pub duration_s: f64,
    pub bytes: u64,
}

/// How [`Mp4Writer::create_with`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// Keep the recovery journal (`<dest>.part.idx`). On by default.
    pub journal: bool,
    /// Wall-clock time of the first sample (unix ms), kept in the journal so a
    /// recovered clip knows when it started.
    pub start_wall_ms: Option<i64>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self { journal: true, start_wall_ms: None }
    }
}

/// Writes one video track to `<dest>.part` as samples arrive; [`finish`](Self::finish)
/// completes and renames it. Dropped unfinished, it removes the `.part` file
/// and its journal (a crash, which runs no drop, leaves both for [`recover`]).
pub struct Mp4Writer {
    dest: PathBuf,
    part: PathBuf,
    file: Option<BufWriter<PartFile>>,
    journal: Option<JournalWriter>,
    entry: SampleEntry,
    timescale: u32,
    /// File offset of the `mdat` header and of its first sample.
    mdat_at: u64,
    data_at: u64,
    data_len: u64,
    samples: SampleTable,
}

const FTYP: &[u8] = &[
    0, 0, 0, 28, b'f', b't', b'y', b'p', b'i', b's', b'o', b'm', 0, 0, 2, 0, b'i', b's', b'o', b'm', b'i', b's', b'o',
    b'2', b'm', b'p', b'4', b'1',
];
/// A 64-bit `mdat` header; its size is filled in at the end.
const MDAT_HEADER: &[u8] = &[0, 0, 0, 1, b'm', b'd', b'a', b't', 0, 0, 0, 0, 0, 0, 0, 0];

impl Mp4Writer {
    /// Starts `<dest>.part` and its journal (creating the directory).
    /// `timescale` is the unit of the timestamps given to
    /// [`write_sample`](Self::write_sample), e.g. 90000 for RTP video.
    pub fn create(dest: &Path, entry: SampleEntry, timescale: u32) -> Result<Self, Mp4WriteError> {
        Self::create_with(dest, entry, timescale, WriteOptions::default())
    }

    /// [`create`](Self::create) with options: the clip's start time for the
    /// journal, or no journal at all.
    pub fn create_with(
        dest: &Path,
        entry: SampleEntry,
        timescale: u32,
        opts: WriteOptions,
    ) -> Result<Self, Mp4WriteError> {
        let part = part_path(dest);
        let io = io_error(&part);
        if timescale == 0 {
            return Err(Mp4WriteError::SampleEntry("timescale must be positive".into()));
        }
        let mut file = BufWriter::with_capacity(256 * 1024, PartFile::create(dest).map_err(&io)?);
        file.write_all(FTYP).map_err(&io)?;
        file.write_all(MDAT_HEADER).map_err(&io)?;
        let mdat_at = FTYP.len() as u64;
        let data_at = mdat_at + MDAT_HEADER.len() as u64;
        let journal = if opts.journal {
            let path = journal_path(dest);
            let header = Header { entry: entry.clone(), timescale, data_at, start_wall_ms: opts.start_wall_ms };
            match JournalWriter::create(&path, &header) {
                Ok(j) => Some(j),
                Err(e) => {
                    let _ = file.into_inner().map(|f| f.discard());
                    let _ = journal::remove_if_present(&path);
                    return Err(io_error(&path)(e));
                }
            }
        } else {
            None
        };
        Ok(Self {
            dest: dest.to_path_buf(),
            part: part.clone(),
            file: Some(file),
            journal,
            entry,
            timescale,
            mdat_at,
            data_at,
            data_len: 0,
            samples: SampleTable::default(),
        })
    }

    pub fn dest(&self) -> &Path {
        &self.dest
    }

    pub fn timescale(&self) -> u32 {
        self.timescale
    }

    pub fn sample_count(&self) -> usize {
        self.samples.len()
    }

    /// Bytes of video written so far.
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    fn io_err(&self, source: std::io::Error) -> Mp4WriteError {
        Mp4WriteError::Io { path: self.part.display().to_string(), source }
    }

    /// Appends one sample (an access unit of length-prefixed NAL units) with its
    /// presentation time in timescale units. The first sample must be a keyframe.
    /// At a keyframe, and once a second of samples waits, the journal is brought
    /// up to date (at a keyframe durably: both files fsynced).
    pub fn write_sample(&mut self, pts: i64, is_sync: bool, data: &[u8]) -> Result<(), Mp4WriteError> {
        if self.samples.len() == 0 && !is_sync {
            return Err(Mp4WriteError::NotKeyframe { path: self.dest.display().to_string() });
        }
        let size = u32::try_from(data.len()).map_err(|_| Mp4WriteError::BadSample { size: data.len() })?;
        if data.len() < 5 {
            return Err(Mp4WriteError::BadSample { size: data.len() });
        }
        let Some(file) = self.file.as_mut() else {
            return Err(Mp4WriteError::Closed { path: self.dest.display().to_string() });
        };
        if let Err(e) = file.write_all(data) {
            self.file = None;
            return Err(self.io_err(e));
        }
        self.data_len += u64::from(size);
        self.samples.push(size, pts, is_sync);
        if self.journal.as_mut().is_some_and(|j| j.due(pts, is_sync, self.timescale)) {
            self.journal_batch(is_sync)?;
        }
        Ok(())
    }

    /// Flushes the samples to the `.part` file, then appends their journal
    /// entries; `durable`: fsyncs the data before and the journal after.
    fn journal_batch(&mut self, durable: bool) -> Result<(), Mp4WriteError> {
        let (Some(file), Some(journal)) = (self.file.as_mut(), self.journal.as_mut()) else { return Ok(()) };
        let data = file.flush().and_then(|()| if durable { file.get_ref().as_file().sync_data() } else { Ok(()) });
        if let Err(e) = data {
            self.file = None;
            return Err(self.io_err(e));
        }
        if let Err(e) = journal.append(&self.samples).and_then(|()| if durable { journal.sync() } else { Ok(()) }) {
            let path = journal.path.clone();
            self.file = None;
            return Err(io_error(&path)(e));
        }
        Ok(())
    }

    /// Presentation span written so far (first presented sample to the latest
    /// presentation time), in timescale units.
    pub fn span(&self) -> i64 {
        match (self.samples.pts.iter().min(), self.samples.pts.iter().max()) {
            (Some(a), Some(b)) => b - a,
            _ => 0,
        }
    }

    /// Writes `moov`, fsyncs, renames `.part` to the destination, fsyncs the
    /// directory and removes the journal. `end_pts`, when known (the next
    /// sample's time), sets the last sample's duration; otherwise it repeats
    /// the previous frame interval.
    pub fn finish(mut self, end_pts: Option<i64>) -> Result<Mp4Summary, Mp4WriteError> {
        if self.samples.len() == 0 {
            return Err(Mp4WriteError::Empty { path: self.dest.display().to_string() });
        }
        let Some(mut file) = self.file.take() else {
            return Err(Mp4WriteError::Closed { path: self.dest.display().to_string() });
        };
        let track =
            Track { entry: &self.entry, timescale: self.timescale, data_at: self.data_at, samples: &self.samples };
        let result = (|| {
            let done = complete(&mut file, &track, self.mdat_at, self.data_len, end_pts)?;
            file.into_inner().map_err(|e| e.into_error())?.commit()?;
            Ok(done)
        })();
        let (tables, moov_len) = result.map_err(|e| self.io_err(e))?;
        // The clip is complete: its journal is not needed any more. Should the
        // removal fail, recovery removes a journal without a `.part` file.
        if let Some(j) = self.journal.take() {
            let _ = j.remove();
        }
        Ok(summary(&self.dest, &track, &tables, self.data_len, moov_len))
    }

    /// Gives up on the clip: closes and removes the `.part` file and its journal.
    pub fn abort(mut self) {
        self.discard();
    }

    fn discard(&mut self) {
        if self.file.take().is_some() || self.part.exists() {
            let _ = std::fs::remove_file(&self.part);
        }
        if let Some(j) = self.journal.take() {
            let _ = j.remove();
        }
    }
}

impl Drop for Mp4Writer {
    fn drop(&mut self) {
        self.discard();
    }
}

/// Ends a clip file whose samples (`data_len` bytes from the track's `data_at`)
/// end at the current position: appends `moov` and fills in the `mdat` size at
/// `mdat_at`. Returns the timing tables and the length of `moov`.
fn complete<W: Write + Seek>(
    file: &mut W,
    track: &Track<'_>,
    mdat_at: u64,
    data_len: u64,
    end_pts: Option<i64>,
) -> std::io::Result<(Tables, u64)> {
    let tables = Tables::build(&track.samples.pts, end_pts, track.timescale);
    let moov = track.moov(&tables);
    file.write_all(&moov)?;
    let mdat_size = MDAT_HEADER.len() as u64 + data_len;
    file.seek(SeekFrom::Start(mdat_at + 8))?;
    file.write_all(&mdat_size.to_be_bytes())?;
    file.flush()?;
    Ok((tables, moov.len() as u64))
}

fn summary(dest: &Path, track: &Track<'_>, tables: &Tables, data_len: u64, moov_len: u64) -> Mp4Summary {
    Mp4Summary {
        path: dest.to_path_buf(),
        samples: track.samples.len() as u32,
        keyframes: track.samples.sync.len() as u32,
        duration: tables.duration,
        duration_s: tables.duration as f64 / f64::from(track.timescale),
        bytes: track.data_at + data_len + moov_len,
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::sample_entry::tests::entry;
    use super::*;

    fn find_box<'a>(data: &'a [u8], path: &[&[u8; 4]]) -> Option<&'a [u8]> {
        let mut cur = data;
        for kind in path {
            let mut at = 0;
            let mut found = None;
            while at + 8 <= cur.len() {
                let mut size = u32::from_be_bytes(cur[at..at + 4].try_into().unwrap()) as usize;
                let mut header = 8;
                if size == 1 {
                    size = u64::from_be_bytes(cur[at + 8..at + 16].try_into().unwrap()) as usize;
                    header = 16;
                }
                if &cur[at + 4..at + 8] == *kind {
                    found = Some(&cur[at + header..at + size]);
                    break;
                }
                at += size.max(8);
            }
            cur = found?;
        }
        Some(cur)
    }

    #[test]
    fn writes_a_complete_file_and_only_then_renames_it() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("cam/clip.mp4");
        let mut w = Mp4Writer::create(&dest, entry(), 90000).unwrap();
        assert!(w.write_sample(0, false, &[0, 0, 0, 1, 0x41]).is_err(), "must start at a keyframe");
        for i in 0..70i64 {
            w.write_sample(i * 9000, i % 20 == 0, &[0, 0, 0, 2, 0x65, i as u8]).unwrap();
        }
        assert!(part_path(&dest).exists() && !dest.exists());
        let s = w.finish(None).unwrap();
        assert!(dest.exists() && !part_path(&dest).exists());
        assert_eq!((s.samples, s.keyframes), (70, 4));
        assert!((s.duration_s - 7.0).abs() < 1e-9);
        let data = fs::read(&dest).unwrap();
        assert_eq!(data.len() as u64, s.bytes);
        let stss = find_box(&data, &[b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stss"]).unwrap();
        assert_eq!(&stss[4..8], &4u32.to_be_bytes());
        let stsc = find_box(&data, &[b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsc"]).unwrap();
        assert_eq!(&stsc[4..8], &2u32.to_be_bytes(), "32 + 32 + 6 samples");
        let mdat = find_box(&data, &[b"mdat"]).unwrap();
        assert_eq!(mdat.len(), 70 * 6);
    }

    #[test]
    fn dropping_an_unfinished_writer_removes_the_part_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("clip.mp4");
        let mut w = Mp4Writer::create(&dest, entry(), 1000).unwrap();
        w.write_sample(0, true, &[0, 0, 0, 1, 0x65]).unwrap();
        assert!(journal_path(&dest).exists());
        drop(w);
        assert!(!part_path(&dest).exists() && !dest.exists() && !journal_path(&dest).exists());
        let w = Mp4Writer::create(&dest, entry(), 1000).unwrap();
        assert!(matches!(w.finish(None), Err(Mp4WriteError::Empty { .. })));
        assert!(!part_path(&dest).exists());
    }

    /// 10 fps in a 90 kHz timescale, a keyframe every 20 samples: 70 samples
    /// written, then the writer is lost without a drop (as in a crash).
    fn crashed(dest: &Path) {
        let opts = WriteOptions { journal: true, start_wall_ms: Some(1_700_000_000_000) };
        let mut w = Mp4Writer::create_with(dest, entry(), 90000, opts).unwrap();
        for i in 0..70i64 {
            w.write_sample(i * 9000, i % 20 == 0, &[0, 0, 0, 2, 0x65, i as u8]).unwrap();
        }
        std::mem::forget(w);
    }

    fn frames(dest: &Path) -> u32 {
        crate::media::probe(dest).unwrap().frame_count
    }

    #[test]
    fn finishing_removes_the_journal_and_without_one_none_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("clip.mp4");
        let mut w = Mp4Writer::create(&dest, entry(), 1000).unwrap();
        w.write_sample(0, true, &[0, 0, 0, 1, 0x65]).unwrap();
        w.finish(None).unwrap();
        assert!(dest.exists() && !journal_path(&dest).exists());
        let other = dir.path().join("other.mp4");
        let opts = WriteOptions { journal: false, start_wall_ms: None };
        let mut w = Mp4Writer::create_with(&other, entry(), 1000, opts).unwrap();
        w.write_sample(0, true, &[0, 0, 0, 1, 0x65]).unwrap();
        assert!(!journal_path(&other).exists());
        w.finish(None).unwrap();
    }

    #[test]
    fn a_crashed_writer_is_recovered_up_to_its_last_journal_batch() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("cam/clip.mp4");
        crashed(&dest);
        // Journaled: up to the keyframe at sample 61 (samples 62-70 wait for the
        // next keyframe or a second's worth).
        let r = recover(&part_path(&dest)).unwrap().unwrap();
        assert_eq!((r.summary.samples, r.summary.keyframes, r.dropped_samples), (61, 4, 0));
        assert_eq!(r.start_wall_ms, Some(1_700_000_000_000));
        assert!((r.summary.duration_s - 6.1).abs() < 1e-9, "{r:?}");
        assert!(dest.exists() && !part_path(&dest).exists() && !journal_path(&dest).exists());
        let data = fs::read(&dest).unwrap();
        assert_eq!(data.len() as u64, r.summary.bytes);
        assert_eq!(find_box(&data, &[b"mdat"]).unwrap().len(), 61 * 6);
        assert_eq!(frames(&dest), 61);
        let info = crate::media::probe(&dest).unwrap();
        assert!((info.duration_s - 6.1).abs() < 1e-6, "{info:?}");

        // Nothing is left to recover.
        assert_eq!(recover(&part_path(&dest)).unwrap(), None);
        assert!(dest.exists());
    }

    #[test]
    fn a_cut_or_damaged_journal_recovers_its_whole_entries() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("clip.mp4");
        crashed(&dest);
        let j = journal_path(&dest);
        let full = fs::read(&j).unwrap();
        // Cut in the middle of the 61st entry (20 bytes each).
        fs::write(&j, &full[..full.len() - 13]).unwrap();
        let r = recover(&part_path(&dest)).unwrap().unwrap();
        assert_eq!((r.summary.samples, r.summary.keyframes), (60, 3));
        assert_eq!(frames(&dest), 60);

        // A damaged 30th entry: 29 samples.
        fs::remove_file(&dest).unwrap();
        crashed(&dest);
        let mut bad = fs::read(&j).unwrap();
        let at = bad.len() - (61 - 29) * 20 + 2;
        bad[at] ^= 0x40;
        fs::write(&j, &bad).unwrap();
        let r = recover(&part_path(&dest)).unwrap().unwrap();
        assert_eq!(r.summary.samples, 29);
        assert_eq!(frames(&dest), 29);
    }

    #[test]
    fn samples_whose_data_is_missing_or_damaged_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("clip.mp4");
        crashed(&dest);
        // The file loses its last 2.5 journaled samples (a power cut before writeback).
        let part = part_path(&dest);
        let f = fs::OpenOptions::new().write(true).open(&part).unwrap();
        f.set_len(44 + 58 * 6 + 3).unwrap();
        drop(f);
        let r = recover(&part).unwrap().unwrap();
        assert_eq!((r.summary.samples, r.dropped_samples), (58, 3));
        assert_eq!(frames(&dest), 58);

        // Zeros where sample 11 should be: samples 1-10 are kept.
        fs::remove_file(&dest).unwrap();
        crashed(&dest);
        let mut data = fs::read(&part).unwrap();
        data[44 + 10 * 6..44 + 11 * 6].fill(0);
        fs::write(&part, &data).unwrap();
        let r = recover(&part).unwrap().unwrap();
        assert_eq!(r.summary.samples, 10);
    }

    #[test]
    fn with_nothing_recoverable_both_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("clip.mp4");
        let part = part_path(&dest);
        let j = journal_path(&dest);
        // No journal (a file from before journals, or never journaled).
        fs::write(&part, b"unfinished").unwrap();
        assert_eq!(recover(&part).unwrap(), None);
        assert!(!part.exists());
        // A journal with only its header: nothing was journaled.
        let w = Mp4Writer::create(&dest, entry(), 1000).unwrap();
        std::mem::forget(w);
        assert!(part.exists() && j.exists());
        assert_eq!(recover(&part).unwrap(), None);
        assert!(!part.exists() && !j.exists() && !dest.exists());
        // A damaged header.
        crashed(&dest);
        let mut bad = fs::read(&j).unwrap();
        bad[3] ^= 1;
        fs::write(&j, &bad).unwrap();
        assert_eq!(recover(&part).unwrap(), None);
        assert!(!part.exists() && !j.exists() && !dest.exists());
        // Only `.part` files are recovered; an existing clip is never overwritten.
        assert!(matches!(recover(&dest), Err(Mp4WriteError::NotPart { .. })));
        crashed(&dest);
        fs::write(&dest, b"kept").unwrap();
        assert!(matches!(recover(&part), Err(Mp4WriteError::DestExists { .. })));
        assert_eq!(fs::read(&dest).unwrap(), b"kept");
        assert!(part.exists() && j.exists());
    }
}
