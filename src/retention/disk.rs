//! What HomeSec keeps on the data partition, measured from the file system:
//! every byte under its folders counted once (hard links once), the free space
//! of the partition, and the files of one clip with what deleting them frees.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::domain::ClipRecord;

/// Where HomeSec keeps clip bytes on the box.
#[derive(Clone, Debug)]
pub struct Places {
    /// The data directory (its file system is the data partition).
    pub data_dir: PathBuf,
    /// Folders whose every file counts: recordings (with the frames kept for
    /// the VLM), snapshots, quarantine.
    pub folders: Vec<PathBuf>,
    /// A local storage's root on the data partition: the box's archive. `None`
    /// when clips are stored elsewhere (a remote service, or a mount such as a NAS).
    pub archive: Option<PathBuf>,
}

impl Places {
    /// The data layout's folders, and `local_storage` when it lives on the data
    /// partition.
    pub fn new(layout: &crate::fsutil::DataLayout, local_storage: Option<&Path>) -> Self {
        let data_dir = layout.data_dir().to_path_buf();
        let device = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
        let archive = local_storage.filter(|root| {
            // A root not created yet will be made under its parent.
            let existing = root.ancestors().find(|a| a.exists()).unwrap_or(root);
            device(existing).is_some() && device(existing) == device(&data_dir)
        });
        Places {
            data_dir,
            folders: vec![layout.recordings(), layout.snapshots(), layout.quarantine()],
            archive: archive.map(Path::to_path_buf),
        }
    }

    /// The archive copy of a clip, when the clip was stored in the box's archive.
    fn archive_copy(&self, r: &ClipRecord) -> Option<PathBuf> {
        let root = self.archive.as_ref()?;
        let path = PathBuf::from(r.storage_uri.as_deref()?.strip_prefix("file://")?);
        // Only a file inside the archive, never one a `..` leads out of.
        (path.starts_with(root) && !path.components().any(|c| c == std::path::Component::ParentDir)).then_some(path)
    }
}

/// The data partition now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Bytes of every file HomeSec keeps (hard links once).
    pub used: u64,
    /// Bytes free for HomeSec on the partition.
    pub free: u64,
    /// Size of the partition.
    pub total: u64,
}

/// Measures [`Usage`]: walks every place once.
pub fn measure(places: &Places) -> std::io::Result<Usage> {
    let (free, total) = space(&places.data_dir)?;
    let mut seen = HashSet::new();
    let mut used = 0;
    let mut roots: Vec<&Path> = places.folders.iter().map(PathBuf::as_path).collect();
    roots.extend(places.archive.as_deref());
    // A root inside another is walked with its parent.
    roots.sort();
    roots.dedup_by(|b, a| b.starts_with(a));
    for root in roots {
        used += walk(root, &mut seen);
    }
    Ok(Usage { used, free, total })
}

/// Free and total bytes of the file system holding `dir`.
pub fn space(dir: &Path) -> std::io::Result<(u64, u64)> {
    let s = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok((s.f_bavail.saturating_mul(s.f_frsize), s.f_blocks.saturating_mul(s.f_frsize)))
}

fn walk(dir: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut bytes = 0;
    for entry in entries.filter_map(Result::ok) {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            bytes += walk(&entry.path(), seen);
        } else if meta.is_file() && (meta.nlink() == 1 || seen.insert((meta.dev(), meta.ino()))) {
            bytes += meta.len();
        }
    }
    bytes
}

/// The files a clip still has on the box: its recording, the frames kept for
/// the VLM, its snapshot, its quarantined file and its archive copy.
pub fn clip_files(r: &ClipRecord, places: &Places) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if r.pruned.is_none() {
        let recording = PathBuf::from(&r.clip.local_path);
        if let Ok(frames) = std::fs::read_dir(crate::fsutil::frames_dir(&recording)) {
            files.extend(frames.filter_map(Result::ok).map(|e| e.path()));
        }
        files.push(recording);
        files.extend(r.snapshot_path.as_ref().map(PathBuf::from));
        files.extend(r.quarantine.as_ref().map(|q| PathBuf::from(&q.moved_to)));
    }
    files.extend(places.archive_copy(r));
    files.retain(|f| !f.as_os_str().is_empty());
    files.sort();
    files.dedup();
    files
}

/// Bytes that deleting all of `files` frees: a file whose other hard links
/// stay frees nothing.
pub fn freed_bytes(files: &[PathBuf]) -> u64 {
    let mut links: HashMap<(u64, u64), (u64, u64, u64)> = HashMap::new();
    for f in files {
        if let Ok(m) = std::fs::symlink_metadata(f)
            && m.is_file()
        {
            links.entry((m.dev(), m.ino())).or_insert((m.len(), m.nlink(), 0)).2 += 1;
        }
    }
    links.values().filter(|(_, nlink, ours)| ours >= nlink).map(|(len, _, _)| len).sum()
}

/// Deletes a clip's files (and the frames folder they leave empty). A file
/// already gone is fine; the first other failure stops and is returned.
pub fn delete(files: &[PathBuf]) -> Result<(), (PathBuf, std::io::Error)> {
    for f in files {
        if let Err(e) = std::fs::remove_file(f)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err((f.clone(), e));
        }
        if let Some(dir) = f.parent().filter(|d| d.extension().is_some_and(|e| e == "frames")) {
            // Fails while other frames remain; the last one removes the folder.
            let _ = std::fs::remove_dir(dir);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_links_count_once_and_free_bytes_only_with_their_last_link() {
        let dir = tempfile::tempdir().unwrap();
        let (rec, arch) = (dir.path().join("recordings"), dir.path().join("storage"));
        std::fs::create_dir_all(rec.join("cam")).unwrap();
        std::fs::create_dir_all(arch.join("cam")).unwrap();
        std::fs::write(rec.join("cam/a.mp4"), vec![0u8; 1000]).unwrap();
        std::fs::hard_link(rec.join("cam/a.mp4"), arch.join("cam/a.mp4")).unwrap();
        std::fs::write(rec.join("cam/b.mp4"), vec![0u8; 300]).unwrap();
        let places = Places { data_dir: dir.path().into(), folders: vec![rec.clone()], archive: Some(arch.clone()) };
        assert_eq!(measure(&places).unwrap().used, 1300);
        assert_eq!(freed_bytes(&[rec.join("cam/a.mp4")]), 0, "the archive's link keeps the bytes");
        assert_eq!(freed_bytes(&[rec.join("cam/a.mp4"), arch.join("cam/a.mp4")]), 1000);
        delete(&[rec.join("cam/a.mp4"), arch.join("cam/a.mp4"), rec.join("cam/gone.mp4")]).unwrap();
        assert_eq!(measure(&places).unwrap().used, 300);
    }
}
