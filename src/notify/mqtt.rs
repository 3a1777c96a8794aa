//! MQTT notifier (Mosquitto → Home Assistant), built on rumqttc.
//!
//! One [`AsyncClient`] and one event-loop task per notifier. The task polls the
//! rumqttc [`EventLoop`], reconnects with jittered exponential backoff (logging once
//! per outage), tracks the connection state for [`Notifier::ping`] and matches
//! acknowledgements to the publishes [`Notifier::send`] is waiting for.
//!
//! # Delivery semantics
//! `send` returns `Ok` only when the broker has the alert: with QoS 1 after the
//! PUBACK of every message of the alert, with QoS 0 once written to the socket.
//! rumqttc does not tell a caller which packet id its publish got, so every publish
//! goes through one lock that appends a waiter to a FIFO in the same order as the
//! request enters rumqttc's channel; the event loop hands out packet ids in that
//! order (`Outgoing::Publish(pkid)`), which binds each waiter to its packet id
//! until `Incoming::PubAck(pkid)` arrives (pkid collisions, `Outgoing::AwaitAck`,
//! are followed too).
//!
//! No hidden duplicates: the session is clean (`clean_session = true`), `send`
//! refuses at once while disconnected, and when a connection dies the task empties
//! rumqttc's state (unacknowledged publishes, requests still in its channel) and
//! fails their waiters, so nothing the pipeline was told had failed is published
//! later behind its back. The one window left: a publish whose ack does not come
//! within `ack_timeout_s` on a connection that stays up is still in flight and may
//! yet reach the broker after `send` returned `Timeout`. The pipeline's outbox then
//! retries, and consumers dedupe with `dedupe_key` (the clip id).
//!
//! Availability: the last will is `offline` (retained) on
//! `{base_topic}/{device_id}/availability`; `online` (retained) is published on
//! every connect, `offline` on graceful shutdown. Home Assistant discovery: see
//! [`super::homeassistant`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, Incoming, LastWill, MqttOptions, Outgoing, QoS};
use serde::Deserialize;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::homeassistant::{self as ha, HomeAssistantConfig};
use super::{Notifier, NotifyError};
use crate::domain::{Alert, CameraName};
use crate::plugin::{PluginBuildError, PluginContext};
use crate::plugin::{PluginConfig, Validator};
use crate::update::UpdateLink;

/// Largest snapshot published to the camera entity; bigger ones are skipped.
pub const MAX_SNAPSHOT_BYTES: usize = 8 * 1024 * 1024;
/// rumqttc drops the connection when asked to write a bigger packet, so every
/// payload is checked against this first.
const MAX_OUTGOING_PACKET: usize = MAX_SNAPSHOT_BYTES + 64 * 1024;
/// We only subscribe to Home Assistant's status topic.
const MAX_INCOMING_PACKET: usize = 256 * 1024;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// A connection that lasted this long resets the reconnect backoff; one that
/// drops sooner (e.g. another client with the same id) keeps it growing.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);

/// The `config` block of the `mqtt` notifier.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Notifier name (outbox key); default `mqtt`. Set it when several MQTT notifiers are configured.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// Env var holding the username (set both `username_env` and `password_env`, or neither).
    #[serde(default)]
    pub username_env: Option<String>,
    /// Env var holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Default `homesec-{device_id}`; must be unique on the broker.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Alert topic; placeholders `{camera_name}` and `{clip_id}`.
    #[serde(default = "default_topic_template")]
    pub topic_template: String,
    /// QoS of the alert: 1 (acknowledged, default) or 0.
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Retain the alert message.
    #[serde(default)]
    pub retain: bool,
    #[serde(default = "default_keepalive_s")]
    pub keepalive_s: u64,
    /// How long `send` waits for the broker's acknowledgement.
    #[serde(default = "default_ack_timeout_s")]
    pub ack_timeout_s: f64,
    /// Longest wait between reconnection attempts (the backoff starts at 0.5 s).
    #[serde(default = "default_reconnect_max_s")]
    pub reconnect_max_s: f64,
    #[serde(default)]
    pub home_assistant: HomeAssistantConfig,
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    1883
}
fn default_topic_template() -> String {
    "homecam/alerts/{camera_name}".into()
}
fn default_qos() -> u8 {
    1
}
fn default_keepalive_s() -> u64 {
    30
}
fn default_ack_timeout_s() -> f64 {
    10.0
}
fn default_reconnect_max_s() -> f64 {
    30.0
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            name: None,
            host: default_host(),
            port: default_port(),
            username_env: None,
            password_env: None,
            client_id: None,
            topic_template: default_topic_template(),
            qos: default_qos(),
            retain: false,
            keepalive_s: default_keepalive_s(),
            ack_timeout_s: default_ack_timeout_s(),
            reconnect_max_s: default_reconnect_max_s(),
            home_assistant: HomeAssistantConfig::default(),
        }
    }
}

impl PluginConfig for MqttConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        if let Some(name) = &self.name {
            v.check(!name.trim().is_empty(), "name", "must not be empty");
        }
        v.check(!self.host.trim().is_empty(), "host", "must not be empty");
        v.check(self.port != 0, "port", "must be between 1 and 65535");
        match (&self.username_env, &self.password_env) {
            (Some(u), Some(p)) => {
                v.require_env("username_env", u);
                v.require_env("password_env", p);
            }
            (Some(_), None) => v.error("password_env", "is required when username_env is set"),
            (None, Some(_)) => v.error("username_env", "is required when password_env is set"),
            (None, None) => {}
        }
        if let Some(id) = &self.client_id {
            v.check(!id.trim().is_empty(), "client_id", "must not be empty");
        }
        if let Err(msg) = check_topic_template(&self.topic_template) {
            v.error("topic_template", msg);
        }
        v.check(self.qos <= 1, "qos", format!("must be 0 or 1 (got {}; QoS 2 is not supported)", self.qos));
        v.check(
            (5..=3600).contains(&self.keepalive_s),
            "keepalive_s",
            format!("must be between 5 and 3600 (got {})", self.keepalive_s),
        );
        v.check(
            self.ack_timeout_s.is_finite() && self.ack_timeout_s > 0.0 && self.ack_timeout_s <= 300.0,
            "ack_timeout_s",
            format!("must be > 0 and at most 300 (got {})", self.ack_timeout_s),
        );
        v.check(
            self.reconnect_max_s.is_finite() && (0.5..=3600.0).contains(&self.reconnect_max_s),
            "reconnect_max_s",
            format!("must be between 0.5 and 3600 (got {})", self.reconnect_max_s),
        );
        self.home_assistant.validate(&mut v.nested("home_assistant"));
    }
}

/// The template must be non-empty, use only `{camera_name}` / `{clip_id}` and no wildcards.
fn check_topic_template(t: &str) -> Result<(), String> {
    if t.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if t.contains(['+', '#', '\0']) {
        return Err(format!("`{t}` must not contain the MQTT wildcards `+`/`#`"));
    }
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!("`{t}` has an unclosed `{{`"));
        };
        let name = &after[..close];
        if name != "camera_name" && name != "clip_id" {
            return Err(format!("unknown placeholder `{{{name}}}` in `{t}` (known: {{camera_name}}, {{clip_id}})"));
        }
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("`{t}` has a `}}` without `{{`"));
    }
    Ok(())
}

/// The alert topic for one alert.
pub fn render_topic(template: &str, alert: &Alert) -> String {
    template.replace("{camera_name}", alert.camera_name.as_str()).replace("{clip_id}", alert.clip_id.as_str())
}

/// The alert's JSON body on the alert topic (the serde form of [`Alert`]).
pub fn alert_payload(alert: &Alert) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(alert)
}

#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error("the connection to the broker was lost before the acknowledgement")]
    ConnectionLost,
    #[error("invalid topic `{0}`")]
    InvalidTopic(String),
    #[error("the request queue is full")]
    QueueFull,
    #[error("the event loop has stopped")]
    Stopped,
    #[error("payload of {0} bytes exceeds the {MAX_OUTGOING_PACKET}-byte limit")]
    TooLarge(usize),
    #[error("cannot serialise the alert")]
    Json(#[from] serde_json::Error),
}

type Waiter = oneshot::Sender<Result<(), PublishError>>;

/// A publish handed to rumqttc whose packet id is not known yet.
struct Queued {
    qos: QoS,
    waiter: Option<Waiter>,
}

/// Connection state and the acknowledgement bookkeeping, behind one lock.
#[derive(Default)]
struct Link {
    connected: bool,
    shutting_down: bool,
    /// Publishes in rumqttc's channel, in the order they will get packet ids.
    queued: VecDeque<Queued>,
    /// QoS 1 publishes on the wire, by packet id, awaiting their PUBACK.
    inflight: HashMap<u16, Option<Waiter>>,
    /// A publish rumqttc parked because its packet id was still in flight.
    collided: Option<(u16, Option<Waiter>)>,
}

impl Link {
    /// `Outgoing::Publish(pkid)`: the oldest queued publish was written with `pkid`.
    fn on_written(&mut self, pkid: u16, stale: bool) {
        if let Some((cpkid, waiter)) = self.collided.take() {
            if cpkid == pkid {
                self.inflight.insert(pkid, waiter);
                return;
            }
            self.collided = Some((cpkid, waiter));
        }
        let Some(q) = self.queued.pop_front() else {
            debug!(pkid, "MQTT publish without a queued waiter");
            return;
        };
        if q.qos == QoS::AtMostOnce {
            if let Some(w) = q.waiter {
                // A stale event means the write may not have been flushed.
                let _ = w.send(if stale { Err(PublishError::ConnectionLost) } else { Ok(()) });
            }
        } else {
            self.inflight.insert(pkid, q.waiter);
        }
    }

    /// `Outgoing::AwaitAck(pkid)`: the oldest queued publish waits for `pkid` to be freed.
    fn on_collision(&mut self, pkid: u16) {
        if let Some(q) = self.queued.pop_front() {
            self.collided = Some((pkid, q.waiter));
        }
    }

    fn on_puback(&mut self, pkid: u16) {
        if let Some(Some(w)) = self.inflight.remove(&pkid) {
            let _ = w.send(Ok(()));
        }
    }

    /// Fails every waiter: the connection is gone and so is rumqttc's copy of their publishes.
    fn fail_all(&mut self) {
        let waiters = self
            .queued
            .drain(..)
            .map(|q| q.waiter)
            .chain(self.inflight.drain().map(|(_, w)| w))
            .chain(self.collided.take().map(|(_, w)| w));
        for w in waiters.flatten() {
            let _ = w.send(Err(PublishError::ConnectionLost));
        }
    }

    /// Hands one publish to rumqttc (never blocks: this runs under the lock).
    fn enqueue(
        &mut self,
        client: &AsyncClient,
        msg: Outbound,
        want_ack: bool,
    ) -> Result<Option<oneshot::Receiver<Result<(), PublishError>>>, PublishError> {
        if msg.payload.len() > MAX_OUTGOING_PACKET.saturating_sub(msg.topic.len() + 16) {
            return Err(PublishError::TooLarge(msg.payload.len()));
        }
        if !rumqttc::valid_topic(&msg.topic) {
            return Err(PublishError::InvalidTopic(msg.topic));
        }
        let (tx, rx) = if want_ack {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        match client.try_publish(msg.topic.as_str(), msg.qos, msg.retain, msg.payload) {
            Ok(()) => {
                self.queued.push_back(Queued { qos: msg.qos, waiter: tx });
                Ok(rx)
            }
            // `try_publish` fails only on a full (or closed) channel once the topic is valid.
            Err(_) => Err(PublishError::QueueFull),
        }
    }
}

/// One message to publish.
struct Outbound {
    topic: String,
    qos: QoS,
    retain: bool,
    payload: Vec<u8>,
}

impl Outbound {
    fn retained(topic: String, payload: impl Into<Vec<u8>>) -> Self {
        Self { topic, qos: QoS::AtLeastOnce, retain: true, payload: payload.into() }
    }
}

/// What the task publishes on every connect (and the discovery part again when
/// Home Assistant comes online).
struct Announce {
    availability_topic: String,
    /// `{discovery_prefix}/status`, when discovery is on.
    ha_status_topic: Option<String>,
    discovery: Vec<ha::DiscoveryMessage>,
    /// The firmware update entity, when discovery is on and the box has an updater.
    update: Option<UpdateEntity>,
}

/// Topics of the firmware update entity and the updater behind it.
#[derive(Clone)]
struct UpdateEntity {
    state_topic: String,
    command_topic: String,
    link: UpdateLink,
}

impl UpdateEntity {
    fn state_message(&self) -> Outbound {
        Outbound::retained(self.state_topic.clone(), ha::update_state_payload(&self.link.status.borrow()))
    }
}

impl Announce {
    fn messages(&self, with_availability: bool) -> Vec<Outbound> {
        let mut out = Vec::with_capacity(self.discovery.len() + 2);
        if with_availability {
            out.push(Outbound::retained(self.availability_topic.clone(), ha::ONLINE));
        }
        out.extend(self.discovery.iter().map(|d| Outbound::retained(d.topic.clone(), d.payload.clone())));
        out.extend(self.update.as_ref().map(UpdateEntity::state_message));
        out
    }
}

/// Publishes the update entity's state whenever the updater's status changes
/// (while connected; every connect publishes it anyway).
async fn publish_update_state(mut entity: UpdateEntity, client: AsyncClient, shared: Arc<Shared>) {
    while entity.link.status.changed().await.is_ok() {
        let msg = entity.state_message();
        let mut link = shared.lock();
        if link.shutting_down {
            return;
        }
        if link.connected
            && let Err(e) = link.enqueue(&client, msg, false)
        {
            debug!(error = %e, "cannot publish the update state");
        }
    }
}

struct Shared {
    link: Mutex<Link>,
    connected: watch::Sender<bool>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Link> {
        // A panic while holding this lock would be a bug in the few lines above that
        // only move waiters around; the state stays consistent, so keep going.
        self.link.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The MQTT notifier. Dropping it without [`Notifier::shutdown`] stops the event
/// loop and closes the socket, which makes the broker publish the last will.
pub struct MqttNotifier {
    name: String,
    target: String,
    client: AsyncClient,
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Publishes the update entity's state (with Home Assistant and an updater).
    update_task: Option<JoinHandle<()>>,
    topic_template: String,
    qos: QoS,
    retain: bool,
    ack_timeout: Duration,
    ha: Option<HomeAssistantConfig>,
    availability_topic: String,
}

impl std::fmt::Debug for MqttNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttNotifier").field("name", &self.name).field("target", &self.target).finish_non_exhaustive()
    }
}

fn build_error(msg: impl Into<String>) -> PluginBuildError {
    PluginBuildError::new("notifier", "mqtt", msg.into())
}

fn read_env(field: &str, var: &str) -> Result<String, PluginBuildError> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(build_error(format!("{field}: environment variable {var} is not set"))),
    }
}

/// Builds the notifier and starts its event loop. Waits briefly (at most 3 s) for
/// the first connection; a broker that is down is not an error (the notifier keeps
/// reconnecting and `send` fails until then, so the outbox holds the alerts).
pub async fn build(cfg: MqttConfig, ctx: &PluginContext) -> Result<MqttNotifier, PluginBuildError> {
    let qos = match cfg.qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        n => return Err(build_error(format!("qos must be 0 or 1, got {n}"))),
    };
    check_topic_template(&cfg.topic_template).map_err(|m| build_error(format!("topic_template: {m}")))?;
    if !(cfg.ack_timeout_s.is_finite() && cfg.ack_timeout_s > 0.0) {
        return Err(build_error("ack_timeout_s must be > 0"));
    }
    let credentials = match (&cfg.username_env, &cfg.password_env) {
        (Some(u), Some(p)) => Some((read_env("username_env", u)?, read_env("password_env", p)?)),
        (None, None) => None,
        _ => return Err(build_error("set both username_env and password_env, or neither")),
    };
    let client_id = cfg.client_id.clone().unwrap_or_else(|| format!("homesec-{}", ctx.device_id));
    let availability_topic = ha::availability_topic(&cfg.home_assistant.base_topic, &ctx.device_id);

    let mut options = MqttOptions::new(client_id.clone(), cfg.host.clone(), cfg.port);
    // rumqttc asserts keep-alive >= 1 s; the config is validated to 5..=3600.
    options.set_keep_alive(Duration::from_secs(cfg.keepalive_s.max(1)));
    options.set_clean_session(true);
    options.set_max_packet_size(MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET);
    options.set_last_will(LastWill::new(availability_topic.clone(), ha::OFFLINE, QoS::AtLeastOnce, true));
    if let Some((user, pass)) = credentials {
        options.set_credentials(user, pass);
    }
    let cap = 128 + 16 * ctx.cameras.len();
    let (client, mut eventloop) = AsyncClient::new(options, cap);
    let ack_timeout = Duration::from_secs_f64(cfg.ack_timeout_s);
    let mut net = eventloop.network_options();
    net.set_connection_timeout(ack_timeout.as_secs().clamp(1, 10));
    eventloop.set_network_options(net);

    let ha_cfg = cfg.home_assistant.enabled.then(|| cfg.home_assistant.clone());
    let announce = Announce {
        availability_topic: availability_topic.clone(),
        ha_status_topic: ha_cfg.as_ref().map(|h| ha::status_topic(&h.discovery_prefix)),
        discovery: ha_cfg
            .as_ref()
            .map(|h| {
                let mut d = ha::discovery_messages(h, &ctx.device_id, &ctx.cameras);
                d.extend(ctx.update.is_some().then(|| ha::update_discovery(h, &ctx.device_id)));
                d
            })
            .unwrap_or_default(),
        update: ha_cfg.as_ref().zip(ctx.update.clone()).map(|(h, link)| UpdateEntity {
            state_topic: ha::update_state_topic(&h.base_topic, &ctx.device_id),
            command_topic: ha::update_command_topic(&h.base_topic, &ctx.device_id),
            link,
        }),
    };
    let target = format!("mqtt://{}:{}", cfg.host, cfg.port);
    let (connected_tx, mut connected_rx) = watch::channel(false);
    let shared = Arc::new(Shared { link: Mutex::new(Link::default()), connected: connected_tx });
    let reconnect_max = Duration::from_secs_f64(cfg.reconnect_max_s.clamp(0.5, 3600.0));
    let update_task =
        announce.update.clone().map(|e| tokio::spawn(publish_update_state(e, client.clone(), shared.clone())));
    let task = tokio::spawn(run_event_loop(
        eventloop,
        client.clone(),
        shared.clone(),
        announce,
        target.clone(),
        client_id,
        reconnect_max,
    ));

    let wait = ack_timeout.min(Duration::from_secs(3));
    if tokio::time::timeout(wait, connected_rx.wait_for(|c| *c)).await.is_err() {
        warn!(broker = %target, "MQTT broker not reachable yet; alerts wait in the outbox while it reconnects");
    }

    Ok(MqttNotifier {
        name: cfg.name.clone().unwrap_or_else(|| "mqtt".into()),
        target,
        client,
        shared,
        task: Mutex::new(Some(task)),
        update_task,
        topic_template: cfg.topic_template,
        qos,
        retain: cfg.retain,
        ack_timeout,
        ha: ha_cfg,
        availability_topic,
    })
}

async fn run_event_loop(
    mut el: EventLoop,
    client: AsyncClient,
    shared: Arc<Shared>,
    announce: Announce,
    target: String,
    client_id: String,
    reconnect_max: Duration,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut outage: Option<Instant> = None;
    let mut ever_connected = false;
    let mut connected_at: Option<Instant> = None;
    loop {
        let event = el.poll().await;
        match event {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                connected_at = Some(Instant::now());
                {
                    let mut link = shared.lock();
                    if link.shutting_down {
                        break;
                    }
                    link.connected = true;
                    // Same critical section as `connected = true`: nothing of ours can
                    // overtake `online` and the subscription.
                    let subscriptions =
                        announce.ha_status_topic.iter().chain(announce.update.as_ref().map(|u| &u.command_topic));
                    for topic in subscriptions {
                        if let Err(e) = client.try_subscribe(topic.as_str(), QoS::AtLeastOnce) {
                            warn!(broker = %target, topic, error = %e, "cannot subscribe");
                        }
                    }
                    for msg in announce.messages(true) {
                        let topic = msg.topic.clone();
                        if let Err(e) = link.enqueue(&client, msg, false) {
                            warn!(broker = %target, topic, error = %e, "cannot publish availability / discovery");
                        }
                    }
                }
                shared.connected.send_replace(true);
                match outage.take() {
                    Some(since) => {
                        info!(broker = %target, client_id, outage_ms = since.elapsed().as_millis() as u64, "MQTT reconnected")
                    }
                    None if !ever_connected => info!(broker = %target, client_id, "MQTT connected"),
                    None => info!(broker = %target, client_id, "MQTT reconnected"),
                }
                ever_connected = true;
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => shared.lock().on_written(pkid, false),
            Ok(Event::Outgoing(Outgoing::AwaitAck(pkid))) => shared.lock().on_collision(pkid),
            Ok(Event::Incoming(Incoming::PubAck(ack))) => shared.lock().on_puback(ack.pkid),
            Ok(Event::Incoming(Incoming::Publish(p)))
                if announce.update.as_ref().is_some_and(|u| u.command_topic == p.topic) =>
            {
                // Retained commands are stale: only a live button press installs.
                if !p.retain && p.payload.as_ref() == ha::INSTALL.as_bytes() {
                    info!(broker = %target, "Home Assistant asked to install the latest firmware");
                    if let Some(u) = &announce.update {
                        let _ = u.link.install_latest.send(());
                    }
                }
            }
            Ok(Event::Incoming(Incoming::Publish(p))) => {
                let is_status = announce.ha_status_topic.as_deref() == Some(p.topic.as_str());
                // A retained status arrives right after our own subscription, when we
                // have just announced ourselves; only a live birth message counts.
                if is_status && !p.retain && p.payload.as_ref() == ha::ONLINE.as_bytes() {
                    info!(broker = %target, "Home Assistant came online; re-publishing discovery");
                    let mut link = shared.lock();
                    for msg in announce.messages(true) {
                        if let Err(e) = link.enqueue(&client, msg, false) {
                            warn!(broker = %target, error = %e, "cannot re-publish discovery");
                            break;
                        }
                    }
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                if shared.lock().shutting_down {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                let stop = disconnected(&mut el, &shared);
                if stop || matches!(e, ConnectionError::RequestsDone) {
                    break;
                }
                if connected_at.take().is_some_and(|t| t.elapsed() >= STABLE_CONNECTION) {
                    backoff = FIRST_BACKOFF;
                }
                if outage.is_none() {
                    outage = Some(Instant::now());
                    if ever_connected {
                        warn!(broker = %target, error = %e, "MQTT connection lost; reconnecting in the background");
                    } else {
                        warn!(broker = %target, error = %e, "cannot connect to the MQTT broker; retrying in the background");
                    }
                } else {
                    debug!(broker = %target, error = %e, backoff_ms = backoff.as_millis() as u64, "MQTT reconnect failed");
                }
                let jitter = 0.8 + fastrand::f64() * 0.4;
                tokio::time::sleep(backoff.mul_f64(jitter)).await;
                backoff = (backoff * 2).min(reconnect_max);
            }
        }
    }
    disconnected(&mut el, &shared);
    debug!(broker = %target, "MQTT event loop stopped");
}

/// After a connection error: mark disconnected, settle what the dead connection had
/// already reported, then empty rumqttc's state so that nothing is re-sent on the
/// next connection without a waiter, and fail every waiter. Returns whether the
/// notifier is shutting down.
fn disconnected(el: &mut EventLoop, shared: &Shared) -> bool {
    let stop = {
        let mut link = shared.lock();
        link.connected = false;
        for event in std::mem::take(&mut el.state.events) {
            match event {
                Event::Outgoing(Outgoing::Publish(pkid)) => link.on_written(pkid, true),
                Event::Outgoing(Outgoing::AwaitAck(pkid)) => link.on_collision(pkid),
                Event::Incoming(Incoming::PubAck(ack)) => link.on_puback(ack.pkid),
                _ => {}
            }
        }
        // Moves unacknowledged publishes and the requests still in the channel into
        // `pending`, which a clean session would replay only if the broker kept the
        // session; drop them all: their senders hear about it now.
        el.clean();
        el.pending.clear();
        el.state.collision = None;
        link.fail_all();
        link.shutting_down
    };
    shared.connected.send_replace(false);
    stop
}

impl MqttNotifier {
    /// Whether the notifier is connected to the broker now.
    pub fn is_connected(&self) -> bool {
        self.shared.lock().connected
    }

    /// Waits until connected (true) or `timeout` passes (false).
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.shared.connected.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|c| *c)).await.is_ok_and(|r| r.is_ok())
    }

    /// The retained availability topic (`online` / `offline`).
    pub fn availability_topic(&self) -> &str {
        &self.availability_topic
    }

    /// The messages of one alert, in publish order: the Home Assistant snapshot,
    /// state and event first (so the image is there when automations fire), the
    /// alert topic last.
    fn alert_messages(&self, alert: &Alert, snapshot: Option<&[u8]>) -> Result<Vec<Outbound>, PublishError> {
        let mut msgs = Vec::with_capacity(4);
        if let Some(h) = &self.ha {
            let cam: &CameraName = &alert.camera_name;
            match snapshot {
                Some(jpeg) if jpeg.len() <= MAX_SNAPSHOT_BYTES => {
                    msgs.push(Outbound::retained(ha::snapshot_topic(&h.base_topic, cam), jpeg));
                }
                Some(jpeg) => warn!(
                    camera = %alert.camera_name, clip_id = %alert.clip_id, bytes = jpeg.len(),
                    "snapshot too large for MQTT; not published"
                ),
                None => {}
            }
            msgs.push(Outbound::retained(ha::state_topic(&h.base_topic, cam), ha::state_payload(alert)));
            msgs.push(Outbound {
                topic: ha::event_topic(&h.base_topic, cam),
                qos: QoS::AtLeastOnce,
                retain: false,
                payload: ha::event_payload(alert).into_bytes(),
            });
        }
        msgs.push(Outbound {
            topic: render_topic(&self.topic_template, alert),
            qos: self.qos,
            retain: self.retain,
            payload: alert_payload(alert)?,
        });
        Ok(msgs)
    }

    fn delivery(&self, e: PublishError) -> NotifyError {
        match e {
            PublishError::ConnectionLost | PublishError::Stopped => NotifyError::NotConnected(self.target.clone()),
            other => NotifyError::Delivery { target: self.target.clone(), source: Box::new(other) },
        }
    }

    /// Publishes `msgs` and waits for all their acknowledgements.
    async fn publish_all(&self, msgs: Vec<Outbound>) -> Result<(), NotifyError> {
        let mut receivers = Vec::with_capacity(msgs.len());
        {
            let mut link = self.shared.lock();
            if !link.connected || link.shutting_down {
                return Err(NotifyError::NotConnected(self.target.clone()));
            }
            for msg in msgs {
                match link.enqueue(&self.client, msg, true) {
                    Ok(Some(rx)) => receivers.push(rx),
                    Ok(None) => {}
                    // Earlier messages of this alert may already be queued; they are
                    // published and the retry repeats them (consumers dedupe).
                    Err(e) => return Err(self.delivery(e)),
                }
            }
        }
        let all = async {
            for rx in receivers {
                match rx.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return Err(PublishError::Stopped),
                }
            }
            Ok(())
        };
        match tokio::time::timeout(self.ack_timeout, all).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.delivery(e)),
            Err(_) => Err(NotifyError::Timeout(self.target.clone())),
        }
    }
}

impl Drop for MqttNotifier {
    fn drop(&mut self) {
        if let Some(t) = &self.update_task {
            t.abort();
        }
        let task = self.task.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            task.abort();
        }
    }
}

#[async_trait]
impl Notifier for MqttNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, alert: &Alert, snapshot: Option<&[u8]>) -> Result<(), NotifyError> {
        let started = Instant::now();
        let msgs = self.alert_messages(alert, snapshot).map_err(|e| self.delivery(e))?;
        let count = msgs.len();
        let topic = render_topic(&self.topic_template, alert);
        match self.publish_all(msgs).await {
            Ok(()) => {
                info!(
                    camera = %alert.camera_name, clip_id = %alert.clip_id, topic, messages = count,
                    elapsed_ms = started.elapsed().as_millis() as u64, "alert published to MQTT"
                );
                Ok(())
            }
            // The outage itself is logged once by the event loop; the outbox retries.
            Err(e @ NotifyError::NotConnected(_)) => {
                debug!(camera = %alert.camera_name, clip_id = %alert.clip_id, topic, "MQTT alert not sent: not connected");
                Err(e)
            }
            Err(e) => {
                warn!(camera = %alert.camera_name, clip_id = %alert.clip_id, topic, error = %e, "MQTT alert not delivered");
                Err(e)
            }
        }
    }

    async fn ping(&self) -> bool {
        self.is_connected()
    }

    /// Publishes `offline` (retained), disconnects cleanly and stops the event loop.
    async fn shutdown(&self) {
        let offline = Outbound::retained(self.availability_topic.clone(), ha::OFFLINE);
        if self.is_connected()
            && let Err(e) = self.publish_all(vec![offline]).await
        {
            debug!(broker = %self.target, error = %e, "cannot publish offline availability");
        }
        {
            let mut link = self.shared.lock();
            link.shutting_down = true;
            link.connected = false;
        }
        let _ = self.client.try_disconnect();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut task) = task
            && tokio::time::timeout(Duration::from_secs(2), &mut task).await.is_err()
        {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::ConfigIssue;

    fn issues(cfg: &MqttConfig) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let locate = |_: &str| None;
        cfg.validate(&mut Validator::new("notifiers[0].config", &mut issues, &locate));
        issues
    }

    fn alert() -> Alert {
        Alert {
            clip_id: "front_1700000000".into(),
            camera_name: "front".into(),
            storage_uri: None,
            view_url: None,
            risk_level: None,
            activity_type: None,
            notify_reason: "notify_on_motion".into(),
            summary: None,
            ts: "2023-11-14T22:13:20.000Z".into(),
            dedupe_key: "front_1700000000".into(),
            upload_failed: true,
            detected_classes: vec!["person".into()],
            snapshot_path: None,
        }
    }

    #[test]
    fn defaults_fill_an_empty_block() {
        let cfg: MqttConfig = serde_json::from_value(serde_json::json!({})).expect("defaults");
        assert_eq!(cfg, MqttConfig::default());
        assert_eq!(cfg.host, "127.0.0.1");
        assert_eq!(cfg.port, 1883);
        assert_eq!(cfg.qos, 1);
        assert!(!cfg.retain);
        assert_eq!(cfg.topic_template, "homecam/alerts/{camera_name}");
        assert!(cfg.home_assistant.enabled);
        assert_eq!(cfg.home_assistant.discovery_prefix, "homeassistant");
        assert_eq!(cfg.home_assistant.base_topic, "homecam");
        assert!(issues(&cfg).is_empty());
        let int: MqttConfig = serde_json::from_value(serde_json::json!({"ack_timeout_s": 5})).expect("integer");
        assert_eq!(int.ack_timeout_s, 5.0);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(serde_json::from_value::<MqttConfig>(serde_json::json!({"hots": "x"})).is_err());
        assert!(serde_json::from_value::<MqttConfig>(serde_json::json!({"home_assistant": {"prefix": "x"}})).is_err());
    }

    #[test]
    fn every_problem_is_reported() {
        let cfg = MqttConfig {
            host: " ".into(),
            port: 0,
            username_env: Some("HOMESEC_TEST_SURELY_UNSET_USER".into()),
            topic_template: "homecam/{camera}/#".into(),
            qos: 2,
            keepalive_s: 1,
            ack_timeout_s: 0.0,
            home_assistant: HomeAssistantConfig { base_topic: "".into(), ..Default::default() },
            ..Default::default()
        };
        let paths: Vec<String> = issues(&cfg).into_iter().map(|i| i.path).collect();
        for p in [
            "host",
            "port",
            "password_env",
            "topic_template",
            "qos",
            "keepalive_s",
            "ack_timeout_s",
            "home_assistant.base_topic",
        ] {
            assert!(paths.contains(&format!("notifiers[0].config.{p}")), "missing {p} in {paths:?}");
        }
    }

    #[test]
    fn credentials_come_from_the_environment() {
        let cfg = MqttConfig {
            username_env: Some("HOMESEC_TEST_SURELY_UNSET_USER".into()),
            password_env: Some("HOMESEC_TEST_SURELY_UNSET_PASS".into()),
            ..Default::default()
        };
        let msgs: Vec<String> = issues(&cfg).into_iter().map(|i| i.to_string()).collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].contains("HOMESEC_TEST_SURELY_UNSET_USER is not set"), "{msgs:?}");
    }

    #[test]
    fn topic_templates() {
        assert!(check_topic_template("homecam/alerts/{camera_name}").is_ok());
        assert!(check_topic_template("homecam/{camera_name}/{clip_id}").is_ok());
        assert!(check_topic_template("homecam/alerts").is_ok());
        assert!(check_topic_template("homecam/{camera}").is_err());
        assert!(check_topic_template("homecam/{camera_name").is_err());
        assert!(check_topic_template("homecam/camera_name}").is_err());
        assert!(check_topic_template("homecam/+/x").is_err());
        assert!(check_topic_template("").is_err());
        let a = alert();
        assert_eq!(render_topic("homecam/alerts/{camera_name}", &a), "homecam/alerts/front");
        assert_eq!(render_topic("c/{camera_name}/{clip_id}", &a), "c/front/front_1700000000");
    }

    #[test]
    fn the_alert_payload_is_the_serde_form_of_alert() {
        let a = alert();
        let v: serde_json::Value = serde_json::from_slice(&alert_payload(&a).expect("json")).expect("parse");
        for key in crate::domain::ALERT_FIELDS {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        let back: Alert = serde_json::from_value(v).expect("round trip");
        assert_eq!(back, a);
    }

    #[test]
    fn waiters_follow_packet_ids_through_collisions_and_disconnects() {
        let mut link = Link::default();
        let mut rxs = Vec::new();
        for qos in [QoS::AtLeastOnce, QoS::AtMostOnce, QoS::AtLeastOnce, QoS::AtLeastOnce] {
            let (tx, rx) = oneshot::channel();
            link.queued.push_back(Queued { qos, waiter: Some(tx) });
            rxs.push(rx);
        }
        link.on_written(1, false);
        link.on_written(0, false); // QoS 0: done once written
        assert!(matches!(rxs[1].try_recv(), Ok(Ok(()))));
        link.on_written(2, false);
        link.on_puback(2);
        assert!(matches!(rxs[2].try_recv(), Ok(Ok(()))));
        assert!(rxs[0].try_recv().is_err(), "pkid 1 not acked yet");
        // the fourth publish collides with pkid 1, which is still in flight
        link.on_collision(1);
        link.on_puback(1);
        assert!(matches!(rxs[0].try_recv(), Ok(Ok(()))));
        link.on_written(1, false); // collision resolved: the parked publish goes out as pkid 1
        assert!(rxs[3].try_recv().is_err());
        link.fail_all();
        assert!(matches!(rxs[3].try_recv(), Ok(Err(PublishError::ConnectionLost))));
        assert!(link.queued.is_empty() && link.inflight.is_empty() && link.collided.is_none());
    }
}
