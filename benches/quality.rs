//! Alert quality benchmark: the real detector (YOLOX-Nano 416, `min_confidence`
//! 0.45) with zones and stationary-object tracking over cuts of the real
//! footage. Prints per clip whether it should alert and whether it does, with
//! tracking and without (everything detected counts), precision and recall of
//! "alert or not", and the time tracking adds per detected frame, measured apart
//! from inference.
//!
//! `make bench-quality` (release). Needs ONNX Runtime, ffmpeg and the test data
//! (`HOMESEC_TESTDATA`, default `../shared/testdata`). No harness.

use std::path::{Path, PathBuf};
use std::time::Duration;

use homesec::filter::tracking::{CameraTracking, TrackContext, Zones};
use homesec::filter::yolo::{ClipSettings, Detector, DetectorOptions, run_clip};

mod common;
use common::{ort_library, testdata};

/// `seconds` of `footage` from `start`, re-encoded into `dir` (GOP 20, as the footage).
fn cut(dir: &Path, footage: &str, start: f64, seconds: f64) -> PathBuf {
    let out = dir.join(format!("{footage}_{start}_{seconds}.mp4"));
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-ss", &start.to_string(), "-t", &seconds.to_string(), "-i"])
        .arg(testdata().join("footage").join(footage))
        .args(["-c:v", "libx264", "-preset", "veryfast", "-g", "20", "-pix_fmt", "yuv420p", "-an"])
        .arg(&out)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg cut {footage}");
    out
}

#[derive(Default)]
struct Score {
    tp: u32,
    fp: u32,
    tn: u32,
    fn_: u32,
}

impl Score {
    fn add(&mut self, expected: bool, got: bool) {
        match (expected, got) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (false, false) => self.tn += 1,
            (true, false) => self.fn_ += 1,
        }
    }

    fn line(&self, name: &str) -> String {
        let ratio = |a: u32, b: u32| if b == 0 { 1.0 } else { f64::from(a) / f64::from(b) };
        format!(
            "{name:<22} precision {:.2}  recall {:.2}  (alerts right {}, false {}, missed {}, quiet right {})",
            ratio(self.tp, self.tp + self.fp),
            ratio(self.tp, self.tp + self.fn_),
            self.tp,
            self.fp,
            self.fn_,
            self.tn
        )
    }
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let empty = cut(d, "scene_empty_people_empty.mp4", 0.0, 7.0);
    let clips: Vec<(String, PathBuf, bool)> = vec![
        ("empty scene #1".into(), empty.clone(), false),
        ("empty scene #2".into(), empty.clone(), false),
        ("empty scene #3".into(), empty, false),
        ("tree, no person".into(), testdata().join("footage/tree_motion_no_person.mp4"), false),
        ("scene empty-people-empty".into(), testdata().join("footage/scene_empty_people_empty.mp4"), true),
        ("vtest whole".into(), testdata().join("footage/vtest_h264.mp4"), true),
        ("vtest 0-8 s".into(), cut(d, "vtest_h264.mp4", 0.0, 8.0), true),
        ("vtest 20-28 s".into(), cut(d, "vtest_h264.mp4", 20.0, 8.0), true),
        ("vtest 40-48 s".into(), cut(d, "vtest_h264.mp4", 40.0, 8.0), true),
        ("vtest 60-68 s".into(), cut(d, "vtest_h264.mp4", 60.0, 8.0), true),
    ];
    let opts = DetectorOptions {
        classes: vec!["person".into(), "car".into()],
        min_confidence: 0.45,
        ..DetectorOptions::default()
    };
    let Some(library) = ort_library() else {
        eprintln!("no ONNX Runtime: run `make fetch` or set ORT_DYLIB_PATH");
        return;
    };
    let model = testdata().join("models/yolox_nano_416.onnx");
    let mut det = Detector::new(&model, &library, &opts).expect("detector");
    let settings = ClipSettings::default();
    // One camera for every clip: its memory carries over, as on a box.
    let camera = CameraTracking::new("walkway".into(), Zones::default());
    let (mut tracked, mut untracked) = (Score::default(), Score::default());
    let (mut frames, mut tracking, mut inference) = (0u32, Duration::ZERO, Duration::ZERO);
    println!("{:<26} {:>6} {:>8} {:>10} {:>7}  classes (alert)", "clip", "should", "tracked", "untracked", "frames");
    for (i, (name, path, expected)) in clips.iter().enumerate() {
        let ctx = TrackContext { camera: camera.clone(), now_ms: i as i64 * 60_000 };
        let (out, stats) =
            run_clip(&mut det, path, &settings, &["person".to_string()], &ctx, &mut |_| {}).expect("clip filtered");
        let r = out.result;
        let got = r.alert_classes.iter().any(|c| c == "person");
        let naive = r.detected_classes.iter().any(|c| c == "person");
        tracked.add(*expected, got);
        untracked.add(*expected, naive);
        frames += stats.frames;
        tracking += stats.tracking;
        inference += stats.timings.inference;
        let yes = |b: bool| if b { "alert" } else { "-" };
        println!(
            "{name:<26} {:>6} {:>8} {:>10} {:>7}  {:?} ({:?})",
            yes(*expected),
            yes(got),
            yes(naive),
            stats.frames,
            r.detected_classes,
            r.alert_classes
        );
    }
    println!("{}", tracked.line("with tracking"));
    println!("{}", untracked.line("everything detected"));
    let per = |t: Duration| t.as_secs_f64() * 1000.0 / f64::from(frames.max(1));
    println!(
        "per detected frame ({frames} frames): zones + stationary tracking {:.3} ms, inference {:.1} ms",
        per(tracking),
        per(inference)
    );
}
