//! The one video decoder seam: H.264 and H.265 with FFmpeg's libavcodec
//! (built with those two decoders only, linked statically: `build.rs`,
//! `vendor/ffmpeg/`), taking Annex-B access units and lending planar YUV 4:2:0
//! [`Picture`]s.
//!
//! Clip decoding (`decode.rs`) and the live detect stream (`detect.rs`) both go
//! through [`VideoDecoder`]; nothing outside this file names a decoder library.
//! One decoder per clip or camera, single-threaded on the calling thread.
//! docs/design.md ("Decoders") has the measurements behind the choice.

use std::ffi::{CStr, c_char, c_int, c_void};

/// The video codecs HomeSec records and decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum VideoCodec {
    #[default]
    H264,
    H265,
}

impl VideoCodec {
    /// The codec of an RFC 6381 codec string (`avc1.640028`, `hvc1.1.6.L120.90`),
    /// as RTSP stacks report it; `None` for anything else.
    pub fn from_rfc6381(codec: &str) -> Option<Self> {
        match codec.get(..4) {
            Some("avc1" | "avc3") => Some(Self::H264),
            Some("hvc1" | "hev1") => Some(Self::H265),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::H264 => "H.264",
            Self::H265 => "H.265",
        }
    }
}

impl std::fmt::Display for VideoCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecoderError {
    #[error("cannot create the {codec} decoder: {reason}")]
    Create { codec: VideoCodec, reason: String },
    #[error("{codec} decode error: {reason}")]
    Decode { codec: VideoCodec, reason: String },
    #[error("{codec} pictures in {format} are not supported (8-bit 4:2:0 only)")]
    Format { codec: VideoCodec, format: String },
}

/// A decoded picture, planar YUV 4:2:0 (8 bit), borrowed from the decoder.
#[derive(Clone, Copy)]
pub struct Picture<'a> {
    pub width: u32,
    pub height: u32,
    pub y: &'a [u8],
    pub u: &'a [u8],
    pub v: &'a [u8],
    pub y_stride: usize,
    pub uv_stride: usize,
}

impl std::fmt::Debug for Picture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Picture").field("width", &self.width).field("height", &self.height).finish_non_exhaustive()
    }
}

impl<'a> Picture<'a> {
    /// A picture of planes held elsewhere (a decoder's, a USB camera's frame).
    pub fn from_planes(
        (width, height): (u32, u32),
        (y, u, v): (&'a [u8], &'a [u8], &'a [u8]),
        (y_stride, uv_stride): (usize, usize),
    ) -> Self {
        Self { width, height, y, u, v, y_stride, uv_stride }
    }

    /// Converts the picture to packed RGB (`width * height * 3` bytes), reusing
    /// `out`'s allocation.
    pub fn write_rgb(&self, out: &mut Vec<u8>) {
        out.resize(self.width as usize * self.height as usize * 3, 0);
        yuv420_to_rgb(self, out);
    }
}

/// BT.601 limited-range YUV 4:2:0 to RGB in 14-bit fixed point. Rows or
/// columns the planes do not cover stay black.
fn yuv420_to_rgb(p: &Picture<'_>, out: &mut [u8]) {
    const Y: i32 = 19077; // 1.164 << 14
    const RV: i32 = 26149; // 1.596
    const GU: i32 = 6406; // 0.391
    const GV: i32 = 13320; // 0.813
    const BU: i32 = 33063; // 2.018
    const HALF: i32 = 1 << 13;
    let w = p.width as usize;
    let clamp = |v: i32| ((v + HALF) >> 14).clamp(0, 255) as u8;
    for (row, rgb) in out.chunks_exact_mut(w * 3).enumerate().take(p.height as usize) {
        let (Some(ys), Some(us), Some(vs)) = (
            p.y.get(row * p.y_stride..).and_then(|s| s.get(..w)),
            p.u.get(row / 2 * p.uv_stride..).and_then(|s| s.get(..w.div_ceil(2))),
            p.v.get(row / 2 * p.uv_stride..).and_then(|s| s.get(..w.div_ceil(2))),
        ) else {
            continue;
        };
        for (x, (px, &yv)) in rgb.chunks_exact_mut(3).zip(ys).enumerate() {
            let c = Y * (i32::from(yv) - 16);
            let u = i32::from(us[x / 2]) - 128;
            let v = i32::from(vs[x / 2]) - 128;
            px[0] = clamp(c + RV * v);
            px[1] = clamp(c - GU * u - GV * v);
            px[2] = clamp(c + BU * u);
        }
    }
}

// The C side (src/media/avdecode.c).
#[repr(C)]
struct HsPicture {
    y: *const u8,
    u: *const u8,
    v: *const u8,
    y_stride: c_int,
    uv_stride: c_int,
    width: c_int,
    height: c_int,
    unsupported: c_int,
    format: [c_char; 32],
}

unsafe extern "C" {
    fn hs_decoder_new(codec: c_int, err: *mut c_char, errlen: usize) -> *mut c_void;
    fn hs_decoder_free(d: *mut c_void);
    fn hs_decoder_send(d: *mut c_void, data: *const u8, len: usize) -> c_int;
    fn hs_decoder_receive(d: *mut c_void, out: *mut HsPicture) -> c_int;
    fn hs_error_text(code: c_int, out: *mut c_char, len: usize);
}

fn text(buf: &[c_char]) -> String {
    // SAFETY: the C side always writes a NUL-terminated string into the buffer,
    // and the buffer ends with a NUL from its zero initialisation.
    unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
}

fn error_text(code: c_int) -> String {
    let mut buf = [0 as c_char; 128];
    // SAFETY: av_strerror writes at most `len` bytes, NUL-terminated.
    unsafe { hs_error_text(code, buf.as_mut_ptr(), buf.len() - 1) };
    text(&buf)
}

/// A libavcodec decoder for one codec. Not shared between threads.
pub(crate) struct VideoDecoder {
    codec: VideoCodec,
    raw: *mut c_void,
    /// Parameter sets given on their own, sent in front of the next access unit
    /// (libavcodec wants them in the same packet as a picture).
    params: Vec<u8>,
}

// SAFETY: the decoder is owned by one VideoDecoder, which moves between threads
// but is never used from two at once (no &self method touches it).
unsafe impl Send for VideoDecoder {}

impl Drop for VideoDecoder {
    fn drop(&mut self) {
        // SAFETY: `raw` came from hs_decoder_new and is freed once, here.
        unsafe { hs_decoder_free(self.raw) };
    }
}

impl VideoDecoder {
    pub fn new(codec: VideoCodec) -> Result<Self, DecoderError> {
        let mut err = [0 as c_char; 128];
        let id = match codec {
            VideoCodec::H264 => 0,
            VideoCodec::H265 => 1,
        };
        // SAFETY: `err` is writable for `len` bytes; a NULL result means failure.
        let raw = unsafe { hs_decoder_new(id, err.as_mut_ptr(), err.len() - 1) };
        if raw.is_null() {
            return Err(DecoderError::Create { codec, reason: text(&err) });
        }
        Ok(Self { codec, raw, params: Vec::new() })
    }

    pub fn codec(&self) -> VideoCodec {
        self.codec
    }

    /// Parameter sets (SPS/PPS, and VPS for H.265) in Annex-B, as a sample entry
    /// holds them: they go in with the next access unit.
    pub fn parameter_sets(&mut self, annexb: &[u8]) -> Result<(), DecoderError> {
        self.params.clear();
        self.params.extend_from_slice(annexb);
        Ok(())
    }

    /// Decodes one Annex-B access unit, lending each picture it completes.
    pub fn decode(&mut self, annexb: &[u8], on_picture: &mut dyn FnMut(&Picture<'_>)) -> Result<(), DecoderError> {
        let r = if self.params.is_empty() {
            // SAFETY: `raw` is a live decoder; the data is read during the call only.
            unsafe { hs_decoder_send(self.raw, annexb.as_ptr(), annexb.len()) }
        } else {
            let mut unit = std::mem::take(&mut self.params);
            unit.extend_from_slice(annexb);
            // SAFETY: as above.
            unsafe { hs_decoder_send(self.raw, unit.as_ptr(), unit.len()) }
        };
        // Pictures completed before an error still go out.
        let received = self.receive(on_picture);
        if r < 0 {
            return Err(DecoderError::Decode { codec: self.codec, reason: error_text(r) });
        }
        received
    }

    /// The pictures still held back (reordering), at the end of the stream.
    pub fn flush(&mut self, on_picture: &mut dyn FnMut(&Picture<'_>)) -> Result<(), DecoderError> {
        // SAFETY: a NULL packet starts draining.
        let r = unsafe { hs_decoder_send(self.raw, std::ptr::null(), 0) };
        if r < 0 {
            return Err(DecoderError::Decode { codec: self.codec, reason: error_text(r) });
        }
        self.receive(on_picture)
    }

    fn receive(&mut self, on_picture: &mut dyn FnMut(&Picture<'_>)) -> Result<(), DecoderError> {
        loop {
            let mut p = HsPicture {
                y: std::ptr::null(),
                u: std::ptr::null(),
                v: std::ptr::null(),
                y_stride: 0,
                uv_stride: 0,
                width: 0,
                height: 0,
                unsupported: 0,
                format: [0; 32],
            };
            // SAFETY: `raw` is live; `p` is written by the call.
            let r = unsafe { hs_decoder_receive(self.raw, &mut p) };
            if r == 0 {
                return Ok(());
            }
            if r < 0 {
                return Err(DecoderError::Decode { codec: self.codec, reason: error_text(r) });
            }
            if p.unsupported != 0 {
                return Err(DecoderError::Format { codec: self.codec, format: text(&p.format) });
            }
            let (w, h) = (p.width.max(0) as usize, p.height.max(0) as usize);
            let (ys, uvs) = (p.y_stride.max(0) as usize, p.uv_stride.max(0) as usize);
            let (y_len, uv_len) = (ys * h, uvs * h.div_ceil(2));
            if w == 0 || h == 0 || ys < w || uvs < w.div_ceil(2) || p.y.is_null() || p.u.is_null() || p.v.is_null() {
                return Err(DecoderError::Decode { codec: self.codec, reason: format!("unusable picture {w}x{h}") });
            }
            // SAFETY: libavcodec's 4:2:0 planes hold `height` rows of `y_stride`
            // bytes (luma) and `ceil(height/2)` rows of `uv_stride` (chroma); they
            // stay valid until the next receive, after `on_picture` returns.
            let (y, u, v) = unsafe {
                (
                    std::slice::from_raw_parts(p.y, y_len),
                    std::slice::from_raw_parts(p.u, uv_len),
                    std::slice::from_raw_parts(p.v, uv_len),
                )
            };
            on_picture(&Picture::from_planes((w as u32, h as u32), (y, u, v), (ys, uvs)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_from_rfc6381_strings() {
        assert_eq!(VideoCodec::from_rfc6381("avc1.640028"), Some(VideoCodec::H264));
        assert_eq!(VideoCodec::from_rfc6381("hvc1.1.6.L120.90"), Some(VideoCodec::H265));
        assert_eq!(VideoCodec::from_rfc6381("hev1.1.6.L93.B0"), Some(VideoCodec::H265));
        assert_eq!(VideoCodec::from_rfc6381("mp4v.20.9"), None);
        assert_eq!(VideoCodec::from_rfc6381("av"), None);
        assert_eq!(VideoCodec::H265.to_string(), "H.265");
    }

    #[test]
    fn yuv_converts_to_rgb_like_bt601() {
        // 2x2: white, black, mid grey, and a saturated red chroma sample shared by all.
        let y = [235u8, 16, 126, 126];
        let grey = [128u8];
        let p = Picture { width: 2, height: 2, y: &y, u: &grey, v: &grey, y_stride: 2, uv_stride: 1 };
        let mut rgb = Vec::new();
        p.write_rgb(&mut rgb);
        assert_eq!(rgb, [255, 255, 255, 0, 0, 0, 128, 128, 128, 128, 128, 128]);
        let (u, v) = ([90u8], [240u8]);
        let red = Picture { u: &u, v: &v, ..p };
        red.write_rgb(&mut rgb);
        // Y 126, U 90, V 240: R clips, B drops.
        assert_eq!(&rgb[6..9], &[255, 52, 51]);
    }

    #[test]
    fn an_h265_decoder_rejects_garbage_without_a_picture() {
        let mut d = VideoDecoder::new(VideoCodec::H265).unwrap();
        assert_eq!(d.codec(), VideoCodec::H265);
        let mut pictures = 0;
        // A slice without any parameter set: no picture, whatever the decoder says about it.
        let _ = d.decode(&[0, 0, 0, 1, 0x26, 0x01, 0xaf, 0x00, 0x11], &mut |_| pictures += 1);
        let _ = d.flush(&mut |_| pictures += 1);
        assert_eq!(pictures, 0);
    }
}
