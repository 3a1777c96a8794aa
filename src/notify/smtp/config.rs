//! The `smtp` notifier's config block.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::notify::email::check_addresses;
use crate::plugin::{PluginConfig, PluginContext, Validator};

/// How the connection to the mail server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which the server must offer (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte ("implicit TLS", port 465).
    Tls,
    /// No encryption: only to a server on this box (loopback) unless `allow_plaintext`.
    None,
}

impl SmtpTls {
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpTls::Starttls => "starttls",
            SmtpTls::Tls => "tls",
            SmtpTls::None => "none",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        }
    }
}

/// The `config` block of the `smtp` notifier.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Notifier name (outbox key); default `smtp`.
    #[serde(default)]
    pub name: Option<String>,
    /// The mail server's host name or IP address.
    pub host: String,
    /// Default 587 (`starttls`), 465 (`tls`), 25 (`none`).
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    /// Allow `tls: none` to a server that is not on this box (the password and
    /// the alerts would cross the network in clear).
    #[serde(default)]
    pub allow_plaintext: bool,
    /// PEM file of a CA the server's certificate may chain to, besides the
    /// built-in Mozilla roots (a private mail server); relative to the config file.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Env var holding the login name (with `password_env`; both or neither).
    #[serde(default)]
    pub username_env: Option<String>,
    /// Env var holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// The sender address (`MAIL FROM` and `From:`).
    pub from: String,
    /// Recipient addresses, at least one.
    pub to: Vec<String>,
    /// Seconds one delivery may take, 1..=300.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
}

/// The notifier's name when the config gives none.
pub const DEFAULT_NAME: &str = "smtp";

fn default_timeout_s() -> u64 {
    30
}

impl SmtpConfig {
    /// A config with every default: `starttls` to `host`, from `from` to `to`.
    pub fn new(host: impl Into<String>, from: impl Into<String>, to: &[&str]) -> Self {
        Self {
            name: None,
            host: host.into(),
            port: None,
            tls: SmtpTls::default(),
            allow_plaintext: false,
            ca_file: None,
            username_env: None,
            password_env: None,
            from: from.into(),
            to: to.iter().map(|s| (*s).to_owned()).collect(),
            timeout_s: default_timeout_s(),
        }
    }

    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| DEFAULT_NAME.into())
    }

    pub fn port(&self) -> u16 {
        self.port.unwrap_or(self.tls.default_port())
    }

    /// Reads `ca_file` (after the shape check): it must exist and hold a PEM certificate.
    pub fn check_files(&self, ctx: &PluginContext, v: &mut Validator<'_>) {
        if let Some(ca) = &self.ca_file
            && let Err(e) = crate::tls::certificates(&ctx.resolve(ca))
        {
            v.error("ca_file", e);
        }
    }
}

/// True for `localhost` and loopback addresses.
pub(super) fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl PluginConfig for SmtpConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        if let Some(name) = &self.name {
            v.check(!name.trim().is_empty(), "name", "must not be empty");
        }
        v.check(
            !self.host.trim().is_empty() && !self.host.contains(['/', ' ', '@']),
            "host",
            format!("`{}` is not a host name or IP address", self.host),
        );
        v.check(self.port != Some(0), "port", "must be between 1 and 65535");
        if self.tls == SmtpTls::None && !self.allow_plaintext && !is_loopback(&self.host) {
            v.error(
                "tls",
                format!(
                    "`none` sends the alerts (and the password) in clear to {}: use starttls or tls, or set \
                     `allow_plaintext: true` if that network is yours",
                    self.host
                ),
            );
        }
        if self.tls == SmtpTls::None && self.ca_file.is_some() {
            v.error("ca_file", "has no effect with `tls: none`: remove it or use starttls or tls");
        }
        match (&self.username_env, &self.password_env) {
            (Some(u), Some(p)) => {
                // The values are read and dropped: never kept or printed here.
                let _ = v.require_env("username_env", u);
                let _ = v.require_env("password_env", p);
            }
            (Some(_), None) => v.error("password_env", "is required when username_env is set"),
            (None, Some(_)) => v.error("username_env", "is required when password_env is set"),
            (None, None) => {}
        }
        check_addresses(v, &self.from, &self.to);
        v.check(
            (1..=300).contains(&self.timeout_s),
            "timeout_s",
            format!("must be between 1 and 300 (got {})", self.timeout_s),
        );
    }
}
