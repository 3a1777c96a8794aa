//! Live cameras end to end: a real RTSP server (GStreamer's, from Debian
//! packages, `tests/rtsp_server.py`) streams real footage in real time without
//! re-encoding; the daemon records it by passthrough, detects motion, and runs
//! the clips through the real YOLOX filter and a real Mosquitto broker.
//!
//! The footage plays in real time (~30 s), so each test drives several cameras
//! at once in one daemon.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::config::ConfigBuilder;
use common::peers::{Broker, Daemon, Subscriber, wait_for};
use common::rtsp::{RtspServer, plain_log, source_health};
use serde_json::Value;

/// One camera of the daemon's config: its name and `source` block. `extra` holds
/// more keys of the source's config, one per line.
fn camera(name: &str, url_env: &str, extra: &str, recording: &str) -> (String, String) {
    let source = format!(
        "backend: rtsp\nconfig:\n  rtsp_url_env: {url_env}\n  frame_timeout_s: 2\n  first_frame_timeout_s: 8\n  \
         reconnect_initial_s: 0.5\n  reconnect_max_s: 2\n  recording: {recording}\n{}",
        extra.lines().map(|l| format!("  {l}\n")).collect::<String>()
    );
    (name.to_owned(), source)
}

fn config(dir: &Path, broker: u16, cameras: &[(String, String)]) -> String {
    let cfg = ConfigBuilder::new("rtsp-e2e", dir);
    let cfg = cameras.iter().fold(cfg, |cfg, (name, source)| cfg.camera(name, source));
    cfg.filter(&["classes: [person]", "sample_fps: 1"]).policy("backend: default").mqtt(broker).build()
}

fn clips_of(daemon: &Daemon, camera: &str) -> Vec<Value> {
    daemon.clips().into_iter().filter(|c| c["clip"]["camera"] == camera).collect()
}

/// Checks a recorded clip with ffprobe: valid H.264 in MP4 whose duration
/// matches the record, at the footage's `fps`. Returns (start, end) in seconds after `since`.
fn check_clip(clip: &Value, since: SystemTime, fps: f64) -> (f64, f64) {
    check_clip_of(clip, since, fps, "h264")
}

/// [`check_clip`] for a clip in `codec` (ffprobe's name: `h264`, `hevc`).
fn check_clip_of(clip: &Value, since: SystemTime, fps: f64, codec: &str) -> (f64, f64) {
    let path = PathBuf::from(clip["clip"]["local_path"].as_str().unwrap());
    assert!(path.is_file(), "{clip}");
    let (start_ms, end_ms) = (clip["clip"]["start_ms"].as_i64().unwrap(), clip["clip"]["end_ms"].as_i64().unwrap());
    let p = common::ffprobe(&path);
    let (duration, frames) = (p.duration_s, p.frames as f64);
    assert!((duration - (end_ms - start_ms) as f64 / 1000.0).abs() < 0.1, "ffprobe says {duration} s: {clip}");
    assert_eq!(p.codec, codec);
    // (A clip cut short by a lost stream may end before its B-frames.)
    assert!(
        frames >= 1.0 && (duration < 3.0 || (frames / duration - fps).abs() < 0.5),
        "{frames} frames in {duration} s"
    );
    let since_ms = since.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as i64;
    ((start_ms - since_ms) as f64 / 1000.0, (end_ms - since_ms) as f64 / 1000.0)
}

#[test]
fn live_footage_over_tcp_and_udp_gives_an_early_then_a_final_person_alert_and_one_clip_but_trees_do_not() {
    let scene = common::footage("scene_empty_people_empty.mp4");
    let porch = RtspServer::start(&scene, &["--exit-on-eos"]);
    let yard = RtspServer::start(&scene, &["--exit-on-eos"]);
    // The yard camera's motion comes from a second stream of the same scene, as
    // from a camera's low-resolution sub-stream, decoded at its keyframes only
    // while nothing moves.
    let yard_sub = RtspServer::start(&scene, &["--exit-on-eos"]);
    let garden = RtspServer::start(&common::footage("tree_motion_no_person.mp4"), &["--exit-on-eos"]);
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, &["homecam/alerts/#"]);
    let tmp = tempfile::tempdir().unwrap();
    let rec = "{pre_roll_s: 5, post_roll_s: 3, max_clip_s: 120, min_clip_s: 2}";
    let cfg = config(
        tmp.path(),
        broker.port,
        &[
            camera("porch", "PORCH_URL", "", rec),
            camera("yard", "YARD_URL", "transport: udp\ndetect_url_env: YARD_SUB\nkeyframes_when_idle: true", rec),
            camera("garden", "GARDEN_URL", "", rec),
        ],
    );
    let daemon = Daemon::start(
        tmp.path(),
        &cfg,
        &[
            ("PORCH_URL", &porch.url()),
            ("YARD_URL", &yard.url()),
            ("YARD_SUB", &yard_sub.url()),
            ("GARDEN_URL", &garden.url()),
        ],
    );

    // All three are streaming.
    wait_for("frames from every camera", Duration::from_secs(20), || {
        let (_, h) = daemon.get("/health")?;
        let sources = h["sources"].as_array()?;
        (sources.len() == 3 && sources.iter().all(|s| s["healthy"] == true && s["fps"].as_f64() > Some(0.0)))
            .then_some(())
    });

    // Each scene camera: people walk in at about 8 s and leave at about 27 s.
    // The early alert comes while they are in view (the clip is still being
    // recorded), the final one after the clip, for the same dedupe_key; one
    // clip covers the motion (~7-28 s) plus pre- and post-roll.
    for cam in ["porch", "yard"] {
        let topic = format!("homecam/alerts/{cam}");
        let early = wait_for(&format!("the early alert for {cam}"), Duration::from_secs(60), || {
            sub.json_on(&topic).into_iter().next()
        });
        let since = if cam == "porch" { &porch } else { &yard }.playing_since().unwrap();
        let sent = chrono::DateTime::parse_from_rfc3339(early["ts"].as_str().unwrap()).unwrap();
        let early_at = (SystemTime::from(sent)).duration_since(since).unwrap().as_secs_f64();
        assert_eq!(early["stage"], "detected", "{early}");
        assert!(early["detected_classes"].as_array().unwrap().iter().any(|c| c == "person"), "{early}");
        assert!(early_at < 27.0, "{cam}: the early alert came {early_at:.1} s into the stream, after the people left");
        let final_alert = wait_for(&format!("the final alert for {cam}"), Duration::from_secs(90), || {
            sub.json_on(&topic).into_iter().nth(1)
        });
        assert_eq!(final_alert["stage"], "final", "{final_alert}");
        assert_eq!(final_alert["dedupe_key"], early["dedupe_key"], "the final alert updates the early one");
        assert_eq!(final_alert["clip_id"], early["clip_id"]);
        let clips = clips_of(&daemon, cam);
        assert_eq!(clips.len(), 1, "{cam}: {clips:?}");
        let clip = &clips[0];
        assert_eq!(final_alert["clip_id"], clip["clip"]["clip_id"]);
        assert_eq!(clip["clip"]["source_backend"], "rtsp");
        let model = clip["filter_result"]["model"].as_str().unwrap_or_default();
        assert!(model.ends_with("(live)"), "{cam}: filtered live, not from the file: {clip}");
        // At the default min_confidence the post beside the walkway scores "person" too; the
        // people walking are the reason to alert.
        let reasons = clip["filter_result"]["alert_classes"].as_array().unwrap();
        assert!(reasons.iter().any(|c| c == "person"), "{cam}: {clip}");
        let (start, end) = check_clip(clip, since, 10.0);
        // Clips start at keyframes (every 2 s); the yard notices motion up to a
        // keyframe interval later.
        let latest_start = if cam == "yard" { 6.5 } else { 4.5 };
        assert!((0.0..=latest_start).contains(&start), "{cam}: clip {start:.1}-{end:.1} s");
        assert!((28.0..=34.6).contains(&end), "{cam}: clip {start:.1}-{end:.1} s");
    }

    // The tree: recorded, filtered, nothing found, no alert.
    let garden_clip = wait_for("the garden clip done", Duration::from_secs(90), || {
        let c = clips_of(&daemon, "garden");
        (!c.is_empty() && c.iter().all(|c| c["status"] == "done")).then_some(c)
    });
    for c in &garden_clip {
        check_clip(c, garden.playing_since().unwrap(), 15.0);
        let classes = c["filter_result"]["detected_classes"].as_array().unwrap();
        assert!(!classes.iter().any(|x| x == "person"), "{c}");
        assert_eq!(c["decision"]["notify"], false, "{c}");
    }

    // The scene servers are gone now: still exactly one clip each, and no alert for the garden.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(clips_of(&daemon, "porch").len(), 1);
    assert_eq!(clips_of(&daemon, "yard").len(), 1);
    assert!(sub.json_on("homecam/alerts/garden").is_empty());

    // `/metrics`: each camera's frames were received and decoded, its motion
    // counted, and the scene cameras fed the shared detector.
    let (_, m) = daemon.metrics();
    for cam in ["porch", "yard", "garden"] {
        let camera = [("camera", cam)];
        let received = m.get("homesec_camera_frames_received_total", &camera);
        let decoded = m.get("homesec_camera_frames_decoded_total", &camera);
        assert!(received > 200.0, "{cam}: {received} frames received (30 s at 10-15 fps)");
        assert!(decoded > 60.0, "{cam}: {decoded} frames decoded");
        assert!(m.get("homesec_camera_motion_events_total", &camera) >= 1.0, "{cam}: motion counted");
        let dropped = m.get("homesec_detector_frames_dropped_total", &camera);
        assert!(dropped <= m.get("homesec_detector_frames_submitted_total", &camera), "{cam}");
    }
    // The yard's idle stretches were decoded at its keyframes only.
    let decoded = |cam| m.get("homesec_camera_frames_decoded_total", &[("camera", cam)]);
    assert!(
        decoded("yard") < decoded("porch") * 0.8,
        "yard {} and porch {} pictures decoded",
        decoded("yard"),
        decoded("porch")
    );
    for cam in ["porch", "yard"] {
        let submitted = m.get("homesec_detector_frames_submitted_total", &[("camera", cam)]);
        assert!(submitted > 0.0, "{cam}: live frames went to the detector");
    }
    let log = plain_log(&daemon);
    assert!(log.contains("timestamps from the camera's RTCP sender reports"), "wall clock from RTCP");
    assert!(
        log.lines().any(|l| l.contains("connecting") && l.contains("camera=yard") && l.contains("transport=Udp")),
        "the yard camera streams over UDP"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("receiving video") && l.contains("camera=yard") && l.contains("stream=\"detect\"")),
        "the yard camera's motion comes from its sub-stream"
    );
}

/// The scene footage shrunk to 320x240 (a camera's sub-stream) with ffmpeg.
fn small_scene(dir: &Path) -> PathBuf {
    let out = dir.join("scene_320x240.mp4");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(common::footage("scene_empty_people_empty.mp4"))
        .args(["-vf", "scale=320:240", "-c:v", "libx264", "-g", "20", "-bf", "0", "-pix_fmt", "yuv420p"])
        .arg(&out)
        .status()
        .expect("ffmpeg (Debian package ffmpeg; .ci/run installs it)");
    assert!(status.success(), "ffmpeg failed");
    out
}

#[test]
fn eight_cameras_with_events_at_once_share_a_saturated_detector_and_none_starves() {
    let tmp = tempfile::tempdir().unwrap();
    let scene = small_scene(tmp.path());
    let servers: Vec<RtspServer> = (0..8).map(|_| RtspServer::start(&scene, &["--exit-on-eos"])).collect();
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, &["homecam/alerts/#"]);
    let rec = "{pre_roll_s: 2, post_roll_s: 3, max_clip_s: 120, min_clip_s: 2}";
    let names: Vec<String> = (0..8).map(|i| format!("cam{i}")).collect();
    let cameras: Vec<(String, String)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| camera(n, &format!("CAM{i}_URL"), "detect_fps: 5\nobject_fps: 5", rec))
        .collect();
    // The bigger model on one worker: 8 cameras x 5 frames a second need more
    // than the detector can do.
    let cfg = cameras
        .iter()
        .fold(ConfigBuilder::new("rtsp-8", tmp.path()), |cfg, (name, source)| cfg.camera(name, source))
        .model("yolox_nano_640.onnx")
        .filter(&["classes: [person]", "min_confidence: 0.6", "workers: 1"])
        .policy("backend: default")
        .mqtt(broker.port)
        .server("api_key_env: RTSP8_API_KEY")
        .build();
    let mut urls: Vec<(String, String)> =
        servers.iter().enumerate().map(|(i, s)| (format!("CAM{i}_URL"), s.url())).collect();
    urls.push(("RTSP8_API_KEY".into(), "k3y-for-diagnostics".into()));
    let env: Vec<(&str, &str)> = urls.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let daemon = Daemon::start(tmp.path(), &cfg, &env);

    // Every camera gets its early alert while the people are in view.
    for (name, server) in names.iter().zip(&servers) {
        let early = wait_for(&format!("the early alert for {name}"), Duration::from_secs(60), || {
            sub.json_on(&format!("homecam/alerts/{name}")).into_iter().next()
        });
        assert_eq!(early["stage"], "detected", "{early}");
        let sent = chrono::DateTime::parse_from_rfc3339(early["ts"].as_str().unwrap()).unwrap();
        let at = SystemTime::from(sent).duration_since(server.playing_since().unwrap()).unwrap().as_secs_f64();
        assert!(at < 27.0, "{name} starved: early alert {at:.1} s into the stream");
    }
    // The detector could not keep up: frames were dropped (oldest first), counted per camera.
    let (_, diag) = daemon.get_with_key("/api/v1/diagnostics", Some("k3y-for-diagnostics")).expect("diagnostics");
    let feeds = diag["live_detection"].as_array().expect("live detection stats").clone();
    assert_eq!(feeds.len(), 8, "{feeds:?}");
    assert!(feeds.iter().all(|f| f["frames_sent"].as_u64() > Some(5)), "{feeds:?}");
    let dropped: u64 = feeds.iter().filter_map(|f| f["frames_dropped"].as_u64()).sum();
    assert!(dropped > 0, "the detector was not saturated: {feeds:?}");
    assert!(plain_log(&daemon).contains("the object detector is busy"), "drops are logged");
}

#[test]
fn digest_auth_works_and_wrong_credentials_give_one_clear_error_and_slow_retries() {
    const PASSWORD: &str = "s3cret-Pa55";
    const WRONG: &str = "wr0ng-Pa55";
    let scene = common::footage("scene_empty_people_empty.mp4");
    let good = RtspServer::start(&scene, &["--user", "admin", "--password", PASSWORD]);
    let bad = RtspServer::start(&scene, &["--user", "admin", "--password", PASSWORD]);
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let rec = "{}";
    let cfg = config(
        tmp.path(),
        broker.port,
        &[
            camera("front", "FRONT_URL", "", rec),
            // Credentials from their own variables this time.
            camera("back", "BACK_URL", "username_env: BACK_USER\npassword_env: BACK_PASS", rec),
            // The right password but a path the camera does not have.
            camera("side", "SIDE_URL", "", rec),
        ],
    );
    let good_url = good.url().replace("rtsp://", &format!("rtsp://admin:{PASSWORD}@"));
    let started = Instant::now();
    let daemon = Daemon::start(
        tmp.path(),
        &cfg,
        &[
            ("FRONT_URL", &good_url),
            ("BACK_URL", &bad.url()),
            ("BACK_USER", "admin"),
            ("BACK_PASS", WRONG),
            ("SIDE_URL", &good_url.replace("/cam", "/nope")),
        ],
    );

    wait_for("frames from the camera with the right password", Duration::from_secs(20), || {
        let h = source_health(&daemon, "front")?;
        (h["healthy"] == true && h["fps"].as_f64() > Some(0.0)).then_some(())
    });
    let back = wait_for("the wrong password reported", Duration::from_secs(20), || {
        let h = source_health(&daemon, "back")?;
        (h["healthy"] == false && h["last_error"].as_str().is_some_and(|e| e.contains("401"))).then_some(h)
    });
    let error = back["last_error"].as_str().unwrap();
    assert!(error.contains("credentials"), "{error}");

    // Retries are slow (every reconnect_max_s = 2 s, not a tight loop) and the
    // failure is logged as an error once.
    std::thread::sleep(Duration::from_secs(12).saturating_sub(started.elapsed()));
    let elapsed = started.elapsed().as_secs_f64();
    let back = source_health(&daemon, "back").unwrap();
    let reconnects = back["reconnects"].as_u64().unwrap();
    assert!(
        reconnects >= 2 && (reconnects as f64) <= elapsed / 2.0 * 1.3 + 1.0,
        "{reconnects} reconnects in {elapsed:.0} s"
    );
    let log = plain_log(&daemon);
    let errors: Vec<&str> =
        log.lines().filter(|l| l.contains("ERROR") && l.contains("camera=back") && l.contains("401")).collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("camera stream unavailable"), "{}", errors[0]);
    let side = source_health(&daemon, "side").unwrap();
    assert_eq!(side["healthy"], false);
    assert!(side["last_error"].as_str().unwrap().contains("404"), "{side}");
    let errors = log.lines().filter(|l| l.contains("ERROR") && l.contains("camera=side") && l.contains("404")).count();
    assert_eq!(errors, 1);

    // No password anywhere: log, health, diagnostics.
    let (_, health) = daemon.get("/health").unwrap();
    for (what, text) in [("log", log.as_str()), ("health", &health.to_string())] {
        assert!(!text.contains(PASSWORD) && !text.contains(WRONG), "password in the {what}");
    }
    assert_eq!(source_health(&daemon, "front").unwrap()["healthy"], true);
}

#[test]
fn a_camera_that_dies_mid_stream_is_reported_reconnected_and_recorded_again() {
    let scene = common::footage("scene_empty_people_empty.mp4");
    let mut server = RtspServer::start(&scene, &[]);
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    // Short clips so that recording again shows quickly after the restart.
    let rec = "{pre_roll_s: 5, post_roll_s: 3, max_clip_s: 8, min_clip_s: 2}";
    let cfg = config(tmp.path(), broker.port, &[camera("porch", "PORCH_URL", "", rec)]);
    let mut daemon = Daemon::start(tmp.path(), &cfg, &[("PORCH_URL", &server.url())]);

    // Motion starts about 8 s in: wait until recording, then pull the plug.
    wait_for("recording to start", Duration::from_secs(30), || {
        plain_log(&daemon).contains("recording started").then_some(())
    });
    // `homesec zones` draws on the live camera's picture, fetched from the daemon.
    let zones_jpg = tmp.path().join("zones.jpg");
    let out = Command::new(env!("CARGO_BIN_EXE_homesec"))
        .args(["zones", "--camera", "porch", "--config"])
        .arg(&daemon.config)
        .arg("--out")
        .arg(&zones_jpg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("the running daemon (live picture)") && stdout.contains("768x576"), "{stdout}");
    let picture = image::open(&zones_jpg).unwrap();
    assert_eq!((picture.width(), picture.height()), (768, 576));
    std::thread::sleep(Duration::from_secs(1));
    // First the camera freezes: the connection stays up but frames stop.
    server.signal("STOP");
    let frozen = Instant::now();

    // The stall is detected (frame_timeout_s = 2), the clip in progress is
    // finished and handed over, and the camera turns unhealthy (3 x frame_timeout_s).
    wait_for("the interrupted clip", Duration::from_secs(20), || {
        (!clips_of(&daemon, "porch").is_empty() && plain_log(&daemon).contains("reason=\"stream_end\"")).then_some(())
    });
    let down = wait_for("the camera reported unhealthy", Duration::from_secs(20), || {
        let h = source_health(&daemon, "porch")?;
        (h["healthy"] == false).then_some(h)
    });
    assert!(down["last_error"].as_str().is_some_and(|e| e.contains("no video frame")), "{down}");
    assert!(frozen.elapsed() < Duration::from_secs(10), "unhealthy within 3x frame_timeout_s (+ slack)");
    let (code, health) = daemon.get("/health").unwrap();
    assert_eq!((code, health["status"].as_str()), (503, Some("unhealthy")), "{health}");
    let (code, frame) = daemon.get("/api/v1/cameras/porch/frame.jpg").unwrap();
    assert_eq!(code, 503, "a frozen camera has no picture to give: {frame}");
    assert!(frame["error"].as_str().is_some_and(|e| e.contains("no picture")), "{frame}");
    // Then it dies.
    server.kill();
    let before: Vec<String> =
        clips_of(&daemon, "porch").iter().map(|c| c["clip"]["clip_id"].as_str().unwrap().to_owned()).collect();
    for c in clips_of(&daemon, "porch") {
        check_clip(&c, SystemTime::UNIX_EPOCH, 10.0);
    }

    // The camera comes back: reconnect, healthy, and new clips.
    server.restart();
    let up = wait_for("the camera healthy again", Duration::from_secs(20), || {
        let h = source_health(&daemon, "porch")?;
        (h["healthy"] == true && h["last_heartbeat_age_s"].as_f64()? < 2.0).then_some(h)
    });
    assert!(up["reconnects"].as_u64().unwrap() >= 1, "{up}");
    let fresh = wait_for("a clip recorded after the reconnect", Duration::from_secs(45), || {
        let new: Vec<Value> = clips_of(&daemon, "porch")
            .into_iter()
            .filter(|c| !before.iter().any(|b| c["clip"]["clip_id"] == b.as_str()))
            .collect();
        (!new.is_empty()).then_some(new)
    });
    for c in &fresh {
        let (start, end) = check_clip(c, server.playing_since().unwrap(), 10.0);
        assert!(start >= -0.5 && end - start <= 8.0 + 4.5, "clip {start:.1}-{end:.1} s after the restart");
    }
    let log = plain_log(&daemon);
    assert!(log.contains("camera stream lost; reconnecting"), "the loss is logged");

    // A graceful stop finishes the clip in progress and hands it over.
    assert!(daemon.stop().is_some_and(|s| s.success()));
    let log = plain_log(&daemon);
    assert!(log.contains("reason=\"shutdown\""), "the clip in progress is kept on shutdown");
}

/// Files under `dir` (recursively) whose name ends with `suffix`.
fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_ending(&p, suffix));
        } else if p.to_string_lossy().ends_with(suffix) {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_daemon_killed_mid_event_keeps_the_clip_and_processes_it_after_the_restart() {
    let scene = common::footage("scene_empty_people_empty.mp4");
    let mut server = RtspServer::start(&scene, &[]);
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, &["homecam/alerts/#"]);
    let tmp = tempfile::tempdir().unwrap();
    let rec = "{pre_roll_s: 5, post_roll_s: 3, max_clip_s: 120, min_clip_s: 2}";
    let cfg = config(tmp.path(), broker.port, &[camera("porch", "PORCH_URL", "", rec)]);
    let mut daemon = Daemon::start(tmp.path(), &cfg, &[("PORCH_URL", &server.url())]);

    // Motion starts about 8 s in; people are confirmed a moment later (the
    // early alert) and, a few seconds (keyframes every 2 s) into the event,
    // the daemon dies.
    wait_for("the early alert", Duration::from_secs(40), || plain_log(&daemon).contains("early alert").then_some(()));
    std::thread::sleep(Duration::from_secs(3));
    daemon.kill9();
    let killed_at = SystemTime::now();
    // The camera goes too, so that the restarted daemon records nothing new.
    server.kill();
    assert_eq!(files_ending(tmp.path(), ".mp4.part").len(), 1, "the unfinished clip is on disk");
    assert_eq!(files_ending(tmp.path(), ".mp4.part.idx").len(), 1, "with its journal");
    assert!(clips_of(&daemon, "porch").is_empty());

    daemon.restart();
    let clip = wait_for("the recovered clip processed", Duration::from_secs(90), || {
        let c = clips_of(&daemon, "porch").into_iter().next()?;
        (c["status"] == "done").then_some(c)
    });
    let log = plain_log(&daemon);
    assert!(log.contains("recovered an unfinished clip after a crash"), "{log}");
    assert!(files_ending(tmp.path(), ".mp4.part").is_empty() && files_ending(tmp.path(), ".mp4.part.idx").is_empty());
    assert_eq!(clip["clip"]["source_backend"], "rtsp", "{clip}");
    // Pre-roll (about 5 s) plus the 5 s recorded before the kill, less what was
    // not journaled yet (at most a second); it ends before the kill.
    let (start, end) = check_clip(&clip, killed_at, 10.0);
    assert!(end - start >= 6.0 && end <= 0.5, "clip {start:.1}..{end:.1} s around the kill: {clip}");
    assert_eq!(clip["filter"]["status"], "ok", "the pipeline ran on it: {clip}");
    // The early alert went out before the kill; the final one, for the same
    // dedupe_key, after the restart.
    let id = clip["clip"]["clip_id"].as_str().unwrap();
    let alerts = wait_for("the final alert", Duration::from_secs(30), || {
        let a = sub.json_on("homecam/alerts/porch");
        a.iter().any(|a| a["stage"] == "final").then_some(a)
    });
    let stages: Vec<&str> = alerts.iter().map(|a| a["stage"].as_str().unwrap_or_default()).collect();
    assert_eq!(stages, ["detected", "final"], "{alerts:?}");
    assert!(alerts.iter().all(|a| a["dedupe_key"] == id), "{alerts:?}");

    let out = Command::new(env!("CARGO_BIN_EXE_homesec"))
        .args(["clips", "list", "--config"])
        .arg(&daemon.config)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(id), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn h265_cameras_main_or_sub_stream_are_recorded_detected_live_and_alert_early() {
    // The scene re-encoded to H.265 (hvc1, a keyframe every 2 s), cut at 22 s
    // (the people walk through from ~7 s) to keep the test short.
    let tmp = tempfile::tempdir().unwrap();
    let scene = common::footage("scene_empty_people_empty.mp4");
    let scene_h265 = tmp.path().join("scene_h265.mp4");
    common::encode_h265(&scene, &scene_h265, "hvc1", "keyint=20:crf=23", &["-t", "22"]);
    let scene_h264 = tmp.path().join("scene_h264.mp4");
    let cut = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-i"])
        .arg(&scene)
        .args(["-an", "-c", "copy", "-t", "22"])
        .arg(&scene_h264)
        .status()
        .expect("ffmpeg (apt-get install ffmpeg)");
    assert!(cut.success());
    // `attic` has only an H.265 stream; `shed` records H.264 and detects on an
    // H.265 sub-stream; `porch`, like most current cameras, records H.265 and
    // detects on an H.264 sub-stream.
    let attic = RtspServer::start(&scene_h265, &["--exit-on-eos"]);
    let shed = RtspServer::start(&scene_h264, &["--exit-on-eos"]);
    let shed_sub = RtspServer::start(&scene_h265, &["--exit-on-eos", "--codec", "h265"]);
    let porch = RtspServer::start(&scene_h265, &["--exit-on-eos"]);
    let porch_sub = RtspServer::start(&scene_h264, &["--exit-on-eos"]);
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, &["homecam/alerts/#"]);
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let rec = "{pre_roll_s: 5, post_roll_s: 3, max_clip_s: 120, min_clip_s: 2}";
    let cfg = config(
        &data,
        broker.port,
        &[
            camera("attic", "ATTIC_URL", "", rec),
            camera("shed", "SHED_URL", "detect_url_env: SHED_SUB", rec),
            camera("porch", "PORCH_URL", "detect_url_env: PORCH_SUB", rec),
        ],
    );
    let daemon = Daemon::start(
        &data,
        &cfg,
        &[
            ("ATTIC_URL", &attic.url()),
            ("SHED_URL", &shed.url()),
            ("SHED_SUB", &shed_sub.url()),
            ("PORCH_URL", &porch.url()),
            ("PORCH_SUB", &porch_sub.url()),
        ],
    );

    // Motion starts a recording, people are detected live (an early alert),
    // and the stream's end finishes the clip, whose main stream is never decoded again.
    for (cam, codec, since) in [("attic", "hevc", &attic), ("shed", "h264", &shed), ("porch", "hevc", &porch)] {
        let clips = wait_for(&format!("the {cam} clip filtered"), Duration::from_secs(60), || {
            let c = clips_of(&daemon, cam);
            (!c.is_empty() && c.iter().all(|c| c["filter_result"].is_object())).then_some(c)
        });
        assert_eq!(clips.len(), 1, "{cam}: {clips:?}");
        let clip = &clips[0];
        let (start, end) = check_clip_of(clip, since.playing_since().unwrap(), 10.0, codec);
        // The server's PLAYING time and the clip's first frame may differ by a few ms either way.
        assert!((-0.5..=5.0).contains(&start) && end > 15.0, "{cam}: clip {start:.2}-{end:.1} s");
        let classes = clip["filter_result"]["detected_classes"].as_array().unwrap();
        assert!(classes.iter().any(|c| c == "person"), "{cam}: {clip}");
        assert!(clip["filter_result"]["model"].as_str().unwrap_or_default().ends_with("(live)"), "{cam}: {clip}");
        let alerts = wait_for(&format!("the {cam} alerts"), Duration::from_secs(30), || {
            let a = sub.json_on(&format!("homecam/alerts/{cam}"));
            (a.len() >= 2).then_some(a)
        });
        let stages: Vec<&str> = alerts.iter().map(|a| a["stage"].as_str().unwrap_or_default()).collect();
        assert_eq!(stages, ["detected", "final"], "{cam}: {alerts:?}");
        assert!(alerts.iter().all(|a| a["dedupe_key"] == clip["clip"]["clip_id"]), "{cam}: {alerts:?}");
    }
    let log = plain_log(&daemon);
    for cam in ["attic", "shed", "porch"] {
        assert!(
            log.lines().any(|l| l.contains("motion started") && l.contains(&format!("camera={cam}"))),
            "{cam}: motion from the decoded detect stream"
        );
    }
    assert!(
        log.lines().any(|l| l.contains("detect stream parameters") && l.contains("camera=shed") && l.contains("H.265")),
        "the shed's sub-stream is H.265"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("detect stream parameters") && l.contains("camera=porch") && l.contains("H.264")),
        "the porch's sub-stream is H.264"
    );
    assert!(!log.contains("decode failed"), "no decode errors");
}
