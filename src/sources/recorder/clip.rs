//! The clip in progress: opening it at a keyframe, writing packets, ending it
//! (dropped as a blip, or finished, renamed and handed over), and clip ids.

use std::path::PathBuf;

use tracing::{info, warn};

use super::objects::{ClipObjects, ObjectFrame};
use super::{EncodedPacket, Phase, Recorder, RecorderError};
use crate::domain::{Clip, ClipId};
use crate::fsutil::frames_dir;
use crate::media::{self, mp4write::Mp4Writer, mp4write::WriteOptions, mp4write::part_path};
use crate::pipeline::Sighting;

/// Why a clip ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EndReason {
    PostRoll,
    Split,
    StreamEnd,
    NewStream,
    Shutdown,
}

impl EndReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::PostRoll => "post_roll",
            Self::Split => "max_clip_s",
            Self::StreamEnd => "stream_end",
            Self::NewStream => "new_stream",
            Self::Shutdown => "shutdown",
        }
    }
}

/// The clip being written.
pub(super) struct Active {
    writer: Mp4Writer,
    clip_id: ClipId,
    pub(super) start_pts: i64,
    start_wall_ms: i64,
    objects: Option<ClipObjects>,
}

/// A finished clip, as reported to tests and logs.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedClip {
    pub clip: Clip,
    pub samples: u32,
    pub duration_s: f64,
}

impl Recorder {
    /// Opens a new clip whose first packet (a keyframe) is `packets[0]` and writes them all.
    pub(super) fn start_clip(&mut self, packets: Vec<EncodedPacket>) -> Result<(), RecorderError> {
        let Some(stream) = &self.stream else { return Ok(()) };
        let Some(first) = packets.first() else { return Ok(()) };
        let (entry, timescale) = (stream.entry.clone(), stream.timescale);
        let (start_pts, start_wall_ms) = (first.pts, first.wall_ms);
        let (clip_id, dest) = self.allocate_id(start_wall_ms)?;
        let opts = WriteOptions { journal: true, start_wall_ms: Some(start_wall_ms) };
        let writer = match Mp4Writer::create_with(&dest, entry, timescale, opts) {
            Ok(w) => w,
            Err(e) => {
                self.phase = Phase::Idle;
                return Err(e.into());
            }
        };
        info!(camera = %self.camera, clip_id = %clip_id, buffered_s = self.seconds(packets.last().map_or(0, |l| l.pts - start_pts)), "recording started");
        let objects = self.objects.clone().map(|s| ClipObjects::new(s, start_wall_ms, self.tracking.clone()));
        self.phase = Phase::Recording(Box::new(Active { writer, clip_id, start_pts, start_wall_ms, objects }));
        for p in packets {
            self.write(p)?;
        }
        Ok(())
    }

    fn seconds(&self, ticks: i64) -> f64 {
        self.stream.as_ref().map_or(0.0, |s| ticks as f64 / f64::from(s.timescale))
    }

    pub(super) fn write(&mut self, p: EncodedPacket) -> Result<(), RecorderError> {
        let Phase::Recording(active) = &mut self.phase else { return Ok(()) };
        if let Err(e) = active.writer.write_sample(p.pts, p.is_keyframe, &p.data) {
            // The writer removes its .part file when dropped.
            let clip_id = active.clip_id.clone();
            self.phase = Phase::Idle;
            self.forget_id(&clip_id);
            return Err(e.into());
        }
        Ok(())
    }

    /// Ends the clip in progress: drop it as a blip, or finish the file and hand it over.
    pub(super) fn end_clip(&mut self, reason: EndReason, end_pts: Option<i64>) -> Result<(), RecorderError> {
        let phase = std::mem::replace(&mut self.phase, Phase::Idle);
        let Phase::Recording(active) = phase else { return Ok(()) };
        let Active { writer, clip_id, start_pts: _, start_wall_ms, objects } = *active;
        let timescale = writer.timescale();
        let motion_s = self.event.map_or(0.0, |ev| (ev.last - ev.first) as f64 / f64::from(timescale));
        let continued = self.event.is_some_and(|ev| ev.continued);
        // An object confirmed live (an early alert may have gone out) is never a blip.
        let confirmed = objects.as_ref().is_some_and(ClipObjects::confirmed_any);
        if reason == EndReason::PostRoll && !continued && !confirmed && motion_s < self.cfg.min_clip_s {
            info!(
                camera = %self.camera,
                clip_id = %clip_id,
                motion_s,
                min_clip_s = self.cfg.min_clip_s,
                "motion blip: clip dropped"
            );
            writer.abort();
            self.forget_id(&clip_id);
            return Ok(());
        }
        let summary = match writer.finish(end_pts) {
            Ok(s) => s,
            Err(e) => {
                self.forget_id(&clip_id);
                return Err(e.into());
            }
        };
        let duration_ms = (summary.duration_s * 1000.0).round() as i64;
        let live = objects.and_then(ClipObjects::finish).map(|(output, frames)| {
            if !frames.is_empty()
                && let Err(e) = media::write_jpegs(&frames_dir(&summary.path), &frames)
            {
                warn!(camera = %self.camera, clip_id = %clip_id, error = %e, "cannot keep the live frames; the VLM decodes the clip");
            }
            output
        });
        let clip = Clip {
            clip_id: clip_id.clone(),
            camera: self.camera.clone(),
            local_path: summary.path.display().to_string(),
            start_ms: start_wall_ms,
            end_ms: start_wall_ms + duration_ms,
            source_backend: self.backend.into(),
        };
        info!(
            camera = %self.camera,
            clip_id = %clip_id,
            duration_s = summary.duration_s,
            samples = summary.samples,
            bytes = summary.bytes,
            motion_s,
            reason = reason.as_str(),
            live_classes = ?live.as_ref().map(|l| &l.result.detected_classes),
            "clip recorded"
        );
        if self.keep_recorded {
            self.recorded.push(RecordedClip {
                clip: clip.clone(),
                samples: summary.samples,
                duration_s: summary.duration_s,
            });
        }
        self.output.submit(clip, live)
    }

    /// A frame the live detector looked at: part of the clip being recorded
    /// (frames seen while idle belong to no clip). A newly confirmed class is
    /// reported to the output at once (the early alert).
    pub(super) fn objects_seen(&mut self, frame: ObjectFrame) -> Result<(), RecorderError> {
        let Phase::Recording(active) = &mut self.phase else { return Ok(()) };
        let Some(objects) = active.objects.as_mut() else { return Ok(()) };
        let Some(confirmed) = objects.observe(frame) else { return Ok(()) };
        info!(camera = %self.camera, clip_id = %active.clip_id, classes = ?confirmed.classes, "objects confirmed");
        let sighting = Sighting {
            clip_id: active.clip_id.clone(),
            camera: self.camera.clone(),
            classes: confirmed.classes,
            snapshot_jpeg: Some(confirmed.jpeg),
        };
        self.output.sighted(sighting)
    }

    /// `{camera}_{unix_seconds}`, then `_2`, `_3`, … while the id is taken (in the
    /// store, on disk, or by a clip of this recorder).
    fn allocate_id(&mut self, wall_ms: i64) -> Result<(ClipId, PathBuf), RecorderError> {
        let base = format!("{}_{}", self.camera, wall_ms.div_euclid(1000));
        let mut n = 1u32;
        loop {
            let id = if n == 1 { base.clone() } else { format!("{base}_{n}") };
            let dest = self.dir.join(format!("{id}.mp4"));
            let taken = self.recent_ids.contains(&id)
                || dest.exists()
                || part_path(&dest).exists()
                || self.output.is_taken(&id)?;
            if !taken {
                self.recent_ids.push_back(id.clone());
                if self.recent_ids.len() > 64 {
                    self.recent_ids.pop_front();
                }
                return Ok((ClipId(id), dest));
            }
            n += 1;
        }
    }

    fn forget_id(&mut self, id: &ClipId) {
        self.recent_ids.retain(|i| i != id.as_str());
    }
}
