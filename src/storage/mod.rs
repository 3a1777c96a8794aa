//! Storage backends: where clips are kept for viewing (local disk, Dropbox, S3).

pub mod local;

use std::path::Path;

use async_trait::async_trait;

use crate::domain::Clip;

#[derive(Debug, Clone, PartialEq)]
pub struct StoredObject {
    pub storage_uri: String,
    pub view_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot store {path} as {key}")]
    Io {
        path: String,
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("storage backend failed: {0}")]
    Backend(String),
}

#[async_trait]
pub trait StorageBackend: Send + Sync {
    fn name(&self) -> &str;
    /// Stores the clip's file under the backend's path template.
    async fn put(&self, clip: &Clip, local: &Path) -> Result<StoredObject, StorageError>;
    /// Whether the backend can take uploads now.
    async fn ping(&self) -> bool;
    /// Where a backend that stores on this machine keeps its files (retention
    /// counts and prunes them when they share the data partition).
    fn local_root(&self) -> Option<&Path> {
        None
    }
    async fn shutdown(&self) {}
}
