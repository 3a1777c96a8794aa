//! The `motion:` config block, its validation, and the clamped values the
//! detector runs with.

use serde::{Deserialize, Serialize};

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

/// The config with out-of-range values clamped, so that a config that skipped
/// validation cannot make the detector divide by zero or overflow.
#[derive(Debug, Clone, Copy)]
pub(super) struct Params {
    pub(super) downscale_width: u32,
    pub(super) threshold: f32,
    pub(super) min_area: f32,
    pub(super) alpha: f32,
    pub(super) min_frames: u32,
    pub(super) hold_frames: u32,
    pub(super) recalibrate_area: f32,
}

impl Params {
    pub(super) fn from_config(c: &MotionConfig) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;

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
