//! The acknowledgement bookkeeping of one MQTT connection: which waiter gets
//! which packet id, and what fails when the connection dies.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use rumqttc::{AsyncClient, QoS};
use tokio::sync::{oneshot, watch};
use tracing::debug;

use super::MAX_SNAPSHOT_BYTES;

/// rumqttc drops the connection when asked to write a bigger packet, so every
/// payload is checked against this first.
pub(super) const MAX_OUTGOING_PACKET: usize = MAX_SNAPSHOT_BYTES + 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub(super) enum PublishError {
    #[error("the connection to the broker was lost before the acknowledgement")]
    ConnectionLost,
    #[error("invalid topic `{0}`")]
    InvalidTopic(String),
    #[error("the request queue is full")]
    QueueFull,
    #[error("the event loop has stopped")]
    Stopped,
    #[error("the broker did not acknowledge in time")]
    AckTimeout,
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
pub(super) struct Link {
    pub(super) connected: bool,
    pub(super) shutting_down: bool,
    /// Why the last connection attempt failed (cleared on connect).
    pub(super) last_error: Option<String>,
    /// Publishes in rumqttc's channel, in the order they will get packet ids.
    queued: VecDeque<Queued>,
    /// QoS 1 publishes on the wire, by packet id, awaiting their PUBACK.
    inflight: HashMap<u16, Option<Waiter>>,
    /// A publish rumqttc parked because its packet id was still in flight.
    collided: Option<(u16, Option<Waiter>)>,
}

impl Link {
    /// `Outgoing::Publish(pkid)`: the oldest queued publish was written with `pkid`.
    pub(super) fn on_written(&mut self, pkid: u16, stale: bool) {
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
    pub(super) fn on_collision(&mut self, pkid: u16) {
        if let Some(q) = self.queued.pop_front() {
            self.collided = Some((pkid, q.waiter));
        }
    }

    pub(super) fn on_puback(&mut self, pkid: u16) {
        if let Some(Some(w)) = self.inflight.remove(&pkid) {
            let _ = w.send(Ok(()));
        }
    }

    /// Fails every waiter: the connection is gone and so is rumqttc's copy of their publishes.
    pub(super) fn fail_all(&mut self) {
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
    pub(super) fn enqueue(
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
pub(super) struct Outbound {
    pub(super) topic: String,
    pub(super) qos: QoS,
    pub(super) retain: bool,
    pub(super) payload: Vec<u8>,
}

impl Outbound {
    pub(super) fn retained(topic: String, payload: impl Into<Vec<u8>>) -> Self {
        Self { topic, qos: QoS::AtLeastOnce, retain: true, payload: payload.into() }
    }
}

/// The bookkeeping behind one lock, and whether the connection is up (for waiters).
pub(super) struct Shared {
    pub(super) link: Mutex<Link>,
    pub(super) connected: watch::Sender<bool>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Link> {
        // A panic while holding this lock would be a bug in the few lines above that
        // only move waiters around; the state stays consistent, so keep going.
        self.link.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
