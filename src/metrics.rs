//! Prometheus metrics: the process's one registry (served at `/metrics`), the
//! handles other modules update, and a collector for the process's CPU time
//! and resident memory.
//!
//! A leaf above `domain` (it takes the pipeline's `Stage` for its label): every
//! other module may update it.
//! Handles are atomics (a [`Counter`] is an `Arc<AtomicU64>`): a camera takes
//! its [`CameraMetrics`] once, and the per-frame cost is one relaxed atomic add,
//! with no lock and no allocation. Label sets are bounded: stages, outboxes and
//! delivery states are enums, and camera and notifier names (from the config)
//! are capped at [`MAX_LABEL_VALUES`] each, any further name counting as `other`.

use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex, OnceLock, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::ConstCounter;
pub use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::domain::Stage;

/// Most distinct values a `camera` or `notifier` label takes; later names are `other`.
pub const MAX_LABEL_VALUES: usize = 64;

/// The label value names beyond [`MAX_LABEL_VALUES`] share.
pub const OTHER: &str = "other";

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// A durable queue waiting for a peer, as the `outbox` label names it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outbox {
    /// Notifications waiting for delivery.
    Notifications,
    /// Clip events waiting for Postgres.
    Sync,
    /// Log records waiting for Postgres.
    Logs,
}

impl Outbox {
    pub fn as_str(self) -> &'static str {
        match self {
            Outbox::Notifications => "notifications",
            Outbox::Sync => "sync",
            Outbox::Logs => "logs",
        }
    }
}

/// How one notification attempt ended, as the `state` label names it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// Failed; kept in the outbox for another attempt.
    Failed,
    /// Dropped undelivered after its TTL.
    Expired,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Delivered => "delivered",
            Delivery::Failed => "failed",
            Delivery::Expired => "expired",
        }
    }
}

macro_rules! label_value {
    ($($t:ty),*) => {$(
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }
    )*};
}
label_value!(Stage, Outbox, Delivery);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CameraLabel {
    camera: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: Stage,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutboxLabel {
    outbox: Outbox,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotifierLabel {
    notifier: String,
    state: Delivery,
}

/// A label's values, first come first kept, at most `limit` of them.
#[derive(Debug)]
pub struct BoundedLabels {
    limit: usize,
    seen: Mutex<Vec<String>>,
}

impl BoundedLabels {
    pub fn new(limit: usize) -> Self {
        Self { limit, seen: Mutex::new(Vec::new()) }
    }

    /// `name` while fewer than `limit` names came before it, else [`OTHER`].
    pub fn value(&self, name: &str) -> String {
        // Only pushes happen under the lock: a panic cannot leave it half-done.
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.iter().any(|s| s == name) {
            return name.to_owned();
        }
        if seen.len() < self.limit {
            seen.push(name.to_owned());
            return name.to_owned();
        }
        OTHER.to_owned()
    }
}

/// One camera's counters: take them once, add per frame.
#[derive(Clone, Debug, Default)]
pub struct CameraMetrics {
    /// Frames received on the camera's main (recorded) stream.
    pub frames_received: Counter,
    /// Detect-stream pictures decoded and run through motion detection.
    pub frames_decoded: Counter,
    /// Motion starts.
    pub motion_events: Counter,
    /// Frames handed to the shared object detector.
    pub detector_submitted: Counter,
    /// Frames the detector's queue dropped (the oldest, when it was full).
    pub detector_dropped: Counter,
}

/// The pipeline's clip and alert counters (shared with the diagnostics).
#[derive(Clone, Debug, Default)]
pub struct ClipCounters {
    pub clips_received: Counter,
    pub clips_completed: Counter,
    pub clips_failed: Counter,
    pub clips_quarantined: Counter,
    pub alerts_delivered: Counter,
    pub alerts_expired: Counter,
}

/// What `/metrics` reads from the daemon's state at each scrape.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScrapeValues {
    pub clips_in_flight: u64,
    pub outbox_notifications: u64,
    pub outbox_sync: u64,
    pub outbox_logs: u64,
    pub disk_used_bytes: u64,
    pub disk_free_bytes: u64,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 10 ms to about 5.5 min (doubling).
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 16))
}

/// The registry and every metric in it.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    cameras: BoundedLabels,
    notifiers: BoundedLabels,
    frames_received: Family<CameraLabel, Counter>,
    frames_decoded: Family<CameraLabel, Counter>,
    motion_events: Family<CameraLabel, Counter>,
    detector_submitted: Family<CameraLabel, Counter>,
    detector_dropped: Family<CameraLabel, Counter>,
    inference: Histogram,
    stage_latency: HistogramFamily<StageLabel>,
    alert_latency: Histogram,
    vlm_prompt_tokens: Family<CameraLabel, Counter>,
    vlm_completion_tokens: Family<CameraLabel, Counter>,
    notifications: Family<NotifierLabel, Counter>,
    outbox_depth: Family<OutboxLabel, Gauge>,
    clips_in_flight: Gauge,
    disk_used: Gauge,
    disk_free: Gauge,
    clip_counters: OnceLock<ClipCounters>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered (counters at zero).
    pub fn new() -> Self {
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            cameras: BoundedLabels::new(MAX_LABEL_VALUES),
            notifiers: BoundedLabels::new(MAX_LABEL_VALUES),
            frames_received: Family::default(),
            frames_decoded: Family::default(),
            motion_events: Family::default(),
            detector_submitted: Family::default(),
            detector_dropped: Family::default(),
            // 1 ms to about 1 s: a detector frame on a CPU or an accelerator.
            inference: Histogram::new(exponential_buckets(0.001, 2.0, 11)),
            stage_latency: Family::new_with_constructor(latency_histogram),
            alert_latency: latency_histogram(),
            vlm_prompt_tokens: Family::default(),
            vlm_completion_tokens: Family::default(),
            notifications: Family::default(),
            outbox_depth: Family::default(),
            clips_in_flight: Gauge::default(),
            disk_used: Gauge::default(),
            disk_free: Gauge::default(),
            clip_counters: OnceLock::new(),
        };
        {
            let mut r = m.registry.lock().unwrap_or_else(PoisonError::into_inner);
            let counters = [
                ("homesec_camera_frames_received", "Frames received on the main stream.", &m.frames_received),
                ("homesec_camera_frames_decoded", "Detect-stream pictures decoded for motion.", &m.frames_decoded),
                ("homesec_camera_motion_events", "Motion starts.", &m.motion_events),
                ("homesec_detector_frames_submitted", "Live frames handed to the detector.", &m.detector_submitted),
                ("homesec_detector_frames_dropped", "Live frames the detector queue dropped.", &m.detector_dropped),
                ("homesec_vlm_prompt_tokens", "VLM prompt tokens (the endpoint's usage).", &m.vlm_prompt_tokens),
                ("homesec_vlm_completion_tokens", "VLM completion tokens.", &m.vlm_completion_tokens),
            ];
            for (name, help, family) in counters {
                r.register(name, help, family.clone());
            }
            r.register_with_unit(
                "homesec_detector_inference",
                "Object detector inference time per frame.",
                Unit::Seconds,
                m.inference.clone(),
            );
            r.register_with_unit(
                "homesec_stage_duration",
                "Pipeline stage time per attempt (notify: per delivery attempt).",
                Unit::Seconds,
                m.stage_latency.clone(),
            );
            r.register_with_unit(
                "homesec_alert_latency",
                "Clip end to its final alert delivered.",
                Unit::Seconds,
                m.alert_latency.clone(),
            );
            r.register("homesec_notifications", "Notification attempts by outcome.", m.notifications.clone());
            r.register("homesec_outbox_depth", "Entries waiting in a durable outbox.", m.outbox_depth.clone());
            r.register("homesec_clips_in_flight", "Clips being processed.", m.clips_in_flight.clone());
            r.register_with_unit("homesec_disk_used", "Bytes HomeSec keeps on disk.", Unit::Bytes, m.disk_used.clone());
            r.register_with_unit(
                "homesec_disk_free",
                "Free bytes on the recordings file system.",
                Unit::Bytes,
                m.disk_free.clone(),
            );
            r.register_collector(Box::new(ProcessCollector));
        }
        m
    }

    /// `camera`'s counters (the label is bounded: see [`MAX_LABEL_VALUES`]).
    pub fn camera(&self, camera: &str) -> CameraMetrics {
        let label = CameraLabel { camera: self.cameras.value(camera) };
        CameraMetrics {
            frames_received: self.frames_received.get_or_create_owned(&label),
            frames_decoded: self.frames_decoded.get_or_create_owned(&label),
            motion_events: self.motion_events.get_or_create_owned(&label),
            detector_submitted: self.detector_submitted.get_or_create_owned(&label),
            detector_dropped: self.detector_dropped.get_or_create_owned(&label),
        }
    }

    /// Registers the pipeline's counters (the daemon's one pipeline; later calls are ignored).
    pub fn adopt_clip_counters(&self, counters: &ClipCounters) {
        if self.clip_counters.set(counters.clone()).is_err() {
            return;
        }
        let mut r = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        let c = counters.clone();
        let all = [
            ("homesec_clips_received", "Clips handed in by sources.", c.clips_received),
            ("homesec_clips_completed", "Clips the pipeline finished.", c.clips_completed),
            ("homesec_clips_failed", "Clips whose filter failed.", c.clips_failed),
            ("homesec_clips_quarantined", "Unreadable clip files moved aside.", c.clips_quarantined),
            ("homesec_alerts_delivered", "Notifications delivered.", c.alerts_delivered),
            ("homesec_alerts_expired", "Notifications dropped after their TTL.", c.alerts_expired),
        ];
        for (name, help, counter) in all {
            r.register(name, help, counter);
        }
    }

    /// One detector frame's inference time.
    pub fn observe_inference(&self, seconds: f64) {
        self.inference.observe(seconds);
    }

    /// One stage attempt's time.
    pub fn observe_stage(&self, stage: Stage, seconds: f64) {
        self.stage_latency.get_or_create(&StageLabel { stage }).observe(seconds);
    }

    /// Clip end to its final alert delivered.
    pub fn observe_alert_latency(&self, seconds: f64) {
        self.alert_latency.observe(seconds.max(0.0));
    }

    /// Tokens one VLM answer cost.
    pub fn vlm_tokens(&self, camera: &str, prompt: u64, completion: u64) {
        let label = CameraLabel { camera: self.cameras.value(camera) };
        self.vlm_prompt_tokens.get_or_create(&label).inc_by(prompt);
        self.vlm_completion_tokens.get_or_create(&label).inc_by(completion);
    }

    /// One notification attempt's outcome.
    pub fn notification(&self, notifier: &str, state: Delivery) {
        let label = NotifierLabel { notifier: self.notifiers.value(notifier), state };
        self.notifications.get_or_create(&label).inc();
    }

    /// Sets the gauges read from the daemon's state.
    pub fn set(&self, v: &ScrapeValues) {
        let g = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.clips_in_flight.set(g(v.clips_in_flight));
        for (outbox, n) in [
            (Outbox::Notifications, v.outbox_notifications),
            (Outbox::Sync, v.outbox_sync),
            (Outbox::Logs, v.outbox_logs),
        ] {
            self.outbox_depth.get_or_create(&OutboxLabel { outbox }).set(g(n));
        }
        self.disk_used.set(g(v.disk_used_bytes));
        self.disk_free.set(g(v.disk_free_bytes));
    }

    /// The registry in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let r = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        // Writing to a String cannot fail; a metric's own encoder failing would
        // leave the text cut short, which a scraper reports.
        if prometheus_client::encoding::text::encode(&mut out, &r).is_err() {
            let _ = writeln!(out, "# EOF");
        }
        out
    }
}

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// CPU seconds (user + system) from `/proc/self/stat`'s text.
pub fn cpu_seconds(stat: &str, ticks_per_second: u64) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold spaces: count after its `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime), counted from 1; `rest` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    (ticks_per_second > 0).then(|| (utime + stime) as f64 / ticks_per_second as f64)
}

/// Resident bytes from `/proc/self/statm`'s text (its second field, in pages).
pub fn resident_bytes(statm: &str, page_size: u64) -> Option<u64> {
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size)
}

/// The process's CPU time and resident memory, read at each scrape (Linux;
/// elsewhere the two metrics are absent).
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        if let Some(cpu) = stat.and_then(|s| cpu_seconds(&s, rustix::param::clock_ticks_per_second())) {
            let counter = ConstCounter::new(cpu);
            let metric = encoder.encode_descriptor(
                "process_cpu",
                "User and system CPU time the process spent.",
                Some(&Unit::Seconds),
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        let statm = std::fs::read_to_string("/proc/self/statm").ok();
        if let Some(rss) = statm.and_then(|s| resident_bytes(&s, rustix::param::page_size() as u64)) {
            let gauge = ConstGauge::new(i64::try_from(rss).unwrap_or(i64::MAX));
            let metric = encoder.encode_descriptor(
                "process_resident_memory",
                "Resident memory of the process.",
                Some(&Unit::Bytes),
                gauge.metric_type(),
            )?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_user_plus_system_ticks_even_with_a_spaced_command_name() {
        let stat = "4242 (homesec worker) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 50 0 0 20 0 9 0 1000 1 2 3";
        assert_eq!(cpu_seconds(stat, 100), Some(3.0));
        assert_eq!(cpu_seconds("4242 (x) S 1", 100), None, "a cut-short line has no CPU time");
        assert_eq!(cpu_seconds(stat, 0), None);
    }

    #[test]
    fn resident_memory_is_pages_times_page_size() {
        assert_eq!(resident_bytes("10000 2500 300 20 0 4000 0\n", 4096), Some(2500 * 4096));
        assert_eq!(resident_bytes("10000", 4096), None);
    }

    #[test]
    fn the_process_collector_reads_this_process() {
        let text = Metrics::new().encode();
        let value = |name: &str| -> f64 {
            let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in\n{text}"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert!(value("process_resident_memory_bytes ") > 1e6, "a test process holds more than a megabyte");
        assert!(value("process_cpu_seconds_total ") >= 0.0);
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn camera_and_notifier_labels_stay_bounded() {
        let labels = BoundedLabels::new(2);
        assert_eq!(labels.value("porch"), "porch");
        assert_eq!(labels.value("yard"), "yard");
        assert_eq!(labels.value("garage"), OTHER);
        assert_eq!(labels.value("porch"), "porch", "a known name keeps its value");

        let m = Metrics::new();
        for i in 0..MAX_LABEL_VALUES + 10 {
            m.camera(&format!("cam{i}")).frames_received.inc();
            m.notification(&format!("n{i}"), Delivery::Delivered);
        }
        let text = m.encode();
        let series =
            |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).map(str::to_owned).collect::<Vec<_>>();
        let frames = series("homesec_camera_frames_received_total{");
        assert_eq!(frames.len(), MAX_LABEL_VALUES + 1, "{frames:?}");
        assert!(frames.contains(&"homesec_camera_frames_received_total{camera=\"other\"} 10".to_owned()));
        assert_eq!(series("homesec_notifications_total{").len(), MAX_LABEL_VALUES + 1);
    }

    #[test]
    fn a_camera_handle_moves_the_registry_series() {
        let m = Metrics::new();
        let porch = m.camera("porch");
        porch.frames_received.inc_by(3);
        m.camera("porch").motion_events.inc();
        m.observe_stage(Stage::Vlm, 1.5);
        m.set(&ScrapeValues { outbox_sync: 7, ..ScrapeValues::default() });
        let text = m.encode();
        assert!(text.contains("homesec_camera_frames_received_total{camera=\"porch\"} 3\n"), "{text}");
        assert!(text.contains("homesec_camera_motion_events_total{camera=\"porch\"} 1\n"));
        assert!(text.contains("homesec_stage_duration_seconds_count{stage=\"vlm\"} 1\n"));
        assert!(text.contains("homesec_outbox_depth{outbox=\"sync\"} 7\n"));
    }

    #[test]
    fn clip_counters_register_once() {
        let m = Metrics::new();
        let c = ClipCounters::default();
        m.adopt_clip_counters(&c);
        m.adopt_clip_counters(&ClipCounters::default());
        c.clips_received.inc();
        let text = m.encode();
        assert_eq!(text.matches("# TYPE homesec_clips_received counter").count(), 1);
        assert!(text.contains("homesec_clips_received_total 1\n"));
    }
}
