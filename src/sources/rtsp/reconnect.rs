//! When a stream's next session is set up: the reconnect rules of one RTSP
//! stream, apart from the RTSP itself ([`Camera`] is the seam).
//!
//! - A stream that failed is not set up again blindly. While it is down the
//!   camera is probed every `probe_interval_s` ([`probe`]: a TCP connection and
//!   an RTSP `OPTIONS`, a few hundred bytes), and the full set-up (DESCRIBE,
//!   SETUP, PLAY) follows only a probe that was answered:
//!   - at once when the camera answers after a probe it did not answer: it
//!     came back, and video resumes within about one probe interval however
//!     long it was away;
//!   - otherwise when the backoff allows: set-ups that fail while the camera
//!     answers wait `reconnect_initial_s`, doubling up to `reconnect_max_s`
//!     (±20 % jitter), so a camera that answers but cannot stream is not hammered.
//! - Wrong credentials, refused access, an unknown path (401/403/404) and an
//!   undecodable detect stream are not fixed by the camera coming back: the
//!   next set-up waits `reconnect_max_s`, without probing.
//! - A session that delivered frames for 30 s, and a camera that came back,
//!   start the backoff over.
//!
//! Timers are tokio's, so the unit tests run the rules on paused time.

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use url::{Host, Url};

use super::session::StreamError;
use crate::backoff::Backoff;
use crate::domain::CameraName;
use crate::sources::live::OutageLog;

/// RTSP's default port.
const RTSP_PORT: u16 = 554;
/// How long a probe waits for the camera's reply.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A stream's session that ended other than by shutdown.
#[derive(Debug)]
pub(super) struct Failure {
    pub error: StreamError,
    /// Frames the session delivered.
    pub frames: u64,
    /// It delivered frames long enough to count as stable.
    pub stable: bool,
}

/// What the rules drive: one stream of a camera.
pub(super) trait Camera {
    /// Sets up a session and plays it until it fails (`Some`), or until
    /// shutdown or the recorder's end (`None`: the loop ends). `returned`:
    /// the camera has just come back after not answering.
    fn session(&mut self, returned: bool) -> impl Future<Output = Option<Failure>> + Send;

    /// Whether the camera answers now ([`probe`]).
    fn probe(&mut self) -> impl Future<Output = Result<(), ProbeError>> + Send;
}

/// The rules' settings.
#[derive(Debug, Clone)]
pub(super) struct Schedule {
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    pub probe_interval: Duration,
}

/// Names the stream in the log.
#[derive(Debug, Clone)]
pub(super) struct Label {
    pub camera: CameraName,
    pub stream: &'static str,
}

/// Keeps `camera` streaming until `shutdown` (or until a session says to stop).
pub(super) async fn run(camera: &mut impl Camera, schedule: &Schedule, label: &Label, shutdown: &CancellationToken) {
    let mut backoff = Backoff::new(schedule.reconnect_initial, schedule.reconnect_max);
    let mut outages = OutageLog::default();
    let mut returned = false;
    loop {
        let Some(failure) = camera.session(returned).await else { return };
        if failure.stable {
            backoff.reset();
        }
        let Failure { error, frames, stable } = failure;
        let news = outages.is_news(&error.kind(), stable);
        let (camera_name, stream) = (&label.camera, label.stream);
        if error.is_permanent() {
            let delay = backoff.max_delay();
            if news {
                error!(camera = %camera_name, stream, error = %error, retry_in_s = delay.as_secs_f64(), "camera stream unavailable");
            } else {
                debug!(camera = %camera_name, stream, error = %error, retry_in_s = delay.as_secs_f64(), "camera stream still unavailable");
            }
            if !sleep(delay, shutdown).await {
                return;
            }
            returned = false;
            continue;
        }
        let delay = backoff.next_delay();
        let probe_every_s = schedule.probe_interval.as_secs_f64();
        if news {
            warn!(camera = %camera_name, stream, error = %error, frames, probe_every_s, "camera stream lost; reconnecting as soon as the camera answers");
        } else {
            debug!(camera = %camera_name, stream, error = %error, frames, "camera stream still unavailable");
        }
        match wait_for_answer(camera, Instant::now() + delay, schedule.probe_interval, label, shutdown).await {
            Some(came_back) => returned = came_back,
            None => return,
        }
        if returned {
            backoff.reset();
        }
    }
}

/// Probes every `interval` until the camera answers and a set-up is due:
/// at once after it did not answer (`Some(true)`: it came back), else from
/// `not_before` on (`Some(false)`). `None` on shutdown.
async fn wait_for_answer(
    camera: &mut impl Camera,
    not_before: Instant,
    interval: Duration,
    label: &Label,
    shutdown: &CancellationToken,
) -> Option<bool> {
    let mut away_since: Option<Instant> = None;
    loop {
        let started = Instant::now();
        let probed = tokio::select! {
            _ = shutdown.cancelled() => return None,
            p = camera.probe() => p,
        };
        let now = Instant::now();
        let answered = probed.is_ok();
        match (answered, away_since) {
            (true, Some(since)) => {
                let away_s = format!("{:.1}", now.duration_since(since).as_secs_f64());
                info!(camera = %label.camera, stream = label.stream, away_s, "camera answers again; reconnecting");
                return Some(true);
            }
            (true, None) if now >= not_before => return Some(false),
            (true, None) => {}
            (false, None) => {
                away_since = Some(started);
                let why = probed.err().map(|e| crate::telemetry::chain(&e)).unwrap_or_default();
                debug!(camera = %label.camera, stream = label.stream, probe = %why, probe_every_s = interval.as_secs_f64(), "camera does not answer; probing");
            }
            (false, Some(_)) => {}
        }
        let next = started + interval;
        let wake = if answered { next.min(not_before) } else { next };
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// Sleeps `d`; false when shutdown came first.
async fn sleep(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

#[derive(Debug, thiserror::Error)]
pub(super) enum ProbeError {
    #[error("the URL has no host")]
    NoHost,
    #[error("cannot connect")]
    Connect(#[source] std::io::Error),
    #[error("cannot send OPTIONS")]
    Send(#[source] std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Whether the RTSP server at `url`'s host and port answers: a TCP connection,
/// then an `OPTIONS` request (no credentials) that gets any reply within
/// `timeout`. Any reply counts, even 401 or a closed connection: something
/// listens, and the set-up will tell what is wrong. A camera that accepts the
/// connection but says nothing (a frozen one) does not answer.
pub(super) async fn probe(url: &Url, timeout: Duration) -> Result<(), ProbeError> {
    let port = url.port().unwrap_or(RTSP_PORT);
    let attempt = async {
        let mut conn = match url.host() {
            Some(Host::Domain(d)) => TcpStream::connect((d, port)).await,
            Some(Host::Ipv4(ip)) => TcpStream::connect((ip, port)).await,
            Some(Host::Ipv6(ip)) => TcpStream::connect((ip, port)).await,
            None => return Err(ProbeError::NoHost),
        }
        .map_err(ProbeError::Connect)?;
        let request =
            format!("OPTIONS {url} RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: homesec/{}\r\n\r\n", env!("CARGO_PKG_VERSION"));
        conn.write_all(request.as_bytes()).await.map_err(ProbeError::Send)?;
        let mut reply = [0u8; 16];
        // A reply, an orderly close, or a reset: each is an answer.
        let _ = conn.read(&mut reply).await;
        Ok(())
    };
    tokio::time::timeout(timeout, attempt).await.unwrap_or(Err(ProbeError::Timeout(timeout)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted camera on paused time: it answers outside `away` (seconds
    /// from the test's start); a session set up while it answers plays until it
    /// goes away, or fails at once with `refuses` (a status).
    struct FakeCamera {
        t0: Instant,
        away: Vec<(f64, f64)>,
        refuses: Option<u16>,
        /// Times (s) of set-ups and probes, and whether each set-up followed a return.
        setups: Vec<(f64, bool)>,
        probes: Vec<f64>,
        /// Stop after this many set-ups.
        max_setups: usize,
    }

    impl FakeCamera {
        fn new(away: &[(f64, f64)], refuses: Option<u16>, max_setups: usize) -> Self {
            Self {
                t0: Instant::now(),
                away: away.to_vec(),
                refuses,
                setups: Vec::new(),
                probes: Vec::new(),
                max_setups,
            }
        }

        fn now_s(&self) -> f64 {
            self.t0.elapsed().as_secs_f64()
        }

        fn answers(&self, t: f64) -> bool {
            !self.away.iter().any(|(from, to)| t >= *from && t < *to)
        }

        fn setup_times(&self) -> Vec<f64> {
            self.setups.iter().map(|(t, _)| *t).collect()
        }
    }

    fn unreachable() -> StreamError {
        StreamError::Rtsp { message: "Unable to connect to RTSP server: Connection refused".into(), status: None }
    }

    impl Camera for FakeCamera {
        async fn session(&mut self, returned: bool) -> Option<Failure> {
            let t = self.now_s();
            if self.setups.len() == self.max_setups {
                return None;
            }
            self.setups.push((t, returned));
            if !self.answers(t) {
                return Some(Failure { error: unreachable(), frames: 0, stable: false });
            }
            if let Some(status) = self.refuses {
                let error =
                    StreamError::Rtsp { message: format!("{status} response to DESCRIBE"), status: Some(status) };
                return Some(Failure { error, frames: 0, stable: false });
            }
            // Plays until the camera goes away.
            let gone = self.away.iter().map(|(from, _)| *from).find(|from| *from > t).unwrap_or(1e9);
            tokio::time::sleep(Duration::from_secs_f64(gone - t)).await;
            Some(Failure { error: StreamError::Ended, frames: 100, stable: gone - t >= 30.0 })
        }

        async fn probe(&mut self) -> Result<(), ProbeError> {
            let t = self.now_s();
            self.probes.push(t);
            if self.answers(t) { Ok(()) } else { Err(ProbeError::Timeout(PROBE_TIMEOUT)) }
        }
    }

    fn schedule(initial_s: f64, max_s: f64) -> Schedule {
        Schedule {
            reconnect_initial: Duration::from_secs_f64(initial_s),
            reconnect_max: Duration::from_secs_f64(max_s),
            probe_interval: Duration::from_secs(1),
        }
    }

    async fn drive(camera: &mut FakeCamera, schedule: &Schedule) {
        let label = Label { camera: "porch".into(), stream: "main" };
        run(camera, schedule, &label, &CancellationToken::new()).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_camera_that_does_not_answer_is_probed_and_never_set_up() {
        // Streams for 60 s, then away for 10 minutes.
        let mut cam = FakeCamera::new(&[(60.0, 660.0)], None, 2);
        drive(&mut cam, &schedule(1.0, 60.0)).await;
        let setups = cam.setup_times();
        assert_eq!(setups[0], 0.0);
        assert!(setups[1] >= 660.0 && setups[1] < 661.0, "set up within a probe interval of answering: {setups:?}");
        assert_eq!(cam.setups[1], (setups[1], true), "after a return");
        // One probe a second while away, none while streaming.
        let during: Vec<&f64> = cam.probes.iter().filter(|t| **t < 660.0).collect();
        assert!((599..=601).contains(&during.len()), "{} probes in 600 s", during.len());
        assert!(cam.probes.iter().all(|t| *t >= 60.0), "no probe while the stream plays");
    }

    #[tokio::test(start_paused = true)]
    async fn a_camera_that_answers_again_is_set_up_at_once_whatever_the_backoff_says() {
        // Down at start, then a 40 s outage after a minute of video, with a
        // backoff already at a 10-minute cap.
        let mut cam = FakeCamera::new(&[(0.0, 5.0), (65.0, 105.0)], None, 3);
        drive(&mut cam, &schedule(600.0, 600.0)).await;
        let setups = cam.setup_times();
        assert_eq!(setups.len(), 3, "{setups:?}");
        assert!(setups[1] >= 5.0 && setups[1] < 6.0, "{setups:?}");
        assert!(setups[2] >= 105.0 && setups[2] < 106.0, "{setups:?}");
        let first_probe_after = |t: f64| cam.probes.iter().copied().find(|p| *p >= t).unwrap();
        assert_eq!(setups[2], first_probe_after(105.0), "the set-up follows the first answered probe");
    }

    #[tokio::test(start_paused = true)]
    async fn a_camera_that_answers_but_cannot_stream_backs_off() {
        // The camera answers OPTIONS but every set-up fails (say 503).
        let mut cam = FakeCamera::new(&[], Some(503), 7);
        drive(&mut cam, &schedule(1.0, 8.0)).await;
        let setups = cam.setup_times();
        let gaps: Vec<f64> = setups.windows(2).map(|w| w[1] - w[0]).collect();
        for (gap, nominal) in gaps.iter().zip([1.0, 2.0, 4.0, 8.0, 8.0, 8.0]) {
            assert!(*gap >= nominal * 0.8 - 1e-6 && *gap <= nominal * 1.2 + 1e-6, "gaps {gaps:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn wrong_credentials_and_paths_keep_the_slow_backoff_without_probes() {
        for status in [401, 403, 404] {
            let mut cam = FakeCamera::new(&[], Some(status), 4);
            drive(&mut cam, &schedule(1.0, 60.0)).await;
            let setups = cam.setup_times();
            for gap in setups.windows(2).map(|w| w[1] - w[0]) {
                assert!((48.0..=72.0).contains(&gap), "{status}: set-ups at {setups:?}");
            }
            assert!(cam.probes.is_empty(), "{status}: probed at {:?}", cam.probes);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stable_session_lost_to_a_camera_that_still_answers_is_set_up_after_the_first_delay() {
        // The session ends (a glitch) while the camera keeps answering: no
        // return, so the backoff's first delay, not an immediate set-up.
        let mut cam = FakeCamera::new(&[(60.0, 60.0)], None, 2);
        drive(&mut cam, &schedule(2.0, 60.0)).await;
        let setups = cam.setup_times();
        assert!(setups[1] - 60.0 >= 1.6 && setups[1] - 60.0 <= 2.4, "{setups:?}");
    }

    #[tokio::test]
    async fn the_probe_needs_a_listener_that_answers() {
        let url = |port: u16| Url::parse(&format!("rtsp://127.0.0.1:{port}/cam")).unwrap();
        let timeout = Duration::from_secs(2);
        // An RTSP server: it reads the request and replies.
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = server.local_addr().unwrap().port();
        let request = tokio::spawn(async move {
            let (mut conn, _) = server.accept().await.unwrap();
            let mut buf = vec![0u8; 512];
            let n = conn.read(&mut buf).await.unwrap();
            conn.write_all(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n").await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        probe(&url(port), timeout).await.unwrap();
        let request = request.await.unwrap();
        assert!(request.starts_with(&format!("OPTIONS rtsp://127.0.0.1:{port}/cam RTSP/1.0\r\n")), "{request}");
        // Nobody listens.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        assert!(matches!(probe(&url(port), timeout).await, Err(ProbeError::Connect(_))));
        // A frozen server: the kernel accepts, nobody replies.
        let frozen = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = frozen.local_addr().unwrap().port();
        let short = Duration::from_millis(300);
        assert!(matches!(probe(&url(port), short).await, Err(ProbeError::Timeout(_))));
    }
}
