//! Media: MP4 demux, H.264 decode, frame sampling, resize and JPEG encoding.
//! (Interface fixed here; implementation in progress.)

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("cannot open {path}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a readable MP4: {reason}")]
    Container { path: String, reason: String },
    #[error("{path} has no H.264 video track")]
    NoVideo { path: String },
    #[error("H.264 decode failed in {path}: {reason}")]
    Decode { path: String, reason: String },
    #[error("JPEG encoding failed: {0}")]
    Jpeg(String),
}

/// What `probe` learns from a clip's headers without decoding it.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    pub width: u32,
    pub height: u32,
    pub duration_s: f64,
    pub frame_count: u32,
    pub fps: f64,
}

/// A decoded frame as 8-bit RGB, with its time from the clip start.
#[derive(Debug, Clone)]
pub struct RgbFrame {
    pub ts_s: f64,
    pub width: u32,
    pub height: u32,
    /// Row-major RGB, `width * height * 3` bytes.
    pub data: Vec<u8>,
}

/// A JPEG of one sampled frame.
#[derive(Debug, Clone)]
pub struct Jpeg {
    pub ts_s: f64,
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

/// Reads the container headers: a clip that fails here is unreadable.
pub fn probe(path: &Path) -> Result<VideoInfo, MediaError> {
    Err(MediaError::Container { path: path.display().to_string(), reason: "not implemented yet".into() })
}

/// Decodes the clip and calls `on_frame` for frames spaced `1/sample_fps` apart
/// (all frames when `sample_fps` is 0), stopping after `max_frames` or when
/// `on_frame` returns `false`.
pub fn sample_frames(
    path: &Path,
    sample_fps: f64,
    max_frames: u32,
    on_frame: &mut dyn FnMut(RgbFrame) -> bool,
) -> Result<u32, MediaError> {
    let _ = (sample_fps, max_frames, on_frame);
    Err(MediaError::Container { path: path.display().to_string(), reason: "not implemented yet".into() })
}

/// Encodes an RGB frame as JPEG, scaled down so its longer side is at most `max_size`.
pub fn encode_jpeg(frame: &RgbFrame, max_size: u32, quality: u8) -> Result<Jpeg, MediaError> {
    let _ = (frame, max_size, quality);
    Err(MediaError::Jpeg("not implemented yet".into()))
}

/// Up to `max_frames` JPEGs spread evenly over the clip, for the VLM.
pub fn sample_jpegs(path: &Path, max_frames: u32, max_size: u32, quality: u8) -> Result<Vec<Jpeg>, MediaError> {
    let _ = (max_frames, max_size, quality);
    Err(MediaError::Container { path: path.display().to_string(), reason: "not implemented yet".into() })
}
