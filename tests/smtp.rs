//! The `smtp` notifier against a real SMTP server (aiosmtpd, started by each
//! test from tests/smtp_server.py with Debian's python): the real daemon on
//! real footage, the message as a mail client sees it, a refused sender kept
//! and delivered once the server takes it, STARTTLS with a login, and
//! `homesec notify-test`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::config::ConfigBuilder;
use common::peers::{Daemon, free_port, wait_for};
use mail_parser::{MessageParser, MimeHeaders};

const FROM: &str = "porch-cam@homesec.example.net";
const TO: &str = "owner@example.net";
const USER_ENV: &str = "HOMESEC_SMTP_TEST_USER";
const PASS_ENV: &str = "HOMESEC_SMTP_TEST_PASSWORD";
const PASSWORD: &str = "smtp-pa55word-xyz";

/// One aiosmtpd process; stopped on drop.
struct SmtpServer {
    dir: tempfile::TempDir,
    child: Child,
}

#[derive(Default)]
struct Options<'a> {
    refuse_sender: Option<&'a str>,
    /// (certificate, key) for STARTTLS.
    starttls: Option<(PathBuf, PathBuf)>,
    /// (certificate, key) for TLS from the first byte.
    implicit_tls: Option<(PathBuf, PathBuf)>,
    login: Option<&'a str>,
}

impl SmtpServer {
    fn start(port: u16, opts: &Options<'_>) -> SmtpServer {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(common::repo_root().join("tests/smtp_server.py"))
            .args(["--port", &port.to_string(), "--dir"])
            .arg(dir.path());
        if let Some(s) = opts.refuse_sender {
            cmd.args(["--refuse-sender", s]);
        }
        if let Some((cert, key)) = &opts.starttls {
            cmd.arg("--starttls").arg(cert).arg(key);
        }
        if let Some((cert, key)) = &opts.implicit_tls {
            cmd.arg("--implicit-tls").arg(cert).arg(key);
        }
        if let Some(l) = opts.login {
            cmd.args(["--login", l]);
        }
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("/usr/bin/python3 with aiosmtpd");
        let mut server = SmtpServer { dir, child };
        wait_for("the SMTP server", Duration::from_secs(20), || {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("smtp_server.py exited with {status} (is python3-aiosmtpd installed?)");
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        server
    }

    /// The stored messages, oldest first: (envelope JSON, raw message).
    fn messages(&self) -> Vec<(serde_json::Value, Vec<u8>)> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|eml| {
                let meta = std::fs::read(eml.with_extension("json")).unwrap();
                (serde_json::from_slice(&meta).unwrap(), std::fs::read(&eml).unwrap())
            })
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn notifier_block(port: u16, extra: &str) -> String {
    let mut block = format!(
        "notifiers:\n  - backend: smtp\n    config:\n      host: 127.0.0.1\n      port: {port}\n      from: {FROM}\n      \
         to: [{TO}]\n      timeout_s: 10\n"
    );
    for line in extra.lines() {
        block.push_str(&format!("      {line}\n"));
    }
    block
}

fn config(dir: &Path, notifier: &str) -> String {
    ConfigBuilder::new("mailbox", dir)
        .folder_camera("porch")
        .filter(&["classes: [person, car]", "sample_fps: 1"])
        .section(notifier)
        .section("retry:\n  backoff_s: 0.5\n  max_backoff_s: 1")
        .build()
}

/// Asserts what the owner sees in a HomeSec alert mail; returns the subject.
fn assert_alert_mail(raw: &[u8], camera: &str) -> String {
    let msg = MessageParser::default().parse(raw).expect("a MIME message");
    let subject = msg.subject().expect("a subject").to_owned();
    assert!(subject.starts_with(&format!("HomeSec {camera}: ")), "{subject}");
    assert_eq!(msg.from().and_then(|a| a.first()).and_then(|a| a.address()), Some(FROM));
    assert_eq!(msg.to().and_then(|a| a.first()).and_then(|a| a.address()), Some(TO));
    let text = msg.body_text(0).expect("a text part");
    assert!(text.contains(&format!("Camera: {camera}")), "{text}");
    let html = msg.body_html(0).expect("an HTML part");
    assert!(html.contains(&format!("<th align=\"left\">Camera</th><td>{camera}</td>")), "{html}");
    // The HTML shows the snapshot by cid:, and that part is a JPEG of the scene.
    assert!(html.contains("<img src=\"cid:snapshot@homesec\""), "{html}");
    let image = msg
        .parts
        .iter()
        .find(|p| p.content_id() == Some("snapshot@homesec"))
        .expect("a part with Content-ID <snapshot@homesec>");
    let ct = image.content_type().expect("content type");
    assert_eq!((ct.ctype(), ct.subtype()), ("image", Some("jpeg")));
    assert_eq!(image.content_disposition().map(|d| d.ctype()), Some("inline"));
    let decoded = image::load_from_memory(image.contents()).expect("the inline snapshot decodes as an image");
    assert!(decoded.width() >= 160 && decoded.height() >= 90, "{}x{}", decoded.width(), decoded.height());
    subject
}

#[test]
fn a_person_on_camera_is_mailed_with_the_snapshot_inline() {
    let port = free_port();
    let server = SmtpServer::start(port, &Options::default());
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(tmp.path(), &config(tmp.path(), &notifier_block(port, "tls: none")), &[]);
    daemon.drop_clip(&common::footage("scene_empty_people_empty.mp4"), "cam01.mp4");

    let (envelope, raw) = wait_for("the alert mail", Duration::from_secs(120), || server.messages().pop());
    assert_eq!(envelope["mail_from"], FROM);
    assert_eq!(envelope["rcpt_tos"], serde_json::json!([TO]));
    let subject = assert_alert_mail(&raw, "porch");
    assert!(subject.contains("person"), "{subject}");
    let clip_id = daemon.clips()[0]["clip"]["clip_id"].as_str().unwrap().to_owned();
    let msg = MessageParser::default().parse(&raw).unwrap();
    assert!(msg.body_text(0).unwrap().contains(&format!("Clip: {clip_id}")));
    wait_for("status done", Duration::from_secs(30), || {
        (daemon.status_of(&clip_id).as_deref() == Some("done")).then_some(())
    });
    assert_eq!(server.messages().len(), 1, "one alert, one mail");
    assert!(daemon.log_text().contains("alert mailed"));
}

#[test]
fn a_refused_sender_is_named_and_the_alert_is_mailed_once_the_server_takes_it() {
    let port = free_port();
    let refusing = SmtpServer::start(port, &Options { refuse_sender: Some(FROM), ..Options::default() });
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(tmp.path(), &config(tmp.path(), &notifier_block(port, "tls: none")), &[]);
    daemon.drop_clip(&common::footage("scene_empty_people_empty.mp4"), "cam01.mp4");

    let expected = format!("the mail server 127.0.0.1:{port} refused the message from {FROM} (permanent): 553");
    let warning = wait_for("/health naming the refusal", Duration::from_secs(120), || {
        let (_, health) = daemon.get("/health")?;
        let warnings = health["warnings"].as_array()?.clone();
        warnings.into_iter().filter_map(|w| w.as_str().map(str::to_owned)).find(|w| w.contains(&expected))
    });
    assert!(warning.starts_with("notifier smtp unreachable: "), "{warning}");
    assert!(warning.contains("sender address rejected"), "{warning}");
    let log = daemon.log_text();
    assert!(log.contains("the mail server refuses the alert"), "{log}");
    assert!(log.contains(&expected), "{log}");
    assert!(refusing.messages().is_empty());
    let clip_id = daemon.clips()[0]["clip"]["clip_id"].as_str().unwrap().to_owned();
    assert_ne!(daemon.status_of(&clip_id).as_deref(), Some("done"), "the alert is still owed");

    // The server's policy is fixed: the kept alert goes out, once.
    drop(refusing);
    let server = SmtpServer::start(port, &Options::default());
    let (envelope, raw) = wait_for("the kept alert", Duration::from_secs(60), || server.messages().pop());
    assert_eq!(envelope["mail_from"], FROM);
    assert_alert_mail(&raw, "porch");
    wait_for("status done", Duration::from_secs(30), || {
        (daemon.status_of(&clip_id).as_deref() == Some("done")).then_some(())
    });
    wait_for("/health clear", Duration::from_secs(30), || {
        let (_, health) = daemon.get("/health")?;
        (health["checks"]["notifiers"] == true).then_some(())
    });
    assert_eq!(server.messages().len(), 1);
}

fn notify_test(config: &Path, env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_homesec"))
        .args(["notify-test", "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn notify_test_mails_over_starttls_and_tls_with_a_login_and_names_a_refusal() {
    let pki = common::pki::Pki::new();
    let port = free_port();
    let login = format!("camuser:{PASSWORD}");
    let server = SmtpServer::start(
        port,
        &Options {
            starttls: Some((pki.path("server.pem"), pki.path("server.key"))),
            login: Some(&login),
            ..Options::default()
        },
    );
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("homesec.yaml");
    let extra = format!(
        "tls: starttls\nca_file: {}\nusername_env: {USER_ENV}\npassword_env: {PASS_ENV}",
        pki.path("ca.pem").display()
    );
    std::fs::write(&path, config(tmp.path(), &notifier_block(port, &extra)).replace("{api_port}", "18080")).unwrap();
    let env = [(USER_ENV, "camuser"), (PASS_ENV, PASSWORD)];

    let (ok, text) = notify_test(&path, &env);
    assert!(ok, "{text}");
    assert!(text.contains("smtp: delivered"), "{text}");
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].0["login"], "camuser", "the message came in after AUTH");
    let msg = MessageParser::default().parse(&messages[0].1).unwrap();
    assert!(msg.subject().unwrap().starts_with("HomeSec porch: "), "{:?}", msg.subject());
    assert!(msg.body_text(0).unwrap().contains("if you see this, notifications work"));

    // A wrong password: the server's refusal, named; the password is not printed.
    let (ok, text) = notify_test(&path, &[(USER_ENV, "camuser"), (PASS_ENV, "wrong-password")]);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!(
            "smtp: FAILED: delivery to 127.0.0.1:{port} failed: the mail server 127.0.0.1:{port} refused the session \
             (greeting, STARTTLS or login): 535 5.7.8 Authentication credentials invalid"
        )),
        "{text}"
    );
    assert!(!text.contains("wrong-password") && !text.contains(PASSWORD), "{text}");
    drop(server);

    // TLS from the first byte (`tls: tls`, port 465 style), with the same login.
    let implicit = SmtpServer::start(
        port,
        &Options {
            implicit_tls: Some((pki.path("server.pem"), pki.path("server.key"))),
            login: Some(&login),
            ..Options::default()
        },
    );
    std::fs::write(
        &path,
        config(tmp.path(), &notifier_block(port, &extra.replace("tls: starttls", "tls: tls")))
            .replace("{api_port}", "18080"),
    )
    .unwrap();
    let (ok, text) = notify_test(&path, &env);
    assert!(ok, "{text}");
    assert_eq!(implicit.messages().len(), 1);
    assert_eq!(implicit.messages()[0].0["login"], "camuser");
    drop(implicit);

    // A server that refuses the sender: named with the sender and its reply.
    let refusing = SmtpServer::start(port, &Options { refuse_sender: Some(FROM), ..Options::default() });
    std::fs::write(&path, config(tmp.path(), &notifier_block(port, "tls: none")).replace("{api_port}", "18080"))
        .unwrap();
    let (ok, text) = notify_test(&path, &[]);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!(
            "smtp: FAILED: delivery to 127.0.0.1:{port} failed: the mail server 127.0.0.1:{port} refused the message \
             from {FROM} (permanent): 553 5.7.1 <{FROM}>: sender address rejected"
        )),
        "{text}"
    );
    assert!(refusing.messages().is_empty());
}

#[test]
fn a_live_camera_mails_the_early_alert_then_the_final_one_in_the_same_thread() {
    let server = common::rtsp::RtspServer::start(&common::footage("scene_empty_people_empty.mp4"), &[]);
    let port = free_port();
    let smtp = SmtpServer::start(port, &Options::default());
    let tmp = tempfile::tempdir().unwrap();
    let source = "backend: rtsp\nconfig:\n  rtsp_url_env: PORCH_URL\n  frame_timeout_s: 2\n  first_frame_timeout_s: 8\n  \
                  recording: {pre_roll_s: 2, post_roll_s: 3, max_clip_s: 60, min_clip_s: 2}\n";
    let cfg = ConfigBuilder::new("mailbox-live", tmp.path())
        .camera("porch", source)
        .filter(&["classes: [person]", "min_confidence: 0.6", "sample_fps: 1"])
        .policy("backend: default")
        .section(&notifier_block(port, "tls: none"))
        .section("retry:\n  backoff_s: 0.5\n  max_backoff_s: 1")
        .build();
    let _daemon = Daemon::start(tmp.path(), &cfg, &[("PORCH_URL", &server.url())]);

    // The early alert while the people are in view, then the final one once
    // the clip is recorded and filtered: two mails, one thread.
    let mails = wait_for("two mails", Duration::from_secs(120), || {
        let m = smtp.messages();
        (m.len() >= 2).then_some(m)
    });
    let parsed: Vec<_> = mails.iter().map(|(_, raw)| MessageParser::default().parse(raw).unwrap()).collect();
    assert_eq!(parsed[0].subject(), Some("HomeSec porch: person detected"));
    assert!(parsed[0].body_text(0).unwrap().contains("still being recorded"), "{:?}", parsed[0].body_text(0));
    let early_id = parsed[0].message_id().expect("a Message-ID").to_owned();
    assert!(early_id.ends_with(".detected@homesec"), "{early_id}");
    assert_eq!(parsed[1].subject(), Some("HomeSec porch: person"));
    assert_eq!(parsed[1].in_reply_to().as_text(), Some(early_id.as_str()), "the final mail answers the early one");
    assert_alert_mail(&mails[1].1, "porch");
    assert_eq!(mails.len(), 2, "one mail per alert");
}
