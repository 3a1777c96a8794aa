//! Re-checking quarantined files (`homesec cleanup --recheck-quarantine`): a
//! file that reads now (a camera's file finished late, a newer build reads what
//! an older one could not) goes back into the recordings, and the pipeline
//! takes it again.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::domain::{ClipStatus, EventKind};
use crate::store::{ClipQuery, Store, StoreError};

/// What became of one quarantined clip.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recheck {
    pub clip_id: String,
    /// Back in the recordings, waiting for the pipeline.
    pub requeued: bool,
    pub detail: String,
}

/// Probes every quarantined file that is still on the box; with `apply`, moves
/// the ones that read into `recordings/<camera>/` and makes their record
/// unfinished again (the pipeline takes them).
pub fn recheck(store: &Store, recordings: &Path, apply: bool) -> Result<Vec<Recheck>, StoreError> {
    let mut out = Vec::new();
    let mut query = ClipQuery { status: Some(ClipStatus::Quarantined), limit: 256, ..ClipQuery::default() };
    loop {
        let page = store.clips(&query)?;
        for r in page.clips.iter().filter(|r| r.pruned.is_none()) {
            let Some(q) = &r.quarantine else { continue };
            let id = r.clip.clip_id.as_str();
            let file = Path::new(&q.moved_to);
            let result = match crate::media::probe(file) {
                Err(e) => Recheck {
                    clip_id: id.into(),
                    requeued: false,
                    detail: format!("still unreadable: {}", crate::telemetry::chain(&e)),
                },
                Ok(info) if !apply => Recheck {
                    clip_id: id.into(),
                    requeued: false,
                    detail: format!("reads now ({:.1} s of video): --yes puts it back", info.duration_s),
                },
                Ok(info) => {
                    let dest = recordings.join(r.clip.camera.as_str()).join(format!("{id}.mp4"));
                    if let Err(e) = crate::fsutil::move_durable(file, &dest) {
                        out.push(Recheck {
                            clip_id: id.into(),
                            requeued: false,
                            detail: format!("reads now, but cannot move it to {}: {e}", dest.display()),
                        });
                        continue;
                    }
                    let reason = format!("re-checked: reads now ({:.1} s of video)", info.duration_s);
                    store.write(|w| {
                        w.update_clip(id, [EventKind::Requeued { reason: reason.clone() }], |rec| {
                            rec.quarantine = None;
                            rec.completed_ms = None;
                            rec.clip.local_path = dest.display().to_string();
                        })
                    })?;
                    Recheck { clip_id: id.into(), requeued: true, detail: reason }
                }
            };
            out.push(result);
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(out),
        }
    }
}
