//! Plain data shared by every module: clips, their records and stage journal,
//! filter and analysis results, alert decisions and alerts, log records. No I/O here.

use std::fmt;

use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};
use serde::{Deserialize, Serialize};

mod filter;
mod logs;
mod naming;
pub use filter::{Detection, FilterResult};
pub use logs::{FieldValue, LogField, LogLevel, LogRecord};
pub use naming::{clip_id_for_file, with_suffix};

/// Version of the clip-state document (`schema_version` of records and events,
/// as in the reference design). How the store lays a value out has its own
/// version per type (`store::Stored::VERSION`).
pub const SCHEMA_VERSION: u16 = 1;

/// Milliseconds since the Unix epoch (UTC).
pub type UnixMillis = i64;

pub fn now_ms() -> UnixMillis {
    chrono::Utc::now().timestamp_millis()
}

/// RFC 3339 rendering of a timestamp, for payloads and logs.
pub fn rfc3339(ms: UnixMillis) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
}

string_id!(
    /// Identity of a clip: `{camera}_{unix_seconds}`, or a dropped file's own safe
    /// name (see [`ClipId::is_safe`]), plus `_2`, `_3` on collisions.
    ClipId
);
string_id!(
    /// A configured camera's name.
    CameraName
);

/// A finished clip file, ready for the pipeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct Clip {
    pub clip_id: ClipId,
    pub camera: CameraName,
    pub local_path: String,
    pub start_ms: UnixMillis,
    pub end_ms: UnixMillis,
    pub source_backend: String,
}

impl Clip {
    pub fn duration_s(&self) -> f64 {
        (self.end_ms - self.start_ms).max(0) as f64 / 1000.0
    }
}

/// The pipeline stages, in order.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Upload,
    Filter,
    Vlm,
    Notify,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Upload, Stage::Filter, Stage::Vlm, Stage::Notify];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Upload => "upload",
            Stage::Filter => "filter",
            Stage::Vlm => "vlm",
            Stage::Notify => "notify",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    #[default]
    Pending,
    Running,
    Ok,
    Error,
    Skipped,
}

/// The journal of one stage: attempts, timing and the last error.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct StageLog {
    pub status: StageStatus,
    pub attempts: u32,
    pub started_ms: Option<UnixMillis>,
    pub finished_ms: Option<UnixMillis>,
    pub last_error: Option<String>,
}

/// Summary status of a clip, derived from its stage journal (see [`ClipRecord::status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipStatus {
    QueuedLocal,
    Uploaded,
    Filtered,
    Analyzed,
    Done,
    Error,
    Quarantined,
}

impl ClipStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClipStatus::QueuedLocal => "queued_local",
            ClipStatus::Uploaded => "uploaded",
            ClipStatus::Filtered => "filtered",
            ClipStatus::Analyzed => "analyzed",
            ClipStatus::Done => "done",
            ClipStatus::Error => "error",
            ClipStatus::Quarantined => "quarantined",
        }
    }
}

impl std::str::FromStr for ClipStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        use ClipStatus::*;
        let all = [QueuedLocal, Uploaded, Filtered, Analyzed, Done, Error, Quarantined];
        all.into_iter().find(|c| c.as_str() == s).ok_or_else(|| {
            let names: Vec<_> = all.iter().map(|c| c.as_str()).collect();
            format!("`{s}` is not a clip status (one of {})", names.join(", "))
        })
    }
}

impl fmt::Display for ClipStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum RiskLevel {
    Low,
    Medium,
    High,
}

impl RiskLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Low => "low",
            RiskLevel::Medium => "medium",
            RiskLevel::High => "high",
        }
    }
}

impl fmt::Display for RiskLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct TimelineEntry {
    /// Seconds from the start of the clip.
    pub ts_s: f32,
    pub entity: String,
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct AnalysisResult {
    pub risk_level: RiskLevel,
    pub activity_type: String,
    pub summary: String,
    pub entities_timeline: Vec<TimelineEntry>,
    pub requires_review: bool,
    pub model: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct AlertDecision {
    pub notify: bool,
    /// Why, e.g. `risk_level=high` or `activity_type=delivery (per-camera)`.
    pub reason: String,
}

/// Which alert of a clip this is. A live camera sends `detected` as soon as a
/// notify class is confirmed, while the clip is still being recorded; the alert
/// after the clip's analysis carries the same `dedupe_key`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum AlertStage {
    /// The early alert: an object was confirmed while the camera records.
    Detected,
    /// The final alert, with the VLM's analysis.
    Analyzed,
    /// The final alert of a clip without analysis (no VLM, skipped or failed).
    #[default]
    Final,
}

impl AlertStage {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStage::Detected => "detected",
            AlertStage::Analyzed => "analyzed",
            AlertStage::Final => "final",
        }
    }
}

/// The keys of the alert payload, as Home Assistant automations see them.
pub const ALERT_FIELDS: [&str; 15] = [
    "clip_id",
    "camera_name",
    "storage_uri",
    "view_url",
    "risk_level",
    "activity_type",
    "notify_reason",
    "summary",
    "ts",
    "dedupe_key",
    "upload_failed",
    "detected_classes",
    "stage",
    "occurrences",
    "occurrences_text",
];

/// The alert payload sent to notifiers (the MQTT JSON body).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct Alert {
    pub clip_id: ClipId,
    pub camera_name: CameraName,
    pub storage_uri: Option<String>,
    pub view_url: Option<String>,
    pub risk_level: Option<RiskLevel>,
    pub activity_type: Option<String>,
    pub notify_reason: String,
    pub summary: Option<String>,
    /// RFC 3339 time of the alert.
    pub ts: String,
    pub dedupe_key: String,
    pub upload_failed: bool,
    /// Classes the object filter found (e.g. `person`), for automations.
    pub detected_classes: Vec<String>,
    /// `detected` (early), then `analyzed` or `final` for the same `dedupe_key`.
    pub stage: AlertStage,
    /// Clips this alert covers so far: 1, then 2, 3, … for the updates a
    /// continuing presence sends with the same `dedupe_key` (the cooldown).
    pub occurrences: u32,
    /// The count in words for an update, e.g. `3 clips since 14:02`.
    pub occurrences_text: Option<String>,
    /// Local path of a JPEG snapshot of the most telling frame, when one was made
    /// (notifiers send the image itself; the path stays out of payloads).
    #[serde(skip)]
    pub snapshot_path: Option<String>,
}

/// The durable record of one clip: the manifest entry and its stage journal.
#[derive(Clone, Debug, PartialEq, Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize)]
pub struct ClipRecord {
    pub schema_version: u16,
    pub clip: Clip,
    pub created_ms: UnixMillis,
    pub updated_ms: UnixMillis,
    pub upload: StageLog,
    pub filter: StageLog,
    pub vlm: StageLog,
    pub notify: StageLog,
    pub storage_uri: Option<String>,
    pub view_url: Option<String>,
    pub filter_result: Option<FilterResult>,
    pub analysis: Option<AnalysisResult>,
    pub decision: Option<AlertDecision>,
    /// JPEG of the most telling frame, when the filter found something.
    pub snapshot_path: Option<String>,
    /// Set when the pipeline has run every stage for this clip.
    pub completed_ms: Option<UnixMillis>,
    /// Set when the clip file could not be read and was moved aside.
    pub quarantine: Option<Quarantine>,
    /// Set when retention deleted the clip's files from the box.
    pub pruned: Option<Pruned>,
    /// Set when the record of a pruned clip was reduced to its summary
    /// (detections, VLM timeline and events dropped).
    pub compacted_ms: Option<UnixMillis>,
    /// Where the analysis is stored as JSON next to the clip (`put_json`).
    pub analysis_uri: Option<String>,
}

/// What retention deleted of a clip, when and why.
#[derive(Clone, Debug, PartialEq, Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize)]
pub struct Pruned {
    pub at_ms: UnixMillis,
    /// Bytes the deletion freed.
    pub bytes: u64,
    /// Why, e.g. `over the quota (oldest first)` or `older than max_age_days`.
    pub reason: String,
    /// The clip's copy in a local storage on the box is still there (version 1
    /// deleted only the recording); retention deletes it when its turn comes.
    pub archive_left: bool,
}

#[derive(Clone, Debug, PartialEq, Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize)]
pub struct Quarantine {
    pub reason: String,
    pub moved_to: String,
}

impl ClipRecord {
    pub fn new(clip: Clip) -> Self {
        let now = now_ms();
        Self {
            schema_version: SCHEMA_VERSION,
            clip,
            created_ms: now,
            updated_ms: now,
            upload: StageLog::default(),
            filter: StageLog::default(),
            vlm: StageLog::default(),
            notify: StageLog::default(),
            storage_uri: None,
            view_url: None,
            filter_result: None,
            analysis: None,
            decision: None,
            snapshot_path: None,
            completed_ms: None,
            quarantine: None,
            pruned: None,
            compacted_ms: None,
            analysis_uri: None,
        }
    }

    pub fn stage(&self, stage: Stage) -> &StageLog {
        match stage {
            Stage::Upload => &self.upload,
            Stage::Filter => &self.filter,
            Stage::Vlm => &self.vlm,
            Stage::Notify => &self.notify,
        }
    }

    pub fn stage_mut(&mut self, stage: Stage) -> &mut StageLog {
        match stage {
            Stage::Upload => &mut self.upload,
            Stage::Filter => &mut self.filter,
            Stage::Vlm => &mut self.vlm,
            Stage::Notify => &mut self.notify,
        }
    }

    /// The summary status, derived from the stage journal as in the reference design:
    /// any stage in error → `error`; notify ok, or the run completed with no
    /// notification still in the outbox → `done`; then the furthest successful stage. A later success (a background upload retry, a
    /// notification delivered from the outbox) turns `error` back into `done`.
    pub fn status(&self) -> ClipStatus {
        if self.quarantine.is_some() {
            return ClipStatus::Quarantined;
        }
        if Stage::ALL.iter().any(|s| self.stage(*s).status == StageStatus::Error) {
            return ClipStatus::Error;
        }
        let delivering = self.notify.status == StageStatus::Running;
        if self.notify.status == StageStatus::Ok || (self.completed_ms.is_some() && !delivering) {
            return ClipStatus::Done;
        }
        if self.vlm.status == StageStatus::Ok {
            return ClipStatus::Analyzed;
        }
        if self.filter.status == StageStatus::Ok {
            return ClipStatus::Filtered;
        }
        if self.upload.status == StageStatus::Ok {
            return ClipStatus::Uploaded;
        }
        ClipStatus::QueuedLocal
    }

    /// Whether some of the clip's files may still be on the box.
    pub fn has_files(&self) -> bool {
        self.pruned.as_ref().is_none_or(|p| p.archive_left)
    }

    /// Whether the pipeline still owes this clip a run (recovery resumes these).
    pub fn needs_processing(&self) -> bool {
        self.completed_ms.is_none() && self.quarantine.is_none()
    }
}

/// What happened to a clip; appended to the event log with each state change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    ClipRecorded,
    StageStarted {
        stage: Stage,
        attempt: u32,
    },
    StageSucceeded {
        stage: Stage,
    },
    StageFailed {
        stage: Stage,
        attempt: u32,
        error: String,
        will_retry: bool,
    },
    StageSkipped {
        stage: Stage,
        reason: String,
    },
    LocalFilePruned {
        bytes: u64,
    },
    AlertDecided {
        notify: bool,
        reason: String,
    },
    NotificationDelivered {
        notifier: String,
    },
    NotificationExpired {
        notifier: String,
        error: String,
    },
    ClipCompleted,
    Quarantined {
        reason: String,
    },
    /// A quarantined file reads now: it went back into the recordings.
    Requeued {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct ClipEvent {
    pub schema_version: u16,
    pub clip_id: ClipId,
    pub camera: CameraName,
    pub ts_ms: UnixMillis,
    pub kind: EventKind,
}

impl ClipEvent {
    pub fn new(clip: &Clip, kind: EventKind) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            clip_id: clip.clip_id.clone(),
            camera: clip.camera.clone(),
            ts_ms: now_ms(),
            kind,
        }
    }
}

/// A clip as the API and the CLI show it: the record and its derived status
/// (the JSON of `/api/v1/clips`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipSummary {
    #[serde(flatten)]
    pub record: ClipRecord,
    pub status: ClipStatus,
}

impl ClipSummary {
    pub fn of(record: &ClipRecord) -> ClipSummary {
        ClipSummary { record: record.clone(), status: record.status() }
    }

    /// What became of the clip in one line: its quarantine, its alert decision,
    /// else the first stage error.
    pub fn outcome(&self) -> String {
        let r = &self.record;
        if let Some(q) = &r.quarantine {
            return q.reason.clone();
        }
        if let Some(d) = &r.decision {
            let alert = if d.notify { "ALERT" } else { "no alert" };
            return format!("{alert}: {}", d.reason);
        }
        [("filter", &r.filter), ("upload", &r.upload), ("vlm", &r.vlm), ("notify", &r.notify)]
            .iter()
            .find_map(|(stage, log)| log.last_error.as_ref().map(|e| format!("{stage}: {e}")))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ClipRecord {
        ClipRecord::new(Clip {
            clip_id: "front_1".into(),
            camera: "front".into(),
            local_path: "/x/front_1.mp4".into(),
            start_ms: 0,
            end_ms: 2000,
            source_backend: "folder".into(),
        })
    }

    #[test]
    fn status_follows_the_furthest_stage_and_errors_win() {
        let mut r = record();
        assert_eq!(r.status(), ClipStatus::QueuedLocal);
        r.upload.status = StageStatus::Ok;
        assert_eq!(r.status(), ClipStatus::Uploaded);
        r.filter.status = StageStatus::Ok;
        assert_eq!(r.status(), ClipStatus::Filtered);
        r.vlm.status = StageStatus::Ok;
        assert_eq!(r.status(), ClipStatus::Analyzed);
        r.notify.status = StageStatus::Error;
        assert_eq!(r.status(), ClipStatus::Error);
        r.notify.status = StageStatus::Ok;
        assert_eq!(r.status(), ClipStatus::Done);
    }

    #[test]
    fn a_completed_run_without_notification_is_done() {
        let mut r = record();
        r.filter.status = StageStatus::Ok;
        r.vlm.status = StageStatus::Skipped;
        r.notify.status = StageStatus::Skipped;
        r.completed_ms = Some(1);
        assert_eq!(r.status(), ClipStatus::Done);
        assert!(!r.needs_processing());
    }

    #[test]
    fn risk_levels_are_ordered() {
        assert!(RiskLevel::High > RiskLevel::Medium && RiskLevel::Medium > RiskLevel::Low);
    }
}
