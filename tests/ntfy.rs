//! The `ntfy` notifier against a local stand-in for an ntfy server that checks
//! every request against ntfy's publish API (topic path, bearer token, the
//! attachment as a PUT body with `Filename` and the text in `Message`, the
//! header values ntfy accepts) and fails the test on a wrong one: the real
//! daemon on real footage, an outage then recovery, `homesec notify-test`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::config::ConfigBuilder;
use common::peers::{Daemon, free_port, wait_for};
use common::standin::{Request, StandIn, Verdict};

const TOPIC: &str = "homesec-porch-7f3a";
const TOKEN: &str = "tk_testtoken0123456789abcdefghi";
const TOKEN_ENV: &str = "HOMESEC_NTFY_TEST_TOKEN";

/// ntfy's publish API, as documented at docs.ntfy.sh/publish.
fn check(r: &Request) -> Result<(), String> {
    if r.path != format!("/{TOPIC}") {
        return Err(format!("publish goes to /<topic>, got {}", r.path));
    }
    if r.query.is_some() {
        return Err("parameters go in headers here, not the query".into());
    }
    let priority = r.header("priority").ok_or("no Priority header")?;
    if !["1", "2", "3", "4", "5"].contains(&priority) {
        return Err(format!("Priority must be 1..5, got {priority}"));
    }
    if r.header("title").is_none_or(str::is_empty) || r.header("tags").is_none_or(str::is_empty) {
        return Err("Title and Tags are expected".into());
    }
    if let Some(click) = r.header("click")
        && url::Url::parse(click).is_err()
    {
        return Err(format!("Click must be a URL, got {click}"));
    }
    match r.method.as_str() {
        "PUT" => {
            if r.header("filename").is_none_or(str::is_empty) {
                return Err("an attachment PUT needs a Filename header".into());
            }
            if r.header("message").is_none_or(str::is_empty) {
                return Err("with an attachment as the body, the text goes in the Message header".into());
            }
            if !r.body.starts_with(&[0xff, 0xd8]) {
                return Err("the attachment is not the JPEG".into());
            }
        }
        "POST" => {
            if r.body.is_empty() || std::str::from_utf8(&r.body).is_err() {
                return Err("a POST carries the message text as the body".into());
            }
        }
        m => return Err(format!("publish is PUT or POST, not {m}")),
    }
    Ok(())
}

fn judge(r: &Request) -> Verdict {
    match r.header("authorization") {
        Some(a) if a == format!("Bearer {TOKEN}") => {}
        Some(a) if a.starts_with("Bearer ") => {
            return Verdict::Answer(
                401,
                r#"{"code":40101,"http":401,"error":"unauthorized","link":"https://ntfy.sh/docs/publish/#authentication"}"#.into(),
            );
        }
        _ => return Verdict::Violation("Authorization: Bearer <token> expected".into()),
    }
    match check(r) {
        Ok(()) => Verdict::Answer(
            200,
            serde_json::json!({"id": "sPs71M8A2T", "time": 1700000000, "event": "message", "topic": TOPIC}).to_string(),
        ),
        Err(why) => Verdict::Violation(why),
    }
}

fn config(dir: &Path, port: u16) -> String {
    ConfigBuilder::new("pushbox", dir)
        .folder_camera("porch")
        .filter(&["classes: [person, car]", "sample_fps: 1"])
        .section(&format!(
            "notifiers:\n  - backend: ntfy\n    config:\n      server: http://127.0.0.1:{port}\n      topic: {TOPIC}\n      \
             token_env: {TOKEN_ENV}\n      timeout_s: 5"
        ))
        .section("retry:\n  backoff_s: 0.5\n  max_backoff_s: 1")
        .build()
}

fn assert_alert_push(r: &Request) {
    assert_eq!(r.method, "PUT", "the snapshot is attached");
    assert_eq!(r.header("title"), Some("HomeSec porch"));
    assert_eq!(r.header("filename"), Some("snapshot.jpg"));
    assert_eq!(r.header("priority"), Some("3"), "no VLM: no risk, default priority");
    let tags = r.header("tags").unwrap();
    assert!(tags.split(',').any(|t| t == "person") && tags.split(',').any(|t| t == "porch"), "{tags}");
    assert!(r.header("message").unwrap().contains("person"), "{:?}", r.header("message"));
    let img = image::load_from_memory_with_format(&r.body, image::ImageFormat::Jpeg).expect("a JPEG snapshot");
    assert!(img.width() >= 160);
}

#[test]
fn a_person_on_camera_is_pushed_with_the_snapshot() {
    let ntfy = StandIn::start(free_port(), judge);
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(tmp.path(), &config(tmp.path(), ntfy.port), &[(TOKEN_ENV, TOKEN)]);
    daemon.drop_clip(&common::footage("scene_empty_people_empty.mp4"), "cam01.mp4");

    let push = wait_for("the push", Duration::from_secs(120), || ntfy.answered(200).pop());
    ntfy.assert_no_violations();
    assert_alert_push(&push);
    let clip_id = daemon.clips()[0]["clip"]["clip_id"].as_str().unwrap().to_owned();
    wait_for("status done", Duration::from_secs(30), || {
        (daemon.status_of(&clip_id).as_deref() == Some("done")).then_some(())
    });
    assert_eq!(ntfy.requests().len(), 1);
    let log = daemon.log_text();
    assert!(log.contains("alert pushed to ntfy"), "{log}");
    assert!(!log.contains(TOKEN));
}

#[test]
fn an_alert_during_an_ntfy_outage_is_pushed_when_it_is_back() {
    let port = free_port();
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(tmp.path(), &config(tmp.path(), port), &[(TOKEN_ENV, TOKEN)]);
    daemon.drop_clip(&common::footage("scene_empty_people_empty.mp4"), "cam01.mp4");

    wait_for("/health naming the outage", Duration::from_secs(120), || {
        let (_, health) = daemon.get("/health")?;
        let w = health["warnings"].as_array()?.iter().filter_map(|w| w.as_str()).find(|w| w.contains("ntfy"))?;
        w.contains(&format!("delivery to http://127.0.0.1:{port}/{TOPIC} failed: cannot reach the ntfy server"))
            .then_some(())
    });
    let ntfy = StandIn::start(port, judge);
    let push = wait_for("the push after the outage", Duration::from_secs(60), || ntfy.answered(200).pop());
    assert_alert_push(&push);
    let clip_id = daemon.clips()[0]["clip"]["clip_id"].as_str().unwrap().to_owned();
    wait_for("status done", Duration::from_secs(30), || {
        (daemon.status_of(&clip_id).as_deref() == Some("done")).then_some(())
    });
    assert_eq!(ntfy.requests().len(), 1, "pushed once");
    ntfy.assert_no_violations();
}

#[test]
fn notify_test_pushes_one_message_and_names_a_wrong_token() {
    let ntfy = StandIn::start(free_port(), judge);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("homesec.yaml");
    std::fs::write(&path, config(tmp.path(), ntfy.port).replace("{api_port}", "18080")).unwrap();
    let run = |token: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_homesec"))
            .args(["notify-test", "--config"])
            .arg(&path)
            .env(TOKEN_ENV, token)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, text) = run(TOKEN);
    assert!(ok, "{text}");
    assert!(text.contains("ntfy: delivered"), "{text}");
    let sent = ntfy.answered(200);
    assert_eq!(sent.len(), 1);
    // No snapshot: the text is the body of a POST.
    assert_eq!(sent[0].method, "POST");
    let body = String::from_utf8(sent[0].body.clone()).unwrap();
    assert!(body.contains("notifications work") && body.ends_with("(risk low)"), "{body}");
    assert_eq!(sent[0].header("priority"), Some("3"));

    let (ok, text) = run("tk_wrong");
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("ntfy: FAILED: delivery to http://127.0.0.1:{}/{TOPIC} failed: ntfy refused the access token for {TOPIC} (HTTP 401): unauthorized", ntfy.port)),
        "{text}"
    );
    assert!(!text.contains("tk_wrong"), "{text}");
    ntfy.assert_no_violations();
}
