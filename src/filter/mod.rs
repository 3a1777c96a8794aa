//! Object filter: finds which objects (person, car, dog, …) a clip shows.

pub mod service;
pub mod tracking;
pub mod yolo;

use std::path::Path;

use async_trait::async_trait;

use crate::domain::FilterResult;

/// Longer side and quality of snapshot and VLM JPEGs.
pub const SNAPSHOT_MAX_SIZE: u32 = 1280;
pub const SNAPSHOT_QUALITY: u8 = 85;

/// What a filter run yields: the result and, when something was found, a JPEG of
/// the frame with the most confident detection (the alert's snapshot).
#[derive(Debug, Clone, Default)]
pub struct FilterOutput {
    pub result: FilterResult,
    pub snapshot_jpeg: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("cannot read video {path}")]
    Media {
        path: String,
        #[source]
        source: crate::media::MediaError,
    },
    #[error("inference failed")]
    Inference(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("filter worker stopped")]
    WorkerGone,
}

impl FilterError {
    /// A broken file stays broken; inference faults may pass.
    pub fn is_transient(&self) -> bool {
        !matches!(self, FilterError::Media { .. })
    }
}

#[async_trait]
pub trait ObjectFilter: Send + Sync {
    /// Model or backend name, for logs and the clip record.
    fn name(&self) -> &str;
    /// Decodes the clip, samples frames, runs detection and tracks the objects
    /// with the camera's zones and memory (`tracking`); sampling stops once one
    /// of the `decisive` classes is confirmed as a reason to alert. CPU work
    /// runs off the async workers.
    async fn detect(
        &self,
        video: &Path,
        decisive: &[String],
        tracking: &tracking::TrackContext,
    ) -> Result<FilterOutput, FilterError>;
    /// The detector service for live cameras, when this filter has one.
    fn live(&self) -> Option<service::LiveDetector> {
        None
    }
    async fn shutdown(&self) {}
}
