//! Postgres down for ten minutes, then up (`make bench-outage`): two release
//! daemons on the real model and real footage, one without a `sync` section
//! and one syncing to a private PostgreSQL cluster that is stopped. Clips are
//! dropped into their watched folders in turn, never both at once, so that both
//! see the same machine; each clip's latency is the time from the drop until
//! the API says `done`. After the outage Postgres is started and the bench
//! waits until every clip state of the syncing box is in `clip_states`.
//!
//! `HOMESEC_OUTAGE_S` sets the outage (default 600 s), `HOMESEC_OUTAGE_EVERY_S`
//! the time between clips (default 20 s). Test data: `HOMESEC_TESTDATA`.

use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

use common::config::ConfigBuilder;
use common::peers::{Daemon, wait_for};
use common::postgres::{Cluster, PASSWORD};

const DSN_ENV: &str = "HOMESEC_BENCH_DB_DSN";

fn secs(var: &str, default: u64) -> Duration {
    Duration::from_secs(std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default))
}

fn config(device: &str, dir: &std::path::Path, sync: bool) -> String {
    let mut b = ConfigBuilder::new(device, dir)
        .folder_camera("porch")
        .filter(&["classes: [person, car]", "sample_fps: 1"])
        .server("api_key_env: BENCH_API_KEY");
    if sync {
        b = b.section(&format!("sync:\n  backend: postgres\n  config:\n    dsn_env: {DSN_ENV}"));
    }
    b.build()
}

fn clips(daemon: &Daemon) -> Vec<serde_json::Value> {
    let list = daemon.get_with_key("/api/v1/clips?limit=1000", Some("k"));
    list.and_then(|(_, v)| v["clips"].as_array().cloned()).unwrap_or_default()
}

fn done(daemon: &Daemon) -> usize {
    clips(daemon).iter().filter(|c| c["status"] == "done").count()
}

/// Drops a clip and returns how long the daemon took to finish it.
fn latency(daemon: &Daemon, n: usize) -> Duration {
    let before = done(daemon);
    let start = Instant::now();
    daemon.drop_clip(&common::footage("scene_empty_people_empty.mp4"), &format!("cam{n:03}.mp4"));
    loop {
        if done(daemon) > before {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(300), "clip {n} not done:\n{}", daemon.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64;
    println!(
        "{name:<28} clips {:>3}  median {:>6.0} ms  mean {:>6.0} ms  max {:>6.0} ms",
        v.len(),
        ms(v[v.len() / 2]),
        mean,
        ms(v[v.len() - 1])
    );
}

fn main() {
    let outage = secs("HOMESEC_OUTAGE_S", 600);
    let every = secs("HOMESEC_OUTAGE_EVERY_S", 20);
    let mut pg = Cluster::init();
    let (plain_dir, sync_dir) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let plain =
        Daemon::start(plain_dir.path(), &config("box_plain", plain_dir.path(), false), &[("BENCH_API_KEY", "k")]);
    let dsn = pg.dsn(PASSWORD);
    let synced = Daemon::start(
        sync_dir.path(),
        &config("box_sync", sync_dir.path(), true),
        &[(DSN_ENV, &dsn), ("BENCH_API_KEY", "k")],
    );
    // One clip each first: the detector and the caches warm.
    latency(&plain, 0);
    latency(&synced, 0);

    println!("Postgres down for {} s, a clip every {} s to each daemon in turn", outage.as_secs(), every.as_secs());
    let (mut without, mut down) = (Vec::new(), Vec::new());
    let started = Instant::now();
    let mut n = 1;
    while started.elapsed() < outage {
        let round = Instant::now();
        without.push(latency(&plain, n));
        down.push(latency(&synced, n));
        n += 1;
        std::thread::sleep(every.saturating_sub(round.elapsed()));
    }
    let health = synced.get("/health").expect("health").1;
    assert_eq!(health["checks"]["db"], false, "the db check should fail while Postgres is down: {health}");
    summary("without sync", without);
    summary("sync, Postgres down", down);

    let clips = clips(&synced).len();
    let outbox =
        synced.get_with_key("/api/v1/diagnostics", Some("k")).expect("diagnostics").1["sync"]["outbox_depth"].clone();
    println!(
        "after {:.0} s down: {clips} clip(s), {outbox} event(s) in the sync outbox",
        started.elapsed().as_secs_f64()
    );
    pg.start();
    let back = Instant::now();
    let count =
        || pg.query("SELECT count(*) FROM clip_states WHERE data->>'status' = 'done'").ok()?.parse::<usize>().ok();
    wait_for("every clip state in Postgres", Duration::from_secs(300), || (count()? == clips).then_some(()));
    println!("every clip state in Postgres {:.1} s after it came back (goal: 30 s)", back.elapsed().as_secs_f64());
}
