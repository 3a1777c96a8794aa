//! Topics and payloads of the Home Assistant device: pure functions of the
//! config, the box's `device_id`, the camera names and the alert, unit-tested
//! without a broker.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::controls::{CameraControls, Change};
use crate::domain::{Alert, CameraName, RiskLevel};
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
    /// Where users of this box find help: the discovery origin's support URL
    /// (Home Assistant links it from the devices). None: not announced.
    #[serde(default)]
    pub support_url: Option<String>,
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
            support_url: None,
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
        if let Some(url) = &self.support_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            v.error("support_url", format!("`{url}` must be an http:// or https:// URL"));
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

/// Retained state of one of the camera's controls ([`Control`]).
pub fn control_state_topic(base_topic: &str, device_id: &str, camera: &CameraName, control: Control) -> String {
    camera_topic(base_topic, device_id, camera, control.leaf())
}

/// Home Assistant sets one of the camera's controls here.
pub fn control_command_topic(base_topic: &str, device_id: &str, camera: &CameraName, control: Control) -> String {
    format!("{}/set", control_state_topic(base_topic, device_id, camera, control))
}

/// A camera's runtime controls as Home Assistant shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// `switch` *Detection*.
    Detection,
    /// `switch` *Alerts*.
    Alerts,
    /// `select` *Minimum risk level*.
    MinRiskLevel,
}

impl Control {
    pub const ALL: [Control; 3] = [Control::Detection, Control::Alerts, Control::MinRiskLevel];

    /// The topic level, the component key and the end of the unique id.
    pub fn leaf(self) -> &'static str {
        match self {
            Control::Detection => "detection",
            Control::Alerts => "alerts",
            Control::MinRiskLevel => "min_risk_level",
        }
    }
}

/// The switches' payloads.
pub const ON: &str = "ON";
pub const OFF: &str = "OFF";
/// The *Minimum risk level* select's option for "the alert policy's own level".
pub const POLICY_DEFAULT: &str = "policy";
/// The *Minimum risk level* select's options.
pub const MIN_RISK_OPTIONS: [&str; 4] = [POLICY_DEFAULT, "low", "medium", "high"];

/// A control's state payload.
pub fn control_payload(control: Control, c: &CameraControls) -> &'static str {
    let switch = |on: bool| if on { ON } else { OFF };
    match control {
        Control::Detection => switch(c.detection),
        Control::Alerts => switch(c.alerts),
        Control::MinRiskLevel => c.min_risk_level.map_or(POLICY_DEFAULT, RiskLevel::as_str),
    }
}

/// The change a command payload asks for; `None` when it means nothing.
pub fn control_change(control: Control, payload: &[u8]) -> Option<Change> {
    let p = std::str::from_utf8(payload).ok()?.trim();
    let switch = || match p {
        ON => Some(true),
        OFF => Some(false),
        _ => None,
    };
    match control {
        Control::Detection => switch().map(Change::Detection),
        Control::Alerts => switch().map(Change::Alerts),
        Control::MinRiskLevel => match p {
            POLICY_DEFAULT => Some(Change::MinRiskLevel(None)),
            "low" => Some(Change::MinRiskLevel(Some(RiskLevel::Low))),
            "medium" => Some(Change::MinRiskLevel(Some(RiskLevel::Medium))),
            "high" => Some(Change::MinRiskLevel(Some(RiskLevel::High))),
            _ => None,
        },
    }
}

/// The camera connectivity sensor's state.
pub fn connectivity_payload(connected: bool) -> &'static str {
    if connected { ONLINE } else { OFFLINE }
}

/// Retained JSON of the box's disk budget ([`crate::retention::DiskStatus`]).
pub fn disk_topic(base_topic: &str, device_id: &str) -> String {
    format!("{base_topic}/{}/disk", slug(device_id))
}

/// Retained JSON of the detector's recent inference time (`inference_ms`).
pub fn inference_topic(base_topic: &str, device_id: &str) -> String {
    format!("{base_topic}/{}/detector", slug(device_id))
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryMessage {
    pub topic: String,
    pub payload: String,
}

pub(super) fn box_identifier(device_id: &str) -> String {
    format!("homesec_{}", slug(device_id))
}

pub(super) fn camera_identifier(device_id: &str, camera: &CameraName) -> String {
    format!("homesec_{}_{}", slug(device_id), slug(camera.as_str()))
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

/// The event entity's event types: the alert stages.
pub const EVENT_TYPES: [&str; 3] = ["detected", "analyzed", "final"];

/// Per-alert event (`{base_topic}/{camera}/event`): `event_type` (the alert's
/// stage, one of [`EVENT_TYPES`]) + the alert fields.
pub fn event_payload(alert: &Alert) -> String {
    let mut map = alert_fields(alert);
    map.insert("event_type".into(), json!(alert.stage));
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
    fn control_commands_and_states_round_trip() {
        let cam = CameraName::from("front door");
        assert_eq!(control_state_topic("hs", "b", &cam, Control::Detection), "hs/b/front_door/detection");
        assert_eq!(control_command_topic("hs", "b", &cam, Control::MinRiskLevel), "hs/b/front_door/min_risk_level/set");
        assert_eq!(control_change(Control::Alerts, b"OFF"), Some(Change::Alerts(false)));
        assert_eq!(control_change(Control::Detection, b"ON"), Some(Change::Detection(true)));
        assert_eq!(control_change(Control::Detection, b"on"), None, "Home Assistant sends ON / OFF");
        assert_eq!(control_change(Control::MinRiskLevel, b"high"), Some(Change::MinRiskLevel(Some(RiskLevel::High))));
        assert_eq!(control_change(Control::MinRiskLevel, b"policy"), Some(Change::MinRiskLevel(None)));
        assert_eq!(control_change(Control::MinRiskLevel, b"extreme"), None);
        let c = CameraControls { detection: false, alerts: true, min_risk_level: Some(RiskLevel::Medium) };
        assert_eq!(control_payload(Control::Detection, &c), "OFF");
        assert_eq!(control_payload(Control::Alerts, &c), "ON");
        assert_eq!(control_payload(Control::MinRiskLevel, &c), "medium");
        assert_eq!(control_payload(Control::MinRiskLevel, &CameraControls::default()), "policy");
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
        assert_eq!(event["event_type"], "final", "the alert's stage");
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
    fn the_support_url_must_be_a_web_address() {
        let check = |url: &str| {
            let mut issues = Vec::new();
            let locate = |_: &str| None;
            let cfg = HomeAssistantConfig { support_url: Some(url.into()), ..Default::default() };
            cfg.validate(&mut Validator::new("home_assistant", &mut issues, &locate));
            issues.into_iter().map(|i| i.path).collect::<Vec<_>>()
        };
        assert!(check("https://help.example.net/homesec").is_empty());
        assert_eq!(check("help.example.net"), ["home_assistant.support_url"]);
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
