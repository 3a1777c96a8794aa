//! The `s3` storage against a real S3-compatible server (moto) started by the
//! test: the backend's own calls (store, fetch back, check, delete, JSON,
//! multipart, errors that name the bucket and endpoint), and the real daemon
//! on real footage (view_url serves the clip, the analysis JSON next to it, a
//! missing bucket, the server stopped and restarted, a recording gone from
//! the box fetched back for processing). Wrong credentials are refused by a
//! stand-in for AWS that checks every request's signature parameters, as
//! moto checks credentials only when they come in a header.

mod common;

use std::path::Path;
use std::time::Duration;

use common::config::ConfigBuilder;
use common::peers::{Daemon, FakeVlm, free_port, wait_for};
use common::s3::{ACCESS_KEY, ACCESS_KEY_ENV, Moto, SECRET_KEY, SECRET_KEY_ENV};
use common::standin::{Request, StandIn, Verdict};
use homesec::domain::{Clip, ClipId};
use homesec::storage::StorageBackend;
use homesec::storage::s3::{S3Config, S3Credentials, S3Storage};
use serde_json::{Value, json};

const FOOTAGE: &str = "vtest_h264.mp4";
const VLM_KEY_ENV: &str = "S3_TEST_VLM_KEY";

fn backend(moto: &Moto, bucket: &str, extra: Value) -> S3Storage {
    let mut cfg = json!({
        "bucket": bucket,
        "endpoint": moto.endpoint(),
        "path_style": true,
        "allow_http": true,
        "presign_expiry_s": 600,
        "timeout_s": 5,
    });
    if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let cfg: S3Config = serde_json::from_value(cfg).unwrap();
    let keys =
        S3Credentials { access_key_id: ACCESS_KEY.into(), secret_access_key: SECRET_KEY.into(), session_token: None };
    S3Storage::connect(cfg, keys).unwrap()
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
fn a_clip_is_stored_fetched_back_checked_and_deleted() {
    let moto = Moto::start_recording();
    moto.create_bucket("clips");
    let s3 = backend(&moto, "clips", json!({}));
    let src = common::footage(FOOTAGE);
    let original = std::fs::read(&src).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let rt = rt();
    let c = clip("driveway_20261202120000", &src);

    assert!(rt.block_on(s3.ping()), "{:?}", s3.last_error());
    let stored = rt.block_on(s3.put(&c, &src)).unwrap();
    assert_eq!(stored.storage_uri, "s3://clips/driveway/driveway_20261202120000.mp4");
    let stored_bytes = moto.object("clips", "driveway/driveway_20261202120000.mp4");
    assert!(stored_bytes.as_deref() == Some(&original[..]), "the stored object differs from the clip");
    // Served as video, so a browser opening view_url plays it.
    assert_eq!(
        moto.header("clips", "driveway/driveway_20261202120000.mp4", "content-type").as_deref(),
        Some("video/mp4")
    );

    // The presigned view_url serves the clip to anyone holding it, for the configured time.
    let url = stored.view_url.unwrap();
    assert!(url.contains("X-Amz-Signature=") && url.contains("X-Amz-Expires=600"), "{url}");
    let (status, body) = moto.fetch(&url);
    assert_eq!(status, 200);
    assert!(body == original, "view_url served {} bytes, not the clip", body.len());
    // Without the signature the object is private.
    let (status, _) = moto.fetch(url.split('?').next().unwrap());
    assert_eq!(status, 403);

    let back = tmp.path().join("fetched/back.mp4");
    rt.block_on(s3.get(&stored.storage_uri, &back)).unwrap();
    assert!(std::fs::read(&back).unwrap() == original, "the fetched copy differs");
    assert!(!tmp.path().join("fetched/back.mp4.part").exists());

    let json = json!({"risk_level": "low", "summary": "a cat"});
    let doc = rt.block_on(s3.put_json(&c, "analysis", &json)).unwrap();
    assert_eq!(doc.storage_uri, "s3://clips/driveway/driveway_20261202120000.analysis.json");
    let got: Value =
        serde_json::from_slice(&moto.object("clips", "driveway/driveway_20261202120000.analysis.json").unwrap())
            .unwrap();
    assert_eq!(got, json);
    let analysis_type = moto.header("clips", "driveway/driveway_20261202120000.analysis.json", "content-type");
    assert_eq!(analysis_type.as_deref(), Some("application/json"));

    assert!(rt.block_on(s3.exists(&stored.storage_uri)).unwrap());
    rt.block_on(s3.delete(&stored.storage_uri)).unwrap();
    assert!(!rt.block_on(s3.exists(&stored.storage_uri)).unwrap());
    assert_eq!(moto.object("clips", "driveway/driveway_20261202120000.mp4"), None);
    // Deleting what is gone is no error; fetching it says what is missing.
    rt.block_on(s3.delete(&stored.storage_uri)).unwrap();
    let err = rt.block_on(s3.get(&stored.storage_uri, &tmp.path().join("x.mp4"))).unwrap_err();
    assert!(err.to_string().contains("s3://clips/driveway/driveway_20261202120000.mp4 does not exist"), "{err}");
    // A URI of another bucket or backend is refused, not misread.
    let err = rt.block_on(s3.exists("s3://other/driveway/x.mp4")).unwrap_err();
    assert!(err.to_string().contains("is not an object of this storage (s3://clips/<key>)"), "{err}");
    let err = rt.block_on(s3.exists("file:///etc/passwd")).unwrap_err();
    assert!(err.to_string().contains("is not an object of this storage"), "{err}");
    // Every request (list, PUT, the view_url's GET, GET, HEAD, DELETE) is
    // signed as AWS's own SDK signs it.
    assert!(moto.assert_signatures_valid() >= 10);
}

#[test]
fn a_big_clip_goes_up_in_parts() {
    let moto = Moto::start_recording();
    moto.create_bucket("big");
    let s3 = backend(&moto, "big", json!({"multipart_threshold_mb": 1, "part_size_mb": 5}));
    let tmp = tempfile::tempdir().unwrap();
    // 12 MiB: parts of 5, 5 and 2 MiB.
    let data: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let src = tmp.path().join("big.mp4");
    std::fs::write(&src, &data).unwrap();
    let rt = rt();

    let stored = rt.block_on(s3.put(&clip("driveway_big", &src), &src)).unwrap();
    let etag = moto.header("big", "driveway/driveway_big.mp4", "etag").unwrap();
    assert!(etag.trim_matches('"').ends_with("-3"), "not a 3-part upload: ETag {etag}");
    assert_eq!(moto.header("big", "driveway/driveway_big.mp4", "content-type").as_deref(), Some("video/mp4"));
    let (status, body) = moto.fetch(stored.view_url.as_deref().unwrap());
    assert_eq!(status, 200);
    assert!(body == data, "the stored object differs from the file ({} bytes)", body.len());
    let back = tmp.path().join("back.mp4");
    rt.block_on(s3.get(&stored.storage_uri, &back)).unwrap();
    assert!(std::fs::read(&back).unwrap() == data);
    // Start (with its signed content type), three parts and the completion
    // are signed as AWS's own SDK signs them.
    assert!(moto.assert_signatures_valid() >= 6);
}

#[test]
fn the_signature_check_catches_a_request_signed_with_another_secret() {
    let moto = Moto::start_recording();
    moto.create_bucket("clips");
    let cfg = json!({"bucket": "clips", "endpoint": moto.endpoint(), "path_style": true, "allow_http": true});
    let keys = S3Credentials {
        access_key_id: ACCESS_KEY.into(),
        secret_access_key: "not-the-secret".into(),
        session_token: None,
    };
    let s3 = S3Storage::connect(serde_json::from_value(cfg).unwrap(), keys).unwrap();
    assert!(rt().block_on(s3.ping()), "moto takes any signature: {:?}", s3.last_error());
    let why = moto.check_signatures().unwrap_err();
    assert!(why.contains("GET /clips/: signature") && why.contains("botocore computes"), "{why}");
}

#[test]
fn a_missing_bucket_and_an_unreachable_endpoint_are_named() {
    let mut moto = Moto::start();
    let s3 = backend(&moto, "nosuch", json!({}));
    let src = common::footage(FOOTAGE);
    let rt = rt();

    assert!(!rt.block_on(s3.ping()));
    let why = s3.last_error().unwrap();
    let target = format!("S3 bucket `nosuch` at {}", moto.endpoint());
    assert!(why.contains(&target) && why.contains("NoSuchBucket"), "{why}");
    assert!(why.contains("listing the bucket failed: the bucket does not exist"), "{why}");
    let err = rt.block_on(s3.put(&clip("driveway_1", &src), &src)).unwrap_err();
    let text = homesec::telemetry::chain(&err);
    assert!(text.contains(&target) && text.contains("PUT driveway/driveway_1.mp4"), "{text}");
    assert!(err.is_transient(), "a missing bucket may be created: retried");

    moto.create_bucket("nosuch");
    assert!(rt.block_on(s3.ping()));
    assert_eq!(s3.last_error(), None);

    moto.stop();
    assert!(!rt.block_on(s3.ping()));
    let why = s3.last_error().unwrap();
    assert!(why.contains(&target) && why.contains("failed: nothing answers at the endpoint"), "{why}");
    let err = rt.block_on(s3.put(&clip("driveway_2", &src), &src)).unwrap_err();
    assert!(homesec::telemetry::chain(&err).contains(&target), "{err}");
    assert!(err.is_transient());
}

/// What is wrong with `req` as an S3 request signed in its query string
/// (SigV4, AWS's "Authenticating Requests: Using Query Parameters").
fn sigv4_query_violation(req: &Request) -> Option<String> {
    let query = req.query.as_deref().unwrap_or_default();
    let params: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let p = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    if p("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" {
        return Some(format!("X-Amz-Algorithm is {:?}", p("X-Amz-Algorithm")));
    }
    let credential: Vec<&str> = p("X-Amz-Credential").split('/').collect();
    let date = p("X-Amz-Date");
    if credential.len() != 5
        || credential[2..] != ["us-east-1", "s3", "aws4_request"]
        || !date.starts_with(credential[1])
    {
        return Some(format!("X-Amz-Credential {:?} does not match X-Amz-Date {date}", p("X-Amz-Credential")));
    }
    if !p("X-Amz-Expires").parse::<u64>().is_ok_and(|s| (1..=604_800).contains(&s)) {
        return Some(format!("X-Amz-Expires {:?} is not 1..=604800", p("X-Amz-Expires")));
    }
    if !p("X-Amz-SignedHeaders").split(';').any(|h| h == "host") {
        return Some("host is not signed".into());
    }
    let signature = p("X-Amz-Signature");
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(format!("X-Amz-Signature {signature:?} is not 64 hex digits"));
    }
    None
}

/// AWS itself (moto checks credentials only in `Authorization` headers):
/// every request must be signed, and the key is unknown.
fn aws_not_knowing_the_key() -> StandIn {
    StandIn::start(free_port(), |req| {
        let seen = format!("{:?} {:?} {:?}", req.query, req.headers, String::from_utf8_lossy(&req.body));
        if seen.contains(SECRET_KEY) {
            return Verdict::Violation("the secret access key is sent".into());
        }
        if let Some(why) = sigv4_query_violation(req) {
            return Verdict::Violation(why);
        }
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InvalidAccessKeyId</Code>\
            <Message>The AWS Access Key Id you provided does not exist in our records.</Message>\
            <AWSAccessKeyId>AKIAHOMESECTEST00001</AWSAccessKeyId><RequestId>1</RequestId></Error>";
        let body = if req.method == "HEAD" { String::new() } else { xml.to_owned() };
        Verdict::Answer(403, body)
    })
}

#[test]
fn wrong_credentials_are_named_and_never_said() {
    let aws = aws_not_knowing_the_key();
    let endpoint = format!("http://127.0.0.1:{}", aws.port);
    let cfg = json!({"bucket": "clips", "endpoint": endpoint, "path_style": true, "allow_http": true, "timeout_s": 5});
    let keys =
        S3Credentials { access_key_id: ACCESS_KEY.into(), secret_access_key: SECRET_KEY.into(), session_token: None };
    let s3 = S3Storage::connect(serde_json::from_value(cfg).unwrap(), keys).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("small.mp4");
    std::fs::write(&src, vec![7u8; 4096]).unwrap();
    let rt = rt();

    assert!(!rt.block_on(s3.ping()));
    let why = s3.last_error().unwrap();
    let target = format!("S3 bucket `clips` at {endpoint}");
    assert!(why.contains(&target) && why.contains("InvalidAccessKeyId"), "{why}");
    assert!(why.contains("failed: the access key id is not known to the service"), "{why}");
    let err = rt.block_on(s3.put(&clip("driveway_1", &src), &src)).unwrap_err();
    let text = homesec::telemetry::chain(&err);
    assert!(text.contains(&target) && text.contains("InvalidAccessKeyId"), "{text}");
    assert!(!text.contains(SECRET_KEY) && !why.contains(SECRET_KEY), "the secret in: {text}");
    // A refusal is not retried at once (the pipeline comes back later).
    assert_eq!(aws.requests().len(), 2, "{:?}", aws.requests());
    aws.assert_no_violations();
}

fn vlm_answer() -> Value {
    json!({
        "risk_level": "high",
        "activity_type": "suspicious",
        "summary": "People walk past the driveway.",
        "entities_timeline": [],
        "requires_review": false
    })
}

/// A daemon with a folder camera `driveway`, S3 storage on `bucket`, the real
/// detector, and (when given) the VLM on `vlm_port`.
fn daemon_config(dir: &Path, moto: &Moto, bucket: &str, vlm_port: Option<u16>) -> String {
    let mut b = ConfigBuilder::new("s3", dir)
        .folder_camera("driveway")
        .storage(&moto.storage_config(bucket, &["presign_expiry_s: 3600"]))
        .filter(&["classes: [person, car]", "sample_fps: 1"])
        .policy("backend: default\nconfig:\n  min_risk_level: medium")
        .section("retry:\n  backoff_s: 0.2\n  max_backoff_s: 1\n  max_attempts: 2\n  upload_retry_interval_s: 1");
    if let Some(port) = vlm_port {
        b = b.vlm(&format!(
            "backend: openai\nrun_mode: trigger_only\ntrigger_classes: [person]\nconfig:\n  \
             base_url: http://127.0.0.1:{port}/v1\n  model: test-vlm\n  api_key_env: {VLM_KEY_ENV}\n  max_frames: 2"
        ));
    }
    b.build()
}

fn env() -> [(&'static str, &'static str); 3] {
    [(ACCESS_KEY_ENV, ACCESS_KEY), (SECRET_KEY_ENV, SECRET_KEY), (VLM_KEY_ENV, "sk-s3-test")]
}

/// The record of the one clip the daemon has, once `done` says so.
fn record_when(daemon: &Daemon, what: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, timeout, || daemon.clips().into_iter().find(|c| done(c)))
}

/// [`record_when`] on a daemon whose clips API wants `key`.
fn record_with_key(daemon: &Daemon, key: &str, what: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, timeout, || {
        let (_, v) = daemon.get_with_key("/api/v1/clips?limit=1000", Some(key))?;
        v["clips"].as_array()?.iter().find(|c| done(c)).cloned()
    })
}

fn health(daemon: &Daemon) -> Value {
    daemon.get("/health").map(|(_, h)| h).unwrap_or(Value::Null)
}

#[test]
fn the_daemon_uploads_a_clip_whose_view_url_serves_it_and_stores_the_analysis_beside_it() {
    let moto = Moto::start();
    moto.create_bucket("homesec-clips");
    let vlm = FakeVlm::start(vlm_answer(), Duration::ZERO);
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(tmp.path(), &daemon_config(tmp.path(), &moto, "homesec-clips", Some(vlm.port)), &env());

    daemon.drop_clip(&common::footage(FOOTAGE), "driveway_20261202120000.mp4");
    let rec = record_when(&daemon, "the clip done", Duration::from_secs(120), |c| c["status"] == "done");
    let id = rec["clip"]["clip_id"].as_str().unwrap().to_owned();
    let r = &rec;
    let key = format!("driveway/{id}.mp4");
    assert_eq!(r["storage_uri"], format!("s3://homesec-clips/{key}"), "{rec}");

    let original = std::fs::read(common::footage(FOOTAGE)).unwrap();
    let url = r["view_url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/homesec-clips/{key}?", moto.endpoint())), "{url}");
    let (status, body) = moto.fetch(url);
    assert_eq!(status, 200, "view_url {url}");
    assert!(body == original, "view_url served {} bytes, not the clip", body.len());

    let analysis_key = format!("driveway/{id}.analysis.json");
    assert_eq!(r["analysis_uri"], format!("s3://homesec-clips/{analysis_key}"), "{rec}");
    let doc: Value = serde_json::from_slice(&moto.object("homesec-clips", &analysis_key).unwrap()).unwrap();
    assert_eq!(doc["clip_id"], id.as_str());
    assert_eq!(doc["camera_name"], "driveway");
    assert_eq!(doc["analysis"]["risk_level"], "high");
    assert_eq!(doc["analysis"]["summary"], "People walk past the driveway.");

    let h = health(&daemon);
    assert_eq!(h["checks"]["storage"], true, "{h}");
}

#[test]
fn a_missing_bucket_is_shown_in_health_and_the_clip_is_uploaded_once_it_exists() {
    let moto = Moto::start();
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(tmp.path(), &daemon_config(tmp.path(), &moto, "not-yet", None), &env());

    let h = wait_for("storage failing in /health", Duration::from_secs(20), || {
        let h = health(&daemon);
        (h["checks"]["storage"] == false).then_some(h)
    });
    assert_eq!(h["status"], "degraded", "{h}");
    let warning = h["warnings"].to_string();
    let target = format!("S3 bucket `not-yet` at {}", moto.endpoint());
    assert!(warning.contains("storage s3 unreachable") && warning.contains(&target), "{h}");
    assert!(warning.contains("NoSuchBucket"), "{h}");

    daemon.drop_clip(&common::footage(FOOTAGE), "driveway_20261202130000.mp4");
    // The clip goes through without its upload, which fails and is kept for retry.
    let rec = record_when(&daemon, "the clip processed without upload", Duration::from_secs(120), |c| {
        c["completed_ms"].is_number()
    });
    let r = rec.clone();
    assert!(r["storage_uri"].is_null(), "{rec}");
    let error = r["upload"]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains(&target), "upload error does not name the bucket: {rec}");
    let local = r["clip"]["local_path"].as_str().unwrap().to_owned();
    assert!(Path::new(&local).is_file(), "the recording must be kept until uploaded: {local}");

    moto.create_bucket("not-yet");
    let id = r["clip"]["clip_id"].as_str().unwrap().to_owned();
    let key = format!("driveway/{id}.mp4");
    let uploaded = wait_for("the background upload", Duration::from_secs(60), || moto.object("not-yet", &key));
    assert!(uploaded == std::fs::read(common::footage(FOOTAGE)).unwrap(), "uploaded bytes differ");
    record_when(&daemon, "storage_uri on the record", Duration::from_secs(20), |c| {
        c["storage_uri"] == format!("s3://not-yet/{key}")
    });
    wait_for("storage healthy again", Duration::from_secs(20), || {
        (health(&daemon)["checks"]["storage"] == true).then_some(())
    });
}

#[test]
fn the_server_stopped_mid_run_and_restarted_loses_nothing() {
    let mut moto = Moto::start();
    moto.create_bucket("homesec");
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(tmp.path(), &daemon_config(tmp.path(), &moto, "homesec", None), &env());
    let original = std::fs::read(common::footage(FOOTAGE)).unwrap();

    daemon.drop_clip(&common::footage(FOOTAGE), "driveway_20261202140000.mp4");
    let first = record_when(&daemon, "the first clip uploaded", Duration::from_secs(120), |c| c["status"] == "done");
    let first_id = first["clip"]["clip_id"].as_str().unwrap().to_owned();
    assert!(moto.object("homesec", &format!("driveway/{first_id}.mp4")).is_some_and(|b| b == original));

    moto.stop();
    daemon.drop_clip(&common::footage(FOOTAGE), "driveway_20261202140500.mp4");
    let h = wait_for("storage failing in /health", Duration::from_secs(30), || {
        let h = health(&daemon);
        (h["checks"]["storage"] == false).then_some(h)
    });
    assert!(h["warnings"].to_string().contains(&moto.endpoint()), "{h}");
    let second = record_when(&daemon, "the second clip processed without upload", Duration::from_secs(120), |c| {
        c["clip"]["clip_id"] != first_id.as_str() && c["completed_ms"].is_number()
    });
    assert!(second["storage_uri"].is_null(), "{second}");
    let local = second["clip"]["local_path"].as_str().unwrap().to_owned();
    assert!(Path::new(&local).is_file(), "the recording must be kept until uploaded: {local}");

    // Back (empty, as moto keeps its state in memory): the bucket is made again.
    moto.restart();
    moto.create_bucket("homesec");
    let key = format!("driveway/{}.mp4", second["clip"]["clip_id"].as_str().unwrap());
    let uploaded = wait_for("the second clip uploaded", Duration::from_secs(60), || moto.object("homesec", &key));
    assert!(uploaded == original, "uploaded bytes differ");
    wait_for("storage healthy again", Duration::from_secs(20), || {
        (health(&daemon)["checks"]["storage"] == true).then_some(())
    });
}

#[test]
fn a_recording_gone_from_the_box_is_fetched_back_for_analysis() {
    let moto = Moto::start();
    moto.create_bucket("homesec");
    // The VLM answers slowly, so the daemon can be killed while it waits.
    let vlm = FakeVlm::start(vlm_answer(), Duration::from_secs(8));
    let tmp = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(tmp.path(), &daemon_config(tmp.path(), &moto, "homesec", Some(vlm.port)), &env());

    daemon.drop_clip(&common::footage(FOOTAGE), "driveway_20261202150000.mp4");
    wait_for("the VLM asked", Duration::from_secs(120), || (!vlm.requests.lock().unwrap().is_empty()).then_some(()));
    let rec = record_when(&daemon, "the upload done", Duration::from_secs(30), |c| c["storage_uri"].is_string());
    let local = rec["clip"]["local_path"].as_str().unwrap().to_owned();
    daemon.kill9();
    std::fs::remove_file(&local).unwrap();

    daemon.restart();
    let done = record_when(&daemon, "the clip done after restart", Duration::from_secs(120), |c| c["status"] == "done");
    assert_eq!(vlm.requests.lock().unwrap().len(), 2, "the VLM runs again on the fetched copy");
    let frames = vlm.requests.lock().unwrap()[1].body.to_string().matches("data:image/jpeg;base64,").count();
    assert!(frames >= 1, "the VLM got no frames of the fetched clip");
    let id = done["clip"]["clip_id"].as_str().unwrap();
    assert_eq!(done["analysis_uri"], format!("s3://homesec/driveway/{id}.analysis.json"), "{done}");
    assert_eq!(done["clip"]["local_path"], local.as_str(), "the record keeps its own path");
    assert!(daemon.log_text().contains("fetched the clip back from the storage"));
    // The fetched copy is deleted once processed; the recording stays gone.
    let fetched = tmp.path().join("data/fetched");
    let left: Vec<_> = std::fs::read_dir(&fetched).map(|d| d.filter_map(Result::ok).collect()).unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", fetched.display());
    assert!(!Path::new(&local).exists());
}

/// `POST path` to the daemon's API, with `X-API-Key` when given: status and JSON.
fn post(daemon: &Daemon, path: &str, key: Option<&str>) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", daemon.api_port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = key.map(|k| format!("X-API-Key: {k}\r\n")).unwrap_or_default();
    write!(stream, "POST {path} HTTP/1.0\r\nHost: localhost\r\nContent-Length: 0\r\n{auth}\r\n").unwrap();
    let mut buf = String::new();
    stream.read_to_string(&mut buf).unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn a_clip_whose_recording_was_deleted_is_reanalysed_from_the_bucket_on_request() {
    const API_KEY: &str = "s3-test-api-key";
    let moto = Moto::start();
    moto.create_bucket("homesec");
    let vlm = FakeVlm::start(vlm_answer(), Duration::ZERO);
    let tmp = tempfile::tempdir().unwrap();
    let mut config = daemon_config(tmp.path(), &moto, "homesec", Some(vlm.port));
    config = config.replace("server:\n", "server:\n  api_key_env: S3_TEST_API_KEY\n");
    let mut env = env().to_vec();
    env.push(("S3_TEST_API_KEY", API_KEY));
    let daemon = Daemon::start(tmp.path(), &config, &env);

    daemon.drop_clip(&common::footage(FOOTAGE), "driveway_20261202160000.mp4");
    let done = record_with_key(&daemon, API_KEY, "the clip done", Duration::from_secs(120), |c| c["status"] == "done");
    let id = done["clip"]["clip_id"].as_str().unwrap().to_owned();
    assert_eq!(vlm.requests.lock().unwrap().len(), 1);
    let local = done["clip"]["local_path"].as_str().unwrap().to_owned();
    std::fs::remove_file(&local).unwrap();

    let path = format!("/api/v1/clips/{id}/reanalyze");
    assert_eq!(post(&daemon, &path, None).0, 401, "the API key is required");
    assert_eq!(post(&daemon, "/api/v1/clips/nosuch/reanalyze", Some(API_KEY)).0, 404);
    let (code, body) = post(&daemon, &path, Some(API_KEY));
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["fetch_from_storage"], true, "{body}");

    wait_for("the VLM asked again", Duration::from_secs(120), || {
        (vlm.requests.lock().unwrap().len() == 2).then_some(())
    });
    let again = record_with_key(&daemon, API_KEY, "the clip done again", Duration::from_secs(60), |c| {
        c["status"] == "done" && c["analysis_uri"].is_string()
    });
    assert_eq!(again["storage_uri"], done["storage_uri"], "the upload stays as it was");
    assert_eq!(again["clip"]["local_path"], local.as_str());
    assert!(daemon.log_text().contains("fetched the clip back from the storage"));
    let events = daemon.get_with_key(&format!("/api/v1/clips/{id}"), Some(API_KEY)).unwrap().1["events"].to_string();
    assert!(events.contains("re-analysis requested (the clip is fetched back from the storage)"), "{events}");
    let fetched = tmp.path().join("data/fetched");
    let left: Vec<_> = std::fs::read_dir(&fetched).map(|d| d.filter_map(Result::ok).collect()).unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", fetched.display());
}
