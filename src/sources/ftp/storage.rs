//! The FTP server's storage: libunftp's file-system back-end (cap-std: no path
//! leaves the root, not by `..` nor by a symlink) with the box's rules around
//! uploads: only into a camera's folder, at most `max_upload_bytes`, not when
//! the disk is at its free-space floor, and what a failed upload left removed.

use std::fmt::Debug;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use async_trait::async_trait;
use tokio::io::{AsyncRead, ReadBuf};
use tracing::warn;
use unftp_core::storage::{Error, ErrorKind, Fileinfo, Result, StorageBackend};
use unftp_sbe_fs::{Filesystem, Meta};

use super::server::{FtpUser, Shared};

/// A session's view of the FTP root.
#[derive(Debug)]
pub(super) struct Uploads {
    fs: Option<Filesystem>,
    shared: Arc<Shared>,
}

impl Uploads {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        let fs = match Filesystem::new(shared.root.clone()) {
            Ok(fs) => Some(fs),
            Err(e) => {
                warn!(root = %shared.root.display(), error = %e, "cannot open the FTP root");
                None
            }
        };
        Self { fs, shared }
    }

    fn fs(&self) -> Result<&Filesystem> {
        self.fs.as_ref().ok_or_else(|| Error::from(ErrorKind::LocalError))
    }
}

/// `path` as the client names it, made plain: relative to the FTP root, no
/// `.`; `None` when it has `..` (refused outright, even when it would stay in).
pub(super) fn plain(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn refused(why: &'static str) -> Error {
    Error::new(ErrorKind::FileNameNotAllowedError, why)
}

/// Reads at most `left` bytes; one more trips `over` and fails the read.
struct Capped<R> {
    inner: R,
    left: u64,
    over: Arc<AtomicBool>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Capped<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = (buf.filled().len() - before) as u64;
                if n > this.left {
                    this.over.store(true, Ordering::SeqCst);
                    // An error reads nothing (the AsyncRead contract).
                    buf.set_filled(before);
                    return Poll::Ready(Err(std::io::Error::other("upload larger than max_upload_bytes")));
                }
                this.left -= n;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

#[async_trait]
impl StorageBackend<FtpUser> for Uploads {
    type Metadata = Meta;

    fn supported_features(&self) -> u32 {
        // SIZE and REST (resume); no SITE MD5 (hashing big files on demand).
        unftp_core::storage::FEATURE_RESTART
    }

    async fn metadata<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, path: P) -> Result<Meta> {
        self.fs()?.metadata(user, path).await
    }

    async fn list<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> Result<Vec<Fileinfo<PathBuf, Meta>>> {
        self.fs()?.list(user, path).await
    }

    async fn get<P: AsRef<Path> + Send + Debug>(
        &self,
        _user: &FtpUser,
        _path: P,
        _start_pos: u64,
    ) -> Result<Box<dyn AsyncRead + Send + Sync + Unpin>> {
        // Cameras only upload; nothing is handed out.
        Err(Error::new(ErrorKind::PermissionDenied, "downloads are not offered"))
    }

    async fn put<P: AsRef<Path> + Send + Debug, R: AsyncRead + Send + Sync + Unpin + 'static>(
        &self,
        user: &FtpUser,
        input: R,
        path: P,
        start_pos: u64,
    ) -> Result<u64> {
        let fs = self.fs()?;
        let rel = plain(path.as_ref()).ok_or_else(|| refused("`..` is not allowed in paths"))?;
        if !self.shared.is_camera_file(&rel) {
            return Err(refused("uploads go into a camera's folder"));
        }
        if let Some(why) = self.shared.disk_full() {
            warn!(file = %rel.display(), reason = %why, "FTP upload refused: disk at its free-space floor");
            return Err(Error::new(ErrorKind::InsufficientStorageSpaceError, why));
        }
        let cap = self.shared.max_upload_bytes;
        if start_pos >= cap {
            return Err(Error::from(ErrorKind::ExceededStorageAllocationError));
        }
        if start_pos == 0 {
            // A fresh upload replaces an old file whole (the back-end does not truncate).
            let _ = fs.del(user, &rel).await;
        }
        let over = Arc::new(AtomicBool::new(false));
        let capped = Capped { inner: input, left: cap - start_pos, over: over.clone() };
        self.shared.writing(&rel, true);
        let result = fs.put(user, capped, &rel, start_pos).await;
        self.shared.writing(&rel, false);
        match result {
            Ok(bytes) => {
                self.shared.stored(&rel, user.session_id());
                Ok(bytes)
            }
            Err(e) => {
                // Nothing of a failed upload is kept: the camera sends it again.
                let _ = fs.del(user, &rel).await;
                if over.load(Ordering::SeqCst) {
                    warn!(file = %rel.display(), max_upload_bytes = cap, "FTP upload over the size cap refused and removed");
                    Err(Error::new(ErrorKind::ExceededStorageAllocationError, "upload larger than max_upload_bytes"))
                } else {
                    warn!(file = %rel.display(), error = ?e, "FTP upload cut before its end; removed");
                    Err(e)
                }
            }
        }
    }

    async fn del<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        self.fs()?.del(user, path).await
    }

    async fn mkd<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        let rel = plain(path.as_ref()).ok_or_else(|| refused("`..` is not allowed in paths"))?;
        self.fs()?.mkd(user, rel).await
    }

    async fn rename<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, from: P, to: P) -> Result<()> {
        let from = plain(from.as_ref()).ok_or_else(|| refused("`..` is not allowed in paths"))?;
        let to = plain(to.as_ref()).ok_or_else(|| refused("`..` is not allowed in paths"))?;
        if !self.shared.is_camera_file(&to) {
            return Err(refused("files stay in a camera's folder"));
        }
        self.fs()?.rename(user, from, to).await
    }

    async fn rmd<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        self.fs()?.rmd(user, path).await
    }

    async fn cwd<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        self.fs()?.cwd(user, path).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn read_capped(len: usize, cap: u64) -> (std::io::Result<usize>, bool) {
        let over = Arc::new(AtomicBool::new(false));
        let data = vec![7u8; len];
        let mut r = Capped { inner: &data[..], left: cap, over: over.clone() };
        let mut out = Vec::new();
        let n = r.read_to_end(&mut out).await;
        (n, over.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn an_upload_of_exactly_the_cap_passes_and_one_byte_more_trips_it() {
        let (n, over) = read_capped(4096, 4096).await;
        assert_eq!((n.unwrap(), over), (4096, false));
        let (n, over) = read_capped(4097, 4096).await;
        assert!(n.is_err() && over);
        let (n, over) = read_capped(0, 4096).await;
        assert_eq!((n.unwrap(), over), (0, false));
    }

    #[test]
    fn paths_are_made_plain_and_dot_dots_refused() {
        assert_eq!(plain(Path::new("/driveway/2026-12-02/a.mp4")), Some(PathBuf::from("driveway/2026-12-02/a.mp4")));
        assert_eq!(plain(Path::new("./driveway//./a.mp4")), Some(PathBuf::from("driveway/a.mp4")));
        assert_eq!(plain(Path::new("/driveway/../driveway/a.mp4")), None);
        assert_eq!(plain(Path::new("../etc/passwd")), None);
    }
}
