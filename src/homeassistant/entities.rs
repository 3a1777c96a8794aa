//! The device-based discovery configs: one retained config per device on
//! `{discovery_prefix}/device/{device}/config`, with the device (`dev`), the
//! origin (`o`) and the components (`cmps`, keyed by a stable id, each with its
//! platform `p`, `unique_id` and `default_entity_id`). The box is one device;
//! each camera is one more, `via_device` the box. Pure functions, unit-tested
//! without a broker.

use serde_json::{Map, Value, json};

use super::discovery::{
    self as ha, Control, DiscoveryMessage, EVENT_TYPES, HomeAssistantConfig, INSTALL, MIN_RISK_OPTIONS, OFF,
    OFF_DELAY_S, OFFLINE, ON, ONLINE, box_identifier, camera_identifier, slug,
};
use crate::domain::CameraName;

/// What the box's device shows besides its fixed entities.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Features {
    /// The firmware `update` entity (the box can update itself).
    pub firmware: bool,
    /// The disk sensors (budget, used, free).
    pub disk: bool,
    /// The detector's inference time sensor.
    pub inference: bool,
    /// Cameras with a connectivity sensor.
    pub linked: Vec<CameraName>,
}

/// One device's discovery config: its topic and its components by key.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceConfig {
    pub topic: String,
    device: Value,
    origin: Value,
    pub components: Map<String, Value>,
}

impl DeviceConfig {
    /// The retained config; `removed` components (key, platform) go as
    /// `{"p": platform}` only, which is how Home Assistant removes them.
    pub fn message(&self, removed: &[(String, String)]) -> DiscoveryMessage {
        let mut cmps = self.components.clone();
        for (key, platform) in removed {
            cmps.insert(key.clone(), json!({ "p": platform }));
        }
        let payload = json!({ "dev": self.device, "o": self.origin, "cmps": cmps, "qos": 1 });
        DiscoveryMessage { topic: self.topic.clone(), payload: payload.to_string() }
    }

    /// Components of an earlier config of this device that this one lacks and
    /// that were not removed yet (anything but `{"p": …}` alone): (key, platform).
    pub fn removed_since(&self, earlier: &str) -> Vec<(String, String)> {
        let Ok(v) = serde_json::from_str::<Value>(earlier) else { return Vec::new() };
        let Some(cmps) = v.get("cmps").and_then(Value::as_object) else { return Vec::new() };
        cmps.iter()
            .filter(|(key, c)| !self.components.contains_key(*key) && c.as_object().is_some_and(|o| o.len() > 1))
            .filter_map(|(key, c)| Some((key.clone(), c.get("p")?.as_str()?.to_owned())))
            .collect()
    }
}

/// The origin (`o`): HomeSec, its version and, when configured, the support URL.
fn origin(cfg: &HomeAssistantConfig) -> Value {
    let mut o = json!({ "name": "HomeSec", "sw": env!("CARGO_PKG_VERSION") });
    if let Some(url) = &cfg.support_url {
        o["url"] = json!(url);
    }
    o
}

fn device_topic(cfg: &HomeAssistantConfig, identifier: &str) -> String {
    format!("{}/device/{identifier}/config", cfg.discovery_prefix)
}

/// A component: `v` with its platform, unique id, default entity id and,
/// unless `available` is `None`, the box's availability.
fn component(platform: &str, unique_id: String, mut v: Value, available: Option<&str>) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.insert("p".into(), json!(platform));
        o.insert("default_entity_id".into(), json!(format!("{platform}.{unique_id}")));
        o.insert("unique_id".into(), json!(unique_id));
        if let Some(topic) = available {
            o.insert("availability_topic".into(), json!(topic));
            o.insert("payload_available".into(), json!(ONLINE));
            o.insert("payload_not_available".into(), json!(OFFLINE));
        }
    }
    v
}

/// The box's device: its connectivity (the availability topic itself), and
/// per [`Features`] the disk sensors, the inference time and the firmware.
pub fn box_config(cfg: &HomeAssistantConfig, device_id: &str, f: &Features) -> DeviceConfig {
    let node = box_identifier(device_id);
    let base = &cfg.base_topic;
    let availability = ha::availability_topic(base, device_id);
    let avail = Some(availability.as_str());
    let uid = |key: &str| format!("{node}_{key}");
    let mut cmps = Map::new();
    let connectivity = json!({
        "name": "Connectivity",
        "device_class": "connectivity",
        "entity_category": "diagnostic",
        "state_topic": availability,
        "payload_on": ONLINE,
        "payload_off": OFFLINE,
    });
    cmps.insert("connectivity".into(), component("binary_sensor", uid("connectivity"), connectivity, None));
    if f.disk {
        let disk = ha::disk_topic(base, device_id);
        let budget = json!({
            "name": "Disk budget",
            "device_class": "problem",
            "entity_category": "diagnostic",
            "state_topic": disk,
            "value_template": "{{ 'ON' if value_json.stuck else 'OFF' }}",
            "json_attributes_topic": disk,
        });
        cmps.insert("disk_budget".into(), component("binary_sensor", uid("disk_budget"), budget, avail));
        for (key, name, field) in [("disk_used", "Disk used", "used_bytes"), ("disk_free", "Disk free", "free_bytes")] {
            let sensor = json!({
                "name": name,
                "device_class": "data_size",
                "unit_of_measurement": "B",
                "state_class": "measurement",
                "entity_category": "diagnostic",
                "state_topic": disk,
                "value_template": format!("{{{{ value_json.{field} }}}}"),
            });
            cmps.insert(key.into(), component("sensor", uid(key), sensor, avail));
        }
    }
    if f.inference {
        let sensor = json!({
            "name": "Detector inference time",
            "device_class": "duration",
            "unit_of_measurement": "ms",
            "state_class": "measurement",
            "entity_category": "diagnostic",
            "suggested_display_precision": 1,
            "state_topic": ha::inference_topic(base, device_id),
            "value_template": "{{ value_json.inference_ms }}",
            "json_attributes_topic": ha::inference_topic(base, device_id),
        });
        cmps.insert("inference_time".into(), component("sensor", uid("inference_time"), sensor, avail));
    }
    if f.firmware {
        let update = json!({
            "name": "Firmware",
            "device_class": "firmware",
            "entity_category": "config",
            "state_topic": ha::update_state_topic(base, device_id),
            "command_topic": ha::update_command_topic(base, device_id),
            "payload_install": INSTALL,
        });
        cmps.insert("firmware".into(), component("update", uid("firmware"), update, avail));
    }
    let device = json!({
        "ids": [node],
        "name": format!("HomeSec {device_id}"),
        "mf": "HomeSec",
        "mdl": "HomeSec daemon",
        "sw": env!("CARGO_PKG_VERSION"),
    });
    DeviceConfig { topic: device_topic(cfg, &node), device, origin: origin(cfg), components: cmps }
}

/// A camera's device (`via_device` the box): alerts, state, snapshot, controls
/// and, for `linked` cameras, connectivity.
pub fn camera_config(cfg: &HomeAssistantConfig, device_id: &str, camera: &CameraName, linked: bool) -> DeviceConfig {
    let base = &cfg.base_topic;
    let id = camera_identifier(device_id, camera);
    let availability = ha::availability_topic(base, device_id);
    let avail = Some(availability.as_str());
    let state = ha::state_topic(base, device_id, camera);
    let event = ha::event_topic(base, device_id, camera);
    let uid = |key: &str| format!("{id}_{key}");
    let mut cmps = Map::new();
    let mut add = |key: &str, platform: &str, v: Value| {
        cmps.insert(key.into(), component(platform, uid(key), v, avail));
    };
    add(
        "alert",
        "event",
        json!({
            "name": "Alert",
            "state_topic": event,
            "event_types": EVENT_TYPES,
            "json_attributes_topic": event,
            "icon": "mdi:cctv",
        }),
    );
    add(
        "risk_level",
        "sensor",
        json!({
            "name": "Risk level",
            "state_topic": state,
            // "None" is Home Assistant's MQTT payload for "unknown" (VLM skipped).
            "value_template": "{{ value_json.risk_level or 'None' }}",
            "device_class": "enum",
            "options": ["low", "medium", "high"],
            "json_attributes_topic": state,
            "icon": "mdi:shield-alert",
        }),
    );
    add(
        "last_summary",
        "sensor",
        json!({
            "name": "Last summary",
            "state_topic": state,
            // Sensor states are limited to 255 characters; the full summary is an attribute.
            "value_template": "{{ (value_json.summary or 'None')[:255] }}",
            "json_attributes_topic": state,
            "icon": "mdi:text-box-outline",
        }),
    );
    for (key, name, template, class) in [
        ("person", "Person", "{{ 'ON' if value_json.person else 'OFF' }}", "occupancy"),
        ("motion", "Motion", "ON", "motion"),
    ] {
        add(
            key,
            "binary_sensor",
            json!({
                "name": name,
                "state_topic": event,
                "value_template": template,
                "payload_on": ON,
                "payload_off": OFF,
                "off_delay": OFF_DELAY_S,
                "device_class": class,
            }),
        );
    }
    add(
        "snapshot",
        "image",
        json!({
            "name": "Last snapshot",
            "image_topic": ha::snapshot_topic(base, device_id, camera),
            "content_type": "image/jpeg",
        }),
    );
    for (control, name, icon) in
        [(Control::Detection, "Detection", "mdi:motion-sensor"), (Control::Alerts, "Alerts", "mdi:bell-ring")]
    {
        add(
            control.leaf(),
            "switch",
            json!({
                "name": name,
                "entity_category": "config",
                "state_topic": ha::control_state_topic(base, device_id, camera, control),
                "command_topic": ha::control_command_topic(base, device_id, camera, control),
                "payload_on": ON,
                "payload_off": OFF,
                "icon": icon,
            }),
        );
    }
    let risk = Control::MinRiskLevel;
    add(
        risk.leaf(),
        "select",
        json!({
            "name": "Minimum risk level",
            "entity_category": "config",
            "state_topic": ha::control_state_topic(base, device_id, camera, risk),
            "command_topic": ha::control_command_topic(base, device_id, camera, risk),
            "options": MIN_RISK_OPTIONS,
            "icon": "mdi:shield-half-full",
        }),
    );
    if linked {
        add(
            "connectivity",
            "binary_sensor",
            json!({
                "name": "Connectivity",
                "device_class": "connectivity",
                "entity_category": "diagnostic",
                "state_topic": ha::connectivity_topic(base, device_id, camera),
                "payload_on": ONLINE,
                "payload_off": OFFLINE,
            }),
        );
    }
    let device = json!({
        "ids": [id],
        "name": camera.as_str(),
        "mf": "HomeSec",
        "mdl": "Camera",
        "sw": env!("CARGO_PKG_VERSION"),
        "via_device": box_identifier(device_id),
    });
    DeviceConfig { topic: device_topic(cfg, &id), device, origin: origin(cfg), components: cmps }
}

/// Every device config: the box's, then each camera's.
pub fn device_configs(
    cfg: &HomeAssistantConfig,
    device_id: &str,
    cameras: &[CameraName],
    f: &Features,
) -> Vec<DeviceConfig> {
    let mut out = vec![box_config(cfg, device_id, f)];
    out.extend(cameras.iter().map(|c| camera_config(cfg, device_id, c, f.linked.contains(c))));
    out
}

/// The per-entity config topics (`{prefix}/{component}/{node}/{object_id}/config`)
/// that versions before device-based discovery published for this box and
/// these cameras: each gets an empty retained message so that Home Assistant
/// drops the old entities before the device configs bring them back.
pub fn legacy_config_topics(cfg: &HomeAssistantConfig, device_id: &str, cameras: &[CameraName]) -> Vec<String> {
    let prefix = &cfg.discovery_prefix;
    let node = box_identifier(device_id);
    let mut entities: Vec<(&str, String)> = vec![
        ("binary_sensor", "connectivity".into()),
        ("binary_sensor", "disk_budget".into()),
        ("update", "firmware".into()),
    ];
    for camera in cameras {
        let cam = slug(camera.as_str());
        for (component, object) in [
            ("event", "alert"),
            ("sensor", "risk_level"),
            ("sensor", "last_summary"),
            ("binary_sensor", "person"),
            ("binary_sensor", "motion"),
            ("camera", "snapshot"),
            ("binary_sensor", "connectivity"),
        ] {
            entities.push((component, format!("{cam}_{object}")));
        }
    }
    entities
        .into_iter()
        .map(|(component, object_id)| format!("{prefix}/{component}/{node}/{object_id}/config"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entity_has_a_unique_id_and_its_default_entity_id_and_no_object_id() {
        let cfg = HomeAssistantConfig { support_url: Some("https://help.example.net".into()), ..Default::default() };
        let cams = [CameraName::from("front door"), CameraName::from("back")];
        let f = Features { firmware: true, disk: true, inference: true, linked: vec![cams[0].clone()] };
        let configs = device_configs(&cfg, "box1", &cams, &f);
        assert_eq!(configs.len(), 3);
        let mut ids = Vec::new();
        for c in &configs {
            let payload: Value = serde_json::from_str(&c.message(&[]).payload).unwrap();
            assert_eq!(payload["o"]["url"], "https://help.example.net");
            assert!(!payload.to_string().contains("object_id"));
            for (key, comp) in payload["cmps"].as_object().unwrap() {
                let uid = comp["unique_id"].as_str().unwrap();
                assert!(uid.ends_with(key.as_str()), "{uid} for {key}");
                assert_eq!(comp["default_entity_id"], format!("{}.{uid}", comp["p"].as_str().unwrap()));
                ids.push(uid.to_owned());
            }
        }
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "unique ids are unique across the devices");
        assert_eq!(n, 6 + 9 + 1 + 9);
        assert!(ids.contains(&"homesec_box1_front_door_min_risk_level".to_owned()));
        let plain = box_config(&HomeAssistantConfig::default(), "box1", &Features::default());
        let payload: Value = serde_json::from_str(&plain.message(&[]).payload).unwrap();
        assert!(payload["o"].get("url").is_none(), "no support URL configured, none announced");
    }
}
