//! What the pipeline keeps in the storage besides the clip: the analysis as
//! JSON next to it; and clips fetched back from the storage when their
//! recording is gone from the box.

use std::path::PathBuf;

use tracing::{error, info, warn};

use super::Pipeline;
use crate::domain::{AnalysisResult, Clip, ClipRecord, StageStatus};
use crate::store::StoreError;

/// A clip fetched back into the fetched directory: deleted when dropped
/// (once the clip has been processed, however that ends).
pub(super) struct Fetched(PathBuf);

impl Drop for Fetched {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(path = %self.0.display(), error = %e, "cannot delete a clip fetched back for processing");
        }
    }
}

impl Pipeline {
    /// The record to process: as stored, or, when its recording is gone but
    /// the clip was uploaded and a stage still needs the file, with
    /// `local_path` pointing at a copy fetched back from the storage. `None`
    /// when that fetch fails: the clip stays unfinished and resumes on the
    /// next start (or the next re-analysis).
    pub(super) async fn with_local_copy(
        &self,
        mut record: ClipRecord,
    ) -> Result<Option<(ClipRecord, Option<Fetched>)>, StoreError> {
        let needs_file = record.filter.status != StageStatus::Ok
            || !matches!(record.vlm.status, StageStatus::Ok | StageStatus::Skipped);
        let Some(uri) = record.storage_uri.clone() else { return Ok(Some((record, None))) };
        let local = PathBuf::from(&record.clip.local_path);
        if !needs_file || tokio::fs::try_exists(&local).await.unwrap_or(true) {
            return Ok(Some((record, None)));
        }
        let dest = self.parts.fetched_dir.join(format!("{}.mp4", record.clip.clip_id));
        let clip = &record.clip;
        match self.parts.storage.get(&uri, &dest).await {
            Ok(()) => {
                info!(camera = %clip.camera, clip_id = %clip.clip_id, stage = "fetch", uri = %uri, path = %dest.display(), "recording gone from the box; fetched the clip back from the storage");
                record.clip.local_path = dest.display().to_string();
                Ok(Some((record, Some(Fetched(dest)))))
            }
            Err(e) => {
                error!(camera = %clip.camera, clip_id = %clip.clip_id, stage = "fetch", uri = %uri, error = %crate::telemetry::chain(&e), "recording gone from the box and the clip cannot be fetched back from the storage; it resumes on next start");
                Ok(None)
            }
        }
    }

    /// Stores the analysis as JSON next to the uploaded clip and keeps its
    /// URI on the record. A storage failure is logged: the analysis stays in
    /// the record, and the background upload retry stores it later.
    pub(super) async fn store_analysis(&self, clip: &Clip, analysis: &AnalysisResult) -> Result<(), StoreError> {
        let doc = serde_json::json!({
            "clip_id": clip.clip_id,
            "camera_name": clip.camera,
            "analysis": analysis,
        });
        match self.parts.storage.put_json(clip, "analysis", &doc).await {
            Ok(obj) => {
                info!(camera = %clip.camera, clip_id = %clip.clip_id, stage = "vlm", uri = %obj.storage_uri, "analysis stored next to the clip");
                let uri = obj.storage_uri;
                self.commit(clip, vec![], move |r| r.analysis_uri = Some(uri)).await?;
            }
            Err(e) => {
                warn!(camera = %clip.camera, clip_id = %clip.clip_id, stage = "vlm", error = %crate::telemetry::chain(&e), "cannot store the analysis next to the clip; retried with the background uploads");
            }
        }
        Ok(())
    }
}

/// What a request to analyse a clip again came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reanalysis {
    /// Queued: filter, VLM, policy and notify run again (`fetch`: from a copy
    /// fetched back from the storage, the recording being gone).
    Queued {
        fetch: bool,
    },
    NotFound,
    /// The clip is being processed now.
    InFlight,
    /// The recording is gone and the clip was never uploaded.
    NothingToAnalyse,
    /// Quarantined clips go back through `cleanup --recheck-quarantine`.
    Quarantined,
}

impl Pipeline {
    /// Runs a finished clip through filter, VLM, policy and notify again (the
    /// upload stays as it is): its results are reset in one transaction with a
    /// `requeued` event, then the clip is processed like any other, from its
    /// recording or, when that is gone, from a copy fetched back from the storage.
    pub async fn reanalyze(self: &std::sync::Arc<Self>, id: &crate::domain::ClipId) -> Result<Reanalysis, StoreError> {
        if self.in_flight.lock().map(|s| s.contains(id)).unwrap_or(true) {
            return Ok(Reanalysis::InFlight);
        }
        let key = id.0.clone();
        let Some(record) = self.parts.store.run(move |s| s.get_clip(&key)).await? else {
            return Ok(Reanalysis::NotFound);
        };
        if record.quarantine.is_some() {
            return Ok(Reanalysis::Quarantined);
        }
        let on_disk = tokio::fs::try_exists(&record.clip.local_path).await.unwrap_or(false);
        if !on_disk && record.storage_uri.is_none() {
            return Ok(Reanalysis::NothingToAnalyse);
        }
        let reason = if on_disk {
            "re-analysis requested".to_owned()
        } else {
            "re-analysis requested (the clip is fetched back from the storage)".to_owned()
        };
        self.commit(&record.clip, vec![crate::domain::EventKind::Requeued { reason }], |r| {
            r.filter = Default::default();
            r.vlm = Default::default();
            r.notify = Default::default();
            r.filter_result = None;
            r.analysis = None;
            r.analysis_uri = None;
            r.decision = None;
            r.completed_ms = None;
        })
        .await?;
        info!(camera = %record.clip.camera, clip_id = %id, fetch = !on_disk, "clip queued for re-analysis");
        self.spawn_clip(id.clone());
        Ok(Reanalysis::Queued { fetch: !on_disk })
    }
}
