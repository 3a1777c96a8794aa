//! The plugin contract: what every plugin needs and nothing more. This module
//! imports no plugin and no registry (the registry is `plugins`).

mod validate;

use std::path::{Path, PathBuf};

pub use validate::{ConfigIssue, PluginConfig, Validator};

use crate::domain::CameraName;
pub use crate::fsutil::DataLayout;

/// What every plugin may need to know about the box it runs on.
#[derive(Debug, Clone)]
pub struct PluginContext {
    /// Where everything lives under `data_dir`.
    pub layout: DataLayout,
    /// Directory of the config file: relative paths in the config resolve against it.
    pub config_dir: PathBuf,
    /// Stable id of this box (fleet rows, MQTT client id, Home Assistant device).
    pub device_id: String,
    pub cameras: Vec<CameraName>,
    /// Set by tools that connect beside a running daemon (`notify-test`): a
    /// suffix for connection ids, so that the tool does not push the daemon off.
    pub client_tag: Option<String>,
}

impl PluginContext {
    /// Resolves a path from the config against the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        crate::fsutil::resolve_path(&self.config_dir, p)
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

impl PluginBuildError {
    pub fn new(kind: &'static str, backend: &str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self { kind, backend: backend.to_owned(), source: source.into() }
    }
}

/// A config block that does not deserialise at build time: the registry names
/// the kind and backend ([`PluginBuildError::kind`] is empty until it does).
impl From<Box<dyn std::error::Error + Send + Sync>> for PluginBuildError {
    fn from(source: Box<dyn std::error::Error + Send + Sync>) -> Self {
        PluginBuildError { kind: "", backend: String::new(), source }
    }
}
