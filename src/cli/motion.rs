//! `homesec motion FILE`: runs the motion detector over a clip and reports the
//! score timeline and the motion intervals, to tune a camera's `motion:` block.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::media::motion::{MotionConfig, MotionDetector};
use crate::media::{self, MediaError, RgbFrame};

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
    let mut grid = crate::media::IntervalSampler::new(detect_fps);
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

    let decoded = media::for_each_frame(path, &mut |frame| {
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
        let jpeg = media::encode_jpeg(&overlay, 0, OVERLAY_QUALITY)?;
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
