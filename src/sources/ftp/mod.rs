//! FTP source: one FTP server per box (libunftp on the file system), each camera
//! uploading into its own subdirectory of the FTP root. A clip is taken when its
//! upload completes (libunftp's "file stored" event), before the client is told
//! so: the record is committed first, so an upload the camera saw succeed is
//! never lost. Every path stays inside the FTP root (cap-std), uploads are capped
//! and refused when the disk is at its free-space floor; an upload cut before its
//! end is removed, never taken.

mod config;
mod server;
mod storage;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use config::{FtpCameraConfig, FtpServerConfig, FtpTlsConfig, check_setup};
pub use server::FtpServer;

use super::intake::Intake;
use super::{ClipSource, SourceError, SourceHealth};
use crate::domain::CameraName;
use crate::pipeline::ClipSink;
use crate::plugin::{PluginBuildError, PluginContext};

/// How often uploads that could not be taken are tried again.
const RETRY_FAILED_TAKE: std::time::Duration = std::time::Duration::from_secs(60);

/// One camera's uploads, as its health shows them.
#[derive(Debug, Default)]
pub(crate) struct CameraState {
    last_upload: Option<Instant>,
    last_error: Option<String>,
}

/// A camera that uploads its clips to the box's FTP server.
pub struct FtpSource {
    camera: CameraName,
    cfg: FtpCameraConfig,
    server: Arc<FtpServer>,
    state: Arc<Mutex<CameraState>>,
    intake: Intake,
}

/// Builds a camera's FTP source on the box's one server.
pub fn build(
    camera: CameraName,
    cfg: FtpCameraConfig,
    ctx: &PluginContext,
    server: Option<Arc<FtpServer>>,
) -> Result<FtpSource, PluginBuildError> {
    let server = server.ok_or_else(|| {
        PluginBuildError::new(
            "source",
            "ftp",
            "a camera uses `backend: ftp` but the config has no top-level `ftp:` block",
        )
    })?;
    Ok(FtpSource {
        intake: Intake::new(camera.clone(), &ctx.layout, "ftp"),
        camera,
        cfg,
        server,
        state: Arc::new(Mutex::new(CameraState::default())),
    })
}

#[async_trait]
impl ClipSource for FtpSource {
    fn camera(&self) -> &CameraName {
        &self.camera
    }

    async fn run(&self, sink: ClipSink, shutdown: CancellationToken) -> Result<(), SourceError> {
        self.server.register(&self.cfg.ftp_subdir, self.intake.clone(), sink.clone(), self.state.clone());
        if let Err(e) = self.server.start(&shutdown) {
            let msg = crate::telemetry::chain(&e);
            error!(camera = %self.camera, error = %msg, "FTP server not started; cameras cannot upload");
        }
        // Uploads that completed while the daemon was down (or before this camera
        // was registered) are taken now; truncated ones are quarantined.
        match self.server.adopt_leftovers(&self.cfg.ftp_subdir).await {
            Ok(0) => {}
            Ok(n) => info!(camera = %self.camera, files = n, "took files left in the camera's FTP folder"),
            Err(e) => {
                warn!(camera = %self.camera, error = %crate::telemetry::chain(&e), "cannot look at the camera's FTP folder")
            }
        }
        // An upload that could not be taken (the store failed) stays in the
        // folder: the folder is looked at again now and then until it is taken.
        // Files being written, or written and not yet announced, are skipped.
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(RETRY_FAILED_TAKE) => {}
            }
            if let Err(e) = self.server.adopt_leftovers(&self.cfg.ftp_subdir).await {
                warn!(camera = %self.camera, error = %crate::telemetry::chain(&e), "cannot look at the camera's FTP folder");
            }
        }
        self.server.unregister(&self.cfg.ftp_subdir);
        Ok(())
    }

    fn describe(&self) -> String {
        format!("ftp {} (folder /{})", self.server.describe(), self.cfg.ftp_subdir)
    }

    fn health(&self) -> SourceHealth {
        let (listening, server_error) = self.server.status();
        let (age, err) = match self.state.lock() {
            Ok(s) => (s.last_upload.map(|t| t.elapsed().as_secs_f64()), s.last_error.clone()),
            Err(_) => (None, Some("state poisoned".into())),
        };
        let last_error = server_error.or(err);
        SourceHealth {
            camera: self.camera.clone(),
            backend: "ftp",
            healthy: listening,
            last_heartbeat_age_s: age,
            last_error,
            fps: None,
            reconnects: None,
            link: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FtpError {
    #[error("cannot listen on {listen}")]
    Listen {
        listen: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up the FTP server")]
    Setup(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot use the FTP root {path}")]
    Root {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Source(#[from] SourceError),
}
