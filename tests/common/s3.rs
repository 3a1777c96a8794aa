//! A real S3-compatible server for storage tests: the `moto` server, started
//! on a free port by the test (its state lives in memory, so a restart
//! empties it, as a fresh bucket would be).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::peers::{free_port, wait_for};

/// Credentials the tests hand the daemon (moto takes any).
pub const ACCESS_KEY: &str = "AKIAHOMESECTEST00001";
pub const SECRET_KEY: &str = "homesec-test-secret-key-0123456789abcdef";
pub const ACCESS_KEY_ENV: &str = "HOMESEC_TEST_S3_KEY";
pub const SECRET_KEY_ENV: &str = "HOMESEC_TEST_S3_SECRET";

/// `HOMESEC_MOTO_SERVER`, else the venv `.ci/run` installs it into.
pub fn moto_server() -> PathBuf {
    let path = std::env::var_os("HOMESEC_MOTO_SERVER").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/homesec/venv/bin/moto_server")
    });
    assert!(
        path.is_file(),
        "moto server not found at {}: `.ci/run` installs it (moto[server] into $HOME/.cache/homesec/venv), \
         or set HOMESEC_MOTO_SERVER",
        path.display()
    );
    path
}

pub struct Moto {
    pub port: u16,
    child: Option<Child>,
    rt: tokio::runtime::Runtime,
    /// Where moto records every request it gets, when it does.
    recording: Option<tempfile::TempDir>,
}

impl Moto {
    pub fn start() -> Moto {
        Self::start_as(false)
    }

    /// A server that records every request, for [`Moto::assert_signatures_valid`].
    pub fn start_recording() -> Moto {
        Self::start_as(true)
    }

    fn start_as(record: bool) -> Moto {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let recording = record.then(|| tempfile::tempdir().unwrap());
        let mut m = Moto { port: free_port(), child: None, rt, recording };
        m.restart();
        m
    }

    /// Checks every signed request moto got against botocore, the AWS SDK's
    /// own signer (moto itself does not check signatures):
    /// `tests/s3_sigv4_check.py`. Gives how many were checked.
    pub fn assert_signatures_valid(&self) -> usize {
        self.check_signatures().unwrap_or_else(|why| panic!("signatures botocore does not agree with:\n{why}"))
    }

    /// [`Moto::assert_signatures_valid`], saying what is wrong instead of failing.
    pub fn check_signatures(&self) -> Result<usize, String> {
        let dir = self.recording.as_ref().expect("a recording moto");
        let python = moto_server().with_file_name("python");
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3_sigv4_check.py");
        let out = Command::new(python)
            .arg(script)
            .arg(dir.path().join("requests.jsonl"))
            .args([ACCESS_KEY, SECRET_KEY])
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            return Err(text);
        }
        Ok(text.lines().find_map(|l| l.strip_prefix("verified ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0))
    }

    /// Starts the server (again) on the same port, empty.
    pub fn restart(&mut self) {
        let mut cmd = Command::new(moto_server());
        if let Some(dir) = &self.recording {
            cmd.env("MOTO_ENABLE_RECORDING", "True").env("MOTO_RECORDER_FILEPATH", dir.path().join("requests.jsonl"));
        }
        let child = cmd
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let port = self.port;
        wait_for("the moto server", Duration::from_secs(30), || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn create_bucket(&self, bucket: &str) {
        let url = format!("{}/{bucket}", self.endpoint());
        let status = self.rt.block_on(async { reqwest::Client::new().put(url).send().await.unwrap().status() });
        assert!(status.is_success(), "creating bucket {bucket}: {status}");
    }

    /// A URL for `key` signed with the test's credentials (by the signing
    /// library, not by the backend under test).
    fn signed(&self, bucket: &str, key: &str, head: bool) -> String {
        use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
        let endpoint = self.endpoint().parse().unwrap();
        let bucket = Bucket::new(endpoint, UrlStyle::Path, bucket.to_owned(), "us-east-1").unwrap();
        let credentials = Credentials::new(ACCESS_KEY, SECRET_KEY);
        let expiry = Duration::from_secs(60);
        let url = if head {
            bucket.head_object(Some(&credentials), key).sign(expiry)
        } else {
            bucket.get_object(Some(&credentials), key).sign(expiry)
        };
        url.to_string()
    }

    /// The object at `key`, when it is there.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let (status, body) = self.fetch(&self.signed(bucket, key, false));
        (status == 200).then_some(body)
    }

    /// A header of the object at `key`: `etag` (`"<md5>-<parts>"` after a
    /// multipart upload), `content-type`.
    pub fn header(&self, bucket: &str, key: &str, name: &str) -> Option<String> {
        let url = self.signed(bucket, key, true);
        self.rt.block_on(async {
            let r = reqwest::Client::new().head(url).send().await.ok()?;
            r.headers().get(name)?.to_str().ok().map(str::to_owned)
        })
    }

    /// `GET url` without credentials: the status and body.
    pub fn fetch(&self, url: &str) -> (u16, Vec<u8>) {
        self.rt.block_on(async {
            let r = reqwest::Client::new().get(url).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.bytes().await.unwrap().to_vec())
        })
    }

    /// The storage section of a daemon config on `bucket` (extra keys unindented).
    pub fn storage_config(&self, bucket: &str, extra: &[&str]) -> String {
        let mut s = format!(
            "backend: s3\nconfig:\n  bucket: {bucket}\n  endpoint: {}\n  path_style: true\n  allow_http: true\n  \
             access_key_id_env: {ACCESS_KEY_ENV}\n  secret_access_key_env: {SECRET_KEY_ENV}\n  timeout_s: 5\n",
            self.endpoint()
        );
        for line in extra {
            s.push_str(&format!("  {line}\n"));
        }
        s
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}
