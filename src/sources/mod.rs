//! Clip sources: produce finished clip files and hand them to the pipeline.

pub mod connectivity;
pub mod folder;
pub mod ftp;
pub mod intake;
pub mod latest;
pub mod live;
pub mod recorder;
pub mod rtsp;
pub mod v4l;

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::watch;
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
    /// Connectivity and outages (RTSP cameras), as fields of their own.
    #[serde(flatten)]
    pub link: Option<LinkHealth>,
}

/// A camera's connectivity and its outages, as `/health` shows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkHealth {
    /// Every stream of the camera delivers video.
    pub connected: bool,
    /// Since when (Unix ms), while connected.
    pub connected_since_ms: Option<i64>,
    /// Outages since start (a camera that cannot connect at start is in one).
    pub outages: u64,
    /// When the current outage began (Unix ms).
    pub outage_since_ms: Option<i64>,
    /// How long the current outage has lasted so far.
    pub outage_s: Option<f64>,
    /// How long the last outage that ended lasted.
    pub last_outage_s: Option<f64>,
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
    /// Whether the camera is connected (every stream delivers video), for
    /// sources that have a connection (Home Assistant's connectivity sensor).
    fn connectivity(&self) -> Option<watch::Receiver<bool>> {
        None
    }
    /// The camera's newest picture on request (live cameras).
    fn latest_frame(&self) -> Option<std::sync::Arc<latest::LatestFrame>> {
        None
    }
    /// Where the source reads from, safe to log (no credentials).
    fn describe(&self) -> String;
}
