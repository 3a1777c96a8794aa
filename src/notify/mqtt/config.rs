//! The `mqtt` notifier's config block.

use std::path::PathBuf;

use serde::Deserialize;

use crate::homeassistant::HomeAssistantConfig;
use crate::plugin::{PluginConfig, PluginContext, Validator};

/// The `config` block of the `mqtt` notifier.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Notifier name (outbox key); default `mqtt`. Set it when several MQTT notifiers are configured.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_host")]
    pub host: String,
    /// Default 1883, or 8883 with `tls.enabled`.
    #[serde(default)]
    pub port: Option<u16>,
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
    /// MQTT over TLS.
    #[serde(default)]
    pub tls: MqttTlsConfig,
    #[serde(default)]
    pub home_assistant: HomeAssistantConfig,
}

/// The `tls` block of the `mqtt` notifier. Relative file paths resolve against
/// the config file's folder.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTlsConfig {
    /// Connect over TLS (default false).
    #[serde(default)]
    pub enabled: bool,
    /// PEM file of the CA(s) the broker's certificate must chain to; default
    /// the Mozilla root set built into the binary.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM certificate (chain) the box presents for mutual TLS, with `client_key_file`.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `client_cert_file`.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// The name the broker's certificate must carry, when it is not `host`
    /// (e.g. `host` is an IP address).
    #[serde(default)]
    pub server_name: Option<String>,
}

/// The port when the config gives none.
pub const DEFAULT_PORT: u16 = 1883;
/// The port when the config gives none and TLS is on.
pub const DEFAULT_TLS_PORT: u16 = 8883;

impl MqttConfig {
    /// Reads the TLS files (after the shape check): each must exist and parse.
    pub fn check_files(&self, ctx: &PluginContext, v: &mut Validator<'_>) {
        super::tls::check_files(&self.tls, ctx, &mut v.nested("tls"));
    }

    /// The broker's port: `port`, or the default for the transport.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(if self.tls.enabled { DEFAULT_TLS_PORT } else { DEFAULT_PORT })
    }
}

fn default_host() -> String {
    "127.0.0.1".into()
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
            port: None,
            username_env: None,
            password_env: None,
            client_id: None,
            topic_template: default_topic_template(),
            qos: default_qos(),
            retain: false,
            keepalive_s: default_keepalive_s(),
            ack_timeout_s: default_ack_timeout_s(),
            reconnect_max_s: default_reconnect_max_s(),
            tls: MqttTlsConfig::default(),
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
        v.check(self.port != Some(0), "port", "must be between 1 and 65535");
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
        self.tls.validate(&mut v.nested("tls"));
        self.home_assistant.validate(&mut v.nested("home_assistant"));
    }
}

impl MqttTlsConfig {
    /// The shape of the block; [`super::tls::check_files`] reads the files.
    fn validate(&self, v: &mut Validator<'_>) {
        if !self.enabled {
            let set = [
                ("ca_file", self.ca_file.is_some()),
                ("client_cert_file", self.client_cert_file.is_some()),
                ("client_key_file", self.client_key_file.is_some()),
                ("server_name", self.server_name.is_some()),
            ];
            for (key, _) in set.iter().filter(|(_, set)| *set) {
                v.error(key, "has no effect while tls.enabled is false: set `enabled: true` or remove it");
            }
            return;
        }
        match (&self.client_cert_file, &self.client_key_file) {
            (Some(_), None) => v.error("client_key_file", "is required when client_cert_file is set"),
            (None, Some(_)) => v.error("client_cert_file", "is required when client_key_file is set"),
            _ => {}
        }
        if let Some(name) = &self.server_name
            && let Err(e) = super::tls::server_name(name)
        {
            v.error("server_name", e);
        }
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
