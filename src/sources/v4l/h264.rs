//! H.264 bitstream plumbing for the USB source: access units rewritten for MP4
//! (the NAL framing itself is in [`crate::media::nal`]), parameter sets for the
//! sample entry and the picture size from the SPS, and the openh264 encoder used
//! for MJPEG/YUYV capture.

use openh264::OpenH264API;
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, IntraFramePeriod, RateControlMode, UsageType, VuiConfig,
};
use openh264::formats::YUVSlices;

use super::convert::I420Frame;
use crate::media::nal::{self, START_CODE};

/// The SPS and PPS of a stream: what an MP4 `avcC` sample entry carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterSets {
    /// The sequence parameter set NAL unit (with its header byte, no start code).
    pub sps: Vec<u8>,
    /// The picture parameter set NAL unit (with its header byte, no start code).
    pub pps: Vec<u8>,
}

impl ParameterSets {
    /// SPS and PPS as one Annex-B blob (what a decoder is primed with).
    pub fn annex_b(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.sps.len() + self.pps.len());
        for nal in [&self.sps, &self.pps] {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(nal);
        }
        out
    }

    /// The coded picture size from the SPS, cropping applied; `None` when the
    /// SPS cannot be parsed.
    pub fn dimensions(&self) -> Option<(u32, u32)> {
        sps_dimensions(&self.sps)
    }
}

/// One access unit rewritten for MP4.
#[derive(Debug, Default)]
pub struct AccessUnitInfo {
    /// Contains an IDR slice: decoding can start here.
    pub keyframe: bool,
    /// Contains at least one slice (a picture); SEI- or SPS-only buffers do not.
    pub has_picture: bool,
    /// SPS and PPS found in this access unit (both, or none).
    pub parameter_sets: Option<ParameterSets>,
}

/// Rewrites one Annex-B access unit as 4-byte length-prefixed NAL units into `out`
/// (cleared first), leaving out SPS, PPS and access unit delimiters (those go into
/// the sample entry), and reports what it held
/// ([`nal::h264_access_unit_to_avcc`] with the parameter sets kept).
pub fn access_unit_to_avcc(data: &[u8], out: &mut Vec<u8>) -> AccessUnitInfo {
    let unit = nal::h264_access_unit_to_avcc(data, out);
    let parameter_sets = match (unit.sps, unit.pps) {
        (Some(sps), Some(pps)) => Some(ParameterSets { sps: sps.to_vec(), pps: pps.to_vec() }),
        _ => None,
    };
    AccessUnitInfo { keyframe: unit.keyframe, has_picture: unit.has_picture, parameter_sets }
}

/// Reads the unsigned/signed Exp-Golomb codes of an RBSP (emulation prevention
/// bytes removed).
struct BitReader {
    data: Vec<u8>,
    bit: usize,
}

impl BitReader {
    fn from_nal_payload(payload: &[u8]) -> Self {
        let mut data = Vec::with_capacity(payload.len());
        let mut zeros = 0;
        for &b in payload {
            if zeros >= 2 && b == 3 {
                zeros = 0;
                continue;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            data.push(b);
        }
        Self { data, bit: 0 }
    }

    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.bit / 8)?;
        let v = (byte >> (7 - self.bit % 8)) & 1;
        self.bit += 1;
        Some(u32::from(v))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0u32, |acc, _| Some((acc << 1) | self.bit()?))
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)) as u32)
    }

    fn se(&mut self) -> Option<i32> {
        let k = self.ue()?;
        Some(if k % 2 == 1 { k.div_ceil(2) as i32 } else { -((k / 2) as i32) })
    }
}

/// The picture size an SPS describes (H.264 §7.3.2.1.1), frame cropping applied.
pub fn sps_dimensions(sps: &[u8]) -> Option<(u32, u32)> {
    let mut r = BitReader::from_nal_payload(sps.get(1..)?);
    let profile_idc = r.bits(8)?;
    r.bits(16)?; // constraint flags, level_idc
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    if matches!(profile_idc, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            r.bit()?; // separate_colour_plane_flag
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256) % 256;
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            let n = r.ue()?;
            for _ in 0..n.min(255) {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()? + 1;
    let height_map_units = r.ue()? + 1;
    let frame_mbs_only = r.bit()?;
    if frame_mbs_only == 0 {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let mut width = width_mbs * 16;
    let mut height = (2 - frame_mbs_only) * height_map_units * 16;
    if r.bit()? == 1 {
        let (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        let (crop_x, crop_y) = match chroma_format_idc {
            0 => (1, 2 - frame_mbs_only),
            1 => (2, 2 * (2 - frame_mbs_only)),
            2 => (2, 2 - frame_mbs_only),
            _ => (1, 2 - frame_mbs_only),
        };
        width = width.checked_sub(crop_x * (left + right))?;
        height = height.checked_sub(crop_y * (top + bottom))?;
    }
    Some((width, height))
}

/// What the encoder is asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncoderSettings {
    pub bitrate_kbps: u32,
    pub fps: f32,
    /// Frames between IDR frames (at least 1).
    pub keyframe_interval_frames: u32,
    /// The input is full-range YCbCr (JPEG) rather than video range (YUYV).
    pub full_range: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("H.264 encoder: {0}")]
pub struct EncodeError(pub String);

/// An encoded picture in Annex-B, as openh264 produced it.
#[derive(Debug)]
pub struct EncodedPicture<'a> {
    pub annex_b: &'a [u8],
    pub keyframe: bool,
}

/// openh264's encoder, one per camera, single-threaded on the calling thread.
pub struct H264Encoder {
    encoder: Encoder,
    buf: Vec<u8>,
    settings: EncoderSettings,
}

impl std::fmt::Debug for H264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Encoder").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl H264Encoder {
    pub fn new(settings: EncoderSettings) -> Result<Self, EncodeError> {
        let vui = if settings.full_range { VuiConfig::bt601().full_range(true) } else { VuiConfig::bt601() };
        let config = EncoderConfig::new()
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            .bitrate(BitRate::from_bps(settings.bitrate_kbps.saturating_mul(1000)))
            .max_frame_rate(FrameRate::from_hz(settings.fps))
            .intra_frame_period(IntraFramePeriod::from_num_frames(settings.keyframe_interval_frames.max(1)))
            // Every captured frame becomes a sample: the recorder's timing and the
            // keyframe cadence stay predictable.
            .skip_frames(false)
            // One thread: two cores are shared by every camera and the filter.
            .num_threads(1)
            .vui(vui);
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| EncodeError(format!("cannot create the encoder: {e}")))?;
        Ok(Self { encoder, buf: Vec::new(), settings })
    }

    pub fn settings(&self) -> EncoderSettings {
        self.settings
    }

    /// Encodes one frame; `None` when the encoder produced no picture for it.
    pub fn encode(&mut self, frame: &I420Frame, pts_ms: u64) -> Result<Option<EncodedPicture<'_>>, EncodeError> {
        let (w, h) = (frame.width() as usize, frame.height() as usize);
        let (y, u, v) = frame.planes();
        // I420Frame keeps even dimensions and tight planes, which is what YUVSlices checks.
        let slices = YUVSlices::new((y, u, v), (w, h), (w, w / 2, w / 2));
        let ts = openh264::Timestamp::from_millis(pts_ms);
        let bitstream = self.encoder.encode_at(&slices, ts).map_err(|e| EncodeError(e.to_string()))?;
        let keyframe = matches!(bitstream.frame_type(), openh264::encoder::FrameType::IDR);
        self.buf.clear();
        bitstream.write_vec(&mut self.buf);
        if self.buf.is_empty() {
            return Ok(None);
        }
        Ok(Some(EncodedPicture { annex_b: &self.buf, keyframe }))
    }

    /// The next frame is encoded as an IDR frame (a new clip can start there).
    pub fn force_keyframe(&mut self) {
        self.encoder.force_intra_frame();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avcc_keeps_slices_and_takes_out_parameter_sets() {
        let data = [0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x67, 0x42, 0, 0x1f, 0, 0, 1, 0x68, 0xce, 0, 0, 1, 0x65, 0x88];
        let mut out = Vec::new();
        let info = access_unit_to_avcc(&data, &mut out);
        assert!(info.keyframe && info.has_picture);
        assert_eq!(out, [0, 0, 0, 2, 0x65, 0x88]);
        let ps = info.parameter_sets.unwrap();
        assert_eq!(ps.sps, [0x67, 0x42, 0, 0x1f]);
        assert_eq!(ps.pps, [0x68, 0xce]);
        assert_eq!(ps.annex_b(), [0, 0, 0, 1, 0x67, 0x42, 0, 0x1f, 0, 0, 0, 1, 0x68, 0xce]);

        let p = [0, 0, 1, 0x41, 0x9a, 0x02];
        let info = access_unit_to_avcc(&p, &mut out);
        assert!(!info.keyframe && info.has_picture && info.parameter_sets.is_none());
        assert_eq!(out, [0, 0, 0, 3, 0x41, 0x9a, 0x02]);
    }

    #[test]
    fn the_encoder_emits_idr_with_parameter_sets_and_the_sps_gives_the_size() {
        let mut frame = I420Frame::default();
        frame.reset(320, 240);
        let mut enc = H264Encoder::new(EncoderSettings {
            bitrate_kbps: 500,
            fps: 10.0,
            keyframe_interval_frames: 5,
            full_range: false,
        })
        .unwrap();
        let mut keyframes = Vec::new();
        let mut out = Vec::new();
        for i in 0..12u64 {
            frame.planes_mut().0.iter_mut().enumerate().for_each(|(j, p)| *p = ((j as u64 + i * 7) % 251) as u8);
            let pic = enc.encode(&frame, i * 100).unwrap().expect("a picture per frame");
            let info = access_unit_to_avcc(pic.annex_b, &mut out);
            assert_eq!(info.keyframe, pic.keyframe);
            if pic.keyframe {
                let ps = info.parameter_sets.expect("SPS/PPS with every IDR");
                assert_eq!(ps.dimensions(), Some((320, 240)));
                keyframes.push(i);
            }
        }
        assert_eq!(keyframes, vec![0, 5, 10]);
    }

    #[test]
    fn sps_dimensions_apply_cropping() {
        // x264's High profile SPS for 1920x1080 (1088 coded rows, 8 cropped), from ffmpeg.
        let sps = [
            0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00, 0x03, 0x00, 0x04,
            0x00, 0x00, 0x03, 0x00, 0x50, 0x3c, 0x60, 0xc6, 0x58,
        ];
        assert_eq!(sps_dimensions(&sps), Some((1920, 1080)));
        assert_eq!(sps_dimensions(&[0x67]), None);
    }
}
