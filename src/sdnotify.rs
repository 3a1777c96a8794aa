//! systemd readiness and watchdog notifications (`sd_notify(3)`) through the
//! `sd-notify` crate: a datagram to the socket named by `NOTIFY_SOCKET`.
//! Without `NOTIFY_SOCKET` (not started by systemd) every call is a no-op.
//!
//! The watchdog is fed only while a liveness check passes (the daemon's: its
//! pipeline loop has run recently and its store answers, see
//! `crate::health::liveness`). A wedged pipeline therefore stops feeding, and
//! systemd (`WatchdogSec=`) restarts it.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// A status line for `STATUS=`: a newline would start another assignment.
fn status_text(text: &str) -> String {
    text.chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }).collect()
}

type SendFn = Box<dyn Fn(&[NotifyState<'_>]) -> std::io::Result<()> + Send + Sync>;

struct Inner {
    send: SendFn,
    /// Set by STOPPING=1; held while a watchdog message is sent, so that none
    /// follows STOPPING=1.
    stopping: Mutex<bool>,
}

/// Where notifications go; cheap to clone. Disabled (all no-ops) when the
/// daemon was not started by systemd.
#[derive(Clone, Default)]
pub struct Notifier {
    inner: Option<Arc<Inner>>,
}

impl Notifier {
    /// systemd's socket from `NOTIFY_SOCKET`; disabled when it is unset or empty.
    pub fn from_env() -> Notifier {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(v) if !v.is_empty() => Notifier::with_sender(sd_notify::notify),
            _ => Notifier::default(),
        }
    }

    /// Notifications handed to `send` (systemd's socket, or a test's recorder).
    pub fn with_sender(send: impl Fn(&[NotifyState<'_>]) -> std::io::Result<()> + Send + Sync + 'static) -> Notifier {
        Notifier { inner: Some(Arc::new(Inner { send: Box::new(send), stopping: Mutex::new(false) })) }
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Sends `states` in one datagram, logging a failure instead of returning
    /// it: a lost notification must not stop the daemon.
    pub fn send(&self, states: &[NotifyState<'_>]) {
        let Some(inner) = &self.inner else { return };
        if let Err(e) = (inner.send)(states) {
            let what: Vec<String> = states.iter().map(ToString::to_string).collect();
            warn!(message = %what.join(" "), error = %e, "systemd notification failed");
        }
    }

    /// [`Notifier::send`] unless STOPPING=1 has been sent (watchdog traffic).
    fn send_while_running(&self, states: &[NotifyState<'_>]) {
        let Some(inner) = &self.inner else { return };
        let stopping = inner.stopping.lock().unwrap_or_else(PoisonError::into_inner);
        if !*stopping {
            self.send(states);
        }
    }

    /// STOPPING=1; the watchdog sends nothing after it.
    pub fn stopping(&self) {
        let Some(inner) = &self.inner else { return };
        let mut stopping = inner.stopping.lock().unwrap_or_else(PoisonError::into_inner);
        *stopping = true;
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }
}

/// Start-up is complete (store open, plugins built, sources started, API bound):
/// tells systemd `READY=1` and, when it set `WatchdogSec=`, starts feeding the
/// watchdog while `alive` passes, until `stop`. Returns the notifier for
/// [`Notifier::stopping`].
pub fn ready<F, Fut>(cameras: usize, alive: F, stop: CancellationToken) -> Notifier
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let notifier = Notifier::from_env();
    if !notifier.is_enabled() {
        return notifier;
    }
    notifier.send(&[NotifyState::Ready, NotifyState::Status(&format!("running: {cameras} camera(s)"))]);
    info!("told systemd the daemon is ready");
    if let Some(interval) = watchdog_interval() {
        tokio::spawn(feed_watchdog(notifier.clone(), interval, alive, stop));
    }
    notifier
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3)
/// recommends. `None` when systemd set no watchdog, or set it for another process
/// (`WATCHDOG_PID`).
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero()).map(|d| d / 2)
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
                self.notifier.send_while_running(&[NotifyState::Status("running"), NotifyState::Watchdog]);
            }
            Ok(()) => self.notifier.send_while_running(&[NotifyState::Watchdog]),
            Err(reason) => {
                if !self.failing {
                    error!(reason = %reason, "not feeding the systemd watchdog: systemd will restart the daemon");
                    self.failing = true;
                }
                self.notifier
                    .send_while_running(&[NotifyState::Status(&status_text(&format!("watchdog starved: {reason}")))]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A notifier that records each datagram as systemd would receive it.
    fn recorder() -> (Notifier, Arc<Mutex<Vec<String>>>) {
        let got: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = got.clone();
        let n = Notifier::with_sender(move |states| {
            let lines: String = states.iter().map(|s| format!("{s}\n")).collect();
            sink.lock().unwrap().push(lines);
            Ok(())
        });
        (n, got)
    }

    fn drain(got: &Mutex<Vec<String>>) -> Vec<String> {
        std::mem::take(&mut *got.lock().unwrap())
    }

    #[test]
    fn a_status_cannot_inject_another_assignment() {
        assert_eq!(status_text("bad\nREADY=1\r"), "bad READY=1 ");
    }

    #[test]
    fn disabled_notifier_is_a_no_op() {
        let n = Notifier::default();
        assert!(!n.is_enabled());
        n.send(&[NotifyState::Ready]);
        n.stopping();
    }

    #[test]
    fn a_failing_socket_is_logged_not_fatal() {
        let n = Notifier::with_sender(|_| Err(std::io::Error::other("no socket")));
        n.send(&[NotifyState::Ready]);
    }

    #[test]
    fn feeding_stops_while_the_check_fails_and_resumes_after() {
        let (notifier, got) = recorder();
        let mut feeder = Feeder { notifier, failing: false };
        feeder.tick(Ok(()));
        feeder.tick(Ok(()));
        assert_eq!(drain(&got), vec!["WATCHDOG=1\n"; 2]);
        feeder.tick(Err("pipeline loop silent for 31 s".into()));
        feeder.tick(Err("pipeline loop silent for 32 s".into()));
        assert_eq!(
            drain(&got),
            vec![
                "STATUS=watchdog starved: pipeline loop silent for 31 s\n",
                "STATUS=watchdog starved: pipeline loop silent for 32 s\n"
            ]
        );
        feeder.tick(Ok(()));
        feeder.tick(Ok(()));
        assert_eq!(drain(&got), vec!["STATUS=running\nWATCHDOG=1\n", "WATCHDOG=1\n"]);
        feeder.notifier.stopping();
        feeder.tick(Ok(()));
        assert_eq!(drain(&got), vec!["STOPPING=1\nSTATUS=stopping\n"], "nothing after STOPPING=1");
    }

    #[tokio::test]
    async fn the_feeding_task_ticks_at_once_and_stops_when_asked() {
        let (n, got) = recorder();
        let stop = CancellationToken::new();
        let task = tokio::spawn(feed_watchdog(n, Duration::from_secs(3600), || async { Ok(()) }, stop.clone()));
        tokio::time::timeout(Duration::from_secs(5), async {
            while got.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
        assert_eq!(drain(&got), vec!["WATCHDOG=1\n"]);
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    }
}
