//! The USB source's frames as recorder events.

use std::time::Duration;

use super::processor::{FrameProcessor, Processed};
use crate::domain::now_ms;
use crate::media::mp4write::{Mp4WriteError, SampleEntry};
use crate::sources::recorder::{EncodedPacket, RecorderEvent};

/// Turns the processor's output into recorder events: a `Stream` event whenever
/// the H.264 parameters change, then the frame's packet, then its motion verdict.
#[derive(Debug)]
pub struct RecorderFeed {
    /// Picture size for the sample entry when the SPS cannot be parsed.
    fallback_size: (u32, u32),
    /// Wall-clock time (unix ms) of pts 0; set from the first frame when not given.
    wall0_ms: Option<i64>,
    announced: bool,
}

impl RecorderFeed {
    /// MP4 timescale of USB recordings (the usual 90 kHz video clock).
    pub const TIMESCALE: u32 = 90_000;

    pub fn new(width: u32, height: u32) -> Self {
        Self { fallback_size: (width, height), wall0_ms: None, announced: false }
    }

    /// Fixes the wall-clock time of pts 0 (tests, replays).
    pub fn with_wall_clock_origin(mut self, wall0_ms: i64) -> Self {
        self.wall0_ms = Some(wall0_ms);
        self
    }

    fn ticks(pts: Duration) -> i64 {
        (pts.as_secs_f64() * f64::from(Self::TIMESCALE)).round() as i64
    }

    /// The events for one processed frame, in the order the recorder needs them.
    pub fn events(
        &mut self,
        processed: Processed,
        processor: &FrameProcessor,
        pts: Duration,
    ) -> Result<Vec<RecorderEvent>, Mp4WriteError> {
        let mut events = Vec::with_capacity(3);
        if (processed.parameters_changed || (!self.announced && processed.packet.is_some()))
            && let Some(ps) = processor.parameter_sets()
        {
            let (w, h) = ps.dimensions().unwrap_or(self.fallback_size);
            let (w, h) = (u16::try_from(w).unwrap_or(u16::MAX), u16::try_from(h).unwrap_or(u16::MAX));
            let entry = SampleEntry::avc1_from_parameter_sets(&ps.sps, &ps.pps, w, h)?;
            events.push(RecorderEvent::Stream { entry, timescale: Self::TIMESCALE });
            self.announced = true;
        }
        let wall0 = *self.wall0_ms.get_or_insert_with(|| now_ms() - pts.as_millis() as i64);
        if let Some(packet) = processed.packet
            && self.announced
        {
            events.push(RecorderEvent::Packet(EncodedPacket {
                pts: Self::ticks(packet.pts),
                wall_ms: wall0 + packet.pts.as_millis() as i64,
                is_keyframe: packet.keyframe,
                data: packet.data,
            }));
        }
        if let Some(sample) = processed.motion
            && self.announced
        {
            events.push(RecorderEvent::Motion { pts: Some(Self::ticks(pts)), motion: sample.motion });
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::v4l::{CapturedFrame, PixelFormat, V4lConfig};

    fn yuyv_frame(w: u32, h: u32, shade: u8) -> Vec<u8> {
        let mut buf = vec![128u8; (w * h * 2) as usize];
        buf.iter_mut().step_by(2).for_each(|y| *y = shade);
        buf
    }

    #[test]
    fn the_feed_announces_the_stream_before_its_first_packet() {
        let cfg = V4lConfig { width: 64, height: 48, fps: 10, detect_fps: 5.0, ..V4lConfig::default() };
        let mut processor = FrameProcessor::new(cfg.processor_settings(10.0));
        let mut feed = RecorderFeed::new(64, 48).with_wall_clock_origin(1_000_000);
        let mut kinds = Vec::new();
        for i in 0..4u64 {
            let data = yuyv_frame(64, 48, 100);
            let pts = Duration::from_millis(i * 100);
            let frame = CapturedFrame { data: &data, pts, format: PixelFormat::Yuyv, width: 64, height: 48, stride: 0 };
            let processed = processor.process(&frame).unwrap();
            for ev in feed.events(processed, &processor, pts).unwrap() {
                kinds.push(match ev {
                    RecorderEvent::Stream { entry, timescale } => {
                        assert_eq!((entry.width(), entry.height(), timescale), (64, 48, RecorderFeed::TIMESCALE));
                        "stream".to_owned()
                    }
                    RecorderEvent::Packet(p) => {
                        assert_eq!(p.pts, (i * 9000) as i64);
                        assert_eq!(p.wall_ms, 1_000_000 + (i * 100) as i64);
                        assert_eq!(p.is_keyframe, i == 0);
                        "packet".to_owned()
                    }
                    RecorderEvent::Motion { pts, .. } => format!("motion@{}", pts.unwrap_or(-1)),
                    RecorderEvent::Packets(_) => "packets".to_owned(),
                    RecorderEvent::StreamEnd => "end".to_owned(),
                    RecorderEvent::Objects(_) => "objects".to_owned(),
                });
            }
        }
        // 5 of 10 fps are analysed: frames 0 and 2.
        assert_eq!(kinds, ["stream", "packet", "motion@0", "packet", "packet", "motion@18000", "packet"]);
    }
}
