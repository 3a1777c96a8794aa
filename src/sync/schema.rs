//! The Postgres schema: the numbered SQL files of `migrations/`, embedded,
//! applied in order, each in its own transaction, under an advisory lock (boxes
//! that start together apply each once), recorded in `homesec_schema`.

use tokio_postgres::Client;

use super::SyncError;

/// `(version, sql)` in order.
pub const MIGRATIONS: &[(i32, &str)] =
    &[(1, include_str!("../../migrations/0001_clip_state.sql")), (2, include_str!("../../migrations/0002_logs.sql"))];

/// The newest schema version this build knows.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

/// Key of the advisory lock held while migrating (`homesec` in ASCII).
const LOCK: i64 = 0x0068_6f6d_6573_6563;

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// Versions applied now.
    pub applied: Vec<i32>,
    /// The schema version after.
    pub version: i32,
}

/// Brings the database to [`latest`]; refuses a database whose schema is newer.
pub async fn migrate(client: &mut Client) -> Result<Migrated, SyncError> {
    let db = |e: tokio_postgres::Error| SyncError::Db(crate::telemetry::chain(&e));
    client.execute("SELECT pg_advisory_lock($1)", &[&LOCK]).await.map_err(db)?;
    let result = migrate_locked(client).await;
    // Closing the session would release it too.
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK]).await.map_err(db);
    let migrated = result?;
    unlocked?;
    Ok(migrated)
}

async fn migrate_locked(client: &mut Client) -> Result<Migrated, SyncError> {
    let db = |e: tokio_postgres::Error| SyncError::Db(crate::telemetry::chain(&e));
    let exists: bool =
        client.query_one("SELECT to_regclass('homesec_schema') IS NOT NULL", &[]).await.map_err(db)?.get(0);
    if !exists {
        client
            .batch_execute(
                "CREATE TABLE homesec_schema (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .await
            .map_err(db)?;
    }
    let current: i32 =
        client.query_one("SELECT coalesce(max(version), 0) FROM homesec_schema", &[]).await.map_err(db)?.get(0);
    if current > latest() {
        return Err(SyncError::NewerSchema { found: current, known: latest() });
    }
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let txn = client.transaction().await.map_err(db)?;
        txn.batch_execute(sql).await.map_err(db)?;
        txn.execute("INSERT INTO homesec_schema (version, applied_at) VALUES ($1, now())", &[version])
            .await
            .map_err(db)?;
        txn.commit().await.map_err(db)?;
        tracing::info!(version, "Postgres schema migrated");
        applied.push(*version);
    }
    Ok(Migrated { applied, version: latest().max(current) })
}
