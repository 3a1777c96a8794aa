//! How values are kept: an rkyv archive behind the 2-byte version of its type
//! ([`Stored::VERSION`]); a value an earlier version wrote is upgraded when read.

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};

use super::{EarlyAlert, OutboxEntry, SourceFileEntry, StoreError};
use crate::domain::{
    AlertDecision, AlertStage, AnalysisResult, CameraName, Clip, ClipEvent, ClipId, ClipRecord, LogRecord, Pruned,
    Quarantine, RiskLevel, StageLog, UnixMillis,
};

/// A value kept in the store, with the version of its layout. A value written
/// by an earlier version is read through [`Stored::upgrade`].
pub trait Stored: Archive + Sized {
    const VERSION: u16;

    /// Reads a value that version `version` (older than [`Self::VERSION`]) wrote.
    fn upgrade(version: u16, body: &[u8]) -> Result<Self, String> {
        let _ = body;
        Err(format!("version {version}, this build reads {}", Self::VERSION))
    }
}

/// Archives `T` as it is laid out now; errors name what failed.
fn from_archive<T>(body: &[u8]) -> Result<T, String>
where
    T: Archive,
    T::Archived:
        for<'a> CheckBytes<HighValidator<'a, rancor::Error>> + RkyvDeserialize<T, HighDeserializer<rancor::Error>>,
{
    // rkyv needs an aligned buffer; redb's pages give no alignment guarantee.
    let mut aligned = AlignedVec::<16>::with_capacity(body.len());
    aligned.extend_from_slice(body);
    rkyv::from_bytes::<T, rancor::Error>(&aligned).map_err(|e| e.to_string())
}

pub(super) fn encode<T>(value: &T) -> Result<Vec<u8>, StoreError>
where
    T: Stored + for<'a> RkyvSerialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
{
    let body = rkyv::to_bytes::<rancor::Error>(value)
        .map_err(|e| StoreError::Corrupt { what: "value to write".into(), reason: e.to_string() })?;
    let mut out = Vec::with_capacity(body.len() + 2);
    out.extend_from_slice(&T::VERSION.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

pub(super) fn decode<T>(what: &str, bytes: &[u8]) -> Result<T, StoreError>
where
    T: Stored,
    T::Archived:
        for<'a> CheckBytes<HighValidator<'a, rancor::Error>> + RkyvDeserialize<T, HighDeserializer<rancor::Error>>,
{
    let corrupt = |reason: String| StoreError::Corrupt { what: what.to_owned(), reason };
    let (version, body) = bytes.split_at_checked(2).ok_or_else(|| corrupt("too short".into()))?;
    let version = u16::from_le_bytes([version[0], version[1]]);
    match version {
        v if v == T::VERSION => from_archive(body).map_err(corrupt),
        v if v < T::VERSION => T::upgrade(v, body).map_err(|e| corrupt(format!("upgrading from version {v}: {e}"))),
        v => Err(corrupt(format!("version {v} is newer than this build reads ({})", T::VERSION))),
    }
}

impl Stored for ClipRecord {
    /// 2: `pruned` (when, how much, why) replaces `pruned_ms`; `compacted_ms`.
    /// 3: `analysis_uri`.
    /// 4: detections are `stationary` and in `zones`; `alert_classes`.
    const VERSION: u16 = 4;

    fn upgrade(version: u16, body: &[u8]) -> Result<Self, String> {
        match version {
            1 => from_archive::<v1::ClipRecord>(body).map(|r| v3::ClipRecord::from(v2::ClipRecord::from(r)).into()),
            2 => from_archive::<v2::ClipRecord>(body).map(|r| v3::ClipRecord::from(r).into()),
            3 => from_archive::<v3::ClipRecord>(body).map(Into::into),
            v => Err(format!("version {v} is unknown")),
        }
    }
}

impl Stored for ClipEvent {
    const VERSION: u16 = 1;
}

impl Stored for SourceFileEntry {
    const VERSION: u16 = 1;
}

impl Stored for EarlyAlert {
    const VERSION: u16 = 1;
}

impl Stored for LogRecord {
    const VERSION: u16 = 1;
}

impl Stored for OutboxEntry {
    /// 2: the alert has a `stage`.
    /// 3: the alert has `occurrences` and `occurrences_text` (the cooldown).
    const VERSION: u16 = 3;

    fn upgrade(version: u16, body: &[u8]) -> Result<Self, String> {
        match version {
            1 => from_archive::<v1::OutboxEntry>(body).map(|e| v2::OutboxEntry::from(e).into()),
            2 => from_archive::<v2::OutboxEntry>(body).map(Into::into),
            v => Err(format!("version {v} is unknown")),
        }
    }
}

/// Layouts written by version 1.
pub(super) mod v1 {
    use super::*;

    #[derive(Archive, RkyvDeserialize, RkyvSerialize)]
    pub(in crate::store) struct Alert {
        clip_id: ClipId,
        camera_name: CameraName,
        storage_uri: Option<String>,
        view_url: Option<String>,
        risk_level: Option<RiskLevel>,
        activity_type: Option<String>,
        notify_reason: String,
        summary: Option<String>,
        ts: String,
        dedupe_key: String,
        upload_failed: bool,
        detected_classes: Vec<String>,
        snapshot_path: Option<String>,
    }

    #[derive(Archive, RkyvDeserialize, RkyvSerialize)]
    pub(in crate::store) struct OutboxEntry {
        clip_id: ClipId,
        notifier: String,
        alert: Alert,
        created_ms: UnixMillis,
        attempts: u32,
        next_attempt_ms: UnixMillis,
        expires_ms: UnixMillis,
        last_error: Option<String>,
    }

    impl From<OutboxEntry> for super::v2::OutboxEntry {
        fn from(e: OutboxEntry) -> Self {
            let a = e.alert;
            let stage = if a.risk_level.is_some() { AlertStage::Analyzed } else { AlertStage::Final };
            super::v2::OutboxEntry {
                clip_id: e.clip_id,
                notifier: e.notifier,
                alert: super::v2::Alert {
                    clip_id: a.clip_id,
                    camera_name: a.camera_name,
                    storage_uri: a.storage_uri,
                    view_url: a.view_url,
                    risk_level: a.risk_level,
                    activity_type: a.activity_type,
                    notify_reason: a.notify_reason,
                    summary: a.summary,
                    ts: a.ts,
                    dedupe_key: a.dedupe_key,
                    upload_failed: a.upload_failed,
                    detected_classes: a.detected_classes,
                    stage,
                    snapshot_path: a.snapshot_path,
                },
                created_ms: e.created_ms,
                attempts: e.attempts,
                next_attempt_ms: e.next_attempt_ms,
                expires_ms: e.expires_ms,
                last_error: e.last_error,
            }
        }
    }

    #[derive(Archive, RkyvDeserialize, RkyvSerialize)]
    pub(in crate::store) struct ClipRecord {
        schema_version: u16,
        clip: Clip,
        created_ms: UnixMillis,
        updated_ms: UnixMillis,
        upload: StageLog,
        filter: StageLog,
        vlm: StageLog,
        notify: StageLog,
        storage_uri: Option<String>,
        view_url: Option<String>,
        filter_result: Option<super::v3::FilterResult>,
        analysis: Option<AnalysisResult>,
        decision: Option<AlertDecision>,
        snapshot_path: Option<String>,
        completed_ms: Option<UnixMillis>,
        quarantine: Option<Quarantine>,
        pruned_ms: Option<UnixMillis>,
    }

    impl From<ClipRecord> for super::v2::ClipRecord {
        fn from(r: ClipRecord) -> Self {
            // Version 1 deleted only the recording (a local storage's copy
            // stayed) and did not keep how much it freed.
            let archive_left = r.storage_uri.as_deref().is_some_and(|u| u.starts_with("file://"));
            super::v2::ClipRecord {
                schema_version: r.schema_version,
                clip: r.clip,
                created_ms: r.created_ms,
                updated_ms: r.updated_ms,
                upload: r.upload,
                filter: r.filter,
                vlm: r.vlm,
                notify: r.notify,
                storage_uri: r.storage_uri,
                view_url: r.view_url,
                filter_result: r.filter_result,
                analysis: r.analysis,
                decision: r.decision,
                snapshot_path: r.snapshot_path,
                completed_ms: r.completed_ms,
                quarantine: r.quarantine,
                pruned: r.pruned_ms.map(|at_ms| Pruned {
                    at_ms,
                    bytes: 0,
                    reason: "over the quota (oldest first)".into(),
                    archive_left,
                }),
                compacted_ms: None,
            }
        }
    }

    #[cfg(test)]
    pub(in crate::store) fn entry(clip: &str) -> OutboxEntry {
        OutboxEntry {
            clip_id: ClipId(clip.into()),
            notifier: "mqtt".into(),
            alert: Alert {
                clip_id: ClipId(clip.into()),
                camera_name: "front".into(),
                storage_uri: None,
                view_url: None,
                risk_level: Some(RiskLevel::High),
                activity_type: Some("unknown".into()),
                notify_reason: "risk_level=high".into(),
                summary: Some("someone".into()),
                ts: "2026-01-01T00:00:00.000Z".into(),
                dedupe_key: clip.into(),
                upload_failed: false,
                detected_classes: vec!["person".into()],
                snapshot_path: None,
            },
            created_ms: 1,
            attempts: 0,
            next_attempt_ms: 1,
            expires_ms: 2,
            last_error: None,
        }
    }
}

/// Layouts written by version 2.
pub(super) mod v2 {
    use super::*;

    /// The alert of an outbox entry before the cooldown (no occurrences).
    #[derive(Archive, RkyvDeserialize, RkyvSerialize)]
    pub(in crate::store) struct Alert {
        pub(in crate::store) clip_id: ClipId,
        pub(in crate::store) camera_name: CameraName,
        pub(in crate::store) storage_uri: Option<String>,
        pub(in crate::store) view_url: Option<String>,
        pub(in crate::store) risk_level: Option<RiskLevel>,
        pub(in crate::store) activity_type: Option<String>,
        pub(in crate::store) notify_reason: String,
        pub(in crate::store) summary: Option<String>,
        pub(in crate::store) ts: String,
        pub(in crate::store) dedupe_key: String,
        pub(in crate::store) upload_failed: bool,
        pub(in crate::store) detected_classes: Vec<String>,
        pub(in crate::store) stage: AlertStage,
        pub(in crate::store) snapshot_path: Option<String>,
    }

    #[derive(Archive, RkyvDeserialize, RkyvSerialize)]
    pub(in crate::store) struct OutboxEntry {
        pub(in crate::store) clip_id: ClipId,
        pub(in crate::store) notifier: String,
        pub(in crate::store) alert: Alert,
        pub(in crate::store) created_ms: UnixMillis,
        pub(in crate::store) attempts: u32,
        pub(in crate::store) next_attempt_ms: UnixMillis,
        pub(in crate::store) expires_ms: UnixMillis,
        pub(in crate::store) last_error: Option<String>,
    }

    impl From<OutboxEntry> for super::OutboxEntry {
        fn from(e: OutboxEntry) -> Self {
            let a = e.alert;
            super::OutboxEntry {
                clip_id: e.clip_id,
                notifier: e.notifier,
                alert: crate::domain::Alert {
                    clip_id: a.clip_id,
                    camera_name: a.camera_name,
                    storage_uri: a.storage_uri,
                    view_url: a.view_url,
                    risk_level: a.risk_level,
                    activity_type: a.activity_type,
                    notify_reason: a.notify_reason,
                    summary: a.summary,
                    ts: a.ts,
                    dedupe_key: a.dedupe_key,
                    upload_failed: a.upload_failed,
                    detected_classes: a.detected_classes,
                    stage: a.stage,
                    // Every alert was its clip's own before the cooldown.
                    occurrences: 1,
                    occurrences_text: None,
                    snapshot_path: a.snapshot_path,
                },
                created_ms: e.created_ms,
                attempts: e.attempts,
                next_attempt_ms: e.next_attempt_ms,
                expires_ms: e.expires_ms,
                last_error: e.last_error,
            }
        }
    }

    #[derive(Archive, RkyvDeserialize, RkyvSerialize)]
    pub(in crate::store) struct ClipRecord {
        pub(in crate::store) schema_version: u16,
        pub(in crate::store) clip: Clip,
        pub(in crate::store) created_ms: UnixMillis,
        pub(in crate::store) updated_ms: UnixMillis,
        pub(in crate::store) upload: StageLog,
        pub(in crate::store) filter: StageLog,
        pub(in crate::store) vlm: StageLog,
        pub(in crate::store) notify: StageLog,
        pub(in crate::store) storage_uri: Option<String>,
        pub(in crate::store) view_url: Option<String>,
        pub(in crate::store) filter_result: Option<super::v3::FilterResult>,
        pub(in crate::store) analysis: Option<AnalysisResult>,
        pub(in crate::store) decision: Option<AlertDecision>,
        pub(in crate::store) snapshot_path: Option<String>,
        pub(in crate::store) completed_ms: Option<UnixMillis>,
        pub(in crate::store) quarantine: Option<Quarantine>,
        pub(in crate::store) pruned: Option<Pruned>,
        pub(in crate::store) compacted_ms: Option<UnixMillis>,
    }

    impl From<ClipRecord> for super::v3::ClipRecord {
        fn from(r: ClipRecord) -> Self {
            super::v3::ClipRecord {
                schema_version: r.schema_version,
                clip: r.clip,
                created_ms: r.created_ms,
                updated_ms: r.updated_ms,
                upload: r.upload,
                filter: r.filter,
                vlm: r.vlm,
                notify: r.notify,
                storage_uri: r.storage_uri,
                view_url: r.view_url,
                filter_result: r.filter_result,
                analysis: r.analysis,
                decision: r.decision,
                snapshot_path: r.snapshot_path,
                completed_ms: r.completed_ms,
                quarantine: r.quarantine,
                pruned: r.pruned,
                compacted_ms: r.compacted_ms,
                analysis_uri: None,
            }
        }
    }
}

/// Layouts written by version 3 (and, for the filter result, versions 1 and 2).
pub(super) mod v3 {
    use super::*;
    use crate::domain::Detection as DetectionNow;
    use crate::domain::FilterResult as FilterResultNow;

    #[derive(Archive, RkyvDeserialize, RkyvSerialize)]
    pub(in crate::store) struct Detection {
        pub(in crate::store) class: String,
        pub(in crate::store) confidence: f32,
        pub(in crate::store) bbox: [f32; 4],
        pub(in crate::store) ts_s: f32,
    }

    #[derive(Archive, RkyvDeserialize, RkyvSerialize)]
    pub(in crate::store) struct FilterResult {
        pub(in crate::store) detected_classes: Vec<String>,
        pub(in crate::store) confidence: f32,
        pub(in crate::store) model: String,
        pub(in crate::store) sampled_frames: u32,
        pub(in crate::store) detections: Vec<Detection>,
    }

    impl From<FilterResult> for FilterResultNow {
        /// Before tracking, every detected class counted for the alert.
        fn from(f: FilterResult) -> Self {
            FilterResultNow {
                alert_classes: f.detected_classes.clone(),
                detected_classes: f.detected_classes,
                confidence: f.confidence,
                model: f.model,
                sampled_frames: f.sampled_frames,
                detections: f
                    .detections
                    .into_iter()
                    .map(|d| DetectionNow::new(d.class, d.confidence, d.bbox, d.ts_s))
                    .collect(),
            }
        }
    }

    #[derive(Archive, RkyvDeserialize, RkyvSerialize)]
    pub(in crate::store) struct ClipRecord {
        pub(in crate::store) schema_version: u16,
        pub(in crate::store) clip: Clip,
        pub(in crate::store) created_ms: UnixMillis,
        pub(in crate::store) updated_ms: UnixMillis,
        pub(in crate::store) upload: StageLog,
        pub(in crate::store) filter: StageLog,
        pub(in crate::store) vlm: StageLog,
        pub(in crate::store) notify: StageLog,
        pub(in crate::store) storage_uri: Option<String>,
        pub(in crate::store) view_url: Option<String>,
        pub(in crate::store) filter_result: Option<FilterResult>,
        pub(in crate::store) analysis: Option<AnalysisResult>,
        pub(in crate::store) decision: Option<AlertDecision>,
        pub(in crate::store) snapshot_path: Option<String>,
        pub(in crate::store) completed_ms: Option<UnixMillis>,
        pub(in crate::store) quarantine: Option<Quarantine>,
        pub(in crate::store) pruned: Option<Pruned>,
        pub(in crate::store) compacted_ms: Option<UnixMillis>,
        pub(in crate::store) analysis_uri: Option<String>,
    }

    impl From<ClipRecord> for super::ClipRecord {
        fn from(r: ClipRecord) -> Self {
            super::ClipRecord {
                schema_version: r.schema_version,
                clip: r.clip,
                created_ms: r.created_ms,
                updated_ms: r.updated_ms,
                upload: r.upload,
                filter: r.filter,
                vlm: r.vlm,
                notify: r.notify,
                storage_uri: r.storage_uri,
                view_url: r.view_url,
                filter_result: r.filter_result.map(Into::into),
                analysis: r.analysis,
                decision: r.decision,
                snapshot_path: r.snapshot_path,
                completed_ms: r.completed_ms,
                quarantine: r.quarantine,
                pruned: r.pruned,
                compacted_ms: r.compacted_ms,
                analysis_uri: r.analysis_uri,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clip_record_written_by_version_3_reads_with_every_detected_class_an_alert_class() {
        let now = ClipRecord::new(Clip {
            clip_id: ClipId("front_3".into()),
            camera: "front".into(),
            local_path: "/x/front_3.mp4".into(),
            start_ms: 1,
            end_ms: 2,
            source_backend: "folder".into(),
        });
        let old = v3::ClipRecord {
            schema_version: now.schema_version,
            clip: now.clip.clone(),
            created_ms: 1,
            updated_ms: 2,
            upload: now.upload.clone(),
            filter: now.filter.clone(),
            vlm: now.vlm.clone(),
            notify: now.notify.clone(),
            storage_uri: None,
            view_url: None,
            filter_result: Some(v3::FilterResult {
                detected_classes: vec!["person".into(), "car".into()],
                confidence: 0.8,
                model: "yolox".into(),
                sampled_frames: 12,
                detections: vec![v3::Detection {
                    class: "person".into(),
                    confidence: 0.8,
                    bbox: [1.0, 2.0, 3.0, 4.0],
                    ts_s: 1.5,
                }],
            }),
            analysis: None,
            decision: Some(AlertDecision { notify: true, reason: "detected=person (no VLM analysis)".into() }),
            snapshot_path: None,
            completed_ms: Some(3),
            quarantine: None,
            pruned: None,
            compacted_ms: None,
            analysis_uri: Some("file:///a.json".into()),
        };
        let mut bytes = 3u16.to_le_bytes().to_vec();
        bytes.extend_from_slice(&rkyv::to_bytes::<rancor::Error>(&old).unwrap());
        let read = decode::<ClipRecord>("clip front_3", &bytes).unwrap();
        let f = read.filter_result.clone().unwrap();
        assert_eq!(f.alert_classes, ["person", "car"], "old records alerted on everything detected");
        assert_eq!(f.detections, [crate::domain::Detection::new("person", 0.8, [1.0, 2.0, 3.0, 4.0], 1.5)]);
        assert!(!f.detections[0].stationary && f.detections[0].zones.is_empty());
        assert_eq!((read.analysis_uri.as_deref(), read.completed_ms), (Some("file:///a.json"), Some(3)));
        // And the current layout round-trips under version 4.
        let mut r = read.clone();
        r.filter_result = Some(f);
        let again = decode::<ClipRecord>("clip", &encode(&r).unwrap()).unwrap();
        assert_eq!(again, r);
    }
}
