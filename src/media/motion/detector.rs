//! The motion detector: background model, threshold, score and the
//! debounced motion state, plus the tuning pictures of the last frame.

use super::config::{MotionConfig, Params};
use super::downscale::{Geometry, box_downscale};
use super::mask::rasterize_polygon;
use crate::media::{Jpeg, MediaError, RgbFrame};

/// The detector's verdict on one frame.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MotionSample {
    /// Fraction (0-1) of the unmasked pixels that differ from the background by
    /// more than `threshold`.
    pub score: f32,
    /// Whether motion is on after this frame (debounced by `min_frames` /
    /// `hold_frames`).
    pub motion: bool,
    /// The frame changed so much at once that the background was reset to it;
    /// it neither starts nor ends motion.
    pub recalibrated: bool,
}

/// The motion detector of one camera. Feed it every detected frame in order.
pub struct MotionDetector {
    config: MotionConfig,
    params: Params,
    geometry: Option<Geometry>,
    /// One line of row sums, input width.
    acc: Vec<u16>,
    /// The current frame, downscaled (box averages, rounded).
    current: Vec<u8>,
    /// The running-average background, downscaled.
    background: Vec<f32>,
    /// 1 where the last frame changed (and is not masked), else 0.
    changed: Vec<u8>,
    /// 1 where pixels count, 0 where a mask hides them.
    active: Vec<u8>,
    active_count: u32,
    has_background: bool,
    in_motion: bool,
    /// Consecutive motion frames (while not in motion).
    streak: u32,
    /// Consecutive quiet frames (while in motion).
    quiet: u32,
    warned_bad_input: bool,
}

impl MotionDetector {
    pub fn new(config: &MotionConfig) -> Self {
        Self {
            config: config.clone(),
            params: Params::from_config(config),
            geometry: None,
            acc: Vec::new(),
            current: Vec::new(),
            background: Vec::new(),
            changed: Vec::new(),
            active: Vec::new(),
            active_count: 0,
            has_background: false,
            in_motion: false,
            streak: 0,
            quiet: 0,
            warned_bad_input: false,
        }
    }

    pub fn config(&self) -> &MotionConfig {
        &self.config
    }

    /// The size frames are compared at; `None` before the first frame.
    pub fn analysis_size(&self) -> Option<(u32, u32)> {
        self.geometry.as_ref().map(|g| (g.out_w as u32, g.out_h as u32))
    }

    /// Whether motion is on (as of the last frame).
    pub fn in_motion(&self) -> bool {
        self.in_motion
    }

    /// Whether motion is on or the last frame counted towards starting it.
    pub fn stirring(&self) -> bool {
        self.in_motion || self.streak > 0
    }

    /// Forgets the background and the motion state (e.g. after a reconnect); the
    /// next frame becomes the background.
    pub fn reset(&mut self) {
        self.has_background = false;
        self.in_motion = false;
        self.streak = 0;
        self.quiet = 0;
        self.changed.fill(0);
    }

    fn init_geometry(&mut self, width: u32, height: u32) {
        let g = Geometry::new(width, height, self.params.downscale_width);
        let n = g.pixels();
        self.acc.clear();
        self.acc.resize(width as usize, 0);
        self.current.clear();
        self.current.resize(n, 0);
        self.background.clear();
        self.background.resize(n, 0.0);
        self.changed.clear();
        self.changed.resize(n, 0);
        self.active.clear();
        self.active.resize(n, 1);
        for polygon in &self.config.masks {
            rasterize_polygon(polygon, g.out_w, g.out_h, &mut self.active, 0);
        }
        self.active_count = self.active.iter().map(|&a| u32::from(a)).sum();
        tracing::debug!(
            input = %format_args!("{width}x{height}"),
            analysis = %format_args!("{}x{}", g.out_w, g.out_h),
            unmasked = self.active_count,
            "motion detector initialised"
        );
        self.geometry = Some(g);
        self.reset();
    }

    /// Analyses one frame: `luma` is the Y plane (8-bit grayscale), `width` x
    /// `height` pixels with rows `stride` bytes apart. A new resolution
    /// re-initialises the detector (that frame becomes the background).
    pub fn process(&mut self, luma: &[u8], stride: usize, width: u32, height: u32) -> MotionSample {
        let needed = (height as usize).saturating_sub(1).saturating_mul(stride).saturating_add(width as usize);
        if width == 0 || height == 0 || stride < width as usize || luma.len() < needed {
            if !self.warned_bad_input {
                tracing::warn!(
                    width,
                    height,
                    stride,
                    len = luma.len(),
                    "motion: frame geometry does not fit its buffer"
                );
                self.warned_bad_input = true;
            }
            return MotionSample { score: 0.0, motion: self.in_motion, recalibrated: false };
        }
        if self.geometry.as_ref().is_none_or(|g| g.in_w != width || g.in_h != height) {
            self.init_geometry(width, height);
        }
        let Some(g) = self.geometry.as_ref() else {
            // init_geometry always sets it.
            return MotionSample::default();
        };
        box_downscale(g, luma, stride, &mut self.acc, &mut self.current);

        if !self.has_background {
            self.reset_background();
            self.has_background = true;
            self.changed.fill(0);
            return MotionSample { score: 0.0, motion: self.in_motion, recalibrated: false };
        }

        let threshold = self.params.threshold;
        let mut count = 0u32;
        for ((c, (&cur, &bg)), &active) in
            self.changed.iter_mut().zip(self.current.iter().zip(&self.background)).zip(&self.active)
        {
            let hit = u8::from((f32::from(cur) - bg).abs() > threshold) & active;
            *c = hit;
            count += u32::from(hit);
        }
        let score = if self.active_count == 0 { 0.0 } else { count as f32 / self.active_count as f32 };

        let recalibrated = score > self.params.recalibrate_area && self.params.recalibrate_area < 1.0;
        if recalibrated {
            self.reset_background();
            self.streak = 0;
            tracing::debug!(score, "motion: sudden global change, background reset");
        } else {
            let alpha = self.params.alpha;
            for (bg, &cur) in self.background.iter_mut().zip(&self.current) {
                *bg += alpha * (f32::from(cur) - *bg);
            }
            if self.active_count > 0 && score >= self.params.min_area {
                self.quiet = 0;
                self.streak = self.streak.saturating_add(1);
                if !self.in_motion && self.streak >= self.params.min_frames {
                    self.in_motion = true;
                }
            } else {
                self.streak = 0;
                if self.in_motion {
                    self.quiet += 1;
                    if self.quiet >= self.params.hold_frames {
                        self.in_motion = false;
                        self.quiet = 0;
                    }
                }
            }
        }
        MotionSample { score, motion: self.in_motion, recalibrated }
    }

    /// The background becomes the current frame.
    fn reset_background(&mut self) {
        for (bg, &cur) in self.background.iter_mut().zip(&self.current) {
            *bg = f32::from(cur);
        }
    }

    /// The last frame's changed pixels as an 8-bit grayscale picture at the
    /// analysis size: 255 changed, 0 unchanged, 64 masked out. Fills `out` and
    /// returns the size; `None` before the first frame.
    pub fn changed_mask_gray(&self, out: &mut Vec<u8>) -> Option<(u32, u32)> {
        let g = self.geometry.as_ref()?;
        out.clear();
        out.extend(self.changed.iter().zip(&self.active).map(|(&c, &a)| match (c, a) {
            (1, _) => 255,
            (_, 0) => 64,
            _ => 0,
        }));
        Some((g.out_w as u32, g.out_h as u32))
    }

    /// The last frame at the analysis size as a tuning picture: the frame in dim
    /// gray, changed pixels red, masked areas tinted blue. Fills `out` (reusing
    /// its buffer; `ts_s` is copied into it); `false` before the first frame.
    pub fn render_overlay(&self, ts_s: f64, out: &mut RgbFrame) -> bool {
        let Some(g) = self.geometry.as_ref() else {
            return false;
        };
        out.ts_s = ts_s;
        out.width = g.out_w as u32;
        out.height = g.out_h as u32;
        out.data.clear();
        for ((&cur, &c), &a) in self.current.iter().zip(&self.changed).zip(&self.active) {
            let y = (u16::from(cur) * 3 / 5) as u8;
            let px = match (c, a) {
                (1, _) => [255, 32, 32],
                (_, 0) => [y / 2, y / 2, y / 2 + 96],
                _ => [y, y, y],
            };
            out.data.extend_from_slice(&px);
        }
        true
    }

    /// [`render_overlay`](Self::render_overlay) as a JPEG; `None` before the first frame.
    pub fn overlay_jpeg(&self, ts_s: f64, quality: u8) -> Result<Option<Jpeg>, MediaError> {
        let mut frame = RgbFrame { ts_s, width: 0, height: 0, data: Vec::new() };
        if !self.render_overlay(ts_s, &mut frame) {
            return Ok(None);
        }
        crate::media::encode_jpeg(&frame, 0, quality).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(w: usize, h: usize, f: impl Fn(usize, usize) -> u8) -> Vec<u8> {
        (0..h).flat_map(|y| (0..w).map(move |x| (x, y))).map(|(x, y)| f(x, y)).collect()
    }

    #[test]
    fn a_moving_square_starts_and_ends_motion_with_debounce() {
        let cfg = MotionConfig { min_frames: 2, hold_frames: 3, ..MotionConfig::default() };
        let mut d = MotionDetector::new(&cfg);
        let (w, h) = (320usize, 180usize);
        let still = plane(w, h, |x, y| ((x + y) % 7) as u8 * 10 + 40);
        let with_square = |x0: usize| {
            plane(w, h, |x, y| if (x0..x0 + 30).contains(&x) && (60..90).contains(&y) { 230 } else { still[y * w + x] })
        };
        for _ in 0..5 {
            assert_eq!(d.process(&still, w, w as u32, h as u32), MotionSample::default());
        }
        let s1 = d.process(&with_square(10), w, w as u32, h as u32);
        assert!(s1.score > 0.01 && !s1.motion, "one frame is not enough: {s1:?}");
        let s2 = d.process(&with_square(40), w, w as u32, h as u32);
        assert!(s2.motion && !s2.recalibrated, "{s2:?}");
        // Quiet frames: the background moved only alpha of the way towards the square,
        // so the still frame matches it at once; motion holds for hold_frames - 1 quiet
        // frames and ends at the hold_frames-th.
        let quiet: Vec<MotionSample> = (0..4).map(|_| d.process(&still, w, w as u32, h as u32)).collect();
        assert!(quiet.iter().all(|s| s.score == 0.0 && !s.recalibrated), "{quiet:?}");
        let motion: Vec<bool> = quiet.iter().map(|s| s.motion).collect();
        assert_eq!(motion, [true, true, false, false]);
    }

    #[test]
    fn masked_pixels_never_count() {
        let cfg = MotionConfig {
            masks: vec![vec![[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]],
            ..MotionConfig::default()
        };
        let mut d = MotionDetector::new(&cfg);
        let (w, h) = (64usize, 32usize);
        let dark = vec![20u8; w * h];
        // Left half (masked) changes completely; right half stays.
        let left_bright = plane(w, h, |x, _| if x < w / 2 { 200 } else { 20 });
        d.process(&dark, w, w as u32, h as u32);
        let s = d.process(&left_bright, w, w as u32, h as u32);
        assert_eq!(s.score, 0.0);
        let mut gray = Vec::new();
        assert_eq!(d.changed_mask_gray(&mut gray), Some((64, 32)));
        assert_eq!(gray[0], 64, "masked pixels are drawn dark gray");
        assert_eq!(gray[w - 1], 0);
    }

    #[test]
    fn bad_geometry_is_a_quiet_frame_not_a_panic() {
        let mut d = MotionDetector::new(&MotionConfig::default());
        assert_eq!(d.process(&[0u8; 10], 4, 4, 4), MotionSample::default());
        assert_eq!(d.process(&[0u8; 16], 2, 4, 4), MotionSample::default());
        assert_eq!(d.process(&[], 0, 0, 0), MotionSample::default());
    }

    #[test]
    fn a_resolution_change_reinitialises() {
        let mut d = MotionDetector::new(&MotionConfig::default());
        d.process(&vec![50u8; 640 * 360], 640, 640, 360);
        assert_eq!(d.analysis_size(), Some((320, 180)));
        let s = d.process(&vec![200u8; 320 * 240], 320, 320, 240);
        assert_eq!(s, MotionSample::default(), "the first frame of a new size becomes the background");
        assert_eq!(d.analysis_size(), Some((320, 240)));
    }
}
