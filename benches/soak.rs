//! Soak benchmark: a box with a long history. A simulated clock drives 20,000
//! clips through the store writes the pipeline makes for them, small real files
//! on the data partition and the retention passes that bound both; at 1k, 10k
//! and 20k clips it prints the store's file size, the process's RSS, and how long
//! a listing page, start-up recovery and a retention pass take. Not a timed test:
//! it prints figures and the goals they are held to, and fails only when it
//! cannot run.
//!
//! `cargo bench --bench soak` (release; `make bench-soak`), about 3 minutes.
//! `HOMESEC_SOAK_CLIPS` makes a shorter or longer run (checkpoints past it are
//! skipped and its last clip is one); `HOMESEC_SOAK_DIR` puts the data directory
//! on a given file system (e.g. a box's SD card) instead of the temp dir.
//!
//! The box: four cameras, each recording a clip (20-60 s) every 5-33 minutes of
//! simulated time, about 290 clips a day in all. Three are live cameras (objects
//! detected while recording, early alerts); the fourth drops its clips into a
//! watched folder (filter run by the pipeline, the folder source's manifest,
//! unreadable files quarantined). Storage is `local` on the data partition, so
//! the archive is hard links of the recordings and the quota bounds it; the VLM
//! runs on clips with a person (`run_mode: trigger_only`); the alert policy is
//! the default one; one notifier. Per clip, the store sees the transactions the
//! pipeline commits for it (`pipeline/sink.rs`, `flow.rs`, `stage.rs`,
//! `outbox.rs`, `recovery.rs`), with the same events, and the reads it makes:
//! - live camera, person seen: the early alert (queued, then delivered); the
//!   clip with its live filter result; upload started / succeeded; VLM started /
//!   succeeded (analysis with a short timeline); the decision with the final
//!   alert queued; delivered;
//! - live camera, something else or nothing: the clip with its filter result;
//!   upload started / succeeded; VLM skipped; the decision (no alert);
//! - folder camera: the clip; the source's manifest entry; upload and filter
//!   started / succeeded (with the snapshot); then as above;
//! - now and then: a transient failure and its retry (upload, VLM, delivery), an
//!   upload that fails for good (retried by the background loop every 5 min), a
//!   VLM that fails for good (the clip ends in `error`), a filter that fails
//!   (`error`), an unreadable folder clip (`quarantined`).
//!
//! Files: a 20-50 kB recording, a snapshot for clips with detections, two VLM
//! frames for live clips with a person, the archive's hard link (made by
//! `fsutil::copy_durable`, as `storage::local` does). The clip files are written
//! without fsync (what they cost is the recorder's, see the camera benchmark);
//! the store keeps its real durability (every transaction is committed to disk).
//!
//! Retention: a pass (`retention::pass`: plan, delete, compact the store) after
//! every clip that lands, as the daemon's landing-triggered passes; the quota
//! keeps about a day of clips, records of pruned clips shrink to a summary after
//! `keep_records_days` and are forgotten after `keep_summaries_days`, so the
//! store reaches its steady state within the run. The daemon's timer passes
//! (every `interval_s`) are not simulated; what an idle one costs is printed.
//!
//! At each checkpoint the daemon restarts with the checkpoint's clip in the
//! pipeline (landed, not processed), and the benchmark prints:
//! - records: clips in the store (files on the box / pruned, whole / summaries);
//! - redb file size, process RSS (`VmRSS` of `/proc/self/status`);
//! - list: `clips list`, a page of the 50 newest clips, median of 20 (and max);
//!   in the details also a camera's page, ten pages back, and a status page of
//!   a camera that has no clips (every record of that status read);
//! - recovery: what a start reads: the store dropped and opened again, the
//!   recordings checked for clips without a record, early alerts whose clip
//!   never came forgotten, the unfinished clips and the upload-retry set;
//! - power-loss: in a fresh process with the file out of the page cache, the
//!   open of a copy taken while the store was open (what a power loss leaves:
//!   redb repairs it); in the details the sets and first page after it, and the
//!   same start after a clean shutdown, with each process's RSS;
//! - pass: the landing-triggered retention pass of the checkpoint's clip;
//! - details: per window, wall time, the store's share, commits per clip and
//!   what they wrote (`wchar` of `/proc/self/io`) by kind of transaction, the
//!   passes (median, slowest and what it did), an idle pass in parts, redb's
//!   page accounting; at the end redb's tables, and every 2000 clips the record
//!   count, file size and RSS.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use homesec::clock::{Clock, SimulatedClock};
use homesec::config::RunMode;
use homesec::domain::{
    Alert, AlertStage, AnalysisResult, Clip, ClipRecord, Detection, EventKind, FilterResult, Quarantine, RiskLevel,
    Stage, StageStatus, TimelineEntry, rfc3339,
};
use homesec::fsutil::{self, DataLayout};
use homesec::pipeline::VlmGate;
use homesec::policy::AlertPolicy;
use homesec::policy::default::{DefaultPolicy, DefaultPolicyConfig};
use homesec::retention::{self, Places, RetentionConfig};
use homesec::store::{ClipQuery, EarlyAlert, OutboxEntry, Set, SourceFileEntry, Store, StoreError, Writer};
use redb::{MultimapTableHandle, ReadableDatabase, ReadableTableMetadata, TableHandle};

/// Clips in the run, unless `HOMESEC_SOAK_CLIPS` says.
const CLIPS: usize = 20_000;
const CHECKPOINTS: [usize; 3] = [1_000, 10_000, 20_000];
/// Live cameras, then the folder camera.
const CAMERAS: [&str; 4] = ["front_door", "driveway", "garden", "garage"];
const FOLDER_CAMERA: usize = 3;
/// Minutes between the end of a camera's clip and the start of its next.
const GAP_MIN: (f64, f64) = (5.0, 33.4);
/// Clip length in seconds.
const CLIP_S: (i64, i64) = (20, 60);
const RECORDING_BYTES: (usize, usize) = (20_000, 50_000);
const SNAPSHOT_BYTES: usize = 12_000;
const FRAME_BYTES: usize = 8_000;
/// The quota: about a day of clips.
const QUOTA_BYTES: u64 = 16_000_000;
const KEEP_RECORDS_DAYS: f64 = 7.0;
const KEEP_SUMMARIES_DAYS: f64 = 60.0;
/// `retry.max_attempts`, `retry.backoff_s` (doubling), `retry.upload_retry_interval_s`.
const MAX_ATTEMPTS: u32 = 3;
const BACKOFF_MS: i64 = 2_000;
const UPLOAD_RETRY_MS: i64 = 300_000;
const NOTIFY_TTL_MS: i64 = 86_400_000;
const NOTIFIER: &str = "mqtt";
/// Listing pages timed per checkpoint.
const LIST_RUNS: usize = 20;
/// Clips between two lines of the trend (records, file size, RSS).
const TREND_EVERY: usize = 2_000;
/// Where the data directory goes (a temp dir inside it), e.g. on the box's own
/// data partition; default: the system's temp dir.
const DIR_ENV: &str = "HOMESEC_SOAK_DIR";
/// Set in the child process that times a cold start: the store copy to open.
const COLD_ENV: &str = "HOMESEC_SOAK_COLD_START";
/// With [`COLD_ENV`]: the copy was closed cleanly.
const CLEAN_ENV: &str = "HOMESEC_SOAK_CLEAN";
const START_MS: i64 = 1_800_000_000_000;
const DAY_MS: f64 = 86_400_000.0;

/// How one clip goes (drawn per clip).
#[derive(Clone, Debug, Default)]
struct Fate {
    classes: Vec<&'static str>,
    /// Folder camera: the file cannot be read.
    quarantined: bool,
    /// Failed attempts before a stage succeeds; `MAX_ATTEMPTS` or more: it fails for good.
    upload_failures: u32,
    filter_failures: u32,
    vlm_failures: u32,
    /// The first delivery of the final alert fails.
    delivery_fails: bool,
}

/// A clip handed to the pipeline, not processed yet.
struct InFlight {
    clip: Clip,
    fate: Fate,
    /// A live camera's filter result.
    live: Option<FilterResult>,
}

/// What a stretch of the run cost.
#[derive(Default)]
struct Window {
    clips: usize,
    wall: Duration,
    /// Time in the store calls the pipeline's part makes (commits and reads).
    store: Duration,
    commits: u64,
    /// Bytes the store wrote for those commits, and for the retention passes.
    store_bytes: u64,
    pass_bytes: u64,
    files: Duration,
    passes: Vec<f64>,
    /// Commits by kind: how many, bytes written, time.
    kinds: BTreeMap<&'static str, (u64, u64, Duration)>,
    /// The slowest pass: ms, clips pruned, records compacted, records forgotten.
    slowest: (f64, usize, usize, usize),
    pruned: usize,
    compacted: usize,
    forgotten: usize,
}

/// One checkpoint's figures.
struct Row {
    clips: usize,
    days: f64,
    on_disk: u64,
    pruned: u64,
    summaries: u64,
    file_mb: f64,
    rss_mb: f64,
    list_ms: f64,
    list_max_ms: f64,
    recovery: Recovery,
    cold: Cold,
    /// Medians (ms): a camera's page, the same page further back (cursor), and a
    /// status page of a camera that has none (the status index read whole).
    list_camera_ms: f64,
    list_deep_ms: f64,
    list_mixed_ms: f64,
    pass_ms: f64,
    window: Window,
    db: Option<DbStats>,
    idle_pass: IdlePass,
    /// Average bytes of a whole record of a pruned clip and of a summary, and of their paths.
    whole: (f64, f64, usize),
    summary: (f64, f64, usize),
}

/// A start's reads, each timed (ms).
#[derive(Default, Clone, Copy)]
struct Recovery {
    open: f64,
    orphans: f64,
    early: f64,
    unfinished: f64,
    upload_retry: f64,
    unfinished_n: usize,
    upload_retry_n: usize,
}

impl Recovery {
    fn total(&self) -> f64 {
        self.open + self.orphans + self.early + self.unfinished + self.upload_retry
    }
}

/// A start with the store out of the page cache (ms).
#[derive(Default, Clone, Copy)]
struct Cold {
    /// Open after a power loss (redb repairs the file).
    open: f64,
    /// Then the unfinished clips and the upload-retry set.
    sets: f64,
    /// Then the first listing page.
    list: f64,
    /// The fresh process's RSS after the open, the sets and the page (MB).
    rss_mb: f64,
    /// A process of its own after a clean shutdown: open + sets + page (ms), and its RSS (MB).
    clean_open: f64,
    clean_rss_mb: f64,
}

/// A timer pass with nothing to do, its parts timed (ms).
#[derive(Default, Clone, Copy)]
struct IdlePass {
    plan: f64,
    apply: f64,
    compact: f64,
    forget: f64,
    source_files: f64,
    /// Bytes the store wrote for it.
    bytes: u64,
}

/// What redb says of the file: pages, bytes, and each table.
struct DbStats {
    allocated_mb: f64,
    stored_mb: f64,
    metadata_mb: f64,
    fragmented_mb: f64,
    tables: Vec<(String, u64, f64, f64)>,
}

struct Sim {
    _dir: tempfile::TempDir,
    layout: DataLayout,
    places: Places,
    cfg: RetentionConfig,
    clock: Arc<SimulatedClock>,
    store: Option<Store>,
    policy: DefaultPolicy,
    gate: VlmGate,
    rng: fastrand::Rng,
    zeros: Vec<u8>,
    next_upload_retry_ms: i64,
    window: Window,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// `VmRSS` of this process, in MB.
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    kb.map_or(f64::NAN, |kb| kb * 1024.0 / 1e6)
}

/// Bytes this process has handed to `write` and its kin (`wchar` of `/proc/self/io`).
fn written() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("wchar:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Drops a file's pages from the page cache (as after a reboot).
fn evict(path: &Path) {
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.sync_all();
        let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed);
    }
}

impl Sim {
    fn new() -> Result<Sim, String> {
        let dir = match std::env::var_os(DIR_ENV) {
            Some(parent) => tempfile::tempdir_in(parent),
            None => tempfile::tempdir(),
        }
        .map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let layout = DataLayout::new(dir.path().join("data"));
        layout.create_dirs().map_err(|e| format!("cannot create the data dirs: {e}"))?;
        std::fs::create_dir_all(layout.quarantine()).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(layout.storage()).map_err(|e| e.to_string())?;
        let places = Places::new(&layout, Some(&layout.storage()));
        if places.archive.is_none() {
            return Err("the local storage is not on the data partition".into());
        }
        let cfg = RetentionConfig {
            max_local_size_bytes: Some(QUOTA_BYTES),
            min_free_bytes: Some(0),
            keep_records_days: KEEP_RECORDS_DAYS,
            keep_summaries_days: KEEP_SUMMARIES_DAYS,
            ..RetentionConfig::default()
        };
        let clock = SimulatedClock::starting_at(START_MS);
        let store = Store::open_with_clock(&layout.store(), clock.clone()).map_err(|e| format!("store: {e}"))?;
        Ok(Sim {
            _dir: dir,
            layout,
            places,
            cfg,
            clock,
            store: Some(store),
            policy: DefaultPolicy::new(DefaultPolicyConfig::default()),
            gate: VlmGate { run_mode: RunMode::TriggerOnly, trigger_classes: vec!["person".into()] },
            rng: fastrand::Rng::with_seed(9),
            zeros: vec![0u8; RECORDING_BYTES.1],
            next_upload_retry_ms: START_MS + UPLOAD_RETRY_MS,
            window: Window::default(),
        })
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("the store is open")
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Moves the clock to `t` (never back).
    fn at(&self, t: i64) {
        let now = self.now();
        if t > now {
            self.clock.advance(Duration::from_millis((t - now) as u64));
        }
    }

    fn later(&self, ms: i64) {
        self.at(self.now() + ms);
    }

    /// One write transaction, timed, counted and its bytes written summed, by kind.
    fn write<T>(&mut self, kind: &'static str, f: impl FnOnce(&mut Writer<'_>) -> Result<T, StoreError>) -> T {
        let before = written();
        let t = Instant::now();
        let out = self.store().write(f).expect("store write");
        let took = t.elapsed();
        let bytes = written() - before;
        self.window.store += took;
        self.window.commits += 1;
        self.window.store_bytes += bytes;
        let k = self.window.kinds.entry(kind).or_default();
        k.0 += 1;
        k.1 += bytes;
        k.2 += took;
        out
    }

    /// One read, timed.
    fn read<T>(&mut self, f: impl FnOnce(&Store) -> Result<T, StoreError>) -> T {
        let t = Instant::now();
        let out = f(self.store()).expect("store read");
        self.window.store += t.elapsed();
        out
    }

    fn file(&mut self, path: &Path, bytes: usize) {
        let t = Instant::now();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create a clip folder");
        }
        std::fs::write(path, &self.zeros[..bytes]).expect("write a clip file");
        self.window.files += t.elapsed();
    }

    fn draw(&mut self, camera: usize) -> Fate {
        let r = &mut self.rng;
        let classes: Vec<&'static str> = match r.f64() {
            x if x < 0.40 => {
                if r.bool() {
                    vec!["person"]
                } else {
                    vec!["person", "car"]
                }
            }
            x if x < 0.55 => vec!["car"],
            x if x < 0.65 => vec!["cat"],
            x if x < 0.70 => vec!["dog"],
            _ => Vec::new(),
        };
        let failures = |r: &mut fastrand::Rng, transient: f64, for_good: f64| match r.f64() {
            x if x < for_good => MAX_ATTEMPTS,
            x if x < for_good + transient => 1,
            _ => 0,
        };
        let folder = camera == FOLDER_CAMERA;
        Fate {
            classes,
            quarantined: folder && r.f64() < 0.02,
            upload_failures: failures(r, 0.01, 0.02),
            filter_failures: if folder { failures(r, 0.01, 0.01) } else { 0 },
            vlm_failures: failures(r, 0.03, 0.02),
            delivery_fails: r.f64() < 0.02,
        }
    }

    fn filter_result(&mut self, classes: &[&str]) -> FilterResult {
        let detections: Vec<Detection> = classes
            .iter()
            .map(|c| {
                Detection::new(*c, 0.6 + self.rng.f32() * 0.35, [120.0, 80.0, 260.0, 400.0], self.rng.f32() * 20.0)
            })
            .collect();
        let confidence = detections.iter().map(|d| d.confidence).fold(0.0, f32::max);
        FilterResult {
            detected_classes: classes.iter().map(|c| (*c).to_owned()).collect(),
            alert_classes: classes.iter().map(|c| (*c).to_owned()).collect(),
            confidence,
            model: "yolox_nano_416".into(),
            sampled_frames: 20 + self.rng.u32(0..40),
            detections,
        }
    }

    fn analysis(&mut self) -> AnalysisResult {
        let (risk, activity, summary) = match self.rng.u32(0..10) {
            0..=5 => (RiskLevel::Low, "passerby", "A person walks along the pavement past the gate and out of view."),
            6..=8 => (
                RiskLevel::Medium,
                "delivery",
                "A courier walks up to the front door, leaves a parcel on the step and goes back to the van.",
            ),
            _ => (
                RiskLevel::High,
                "suspicious",
                "A person in a hood tries the handle of the side door, looks around and walks off quickly.",
            ),
        };
        let timeline = [
            (1.5, "person", "enters the frame from the left, walking towards the door"),
            (6.0, "person", "stops at the door and looks at the house"),
            (14.5, "person", "turns round and leaves the way they came"),
        ];
        AnalysisResult {
            risk_level: risk,
            activity_type: activity.into(),
            summary: summary.into(),
            entities_timeline: timeline
                .iter()
                .map(|(ts, e, d)| TimelineEntry { ts_s: *ts, entity: (*e).into(), description: (*d).into() })
                .collect(),
            requires_review: risk == RiskLevel::High,
            model: "qwen2.5-vl-7b-instruct".into(),
        }
    }

    fn outbox_entry(&self, alert: Alert) -> OutboxEntry {
        let now = self.now();
        OutboxEntry {
            clip_id: alert.clip_id.clone(),
            notifier: NOTIFIER.into(),
            alert,
            created_ms: now,
            attempts: 0,
            next_attempt_ms: now,
            expires_ms: now + NOTIFY_TTL_MS,
            last_error: None,
        }
    }

    /// `run_stage`: each attempt journaled (started, then failed and retried or
    /// not); true when an attempt succeeds (its result is the caller's commit).
    fn run_stage(&mut self, id: &str, stage: Stage, failures: u32, work_ms: i64) -> bool {
        loop {
            let now = self.now();
            let attempt = self.write("stage started", |w| {
                let attempt = w.clip(id)?.stage(stage).attempts + 1;
                w.update_clip(id, [EventKind::StageStarted { stage, attempt }], |r| {
                    let log = r.stage_mut(stage);
                    log.status = StageStatus::Running;
                    log.attempts = attempt;
                    log.started_ms.get_or_insert(now);
                })?;
                Ok(attempt)
            });
            self.later(work_ms);
            if attempt > failures {
                return true;
            }
            let will_retry = attempt < MAX_ATTEMPTS;
            let error = match stage {
                Stage::Upload => "cannot copy the clip into the archive: Input/output error (os error 5)",
                Stage::Filter => "cannot decode the clip: truncated H.264 access unit at 12.4 s",
                Stage::Vlm => "VLM request failed: HTTP 503 Service Unavailable: model is loading",
                Stage::Notify => "broker unreachable",
            }
            .to_owned();
            let now = self.now();
            self.write("stage failed", |w| {
                w.update_clip(
                    id,
                    [EventKind::StageFailed { stage, attempt, error: error.clone(), will_retry }],
                    move |r| {
                        let log = r.stage_mut(stage);
                        log.last_error = Some(error);
                        if will_retry {
                            log.status = StageStatus::Pending;
                        } else {
                            log.status = StageStatus::Error;
                            log.finished_ms = Some(now);
                        }
                    },
                )
            });
            if !will_retry {
                return false;
            }
            self.later(BACKOFF_MS << (attempt - 1));
        }
    }

    /// The archive copy (a hard link) and its `file://` URI.
    fn archive(&mut self, clip: &Clip) -> String {
        let dest = self.layout.storage().join(clip.camera.as_str()).join(format!("{}.mp4", clip.clip_id));
        let t = Instant::now();
        fsutil::copy_durable(Path::new(&clip.local_path), &dest).expect("archive copy");
        self.window.files += t.elapsed();
        format!("file://{}", dest.display())
    }

    fn upload_stage(&mut self, clip: &Clip, failures: u32) -> Option<String> {
        let id = clip.clip_id.as_str();
        if !self.run_stage(id, Stage::Upload, failures, 150) {
            return None;
        }
        let uri = self.archive(clip);
        let (now, stored) = (self.now(), uri.clone());
        self.write("stage succeeded", |w| {
            w.update_clip(id, [EventKind::StageSucceeded { stage: Stage::Upload }], move |r| {
                r.upload.status = StageStatus::Ok;
                r.upload.finished_ms = Some(now);
                r.upload.last_error = None;
                r.storage_uri = Some(stored);
                r.view_url = None;
            })
        });
        Some(uri)
    }

    /// One clip recorded and handed to the pipeline, and the retention pass its
    /// landing triggers; what the pipeline has still to do for it is returned.
    fn clip(&mut self, camera: usize, start: i64, len_ms: i64) -> Option<InFlight> {
        let name = CAMERAS[camera];
        let id = format!("{name}_{}", start / 1000);
        let fate = self.draw(camera);
        let recording = self.layout.camera_recordings(name).join(format!("{id}.mp4"));
        let clip = Clip {
            clip_id: id.as_str().into(),
            camera: name.into(),
            local_path: recording.display().to_string(),
            start_ms: start,
            end_ms: start + len_ms,
            source_backend: if camera == FOLDER_CAMERA { "folder" } else { "rtsp" }.into(),
        };
        let bytes = self.rng.usize(RECORDING_BYTES.0..=RECORDING_BYTES.1);
        let person = fate.classes.contains(&"person");
        let snapshot = self.layout.snapshots().join(format!("{id}.jpg"));

        if camera == FOLDER_CAMERA {
            self.at(start + len_ms + 2_000);
            let key = format!("{name}/{}.mp4", start / 1000);
            if fate.quarantined {
                // `sink.quarantined`: the file moved aside, a record that says why.
                let moved_to = self.layout.quarantine().join(format!("{id}.mp4"));
                self.file(&moved_to, bytes);
                let reason = "cannot read the MP4: no moov box".to_owned();
                let mut record = ClipRecord::new(clip.clone());
                record.clip.local_path = moved_to.display().to_string();
                record.quarantine =
                    Some(Quarantine { reason: reason.clone(), moved_to: moved_to.display().to_string() });
                self.write("clip quarantined", |w| {
                    if w.insert_clip(&record)? {
                        w.update_clip(&id, [EventKind::Quarantined { reason }], |_| {})?;
                    }
                    Ok(())
                });
                self.source_file(&key, &id, bytes);
                return None;
            }
            self.file(&recording, bytes);
            self.write("clip recorded (folder)", |w| w.insert_clip(&ClipRecord::new(clip.clone())));
            self.source_file(&key, &id, bytes);
            self.pass();
            return Some(InFlight { clip, fate, live: None });
        }

        // A live camera: objects seen while recording.
        let live = self.filter_result(&fate.classes);
        if person {
            // `sink.sighting`: the snapshot, then the early alert queued.
            self.at(start + 4_000);
            self.file(&snapshot, SNAPSHOT_BYTES);
            let now = self.now();
            let alert = Alert {
                clip_id: clip.clip_id.clone(),
                camera_name: clip.camera.clone(),
                storage_uri: None,
                view_url: None,
                risk_level: None,
                activity_type: None,
                notify_reason: "detected=person (early)".into(),
                summary: None,
                ts: rfc3339(now),
                dedupe_key: id.clone(),
                upload_failed: false,
                detected_classes: live.detected_classes.clone(),
                stage: AlertStage::Detected,
                occurrences: 1,
                occurrences_text: None,
                snapshot_path: Some(snapshot.display().to_string()),
            };
            let entry = self.outbox_entry(alert);
            let early =
                EarlyAlert { camera: clip.camera.clone(), sent_ms: now, reason: entry.alert.notify_reason.clone() };
            let key = id.clone();
            let _ = self.read(|s| s.early_alert(&key));
            self.write("early alert queued", |w| {
                if w.early_alert(&id)?.is_some() {
                    return Ok(false);
                }
                w.put_early_alert(&id, &early)?;
                w.enqueue_notification(&entry)?;
                Ok(true)
            });
            self.later(150);
            self.deliver();
        }
        self.at(start + len_ms + 500);
        self.file(&recording, bytes);
        if !fate.classes.is_empty() && !person {
            self.file(&snapshot, SNAPSHOT_BYTES);
        }
        if person {
            let frames = fsutil::frames_dir(&recording);
            for (i, ts) in [(0, 4_000), (1, 9_000)] {
                self.file(&frames.join(format!("frame_{i:02}_{ts}.jpg")), FRAME_BYTES);
            }
        }
        // `sink.submit_detected`: the record and its filter stage in one transaction.
        let (now, snap) = (self.now(), (!fate.classes.is_empty()).then(|| snapshot.display().to_string()));
        let (record, result) = (ClipRecord::new(clip.clone()), live.clone());
        self.write("clip recorded with its live filter", |w| {
            if !w.insert_clip(&record)? {
                return Ok(false);
            }
            w.update_clip(&id, [EventKind::StageSucceeded { stage: Stage::Filter }], |r| {
                r.filter.status = StageStatus::Ok;
                r.filter.attempts = 1;
                r.filter.started_ms = Some(now);
                r.filter.finished_ms = Some(now);
                r.filter_result = Some(result);
                r.snapshot_path = snap;
            })?;
            Ok(true)
        });
        self.pass();
        Some(InFlight { clip, fate, live: Some(live) })
    }

    /// The folder source remembers the file it took.
    fn source_file(&mut self, key: &str, id: &str, bytes: usize) {
        let entry = SourceFileEntry { clip_id: id.into(), size: bytes as u64, seen_ms: self.now() };
        self.write("source file", |w| w.put_source_file(key, &entry));
    }

    /// `Pipeline::process`: upload ‖ filter → VLM → policy → notify.
    fn process(&mut self, InFlight { clip, fate, live }: InFlight) {
        let (clip, fate) = (&clip, &fate);
        let id = clip.clip_id.as_str();
        let key = id.to_owned();
        let record = self.read(|s| s.get_clip(&key)).expect("the clip's record");
        if !record.needs_processing() {
            return;
        }
        self.later(100);
        let uploaded = self.upload_stage(clip, fate.upload_failures);
        let filter = match live {
            Some(f) => f,
            None => {
                if !self.run_stage(id, Stage::Filter, fate.filter_failures, 1_500) {
                    // The filter failed: the clip ends in error.
                    let now = self.now();
                    self.write("clip completed", |w| {
                        w.update_clip(id, [EventKind::ClipCompleted], move |r| {
                            r.completed_ms = Some(now);
                        })
                    });
                    return;
                }
                let result = self.filter_result(&fate.classes);
                let snap = (!fate.classes.is_empty()).then(|| self.layout.snapshots().join(format!("{id}.jpg")));
                if let Some(p) = &snap {
                    self.file(p, SNAPSHOT_BYTES);
                }
                let (now, fr) = (self.now(), result.clone());
                self.write("stage succeeded", |w| {
                    w.update_clip(id, [EventKind::StageSucceeded { stage: Stage::Filter }], move |r| {
                        r.filter.status = StageStatus::Ok;
                        r.filter.finished_ms = Some(now);
                        r.filter.last_error = None;
                        r.filter_result = Some(fr);
                        r.snapshot_path = snap.map(|p| p.display().to_string());
                    })
                });
                result
            }
        };

        let analysis = if self.gate.should_run(&filter) {
            if self.run_stage(id, Stage::Vlm, fate.vlm_failures, 3_000) {
                let a = self.analysis();
                let (now, stored) = (self.now(), a.clone());
                self.write("stage succeeded", |w| {
                    w.update_clip(id, [EventKind::StageSucceeded { stage: Stage::Vlm }], move |r| {
                        r.vlm.status = StageStatus::Ok;
                        r.vlm.finished_ms = Some(now);
                        r.vlm.last_error = None;
                        r.analysis = Some(stored);
                    })
                });
                Some(a)
            } else {
                None
            }
        } else {
            let reason =
                format!("run_mode {:?}: no trigger class in {:?}", self.gate.run_mode, filter.detected_classes);
            self.write("stage skipped", |w| {
                w.update_clip(id, [EventKind::StageSkipped { stage: Stage::Vlm, reason }], |r| {
                    r.vlm.status = StageStatus::Skipped;
                })
            });
            None
        };

        let decision = self.policy.decide(&clip.camera, &filter, analysis.as_ref());
        let key = id.to_owned();
        let early = self.read(|s| s.early_alert(&key));
        let now = self.now();
        if !(decision.notify || early.is_some()) {
            let d = decision.clone();
            self.write("decided, no alert", |w| {
                w.remove_early_alert(id)?;
                w.update_clip(
                    id,
                    [
                        EventKind::AlertDecided { notify: d.notify, reason: d.reason.clone() },
                        EventKind::StageSkipped { stage: Stage::Notify, reason: d.reason.clone() },
                        EventKind::ClipCompleted,
                    ],
                    move |r| {
                        r.decision = Some(d);
                        r.notify.status = StageStatus::Skipped;
                        r.completed_ms = Some(now);
                    },
                )
            });
            return;
        }
        let alert = Alert {
            clip_id: clip.clip_id.clone(),
            camera_name: clip.camera.clone(),
            storage_uri: uploaded.clone(),
            view_url: None,
            risk_level: analysis.as_ref().map(|a| a.risk_level),
            activity_type: analysis.as_ref().map(|a| a.activity_type.clone()),
            notify_reason: decision.reason.clone(),
            summary: analysis.as_ref().map(|a| a.summary.clone()),
            ts: rfc3339(now),
            dedupe_key: id.to_owned(),
            upload_failed: uploaded.is_none(),
            detected_classes: filter.detected_classes.clone(),
            stage: if analysis.is_some() { AlertStage::Analyzed } else { AlertStage::Final },
            occurrences: 1,
            occurrences_text: None,
            snapshot_path: record.snapshot_path.clone(),
        };
        let entry = self.outbox_entry(alert);
        let d = decision.clone();
        self.write("decided, alert queued", |w| {
            w.remove_early_alert(id)?;
            w.remove_pending_early_notifications(id)?;
            w.enqueue_notification(&entry)?;
            w.update_clip(
                id,
                [
                    EventKind::AlertDecided { notify: d.notify, reason: d.reason.clone() },
                    EventKind::StageStarted { stage: Stage::Notify, attempt: 1 },
                    EventKind::ClipCompleted,
                ],
                |r| {
                    r.decision = Some(d);
                    r.notify.status = StageStatus::Running;
                    r.notify.started_ms = Some(now);
                    r.completed_ms = Some(now);
                },
            )
        });
        self.later(200);
        if fate.delivery_fails {
            self.deliver_failed(id);
            self.later(2_000);
        }
        self.deliver();
    }

    /// The outbox loop delivers what is due (`outbox.rs`, success).
    fn deliver(&mut self) {
        let entries = self.read(|s| s.outbox());
        let now = self.now();
        for (seq, entry) in entries.into_iter().filter(|(_, e)| e.next_attempt_ms <= now) {
            let early = homesec::store::is_early(&entry);
            let clip_id = entry.clip_id.clone();
            let kind = if early { "early alert delivered" } else { "alert delivered" };
            self.write(kind, |w| {
                w.remove_notification(seq)?;
                if early {
                    return Ok(());
                }
                let others = w.pending_notifications(clip_id.as_str(), seq)?;
                w.update_clip(
                    clip_id.as_str(),
                    [EventKind::NotificationDelivered { notifier: entry.notifier.clone() }],
                    |r| {
                        if others == 0 && r.notify.status != StageStatus::Error {
                            r.notify.status = StageStatus::Ok;
                            r.notify.finished_ms = Some(now);
                        }
                        r.notify.attempts = r.notify.attempts.max(entry.attempts + 1);
                    },
                )?;
                Ok(())
            });
        }
    }

    /// A delivery that fails: the entry stays, due again after the backoff.
    fn deliver_failed(&mut self, id: &str) {
        let entries = self.read(|s| s.outbox());
        let now = self.now();
        for (seq, mut entry) in entries.into_iter().filter(|(_, e)| e.clip_id.as_str() == id) {
            entry.attempts += 1;
            let error = "MQTT publish failed: connection refused (os error 111)".to_owned();
            entry.last_error = Some(error.clone());
            entry.next_attempt_ms = now + BACKOFF_MS;
            self.write("delivery failed", |w| {
                w.update_notification(seq, &entry)?;
                w.update_clip(entry.clip_id.as_str(), [], |r| {
                    r.notify.attempts = entry.attempts;
                    r.notify.last_error = Some(error);
                })?;
                Ok(())
            });
        }
    }

    /// The background upload retry (`recovery.rs`), when its interval is up:
    /// every clip of the set tried again; half of them make it.
    fn upload_retry(&mut self) {
        if self.now() < self.next_upload_retry_ms {
            return;
        }
        while self.next_upload_retry_ms <= self.now() {
            self.next_upload_retry_ms += UPLOAD_RETRY_MS;
        }
        let records = self.read(|s| s.set(Set::UploadRetry, None));
        for record in records {
            if self.rng.bool() {
                continue;
            }
            let clip = record.clip.clone();
            let uri = self.archive(&clip);
            let now = self.now();
            self.write("upload retried", |w| {
                w.update_clip(clip.clip_id.as_str(), [EventKind::StageSucceeded { stage: Stage::Upload }], move |r| {
                    r.upload.status = StageStatus::Ok;
                    r.upload.attempts += 1;
                    r.upload.finished_ms = Some(now);
                    r.upload.last_error = None;
                    r.storage_uri = Some(uri);
                    r.view_url = None;
                })
            });
        }
    }

    /// The landing-triggered retention pass.
    fn pass(&mut self) -> f64 {
        let before = written();
        let t = Instant::now();
        let report = retention::pass(self.store(), &self.places, &self.cfg, self.now()).expect("retention pass");
        let took = ms(t.elapsed());
        self.window.pass_bytes += written() - before;
        self.window.passes.push(took);
        if took > self.window.slowest.0 {
            let r = &report;
            self.window.slowest = (took, r.outcome.clips, r.records_compacted, r.records_forgotten);
        }
        self.window.pruned += report.outcome.clips;
        self.window.compacted += report.records_compacted;
        self.window.forgotten += report.records_forgotten;
        took
    }

    /// A pass with nothing to do (as the timer's mostly are), its parts timed
    /// and what each wrote counted.
    fn idle_pass(&mut self) -> IdlePass {
        let (store, now) = (self.store().clone(), self.now());
        let days = |d: f64| now - (d * DAY_MS) as i64;
        let mut idle = IdlePass::default();
        let mut part = |f: &mut dyn FnMut()| {
            let (before, t) = (written(), Instant::now());
            f();
            let took = ms(t.elapsed());
            idle.bytes += written() - before;
            took
        };
        let mut plan = None;
        idle.plan = part(&mut || {
            plan = Some(retention::make_plan(&store, &self.places, &self.cfg, now).expect("plan"));
        });
        let plan = plan.expect("a plan");
        idle.apply = part(&mut || {
            retention::plan::apply(&store, &plan, now).expect("apply");
        });
        idle.compact = part(&mut || {
            store.compact_before(days(self.cfg.keep_records_days)).expect("compact");
        });
        idle.forget = part(&mut || {
            store.forget_before(days(self.cfg.keep_summaries_days)).expect("forget");
        });
        idle.source_files = part(&mut || {
            store.forget_source_files(days(self.cfg.keep_records_days)).expect("forget source files");
        });
        idle
    }

    /// What a start reads, timed: the store dropped and opened again, and
    /// `Pipeline::start`'s reads.
    fn recover(&mut self) -> Recovery {
        drop(self.store.take());
        let mut r = Recovery::default();
        let t = Instant::now();
        let store = Store::open_with_clock(&self.layout.store(), self.clock.clone()).expect("reopen the store");
        r.open = ms(t.elapsed());
        // `adopt_orphans`: every recording must have a record.
        let t = Instant::now();
        for cam in std::fs::read_dir(self.layout.recordings()).expect("recordings").filter_map(Result::ok) {
            for f in std::fs::read_dir(cam.path()).expect("camera recordings").filter_map(Result::ok) {
                let path = f.path();
                if path.extension().is_none_or(|e| e != "mp4") {
                    continue;
                }
                let stem = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
                assert!(store.get_clip(&stem).expect("get_clip").is_some(), "a recording without a record: {stem}");
            }
        }
        r.orphans = ms(t.elapsed());
        let t = Instant::now();
        let before = self.now() - 24 * 3_600_000;
        store.write(|w| w.forget_orphan_early_alerts(before)).expect("forget orphan early alerts");
        r.early = ms(t.elapsed());
        let t = Instant::now();
        r.unfinished_n = store.unfinished_clips().expect("unfinished").len();
        r.unfinished = ms(t.elapsed());
        let t = Instant::now();
        r.upload_retry_n = store.set(Set::UploadRetry, None).expect("upload retry").len();
        r.upload_retry = ms(t.elapsed());
        self.store = Some(store);
        r
    }

    /// A start out of the page cache, in a fresh process: a copy of the store
    /// taken while it was open (what a power loss leaves, so redb repairs it),
    /// then the same file cleanly closed (a reboot). Also what redb says of the
    /// file, table by table.
    fn cold_start(&self) -> Result<(Cold, DbStats), String> {
        let copy = self.layout.data_dir().join("power-loss.redb");
        std::fs::copy(self.layout.store(), &copy).map_err(|e| format!("cannot copy the store: {e}"))?;
        evict(&copy);
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let out = std::process::Command::new(&exe)
            .env(COLD_ENV, &copy)
            .output()
            .map_err(|e| format!("cannot run the cold start: {e}"));
        // A start after a clean shutdown, in a process of its own (its RSS is its own).
        evict(&copy);
        let clean = std::process::Command::new(&exe)
            .env(COLD_ENV, &copy)
            .env(CLEAN_ENV, "1")
            .output()
            .map_err(|e| format!("cannot run the clean start: {e}"));
        let _ = std::fs::remove_file(&copy);
        let out = out?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!("the cold start failed: {text}{}", String::from_utf8_lossy(&out.stderr)));
        }
        let nums = |l: &str| -> Vec<f64> { l.split('\t').skip(1).filter_map(|v| v.parse().ok()).collect() };
        let mut cold = Cold::default();
        if let Ok(clean) = clean {
            let line = String::from_utf8_lossy(&clean.stdout).to_string();
            let v = nums(line.trim());
            if line.starts_with("clean") && v.len() == 2 {
                (cold.clean_open, cold.clean_rss_mb) = (v[0], v[1]);
            }
        }
        let mut db =
            DbStats { allocated_mb: 0.0, stored_mb: 0.0, metadata_mb: 0.0, fragmented_mb: 0.0, tables: Vec::new() };
        for line in text.lines() {
            let v = nums(line);
            match line.split('\t').next() {
                Some("cold") if v.len() == 4 => {
                    (cold.open, cold.sets, cold.list, cold.rss_mb) = (v[0], v[1], v[2], v[3]);
                }
                Some("db") if v.len() == 4 => {
                    (db.allocated_mb, db.stored_mb, db.metadata_mb, db.fragmented_mb) = (v[0], v[1], v[2], v[3]);
                }
                Some("table") => {
                    let f: Vec<&str> = line.split('\t').collect();
                    if let [_, name, len, pages, stored] = f[..] {
                        let p = |x: &str| x.parse::<f64>().unwrap_or(f64::NAN);
                        db.tables.push((name.to_owned(), len.parse().unwrap_or(0), p(pages), p(stored)));
                    }
                }
                _ => {}
            }
        }
        Ok((cold, db))
    }

    /// Average size of the records of a set as the store archives them (rkyv,
    /// without the store's 2-byte version), and of their paths' text, over up
    /// to 1000 of them.
    fn record_size(&self, set: Set) -> (f64, f64, usize) {
        let (mut n, mut bytes, mut paths) = (0usize, 0usize, 0usize);
        self.store()
            .scan_set(set, None, |r| {
                bytes += rkyv::to_bytes::<rkyv::rancor::Error>(&r).map_or(0, |b| b.len());
                paths += r.clip.local_path.len()
                    + r.snapshot_path.as_ref().map_or(0, String::len)
                    + r.storage_uri.as_ref().map_or(0, String::len)
                    + r.quarantine.as_ref().map_or(0, |q| q.moved_to.len());
                n += 1;
                if n == 1000 { std::ops::ControlFlow::Break(()) } else { std::ops::ControlFlow::Continue(()) }
            })
            .expect("scan a set");
        let per = |x: usize| x as f64 / n.max(1) as f64;
        (per(bytes), per(paths), n)
    }

    /// Clips, simulated days, records, redb file MB, RSS MB.
    fn trend(&self, clips: usize) -> (usize, f64, u64, f64, f64) {
        let records = [Set::OnDisk, Set::Pruned, Set::Compacted]
            .into_iter()
            .map(|s| self.store().set_len(s).expect("set_len"))
            .sum();
        let file = mb(std::fs::metadata(self.layout.store()).map(|m| m.len()).unwrap_or(0));
        (clips, (self.now() - START_MS) as f64 / DAY_MS, records, file, rss_mb())
    }

    fn checkpoint(&mut self, clips: usize, pass_ms: f64) -> Row {
        // Before the checkpoint's own reads add to it.
        let rss = rss_mb();
        let store = self.store().clone();
        let on_disk = store.set_len(Set::OnDisk).expect("set_len");
        let pruned = store.set_len(Set::Pruned).expect("set_len");
        let summaries = store.set_len(Set::Compacted).expect("set_len");
        let q = ClipQuery { limit: 50, ..ClipQuery::default() };
        let time = |q: &ClipQuery| -> f64 {
            let runs: Vec<f64> = (0..LIST_RUNS)
                .map(|_| {
                    let t = Instant::now();
                    store.clips(q).expect("list");
                    ms(t.elapsed())
                })
                .collect();
            median(&runs)
        };
        let mut lists = Vec::new();
        for _ in 0..LIST_RUNS {
            let t = Instant::now();
            let page = store.clips(&q).expect("list");
            lists.push(ms(t.elapsed()));
            assert_eq!(page.clips.len(), 50);
        }
        let camera = ClipQuery { camera: Some(CAMERAS[0].into()), ..q.clone() };
        let list_camera_ms = time(&camera);
        // Ten pages back.
        let mut deep = camera.clone();
        for _ in 0..10 {
            deep.after = store.clips(&deep).expect("list").next;
        }
        let list_deep_ms = time(&deep);
        let mixed =
            ClipQuery { camera: Some("porch".into()), status: Some(homesec::domain::ClipStatus::Done), ..q.clone() };
        let list_mixed_ms = time(&mixed);
        drop(store);
        let file_mb = mb(std::fs::metadata(self.layout.store()).map(|m| m.len()).unwrap_or(0));
        let whole = self.record_size(Set::Pruned);
        let summary = self.record_size(Set::Compacted);
        let idle_pass = self.idle_pass();
        let (cold, db) = match self.cold_start() {
            Ok((cold, db)) => (cold, Some(db)),
            Err(e) => {
                println!("  {e}");
                (Cold::default(), None)
            }
        };
        let recovery = self.recover();
        Row {
            clips,
            days: (self.now() - START_MS) as f64 / DAY_MS,
            on_disk,
            pruned,
            summaries,
            file_mb,
            rss_mb: rss,
            list_ms: median(&lists),
            list_max_ms: max(&lists),
            recovery,
            cold,
            list_camera_ms,
            list_deep_ms,
            list_mixed_ms,
            pass_ms,
            window: std::mem::take(&mut self.window),
            db,
            idle_pass,
            whole,
            summary,
        }
    }
}

/// The child's part of [`Sim::cold_start`]: prints tab-separated figures.
fn cold_child(copy: &Path) -> Result<(), String> {
    let err = |e: StoreError| e.to_string();
    let clock = SimulatedClock::starting_at(START_MS);
    if std::env::var_os(CLEAN_ENV).is_some() {
        let t = Instant::now();
        let store = Store::open_with_clock(copy, clock).map_err(err)?;
        store.unfinished_clips().map_err(err)?;
        store.set(Set::UploadRetry, None).map_err(err)?;
        store.clips(&ClipQuery { limit: 50, ..ClipQuery::default() }).map_err(err)?;
        println!("clean\t{}\t{}", ms(t.elapsed()), rss_mb());
        return Ok(());
    }
    let t = Instant::now();
    let store = Store::open_with_clock(copy, clock).map_err(err)?;
    let open = ms(t.elapsed());
    let t = Instant::now();
    store.unfinished_clips().map_err(err)?;
    store.set(Set::UploadRetry, None).map_err(err)?;
    let sets = ms(t.elapsed());
    let t = Instant::now();
    store.clips(&ClipQuery { limit: 50, ..ClipQuery::default() }).map_err(err)?;
    let list = ms(t.elapsed());
    let rss = rss_mb();
    drop(store);
    println!("cold\t{open}\t{sets}\t{list}\t{rss}");
    let db = db_stats(copy).map_err(|e| e.to_string())?;
    println!("db\t{}\t{}\t{}\t{}", db.allocated_mb, db.stored_mb, db.metadata_mb, db.fragmented_mb);
    for (name, len, pages, stored) in db.tables {
        println!("table\t{name}\t{len}\t{pages}\t{stored}");
    }
    Ok(())
}

fn db_stats(path: &Path) -> Result<DbStats, redb::Error> {
    let db = redb::Database::open(path)?;
    let txn = db.begin_write()?;
    let s = txn.stats()?;
    let page = s.page_size() as u64;
    txn.abort()?;
    let read = db.begin_read()?;
    let mut tables = Vec::new();
    for handle in read.list_tables()? {
        let t = read.open_untyped_table(handle)?;
        let st = t.stats()?;
        let pages = st.leaf_pages() + st.branch_pages();
        tables.push((t.name().to_owned(), t.len()?, mb(pages * page), mb(st.stored_bytes())));
    }
    for handle in read.list_multimap_tables()? {
        let t = read.open_untyped_multimap_table(handle)?;
        let st = t.stats()?;
        let pages = st.leaf_pages() + st.branch_pages();
        tables.push((format!("{} (multimap)", t.name()), t.len()?, mb(pages * page), mb(st.stored_bytes())));
    }
    tables.sort_by(|a, b| b.2.total_cmp(&a.2));
    Ok(DbStats {
        allocated_mb: mb(s.allocated_pages() * page),
        stored_mb: mb(s.stored_bytes()),
        metadata_mb: mb(s.metadata_bytes()),
        fragmented_mb: mb(s.fragmented_bytes()),
        tables,
    })
}

fn print_header() {
    println!(
        "{:>6} {:>5} {:>7} {:>19} {:>7} {:>6} {:>11} {:>9} {:>12} {:>8}",
        "clips",
        "days",
        "records",
        "(disk/pruned/summ)",
        "redb MB",
        "RSS MB",
        "list50 ms",
        "recov ms",
        "power-loss ms",
        "pass ms"
    );
    println!(
        "{:>6} (list50: median (max) of {LIST_RUNS} pages of the 50 newest; recov: reopen + the start's reads; power-loss: open, cold; pass: the clip's landing pass)",
        ""
    );
}

fn print_row(r: &Row) {
    let split = format!("{}/{}/{}", r.on_disk, r.pruned, r.summaries);
    println!(
        "{:>6} {:>5.1} {:>7} {:>19} {:>7.1} {:>6.1} {:>11} {:>9.1} {:>12.1} {:>8.1}",
        r.clips,
        r.days,
        r.on_disk + r.pruned + r.summaries,
        split,
        r.file_mb,
        r.rss_mb,
        format!("{:.2} ({:.2})", r.list_ms, r.list_max_ms),
        r.recovery.total(),
        r.cold.open,
        r.pass_ms,
    );
}

fn print_details(r: &Row) {
    let w = &r.window;
    let n = w.clips.max(1) as f64;
    println!(
        "  window of {} clips: {:.1} s wall, {:.1} ms/clip; pipeline's store calls {:.1} ms/clip ({:.1} commits/clip, {:.0} kB written/clip, {:.1} kB/commit); clip files {:.1} ms/clip",
        w.clips,
        w.wall.as_secs_f64(),
        ms(w.wall) / n,
        ms(w.store) / n,
        w.commits as f64 / n,
        w.store_bytes as f64 / n / 1e3,
        w.store_bytes as f64 / w.commits.max(1) as f64 / 1e3,
        ms(w.files) / n,
    );
    let (slow, p, c, f) = w.slowest;
    println!(
        "  passes: {} (median {:.1} ms, max {slow:.1} ms: pruned {p}, compacted {c}, forgot {f}; {:.0} kB written/pass); pruned {} clips, compacted {} records, forgot {}",
        w.passes.len(),
        median(&w.passes),
        w.pass_bytes as f64 / w.passes.len().max(1) as f64 / 1e3,
        w.pruned,
        w.compacted,
        w.forgotten,
    );
    println!(
        "  list (medians): 50 newest {:.2} ms; one camera {:.2} ms; one camera 10 pages back {:.2} ms; status done of a camera with no clips {:.2} ms",
        r.list_ms, r.list_camera_ms, r.list_deep_ms, r.list_mixed_ms
    );
    let rc = &r.recovery;
    println!(
        "  recovery: open {:.1} + orphan check {:.1} + early alerts {:.1} + unfinished {:.1} ({} clips) + upload retry {:.1} ({} clips) ms",
        rc.open, rc.orphans, rc.early, rc.unfinished, rc.unfinished_n, rc.upload_retry, rc.upload_retry_n
    );
    let mut kinds: Vec<_> = w.kinds.iter().collect();
    kinds.sort_by_key(|(_, (count, _, _))| std::cmp::Reverse(*count));
    for (kind, (count, bytes, took)) in kinds {
        let c = (*count).max(1) as f64;
        println!(
            "    {kind:<36} {:>5.2}/clip {:>6.1} kB/commit {:>6.2} ms/commit",
            *count as f64 / n,
            *bytes as f64 / c / 1e3,
            ms(*took) / c
        );
    }
    let c = &r.cold;
    println!(
        "  fresh process, store out of the page cache: after a power loss open (repair) {:.1} + sets {:.1} + first page {:.1} ms, RSS then {:.1} MB; after a clean shutdown open + sets + first page {:.1} ms, RSS then {:.1} MB",
        c.open, c.sets, c.list, c.rss_mb, c.clean_open, c.clean_rss_mb
    );
    let i = &r.idle_pass;
    println!(
        "  idle pass: plan (measure + scan) {:.1} + apply {:.1} + compact {:.1} + forget {:.1} + source files {:.1} ms, {:.0} kB written",
        i.plan,
        i.apply,
        i.compact,
        i.forget,
        i.source_files,
        i.bytes as f64 / 1e3
    );
    if let Some(db) = &r.db {
        println!(
            "  redb: {:.1} MB allocated, {:.1} MB stored, {:.1} MB metadata, {:.1} MB fragmented",
            db.allocated_mb, db.stored_mb, db.metadata_mb, db.fragmented_mb
        );
    }
    let size = |(bytes, paths, n): (f64, f64, usize)| {
        if n == 0 { "-".to_owned() } else { format!("{bytes:.0} B ({paths:.0} B of paths, n={n})") }
    };
    println!("  a record: whole (pruned clip) {}, summary {}", size(r.whole), size(r.summary));
}

fn print_tables(db: &DbStats) {
    println!("  {:<34} {:>8} {:>9} {:>9}", "table", "entries", "pages MB", "stored MB");
    for (name, len, pages, stored) in &db.tables {
        println!("  {name:<34} {len:>8} {pages:>9.2} {stored:>9.2}");
    }
}

fn main() {
    if let Some(copy) = std::env::var_os(COLD_ENV) {
        if let Err(e) = cold_child(Path::new(&copy)) {
            eprintln!("{e}");
            std::process::exit(1);
        }
        return;
    }
    let total: usize = std::env::var("HOMESEC_SOAK_CLIPS").ok().and_then(|v| v.parse().ok()).unwrap_or(CLIPS);
    let mut checkpoints: Vec<usize> = CHECKPOINTS.iter().copied().filter(|&c| c < total).collect();
    checkpoints.push(total);
    let mut sim = match Sim::new() {
        Ok(s) => s,
        Err(e) => return println!("SKIPPED: {e}"),
    };
    println!(
        "soak: {total} clips from {} cameras ({} live, 1 folder), a clip every {:.0}-{:.0} min per camera, {}-{} s long",
        CAMERAS.len(),
        CAMERAS.len() - 1,
        GAP_MIN.0,
        GAP_MIN.1,
        CLIP_S.0,
        CLIP_S.1
    );
    println!(
        "retention: quota {:.0} MB, keep_records_days {KEEP_RECORDS_DAYS}, keep_summaries_days {KEEP_SUMMARIES_DAYS}, keep_failed_days {}, a pass per clip landed",
        mb(QUOTA_BYTES),
        sim.cfg.keep_failed_days
    );
    print_header();

    let started = Instant::now();
    let mut window_start = Instant::now();
    let mut next_start: Vec<i64> =
        (0..CAMERAS.len()).map(|_| START_MS + sim.rng.i64(0..GAP_MIN.1 as i64 * 60_000)).collect();
    let mut rows = Vec::new();
    let mut trend = Vec::new();
    let mut last_pass = 0.0;
    for n in 1..=total {
        let camera = (0..CAMERAS.len()).min_by_key(|&c| next_start[c]).unwrap_or(0);
        let start = next_start[camera];
        let len_ms = sim.rng.i64(CLIP_S.0..=CLIP_S.1) * 1000;
        let gap = GAP_MIN.0 + sim.rng.f64() * (GAP_MIN.1 - GAP_MIN.0);
        next_start[camera] = start + len_ms + (gap * 60_000.0) as i64;
        sim.upload_retry();
        let passes = sim.window.passes.len();
        let in_flight = sim.clip(camera, start, len_ms);
        if sim.window.passes.len() > passes {
            last_pass = *sim.window.passes.last().unwrap_or(&0.0);
        }
        sim.window.clips += 1;
        if n % TREND_EVERY == 0 {
            trend.push(sim.trend(n));
        }
        if checkpoints.contains(&n) {
            // The daemon restarts with this clip in the pipeline.
            sim.window.wall = window_start.elapsed();
            let row = sim.checkpoint(n, last_pass);
            print_row(&row);
            rows.push(row);
            window_start = Instant::now();
        }
        if let Some(clip) = in_flight {
            sim.process(clip);
        }
    }
    let wall = started.elapsed();

    println!("\n== details ==");
    for r in &rows {
        println!("at {} clips ({:.1} simulated days, {:.0} clips/day):", r.clips, r.days, r.clips as f64 / r.days);
        print_details(r);
    }
    println!("\n== every {TREND_EVERY} clips ==");
    println!("{:>6} {:>5} {:>7} {:>7} {:>6}", "clips", "days", "records", "redb MB", "RSS MB");
    for (n, days, records, file, rss) in &trend {
        println!("{n:>6} {days:>5.1} {records:>7} {file:>7.1} {rss:>6.1}");
    }
    if let Some(db) = rows.last().and_then(|r| r.db.as_ref()) {
        println!("\n== redb tables at {} clips ==", total);
        print_tables(db);
    }

    println!("\n== goals ==");
    print_header();
    for r in &rows {
        print_row(r);
    }
    if let Some(last) = rows.last() {
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        let worst_list = rows.iter().map(|r| r.list_ms).fold(0.0, f64::max);
        let worst_recovery = rows.iter().map(|r| r.recovery.total()).fold(0.0, f64::max);
        println!(
            "  redb file <= 64 MB at {} clips: {:.1} MB, {}",
            last.clips,
            last.file_mb,
            verdict(last.file_mb <= 64.0)
        );
        println!("  clips list (50 newest) <= 50 ms: worst median {worst_list:.2} ms, {}", verdict(worst_list <= 50.0));
        println!("  start-up recovery <= 1 s: worst {worst_recovery:.0} ms, {}", verdict(worst_recovery <= 1000.0));
        let rss: Vec<String> = rows.iter().map(|r| format!("{:.1}", r.rss_mb)).collect();
        let grown = rows.len() >= 2 && {
            let (a, b) = (rows[rows.len() - 2].rss_mb, last.rss_mb);
            b - a > (a * 0.1).max(5.0)
        };
        println!("  RSS flat (last two checkpoints within 10 % or 5 MB): {} MB, {}", rss.join(" / "), verdict(!grown));
    }
    println!("\n(total {:.0} s wall, {:.1} ms per clip)", wall.as_secs_f64(), ms(wall) / total as f64);
}
