//! A local stand-in for Dropbox's HTTP API (an API host and a content host,
//! as Dropbox has) that checks every request against the documented API:
//! the OAuth2 refresh-token grant with the app key and secret, `Bearer`
//! tokens, `Dropbox-API-Arg` JSON (ASCII only) on content endpoints, content
//! types, upload-session offsets. A request that breaks the API is answered
//! 400 and recorded in `violations`. It can refuse the refresh token, answer
//! `401 expired_access_token` and `429` with `Retry-After`.
#![allow(dead_code)]
// Handlers return the error answer itself; its size does not matter in a test stand-in.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use serde_json::{Value, json};

pub const APP_KEY: &str = "homesec-test-app-key";
pub const APP_SECRET: &str = "homesec-test-app-secret-3f9a";
pub const REFRESH_TOKEN: &str = "homesec-test-refresh-token-8c1d";
pub const APP_KEY_ENV: &str = "HOMESEC_TEST_DBX_KEY";
pub const APP_SECRET_ENV: &str = "HOMESEC_TEST_DBX_SECRET";
pub const REFRESH_TOKEN_ENV: &str = "HOMESEC_TEST_DBX_REFRESH";

pub struct State {
    /// Files by lower-cased path.
    pub files: HashMap<String, (String, Vec<u8>)>,
    sessions: HashMap<String, Vec<u8>>,
    /// The access token handed out last; `None` after it "expired".
    token: Option<String>,
    pub tokens_granted: u32,
    /// The refresh token is refused (`invalid_grant`) while set.
    pub revoked: bool,
    /// This many API calls are answered `401 expired_access_token`.
    pub expire_next: u32,
    /// This many API calls are answered `429` with `Retry-After: 1`.
    pub rate_limit_next: u32,
    /// Lifetime of the access tokens handed out (Dropbox's are 4 hours).
    pub expires_in: u64,
    /// Every API call: (endpoint, when).
    pub calls: Vec<(String, Instant)>,
    pub violations: Vec<String>,
}

pub struct Dropbox {
    pub api_port: u16,
    pub content_port: u16,
    pub state: Arc<Mutex<State>>,
    _rt: tokio::runtime::Runtime,
}

fn error(status: StatusCode, summary: &str, tag: &str) -> Response {
    (status, axum::Json(json!({"error_summary": summary, "error": {".tag": tag}}))).into_response()
}

fn meta(display: &str, size: usize) -> Value {
    json!({
        ".tag": "file",
        "name": display.rsplit('/').next().unwrap_or_default(),
        "id": format!("id:{:x}", display.len() * 7919 + size),
        "path_lower": display.to_lowercase(),
        "path_display": display,
        "size": size,
        "rev": "015f0000000000000000001",
        "client_modified": "2026-12-03T08:00:00Z",
        "server_modified": "2026-12-03T08:00:01Z",
        "content_hash": "0".repeat(64),
        "is_downloadable": true
    })
}

impl Default for State {
    fn default() -> Self {
        State {
            files: HashMap::new(),
            sessions: HashMap::new(),
            token: None,
            tokens_granted: 0,
            revoked: false,
            expire_next: 0,
            rate_limit_next: 0,
            expires_in: 14400,
            calls: Vec::new(),
            violations: Vec::new(),
        }
    }
}

impl State {
    fn violation(&mut self, what: String) -> Response {
        self.violations.push(what.clone());
        (StatusCode::BAD_REQUEST, format!("Error in call: {what}")).into_response()
    }

    /// Checks the bearer token; scripted 401s and 429s come first.
    fn authorize(&mut self, endpoint: &str, headers: &HeaderMap) -> Result<(), Response> {
        self.calls.push((endpoint.to_owned(), Instant::now()));
        if self.rate_limit_next > 0 {
            self.rate_limit_next -= 1;
            let body = json!({"error_summary": "too_many_requests/..", "error": {"reason": {".tag": "too_many_requests"}, "retry_after": 1}});
            return Err((StatusCode::TOO_MANY_REQUESTS, [("Retry-After", "1")], axum::Json(body)).into_response());
        }
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let Some(token) = auth.strip_prefix("Bearer ") else {
            return Err(self.violation(format!("{endpoint}: no Bearer token (Authorization: {auth:?})")));
        };
        if self.expire_next > 0 {
            self.expire_next -= 1;
            self.token = None;
            return Err(error(StatusCode::UNAUTHORIZED, "expired_access_token/...", "expired_access_token"));
        }
        if self.token.as_deref() != Some(token) {
            return Err(error(StatusCode::UNAUTHORIZED, "invalid_access_token/...", "invalid_access_token"));
        }
        Ok(())
    }

    /// The `Dropbox-API-Arg` of a content endpoint: ASCII JSON.
    fn arg(&mut self, endpoint: &str, headers: &HeaderMap) -> Result<Value, Response> {
        let Some(raw) = headers.get("dropbox-api-arg") else {
            return Err(self.violation(format!("{endpoint}: no Dropbox-API-Arg header")));
        };
        let Ok(text) = raw.to_str() else {
            return Err(self.violation(format!("{endpoint}: Dropbox-API-Arg is not ASCII")));
        };
        serde_json::from_str(text).map_err(|e| self.violation(format!("{endpoint}: Dropbox-API-Arg is not JSON: {e}")))
    }

    fn content_type_is(&mut self, endpoint: &str, headers: &HeaderMap, want: &str) -> Result<(), Response> {
        let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if ct.split(';').next().unwrap_or_default().trim() != want {
            return Err(self.violation(format!("{endpoint}: Content-Type {ct:?}, want {want}")));
        }
        Ok(())
    }

    fn commit(&mut self, endpoint: &str, commit: &Value, data: Vec<u8>) -> Result<Value, Response> {
        let Some(path) = commit["path"].as_str().map(str::to_owned) else {
            return Err(self.violation(format!("{endpoint}: no path in {commit}")));
        };
        if !path.starts_with('/') || path.ends_with('/') || path.contains("//") {
            return Err(self.violation(format!("{endpoint}: malformed path {path:?}")));
        }
        if commit["mode"] != "overwrite" && !commit["mode"].is_null() && commit["mode"][".tag"] != "overwrite" {
            return Err(
                self.violation(format!("{endpoint}: mode {} would not overwrite a retried upload", commit["mode"]))
            );
        }
        let m = meta(&path, data.len());
        self.files.insert(path.to_lowercase(), (path, data));
        Ok(m)
    }

    fn content(&mut self, endpoint: &str, headers: &HeaderMap, body: Bytes) -> Response {
        if let Err(r) = self.authorize(endpoint, headers) {
            return r;
        }
        let arg = match self.arg(endpoint, headers) {
            Ok(a) => a,
            Err(r) => return r,
        };
        if endpoint != "files/download"
            && let Err(r) = self.content_type_is(endpoint, headers, "application/octet-stream")
        {
            return r;
        }
        let result = match endpoint {
            "files/upload" => self.commit(endpoint, &arg, body.to_vec()).map(|m| axum::Json(m).into_response()),
            "files/upload_session/start" => {
                let id = format!("session-{}", self.sessions.len() + 1);
                self.sessions.insert(id.clone(), body.to_vec());
                Ok(axum::Json(json!({"session_id": id})).into_response())
            }
            "files/upload_session/append_v2" | "files/upload_session/finish" => {
                let (Some(id), Some(offset)) = (arg["cursor"]["session_id"].as_str(), arg["cursor"]["offset"].as_u64())
                else {
                    return self.violation(format!("{endpoint}: no cursor in {arg}"));
                };
                let Some(have) = self.sessions.get(id).map(Vec::len) else {
                    return self.violation(format!("{endpoint}: unknown session {id}"));
                };
                if offset != have as u64 {
                    self.violations.push(format!("{endpoint}: offset {offset}, the session holds {have} bytes"));
                    let body = json!({"error_summary": "incorrect_offset/..", "error": {".tag": "incorrect_offset", "correct_offset": have}});
                    return (StatusCode::CONFLICT, axum::Json(body)).into_response();
                }
                self.sessions.get_mut(id).map(|s| s.extend_from_slice(&body)).unwrap_or_default();
                if endpoint.ends_with("append_v2") {
                    Ok(axum::Json(Value::Null).into_response())
                } else {
                    let data = self.sessions.remove(id).unwrap_or_default();
                    self.commit(endpoint, &arg["commit"], data).map(|m| axum::Json(m).into_response())
                }
            }
            "files/download" => {
                if !body.is_empty() {
                    return self.violation(format!("{endpoint}: a download has no body ({} bytes sent)", body.len()));
                }
                let path = arg["path"].as_str().unwrap_or_default().to_lowercase();
                match self.files.get(&path) {
                    Some((display, data)) => {
                        let m = meta(display, data.len()).to_string();
                        Ok(([("Dropbox-API-Result", m)], data.clone()).into_response())
                    }
                    None => Ok(error(StatusCode::CONFLICT, "path/not_found/..", "path")),
                }
            }
            other => Err(self.violation(format!("{other} is no content endpoint"))),
        };
        result.unwrap_or_else(|r| r)
    }

    fn rpc(&mut self, endpoint: &str, headers: &HeaderMap, body: Bytes) -> Response {
        if let Err(r) = self.authorize(endpoint, headers) {
            return r;
        }
        if let Err(r) = self.content_type_is(endpoint, headers, "application/json") {
            return r;
        }
        let arg: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return self.violation(format!("{endpoint}: body is not JSON: {e}")),
        };
        let path = arg["path"].as_str().unwrap_or_default().to_lowercase();
        match endpoint {
            "files/get_metadata" => match self.files.get(&path) {
                Some((display, data)) => axum::Json(meta(display, data.len())).into_response(),
                None => error(StatusCode::CONFLICT, "path/not_found/..", "path"),
            },
            "files/delete_v2" => match self.files.remove(&path) {
                Some((display, data)) => axum::Json(json!({"metadata": meta(&display, data.len())})).into_response(),
                None => error(StatusCode::CONFLICT, "path_lookup/not_found/..", "path_lookup"),
            },
            "files/list_folder" => {
                let under = format!("{path}/");
                if path.is_empty() || self.files.keys().any(|k| k.starts_with(&under)) {
                    axum::Json(json!({"entries": [], "cursor": "c1", "has_more": false})).into_response()
                } else {
                    error(StatusCode::CONFLICT, "path/not_found/..", "path")
                }
            }
            other => self.violation(format!("{other} is no RPC endpoint")),
        }
    }

    fn token(&mut self, headers: &HeaderMap, body: Bytes) -> Response {
        let want =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{APP_KEY}:{APP_SECRET}")));
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
            return self.violation("oauth2/token: not HTTP Basic with the app key and secret".into());
        }
        if let Err(r) = self.content_type_is("oauth2/token", headers, "application/x-www-form-urlencoded") {
            return r;
        }
        let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
        if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
            return self.violation(format!("oauth2/token: grant_type {:?}", form.get("grant_type")));
        }
        if self.revoked || form.get("refresh_token").map(String::as_str) != Some(REFRESH_TOKEN) {
            let body = json!({"error": "invalid_grant", "error_description": "refresh token is invalid or revoked"});
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
        self.tokens_granted += 1;
        let token = format!("sl.test-access-{}", self.tokens_granted);
        self.token = Some(token.clone());
        axum::Json(json!({"access_token": token, "token_type": "bearer", "expires_in": self.expires_in}))
            .into_response()
    }
}

impl Dropbox {
    pub fn start() -> Dropbox {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let state: Arc<Mutex<State>> = Arc::default();
        let (s1, s2, s3) = (state.clone(), state.clone(), state.clone());
        let api = axum::Router::new()
            .route("/oauth2/token", post(move |h: HeaderMap, b: Bytes| async move { s1.lock().unwrap().token(&h, b) }))
            .route(
                "/2/{*endpoint}",
                post(move |uri: Uri, h: HeaderMap, b: Bytes| async move {
                    let endpoint = uri.path().trim_start_matches("/2/").to_owned();
                    s2.lock().unwrap().rpc(&endpoint, &h, b)
                }),
            );
        let content = axum::Router::new().route(
            "/2/{*endpoint}",
            post(move |uri: Uri, h: HeaderMap, b: Bytes| async move {
                let endpoint = uri.path().trim_start_matches("/2/").to_owned();
                s3.lock().unwrap().content(&endpoint, &h, b)
            }),
        );
        let serve = |app: axum::Router| {
            let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
            let port = listener.local_addr().unwrap().port();
            rt.spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            port
        };
        let api_port = serve(api);
        let content_port = serve(content);
        Dropbox { api_port, content_port, state, _rt: rt }
    }

    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    pub fn content_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.content_port)
    }

    /// The file at `path`, when stored.
    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        self.state.lock().unwrap().files.get(&path.to_lowercase()).map(|(_, d)| d.clone())
    }

    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }

    /// Endpoints called, in order.
    pub fn endpoints(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.iter().map(|(e, _)| e.clone()).collect()
    }

    /// The storage section of a daemon config (extra keys unindented).
    pub fn storage_config(&self, extra: &[&str]) -> String {
        let mut s = format!(
            "backend: dropbox\nconfig:\n  root: /homesec\n  app_key_env: {APP_KEY_ENV}\n  app_secret_env: {APP_SECRET_ENV}\n  \
             refresh_token_env: {REFRESH_TOKEN_ENV}\n  api_url: {}\n  content_url: {}\n  timeout_s: 10\n",
            self.api_url(),
            self.content_url()
        );
        for line in extra {
            s.push_str(&format!("  {line}\n"));
        }
        s
    }
}
