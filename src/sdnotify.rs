//! systemd readiness and watchdog notifications (`sd_notify(3)`), written by
//! hand: one datagram of `KEY=VALUE` lines to the unix socket named by
//! `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace). No
//! libsystemd. Without `NOTIFY_SOCKET` (not started by systemd) every call is a
//! no-op.
//!
//! The watchdog is fed only while the daemon is alive in the sense that matters:
//! the pipeline's own loop has run recently and the store answers. A wedged
//! pipeline therefore stops feeding, and systemd (`WatchdogSec=`) restarts it.

use std::future::Future;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::domain::now_ms;
use crate::pipeline::Pipeline;

/// The pipeline's loop must have run within this long for the watchdog to be
/// fed. The same limit as `/health`'s `pipeline` check (api `HEARTBEAT_LIMIT_MS`),
/// so the API reports "unhealthy" when the watchdog stops.
pub const HEARTBEAT_LIMIT_MS: i64 = 30_000;

/// How long the store may take to answer a watchdog ping.
const STORE_PING_TIMEOUT: Duration = Duration::from_secs(5);

/// A blocked notification socket must not hold an async worker for long.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET={0:?} is neither an absolute path nor an abstract name (@name)")]
    BadAddress(String),
    #[error("NOTIFY_SOCKET={addr:?} is not a usable socket address")]
    Address {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot create a socket for systemd notifications")]
    Socket(#[source] io::Error),
    #[error("cannot send {message:?} to NOTIFY_SOCKET {addr}")]
    Send {
        message: String,
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("WATCHDOG_USEC={0:?} is not a positive number of microseconds")]
    BadWatchdog(String),
}

/// One assignment in a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State<'a> {
    /// Start-up is finished (`Type=notify` leaves "activating").
    Ready,
    /// Shutdown has begun.
    Stopping,
    /// Keep-alive for `WatchdogSec=`.
    Watchdog,
    /// Free text shown by `systemctl status`.
    Status(&'a str),
}

/// The datagram for `states`: one `KEY=VALUE` line each. Newlines inside a
/// status would start a new assignment, so they become spaces.
pub fn format(states: &[State<'_>]) -> String {
    let mut out = String::new();
    for s in states {
        match s {
            State::Ready => out.push_str("READY=1\n"),
            State::Stopping => out.push_str("STOPPING=1\n"),
            State::Watchdog => out.push_str("WATCHDOG=1\n"),
            State::Status(text) => {
                out.push_str("STATUS=");
                out.extend(text.chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }));
                out.push('\n');
            }
        }
    }
    out
}

struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
    name: String,
    /// Set by STOPPING=1; held while a watchdog message is sent, so that none
    /// follows STOPPING=1.
    stopping: Mutex<bool>,
}

/// Where notifications go; cheap to clone. Disabled (all no-ops) when the
/// daemon was not started by systemd.
#[derive(Clone, Default)]
pub struct Notifier {
    target: Option<Arc<Target>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").field("socket", &self.target.as_ref().map(|t| t.name.as_str())).finish()
    }
}

impl Notifier {
    /// From `NOTIFY_SOCKET`; disabled when it is unset or empty. A malformed
    /// value is logged and disables notifications (systemd will then time the
    /// start-up out, which says more than a daemon that refuses to run).
    pub fn from_env() -> Notifier {
        match std::env::var("NOTIFY_SOCKET") {
            Ok(v) if !v.is_empty() => Notifier::connect(&v).unwrap_or_else(|e| {
                warn!(error = %crate::telemetry::chain(&e), "systemd notifications disabled");
                Notifier::default()
            }),
            _ => Notifier::default(),
        }
    }

    /// Notifications to `addr`: an absolute path, or `@name` for the abstract namespace.
    pub fn connect(addr: &str) -> Result<Notifier, NotifyError> {
        let sock_addr = if let Some(name) = addr.strip_prefix('@') {
            SocketAddr::from_abstract_name(name.as_bytes())
        } else if addr.starts_with('/') {
            SocketAddr::from_pathname(addr)
        } else {
            return Err(NotifyError::BadAddress(addr.to_owned()));
        }
        .map_err(|source| NotifyError::Address { addr: addr.to_owned(), source })?;
        let socket = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        socket.set_write_timeout(Some(SEND_TIMEOUT)).map_err(NotifyError::Socket)?;
        Ok(Notifier {
            target: Some(Arc::new(Target {
                socket,
                addr: sock_addr,
                name: addr.to_owned(),
                stopping: Mutex::new(false),
            })),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `states` in one datagram (nothing when disabled).
    pub fn notify(&self, states: &[State<'_>]) -> Result<(), NotifyError> {
        let Some(t) = &self.target else { return Ok(()) };
        let message = format(states);
        t.socket.send_to_addr(message.as_bytes(), &t.addr).map(|_| ()).map_err(|source| NotifyError::Send {
            message: message.trim_end().to_owned(),
            addr: t.name.clone(),
            source,
        })
    }

    /// [`Notifier::notify`], logging a failure instead of returning it: a lost
    /// notification must not stop the daemon.
    pub fn send(&self, states: &[State<'_>]) {
        if let Err(e) = self.notify(states) {
            warn!(error = %crate::telemetry::chain(&e), "systemd notification failed");
        }
    }

    /// [`Notifier::send`] unless STOPPING=1 has been sent (watchdog traffic).
    fn send_while_running(&self, states: &[State<'_>]) {
        let Some(t) = &self.target else { return };
        let stopping = t.stopping.lock().unwrap_or_else(PoisonError::into_inner);
        if !*stopping {
            self.send(states);
        }
    }

    /// STOPPING=1; the watchdog sends nothing after it.
    pub fn stopping(&self) {
        let Some(t) = &self.target else { return };
        let mut stopping = t.stopping.lock().unwrap_or_else(PoisonError::into_inner);
        *stopping = true;
        self.send(&[State::Stopping, State::Status("stopping")]);
    }
}

/// Start-up is complete (store open, plugins built, sources started, API bound):
/// tells systemd `READY=1` and, when it set `WatchdogSec=`, starts feeding the
/// watchdog from `pipeline`'s liveness until `stop`. Returns the notifier for
/// [`stopping`].
pub fn ready(pipeline: &Arc<Pipeline>, cameras: usize, stop: CancellationToken) -> Notifier {
    let notifier = Notifier::from_env();
    if !notifier.is_enabled() {
        return notifier;
    }
    notifier.send(&[State::Ready, State::Status(&format!("running: {cameras} camera(s)"))]);
    info!("told systemd the daemon is ready");
    if let Some(interval) = watchdog_interval() {
        let p = pipeline.clone();
        let check = move || {
            let p = p.clone();
            async move { pipeline_alive(&p).await }
        };
        tokio::spawn(feed_watchdog(notifier.clone(), interval, check, stop));
    }
    notifier
}

/// Shutdown has begun: `STOPPING=1`, and no more watchdog messages.
pub fn stopping(notifier: &Notifier) {
    notifier.stopping();
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3)
/// recommends. `None` when systemd set no watchdog, or set it for another process
/// (`WATCHDOG_PID`).
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_interval_from(usec.as_deref(), pid.as_deref(), std::process::id()).unwrap_or_else(|e| {
        warn!(error = %e, "systemd watchdog disabled");
        None
    })
}

fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, my_pid: u32) -> Result<Option<Duration>, NotifyError> {
    let Some(usec) = usec.filter(|u| !u.is_empty()) else { return Ok(None) };
    if let Some(pid) = pid.filter(|p| !p.is_empty())
        && pid.parse::<u32>().ok() != Some(my_pid)
    {
        return Ok(None);
    }
    match usec.parse::<u64>() {
        Ok(us) if us > 0 => Ok(Some(Duration::from_micros(us) / 2)),
        _ => Err(NotifyError::BadWatchdog(usec.to_owned())),
    }
}

/// Whether the watchdog may be fed, given how long ago the pipeline's loop ran
/// and whether the store answered. `Err` holds the reason shown in `STATUS=`.
pub fn judge(heartbeat_age_ms: i64, store_ok: bool) -> Result<(), String> {
    let mut problems = Vec::new();
    if heartbeat_age_ms >= HEARTBEAT_LIMIT_MS {
        problems.push(format!("pipeline loop silent for {} s", heartbeat_age_ms / 1000));
    }
    if !store_ok {
        problems.push("store does not answer".to_owned());
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

/// The liveness the watchdog stands for: the pipeline's loop heartbeat is fresh
/// and the store answers a read. Camera or notifier trouble does not count:
/// restarting the daemon would not fix a camera that is offline.
pub async fn pipeline_alive(pipeline: &Pipeline) -> Result<(), String> {
    let age = now_ms() - pipeline.stats.heartbeat_ms.load(Ordering::Relaxed);
    let store = pipeline.store().clone();
    let ping = tokio::task::spawn_blocking(move || store.ping());
    let store_ok = matches!(tokio::time::timeout(STORE_PING_TIMEOUT, ping).await, Ok(Ok(true)));
    judge(age, store_ok)
}

/// Sends `WATCHDOG=1` every `interval` while `check` passes, until `stop`. When
/// the check fails it sends only a `STATUS=` with the reason, so systemd's
/// watchdog runs out and restarts the daemon; if the check recovers first,
/// feeding resumes.
pub async fn feed_watchdog<F, Fut>(notifier: Notifier, interval: Duration, mut check: F, stop: CancellationToken)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    debug!(interval_ms = interval.as_millis() as u64, "feeding the systemd watchdog");
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut feeder = Feeder { notifier, failing: false };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let verdict = check().await;
        feeder.tick(verdict);
    }
}

/// One watchdog tick's notification, given the health check's verdict.
struct Feeder {
    notifier: Notifier,
    failing: bool,
}

impl Feeder {
    fn tick(&mut self, verdict: Result<(), String>) {
        match verdict {
            Ok(()) if self.failing => {
                info!("daemon healthy again: feeding the systemd watchdog");
                self.failing = false;
                self.notifier.send_while_running(&[State::Status("running"), State::Watchdog]);
            }
            Ok(()) => self.notifier.send_while_running(&[State::Watchdog]),
            Err(reason) => {
                if !self.failing {
                    error!(reason = %reason, "not feeding the systemd watchdog: systemd will restart the daemon");
                    self.failing = true;
                }
                self.notifier.send_while_running(&[State::Status(&format!("watchdog starved: {reason}"))]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_key_value_lines() {
        assert_eq!(format(&[State::Ready]), "READY=1\n");
        assert_eq!(format(&[State::Stopping]), "STOPPING=1\n");
        assert_eq!(format(&[State::Watchdog]), "WATCHDOG=1\n");
        assert_eq!(
            format(&[State::Ready, State::Status("running: 2 cameras")]),
            "READY=1\nSTATUS=running: 2 cameras\n"
        );
        assert_eq!(format(&[]), "");
    }

    #[test]
    fn a_status_cannot_inject_another_assignment() {
        assert_eq!(format(&[State::Status("bad\nREADY=1\r")]), "STATUS=bad READY=1 \n");
    }

    #[test]
    fn addresses_are_paths_or_abstract_names() {
        assert!(matches!(Notifier::connect("relative/sock"), Err(NotifyError::BadAddress(_))));
        assert!(matches!(Notifier::connect(""), Err(NotifyError::BadAddress(_))));
        assert!(Notifier::connect("/run/systemd/notify").is_ok_and(|n| n.is_enabled()));
        assert!(Notifier::connect("@some/abstract").is_ok_and(|n| n.is_enabled()));
        let too_long = format!("/{}", "x".repeat(200));
        assert!(matches!(Notifier::connect(&too_long), Err(NotifyError::Address { .. })));
    }

    #[test]
    fn disabled_notifier_is_a_no_op() {
        let n = Notifier::default();
        assert!(!n.is_enabled());
        assert!(n.notify(&[State::Ready]).is_ok());
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier::connect(path.to_str().unwrap()).unwrap();
        n.notify(&[State::Ready, State::Status("up")]).unwrap();
        assert_eq!(recv(&server), "READY=1\nSTATUS=up\n");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("homesec-test-{}-{}", std::process::id(), fastrand::u64(..));
        let server = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier::connect(&format!("@{name}")).unwrap();
        n.notify(&[State::Watchdog]).unwrap();
        assert_eq!(recv(&server), "WATCHDOG=1\n");
    }

    #[test]
    fn a_missing_socket_is_an_error_not_a_panic() {
        let n = Notifier::connect("/nonexistent/homesec/notify").unwrap();
        assert!(matches!(n.notify(&[State::Ready]), Err(NotifyError::Send { .. })));
        n.send(&[State::Ready]); // logged only
    }

    #[test]
    fn watchdog_interval_is_half_the_timeout_for_this_process_only() {
        let half = |u, p| watchdog_interval_from(u, p, 42).unwrap();
        assert_eq!(half(None, None), None);
        assert_eq!(half(Some(""), None), None);
        assert_eq!(half(Some("30000000"), None), Some(Duration::from_secs(15)));
        assert_eq!(half(Some("2000000"), Some("42")), Some(Duration::from_secs(1)));
        assert_eq!(half(Some("2000000"), Some("43")), None);
        assert!(watchdog_interval_from(Some("0"), None, 42).is_err());
        assert!(watchdog_interval_from(Some("soon"), None, 42).is_err());
    }

    #[test]
    fn watchdog_is_fed_only_while_the_pipeline_runs_and_the_store_answers() {
        assert_eq!(judge(1_000, true), Ok(()));
        assert_eq!(judge(HEARTBEAT_LIMIT_MS - 1, true), Ok(()));
        assert_eq!(judge(45_000, true), Err("pipeline loop silent for 45 s".into()));
        assert_eq!(judge(0, false), Err("store does not answer".into()));
        assert!(judge(HEARTBEAT_LIMIT_MS, false).is_err_and(|e| e.contains("silent") && e.contains("store")));
    }

    #[test]
    fn feeding_stops_while_the_check_fails_and_resumes_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        server.set_nonblocking(true).unwrap();
        let mut feeder = Feeder { notifier: Notifier::connect(path.to_str().unwrap()).unwrap(), failing: false };
        let drain = || {
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            while let Ok(k) = server.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..k]).into_owned());
            }
            got
        };
        feeder.tick(Ok(()));
        feeder.tick(Ok(()));
        assert_eq!(drain(), vec!["WATCHDOG=1\n"; 2]);
        feeder.tick(Err("pipeline loop silent for 31 s".into()));
        feeder.tick(Err("pipeline loop silent for 32 s".into()));
        assert_eq!(
            drain(),
            vec![
                "STATUS=watchdog starved: pipeline loop silent for 31 s\n",
                "STATUS=watchdog starved: pipeline loop silent for 32 s\n"
            ]
        );
        feeder.tick(Ok(()));
        feeder.tick(Ok(()));
        assert_eq!(drain(), vec!["STATUS=running\nWATCHDOG=1\n", "WATCHDOG=1\n"]);
        stopping(&feeder.notifier);
        feeder.tick(Ok(()));
        assert_eq!(drain(), vec!["STOPPING=1\nSTATUS=stopping\n"], "nothing after STOPPING=1");
    }

    #[tokio::test]
    async fn the_feeding_task_ticks_at_once_and_stops_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let stop = CancellationToken::new();
        let n = Notifier::connect(path.to_str().unwrap()).unwrap();
        let task = tokio::spawn(feed_watchdog(n, Duration::from_secs(3600), || async { Ok(()) }, stop.clone()));
        let first = tokio::task::spawn_blocking(move || recv(&server)).await.unwrap();
        assert_eq!(first, "WATCHDOG=1\n");
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    }
}
