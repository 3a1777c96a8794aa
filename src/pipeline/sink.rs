//! How sources hand clips to the pipeline.

use std::path::PathBuf;
use std::sync::Arc;

use tracing::{info, warn};

use super::{Pipeline, cooldown};
use crate::domain::{
    Alert, AlertStage, CameraName, Clip, ClipId, ClipRecord, EventKind, Quarantine, Stage, StageStatus, rfc3339,
};
use crate::filter::FilterOutput;
use crate::store::{EarlyAlert, Store, StoreError};

/// A live camera confirmed objects in the clip it is recording.
#[derive(Debug, Clone)]
pub struct Sighting {
    pub clip_id: ClipId,
    pub camera: CameraName,
    /// The classes confirmed so far, most confident first.
    pub classes: Vec<String>,
    /// The frame that confirmed the newest of them.
    pub snapshot_jpeg: Option<Vec<u8>>,
}

/// What became of a sighting's early alert.
enum Early {
    Queued,
    SentAlready,
    /// An open alert (its key) covers the classes: the clip's final alert updates it.
    HeldBack(String),
}

fn held_back(sighting: &Sighting, key: &str) {
    info!(
        camera = %sighting.camera, clip_id = %sighting.clip_id, classes = ?sighting.classes, open_alert = key,
        "no early alert: inside the cooldown of an open alert, which the clip's final alert updates"
    );
}

/// What sources use to hand in clips: commits the record, then queues the clip.
#[derive(Clone)]
pub struct ClipSink {
    pub(super) pipeline: Arc<Pipeline>,
}

impl ClipSink {
    /// Records a finished clip (status `queued_local`) and starts its processing.
    /// Returns false when a clip with that id was recorded already.
    pub async fn submit(&self, clip: Clip) -> Result<bool, StoreError> {
        self.submit_detected(clip, None).await
    }

    /// [`submit`](Self::submit) for a clip whose objects were detected live: the
    /// filter stage is recorded from `live` (with its snapshot) in the same
    /// transaction, so the clip is never decoded for it, not even after a restart.
    pub async fn submit_detected(&self, clip: Clip, live: Option<FilterOutput>) -> Result<bool, StoreError> {
        let id = clip.clip_id.clone();
        let key = id.0.clone();
        let snapshot = match live.as_ref().and_then(|l| l.snapshot_jpeg.as_deref()) {
            Some(jpeg) => self.pipeline.write_snapshot(&clip.camera, &clip.clip_id, jpeg).await,
            None => None,
        };
        let record = ClipRecord::new(clip);
        let now = self.pipeline.now();
        let fresh = self
            .pipeline
            .parts
            .store
            .run(move |s| {
                s.write(|w| {
                    if !w.insert_clip(&record)? {
                        return Ok(false);
                    }
                    if let Some(live) = live {
                        w.update_clip(&key, [EventKind::StageSucceeded { stage: Stage::Filter }], |r| {
                            r.filter.status = StageStatus::Ok;
                            r.filter.attempts = 1;
                            r.filter.started_ms = Some(now);
                            r.filter.finished_ms = Some(now);
                            r.filter_result = Some(live.result);
                            r.snapshot_path = snapshot;
                        })?;
                    }
                    Ok(true)
                })
            })
            .await?;
        if fresh {
            self.pipeline.stats.clips_received.inc();
            self.pipeline.landed.notify_one();
            self.pipeline.spawn_clip(id);
        }
        Ok(fresh)
    }

    /// Records a clip file that could not be read and was moved aside, so that it
    /// shows in `clips list` with the reason.
    pub async fn quarantined(&self, clip: Clip, reason: String, moved_to: PathBuf) -> Result<(), StoreError> {
        let mut record = ClipRecord::new(clip);
        record.clip.local_path = moved_to.display().to_string();
        record.quarantine = Some(Quarantine { reason: reason.clone(), moved_to: moved_to.display().to_string() });
        let clip = record.clip.clone();
        self.pipeline
            .parts
            .store
            .run(move |s| {
                s.write(|w| {
                    if w.insert_clip(&record)? {
                        w.update_clip(clip.clip_id.as_str(), [EventKind::Quarantined { reason }], |_| {})?;
                    }
                    Ok(())
                })
            })
            .await?;
        self.pipeline.stats.clips_quarantined.inc();
        Ok(())
    }

    /// An early alert for a clip still being recorded, when the policy wants one
    /// for these classes, none went out for the clip yet and no open alert of
    /// the camera covers them (the cooldown): the snapshot is written, then the
    /// alert (`stage: detected`) is queued for every notifier together with the
    /// note that it was sent and the alert it opens, in one transaction.
    /// Returns whether it was queued.
    pub async fn sighting(&self, sighting: Sighting) -> Result<bool, StoreError> {
        let p = &self.pipeline;
        if !p.parts.controls.get(&sighting.camera).alerts {
            return Ok(false);
        }
        let Some(reason) = p.parts.policy.early_alert(&sighting.camera, &sighting.classes) else { return Ok(false) };
        let notifiers = p.parts.notifiers.names();
        if notifiers.is_empty() || p.shutdown.is_cancelled() {
            return Ok(false);
        }
        let key = sighting.clip_id.0.clone();
        if p.parts.store.run(move |s| s.early_alert(&key)).await?.is_some() {
            return Ok(false);
        }
        // Inside an open alert's window the clip's final alert updates that
        // alert: no early alert of its own.
        let camera = sighting.camera.clone();
        let classes = cooldown::cooldown_classes(&sighting.classes, &p.parts.policy.notify_classes(&camera));
        let cooldown_ms = (p.parts.policy.cooldown_s(&camera) as i64).saturating_mul(1000);
        let cam = camera.0.clone();
        let open = p.parts.store.run(move |s| s.open_alerts(&cam)).await?;
        if let Some(a) = cooldown::covering(&open, &classes, p.now(), cooldown_ms) {
            held_back(&sighting, &a.dedupe_key);
            return Ok(false);
        }
        let snapshot_path = match &sighting.snapshot_jpeg {
            Some(jpeg) => p.write_snapshot(&sighting.camera, &sighting.clip_id, jpeg).await,
            None => None,
        };
        let now = p.now();
        let alert = Alert {
            clip_id: sighting.clip_id.clone(),
            camera_name: sighting.camera.clone(),
            storage_uri: None,
            view_url: None,
            risk_level: None,
            activity_type: None,
            notify_reason: reason.clone(),
            summary: None,
            ts: rfc3339(now),
            dedupe_key: sighting.clip_id.0.clone(),
            upload_failed: false,
            detected_classes: sighting.classes.clone(),
            stage: AlertStage::Detected,
            occurrences: 1,
            occurrences_text: None,
            snapshot_path: snapshot_path.clone(),
        };
        let early = EarlyAlert { camera: sighting.camera.clone(), sent_ms: now, reason: reason.clone() };
        let entries = p.outbox_entries(&notifiers, &alert, now);
        let key = sighting.clip_id.0.clone();
        let queued = p
            .parts
            .store
            .run(move |s| {
                s.write(|w| {
                    if w.early_alert(&key)?.is_some() {
                        return Ok(Early::SentAlready);
                    }
                    // Checked again here: another clip of the camera may have opened one meanwhile.
                    let open = w.open_alerts(camera.as_str())?;
                    if let Some(a) = cooldown::covering(&open, &classes, now, cooldown_ms) {
                        return Ok(Early::HeldBack(a.dedupe_key.clone()));
                    }
                    if cooldown_ms > 0 {
                        let req = cooldown::Request {
                            clip_id: &key,
                            classes: &classes,
                            risk: None,
                            now,
                            cooldown_ms,
                            own: false,
                        };
                        w.put_open_alerts(camera.as_str(), cooldown::decide(&open, &req).1)?;
                    }
                    w.put_early_alert(&key, &early)?;
                    for e in &entries {
                        w.enqueue_notification(e)?;
                    }
                    Ok(Early::Queued)
                })
            })
            .await?;
        match queued {
            Early::Queued => {
                info!(camera = %sighting.camera, clip_id = %sighting.clip_id, classes = ?sighting.classes, reason = %reason, "early alert");
                p.outbox_wake.notify_one();
                return Ok(true);
            }
            Early::SentAlready => {
                warn!(camera = %sighting.camera, clip_id = %sighting.clip_id, "an early alert for this clip went out already")
            }
            Early::HeldBack(key) => {
                held_back(&sighting, &key);
                // No alert carries it: nothing else would delete it if the clip never arrived.
                if let Some(path) = snapshot_path {
                    let _ = tokio::fs::remove_file(path).await;
                }
            }
        }
        Ok(false)
    }

    pub fn store(&self) -> &Store {
        &self.pipeline.parts.store
    }

    /// Whether the daemon is stopping.
    pub fn is_shutting_down(&self) -> bool {
        self.pipeline.shutdown.is_cancelled()
    }
}
