//! Logging setup, the capture of log records for the fleet, and secret
//! redaction.

use std::error::Error;
use std::sync::LazyLock;

use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

mod capture;

pub use capture::{CaptureFilter, CaptureLayer, LogCapture, QUEUE_LIMIT, Taken};

/// The capture [`init`] installs: inert until the daemon enables it.
static CAPTURE: LazyLock<LogCapture> = LazyLock::new(|| LogCapture::new(QUEUE_LIMIT));

/// The daemon's log capture (see [`LogCapture`]).
pub fn log_capture() -> &'static LogCapture {
    &CAPTURE
}

/// Logs to stderr; `HOMESEC_LOG` (or `RUST_LOG`) sets the filter
/// (`level,target=level,...`, e.g. `info,homesec::sources=debug`),
/// `HOMESEC_LOG_FORMAT=json` switches to JSON lines (for journald/collectors).
/// Also installs the log capture ([`log_capture`]), whose level is its own
/// (not `HOMESEC_LOG`'s).
pub fn init() {
    let filter =
        std::env::var("HOMESEC_LOG").ok().or_else(|| std::env::var("RUST_LOG").ok()).unwrap_or_else(|| "info".into());
    // The FTP server library logs every command, and cameras' routine failed
    // CWDs as warnings, inside spans that print its whole session: only its
    // errors unless the filter names it (the FTP source logs what matters).
    let filter = if filter.contains("libunftp") { filter } else { format!("{filter},libunftp=error") };
    let (filter, refused) = match filter.parse::<Targets>() {
        Ok(targets) => (targets, None),
        Err(e) => (
            Targets::new().with_default(tracing::Level::INFO).with_target("libunftp", tracing::Level::ERROR),
            Some((filter, e)),
        ),
    };
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let stderr = if std::env::var("HOMESEC_LOG_FORMAT").is_ok_and(|f| f == "json") {
        stderr.json().with_filter(filter).boxed()
    } else {
        stderr.with_filter(filter).boxed()
    };
    let res = tracing_subscriber::registry().with(stderr).with(CAPTURE.layer()).try_init();
    let _ = res; // already initialised (tests)
    if let Some((filter, e)) = refused {
        tracing::warn!(filter, error = %e, "HOMESEC_LOG is not a log filter (`level,target=level,...`); logging at info");
    }
}

/// An error and all its causes, `outer: inner: root`.
pub fn chain(e: &(dyn Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

/// Replaces the password (and user) in a URL with `***`: `rtsp://***@cam/stream`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_owned() };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}://***@{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(redact_url("rtsp://admin:s3cret@10.0.0.2:554/ch1"), "rtsp://***@10.0.0.2:554/ch1");
        assert_eq!(redact_url("rtsp://10.0.0.2/ch1"), "rtsp://10.0.0.2/ch1");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn chains_list_every_cause() {
        let inner = std::io::Error::other("disk full");
        let outer = crate::storage::StorageError::Io { path: "a".into(), key: "k".into(), source: inner };
        assert_eq!(chain(&outer), "cannot store a as k: disk full");
    }
}
