//! Motion detection for one camera on a blocking thread: the detect stream's
//! frames through [`DetectPipeline`] (decode, `detect_fps`, motion), verdicts to
//! the recorder.
//!
//! Frames arrive through a bounded queue;
//! when it overflows the feeder drops frames up to the next keyframe, so the
//! decoder never sees a broken reference chain.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use tracing::{debug, info, warn};

use crate::domain::CameraName;
use crate::media::detect::{DetectPipeline, DetectSettings, EncodedFrame, NalFormat};
use crate::media::motion::MotionConfig;
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

/// The worker: runs until the feeding ends are all dropped or the recorder is gone.
pub(super) fn run(
    camera: CameraName,
    rx: Receiver<MotionInput>,
    recorder: tokio::sync::mpsc::Sender<RecorderEvent>,
    cfg: MotionConfig,
    detect_fps: f64,
) {
    let mut pipeline = DetectPipeline::new(&DetectSettings { detect_fps, source_fps: None, motion: cfg });
    let mut was_motion = false;
    while let Ok(input) = rx.recv() {
        match input {
            MotionInput::Reset => {
                pipeline.reset();
                if was_motion {
                    was_motion = false;
                    debug!(camera = %camera, "motion state reset with the stream");
                }
            }
            MotionInput::Frame { ts_s, report_pts, is_keyframe, data } => {
                let frame = EncodedFrame {
                    ts_s,
                    keyframe: is_keyframe,
                    format: NalFormat::Avcc,
                    data: &data,
                    parameter_sets: None,
                };
                let sample = match pipeline.push_encoded(&frame) {
                    Ok(Some(sample)) => sample,
                    Ok(None) => continue,
                    Err(e) => {
                        let errors = pipeline.decode_errors();
                        if errors == 1 || errors.is_power_of_two() {
                            warn!(camera = %camera, error = %e, errors, "H.264 decode failed; waiting for the next keyframe");
                        }
                        continue;
                    }
                };
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
