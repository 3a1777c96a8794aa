//! The plugin registry: (kind, backend name) → config parse + validate → instance.
//! The only module that names concrete plugins.

use std::sync::Arc;

use crate::analyzer::VlmAnalyzer;
use crate::config::{Config, PluginSpec};
use crate::domain::CameraName;
use crate::filter::ObjectFilter;
use crate::notify::Notifier;
use crate::plugin::{ConfigIssue, DataLayout, PluginBuildError, PluginConfig, PluginContext, Validator};
use crate::policy::AlertPolicy;
use crate::sources::ClipSource;
use crate::storage::StorageBackend;
use crate::{analyzer, filter, notify, policy, sources, storage};

fn context(cfg: &Config, update: Option<crate::update::UpdateLink>) -> PluginContext {
    PluginContext {
        layout: DataLayout::new(cfg.data_dir.clone()),
        config_dir: cfg.config_dir(),
        device_id: cfg.device_id.clone(),
        cameras: cfg.cameras.iter().map(|c| c.name.clone()).collect(),
        update,
    }
}

/// The backends each kind knows, for error messages and docs.
pub const SOURCES: &[&str] = &["folder", "rtsp", "v4l"];
pub const STORAGES: &[&str] = &["local"];
pub const FILTERS: &[&str] = &["yolo"];
pub const ANALYZERS: &[&str] = &["openai"];
pub const POLICIES: &[&str] = &["default", "noop"];
pub const NOTIFIERS: &[&str] = &["mqtt"];

/// Everything the daemon is built from.
pub struct Plugins {
    pub sources: Vec<Arc<dyn ClipSource>>,
    pub storage: Arc<dyn StorageBackend>,
    pub filter: Arc<dyn ObjectFilter>,
    pub analyzer: Option<Arc<dyn VlmAnalyzer>>,
    pub policy: Arc<dyn AlertPolicy>,
    pub notifiers: Vec<Arc<dyn Notifier>>,
}

/// Parses and validates a plugin's config block; `None` after recording problems.
fn parse<C: PluginConfig>(spec: &PluginSpec, v: &mut Validator<'_>) -> Option<C> {
    let empty = serde_json::Value::Object(Default::default());
    let value = if spec.config.is_null() { &empty } else { &spec.config };
    let mut cv = v.nested("config");
    let cfg = cv.parse::<C>(value)?;
    cfg.validate(&mut cv);
    Some(cfg)
}

fn unknown(v: &mut Validator<'_>, kind: &str, backend: &str, known: &[&str]) {
    v.error("backend", format!("unknown {kind} backend `{backend}` (known: {})", known.join(", ")));
}

/// Checks every plugin's config block (shape, values, secrets), recording problems.
pub fn check(cfg: &Config, issues: &mut Vec<ConfigIssue>) {
    let locate = cfg.locate();
    let cameras: Vec<CameraName> = cfg.cameras.iter().map(|c| c.name.clone()).collect();
    for cam in &cfg.cameras {
        let spec = &cam.source;
        let mut v = Validator::new(&spec.yaml_path, issues, &locate);
        match spec.backend.as_str() {
            "folder" => drop(parse::<sources::folder::FolderConfig>(spec, &mut v)),
            "rtsp" => drop(parse::<sources::rtsp::RtspConfig>(spec, &mut v)),
            "v4l" => drop(parse::<sources::v4l::V4lConfig>(spec, &mut v)),
            other => unknown(&mut v, "source", other, SOURCES),
        }
    }
    {
        let spec = &cfg.storage;
        let mut v = Validator::new(&spec.yaml_path, issues, &locate);
        match spec.backend.as_str() {
            "local" => drop(parse::<storage::local::LocalStorageConfig>(spec, &mut v)),
            other => unknown(&mut v, "storage", other, STORAGES),
        }
    }
    if !cfg.filter.backend.is_empty() {
        let spec = &cfg.filter;
        let mut v = Validator::new(&spec.yaml_path, issues, &locate);
        match spec.backend.as_str() {
            "yolo" => drop(parse::<filter::yolo::YoloConfig>(spec, &mut v)),
            other => unknown(&mut v, "filter", other, FILTERS),
        }
    }
    if let Some(vlm) = &cfg.vlm {
        let spec = PluginSpec { backend: vlm.backend.clone(), config: vlm.config.clone(), yaml_path: "vlm".into() };
        let mut v = Validator::new("vlm", issues, &locate);
        match spec.backend.as_str() {
            "openai" => drop(parse::<analyzer::openai::OpenAiConfig>(&spec, &mut v)),
            other => unknown(&mut v, "vlm", other, ANALYZERS),
        }
    }
    {
        let spec = &cfg.alert_policy;
        let mut v = Validator::new(&spec.yaml_path, issues, &locate);
        match spec.backend.as_str() {
            "default" => {
                if let Some(p) = parse::<policy::default::DefaultPolicyConfig>(spec, &mut v) {
                    p.check_cameras(&cameras, &mut v.nested("config"));
                }
            }
            "noop" => drop(parse::<policy::noop::NoopPolicyConfig>(spec, &mut v)),
            other => unknown(&mut v, "alert_policy", other, POLICIES),
        }
    }
    for spec in &cfg.notifiers {
        let mut v = Validator::new(&spec.yaml_path, issues, &locate);
        match spec.backend.as_str() {
            "mqtt" => drop(parse::<notify::mqtt::MqttConfig>(spec, &mut v)),
            other => unknown(&mut v, "notifier", other, NOTIFIERS),
        }
    }
}

/// Parses a block that [`check`] accepted already.
fn parsed<C: PluginConfig>(cfg: &Config, spec: &PluginSpec, kind: &'static str) -> Result<C, PluginBuildError> {
    let mut issues = Vec::new();
    let locate = cfg.locate();
    let mut v = Validator::new(&spec.yaml_path, &mut issues, &locate);
    match parse::<C>(spec, &mut v) {
        Some(c) if issues.is_empty() => Ok(c),
        _ => Err(PluginBuildError::new(
            kind,
            &spec.backend,
            issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
        )),
    }
}

fn unknown_backend(kind: &'static str, backend: &str) -> PluginBuildError {
    PluginBuildError::new(kind, backend, "unknown backend")
}

/// Builds every plugin the config names (loads models, opens connections).
pub async fn build(cfg: &Config, update: Option<crate::update::UpdateLink>) -> Result<Plugins, PluginBuildError> {
    let ctx = context(cfg, update);
    let mut sources: Vec<Arc<dyn ClipSource>> = Vec::new();
    for cam in &cfg.cameras {
        let spec = &cam.source;
        sources.push(match spec.backend.as_str() {
            "folder" => {
                Arc::new(sources::folder::FolderSource::new(cam.name.clone(), parsed(cfg, spec, "source")?, &ctx))
            }
            "rtsp" => Arc::new(sources::rtsp::build(cam.name.clone(), parsed(cfg, spec, "source")?, &ctx)?),
            "v4l" => Arc::new(sources::v4l::build(cam.name.clone(), parsed(cfg, spec, "source")?, &ctx)?),
            other => return Err(unknown_backend("source", other)),
        });
    }
    let storage: Arc<dyn StorageBackend> = match cfg.storage.backend.as_str() {
        "local" => Arc::new(storage::local::LocalStorage::new(parsed(cfg, &cfg.storage, "storage")?, &ctx)),
        other => return Err(unknown_backend("storage", other)),
    };
    let filter: Arc<dyn ObjectFilter> = match cfg.filter.backend.as_str() {
        "yolo" => Arc::new(filter::yolo::build(parsed(cfg, &cfg.filter, "filter")?, &ctx)?),
        other => return Err(unknown_backend("filter", other)),
    };
    let analyzer: Option<Arc<dyn VlmAnalyzer>> = match &cfg.vlm {
        None => None,
        Some(vlm) => {
            let spec = PluginSpec { backend: vlm.backend.clone(), config: vlm.config.clone(), yaml_path: "vlm".into() };
            Some(match spec.backend.as_str() {
                "openai" => Arc::new(analyzer::openai::build(parsed(cfg, &spec, "vlm")?, &ctx)?),
                other => return Err(unknown_backend("vlm", other)),
            })
        }
    };
    let policy: Arc<dyn AlertPolicy> = match cfg.alert_policy.backend.as_str() {
        "default" => Arc::new(policy::default::DefaultPolicy::new(parsed(cfg, &cfg.alert_policy, "alert_policy")?)),
        "noop" => Arc::new(policy::noop::NoopPolicy),
        other => return Err(unknown_backend("alert_policy", other)),
    };
    let notifiers = build_notifiers(cfg, ctx.update.clone()).await?;
    Ok(Plugins { sources, storage, filter, analyzer, policy, notifiers })
}

/// Builds the configured notifiers (also used alone by `homesec notify-test`).
pub async fn build_notifiers(
    cfg: &Config,
    update: Option<crate::update::UpdateLink>,
) -> Result<Vec<Arc<dyn Notifier>>, PluginBuildError> {
    let ctx = &context(cfg, update);
    let mut notifiers: Vec<Arc<dyn Notifier>> = Vec::new();
    for spec in &cfg.notifiers {
        notifiers.push(match spec.backend.as_str() {
            "mqtt" => Arc::new(notify::mqtt::build(parsed(cfg, spec, "notifier")?, ctx).await?),
            other => return Err(unknown_backend("notifier", other)),
        });
    }
    Ok(notifiers)
}
