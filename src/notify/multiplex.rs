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
