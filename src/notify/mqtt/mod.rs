//! MQTT notifier (Mosquitto → Home Assistant), built on rumqttc.
//!
//! One [`AsyncClient`] and one event-loop task per notifier. The task polls the
//! rumqttc [`EventLoop`], reconnects with jittered exponential backoff (logging once
//! per outage), tracks the connection state for [`Notifier::ping`] and matches
//! acknowledgements to the publishes [`Notifier::send`] is waiting for.
//!
//! # Delivery semantics
//! `send` returns `Ok` only when the broker has the alert: with QoS 1 after the
//! PUBACK of every message of the alert, with QoS 0 once written to the socket.
//! rumqttc does not tell a caller which packet id its publish got, so every publish
//! goes through one lock that appends a waiter to a FIFO in the same order as the
//! request enters rumqttc's channel; the event loop hands out packet ids in that
//! order (`Outgoing::Publish(pkid)`), which binds each waiter to its packet id
//! until `Incoming::PubAck(pkid)` arrives (pkid collisions, `Outgoing::AwaitAck`,
//! are followed too).
//!
//! No hidden duplicates: the session is clean (`clean_session = true`), `send`
//! refuses at once while disconnected, and when a connection dies the task empties
//! rumqttc's state (unacknowledged publishes, requests still in its channel) and
//! fails their waiters, so nothing the pipeline was told had failed is published
//! later behind its back. The one window left: a publish whose ack does not come
//! within `ack_timeout_s` on a connection that stays up is still in flight and may
//! yet reach the broker after `send` returned `Timeout`. The pipeline's outbox then
//! retries, and consumers dedupe with `dedupe_key` (the clip id).
//!
//! Availability: the last will is `offline` (retained) on
//! `{base_topic}/{device_id}/availability`; `online` (retained) is published on
//! every connect, `offline` on graceful shutdown. The connection also carries the
//! box's Home Assistant device ([`crate::homeassistant::Device`]): its discovery
//! on every connect and its subscriptions. The notifier itself only publishes
//! alerts (and, with Home Assistant, each camera's state, event and snapshot).
//!
//! Files: `config.rs` (the config block), `link.rs` (acknowledgement
//! bookkeeping), `connection.rs` (event loop, reconnects, announcements).

mod config;
mod connection;
mod link;
mod tls;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use rumqttc::QoS;
use tracing::{debug, info, warn};

use config::check_topic_template;
pub use config::{DEFAULT_PORT, DEFAULT_TLS_PORT, MqttConfig, MqttTlsConfig};
use connection::{ConnectOptions, Connection};
use link::{Outbound, PublishError};

use super::payload::alert_payload;
use super::{Notifier, NotifyError};
use crate::domain::{Alert, CameraName};
use crate::homeassistant::{self as ha, Device, HomeAssistantConfig};
use crate::plugin::{PluginBuildError, PluginContext};

/// Largest snapshot published to the camera entity; bigger ones are skipped.
pub const MAX_SNAPSHOT_BYTES: usize = 8 * 1024 * 1024;

/// The alert topic for one alert.
pub fn render_topic(template: &str, alert: &Alert) -> String {
    template.replace("{camera_name}", alert.camera_name.as_str()).replace("{clip_id}", alert.clip_id.as_str())
}

/// The MQTT notifier. Dropping it without [`Notifier::shutdown`] stops the event
/// loop and closes the socket, which makes the broker publish the last will.
pub struct MqttNotifier {
    name: String,
    connection: Connection,
    /// With `{device_id}` filled in.
    topic_template: String,
    qos: QoS,
    retain: bool,
    ack_timeout: Duration,
    ha: Option<HomeAssistantConfig>,
    device_id: String,
}

impl std::fmt::Debug for MqttNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttNotifier")
            .field("name", &self.name)
            .field("target", &self.connection.target)
            .finish_non_exhaustive()
    }
}

fn build_error(msg: impl Into<String>) -> PluginBuildError {
    PluginBuildError::new("notifier", "mqtt", msg.into())
}

fn read_env(field: &str, var: &str) -> Result<String, PluginBuildError> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(build_error(format!("{field}: environment variable {var} is not set"))),
    }
}

/// Builds the notifier and starts its connection, which also announces `device`
/// (the box's Home Assistant device) when given. Waits briefly (at most 3 s) for
/// the first connection; a broker that is down is not an error (the notifier
/// keeps reconnecting and `send` fails until then, so the outbox holds the alerts).
pub async fn build(
    cfg: MqttConfig,
    ctx: &PluginContext,
    device: Option<Device>,
) -> Result<MqttNotifier, PluginBuildError> {
    let qos = match cfg.qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        n => return Err(build_error(format!("qos must be 0 or 1, got {n}"))),
    };
    check_topic_template(&cfg.topic_template).map_err(|m| build_error(format!("topic_template: {m}")))?;
    if !(cfg.ack_timeout_s.is_finite() && cfg.ack_timeout_s > 0.0) {
        return Err(build_error("ack_timeout_s must be > 0"));
    }
    let credentials = match (&cfg.username_env, &cfg.password_env) {
        (Some(u), Some(p)) => Some((read_env("username_env", u)?, read_env("password_env", p)?)),
        (None, None) => None,
        _ => return Err(build_error("set both username_env and password_env, or neither")),
    };
    let mut client_id = cfg.client_id.clone().unwrap_or_else(|| format!("homesec-{}", ctx.device_id));
    // A tool beside the daemon connects as a client of its own (unless the
    // config pins the id).
    if let (None, Some(tag)) = (&cfg.client_id, &ctx.client_tag) {
        client_id = format!("{client_id}-{tag}");
    }
    let tls = match cfg.tls.enabled {
        true => Some(tls::client_config(&cfg.tls, ctx).map_err(|problems| {
            let all: Vec<String> = problems.into_iter().map(|(key, msg)| format!("tls.{key}: {msg}")).collect();
            build_error(all.join("; "))
        })?),
        false => None,
    };
    let ack_timeout = Duration::from_secs_f64(cfg.ack_timeout_s);
    let opts = ConnectOptions {
        client_id,
        host: cfg.host.clone(),
        port: cfg.port(),
        credentials,
        tls,
        keepalive: Duration::from_secs(cfg.keepalive_s),
        ack_timeout,
        reconnect_max: Duration::from_secs_f64(cfg.reconnect_max_s.clamp(0.5, 3600.0)),
        capacity: 128 + 16 * ctx.cameras.len(),
        availability_topic: ha::availability_topic(&cfg.home_assistant.base_topic, &ctx.device_id),
    };
    let connection = Connection::start(opts, device).await;
    Ok(MqttNotifier {
        name: cfg.name.clone().unwrap_or_else(|| "mqtt".into()),
        connection,
        topic_template: cfg.topic_template.replace("{device_id}", &ctx.device_id),
        qos,
        retain: cfg.retain,
        ack_timeout,
        ha: cfg.home_assistant.enabled.then_some(cfg.home_assistant),
        device_id: ctx.device_id.clone(),
    })
}

impl MqttNotifier {
    /// Whether the notifier is connected to the broker now.
    pub fn is_connected(&self) -> bool {
        self.connection.is_connected()
    }

    /// Where alerts go: `mqtt://host:port` or `mqtts://host:port`.
    pub fn target(&self) -> &str {
        &self.connection.target
    }

    /// Waits until connected (true) or `timeout` passes (false).
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        self.connection.wait_connected(timeout).await
    }

    /// The retained availability topic (`online` / `offline`).
    pub fn availability_topic(&self) -> &str {
        self.connection.availability_topic()
    }

    /// The messages of one alert, in publish order: the Home Assistant snapshot,
    /// state and event first (so the image is there when automations fire), the
    /// alert topic last.
    fn alert_messages(&self, alert: &Alert, snapshot: Option<&[u8]>) -> Result<Vec<Outbound>, PublishError> {
        let mut msgs = Vec::with_capacity(4);
        if let Some(h) = &self.ha {
            let cam: &CameraName = &alert.camera_name;
            match snapshot {
                Some(jpeg) if jpeg.len() <= MAX_SNAPSHOT_BYTES => {
                    msgs.push(Outbound::retained(ha::snapshot_topic(&h.base_topic, &self.device_id, cam), jpeg));
                }
                Some(jpeg) => warn!(
                    camera = %alert.camera_name, clip_id = %alert.clip_id, bytes = jpeg.len(),
                    "snapshot too large for MQTT; not published"
                ),
                None => {}
            }
            msgs.push(Outbound::retained(
                ha::state_topic(&h.base_topic, &self.device_id, cam),
                ha::state_payload(alert),
            ));
            msgs.push(Outbound {
                topic: ha::event_topic(&h.base_topic, &self.device_id, cam),
                qos: QoS::AtLeastOnce,
                retain: false,
                payload: ha::event_payload(alert).into_bytes(),
            });
        }
        msgs.push(Outbound {
            topic: render_topic(&self.topic_template, alert),
            qos: self.qos,
            retain: self.retain,
            payload: alert_payload(alert)?,
        });
        Ok(msgs)
    }

    fn delivery(&self, e: PublishError) -> NotifyError {
        match e {
            PublishError::ConnectionLost | PublishError::Stopped => match self.connection.last_error() {
                Some(why) => NotifyError::NotConnected(format!("{} ({why})", self.connection.target)),
                None => NotifyError::NotConnected(self.connection.target.clone()),
            },
            PublishError::AckTimeout => NotifyError::Timeout(self.connection.target.clone()),
            other => NotifyError::Delivery { target: self.connection.target.clone(), source: Box::new(other) },
        }
    }

    /// Publishes `msgs` and waits for all their acknowledgements.
    async fn publish_all(&self, msgs: Vec<Outbound>) -> Result<(), NotifyError> {
        self.connection.publish_all(msgs, self.ack_timeout).await.map_err(|e| self.delivery(e))
    }
}

#[async_trait]
impl Notifier for MqttNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        let ha = if self.ha.is_some() { "on" } else { "off" };
        format!("{} topic {} (Home Assistant discovery {ha})", self.connection.target, self.topic_template)
    }

    /// Why the notifier is not connected (e.g. the TLS reason a handshake
    /// failed), while it is not.
    fn last_error(&self) -> Option<String> {
        self.connection.last_error()
    }

    async fn send(&self, alert: &Alert, snapshot: Option<&[u8]>) -> Result<(), NotifyError> {
        let started = Instant::now();
        let msgs = self.alert_messages(alert, snapshot).map_err(|e| self.delivery(e))?;
        let count = msgs.len();
        let topic = render_topic(&self.topic_template, alert);
        match self.publish_all(msgs).await {
            Ok(()) => {
                info!(
                    camera = %alert.camera_name, clip_id = %alert.clip_id, topic, messages = count,
                    elapsed_ms = started.elapsed().as_millis() as u64, "alert published to MQTT"
                );
                Ok(())
            }
            // The outage itself is logged once by the event loop; the outbox retries.
            Err(e @ NotifyError::NotConnected(_)) => {
                debug!(camera = %alert.camera_name, clip_id = %alert.clip_id, topic, "MQTT alert not sent: not connected");
                Err(e)
            }
            Err(e) => {
                warn!(camera = %alert.camera_name, clip_id = %alert.clip_id, topic, error = %e, "MQTT alert not delivered");
                Err(e)
            }
        }
    }

    /// Home Assistant and automations replace an alert by its `dedupe_key`.
    fn takes_updates(&self) -> bool {
        true
    }

    async fn ping(&self) -> bool {
        self.is_connected()
    }

    /// Publishes `offline` (retained), disconnects cleanly and stops the event loop.
    async fn shutdown(&self) {
        self.connection.shutdown(self.ack_timeout).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::ConfigIssue;
    use crate::plugin::{PluginConfig, Validator};

    fn issues(cfg: &MqttConfig) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let locate = |_: &str| None;
        cfg.validate(&mut Validator::new("notifiers[0].config", &mut issues, &locate));
        issues
    }

    use crate::notify::payload::tests::alert;

    #[test]
    fn defaults_fill_an_empty_block() {
        let cfg: MqttConfig = serde_json::from_value(serde_json::json!({})).expect("defaults");
        assert_eq!(cfg, MqttConfig::default());
        assert_eq!(cfg.host, "127.0.0.1");
        assert_eq!(cfg.port(), 1883);
        let tls: MqttConfig = serde_json::from_value(serde_json::json!({"tls": {"enabled": true}})).expect("tls");
        assert_eq!(tls.port(), 8883);
        let pinned: MqttConfig =
            serde_json::from_value(serde_json::json!({"port": 8884, "tls": {"enabled": true}})).expect("tls");
        assert_eq!(pinned.port(), 8884);
        assert_eq!(cfg.qos, 1);
        assert!(!cfg.retain);
        assert_eq!(cfg.topic_template, "homecam/alerts/{camera_name}");
        assert!(cfg.home_assistant.enabled);
        assert_eq!(cfg.home_assistant.discovery_prefix, "homeassistant");
        assert_eq!(cfg.home_assistant.base_topic, "homecam");
        assert!(issues(&cfg).is_empty());
        let int: MqttConfig = serde_json::from_value(serde_json::json!({"ack_timeout_s": 5})).expect("integer");
        assert_eq!(int.ack_timeout_s, 5.0);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(serde_json::from_value::<MqttConfig>(serde_json::json!({"hots": "x"})).is_err());
        assert!(serde_json::from_value::<MqttConfig>(serde_json::json!({"home_assistant": {"prefix": "x"}})).is_err());
    }

    #[test]
    fn every_problem_is_reported() {
        let cfg = MqttConfig {
            host: " ".into(),
            port: Some(0),
            username_env: Some("HOMESEC_TEST_SURELY_UNSET_USER".into()),
            topic_template: "homecam/{camera}/#".into(),
            qos: 2,
            keepalive_s: 1,
            ack_timeout_s: 0.0,
            home_assistant: HomeAssistantConfig { base_topic: "".into(), ..Default::default() },
            ..Default::default()
        };
        let paths: Vec<String> = issues(&cfg).into_iter().map(|i| i.path).collect();
        for p in [
            "host",
            "port",
            "password_env",
            "topic_template",
            "qos",
            "keepalive_s",
            "ack_timeout_s",
            "home_assistant.base_topic",
        ] {
            assert!(paths.contains(&format!("notifiers[0].config.{p}")), "missing {p} in {paths:?}");
        }
    }

    #[test]
    fn credentials_come_from_the_environment() {
        let cfg = MqttConfig {
            username_env: Some("HOMESEC_TEST_SURELY_UNSET_USER".into()),
            password_env: Some("HOMESEC_TEST_SURELY_UNSET_PASS".into()),
            ..Default::default()
        };
        let msgs: Vec<String> = issues(&cfg).into_iter().map(|i| i.to_string()).collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].contains("HOMESEC_TEST_SURELY_UNSET_USER is not set"), "{msgs:?}");
    }

    #[test]
    fn topic_templates() {
        assert!(check_topic_template("homecam/alerts/{camera_name}").is_ok());
        assert!(check_topic_template("homecam/{camera_name}/{clip_id}").is_ok());
        assert!(check_topic_template("homecam/alerts").is_ok());
        assert!(check_topic_template("homecam/{camera}").is_err());
        assert!(check_topic_template("homecam/{camera_name").is_err());
        assert!(check_topic_template("homecam/camera_name}").is_err());
        assert!(check_topic_template("homecam/+/x").is_err());
        assert!(check_topic_template("").is_err());
        let a = alert();
        assert_eq!(render_topic("homecam/alerts/{camera_name}", &a), "homecam/alerts/front");
        assert_eq!(render_topic("c/{camera_name}/{clip_id}", &a), "c/front/front_1700000000");
    }
}
