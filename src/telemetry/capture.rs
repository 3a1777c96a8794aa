//! Log capture for the fleet: a `tracing_subscriber` layer, installed by
//! [`super::init`] before the config is read and inert until the daemon
//! [enables](LogCapture::enable) it, that copies every event at or above a level
//! into a bounded in-memory queue (the oldest dropped and counted when full).
//!
//! Capturing is cheap and never blocks on I/O or recurses: the layer's filter
//! is one atomic load, an event is turned into a [`LogRecord`] (strings cut to
//! a bound) before a short lock that only pushes it onto the queue, and an
//! event logged while one is being captured on the same thread is skipped.
//! Moving the queue to the store is someone else's job ([`LogCapture::take`]).

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Filtered;
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::registry::LookupSpan;

use crate::clock::SharedClock;
use crate::domain::{FieldValue, LogField, LogLevel, LogRecord};

/// Records the queue holds before it drops the oldest.
pub const QUEUE_LIMIT: usize = 1_000;
/// A message longer than this is cut (characters).
const MESSAGE_CHARS: usize = 2_000;
/// A string field longer than this is cut (characters).
const FIELD_CHARS: usize = 500;
/// Fields kept per record (the event's first, then its spans').
const MAX_FIELDS: usize = 32;

/// The queue of captured records and its level; cheap to clone.
#[derive(Clone)]
pub struct LogCapture {
    inner: Arc<Inner>,
}

struct Inner {
    /// The most verbose level captured: 0 off, 1 error, 2 warn, 3 info.
    level: AtomicU8,
    limit: usize,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    records: VecDeque<LogRecord>,
    /// Records dropped since the last [`LogCapture::take`].
    dropped: u64,
    /// Dates records; the system time until the daemon gives its clock.
    clock: Option<SharedClock>,
}

/// What [`LogCapture::take`] hands over.
#[derive(Debug, Default)]
pub struct Taken {
    /// Oldest first.
    pub records: Vec<LogRecord>,
    /// Records dropped because the queue was full, since the last take.
    pub dropped: u64,
}

impl Taken {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.dropped == 0
    }
}

fn rank(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        _ => 5,
    }
}

/// The captured levels `level` stands for: `off`, `error`, `warn` or `info`
/// (more verbose levels are capped at `info`).
fn rank_of(level: LevelFilter) -> u8 {
    level.into_level().map_or(0, |l| rank(&l).min(3))
}

impl LogCapture {
    /// An inert capture keeping at most `limit` records.
    pub fn new(limit: usize) -> Self {
        let inner = Inner { level: AtomicU8::new(0), limit: limit.max(1), queue: Mutex::default() };
        Self { inner: Arc::new(inner) }
    }

    /// The layer that feeds this capture, with its own filter (independent of
    /// what is printed to stderr).
    pub fn layer<S>(&self) -> Filtered<CaptureLayer, CaptureFilter, S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        CaptureLayer { inner: self.inner.clone() }.with_filter(CaptureFilter { inner: self.inner.clone() })
    }

    /// Captures events at `level` and above (`LevelFilter::OFF`: nothing),
    /// dated by `clock`.
    pub fn enable(&self, level: LevelFilter, clock: SharedClock) {
        if let Ok(mut q) = self.inner.queue.lock() {
            q.clock = Some(clock);
        }
        self.inner.level.store(rank_of(level), Ordering::Relaxed);
    }

    /// The most verbose level captured (`OFF` while inert).
    pub fn level(&self) -> LevelFilter {
        match self.inner.level.load(Ordering::Relaxed) {
            0 => LevelFilter::OFF,
            1 => LevelFilter::ERROR,
            2 => LevelFilter::WARN,
            _ => LevelFilter::INFO,
        }
    }

    /// Everything captured since the last take, and how much was dropped.
    pub fn take(&self) -> Taken {
        let Ok(mut q) = self.inner.queue.lock() else { return Taken::default() };
        Taken { records: q.records.drain(..).collect(), dropped: std::mem::take(&mut q.dropped) }
    }

    /// Records waiting to be taken.
    pub fn pending(&self) -> usize {
        self.inner.queue.lock().map_or(0, |q| q.records.len())
    }

    /// Records dropped since the last take.
    pub fn dropped(&self) -> u64 {
        self.inner.queue.lock().map_or(0, |q| q.dropped)
    }

    /// Counts records lost on the way to the store (reported with the next take).
    pub fn add_dropped(&self, n: u64) {
        if let Ok(mut q) = self.inner.queue.lock() {
            q.dropped += n;
        }
    }
}

impl Inner {
    fn push(&self, mut record: LogRecord) {
        let Ok(mut q) = self.queue.lock() else { return };
        record.ts_ms = q.clock.as_ref().map_or_else(crate::domain::now_ms, |c| c.now_ms());
        while q.records.len() >= self.limit {
            q.records.pop_front();
            q.dropped += 1;
        }
        q.records.push_back(record);
    }
}

/// The target of the FTP server library's log lines.
const FTP_LIBRARY: &str = "libunftp";

/// Lets through events at or above the captured level, and spans while
/// capturing (for their fields); callsites more verbose than `info` never.
pub struct CaptureFilter {
    inner: Arc<Inner>,
}

impl<S> Filter<S> for CaptureFilter {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        let level = self.inner.level.load(Ordering::Relaxed);
        // The FTP server library's warnings are cameras' routine failed
        // commands, in spans holding its whole session: only its errors (the
        // FTP source logs what matters), as on stderr.
        let ftp = meta.target().starts_with(FTP_LIBRARY);
        if meta.is_span() { level > 0 && !ftp } else { rank(meta.level()) <= if ftp { level.min(1) } else { level } }
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        // `sometimes`: the level changes at run time, so it is asked per event.
        if rank(meta.level()) <= 3 { Interest::sometimes() } else { Interest::never() }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::INFO)
    }
}

/// Turns events into [`LogRecord`]s and keeps the fields of spans.
pub struct CaptureLayer {
    inner: Arc<Inner>,
}

/// A span's fields, kept in its extensions for the events inside it.
struct SpanFields(Vec<LogField>);

thread_local! {
    /// Set while an event is captured on this thread: an event logged by the
    /// capture itself (a field's `Debug`, say) is not captured again.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as capturing until dropped; `None` when it is already.
struct Reentry;

impl Reentry {
    fn enter() -> Option<Reentry> {
        let was = CAPTURING.try_with(|c| c.replace(true)).ok()?;
        (!was).then_some(Reentry)
    }
}

impl Drop for Reentry {
    fn drop(&mut self) {
        let _ = CAPTURING.try_with(|c| c.set(false));
    }
}

impl<S> Layer<S> for CaptureLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(_guard) = Reentry::enter() else { return };
        let mut v = Visitor::default();
        attrs.record(&mut v);
        if let Some(span) = ctx.span(id)
            && !v.fields.is_empty()
        {
            span.extensions_mut().insert(SpanFields(v.fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(_guard) = Reentry::enter() else { return };
        let mut v = Visitor::default();
        values.record(&mut v);
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        match ext.get_mut::<SpanFields>() {
            Some(SpanFields(fields)) => {
                for f in v.fields {
                    match fields.iter().position(|old| old.name == f.name) {
                        Some(i) => fields[i].value = f.value,
                        None if fields.len() < MAX_FIELDS => fields.push(f),
                        None => {}
                    }
                }
            }
            None if !v.fields.is_empty() => ext.insert(SpanFields(v.fields)),
            None => {}
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(_guard) = Reentry::enter() else { return };
        let meta = event.metadata();
        let mut v = Visitor::default();
        event.record(&mut v);
        // Innermost span first; a name the event (or an inner span) has already is kept.
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                    for f in fields {
                        if v.fields.len() < MAX_FIELDS && !v.fields.iter().any(|e| e.name == f.name) {
                            v.fields.push(f.clone());
                        }
                    }
                }
            }
        }
        let level = match rank(meta.level()) {
            1 => LogLevel::Error,
            2 => LogLevel::Warn,
            3 => LogLevel::Info,
            4 => LogLevel::Debug,
            _ => LogLevel::Trace,
        };
        self.inner.push(LogRecord {
            id: fastrand::i64(..),
            ts_ms: 0,
            level,
            target: v.target.unwrap_or_else(|| clean(meta.target(), FIELD_CHARS)),
            message: v.message,
            fields: v.fields,
        });
    }
}

/// Collects an event's (or span's) message and fields.
#[derive(Default)]
struct Visitor {
    message: String,
    /// `log.target` of a record that came through the `log` crate.
    target: Option<String>,
    fields: Vec<LogField>,
}

impl Visitor {
    fn push(&mut self, field: &Field, value: FieldValue) {
        if self.fields.len() < MAX_FIELDS {
            self.fields.push(LogField { name: field.name().to_owned(), value });
        }
    }
}

impl Visit for Visitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = clean(value, MESSAGE_CHARS),
            "log.target" => self.target = Some(clean(value, FIELD_CHARS)),
            // The `log` crate's module, file and line: not fields of the event.
            n if n.starts_with("log.") => {}
            _ => self.push(field, FieldValue::Str(clean(value, FIELD_CHARS))),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%x` and `?x` fields and the message arrive here; formatted once, bounded after.
        self.record_str(field, &format!("{value:?}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, FieldValue::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, FieldValue::U64(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, FieldValue::F64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, FieldValue::Bool(value));
    }
}

/// `text` cut to `max` characters (marked with `…`), without NUL characters
/// (Postgres text and jsonb refuse them).
fn clean(text: &str, max: usize) -> String {
    let mut out: String = text.chars().filter(|c| *c != '\0').take(max).collect();
    if text.chars().filter(|c| *c != '\0').nth(max).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::{error, info, info_span, warn};
    use tracing_subscriber::layer::SubscriberExt;

    fn with_capture(capture: &LogCapture, f: impl FnOnce()) {
        let subscriber = tracing_subscriber::registry().with(capture.layer());
        tracing::subscriber::with_default(subscriber, f);
    }

    fn enabled(level: LevelFilter) -> LogCapture {
        let capture = LogCapture::new(QUEUE_LIMIT);
        capture.enable(level, crate::clock::SimulatedClock::starting_at(1_700_000_000_000));
        capture
    }

    fn str_field(r: &LogRecord, name: &str) -> Option<String> {
        match r.field(name)? {
            FieldValue::Str(s) => Some(s.clone()),
            other => Some(format!("{other:?}")),
        }
    }

    #[test]
    fn the_ftp_librarys_warnings_are_not_kept_its_errors_are() {
        let capture = enabled(LevelFilter::WARN);
        with_capture(&capture, || {
            warn!(target: "libunftp::server::controlchan", "550 Failed to change directory");
            error!(target: "libunftp::server", "could not bind the passive port");
            warn!("a warning of ours");
        });
        let taken = capture.take();
        let kept: Vec<_> = taken.records.iter().map(|r| r.message.as_str()).collect();
        assert_eq!(kept, ["could not bind the passive port", "a warning of ours"]);
    }

    #[test]
    fn an_inert_capture_keeps_nothing() {
        let capture = LogCapture::new(10);
        with_capture(&capture, || error!(camera = "porch", "disk on fire"));
        assert!(capture.take().is_empty());
        assert_eq!(capture.level(), LevelFilter::OFF);
    }

    #[test]
    fn only_events_at_or_above_the_level_are_kept() {
        let capture = enabled(LevelFilter::WARN);
        with_capture(&capture, || {
            info!("an info line");
            tracing::debug!("a debug line");
            warn!("a warning");
            error!("an error");
        });
        let taken = capture.take();
        let kept: Vec<_> = taken.records.iter().map(|r| (r.level, r.message.as_str())).collect();
        assert_eq!(kept, [(LogLevel::Warn, "a warning"), (LogLevel::Error, "an error")]);

        let capture = enabled(LevelFilter::ERROR);
        with_capture(&capture, || {
            warn!("a warning");
            error!("an error");
        });
        assert_eq!(capture.take().records.len(), 1);

        let capture = enabled(LevelFilter::INFO);
        with_capture(&capture, || {
            info!("an info line");
            tracing::debug!("a debug line");
        });
        assert_eq!(capture.take().records.len(), 1);

        let capture = enabled(LevelFilter::OFF);
        with_capture(&capture, || error!("an error"));
        assert!(capture.take().is_empty());
    }

    #[test]
    fn a_record_keeps_its_fields_and_those_of_its_spans() {
        let capture = enabled(LevelFilter::WARN);
        with_capture(&capture, || {
            let span = info_span!("clip", clip_id = "porch_1", camera = tracing::field::Empty, stage = "vlm");
            let _in = span.enter();
            span.record("camera", "porch");
            let inner = info_span!("attempt", stage = "filter", attempt = 2u32);
            let _in_inner = inner.enter();
            let e = std::io::Error::other("timed out");
            warn!(error = %e, retry_in_s = 1.5, count = -3i64, upload_failed = true, ?e, "stage failed; retrying");
        });
        let taken = capture.take();
        let [r] = taken.records.as_slice() else { panic!("{taken:?}") };
        assert_eq!(r.message, "stage failed; retrying");
        assert_eq!(r.level, LogLevel::Warn);
        assert_eq!(r.ts_ms, 1_700_000_000_000, "dated by the clock seam");
        assert_eq!(r.target, module_path!());
        assert_eq!(str_field(r, "error").as_deref(), Some("timed out"));
        assert_eq!(r.field("retry_in_s"), Some(&FieldValue::F64(1.5)));
        assert_eq!(r.field("count"), Some(&FieldValue::I64(-3)));
        assert_eq!(r.field("upload_failed"), Some(&FieldValue::Bool(true)));
        assert!(str_field(r, "e").is_some_and(|s| s.contains("timed out")));
        // Span fields: the inner span's `stage` wins over the outer one's.
        assert_eq!(str_field(r, "clip_id").as_deref(), Some("porch_1"));
        assert_eq!(str_field(r, "camera").as_deref(), Some("porch"), "recorded after the span began");
        assert_eq!(str_field(r, "stage").as_deref(), Some("filter"));
        assert_eq!(r.field("attempt"), Some(&FieldValue::U64(2)));
        assert!(r.field("message").is_none());
    }

    #[test]
    fn the_queue_is_bounded_and_counts_what_it_drops() {
        let capture = LogCapture::new(3);
        capture.enable(LevelFilter::WARN, crate::clock::SystemClock::shared());
        with_capture(&capture, || {
            for i in 0..5 {
                warn!(i, "warning {i}");
            }
        });
        assert_eq!((capture.pending(), capture.dropped()), (3, 2));
        let taken = capture.take();
        let kept: Vec<_> = taken.records.iter().map(|r| r.message.as_str()).collect();
        assert_eq!(kept, ["warning 2", "warning 3", "warning 4"], "the oldest go");
        assert_eq!(taken.dropped, 2);
        assert!(capture.take().is_empty(), "a take empties the queue and resets the count");
        assert!(taken.records[0].id != taken.records[1].id);
    }

    #[test]
    fn long_text_is_cut_and_nul_removed() {
        let capture = enabled(LevelFilter::WARN);
        let long = "x".repeat(MESSAGE_CHARS + 10);
        with_capture(&capture, || warn!(detail = %"a\0b", "{long}"));
        let taken = capture.take();
        let r = &taken.records[0];
        assert_eq!(r.message.chars().count(), MESSAGE_CHARS + 1);
        assert!(r.message.ends_with('…'));
        assert_eq!(str_field(r, "detail").as_deref(), Some("ab"));
    }

    #[test]
    fn an_event_logged_while_capturing_is_not_captured_again() {
        struct Noisy;
        impl std::fmt::Debug for Noisy {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                warn!("logged from inside a field");
                f.write_str("noisy")
            }
        }
        let capture = enabled(LevelFilter::WARN);
        with_capture(&capture, || warn!(value = ?Noisy, "outer"));
        let taken = capture.take();
        let kept: Vec<_> = taken.records.iter().map(|r| r.message.as_str()).collect();
        assert_eq!(kept, ["outer"]);
    }
}
