//! Running one stage with retries: every attempt and its outcome is journaled.

use std::convert::Infallible;
use std::future::Future;

use tokio::sync::Semaphore;
use tracing::warn;

use super::Pipeline;
use crate::domain::{Clip, ClipId, EventKind, Stage, StageStatus};
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

/// How one attempt at a stage failed, which decides whether it is retried.
#[derive(Debug)]
pub enum AttemptError {
    /// Another attempt may succeed (a timeout, a dropped connection, a 5xx):
    /// retried with backoff up to `retry.max_attempts`.
    Transient(BoxError),
    /// Another attempt would fail the same way (an unreadable file, a 401):
    /// the stage fails at once.
    Permanent(BoxError),
}

impl AttemptError {
    /// Classifies `error` by the plugin's own judgement of whether it is transient.
    pub fn new(transient: bool, error: impl std::error::Error + Send + Sync + 'static) -> Self {
        let error: BoxError = Box::new(error);
        if transient { AttemptError::Transient(error) } else { AttemptError::Permanent(error) }
    }

    fn is_transient(&self) -> bool {
        matches!(self, AttemptError::Transient(_))
    }

    fn into_source(self) -> BoxError {
        match self {
            AttemptError::Transient(e) | AttemptError::Permanent(e) => e,
        }
    }
}

/// How a stage ended for a clip. `Skip` is why a stage was not run, for the
/// stages that may be skipped; for the others it is uninhabited, so a `match`
/// need not name [`StageOutcome::Skipped`].
#[derive(Debug)]
pub enum StageOutcome<T, Skip = Infallible> {
    /// The stage has its result (from this run, or from the record of an earlier one).
    Done(T),
    /// The stage was not run (the VLM without an analyzer or a trigger class).
    Skipped(Skip),
    /// The stage failed for good; whether the clip degrades or stops is the flow's call.
    Failed(StageError),
    /// Shutdown came between attempts: the record stays resumable.
    Interrupted,
}

impl Pipeline {
    /// Runs `op` under the stage's concurrency limit, retrying transient failures
    /// with backoff up to `retry.max_attempts`.
    pub(super) async fn run_stage<T, F, Fut>(
        &self,
        clip: &Clip,
        stage: Stage,
        slots: &Semaphore,
        mut op: F,
    ) -> Result<StageOutcome<T>, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        let max_attempts = self.parts.retry.max_attempts;
        loop {
            let permit = tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(StageOutcome::Interrupted),
                p = slots.acquire() => match p {
                    Ok(p) => p,
                    Err(_) => return Ok(StageOutcome::Interrupted),
                },
            };
            let id = clip.clip_id.0.clone();
            let now = self.now();
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
                            log.started_ms.get_or_insert(now);
                        })?;
                        Ok(attempt)
                    })
                })
                .await?;
            let started = self.parts.clock.monotonic();
            let result = op().await;
            drop(permit);
            let took = self.parts.clock.monotonic().saturating_sub(started);
            crate::metrics::global().observe_stage(stage, took.as_secs_f64());
            let failure = match result {
                Ok(v) => return Ok(StageOutcome::Done(v)),
                Err(e) => e,
            };
            let will_retry = failure.is_transient() && attempt < max_attempts;
            let err = failure.into_source();
            let message = crate::telemetry::chain(&*err);
            let msg = message.clone();
            let now = self.now();
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
                        log.finished_ms = Some(now);
                    }
                },
            )
            .await?;
            if !will_retry {
                return Ok(StageOutcome::Failed(StageError {
                    stage,
                    clip_id: clip.clip_id.clone(),
                    attempts: attempt,
                    source: err,
                }));
            }
            let delay = self.schedule.delay(attempt);
            warn!(camera = %clip.camera, stage = %stage, attempt, retry_in_s = delay.as_secs_f32(), error = %message, "stage failed; retrying");
            tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(StageOutcome::Interrupted),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}
