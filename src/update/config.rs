//! The `update` section of the config.

use serde::Deserialize;

use super::UpdateError;
use crate::plugin::Validator;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpdateConfig {
    /// The RAUC command-line tool. Updates are unavailable when it is missing or
    /// cannot reach the RAUC service (a laptop, a plain Debian box).
    pub rauc_command: String,
    /// The first boot after an update must pass the health check within this
    /// long, or the box returns to the slot it came from.
    pub confirm_timeout_s: u64,
    /// Optional JSON feed `{"version": "…", "url": "…", "notes": "…"}` naming the
    /// latest bundle for this board.
    pub feed_url: Option<String>,
    /// How often the feed is read.
    pub check_interval_s: u64,
    /// Reboot by itself after an install and out of a slot that fails its
    /// confirmation. Off: the new slot waits for the next reboot.
    pub reboot: bool,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        Self {
            rauc_command: "rauc".into(),
            confirm_timeout_s: 300,
            feed_url: None,
            check_interval_s: 6 * 3600,
            reboot: true,
        }
    }
}

impl UpdateConfig {
    pub fn validate(&self, v: &mut Validator<'_>) {
        v.check(self.confirm_timeout_s >= 10, "confirm_timeout_s", "must be at least 10 s");
        v.check(self.check_interval_s >= 60, "check_interval_s", "must be at least 60 s");
        v.check(!self.rauc_command.is_empty(), "rauc_command", "must not be empty");
        if let Some(url) = &self.feed_url {
            v.check(is_http_url(url), "feed_url", "must be an http:// or https:// URL");
        }
    }
}

fn is_http_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// A bundle URL must be http(s).
pub fn check_url(url: &str) -> Result<(), UpdateError> {
    if is_http_url(url) { Ok(()) } else { Err(UpdateError::BadUrl(url.to_owned())) }
}
