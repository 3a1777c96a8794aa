//! The `homesec` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use homesec::config::{Config, ServerConfig};
use homesec::domain::{Alert, ClipSummary, now_ms, rfc3339};
use homesec::plugins;
use homesec::store::{Store, StoreError};

#[derive(Parser)]
#[command(name = "homesec", version, about = "Home-security camera daemon: clips → object filter → VLM → alerts")]
struct Cli {
    /// Config file.
    #[arg(long, short, global = true, env = "HOMESEC_CONFIG", default_value = "/etc/homesec/config.yaml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run,
    /// Check the config and list every problem, with its YAML path and line.
    Validate,
    /// Show recorded clips.
    Clips {
        #[command(subcommand)]
        command: ClipsCommand,
    },
    /// Send a test alert through every configured notifier.
    NotifyTest {
        /// Camera name to put in the test alert (default: the first camera).
        #[arg(long)]
        camera: Option<String>,
    },
    /// Print the motion score over time for a clip, to tune a camera's `motion:` settings.
    Motion {
        /// The clip to analyse (default with --camera: that camera's newest recording).
        file: Option<PathBuf>,
        /// Use this camera's `motion:` settings from the config.
        #[arg(long)]
        camera: Option<String>,
        /// Frames per second to analyse (default: the camera's detect_fps, else every frame).
        #[arg(long)]
        detect_fps: Option<f64>,
        /// Write a JPEG of the changed pixels at the highest score here.
        #[arg(long)]
        mask_jpeg: Option<PathBuf>,
    },
    /// Draw a camera's zones and motion masks on its latest picture, as a JPEG.
    ///
    /// The picture comes from the running daemon (live cameras), else from the
    /// camera's newest recording; --from names a JPEG or a clip instead.
    Zones {
        #[arg(long)]
        camera: String,
        /// Draw on this JPEG or MP4 clip instead.
        #[arg(long)]
        from: Option<PathBuf>,
        /// Where to write the JPEG (default: zones-<camera>.jpg).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show what retention would delete and why; with --yes, delete it now.
    Cleanup {
        /// Delete (without it, a dry run that only shows).
        #[arg(long)]
        yes: bool,
        /// Re-check quarantined files first; with --yes, the ones that read now
        /// go back into the recordings and through the pipeline.
        #[arg(long)]
        recheck_quarantine: bool,
    },
    /// Postgres sync: its status, or apply its schema.
    Sync {
        #[command(subcommand)]
        command: SyncCommand,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum SyncCommand {
    /// Outbox depth, lag, last success and last error.
    Status,
    /// Apply the schema to the configured database (the daemon does it too).
    Migrate,
}

#[derive(Subcommand)]
enum ClipsCommand {
    /// Recent clips, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One clip with its stage journal and events.
    Show { clip_id: String },
}

/// glibc's allocator, set for a daemon with two threads per camera (measured
/// with the capacity benchmark, docs/design.md): at most two arenas instead of
/// eight per core, each keeping its own high-water mark of freed memory, and a
/// fixed 128 KiB mmap threshold, so large short-lived buffers (keyframes,
/// decoder buffers) go back to the system when freed instead of fragmenting
/// the arenas. Together about 0.4 MB less per camera. `MALLOC_ARENA_MAX` and
/// `MALLOC_MMAP_THRESHOLD_` in the environment still win.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (var, param, value) in
        [("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, 2), ("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, 128 * 1024)]
    {
        if std::env::var_os(var).is_none() {
            // SAFETY: mallopt only sets allocator parameters; called before any
            // other thread exists.
            unsafe { libc::mallopt(param, value) };
        }
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    homesec::telemetry::init();
    if let Command::Version = cli.command {
        println!("homesec {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Motion { file, camera, detect_fps, mask_jpeg } = &cli.command {
        return finish(motion(&cli.config, file.as_deref(), camera.as_deref(), *detect_fps, mask_jpeg.as_deref()));
    }
    if let Command::Zones { camera, from, out } = &cli.command {
        // Without the plugin checks: drawing zones needs no camera secrets.
        return match Config::read(&cli.config) {
            Ok((cfg, issues)) if issues.is_empty() => {
                finish(runtime.block_on(zones(&cfg, camera, from.as_deref(), out.clone())))
            }
            Ok((_, issues)) => {
                eprintln!("{}", homesec::config::ConfigError { file: cli.config.clone(), issues });
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::Sync { command: SyncCommand::Status } = cli.command {
        let (data_dir, server) = match Config::load_location(&cli.config) {
            Ok(loc) => loc,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
        return finish(runtime.block_on(sync_status(&data_dir, &server)));
    }
    if let Command::Clips { command } = cli.command {
        let (data_dir, server) = match Config::load_location(&cli.config) {
            Ok(loc) => loc,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
        return finish(runtime.block_on(clips(&data_dir, &server, command)));
    }
    let cfg = match plugins::load(&cli.config) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    finish(runtime.block_on(async move {
        match cli.command {
            Command::Run => homesec::app::run(cfg).await.map_err(|e| homesec::telemetry::chain(&e)),
            Command::Validate => {
                println!(
                    "{}: OK ({} camera(s), filter {}, {} notifier(s))",
                    cli.config.display(),
                    cfg.cameras.len(),
                    cfg.filter.backend,
                    cfg.notifiers.len()
                );
                Ok(())
            }
            Command::NotifyTest { camera } => notify_test(&cfg, camera).await,
            Command::Cleanup { yes, recheck_quarantine } => cleanup(&cfg, yes, recheck_quarantine).await,
            Command::Sync { command: SyncCommand::Migrate } => {
                let done = homesec::cli::sync::migrate(&cfg).await.map_err(|e| homesec::telemetry::chain(&e))?;
                println!("{done}");
                Ok(())
            }
            Command::Clips { .. }
            | Command::Motion { .. }
            | Command::Zones { .. }
            | Command::Sync { .. }
            | Command::Version => Ok(()),
        }
    }))
}

fn finish(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads clips from the store, or from the running daemon's API when the
/// daemon holds the store open.
async fn clips(data_dir: &Path, server: &ServerConfig, command: ClipsCommand) -> Result<(), String> {
    let path = homesec::fsutil::DataLayout::new(data_dir).store();
    if !path.exists() {
        return Err(format!("no store at {} yet: has the daemon run?", path.display()));
    }
    let chain = |e: StoreError| homesec::telemetry::chain(&e);
    match Store::open_async(path, homesec::clock::SystemClock::shared()).await {
        Ok(store) => match command {
            ClipsCommand::List { limit } => {
                let records = store.run(move |s| s.recent_clips(limit)).await.map_err(chain)?;
                print_table(&records.iter().map(ClipSummary::of).collect::<Vec<_>>());
                Ok(())
            }
            ClipsCommand::Show { clip_id } => {
                let id = clip_id.clone();
                let (record, events) =
                    store.run(move |s| Ok((s.get_clip(&id)?, s.events_for(&id)?))).await.map_err(chain)?;
                let record = record.ok_or_else(|| format!("no clip {clip_id}"))?;
                let out = serde_json::json!({ "clip": homesec::api::summary(&record), "events": events });
                println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
                Ok(())
            }
        },
        Err(StoreError::Open { source: redb::DatabaseError::DatabaseAlreadyOpen, .. }) => {
            from_api(server, command).await
        }
        Err(e) => Err(homesec::telemetry::chain(&e)),
    }
}

/// Asks the running daemon's API (it holds the store): `path_and_query` on its
/// address, with the API key when one is configured. Returns the body.
async fn api_call(server: &ServerConfig, method: reqwest::Method, path_and_query: &str) -> Result<String, String> {
    let (url, req) = api_request(server, method, path_and_query);
    let resp =
        req.send().await.map_err(|e| format!("the daemon holds the store and its API at {url} did not answer: {e}"))?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{url}: HTTP {status}: {body}"));
    }
    Ok(body)
}

/// A request to the running daemon's API, with its key when one is configured.
fn api_request(
    server: &ServerConfig,
    method: reqwest::Method,
    path_and_query: &str,
) -> (String, reqwest::RequestBuilder) {
    let host = if server.host == "0.0.0.0" { "127.0.0.1" } else { server.host.as_str() };
    let url = format!("http://{host}:{}{path_and_query}", server.port);
    let mut req = reqwest::Client::new().request(method, &url);
    if let Some(key) = server.api_key_env.as_ref().and_then(|e| std::env::var(e).ok()) {
        req = req.header("x-api-key", key);
    }
    (url, req)
}

async fn from_api(server: &ServerConfig, command: ClipsCommand) -> Result<(), String> {
    let url = match &command {
        ClipsCommand::List { limit } => format!("/api/v1/clips?limit={limit}"),
        ClipsCommand::Show { clip_id } => format!("/api/v1/clips/{clip_id}"),
    };
    let body = api_call(server, reqwest::Method::GET, &url).await?;
    match command {
        ClipsCommand::List { .. } => {
            #[derive(serde::Deserialize)]
            struct Clips {
                clips: Vec<ClipSummary>,
            }
            let list: Clips = serde_json::from_str(&body).map_err(|e| format!("{url}: unexpected answer: {e}"))?;
            print_table(&list.clips);
        }
        ClipsCommand::Show { .. } => {
            let value: serde_json::Value =
                serde_json::from_str(&body).map_err(|e| format!("{url}: unexpected answer: {e}"))?;
            println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        }
    }
    Ok(())
}

fn print_table(clips: &[ClipSummary]) {
    if clips.is_empty() {
        println!("no clips yet");
        return;
    }
    println!("{:<32} {:<14} {:<12} {:<16} RESULT", "CLIP", "CAMERA", "STATUS", "DETECTED");
    for c in clips {
        let r = &c.record;
        let classes = r.filter_result.as_ref().map(|f| f.detected_classes.join(",")).unwrap_or_default();
        println!(
            "{:<32} {:<14} {:<12} {:<16} {}",
            r.clip.clip_id.as_str(),
            r.clip.camera.as_str(),
            c.status.as_str(),
            classes,
            if r.pruned.is_some() { format!("[files deleted] {}", c.outcome()) } else { c.outcome() }
        );
    }
}

/// `homesec motion`: the score timeline and motion intervals of one clip.
fn motion(
    config: &Path,
    file: Option<&Path>,
    camera: Option<&str>,
    detect_fps: Option<f64>,
    mask_jpeg: Option<&Path>,
) -> Result<(), String> {
    use homesec::cli::motion::analyze_file;
    use homesec::media::motion::MotionConfig;
    let mut settings = MotionConfig::default();
    let mut fps = detect_fps.unwrap_or(0.0);
    let mut newest = None;
    if let Some(name) = camera {
        let cfg = plugins::load(config).map_err(|e| e.to_string())?;
        let cam = cfg.cameras.iter().find(|c| c.name.as_str() == name).ok_or_else(|| {
            let known: Vec<_> = cfg.cameras.iter().map(|c| c.name.to_string()).collect();
            format!("no camera `{name}` in {} (cameras: {})", config.display(), known.join(", "))
        })?;
        if let Some(s) = plugins::motion_settings(&cfg, &cam.name) {
            settings = s.motion;
            fps = detect_fps.unwrap_or(s.detect_fps);
        }
        newest = newest_recording(&cfg.layout().camera_recordings(name));
    }
    let path = file.map(Path::to_path_buf).or(newest).ok_or("name a clip file, or a camera that has recordings")?;
    let report = analyze_file(&path, &settings, fps, mask_jpeg).map_err(|e| homesec::telemetry::chain(&e))?;
    println!("{report}");
    Ok(())
}

/// The newest `.mp4` in `dir`, if any.
fn newest_recording(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "mp4"))
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

/// `homesec zones`: the camera's zones and motion masks drawn on its latest
/// picture (see the command's help for where the picture comes from).
async fn zones(cfg: &Config, name: &str, from: Option<&Path>, out: Option<PathBuf>) -> Result<(), String> {
    use homesec::cli::zones::{Outline, decode_jpeg, render};
    let cam = cfg.cameras.iter().find(|c| c.name.as_str() == name).ok_or_else(|| {
        let known: Vec<_> = cfg.cameras.iter().map(|c| c.name.to_string()).collect();
        format!("no camera `{name}` in the config (cameras: {})", known.join(", "))
    })?;
    let chain = |e: homesec::media::MediaError| homesec::telemetry::chain(&e);
    let clip_frame = |path: &Path| -> Result<homesec::media::RgbFrame, String> {
        // The picture a second in: the very first frames can be dark or grey.
        let mut frame = None;
        homesec::media::sample_frames(path, 1.0, 2, &mut |f| {
            frame = Some(f);
            true
        })
        .map_err(chain)?;
        frame.ok_or_else(|| format!("{} has no picture", path.display()))
    };
    let (mut frame, origin) = match from {
        Some(p) if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("jpg") || x.eq_ignore_ascii_case("jpeg")) => {
            let bytes = std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            (decode_jpeg(&bytes).map_err(chain)?, p.display().to_string())
        }
        Some(p) => (clip_frame(p)?, p.display().to_string()),
        None => match api_bytes(&cfg.server, &format!("/api/v1/cameras/{name}/frame.jpg")).await {
            Ok(bytes) => (decode_jpeg(&bytes).map_err(chain)?, "the running daemon (live picture)".to_owned()),
            Err(why) => {
                let newest = newest_recording(&cfg.layout().camera_recordings(name)).ok_or_else(|| {
                    format!("no picture of `{name}`: {why}; and it has no recording yet (use --from FILE)")
                })?;
                (clip_frame(&newest)?, newest.display().to_string())
            }
        },
    };
    let mut outlines: Vec<Outline> = cam
        .zones
        .iter()
        .map(|z| {
            let mut label = z.name.clone();
            if !z.classes.is_empty() {
                label.push_str(&format!(" ({})", z.classes.join(", ")));
            }
            if !z.required {
                label.push_str(" [label only]");
            }
            Outline { label, points: z.points.clone(), mask: false }
        })
        .collect();
    if let Some(settings) = plugins::motion_settings(cfg, &cam.name) {
        for (i, points) in settings.motion.masks.iter().enumerate() {
            outlines.push(Outline { label: format!("mask {}", i + 1), points: points.clone(), mask: true });
        }
    }
    let legend = render(&mut frame, &outlines);
    let jpeg = homesec::media::encode_jpeg(&frame, 0, 90).map_err(chain)?;
    let out = out.unwrap_or_else(|| PathBuf::from(format!("zones-{name}.jpg")));
    std::fs::write(&out, &jpeg.bytes).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    println!("picture from {origin}\n{legend}wrote {}", out.display());
    Ok(())
}

/// GETs a binary answer from the running daemon's API.
async fn api_bytes(server: &ServerConfig, path: &str) -> Result<Vec<u8>, String> {
    let (url, req) = api_request(server, reqwest::Method::GET, path);
    let resp = req
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("the daemon's API at {url} did not answer ({e})"))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        let why: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        return Err(format!("the daemon said {status}: {}", why["error"].as_str().unwrap_or("")));
    }
    Ok(body.to_vec())
}

/// `homesec cleanup`: on the store directly, or through the running daemon's
/// API when the daemon holds the store.
async fn cleanup(cfg: &Config, apply: bool, recheck: bool) -> Result<(), String> {
    let layout = cfg.layout();
    let path = layout.store();
    if !path.exists() {
        return Err(format!("no store at {} yet: has the daemon run?", path.display()));
    }
    let report = match Store::open_async(path, homesec::clock::SystemClock::shared()).await {
        Ok(store) => {
            let storage = plugins::build_storage(cfg).map_err(|e| homesec::telemetry::chain(&e))?;
            let places = homesec::retention::Places::new(&layout, storage.local_root());
            let retention = cfg.retention.clone();
            let run = move || homesec::retention::cleanup(&store, &places, &retention, now_ms(), apply, recheck);
            tokio::task::spawn_blocking(run)
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| homesec::telemetry::chain(&e))?
        }
        Err(StoreError::Open { source: redb::DatabaseError::DatabaseAlreadyOpen, .. }) => {
            let query = format!("/api/v1/cleanup?recheck_quarantine={recheck}");
            let body =
                api_call(&cfg.server, if apply { reqwest::Method::POST } else { reqwest::Method::GET }, &query).await?;
            serde_json::from_str(&body).map_err(|e| format!("{query}: unexpected answer: {e}"))?
        }
        Err(e) => return Err(homesec::telemetry::chain(&e)),
    };
    print!("{}", homesec::cli::cleanup::render(&report));
    Ok(())
}

/// `homesec sync status`: from the running daemon's diagnostics, else from the store.
async fn sync_status(data_dir: &Path, server: &ServerConfig) -> Result<(), String> {
    let path = homesec::fsutil::DataLayout::new(data_dir).store();
    if !path.exists() {
        return Err(format!("no store at {} yet: has the daemon run?", path.display()));
    }
    let status = match Store::open_async(path, homesec::clock::SystemClock::shared()).await {
        Ok(store) => store.run(homesec::cli::sync::offline_status).await.map_err(|e| homesec::telemetry::chain(&e))?,
        Err(StoreError::Open { source: redb::DatabaseError::DatabaseAlreadyOpen, .. }) => {
            let body = api_call(server, reqwest::Method::GET, "/api/v1/diagnostics").await?;
            let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("diagnostics: {e}"))?;
            if v["sync"].is_null() {
                return Err("the running daemon has no `sync` section configured".into());
            }
            v["sync"].clone()
        }
        Err(e) => return Err(homesec::telemetry::chain(&e)),
    };
    print!("{}", homesec::cli::sync::render(&status));
    Ok(())
}

async fn notify_test(cfg: &Config, camera: Option<String>) -> Result<(), String> {
    if cfg.notifiers.is_empty() {
        return Err("no notifiers configured".into());
    }
    let camera = camera.or_else(|| cfg.cameras.first().map(|c| c.name.to_string())).unwrap_or_else(|| "test".into());
    let clip_id = format!("{camera}_test_{}", now_ms() / 1000);
    let alert = Alert {
        clip_id: clip_id.as_str().into(),
        camera_name: camera.as_str().into(),
        storage_uri: None,
        view_url: None,
        risk_level: Some(homesec::domain::RiskLevel::Low),
        activity_type: Some("test".into()),
        notify_reason: "test alert from `homesec notify-test`".into(),
        summary: Some("HomeSec test alert: if you see this, notifications work.".into()),
        ts: rfc3339(now_ms()),
        dedupe_key: clip_id.clone(),
        upload_failed: false,
        detected_classes: vec![],
        stage: homesec::domain::AlertStage::Final,
        occurrences: 1,
        occurrences_text: None,
        snapshot_path: None,
    };
    // A client id of its own, so the test does not push a running daemon off the broker.
    let mut ctx = plugins::context(cfg);
    ctx.client_tag = Some("notify-test".into());
    let notifiers =
        plugins::build_notifiers(cfg, &ctx, Default::default()).await.map_err(|e| homesec::telemetry::chain(&e))?;
    let mut failed = 0;
    for n in &notifiers {
        match n.send(&alert, None).await {
            Ok(()) => println!("{}: delivered ({clip_id})", n.name()),
            Err(e) => {
                failed += 1;
                println!("{}: FAILED: {}", n.name(), homesec::telemetry::chain(&e));
            }
        }
        n.shutdown().await;
    }
    if failed > 0 { Err(format!("{failed} notifier(s) failed")) } else { Ok(()) }
}
