//! Running one stage with retries: every attempt and its outcome is journaled.

use std::future::Future;

use tokio::sync::Semaphore;
use tracing::warn;

use super::Pipeline;
use crate::domain::{Clip, ClipId, EventKind, Stage, StageStatus, now_ms};
use crate::store::StoreError;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A stage that failed for good, with the cause chain of its last attempt.
#[derive(Debug, thiserror::Error)]
#[error("{stage} failed for clip {clip_id} after {attempts} attempt(s)")]
pub struct StageError {
    pub stage: Stage,
    pub clip_id: ClipId,
    pub attempts: u32,
    #[source]
    pub source: BoxError,
}

impl Pipeline {
    /// Runs `op` under the stage's concurrency limit, retrying transient failures
    /// with backoff up to `retry.max_attempts`. `op` reports failures as
    /// `(transient, error)`. Returns `None` when shutdown interrupted the stage
    /// between attempts: the record stays resumable.
    pub(super) async fn run_stage<T, F, Fut>(
        &self,
        clip: &Clip,
        stage: Stage,
        slots: &Semaphore,
        mut op: F,
    ) -> Result<Option<Result<T, StageError>>, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, (bool, BoxError)>>,
    {
        let max_attempts = self.parts.retry.max_attempts;
        loop {
            let permit = tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(None),
                p = slots.acquire() => match p {
                    Ok(p) => p,
                    Err(_) => return Ok(None),
                },
            };
            let id = clip.clip_id.0.clone();
            let attempt = self
                .parts
                .store
                .run(move |s| {
                    s.write(|w| {
                        let attempt = w.clip(&id)?.stage(stage).attempts + 1;
                        w.update_clip(&id, [EventKind::StageStarted { stage, attempt }], |r| {
                            let log = r.stage_mut(stage);
                            log.status = StageStatus::Running;
                            log.attempts = attempt;
                            log.started_ms.get_or_insert_with(now_ms);
                        })?;
                        Ok(attempt)
                    })
                })
                .await?;
            let result = op().await;
            drop(permit);
            let (transient, err) = match result {
                Ok(v) => return Ok(Some(Ok(v))),
                Err(e) => e,
            };
            let will_retry = transient && attempt < max_attempts;
            let message = crate::telemetry::chain(&*err);
            let msg = message.clone();
            self.commit(
                clip,
                vec![EventKind::StageFailed { stage, attempt, error: msg.clone(), will_retry }],
                move |r| {
                    let log = r.stage_mut(stage);
                    log.last_error = Some(msg);
                    if will_retry {
                        log.status = StageStatus::Pending;
                    } else {
                        log.status = StageStatus::Error;
                        log.finished_ms = Some(now_ms());
                    }
                },
            )
            .await?;
            if !will_retry {
                return Ok(Some(Err(StageError {
                    stage,
                    clip_id: clip.clip_id.clone(),
                    attempts: attempt,
                    source: err,
                })));
            }
            let delay = self.schedule.delay(attempt);
            warn!(camera = %clip.camera, stage = %stage, attempt, retry_in_s = delay.as_secs_f32(), error = %message, "stage failed; retrying");
            tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(None),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}
