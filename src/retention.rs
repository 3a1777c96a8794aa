//! Local disk quota: when clip files take more than `retention.max_local_size_bytes`,
//! delete the oldest clips that are uploaded and done (never one that is not).

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::{Clock, SharedClock};
use crate::domain::{ClipRecord, ClipStatus, EventKind, StageStatus};
use crate::store::{Store, StoreError};

/// What one pass did.
#[derive(Debug, Default, PartialEq)]
pub struct Pruned {
    pub clips: usize,
    pub bytes: u64,
    /// Bytes still used after the pass.
    pub remaining: u64,
}

fn file_size(path: &str) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// What a clip keeps on disk: its file, its snapshot and the live frames kept for the VLM.
fn clip_bytes(r: &ClipRecord) -> u64 {
    let frames = std::fs::read_dir(crate::fsutil::frames_dir(std::path::Path::new(&r.clip.local_path)))
        .map(|d| d.filter_map(Result::ok).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0);
    file_size(&r.clip.local_path) + r.snapshot_path.as_deref().map_or(0, file_size) + frames
}

fn prunable(r: &ClipRecord) -> bool {
    r.pruned_ms.is_none() && r.upload.status == StageStatus::Ok && r.status() == ClipStatus::Done
}

/// One pass: deletes the oldest prunable clip files until usage is at most
/// `max_bytes`, dating each deletion by `clock`.
pub fn enforce(store: &Store, clock: &dyn Clock, max_bytes: u64) -> Result<Pruned, StoreError> {
    let mut records: Vec<ClipRecord> = store.all_clips()?.into_iter().filter(|r| r.pruned_ms.is_none()).collect();
    let mut used: u64 = records.iter().map(clip_bytes).sum();
    let mut out = Pruned::default();
    records.sort_by_key(|r| r.clip.start_ms);
    for r in records.iter().filter(|r| prunable(r)) {
        if used <= max_bytes {
            break;
        }
        let bytes = clip_bytes(r);
        if let Err(e) = std::fs::remove_file(&r.clip.local_path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(clip_id = %r.clip.clip_id, path = %r.clip.local_path, error = %e, "retention cannot delete clip");
            continue;
        }
        if let Some(s) = &r.snapshot_path {
            let _ = std::fs::remove_file(s);
        }
        let _ = std::fs::remove_dir_all(crate::fsutil::frames_dir(std::path::Path::new(&r.clip.local_path)));
        let now = clock.now_ms();
        store.write(|w| {
            w.update_clip(r.clip.clip_id.as_str(), [EventKind::LocalFilePruned { bytes }], |rec| {
                rec.pruned_ms = Some(now);
            })
        })?;
        used = used.saturating_sub(bytes);
        out.clips += 1;
        out.bytes += bytes;
    }
    out.remaining = used;
    Ok(out)
}

/// Runs [`enforce`] every minute until shutdown.
pub async fn run(store: Store, clock: SharedClock, max_bytes: u64, shutdown: CancellationToken) {
    let mut warned = false;
    loop {
        let clock = clock.clone();
        match store.run(move |s| enforce(s, &*clock, max_bytes)).await {
            Ok(p) => {
                if p.clips > 0 {
                    info!(
                        clips = p.clips,
                        bytes = p.bytes,
                        remaining = p.remaining,
                        "retention deleted uploaded clips"
                    );
                }
                if p.remaining > max_bytes && !warned {
                    warn!(
                        used = p.remaining,
                        quota = max_bytes,
                        "over the local quota: the rest is not uploaded or not done yet"
                    );
                }
                warned = p.remaining > max_bytes;
            }
            Err(e) => warn!(error = %crate::telemetry::chain(&e), "retention pass failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use crate::domain::Clip;

    fn record(dir: &Path, id: &str, start: i64, bytes: usize, uploaded: bool) -> ClipRecord {
        let path = dir.join(format!("{id}.mp4"));
        std::fs::write(&path, vec![0u8; bytes]).unwrap();
        let mut r = ClipRecord::new(Clip {
            clip_id: id.into(),
            camera: "c".into(),
            local_path: path.display().to_string(),
            start_ms: start,
            end_ms: start,
            source_backend: "t".into(),
        });
        r.filter.status = StageStatus::Ok;
        r.upload.status = if uploaded { StageStatus::Ok } else { StageStatus::Error };
        r.completed_ms = Some(1);
        r
    }

    #[test]
    fn deletes_oldest_uploaded_clips_only_until_under_quota() {
        let dir = tempfile::tempdir().unwrap();
        let clock = crate::clock::SimulatedClock::starting_at(1_800_000_000_000);
        let store = Store::open_with_clock(&dir.path().join("s.redb"), clock.clone()).unwrap();
        let recs = [
            record(dir.path(), "a", 1, 100, false), // oldest, but not uploaded: kept
            record(dir.path(), "b", 2, 100, true),
            record(dir.path(), "c", 3, 100, true),
            record(dir.path(), "d", 4, 100, true),
        ];
        store.write(|w| recs.iter().try_for_each(|r| w.insert_clip(r).map(|_| ()))).unwrap();
        let p = enforce(&store, &*clock, 250).unwrap();
        assert_eq!((p.clips, p.bytes, p.remaining), (2, 200, 200));
        assert!(dir.path().join("a.mp4").exists(), "a clip that is not uploaded is never deleted");
        assert!(!dir.path().join("b.mp4").exists() && !dir.path().join("c.mp4").exists());
        assert!(dir.path().join("d.mp4").exists());
        assert_eq!(store.get_clip("b").unwrap().unwrap().pruned_ms, Some(1_800_000_000_000));
        assert_eq!(enforce(&store, &*clock, 250).unwrap().clips, 0, "a second pass has nothing to do");
    }

    #[test]
    fn the_live_frames_kept_for_the_vlm_count_and_go_with_their_clip() {
        let dir = tempfile::tempdir().unwrap();
        let clock = crate::clock::SimulatedClock::starting_at(1_800_000_000_000);
        let store = Store::open_with_clock(&dir.path().join("s.redb"), clock.clone()).unwrap();
        let recs = [record(dir.path(), "a", 1, 100, true), record(dir.path(), "b", 2, 100, true)];
        let frames = dir.path().join("a.frames");
        std::fs::create_dir(&frames).unwrap();
        std::fs::write(frames.join("frame_00_0.jpg"), vec![0u8; 50]).unwrap();
        store.write(|w| recs.iter().try_for_each(|r| w.insert_clip(r).map(|_| ()))).unwrap();
        let p = enforce(&store, &*clock, 200).unwrap();
        assert_eq!((p.clips, p.bytes, p.remaining), (1, 150, 100));
        assert!(!frames.exists(), "the frames went with their clip");
    }
}
