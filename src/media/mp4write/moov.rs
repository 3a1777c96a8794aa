//! The `moov` box of a clip: the timing tables derived from the presentation
//! times, the sample tables, and the box-writing helpers. One writer for both
//! [`Mp4Writer::finish`](super::Mp4Writer::finish) and [`recover`](super::recover).

use super::SampleEntry;

/// Per sample: size, presentation time and whether it is a sync sample, in
/// decode order (about 12 bytes a sample).
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct SampleTable {
    pub(super) sizes: Vec<u32>,
    pub(super) pts: Vec<i64>,
    /// 1-based numbers of the sync samples.
    pub(super) sync: Vec<u32>,
}

impl SampleTable {
    pub(super) fn push(&mut self, size: u32, pts: i64, is_sync: bool) {
        self.sizes.push(size);
        self.pts.push(pts);
        if is_sync {
            // Sample numbers are 1-based; more than u32::MAX samples cannot happen
            // before the 4 GiB-per-sample-table limits of the format anyway.
            self.sync.push(self.sizes.len() as u32);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.sizes.len()
    }

    /// Whether sample `i` (0-based) is a sync sample.
    pub(super) fn is_sync(&self, i: usize) -> bool {
        self.sync.binary_search(&(i as u32 + 1)).is_ok()
    }

    /// Keeps the first `n` samples.
    pub(super) fn truncate(&mut self, n: usize) {
        self.sizes.truncate(n);
        self.pts.truncate(n);
        self.sync.retain(|s| (*s as usize) <= n);
    }
}

/// What `moov` describes: one video track whose samples lie back to back in
/// the one `mdat`, from file offset `data_at`.
pub(super) struct Track<'a> {
    pub(super) entry: &'a SampleEntry,
    pub(super) timescale: u32,
    pub(super) data_at: u64,
    pub(super) samples: &'a SampleTable,
}

impl Track<'_> {
    /// The `moov` box for the samples, with the timing tables `t`.
    pub(super) fn moov(&self, t: &Tables) -> Vec<u8> {
        const MOVIE_TIMESCALE: u32 = 1000;
        let n = self.samples.len() as u32;
        let movie_duration = t.duration * u64::from(MOVIE_TIMESCALE) / u64::from(self.timescale);
        let mut out = Vec::with_capacity(1024 + self.samples.len() * 12);
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
                    b.extend_from_slice(&(u32::from(self.entry.width()) << 16).to_be_bytes());
                    b.extend_from_slice(&(u32::from(self.entry.height()) << 16).to_be_bytes());
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
        let samples = self.samples;
        if samples.sync.len() != samples.sizes.len() {
            write_full_box(stbl, b"stss", 0, 0, |b| {
                b.extend_from_slice(&(samples.sync.len() as u32).to_be_bytes());
                for s in &samples.sync {
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
            for s in &samples.sizes {
                b.extend_from_slice(&s.to_be_bytes());
            }
        });
        let mut offsets = Vec::with_capacity(chunks as usize);
        let mut at = self.data_at;
        for (i, size) in samples.sizes.iter().enumerate() {
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

/// Timing tables derived from presentation times in decode order.
pub(super) struct Tables {
    /// (sample_count, sample_delta) runs of decode-time deltas.
    stts: Vec<(u32, u32)>,
    /// (sample_count, offset) runs of presentation - decode time, when not all 0.
    ctts: Option<Vec<(u32, u32)>>,
    /// Decode time of the first presented sample: the edit list's media_time.
    shift: u64,
    /// Presentation duration (sum of the decode deltas).
    pub(super) duration: u64,
}

impl Tables {
    pub(super) fn build(pts: &[i64], end_pts: Option<i64>, timescale: u32) -> Self {
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

pub(super) fn write_box(out: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
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
}
