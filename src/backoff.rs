//! Capped exponential backoff with ±20 % jitter: the one retry schedule used by
//! camera reconnects, the MQTT link, pipeline stages and the notification outbox.

use std::time::Duration;

/// Delays that double from `initial` up to `max`, each with ±20 % jitter so that
/// many cameras (or boxes) that failed together do not retry in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// `initial` is raised to at most `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial: initial.min(max), max, failures: 0 }
    }

    /// The delay before retry number `attempt` (counting from 1), without
    /// touching any state: `initial · 2^(attempt-1)`, capped, jittered.
    pub fn delay(&self, attempt: u32) -> Duration {
        jitter(self.base(attempt))
    }

    /// The delay before the next retry; each call counts one more failure.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.delay(self.failures)
    }

    /// The longest delay, jittered: for problems a quick retry will not fix.
    pub fn max_delay(&self) -> Duration {
        jitter(self.max)
    }

    /// Failures counted since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// After a success: the next delay is `initial` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    fn base(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30) as i32;
        let secs = self.initial.as_secs_f64() * 2f64.powi(exp);
        Duration::from_secs_f64(secs.min(self.max.as_secs_f64()))
    }
}

fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.8 + 0.4 * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(d: Duration, nominal_s: f64) -> bool {
        let s = d.as_secs_f64();
        s >= nominal_s * 0.8 - 1e-9 && s <= nominal_s * 1.2 + 1e-9
    }

    #[test]
    fn delays_double_up_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        for nominal in [1.0, 2.0, 4.0, 8.0, 10.0, 10.0] {
            let d = b.next_delay();
            assert!(within(d, nominal), "{d:?} is not {nominal} s ± 20 %");
        }
        assert_eq!(b.failures(), 6);
        b.reset();
        assert!(within(b.next_delay(), 1.0));
    }

    #[test]
    fn delay_for_an_attempt_does_not_count_a_failure() {
        let b = Backoff::new(Duration::from_secs(2), Duration::from_secs(60));
        assert!(within(b.delay(1), 2.0));
        assert!(within(b.delay(3), 8.0));
        assert!(within(b.delay(40), 60.0));
        assert!(within(b.max_delay(), 60.0));
        assert_eq!(b.failures(), 0);
    }

    #[test]
    fn an_initial_above_the_cap_is_the_cap() {
        let b = Backoff::new(Duration::from_secs(30), Duration::from_secs(5));
        assert!(within(b.delay(1), 5.0));
    }
}
