use super::*;
use crate::notify::payload::tests::alert;
use crate::plugin::{ConfigIssue, PluginConfig, Validator};

fn issues(cfg: &SmtpConfig) -> Vec<String> {
    let mut issues: Vec<ConfigIssue> = Vec::new();
    let locate = |_: &str| None;
    cfg.validate(&mut Validator::new("notifiers[0].config", &mut issues, &locate));
    issues.into_iter().map(|i| i.to_string()).collect()
}

fn ctx() -> PluginContext {
    PluginContext {
        layout: crate::plugin::DataLayout::new("/nonexistent"),
        config_dir: "/".into(),
        device_id: "box 1".into(),
        cameras: vec![],
        client_tag: None,
    }
}

#[test]
fn defaults_fill_a_block_with_host_from_and_to() {
    let cfg: SmtpConfig = serde_json::from_value(serde_json::json!({
        "host": "mail.example.net", "from": "cam@example.net", "to": ["me@example.net"]
    }))
    .expect("parse");
    assert_eq!(cfg, SmtpConfig::new("mail.example.net", "cam@example.net", &["me@example.net"]));
    assert_eq!((cfg.tls, cfg.port(), cfg.name(), cfg.timeout_s), (SmtpTls::Starttls, 587, "smtp".into(), 30));
    assert_eq!(SmtpConfig { tls: SmtpTls::Tls, ..cfg.clone() }.port(), 465);
    assert!(issues(&cfg).is_empty(), "{:?}", issues(&cfg));
    let bad_tls = serde_json::from_value::<SmtpConfig>(serde_json::json!({
        "host": "h", "from": "a@b.c", "to": ["a@b.c"], "tls": "ssl"
    }));
    assert!(bad_tls.unwrap_err().to_string().contains("unknown variant `ssl`"));
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let cfg = SmtpConfig {
        tls: SmtpTls::None,
        username_env: Some("HOMESEC_TEST_SURELY_UNSET_SMTP_USER".into()),
        timeout_s: 0,
        ..SmtpConfig::new("mail.example.net", "not-an-address", &["me@example.net", "you"])
    };
    assert_eq!(
        issues(&cfg),
        [
            "notifiers[0].config.tls: `none` sends the alerts (and the password) in clear to mail.example.net: use \
             starttls or tls, or set `allow_plaintext: true` if that network is yours",
            "notifiers[0].config.password_env: is required when username_env is set",
            "notifiers[0].config.from: `not-an-address` is not an email address (Missing domain or user)",
            "notifiers[0].config.to[1]: `you` is not an email address (Missing domain or user)",
            "notifiers[0].config.timeout_s: must be between 1 and 300 (got 0)",
        ]
    );
    let none = SmtpConfig { to: vec![], ..SmtpConfig::new("h", "a@b.c", &[]) };
    assert_eq!(issues(&none), ["notifiers[0].config.to: must list at least one recipient"]);
}

#[test]
fn plaintext_goes_to_loopback_or_where_allowed() {
    for host in ["127.0.0.1", "localhost", "::1", "[::1]"] {
        let cfg = SmtpConfig { tls: SmtpTls::None, ..SmtpConfig::new(host, "a@b.c", &["d@e.f"]) };
        assert!(issues(&cfg).is_empty(), "{host}: {:?}", issues(&cfg));
    }
    let lan = SmtpConfig { tls: SmtpTls::None, ..SmtpConfig::new("192.168.1.5", "a@b.c", &["d@e.f"]) };
    assert_eq!(issues(&lan).len(), 1);
    assert!(build(lan.clone(), &ctx()).is_err());
    let allowed = SmtpConfig { allow_plaintext: true, ..lan };
    assert!(issues(&allowed).is_empty());
    assert!(build(allowed, &ctx()).is_ok());
}

#[test]
fn describe_names_the_server_and_never_the_password() {
    // SAFETY: these variables are read only by this test (unique names).
    unsafe {
        std::env::set_var("HOMESEC_TEST_SMTP_DESCRIBE_USER", "cam-user");
        std::env::set_var("HOMESEC_TEST_SMTP_DESCRIBE_PASS", "pa55-word");
    }
    let cfg = SmtpConfig {
        username_env: Some("HOMESEC_TEST_SMTP_DESCRIBE_USER".into()),
        password_env: Some("HOMESEC_TEST_SMTP_DESCRIBE_PASS".into()),
        ..SmtpConfig::new("mail.example.net", "cam@example.net", &["me@example.net", "you@example.net"])
    };
    assert!(issues(&cfg).is_empty(), "{:?}", issues(&cfg));
    let n = build(cfg, &ctx()).expect("build");
    let shown = format!("{} {n:?}", n.describe());
    assert_eq!(
        n.describe(),
        "SMTP mail.example.net:587 (starttls, with login) from cam@example.net to me@example.net, you@example.net"
    );
    assert!(!shown.contains("pa55-word") && !shown.contains("cam-user"), "{shown}");
    assert_eq!(hello_name("box 1"), "box-1");
}

#[test]
fn the_message_is_text_or_html_with_the_snapshot_inline() {
    let from: Mailbox = "cam@example.net".parse().expect("from");
    let to: Vec<Mailbox> = vec!["me@example.net".parse().expect("to")];
    let a = alert();
    let mail = email::compose(&a, Some(b"\xff\xd8\xff\xe0JPEG"));
    let raw = String::from_utf8(message(&a, &mail, &from, &to).expect("message").formatted()).expect("utf-8");
    assert!(raw.contains("Subject: HomeSec front: person"), "{raw}");
    assert!(raw.contains("Message-ID: <front_1700000000.final@homesec>"), "{raw}");
    assert!(raw.contains("In-Reply-To: <front_1700000000.detected@homesec>"), "{raw}");
    assert!(raw.contains("multipart/alternative") && raw.contains("multipart/related"), "{raw}");
    assert!(raw.contains("Content-ID: <snapshot@homesec>"), "{raw}");
    assert!(raw.contains("Content-Disposition: inline; filename=\"snapshot.jpg\""), "{raw}");
}

#[tokio::test]
async fn a_server_that_is_down_is_named_in_the_error_and_in_health() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let cfg = SmtpConfig {
        tls: SmtpTls::None,
        port: Some(port),
        timeout_s: 2,
        ..SmtpConfig::new("127.0.0.1", "cam@example.net", &["me@example.net"])
    };
    let n = build(cfg, &ctx()).expect("build");
    assert!(n.ping().await);
    let err = crate::telemetry::chain(&n.send(&alert(), None).await.expect_err("nothing listens"));
    assert!(
        err.starts_with(&format!("delivery to 127.0.0.1:{port} failed: cannot deliver through the mail server")),
        "{err}"
    );
    assert!(!n.ping().await);
    assert_eq!(n.last_error(), Some(err));
}

#[tokio::test]
async fn a_server_that_goes_silent_is_a_timeout_not_a_hang() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Accepts and never greets.
    let silent = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.expect("accept");
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(sock);
    });
    let cfg = SmtpConfig {
        tls: SmtpTls::None,
        port: Some(port),
        timeout_s: 1,
        ..SmtpConfig::new("127.0.0.1", "cam@example.net", &["me@example.net"])
    };
    let n = build(cfg, &ctx()).expect("build");
    let started = Instant::now();
    let err = crate::telemetry::chain(&n.send(&alert(), None).await.expect_err("no greeting"));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(
        err.ends_with(&format!("the mail server 127.0.0.1:{port} did not answer within 1 s while connecting")),
        "{err}"
    );
    silent.abort();
}
