//! Zones and stationary objects with the real YOLOX-Nano model on the real
//! footage: the scene's post (scored "person") and parked car never alert, the
//! people do. Needs ONNX Runtime (`models/fetch-onnxruntime.sh`), ffmpeg and
//! `../shared/testdata`.

mod common;

use std::path::{Path, PathBuf};

use homesec::domain::{Detection, FilterResult};
use homesec::filter::ObjectFilter;
use homesec::filter::tracking::{CameraTracking, TrackContext, Zone, ZoneConfig, Zones};
use homesec::filter::yolo::{self, YoloConfig};
use homesec::plugin::PluginContext;
use homesec::policy::AlertPolicy;
use homesec::policy::default::{DefaultPolicy, DefaultPolicyConfig};
use std::sync::Arc;

fn filter() -> yolo::YoloFilter {
    let cfg: YoloConfig = serde_json::from_value(serde_json::json!({
        "model_path": common::model("yolox_nano_416.onnx"),
        "ort_library": common::ort_library(),
        "classes": ["person", "car"],
        "min_confidence": 0.45,
    }))
    .unwrap();
    let ctx = PluginContext {
        layout: homesec::plugin::DataLayout::new(std::env::temp_dir()),
        config_dir: common::testdata(),
        device_id: "test".into(),
        cameras: Vec::new(),
        client_tag: None,
    };
    yolo::build(cfg, &ctx).expect("yolo filter")
}

/// `seconds` of `footage` from `start`, re-encoded into `dir`.
fn cut(dir: &Path, footage: &str, start: f64, seconds: f64, extra: &[&str]) -> PathBuf {
    let out = dir.join(format!("{footage}_{start}_{seconds}_{}.mp4", extra.len()));
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-ss", &start.to_string(), "-t", &seconds.to_string(), "-i"])
        .arg(common::footage(footage))
        .args(extra)
        .args(["-c:v", "libx264", "-preset", "veryfast", "-g", "20", "-pix_fmt", "yuv420p", "-an"])
        .arg(&out)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg cut {footage}");
    out
}

async fn run(f: &yolo::YoloFilter, clip: &Path, camera: &Arc<CameraTracking>, at_ms: i64) -> FilterResult {
    let ctx = TrackContext { camera: camera.clone(), now_ms: at_ms };
    let out = f.detect(clip, &["person".to_string()], &ctx).await.expect("filtered");
    let r = out.result;
    eprintln!(
        "{}: detected {:?} alert {:?} frames {} detections {:?}",
        clip.display(),
        r.detected_classes,
        r.alert_classes,
        r.sampled_frames,
        r.detections
            .iter()
            .map(|d| (&d.class, d.confidence, d.bbox.map(|v| v as i32), d.stationary))
            .collect::<Vec<_>>()
    );
    r
}

fn camera(zones: Vec<Zone>) -> Arc<CameraTracking> {
    CameraTracking::new("walkway".into(), Zones::new(zones))
}

/// A required rectangle zone for persons.
fn zone(name: &str, [x0, y0, x1, y1]: [f32; 4]) -> Zone {
    Zone::new(&ZoneConfig {
        name: name.into(),
        points: vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1]],
        classes: vec!["person".into()],
        required: true,
    })
}

/// The post: pixel box about [31, 111, 48, 141].
fn is_the_post(d: &Detection) -> bool {
    d.class == "person" && (d.bbox[0] - 31.0).abs() < 8.0 && (d.bbox[3] - 141.0).abs() < 10.0
}

fn decide(r: &FilterResult) -> homesec::domain::AlertDecision {
    DefaultPolicy::new(DefaultPolicyConfig::default()).decide(&"walkway".into(), r, None)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_empty_scene_never_alerts_however_often_it_repeats_and_the_people_do() {
    let dir = tempfile::tempdir().unwrap();
    let f = filter();
    let cam = camera(vec![]);
    let empty = cut(dir.path(), "scene_empty_people_empty.mp4", 0.0, 7.0, &[]);
    for i in 0..3 {
        let r = run(&f, &empty, &cam, i * 60_000).await;
        // The post and the parked cars are seen, already the first time as stationary.
        let post = r.detections.iter().find(|d| is_the_post(d)).expect("the post is detected at 0.45");
        assert!(post.stationary, "clip {i}: {post:?}");
        assert!(r.detections.iter().any(|d| d.class == "car" && d.stationary), "clip {i}: {:?}", r.detections);
        assert!(r.detections.iter().all(|d| d.stationary), "clip {i}: {:?}", r.detections);
        assert!(r.alert_classes.is_empty(), "clip {i}");
        let d = decide(&r);
        assert!(!d.notify, "clip {i}: {d:?}");
        assert_eq!(d.reason, "nothing to alert: person stationary");
    }
    // The people alert, with the post still stationary among them.
    let people = [
        common::footage("scene_empty_people_empty.mp4"),
        common::footage("vtest_h264.mp4"),
        cut(dir.path(), "vtest_h264.mp4", 20.0, 8.0, &[]),
        cut(dir.path(), "vtest_h264.mp4", 60.0, 8.0, &[]),
    ];
    for clip in &people {
        let r = run(&f, clip, &cam, 300_000).await;
        assert_eq!(r.alert_classes, ["person"], "{}", clip.display());
        assert!(decide(&r).notify);
        assert!(r.detections.iter().filter(|d| is_the_post(d)).all(|d| d.stationary), "{:?}", r.detections);
        assert!(r.detections.iter().any(|d| d.class == "person" && !d.stationary && d.confidence > 0.7));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn people_frozen_still_are_no_reason_until_they_walk_on() {
    let dir = tempfile::tempdir().unwrap();
    let f = filter();
    let cam = camera(vec![]);
    // 4 s of one frame of the footage (the people stand still), then the footage from that frame on.
    let frozen =
        cut(dir.path(), "vtest_h264.mp4", 10.0, 4.0, &["-vf", "trim=end_frame=1,tpad=stop=40:stop_mode=clone"]);
    let r = run(&f, &frozen, &cam, 0).await;
    assert!(r.detected_classes.contains(&"person".to_string()));
    assert!(r.alert_classes.is_empty(), "nobody moves: {:?}", r.detections);
    let remembered = cam.memory().entries().len();
    assert!(remembered >= 3, "the standing people are remembered: {remembered}");

    let walk_on = dir.path().join("frozen_then_walking.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(&frozen)
        .arg("-i")
        .arg(cut(dir.path(), "vtest_h264.mp4", 10.0, 4.0, &[]))
        .args(["-filter_complex", "[0:v][1:v]concat=n=2:v=1[v]", "-map", "[v]", "-c:v", "libx264", "-g", "20"])
        .args(["-preset", "veryfast", "-pix_fmt", "yuv420p"])
        .arg(&walk_on)
        .status()
        .unwrap();
    assert!(status.success());
    let r = run(&f, &walk_on, &cam, 60_000).await;
    assert_eq!(r.alert_classes, ["person"], "they walk on: {:?}", r.detections);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zone_without_the_walkway_stops_the_people_alert_and_one_with_it_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let f = filter();
    let clip = cut(dir.path(), "vtest_h264.mp4", 20.0, 8.0, &[]);
    // The parked cars at the top right, where nobody walks.
    let r = run(&f, &clip, &camera(vec![zone("parking", [0.8, 0.0, 1.0, 0.2])]), 0).await;
    assert!(r.alert_classes.is_empty(), "{:?}", r.detections);
    assert!(r.detected_classes.contains(&"person".to_string()));
    let d = decide(&r);
    assert!(!d.notify);
    assert_eq!(d.reason, "nothing to alert: person outside the zones");
    // The walkway.
    let r = run(&f, &clip, &camera(vec![zone("walkway", [0.0, 0.3, 1.0, 1.0])]), 0).await;
    assert_eq!(r.alert_classes, ["person"]);
    assert!(r.detections.iter().any(|d| !d.stationary && d.zones == ["walkway"]), "{:?}", r.detections);
}
