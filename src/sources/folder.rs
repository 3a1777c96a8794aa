//! Watched-folder source: picks up `.mp4` files that cameras (or an FTP server)
//! drop into a directory, once they stop growing. Files are moved into the
//! daemon's recordings; unreadable ones are quarantined, never deleted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::intake::Intake;

use super::{ClipSource, SourceError, SourceHealth};
use crate::domain::{CameraName, now_ms};
use crate::pipeline::ClipSink;
use crate::plugin::PluginContext;
use crate::plugin::{PluginConfig, Validator};
use crate::store::SourceFileEntry;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderConfig {
    /// The directory to watch (relative to the config file).
    pub path: PathBuf,
    /// How often the directory is scanned.
    #[serde(default = "default_poll")]
    pub poll_interval_s: f64,
    /// A file counts as complete once its size and mtime have not changed for this long.
    #[serde(default = "default_settle")]
    pub settle_s: f64,
}

fn default_poll() -> f64 {
    1.0
}

fn default_settle() -> f64 {
    2.0
}

impl PluginConfig for FolderConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        v.check(self.poll_interval_s > 0.0 && self.poll_interval_s <= 60.0, "poll_interval_s", "must be in (0, 60]");
        v.check(self.settle_s >= 0.0 && self.settle_s <= 600.0, "settle_s", "must be in [0, 600]");
        v.check(!self.path.as_os_str().is_empty(), "path", "must name a directory");
    }
}

#[derive(Default)]
struct State {
    last_scan: Option<Instant>,
    last_error: Option<String>,
    /// size, mtime and when that pair was first seen, per file name.
    pending: HashMap<PathBuf, (u64, SystemTime, Instant)>,
}

pub struct FolderSource {
    camera: CameraName,
    dir: PathBuf,
    intake: Intake,
    cfg: FolderConfig,
    state: Mutex<State>,
}

impl FolderSource {
    pub fn new(camera: CameraName, cfg: FolderConfig, ctx: &PluginContext) -> Self {
        Self {
            dir: ctx.resolve(&cfg.path),
            intake: Intake::new(camera.clone(), &ctx.layout, "folder"),
            camera,
            cfg,
            state: Mutex::new(State::default()),
        }
    }

    fn set_error(&self, e: Option<String>) {
        if let Ok(mut s) = self.state.lock() {
            s.last_scan = Some(Instant::now());
            s.last_error = e;
        }
    }

    /// Files whose size and mtime have settled and that were not processed before.
    async fn complete_files(&self, sink: &ClipSink) -> Result<Vec<(PathBuf, u64, SystemTime)>, SourceError> {
        let io = |source| SourceError::Io { path: self.dir.display().to_string(), source };
        let mut rd = tokio::fs::read_dir(&self.dir).await.map_err(io)?;
        let mut seen = Vec::new();
        while let Some(entry) = rd.next_entry().await.map_err(io)? {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_mp4 = Path::new(&name).extension().is_some_and(|e| e.eq_ignore_ascii_case("mp4"));
            if !is_mp4 || name.starts_with('.') {
                continue;
            }
            let Ok(meta) = entry.metadata().await else { continue };
            if !meta.is_file() {
                continue;
            }
            seen.push((path, meta.len(), meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
        }
        let settle = Duration::from_secs_f64(self.cfg.settle_s);
        let mut ready = Vec::new();
        {
            let Ok(mut state) = self.state.lock() else { return Ok(ready) };
            state.pending.retain(|p, _| seen.iter().any(|(s, _, _)| s == p));
            for (path, size, mtime) in seen {
                let slot = state.pending.entry(path.clone()).or_insert((size, mtime, Instant::now()));
                if slot.0 != size || slot.1 != mtime {
                    *slot = (size, mtime, Instant::now());
                } else if slot.2.elapsed() >= settle {
                    ready.push((path, size, mtime));
                }
            }
        }
        let mut fresh = Vec::new();
        for (path, size, mtime) in ready {
            let key = self.manifest_key(&path);
            let known = sink.store().clone().run(move |s| s.source_file(&key)).await?;
            if known.is_some_and(|k| k.size == size) {
                continue;
            }
            fresh.push((path, size, mtime));
        }
        Ok(fresh)
    }

    fn manifest_key(&self, path: &Path) -> String {
        format!("folder/{}/{}", self.camera, path.file_name().unwrap_or_default().to_string_lossy())
    }

    /// Takes one complete file (see [`Intake::take`]) and remembers it in the
    /// source manifest, so that a copy left behind is not taken twice.
    async fn take(&self, sink: &ClipSink, path: PathBuf, size: u64, mtime: SystemTime) -> Result<(), SourceError> {
        let taken = self.intake.take(sink, &path, mtime).await?;
        let key = self.manifest_key(&path);
        let entry = SourceFileEntry { clip_id: taken.clip_id().clone(), size, seen_ms: now_ms() };
        sink.store().clone().run(move |s| s.write(|w| w.put_source_file(&key, &entry))).await?;
        Ok(())
    }
}

#[async_trait]
impl ClipSource for FolderSource {
    fn camera(&self) -> &CameraName {
        &self.camera
    }

    async fn run(&self, sink: ClipSink, shutdown: CancellationToken) -> Result<(), SourceError> {
        info!(camera = %self.camera, dir = %self.dir.display(), "watching folder");
        let every = Duration::from_secs_f64(self.cfg.poll_interval_s);
        let mut reported = false;
        while !shutdown.is_cancelled() {
            match self.complete_files(&sink).await {
                Ok(files) => {
                    self.set_error(None);
                    reported = false;
                    for (path, size, mtime) in files {
                        if shutdown.is_cancelled() {
                            break;
                        }
                        if let Err(e) = self.take(&sink, path.clone(), size, mtime).await {
                            let msg = crate::telemetry::chain(&e);
                            warn!(camera = %self.camera, file = %path.display(), error = %msg, "cannot take clip; will retry");
                            self.set_error(Some(msg));
                        }
                    }
                }
                Err(e) => {
                    let msg = crate::telemetry::chain(&e);
                    if !reported {
                        error!(camera = %self.camera, error = %msg, "cannot scan the watched folder");
                        reported = true;
                    }
                    self.set_error(Some(msg));
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("folder {}", self.dir.display())
    }

    fn health(&self) -> SourceHealth {
        let (age, err) = match self.state.lock() {
            Ok(s) => (s.last_scan.map(|t| t.elapsed().as_secs_f64()), s.last_error.clone()),
            Err(_) => (None, Some("state poisoned".into())),
        };
        let fresh = age.is_some_and(|a| a <= 3.0 * self.cfg.poll_interval_s + 5.0);
        SourceHealth {
            camera: self.camera.clone(),
            backend: "folder",
            healthy: fresh && err.is_none(),
            last_heartbeat_age_s: age,
            last_error: err,
            fps: None,
            reconnects: None,
            link: None,
        }
    }
}
