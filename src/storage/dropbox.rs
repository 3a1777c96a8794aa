//! Dropbox storage over Dropbox's HTTP API (v2): OAuth2 with a refresh token
//! (short-lived access tokens, refreshed before they expire and when an API
//! call says `expired_access_token`), `files/upload` for small clips and
//! upload sessions in chunks for big ones, `429` / `Retry-After` honoured.
//! `view_url` is the clip's Dropbox web URL (it needs a Dropbox login; no share
//! link is made).

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{StorageBackend, StorageError, StoredObject};
use crate::domain::Clip;
use crate::plugin::{PluginBuildError, PluginConfig, PluginContext, Validator};

const MIB: u64 = 1024 * 1024;
/// Dropbox takes at most 150 MB in one request.
const MAX_CHUNK_MB: u64 = 150;
/// An access token is refreshed when it has less than this left.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Rate-limited answers waited out per call before giving up (the pipeline retries later).
const MAX_RATE_LIMITED: u32 = 5;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropboxConfig {
    /// Folder in the Dropbox the clips go under (`""`: the app folder's root).
    #[serde(default = "default_root")]
    pub root: String,
    pub app_key_env: String,
    pub app_secret_env: String,
    pub refresh_token_env: String,
    /// Key of a stored clip under `root`; placeholders `{camera_name}`, `{clip_id}`.
    #[serde(default = "super::default_path_template")]
    pub path_template: String,
    /// `view_url = <web_url_prefix><path>`.
    #[serde(default = "default_web_url_prefix")]
    pub web_url_prefix: String,
    /// Clips this big or bigger go up in an upload session ...
    #[serde(default = "default_session_mb")]
    pub upload_session_threshold_mb: u64,
    /// ... in chunks of this many MiB.
    #[serde(default = "default_session_mb")]
    pub chunk_size_mb: u64,
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
    /// Longest `Retry-After` waited out inside one upload; longer ones fail it
    /// (the background upload retry comes back later).
    #[serde(default = "default_max_retry_after_s")]
    pub max_retry_after_s: u64,
    /// Dropbox's API and content hosts: change them only for tests.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    #[serde(default = "default_content_url")]
    pub content_url: String,
}

fn default_root() -> String {
    "/homesec".into()
}
fn default_web_url_prefix() -> String {
    "https://www.dropbox.com/home".into()
}
fn default_session_mb() -> u64 {
    8
}
fn default_timeout_s() -> u64 {
    60
}
fn default_max_retry_after_s() -> u64 {
    120
}
fn default_api_url() -> String {
    "https://api.dropboxapi.com".into()
}
fn default_content_url() -> String {
    "https://content.dropboxapi.com".into()
}

impl PluginConfig for DropboxConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        let root_ok = self.root.is_empty()
            || (self.root.starts_with('/') && !self.root.ends_with('/') && !self.root.contains(".."));
        v.check(root_ok, "root", "must be \"\" (the app folder) or a folder like /homesec (no trailing /, no ..)");
        super::validate_template(&self.path_template, v);
        for (field, url) in
            [("web_url_prefix", &self.web_url_prefix), ("api_url", &self.api_url), ("content_url", &self.content_url)]
        {
            match url::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => v.error(field, format!("{url} is not an http(s) URL")),
            }
        }
        v.check(
            (1..=MAX_CHUNK_MB).contains(&self.chunk_size_mb),
            "chunk_size_mb",
            format!("must be 1..={MAX_CHUNK_MB} (Dropbox takes at most 150 MB a request)"),
        );
        v.check(
            (1..=MAX_CHUNK_MB).contains(&self.upload_session_threshold_mb),
            "upload_session_threshold_mb",
            format!("must be 1..={MAX_CHUNK_MB}"),
        );
        v.check(self.timeout_s >= 1, "timeout_s", "must be at least 1");
        let _ = v.require_env("app_key_env", &self.app_key_env);
        let _ = v.require_env("app_secret_env", &self.app_secret_env);
        let _ = v.require_env("refresh_token_env", &self.refresh_token_env);
    }
}

/// What went wrong talking to Dropbox. Never holds a token or the app secret.
#[derive(Debug, thiserror::Error)]
pub enum DropboxError {
    #[error("cannot reach {url}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Dropbox refused the refresh token ({error}: {description}); make a new one and put it in {env}")]
    TokenRefused { error: String, description: String, env: String },
    #[error("{endpoint} answered HTTP {status}: {summary}")]
    Api { endpoint: String, status: u16, summary: String },
    #[error("{endpoint} still rate limited (HTTP 429) after {attempts} waits")]
    RateLimited { endpoint: String, attempts: u32 },
    #[error("{endpoint} asks to wait {retry_after_s} s (Retry-After), more than max_retry_after_s")]
    WaitTooLong { endpoint: String, retry_after_s: u64 },
    #[error("{endpoint} answered something unexpected: {detail}")]
    Answer { endpoint: String, detail: String },
}

impl DropboxError {
    fn is_transient(&self) -> bool {
        match self {
            DropboxError::Http { .. } | DropboxError::RateLimited { .. } | DropboxError::WaitTooLong { .. } => true,
            DropboxError::Api { status, .. } => *status >= 500 || *status == 429,
            DropboxError::TokenRefused { .. } | DropboxError::Answer { .. } => false,
        }
    }

    /// A 409 saying the path is not there.
    fn is_not_found(&self) -> bool {
        matches!(self, DropboxError::Api { status: 409, summary, .. } if summary.contains("not_found"))
    }
}

/// The keys the backend authenticates with.
pub struct DropboxCredentials {
    pub app_key: String,
    pub app_secret: String,
    pub refresh_token: String,
}

struct AccessToken {
    token: String,
    expires_at: Instant,
}

/// How a call carries its argument (Dropbox's three endpoint styles).
enum Call<'a> {
    /// RPC: the argument is the JSON body.
    Rpc(&'a Value),
    /// Content upload: the argument in `Dropbox-API-Arg`, the bytes as the body.
    Upload(&'a Value, Vec<u8>),
    /// Content download: the argument in `Dropbox-API-Arg`, no body.
    Download(&'a Value),
}

pub struct DropboxStorage {
    http: reqwest::Client,
    cfg: DropboxConfig,
    credentials: DropboxCredentials,
    token: tokio::sync::Mutex<Option<AccessToken>>,
    last_error: Mutex<Option<String>>,
}

fn env(name: &str, field: &str) -> Result<String, PluginBuildError> {
    std::env::var(name).ok().filter(|v| !v.is_empty()).ok_or_else(|| {
        PluginBuildError::new("storage", "dropbox", format!("{field}: environment variable {name} is not set"))
    })
}

/// Builds the backend: reads the app key, app secret and refresh token from
/// the environment variables the config names.
pub fn build(cfg: DropboxConfig, _ctx: &PluginContext) -> Result<DropboxStorage, PluginBuildError> {
    let credentials = DropboxCredentials {
        app_key: env(&cfg.app_key_env, "app_key_env")?,
        app_secret: env(&cfg.app_secret_env, "app_secret_env")?,
        refresh_token: env(&cfg.refresh_token_env, "refresh_token_env")?,
    };
    DropboxStorage::connect(cfg, credentials)
}

/// JSON for an HTTP header: Dropbox wants non-ASCII characters escaped.
fn header_json(v: &Value) -> String {
    let mut out = String::new();
    for c in v.to_string().chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// The `error_summary` of a Dropbox error answer, else its first 200 characters.
fn summary(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error_summary"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

impl DropboxStorage {
    pub fn connect(cfg: DropboxConfig, credentials: DropboxCredentials) -> Result<DropboxStorage, PluginBuildError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.timeout_s))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("homesec/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PluginBuildError::new("storage", "dropbox", e))?;
        Ok(DropboxStorage {
            http,
            cfg,
            credentials,
            token: tokio::sync::Mutex::new(None),
            last_error: Mutex::new(None),
        })
    }

    fn target(&self) -> String {
        let root = if self.cfg.root.is_empty() { "/" } else { &self.cfg.root };
        format!("Dropbox folder {root} via {}", self.cfg.api_url)
    }

    fn remote(&self, what: impl Into<String>, e: DropboxError) -> StorageError {
        StorageError::Remote {
            target: self.target(),
            what: what.into(),
            hint: String::new(),
            transient: e.is_transient(),
            source: Box::new(e),
        }
    }

    fn note<T>(&self, r: Result<T, StorageError>) -> Result<T, StorageError> {
        if let Ok(mut last) = self.last_error.lock() {
            *last = r.as_ref().err().map(|e| crate::telemetry::chain(e));
        }
        r
    }

    /// The Dropbox path of a key under the root.
    fn path(&self, key: &str) -> String {
        format!("{}/{key}", self.cfg.root)
    }

    /// The path of a `dropbox:/...` URI under this storage's root.
    fn path_of(&self, uri: &str) -> Result<String, StorageError> {
        let foreign =
            || StorageError::ForeignUri { uri: uri.to_owned(), expected: format!("dropbox:{}/<key>", self.cfg.root) };
        let path = uri.strip_prefix("dropbox:").ok_or_else(foreign)?;
        let under = format!("{}/", self.cfg.root.to_lowercase());
        if path.to_lowercase().starts_with(&under) && !path.contains("/../") {
            Ok(path.to_owned())
        } else {
            Err(foreign())
        }
    }

    fn view_url(&self, path_display: &str) -> String {
        const SEGMENT: &percent_encoding::AsciiSet =
            &percent_encoding::NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'_').remove(b'.').remove(b'~');
        format!(
            "{}{}",
            self.cfg.web_url_prefix.trim_end_matches('/'),
            percent_encoding::utf8_percent_encode(path_display, SEGMENT)
        )
    }

    /// A valid access token: the one held, or a fresh one when it is about to
    /// expire, or when `stale` (the API said it expired).
    async fn access_token(&self, stale: bool) -> Result<String, DropboxError> {
        let mut held = self.token.lock().await;
        if let Some(t) = held.as_ref()
            && !stale
            && t.expires_at > Instant::now() + REFRESH_MARGIN
        {
            return Ok(t.token.clone());
        }
        let url = format!("{}/oauth2/token", self.cfg.api_url.trim_end_matches('/'));
        let http = |source| DropboxError::Http { url: url.clone(), source };
        let answer = self
            .http
            .post(&url)
            .basic_auth(&self.credentials.app_key, Some(&self.credentials.app_secret))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", self.credentials.refresh_token.as_str())])
            .send()
            .await
            .map_err(http)?;
        let status = answer.status();
        let body = answer.text().await.map_err(http)?;
        if !status.is_success() {
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if status.as_u16() == 400 || status.as_u16() == 401 {
                return Err(DropboxError::TokenRefused {
                    error: v["error"].as_str().unwrap_or("refused").to_owned(),
                    description: v["error_description"].as_str().unwrap_or_default().to_owned(),
                    env: self.cfg.refresh_token_env.clone(),
                });
            }
            return Err(DropboxError::Api {
                endpoint: "oauth2/token".into(),
                status: status.as_u16(),
                summary: summary(&body),
            });
        }
        #[derive(Deserialize)]
        struct Granted {
            access_token: String,
            expires_in: u64,
        }
        let granted: Granted = serde_json::from_str(&body)
            .map_err(|e| DropboxError::Answer { endpoint: "oauth2/token".into(), detail: e.to_string() })?;
        debug!(expires_in_s = granted.expires_in, "Dropbox access token refreshed");
        let token = granted.access_token.clone();
        *held = Some(AccessToken {
            token: granted.access_token,
            expires_at: Instant::now() + Duration::from_secs(granted.expires_in),
        });
        Ok(token)
    }

    /// One API call with the access token: refreshed once on
    /// `expired_access_token`, rate limits waited out (`Retry-After`).
    async fn call(&self, endpoint: &str, call: Call<'_>) -> Result<reqwest::Response, DropboxError> {
        let base = match call {
            Call::Rpc(_) => &self.cfg.api_url,
            Call::Upload(..) | Call::Download(_) => &self.cfg.content_url,
        };
        let url = format!("{}/2/{endpoint}", base.trim_end_matches('/'));
        let mut stale = false;
        let mut waits = 0;
        loop {
            let token = self.access_token(stale).await?;
            let req = self.http.post(&url).bearer_auth(&token);
            let req = match &call {
                Call::Rpc(arg) => req.json(arg),
                Call::Upload(arg, data) => req
                    .header("Dropbox-API-Arg", header_json(arg))
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .body(data.clone()),
                Call::Download(arg) => req.header("Dropbox-API-Arg", header_json(arg)),
            };
            let answer = req.send().await.map_err(|source| DropboxError::Http { url: url.clone(), source })?;
            let status = answer.status().as_u16();
            if (200..300).contains(&status) {
                return Ok(answer);
            }
            let retry_after = answer
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let body = answer.text().await.unwrap_or_default();
            let summary = summary(&body);
            if status == 401 && summary.contains("expired_access_token") && !stale {
                info!(endpoint, "Dropbox access token expired; refreshing it");
                stale = true;
                continue;
            }
            if status == 429 || (status == 503 && retry_after.is_some()) {
                let wait = retry_after.unwrap_or(5);
                if wait > self.cfg.max_retry_after_s {
                    return Err(DropboxError::WaitTooLong { endpoint: endpoint.into(), retry_after_s: wait });
                }
                waits += 1;
                if waits > MAX_RATE_LIMITED {
                    return Err(DropboxError::RateLimited { endpoint: endpoint.into(), attempts: waits - 1 });
                }
                warn!(endpoint, retry_after_s = wait, "Dropbox rate limit; waiting as it asks");
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            return Err(DropboxError::Api { endpoint: endpoint.into(), status, summary });
        }
    }

    /// A call whose answer is JSON.
    async fn call_json(&self, endpoint: &str, call: Call<'_>) -> Result<Value, DropboxError> {
        let answer = self.call(endpoint, call).await?;
        let text = answer.text().await.map_err(|source| DropboxError::Http { url: endpoint.into(), source })?;
        serde_json::from_str(&text)
            .map_err(|e| DropboxError::Answer { endpoint: endpoint.into(), detail: e.to_string() })
    }

    /// Uploads `local` to `path` (overwriting); the file's metadata as Dropbox answers it.
    async fn upload(&self, path: &str, local: &Path) -> Result<Value, StorageError> {
        let io = |source| StorageError::Io { path: local.display().to_string(), key: path.to_owned(), source };
        let size = tokio::fs::metadata(local).await.map_err(io)?.len();
        let commit =
            json!({"path": path, "mode": "overwrite", "autorename": false, "mute": true, "strict_conflict": false});
        if size < self.cfg.upload_session_threshold_mb * MIB {
            let data = tokio::fs::read(local).await.map_err(io)?;
            return self
                .call_json("files/upload", Call::Upload(&commit, data))
                .await
                .map_err(|e| self.remote(format!("uploading {path}"), e));
        }
        let chunk = (self.cfg.chunk_size_mb * MIB) as usize;
        let mut file = tokio::fs::File::open(local).await.map_err(io)?;
        let mut read_chunk = async |len: usize| -> Result<Vec<u8>, StorageError> {
            let mut buf = vec![0u8; len];
            file.read_exact(&mut buf).await.map_err(io)?;
            Ok(buf)
        };
        let first = read_chunk(chunk.min(size as usize)).await?;
        let mut offset = first.len() as u64;
        let started = self
            .call_json("files/upload_session/start", Call::Upload(&json!({"close": false}), first))
            .await
            .map_err(|e| self.remote(format!("starting an upload session for {path}"), e))?;
        let Some(session_id) = started["session_id"].as_str().map(str::to_owned) else {
            let e =
                DropboxError::Answer { endpoint: "files/upload_session/start".into(), detail: "no session_id".into() };
            return Err(self.remote(format!("uploading {path}"), e));
        };
        debug!(path, bytes = size, chunk_bytes = chunk, "Dropbox upload session");
        while size - offset > chunk as u64 {
            let data = read_chunk(chunk).await?;
            let arg = json!({"cursor": {"session_id": session_id, "offset": offset}, "close": false});
            self.call("files/upload_session/append_v2", Call::Upload(&arg, data))
                .await
                .map_err(|e| self.remote(format!("appending to {path} at {offset}"), e))?;
            offset += chunk as u64;
        }
        let last = read_chunk((size - offset) as usize).await?;
        let arg = json!({"cursor": {"session_id": session_id, "offset": offset}, "commit": commit});
        self.call_json("files/upload_session/finish", Call::Upload(&arg, last))
            .await
            .map_err(|e| self.remote(format!("finishing the upload of {path}"), e))
    }

    /// The stored object for Dropbox's answer about `path`.
    fn stored(&self, meta: &Value, path: &str) -> StoredObject {
        let display = meta["path_display"].as_str().unwrap_or(path);
        StoredObject { storage_uri: format!("dropbox:{display}"), view_url: Some(self.view_url(display)) }
    }

    async fn download(&self, path: &str, uri: &str, dest: &Path) -> Result<(), StorageError> {
        let answer = match self.call("files/download", Call::Download(&json!({"path": path}))).await {
            Ok(a) => a,
            Err(e) if e.is_not_found() => return Err(StorageError::NotFound { uri: uri.to_owned() }),
            Err(e) => return Err(self.remote(format!("downloading {path}"), e)),
        };
        super::save_stream(answer.bytes_stream(), uri, dest, |source| {
            self.remote(format!("downloading {path}"), DropboxError::Http { url: "files/download".into(), source })
        })
        .await
    }
}

#[async_trait]
impl StorageBackend for DropboxStorage {
    fn name(&self) -> &str {
        "dropbox"
    }

    async fn put(&self, clip: &Clip, local: &Path) -> Result<StoredObject, StorageError> {
        let path = self.path(&super::clip_key(&self.cfg.path_template, clip));
        let meta = self.upload(&path, local).await;
        let meta = self.note(meta)?;
        Ok(self.stored(&meta, &path))
    }

    async fn put_json(&self, clip: &Clip, name: &str, value: &Value) -> Result<StoredObject, StorageError> {
        let path = self.path(&super::json_key(&super::clip_key(&self.cfg.path_template, clip), name));
        let data = serde_json::to_vec_pretty(value).map_err(|e| StorageError::Backend(e.to_string()))?;
        let commit =
            json!({"path": path, "mode": "overwrite", "autorename": false, "mute": true, "strict_conflict": false});
        let meta = self
            .call_json("files/upload", Call::Upload(&commit, data))
            .await
            .map_err(|e| self.remote(format!("uploading {path}"), e));
        let meta = self.note(meta)?;
        Ok(self.stored(&meta, &path))
    }

    async fn get(&self, storage_uri: &str, dest: &Path) -> Result<(), StorageError> {
        let path = self.path_of(storage_uri)?;
        self.download(&path, storage_uri, dest).await
    }

    async fn exists(&self, storage_uri: &str) -> Result<bool, StorageError> {
        let path = self.path_of(storage_uri)?;
        match self.call("files/get_metadata", Call::Rpc(&json!({"path": path}))).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(self.remote(format!("looking up {path}"), e)),
        }
    }

    async fn delete(&self, storage_uri: &str) -> Result<(), StorageError> {
        let path = self.path_of(storage_uri)?;
        match self.call("files/delete_v2", Call::Rpc(&json!({"path": path}))).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(self.remote(format!("deleting {path}"), e)),
        }
    }

    /// Lists the root folder (one entry): answers when Dropbox is reachable
    /// and the tokens are good; a root not made yet is fine.
    async fn ping(&self) -> bool {
        let arg = json!({"path": self.cfg.root, "limit": 1});
        let r = match self.call("files/list_folder", Call::Rpc(&arg)).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(self.remote("listing the root folder", e)),
        };
        if let Err(e) = &r {
            warn!(error = %crate::telemetry::chain(e), "storage unreachable");
        }
        self.note(r).is_ok()
    }

    fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|l| l.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_arguments_escape_non_ascii() {
        assert_eq!(header_json(&json!({"path": "/homesec/Garten/ü.mp4"})), r#"{"path":"/homesec/Garten/\u00fc.mp4"}"#);
        assert_eq!(header_json(&json!({"p": "🎥"})), r#"{"p":"\ud83c\udfa5"}"#);
    }

    #[test]
    fn every_problem_is_named_with_its_path() {
        let mut found = Vec::new();
        let locate = |_: &str| None;
        let mut v = Validator::new("storage.config", &mut found, &locate);
        let cfg: DropboxConfig = v
            .parse(&json!({
                "root": "homesec/",
                "app_key_env": "HOMESEC_TEST_SURELY_UNSET_DBX_KEY",
                "app_secret_env": "HOMESEC_TEST_SURELY_UNSET_DBX_SECRET",
                "refresh_token_env": "HOMESEC_TEST_SURELY_UNSET_DBX_REFRESH",
                "chunk_size_mb": 200,
            }))
            .unwrap();
        cfg.validate(&mut v);
        let text = found.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("\n");
        for needle in [
            "storage.config.root",
            "storage.config.chunk_size_mb",
            "storage.config.app_key_env: environment variable HOMESEC_TEST_SURELY_UNSET_DBX_KEY is not set",
            "storage.config.app_secret_env",
            "storage.config.refresh_token_env",
        ] {
            assert!(text.contains(needle), "{needle} missing in:\n{text}");
        }
        assert_eq!(found.len(), 5, "{text}");
    }
}
