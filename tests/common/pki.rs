//! Certificates made at run time with the `openssl` command line: two CAs
//! (`ca`, and `other_ca` that nobody trusts), a broker certificate for
//! `localhost` / 127.0.0.1 and client certificates signed by each CA. Every
//! certificate is valid for two days, except `expired_server` (the broker's
//! names, valid for one day in 2020); keys are P-256, PEM (PKCS#8).

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let pki = Pki { dir: tempfile::tempdir().unwrap() };
        pki.ca("ca", "HomeSec Test CA");
        pki.ca("other_ca", "Someone Else's CA");
        pki.leaf("server", "ca", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth");
        pki.leaf("client", "ca", "homesec-testbox", "extendedKeyUsage=clientAuth");
        pki.leaf("rogue_client", "other_ca", "homesec-rogue", "extendedKeyUsage=clientAuth");
        pki.expired_server();
        // A Mosquitto started as root reads its files as the `mosquitto` user.
        use std::os::unix::fs::PermissionsExt;
        let readable = |p: &Path, mode| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        readable(pki.dir.path(), 0o755);
        for entry in std::fs::read_dir(pki.dir.path()).unwrap() {
            readable(&entry.unwrap().path(), 0o644);
        }
        pki
    }

    /// `<name>.pem` (certificate) or `<name>.key` (private key), e.g. `path("ca.pem")`.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn ca(&self, name: &str, cn: &str) {
        openssl(
            self.dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-subj",
                &format!("/CN={cn}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
    }

    fn leaf(&self, name: &str, ca: &str, cn: &str, extensions: &str) {
        let ext = format!("{name}.ext");
        std::fs::write(
            self.path(&ext),
            format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{extensions}\n"),
        )
        .unwrap();
        self.key_and_request(name, cn);
        openssl(
            self.dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &ext,
            ],
        );
    }
}

impl Pki {
    /// `<name>.key` (a new P-256 key) and `<name>.csr` for `CN=<cn>`.
    fn key_and_request(&self, name: &str, cn: &str) {
        let (key, csr, subject) = (format!("{name}.key"), format!("{name}.csr"), format!("/CN={cn}"));
        openssl(
            self.dir.path(),
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &subject,
            ],
        );
    }

    /// A server certificate like `server` that expired in 2020 (`openssl ca`
    /// is the command that takes explicit dates).
    fn expired_server(&self) {
        let dir = self.dir.path();
        std::fs::write(
            dir.join("ca.cnf"),
            "[ca]\ndefault_ca = this\n[this]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial.txt\n\
             default_md = sha256\npolicy = any\nunique_subject = no\n[any]\ncommonName = supplied\n",
        )
        .unwrap();
        std::fs::write(dir.join("index.txt"), "").unwrap();
        std::fs::write(dir.join("serial.txt"), "1000\n").unwrap();
        self.key_and_request("expired_server", "localhost");
        openssl(
            dir,
            &[
                "ca",
                "-batch",
                "-config",
                "ca.cnf",
                "-cert",
                "ca.pem",
                "-keyfile",
                "ca.key",
                "-in",
                "expired_server.csr",
                "-out",
                "expired_server.pem",
                "-startdate",
                "20200101000000Z",
                "-enddate",
                "20200102000000Z",
                "-extfile",
                "server.ext",
                "-notext",
            ],
        );
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (apt-get install openssl): {e}"));
    assert!(out.status.success(), "openssl {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
}
