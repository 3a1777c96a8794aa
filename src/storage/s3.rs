//! S3 storage: clips in a bucket of any S3-compatible service (AWS, MinIO,
//! Garage, Ceph RGW, Backblaze B2, ...) through the `object_store` crate.
//! Big clips go up in parts (multipart upload); `view_url` is a public prefix
//! plus the key, or a presigned GET URL valid for a configured time.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::{ClientOptions, ObjectStore, PutPayload, RetryConfig, WriteMultipart};
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
                Ok(u) if u.scheme() == "https" => {}
                Ok(u) if u.scheme() == "http" => v.check(
                    self.allow_http,
                    "endpoint",
                    format!("{endpoint} is plain http: set allow_http: true to allow it"),
                ),
                Ok(u) => v.error("endpoint", format!("{endpoint}: scheme {} is not http or https", u.scheme())),
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
        ("PermanentRedirect", "the bucket is in another region"),
        ("AuthorizationHeaderMalformed", "the region does not match the bucket's"),
        ("Connection refused", "nothing answers at the endpoint"),
        ("dns error", "the endpoint's host name does not resolve"),
    ];
    HINTS.iter().find(|(code, _)| error.contains(code)).map(|(_, hint)| *hint)
}

pub struct S3Storage {
    store: Arc<AmazonS3>,
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
        let timeout = Duration::from_secs(cfg.timeout_s);
        let options = ClientOptions::new()
            .with_allow_http(cfg.allow_http)
            .with_timeout(timeout)
            .with_connect_timeout(Duration::from_secs(5));
        // A few quick retries inside one attempt; the pipeline retries the rest.
        let retry = RetryConfig { max_retries: 2, retry_timeout: timeout, ..RetryConfig::default() };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_access_key_id(credentials.access_key_id)
            .with_secret_access_key(credentials.secret_access_key)
            .with_virtual_hosted_style_request(!cfg.path_style)
            .with_client_options(options)
            .with_retry(retry);
        if let Some(token) = credentials.session_token {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = &cfg.endpoint {
            builder = builder.with_endpoint(endpoint.trim_end_matches('/'));
        }
        let store = builder.build().map_err(|e| PluginBuildError::new("storage", "s3", e))?;
        let endpoint = cfg.endpoint.clone().unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", cfg.region));
        let target = format!("S3 bucket `{}` at {endpoint}", cfg.bucket);
        Ok(S3Storage { store: Arc::new(store), cfg, target, last_error: Mutex::new(None) })
    }
}

impl S3Storage {
    fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.cfg.bucket)
    }

    /// The key of an `s3://bucket/key` URI of this bucket.
    fn key_of(&self, uri: &str) -> Result<ObjectPath, StorageError> {
        let prefix = format!("s3://{}/", self.cfg.bucket);
        uri.strip_prefix(&prefix)
            .filter(|k| !k.is_empty())
            .and_then(|k| ObjectPath::parse(k).ok())
            .ok_or_else(|| StorageError::ForeignUri { uri: uri.to_owned(), expected: format!("{prefix}<key>") })
    }

    fn remote(&self, what: impl Into<String>, e: object_store::Error) -> StorageError {
        let transient =
            !matches!(e, object_store::Error::InvalidPath { .. } | object_store::Error::NotSupported { .. });
        let hint = hint(&crate::telemetry::chain(&e)).map(|h| format!(": {h}")).unwrap_or_default();
        StorageError::Remote { target: self.target.clone(), what: what.into(), hint, transient, source: Box::new(e) }
    }

    /// Remembers the outcome for `/health`.
    fn note<T>(&self, r: Result<T, StorageError>) -> Result<T, StorageError> {
        if let Ok(mut last) = self.last_error.lock() {
            *last = r.as_ref().err().map(|e| crate::telemetry::chain(e));
        }
        r
    }

    async fn view_url(&self, key: &ObjectPath) -> Result<String, StorageError> {
        if let Some(prefix) = &self.cfg.view_url_prefix {
            return Ok(format!("{}/{key}", prefix.trim_end_matches('/')));
        }
        let expiry = Duration::from_secs(self.cfg.presign_expiry_s);
        let url = self
            .store
            .signed_url(reqwest::Method::GET, key, expiry)
            .await
            .map_err(|e| self.remote(format!("presigning {key}"), e))?;
        Ok(url.to_string())
    }

    async fn upload(&self, key: &ObjectPath, local: &Path) -> Result<(), StorageError> {
        let io = |source| StorageError::Io { path: local.display().to_string(), key: key.to_string(), source };
        let size = tokio::fs::metadata(local).await.map_err(io)?.len();
        if size < self.cfg.multipart_threshold_mb * MIB {
            let bytes = tokio::fs::read(local).await.map_err(io)?;
            self.store.put(key, PutPayload::from(bytes)).await.map_err(|e| self.remote(format!("PUT {key}"), e))?;
            return Ok(());
        }
        let part = (self.cfg.part_size_mb * MIB) as usize;
        debug!(key = %key, bytes = size, part_bytes = part, "multipart upload");
        let upload =
            self.store.put_multipart(key).await.map_err(|e| self.remote(format!("starting multipart {key}"), e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part);
        let mut file = tokio::fs::File::open(local).await.map_err(io)?;
        let mut buf = vec![0u8; part];
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(io(e));
                }
            };
            if n == 0 {
                break;
            }
            writer.write(&buf[..n]);
            if let Err(e) = writer.wait_for_capacity(2).await {
                // Parts of an unfinished upload would be kept (and billed) by the service.
                let _ = writer.abort().await;
                return Err(self.remote(format!("uploading a part of {key}"), e));
            }
        }
        writer.finish().await.map_err(|e| self.remote(format!("completing multipart {key}"), e))?;
        Ok(())
    }

    async fn download(&self, key: &ObjectPath, uri: &str, dest: &Path) -> Result<(), StorageError> {
        let got = match self.store.get(key).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Err(StorageError::NotFound { uri: uri.to_owned() }),
            Err(e) => return Err(self.remote(format!("GET {key}"), e)),
        };
        super::save_stream(got.into_stream(), uri, dest, |e| self.remote(format!("GET {key}"), e)).await
    }
}

#[async_trait]
impl StorageBackend for S3Storage {
    fn name(&self) -> &str {
        "s3"
    }

    async fn put(&self, clip: &Clip, local: &Path) -> Result<StoredObject, StorageError> {
        let key = ObjectPath::from(super::clip_key(&self.cfg.path_template, clip));
        let r = self.upload(&key, local).await;
        self.note(r)?;
        let view_url = self.view_url(&key).await?;
        Ok(StoredObject { storage_uri: self.uri(key.as_ref()), view_url: Some(view_url) })
    }

    async fn put_json(&self, clip: &Clip, name: &str, value: &serde_json::Value) -> Result<StoredObject, StorageError> {
        let key = ObjectPath::from(super::json_key(&super::clip_key(&self.cfg.path_template, clip), name));
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| StorageError::Backend(e.to_string()))?;
        let r = self.store.put(&key, PutPayload::from(bytes)).await.map_err(|e| self.remote(format!("PUT {key}"), e));
        self.note(r)?;
        let view_url = self.view_url(&key).await?;
        Ok(StoredObject { storage_uri: self.uri(key.as_ref()), view_url: Some(view_url) })
    }

    async fn get(&self, storage_uri: &str, dest: &Path) -> Result<(), StorageError> {
        let key = self.key_of(storage_uri)?;
        self.download(&key, storage_uri, dest).await
    }

    async fn exists(&self, storage_uri: &str) -> Result<bool, StorageError> {
        let key = self.key_of(storage_uri)?;
        match self.store.head(&key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.remote(format!("HEAD {key}"), e)),
        }
    }

    async fn delete(&self, storage_uri: &str) -> Result<(), StorageError> {
        let key = self.key_of(storage_uri)?;
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.remote(format!("DELETE {key}"), e)),
        }
    }

    /// Lists a key prefix nothing is stored under: answers only when the
    /// endpoint is reachable, the bucket exists and the credentials are good.
    async fn ping(&self) -> bool {
        let probe = ObjectPath::from(".homesec-probe");
        let r = self
            .store
            .list_with_delimiter(Some(&probe))
            .await
            .map(|_| ())
            .map_err(|e| self.remote("listing the bucket", e));
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
    fn an_unknown_key_is_refused() {
        let found = issues(serde_json::json!({"bucket": "clips", "acces_key_id_env": "X"}));
        assert!(found.iter().any(|i| i.contains("acces_key_id_env")), "{found:?}");
    }
}
