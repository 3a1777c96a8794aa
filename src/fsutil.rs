//! Durable file writes: `.part`, fsync, rename, fsync the directory.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

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
