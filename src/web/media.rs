//! Clip videos, clip snapshots and camera pictures. URLs carry clip ids and
//! camera names only; the files are the ones the store's record names.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_http::services::ServeFile;

use super::{Viewer, WebState};
use crate::domain::{ClipId, ClipRecord};
use crate::store::ClipQuery;

/// `video/mp4` (the `mime` crate names no constant for it).
static VIDEO_MP4: std::sync::LazyLock<mime::Mime> =
    std::sync::LazyLock::new(|| "video/mp4".parse().unwrap_or(mime::APPLICATION_OCTET_STREAM));

/// How long a live camera has to deliver a picture.
const PICTURE_WAIT: Duration = Duration::from_secs(5);

/// The record of a clip id from a URL; a malformed id is refused before the store is asked.
pub(super) async fn record(state: &WebState, id: &str) -> Result<ClipRecord, Response> {
    if !ClipId::is_safe(id) {
        return Err(state.error(StatusCode::BAD_REQUEST, "not a clip id"));
    }
    let id = id.to_owned();
    match state.app.pipeline.store().run(move |s| s.get_clip(&id)).await {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(state.error(StatusCode::NOT_FOUND, "no such clip")),
        Err(e) => {
            tracing::error!(error = %crate::telemetry::chain(&e), stage = "web", "cannot read the store");
            Err(state.error(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the store"))
        }
    }
}

/// Where the clip's video is on this box: the recording, else a local archive copy.
pub(super) fn video_file(r: &ClipRecord) -> Option<PathBuf> {
    let recording = PathBuf::from(&r.clip.local_path);
    if recording.is_file() {
        return Some(recording);
    }
    let archived = r.storage_uri.as_deref()?.strip_prefix("file://").map(PathBuf::from)?;
    archived.is_file().then_some(archived)
}

/// A file from a record, with Range support (tower-http's `ServeFile`).
async fn serve(state: &WebState, path: Option<PathBuf>, mime: &mime::Mime, request: Request) -> Response {
    let Some(path) = path.filter(|p| p.is_file()) else {
        return state.error(StatusCode::NOT_FOUND, "the file is no longer on this box");
    };
    match ServeFile::new_with_mime(&path, mime).try_call(request).await {
        Ok(response) => response.map(Body::new),
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), stage = "web", "cannot serve a file");
            state.error(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file")
        }
    }
}

pub(super) async fn video(
    State(state): State<Arc<WebState>>,
    _viewer: Viewer,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    match record(&state, &id).await {
        Ok(r) => serve(&state, video_file(&r), &VIDEO_MP4, request).await,
        Err(response) => response,
    }
}

pub(super) async fn snapshot(
    State(state): State<Arc<WebState>>,
    _viewer: Viewer,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    match record(&state, &id).await {
        Ok(r) => serve(&state, r.snapshot_path.map(PathBuf::from), &mime::IMAGE_JPEG, request).await,
        Err(response) => response,
    }
}

/// A live camera's next picture; a folder or FTP camera's last clip's snapshot.
pub(super) async fn camera_picture(
    State(state): State<Arc<WebState>>,
    _viewer: Viewer,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let Some(source) = state.app.sources.iter().find(|s| s.camera().as_str() == name) else {
        return state.error(StatusCode::NOT_FOUND, "no such camera");
    };
    if let Some(latest) = source.latest_frame() {
        return match latest.fresh(PICTURE_WAIT).await {
            Some(jpeg) => {
                ([(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "no-store")], jpeg.bytes.clone())
                    .into_response()
            }
            None => state.error(StatusCode::SERVICE_UNAVAILABLE, "the camera delivered no picture"),
        };
    }
    let q = ClipQuery { camera: Some(name), limit: 50, ..ClipQuery::default() };
    let snapshot = state.app.pipeline.store().run(move |s| s.clips(&q)).await.ok().and_then(|page| {
        page.clips.into_iter().find_map(|r| r.snapshot_path.map(PathBuf::from).filter(|p| p.is_file()))
    });
    serve(&state, snapshot, &mime::IMAGE_JPEG, request).await
}
