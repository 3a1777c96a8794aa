//! Clips a crash left unfinished (`<clip_id>.mp4.part` with its journal):
//! recovered when the recorder starts and handed over like any other clip.

use std::path::{Path, PathBuf};

use tracing::{error, info, warn};

use super::{RecordedClip, Recorder, RecorderError};
use crate::domain::{Clip, ClipId};
use crate::media::mp4write;

const PART: &str = ".mp4.part";
const JOURNAL: &str = ".mp4.part.idx";

impl Recorder {
    /// Recovers every unfinished clip in the recordings directory from its
    /// journal and hands it to the [`ClipOutput`](super::ClipOutput) as a
    /// normal clip (unless the output has that clip id already: then the file
    /// is only completed). What cannot be recovered is removed and logged, and
    /// so are journals whose `.part` file is gone. Returns the number of clips
    /// recovered; on failures, goes on with the others and returns the first.
    pub fn recover_unfinished(&mut self) -> Result<usize, RecorderError> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Ok(0) };
        let names: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        let mut recovered = 0;
        let mut first_error = None;
        for part in names.iter().filter(|p| file_name(p).ends_with(PART)) {
            match self.recover_one(part) {
                Ok(true) => recovered += 1,
                Ok(false) => {}
                Err(e) => {
                    error!(camera = %self.camera, file = %part.display(), error = %crate::telemetry::chain(&e), "cannot recover an unfinished clip");
                    first_error.get_or_insert(e);
                }
            }
        }
        for journal in names.iter().filter(|p| file_name(p).ends_with(JOURNAL)) {
            let name = file_name(journal);
            let part = journal.with_file_name(&name[..name.len() - ".idx".len()]);
            if !part.exists() {
                warn!(camera = %self.camera, file = %journal.display(), "removing the journal of a clip that was finished or removed");
                let _ = std::fs::remove_file(journal);
            }
        }
        first_error.map_or(Ok(recovered), Err)
    }

    fn recover_one(&mut self, part: &Path) -> Result<bool, RecorderError> {
        let name = file_name(part);
        let clip_id = ClipId(name[..name.len() - PART.len()].to_owned());
        let taken = self.output.is_taken(clip_id.as_str())?;
        let written_ms = modified_ms(part);
        let Some(r) = mp4write::recover(part)? else { return Ok(false) };
        let s = &r.summary;
        let duration_ms = (s.duration_s * 1000.0).round() as i64;
        let start_ms = r.start_wall_ms.unwrap_or(written_ms - duration_ms);
        info!(
            camera = %self.camera,
            clip_id = %clip_id,
            duration_s = s.duration_s,
            samples = s.samples,
            dropped_samples = r.dropped_samples,
            bytes = s.bytes,
            "recovered an unfinished clip after a crash"
        );
        if taken {
            info!(camera = %self.camera, clip_id = %clip_id, "the recovered clip is recorded already; its file is in place");
            return Ok(true);
        }
        let clip = Clip {
            clip_id,
            camera: self.camera.clone(),
            local_path: s.path.display().to_string(),
            start_ms,
            end_ms: start_ms + duration_ms,
            source_backend: self.backend.into(),
        };
        if self.keep_recorded {
            self.recorded.push(RecordedClip { clip: clip.clone(), samples: s.samples, duration_s: s.duration_s });
        }
        self.output.submit(clip, None)?;
        Ok(true)
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// When the file was last written (unix ms), or now when unknown.
fn modified_ms(p: &Path) -> i64 {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .map(|t| chrono::DateTime::<chrono::Utc>::from(t).timestamp_millis())
        .unwrap_or_else(|_| chrono::Utc::now().timestamp_millis())
}
