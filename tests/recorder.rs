//! The MP4 writer and the recorder on real footage, without a network: the
//! camera's packets are the samples of a real H.264 clip, motion comes from the
//! real detector, and ffprobe judges the files. A recording process killed with
//! SIGKILL mid-clip leaves a clip that recovery makes playable.

mod common;

use std::collections::HashSet;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::{Arc, Mutex};

use homesec::domain::Clip;
use homesec::media::motion::{MotionConfig, MotionDetector};
use homesec::media::mp4write::{self, Mp4Writer, SampleEntry};
use homesec::sources::recorder::{ClipOutput, EncodedPacket, Recorder, RecorderError, RecorderEvent, RecordingConfig};

const WALL0: i64 = 1_750_000_000_000;

/// The video track of an MP4 file as a camera would send it: samples in decode
/// order with presentation times.
struct Footage {
    entry: SampleEntry,
    timescale: u32,
    packets: Vec<EncodedPacket>,
}

fn load(name: &str) -> Footage {
    let path = common::footage(name);
    let size = std::fs::metadata(&path).unwrap().len();
    let mut reader = mp4::Mp4Reader::read_header(BufReader::new(File::open(&path).unwrap()), size).unwrap();
    let (track_id, timescale, count, entry) = {
        let track = reader.tracks().values().find(|t| t.sequence_parameter_set().is_ok()).expect("an H.264 track");
        let entry = SampleEntry::avc1_from_parameter_sets(
            track.sequence_parameter_set().unwrap(),
            track.picture_parameter_set().unwrap(),
            track.width(),
            track.height(),
        )
        .unwrap();
        (track.track_id(), track.timescale(), track.sample_count(), entry)
    };
    let mut packets = Vec::new();
    for i in 1..=count {
        let s = reader.read_sample(track_id, i).unwrap().unwrap();
        let pts = s.start_time as i64 + i64::from(s.rendering_offset);
        packets.push(EncodedPacket {
            pts,
            wall_ms: WALL0 + pts * 1000 / i64::from(timescale),
            is_keyframe: s.is_sync,
            data: s.bytes.to_vec(),
        });
    }
    Footage { entry, timescale, packets }
}

#[test]
fn remuxed_footage_with_b_frames_is_valid_h264_of_the_same_duration() {
    let f = load("scene_empty_people_empty.mp4");
    assert!(f.packets.windows(2).any(|w| w[1].pts < w[0].pts), "the footage has B-frames");
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("remux.mp4");
    let mut w = Mp4Writer::create(&dest, f.entry.clone(), f.timescale).unwrap();
    for p in &f.packets {
        w.write_sample(p.pts, p.is_keyframe, &p.data).unwrap();
    }
    let summary = w.finish(None).unwrap();
    assert_eq!(summary.samples, 341);
    assert!((summary.duration_s - 34.1).abs() < 0.01, "{summary:?}");
    let p = common::ffprobe(&dest);
    assert!((p.duration_s - 34.1).abs() < 0.05, "{p:?}");
    assert_eq!((p.codec.as_str(), p.frames), ("h264", 341));
    // Our own reader agrees, and decodes every frame.
    let info = homesec::media::probe(&dest).unwrap();
    assert_eq!((info.width, info.height, info.frame_count), (768, 576, 341));
    let decoded = homesec::media::for_each_frame(&dest, &mut |_| true).unwrap();
    assert_eq!(decoded, 341);
}

#[derive(Clone, Default)]
struct Collect {
    clips: Arc<Mutex<Vec<Clip>>>,
}

impl ClipOutput for Collect {
    fn is_taken(&mut self, id: &str) -> Result<bool, RecorderError> {
        Ok(self.clips.lock().unwrap().iter().any(|c| c.clip_id.as_str() == id))
    }
    fn submit(&mut self, clip: Clip, _live: Option<homesec::filter::FilterOutput>) -> Result<(), RecorderError> {
        self.clips.lock().unwrap().push(clip);
        Ok(())
    }
}

/// Motion verdicts of the real detector on the footage at 5 fps: (pts, motion).
fn motion_track(name: &str, f: &Footage) -> Vec<(i64, bool)> {
    let first_pts = f.packets.iter().map(|p| p.pts).min().unwrap();
    let mut detector = MotionDetector::new(&MotionConfig::default());
    let mut out = Vec::new();
    homesec::media::for_each_frame(&common::footage(name), &mut |frame| {
        if frame.index.is_multiple_of(2) {
            let (y, stride) = frame.luma();
            let s = detector.process(y, stride, frame.width, frame.height);
            out.push((first_pts + (frame.ts_s * f64::from(f.timescale)).round() as i64, s.motion));
        }
        true
    })
    .unwrap();
    out
}

/// Plays the footage into a recorder the way the RTSP source does: each packet,
/// then the verdicts for frames up to the newest packet's time; then the stream ends.
fn record(name: &str, cfg: RecordingConfig) -> (Vec<Clip>, tempfile::TempDir, Vec<(i64, bool)>) {
    let f = load(name);
    let motion = motion_track(name, &f);
    let dir = tempfile::tempdir().unwrap();
    let out = Collect::default();
    let mut rec = Recorder::new("yard".into(), "rtsp", cfg, dir.path().join("yard"), Box::new(out.clone()));
    rec.handle(RecorderEvent::Stream { entry: f.entry.clone(), timescale: f.timescale }).unwrap();
    let mut next = 0;
    let mut now = i64::MIN;
    for p in f.packets {
        now = now.max(p.pts);
        rec.handle(RecorderEvent::Packet(p)).unwrap();
        while next < motion.len() && motion[next].0 <= now {
            rec.handle(RecorderEvent::Motion { pts: Some(motion[next].0), motion: motion[next].1 }).unwrap();
            next += 1;
        }
    }
    rec.handle(RecorderEvent::StreamEnd).unwrap();
    let clips = out.clips.lock().unwrap().clone();
    (clips, dir, motion)
}

fn motion_span_s(motion: &[(i64, bool)], timescale: f64) -> (f64, f64) {
    let first = motion.iter().find(|m| m.1).unwrap().0 as f64 / timescale;
    let last = motion.iter().rev().find(|m| m.1).unwrap().0 as f64 / timescale;
    (first, last)
}

#[test]
fn motion_in_real_footage_gives_one_clip_covering_it_plus_pre_and_post_roll() {
    let cfg = RecordingConfig { pre_roll_s: 5.0, post_roll_s: 3.0, max_clip_s: 120.0, min_clip_s: 2.0 };
    let (clips, _dir, motion) = record("scene_empty_people_empty.mp4", cfg);
    let timescale = f64::from(load("scene_empty_people_empty.mp4").timescale);
    let (m0, m1) = motion_span_s(&motion, timescale);
    assert!((6.0..=9.5).contains(&m0) && (26.0..=30.0).contains(&m1), "motion {m0:.1}-{m1:.1} s");
    assert_eq!(clips.len(), 1, "{clips:?}");
    let c = &clips[0];
    let (start, end) = ((c.start_ms - WALL0) as f64 / 1000.0, (c.end_ms - WALL0) as f64 / 1000.0);
    // GOP of 2 s: the clip starts at the keyframe at or before m0 - 5 s and ends at
    // the first keyframe after m1 + 3 s (or the end of the footage).
    assert!(start <= m0 - 5.0 + 1e-6 && start > m0 - 7.0, "clip {start:.1}-{end:.1}, motion {m0:.1}-{m1:.1}");
    assert!(end >= (m1 + 3.0).min(34.1) - 1e-6 && end <= (m1 + 5.1).min(34.1) + 1e-6, "clip {start:.1}-{end:.1}");
    let path = Path::new(&c.local_path);
    assert_eq!(path.file_name().unwrap().to_string_lossy(), format!("{}.mp4", c.clip_id));
    assert_eq!(c.clip_id.as_str(), format!("yard_{}", c.start_ms / 1000));
    let p = common::ffprobe(path);
    assert!((p.duration_s - (end - start)).abs() < 0.05, "ffprobe {p:?} vs {}", end - start);
    assert_eq!(p.codec, "h264");
    assert_eq!(p.frames as f64, ((end - start) * 10.0).round());
}

#[test]
fn long_motion_is_split_into_valid_clips_at_keyframes() {
    let cfg = RecordingConfig { pre_roll_s: 2.0, post_roll_s: 2.0, max_clip_s: 8.0, min_clip_s: 2.0 };
    let (clips, _dir, _) = record("scene_empty_people_empty.mp4", cfg);
    assert!(clips.len() >= 3, "{clips:?}");
    let ids: HashSet<_> = clips.iter().map(|c| c.clip_id.clone()).collect();
    assert_eq!(ids.len(), clips.len());
    for pair in clips.windows(2) {
        assert_eq!(pair[0].end_ms, pair[1].start_ms, "consecutive clips meet at a keyframe");
    }
    for c in &clips {
        let path = Path::new(&c.local_path);
        let p = common::ffprobe(path);
        assert!((p.duration_s - (c.end_ms - c.start_ms) as f64 / 1000.0).abs() < 0.05);
        assert!(p.duration_s <= 8.0 + 4.0 + 1e-6, "{p:?}");
        assert_eq!(p.codec, "h264");
    }
}

#[test]
fn tree_footage_motion_is_recorded() {
    let (clips, _dir, motion) = record("tree_motion_no_person.mp4", RecordingConfig::default());
    assert!(motion.iter().any(|m| m.1), "the swaying tree is motion");
    assert!(!clips.is_empty());
    for c in &clips {
        assert_eq!(common::ffprobe(Path::new(&c.local_path)).codec, "h264");
    }
}

/// A clip's frames as our demuxer and decoder and ffprobe see them: all three
/// must agree with what recovery says it wrote.
fn check_playable(path: &Path, samples: u32, duration_s: f64) {
    let info = homesec::media::probe(path).unwrap();
    assert_eq!((info.width, info.height, info.frame_count), (768, 576, samples));
    assert!((info.duration_s - duration_s).abs() < 1e-6, "{info:?} vs {duration_s}");
    assert_eq!(homesec::media::for_each_frame(path, &mut |_| true).unwrap(), samples);
    let p = common::ffprobe(path);
    assert_eq!((p.codec.as_str(), p.frames), ("h264", u64::from(samples)));
    assert!((p.duration_s - duration_s).abs() < 0.05, "ffprobe {p:?} vs {duration_s}");
}

#[test]
fn a_writer_lost_mid_clip_is_recovered_up_to_its_last_keyframe() {
    let f = load("scene_empty_people_empty.mp4");
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("yard/yard_1.mp4");
    // Up to and including the 5th keyframe (journaled and fsynced with it), then
    // a few frames that wait for the next batch.
    let k = f.packets.iter().enumerate().filter(|(_, p)| p.is_keyframe).nth(4).unwrap().0;
    let mut w = Mp4Writer::create(&dest, f.entry.clone(), f.timescale).unwrap();
    for p in &f.packets[..k + 4] {
        w.write_sample(p.pts, p.is_keyframe, &p.data).unwrap();
    }
    std::mem::forget(w);
    let r = mp4write::recover(&mp4write::part_path(&dest)).unwrap().unwrap();
    assert_eq!((r.summary.samples, r.summary.keyframes, r.dropped_samples), (k as u32 + 1, 5, 0));
    assert!(!mp4write::part_path(&dest).exists() && !mp4write::journal_path(&dest).exists());
    check_playable(&dest, r.summary.samples, r.summary.duration_s);
    let frame = f.timescale as f64 / 10.0;
    assert!((r.summary.duration as f64 - (k as f64 + 1.0) * frame).abs() < 1.0, "{r:?}");
}

const CHILD_DIR: &str = "HOMESEC_TEST_RECORDER_CHILD_DIR";

/// Not a test by itself: the recording process that
/// `a_recorder_killed_with_sigkill_mid_clip_leaves_a_playable_clip` kills.
/// Records the footage in real time (sped up) with motion throughout, and
/// prints each packet it has handed to the recorder.
#[test]
fn recorder_child_process() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else { return };
    use std::io::Write;
    let f = load("scene_empty_people_empty.mp4");
    let cfg = RecordingConfig { pre_roll_s: 5.0, post_roll_s: 3.0, max_clip_s: 120.0, min_clip_s: 0.0 };
    let mut rec = Recorder::new("yard".into(), "rtsp", cfg, dir.into(), Box::new(Collect::default()));
    rec.handle(RecorderEvent::Stream { entry: f.entry.clone(), timescale: f.timescale }).unwrap();
    let mut out = std::io::stdout().lock();
    for (i, p) in f.packets.into_iter().enumerate() {
        let (pts, key) = (p.pts, p.is_keyframe);
        rec.handle(RecorderEvent::Packet(p)).unwrap();
        rec.handle(RecorderEvent::Motion { pts: Some(pts), motion: true }).unwrap();
        writeln!(out, "packet {i} {key}").unwrap();
        out.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(15));
    }
    // Killed before this: the clip is never finished.
    std::thread::sleep(std::time::Duration::from_secs(60));
}

#[test]
fn a_recorder_killed_with_sigkill_mid_clip_leaves_a_playable_clip() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let cam = dir.path().join("yard");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["recorder_child_process", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, &cam)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    // Kill it once 150 packets (15 s of video, 7 keyframes) are in.
    let (mut last, mut last_key) = (0usize, 0usize);
    for line in stdout.lines() {
        let line = line.unwrap();
        let Some(rest) = line.strip_prefix("packet ") else { continue };
        let (i, key) = rest.split_once(' ').unwrap();
        last = i.parse().unwrap();
        if key == "true" {
            last_key = last;
        }
        if last >= 150 {
            break;
        }
    }
    assert!(last >= 150, "the child stopped early");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let names: Vec<String> =
        std::fs::read_dir(&cam).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().any(|n| n.ends_with(".mp4.part")), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with(".mp4.part.idx")), "{names:?}");

    let out = Collect::default();
    let cfg = RecordingConfig::default();
    let mut rec = Recorder::new("yard".into(), "rtsp", cfg, cam.clone(), Box::new(out.clone()));
    assert_eq!(rec.recover_unfinished().unwrap(), 1);
    let clips = out.clips.lock().unwrap().clone();
    assert_eq!(clips.len(), 1, "{clips:?}");
    let c = &clips[0];
    assert_eq!((c.camera.as_str(), c.source_backend.as_str()), ("yard", "rtsp"));
    let first = &load("scene_empty_people_empty.mp4").packets[0];
    assert_eq!(c.start_ms, first.wall_ms, "the clip starts at the first packet");
    let path = Path::new(&c.local_path);
    let probe = homesec::media::probe(path).unwrap();
    // Everything up to the last keyframe before the kill was fsynced with it;
    // frames after it may be there too (journaled by the time the kill landed).
    let samples = probe.frame_count as usize;
    assert!(
        samples > last_key && samples < 341,
        "{samples} frames; last keyframe sent: {last_key}, last packet {last}"
    );
    let duration_s = (c.end_ms - c.start_ms) as f64 / 1000.0;
    assert!((probe.duration_s - duration_s).abs() < 0.002, "{probe:?} vs {c:?}");
    check_playable(path, probe.frame_count, probe.duration_s);
    let names: Vec<String> =
        std::fs::read_dir(&cam).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, vec![format!("{}.mp4", c.clip_id)]);
}
