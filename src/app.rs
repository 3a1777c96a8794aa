//! The daemon: config → plugins → store → pipeline → sources → API, until a
//! signal asks it to stop.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::api::{self, AppState};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::controls::Controls;
use crate::health::{self, HealthStatus};
use crate::notify::Notifier;
use crate::pipeline::{Parts, Pipeline, VlmGate};
use crate::plugin::PluginBuildError;
use crate::plugins;
use crate::retention::Retention;
use crate::sources::ClipSource;
use crate::store::{Store, StoreError};
use crate::update::{BootCheck, Updater, rauc::Rauc};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot create {path}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Plugin(#[from] PluginBuildError),
    #[error(transparent)]
    Sync(#[from] crate::sync::SyncError),
    #[error("cannot listen on {addr} (server.host / server.port)")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// How long in-flight clips get to finish on shutdown before they are left to resume.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

pub async fn run(cfg: Config) -> Result<(), RunError> {
    // Listening for SIGTERM/SIGINT from the start: a stop that comes while the
    // daemon is still starting is a graceful stop too, not a kill.
    let stop = StopSignal::install();
    let layout = cfg.layout();
    layout
        .create_dirs()
        .map_err(|source| RunError::DataDir { path: layout.data_dir().display().to_string(), source })?;
    let clock = SystemClock::shared();
    let sync_settings = crate::sync::SyncSettings::of(&cfg)?;
    let mut store = Store::open_async(layout.store(), clock.clone()).await?;
    // Events are queued for Postgres only when something drains them.
    if sync_settings.is_some() {
        store = store.with_sync_outbox();
    }
    // Warnings and errors (`sync.config.log_level`) go to Postgres too: captured
    // from now on, moved to the store's log outbox every second and at the end.
    let logs_stop = CancellationToken::new();
    let log_level = sync_settings.as_ref().map_or(tracing::level_filters::LevelFilter::OFF, |s| s.log_level);
    let log_flusher = (log_level != tracing::level_filters::LevelFilter::OFF).then(|| {
        let capture = crate::telemetry::log_capture();
        capture.enable(log_level, clock.clone());
        let flusher = crate::sync::LogFlusher { capture: capture.clone(), store: store.clone() };
        tokio::spawn(flusher.run(logs_stop.clone()))
    });
    let rauc = Arc::new(Rauc::new(&cfg.update.rauc_command));
    let updater = Updater::new(cfg.update.clone(), layout.update(), Some(rauc), clock.clone()).await;
    // Home Assistant's firmware entity only where the box can update itself.
    let (disk_tx, disk_rx) = tokio::sync::watch::channel(crate::retention::DiskStatus::default());
    // The cameras' switches as Home Assistant last set them.
    let cameras: Vec<crate::domain::CameraName> = cfg.cameras.iter().map(|c| c.name.clone()).collect();
    let controls = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || Controls::load(&store, &cameras))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??
    };
    let firmware = updater.is_available().then(|| updater.link());
    let plugins = plugins::build(&cfg, firmware, Some(disk_rx), &controls).await?;
    let shutdown = CancellationToken::new();
    let detector = plugins.filter.live();
    let places = crate::retention::Places::new(&layout, plugins.storage.local_root());
    let pipeline = Pipeline::new(
        Parts {
            store,
            storage: plugins.storage,
            filter: plugins.filter,
            analyzer: plugins.analyzer,
            vlm_gate: VlmGate {
                run_mode: cfg.vlm.as_ref().map_or(crate::config::RunMode::Never, |v| v.run_mode),
                trigger_classes: cfg.vlm.as_ref().map(|v| v.trigger_classes.clone()).unwrap_or_default(),
            },
            policy: plugins.policy,
            notifiers: crate::notify::multiplex::Notifiers::new(plugins.notifiers.clone()),
            retry: cfg.retry.clone(),
            concurrency: cfg.concurrency.clone(),
            snapshots_dir: layout.snapshots(),
            fetched_dir: layout.fetched(),
            clock: clock.clone(),
            controls,
            tracking: plugins.tracking.clone(),
        },
        shutdown.clone(),
    );
    // `/metrics`: the registry, with the pipeline's counters and every
    // configured camera's series (at zero until its first frame).
    let metrics = crate::metrics::global();
    metrics.adopt_clip_counters(&pipeline.stats);
    for camera in &cfg.cameras {
        metrics.camera(camera.name.as_str());
    }
    pipeline.start(&layout.recordings()).await?;
    let retention = Retention::new(
        pipeline.store().clone(),
        places,
        cfg.retention.clone(),
        clock.clone(),
        pipeline.clip_landed(),
        disk_tx,
    );
    tokio::spawn(retention.clone().run(shutdown.clone()));
    let sync = sync_settings.map(|settings| {
        let handle = crate::sync::SyncHandle::new(pipeline.store().clone(), clock.clone());
        let drain = crate::sync::Drain {
            settings,
            store: pipeline.store().clone(),
            handle: handle.clone(),
            device: crate::sync::Device {
                device_id: cfg.device_id.clone(),
                name: crate::sync::host_name().unwrap_or_else(|| cfg.device_id.clone()),
                version: env!("CARGO_PKG_VERSION").into(),
                image_version: updater.status().image_version,
                cameras: cfg.cameras.iter().map(|c| c.name.0.clone()).collect(),
            },
        };
        tokio::spawn(drain.run(shutdown.clone()));
        handle
    });

    let sources_shutdown = shutdown.child_token();
    let mut source_tasks = Vec::new();
    for source in &plugins.sources {
        let (source, sink, token) = (source.clone(), pipeline.sink(), sources_shutdown.clone());
        source_tasks.push(tokio::spawn(async move {
            if let Err(e) = source.run(sink, token).await {
                error!(camera = %source.camera(), error = %crate::telemetry::chain(&e), "source stopped");
            }
        }));
    }

    let state = Arc::new(AppState {
        pipeline: pipeline.clone(),
        sources: plugins.sources.clone(),
        api_key: cfg.server.api_key_env.as_ref().and_then(|e| std::env::var(e).ok()),
        device_id: cfg.device_id.clone(),
        started: clock.monotonic(),
        updater: updater.clone(),
        detector,
        retention: retention.clone(),
        sync,
    });
    let (server, api_url) = if cfg.server.enabled {
        let addr = format!("{}:{}", cfg.server.host, cfg.server.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| RunError::Bind { addr: addr.clone(), source })?;
        info!(url = %format!("http://{addr}/health"), "HTTP API listening");
        let api_url = listener.local_addr().ok().map(|mut a| {
            if a.ip().is_unspecified() {
                a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{a}/health")
        });
        let token = shutdown.clone();
        let mut router = api::router(state.clone());
        // The status page shows the config file as read, secrets hidden.
        let config_text = std::fs::read_to_string(&cfg.file).unwrap_or_default();
        match crate::web::router(state.clone(), &config_text) {
            Ok(web) => router = router.merge(web),
            Err(e) => error!(error = %crate::telemetry::chain(&e), "the status page is off"),
        }
        // The peer's address: the status page opens to the box itself only when no API key is set.
        let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let task = tokio::spawn(async move {
            let res =
                axum::serve(listener, service).with_graceful_shutdown(async move { token.cancelled().await }).await;
            if let Err(e) = res {
                error!(error = %e, "HTTP API stopped");
            }
        });
        (Some(task), api_url)
    } else {
        (None, None)
    };

    tokio::spawn(updater.clone().run(shutdown.clone()));
    {
        let (updater, state, token) = (updater.clone(), state.clone(), shutdown.clone());
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        tokio::spawn(async move {
            let check = || boot_check(&state, api_url.as_deref(), &http);
            updater.confirm_boot(check, token).await;
        });
    }

    // systemd (Type=notify): READY=1 now, WATCHDOG=1 while the pipeline is alive, STOPPING=1 below.
    let watchdog_stop = CancellationToken::new();
    let alive = {
        let pipeline = pipeline.clone();
        move || {
            let pipeline = pipeline.clone();
            async move { health::liveness(&pipeline).await.verdict() }
        }
    };
    let systemd = crate::sdnotify::ready(plugins.sources.len(), alive, watchdog_stop.clone());
    print_banner(&cfg, &plugins.sources, &plugins.notifiers);
    stop.wait().await;
    watchdog_stop.cancel();
    systemd.stopping();
    info!("stopping: sources first, then in-flight clips (up to {} s)", SHUTDOWN_GRACE.as_secs());
    sources_shutdown.cancel();
    for t in source_tasks {
        let _ = t.await;
    }
    pipeline.shutdown(SHUTDOWN_GRACE).await;
    if let Some(s) = server {
        let _ = s.await;
    }
    // The last captured records go to the store (the drain sends them next time).
    logs_stop.cancel();
    if let Some(flusher) = log_flusher {
        let _ = flusher.await;
    }
    info!("stopped");
    Ok(())
}

/// The daemon's own health as the boot confirmation judges it: the API must
/// answer over HTTP (when enabled), the store and the pipeline must work
/// ([`BootCheck::Up`]), and for [`BootCheck::Healthy`] everything critical
/// (sources, storage) too.
async fn boot_check(state: &AppState, api_url: Option<&str>, http: &reqwest::Client) -> BootCheck {
    if let Some(url) = api_url
        && let Err(e) = http.get(url).send().await
    {
        return BootCheck::Down(format!("the HTTP API does not answer: {}", crate::telemetry::chain(&e)));
    }
    let h = state.health().await;
    let reason = || {
        if h.warnings.is_empty() {
            format!("failing checks: {}", h.checks.failing().join(", "))
        } else {
            h.warnings.join("; ")
        }
    };
    if !h.checks.daemon_up() {
        BootCheck::Down(reason())
    } else if h.status == HealthStatus::Unhealthy {
        BootCheck::Up(reason())
    } else {
        BootCheck::Healthy
    }
}

fn print_banner(cfg: &Config, sources: &[Arc<dyn ClipSource>], notifiers: &[Arc<dyn Notifier>]) {
    for source in sources {
        info!(camera = %source.camera(), source = %source.describe(), "camera configured");
    }
    for n in notifiers {
        info!(notifier = n.name(), target = %n.describe(), "alerts go to notifier");
    }
    if notifiers.is_empty() {
        warn!("no notifiers configured: alert decisions are only logged and stored");
    }
    info!(data_dir = %cfg.data_dir.display(), "HomeSec {} running; Ctrl-C to stop", env!("CARGO_PKG_VERSION"));
}

/// SIGTERM (systemd's stop) or SIGINT (Ctrl-C), registered when installed so
/// that a signal before [`StopSignal::wait`] is not lost.
struct StopSignal {
    #[cfg(unix)]
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl StopSignal {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signals = signal(SignalKind::terminate()).and_then(|t| Ok((t, signal(SignalKind::interrupt())?)));
            if let Err(e) = &signals {
                warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
            }
            Self { signals: signals.ok() }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn wait(self) {
        #[cfg(unix)]
        if let Some((mut term, mut int)) = self.signals {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
