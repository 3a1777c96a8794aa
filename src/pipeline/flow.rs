//! The per-clip flow: upload ‖ filter → VLM → policy → notify, each stage's
//! result committed with its events.

use std::path::PathBuf;
use std::sync::Arc;

use tracing::{error, info, warn};

use super::stage::{AttemptError, StageOutcome};
use super::{Pipeline, cooldown};
use crate::config::RunMode;
use crate::domain::{
    Alert, AlertDecision, AlertStage, AnalysisResult, CameraName, ClipId, ClipRecord, EventKind, FilterResult, Stage,
    StageStatus, rfc3339,
};
use crate::filter::tracking::TrackContext;
use crate::store::StoreError;

/// Where an uploaded clip is.
#[derive(Debug, Clone)]
struct Uploaded {
    storage_uri: String,
    view_url: Option<String>,
}

/// The object filter's result, with the alert snapshot's path.
#[derive(Debug, Clone)]
struct Filtered {
    result: FilterResult,
    snapshot_path: Option<String>,
}

impl Pipeline {
    /// The per-clip flow. Errors here are store failures: stage failures are
    /// recorded in the clip's journal and handled as the rules say.
    pub(super) async fn process(self: &Arc<Self>, id: &ClipId) -> Result<(), StoreError> {
        let key = id.0.clone();
        let Some(record) = self.parts.store.run(move |s| s.get_clip(&key)).await? else {
            warn!("no record for clip; nothing to do");
            return Ok(());
        };
        if !record.needs_processing() {
            return Ok(());
        }
        // Kept until the clip is processed, however that ends.
        let Some((record, _fetched)) = self.with_local_copy(record).await? else { return Ok(()) };
        let clip = record.clip.clone();
        let camera = clip.camera.clone();
        tracing::Span::current().record("camera", camera.as_str());
        info!(camera = %camera, path = %clip.local_path, "processing clip");

        // Upload ‖ filter; either may be done already when resuming.
        let (upload, filter) = tokio::join!(self.upload_stage(&record), self.filter_stage(&record));
        let upload = match upload? {
            StageOutcome::Done(u) => Some(u),
            // Degrades: the alert goes out without a link.
            StageOutcome::Failed(_) => None,
            StageOutcome::Interrupted => return Ok(()),
        };
        let Filtered { result: filter, snapshot_path } = match filter? {
            StageOutcome::Done(f) => f,
            StageOutcome::Failed(e) => {
                error!(camera = %camera, error = %crate::telemetry::chain(&e), "filter failed; the clip ends in error");
                self.complete(&clip, |_| {}).await?;
                self.stats.clips_failed.inc();
                return Ok(());
            }
            StageOutcome::Interrupted => return Ok(()),
        };

        // VLM, when the gate says so.
        let analysis = match self.vlm_stage(&record, &filter).await? {
            StageOutcome::Done(a) => Some(a),
            // Degrades: the policy decides on the filter alone.
            StageOutcome::Skipped(_) | StageOutcome::Failed(_) => None,
            StageOutcome::Interrupted => return Ok(()),
        };
        if let (Some(a), Some(_)) = (&analysis, &upload)
            && record.analysis_uri.is_none()
        {
            self.store_analysis(&clip, a).await?;
        }
        // The frames live detection kept for the VLM have served.
        let _ = tokio::fs::remove_dir_all(crate::fsutil::frames_dir(std::path::Path::new(&clip.local_path))).await;

        // Policy. A clip that had an early alert always gets its final alert, so
        // that the early one can be updated (e.g. to low risk).
        // The camera's switches: its minimum risk level, and alerts off sends nothing.
        let controls = self.parts.controls.get(&camera);
        let mut decision =
            self.parts.policy.decide_with_min_risk(&camera, &filter, analysis.as_ref(), controls.min_risk_level);
        if !controls.alerts {
            decision =
                AlertDecision { notify: false, reason: format!("alerts off for this camera ({})", decision.reason) };
        }
        let key = clip.clip_id.0.clone();
        let early = self.parts.store.run(move |s| s.early_alert(&key)).await?;
        info!(camera = %camera, notify = decision.notify, reason = %decision.reason, early_alert = early.is_some(), "alert decision");
        let notifiers = self.parts.notifiers.names();
        let send = controls.alerts && (decision.notify || early.is_some());
        if !send || notifiers.is_empty() {
            let reason = if decision.notify { "no notifiers configured".to_owned() } else { decision.reason.clone() };
            let d = decision.clone();
            let now = self.now();
            let id = clip.clip_id.0.clone();
            self.parts
                .store
                .run(move |s| {
                    s.write(|w| {
                        w.remove_early_alert(&id)?;
                        w.update_clip(
                            &id,
                            [
                                EventKind::AlertDecided { notify: d.notify, reason: d.reason.clone() },
                                EventKind::StageSkipped { stage: Stage::Notify, reason },
                                EventKind::ClipCompleted,
                            ],
                            move |r| {
                                r.decision = Some(d);
                                r.notify.status = StageStatus::Skipped;
                                r.completed_ms = Some(now);
                            },
                        )
                    })
                })
                .await?;
            self.stats.clips_completed.inc();
            return Ok(());
        }

        // Notify through the outbox: queued durably with the decision, delivered
        // by the outbox loop (now, and again after failures until the TTL). The
        // final alert supersedes an early one still waiting in the outbox. The
        // cooldown is decided in the same transaction: a clip inside an open
        // alert's window updates it (same key, counted), only for the notifiers
        // that take updates.
        let now = self.now();
        let template = Alert {
            clip_id: clip.clip_id.clone(),
            camera_name: camera.clone(),
            storage_uri: upload.as_ref().map(|u| u.storage_uri.clone()),
            view_url: upload.as_ref().and_then(|u| u.view_url.clone()),
            risk_level: analysis.as_ref().map(|a| a.risk_level),
            activity_type: analysis.as_ref().map(|a| a.activity_type.clone()),
            notify_reason: decision.reason.clone(),
            summary: analysis.as_ref().map(|a| a.summary.clone()),
            ts: rfc3339(now),
            dedupe_key: clip.clip_id.0.clone(),
            upload_failed: upload.is_none(),
            detected_classes: filter.detected_classes.clone(),
            stage: if analysis.is_some() { AlertStage::Analyzed } else { AlertStage::Final },
            occurrences: 1,
            occurrences_text: None,
            snapshot_path,
        };
        let notify_classes = self.parts.policy.notify_classes(&camera);
        let classes = cooldown::cooldown_classes(cooldown::alert_classes(&filter), &notify_classes);
        let cooldown_ms = (self.parts.policy.cooldown_s(&camera) as i64).saturating_mul(1000);
        let (everyone, updated) = (notifiers, self.parts.notifiers.recipients(true));
        let ttl_ms = self.notify_ttl_ms();
        let (id, own, d) = (clip.clip_id.0.clone(), early.is_some(), decision.clone());
        let (verdict, queued) = self
            .parts
            .store
            .run(move |s| {
                s.write(|w| {
                    let open = w.open_alerts(template.camera_name.as_str())?;
                    let risk = template.risk_level;
                    let req = cooldown::Request { clip_id: &id, classes: &classes, risk, now, cooldown_ms, own };
                    let (verdict, next) = cooldown::decide(&open, &req);
                    if cooldown_ms > 0 || !open.is_empty() {
                        w.put_open_alerts(template.camera_name.as_str(), next)?;
                    }
                    let reason = verdict.reason(&d.reason);
                    let alert = Alert {
                        dedupe_key: verdict.dedupe_key.clone(),
                        occurrences: verdict.occurrences,
                        occurrences_text: verdict.text(),
                        notify_reason: reason.clone(),
                        ..template
                    };
                    let to = if verdict.kind == cooldown::Kind::Update { &updated } else { &everyone };
                    let entries = super::outbox_entries(to, &alert, now, ttl_ms);
                    w.remove_early_alert(&id)?;
                    w.remove_pending_early_notifications(&id)?;
                    for e in &entries {
                        w.enqueue_notification(e)?;
                    }
                    let decided = EventKind::AlertDecided { notify: d.notify, reason: reason.clone() };
                    let queued = !entries.is_empty();
                    let notify_event = if queued {
                        EventKind::StageStarted { stage: Stage::Notify, attempt: 1 }
                    } else {
                        let why = format!("an update of alert {}: no notifier takes updates", verdict.dedupe_key);
                        EventKind::StageSkipped { stage: Stage::Notify, reason: why }
                    };
                    w.update_clip(&id, [decided, notify_event, EventKind::ClipCompleted], |r| {
                        r.decision = Some(AlertDecision { notify: d.notify, reason });
                        if queued {
                            r.notify.status = StageStatus::Running;
                            r.notify.started_ms = Some(now);
                        } else {
                            r.notify.status = StageStatus::Skipped;
                        }
                        r.completed_ms = Some(now);
                    })?;
                    Ok((verdict, queued))
                })
            })
            .await?;
        info!(
            camera = %camera, kind = ?verdict.kind, dedupe_key = %verdict.dedupe_key, occurrences = verdict.occurrences,
            queued, "alert queued"
        );
        self.stats.clips_completed.inc();
        self.outbox_wake.notify_one();
        Ok(())
    }

    /// Upload stage: [`StageOutcome::Failed`] degrades the clip (the alert goes
    /// without a link; the upload is retried in the background).
    async fn upload_stage(&self, record: &ClipRecord) -> Result<StageOutcome<Uploaded>, StoreError> {
        if record.upload.status == StageStatus::Ok {
            let storage_uri = record.storage_uri.clone().unwrap_or_default();
            return Ok(StageOutcome::Done(Uploaded { storage_uri, view_url: record.view_url.clone() }));
        }
        let clip = &record.clip;
        let storage = self.parts.storage.clone();
        let result = self
            .run_stage(clip, Stage::Upload, &self.upload_slots, || {
                let storage = storage.clone();
                let clip = clip.clone();
                async move {
                    let path = PathBuf::from(&clip.local_path);
                    storage.put(&clip, &path).await.map_err(|e| AttemptError::new(true, e))
                }
            })
            .await?;
        Ok(match result {
            StageOutcome::Done(obj) => {
                let uploaded = Uploaded { storage_uri: obj.storage_uri.clone(), view_url: obj.view_url.clone() };
                let now = self.now();
                self.commit(clip, vec![EventKind::StageSucceeded { stage: Stage::Upload }], move |r| {
                    r.upload.status = StageStatus::Ok;
                    r.upload.finished_ms = Some(now);
                    r.upload.last_error = None;
                    r.storage_uri = Some(obj.storage_uri);
                    r.view_url = obj.view_url;
                })
                .await?;
                StageOutcome::Done(uploaded)
            }
            StageOutcome::Failed(e) => {
                warn!(camera = %clip.camera, error = %crate::telemetry::chain(&e), "upload failed; alert goes out without a link, upload retried in the background");
                StageOutcome::Failed(e)
            }
            StageOutcome::Interrupted => StageOutcome::Interrupted,
        })
    }

    /// Filter stage: the result and the snapshot's path; [`StageOutcome::Failed`]
    /// ends the clip in error.
    async fn filter_stage(&self, record: &ClipRecord) -> Result<StageOutcome<Filtered>, StoreError> {
        if record.filter.status == StageStatus::Ok
            && let Some(f) = &record.filter_result
        {
            return Ok(StageOutcome::Done(Filtered { result: f.clone(), snapshot_path: record.snapshot_path.clone() }));
        }
        let clip = &record.clip;
        // Detection switched off for the camera: no detector, nothing detected.
        if !self.parts.controls.get(&clip.camera).detection {
            let fr = FilterResult { model: "none (detection off)".into(), ..Default::default() };
            let (reason, done) = ("detection off for this camera".to_owned(), fr.clone());
            let (event, now) = (EventKind::StageSkipped { stage: Stage::Filter, reason }, self.now());
            self.commit(clip, vec![event], move |r| {
                r.filter.status = StageStatus::Ok;
                r.filter.finished_ms = Some(now);
                r.filter_result = Some(done);
            })
            .await?;
            return Ok(StageOutcome::Done(Filtered { result: fr, snapshot_path: None }));
        }
        let filter = self.parts.filter.clone();
        // Sampling stops once a class that decides something is confirmed.
        let mut decisive = self.parts.policy.notify_classes(&clip.camera);
        if self.parts.vlm_gate.run_mode == RunMode::TriggerOnly {
            decisive.extend(self.parts.vlm_gate.trigger_classes.iter().cloned());
        }
        let tracking = TrackContext { camera: self.parts.tracking.camera(&clip.camera), now_ms: self.now() };
        let result = self
            .run_stage(clip, Stage::Filter, &self.filter_slots, || {
                let filter = filter.clone();
                let path = PathBuf::from(&clip.local_path);
                let (decisive, tracking) = (decisive.clone(), tracking.clone());
                async move {
                    filter.detect(&path, &decisive, &tracking).await.map_err(|e| AttemptError::new(e.is_transient(), e))
                }
            })
            .await?;
        let output = match result {
            StageOutcome::Done(o) => o,
            StageOutcome::Failed(e) => return Ok(StageOutcome::Failed(e)),
            StageOutcome::Interrupted => return Ok(StageOutcome::Interrupted),
        };
        let snapshot_path = match &output.snapshot_jpeg {
            Some(jpeg) => self.write_snapshot(&clip.camera, &clip.clip_id, jpeg).await,
            None => None,
        };
        let (fr, snap) = (output.result.clone(), snapshot_path.clone());
        info!(camera = %clip.camera, classes = ?fr.detected_classes, alert_classes = ?fr.alert_classes, confidence = fr.confidence, frames = fr.sampled_frames, "filter done");
        let now = self.now();
        self.commit(clip, vec![EventKind::StageSucceeded { stage: Stage::Filter }], move |r| {
            r.filter.status = StageStatus::Ok;
            r.filter.finished_ms = Some(now);
            r.filter.last_error = None;
            r.filter_result = Some(fr);
            r.snapshot_path = snap;
        })
        .await?;
        Ok(StageOutcome::Done(Filtered { result: output.result, snapshot_path }))
    }

    /// Writes a clip's snapshot (`snapshots/<clip_id>.jpg`) unless the same
    /// picture is there already (the early alert's, when no better frame came);
    /// its path, or `None` (logged) when it cannot be written.
    pub(super) async fn write_snapshot(&self, camera: &CameraName, clip_id: &ClipId, jpeg: &[u8]) -> Option<String> {
        let path = self.parts.snapshots_dir.join(format!("{clip_id}.jpg"));
        let (p, bytes) = (path.clone(), jpeg.to_vec());
        let write = move || {
            if std::fs::read(&p).is_ok_and(|old| old == bytes) {
                return Ok(());
            }
            crate::fsutil::write_durable(&p, &bytes)
        };
        match tokio::task::spawn_blocking(write).await {
            Ok(Ok(())) => Some(path.display().to_string()),
            Ok(Err(e)) => {
                warn!(camera = %camera, path = %path.display(), error = %e, "cannot write snapshot; alert goes without it");
                None
            }
            Err(e) => {
                warn!(error = %e, "snapshot task failed");
                None
            }
        }
    }

    /// VLM stage: the analysis, or [`StageOutcome::Skipped`] with the reason
    /// when the gate says no; [`StageOutcome::Failed`] degrades the clip (the
    /// policy decides without analysis).
    async fn vlm_stage(
        &self,
        record: &ClipRecord,
        filter: &FilterResult,
    ) -> Result<StageOutcome<AnalysisResult, String>, StoreError> {
        if record.vlm.status == StageStatus::Ok
            && let Some(a) = &record.analysis
        {
            return Ok(StageOutcome::Done(a.clone()));
        }
        let clip = &record.clip;
        let skip_reason = match &self.parts.analyzer {
            None => Some("no VLM configured".to_owned()),
            Some(_) if !self.parts.vlm_gate.should_run(filter) => Some(format!(
                "run_mode {:?}: no trigger class in {:?}",
                self.parts.vlm_gate.run_mode, filter.detected_classes
            )),
            Some(_) => None,
        };
        let Some(analyzer) = self.parts.analyzer.clone().filter(|_| skip_reason.is_none()) else {
            let reason = skip_reason.unwrap_or_default();
            let event = EventKind::StageSkipped { stage: Stage::Vlm, reason: reason.clone() };
            self.commit(clip, vec![event], |r| {
                r.vlm.status = StageStatus::Skipped;
            })
            .await?;
            return Ok(StageOutcome::Skipped(reason));
        };
        let result = self
            .run_stage(clip, Stage::Vlm, &self.vlm_slots, || {
                let analyzer = analyzer.clone();
                let (clip, filter) = (clip.clone(), filter.clone());
                async move { analyzer.analyze(&clip, &filter).await.map_err(|e| AttemptError::new(e.is_transient(), e)) }
            })
            .await?;
        Ok(match result {
            StageOutcome::Done(a) => {
                info!(camera = %clip.camera, risk = %a.risk_level, activity = %a.activity_type, "analysis done");
                let stored = a.clone();
                let now = self.now();
                self.commit(clip, vec![EventKind::StageSucceeded { stage: Stage::Vlm }], move |r| {
                    r.vlm.status = StageStatus::Ok;
                    r.vlm.finished_ms = Some(now);
                    r.vlm.last_error = None;
                    r.analysis = Some(stored);
                })
                .await?;
                StageOutcome::Done(a)
            }
            StageOutcome::Failed(e) => {
                warn!(camera = %clip.camera, error = %crate::telemetry::chain(&e), "VLM failed; deciding without analysis");
                StageOutcome::Failed(e)
            }
            StageOutcome::Interrupted => StageOutcome::Interrupted,
        })
    }
}
