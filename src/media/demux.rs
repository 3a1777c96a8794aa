//! MP4 demux: the top-level box structure, the H.264 or H.265 track and its
//! sample table, and the length-prefixed (AVCC / HVCC) samples turned into
//! Annex-B for the decoder.
//!
//! The `mp4` crate parses the boxes; the video sample entry (codec, parameter
//! sets) is read from the raw `moov` bytes (`stsd.rs`), and the sample table
//! (offsets, sizes, times) is built here from `stbl` in one pass, so that
//! reading is O(1) per sample and a truncated file is caught before decoding
//! starts.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use mp4::{Mp4Reader, Mp4Track, TrackType};

use super::codec::VideoCodec;
use super::nal;
use super::stsd::{self, VideoEntry};
use super::{MediaError, VideoInfo};

/// One sample (an access unit) of the video track.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SampleEntry {
    pub offset: u64,
    pub size: u32,
    /// Presentation time in track timescale units.
    pub pts: i64,
}

/// Where the samples come from: our own table for plain MP4 files, the `mp4`
/// crate for fragmented ones.
enum Samples {
    Table(Vec<SampleEntry>),
    Fragmented { reader: Box<Mp4Reader<BufReader<File>>>, track_id: u32, count: u32 },
}

/// An opened MP4 file with one H.264 or H.265 video track.
pub(crate) struct Mp4Video {
    path: String,
    file: File,
    samples: Samples,
    pub info: VideoInfo,
    pub timescale: u32,
    pub codec: VideoCodec,
    /// Bytes of each NAL length prefix (1, 2 or 4).
    nal_length_size: usize,
    /// The parameter sets of the `avcC` / `hvcC` box (SPS and PPS, plus the VPS
    /// for H.265), in Annex-B; may be empty for `hev1`, which carries them in band.
    pub parameter_sets: Vec<u8>,
    raw: Vec<u8>,
}

fn container(path: &str, reason: impl Into<String>) -> MediaError {
    MediaError::Container { path: path.to_owned(), reason: reason.into() }
}

/// Walks the top-level boxes: every box must fit in the file (a cut file fails
/// here), the first must be `ftyp`, and a `moov` must be present. Returns where
/// the (first) `moov` box's payload lies: (offset, length).
pub(crate) fn scan_top_level_boxes(path: &str, file: &mut File, file_len: u64) -> Result<(u64, u64), MediaError> {
    if file_len == 0 {
        return Err(container(path, "the file is empty"));
    }
    let mut offset = 0u64;
    let mut index = 0usize;
    let mut moov = None;
    while offset < file_len {
        let remaining = file_len - offset;
        if remaining < 8 {
            return Err(container(path, format!("truncated: {remaining} stray bytes after the last box")));
        }
        let mut header = [0u8; 16];
        file.seek(SeekFrom::Start(offset)).map_err(|e| container(path, format!("seek failed: {e}")))?;
        let want = remaining.min(16) as usize;
        file.read_exact(&mut header[..want]).map_err(|e| container(path, format!("read failed: {e}")))?;
        let kind = &header[4..8];
        if !kind.iter().all(|b| b.is_ascii_alphanumeric() || *b == b' ' || *b == b'-' || *b == b'_') {
            return Err(container(
                path,
                if index == 0 {
                    "no MP4 box structure (not an MP4 file)".to_owned()
                } else {
                    format!("garbage instead of a box at byte {offset}")
                },
            ));
        }
        let name = String::from_utf8_lossy(kind).into_owned();
        if index == 0 && name != "ftyp" && name != "styp" {
            return Err(container(path, format!("starts with a `{name}` box instead of `ftyp` (not an MP4 file)")));
        }
        let size32 = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let (size, header_len) = match size32 {
            0 => (remaining, 8),
            1 => {
                if want < 16 {
                    return Err(container(path, format!("truncated: the `{name}` box header at byte {offset} is cut")));
                }
                let mut large = [0u8; 8];
                large.copy_from_slice(&header[8..16]);
                (u64::from_be_bytes(large), 16)
            }
            n => (u64::from(n), 8),
        };
        if size < header_len {
            return Err(container(path, format!("the `{name}` box at byte {offset} has an impossible size {size}")));
        }
        if size > remaining {
            return Err(container(
                path,
                format!(
                    "truncated: the `{name}` box at byte {offset} needs {size} bytes but the file ends {remaining} bytes later"
                ),
            ));
        }
        if name == "moov" && moov.is_none() {
            moov = Some((offset + header_len, size - header_len));
        }
        offset += size;
        index += 1;
    }
    moov.ok_or_else(|| container(path, "no `moov` box (an unfinished recording?)"))
}

/// Reads the `moov` payload that [`scan_top_level_boxes`] located.
fn read_moov(path: &str, file: &mut File, (offset, len): (u64, u64)) -> Result<Vec<u8>, MediaError> {
    let len = usize::try_from(len).map_err(|_| container(path, "the `moov` box is too large"))?;
    let mut moov = vec![0u8; len];
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(&mut moov))
        .map_err(|e| container(path, format!("cannot read the `moov` box: {e}")))?;
    Ok(moov)
}

/// Builds the sample table of a non-fragmented track from `stsz`, `stsc`,
/// `stco`/`co64`, `stts` and `ctts`, checking every sample lies inside the file.
pub(crate) fn build_sample_table(path: &str, track: &Mp4Track, file_len: u64) -> Result<Vec<SampleEntry>, MediaError> {
    let stbl = &track.trak.mdia.minf.stbl;
    let count = stbl.stsz.sample_count as usize;
    let size_of = |i: usize| -> Result<u32, MediaError> {
        if stbl.stsz.sample_size > 0 {
            Ok(stbl.stsz.sample_size)
        } else {
            stbl.stsz
                .sample_sizes
                .get(i)
                .copied()
                .ok_or_else(|| container(path, "`stsz` lists fewer sizes than samples"))
        }
    };
    let chunk_offsets: Vec<u64> = match (&stbl.stco, &stbl.co64) {
        (Some(stco), _) => stco.entries.iter().map(|&o| u64::from(o)).collect(),
        (None, Some(co64)) => co64.entries.clone(),
        (None, None) => return Err(container(path, "the video track has no chunk offsets (`stco`/`co64`)")),
    };

    // Offsets: walk the chunks, each holding the `samples_per_chunk` of the stsc run it falls in.
    let mut entries = Vec::with_capacity(count);
    let stsc = &stbl.stsc.entries;
    let mut sample = 0usize;
    for (run, entry) in stsc.iter().enumerate() {
        let first_chunk = entry.first_chunk as usize;
        let end_chunk = stsc.get(run + 1).map_or(chunk_offsets.len() + 1, |next| next.first_chunk as usize);
        if first_chunk == 0 || end_chunk < first_chunk {
            return Err(container(path, "malformed `stsc` box"));
        }
        for chunk in first_chunk..end_chunk {
            let Some(&chunk_offset) = chunk_offsets.get(chunk - 1) else {
                return Err(container(path, "`stsc` refers to a chunk beyond `stco`"));
            };
            let mut offset = chunk_offset;
            for _ in 0..entry.samples_per_chunk {
                if sample >= count {
                    break;
                }
                let size = size_of(sample)?;
                let end = offset.saturating_add(u64::from(size));
                if end > file_len {
                    return Err(container(
                        path,
                        format!(
                            "truncated: sample {} of {count} lies at bytes {offset}..{end} but the file has {file_len} bytes",
                            sample + 1
                        ),
                    ));
                }
                entries.push(SampleEntry { offset, size, pts: 0 });
                offset = end;
                sample += 1;
            }
        }
    }
    if entries.len() != count {
        return Err(container(path, format!("the sample table locates {} of {count} samples", entries.len())));
    }

    // Decode times from stts, presentation offsets from ctts.
    let mut dts: i64 = 0;
    let mut i = 0usize;
    for run in &stbl.stts.entries {
        for _ in 0..run.sample_count {
            if let Some(e) = entries.get_mut(i) {
                e.pts = dts;
            }
            dts = dts.saturating_add(i64::from(run.sample_delta));
            i += 1;
        }
    }
    if i < count {
        return Err(container(path, format!("`stts` gives times for {i} of {count} samples")));
    }
    if let Some(ctts) = &stbl.ctts {
        let mut i = 0usize;
        for run in &ctts.entries {
            for _ in 0..run.sample_count {
                if let Some(e) = entries.get_mut(i) {
                    e.pts = e.pts.saturating_add(i64::from(run.sample_offset));
                }
                i += 1;
            }
        }
    }
    Ok(entries)
}

/// Runs a parser of the `mp4` crate, turning a panic on malformed input into an error.
fn guarded<T>(path: &str, what: &str, f: impl FnOnce() -> mp4::Result<T>) -> Result<T, MediaError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(container(path, format!("{what}: {e}"))),
        Err(_) => Err(container(path, format!("{what}: malformed data (parser panicked)"))),
    }
}

impl Mp4Video {
    /// Opens the file, checks its box structure and reads the headers of its
    /// first H.264 or H.265 track.
    pub fn open(path: &Path) -> Result<Self, MediaError> {
        let shown = path.display().to_string();
        let mut file = File::open(path).map_err(|source| MediaError::Open { path: shown.clone(), source })?;
        let file_len = file.metadata().map_err(|source| MediaError::Open { path: shown.clone(), source })?.len();
        let moov_at = scan_top_level_boxes(&shown, &mut file, file_len)?;
        let moov = read_moov(&shown, &mut file, moov_at)?;
        file.seek(SeekFrom::Start(0)).map_err(|e| container(&shown, format!("seek failed: {e}")))?;
        let header_file = file.try_clone().map_err(|source| MediaError::Open { path: shown.clone(), source })?;
        let reader = guarded(&shown, "cannot read the headers", || {
            Mp4Reader::read_header(BufReader::new(header_file), file_len)
        })?;

        let mut tracks: Vec<&Mp4Track> =
            reader.tracks().values().filter(|t| matches!(t.track_type(), Ok(TrackType::Video))).collect();
        tracks.sort_by_key(|t| t.track_id());
        // The first H.264/H.265 video track.
        let mut found: Option<(&Mp4Track, VideoEntry)> = None;
        for track in tracks {
            let entry = stsd::video_entry(&moov, track.track_id())
                .map_err(|reason| container(&shown, format!("video track {}: {reason}", track.track_id())))?;
            if let Some(entry) = entry {
                found = Some((track, entry));
                break;
            }
        }
        let Some((track, entry)) = found else {
            return Err(MediaError::NoVideo { path: shown });
        };
        let track_id = track.track_id();
        let VideoEntry { codec, width, height, nal_length_size, parameter_sets } = entry;

        let timescale = track.timescale().max(1);
        let fragmented = !track.trafs.is_empty();
        let (samples, frame_count, span) = if fragmented {
            let count = track.sample_count();
            let span = u64::from(count) * u64::from(track.default_sample_duration);
            (None, count, span)
        } else {
            let table = build_sample_table(&shown, track, file_len)?;
            let count = u32::try_from(table.len()).map_err(|_| container(&shown, "too many samples"))?;
            let min = table.iter().map(|s| s.pts).min().unwrap_or(0);
            let max = table.iter().map(|s| s.pts).max().unwrap_or(0);
            // The presentation span plus the last frame's duration.
            let last_delta = track.trak.mdia.minf.stbl.stts.entries.last().map_or(0, |e| u64::from(e.sample_delta));
            let span = (max - min).max(0) as u64 + last_delta;
            (Some(table), count, span)
        };
        if frame_count == 0 {
            return Err(container(&shown, "the video track has no samples"));
        }
        let mdhd_duration = track.trak.mdia.mdhd.duration;
        let duration_ticks = if mdhd_duration > 0 && !fragmented { mdhd_duration } else { span };
        let duration_s = duration_ticks as f64 / f64::from(timescale);
        let fps = if duration_s > 0.0 { f64::from(frame_count) / duration_s } else { 0.0 };
        let info = VideoInfo { width: u32::from(width), height: u32::from(height), duration_s, frame_count, fps };
        let samples = match samples {
            Some(table) => Samples::Table(table),
            None => Samples::Fragmented { reader: Box::new(reader), track_id, count: frame_count },
        };
        Ok(Self {
            path: shown,
            file,
            samples,
            info,
            timescale,
            codec,
            nal_length_size,
            parameter_sets,
            raw: Vec::new(),
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The earliest presentation time (the clip's time zero), when the sample table is known.
    pub fn first_pts(&self) -> Option<i64> {
        match &self.samples {
            Samples::Table(t) => t.iter().map(|s| s.pts).min(),
            Samples::Fragmented { .. } => None,
        }
    }

    pub fn sample_count(&self) -> u32 {
        match &self.samples {
            Samples::Table(t) => t.len() as u32,
            Samples::Fragmented { count, .. } => *count,
        }
    }

    /// Reads sample `index` (0-based, decode order) as Annex-B into `out`; returns
    /// its presentation time in timescale units.
    pub fn read_sample(&mut self, index: u32, out: &mut Vec<u8>) -> Result<i64, MediaError> {
        let path = self.path.clone();
        let pts = match &mut self.samples {
            Samples::Table(table) => {
                let Some(entry) = table.get(index as usize).copied() else {
                    return Err(container(&path, format!("no sample {index}")));
                };
                self.raw.resize(entry.size as usize, 0);
                self.file
                    .seek(SeekFrom::Start(entry.offset))
                    .and_then(|_| self.file.read_exact(&mut self.raw))
                    .map_err(|e| container(&path, format!("cannot read sample {}: {e}", index + 1)))?;
                entry.pts
            }
            Samples::Fragmented { reader, track_id, .. } => {
                let id = *track_id;
                let sample = guarded(&path, "cannot read a sample", || reader.read_sample(id, index + 1))?
                    .ok_or_else(|| container(&path, format!("sample {} is missing", index + 1)))?;
                self.raw.clear();
                self.raw.extend_from_slice(&sample.bytes);
                sample.start_time as i64 + i64::from(sample.rendering_offset)
            }
        };
        out.clear();
        nal::length_prefixed_to_annex_b(&self.raw, self.nal_length_size, out)
            .map_err(|reason| container(&path, format!("sample {}: {reason}", index + 1)))?;
        Ok(pts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn footage(name: &str) -> std::path::PathBuf {
        let data = std::env::var_os("HOMESEC_TESTDATA")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata"));
        data.join("footage").join(name)
    }

    #[test]
    fn the_sample_table_locates_every_sample_and_catches_truncation() {
        let path = footage("vtest_h264.mp4");
        let file = File::open(&path).expect("test footage (set HOMESEC_TESTDATA)");
        let len = file.metadata().unwrap().len();
        let reader = Mp4Reader::read_header(BufReader::new(file), len).unwrap();
        let track = reader.tracks().values().find(|t| t.trak.mdia.minf.stbl.stsd.avc1.is_some()).unwrap();
        let table = build_sample_table("vtest", track, len).unwrap();
        assert_eq!(table.len(), 795);
        // mdat starts at byte 40: the first sample right after its 8-byte header,
        // the samples back to back up to the end of mdat.
        assert_eq!(table[0].offset, 48);
        assert!(table.windows(2).all(|w| w[0].offset + u64::from(w[0].size) <= w[1].offset));
        let last = table[table.len() - 1];
        assert!(last.offset + u64::from(last.size) <= 40 + 5_153_920);
        // B-frames: presentation times are not in decode order, but all distinct.
        let mut pts: Vec<i64> = table.iter().map(|s| s.pts).collect();
        assert!(pts.windows(2).any(|w| w[1] < w[0]));
        pts.sort_unstable();
        pts.dedup();
        assert_eq!(pts.len(), 795);

        let err = build_sample_table("vtest", track, len / 2).unwrap_err();
        assert!(err.to_string().contains("truncated: sample"), "{err}");
    }
}
