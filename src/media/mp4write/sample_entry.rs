//! The MP4 sample entry: a `VisualSampleEntry` box with the decoder
//! configuration (`avcC` / `hvcC`), taken from retina or built from an SPS and PPS.

use super::Mp4WriteError;
use super::moov::write_box;
use crate::media::nal;

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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80, 0xbf, 0xe5, 0x84];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    /// A 640x360 `avc1` entry.
    pub(in crate::media::mp4write) fn entry() -> SampleEntry {
        SampleEntry::avc1_from_parameter_sets(SPS, PPS, 640, 360).unwrap()
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
}
