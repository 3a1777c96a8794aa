//! How sources hand clips to the pipeline.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Pipeline;
use crate::domain::{Clip, ClipRecord, EventKind, Quarantine};
use crate::store::{Store, StoreError};

/// What sources use to hand in clips: commits the record, then queues the clip.
#[derive(Clone)]
pub struct ClipSink {
    pub(super) pipeline: Arc<Pipeline>,
}

impl ClipSink {
    /// Records a finished clip (status `queued_local`) and starts its processing.
    /// Returns false when a clip with that id was recorded already.
    pub async fn submit(&self, clip: Clip) -> Result<bool, StoreError> {
        let id = clip.clip_id.clone();
        let record = ClipRecord::new(clip);
        let fresh = self.pipeline.parts.store.run(move |s| s.write(|w| w.insert_clip(&record))).await?;
        if fresh {
            self.pipeline.stats.clips_received.fetch_add(1, Ordering::Relaxed);
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

    pub fn store(&self) -> &Store {
        &self.pipeline.parts.store
    }

    /// Whether the daemon is stopping.
    pub fn is_shutting_down(&self) -> bool {
        self.pipeline.shutdown.is_cancelled()
    }
}
