//! A live camera's connectivity: whether every one of its streams delivers
//! video, and its outages (how many, since when, how long the last one
//! lasted), for `/health` and Home Assistant's connectivity sensor.
//!
//! The rule: an outage starts when a stream fails while the camera is not in
//! one already (so a camera that cannot connect at start is in an outage from
//! its first failed attempt) and ends when every stream delivers video again.
//! A stream that stops because the daemon stops is no outage. Times come from
//! the clock seam.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use super::LinkHealth;
use super::live::Role;
use crate::clock::SharedClock;
use crate::domain::UnixMillis;

/// A point in time from both of the clock's faces: the wall clock to show
/// it, the monotonic clock to measure from it.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    wall_ms: UnixMillis,
    mono: Duration,
}

#[derive(Debug)]
struct State {
    main_up: bool,
    /// `None`: the camera has no separate detect stream.
    detect_up: Option<bool>,
    connected_since: Option<Stamp>,
    outages: u64,
    /// The current outage's start.
    outage_since: Option<Stamp>,
    /// How long the last outage that ended lasted.
    last_outage: Option<Duration>,
}

impl State {
    fn all_up(&self) -> bool {
        self.main_up && self.detect_up.unwrap_or(true)
    }

    fn set(&mut self, role: Role, up: bool) {
        match role {
            Role::Main => self.main_up = up,
            Role::Detect => {
                if let Some(d) = &mut self.detect_up {
                    *d = up;
                }
            }
        }
    }
}

/// One camera's connectivity, shared by its stream loops and its `health()`.
#[derive(Debug)]
pub(crate) struct Connectivity {
    clock: SharedClock,
    state: Mutex<State>,
    /// Whether the camera is connected, for whoever publishes it.
    connected: watch::Sender<bool>,
}

impl Connectivity {
    /// A camera that is connecting: not connected, no outage yet.
    pub(crate) fn new(clock: SharedClock, has_detect: bool) -> Self {
        let state = State {
            main_up: false,
            detect_up: has_detect.then_some(false),
            connected_since: None,
            outages: 0,
            outage_since: None,
            last_outage: None,
        };
        Self { clock, state: Mutex::new(state), connected: watch::channel(false).0 }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Only plain field updates happen under the lock: a panic cannot leave it half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> Stamp {
        Stamp { wall_ms: self.clock.now_ms(), mono: self.clock.monotonic() }
    }

    /// `role`'s stream delivers video again (its session's first frame).
    /// Returns how long the outage lasted when this ended one.
    pub(crate) fn up(&self, role: Role) -> Option<Duration> {
        let now = self.now();
        let mut s = self.lock();
        s.set(role, true);
        if !s.all_up() || s.connected_since.is_some() {
            return None;
        }
        s.connected_since = Some(now);
        let ended = s.outage_since.take().map(|since| now.mono.saturating_sub(since.mono));
        if ended.is_some() {
            s.last_outage = ended;
        }
        self.connected.send_if_modified(|c| !std::mem::replace(c, true));
        ended
    }

    /// `role`'s stream failed (a lost session or a failed set-up). Returns
    /// whether this started an outage.
    pub(crate) fn down(&self, role: Role) -> bool {
        let now = self.now();
        let mut s = self.lock();
        s.set(role, false);
        s.connected_since = None;
        self.connected.send_if_modified(|c| std::mem::replace(c, false));
        if s.outage_since.is_some() {
            return false;
        }
        s.outage_since = Some(now);
        s.outages += 1;
        true
    }

    /// Whether the camera is connected, now and as it changes.
    pub(crate) fn subscribe(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
    }

    pub(crate) fn report(&self) -> LinkHealth {
        let now = self.now();
        let s = self.lock();
        let secs = |d: Duration| (d.as_secs_f64() * 10.0).round() / 10.0;
        LinkHealth {
            connected: s.connected_since.is_some(),
            connected_since_ms: s.connected_since.map(|c| c.wall_ms),
            outages: s.outages,
            outage_since_ms: s.outage_since.map(|o| o.wall_ms),
            outage_s: s.outage_since.map(|o| secs(now.mono.saturating_sub(o.mono))),
            last_outage_s: s.last_outage.map(secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::SimulatedClock;

    fn camera(has_detect: bool) -> (Arc<SimulatedClock>, Connectivity) {
        let clock = SimulatedClock::starting_at(1_700_000_000_000);
        let link = Connectivity::new(clock.clone(), has_detect);
        (clock, link)
    }

    #[test]
    fn an_outage_runs_from_the_first_failure_to_the_first_frame_after_it() {
        let (clock, link) = camera(false);
        let changes = link.subscribe();
        let r = link.report();
        assert!(!r.connected && r.outages == 0 && r.outage_since_ms.is_none(), "connecting: {r:?}");

        assert_eq!(link.up(Role::Main), None, "the first connection ends no outage");
        assert!(*changes.borrow());
        clock.advance(Duration::from_secs(100));
        assert!(link.down(Role::Main));
        assert!(!*changes.borrow());
        clock.advance(Duration::from_secs(30));
        let mut watching = changes.clone();
        watching.mark_unchanged();
        assert!(!link.down(Role::Main), "failed set-ups during the outage are the same outage");
        assert!(!watching.has_changed().unwrap(), "and change nothing to publish");
        clock.advance(Duration::from_secs(10));
        let r = link.report();
        assert_eq!(
            r,
            LinkHealth {
                connected: false,
                connected_since_ms: None,
                outages: 1,
                outage_since_ms: Some(1_700_000_100_000),
                outage_s: Some(40.0),
                last_outage_s: None,
            }
        );
        assert_eq!(link.up(Role::Main), Some(Duration::from_secs(40)));
        assert!(*changes.borrow());
        clock.advance(Duration::from_secs(5));
        let r = link.report();
        assert!(r.connected && r.outage_since_ms.is_none() && r.outage_s.is_none(), "{r:?}");
        assert_eq!((r.outages, r.last_outage_s, r.connected_since_ms), (1, Some(40.0), Some(1_700_000_140_000)));
    }

    #[test]
    fn a_camera_with_a_sub_stream_is_connected_only_when_both_deliver() {
        let (clock, link) = camera(true);
        assert_eq!(link.up(Role::Main), None);
        assert!(!link.report().connected, "the detect stream is not there yet");
        link.up(Role::Detect);
        assert!(link.report().connected);

        // Both streams go (a reboot); the camera is back when both are.
        clock.advance(Duration::from_secs(60));
        assert!(link.down(Role::Detect));
        assert!(!link.down(Role::Main), "one outage for both streams");
        clock.advance(Duration::from_secs(40));
        assert_eq!(link.up(Role::Detect), None);
        assert!(!link.report().connected);
        clock.advance(Duration::from_secs(1));
        assert_eq!(link.up(Role::Main), Some(Duration::from_secs(41)));
        assert_eq!(link.report().outages, 1);
    }

    #[test]
    fn a_camera_down_at_start_is_in_an_outage_from_its_first_attempt() {
        let (clock, link) = camera(false);
        assert!(link.down(Role::Main));
        clock.advance(Duration::from_secs(600));
        let r = link.report();
        assert_eq!((r.connected, r.outages, r.outage_s), (false, 1, Some(600.0)));
        assert_eq!(link.up(Role::Main), Some(Duration::from_secs(600)));
        assert_eq!(link.report().last_outage_s, Some(600.0));
    }

    #[test]
    fn the_figures_are_fields_of_the_cameras_health() {
        let (_, link) = camera(false);
        link.down(Role::Main);
        let health = crate::sources::SourceHealth {
            camera: "porch".into(),
            backend: "rtsp",
            healthy: false,
            last_heartbeat_age_s: None,
            last_error: None,
            fps: Some(0.0),
            reconnects: Some(0),
            link: Some(link.report()),
        };
        let json = serde_json::to_value(&health).unwrap();
        assert_eq!(json["connected"], false);
        assert_eq!(json["outages"], 1);
        assert_eq!(json["outage_since_ms"], 1_700_000_000_000i64);
        assert_eq!(json["outage_s"], 0.0);
        assert!(json["last_outage_s"].is_null() && json["connected_since_ms"].is_null());
        assert!(json.get("link").is_none(), "{json}");
    }
}
