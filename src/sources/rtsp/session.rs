//! One RTSP stream of a camera, kept alive: connect (DESCRIBE, SETUP, PLAY)
//! with retina, hand every video frame to a [`Handler`], and reconnect when
//! anything goes wrong.
//!
//! - A first-frame deadline covers connecting and the first frame; a stream
//!   that then stops delivering frames for `frame_timeout_s` is restarted.
//! - When to set up again is [`super::reconnect`]'s: a camera that is down is
//!   probed every `probe_interval_s` and set up as soon as it answers again;
//!   wrong credentials (401/403) and unknown paths (404) are logged once,
//!   clearly, and retried every `reconnect_max_s` (±20 % jitter); repeats of
//!   the same failure log at debug.
//! - The camera's connectivity ([`Connectivity`]): a stream is up from its
//!   session's first frame, down from the session's failure.
//! - Each stream has its own retina `SessionGroup`; before reconnecting, stale
//!   sessions of the group (UDP, buggy servers) get a bounded wait for their
//!   TEARDOWN so cameras with few session slots are not exhausted.
//! - Error text leaving this module is the first line of retina's message with
//!   the password and any URL credentials scrubbed.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use retina::client::{
    PlayOptions, Session, SessionGroup, SessionOptions, SetupOptions, TcpTransportOptions, TeardownPolicy, Transport,
    UdpTransportOptions,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef, VideoFrame, VideoParameters};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::config::{RtspTransport, StreamUrl};
use super::reconnect::{self, Camera, Failure, Label, PROBE_TIMEOUT, ProbeError, Schedule};
use crate::domain::{CameraName, now_ms};
use crate::media::codec::VideoCodec;
use crate::media::mp4write::SampleEntry;
use crate::sources::connectivity::Connectivity;
use crate::sources::live::{LiveHealth, MotionFeed, Role, STABLE_SESSION};
use crate::sources::recorder::{EncodedPacket, RecorderEvent};

/// Longest wait for stale sessions' TEARDOWN before connecting again.
const STALE_WAIT_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub(super) enum StreamError {
    #[error("{message}")]
    Rtsp { message: String, status: Option<u16> },
    #[error("no video frame within {0} s of connecting")]
    FirstFrame(f64),
    #[error("no video frame for {0} s")]
    Stalled(f64),
    #[error("the camera ended the stream")]
    Ended,
    #[error("the stream has no H.264/H.265 video track (found: {0})")]
    NoVideo(String),
    #[error("unusable video parameters: {0}")]
    Params(String),
    /// A detect stream in a codec that cannot be decoded.
    #[error("{0}")]
    Undecodable(String),
    #[error("the recorder stopped")]
    RecorderGone,
}

impl StreamError {
    /// Failures that will not fix themselves soon: wait `reconnect_max_s`.
    pub(super) fn is_permanent(&self) -> bool {
        matches!(self, Self::Rtsp { status: Some(401 | 403 | 404), .. } | Self::Undecodable(_))
    }

    /// A grouping key so that a failure repeating itself is logged once.
    pub(super) fn kind(&self) -> String {
        match self {
            Self::Rtsp { status: Some(s), .. } => format!("status {s}"),
            Self::Rtsp { message, .. } => message.chars().take(60).collect(),
            Self::FirstFrame(_) => "first_frame".into(),
            Self::Stalled(_) => "stalled".into(),
            Self::Ended => "ended".into(),
            Self::NoVideo(_) => "no_video".into(),
            Self::Params(_) => "params".into(),
            Self::Undecodable(_) => "undecodable".into(),
            Self::RecorderGone => "recorder".into(),
        }
    }
}

/// Removes secrets from a message: the password, and credentials in any URL.
pub(super) fn scrub(text: &str, secret: Option<&str>) -> String {
    let mut out: String = text
        .split(' ')
        .map(|w| if w.contains("://") { crate::telemetry::redact_url(w) } else { w.to_owned() })
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(s) = secret.filter(|s| s.len() >= 3) {
        out = out.replace(s, "***");
    }
    out
}

fn rtsp_error(e: &retina::Error, url: &StreamUrl) -> StreamError {
    let full = e.to_string();
    let first = full.lines().next().unwrap_or("").trim();
    debug!(url = %url.display, error = %scrub(&full, url.secret()), "RTSP error detail");
    let status = e.status_code();
    let hint = match status {
        Some(401) => {
            "the camera rejected the credentials (401 Unauthorized): check username_env/password_env, or the \
             credentials in the URL's environment variable"
        }
        Some(403) => "the camera refused access (403 Forbidden): check the user's permissions",
        Some(404) => "the camera has no stream at this path (404 Not Found): check the URL",
        _ => "",
    };
    let message = if hint.is_empty() {
        format!("{}: {}", url.display, scrub(first, url.secret()))
    } else {
        format!("{}: {hint}; {}", url.display, scrub(first, url.secret()))
    };
    StreamError::Rtsp { message, status }
}

/// Everything one stream loop needs.
pub(super) struct StreamSpec {
    pub camera: CameraName,
    pub role: Role,
    pub url: StreamUrl,
    pub transport: RtspTransport,
    pub frame_timeout: Duration,
    pub first_frame_timeout: Duration,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    pub probe_interval: Duration,
    pub health: Arc<LiveHealth>,
    /// The camera's connectivity and outages, shared by its streams.
    pub link: Arc<Connectivity>,
}

/// Where a stream's frames go.
pub(super) enum Handler {
    /// The recorded stream: packets to the recorder, and to motion detection
    /// when there is no sub-stream.
    Main(MainHandler),
    /// The detection sub-stream: frames to motion detection only.
    Detect(DetectHandler),
}

pub(super) struct MainHandler {
    pub camera: CameraName,
    pub recorder: tokio::sync::mpsc::Sender<RecorderEvent>,
    pub motion: Option<MotionFeed>,
    clock_rate: u32,
    /// (wall ms, rtp timestamp) from the latest RTCP sender report.
    sender_report: Option<(i64, i64)>,
    /// (local wall ms, rtp timestamp) of the session's first frame.
    local_anchor: Option<(i64, i64)>,
    /// The stream cannot be decoded for motion (a codec without a decoder):
    /// frames are not fed.
    motion_unsupported: bool,
    logged_clock_offset: bool,
    /// Packets not yet handed to the recorder (see [`PacketBatch`]).
    batch: PacketBatch,
}

/// Main-stream packets on their way to the recorder, handed over together once
/// they span [`BATCH_SPAN_S`] of stream time: the recorder's thread wakes a few
/// times a second instead of once per frame. The recorder lags by as much,
/// which shortens a clip's post-roll by at most that.
#[derive(Debug, Default)]
struct PacketBatch {
    packets: Vec<EncodedPacket>,
}

/// Stream time one hand-off to the recorder spans at most.
const BATCH_SPAN_S: f64 = 0.25;

impl PacketBatch {
    /// Adds a packet; the whole batch when it is due for the recorder.
    fn push(&mut self, p: EncodedPacket, clock_rate: u32) -> Option<Vec<EncodedPacket>> {
        self.packets.push(p);
        let span = (BATCH_SPAN_S * f64::from(clock_rate)) as i64;
        let (first, last) = (self.packets.first()?.pts, self.packets.last()?.pts);
        (last - first >= span || last < first).then(|| self.take())
    }

    fn take(&mut self) -> Vec<EncodedPacket> {
        std::mem::take(&mut self.packets)
    }
}

impl MainHandler {
    pub fn new(
        camera: CameraName,
        recorder: tokio::sync::mpsc::Sender<RecorderEvent>,
        motion: Option<MotionFeed>,
    ) -> Self {
        Self {
            camera,
            recorder,
            motion,
            clock_rate: 90_000,
            sender_report: None,
            local_anchor: None,
            motion_unsupported: false,
            logged_clock_offset: false,
            batch: PacketBatch::default(),
        }
    }

    async fn send(&self, ev: RecorderEvent) -> Result<(), StreamError> {
        self.recorder.send(ev).await.map_err(|_| StreamError::RecorderGone)
    }

    /// Hands the packets still batched to the recorder.
    async fn flush(&mut self) -> Result<(), StreamError> {
        let batch = self.batch.take();
        if batch.is_empty() {
            return Ok(());
        }
        self.send(RecorderEvent::Packets(batch)).await
    }

    fn wall_ms(&mut self, ts: i64) -> i64 {
        let rate = i64::from(self.clock_rate.max(1));
        if let Some((ms, rtp)) = self.sender_report {
            return ms + (ts - rtp) * 1000 / rate;
        }
        let (ms, rtp) = *self.local_anchor.get_or_insert((now_ms(), ts));
        ms + (ts - rtp) * 1000 / rate
    }
}

pub(super) struct DetectHandler {
    pub camera: CameraName,
    pub motion: MotionFeed,
    clock_rate: u32,
}

impl DetectHandler {
    pub fn new(camera: CameraName, motion: MotionFeed) -> Self {
        Self { camera, motion, clock_rate: 90_000 }
    }
}

/// NTP (seconds since 1900, 32.32 fixed point) to unix milliseconds; `None`
/// for times before 2001 (a camera without a set clock).
fn ntp_to_unix_ms(ntp: retina::NtpTimestamp) -> Option<i64> {
    let since = ntp.0.checked_sub(retina::UNIX_EPOCH.0)?;
    let ms = (since >> 32) as i64 * 1000 + (((since & 0xffff_ffff) * 1000) >> 32) as i64;
    (ms > 978_307_200_000).then_some(ms)
}

/// Why a stream's frames cannot be decoded for motion, for the log and `/health`.
fn undecodable(codec: &str) -> String {
    format!("the stream's codec {codec} cannot be decoded for motion detection (H.264 and H.265 can)")
}

impl Handler {
    fn set_clock_rate(&mut self, rate: u32) {
        match self {
            Handler::Main(h) => h.clock_rate = rate,
            Handler::Detect(h) => h.clock_rate = rate,
        }
    }

    /// New video parameters (the first frame, or a change mid-stream). A codec
    /// that cannot be decoded is logged and kept in `health` (main stream: still
    /// recorded; detect stream: refused).
    async fn on_params(&mut self, params: &VideoParameters, health: &LiveHealth) -> Result<(), StreamError> {
        let codec = VideoCodec::from_rfc6381(params.rfc6381_codec());
        match self {
            Handler::Main(h) => {
                let entry = params
                    .mp4_sample_entry()
                    .build()
                    .map_err(|e| StreamError::Params(e.to_string()))
                    .and_then(|b| SampleEntry::from_box(b).map_err(|e| StreamError::Params(e.to_string())))?;
                let (w, hgt) = params.pixel_dimensions();
                info!(camera = %h.camera, codec = params.rfc6381_codec(), width = w, height = hgt, "recording stream parameters");
                let was_unsupported = h.motion_unsupported;
                h.motion_unsupported = codec.is_none();
                if let Some(m) = &mut h.motion {
                    match codec {
                        Some(codec) => {
                            m.set_codec(codec);
                            health.set_undecodable(Role::Main, None);
                        }
                        None => {
                            m.reset();
                            let why = undecodable(params.rfc6381_codec());
                            if !was_unsupported {
                                error!(
                                    camera = %h.camera,
                                    codec = params.rfc6381_codec(),
                                    "{why}: configure an H.264/H.265 sub-stream as detect_url_env/detect_url"
                                );
                            }
                            health.set_undecodable(Role::Main, Some(why));
                        }
                    }
                }
                let timescale = h.clock_rate;
                h.flush().await?;
                h.send(RecorderEvent::Stream { entry, timescale }).await
            }
            Handler::Detect(h) => {
                let Some(codec) = codec else {
                    // Refused: the loop logs it as an error (once), keeps it in
                    // `/health` and retries every `reconnect_max_s`.
                    return Err(StreamError::Undecodable(undecodable(params.rfc6381_codec())));
                };
                info!(camera = %h.camera, %codec, "detect stream parameters");
                h.motion.set_codec(codec);
                Ok(())
            }
        }
    }

    async fn on_frame(&mut self, frame: VideoFrame) -> Result<(), StreamError> {
        let ts = frame.timestamp().timestamp();
        let is_keyframe = frame.is_random_access_point();
        match self {
            Handler::Main(h) => {
                let wall_ms = h.wall_ms(ts);
                if !h.motion_unsupported
                    && let Some(m) = &mut h.motion
                    && m.wants(is_keyframe)
                {
                    // The recorder keeps the frame: motion gets a copy.
                    let ts_s = ts as f64 / f64::from(h.clock_rate.max(1));
                    m.offer(&h.camera, ts_s, Some(ts), is_keyframe, frame.data().to_vec());
                }
                let packet = EncodedPacket { pts: ts, wall_ms, is_keyframe, data: frame.into_data() };
                match h.batch.push(packet, h.clock_rate) {
                    Some(batch) => h.send(RecorderEvent::Packets(batch)).await,
                    None => Ok(()),
                }
            }
            Handler::Detect(h) => {
                let ts_s = ts as f64 / f64::from(h.clock_rate.max(1));
                h.motion.offer(&h.camera, ts_s, None, is_keyframe, frame.into_data());
                Ok(())
            }
        }
    }

    fn on_rtcp(&mut self, pkt: &retina::rtcp::ReceivedCompoundPacket) {
        let Handler::Main(h) = self else { return };
        let Some(rtp) = pkt.rtp_timestamp() else { return };
        let Some(Ok(Some(sr))) = pkt.pkts().next().map(|p| p.as_sender_report()) else { return };
        let Some(ms) = ntp_to_unix_ms(sr.ntp_timestamp()) else { return };
        if !h.logged_clock_offset {
            h.logged_clock_offset = true;
            let offset_s = (ms - now_ms()) as f64 / 1000.0;
            if offset_s.abs() > 60.0 {
                warn!(camera = %h.camera, offset_s, "the camera's clock is off; clips are stamped with the camera's time");
            } else {
                debug!(camera = %h.camera, offset_s, "timestamps from the camera's RTCP sender reports");
            }
        }
        h.sender_report = Some((ms, rtp.timestamp()));
    }

    /// The session ended (for any reason).
    async fn on_end(&mut self) -> Result<(), StreamError> {
        match self {
            Handler::Main(h) => {
                h.sender_report = None;
                h.local_anchor = None;
                if let Some(m) = &mut h.motion {
                    m.reset();
                }
                h.flush().await?;
                h.send(RecorderEvent::StreamEnd).await
            }
            Handler::Detect(h) => {
                h.motion.reset();
                Ok(())
            }
        }
    }
}

/// Keeps the stream running until `shutdown`; returns early only when the
/// recorder is gone. When to set up again is [`reconnect`]'s business.
pub(super) async fn supervise(spec: StreamSpec, handler: Handler, shutdown: CancellationToken) {
    let group = Arc::new(SessionGroup::default().named(format!("{}/{}", spec.camera, spec.role.as_str())));
    info!(camera = %spec.camera, stream = spec.role.as_str(), url = %spec.url.display, transport = ?spec.transport, "connecting");
    let schedule = Schedule {
        reconnect_initial: spec.reconnect_initial,
        reconnect_max: spec.reconnect_max,
        probe_interval: spec.probe_interval,
    };
    let label = Label { camera: spec.camera.clone(), stream: spec.role.as_str() };
    let mut stream = Stream { spec, handler, group, shutdown: shutdown.clone(), attempts: 0 };
    reconnect::run(&mut stream, &schedule, &label, &shutdown).await;
    debug!(camera = %label.camera, stream = label.stream, "stream loop stopped");
}

/// One stream as the reconnect rules drive it.
struct Stream {
    spec: StreamSpec,
    handler: Handler,
    group: Arc<SessionGroup>,
    shutdown: CancellationToken,
    attempts: u64,
}

impl Camera for Stream {
    async fn session(&mut self, returned: bool) -> Option<Failure> {
        let spec = &self.spec;
        // A camera that was away has most likely dropped its old sessions, and
        // retina goes on tearing them down in the background: no waiting for
        // them then (a camera short of session slots refuses, and the backoff
        // tries again).
        if !returned {
            wait_for_stale_sessions(spec, &self.group, &self.shutdown).await;
        }
        if self.shutdown.is_cancelled() {
            return None;
        }
        if self.attempts > 0 {
            spec.health.reconnected();
        }
        self.attempts += 1;
        debug!(camera = %spec.camera, stream = spec.role.as_str(), attempt = self.attempts, "setting up the session");
        let started = Instant::now();
        let mut frames = 0u64;
        let error = match play(spec, &self.group, &mut self.handler, &self.shutdown, &mut frames).await {
            // Shutdown: the recorder finishes the clip in progress once its senders are gone.
            Ok(()) => return None,
            Err(e) => e,
        };
        let ended = self.handler.on_end().await;
        if matches!(ended, Err(StreamError::RecorderGone)) || matches!(error, StreamError::RecorderGone) {
            warn!(camera = %spec.camera, "the recorder stopped; stream loop ends");
            return None;
        }
        spec.health.set_error(spec.role, Some(error.to_string()));
        spec.link.down(spec.role);
        let stable = frames > 0 && started.elapsed() >= STABLE_SESSION;
        Some(Failure { error, frames, stable })
    }

    async fn probe(&mut self) -> Result<(), ProbeError> {
        reconnect::probe(&self.spec.url.url, PROBE_TIMEOUT).await
    }
}

async fn wait_for_stale_sessions(spec: &StreamSpec, group: &SessionGroup, shutdown: &CancellationToken) {
    let stale = group.stale_sessions();
    if stale.num_sessions == 0 {
        return;
    }
    let now = tokio::time::Instant::now();
    let wait = stale.max_expires.map_or(Duration::ZERO, |e| e.saturating_duration_since(now)).min(STALE_WAIT_MAX);
    debug!(camera = %spec.camera, sessions = stale.num_sessions, wait_s = wait.as_secs_f64(), "waiting for stale RTSP sessions to be torn down");
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::timeout(wait, group.await_stale_sessions(&stale)) => {}
    }
}

/// One session: connect, then frames until an error, a timeout or shutdown (`Ok`).
async fn play(
    spec: &StreamSpec,
    group: &Arc<SessionGroup>,
    handler: &mut Handler,
    shutdown: &CancellationToken,
    frames: &mut u64,
) -> Result<(), StreamError> {
    let deadline = tokio::time::Instant::now() + spec.first_frame_timeout;
    let connect = async {
        let options = SessionOptions::default()
            .creds(spec.url.credentials.clone())
            .session_group(group.clone())
            .teardown(TeardownPolicy::Auto)
            .user_agent(format!("homesec/{}", env!("CARGO_PKG_VERSION")));
        let mut session =
            Session::describe(spec.url.url.clone(), options).await.map_err(|e| rtsp_error(&e, &spec.url))?;
        let video = session
            .streams()
            .iter()
            .position(|s| s.media() == "video" && matches!(s.encoding_name(), "h264" | "h265"))
            .ok_or_else(|| {
                let found: Vec<String> =
                    session.streams().iter().map(|s| format!("{}/{}", s.media(), s.encoding_name())).collect();
                StreamError::NoVideo(found.join(", "))
            })?;
        let clock_rate = session.streams()[video].clock_rate_hz();
        let transport = match spec.transport {
            RtspTransport::Tcp => Transport::Tcp(TcpTransportOptions::default()),
            RtspTransport::Udp => Transport::Udp(UdpTransportOptions::default()),
        };
        let format = FrameFormat {
            parameter_set_insertion: retina::codec::ParameterSetInsertion::EachKeyFrame,
            ..FrameFormat::MP4
        };
        session
            .setup(video, SetupOptions::default().transport(transport).frame_format(format))
            .await
            .map_err(|e| rtsp_error(&e, &spec.url))?;
        // No timestamp enforcement: with B-frames, presentation times step back.
        let playing = session.play(PlayOptions::default()).await.map_err(|e| rtsp_error(&e, &spec.url))?;
        let demuxed = playing.demuxed().map_err(|e| rtsp_error(&e, &spec.url))?;
        Ok::<_, StreamError>((demuxed, video, clock_rate))
    };
    let first_frame_err = || StreamError::FirstFrame(spec.first_frame_timeout.as_secs_f64());
    let (mut demuxed, video, clock_rate) = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        r = tokio::time::timeout_at(deadline, connect) => r.map_err(|_| first_frame_err())??,
    };
    debug!(camera = %spec.camera, stream = spec.role.as_str(), clock_rate, "playing");
    handler.set_clock_rate(clock_rate);
    let mut last_frame: Option<tokio::time::Instant> = None;
    loop {
        let wait_until = last_frame.map_or(deadline, |t| t + spec.frame_timeout);
        let item = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = tokio::time::timeout_at(wait_until, demuxed.next()) => r,
        };
        let item = match item {
            Err(_) if last_frame.is_none() => return Err(first_frame_err()),
            Err(_) => return Err(StreamError::Stalled(spec.frame_timeout.as_secs_f64())),
            Ok(None) => return Err(StreamError::Ended),
            Ok(Some(Err(e))) => return Err(rtsp_error(&e, &spec.url)),
            Ok(Some(Ok(item))) => item,
        };
        match item {
            CodecItem::VideoFrame(frame) if frame.stream_id() == video => {
                if last_frame.is_none() || frame.has_new_parameters() {
                    let params = match demuxed.streams()[video].parameters() {
                        Some(ParametersRef::Video(v)) => v.clone(),
                        _ => return Err(StreamError::Params("no video parameters after the first frame".into())),
                    };
                    handler.on_params(&params, &spec.health).await?;
                }
                if last_frame.is_none() {
                    info!(camera = %spec.camera, stream = spec.role.as_str(), "receiving video");
                    if let Some(outage) = spec.link.up(spec.role) {
                        let outage_s = format!("{:.1}", outage.as_secs_f64());
                        info!(camera = %spec.camera, outage_s, "camera back: every stream delivers video again");
                    }
                }
                if frame.loss() > 0 {
                    debug!(camera = %spec.camera, stream = spec.role.as_str(), lost = frame.loss(), "RTP packets lost");
                }
                last_frame = Some(tokio::time::Instant::now());
                *frames += 1;
                spec.health.frame(spec.role);
                handler.on_frame(frame).await?;
            }
            CodecItem::Rtcp(pkt) if pkt.stream_id() == video => handler.on_rtcp(&pkt),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_scrubbed() {
        let s = scrub("401 response to DESCRIBE rtsp://admin:hunter2@cam/x: hunter2 rejected", Some("hunter2"));
        assert_eq!(s, "401 response to DESCRIBE rtsp://***@cam/x: *** rejected");
        assert_eq!(scrub("a b", None), "a b");
    }

    #[test]
    fn ntp_times_convert_to_unix_ms() {
        // 2023-11-14T22:13:20Z = 1_700_000_000 s.
        let ntp = retina::NtpTimestamp(retina::UNIX_EPOCH.0 + (1_700_000_000u64 << 32) + (1u64 << 31));
        assert_eq!(ntp_to_unix_ms(ntp), Some(1_700_000_000_500));
        assert_eq!(ntp_to_unix_ms(retina::NtpTimestamp(5)), None);
        assert_eq!(ntp_to_unix_ms(retina::UNIX_EPOCH), None);
    }

    #[test]
    fn packets_reach_the_recorder_in_quarter_second_batches_in_order() {
        // 20 fps at 90 kHz: 4500 ticks a frame, a batch once 22500 are spanned.
        let mut batch = PacketBatch::default();
        let packet = |i: i64| EncodedPacket { pts: i * 4500, wall_ms: i * 50, is_keyframe: i == 0, data: vec![0; 8] };
        let handed: Vec<Vec<i64>> = (0..14)
            .filter_map(|i| batch.push(packet(i), 90_000))
            .map(|b| b.iter().map(|p| p.pts / 4500).collect())
            .collect();
        assert_eq!(handed, [vec![0, 1, 2, 3, 4, 5], vec![6, 7, 8, 9, 10, 11]]);
        assert_eq!(batch.take().len(), 2, "the rest waits for the next packet or the stream's end");
        // A timestamp jump backwards (new RTP base) hands over at once.
        assert!(batch.push(packet(100), 90_000).is_none());
        assert_eq!(batch.push(packet(3), 90_000).map(|b| b.len()), Some(2));
    }
}
