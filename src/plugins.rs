//! The plugin registry: (kind, backend name) → config parse + validate → instance.
//! The only module that names concrete plugins.

use std::path::PathBuf;

use crate::domain::CameraName;

/// What every plugin may need to know about the box it runs on.
#[derive(Debug, Clone)]
pub struct PluginContext {
    /// `data_dir` from the config: redb store, recordings, snapshots.
    pub data_dir: PathBuf,
    /// Directory of the config file: relative paths in the config resolve against it.
    pub config_dir: PathBuf,
    /// Stable id of this box (fleet rows, MQTT client id, Home Assistant device).
    pub device_id: String,
    pub cameras: Vec<CameraName>,
}

impl PluginContext {
    /// Resolves a path from the config against the config file's directory.
    pub fn resolve(&self, p: &std::path::Path) -> PathBuf {
        if p.is_absolute() { p.to_path_buf() } else { self.config_dir.join(p) }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot start {kind} backend `{backend}`")]
pub struct PluginBuildError {
    pub kind: &'static str,
    pub backend: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}
