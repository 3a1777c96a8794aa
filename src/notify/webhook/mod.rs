//! Webhook notifier: each alert as a JSON POST, optionally signed with HMAC-SHA256.
//!
//! # The request
//! `POST <url>` with the alert's JSON (the same body the MQTT alert topic
//! carries, [`alert_payload`]) and these headers:
//! - `Content-Type: application/json`, `User-Agent: homesec/<version>`;
//! - `X-HomeSec-Event: alert`;
//! - `X-HomeSec-Delivery: <dedupe_key>-<stage>`: the same for every attempt of
//!   one alert, so a receiver can drop a repeat; an update of an open alert
//!   (the cooldown: same `dedupe_key`, `occurrences` 2, 3, …) adds its count,
//!   `<dedupe_key>-<stage>-<occurrences>`;
//! - `X-HomeSec-Signature: sha256=<lowercase hex HMAC-SHA256(secret, body)>`,
//!   when `secret_env` is set.
//!
//! The snapshot is not sent: the payload carries `view_url` (where the clip can
//! be watched); an image field may come later.
//!
//! # Delivery semantics
//! A 2xx answer means delivered. Anything else (another status, a redirect,
//! which is not followed, a timeout, a refused connection) is an error, and the pipeline's outbox retries with its
//! backoff until the entry's TTL. The outbox knows no "permanent" failure, so a
//! 4xx other than 408/429 (the receiver refusing the request: a wrong URL, a
//! bad signature) is retried too, but logged as a warning that says so. A
//! request that timed out may still have reached the receiver: delivery is
//! at-least-once, and receivers dedupe on `X-HomeSec-Delivery` (or the
//! payload's `dedupe_key` and `stage`).
//!
//! The secret is read once at build time and never logged; errors and logs
//! name the URL without its query string.

mod config;

use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tracing::{info, warn};

pub use config::{DEFAULT_NAME, WebhookConfig};
use config::{display_url, parse_url};

use super::payload::alert_payload;
use super::{LastFailure, Notifier, NotifyError};
use crate::domain::Alert;
use crate::plugin::{PluginBuildError, PluginContext};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-HomeSec-Signature";
/// The event header (always `alert` for now).
pub const EVENT_HEADER: &str = "X-HomeSec-Event";
/// The delivery id header: `<dedupe_key>-<stage>`.
pub const DELIVERY_HEADER: &str = "X-HomeSec-Delivery";
/// How much of a failed answer's body an error quotes.
const BODY_EXCERPT_CHARS: usize = 200;

/// The HMAC secret; its `Debug` shows nothing.
struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `sha256=<lowercase hex HMAC-SHA256(secret, body)>`, the signature header's value.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // Invariant: HMAC accepts a key of any length (longer keys are hashed).
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The delivery id of one alert: the same on every retry; an update of an open
/// alert adds its count (`<dedupe_key>-<stage>-<occurrences>`).
pub fn delivery_id(alert: &Alert) -> String {
    match alert.occurrences {
        0 | 1 => format!("{}-{}", alert.dedupe_key, alert.stage.as_str()),
        n => format!("{}-{}-{n}", alert.dedupe_key, alert.stage.as_str()),
    }
}

/// A request the receiver answered with a status other than 2xx.
#[derive(Debug, thiserror::Error)]
#[error("HTTP {status}{hint}{}", quoted(.body))]
pub struct StatusError {
    pub status: u16,
    /// The first characters of the answer's body.
    pub body: String,
    hint: &'static str,
}

impl StatusError {
    fn new(status: u16, body: &[u8]) -> Self {
        let text = String::from_utf8_lossy(body);
        let body = text.trim().chars().take(BODY_EXCERPT_CHARS).collect();
        Self { status, body, hint: if is_refusal(status) { " (the receiver refuses the request)" } else { "" } }
    }
}

/// `: <body>`, or nothing for an empty answer.
fn quoted(body: &str) -> String {
    if body.is_empty() { String::new() } else { format!(": {body}") }
}

/// A 4xx that retrying will not fix (408 Request Timeout and 429 Too Many
/// Requests will); still retried, since the outbox has no permanent failure.
fn is_refusal(status: u16) -> bool {
    (400..500).contains(&status) && status != 408 && status != 429
}

/// The webhook notifier. Cheap to share: one pooled HTTP client.
pub struct WebhookNotifier {
    name: String,
    url: reqwest::Url,
    /// `url` without its query string, for logs and errors.
    shown: String,
    secret: Option<Secret>,
    http: reqwest::Client,
    /// Why the last delivery failed; `None` before the first and after a success.
    last_failure: LastFailure,
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("name", &self.name)
            .field("url", &self.shown)
            .field("signed", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

fn build_error(msg: impl Into<String>) -> PluginBuildError {
    PluginBuildError::new("notifier", "webhook", msg.into())
}

/// Builds the notifier: checks the URL, reads the secret from `secret_env` and
/// prepares the HTTP client. Nothing is sent until the first alert.
pub fn build(cfg: WebhookConfig, ctx: &PluginContext) -> Result<WebhookNotifier, PluginBuildError> {
    let _ = ctx; // nothing box-specific: the alert carries its camera
    let url = parse_url(&cfg.url).map_err(|m| build_error(format!("url {m}")))?;
    if !(1..=120).contains(&cfg.timeout_s) {
        return Err(build_error(format!("timeout_s must be between 1 and 120 (got {})", cfg.timeout_s)));
    }
    let secret = match &cfg.secret_env {
        None => None,
        Some(env) => match std::env::var(env) {
            Ok(s) if !s.is_empty() => Some(Secret(s.into_bytes())),
            _ => return Err(build_error(format!("secret_env: environment variable {env} is not set"))),
        },
    };
    let timeout = Duration::from_secs(cfg.timeout_s);
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("homesec/", env!("CARGO_PKG_VERSION")))
        // A redirect is an answer like any other non-2xx: followed, a POST
        // would turn into a GET without the alert (and the signature would go
        // to another host).
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| PluginBuildError::new("notifier", "webhook", e))?;
    Ok(WebhookNotifier {
        name: cfg.name(),
        shown: display_url(&url),
        url,
        secret,
        http,
        last_failure: LastFailure::default(),
    })
}

impl WebhookNotifier {
    /// Where alerts go, without the query string.
    pub fn target(&self) -> &str {
        &self.shown
    }

    /// One POST of `body`; `Ok` on a 2xx answer.
    async fn post(&self, alert: &Alert, body: Vec<u8>) -> Result<u16, NotifyError> {
        let mut req = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(EVENT_HEADER, "alert")
            .header(DELIVERY_HEADER, delivery_id(alert));
        if let Some(Secret(key)) = &self.secret {
            req = req.header(SIGNATURE_HEADER, signature(key, &body));
        }
        // reqwest's errors would quote the whole URL (query string included): drop it, name `shown`.
        let resp = req.body(body).send().await.map_err(|e| self.request_error(e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(status.as_u16());
        }
        let answer = resp.bytes().await.unwrap_or_default();
        let mut error = StatusError::new(status.as_u16(), &answer);
        // A receiver that echoes the secret back does not get it into the log.
        if let Some(Secret(key)) = &self.secret
            && let Ok(key) = std::str::from_utf8(key)
        {
            error.body = error.body.replace(key, "***");
        }
        Err(NotifyError::Delivery { target: self.shown.clone(), source: Box::new(error) })
    }

    fn request_error(&self, e: reqwest::Error) -> NotifyError {
        if e.is_timeout() {
            NotifyError::Timeout(self.shown.clone())
        } else {
            NotifyError::Delivery { target: self.shown.clone(), source: Box::new(e.without_url()) }
        }
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        let signed = if self.secret.is_some() { "signed" } else { "unsigned" };
        format!("POST {} ({signed})", self.shown)
    }

    /// Why the last delivery failed, while no later one succeeded.
    fn last_error(&self) -> Option<String> {
        self.last_failure.get()
    }

    /// The snapshot is not sent (the payload's `view_url` points at the clip).
    async fn send(&self, alert: &Alert, _snapshot: Option<&[u8]>) -> Result<(), NotifyError> {
        let started = Instant::now();
        let body = alert_payload(alert)
            .map_err(|e| NotifyError::Delivery { target: self.shown.clone(), source: Box::new(e) })?;
        let delivery = delivery_id(alert);
        match self.post(alert, body).await {
            Ok(status) => {
                self.last_failure.set(None);
                info!(
                    camera = %alert.camera_name, clip_id = %alert.clip_id, url = %self.shown, delivery, status,
                    elapsed_ms = started.elapsed().as_millis() as u64, "alert posted to the webhook"
                );
                Ok(())
            }
            Err(e) => {
                let error = crate::telemetry::chain(&e);
                let refused = matches!(&e, NotifyError::Delivery { source, .. }
                    if source.downcast_ref::<StatusError>().is_some_and(|s| is_refusal(s.status)));
                if refused {
                    warn!(
                        camera = %alert.camera_name, clip_id = %alert.clip_id, url = %self.shown, delivery, %error,
                        "the webhook refuses the alert (a 4xx answer: check the URL and the secret); retried anyway"
                    );
                } else {
                    warn!(camera = %alert.camera_name, clip_id = %alert.clip_id, url = %self.shown, delivery, %error,
                        "webhook alert not delivered");
                }
                self.last_failure.set(Some(error));
                Err(e)
            }
        }
    }

    /// A webhook has no connection to watch: healthy until a delivery fails,
    /// and again after the next one succeeds. A webhook not used yet is not
    /// a problem (a probe would be a request the receiver did not ask for).
    /// Receivers replace an alert by its `dedupe_key`: updates are for them.
    fn takes_updates(&self) -> bool {
        true
    }

    async fn ping(&self) -> bool {
        self.last_error().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::payload::tests::alert;
    use crate::plugin::{ConfigIssue, PluginConfig, Validator};

    fn issues(cfg: &WebhookConfig) -> Vec<String> {
        let mut issues: Vec<ConfigIssue> = Vec::new();
        let locate = |_: &str| None;
        cfg.validate(&mut Validator::new("notifiers[1].config", &mut issues, &locate));
        issues.into_iter().map(|i| i.to_string()).collect()
    }

    fn ctx() -> PluginContext {
        PluginContext {
            layout: crate::plugin::DataLayout::new("/nonexistent"),
            config_dir: "/".into(),
            device_id: "box".into(),
            cameras: vec![],
            client_tag: None,
        }
    }

    #[test]
    fn the_signature_is_hmac_sha256_in_lowercase_hex() {
        // printf '%s' '{"clip_id":"front_1700000000"}' | openssl dgst -sha256 -hmac 'whsec_test'
        assert_eq!(
            signature(b"whsec_test", br#"{"clip_id":"front_1700000000"}"#),
            "sha256=635b07531a841eb67d1c5c45591f3e32b2b61963dce927a946bb0aabbba1acdc"
        );
        // printf '%s' 'The quick brown fox jumps over the lazy dog' | openssl dgst -sha256 -hmac key
        assert_eq!(
            signature(b"key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn defaults_fill_a_block_with_only_the_url() {
        let cfg: WebhookConfig =
            serde_json::from_value(serde_json::json!({"url": "https://example.net/hooks/homesec"})).expect("parse");
        assert_eq!(cfg, WebhookConfig::new("https://example.net/hooks/homesec"));
        assert_eq!(cfg.timeout_s, 10);
        assert_eq!(cfg.name(), "webhook");
        assert!(issues(&cfg).is_empty(), "{:?}", issues(&cfg));
        let unknown = serde_json::from_value::<WebhookConfig>(serde_json::json!({"url": "http://x", "secret": "s"}));
        assert!(unknown.is_err());
        let missing = serde_json::from_value::<WebhookConfig>(serde_json::json!({}));
        assert!(missing.is_err(), "url is required");
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let cfg = WebhookConfig {
            name: Some(" ".into()),
            url: "ftp://example.net/hook".into(),
            secret_env: Some("HOMESEC_TEST_SURELY_UNSET_WEBHOOK_SECRET".into()),
            timeout_s: 0,
        };
        let found = issues(&cfg);
        assert_eq!(
            found,
            [
                "notifiers[1].config.name: must not be empty",
                "notifiers[1].config.url: must be an http or https URL, not ftp",
                "notifiers[1].config.secret_env: environment variable HOMESEC_TEST_SURELY_UNSET_WEBHOOK_SECRET is not set",
                "notifiers[1].config.timeout_s: must be between 1 and 120 (got 0)",
            ]
        );
        let long = WebhookConfig { timeout_s: 121, ..WebhookConfig::new("http://127.0.0.1:1/x") };
        assert_eq!(issues(&long), ["notifiers[1].config.timeout_s: must be between 1 and 120 (got 121)"]);
        let not_url = WebhookConfig::new("example.net/hook");
        assert!(issues(&not_url)[0].starts_with("notifiers[1].config.url: is not a URL"), "{:?}", issues(&not_url));
    }

    #[test]
    fn credentials_in_the_url_are_refused_and_never_shown() {
        let cfg = WebhookConfig::new("https://user:s3cret@example.net/hook");
        let found = issues(&cfg);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("notifiers[1].config.url: must not carry credentials"), "{found:?}");
        assert!(found[0].contains("secret_env"), "{found:?}");
        assert!(!found[0].contains("s3cret"), "{found:?}");
        let err = build(cfg, &ctx()).expect_err("refused at build too");
        assert!(!crate::telemetry::chain(&err).contains("s3cret"));
    }

    #[test]
    fn logs_show_the_url_without_its_query_and_the_secret_stays_hidden() {
        let n = build(WebhookConfig::new("https://example.net/hook?token=abc#x"), &ctx()).expect("build");
        assert_eq!(n.target(), "https://example.net/hook");
        assert_eq!(n.describe(), "POST https://example.net/hook (unsigned)");
        assert_eq!(format!("{:?}", Secret(b"s3cret".to_vec())), "Secret(***)");
        let missing = WebhookConfig {
            secret_env: Some("HOMESEC_TEST_SURELY_UNSET_WEBHOOK_SECRET".into()),
            ..WebhookConfig::new("http://127.0.0.1:1/x")
        };
        assert!(build(missing, &ctx()).is_err());
    }

    #[test]
    fn the_delivery_id_is_the_dedupe_key_and_stage_and_the_count_of_an_update() {
        assert_eq!(delivery_id(&alert()), "front_1700000000-final");
        let update = Alert { occurrences: 3, ..alert() };
        assert_eq!(delivery_id(&update), "front_1700000000-final-3", "an update is not a repeat");
    }

    #[test]
    fn failed_answers_quote_the_status_and_the_start_of_the_body() {
        let long = "x".repeat(500);
        let e = StatusError::new(500, long.as_bytes());
        assert_eq!(e.to_string(), format!("HTTP 500: {}", "x".repeat(200)));
        let refused = StatusError::new(403, b" bad signature\n");
        assert_eq!(refused.to_string(), "HTTP 403 (the receiver refuses the request): bad signature");
        assert!(is_refusal(404) && !is_refusal(408) && !is_refusal(429) && !is_refusal(503));
    }

    #[tokio::test]
    async fn an_unused_webhook_is_healthy_and_a_failed_one_says_why() {
        let n = build(WebhookConfig { timeout_s: 2, ..WebhookConfig::new("http://127.0.0.1:1/hook?t=1") }, &ctx())
            .expect("build");
        assert!(n.ping().await);
        let err = n.send(&alert(), None).await.expect_err("nothing listens on port 1");
        let text = crate::telemetry::chain(&err);
        assert!(text.starts_with("delivery to http://127.0.0.1:1/hook failed"), "{text}");
        assert!(!text.contains("t=1"), "{text}");
        assert!(!n.ping().await);
        assert_eq!(n.last_error().as_deref(), Some(text.as_str()));
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed_and_an_echoed_secret_is_not_quoted() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let answers = [
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/elsewhere\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: 24\r\n\r\nbad secret: hook-secret\n",
        ];
        let server = tokio::spawn(async move {
            for answer in answers {
                let (mut sock, _) = listener.accept().await.expect("accept");
                let mut buf = vec![0u8; 64 * 1024];
                let _ = sock.read(&mut buf).await;
                sock.write_all(answer.as_bytes()).await.expect("write");
                let _ = sock.shutdown().await;
            }
        });
        // SAFETY: this variable is read only by this test (single-threaded runtime, unique name).
        unsafe { std::env::set_var("HOMESEC_TEST_WEBHOOK_ECHO_SECRET", "hook-secret") };
        let cfg = WebhookConfig {
            secret_env: Some("HOMESEC_TEST_WEBHOOK_ECHO_SECRET".into()),
            ..WebhookConfig::new(format!("http://127.0.0.1:{port}/hook"))
        };
        let n = build(cfg, &ctx()).expect("build");
        let redirected = crate::telemetry::chain(&n.send(&alert(), None).await.expect_err("302 is not delivered"));
        assert_eq!(redirected, format!("delivery to http://127.0.0.1:{port}/hook failed: HTTP 302"));
        let refused = crate::telemetry::chain(&n.send(&alert(), None).await.expect_err("401"));
        assert!(refused.ends_with("HTTP 401 (the receiver refuses the request): bad secret: ***"), "{refused}");
        server.await.expect("server");
    }
}
