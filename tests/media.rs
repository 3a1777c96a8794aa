//! Media on real footage: probe, frame sampling, JPEG sampling, broken files.

mod common;

use std::io::Write;
use std::path::Path;

use homesec::media::{self, MediaError};

fn decode_jpeg(bytes: &[u8]) -> image::RgbImage {
    image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg).expect("a decodable JPEG").to_rgb8()
}

fn assert_jpeg_markers(bytes: &[u8]) {
    assert!(bytes.len() > 1000, "JPEG of {} bytes", bytes.len());
    assert_eq!(&bytes[..2], &[0xFF, 0xD8], "SOI");
    assert_eq!(&bytes[bytes.len() - 2..], &[0xFF, 0xD9], "EOI");
}

#[test]
fn probe_reads_the_headers_of_real_footage() {
    let info = media::probe(&common::footage("vtest_h264.mp4")).unwrap();
    assert_eq!((info.width, info.height), (768, 576));
    assert!((info.duration_s - 79.5).abs() < 0.15, "duration {}", info.duration_s);
    assert_eq!(info.frame_count, 795);
    assert!((info.fps - 10.0).abs() < 0.05, "fps {}", info.fps);

    let tree = media::probe(&common::footage("tree_motion_no_person.mp4")).unwrap();
    assert_eq!((tree.width, tree.height), (320, 240));
    assert!((tree.duration_s - 29.93).abs() < 0.2, "duration {}", tree.duration_s);
    assert_eq!(tree.frame_count, 449);
    assert!((tree.fps - 15.0).abs() < 0.1, "fps {}", tree.fps);
}

#[test]
fn sample_frames_takes_one_frame_per_interval() {
    let path = common::footage("scene_empty_people_empty.mp4");
    let info = media::probe(&path).unwrap();
    let mut stamps = Vec::new();
    let n = media::sample_frames(&path, 2.0, 0, &mut |f| {
        assert_eq!((f.width, f.height), (768, 576));
        assert_eq!(f.data.len(), 768 * 576 * 3);
        stamps.push(f.ts_s);
        true
    })
    .unwrap();
    // 34.1 s at 10 fps: frames at 0.0 … 34.0, sampled every 0.5 s.
    let expected = (info.duration_s * 2.0).ceil() as u32;
    assert_eq!(n, expected, "{} s clip at 2 fps", info.duration_s);
    assert_eq!(stamps.len() as u32, n);
    for (i, ts) in stamps.iter().enumerate() {
        assert!((ts - i as f64 * 0.5).abs() < 1e-6, "frame {i} at {ts}");
    }
}

#[test]
fn sample_frames_stops_at_max_frames_or_when_asked() {
    let path = common::footage("tree_motion_no_person.mp4");
    let mut seen = 0;
    let n = media::sample_frames(&path, 1.0, 5, &mut |_| {
        seen += 1;
        true
    })
    .unwrap();
    assert_eq!((n, seen), (5, 5));

    let mut seen = 0;
    let n = media::sample_frames(&path, 0.0, 0, &mut |_| {
        seen += 1;
        seen < 3
    })
    .unwrap();
    assert_eq!((n, seen), (3, 3));
}

#[test]
fn every_frame_is_decoded_in_presentation_order() {
    // The footage has B-frames: timestamps must still rise by one frame each.
    let path = common::footage("tree_motion_no_person.mp4");
    let mut stamps = Vec::new();
    let mut luma_ok = true;
    let n = media::for_each_frame(&path, &mut |f| {
        let (y, stride) = f.luma();
        luma_ok &= stride >= f.width as usize && y.len() >= stride * f.height as usize;
        stamps.push(f.ts_s);
        true
    })
    .unwrap();
    assert_eq!(n, 449);
    assert!(luma_ok);
    assert_eq!(stamps[0], 0.0);
    for w in stamps.windows(2) {
        let step = w[1] - w[0];
        assert!((step - 1.0 / 15.0).abs() < 0.01, "step {step} between {} and {}", w[0], w[1]);
    }
}

#[test]
fn sample_jpegs_spreads_frames_over_the_clip() {
    let path = common::footage("vtest_h264.mp4");
    let jpegs = media::sample_jpegs(&path, 8, 640, 80).unwrap();
    assert_eq!(jpegs.len(), 8);
    // Centres of 8 slices of 79.5 s: 4.97, 14.9, …, 74.5.
    for (i, j) in jpegs.iter().enumerate() {
        let target = 79.5 * (i as f64 + 0.5) / 8.0;
        assert!((j.ts_s - target).abs() <= 0.1, "jpeg {i} at {} for {target}", j.ts_s);
        assert_eq!((j.width, j.height), (640, 480));
        assert_jpeg_markers(&j.bytes);
        let img = decode_jpeg(&j.bytes);
        assert_eq!(img.dimensions(), (640, 480));
    }

    assert!(media::sample_jpegs(&path, 0, 640, 80).unwrap().is_empty());

    // More frames asked than the clip has: every frame, once.
    let tree = media::sample_jpegs(&common::footage("tree_motion_no_person.mp4"), 1000, 0, 70).unwrap();
    assert_eq!(tree.len(), 449);
    assert_eq!((tree[0].width, tree[0].height), (320, 240));
}

#[test]
fn encode_jpeg_scales_a_decoded_frame() {
    let path = common::footage("vtest_h264.mp4");
    let mut frame = None;
    media::sample_frames(&path, 1.0, 1, &mut |f| {
        frame = Some(f);
        false
    })
    .unwrap();
    let frame = frame.unwrap();
    let full = media::encode_jpeg(&frame, 1280, 85).unwrap();
    assert_eq!((full.width, full.height), (768, 576));
    assert_jpeg_markers(&full.bytes);
    assert_eq!(decode_jpeg(&full.bytes).dimensions(), (768, 576));
    let small = media::encode_jpeg(&frame, 320, 85).unwrap();
    assert_eq!((small.width, small.height), (320, 240));
    assert_eq!(decode_jpeg(&small.bytes).dimensions(), (320, 240));
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(bytes).unwrap();
    path
}

fn container_reason(err: MediaError, path: &Path) -> String {
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "error names the file: {text}");
    match err {
        MediaError::Container { reason, .. } => reason,
        other => panic!("expected a container error, got {other:?}"),
    }
}

#[test]
fn a_file_cut_in_half_is_a_container_error() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(common::footage("vtest_h264.mp4")).unwrap();
    let half = write_file(dir.path(), "half.mp4", &full[..full.len() / 2]);
    let reason = container_reason(media::probe(&half).unwrap_err(), &half);
    assert!(reason.contains("truncated"), "{reason}");
    let err = media::sample_frames(&half, 2.0, 10, &mut |_| true).unwrap_err();
    assert!(matches!(err, MediaError::Container { .. }), "{err:?}");
    assert!(matches!(media::sample_jpegs(&half, 4, 640, 80), Err(MediaError::Container { .. })));

    // Cut just before the end (the moov box loses its tail).
    let cut = write_file(dir.path(), "cut.mp4", &full[..full.len() - 100]);
    let reason = container_reason(media::probe(&cut).unwrap_err(), &cut);
    assert!(reason.contains("truncated"), "{reason}");
}

#[test]
fn a_text_file_named_mp4_is_a_container_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = write_file(dir.path(), "notes.mp4", b"This is not a video, just some notes about the garden.\n");
    let reason = container_reason(media::probe(&text).unwrap_err(), &text);
    assert!(reason.contains("not an MP4"), "{reason}");
    assert!(matches!(media::sample_frames(&text, 1.0, 1, &mut |_| true), Err(MediaError::Container { .. })));

    let empty = write_file(dir.path(), "empty.mp4", b"");
    let reason = container_reason(media::probe(&empty).unwrap_err(), &empty);
    assert!(reason.contains("empty"), "{reason}");

    let missing = dir.path().join("missing.mp4");
    assert!(matches!(media::probe(&missing), Err(MediaError::Open { .. })));
}

#[test]
fn an_mp4_without_video_is_no_video() {
    // An audio-only MP4 written with the mp4 crate.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audio.mp4");
    {
        let file = std::fs::File::create(&path).unwrap();
        let config = mp4::Mp4Config {
            major_brand: str::parse("isom").unwrap(),
            minor_version: 512,
            compatible_brands: vec![str::parse("isom").unwrap(), str::parse("mp41").unwrap()],
            timescale: 1000,
        };
        let mut writer = mp4::Mp4Writer::write_start(std::io::BufWriter::new(file), &config).unwrap();
        writer
            .add_track(&mp4::TrackConfig {
                track_type: mp4::TrackType::Audio,
                timescale: 48000,
                language: "und".into(),
                media_conf: mp4::MediaConfig::AacConfig(mp4::AacConfig::default()),
            })
            .unwrap();
        for i in 0..10u64 {
            let sample = mp4::Mp4Sample {
                start_time: i * 1024,
                duration: 1024,
                rendering_offset: 0,
                is_sync: true,
                bytes: mp4::Bytes::from(vec![0x21u8; 32]),
            };
            writer.write_sample(1, &sample).unwrap();
        }
        writer.write_end().unwrap();
    }
    let err = media::probe(&path).unwrap_err();
    assert!(matches!(err, MediaError::NoVideo { .. }), "{err:?}");
    assert!(err.to_string().contains("audio.mp4"));
}

/// Overwrites `len` bytes at `at` with pseudo-random garbage.
fn scribble(bytes: &mut [u8], at: usize, len: usize) {
    let mut state = 0x1234_5678u32;
    for b in &mut bytes[at..at + len] {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        *b = state as u8;
    }
}

#[test]
fn a_damaged_stretch_mid_clip_is_skipped_and_the_rest_decodes() {
    // Garbage over part of the media data; the boxes stay intact, so probe passes.
    // The decoder skips what it cannot decode and recovers at the next keyframe:
    // one glitch must not make a whole recording unusable.
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(common::footage("tree_motion_no_person.mp4")).unwrap();
    // Inside the first GOP (keyframes at frames 0 and 250 of this clip).
    let quarter = bytes.len() / 4;
    scribble(&mut bytes, quarter, 20_000);
    let path = write_file(dir.path(), "corrupt.mp4", &bytes);
    media::probe(&path).unwrap();
    let mut last_ts = 0.0;
    let mut frames = 0;
    media::sample_frames(&path, 0.0, 0, &mut |f| {
        frames += 1;
        last_ts = f.ts_s;
        true
    })
    .unwrap();
    assert!(frames > 250, "most of the 449 frames decode ({frames})");
    assert!(last_ts > 25.0, "frames after the damage are delivered (last at {last_ts} s)");
}

#[test]
fn a_clip_with_no_decodable_frame_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(common::footage("tree_motion_no_person.mp4")).unwrap();
    // mdat spans bytes 48..530012 of this file: scribble over all the media data.
    scribble(&mut bytes, 48, 529_900);
    let path = write_file(dir.path(), "garbage.mp4", &bytes);
    media::probe(&path).unwrap();
    let err = media::sample_frames(&path, 0.0, 0, &mut |_| true).unwrap_err();
    assert!(matches!(err, MediaError::Decode { .. } | MediaError::Container { .. }), "{err:?}");
    assert!(err.to_string().contains("garbage.mp4"), "{err}");
}
