//! Motion detection for one camera on a blocking thread: H.264 decode with one
//! openh264 decoder, the motion detector at most `detect_fps` times a second,
//! verdicts to the recorder.
//!
//! Every frame is decoded (P-frames need their references); only the frames due
//! at `detect_fps` reach the detector. Frames arrive through a bounded queue;
//! when it overflows the feeder drops frames up to the next keyframe, so the
//! decoder never sees a broken reference chain.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use openh264::OpenH264API;
use openh264::decoder::{Decoder, DecoderConfig, Flush};
use openh264::formats::YUVSource;
use tracing::{debug, info, warn};

use crate::domain::CameraName;
use crate::media::motion::{MotionConfig, MotionDetector};
use crate::media::nal::avcc_to_annex_b;
use crate::sources::recorder::RecorderEvent;

/// Frames queued for the decoder (a few seconds at camera rates).
pub(super) const QUEUE: usize = 96;

pub(super) enum MotionInput {
    /// One encoded frame (4-byte length-prefixed NAL units, parameter sets in band
    /// at keyframes). `ts_s` is its time on its own stream's clock (for
    /// `detect_fps`); `report_pts` is what the verdict carries to the recorder
    /// (the recorded stream's pts when this is that stream, else `None`: now).
    Frame { ts_s: f64, report_pts: Option<i64>, is_keyframe: bool, data: Vec<u8> },
    /// The stream restarted or changed: start over with a fresh decoder.
    Reset,
}

/// The feeding end, kept by the stream loop.
pub(super) struct MotionFeed {
    tx: SyncSender<MotionInput>,
    /// Frames were dropped: skip to the next keyframe.
    gap: bool,
    dropped: u64,
}

impl MotionFeed {
    pub(super) fn new(tx: SyncSender<MotionInput>) -> Self {
        Self { tx, gap: true, dropped: 0 }
    }

    /// Queues a frame without ever blocking the network loop.
    pub(super) fn offer(
        &mut self,
        camera: &CameraName,
        ts_s: f64,
        report_pts: Option<i64>,
        is_keyframe: bool,
        data: &[u8],
    ) {
        if self.gap && !is_keyframe {
            return;
        }
        let input = MotionInput::Frame { ts_s, report_pts, is_keyframe, data: data.to_vec() };
        match self.tx.try_send(input) {
            Ok(()) => self.gap = false,
            Err(TrySendError::Full(_)) => {
                self.gap = true;
                self.dropped += 1;
                if self.dropped == 1 || self.dropped.is_power_of_two() {
                    warn!(camera = %camera, dropped = self.dropped, "motion detection falls behind; skipping to the next keyframe");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    pub(super) fn reset(&mut self) {
        self.gap = true;
        let _ = self.tx.try_send(MotionInput::Reset);
    }
}

/// Decides which frames the detector sees: at most `fps` per second of stream
/// time, on a grid (a quarter interval of jitter tolerated).
struct RateLimit {
    interval: f64,
    next_due: Option<f64>,
    last: Option<f64>,
}

impl RateLimit {
    fn new(fps: f64) -> Self {
        let interval = if fps.is_finite() && fps > 0.0 { 1.0 / fps } else { 0.0 };
        Self { interval, next_due: None, last: None }
    }

    fn due(&mut self, ts: f64) -> bool {
        if self.interval <= 0.0 {
            return true;
        }
        // A clock that went back or leapt forward restarts the grid.
        let jumped = self.last.is_some_and(|l| ts < l - 1.0 || ts > l + 10.0);
        self.last = Some(ts);
        let tolerance = self.interval * 0.25;
        match self.next_due {
            Some(next) if !jumped => {
                if ts + tolerance < next {
                    return false;
                }
                let mut n = next + self.interval;
                while n <= ts + tolerance {
                    n += self.interval;
                }
                self.next_due = Some(n);
                true
            }
            _ => {
                self.next_due = Some(ts + self.interval);
                true
            }
        }
    }
}

fn new_decoder() -> Option<Decoder> {
    let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
    match Decoder::with_api_config(OpenH264API::from_source(), config) {
        Ok(d) => Some(d),
        Err(e) => {
            warn!(error = %e, "cannot create the H.264 decoder; motion detection is off");
            None
        }
    }
}

/// The worker: runs until the feeding ends are all dropped or the recorder is gone.
pub(super) fn run(
    camera: CameraName,
    rx: Receiver<MotionInput>,
    recorder: tokio::sync::mpsc::Sender<RecorderEvent>,
    cfg: MotionConfig,
    detect_fps: f64,
) {
    let mut detector = MotionDetector::new(&cfg);
    let mut decoder = new_decoder();
    let mut rate = RateLimit::new(detect_fps);
    let mut annexb = Vec::with_capacity(256 * 1024);
    let mut waiting_for_keyframe = true;
    let mut errors = 0u64;
    let mut was_motion = false;
    while let Ok(input) = rx.recv() {
        match input {
            MotionInput::Reset => {
                decoder = new_decoder();
                detector.reset();
                rate = RateLimit::new(detect_fps);
                waiting_for_keyframe = true;
                if was_motion {
                    was_motion = false;
                    debug!(camera = %camera, "motion state reset with the stream");
                }
            }
            MotionInput::Frame { ts_s, report_pts, is_keyframe, data } => {
                if waiting_for_keyframe && !is_keyframe {
                    continue;
                }
                let Some(dec) = decoder.as_mut() else { continue };
                annexb.clear();
                if !avcc_to_annex_b(&data, &mut annexb) {
                    waiting_for_keyframe = true;
                    continue;
                }
                waiting_for_keyframe = false;
                let verdict = match dec.decode(&annexb) {
                    Ok(Some(yuv)) if rate.due(ts_s) => {
                        let (w, h) = yuv.dimensions();
                        let sample = detector.process(yuv.y(), yuv.strides().0, w as u32, h as u32);
                        Some(sample)
                    }
                    Ok(_) => None,
                    Err(e) => {
                        errors += 1;
                        if errors == 1 || errors.is_power_of_two() {
                            warn!(camera = %camera, error = %e, errors, "H.264 decode failed; waiting for the next keyframe");
                        }
                        waiting_for_keyframe = true;
                        None
                    }
                };
                let Some(sample) = verdict else { continue };
                if sample.motion != was_motion {
                    was_motion = sample.motion;
                    info!(camera = %camera, motion = sample.motion, score = sample.score, "motion {}", if sample.motion { "started" } else { "ended" });
                }
                let ev = RecorderEvent::Motion { pts: report_pts, motion: sample.motion };
                if recorder.blocking_send(ev).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_keeps_to_the_grid_and_survives_clock_jumps() {
        let mut r = RateLimit::new(5.0);
        let taken: Vec<i32> = (0..30).filter(|i| r.due(f64::from(*i) / 15.0)).collect();
        assert_eq!(taken, vec![0, 3, 6, 9, 12, 15, 18, 21, 24, 27]);
        // A new stream whose clock starts over.
        assert!(r.due(0.0));
        assert!(!r.due(0.1));
        assert!(r.due(0.2));
        // A big jump forward restarts the grid.
        assert!(r.due(1000.0));
        assert!(!r.due(1000.1));
    }

    #[test]
    fn the_feed_skips_to_a_keyframe_after_overflow() {
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        let mut feed = MotionFeed::new(tx);
        let cam: CameraName = "c".into();
        feed.offer(&cam, 0.0, None, false, &[0, 0, 0, 1, 0x41]); // before any keyframe: skipped
        feed.offer(&cam, 0.1, None, true, &[0, 0, 0, 1, 0x65]);
        feed.offer(&cam, 0.2, None, false, &[0, 0, 0, 1, 0x41]);
        feed.offer(&cam, 0.3, None, false, &[0, 0, 0, 1, 0x41]); // full: dropped, gap
        assert_eq!(rx.try_iter().count(), 2);
        feed.offer(&cam, 0.4, None, false, &[0, 0, 0, 1, 0x41]); // gap: skipped
        feed.offer(&cam, 0.5, None, true, &[0, 0, 0, 1, 0x65]);
        let got: Vec<f64> = rx
            .try_iter()
            .filter_map(|i| match i {
                MotionInput::Frame { ts_s, .. } => Some(ts_s),
                MotionInput::Reset => None,
            })
            .collect();
        assert_eq!(got, vec![0.5]);
    }
}
