//! Local storage: clips copied (hard-linked where possible) under a root
//! directory, e.g. a NAS mount.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Deserialize;

use super::{StorageBackend, StorageError, StoredObject};
use crate::domain::Clip;
use crate::plugin::PluginContext;
use crate::plugin::{PluginConfig, Validator};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalStorageConfig {
    /// Where clips go; relative to the config file. Default: `<data_dir>/storage`.
    pub root: Option<PathBuf>,
    /// Key of a stored clip; placeholders `{camera_name}`, `{clip_id}`.
    pub path_template: String,
    /// When set, alerts carry `view_url = <prefix>/<key>` (e.g. a web server over `root`).
    pub view_url_prefix: Option<String>,
}

impl Default for LocalStorageConfig {
    fn default() -> Self {
        Self { root: None, path_template: super::default_path_template(), view_url_prefix: None }
    }
}

impl PluginConfig for LocalStorageConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        super::validate_template(&self.path_template, v);
    }
}

pub struct LocalStorage {
    root: PathBuf,
    cfg: LocalStorageConfig,
}

impl LocalStorage {
    pub fn new(cfg: LocalStorageConfig, ctx: &PluginContext) -> Self {
        let root = cfg.root.as_deref().map_or_else(|| ctx.layout.storage(), |r| ctx.resolve(r));
        Self { root, cfg }
    }

    fn key(&self, clip: &Clip) -> String {
        super::clip_key(&self.cfg.path_template, clip)
    }

    fn uri(&self, key: &str) -> String {
        format!("file://{}", self.root.join(key).display())
    }

    fn view_url(&self, key: &str) -> Option<String> {
        self.cfg.view_url_prefix.as_ref().map(|p| format!("{}/{key}", p.trim_end_matches('/')))
    }

    /// The file a `file://` URI of this storage names (under the root).
    fn file_of(&self, uri: &str) -> Result<PathBuf, StorageError> {
        let foreign = || StorageError::ForeignUri { uri: uri.to_owned(), expected: self.uri("") };
        let path = PathBuf::from(uri.strip_prefix("file://").ok_or_else(foreign)?);
        let inside =
            path.starts_with(&self.root) && !path.components().any(|c| matches!(c, std::path::Component::ParentDir));
        if inside { Ok(path) } else { Err(foreign()) }
    }
}

#[async_trait]
impl StorageBackend for LocalStorage {
    fn name(&self) -> &str {
        "local"
    }

    async fn put(&self, clip: &Clip, local: &Path) -> Result<StoredObject, StorageError> {
        let key = self.key(clip);
        let dest = self.root.join(&key);
        let src = local.to_path_buf();
        let target = dest.clone();
        tokio::task::spawn_blocking(move || crate::fsutil::copy_durable(&src, &target))
            .await
            .map_err(|e| StorageError::Backend(e.to_string()))?
            .map_err(|source| StorageError::Io { path: local.display().to_string(), key: key.clone(), source })?;
        Ok(StoredObject { storage_uri: self.uri(&key), view_url: self.view_url(&key) })
    }

    async fn put_json(&self, clip: &Clip, name: &str, value: &serde_json::Value) -> Result<StoredObject, StorageError> {
        let key = super::json_key(&self.key(clip), name);
        let dest = self.root.join(&key);
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| StorageError::Backend(e.to_string()))?;
        let target = dest.clone();
        tokio::task::spawn_blocking(move || crate::fsutil::write_durable(&target, &bytes))
            .await
            .map_err(|e| StorageError::Backend(e.to_string()))?
            .map_err(|source| StorageError::Io { path: format!("{name} JSON"), key: key.clone(), source })?;
        Ok(StoredObject { storage_uri: self.uri(&key), view_url: self.view_url(&key) })
    }

    async fn get(&self, storage_uri: &str, dest: &Path) -> Result<(), StorageError> {
        let src = self.file_of(storage_uri)?;
        if !tokio::fs::try_exists(&src).await.unwrap_or(false) {
            return Err(StorageError::NotFound { uri: storage_uri.to_owned() });
        }
        let target = dest.to_path_buf();
        tokio::task::spawn_blocking(move || crate::fsutil::copy_durable(&src, &target))
            .await
            .map_err(|e| StorageError::Backend(e.to_string()))?
            .map_err(|source| StorageError::Fetch {
                uri: storage_uri.to_owned(),
                dest: dest.display().to_string(),
                source,
            })
    }

    async fn exists(&self, storage_uri: &str) -> Result<bool, StorageError> {
        let path = self.file_of(storage_uri)?;
        tokio::fs::try_exists(&path).await.map_err(|source| StorageError::Io {
            path: path.display().to_string(),
            key: storage_uri.to_owned(),
            source,
        })
    }

    async fn delete(&self, storage_uri: &str) -> Result<(), StorageError> {
        let path = self.file_of(storage_uri)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => {
                Err(StorageError::Io { path: path.display().to_string(), key: storage_uri.to_owned(), source })
            }
        }
    }

    fn local_root(&self) -> Option<&Path> {
        Some(&self.root)
    }

    async fn ping(&self) -> bool {
        let probe = self.root.join(".homesec-probe");
        let ok = tokio::fs::create_dir_all(&self.root).await.is_ok() && tokio::fs::write(&probe, b"").await.is_ok();
        let _ = tokio::fs::remove_file(&probe).await;
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ClipId;

    fn storage(root: &Path) -> LocalStorage {
        let cfg = LocalStorageConfig { root: Some(root.to_path_buf()), ..LocalStorageConfig::default() };
        LocalStorage { root: root.to_path_buf(), cfg }
    }

    fn clip(path: &Path) -> Clip {
        Clip {
            clip_id: ClipId("porch_1".into()),
            camera: "porch".into(),
            local_path: path.display().to_string(),
            start_ms: 1,
            end_ms: 2,
            source_backend: "folder".into(),
        }
    }

    #[tokio::test]
    async fn a_clip_is_stored_fetched_back_checked_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("archive");
        let src = dir.path().join("porch_1.mp4");
        std::fs::write(&src, b"clip bytes").unwrap();
        let s = storage(&root);
        let c = clip(&src);

        let stored = s.put(&c, &src).await.unwrap();
        assert_eq!(stored.storage_uri, format!("file://{}", root.join("porch/porch_1.mp4").display()));
        let json = serde_json::json!({"risk_level": "low"});
        let doc = s.put_json(&c, "analysis", &json).await.unwrap();
        let doc_path = root.join("porch/porch_1.analysis.json");
        assert_eq!(doc.storage_uri, format!("file://{}", doc_path.display()));
        let read: serde_json::Value = serde_json::from_slice(&std::fs::read(&doc_path).unwrap()).unwrap();
        assert_eq!(read, json);

        let back = dir.path().join("fetched/porch_1.mp4");
        s.get(&stored.storage_uri, &back).await.unwrap();
        assert_eq!(std::fs::read(&back).unwrap(), b"clip bytes");

        assert!(s.exists(&stored.storage_uri).await.unwrap());
        s.delete(&stored.storage_uri).await.unwrap();
        assert!(!s.exists(&stored.storage_uri).await.unwrap());
        s.delete(&stored.storage_uri).await.unwrap();
        let err = s.get(&stored.storage_uri, &back).await.unwrap_err();
        assert!(err.to_string().ends_with("porch/porch_1.mp4 does not exist in the storage"), "{err}");
    }

    #[tokio::test]
    async fn a_uri_outside_the_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("archive");
        let s = storage(&root);
        for uri in [
            "file:///etc/passwd".to_owned(),
            format!("file://{}/../secret", root.display()),
            "s3://bucket/porch/porch_1.mp4".to_owned(),
        ] {
            let err = s.exists(&uri).await.unwrap_err();
            assert!(err.to_string().contains("is not an object of this storage"), "{uri}: {err}");
            assert!(s.delete(&uri).await.is_err(), "{uri}");
        }
    }
}
