//! Work left undone: clip files that have no record (adopted on start) and
//! uploads that failed (retried in the background until they succeed).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::Pipeline;
use crate::domain::{Clip, ClipId, ClipRecord, EventKind, Stage, StageStatus};
use crate::store::{Set, StoreError};

impl Pipeline {
    /// Files `<recordings>/<camera>/<clip>.mp4` with no record (a crash between
    /// the rename and the commit) get a record now.
    pub(super) async fn adopt_orphans(&self, recordings_dir: &Path) -> Result<usize, StoreError> {
        let dir = recordings_dir.to_path_buf();
        let clock = self.parts.clock.clone();
        self.parts
            .store
            .run(move |store| {
                let mut adopted = 0;
                let Ok(cams) = std::fs::read_dir(&dir) else { return Ok(0) };
                for cam in cams.filter_map(Result::ok).filter(|e| e.path().is_dir()) {
                    let camera = cam.file_name().to_string_lossy().into_owned();
                    let Ok(files) = std::fs::read_dir(cam.path()) else { continue };
                    for f in files.filter_map(Result::ok) {
                        let path = f.path();
                        if path.extension().is_none_or(|e| e != "mp4") {
                            continue;
                        }
                        let Some(stem) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
                            continue;
                        };
                        if store.get_clip(&stem)?.is_some() {
                            continue;
                        }
                        let mtime = f
                            .metadata()
                            .and_then(|m| m.modified())
                            .map(|t| chrono::DateTime::<chrono::Utc>::from(t).timestamp_millis())
                            .unwrap_or_else(|_| clock.now_ms());
                        let clip = Clip {
                            clip_id: ClipId(stem),
                            camera: camera.as_str().into(),
                            local_path: path.display().to_string(),
                            start_ms: mtime,
                            end_ms: mtime,
                            source_backend: "recovered".into(),
                        };
                        if store.write(|w| w.insert_clip(&ClipRecord::new(clip)))? {
                            adopted += 1;
                        }
                    }
                }
                Ok(adopted)
            })
            .await
    }

    /// Background: uploads that failed are retried until they succeed.
    pub(super) async fn upload_retry_loop(self: Arc<Self>) {
        let every = Duration::from_secs(self.parts.retry.upload_retry_interval_s.max(1));
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let records = match self.parts.store.run(|s| s.set(Set::UploadRetry, None)).await {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %crate::telemetry::chain(&e), "upload retry: cannot read the store");
                    continue;
                }
            };
            for record in records {
                if self.shutdown.is_cancelled() {
                    return;
                }
                let clip = record.clip.clone();
                let Ok(_slot) = self.upload_slots.acquire().await else { return };
                match self.parts.storage.put(&clip, Path::new(&clip.local_path)).await {
                    Ok(obj) => {
                        info!(camera = %clip.camera, clip_id = %clip.clip_id, uri = %obj.storage_uri, "background upload succeeded");
                        let now = self.now();
                        let res = self
                            .commit(&clip, vec![EventKind::StageSucceeded { stage: Stage::Upload }], move |r| {
                                r.upload.status = StageStatus::Ok;
                                r.upload.attempts += 1;
                                r.upload.finished_ms = Some(now);
                                r.upload.last_error = None;
                                r.storage_uri = Some(obj.storage_uri);
                                r.view_url = obj.view_url;
                            })
                            .await;
                        if let Err(e) = res {
                            warn!(error = %crate::telemetry::chain(&e), "cannot record background upload");
                        } else if let Some(a) = record.analysis.as_ref().filter(|_| record.analysis_uri.is_none())
                            && let Err(e) = self.store_analysis(&clip, a).await
                        {
                            warn!(error = %crate::telemetry::chain(&e), "cannot record the stored analysis");
                        }
                    }
                    Err(e) => {
                        warn!(camera = %clip.camera, clip_id = %clip.clip_id, error = %crate::telemetry::chain(&e), "background upload failed again");
                    }
                }
            }
        }
    }
}
