//! Logins of the status page: random session tokens kept in memory, each with
//! its own CSRF token and an expiry read from the clock seam.

use std::collections::HashMap;
use std::time::Duration;

use subtle::ConstantTimeEq;

/// The cookie that carries the session token.
pub const COOKIE: &str = "homesec_session";

/// How long a login lasts.
pub const TTL: Duration = Duration::from_secs(12 * 3600);

/// The most sessions kept; a new login beyond it ends the oldest.
pub const MAX_SESSIONS: usize = 64;

#[derive(Debug, thiserror::Error)]
#[error("the system's random generator failed: {0}")]
pub struct RandomError(String);

/// 32 random bytes from the operating system, hex-encoded.
pub fn random_token() -> Result<String, RandomError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| RandomError(e.to_string()))?;
    Ok(hex::encode(bytes))
}

#[derive(Debug, Clone)]
struct Session {
    csrf: String,
    expires: Duration,
}

/// The live sessions. Times are the clock's monotonic time.
#[derive(Debug, Default)]
pub struct Sessions {
    by_token: HashMap<String, Session>,
}

impl Sessions {
    /// Opens a session with the given (random) token and CSRF token, valid for [`TTL`].
    pub fn open(&mut self, token: String, csrf: String, now: Duration) {
        self.by_token.retain(|_, s| s.expires > now);
        while self.by_token.len() >= MAX_SESSIONS {
            let oldest = self.by_token.iter().min_by_key(|(_, s)| s.expires).map(|(t, _)| t.clone());
            match oldest {
                Some(t) => self.by_token.remove(&t),
                None => break,
            };
        }
        self.by_token.insert(token, Session { csrf, expires: now + TTL });
    }

    /// The CSRF token of a live session, `None` for an unknown or expired token.
    pub fn csrf(&mut self, token: &str, now: Duration) -> Option<String> {
        let s = self.by_token.get(token)?;
        if s.expires <= now {
            self.by_token.remove(token);
            return None;
        }
        Some(s.csrf.clone())
    }

    /// Whether `given` is the CSRF token of the live session `token` (constant time).
    pub fn check_csrf(&mut self, token: &str, given: &str, now: Duration) -> bool {
        self.csrf(token, now).is_some_and(|c| bool::from(c.as_bytes().ct_eq(given.as_bytes())))
    }

    /// Ends a session (logout).
    pub fn close(&mut self, token: &str) {
        self.by_token.remove(token);
    }

    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }
}

/// Wrong keys one address may try within [`THROTTLE_WINDOW`] before it waits.
pub const MAX_FAILURES: u32 = 5;
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most (the oldest are forgotten first).
const MAX_ADDRESSES: usize = 256;

/// Slows down guessing the API key: after [`MAX_FAILURES`] wrong keys from one
/// address, that address may not try again until [`THROTTLE_WINDOW`] after
/// its first failure.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    /// Per address: failures and when the first of them was.
    failures: HashMap<std::net::IpAddr, (u32, Duration)>,
}

impl LoginThrottle {
    /// Whether `ip` may try a key now.
    pub fn allows(&mut self, ip: std::net::IpAddr, now: Duration) -> bool {
        self.failures.retain(|_, (_, first)| now < *first + THROTTLE_WINDOW);
        self.failures.get(&ip).is_none_or(|(n, _)| *n < MAX_FAILURES)
    }

    pub fn failed(&mut self, ip: std::net::IpAddr, now: Duration) {
        if self.failures.len() >= MAX_ADDRESSES && !self.failures.contains_key(&ip) {
            let oldest = self.failures.iter().min_by_key(|(_, (_, first))| *first).map(|(ip, _)| *ip);
            if let Some(oldest) = oldest {
                self.failures.remove(&oldest);
            }
        }
        self.failures.entry(ip).or_insert((0, now)).0 += 1;
    }

    pub fn succeeded(&mut self, ip: std::net::IpAddr) {
        self.failures.remove(&ip);
    }
}

/// The session token in a `Cookie` header, if any.
pub fn token_in(cookie_header: &str) -> Option<&str> {
    cookie_header.split(';').map(str::trim).find_map(|c| c.strip_prefix(COOKIE)?.strip_prefix('='))
}

/// The `Set-Cookie` value that hands a session to the browser.
pub fn set_cookie(token: &str) -> String {
    format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}", TTL.as_secs())
}

/// The `Set-Cookie` value that removes it.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_lasts_its_ttl_and_not_longer() {
        let mut s = Sessions::default();
        s.open("t1".into(), "c1".into(), Duration::ZERO);
        assert_eq!(s.csrf("t1", TTL - Duration::from_secs(1)).as_deref(), Some("c1"));
        assert_eq!(s.csrf("t1", TTL), None, "expired at its TTL");
        assert!(s.is_empty(), "an expired session is forgotten");
    }

    #[test]
    fn csrf_must_match_the_session() {
        let mut s = Sessions::default();
        s.open("t1".into(), "c1".into(), Duration::ZERO);
        s.open("t2".into(), "c2".into(), Duration::ZERO);
        assert!(s.check_csrf("t1", "c1", Duration::ZERO));
        assert!(!s.check_csrf("t1", "c2", Duration::ZERO), "another session's token");
        assert!(!s.check_csrf("t1", "", Duration::ZERO), "no token");
        assert!(!s.check_csrf("nope", "c1", Duration::ZERO), "no session");
        s.close("t1");
        assert!(!s.check_csrf("t1", "c1", Duration::ZERO), "after logout");
    }

    #[test]
    fn sessions_are_bounded_and_the_oldest_goes_first() {
        let mut s = Sessions::default();
        for i in 0..MAX_SESSIONS + 5 {
            s.open(format!("t{i}"), "c".into(), Duration::from_secs(i as u64));
        }
        let now = Duration::from_secs(MAX_SESSIONS as u64 + 5);
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.csrf("t0", now).is_none());
        assert!(s.csrf(&format!("t{}", MAX_SESSIONS + 4), now).is_some());
    }

    #[test]
    fn wrong_keys_make_an_address_wait_and_others_are_not_held_up() {
        let mut t = LoginThrottle::default();
        let (a, b) = ("10.0.0.5".parse().unwrap(), "10.0.0.6".parse().unwrap());
        for i in 0..MAX_FAILURES {
            assert!(t.allows(a, Duration::from_secs(i.into())));
            t.failed(a, Duration::from_secs(i.into()));
        }
        assert!(!t.allows(a, Duration::from_secs(10)), "the sixth try waits");
        assert!(t.allows(b, Duration::from_secs(10)), "another address may try");
        assert!(t.allows(a, THROTTLE_WINDOW), "after the window, again");
        t.failed(b, Duration::ZERO);
        t.succeeded(b);
        assert!(!t.failures.contains_key(&b), "a login forgets the failures");
    }

    #[test]
    fn the_cookie_is_found_among_others_and_is_http_only_strict() {
        assert_eq!(token_in("a=1; homesec_session=abc; b=2"), Some("abc"));
        assert_eq!(token_in("homesec_sessionx=abc"), None);
        let c = set_cookie("abc");
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"), "{c}");
        assert_ne!(random_token().unwrap(), random_token().unwrap());
        assert_eq!(random_token().unwrap().len(), 64);
    }
}
