//! The detect stream of a live camera, from frames to motion verdicts: H.264 or
//! H.265 decode (when the frames arrive encoded), one rate gate for
//! `detect_fps`, and the motion detector.
//!
//! - [`DetectPipeline::push_encoded`] takes the camera's H.264 or H.265 (an RTSP
//!   stream, a USB camera's own H.264). Every frame is decoded (P-frames need their
//!   references); after a decode error, and after [`DetectPipeline::reset`],
//!   frames are skipped up to the next keyframe so the decoder never sees a
//!   broken reference chain.
//! - [`DetectPipeline::push_raw`] takes a picture the source has already
//!   (a USB camera's YUYV or MJPEG, converted to I420).
//!
//! Both end in one place: every decoded picture of the detect stream, as a
//! [`DetectFrame`], goes through the same private step, which applies the
//! [`RateGate`], runs the motion detector on the frames it lets through, and
//! shows them with the verdict to the pipeline's [`FrameTap`] (live object
//! detection hooks in there).
//!
//! Blocking CPU work: callers run it on a camera's own thread. Logging is the
//! caller's (it knows the camera and the throttling rule): errors are returned
//! and counted here.

use super::RgbFrame;
use super::codec::{DecoderError, Picture, VideoCodec, VideoDecoder};
use super::motion::{MotionConfig, MotionDetector, MotionSample};
use super::nal::{annex_b_nals, avcc_nals, avcc_to_annex_b, is_non_reference};

/// Sees the detect stream's pictures that the rate gate lets through, with
/// the motion verdict for each and the detector that gave it (where the
/// picture changed: [`MotionDetector::changed_mask_gray`]).
pub trait FrameTap: Send {
    fn frame(&mut self, frame: &DetectFrame<'_>, motion: &MotionSample, detector: &MotionDetector);
}

/// Decides which frames the detector sees: at most `detect_fps` per second of
/// stream time, on a grid so that jittery timestamps do not drift.
///
/// - A frame is due when it is at most a quarter interval before the next grid
///   point; the grid then moves past it, skipping the slots of a gap (no burst
///   of detections after one).
/// - A clock that goes back by more than 1 s or leaps forward by more than 10 s
///   (a restarted stream) starts the grid afresh at that frame.
/// - `detect_fps` of 0 (or not a positive number) lets every frame through, and
///   so does a source whose frame rate is known and not above `detect_fps`.
#[derive(Debug, Clone)]
pub struct RateGate {
    interval: f64,
    next_due: Option<f64>,
    last: Option<f64>,
}

impl RateGate {
    /// `source_fps`: the rate frames arrive at, when the source knows it.
    pub fn new(detect_fps: f64, source_fps: Option<f64>) -> Self {
        let limited = detect_fps.is_finite() && detect_fps > 0.0 && source_fps.is_none_or(|f| detect_fps < f);
        let interval = if limited { 1.0 / detect_fps } else { 0.0 };
        Self { interval, next_due: None, last: None }
    }

    /// Whether the frame at `ts_s` would be due, without taking it.
    pub fn would_be_due(&self, ts_s: f64) -> bool {
        match self.grid(ts_s) {
            Some(next) if self.interval > 0.0 => ts_s + self.tolerance() >= next,
            _ => true,
        }
    }

    /// The next due time, unless the stream's clock jumped away from the grid.
    fn grid(&self, ts_s: f64) -> Option<f64> {
        let jumped = self.last.is_some_and(|l| ts_s < l - 1.0 || ts_s > l + 10.0);
        self.next_due.filter(|_| !jumped)
    }

    fn tolerance(&self) -> f64 {
        self.interval * 0.25
    }

    /// Whether the frame at `ts_s` (seconds, stream clock) is due.
    pub fn is_due(&mut self, ts_s: f64) -> bool {
        if self.interval <= 0.0 {
            return true;
        }
        let (due, grid) = (self.would_be_due(ts_s), self.grid(ts_s));
        self.last = Some(ts_s);
        if !due {
            return false;
        }
        let next = match grid {
            Some(next) => {
                let mut n = next + self.interval;
                while n <= ts_s + self.tolerance() {
                    n += self.interval;
                }
                n
            }
            None => ts_s + self.interval,
        };
        self.next_due = Some(next);
        true
    }

    /// Forgets the grid: the next frame is due.
    pub fn reset(&mut self) {
        self.next_due = None;
        self.last = None;
    }
}

/// How a camera's detect stream is analysed.
#[derive(Debug, Clone)]
pub struct DetectSettings {
    /// Motion detections per second at most.
    pub detect_fps: f64,
    /// The stream's frame rate when the source knows it (see [`RateGate::new`]).
    pub source_fps: Option<f64>,
    pub motion: MotionConfig,
    /// While nothing stirs, decode only keyframes (see [`DetectPipeline`]).
    pub keyframes_when_idle: bool,
}

/// A decoded picture of the detect stream, borrowed from the decoder or the
/// source's buffer, with its time.
#[derive(Debug, Clone, Copy)]
pub struct DetectFrame<'a> {
    /// Seconds on the stream's clock.
    pub ts_s: f64,
    pub picture: Picture<'a>,
}

impl DetectFrame<'_> {
    /// The picture as packed RGB.
    pub fn to_rgb(&self) -> RgbFrame {
        let mut data = Vec::new();
        self.picture.write_rgb(&mut data);
        RgbFrame { ts_s: self.ts_s, width: self.picture.width, height: self.picture.height, data }
    }
}

/// How an encoded frame's NAL units are delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NalFormat {
    /// Start codes (what V4L2 devices and encoders emit).
    AnnexB,
    /// 4-byte big-endian lengths (what MP4 and retina's MP4 frame format carry).
    Avcc,
}

/// One encoded frame (access unit) of the detect stream.
#[derive(Debug, Clone, Copy)]
pub struct EncodedFrame<'a> {
    /// Seconds on the stream's clock.
    pub ts_s: f64,
    pub keyframe: bool,
    /// The stream's codec; a change starts a fresh decoder at the next keyframe.
    pub codec: VideoCodec,
    pub format: NalFormat,
    pub data: &'a [u8],
    /// Parameter sets in Annex-B (SPS and PPS; H.265 adds the VPS), fed to the
    /// decoder before each keyframe, for cameras that do not repeat them in band.
    pub parameter_sets: Option<&'a [u8]>,
}

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The decoder could not be made, or rejected the frame.
    #[error(transparent)]
    Decoder(#[from] DecoderError),
}

/// The decoder of a detect stream (H.264 or H.265, as the frames say), created
/// on the first keyframe.
struct StreamDecoder {
    decoder: Option<VideoDecoder>,
    waiting_for_keyframe: bool,
    annexb: Vec<u8>,
    /// Pictures left undecoded: not wanted, and no other refers to them.
    skipped: u64,
}

impl StreamDecoder {
    fn new() -> Self {
        Self { decoder: None, waiting_for_keyframe: true, annexb: Vec::new(), skipped: 0 }
    }

    fn reset(&mut self) {
        self.decoder = None;
        self.waiting_for_keyframe = true;
    }

    /// Decodes one frame and lends the pictures it completes (none while waiting
    /// for a keyframe, or when the decoder holds it back). With `skippable` (its
    /// picture is not wanted), a picture no other refers to is not decoded at all.
    fn decode(
        &mut self,
        frame: &EncodedFrame<'_>,
        skippable: bool,
        on_picture: &mut dyn FnMut(&DetectFrame<'_>),
    ) -> Result<(), DetectError> {
        if self.decoder.as_ref().is_some_and(|d| d.codec() != frame.codec) {
            self.reset();
        }
        if self.waiting_for_keyframe && !frame.keyframe {
            return Ok(());
        }
        if skippable && !frame.keyframe {
            let h265 = frame.codec == VideoCodec::H265;
            let unreferenced = match frame.format {
                NalFormat::Avcc => is_non_reference(h265, avcc_nals(frame.data)),
                NalFormat::AnnexB => is_non_reference(h265, annex_b_nals(frame.data)),
            };
            if unreferenced {
                self.skipped += 1;
                return Ok(());
            }
        }
        let data = match frame.format {
            NalFormat::AnnexB => frame.data,
            NalFormat::Avcc => {
                self.annexb.clear();
                if !avcc_to_annex_b(frame.data, &mut self.annexb) {
                    self.waiting_for_keyframe = true;
                    return Ok(());
                }
                &self.annexb
            }
        };
        let decoder = match &mut self.decoder {
            Some(d) => d,
            None => match VideoDecoder::new(frame.codec) {
                Ok(d) => self.decoder.insert(d),
                Err(e) => {
                    self.waiting_for_keyframe = true;
                    return Err(e.into());
                }
            },
        };
        self.waiting_for_keyframe = false;
        if frame.keyframe
            && let Some(ps) = frame.parameter_sets
        {
            // In-band parameter sets are usual, but not every camera repeats them.
            let _ = decoder.parameter_sets(ps);
        }
        let ts_s = frame.ts_s;
        decoder.decode(data, &mut |p| on_picture(&DetectFrame { ts_s, picture: *p })).map_err(|e| {
            self.waiting_for_keyframe = true;
            e.into()
        })
    }
}

/// What runs on every decoded picture: the rate gate, the motion detector,
/// then the taps.
struct Analysis {
    gate: RateGate,
    motion: MotionDetector,
    taps: Vec<Box<dyn FrameTap>>,
}

impl Analysis {
    /// The one place every decoded picture of the detect stream goes through.
    fn frame(&mut self, frame: &DetectFrame<'_>) -> Option<MotionSample> {
        if !self.gate.is_due(frame.ts_s) {
            return None;
        }
        let p = &frame.picture;
        let sample = self.motion.process(p.y, p.y_stride, p.width, p.height);
        for tap in &mut self.taps {
            tap.frame(frame, &sample, &self.motion);
        }
        Some(sample)
    }
}

/// A camera's detect stream: frames in, motion verdicts (for the frames due at
/// `detect_fps`) out.
///
/// With `keyframes_when_idle`, a GOP whose keyframe shows no change, after a GOP
/// in which nothing stirred either, is not decoded past its keyframe: an idle
/// camera costs one decoded picture per GOP. A keyframe that shows a change
/// (motion, or a frame on its way to it) has the rest of its GOP decoded, so
/// motion starts at most one GOP later than with every frame decoded, and the
/// background follows the picture once per GOP while idle. Streams with
/// B-frames are always decoded in full.
pub struct DetectPipeline {
    decoder: StreamDecoder,
    analysis: Analysis,
    decode_errors: u64,
    idle: Option<IdleGop>,
}

/// The state of `keyframes_when_idle`.
#[derive(Debug, Default)]
struct IdleGop {
    /// The rest of the current GOP is not decoded.
    skipping: bool,
    /// Something stirred in the current GOP.
    stirred: bool,
}

impl std::fmt::Debug for DetectPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetectPipeline")
            .field("gate", &self.analysis.gate)
            .field("decode_errors", &self.decode_errors)
            .finish_non_exhaustive()
    }
}

impl DetectPipeline {
    pub fn new(settings: &DetectSettings) -> Self {
        Self {
            decoder: StreamDecoder::new(),
            analysis: Analysis {
                gate: RateGate::new(settings.detect_fps, settings.source_fps),
                motion: MotionDetector::new(&settings.motion),
                taps: Vec::new(),
            },
            decode_errors: 0,
            idle: settings.keyframes_when_idle.then(IdleGop::default),
        }
    }

    /// Shows every analysed picture, with its motion verdict, to `tap` (after
    /// the taps added before).
    pub fn with_tap(mut self, tap: Box<dyn FrameTap>) -> Self {
        self.analysis.taps.push(tap);
        self
    }

    /// The stream restarted or changed: a fresh decoder (from the next keyframe),
    /// motion state and rate grid.
    pub fn reset(&mut self) {
        self.decoder.reset();
        self.analysis.motion.reset();
        self.analysis.gate.reset();
        if let Some(idle) = &mut self.idle {
            *idle = IdleGop::default();
        }
    }

    /// Whether the motion detector currently reports motion.
    pub fn in_motion(&self) -> bool {
        self.analysis.motion.in_motion()
    }

    /// Frames that could not be decoded since the pipeline was made.
    pub fn decode_errors(&self) -> u64 {
        self.decode_errors
    }

    /// Frames left undecoded since the pipeline was made: not due for analysis,
    /// and no other picture refers to them.
    pub fn skipped(&self) -> u64 {
        self.decoder.skipped
    }

    /// Whether the rest of the current GOP is left undecoded
    /// (`keyframes_when_idle`): its frames need not be pushed.
    pub fn skipping_gop(&self) -> bool {
        self.idle.as_ref().is_some_and(|i| i.skipping)
    }

    /// A picture the source has already: the verdict when it was due.
    pub fn push_raw(&mut self, frame: &DetectFrame<'_>) -> Option<MotionSample> {
        self.analysis.frame(frame)
    }

    /// An encoded frame: decoded, then the verdict when its picture was due. An
    /// error concerns this frame (counted; the pipeline waits for the next
    /// keyframe).
    pub fn push_encoded(&mut self, frame: &EncodedFrame<'_>) -> Result<Option<MotionSample>, DetectError> {
        if !frame.keyframe && self.skipping_gop() {
            self.decoder.skipped += 1;
            return Ok(None);
        }
        let (analysis, mut verdict, mut pictures) = (&mut self.analysis, None, 0u32);
        let skippable = !analysis.gate.would_be_due(frame.ts_s);
        let result = self.decoder.decode(frame, skippable, &mut |picture| {
            pictures += 1;
            verdict = analysis.frame(picture).or(verdict);
        });
        if let Err(e) = result {
            self.decode_errors += 1;
            return Err(e);
        }
        if let Some(idle) = &mut self.idle {
            let stirring = self.analysis.motion.stirring();
            if frame.keyframe {
                // A decoder that holds pictures back (B-frames) would keep the
                // keyframe's: such a stream is decoded in full.
                idle.skipping = pictures > 0 && !stirring && !idle.stirred;
                idle.stirred = stirring;
            } else {
                idle.stirred |= stirring;
            }
        }
        Ok(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_keeps_to_the_grid_and_survives_clock_jumps() {
        let mut r = RateGate::new(5.0, None);
        let taken: Vec<i32> = (0..30).filter(|i| r.is_due(f64::from(*i) / 15.0)).collect();
        assert_eq!(taken, vec![0, 3, 6, 9, 12, 15, 18, 21, 24, 27]);
        // A new stream whose clock starts over.
        assert!(r.is_due(0.0));
        assert!(!r.is_due(0.1));
        assert!(r.is_due(0.2));
        // A big jump forward restarts the grid.
        assert!(r.is_due(1000.0));
        assert!(!r.is_due(1000.1));
    }

    #[test]
    fn the_gate_takes_detect_fps_of_a_known_source_rate() {
        let mut g = RateGate::new(5.0, Some(15.0));
        let taken: Vec<u32> = (0..30).filter(|i| g.is_due(f64::from(*i) / 15.0)).collect();
        assert_eq!(taken, vec![0, 3, 6, 9, 12, 15, 18, 21, 24, 27]);

        // At or above the source's rate: every frame, even with jittery timestamps.
        let mut g = RateGate::new(30.0, Some(15.0));
        assert!((0..10).all(|i| g.is_due(f64::from(i) / 15.0)));
        let mut g = RateGate::new(15.0, Some(15.0));
        assert!([0.0, 0.06, 0.07, 0.2, 0.21].into_iter().all(|t| g.is_due(t)));

        // A gap does not cause a burst afterwards; going backwards restarts the grid.
        let mut g = RateGate::new(5.0, Some(15.0));
        assert!(g.is_due(0.0));
        assert!(g.is_due(10.0));
        assert!(!g.is_due(10.1));
        assert!(g.is_due(10.2));
        assert!(g.is_due(1.0));
        assert!(!g.is_due(1.1));
    }

    #[test]
    fn the_gate_tolerates_a_quarter_interval_of_jitter_and_never_exceeds_its_rate() {
        // 5 fps on a 10 fps source whose timestamps wobble by ±20 ms.
        let mut g = RateGate::new(5.0, None);
        let ts: Vec<f64> = (0..100).map(|i| f64::from(i) * 0.1 + if i % 2 == 0 { 0.02 } else { -0.02 }).collect();
        let taken: Vec<f64> = ts.iter().copied().filter(|t| g.is_due(*t)).collect();
        assert_eq!(taken.len(), 50, "{taken:?}");
        // Nothing but 0 and a negative fps: every frame.
        for fps in [0.0, -1.0, f64::NAN] {
            let mut g = RateGate::new(fps, None);
            assert!((0..10).all(|i| g.is_due(f64::from(i) * 0.01)));
        }
        // Reset: the next frame is due whatever the grid said.
        let mut g = RateGate::new(1.0, None);
        assert!(g.is_due(0.0));
        assert!(!g.is_due(0.5));
        g.reset();
        assert!(g.is_due(0.5));
    }

    fn settings(detect_fps: f64) -> DetectSettings {
        DetectSettings { detect_fps, source_fps: None, motion: MotionConfig::default(), keyframes_when_idle: false }
    }

    #[test]
    fn raw_pictures_are_analysed_when_due() {
        let (w, h) = (64u32, 48u32);
        let y = vec![50u8; (w * h) as usize];
        let uv = vec![128u8; (w * h / 4) as usize];
        let mut p = DetectPipeline::new(&settings(5.0));
        let verdicts: Vec<bool> = (0..10)
            .map(|i| {
                let f = DetectFrame {
                    ts_s: f64::from(i) * 0.1,
                    picture: Picture::from_planes((w, h), (&y, &uv, &uv), (w as usize, (w / 2) as usize)),
                };
                p.push_raw(&f).is_some()
            })
            .collect();
        assert_eq!(verdicts, [true, false, true, false, true, false, true, false, true, false]);
        assert!(!p.in_motion());
    }

    #[test]
    fn encoded_frames_wait_for_a_keyframe_and_bad_ones_are_counted() {
        let mut p = DetectPipeline::new(&settings(0.0));
        let frame = |keyframe, data: &'static [u8]| EncodedFrame {
            ts_s: 0.0,
            keyframe,
            codec: VideoCodec::H264,
            format: NalFormat::Avcc,
            data,
            parameter_sets: None,
        };
        // Before any keyframe: skipped, not decoded.
        assert!(matches!(p.push_encoded(&frame(false, &[0, 0, 0, 2, 0x41, 0x9a])), Ok(None)));
        // Malformed AVCC: nothing decoded, still waiting.
        assert!(matches!(p.push_encoded(&frame(true, &[0, 0, 0, 9, 0x65])), Ok(None)));
        assert!(matches!(p.push_encoded(&frame(false, &[0, 0, 0, 2, 0x41, 0x9a])), Ok(None)));
        assert_eq!(p.decode_errors(), 0);
    }
}
