//! The box as Home Assistant sees it: what is announced on every connect, the
//! topics the box listens to, and what it does with Home Assistant's messages.

use tokio::sync::watch;
use tracing::{info, warn};

use super::discovery::{self as ha, Control, DiscoveryMessage, HomeAssistantConfig};
use super::entities::{self, DeviceConfig, Features};
use crate::controls::Controls;
use crate::domain::CameraName;
use crate::filter::service::InferenceMeter;
use crate::retention::DiskStatus;
use crate::update::{SystemStatus, UpdateLink};

/// The firmware update entity and the updater behind it.
#[derive(Clone)]
struct Firmware {
    state_topic: String,
    command_topic: String,
    link: UpdateLink,
}

/// A camera's connectivity as its source reports it: `true` while every
/// stream of the camera delivers video.
#[derive(Debug, Clone)]
pub struct CameraConnectivity {
    pub camera: CameraName,
    pub connected: watch::Receiver<bool>,
}

/// What the box's device shows besides its discovery, as it changes.
#[derive(Clone, Default)]
pub struct DeviceFeeds {
    /// The box's updater, when it can update itself (the firmware entity).
    pub firmware: Option<UpdateLink>,
    /// Cameras that report their connectivity: a connectivity sensor each.
    pub cameras: Vec<CameraConnectivity>,
    /// The disk budget as retention leaves it (the disk sensors).
    pub disk: Option<watch::Receiver<DiskStatus>>,
    /// The cameras' runtime controls (the *Detection* / *Alerts* switches and
    /// the *Minimum risk level* select).
    pub controls: Option<Controls>,
    /// The detector's recent inference time (its sensor).
    pub inference: Option<InferenceMeter>,
}

/// The detector's inference time sensor: its state topic and its source.
#[derive(Debug, Clone)]
pub struct InferenceState {
    topic: String,
    meter: InferenceMeter,
}

impl InferenceState {
    /// The retained state now: `{"inference_ms": …}` (null before the first frame).
    pub fn message(&self) -> DiscoveryMessage {
        let ms = self.meter.recent_ms().map(|ms| (ms * 10.0).round() / 10.0);
        DiscoveryMessage { topic: self.topic.clone(), payload: serde_json::json!({ "inference_ms": ms }).to_string() }
    }
}

/// The box's disk budget sensor: its state topic and its source.
#[derive(Debug, Clone)]
pub struct DiskState {
    topic: String,
    status: watch::Receiver<DiskStatus>,
}

impl DiskState {
    /// The retained state now (the figures as JSON).
    pub fn message(&self) -> DiscoveryMessage {
        let payload = serde_json::to_string(&*self.status.borrow()).unwrap_or_default();
        DiscoveryMessage { topic: self.topic.clone(), payload }
    }

    /// The disk status, to publish [`DiskState::message`] when it changes.
    pub fn changes(&self) -> watch::Receiver<DiskStatus> {
        self.status.clone()
    }
}

/// A camera's connectivity sensor: its state topic and its source.
#[derive(Debug, Clone)]
pub struct ConnectivityState {
    topic: String,
    connected: watch::Receiver<bool>,
}

impl ConnectivityState {
    /// The retained state now.
    pub fn message(&self) -> DiscoveryMessage {
        DiscoveryMessage {
            topic: self.topic.clone(),
            payload: ha::connectivity_payload(*self.connected.borrow()).into(),
        }
    }

    /// The camera's connectivity, to publish [`ConnectivityState::message`] when it changes.
    pub fn changes(&self) -> watch::Receiver<bool> {
        self.connected.clone()
    }
}

/// What to do after a message from Home Assistant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaction {
    /// Nothing to publish.
    None,
    /// Home Assistant (re)started: publish [`Device::announcements`] again.
    Announce,
    /// Publish these (retained): a device config that removes components.
    Publish(Vec<DiscoveryMessage>),
}

/// One camera control's topics.
#[derive(Debug, Clone)]
struct ControlTopics {
    camera: CameraName,
    control: Control,
    state: String,
    command: String,
}

/// The cameras' controls and their topics.
#[derive(Clone)]
struct ControlFeed {
    controls: Controls,
    topics: Vec<ControlTopics>,
}

/// The box's Home Assistant device: device-based discovery of the box and its
/// cameras (after clearing what earlier versions published per entity), the
/// cameras' controls and, where the box can update itself, the firmware entity
/// with its install button.
#[derive(Clone)]
pub struct Device {
    status_topic: String,
    /// Empty retained messages for what earlier versions published.
    clears: Vec<DiscoveryMessage>,
    configs: Vec<DeviceConfig>,
    firmware: Option<Firmware>,
    connectivity: Vec<ConnectivityState>,
    disk: Option<DiskState>,
    controls: Option<ControlFeed>,
    inference: Option<InferenceState>,
}

impl Device {
    /// The device `cfg` asks for: none when discovery is off.
    pub fn configured(
        cfg: &HomeAssistantConfig,
        device_id: &str,
        cameras: &[CameraName],
        feeds: DeviceFeeds,
    ) -> Option<Device> {
        cfg.enabled.then(|| Device::new(cfg, device_id, cameras, feeds))
    }

    /// `feeds`: what the device shows as it changes (see [`DeviceFeeds`]).
    pub fn new(cfg: &HomeAssistantConfig, device_id: &str, cameras: &[CameraName], feeds: DeviceFeeds) -> Device {
        let DeviceFeeds { firmware, cameras: linked, disk, controls, inference } = feeds;
        let features = Features {
            firmware: firmware.is_some(),
            disk: disk.is_some(),
            inference: inference.is_some(),
            linked: linked.iter().map(|c| c.camera.clone()).collect(),
        };
        let mut clears: Vec<DiscoveryMessage> =
            cameras.iter().flat_map(|c| ha::legacy_clears(&cfg.base_topic, c)).collect();
        clears.extend(
            entities::legacy_config_topics(cfg, device_id, cameras)
                .into_iter()
                .map(|topic| DiscoveryMessage { topic, payload: String::new() }),
        );
        let connectivity = linked
            .into_iter()
            .map(|c| ConnectivityState {
                topic: ha::connectivity_topic(&cfg.base_topic, device_id, &c.camera),
                connected: c.connected,
            })
            .collect();
        let controls = controls.map(|controls| ControlFeed {
            topics: cameras
                .iter()
                .flat_map(|camera| {
                    Control::ALL.into_iter().map(|control| ControlTopics {
                        camera: camera.clone(),
                        control,
                        state: ha::control_state_topic(&cfg.base_topic, device_id, camera, control),
                        command: ha::control_command_topic(&cfg.base_topic, device_id, camera, control),
                    })
                })
                .collect(),
            controls,
        });
        Device {
            status_topic: ha::status_topic(&cfg.discovery_prefix),
            clears,
            configs: entities::device_configs(cfg, device_id, cameras, &features),
            connectivity,
            disk: disk.map(|status| DiskState { topic: ha::disk_topic(&cfg.base_topic, device_id), status }),
            firmware: firmware.map(|link| Firmware {
                state_topic: ha::update_state_topic(&cfg.base_topic, device_id),
                command_topic: ha::update_command_topic(&cfg.base_topic, device_id),
                link,
            }),
            controls,
            inference: inference
                .map(|meter| InferenceState { topic: ha::inference_topic(&cfg.base_topic, device_id), meter }),
        }
    }

    /// Retained messages for every connect: the clears of earlier versions'
    /// topics, the device configs, the firmware state, each camera's
    /// connectivity and controls, the disk figures.
    pub fn announcements(&self) -> Vec<DiscoveryMessage> {
        let mut out = self.clears.clone();
        out.extend(self.configs.iter().map(|c| c.message(&[])));
        out.extend(self.firmware_state());
        out.extend(self.connectivity.iter().map(ConnectivityState::message));
        out.extend(self.disk.as_ref().map(DiskState::message));
        out.extend(self.control_states());
        out.extend(self.inference.as_ref().map(InferenceState::message));
        out
    }

    /// The inference time sensor, to publish its state now and then.
    pub fn inference(&self) -> Option<&InferenceState> {
        self.inference.as_ref()
    }

    /// The device configs (the box's first).
    pub fn configs(&self) -> &[DeviceConfig] {
        &self.configs
    }

    /// The disk budget sensor, to publish its state when it changes.
    pub fn disk(&self) -> Option<&DiskState> {
        self.disk.as_ref()
    }

    /// The cameras' connectivity sensors, to publish each one's state when it changes.
    pub fn connectivity(&self) -> &[ConnectivityState] {
        &self.connectivity
    }

    /// The firmware entity's retained state now, when there is one.
    pub fn firmware_state(&self) -> Option<DiscoveryMessage> {
        let f = self.firmware.as_ref()?;
        Some(DiscoveryMessage {
            topic: f.state_topic.clone(),
            payload: ha::update_state_payload(&f.link.status.borrow()),
        })
    }

    /// The updater's status, to publish [`Device::firmware_state`] when it changes.
    pub fn firmware_changes(&self) -> Option<watch::Receiver<SystemStatus>> {
        self.firmware.as_ref().map(|f| f.link.status.clone())
    }

    /// Every camera control's retained state now.
    pub fn control_states(&self) -> Vec<DiscoveryMessage> {
        let Some(feed) = &self.controls else { return Vec::new() };
        feed.topics
            .iter()
            .map(|t| DiscoveryMessage {
                topic: t.state.clone(),
                payload: ha::control_payload(t.control, &feed.controls.get(&t.camera)).into(),
            })
            .collect()
    }

    /// Changes of the controls, to publish [`Device::control_states`].
    pub fn control_changes(&self) -> Option<watch::Receiver<u64>> {
        self.controls.as_ref().map(|f| f.controls.changes())
    }

    /// Topics to subscribe to on every connect: Home Assistant's status, the
    /// install button, the controls' commands and the device configs (the
    /// retained one an earlier run left tells which components to remove).
    pub fn subscriptions(&self) -> Vec<String> {
        let mut topics = vec![self.status_topic.clone()];
        topics.extend(self.firmware.as_ref().map(|f| f.command_topic.clone()));
        topics.extend(self.controls.iter().flat_map(|f| f.topics.iter().map(|t| t.command.clone())));
        topics.extend(self.configs.iter().map(|c| c.topic.clone()));
        topics
    }

    /// Handles a message on one of [`Device::subscriptions`]. Retained messages
    /// are stale: a retained status arrives right after our own subscription, and
    /// only a live button press installs or a live command switches; the
    /// retained device config is the previous run's.
    pub fn on_message(&self, topic: &str, payload: &[u8], retained: bool) -> Reaction {
        if let Some(config) = self.configs.iter().find(|c| c.topic == topic) {
            let removed = if retained { config.removed_since(&String::from_utf8_lossy(payload)) } else { Vec::new() };
            if removed.is_empty() {
                return Reaction::None;
            }
            info!(topic, removed = ?removed.iter().map(|r| &r.0).collect::<Vec<_>>(), "removing Home Assistant entities this box no longer has");
            return Reaction::Publish(vec![config.message(&removed)]);
        }
        if retained {
            return Reaction::None;
        }
        if let Some(f) = self.firmware.as_ref().filter(|f| f.command_topic == topic) {
            if payload == ha::INSTALL.as_bytes() {
                info!("Home Assistant asked to install the latest firmware");
                let _ = f.link.install_latest.send(());
            }
            return Reaction::None;
        }
        if let Some(feed) = &self.controls
            && let Some(t) = feed.topics.iter().find(|t| t.command == topic)
        {
            match ha::control_change(t.control, payload) {
                Some(change) => {
                    feed.controls.apply(&t.camera, change);
                }
                None => warn!(camera = %t.camera, topic, payload = %String::from_utf8_lossy(payload),
                    "unknown command from Home Assistant; ignored"),
            }
            return Reaction::None;
        }
        if topic == self.status_topic && payload == ha::ONLINE.as_bytes() {
            info!("Home Assistant came online; re-publishing discovery");
            return Reaction::Announce;
        }
        Reaction::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    /// The updater's ends: its status sender (kept alive) and the install requests.
    type Updater = (watch::Sender<SystemStatus>, mpsc::UnboundedReceiver<()>);

    fn device(firmware: bool) -> (Device, Option<Updater>) {
        let cfg = HomeAssistantConfig::default();
        let (link, rx) = if firmware {
            let status = SystemStatus {
                version: "0.1.0".into(),
                image_version: None,
                slot: None,
                slot_confirmed: true,
                latest_version: None,
                release_notes: None,
                latest_url: None,
                update: crate::update::InstallStatus {
                    state: crate::update::InstallState::Idle,
                    progress: 0,
                    error: None,
                },
            };
            let (tx, status) = watch::channel(status);
            let (install_latest, rx) = mpsc::unbounded_channel();
            (Some(UpdateLink { status, install_latest }), Some((tx, rx)))
        } else {
            (None, None)
        };
        let feeds = DeviceFeeds { firmware: link, ..DeviceFeeds::default() };
        (Device::new(&cfg, "box1", &[CameraName::from("door")], feeds), rx)
    }

    #[test]
    fn the_install_button_reaches_the_updater_only_when_pressed_live() {
        let (d, updater) = device(true);
        let (_status, mut rx) = updater.unwrap();
        let topic = ha::update_command_topic("homecam", "box1");
        assert!(d.subscriptions().contains(&topic));
        assert_eq!(d.on_message(&topic, b"install", true), Reaction::None);
        assert!(rx.try_recv().is_err(), "a retained press is stale");
        assert_eq!(d.on_message(&topic, b"install", false), Reaction::None);
        assert!(rx.try_recv().is_ok());
    }

    /// The payload of the device config on `topic` among `d`'s announcements.
    fn config_of(d: &Device, topic: &str) -> serde_json::Value {
        let m = d.announcements().into_iter().find(|m| m.topic == topic).unwrap_or_else(|| panic!("no {topic}"));
        serde_json::from_str(&m.payload).unwrap()
    }

    const BOX: &str = "homeassistant/device/homesec_box1/config";
    const DOOR: &str = "homeassistant/device/homesec_box1_door/config";

    #[test]
    fn the_disk_sensors_are_announced_with_the_figures_as_their_state() {
        let (tx, rx) = watch::channel(DiskStatus::default());
        let feeds = DeviceFeeds { disk: Some(rx), ..DeviceFeeds::default() };
        let d = Device::new(&HomeAssistantConfig::default(), "box1", &[], feeds);
        let config = config_of(&d, BOX);
        assert_eq!(config["dev"]["ids"][0], "homesec_box1");
        let budget = &config["cmps"]["disk_budget"];
        assert_eq!((budget["p"].as_str(), budget["device_class"].as_str()), (Some("binary_sensor"), Some("problem")));
        assert_eq!(budget["state_topic"], "homecam/box1/disk");
        let used = &config["cmps"]["disk_used"];
        assert_eq!(
            (used["device_class"].as_str(), used["unit_of_measurement"].as_str()),
            (Some("data_size"), Some("B"))
        );
        assert_eq!(used["value_template"], "{{ value_json.used_bytes }}");
        assert_eq!(config["cmps"]["disk_free"]["value_template"], "{{ value_json.free_bytes }}");
        assert_eq!(config["cmps"]["disk_free"]["default_entity_id"], "sensor.homesec_box1_disk_free");
        tx.send_modify(|s| s.stuck = Some("nothing more may go".into()));
        let state = d.disk().unwrap().message();
        assert_eq!(state.topic, "homecam/box1/disk");
        let state: serde_json::Value = serde_json::from_str(&state.payload).unwrap();
        assert_eq!(state["stuck"], "nothing more may go");
    }

    #[test]
    fn the_inference_time_sensor_shows_the_detectors_recent_average() {
        let meter = InferenceMeter::default();
        let feeds = DeviceFeeds { inference: Some(meter.clone()), ..DeviceFeeds::default() };
        let d = Device::new(&HomeAssistantConfig::default(), "box1", &[], feeds);
        let sensor = &config_of(&d, BOX)["cmps"]["inference_time"];
        assert_eq!((sensor["unit_of_measurement"].as_str(), sensor["p"].as_str()), (Some("ms"), Some("sensor")));
        assert_eq!(sensor["state_topic"], "homecam/box1/detector");
        assert_eq!(d.inference().unwrap().message().payload, r#"{"inference_ms":null}"#);
        meter.record(std::time::Duration::from_micros(23_456));
        assert_eq!(d.inference().unwrap().message().payload, r#"{"inference_ms":23.5}"#);
        let plain = Device::new(&HomeAssistantConfig::default(), "box1", &[], DeviceFeeds::default());
        assert!(config_of(&plain, BOX)["cmps"].get("inference_time").is_none());
    }

    #[test]
    fn home_assistant_coming_online_asks_for_discovery_again() {
        let (d, _) = device(false);
        assert_eq!(d.on_message("homeassistant/status", b"online", false), Reaction::Announce);
        assert_eq!(d.on_message("homeassistant/status", b"online", true), Reaction::None);
        assert_eq!(d.on_message("homeassistant/status", b"offline", false), Reaction::None);
        assert_eq!(d.subscriptions(), vec!["homeassistant/status".to_string(), BOX.into(), DOOR.into()]);
    }

    #[test]
    fn old_per_entity_topics_are_cleared_before_the_device_configs_come() {
        let (d, _) = device(false);
        let topics: Vec<String> = d.announcements().into_iter().map(|m| m.topic).collect();
        let at = |t: &str| topics.iter().position(|x| x == t).unwrap_or_else(|| panic!("no {t} in {topics:?}"));
        for old in [
            "homeassistant/sensor/homesec_box1/door_risk_level/config",
            "homeassistant/camera/homesec_box1/door_snapshot/config",
            "homeassistant/binary_sensor/homesec_box1/connectivity/config",
            "homeassistant/update/homesec_box1/firmware/config",
        ] {
            assert!(at(old) < at(BOX) && at(old) < at(DOOR), "{old} cleared first");
        }
        let cleared = d.announcements().into_iter().filter(|m| m.payload.is_empty()).count();
        assert_eq!(cleared, 3 + 7 + 3, "box, camera entities, the camera's old state topics");
    }

    #[test]
    fn a_component_gone_since_the_last_run_is_removed_once() {
        let (d, _) = device(false);
        let mut earlier = config_of(&d, DOOR);
        earlier["cmps"]["connectivity"] =
            serde_json::json!({"p": "binary_sensor", "unique_id": "x", "state_topic": "t"});
        let Reaction::Publish(msgs) = d.on_message(DOOR, earlier.to_string().as_bytes(), true) else {
            panic!("the removal is published")
        };
        let sent: serde_json::Value = serde_json::from_str(&msgs[0].payload).unwrap();
        assert_eq!(msgs[0].topic, DOOR);
        assert_eq!(sent["cmps"]["connectivity"], serde_json::json!({"p": "binary_sensor"}));
        assert_eq!(sent["cmps"]["risk_level"], earlier["cmps"]["risk_level"], "the rest stays");
        assert_eq!(d.on_message(DOOR, msgs[0].payload.as_bytes(), true), Reaction::None, "removed once only");
        assert_eq!(d.on_message(DOOR, earlier.to_string().as_bytes(), false), Reaction::None, "our own live echo");
        assert_eq!(d.on_message(DOOR, config_of(&d, DOOR).to_string().as_bytes(), true), Reaction::None);
    }

    #[tokio::test]
    async fn a_command_switches_the_camera_at_once_and_the_box_answers_with_the_state() {
        use crate::controls::CameraControls;
        use crate::domain::RiskLevel;
        let cameras = [CameraName::from("door")];
        let controls = Controls::in_memory(&cameras);
        let feeds = DeviceFeeds { controls: Some(controls.clone()), ..DeviceFeeds::default() };
        let d = Device::new(&HomeAssistantConfig::default(), "box1", &cameras, feeds);
        let config = config_of(&d, DOOR);
        assert_eq!(config["cmps"]["alerts"]["command_topic"], "homecam/box1/door/alerts/set");
        assert_eq!(config["cmps"]["min_risk_level"]["p"], "select");
        let state = |d: &Device, leaf: &str| {
            d.control_states().into_iter().find(|m| m.topic == format!("homecam/box1/door/{leaf}")).unwrap().payload
        };
        assert_eq!((state(&d, "detection"), state(&d, "min_risk_level")), ("ON".into(), "policy".into()));
        let changes = d.control_changes().unwrap();
        assert!(d.subscriptions().contains(&"homecam/box1/door/detection/set".to_string()));
        assert_eq!(d.on_message("homecam/box1/door/detection/set", b"OFF", true), Reaction::None);
        assert!(controls.get(&cameras[0]).detection, "a retained command is stale");
        d.on_message("homecam/box1/door/detection/set", b"OFF", false);
        d.on_message("homecam/box1/door/min_risk_level/set", b"high", false);
        d.on_message("homecam/box1/door/alerts/set", b"maybe", false);
        let want = CameraControls { detection: false, alerts: true, min_risk_level: Some(RiskLevel::High) };
        assert_eq!(controls.get(&cameras[0]), want);
        assert!(changes.has_changed().unwrap(), "the connection publishes the states");
        assert_eq!((state(&d, "detection"), state(&d, "min_risk_level")), ("OFF".into(), "high".into()));
    }

    #[test]
    fn cameras_with_a_connection_get_a_connectivity_sensor_and_its_state() {
        let cfg = HomeAssistantConfig::default();
        let (tx, connected) = watch::channel(false);
        let cameras = [CameraName::from("door"), CameraName::from("inbox")];
        let feeds = DeviceFeeds {
            cameras: vec![CameraConnectivity { camera: "door".into(), connected }],
            ..DeviceFeeds::default()
        };
        let d = Device::new(&cfg, "box1", &cameras, feeds);
        let state = |d: &Device| d.announcements().into_iter().find(|m| m.topic == "homecam/box1/door/connectivity");
        let door = config_of(&d, DOOR);
        assert_eq!(door["cmps"]["connectivity"]["device_class"], "connectivity");
        assert_eq!(door["cmps"]["connectivity"]["state_topic"], "homecam/box1/door/connectivity");
        assert_eq!(door["dev"]["via_device"], "homesec_box1");
        let inbox = config_of(&d, "homeassistant/device/homesec_box1_inbox/config");
        assert!(inbox["cmps"].get("connectivity").is_none(), "only linked cameras");
        assert_eq!(state(&d).map(|m| m.payload).as_deref(), Some("offline"));
        tx.send_replace(true);
        assert_eq!(state(&d).map(|m| m.payload).as_deref(), Some("online"), "every connect publishes it as it is");
        let feed = &d.connectivity()[0];
        assert!(*feed.changes().borrow());
        assert_eq!(feed.message().topic, "homecam/box1/door/connectivity");
    }

    #[test]
    fn the_firmware_entity_is_announced_only_with_an_updater() {
        let (without, _) = device(false);
        let (with, _updater) = device(true);
        let state = ha::update_state_topic("homecam", "box1");
        assert!(!without.announcements().iter().any(|m| m.topic == state));
        assert!(with.announcements().iter().any(|m| m.topic == state));
        assert!(config_of(&without, BOX)["cmps"].get("firmware").is_none());
        let firmware = &config_of(&with, BOX)["cmps"]["firmware"];
        assert_eq!(firmware["p"], "update");
        assert_eq!(firmware["command_topic"], "homecam/box1/update/install");
        assert_eq!(firmware["payload_install"], "install");
    }
}
