//! H.264 decode with openh264: one decoder per call, on the calling thread.
//!
//! Every sample is decoded (P- and B-frames depend on their references); only the
//! frames a caller asks for are converted to RGB. Frames leave the decoder in
//! presentation order; each gets the smallest presentation time among the samples
//! fed and not yet output, which is exact for streams with B-frames.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use openh264::OpenH264API;
use openh264::decoder::{DecodedYUV, Decoder, DecoderConfig, Flush};
use openh264::formats::YUVSource;

use super::demux::Mp4Video;
use super::{MediaError, RgbFrame};

/// A decoded frame, borrowed from the decoder until the callback returns.
pub struct FrameRef<'a> {
    yuv: &'a DecodedYUV<'a>,
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
        (self.yuv.y(), self.yuv.strides().0)
    }

    /// Converts the frame to packed RGB, reusing `out`'s allocation.
    pub fn write_rgb(&self, out: &mut Vec<u8>) {
        out.resize(self.width as usize * self.height as usize * 3, 0);
        self.yuv.write_rgb8(out);
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
    let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
    let mut decoder = Decoder::with_api_config(OpenH264API::from_source(), config)
        .map_err(|e| decode_error(&path, format!("cannot create the decoder: {e}")))?;
    decoder.decode(&video.parameter_sets).map_err(|e| decode_error(&path, format!("bad SPS/PPS in avcC: {e}")))?;

    let timescale = f64::from(video.timescale);
    let mut origin = video.first_pts();
    let mut pending: BinaryHeap<Reverse<i64>> = BinaryHeap::new();
    let mut emitted = 0u32;
    let mut stopped = false;
    let mut packet = Vec::new();
    let mut skipped = 0u32;
    let mut first_error: Option<MediaError> = None;

    let mut emit = |yuv: &DecodedYUV<'_>, pending: &mut BinaryHeap<Reverse<i64>>| -> bool {
        let pts = pending.pop().map_or(0, |Reverse(p)| p);
        let origin = *origin.get_or_insert(pts);
        let (w, h) = yuv.dimensions();
        let frame = FrameRef {
            yuv,
            index: emitted,
            ts_s: (pts - origin) as f64 / timescale,
            width: w as u32,
            height: h as u32,
        };
        emitted += 1;
        on_frame(&frame)
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
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            Err(e) => {
                pending.retain(|Reverse(p)| *p != pts);
                skipped += 1;
                first_error.get_or_insert_with(|| {
                    decode_error(&path, format!("sample {} of {count} (pts {pts}/{}): {e}", i + 1, video.timescale))
                });
                continue;
            }
        };
        if let Some(yuv) = decoded
            && !emit(&yuv, &mut pending)
        {
            stopped = true;
            break;
        }
    }
    if !stopped {
        let rest =
            decoder.flush_remaining().map_err(|e| decode_error(&path, format!("flushing the last frames: {e}")))?;
        for yuv in &rest {
            if !emit(yuv, &mut pending) {
                break;
            }
        }
    }
    if let Some(err) = first_error {
        if emitted == 0 {
            return Err(err);
        }
        tracing::warn!(path = %path, skipped, samples = count, first_error = %err, "skipped undecodable samples");
    }
    tracing::debug!(path = %path, samples = count, frames = emitted, stopped, "decoded clip");
    Ok(emitted)
}
