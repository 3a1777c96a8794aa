//! The `sendgrid` notifier's config block.

use serde::Deserialize;

use crate::notify::email::check_addresses;
use crate::plugin::{PluginConfig, Validator};

/// The `config` block of the `sendgrid` notifier.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendGridConfig {
    /// Notifier name (outbox key); default `sendgrid`.
    #[serde(default)]
    pub name: Option<String>,
    /// Env var holding the SendGrid API key (`SG.…`, with the Mail Send permission).
    pub api_key_env: String,
    /// The sender: an address verified in SendGrid (single sender or domain).
    pub from: String,
    /// The sender's display name.
    #[serde(default)]
    pub from_name: Option<String>,
    /// Recipient addresses, at least one.
    pub to: Vec<String>,
    /// Seconds one request may take, 1..=120.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
    /// The API's base URL; only tests change it.
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

pub const DEFAULT_NAME: &str = "sendgrid";
pub const DEFAULT_BASE_URL: &str = "https://api.sendgrid.com";

fn default_timeout_s() -> u64 {
    15
}
fn default_base_url() -> String {
    DEFAULT_BASE_URL.into()
}

impl SendGridConfig {
    pub fn new(api_key_env: impl Into<String>, from: impl Into<String>, to: &[&str]) -> Self {
        Self {
            name: None,
            api_key_env: api_key_env.into(),
            from: from.into(),
            from_name: None,
            to: to.iter().map(|s| (*s).to_owned()).collect(),
            timeout_s: default_timeout_s(),
            base_url: default_base_url(),
        }
    }

    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| DEFAULT_NAME.into())
    }
}

/// `base_url` parsed: https, or http only to this box (a test stand-in).
pub(super) fn parse_base_url(url: &str) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let loopback = matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match u.scheme() {
        "https" => {}
        "http" if loopback => {}
        other => return Err(format!("must be https (http only to 127.0.0.1), not {other}")),
    }
    if !u.username().is_empty() || u.password().is_some() || u.query().is_some() {
        return Err("must be a plain base URL (no credentials, no query)".into());
    }
    Ok(u)
}

impl PluginConfig for SendGridConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        if let Some(name) = &self.name {
            v.check(!name.trim().is_empty(), "name", "must not be empty");
        }
        // The value is read and dropped: never kept or printed here.
        let _ = v.require_env("api_key_env", &self.api_key_env);
        check_addresses(v, &self.from, &self.to);
        v.check(
            (1..=120).contains(&self.timeout_s),
            "timeout_s",
            format!("must be between 1 and 120 (got {})", self.timeout_s),
        );
        if let Err(e) = parse_base_url(&self.base_url) {
            v.error("base_url", e);
        }
    }
}
