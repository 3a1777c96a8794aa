//! Delivering queued notifications: now, and again with backoff after a
//! failure until the entry's TTL, so a broker restart loses no alert.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tracing::{info, warn};

use super::Pipeline;
use crate::domain::{EventKind, StageStatus};
use crate::store::{OutboxEntry, StoreError, is_early};

impl Pipeline {
    pub(super) async fn outbox_loop(self: Arc<Self>) {
        loop {
            self.beat();
            match self.parts.store.run(|s| s.outbox()).await {
                Ok(entries) => {
                    let now = self.now();
                    let mut deliveries = JoinSet::new();
                    for (seq, entry) in entries.into_iter().filter(|(_, e)| e.next_attempt_ms <= now) {
                        let me = self.clone();
                        deliveries.spawn(async move { me.deliver(seq, entry).await });
                    }
                    while let Some(res) = deliveries.join_next().await {
                        if let Ok(Err(e)) = res {
                            warn!(error = %crate::telemetry::chain(&e), "cannot record a notification outcome");
                        }
                    }
                }
                Err(e) => warn!(error = %crate::telemetry::chain(&e), "cannot read the notification outbox"),
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.outbox_wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn deliver(&self, seq: u64, mut entry: OutboxEntry) -> Result<(), StoreError> {
        let camera = entry.alert.camera_name.clone();
        let clip_id = entry.clip_id.clone();
        let metrics = crate::metrics::global();
        let started = self.parts.clock.monotonic();
        let outcome = match self.parts.notifiers.get(&entry.notifier) {
            Some(n) => {
                let snapshot = match &entry.alert.snapshot_path {
                    Some(p) => tokio::fs::read(p).await.ok(),
                    None => None,
                };
                n.send(&entry.alert, snapshot.as_deref()).await.map_err(|e| crate::telemetry::chain(&e))
            }
            None => Err(format!("notifier `{}` is no longer configured", entry.notifier)),
        };
        let took = self.parts.clock.monotonic().saturating_sub(started);
        metrics.observe_stage(crate::domain::Stage::Notify, took.as_secs_f64());
        let notifier = entry.notifier.clone();
        // An early alert's clip may still be recording (no record yet); its
        // outcome is logged, and only the final alert's counts for the notify stage.
        let early = is_early(&entry);
        match outcome {
            Ok(()) => {
                info!(camera = %camera, clip_id = %clip_id, notifier = %notifier, stage = entry.alert.stage.as_str(), attempts = entry.attempts + 1, "alert delivered");
                let now = self.now();
                self.stats.alerts_delivered.inc();
                metrics.notification(&notifier, crate::metrics::Delivery::Delivered);
                let clip_end_ms = self
                    .parts
                    .store
                    .run(move |s| {
                        s.write(|w| {
                            w.remove_notification(seq)?;
                            if early {
                                return Ok(None);
                            }
                            let others = w.pending_notifications(clip_id.as_str(), seq)?;
                            let r = w.update_clip(
                                clip_id.as_str(),
                                [EventKind::NotificationDelivered { notifier }],
                                |r| {
                                    if others == 0 && r.notify.status != StageStatus::Error {
                                        r.notify.status = StageStatus::Ok;
                                        r.notify.finished_ms = Some(now);
                                    }
                                    r.notify.attempts = r.notify.attempts.max(entry.attempts + 1);
                                },
                            )?;
                            Ok(Some(r.clip.end_ms))
                        })
                    })
                    .await?;
                // Clip end to final alert delivered (early alerts precede the clip's end).
                if let Some(end_ms) = clip_end_ms {
                    metrics.observe_alert_latency((now - end_ms) as f64 / 1000.0);
                }
                Ok(())
            }
            Err(error) => {
                entry.attempts += 1;
                entry.last_error = Some(error.clone());
                let now = self.now();
                if now >= entry.expires_ms {
                    warn!(camera = %camera, clip_id = %clip_id, notifier = %notifier, attempts = entry.attempts, %error, "alert expired undelivered");
                    self.stats.alerts_expired.inc();
                    metrics.notification(&notifier, crate::metrics::Delivery::Expired);
                    return self
                        .parts
                        .store
                        .run(move |s| {
                            s.write(|w| {
                                w.remove_notification(seq)?;
                                if early {
                                    return Ok(());
                                }
                                let msg = error.clone();
                                w.update_clip(
                                    clip_id.as_str(),
                                    [EventKind::NotificationExpired { notifier, error }],
                                    |r| {
                                        r.notify.status = StageStatus::Error;
                                        r.notify.last_error = Some(msg);
                                        r.notify.finished_ms = Some(now);
                                    },
                                )?;
                                Ok(())
                            })
                        })
                        .await;
                }
                metrics.notification(&notifier, crate::metrics::Delivery::Failed);
                let delay = self.schedule.delay(entry.attempts);
                entry.next_attempt_ms = now + delay.as_millis() as i64;
                warn!(camera = %camera, clip_id = %clip_id, notifier = %notifier, attempt = entry.attempts, retry_in_s = delay.as_secs(), %error, "alert not delivered; kept in the outbox");
                let msg = error;
                self.parts
                    .store
                    .run(move |s| {
                        s.write(|w| {
                            w.update_notification(seq, &entry)?;
                            if early {
                                return Ok(());
                            }
                            w.update_clip(entry.clip_id.as_str(), [], |r| {
                                r.notify.attempts = entry.attempts;
                                r.notify.last_error = Some(msg);
                            })?;
                            Ok(())
                        })
                    })
                    .await
            }
        }
    }
}
