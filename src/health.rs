//! Typed health, shared by the API (`/health`, diagnostics), the systemd
//! watchdog and boot confirmation.
//!
//! Two questions with two answers:
//! - [`Health`]: is the box doing its job? The store, the pipeline's loop,
//!   the sources are critical (unhealthy without them); storage, notifiers,
//!   the disk budget and the Postgres sync only degrade it: clips wait on the
//!   box and their uploads and alerts are retried.
//! - [`Liveness`]: is the daemon itself alive? Its pipeline loop runs and its
//!   store answers. This is what the watchdog stands for: restarting the daemon
//!   would not fix an offline camera.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::pipeline::Pipeline;
use crate::retention::DiskStatus;
use crate::sources::{ClipSource, SourceHealth};
use crate::store::Store;

/// The pipeline's own loop must have run within this long, or it is wedged:
/// the `pipeline` check, and the watchdog's liveness, so that the API reports
/// unhealthy when the watchdog starves.
pub const HEARTBEAT_LIMIT: Duration = Duration::from_secs(30);
/// How long a storage backend or notifier may take to answer a ping.
const PING_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the store may take to answer the watchdog's ping.
const STORE_PING_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Healthy,
    Degraded,
    Unhealthy,
}

/// The component checks, each passed or not. Serialized as the API has always
/// shown them: a JSON object of booleans, keys in alphabetical order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Checks {
    /// Postgres sync copies the outbox, or is not configured (degrades only).
    pub db: bool,
    /// The disk budget holds, or something may still go to hold it (degrades only).
    pub disk: bool,
    /// Every notifier answers its ping (degrades only).
    pub notifiers: bool,
    /// The pipeline's own loop ran within [`HEARTBEAT_LIMIT`] (critical).
    pub pipeline: bool,
    /// Every camera source reports itself healthy (critical).
    pub sources: bool,
    /// The storage backend answers its ping (degrades only).
    pub storage: bool,
    /// The redb store answers a read (critical).
    pub store: bool,
}

impl Checks {
    /// The daemon itself works: its store answers and its pipeline runs.
    pub fn daemon_up(&self) -> bool {
        self.store && self.pipeline
    }

    pub fn status(&self) -> HealthStatus {
        if !self.daemon_up() || !self.sources {
            HealthStatus::Unhealthy
        } else if !self.storage || !self.notifiers || !self.disk || !self.db {
            HealthStatus::Degraded
        } else {
            HealthStatus::Healthy
        }
    }

    /// The names of the checks that did not pass.
    pub fn failing(&self) -> Vec<&'static str> {
        [
            ("store", self.store),
            ("pipeline", self.pipeline),
            ("storage", self.storage),
            ("sources", self.sources),
            ("notifiers", self.notifiers),
            ("disk", self.disk),
            ("db", self.db),
        ]
        .into_iter()
        .filter_map(|(name, ok)| (!ok).then_some(name))
        .collect()
    }
}

/// The box's health, as `/health` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub status: HealthStatus,
    pub checks: Checks,
    pub warnings: Vec<String>,
    pub sources: Vec<SourceHealth>,
    pub notifiers: Vec<NotifierHealth>,
    /// The data partition as the last retention pass left it.
    pub disk: DiskStatus,
}

#[derive(Debug, Clone, Serialize)]
pub struct NotifierHealth {
    pub name: String,
    pub connected: bool,
    /// Why it is not connected, when it says.
    pub last_error: Option<String>,
}

/// What [`check`] measured, before it is judged.
#[derive(Debug, Clone)]
pub struct Probe {
    pub store_ok: bool,
    pub heartbeat_age: Duration,
    pub storage_ok: bool,
    /// The storage backend's name, and why it failed when it says.
    pub storage: (String, Option<String>),
    pub sources: Vec<SourceHealth>,
    pub notifiers: Vec<NotifierHealth>,
    /// Notifications waiting in the outbox.
    pub outbox_len: u64,
    pub disk: DiskStatus,
    /// Why the Postgres sync does not copy (`None`: it does, or is not configured).
    pub db_problem: Option<String>,
}

impl Health {
    /// Judges measurements by the rules in the module docs.
    pub fn judge(p: Probe) -> Health {
        let pipeline_ok = heartbeat_ok(p.heartbeat_age);
        let checks = Checks {
            db: p.db_problem.is_none(),
            disk: p.disk.stuck.is_none(),
            notifiers: p.notifiers.iter().all(|n| n.connected),
            pipeline: pipeline_ok,
            sources: p.sources.iter().all(|s| s.healthy),
            storage: p.storage_ok,
            store: p.store_ok,
        };
        let mut warnings = Vec::new();
        if p.outbox_len > 0 {
            warnings.push(format!("{} notification(s) waiting in the outbox", p.outbox_len));
        }
        for s in p.sources.iter().filter(|s| !s.healthy) {
            warnings.push(format!(
                "camera {} unhealthy: {}",
                s.camera,
                s.last_error.as_deref().unwrap_or("no recent activity")
            ));
        }
        if !p.storage_ok {
            let (name, why) = &p.storage;
            warnings.push(format!("storage {name} unreachable: {}", why.as_deref().unwrap_or("does not answer")));
        }
        for n in p.notifiers.iter().filter(|n| !n.connected) {
            let why = n.last_error.as_deref().unwrap_or("does not answer");
            warnings.push(format!("notifier {} unreachable: {why}", n.name));
        }
        if !pipeline_ok {
            warnings.push(silent(p.heartbeat_age));
        }
        if let Some(why) = &p.disk.stuck {
            warnings.push(format!("disk: {why}"));
        }
        warnings.extend(p.db_problem);
        Health { status: checks.status(), checks, warnings, sources: p.sources, notifiers: p.notifiers, disk: p.disk }
    }
}

/// The pipeline's loop ran recently enough: the one rule for `/health` and the watchdog.
fn heartbeat_ok(heartbeat_age: Duration) -> bool {
    heartbeat_age < HEARTBEAT_LIMIT
}

fn silent(heartbeat_age: Duration) -> String {
    format!("pipeline loop silent for {} s", heartbeat_age.as_secs())
}

async fn ping(f: impl std::future::Future<Output = bool>) -> bool {
    tokio::time::timeout(PING_TIMEOUT, f).await.unwrap_or(false)
}

async fn store_answers(store: &Store) -> bool {
    store.run(|s| Ok(s.ping())).await.unwrap_or(false)
}

/// Measures the box's health now (the store, the pipeline's heartbeat,
/// storage, `sources`, every notifier; `disk` as retention last saw it, `db`
/// as the Postgres sync last saw it) and judges it.
pub async fn check(
    pipeline: &Pipeline,
    sources: &[Arc<dyn ClipSource>],
    disk: DiskStatus,
    db_problem: Option<String>,
) -> Health {
    let store_ok = store_answers(pipeline.store()).await;
    let heartbeat_age = pipeline.heartbeat_age();
    let storage_ok = ping(pipeline.storage().ping()).await;
    let storage =
        (pipeline.storage().name().to_owned(), if storage_ok { None } else { pipeline.storage().last_error() });
    let sources = sources.iter().map(|s| s.health()).collect();
    let mut notifiers = Vec::new();
    for n in pipeline.notifiers().iter() {
        let connected = ping(n.ping()).await;
        let last_error = if connected { None } else { n.last_error() };
        notifiers.push(NotifierHealth { name: n.name().to_owned(), connected, last_error });
    }
    let outbox_len = pipeline.store().run(|s| s.outbox_len()).await.unwrap_or(0);
    Health::judge(Probe {
        store_ok,
        heartbeat_age,
        storage_ok,
        storage,
        sources,
        notifiers,
        outbox_len,
        disk,
        db_problem,
    })
}

/// Whether the daemon itself is alive (what the systemd watchdog is fed on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// How long ago the pipeline's own loop ran.
    pub heartbeat_age: Duration,
    /// The store answered a read in time.
    pub store_ok: bool,
}

impl Liveness {
    /// `Err` holds the reason, for systemd's `STATUS=`.
    pub fn verdict(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if !heartbeat_ok(self.heartbeat_age) {
            problems.push(silent(self.heartbeat_age));
        }
        if !self.store_ok {
            problems.push("store does not answer".to_owned());
        }
        if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
    }
}

/// Measures the daemon's liveness now: the pipeline's heartbeat, and a store
/// read within a few seconds.
pub async fn liveness(pipeline: &Pipeline) -> Liveness {
    let heartbeat_age = pipeline.heartbeat_age();
    let store_ok = tokio::time::timeout(STORE_PING_TIMEOUT, store_answers(pipeline.store())).await.unwrap_or(false);
    Liveness { heartbeat_age, store_ok }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(camera: &str, healthy: bool) -> SourceHealth {
        SourceHealth {
            camera: camera.into(),
            backend: "folder",
            healthy,
            last_heartbeat_age_s: Some(1.5),
            last_error: (!healthy).then(|| "connection refused".to_owned()),
            fps: None,
            reconnects: None,
            link: None,
        }
    }

    fn probe() -> Probe {
        Probe {
            store_ok: true,
            heartbeat_age: Duration::from_secs(1),
            storage_ok: true,
            storage: ("local".into(), None),
            sources: vec![source("porch", true)],
            notifiers: vec![NotifierHealth { name: "mqtt".into(), connected: true, last_error: None }],
            outbox_len: 0,
            disk: DiskStatus::default(),
            db_problem: None,
        }
    }

    #[test]
    fn postgres_out_of_reach_only_degrades_and_says_why() {
        let mut p = probe();
        p.db_problem = Some("db: cannot reach Postgres: connection refused".into());
        let h = Health::judge(p);
        assert_eq!(h.status, HealthStatus::Degraded);
        assert!(h.checks.daemon_up());
        assert_eq!(h.checks.failing(), vec!["db"]);
        assert_eq!(h.warnings, vec!["db: cannot reach Postgres: connection refused"]);
    }

    #[test]
    fn everything_up_is_healthy() {
        let h = Health::judge(probe());
        assert_eq!(h.status, HealthStatus::Healthy);
        assert!(h.warnings.is_empty());
        assert!(h.checks.failing().is_empty());
    }

    #[test]
    fn a_disk_budget_that_cannot_be_held_only_degrades_and_says_why() {
        let mut p = probe();
        p.disk.stuck =
            Some("9.0 MB used of a 8.0 MB quota; nothing more may go: 3 clips (6.3 MB) not uploaded yet".into());
        let h = Health::judge(p);
        assert_eq!(h.status, HealthStatus::Degraded);
        assert_eq!(h.checks.failing(), vec!["disk"]);
        assert!(h.warnings[0].starts_with("disk: 9.0 MB used of a 8.0 MB quota"), "{:?}", h.warnings);
    }

    #[test]
    fn a_storage_out_of_reach_only_degrades_and_says_why() {
        // Clips wait on the box and their uploads are retried; an update must
        // not be rolled back because the cloud is away.
        let mut p = probe();
        p.storage_ok = false;
        p.storage.1 = Some("S3 bucket `clips` at http://nas:9000: connection refused".into());
        let h = Health::judge(p);
        assert_eq!(h.status, HealthStatus::Degraded);
        assert!(h.checks.daemon_up());
        assert_eq!(
            h.warnings,
            vec!["storage local unreachable: S3 bucket `clips` at http://nas:9000: connection refused"]
        );
    }

    #[test]
    fn a_notifier_down_only_degrades() {
        let mut p = probe();
        p.notifiers[0].connected = false;
        p.notifiers[0].last_error = Some("TLS: the broker's certificate has expired".into());
        p.outbox_len = 2;
        let h = Health::judge(p);
        assert_eq!(h.status, HealthStatus::Degraded);
        assert!(h.checks.daemon_up());
        assert_eq!(
            h.warnings,
            vec![
                "2 notification(s) waiting in the outbox",
                "notifier mqtt unreachable: TLS: the broker's certificate has expired"
            ]
        );
        assert_eq!(h.checks.failing(), vec!["notifiers"]);
    }

    #[test]
    fn store_pipeline_and_sources_are_critical() {
        let down: [fn(&mut Probe); 3] =
            [|p| p.store_ok = false, |p| p.heartbeat_age = HEARTBEAT_LIMIT, |p| p.sources.push(source("gate", false))];
        for (i, f) in down.into_iter().enumerate() {
            let mut p = probe();
            f(&mut p);
            let h = Health::judge(p);
            assert_eq!(h.status, HealthStatus::Unhealthy, "case {i}");
            assert_eq!(h.checks.daemon_up(), i >= 2, "case {i}: only the store and the pipeline are the daemon");
        }
        let mut p = probe();
        p.heartbeat_age = Duration::from_millis(45_500);
        p.sources.push(source("gate", false));
        let h = Health::judge(p);
        assert_eq!(h.warnings, vec!["camera gate unhealthy: connection refused", "pipeline loop silent for 45 s"]);
        assert_eq!(h.checks.failing(), vec!["pipeline", "sources"]);
    }

    #[test]
    fn the_json_keeps_the_apis_field_names_and_order() {
        let mut p = probe();
        p.notifiers[0].connected = false;
        let json = serde_json::to_string(&Health::judge(p)).unwrap();
        assert_eq!(
            json,
            r#"{"status":"degraded","checks":{"db":true,"disk":true,"notifiers":false,"pipeline":true,"sources":true,"storage":true,"store":true},"warnings":["notifier mqtt unreachable: does not answer"],"sources":[{"camera":"porch","backend":"folder","healthy":true,"last_heartbeat_age_s":1.5,"last_error":null}],"notifiers":[{"name":"mqtt","connected":false,"last_error":null}],"disk":{"used_bytes":0,"free_bytes":0,"total_bytes":0,"quota_bytes":0,"min_free_bytes":0,"stuck":null,"last_pass_ms":null,"pruned_clips":0,"pruned_bytes":0}}"#
        );
        // The checks object is what a JSON map of the same booleans gave.
        let checks = Checks {
            db: true,
            disk: true,
            notifiers: false,
            pipeline: true,
            sources: false,
            storage: true,
            store: true,
        };
        let mut map = serde_json::Map::new();
        let pairs = [("store", true), ("pipeline", true), ("storage", true), ("sources", false), ("notifiers", false)];
        for (k, v) in pairs.into_iter().chain([("disk", true), ("db", true)]) {
            map.insert(k.into(), v.into());
        }
        assert_eq!(serde_json::to_string(&checks).unwrap(), serde_json::to_string(&map).unwrap());
    }

    #[test]
    fn the_watchdog_is_fed_only_while_the_pipeline_runs_and_the_store_answers() {
        let judge =
            |age_ms: u64, store_ok: bool| Liveness { heartbeat_age: Duration::from_millis(age_ms), store_ok }.verdict();
        let limit_ms = HEARTBEAT_LIMIT.as_millis() as u64;
        assert_eq!(judge(1_000, true), Ok(()));
        assert_eq!(judge(limit_ms - 1, true), Ok(()));
        assert_eq!(judge(45_000, true), Err("pipeline loop silent for 45 s".into()));
        assert_eq!(judge(0, false), Err("store does not answer".into()));
        assert!(judge(limit_ms, false).is_err_and(|e| e.contains("silent") && e.contains("store")));
    }
}
