//! The `webhook` notifier's config block.

use serde::Deserialize;

use crate::plugin::{PluginConfig, Validator};

/// The `config` block of the `webhook` notifier.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Notifier name (outbox key); default `webhook`. Set it when several webhooks are configured.
    #[serde(default)]
    pub name: Option<String>,
    /// Where alerts are POSTed: an `http` or `https` URL without credentials.
    pub url: String,
    /// Env var holding the HMAC secret; when set, every request carries
    /// `X-HomeSec-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Seconds one request may take (connect, send, answer), 1..=120.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
}

/// The notifier's name when the config gives none.
pub const DEFAULT_NAME: &str = "webhook";

fn default_timeout_s() -> u64 {
    10
}

impl WebhookConfig {
    /// A config with every default, posting to `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self { name: None, url: url.into(), secret_env: None, timeout_s: default_timeout_s() }
    }

    /// The notifier's name: `name`, or `webhook`.
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| DEFAULT_NAME.into())
    }
}

/// Parses `url`: http(s), a host, no user or password (those would end up in
/// logs; the secret goes in `secret_env`).
pub(super) fn parse_url(url: &str) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("must be an http or https URL, not {}", u.scheme()));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("must not carry credentials (user:password@): put the secret in an environment variable \
                    named by `secret_env`"
            .into());
    }
    Ok(u)
}

/// The URL as logs and errors show it: scheme, host, port and path, without
/// the query string (which may carry a token) or credentials.
pub(super) fn display_url(u: &reqwest::Url) -> String {
    let mut shown = u.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

impl PluginConfig for WebhookConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        if let Some(name) = &self.name {
            v.check(!name.trim().is_empty(), "name", "must not be empty");
        }
        if let Err(msg) = parse_url(&self.url) {
            v.error("url", msg);
        }
        if let Some(env) = &self.secret_env {
            // The value is read and dropped: it is never kept or printed here.
            let _ = v.require_env("secret_env", env);
        }
        v.check(
            (1..=120).contains(&self.timeout_s),
            "timeout_s",
            format!("must be between 1 and 120 (got {})", self.timeout_s),
        );
    }
}
