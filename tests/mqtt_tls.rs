//! The MQTT notifier over TLS against a real Mosquitto with a TLS listener,
//! with certificates made at run time (`openssl`). Test subscribers read the
//! same broker on its plain listener.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::config::ConfigBuilder;
use common::peers::{Broker, BrokerTls, Daemon, Subscriber, wait_for};
use common::pki::Pki;
use homesec::domain::{Alert, CameraName};
use homesec::notify::mqtt::{self, MqttConfig, MqttNotifier, MqttTlsConfig};
use homesec::notify::{Notifier, NotifyError};
use homesec::plugin::PluginContext;

const DEVICE: &str = "testbox";

fn ctx(config_dir: &Path) -> PluginContext {
    PluginContext {
        layout: homesec::plugin::DataLayout::new(std::env::temp_dir()),
        config_dir: config_dir.to_path_buf(),
        device_id: DEVICE.into(),
        cameras: vec![CameraName::from("front")],
        client_tag: None,
    }
}

fn tls(ca: &str) -> MqttTlsConfig {
    MqttTlsConfig { enabled: true, ca_file: Some(ca.into()), ..Default::default() }
}

fn config(port: u16, tls: MqttTlsConfig) -> MqttConfig {
    MqttConfig {
        port: Some(port),
        client_id: Some(format!("homesec-test-{}", fastrand::u64(..))),
        ack_timeout_s: 2.0,
        reconnect_max_s: 1.0,
        keepalive_s: 5,
        tls,
        ..MqttConfig::default()
    }
}

/// Builds the notifier as the daemon does (with the box's Home Assistant
/// device); relative TLS paths resolve against the PKI's folder.
async fn build(pki: &Pki, cfg: MqttConfig) -> MqttNotifier {
    let ctx = ctx(&pki.path(""));
    let device = homesec::homeassistant::Device::configured(
        &cfg.home_assistant,
        &ctx.device_id,
        &ctx.cameras,
        Default::default(),
    );
    mqtt::build(cfg, &ctx, device).await.expect("build")
}

fn alert(n: u32) -> Alert {
    let clip = format!("front_{}", 1_700_000_000 + n);
    Alert {
        clip_id: clip.as_str().into(),
        camera_name: "front".into(),
        storage_uri: None,
        view_url: None,
        risk_level: None,
        activity_type: None,
        notify_reason: "notify_on_classes".into(),
        summary: None,
        ts: "2023-11-14T22:13:20.000Z".into(),
        dedupe_key: clip,
        upload_failed: false,
        detected_classes: vec!["person".into()],
        stage: homesec::domain::AlertStage::Detected,
        occurrences: 1,
        occurrences_text: None,
        snapshot_path: None,
    }
}

fn broker(pki: &Pki, require_certificate: bool) -> Broker {
    broker_with(pki, "server", require_certificate)
}

/// A broker whose certificate and key are `<server>.pem` / `<server>.key`.
fn broker_with(pki: &Pki, server: &str, require_certificate: bool) -> Broker {
    Broker::start_tls(BrokerTls {
        cafile: pki.path("ca.pem"),
        certfile: pki.path(&format!("{server}.pem")),
        keyfile: pki.path(&format!("{server}.key")),
        require_certificate,
    })
}

/// Waits until the notifier has given up a connection attempt, and returns why.
async fn refused(n: &MqttNotifier) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(!n.ping().await, "connected to {} although it should not", n.target());
        if let Some(why) = n.last_error() {
            return why;
        }
        assert!(Instant::now() < deadline, "no connection error reported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The log lines of this test process (for "said once, not on every retry").
fn log_lines() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
        let writer = buf.clone();
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let only_homesec = tracing_subscriber::filter::Targets::new().with_target("homesec", tracing::Level::DEBUG);
        let fmt = tracing_subscriber::fmt::layer().with_ansi(false).with_writer(move || Writer(writer.clone()));
        let _ = tracing_subscriber::registry().with(fmt).with(only_homesec).try_init();
        buf
    })
    .clone()
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_right_ca_alerts_discovery_and_the_last_will_go_over_tls() {
    let pki = Pki::new();
    let broker = broker(&pki, false);
    let tls_port = broker.tls_port.expect("tls listener");
    let sub = Subscriber::connect(broker.port, &["homecam/#", "homeassistant/#"]);

    // a relative ca_file resolves against the config's folder
    let n = build(&pki, config(tls_port, tls("ca.pem"))).await;
    assert!(n.wait_connected(Duration::from_secs(10)).await, "no TLS connection: {:?}", n.last_error());
    assert_eq!(n.target(), format!("mqtts://127.0.0.1:{tls_port}"));
    assert!(n.ping().await);
    assert_eq!(n.last_error(), None);
    n.send(&alert(1), None).await.expect("send over TLS");

    let got = wait_for("the alert", Duration::from_secs(5), || sub.json_on("homecam/alerts/front").into_iter().next());
    assert_eq!(got["clip_id"], "front_1700000001");
    // Home Assistant: the box's availability and the discovery, as over TCP
    let features = homesec::homeassistant::Features::default();
    let expected: Vec<_> =
        homesec::homeassistant::device_configs(&Default::default(), DEVICE, &[CameraName::from("front")], &features);
    wait_for("every discovery config", Duration::from_secs(5), || {
        let topics = sub.topics();
        expected.iter().all(|m| topics.contains(&m.topic)).then_some(())
    });
    let availability = |payload: &[u8]| {
        sub.messages
            .lock()
            .unwrap()
            .iter()
            .any(|(t, p, _)| t == "homecam/testbox/availability" && p.as_slice() == payload)
            .then_some(())
    };
    wait_for("online", Duration::from_secs(5), || availability(b"online"));

    // the daemon dies without a goodbye: the broker publishes the last will
    drop(n);
    wait_for("the last will", Duration::from_secs(10), || availability(b"offline"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_is_one_clear_error_and_the_alert_is_not_lost() {
    let log = log_lines();
    let pki = Pki::new();
    let broker = broker(&pki, false);
    let tls_port = broker.tls_port.expect("tls listener");
    let sub = Subscriber::connect(broker.port, &["homecam/alerts/#"]);

    let n = build(&pki, config(tls_port, tls("other_ca.pem"))).await;
    let why = refused(&n).await;
    assert!(why.contains("not signed by a trusted CA"), "{why}");
    assert!(why.contains("tls.ca_file"), "{why}");
    let err = n.send(&alert(2), None).await.expect_err("not connected");
    assert!(matches!(err, NotifyError::NotConnected(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("mqtts://127.0.0.1:{tls_port}")) && msg.contains("trusted CA"), "{msg}");

    // retries go on (backoff up to 1 s here) but the warning is said once
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!n.ping().await);
    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    let target = format!("mqtts://127.0.0.1:{tls_port}");
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains(&target) && l.contains(" WARN ")).collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("UnknownIssuer"), "{}", warnings[0]);
    let retries = text.lines().filter(|l| l.contains(&target) && l.contains("reconnect failed")).count();
    assert!(retries >= 2, "the notifier stopped retrying: {text}");
    n.shutdown().await;

    // the config is fixed and the daemon restarted: the alert the outbox kept goes out
    let n = build(&pki, config(tls_port, tls("ca.pem"))).await;
    assert!(n.wait_connected(Duration::from_secs(10)).await, "{:?}", n.last_error());
    n.send(&alert(2), None).await.expect("delivered once the link works");
    let got = wait_for("the alert", Duration::from_secs(5), || sub.json_on("homecam/alerts/front").into_iter().next());
    assert_eq!(got["clip_id"], "front_1700000002");
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_a_client_certificate_the_broker_trusts() {
    let pki = Pki::new();
    let broker = broker(&pki, true);
    let tls_port = broker.tls_port.expect("tls listener");
    let sub = Subscriber::connect(broker.port, &["homecam/alerts/#"]);

    let with_cert = |cert: &str, key: &str| MqttTlsConfig {
        client_cert_file: Some(pki.path(cert)),
        client_key_file: Some(pki.path(key)),
        ..tls("ca.pem")
    };
    let n = build(&pki, config(tls_port, with_cert("client.pem", "client.key"))).await;
    assert!(n.wait_connected(Duration::from_secs(10)).await, "{:?}", n.last_error());
    n.send(&alert(3), None).await.expect("send with a client certificate");
    let got = wait_for("the alert", Duration::from_secs(5), || sub.json_on("homecam/alerts/front").into_iter().next());
    assert_eq!(got["clip_id"], "front_1700000003");
    n.shutdown().await;

    // without a certificate, and with one from a CA the broker does not trust
    for tls in [tls("ca.pem"), with_cert("rogue_client.pem", "rogue_client.key")] {
        let n = build(&pki, config(tls_port, tls)).await;
        let why = refused(&n).await;
        assert!(why.contains("refused the handshake") && why.contains("tls.client_cert_file"), "{why}");
        assert!(matches!(n.send(&alert(4), None).await, Err(NotifyError::NotConnected(_))));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!n.ping().await, "connected without a trusted client certificate: {why}");
        n.shutdown().await;
    }
    let refused_alerts = sub.json_on("homecam/alerts/front");
    assert!(refused_alerts.iter().all(|a| a["clip_id"] != "front_1700000004"), "{refused_alerts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_name_is_the_name_the_certificate_must_carry() {
    let pki = Pki::new();
    let broker = broker(&pki, false);
    let tls_port = broker.tls_port.expect("tls listener");
    let named = |name: &str| MqttTlsConfig { server_name: Some(name.into()), ..tls("ca.pem") };

    let n = build(&pki, config(tls_port, named("localhost"))).await;
    assert!(n.wait_connected(Duration::from_secs(10)).await, "{:?}", n.last_error());
    n.shutdown().await;

    let n = build(&pki, config(tls_port, named("broker.example.com"))).await;
    let why = refused(&n).await;
    assert!(why.contains("not valid for this name"), "{why}");
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_broker_certificate_is_said_in_plain_words() {
    let pki = Pki::new();
    let broker = broker_with(&pki, "expired_server", false);
    let n = build(&pki, config(broker.tls_port.expect("tls listener"), tls("ca.pem"))).await;
    let why = refused(&n).await;
    assert!(why.contains("TLS: the broker's certificate has expired"), "{why}");
    n.shutdown().await;
}

#[test]
fn with_tls_and_no_port_the_port_is_8883() {
    let cfg: MqttConfig = serde_json::from_value(serde_json::json!({"tls": {"enabled": true}})).unwrap();
    assert_eq!(cfg.port(), 8883);
    assert_eq!(MqttConfig::default().port(), 1883);
}

/// A config with one `mqtt` notifier whose `tls` block is `tls` (YAML, indented).
fn check(dir: &Path, tls: &str) -> Vec<(String, String)> {
    let text = format!(
        "cameras:\n  - name: front\n    source:\n      backend: folder\n      config:\n        path: /srv/ftp/front\n\
         filter:\n  backend: yolo\n  config:\n    model_path: /models/yolox_nano_416.onnx\n\
         notifiers:\n  - backend: mqtt\n    config:\n      host: broker.example.com\n      tls:\n{tls}"
    );
    match homesec::plugins::parse_text(&text, &dir.join("homesec.yaml"), dir) {
        Ok(_) => Vec::new(),
        Err(issues) => issues.into_iter().map(|i| (i.path, i.message)).collect(),
    }
}

#[test]
fn the_config_check_reads_every_tls_file_and_names_the_key() {
    let pki = Pki::new();
    let dir = pki.path("");
    let ok = "        enabled: true\n        ca_file: ca.pem\n        client_cert_file: client.pem\n        client_key_file: client.key\n        server_name: broker.example.com\n";
    assert_eq!(check(&dir, ok), Vec::<(String, String)>::new());
    assert_eq!(check(&dir, "        enabled: true\n"), Vec::<(String, String)>::new(), "the built-in roots");

    let key = |k: &str| format!("notifiers[0].config.tls.{k}");
    let one = |tls: &str| {
        let issues = check(&dir, tls);
        assert_eq!(issues.len(), 1, "{issues:#?}");
        issues.into_iter().next().unwrap()
    };
    // a CA file with no certificate in it (a key file given by mistake)
    let (path, msg) = one("        enabled: true\n        ca_file: client.key\n");
    assert_eq!(path, key("ca_file"));
    assert!(msg.contains("holds no certificate"), "{msg}");
    // a file that is not there
    let (path, msg) = one("        enabled: true\n        ca_file: nowhere.pem\n");
    assert_eq!(path, key("ca_file"));
    assert!(msg.contains("cannot read") && msg.contains("nowhere.pem"), "{msg}");
    // a key file with no key in it
    let (path, msg) =
        one("        enabled: true\n        client_cert_file: client.pem\n        client_key_file: client.pem\n");
    assert_eq!(path, key("client_key_file"));
    assert!(msg.contains("holds no private key"), "{msg}");
    // a certificate without its key, and the reverse
    let (path, _) = one("        enabled: true\n        client_cert_file: client.pem\n");
    assert_eq!(path, key("client_key_file"));
    let (path, _) = one("        enabled: true\n        client_key_file: client.key\n");
    assert_eq!(path, key("client_cert_file"));
    // a key that is not the certificate's
    let (path, msg) =
        one("        enabled: true\n        client_cert_file: client.pem\n        client_key_file: server.key\n");
    assert_eq!(path, key("client_key_file"));
    assert!(msg.contains("does not fit the client certificate"), "{msg}");
    // TLS keys while TLS is off
    let (path, msg) = one("        ca_file: ca.pem\n");
    assert_eq!(path, key("ca_file"));
    assert!(msg.contains("tls.enabled is false"), "{msg}");
    let (path, _) = one("        enabled: true\n        server_name: \"not a name\"\n");
    assert_eq!(path, key("server_name"));
    // the key's contents never show in a message
    let garbage = dir.join("garbage.key");
    std::fs::write(&garbage, "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA==!!\n-----END PRIVATE KEY-----\n")
        .unwrap();
    let (path, msg) = one(&format!(
        "        enabled: true\n        client_cert_file: client.pem\n        client_key_file: {}\n",
        garbage.display()
    ));
    assert_eq!(path, key("client_key_file"));
    assert!(!msg.contains("c2VjcmV0") && !msg.contains("secret"), "{msg}");
}

#[test]
fn the_daemon_with_a_wrong_ca_is_degraded_with_the_reason_and_delivers_once_fixed() {
    let pki = Pki::new();
    let broker = broker(&pki, false);
    let tls_port = broker.tls_port.expect("tls listener");
    let sub = Subscriber::connect(broker.port, &["homecam/alerts/#"]);
    let tmp = tempfile::tempdir().unwrap();
    let config = |ca: &str| {
        ConfigBuilder::new("tlsbox", tmp.path())
            .folder_camera("porch")
            .filter(&["classes: [person, car]", "sample_fps: 1"])
            .section(&format!(
                "notifiers:\n  - backend: mqtt\n    config:\n      host: 127.0.0.1\n      port: {tls_port}\n      \
                 tls:\n        enabled: true\n        ca_file: {}",
                pki.path(ca).display()
            ))
            .build()
    };
    let mut daemon = Daemon::start(tmp.path(), &config("other_ca.pem"), &[]);
    daemon.drop_clip(&common::footage("scene_empty_people_empty.mp4"), "cam01.mp4");

    // The alert waits in the outbox; /health says why in one line.
    let health = wait_for("the alert waiting in the outbox", Duration::from_secs(120), || {
        let (_, h) = daemon.get("/health")?;
        h["warnings"].to_string().contains("notification(s) waiting in the outbox").then_some(h)
    });
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["checks"]["notifiers"], false, "{health}");
    let warnings = health["warnings"].to_string();
    assert!(
        warnings.contains(
            "notifier mqtt unreachable: TLS: the broker's certificate is not signed by a trusted CA (check tls.ca_file)"
        ),
        "{health}"
    );
    assert!(sub.json_on("homecam/alerts/porch").is_empty());

    // The CA fixed and the daemon restarted: the kept alert goes out.
    daemon.stop();
    std::fs::write(&daemon.config, config("ca.pem").replace("{api_port}", &daemon.api_port.to_string())).unwrap();
    daemon.restart();
    let alert = wait_for("the alert on homecam/alerts/porch", Duration::from_secs(60), || {
        sub.json_on("homecam/alerts/porch").into_iter().next()
    });
    assert_eq!(alert["camera_name"], "porch", "{alert}");
    wait_for("healthy notifiers", Duration::from_secs(30), || {
        (daemon.get("/health")?.1["checks"]["notifiers"] == true).then_some(())
    });
}
