//! How sources hand clips to the pipeline.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::{info, warn};

use super::Pipeline;
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
            self.pipeline.stats.clips_received.fetch_add(1, Ordering::Relaxed);
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
        self.pipeline.stats.clips_quarantined.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// An early alert for a clip still being recorded, when the policy wants one
    /// for these classes and none went out for the clip yet: the snapshot is
    /// written, then the alert (`stage: detected`) is queued for every notifier
    /// together with the note that it was sent, in one transaction. Returns
    /// whether it was queued.
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
            snapshot_path,
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
                        return Ok(false);
                    }
                    w.put_early_alert(&key, &early)?;
                    for e in &entries {
                        w.enqueue_notification(e)?;
                    }
                    Ok(true)
                })
            })
            .await?;
        if queued {
            info!(camera = %sighting.camera, clip_id = %sighting.clip_id, classes = ?sighting.classes, reason = %reason, "early alert");
            p.outbox_wake.notify_one();
        } else {
            warn!(camera = %sighting.camera, clip_id = %sighting.clip_id, "an early alert for this clip went out already");
        }
        Ok(queued)
    }

    pub fn store(&self) -> &Store {
        &self.pipeline.parts.store
    }

    /// Whether the daemon is stopping.
    pub fn is_shutting_down(&self) -> bool {
        self.pipeline.shutdown.is_cancelled()
    }
}
