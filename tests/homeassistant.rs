//! The box as Home Assistant sees it, against a real Mosquitto: device-based
//! discovery checked by Home Assistant's own schemas (`tests/ha_schema.py` in a
//! venv with `homeassistant` from PyPI, which `.ci/run` installs), the
//! migration from the per-entity topics of earlier versions, and the cameras'
//! switches toggled over MQTT, taking effect and surviving a restart.

mod common;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::config::ConfigBuilder;
use common::peers::{Broker, Daemon, Subscriber, wait_for};
use homesec::controls::Controls;
use homesec::domain::CameraName;
use homesec::filter::service::InferenceMeter;
use homesec::homeassistant::{CameraConnectivity, Device, DeviceFeeds, HomeAssistantConfig};
use homesec::retention::DiskStatus;
use homesec::update::{InstallState, InstallStatus, SystemStatus, UpdateLink};
use serde_json::{Value, json};

const DEVICE: &str = "habox";

/// The venv's Python with `homeassistant` installed: `HOMESEC_HA_PYTHON`, else
/// the venv `.ci/run` installs it into.
fn ha_python() -> PathBuf {
    let path = std::env::var_os("HOMESEC_HA_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/homesec/venv-ha/bin/python")
    });
    let ok = Command::new(&path).args(["-c", "import homeassistant.components.mqtt"]).output();
    assert!(
        ok.is_ok_and(|o| o.status.success()),
        "Home Assistant's Python not found at {}: `.ci/run` installs it (homeassistant==2024.3.3 into \
         $HOME/.cache/homesec/venv-ha), or set HOMESEC_HA_PYTHON",
        path.display()
    );
    path
}

/// Runs `(topic, payload)` pairs through `tests/ha_schema.py`; its findings on failure.
fn schema_check(messages: &[(String, String)]) -> Result<Value, String> {
    let script = common::repo_root().join("tests/ha_schema.py");
    let input: Vec<Value> = messages.iter().map(|(t, p)| json!({ "topic": t, "payload": p })).collect();
    let mut child = Command::new(ha_python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ha_schema.py");
    child.stdin.take().unwrap().write_all(Value::from(input).to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).map_err(|e| format!("{e}: {stdout}"))
}

/// The per-entity discovery topics the version before device-based discovery
/// published for box `habox` with camera `door` (its `object_id` scheme).
fn old_topics() -> Vec<String> {
    let mut t: Vec<String> = [
        "binary_sensor/homesec_habox/connectivity",
        "binary_sensor/homesec_habox/disk_budget",
        "update/homesec_habox/firmware",
        "event/homesec_habox/door_alert",
        "sensor/homesec_habox/door_risk_level",
        "sensor/homesec_habox/door_last_summary",
        "binary_sensor/homesec_habox/door_person",
        "binary_sensor/homesec_habox/door_motion",
        "camera/homesec_habox/door_snapshot",
        "binary_sensor/homesec_habox/door_connectivity",
    ]
    .iter()
    .map(|s| format!("homeassistant/{s}/config"))
    .collect();
    t.sort();
    t
}

fn config(dir: &std::path::Path, broker: u16) -> String {
    ConfigBuilder::new(DEVICE, dir)
        .folder_camera("door")
        .filter(&["classes: [person, car]", "sample_fps: 1"])
        .policy("backend: default\nconfig:\n  notify_on_classes: [person]")
        .mqtt(broker)
        .build()
}

/// Publishes a retained message and waits for the broker's acknowledgement.
fn publish(port: u16, topic: &str, payload: &[u8], retain: bool) {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let opts = MqttOptions::new(format!("test-pub-{}", fastrand::u64(..)), "127.0.0.1", port);
    let (client, mut conn) = Client::new(opts, 10);
    client.publish(topic, QoS::AtLeastOnce, retain, payload.to_vec()).unwrap();
    for ev in conn.iter() {
        match ev {
            Ok(Event::Incoming(Packet::PubAck(_))) => break,
            Ok(_) => {}
            Err(e) => panic!("publish to {topic}: {e}"),
        }
    }
    let _ = client.disconnect();
}

/// What the broker keeps retained under `filter` now: (topic, payload).
fn retained(port: u16, filter: &str) -> Vec<(String, String)> {
    let late = Subscriber::connect(port, &[filter]);
    std::thread::sleep(Duration::from_millis(500));
    let m = late.messages.lock().unwrap().clone();
    m.into_iter().filter(|(_, _, r)| *r).map(|(t, p, _)| (t, String::from_utf8_lossy(&p).into_owned())).collect()
}

#[test]
fn the_box_migrates_from_per_entity_topics_to_device_configs_that_home_assistant_accepts() {
    let broker = Broker::start();
    for topic in old_topics() {
        publish(broker.port, &topic, br#"{"name":"old","unique_id":"x","state_topic":"a/b"}"#, true);
    }
    // The previous run's device config of the camera had an entity this box no longer has.
    let door_topic = "homeassistant/device/homesec_habox_door/config";
    let stale = json!({"dev": {"ids": ["homesec_habox_door"]}, "o": {"name": "HomeSec"}, "cmps": {
        "connectivity": {"p": "binary_sensor", "unique_id": "homesec_habox_door_connectivity", "state_topic": "a/b"}}});
    publish(broker.port, door_topic, stale.to_string().as_bytes(), true);
    assert_eq!(retained(broker.port, "homeassistant/#").len(), old_topics().len() + 1, "the old configs are there");
    let tmp = tempfile::tempdir().unwrap();
    let _daemon = Daemon::start(tmp.path(), &config(tmp.path(), broker.port), &[]);

    let box_topic = "homeassistant/device/homesec_habox/config";
    let removed = json!({"p": "binary_sensor"});
    let configs = wait_for("the device configs, and only them", Duration::from_secs(20), || {
        let r = retained(broker.port, "homeassistant/#");
        let topics: Vec<&str> = r.iter().map(|(t, _)| t.as_str()).collect();
        let door = r.iter().find(|(t, _)| t == door_topic).and_then(|(_, p)| serde_json::from_str::<Value>(p).ok())?;
        // The gone entity is removed as Home Assistant asks: `{"p": …}` alone.
        let gone = door["cmps"]["connectivity"] == removed;
        (topics.contains(&box_topic) && gone && r.len() == 2).then_some(r)
    });
    let door: Value = serde_json::from_str(&configs.iter().find(|(t, _)| t == door_topic).unwrap().1).unwrap();
    assert_eq!(door["dev"]["via_device"], "homesec_habox");
    assert_eq!(door["cmps"]["risk_level"]["default_entity_id"], "sensor.homesec_habox_door_risk_level");
    assert_eq!(door["cmps"]["snapshot"]["p"], "image");
    assert_eq!(door["cmps"]["alert"]["event_types"], json!(["detected", "analyzed", "final"]));
    for key in ["detection", "alerts", "min_risk_level"] {
        assert!(door["cmps"][key]["command_topic"].is_string(), "{key}: {door}");
    }
    assert!(door.to_string().find("object_id").is_none(), "no deprecated object_id");
    let boxed: Value = serde_json::from_str(&configs.iter().find(|(t, _)| t == box_topic).unwrap().1).unwrap();
    assert_eq!(boxed["cmps"]["disk_used"]["device_class"], "data_size");
    assert_eq!(boxed["cmps"]["inference_time"]["unit_of_measurement"], "ms");
    assert_eq!(boxed["o"]["name"], "HomeSec");

    let checked = schema_check(&configs).unwrap_or_else(|findings| panic!("Home Assistant rejects:\n{findings}"));
    assert_eq!(checked["devices"], 2, "{checked}");
    assert_eq!(checked["removed"], 1, "{checked}");
    assert_eq!(checked["components"], 5 + 9, "the box: connectivity, disk x3, inference; the camera: 9: {checked}");
}

#[test]
fn every_entity_the_device_can_announce_passes_home_assistants_schemas() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let cameras = [CameraName::from("door"), CameraName::from("yard")];
    let status = SystemStatus {
        version: "0.1.0".into(),
        image_version: Some("2026.12.01".into()),
        slot: Some("A".into()),
        slot_confirmed: true,
        latest_version: Some("2026.12.24".into()),
        release_notes: Some("Fixes.".into()),
        latest_url: None,
        update: InstallStatus { state: InstallState::Installing, progress: 40, error: None },
    };
    let (_status_tx, status) = tokio::sync::watch::channel(status);
    let (install_latest, _rx) = tokio::sync::mpsc::unbounded_channel();
    let (_disk_tx, disk) = tokio::sync::watch::channel(DiskStatus::default());
    let (_link_tx, connected) = tokio::sync::watch::channel(true);
    let inference = InferenceMeter::default();
    inference.record(Duration::from_millis(31));
    let feeds = DeviceFeeds {
        firmware: Some(UpdateLink { status, install_latest }),
        cameras: vec![CameraConnectivity { camera: "door".into(), connected }],
        disk: Some(disk),
        controls: Some(Controls::in_memory(&cameras)),
        inference: Some(inference.clone()),
    };
    let cfg =
        HomeAssistantConfig { support_url: Some("https://help.example.net/homesec".into()), ..Default::default() };
    let device = Device::new(&cfg, DEVICE, &cameras, feeds);
    let messages: Vec<(String, String)> = device
        .announcements()
        .into_iter()
        .filter(|m| m.topic.starts_with("homeassistant/") || m.topic.ends_with("/update/state"))
        .map(|m| (m.topic, m.payload))
        .collect();
    let state = messages.iter().find(|(t, _)| t.ends_with("/update/state")).expect("update state");
    assert!(state.1.contains("\"update_percentage\":40"), "{}", state.1);
    let checked = schema_check(&messages).unwrap_or_else(|findings| panic!("Home Assistant rejects:\n{findings}"));
    assert_eq!(checked["devices"], 3, "{checked}");
    assert_eq!(checked["components"], 6 + 2 * 9 + 1, "the box's 6, each camera's 9, one connectivity: {checked}");
    assert_eq!(checked["states"], 1, "{checked}");
    assert_eq!(checked["cleared"].as_u64(), Some(3 + 7 * 2), "every old per-entity topic: {checked}");

    // The check can fail: a platform Home Assistant does not have is reported.
    let mut broken = messages.clone();
    let (_, door) = broken.iter_mut().find(|(t, _)| t.ends_with("homesec_habox_door/config")).unwrap();
    *door = door.replace("\"p\":\"select\"", "\"p\":\"selekt\"");
    assert!(schema_check(&broken).is_err_and(|f| f.contains("selekt")), "the check can fail");
}

#[test]
fn switches_set_over_mqtt_take_effect_and_survive_a_restart() {
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(broker.port, &["homecam/#"]);
    let mut daemon = Daemon::start(tmp.path(), &config(tmp.path(), broker.port), &[]);
    let state = |leaf: &str| {
        let topic = format!("homecam/habox/door/{leaf}");
        let m = sub.messages.lock().unwrap().clone();
        m.into_iter().rev().find(|(t, _, _)| *t == topic).map(|(_, p, _)| String::from_utf8_lossy(&p).into_owned())
    };
    wait_for("the switches' states", Duration::from_secs(20), || (state("alerts")? == "ON").then_some(()));
    assert_eq!(state("detection").as_deref(), Some("ON"));
    assert_eq!(state("min_risk_level").as_deref(), Some("policy"));

    // Alerts off: the box answers with the new state; a person clip is processed, not notified.
    publish(broker.port, "homecam/habox/door/alerts/set", b"OFF", false);
    wait_for("the Alerts switch off", Duration::from_secs(10), || (state("alerts")? == "OFF").then_some(()));
    daemon.drop_clip(&common::footage("scene_empty_people_empty.mp4"), "door_20261203100000.mp4");
    let clip = wait_for("the clip done", Duration::from_secs(120), || {
        daemon.clips().into_iter().find(|c| c["status"] == "done")
    });
    let reason = clip["decision"]["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.starts_with("alerts off for this camera (detected=person"), "{clip}");
    assert!(sub.json_on("homecam/alerts/door").is_empty(), "nothing notified");

    // A restart keeps it: the state comes from the store, not from the broker's copy.
    daemon.stop();
    publish(broker.port, "homecam/habox/door/alerts", b"", true);
    assert!(retained(broker.port, "homecam/habox/door/alerts").is_empty());
    daemon.restart();
    let again = wait_for("the Alerts state re-published", Duration::from_secs(20), || {
        retained(broker.port, "homecam/habox/door/alerts").pop()
    });
    assert_eq!(again.1, "OFF");

    // On again: the next clip alerts.
    publish(broker.port, "homecam/habox/door/alerts/set", b"ON", false);
    wait_for("the Alerts switch on", Duration::from_secs(10), || (state("alerts")? == "ON").then_some(()));
    daemon.drop_clip(&common::footage("scene_empty_people_empty.mp4"), "door_20261203100500.mp4");
    let alert = wait_for("the alert", Duration::from_secs(120), || sub.json_on("homecam/alerts/door").pop());
    assert_eq!(alert["clip_id"], "door_20261203100500");

    // Detection off: the clip is kept, nothing is detected, nothing alerts.
    publish(broker.port, "homecam/habox/door/detection/set", b"OFF", false);
    wait_for("the Detection switch off", Duration::from_secs(10), || (state("detection")? == "OFF").then_some(()));
    daemon.drop_clip(&common::footage("scene_empty_people_empty.mp4"), "door_20261203101000.mp4");
    let clip = wait_for("the third clip done", Duration::from_secs(120), || {
        daemon.clips().into_iter().find(|c| c["clip"]["clip_id"] == "door_20261203101000" && c["status"] == "done")
    });
    assert_eq!(clip["filter_result"]["detected_classes"], json!([]), "{clip}");
    assert_eq!(clip["filter_result"]["model"], "none (detection off)", "{clip}");
    assert_eq!(clip["decision"]["notify"], false, "{clip}");
    assert_eq!(sub.json_on("homecam/alerts/door").len(), 1, "still only the one alert");
}
