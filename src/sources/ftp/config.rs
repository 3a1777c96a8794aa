//! The top-level `ftp:` block (the box's one server) and a camera's `ftp_subdir`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;

use serde::Deserialize;

use crate::plugin::{PluginConfig, Validator};

/// The box's FTP server (top-level `ftp:`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FtpServerConfig {
    /// Address and port the control connection listens on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Ports for passive-mode data connections, `"first-last"`.
    #[serde(default = "default_passive_ports")]
    pub passive_ports: String,
    /// IPv4 address told to clients in PASV replies; default: the address the
    /// client connected to.
    pub passive_host: Option<Ipv4Addr>,
    /// Env vars holding the one account cameras log in with.
    pub username_env: Option<String>,
    pub password_env: Option<String>,
    /// Log-ins as `anonymous` (or `ftp`) without a password.
    #[serde(default)]
    pub anonymous: bool,
    /// Allows `anonymous` on a listen address other than loopback.
    #[serde(default)]
    pub allow_anonymous_on_network: bool,
    /// Largest upload taken; a bigger one is cut off and removed (552).
    #[serde(default = "default_max_upload")]
    pub max_upload_bytes: u64,
    /// Failed log-ins (per user and client address) before a lockout.
    #[serde(default = "default_max_failed")]
    pub max_failed_logins: u32,
    /// How long a lockout lasts.
    #[serde(default = "default_lockout")]
    pub lockout_s: u64,
    /// An idle session is closed after this long.
    #[serde(default = "default_idle")]
    pub idle_timeout_s: u64,
    /// FTPS (explicit TLS, `AUTH TLS`).
    pub tls: Option<FtpTlsConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FtpTlsConfig {
    /// PEM certificate chain and private key (relative to the config file).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Refuse plain-text sessions.
    #[serde(default)]
    pub required: bool,
}

fn default_listen() -> String {
    "0.0.0.0:2121".into()
}

fn default_passive_ports() -> String {
    "50000-50100".into()
}

fn default_max_upload() -> u64 {
    1 << 30
}

fn default_max_failed() -> u32 {
    5
}

fn default_lockout() -> u64 {
    900
}

fn default_idle() -> u64 {
    600
}

impl FtpServerConfig {
    /// The passive port range, when it is `first-last` with 1024 ≤ first ≤ last.
    pub fn passive_range(&self) -> Option<RangeInclusive<u16>> {
        let (a, b) = self.passive_ports.split_once('-')?;
        let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
        (1024 <= a && a <= b).then_some(a..=b)
    }

    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }
}

impl PluginConfig for FtpServerConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        let addr = self.listen_addr();
        v.check(addr.is_some(), "listen", format!("`{}` is not an address:port (e.g. 0.0.0.0:2121)", self.listen));
        v.check(
            self.passive_range().is_some(),
            "passive_ports",
            format!("`{}` is not a port range `first-last` with 1024 ≤ first ≤ last ≤ 65535", self.passive_ports),
        );
        if let (Some(addr), Some(range)) = (addr, self.passive_range()) {
            v.check(!range.contains(&addr.port()), "passive_ports", "must not include the listen port");
        }
        match (&self.username_env, &self.password_env) {
            (Some(u), Some(p)) => {
                v.require_env("username_env", u);
                v.require_env("password_env", p);
            }
            (Some(_), None) => v.error("password_env", "missing: username_env needs password_env"),
            (None, Some(_)) => v.error("username_env", "missing: password_env needs username_env"),
            (None, None) if !self.anonymous => {
                v.error("username_env", "missing: give the account (username_env, password_env) or anonymous: true")
            }
            (None, None) => {}
        }
        if self.anonymous && !self.allow_anonymous_on_network && addr.is_some_and(|a| !a.ip().is_loopback()) {
            v.error(
                "anonymous",
                format!(
                    "anonymous log-ins on {} would let anyone on the network upload; listen on 127.0.0.1, use an account, or set allow_anonymous_on_network: true",
                    self.listen
                ),
            );
        }
        v.check(self.max_upload_bytes >= 1 << 20, "max_upload_bytes", "must be at least 1048576 (1 MiB)");
        v.check((1..=100).contains(&self.max_failed_logins), "max_failed_logins", "must be between 1 and 100");
        v.check((1..=86_400).contains(&self.lockout_s), "lockout_s", "must be between 1 and 86400");
        v.check((10..=86_400).contains(&self.idle_timeout_s), "idle_timeout_s", "must be between 10 and 86400");
    }
}

impl FtpServerConfig {
    /// Checks that the TLS files exist (resolved against the config file).
    fn check_files(&self, v: &mut Validator<'_>, resolve: &dyn Fn(&std::path::Path) -> PathBuf) {
        let Some(tls) = &self.tls else { return };
        for (field, path) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
            let full = resolve(path);
            v.check(full.is_file(), field, format!("cannot read {}", full.display()));
        }
    }
}

/// A camera's `source.config` for `backend: ftp`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FtpCameraConfig {
    /// The camera's folder under the FTP root (one name, no `/`).
    pub ftp_subdir: String,
}

/// A folder name a camera may have: letters, digits, `_`, `-`, `.`, not
/// starting with a dot (no `.`, `..`, hidden or nested names).
pub(crate) fn safe_subdir(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

impl PluginConfig for FtpCameraConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        v.check(
            safe_subdir(&self.ftp_subdir),
            "ftp_subdir",
            format!("`{}` is not a folder name: use 1-64 letters, digits, `_`, `-` or `.`, one level, not starting with `.`", self.ftp_subdir),
        );
    }
}

/// Checks the `ftp:` block against the cameras that use it: the block is there
/// when a camera uploads by FTP, valid, and no two cameras share a folder
/// (subdirectories compared without case: camera firmware and clients differ).
/// `cameras`: each FTP camera's `source` YAML path and `config` block.
pub fn check_setup(
    block: Option<&serde_json::Value>,
    cameras: &[(String, serde_json::Value)],
    resolve: &dyn Fn(&std::path::Path) -> PathBuf,
    v: &mut Validator<'_>,
) {
    match block {
        Some(block) => {
            let mut v = v.nested("ftp");
            if let Some(cfg) = v.parse::<FtpServerConfig>(block) {
                cfg.validate(&mut v);
                cfg.check_files(&mut v, resolve);
            }
        }
        None => {
            for (path, _) in cameras {
                v.error(
                    &format!("{path}.backend"),
                    "`backend: ftp` needs the top-level `ftp:` block (listen, passive_ports, account)",
                );
            }
        }
    }
    let mut seen: HashMap<String, &str> = HashMap::new();
    for (path, value) in cameras {
        let Ok(cfg) = FtpCameraConfig::deserialize(value) else { continue };
        let key = cfg.ftp_subdir.to_ascii_lowercase();
        if let Some(first) = seen.get(&key) {
            v.error(
                &format!("{path}.config.ftp_subdir"),
                format!("folder `{}` is used by {first} already: each camera needs its own", cfg.ftp_subdir),
            );
        } else {
            seen.insert(key, path);
        }
    }
}
