//! Over-the-air updates, the daemon's side, end to end: the real daemon binary,
//! a real Mosquitto broker (Home Assistant's update entity), the update API with
//! its key, a local HTTP server as the update feed. RAUC itself is replaced by a
//! script that records its calls and plays the slot switch (the real RAUC, boot
//! loader and reboots run in the image tests under QEMU, `make ota-test`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::config::ConfigBuilder;
use common::peers::{Broker, Daemon, Subscriber, wait_for};
use serde_json::Value;

const KEY: &str = "update-test-key";

/// A stand-in for the `rauc` CLI: logs each call to `calls`, reports the slot in
/// `booted`, installs a bundle only when it equals `signed.raucb` (anything
/// else fails as a bad signature would) and then makes slot B the next boot.
fn fake_rauc(dir: &Path) -> PathBuf {
    let script = dir.join("rauc");
    std::fs::write(
        &script,
        r#"#!/bin/bash
d="$(dirname "$0")"
echo "$*" >> "$d/calls"
case "$1 $2" in
  "status --output-format=json") echo "{\"compatible\":\"homesec-test\",\"booted\":\"$(cat "$d/booted")\"}" ;;
  "status mark-good"|"status mark-bad") echo "marked slot $(cat "$d/booted") ${2#mark-}" ;;
  install*)
    if ! cmp -s "$2" "$d/signed.raucb"; then
      # What RAUC 1.8 prints for a bundle signed by a foreign key.
      echo "installing"; echo "  0% Installing"; echo " 40% Verifying signature failed."
      echo "LastError: signature verification failed: Verify error: unable to get local issuer certificate"
      echo "Installing \`$2' failed" >&2
      exit 1
    fi
    echo "  0% Installing"; echo " 40% Copying image to rootfs.1"; echo "100% Installing done."
    echo "Installing \`$2' succeeded" ;;
  *) echo "unexpected: $*" >&2; exit 1 ;;
esac
"#,
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&script).status().unwrap();
    std::fs::write(dir.join("booted"), "A").unwrap();
    std::fs::write(dir.join("signed.raucb"), b"a signed bundle for slot B\n".repeat(50_000)).unwrap();
    script
}

fn calls(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("calls")).unwrap_or_default().lines().map(str::to_owned).collect()
}

fn config(dir: &Path, broker: u16, camera: Camera, extra: &str) -> String {
    let cfg = ConfigBuilder::new("updbox", dir);
    let cfg = match camera {
        Camera::Folder => {
            std::fs::create_dir_all(dir.join("inbox")).unwrap();
            cfg.folder_camera("porch")
        }
        // An RTSP camera nobody answers for: the box is up, its camera is not.
        Camera::Dead => cfg.camera("porch", "backend: rtsp\nconfig:\n  url: rtsp://127.0.0.1:9/none"),
    };
    cfg.mqtt(broker)
        .server("api_key_env: HOMESEC_API_KEY")
        .section(&format!("update:\n  rauc_command: {}/rauc\n  confirm_timeout_s: 10\n{extra}", dir.display()))
        .build()
}

#[derive(Clone, Copy)]
enum Camera {
    Folder,
    Dead,
}

fn start(dir: &Path, config: &str) -> Daemon {
    Daemon::start(dir, config, &[("HOMESEC_API_KEY", KEY)])
}

/// curl against the daemon's API: (HTTP status, JSON body).
fn curl(args: &[&str]) -> (u16, Value) {
    let out = Command::new("curl").args(["-s", "-w", "\n%{http_code}"]).args(args).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.trim_end().rsplit_once('\n').unwrap_or(("", text.trim()));
    (code.parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
}

fn url(d: &Daemon, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", d.api_port)
}

fn system(d: &Daemon) -> Value {
    let (code, v) = curl(&["-H", &format!("X-API-Key: {KEY}"), &url(d, "/api/v1/system")]);
    assert_eq!(code, 200, "{v}");
    v
}

fn upload(d: &Daemon, file: &Path) -> (u16, Value) {
    let data = format!("@{}", file.display());
    curl(&[
        "-H",
        &format!("X-API-Key: {KEY}"),
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &data,
        &url(d, "/api/v1/update"),
    ])
}

/// Waits until the booted slot is confirmed; returns the system status.
fn wait_confirmed(d: &Daemon) -> Value {
    wait_for("the slot to be confirmed", Duration::from_secs(30), || {
        let s = system(d);
        (s["slot_confirmed"] == true).then_some(s)
    })
}

fn wait_state(d: &Daemon, state: &str) -> Value {
    wait_for(&format!("update state {state}"), Duration::from_secs(30), || {
        let s = system(d);
        (s["update"]["state"] == state).then_some(s)
    })
}

fn reboot_requested(dir: &Path) -> bool {
    dir.join("data/update/reboot").exists()
}

/// What the reboot does to the box: the daemon stops, systemd's path unit
/// removes the request, the boot loader starts the slot RAUC chose.
fn reboot_into(d: &mut Daemon, dir: &Path, slot: &str, config: &str) {
    d.stop();
    std::fs::remove_file(dir.join("data/update/reboot")).unwrap();
    std::fs::write(dir.join("booted"), slot).unwrap();
    std::fs::write(&d.config, config.replace("{api_port}", &d.api_port.to_string())).unwrap();
    d.restart();
}

#[test]
fn an_uploaded_bundle_is_verified_installed_and_confirmed_after_the_reboot() {
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fake_rauc(dir);
    let sub = Subscriber::connect(broker.port, &["homeassistant/device/#", "homecam/updbox/update/#"]);
    let cfg = config(dir, broker.port, Camera::Folder, "");
    let mut d = start(dir, &cfg);

    // A normal boot: slot A, marked good once the daemon is up.
    let s = wait_confirmed(&d);
    assert_eq!(s["slot"], "A");
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["update"]["state"], "idle");
    assert!(calls(dir).contains(&"status mark-good booted".to_owned()), "{:?}", calls(dir));

    // Home Assistant sees a firmware update entity on the box, with its state.
    let discovery = wait_for("update entity discovery", Duration::from_secs(10), || {
        sub.json_on("homeassistant/device/homesec_updbox/config").pop().map(|c| c["cmps"]["firmware"].clone())
    });
    assert_eq!(discovery["command_topic"], "homecam/updbox/update/install");
    let state =
        wait_for("update entity state", Duration::from_secs(10), || sub.json_on("homecam/updbox/update/state").pop());
    assert_eq!(state["installed_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(state["in_progress"], false);

    // No key, wrong key: refused, nothing installed.
    let signed = dir.join("signed.raucb");
    let data = format!("@{}", signed.display());
    let (code, _) = curl(&["--data-binary", &data, &url(&d, "/api/v1/update")]);
    assert_eq!(code, 401);
    let (code, _) = curl(&["-H", "X-API-Key: wrong", "--data-binary", &data, &url(&d, "/api/v1/update")]);
    assert_eq!(code, 401);
    assert!(!calls(dir).iter().any(|c| c.starts_with("install")));

    // A bundle RAUC refuses (a foreign signature): failed, with RAUC's reason; no reboot.
    let forged = dir.join("forged.raucb");
    std::fs::write(&forged, b"not signed by us").unwrap();
    let (code, v) = upload(&d, &forged);
    assert_eq!(code, 202, "{v}");
    let s = wait_state(&d, "failed");
    assert!(s["update"]["error"].as_str().unwrap().contains("signature verification failed"), "{s}");
    assert!(!reboot_requested(dir));
    assert_eq!(s["slot"], "A");

    // The signed bundle: installed, the box asks for the reboot.
    let (code, v) = upload(&d, &signed);
    assert_eq!(code, 202, "{v}");
    assert!(["installing", "rebooting"].contains(&v["update"]["state"].as_str().unwrap()), "{v}");
    let s = wait_state(&d, "rebooting");
    assert_eq!(s["update"]["progress"], 100);
    assert!(reboot_requested(dir), "the reboot unit's trigger file is there");
    let installed: Vec<String> = calls(dir).into_iter().filter(|c| c.starts_with("install")).collect();
    assert_eq!(installed.len(), 2, "{installed:?}");
    assert!(!dir.join("data/update/bundle.raucb").exists(), "the bundle does not stay on the data partition");
    let log = d.log_text();
    assert!(!log.contains(KEY), "the API key is never logged");

    // After the reboot: slot B, kept because the full health check passed.
    reboot_into(&mut d, dir, "B", &cfg);
    let s = wait_confirmed(&d);
    assert_eq!(s["slot"], "B");
    assert_eq!(s["update"]["state"], "idle");
    assert!(!dir.join("data/update/pending.json").exists());
    assert!(!reboot_requested(dir));
    assert!(d.log_text().contains("slot marked good"));
}

#[test]
fn a_new_slot_that_fails_its_health_check_is_marked_bad_and_the_box_goes_back() {
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fake_rauc(dir);
    let good = config(dir, broker.port, Camera::Folder, "");
    let mut d = start(dir, &good);
    // Slot A is confirmed first, so every mark-good after the install would be slot B's.
    wait_confirmed(&d);
    let (code, v) = upload(&d, &dir.join("signed.raucb"));
    assert_eq!(code, 202, "{v}");
    wait_state(&d, "rebooting");

    // The new slot's daemon cannot reach its camera: not kept.
    let broken = config(dir, broker.port, Camera::Dead, "");
    reboot_into(&mut d, dir, "B", &broken);
    let s = wait_for("the trial boot to give up", Duration::from_secs(40), || {
        let s = system(&d);
        (s["update"]["state"] == "failed").then_some(s)
    });
    assert_eq!(s["slot"], "B");
    assert_eq!(s["slot_confirmed"], false);
    let err = s["update"]["error"].as_str().unwrap();
    assert!(err.contains("slot B failed its health check") && err.contains("porch"), "{err}");
    assert!(calls(dir).contains(&"status mark-bad booted".to_owned()), "{:?}", calls(dir));
    assert!(!calls(dir).iter().skip_while(|c| !c.starts_with("install")).any(|c| c == "status mark-good booted"));
    assert!(reboot_requested(dir), "reboots out of the bad slot by itself");

    // Back on slot A (the old config): the failure is reported, slot A confirmed.
    reboot_into(&mut d, dir, "A", &good);
    let s = wait_confirmed(&d);
    assert_eq!(s["slot"], "A");
    assert_eq!(s["update"]["state"], "failed");
    assert!(s["update"]["error"].as_str().unwrap().contains("back on slot A"), "{s}");
}

/// A tiny HTTP server for the update feed and the bundle it names.
fn serve(files: Vec<(&'static str, Vec<u8>)>) -> u16 {
    use axum::Router;
    use axum::routing::get;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut app = Router::new();
    for (path, body) in files {
        app = app.route(path, get(move || async move { body }));
    }
    std::thread::spawn(move || rt.block_on(async move { axum::serve(listener, app).await }));
    port
}

#[test]
fn home_assistants_install_button_installs_the_feeds_latest_bundle() {
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fake_rauc(dir);
    let bundle = std::fs::read(dir.join("signed.raucb")).unwrap();
    // The feed names the bundle on the same server; the port is known only once it runs.
    let bundle_port = serve(vec![("/homesec-2.0.raucb", bundle)]);
    let feed = format!(
        r#"{{"version": "2.0", "url": "http://127.0.0.1:{bundle_port}/homesec-2.0.raucb", "notes": "Faster."}}"#
    );
    let feed_port = serve(vec![("/feed.json", feed.into_bytes())]);
    let extra = format!("  feed_url: http://127.0.0.1:{feed_port}/feed.json");
    let sub = Subscriber::connect(broker.port, &["homecam/updbox/update/state"]);
    let d = start(dir, &config(dir, broker.port, Camera::Folder, &extra));

    let state = wait_for("latest version from the feed", Duration::from_secs(20), || {
        sub.json_on("homecam/updbox/update/state").into_iter().find(|s| s["latest_version"] == "2.0")
    });
    assert_eq!(state["installed_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(state["release_summary"], "Faster.");

    let status = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port.to_string(),
            "-t",
            "homecam/updbox/update/install",
            "-m",
            "install",
        ])
        .status()
        .expect("mosquitto_pub");
    assert!(status.success());
    let s = wait_state(&d, "rebooting");
    assert_eq!(s["latest_version"], "2.0");
    assert!(reboot_requested(dir));
    assert_eq!(calls(dir).iter().filter(|c| c.starts_with("install")).count(), 1);
}

#[test]
fn without_rauc_the_api_says_updates_are_unavailable() {
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cfg =
        config(dir, broker.port, Camera::Folder, "").replace(&format!("{}/rauc", dir.display()), "/nonexistent/rauc");
    let sub = Subscriber::connect(broker.port, &["homeassistant/#"]);
    let d = start(dir, &cfg);
    let s = system(&d);
    assert_eq!(s["update"]["state"], "unavailable");
    let config = wait_for("the box's discovery", Duration::from_secs(10), || {
        sub.json_on("homeassistant/device/homesec_updbox/config").pop()
    });
    assert!(config["cmps"]["connectivity"].is_object(), "{config}");
    assert!(config["cmps"].get("firmware").is_none(), "no firmware entity on a box that cannot update: {config}");
    assert_eq!(s["slot"], Value::Null);
    let file = dir.join("bundle.raucb");
    std::fs::write(&file, b"bundle").unwrap();
    let (code, v) = upload(&d, &file);
    assert_eq!(code, 503, "{v}");
    assert!(v["error"].as_str().unwrap().contains("not available"), "{v}");
}
