//! How a clip that arrives as a file (watched folder, FTP) is named: the file's
//! own name when it is a safe clip id (cameras name clips camera + timestamp),
//! otherwise `<camera>_<start seconds>`. Collisions are the caller's (it knows
//! the store); [`with_suffix`] spells the alternatives.

use super::{CameraName, ClipId, UnixMillis};

/// Longest clip id taken from a file name.
const MAX_ID_LEN: usize = 96;

impl ClipId {
    /// Whether `s` may be a clip id as it stands: 1-96 ASCII letters, digits,
    /// `_` or `-`, starting with a letter or digit. Such an id is safe as a
    /// file name, an MQTT topic level and a URL path segment.
    pub fn is_safe(s: &str) -> bool {
        let mut chars = s.chars();
        s.len() <= MAX_ID_LEN
            && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }
}

/// The id a clip file is given before collisions: its file stem when safe,
/// else `<camera>_<start seconds>`.
pub fn clip_id_for_file(camera: &CameraName, file_stem: Option<&str>, start_ms: UnixMillis) -> String {
    match file_stem {
        Some(stem) if ClipId::is_safe(stem) => stem.to_owned(),
        _ => format!("{camera}_{}", start_ms.div_euclid(1000)),
    }
}

/// The `n`th candidate for `base`: `base` itself, then `base_2`, `base_3`, …
pub fn with_suffix(base: &str, n: u32) -> ClipId {
    if n <= 1 { ClipId(base.to_owned()) } else { ClipId(format!("{base}_{n}")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam() -> CameraName {
        CameraName::from("driveway")
    }

    #[test]
    fn a_safe_file_stem_is_the_clip_id() {
        assert_eq!(clip_id_for_file(&cam(), Some("driveway_20261202120000"), 5_000), "driveway_20261202120000");
        assert_eq!(clip_id_for_file(&cam(), Some("RLC-810A_00_20261202"), 5_000), "RLC-810A_00_20261202");
    }

    #[test]
    fn other_names_become_camera_and_start_seconds() {
        let start = 1_764_676_800_999;
        for stem in [
            "",
            "front door",
            "../etc/passwd",
            "a.b",
            "_hidden",
            "-dash",
            "caméra",
            "clip/with/slash",
            "x\u{0}y",
            &"a".repeat(97),
        ] {
            assert_eq!(clip_id_for_file(&cam(), Some(stem), start), "driveway_1764676800", "stem {stem:?}");
        }
        assert_eq!(clip_id_for_file(&cam(), None, start), "driveway_1764676800");
        // Before 1970 (a camera with no clock) still rounds down, never panics.
        assert_eq!(clip_id_for_file(&cam(), None, -1), "driveway_-1");
    }

    #[test]
    fn the_longest_safe_stem_is_kept() {
        let stem = "a".repeat(96);
        assert_eq!(clip_id_for_file(&cam(), Some(&stem), 0), stem);
    }

    #[test]
    fn collisions_count_from_two() {
        assert_eq!(with_suffix("driveway_1", 1).as_str(), "driveway_1");
        assert_eq!(with_suffix("driveway_1", 2).as_str(), "driveway_1_2");
        assert_eq!(with_suffix("driveway_1", 3).as_str(), "driveway_1_3");
    }
}
