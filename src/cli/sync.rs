//! `homesec sync status` / `homesec sync migrate`.

use serde_json::Value;

use crate::config::Config;
use crate::store::Store;
use crate::sync::{SyncError, SyncSettings, schema};

/// The sync's status (the `sync` object of the diagnostics) as lines of text.
pub fn render(sync: &Value) -> String {
    let or = |v: &Value, none: &str| match v {
        Value::Null => none.to_owned(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let lag = sync["lag_s"].as_f64().map_or("none".to_owned(), |s| format!("{s:.1} s"));
    [
        format!("backend:        {}", or(&sync["backend"], "postgres")),
        format!("connected:      {}", or(&sync["connected"], "unknown (the daemon is not running)")),
        format!("outbox depth:   {} event(s)", or(&sync["outbox_depth"], "0")),
        format!("lag:            {lag}"),
        format!(
            "log outbox:     {} record(s), {} dropped",
            or(&sync["log_outbox_depth"], "0"),
            or(&sync["logs_dropped"], "0")
        ),
        format!("last success:   {}", or(&sync["last_success"], "never (since the daemon started)")),
        format!("last error:     {}", or(&sync["last_error"], "none")),
        format!("events synced:  {}", or(&sync["events_synced"], "0")),
        format!("logs synced:    {}", or(&sync["logs_synced"], "0")),
    ]
    .join("\n")
        + "\n"
}

/// The outbox as the store shows it while the daemon is not running.
pub fn offline_status(store: &Store) -> Result<Value, crate::store::StoreError> {
    let now = store.clock().now_ms();
    let depth = store.sync_backlog()?;
    let lag = store.sync_oldest_pending_ms()?.map(|t| (now - t).max(0) as f64 / 1000.0);
    Ok(serde_json::json!({
        "backend": crate::sync::BACKEND,
        "outbox_depth": depth,
        "lag_s": lag,
        "log_outbox_depth": store.log_backlog()?,
        "logs_dropped": store.logs_dropped()?,
    }))
}

/// Applies the schema to the configured database; returns what it did.
pub async fn migrate(cfg: &Config) -> Result<String, SyncError> {
    let Some(settings) = SyncSettings::of(cfg)? else {
        return Ok("no `sync` section in the config: nothing to migrate".into());
    };
    let mut client = crate::sync::connect(&settings).await?;
    let done = schema::migrate(&mut client).await?;
    Ok(match done.applied.as_slice() {
        [] => format!("schema at version {}: nothing to apply", done.version),
        v => format!("applied version(s) {v:?}: schema at version {}", done.version),
    })
}
