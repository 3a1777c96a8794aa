//! One MQTT connection: the rumqttc event loop with reconnects, the box's
//! availability (last will `offline`, `online` on every connect) and the Home
//! Assistant device's announcements and subscriptions.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Incoming, LastWill, MqttOptions, Outgoing, QoS, TlsConfiguration,
    Transport,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::link::{Link, MAX_OUTGOING_PACKET, Outbound, PublishError, Shared};
use super::tls;
use crate::backoff::Backoff;
use crate::homeassistant::{self as ha, Device, DiscoveryMessage, Reaction};

/// We only subscribe to Home Assistant's status topic, the install button, the
/// controls' commands and our own device configs.
const MAX_INCOMING_PACKET: usize = 256 * 1024;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// A connection that lasted this long resets the reconnect backoff; one that
/// drops sooner (e.g. another client with the same id) keeps it growing.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);

/// How to reach the broker.
pub(super) struct ConnectOptions {
    pub client_id: String,
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, String)>,
    /// TLS (rustls); `None` for plain TCP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub keepalive: Duration,
    /// Also bounds the TCP/MQTT connect.
    pub ack_timeout: Duration,
    pub reconnect_max: Duration,
    /// rumqttc's request channel.
    pub capacity: usize,
    pub availability_topic: String,
}

/// What the task publishes on every connect (and the device's part again when
/// Home Assistant comes online).
struct Announce {
    availability_topic: String,
    device: Option<Device>,
}

impl Announce {
    fn messages(&self, with_availability: bool) -> Vec<Outbound> {
        let mut out = Vec::new();
        if with_availability {
            out.push(Outbound::retained(self.availability_topic.clone(), ha::ONLINE));
        }
        let device = self.device.iter().flat_map(Device::announcements);
        out.extend(device.map(|m| Outbound::retained(m.topic, m.payload)));
        out
    }
}

/// A live connection handle. Dropping it stops the event loop and closes the
/// socket, which makes the broker publish the last will.
pub(super) struct Connection {
    pub target: String,
    client: AsyncClient,
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Publish the firmware entity's state when the updater's status changes,
    /// and each camera's connectivity when it changes.
    state_tasks: Vec<JoinHandle<()>>,
    availability_topic: String,
}

impl Connection {
    /// Starts the event loop; waits briefly (at most 3 s) for the first connection.
    /// A broker that is down is not an error: the loop keeps reconnecting.
    pub async fn start(opts: ConnectOptions, device: Option<Device>) -> Connection {
        let mut options = MqttOptions::new(opts.client_id.clone(), opts.host.clone(), opts.port);
        // rumqttc asserts keep-alive >= 1 s; the config is validated to 5..=3600.
        options.set_keep_alive(opts.keepalive.max(Duration::from_secs(1)));
        options.set_clean_session(true);
        options.set_max_packet_size(MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET);
        options.set_last_will(LastWill::new(opts.availability_topic.clone(), ha::OFFLINE, QoS::AtLeastOnce, true));
        if let Some((user, pass)) = opts.credentials {
            options.set_credentials(user, pass);
        }
        let scheme = if opts.tls.is_some() { "mqtts" } else { "mqtt" };
        if let Some(tls) = opts.tls {
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
        }
        let (client, mut eventloop) = AsyncClient::new(options, opts.capacity);
        let mut net = eventloop.network_options();
        net.set_connection_timeout(opts.ack_timeout.as_secs().clamp(1, 10));
        eventloop.set_network_options(net);

        let target = format!("{scheme}://{}:{}", opts.host, opts.port);
        let (connected_tx, mut connected_rx) = watch::channel(false);
        let shared = Arc::new(Shared { link: Mutex::new(Link::default()), connected: connected_tx });
        let mut state_tasks = Vec::new();
        if let Some(d) = &device {
            if let Some(changes) = d.firmware_changes() {
                let d = d.clone();
                let state = move || d.firmware_state().into_iter().collect();
                state_tasks.push(tokio::spawn(publish_changes(changes, state, client.clone(), shared.clone())));
            }
            for c in d.connectivity() {
                let (changes, c) = (c.changes(), c.clone());
                let state = move || vec![c.message()];
                state_tasks.push(tokio::spawn(publish_changes(changes, state, client.clone(), shared.clone())));
            }
            if let Some(disk) = d.disk() {
                let (changes, disk) = (disk.changes(), disk.clone());
                let state = move || vec![disk.message()];
                state_tasks.push(tokio::spawn(publish_changes(changes, state, client.clone(), shared.clone())));
            }
            // The inference time changes with every frame: published now and then.
            if let Some(inference) = d.inference() {
                let inference = inference.clone();
                let state = move || inference.message();
                state_tasks.push(tokio::spawn(publish_every(INFERENCE_EVERY, state, client.clone(), shared.clone())));
            }
            // A command switches at once; the box answers with the new states.
            if let Some(changes) = d.control_changes() {
                let d = d.clone();
                let state = move || d.control_states();
                state_tasks.push(tokio::spawn(publish_changes(changes, state, client.clone(), shared.clone())));
            }
        }
        let announce = Announce { availability_topic: opts.availability_topic.clone(), device };
        let task = tokio::spawn(run_event_loop(
            eventloop,
            client.clone(),
            shared.clone(),
            announce,
            target.clone(),
            opts.client_id,
            opts.reconnect_max,
        ));

        let wait = opts.ack_timeout.min(Duration::from_secs(3));
        if tokio::time::timeout(wait, connected_rx.wait_for(|c| *c)).await.is_err() {
            // A failed attempt was logged with its reason by the event loop already.
            if shared.lock().last_error.is_some() {
                debug!(broker = %target, "MQTT broker not reachable yet; alerts wait in the outbox while it reconnects");
            } else {
                warn!(broker = %target, "MQTT broker not reachable yet; alerts wait in the outbox while it reconnects");
            }
        }
        Connection {
            target,
            client,
            shared,
            task: Mutex::new(Some(task)),
            state_tasks,
            availability_topic: opts.availability_topic,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.shared.lock().connected
    }

    /// Why the last connection attempt failed, while not connected.
    pub fn last_error(&self) -> Option<String> {
        let link = self.shared.lock();
        if link.connected { None } else { link.last_error.clone() }
    }

    /// Waits until connected (true) or `timeout` passes (false).
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.shared.connected.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|c| *c)).await.is_ok_and(|r| r.is_ok())
    }

    pub fn availability_topic(&self) -> &str {
        &self.availability_topic
    }

    /// Publishes `msgs` and waits (up to `ack_timeout`) for all their
    /// acknowledgements.
    pub async fn publish_all(&self, msgs: Vec<Outbound>, ack_timeout: Duration) -> Result<(), PublishError> {
        let mut receivers = Vec::with_capacity(msgs.len());
        {
            let mut link = self.shared.lock();
            if !link.connected || link.shutting_down {
                return Err(PublishError::ConnectionLost);
            }
            for msg in msgs {
                match link.enqueue(&self.client, msg, true) {
                    Ok(Some(rx)) => receivers.push(rx),
                    Ok(None) => {}
                    // Earlier messages may already be queued; they are published and
                    // the retry repeats them (consumers dedupe).
                    Err(e) => return Err(e),
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
        tokio::time::timeout(ack_timeout, all).await.unwrap_or(Err(PublishError::AckTimeout))
    }

    /// Publishes `offline` (retained), disconnects cleanly and stops the event loop.
    pub async fn shutdown(&self, ack_timeout: Duration) {
        let offline = Outbound::retained(self.availability_topic.clone(), ha::OFFLINE);
        if self.is_connected()
            && let Err(e) = self.publish_all(vec![offline], ack_timeout).await
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

impl Drop for Connection {
    fn drop(&mut self) {
        for t in &self.state_tasks {
            t.abort();
        }
        let task = self.task.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            task.abort();
        }
    }
}

/// Publishes retained states (`state()`: the firmware entity's, a camera's
/// connectivity, the disk budget, the cameras' controls) whenever their source changes, while connected; every connect
/// publishes it anyway. The state is read under the link's lock, so the last
/// message queued is the latest state, whichever of this and a connect's
/// announcements comes first.
async fn publish_changes<T: Send + Sync>(
    mut changes: watch::Receiver<T>,
    state: impl Fn() -> Vec<DiscoveryMessage> + Send,
    client: AsyncClient,
    shared: Arc<Shared>,
) {
    while changes.changed().await.is_ok() {
        let mut link = shared.lock();
        if link.shutting_down {
            return;
        }
        if !link.connected {
            continue;
        }
        for msg in state() {
            let topic = msg.topic.clone();
            if let Err(e) = link.enqueue(&client, Outbound::retained(msg.topic, msg.payload), false) {
                debug!(topic, error = %e, "cannot publish a state");
            }
        }
    }
}

/// How often the detector's inference time is published (when it changed).
const INFERENCE_EVERY: Duration = Duration::from_secs(30);

/// Publishes a retained state every `period` while connected, when it changed.
async fn publish_every(
    period: Duration,
    state: impl Fn() -> DiscoveryMessage + Send,
    client: AsyncClient,
    shared: Arc<Shared>,
) {
    let mut last: Option<String> = None;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let msg = state();
        let mut link = shared.lock();
        if link.shutting_down {
            return;
        }
        if !link.connected || last.as_ref() == Some(&msg.payload) {
            continue;
        }
        last = Some(msg.payload.clone());
        if let Err(e) = link.enqueue(&client, Outbound::retained(msg.topic, msg.payload), false) {
            debug!(error = %e, "cannot publish a state");
        }
    }
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
    let mut backoff = Backoff::new(FIRST_BACKOFF, reconnect_max);
    let mut outage: Option<Instant> = None;
    let mut ever_connected = false;
    let mut connected_at: Option<Instant> = None;
    // The reason last logged at warn level in this outage: a TLS failure is said
    // once, not on every retry.
    let mut warned: Option<String> = None;
    let subscriptions = announce.device.as_ref().map(Device::subscriptions).unwrap_or_default();
    loop {
        let event = el.poll().await;
        match event {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                connected_at = Some(Instant::now());
                warned = None;
                {
                    let mut link = shared.lock();
                    if link.shutting_down {
                        break;
                    }
                    link.connected = true;
                    link.last_error = None;
                    // Same critical section as `connected = true`: nothing of ours can
                    // overtake `online` and the subscriptions.
                    for topic in &subscriptions {
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
            Ok(Event::Incoming(Incoming::Publish(p))) => {
                let Some(device) = &announce.device else { continue };
                let msgs = match device.on_message(&p.topic, &p.payload, p.retain) {
                    Reaction::None => continue,
                    Reaction::Announce => announce.messages(true),
                    Reaction::Publish(msgs) => {
                        msgs.into_iter().map(|m| Outbound::retained(m.topic, m.payload)).collect()
                    }
                };
                let mut link = shared.lock();
                for msg in msgs {
                    if let Err(e) = link.enqueue(&client, msg, false) {
                        warn!(broker = %target, error = %e, "cannot re-publish discovery");
                        break;
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
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                let tls_failure = crate::tls::failure(&e, &tls::BROKER);
                let reason = tls_failure.clone().unwrap_or_else(|| e.to_string());
                shared.lock().last_error = Some(reason.clone());
                if outage.is_none() {
                    outage = Some(Instant::now());
                    if ever_connected {
                        warn!(broker = %target, error = %reason, "MQTT connection lost; reconnecting in the background");
                    } else {
                        warn!(broker = %target, error = %reason, "cannot connect to the MQTT broker; retrying in the background (alerts wait in the outbox)");
                    }
                    warned = Some(reason);
                } else if tls_failure.is_some() && warned.as_ref() != Some(&reason) {
                    warn!(broker = %target, error = %reason, "cannot connect to the MQTT broker; retrying in the background");
                    warned = Some(reason);
                } else {
                    debug!(broker = %target, error = %reason, backoff_ms = delay.as_millis() as u64, "MQTT reconnect failed");
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
    disconnected(&mut el, &shared);
    debug!(broker = %target, "MQTT event loop stopped");
}

/// After a connection error: mark disconnected, settle what the dead connection had
/// already reported, then empty rumqttc's state so that nothing is re-sent on the
/// next connection without a waiter, and fail every waiter. Returns whether the
/// connection is shutting down.
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
