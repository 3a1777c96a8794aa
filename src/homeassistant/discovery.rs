//! Topics and payloads of the Home Assistant device: pure functions of the
//! config, the box's `device_id`, the camera names and the alert, unit-tested
//! without a broker.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::domain::{Alert, CameraName};
use crate::plugin::Validator;
use crate::update::SystemStatus;

/// Seconds after which Home Assistant turns the person / motion sensors off again.
pub const OFF_DELAY_S: u64 = 60;

/// Payloads of the availability topic.
pub const ONLINE: &str = "online";
pub const OFFLINE: &str = "offline";

/// The `home_assistant` block of the MQTT notifier's config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeAssistantConfig {
    /// Publish discovery configs and per-camera state / event / snapshot topics.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Home Assistant's discovery prefix (its MQTT integration setting).
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
    /// Root of HomeSec's own topics (availability, per-camera state).
    #[serde(default = "default_base_topic")]
    pub base_topic: String,
}

fn default_enabled() -> bool {
    true
}
fn default_discovery_prefix() -> String {
    "homeassistant".into()
}
fn default_base_topic() -> String {
    "homecam".into()
}

impl Default for HomeAssistantConfig {
    fn default() -> Self {
        Self {
            enabled: default_enabled(),
            discovery_prefix: default_discovery_prefix(),
            base_topic: default_base_topic(),
        }
    }
}

impl HomeAssistantConfig {
    /// Checks the topic roots (reported relative to `v`, i.e. the `home_assistant` block).
    pub fn validate(&self, v: &mut Validator<'_>) {
        for (field, value) in [("discovery_prefix", &self.discovery_prefix), ("base_topic", &self.base_topic)] {
            if let Err(msg) = check_topic_root(value) {
                v.error(field, msg);
            }
        }
    }
}

/// A topic prefix must be non-empty, without wildcards and without a leading or trailing `/`.
fn check_topic_root(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if s.contains(['+', '#', '\0']) {
        return Err(format!("`{s}` must not contain the MQTT wildcards `+`/`#`"));
    }
    if s.starts_with('/') || s.ends_with('/') {
        return Err(format!("`{s}` must not start or end with `/`"));
    }
    Ok(())
}

/// A name made safe for a topic level and a Home Assistant id: ASCII letters, digits,
/// `_` and `-` are kept, everything else becomes `_`.
pub fn slug(s: &str) -> String {
    let out: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    if out.is_empty() { "_".into() } else { out }
}

/// The box's availability topic: the MQTT last will (`offline`) and `online` on connect.
pub fn availability_topic(base_topic: &str, device_id: &str) -> String {
    format!("{base_topic}/{}/availability", slug(device_id))
}

/// A camera's own topics: `{base_topic}/{device_id}/{camera}/…`, so that two
/// boxes with a camera of the same name never share one.
fn camera_topic(base_topic: &str, device_id: &str, camera: &CameraName, leaf: &str) -> String {
    format!("{base_topic}/{}/{}/{leaf}", slug(device_id), slug(camera.as_str()))
}

/// Retained JSON of the camera's last alert (sensors read it).
pub fn state_topic(base_topic: &str, device_id: &str, camera: &CameraName) -> String {
    camera_topic(base_topic, device_id, camera, "state")
}

/// Non-retained JSON per alert (the event entity and the person / motion sensors read it).
pub fn event_topic(base_topic: &str, device_id: &str, camera: &CameraName) -> String {
    camera_topic(base_topic, device_id, camera, "event")
}

/// Retained JPEG of the camera's last alert snapshot (the camera entity shows it).
pub fn snapshot_topic(base_topic: &str, device_id: &str, camera: &CameraName) -> String {
    camera_topic(base_topic, device_id, camera, "snapshot")
}

/// Retained [`ONLINE`] / [`OFFLINE`]: whether every stream of the camera delivers video.
pub fn connectivity_topic(base_topic: &str, device_id: &str, camera: &CameraName) -> String {
    camera_topic(base_topic, device_id, camera, "connectivity")
}

/// Empty retained messages that clear what earlier versions kept on the
/// camera's topics without the device (`{base_topic}/{camera}/…`).
pub fn legacy_clears(base_topic: &str, camera: &CameraName) -> Vec<DiscoveryMessage> {
    ["state", "snapshot", "connectivity"]
        .iter()
        .map(|leaf| DiscoveryMessage {
            topic: format!("{base_topic}/{}/{leaf}", slug(camera.as_str())),
            payload: String::new(),
        })
        .collect()
}

/// The camera connectivity sensor's state.
pub fn connectivity_payload(connected: bool) -> &'static str {
    if connected { ONLINE } else { OFFLINE }
}

/// Retained JSON of the box's disk budget ([`crate::retention::DiskStatus`]).
pub fn disk_topic(base_topic: &str, device_id: &str) -> String {
    format!("{base_topic}/{}/disk", slug(device_id))
}

/// The box's `Disk budget` problem sensor: on while the budget cannot be held
/// (nothing more may be deleted); the figures and the reason as attributes.
pub fn disk_discovery(cfg: &HomeAssistantConfig, device_id: &str) -> DiscoveryMessage {
    let node = box_identifier(device_id);
    let topic = disk_topic(&cfg.base_topic, device_id);
    let payload = entity(
        json!({
            "name": "Disk budget",
            "unique_id": format!("{node}_disk_budget"),
            "device_class": "problem",
            "entity_category": "diagnostic",
            "state_topic": topic,
            "value_template": "{{ 'ON' if value_json.stuck else 'OFF' }}",
            "json_attributes_topic": topic,
            "qos": 1,
        }),
        &availability_topic(&cfg.base_topic, device_id),
        &box_device(device_id),
    );
    DiscoveryMessage {
        topic: format!("{}/binary_sensor/{node}/disk_budget/config", cfg.discovery_prefix),
        payload: payload.to_string(),
    }
}

/// Retained JSON of the box's firmware (installed / latest version, progress).
pub fn update_state_topic(base_topic: &str, device_id: &str) -> String {
    format!("{base_topic}/{}/update/state", slug(device_id))
}

/// Home Assistant's install button publishes [`INSTALL`] here.
pub fn update_command_topic(base_topic: &str, device_id: &str) -> String {
    format!("{base_topic}/{}/update/install", slug(device_id))
}

/// The install button's payload.
pub const INSTALL: &str = "install";

/// Where Home Assistant announces `online` / `offline` (its birth / last will).
pub fn status_topic(discovery_prefix: &str) -> String {
    format!("{discovery_prefix}/status")
}

/// One retained discovery config.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveryMessage {
    pub topic: String,
    pub payload: String,
}

fn box_identifier(device_id: &str) -> String {
    format!("homesec_{}", slug(device_id))
}

fn camera_identifier(device_id: &str, camera: &CameraName) -> String {
    format!("homesec_{}_{}", slug(device_id), slug(camera.as_str()))
}

fn origin() -> Value {
    json!({ "name": "HomeSec", "sw_version": env!("CARGO_PKG_VERSION") })
}

fn box_device(device_id: &str) -> Value {
    json!({
        "identifiers": [box_identifier(device_id)],
        "name": format!("HomeSec {device_id}"),
        "manufacturer": "HomeSec",
        "model": "HomeSec daemon",
        "sw_version": env!("CARGO_PKG_VERSION"),
    })
}

fn camera_device(device_id: &str, camera: &CameraName) -> Value {
    json!({
        "identifiers": [camera_identifier(device_id, camera)],
        "name": camera.as_str(),
        "manufacturer": "HomeSec",
        "model": "Camera",
        "sw_version": env!("CARGO_PKG_VERSION"),
        "via_device": box_identifier(device_id),
    })
}

/// An entity's config: `v` with the box's availability, its device (the box or a camera) and the origin.
fn entity(mut v: Value, availability: &str, device: &Value) -> Value {
    if let Some(obj) = v.as_object_mut() {
        obj.insert("availability_topic".into(), json!(availability));
        obj.insert("payload_available".into(), json!(ONLINE));
        obj.insert("payload_not_available".into(), json!(OFFLINE));
        obj.insert("device".into(), device.clone());
        obj.insert("origin".into(), origin());
    }
    v
}

/// Every discovery config for this box and its cameras (retained).
pub fn discovery_messages(cfg: &HomeAssistantConfig, device_id: &str, cameras: &[CameraName]) -> Vec<DiscoveryMessage> {
    let prefix = &cfg.discovery_prefix;
    let base = &cfg.base_topic;
    let node = box_identifier(device_id);
    let availability = availability_topic(base, device_id);
    let mut out = Vec::with_capacity(1 + cameras.len() * 6);
    let mut push = |component: &str, object_id: &str, payload: Value| {
        out.push(DiscoveryMessage {
            topic: format!("{prefix}/{component}/{node}/{object_id}/config"),
            payload: payload.to_string(),
        });
    };

    push(
        "binary_sensor",
        "connectivity",
        json!({
            "name": "Connectivity",
            "unique_id": format!("{node}_connectivity"),
            "device_class": "connectivity",
            "entity_category": "diagnostic",
            "state_topic": availability,
            "payload_on": ONLINE,
            "payload_off": OFFLINE,
            "qos": 1,
            "device": box_device(device_id),
            "origin": origin(),
        }),
    );

    for camera in cameras {
        let cam = slug(camera.as_str());
        let uid = |entity: &str| format!("{}_{entity}", camera_identifier(device_id, camera));
        let device = camera_device(device_id, camera);
        let state = state_topic(base, device_id, camera);
        let event = event_topic(base, device_id, camera);
        let common = |v: Value| entity(v, &availability, &device);

        push(
            "event",
            &format!("{cam}_alert"),
            common(json!({
                "name": "Alert",
                "unique_id": uid("alert"),
                "state_topic": event,
                "event_types": ["alert"],
                "icon": "mdi:cctv",
                "qos": 1,
            })),
        );
        push(
            "sensor",
            &format!("{cam}_risk_level"),
            common(json!({
                "name": "Risk level",
                "unique_id": uid("risk_level"),
                "state_topic": state,
                // "None" is Home Assistant's MQTT payload for "unknown" (VLM skipped).
                "value_template": "{{ value_json.risk_level or 'None' }}",
                "device_class": "enum",
                "options": ["low", "medium", "high"],
                "json_attributes_topic": state,
                "icon": "mdi:shield-alert",
                "qos": 1,
            })),
        );
        push(
            "sensor",
            &format!("{cam}_last_summary"),
            common(json!({
                "name": "Last summary",
                "unique_id": uid("last_summary"),
                "state_topic": state,
                // Sensor states are limited to 255 characters; the full summary is an attribute.
                "value_template": "{{ (value_json.summary or 'None')[:255] }}",
                "json_attributes_topic": state,
                "icon": "mdi:text-box-outline",
                "qos": 1,
            })),
        );
        push(
            "binary_sensor",
            &format!("{cam}_person"),
            common(json!({
                "name": "Person",
                "unique_id": uid("person"),
                "state_topic": event,
                "value_template": "{{ 'ON' if value_json.person else 'OFF' }}",
                "payload_on": "ON",
                "payload_off": "OFF",
                "off_delay": OFF_DELAY_S,
                "device_class": "occupancy",
                "qos": 1,
            })),
        );
        push(
            "binary_sensor",
            &format!("{cam}_motion"),
            common(json!({
                "name": "Motion",
                "unique_id": uid("motion"),
                "state_topic": event,
                "value_template": "ON",
                "payload_on": "ON",
                "payload_off": "OFF",
                "off_delay": OFF_DELAY_S,
                "device_class": "motion",
                "qos": 1,
            })),
        );
        push(
            "camera",
            &format!("{cam}_snapshot"),
            common(json!({
                "name": "Last snapshot",
                "unique_id": uid("snapshot"),
                "topic": snapshot_topic(base, device_id, camera),
            })),
        );
    }
    out
}

/// A camera's `connectivity` binary sensor (for cameras whose source has a
/// connection), fed by the retained [`connectivity_topic`]. Like the camera's
/// other entities it is unavailable while the box is offline.
pub fn connectivity_discovery(cfg: &HomeAssistantConfig, device_id: &str, camera: &CameraName) -> DiscoveryMessage {
    let node = box_identifier(device_id);
    let availability = availability_topic(&cfg.base_topic, device_id);
    let payload = entity(
        json!({
            "name": "Connectivity",
            "unique_id": format!("{}_connectivity", camera_identifier(device_id, camera)),
            "device_class": "connectivity",
            "entity_category": "diagnostic",
            "state_topic": connectivity_topic(&cfg.base_topic, device_id, camera),
            "payload_on": ONLINE,
            "payload_off": OFFLINE,
            "qos": 1,
        }),
        &availability,
        &camera_device(device_id, camera),
    );
    DiscoveryMessage {
        topic: format!("{}/binary_sensor/{node}/{}_connectivity/config", cfg.discovery_prefix, slug(camera.as_str())),
        payload: payload.to_string(),
    }
}

/// The box's firmware `update` entity (installed and latest version, install
/// button, progress), for boxes that can update themselves.
pub fn update_discovery(cfg: &HomeAssistantConfig, device_id: &str) -> DiscoveryMessage {
    let node = box_identifier(device_id);
    let payload = entity(
        json!({
            "name": "Firmware",
            "unique_id": format!("{node}_firmware"),
            "device_class": "firmware",
            "entity_category": "config",
            "state_topic": update_state_topic(&cfg.base_topic, device_id),
            "command_topic": update_command_topic(&cfg.base_topic, device_id),
            "payload_install": INSTALL,
            "qos": 1,
        }),
        &availability_topic(&cfg.base_topic, device_id),
        &box_device(device_id),
    );
    DiscoveryMessage {
        topic: format!("{}/update/{node}/firmware/config", cfg.discovery_prefix),
        payload: payload.to_string(),
    }
}

/// The update entity's state: what runs, what is latest (the same when no feed
/// names a newer one), and install progress.
pub fn update_state_payload(s: &SystemStatus) -> String {
    let installed = s.installed_version();
    json!({
        "installed_version": installed,
        "latest_version": s.latest_version.as_deref().unwrap_or(installed),
        "title": "HomeSec",
        "release_summary": s.release_notes.as_deref().map(|n| n.chars().take(255).collect::<String>()),
        "in_progress": s.in_progress(),
        "update_percentage": s.in_progress().then_some(s.update.progress),
    })
    .to_string()
}

/// Whether the alert's object detector saw a person.
pub fn has_person(alert: &Alert) -> bool {
    alert.detected_classes.iter().any(|c| c.eq_ignore_ascii_case("person"))
}

/// The alert as Home Assistant reads it: the alert fields (without the local
/// snapshot path, which means nothing off the box) plus `person`.
fn alert_fields(alert: &Alert) -> serde_json::Map<String, Value> {
    let mut map = match serde_json::to_value(alert) {
        Ok(Value::Object(m)) => m,
        // Alert is a plain struct of strings, options and vectors: it always
        // serialises to an object. Fall back to an empty one rather than panic.
        _ => serde_json::Map::new(),
    };
    map.remove("snapshot_path");
    map.insert("person".into(), json!(has_person(alert)));
    map
}

/// Retained per-camera state (`{base_topic}/{camera}/state`).
pub fn state_payload(alert: &Alert) -> String {
    Value::Object(alert_fields(alert)).to_string()
}

/// Per-alert event (`{base_topic}/{camera}/event`): `event_type` + the alert fields.
pub fn event_payload(alert: &Alert) -> String {
    let mut map = alert_fields(alert);
    map.insert("event_type".into(), json!("alert"));
    Value::Object(map).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RiskLevel;

    fn alert(classes: &[&str]) -> Alert {
        Alert {
            clip_id: "front_door_1700000000".into(),
            camera_name: "front_door".into(),
            storage_uri: Some("local:/clips/front_door_1700000000.mp4".into()),
            view_url: None,
            risk_level: Some(RiskLevel::Medium),
            activity_type: Some("delivery".into()),
            notify_reason: "risk_level=medium".into(),
            summary: Some("A courier leaves a parcel.".into()),
            ts: "2023-11-14T22:13:20.000Z".into(),
            dedupe_key: "front_door_1700000000".into(),
            upload_failed: false,
            detected_classes: classes.iter().map(|s| s.to_string()).collect(),
            stage: crate::domain::AlertStage::Final,
            occurrences: 1,
            occurrences_text: None,
            snapshot_path: Some("/data/snapshots/x.jpg".into()),
        }
    }

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).expect("valid JSON")
    }

    #[test]
    fn the_firmware_update_entity_shows_versions_and_progress() {
        let cfg = HomeAssistantConfig::default();
        let d = update_discovery(&cfg, "garage box");
        assert_eq!(d.topic, "homeassistant/update/homesec_garage_box/firmware/config");
        let v = parse(&d.payload);
        assert_eq!(v["device_class"], "firmware");
        assert_eq!(v["state_topic"], "homecam/garage_box/update/state");
        assert_eq!(v["command_topic"], "homecam/garage_box/update/install");
        assert_eq!(v["payload_install"], INSTALL);
        assert_eq!(v["device"]["identifiers"][0], "homesec_garage_box", "on the box's device");

        let mut s = SystemStatus {
            version: "0.1.0".into(),
            image_version: Some("2026.12.01".into()),
            slot: Some("A".into()),
            slot_confirmed: true,
            latest_version: None,
            release_notes: None,
            latest_url: None,
            update: crate::update::InstallStatus { state: crate::update::InstallState::Idle, progress: 0, error: None },
        };
        let v = parse(&update_state_payload(&s));
        assert_eq!(v["installed_version"], "2026.12.01", "the image's version, not the daemon's");
        assert_eq!(v["latest_version"], "2026.12.01", "no feed: up to date");
        assert_eq!(v["in_progress"], false);
        assert_eq!(v["update_percentage"], Value::Null);
        s.latest_version = Some("2026.12.24".into());
        s.update.state = crate::update::InstallState::Installing;
        s.update.progress = 40;
        let v = parse(&update_state_payload(&s));
        assert_eq!(v["latest_version"], "2026.12.24");
        assert_eq!(v["in_progress"], true);
        assert_eq!(v["update_percentage"], 40);
    }

    #[test]
    fn slugs_are_topic_and_id_safe() {
        assert_eq!(slug("front_door"), "front_door");
        assert_eq!(slug("Front Door/+#"), "Front_Door___");
        assert_eq!(slug("caméra"), "cam_ra");
        assert_eq!(slug(""), "_");
    }

    #[test]
    fn topics_follow_the_base_topic() {
        let cam = CameraName::from("front door");
        assert_eq!(availability_topic("homecam", "box-1"), "homecam/box-1/availability");
        assert_eq!(state_topic("homecam", "garage", &cam), "homecam/garage/front_door/state");
        assert_eq!(event_topic("homecam", "garage", &cam), "homecam/garage/front_door/event");
        assert_eq!(snapshot_topic("homecam", "garage", &cam), "homecam/garage/front_door/snapshot");
        assert_eq!(connectivity_topic("homecam", "garage", &cam), "homecam/garage/front_door/connectivity");
        assert_eq!(status_topic("homeassistant"), "homeassistant/status");
    }

    #[test]
    fn discovery_has_a_box_device_and_six_entities_per_camera() {
        let cams = [CameraName::from("front"), CameraName::from("back")];
        let msgs = discovery_messages(&HomeAssistantConfig::default(), "box1", &cams);
        assert_eq!(msgs.len(), 1 + 2 * 6);
        let topics: Vec<&str> = msgs.iter().map(|m| m.topic.as_str()).collect();
        for t in [
            "homeassistant/binary_sensor/homesec_box1/connectivity/config",
            "homeassistant/event/homesec_box1/front_alert/config",
            "homeassistant/sensor/homesec_box1/front_risk_level/config",
            "homeassistant/sensor/homesec_box1/front_last_summary/config",
            "homeassistant/binary_sensor/homesec_box1/front_person/config",
            "homeassistant/binary_sensor/homesec_box1/front_motion/config",
            "homeassistant/camera/homesec_box1/back_snapshot/config",
        ] {
            assert!(topics.contains(&t), "missing {t} in {topics:?}");
        }
        // unique ids are unique and stable
        let mut ids: Vec<String> =
            msgs.iter().map(|m| parse(&m.payload)["unique_id"].as_str().unwrap_or_default().to_owned()).collect();
        assert!(ids.iter().all(|i| i.starts_with("homesec_box1")));
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), msgs.len());
        assert_eq!(msgs, discovery_messages(&HomeAssistantConfig::default(), "box1", &cams));
    }

    #[test]
    fn box_device_and_connectivity_sensor() {
        let msgs = discovery_messages(&HomeAssistantConfig::default(), "box1", &[]);
        let p = parse(&msgs[0].payload);
        assert_eq!(p["device"]["identifiers"], json!(["homesec_box1"]));
        assert_eq!(p["device"]["name"], "HomeSec box1");
        assert_eq!(p["device"]["sw_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(p["device_class"], "connectivity");
        assert_eq!(p["state_topic"], "homecam/box1/availability");
        assert_eq!(p["payload_on"], "online");
        assert_eq!(p["payload_off"], "offline");
        assert!(p.get("availability_topic").is_none());
    }

    #[test]
    fn camera_entities_hang_off_the_box_and_share_its_availability() {
        let cfg = HomeAssistantConfig { enabled: true, discovery_prefix: "ha".into(), base_topic: "hs".into() };
        let msgs = discovery_messages(&cfg, "box1", &[CameraName::from("front")]);
        for m in &msgs[1..] {
            assert!(m.topic.starts_with("ha/"), "{}", m.topic);
            let p = parse(&m.payload);
            assert_eq!(p["availability_topic"], "hs/box1/availability", "{}", m.topic);
            assert_eq!(p["device"]["via_device"], "homesec_box1");
            assert_eq!(p["device"]["identifiers"], json!(["homesec_box1_front"]));
            assert_eq!(p["device"]["name"], "front");
        }
        let find = |suffix: &str| parse(&msgs.iter().find(|m| m.topic.ends_with(suffix)).expect(suffix).payload);
        let event = find("front_alert/config");
        assert_eq!(event["event_types"], json!(["alert"]));
        assert_eq!(event["state_topic"], "hs/box1/front/event");
        let risk = find("front_risk_level/config");
        assert_eq!(risk["state_topic"], "hs/box1/front/state");
        assert_eq!(risk["options"], json!(["low", "medium", "high"]));
        let person = find("front_person/config");
        assert_eq!(person["off_delay"], 60);
        assert_eq!(person["state_topic"], "hs/box1/front/event");
        let motion = find("front_motion/config");
        assert_eq!(motion["device_class"], "motion");
        assert_eq!(motion["off_delay"], 60);
        let camera = find("front_snapshot/config");
        assert_eq!(camera["topic"], "hs/box1/front/snapshot");
    }

    #[test]
    fn a_camera_connectivity_sensor_hangs_off_the_camera() {
        let cfg = HomeAssistantConfig { enabled: true, discovery_prefix: "ha".into(), base_topic: "hs".into() };
        let cam = CameraName::from("front door");
        let d = connectivity_discovery(&cfg, "box1", &cam);
        assert_eq!(d.topic, "ha/binary_sensor/homesec_box1/front_door_connectivity/config");
        let p = parse(&d.payload);
        assert_eq!(p["device_class"], "connectivity");
        assert_eq!(p["entity_category"], "diagnostic");
        assert_eq!(p["state_topic"], "hs/box1/front_door/connectivity");
        assert_eq!((p["payload_on"].as_str(), p["payload_off"].as_str()), (Some(ONLINE), Some(OFFLINE)));
        assert_eq!(p["availability_topic"], "hs/box1/availability");
        assert_eq!(p["device"]["identifiers"], json!(["homesec_box1_front_door"]));
        assert_eq!(p["unique_id"], "homesec_box1_front_door_connectivity");
        let others = discovery_messages(&cfg, "box1", std::slice::from_ref(&cam));
        assert!(others.iter().all(|m| m.topic != d.topic && parse(&m.payload)["unique_id"] != p["unique_id"]));
        assert_eq!((connectivity_payload(true), connectivity_payload(false)), ("online", "offline"));
    }

    #[test]
    fn state_and_event_payloads_carry_the_alert() {
        let a = alert(&["person", "car"]);
        let state = parse(&state_payload(&a));
        assert_eq!(state["clip_id"], "front_door_1700000000");
        assert_eq!(state["risk_level"], "medium");
        assert_eq!(state["summary"], "A courier leaves a parcel.");
        assert_eq!(state["person"], true);
        assert!(state.get("snapshot_path").is_none());
        assert!(state.get("event_type").is_none());
        let event = parse(&event_payload(&a));
        assert_eq!(event["event_type"], "alert");
        assert_eq!(event["activity_type"], "delivery");
        assert_eq!(event["person"], true);

        let no_person = parse(&event_payload(&alert(&["car"])));
        assert_eq!(no_person["person"], false);
        let mut skipped = alert(&[]);
        skipped.risk_level = None;
        skipped.summary = None;
        let s = parse(&state_payload(&skipped));
        assert!(s["risk_level"].is_null() && s["summary"].is_null());
    }

    #[test]
    fn topic_roots_are_checked() {
        assert!(check_topic_root("homecam").is_ok());
        assert!(check_topic_root("home/cam").is_ok());
        assert!(check_topic_root("").is_err());
        assert!(check_topic_root("home/#").is_err());
        assert!(check_topic_root("/homecam").is_err());
        assert!(check_topic_root("homecam/").is_err());
    }
}
