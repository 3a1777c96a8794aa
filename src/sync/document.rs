//! The clip-state document (`clip_states.data`) and the event rows, built from
//! the store's values. Pure: no I/O.

use serde_json::{Value, json};

use crate::domain::{ClipEvent, ClipRecord, EventKind, SCHEMA_VERSION, StageLog, rfc3339};

/// The clip-state document of a record, as in the reference design: summary
/// status, the per-stage journal, pointers and results.
pub fn clip_state(r: &ClipRecord) -> Value {
    let ts = |ms: Option<i64>| ms.map(rfc3339);
    let stage = |s: &StageLog| {
        json!({
            "status": s.status,
            "attempts": s.attempts,
            "started_at": ts(s.started_ms),
            "finished_at": ts(s.finished_ms),
            "last_error": s.last_error,
        })
    };
    // The notify stage's end is when the alert went out (when it did).
    let alert_sent_at = match (&r.decision, r.notify.status) {
        (Some(d), crate::domain::StageStatus::Ok) if d.notify => ts(r.notify.finished_ms),
        _ => None,
    };
    json!({
        "schema_version": SCHEMA_VERSION,
        "clip_id": r.clip.clip_id,
        "status": r.status(),
        "camera_name": r.clip.camera,
        "source_backend": r.clip.source_backend,
        "local_path": r.clip.local_path,
        "storage_uri": r.storage_uri,
        "view_url": r.view_url,
        "start_ts": rfc3339(r.clip.start_ms),
        "end_ts": rfc3339(r.clip.end_ms),
        "duration_s": r.clip.duration_s(),
        "stages": {
            "upload": stage(&r.upload),
            "filter": stage(&r.filter),
            "vlm": stage(&r.vlm),
            "notify": stage(&r.notify),
        },
        "filter_result": r.filter_result,
        "analysis_result": r.analysis,
        "alert_decision": r.decision.as_ref().map(|d| json!({"notify": d.notify, "notify_reason": d.reason})),
        "alert_sent_at": alert_sent_at,
        "completed_at": ts(r.completed_ms),
        "quarantine": r.quarantine,
        "pruned": r.pruned.as_ref().map(|p| json!({"at": rfc3339(p.at_ms), "bytes": p.bytes, "reason": p.reason})),
    })
}

/// The `event_type` column of an event (its `type` tag).
pub fn event_type(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::ClipRecorded => "clip_recorded",
        EventKind::StageStarted { .. } => "stage_started",
        EventKind::StageSucceeded { .. } => "stage_succeeded",
        EventKind::StageFailed { .. } => "stage_failed",
        EventKind::StageSkipped { .. } => "stage_skipped",
        EventKind::LocalFilePruned { .. } => "local_file_pruned",
        EventKind::AlertDecided { .. } => "alert_decided",
        EventKind::NotificationDelivered { .. } => "notification_delivered",
        EventKind::NotificationExpired { .. } => "notification_expired",
        EventKind::ClipCompleted => "clip_completed",
        EventKind::Quarantined { .. } => "quarantined",
        EventKind::Requeued { .. } => "requeued",
    }
}

/// The `data` column of an event: the event as JSON.
pub fn event_data(e: &ClipEvent) -> Value {
    serde_json::to_value(e).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AlertDecision, AnalysisResult, Clip, Detection, FilterResult, RiskLevel, Stage, StageStatus};

    fn record() -> ClipRecord {
        let mut r = ClipRecord::new(Clip {
            clip_id: "porch_1790000000".into(),
            camera: "porch".into(),
            local_path: "/data/recordings/porch_1790000000.mp4".into(),
            start_ms: 1_790_000_000_000,
            end_ms: 1_790_000_012_500,
            source_backend: "folder".into(),
        });
        r.upload = StageLog {
            status: StageStatus::Ok,
            attempts: 1,
            started_ms: Some(1_790_000_013_000),
            finished_ms: Some(1_790_000_014_000),
            last_error: None,
        };
        r.filter =
            StageLog { status: StageStatus::Ok, attempts: 2, last_error: Some("timeout".into()), ..r.upload.clone() };
        r.vlm = StageLog { status: StageStatus::Ok, attempts: 1, ..r.upload.clone() };
        r.notify = StageLog { status: StageStatus::Ok, finished_ms: Some(1_790_000_020_000), ..r.upload.clone() };
        r.storage_uri = Some("file:///data/clips/porch/porch_1790000000.mp4".into());
        r.view_url = Some("http://nas/porch_1790000000.mp4".into());
        r.filter_result = Some(FilterResult {
            detected_classes: vec!["person".into(), "car".into()],
            alert_classes: vec!["person".into()],
            confidence: 0.5,
            model: "yolox_nano".into(),
            sampled_frames: 12,
            detections: vec![
                Detection { zones: vec!["door".into()], ..Detection::new("person", 0.5, [1.0, 2.0, 3.0, 4.0], 2.5) },
                Detection { stationary: true, ..Detection::new("car", 0.45, [5.0, 6.0, 7.0, 8.0], 1.0) },
            ],
        });
        r.analysis = Some(AnalysisResult {
            risk_level: RiskLevel::High,
            activity_type: "suspicious".into(),
            summary: "A person tries the door.".into(),
            entities_timeline: vec![],
            requires_review: false,
            model: "vlm".into(),
        });
        r.decision = Some(AlertDecision { notify: true, reason: "risk_level=high".into() });
        r.completed_ms = Some(1_790_000_020_000);
        r
    }

    #[test]
    fn the_document_has_the_reference_shape() {
        let d = clip_state(&record());
        assert_eq!(d["schema_version"], 1);
        assert_eq!(d["status"], "done");
        assert_eq!(d["camera_name"], "porch");
        assert_eq!(d["storage_uri"], "file:///data/clips/porch/porch_1790000000.mp4");
        assert_eq!(d["view_url"], "http://nas/porch_1790000000.mp4");
        assert_eq!(d["start_ts"], "2026-09-21T14:13:20.000Z");
        assert_eq!(d["end_ts"], "2026-09-21T14:13:32.500Z");
        assert_eq!(d["duration_s"], 12.5);
        for stage in Stage::ALL {
            let s = &d["stages"][stage.as_str()];
            assert_eq!(s["status"], "ok", "{stage}");
            for key in ["attempts", "started_at", "finished_at", "last_error"] {
                assert!(s.get(key).is_some(), "{stage}.{key}");
            }
        }
        assert_eq!(d["stages"]["filter"]["attempts"], 2);
        assert_eq!(d["stages"]["filter"]["last_error"], "timeout");
        assert_eq!(d["stages"]["upload"]["started_at"], "2026-09-21T14:13:33.000Z");
        assert_eq!(d["filter_result"]["detected_classes"], json!(["person", "car"]));
        // Why the car did not alert: it stood still; the person was at the door.
        assert_eq!(d["filter_result"]["alert_classes"], json!(["person"]));
        let detections = &d["filter_result"]["detections"];
        assert_eq!((&detections[0]["stationary"], &detections[0]["zones"]), (&json!(false), &json!(["door"])));
        assert_eq!((&detections[1]["class"], &detections[1]["stationary"]), (&json!("car"), &json!(true)));
        assert_eq!(d["analysis_result"]["risk_level"], "high");
        assert_eq!(d["alert_decision"], json!({"notify": true, "notify_reason": "risk_level=high"}));
        assert_eq!(d["alert_sent_at"], "2026-09-21T14:13:40.000Z");
    }

    #[test]
    fn a_fresh_clip_is_queued_with_pending_stages_and_no_results() {
        let mut r = record();
        for stage in Stage::ALL {
            *r.stage_mut(stage) = StageLog::default();
        }
        (r.filter_result, r.analysis, r.decision, r.completed_ms) = (None, None, None, None);
        let d = clip_state(&r);
        assert_eq!(d["status"], "queued_local");
        assert_eq!(
            d["stages"]["notify"],
            json!({"status": "pending", "attempts": 0, "started_at": null, "finished_at": null, "last_error": null})
        );
        assert!(d["filter_result"].is_null() && d["analysis_result"].is_null() && d["alert_decision"].is_null());
        assert!(d["alert_sent_at"].is_null());
    }

    #[test]
    fn an_event_keeps_its_type_tag() {
        let r = record();
        let e = ClipEvent::new(&r.clip, EventKind::StageSucceeded { stage: Stage::Vlm });
        assert_eq!(event_type(&e.kind), "stage_succeeded");
        assert_eq!(event_data(&e)["kind"]["type"], event_type(&e.kind));
    }
}
