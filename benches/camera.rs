//! Camera benchmark: what one camera costs in CPU.
//!
//! `cargo bench --bench camera` (release). Prints figures; no harness.
//!
//! 1. The motion detector alone, per frame, at 640x360, 1280x720 and 1920x1080
//!    input (downscaled to the default 320 px wide inside).
//! 2. Decode (one thread) + motion, in CPU milliseconds per second of video, at
//!    360p (a typical sub-stream), 720p and 1080p, for H.264 and H.265
//!    (libavcodec, one thread) of the same content. The clips are made at bench start
//!    with ffmpeg from the real footage (`vtest_h264.mp4`, 10 fps, GOP 20, no
//!    B-frames; libx264 / libx265 at their default quality) into a temp dir; a
//!    size is skipped with a message when ffmpeg is missing or fails.
//! 3. Passthrough recording (packets → MP4, no decode): the samples of the real
//!    footage (`scene_empty_people_empty.mp4`, 768x576, 10 fps, keyframe every
//!    2 s) replayed through the MP4 writer, with and without its recovery
//!    journal (appended at each keyframe and once a second, both files fsynced
//!    at keyframes): CPU and wall time per sample, and the longest single write
//!    (the fsync a keyframe waits for). `cargo bench --bench camera -- recording`
//!    runs only this part.
//! 4. Keyframes when idle (`keyframes_when_idle`): the scene footage
//!    (`scene_empty_people_empty.mp4`: empty, people walk in at about 8 s) at
//!    640x360, 20 fps, a keyframe every 2 s, no B-frames, made 8 times with the
//!    keyframes shifted by 0.25 s against the scene, run through the live detect
//!    pipeline (detect_fps 5) with every reference frame decoded and with
//!    keyframes only while idle: how much later motion starts, and decode +
//!    motion CPU per second of the empty part. `cargo bench --bench camera --
//!    idle` runs only this part.
//!
//! CPU time is the benchmark thread's own time on the CPU, read from
//! `/proc/thread-self/schedstat` (Linux; decode and motion run on the calling
//! thread), so other load on the box does not inflate it. Where that file is
//! missing, wall time is used instead and the output says so.
//!
//! Test data: `HOMESEC_TESTDATA`, default `../shared/testdata`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use homesec::media::codec::VideoCodec;
use homesec::media::detect::{DetectPipeline, DetectSettings, EncodedFrame, NalFormat};
use homesec::media::mp4write::{Mp4Writer, SampleEntry, WriteOptions};
use homesec::media::{self, motion::MotionConfig, motion::MotionDetector};

mod common;
use common::testdata;

/// Frames kept in memory per size for the detector-alone figure (played
/// forwards then backwards, so consecutive frames stay consecutive).
const DETECTOR_FRAMES: usize = 40;
/// Frames run through the detector per size.
const DETECTOR_ITERATIONS: usize = 1000;
/// Length of the decode clips.
const CLIP_SECONDS: u32 = 20;

const SIZES: [(&str, u32, u32); 3] = [("360p", 640, 360), ("720p", 1280, 720), ("1080p", 1920, 1080)];

/// CPU time of this thread, or `None` where the kernel does not say.
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Measures `f`: (CPU time of this thread if known else wall time, wall time).
fn measure<T>(f: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let cpu0 = thread_cpu();
    let wall0 = Instant::now();
    let out = f();
    let wall = wall0.elapsed();
    let cpu = match (cpu0, thread_cpu()) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => wall,
    };
    (out, cpu, wall)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The codecs measured: label and ffmpeg encoder arguments (GOP 20, no B-frames).
const CODECS: [(&str, &[&str]); 2] = [
    ("H.264", &["-c:v", "libx264", "-g", "20", "-bf", "0"]),
    ("H.265", &["-c:v", "libx265", "-tag:v", "hvc1", "-x265-params", "log-level=error:keyint=20:bframes=0"]),
];

/// Makes a `w`x`h` clip of the footage with ffmpeg in `codec` (see [`CODECS`]);
/// `None` (with a message) when ffmpeg is missing or fails.
fn make_clip(src: &Path, dir: &Path, label: &str, w: u32, h: u32, codec: &[&str]) -> Option<PathBuf> {
    let out = dir.join(format!("{label}-{}.mp4", codec[1]));
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(src)
        .args(["-vf", &format!("scale={w}:{h}"), "-pix_fmt", "yuv420p"])
        .args(codec)
        .args(["-t", &CLIP_SECONDS.to_string(), "-an"])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => Some(out),
        Ok(s) => {
            println!("  {label}: SKIPPED, ffmpeg failed ({s}) making the {w}x{h} clip");
            None
        }
        Err(e) => {
            println!("  {label}: SKIPPED, ffmpeg not available ({e}); install ffmpeg to measure this size");
            None
        }
    }
}

/// The luma planes (packed, stride = width) of the clip's first `n` frames.
fn luma_frames(path: &Path, n: usize) -> Result<Vec<(u32, u32, Vec<u8>)>, media::MediaError> {
    let mut frames = Vec::with_capacity(n);
    media::for_each_frame(path, &mut |f| {
        let (y, stride) = f.luma();
        let w = f.width as usize;
        let data = (0..f.height as usize).flat_map(|r| y[r * stride..r * stride + w].iter().copied()).collect();
        frames.push((f.width, f.height, data));
        frames.len() < n
    })?;
    Ok(frames)
}

fn bench_detector(label: &str, clip: &Path) {
    let frames = match luma_frames(clip, DETECTOR_FRAMES) {
        Ok(f) if !f.is_empty() => f,
        Ok(_) => return println!("  {label}: SKIPPED, no frames decoded"),
        Err(e) => return println!("  {label}: SKIPPED, {e}"),
    };
    let order: Vec<usize> = (0..frames.len()).chain((1..frames.len().saturating_sub(1)).rev()).collect();
    let mut det = MotionDetector::new(&MotionConfig::default());
    // Warm-up (first frame sets up the buffers).
    for &i in &order {
        let (w, h, data) = &frames[i];
        det.process(data, *w as usize, *w, *h);
    }
    let (motion_frames, cpu, wall) = measure(|| {
        let mut motion = 0u32;
        for k in 0..DETECTOR_ITERATIONS {
            let (w, h, data) = &frames[order[k % order.len()]];
            let s = det.process(std::hint::black_box(data), *w as usize, *w, *h);
            motion += u32::from(s.motion);
        }
        motion
    });
    let (w, h, _) = &frames[0];
    let (aw, ah) = det.analysis_size().unwrap_or((0, 0));
    println!(
        "  {label:<6} {w}x{h} -> {aw}x{ah}  {:>6.3} ms/frame CPU  ({:.3} ms wall; {motion_frames}/{DETECTOR_ITERATIONS} \
         frames in motion)",
        ms(cpu) / DETECTOR_ITERATIONS as f64,
        ms(wall) / DETECTOR_ITERATIONS as f64,
    );
}

struct DecodeFigures {
    frames: u32,
    video_s: f64,
    decode_cpu: Duration,
    both_cpu: Duration,
    both_wall: Duration,
}

/// Runs of each decode measurement; the fastest counts (least disturbed by other load).
const DECODE_RUNS: usize = 3;

fn bench_decode_motion(clip: &Path) -> Result<DecodeFigures, media::MediaError> {
    let info = media::probe(clip)?;
    // Warm the page cache and the decoder's code.
    media::for_each_frame(clip, &mut |_| true)?;
    let mut best: Option<DecodeFigures> = None;
    for _ in 0..DECODE_RUNS {
        let (frames, decode_cpu, _) =
            measure(|| media::for_each_frame(clip, &mut |f| std::hint::black_box(f.luma()).1 > 0));
        let frames = frames?;
        let mut det = MotionDetector::new(&MotionConfig::default());
        let (both, both_cpu, both_wall) = measure(|| {
            media::for_each_frame(clip, &mut |f| {
                let (y, stride) = f.luma();
                det.process(y, stride, f.width, f.height);
                true
            })
        });
        both?;
        let video_s = if info.fps > 0.0 { f64::from(frames) / info.fps } else { info.duration_s };
        let run = DecodeFigures { frames, video_s, decode_cpu, both_cpu, both_wall };
        best = Some(match best {
            None => run,
            Some(b) => DecodeFigures {
                decode_cpu: b.decode_cpu.min(run.decode_cpu),
                both_cpu: b.both_cpu.min(run.both_cpu),
                both_wall: b.both_wall.min(run.both_wall),
                ..b
            },
        });
    }
    best.ok_or_else(|| media::MediaError::Decode { path: clip.display().to_string(), reason: "no runs".into() })
}

/// The video samples of an MP4 file as a camera sends them: (pts, keyframe, AVCC data).
type Packets = Vec<(i64, bool, Vec<u8>)>;

fn load_packets(path: &Path) -> Result<(SampleEntry, u32, Packets), String> {
    let size = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    let file = std::io::BufReader::new(std::fs::File::open(path).map_err(|e| e.to_string())?);
    let mut reader = mp4::Mp4Reader::read_header(file, size).map_err(|e| e.to_string())?;
    let (id, timescale, count, entry) = {
        let t = reader.tracks().values().find(|t| t.sequence_parameter_set().is_ok()).ok_or("no H.264 track")?;
        let (sps, pps) = (
            t.sequence_parameter_set().map_err(|e| e.to_string())?,
            t.picture_parameter_set().map_err(|e| e.to_string())?,
        );
        let entry =
            SampleEntry::avc1_from_parameter_sets(sps, pps, t.width(), t.height()).map_err(|e| e.to_string())?;
        (t.track_id(), t.timescale(), t.sample_count(), entry)
    };
    let mut packets = Vec::new();
    for i in 1..=count {
        let s = reader.read_sample(id, i).map_err(|e| e.to_string())?.ok_or("missing sample")?;
        packets.push((s.start_time as i64 + i64::from(s.rendering_offset), s.is_sync, s.bytes.to_vec()));
    }
    Ok((entry, timescale, packets))
}

/// Writes the packets as `clips` clips: (CPU, wall) per sample and the longest
/// single `write_sample`, counting only the writes (not create / finish).
fn write_clips(
    dir: &Path,
    entry: &SampleEntry,
    timescale: u32,
    packets: &Packets,
    journal: bool,
    clips: usize,
) -> Result<(Duration, Duration, Duration), String> {
    let (mut cpu, mut wall, mut worst) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for n in 0..clips {
        let dest = dir.join(format!("rec_{journal}_{n}.mp4"));
        let opts = WriteOptions { journal, start_wall_ms: Some(0) };
        let mut w = Mp4Writer::create_with(&dest, entry.clone(), timescale, opts).map_err(|e| e.to_string())?;
        let (r, c, t) = measure(|| {
            for (pts, key, data) in packets {
                let t0 = Instant::now();
                w.write_sample(*pts, *key, data)?;
                worst = worst.max(t0.elapsed());
            }
            Ok::<_, homesec::media::mp4write::Mp4WriteError>(())
        });
        r.map_err(|e| e.to_string())?;
        (cpu, wall) = (cpu + c, wall + t);
        w.finish(None).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&dest);
    }
    let samples = (packets.len() * clips) as u32;
    Ok((cpu / samples, wall / samples, worst))
}

fn bench_recording(dir: &Path) {
    const CLIPS: usize = 20;
    println!("\n== passthrough recording (packets -> MP4, no decode), per sample ==");
    let footage = testdata().join("footage/scene_empty_people_empty.mp4");
    let (entry, timescale, packets) = match load_packets(&footage) {
        Ok(p) => p,
        Err(e) => return println!("  SKIPPED: cannot read {}: {e}", footage.display()),
    };
    let bytes: usize = packets.iter().map(|p| p.2.len()).sum();
    println!(
        "  {} ({} samples, {:.0} kB/sample, {CLIPS} clips each; files in {})",
        footage.file_name().unwrap_or_default().to_string_lossy(),
        packets.len(),
        bytes as f64 / packets.len() as f64 / 1000.0,
        dir.display()
    );
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    for journal in [false, true] {
        match write_clips(dir, &entry, timescale, &packets, journal, CLIPS) {
            Ok((cpu, wall, worst)) => println!(
                "  {:<16} {:>7.1} µs CPU, {:>7.1} µs wall per sample (longest write {:.2} ms); {:.2} ms CPU per second of video at 10 fps",
                if journal { "with journal" } else { "without journal" },
                us(cpu),
                us(wall),
                ms(worst),
                us(cpu) * 10.0 / 1000.0
            ),
            Err(e) => println!("  FAILED: {e}"),
        }
    }
}

/// Keyframe phases (0.25 s apart) of [`bench_idle_keyframes`].
const IDLE_PHASES: u32 = 8;
/// The scene footage is empty before this (stream time, after the phase cut).
const IDLE_EMPTY_S: f64 = 6.0;

/// One pipeline run of [`bench_idle_keyframes`].
struct IdleRun {
    /// Stream time of the first motion verdict.
    first_motion_s: Option<f64>,
    /// CPU over `empty_s` of the empty part after its first GOP.
    empty_cpu: Duration,
    empty_s: f64,
    /// Pictures, and pictures not decoded, of the empty part.
    empty_frames: usize,
    empty_skipped: u64,
}

fn idle_run(packets: &Packets, timescale: u32, keyframes_when_idle: bool) -> IdleRun {
    let settings =
        DetectSettings { detect_fps: 5.0, source_fps: None, motion: MotionConfig::default(), keyframes_when_idle };
    let mut pipeline = DetectPipeline::new(&settings);
    let mut first = None;
    let mut push = |pipeline: &mut DetectPipeline, packets: &[(i64, bool, Vec<u8>)]| {
        for (pts, keyframe, data) in packets {
            let ts_s = *pts as f64 / f64::from(timescale);
            let frame = EncodedFrame {
                ts_s,
                keyframe: *keyframe,
                codec: VideoCodec::H264,
                format: NalFormat::Avcc,
                data,
                parameter_sets: None,
            };
            if let Ok(Some(v)) = pipeline.push_encoded(&frame)
                && v.motion
                && first.is_none()
            {
                first = Some(ts_s);
            }
        }
    };
    let empty = packets.iter().take_while(|p| (p.0 as f64) < IDLE_EMPTY_S * f64::from(timescale)).count();
    // The first GOP (decoder set-up, the first background) is not measured.
    let warm = packets.iter().skip(1).position(|p| p.1).map_or(empty, |i| (i + 1).min(empty));
    push(&mut pipeline, &packets[..warm]);
    let ((), empty_cpu, _) = measure(|| push(&mut pipeline, &packets[warm..empty]));
    let empty_s = packets.get(empty).map_or(0.0, |p| p.0 as f64) / f64::from(timescale)
        - packets.get(warm).map_or(0.0, |p| p.0 as f64) / f64::from(timescale);
    let empty_skipped = pipeline.skipped();
    push(&mut pipeline, &packets[empty..]);
    IdleRun { first_motion_s: first, empty_cpu, empty_s, empty_frames: empty, empty_skipped }
}

fn bench_idle_keyframes(dir: &Path) {
    println!(
        "\n== keyframes when idle: scene footage 640x360 @ 20 fps, keyframe every 2 s, no B-frames, detect_fps 5, \
         {IDLE_PHASES} keyframe phases =="
    );
    let src = testdata().join("footage/scene_empty_people_empty.mp4");
    let (mut extra, mut cpu_all, mut cpu_idle, mut measured_s) = (Vec::new(), Duration::ZERO, Duration::ZERO, 0.0);
    for k in 0..IDLE_PHASES {
        let cut = f64::from(k) * 0.25;
        let out = dir.join(format!("idle-{k}.mp4"));
        let status = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-ss", &format!("{cut}"), "-i"])
            .arg(&src)
            .args(["-vf", "fps=20,scale=640:360", "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "veryfast"])
            .args(["-bf", "0", "-g", "40", "-x264-params", "repeat-headers=1", "-an"])
            .arg(&out)
            .status();
        if !status.is_ok_and(|s| s.success()) {
            return println!("  SKIPPED: ffmpeg with libx264 could not make the clips");
        }
        let (_, timescale, packets) = match load_packets(&out) {
            Ok(p) => p,
            Err(e) => return println!("  FAILED: {e}"),
        };
        // Warm up the decoder's code and the page cache.
        idle_run(&packets, timescale, false);
        let (all, idle) = (idle_run(&packets, timescale, false), idle_run(&packets, timescale, true));
        let fmt = |t: Option<f64>| t.map_or_else(|| "none".into(), |t| format!("{:.2} s", t + cut));
        println!(
            "  keyframes at +{cut:.2} s: motion at {} (every frame) / {} (keyframes when idle); empty part: {} of {} \
             pictures not decoded",
            fmt(all.first_motion_s),
            fmt(idle.first_motion_s),
            idle.empty_skipped,
            idle.empty_frames
        );
        if let (Some(a), Some(b)) = (all.first_motion_s, idle.first_motion_s) {
            extra.push(b - a);
        }
        cpu_all += all.empty_cpu;
        cpu_idle += idle.empty_cpu;
        measured_s += idle.empty_s;
    }
    if extra.is_empty() {
        return println!("  FAILED: no motion found");
    }
    let mean = extra.iter().sum::<f64>() / extra.len() as f64;
    let max = extra.iter().copied().fold(0.0, f64::max);
    let per_s = |d: Duration| ms(d) / measured_s.max(1e-9);
    println!(
        "  motion starts {mean:.2} s later on average, {max:.2} s at most (the keyframe interval is 2 s); while \
         idle (after the first GOP), decode + motion costs {:.2} ms/s with every frame and {:.2} ms/s with \
         keyframes only",
        per_s(cpu_all),
        per_s(cpu_idle)
    );
}

fn main() {
    if std::env::args().any(|a| a == "idle") {
        match tempfile::tempdir() {
            Ok(d) => bench_idle_keyframes(d.path()),
            Err(e) => println!("cannot create a temp dir: {e}"),
        }
        return;
    }
    if std::env::args().any(|a| a == "recording") {
        match tempfile::tempdir() {
            Ok(d) => bench_recording(d.path()),
            Err(e) => println!("cannot create a temp dir: {e}"),
        }
        return;
    }
    let footage = testdata().join("footage/vtest_h264.mp4");
    if !footage.is_file() {
        println!("test footage not found at {} (set HOMESEC_TESTDATA)", footage.display());
        return;
    }
    let clock = if thread_cpu().is_some() {
        "thread CPU time (/proc/thread-self/schedstat)"
    } else {
        "WALL time (no per-thread CPU clock here): run on an idle box"
    };
    println!("HomeSec camera benchmark (release, one thread; times are {clock})");
    println!("footage: {}", footage.display());

    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            println!("cannot create a temp dir: {e}");
            return;
        }
    };
    println!("\nmaking {CLIP_SECONDS} s clips with ffmpeg (libx264 and libx265, GOP 20, no B-frames, 10 fps) ...");
    let (h264, h265) = (CODECS[0].1, CODECS[1].1);
    let clips: Vec<(&str, u32, u32, Option<PathBuf>)> =
        SIZES.iter().map(|&(label, w, h)| (label, w, h, make_clip(&footage, dir.path(), label, w, h, h264))).collect();
    let clips_h265: Vec<(&str, u32, u32, Option<PathBuf>)> =
        SIZES.iter().map(|&(label, w, h)| (label, w, h, make_clip(&footage, dir.path(), label, w, h, h265))).collect();

    println!("\n== motion detector alone (default config: 320 px wide, threshold 25) ==");
    for (label, _, _, clip) in &clips {
        if let Some(clip) = clip {
            bench_detector(label, clip);
        }
    }
    // The footage's own size: 768 is not a multiple of 320, so boxes are uneven (2-3 px).
    bench_detector("576p", &footage);

    let mut sub_stream_pct = None;
    let runs = [("H.264", &clips), ("H.265", &clips_h265)];
    for (n, (codec, clips)) in runs.into_iter().enumerate() {
        println!("\n== decode {codec} + motion on every frame, per second of video (best of {DECODE_RUNS}) ==");
        for (label, w, h, clip) in clips {
            let Some(clip) = clip else { continue };
            let bytes = std::fs::metadata(clip).map_or(0, |m| m.len());
            match bench_decode_motion(clip) {
                Ok(f) => {
                    let per_s = |d: Duration| ms(d) / f.video_s;
                    let per_frame = |d: Duration| ms(d) / f64::from(f.frames.max(1));
                    let fps = f64::from(f.frames) / f.video_s;
                    println!(
                        "  {label:<6} {w}x{h} @ {fps:.0} fps, {:.0} kbit/s: decode {:>6.1} ms/s ({:.2} ms/frame), decode + \
                     motion {:>6.1} ms/s ({:.2} ms/frame) = {:.1} % of one core  (wall {:.1} ms/s; at 25 fps ≈ {:.1} % \
                     of one core)",
                        bytes as f64 * 8.0 / 1000.0 / f.video_s,
                        per_s(f.decode_cpu),
                        per_frame(f.decode_cpu),
                        per_s(f.both_cpu),
                        per_frame(f.both_cpu),
                        per_s(f.both_cpu) / 10.0,
                        per_s(f.both_wall),
                        per_frame(f.both_cpu) * 25.0 / 10.0,
                    );
                    if *label == "360p" && n == 0 {
                        sub_stream_pct = Some(per_s(f.both_cpu) / 10.0);
                    }
                }
                Err(e) => println!("  {label}: FAILED: {e}"),
            }
        }
    }

    bench_recording(dir.path());
    bench_idle_keyframes(dir.path());

    if let Some(pct) = sub_stream_pct {
        println!("\n== summary ==");
        println!(
            "  360p sub-stream decode + motion at 10 fps: {pct:.1} % of one core per camera \
             (+ passthrough recording of the main stream, see above)"
        );
    }
}
