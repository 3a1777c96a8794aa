//! ntfy notifier: phone push through an ntfy server (ntfy.sh or self-hosted).
//!
//! # The request
//! With a snapshot: `PUT <server>/<topic>` with the JPEG as the body,
//! `Filename: snapshot.jpg` and the text in the `Message` header (ntfy's way
//! to attach a file). Without one: `POST <server>/<topic>` with the text as
//! the body. Both carry `Title` (`HomeSec <camera>`), `Priority` (from the
//! risk, see [`Priorities`]), `Tags` (an emoji for the risk, the camera, the
//! detected classes) and, when the alert has a web `view_url`, `Click`.
//! With `token_env`, `Authorization: Bearer <token>`. Header values that are
//! not ASCII are sent RFC 2047-encoded (`=?UTF-8?B?…?=`), which ntfy decodes.
//!
//! # Delivery semantics
//! A 2xx answer means delivered; anything else is an error and the outbox
//! retries until `retry.notify_ttl_s`. 413 (the server takes no attachment
//! this large, or none at all) sends the alert again at once without the
//! snapshot rather than losing it. 401/403 are logged as refusals (a wrong
//! token or a topic the token may not write). The token is never logged.

mod config;

use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use tracing::{info, warn};

pub use config::{DEFAULT_NAME, NtfyConfig, Priorities};

use super::email::SNAPSHOT_FILENAME;
use super::{LastFailure, Notifier, NotifyError};
use crate::domain::{Alert, AlertStage, RiskLevel};
use crate::plugin::{PluginBuildError, PluginContext};

const EXCERPT_CHARS: usize = 200;

/// ntfy's answer when it did not take the message.
#[derive(Debug, thiserror::Error)]
pub enum NtfyError {
    #[error("ntfy refused the access token for {topic} (HTTP {status}){}", quoted(.reason))]
    Unauthorized { topic: String, status: u16, reason: String },
    #[error("ntfy answered HTTP {status}{}", quoted(.reason))]
    Status { status: u16, reason: String },
    #[error("cannot reach the ntfy server")]
    Request(#[source] reqwest::Error),
}

fn quoted(reason: &str) -> String {
    if reason.is_empty() { String::new() } else { format!(": {reason}") }
}

/// ntfy's error body is `{"code":40101,"http":401,"error":"unauthorized",…}`.
fn reason(body: &[u8]) -> String {
    let parsed = serde_json::from_slice::<serde_json::Value>(body).ok();
    let text = match parsed.as_ref().and_then(|v| v.get("error")?.as_str()) {
        Some(e) => e.to_owned(),
        None => String::from_utf8_lossy(body).trim().to_owned(),
    };
    text.chars().take(EXCERPT_CHARS).collect()
}

/// The access token; its `Debug` shows nothing.
struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

/// The ntfy notifier.
pub struct NtfyNotifier {
    name: String,
    /// `<server>/<topic>`.
    url: reqwest::Url,
    topic: String,
    token: Option<Token>,
    priority: Priorities,
    attach: bool,
    http: reqwest::Client,
    last_failure: LastFailure,
}

impl fmt::Debug for NtfyNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NtfyNotifier")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

fn build_error(msg: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> PluginBuildError {
    PluginBuildError::new("notifier", "ntfy", msg)
}

/// Builds the notifier: checks server and topic, reads the token.
pub fn build(cfg: NtfyConfig, ctx: &PluginContext) -> Result<NtfyNotifier, PluginBuildError> {
    let _ = ctx; // nothing box-specific
    let mut url = config::parse_server(&cfg.server).map_err(|m| build_error(format!("server {m}")))?;
    config::check_topic(&cfg.topic).map_err(|m| build_error(format!("topic {m}")))?;
    let base = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{base}/{}", cfg.topic));
    let token = match &cfg.token_env {
        None => None,
        Some(env) => match std::env::var(env) {
            Ok(t) if !t.trim().is_empty() => Some(Token(t.trim().to_owned())),
            _ => return Err(build_error(format!("token_env: environment variable {env} is not set"))),
        },
    };
    let timeout = Duration::from_secs(cfg.timeout_s.clamp(1, 120));
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("homesec/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(build_error)?;
    Ok(NtfyNotifier {
        name: cfg.name(),
        url,
        topic: cfg.topic,
        token,
        priority: cfg.priority,
        attach: cfg.attach_snapshot,
        http,
        last_failure: LastFailure::default(),
    })
}

/// One push, before it becomes a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    pub title: String,
    pub message: String,
    pub priority: u8,
    pub tags: Vec<String>,
    pub click: Option<String>,
}

/// The push for an alert.
pub fn push(alert: &Alert, priorities: &Priorities) -> Push {
    let seen = if alert.detected_classes.is_empty() { "motion".into() } else { alert.detected_classes.join(", ") };
    let mut message = match alert.summary.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(summary) => summary.to_owned(),
        None if alert.stage == AlertStage::Detected => format!("{seen} detected (recording)"),
        None => format!("{seen} on camera"),
    };
    if let Some(risk) = alert.risk_level {
        message.push_str(&format!(" (risk {risk})"));
    }
    if alert.upload_failed && alert.stage != AlertStage::Detected {
        message.push_str(" [clip kept on the box, not uploaded]");
    }
    let emoji = match alert.risk_level {
        Some(RiskLevel::High) => "rotating_light",
        Some(RiskLevel::Medium) => "warning",
        Some(RiskLevel::Low) => "white_check_mark",
        None => "movie_camera",
    };
    let mut tags = vec![emoji.to_owned(), alert.camera_name.to_string()];
    tags.extend(alert.detected_classes.iter().cloned());
    Push {
        title: format!("HomeSec {}", alert.camera_name),
        message,
        priority: priorities.of(alert.risk_level),
        tags: tags.into_iter().map(|t| t.replace(',', " ")).collect(),
        click: alert.view_url.clone().filter(|u| u.starts_with("https://") || u.starts_with("http://")),
    }
}

/// A header value: as is when printable ASCII, else RFC 2047 (`=?UTF-8?B?…?=`).
pub fn header_value(s: &str) -> String {
    let one_line = s.replace(['\r', '\n'], " ");
    if one_line.chars().all(|c| (' '..='~').contains(&c)) {
        one_line
    } else {
        format!("=?UTF-8?B?{}?=", base64::engine::general_purpose::STANDARD.encode(one_line))
    }
}

impl NtfyNotifier {
    async fn publish(&self, p: &Push, snapshot: Option<&[u8]>) -> Result<u16, NtfyError> {
        let mut req = match snapshot {
            Some(jpeg) => self
                .http
                .put(self.url.clone())
                .header("Filename", SNAPSHOT_FILENAME)
                .header("Message", header_value(&p.message))
                .body(jpeg.to_vec()),
            None => self.http.post(self.url.clone()).body(p.message.clone()),
        };
        req = req
            .header("Title", header_value(&p.title))
            .header("Priority", p.priority.to_string())
            .header("Tags", header_value(&p.tags.join(",")));
        if let Some(click) = &p.click {
            req = req.header("Click", click.as_str());
        }
        if let Some(Token(t)) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| NtfyError::Request(e.without_url()))?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(status);
        }
        let mut reason = reason(&resp.bytes().await.unwrap_or_default());
        if let Some(Token(t)) = &self.token {
            reason = reason.replace(t.as_str(), "***");
        }
        Err(if matches!(status, 401 | 403) {
            NtfyError::Unauthorized { topic: self.topic.clone(), status, reason }
        } else {
            NtfyError::Status { status, reason }
        })
    }
}

#[async_trait]
impl Notifier for NtfyNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        let auth = if self.token.is_some() { " (with token)" } else { "" };
        format!("ntfy {}{auth}", self.url)
    }

    fn last_error(&self) -> Option<String> {
        self.last_failure.get()
    }

    async fn send(&self, alert: &Alert, snapshot: Option<&[u8]>) -> Result<(), NotifyError> {
        let started = Instant::now();
        let p = push(alert, &self.priority);
        let snapshot = snapshot.filter(|_| self.attach);
        let mut result = self.publish(&p, snapshot).await;
        let mut attached = snapshot.is_some();
        if attached && matches!(result, Err(NtfyError::Status { status: 413, .. })) {
            warn!(camera = %alert.camera_name, clip_id = %alert.clip_id, url = %self.url,
                "the ntfy server takes no attachment this large; sending the alert without the snapshot");
            result = self.publish(&p, None).await;
            attached = false;
        }
        match result {
            Ok(status) => {
                self.last_failure.set(None);
                info!(
                    camera = %alert.camera_name, clip_id = %alert.clip_id, url = %self.url, stage = alert.stage.as_str(),
                    priority = p.priority, snapshot = attached, status,
                    elapsed_ms = started.elapsed().as_millis() as u64, "alert pushed to ntfy"
                );
                Ok(())
            }
            Err(e) => {
                let refused = matches!(e, NtfyError::Unauthorized { .. });
                let err = match e {
                    NtfyError::Request(r) if r.is_timeout() => NotifyError::Timeout(self.url.to_string()),
                    e => NotifyError::Delivery { target: self.url.to_string(), source: Box::new(e) },
                };
                let error = crate::telemetry::chain(&err);
                if refused {
                    warn!(camera = %alert.camera_name, clip_id = %alert.clip_id, url = %self.url, %error,
                        "ntfy refuses the alert (check token_env and the topic's access); kept and retried");
                } else {
                    warn!(camera = %alert.camera_name, clip_id = %alert.clip_id, url = %self.url, %error,
                        "alert not pushed to ntfy");
                }
                self.last_failure.set(Some(error));
                Err(err)
            }
        }
    }

    /// Healthy until a delivery fails, and again after the next one succeeds.
    async fn ping(&self) -> bool {
        self.last_error().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::payload::tests::alert;
    use crate::plugin::{ConfigIssue, PluginConfig, Validator};

    fn issues(cfg: &NtfyConfig) -> Vec<String> {
        let mut issues: Vec<ConfigIssue> = Vec::new();
        let locate = |_: &str| None;
        cfg.validate(&mut Validator::new("notifiers[0].config", &mut issues, &locate));
        issues.into_iter().map(|i| i.to_string()).collect()
    }

    #[test]
    fn priority_follows_the_risk() {
        let p = Priorities::default();
        assert_eq!(
            [None, Some(RiskLevel::Low), Some(RiskLevel::Medium), Some(RiskLevel::High)].map(|r| p.of(r)),
            [3, 3, 4, 5]
        );
        let cfg: NtfyConfig =
            serde_json::from_value(serde_json::json!({"topic": "cams", "priority": {"low": 2}})).expect("parse");
        assert_eq!(cfg.priority, Priorities { low: 2, ..Priorities::default() });
        assert_eq!(cfg.server, "https://ntfy.sh");
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let cfg = NtfyConfig {
            token_env: Some("HOMESEC_TEST_SURELY_UNSET_NTFY_TOKEN".into()),
            priority: Priorities { high: 6, ..Priorities::default() },
            timeout_s: 0,
            ..NtfyConfig::new("http://ntfy.example.net", "my/topic")
        };
        assert_eq!(
            issues(&cfg),
            [
                "notifiers[0].config.server: must be https: over http the alerts and the token cross the network in \
                 clear (http only to 127.0.0.1)",
                "notifiers[0].config.topic: `my/topic` must be 1 to 64 letters, digits, `-` or `_`",
                "notifiers[0].config.token_env: environment variable HOMESEC_TEST_SURELY_UNSET_NTFY_TOKEN is not set",
                "notifiers[0].config.priority.high: must be between 1 and 5 (got 6)",
                "notifiers[0].config.timeout_s: must be between 1 and 120 (got 0)",
            ]
        );
        assert!(issues(&NtfyConfig::new("http://127.0.0.1:8080", "cams")).is_empty());
    }

    #[test]
    fn the_push_says_what_was_seen_and_links_the_clip() {
        let mut a = alert();
        a.view_url = Some("https://clips.example.net/front".into());
        a.risk_level = Some(RiskLevel::High);
        a.summary = Some("A person tries the door".into());
        a.upload_failed = false;
        let p = push(&a, &Priorities::default());
        assert_eq!(p.title, "HomeSec front");
        assert_eq!(p.message, "A person tries the door (risk high)");
        assert_eq!((p.priority, p.tags.join(",")), (5, "rotating_light,front,person".into()));
        assert_eq!(p.click.as_deref(), Some("https://clips.example.net/front"));
        a.stage = AlertStage::Detected;
        a.summary = None;
        a.risk_level = None;
        a.view_url = None;
        let early = push(&a, &Priorities::default());
        assert_eq!((early.message.as_str(), early.priority, early.click), ("person detected (recording)", 3, None));
    }

    #[test]
    fn non_ascii_header_values_are_rfc2047_encoded() {
        assert_eq!(header_value("HomeSec front"), "HomeSec front");
        assert_eq!(header_value("Café\nporch"), "=?UTF-8?B?Q2Fmw6kgcG9yY2g=?=");
    }

    #[test]
    fn the_url_is_server_and_topic_and_the_token_stays_hidden() {
        // SAFETY: read only by this test (unique name).
        unsafe { std::env::set_var("HOMESEC_TEST_NTFY_DESCRIBE_TOKEN", "tk_s3cret") };
        let cfg = NtfyConfig {
            token_env: Some("HOMESEC_TEST_NTFY_DESCRIBE_TOKEN".into()),
            ..NtfyConfig::new("https://push.example.net/ntfy/", "front-door")
        };
        let ctx = PluginContext {
            layout: crate::plugin::DataLayout::new("/nonexistent"),
            config_dir: "/".into(),
            device_id: "box".into(),
            cameras: vec![],
            client_tag: None,
        };
        let n = build(cfg, &ctx).expect("build");
        assert_eq!(n.describe(), "ntfy https://push.example.net/ntfy/front-door (with token)");
        assert!(!format!("{n:?}").contains("tk_s3cret"));
        assert_eq!(reason(br#"{"code":40101,"http":401,"error":"unauthorized"}"#), "unauthorized");
    }
}
