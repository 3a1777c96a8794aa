//! The pre-roll buffer: while idle, the last `pre_roll_s` of packets, always
//! starting at a keyframe (plus the rest of that GOP), bounded in bytes.

use std::collections::VecDeque;

use tracing::warn;

use super::EncodedPacket;
use crate::domain::CameraName;

/// Upper bound of the pre-roll buffer, whatever the bitrate and GOP length.
const MAX_RING_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Default)]
pub(super) struct PreRoll {
    packets: VecDeque<EncodedPacket>,
    bytes: usize,
}

impl PreRoll {
    pub(super) fn clear(&mut self) {
        self.packets.clear();
        self.bytes = 0;
    }

    /// Ticks from the oldest to the newest buffered packet.
    pub(super) fn span(&self) -> Option<i64> {
        Some(self.packets.back()?.pts - self.packets.front()?.pts)
    }

    /// Adds a packet and drops what is no longer needed: the buffer starts at
    /// the newest keyframe at or before `keep_from`. Packets before the first
    /// keyframe are not kept.
    pub(super) fn push(&mut self, p: EncodedPacket, keep_from: i64, camera: &CameraName) {
        if self.packets.is_empty() && !p.is_keyframe {
            return;
        }
        self.bytes += p.data.len();
        self.packets.push_back(p);
        loop {
            // The second keyframe: if it is old enough, everything before it can go.
            let second = self.packets.iter().enumerate().skip(1).find(|(_, q)| q.is_keyframe).map(|(i, q)| (i, q.pts));
            match second {
                Some((i, pts)) if pts <= keep_from || self.bytes > MAX_RING_BYTES => self.drop_front(i),
                None if self.bytes > MAX_RING_BYTES => {
                    warn!(camera = %camera, bytes = self.bytes, "no keyframe in the pre-roll buffer limit; dropping it");
                    let n = self.packets.len();
                    self.drop_front(n);
                }
                _ => break,
            }
        }
    }

    fn drop_front(&mut self, n: usize) {
        for q in self.packets.drain(..n) {
            self.bytes -= q.data.len();
        }
    }

    /// Empties the buffer into a clip's first packets: from the newest keyframe
    /// at or before `target` (the oldest one when the buffer is shorter).
    /// `None`, and the buffer kept, when no keyframe is buffered.
    pub(super) fn take_from(&mut self, target: i64) -> Option<Vec<EncodedPacket>> {
        let start = match self.packets.iter().rposition(|q| q.is_keyframe && q.pts <= target) {
            Some(i) => i,
            None if self.packets.front().is_some_and(|q| q.is_keyframe) => 0,
            None => return None,
        };
        self.drop_front(start);
        self.bytes = 0;
        Some(self.packets.drain(..).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pts: i64, is_keyframe: bool) -> EncodedPacket {
        EncodedPacket { pts, wall_ms: pts, is_keyframe, data: vec![0, 0, 0, 1, 0x65] }
    }

    #[test]
    fn keeps_from_a_keyframe_old_enough_and_hands_over_from_a_keyframe() {
        let cam: CameraName = "c".into();
        let mut ring = PreRoll::default();
        // 10 packets a second, keyframes every second, 1.5 s of pre-roll.
        for i in 1..=30 {
            ring.push(packet(i * 100, i % 10 == 0), i * 100 - 1500, &cam);
        }
        // Nothing before the first keyframe (1.0 s); the newest keyframe at or
        // before 3.0 - 1.5 s is still 1.0 s.
        assert_eq!(ring.span(), Some(2000));
        assert!(ring.take_from(-1).is_some_and(|p| p[0].pts == 1000 && p.len() == 21), "the oldest keyframe");
        assert_eq!(ring.span(), None);

        for i in 31..=45 {
            ring.push(packet(i * 100, i % 10 == 0), i * 100 - 1500, &cam);
        }
        let clip = ring.take_from(4200).expect("a keyframe is buffered");
        assert_eq!((clip[0].pts, clip.len()), (4000, 6));
        assert!(ring.take_from(9999).is_none(), "nothing buffered");
    }
}
