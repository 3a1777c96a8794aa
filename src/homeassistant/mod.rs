//! The box's Home Assistant device over MQTT: discovery, entities, the
//! firmware update entity and its install button.
//!
//! [`discovery`] holds the topics and payloads (pure functions); [`Device`] is
//! what the MQTT link announces on every connect and how the box answers Home
//! Assistant's messages (its birth message, the install button). The MQTT
//! notifier only publishes alerts; the install button goes from here straight
//! to the updater.
//!
//! What Home Assistant gets:
//! - one device per box (`HomeSec {device_id}`) with a `connectivity` binary sensor
//!   fed by the box's availability topic (`{base_topic}/{device_id}/availability`,
//!   `online` retained on every connect, `offline` as the retained last will);
//! - one device per camera (`via_device` the box) with
//!   - `event` *Alert* (event type `alert`, attributes = the alert fields), fed by the
//!     non-retained `{base_topic}/{camera}/event` topic,
//!   - `sensor` *Risk level* and *Last summary*, fed by the retained
//!     `{base_topic}/{camera}/state` topic (the whole last alert is their attributes),
//!   - `binary_sensor` *Person* (on when the last alert's detector saw a person) and
//!     *Motion* (on for every clip alert), both fed by the event topic and turned off
//!     by Home Assistant after [`OFF_DELAY_S`]; they read the non-retained event topic
//!     so that a Home Assistant restart does not switch them on again,
//!   - `camera` *Last snapshot*, fed by the retained JPEG on `{base_topic}/{camera}/snapshot`,
//!   - for cameras with a connection (RTSP), `binary_sensor` *Connectivity* (diagnostic), fed
//!     by the retained `{base_topic}/{camera}/connectivity` (`online` while every stream of
//!     the camera delivers video, else `offline`), published on every connect and on change.
//!
//! Every entity except the connectivity sensor uses the box's availability topic
//! (the connectivity sensor *is* that topic: with availability on it, it could
//! only ever show "on" or "unavailable").
//! Discovery configs are retained and re-published on every (re)connect and when
//! Home Assistant announces itself on `{discovery_prefix}/status`.

mod device;
pub mod discovery;
pub mod entities;

pub use device::{CameraConnectivity, ConnectivityState, Device, DeviceFeeds, DiskState, Reaction};
pub use discovery::*;
pub use entities::{DeviceConfig, Features, device_configs, legacy_config_topics};
