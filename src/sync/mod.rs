//! Postgres sync: the clip state of this box copied, when Postgres answers, to
//! `clip_states` / `clip_events` / `devices` (fleet: rows carry `device_id`),
//! and its warnings and errors to `logs` ([`logs`]).
//!
//! Postgres is never on a clip's path: the store queues every committed event
//! in its sync outbox ([`Store::with_sync_outbox`]); [`drain`] copies the outbox
//! in batches (idempotent upserts, at least once, ordered per clip) and backs off
//! when Postgres does not answer. The schema is numbered SQL under
//! `migrations/`, embedded and applied by [`schema`].

mod document;
mod drain;
mod logs;
pub mod schema;
mod tls;

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use document::{clip_state, event_data, event_type};
pub use drain::{Device, Drain, connect};
pub use logs::{DEFAULT_LOG_LEVEL, LogFlusher, parse_level};

use crate::clock::SharedClock;
use crate::config::{Config, PluginConfig, Validator};
use crate::domain::{UnixMillis, rfc3339};
use crate::store::{Store, StoreError};

/// The only sync backend.
pub const BACKEND: &str = "postgres";
const DEFAULT_BATCH: usize = 500;
const MAX_BATCH: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("sync.config.dsn_env: environment variable {0} is not set")]
    MissingDsn(String),
    #[error("sync.config.dsn_env: the DSN in {env} is not a Postgres connection string ({reason})")]
    BadDsn { env: String, reason: String },
    #[error("sync.config.dsn_env: the DSN in {env} asks for TLS that cannot be set up: {reason}")]
    BadTls { env: String, reason: String },
    #[error("cannot reach Postgres: {0}")]
    Connect(String),
    #[error("Postgres did not answer within {0} s")]
    Timeout(u64),
    #[error("Postgres refused: {0}")]
    Db(String),
    #[error(
        "the database's schema is version {found}, newer than this build knows ({known}): not syncing \
         (upgrade HomeSec on this box; it keeps working locally)"
    )]
    NewerSchema { found: i32, known: i32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `sync.config` of the `postgres` backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSyncConfig {
    /// Env var holding the DSN (`postgresql://user:pass@host:5432/db`): a secret.
    pub dsn_env: String,
    /// Events per transaction.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Log records at this level and above go to `logs`: `error`, `warn`, `info` or `off`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
}

fn default_batch() -> usize {
    DEFAULT_BATCH
}

fn default_log_level() -> String {
    DEFAULT_LOG_LEVEL.into()
}

impl PluginConfig for PostgresSyncConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        v.check((1..=MAX_BATCH).contains(&self.batch_size), "batch_size", format!("must be 1 to {MAX_BATCH}"));
        v.check(
            parse_level(&self.log_level).is_some(),
            "log_level",
            format!(
                "must be error, warn, info or off (the least severe level sent to Postgres), not {:?}",
                self.log_level
            ),
        );
        if let Some(dsn) = v.require_env("dsn_env", &self.dsn_env)
            && let Err(e) = parse_dsn(&self.dsn_env, &dsn)
        {
            v.error("dsn_env", e.to_string().trim_start_matches("sync.config.dsn_env: ").to_owned());
        }
    }
}

/// What the daemon needs to sync: the parsed DSN (never shown), the batch size.
#[derive(Clone)]
pub struct SyncSettings {
    pub pg: tokio_postgres::Config,
    /// The TLS connector; `None` with `sslmode=disable`.
    pub tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// The DSN's password, to cut from any error text.
    secrets: Vec<String>,
    pub batch_size: usize,
    /// The least severe log records sent to `logs` (`OFF`: none).
    pub log_level: tracing::level_filters::LevelFilter,
}

impl std::fmt::Debug for SyncSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncSettings").field("dsn", &"***").field("batch_size", &self.batch_size).finish()
    }
}

impl SyncSettings {
    /// The settings of a config's `sync` section; `None` without one.
    pub fn of(cfg: &Config) -> Result<Option<Self>, SyncError> {
        let Some(spec) = &cfg.sync else { return Ok(None) };
        let c: PostgresSyncConfig = serde_json::from_value(spec.config.clone())
            .map_err(|e| SyncError::BadDsn { env: "sync.config".into(), reason: e.to_string() })?;
        let dsn = std::env::var(&c.dsn_env).map_err(|_| SyncError::MissingDsn(c.dsn_env.clone()))?;
        let mut settings = Self::from_dsn(&c.dsn_env, &dsn, c.batch_size)?;
        // (validated with the config: an unknown value cannot get here)
        settings.log_level = parse_level(&c.log_level).unwrap_or(tracing::level_filters::LevelFilter::OFF);
        Ok(Some(settings))
    }

    /// Settings from a DSN read from `env` (logs at the default level).
    pub fn from_dsn(env: &str, dsn: &str, batch_size: usize) -> Result<Self, SyncError> {
        let (mut pg, tls) = parse_dsn(env, dsn)?;
        pg.connect_timeout(CONNECT_TIMEOUT);
        pg.keepalives_idle(Duration::from_secs(30));
        pg.options(format!("-c statement_timeout={}", STATEMENT_TIMEOUT.as_millis()));
        if pg.get_application_name().is_none() {
            pg.application_name("homesec");
        }
        let mut secrets: Vec<String> =
            pg.get_password().map(|p| String::from_utf8_lossy(p).into_owned()).into_iter().collect();
        secrets.push(dsn.to_owned());
        secrets.retain(|s| !s.is_empty());
        let log_level = parse_level(DEFAULT_LOG_LEVEL).unwrap_or(tracing::level_filters::LevelFilter::WARN);
        Ok(Self { pg, tls, secrets, batch_size, log_level })
    }

    /// `text` with the DSN and its password cut out.
    pub fn redact(&self, text: &str) -> String {
        redact(text, &self.secrets)
    }
}

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one statement may run (server side) and one batch may take (client side).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

fn redact(text: &str, secrets: &[String]) -> String {
    // Longest first: the DSN before the password inside it.
    let mut secrets: Vec<&String> = secrets.iter().collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.iter().fold(text.to_owned(), |t, s| t.replace(s.as_str(), "***"))
}

/// Parses a DSN and reads the files its TLS parameters name; the error never
/// repeats the DSN.
fn parse_dsn(
    env: &str,
    dsn: &str,
) -> Result<(tokio_postgres::Config, Option<tokio_postgres_rustls::MakeRustlsConnect>), SyncError> {
    let bad = |reason: &str| SyncError::BadDsn { env: env.to_owned(), reason: reason.to_owned() };
    let (rest, params) = tls::split(dsn);
    let mut pg =
        tokio_postgres::Config::from_str(&rest).map_err(|e| bad(&redact(&e.to_string(), &[dsn.to_owned(), rest])))?;
    if pg.get_hosts().is_empty() {
        return Err(bad("no host"));
    }
    if pg.get_dbname().is_none() {
        return Err(bad("no database name"));
    }
    let (mode, connector) =
        tls::connector(&params).map_err(|reason| SyncError::BadTls { env: env.to_owned(), reason })?;
    pg.ssl_mode(mode);
    Ok((pg, connector))
}

/// What the drain last saw, shared with health and diagnostics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncState {
    /// Connected and the schema is one this build writes.
    pub connected: bool,
    pub last_success_ms: Option<UnixMillis>,
    /// The last failure (DSN redacted); cleared by a success.
    pub last_error: Option<String>,
    pub last_error_ms: Option<UnixMillis>,
    /// Events copied since the daemon started.
    pub events_synced: u64,
    /// Clips copied by the first-connection backfill.
    pub backfilled_clips: u64,
    /// Log records copied since the daemon started.
    pub logs_synced: u64,
}

/// The sync as health, the API and the CLI see it.
#[derive(Debug, Clone, Serialize)]
pub struct SyncStatus {
    pub backend: &'static str,
    /// Events waiting in the outbox.
    pub outbox_depth: u64,
    /// Age of the oldest waiting event.
    pub lag_s: Option<f64>,
    /// Log records waiting for Postgres (in the store and not yet in it).
    pub log_outbox_depth: u64,
    /// Log records dropped before Postgres had them (a full queue or outbox).
    pub logs_dropped: u64,
    pub last_success: Option<String>,
    #[serde(flatten)]
    pub state: SyncState,
}

/// The drain's shared state; cheap to clone.
#[derive(Clone)]
pub struct SyncHandle {
    state: Arc<Mutex<SyncState>>,
    store: Store,
    clock: SharedClock,
}

impl SyncHandle {
    pub fn new(store: Store, clock: SharedClock) -> Self {
        Self { state: Arc::default(), store, clock }
    }

    pub fn state(&self) -> SyncState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut SyncState)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s);
        }
    }

    /// Why the `db` health check fails, if it does (it only degrades).
    pub fn problem(&self) -> Option<String> {
        problem_of(&self.state())
    }

    /// Outbox depth, lag, log outbox, last success and last error.
    pub async fn status(&self) -> SyncStatus {
        let now = self.clock.now_ms();
        let (depth, oldest, log_depth, logs_dropped) = self
            .store
            .run(|s| Ok((s.sync_backlog()?, s.sync_oldest_pending_ms()?, s.log_backlog()?, s.logs_dropped()?)))
            .await
            .unwrap_or((0, None, 0, 0));
        let capture = crate::telemetry::log_capture();
        let state = self.state();
        SyncStatus {
            backend: BACKEND,
            outbox_depth: depth,
            lag_s: oldest.map(|t| (now - t).max(0) as f64 / 1000.0),
            log_outbox_depth: log_depth + capture.pending() as u64,
            logs_dropped: logs_dropped + capture.dropped(),
            last_success: state.last_success_ms.map(rfc3339),
            state,
        }
    }
}

/// The machine's host name, for `devices.name`.
pub fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/etc/hostname").ok()?.trim().to_owned();
    (!name.is_empty()).then_some(name)
}

/// The `db` check's verdict on a state.
pub fn problem_of(s: &SyncState) -> Option<String> {
    s.last_error.as_ref().map(|e| format!("db: {e}"))
}

#[cfg(test)]
mod tests;
