//! The clock seam: every timeout, TTL and age reads time through a [`Clock`],
//! so that tests move time instead of waiting for it.
//!
//! Wall-clock time (`now_ms`) dates records, events and TTLs; monotonic time
//! (`monotonic`) measures intervals that must not jump when NTP sets the clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::domain::UnixMillis;

pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> UnixMillis;
    /// Time since an arbitrary fixed start; never goes backwards.
    fn monotonic(&self) -> Duration;
}

/// A clock shared by the tasks of one daemon.
pub type SharedClock = Arc<dyn Clock>;

/// The real clocks of the machine.
#[derive(Debug)]
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock { start: Instant::now() })
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> UnixMillis {
        crate::domain::now_ms()
    }

    fn monotonic(&self) -> Duration {
        self.start.elapsed()
    }
}

/// A clock that moves only when told to ([`SimulatedClock::advance`]).
#[derive(Debug)]
pub struct SimulatedClock {
    wall_ms: AtomicI64,
    mono_ns: AtomicU64,
}

impl SimulatedClock {
    /// Starts at `wall_ms` (Unix milliseconds).
    pub fn starting_at(wall_ms: UnixMillis) -> Arc<SimulatedClock> {
        Arc::new(SimulatedClock { wall_ms: AtomicI64::new(wall_ms), mono_ns: AtomicU64::new(0) })
    }

    /// Starts at the machine's current wall-clock time.
    pub fn now() -> Arc<SimulatedClock> {
        Self::starting_at(crate::domain::now_ms())
    }

    /// Moves both clocks forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.wall_ms.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
        self.mono_ns.fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
    }
}

impl Clock for SimulatedClock {
    fn now_ms(&self) -> UnixMillis {
        self.wall_ms.load(Ordering::SeqCst)
    }

    fn monotonic(&self) -> Duration {
        Duration::from_nanos(self.mono_ns.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_clock_moves_only_when_advanced() {
        let clock = SimulatedClock::starting_at(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        assert_eq!(clock.monotonic(), Duration::ZERO);
        clock.advance(Duration::from_millis(2_500));
        assert_eq!(clock.now_ms(), 3_500);
        assert_eq!(clock.monotonic(), Duration::from_millis(2_500));
    }

    #[test]
    fn the_system_clock_is_monotonic_and_near_now() {
        let clock = SystemClock::shared();
        let a = clock.monotonic();
        let b = clock.monotonic();
        assert!(b >= a);
        assert!((clock.now_ms() - crate::domain::now_ms()).abs() < 5_000);
    }
}
