//! The MQTT notifier against a real Mosquitto broker.
//!
//! Each test starts its own `mosquitto` (from `/usr/sbin/mosquitto`, or
//! `HOMESEC_MOSQUITTO`) on a free port, so it can stop, freeze and restart it
//! without touching the system broker on 1883, and retained messages of one test
//! never leak into another.

mod common;

use common::peers::Broker;

use std::time::{Duration, Instant};

use homesec::domain::{Alert, CameraName, RiskLevel};
use homesec::notify::mqtt::{self, MqttConfig, MqttNotifier};
use homesec::notify::{Notifier, NotifyError};
use homesec::plugin::PluginContext;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, Publish, QoS};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

const DEVICE: &str = "testbox";

/// A test-side MQTT client that forwards every message it receives.
struct Sub {
    rx: mpsc::UnboundedReceiver<Publish>,
    client: AsyncClient,
    task: JoinHandle<()>,
}

impl Drop for Sub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn subscribe(port: u16, topics: &[&str]) -> Sub {
    let mut opts = MqttOptions::new(format!("test-sub-{}", fastrand::u64(..)), "127.0.0.1", port);
    opts.set_max_packet_size(16 << 20, 16 << 20);
    let (client, mut el) = AsyncClient::new(opts, 64);
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = oneshot::channel();
    let want = topics.len();
    let task = tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        let mut acks = 0;
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    let _ = tx.send(p);
                }
                Ok(Event::Incoming(Incoming::SubAck(_))) => {
                    acks += 1;
                    if acks == want
                        && let Some(r) = ready.take()
                    {
                        let _ = r.send(());
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    for t in topics {
        client.subscribe(*t, QoS::AtLeastOnce).await.expect("subscribe");
    }
    tokio::time::timeout(Duration::from_secs(5), ready_rx).await.expect("suback in time").expect("suback");
    Sub { rx, client, task }
}

impl Sub {
    /// The next message matching `pred` within `within`.
    async fn next_where(&mut self, within: Duration, pred: impl Fn(&Publish) -> bool) -> Option<Publish> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(p)) if pred(&p) => return Some(p),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    }

    /// Everything received within `within`.
    async fn collect(&mut self, within: Duration) -> Vec<Publish> {
        let deadline = tokio::time::Instant::now() + within;
        let mut out = Vec::new();
        while let Ok(Some(p)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            out.push(p);
        }
        out
    }
}

fn ctx_of(device: &str, cameras: &[&str]) -> PluginContext {
    PluginContext {
        layout: homesec::plugin::DataLayout::new(std::env::temp_dir()),
        config_dir: std::env::temp_dir(),
        device_id: device.into(),
        cameras: cameras.iter().map(|c| CameraName::from(*c)).collect(),
        client_tag: None,
    }
}

fn config(port: u16) -> MqttConfig {
    MqttConfig {
        port: Some(port),
        client_id: Some(format!("homesec-test-{}", fastrand::u64(..))),
        ack_timeout_s: 2.0,
        reconnect_max_s: 1.0,
        keepalive_s: 5,
        ..MqttConfig::default()
    }
}

/// Builds the notifier as the daemon does: with the box's Home Assistant device
/// when discovery is on (no updater here).
async fn build(cfg: MqttConfig, cameras: &[&str]) -> MqttNotifier {
    build_as(DEVICE, cfg, cameras).await
}

async fn build_as(device: &str, cfg: MqttConfig, cameras: &[&str]) -> MqttNotifier {
    let ctx = ctx_of(device, cameras);
    let device = homesec::homeassistant::Device::configured(
        &cfg.home_assistant,
        &ctx.device_id,
        &ctx.cameras,
        Default::default(),
    );
    mqtt::build(cfg, &ctx, device).await.expect("build")
}

async fn notifier(cfg: MqttConfig, cameras: &[&str]) -> MqttNotifier {
    let n = build(cfg, cameras).await;
    assert!(n.wait_connected(Duration::from_secs(10)).await, "notifier did not connect");
    n
}

fn alert(camera: &str, n: u32) -> Alert {
    let clip = format!("{camera}_{}", 1_700_000_000 + n);
    Alert {
        clip_id: clip.as_str().into(),
        camera_name: camera.into(),
        storage_uri: Some(format!("local:/clips/{clip}.mp4")),
        view_url: Some(format!("http://box.local/clips/{clip}")),
        risk_level: Some(RiskLevel::High),
        activity_type: Some("suspicious".into()),
        notify_reason: "risk_level=high".into(),
        summary: Some("A person tries the door handle and looks through the window.".into()),
        ts: "2023-11-14T22:13:20.000Z".into(),
        dedupe_key: clip.clone(),
        upload_failed: false,
        detected_classes: vec!["person".into()],
        stage: homesec::domain::AlertStage::Final,
        occurrences: 1,
        occurrences_text: None,
        snapshot_path: None,
    }
}

fn json(p: &Publish) -> Value {
    serde_json::from_slice(&p.payload).unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.topic))
}

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_json_arrives_with_every_field_and_feeds_home_assistant() {
    let broker = Broker::start();
    let n = notifier(config(broker.port), &["front"]).await;
    assert_eq!(n.name(), "mqtt");
    assert!(n.ping().await);
    let mut sub = subscribe(broker.port, &["homecam/alerts/front", "homecam/testbox/front/#"]).await;

    let a = alert("front", 1);
    let jpeg = std::fs::read(common::image("person.jpg")).expect("snapshot jpeg");
    let t = Instant::now();
    n.send(&a, Some(&jpeg)).await.expect("send");
    assert!(t.elapsed() < Duration::from_secs(2), "send took {:?}", t.elapsed());

    let got = sub.next_where(WAIT, |p| p.topic == "homecam/alerts/front").await.expect("alert message");
    assert!(!got.retain);
    assert_eq!(got.qos, QoS::AtLeastOnce);
    let body = json(&got);
    let expected = serde_json::to_value(&a).expect("alert json");
    assert_eq!(body, expected);
    for key in homesec::domain::ALERT_FIELDS {
        assert!(body.get(key).is_some(), "alert lacks {key}: {body}");
    }
    let back: Alert = serde_json::from_value(body).expect("decodes as Alert");
    assert_eq!(back, a);

    // Home Assistant side: snapshot (retained JPEG), state (retained), event.
    drop(sub);
    let mut late = subscribe(broker.port, &["homecam/testbox/front/#"]).await;
    let retained = late.collect(Duration::from_millis(700)).await;
    let snap = retained.iter().find(|p| p.topic == "homecam/testbox/front/snapshot").expect("retained snapshot");
    assert!(snap.retain);
    assert_eq!(snap.payload.as_ref(), jpeg.as_slice());
    let state = retained.iter().find(|p| p.topic == "homecam/testbox/front/state").expect("retained state");
    let state = json(state);
    assert_eq!(state["risk_level"], "high");
    assert_eq!(state["summary"], a.summary.clone().unwrap_or_default());
    assert_eq!(state["person"], true);
    assert!(retained.iter().all(|p| p.topic != "homecam/testbox/front/event"), "events are not retained");

    let b = alert("front", 2);
    n.send(&b, None).await.expect("second send");
    let ev = late.next_where(WAIT, |p| p.topic == "homecam/testbox/front/event").await.expect("event");
    let ev = json(&ev);
    assert_eq!(ev["event_type"], "final", "the alert's stage");
    assert_eq!(ev["clip_id"], b.clip_id.as_str());
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos0_and_custom_topic_template() {
    let broker = Broker::start();
    let cfg = MqttConfig {
        qos: 0,
        topic_template: "alerts/{camera_name}/{clip_id}".into(),
        name: Some("mqtt-lan".into()),
        home_assistant: homesec::homeassistant::HomeAssistantConfig { enabled: false, ..Default::default() },
        ..config(broker.port)
    };
    let n = notifier(cfg, &["back"]).await;
    assert_eq!(n.name(), "mqtt-lan");
    let mut sub = subscribe(broker.port, &["alerts/#", "homeassistant/#", "homecam/#"]).await;
    let a = alert("back", 3);
    n.send(&a, Some(b"jpeg")).await.expect("send");
    let got = sub.next_where(WAIT, |p| p.topic.starts_with("alerts/")).await.expect("alert");
    assert_eq!(got.topic, format!("alerts/back/{}", a.clip_id));
    assert_eq!(json(&got)["clip_id"], a.clip_id.as_str());
    let others = sub.collect(Duration::from_millis(500)).await;
    assert!(others.is_empty(), "discovery disabled, yet got {:?}", others.iter().map(|p| &p.topic).collect::<Vec<_>>());
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_boxes_with_a_front_camera_keep_their_own_topics_and_the_old_ones_are_cleared() {
    let broker = Broker::start();
    // What an earlier version left retained on the camera's topic without the device.
    let old = subscribe(broker.port, &["unused/#"]).await;
    old.client.publish("homecam/front/state", QoS::AtLeastOnce, true, b"{\"old\":true}".to_vec()).await.unwrap();
    let mut sub = subscribe(broker.port, &["homecam/#"]).await;
    let template = "homecam/alerts/{device_id}/{camera_name}";
    let mut boxes = Vec::new();
    for device in ["garage", "porch"] {
        let n =
            build_as(device, MqttConfig { topic_template: template.into(), ..config(broker.port) }, &["front"]).await;
        assert!(n.wait_connected(Duration::from_secs(10)).await);
        n.send(&alert("front", 1), None).await.expect("send");
        boxes.push(n);
    }
    let got = sub.collect(Duration::from_millis(1500)).await;
    let topics: Vec<&str> = got.iter().map(|p| p.topic.as_str()).collect();
    for device in ["garage", "porch"] {
        for topic in [format!("homecam/alerts/{device}/front"), format!("homecam/{device}/front/state")] {
            assert!(topics.contains(&topic.as_str()), "no {topic} in {topics:?}");
        }
    }
    let late = subscribe(broker.port, &["homecam/front/state"]).await.collect(Duration::from_millis(500)).await;
    assert!(late.is_empty(), "the old retained state is cleared: {late:?}");
    for n in boxes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_is_retained_and_republished_when_home_assistant_comes_online() {
    let broker = Broker::start();
    let n = notifier(config(broker.port), &["front", "back"]).await;
    let cameras = [CameraName::from("front"), CameraName::from("back")];
    let features = homesec::homeassistant::Features::default();
    let expected: Vec<_> = homesec::homeassistant::device_configs(&Default::default(), DEVICE, &cameras, &features)
        .iter()
        .map(|c| c.message(&[]))
        .collect();
    assert_eq!(expected.len(), 3, "the box and each camera");

    // connected means announced, not yet delivered: wait until the last config is out
    let last = expected.last().map(|m| m.topic.clone()).unwrap_or_default();
    let mut probe = subscribe(broker.port, &["homeassistant/#"]).await;
    assert!(probe.next_where(WAIT, |p| p.topic == last).await.is_some(), "discovery never published");
    drop(probe);

    // a subscriber arriving after the fact gets every config, retained
    let mut sub = subscribe(broker.port, &["homeassistant/device/+/config", "homecam/+/availability"]).await;
    let got = sub.collect(Duration::from_millis(800)).await;
    for m in &expected {
        let p = got.iter().find(|p| p.topic == m.topic).unwrap_or_else(|| panic!("no retained {}", m.topic));
        assert!(p.retain, "{} not retained", m.topic);
        assert_eq!(json(p), serde_json::from_str::<Value>(&m.payload).expect("payload"));
    }
    let avail = got.iter().find(|p| p.topic == "homecam/testbox/availability").expect("availability");
    assert!(avail.retain);
    assert_eq!(avail.payload.as_ref(), b"online");

    // Home Assistant restarts: its birth message makes us publish everything again (live, not retained copies)
    sub.client.publish("homeassistant/status", QoS::AtLeastOnce, false, "online").await.expect("birth");
    let again = sub.collect(Duration::from_millis(1500)).await;
    let live: Vec<&Publish> =
        again.iter().filter(|p| !p.retain && p.topic.ends_with("/config") && !p.payload.is_empty()).collect();
    assert_eq!(live.len(), expected.len(), "re-published: {:?}", live.iter().map(|p| &p.topic).collect::<Vec<_>>());
    assert!(again.iter().any(|p| p.topic == "homecam/testbox/availability" && p.payload.as_ref() == b"online"));

    // "offline" from Home Assistant changes nothing
    sub.client.publish("homeassistant/status", QoS::AtLeastOnce, false, "offline").await.expect("will");
    assert!(sub.collect(Duration::from_millis(700)).await.iter().all(|p| p.topic == "homeassistant/status"));
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_will_reports_offline_when_the_connection_dies_and_shutdown_says_offline_too() {
    let broker = Broker::start();
    let mut sub = subscribe(broker.port, &["homecam/testbox/availability"]).await;
    let n = notifier(config(broker.port), &["front"]).await;
    let online = sub.next_where(WAIT, |_| true).await.expect("online");
    assert_eq!(online.payload.as_ref(), b"online");

    // the daemon dies without a goodbye: the event loop and its socket go away
    drop(n);
    let will = sub.next_where(WAIT, |_| true).await.expect("last will");
    assert_eq!(will.payload.as_ref(), b"offline");
    let late =
        subscribe(broker.port, &["homecam/testbox/availability"]).await.collect(Duration::from_millis(500)).await;
    assert_eq!(late.first().map(|p| (p.retain, p.payload.to_vec())), Some((true, b"offline".to_vec())));

    // a graceful shutdown publishes offline itself (a clean DISCONNECT fires no will)
    let n = notifier(config(broker.port), &["front"]).await;
    assert_eq!(sub.next_where(WAIT, |_| true).await.expect("online").payload.as_ref(), b"online");
    n.shutdown().await;
    assert!(!n.ping().await);
    assert_eq!(sub.next_where(WAIT, |_| true).await.expect("offline").payload.as_ref(), b"offline");
    assert!(matches!(n.send(&alert("front", 9), None).await, Err(NotifyError::NotConnected(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_fails_fast_then_the_same_notifier_delivers_again() {
    let mut broker = Broker::start();
    let n = notifier(config(broker.port), &["front"]).await;
    n.send(&alert("front", 10), None).await.expect("send before the outage");

    broker.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    while n.ping().await {
        assert!(Instant::now() < deadline, "notifier did not notice the outage");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = Instant::now();
    let err = n.send(&alert("front", 11), None).await.expect_err("broker is down");
    assert!(t.elapsed() <= Duration::from_secs(2), "took {:?}", t.elapsed());
    assert!(matches!(err, NotifyError::NotConnected(_)), "{err:?}");

    broker.restart();
    assert!(n.wait_connected(Duration::from_secs(15)).await, "notifier did not reconnect");
    let mut sub = subscribe(broker.port, &["homecam/alerts/front"]).await;
    let a = alert("front", 12);
    n.send(&a, None).await.expect("send after the outage");
    let got = sub.next_where(WAIT, |_| true).await.expect("delivered after reconnect");
    assert_eq!(json(&got)["clip_id"], a.clip_id.as_str());
    // the failed alert was not queued behind our back
    let rest = sub.collect(Duration::from_millis(800)).await;
    assert!(rest.iter().all(|p| json(p)["clip_id"] != "front_1700000011"));
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_alert_times_out_and_is_not_replayed_after_reconnect() {
    let mut broker = Broker::start();
    let n = notifier(config(broker.port), &["front"]).await;

    // freeze the broker: the TCP connection stays up, nothing is acknowledged
    broker.signal("STOP");
    let t = Instant::now();
    let err = n.send(&alert("front", 20), None).await.expect_err("no PUBACK from a frozen broker");
    let took = t.elapsed();
    assert!(matches!(err, NotifyError::Timeout(_)), "{err:?}");
    assert!(took >= Duration::from_millis(1900) && took <= Duration::from_secs(3), "took {took:?}");

    // the frozen broker dies (never having acknowledged it) and comes back: the
    // in-flight alert must not be re-sent on its own
    broker.restart();
    assert!(n.wait_connected(Duration::from_secs(15)).await, "notifier did not reconnect");
    let mut sub = subscribe(broker.port, &["homecam/alerts/#"]).await;
    let replayed = sub.collect(Duration::from_millis(1500)).await;
    assert!(replayed.is_empty(), "replayed: {:?}", replayed.iter().map(json).collect::<Vec<_>>());
    n.send(&alert("front", 21), None).await.expect("send after reconnect");
    let got = sub.next_where(WAIT, |_| true).await.expect("delivered");
    assert_eq!(json(&got)["clip_id"], "front_1700000021");
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_without_a_broker_and_connects_when_it_appears() {
    let mut broker = Broker::start();
    broker.stop();
    let t = Instant::now();
    let n = build(config(broker.port), &["front"]).await;
    assert!(t.elapsed() < Duration::from_secs(4), "build waited {:?}", t.elapsed());
    assert!(!n.ping().await);
    assert!(matches!(n.send(&alert("front", 30), None).await, Err(NotifyError::NotConnected(_))));
    broker.restart();
    assert!(n.wait_connected(Duration::from_secs(15)).await);
    n.send(&alert("front", 31), None).await.expect("send once connected");
    n.shutdown().await;
}
