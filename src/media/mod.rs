//! Media: MP4 demux, H.264 / H.265 decode, frame sampling, resize and JPEG encoding.
//!
//! Everything here is blocking CPU work on the calling thread (one decoder per
//! call): callers run it on blocking threads, never on the async workers.
//!
//! - [`codec`]: the one decoder seam (libavcodec for H.264 and H.265).
//! - [`probe`] reads the container headers only.
//! - [`for_each_frame`] decodes every frame and lends each one (YUV, convertible to RGB).
//! - [`sample_frames`] converts to RGB only the frames due at `sample_fps`.
//! - [`sample_jpegs`] spreads a number of JPEGs evenly over a clip (for the VLM).
//! - [`encode_jpeg`], [`resize_rgb`], [`RgbResizer`]: pictures.
//! - [`nal`]: H.264 / H.265 NAL framing (Annex B and length-prefixed samples).
//! - [`mp4write`]: the passthrough MP4 writer; [`motion`]: the motion detector.

pub mod codec;
mod decode;
mod demux;
pub mod detect;
pub mod motion;
pub mod mp4write;
pub mod nal;
pub mod overlay;
mod resize;
mod stsd;

use std::path::Path;

pub use decode::FrameRef;
pub use resize::{ResizeQuality, RgbResizer, fit_within, resize_rgb};

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("cannot open {path}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a readable MP4: {reason}")]
    Container { path: String, reason: String },
    #[error("{path} has no H.264/H.265 video track")]
    NoVideo { path: String },
    #[error("video decode failed in {path}: {reason}")]
    Decode { path: String, reason: String },
    #[error("JPEG encoding failed: {0}")]
    Jpeg(String),
    #[error("image resize failed: {0}")]
    Resize(String),
}

/// What `probe` learns from a clip's headers without decoding it.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    pub width: u32,
    pub height: u32,
    pub duration_s: f64,
    pub frame_count: u32,
    pub fps: f64,
}

/// A decoded frame as 8-bit RGB, with its time from the clip start.
#[derive(Debug, Clone)]
pub struct RgbFrame {
    pub ts_s: f64,
    pub width: u32,
    pub height: u32,
    /// Row-major RGB, `width * height * 3` bytes.
    pub data: Vec<u8>,
}

impl RgbFrame {
    /// Checks that the frame is not empty and its data fits its size.
    pub fn check(&self) -> Result<(), String> {
        let expected = self.width as usize * self.height as usize * 3;
        if self.width == 0 || self.height == 0 || self.data.len() != expected {
            return Err(format!(
                "{}x{} frame has {} bytes, expected {expected}",
                self.width,
                self.height,
                self.data.len()
            ));
        }
        Ok(())
    }
}

/// A JPEG of one sampled frame.
#[derive(Debug, Clone)]
pub struct Jpeg {
    pub ts_s: f64,
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

/// Seconds of slack when deciding whether a frame is due (timestamps are exact
/// rationals turned into floats).
const TS_EPSILON: f64 = 1e-3;

/// Reads the container headers: a clip that fails here is unreadable. Checks the
/// box structure and that every sample lies inside the file, so a truncated or
/// non-MP4 file fails with [`MediaError::Container`], and one without H.264 or
/// H.265 video with [`MediaError::NoVideo`].
pub fn probe(path: &Path) -> Result<VideoInfo, MediaError> {
    Ok(demux::Mp4Video::open(path)?.info)
}

/// Decodes every frame of the clip and lends each to `on_frame` in presentation
/// order, until it returns `false`. Returns the number of frames lent.
pub fn for_each_frame(path: &Path, on_frame: &mut dyn FnMut(&FrameRef<'_>) -> bool) -> Result<u32, MediaError> {
    let mut video = demux::Mp4Video::open(path)?;
    decode::decode_video(&mut video, on_frame)
}

/// Decides which frames are due when sampling every `interval` seconds from 0.
#[derive(Debug, Clone)]
pub struct IntervalSampler {
    interval: f64,
    next_due: f64,
}

impl IntervalSampler {
    /// `sample_fps` of 0 (or not a positive number) takes every frame.
    pub fn new(sample_fps: f64) -> Self {
        let interval = if sample_fps.is_finite() && sample_fps > 0.0 { 1.0 / sample_fps } else { 0.0 };
        Self { interval, next_due: 0.0 }
    }

    pub fn is_due(&mut self, ts_s: f64) -> bool {
        if ts_s + TS_EPSILON < self.next_due {
            return false;
        }
        if self.interval > 0.0 {
            // Stay on the grid 0, i, 2i, …; skip slots a sparse clip has no frame for.
            self.next_due += self.interval;
            while self.next_due <= ts_s + TS_EPSILON {
                self.next_due += self.interval;
            }
        }
        true
    }
}

/// Decodes the clip and calls `on_frame` for frames spaced `1/sample_fps` apart
/// (all frames when `sample_fps` is 0), stopping after `max_frames` (0: no limit)
/// or when `on_frame` returns `false`. Every frame is decoded (P-frames need their
/// references) but only the sampled ones are converted to RGB. Returns the number
/// of frames passed to `on_frame`.
pub fn sample_frames(
    path: &Path,
    sample_fps: f64,
    max_frames: u32,
    on_frame: &mut dyn FnMut(RgbFrame) -> bool,
) -> Result<u32, MediaError> {
    let mut sampler = IntervalSampler::new(sample_fps);
    let mut delivered = 0u32;
    for_each_frame(path, &mut |frame| {
        if !sampler.is_due(frame.ts_s) {
            return true;
        }
        delivered += 1;
        let go_on = on_frame(frame.to_rgb());
        go_on && (max_frames == 0 || delivered < max_frames)
    })?;
    Ok(delivered)
}

/// Encodes an RGB frame as JPEG, scaled down so its longer side is at most `max_size`
/// (0: no limit). `quality` is 1-100.
pub fn encode_jpeg(frame: &RgbFrame, max_size: u32, quality: u8) -> Result<Jpeg, MediaError> {
    resize::encode_jpeg_impl(frame, max_size, quality)
}

/// Writes JPEGs into `dir` (created) as `frame_<n>_<ms>.jpg`, `ms` being the
/// frame's time from the clip start. They are a cache ([`crate::fsutil::write_cache`]):
/// [`read_jpegs`] skips a file a power cut cut short. Blocking.
pub fn write_jpegs(dir: &Path, jpegs: &[Jpeg]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (i, j) in jpegs.iter().enumerate() {
        let ms = (j.ts_s.max(0.0) * 1000.0).round() as u64;
        crate::fsutil::write_cache(&dir.join(format!("frame_{i:02}_{ms}.jpg")), &j.bytes)?;
    }
    Ok(())
}

/// The JPEGs [`write_jpegs`] wrote, in order; empty when `dir` does not exist.
/// Files that are not such JPEGs are skipped. Blocking.
pub fn read_jpegs(dir: &Path) -> std::io::Result<Vec<Jpeg>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut named: Vec<(u32, f64, std::path::PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let mut parts = name.strip_prefix("frame_")?.strip_suffix(".jpg")?.split('_');
            let index = parts.next()?.parse().ok()?;
            let ms: u64 = parts.next()?.parse().ok()?;
            Some((index, ms as f64 / 1000.0, e.path()))
        })
        .collect();
    named.sort_by_key(|(i, _, _)| *i);
    let mut out = Vec::with_capacity(named.len());
    for (_, ts_s, path) in named {
        let bytes = std::fs::read(&path)?;
        let mut decoder = zune_jpeg::JpegDecoder::new(zune_jpeg::zune_core::bytestream::ZCursor::new(&bytes));
        let dims = decoder.decode_headers().ok().and_then(|_| decoder.dimensions());
        // A whole JPEG ends with its EOI marker; one cut short by a power cut does not.
        let (Some((width, height)), true) = (dims, bytes.ends_with(&[0xFF, 0xD9])) else {
            tracing::warn!(file = %path.display(), "not a whole JPEG; skipped");
            continue;
        };
        out.push(Jpeg { ts_s, width: width as u32, height: height as u32, bytes });
    }
    Ok(out)
}

/// The frames (presentation order) `sample_jpegs` takes: the middle frame of each
/// of `n` equal slices of the clip's `frame_count` frames (distinct when `n <= frame_count`).
fn spread_indices(frame_count: u32, n: u32) -> Vec<u32> {
    (0..u64::from(n)).map(|i| ((2 * i + 1) * u64::from(frame_count) / (2 * u64::from(n))) as u32).collect()
}

/// Up to `max_frames` JPEGs spread evenly over the clip, for the VLM: the middle
/// frame of each of `max_frames` equal slices (every frame when the clip has fewer),
/// scaled to at most `max_size` on the longer side.
pub fn sample_jpegs(path: &Path, max_frames: u32, max_size: u32, quality: u8) -> Result<Vec<Jpeg>, MediaError> {
    let mut video = demux::Mp4Video::open(path)?;
    let n = max_frames.min(video.info.frame_count);
    if n == 0 {
        return Ok(Vec::new());
    }
    let wanted = spread_indices(video.info.frame_count, n);
    let mut next = 0usize;
    let mut jpegs = Vec::with_capacity(n as usize);
    let mut failure = None;
    decode::decode_video(&mut video, &mut |frame| {
        if wanted.get(next) != Some(&frame.index) {
            return next < wanted.len();
        }
        next += 1;
        match encode_jpeg(&frame.to_rgb(), max_size, quality) {
            Ok(jpeg) => jpegs.push(jpeg),
            Err(e) => {
                failure = Some(e);
                return false;
            }
        }
        next < wanted.len()
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    tracing::debug!(path = %path.display(), jpegs = jpegs.len(), requested = max_frames, "sampled JPEGs");
    Ok(jpegs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_sampler_takes_frames_on_the_grid() {
        // 10 fps sampled at 2 fps: 0.0, 0.5, 1.0, …
        let mut s = IntervalSampler::new(2.0);
        let taken: Vec<u32> = (0..30).filter(|i| s.is_due(f64::from(*i) * 0.1)).collect();
        assert_eq!(taken, vec![0, 5, 10, 15, 20, 25]);

        // 15 fps sampled at 2 fps: the first frame at or after each half second.
        let mut s = IntervalSampler::new(2.0);
        let taken: Vec<u32> = (0..31).filter(|i| s.is_due(f64::from(*i) / 15.0)).collect();
        assert_eq!(taken, vec![0, 8, 15, 23, 30]);

        // 0 takes everything.
        let mut s = IntervalSampler::new(0.0);
        assert!((0..10).all(|i| s.is_due(f64::from(i) * 0.1)));
    }

    #[test]
    fn interval_sampler_skips_missing_slots() {
        let mut s = IntervalSampler::new(10.0);
        assert!(s.is_due(0.0));
        assert!(s.is_due(1.0));
        assert!(!s.is_due(1.05));
        assert!(s.is_due(1.1));
    }

    #[test]
    fn spread_indices_are_slice_middles() {
        assert_eq!(spread_indices(10, 5), vec![1, 3, 5, 7, 9]);
        assert_eq!(spread_indices(795, 8), vec![49, 149, 248, 347, 447, 546, 645, 745]);
        assert_eq!(spread_indices(4, 4), vec![0, 1, 2, 3]);
        assert_eq!(spread_indices(5, 1), vec![2]);
    }

    #[test]
    fn a_frame_a_power_cut_left_short_or_empty_is_skipped() {
        let frame = RgbFrame { ts_s: 0.0, width: 32, height: 16, data: vec![128; 32 * 16 * 3] };
        let jpeg = encode_jpeg(&frame, 0, 80).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let jpegs: Vec<Jpeg> = (0..3).map(|i| Jpeg { ts_s: f64::from(i), ..jpeg.clone() }).collect();
        write_jpegs(dir.path(), &jpegs).unwrap();
        assert_eq!(read_jpegs(dir.path()).unwrap().len(), 3);
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
        std::fs::write(&files[0], &jpeg.bytes[..jpeg.bytes.len() - 10]).unwrap();
        std::fs::write(&files[1], b"").unwrap();
        let left = read_jpegs(dir.path()).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].bytes, jpeg.bytes);
    }
}
