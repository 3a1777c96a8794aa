//! Storage backends: where clips are kept for viewing (local disk, S3, Dropbox).
//!
//! A backend stores a clip's file under a key made from its path template
//! (default `{camera_name}/{clip_id}.mp4`), and JSON artifacts (the analysis)
//! next to it; a stored object is addressed by its `storage_uri` afterwards
//! (fetch it back, ask whether it is there, delete it).

pub mod dropbox;
pub mod local;
pub mod s3;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use crate::domain::Clip;

/// The key a clip is stored under unless the config says otherwise.
pub fn default_path_template() -> String {
    "{camera_name}/{clip_id}.mp4".into()
}

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
    #[error("cannot fetch {uri} to {dest}")]
    Fetch {
        uri: String,
        dest: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{uri} is not an object of this storage ({expected})")]
    ForeignUri { uri: String, expected: String },
    #[error("{uri} does not exist in the storage")]
    NotFound { uri: String },
    /// A remote service failed; `target` names where (bucket and endpoint).
    #[error("{target}: {what} failed{hint}")]
    Remote {
        target: String,
        what: String,
        /// A plain reading of the service's answer (`: the bucket does not exist`), or empty.
        hint: String,
        /// Whether another attempt may succeed (unreachable, 5xx, throttled).
        transient: bool,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("storage backend failed: {0}")]
    Backend(String),
}

impl StorageError {
    /// Whether another attempt may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Remote { transient, .. } => *transient,
            StorageError::ForeignUri { .. } | StorageError::NotFound { .. } => false,
            StorageError::Io { .. } | StorageError::Fetch { .. } | StorageError::Backend(_) => true,
        }
    }
}

/// Saves an object fetched back from `uri` to `dest` the way clip files are
/// written: into `<dest>.part`, flushed to disk, then renamed. When the stream
/// fails the part is removed and the failure is `remote(error)`.
pub(crate) async fn save_stream<C, E>(
    mut stream: impl Stream<Item = Result<C, E>> + Unpin,
    uri: &str,
    dest: &Path,
    remote: impl FnOnce(E) -> StorageError,
) -> Result<(), StorageError>
where
    C: AsRef<[u8]>,
{
    let fetch = |source| StorageError::Fetch { uri: uri.to_owned(), dest: dest.display().to_string(), source };
    if let Some(dir) = dest.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(fetch)?;
    }
    let part = PathBuf::from(format!("{}.part", dest.display()));
    let mut file = tokio::fs::File::create(&part).await.map_err(fetch)?;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => file.write_all(c.as_ref()).await.map_err(fetch)?,
            Err(e) => {
                drop(file);
                let _ = tokio::fs::remove_file(&part).await;
                return Err(remote(e));
            }
        }
    }
    file.sync_all().await.map_err(fetch)?;
    drop(file);
    tokio::fs::rename(&part, dest).await.map_err(fetch)
}

#[async_trait]
pub trait StorageBackend: Send + Sync {
    fn name(&self) -> &str;
    /// Stores the clip's file under the backend's path template.
    async fn put(&self, clip: &Clip, local: &Path) -> Result<StoredObject, StorageError>;
    /// Stores `value` as JSON next to the clip: the clip's key with `.mp4`
    /// replaced by `.<name>.json` (`driveway/driveway_1.analysis.json`).
    async fn put_json(&self, clip: &Clip, name: &str, value: &serde_json::Value) -> Result<StoredObject, StorageError>;
    /// Fetches the object at `storage_uri` back into the file `dest` (written
    /// under a temporary name, then renamed).
    async fn get(&self, storage_uri: &str, dest: &Path) -> Result<(), StorageError>;
    /// Whether the object at `storage_uri` is there.
    async fn exists(&self, storage_uri: &str) -> Result<bool, StorageError>;
    /// Deletes the object at `storage_uri`; deleting what is not there is no error.
    async fn delete(&self, storage_uri: &str) -> Result<(), StorageError>;
    /// Whether the backend can take uploads now.
    async fn ping(&self) -> bool;
    /// Why the last ping or upload failed, when the last one did (for `/health`).
    fn last_error(&self) -> Option<String> {
        None
    }
    /// Where a backend that stores on this machine keeps its files (retention
    /// counts and prunes them when they share the data partition).
    fn local_root(&self) -> Option<&Path> {
        None
    }
    async fn shutdown(&self) {}
}

/// The key of a clip under `template` (`{camera_name}`, `{clip_id}`).
pub fn clip_key(template: &str, clip: &Clip) -> String {
    template.replace("{camera_name}", clip.camera.as_str()).replace("{clip_id}", clip.clip_id.as_str())
}

/// The key of a JSON artifact next to the clip's key: `.mp4` (or any
/// extension of the last segment) replaced by `.<name>.json`.
pub fn json_key(clip_key: &str, name: &str) -> String {
    let (dir, file) = clip_key.rsplit_once('/').map_or(("", clip_key), |(d, f)| (d, f));
    let stem = file.rsplit_once('.').map_or(file, |(s, _)| s);
    let file = format!("{stem}.{name}.json");
    if dir.is_empty() { file } else { format!("{dir}/{file}") }
}

/// Checks a path template: relative, no `..`, names the clip.
pub(crate) fn validate_template(template: &str, v: &mut crate::plugin::Validator<'_>) {
    v.check(template.contains("{clip_id}"), "path_template", "must contain {clip_id}");
    v.check(!template.starts_with('/'), "path_template", "must be relative to root");
    v.check(!template.contains(".."), "path_template", "must not contain `..`");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_goes_next_to_the_clip() {
        assert_eq!(json_key("driveway/driveway_1.mp4", "analysis"), "driveway/driveway_1.analysis.json");
        assert_eq!(json_key("a/b/c.mp4", "analysis"), "a/b/c.analysis.json");
        assert_eq!(json_key("clip", "analysis"), "clip.analysis.json");
    }
}
