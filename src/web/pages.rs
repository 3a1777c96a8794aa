//! The pages: Cameras, Events, a clip, System.

use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::Value;
use serde::Deserialize;
use serde_json::json;

use super::{CsrfForm, Viewer, WebState, media};
use crate::domain::{ClipRecord, ClipStatus, ClipSummary};
use crate::store::{ClipQuery, Cursor, Set, Store, StoreError};

/// Clips on an Events page.
const EVENTS_PAGE: usize = 24;
/// Records read at most for one Events page when a risk filter skips some.
const EVENTS_SCAN: usize = 2000;

/// `{{ ms | when }}`: Unix milliseconds as `2026-12-02 12:00:00 UTC`.
pub(super) fn when(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "—".into())
}

/// `{{ n | bytes }}`: a byte count in MB / GB.
pub(super) fn bytes(n: Option<u64>) -> String {
    let Some(n) = n else { return "—".into() };
    let n = n as f64;
    if n >= 1e9 { format!("{:.2} GB", n / 1e9) } else { format!("{:.1} MB", n / 1e6) }
}

/// Any serialisable value for a template.
fn ser<T: serde::Serialize>(v: T) -> Value {
    Value::from(minijinja::value::Serde(v))
}

fn clip_value(r: &ClipRecord) -> Value {
    ser(ClipSummary::of(r))
}

pub(super) async fn cameras(State(state): State<Arc<WebState>>, viewer: Viewer) -> Response {
    let health = state.app.health().await;
    let mut cameras = Vec::new();
    for source in &state.app.sources {
        let name = source.camera().as_str().to_owned();
        let h = health.sources.iter().find(|h| h.camera.as_str() == name);
        let q = ClipQuery { camera: Some(name.clone()), limit: 200, ..ClipQuery::default() };
        let clips = state.app.pipeline.store().run(move |s| s.clips(&q)).await.map(|p| p.clips).unwrap_or_default();
        let last_clip = clips.first().map(clip_value);
        let last_alert = clips.iter().find(|r| r.decision.as_ref().is_some_and(|d| d.notify)).map(clip_value);
        let has_picture = source.latest_frame().is_some() || clips.iter().any(|r| r.snapshot_path.is_some());
        cameras.push(json!({
            "name": name,
            "live": source.latest_frame().is_some(),
            "has_picture": has_picture,
            "health": h,
            "last_clip": last_clip,
            "last_alert": last_alert,
        }));
    }
    let ctx = minijinja::context! { page => "cameras", status => ser(health.status), cameras => ser(cameras), warnings => health.warnings };
    state.render(Some(&viewer), StatusCode::OK, "cameras.html", ctx)
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct EventsQuery {
    #[serde(default)]
    camera: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    risk: String,
    #[serde(default)]
    cursor: String,
}

pub(super) async fn events(
    State(state): State<Arc<WebState>>,
    viewer: Viewer,
    Query(q): Query<EventsQuery>,
) -> Response {
    let status = match (!q.status.is_empty()).then(|| q.status.parse::<ClipStatus>()).transpose() {
        Ok(s) => s,
        Err(_) => return state.error(StatusCode::BAD_REQUEST, "status: not a clip status"),
    };
    let after = match (!q.cursor.is_empty()).then(|| Cursor::parse(&q.cursor)) {
        None => None,
        Some(Some(c)) => Some(c),
        Some(None) => return state.error(StatusCode::BAD_REQUEST, "cursor: not a cursor this page gave"),
    };
    let risk = q.risk.clone();
    let camera = (!q.camera.is_empty()).then(|| q.camera.clone());
    let query = ClipQuery { camera, status, after, limit: EVENTS_PAGE };
    let page = state.app.pipeline.store().run(move |s| listing(s, query, &risk)).await;
    let (clips, next) = match page {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %crate::telemetry::chain(&e), stage = "web", "cannot list clips");
            return state.error(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the store");
        }
    };
    let ctx = minijinja::context! {
        page => "events",
        clips => clips.iter().map(clip_value).collect::<Vec<_>>(),
        next => next.map(|c| c.to_string()),
        cameras => state.app.sources.iter().map(|s| s.camera().as_str().to_owned()).collect::<Vec<_>>(),
        statuses => ["queued_local", "uploaded", "filtered", "analyzed", "done", "error", "quarantined"],
        risks => ["low", "medium", "high"],
        sel => minijinja::context! { camera => q.camera, status => q.status, risk => q.risk },
    };
    state.render(Some(&viewer), StatusCode::OK, "events.html", ctx)
}

/// One Events page: clips newest first that match `query` and, unless `risk`
/// is empty, have that risk level; and the cursor of the next page. A risk
/// filter reads on through the store's pages (at most [`EVENTS_SCAN`] records).
fn listing(s: &Store, mut query: ClipQuery, risk: &str) -> Result<(Vec<ClipRecord>, Option<Cursor>), StoreError> {
    let limit = query.limit;
    let mut shown = Vec::new();
    let mut scanned = 0;
    loop {
        let page = s.clips(&query)?;
        scanned += page.clips.len();
        for r in page.clips {
            let risk_of = r.analysis.as_ref().map(|a| a.risk_level.as_str());
            if risk.is_empty() || risk_of == Some(risk) {
                shown.push(r);
                if shown.len() == limit {
                    let next =
                        shown.last().map(|r| Cursor { start_ms: r.clip.start_ms, clip_id: r.clip.clip_id.0.clone() });
                    return Ok((shown, next));
                }
            }
        }
        match page.next {
            Some(next) if scanned < EVENTS_SCAN => query.after = Some(next),
            next => return Ok((shown, next)),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ClipPageQuery {
    #[serde(default)]
    notice: String,
}

pub(super) async fn clip(
    State(state): State<Arc<WebState>>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<ClipPageQuery>,
) -> Response {
    let r = match media::record(&state, &id).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    let events = state.app.pipeline.store().run(move |s| s.events_for(&id)).await.unwrap_or_default();
    let notice = match q.notice.as_str() {
        "queued" => Some("Queued for analysis again: reload in a moment."),
        "busy" => Some("Not queued: the clip is being processed now."),
        "refused" => Some("Not queued: nothing on this box or in storage to analyse."),
        _ => None,
    };
    let ctx = minijinja::context! {
        page => "events",
        clip => clip_value(&r),
        has_video => media::video_file(&r).is_some(),
        duration_s => (r.clip.end_ms - r.clip.start_ms) as f64 / 1000.0,
        events => ser(&events),
        notice,
    };
    state.render(Some(&viewer), StatusCode::OK, "clip.html", ctx)
}

pub(super) async fn reanalyze(
    State(state): State<Arc<WebState>>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    use crate::pipeline::Reanalysis;
    if let Err(r) = viewer.check(&state, &form) {
        return *r;
    }
    let r = match media::record(&state, &id).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    let notice = match state.app.pipeline.reanalyze(&r.clip.clip_id).await {
        Ok(Reanalysis::Queued { .. }) => "queued",
        Ok(Reanalysis::InFlight) => "busy",
        Ok(Reanalysis::NotFound) => return state.error(StatusCode::NOT_FOUND, "no such clip"),
        Ok(Reanalysis::NothingToAnalyse | Reanalysis::Quarantined) => "refused",
        Err(e) => {
            tracing::error!(error = %crate::telemetry::chain(&e), clip_id = %r.clip.clip_id, stage = "web", "re-analysis failed");
            return state.error(StatusCode::INTERNAL_SERVER_ERROR, "cannot queue the clip");
        }
    };
    Redirect::to(&format!("/clips/{}?notice={notice}", r.clip.clip_id)).into_response()
}

/// A JSON value as rows of `dotted.path → text`, for a plain table.
pub fn rows(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    let key = |k: &str| if prefix.is_empty() { k.to_owned() } else { format!("{prefix}.{k}") };
    match v {
        serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| rows(&key(k), v, out)),
        serde_json::Value::Array(items) if items.iter().all(|i| !i.is_object()) => {
            out.push((prefix.to_owned(), items.iter().map(text).collect::<Vec<_>>().join(", ")))
        }
        serde_json::Value::Array(items) => {
            items.iter().enumerate().for_each(|(i, v)| rows(&key(&i.to_string()), v, out))
        }
        v => out.push((prefix.to_owned(), text(v))),
    }
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "—".into(),
        v => v.to_string(),
    }
}

fn table(v: serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    rows("", &v, &mut out);
    out
}

pub(super) async fn system(State(state): State<Arc<WebState>>, viewer: Viewer) -> Response {
    let app = &state.app;
    let health = app.health().await;
    let sync = match &app.sync {
        Some(s) => Some(s.status().await),
        None => None,
    };
    let (outbox, store) = app
        .pipeline
        .store()
        .run(|s| {
            let set = |set| s.set_len(set).unwrap_or(0);
            Ok((
                s.outbox().unwrap_or_default(),
                json!({
                    "clips_unfinished": set(Set::Unfinished),
                    "clips_awaiting_upload": set(Set::UploadRetry),
                    "clips_on_disk": set(Set::OnDisk),
                    "unreadable_records": s.unreadable().len(),
                }),
            ))
        })
        .await
        .unwrap_or_default();
    let outbox: Vec<_> = outbox
        .into_iter()
        .map(|(_, e)| json!({"clip_id": e.clip_id, "notifier": e.notifier, "attempts": e.attempts, "last_error": e.last_error}))
        .collect();
    let s = &app.pipeline.stats;
    let pipeline = json!({
        "in_flight": app.pipeline.in_flight(),
        "clips_received": s.clips_received.get(),
        "clips_completed": s.clips_completed.get(),
        "clips_failed": s.clips_failed.get(),
        "alerts_delivered": s.alerts_delivered.get(),
        "uptime_s": app.pipeline.clock().monotonic().saturating_sub(app.started).as_secs(),
    });
    let disk = app.retention.disk();
    let ctx = minijinja::context! {
        page => "system",
        status => ser(health.status),
        warnings => health.warnings,
        update => table(serde_json::to_value(app.updater.status()).unwrap_or_default()),
        disk => ser(&disk),
        disk_rows => table(serde_json::to_value(&disk).unwrap_or_default()),
        store => table(store),
        pipeline => table(pipeline),
        sync => sync.map(|s| table(serde_json::to_value(s).unwrap_or_default())),
        notifiers => health
            .notifiers
            .iter()
            .map(|n| {
                let state = match (&n.last_error, n.connected) {
                    (_, true) => "connected".to_owned(),
                    (Some(e), false) => format!("not connected: {e}"),
                    (None, false) => "not connected".to_owned(),
                };
                (n.name.clone(), state)
            })
            .collect::<Vec<_>>(),
        outbox => ser(outbox),
        config => state.config_yaml.clone(),
    };
    state.render(Some(&viewer), StatusCode::OK, "system.html", ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AnalysisResult, Clip, RiskLevel};

    fn store_with(n: i64) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("homesec.redb")).unwrap();
        store
            .write(|w| {
                for i in 0..n {
                    let mut r = ClipRecord::new(Clip {
                        clip_id: crate::domain::ClipId(format!("front_{i:03}")),
                        camera: "front".into(),
                        local_path: format!("/r/front_{i:03}.mp4"),
                        start_ms: 1_000 * i,
                        end_ms: 1_000 * i + 900,
                        source_backend: "folder".into(),
                    });
                    let risk_level = if i % 3 == 0 { RiskLevel::High } else { RiskLevel::Low };
                    r.analysis = Some(AnalysisResult {
                        risk_level,
                        activity_type: "unknown".into(),
                        summary: String::new(),
                        entities_timeline: Vec::new(),
                        requires_review: false,
                        model: "m".into(),
                    });
                    w.insert_clip(&r)?;
                }
                Ok(())
            })
            .unwrap();
        (dir, store)
    }

    fn ids(clips: &[ClipRecord]) -> Vec<String> {
        clips.iter().map(|r| r.clip.clip_id.0.clone()).collect()
    }

    #[test]
    fn a_risk_filter_fills_pages_across_the_store_pages_and_the_cursor_goes_on() {
        let (_dir, store) = store_with(90);
        let q = ClipQuery { limit: EVENTS_PAGE, ..ClipQuery::default() };
        let (first, next) = listing(&store, q.clone(), "high").unwrap();
        assert_eq!(first.len(), EVENTS_PAGE, "a full page of the 30 high-risk clips");
        assert!(first.iter().all(|r| r.analysis.as_ref().unwrap().risk_level == RiskLevel::High));
        assert_eq!(ids(&first)[0], "front_087", "newest first");
        let (second, end) = listing(&store, ClipQuery { after: next, ..q.clone() }, "high").unwrap();
        assert_eq!(second.len(), 6);
        assert_eq!(end, None, "the last page says so");
        assert!(ids(&second).iter().all(|id| !ids(&first).contains(id)), "no clip on two pages");
        let (all, more) = listing(&store, q, "").unwrap();
        assert_eq!((all.len(), more.is_some()), (EVENTS_PAGE, true), "unfiltered: one store page");
    }
}
