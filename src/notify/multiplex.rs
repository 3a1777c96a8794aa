//! The configured notifiers, addressed by name (the outbox keeps one entry per
//! notifier, so one failing notifier never re-sends to the others).

use std::sync::Arc;

use super::Notifier;

#[derive(Clone, Default)]
pub struct Notifiers {
    list: Vec<Arc<dyn Notifier>>,
}

impl Notifiers {
    pub fn new(list: Vec<Arc<dyn Notifier>>) -> Self {
        Self { list }
    }

    pub fn names(&self) -> Vec<String> {
        self.list.iter().map(|n| n.name().to_owned()).collect()
    }

    /// The notifiers an alert goes to: a new alert or an escalation to every
    /// one, an update of an open alert only to those that take updates
    /// ([`Notifier::takes_updates`]: MQTT and webhook, not mail or push).
    pub fn recipients(&self, update: bool) -> Vec<String> {
        self.list.iter().filter(|n| !update || n.takes_updates()).map(|n| n.name().to_owned()).collect()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Notifier>> {
        self.list.iter().find(|n| n.name() == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Notifier>> {
        self.list.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub async fn shutdown(&self) {
        for n in &self.list {
            n.shutdown().await;
        }
    }
}
