//! `/metrics` from a running daemon, read by a Prometheus text-format parser:
//! a real clip from a folder camera goes through the real detector, a local
//! OpenAI-compatible server and Mosquitto, and what a user graphs moves.

mod common;

use std::time::Duration;

use common::config::ConfigBuilder;
use common::peers::{Broker, Daemon, FakeVlm, Subscriber, wait_for};
use serde_json::json;

#[test]
fn a_clip_through_filter_vlm_and_notify_moves_the_metrics_a_user_graphs() {
    let broker = Broker::start();
    let answer = json!({
        "risk_level": "high",
        "activity_type": "suspicious",
        "summary": "People cross the yard.",
        "entities_timeline": [],
        "requires_review": false
    });
    let vlm = FakeVlm::start(answer, Duration::ZERO);
    let sub = Subscriber::connect(broker.port, &["homecam/alerts/#"]);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = ConfigBuilder::new("metrics", tmp.path())
        .folder_camera("porch")
        .filter(&["classes: [person, car]", "sample_fps: 1"])
        .vlm(&format!(
            "backend: openai\nrun_mode: trigger_only\ntrigger_classes: [person]\nconfig:\n  \
             base_url: http://127.0.0.1:{}/v1\n  model: test-vlm\n  max_frames: 2",
            vlm.port
        ))
        .mqtt(broker.port)
        .build();
    let daemon = Daemon::start(tmp.path(), &cfg, &[]);

    // Before any clip: the counters are there at zero, the camera's series too.
    let (content_type, before) = daemon.metrics();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    assert_eq!(before.get("homesec_clips_received_total", &[]), 0.0);
    assert_eq!(before.get("homesec_camera_frames_received_total", &[("camera", "porch")]), 0.0);
    assert!(before.get("process_resident_memory_bytes", &[]) > 1e6, "the daemon's resident memory");

    daemon.drop_clip(&common::footage("scene_empty_people_empty.mp4"), "porch_20261202120000.mp4");
    wait_for("the alert", Duration::from_secs(120), || sub.json_on("homecam/alerts/porch").into_iter().next());
    wait_for("the clip done", Duration::from_secs(20), || {
        (daemon.status_of("porch_20261202120000").as_deref() == Some("done")).then_some(())
    });

    // Retention publishes the disk figures after the clip lands.
    let m = wait_for("disk bytes in /metrics", Duration::from_secs(20), || {
        let (_, m) = daemon.metrics();
        (m.value("homesec_disk_used_bytes", &[]).unwrap_or(0.0) > 0.0).then_some(m)
    });
    assert!(m.get("homesec_disk_free_bytes", &[]) > 0.0);
    assert_eq!(m.get("homesec_clips_received_total", &[]), 1.0);
    assert_eq!(m.get("homesec_clips_completed_total", &[]), 1.0);
    assert_eq!(m.get("homesec_clips_failed_total", &[]), 0.0);
    assert_eq!(m.get("homesec_alerts_delivered_total", &[]), 1.0);
    assert_eq!(m.get("homesec_notifications_total", &[("notifier", "mqtt"), ("state", "delivered")]), 1.0);
    assert_eq!(m.get("homesec_clips_in_flight", &[]), 0.0);
    assert_eq!(m.get("homesec_outbox_depth", &[("outbox", "notifications")]), 0.0);
    assert_eq!(m.get("homesec_outbox_depth", &[("outbox", "logs")]), 0.0);

    // The detector ran on the clip's sampled frames (about one a second of 30 s).
    let inferences = m.get("homesec_detector_inference_seconds_count", &[]);
    assert!(inferences >= 5.0, "{inferences} inferences");
    let mean = m.get("homesec_detector_inference_seconds_sum", &[]) / inferences;
    assert!(mean > 0.0 && mean < 5.0, "mean inference {mean} s");

    // Every stage was timed once; the alert followed the clip's end.
    for stage in ["upload", "filter", "vlm", "notify"] {
        let n = m.get("homesec_stage_duration_seconds_count", &[("stage", stage)]);
        assert_eq!(n, 1.0, "{stage} observed {n} times");
    }
    let filter_s = m.get("homesec_stage_duration_seconds_sum", &[("stage", "filter")]);
    assert!(filter_s > 0.0, "the filter took {filter_s} s");
    assert_eq!(m.get("homesec_alert_latency_seconds_count", &[]), 1.0);

    // The VLM's usage, as the endpoint reported it.
    assert_eq!(m.get("homesec_vlm_prompt_tokens_total", &[("camera", "porch")]), 1234.0);
    assert_eq!(m.get("homesec_vlm_completion_tokens_total", &[("camera", "porch")]), 56.0);

    // A folder camera has no live stream: its frame counters stay at zero.
    assert_eq!(m.get("homesec_camera_frames_received_total", &[("camera", "porch")]), 0.0);
    assert!(m.get("process_cpu_seconds_total", &[]) > 0.0, "the detector burnt CPU");
}
