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

use super::nal;
use crate::fsutil::PartFile;
pub use crate::fsutil::part_path;

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

/// A `VisualSampleEntry` box (`avc1`, `avc3`, `hvc1`, `hev1`) with its
/// decoder configuration, and the picture size read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleEntry {
    bytes: Vec<u8>,
    width: u16,
    height: u16,
}

/// Byte offsets inside a VisualSampleEntry box (ISO/IEC 14496-12 §12.1.3).
const ENTRY_WIDTH_AT: usize = 32;
const ENTRY_MIN_LEN: usize = 86;

impl SampleEntry {
    /// Wraps a complete sample entry box, e.g. retina's
    /// `VideoParameters::mp4_sample_entry().build()`.
    pub fn from_box(bytes: Vec<u8>) -> Result<Self, Mp4WriteError> {
        let bad = |m: &str| Mp4WriteError::SampleEntry(m.to_owned());
        if bytes.len() < ENTRY_MIN_LEN {
            return Err(bad("shorter than a VisualSampleEntry"));
        }
        let size = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if size != bytes.len() {
            return Err(bad("box size does not match its length"));
        }
        let kind = &bytes[4..8];
        if !matches!(kind, b"avc1" | b"avc3" | b"hvc1" | b"hev1") {
            return Err(Mp4WriteError::SampleEntry(format!(
                "unsupported codec `{}` (H.264 or H.265 only)",
                String::from_utf8_lossy(kind)
            )));
        }
        let width = u16::from_be_bytes([bytes[ENTRY_WIDTH_AT], bytes[ENTRY_WIDTH_AT + 1]]);
        let height = u16::from_be_bytes([bytes[ENTRY_WIDTH_AT + 2], bytes[ENTRY_WIDTH_AT + 3]]);
        if width == 0 || height == 0 {
            return Err(bad("zero picture size"));
        }
        Ok(Self { bytes, width, height })
    }

    /// An `avc1` entry around an `AVCDecoderConfigurationRecord` (the payload of
    /// an `avcC` box), for a picture of `width` x `height`. The record must use
    /// 4-byte NAL lengths, as the samples do.
    pub fn avc1_from_avcc(avcc: &[u8], width: u16, height: u16) -> Result<Self, Mp4WriteError> {
        if avcc.len() < 7 || avcc[0] != 1 {
            return Err(Mp4WriteError::SampleEntry("not an AVCDecoderConfigurationRecord".into()));
        }
        if avcc[4] & 0x03 != 3 {
            return Err(Mp4WriteError::SampleEntry("avcC must use 4-byte NAL lengths".into()));
        }
        let mut out = Vec::with_capacity(ENTRY_MIN_LEN + 8 + avcc.len());
        write_box(&mut out, b"avc1", |b| {
            b.extend_from_slice(&[0; 6]); // reserved
            b.extend_from_slice(&1u16.to_be_bytes()); // data_reference_index
            b.extend_from_slice(&[0; 16]); // pre_defined + reserved
            b.extend_from_slice(&width.to_be_bytes());
            b.extend_from_slice(&height.to_be_bytes());
            b.extend_from_slice(&0x0048_0000u32.to_be_bytes()); // 72 dpi
            b.extend_from_slice(&0x0048_0000u32.to_be_bytes());
            b.extend_from_slice(&0u32.to_be_bytes()); // reserved
            b.extend_from_slice(&1u16.to_be_bytes()); // frame_count
            b.extend_from_slice(&[0; 32]); // compressorname
            b.extend_from_slice(&0x0018u16.to_be_bytes()); // depth
            b.extend_from_slice(&(-1i16).to_be_bytes()); // pre_defined
            write_box(b, b"avcC", |c| c.extend_from_slice(avcc));
        });
        Self::from_box(out)
    }

    /// An `avc1` entry from one SPS and one PPS (raw NAL units, without start
    /// codes or length prefixes).
    pub fn avc1_from_parameter_sets(sps: &[u8], pps: &[u8], width: u16, height: u16) -> Result<Self, Mp4WriteError> {
        if sps.len() < 4 || nal::h264_nal_type(sps) != nal::H264_NAL_SPS {
            return Err(Mp4WriteError::SampleEntry("the SPS is not an SPS NAL unit".into()));
        }
        if nal::h264_nal_type(pps) != nal::H264_NAL_PPS {
            return Err(Mp4WriteError::SampleEntry("the PPS is not a PPS NAL unit".into()));
        }
        let (Ok(sps_len), Ok(pps_len)) = (u16::try_from(sps.len()), u16::try_from(pps.len())) else {
            return Err(Mp4WriteError::SampleEntry("parameter set too large".into()));
        };
        let mut avcc = vec![
            1,      // configurationVersion
            sps[1], // AVCProfileIndication
            sps[2], // profile_compatibility
            sps[3], // AVCLevelIndication
            0xff,   // reserved + lengthSizeMinusOne = 3
            0xe1,   // reserved + numOfSequenceParameterSets = 1
        ];
        avcc.extend_from_slice(&sps_len.to_be_bytes());
        avcc.extend_from_slice(sps);
        avcc.push(1);
        avcc.extend_from_slice(&pps_len.to_be_bytes());
        avcc.extend_from_slice(pps);
        Self::avc1_from_avcc(&avcc, width, height)
    }

    pub fn width(&self) -> u16 {
        self.width
    }

    pub fn height(&self) -> u16 {
        self.height
    }

    /// The four-character code: `avc1`, `avc3`, `hvc1` or `hev1`.
    pub fn codec(&self) -> &str {
        std::str::from_utf8(&self.bytes[4..8]).unwrap_or("?")
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
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

    fn moov(&self, t: &Tables) -> Vec<u8> {
        const MOVIE_TIMESCALE: u32 = 1000;
        let n = self.sizes.len() as u32;
        let movie_duration = t.duration * u64::from(MOVIE_TIMESCALE) / u64::from(self.timescale);
        let mut out = Vec::with_capacity(1024 + self.sizes.len() * 12);
        write_box(&mut out, b"moov", |moov| {
            write_full_box(moov, b"mvhd", version_for(movie_duration), 0, |b| {
                put_time_and_duration(b, MOVIE_TIMESCALE, movie_duration);
                b.extend_from_slice(&0x0001_0000u32.to_be_bytes()); // rate 1.0
                b.extend_from_slice(&0x0100u16.to_be_bytes()); // volume 1.0
                b.extend_from_slice(&[0; 10]); // reserved
                put_unity_matrix(b);
                b.extend_from_slice(&[0; 24]); // pre_defined
                b.extend_from_slice(&2u32.to_be_bytes()); // next_track_ID
            });
            write_box(moov, b"trak", |trak| {
                write_full_box(trak, b"tkhd", version_for(movie_duration), 3, |b| {
                    if version_for(movie_duration) == 1 {
                        b.extend_from_slice(&[0; 16]); // creation + modification
                        b.extend_from_slice(&1u32.to_be_bytes()); // track_ID
                        b.extend_from_slice(&[0; 4]);
                        b.extend_from_slice(&movie_duration.to_be_bytes());
                    } else {
                        b.extend_from_slice(&[0; 8]);
                        b.extend_from_slice(&1u32.to_be_bytes());
                        b.extend_from_slice(&[0; 4]);
                        b.extend_from_slice(&(movie_duration as u32).to_be_bytes());
                    }
                    b.extend_from_slice(&[0; 8]); // reserved
                    b.extend_from_slice(&[0; 4]); // layer, alternate_group
                    b.extend_from_slice(&[0; 4]); // volume, reserved
                    put_unity_matrix(b);
                    b.extend_from_slice(&(u32::from(self.entry.width) << 16).to_be_bytes());
                    b.extend_from_slice(&(u32::from(self.entry.height) << 16).to_be_bytes());
                });
                if t.shift > 0 {
                    write_box(trak, b"edts", |edts| {
                        let v = version_for(movie_duration.max(t.shift));
                        write_full_box(edts, b"elst", v, 0, |b| {
                            b.extend_from_slice(&1u32.to_be_bytes());
                            if v == 1 {
                                b.extend_from_slice(&movie_duration.to_be_bytes());
                                b.extend_from_slice(&t.shift.to_be_bytes());
                            } else {
                                b.extend_from_slice(&(movie_duration as u32).to_be_bytes());
                                b.extend_from_slice(&(t.shift as u32).to_be_bytes());
                            }
                            b.extend_from_slice(&0x0001_0000u32.to_be_bytes()); // media_rate 1.0
                        });
                    });
                }
                write_box(trak, b"mdia", |mdia| {
                    write_full_box(mdia, b"mdhd", version_for(t.duration), 0, |b| {
                        put_time_and_duration(b, self.timescale, t.duration);
                        b.extend_from_slice(&0x55c4u16.to_be_bytes()); // language "und"
                        b.extend_from_slice(&[0; 2]);
                    });
                    write_full_box(mdia, b"hdlr", 0, 0, |b| {
                        b.extend_from_slice(&[0; 4]);
                        b.extend_from_slice(b"vide");
                        b.extend_from_slice(&[0; 12]);
                        b.extend_from_slice(b"VideoHandler\0");
                    });
                    write_box(mdia, b"minf", |minf| {
                        write_full_box(minf, b"vmhd", 0, 1, |b| b.extend_from_slice(&[0; 8]));
                        write_box(minf, b"dinf", |dinf| {
                            write_full_box(dinf, b"dref", 0, 0, |b| {
                                b.extend_from_slice(&1u32.to_be_bytes());
                                write_full_box(b, b"url ", 0, 1, |_| {});
                            });
                        });
                        write_box(minf, b"stbl", |stbl| self.stbl(stbl, t, n));
                    });
                });
            });
        });
        out
    }

    fn stbl(&self, stbl: &mut Vec<u8>, t: &Tables, n: u32) {
        write_full_box(stbl, b"stsd", 0, 0, |b| {
            b.extend_from_slice(&1u32.to_be_bytes());
            b.extend_from_slice(self.entry.as_bytes());
        });
        write_full_box(stbl, b"stts", 0, 0, |b| {
            b.extend_from_slice(&(t.stts.len() as u32).to_be_bytes());
            for (count, delta) in &t.stts {
                b.extend_from_slice(&count.to_be_bytes());
                b.extend_from_slice(&delta.to_be_bytes());
            }
        });
        if let Some(ctts) = &t.ctts {
            write_full_box(stbl, b"ctts", 0, 0, |b| {
                b.extend_from_slice(&(ctts.len() as u32).to_be_bytes());
                for (count, offset) in ctts {
                    b.extend_from_slice(&count.to_be_bytes());
                    b.extend_from_slice(&offset.to_be_bytes());
                }
            });
        }
        if self.sync.len() != self.sizes.len() {
            write_full_box(stbl, b"stss", 0, 0, |b| {
                b.extend_from_slice(&(self.sync.len() as u32).to_be_bytes());
                for s in &self.sync {
                    b.extend_from_slice(&s.to_be_bytes());
                }
            });
        }
        // Samples are contiguous in the one mdat: chunks of CHUNK samples each.
        const CHUNK: u32 = 32;
        let chunks = n.div_ceil(CHUNK);
        let last = n - (chunks - 1) * CHUNK;
        write_full_box(stbl, b"stsc", 0, 0, |b| {
            let mut entries = vec![(1u32, CHUNK.min(n))];
            if chunks > 1 && last != CHUNK {
                entries.push((chunks, last));
            }
            b.extend_from_slice(&(entries.len() as u32).to_be_bytes());
            for (first, per) in entries {
                b.extend_from_slice(&first.to_be_bytes());
                b.extend_from_slice(&per.to_be_bytes());
                b.extend_from_slice(&1u32.to_be_bytes()); // sample_description_index
            }
        });
        write_full_box(stbl, b"stsz", 0, 0, |b| {
            b.extend_from_slice(&0u32.to_be_bytes());
            b.extend_from_slice(&n.to_be_bytes());
            for s in &self.sizes {
                b.extend_from_slice(&s.to_be_bytes());
            }
        });
        let mut offsets = Vec::with_capacity(chunks as usize);
        let mut at = self.data_at;
        for (i, size) in self.sizes.iter().enumerate() {
            if (i as u32).is_multiple_of(CHUNK) {
                offsets.push(at);
            }
            at += u64::from(*size);
        }
        let wide = offsets.last().is_some_and(|o| *o > u64::from(u32::MAX));
        write_full_box(stbl, if wide { b"co64" } else { b"stco" }, 0, 0, |b| {
            b.extend_from_slice(&(offsets.len() as u32).to_be_bytes());
            for o in offsets {
                if wide {
                    b.extend_from_slice(&o.to_be_bytes());
                } else {
                    b.extend_from_slice(&(o as u32).to_be_bytes());
                }
            }
        });
    }
}

impl Drop for Mp4Writer {
    fn drop(&mut self) {
        self.discard();
    }
}

/// Timing tables derived from presentation times in decode order.
struct Tables {
    /// (sample_count, sample_delta) runs of decode-time deltas.
    stts: Vec<(u32, u32)>,
    /// (sample_count, offset) runs of presentation - decode time, when not all 0.
    ctts: Option<Vec<(u32, u32)>>,
    /// Decode time of the first presented sample: the edit list's media_time.
    shift: u64,
    /// Presentation duration (sum of the decode deltas).
    duration: u64,
}

impl Tables {
    fn build(pts: &[i64], end_pts: Option<i64>, timescale: u32) -> Self {
        // Decode times are the sorted presentation times (made strictly
        // increasing), moved back by the largest reorder delay.
        let mut sorted = pts.to_vec();
        sorted.sort_unstable();
        for i in 1..sorted.len() {
            if sorted[i] <= sorted[i - 1] {
                sorted[i] = sorted[i - 1] + 1;
            }
        }
        let shift = pts.iter().zip(&sorted).map(|(p, s)| s - p).max().unwrap_or(0).max(0);
        let dts: Vec<i64> = sorted.iter().map(|s| s - shift).collect();

        let mut deltas: Vec<u32> = dts.windows(2).map(|w| clamp_u32(w[1] - w[0])).collect();
        let last_pts = sorted.last().copied().unwrap_or(0);
        let last_delta = match end_pts {
            Some(end) if end > last_pts => clamp_u32(end - last_pts),
            _ => deltas.last().copied().unwrap_or_else(|| (timescale / 10).max(1)),
        };
        deltas.push(last_delta);
        let duration: u64 = deltas.iter().map(|d| u64::from(*d)).sum();
        let stts = run_lengths(deltas.into_iter());

        let offsets = pts.iter().zip(&dts).map(|(p, d)| clamp_u32(p - d));
        let ctts =
            if shift > 0 || pts.iter().zip(&dts).any(|(p, d)| p != d) { Some(run_lengths(offsets)) } else { None };
        Self { stts, ctts, shift: shift as u64, duration }
    }
}

fn clamp_u32(v: i64) -> u32 {
    v.clamp(0, i64::from(u32::MAX)) as u32
}

fn run_lengths(values: impl Iterator<Item = u32>) -> Vec<(u32, u32)> {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for v in values {
        match runs.last_mut() {
            Some((count, last)) if *last == v => *count += 1,
            _ => runs.push((1, v)),
        }
    }
    runs
}

fn version_for(duration: u64) -> u8 {
    if duration > u64::from(u32::MAX) { 1 } else { 0 }
}

fn put_time_and_duration(b: &mut Vec<u8>, timescale: u32, duration: u64) {
    if version_for(duration) == 1 {
        b.extend_from_slice(&[0; 16]); // creation + modification time
        b.extend_from_slice(&timescale.to_be_bytes());
        b.extend_from_slice(&duration.to_be_bytes());
    } else {
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&timescale.to_be_bytes());
        b.extend_from_slice(&(duration as u32).to_be_bytes());
    }
}

fn put_unity_matrix(b: &mut Vec<u8>) {
    for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        b.extend_from_slice(&v.to_be_bytes());
    }
}

fn write_box(out: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(kind);
    body(out);
    // Boxes built in memory (moov, sample entries) stay far below 4 GiB.
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

fn write_full_box(out: &mut Vec<u8>, kind: &[u8; 4], version: u8, flags: u32, body: impl FnOnce(&mut Vec<u8>)) {
    write_box(out, kind, |b| {
        b.push(version);
        b.extend_from_slice(&flags.to_be_bytes()[1..]);
        body(b);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80, 0xbf, 0xe5, 0x84];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    fn entry() -> SampleEntry {
        SampleEntry::avc1_from_parameter_sets(SPS, PPS, 640, 360).unwrap()
    }

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
    fn sample_entries_carry_the_picture_size() {
        let e = entry();
        assert_eq!((e.width(), e.height(), e.codec()), (640, 360, "avc1"));
        let again = SampleEntry::from_box(e.as_bytes().to_vec()).unwrap();
        assert_eq!(again, e);
        assert!(SampleEntry::from_box(vec![0; 90]).is_err());
        assert!(SampleEntry::avc1_from_parameter_sets(PPS, SPS, 1, 1).is_err());
    }

    #[test]
    fn b_frames_get_ctts_and_an_edit_list() {
        // Decode order I P B B at 10 fps in a 90 kHz timescale: pts 0, 27000, 9000, 18000.
        let t = Tables::build(&[0, 27000, 9000, 18000], None, 90000);
        assert_eq!(t.stts, vec![(4, 9000)]);
        assert_eq!(t.shift, 9000);
        assert_eq!(t.ctts.unwrap(), vec![(1, 9000), (1, 27000), (2, 0)]);
        assert_eq!(t.duration, 36000);

        let t = Tables::build(&[0, 9000, 18000], Some(30000), 90000);
        assert!(t.ctts.is_none());
        assert_eq!(t.stts, vec![(2, 9000), (1, 12000)]);
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
