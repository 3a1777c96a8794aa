//! The box's one FTP server: libunftp with the account from the config, failed
//! log-in lockout, and the cameras' folders. Completed uploads arrive as
//! libunftp's "file stored" events and are taken before the client hears 226.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use libunftp::notification::{DataEvent, DataListener, EventMeta};
use libunftp::options::{FailedLoginsBlock, FailedLoginsPolicy, FtpsRequired, Shutdown};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use unftp_core::auth::{
    AuthenticationError, Authenticator, Credentials, Principal, UserDetail, UserDetailError, UserDetailProvider,
};

use super::config::FtpServerConfig;
use super::storage::{Uploads, plain};
use super::{CameraState, FtpError};
use crate::pipeline::ClipSink;
use crate::plugin::PluginContext;
use crate::sources::SourceError;
use crate::sources::intake::{Intake, Taken};

/// Files other than `.mp4` (snapshots, temporary names) are removed by a sweep
/// once they are this old.
const STALE_OTHER: Duration = Duration::from_secs(600);

/// A camera whose source is running: where its uploads go.
struct Slot {
    intake: Intake,
    sink: ClipSink,
    state: Arc<Mutex<CameraState>>,
}

/// What the server, its sessions and its storage share.
pub(super) struct Shared {
    pub(super) root: PathBuf,
    pub(super) max_upload_bytes: u64,
    /// Free space the disk keeps (the retention budget's floor).
    min_free: MinFree,
    /// Configured folders (lower case), running cameras by folder.
    subdirs: HashSet<String>,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// Files being written now.
    writing: Mutex<HashSet<PathBuf>>,
    /// Files written whole whose "stored" event has not come yet, by session.
    stored: Mutex<HashMap<PathBuf, u64>>,
    /// One file taken at a time (events and the start-up sweep).
    taking: tokio::sync::Mutex<()>,
    next_session: AtomicU64,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").field("root", &self.root).finish_non_exhaustive()
    }
}

/// The disk's free-space floor: fixed, or the retention default for the partition.
#[derive(Debug, Clone)]
pub(super) struct MinFree(crate::retention::RetentionConfig);

impl Shared {
    /// Whether `rel` is a file inside a configured camera folder.
    pub(super) fn is_camera_file(&self, rel: &Path) -> bool {
        let mut parts = rel.components();
        let first = parts.next().and_then(|c| c.as_os_str().to_str()).map(str::to_ascii_lowercase);
        first.is_some_and(|f| self.subdirs.contains(&f)) && parts.next().is_some()
    }

    /// Why an upload cannot be taken now for lack of space, if it cannot.
    pub(super) fn disk_full(&self) -> Option<String> {
        let (free, total) = crate::retention::disk::space(&self.root).ok()?;
        let floor = self.min_free.0.budget(total).min_free;
        (free <= floor).then(|| format!("{free} bytes free, the floor is {floor}"))
    }

    pub(super) fn writing(&self, rel: &Path, on: bool) {
        if let Ok(mut w) = self.writing.lock() {
            if on {
                w.insert(rel.to_path_buf());
            } else {
                w.remove(rel);
            }
        }
    }

    pub(super) fn stored(&self, rel: &Path, session: u64) {
        if let Ok(mut s) = self.stored.lock() {
            s.insert(rel.to_path_buf(), session);
        }
    }

    fn busy(&self, rel: &Path) -> bool {
        self.writing.lock().map(|w| w.contains(rel)).unwrap_or(true)
            || self.stored.lock().map(|s| s.contains_key(rel)).unwrap_or(true)
    }

    /// A session is over: a file it wrote whole but whose "stored" event never
    /// came was cut at the client (its control connection gone before the
    /// server could answer): the camera did not see it succeed. Removed.
    fn session_ended(&self, session: u64) {
        let Ok(mut stored) = self.stored.lock() else { return };
        let gone: Vec<PathBuf> = stored.iter().filter(|(_, s)| **s == session).map(|(p, _)| p.clone()).collect();
        for rel in gone {
            stored.remove(&rel);
            let Some(full) = self.inside(&rel) else { continue };
            match std::fs::remove_file(&full) {
                Ok(()) => warn!(file = %rel.display(), "FTP upload whose client went away before it completed removed"),
                Err(e) => warn!(file = %rel.display(), error = %e, "cannot remove a cut FTP upload"),
            }
        }
    }

    /// `rel`'s real path when it resolves inside the root (no symlink out).
    fn inside(&self, rel: &Path) -> Option<PathBuf> {
        let root = self.root.canonicalize().ok()?;
        let full = self.root.join(rel).canonicalize().ok()?;
        full.starts_with(&root).then_some(full)
    }

    fn slot_for(&self, rel: &Path) -> Option<Arc<Slot>> {
        let first = rel.components().next()?.as_os_str().to_str()?.to_ascii_lowercase();
        self.slots.lock().ok()?.get(&first).cloned()
    }

    /// Takes the file `rel` for its camera: a clip (`.mp4`) or, when it cannot
    /// be read, a quarantined one; whether it did. Other files stay (a camera
    /// may rename one to `.mp4`) until a sweep finds them older than
    /// [`STALE_OTHER`], then they are removed.
    async fn take(&self, rel: &Path, sweeping: bool) -> Result<bool, SourceError> {
        let _one = self.taking.lock().await;
        if tokio::fs::symlink_metadata(self.root.join(rel)).await.is_err() {
            // Taken already (the event and a sweep both saw it) or removed.
            return Ok(false);
        }
        let Some(full) = self.inside(rel) else {
            warn!(file = %rel.display(), "FTP upload is not inside the FTP root; left alone");
            return Ok(false);
        };
        let meta = tokio::fs::symlink_metadata(&full)
            .await
            .map_err(|source| SourceError::Io { path: full.display().to_string(), source })?;
        if !meta.is_file() {
            return Ok(false);
        }
        let Some(slot) = self.slot_for(rel) else {
            // The camera's source is not running yet: its start-up sweep takes it.
            debug!(file = %rel.display(), "FTP upload for a camera not running yet");
            return Ok(false);
        };
        let camera = slot.intake.camera().clone();
        let is_mp4 = rel.extension().is_some_and(|e| e.eq_ignore_ascii_case("mp4"));
        if !is_mp4 {
            let age = meta.modified().ok().and_then(|m| m.elapsed().ok()).unwrap_or_default();
            if sweeping && age >= STALE_OTHER {
                info!(camera = %camera, file = %rel.display(), "file in the FTP folder that is not an .mp4 clip removed");
                let _ = tokio::fs::remove_file(&full).await;
            } else if !sweeping {
                debug!(camera = %camera, file = %rel.display(), "FTP upload is not an .mp4 clip; kept for a rename");
            }
            return Ok(false);
        }
        let mtime = meta.modified().unwrap_or_else(|_| SystemTime::now());
        let result = slot.intake.take(&slot.sink, &full, mtime).await;
        if let Ok(mut s) = slot.state.lock() {
            s.last_upload = Some(Instant::now());
            s.last_error = result.as_ref().err().map(|e| crate::telemetry::chain(e));
        }
        match &result {
            Ok(Taken::Clip(id)) => debug!(camera = %camera, clip_id = %id, "FTP upload taken"),
            Ok(Taken::Quarantined(..)) => {}
            Err(e) => {
                error!(camera = %camera, file = %rel.display(), error = %crate::telemetry::chain(e), "cannot take FTP upload")
            }
        }
        result.map(|_| true)
    }
}

/// The box's FTP server, shared by its FTP cameras; started by the first one.
pub struct FtpServer {
    cfg: FtpServerConfig,
    tls: Option<(PathBuf, PathBuf)>,
    shared: Arc<Shared>,
    /// Listening, or why not.
    status: Arc<Mutex<(bool, Option<String>)>>,
    started: Mutex<bool>,
}

impl FtpServer {
    /// The server for `cfg` (checked already), serving `subdirs` under
    /// `data_dir/ftp`; `retention` gives the free-space floor.
    pub fn new(
        cfg: FtpServerConfig,
        subdirs: &[String],
        retention: &crate::retention::RetentionConfig,
        ctx: &PluginContext,
    ) -> Result<Self, FtpError> {
        let root = ctx.layout.data_dir().join("ftp");
        for sub in subdirs {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir)
                .map_err(|source| FtpError::Root { path: dir.display().to_string(), source })?;
        }
        let tls = cfg.tls.as_ref().map(|t| (ctx.resolve(&t.cert), ctx.resolve(&t.key)));
        Ok(Self {
            shared: Arc::new(Shared {
                root,
                max_upload_bytes: cfg.max_upload_bytes,
                min_free: MinFree(retention.clone()),
                subdirs: subdirs.iter().map(|s| s.to_ascii_lowercase()).collect(),
                slots: Mutex::default(),
                writing: Mutex::default(),
                stored: Mutex::default(),
                taking: tokio::sync::Mutex::new(()),
                next_session: AtomicU64::new(1),
            }),
            tls,
            cfg,
            status: Arc::new(Mutex::new((false, None))),
            started: Mutex::new(false),
        })
    }

    pub(super) fn register(&self, subdir: &str, intake: Intake, sink: ClipSink, state: Arc<Mutex<CameraState>>) {
        if let Ok(mut slots) = self.shared.slots.lock() {
            slots.insert(subdir.to_ascii_lowercase(), Arc::new(Slot { intake, sink, state }));
        }
    }

    pub(super) fn unregister(&self, subdir: &str) {
        if let Ok(mut slots) = self.shared.slots.lock() {
            slots.remove(&subdir.to_ascii_lowercase());
        }
    }

    /// Listening, and the server's last problem.
    pub(super) fn status(&self) -> (bool, Option<String>) {
        self.status.lock().map(|s| s.clone()).unwrap_or((false, Some("state poisoned".into())))
    }

    pub(super) fn describe(&self) -> String {
        format!("{} (passive {})", self.cfg.listen, self.cfg.passive_ports)
    }

    /// Starts listening (once); the server stops when `shutdown` is cancelled.
    pub(super) fn start(&self, shutdown: &CancellationToken) -> Result<(), FtpError> {
        let Ok(mut started) = self.started.lock() else { return Ok(()) };
        if *started {
            return Ok(());
        }
        *started = true;
        let result = self.spawn(shutdown);
        if let Ok(mut s) = self.status.lock() {
            *s = match &result {
                Ok(()) => (true, None),
                Err(e) => (false, Some(crate::telemetry::chain(e))),
            };
        }
        result
    }

    fn spawn(&self, shutdown: &CancellationToken) -> Result<(), FtpError> {
        let cfg = &self.cfg;
        let listen = cfg.listen.clone();
        // Bound here first, so that a port in use is said plainly (libunftp binds again).
        drop(
            std::net::TcpListener::bind(&listen)
                .map_err(|source| FtpError::Listen { listen: listen.clone(), source })?,
        );
        let setup = |e: &str| FtpError::Setup(e.to_owned().into());
        let range = cfg.passive_range().ok_or_else(|| setup("passive_ports is not a range"))?;
        let account = match (&cfg.username_env, &cfg.password_env) {
            (Some(u), Some(p)) => Some((env(u)?, env(p)?)),
            _ => None,
        };
        let login =
            Login { account, anonymous: cfg.anonymous, max_failed: cfg.max_failed_logins, lockout_s: cfg.lockout_s };
        let shared = self.shared.clone();
        let sessions = Sessions { shared: self.shared.clone() };
        let stop = shutdown.clone();
        let mut builder = libunftp::ServerBuilder::with_user_detail_provider(
            Box::new(move || Uploads::new(shared.clone())),
            Arc::new(sessions),
        )
        .authenticator(Arc::new(login))
        .notify_data(Arrivals { shared: self.shared.clone() })
        .greeting("HomeSec FTP")
        .passive_ports(range)
        .idle_session_timeout(cfg.idle_timeout_s)
        .failed_logins_policy(FailedLoginsPolicy::new(
            cfg.max_failed_logins,
            Duration::from_secs(cfg.lockout_s),
            FailedLoginsBlock::UserAndIP,
        ))
        .shutdown_indicator(async move {
            stop.cancelled().await;
            Shutdown::new().grace_period(Duration::from_secs(5))
        });
        if let Some(ip) = cfg.passive_host {
            builder = builder.passive_host(ip);
        }
        if let Some((cert, key)) = &self.tls {
            builder = builder.ftps(cert.clone(), key.clone());
            if cfg.tls.as_ref().is_some_and(|t| t.required) {
                builder = builder.ftps_required(FtpsRequired::All, FtpsRequired::All);
            }
        }
        let server = builder.build().map_err(|e| FtpError::Setup(Box::new(e)))?;
        let status = self.status.clone();
        info!(listen = %listen, passive_ports = %cfg.passive_ports, "FTP server listening");
        tokio::spawn(async move {
            let result = server.listen(listen.clone()).await;
            let why = match result {
                Ok(()) => None,
                Err(e) => {
                    let msg = crate::telemetry::chain(&e);
                    error!(listen = %listen, error = %msg, "FTP server stopped");
                    Some(msg)
                }
            };
            if let Ok(mut s) = status.lock() {
                *s = (false, why);
            }
        });
        Ok(())
    }

    /// Takes the files left in a camera's folder (uploads completed while the
    /// daemon was down or before the camera's source ran, or that could not be
    /// taken); how many it took.
    pub(super) async fn adopt_leftovers(&self, subdir: &str) -> Result<usize, FtpError> {
        let mut files = Vec::new();
        let mut dirs = vec![PathBuf::from(subdir)];
        while let Some(dir) = dirs.pop() {
            let full = self.shared.root.join(&dir);
            let mut rd = match tokio::fs::read_dir(&full).await {
                Ok(rd) => rd,
                Err(source) => return Err(FtpError::Root { path: full.display().to_string(), source }),
            };
            while let Ok(Some(entry)) = rd.next_entry().await {
                let Ok(kind) = entry.file_type().await else { continue };
                let rel = dir.join(entry.file_name());
                if kind.is_dir() {
                    dirs.push(rel);
                } else if kind.is_file() && !self.shared.busy(&rel) {
                    files.push(rel);
                }
            }
        }
        let mut n = 0;
        for rel in files {
            n += usize::from(self.shared.take(&rel, true).await?);
        }
        Ok(n)
    }
}

fn env(name: &str) -> Result<String, FtpError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| FtpError::Setup(format!("environment variable {name} is not set").into()))
}

/// Checks the one account (or anonymous); compares in constant time.
struct Login {
    account: Option<(String, String)>,
    anonymous: bool,
    /// For the log: how many wrong passwords lock a client out, for how long.
    max_failed: u32,
    lockout_s: u64,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the credentials.
        f.debug_struct("Login").field("anonymous", &self.anonymous).finish_non_exhaustive()
    }
}

#[async_trait]
impl Authenticator for Login {
    async fn authenticate(&self, username: &str, creds: &Credentials) -> Result<Principal, AuthenticationError> {
        if self.anonymous && (username == "anonymous" || username == "ftp") {
            return Ok(Principal { username: username.to_owned() });
        }
        let Some((user, pass)) = &self.account else { return Err(AuthenticationError::BadUser) };
        let given = creds.password.as_deref().unwrap_or("");
        let user_ok: bool = user.as_bytes().ct_eq(username.as_bytes()).into();
        let pass_ok: bool = pass.as_bytes().ct_eq(given.as_bytes()).into();
        if user_ok && pass_ok {
            return Ok(Principal { username: username.to_owned() });
        }
        // Either part wrong counts towards the lockout (libunftp counts "bad
        // password" only), and the answer does not say which part it was.
        warn!(
            client = %creds.source_ip,
            max_failed_logins = self.max_failed,
            lockout_s = self.lockout_s,
            "FTP log-in refused: wrong user name or password; after max_failed_logins in a row the client is \
             locked out (530 even for the right password) until lockout_s after the last"
        );
        Err(AuthenticationError::BadPassword)
    }
}

/// A logged-in session's user; when the session (and its transfers) are gone,
/// the last clone's drop says so.
#[derive(Debug)]
pub(crate) struct FtpUser {
    name: String,
    session: SessionEnd,
}

impl FtpUser {
    pub(super) fn session_id(&self) -> u64 {
        self.session.id
    }
}

impl fmt::Display for FtpUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl UserDetail for FtpUser {}

#[derive(Debug)]
struct SessionEnd {
    id: u64,
    shared: Arc<Shared>,
}

impl Drop for SessionEnd {
    fn drop(&mut self) {
        self.shared.session_ended(self.id);
    }
}

#[derive(Debug)]
struct Sessions {
    shared: Arc<Shared>,
}

#[async_trait]
impl UserDetailProvider for Sessions {
    type User = FtpUser;

    async fn provide_user_detail(&self, principal: &Principal) -> Result<FtpUser, UserDetailError> {
        let id = self.shared.next_session.fetch_add(1, Ordering::Relaxed);
        Ok(FtpUser { name: principal.username.clone(), session: SessionEnd { id, shared: self.shared.clone() } })
    }
}

/// libunftp's data events: a "stored" one is an upload that completed.
#[derive(Debug)]
struct Arrivals {
    shared: Arc<Shared>,
}

#[async_trait]
impl DataListener for Arrivals {
    async fn receive_data_event(&self, e: DataEvent, _m: EventMeta) {
        let (rel, what) = match e {
            DataEvent::Put { path, bytes } => {
                let Some(rel) = plain(Path::new(&path)) else { return };
                if let Ok(mut stored) = self.shared.stored.lock() {
                    stored.remove(&rel);
                }
                debug!(file = %rel.display(), bytes, "FTP upload complete");
                (rel, "upload")
            }
            // Cameras that upload under a temporary name rename it when done.
            DataEvent::Renamed { to, .. } => {
                let Some(rel) = plain(Path::new(&to)) else { return };
                (rel, "rename")
            }
            _ => return,
        };
        // Errors are logged and kept in the camera's health; the file stays and is tried again.
        if let Err(e) = self.shared.take(&rel, false).await {
            debug!(file = %rel.display(), what, error = %crate::telemetry::chain(&e), "FTP file not taken yet");
        }
    }
}
