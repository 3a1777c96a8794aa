//! HTTP API (axum): health for probes and Home Assistant, diagnostics behind an
//! API key, recent clips, Prometheus metrics.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::domain::{ClipEvent, ClipRecord, ClipStatus};
use crate::pipeline::Pipeline;
use crate::sources::{ClipSource, SourceHealth};
use crate::update::{UpdateError, Updater};

/// The pipeline's own loop must have run within this long, or it is wedged
/// (`/health`'s `pipeline` check, and what the systemd watchdog is fed on).
pub const HEARTBEAT_LIMIT_MS: i64 = 30_000;
const PING_TIMEOUT: Duration = Duration::from_secs(3);

pub struct AppState {
    pub pipeline: Arc<Pipeline>,
    pub sources: Vec<Arc<dyn ClipSource>>,
    pub api_key: Option<String>,
    pub device_id: String,
    /// The pipeline clock's monotonic time when the daemon started.
    pub started: Duration,
    pub updater: Arc<Updater>,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/v1/health", get(health))
        .route("/api/v1/diagnostics", get(diagnostics))
        .route("/api/v1/clips", get(clips))
        .route("/api/v1/clips/{id}", get(clip))
        .route("/api/v1/system", get(system))
        // A bundle is a whole root file system: streamed to disk, not buffered.
        .route("/api/v1/update", post(update).layer(DefaultBodyLimit::disable()))
        .route("/metrics", get(metrics))
        .with_state(state)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Healthy,
    Degraded,
    Unhealthy,
}

#[derive(Debug, Serialize)]
pub struct Health {
    pub status: HealthStatus,
    /// Component checks: `store`, `pipeline`, `storage`, `sources` (critical),
    /// `notifiers` (degrades).
    pub checks: serde_json::Map<String, serde_json::Value>,
    pub warnings: Vec<String>,
    pub sources: Vec<SourceHealth>,
    pub notifiers: Vec<NotifierHealth>,
}

#[derive(Debug, Serialize)]
pub struct NotifierHealth {
    pub name: String,
    pub connected: bool,
}

async fn ping(f: impl std::future::Future<Output = bool>) -> bool {
    tokio::time::timeout(PING_TIMEOUT, f).await.unwrap_or(false)
}

/// Healthy / degraded / unhealthy per the reference rules: the store, the
/// pipeline loop, storage and sources are critical; notifiers degrade.
pub async fn compute_health(state: &AppState) -> Health {
    let p = &state.pipeline;
    let store = p.store().clone();
    let store_ok = tokio::task::spawn_blocking(move || store.ping()).await.unwrap_or(false);
    let heartbeat_age = i64::try_from(p.heartbeat_age().as_millis()).unwrap_or(i64::MAX);
    let pipeline_ok = heartbeat_age < HEARTBEAT_LIMIT_MS;
    let storage_ok = ping(p.storage().ping()).await;
    let sources: Vec<SourceHealth> = state.sources.iter().map(|s| s.health()).collect();
    let sources_ok = sources.iter().all(|s| s.healthy);
    let mut notifiers = Vec::new();
    for n in p.notifiers().iter() {
        notifiers.push(NotifierHealth { name: n.name().to_owned(), connected: ping(n.ping()).await });
    }
    let notifiers_ok = notifiers.iter().all(|n| n.connected);

    let mut warnings = Vec::new();
    if let Ok(outbox) = p.store().outbox()
        && !outbox.is_empty()
    {
        warnings.push(format!("{} notification(s) waiting in the outbox", outbox.len()));
    }
    for s in sources.iter().filter(|s| !s.healthy) {
        warnings.push(format!(
            "camera {} unhealthy: {}",
            s.camera,
            s.last_error.as_deref().unwrap_or("no recent activity")
        ));
    }
    if !pipeline_ok {
        warnings.push(format!("pipeline loop silent for {} s", heartbeat_age / 1000));
    }

    let status = if !store_ok || !pipeline_ok || !storage_ok || !sources_ok {
        HealthStatus::Unhealthy
    } else if !notifiers_ok {
        HealthStatus::Degraded
    } else {
        HealthStatus::Healthy
    };
    let mut checks = serde_json::Map::new();
    for (k, v) in [
        ("store", store_ok),
        ("pipeline", pipeline_ok),
        ("storage", storage_ok),
        ("sources", sources_ok),
        ("notifiers", notifiers_ok),
    ] {
        checks.insert(k.into(), v.into());
    }
    Health { status, checks, warnings, sources, notifiers }
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let h = compute_health(&state).await;
    let code = if h.status == HealthStatus::Unhealthy { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (code, Json(h)).into_response()
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({ "error": message.into() }))).into_response()
}

/// Checks the `X-API-Key` header in constant time. With `required`, a box with
/// no key configured refuses; otherwise it lets the request through.
fn authorize(state: &AppState, headers: &HeaderMap, required: bool) -> Result<(), Box<Response>> {
    let Some(key) = &state.api_key else {
        return if required {
            Err(Box::new(error(StatusCode::FORBIDDEN, "disabled: set server.api_key_env to enable this endpoint")))
        } else {
            Ok(())
        };
    };
    let given = headers.get("x-api-key").map(|v| v.as_bytes()).unwrap_or_default();
    if bool::from(given.ct_eq(key.as_bytes())) {
        Ok(())
    } else {
        Err(Box::new(error(StatusCode::UNAUTHORIZED, "missing or wrong X-API-Key header")))
    }
}

async fn diagnostics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&state, &headers, true) {
        return *r;
    }
    let h = compute_health(&state).await;
    let p = &state.pipeline;
    let s = &p.stats;
    let store = p.store();
    let outbox: Vec<_> = store
        .outbox()
        .unwrap_or_default()
        .into_iter()
        .map(|(_, e)| {
            json!({
                "clip_id": e.clip_id, "notifier": e.notifier, "attempts": e.attempts,
                "last_error": e.last_error, "next_attempt_ms": e.next_attempt_ms, "expires_ms": e.expires_ms,
            })
        })
        .collect();
    let recent_problems: Vec<_> = store
        .recent_clips(200)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| matches!(r.status(), ClipStatus::Error | ClipStatus::Quarantined))
        .take(20)
        .map(|r| summary(&r))
        .collect();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "device_id": state.device_id,
        "uptime_s": p.clock().monotonic().saturating_sub(state.started).as_secs(),
        "health": h,
        "pipeline": {
            "in_flight": p.in_flight(),
            "clips_received": s.clips_received.load(Ordering::Relaxed),
            "clips_completed": s.clips_completed.load(Ordering::Relaxed),
            "clips_failed": s.clips_failed.load(Ordering::Relaxed),
            "clips_quarantined": s.clips_quarantined.load(Ordering::Relaxed),
            "alerts_delivered": s.alerts_delivered.load(Ordering::Relaxed),
            "alerts_expired": s.alerts_expired.load(Ordering::Relaxed),
        },
        "outbox": outbox,
        "sync_backlog": store.sync_backlog().unwrap_or(0),
        "recent_problems": recent_problems,
    }))
    .into_response()
}

/// A clip as the API and CLI show it: the record plus its derived status.
pub fn summary(r: &ClipRecord) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("status".into(), json!(r.status()));
    }
    v
}

#[derive(Debug, Deserialize)]
struct ClipsQuery {
    limit: Option<usize>,
    camera: Option<String>,
    status: Option<String>,
}

async fn clips(State(state): State<Arc<AppState>>, headers: HeaderMap, Query(q): Query<ClipsQuery>) -> Response {
    if let Err(r) = authorize(&state, &headers, false) {
        return *r;
    }
    let limit = q.limit.unwrap_or(50).min(1000);
    let store = state.pipeline.store().clone();
    let all = match tokio::task::spawn_blocking(move || store.recent_clips(usize::MAX)).await {
        Ok(Ok(all)) => all,
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, crate::telemetry::chain(&e)),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let list: Vec<_> = all
        .iter()
        .filter(|r| q.camera.as_deref().is_none_or(|c| r.clip.camera.as_str() == c))
        .filter(|r| q.status.as_deref().is_none_or(|s| r.status().as_str() == s))
        .take(limit)
        .map(summary)
        .collect();
    Json(json!({ "clips": list })).into_response()
}

async fn clip(State(state): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = authorize(&state, &headers, false) {
        return *r;
    }
    let store = state.pipeline.store().clone();
    let res = tokio::task::spawn_blocking(move || -> Result<_, crate::store::StoreError> {
        Ok(store.get_clip(&id)?.map(|r| (r, store.events_for(&id))))
    })
    .await;
    match res {
        Ok(Ok(Some((r, events)))) => {
            let events: Vec<ClipEvent> = events.unwrap_or_default();
            Json(json!({ "clip": summary(&r), "events": events })).into_response()
        }
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, "no such clip"),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, crate::telemetry::chain(&e)),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn system(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&state, &headers, false) {
        return *r;
    }
    Json(state.updater.status()).into_response()
}

/// `{"url": "…"}` in a JSON body: download the bundle from there.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateFromUrl {
    url: String,
}

fn update_error(e: &UpdateError) -> Response {
    let code = match e {
        UpdateError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        UpdateError::Busy => StatusCode::CONFLICT,
        UpdateError::BadUrl(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(code, crate::telemetry::chain(e))
}

/// Installs an update: the bundle as the body (`application/octet-stream`), or
/// `{"url": "…"}` (`application/json`) to download it. Answers 202 once the
/// bundle is on disk (upload) or the download started; `GET /api/v1/system`
/// follows the install.
async fn update(State(state): State<Arc<AppState>>, headers: HeaderMap, request: Request) -> Response {
    if let Err(r) = authorize(&state, &headers, true) {
        return *r;
    }
    let updater = &state.updater;
    let job = match updater.begin() {
        Ok(job) => job,
        Err(e) => return update_error(&e),
    };
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if is_json {
        let bytes = match axum::body::to_bytes(request.into_body(), 64 * 1024).await {
            Ok(b) => b,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("cannot read the request: {e}")),
        };
        let body: UpdateFromUrl = match serde_json::from_slice(&bytes) {
            Ok(b) => b,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("expected {{\"url\": \"…\"}}: {e}")),
        };
        if let Err(e) = crate::update::check_url(&body.url) {
            return update_error(&e);
        }
        updater.spawn_url_install(job, body.url);
    } else {
        match updater.receive(&job, request.into_body().into_data_stream()).await {
            Ok(0) => {
                updater.failed(&UpdateError::Upload("empty body".into()));
                return error(StatusCode::BAD_REQUEST, "the body is empty: send the bundle (curl --data-binary @file)");
            }
            Ok(bytes) => tracing::info!(bytes, "update bundle uploaded"),
            Err(e) => {
                updater.failed(&e);
                return update_error(&e);
            }
        }
        updater.spawn_install(job);
    }
    (StatusCode::ACCEPTED, Json(updater.status())).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let s = &state.pipeline.stats;
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, v: u64| {
        out.push_str(&format!("# HELP homesec_{name} {help}\n# TYPE homesec_{name} counter\nhomesec_{name} {v}\n"));
    };
    counter("clips_received_total", "Clips handed in by sources.", s.clips_received.load(Ordering::Relaxed));
    counter("clips_completed_total", "Clips the pipeline finished.", s.clips_completed.load(Ordering::Relaxed));
    counter("clips_failed_total", "Clips whose filter failed.", s.clips_failed.load(Ordering::Relaxed));
    counter(
        "clips_quarantined_total",
        "Unreadable clip files moved aside.",
        s.clips_quarantined.load(Ordering::Relaxed),
    );
    counter("alerts_delivered_total", "Notifications delivered.", s.alerts_delivered.load(Ordering::Relaxed));
    counter("alerts_expired_total", "Notifications dropped after their TTL.", s.alerts_expired.load(Ordering::Relaxed));
    let outbox = state.pipeline.store().outbox().map(|o| o.len()).unwrap_or(0);
    out.push_str(&format!(
        "# HELP homesec_outbox_size Notifications waiting for delivery.\n# TYPE homesec_outbox_size gauge\nhomesec_outbox_size {outbox}\n"
    ));
    out.push_str(&format!(
        "# HELP homesec_clips_in_flight Clips being processed.\n# TYPE homesec_clips_in_flight gauge\nhomesec_clips_in_flight {}\n",
        state.pipeline.in_flight()
    ));
    ([("content-type", "text/plain; version=0.0.4")], out).into_response()
}
