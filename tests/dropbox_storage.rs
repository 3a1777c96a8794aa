//! The `dropbox` storage against a local stand-in that checks every request
//! against Dropbox's documented HTTP API: the backend's own calls (upload,
//! upload sessions with their offsets, fetch back, check, delete, JSON, token
//! refresh on `expired_access_token`, `429` waited out, a revoked refresh
//! token named), and the real daemon on real footage (a revoked token shown
//! in `/health`, the clip kept and uploaded once the token works).

mod common;

use std::path::Path;
use std::time::Duration;

use common::config::ConfigBuilder;
use common::dropbox::{APP_KEY, APP_KEY_ENV, APP_SECRET, APP_SECRET_ENV, Dropbox, REFRESH_TOKEN, REFRESH_TOKEN_ENV};
use common::peers::{Daemon, wait_for};
use homesec::domain::{Clip, ClipId};
use homesec::storage::StorageBackend;
use homesec::storage::dropbox::{DropboxConfig, DropboxCredentials, DropboxStorage};
use serde_json::{Value, json};

const FOOTAGE: &str = "vtest_h264.mp4";

fn backend(dbx: &Dropbox, extra: Value) -> DropboxStorage {
    let mut cfg = json!({
        "root": "/homesec",
        "app_key_env": APP_KEY_ENV,
        "app_secret_env": APP_SECRET_ENV,
        "refresh_token_env": REFRESH_TOKEN_ENV,
        "api_url": dbx.api_url(),
        "content_url": dbx.content_url(),
        "timeout_s": 10,
    });
    if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let cfg: DropboxConfig = serde_json::from_value(cfg).unwrap();
    let keys = DropboxCredentials {
        app_key: APP_KEY.into(),
        app_secret: APP_SECRET.into(),
        refresh_token: REFRESH_TOKEN.into(),
    };
    DropboxStorage::connect(cfg, keys).unwrap()
}

fn clip(id: &str, path: &Path) -> Clip {
    Clip {
        clip_id: ClipId(id.into()),
        camera: "driveway".into(),
        local_path: path.display().to_string(),
        start_ms: 1,
        end_ms: 2,
        source_backend: "folder".into(),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn clips_go_up_whole_or_in_sessions_and_come_back() {
    let dbx = Dropbox::start();
    // 1 MiB chunks: the 5.2 MB footage takes a session (start, 4 appends, finish).
    let store = backend(&dbx, json!({"upload_session_threshold_mb": 2, "chunk_size_mb": 1}));
    let rt = rt();
    let tmp = tempfile::tempdir().unwrap();
    let big = common::footage(FOOTAGE);
    let original = std::fs::read(&big).unwrap();
    let small = tmp.path().join("small.mp4");
    std::fs::write(&small, &original[..300_000]).unwrap();

    assert!(rt.block_on(store.ping()), "{:?}", store.last_error());
    let s = rt.block_on(store.put(&clip("driveway_1", &small), &small)).unwrap();
    assert_eq!(s.storage_uri, "dropbox:/homesec/driveway/driveway_1.mp4");
    assert_eq!(s.view_url.as_deref(), Some("https://www.dropbox.com/home/homesec/driveway/driveway_1.mp4"));
    assert!(dbx.file("/homesec/driveway/driveway_1.mp4").unwrap() == original[..300_000]);

    let b = rt.block_on(store.put(&clip("driveway_2", &big), &big)).unwrap();
    assert_eq!(b.storage_uri, "dropbox:/homesec/driveway/driveway_2.mp4");
    assert!(dbx.file("/homesec/driveway/driveway_2.mp4").unwrap() == original, "the session's file differs");
    let calls = dbx.endpoints();
    let appends = calls.iter().filter(|c| c.ends_with("append_v2")).count();
    assert_eq!(appends, 3, "{calls:?}");
    assert!(
        calls.contains(&"files/upload_session/start".to_owned())
            && calls.contains(&"files/upload_session/finish".to_owned())
    );

    let back = tmp.path().join("fetched/back.mp4");
    rt.block_on(store.get(&b.storage_uri, &back)).unwrap();
    assert!(std::fs::read(&back).unwrap() == original);

    let doc =
        rt.block_on(store.put_json(&clip("driveway_2", &big), "analysis", &json!({"risk_level": "low"}))).unwrap();
    assert_eq!(doc.storage_uri, "dropbox:/homesec/driveway/driveway_2.analysis.json");
    let stored: Value =
        serde_json::from_slice(&dbx.file("/homesec/driveway/driveway_2.analysis.json").unwrap()).unwrap();
    assert_eq!(stored["risk_level"], "low");

    assert!(rt.block_on(store.exists(&b.storage_uri)).unwrap());
    rt.block_on(store.delete(&b.storage_uri)).unwrap();
    assert!(!rt.block_on(store.exists(&b.storage_uri)).unwrap());
    rt.block_on(store.delete(&b.storage_uri)).unwrap();
    let err = rt.block_on(store.get(&b.storage_uri, &back)).unwrap_err();
    assert!(err.to_string().contains("dropbox:/homesec/driveway/driveway_2.mp4 does not exist"), "{err}");
    let err = rt.block_on(store.exists("dropbox:/elsewhere/x.mp4")).unwrap_err();
    assert!(err.to_string().contains("is not an object of this storage"), "{err}");

    // One access token served every call.
    assert_eq!(dbx.state.lock().unwrap().tokens_granted, 1);
    assert_eq!(dbx.violations(), Vec::<String>::new());
}

#[test]
fn an_expired_access_token_is_refreshed_and_a_rate_limit_waited_out() {
    let dbx = Dropbox::start();
    let store = backend(&dbx, json!({}));
    let rt = rt();
    let src = common::footage("tree_motion_no_person.mp4");
    rt.block_on(store.put(&clip("driveway_1", &src), &src)).unwrap();

    dbx.state.lock().unwrap().expire_next = 1;
    rt.block_on(store.put(&clip("driveway_2", &src), &src)).unwrap();
    assert_eq!(dbx.state.lock().unwrap().tokens_granted, 2, "a new token after expired_access_token");
    assert!(dbx.file("/homesec/driveway/driveway_2.mp4").is_some());

    dbx.state.lock().unwrap().rate_limit_next = 1;
    rt.block_on(store.put(&clip("driveway_3", &src), &src)).unwrap();
    let calls = dbx.state.lock().unwrap().calls.clone();
    let (_, limited) = &calls[calls.len() - 2];
    let (endpoint, retried) = &calls[calls.len() - 1];
    assert_eq!(endpoint, "files/upload");
    let waited = retried.duration_since(*limited);
    assert!(waited >= Duration::from_millis(990), "retried after {waited:?}, Retry-After said 1 s");
    assert!(dbx.file("/homesec/driveway/driveway_3.mp4").is_some());

    // A token that expires within the refresh margin (five minutes) is
    // renewed before it is used: one new token per call.
    {
        let mut st = dbx.state.lock().unwrap();
        st.expires_in = 60;
        st.expire_next = 1;
    }
    rt.block_on(store.put(&clip("driveway_4", &src), &src)).unwrap();
    let granted = dbx.state.lock().unwrap().tokens_granted;
    rt.block_on(store.put(&clip("driveway_5", &src), &src)).unwrap();
    assert_eq!(dbx.state.lock().unwrap().tokens_granted, granted + 1, "renewed before expiry");
    assert_eq!(dbx.violations(), Vec::<String>::new());
}

#[test]
fn a_revoked_refresh_token_is_named_and_no_secret_is_said() {
    let dbx = Dropbox::start();
    dbx.state.lock().unwrap().revoked = true;
    let store = backend(&dbx, json!({}));
    let rt = rt();
    let src = common::footage("tree_motion_no_person.mp4");

    assert!(!rt.block_on(store.ping()));
    let why = store.last_error().unwrap();
    assert!(why.contains("Dropbox folder /homesec"), "{why}");
    assert!(
        why.contains("Dropbox refused the refresh token (invalid_grant: refresh token is invalid or revoked)"),
        "{why}"
    );
    assert!(why.contains(&format!("put it in {REFRESH_TOKEN_ENV}")), "{why}");
    let err = rt.block_on(store.put(&clip("driveway_1", &src), &src)).unwrap_err();
    let text = homesec::telemetry::chain(&err);
    for secret in [APP_SECRET, REFRESH_TOKEN] {
        assert!(!text.contains(secret) && !why.contains(secret), "a secret in: {text}");
    }

    dbx.state.lock().unwrap().revoked = false;
    assert!(rt.block_on(store.ping()));
    assert_eq!(store.last_error(), None);
    assert_eq!(dbx.violations(), Vec::<String>::new());
}

#[test]
fn the_daemon_keeps_a_clip_while_the_token_is_refused_and_uploads_it_in_a_session_after() {
    let dbx = Dropbox::start();
    dbx.state.lock().unwrap().revoked = true;
    let tmp = tempfile::tempdir().unwrap();
    let config = ConfigBuilder::new("dbx", tmp.path())
        .folder_camera("driveway")
        .storage(&dbx.storage_config(&["upload_session_threshold_mb: 1", "chunk_size_mb: 2"]))
        .filter(&["classes: [person]", "sample_fps: 1"])
        .section("retry:\n  backoff_s: 0.2\n  max_backoff_s: 1\n  max_attempts: 2\n  upload_retry_interval_s: 1")
        .build();
    let env = [(APP_KEY_ENV, APP_KEY), (APP_SECRET_ENV, APP_SECRET), (REFRESH_TOKEN_ENV, REFRESH_TOKEN)];
    let daemon = Daemon::start(tmp.path(), &config, &env);

    let h = wait_for("storage failing in /health", Duration::from_secs(20), || {
        let h = daemon.get("/health")?.1;
        (h["checks"]["storage"] == false).then_some(h)
    });
    assert_eq!(h["status"], "degraded");
    let warnings = h["warnings"].to_string();
    assert!(warnings.contains("storage dropbox unreachable") && warnings.contains("refused the refresh token"), "{h}");
    assert!(!warnings.contains(REFRESH_TOKEN) && !warnings.contains(APP_SECRET), "{h}");
    assert!(!daemon.log_text().contains(REFRESH_TOKEN) && !daemon.log_text().contains(APP_SECRET));

    daemon.drop_clip(&common::footage(FOOTAGE), "driveway_20261202120000.mp4");
    let rec = wait_for("the clip processed without upload", Duration::from_secs(120), || {
        daemon.clips().into_iter().find(|c| c["completed_ms"].is_number())
    });
    assert!(rec["storage_uri"].is_null(), "{rec}");
    assert!(rec["upload"]["last_error"].as_str().unwrap_or_default().contains("refresh token"), "{rec}");
    let local = rec["clip"]["local_path"].as_str().unwrap().to_owned();
    assert!(Path::new(&local).is_file(), "the recording must be kept until uploaded");

    // A working token again (as after a new one is set): the background retry uploads it.
    dbx.state.lock().unwrap().revoked = false;
    let id = rec["clip"]["clip_id"].as_str().unwrap().to_owned();
    let path = format!("/homesec/driveway/{id}.mp4");
    let stored = wait_for("the background upload", Duration::from_secs(60), || dbx.file(&path));
    assert!(stored == std::fs::read(common::footage(FOOTAGE)).unwrap(), "the stored clip differs");
    assert!(dbx.endpoints().iter().any(|e| e == "files/upload_session/finish"));
    let rec = wait_for("the record's view_url", Duration::from_secs(20), || {
        daemon.clips().into_iter().find(|c| c["view_url"].is_string())
    });
    assert_eq!(rec["view_url"], format!("https://www.dropbox.com/home{path}"));
    assert_eq!(rec["storage_uri"], format!("dropbox:{path}"));
    wait_for("storage healthy again", Duration::from_secs(20), || {
        (daemon.get("/health")?.1["checks"]["storage"] == true).then_some(())
    });
    assert_eq!(dbx.violations(), Vec::<String>::new());
}
