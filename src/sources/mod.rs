//! Clip sources: produce finished clip files and hand them to the pipeline.

pub mod folder;
pub mod live;
pub mod recorder;
pub mod rtsp;
pub mod v4l;

use async_trait::async_trait;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::domain::CameraName;
use crate::pipeline::ClipSink;

#[derive(Debug, Clone, Serialize)]
pub struct SourceHealth {
    pub camera: CameraName,
    pub backend: &'static str,
    pub healthy: bool,
    /// Seconds since the source last did useful work (scan, frame, upload).
    pub last_heartbeat_age_s: Option<f64>,
    pub last_error: Option<String>,
    /// Frames per second received (live cameras).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    /// Reconnections since start (live cameras).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconnects: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot use {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

#[async_trait]
pub trait ClipSource: Send + Sync {
    fn camera(&self) -> &CameraName;
    /// Runs until `shutdown` is cancelled, handing finished clips to `sink`.
    async fn run(&self, sink: ClipSink, shutdown: CancellationToken) -> Result<(), SourceError>;
    fn health(&self) -> SourceHealth;
    /// Where the source reads from, safe to log (no credentials).
    fn describe(&self) -> String;
}
