//! Over-the-air updates on the appliance (A/B root file systems, RAUC).
//!
//! - **What runs**: the daemon's version, the image version (`IMAGE_VERSION` in
//!   os-release) and the booted slot.
//! - **Install**: a signed bundle, uploaded through the API or downloaded from a
//!   URL, goes to `data_dir/update/` and is installed by RAUC into the inactive
//!   slot; then the daemon asks for a reboot (`data_dir/update/reboot`, which the
//!   `homesec-reboot.path` unit turns into `systemctl reboot`).
//! - **Confirmation**: the boot loader counts every boot as a try until the slot
//!   is marked good. The first boot after an install must pass the daemon's full
//!   health check (store, pipeline, sources, API) within `confirm_timeout_s`, or
//!   the slot is marked bad and the box reboots into the slot it came from. Any
//!   other boot is marked good once the daemon itself is up (store, pipeline,
//!   API), so an offline camera after a power cut does not flip the slot.
//! - **Latest version**: an optional feed (`feed_url`, JSON `{version, url,
//!   notes}`), shown by Home Assistant's update entity, whose install button
//!   installs the feed's bundle.

mod config;
mod confirm;
pub mod rauc;
mod status;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::{OwnedMutexGuard, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::clock::SharedClock;

pub use config::{UpdateConfig, check_url};
pub use confirm::BootCheck;
use confirm::Pending;
use status::read_image_version;
pub use status::{InstallState, InstallStatus, SystemStatus, UpdateLink, image_version};

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("updates are not available on this system ({0})")]
    Unavailable(String),
    #[error("an update is being installed already")]
    Busy,
    #[error("cannot run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("unexpected output from `{command}`: {message}")]
    Output { command: String, message: String },
    #[error("cannot write {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot download {url}")]
    Download {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot download {url}: HTTP {status}")]
    DownloadStatus { url: String, status: u16 },
    #[error("the update feed {url} is not valid JSON {{version, url}}")]
    Feed {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0} is not an http:// or https:// URL")]
    BadUrl(String),
    #[error("the upload was cut off")]
    Upload(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The A/B slot machinery (RAUC on the appliance; a double in tests).
#[async_trait]
pub trait SlotSystem: Send + Sync {
    /// Boot name of the booted slot (`A` / `B`).
    async fn booted_slot(&self) -> Result<String, UpdateError>;
    /// Marks the booted slot good (keep booting it) or bad (boot the other one next).
    async fn mark(&self, good: bool) -> Result<(), UpdateError>;
    /// Verifies and installs a bundle into the inactive slot and makes it the
    /// next boot, reporting progress in percent.
    async fn install(&self, bundle: &Path, progress: &(dyn Fn(u8) + Send + Sync)) -> Result<(), UpdateError>;
}

/// The `{version, url, notes}` document at `feed_url`.
#[derive(Debug, Deserialize)]
struct Feed {
    version: String,
    url: String,
    #[serde(default)]
    notes: Option<String>,
}

pub struct Updater {
    cfg: UpdateConfig,
    /// Times the boot confirmation's deadline.
    clock: SharedClock,
    dir: PathBuf,
    system: Option<Arc<dyn SlotSystem>>,
    status: watch::Sender<SystemStatus>,
    busy: Arc<tokio::sync::Mutex<()>>,
    http: reqwest::Client,
    install_tx: mpsc::UnboundedSender<()>,
    install_rx: Mutex<Option<mpsc::UnboundedReceiver<()>>>,
}

/// The right to install (one install at a time), with where the bundle goes.
pub struct InstallJob {
    _guard: OwnedMutexGuard<()>,
    pub bundle: PathBuf,
    status: watch::Sender<SystemStatus>,
}

impl Drop for InstallJob {
    /// An upload or download that ends without an install (the client hung up,
    /// the daemon stops) must not leave the state "downloading" forever.
    fn drop(&mut self) {
        self.status.send_if_modified(|s| {
            let stuck = s.update.state == InstallState::Downloading;
            if stuck {
                s.update = InstallStatus {
                    state: InstallState::Failed,
                    progress: 0,
                    error: Some("the bundle transfer was interrupted".into()),
                };
            }
            stuck
        });
        let _ = std::fs::remove_file(&self.bundle);
    }
}

impl Updater {
    /// An updater over `system` (`None`: updates unavailable), keeping its files
    /// in `dir` (`DataLayout::update`). Asks the system which slot is booted.
    pub async fn new(
        cfg: UpdateConfig,
        dir: PathBuf,
        system: Option<Arc<dyn SlotSystem>>,
        clock: SharedClock,
    ) -> Arc<Updater> {
        let mut slot = None;
        let mut system = system;
        if let Some(s) = &system {
            match s.booted_slot().await {
                Ok(b) => slot = Some(b),
                Err(e) => {
                    info!(reason = %crate::telemetry::chain(&e), "over-the-air updates unavailable");
                    system = None;
                }
            }
        }
        let state = if system.is_some() { InstallState::Idle } else { InstallState::Unavailable };
        let status = SystemStatus {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            image_version: read_image_version(),
            slot,
            slot_confirmed: false,
            latest_version: None,
            release_notes: None,
            latest_url: None,
            update: InstallStatus { state, progress: 0, error: None },
        };
        let (install_tx, install_rx) = mpsc::unbounded_channel();
        Arc::new(Updater {
            cfg,
            clock,
            dir,
            system,
            status: watch::channel(status).0,
            busy: Arc::new(tokio::sync::Mutex::new(())),
            http: reqwest::Client::builder().connect_timeout(Duration::from_secs(20)).build().unwrap_or_default(),
            install_tx,
            install_rx: Mutex::new(Some(install_rx)),
        })
    }

    pub fn is_available(&self) -> bool {
        self.system.is_some()
    }

    pub fn status(&self) -> SystemStatus {
        self.status.borrow().clone()
    }

    pub fn link(&self) -> UpdateLink {
        UpdateLink { status: self.status.subscribe(), install_latest: self.install_tx.clone() }
    }

    pub(super) fn set(&self, f: impl FnOnce(&mut SystemStatus)) {
        self.status.send_modify(f);
    }

    pub(super) fn set_install(&self, state: InstallState, progress: u8, error: Option<String>) {
        self.set(|s| s.update = InstallStatus { state, progress, error });
    }

    pub(super) fn pending_path(&self) -> PathBuf {
        self.dir.join("pending.json")
    }

    /// The file whose appearance reboots the box (`homesec-reboot.path`).
    pub fn reboot_request_path(&self) -> PathBuf {
        self.dir.join("reboot")
    }

    pub(super) fn request_reboot(&self) {
        let path = self.reboot_request_path();
        match crate::fsutil::write_durable(&path, b"") {
            Ok(()) => info!(request = %path.display(), "reboot requested"),
            Err(e) => error!(request = %path.display(), error = %e, "cannot request a reboot"),
        }
    }

    /// Takes the install slot, or says why not.
    pub fn begin(&self) -> Result<InstallJob, UpdateError> {
        if self.system.is_none() {
            return Err(UpdateError::Unavailable("no RAUC service".into()));
        }
        let guard = self.busy.clone().try_lock_owned().map_err(|_| UpdateError::Busy)?;
        std::fs::create_dir_all(&self.dir)
            .map_err(|source| UpdateError::Io { path: self.dir.display().to_string(), source })?;
        Ok(InstallJob { _guard: guard, bundle: self.dir.join("bundle.raucb"), status: self.status.clone() })
    }

    /// Writes an uploaded bundle, chunk by chunk, to the job's file.
    pub async fn receive<S, B, E>(&self, job: &InstallJob, mut body: S) -> Result<u64, UpdateError>
    where
        S: futures_util::Stream<Item = Result<B, E>> + Unpin,
        B: AsRef<[u8]>,
        E: std::error::Error + Send + Sync + 'static,
    {
        use futures_util::StreamExt;
        self.set_install(InstallState::Downloading, 0, None);
        let io = |source| UpdateError::Io { path: job.bundle.display().to_string(), source };
        let mut file = tokio::fs::File::create(&job.bundle).await.map_err(io)?;
        let mut total = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| UpdateError::Upload(Box::new(e)))?;
            file.write_all(chunk.as_ref()).await.map_err(io)?;
            total += chunk.as_ref().len() as u64;
        }
        file.sync_all().await.map_err(io)?;
        Ok(total)
    }

    /// Downloads `url` to the job's file.
    pub async fn download(&self, job: &InstallJob, url: &str) -> Result<u64, UpdateError> {
        check_url(url)?;
        self.set_install(InstallState::Downloading, 0, None);
        let dl = |source| UpdateError::Download { url: url.to_owned(), source };
        let mut resp = self.http.get(url).send().await.map_err(dl)?;
        if !resp.status().is_success() {
            return Err(UpdateError::DownloadStatus { url: url.to_owned(), status: resp.status().as_u16() });
        }
        let size = resp.content_length();
        let io = |source| UpdateError::Io { path: job.bundle.display().to_string(), source };
        let mut file = tokio::fs::File::create(&job.bundle).await.map_err(io)?;
        let mut total = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(dl)? {
            file.write_all(&chunk).await.map_err(io)?;
            total += chunk.len() as u64;
            if let Some(size) = size.filter(|s| *s > 0) {
                let pct = (total.saturating_mul(100) / size).min(100) as u8;
                self.set(|s| s.update.progress = pct);
            }
        }
        file.sync_all().await.map_err(io)?;
        Ok(total)
    }

    /// Installs the job's bundle; on success remembers the slot the box comes
    /// from and asks for the reboot into the new one.
    pub async fn install(&self, job: InstallJob) -> Result<(), UpdateError> {
        let Some(system) = &self.system else { return Err(UpdateError::Unavailable("no RAUC service".into())) };
        let from = self.status().slot.unwrap_or_default();
        self.set_install(InstallState::Installing, 0, None);
        info!(bundle = %job.bundle.display(), from_slot = %from, "installing update");
        let progress = |p: u8| self.set(|s| s.update.progress = p);
        let res = system.install(&job.bundle, &progress).await;
        drop(job); // removes the bundle: it does not stay on the data partition
        res?;
        let pending = serde_json::to_vec(&Pending { from_slot: from }).unwrap_or_default();
        crate::fsutil::write_durable(&self.pending_path(), &pending)
            .map_err(|source| UpdateError::Io { path: self.pending_path().display().to_string(), source })?;
        // The request goes first, so that whoever sees `rebooting` finds it made.
        if self.cfg.reboot {
            info!("update installed; rebooting into the new slot");
            self.request_reboot();
        } else {
            info!("update installed; the new slot boots at the next reboot (update.reboot is off)");
        }
        self.set_install(InstallState::Rebooting, 100, None);
        Ok(())
    }

    /// Records a failed install (after [`Updater::begin`] succeeded).
    pub fn failed(&self, e: &UpdateError) {
        let msg = crate::telemetry::chain(e);
        error!(error = %msg, "update failed");
        self.set_install(InstallState::Failed, 0, Some(msg));
    }

    /// Downloads and installs `url` in the background (the API's URL form, and
    /// Home Assistant's install button).
    pub fn spawn_url_install(self: &Arc<Self>, job: InstallJob, url: String) {
        let me = self.clone();
        tokio::spawn(async move {
            let res = match me.download(&job, &url).await {
                Ok(bytes) => {
                    info!(url = %crate::telemetry::redact_url(&url), bytes, "update bundle downloaded");
                    me.install(job).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = res {
                me.failed(&e);
            }
        });
    }

    /// Installs an uploaded bundle in the background (the state says
    /// `installing` as soon as this returns).
    pub fn spawn_install(self: &Arc<Self>, job: InstallJob) {
        self.set_install(InstallState::Installing, 0, None);
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.install(job).await {
                me.failed(&e);
            }
        });
    }

    /// Reads the update feed now.
    pub async fn check_feed(&self) -> Result<(), UpdateError> {
        let Some(url) = &self.cfg.feed_url else { return Ok(()) };
        let dl = |source| UpdateError::Download { url: url.clone(), source };
        let resp = self.http.get(url).timeout(Duration::from_secs(60)).send().await.map_err(dl)?;
        if !resp.status().is_success() {
            return Err(UpdateError::DownloadStatus { url: url.clone(), status: resp.status().as_u16() });
        }
        let bytes = resp.bytes().await.map_err(dl)?;
        let feed: Feed =
            serde_json::from_slice(&bytes).map_err(|source| UpdateError::Feed { url: url.clone(), source })?;
        check_url(&feed.url)?;
        self.set(|s| {
            s.latest_version = Some(feed.version);
            s.latest_url = Some(feed.url);
            s.release_notes = feed.notes;
        });
        Ok(())
    }

    /// Installs the feed's latest bundle if it is newer than what runs.
    pub fn install_latest(self: &Arc<Self>) -> Result<(), UpdateError> {
        let s = self.status();
        let (Some(latest), Some(url)) = (&s.latest_version, &s.latest_url) else {
            info!("install requested, but no update feed has named a bundle");
            return Ok(());
        };
        if latest == s.installed_version() {
            info!(version = %latest, "install requested, but this version runs already");
            return Ok(());
        }
        let job = self.begin()?;
        self.spawn_url_install(job, url.clone());
        Ok(())
    }

    /// Background work until `stop`: the feed, and install requests from notifiers.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let Some(mut requests) = self.install_rx.lock().unwrap_or_else(PoisonError::into_inner).take() else {
            return;
        };
        let mut ticks = tokio::time::interval(Duration::from_secs(self.cfg.check_interval_s));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick(), if self.cfg.feed_url.is_some() && self.is_available() => {
                    if let Err(e) = self.check_feed().await {
                        warn!(error = %crate::telemetry::chain(&e), "cannot read the update feed");
                    }
                }
                Some(()) = requests.recv() => {
                    if let Err(e) = self.install_latest() {
                        warn!(error = %crate::telemetry::chain(&e), "cannot start the update");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
