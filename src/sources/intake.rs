//! Taking a finished clip file that arrived from outside (watched folder, FTP):
//! probe it, move it into the camera's recordings, record it and hand it to the
//! pipeline; a file that cannot be read is quarantined, never deleted. One way of
//! doing this for every file source.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tracing::{error, info, warn};

use super::SourceError;
use crate::domain::{CameraName, Clip, ClipId, clip_id_for_file, with_suffix};
use crate::pipeline::ClipSink;

/// Where one camera's arriving files go.
#[derive(Debug, Clone)]
pub struct Intake {
    camera: CameraName,
    recordings: PathBuf,
    quarantine: PathBuf,
    /// `source_backend` of the clips (`folder`, `ftp`).
    backend: &'static str,
}

/// What became of a file.
#[derive(Debug, Clone, PartialEq)]
pub enum Taken {
    /// A clip, handed to the pipeline.
    Clip(ClipId),
    /// Unreadable: moved here and recorded as quarantined.
    Quarantined(ClipId, PathBuf),
}

impl Taken {
    pub fn clip_id(&self) -> &ClipId {
        match self {
            Taken::Clip(id) | Taken::Quarantined(id, _) => id,
        }
    }
}

impl Intake {
    pub fn new(camera: CameraName, layout: &crate::fsutil::DataLayout, backend: &'static str) -> Self {
        Self {
            recordings: layout.camera_recordings(camera.as_str()),
            quarantine: layout.quarantine().join(camera.as_str()),
            camera,
            backend,
        }
    }

    pub fn camera(&self) -> &CameraName {
        &self.camera
    }

    /// Takes one complete file (it ended at `mtime`): the clip's record is
    /// committed before the pipeline gets it (`ClipSink::submit`).
    pub async fn take(&self, sink: &ClipSink, path: &Path, mtime: SystemTime) -> Result<Taken, SourceError> {
        let name = path.display().to_string();
        let probe_path = path.to_path_buf();
        let probe = tokio::task::spawn_blocking(move || crate::media::probe(&probe_path))
            .await
            .map_err(|e| SourceError::Io { path: name.clone(), source: std::io::Error::other(e) })?;
        let end_ms = chrono::DateTime::<chrono::Utc>::from(mtime).timestamp_millis();
        let duration_ms = probe.as_ref().map(|i| (i.duration_s * 1000.0) as i64).unwrap_or(0);
        let start_ms = end_ms - duration_ms;
        let stem = path.file_stem().and_then(|s| s.to_str());
        let clip_id = self.unique_id(sink, &clip_id_for_file(&self.camera, stem, start_ms)).await?;
        let mut clip = Clip {
            clip_id: clip_id.clone(),
            camera: self.camera.clone(),
            local_path: String::new(),
            start_ms,
            end_ms,
            source_backend: self.backend.into(),
        };
        match probe {
            Err(e) => {
                let reason = crate::telemetry::chain(&e);
                let dest = unique_path(self.quarantine.join(path.file_name().unwrap_or_default()));
                error!(camera = %self.camera, clip_id = %clip_id, file = %name, moved_to = %dest.display(), %reason, "unreadable clip quarantined");
                move_file(path, &dest).await?;
                sink.quarantined(clip, reason, dest.clone()).await?;
                Ok(Taken::Quarantined(clip_id, dest))
            }
            Ok(info) => {
                let dest = self.recordings.join(format!("{clip_id}.mp4"));
                move_file(path, &dest).await?;
                clip.local_path = dest.display().to_string();
                info!(camera = %self.camera, clip_id = %clip_id, file = %name, duration_s = info.duration_s, source = self.backend, "new clip");
                sink.submit(clip).await?;
                Ok(Taken::Clip(clip_id))
            }
        }
    }

    /// `base`, or `base_2`, `base_3`, … when a clip (or a recording) has it already.
    async fn unique_id(&self, sink: &ClipSink, base: &str) -> Result<ClipId, SourceError> {
        let base = base.to_owned();
        let recordings = self.recordings.clone();
        let id = sink
            .store()
            .clone()
            .run(move |s| {
                let mut n = 1;
                loop {
                    let id = with_suffix(&base, n);
                    if s.get_clip(id.as_str())?.is_none() && !recordings.join(format!("{id}.mp4")).exists() {
                        return Ok(id);
                    }
                    n += 1;
                }
            })
            .await?;
        Ok(id)
    }
}

/// `dest`, or `dest` with `-2`, `-3`, … before the extension when it exists.
fn unique_path(dest: PathBuf) -> PathBuf {
    if !dest.exists() {
        return dest;
    }
    let stem = dest.file_stem().unwrap_or_default().to_string_lossy().into_owned();
    let ext = dest.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    (2..).map(|n| dest.with_file_name(format!("{stem}-{n}{ext}"))).find(|p| !p.exists()).unwrap_or(dest)
}

async fn move_file(src: &Path, dest: &Path) -> Result<(), SourceError> {
    let (s, d) = (src.to_path_buf(), dest.to_path_buf());
    let removed = tokio::task::spawn_blocking(move || {
        // The bytes reach the disk before the record says the clip is here
        // (what arrived by FTP or a share may still be only in the page cache).
        if let Err(e) = std::fs::File::open(&s).and_then(|f| f.sync_all()) {
            warn!(file = %s.display(), error = %e, "cannot flush the file to disk before taking it");
        }
        crate::fsutil::move_durable(&s, &d)
    })
    .await
    .map_err(|e| SourceError::Io { path: src.display().to_string(), source: std::io::Error::other(e) })?
    .map_err(|source| SourceError::Io { path: format!("{} -> {}", src.display(), dest.display()), source })?;
    if !removed {
        warn!(file = %src.display(), "copied, but cannot remove it from where it arrived; it will not be taken again");
    }
    Ok(())
}
