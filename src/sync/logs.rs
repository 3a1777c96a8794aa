//! Logs to Postgres: what the log capture keeps (warnings and errors by
//! default, `sync.config.log_level`) is moved to the store's bounded log
//! outbox every second and at shutdown ([`LogFlusher`]), and copied from there
//! to `logs` in the drain's transactions ([`copy`]), keyed by each record's
//! random id so that a batch sent again is skipped.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::level_filters::LevelFilter;

use crate::domain::{FieldValue, LogRecord};
use crate::store::{MAX_LOG_RECORDS, Store, StoreError};
use crate::telemetry::LogCapture;

/// `sync.config.log_level` when unset.
pub const DEFAULT_LOG_LEVEL: &str = "warn";
/// How often captured records go to the store (when there are any).
const FLUSH: Duration = Duration::from_secs(1);

/// The level a `log_level` value names: `error`, `warn`, `info` or `off`.
pub fn parse_level(value: &str) -> Option<LevelFilter> {
    match value {
        "error" => Some(LevelFilter::ERROR),
        "warn" => Some(LevelFilter::WARN),
        "info" => Some(LevelFilter::INFO),
        "off" => Some(LevelFilter::OFF),
        _ => None,
    }
}

/// Moves the capture's records to the store's log outbox.
pub struct LogFlusher {
    pub capture: LogCapture,
    pub store: Store,
}

impl LogFlusher {
    /// Every second until `stop`, then once more.
    pub async fn run(self, stop: CancellationToken) {
        let mut failing = false;
        loop {
            let stopped = tokio::select! {
                _ = stop.cancelled() => true,
                _ = tokio::time::sleep(FLUSH) => false,
            };
            match self.flush().await {
                Ok(_) => failing = false,
                // Once per run of failures: the warning is captured too.
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %crate::telemetry::chain(&e), "cannot keep log records for Postgres; dropping them");
                }
                Err(_) => {}
            }
            if stopped {
                return;
            }
        }
    }

    /// Moves what was captured to the store in one transaction; writes
    /// nothing when nothing was captured. Returns how many records it moved.
    pub async fn flush(&self) -> Result<usize, StoreError> {
        let taken = self.capture.take();
        if taken.is_empty() {
            return Ok(0);
        }
        let (n, dropped) = (taken.records.len(), taken.dropped);
        let result =
            self.store.run(move |s| s.write(|w| w.push_logs(&taken.records, taken.dropped, MAX_LOG_RECORDS))).await;
        match result {
            Ok(_) => Ok(n),
            Err(e) => {
                self.capture.add_dropped(n as u64 + dropped);
                Err(e)
            }
        }
    }
}

/// A record's fields as the `fields` object (`{"camera": "porch", "attempt": 2}`).
fn fields_json(r: &LogRecord) -> Value {
    let fields = r.fields.iter().map(|f| {
        let value = match &f.value {
            FieldValue::Str(s) => Value::from(s.as_str()),
            FieldValue::I64(n) => Value::from(*n),
            FieldValue::U64(n) => Value::from(*n),
            // NaN and infinities have no JSON form: null.
            FieldValue::F64(x) => serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number),
            FieldValue::Bool(b) => Value::from(*b),
        };
        (f.name.clone(), value)
    });
    Value::Object(fields.collect::<Map<_, _>>())
}

/// Copies records (with their outbox numbers) to `logs`, in the caller's
/// transaction; a record Postgres has already (same device and id) is skipped.
pub(super) async fn copy(
    client: &Client,
    device_id: &str,
    records: &[(u64, LogRecord)],
) -> Result<(), tokio_postgres::Error> {
    if records.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = records.iter().map(|(_, r)| r.id).collect();
    let seqs: Vec<i64> = records.iter().map(|(s, _)| i64::try_from(*s).unwrap_or(i64::MAX)).collect();
    let times: Vec<DateTime<Utc>> =
        records.iter().map(|(_, r)| DateTime::from_timestamp_millis(r.ts_ms).unwrap_or_default()).collect();
    let levels: Vec<&str> = records.iter().map(|(_, r)| r.level.as_str()).collect();
    let targets: Vec<&str> = records.iter().map(|(_, r)| r.target.as_str()).collect();
    let messages: Vec<&str> = records.iter().map(|(_, r)| r.message.as_str()).collect();
    let fields: Vec<Value> = records.iter().map(|(_, r)| fields_json(r)).collect();
    client
        .execute(
            "INSERT INTO logs (device_id, id, seq, ts, level, target, message, fields) \
             SELECT $1, * FROM unnest($2::int8[], $3::int8[], $4::timestamptz[], $5::text[], $6::text[], \
             $7::text[], $8::jsonb[]) \
             ON CONFLICT (device_id, id) DO NOTHING",
            &[&device_id, &ids, &seqs, &times, &levels, &targets, &messages, &fields],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{LogField, LogLevel};

    #[test]
    fn log_levels_are_the_four_documented() {
        assert_eq!(parse_level("warn"), Some(LevelFilter::WARN));
        assert_eq!(parse_level("error"), Some(LevelFilter::ERROR));
        assert_eq!(parse_level("info"), Some(LevelFilter::INFO));
        assert_eq!(parse_level("off"), Some(LevelFilter::OFF));
        for bad in ["debug", "WARN", "warning", ""] {
            assert_eq!(parse_level(bad), None, "{bad}");
        }
        assert_eq!(parse_level(DEFAULT_LOG_LEVEL), Some(LevelFilter::WARN));
    }

    #[test]
    fn fields_become_a_json_object_of_their_types() {
        let field = |name: &str, value| LogField { name: name.into(), value };
        let r = LogRecord {
            id: 1,
            ts_ms: 0,
            level: LogLevel::Warn,
            target: "t".into(),
            message: "m".into(),
            fields: vec![
                field("camera", FieldValue::Str("porch".into())),
                field("attempt", FieldValue::U64(2)),
                field("offset", FieldValue::I64(-1)),
                field("retry_in_s", FieldValue::F64(1.5)),
                field("nan", FieldValue::F64(f64::NAN)),
                field("upload_failed", FieldValue::Bool(true)),
            ],
        };
        assert_eq!(
            fields_json(&r),
            serde_json::json!({"camera": "porch", "attempt": 2, "offset": -1, "retry_in_s": 1.5, "nan": null, "upload_failed": true})
        );
    }

    #[tokio::test]
    async fn a_flush_moves_the_queue_into_the_store_only_when_there_is_something() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path).unwrap();
        let capture = LogCapture::new(10);
        let flusher = LogFlusher { capture: capture.clone(), store: store.clone() };
        let size = || std::fs::metadata(&path).unwrap().len();
        let before = size();
        assert_eq!(flusher.flush().await.unwrap(), 0);
        assert_eq!(size(), before, "nothing captured: nothing written");

        capture.enable(LevelFilter::WARN, crate::clock::SystemClock::shared());
        let subscriber =
            tracing_subscriber::layer::SubscriberExt::with(tracing_subscriber::registry(), capture.layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(camera = "porch", "first");
            tracing::error!("second");
        });
        capture.add_dropped(3);
        assert_eq!(flusher.flush().await.unwrap(), 2);
        assert!(capture.take().is_empty());
        let batch = store.log_batch(10).unwrap();
        let kept: Vec<_> = batch.records.iter().map(|(_, r)| (r.level, r.message.as_str())).collect();
        assert_eq!(kept, [(LogLevel::Warn, "first"), (LogLevel::Error, "second")]);
        assert_eq!(store.logs_dropped().unwrap(), 3);
    }
}
