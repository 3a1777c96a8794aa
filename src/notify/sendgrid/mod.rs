//! SendGrid notifier: each alert as an email through SendGrid's v3 Mail Send API.
//!
//! # The request
//! `POST <base_url>/v3/mail/send` with `Authorization: Bearer <API key>` and a
//! JSON body: one personalization with every recipient in `to`, `from`,
//! `subject`, `content` (`text/plain` first, then `text/html`, as the API
//! requires) and, with a snapshot, one attachment: the JPEG in base64 with
//! `disposition: inline` and `content_id: snapshot@homesec`, which the HTML
//! shows as `cid:snapshot@homesec`. Subject and parts are
//! [`crate::notify::email`]'s, the same as the `smtp` notifier's.
//!
//! # Delivery semantics
//! `202 Accepted` (any 2xx) means delivered. Anything else is an error and the
//! outbox retries until `retry.notify_ttl_s`; 401/403 (a wrong or revoked API
//! key, a key without the Mail Send permission, an unverified sender) are
//! logged as refusals that need the user, with SendGrid's own message. The
//! API key is read once at build time and never logged.

mod config;

use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use serde_json::json;
use tracing::{info, warn};

pub use config::{DEFAULT_BASE_URL, DEFAULT_NAME, SendGridConfig};

use super::email::{self, Email, SNAPSHOT_CID, SNAPSHOT_FILENAME};
use super::{LastFailure, Notifier, NotifyError};
use crate::domain::Alert;
use crate::plugin::{PluginBuildError, PluginContext};

/// The Mail Send endpoint, under the base URL.
pub const MAIL_SEND_PATH: &str = "/v3/mail/send";
/// How much of an answer's text an error quotes.
const EXCERPT_CHARS: usize = 300;

/// SendGrid's answer when it did not take the message.
#[derive(Debug, thiserror::Error)]
pub enum SendGridError {
    #[error("SendGrid refused the API key (HTTP {status}){}", quoted(.reason))]
    Unauthorized { status: u16, reason: String },
    #[error("SendGrid answered HTTP {status}{}", quoted(.reason))]
    Status { status: u16, reason: String },
    #[error("cannot reach SendGrid at {url}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

fn quoted(reason: &str) -> String {
    if reason.is_empty() { String::new() } else { format!(": {reason}") }
}

/// The messages of SendGrid's error body (`{"errors": [{"message": …}]}`), or its first characters.
fn reason(body: &[u8]) -> String {
    let messages: Vec<String> = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("errors")?.as_array().map(|errs| {
                errs.iter().filter_map(|e| e.get("message")?.as_str().map(str::to_owned)).collect::<Vec<_>>()
            })
        })
        .unwrap_or_default();
    let text = if messages.is_empty() { String::from_utf8_lossy(body).trim().to_owned() } else { messages.join("; ") };
    text.chars().take(EXCERPT_CHARS).collect()
}

/// The API key; its `Debug` shows nothing.
struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// The SendGrid notifier.
pub struct SendGridNotifier {
    name: String,
    endpoint: reqwest::Url,
    key: ApiKey,
    from: String,
    from_name: Option<String>,
    to: Vec<String>,
    http: reqwest::Client,
    last_failure: LastFailure,
}

impl fmt::Debug for SendGridNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendGridNotifier")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint.as_str())
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn build_error(msg: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> PluginBuildError {
    PluginBuildError::new("notifier", "sendgrid", msg)
}

/// Builds the notifier: reads the API key and prepares the HTTP client.
pub fn build(cfg: SendGridConfig, ctx: &PluginContext) -> Result<SendGridNotifier, PluginBuildError> {
    let _ = ctx; // nothing box-specific
    let base = config::parse_base_url(&cfg.base_url).map_err(|m| build_error(format!("base_url {m}")))?;
    let endpoint = base.join(MAIL_SEND_PATH).map_err(|e| build_error(format!("base_url: {e}")))?;
    let key = match std::env::var(&cfg.api_key_env) {
        Ok(k) if !k.trim().is_empty() => ApiKey(k.trim().to_owned()),
        _ => return Err(build_error(format!("api_key_env: environment variable {} is not set", cfg.api_key_env))),
    };
    for addr in std::iter::once(&cfg.from).chain(&cfg.to) {
        email::check_address(addr).map_err(build_error)?;
    }
    if cfg.to.is_empty() {
        return Err(build_error("to: must list at least one recipient"));
    }
    let timeout = Duration::from_secs(cfg.timeout_s.clamp(1, 120));
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("homesec/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(build_error)?;
    Ok(SendGridNotifier {
        name: cfg.name(),
        endpoint,
        key,
        from: cfg.from,
        from_name: cfg.from_name,
        to: cfg.to,
        http,
        last_failure: LastFailure::default(),
    })
}

/// The Mail Send body for one email.
pub fn mail_body(mail: &Email, from: &str, from_name: Option<&str>, to: &[String]) -> serde_json::Value {
    let mut sender = json!({ "email": from });
    if let Some(name) = from_name {
        sender["name"] = json!(name);
    }
    let mut body = json!({
        "personalizations": [{ "to": to.iter().map(|t| json!({ "email": t })).collect::<Vec<_>>() }],
        "from": sender,
        "subject": mail.subject,
        "content": [
            { "type": "text/plain", "value": mail.text },
            { "type": "text/html", "value": mail.html },
        ],
    });
    if let Some(jpeg) = &mail.snapshot {
        body["attachments"] = json!([{
            "content": base64::engine::general_purpose::STANDARD.encode(jpeg),
            "type": "image/jpeg",
            "filename": SNAPSHOT_FILENAME,
            "disposition": "inline",
            "content_id": SNAPSHOT_CID,
        }]);
    }
    body
}

impl SendGridNotifier {
    async fn post(&self, body: &serde_json::Value) -> Result<u16, SendGridError> {
        let resp = self
            .http
            .post(self.endpoint.clone())
            .bearer_auth(&self.key.0)
            .json(body)
            .send()
            .await
            .map_err(|e| SendGridError::Request { url: self.endpoint.to_string(), source: e.without_url() })?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(status);
        }
        let answer = resp.bytes().await.unwrap_or_default();
        // An answer that quotes the key does not get it into the log.
        let reason = reason(&answer).replace(&self.key.0, "***");
        Err(if matches!(status, 401 | 403) {
            SendGridError::Unauthorized { status, reason }
        } else {
            SendGridError::Status { status, reason }
        })
    }
}

#[async_trait]
impl Notifier for SendGridNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        format!("SendGrid {} from {} to {}", self.endpoint, self.from, self.to.join(", "))
    }

    fn last_error(&self) -> Option<String> {
        self.last_failure.get()
    }

    async fn send(&self, alert: &Alert, snapshot: Option<&[u8]>) -> Result<(), NotifyError> {
        let started = Instant::now();
        let body = mail_body(&email::compose(alert, snapshot), &self.from, self.from_name.as_deref(), &self.to);
        match self.post(&body).await {
            Ok(status) => {
                self.last_failure.set(None);
                info!(
                    camera = %alert.camera_name, clip_id = %alert.clip_id, stage = alert.stage.as_str(), status,
                    snapshot = snapshot.is_some(), elapsed_ms = started.elapsed().as_millis() as u64,
                    "alert mailed through SendGrid"
                );
                Ok(())
            }
            Err(e) => {
                let timeout = matches!(&e, SendGridError::Request { source, .. } if source.is_timeout());
                let refused = matches!(e, SendGridError::Unauthorized { .. });
                let err = if timeout {
                    NotifyError::Timeout("SendGrid".into())
                } else {
                    NotifyError::Delivery { target: "SendGrid".into(), source: Box::new(e) }
                };
                let error = crate::telemetry::chain(&err);
                if refused {
                    warn!(camera = %alert.camera_name, clip_id = %alert.clip_id, %error,
                        "SendGrid refuses the API key (check api_key_env and the key's Mail Send permission); kept and retried");
                } else {
                    warn!(camera = %alert.camera_name, clip_id = %alert.clip_id, %error, "alert not mailed through SendGrid");
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

    fn issues(cfg: &SendGridConfig) -> Vec<String> {
        let mut issues: Vec<ConfigIssue> = Vec::new();
        let locate = |_: &str| None;
        cfg.validate(&mut Validator::new("notifiers[0].config", &mut issues, &locate));
        issues.into_iter().map(|i| i.to_string()).collect()
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let cfg = SendGridConfig {
            timeout_s: 0,
            base_url: "http://api.example.net".into(),
            ..SendGridConfig::new("HOMESEC_TEST_SURELY_UNSET_SENDGRID_KEY", "cam", &["me@example.net", "x@"])
        };
        assert_eq!(
            issues(&cfg),
            [
                "notifiers[0].config.api_key_env: environment variable HOMESEC_TEST_SURELY_UNSET_SENDGRID_KEY is not set",
                "notifiers[0].config.from: `cam` is not an email address (Missing domain or user)",
                "notifiers[0].config.to[1]: `x@` is not an email address (Invalid email domain)",
                "notifiers[0].config.timeout_s: must be between 1 and 120 (got 0)",
                "notifiers[0].config.base_url: must be https (http only to 127.0.0.1), not http",
            ]
        );
        let parsed: SendGridConfig = serde_json::from_value(serde_json::json!({
            "api_key_env": "K", "from": "a@b.c", "to": ["d@e.f"]
        }))
        .expect("parse");
        assert_eq!(parsed.base_url, "https://api.sendgrid.com");
        assert_eq!(parsed.name(), "sendgrid");
    }

    #[test]
    fn the_body_has_text_then_html_and_the_snapshot_inline() {
        let mail = email::compose(&alert(), Some(b"\xff\xd8jpeg"));
        let body = mail_body(&mail, "cam@example.net", Some("Porch camera"), &["me@example.net".into()]);
        assert_eq!(body["personalizations"][0]["to"][0]["email"], "me@example.net");
        assert_eq!(body["from"], json!({"email": "cam@example.net", "name": "Porch camera"}));
        assert_eq!(body["subject"], "HomeSec front: person");
        assert_eq!(body["content"][0]["type"], "text/plain");
        assert_eq!(body["content"][1]["type"], "text/html");
        let att = &body["attachments"][0];
        assert_eq!(att["content"], "/9hqcGVn");
        assert_eq!((att["disposition"].as_str(), att["content_id"].as_str()), (Some("inline"), Some(SNAPSHOT_CID)));
        let none = mail_body(&email::compose(&alert(), None), "cam@example.net", None, &["me@example.net".into()]);
        assert!(none.get("attachments").is_none());
        assert_eq!(none["from"], json!({"email": "cam@example.net"}));
    }

    #[test]
    fn errors_quote_sendgrids_messages() {
        let body = br#"{"errors":[{"message":"The provided authorization grant is invalid, expired, or revoked","field":null,"help":null}]}"#;
        let e = SendGridError::Unauthorized { status: 401, reason: reason(body) };
        assert_eq!(
            e.to_string(),
            "SendGrid refused the API key (HTTP 401): The provided authorization grant is invalid, expired, or revoked"
        );
        assert_eq!(reason(b" plain text \n"), "plain text");
        assert_eq!(format!("{:?}", ApiKey("SG.secret".into())), "ApiKey(***)");
    }
}
