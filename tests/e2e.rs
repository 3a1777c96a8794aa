//! End to end with real parts: the daemon binary, a real Mosquitto broker, the
//! real YOLOX model on real footage, a local OpenAI-compatible server.

mod common;

use std::time::Duration;

use common::config::ConfigBuilder;
use common::peers::{Broker, Daemon, FakeVlm, Subscriber, wait_for};
use serde_json::{Value, json};

const VLM_KEY: &str = "sk-e2e-test-key";

fn vlm_answer() -> Value {
    json!({
        "risk_level": "high",
        "activity_type": "suspicious",
        "summary": "Several people walk across the yard at night.",
        "entities_timeline": [{"ts_s": 8.0, "entity": "person", "description": "enters from the left"}],
        "requires_review": false
    })
}

fn config(dir: &std::path::Path, broker: u16, vlm: u16) -> String {
    ConfigBuilder::new("e2e", dir)
        .folder_camera("porch")
        .storage("backend: local\nconfig:\n  view_url_prefix: http://nas.local/clips")
        .filter(&["classes: [person, car]", "sample_fps: 1"])
        .vlm(&format!(
            "backend: openai\nrun_mode: trigger_only\ntrigger_classes: [person]\nconfig:\n  \
             base_url: http://127.0.0.1:{vlm}/v1\n  model: test-vlm\n  api_key_env: E2E_VLM_KEY\n  max_frames: 3"
        ))
        .policy("backend: default\nconfig:\n  min_risk_level: medium")
        .mqtt(broker)
        .section("retry:\n  backoff_s: 0.2\n  max_backoff_s: 1")
        .build()
}

fn start(dir: &std::path::Path, broker: &Broker, vlm: &FakeVlm) -> Daemon {
    Daemon::start(dir, &config(dir, broker.port, vlm.port), &[("E2E_VLM_KEY", VLM_KEY)])
}

#[test]
fn a_clip_in_the_folder_becomes_an_mqtt_alert_with_home_assistant_discovery() {
    let broker = Broker::start();
    let vlm = FakeVlm::start(vlm_answer(), Duration::ZERO);
    let sub = Subscriber::connect(broker.port, &["homecam/#"]);
    let tmp = tempfile::tempdir().unwrap();
    let daemon = start(tmp.path(), &broker, &vlm);

    // Named the way cameras name clips: the name is the clip id.
    daemon.drop_clip(&common::footage("scene_empty_people_empty.mp4"), "porch_20261202120000.mp4");
    let alert = wait_for("the alert on homecam/alerts/porch", Duration::from_secs(120), || {
        sub.json_on("homecam/alerts/porch").into_iter().next()
    });

    let clip_id = alert["clip_id"].as_str().unwrap().to_owned();
    assert_eq!(clip_id, "porch_20261202120000", "{alert}");
    assert_eq!(alert["camera_name"], "porch");
    assert_eq!(alert["risk_level"], "high");
    assert_eq!(alert["activity_type"], "suspicious");
    assert_eq!(alert["notify_reason"], "risk_level=high");
    assert_eq!(alert["summary"], "Several people walk across the yard at night.");
    assert_eq!(alert["dedupe_key"], clip_id.as_str());
    assert_eq!(alert["upload_failed"], false);
    assert_eq!(alert["view_url"], format!("http://nas.local/clips/porch/{clip_id}.mp4"));
    let uri = alert["storage_uri"].as_str().unwrap();
    assert!(uri.starts_with("file://") && std::path::Path::new(&uri[7..]).is_file(), "{uri}");
    assert!(alert["ts"].as_str().is_some_and(|t| t.contains('T')));
    assert!(alert["detected_classes"].as_array().unwrap().iter().any(|c| c == "person"));

    // The VLM got the key, the model, frames and the structured-answer schema.
    let reqs = vlm.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].authorization.as_deref(), Some(format!("Bearer {VLM_KEY}").as_str()));
    assert_eq!(reqs[0].body["model"], "test-vlm");
    assert_eq!(reqs[0].body["response_format"]["type"], "json_schema");
    let images = reqs[0].body.to_string().matches("data:image/jpeg;base64,").count();
    assert!((1..=3).contains(&images), "{images} images");

    // Home Assistant discovery configs are retained: a late subscriber gets them.
    let late = Subscriber::connect(broker.port, &["homeassistant/#"]);
    let configs = wait_for("retained discovery configs", Duration::from_secs(10), || {
        let m = late.messages.lock().unwrap().clone();
        let retained: Vec<_> = m.into_iter().filter(|(t, _, r)| *r && t.ends_with("/config")).collect();
        (retained.len() >= 2).then_some(retained)
    });
    assert!(
        configs.iter().any(|(t, _, _)| t == "homeassistant/device/homesec_e2e_porch/config"),
        "a device per camera"
    );

    // The record is done, the clip listed through the API, the box healthy.
    wait_for("status done", Duration::from_secs(10), || {
        (daemon.status_of(&clip_id).as_deref() == Some("done")).then_some(())
    });
    let (code, health) = daemon.get("/health").unwrap();
    assert_eq!(code, 200, "{health}");
    assert_eq!(health["status"], "healthy", "{health}");
    // The clip's filter result: the people are the reason to alert; the parked cars were
    // seen, standing still.
    let (code, body) = daemon.get(&format!("/api/v1/clips/{clip_id}")).unwrap();
    assert_eq!(code, 200, "{body}");
    let f = &body["clip"]["filter_result"];
    assert_eq!(f["alert_classes"], serde_json::json!(["person"]), "{f}");
    let detections = f["detections"].as_array().unwrap();
    assert!(detections.iter().any(|d| d["class"] == "car" && d["stationary"] == true), "{f}");
    assert!(detections.iter().any(|d| d["class"] == "person" && d["stationary"] == false), "{f}");

    // `clips list` works while the daemon holds the store (through the API).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_homesec"))
        .args(["clips", "list", "--config"])
        .arg(&daemon.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&clip_id) && text.contains("done") && text.contains("ALERT"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One row per clip, in columns.
    let row = format!("{clip_id:<32} {:<14} {:<12}", "porch", "done");
    assert!(text.lines().any(|l| l.starts_with(&row)), "no row `{row}` in:\n{text}");
}

#[test]
fn sigkill_mid_pipeline_loses_no_clip() {
    let broker = Broker::start();
    // A slow VLM keeps clips in flight when the daemon is killed.
    let vlm = FakeVlm::start(vlm_answer(), Duration::from_secs(3));
    let sub = Subscriber::connect(broker.port, &["homecam/alerts/#"]);
    let tmp = tempfile::tempdir().unwrap();
    let mut daemon = start(tmp.path(), &broker, &vlm);

    for i in 0..3 {
        daemon.drop_clip(&common::footage("scene_empty_people_empty.mp4"), &format!("clip{i}.mp4"));
    }
    wait_for("all three clips recorded and one at the VLM", Duration::from_secs(120), || {
        (daemon.clips().len() == 3 && !vlm.requests.lock().unwrap().is_empty()).then_some(())
    });
    let before: Vec<String> = daemon.clips().iter().map(|c| c["status"].as_str().unwrap_or("").to_owned()).collect();
    assert!(before.iter().any(|s| s != "done"), "some clip was still in flight: {before:?}");
    daemon.kill9();

    daemon.restart();
    let done = wait_for("every clip done after restart", Duration::from_secs(180), || {
        let clips = daemon.clips();
        (clips.len() == 3 && clips.iter().all(|c| c["status"] == "done")).then_some(clips)
    });
    let mut ids: Vec<String> = done.iter().map(|c| c["clip"]["clip_id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    // One alert (the cooldown counts the clips under one dedupe_key), sent for every clip.
    wait_for("an alert for every clip", Duration::from_secs(30), || {
        let alerted: std::collections::HashSet<String> = sub
            .json_on_prefix("homecam/alerts/")
            .iter()
            .filter_map(|a| a["clip_id"].as_str().map(str::to_owned))
            .collect();
        ids.iter().all(|id| alerted.contains(id)).then_some(())
    });
    assert!(daemon.log_text().contains("resuming unfinished clips"), "{}", daemon.log_text());
}

#[test]
fn an_alert_due_while_the_broker_is_down_arrives_when_it_returns() {
    let mut broker = Broker::start();
    let vlm = FakeVlm::start(vlm_answer(), Duration::ZERO);
    let tmp = tempfile::tempdir().unwrap();
    let daemon = start(tmp.path(), &broker, &vlm);

    broker.stop();
    daemon.drop_clip(&common::footage("vtest_h264.mp4"), "walkway.mp4");
    wait_for("the alert to wait in the outbox", Duration::from_secs(120), || {
        let c = daemon.clips().into_iter().next()?;
        (c["decision"]["notify"] == true
            && c["notify"]["status"] == "running"
            && c["notify"]["attempts"].as_u64()? >= 1)
            .then_some(())
    });
    let (code, health) = daemon.get("/health").unwrap();
    assert_eq!((code, health["status"].as_str()), (200, Some("degraded")), "{health}");

    broker.restart();
    let sub = Subscriber::connect(broker.port, &["homecam/alerts/#"]);
    let alert = wait_for("the alert after the broker returned", Duration::from_secs(60), || {
        sub.json_on("homecam/alerts/porch").into_iter().next()
    });
    assert_eq!(alert["camera_name"], "porch");
    wait_for("status done", Duration::from_secs(10), || (daemon.clips().first()?["status"] == "done").then_some(()));
}

#[test]
fn unreadable_files_are_quarantined_and_the_daemon_keeps_working() {
    let broker = Broker::start();
    let vlm = FakeVlm::start(vlm_answer(), Duration::ZERO);
    let sub = Subscriber::connect(broker.port, &["homecam/alerts/#"]);
    let tmp = tempfile::tempdir().unwrap();
    let daemon = start(tmp.path(), &broker, &vlm);

    let junk = tmp.path().join("junk.mp4");
    std::fs::write(&junk, "this is a text file, not a video\n").unwrap();
    daemon.drop_clip(&junk, "notes.mp4");
    let bytes = std::fs::read(common::footage("scene_empty_people_empty.mp4")).unwrap();
    let cut = tmp.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    daemon.drop_clip(&cut, "truncated.mp4");

    let quarantined = wait_for("two quarantined clips", Duration::from_secs(60), || {
        let q: Vec<_> = daemon.clips().into_iter().filter(|c| c["status"] == "quarantined").collect();
        (q.len() == 2).then_some(q)
    });
    for q in &quarantined {
        let moved = q["quarantine"]["moved_to"].as_str().unwrap();
        assert!(std::path::Path::new(moved).is_file(), "kept at {moved}");
        assert!(!q["quarantine"]["reason"].as_str().unwrap().is_empty());
    }
    assert!(!daemon.inbox().join("notes.mp4").exists());
    let log = daemon.log_text();
    assert!(log.contains("unreadable clip quarantined") && log.contains("notes.mp4"), "{log}");

    daemon.drop_clip(&common::footage("scene_empty_people_empty.mp4"), "good.mp4");
    wait_for("an alert for the good clip", Duration::from_secs(120), || {
        sub.json_on("homecam/alerts/porch").into_iter().next()
    });
}

#[test]
fn a_presence_over_several_clips_is_one_alert_whose_count_grows() {
    let broker = Broker::start();
    let vlm = FakeVlm::start(vlm_answer(), Duration::ZERO);
    let sub = Subscriber::connect(broker.port, &["homecam/alerts/#"]);
    let tmp = tempfile::tempdir().unwrap();
    let daemon = start(tmp.path(), &broker, &vlm);

    // People walking through, recorded as three clips in a row (the default cooldown is 5 minutes).
    let scene = common::footage("scene_empty_people_empty.mp4");
    let mut alerts = Vec::new();
    for (i, name) in ["porch_1.mp4", "porch_2.mp4", "porch_3.mp4"].iter().enumerate() {
        daemon.drop_clip(&scene, name);
        alerts = wait_for(&format!("alert {}", i + 1), Duration::from_secs(120), || {
            let a = sub.json_on("homecam/alerts/porch");
            (a.len() > i).then_some(a)
        });
    }
    let seen: Vec<(&str, u64, &str)> = alerts
        .iter()
        .map(|a| {
            (a["dedupe_key"].as_str().unwrap(), a["occurrences"].as_u64().unwrap(), a["clip_id"].as_str().unwrap())
        })
        .collect();
    assert_eq!(seen, [("porch_1", 1, "porch_1"), ("porch_1", 2, "porch_2"), ("porch_1", 3, "porch_3")], "{alerts:?}");
    assert!(alerts[0]["occurrences_text"].is_null());
    assert!(alerts[2]["occurrences_text"].as_str().is_some_and(|t| t.starts_with("3 clips since ")), "{alerts:?}");

    // The clip's record says which alert it updated.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_homesec"))
        .args(["clips", "show", "porch_3", "--config"])
        .arg(&daemon.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("risk_level=high (update of alert porch_1, 3 clips)"), "{text}");
}
