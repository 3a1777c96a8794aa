//! The device-independent half of the USB source: captured buffers in, H.264
//! packets (AVCC, keyframe-flagged, timestamped) and motion samples out.
//!
//! - MJPEG: decoded to I420 (zune-jpeg), encoded with openh264.
//! - YUYV: converted to I420 (one pass), encoded with openh264.
//! - H.264: passed through (Annex-B rewritten as AVCC, SPS/PPS kept for the MP4
//!   sample entry); decoded (libavcodec) only for motion.
//!
//! Motion: every picture (converted, or decoded from passthrough H.264) goes
//! through the camera's [`DetectPipeline`], which runs the detector at most
//! `detect_fps` times a second. Everything here is blocking CPU work: it runs
//! on the camera's capture thread.

use std::time::Duration;

use tracing::{debug, warn};

use super::PixelFormat;
use super::convert::{ConvertError, I420Frame, MjpegDecoder, yuyv_to_i420};
use super::h264::{EncodeError, EncoderSettings, H264Encoder, ParameterSets, access_unit_to_avcc};
use crate::media::codec::{Picture, VideoCodec};
use crate::media::detect::{DetectFrame, DetectPipeline, DetectSettings, EncodedFrame, FrameTap, NalFormat};
use crate::media::motion::{MotionConfig, MotionSample};
use crate::sources::live::log_due;

/// One buffer as the device delivered it.
#[derive(Debug, Clone, Copy)]
pub struct CapturedFrame<'a> {
    /// The bytes the device filled (`bytesused`, not the whole mmap buffer).
    pub data: &'a [u8],
    /// Capture time since the stream started.
    pub pts: Duration,
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    /// Bytes per row for YUYV (0: `2 * width`); ignored for compressed formats.
    pub stride: usize,
}

/// An H.264 access unit ready for MP4: NAL units with 4-byte length prefixes,
/// without SPS/PPS (see [`FrameProcessor::parameter_sets`]).
#[derive(Debug, Clone, PartialEq)]
pub struct H264Packet {
    /// Capture time since the stream started.
    pub pts: Duration,
    /// An IDR picture: a clip may start here.
    pub keyframe: bool,
    pub data: Vec<u8>,
}

/// What one captured frame produced.
#[derive(Debug, Default)]
pub struct Processed {
    /// The frame's H.264 packet (none while waiting for the first keyframe of a
    /// passthrough stream, or when the encoder dropped the frame).
    pub packet: Option<H264Packet>,
    /// The motion detector's verdict, when the frame was due for detection.
    pub motion: Option<MotionSample>,
    /// This packet starts with SPS/PPS different from the previous ones (first
    /// keyframe, resolution change): a clip in progress must end before it.
    pub parameters_changed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Convert(#[from] ConvertError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// How the processor encodes and detects.
#[derive(Debug, Clone)]
pub struct ProcessorSettings {
    /// Frame rate the device delivers (the encoder's rate and keyframe cadence).
    pub fps: f64,
    pub bitrate_kbps: u32,
    pub keyframe_interval_s: f64,
    /// Motion detections per second at most (every frame when it is at least `fps`).
    pub detect_fps: f64,
    pub motion: MotionConfig,
}

/// Counters for health and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessorStats {
    pub frames: u64,
    pub packets: u64,
    pub keyframes: u64,
    pub motion_frames: u64,
    /// Frames that could not be converted or encoded.
    pub bad_frames: u64,
    /// Passthrough frames the motion decoder could not decode (still recorded).
    pub decode_errors: u64,
}

/// Captured buffers to H.264 packets and motion samples (one per camera).
pub struct FrameProcessor {
    settings: ProcessorSettings,
    /// Motion at `detect_fps`; for passthrough it decodes the camera's H.264.
    detect: DetectPipeline,
    mjpeg: MjpegDecoder,
    i420: I420Frame,
    encoder: Option<H264Encoder>,
    /// Passthrough only: the first keyframe with its parameter sets was seen.
    started: bool,
    parameter_sets: Option<ParameterSets>,
    avcc: Vec<u8>,
    stats: ProcessorStats,
}

impl std::fmt::Debug for FrameProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameProcessor")
            .field("settings", &self.settings)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl FrameProcessor {
    /// Shows every picture motion analyses to `tap` (live object detection,
    /// the camera's newest picture), after the taps added before.
    pub fn add_tap(&mut self, tap: Box<dyn FrameTap>) {
        let fresh = DetectPipeline::new(&Self::detect_settings(&self.settings));
        let detect = std::mem::replace(&mut self.detect, fresh);
        self.detect = detect.with_tap(tap);
    }

    /// Raw pictures: nothing to skip decoding.
    fn detect_settings(settings: &ProcessorSettings) -> DetectSettings {
        DetectSettings {
            detect_fps: settings.detect_fps,
            source_fps: Some(settings.fps),
            motion: settings.motion.clone(),
            keyframes_when_idle: false,
        }
    }

    pub fn new(settings: ProcessorSettings) -> Self {
        let detect = Self::detect_settings(&settings);
        Self {
            detect: DetectPipeline::new(&detect),
            settings,
            mjpeg: MjpegDecoder::default(),
            i420: I420Frame::default(),
            encoder: None,
            started: false,
            parameter_sets: None,
            avcc: Vec::new(),
            stats: ProcessorStats::default(),
        }
    }

    /// The SPS/PPS of the packets produced so far (for the MP4 sample entry).
    pub fn parameter_sets(&self) -> Option<&ParameterSets> {
        self.parameter_sets.as_ref()
    }

    pub fn stats(&self) -> ProcessorStats {
        self.stats
    }

    /// Whether the motion detector currently reports motion.
    pub fn in_motion(&self) -> bool {
        self.detect.in_motion()
    }

    /// The next encoded frame is an IDR frame (no effect on passthrough).
    pub fn force_keyframe(&mut self) {
        if let Some(enc) = self.encoder.as_mut() {
            enc.force_keyframe();
        }
    }

    /// Processes one captured buffer. An error concerns this frame only (a
    /// corrupt JPEG, a short buffer); the next frame may succeed.
    pub fn process(&mut self, frame: &CapturedFrame<'_>) -> Result<Processed, ProcessError> {
        self.stats.frames += 1;
        let result = match frame.format {
            PixelFormat::H264 => Ok(self.passthrough(frame)),
            PixelFormat::Yuyv | PixelFormat::Mjpeg => self.encode(frame),
        };
        match &result {
            Ok(p) => {
                if let Some(packet) = &p.packet {
                    self.stats.packets += 1;
                    self.stats.keyframes += u64::from(packet.keyframe);
                }
                self.stats.motion_frames += u64::from(p.motion.is_some());
            }
            Err(_) => self.stats.bad_frames += 1,
        }
        result
    }

    fn encode(&mut self, frame: &CapturedFrame<'_>) -> Result<Processed, ProcessError> {
        match frame.format {
            PixelFormat::Yuyv => yuyv_to_i420(frame.data, frame.width, frame.height, frame.stride, &mut self.i420)?,
            _ => {
                self.mjpeg.decode(frame.data, &mut self.i420)?;
            }
        }
        let motion = {
            let (w, h) = (self.i420.width(), self.i420.height());
            let (y, u, v) = self.i420.planes();
            self.detect.push_raw(&DetectFrame {
                ts_s: frame.pts.as_secs_f64(),
                picture: Picture::from_planes((w, h), (y, u, v), (w as usize, (w / 2) as usize)),
            })
        };
        if self.encoder.is_none() {
            let fps = self.settings.fps.clamp(1.0, 240.0);
            let settings = EncoderSettings {
                bitrate_kbps: self.settings.bitrate_kbps,
                fps: fps as f32,
                keyframe_interval_frames: (self.settings.keyframe_interval_s * fps).round().max(1.0) as u32,
                full_range: frame.format == PixelFormat::Mjpeg,
            };
            debug!(?settings, width = self.i420.width(), height = self.i420.height(), "starting the H.264 encoder");
            self.encoder = Some(H264Encoder::new(settings)?);
        }
        let Some(encoder) = self.encoder.as_mut() else {
            // Just created above.
            return Ok(Processed { motion, ..Processed::default() });
        };
        let pts_ms = u64::try_from(frame.pts.as_millis()).unwrap_or(u64::MAX);
        let Some(picture) = encoder.encode(&self.i420, pts_ms)? else {
            return Ok(Processed { motion, ..Processed::default() });
        };
        let keyframe = picture.keyframe;
        let info = access_unit_to_avcc(picture.annex_b, &mut self.avcc);
        let parameters_changed = self.update_parameter_sets(info.parameter_sets);
        if !info.has_picture {
            return Ok(Processed { motion, parameters_changed, ..Processed::default() });
        }
        let packet = H264Packet { pts: frame.pts, keyframe: keyframe || info.keyframe, data: self.avcc.clone() };
        Ok(Processed { packet: Some(packet), motion, parameters_changed })
    }

    fn update_parameter_sets(&mut self, found: Option<ParameterSets>) -> bool {
        match found {
            Some(ps) if self.parameter_sets.as_ref() != Some(&ps) => {
                debug!(sps_bytes = ps.sps.len(), pps_bytes = ps.pps.len(), size = ?ps.dimensions(), "new H.264 parameter sets");
                self.parameter_sets = Some(ps);
                true
            }
            _ => false,
        }
    }

    fn passthrough(&mut self, frame: &CapturedFrame<'_>) -> Processed {
        let info = access_unit_to_avcc(frame.data, &mut self.avcc);
        let parameters_changed = self.update_parameter_sets(info.parameter_sets);
        // Nothing is usable before the first keyframe with its parameter sets.
        let started = self.parameter_sets.is_some() && (info.keyframe || self.started);
        if !started || !info.has_picture {
            return Processed { parameters_changed, ..Processed::default() };
        }
        self.started = true;
        let motion = self.decode_for_motion(frame, info.keyframe);
        let packet = H264Packet { pts: frame.pts, keyframe: info.keyframe, data: self.avcc.clone() };
        Processed { packet: Some(packet), motion, parameters_changed }
    }

    /// Decodes every passthrough frame (P-frames need their references); the
    /// detector runs on the due ones.
    fn decode_for_motion(&mut self, frame: &CapturedFrame<'_>, keyframe: bool) -> Option<MotionSample> {
        let parameter_sets = keyframe.then(|| self.parameter_sets.as_ref().map(ParameterSets::annex_b)).flatten();
        let encoded = EncodedFrame {
            ts_s: frame.pts.as_secs_f64(),
            keyframe,
            codec: VideoCodec::H264,
            format: NalFormat::AnnexB,
            data: frame.data,
            parameter_sets: parameter_sets.as_deref(),
        };
        match self.detect.push_encoded(&encoded) {
            Ok(motion) => motion,
            Err(e) => {
                self.stats.decode_errors = self.detect.decode_errors();
                let n = self.stats.decode_errors;
                if log_due(n) {
                    warn!(error = %e, decode_errors = n, "cannot decode the camera's H.264 for motion (the video is still recorded)");
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::nal::annex_b_nals;

    fn settings() -> ProcessorSettings {
        ProcessorSettings {
            fps: 10.0,
            bitrate_kbps: 500,
            keyframe_interval_s: 0.5,
            detect_fps: 10.0,
            motion: MotionConfig::default(),
        }
    }

    /// An Annex-B stream of `n` moving 160x120 frames, IDR every 5 frames, one
    /// access unit per frame (what a UVC H.264 camera sends).
    fn camera_stream(n: u32) -> Vec<Vec<u8>> {
        let mut enc = H264Encoder::new(EncoderSettings {
            bitrate_kbps: 300,
            fps: 10.0,
            keyframe_interval_frames: 5,
            full_range: false,
        })
        .unwrap();
        let mut frame = I420Frame::default();
        frame.reset(160, 120);
        (0..n)
            .map(|i| {
                let (y, u, v) = frame.planes_mut();
                for (j, p) in y.iter_mut().enumerate() {
                    let x = (j % 160) as u32;
                    *p = if x.abs_diff(i * 8 % 160) < 20 { 230 } else { 40 };
                }
                u.fill(128);
                v.fill(128);
                enc.encode(&frame, u64::from(i) * 100).unwrap().unwrap().annex_b.to_vec()
            })
            .collect()
    }

    #[test]
    fn passthrough_starts_at_the_first_keyframe_and_keeps_the_slices() {
        let units = camera_stream(12);
        let mut p = FrameProcessor::new(settings());
        let mut out = Vec::new();
        // Join mid-GOP: frames 2-4 are P-frames without parameter sets.
        for (i, unit) in units.iter().enumerate().skip(2) {
            let frame = CapturedFrame {
                data: unit,
                pts: Duration::from_millis(i as u64 * 100),
                format: PixelFormat::H264,
                width: 160,
                height: 120,
                stride: 0,
            };
            out.push((i, p.process(&frame).unwrap()));
        }
        let first = out.iter().position(|(_, r)| r.packet.is_some()).unwrap();
        assert_eq!(out[first].0, 5, "the first packet is the IDR at frame 5");
        assert!(out[first].1.parameters_changed);
        assert!(out[..first].iter().all(|(_, r)| r.packet.is_none() && r.motion.is_none()));
        let ps = p.parameter_sets().unwrap();
        assert_eq!(ps.dimensions(), Some((160, 120)));
        for (i, r) in &out[first..] {
            let packet = r.packet.as_ref().unwrap();
            assert_eq!(packet.keyframe, i % 5 == 0, "frame {i}");
            // AVCC: the camera's slices with 4-byte lengths, no SPS/PPS.
            let mut avcc = Vec::new();
            for nal in annex_b_nals(&units[*i]).filter(|n| !matches!(n[0] & 0x1f, 7 | 8)) {
                avcc.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                avcc.extend_from_slice(nal);
            }
            assert_eq!(packet.data, avcc, "frame {i}");
            // Decoded for motion: a bar moving across the picture.
            let m = r.motion.expect("every frame analysed at detect_fps = fps");
            if *i > 6 {
                assert!(m.score > 0.01, "frame {i}: {m:?}");
            }
        }
        assert_eq!(p.stats().decode_errors, 0);
        assert_eq!(p.stats().packets, 7);
    }
}
