//! How much of a detection's box changed: from the camera's motion detector
//! ([`MotionMask`], live cameras) or between two sampled frames of a clip
//! ([`box_change`]).

use crate::media::RgbFrame;

/// Grey levels (0-255) by which a 2x2 block must change to count as changed
/// between two sampled frames (above sensor noise and compression flicker).
const DIFF_LEVELS: i32 = 24;

/// Where the camera's motion detector saw change in a frame, at its analysis
/// size: one byte per pixel, non-zero where changed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MotionMask {
    pub width: u32,
    pub height: u32,
    pub changed: Vec<u8>,
}

impl MotionMask {
    /// Where the camera's motion detector saw change in its last frame.
    pub fn of(detector: &crate::media::motion::MotionDetector) -> Option<Self> {
        let mut gray = Vec::new();
        let (width, height) = detector.changed_mask_gray(&mut gray)?;
        // 255: changed; 64 (masked out) and 0: not.
        Some(Self { width, height, changed: gray.iter().map(|&v| u8::from(v == 255)).collect() })
    }

    /// The fraction of the pixel box `bbox` (of a `frame_w` x `frame_h` frame)
    /// that changed; `None` when the mask is empty.
    pub fn fraction_in(&self, bbox: &[f32; 4], frame_w: u32, frame_h: u32) -> Option<f32> {
        let (mw, mh) = (self.width as usize, self.height as usize);
        if mw == 0 || mh == 0 || self.changed.len() < mw * mh || frame_w == 0 || frame_h == 0 {
            return None;
        }
        let sx = mw as f32 / frame_w as f32;
        let sy = mh as f32 / frame_h as f32;
        let span = |a: f32, b: f32, s: f32, n: usize| {
            let lo = ((a * s).floor().max(0.0) as usize).min(n - 1);
            let hi = ((b * s).ceil().max(0.0) as usize).clamp(lo + 1, n);
            (lo, hi)
        };
        let (x0, x1) = span(bbox[0], bbox[2], sx, mw);
        let (y0, y1) = span(bbox[1], bbox[3], sy, mh);
        let mut hits = 0u32;
        for y in y0..y1 {
            hits += self.changed[y * mw + x0..y * mw + x1].iter().map(|&c| u32::from(c != 0)).sum::<u32>();
        }
        Some(hits as f32 / ((x1 - x0) * (y1 - y0)) as f32)
    }
}

/// The fraction of 2x2 blocks of the pixel box `bbox` whose grey level differs
/// by more than [`DIFF_LEVELS`] between `prev` and `cur`; `None` when the
/// frames differ in size.
pub fn box_change(prev: &RgbFrame, cur: &RgbFrame, bbox: &[f32; 4]) -> Option<f32> {
    if prev.width != cur.width || prev.height != cur.height || prev.data.len() != cur.data.len() {
        return None;
    }
    let (w, h) = (cur.width as usize, cur.height as usize);
    if w < 2 || h < 2 || cur.data.len() < w * h * 3 {
        return None;
    }
    let clampx = |v: f32| (v.max(0.0) as usize).min(w - 2) & !1;
    let clampy = |v: f32| (v.max(0.0) as usize).min(h - 2) & !1;
    let (x0, x1) = (clampx(bbox[0]), clampx(bbox[2]).max(clampx(bbox[0]) + 2));
    let (y0, y1) = (clampy(bbox[1]), clampy(bbox[3]).max(clampy(bbox[1]) + 2));
    // Sum of 4 pixels' (r + 2g + b): 16 times the block's grey level.
    let block = |f: &RgbFrame, x: usize, y: usize| -> i32 {
        let mut s = 0i32;
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let i = ((y + dy) * w + x + dx) * 3;
            s += i32::from(f.data[i]) + 2 * i32::from(f.data[i + 1]) + i32::from(f.data[i + 2]);
        }
        s
    };
    let (mut changed, mut total) = (0u32, 0u32);
    for y in (y0..y1.min(h - 1)).step_by(2) {
        for x in (x0..x1.min(w - 1)).step_by(2) {
            total += 1;
            changed += u32::from((block(prev, x, y) - block(cur, x, y)).abs() > DIFF_LEVELS * 16);
        }
    }
    (total > 0).then(|| changed as f32 / total as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: u32, h: u32, f: impl Fn(u32, u32) -> u8) -> RgbFrame {
        let mut data = Vec::new();
        for y in 0..h {
            for x in 0..w {
                data.extend_from_slice(&[f(x, y); 3]);
            }
        }
        RgbFrame { ts_s: 0.0, width: w, height: h, data }
    }

    #[test]
    fn change_is_measured_inside_the_box_only() {
        let still = frame(40, 40, |_, _| 100);
        // The left half brightens a lot; the right half flickers a little.
        let next = frame(40, 40, |x, _| if x < 20 { 200 } else { 110 });
        assert_eq!(box_change(&still, &next, &[0.0, 0.0, 20.0, 40.0]), Some(1.0));
        assert_eq!(box_change(&still, &next, &[20.0, 0.0, 40.0, 40.0]), Some(0.0), "10 levels is noise");
        let half = box_change(&still, &next, &[10.0, 0.0, 30.0, 40.0]).unwrap();
        assert!((half - 0.5).abs() < 0.01, "{half}");
        assert_eq!(box_change(&still, &frame(20, 20, |_, _| 0), &[0.0, 0.0, 5.0, 5.0]), None);
    }

    #[test]
    fn a_motion_mask_is_scaled_to_the_frame() {
        // A 4x4 mask of a 400x400 frame: the top-left quarter changed.
        let mut changed = vec![0u8; 16];
        for i in [0, 1, 4, 5] {
            changed[i] = 1;
        }
        let m = MotionMask { width: 4, height: 4, changed };
        assert_eq!(m.fraction_in(&[0.0, 0.0, 200.0, 200.0], 400, 400), Some(1.0));
        assert_eq!(m.fraction_in(&[200.0, 200.0, 400.0, 400.0], 400, 400), Some(0.0));
        assert_eq!(m.fraction_in(&[0.0, 0.0, 400.0, 400.0], 400, 400), Some(0.25));
        assert_eq!(m.fraction_in(&[390.0, 390.0, 500.0, 500.0], 400, 400), Some(0.0), "at the edge");
        assert_eq!(MotionMask::default().fraction_in(&[0.0, 0.0, 1.0, 1.0], 4, 4), None);
    }
}
