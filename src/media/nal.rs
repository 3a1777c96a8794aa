//! NAL unit framing for H.264 and H.265.
//!
//! Two framings carry the same NAL units:
//! - Annex B: each unit preceded by a `00 00 01` or `00 00 00 01` start code
//!   (what cameras, V4L2 devices and openh264 emit, and what decoders take);
//! - length-prefixed (AVCC / HVCC): each unit preceded by its big-endian length,
//!   4 bytes in the samples this crate writes (what MP4 stores and retina
//!   delivers).
//!
//! The framing is the same for both codecs; only the NAL header differs (the
//! type is the low five bits of the first byte in H.264, bits 1-6 in H.265).

/// The 4-byte Annex-B start code written before every NAL unit.
pub const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// H.264 NAL unit types (ITU-T H.264 Table 7-1).
pub const H264_NAL_IDR: u8 = 5;
pub const H264_NAL_SPS: u8 = 7;
pub const H264_NAL_PPS: u8 = 8;
pub const H264_NAL_AUD: u8 = 9;

/// The H.264 NAL unit type (low five bits of the first byte); 0 for an empty unit.
pub fn h264_nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// The H.265 NAL unit type (bits 1-6 of the first byte); 0 for an empty unit.
pub fn h265_nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| (b >> 1) & 0x3f)
}

/// Whether an H.264 NAL unit type is a coded slice (types 1-5: a picture).
pub fn is_h264_slice(nal_type: u8) -> bool {
    (1..=H264_NAL_IDR).contains(&nal_type)
}

/// Whether a picture's NAL units (`nals`: every unit of one access unit) are
/// all slices no other picture refers to: H.264 slices with `nal_ref_idc` 0,
/// H.265 sub-layer non-reference slices (TRAIL_N, TSA_N, STSA_N, RADL_N, RASL_N
/// and the reserved even types below 16). Such a picture can be left undecoded
/// without breaking the ones after it. `false` when there is no slice.
pub fn is_non_reference<'a>(h265: bool, nals: impl IntoIterator<Item = &'a [u8]>) -> bool {
    let mut slices = 0;
    for nal in nals {
        let Some(&first) = nal.first() else { continue };
        let (slice, reference) = if h265 {
            let t = h265_nal_type(nal);
            (t < 32, t > 14 || t % 2 == 1)
        } else {
            (is_h264_slice(h264_nal_type(nal)), first & 0x60 != 0)
        };
        if slice {
            if reference {
                return false;
            }
            slices += 1;
        }
    }
    slices > 0
}

/// The NAL units of 4-byte length-prefixed data; stops at a length that
/// overruns the data.
pub fn avcc_nals(avcc: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = avcc;
    std::iter::from_fn(move || {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        let nal = tail.get(..len)?;
        rest = &tail[len..];
        Some(nal)
    })
}

/// The next `00 00 01` at or after `from`: (index of its first byte, index after it).
/// A 4-byte start code is found as its last three bytes; the zero before it is
/// trailing padding of the previous unit.
pub fn find_start_code(data: &[u8], from: usize) -> Option<(usize, usize)> {
    let tail = data.get(from..)?;
    tail.windows(3).position(|w| w == [0, 0, 1]).map(|i| (from + i, from + i + 3))
}

/// The NAL units of an Annex-B byte stream (3- or 4-byte start codes), without
/// their start codes and trailing zero bytes. Bytes before the first start code
/// are ignored, and so are empty units.
pub fn annex_b_nals(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = find_start_code(data, 0).map(|(_, next)| next);
    std::iter::from_fn(move || {
        let start = pos?;
        let (end, next) = match find_start_code(data, start) {
            Some((at, next)) => (at, Some(next)),
            None => (data.len(), None),
        };
        pos = next;
        let mut nal = data.get(start..end)?;
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        Some(nal)
    })
    .filter(|nal| !nal.is_empty())
}

/// Appends `nal` to `out` with its 4-byte big-endian length.
pub fn push_length_prefixed(out: &mut Vec<u8>, nal: &[u8]) {
    // NAL units are far below 4 GiB (an MP4 sample's size is a u32 anyway).
    out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
    out.extend_from_slice(nal);
}

/// Appends every NAL unit of an Annex-B byte stream to `out` as 4-byte
/// length-prefixed units, e.g. encoder output to MP4 samples.
pub fn annex_b_to_avcc(annex_b: &[u8], out: &mut Vec<u8>) {
    out.reserve(annex_b.len() + 16);
    for nal in annex_b_nals(annex_b) {
        push_length_prefixed(out, nal);
    }
}

/// Why length-prefixed data could not be split into NAL units (a damaged sample).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("NAL length prefixes of {0} bytes are not supported (1, 2 or 4)")]
    LengthSize(usize),
    #[error("NAL length prefix cut at byte {at}")]
    PrefixCut { at: usize },
    #[error("NAL unit of {len} bytes at byte {at} overruns the sample ({sample} bytes)")]
    Overrun { len: usize, at: usize, sample: usize },
}

/// Appends length-prefixed NAL units (`length_size` bytes per prefix: 1, 2 or 4,
/// as the `avcC` / `hvcC` box says) to `out` as Annex-B units with 4-byte start
/// codes. On error, the units before the damaged one have been appended.
pub fn length_prefixed_to_annex_b(data: &[u8], length_size: usize, out: &mut Vec<u8>) -> Result<(), FramingError> {
    if !matches!(length_size, 1 | 2 | 4) {
        return Err(FramingError::LengthSize(length_size));
    }
    out.reserve(data.len() + 16);
    let mut pos = 0usize;
    while pos < data.len() {
        let Some(prefix) = data.get(pos..pos + length_size) else {
            return Err(FramingError::PrefixCut { at: pos });
        };
        let len = prefix.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        pos += length_size;
        let Some(nal) = data.get(pos..pos + len) else {
            return Err(FramingError::Overrun { len, at: pos, sample: data.len() });
        };
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal);
        pos += len;
    }
    Ok(())
}

/// [`length_prefixed_to_annex_b`] for 4-byte prefixes (the samples this crate
/// writes and retina delivers), for a decoder. Returns false when the lengths do
/// not add up (a damaged sample).
pub fn avcc_to_annex_b(avcc: &[u8], out: &mut Vec<u8>) -> bool {
    length_prefixed_to_annex_b(avcc, 4, out).is_ok()
}

/// What one H.264 access unit held, from [`h264_access_unit_to_avcc`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct H264AccessUnit<'a> {
    /// Contains an IDR slice: decoding can start here.
    pub keyframe: bool,
    /// Contains at least one slice (a picture); SEI- or SPS-only buffers do not.
    pub has_picture: bool,
    /// The first SPS in the unit (header byte included, no start code).
    pub sps: Option<&'a [u8]>,
    /// The first PPS in the unit (header byte included, no start code).
    pub pps: Option<&'a [u8]>,
}

/// Rewrites one Annex-B H.264 access unit as 4-byte length-prefixed NAL units
/// into `out` (cleared first), leaving out SPS, PPS and access unit delimiters
/// (those belong in the MP4 sample entry), and reports what it held.
pub fn h264_access_unit_to_avcc<'a>(annex_b: &'a [u8], out: &mut Vec<u8>) -> H264AccessUnit<'a> {
    out.clear();
    let mut unit = H264AccessUnit::default();
    for nal in annex_b_nals(annex_b) {
        match h264_nal_type(nal) {
            H264_NAL_SPS => {
                unit.sps.get_or_insert(nal);
            }
            H264_NAL_PPS => {
                unit.pps.get_or_insert(nal);
            }
            H264_NAL_AUD => {}
            t => {
                unit.has_picture |= is_h264_slice(t);
                unit.keyframe |= t == H264_NAL_IDR;
                push_length_prefixed(out, nal);
            }
        }
    }
    unit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_reference_pictures_are_told_by_their_slices() {
        // H.264: a P slice with nal_ref_idc 0 (0x01), one with 2 (0x41), an SEI (0x06).
        assert!(is_non_reference(false, [&[0x06u8, 1][..], &[0x01, 0x9a][..]]));
        assert!(!is_non_reference(false, [&[0x01u8, 0x9a][..], &[0x41, 0x9a][..]]));
        assert!(!is_non_reference(false, [&[0x06u8, 1][..]]), "no slice: not a skippable picture");
        assert!(!is_non_reference(false, [&[0x65u8, 0x88][..]]), "an IDR is referenced");
        // H.265: TRAIL_N (0) and RASL_N (8) are not referenced; TRAIL_R (1) and IDR (19) are.
        assert!(is_non_reference(true, [&[0x00u8, 0x01][..], &[0x10, 0x01][..]]));
        assert!(!is_non_reference(true, [&[0x02u8, 0x01][..]]));
        assert!(!is_non_reference(true, [&[0x26u8, 0x01][..]]));
        // A prefix SEI (39) next to a TRAIL_N slice does not count.
        assert!(is_non_reference(true, [&[0x4eu8, 0x01][..], &[0x00, 0x01][..]]));
    }

    #[test]
    fn avcc_units_are_split_and_an_overrun_stops() {
        let data = [0, 0, 0, 2, 0x41, 0x9a, 0, 0, 0, 1, 0x01, 0, 0, 0, 9, 0x01];
        let nals: Vec<&[u8]> = avcc_nals(&data).collect();
        assert_eq!(nals, [&[0x41u8, 0x9a][..], &[0x01][..]]);
    }

    fn avcc_of(annex_b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        annex_b_to_avcc(annex_b, &mut out);
        out
    }

    #[test]
    fn annex_b_splits_on_three_and_four_byte_start_codes() {
        let data = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 0, 1, 0x65, 4, 5, 0];
        let nals: Vec<&[u8]> = annex_b_nals(&data).collect();
        assert_eq!(nals, vec![&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 4, 5]]);
        assert_eq!(annex_b_nals(&[1, 2, 3]).count(), 0);
        assert_eq!(annex_b_nals(&[]).count(), 0);
        // Bytes before the first start code and empty units are skipped.
        let data = [9, 9, 0, 0, 1, 0, 0, 1, 0x41, 7];
        let nals: Vec<&[u8]> = annex_b_nals(&data).collect();
        assert_eq!(nals, vec![&[0x41, 7][..]]);
        assert_eq!(find_start_code(&data, 0), Some((2, 5)));
        assert_eq!(find_start_code(&data, 5), Some((5, 8)));
        assert_eq!(find_start_code(&data, 8), None);
        assert_eq!(find_start_code(&data, 99), None);
    }

    #[test]
    fn nal_framing_round_trips() {
        let annexb = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5, 6];
        let avcc = avcc_of(&annexb);
        assert_eq!(avcc, [0, 0, 0, 3, 0x67, 1, 2, 0, 0, 0, 2, 0x68, 3, 0, 0, 0, 4, 0x65, 4, 5, 6]);
        let mut back = Vec::new();
        assert!(avcc_to_annex_b(&avcc, &mut back));
        assert_eq!(annex_b_nals(&back).count(), 3);
        assert_eq!(avcc_of(&back), avcc);
        assert!(!avcc_to_annex_b(&[0, 0, 0, 9, 1], &mut back));
    }

    #[test]
    fn avcc_samples_become_annex_b() {
        let data = [0, 0, 0, 2, 0x65, 0xAA, 0, 0, 0, 1, 0x41];
        let mut out = Vec::new();
        length_prefixed_to_annex_b(&data, 4, &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 1, 0x65, 0xAA, 0, 0, 0, 1, 0x41]);

        let data = [0, 2, 0x65, 0xAA];
        out.clear();
        length_prefixed_to_annex_b(&data, 2, &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 1, 0x65, 0xAA]);

        // Appends to what `out` holds (e.g. parameter sets first).
        length_prefixed_to_annex_b(&[1, 0x41], 1, &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 1, 0x65, 0xAA, 0, 0, 0, 1, 0x41]);
    }

    #[test]
    fn an_overrunning_nal_is_an_error() {
        let mut out = Vec::new();
        let err = length_prefixed_to_annex_b(&[0, 0, 0, 9, 1, 2], 4, &mut out).unwrap_err();
        assert_eq!(err.to_string(), "NAL unit of 9 bytes at byte 4 overruns the sample (6 bytes)");
        let err = length_prefixed_to_annex_b(&[0, 0], 4, &mut out).unwrap_err();
        assert_eq!(err.to_string(), "NAL length prefix cut at byte 0");
        assert_eq!(length_prefixed_to_annex_b(&[0, 1], 3, &mut out), Err(FramingError::LengthSize(3)));
        assert_eq!(length_prefixed_to_annex_b(&[0, 1], 0, &mut out), Err(FramingError::LengthSize(0)));
    }

    #[test]
    fn access_units_keep_slices_and_take_out_parameter_sets() {
        let data = [0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x67, 0x42, 0, 0x1f, 0, 0, 1, 0x68, 0xce, 0, 0, 1, 0x65, 0x88];
        let mut out = Vec::new();
        let unit = h264_access_unit_to_avcc(&data, &mut out);
        assert!(unit.keyframe && unit.has_picture);
        assert_eq!(out, [0, 0, 0, 2, 0x65, 0x88]);
        assert_eq!(unit.sps, Some(&[0x67, 0x42, 0, 0x1f][..]));
        assert_eq!(unit.pps, Some(&[0x68, 0xce][..]));

        let p = [0, 0, 1, 0x41, 0x9a, 0x02];
        let unit = h264_access_unit_to_avcc(&p, &mut out);
        assert!(!unit.keyframe && unit.has_picture && unit.sps.is_none() && unit.pps.is_none());
        assert_eq!(out, [0, 0, 0, 3, 0x41, 0x9a, 0x02]);

        // SEI only: kept, but no picture.
        let sei = [0, 0, 1, 0x06, 0x05, 0x80];
        let unit = h264_access_unit_to_avcc(&sei, &mut out);
        assert!(!unit.keyframe && !unit.has_picture);
        assert_eq!(out, [0, 0, 0, 3, 0x06, 0x05, 0x80]);
    }

    #[test]
    fn nal_types_of_both_codecs() {
        assert_eq!(h264_nal_type(&[0x65, 0x88]), H264_NAL_IDR);
        assert_eq!(h264_nal_type(&[0x67]), H264_NAL_SPS);
        assert_eq!(h264_nal_type(&[0x68]), H264_NAL_PPS);
        assert_eq!(h264_nal_type(&[0x09]), H264_NAL_AUD);
        assert_eq!(h264_nal_type(&[]), 0);
        assert!(is_h264_slice(1) && is_h264_slice(5) && !is_h264_slice(6) && !is_h264_slice(0));
        // H.265: VPS 32, SPS 33, PPS 34, IDR_W_RADL 19 (two-byte headers 0x40 01, 0x42 01, …).
        assert_eq!(h265_nal_type(&[0x40, 0x01]), 32);
        assert_eq!(h265_nal_type(&[0x42, 0x01]), 33);
        assert_eq!(h265_nal_type(&[0x44, 0x01]), 34);
        assert_eq!(h265_nal_type(&[0x26, 0x01]), 19);
        assert_eq!(h265_nal_type(&[]), 0);
    }
}
