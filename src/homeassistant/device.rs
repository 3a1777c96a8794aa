//! The box as Home Assistant sees it: what is announced on every connect, the
//! topics the box listens to, and what it does with Home Assistant's messages.

use tokio::sync::watch;
use tracing::{info, warn};

use super::discovery::{self as ha, Control, DiscoveryMessage, HomeAssistantConfig};
use super::entities::{self, DeviceConfig, Features};
use crate::controls::Controls;
use crate::domain::CameraName;
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
        let DeviceFeeds { firmware, cameras: linked, disk, controls } = feeds;
        let features = Features {
            firmware: firmware.is_some(),
            disk: disk.is_some(),
            inference: false,
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
        out
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

    #[test]
    fn the_disk_budget_sensor_is_announced_with_the_figures_as_its_state() {
        let (tx, rx) = watch::channel(DiskStatus::default());
        let feeds = DeviceFeeds { disk: Some(rx), ..DeviceFeeds::default() };
        let d = Device::new(&HomeAssistantConfig::default(), "box1", &[], feeds);
        let msgs = d.announcements();
        let config = msgs.iter().find(|m| m.topic == "homeassistant/binary_sensor/homesec_box1/disk_budget/config");
        let config: serde_json::Value = serde_json::from_str(&config.expect("announced").payload).unwrap();
        assert_eq!(config["device_class"], "problem");
        assert_eq!(config["state_topic"], "homecam/box1/disk");
        assert_eq!(config["json_attributes_topic"], "homecam/box1/disk");
        assert_eq!(config["device"]["identifiers"][0], "homesec_box1");
        tx.send_modify(|s| s.stuck = Some("nothing more may go".into()));
        let state = d.disk().unwrap().message();
        assert_eq!(state.topic, "homecam/box1/disk");
        let state: serde_json::Value = serde_json::from_str(&state.payload).unwrap();
        assert_eq!(state["stuck"], "nothing more may go");
    }

    #[test]
    fn home_assistant_coming_online_asks_for_discovery_again() {
        let (d, _) = device(false);
        assert_eq!(d.on_message("homeassistant/status", b"online", false), Reaction::Announce);
        assert_eq!(d.on_message("homeassistant/status", b"online", true), Reaction::None);
        assert_eq!(d.on_message("homeassistant/status", b"offline", false), Reaction::None);
        assert_eq!(d.subscriptions(), vec!["homeassistant/status".to_string()]);
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
        let plain = Device::new(&cfg, "box1", &cameras, DeviceFeeds::default());
        let config = "homeassistant/binary_sensor/homesec_box1/door_connectivity/config";
        let state = |d: &Device| d.announcements().into_iter().find(|m| m.topic == "homecam/box1/door/connectivity");
        assert!(d.announcements().iter().any(|m| m.topic == config));
        assert!(!d.announcements().iter().any(|m| m.topic.contains("inbox_connectivity")), "only linked cameras");
        assert_eq!(state(&d).map(|m| m.payload).as_deref(), Some("offline"));
        assert_eq!(d.announcements().len(), plain.announcements().len() + 2);
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
        assert_eq!(with.announcements().len(), without.announcements().len() + 2);
    }
}
