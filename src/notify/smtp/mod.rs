//! SMTP notifier: each alert as an email through a mail server of yours
//! (lettre on tokio, rustls).
//!
//! The message is [`crate::notify::email`]'s: subject, a plain-text part and an
//! HTML part (`multipart/alternative`), the HTML with the snapshot inline
//! (`multipart/related`, `Content-ID: <snapshot@homesec>`, shown by `cid:`).
//!
//! # Delivery semantics
//! The server accepting the message (250 after `DATA`) means delivered. A
//! refusal (a 5xx reply: the sender or a recipient refused, authentication
//! failed) is an error naming the server, the sender and the server's reply;
//! like every notifier error it keeps the alert in the outbox, which retries
//! with its backoff until `retry.notify_ttl_s` (a refused sender is usually a
//! configuration the user fixes, and the alert should then still arrive).
//! The log marks such refusals as permanent so they are told apart from an
//! outage. Each phase (connect + TLS + login, then the message) is bounded by
//! `timeout_s`: lettre's async session has no answer timeout of its own, and a
//! server that goes silent (seen with a test server that never answered a
//! failed login) would otherwise hold the outbox round. Username and password are read from the environment once and
//! never logged.

mod config;

use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tracing::{debug, info, warn};

pub use config::{DEFAULT_NAME, SmtpConfig, SmtpTls};

use super::email::{self, Email, SNAPSHOT_CID, SNAPSHOT_FILENAME};
use super::{LastFailure, Notifier, NotifyError};
use crate::domain::Alert;
use crate::plugin::{PluginBuildError, PluginContext};

/// Why a message did not go out.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// The server answered 5xx: retrying will not help until something changes.
    #[error("the mail server {server} refused the message from {from} (permanent): {reply}")]
    Refused { server: String, from: String, reply: String },
    /// The server refused the session before the message: the greeting,
    /// STARTTLS or the login (e.g. 535, wrong credentials).
    #[error("the mail server {server} refused the session (greeting, STARTTLS or login): {reply}")]
    SessionRefused { server: String, reply: String },
    /// The server answered 4xx (try again later).
    #[error("the mail server {server} deferred the message from {from}: {reply}")]
    Deferred { server: String, from: String, reply: String },
    /// The server did not answer in time.
    #[error("the mail server {server} did not answer within {seconds} s while {step}")]
    TimedOut { server: String, seconds: u64, step: &'static str },
    /// The connection, TLS or the exchange failed.
    #[error("cannot deliver through the mail server {server}")]
    Transport {
        server: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    #[error("cannot build the message")]
    Message(#[source] lettre::error::Error),
}

/// How long a delivered message's session waits for the answer to `QUIT`.
const QUIT_WAIT: Duration = Duration::from_secs(5);

/// The SMTP notifier.
pub struct SmtpNotifier {
    name: String,
    /// `host:port`, for logs and errors.
    server: String,
    tls: SmtpTls,
    from: Mailbox,
    to: Vec<Mailbox>,
    host: String,
    port: u16,
    transport: Tls,
    credentials: Option<Credentials>,
    hello: ClientId,
    timeout: Duration,
    last_failure: LastFailure,
}

impl fmt::Debug for SmtpNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpNotifier")
            .field("name", &self.name)
            .field("server", &self.server)
            .field("tls", &self.tls)
            .field("from", &self.from.email.to_string())
            .finish_non_exhaustive()
    }
}

fn build_error(msg: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> PluginBuildError {
    PluginBuildError::new("notifier", "smtp", msg)
}

fn mailbox(addr: &str, key: &str) -> Result<Mailbox, PluginBuildError> {
    addr.parse::<Mailbox>().map_err(|e| build_error(format!("{key}: `{addr}` is not an email address ({e})")))
}

fn env_value(key: &str, env: &str) -> Result<String, PluginBuildError> {
    match std::env::var(env) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(build_error(format!("{key}: environment variable {env} is not set"))),
    }
}

/// Builds the notifier: checks the block, reads the credentials and the CA file.
/// Nothing connects until the first alert.
pub fn build(cfg: SmtpConfig, ctx: &PluginContext) -> Result<SmtpNotifier, PluginBuildError> {
    if cfg.tls == SmtpTls::None && !cfg.allow_plaintext && !config::is_loopback(&cfg.host) {
        return Err(build_error(format!(
            "tls: `none` to {} is refused (set `allow_plaintext: true` if that network is yours)",
            cfg.host
        )));
    }
    let from = mailbox(&cfg.from, "from")?;
    let to = cfg.to.iter().map(|t| mailbox(t, "to")).collect::<Result<Vec<_>, _>>()?;
    if to.is_empty() {
        return Err(build_error("to: must list at least one recipient"));
    }
    let tls = match cfg.tls {
        SmtpTls::None => Tls::None,
        mode => {
            let mut params = TlsParameters::builder(cfg.host.clone());
            if let Some(ca) = &cfg.ca_file {
                let path = ctx.resolve(ca);
                let pem = std::fs::read(&path)
                    .map_err(|e| build_error(format!("ca_file: cannot read {}: {e}", path.display())))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| build_error(format!("ca_file: {} is not a PEM certificate: {e}", path.display())))?;
                params = params.add_root_certificate(cert);
            }
            let params = params.build_rustls().map_err(build_error)?;
            if mode == SmtpTls::Tls { Tls::Wrapper(params) } else { Tls::Required(params) }
        }
    };
    let timeout = Duration::from_secs(cfg.timeout_s.clamp(1, 300));
    let credentials = match (&cfg.username_env, &cfg.password_env) {
        (Some(u), Some(p)) => Some(Credentials::new(env_value("username_env", u)?, env_value("password_env", p)?)),
        (None, None) => None,
        _ => return Err(build_error("username_env and password_env go together")),
    };
    Ok(SmtpNotifier {
        name: cfg.name(),
        server: format!("{}:{}", cfg.host, cfg.port()),
        tls: cfg.tls,
        from,
        to,
        host: cfg.host.clone(),
        port: cfg.port(),
        transport: tls,
        credentials,
        hello: ClientId::Domain(hello_name(&ctx.device_id)),
        timeout,
        last_failure: LastFailure::default(),
    })
}

/// The `EHLO` name: the device id, reduced to what a host name may hold.
fn hello_name(device_id: &str) -> String {
    let name: String =
        device_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '-' }).collect();
    if name.trim_matches(['-', '.']).is_empty() { "homesec".into() } else { name }
}

/// The alert's email as a MIME message: text and (HTML + inline snapshot).
pub fn message(alert: &Alert, mail: &Email, from: &Mailbox, to: &[Mailbox]) -> Result<Message, lettre::error::Error> {
    let (own, parent) = email::thread_ids(alert);
    let mut builder =
        Message::builder().from(from.clone()).subject(mail.subject.clone()).message_id(Some(format!("<{own}>")));
    for mb in to {
        builder = builder.to(mb.clone());
    }
    if let Some(parent) = parent {
        builder = builder.in_reply_to(format!("<{parent}>")).references(format!("<{parent}>"));
    }
    let mut related = MultiPart::related().singlepart(SinglePart::html(mail.html.clone()));
    if let Some(jpeg) = &mail.snapshot {
        let image = Attachment::new_inline_with_name(SNAPSHOT_CID.into(), SNAPSHOT_FILENAME.into())
            .body(jpeg.clone(), ContentType::parse("image/jpeg").unwrap_or(ContentType::TEXT_PLAIN));
        related = related.singlepart(image);
    }
    builder.multipart(MultiPart::alternative().singlepart(SinglePart::plain(mail.text.clone())).multipart(related))
}

impl SmtpNotifier {
    fn timed_out(&self, step: &'static str) -> SmtpError {
        SmtpError::TimedOut { server: self.server.clone(), seconds: self.timeout.as_secs(), step }
    }

    /// Connects, upgrades to TLS as configured, logs in.
    async fn connect(&self) -> Result<AsyncSmtpConnection, lettre::transport::smtp::Error> {
        let wrapper = match &self.transport {
            Tls::Wrapper(params) => Some(params.clone()),
            _ => None,
        };
        let addr = (self.host.as_str(), self.port);
        let mut conn =
            AsyncSmtpConnection::connect_tokio1(addr, Some(self.timeout), &self.hello, wrapper, None).await?;
        if let Tls::Required(params) = &self.transport {
            conn.starttls(params.clone(), &self.hello).await?;
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials).await?;
        }
        Ok(conn)
    }

    /// One SMTP session for `msg`. Each phase is bounded by `timeout_s`, so a
    /// server that stops answering never holds the outbox. The message is the
    /// server's once it answers the data with 250; `QUIT` is then sent in the
    /// background, and a server slow to answer it delays nothing.
    async fn deliver(&self, msg: &Message) -> Result<(), SmtpError> {
        let mut conn = match tokio::time::timeout(self.timeout, self.connect()).await {
            Err(_) => return Err(self.timed_out("connecting")),
            Ok(conn) => conn.map_err(|e| match self.classify(e) {
                SmtpError::Refused { server, reply, .. } => SmtpError::SessionRefused { server, reply },
                other => other,
            })?,
        };
        let sent = tokio::time::timeout(self.timeout, conn.send(msg.envelope(), &msg.formatted())).await;
        let server = self.server.clone();
        tokio::spawn(async move {
            if tokio::time::timeout(QUIT_WAIT, conn.quit()).await.is_err() {
                debug!(%server, "the mail server did not answer QUIT; connection dropped");
            }
        });
        match sent {
            Err(_) => Err(self.timed_out("sending the message")),
            Ok(sent) => sent.map(drop).map_err(|e| self.classify(e)),
        }
    }

    fn classify(&self, e: lettre::transport::smtp::Error) -> SmtpError {
        let server = self.server.clone();
        let from = self.from.email.to_string();
        if e.is_permanent() {
            SmtpError::Refused { server, from, reply: reply(&e) }
        } else if e.is_transient() {
            SmtpError::Deferred { server, from, reply: reply(&e) }
        } else {
            SmtpError::Transport { server, source: e }
        }
    }
}

/// The server's reply: code and text, e.g. `553 sender refused`.
fn reply(e: &lettre::transport::smtp::Error) -> String {
    let code = e.status().map(|c| c.to_string()).unwrap_or_default();
    match std::error::Error::source(e).map(ToString::to_string) {
        Some(text) if !text.is_empty() => format!("{code} {text}"),
        _ => code,
    }
}

#[async_trait]
impl Notifier for SmtpNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        let to: Vec<String> = self.to.iter().map(|m| m.email.to_string()).collect();
        let auth = if self.credentials.is_some() { ", with login" } else { "" };
        format!("SMTP {} ({}{auth}) from {} to {}", self.server, self.tls.as_str(), self.from.email, to.join(", "))
    }

    fn last_error(&self) -> Option<String> {
        self.last_failure.get()
    }

    async fn send(&self, alert: &Alert, snapshot: Option<&[u8]>) -> Result<(), NotifyError> {
        let started = Instant::now();
        let mail = email::compose(alert, snapshot);
        let result = match message(alert, &mail, &self.from, &self.to) {
            Ok(msg) => self.deliver(&msg).await,
            Err(e) => Err(SmtpError::Message(e)),
        };
        match result {
            Ok(()) => {
                self.last_failure.set(None);
                info!(
                    camera = %alert.camera_name, clip_id = %alert.clip_id, server = %self.server,
                    stage = alert.stage.as_str(), snapshot = snapshot.is_some(),
                    elapsed_ms = started.elapsed().as_millis() as u64, "alert mailed"
                );
                Ok(())
            }
            Err(e) => {
                let permanent = matches!(e, SmtpError::Refused { .. } | SmtpError::SessionRefused { .. });
                let err = NotifyError::Delivery { target: self.server.clone(), source: Box::new(e) };
                let error = crate::telemetry::chain(&err);
                if permanent {
                    warn!(camera = %alert.camera_name, clip_id = %alert.clip_id, server = %self.server, %error,
                        "the mail server refuses the alert (check from, to and the login); kept and retried");
                } else {
                    warn!(camera = %alert.camera_name, clip_id = %alert.clip_id, server = %self.server, %error,
                        "alert not mailed");
                }
                self.last_failure.set(Some(error));
                Err(err)
            }
        }
    }

    /// Healthy until a delivery fails, and again after the next one succeeds
    /// (a probe connection every health check would be noise in the server's log).
    async fn ping(&self) -> bool {
        self.last_error().is_none()
    }
}

#[cfg(test)]
mod tests;
