//! Typed config: one YAML file, every pluggable part as `{backend, config}`
//! validated by its plugin, secrets by env-var name. [`Config::read`] checks
//! the shape and the sections the daemon owns; the plugin registry
//! (`plugins::check`) checks each plugin's block. Both report every
//! problem at once, each with its YAML path and line.

mod yaml;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::IgnoredAny;

pub use crate::plugin::{ConfigIssue, PluginConfig, Validator};
pub use yaml::line_of;

use crate::domain::CameraName;
use crate::fsutil::resolve_path;

/// All problems found in a config file.
#[derive(Debug, thiserror::Error)]
#[error("{} problem(s) in {}:\n{}", .issues.len(), .file.display(), render(.issues))]
pub struct ConfigError {
    pub file: PathBuf,
    pub issues: Vec<ConfigIssue>,
}

fn render(issues: &[ConfigIssue]) -> String {
    issues.iter().map(|i| format!("  - {i}")).collect::<Vec<_>>().join("\n")
}

/// A pluggable part: which backend, and its own config block (checked by the plugin).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    pub backend: String,
    #[serde(default)]
    pub config: serde_json::Value,
    /// YAML path of this block (filled in by the loader).
    #[serde(skip)]
    pub yaml_path: String,
}

impl PluginSpec {
    fn with_path(mut self, path: String) -> Self {
        self.yaml_path = path;
        self
    }

    fn default_backend(backend: &str, path: &str) -> Self {
        Self { backend: backend.to_owned(), config: serde_json::Value::Null, yaml_path: path.to_owned() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    pub name: CameraName,
    pub source: PluginSpec,
    /// Named polygons of the picture; with a required one, only objects whose
    /// foot point is in it can make the camera alert.
    #[serde(default)]
    pub zones: Vec<crate::filter::tracking::ZoneConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// Run the VLM only when the filter saw one of `trigger_classes`.
    TriggerOnly,
    Always,
    Never,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VlmSection {
    pub backend: String,
    #[serde(default = "default_run_mode")]
    pub run_mode: RunMode,
    #[serde(default = "default_trigger_classes")]
    pub trigger_classes: Vec<String>,
    #[serde(default)]
    pub config: serde_json::Value,
}

fn default_run_mode() -> RunMode {
    RunMode::TriggerOnly
}

fn default_trigger_classes() -> Vec<String> {
    vec!["person".into()]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConcurrencyConfig {
    /// Clips processed at once (bounds memory when many cameras fire together).
    pub max_clips_in_flight: usize,
    pub upload_workers: usize,
    pub filter_workers: usize,
    pub vlm_workers: usize,
}

impl Default for ConcurrencyConfig {
    fn default() -> Self {
        Self { max_clips_in_flight: 4, upload_workers: 2, filter_workers: 1, vlm_workers: 2 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts per stage before it is marked failed.
    pub max_attempts: u32,
    /// First delay between attempts; doubles each time up to `max_backoff_s`.
    pub backoff_s: f64,
    pub max_backoff_s: f64,
    /// How long an undelivered notification is retried before it is dropped.
    pub notify_ttl_s: u64,
    /// How often failed uploads are retried in the background.
    pub upload_retry_interval_s: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff_s: 2.0,
            max_backoff_s: 60.0,
            notify_ttl_s: 86_400,
            upload_retry_interval_s: 300,
        }
    }
}

impl RetryConfig {
    /// The delays between attempts: `backoff_s` doubling up to `max_backoff_s`,
    /// with ±20 % jitter.
    pub fn schedule(&self) -> crate::backoff::Backoff {
        use std::time::Duration;
        // Validated as ≥ 0; anything out of range saturates instead of panicking.
        const LONGEST: Duration = Duration::from_secs(u32::MAX as u64);
        let secs = |s: f64| Duration::try_from_secs_f64(s.max(0.0)).map_or(LONGEST, |d| d.min(LONGEST));
        crate::backoff::Backoff::new(secs(self.backoff_s), secs(self.max_backoff_s))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    /// Env var holding the API key for `/api/v1/diagnostics` (header `X-API-Key`).
    /// Without it, diagnostics are refused.
    pub api_key_env: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { enabled: true, host: "127.0.0.1".into(), port: 8081, api_key_env: None }
    }
}

pub use crate::retention::RetentionConfig;

/// The whole, validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    pub device_id: String,
    /// redb store, recordings, snapshots, quarantine (absolute).
    pub data_dir: PathBuf,
    pub cameras: Vec<CameraConfig>,
    pub storage: PluginSpec,
    pub filter: PluginSpec,
    pub vlm: Option<VlmSection>,
    pub alert_policy: PluginSpec,
    pub notifiers: Vec<PluginSpec>,
    pub concurrency: ConcurrencyConfig,
    pub retry: RetryConfig,
    pub retention: RetentionConfig,
    pub server: ServerConfig,
    pub update: crate::update::UpdateConfig,
    /// Postgres sync (`{backend: postgres, config}`, checked by the sync module);
    /// `None`: nothing is synced and the store keeps no sync outbox.
    pub sync: Option<PluginSpec>,
    /// The box's FTP server (checked by the FTP source with its cameras).
    pub ftp: Option<serde_json::Value>,
    /// The YAML text (for locating problems found later).
    pub text: String,
}

/// The top-level keys; anything else is an error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // only the key names matter
struct TopLevel {
    version: Option<IgnoredAny>,
    device_id: Option<IgnoredAny>,
    data_dir: Option<IgnoredAny>,
    cameras: Option<IgnoredAny>,
    storage: Option<IgnoredAny>,
    filter: Option<IgnoredAny>,
    vlm: Option<IgnoredAny>,
    alert_policy: Option<IgnoredAny>,
    notifiers: Option<IgnoredAny>,
    concurrency: Option<IgnoredAny>,
    retry: Option<IgnoredAny>,
    retention: Option<IgnoredAny>,
    server: Option<IgnoredAny>,
    update: Option<IgnoredAny>,
    sync: Option<IgnoredAny>,
    ftp: Option<IgnoredAny>,
}

/// Reads one section, recording its problem (if any) and returning its value.
fn section<T: serde::de::DeserializeOwned>(text: &str, path: &str, issues: &mut Vec<ConfigIssue>) -> Option<T> {
    match yaml::read_at::<T>(text, path) {
        Ok(v) => v,
        Err(issue) => {
            issues.push(issue);
            None
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn default_device_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let cleaned: String = host
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c.to_ascii_lowercase() } else { '_' })
        .collect();
    if valid_name(&cleaned) { cleaned } else { "homesec".into() }
}

impl Config {
    /// Reads a config file and checks its syntax, shape and the daemon's own
    /// sections (plugin blocks are the registry's: `plugins::load` does both).
    /// Goes on past problems: returns the config as far as it could be read
    /// (defaults where a section is broken) and every problem found, so that
    /// the plugin check can add its own. Fails only when the file cannot be
    /// read or is not YAML.
    pub fn read(file: &Path) -> Result<(Config, Vec<ConfigIssue>), ConfigError> {
        let fail = |issues| ConfigError { file: file.to_path_buf(), issues };
        let text = std::fs::read_to_string(file).map_err(|e| {
            fail(vec![ConfigIssue { path: String::new(), line: None, message: format!("cannot read the file: {e}") }])
        })?;
        let config_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let config_dir = std::path::absolute(&config_dir).unwrap_or(config_dir);
        Self::parse(&text, file, &config_dir).map_err(fail)
    }

    /// Reads only what tools need to find a box's data (`data_dir`, `server`),
    /// without checking plugins or secrets: `homesec clips` works from a shell
    /// that lacks the daemon's environment.
    pub fn load_location(file: &Path) -> Result<(PathBuf, ServerConfig), ConfigError> {
        let fail = |issues| ConfigError { file: file.to_path_buf(), issues };
        let text = std::fs::read_to_string(file).map_err(|e| {
            fail(vec![ConfigIssue { path: String::new(), line: None, message: format!("cannot read the file: {e}") }])
        })?;
        let mut issues = Vec::new();
        let data_dir = section::<PathBuf>(&text, "data_dir", &mut issues).unwrap_or_else(|| PathBuf::from("data"));
        let server: ServerConfig = section(&text, "server", &mut issues).unwrap_or_default();
        if !issues.is_empty() {
            return Err(fail(issues));
        }
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        Ok((resolve_path(&dir, &data_dir), server))
    }

    /// [`Config::read`] for config text; `config_dir` anchors relative paths.
    pub fn parse(text: &str, file: &Path, config_dir: &Path) -> Result<(Config, Vec<ConfigIssue>), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        // With broken YAML nothing else can be read.
        yaml::check_syntax(text).map_err(|issue| vec![issue])?;
        if let Err(issue) = yaml::read_at::<TopLevel>(text, "") {
            issues.push(issue);
        }

        let version: Option<u32> = section(text, "version", &mut issues);
        if let Some(v) = version.filter(|v| *v != 1) {
            issues.push(ConfigIssue {
                path: "version".into(),
                line: line_of(text, "version"),
                message: format!("unsupported config version {v} (this build reads version 1)"),
            });
        }
        let device_id = section::<String>(text, "device_id", &mut issues).unwrap_or_else(default_device_id);
        let data_dir = section::<PathBuf>(text, "data_dir", &mut issues).unwrap_or_else(|| PathBuf::from("data"));
        let cameras: Vec<CameraConfig> = section(text, "cameras", &mut issues).unwrap_or_default();
        let storage = section::<PluginSpec>(text, "storage", &mut issues)
            .unwrap_or_else(|| PluginSpec::default_backend("local", "storage"));
        let filter = section::<PluginSpec>(text, "filter", &mut issues);
        let vlm: Option<VlmSection> = section(text, "vlm", &mut issues);
        let alert_policy = section::<PluginSpec>(text, "alert_policy", &mut issues)
            .unwrap_or_else(|| PluginSpec::default_backend("default", "alert_policy"));
        let notifiers: Vec<PluginSpec> = section(text, "notifiers", &mut issues).unwrap_or_default();
        let concurrency: ConcurrencyConfig = section(text, "concurrency", &mut issues).unwrap_or_default();
        let retry: RetryConfig = section(text, "retry", &mut issues).unwrap_or_default();
        let retention: RetentionConfig = section(text, "retention", &mut issues).unwrap_or_default();
        let server: ServerConfig = section(text, "server", &mut issues).unwrap_or_default();
        let update: crate::update::UpdateConfig = section(text, "update", &mut issues).unwrap_or_default();
        let sync: Option<PluginSpec> = section(text, "sync", &mut issues);
        let ftp: Option<serde_json::Value> = section(text, "ftp", &mut issues);

        let locate = |p: &str| line_of(text, p);
        let mut v = Validator::new("", &mut issues, &locate);
        v.check(valid_name(&device_id), "device_id", "use 1-64 letters, digits, `_` or `-`");
        if filter.is_none() && yaml::read_at::<IgnoredAny>(text, "filter").ok().flatten().is_none() {
            v.error("filter", "missing: an object filter is required (e.g. backend: yolo)");
        }
        let mut seen = std::collections::HashSet::new();
        for (i, cam) in cameras.iter().enumerate() {
            let field = format!("cameras[{i}].name");
            v.check(valid_name(cam.name.as_str()), &field, "use 1-64 letters, digits, `_` or `-`");
            v.check(seen.insert(cam.name.clone()), &field, format!("camera `{}` is defined twice", cam.name));
            let known = |c: &str| crate::filter::yolo::class_index(c).is_some();
            crate::filter::tracking::check_zones(&cam.zones, &known, &mut v.nested(&format!("cameras[{i}]")));
        }
        let c = &concurrency;
        for (field, n) in [
            ("concurrency.max_clips_in_flight", c.max_clips_in_flight),
            ("concurrency.upload_workers", c.upload_workers),
            ("concurrency.filter_workers", c.filter_workers),
            ("concurrency.vlm_workers", c.vlm_workers),
        ] {
            v.check(n >= 1, field, "must be at least 1");
        }
        v.check(retry.max_attempts >= 1, "retry.max_attempts", "must be at least 1");
        v.check(
            retry.backoff_s >= 0.0 && retry.max_backoff_s >= retry.backoff_s,
            "retry.backoff_s",
            "must be ≥ 0 and ≤ retry.max_backoff_s",
        );
        if let Some(env) = &server.api_key_env {
            v.require_env("server.api_key_env", env);
        }
        update.validate(&mut v.nested("update"));
        retention.validate(&mut v.nested("retention"));
        if let Some(vlm) = &vlm {
            v.check(
                vlm.run_mode != RunMode::TriggerOnly || !vlm.trigger_classes.is_empty(),
                "vlm.trigger_classes",
                "run_mode trigger_only needs at least one trigger class",
            );
        }

        let data_dir = resolve_path(config_dir, &data_dir);
        let config = Config {
            file: file.to_path_buf(),
            device_id,
            data_dir,
            cameras: cameras
                .into_iter()
                .enumerate()
                .map(|(i, mut c)| {
                    c.source.yaml_path = format!("cameras[{i}].source");
                    c
                })
                .collect(),
            storage: storage.with_path("storage".into()),
            filter: filter.unwrap_or_else(|| PluginSpec::default_backend("", "filter")).with_path("filter".into()),
            vlm,
            alert_policy: alert_policy.with_path("alert_policy".into()),
            notifiers: notifiers.into_iter().enumerate().map(|(i, n)| n.with_path(format!("notifiers[{i}]"))).collect(),
            concurrency,
            retry,
            retention,
            server,
            update,
            sync: sync.map(|s| s.with_path("sync".into())),
            ftp,
            text: text.to_owned(),
        };
        Ok((config, issues))
    }

    /// The `vlm` section as a plugin block (its `run_mode` and `trigger_classes`
    /// belong to the pipeline).
    pub fn vlm_spec(&self) -> Option<PluginSpec> {
        let vlm = self.vlm.as_ref()?;
        Some(PluginSpec { backend: vlm.backend.clone(), config: vlm.config.clone(), yaml_path: "vlm".into() })
    }

    /// Where everything lives under `data_dir`.
    pub fn layout(&self) -> crate::fsutil::DataLayout {
        crate::fsutil::DataLayout::new(self.data_dir.clone())
    }

    /// The directory relative paths in this config resolve against.
    pub fn config_dir(&self) -> PathBuf {
        let dir = self.file.parent().map(Path::to_path_buf).unwrap_or_default();
        std::path::absolute(&dir).unwrap_or(dir)
    }

    /// A validator whose problems get line numbers from this config's text.
    pub fn locate(&self) -> impl Fn(&str) -> Option<u64> + '_ {
        |p: &str| line_of(&self.text, p)
    }
}
