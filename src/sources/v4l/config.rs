//! The `config:` block of a `v4l` camera source, and what the source derives
//! from it (capture request, processor settings, frame timeout, retry schedule).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::capture::CaptureSpec;
use super::processor::ProcessorSettings;
use crate::backoff::Backoff;
use crate::media::motion::MotionConfig;
use crate::plugin::{PluginConfig, Validator};
use crate::sources::recorder::RecordingConfig;

/// The pixel format asked of the camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// Motion JPEG: what most USB cameras offer at 720p/1080p and 15-30 fps.
    #[default]
    Mjpeg,
    /// Uncompressed 4:2:2: full quality, but USB 2 limits it to low sizes or rates.
    Yuyv,
    /// The camera's own H.264, recorded unchanged (no encode on the box).
    H264,
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Mjpeg => "MJPEG",
            Self::Yuyv => "YUYV",
            Self::H264 => "H.264",
        })
    }
}

/// The `config:` block of a `v4l` camera source.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct V4lConfig {
    /// The video device. `/dev/v4l/by-id/usb-…-video-index0` survives re-plugging
    /// and reboots better than `/dev/videoN`.
    pub device: PathBuf,
    /// What to ask the camera for: `mjpeg`, `yuyv` or `h264`.
    pub format: PixelFormat,
    /// Capture size; the camera may pick the nearest size it offers (logged).
    pub width: u32,
    pub height: u32,
    /// Capture frame rate.
    pub fps: u32,
    /// Target bitrate of the H.264 encoder (mjpeg / yuyv only).
    pub bitrate_kbps: u32,
    /// Seconds between keyframes of the H.264 encoder (mjpeg / yuyv only). Clips
    /// start and split at keyframes, so this is the pre-roll's granularity.
    pub keyframe_interval_s: f64,
    /// Motion detections per second at most (the detector skips frames in between).
    pub detect_fps: f64,
    /// Frames per second the object detector looks at while motion is on (and
    /// for a short hold after); 0 turns live detection off.
    pub object_fps: f64,
    pub motion: MotionConfig,
    pub recording: RecordingConfig,
    /// A device that delivers no frame for this long is closed and reopened; the
    /// source is unhealthy after three times as long without frames.
    pub frame_timeout_s: f64,
    /// Retry backoff after a failure: first delay, doubled per failure up to
    /// `reconnect_max_s` (±20 % jitter). A missing device or an unsupported
    /// format waits `reconnect_max_s` straight away.
    pub reconnect_initial_s: f64,
    pub reconnect_max_s: f64,
}

impl Default for V4lConfig {
    fn default() -> Self {
        Self {
            device: PathBuf::from("/dev/video0"),
            format: PixelFormat::Mjpeg,
            width: 1280,
            height: 720,
            fps: 15,
            bitrate_kbps: 2000,
            keyframe_interval_s: 2.0,
            detect_fps: 5.0,
            object_fps: crate::sources::live::default_object_fps(),
            motion: MotionConfig::default(),
            recording: RecordingConfig::default(),
            frame_timeout_s: 5.0,
            reconnect_initial_s: 1.0,
            reconnect_max_s: 30.0,
        }
    }
}

impl PluginConfig for V4lConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        v.check(!self.device.as_os_str().is_empty(), "device", "must name a video device, e.g. /dev/video0");
        // openh264 encodes up to 3840x2160; 4:2:0 needs even sizes.
        v.check(
            (16..=3840).contains(&self.width) && self.width.is_multiple_of(2),
            "width",
            "must be an even number in [16, 3840]",
        );
        v.check(
            (16..=2160).contains(&self.height) && self.height.is_multiple_of(2),
            "height",
            "must be an even number in [16, 2160]",
        );
        v.check((1..=120).contains(&self.fps), "fps", "must be in [1, 120]");
        v.check((100..=50_000).contains(&self.bitrate_kbps), "bitrate_kbps", "must be in [100, 50000]");
        v.check(
            self.keyframe_interval_s.is_finite() && self.keyframe_interval_s > 0.0 && self.keyframe_interval_s <= 60.0,
            "keyframe_interval_s",
            "must be in (0, 60]",
        );
        if !(self.detect_fps.is_finite() && self.detect_fps > 0.0 && self.detect_fps <= 60.0) {
            v.error("detect_fps", "must be in (0, 60]");
        } else if self.detect_fps > f64::from(self.fps) {
            v.error("detect_fps", format!("must not exceed fps ({})", self.fps));
        }
        crate::sources::live::check_object_fps(self.object_fps, self.detect_fps, v);
        let in_range = |x: f64, lo: f64, hi: f64| x.is_finite() && x >= lo && x <= hi;
        v.check(in_range(self.frame_timeout_s, 1.0, 300.0), "frame_timeout_s", "must be in [1, 300]");
        v.check(in_range(self.reconnect_initial_s, 0.1, 600.0), "reconnect_initial_s", "must be in [0.1, 600]");
        if !in_range(self.reconnect_max_s, 1.0, 3600.0) {
            v.error("reconnect_max_s", "must be in [1, 3600]");
        } else if self.reconnect_max_s < self.reconnect_initial_s {
            v.error("reconnect_max_s", format!("must be at least reconnect_initial_s ({})", self.reconnect_initial_s));
        }
        self.motion.validate(&mut v.nested("motion"));
        self.recording.validate(&mut v.nested("recording"));
    }
}

impl V4lConfig {
    pub(super) fn capture_spec(&self) -> CaptureSpec {
        CaptureSpec {
            device: self.device.clone(),
            format: self.format,
            width: self.width,
            height: self.height,
            fps: self.fps,
        }
    }

    /// The processor's settings for a device delivering `fps` frames a second.
    pub fn processor_settings(&self, fps: f64) -> ProcessorSettings {
        ProcessorSettings {
            fps,
            bitrate_kbps: self.bitrate_kbps,
            keyframe_interval_s: self.keyframe_interval_s,
            detect_fps: self.detect_fps,
            motion: self.motion.clone(),
        }
    }

    pub(super) fn frame_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.frame_timeout_s.clamp(1.0, 300.0))
    }

    /// The retry schedule: doubling from `reconnect_initial_s` to
    /// `reconnect_max_s`; problems a retry will not fix soon wait
    /// [`Backoff::max_delay`] straight away.
    pub(super) fn backoff(&self) -> Backoff {
        let secs = |s: f64| Duration::from_secs_f64(s.clamp(0.1, 3600.0));
        Backoff::new(secs(self.reconnect_initial_s), secs(self.reconnect_max_s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_and_configuration_problems_wait_longest() {
        let cfg = V4lConfig { reconnect_initial_s: 1.0, reconnect_max_s: 30.0, ..V4lConfig::default() };
        let within = |d: Duration, s: f64| (d.as_secs_f64() - s).abs() <= 0.2 * s + 1e-9;
        let backoff = cfg.backoff();
        assert!(within(backoff.delay(1), 1.0));
        assert!(within(backoff.delay(3), 4.0));
        assert!(within(backoff.delay(20), 30.0));
        assert!(within(backoff.max_delay(), 30.0));
    }
}
