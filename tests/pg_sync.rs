//! Postgres sync against real PostgreSQL: the daemon with real footage and the
//! real model, Postgres down then up, restarted mid-drain, a wrong password,
//! TLS (a wrong CA, then the right one), two boxes in one database, concurrent
//! migrations, a newer schema, kill -9 mid-drain, and the box's warnings and
//! errors in `logs` (kept once when sent again).

mod common;

use std::time::Duration;

use common::config::ConfigBuilder;
use common::peers::{Daemon, wait_for};
use common::pki::Pki;
use common::postgres::{Cluster, Db, PASSWORD, psql};

const DSN_ENV: &str = "HOMESEC_TEST_DB_DSN";
/// The schema versions applied, in order (`1,2`).
const SCHEMA_VERSIONS: &str = "SELECT string_agg(version::text, ',' ORDER BY version) FROM homesec_schema";

fn config(device: &str, dir: &std::path::Path) -> String {
    ConfigBuilder::new(device, dir)
        .folder_camera("porch")
        .filter(&["classes: [person, car]", "sample_fps: 1"])
        .server("api_key_env: SYNC_TEST_KEY")
        .section(&format!("sync:\n  backend: postgres\n  config:\n    dsn_env: {DSN_ENV}\n    batch_size: 100"))
        .build()
}

fn start(device: &str, dir: &std::path::Path, dsn: &str) -> Daemon {
    Daemon::start(dir, &config(device, dir), &[(DSN_ENV, dsn), ("SYNC_TEST_KEY", "k")])
}

/// Drops a clip and waits until the pipeline has finished it; returns its id.
fn clips(daemon: &Daemon) -> Vec<serde_json::Value> {
    let list = daemon.get_with_key("/api/v1/clips?limit=1000", Some("k"));
    list.and_then(|(_, v)| v["clips"].as_array().cloned()).unwrap_or_default()
}

fn process_clip(daemon: &Daemon, name: &str) -> String {
    let before: Vec<String> = clips(daemon).iter().map(|c| c["clip"]["clip_id"].to_string()).collect();
    daemon.drop_clip(&common::footage("scene_empty_people_empty.mp4"), name);
    let start = std::time::Instant::now();
    loop {
        let clips = clips(daemon);
        let new = clips.iter().find(|c| !before.contains(&c["clip"]["clip_id"].to_string()));
        if let Some(c) = new.filter(|c| c["status"] == "done") {
            return c["clip"]["clip_id"].as_str().unwrap().to_owned();
        }
        if start.elapsed() > Duration::from_secs(180) {
            let log = daemon.log_text();
            panic!("the clip is not done: {clips:?}\n{}", &log[log.len().saturating_sub(4000)..]);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `columns` of the clip's row in `clip_states`, once it is there.
fn state_in(pg: &Cluster, clip: &str, columns: &str) -> String {
    wait_for("the clip's state in Postgres", Duration::from_secs(90), || {
        pg.query(&format!("SELECT {columns} FROM clip_states WHERE clip_id = '{clip}'")).ok().filter(|r| !r.is_empty())
    })
}

/// What `homesec sync status` prints (it asks the running daemon).
fn sync_status(daemon: &Daemon) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_homesec"))
        .args(["sync", "status", "--config"])
        .arg(&daemon.config)
        .env("SYNC_TEST_KEY", "k")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn diagnostics(daemon: &Daemon) -> serde_json::Value {
    daemon.get_with_key("/api/v1/diagnostics", Some("k")).unwrap().1
}

#[test]
fn postgres_down_at_start_then_up_gets_every_clip_state_and_the_pipeline_never_waits() {
    let mut pg = Cluster::init();
    let tmp = tempfile::tempdir().unwrap();
    let daemon = start("box1", tmp.path(), &pg.dsn(PASSWORD));

    // Postgres is down: the clip is done all the same, the box only degraded.
    let clip = process_clip(&daemon, "cam01.mp4");
    let (code, health) = daemon.get("/health").unwrap();
    assert_eq!(code, 200, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["checks"]["db"], false, "{health}");
    assert!(health["warnings"].to_string().contains("cannot reach Postgres"), "{health}");
    let d = diagnostics(&daemon);
    assert!(d["sync"]["outbox_depth"].as_u64().unwrap() > 0, "{d}");
    assert!(d["sync"]["lag_s"].as_f64().is_some(), "{d}");

    pg.start();
    assert_eq!(state_in(&pg, &clip, "data->>'status', data->>'camera_name'"), "done|porch");
    wait_for("the outbox drained", Duration::from_secs(30), || {
        (diagnostics(&daemon)["sync"]["outbox_depth"] == 0).then_some(())
    });
    let local = daemon.get_with_key(&format!("/api/v1/clips/{clip}"), Some("k")).unwrap().1;
    let events = local["events"].as_array().map_or(0, |e| e.len());
    assert!(events >= 5, "{local}");
    let remote: usize =
        pg.query(&format!("SELECT count(*) FROM clip_events WHERE clip_id = '{clip}'")).unwrap().parse().unwrap();
    assert_eq!(remote, events);
    assert_eq!(pg.query("SELECT device_id, cameras FROM devices").unwrap(), r#"box1|["porch"]"#);
    assert_eq!(pg.query(SCHEMA_VERSIONS).unwrap(), "1,2");
    let (_, health) = daemon.get("/health").unwrap();
    assert_eq!(health["checks"]["db"], true, "{health}");

    // `homesec sync status` asks the running daemon.
    let text = sync_status(&daemon);
    assert!(text.contains("outbox depth:   0 event(s)") && text.contains("last error:     none"), "{text}");
    assert!(!daemon.log_text().contains(PASSWORD), "the password is in the log");
}

#[test]
fn a_wrong_password_degrades_with_a_clear_reason_and_is_never_logged() {
    let mut pg = Cluster::init();
    pg.start();
    let tmp = tempfile::tempdir().unwrap();
    let wrong = "Wrong-Pass-9f3";
    let daemon = start("box1", tmp.path(), &pg.dsn(wrong));
    process_clip(&daemon, "cam01.mp4");
    let health = wait_for("the db check failing", Duration::from_secs(30), || {
        let (_, h) = daemon.get("/health")?;
        (h["checks"]["db"] == false).then_some(h)
    });
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(health["warnings"].to_string().contains("password authentication failed"), "{health}");
    let d = diagnostics(&daemon);
    assert!(d["sync"]["last_error"].as_str().unwrap().contains("password authentication failed"), "{d}");
    let everything = format!("{}{health}{d}", daemon.log_text());
    assert!(!everything.contains(wrong), "the password leaked:\n{everything}");
    assert_eq!(pg.query("SELECT count(*) FROM pg_tables WHERE tablename = 'clip_states'").unwrap(), "0");
}

#[test]
fn over_tls_a_wrong_ca_is_one_clear_reason_and_the_right_one_syncs_everything() {
    let pki = Pki::new();
    let mut pg = Cluster::init();
    pg.enable_tls(&pki.path("server.pem"), &pki.path("server.key"));
    pg.start();
    let dsn = |ca: &str| format!("{}?sslmode=verify-full&sslrootcert={}", pg.dsn(PASSWORD), pki.path(ca).display());
    let tmp = tempfile::tempdir().unwrap();
    let mut daemon = start("box1", tmp.path(), &dsn("other_ca.pem"));

    // The wrong CA: one clear reason, the box only degraded, the clip done.
    let clip = process_clip(&daemon, "cam01.mp4");
    let health = wait_for("the db check failing", Duration::from_secs(30), || {
        let (_, h) = daemon.get("/health")?;
        (h["checks"]["db"] == false).then_some(h)
    });
    assert_eq!(health["status"], "degraded", "{health}");
    let warnings = health["warnings"].to_string();
    assert!(
        warnings.contains("Postgres's certificate is not signed by a trusted CA (check sslrootcert in the DSN)"),
        "{health}"
    );
    assert!(diagnostics(&daemon)["sync"]["outbox_depth"].as_u64().unwrap() > 0);
    assert_eq!(pg.query("SELECT count(*) FROM pg_tables WHERE tablename = 'clip_states'").unwrap(), "0");

    // The CA fixed: everything the outbox kept arrives, over TLS.
    daemon.stop();
    daemon.set_env(DSN_ENV, &dsn("ca.pem"));
    daemon.restart();
    assert_eq!(state_in(&pg, &clip, "data->>'status'"), "done");
    let encrypted = pg
        .query(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'homesec'",
        )
        .unwrap();
    assert_eq!(encrypted, "t", "the daemon's connection is not encrypted");
    wait_for("the db check passing", Duration::from_secs(30), || {
        (daemon.get("/health")?.1["checks"]["db"] == true).then_some(())
    });
    assert!(!daemon.log_text().contains(PASSWORD), "the password is in the log");
}

#[test]
fn two_boxes_with_the_same_camera_names_sit_side_by_side() {
    let db = Db::create("fleet");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let box_a = start("box_a", a.path(), &db.dsn());
    let clip_a = process_clip(&box_a, "cam01.mp4");
    let box_b = start("box_b", b.path(), &db.dsn());
    let clip_b = process_clip(&box_b, "cam01.mp4");
    wait_for("both boxes' clips done in Postgres", Duration::from_secs(60), || {
        (db.count("SELECT count(*) FROM clip_states WHERE data->>'status' = 'done'") == 2).then_some(())
    });
    let rows = db.query("SELECT device_id, clip_id, data->>'camera_name' FROM clip_states ORDER BY device_id");
    assert_eq!(rows, format!("box_a|{clip_a}|porch\nbox_b|{clip_b}|porch"));
    assert_eq!(db.query("SELECT string_agg(device_id, ',' ORDER BY device_id) FROM devices"), "box_a,box_b");
    for d in ["box_a", "box_b"] {
        assert!(db.count(&format!("SELECT count(*) FROM clip_events WHERE device_id = '{d}'")) >= 5);
    }
}

#[test]
fn four_processes_migrating_one_empty_database_apply_the_schema_once() {
    let db = Db::create("migrate");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("homesec.yaml");
    std::fs::write(&path, config("box1", tmp.path()).replace("{api_port}", "0")).unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_homesec"))
                .args(["sync", "migrate", "--config"])
                .arg(&path)
                .env(DSN_ENV, db.dsn())
                .env("SYNC_TEST_KEY", "k")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect();
    assert_eq!(outputs.iter().filter(|o| o.contains("applied version(s) [1, 2]")).count(), 1, "{outputs:?}");
    assert_eq!(outputs.iter().filter(|o| o.contains("nothing to apply")).count(), 3, "{outputs:?}");
    assert_eq!(db.query(SCHEMA_VERSIONS), "1,2");
}

#[test]
fn a_database_with_a_newer_schema_is_refused_and_the_box_works() {
    let db = Db::create("newer");
    db.query("CREATE TABLE homesec_schema (version int PRIMARY KEY, applied_at timestamptz); INSERT INTO homesec_schema VALUES (1, now()), (7, now())");
    let tmp = tempfile::tempdir().unwrap();
    let daemon = start("box1", tmp.path(), &db.dsn());
    process_clip(&daemon, "cam01.mp4");
    let health = wait_for("the db check failing", Duration::from_secs(30), || {
        let (_, h) = daemon.get("/health")?;
        (h["checks"]["db"] == false).then_some(h)
    });
    assert_eq!(health["status"], "degraded");
    assert!(
        health["warnings"].to_string().contains("schema is version 7, newer than this build knows (2): not syncing"),
        "{health}"
    );
    assert_eq!(db.count("SELECT count(*) FROM pg_tables WHERE tablename = 'clip_states'"), 0);
}

/// A store holding `clips` finished clips of 3 events each, all waiting in the sync outbox.
fn filled_store(data_dir: &std::path::Path, clips: usize) -> usize {
    use homesec::domain::{EventKind, Stage};
    std::fs::create_dir_all(data_dir).unwrap();
    let path = homesec::fsutil::DataLayout::new(data_dir).store();
    let events = [EventKind::StageSucceeded { stage: Stage::Filter }, EventKind::ClipCompleted];
    let store = common::finished_clips(&path, clips, &events);
    assert_eq!(store.sync_backlog().unwrap() as usize, clips * 3);
    clips * 3
}

#[test]
fn kill_9_mid_drain_loses_and_duplicates_nothing() {
    let db = Db::create("kill");
    let tmp = tempfile::tempdir().unwrap();
    let events = filled_store(&tmp.path().join("data"), 3000);
    // The device is known: no backfill, the outbox drains batch by batch.
    let migrate = std::process::Command::new(env!("CARGO_BIN_EXE_homesec"))
        .args(["sync", "migrate", "--config"])
        .arg({
            let p = tmp.path().join("migrate.yaml");
            std::fs::write(&p, config("box1", tmp.path()).replace("{api_port}", "0")).unwrap();
            p
        })
        .env(DSN_ENV, db.dsn())
        .env("SYNC_TEST_KEY", "k")
        .output()
        .unwrap();
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
    db.query("INSERT INTO devices VALUES ('box1', 'box1', '0', '[]', now())");

    let mut daemon = start("box1", tmp.path(), &db.dsn());
    wait_for("the drain under way", Duration::from_secs(60), || {
        (db.count("SELECT count(*) FROM clip_events") > 0).then_some(())
    });
    daemon.kill9();
    let copied = db.count("SELECT count(*) FROM clip_events") as usize;
    assert!(copied < events, "killed too late to test anything ({copied} of {events})");

    daemon.restart();
    wait_for("every event in Postgres", Duration::from_secs(120), || {
        (db.count("SELECT count(*) FROM clip_events") as usize == events).then_some(())
    });
    wait_for("the outbox empty", Duration::from_secs(30), || {
        (diagnostics(&daemon)["sync"]["outbox_depth"] == 0).then_some(())
    });
    assert_eq!(db.count("SELECT count(*) FROM clip_events") as usize, events, "no duplicate");
    assert_eq!(db.count("SELECT count(*) FROM clip_states"), 3000);
    assert_eq!(db.count("SELECT count(*) FROM clip_states WHERE data->>'status' = 'done'"), 3000);
}

#[test]
fn postgres_restarted_mid_drain_gets_every_event_once() {
    let mut pg = Cluster::init();
    pg.start();
    let tmp = tempfile::tempdir().unwrap();
    let events = filled_store(&tmp.path().join("data"), 3000);
    let daemon = start("box1", tmp.path(), &pg.dsn(PASSWORD));
    let count = |pg: &Cluster| pg.query("SELECT count(*) FROM clip_events").ok().and_then(|n| n.parse::<usize>().ok());
    let copied = wait_for("the drain under way", Duration::from_secs(60), || count(&pg).filter(|n| *n > 0));
    pg.stop();
    assert!(copied < events, "restarted too late to test anything ({copied} of {events})");
    pg.start();
    let count = || count(&pg);
    wait_for("every event in Postgres", Duration::from_secs(120), || (count()? == events).then_some(()));
    wait_for("the outbox empty", Duration::from_secs(30), || {
        (diagnostics(&daemon)["sync"]["outbox_depth"] == 0).then_some(())
    });
    assert_eq!(count(), Some(events), "no duplicate");
    assert_eq!(pg.query("SELECT count(*) FROM clip_states WHERE data->>'status' = 'done'").unwrap(), "3000");
}

#[test]
fn warnings_and_errors_reach_the_logs_table_with_their_fields_and_info_lines_do_not() {
    let db = Db::create("logs");
    let tmp = tempfile::tempdir().unwrap();
    let daemon = start("box1", tmp.path(), &db.dsn());
    // A file that is not a video: the folder source quarantines it and logs an
    // error (`unreadable clip quarantined`, with the camera and the reason).
    let junk = tmp.path().join("junk.mp4");
    std::fs::write(&junk, b"this is not a video").unwrap();
    daemon.drop_clip(&junk, "junk.mp4");
    // (`logs` does not exist until the daemon has migrated the database.)
    let rows = |sql: &str| psql(db.port, &db.name, None, sql).ok().filter(|r| !r.is_empty());
    let row = wait_for("the quarantine error in logs", Duration::from_secs(60), || {
        rows(
            "SELECT device_id, level, target, fields->>'camera', fields->>'file' LIKE '%junk.mp4', \
              fields ? 'reason', ts > now() - interval '5 minutes' \
              FROM logs WHERE message = 'unreadable clip quarantined'",
        )
    });
    // (Logged by the intake the folder and FTP sources share.)
    assert_eq!(row, "box1|ERROR|homesec::sources::intake|porch|t|t|t");
    // A warning the daemon logs at start (this config has no notifiers).
    let warning = wait_for("the start-up warning in logs", Duration::from_secs(30), || {
        rows("SELECT device_id, level, target FROM logs WHERE message LIKE 'no notifiers configured%'")
    });
    assert_eq!(warning, "box1|WARN|homesec::app");
    // Info lines (`camera configured`, `HTTP API listening`, …) stay on the box at the default level.
    assert!(daemon.log_text().contains("camera configured"));
    assert_eq!(db.count("SELECT count(*) FROM logs WHERE level NOT IN ('WARN', 'ERROR')"), 0);
    assert_eq!(db.count("SELECT count(*) FROM logs WHERE message = 'camera configured'"), 0);
    // The device row has the image version column: NULL off the appliance image.
    assert_eq!(db.query("SELECT image_version IS NULL FROM devices WHERE device_id = 'box1'"), "t");
    assert_eq!(db.query(SCHEMA_VERSIONS), "1,2");

    let sync = wait_for("the log outbox drained", Duration::from_secs(30), || {
        let d = diagnostics(&daemon);
        (d["sync"]["log_outbox_depth"] == 0).then(|| d["sync"].clone())
    });
    assert!(sync["logs_synced"].as_u64().unwrap() >= 2, "{sync}");
    assert_eq!(sync["logs_dropped"], 0, "{sync}");
    let text = sync_status(&daemon);
    assert!(text.contains("log outbox:     0 record(s), 0 dropped"), "{text}");
}

#[test]
fn log_records_sent_again_after_a_crash_before_the_local_ack_are_kept_once() {
    use homesec::domain::{LogLevel, LogRecord};
    let db = Db::create("logs_resend");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let path = homesec::fsutil::DataLayout::new(&data).store();
    let now = chrono::Utc::now().timestamp_millis();
    let records: Vec<LogRecord> = (0..50)
        .map(|i| LogRecord {
            id: fastrand::i64(..),
            ts_ms: now - 1_000 + i,
            level: LogLevel::Warn,
            target: "resend_test".into(),
            message: format!("warning {i}"),
            fields: Vec::new(),
        })
        .collect();
    let store = homesec::store::Store::open(&path).unwrap();
    store.write(|w| w.push_logs(&records, 0, homesec::store::MAX_LOG_RECORDS)).unwrap();
    drop(store);
    // The store as a crash after the Postgres commit, before the local ack, leaves it.
    let unacked = tmp.path().join("unacked.redb");
    std::fs::copy(&path, &unacked).unwrap();

    let mut daemon = start("box1", tmp.path(), &db.dsn());
    let sent = "SELECT count(*) FROM logs WHERE target = 'resend_test'";
    wait_for("the records in Postgres", Duration::from_secs(60), || (db.count(sent) == 50).then_some(()));
    wait_for("the records acked", Duration::from_secs(30), || {
        (diagnostics(&daemon)["sync"]["log_outbox_depth"] == 0).then_some(())
    });
    daemon.kill9();
    std::fs::copy(&unacked, &path).unwrap();
    daemon.restart();
    let sync = wait_for("the records sent again and acked", Duration::from_secs(60), || {
        let sync = diagnostics(&daemon)["sync"].clone();
        (sync["log_outbox_depth"] == 0 && sync["logs_synced"].as_u64() >= Some(50)).then_some(sync)
    });
    assert_eq!(db.count(sent), 50, "no duplicate: {sync}");
    assert_eq!(db.count("SELECT count(DISTINCT seq) FROM logs WHERE target = 'resend_test'"), 50);
}
