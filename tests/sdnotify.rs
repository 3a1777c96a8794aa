//! The daemon binary speaks systemd's notify protocol: with `NOTIFY_SOCKET` and
//! `WATCHDOG_USEC` set (as systemd sets them for `Type=notify` + `WatchdogSec=`)
//! it sends READY=1 once up, WATCHDOG=1 every half timeout while the pipeline
//! runs (also while a clip goes through the real detector), and STOPPING=1 on
//! SIGTERM. The socket here stands in for systemd's.

mod common;

use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::config::ConfigBuilder;
use common::peers::{Broker, Daemon, wait_for};

fn config(dir: &std::path::Path, broker: u16) -> String {
    ConfigBuilder::new("sdnotify", dir)
        .folder_camera("porch")
        .filter(&["classes: [person, car]", "sample_fps: 1"])
        .policy("backend: default\nconfig:\n  notify_on_classes: [person]")
        .mqtt(broker)
        .build()
}

/// Every datagram received, with its arrival time.
type Received = Arc<Mutex<Vec<(Instant, String)>>>;

fn listen(sock: UnixDatagram) -> Received {
    let got: Received = Arc::default();
    let sink = got.clone();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // Ends when the test drops `got` (and with it the last other reference).
        while Arc::strong_count(&sink) > 1 {
            if let Ok(n) = sock.recv(&mut buf) {
                sink.lock().unwrap().push((Instant::now(), String::from_utf8_lossy(&buf[..n]).into_owned()));
            }
        }
    });
    got
}

fn arrivals(got: &Received, line: &str) -> Vec<Instant> {
    got.lock().unwrap().iter().filter(|(_, m)| m.lines().any(|l| l == line)).map(|(t, _)| *t).collect()
}

#[test]
fn tells_systemd_ready_feeds_the_watchdog_and_says_stopping() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    let socket_path = dir.path().join("notify.sock");
    let got = listen(UnixDatagram::bind(&socket_path).unwrap());

    let socket = socket_path.to_str().unwrap();
    let mut daemon = Daemon::start(
        dir.path(),
        &config(dir.path(), broker.port),
        &[("NOTIFY_SOCKET", socket), ("WATCHDOG_USEC", "2000000")],
    );
    let ready = wait_for("READY=1", Duration::from_secs(60), || arrivals(&got, "READY=1").first().copied());
    assert!(
        got.lock().unwrap().iter().any(|(_, m)| m.contains("STATUS=running: 1 camera(s)")),
        "{:?}",
        got.lock().unwrap()
    );
    assert!(daemon.get("/health").is_some(), "the API answers once READY=1 was sent");

    // A clip through the real detector meanwhile: the watchdog must not starve.
    daemon.drop_clip(&common::footage("scene_empty_people_empty.mp4"), "porch_1.mp4");
    std::thread::sleep(Duration::from_secs(6));
    let feeds: Vec<Instant> = arrivals(&got, "WATCHDOG=1").into_iter().filter(|t| *t >= ready).collect();
    assert!(feeds.len() >= 4, "WATCHDOG=1 every ~1 s (WATCHDOG_USEC=2 s), got {} in 6 s", feeds.len());
    let mut last = ready;
    for t in &feeds {
        let gap = t.duration_since(last);
        assert!(gap < Duration::from_secs(2), "watchdog gap {gap:?} ≥ WATCHDOG_USEC: systemd would kill the daemon");
        last = *t;
    }
    assert!(
        !got.lock().unwrap().iter().any(|(_, m)| m.contains("watchdog starved")),
        "a healthy daemon never starves the watchdog: {:?}\n{}",
        got.lock().unwrap(),
        daemon.log_text()
    );

    let status = daemon.stop().expect("daemon was running");
    assert!(status.success(), "clean exit on SIGTERM: {status}\n{}", daemon.log_text());
    let stopping = wait_for("STOPPING=1", Duration::from_secs(5), || arrivals(&got, "STOPPING=1").first().copied());
    assert!(stopping > ready);
    assert_eq!(arrivals(&got, "READY=1").len(), 1, "READY=1 once");
    assert!(arrivals(&got, "WATCHDOG=1").iter().all(|t| *t < stopping), "no WATCHDOG=1 after STOPPING=1");
}

#[test]
fn without_notify_socket_the_daemon_runs_as_before() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    // An empty NOTIFY_SOCKET (as when unset; and whatever the test runner inherited) and
    // WATCHDOG_USEC alone must not matter.
    let mut daemon = Daemon::start(
        dir.path(),
        &config(dir.path(), broker.port),
        &[("NOTIFY_SOCKET", ""), ("WATCHDOG_USEC", "2000000")],
    );
    assert!(daemon.get("/health").is_some());
    let status = daemon.stop().expect("daemon was running");
    assert!(status.success(), "{status}\n{}", daemon.log_text());
    assert!(!daemon.log_text().contains("systemd notification failed"), "{}", daemon.log_text());
}
