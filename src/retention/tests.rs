use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::{Clock, SimulatedClock};
use crate::domain::{Clip, ClipRecord, ClipStatus, Detection, EventKind, FilterResult, Quarantine, StageStatus};

const MB: u64 = 1_000_000;
const DAY: Duration = Duration::from_secs(86_400);

enum State {
    Done {
        uploaded: bool,
    },
    /// Finished with a stage in error (e.g. the VLM was down); uploaded.
    Failed,
    Quarantined,
    /// The pipeline still works on it.
    Running,
}

struct Rig {
    _dir: tempfile::TempDir,
    store: Store,
    clock: Arc<SimulatedClock>,
    places: Places,
}

impl Rig {
    /// `archive`: a local storage on the data partition (hard links of the recordings).
    fn new(archive: bool) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let clock = SimulatedClock::starting_at(1_800_000_000_000);
        let store = Store::open_with_clock(&dir.path().join("homesec.redb"), clock.clone()).unwrap();
        let layout = crate::fsutil::DataLayout::new(dir.path());
        layout.create_dirs().unwrap();
        let storage = layout.storage();
        let places = Places::new(&layout, archive.then_some(storage.as_path()));
        assert_eq!(places.archive.is_some(), archive);
        Rig { _dir: dir, store, clock, places }
    }

    fn cfg(&self, quota: u64) -> RetentionConfig {
        RetentionConfig { max_local_size_bytes: Some(quota), min_free_bytes: Some(0), ..RetentionConfig::default() }
    }

    fn recording(&self, id: &str) -> PathBuf {
        self.places.folders[0].join("cam").join(format!("{id}.mp4"))
    }

    /// A clip of `bytes` that started `age` ago, with a snapshot of 1000 bytes.
    fn clip(&self, id: &str, age: Duration, bytes: u64, state: State) {
        let path = self.recording(id);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, vec![0u8; bytes as usize]).unwrap();
        let snapshot = self.places.folders[1].join(format!("{id}.jpg"));
        std::fs::write(&snapshot, vec![0u8; 1000]).unwrap();
        let start = self.clock.now_ms() - age.as_millis() as i64;
        let mut r = ClipRecord::new(Clip {
            clip_id: id.into(),
            camera: "cam".into(),
            local_path: path.display().to_string(),
            start_ms: start,
            end_ms: start + 10_000,
            source_backend: "test".into(),
        });
        r.snapshot_path = Some(snapshot.display().to_string());
        r.filter.status = StageStatus::Ok;
        r.filter_result = Some(FilterResult {
            detected_classes: vec!["person".into()],
            alert_classes: vec!["person".into()],
            confidence: 0.9,
            model: "m".into(),
            sampled_frames: 1,
            detections: vec![Detection::new("person", 0.9, [0.0; 4], 1.0)],
        });
        let uploaded = !matches!(state, State::Done { uploaded: false });
        r.upload.status = if uploaded { StageStatus::Ok } else { StageStatus::Error };
        if uploaded && let Some(root) = &self.places.archive {
            let copy = root.join("cam").join(format!("{id}.mp4"));
            crate::fsutil::copy_durable(&path, &copy).unwrap();
            r.storage_uri = Some(format!("file://{}", copy.display()));
        }
        match state {
            State::Done { .. } => r.completed_ms = Some(self.clock.now_ms()),
            State::Failed => {
                r.vlm.status = StageStatus::Error;
                r.completed_ms = Some(self.clock.now_ms());
            }
            State::Quarantined => {
                r.quarantine = Some(Quarantine { reason: "bad".into(), moved_to: path.display().to_string() })
            }
            State::Running => {}
        }
        self.store.write(|w| w.insert_clip(&r)).unwrap();
    }

    fn pass(&self, cfg: &RetentionConfig) -> PassReport {
        pass(&self.store, &self.places, cfg, self.clock.now_ms()).unwrap()
    }

    fn used(&self) -> u64 {
        disk::measure(&self.places).unwrap().used
    }

    fn pruned(&self, id: &str) -> bool {
        self.store.get_clip(id).unwrap().unwrap().pruned.is_some()
    }
}

#[test]
fn with_a_local_archive_the_quota_bounds_recordings_and_archive_together() {
    // As reported: eight 2.1 MB clips, an 8 MB quota, every clip also in the local storage.
    let rig = Rig::new(true);
    for i in 0..8 {
        rig.clip(&format!("c{i}"), DAY - Duration::from_secs(i * 60), 2_100_000, State::Done { uploaded: true });
    }
    assert_eq!(rig.used(), 8 * 2_101_000, "hard links count once");
    let r = rig.pass(&rig.cfg(8 * MB));
    assert!(rig.used() <= 8 * MB, "{} bytes stay on disk", rig.used());
    assert_eq!(r.outcome.clips, 5);
    assert_eq!(r.outcome.bytes, 5 * 2_101_000);
    for i in 0..5 {
        assert!(rig.pruned(&format!("c{i}")), "oldest first");
        assert!(!rig.recording(&format!("c{i}")).exists());
        assert!(!rig.places.archive.as_ref().unwrap().join(format!("cam/c{i}.mp4")).exists(), "archive copy gone");
    }
    let p = rig.store.get_clip("c0").unwrap().unwrap().pruned.unwrap();
    assert_eq!((p.bytes, p.reason.as_str(), p.archive_left), (2_101_000, "over the quota (oldest first)", false));
    assert!(rig.recording("c5").exists());
    assert!(stuck_reason(&r.plan).is_none());
    assert_eq!(rig.pass(&rig.cfg(8 * MB)).outcome.clips, 0, "a second pass has nothing to do");
}

#[test]
fn with_a_remote_storage_a_clip_that_is_not_uploaded_stays_and_the_box_says_so() {
    let rig = Rig::new(false);
    rig.clip("old_not_uploaded", 3 * DAY, 2 * MB, State::Done { uploaded: false });
    rig.clip("uploaded", 2 * DAY, 2 * MB, State::Done { uploaded: true });
    rig.clip("running", DAY, 2 * MB, State::Running);
    let r = rig.pass(&rig.cfg(3 * MB));
    assert!(rig.pruned("uploaded") && !rig.pruned("old_not_uploaded") && !rig.pruned("running"));
    assert!(rig.recording("old_not_uploaded").exists() && rig.recording("running").exists());
    let why = stuck_reason(&r.plan).expect("over the quota with nothing more to delete");
    assert!(why.contains("4.0 MB used of a 3.0 MB quota"), "{why}");
    assert!(
        why.contains("1 clips (2.0 MB) not uploaded yet") && why.contains("1 clips (2.0 MB) still in the pipeline"),
        "{why}"
    );
}

#[test]
fn failed_clips_become_prunable_after_keep_failed_days() {
    let rig = Rig::new(false);
    rig.clip("failed", 2 * DAY, 2 * MB, State::Failed);
    rig.clip("quarantined", 2 * DAY, MB, State::Quarantined);
    rig.clip("newer", DAY, MB, State::Done { uploaded: true });
    let cfg = RetentionConfig { keep_failed_days: 3.0, ..rig.cfg(MB) };
    let r = rig.pass(&cfg);
    assert!(!rig.pruned("failed") && !rig.pruned("quarantined"));
    assert!(rig.pruned("newer"), "the newer, finished clip goes first");
    assert_eq!(r.plan.kept[plan::FAILED_RECENTLY], Kept { clips: 2, bytes: 3 * MB + 2000 });
    rig.clock.advance(3 * DAY);
    rig.pass(&cfg);
    assert!(rig.pruned("failed") && rig.pruned("quarantined"));
    assert_eq!(rig.store.get_clip("failed").unwrap().unwrap().status(), ClipStatus::Error, "the record stays");
}

#[test]
fn clips_past_max_age_go_even_within_the_quota() {
    let rig = Rig::new(true);
    rig.clip("old", 10 * DAY, MB, State::Done { uploaded: true });
    rig.clip("young", DAY, MB, State::Done { uploaded: true });
    let cfg = RetentionConfig { max_age_days: Some(7.0), ..rig.cfg(100 * MB) };
    let r = rig.pass(&cfg);
    assert_eq!(
        r.plan.deletions.iter().map(|d| (d.clip_id.as_str(), d.reason)).collect::<Vec<_>>(),
        [("old", Reason::MaxAge)]
    );
    assert!(!rig.pruned("young"));
}

#[test]
fn the_free_space_floor_is_restored_oldest_first() {
    let rig = Rig::new(false);
    for i in 0..4 {
        rig.clip(&format!("c{i}"), DAY - Duration::from_secs(i * 60), MB, State::Done { uploaded: true });
    }
    let budget = Budget { max_bytes: u64::MAX, min_free: 10 * MB, max_age_ms: None, keep_failed_ms: 0 };
    let usage = Usage { used: 4 * MB, free: 8 * MB, total: 100 * MB };
    let plan = plan::decide(&rig.store, &rig.places, &budget, rig.clock.now_ms(), usage).unwrap();
    let ids: Vec<_> = plan.deletions.iter().map(|d| (d.clip_id.as_str(), d.reason)).collect();
    assert_eq!(ids, [("c0", Reason::FreeFloor), ("c1", Reason::FreeFloor)]);
    assert!(!plan.stuck());
}

#[test]
fn records_of_pruned_clips_shrink_after_keep_records_days_and_go_after_keep_summaries_days() {
    let rig = Rig::new(false);
    rig.clip("a", DAY, 2 * MB, State::Done { uploaded: true });
    rig.clip("b", DAY / 2, MB, State::Done { uploaded: true });
    let cfg = RetentionConfig { keep_records_days: 10.0, keep_summaries_days: 100.0, ..rig.cfg(MB + 1000) };
    rig.store.write(|w| w.update_clip("a", [EventKind::ClipCompleted], |_| {})).unwrap();
    assert_eq!(rig.pass(&cfg).records_compacted, 0);
    let a = rig.store.get_clip("a").unwrap().unwrap();
    assert!(a.pruned.is_some() && a.compacted_ms.is_none());
    assert_eq!(rig.store.events_for("a").unwrap().len(), 3);

    rig.clock.advance(10 * DAY);
    let r = rig.pass(&cfg);
    assert_eq!((r.records_compacted, r.records_forgotten), (1, 0), "only the pruned clip shrinks");
    let a = rig.store.get_clip("a").unwrap().unwrap();
    assert!(a.compacted_ms.is_some());
    assert!(a.filter_result.as_ref().unwrap().detections.is_empty());
    assert!(a.snapshot_path.is_none() && a.clip.local_path.is_empty(), "no paths of deleted files");
    assert_eq!(a.filter_result.unwrap().detected_classes, ["person"], "the summary keeps the classes");
    let left = rig.store.events_for("a").unwrap();
    assert_eq!(left.len(), 1, "only the latest event stays, so numbering goes on");
    assert!(matches!(left[0].kind, EventKind::LocalFilePruned { .. }), "{left:?}");
    assert_eq!(rig.store.recent_clips(10).unwrap().len(), 2, "still listed");

    rig.clock.advance(90 * DAY);
    assert_eq!(rig.pass(&cfg).records_forgotten, 1);
    assert!(rig.store.get_clip("a").unwrap().is_none());
    assert_eq!(rig.store.recent_clips(10).unwrap().len(), 1);
    assert!(rig.store.get_clip("b").unwrap().is_some(), "a clip still on disk keeps its record");
}

#[test]
fn a_store_from_version_1_gives_up_the_archive_copies_it_left_behind() {
    let rig = Rig::new(true);
    rig.clip("a", DAY, MB, State::Done { uploaded: true });
    // Version 1 deleted the recording and the snapshot; the archive copy stayed.
    std::fs::remove_file(rig.recording("a")).unwrap();
    std::fs::remove_file(rig.places.folders[1].join("a.jpg")).unwrap();
    rig.store
        .write(|w| {
            w.update_clip("a", [], |r| {
                r.pruned = Some(crate::domain::Pruned {
                    at_ms: 1,
                    bytes: 0,
                    reason: "over the quota (oldest first)".into(),
                    archive_left: true,
                })
            })
        })
        .unwrap();
    assert_eq!(rig.used(), MB);
    let r = rig.pass(&rig.cfg(MB / 2));
    assert_eq!(r.outcome.bytes, MB);
    assert_eq!(rig.used(), 0);
    assert!(!rig.store.get_clip("a").unwrap().unwrap().has_files());
}

#[test]
fn the_default_budget_is_a_share_of_the_partition() {
    let b = RetentionConfig::default().budget(32_000_000_000);
    assert_eq!((b.max_bytes, b.min_free), (25_600_000_000, 1 << 30));
    let b = RetentionConfig::default().budget(4_000_000_000);
    assert_eq!(b.min_free, 200_000_000);
}
