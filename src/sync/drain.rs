//! The drain: a task that copies the store's sync outbox (and its log outbox)
//! to Postgres in batches, backfills a box's history on the first connection
//! to a database that has none of it, and backs off while Postgres does not
//! answer.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, NoTls, Socket};
use tokio_util::sync::CancellationToken;

use super::tls::POSTGRES;
use super::{STATEMENT_TIMEOUT, SyncError, SyncHandle, SyncSettings, clip_state, event_data, event_type, schema};
use crate::backoff::Backoff;
use crate::domain::{ClipEvent, ClipRecord, LogRecord, UnixMillis};
use crate::store::{ClipQuery, EventId, Store};

/// How often an idle drain looks at the outbox.
const POLL: Duration = Duration::from_secs(1);
/// How often an idle box tells the database it is alive (`devices.last_seen`).
const HEARTBEAT: Duration = Duration::from_secs(60);
/// Retry delays while Postgres does not answer: at most 12 s (jittered) from
/// its return to the next attempt, so that a long outage is caught up within
/// 30 s; a refused attempt costs one TCP handshake.
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Clips per backfill transaction.
const BACKFILL_PAGE: usize = 200;

/// The box as the `devices` table knows it.
#[derive(Debug, Clone)]
pub struct Device {
    pub device_id: String,
    pub name: String,
    pub version: String,
    /// The firmware image's version (`IMAGE_VERSION` in os-release); none off the image.
    pub image_version: Option<String>,
    pub cameras: Vec<String>,
}

/// The drain task's parts.
pub struct Drain {
    pub settings: SyncSettings,
    pub store: Store,
    pub handle: SyncHandle,
    pub device: Device,
}

/// Connects (within the connect timeout, over TLS when the DSN asks for it);
/// the connection runs on its own task.
pub async fn connect(settings: &SyncSettings) -> Result<Client, SyncError> {
    match &settings.tls {
        Some(tls) => connect_with(settings, tls.clone()).await,
        None => connect_with(settings, NoTls).await,
    }
}

async fn connect_with<T>(settings: &SyncSettings, tls: T) -> Result<Client, SyncError>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let limit = super::CONNECT_TIMEOUT + Duration::from_secs(1);
    let (client, conn) = tokio::time::timeout(limit, settings.pg.connect(tls))
        .await
        .map_err(|_| SyncError::Timeout(limit.as_secs()))?
        .map_err(|e| {
            let why = crate::tls::failure(&e, &POSTGRES).unwrap_or_else(|| crate::telemetry::chain(&e));
            SyncError::Connect(settings.redact(&why))
        })?;
    let s = settings.clone();
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %s.redact(&crate::telemetry::chain(&e)), "Postgres connection closed");
        }
    });
    Ok(client)
}

/// Runs `f` within the statement timeout (a network that swallows packets
/// would otherwise hold the drain forever).
async fn bounded<T>(f: impl Future<Output = Result<T, SyncError>>) -> Result<T, SyncError> {
    let limit = STATEMENT_TIMEOUT + Duration::from_secs(5);
    tokio::time::timeout(limit, f).await.map_err(|_| SyncError::Timeout(limit.as_secs()))?
}

fn db(settings: &SyncSettings) -> impl Fn(tokio_postgres::Error) -> SyncError + '_ {
    |e| SyncError::Db(settings.redact(&crate::telemetry::chain(&e)))
}

fn ts(ms: UnixMillis) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl Drain {
    /// Drains until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(BACKOFF_INITIAL, BACKOFF_MAX);
        let mut client: Option<Client> = None;
        let mut last_beat = None::<Duration>;
        loop {
            let step = async {
                let c = match client.take() {
                    Some(c) if !c.is_closed() => c,
                    _ => self.open().await?,
                };
                let result = self.drain_once(&c, &mut last_beat).await;
                client = Some(c);
                result
            };
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = step => r,
            };
            let delay = match result {
                Ok(n) => {
                    backoff.reset();
                    if n >= self.settings.batch_size { Duration::ZERO } else { POLL }
                }
                Err(e) => {
                    client = None;
                    let delay = match e {
                        SyncError::NewerSchema { .. } => backoff.max_delay(),
                        _ => backoff.next_delay(),
                    };
                    self.failed(&e, backoff.failures(), delay);
                    delay
                }
            };
            if !delay.is_zero() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }

    fn failed(&self, e: &SyncError, failures: u32, delay: Duration) {
        let message = self.settings.redact(&crate::telemetry::chain(e));
        let now = self.store.clock().now_ms();
        let changed = self.handle.state().last_error.as_deref() != Some(message.as_str());
        if changed {
            tracing::warn!(error = %message, failures, retry_in_s = delay.as_secs_f64(), "Postgres sync paused");
        } else {
            tracing::debug!(error = %message, failures, retry_in_s = delay.as_secs_f64(), "Postgres sync still paused");
        }
        self.handle.update(|s| {
            s.connected = false;
            s.last_error = Some(message);
            s.last_error_ms = Some(now);
        });
    }

    /// Connects, checks and migrates the schema, and backfills the box's
    /// history when the database has none of it.
    async fn open(&self) -> Result<Client, SyncError> {
        let mut client = connect(&self.settings).await?;
        bounded(schema::migrate(&mut client)).await?;
        let known: bool = bounded(async {
            let row = client
                .query_one("SELECT EXISTS (SELECT 1 FROM devices WHERE device_id = $1)", &[&self.device.device_id])
                .await
                .map_err(db(&self.settings))?;
            Ok(row.get(0))
        })
        .await?;
        if !known {
            self.backfill(&client).await?;
        }
        tracing::info!(device_id = %self.device.device_id, "Postgres sync connected");
        self.handle.update(|s| s.connected = true);
        Ok(client)
    }

    /// Copies every clip record still in the store, with its events, then
    /// records the device (so an interrupted backfill starts again).
    async fn backfill(&self, client: &Client) -> Result<(), SyncError> {
        let mut after = None;
        let mut clips = 0u64;
        loop {
            let q = ClipQuery { after: after.take(), limit: BACKFILL_PAGE, ..ClipQuery::default() };
            let (page, events) = self
                .store
                .run(move |s| {
                    let page = s.clips(&q)?;
                    let mut events = Vec::new();
                    for r in &page.clips {
                        events.extend(s.numbered_events_for(r.clip.clip_id.as_str())?);
                    }
                    Ok((page, events))
                })
                .await?;
            bounded(self.write(client, &events, &page.clips, &[], false)).await?;
            clips += page.clips.len() as u64;
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        bounded(self.write(client, &[], &[], &[], true)).await?;
        tracing::info!(clips, "Postgres sync: backfilled this box's history");
        self.handle.update(|s| s.backfilled_clips += clips);
        Ok(())
    }

    /// Copies one batch of the outbox and one of the log outbox; returns the
    /// larger of their sizes.
    async fn drain_once(&self, client: &Client, last_beat: &mut Option<Duration>) -> Result<usize, SyncError> {
        let limit = self.settings.batch_size;
        let (batch, records, logs) = self
            .store
            .run(move |s| {
                let batch = s.sync_batch(limit)?;
                let ids: BTreeSet<&str> = batch.iter().map(|(id, _)| id.clip_id.as_str()).collect();
                let mut records = Vec::with_capacity(ids.len());
                for id in ids {
                    records.extend(s.get_clip(id)?);
                }
                Ok((batch, records, s.log_batch(limit)?))
            })
            .await?;
        // The clock seam's monotonic time, so that tests can move it.
        let now = self.store.clock().monotonic();
        let beat_due = last_beat.is_none_or(|t| now.saturating_sub(t) >= HEARTBEAT);
        if batch.is_empty() && logs.is_empty() && !beat_due {
            return Ok(0);
        }
        bounded(self.write(client, &batch, &records, &logs.records, true)).await?;
        *last_beat = Some(now);
        let (n, n_logs) = (batch.len(), logs.records.len());
        if n > 0 || !logs.is_empty() {
            let ids: Vec<EventId> = batch.into_iter().map(|(id, _)| id).collect();
            let seqs = logs.seqs();
            self.store.run(move |s| s.write(|w| w.ack_synced(&ids).and_then(|()| w.ack_logs(&seqs)))).await?;
        }
        let now = self.store.clock().now_ms();
        self.handle.update(|s| {
            s.connected = true;
            s.last_success_ms = Some(now);
            s.last_error = None;
            s.events_synced += n as u64;
            s.logs_synced += n_logs as u64;
        });
        if n > 0 || n_logs > 0 {
            tracing::debug!(events = n, clips = records.len(), logs = n_logs, "Postgres sync: batch copied");
        }
        Ok(n.max(n_logs))
    }

    /// One transaction: the events (kept once), the clips' latest states (an
    /// older state never replaces a newer one), log records (kept once), and
    /// the device's `last_seen`.
    async fn write(
        &self,
        client: &Client,
        events: &[(EventId, ClipEvent)],
        records: &[ClipRecord],
        logs: &[(u64, LogRecord)],
        touch_device: bool,
    ) -> Result<(), SyncError> {
        let db = db(&self.settings);
        let device = &self.device.device_id;
        // `Client::transaction` needs `&mut`; the drain owns its client alone.
        client.batch_execute("BEGIN").await.map_err(&db)?;
        let result = async {
            if !events.is_empty() {
                let clip_ids: Vec<&str> = events.iter().map(|(id, _)| id.clip_id.as_str()).collect();
                let seqs: Vec<i32> = events.iter().map(|(id, _)| i32::try_from(id.n).unwrap_or(i32::MAX)).collect();
                let types: Vec<&str> = events.iter().map(|(_, e)| event_type(&e.kind)).collect();
                let times: Vec<DateTime<Utc>> = events.iter().map(|(_, e)| ts(e.ts_ms)).collect();
                let data: Vec<Value> = events.iter().map(|(_, e)| event_data(e)).collect();
                client
                    .execute(
                        "INSERT INTO clip_events (device_id, clip_id, seq, event_type, ts, data) \
                         SELECT $1, * FROM unnest($2::text[], $3::int4[], $4::text[], $5::timestamptz[], $6::jsonb[]) \
                         ON CONFLICT (device_id, clip_id, seq) DO NOTHING",
                        &[device, &clip_ids, &seqs, &types, &times, &data],
                    )
                    .await
                    .map_err(&db)?;
            }
            if !records.is_empty() {
                let ids: Vec<&str> = records.iter().map(|r| r.clip.clip_id.as_str()).collect();
                let docs: Vec<Value> = records.iter().map(clip_state).collect();
                let created: Vec<DateTime<Utc>> = records.iter().map(|r| ts(r.created_ms)).collect();
                let updated: Vec<DateTime<Utc>> = records.iter().map(|r| ts(r.updated_ms)).collect();
                client
                    .execute(
                        "INSERT INTO clip_states (device_id, clip_id, data, created_at, updated_at) \
                         SELECT $1, * FROM unnest($2::text[], $3::jsonb[], $4::timestamptz[], $5::timestamptz[]) \
                         ON CONFLICT (device_id, clip_id) DO UPDATE \
                         SET data = excluded.data, updated_at = excluded.updated_at \
                         WHERE clip_states.updated_at <= excluded.updated_at",
                        &[device, &ids, &docs, &created, &updated],
                    )
                    .await
                    .map_err(&db)?;
            }
            super::logs::copy(client, device, logs).await.map_err(&db)?;
            if touch_device {
                let d = &self.device;
                let cameras = serde_json::to_value(&d.cameras).unwrap_or(Value::Null);
                client
                    .execute(
                        "INSERT INTO devices (device_id, name, version, image_version, cameras, last_seen) \
                         VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT (device_id) DO UPDATE \
                         SET name = excluded.name, version = excluded.version, \
                         image_version = excluded.image_version, cameras = excluded.cameras, \
                         last_seen = excluded.last_seen",
                        &[device, &d.name, &d.version, &d.image_version, &cameras],
                    )
                    .await
                    .map_err(&db)?;
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => client.batch_execute("COMMIT").await.map_err(&db),
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                Err(e)
            }
        }
    }
}
