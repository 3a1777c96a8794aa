//! The `mqtt` notifier's config block.

use serde::Deserialize;

use crate::homeassistant::HomeAssistantConfig;
use crate::plugin::{PluginConfig, Validator};

/// The `config` block of the `mqtt` notifier.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Notifier name (outbox key); default `mqtt`. Set it when several MQTT notifiers are configured.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// Env var holding the username (set both `username_env` and `password_env`, or neither).
    #[serde(default)]
    pub username_env: Option<String>,
    /// Env var holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Default `homesec-{device_id}`; must be unique on the broker.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Alert topic; placeholders `{camera_name}`, `{clip_id}` and `{device_id}`.
    #[serde(default = "default_topic_template")]
    pub topic_template: String,
    /// QoS of the alert: 1 (acknowledged, default) or 0.
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Retain the alert message.
    #[serde(default)]
    pub retain: bool,
    #[serde(default = "default_keepalive_s")]
    pub keepalive_s: u64,
    /// How long `send` waits for the broker's acknowledgement.
    #[serde(default = "default_ack_timeout_s")]
    pub ack_timeout_s: f64,
    /// Longest wait between reconnection attempts (the backoff starts at 0.5 s).
    #[serde(default = "default_reconnect_max_s")]
    pub reconnect_max_s: f64,
    #[serde(default)]
    pub home_assistant: HomeAssistantConfig,
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    1883
}
fn default_topic_template() -> String {
    "homecam/alerts/{camera_name}".into()
}
fn default_qos() -> u8 {
    1
}
fn default_keepalive_s() -> u64 {
    30
}
fn default_ack_timeout_s() -> f64 {
    10.0
}
fn default_reconnect_max_s() -> f64 {
    30.0
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            name: None,
            host: default_host(),
            port: default_port(),
            username_env: None,
            password_env: None,
            client_id: None,
            topic_template: default_topic_template(),
            qos: default_qos(),
            retain: false,
            keepalive_s: default_keepalive_s(),
            ack_timeout_s: default_ack_timeout_s(),
            reconnect_max_s: default_reconnect_max_s(),
            home_assistant: HomeAssistantConfig::default(),
        }
    }
}

impl PluginConfig for MqttConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        if let Some(name) = &self.name {
            v.check(!name.trim().is_empty(), "name", "must not be empty");
        }
        v.check(!self.host.trim().is_empty(), "host", "must not be empty");
        v.check(self.port != 0, "port", "must be between 1 and 65535");
        match (&self.username_env, &self.password_env) {
            (Some(u), Some(p)) => {
                v.require_env("username_env", u);
                v.require_env("password_env", p);
            }
            (Some(_), None) => v.error("password_env", "is required when username_env is set"),
            (None, Some(_)) => v.error("username_env", "is required when password_env is set"),
            (None, None) => {}
        }
        if let Some(id) = &self.client_id {
            v.check(!id.trim().is_empty(), "client_id", "must not be empty");
        }
        if let Err(msg) = check_topic_template(&self.topic_template) {
            v.error("topic_template", msg);
        }
        v.check(self.qos <= 1, "qos", format!("must be 0 or 1 (got {}; QoS 2 is not supported)", self.qos));
        v.check(
            (5..=3600).contains(&self.keepalive_s),
            "keepalive_s",
            format!("must be between 5 and 3600 (got {})", self.keepalive_s),
        );
        v.check(
            self.ack_timeout_s.is_finite() && self.ack_timeout_s > 0.0 && self.ack_timeout_s <= 300.0,
            "ack_timeout_s",
            format!("must be > 0 and at most 300 (got {})", self.ack_timeout_s),
        );
        v.check(
            self.reconnect_max_s.is_finite() && (0.5..=3600.0).contains(&self.reconnect_max_s),
            "reconnect_max_s",
            format!("must be between 0.5 and 3600 (got {})", self.reconnect_max_s),
        );
        self.home_assistant.validate(&mut v.nested("home_assistant"));
    }
}

/// The template must be non-empty, use only `{camera_name}` / `{clip_id}` and no wildcards.
pub(super) fn check_topic_template(t: &str) -> Result<(), String> {
    if t.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if t.contains(['+', '#', '\0']) {
        return Err(format!("`{t}` must not contain the MQTT wildcards `+`/`#`"));
    }
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!("`{t}` has an unclosed `{{`"));
        };
        let name = &after[..close];
        if !["camera_name", "clip_id", "device_id"].contains(&name) {
            return Err(format!(
                "unknown placeholder `{{{name}}}` in `{t}` (known: {{camera_name}}, {{clip_id}}, {{device_id}})"
            ));
        }
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("`{t}` has a `}}` without `{{`"));
    }
    Ok(())
}
