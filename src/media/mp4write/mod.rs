//! Streaming MP4 writer for passthrough H.264 / H.265: the camera's encoded
//! samples go into the file unchanged.
//!
//! Layout: `ftyp`, one `mdat` that grows as samples arrive, then `moov` (written
//! by [`Mp4Writer::finish`]). Only the sample tables are kept in memory (about
//! 12 bytes per sample), never the video. The file is written as
//! `<dest>.part`, fsynced, renamed to `<dest>` and the directory fsynced
//! ([`PartFile`](crate::fsutil::PartFile)), so a crash leaves either no clip or
//! a complete one (ARCHITECTURE §5.1).
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

use std::fs;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::fsutil::PartFile;
pub use crate::fsutil::part_path;

mod moov;
mod sample_entry;

pub use sample_entry::SampleEntry;

use moov::Tables;

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
}

/// What [`Mp4Writer::finish`] wrote.
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

/// Writes one video track to `<dest>.part` as samples arrive; [`finish`](Self::finish)
/// completes and renames it. Dropped unfinished, it removes the `.part` file.
pub struct Mp4Writer {
    dest: PathBuf,
    part: PathBuf,
    file: Option<BufWriter<PartFile>>,
    entry: SampleEntry,
    timescale: u32,
    /// File offset of the `mdat` header and of its first sample.
    mdat_at: u64,
    data_at: u64,
    data_len: u64,
    sizes: Vec<u32>,
    pts: Vec<i64>,
    /// 1-based numbers of the sync samples.
    sync: Vec<u32>,
}

const FTYP: &[u8] = &[
    0, 0, 0, 28, b'f', b't', b'y', b'p', b'i', b's', b'o', b'm', 0, 0, 2, 0, b'i', b's', b'o', b'm', b'i', b's', b'o',
    b'2', b'm', b'p', b'4', b'1',
];

impl Mp4Writer {
    /// Starts `<dest>.part` (creating the directory). `timescale` is the unit of
    /// the timestamps given to [`write_sample`](Self::write_sample), e.g. 90000
    /// for RTP video.
    pub fn create(dest: &Path, entry: SampleEntry, timescale: u32) -> Result<Self, Mp4WriteError> {
        let part = part_path(dest);
        let io = |source| Mp4WriteError::Io { path: part.display().to_string(), source };
        if timescale == 0 {
            return Err(Mp4WriteError::SampleEntry("timescale must be positive".into()));
        }
        let mut file = BufWriter::with_capacity(256 * 1024, PartFile::create(dest).map_err(io)?);
        file.write_all(FTYP).map_err(io)?;
        let mdat_at = FTYP.len() as u64;
        // 64-bit mdat header; its size is filled in by `finish`.
        file.write_all(&[0, 0, 0, 1, b'm', b'd', b'a', b't', 0, 0, 0, 0, 0, 0, 0, 0]).map_err(io)?;
        Ok(Self {
            dest: dest.to_path_buf(),
            part,
            file: Some(file),
            entry,
            timescale,
            mdat_at,
            data_at: mdat_at + 16,
            data_len: 0,
            sizes: Vec::new(),
            pts: Vec::new(),
            sync: Vec::new(),
        })
    }

    pub fn dest(&self) -> &Path {
        &self.dest
    }

    pub fn timescale(&self) -> u32 {
        self.timescale
    }

    pub fn sample_count(&self) -> usize {
        self.sizes.len()
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
    pub fn write_sample(&mut self, pts: i64, is_sync: bool, data: &[u8]) -> Result<(), Mp4WriteError> {
        if self.sizes.is_empty() && !is_sync {
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
        self.sizes.push(size);
        self.pts.push(pts);
        if is_sync {
            // Sample numbers are 1-based; more than u32::MAX samples cannot happen
            // before the 4 GiB-per-sample-table limits of the format anyway.
            self.sync.push(self.sizes.len() as u32);
        }
        Ok(())
    }

    /// Presentation span written so far (first presented sample to the latest
    /// presentation time), in timescale units.
    pub fn span(&self) -> i64 {
        match (self.pts.iter().min(), self.pts.iter().max()) {
            (Some(a), Some(b)) => b - a,
            _ => 0,
        }
    }

    /// Writes `moov`, fsyncs, renames `.part` to the destination and fsyncs the
    /// directory. `end_pts`, when known (the next sample's time), sets the last
    /// sample's duration; otherwise it repeats the previous frame interval.
    pub fn finish(mut self, end_pts: Option<i64>) -> Result<Mp4Summary, Mp4WriteError> {
        if self.sizes.is_empty() {
            return Err(Mp4WriteError::Empty { path: self.dest.display().to_string() });
        }
        let tables = Tables::build(&self.pts, end_pts, self.timescale);
        let moov = self.moov(&tables);
        let Some(mut file) = self.file.take() else {
            return Err(Mp4WriteError::Closed { path: self.dest.display().to_string() });
        };
        let result = (|| {
            file.write_all(&moov)?;
            let mdat_size = 16 + self.data_len;
            file.seek(SeekFrom::Start(self.mdat_at + 8))?;
            file.write_all(&mdat_size.to_be_bytes())?;
            file.into_inner().map_err(|e| e.into_error())?.commit()
        })();
        result.map_err(|e| self.io_err(e))?;
        let bytes = self.data_at + self.data_len + moov.len() as u64;
        Ok(Mp4Summary {
            path: self.dest.clone(),
            samples: self.sizes.len() as u32,
            keyframes: self.sync.len() as u32,
            duration: tables.duration,
            duration_s: tables.duration as f64 / f64::from(self.timescale),
            bytes,
        })
    }

    /// Gives up on the clip: closes and removes the `.part` file.
    pub fn abort(mut self) {
        self.discard();
    }

    fn discard(&mut self) {
        if self.file.take().is_some() || self.part.exists() {
            let _ = fs::remove_file(&self.part);
        }
    }
}

impl Drop for Mp4Writer {
    fn drop(&mut self) {
        self.discard();
    }
}

#[cfg(test)]
mod tests {
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
        drop(w);
        assert!(!part_path(&dest).exists() && !dest.exists());
        let w = Mp4Writer::create(&dest, entry(), 1000).unwrap();
        assert!(matches!(w.finish(None), Err(Mp4WriteError::Empty { .. })));
        assert!(!part_path(&dest).exists());
    }
}
