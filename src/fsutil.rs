//! Where HomeSec keeps its files ([`DataLayout`]) and how it writes them
//! durably: `.part`, fsync, rename, fsync the directory.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `p` resolved against `base` when relative, with `.` and `..` folded away
/// (so logs show `/srv/homesec/data`, not `/srv/homesec/config/../data`).
pub fn resolve_path(base: &Path, p: &Path) -> PathBuf {
    use std::path::Component;
    let joined = if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push(c);
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The data directory's layout: every path under `data_dir` is built here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataLayout {
    data_dir: PathBuf,
}

impl DataLayout {
    /// `data_dir` as configured (absolute).
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self { data_dir: data_dir.into() }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The redb store (queue, manifest, outboxes).
    pub fn store(&self) -> PathBuf {
        self.data_dir.join("homesec.redb")
    }

    /// Recorded clips, one directory per camera below.
    pub fn recordings(&self) -> PathBuf {
        self.data_dir.join("recordings")
    }

    /// One camera's recordings.
    pub fn camera_recordings(&self, camera: &str) -> PathBuf {
        self.recordings().join(camera)
    }

    /// Alert snapshots (JPEG).
    pub fn snapshots(&self) -> PathBuf {
        self.data_dir.join("snapshots")
    }

    /// Clips that cannot be processed, kept for a person to look at.
    pub fn quarantine(&self) -> PathBuf {
        self.data_dir.join("quarantine")
    }

    /// The `local` storage backend's default root.
    pub fn storage(&self) -> PathBuf {
        self.data_dir.join("storage")
    }

    /// Update bundles and state.
    pub fn update(&self) -> PathBuf {
        self.data_dir.join("update")
    }

    /// Creates the directories the daemon writes into from the start.
    pub fn create_dirs(&self) -> std::io::Result<()> {
        for dir in [self.data_dir.clone(), self.recordings(), self.snapshots()] {
            fs::create_dir_all(&dir)?;
        }
        Ok(())
    }
}

fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Writes `bytes` to `dest` so that after a crash `dest` is either absent or complete.
pub fn write_durable(dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = dest.parent() {
        fs::create_dir_all(dir)?;
    }
    let part = part_path(dest);
    let mut f = fs::File::create(&part)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&part, dest)?;
    dest.parent().map_or(Ok(()), sync_dir)
}

/// Copies `src` to `dest` durably (hard link when on the same file system).
pub fn copy_durable(src: &Path, dest: &Path) -> std::io::Result<()> {
    if let Some(dir) = dest.parent() {
        fs::create_dir_all(dir)?;
    }
    let part = part_path(dest);
    let _ = fs::remove_file(&part);
    if fs::hard_link(src, &part).is_err() {
        fs::copy(src, &part)?;
        fs::File::open(&part)?.sync_all()?;
    }
    fs::rename(&part, dest)?;
    dest.parent().map_or(Ok(()), sync_dir)
}

/// Moves a file durably, across file systems if needed. When the source cannot
/// be removed (a read-only drop folder) the copy stands and `Ok(false)` says so.
pub fn move_durable(src: &Path, dest: &Path) -> std::io::Result<bool> {
    if let Some(dir) = dest.parent() {
        fs::create_dir_all(dir)?;
    }
    if fs::rename(src, dest).is_ok() {
        dest.parent().map_or(Ok(()), sync_dir)?;
        return Ok(true);
    }
    copy_durable(src, dest)?;
    Ok(fs::remove_file(src).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_leave_no_part_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a/b.jpg");
        write_durable(&dest, b"xyz").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"xyz");
        assert!(!part_path(&dest).exists());
        let copy = dir.path().join("c/d.jpg");
        copy_durable(&dest, &copy).unwrap();
        assert_eq!(fs::read(&copy).unwrap(), b"xyz");
        let moved = dir.path().join("e.jpg");
        assert!(move_durable(&copy, &moved).unwrap());
        assert!(!copy.exists() && moved.exists());
    }
}
