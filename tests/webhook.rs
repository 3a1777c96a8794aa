//! The `webhook` notifier against a local HTTP receiver: the real daemon on
//! real footage (a person, no VLM), signed requests, retries through the
//! outbox, and `homesec notify-test`.

mod common;

use std::collections::VecDeque;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::config::ConfigBuilder;
use common::peers::{Daemon, wait_for};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const SECRET: &str = "whsec-test-0123456789";
const SECRET_ENV: &str = "HOMESEC_WEBHOOK_TEST_SECRET";

/// One request the receiver got, and the status it answered with.
#[derive(Debug, Clone)]
struct Received {
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
    answered: u16,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// Verifies the signature the way a receiver would: HMAC of the raw body,
    /// compared in constant time.
    fn signature_is_valid(&self) -> bool {
        let Some(hex) = self.header("x-homesec-signature").strip_prefix("sha256=") else { return false };
        let Ok(sig) = hex::decode(hex) else { return false };
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(&self.body);
        mac.verify_slice(&sig).is_ok()
    }
}

/// A local webhook receiver on `POST /hook` that records every request and
/// answers with the next scripted status (200 once the script is used up).
struct Receiver {
    port: u16,
    requests: Arc<Mutex<Vec<Received>>>,
    _rt: tokio::runtime::Runtime,
}

impl Receiver {
    fn start(script: &[u16]) -> Receiver {
        Self::start_on(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), script)
    }

    fn start_on(listener: std::net::TcpListener, script: &[u16]) -> Receiver {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, StatusCode};
        use axum::routing::post;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let requests: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<u16>>()));
        let recorded = requests.clone();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let listener = rt.block_on(async { tokio::net::TcpListener::from_std(listener) }).unwrap();
        let app = axum::Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: Bytes| {
                let answered = script.lock().unwrap().pop_front().unwrap_or(200);
                recorded.lock().unwrap().push(Received { headers, body: body.to_vec(), answered });
                async move {
                    let status = StatusCode::from_u16(answered).unwrap();
                    (status, if answered == 200 { "ok" } else { "receiver is down for maintenance" })
                }
            }),
        );
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { port, requests, _rt: rt }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook?token=abc", self.port)
    }

    fn received(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }
}

fn config(dir: &std::path::Path, url: &str) -> String {
    ConfigBuilder::new("hookbox", dir)
        .folder_camera("porch")
        .filter(&["classes: [person, car]", "sample_fps: 1"])
        .section(&format!(
            "notifiers:\n  - backend: webhook\n    config:\n      url: {url}\n      secret_env: {SECRET_ENV}\n      \
             timeout_s: 5"
        ))
        .section("retry:\n  backoff_s: 0.5\n  max_backoff_s: 1")
        .build()
}

fn start(dir: &std::path::Path, url: &str) -> Daemon {
    Daemon::start(dir, &config(dir, url), &[(SECRET_ENV, SECRET)])
}

#[test]
fn a_person_on_camera_is_posted_signed_to_the_webhook() {
    let receiver = Receiver::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let daemon = start(tmp.path(), &receiver.url());
    daemon.drop_clip(&common::footage("scene_empty_people_empty.mp4"), "cam01.mp4");

    let first = wait_for("the alert at the webhook", Duration::from_secs(120), || receiver.received().first().cloned());
    assert!(first.signature_is_valid(), "signature {:?}", first.header("x-homesec-signature"));
    assert_eq!(first.header("content-type"), "application/json");
    assert_eq!(first.header("user-agent"), format!("homesec/{}", env!("CARGO_PKG_VERSION")));
    assert_eq!(first.header("x-homesec-event"), "alert");
    let alert = first.json();
    let clip_id = alert["clip_id"].as_str().unwrap().to_owned();
    // A dropped file keeps its (safe) name as the clip id.
    assert_eq!(clip_id, "cam01", "{alert}");
    assert_eq!(alert["camera_name"], "porch");
    assert_eq!(alert["dedupe_key"], clip_id.as_str());
    assert!(alert["detected_classes"].as_array().unwrap().iter().any(|c| c == "person"), "{alert}");
    let stage = alert["stage"].as_str().unwrap();
    assert_eq!(first.header("x-homesec-delivery"), format!("{clip_id}-{stage}"));

    wait_for("status done", Duration::from_secs(30), || {
        (daemon.status_of(&clip_id).as_deref() == Some("done")).then_some(())
    });
    let all = receiver.received();
    assert_eq!(all.len(), 1, "one alert, one request: {all:?}");
    let (code, health) = daemon.get("/health").unwrap();
    assert_eq!(code, 200, "{health}");
    assert_eq!(health["checks"]["notifiers"], true, "{health}");
    // Neither the secret nor the URL's query string reach the log.
    let log = daemon.log_text();
    assert!(log.contains("alert posted to the webhook"), "{log}");
    assert!(!log.contains(SECRET) && !log.contains("token=abc"), "{log}");
}

#[test]
fn a_failing_receiver_gets_the_alert_once_it_answers_2xx() {
    let receiver = Receiver::start(&[500, 500]);
    let tmp = tempfile::tempdir().unwrap();
    let daemon = start(tmp.path(), &receiver.url());
    daemon.drop_clip(&common::footage("scene_empty_people_empty.mp4"), "cam01.mp4");

    let accepted = wait_for("a 2xx answer", Duration::from_secs(120), || {
        receiver.received().into_iter().find(|r| r.answered == 200)
    });
    let clip_id = accepted.json()["clip_id"].as_str().unwrap().to_owned();
    wait_for("status done", Duration::from_secs(30), || {
        (daemon.status_of(&clip_id).as_deref() == Some("done")).then_some(())
    });
    // Retries have had their chance to be (wrongly) repeated.
    std::thread::sleep(Duration::from_secs(3));
    let all = receiver.received();
    let answered: Vec<u16> = all.iter().map(|r| r.answered).collect();
    assert_eq!(answered, [500, 500, 200], "{all:?}");
    // Every attempt is the same delivery, signed, with the same body.
    assert!(all.iter().all(Received::signature_is_valid));
    assert!(all.iter().all(|r| r.header("x-homesec-delivery") == accepted.header("x-homesec-delivery")));
    assert!(all.iter().all(|r| r.body == accepted.body));
    let log = daemon.log_text();
    assert!(log.contains("HTTP 500: receiver is down for maintenance"), "{log}");
}

fn notify_test(config: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_homesec"))
        .args(["notify-test", "--config"])
        .arg(config)
        .env(SECRET_ENV, SECRET)
        .output()
        .unwrap()
}

#[test]
fn notify_test_sends_one_signed_alert_and_fails_clearly_when_the_receiver_is_down() {
    let receiver = Receiver::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("homesec.yaml");
    std::fs::write(&path, config(tmp.path(), &receiver.url()).replace("{api_port}", "18080")).unwrap();

    let out = notify_test(&path);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("webhook: delivered"), "{text}");
    let all = receiver.received();
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(all[0].signature_is_valid());
    assert_eq!(all[0].json()["camera_name"], "porch");
    assert_eq!(all[0].header("x-homesec-event"), "alert");

    // Nothing listens on the port any more.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{down}/hook?token=abc");
    std::fs::write(&path, config(tmp.path(), &url).replace("{api_port}", "18080")).unwrap();
    let out = notify_test(&path);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains(&format!("webhook: FAILED: delivery to http://127.0.0.1:{down}/hook failed")), "{text}");
    assert!(text.contains("1 notifier(s) failed"), "{text}");
    assert!(!text.contains("token=abc") && !text.contains(SECRET), "{text}");
}
