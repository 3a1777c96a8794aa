//! A config file for a daemon under test: the parts every test shares (data
//! under the test's directory, the real detector model, MQTT on the test's
//! broker, the API on a free port) and a call per part a test changes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Builds the YAML of a daemon config. `{api_port}` is left for
/// [`super::peers::Daemon::start`] to fill in.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    device_id: String,
    dir: PathBuf,
    cameras: Vec<String>,
    storage: Option<String>,
    model: String,
    filter: Vec<String>,
    vlm: Option<String>,
    policy: Option<String>,
    broker: Option<u16>,
    server: Vec<String>,
    sections: Vec<String>,
}

impl ConfigBuilder {
    /// A box called `device_id` keeping its data in `dir/data`, with the YOLOX
    /// filter and the API on a free port.
    pub fn new(device_id: &str, dir: &Path) -> Self {
        Self {
            device_id: device_id.into(),
            dir: dir.to_path_buf(),
            cameras: Vec::new(),
            storage: None,
            model: "yolox_nano_416.onnx".into(),
            filter: Vec::new(),
            vlm: None,
            policy: None,
            broker: None,
            server: vec!["port: {api_port}".into()],
            sections: Vec::new(),
        }
    }

    /// A camera whose clips are dropped into `dir/inbox` (polled fast for tests).
    pub fn folder_camera(self, name: &str) -> Self {
        let inbox = self.dir.join("inbox");
        // The camera's folder exists, as a user's would (a missing one is unhealthy).
        std::fs::create_dir_all(&inbox).unwrap();
        let source =
            format!("backend: folder\nconfig:\n  path: {}\n  poll_interval_s: 0.2\n  settle_s: 0.5", inbox.display());
        self.camera(name, &source)
    }

    /// A camera with its `source` block as YAML (unindented).
    pub fn camera(mut self, name: &str, source: &str) -> Self {
        let mut text = format!("  - name: {name}\n    source:\n");
        for line in source.lines() {
            let _ = writeln!(text, "      {line}");
        }
        self.cameras.push(text);
        self
    }

    /// The `storage` section's body (unindented); default: `backend: local`.
    pub fn storage(mut self, body: &str) -> Self {
        self.storage = Some(body.into());
        self
    }

    /// The detector model (a file of the test data's models), default yolox_nano_416.
    pub fn model(mut self, file: &str) -> Self {
        self.model = file.to_owned();
        self
    }

    /// Extra keys of the YOLO filter's config block, one per line (`classes: [person]`).
    pub fn filter(mut self, keys: &[&str]) -> Self {
        self.filter.extend(keys.iter().map(|k| (*k).to_owned()));
        self
    }

    /// The `vlm` section's body (unindented).
    pub fn vlm(mut self, body: &str) -> Self {
        self.vlm = Some(body.into());
        self
    }

    /// The `alert_policy` section's body (unindented).
    pub fn policy(mut self, body: &str) -> Self {
        self.policy = Some(body.into());
        self
    }

    /// Alerts to the MQTT broker on 127.0.0.1:`port`.
    pub fn mqtt(mut self, port: u16) -> Self {
        self.broker = Some(port);
        self
    }

    /// Another key of the `server` section (`api_key_env: KEY`).
    pub fn server(mut self, line: &str) -> Self {
        self.server.push(line.into());
        self
    }

    /// A whole top-level section as YAML (`update:\n  confirm_timeout_s: 10`).
    pub fn section(mut self, yaml: &str) -> Self {
        self.sections.push(yaml.trim_end().into());
        self
    }

    pub fn build(&self) -> String {
        let indent = |body: &str, by: &str| body.lines().map(|l| format!("{by}{l}\n")).collect::<String>();
        let mut y = String::new();
        let _ = writeln!(y, "device_id: {}", self.device_id);
        let _ = writeln!(y, "data_dir: {}/data", self.dir.display());
        y.push_str("cameras:\n");
        self.cameras.iter().for_each(|c| y.push_str(c));
        y.push_str("storage:\n");
        y.push_str(&indent(self.storage.as_deref().unwrap_or("backend: local"), "  "));
        y.push_str("filter:\n  backend: yolo\n  config:\n");
        let _ = writeln!(y, "    model_path: {}", super::model(&self.model).display());
        let _ = writeln!(y, "    ort_library: {}", super::ort_library().display());
        self.filter.iter().for_each(|k| y.push_str(&indent(k, "    ")));
        if let Some(vlm) = &self.vlm {
            y.push_str("vlm:\n");
            y.push_str(&indent(vlm, "  "));
        }
        if let Some(policy) = &self.policy {
            y.push_str("alert_policy:\n");
            y.push_str(&indent(policy, "  "));
        }
        if let Some(port) = self.broker {
            let _ =
                writeln!(y, "notifiers:\n  - backend: mqtt\n    config:\n      host: 127.0.0.1\n      port: {port}");
        }
        y.push_str("server:\n");
        self.server.iter().for_each(|l| y.push_str(&indent(l, "  ")));
        for s in &self.sections {
            y.push_str(s);
            y.push('\n');
        }
        y
    }
}
