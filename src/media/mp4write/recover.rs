//! Recovery of a clip whose writer never finished: the `.part` file and its
//! journal become a complete MP4 of every journaled sample.

use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tracing::warn;

use super::journal::{self, ReadError};
use super::moov::Track;
use super::{MDAT_HEADER, Mp4Summary, Mp4WriteError, complete, io_error, journal_path, summary};
use crate::fsutil::PartFile;

/// A clip [`recover`] completed.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    pub summary: Mp4Summary,
    /// Wall-clock time of the first sample (unix ms), when the writer knew it.
    pub start_wall_ms: Option<i64>,
    /// Journaled samples left out because their data was missing or damaged.
    pub dropped_samples: u32,
}

/// Completes the unfinished clip `part` (`<clip>.mp4.part`) from its journal:
/// cuts the file after the last journaled sample whose data is whole, writes
/// `moov`, fsyncs, renames it to `<clip>.mp4` and removes the journal.
///
/// When nothing can be recovered (no journal, a journal with no usable header
/// or no sample whose data is on disk), both files are removed, the reason is
/// logged, and the answer is `Ok(None)`. An existing `<clip>.mp4` is never
/// overwritten ([`Mp4WriteError::DestExists`]).
pub fn recover(part: &Path) -> Result<Option<Recovered>, Mp4WriteError> {
    let dest = dest_of(part)?;
    let journal = journal_path(&dest);
    let contents = match journal::read(&journal) {
        Ok(c) => c,
        Err(ReadError::Missing) => return give_up(part, &journal, "it has no recovery journal".into()),
        Err(ReadError::Invalid(why)) => return give_up(part, &journal, format!("its journal is unusable: {why}")),
        Err(ReadError::Io(e)) => return Err(io_error(&journal)(e)),
    };
    if dest.exists() {
        return Err(Mp4WriteError::DestExists { part: part.display().to_string(), dest: dest.display().to_string() });
    }
    let mut samples = contents.samples;
    let journaled = samples.len();
    let header = contents.header;
    let io = io_error(part);
    let mut file = PartFile::reopen(&dest).map_err(&io)?;
    let len = file.as_file().metadata().map_err(&io)?.len();
    let Some(mdat_at) = header.data_at.checked_sub(MDAT_HEADER.len() as u64) else {
        return give_up(part, &journal, "its journal puts the samples before the mdat header".into());
    };
    let mut mdat = [0u8; 16];
    if file.as_file().read_exact_at(&mut mdat, mdat_at).is_err() || &mdat[4..8] != b"mdat" {
        return give_up(part, &journal, "it has no mdat box where its journal says".into());
    }

    // Keep the samples whose data is on disk and well formed: length-prefixed
    // NAL units that exactly fill the sample (a power cut can leave the
    // journal ahead of data that never reached the disk).
    let mut end = header.data_at;
    let mut keep = 0;
    let mut why_short = contents.torn;
    for (i, size) in samples.sizes.iter().enumerate() {
        let next = end + u64::from(*size);
        if next > len {
            why_short = Some(format!("the data of sample {} is missing", i + 1));
            break;
        }
        if !nal_units_fill(file.as_file(), end, next).map_err(&io)? {
            why_short = Some(format!("the data of sample {} is damaged", i + 1));
            break;
        }
        end = next;
        keep = i + 1;
    }
    samples.truncate(keep);
    if keep == 0 {
        let why = why_short.unwrap_or_else(|| "its journal lists no sample".into());
        return give_up(part, &journal, format!("nothing in it is recoverable: {why}"));
    }
    if let Some(why) = &why_short {
        warn!(file = %part.display(), samples = keep, reason = %why, "recovering the samples before a damaged one");
    }

    let data_len = end - header.data_at;
    let track = Track { entry: &header.entry, timescale: header.timescale, data_at: header.data_at, samples: &samples };
    let (tables, moov_len) = (|| {
        file.as_file().set_len(end)?;
        file.seek(SeekFrom::End(0))?;
        complete(&mut file, &track, mdat_at, data_len, None)
    })()
    .map_err(&io)?;
    file.commit().map_err(&io)?;
    journal::remove_if_present(&journal).map_err(io_error(&journal))?;
    Ok(Some(Recovered {
        summary: summary(&dest, &track, &tables, data_len, moov_len),
        start_wall_ms: header.start_wall_ms,
        dropped_samples: (journaled - keep) as u32,
    }))
}

/// `<clip>.mp4` for `<clip>.mp4.part`.
fn dest_of(part: &Path) -> Result<PathBuf, Mp4WriteError> {
    let name = part.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match name.strip_suffix(".part") {
        Some(dest) if !dest.is_empty() => Ok(part.with_file_name(dest)),
        _ => Err(Mp4WriteError::NotPart { path: part.display().to_string() }),
    }
}

/// Whether `[from, to)` of the file is a run of 4-byte length-prefixed NAL
/// units that ends exactly at `to`.
fn nal_units_fill(file: &std::fs::File, from: u64, to: u64) -> std::io::Result<bool> {
    let mut at = from;
    let mut len = [0u8; 4];
    while at < to {
        if to - at < 5 {
            return Ok(false);
        }
        file.read_exact_at(&mut len, at)?;
        let n = u64::from(u32::from_be_bytes(len));
        if n == 0 {
            return Ok(false);
        }
        at += 4 + n;
    }
    Ok(at == to)
}

/// Removes an unrecoverable `.part` file and its journal, saying why.
fn give_up(part: &Path, journal: &Path, why: String) -> Result<Option<Recovered>, Mp4WriteError> {
    warn!(file = %part.display(), reason = %why, "removing an unfinished recording that cannot be recovered");
    journal::remove_if_present(part).map_err(io_error(part))?;
    journal::remove_if_present(journal).map_err(io_error(journal))?;
    Ok(None)
}
