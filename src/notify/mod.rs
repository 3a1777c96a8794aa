//! Notifiers: deliver alerts (MQTT + Home Assistant, webhook, email, …).

pub mod email;
pub mod mqtt;
pub mod multiplex;
pub mod ntfy;
pub mod payload;
pub mod sendgrid;
pub mod smtp;
pub mod webhook;

use async_trait::async_trait;

use crate::domain::Alert;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("not connected to {0}")]
    NotConnected(String),
    #[error("delivery to {target} failed")]
    Delivery {
        target: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("delivery to {0} was not acknowledged in time")]
    Timeout(String),
}

/// The reason the last delivery failed, cleared by the next one that succeeds:
/// what a notifier without a connection to watch reports to `/health`.
#[derive(Debug, Default)]
pub struct LastFailure(std::sync::Mutex<Option<String>>);

impl LastFailure {
    pub fn set(&self, failure: Option<String>) {
        // A poisoned lock only means another delivery panicked mid-write; the value is a plain string.
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = failure;
    }

    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
pub trait Notifier: Send + Sync {
    /// Unique name within the configured notifiers (the outbox keys entries by it).
    fn name(&self) -> &str;
    /// Where alerts go, safe to log (no credentials).
    fn describe(&self) -> String {
        self.name().to_owned()
    }
    /// Delivers one alert; returns only when the peer has it (e.g. MQTT PUBACK).
    /// `snapshot` is the alert's JPEG, when one was made.
    async fn send(&self, alert: &Alert, snapshot: Option<&[u8]>) -> Result<(), NotifyError>;
    async fn ping(&self) -> bool;
    /// Whether updates of an open alert (same `dedupe_key`, `occurrences` > 1)
    /// are for this notifier: receivers that replace an alert by its key do;
    /// mail and push, where each update would be another message, do not.
    /// [`multiplex::Notifiers::recipients`] applies it.
    fn takes_updates(&self) -> bool {
        false
    }
    /// Why the peer cannot be reached, while it cannot (e.g. a TLS failure), for `/health`.
    fn last_error(&self) -> Option<String> {
        None
    }
    async fn shutdown(&self) {}
}
