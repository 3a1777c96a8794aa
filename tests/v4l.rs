//! USB (V4L2) source without a device: buffers recorded from real footage go
//! through the frame processor and the recorder into clips that ffprobe reads.
//!
//! The footage (`scene_empty_people_empty.mp4`, 768x576 at 10 fps: ~8 s empty,
//! ~20 s people, ~8 s empty) is decoded and turned into what a camera sends:
//! YUYV buffers, MJPEG buffers (jpeg-encoder), and an H.264 elementary stream
//! (ffmpeg, no B-frames like UVC cameras) for passthrough.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use homesec::domain::Clip;
use homesec::media::for_each_frame;
use homesec::plugin::PluginContext;
use homesec::sources::ClipSource;
use homesec::sources::recorder::{ClipOutput, RecordedClip, Recorder, RecorderError, RecorderEvent, RecordingConfig};
use homesec::sources::v4l::{self, CapturedFrame, FrameProcessor, PixelFormat, RecorderFeed, V4lConfig};

const FPS: f64 = 10.0;
const WALL0: i64 = 1_750_000_000_000;

/// Collects what the recorder hands over.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<Clip>>>);

impl ClipOutput for Collect {
    fn is_taken(&mut self, id: &str) -> Result<bool, RecorderError> {
        Ok(self.0.lock().unwrap().iter().any(|c| c.clip_id.as_str() == id))
    }
    fn submit(&mut self, clip: Clip, _live: Option<homesec::filter::FilterOutput>) -> Result<(), RecorderError> {
        assert!(Path::new(&clip.local_path).is_file(), "handed over before the file is complete");
        self.0.lock().unwrap().push(clip);
        Ok(())
    }
}

fn config() -> V4lConfig {
    V4lConfig {
        width: 768,
        height: 576,
        fps: 10,
        bitrate_kbps: 1500,
        keyframe_interval_s: 2.0,
        detect_fps: 5.0,
        recording: RecordingConfig { pre_roll_s: 3.0, post_roll_s: 3.0, max_clip_s: 120.0, min_clip_s: 1.0 },
        ..V4lConfig::default()
    }
}

/// The capture-to-clip chain of one camera, fed by hand.
struct Chain {
    processor: FrameProcessor,
    feed: RecorderFeed,
    recorder: Recorder,
    output: Collect,
    /// (seconds, motion) per detected frame.
    motion: Vec<(f64, bool)>,
    frames: u32,
    _dir: tempfile::TempDir,
}

impl Chain {
    fn new(cfg: &V4lConfig) -> Chain {
        let dir = tempfile::tempdir().unwrap();
        let output = Collect::default();
        let recorder = Recorder::new(
            "garage".into(),
            v4l::BACKEND,
            cfg.recording.clone(),
            dir.path().join("garage"),
            Box::new(output.clone()),
        )
        .keep_recorded();
        Chain {
            processor: FrameProcessor::new(cfg.processor_settings(f64::from(cfg.fps))),
            feed: RecorderFeed::new(cfg.width, cfg.height).with_wall_clock_origin(WALL0),
            recorder,
            output,
            motion: Vec::new(),
            frames: 0,
            _dir: dir,
        }
    }

    fn push(&mut self, frame: &CapturedFrame<'_>) {
        self.frames += 1;
        let processed = self.processor.process(frame).unwrap_or_else(|e| panic!("frame {}: {e}", self.frames));
        if let Some(m) = processed.motion {
            self.motion.push((frame.pts.as_secs_f64(), m.motion));
        }
        for ev in self.feed.events(processed, &self.processor, frame.pts).unwrap() {
            self.recorder.handle(ev).unwrap();
        }
    }

    fn finish(mut self) -> Outcome {
        self.recorder.handle(RecorderEvent::StreamEnd).unwrap();
        let clips = self.recorder.recorded().to_vec();
        let submitted = self.output.0.lock().unwrap().len();
        assert_eq!(submitted, clips.len(), "every recorded clip is handed over");
        Outcome { clips, motion: self.motion, stats: self.processor.stats(), frames: self.frames, dir: self._dir }
    }
}

struct Outcome {
    clips: Vec<RecordedClip>,
    motion: Vec<(f64, bool)>,
    stats: v4l::ProcessorStats,
    frames: u32,
    dir: tempfile::TempDir,
}

fn footage() -> PathBuf {
    common::footage("scene_empty_people_empty.mp4")
}

/// BT.601 video-range chroma of an RGB pixel (what a YUYV camera sends).
fn chroma(p: &[u8]) -> (i32, i32) {
    let (r, g, b) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
    (((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128, ((112 * r - 94 * g - 18 * b + 128) >> 8) + 128)
}

/// Decodes the footage and hands each frame to `f` as (pts, width, height, luma, luma stride, rgb).
fn each_footage_frame(mut f: impl FnMut(Duration, u32, u32, &[u8], usize, &[u8])) -> u32 {
    let mut rgb = Vec::new();
    for_each_frame(&footage(), &mut |frame| {
        frame.write_rgb(&mut rgb);
        let (luma, stride) = frame.luma();
        f(Duration::from_secs_f64(frame.ts_s), frame.width, frame.height, luma, stride, &rgb);
        true
    })
    .unwrap()
}

/// Footage frame → a YUYV buffer with `pad` bytes of padding per row.
fn to_yuyv(w: u32, h: u32, luma: &[u8], luma_stride: usize, rgb: &[u8], pad: usize, out: &mut Vec<u8>) -> usize {
    let (w, h) = (w as usize, h as usize);
    let stride = 2 * w + pad;
    out.clear();
    out.resize(stride * h, 0);
    for y in 0..h {
        let row = &mut out[y * stride..y * stride + 2 * w];
        for x in (0..w).step_by(2) {
            let (u0, v0) = chroma(&rgb[(y * w + x) * 3..]);
            let (u1, v1) = chroma(&rgb[(y * w + x + 1) * 3..]);
            row[2 * x] = luma[y * luma_stride + x];
            row[2 * x + 1] = ((u0 + u1) / 2).clamp(16, 240) as u8;
            row[2 * x + 2] = luma[y * luma_stride + x + 1];
            row[2 * x + 3] = ((v0 + v1) / 2).clamp(16, 240) as u8;
        }
    }
    stride
}

/// A full decode by ffmpeg reports no error.
fn ffmpeg_decodes_cleanly(path: &Path) {
    let out = Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(path).args(["-f", "null", "-"]).output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Motion intervals (start, end) in seconds, from the detected frames.
fn intervals(motion: &[(f64, bool)]) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    let mut open: Option<f64> = None;
    for &(t, m) in motion {
        match (m, open) {
            (true, None) => open = Some(t),
            (false, Some(s)) => {
                out.push((s, t));
                open = None;
            }
            _ => {}
        }
    }
    if let (Some(s), Some(&(t, _))) = (open, motion.last()) {
        out.push((s, t));
    }
    out
}

/// The checks every format shares: motion in the people part, one clip around
/// it with pre- and post-roll, a valid H.264 MP4 of the right duration.
fn check(name: &str, o: &Outcome, cfg: &V4lConfig) {
    let runs = intervals(&o.motion);
    eprintln!("{name}: {} frames, stats {:?}, motion {runs:?}", o.frames, o.stats);
    for c in &o.clips {
        eprintln!(
            "{name}: clip {} {:.1}..{:.1} s, {} samples, {:.2} s",
            c.clip.clip_id,
            (c.clip.start_ms - WALL0) as f64 / 1000.0,
            (c.clip.end_ms - WALL0) as f64 / 1000.0,
            c.samples,
            c.duration_s
        );
    }
    assert!(o.frames >= 330, "{name}: the footage has 341 frames, got {}", o.frames);
    // Detection at detect_fps (5 of the 10 fps).
    let detected = o.motion.len() as f64;
    assert!(
        (detected - f64::from(o.frames) / 2.0).abs() <= 3.0,
        "{name}: {detected} detections for {} frames",
        o.frames
    );

    // Motion: in the people part, not in the empty lead-in.
    let first = runs.first().unwrap_or_else(|| panic!("{name}: no motion detected")).0;
    let last = runs.last().map(|r| r.1).unwrap_or(first);
    assert!((5.0..=14.0).contains(&first), "{name}: motion starts at {first:.1} s ({runs:?})");
    assert!((18.0..=31.0).contains(&last), "{name}: motion ends at {last:.1} s ({runs:?})");
    let in_motion: f64 = runs.iter().map(|(a, b)| b - a).sum();
    assert!(in_motion >= 8.0, "{name}: only {in_motion:.1} s of motion ({runs:?})");

    // One clip covering the motion plus pre/post-roll, starting at a keyframe.
    assert_eq!(o.clips.len(), 1, "{name}: {:?}", o.clips);
    let clip = &o.clips[0];
    let start = (clip.clip.start_ms - WALL0) as f64 / 1000.0;
    let end = (clip.clip.end_ms - WALL0) as f64 / 1000.0;
    let pre = cfg.recording.pre_roll_s;
    let gop = cfg.keyframe_interval_s.max(2.0);
    assert!(start <= first - pre + 0.11, "{name}: clip starts at {start:.2} s, motion at {first:.2} s");
    assert!(start >= first - pre - gop - 0.11, "{name}: clip starts at {start:.2} s, motion at {first:.2} s");
    assert!(end >= last + cfg.recording.post_roll_s - 0.21, "{name}: clip ends at {end:.2} s, motion at {last:.2} s");
    assert!(end <= 34.2, "{name}: clip ends at {end:.2} s after the footage");
    assert_eq!(clip.clip.source_backend, "v4l");
    assert!(clip.clip.clip_id.as_str().starts_with("garage_"), "{}", clip.clip.clip_id);

    // The file: valid H.264 MP4, every sample decodable, the recorded duration.
    let path = Path::new(&clip.clip.local_path);
    assert!(path.starts_with(o.dir.path()));
    let p = common::ffprobe(path);
    assert_eq!(p.codec, "h264", "{name}: {p:?}");
    assert_eq!((p.width, p.height), (768, 576), "{name}: {p:?}");
    assert_eq!(p.frames, u64::from(clip.samples), "{name}: {p:?}");
    assert!(
        (p.duration_s - clip.duration_s).abs() <= 0.15,
        "{name}: ffprobe {p:?} vs recorder {:.2} s",
        clip.duration_s
    );
    assert!((p.duration_s - (end - start)).abs() <= 0.15, "{name}: {p:?} vs {start:.2}..{end:.2}");
    assert!(p.duration_s >= in_motion, "{name}: {p:?}");
    ffmpeg_decodes_cleanly(path);
    let kbps = std::fs::metadata(path).unwrap().len() as f64 * 8.0 / p.duration_s / 1000.0;
    eprintln!("{name}: {kbps:.0} kbit/s");
    if cfg.format != PixelFormat::H264 {
        // The encoder keeps near its target (it may not skip frames to meet it).
        let target = f64::from(cfg.bitrate_kbps);
        assert!(kbps > 0.3 * target && kbps < 2.0 * target, "{name}: {kbps:.0} kbit/s for a {target} kbit/s target");
    }
    let info = homesec::media::probe(path).unwrap();
    assert_eq!((info.width, info.height), (768, 576));
    // Our own decoder reads it back too, frame for frame.
    assert_eq!(for_each_frame(path, &mut |_| true).unwrap(), clip.samples);
}

#[test]
fn yuyv_capture_is_encoded_and_recorded_around_the_motion() {
    let cfg = V4lConfig { format: PixelFormat::Yuyv, ..config() };
    let mut chain = Chain::new(&cfg);
    let mut buf = Vec::new();
    each_footage_frame(|pts, w, h, luma, ls, rgb| {
        // 64 bytes of row padding, as some drivers add.
        let stride = to_yuyv(w, h, luma, ls, rgb, 64, &mut buf);
        chain.push(&CapturedFrame { data: &buf, pts, format: PixelFormat::Yuyv, width: w, height: h, stride });
    });
    let o = chain.finish();
    // Every frame becomes one packet; an IDR every keyframe_interval_s.
    assert_eq!(o.stats.packets, u64::from(o.frames));
    let expected_keyframes = (f64::from(o.frames) / (FPS * cfg.keyframe_interval_s)).ceil() as u64;
    assert_eq!(o.stats.keyframes, expected_keyframes, "{:?}", o.stats);
    check("yuyv", &o, &cfg);
}

#[test]
fn mjpeg_capture_is_decoded_encoded_and_recorded_around_the_motion() {
    let cfg = V4lConfig { format: PixelFormat::Mjpeg, ..config() };
    let mut chain = Chain::new(&cfg);
    let mut jpeg = Vec::new();
    let mut sizes = Vec::new();
    each_footage_frame(|pts, w, h, _luma, _ls, rgb| {
        jpeg.clear();
        // 4:2:2, as UVC cameras send MJPEG.
        let mut encoder = jpeg_encoder::Encoder::new(&mut jpeg, 80);
        encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_2);
        encoder.encode(rgb, w as u16, h as u16, jpeg_encoder::ColorType::Rgb).unwrap();
        sizes.push(jpeg.len());
        // Some cameras hand over the whole buffer, zero padding after the image.
        if sizes.len() % 50 == 0 {
            jpeg.resize(jpeg.len() + 4096, 0);
        }
        chain.push(&CapturedFrame { data: &jpeg, pts, format: PixelFormat::Mjpeg, width: w, height: h, stride: 0 });
    });
    // A corrupt buffer (a USB glitch) costs one frame, not the stream.
    let err = chain
        .processor
        .process(&CapturedFrame {
            data: &jpeg[..jpeg.len() / 3],
            pts: Duration::from_secs(35),
            format: PixelFormat::Mjpeg,
            width: 768,
            height: 576,
            stride: 0,
        })
        .unwrap_err();
    assert!(err.to_string().contains("MJPEG frame cannot be decoded: the frame is cut short"), "{err}");
    let o = chain.finish();
    assert_eq!(o.stats.bad_frames, 1);
    assert!(sizes.iter().all(|s| *s > 10_000), "real JPEG frames");
    check("mjpeg", &o, &cfg);
}

/// Splits an Annex-B elementary stream into access units (one per picture): a
/// new unit starts at an AUD, SPS, PPS or SEI after a slice, or at a slice whose
/// first_mb_in_slice is 0.
fn access_units(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i..i + 3] == [0, 0, 1] {
            let at = if i > 0 && stream[i - 1] == 0 { i - 1 } else { i };
            starts.push((at, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut units: Vec<Vec<u8>> = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut has_slice = false;
    for (k, &(at, body)) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map_or(stream.len(), |s| s.0);
        let nal_type = stream[body] & 0x1f;
        let first_mb_zero = stream.get(body + 1).is_some_and(|b| b & 0x80 != 0);
        let is_slice = (1..=5).contains(&nal_type);
        let boundary = matches!(nal_type, 6..=9) || (is_slice && first_mb_zero);
        if has_slice && boundary {
            units.push(std::mem::take(&mut current));
            has_slice = false;
        }
        current.extend_from_slice(&stream[at..end]);
        has_slice |= is_slice;
    }
    if !current.is_empty() {
        units.push(current);
    }
    units
}

#[test]
fn h264_capture_is_passed_through_and_recorded_around_the_motion() {
    // What a UVC H.264 camera sends: an Annex-B stream without B-frames, SPS/PPS
    // before each IDR, one access unit per buffer.
    let tmp = tempfile::tempdir().unwrap();
    let es = tmp.path().join("camera.h264");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(footage())
        .args(["-an", "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-bf", "0", "-g", "20"])
        .args(["-x264-params", "repeat-headers=1", "-bsf:v", "h264_mp4toannexb", "-f", "h264", "-y"])
        .arg(&es)
        .output()
        .expect("ffmpeg (apt-get install ffmpeg)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stream = std::fs::read(&es).unwrap();
    let units = access_units(&stream);
    assert_eq!(units.len(), 341, "one access unit per frame");

    let cfg = V4lConfig { format: PixelFormat::H264, ..config() };
    let mut chain = Chain::new(&cfg);
    let mut passed_bytes = 0usize;
    for (i, unit) in units.iter().enumerate() {
        let pts = Duration::from_secs_f64(i as f64 / FPS);
        chain.push(&CapturedFrame { data: unit, pts, format: PixelFormat::H264, width: 768, height: 576, stride: 0 });
        passed_bytes += unit.len();
    }
    let ps = chain.processor.parameter_sets().expect("SPS/PPS captured").clone();
    assert_eq!(ps.dimensions(), Some((768, 576)));
    let o = chain.finish();
    assert_eq!(o.stats.packets, 341);
    assert_eq!(o.stats.keyframes, 18, "an IDR every 20 frames: {:?}", o.stats);
    assert_eq!(o.stats.decode_errors, 0);
    check("h264", &o, &cfg);

    // Passthrough: the clip's samples are the camera's slices, byte for byte.
    let clip = &o.clips[0];
    let mut from_clip = Vec::new();
    let dump = tmp.path().join("clip.h264");
    let out = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-i",
            &clip.clip.local_path,
            "-c:v",
            "copy",
            "-bsf:v",
            "h264_mp4toannexb",
            "-f",
            "h264",
            "-y",
        ])
        .arg(&dump)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let clip_units = access_units(&std::fs::read(&dump).unwrap());
    assert_eq!(clip_units.len() as u32, clip.samples);
    let slices = |au: &[u8]| -> Vec<Vec<u8>> {
        homesec::media::nal::annex_b_nals(au).filter(|n| (1..=5).contains(&(n[0] & 0x1f))).map(<[u8]>::to_vec).collect()
    };
    let first = ((clip.clip.start_ms - WALL0) as f64 / 100.0).round() as usize;
    for (k, au) in clip_units.iter().enumerate() {
        from_clip.push(slices(au) == slices(&units[first + k]));
    }
    assert!(from_clip.iter().all(|same| *same), "slices differ from the camera's");
    assert!(passed_bytes > 0);
}

#[test]
fn a_missing_device_gives_one_clear_error_and_slow_retries() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = PluginContext {
        layout: homesec::plugin::DataLayout::new(tmp.path().to_path_buf()),
        config_dir: tmp.path().to_path_buf(),
        device_id: "test".into(),
        cameras: vec!["garage".into()],
        client_tag: None,
    };
    let device = "/dev/video-homesec-test-missing";
    let cfg =
        V4lConfig { device: device.into(), reconnect_initial_s: 0.2, reconnect_max_s: 30.0, ..V4lConfig::default() };
    let source = v4l::build("garage".into(), cfg, &ctx, None).expect("a missing USB camera is not a build error");
    let h = source.health();
    assert!(!h.healthy);
    assert_eq!(h.backend, "v4l");
    let err = h.last_error.expect("the reason is shown before the first attempt");
    assert!(err.contains(device) && err.contains("does not exist"), "{err}");

    // The capture loop: one attempt, then a 30 s wait (missing device), and it
    // stops promptly when asked.
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let stop = Arc::new(AtomicBool::new(false));
    let stopped_at = std::thread::scope(|s| {
        let worker = s.spawn(|| source.capture_blocking(tx, stop.clone()));
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, Ordering::Relaxed);
        let t = Instant::now();
        worker.join().unwrap();
        t.elapsed()
    });
    assert!(stopped_at < Duration::from_millis(600), "stop took {stopped_at:?}");
    let status = source.status();
    assert_eq!(status.reconnects, 1, "no tight loop: {status:?}");
    assert_eq!(status.frames, 0);
    assert!(status.last_error.as_deref().is_some_and(|e| e.contains("does not exist")), "{status:?}");
    let mut ends = 0;
    while let Ok(ev) = rx.try_recv() {
        assert!(matches!(ev, RecorderEvent::StreamEnd), "{ev:?}");
        ends += 1;
    }
    assert_eq!(ends, 1);
    assert!(!source.health().healthy);
}

#[test]
fn a_file_that_is_not_a_video_device_is_reported_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = PluginContext {
        layout: homesec::plugin::DataLayout::new(tmp.path().to_path_buf()),
        config_dir: tmp.path().to_path_buf(),
        device_id: "test".into(),
        cameras: vec!["garage".into()],
        client_tag: None,
    };
    // A regular file: refused when the source is built.
    let file = tmp.path().join("video0");
    std::fs::write(&file, b"").unwrap();
    let cfg = V4lConfig { device: file.clone(), ..V4lConfig::default() };
    let err = v4l::build("garage".into(), cfg, &ctx, None).err().expect("not a device");
    let msg = homesec::telemetry::chain(&err);
    assert!(msg.contains("not a video device") && msg.contains(&file.display().to_string()), "{msg}");

    // A character device that is not V4L2 (/dev/null): the real open path through
    // the v4l crate says so, without a panic.
    let cfg = V4lConfig { device: "/dev/null".into(), reconnect_max_s: 30.0, ..V4lConfig::default() };
    let source = v4l::build("garage".into(), cfg, &ctx, None).unwrap();
    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        let worker = s.spawn(|| source.capture_blocking(tx, stop.clone()));
        std::thread::sleep(Duration::from_millis(700));
        stop.store(true, Ordering::Relaxed);
        worker.join().unwrap();
    });
    let status = source.status();
    assert_eq!(status.reconnects, 1, "{status:?}");
    let e = status.last_error.unwrap_or_default();
    assert!(e.contains("/dev/null is not a V4L2 video device"), "{e}");
    assert!(!source.health().healthy);
    assert_eq!(source.camera().as_str(), "garage");
}

#[test]
fn the_config_block_has_defaults_and_reports_every_problem() {
    let base = "\
filter:
  backend: yolo
  config:
    model_path: /m.onnx
cameras:
  - name: garage
    source:
      backend: v4l
";
    let cfg = homesec::plugins::parse_text(base, Path::new("t.yaml"), Path::new("/etc/homesec")).unwrap();
    let parsed: V4lConfig = serde_json::from_value(if cfg.cameras[0].source.config.is_null() {
        serde_json::json!({})
    } else {
        cfg.cameras[0].source.config.clone()
    })
    .unwrap();
    assert_eq!(parsed, V4lConfig::default());
    let d = V4lConfig::default();
    assert_eq!(d.device, Path::new("/dev/video0"));
    assert_eq!((d.format, d.width, d.height, d.fps), (PixelFormat::Mjpeg, 1280, 720, 15));
    assert_eq!((d.bitrate_kbps, d.keyframe_interval_s, d.detect_fps), (2000, 2.0, 5.0));

    let bad = format!(
        "{base}      config:
        device: /dev/video2
        format: mpeg2
        width: 1279
        fps: 0
        detect_fps: 30
        bitrate_kbps: 5
        motion:
          threshold: 0
        recording:
          pre_roll_s: -1
"
    );
    let issues = homesec::plugins::parse_text(&bad, Path::new("t.yaml"), Path::new("/etc/homesec")).unwrap_err();
    let rendered: Vec<String> = issues.iter().map(ToString::to_string).collect();
    // A value of the wrong kind stops the parse of the block (serde)…
    assert!(
        rendered.iter().any(|i| i.contains("cameras[0].source.config.format") && i.contains("mpeg2")),
        "{rendered:#?}"
    );

    // …a block that parses gets every range problem at once, with paths.
    let bad = format!(
        "{base}      config:
        width: 1279
        height: 100000
        fps: 0
        detect_fps: 30
        bitrate_kbps: 5
        keyframe_interval_s: 0
        reconnect_initial_s: 10
        reconnect_max_s: 5
        motion:
          threshold: 0
        recording:
          pre_roll_s: -1
"
    );
    let issues = homesec::plugins::parse_text(&bad, Path::new("t.yaml"), Path::new("/etc/homesec")).unwrap_err();
    let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
    for field in [
        "width",
        "height",
        "fps",
        "detect_fps",
        "bitrate_kbps",
        "keyframe_interval_s",
        "reconnect_max_s",
        "motion.threshold",
        "recording.pre_roll_s",
    ] {
        let path = format!("cameras[0].source.config.{field}");
        assert!(paths.contains(&path.as_str()), "{path} missing from {paths:#?}");
    }
    let width = issues.iter().find(|i| i.path.ends_with(".width")).unwrap();
    assert_eq!(width.line, Some(10), "{width}");

    let unknown = format!("{base}      config:\n        colour: red\n");
    let issues = homesec::plugins::parse_text(&unknown, Path::new("t.yaml"), Path::new("/etc/homesec")).unwrap_err();
    assert!(issues.iter().any(|i| i.message.contains("colour")), "{issues:#?}");

    // detect_fps above the capture rate.
    let fast = format!("{base}      config:\n        fps: 5\n        detect_fps: 10\n");
    let issues = homesec::plugins::parse_text(&fast, Path::new("t.yaml"), Path::new("/etc/homesec")).unwrap_err();
    assert!(issues.iter().any(|i| i.message.contains("must not exceed fps (5)")), "{issues:#?}");
}
