//! The recorder: turns a camera's encoded packets plus motion verdicts into
//! finished MP4 clips, independent of where the packets come from (RTSP, USB).
//!
//! - While idle, a ring buffer keeps the last `pre_roll_s` of packets, always
//!   starting at a keyframe (plus the rest of that GOP).
//! - Motion at time T starts a clip at the newest keyframe at or before
//!   `T - pre_roll_s` (the oldest buffered keyframe when the buffer is shorter);
//!   with no keyframe buffered yet, at the next keyframe.
//! - Recording goes on until `post_roll_s` after the last motion, and ends at the
//!   next keyframe after that (so the next clip can start there), at most
//!   [`END_SLACK_S`] later.
//! - A clip reaching `max_clip_s` is split at the next keyframe; the next clip of
//!   the same event starts at that keyframe.
//! - An event whose motion spans less than `min_clip_s` (first to last motion
//!   frame) is a blip: its clip is discarded (logged), unless the event was split
//!   or cut short by the stream ending.
//! - Clips are written as `<dir>/<clip_id>.mp4.part` (with its recovery
//!   journal), fsynced, renamed, and only then handed to the [`ClipOutput`]
//!   (which commits the record and starts the pipeline).
//! - On start, a clip a crash left unfinished is recovered from its journal and
//!   handed over like any other ([`Recorder::recover_unfinished`]).
//!
//! All times are in the stream's timescale. The recorder is synchronous and
//! writes files: run it on a blocking thread ([`Recorder::run`]).

mod clip;
mod objects;
mod output;
mod preroll;
mod recover;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use tracing::{debug, error};

use crate::domain::CameraName;
use crate::filter::service::LiveSettings;
use crate::filter::tracking::{CameraTracking, Zones};
use crate::media::mp4write::{Mp4WriteError, SampleEntry};
use crate::plugin::{PluginConfig, Validator};
use clip::{Active, EndReason};
use preroll::PreRoll;

pub use clip::RecordedClip;
pub use objects::{Confirmed, ObjectFrame};
pub use output::{ClipOutput, SinkOutput};

/// Seconds past the post-roll / `max_clip_s` a clip waits for a keyframe to end at.
pub const END_SLACK_S: f64 = 4.0;

/// The `recording:` block of a camera source.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    /// Seconds of video kept from before motion starts (the clip starts at the
    /// keyframe at or before that point).
    pub pre_roll_s: f64,
    /// Seconds recording goes on after the last motion.
    pub post_roll_s: f64,
    /// Longer events are split into clips of about this length.
    pub max_clip_s: f64,
    /// Motion lasting less than this (first to last motion frame) is a blip: its
    /// clip is dropped.
    pub min_clip_s: f64,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self { pre_roll_s: 5.0, post_roll_s: 10.0, max_clip_s: 120.0, min_clip_s: 2.0 }
    }
}

impl PluginConfig for RecordingConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        let ok = |x: f64, lo: f64, hi: f64| x.is_finite() && x >= lo && x <= hi;
        v.check(ok(self.pre_roll_s, 0.0, 60.0), "pre_roll_s", "must be in [0, 60]");
        v.check(ok(self.post_roll_s, 0.0, 600.0), "post_roll_s", "must be in [0, 600]");
        v.check(ok(self.max_clip_s, 5.0, 3600.0), "max_clip_s", "must be in [5, 3600]");
        v.check(ok(self.min_clip_s, 0.0, 60.0), "min_clip_s", "must be in [0, 60]");
        if ok(self.max_clip_s, 5.0, 3600.0) && ok(self.pre_roll_s, 0.0, 60.0) {
            v.check(
                self.max_clip_s > self.pre_roll_s,
                "max_clip_s",
                format!("must be longer than pre_roll_s ({})", self.pre_roll_s),
            );
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("cannot write the clip")]
    Write(#[from] Mp4WriteError),
    #[error("cannot check clip ids")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot send the early alert of clip {clip_id}")]
    Sighting {
        clip_id: String,
        #[source]
        source: crate::store::StoreError,
    },
    #[error("cannot hand clip {clip_id} to the pipeline (it is adopted on the next start)")]
    Submit {
        clip_id: String,
        #[source]
        source: crate::store::StoreError,
    },
}

/// One encoded picture.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedPacket {
    /// Presentation time in the stream's timescale, continuous within a stream.
    pub pts: i64,
    /// Wall-clock time of this picture (unix ms): the camera's RTCP sender-report
    /// time when known, else local time.
    pub wall_ms: i64,
    pub is_keyframe: bool,
    /// Length-prefixed (4-byte) NAL units, as they go into the MP4.
    pub data: Vec<u8>,
}

/// What the recorder is fed, in order.
#[derive(Debug)]
pub enum RecorderEvent {
    /// A new stream (or new parameters): later packets use this sample entry and
    /// timescale. Ends the clip in progress.
    Stream {
        entry: SampleEntry,
        timescale: u32,
    },
    Packet(EncodedPacket),
    /// Packets in stream order, handed over together (one wake-up of the
    /// recorder's thread for several frames).
    Packets(Vec<EncodedPacket>),
    /// A motion verdict. `pts` is the analysed frame's time when it came from the
    /// recorded stream; `None` (another stream, e.g. the camera's sub-stream)
    /// means "now": the newest recorded packet's time.
    Motion {
        pts: Option<i64>,
        motion: bool,
    },
    /// The stream stopped (disconnect, timeout): the clip in progress is finished.
    StreamEnd,
    /// What the live detector saw in a frame (while recording: part of the clip).
    Objects(ObjectFrame),
}

struct StreamInfo {
    entry: SampleEntry,
    timescale: u32,
    /// Newest presentation time seen.
    now: Option<i64>,
}

impl StreamInfo {
    fn ticks(&self, s: f64) -> i64 {
        (s * f64::from(self.timescale)).round() as i64
    }
}

/// One motion episode: first and last motion frame.
#[derive(Debug, Clone, Copy)]
struct MotionEvent {
    first: i64,
    last: i64,
    /// The event's clip was split (or otherwise continued): never a blip.
    continued: bool,
}

enum Phase {
    Idle,
    /// Motion is on but no keyframe is buffered: the clip starts at the next one.
    Armed,
    Recording(Box<Active>),
}

pub struct Recorder {
    camera: CameraName,
    backend: &'static str,
    cfg: RecordingConfig,
    dir: PathBuf,
    output: Box<dyn ClipOutput>,
    stream: Option<StreamInfo>,
    ring: PreRoll,
    phase: Phase,
    event: Option<MotionEvent>,
    /// Clip ids given out by this recorder (a dropped blip's id is free again).
    recent_ids: VecDeque<String>,
    recorded: Vec<RecordedClip>,
    keep_recorded: bool,
    /// Live object detection: how objects are confirmed and summarised.
    objects: Option<LiveSettings>,
    /// The camera's zones and memory of stationary objects.
    tracking: Arc<CameraTracking>,
}

impl Recorder {
    /// A recorder writing into `dir` (`<data_dir>/recordings/<camera>`) and
    /// naming clips `{camera}_{unix_seconds}`; `backend` goes into each clip.
    pub fn new(
        camera: CameraName,
        backend: &'static str,
        cfg: RecordingConfig,
        dir: PathBuf,
        output: Box<dyn ClipOutput>,
    ) -> Self {
        Self {
            tracking: CameraTracking::new(camera.clone(), Zones::default()),
            camera,
            backend,
            cfg,
            dir,
            output,
            stream: None,
            ring: PreRoll::default(),
            phase: Phase::Idle,
            event: None,
            recent_ids: VecDeque::new(),
            recorded: Vec::new(),
            keep_recorded: false,
            objects: None,
        }
    }

    /// Clips summarise what the live detector saw ([`RecorderEvent::Objects`]),
    /// judged with the camera's zones and memory of stationary objects
    /// (`tracking`), report confirmed objects that are a reason to alert to the
    /// output at once, and hand over their filter result and VLM frames.
    pub fn with_objects(mut self, settings: LiveSettings, tracking: Arc<CameraTracking>) -> Self {
        self.objects = Some(settings);
        self.tracking = tracking;
        self
    }

    /// Keeps a list of the clips recorded (for tests and tools).
    pub fn keep_recorded(mut self) -> Self {
        self.keep_recorded = true;
        self
    }

    pub fn recorded(&self) -> &[RecordedClip] {
        &self.recorded
    }

    pub fn is_recording(&self) -> bool {
        matches!(self.phase, Phase::Recording(_))
    }

    /// Seconds of video in the pre-roll buffer.
    pub fn buffered_s(&self) -> f64 {
        match (&self.stream, self.ring.span()) {
            (Some(s), Some(span)) => span as f64 / f64::from(s.timescale),
            _ => 0.0,
        }
    }

    /// Feeds events from `rx` until every sender is gone, then finishes the clip
    /// in progress. Blocking: run it on a blocking thread. `on_error` sees every
    /// failure (already logged).
    pub fn run(
        mut self,
        mut rx: tokio::sync::mpsc::Receiver<RecorderEvent>,
        mut on_error: impl FnMut(&RecorderError) + Send,
    ) {
        if let Err(e) = self.recover_unfinished() {
            on_error(&e);
        }
        while let Some(ev) = rx.blocking_recv() {
            if let Err(e) = self.handle(ev) {
                on_error(&e);
            }
        }
        if let Err(e) = self.shutdown() {
            on_error(&e);
        }
    }

    /// Processes one event. Errors are logged here too; the recorder stays usable.
    pub fn handle(&mut self, ev: RecorderEvent) -> Result<(), RecorderError> {
        let res = match ev {
            RecorderEvent::Stream { entry, timescale } => {
                let r = self.end_clip(EndReason::NewStream, None);
                self.reset_stream();
                self.stream = Some(StreamInfo { entry, timescale: timescale.max(1), now: None });
                r
            }
            RecorderEvent::Packet(p) => self.packet(p),
            // Every packet is recorded; the first error is the result.
            RecorderEvent::Packets(ps) => ps.into_iter().map(|p| self.packet(p)).fold(Ok(()), Result::and),
            RecorderEvent::Motion { pts, motion } => self.motion(pts, motion),
            RecorderEvent::StreamEnd => {
                let r = self.end_clip(EndReason::StreamEnd, None);
                self.reset_stream();
                r
            }
            RecorderEvent::Objects(frame) => self.objects_seen(frame),
        };
        if let Err(e) = &res {
            error!(camera = %self.camera, error = %crate::telemetry::chain(e), "recording failed");
        }
        res
    }

    /// Finishes the clip in progress (daemon shutdown).
    pub fn shutdown(&mut self) -> Result<(), RecorderError> {
        let r = self.end_clip(EndReason::Shutdown, None);
        self.reset_stream();
        r
    }

    fn reset_stream(&mut self) {
        self.stream = None;
        self.ring.clear();
        self.event = None;
        self.phase = Phase::Idle;
    }

    fn motion(&mut self, pts: Option<i64>, motion: bool) -> Result<(), RecorderError> {
        let Some(stream) = &self.stream else { return Ok(()) };
        let Some(now) = stream.now else { return Ok(()) };
        if !motion {
            return Ok(());
        }
        let at = pts.unwrap_or(now).min(now);
        match &mut self.event {
            Some(ev) => ev.last = ev.last.max(at),
            None => {
                debug!(camera = %self.camera, "motion started");
                self.event = Some(MotionEvent { first: at, last: at, continued: false });
            }
        }
        if matches!(self.phase, Phase::Idle) {
            self.start_from_ring(at)?;
        }
        Ok(())
    }

    fn packet(&mut self, p: EncodedPacket) -> Result<(), RecorderError> {
        let Some(stream) = &mut self.stream else { return Ok(()) };
        let now = stream.now.map_or(p.pts, |n| n.max(p.pts));
        stream.now = Some(now);
        let post_roll = stream.ticks(self.cfg.post_roll_s);
        let max_clip = stream.ticks(self.cfg.max_clip_s);
        let slack = stream.ticks(END_SLACK_S);

        let motion_over = self.event.is_none_or(|ev| now >= ev.last + post_roll);
        match &self.phase {
            Phase::Recording(active) => {
                let length = p.pts - active.start_pts;
                let over_by = self.event.map_or(i64::MAX, |ev| now - (ev.last + post_roll));
                if motion_over && (p.is_keyframe || over_by >= slack) {
                    self.end_clip(EndReason::PostRoll, Some(p.pts))?;
                    self.event = None;
                    self.buffer(p);
                    return Ok(());
                }
                if length >= max_clip && p.is_keyframe {
                    self.end_clip(EndReason::Split, Some(p.pts))?;
                    if let Some(ev) = &mut self.event {
                        ev.continued = true;
                    }
                    return self.start_clip(vec![p]);
                }
                if length >= max_clip + slack {
                    // No keyframe came: split here, continue at the next keyframe.
                    self.end_clip(EndReason::Split, Some(p.pts))?;
                    if let Some(ev) = &mut self.event {
                        ev.continued = true;
                    }
                    self.phase = Phase::Armed;
                    return Ok(());
                }
                self.write(p)
            }
            Phase::Armed => {
                if motion_over {
                    debug!(camera = %self.camera, "motion ended before a keyframe arrived; nothing recorded");
                    self.event = None;
                    self.phase = Phase::Idle;
                    self.buffer(p);
                    Ok(())
                } else if p.is_keyframe {
                    self.start_clip(vec![p])
                } else {
                    Ok(())
                }
            }
            Phase::Idle => {
                self.buffer(p);
                Ok(())
            }
        }
    }

    /// Adds a packet to the pre-roll buffer, which keeps from the newest
    /// keyframe at or before `now - pre_roll_s`.
    fn buffer(&mut self, p: EncodedPacket) {
        let Some(stream) = &self.stream else { return };
        let keep_from = stream.now.unwrap_or(p.pts) - stream.ticks(self.cfg.pre_roll_s);
        self.ring.push(p, keep_from, &self.camera);
    }

    /// Motion at `at` while idle: start at the newest buffered keyframe at or
    /// before `at - pre_roll_s` (the oldest one when the buffer is shorter).
    fn start_from_ring(&mut self, at: i64) -> Result<(), RecorderError> {
        let Some(stream) = &self.stream else { return Ok(()) };
        match self.ring.take_from(at - stream.ticks(self.cfg.pre_roll_s)) {
            Some(packets) => self.start_clip(packets),
            None => {
                self.phase = Phase::Armed;
                Ok(())
            }
        }
    }

    /// The recordings directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::domain::Clip;
    use crate::media::mp4write::part_path;

    const TS: i64 = 1000; // timescale: milliseconds
    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80, 0xbf, 0xe5, 0x84];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
    const WALL0: i64 = 1_700_000_000_000;

    #[derive(Clone, Default)]
    struct Fake {
        taken: Arc<Mutex<HashSet<String>>>,
        clips: Arc<Mutex<Vec<Clip>>>,
        live: Arc<Mutex<Vec<Option<crate::filter::FilterOutput>>>>,
        sightings: Arc<Mutex<Vec<crate::pipeline::Sighting>>>,
    }

    impl ClipOutput for Fake {
        fn is_taken(&mut self, id: &str) -> Result<bool, RecorderError> {
            Ok(self.taken.lock().unwrap().contains(id))
        }
        fn submit(&mut self, clip: Clip, live: Option<crate::filter::FilterOutput>) -> Result<(), RecorderError> {
            assert!(Path::new(&clip.local_path).is_file(), "submitted before the file is complete");
            assert!(!part_path(Path::new(&clip.local_path)).exists());
            self.taken.lock().unwrap().insert(clip.clip_id.to_string());
            self.clips.lock().unwrap().push(clip);
            self.live.lock().unwrap().push(live);
            Ok(())
        }
        fn sighted(&mut self, sighting: crate::pipeline::Sighting) -> Result<(), RecorderError> {
            self.sightings.lock().unwrap().push(sighting);
            Ok(())
        }
    }

    struct Rig {
        rec: Recorder,
        out: Fake,
        _dir: tempfile::TempDir,
        /// Next frame number; 10 fps, keyframe every `gop` frames.
        frame: i64,
        gop: i64,
    }

    fn rig(cfg: RecordingConfig, gop: i64) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let out = Fake::default();
        let mut rec =
            Recorder::new("porch".into(), "rtsp", cfg, dir.path().join("porch"), Box::new(out.clone())).keep_recorded();
        let entry = SampleEntry::avc1_from_parameter_sets(SPS, PPS, 320, 240).unwrap();
        rec.handle(RecorderEvent::Stream { entry, timescale: TS as u32 }).unwrap();
        Rig { rec, out, _dir: dir, frame: 0, gop }
    }

    fn cfg(pre: f64, post: f64, max: f64, min: f64) -> RecordingConfig {
        RecordingConfig { pre_roll_s: pre, post_roll_s: post, max_clip_s: max, min_clip_s: min }
    }

    impl Rig {
        /// Plays `seconds` of 10 fps video; `motion(t)` says whether a frame at t (s) shows motion.
        fn play(&mut self, seconds: f64, motion: impl Fn(f64) -> bool) {
            let end = self.frame + (seconds * 10.0).round() as i64;
            while self.frame < end {
                let pts = self.frame * 100;
                let p = EncodedPacket {
                    pts,
                    wall_ms: WALL0 + pts,
                    is_keyframe: self.frame % self.gop == 0,
                    data: vec![0, 0, 0, 2, 0x65, self.frame as u8],
                };
                self.rec.handle(RecorderEvent::Packet(p)).unwrap();
                let t = pts as f64 / 1000.0;
                self.rec.handle(RecorderEvent::Motion { pts: Some(pts), motion: motion(t) }).unwrap();
                self.frame += 1;
            }
        }

        fn clips(&self) -> Vec<RecordedClip> {
            self.rec.recorded().to_vec()
        }

        /// (start, end) in seconds from the stream start, per recorded clip.
        fn spans(&self) -> Vec<(f64, f64)> {
            self.clips()
                .iter()
                .map(|c| ((c.clip.start_ms - WALL0) as f64 / 1000.0, (c.clip.end_ms - WALL0) as f64 / 1000.0))
                .collect()
        }
    }

    fn approx(a: (f64, f64), b: (f64, f64)) -> bool {
        (a.0 - b.0).abs() < 1e-6 && (a.1 - b.1).abs() < 1e-6
    }

    #[test]
    fn pre_roll_starts_at_a_keyframe_and_post_roll_ends_at_one() {
        // Keyframes every 2 s; motion from 10.0 to 13.0 s; pre 5 s, post 4 s.
        let mut r = rig(cfg(5.0, 4.0, 120.0, 1.0), 20);
        r.play(30.0, |t| (10.0..=13.0).contains(&t));
        let spans = r.spans();
        assert_eq!(spans.len(), 1, "{spans:?}");
        // Newest keyframe at or before 10 - 5 = 5 s is 4 s; post-roll until 17 s, next keyframe 18 s.
        assert!(approx(spans[0], (4.0, 18.0)), "{spans:?}");
        assert_eq!(r.clips()[0].samples, 140);
        let c = &r.out.clips.lock().unwrap()[0];
        assert_eq!(c.clip_id.as_str(), format!("porch_{}", (WALL0 + 4000) / 1000));
        assert_eq!(c.source_backend, "rtsp");
        let info = crate::media::probe(Path::new(&c.local_path)).unwrap();
        assert!((info.duration_s - 14.0).abs() < 1e-6, "{info:?}");
        assert_eq!((info.width, info.height, info.frame_count), (320, 240, 140));
    }

    #[test]
    fn a_short_buffer_starts_at_its_oldest_keyframe() {
        let mut r = rig(cfg(5.0, 2.0, 120.0, 0.0), 10);
        r.play(10.0, |t| (2.0..=5.0).contains(&t));
        let spans = r.spans();
        assert_eq!(spans.len(), 1);
        assert!(approx(spans[0], (0.0, 7.0)), "{spans:?}");
    }

    #[test]
    fn motion_during_post_roll_extends_the_clip() {
        let mut r = rig(cfg(1.0, 3.0, 120.0, 0.0), 10);
        r.play(30.0, |t| (5.0..=6.0).contains(&t) || (8.0..=9.0).contains(&t));
        let spans = r.spans();
        assert_eq!(spans.len(), 1, "{spans:?}");
        // Keyframe at or before 4 s is 4 s; last motion 9 s + 3 s = 12 s: a keyframe.
        assert!(approx(spans[0], (4.0, 12.0)), "{spans:?}");
    }

    #[test]
    fn long_events_split_at_keyframes() {
        let mut r = rig(cfg(2.0, 2.0, 10.0, 0.0), 20);
        r.play(40.0, |t| (4.0..=27.0).contains(&t));
        let spans = r.spans();
        // Starts at 2 s; splits at the first keyframe >= 10 s later (12, 22), ends at the keyframe after 29 s (30).
        assert_eq!(spans.len(), 3, "{spans:?}");
        assert!(approx(spans[0], (2.0, 12.0)), "{spans:?}");
        assert!(approx(spans[1], (12.0, 22.0)), "{spans:?}");
        assert!(approx(spans[2], (22.0, 30.0)), "{spans:?}");
        let ids: HashSet<_> = r.clips().iter().map(|c| c.clip.clip_id.clone()).collect();
        assert_eq!(ids.len(), 3);
    }

    fn person_seen(ms: i64) -> RecorderEvent {
        let jpeg = crate::media::encode_jpeg(
            &crate::media::RgbFrame { ts_s: 0.0, width: 8, height: 8, data: vec![90; 8 * 8 * 3] },
            0,
            80,
        )
        .unwrap();
        RecorderEvent::Objects(ObjectFrame {
            wall_ms: WALL0 + ms,
            width: 8,
            height: 8,
            // A walking person: the motion detector saw change all over the box.
            motion: Some(crate::filter::tracking::MotionMask { width: 8, height: 8, changed: vec![1; 64] }),
            detections: vec![crate::domain::Detection::new("person", 0.8, [1.0, 1.0, 4.0, 6.0], 0.0)],
            jpeg,
        })
    }

    #[test]
    fn objects_seen_while_recording_give_one_sighting_and_the_clips_live_result_and_frames() {
        let mut r = rig(cfg(2.0, 2.0, 60.0, 2.0), 10);
        let settings = LiveSettings { model: "m".into(), confirm_frames: 2, confirm_window_s: 1.0, vlm_frames: 2 };
        r.rec.objects = Some(settings);
        r.play(5.0, |t| t >= 4.0);
        for ms in [4_100, 4_600, 5_100] {
            r.rec.handle(person_seen(ms)).unwrap();
        }
        let sightings = r.out.sightings.lock().unwrap().clone();
        assert_eq!(sightings.len(), 1, "confirmed once: {sightings:?}");
        assert_eq!(sightings[0].classes, ["person"]);
        r.play(10.0, |t| t < 8.0);
        let clips = r.out.clips.lock().unwrap().clone();
        assert_eq!(clips.len(), 1);
        assert_eq!(sightings[0].clip_id, clips[0].clip_id, "the sighting names the clip being recorded");
        let live = r.out.live.lock().unwrap()[0].clone().expect("a live result");
        assert_eq!(live.result.detected_classes, ["person"]);
        assert!(live.snapshot_jpeg.is_some());
        let frames = crate::media::read_jpegs(&crate::fsutil::frames_dir(Path::new(&clips[0].local_path))).unwrap();
        assert_eq!(frames.len(), 2, "the VLM's frames are kept beside the clip");

        // Objects seen while idle belong to no clip.
        r.rec.handle(person_seen(20_000)).unwrap();
        assert_eq!(r.out.sightings.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_short_motion_with_a_confirmed_person_is_not_a_blip() {
        let mut r = rig(cfg(2.0, 2.0, 60.0, 2.0), 10);
        r.rec.objects =
            Some(LiveSettings { model: "m".into(), confirm_frames: 2, confirm_window_s: 1.0, vlm_frames: 0 });
        r.play(5.2, |t| (5.0..=5.5).contains(&t));
        r.rec.handle(person_seen(5_100)).unwrap();
        r.rec.handle(person_seen(5_400)).unwrap();
        r.play(15.0, |t| (5.0..=5.5).contains(&t));
        assert_eq!(r.spans().len(), 1, "kept: an early alert may have gone out for it");
        assert!(r.out.live.lock().unwrap()[0].is_some());
    }

    #[test]
    fn blips_are_dropped_and_leave_no_file() {
        let mut r = rig(cfg(2.0, 2.0, 60.0, 2.0), 10);
        r.play(20.0, |t| (5.0..=5.5).contains(&t));
        assert!(r.clips().is_empty());
        assert!(r.out.clips.lock().unwrap().is_empty());
        let left: Vec<_> = std::fs::read_dir(r.rec.dir()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        // A real event afterwards is recorded.
        r.play(20.0, |t| (25.0..=30.0).contains(&t));
        assert_eq!(r.clips().len(), 1);
    }

    #[test]
    fn the_stream_ending_finishes_the_clip_in_progress() {
        let mut r = rig(cfg(1.0, 10.0, 60.0, 5.0), 10);
        r.play(6.0, |t| t >= 4.0);
        assert!(r.rec.is_recording());
        r.rec.handle(RecorderEvent::StreamEnd).unwrap();
        let spans = r.spans();
        assert_eq!(spans.len(), 1, "cut short, not a blip: {spans:?}");
        assert!(approx(spans[0], (3.0, 6.0)), "{spans:?}");
        // Packets without a stream are ignored.
        r.play(2.0, |_| true);
        assert_eq!(r.clips().len(), 1);
    }

    #[test]
    fn colliding_ids_get_suffixes() {
        let mut r = rig(cfg(0.0, 0.5, 60.0, 0.0), 5);
        let base = format!("porch_{}", WALL0 / 1000);
        r.out.taken.lock().unwrap().insert(base.clone());
        // Two clips starting within the same wall-clock second as a taken id.
        r.play(0.2, |_| true);
        r.rec.handle(RecorderEvent::StreamEnd).unwrap();
        let entry = SampleEntry::avc1_from_parameter_sets(SPS, PPS, 320, 240).unwrap();
        r.rec.handle(RecorderEvent::Stream { entry, timescale: TS as u32 }).unwrap();
        r.frame = 0;
        r.play(0.2, |_| true);
        r.rec.handle(RecorderEvent::StreamEnd).unwrap();
        let ids: Vec<String> = r.clips().iter().map(|c| c.clip.clip_id.to_string()).collect();
        assert_eq!(ids, vec![format!("{base}_2"), format!("{base}_3")]);
    }

    #[test]
    fn motion_before_any_keyframe_waits_for_one() {
        let mut r = rig(cfg(5.0, 1.0, 60.0, 0.0), 10);
        r.frame = 3; // the stream starts mid-GOP
        r.play(0.5, |_| true);
        assert!(!r.rec.is_recording());
        r.play(3.0, |_| true);
        assert!(r.rec.is_recording());
        r.rec.handle(RecorderEvent::StreamEnd).unwrap();
        let spans = r.spans();
        assert!(approx(spans[0], (1.0, 3.8)), "{spans:?}");
    }

    #[test]
    fn sub_stream_motion_uses_the_newest_packet_time() {
        let mut r = rig(cfg(2.0, 2.0, 60.0, 0.0), 10);
        for i in 0..100i64 {
            let p = EncodedPacket {
                pts: i * 100,
                wall_ms: WALL0 + i * 100,
                is_keyframe: i % 10 == 0,
                data: vec![0, 0, 0, 1, 0x65],
            };
            r.rec.handle(RecorderEvent::Packet(p)).unwrap();
            r.rec.handle(RecorderEvent::Motion { pts: None, motion: (50..60).contains(&i) }).unwrap();
        }
        let spans = r.spans();
        assert_eq!(spans.len(), 1, "{spans:?}");
        // Motion at 5.0 s - 2 s: keyframe at 3 s; last motion 5.9 s + 2 = 7.9 s: keyframe at 8 s.
        assert!(approx(spans[0], (3.0, 8.0)), "{spans:?}");
    }

    #[test]
    fn a_clip_cut_short_by_a_crash_is_recovered_and_handed_over_at_start() {
        let mut r = rig(cfg(1.0, 10.0, 60.0, 0.0), 20);
        r.play(6.0, |t| t >= 2.0);
        assert!(r.rec.is_recording());
        let Rig { rec, _dir: dir, .. } = r;
        let camera_dir = rec.dir().to_path_buf();
        // The daemon dies: no drop, no finish.
        std::mem::forget(rec);
        let id = format!("porch_{}", WALL0 / 1000);
        assert!(part_path(&camera_dir.join(format!("{id}.mp4"))).exists());

        let out = Fake::default();
        let mut rec =
            Recorder::new("porch".into(), "rtsp", cfg(1.0, 10.0, 60.0, 0.0), camera_dir.clone(), Box::new(out.clone()));
        assert_eq!(rec.recover_unfinished().unwrap(), 1);
        let clips = out.clips.lock().unwrap().clone();
        assert_eq!(clips.len(), 1);
        let c = &clips[0];
        // Journaled: the keyframes at 0, 2 and 4 s and once a second between
        // them; the last batch ended at 5.1 s.
        assert_eq!((c.clip_id.as_str(), c.camera.as_str(), c.source_backend.as_str()), (id.as_str(), "porch", "rtsp"));
        assert_eq!((c.start_ms, c.end_ms), (WALL0, WALL0 + 5200));
        assert_eq!(crate::media::probe(Path::new(&c.local_path)).unwrap().frame_count, 52);
        let left: Vec<_> = std::fs::read_dir(&camera_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from(format!("{id}.mp4"))]);
        drop(dir);
    }

    #[test]
    fn a_recovered_clip_whose_id_is_recorded_already_is_only_completed() {
        let mut r = rig(cfg(1.0, 10.0, 60.0, 0.0), 20);
        r.play(3.0, |_| true);
        let Rig { rec, _dir: dir, .. } = r;
        let camera_dir = rec.dir().to_path_buf();
        std::mem::forget(rec);
        let id = format!("porch_{}", WALL0 / 1000);
        // A stray journal of a clip finished long ago goes too.
        let stray = camera_dir.join("porch_1.mp4.part.idx");
        std::fs::write(&stray, b"x").unwrap();

        let out = Fake::default();
        out.taken.lock().unwrap().insert(id.clone());
        let mut rec =
            Recorder::new("porch".into(), "rtsp", cfg(1.0, 10.0, 60.0, 0.0), camera_dir.clone(), Box::new(out.clone()));
        assert_eq!(rec.recover_unfinished().unwrap(), 1);
        assert!(out.clips.lock().unwrap().is_empty());
        assert!(camera_dir.join(format!("{id}.mp4")).is_file());
        assert!(!stray.exists());
        drop(dir);
    }

    #[test]
    fn config_validation() {
        let mut issues = Vec::new();
        let locate = |_: &str| None;
        let mut v = Validator::new("recording", &mut issues, &locate);
        RecordingConfig::default().validate(&mut v);
        cfg(-1.0, 0.0, 3.0, 0.0).validate(&mut v);
        assert_eq!(issues.len(), 2, "{issues:?}");
        let parsed: RecordingConfig = serde_json::from_value(serde_json::json!({"pre_roll_s": 3})).unwrap();
        assert_eq!(parsed, RecordingConfig { pre_roll_s: 3.0, ..Default::default() });
        assert!(serde_json::from_value::<RecordingConfig>(serde_json::json!({"preroll": 3})).is_err());
    }
}
