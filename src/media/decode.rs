//! Clip decode: one [`VideoDecoder`] (H.264 or H.265, as the track says) per
//! call, on the calling thread.
//!
//! Every sample is decoded (P- and B-frames depend on their references); only the
//! frames a caller asks for are converted to RGB. Frames leave the decoder in
//! presentation order; each gets the smallest presentation time among the samples
//! fed and not yet output, which is exact for streams with B-frames.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::codec::{Picture, VideoDecoder};
use super::demux::Mp4Video;
use super::{MediaError, RgbFrame};

/// A decoded frame, borrowed from the decoder until the callback returns.
pub struct FrameRef<'a> {
    picture: &'a Picture<'a>,
    /// Position in presentation order, from 0.
    pub index: u32,
    /// Seconds from the first presented frame.
    pub ts_s: f64,
    pub width: u32,
    pub height: u32,
}

impl FrameRef<'_> {
    /// The luma (Y) plane and its row stride: the frame in grayscale.
    pub fn luma(&self) -> (&[u8], usize) {
        (self.picture.y, self.picture.y_stride)
    }

    /// The planar YUV 4:2:0 picture (planes and strides).
    pub fn picture(&self) -> &Picture<'_> {
        self.picture
    }

    /// Converts the frame to packed RGB, reusing `out`'s allocation.
    pub fn write_rgb(&self, out: &mut Vec<u8>) {
        self.picture.write_rgb(out);
    }

    /// Converts the frame to an owned RGB frame.
    pub fn to_rgb(&self) -> RgbFrame {
        let mut data = Vec::new();
        self.write_rgb(&mut data);
        RgbFrame { ts_s: self.ts_s, width: self.width, height: self.height, data }
    }
}

fn decode_error(path: &str, reason: String) -> MediaError {
    MediaError::Decode { path: path.to_owned(), reason }
}

/// Decodes every frame of `video`, calling `on_frame` in presentation order until it
/// returns `false`. Returns the number of frames passed to `on_frame`.
pub(crate) fn decode_video(
    video: &mut Mp4Video,
    on_frame: &mut dyn FnMut(&FrameRef<'_>) -> bool,
) -> Result<u32, MediaError> {
    let path = video.path().to_owned();
    let codec = video.codec;
    let mut decoder = VideoDecoder::new(codec).map_err(|e| decode_error(&path, e.to_string()))?;
    if !video.parameter_sets.is_empty() {
        decoder
            .parameter_sets(&video.parameter_sets)
            .map_err(|e| decode_error(&path, format!("bad parameter sets in the sample entry: {e}")))?;
    }

    let timescale = f64::from(video.timescale);
    let mut origin = video.first_pts();
    let mut pending: BinaryHeap<Reverse<i64>> = BinaryHeap::new();
    let mut emitted = 0u32;
    let mut stopped = false;
    let mut packet = Vec::new();
    let mut skipped = 0u32;
    let mut first_error: Option<MediaError> = None;

    let mut emit = |picture: &Picture<'_>, pending: &mut BinaryHeap<Reverse<i64>>, stopped: &mut bool| {
        if *stopped {
            return;
        }
        let pts = pending.pop().map_or(0, |Reverse(p)| p);
        let origin = *origin.get_or_insert(pts);
        let frame = FrameRef {
            picture,
            index: emitted,
            ts_s: (pts - origin) as f64 / timescale,
            width: picture.width,
            height: picture.height,
        };
        emitted += 1;
        *stopped = !on_frame(&frame);
    };

    let count = video.sample_count();
    for i in 0..count {
        let pts = match video.read_sample(i, &mut packet) {
            Ok(pts) => pts,
            Err(e) => {
                skipped += 1;
                first_error.get_or_insert(e);
                continue;
            }
        };
        pending.push(Reverse(pts));
        // A damaged sample is skipped (the decoder recovers at the next keyframe)
        // so that one glitch does not make the whole recording unusable.
        let mut pictures = 0u32;
        let decoded = decoder.decode(&packet, &mut |picture| {
            pictures += 1;
            emit(picture, &mut pending, &mut stopped);
        });
        if let Err(e) = decoded {
            if pictures == 0 {
                pending.retain(|Reverse(p)| *p != pts);
            }
            skipped += 1;
            first_error.get_or_insert_with(|| {
                decode_error(&path, format!("sample {} of {count} (pts {pts}/{}): {e}", i + 1, video.timescale))
            });
        }
        if stopped {
            break;
        }
    }
    if !stopped {
        decoder
            .flush(&mut |picture| emit(picture, &mut pending, &mut stopped))
            .map_err(|e| decode_error(&path, format!("flushing the last frames: {e}")))?;
    }
    if let Some(err) = first_error {
        if emitted == 0 {
            return Err(err);
        }
        tracing::warn!(path = %path, %codec, skipped, samples = count, first_error = %err, "skipped undecodable samples");
    }
    tracing::debug!(path = %path, %codec, samples = count, frames = emitted, stopped, "decoded clip");
    Ok(emitted)
}
