//! Motion detection on the luma (Y) plane of decoded frames.
//!
//! Per frame: a two-pass box downscale of the luma plane to about
//! [`MotionConfig::downscale_width`] pixels wide (rows summed into a `u16` line
//! first, then columns, rounded to 8 bits), a per-pixel absolute difference
//! against a running-average background (`f32`), a threshold, and the fraction
//! of unmasked pixels that changed (the *score*). A frame counts as motion when its score reaches `min_area`;
//! motion starts after `min_frames` such frames in a row and ends after
//! `hold_frames` quiet frames in a row. A sudden change over `recalibrate_area`
//! (IR switch, lightning, auto-exposure jump) replaces the background instead of
//! reporting motion.
//!
//! Masks are polygons in normalised coordinates, rasterised once per input
//! resolution; a resolution change re-initialises the detector. After the first
//! frame of a resolution, [`MotionDetector::process`] allocates nothing.
//!
//! The `homesec motion` tuning aid (`cli/motion.rs`) runs the detector over a clip.

mod config;
mod detector;
mod downscale;
mod mask;

pub use config::MotionConfig;
pub use detector::{MotionDetector, MotionSample};
pub(crate) use mask::rasterize_polygon;
