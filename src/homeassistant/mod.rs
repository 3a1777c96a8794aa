//! The box's Home Assistant devices over MQTT: device-based discovery, the
//! entities' states, the cameras' controls, the firmware update entity and its
//! install button.
//!
//! [`discovery`] holds the topics and payloads and [`entities`] the device
//! configs (pure functions); [`Device`] is what the MQTT link announces on
//! every connect and how the box answers Home Assistant's messages (its birth
//! message, the install button, the controls' commands, its own retained
//! device configs). The MQTT notifier only publishes alerts.
//!
//! What Home Assistant gets (one retained config per device on
//! `{discovery_prefix}/device/{device}/config`, `dev` + `o` + `cmps`):
//! - the box (`HomeSec {device_id}`): a `connectivity` binary sensor fed by the
//!   availability topic (`{base_topic}/{device_id}/availability`, `online`
//!   retained on every connect, `offline` as the retained last will), the disk
//!   sensors (budget, used, free), the detector's inference time and, where the
//!   box can update itself, the firmware `update` entity;
//! - each camera (`via_device` the box): `event` *Alert* (event types = the
//!   alert stages), `sensor` *Risk level* / *Last summary* (retained state
//!   topic), `binary_sensor` *Person* / *Motion* (the non-retained event topic,
//!   off after [`OFF_DELAY_S`]), `image` *Last snapshot* (retained JPEG),
//!   `switch` *Detection* / *Alerts* and `select` *Minimum risk level*
//!   ([`crate::controls`]), and for cameras with a connection a *Connectivity*
//!   binary sensor.
//!
//! Every entity except the box's connectivity sensor uses the availability
//! topic. Before the device configs, every connect clears the per-entity
//! config topics earlier versions published ([`legacy_config_topics`]).

mod device;
pub mod discovery;
pub mod entities;

pub use device::{CameraConnectivity, ConnectivityState, Device, DeviceFeeds, DiskState, InferenceState, Reaction};
pub use discovery::*;
pub use entities::{DeviceConfig, Features, device_configs, legacy_config_topics};
