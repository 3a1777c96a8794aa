//! The FTP source with real clients: curl and Python's ftplib in passive mode
//! against the real daemon, real footage through the real model to an MQTT
//! alert on the test broker; slow, cut, oversized, empty and misplaced uploads,
//! wrong passwords, and a kill -9 right after an upload.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::config::ConfigBuilder;
use common::peers::{Broker, Daemon, Subscriber, free_port, wait_for};
use serde_json::Value;

const USER: &str = "camera";
const PASSWORD: &str = "ftp-test-secret-42";
const USER_ENV: &str = "HOMESEC_FTP_TEST_USER";
const PASSWORD_ENV: &str = "HOMESEC_FTP_TEST_PASSWORD";
const CLIP: &str = "scene_empty_people_empty.mp4";

/// Ten consecutive free ports for passive data connections.
fn passive_ports() -> (u16, u16) {
    loop {
        let first = 20_000 + fastrand_u16() % 30_000;
        let free = (first..first + 10).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            return (first, first + 9);
        }
    }
}

fn fastrand_u16() -> u16 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    (nanos ^ std::process::id()) as u16
}

/// A box with one FTP camera (`driveway`) and, when given, an MQTT broker.
struct FtpBox {
    daemon: Daemon,
    port: u16,
}

impl FtpBox {
    fn start(dir: &Path, broker: Option<u16>, extra: &str, sections: &[&str]) -> FtpBox {
        let port = free_port();
        let (first, last) = passive_ports();
        let mut cfg = ConfigBuilder::new("ftpbox", dir)
            .camera("driveway", "backend: ftp\nconfig:\n  ftp_subdir: driveway")
            .filter(&["classes: [person, car]", "sample_fps: 1"])
            .section(&format!(
                "ftp:\n  listen: 127.0.0.1:{port}\n  passive_ports: \"{first}-{last}\"\n  \
                 username_env: {USER_ENV}\n  password_env: {PASSWORD_ENV}\n{extra}"
            ))
            .section("retry:\n  backoff_s: 0.2\n  max_backoff_s: 1");
        if let Some(b) = broker {
            cfg = cfg.mqtt(b);
        }
        for s in sections {
            cfg = cfg.section(s);
        }
        let daemon = Daemon::start(dir, &cfg.build(), &[(USER_ENV, USER), (PASSWORD_ENV, PASSWORD)]);
        FtpBox { daemon, port }
    }

    fn url(&self, path: &str) -> String {
        format!("ftp://127.0.0.1:{}/{}", self.port, path.trim_start_matches('/'))
    }

    /// The FTP root as the daemon keeps it.
    fn root(&self) -> PathBuf {
        self.daemon.dir.join("data/ftp")
    }

    /// curl uploading `local` to `path` (passive, creating folders), with extra args.
    fn curl(&self, local: &Path, path: &str, extra: &[&str]) -> Command {
        let mut c = Command::new("curl");
        c.args(["-sS", "--ftp-pasv", "--ftp-create-dirs", "--user", &format!("{USER}:{PASSWORD}"), "-T"])
            .arg(local)
            .args(extra)
            .arg(self.url(path));
        c
    }

    fn upload(&self, local: &Path, path: &str) {
        let out = self.curl(local, path, &[]).output().unwrap();
        assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Runs tests/ftp_client.py (ftplib) as `user` and returns what it printed.
    fn client_as(&self, user: &str, password: &str, cmd: &str, args: &[&str]) -> Value {
        let script = common::repo_root().join("tests/ftp_client.py");
        let out = Command::new(python3())
            .arg(script)
            .args([cmd, &self.port.to_string(), user, password])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "ftp_client.py {cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// [`FtpBox::client_as`] with the camera's account.
    fn client(&self, cmd: &str, args: &[&str]) -> Value {
        self.client_as(USER, PASSWORD, cmd, args)
    }

    fn clips(&self) -> Vec<Value> {
        self.daemon.clips()
    }

    /// Regular files under the FTP root.
    fn files_in_root(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let t = e.file_type().unwrap();
                if t.is_dir() {
                    walk(&e.path(), out);
                } else if t.is_file() {
                    out.push(e.path());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root(), &mut out);
        out
    }

    fn source_health(&self) -> Value {
        let (_, health) = self.daemon.get("/health").unwrap();
        health["sources"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["camera"] == "driveway").cloned())
            .unwrap_or(Value::Null)
    }
}

/// Debian's python when there, else whatever `python3` is (ftplib is stdlib).
fn python3() -> &'static str {
    if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" }
}

/// A valid MP4 of at least `size` bytes: real footage and a `free` box.
fn big_clip(dir: &Path, size: usize) -> PathBuf {
    let mut bytes = std::fs::read(common::footage("vtest_h264.mp4")).unwrap();
    let pad = size.saturating_sub(bytes.len()).max(16);
    bytes.extend_from_slice(&(pad as u32).to_be_bytes());
    bytes.extend_from_slice(b"free");
    bytes.resize(bytes.len() + pad - 8, 0);
    let path = dir.join("big.mp4");
    std::fs::write(&path, bytes).unwrap();
    path
}

fn status(daemon: &Daemon, id: &str, want: &str) {
    wait_for(&format!("clip {id} {want}"), Duration::from_secs(120), || {
        (daemon.status_of(id).as_deref() == Some(want)).then_some(())
    });
}

#[test]
fn a_camera_upload_becomes_a_clip_named_after_its_file_and_an_mqtt_alert() {
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, &["homecam/alerts/#"]);
    let tmp = tempfile::tempdir().unwrap();
    let ftp = FtpBox::start(tmp.path(), Some(broker.port), "", &[]);
    let health = ftp.source_health();
    assert_eq!(health["backend"], "ftp", "{health}");
    assert_eq!(health["healthy"], true, "{health}");
    assert!(health["last_heartbeat_age_s"].is_null(), "no upload yet: {health}");

    // curl into a date folder it creates, as Reolink cameras do.
    ftp.upload(&common::footage(CLIP), "driveway/2026-12-02/driveway_20261202120000.mp4");
    let alert = wait_for("the alert on homecam/alerts/driveway", Duration::from_secs(120), || {
        sub.json_on("homecam/alerts/driveway").into_iter().next()
    });
    assert_eq!(alert["clip_id"], "driveway_20261202120000", "{alert}");
    assert_eq!(alert["camera_name"], "driveway");
    assert!(alert["detected_classes"].as_array().unwrap().iter().any(|c| c == "person"), "{alert}");
    status(&ftp.daemon, "driveway_20261202120000", "done");
    let clip = ftp.clips().into_iter().find(|c| c["clip"]["clip_id"] == "driveway_20261202120000").unwrap();
    assert_eq!(clip["clip"]["source_backend"], "ftp", "{clip}");
    assert!(ftp.files_in_root().is_empty(), "taken out of the FTP root: {:?}", ftp.files_in_root());
    let health = ftp.source_health();
    assert!(health["last_heartbeat_age_s"].as_f64().is_some_and(|a| a < 120.0), "last upload: {health}");

    // ftplib the way Hikvision/Dahua firmware goes: a deep MKD/CWD chain, a
    // SIZE probe, ALLO, STOR. The same name again is a collision: `_2`.
    let out = ftp.client(
        "camera",
        &["driveway/2026/12/02/12", "driveway_20261202120000.mp4", common::footage(CLIP).to_str().unwrap()],
    );
    assert_eq!(out["pwd"], "/driveway/2026/12/02/12", "{out}");
    assert!(out["cwd"].as_array().unwrap().iter().all(|r| r.as_str().unwrap().starts_with("250")), "{out}");
    assert!(out["size_before"].as_str().unwrap().starts_with("550"), "{out}");
    // ALLO gets 200: some Dahua firmware reconnects in a loop on 202.
    assert!(out["allo"].as_str().unwrap().starts_with("200"), "ALLO answered {out}");
    assert!(out["stor"].as_str().unwrap().starts_with("226"), "{out}");
    // Taken before the 226: the file is no longer in the FTP root.
    assert!(out["size_after"].as_str().unwrap().starts_with("550"), "{out}");
    status(&ftp.daemon, "driveway_20261202120000_2", "done");
}

#[test]
fn a_slow_upload_is_taken_once_and_only_after_it_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let ftp = FtpBox::start(tmp.path(), None, "", &[]);
    let big = big_clip(tmp.path(), 20 << 20);
    let mut curl: Child =
        ftp.curl(&big, "driveway/slow_1.mp4", &["--limit-rate", "2500K"]).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    let partial = ftp.root().join("driveway/slow_1.mp4");
    wait_for("bytes of the slow upload on disk", Duration::from_secs(30), || {
        std::fs::metadata(&partial).ok().filter(|m| m.len() > 0).map(|_| ())
    });
    // While it is still arriving: no clip.
    let mut looked = 0;
    while curl.try_wait().unwrap().is_none() {
        assert!(ftp.clips().is_empty(), "a clip before the upload completed: {:?}", ftp.clips());
        looked += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    let took = started.elapsed();
    assert!(curl.wait().unwrap().success(), "curl failed");
    assert!(looked >= 4 && took >= Duration::from_secs(4), "the upload was not slow: {took:?}, {looked} looks");
    status(&ftp.daemon, "slow_1", "done");
    let clips = ftp.clips();
    assert_eq!(clips.len(), 1, "taken once: {clips:?}");
    let kept = PathBuf::from(clips[0]["clip"]["local_path"].as_str().unwrap());
    assert_eq!(std::fs::metadata(kept).unwrap().len(), std::fs::metadata(&big).unwrap().len());
}

#[test]
fn an_upload_cut_mid_transfer_is_never_taken_and_its_leftover_goes() {
    let tmp = tempfile::tempdir().unwrap();
    let ftp = FtpBox::start(tmp.path(), None, "", &[]);
    let big = big_clip(tmp.path(), 20 << 20);
    let mut curl = ftp.curl(&big, "driveway/cut_1.mp4", &["--limit-rate", "1M"]).stderr(Stdio::null()).spawn().unwrap();
    let partial = ftp.root().join("driveway/cut_1.mp4");
    wait_for("part of the upload on disk", Duration::from_secs(30), || {
        std::fs::metadata(&partial).ok().filter(|m| m.len() > 1 << 20).map(|_| ())
    });
    curl.kill().unwrap(); // SIGKILL: the camera loses power mid-upload
    curl.wait().unwrap();
    wait_for("the cut upload removed", Duration::from_secs(30), || (!partial.exists()).then_some(()));
    // The server is fine and takes the next upload; the cut one never became a clip.
    ftp.upload(&common::footage(CLIP), "driveway/after_cut.mp4");
    status(&ftp.daemon, "after_cut", "done");
    // Usually the server sees the control connection close first and removes
    // what arrived; when it sees the data connection's end first (a race the
    // protocol allows), the incomplete file fails the MP4 check and is
    // quarantined. Either way it never reaches the pipeline.
    let clips = ftp.clips();
    let others: Vec<_> = clips.iter().filter(|c| c["clip"]["clip_id"] != "after_cut").collect();
    let log = ftp.daemon.log_text();
    match others.as_slice() {
        [] => assert!(log.contains("went away before it completed"), "the log says what happened"),
        [cut] => {
            assert_eq!(cut["status"], "quarantined", "{cut}");
            assert!(log.contains("unreadable clip quarantined"));
        }
        more => panic!("{more:?}"),
    }
    assert!(ftp.files_in_root().is_empty(), "{:?}", ftp.files_in_root());
}

#[test]
fn a_wrong_password_gets_530_and_the_account_is_locked_after_max_failed_logins() {
    let tmp = tempfile::tempdir().unwrap();
    let ftp = FtpBox::start(tmp.path(), None, "  max_failed_logins: 3\n", &[]);
    assert!(ftp.client("login", &[])["reply"].as_str().unwrap().starts_with("230"));
    for _ in 0..3 {
        let out = ftp.client_as(USER, "wrong", "login", &[]);
        assert!(out["reply"].as_str().unwrap().starts_with("530"), "{out}");
    }
    // Locked out: now even the right password is refused.
    let out = ftp.client("login", &[]);
    assert!(out["reply"].as_str().unwrap().starts_with("530"), "locked out: {out}");
    let log = ftp.daemon.log_text();
    assert!(log.contains("FTP log-in refused: wrong user name or password"), "{log}");
    assert!(!log.contains(PASSWORD), "the password is never logged");
}

#[test]
fn paths_outside_the_camera_folders_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ftp = FtpBox::start(tmp.path(), None, "", &[]);
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    // A symlink in the camera's folder pointing out of the FTP root.
    std::os::unix::fs::symlink(&outside, ftp.root().join("driveway/escape")).unwrap();
    let clip = common::footage(CLIP);
    let clip = clip.to_str().unwrap();
    for (path, code) in [
        ("../evil.mp4", "553"),
        ("driveway/../../evil.mp4", "553"),
        ("/../../../tmp/evil.mp4", "553"),
        ("/tmp/evil.mp4", "553"),
        ("evil.mp4", "553"),
        ("/other/evil.mp4", "553"),
        // cap-std will not follow the symlink out of the root.
        ("driveway/escape/evil.mp4", "550"),
    ] {
        let out = ftp.client("put", &[path, clip]);
        assert!(out["stor"].as_str().unwrap().starts_with(code), "STOR {path} answered {out}");
    }
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing written outside");
    assert!(!tmp.path().join("evil.mp4").exists() && !Path::new("/tmp/evil.mp4").exists());
    // CWD .. at the root stays at the root.
    let out = ftp.client("cwd", &["../../.."]);
    assert_eq!(out["pwd"], "/", "{out}");
    assert!(ftp.clips().is_empty(), "{:?}", ftp.clips());
}

#[test]
fn an_empty_upload_is_quarantined_and_an_oversized_one_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ftp = FtpBox::start(tmp.path(), None, "  max_upload_bytes: 1048576\n", &[]);
    let empty = tmp.path().join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    ftp.upload(&empty, "driveway/empty_1.mp4");
    status(&ftp.daemon, "empty_1", "quarantined");
    let rec = ftp.clips().into_iter().find(|c| c["clip"]["clip_id"] == "empty_1").unwrap();
    let moved = rec["quarantine"]["moved_to"].as_str().unwrap();
    assert!(Path::new(moved).is_file(), "kept at {moved}");

    // vtest_h264.mp4 is 5 MB: over the 1 MiB cap.
    let out = ftp.client("put", &["driveway/huge.mp4", common::footage("vtest_h264.mp4").to_str().unwrap()]);
    assert!(out["stor"].as_str().unwrap().starts_with("552"), "{out}");
    assert!(ftp.files_in_root().is_empty(), "nothing kept of it: {:?}", ftp.files_in_root());
    assert_eq!(ftp.clips().len(), 1, "{:?}", ftp.clips());
    assert!(ftp.daemon.log_text().contains("over the size cap refused"));
}

#[test]
fn uploads_are_refused_when_the_disk_is_at_its_free_space_floor() {
    let tmp = tempfile::tempdir().unwrap();
    // A floor no disk here meets.
    let ftp = FtpBox::start(tmp.path(), None, "", &["retention:\n  min_free_bytes: 1000000000000000000"]);
    let out = ftp.client("put", &["driveway/full.mp4", common::footage(CLIP).to_str().unwrap()]);
    assert!(out["stor"].as_str().unwrap().starts_with("452"), "{out}");
    assert!(ftp.clips().is_empty() && ftp.files_in_root().is_empty());
}

#[test]
fn kill_9_right_after_an_upload_completes_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ftp = FtpBox::start(tmp.path(), None, "", &[]);
    ftp.upload(&common::footage(CLIP), "driveway/2026-12-02/driveway_20261202130000.mp4");
    // curl saw 226: the daemon dies at once.
    ftp.daemon.kill9();
    ftp.daemon.restart();
    status(&ftp.daemon, "driveway_20261202130000", "done");
    assert_eq!(ftp.clips().len(), 1, "{:?}", ftp.clips());
}

#[test]
fn ftps_uploads_are_taken_and_plain_ones_refused_when_tls_is_required() {
    let pki = common::pki::Pki::new();
    let tmp = tempfile::tempdir().unwrap();
    let tls = format!(
        "  tls:\n    cert: {}\n    key: {}\n    required: true\n",
        pki.path("server.pem").display(),
        pki.path("server.key").display()
    );
    let ftp = FtpBox::start(tmp.path(), None, &tls, &[]);
    let clip = common::footage(CLIP);
    let url = format!("ftp://localhost:{}/driveway/tls_1.mp4", ftp.port);
    let cacert = pki.path("ca.pem");
    let out = Command::new("curl")
        .args(["-sS", "--ftp-pasv", "--ssl-reqd", "--user", &format!("{USER}:{PASSWORD}"), "--cacert"])
        .arg(&cacert)
        .arg("-T")
        .arg(&clip)
        .arg(&url)
        .output()
        .unwrap();
    assert!(out.status.success(), "curl over FTPS: {}", String::from_utf8_lossy(&out.stderr));
    status(&ftp.daemon, "tls_1", "done");

    // Without TLS the log-in is refused.
    let plain = ftp.curl(&clip, "driveway/plain_1.mp4", &[]).output().unwrap();
    assert!(!plain.status.success(), "a plain upload went through");
    assert_eq!(ftp.clips().len(), 1, "{:?}", ftp.clips());
}

#[test]
fn anonymous_uploads_work_on_a_loopback_listen_when_enabled() {
    let tmp = tempfile::tempdir().unwrap();
    let ftp = FtpBox::start(tmp.path(), None, "  anonymous: true\n", &[]);
    let clip = common::footage(CLIP);
    let out = ftp.client_as("anonymous", "", "put", &["driveway/anon_1.mp4", clip.to_str().unwrap()]);
    assert!(out["stor"].as_str().unwrap().starts_with("226"), "{out}");
    status(&ftp.daemon, "anon_1", "done");
    // The account works beside it.
    assert!(ftp.client("login", &[])["reply"].as_str().unwrap().starts_with("230"));
}

#[test]
fn a_port_in_use_is_said_in_health_and_the_camera_is_unhealthy() {
    let tmp = tempfile::tempdir().unwrap();
    // Something else holds the port the FTP server is to listen on.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (first, last) = passive_ports();
    let cfg = ConfigBuilder::new("ftpbox", tmp.path())
        .camera("driveway", "backend: ftp\nconfig:\n  ftp_subdir: driveway")
        .section(&format!(
            "ftp:\n  listen: 127.0.0.1:{port}\n  passive_ports: \"{first}-{last}\"\n  \
             username_env: {USER_ENV}\n  password_env: {PASSWORD_ENV}\n"
        ))
        .build();
    let daemon = Daemon::start(tmp.path(), &cfg, &[(USER_ENV, USER), (PASSWORD_ENV, PASSWORD)]);
    let source = wait_for("the camera's health", Duration::from_secs(30), || {
        let (_, health) = daemon.get("/health")?;
        health["sources"].as_array()?.iter().find(|s| s["camera"] == "driveway").cloned()
    });
    assert_eq!(source["healthy"], false, "{source}");
    let err = source["last_error"].as_str().unwrap_or_default();
    assert!(err.contains(&format!("cannot listen on 127.0.0.1:{port}")) && err.contains("in use"), "{source}");
    drop(taken);
}

#[test]
fn an_upload_under_a_temporary_name_is_taken_when_renamed_to_mp4() {
    let tmp = tempfile::tempdir().unwrap();
    let ftp = FtpBox::start(tmp.path(), None, "", &[]);
    let clip = common::footage(CLIP);
    let out = ftp.client("rename", &["driveway/upload.tmp", "driveway/renamed_1.mp4", clip.to_str().unwrap()]);
    assert!(out["stor"].as_str().unwrap().starts_with("226"), "{out}");
    assert!(out["rename"].as_str().unwrap().starts_with("250"), "{out}");
    status(&ftp.daemon, "renamed_1", "done");
    // A snapshot stays (it may be renamed too) until a sweep finds it old.
    let snap = common::image("person.jpg");
    let out = ftp.client("put", &["driveway/snap_1.jpg", snap.to_str().unwrap()]);
    assert!(out["stor"].as_str().unwrap().starts_with("226"), "{out}");
    assert!(ftp.root().join("driveway/snap_1.jpg").is_file());
    // Renaming out of the camera's folder is refused.
    let out = ftp.client("rename", &["driveway/x.tmp", "stolen.mp4", clip.to_str().unwrap()]);
    assert!(out["rename"].as_str().unwrap().starts_with("553"), "{out}");
    assert_eq!(ftp.clips().len(), 1, "{:?}", ftp.clips());
}
