//! Motion detection on the luma (Y) plane of decoded frames.
//!
//! Per frame: a two-pass box downscale of the luma plane to about
//! [`MotionConfig::downscale_width`] pixels wide (rows summed into a `u16` line
//! first, then columns), a per-pixel absolute difference against a running-average
//! background (`f32`), a threshold, and the fraction of unmasked pixels that changed
//! (the *score*). A frame counts as motion when its score reaches `min_area`;
//! motion starts after `min_frames` such frames in a row and ends after
//! `hold_frames` quiet frames in a row. A sudden change over `recalibrate_area`
//! (IR switch, lightning, auto-exposure jump) replaces the background instead of
//! reporting motion.
//!
//! Masks are polygons in normalised coordinates, rasterised once per input
//! resolution; a resolution change re-initialises the detector. After the first
//! frame of a resolution, [`MotionDetector::process`] allocates nothing.
//!
//! [`analyze_file`] runs the detector over a clip: the `homesec motion` tuning aid.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Jpeg, MediaError, RgbFrame};
use crate::plugin::{PluginConfig, Validator};

/// The `motion:` block of a camera source: how frames are compared and when
/// motion starts and ends. Frame counts are in *detected* frames (after the
/// source's `detect_fps`), so a camera analysed at 5 fps holds motion twice as
/// long (in seconds) as one analysed at 10 fps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MotionConfig {
    /// Width in pixels the luma plane is box-downscaled to before comparing
    /// (the aspect ratio is kept; a smaller input is never upscaled). Smaller is
    /// faster and less sensitive to sensor noise and to tiny objects. 32-1920.
    pub downscale_width: u32,
    /// Per-pixel luma difference (0-255 scale) from the background above which a
    /// pixel counts as changed. Lower catches low-contrast movement but also noise
    /// and compression artefacts. 1-254.
    pub threshold: u32,
    /// Fraction (0-1) of the unmasked pixels that must change for a frame to count
    /// as motion. 0.005 = 0.5 % of the picture.
    pub min_area: f32,
    /// How fast the background follows the picture, per detected frame (0-1]: the
    /// background moves this fraction of the way to each new frame. Higher forgets
    /// parked cars and shadows sooner but also absorbs slow movers sooner.
    pub background_alpha: f32,
    /// Consecutive motion frames needed to start motion (filters out one-frame
    /// glitches). At least 1.
    pub min_frames: u32,
    /// Consecutive frames without motion after which motion ends. The recorder
    /// adds its own post-roll on top. At least 1.
    pub hold_frames: u32,
    /// A frame in which more than this fraction of the unmasked pixels changes at
    /// once (IR cut-filter switch, lightning, auto-exposure jump) resets the
    /// background instead of counting as motion. Must exceed `min_area`; 1.0 turns
    /// recalibration off.
    pub recalibrate_area: f32,
    /// Areas to IGNORE: polygons of at least three `[x, y]` points in normalised
    /// picture coordinates (0,0 top-left, 1,1 bottom-right), e.g. a road or a tree
    /// that moves in the wind. A pixel whose centre lies inside any polygon never
    /// counts (nor does it count towards `min_area`'s total).
    pub masks: Vec<Vec<[f32; 2]>>,
}

impl Default for MotionConfig {
    fn default() -> Self {
        Self {
            downscale_width: 320,
            threshold: 25,
            min_area: 0.005,
            background_alpha: 0.05,
            min_frames: 2,
            hold_frames: 5,
            recalibrate_area: 0.6,
            masks: Vec::new(),
        }
    }
}

impl PluginConfig for MotionConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        v.check((32..=1920).contains(&self.downscale_width), "downscale_width", "must be in [32, 1920]");
        v.check((1..=254).contains(&self.threshold), "threshold", "must be in [1, 254]");
        v.check(self.min_area > 0.0 && self.min_area < 1.0, "min_area", "must be in (0, 1)");
        v.check(self.background_alpha > 0.0 && self.background_alpha <= 1.0, "background_alpha", "must be in (0, 1]");
        v.check((1..=1000).contains(&self.min_frames), "min_frames", "must be in [1, 1000]");
        v.check((1..=100_000).contains(&self.hold_frames), "hold_frames", "must be in [1, 100000]");
        v.check(self.recalibrate_area > 0.0 && self.recalibrate_area <= 1.0, "recalibrate_area", "must be in (0, 1]");
        if self.recalibrate_area > 0.0 && self.min_area > 0.0 {
            v.check(
                self.recalibrate_area > self.min_area,
                "recalibrate_area",
                format!("must be greater than min_area ({})", self.min_area),
            );
        }
        for (i, polygon) in self.masks.iter().enumerate() {
            let field = format!("masks[{i}]");
            v.check(polygon.len() >= 3, &field, format!("needs at least 3 points, has {}", polygon.len()));
            for (j, p) in polygon.iter().enumerate() {
                v.check(
                    p.iter().all(|c| c.is_finite() && (0.0..=1.0).contains(c)),
                    &format!("{field}[{j}]"),
                    format!("coordinates must be in [0, 1] (fractions of the picture), got [{}, {}]", p[0], p[1]),
                );
            }
        }
    }
}

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

/// The config with out-of-range values clamped, so that a config that skipped
/// validation cannot make the detector divide by zero or overflow.
#[derive(Debug, Clone, Copy)]
struct Params {
    downscale_width: u32,
    threshold: f32,
    min_area: f32,
    alpha: f32,
    min_frames: u32,
    hold_frames: u32,
    recalibrate_area: f32,
}

impl Params {
    fn from_config(c: &MotionConfig) -> Self {
        let finite_or = |v: f32, d: f32| if v.is_finite() { v } else { d };
        Self {
            downscale_width: c.downscale_width.clamp(8, 4096),
            threshold: c.threshold.clamp(1, 255) as f32,
            min_area: finite_or(c.min_area, 0.005).clamp(1e-6, 1.0),
            alpha: finite_or(c.background_alpha, 0.05).clamp(1e-4, 1.0),
            min_frames: c.min_frames.max(1),
            hold_frames: c.hold_frames.max(1),
            recalibrate_area: finite_or(c.recalibrate_area, 1.0).clamp(0.0, 1.0),
        }
    }
}

/// Input and downscaled sizes and the box boundaries between them.
#[derive(Debug, Clone)]
struct Geometry {
    in_w: u32,
    in_h: u32,
    out_w: usize,
    out_h: usize,
    /// Source column where output column `x` starts; `out_w + 1` entries.
    col_start: Vec<usize>,
    /// Source row where output row `y` starts; `out_h + 1` entries.
    row_start: Vec<usize>,
    /// 1 / (columns in output column `x`).
    inv_cols: Vec<f32>,
}

/// Largest number of source rows or columns averaged into one output pixel, so
/// that row sums of 8-bit samples fit the `u16` accumulator (255 * 257 < 65536).
const MAX_BOX: u32 = 256;

impl Geometry {
    fn new(in_w: u32, in_h: u32, target_w: u32) -> Self {
        // Never upscale; keep the aspect ratio; keep each box at most MAX_BOX wide and high.
        let out_w = target_w.min(in_w).max(in_w.div_ceil(MAX_BOX)).max(1);
        let out_h = ((u64::from(in_h) * u64::from(out_w) + u64::from(in_w) / 2) / u64::from(in_w)) as u32;
        let out_h = out_h.clamp(in_h.div_ceil(MAX_BOX).max(1), in_h);
        let bounds = |n_in: u32, n_out: u32| -> Vec<usize> {
            (0..=u64::from(n_out)).map(|i| (i * u64::from(n_in) / u64::from(n_out)) as usize).collect()
        };
        let col_start = bounds(in_w, out_w);
        let row_start = bounds(in_h, out_h);
        let inv_cols = col_start.windows(2).map(|w| 1.0 / (w[1] - w[0]) as f32).collect();
        Self { in_w, in_h, out_w: out_w as usize, out_h: out_h as usize, col_start, row_start, inv_cols }
    }

    fn pixels(&self) -> usize {
        self.out_w * self.out_h
    }
}

/// Box-downscales the `in_w` x `in_h` plane `src` (rows `stride` bytes apart) into
/// `out` (`out_w * out_h` values), using `acc` (`in_w` entries) as scratch.
/// The caller checked that `src` holds the whole plane.
fn box_downscale(g: &Geometry, src: &[u8], stride: usize, acc: &mut [u16], out: &mut [f32]) {
    let in_w = g.in_w as usize;
    for (oy, out_row) in out.chunks_exact_mut(g.out_w).enumerate() {
        let (r0, r1) = (g.row_start[oy], g.row_start[oy + 1]);
        // Pass 1: sum the box's source rows column by column (vectorises well).
        let first = &src[r0 * stride..r0 * stride + in_w];
        for (a, &p) in acc.iter_mut().zip(first) {
            *a = u16::from(p);
        }
        for r in r0 + 1..r1 {
            let row = &src[r * stride..r * stride + in_w];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += u16::from(p);
            }
        }
        // Pass 2: sum each box's columns of that line.
        let inv_rows = 1.0 / (r1 - r0) as f32;
        let uniform = g.col_start[1];
        if in_w == uniform * g.out_w {
            // Equal boxes (640, 1280, 1920 → 320): a fixed-width sum the compiler unrolls.
            let scale = g.inv_cols[0] * inv_rows;
            match uniform {
                1 => sum_boxes::<1>(acc, out_row, scale),
                2 => sum_boxes::<2>(acc, out_row, scale),
                3 => sum_boxes::<3>(acc, out_row, scale),
                4 => sum_boxes::<4>(acc, out_row, scale),
                6 => sum_boxes::<6>(acc, out_row, scale),
                8 => sum_boxes::<8>(acc, out_row, scale),
                _ => sum_uneven_boxes(g, acc, out_row, inv_rows),
            }
        } else {
            // Boxes are floor(in_w / out_w) or one more columns wide (768 → 320: 2 or 3).
            match in_w / g.out_w {
                1 => sum_uneven_boxes_of::<1>(g, acc, out_row, inv_rows),
                2 => sum_uneven_boxes_of::<2>(g, acc, out_row, inv_rows),
                3 => sum_uneven_boxes_of::<3>(g, acc, out_row, inv_rows),
                4 => sum_uneven_boxes_of::<4>(g, acc, out_row, inv_rows),
                5 => sum_uneven_boxes_of::<5>(g, acc, out_row, inv_rows),
                _ => sum_uneven_boxes(g, acc, out_row, inv_rows),
            }
        }
    }
}

/// Pass 2 for boxes `K` columns wide: `out[x] = sum(acc[K*x .. K*x + K]) * scale`.
fn sum_boxes<const K: usize>(acc: &[u16], out: &mut [f32], scale: f32) {
    for (o, c) in out.iter_mut().zip(acc.chunks_exact(K)) {
        let sum: u32 = c.iter().map(|&v| u32::from(v)).sum();
        *o = sum as f32 * scale;
    }
}

/// Pass 2 for boxes `K` or `K + 1` columns wide: a fixed-width sum plus at most one column.
fn sum_uneven_boxes_of<const K: usize>(g: &Geometry, acc: &[u16], out: &mut [f32], inv_rows: f32) {
    let cols = g.col_start.windows(2).zip(&g.inv_cols);
    for (o, (c, inv_cols)) in out.iter_mut().zip(cols) {
        let b = &acc[c[0]..c[1]];
        let sum = match b.split_first_chunk::<K>() {
            Some((head, tail)) => {
                head.iter().map(|&v| u32::from(v)).sum::<u32>() + tail.iter().map(|&v| u32::from(v)).sum::<u32>()
            }
            // Not reached (boxes are at least K wide); the plain sum stays correct anyway.
            None => b.iter().map(|&v| u32::from(v)).sum(),
        };
        *o = sum as f32 * (inv_cols * inv_rows);
    }
}

/// Pass 2 for boxes of varying width (the input width is not a multiple of the output's).
fn sum_uneven_boxes(g: &Geometry, acc: &[u16], out: &mut [f32], inv_rows: f32) {
    let cols = g.col_start.windows(2).zip(&g.inv_cols);
    for (o, (c, inv_cols)) in out.iter_mut().zip(cols) {
        let sum: u32 = acc[c[0]..c[1]].iter().map(|&v| u32::from(v)).sum();
        *o = sum as f32 * (inv_cols * inv_rows);
    }
}

/// Marks with `value` the pixels of a `w` x `h` grid whose centres lie inside
/// `polygon` (normalised coordinates, even-odd rule).
fn rasterize_polygon(polygon: &[[f32; 2]], w: usize, h: usize, grid: &mut [u8], value: u8) {
    if polygon.len() < 3 || w == 0 || h == 0 {
        return;
    }
    let mut crossings: Vec<f32> = Vec::with_capacity(polygon.len());
    for y in 0..h {
        let py = (y as f32 + 0.5) / h as f32;
        crossings.clear();
        for (i, a) in polygon.iter().enumerate() {
            let b = polygon[(i + 1) % polygon.len()];
            let (ax, ay, bx, by) = (a[0], a[1], b[0], b[1]);
            if (ay > py) != (by > py) {
                crossings.push(ax + (py - ay) * (bx - ax) / (by - ay));
            }
        }
        crossings.sort_by(f32::total_cmp);
        let row = &mut grid[y * w..(y + 1) * w];
        for pair in crossings.chunks_exact(2) {
            // Pixel x is inside when its centre (x + 0.5) / w lies in [pair[0], pair[1]).
            let first = ((pair[0] * w as f32 - 0.5).ceil().max(0.0) as usize).min(w);
            let end = ((pair[1] * w as f32 - 0.5).ceil().max(0.0) as usize).min(w);
            if first < end {
                row[first..end].fill(value);
            }
        }
    }
}

/// The motion detector of one camera. Feed it every detected frame in order.
pub struct MotionDetector {
    config: MotionConfig,
    params: Params,
    geometry: Option<Geometry>,
    /// One line of row sums, input width.
    acc: Vec<u16>,
    /// The current frame, downscaled.
    current: Vec<f32>,
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
        for buf in [&mut self.current, &mut self.background] {
            buf.clear();
            buf.resize(n, 0.0);
        }
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
            self.background.copy_from_slice(&self.current);
            self.has_background = true;
            self.changed.fill(0);
            return MotionSample { score: 0.0, motion: self.in_motion, recalibrated: false };
        }

        let threshold = self.params.threshold;
        let mut count = 0u32;
        for ((c, (&cur, &bg)), &active) in
            self.changed.iter_mut().zip(self.current.iter().zip(&self.background)).zip(&self.active)
        {
            let hit = u8::from((cur - bg).abs() > threshold) & active;
            *c = hit;
            count += u32::from(hit);
        }
        let score = if self.active_count == 0 { 0.0 } else { count as f32 / self.active_count as f32 };

        let recalibrated = score > self.params.recalibrate_area && self.params.recalibrate_area < 1.0;
        if recalibrated {
            self.background.copy_from_slice(&self.current);
            self.streak = 0;
            tracing::debug!(score, "motion: sudden global change, background reset");
        } else {
            let alpha = self.params.alpha;
            for (bg, &cur) in self.background.iter_mut().zip(&self.current) {
                *bg += alpha * (cur - *bg);
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
            let y = (cur * 0.6) as u8;
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
        super::encode_jpeg(&frame, 0, quality).map(Some)
    }
}

/// Why [`analyze_file`] failed.
#[derive(Debug, thiserror::Error)]
pub enum MotionError {
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error("cannot write the changed-pixel picture {path}")]
    WriteOverlay {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The largest score in one second of the clip.
#[derive(Debug, Clone, PartialEq)]
pub struct SecondScore {
    /// Whole seconds from the clip start.
    pub second: u32,
    pub max_score: f32,
    /// Motion was on in at least one frame of this second.
    pub motion: bool,
    /// The background was reset in this second.
    pub recalibrated: bool,
}

/// One stretch of motion, as the detector reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct MotionInterval {
    /// Time of the first frame with motion on (after `min_frames`).
    pub start_s: f64,
    /// Time of the first frame with motion off again (after `hold_frames`), or of
    /// the last frame when the clip ends in motion.
    pub end_s: f64,
    /// Motion was still on at the end of the clip.
    pub open_at_end: bool,
}

/// The frame with the highest score (recalibrations excluded).
#[derive(Debug, Clone, PartialEq)]
pub struct PeakFrame {
    pub ts_s: f64,
    pub score: f32,
}

/// What [`analyze_file`] found: the score timeline and the motion intervals.
/// `Display` prints both for a person tuning the config.
#[derive(Debug, Clone)]
pub struct MotionReport {
    pub path: PathBuf,
    pub config: MotionConfig,
    /// Frames run through the detector.
    pub frames: u32,
    /// Frames decoded (all of them: P-frames need their references).
    pub frames_decoded: u32,
    /// Time of the last frame analysed.
    pub last_ts_s: f64,
    /// Input and analysis resolutions.
    pub input_size: (u32, u32),
    pub analysis_size: (u32, u32),
    pub detect_fps: f64,
    pub per_second: Vec<SecondScore>,
    pub intervals: Vec<MotionInterval>,
    pub recalibrations: u32,
    pub peak: Option<PeakFrame>,
    /// Where the changed-pixel picture of the peak frame was written.
    pub overlay_written: Option<PathBuf>,
}

/// Characters of the score bar in the timeline.
const BAR_WIDTH: usize = 40;

impl fmt::Display for MotionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        let rate = if self.detect_fps > 0.0 { format!("{} fps", self.detect_fps) } else { "every frame".to_owned() };
        writeln!(
            f,
            "{}: {} frames analysed ({rate}) of {} decoded, {}x{} analysed at {}x{}",
            self.path.display(),
            self.frames,
            self.frames_decoded,
            self.input_size.0,
            self.input_size.1,
            self.analysis_size.0,
            self.analysis_size.1
        )?;
        writeln!(
            f,
            "threshold {}  min_area {}  background_alpha {}  min_frames {}  hold_frames {}  recalibrate_area {}  \
             masks {}",
            c.threshold,
            c.min_area,
            c.background_alpha,
            c.min_frames,
            c.hold_frames,
            c.recalibrate_area,
            c.masks.len()
        )?;
        // Bars are scaled to the clip's highest score; '|' marks min_area.
        let top = self.per_second.iter().map(|s| s.max_score).fold(c.min_area * 2.0, f32::max);
        let marker = ((c.min_area / top) * BAR_WIDTH as f32).round() as usize;
        writeln!(f, "\n   time  max score  (bar: score scaled to {top:.4}; '|' = min_area)")?;
        for s in &self.per_second {
            let filled = ((s.max_score / top) * BAR_WIDTH as f32).round() as usize;
            let bar: String = (0..=BAR_WIDTH)
                .map(|i| match (i == marker, i < filled) {
                    (true, _) => '|',
                    (false, true) => '#',
                    (false, false) => ' ',
                })
                .collect();
            let mut tags = String::new();
            if s.motion {
                tags.push_str(" MOTION");
            }
            if s.recalibrated {
                tags.push_str(" recalibrated");
            }
            let line = format!("  {:>4} s  {:>8.4}  {bar}{tags}", s.second, s.max_score);
            writeln!(f, "{}", line.trim_end())?;
        }
        if self.intervals.is_empty() {
            writeln!(f, "\nno motion")?;
        } else {
            writeln!(f, "\nmotion intervals:")?;
            for i in &self.intervals {
                let open = if i.open_at_end { " (until the end of the clip)" } else { "" };
                writeln!(f, "  {:>7.2} s - {:>7.2} s  ({:.2} s){open}", i.start_s, i.end_s, i.end_s - i.start_s)?;
            }
        }
        if self.recalibrations > 0 {
            writeln!(f, "background reset {} time(s) by sudden global changes", self.recalibrations)?;
        }
        if let Some(p) = &self.peak {
            write!(f, "highest score {:.4} at {:.2} s", p.score, p.ts_s)?;
            if let Some(path) = &self.overlay_written {
                write!(f, "; changed pixels (red) written to {}", path.display())?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Takes frames on a grid of `1/fps` seconds (all frames when `fps` is 0).
struct FrameGrid {
    interval: f64,
    next_due: f64,
}

impl FrameGrid {
    fn new(fps: f64) -> Self {
        let interval = if fps.is_finite() && fps > 0.0 { 1.0 / fps } else { 0.0 };
        Self { interval, next_due: 0.0 }
    }

    fn is_due(&mut self, ts_s: f64) -> bool {
        const SLACK: f64 = 1e-3;
        if ts_s + SLACK < self.next_due {
            return false;
        }
        if self.interval > 0.0 {
            self.next_due += self.interval;
            while self.next_due <= ts_s + SLACK {
                self.next_due += self.interval;
            }
        }
        true
    }
}

/// JPEG quality of the tuning picture.
const OVERLAY_QUALITY: u8 = 90;

/// Runs the motion detector over an MP4 clip (the `homesec motion FILE` tuning
/// aid): decodes every frame, analyses those due at `detect_fps` (0: every frame),
/// and reports the highest score of each second and the motion intervals. With
/// `overlay_jpeg`, writes there a JPEG of the highest-scoring frame at the
/// analysis size with its changed pixels in red (masked areas tinted blue).
pub fn analyze_file(
    path: &Path,
    config: &MotionConfig,
    detect_fps: f64,
    overlay_jpeg: Option<&Path>,
) -> Result<MotionReport, MotionError> {
    let mut detector = MotionDetector::new(config);
    let mut grid = FrameGrid::new(detect_fps);
    let mut report = MotionReport {
        path: path.to_path_buf(),
        config: config.clone(),
        frames: 0,
        frames_decoded: 0,
        last_ts_s: 0.0,
        input_size: (0, 0),
        analysis_size: (0, 0),
        detect_fps: if detect_fps.is_finite() && detect_fps > 0.0 { detect_fps } else { 0.0 },
        per_second: Vec::new(),
        intervals: Vec::new(),
        recalibrations: 0,
        peak: None,
        overlay_written: None,
    };
    let mut overlay = RgbFrame { ts_s: 0.0, width: 0, height: 0, data: Vec::new() };
    let mut was_in_motion = false;

    let decoded = super::for_each_frame(path, &mut |frame| {
        if !grid.is_due(frame.ts_s) {
            return true;
        }
        let (luma, stride) = frame.luma();
        let s = detector.process(luma, stride, frame.width, frame.height);
        report.frames += 1;
        report.last_ts_s = frame.ts_s;
        report.input_size = (frame.width, frame.height);

        let second = frame.ts_s.max(0.0).floor() as u32;
        if report.per_second.last().is_none_or(|l| l.second != second) {
            report.per_second.push(SecondScore { second, max_score: 0.0, motion: false, recalibrated: false });
        }
        if let Some(slot) = report.per_second.last_mut() {
            slot.max_score = slot.max_score.max(s.score);
            slot.motion |= s.motion;
            slot.recalibrated |= s.recalibrated;
        }
        if s.recalibrated {
            report.recalibrations += 1;
        } else if report.peak.as_ref().is_none_or(|p| s.score > p.score) {
            report.peak = Some(PeakFrame { ts_s: frame.ts_s, score: s.score });
            if overlay_jpeg.is_some() {
                detector.render_overlay(frame.ts_s, &mut overlay);
            }
        }
        match (was_in_motion, s.motion) {
            (false, true) => {
                report.intervals.push(MotionInterval { start_s: frame.ts_s, end_s: frame.ts_s, open_at_end: true })
            }
            (true, false) => {
                if let Some(last) = report.intervals.last_mut() {
                    last.end_s = frame.ts_s;
                    last.open_at_end = false;
                }
            }
            _ => {}
        }
        was_in_motion = s.motion;
        true
    })?;
    report.frames_decoded = decoded;
    if let Some(last) = report.intervals.last_mut()
        && last.open_at_end
    {
        last.end_s = report.last_ts_s;
    }
    report.analysis_size = detector.analysis_size().unwrap_or((0, 0));

    if let Some(out) = overlay_jpeg
        && !overlay.data.is_empty()
    {
        let jpeg = super::encode_jpeg(&overlay, 0, OVERLAY_QUALITY)?;
        std::fs::write(out, &jpeg.bytes)
            .map_err(|source| MotionError::WriteOverlay { path: out.display().to_string(), source })?;
        report.overlay_written = Some(out.to_path_buf());
    }
    tracing::debug!(
        path = %path.display(),
        frames = report.frames,
        intervals = report.intervals.len(),
        recalibrations = report.recalibrations,
        "motion analysis done"
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid_of(polygon: &[[f32; 2]], w: usize, h: usize) -> Vec<u8> {
        let mut grid = vec![0u8; w * h];
        rasterize_polygon(polygon, w, h, &mut grid, 1);
        grid
    }

    fn rows(grid: &[u8], w: usize) -> Vec<String> {
        grid.chunks(w).map(|r| r.iter().map(|&v| if v == 1 { '#' } else { '.' }).collect()).collect()
    }

    #[test]
    fn rasterizes_a_centred_square() {
        let g = grid_of(&[[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]], 8, 8);
        let expected = ["........", "........", "..####..", "..####..", "..####..", "..####..", "........", "........"];
        assert_eq!(rows(&g, 8), expected);
    }

    #[test]
    fn rasterizes_the_whole_frame_and_nothing_outside() {
        let full = grid_of(&[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], 13, 7);
        assert!(full.iter().all(|&v| v == 1));
        // A sliver that covers no pixel centre.
        let sliver = grid_of(&[[0.0, 0.0], [0.01, 0.0], [0.01, 1.0], [0.0, 1.0]], 10, 10);
        assert!(sliver.iter().all(|&v| v == 0));
        // Degenerate polygons mark nothing.
        assert!(grid_of(&[[0.0, 0.0], [1.0, 1.0]], 4, 4).iter().all(|&v| v == 0));
    }

    #[test]
    fn rasterizes_a_triangle_with_the_right_area() {
        // Lower-left half of the picture: about half the pixels, all below the diagonal.
        let (w, h) = (100, 100);
        let g = grid_of(&[[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]], w, h);
        let count = g.iter().filter(|&&v| v == 1).count();
        assert!((4900..=5100).contains(&count), "{count}");
        for y in 0..h {
            for x in 0..w {
                if g[y * w + x] == 1 {
                    assert!(x <= y, "({x},{y}) is above the diagonal");
                }
            }
        }
        // Vertex order does not matter; a concave polygon (an L shape) is filled correctly.
        let l = grid_of(&[[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]], 4, 4);
        assert_eq!(rows(&l, 4), ["##..", "##..", "####", "####"]);
    }

    #[test]
    fn downscale_averages_boxes_and_honours_the_stride() {
        // 4x2 → 2x1 with a padded stride of 6.
        let src = [10, 20, 30, 50, 99, 99, 30, 40, 70, 90, 99, 99];
        let g = Geometry::new(4, 2, 2);
        assert_eq!((g.out_w, g.out_h), (2, 1));
        let mut acc = vec![0u16; 4];
        let mut out = vec![0f32; 2];
        box_downscale(&g, &src, 6, &mut acc, &mut out);
        assert_eq!(out, [25.0, 60.0]);
    }

    #[test]
    fn downscale_keeps_the_aspect_and_handles_uneven_boxes() {
        let g = Geometry::new(1920, 1080, 320);
        assert_eq!((g.out_w, g.out_h), (320, 180));
        let g = Geometry::new(768, 576, 320);
        assert_eq!((g.out_w, g.out_h), (320, 240));
        // Never upscales.
        let g = Geometry::new(160, 120, 320);
        assert_eq!((g.out_w, g.out_h), (160, 120));
        // 5 columns into 2: boxes of 2 and 3 columns; 3 rows into 1.
        let g = Geometry::new(5, 3, 2);
        assert_eq!(g.col_start, [0, 2, 5]);
        let src: Vec<u8> = (0..15).map(|i| i * 10).collect();
        let mut acc = vec![0u16; 5];
        let mut out = vec![0f32; g.pixels()];
        box_downscale(&g, &src, 5, &mut acc, &mut out);
        // Column 0-1 of rows 0-2: 0,10,50,60,100,110 → 55; columns 2-4: 20..140 → 80.
        assert_eq!(out.len(), 2);
        assert!((out[0] - 55.0).abs() < 1e-4 && (out[1] - 80.0).abs() < 1e-4, "{out:?}");
        // A constant 255 plane over the largest box stays 255 (no u16 overflow).
        let g = Geometry::new(4096, 2160, 8);
        assert!(g.col_start.windows(2).all(|w| w[1] - w[0] <= MAX_BOX as usize));
        assert!(g.row_start.windows(2).all(|w| w[1] - w[0] <= MAX_BOX as usize));
        let src = vec![255u8; 4096 * 2160];
        let mut acc = vec![0u16; 4096];
        let mut out = vec![0f32; g.pixels()];
        box_downscale(&g, &src, 4096, &mut acc, &mut out);
        assert!(out.iter().all(|&v| (v - 255.0).abs() < 1e-3));
    }

    #[test]
    fn downscale_matches_a_naive_box_filter() {
        for (w, h, stride) in
            [(640usize, 360usize, 640usize), (1280, 720, 1296), (1920, 1080, 1920), (768, 576, 800), (50, 30, 50)]
        {
            let src: Vec<u8> = (0..stride * h).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
            let g = Geometry::new(w as u32, h as u32, 320);
            let mut acc = vec![0u16; w];
            let mut out = vec![0f32; g.pixels()];
            box_downscale(&g, &src, stride, &mut acc, &mut out);
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    let (r0, r1, c0, c1) = (g.row_start[oy], g.row_start[oy + 1], g.col_start[ox], g.col_start[ox + 1]);
                    let sum: u32 = (r0..r1)
                        .flat_map(|r| (c0..c1).map(move |c| (r, c)))
                        .map(|(r, c)| u32::from(src[r * stride + c]))
                        .sum();
                    let naive = sum as f32 / ((r1 - r0) * (c1 - c0)) as f32;
                    let got = out[oy * g.out_w + ox];
                    assert!((got - naive).abs() < 1e-3, "{w}x{h} at ({ox},{oy}): {got} vs {naive}");
                }
            }
        }
    }

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

    #[test]
    fn validation_reports_every_bad_value() {
        let cfg = MotionConfig {
            downscale_width: 0,
            threshold: 0,
            min_area: 0.0,
            background_alpha: 1.5,
            min_frames: 0,
            hold_frames: 0,
            recalibrate_area: 2.0,
            masks: vec![vec![[0.0, 0.0], [2.0, 0.5]]],
        };
        let mut issues = Vec::new();
        let locate = |_: &str| None;
        cfg.validate(&mut Validator::new("cameras[0].source.config.motion", &mut issues, &locate));
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        for field in [
            "downscale_width",
            "threshold",
            "min_area",
            "background_alpha",
            "min_frames",
            "hold_frames",
            "recalibrate_area",
            "masks[0]",
            "masks[0][1]",
        ] {
            let full = format!("cameras[0].source.config.motion.{field}");
            assert!(paths.contains(&full.as_str()), "{full} missing from {paths:?}");
        }
        let mut issues = Vec::new();
        MotionConfig::default().validate(&mut Validator::new("m", &mut issues, &locate));
        assert!(issues.is_empty(), "{issues:?}");
    }

    #[test]
    fn config_parses_with_defaults_and_rejects_unknown_keys() {
        let cfg: MotionConfig =
            serde_json::from_value(serde_json::json!({"threshold": 30, "masks": [[[0, 0], [0.5, 0], [0.5, 0.5]]]}))
                .expect("parses");
        assert_eq!(cfg.threshold, 30);
        assert_eq!(cfg.min_area, MotionConfig::default().min_area);
        assert_eq!(cfg.masks, vec![vec![[0.0, 0.0], [0.5, 0.0], [0.5, 0.5]]]);
        assert!(serde_json::from_value::<MotionConfig>(serde_json::json!({"treshold": 30})).is_err());
    }
}
