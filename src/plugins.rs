//! The plugin registry: (kind, backend name) → config check → instance.
//! The only module that names concrete plugins: one table per kind, each
//! backend once. Adding a backend is one row here.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use crate::analyzer::VlmAnalyzer;
use crate::config::{Config, ConfigError, PluginSpec};
use crate::controls::Controls;
use crate::domain::CameraName;
use crate::filter::ObjectFilter;
use crate::filter::service::LiveDetector;
use crate::filter::tracking::{Tracking, Zones};
use crate::homeassistant::{CameraConnectivity, DeviceFeeds};
use crate::media::motion::MotionConfig;
use crate::notify::Notifier;
use crate::plugin::{ConfigIssue, DataLayout, PluginBuildError, PluginConfig, PluginContext, Validator};
use crate::policy::AlertPolicy;
use crate::sources::ClipSource;
use crate::storage::StorageBackend;
use crate::update::UpdateLink;
use crate::{analyzer, filter, homeassistant, notify, policy, sources, storage};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Checks one config block, recording its problems.
type Check = fn(&serde_json::Value, &mut Validator<'_>, &PluginContext);

/// One backend of a kind: its name, how to check its config, how to build it.
struct Row<B> {
    name: &'static str,
    check: Check,
    build: B,
}

/// What sources may share: live cameras the detector service (when the
/// filter has one), FTP cameras the box's one FTP server.
#[derive(Clone, Default)]
struct SharedParts {
    live: Option<LiveDetector>,
    ftp: Option<Arc<sources::ftp::FtpServer>>,
}

type SourceBuild =
    fn(CameraName, &serde_json::Value, &PluginContext, &SharedParts) -> Result<Arc<dyn ClipSource>, PluginBuildError>;

/// A source's build, and its motion settings for `homesec motion` (live cameras).
struct SourceFns {
    build: SourceBuild,
    motion: fn(&serde_json::Value) -> Option<MotionSettings>,
}

/// A live camera's motion settings, as `homesec motion` replays them on a clip.
#[derive(Debug, Clone)]
pub struct MotionSettings {
    pub motion: MotionConfig,
    /// Frames per second the detector looks at.
    pub detect_fps: f64,
}
type Build<T> = fn(&serde_json::Value, &PluginContext) -> Result<Arc<T>, PluginBuildError>;
/// Notifiers connect while they are built; the feeds (the box's updater, the
/// cameras' connectivity) are for the Home Assistant device an MQTT notifier announces.
type NotifierBuild = for<'a> fn(
    &'a serde_json::Value,
    &'a PluginContext,
    DeviceFeeds,
) -> BoxFuture<'a, Result<Arc<dyn Notifier>, PluginBuildError>>;

/// A notifier's build, and the name its config gives it (the outbox keys
/// undelivered alerts by it, so it must be unique); `None` when the block does
/// not parse (that problem is reported already).
struct NotifierFns {
    build: NotifierBuild,
    name: fn(&serde_json::Value) -> Option<String>,
}

/// The source backend whose cameras share the top-level `ftp:` server.
const FTP: &str = "ftp";

const SOURCES: &[Row<SourceFns>] = &[
    Row {
        name: "folder",
        check: check_as::<sources::folder::FolderConfig>,
        build: SourceFns {
            build: |camera, value, ctx, _| {
                Ok(Arc::new(sources::folder::FolderSource::new(camera, config(value)?, ctx)))
            },
            motion: |_| None,
        },
    },
    Row {
        name: FTP,
        check: check_as::<sources::ftp::FtpCameraConfig>,
        build: SourceFns {
            build: |camera, value, ctx, shared| {
                Ok(Arc::new(sources::ftp::build(camera, config(value)?, ctx, shared.ftp.clone())?))
            },
            motion: |_| None,
        },
    },
    Row {
        name: "rtsp",
        check: check_as::<sources::rtsp::RtspConfig>,
        build: SourceFns {
            build: |camera, value, ctx, shared| {
                Ok(Arc::new(sources::rtsp::build(camera, config(value)?, ctx, shared.live.clone())?))
            },
            motion: |value| {
                let c: sources::rtsp::RtspConfig = config(value).ok()?;
                Some(MotionSettings { motion: c.motion, detect_fps: c.detect_fps })
            },
        },
    },
    Row {
        name: "v4l",
        check: check_as::<sources::v4l::V4lConfig>,
        build: SourceFns {
            build: |camera, value, ctx, shared| {
                Ok(Arc::new(sources::v4l::build(camera, config(value)?, ctx, shared.live.clone())?))
            },
            motion: |value| {
                let c: sources::v4l::V4lConfig = config(value).ok()?;
                Some(MotionSettings { motion: c.motion, detect_fps: c.detect_fps })
            },
        },
    },
];

const STORAGES: &[Row<Build<dyn StorageBackend>>] = &[
    Row {
        name: "local",
        check: check_as::<storage::local::LocalStorageConfig>,
        build: |value, ctx| Ok(Arc::new(storage::local::LocalStorage::new(config(value)?, ctx))),
    },
    Row {
        name: "s3",
        check: check_as::<storage::s3::S3Config>,
        build: |value, ctx| Ok(Arc::new(storage::s3::build(config(value)?, ctx)?)),
    },
    Row {
        name: "dropbox",
        check: check_as::<storage::dropbox::DropboxConfig>,
        build: |value, ctx| Ok(Arc::new(storage::dropbox::build(config(value)?, ctx)?)),
    },
];

/// Where clip state is synced (built by the daemon from [`crate::sync::SyncSettings`]).
const SYNCS: &[Row<()>] =
    &[Row { name: crate::sync::BACKEND, check: check_as::<crate::sync::PostgresSyncConfig>, build: () }];

const FILTERS: &[Row<Build<dyn ObjectFilter>>] = &[Row {
    name: "yolo",
    check: check_as::<filter::yolo::YoloConfig>,
    build: |value, ctx| Ok(Arc::new(filter::yolo::build(config(value)?, ctx)?)),
}];

const ANALYZERS: &[Row<Build<dyn VlmAnalyzer>>] = &[Row {
    name: "openai",
    check: check_as::<analyzer::openai::OpenAiConfig>,
    build: |value, ctx| Ok(Arc::new(analyzer::openai::build(config(value)?, ctx)?)),
}];

const POLICIES: &[Row<Build<dyn AlertPolicy>>] = &[
    Row {
        name: "default",
        check: |value, v, ctx| {
            if let Some(p) = parse::<policy::default::DefaultPolicyConfig>(value, v) {
                p.check_cameras(&ctx.cameras, v);
            }
        },
        build: |value, _| Ok(Arc::new(policy::default::DefaultPolicy::new(config(value)?))),
    },
    Row {
        name: "noop",
        check: check_as::<policy::noop::NoopPolicyConfig>,
        build: |_, _| Ok(Arc::new(policy::noop::NoopPolicy)),
    },
];

const NOTIFIERS: &[Row<NotifierFns>] = &[
    Row {
        name: "mqtt",
        check: |value, v, ctx| {
            if let Some(cfg) = parse::<notify::mqtt::MqttConfig>(value, v) {
                cfg.check_files(ctx, v);
            }
        },
        build: NotifierFns {
            build: |value, ctx, feeds| {
                Box::pin(async move {
                    let cfg: notify::mqtt::MqttConfig = config(value)?;
                    let ha = &cfg.home_assistant;
                    // A tool beside the daemon (`notify-test`) announces no device: its
                    // configs, without the daemon's feeds, would replace the daemon's.
                    let device = match ctx.client_tag {
                        Some(_) => None,
                        None => homeassistant::Device::configured(ha, &ctx.device_id, &ctx.cameras, feeds),
                    };
                    Ok(Arc::new(notify::mqtt::build(cfg, ctx, device).await?) as Arc<dyn Notifier>)
                })
            },
            name: |value| Some(config::<notify::mqtt::MqttConfig>(value).ok()?.name.unwrap_or_else(|| "mqtt".into())),
        },
    },
    Row {
        name: "webhook",
        check: check_as::<notify::webhook::WebhookConfig>,
        build: NotifierFns {
            build: |value, ctx, _| {
                Box::pin(async move { Ok(Arc::new(notify::webhook::build(config(value)?, ctx)?) as Arc<dyn Notifier>) })
            },
            name: |value| Some(config::<notify::webhook::WebhookConfig>(value).ok()?.name()),
        },
    },
    Row {
        name: "smtp",
        check: |value, v, ctx| {
            if let Some(cfg) = parse::<notify::smtp::SmtpConfig>(value, v) {
                cfg.check_files(ctx, v);
            }
        },
        build: NotifierFns {
            build: |value, ctx, _| {
                Box::pin(async move { Ok(Arc::new(notify::smtp::build(config(value)?, ctx)?) as Arc<dyn Notifier>) })
            },
            name: |value| Some(config::<notify::smtp::SmtpConfig>(value).ok()?.name()),
        },
    },
    Row {
        name: "sendgrid",
        check: check_as::<notify::sendgrid::SendGridConfig>,
        build: NotifierFns {
            build: |value, ctx, _| {
                Box::pin(
                    async move { Ok(Arc::new(notify::sendgrid::build(config(value)?, ctx)?) as Arc<dyn Notifier>) },
                )
            },
            name: |value| Some(config::<notify::sendgrid::SendGridConfig>(value).ok()?.name()),
        },
    },
    Row {
        name: "ntfy",
        check: check_as::<notify::ntfy::NtfyConfig>,
        build: NotifierFns {
            build: |value, ctx, _| {
                Box::pin(async move { Ok(Arc::new(notify::ntfy::build(config(value)?, ctx)?) as Arc<dyn Notifier>) })
            },
            name: |value| Some(config::<notify::ntfy::NtfyConfig>(value).ok()?.name()),
        },
    },
];

/// A plugin's config block; one left out (or empty) in the YAML reads as `{}`.
fn block(value: &serde_json::Value) -> &serde_json::Value {
    static EMPTY: std::sync::LazyLock<serde_json::Value> =
        std::sync::LazyLock::new(|| serde_json::Value::Object(serde_json::Map::new()));
    if value.is_null() { &EMPTY } else { value }
}

/// Parses and validates a plugin's config block; `None` after recording problems.
fn parse<C: PluginConfig>(value: &serde_json::Value, v: &mut Validator<'_>) -> Option<C> {
    let cfg = v.parse::<C>(block(value))?;
    cfg.validate(v);
    Some(cfg)
}

fn check_as<C: PluginConfig>(value: &serde_json::Value, v: &mut Validator<'_>, _: &PluginContext) {
    drop(parse::<C>(value, v));
}

/// Deserialises a block that [`check`] accepted already.
fn config<C: PluginConfig>(value: &serde_json::Value) -> Result<C, Box<dyn std::error::Error + Send + Sync>> {
    Ok(C::deserialize(block(value))?)
}

fn find<'t, B>(table: &'t [Row<B>], name: &str) -> Option<&'t Row<B>> {
    table.iter().find(|r| r.name == name)
}

fn names<B>(table: &[Row<B>]) -> String {
    table.iter().map(|r| r.name).collect::<Vec<_>>().join(", ")
}

/// Checks one `{backend, config}` block against its kind's table.
fn check_spec<B>(
    table: &[Row<B>],
    kind: &str,
    spec: &PluginSpec,
    issues: &mut Vec<ConfigIssue>,
    cfg: &Config,
    ctx: &PluginContext,
) {
    let locate = cfg.locate();
    let mut v = Validator::new(&spec.yaml_path, issues, &locate);
    match find(table, &spec.backend) {
        Some(row) => (row.check)(&spec.config, &mut v.nested("config"), ctx),
        None => v.error("backend", format!("unknown {kind} backend `{}` (known: {})", spec.backend, names(table))),
    }
}

/// What every plugin of this config may need to know.
pub fn context(cfg: &Config) -> PluginContext {
    PluginContext {
        layout: DataLayout::new(cfg.data_dir.clone()),
        config_dir: cfg.config_dir(),
        device_id: cfg.device_id.clone(),
        cameras: cfg.cameras.iter().map(|c| c.name.clone()).collect(),
        client_tag: None,
    }
}

/// Checks every plugin's config block (shape, values, secrets): every problem at
/// once, each with its YAML path and line.
pub fn check(cfg: &Config) -> Result<(), ConfigError> {
    let issues = issues(cfg);
    if issues.is_empty() { Ok(()) } else { Err(ConfigError { file: cfg.file.clone(), issues }) }
}

/// The problems in the config's plugin blocks.
fn issues(cfg: &Config) -> Vec<ConfigIssue> {
    let ctx = context(cfg);
    let mut issues = Vec::new();
    for cam in &cfg.cameras {
        check_spec(SOURCES, "source", &cam.source, &mut issues, cfg, &ctx);
    }
    let ftp_cameras: Vec<(String, serde_json::Value)> = cfg
        .cameras
        .iter()
        .filter(|c| c.source.backend == FTP)
        .map(|c| (c.source.yaml_path.clone(), block(&c.source.config).clone()))
        .collect();
    if cfg.ftp.is_some() || !ftp_cameras.is_empty() {
        let locate = cfg.locate();
        let mut v = Validator::new("", &mut issues, &locate);
        sources::ftp::check_setup(cfg.ftp.as_ref(), &ftp_cameras, &|p| ctx.resolve(p), &mut v);
    }
    check_spec(STORAGES, "storage", &cfg.storage, &mut issues, cfg, &ctx);
    if !cfg.filter.backend.is_empty() {
        check_spec(FILTERS, "filter", &cfg.filter, &mut issues, cfg, &ctx);
    }
    if let Some(spec) = cfg.vlm_spec() {
        check_spec(ANALYZERS, "vlm", &spec, &mut issues, cfg, &ctx);
    }
    check_spec(POLICIES, "alert_policy", &cfg.alert_policy, &mut issues, cfg, &ctx);
    if let Some(spec) = &cfg.sync {
        check_spec(SYNCS, "sync", spec, &mut issues, cfg, &ctx);
    }
    let mut names = std::collections::HashSet::new();
    for spec in &cfg.notifiers {
        check_spec(NOTIFIERS, "notifier", spec, &mut issues, cfg, &ctx);
        let Some(name) = find(NOTIFIERS, &spec.backend).and_then(|row| (row.build.name)(&spec.config)) else {
            continue;
        };
        if !names.insert(name.clone()) {
            let locate = cfg.locate();
            Validator::new(&spec.yaml_path, &mut issues, &locate)
                .error("", format!("two notifiers are named `{name}`: give one a distinct `config.name`"));
        }
    }
    issues
}

/// Reads a config file and checks it whole: its shape ([`Config::read`]) and
/// every plugin's block ([`check`]).
pub fn load(file: &Path) -> Result<Config, ConfigError> {
    let (cfg, mut found) = Config::read(file)?;
    found.extend(issues(&cfg));
    if found.is_empty() { Ok(cfg) } else { Err(ConfigError { file: file.to_path_buf(), issues: found }) }
}

/// [`load`] for config text (tests, tools): `config_dir` anchors relative paths.
pub fn parse_text(text: &str, file: &Path, config_dir: &Path) -> Result<Config, Vec<ConfigIssue>> {
    let (cfg, mut found) = Config::parse(text, file, config_dir)?;
    found.extend(issues(&cfg));
    if found.is_empty() { Ok(cfg) } else { Err(found) }
}

/// The motion settings of a camera whose source detects motion itself (RTSP,
/// USB); `None` for sources without (a watched folder).
pub fn motion_settings(cfg: &Config, camera: &CameraName) -> Option<MotionSettings> {
    let spec = &cfg.cameras.iter().find(|c| &c.name == camera)?.source;
    (find(SOURCES, &spec.backend)?.build.motion)(&spec.config)
}

/// Everything the daemon is built from.
pub struct Plugins {
    pub sources: Vec<Arc<dyn ClipSource>>,
    pub storage: Arc<dyn StorageBackend>,
    pub filter: Arc<dyn ObjectFilter>,
    pub analyzer: Option<Arc<dyn VlmAnalyzer>>,
    pub policy: Arc<dyn AlertPolicy>,
    pub notifiers: Vec<Arc<dyn Notifier>>,
    /// Every camera's zones and memory of stationary objects, shared by the
    /// clip filter (through the pipeline) and the camera's live detector.
    pub tracking: Arc<Tracking>,
}

fn row<'t, B>(table: &'t [Row<B>], kind: &'static str, spec: &PluginSpec) -> Result<&'t Row<B>, PluginBuildError> {
    find(table, &spec.backend).ok_or_else(|| PluginBuildError::new(kind, &spec.backend, "unknown backend"))
}

/// Builds one plugin, naming its kind and backend when that fails.
fn build_one<T: ?Sized>(
    table: &[Row<Build<T>>],
    kind: &'static str,
    spec: &PluginSpec,
    ctx: &PluginContext,
) -> Result<Arc<T>, PluginBuildError> {
    (row(table, kind, spec)?.build)(&spec.config, ctx).map_err(|e| named(kind, spec, e))
}

/// A build error from inside a plugin keeps its own kind/backend; a config that
/// does not deserialise gets this block's.
fn named(kind: &'static str, spec: &PluginSpec, e: PluginBuildError) -> PluginBuildError {
    if e.backend.is_empty() { PluginBuildError::new(kind, &spec.backend, e.source) } else { e }
}

/// Builds every plugin the config names (loads models, opens connections).
/// `firmware` is the box's updater, when it can update itself (Home Assistant's
/// firmware entity); `disk` the disk budget as retention leaves it (its sensor).
/// `controls`: the cameras' runtime switches (live detection reads them, Home
/// Assistant switches them).
pub async fn build(
    cfg: &Config,
    firmware: Option<UpdateLink>,
    disk: Option<tokio::sync::watch::Receiver<crate::retention::DiskStatus>>,
    controls: &Controls,
) -> Result<Plugins, PluginBuildError> {
    let ctx = context(cfg);
    let storage = build_storage(cfg)?;
    let filter = build_one(FILTERS, "filter", &cfg.filter, &ctx)?;
    let analyzer = match cfg.vlm_spec() {
        Some(spec) => Some(build_one(ANALYZERS, "vlm", &spec, &ctx)?),
        None => None,
    };
    let tracking = Tracking::new(cfg.cameras.iter().map(|c| (c.name.clone(), Zones::from_config(&c.zones))));
    // Live cameras detect while they record, keeping the VLM's frames.
    let live = filter.live().map(|l| {
        l.with_vlm_frames(analyzer.as_ref().map_or(0, |a| a.max_frames()))
            .with_controls(controls.clone())
            .with_tracking(tracking.clone())
    });
    let shared = SharedParts { live, ftp: build_ftp(cfg, &ctx)? };
    let mut sources = Vec::new();
    for cam in &cfg.cameras {
        let spec = &cam.source;
        let source = (row(SOURCES, "source", spec)?.build.build)(cam.name.clone(), &spec.config, &ctx, &shared)
            .map_err(|e| named("source", spec, e))?;
        sources.push(source);
    }
    let policy = build_one(POLICIES, "alert_policy", &cfg.alert_policy, &ctx)?;
    let cameras = sources
        .iter()
        .filter_map(|s| Some(CameraConnectivity { camera: s.camera().clone(), connected: s.connectivity()? }))
        .collect();
    let inference = filter.live().map(|l| l.inference());
    let feeds = DeviceFeeds { firmware, cameras, disk, controls: Some(controls.clone()), inference };
    let notifiers = build_notifiers(cfg, &ctx, feeds).await?;
    Ok(Plugins { sources, storage, filter, analyzer, policy, notifiers, tracking })
}

/// The box's FTP server, when a camera uploads by FTP.
fn build_ftp(cfg: &Config, ctx: &PluginContext) -> Result<Option<Arc<sources::ftp::FtpServer>>, PluginBuildError> {
    let fail = |e: Box<dyn std::error::Error + Send + Sync>| PluginBuildError::new("source", FTP, e);
    let subdirs: Vec<String> = cfg
        .cameras
        .iter()
        .filter(|c| c.source.backend == FTP)
        .filter_map(|c| config::<sources::ftp::FtpCameraConfig>(&c.source.config).ok())
        .map(|c| c.ftp_subdir)
        .collect();
    let (Some(block), false) = (&cfg.ftp, subdirs.is_empty()) else { return Ok(None) };
    let server_cfg: sources::ftp::FtpServerConfig = config(block).map_err(fail)?;
    let server =
        sources::ftp::FtpServer::new(server_cfg, &subdirs, &cfg.retention, ctx).map_err(|e| fail(Box::new(e)))?;
    Ok(Some(Arc::new(server)))
}

/// Builds the configured storage backend (also used alone by `homesec cleanup`).
pub fn build_storage(cfg: &Config) -> Result<Arc<dyn StorageBackend>, PluginBuildError> {
    build_one(STORAGES, "storage", &cfg.storage, &context(cfg))
}

/// Builds the configured notifiers (also used alone by `homesec notify-test`).
/// `feeds`: what the Home Assistant device shows as it changes.
pub async fn build_notifiers(
    cfg: &Config,
    ctx: &PluginContext,
    feeds: DeviceFeeds,
) -> Result<Vec<Arc<dyn Notifier>>, PluginBuildError> {
    let mut notifiers = Vec::new();
    for spec in &cfg.notifiers {
        let build = row(NOTIFIERS, "notifier", spec)?.build.build;
        notifiers.push(build(&spec.config, ctx, feeds.clone()).await.map_err(|e| named("notifier", spec, e))?);
    }
    Ok(notifiers)
}
