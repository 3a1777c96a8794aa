//! The video sample entry of an MP4 track, read from the raw `moov` bytes:
//! codec (`avc1`/`avc3`, `hvc1`/`hev1`), picture size, NAL length size and the
//! parameter sets of its `avcC` / `hvcC` box (ISO/IEC 14496-15 §5.3.3, §8.3.3).
//!
//! The `mp4` crate parses `avc1` only partly and `hvc1` not at all (it keeps
//! `hev1`'s `hvcC` version byte and drops `hvc1`), so the entry is read here.

use super::codec::VideoCodec;
use super::nal::START_CODE;

/// What the decoder needs from a track's first sample entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VideoEntry {
    pub codec: VideoCodec,
    pub width: u16,
    pub height: u16,
    /// Bytes of each NAL length prefix in the samples (1, 2 or 4).
    pub nal_length_size: usize,
    /// VPS (H.265), SPS and PPS in Annex-B.
    pub parameter_sets: Vec<u8>,
}

/// A box: its type and payload.
type Mp4Box<'a> = ([u8; 4], &'a [u8]);

/// The child boxes in `data`. Every box must fit.
fn boxes(data: &[u8]) -> Result<Vec<Mp4Box<'_>>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let header = data.get(pos..pos + 8).ok_or_else(|| format!("box header cut at byte {pos}"))?;
        let kind = [header[4], header[5], header[6], header[7]];
        let size32 = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let (size, header_len) = match size32 {
            0 => (data.len() - pos, 8),
            1 => {
                let large = data.get(pos + 8..pos + 16).ok_or_else(|| format!("box header cut at byte {pos}"))?;
                let mut b = [0u8; 8];
                b.copy_from_slice(large);
                (usize::try_from(u64::from_be_bytes(b)).map_err(|_| "box too large".to_owned())?, 16)
            }
            n => (n as usize, 8),
        };
        let payload =
            (size >= header_len).then(|| data.get(pos + header_len..pos + size)).flatten().ok_or_else(|| {
                format!("`{}` box of {size} bytes at byte {pos} does not fit", String::from_utf8_lossy(&kind))
            })?;
        out.push((kind, payload));
        pos += size;
    }
    Ok(out)
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Result<Option<&'a [u8]>, String> {
    Ok(boxes(data)?.into_iter().find(|(k, _)| k == kind).map(|(_, p)| p))
}

fn path<'a>(data: &'a [u8], kinds: &[&[u8; 4]]) -> Result<&'a [u8], String> {
    let mut here = data;
    for kind in kinds {
        here = child(here, kind)?
            .ok_or_else(|| format!("no `{}` box in the track", String::from_utf8_lossy(&kind[..])))?;
    }
    Ok(here)
}

/// The `track_id` of a `tkhd` payload (version 0 or 1).
fn tkhd_track_id(tkhd: &[u8]) -> Option<u32> {
    let at = if tkhd.first()? == &1 { 20 } else { 12 };
    let b = tkhd.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The video sample entry of track `track_id` in the `moov` payload: `Ok(None)`
/// when that track is not H.264/H.265, `Err` when its boxes are malformed.
pub(crate) fn video_entry(moov: &[u8], track_id: u32) -> Result<Option<VideoEntry>, String> {
    for (kind, trak) in boxes(moov)? {
        if &kind != b"trak" || child(trak, b"tkhd")?.and_then(tkhd_track_id) != Some(track_id) {
            continue;
        }
        let stsd = path(trak, &[b"mdia", b"minf", b"stbl", b"stsd"])?;
        // Version and flags, entry count, then the entries; the first one counts.
        let entries = stsd.get(8..).ok_or("the `stsd` box is cut")?;
        let Some((kind, entry)) = boxes(entries)?.into_iter().next() else {
            return Err("the `stsd` box has no sample entry".into());
        };
        let codec = match &kind {
            b"avc1" | b"avc3" => VideoCodec::H264,
            b"hvc1" | b"hev1" => VideoCodec::H265,
            _ => return Ok(None),
        };
        let name = String::from_utf8_lossy(&kind).into_owned();
        // VisualSampleEntry: 24 bytes, width, height, 50 more bytes, then child boxes.
        let fixed = entry.get(..78).ok_or_else(|| format!("the `{name}` sample entry is cut"))?;
        let width = u16::from_be_bytes([fixed[24], fixed[25]]);
        let height = u16::from_be_bytes([fixed[26], fixed[27]]);
        let children = &entry[78..];
        let (nal_length_size, parameter_sets) = match codec {
            VideoCodec::H264 => {
                let avcc = child(children, b"avcC")?.ok_or_else(|| format!("the `{name}` entry has no `avcC` box"))?;
                parse_avcc(avcc)?
            }
            VideoCodec::H265 => {
                let hvcc = child(children, b"hvcC")?.ok_or_else(|| format!("the `{name}` entry has no `hvcC` box"))?;
                parse_hvcc(hvcc)?
            }
        };
        return Ok(Some(VideoEntry { codec, width, height, nal_length_size, parameter_sets }));
    }
    Err(format!("no `trak` box for track {track_id}"))
}

fn length_size(minus_one: u8, what: &str) -> Result<usize, String> {
    match usize::from(minus_one & 0x3) + 1 {
        3 => Err(format!("invalid {what} NAL length size 3")),
        n => Ok(n),
    }
}

/// Reads `count` NAL units, each after a 16-bit length, from `data` at `*pos`
/// into `out` as Annex-B.
fn read_nals(data: &[u8], pos: &mut usize, count: usize, out: &mut Vec<u8>, what: &str) -> Result<(), String> {
    for _ in 0..count {
        let len = data.get(*pos..*pos + 2).ok_or_else(|| format!("the {what} box is cut"))?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let nal =
            data.get(*pos + 2..*pos + 2 + len).ok_or_else(|| format!("a parameter set overruns the {what} box"))?;
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal);
        *pos += 2 + len;
    }
    Ok(())
}

/// `avcC`: version, profile, compatibility, level, length size, then SPS and PPS lists.
fn parse_avcc(avcc: &[u8]) -> Result<(usize, Vec<u8>), String> {
    let head = avcc.get(..6).ok_or("the avcC box is cut")?;
    let nal_length_size = length_size(head[4], "avcC")?;
    let mut sets = Vec::new();
    let mut pos = 6;
    let sps_count = usize::from(head[5] & 0x1f);
    read_nals(avcc, &mut pos, sps_count, &mut sets, "avcC")?;
    let pps_count = usize::from(*avcc.get(pos).ok_or("the avcC box is cut")?);
    pos += 1;
    read_nals(avcc, &mut pos, pps_count, &mut sets, "avcC")?;
    if sps_count == 0 || pps_count == 0 {
        return Err("the avcC box has no SPS/PPS".into());
    }
    Ok((nal_length_size, sets))
}

/// `hvcC`: 21 bytes of profile and format, the length size, then arrays of
/// NAL units by type (VPS, SPS, PPS, SEI). `hev1` tracks may carry their
/// parameter sets in band only, so an empty list is not an error here.
fn parse_hvcc(hvcc: &[u8]) -> Result<(usize, Vec<u8>), String> {
    let head = hvcc.get(..23).ok_or("the hvcC box is cut")?;
    let nal_length_size = length_size(head[21], "hvcC")?;
    let arrays = usize::from(head[22]);
    let mut sets = Vec::new();
    let mut pos = 23;
    for _ in 0..arrays {
        let counts = hvcc.get(pos + 1..pos + 3).ok_or("the hvcC box is cut")?;
        let count = usize::from(u16::from_be_bytes([counts[0], counts[1]]));
        pos += 3;
        read_nals(hvcc, &mut pos, count, &mut sets, "hvcC")?;
    }
    Ok((nal_length_size, sets))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp4_box(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut b = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(payload);
        b
    }

    const VPS: [u8; 3] = [0x40, 0x01, 0x0c];
    const SPS: [u8; 3] = [0x42, 0x01, 0x01];
    const PPS: [u8; 3] = [0x44, 0x01, 0xc1];

    fn hvcc() -> Vec<u8> {
        let mut b = vec![1u8];
        b.extend_from_slice(&[0; 20]);
        b.push(0xf0 | 3); // lengthSizeMinusOne = 3
        b.push(3);
        for (t, nal) in [(32u8, &VPS), (33, &SPS), (34, &PPS)] {
            b.extend_from_slice(&[0x80 | t, 0, 1, 0, 3]);
            b.extend_from_slice(nal);
        }
        b
    }

    fn moov(kind: &[u8; 4], config: Vec<u8>, track_id: u32) -> Vec<u8> {
        let mut entry = vec![0u8; 78];
        entry[24..26].copy_from_slice(&1280u16.to_be_bytes());
        entry[26..28].copy_from_slice(&720u16.to_be_bytes());
        entry.extend(config);
        let mut stsd = vec![0, 0, 0, 0, 0, 0, 0, 1];
        stsd.extend(mp4_box(kind, &entry));
        let stbl = mp4_box(b"stbl", &mp4_box(b"stsd", &stsd));
        let mdia = mp4_box(b"mdia", &mp4_box(b"minf", &stbl));
        let mut tkhd = vec![0u8; 84];
        tkhd[12..16].copy_from_slice(&track_id.to_be_bytes());
        let mut trak = mp4_box(b"tkhd", &tkhd);
        trak.extend(mdia);
        mp4_box(b"trak", &trak)
    }

    #[test]
    fn hvc1_and_hev1_entries_give_their_parameter_sets() {
        for kind in [b"hvc1", b"hev1"] {
            let moov = moov(kind, mp4_box(b"hvcC", &hvcc()), 7);
            let entry = video_entry(&moov, 7).unwrap().unwrap();
            assert_eq!(entry.codec, VideoCodec::H265);
            assert_eq!((entry.width, entry.height, entry.nal_length_size), (1280, 720, 4));
            let expected: Vec<u8> =
                [VPS, SPS, PPS].iter().flat_map(|n| START_CODE.iter().chain(n.iter()).copied()).collect();
            assert_eq!(entry.parameter_sets, expected);
            assert!(video_entry(&moov, 8).unwrap_err().contains("no `trak` box for track 8"));
        }
    }

    #[test]
    fn avc1_entries_and_other_codecs() {
        let avcc = [1, 0x42, 0, 0x1f, 0xff, 0xe1, 0, 2, 0x67, 0x42, 1, 0, 1, 0x68];
        let entry = video_entry(&moov(b"avc1", mp4_box(b"avcC", &avcc), 1), 1).unwrap().unwrap();
        assert_eq!(entry.codec, VideoCodec::H264);
        assert_eq!(entry.parameter_sets, [0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x68]);
        assert_eq!(video_entry(&moov(b"mp4v", Vec::new(), 1), 1), Ok(None));
        let no_pps = [1, 0x42, 0, 0x1f, 0xff, 0xe1, 0, 2, 0x67, 0x42, 0];
        let err = video_entry(&moov(b"avc1", mp4_box(b"avcC", &no_pps), 1), 1).unwrap_err();
        assert_eq!(err, "the avcC box has no SPS/PPS");
    }

    #[test]
    fn cut_boxes_are_errors() {
        let mut cut = hvcc();
        cut.truncate(30);
        let err = video_entry(&moov(b"hvc1", mp4_box(b"hvcC", &cut), 1), 1).unwrap_err();
        assert_eq!(err, "a parameter set overruns the hvcC box");
        let err = video_entry(&moov(b"hvc1", Vec::new(), 1), 1).unwrap_err();
        assert_eq!(err, "the `hvc1` entry has no `hvcC` box");
        let mut bad = moov(b"hvc1", mp4_box(b"hvcC", &hvcc()), 1);
        bad.truncate(bad.len() - 4);
        assert!(video_entry(&bad, 1).unwrap_err().contains("does not fit"));
    }
}
