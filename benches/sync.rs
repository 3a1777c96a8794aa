//! Drain throughput into the local PostgreSQL (127.0.0.1:5432, trust auth):
//! a store with 20,000 events waiting in the sync outbox, drained by the real
//! drain task into a fresh database. Prints events per second.

use std::time::{Duration, Instant};

use homesec::domain::{EventKind, Stage};
use homesec::sync::{Device, Drain, SyncHandle, SyncSettings};

#[path = "../tests/common/mod.rs"]
mod common;

const CLIPS: usize = 4_000;

fn psql(db: &str, sql: &str) {
    let ok = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", db, "-qc", sql])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "psql: {sql}");
}

fn main() {
    let db = format!("homesec_bench_sync_{}", std::process::id());
    psql("postgres", &format!("CREATE DATABASE {db}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let events = [
        EventKind::StageStarted { stage: Stage::Filter, attempt: 1 },
        EventKind::StageSucceeded { stage: Stage::Filter },
        EventKind::AlertDecided { notify: true, reason: "detected=person".into() },
        EventKind::ClipCompleted,
    ];
    let store = common::finished_clips(&dir.path().join("s.redb"), CLIPS, &events);
    let events = store.sync_backlog().expect("backlog");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    {
        let batch_size = 500;
        let settings =
            SyncSettings::from_dsn("BENCH", &format!("postgresql://postgres@127.0.0.1:5432/{db}"), batch_size)
                .expect("dsn");
        let handle = SyncHandle::new(store.clone(), store.clock().clone());
        // A known device: no backfill, the outbox is what is measured.
        let device = Device {
            device_id: "bench".into(),
            name: "bench".into(),
            version: "0".into(),
            image_version: None,
            cameras: vec![],
        };
        let drain = Drain { settings: settings.clone(), store: store.clone(), handle: handle.clone(), device };
        let elapsed = rt.block_on(async {
            let mut c = homesec::sync::connect(&settings).await.expect("connect");
            homesec::sync::schema::migrate(&mut c).await.expect("migrate");
            c.execute("INSERT INTO devices VALUES ('bench', 'bench', '0', '[]', now())", &[]).await.expect("device");
            let token = tokio_util::sync::CancellationToken::new();
            let start = Instant::now();
            let task = tokio::spawn(drain.run(token.clone()));
            while store.sync_backlog().expect("backlog") > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let elapsed = start.elapsed();
            token.cancel();
            let _ = task.await;
            elapsed
        });
        println!(
            "sync drain: {events} events of {CLIPS} clips, batch_size {batch_size}: {:.2} s, {:.0} events/s",
            elapsed.as_secs_f64(),
            events as f64 / elapsed.as_secs_f64()
        );
    }
    psql("postgres", &format!("DROP DATABASE {db} WITH (FORCE)"));
}
