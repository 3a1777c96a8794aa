//! HTTP API (axum): health for probes and Home Assistant, diagnostics behind an
//! API key, recent clips, Prometheus metrics.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::domain::{ClipEvent, ClipRecord, ClipStatus};
use crate::health::HealthStatus;
use crate::pipeline::Pipeline;
use crate::sources::ClipSource;
use crate::store::{ClipQuery, Cursor, Set};
use crate::update::{UpdateError, Updater};

pub struct AppState {
    pub pipeline: Arc<Pipeline>,
    pub sources: Vec<Arc<dyn ClipSource>>,
    pub api_key: Option<String>,
    pub device_id: String,
    /// The pipeline clock's monotonic time when the daemon started.
    pub started: Duration,
    pub updater: Arc<Updater>,
    /// The shared object detector's live side (frames sent and dropped per camera).
    pub detector: Option<crate::filter::service::LiveDetector>,
    /// The disk budget: its status, and passes on request (`homesec cleanup`).
    pub retention: Arc<crate::retention::Retention>,
    /// The Postgres sync, when configured.
    pub sync: Option<crate::sync::SyncHandle>,
}

impl AppState {
    /// The box's health now.
    pub async fn health(&self) -> crate::health::Health {
        let db = self.sync.as_ref().and_then(|s| s.problem());
        crate::health::check(&self.pipeline, &self.sources, self.retention.disk(), db).await
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/v1/health", get(health))
        .route("/api/v1/diagnostics", get(diagnostics))
        .route("/api/v1/clips", get(clips))
        .route("/api/v1/clips/{id}", get(clip))
        .route("/api/v1/clips/{id}/reanalyze", post(reanalyze))
        .route("/api/v1/cameras/{name}/frame.jpg", get(camera_frame))
        .route("/api/v1/system", get(system))
        .route("/api/v1/cleanup", get(cleanup_plan).post(cleanup_run))
        // A bundle is a whole root file system: streamed to disk, not buffered.
        .route("/api/v1/update", post(update).layer(DefaultBodyLimit::disable()))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let h = state.health().await;
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

/// How long a camera has to deliver a picture for [`camera_frame`].
const FRAME_WAIT: Duration = Duration::from_secs(5);

/// A live camera's next picture as a JPEG (what `homesec zones` draws on).
async fn camera_frame(State(state): State<Arc<AppState>>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Err(r) = authorize(&state, &headers, false) {
        return *r;
    }
    let Some(source) = state.sources.iter().find(|s| s.camera().as_str() == name) else {
        return error(StatusCode::NOT_FOUND, format!("no camera named `{name}`"));
    };
    let Some(latest) = source.latest_frame() else {
        return error(StatusCode::NOT_FOUND, format!("camera `{name}` has no live stream: its pictures are its clips"));
    };
    match latest.fresh(FRAME_WAIT).await {
        Some(jpeg) => ([(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "no-store")], jpeg.bytes.clone())
            .into_response(),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("camera `{name}` delivered no picture within {} s", FRAME_WAIT.as_secs()),
        ),
    }
}

/// Clips in error or quarantined that the diagnostics list.
const PROBLEMS: usize = 20;

async fn diagnostics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&state, &headers, true) {
        return *r;
    }
    let h = state.health().await;
    let sync = match &state.sync {
        Some(s) => Some(s.status().await),
        None => None,
    };
    let p = &state.pipeline;
    let s = &p.stats;
    // Each read on its own: one that fails shows as empty, not as an error.
    let (outbox, mut problems, store_state) = p
        .store()
        .run(|store| {
            let problems = |status| {
                let q = ClipQuery { status: Some(status), limit: PROBLEMS, ..ClipQuery::default() };
                store.clips(&q).map(|p| p.clips).unwrap_or_default()
            };
            let set = |set| store.set_len(set).unwrap_or(0);
            let unreadable: Vec<_> = store
                .unreadable()
                .into_iter()
                .map(|(record, reason)| json!({"record": record, "reason": reason}))
                .collect();
            Ok((
                store.outbox().unwrap_or_default(),
                [problems(ClipStatus::Error), problems(ClipStatus::Quarantined)].concat(),
                json!({
                    "clips_unfinished": set(Set::Unfinished),
                    "clips_awaiting_upload": set(Set::UploadRetry),
                    "clips_on_disk": set(Set::OnDisk),
                    "unreadable_records": unreadable,
                }),
            ))
        })
        .await
        .unwrap_or_default();
    let outbox: Vec<_> = outbox
        .into_iter()
        .map(|(_, e)| {
            json!({
                "clip_id": e.clip_id, "notifier": e.notifier, "attempts": e.attempts,
                "last_error": e.last_error, "next_attempt_ms": e.next_attempt_ms, "expires_ms": e.expires_ms,
            })
        })
        .collect();
    problems.sort_by_key(|r| std::cmp::Reverse(r.clip.start_ms));
    let recent_problems: Vec<_> = problems.iter().take(PROBLEMS).map(summary).collect();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "device_id": state.device_id,
        "uptime_s": p.clock().monotonic().saturating_sub(state.started).as_secs(),
        "health": h,
        "pipeline": {
            "in_flight": p.in_flight(),
            "clips_received": s.clips_received.get(),
            "clips_completed": s.clips_completed.get(),
            "clips_failed": s.clips_failed.get(),
            "clips_quarantined": s.clips_quarantined.get(),
            "alerts_delivered": s.alerts_delivered.get(),
            "alerts_expired": s.alerts_expired.get(),
        },
        "outbox": outbox,
        "live_detection": state.detector.as_ref().map(|d| {
            d.feed_stats()
                .into_iter()
                .map(|(camera, f)| json!({"camera": camera, "frames_sent": f.submitted, "frames_dropped": f.dropped}))
                .collect::<Vec<_>>()
        }),
        "sync": sync,
        "store": store_state,
        "recent_problems": recent_problems,
    }))
    .into_response()
}

/// A clip as the API and CLI show it: the record plus its derived status.
pub fn summary(r: &ClipRecord) -> crate::domain::ClipSummary {
    crate::domain::ClipSummary::of(r)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClipsQuery {
    limit: Option<usize>,
    camera: Option<String>,
    status: Option<String>,
    /// The `next` of the previous page.
    cursor: Option<String>,
}

/// Clips per page unless `limit` says otherwise, and the most a page holds.
const PAGE: usize = 50;
const MAX_PAGE: usize = 500;

async fn clips(State(state): State<Arc<AppState>>, headers: HeaderMap, Query(q): Query<ClipsQuery>) -> Response {
    if let Err(r) = authorize(&state, &headers, false) {
        return *r;
    }
    let status = match q.status.as_deref().map(|s| s.parse::<ClipStatus>()).transpose() {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("status: {e}")),
    };
    let after = match q.cursor.as_deref().map(|c| Cursor::parse(c).ok_or(c)).transpose() {
        Ok(c) => c,
        Err(c) => return error(StatusCode::BAD_REQUEST, format!("cursor: `{c}` is not a cursor this API gave")),
    };
    let query = ClipQuery { camera: q.camera, status, after, limit: q.limit.unwrap_or(PAGE).clamp(1, MAX_PAGE) };
    match state.pipeline.store().run(move |s| s.clips(&query)).await {
        Ok(page) => {
            let list: Vec<_> = page.clips.iter().map(summary).collect();
            Json(json!({ "clips": list, "next": page.next.map(|c| c.to_string()) })).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, crate::telemetry::chain(&e)),
    }
}

async fn clip(State(state): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = authorize(&state, &headers, false) {
        return *r;
    }
    let res = state.pipeline.store().run(move |s| Ok(s.get_clip(&id)?.map(|r| (r, s.events_for(&id))))).await;
    match res {
        Ok(Some((r, events))) => {
            let events: Vec<ClipEvent> = events.unwrap_or_default();
            Json(json!({ "clip": summary(&r), "events": events })).into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "no such clip"),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, crate::telemetry::chain(&e)),
    }
}

/// Runs a clip through filter, VLM, policy and notify again (API key required).
async fn reanalyze(State(state): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    use crate::pipeline::Reanalysis;
    if let Err(r) = authorize(&state, &headers, true) {
        return *r;
    }
    match state.pipeline.reanalyze(&crate::domain::ClipId(id.clone())).await {
        Ok(Reanalysis::Queued { fetch }) => {
            (StatusCode::ACCEPTED, Json(json!({ "clip_id": id, "queued": true, "fetch_from_storage": fetch })))
                .into_response()
        }
        Ok(Reanalysis::NotFound) => error(StatusCode::NOT_FOUND, "no such clip"),
        Ok(Reanalysis::InFlight) => {
            error(StatusCode::CONFLICT, "the clip is being processed now; ask again when it is done")
        }
        Ok(Reanalysis::NothingToAnalyse) => error(
            StatusCode::CONFLICT,
            "nothing to analyse: the recording is gone from the box and the clip was never uploaded",
        ),
        Ok(Reanalysis::Quarantined) => error(
            StatusCode::CONFLICT,
            "the clip is quarantined: `homesec cleanup --recheck-quarantine` sends it back when it reads",
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, crate::telemetry::chain(&e)),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CleanupQuery {
    #[serde(default)]
    recheck_quarantine: bool,
}

/// What retention would delete now and why (`homesec cleanup`).
async fn cleanup_plan(state: State<Arc<AppState>>, headers: HeaderMap, q: Query<CleanupQuery>) -> Response {
    cleanup(state, headers, q, false).await
}

/// A retention pass now: only what the daemon's own passes may delete.
async fn cleanup_run(state: State<Arc<AppState>>, headers: HeaderMap, q: Query<CleanupQuery>) -> Response {
    cleanup(state, headers, q, true).await
}

async fn cleanup(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<CleanupQuery>,
    apply: bool,
) -> Response {
    if let Err(r) = authorize(&state, &headers, false) {
        return *r;
    }
    match state.retention.cleanup(apply, q.recheck_quarantine).await {
        Ok(report) => {
            for r in report.rechecked.iter().filter(|r| r.requeued) {
                state.pipeline.spawn_clip(crate::domain::ClipId(r.clip_id.clone()));
            }
            Json(report).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, crate::telemetry::chain(&e)),
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

/// The process's metrics, with the gauges read from the daemon's state now.
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let p = &state.pipeline;
    let (outbox_notifications, outbox_sync, outbox_logs) = p
        .store()
        .run(|s| Ok((s.outbox_len().unwrap_or(0), s.sync_backlog().unwrap_or(0), s.log_backlog().unwrap_or(0))))
        .await
        .unwrap_or_default();
    let disk = state.retention.disk();
    let m = crate::metrics::global();
    m.set(&crate::metrics::ScrapeValues {
        clips_in_flight: p.in_flight() as u64,
        outbox_notifications,
        outbox_sync,
        outbox_logs,
        disk_used_bytes: disk.used_bytes,
        disk_free_bytes: disk.free_bytes,
    });
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], m.encode()).into_response()
}
