//! The pipeline's branches with trait doubles; end-to-end runs with real parts
//! live in `tests/`.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::analyzer::VlmError;
use crate::clock::{Clock, SimulatedClock};
use crate::domain::{Alert, AlertStage, AnalysisResult, ClipStatus, RiskLevel, Stage, StageStatus, rfc3339};
use crate::filter::{FilterError, FilterOutput};
use crate::notify::{Notifier, NotifyError};
use crate::policy::default::DefaultPolicy;
use crate::storage::{StorageError, StoredObject};
use crate::store::OutboxEntry;

struct FakeStorage {
    failures: AtomicU32,
}

#[async_trait]
impl StorageBackend for FakeStorage {
    fn name(&self) -> &str {
        "fake"
    }
    async fn put(&self, clip: &Clip, _: &Path) -> Result<StoredObject, StorageError> {
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            return Err(StorageError::Backend("cloud down".into()));
        }
        Ok(StoredObject { storage_uri: format!("fake://{}", clip.clip_id), view_url: Some("https://view/x".into()) })
    }
    async fn put_json(&self, clip: &Clip, name: &str, _: &serde_json::Value) -> Result<StoredObject, StorageError> {
        Ok(StoredObject { storage_uri: format!("fake://{}.{name}.json", clip.clip_id), view_url: None })
    }
    async fn get(&self, uri: &str, _: &Path) -> Result<(), StorageError> {
        Err(StorageError::NotFound { uri: uri.into() })
    }
    async fn exists(&self, _: &str) -> Result<bool, StorageError> {
        Ok(false)
    }
    async fn delete(&self, _: &str) -> Result<(), StorageError> {
        Ok(())
    }
    async fn ping(&self) -> bool {
        true
    }
}

struct FakeFilter {
    classes: Vec<&'static str>,
    broken: bool,
    calls: AtomicU32,
}

#[async_trait]
impl ObjectFilter for FakeFilter {
    fn name(&self) -> &str {
        "fake"
    }
    async fn detect(
        &self,
        video: &Path,
        _decisive: &[String],
        _tracking: &crate::filter::tracking::TrackContext,
    ) -> Result<FilterOutput, FilterError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.broken {
            return Err(FilterError::Media {
                path: video.display().to_string(),
                source: crate::media::MediaError::NoVideo { path: video.display().to_string() },
            });
        }
        Ok(FilterOutput {
            result: FilterResult {
                detected_classes: self.classes.iter().map(|c| c.to_string()).collect(),
                alert_classes: self.classes.iter().map(|c| c.to_string()).collect(),
                confidence: 0.9,
                model: "fake".into(),
                sampled_frames: 3,
                detections: vec![],
            },
            snapshot_jpeg: Some(vec![0xff, 0xd8, 0xff, 0xd9]),
        })
    }
}

struct FakeVlm {
    fail: bool,
    calls: AtomicU32,
}

#[async_trait]
impl VlmAnalyzer for FakeVlm {
    fn name(&self) -> &str {
        "fake"
    }
    fn max_frames(&self) -> u32 {
        4
    }
    async fn analyze(&self, _: &Clip, _: &FilterResult) -> Result<AnalysisResult, VlmError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            return Err(VlmError::Status { endpoint: "fake".into(), status: 401, body: "bad key".into() });
        }
        Ok(AnalysisResult {
            risk_level: RiskLevel::High,
            activity_type: "suspicious".into(),
            summary: "someone tries the door".into(),
            entities_timeline: vec![],
            requires_review: false,
            model: "fake-vlm".into(),
        })
    }
}

struct FakeNotifier {
    name: &'static str,
    /// Like MQTT (true) or like mail (false).
    updates: bool,
    failures: AtomicU32,
    sent: Mutex<Vec<(Alert, bool)>>,
}

impl Default for FakeNotifier {
    fn default() -> Self {
        Self { name: "fake", updates: true, failures: AtomicU32::new(0), sent: Mutex::default() }
    }
}

#[async_trait]
impl Notifier for FakeNotifier {
    fn name(&self) -> &str {
        self.name
    }
    fn takes_updates(&self) -> bool {
        self.updates
    }
    async fn send(&self, alert: &Alert, snapshot: Option<&[u8]>) -> Result<(), NotifyError> {
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            return Err(NotifyError::NotConnected("broker".into()));
        }
        self.sent.lock().unwrap().push((alert.clone(), snapshot.is_some()));
        Ok(())
    }
    async fn ping(&self) -> bool {
        true
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    pipeline: Arc<Pipeline>,
    filter: Arc<FakeFilter>,
    vlm: Arc<FakeVlm>,
    notifier: Arc<FakeNotifier>,
    /// A notifier like mail (no updates), when the setup asks for one.
    mail: Option<Arc<FakeNotifier>>,
    clock: Arc<SimulatedClock>,
    controls: Controls,
}

struct Setup {
    classes: Vec<&'static str>,
    filter_broken: bool,
    vlm_fails: bool,
    run_mode: RunMode,
    upload_failures: u32,
    notify_failures: u32,
    notify_ttl_s: u64,
    policy: &'static str,
    /// The notifier named `fake` takes updates (like MQTT).
    fake_takes_updates: bool,
    mail: bool,
    /// Where the store and files are (a restart reuses the previous rig's).
    dir: Option<tempfile::TempDir>,
    start_ms: i64,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            classes: vec!["person"],
            filter_broken: false,
            vlm_fails: false,
            run_mode: RunMode::TriggerOnly,
            upload_failures: 0,
            notify_failures: 0,
            notify_ttl_s: 3600,
            policy: "min_risk_level: medium",
            fake_takes_updates: true,
            mail: false,
            dir: None,
            start_ms: 1_700_000_100_000,
        }
    }
}

fn rig(s: Setup) -> Rig {
    let dir = s.dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
    let path = dir.path().to_path_buf();
    let filter = Arc::new(FakeFilter { classes: s.classes, broken: s.filter_broken, calls: AtomicU32::new(0) });
    let vlm = Arc::new(FakeVlm { fail: s.vlm_fails, calls: AtomicU32::new(0) });
    let notifier = Arc::new(FakeNotifier {
        failures: AtomicU32::new(s.notify_failures),
        updates: s.fake_takes_updates,
        ..Default::default()
    });
    let mail = s.mail.then(|| Arc::new(FakeNotifier { name: "mail", updates: false, ..Default::default() }));
    let mut notifiers: Vec<Arc<dyn Notifier>> = vec![notifier.clone()];
    notifiers.extend(mail.clone().map(|m| m as Arc<dyn Notifier>));
    let clock = SimulatedClock::starting_at(s.start_ms);
    let controls = Controls::in_memory(&["front".into()]);
    let parts = Parts {
        store: Store::open_with_clock(&path.join("s.redb"), clock.clone()).unwrap(),
        storage: Arc::new(FakeStorage { failures: AtomicU32::new(s.upload_failures) }),
        filter: filter.clone(),
        analyzer: Some(vlm.clone()),
        vlm_gate: VlmGate { run_mode: s.run_mode, trigger_classes: vec!["person".into()] },
        policy: Arc::new(DefaultPolicy::new(serde_saphyr::from_str(s.policy).unwrap())),
        notifiers: Notifiers::new(notifiers),
        retry: RetryConfig {
            max_attempts: 2,
            backoff_s: 0.01,
            max_backoff_s: 0.05,
            notify_ttl_s: s.notify_ttl_s,
            upload_retry_interval_s: 1,
        },
        concurrency: ConcurrencyConfig::default(),
        snapshots_dir: path.join("snapshots"),
        fetched_dir: path.join("fetched"),
        clock: clock.clone(),
        controls: controls.clone(),
        tracking: Default::default(),
    };
    let pipeline = Pipeline::new(parts, CancellationToken::new());
    Rig { _dir: dir, dir: path, pipeline, filter, vlm, notifier, mail, clock, controls }
}

fn clip(id: &str) -> Clip {
    Clip {
        clip_id: id.into(),
        camera: "front".into(),
        local_path: format!("/nonexistent/{id}.mp4"),
        start_ms: 1_700_000_000_000,
        end_ms: 1_700_000_010_000,
        source_backend: "test".into(),
    }
}

/// Every stage has run and no notification is owed any more.
fn finished(r: &ClipRecord) -> bool {
    !r.needs_processing() && r.notify.status != StageStatus::Running
}

impl Rig {
    /// Starts the pipeline and hands it a clip.
    async fn submit(&self, id: &str) {
        self.pipeline.start(&self.dir.join("recordings")).await.unwrap();
        assert!(self.pipeline.sink().submit(clip(id)).await.unwrap());
    }

    /// Runs a clip through while the clock stands still: no notification is retried.
    async fn run(&self, id: &str) -> ClipRecord {
        self.submit(id).await;
        self.wait(id, finished).await
    }

    async fn record(&self, id: &str) -> Option<ClipRecord> {
        let id = id.to_owned();
        self.pipeline.store().run(move |s| s.get_clip(&id)).await.unwrap()
    }

    async fn wait(&self, id: &str, done: impl Fn(&ClipRecord) -> bool) -> ClipRecord {
        self.wait_advancing(id, Duration::ZERO, done).await
    }

    /// Waits for `done`, moving the clock by `step` (and waking the outbox)
    /// between looks.
    async fn wait_advancing(&self, id: &str, step: Duration, done: impl Fn(&ClipRecord) -> bool) -> ClipRecord {
        for _ in 0..500 {
            if let Some(r) = self.record(id).await
                && done(&r)
            {
                return r;
            }
            if !step.is_zero() {
                self.advance(step);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("clip {id} did not get there: {:?}", self.record(id).await);
    }

    /// Moves the clock and lets the outbox look at what is due now.
    fn advance(&self, d: Duration) {
        self.clock.advance(d);
        self.pipeline.outbox_wake.notify_one();
    }

    async fn outbox(&self) -> Vec<(u64, OutboxEntry)> {
        self.pipeline.store().run(|s| s.outbox()).await.unwrap()
    }

    async fn events(&self, id: &str) -> Vec<EventKind> {
        let id = id.to_owned();
        let events = self.pipeline.store().run(move |s| s.events_for(&id)).await.unwrap();
        events.into_iter().map(|e| e.kind).collect()
    }

    fn sent(&self) -> Vec<(Alert, bool)> {
        self.notifier.sent.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_person_clip_is_analysed_and_alerted_with_link_and_snapshot() {
    let rig = rig(Setup::default());
    let r = rig.run("front_1").await;
    assert_eq!(r.status(), ClipStatus::Done);
    let sent = rig.sent();
    assert_eq!(sent.len(), 1);
    let (alert, had_snapshot) = &sent[0];
    assert_eq!(alert.risk_level, Some(RiskLevel::High));
    assert_eq!(alert.notify_reason, "risk_level=high");
    assert_eq!(alert.view_url.as_deref(), Some("https://view/x"));
    assert!(!alert.upload_failed);
    assert!(had_snapshot, "the snapshot travels with the alert");
    let events = rig.events("front_1").await;
    assert!(events.contains(&EventKind::NotificationDelivered { notifier: "fake".into() }));
}

#[tokio::test]
async fn a_filter_failure_ends_the_clip_in_error_without_alert() {
    let rig = rig(Setup { filter_broken: true, ..Default::default() });
    let r = rig.run("front_2").await;
    assert_eq!(r.status(), ClipStatus::Error);
    assert_eq!(r.filter.status, StageStatus::Error);
    assert_eq!(rig.filter.calls.load(Ordering::SeqCst), 1, "a broken file is not retried");
    assert!(r.filter.last_error.as_deref().unwrap().contains("no H.264/H.265 video track"));
    assert!(rig.sent().is_empty());
    assert_eq!(rig.vlm.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_upload_failure_degrades_then_heals_in_the_background() {
    let rig = rig(Setup { upload_failures: 2, ..Default::default() });
    let r = rig.run("front_3").await;
    assert_eq!(r.upload.status, StageStatus::Error);
    assert_eq!(r.upload.attempts, 2);
    let sent = rig.sent();
    assert_eq!(sent.len(), 1, "the alert goes out without the upload");
    assert!(sent[0].0.upload_failed);
    assert_eq!(sent[0].0.view_url, None);
    assert_eq!(r.status(), ClipStatus::Error);
    let healed = rig.wait("front_3", |r| r.upload.status == StageStatus::Ok).await;
    assert_eq!(healed.status(), ClipStatus::Done);
    assert_eq!(healed.storage_uri.as_deref(), Some("fake://front_3"));
}

#[tokio::test]
async fn a_vlm_failure_still_alerts_on_the_person() {
    let rig = rig(Setup { vlm_fails: true, ..Default::default() });
    let r = rig.run("front_4").await;
    assert_eq!(r.vlm.status, StageStatus::Error);
    assert_eq!(rig.vlm.calls.load(Ordering::SeqCst), 1, "401 is not retried");
    let sent = rig.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0.notify_reason, "detected=person (no VLM analysis)");
    assert_eq!(sent[0].0.risk_level, None);
}

#[tokio::test]
async fn trigger_only_skips_the_vlm_without_trigger_class() {
    let rig = rig(Setup { classes: vec!["car"], ..Default::default() });
    let r = rig.run("front_5").await;
    assert_eq!(r.vlm.status, StageStatus::Skipped);
    assert_eq!(rig.vlm.calls.load(Ordering::SeqCst), 0);
    assert_eq!(r.notify.status, StageStatus::Skipped);
    assert_eq!(r.status(), ClipStatus::Done);
    assert!(rig.sent().is_empty());
}

#[tokio::test]
async fn run_mode_always_analyses_every_clip() {
    let rig = rig(Setup { classes: vec![], run_mode: RunMode::Always, ..Default::default() });
    rig.run("front_6").await;
    assert_eq!(rig.vlm.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failed_notification_stays_in_the_outbox_until_delivered() {
    let rig = rig(Setup { notify_failures: 3, ..Default::default() });
    rig.submit("front_7").await;
    // Each look moves the clock past the longest retry delay (0.05 s + 20 %).
    let r = rig.wait_advancing("front_7", Duration::from_millis(100), finished).await;
    assert_eq!(r.notify.status, StageStatus::Ok);
    assert_eq!(r.status(), ClipStatus::Done);
    assert_eq!(r.notify.attempts, 4);
    assert_eq!(rig.sent().len(), 1, "delivered exactly once");
    assert!(rig.outbox().await.is_empty());
}

#[tokio::test]
async fn an_undeliverable_notification_is_kept_until_its_ttl_then_expires() {
    let rig = rig(Setup { notify_failures: 1000, notify_ttl_s: 600, ..Default::default() });
    rig.submit("front_8").await;
    let expired = |events: &[EventKind]| events.iter().any(|e| matches!(e, EventKind::NotificationExpired { .. }));

    // The first attempt fails; the clock stands still, so nothing else is due.
    let r = rig.wait("front_8", |r| r.completed_ms.is_some() && r.notify.attempts == 1).await;
    assert_eq!(r.notify.status, StageStatus::Running);
    assert_eq!(rig.outbox().await.len(), 1, "kept for a retry");

    // Just before the TTL: retried, failed again, still kept.
    rig.advance(Duration::from_secs(599));
    let r = rig.wait("front_8", |r| r.notify.attempts == 2).await;
    assert_eq!(r.notify.status, StageStatus::Running);
    let outbox = rig.outbox().await;
    assert_eq!(outbox.len(), 1, "kept until its TTL");
    assert!(outbox[0].1.expires_ms > rig.clock.now_ms());
    assert!(!expired(&rig.events("front_8").await));
    assert_eq!(rig.pipeline.stats.alerts_expired.get(), 0);

    // Past the TTL: the next failure drops it.
    rig.advance(Duration::from_secs(2));
    let r = rig.wait("front_8", |r| r.notify.status != StageStatus::Running).await;
    assert_eq!(r.notify.status, StageStatus::Error);
    assert_eq!(r.status(), ClipStatus::Error);
    assert!(rig.outbox().await.is_empty());
    assert!(expired(&rig.events("front_8").await));
    assert_eq!(rig.pipeline.stats.alerts_expired.get(), 1);
    assert!(rig.sent().is_empty());
}

#[tokio::test]
async fn recovery_resumes_from_the_last_finished_stage() {
    let rig = rig(Setup::default());
    // A clip whose filter finished before a crash: recovery must not filter again.
    let mut record = ClipRecord::new(clip("front_9"));
    record.filter.status = StageStatus::Ok;
    record.filter_result = Some(FilterResult {
        detected_classes: vec!["person".into()],
        alert_classes: vec!["person".into()],
        confidence: 0.8,
        ..Default::default()
    });
    rig.pipeline.store().run(move |s| s.write(|w| w.insert_clip(&record))).await.unwrap();
    rig.pipeline.start(&rig.dir.join("recordings")).await.unwrap();
    let r = rig.wait("front_9", |r| r.status() == ClipStatus::Done).await;
    assert_eq!(rig.filter.calls.load(Ordering::SeqCst), 0);
    assert_eq!(r.upload.status, StageStatus::Ok);
    assert_eq!(rig.sent().len(), 1);
}

#[tokio::test]
async fn orphan_clip_files_are_adopted_on_start() {
    let rig = rig(Setup::default());
    let cam_dir = rig.dir.join("recordings/porch");
    std::fs::create_dir_all(&cam_dir).unwrap();
    std::fs::write(cam_dir.join("porch_1700000000.mp4"), b"x").unwrap();
    rig.pipeline.start(&rig.dir.join("recordings")).await.unwrap();
    let r = rig.wait("porch_1700000000", |r| r.status() == ClipStatus::Done).await;
    assert_eq!(r.clip.camera.as_str(), "porch");
}

#[test]
fn the_retry_schedule_doubles_from_backoff_s_up_to_max_backoff_s() {
    let retry = RetryConfig { backoff_s: 2.0, max_backoff_s: 60.0, ..RetryConfig::default() };
    let schedule = retry.schedule();
    for (attempt, nominal) in [(1, 2.0), (2, 4.0), (3, 8.0), (5, 32.0), (6, 60.0), (40, 60.0)] {
        let d = schedule.delay(attempt).as_secs_f64();
        assert!((nominal * 0.8..=nominal * 1.2).contains(&d), "attempt {attempt}: {d} s is not {nominal} s ± 20 %");
    }
    let zero = RetryConfig { backoff_s: 0.0, max_backoff_s: 0.0, ..RetryConfig::default() };
    assert_eq!(zero.schedule().delay(3), Duration::ZERO);
}

#[tokio::test]
async fn the_heartbeat_ages_with_the_clock_until_the_loop_beats() {
    let rig = rig(Setup::default());
    assert_eq!(rig.pipeline.heartbeat_age(), Duration::ZERO);
    rig.clock.advance(Duration::from_secs(45));
    assert_eq!(rig.pipeline.heartbeat_age(), Duration::from_secs(45), "no loop runs before start");
    rig.pipeline.start(&rig.dir.join("recordings")).await.unwrap();
    for _ in 0..500 {
        if rig.pipeline.heartbeat_age().is_zero() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the loop did not beat: {:?}", rig.pipeline.heartbeat_age());
}

#[tokio::test]
async fn records_and_alerts_are_dated_by_the_clock() {
    let rig = rig(Setup::default());
    let start = rig.clock.now_ms();
    let r = rig.run("front_10").await;
    assert_eq!((r.created_ms, r.completed_ms, r.notify.finished_ms), (start, Some(start), Some(start)));
    assert_eq!(rig.sent()[0].0.ts, rfc3339(start));
}

fn sighting(id: &str) -> Sighting {
    Sighting {
        clip_id: id.into(),
        camera: "front".into(),
        classes: vec!["person".into()],
        snapshot_jpeg: Some(vec![0xFF, 0xD8, 0xFF, 0xD9]),
    }
}

fn live(classes: &[&str]) -> FilterOutput {
    FilterOutput {
        result: FilterResult {
            detected_classes: classes.iter().map(|c| c.to_string()).collect(),
            alert_classes: classes.iter().map(|c| c.to_string()).collect(),
            confidence: if classes.is_empty() { 0.0 } else { 0.8 },
            model: "fake (live)".into(),
            ..Default::default()
        },
        snapshot_jpeg: None,
    }
}

impl Rig {
    /// Starts the pipeline; a person is confirmed live in clip `id` (still recording).
    async fn sighted(&self, id: &str) {
        self.pipeline.start(&self.dir.join("recordings")).await.unwrap();
        assert!(self.pipeline.sink().sighting(sighting(id)).await.unwrap(), "the early alert is queued");
        assert!(!self.pipeline.sink().sighting(sighting(id)).await.unwrap(), "once per clip");
    }

    async fn finish_live(&self, id: &str, classes: &[&str]) -> ClipRecord {
        assert!(self.pipeline.sink().submit_detected(clip(id), Some(live(classes))).await.unwrap());
        self.wait(id, finished).await
    }

    async fn wait_sent(&self, n: usize) {
        for _ in 0..500 {
            if self.sent().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{n} alerts were not sent: {:?}", self.sent());
    }
}

#[tokio::test]
async fn a_live_camera_alerts_early_then_finally_with_the_same_dedupe_key() {
    let rig = rig(Setup::default());
    rig.sighted("front_9").await;
    rig.wait_sent(1).await;
    let (early, had_snapshot) = rig.sent()[0].clone();
    assert_eq!((early.stage, early.dedupe_key.as_str()), (AlertStage::Detected, "front_9"));
    assert_eq!((early.risk_level, early.notify_reason.as_str()), (None, "detected=person (early)"));
    assert_eq!(early.detected_classes, ["person"]);
    assert!(had_snapshot, "the early alert carries the confirming frame");
    assert!(rig.record("front_9").await.is_none(), "no record while recording");

    let r = rig.finish_live("front_9", &["person"]).await;
    assert_eq!(rig.filter.calls.load(Ordering::SeqCst), 0, "the live result stands: the clip is not decoded");
    assert_eq!((r.filter.status, r.filter_result.as_ref().unwrap().model.as_str()), (StageStatus::Ok, "fake (live)"));
    assert_eq!(r.status(), ClipStatus::Done);
    let sent = rig.sent();
    assert_eq!(sent.len(), 2);
    let last = &sent[1].0;
    assert_eq!((last.stage, last.dedupe_key.as_str()), (AlertStage::Analyzed, "front_9"));
    assert_eq!(last.risk_level, Some(RiskLevel::High));
    assert!(rig.pipeline.store().early_alert("front_9").unwrap().is_none(), "the early alert is forgotten");
}

#[tokio::test]
async fn after_an_early_alert_the_final_one_is_sent_even_when_the_policy_would_not_alert() {
    let rig = rig(Setup::default());
    rig.sighted("front_10").await;
    rig.wait_sent(1).await;
    // Nothing confirmed in the end: no VLM (trigger_only), the policy says no.
    let r = rig.finish_live("front_10", &[]).await;
    assert_eq!(r.decision.as_ref().map(|d| d.notify), Some(false));
    assert_eq!(rig.vlm.calls.load(Ordering::SeqCst), 0);
    let sent = rig.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let last = &sent[1].0;
    assert_eq!((last.stage, last.notify_reason.as_str()), (AlertStage::Final, "nothing detected"));
    assert_eq!(last.dedupe_key, "front_10");
    // Without an early alert the same clip would have gone unannounced.
    let quiet = rig.finish_live("front_11", &[]).await;
    assert_eq!(quiet.notify.status, StageStatus::Skipped);
    assert_eq!(rig.sent().len(), 2);
}

#[tokio::test]
async fn the_final_alert_supersedes_an_early_one_still_waiting_in_the_outbox() {
    let rig = rig(Setup { notify_failures: 1, ..Default::default() });
    rig.sighted("front_12").await;
    for _ in 0..500 {
        if rig.outbox().await.first().is_some_and(|(_, e)| e.attempts == 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let waiting = rig.outbox().await;
    assert_eq!((waiting.len(), waiting[0].1.alert.stage), (1, AlertStage::Detected), "the broker was down");
    let r = rig.finish_live("front_12", &["person"]).await;
    assert_eq!(r.status(), ClipStatus::Done);
    let stages: Vec<AlertStage> = rig.sent().iter().map(|(a, _)| a.stage).collect();
    assert_eq!(stages, [AlertStage::Analyzed], "the stale early alert is not sent after the final one");
    assert!(rig.outbox().await.is_empty());
}

#[tokio::test]
async fn the_frames_kept_for_the_vlm_go_once_the_vlm_has_seen_them() {
    let rig = rig(Setup::default());
    let mut c = clip("front_8");
    c.local_path = rig.dir.join("front_8.mp4").display().to_string();
    let frames = crate::fsutil::frames_dir(std::path::Path::new(&c.local_path));
    std::fs::create_dir_all(&frames).unwrap();
    std::fs::write(frames.join("frame_00_0.jpg"), b"jpeg").unwrap();
    assert!(rig.pipeline.sink().submit_detected(c, Some(live(&["person"]))).await.unwrap());
    let r = rig.wait("front_8", |r| !r.needs_processing()).await;
    assert_eq!(r.vlm.status, StageStatus::Ok);
    assert!(!frames.exists(), "no longer needed: the disk gets them back");
}

#[tokio::test]
async fn an_early_alert_whose_recording_was_lost_is_forgotten_with_its_snapshot() {
    let rig = rig(Setup::default());
    rig.sighted("front_7").await;
    let snapshot = rig.dir.join("snapshots/front_7.jpg");
    assert!(snapshot.exists());
    // The recording never arrives; a day later the daemon starts again.
    rig.clock.advance(Duration::from_secs(25 * 3600));
    rig.pipeline.start(&rig.dir.join("recordings")).await.unwrap();
    assert!(rig.pipeline.store().early_alert("front_7").unwrap().is_none());
    assert!(!snapshot.exists(), "no clip will ever delete it");
}

#[tokio::test]
async fn alerts_off_processes_the_clip_but_notifies_nothing_and_says_why() {
    use crate::controls::Change;
    let rig = rig(Setup::default());
    rig.controls.set(&"front".into(), Change::Alerts(false));
    rig.pipeline.start(&rig.dir.join("recordings")).await.unwrap();
    assert!(!rig.pipeline.sink().sighting(sighting("front_20")).await.unwrap(), "no early alert either");
    let r = rig.run("front_20").await;
    assert_eq!(r.status(), ClipStatus::Done);
    assert_eq!(rig.vlm.calls.load(Ordering::SeqCst), 1, "the clip is analysed as usual");
    let d = r.decision.expect("decided");
    assert!(!d.notify);
    assert_eq!(d.reason, "alerts off for this camera (risk_level=high)");
    assert_eq!(r.notify.status, StageStatus::Skipped);
    assert!(rig.sent().is_empty());
    rig.controls.set(&"front".into(), Change::Alerts(true));
    rig.run("front_21").await;
    assert_eq!(rig.sent().len(), 1, "switched back on: the next clip alerts");
}

#[tokio::test]
async fn the_minimum_risk_level_set_at_run_time_decides() {
    use crate::controls::Change;
    let rig = rig(Setup::default());
    rig.controls.set(&"front".into(), Change::MinRiskLevel(Some(RiskLevel::High)));
    rig.run("front_22").await;
    assert_eq!(rig.sent().len(), 1, "high reaches high");
    assert_eq!(rig.sent()[0].0.notify_reason, "risk_level=high (per-camera)");
}

#[tokio::test]
async fn detection_off_records_and_processes_the_clip_without_running_the_detector() {
    use crate::controls::Change;
    let rig = rig(Setup::default());
    rig.controls.set(&"front".into(), Change::Detection(false));
    let r = rig.run("front_23").await;
    assert_eq!(r.status(), ClipStatus::Done);
    assert_eq!(rig.filter.calls.load(Ordering::SeqCst), 0, "no detector run");
    assert!(r.filter_result.as_ref().is_some_and(|f| f.detected_classes.is_empty()));
    assert_eq!(rig.vlm.calls.load(Ordering::SeqCst), 0, "no trigger class, no VLM");
    assert!(rig.sent().is_empty(), "no alert from detection");
    let events = rig.events("front_23").await;
    let skipped = EventKind::StageSkipped { stage: Stage::Filter, reason: "detection off for this camera".into() };
    assert!(events.contains(&skipped), "{events:?}");
}

mod cooldown_flow;
