//! Where a recorder's finished clips go: the [`ClipOutput`] contract and its
//! implementation into the daemon's pipeline.

use std::time::Duration;

use tracing::warn;

use super::RecorderError;
use crate::domain::Clip;
use crate::filter::FilterOutput;
use crate::pipeline::{ClipSink, Sighting};

/// Where finished clips go.
pub trait ClipOutput: Send {
    /// Whether a clip with this id exists already.
    fn is_taken(&mut self, id: &str) -> Result<bool, RecorderError>;
    /// Takes a complete clip file (commit the record, start processing), with
    /// what the live detector found in it.
    fn submit(&mut self, clip: Clip, live: Option<FilterOutput>) -> Result<(), RecorderError>;
    /// Objects were confirmed in the clip being recorded (the early alert).
    fn sighted(&mut self, sighting: Sighting) -> Result<(), RecorderError> {
        let _ = sighting;
        Ok(())
    }
}

/// [`ClipOutput`] into the pipeline, for recorders running on a blocking thread
/// of the daemon's runtime.
pub struct SinkOutput {
    sink: ClipSink,
    runtime: tokio::runtime::Handle,
}

impl SinkOutput {
    pub fn new(sink: ClipSink, runtime: tokio::runtime::Handle) -> Self {
        Self { sink, runtime }
    }
}

impl ClipOutput for SinkOutput {
    fn is_taken(&mut self, id: &str) -> Result<bool, RecorderError> {
        Ok(self.sink.store().get_clip(id)?.is_some())
    }

    fn sighted(&mut self, sighting: Sighting) -> Result<(), RecorderError> {
        let clip_id = sighting.clip_id.to_string();
        self.runtime
            .block_on(self.sink.sighting(sighting))
            .map(|_| ())
            .map_err(|source| RecorderError::Sighting { clip_id, source })
    }

    fn submit(&mut self, clip: Clip, live: Option<FilterOutput>) -> Result<(), RecorderError> {
        let clip_id = clip.clip_id.to_string();
        let mut attempt = 0;
        loop {
            match self.runtime.block_on(self.sink.submit_detected(clip.clone(), live.clone())) {
                Ok(_) => return Ok(()),
                Err(e) if attempt < 3 => {
                    attempt += 1;
                    warn!(camera = %clip.camera, clip_id = %clip_id, error = %crate::telemetry::chain(&e), attempt, "cannot record the clip; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(source) => return Err(RecorderError::Submit { clip_id, source }),
            }
        }
    }
}
