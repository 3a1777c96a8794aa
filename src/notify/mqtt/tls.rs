//! MQTT over TLS: the rustls client config from the `tls` block and its
//! checks at config time (the shared pieces are in [`crate::tls`]).

use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;

use super::config::MqttTlsConfig;
use crate::plugin::{PluginContext, Validator};
use crate::tls::{self, Check, Peer};

/// One problem with the `tls` block: the key it is about and what is wrong.
type Problem = (&'static str, String);

/// `server_name` as rustls needs it.
pub(super) fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.trim().to_owned()).map_err(|_| format!("`{name}` is not a valid DNS name or IP address"))
}

/// Reads the block's files at config-check time; every problem is reported on its key.
pub(super) fn check_files(cfg: &MqttTlsConfig, ctx: &PluginContext, v: &mut Validator<'_>) {
    if !cfg.enabled {
        return;
    }
    // The shape check reports a certificate without a key (and the reverse) and
    // an invalid server name already.
    if let Err(problems) = build(cfg, ctx, false) {
        for (key, msg) in problems {
            v.error(key, msg);
        }
    }
}

/// The rustls client config of the `tls` block (which must be enabled).
pub(super) fn client_config(cfg: &MqttTlsConfig, ctx: &PluginContext) -> Result<Arc<ClientConfig>, Vec<Problem>> {
    build(cfg, ctx, true)
}

/// `shape`: also report what [`MqttTlsConfig`]'s shape check does.
fn build(cfg: &MqttTlsConfig, ctx: &PluginContext, shape: bool) -> Result<Arc<ClientConfig>, Vec<Problem>> {
    let mut problems = Vec::new();
    let roots = match &cfg.ca_file {
        Some(p) => tls::ca_roots(&ctx.resolve(p)).map_err(|e| problems.push(("ca_file", e))).ok(),
        None => Some(tls::system_roots()),
    };
    let name = match &cfg.server_name {
        Some(n) => match server_name(n) {
            Ok(name) => Some(name),
            Err(e) => {
                // (the shape check reports it too)
                if shape {
                    problems.push(("server_name", e));
                }
                return Err(problems);
            }
        },
        None => None,
    };
    let client = match (&cfg.client_cert_file, &cfg.client_key_file) {
        (Some(c), Some(k)) => {
            let certs = tls::certificates(&ctx.resolve(c)).map_err(|e| problems.push(("client_cert_file", e))).ok();
            let key = tls::private_key(&ctx.resolve(k)).map_err(|e| problems.push(("client_key_file", e))).ok();
            certs.zip(key)
        }
        (None, None) => None,
        (cert, _) => {
            // A certificate without its key or the reverse (the shape check reports it too).
            if shape {
                problems.push(match cert {
                    Some(_) => ("client_key_file", "is required when client_cert_file is set".into()),
                    None => ("client_cert_file", "is required when client_key_file is set".into()),
                });
            }
            return Err(problems);
        }
    };
    let Some(roots) = roots else { return Err(problems) };
    if !problems.is_empty() {
        return Err(problems);
    }

    let verifier = tls::verifier(roots, Check::Full, name).map_err(|e| vec![("ca_file", e)])?;
    let config = tls::client_config(verifier, client).map_err(|e| vec![("client_key_file", e)])?;
    Ok(Arc::new(config))
}

/// The broker, as TLS failures name it.
pub(super) const BROKER: Peer = Peer {
    name: "the broker",
    ca: "tls.ca_file",
    server_name: "host or tls.server_name",
    client_cert: "tls.client_cert_file",
};
