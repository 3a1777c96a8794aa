//! Where HomeSec keeps its files ([`DataLayout`]) and how it writes them
//! durably: `.part`, fsync, rename, fsync the directory.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
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

    /// Clips fetched back from the storage for processing (their recording
    /// was gone), deleted once processed.
    pub fn fetched(&self) -> PathBuf {
        self.data_dir.join("fetched")
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

/// Where a live camera keeps the VLM's frames of a clip: `<clip>.frames/`
/// beside `<clip>.mp4`.
pub fn frames_dir(clip: &Path) -> PathBuf {
    clip.with_extension("frames")
}

/// `<dest>.part`: where a file is written before it is renamed to `dest`.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// Fsyncs a directory, so that a rename inside it survives a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Renames `part` to `dest` and fsyncs `dest`'s directory.
fn rename_into_place(part: &Path, dest: &Path) -> std::io::Result<()> {
    fs::rename(part, dest)?;
    dest.parent().map_or(Ok(()), sync_dir)
}

/// A file being written durably: the bytes go to `<dest>.part`, and
/// [`commit`](Self::commit) fsyncs it, renames it to `dest` and fsyncs the
/// directory, so that after a crash `dest` is either absent or complete.
///
/// Dropped without `commit`, it leaves `dest` untouched and only the `.part`
/// file behind (as a crash would); [`discard`](Self::discard) removes that too.
/// Unbuffered: wrap it in a `BufWriter` for many small writes.
#[derive(Debug)]
pub struct PartFile {
    dest: PathBuf,
    part: PathBuf,
    file: fs::File,
}

impl PartFile {
    /// Creates (or truncates) `<dest>.part`, creating `dest`'s directory first.
    pub fn create(dest: &Path) -> std::io::Result<Self> {
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir)?;
        }
        let part = part_path(dest);
        let file = fs::File::create(&part)?;
        Ok(Self { dest: dest.to_path_buf(), part, file })
    }

    /// Reopens, for reading and writing, a `<dest>.part` that an earlier
    /// writer left unfinished (crash recovery).
    pub fn reopen(dest: &Path) -> std::io::Result<Self> {
        let part = part_path(dest);
        let file = fs::OpenOptions::new().read(true).write(true).open(&part)?;
        Ok(Self { dest: dest.to_path_buf(), part, file })
    }

    /// Takes over a `<dest>.part` that something else wrote (e.g. `fs::copy`).
    fn open_existing(dest: &Path) -> std::io::Result<Self> {
        let part = part_path(dest);
        let file = fs::File::open(&part)?;
        Ok(Self { dest: dest.to_path_buf(), part, file })
    }

    /// Where the file goes on [`commit`](Self::commit).
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// The `.part` file being written.
    pub fn part(&self) -> &Path {
        &self.part
    }

    /// The open `.part` file (to fsync its data, read it back, truncate it).
    pub fn as_file(&self) -> &fs::File {
        &self.file
    }

    /// Fsyncs the `.part` file, renames it to the destination and fsyncs the
    /// directory.
    pub fn commit(self) -> std::io::Result<()> {
        self.file.sync_all()?;
        drop(self.file);
        rename_into_place(&self.part, &self.dest)
    }

    /// Gives up: closes and removes the `.part` file.
    pub fn discard(self) -> std::io::Result<()> {
        drop(self.file);
        fs::remove_file(&self.part)
    }
}

impl Write for PartFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        self.file.write_vectored(bufs)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Seek for PartFile {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.file.seek(pos)
    }
}

/// Writes `bytes` to `dest` so that after a crash `dest` is either absent or complete.
pub fn write_durable(dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = PartFile::create(dest)?;
    f.write_all(bytes)?;
    f.commit()
}

/// Writes a file that a crash may lose (a cache with a fallback): under its
/// `.part` name, then renamed, never fsynced. Its name never shows a file
/// being written, but after a power cut it may be short or empty; a file
/// deleted soon after may never reach the disk at all (an SD card's writes saved).
pub fn write_cache(dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let part = part_path(dest);
    fs::write(&part, bytes)?;
    fs::rename(&part, dest)
}

/// Copies `src` to `dest` durably (hard link when on the same file system).
pub fn copy_durable(src: &Path, dest: &Path) -> std::io::Result<()> {
    if let Some(dir) = dest.parent() {
        fs::create_dir_all(dir)?;
    }
    let part = part_path(dest);
    let _ = fs::remove_file(&part);
    if fs::hard_link(src, &part).is_ok() {
        // A second name for a file that is already on disk: nothing to fsync.
        return rename_into_place(&part, dest);
    }
    fs::copy(src, &part)?;
    PartFile::open_existing(dest)?.commit()
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
    fn relative_paths_resolve_against_the_config_dir_without_dot_dots() {
        let base = Path::new("/repo/config");
        assert_eq!(resolve_path(base, Path::new("../.homesec/demo")), Path::new("/repo/.homesec/demo"));
        assert_eq!(resolve_path(base, Path::new("./models/m.onnx")), Path::new("/repo/config/models/m.onnx"));
        assert_eq!(resolve_path(base, Path::new("/abs/x")), Path::new("/abs/x"));
    }

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

    #[test]
    fn a_part_file_appears_at_its_destination_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x/clip.mp4");
        let mut f = PartFile::create(&dest).unwrap();
        assert_eq!((f.dest(), f.part()), (dest.as_path(), part_path(&dest).as_path()));
        f.write_all(b"abcdef").unwrap();
        f.seek(SeekFrom::Start(1)).unwrap();
        f.write_all(b"B").unwrap();
        assert!(part_path(&dest).exists() && !dest.exists());
        f.commit().unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"aBcdef");
        assert!(!part_path(&dest).exists());

        // Dropped uncommitted: only the .part file is left; discard removes it.
        let other = dir.path().join("x/other.mp4");
        let mut f = PartFile::create(&other).unwrap();
        f.write_all(b"zz").unwrap();
        drop(f);
        assert!(part_path(&other).exists() && !other.exists());
        let f = PartFile::create(&other).unwrap();
        f.discard().unwrap();
        assert!(!part_path(&other).exists() && !other.exists());
        assert_eq!(fs::read(&dest).unwrap(), b"aBcdef");
    }
}
