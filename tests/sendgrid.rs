//! The `sendgrid` notifier against a local stand-in for SendGrid's v3 Mail
//! Send API that checks every request (method, path, bearer key, JSON body
//! shape as documented) and fails the test on a wrong one: the real daemon on
//! real footage, a wrong API key, an outage then recovery, `homesec notify-test`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use common::config::ConfigBuilder;
use common::peers::{Daemon, free_port, wait_for};
use common::standin::{Request, StandIn, Verdict};
use serde_json::Value;

const KEY: &str = "SG.test-key.0123456789abcdef";
const KEY_ENV: &str = "HOMESEC_SENDGRID_TEST_KEY";
const FROM: &str = "alerts@homesec.example.net";
const TO: &str = "owner@example.net";

fn is_email(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.split_once('@').is_some_and(|(u, d)| !u.is_empty() && d.contains('.')))
}

/// The Mail Send body as SendGrid documents it (the parts HomeSec uses, and no
/// key SendGrid does not know).
fn check_body(b: &Value) -> Result<(), String> {
    const KEYS: [&str; 6] = ["personalizations", "from", "subject", "content", "attachments", "reply_to"];
    let obj = b.as_object().ok_or("the body is not a JSON object")?;
    if let Some(k) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("unexpected key `{k}`"));
    }
    let pers = b["personalizations"].as_array().ok_or("personalizations must be an array")?;
    if pers.is_empty() || pers.len() > 1000 {
        return Err("personalizations must hold 1 to 1000 entries".into());
    }
    for p in pers {
        let to = p["to"].as_array().ok_or("personalizations[].to must be an array")?;
        if to.is_empty() || !to.iter().all(|t| is_email(&t["email"])) {
            return Err(format!("personalizations[].to must list {{email}} objects: {p}"));
        }
    }
    if !is_email(&b["from"]["email"]) {
        return Err(format!("from.email must be an address: {}", b["from"]));
    }
    if b["subject"].as_str().is_none_or(|s| s.trim().is_empty()) {
        return Err("subject must be a non-empty string".into());
    }
    let content = b["content"].as_array().ok_or("content must be an array")?;
    let types: Vec<&str> = content.iter().filter_map(|c| c["type"].as_str()).collect();
    if types.len() != content.len() || content.iter().any(|c| c["value"].as_str().is_none_or(str::is_empty)) {
        return Err("content[] must be {type, value} with a non-empty value".into());
    }
    if types.first() != Some(&"text/plain") {
        return Err(format!("text/plain must come first in content, got {types:?}"));
    }
    for a in b["attachments"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let data = a["content"].as_str().ok_or("attachments[].content is required")?;
        base64::engine::general_purpose::STANDARD.decode(data).map_err(|e| format!("attachments[].content: {e}"))?;
        if a["filename"].as_str().is_none_or(str::is_empty) {
            return Err("attachments[].filename is required".into());
        }
        match a["disposition"].as_str() {
            Some("attachment") | None => {}
            Some("inline") if a["content_id"].as_str().is_some_and(|c| !c.is_empty()) => {}
            Some("inline") => return Err("attachments[].content_id is required when disposition is inline".into()),
            Some(other) => return Err(format!("attachments[].disposition `{other}`")),
        }
    }
    Ok(())
}

fn judge(r: &Request) -> Verdict {
    if r.method != "POST" || r.path != "/v3/mail/send" {
        return Verdict::Violation("only POST /v3/mail/send exists".into());
    }
    let Some(auth) = r.header("authorization") else { return Verdict::Violation("no Authorization header".into()) };
    let Some(key) = auth.strip_prefix("Bearer ") else {
        return Verdict::Violation(format!("Authorization must be `Bearer <key>`, got `{auth}`"));
    };
    if key != KEY {
        let body = r#"{"errors":[{"message":"The provided authorization grant is invalid, expired, or revoked","field":null,"help":null}]}"#;
        return Verdict::Answer(401, body.into());
    }
    if !r.header("content-type").is_some_and(|c| c.starts_with("application/json")) {
        return Verdict::Violation("Content-Type must be application/json".into());
    }
    let body: Value = match serde_json::from_slice(&r.body) {
        Ok(v) => v,
        Err(e) => return Verdict::Violation(format!("the body is not JSON: {e}")),
    };
    match check_body(&body) {
        Ok(()) => Verdict::Answer(202, String::new()),
        Err(why) => Verdict::Violation(why),
    }
}

fn config(dir: &Path, port: u16) -> String {
    ConfigBuilder::new("gridbox", dir)
        .folder_camera("porch")
        .filter(&["classes: [person, car]", "sample_fps: 1"])
        .section(&format!(
            "notifiers:\n  - backend: sendgrid\n    config:\n      api_key_env: {KEY_ENV}\n      from: {FROM}\n      \
             from_name: Porch camera\n      to: [{TO}]\n      timeout_s: 5\n      base_url: http://127.0.0.1:{port}"
        ))
        .section("retry:\n  backoff_s: 0.5\n  max_backoff_s: 1")
        .build()
}

/// Asserts the mail a user gets: subject, text, HTML showing the inline JPEG.
fn assert_alert_mail(body: &Value) {
    assert_eq!(body["personalizations"][0]["to"][0]["email"], TO);
    assert_eq!(body["from"]["email"], FROM);
    let subject = body["subject"].as_str().unwrap();
    assert!(subject.starts_with("HomeSec porch: ") && subject.contains("person"), "{subject}");
    let text = body["content"][0]["value"].as_str().unwrap();
    assert!(text.contains("Camera: porch\nSeen: ") && text.contains("person"), "{text}");
    let html = body["content"][1]["value"].as_str().unwrap();
    assert!(html.contains("<img src=\"cid:snapshot@homesec\""), "{html}");
    let att = &body["attachments"][0];
    assert_eq!((att["content_id"].as_str(), att["disposition"].as_str()), (Some("snapshot@homesec"), Some("inline")));
    let jpeg = base64::engine::general_purpose::STANDARD.decode(att["content"].as_str().unwrap()).unwrap();
    let img = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg).expect("a JPEG snapshot");
    assert!(img.width() >= 160, "{}", img.width());
}

#[test]
fn a_person_on_camera_is_mailed_through_sendgrid_with_the_snapshot_inline() {
    let sendgrid = StandIn::start(free_port(), judge);
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(tmp.path(), &config(tmp.path(), sendgrid.port), &[(KEY_ENV, KEY)]);
    daemon.drop_clip(&common::footage("scene_empty_people_empty.mp4"), "cam01.mp4");

    let mail = wait_for("the mail at SendGrid", Duration::from_secs(120), || sendgrid.answered(202).pop());
    sendgrid.assert_no_violations();
    assert_alert_mail(&mail.json());
    assert_eq!(mail.json()["from"]["name"], "Porch camera");
    let clip_id = daemon.clips()[0]["clip"]["clip_id"].as_str().unwrap().to_owned();
    assert!(mail.json()["content"][0]["value"].as_str().unwrap().contains(&format!("Clip: {clip_id}")));
    wait_for("status done", Duration::from_secs(30), || {
        (daemon.status_of(&clip_id).as_deref() == Some("done")).then_some(())
    });
    assert_eq!(sendgrid.requests().len(), 1);
    let log = daemon.log_text();
    assert!(log.contains("alert mailed through SendGrid"), "{log}");
    assert!(!log.contains(KEY), "the API key is never logged");
}

#[test]
fn a_wrong_api_key_is_said_and_the_alert_kept_until_the_key_is_fixed() {
    let sendgrid = StandIn::start(free_port(), judge);
    let tmp = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(tmp.path(), &config(tmp.path(), sendgrid.port), &[(KEY_ENV, "SG.revoked-key")]);
    daemon.drop_clip(&common::footage("scene_empty_people_empty.mp4"), "cam01.mp4");

    let expected =
        "SendGrid refused the API key (HTTP 401): The provided authorization grant is invalid, expired, or revoked";
    let warning = wait_for("/health naming the refusal", Duration::from_secs(120), || {
        let (_, health) = daemon.get("/health")?;
        health["warnings"]
            .as_array()?
            .iter()
            .filter_map(|w| w.as_str())
            .find(|w| w.contains(expected))
            .map(str::to_owned)
    });
    assert_eq!(warning, format!("notifier sendgrid unreachable: delivery to SendGrid failed: {expected}"));
    assert!(daemon.log_text().contains("SendGrid refuses the API key"));
    assert!(!daemon.log_text().contains("SG.revoked-key"));
    let clip_id = daemon.clips()[0]["clip"]["clip_id"].as_str().unwrap().to_owned();
    assert_ne!(daemon.status_of(&clip_id).as_deref(), Some("done"));

    // The user puts the right key in and restarts: the kept alert goes out, once.
    daemon.stop();
    let refused = sendgrid.answered(401).len();
    assert!(refused >= 1);
    daemon.set_env(KEY_ENV, KEY);
    daemon.restart();
    let mail = wait_for("the kept alert", Duration::from_secs(60), || sendgrid.answered(202).pop());
    assert_alert_mail(&mail.json());
    wait_for("status done", Duration::from_secs(30), || {
        (daemon.status_of(&clip_id).as_deref() == Some("done")).then_some(())
    });
    assert_eq!(sendgrid.answered(202).len(), 1);
    sendgrid.assert_no_violations();
}

#[test]
fn an_alert_during_a_sendgrid_outage_is_mailed_when_it_is_back() {
    let port = free_port();
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(tmp.path(), &config(tmp.path(), port), &[(KEY_ENV, KEY)]);
    daemon.drop_clip(&common::footage("scene_empty_people_empty.mp4"), "cam01.mp4");

    // Nothing listens: the alert waits in the outbox and /health says why.
    wait_for("/health naming the outage", Duration::from_secs(120), || {
        let (_, health) = daemon.get("/health")?;
        let w = health["warnings"].as_array()?.iter().filter_map(|w| w.as_str()).find(|w| w.contains("sendgrid"))?;
        w.contains(&format!("cannot reach SendGrid at http://127.0.0.1:{port}/v3/mail/send")).then_some(())
    });
    let sendgrid = StandIn::start(port, judge);
    let mail = wait_for("the alert after the outage", Duration::from_secs(60), || sendgrid.answered(202).pop());
    assert_alert_mail(&mail.json());
    let clip_id = daemon.clips()[0]["clip"]["clip_id"].as_str().unwrap().to_owned();
    wait_for("status done", Duration::from_secs(30), || {
        (daemon.status_of(&clip_id).as_deref() == Some("done")).then_some(())
    });
    assert_eq!(sendgrid.requests().len(), 1, "delivered once");
    sendgrid.assert_no_violations();
}

#[test]
fn notify_test_sends_one_mail_and_names_a_wrong_key() {
    let sendgrid = StandIn::start(free_port(), judge);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("homesec.yaml");
    std::fs::write(&path, config(tmp.path(), sendgrid.port).replace("{api_port}", "18080")).unwrap();
    let run = |key: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_homesec"))
            .args(["notify-test", "--config"])
            .arg(&path)
            .env(KEY_ENV, key)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, text) = run(KEY);
    assert!(ok, "{text}");
    assert!(text.contains("sendgrid: delivered"), "{text}");
    let sent = sendgrid.answered(202);
    assert_eq!(sent.len(), 1);
    let body = sent[0].json();
    assert!(body["subject"].as_str().unwrap().starts_with("HomeSec porch: "), "{body}");
    assert!(body["content"][0]["value"].as_str().unwrap().contains("notifications work"));

    let (ok, text) = run("SG.wrong");
    assert!(!ok, "{text}");
    assert!(
        text.contains("sendgrid: FAILED: delivery to SendGrid failed: SendGrid refused the API key (HTTP 401)"),
        "{text}"
    );
    assert!(!text.contains("SG.wrong"), "{text}");
    sendgrid.assert_no_violations();
}
