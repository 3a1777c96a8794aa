//! The one video decoder seam: H.264 with openh264, H.265 with libde265, both
//! taking Annex-B access units and lending planar YUV 4:2:0 [`Picture`]s.
//!
//! Clip decoding (`decode.rs`) and the live detect stream (`detect.rs`) both go
//! through [`VideoDecoder`]; nothing outside this file names a decoder library.
//! One decoder per clip or camera, single-threaded on the calling thread.

use libde265_rs::{Channel, ChromaFormat, DeError, DecodeResult, DecoderInput, DecoderOutput};
use openh264::OpenH264API;
use openh264::decoder::{DecodedYUV, Decoder, DecoderConfig, Flush};
use openh264::formats::YUVSource;

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
    /// openh264's own picture: its (SIMD) RGB conversion is used for it.
    h264: Option<&'a DecodedYUV<'a>>,
}

impl std::fmt::Debug for Picture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Picture").field("width", &self.width).field("height", &self.height).finish_non_exhaustive()
    }
}

impl<'a> Picture<'a> {
    /// A picture of planes held elsewhere (a USB camera's frame, a detect-stream
    /// picture), converted by the portable code.
    pub fn from_planes(
        (width, height): (u32, u32),
        (y, u, v): (&'a [u8], &'a [u8], &'a [u8]),
        (y_stride, uv_stride): (usize, usize),
    ) -> Self {
        Self { width, height, y, u, v, y_stride, uv_stride, h264: None }
    }

    fn from_openh264(yuv: &'a DecodedYUV<'a>) -> Self {
        let (w, h) = yuv.dimensions();
        let (y_stride, uv_stride, _) = yuv.strides();
        Self {
            width: w as u32,
            height: h as u32,
            y: yuv.y(),
            u: yuv.u(),
            v: yuv.v(),
            y_stride,
            uv_stride,
            h264: Some(yuv),
        }
    }

    /// Converts the picture to packed RGB (`width * height * 3` bytes), reusing
    /// `out`'s allocation.
    pub fn write_rgb(&self, out: &mut Vec<u8>) {
        out.resize(self.width as usize * self.height as usize * 3, 0);
        match self.h264 {
            Some(yuv) => yuv.write_rgb8(out),
            None => yuv420_to_rgb(self, out),
        }
    }
}

/// BT.601 limited-range YUV 4:2:0 to RGB in 14-bit fixed point (what openh264's
/// conversion computes in floating point). Rows or columns the planes do not
/// cover stay black.
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

/// libde265's decoder: its input and output halves share one C context.
struct H265Decoder {
    input: DecoderInput,
    output: DecoderOutput,
}

// SAFETY: the two halves share their context through an `Rc` that never leaves
// this struct, so moving the struct moves every handle to the context at once;
// pictures borrow `&mut self` and cannot outlive a move. libde265 keeps no
// thread-local state (no worker threads are started).
unsafe impl Send for H265Decoder {}

/// An H.264 or H.265 decoder: Annex-B access units in, pictures out (in
/// presentation order, through a callback, since H.265 may give several at once).
pub(crate) struct VideoDecoder(Inner);

enum Inner {
    H264(Box<Decoder>),
    H265(Box<H265Decoder>),
}

impl VideoDecoder {
    pub fn new(codec: VideoCodec) -> Result<Self, DecoderError> {
        match codec {
            VideoCodec::H264 => {
                let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
                Decoder::with_api_config(OpenH264API::from_source(), config)
                    .map(|d| Self(Inner::H264(Box::new(d))))
                    .map_err(|e| DecoderError::Create { codec, reason: e.to_string() })
            }
            VideoCodec::H265 => {
                let (input, output) =
                    libde265_rs::new_decoder().map_err(|e| DecoderError::Create { codec, reason: e.to_string() })?;
                Ok(Self(Inner::H265(Box::new(H265Decoder { input, output }))))
            }
        }
    }

    pub fn codec(&self) -> VideoCodec {
        match self.0 {
            Inner::H264(_) => VideoCodec::H264,
            Inner::H265(_) => VideoCodec::H265,
        }
    }

    /// Feeds parameter sets (Annex-B) ahead of the pictures that use them.
    pub fn parameter_sets(&mut self, annexb: &[u8]) -> Result<(), DecoderError> {
        match &mut self.0 {
            Inner::H264(d) => {
                d.decode(annexb)
                    .map_err(|e| DecoderError::Decode { codec: VideoCodec::H264, reason: e.to_string() })?;
                Ok(())
            }
            // Parameter-set NAL units make no picture: they wait in the input
            // queue for the access unit they belong with.
            Inner::H265(d) => d.input.push_data(annexb, 0, 0).map_err(|e| h265_error(&e)),
        }
    }

    /// Decodes one access unit (Annex-B) and lends every picture it completes.
    pub fn decode(&mut self, annexb: &[u8], on_picture: &mut dyn FnMut(&Picture<'_>)) -> Result<(), DecoderError> {
        match &mut self.0 {
            Inner::H264(d) => {
                let yuv = d
                    .decode(annexb)
                    .map_err(|e| DecoderError::Decode { codec: VideoCodec::H264, reason: e.to_string() })?;
                if let Some(yuv) = yuv {
                    on_picture(&Picture::from_openh264(&yuv));
                }
                Ok(())
            }
            Inner::H265(d) => {
                // End of NAL, not of frame: libde265 flushes its reorder buffer at
                // an end of frame (pictures would leave in decode order). A
                // picture is complete when the next one starts: one access unit
                // of latency, plus the stream's reordering.
                d.input.push_data(annexb, 0, 0).map_err(|e| h265_error(&e))?;
                d.input.push_end_of_nal();
                d.run(on_picture)
            }
        }
    }

    /// End of stream: lends the pictures the decoder still holds.
    pub fn flush(&mut self, on_picture: &mut dyn FnMut(&Picture<'_>)) -> Result<(), DecoderError> {
        match &mut self.0 {
            Inner::H264(d) => {
                let rest = d
                    .flush_remaining()
                    .map_err(|e| DecoderError::Decode { codec: VideoCodec::H264, reason: e.to_string() })?;
                for yuv in &rest {
                    on_picture(&Picture::from_openh264(yuv));
                }
                Ok(())
            }
            Inner::H265(d) => {
                d.input.flush_data().map_err(|e| h265_error(&e))?;
                d.run(on_picture)
            }
        }
    }
}

fn chroma_name(chroma: ChromaFormat) -> &'static str {
    match chroma {
        ChromaFormat::Mono => "monochrome",
        ChromaFormat::C420 => "4:2:0",
        ChromaFormat::C422 => "4:2:2",
        ChromaFormat::C444 => "4:4:4",
    }
}

fn h265_error(e: &DeError) -> DecoderError {
    DecoderError::Decode { codec: VideoCodec::H265, reason: e.to_string() }
}

impl H265Decoder {
    /// Decodes what was pushed, lending each finished picture.
    fn run(&mut self, on_picture: &mut dyn FnMut(&Picture<'_>)) -> Result<(), DecoderError> {
        loop {
            let result = self.input.decode();
            self.drain(on_picture)?;
            match result {
                Ok(DecodeResult::CallAgain) | Err(DeError::ErrorImageBufferFull) => {}
                Ok(DecodeResult::Done) | Err(DeError::ErrorWaitingForInputData) => return Ok(()),
                Err(e) => return Err(h265_error(&e)),
            }
        }
    }

    fn drain(&mut self, on_picture: &mut dyn FnMut(&Picture<'_>)) -> Result<(), DecoderError> {
        while let Some(image) = self.output.next_picture() {
            let bits = image.bits_per_pixel(Channel::Y);
            let chroma = image.chroma_format();
            if chroma != ChromaFormat::C420 || bits != 8 {
                return Err(DecoderError::Format {
                    codec: VideoCodec::H265,
                    format: format!("{} {bits}-bit", chroma_name(chroma)),
                });
            }
            let (y, y_stride) = image.plane(Channel::Y);
            let (u, uv_stride) = image.plane(Channel::Cb);
            let (v, _) = image.plane(Channel::Cr);
            on_picture(&Picture {
                width: image.width(Channel::Y),
                height: image.height(Channel::Y),
                y,
                u,
                v,
                y_stride,
                uv_stride,
                h264: None,
            });
        }
        Ok(())
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
        let p = Picture { width: 2, height: 2, y: &y, u: &grey, v: &grey, y_stride: 2, uv_stride: 1, h264: None };
        let mut rgb = Vec::new();
        p.write_rgb(&mut rgb);
        assert_eq!(rgb, [255, 255, 255, 0, 0, 0, 128, 128, 128, 128, 128, 128]);
        let (u, v) = ([90u8], [240u8]);
        let red = Picture { u: &u, v: &v, ..p };
        red.write_rgb(&mut rgb);
        // Y 126, U 90, V 240: R clips, B drops (openh264 gives the same within one).
        assert_eq!(&rgb[6..9], &[255, 52, 51]);
    }

    #[test]
    fn an_h265_decoder_rejects_garbage_without_a_picture() {
        let mut d = VideoDecoder::new(VideoCodec::H265).unwrap();
        assert_eq!(d.codec(), VideoCodec::H265);
        let mut pictures = 0;
        // A slice without any parameter set: no picture, whatever libde265 says about it.
        let _ = d.decode(&[0, 0, 0, 1, 0x26, 0x01, 0xaf, 0x00, 0x11], &mut |_| pictures += 1);
        let _ = d.flush(&mut |_| pictures += 1);
        assert_eq!(pictures, 0);
    }
}
