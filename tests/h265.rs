//! H.265 end to end on real footage re-encoded with ffmpeg (libx265) at test
//! time: demux of `hvc1` and `hev1` tracks, decode, JPEG sampling, broken files,
//! the live detect pipeline, and the real YOLOX filter finding a person; and the
//! detect pipeline leaving unreferenced pictures undecoded (H.264 B-frames).
//! Needs ffmpeg with libx265, `../shared/testdata` and, for the filter, ONNX
//! Runtime (`models/fetch-onnxruntime.sh`).

mod common;

use std::path::{Path, PathBuf};

use homesec::filter::ObjectFilter;
use homesec::filter::tracking::TrackContext;
use homesec::filter::yolo::{self, YoloConfig};
use homesec::media::codec::VideoCodec;
use homesec::media::detect::{DetectPipeline, DetectSettings, EncodedFrame, NalFormat};
use homesec::media::motion::MotionConfig;
use homesec::media::{self, MediaError};
use homesec::plugin::PluginContext;

/// `name` from the footage re-encoded to H.265 in `dir`.
fn h265(dir: &Path, name: &str, tag: &str, x265: &str) -> PathBuf {
    let dst = dir.join(format!("{}_{tag}.mp4", name.trim_end_matches(".mp4")));
    common::encode_h265(&common::footage(name), &dst, tag, x265, &[]);
    dst
}

/// Mean of each RGB channel of a clip's first frame.
fn first_frame_means(path: &Path) -> [f64; 3] {
    let mut means = [0.0; 3];
    media::sample_frames(path, 0.0, 1, &mut |f| {
        for (c, m) in means.iter_mut().enumerate() {
            *m = f.data.iter().skip(c).step_by(3).map(|&v| f64::from(v)).sum::<f64>() / f64::from(f.width * f.height);
        }
        false
    })
    .unwrap();
    means
}

#[test]
fn hvc1_and_hev1_clips_demux_and_decode_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let original = common::footage("tree_motion_no_person.mp4");
    let h264_means = first_frame_means(&original);
    for tag in ["hvc1", "hev1"] {
        let path = h265(dir.path(), "tree_motion_no_person.mp4", tag, "");
        assert_eq!(common::ffprobe(&path).codec, "hevc");
        let info = media::probe(&path).unwrap();
        assert_eq!((info.width, info.height, info.frame_count), (320, 240, 449), "{tag}: {info:?}");
        assert!((info.fps - 15.0).abs() < 0.1, "{tag}: {info:?}");

        // Every frame, in presentation order (libx265 uses B-frames), the right size.
        let mut stamps = Vec::new();
        let n = media::for_each_frame(&path, &mut |f| {
            assert_eq!((f.width, f.height), (320, 240));
            let (y, stride) = f.luma();
            assert!(stride >= 320 && y.len() >= stride * 240);
            stamps.push(f.ts_s);
            true
        })
        .unwrap();
        assert_eq!(n, 449, "{tag}");
        assert_eq!(stamps[0], 0.0);
        for w in stamps.windows(2) {
            assert!((w[1] - w[0] - 1.0 / 15.0).abs() < 0.01, "{tag}: step between {} and {}", w[0], w[1]);
        }

        // The same picture as the H.264 original, up to the re-encoding loss.
        let means = first_frame_means(&path);
        for (c, (a, b)) in means.iter().zip(h264_means).enumerate() {
            assert!((a - b).abs() < 4.0, "{tag}: channel {c} mean {a} vs {b} in H.264");
        }
    }
}

#[test]
fn sample_jpegs_spreads_h265_frames_over_the_clip() {
    let dir = tempfile::tempdir().unwrap();
    let path = h265(dir.path(), "scene_empty_people_empty.mp4", "hvc1", "");
    let jpegs = media::sample_jpegs(&path, 4, 640, 80).unwrap();
    assert_eq!(jpegs.len(), 4);
    // Centres of 4 slices of 34.1 s.
    for (i, j) in jpegs.iter().enumerate() {
        let target = 34.1 * (i as f64 + 0.5) / 4.0;
        assert!((j.ts_s - target).abs() <= 0.1, "jpeg {i} at {} for {target}", j.ts_s);
        assert_eq!((j.width, j.height), (640, 480));
        let img = image::load_from_memory_with_format(&j.bytes, image::ImageFormat::Jpeg).expect("a JPEG");
        assert_eq!((img.width(), img.height()), (640, 480));
    }
}

#[test]
fn a_truncated_h265_clip_is_a_container_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = h265(dir.path(), "tree_motion_no_person.mp4", "hvc1", "");
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let err = media::probe(&cut).unwrap_err();
    let MediaError::Container { path: shown, reason } = &err else { panic!("expected a container error: {err:?}") };
    assert!(shown.ends_with("cut.mp4") && reason.contains("truncated"), "{err}");
    assert!(matches!(media::sample_jpegs(&cut, 2, 320, 80), Err(MediaError::Container { .. })));
}

#[test]
fn the_live_detect_pipeline_decodes_h265_and_sees_motion() {
    // Parameter sets in band at every keyframe (as RTSP delivers them), samples
    // with 4-byte lengths (HVCC) straight from the MP4.
    let dir = tempfile::tempdir().unwrap();
    let path = h265(dir.path(), "tree_motion_no_person.mp4", "hev1", "repeat-headers=1:bframes=0");
    let run = detect_run(&path, VideoCodec::H265, 5.0, false);
    // 30 s at 5 detections per second.
    assert!((145..=152).contains(&run.verdicts), "{} verdicts", run.verdicts);
    assert!(run.motion > 0, "the swaying tree is motion in H.265 too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_yolo_filter_finds_the_people_in_an_h265_clip() {
    let dir = tempfile::tempdir().unwrap();
    let path = h265(dir.path(), "scene_empty_people_empty.mp4", "hvc1", "");
    let cfg: YoloConfig = serde_json::from_value(serde_json::json!({
        "model_path": "models/yolox_nano_416.onnx",
        "ort_library": common::ort_library(),
        "max_frames": 80,
        "min_confidence": 0.55,
    }))
    .unwrap();
    let context = PluginContext {
        layout: homesec::plugin::DataLayout::new(dir.path().to_path_buf()),
        config_dir: common::testdata(),
        device_id: "test".into(),
        cameras: Vec::new(),
        client_tag: None,
    };
    let f = yolo::build(cfg, &context).expect("yolo filter");
    let out = f.detect(&path, &[], &TrackContext::standalone("cam", 0)).await.unwrap();
    let r = &out.result;
    assert_eq!(r.detected_classes, vec!["person".to_owned()], "{r:?}");
    let ts = r.detections[0].ts_s;
    assert!((7.0..=28.0).contains(&ts), "first person at {ts} s");
    let snapshot = out.snapshot_jpeg.as_deref().expect("snapshot");
    let img = image::load_from_memory_with_format(snapshot, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((img.width(), img.height()), (768, 576));
    f.shutdown().await;
}

/// What [`detect_run`] saw.
struct DetectRun {
    verdicts: usize,
    /// Verdicts with motion on.
    motion: usize,
    /// Stream time of the first verdict with motion on.
    first_motion_s: Option<f64>,
    skipped: u64,
    frames: u32,
}

/// Runs an MP4's samples through a detect pipeline.
fn detect_run(path: &Path, codec: VideoCodec, detect_fps: f64, keyframes_when_idle: bool) -> DetectRun {
    let file = std::fs::File::open(path).unwrap();
    let len = file.metadata().unwrap().len();
    let mut reader = mp4::Mp4Reader::read_header(std::io::BufReader::new(file), len).unwrap();
    let (track_id, samples, timescale) = {
        let t = reader.tracks().values().next().unwrap();
        (t.track_id(), t.sample_count(), f64::from(t.timescale()))
    };
    let settings =
        DetectSettings { detect_fps, source_fps: None, motion: MotionConfig::default(), keyframes_when_idle };
    let mut pipeline = DetectPipeline::new(&settings);
    let mut run = DetectRun { verdicts: 0, motion: 0, first_motion_s: None, skipped: 0, frames: samples };
    for i in 1..=samples {
        let sample = reader.read_sample(track_id, i).unwrap().unwrap();
        let ts_s = sample.start_time as f64 / timescale;
        let frame = EncodedFrame {
            ts_s,
            keyframe: sample.is_sync,
            codec,
            format: NalFormat::Avcc,
            data: &sample.bytes,
            parameter_sets: None,
        };
        if let Some(v) = pipeline.push_encoded(&frame).unwrap() {
            run.verdicts += 1;
            run.motion += usize::from(v.motion);
            if v.motion && run.first_motion_s.is_none() {
                run.first_motion_s = Some(ts_s);
            }
        }
    }
    assert_eq!(pipeline.decode_errors(), 0, "{}", path.display());
    run.skipped = pipeline.skipped();
    run
}

/// `footage` re-encoded with libx264 at 20 fps, a keyframe every 2 s, `bf`
/// B-frames at most, parameter sets in band.
fn x264(dir: &Path, footage: &str, bf: &str) -> PathBuf {
    let dst = dir.join(format!("{footage}-bf{bf}.mp4"));
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(common::footage(footage))
        .args(["-vf", "fps=20", "-c:v", "libx264", "-preset", "veryfast", "-bf", bf])
        .args(["-x264-params", "b-pyramid=none:repeat-headers=1", "-g", "40", "-an"])
        .arg(&dst)
        .status()
        .expect("ffmpeg (Debian package ffmpeg; .ci/run installs it)");
    assert!(status.success());
    dst
}

#[test]
fn pictures_nothing_refers_to_are_not_decoded_when_motion_does_not_want_them() {
    // 20 fps H.264 with non-reference B-frames (in-band parameter sets) and the
    // same with every picture a reference: motion at 5 fps sees the same.
    let dir = tempfile::tempdir().unwrap();
    let with_b = x264(dir.path(), "tree_motion_no_person.mp4", "2");
    let without = x264(dir.path(), "tree_motion_no_person.mp4", "0");

    let run = detect_run(&with_b, VideoCodec::H264, 5.0, false);
    // 30 s at 5 verdicts per second; x264 makes about a third of the 600
    // pictures B-frames, and motion wants one picture in four.
    assert!((145..=152).contains(&run.verdicts), "{} verdicts", run.verdicts);
    assert!(run.skipped > 100, "only {} pictures skipped", run.skipped);
    assert!(run.motion > 0, "the swaying tree is still motion");
    let all = detect_run(&with_b, VideoCodec::H264, 0.0, false);
    assert_eq!(all.skipped, 0, "every picture is wanted at detect_fps 0");
    assert!(all.verdicts > 590, "{} verdicts at every frame", all.verdicts);

    let run = detect_run(&without, VideoCodec::H264, 5.0, false);
    assert_eq!(run.skipped, 0, "reference pictures are always decoded");
    assert!((145..=152).contains(&run.verdicts), "{} verdicts", run.verdicts);
    assert!(run.motion > 0);
}

#[test]
fn an_idle_stream_is_decoded_at_its_keyframes_and_motion_starts_at_most_a_gop_later() {
    // The scene: empty for about 8 s, people walking, empty again; a keyframe
    // every 2 s.
    let dir = tempfile::tempdir().unwrap();
    let scene = x264(dir.path(), "scene_empty_people_empty.mp4", "0");
    let full = detect_run(&scene, VideoCodec::H264, 5.0, false);
    let idle = detect_run(&scene, VideoCodec::H264, 5.0, true);
    assert_eq!(full.skipped, 0);
    assert!(
        idle.skipped > u64::from(full.frames) / 4,
        "only {} of {} pictures left undecoded while idle",
        idle.skipped,
        full.frames
    );
    let (Some(a), Some(b)) = (full.first_motion_s, idle.first_motion_s) else {
        panic!(
            "motion with every picture decoded at {:?}, with keyframes when idle at {:?}",
            full.first_motion_s, idle.first_motion_s
        )
    };
    assert!(
        b >= a && b - a <= 2.25,
        "motion at {a:.2} s with every picture decoded, at {b:.2} s with keyframes when idle"
    );
    assert!(idle.motion * 10 >= full.motion * 8, "motion verdicts: {} of {}", idle.motion, full.motion);

    // A decoder that holds the keyframe back (B-frames): decoded in full.
    let with_b = x264(dir.path(), "tree_motion_no_person.mp4", "2");
    let (idle, full) =
        (detect_run(&with_b, VideoCodec::H264, 5.0, true), detect_run(&with_b, VideoCodec::H264, 5.0, false));
    assert_eq!((idle.verdicts, idle.skipped), (full.verdicts, full.skipped));
}
