//! PostgreSQL for tests: a database of the test's own on the machine's server
//! (127.0.0.1:5432), or a private cluster (initdb + pg_ctl on a free port) that
//! a test may stop and start.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::peers::{free_port, wait_for};

const BIN: &str = "/usr/lib/postgresql/15/bin";
/// The private cluster's superuser password.
pub const PASSWORD: &str = "pg-test-Secret-42";

fn bin(name: &str) -> PathBuf {
    let dir = std::env::var("HOMESEC_PG_BIN").unwrap_or_else(|_| BIN.into());
    Path::new(&dir).join(name)
}

/// A command run as the `postgres` user when the test runs as root (initdb and
/// the server refuse root).
fn as_postgres(program: &Path) -> Command {
    if rustix_is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn rustix_is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// Runs SQL; returns the rows as `|`-separated lines.
pub fn psql(port: u16, db: &str, password: Option<&str>, sql: &str) -> Result<String, String> {
    let mut cmd = Command::new("psql");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", db, "-tAq", "-v", "ON_ERROR_STOP=1"])
        .args(["-c", sql]);
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A database of the test's own on the machine's server, dropped at the end.
pub struct Db {
    pub name: String,
    pub port: u16,
}

impl Db {
    pub fn create(tag: &str) -> Db {
        let name = format!("homesec_test_{tag}_{}_{}", std::process::id(), fastrand::u32(..));
        psql(5432, "postgres", None, &format!("CREATE DATABASE {name}")).expect("create the test database");
        Db { name, port: 5432 }
    }

    pub fn dsn(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{}", self.port, self.name)
    }

    pub fn query(&self, sql: &str) -> String {
        psql(self.port, &self.name, None, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// A count, or -1 when the query fails (e.g. before the daemon has
    /// created the table: tests wait on counts).
    pub fn count(&self, sql: &str) -> i64 {
        psql(self.port, &self.name, None, sql).ok().and_then(|n| n.parse().ok()).unwrap_or(-1)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = psql(5432, "postgres", None, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

/// A private cluster (password auth) on a free port; stopped and removed at the end.
pub struct Cluster {
    pub port: u16,
    dir: tempfile::TempDir,
    running: bool,
    /// Server options beyond the port and socket (TLS).
    options: String,
}

impl Cluster {
    /// Initialised, not started.
    pub fn init() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        let _ = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status();
        let out = as_postgres(&bin("initdb"))
            .args(["-U", "postgres", "--auth=scram-sha-256", "--no-sync", "-D"])
            .arg(&data)
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        Cluster { port: free_port(), dir, running: false, options: String::new() }
    }

    /// `ssl = on` with this certificate and key, and TLS connections only
    /// (`hostssl` in pg_hba.conf): a plain connection is refused.
    pub fn enable_tls(&mut self, cert: &Path, key: &Path) {
        let (crt, k) = (self.dir.path().join("server.crt"), self.dir.path().join("server.key"));
        std::fs::copy(cert, &crt).unwrap();
        std::fs::copy(key, &k).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
        let _ = Command::new("chown").args(["postgres:postgres"]).arg(&crt).arg(&k).status();
        let hba = "local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\n";
        std::fs::write(self.dir.path().join("data/pg_hba.conf"), hba).unwrap();
        self.options = format!(" -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}", crt.display(), k.display());
    }

    pub fn dsn(&self, password: &str) -> String {
        format!("postgresql://postgres:{password}@127.0.0.1:{}/postgres", self.port)
    }

    pub fn start(&mut self) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("pg.log");
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off{}",
            self.port,
            self.dir.path().display(),
            self.options
        );
        let out = as_postgres(&bin("pg_ctl"))
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-o", &opts, "start"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&out.stderr));
        self.running = true;
        let port = self.port;
        wait_for("the private cluster", Duration::from_secs(30), || {
            psql(port, "postgres", Some(PASSWORD), "SELECT 1").ok()
        });
    }

    pub fn stop(&mut self) {
        if self.running {
            let data = self.dir.path().join("data");
            let _ = as_postgres(&bin("pg_ctl")).args(["-w", "-m", "fast", "-D"]).arg(&data).arg("stop").output();
            self.running = false;
        }
    }

    pub fn query(&self, sql: &str) -> Result<String, String> {
        psql(self.port, "postgres", Some(PASSWORD), sql)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}
