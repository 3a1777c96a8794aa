//! Detector benchmark: per-stage time of one 768x576 frame through YOLOX-Nano 416
//! and 640, and the filter's whole-clip time on `scene_empty_people_empty.mp4`.
//!
//! `cargo bench --bench detector` (release). Needs ONNX Runtime
//! (`models/fetch-onnxruntime.sh` or `ORT_DYLIB_PATH`) and the test data
//! (`HOMESEC_TESTDATA`, default `../shared/testdata`). Prints figures; no harness.

use std::path::Path;
use std::time::{Duration, Instant};

use homesec::filter::yolo::{self, ClipSettings, Detector, DetectorOptions, Timings};

use homesec::media::{self, RgbFrame};

mod common;
use common::{ort_library, testdata};

const WARMUP: u32 = 5;
const ITERATIONS: u32 = 50;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn per_frame(t: Timings, n: u32) -> Timings {
    Timings { preprocess: t.preprocess / n, inference: t.inference / n, postprocess: t.postprocess / n }
}

fn first_frame_after(path: &Path, ts_s: f64) -> RgbFrame {
    let mut found = None;
    media::sample_frames(path, 0.0, 0, &mut |f| {
        if f.ts_s + 1e-6 >= ts_s {
            found = Some(f);
            return false;
        }
        true
    })
    .expect("decode the benchmark frame");
    found.expect("a frame at that time")
}

fn bench_model(model: &Path, library: &Path, frame: &RgbFrame) {
    let opts = DetectorOptions { classes: Vec::new(), ..DetectorOptions::default() };
    let load = Instant::now();
    let mut det = Detector::new(model, library, &opts).expect("detector");
    let load = load.elapsed();
    for _ in 0..WARMUP {
        det.detect_rgb(frame).expect("warm-up");
    }
    let mut sum = Timings::default();
    let mut detections = 0;
    for _ in 0..ITERATIONS {
        let (d, t) = det.detect_rgb(std::hint::black_box(frame)).expect("detect");
        detections = d.len();
        sum += t;
    }
    let t = per_frame(sum, ITERATIONS);
    let (w, h) = det.input_size();
    println!(
        "{:<16} {w}x{h} {:>4}  preprocess {:>6.2} ms  inference {:>7.2} ms  postprocess {:>5.2} ms  total {:>7.2} ms  \
         overhead {:>4.1} % of inference  ({} detections, load {:.0} ms)",
        det.model_name(),
        det.execution_provider(),
        ms(t.preprocess),
        ms(t.inference),
        ms(t.postprocess),
        ms(t.total()),
        100.0 * (ms(t.preprocess) + ms(t.postprocess)) / ms(t.inference),
        detections,
        ms(load),
    );
}

fn bench_clip(model: &Path, library: &Path, clip: &Path, classes: &[&str], label: &str) {
    let opts =
        DetectorOptions { classes: classes.iter().map(|c| c.to_string()).collect(), ..DetectorOptions::default() };
    let mut det = Detector::new(model, library, &opts).expect("detector");
    let settings = ClipSettings::default();
    let tracking = homesec::filter::tracking::TrackContext::standalone("bench", 0);
    let (out, stats) = yolo::run_clip(&mut det, clip, &settings, &[], &tracking, &mut |_| {}).expect("filter the clip");
    let model_ms = ms(stats.timings.total());
    println!(
        "{label:<34} total {:>7.1} ms  frames {:>2}  model {:>6.1} ms (pre {:.1} / inf {:.1} / post {:.1})  \
         decode+sample+snapshot {:>6.1} ms  early_exit {}  found {:?}",
        ms(stats.total),
        stats.frames,
        model_ms,
        ms(stats.timings.preprocess),
        ms(stats.timings.inference),
        ms(stats.timings.postprocess),
        ms(stats.total) - model_ms,
        stats.early_exit,
        out.result.detected_classes,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep it short then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let data = testdata();
    let Some(library) = ort_library() else {
        println!("detector bench skipped: no ONNX Runtime (run models/fetch-onnxruntime.sh or set ORT_DYLIB_PATH)");
        return;
    };
    if !data.is_dir() {
        println!("detector bench skipped: no test data at {} (set HOMESEC_TESTDATA)", data.display());
        return;
    }
    if quick {
        println!("detector bench: run with `cargo bench --bench detector` for figures");
        return;
    }
    let vtest = data.join("footage/vtest_h264.mp4");
    let scene = data.join("footage/scene_empty_people_empty.mp4");
    let frame = first_frame_after(&vtest, 10.0);
    println!(
        "YOLOX-Nano on one {}x{} frame (vtest at {:.1} s), all 80 classes, 1 intra-op thread, mean of {ITERATIONS}:",
        frame.width, frame.height, frame.ts_s
    );
    for model in ["yolox_nano_416.onnx", "yolox_nano_640.onnx"] {
        bench_model(&data.join("models").join(model), &library, &frame);
    }

    let decode = Instant::now();
    let frames = media::for_each_frame(&scene, &mut |_| true).expect("decode");
    let decode = decode.elapsed();
    let info = media::probe(&scene).expect("probe");
    println!(
        "\nscene_empty_people_empty.mp4 ({:.1} s, {} frames {}x{}): decode only {:.1} ms ({:.2} ms/frame)",
        info.duration_s,
        frames,
        info.width,
        info.height,
        ms(decode),
        ms(decode) / f64::from(frames.max(1)),
    );
    let m416 = data.join("models/yolox_nano_416.onnx");
    bench_clip(&m416, &library, &scene, &["person"], "filter 416, default (person)");
    // A class the clip never shows: no early exit, every sampled frame (max_frames 40) runs.
    bench_clip(&m416, &library, &scene, &["toothbrush"], "filter 416, no early exit (40 fr)");
}
