//! Postgres over TLS, as libpq's DSN parameters ask for it: `sslmode`
//! (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`), `sslrootcert`
//! (a PEM file of CAs, or `system` for the built-in Mozilla roots), and
//! `sslcert` / `sslkey` for a client certificate. The driver does not know the
//! last four, so they are taken out of the DSN here and become a rustls config.

use std::path::Path;

use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::tls::{self, Check, Peer};

/// Postgres, as TLS failures name it.
pub(super) const POSTGRES: Peer = Peer {
    name: "Postgres",
    ca: "sslrootcert in the DSN",
    server_name: "the DSN's host, or use sslmode=verify-ca",
    client_cert: "sslcert and sslkey in the DSN",
};

const KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// The TLS parameters of a DSN.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Params {
    pub mode: Option<String>,
    pub root_cert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

/// The DSN without the TLS parameters, and those parameters. Both forms:
/// `postgresql://…?sslmode=verify-full&sslrootcert=/etc/ca.pem` and
/// `host=db sslmode=verify-full sslrootcert=/etc/ca.pem`.
pub(super) fn split(dsn: &str) -> (String, Params) {
    let mut params = Params::default();
    let mut take = |key: &str, value: String| match key {
        "sslmode" => params.mode = Some(value),
        "sslrootcert" => params.root_cert = Some(value),
        "sslcert" => params.cert = Some(value),
        _ => params.key = Some(value),
    };
    let trimmed = dsn.trim();
    let rest = if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        match trimmed.split_once('?') {
            None => trimmed.to_owned(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&') {
                    match pair.split_once('=') {
                        Some((k, v)) if KEYS.contains(&k) => {
                            take(k, percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned())
                        }
                        _ => kept.push(pair),
                    }
                }
                if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) }
            }
        }
    } else {
        let mut kept = Vec::new();
        for token in trimmed.split_whitespace() {
            match token.split_once('=') {
                Some((k, v)) if KEYS.contains(&k) => take(k, v.trim_matches('\'').to_owned()),
                _ => kept.push(token),
            }
        }
        kept.join(" ")
    };
    (rest, params)
}

/// The driver's mode and, unless TLS is off, the connector: or what is wrong,
/// naming the parameter (never the DSN).
pub(super) fn connector(p: &Params) -> Result<(SslMode, Option<MakeRustlsConnect>), String> {
    let mode = p.mode.as_deref().unwrap_or("prefer");
    let (ssl_mode, check) = match mode {
        "disable" => {
            if p.root_cert.is_some() || p.cert.is_some() || p.key.is_some() {
                return Err("sslmode=disable with sslrootcert, sslcert or sslkey: TLS is off".into());
            }
            return Ok((SslMode::Disable, None));
        }
        // As libpq: encrypted but not authenticated, unless a root
        // certificate is given to `require`.
        "prefer" => (SslMode::Prefer, Check::Nothing),
        "require" if p.root_cert.is_some() => (SslMode::Require, Check::ChainOnly),
        "require" => (SslMode::Require, Check::Nothing),
        "verify-ca" => (SslMode::Require, Check::ChainOnly),
        "verify-full" => (SslMode::Require, Check::Full),
        other => {
            return Err(format!(
                "sslmode={other} is not supported: use disable, prefer, require, verify-ca or verify-full"
            ));
        }
    };
    let roots = match p.root_cert.as_deref() {
        None | Some("system") => tls::system_roots(),
        Some(path) => tls::ca_roots(Path::new(path)).map_err(|e| format!("sslrootcert: {e}"))?,
    };
    let client = match (&p.cert, &p.key) {
        (Some(c), Some(k)) => Some((
            tls::certificates(Path::new(c)).map_err(|e| format!("sslcert: {e}"))?,
            tls::private_key(Path::new(k)).map_err(|e| format!("sslkey: {e}"))?,
        )),
        (None, None) => None,
        (Some(_), None) => return Err("sslcert needs sslkey".into()),
        (None, Some(_)) => return Err("sslkey needs sslcert".into()),
    };
    let verifier = tls::verifier(roots, check, None).map_err(|e| format!("sslrootcert: {e}"))?;
    let config = tls::client_config(verifier, client).map_err(|e| format!("sslkey: {e}"))?;
    Ok((ssl_mode, Some(MakeRustlsConnect::new(config))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_both_dsn_forms() {
        let (rest, p) = split(
            "postgresql://u:p@db:5432/fleet?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&sslcert=/c.pem&sslkey=/k.pem",
        );
        assert_eq!(rest, "postgresql://u:p@db:5432/fleet?application_name=x");
        assert_eq!(p.mode.as_deref(), Some("verify-full"));
        assert_eq!(p.root_cert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!((p.cert.as_deref(), p.key.as_deref()), (Some("/c.pem"), Some("/k.pem")));

        let (rest, p) = split("postgresql://u@db/fleet?sslmode=require");
        assert_eq!(rest, "postgresql://u@db/fleet");
        assert_eq!(p.mode.as_deref(), Some("require"));

        let (rest, p) = split("host=db dbname=fleet sslmode=verify-ca sslrootcert='/etc/ca.pem'");
        assert_eq!(rest, "host=db dbname=fleet");
        assert_eq!(p.mode.as_deref(), Some("verify-ca"));
        assert_eq!(p.root_cert.as_deref(), Some("/etc/ca.pem"));
    }

    #[test]
    fn modes_follow_libpq() {
        let params = |mode: &str| Params { mode: Some(mode.into()), ..Params::default() };
        assert!(matches!(connector(&params("disable")), Ok((SslMode::Disable, None))));
        assert!(matches!(connector(&Params::default()), Ok((SslMode::Prefer, Some(_)))));
        for mode in ["require", "verify-ca", "verify-full"] {
            assert!(matches!(connector(&params(mode)), Ok((SslMode::Require, Some(_)))), "{mode}");
        }
        let e = connector(&params("allow")).err().unwrap();
        assert!(e.contains("sslmode=allow is not supported"), "{e}");
        let missing = Params { root_cert: Some("/nowhere/ca.pem".into()), ..params("verify-full") };
        let e = connector(&missing).err().unwrap();
        assert!(e.starts_with("sslrootcert: cannot read /nowhere/ca.pem"), "{e}");
        let half = Params { cert: Some("/c.pem".into()), ..params("require") };
        assert_eq!(connector(&half).err().unwrap(), "sslcert needs sslkey");
    }
}
