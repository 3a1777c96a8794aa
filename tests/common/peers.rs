//! Real peers for end-to-end tests: a private Mosquitto broker (so a test can
//! stop and restart it), the daemon binary, an MQTT subscriber, and a local
//! OpenAI-compatible server that records requests.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `f` every 100 ms until it returns `Some`, or panics after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Mosquitto broker of the test's own on a free port (`/usr/sbin/mosquitto`,
/// or `HOMESEC_MOSQUITTO`), so a test can stop, freeze and restart it without
/// touching the system broker, and no retained message leaks between tests.
pub struct Broker {
    /// The plain MQTT listener (on 127.0.0.1).
    pub port: u16,
    /// The TLS listener, when started with [`Broker::start_tls`].
    pub tls_port: Option<u16>,
    tls: Option<BrokerTls>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// A TLS listener beside the plain one: the broker's certificate and key, the
/// CA its clients' certificates must chain to, and whether a client must
/// present one.
#[derive(Debug, Clone)]
pub struct BrokerTls {
    pub cafile: PathBuf,
    pub certfile: PathBuf,
    pub keyfile: PathBuf,
    pub require_certificate: bool,
}

impl Broker {
    pub fn start() -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Broker { port: free_port(), tls_port: None, tls: None, dir, child: None };
        b.restart();
        b
    }

    /// A broker with a plain listener on `port` and a TLS one on `tls_port`.
    pub fn start_tls(tls: BrokerTls) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Broker { port: free_port(), tls_port: Some(free_port()), tls: Some(tls), dir, child: None };
        b.restart();
        b
    }

    /// Mosquitto's own log (handshake failures show here).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Starts the broker again on the same port (stopping it first if it runs).
    pub fn restart(&mut self) {
        self.stop();
        let conf = self.dir.path().join("mosquitto.conf");
        let mut text = format!("listener {} 127.0.0.1\nallow_anonymous true\npersistence false\n", self.port);
        if let (Some(port), Some(tls)) = (self.tls_port, &self.tls) {
            text += &format!(
                "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {}\n",
                tls.cafile.display(),
                tls.certfile.display(),
                tls.keyfile.display(),
                tls.require_certificate
            );
        }
        std::fs::write(&conf, text).unwrap();
        let bin =
            std::env::var_os("HOMESEC_MOSQUITTO").map(PathBuf::from).unwrap_or_else(|| "/usr/sbin/mosquitto".into());
        let log = std::fs::File::create(self.dir.path().join("mosquitto.log")).unwrap();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} (apt-get install mosquitto): {e}", bin.display()));
        self.child = Some(child);
        for port in std::iter::once(self.port).chain(self.tls_port) {
            wait_for("mosquitto to listen", Duration::from_secs(10), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).ok()
            });
        }
    }

    /// SIGKILL: the broker vanishes, its sockets are reset.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal (e.g. `STOP` to freeze the broker, `CONT` to thaw it).
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("broker running").id();
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap().success();
        assert!(ok, "kill -{sig} {pid} failed");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_ref() {
            // a frozen broker must be thawed to die cleanly
            let _ = Command::new("kill").arg("-CONT").arg(c.id().to_string()).status();
        }
        self.stop();
    }
}

/// A received message: topic, payload, retained flag.
pub type Message = (String, Vec<u8>, bool);

/// An MQTT subscriber that collects every message it gets.
pub struct Subscriber {
    pub messages: Arc<Mutex<Vec<Message>>>,
    _thread: std::thread::JoinHandle<()>,
}

impl Subscriber {
    /// Subscribes to `filters`; returns once the broker acknowledged the subscription.
    pub fn connect(port: u16, filters: &[&str]) -> Subscriber {
        use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
        let mut opts = MqttOptions::new(format!("test-sub-{}", free_port()), "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_max_packet_size(10 * 1024 * 1024, 10 * 1024 * 1024);
        let (client, mut conn) = Client::new(opts, 100);
        for f in filters {
            client.subscribe(*f, QoS::AtLeastOnce).unwrap();
        }
        let messages = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let m = messages.clone();
        let n = filters.len();
        let thread = std::thread::spawn(move || {
            let _client = client;
            let mut acks = 0;
            for ev in conn.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        acks += 1;
                        if acks == n {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        m.lock().unwrap().push((p.topic.clone(), p.payload.to_vec(), p.retain));
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(10)).expect("subscription acknowledged");
        Subscriber { messages, _thread: thread }
    }

    /// JSON payloads received on `topic`.
    pub fn json_on(&self, topic: &str) -> Vec<serde_json::Value> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _, _)| t == topic)
            .filter_map(|(_, p, _)| serde_json::from_slice(p).ok())
            .collect()
    }

    pub fn topics(&self) -> Vec<String> {
        self.messages.lock().unwrap().iter().map(|(t, _, _)| t.clone()).collect()
    }
}

/// The `homesec` daemon running on a config of the test's.
pub struct Daemon {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub api_port: u16,
    child: Option<Child>,
    log: PathBuf,
    env: Vec<(String, String)>,
}

impl Daemon {
    /// Writes `config` (with `{api_port}` replaced) into `dir` and starts the daemon.
    pub fn start(dir: &Path, config: &str, env: &[(&str, &str)]) -> Daemon {
        let api_port = free_port();
        let path = dir.join("homesec.yaml");
        std::fs::write(&path, config.replace("{api_port}", &api_port.to_string())).unwrap();
        let mut d = Daemon {
            dir: dir.to_path_buf(),
            config: path,
            api_port,
            child: None,
            log: dir.join("daemon.log"),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        d.restart();
        d
    }

    /// Sets an environment variable for the next [`Daemon::restart`].
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_homesec"));
        cmd.args(["run", "--config"]).arg(&self.config).env("HOMESEC_LOG", "info,homesec=debug");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap();
        self.child = Some(child);
        let port = self.api_port;
        wait_for("the daemon's API", Duration::from_secs(60), || {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("daemon exited with {status}:\n{}", self.log_text());
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(40) {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    pub fn get(&self, path: &str) -> Option<(u16, serde_json::Value)> {
        self.get_with_key(path, None)
    }

    /// `GET path` with an `X-API-Key` header when `key` is given.
    pub fn get_with_key(&self, path: &str, key: Option<&str>) -> Option<(u16, serde_json::Value)> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.api_port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let auth = key.map(|k| format!("X-API-Key: {k}\r\n")).unwrap_or_default();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n{auth}\r\n").ok()?;
        let mut buf = String::new();
        std::io::Read::read_to_string(&mut stream, &mut buf).ok()?;
        let (head, body) = buf.split_once("\r\n\r\n")?;
        let code = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, serde_json::from_str(body).unwrap_or(serde_json::Value::Null)))
    }

    /// `GET /metrics`, parsed by a Prometheus text-format parser, with the
    /// response's content type.
    pub fn metrics(&self) -> (String, Scrape) {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.api_port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(stream, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
        let mut buf = String::new();
        std::io::Read::read_to_string(&mut stream, &mut buf).unwrap();
        let (head, body) = buf.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "{head}");
        let content_type = head
            .lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-type")))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default();
        let lines = body.lines().map(|l| Ok(l.to_owned()));
        (content_type, Scrape(prometheus_parse::Scrape::parse(lines).unwrap()))
    }

    /// Clip records from the API, keyed by status.
    pub fn clips(&self) -> Vec<serde_json::Value> {
        self.get("/api/v1/clips?limit=1000").and_then(|(_, v)| v["clips"].as_array().cloned()).unwrap_or_default()
    }

    /// The derived status of one clip, once the API lists it.
    pub fn status_of(&self, clip_id: &str) -> Option<String> {
        self.clips()
            .into_iter()
            .find(|c| c["clip"]["clip_id"] == clip_id)
            .and_then(|c| c["status"].as_str().map(str::to_owned))
    }

    pub fn inbox(&self) -> PathBuf {
        self.dir.join("inbox")
    }

    /// Drops a file into the watched folder the way a camera would: written
    /// under a hidden name, then renamed.
    pub fn drop_clip(&self, src: &Path, name: &str) {
        std::fs::create_dir_all(self.inbox()).unwrap();
        let tmp = self.inbox().join(format!(".{name}.tmp"));
        std::fs::copy(src, &tmp).unwrap();
        std::fs::rename(&tmp, self.inbox().join(name)).unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One request the fake VLM got.
#[derive(Debug, Clone)]
pub struct VlmRequest {
    pub authorization: Option<String>,
    pub body: serde_json::Value,
}

/// A local OpenAI-compatible chat-completions server that records requests and
/// answers with `answer` (the JSON the model "returns") after `delay`.
pub struct FakeVlm {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<VlmRequest>>>,
    _rt: tokio::runtime::Runtime,
}

impl FakeVlm {
    pub fn start(answer: serde_json::Value, delay: Duration) -> FakeVlm {
        use axum::routing::post;
        use axum::{Json, Router, http::HeaderMap};
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let requests: Arc<Mutex<Vec<VlmRequest>>> = Arc::default();
        let recorded = requests.clone();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = Router::new().route(
            "/v1/chat/completions",
            post(move |headers: HeaderMap, Json(body): Json<serde_json::Value>| {
                let recorded = recorded.clone();
                let answer = answer.clone();
                async move {
                    recorded.lock().unwrap().push(VlmRequest {
                        authorization: headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned),
                        body,
                    });
                    tokio::time::sleep(delay).await;
                    Json(serde_json::json!({
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "model": "test-vlm",
                        "choices": [{
                            "index": 0,
                            "finish_reason": "stop",
                            "message": { "role": "assistant", "content": answer.to_string(), "refusal": null }
                        }],
                        "usage": { "prompt_tokens": 1234, "completion_tokens": 56, "total_tokens": 1290 }
                    }))
                }
            }),
        );
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeVlm { port, requests, _rt: rt }
    }
}

impl Subscriber {
    /// JSON payloads received on any topic starting with `prefix`.
    pub fn json_on_prefix(&self, prefix: &str) -> Vec<serde_json::Value> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _, _)| t.starts_with(prefix))
            .filter_map(|(_, p, _)| serde_json::from_slice(p).ok())
            .collect()
    }
}

/// A parsed `/metrics` answer.
pub struct Scrape(pub prometheus_parse::Scrape);

impl Scrape {
    /// The value of the sample `name` whose labels include `labels` (a
    /// histogram's `_count` and `_sum` are samples of their own).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        use prometheus_parse::Value;
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .find_map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
                _ => None,
            })
    }

    /// [`Scrape::value`], or a panic naming the sample and listing what there is.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or_else(|| {
            let names: std::collections::BTreeSet<_> = self.0.samples.iter().map(|s| s.metric.as_str()).collect();
            panic!("no sample {name}{labels:?} in /metrics; it has {names:?}")
        })
    }
}
