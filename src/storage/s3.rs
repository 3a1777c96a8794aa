//! S3 storage: clips in a bucket of any S3-compatible service (AWS, MinIO,
//! Garage, Ceph RGW, Backblaze B2, ...). Requests are signed with SigV4 in
//! the query string (`rusty-s3`, sans-IO) and sent with the box's one HTTP
//! client (reqwest). Big clips go up in parts (multipart upload); `view_url`
//! is a public prefix plus the key, or a presigned GET URL valid for a
//! configured time.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, ETAG};
use rusty_s3::actions::CreateMultipartUpload;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tracing::{debug, warn};

use super::{StorageBackend, StorageError, StoredObject};
use crate::domain::Clip;
use crate::plugin::{PluginBuildError, PluginConfig, PluginContext, Validator};

/// SigV4 presigned URLs live at most 7 days.
const MAX_PRESIGN_S: u64 = 7 * 24 * 3600;
/// S3 takes parts of at least 5 MiB (but the last).
const MIN_PART_MB: u64 = 5;
const MIB: u64 = 1024 * 1024;
/// S3 takes at most 10 000 parts.
const MAX_PARTS: u64 = 10_000;
/// A request's own signature is valid this long past its timeout (room for
/// the box's clock being behind the service's).
const SIGN_MARGIN_S: u64 = 15 * 60;
/// Tries of one request when the service is unreachable, busy or failing (5xx, 429).
const ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// The service's URL (`https://minio.lan:9000`); AWS's own when unset.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key`
    /// (most self-hosted services want this).
    #[serde(default)]
    pub path_style: bool,
    /// Allows an `http://` endpoint (credentials and clips then travel in clear).
    #[serde(default)]
    pub allow_http: bool,
    #[serde(default = "default_access_key_env")]
    pub access_key_id_env: String,
    #[serde(default = "default_secret_key_env")]
    pub secret_access_key_env: String,
    /// For temporary credentials.
    #[serde(default)]
    pub session_token_env: Option<String>,
    /// Key of a stored clip; placeholders `{camera_name}`, `{clip_id}`.
    #[serde(default = "super::default_path_template")]
    pub path_template: String,
    /// When set, `view_url = <prefix>/<key>` (a public bucket or a CDN);
    /// otherwise a presigned GET URL valid for `presign_expiry_s`.
    #[serde(default)]
    pub view_url_prefix: Option<String>,
    #[serde(default = "default_presign_expiry_s")]
    pub presign_expiry_s: u64,
    /// Clips at least this big go up in parts.
    #[serde(default = "default_multipart_threshold_mb")]
    pub multipart_threshold_mb: u64,
    #[serde(default = "default_part_size_mb")]
    pub part_size_mb: u64,
    /// Longest a request may take (a part, a small clip).
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_access_key_env() -> String {
    "AWS_ACCESS_KEY_ID".into()
}
fn default_secret_key_env() -> String {
    "AWS_SECRET_ACCESS_KEY".into()
}
fn default_presign_expiry_s() -> u64 {
    MAX_PRESIGN_S
}
fn default_multipart_threshold_mb() -> u64 {
    16
}
fn default_part_size_mb() -> u64 {
    8
}
fn default_timeout_s() -> u64 {
    60
}

impl PluginConfig for S3Config {
    fn validate(&self, v: &mut Validator<'_>) {
        let bucket_ok = (3..=63).contains(&self.bucket.len())
            && self.bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        v.check(bucket_ok, "bucket", "must be a bucket name: 3-63 characters of a-z, 0-9, `-`, `.`");
        v.check(!self.region.is_empty(), "region", "must not be empty");
        if let Some(endpoint) = &self.endpoint {
            match url::Url::parse(endpoint) {
                Ok(u) => {
                    match u.scheme() {
                        "https" => {}
                        "http" => v.check(
                            self.allow_http,
                            "endpoint",
                            format!("{endpoint} is plain http: set allow_http: true to allow it"),
                        ),
                        other => v.error("endpoint", format!("{endpoint}: scheme {other} is not http or https")),
                    }
                    let ip = matches!(u.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)));
                    v.check(
                        self.path_style || !ip,
                        "endpoint",
                        format!("{endpoint} is an IP address, which cannot have the bucket as a sub-domain: set path_style: true"),
                    );
                }
                Err(e) => v.error("endpoint", format!("{endpoint} is not a URL: {e}")),
            }
        }
        super::validate_template(&self.path_template, v);
        if let Some(p) = &self.view_url_prefix {
            v.check(p.starts_with("https://") || p.starts_with("http://"), "view_url_prefix", "must be an http(s) URL");
        }
        v.check(
            (1..=MAX_PRESIGN_S).contains(&self.presign_expiry_s),
            "presign_expiry_s",
            format!("must be 1..={MAX_PRESIGN_S} (7 days, the longest S3 signs for)"),
        );
        v.check(
            self.part_size_mb >= MIN_PART_MB && self.part_size_mb <= 512,
            "part_size_mb",
            format!("must be {MIN_PART_MB}..=512 (S3 takes parts of 5 MiB or more)"),
        );
        v.check(self.multipart_threshold_mb >= 1, "multipart_threshold_mb", "must be at least 1");
        v.check(self.timeout_s >= 1, "timeout_s", "must be at least 1");
        let _ = v.require_env("access_key_id_env", &self.access_key_id_env);
        let _ = v.require_env("secret_access_key_env", &self.secret_access_key_env);
        if let Some(env) = &self.session_token_env {
            let _ = v.require_env("session_token_env", env);
        }
    }
}

/// A plain sentence for the S3 error codes a misconfigured box meets.
fn hint(error: &str) -> Option<&'static str> {
    const HINTS: &[(&str, &str)] = &[
        ("NoSuchBucket", "the bucket does not exist"),
        ("InvalidAccessKeyId", "the access key id is not known to the service"),
        ("SignatureDoesNotMatch", "the secret access key is wrong"),
        ("AccessDenied", "the credentials may not do this in the bucket"),
        ("ExpiredToken", "the session token has expired"),
        ("RequestTimeTooSkewed", "the box's clock is too far from the service's"),
        ("PermanentRedirect", "the bucket is in another region"),
        ("AuthorizationHeaderMalformed", "the region does not match the bucket's"),
        ("Connection refused", "nothing answers at the endpoint"),
        ("dns error", "the endpoint's host name does not resolve"),
    ];
    HINTS.iter().find(|(code, _)| error.contains(code)).map(|(_, hint)| *hint)
}

/// What went wrong with one request.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The request could not be sent or its answer not read. The URL is left
    /// out: it carries the request's signature.
    #[error("the request failed")]
    Http(#[source] reqwest::Error),
    /// The service said no: its error code and message, when it sent them.
    #[error("HTTP {status}{}{}", if code.is_empty() { String::new() } else { format!(" {code}") },
        if message.is_empty() { String::new() } else { format!(": {message}") })]
    Status { status: u16, code: String, message: String },
    #[error("the answer cannot be read: {0}")]
    Answer(String),
    #[error("{size} bytes make more than {MAX_PARTS} parts of {part_mb} MiB: raise part_size_mb")]
    TooManyParts { size: u64, part_mb: u64 },
}

impl S3Error {
    fn http(e: reqwest::Error) -> S3Error {
        S3Error::Http(e.without_url())
    }

    /// Whether trying the same request again at once may help.
    fn is_retryable(&self) -> bool {
        match self {
            S3Error::Http(_) => true,
            S3Error::Status { status, .. } => *status >= 500 || *status == 429,
            S3Error::Answer(_) | S3Error::TooManyParts { .. } => false,
        }
    }

    fn is_not_found(&self) -> bool {
        matches!(self, S3Error::Status { status: 404, code, .. } if code != "NoSuchBucket")
    }
}

/// The text of the first `<name>` element of an S3 XML answer, unescaped.
fn xml_text(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{name}>"))?;
    let text = &xml[start..start + len];
    Some(
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// An error answer: its status, and the code and message of its XML body.
fn status_error(status: u16, body: &str) -> S3Error {
    S3Error::Status {
        status,
        code: xml_text(body, "Code").unwrap_or_default(),
        message: xml_text(body, "Message").unwrap_or_default(),
    }
}

/// The body of a request: bytes (cheap to send again) and their type.
#[derive(Clone)]
struct Payload {
    bytes: bytes::Bytes,
    content_type: &'static str,
}

/// A failure to read `local` for `key`.
fn io_error<'a>(local: &'a Path, key: &'a str) -> impl Fn(std::io::Error) -> StorageError + Copy + 'a {
    move |source| StorageError::Io { path: local.display().to_string(), key: key.to_owned(), source }
}

fn content_type(key: &str) -> &'static str {
    if key.ends_with(".json") {
        "application/json"
    } else if key.ends_with(".mp4") {
        "video/mp4"
    } else {
        "application/octet-stream"
    }
}

pub struct S3Storage {
    http: reqwest::Client,
    bucket: Bucket,
    credentials: Credentials,
    cfg: S3Config,
    /// `S3 bucket `x` at <endpoint>`: how errors and `/health` name it.
    target: String,
    last_error: Mutex<Option<String>>,
}

fn env(name: &str, field: &str) -> Result<String, PluginBuildError> {
    std::env::var(name).ok().filter(|v| !v.is_empty()).ok_or_else(|| {
        PluginBuildError::new("storage", "s3", format!("{field}: environment variable {name} is not set"))
    })
}

/// The keys the backend signs with.
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

/// Builds the backend: reads the credentials from the environment variables
/// the config names.
pub fn build(cfg: S3Config, _ctx: &PluginContext) -> Result<S3Storage, PluginBuildError> {
    let credentials = S3Credentials {
        access_key_id: env(&cfg.access_key_id_env, "access_key_id_env")?,
        secret_access_key: env(&cfg.secret_access_key_env, "secret_access_key_env")?,
        session_token: cfg.session_token_env.as_deref().map(|e| env(e, "session_token_env")).transpose()?,
    };
    S3Storage::connect(cfg, credentials)
}

impl S3Storage {
    /// The backend on `cfg` with these credentials (no request is made yet).
    pub fn connect(cfg: S3Config, credentials: S3Credentials) -> Result<S3Storage, PluginBuildError> {
        let error = |e: String| PluginBuildError::new("storage", "s3", e);
        let endpoint = cfg.endpoint.clone().unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", cfg.region));
        let url = url::Url::parse(endpoint.trim_end_matches('/'))
            .map_err(|e| error(format!("endpoint: {endpoint} is not a URL: {e}")))?;
        let style = if cfg.path_style { UrlStyle::Path } else { UrlStyle::VirtualHost };
        let bucket = Bucket::new(url, style, cfg.bucket.clone(), cfg.region.clone())
            .map_err(|e| error(format!("bucket `{}` at {endpoint}: {e}", cfg.bucket)))?;
        let credentials = match credentials.session_token {
            Some(token) => Credentials::new_with_token(credentials.access_key_id, credentials.secret_access_key, token),
            None => Credentials::new(credentials.access_key_id, credentials.secret_access_key),
        };
        // A signed URL is never sent anywhere else: redirects are errors
        // (S3's own, PermanentRedirect, names the bucket's region).
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.timeout_s))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("homesec/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| error(e.to_string()))?;
        let target = format!("S3 bucket `{}` at {endpoint}", cfg.bucket);
        Ok(S3Storage { http, bucket, credentials, cfg, target, last_error: Mutex::new(None) })
    }

    fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.cfg.bucket)
    }

    /// The key of an `s3://bucket/key` URI of this bucket.
    fn key_of<'u>(&self, uri: &'u str) -> Result<&'u str, StorageError> {
        let prefix = format!("s3://{}/", self.cfg.bucket);
        uri.strip_prefix(&prefix)
            .filter(|k| k.split('/').all(|part| !part.is_empty() && part != "." && part != ".."))
            .ok_or_else(|| StorageError::ForeignUri { uri: uri.to_owned(), expected: format!("{prefix}<key>") })
    }

    fn remote(&self, what: impl Into<String>, e: S3Error) -> StorageError {
        let hint = hint(&crate::telemetry::chain(&e)).map(|h| format!(": {h}")).unwrap_or_default();
        // Every failure may pass: a bucket may be created, a key granted, a
        // service come back. The pipeline retries with backoff.
        StorageError::Remote {
            target: self.target.clone(),
            what: what.into(),
            hint,
            transient: true,
            source: Box::new(e),
        }
    }

    /// Remembers the outcome for `/health`.
    fn note<T>(&self, r: Result<T, StorageError>) -> Result<T, StorageError> {
        if let Ok(mut last) = self.last_error.lock() {
            *last = r.as_ref().err().map(|e| crate::telemetry::chain(e));
        }
        r
    }

    /// How long a request's own signature is valid.
    fn request_expiry(&self) -> Duration {
        Duration::from_secs(self.cfg.timeout_s + SIGN_MARGIN_S)
    }

    /// Sends a signed request and gives back its answer when it is a
    /// success; tries again at once (twice) when the service is unreachable
    /// or failing.
    async fn send(&self, method: Method, url: &url::Url, body: Option<&Payload>) -> Result<reqwest::Response, S3Error> {
        let mut attempt = 1;
        loop {
            let mut request = self.http.request(method.clone(), url.as_str());
            if let Some(p) = body {
                request = request.header(CONTENT_TYPE, p.content_type).body(p.bytes.clone());
            }
            let result = match request.send().await {
                Ok(answer) if answer.status().is_success() => return Ok(answer),
                Ok(answer) => {
                    let status = answer.status().as_u16();
                    Err(status_error(status, &answer.text().await.unwrap_or_default()))
                }
                Err(e) => Err(S3Error::http(e)),
            };
            match result {
                Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                    debug!(error = %crate::telemetry::chain(&e), attempt, "S3 request failed; trying again");
                    tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// The text of a success answer; S3 may also answer 200 with an error inside.
    async fn text_of(answer: reqwest::Response) -> Result<String, S3Error> {
        let status = answer.status().as_u16();
        let text = answer.text().await.map_err(S3Error::http)?;
        if text.contains("<Error>") {
            return Err(status_error(status, &text));
        }
        Ok(text)
    }

    fn view_url(&self, key: &str) -> String {
        if let Some(prefix) = &self.cfg.view_url_prefix {
            return format!("{}/{key}", prefix.trim_end_matches('/'));
        }
        let expiry = Duration::from_secs(self.cfg.presign_expiry_s);
        self.bucket.get_object(Some(&self.credentials), key).sign(expiry).to_string()
    }

    async fn put_bytes(&self, key: &str, payload: &Payload) -> Result<(), StorageError> {
        let url = self.bucket.put_object(Some(&self.credentials), key).sign(self.request_expiry());
        self.send(Method::PUT, &url, Some(payload)).await.map_err(|e| self.remote(format!("PUT {key}"), e))?;
        Ok(())
    }

    async fn upload(&self, key: &str, local: &Path) -> Result<(), StorageError> {
        let io = io_error(local, key);
        let size = tokio::fs::metadata(local).await.map_err(io)?.len();
        let content_type = content_type(key);
        if size < self.cfg.multipart_threshold_mb * MIB {
            let bytes = tokio::fs::read(local).await.map_err(io)?.into();
            return self.put_bytes(key, &Payload { bytes, content_type }).await;
        }
        let part = self.cfg.part_size_mb * MIB;
        if size.div_ceil(part) > MAX_PARTS {
            let e = S3Error::TooManyParts { size, part_mb: self.cfg.part_size_mb };
            return Err(self.remote(format!("uploading {key}"), e));
        }
        debug!(key, bytes = size, part_bytes = part, "multipart upload");
        let mut create = self.bucket.create_multipart_upload(Some(&self.credentials), key);
        create.headers_mut().insert("content-type", content_type);
        let url = create.sign(self.request_expiry());
        let started = async {
            let answer =
                self.send(Method::POST, &url, Some(&Payload { bytes: Default::default(), content_type })).await?;
            let text = Self::text_of(answer).await?;
            CreateMultipartUpload::parse_response(&text)
                .map(|r| r.upload_id().to_owned())
                .map_err(|e| S3Error::Answer(format!("no upload id: {e}")))
        };
        let upload_id = started.await.map_err(|e| self.remote(format!("starting multipart {key}"), e))?;
        let r = self.upload_parts(key, local, &upload_id, part).await;
        if r.is_err() {
            // Parts of an unfinished upload would be kept (and billed) by the service.
            let url = self
                .bucket
                .abort_multipart_upload(Some(&self.credentials), key, &upload_id)
                .sign(self.request_expiry());
            if let Err(e) = self.send(Method::DELETE, &url, None).await {
                warn!(key, error = %crate::telemetry::chain(&e), "cannot abort the multipart upload");
            }
        }
        r
    }

    /// Sends `local` as parts of `part` bytes, then completes the upload.
    async fn upload_parts(&self, key: &str, local: &Path, upload_id: &str, part: u64) -> Result<(), StorageError> {
        let io = io_error(local, key);
        let mut file = tokio::fs::File::open(local).await.map_err(io)?;
        let mut etags: Vec<String> = Vec::new();
        loop {
            let mut buf = Vec::with_capacity(part as usize);
            (&mut file).take(part).read_to_end(&mut buf).await.map_err(io)?;
            if buf.is_empty() {
                break;
            }
            // At most MAX_PARTS parts (checked above), so the number fits.
            let number = u16::try_from(etags.len() + 1).unwrap_or(u16::MAX);
            let url =
                self.bucket.upload_part(Some(&self.credentials), key, number, upload_id).sign(self.request_expiry());
            let payload = Payload { bytes: buf.into(), content_type: "application/octet-stream" };
            let answer = self
                .send(Method::PUT, &url, Some(&payload))
                .await
                .map_err(|e| self.remote(format!("uploading part {number} of {key}"), e))?;
            let etag = answer.headers().get(ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let Some(etag) = etag else {
                let e = S3Error::Answer(format!("no ETag for part {number}"));
                return Err(self.remote(format!("uploading part {number} of {key}"), e));
            };
            etags.push(etag);
        }
        let complete = self.bucket.complete_multipart_upload(
            Some(&self.credentials),
            key,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let url = complete.sign(self.request_expiry());
        let payload = Payload { bytes: complete.body().into(), content_type: "application/xml" };
        let done = async { Self::text_of(self.send(Method::POST, &url, Some(&payload)).await?).await };
        done.await.map_err(|e| self.remote(format!("completing multipart {key}"), e))?;
        Ok(())
    }

    async fn download(&self, key: &str, uri: &str, dest: &Path) -> Result<(), StorageError> {
        let url = self.bucket.get_object(Some(&self.credentials), key).sign(self.request_expiry());
        let answer = match self.send(Method::GET, &url, None).await {
            Ok(a) => a,
            Err(e) if e.is_not_found() => return Err(StorageError::NotFound { uri: uri.to_owned() }),
            Err(e) => return Err(self.remote(format!("GET {key}"), e)),
        };
        super::save_stream(answer.bytes_stream(), uri, dest, |e| self.remote(format!("GET {key}"), S3Error::http(e)))
            .await
    }
}

#[async_trait]
impl StorageBackend for S3Storage {
    fn name(&self) -> &str {
        "s3"
    }

    async fn put(&self, clip: &Clip, local: &Path) -> Result<StoredObject, StorageError> {
        let key = super::clip_key(&self.cfg.path_template, clip);
        let r = self.upload(&key, local).await;
        self.note(r)?;
        Ok(StoredObject { storage_uri: self.uri(&key), view_url: Some(self.view_url(&key)) })
    }

    async fn put_json(&self, clip: &Clip, name: &str, value: &serde_json::Value) -> Result<StoredObject, StorageError> {
        let key = super::json_key(&super::clip_key(&self.cfg.path_template, clip), name);
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| StorageError::Backend(e.to_string()))?;
        let r = self.put_bytes(&key, &Payload { bytes: bytes.into(), content_type: "application/json" }).await;
        self.note(r)?;
        Ok(StoredObject { storage_uri: self.uri(&key), view_url: Some(self.view_url(&key)) })
    }

    async fn get(&self, storage_uri: &str, dest: &Path) -> Result<(), StorageError> {
        let key = self.key_of(storage_uri)?;
        self.download(key, storage_uri, dest).await
    }

    async fn exists(&self, storage_uri: &str) -> Result<bool, StorageError> {
        let key = self.key_of(storage_uri)?;
        let url = self.bucket.head_object(Some(&self.credentials), key).sign(self.request_expiry());
        match self.send(Method::HEAD, &url, None).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(self.remote(format!("HEAD {key}"), e)),
        }
    }

    async fn delete(&self, storage_uri: &str) -> Result<(), StorageError> {
        let key = self.key_of(storage_uri)?;
        let url = self.bucket.delete_object(Some(&self.credentials), key).sign(self.request_expiry());
        match self.send(Method::DELETE, &url, None).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(self.remote(format!("DELETE {key}"), e)),
        }
    }

    /// Lists a key prefix nothing is stored under: answers only when the
    /// endpoint is reachable, the bucket exists and the credentials are good.
    async fn ping(&self) -> bool {
        let mut list = self.bucket.list_objects_v2(Some(&self.credentials));
        list.with_prefix(".homesec-probe");
        list.with_max_keys(1);
        let url = list.sign(self.request_expiry());
        let r = self.send(Method::GET, &url, None).await.map(|_| ()).map_err(|e| self.remote("listing the bucket", e));
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

    fn issues(yaml: serde_json::Value) -> Vec<String> {
        let mut found = Vec::new();
        let locate = |_: &str| None;
        let mut v = Validator::new("storage.config", &mut found, &locate);
        if let Some(cfg) = v.parse::<S3Config>(&yaml) {
            cfg.validate(&mut v);
        }
        found.iter().map(|i| i.to_string()).collect()
    }

    #[test]
    fn every_problem_is_named_with_its_path() {
        let found = issues(serde_json::json!({
            "bucket": "Bad_Bucket",
            "endpoint": "http://127.0.0.1:9000",
            "path_style": true,
            "presign_expiry_s": 700000,
            "part_size_mb": 1,
            "access_key_id_env": "HOMESEC_TEST_SURELY_UNSET_S3_KEY",
            "secret_access_key_env": "HOMESEC_TEST_SURELY_UNSET_S3_SECRET",
        }));
        let text = found.join("\n");
        for needle in [
            "storage.config.bucket",
            "storage.config.endpoint: http://127.0.0.1:9000 is plain http: set allow_http: true",
            "storage.config.presign_expiry_s",
            "storage.config.part_size_mb",
            "storage.config.access_key_id_env: environment variable HOMESEC_TEST_SURELY_UNSET_S3_KEY is not set",
            "storage.config.secret_access_key_env: environment variable HOMESEC_TEST_SURELY_UNSET_S3_SECRET",
        ] {
            assert!(text.contains(needle), "{needle} missing in:\n{text}");
        }
        assert_eq!(found.len(), 6, "{text}");
    }

    #[test]
    fn an_ip_endpoint_needs_path_style() {
        let cfg = |path_style| {
            serde_json::json!({"bucket": "clips", "endpoint": "https://10.0.0.5:9000", "path_style": path_style,
                "access_key_id_env": "PATH", "secret_access_key_env": "PATH"})
        };
        let found = issues(cfg(false));
        assert!(
            found.iter().any(|i| i.contains("storage.config.endpoint: https://10.0.0.5:9000 is an IP address")
                && i.contains("set path_style: true")),
            "{found:?}"
        );
        assert!(issues(cfg(true)).is_empty());
    }

    #[test]
    fn error_answers_are_read() {
        let body = "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code>\
            <Message>The bucket &apos;x&apos; does not exist</Message></Error>";
        let e = status_error(404, body);
        assert_eq!(e.to_string(), "HTTP 404 NoSuchBucket: The bucket 'x' does not exist");
        assert!(!e.is_not_found(), "a missing bucket is not a missing object");
        assert!(status_error(404, "").is_not_found());
        assert_eq!(status_error(403, "").to_string(), "HTTP 403");
        assert!(status_error(503, "").is_retryable() && !status_error(403, "").is_retryable());
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let found = issues(serde_json::json!({"bucket": "clips", "acces_key_id_env": "X"}));
        assert!(found.iter().any(|i| i.contains("acces_key_id_env")), "{found:?}");
    }
}
