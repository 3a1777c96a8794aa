//! The `ntfy` notifier's config block.

use serde::Deserialize;

use crate::domain::RiskLevel;
use crate::plugin::{PluginConfig, Validator};

/// ntfy priorities (1 min … 5 max) by the alert's risk.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Priorities {
    /// Alerts without a risk (no VLM, or the early alert before the analysis).
    #[serde(default = "three")]
    pub unrated: u8,
    #[serde(default = "three")]
    pub low: u8,
    #[serde(default = "four")]
    pub medium: u8,
    #[serde(default = "five")]
    pub high: u8,
}

fn three() -> u8 {
    3
}
fn four() -> u8 {
    4
}
fn five() -> u8 {
    5
}

impl Default for Priorities {
    fn default() -> Self {
        Self { unrated: 3, low: 3, medium: 4, high: 5 }
    }
}

impl Priorities {
    /// The priority for an alert of this risk.
    pub fn of(&self, risk: Option<RiskLevel>) -> u8 {
        match risk {
            None => self.unrated,
            Some(RiskLevel::Low) => self.low,
            Some(RiskLevel::Medium) => self.medium,
            Some(RiskLevel::High) => self.high,
        }
    }
}

/// The `config` block of the `ntfy` notifier.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NtfyConfig {
    /// Notifier name (outbox key); default `ntfy`.
    #[serde(default)]
    pub name: Option<String>,
    /// The ntfy server: `https://ntfy.sh` or your own (http only to this box).
    #[serde(default = "default_server")]
    pub server: String,
    /// The topic the phone subscribes to (letters, digits, `-`, `_`; up to 64).
    pub topic: String,
    /// Env var holding an access token (`tk_…`), sent as `Authorization: Bearer`.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Priority by risk.
    #[serde(default)]
    pub priority: Priorities,
    /// Attach the snapshot (default true).
    #[serde(default = "yes")]
    pub attach_snapshot: bool,
    /// Seconds one request may take, 1..=120.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
}

pub const DEFAULT_NAME: &str = "ntfy";

fn default_server() -> String {
    "https://ntfy.sh".into()
}
fn yes() -> bool {
    true
}
fn default_timeout_s() -> u64 {
    15
}

impl NtfyConfig {
    pub fn new(server: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            name: None,
            server: server.into(),
            topic: topic.into(),
            token_env: None,
            priority: Priorities::default(),
            attach_snapshot: true,
            timeout_s: default_timeout_s(),
        }
    }

    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| DEFAULT_NAME.into())
    }
}

/// `server` parsed: https, or http only to this box; no credentials, path or query.
pub(super) fn parse_server(url: &str) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let loopback = matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match u.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err("must be https: over http the alerts and the token cross the network in clear \
                        (http only to 127.0.0.1)"
                .into());
        }
        other => return Err(format!("must be an https URL, not {other}")),
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("must not carry credentials: put an access token in the variable named by `token_env`".into());
    }
    if u.query().is_some() {
        return Err("must not have a query string".into());
    }
    Ok(u)
}

/// ntfy's topic rule.
pub(super) fn check_topic(topic: &str) -> Result<(), String> {
    let ok =
        (1..=64).contains(&topic.len()) && topic.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok { Ok(()) } else { Err(format!("`{topic}` must be 1 to 64 letters, digits, `-` or `_`")) }
}

impl PluginConfig for NtfyConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        if let Some(name) = &self.name {
            v.check(!name.trim().is_empty(), "name", "must not be empty");
        }
        if let Err(e) = parse_server(&self.server) {
            v.error("server", e);
        }
        if let Err(e) = check_topic(&self.topic) {
            v.error("topic", e);
        }
        if let Some(env) = &self.token_env {
            // The value is read and dropped: never kept or printed here.
            let _ = v.require_env("token_env", env);
        }
        for (key, p) in [
            ("unrated", self.priority.unrated),
            ("low", self.priority.low),
            ("medium", self.priority.medium),
            ("high", self.priority.high),
        ] {
            v.check((1..=5).contains(&p), &format!("priority.{key}"), format!("must be between 1 and 5 (got {p})"));
        }
        v.check(
            (1..=120).contains(&self.timeout_s),
            "timeout_s",
            format!("must be between 1 and 120 (got {})", self.timeout_s),
        );
    }
}
