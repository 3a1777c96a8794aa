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
        Self { root: None, path_template: "{camera_name}/{clip_id}.mp4".into(), view_url_prefix: None }
    }
}

impl PluginConfig for LocalStorageConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        v.check(self.path_template.contains("{clip_id}"), "path_template", "must contain {clip_id}");
        v.check(!self.path_template.starts_with('/'), "path_template", "must be relative to root");
        v.check(!self.path_template.contains(".."), "path_template", "must not contain `..`");
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
        self.cfg
            .path_template
            .replace("{camera_name}", clip.camera.as_str())
            .replace("{clip_id}", clip.clip_id.as_str())
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
        let view_url = self.cfg.view_url_prefix.as_ref().map(|p| format!("{}/{key}", p.trim_end_matches('/')));
        Ok(StoredObject { storage_uri: format!("file://{}", dest.display()), view_url })
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
