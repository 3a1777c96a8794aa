//! The config as the status page shows it: secrets are env-var names in the
//! config, but a value that is a secret itself (a password, a token, a URL with
//! credentials or a key in its query) is replaced before it is shown.

use serde_json::Value;

/// What a hidden value reads as.
pub const HIDDEN: &str = "***";

/// Key names whose values are secrets (unless the key names an env var: `*_env`).
const SECRET_KEYS: &[&str] =
    &["password", "passwd", "pass", "secret", "token", "api_key", "apikey", "key", "credentials", "auth"];

/// Query parameters that carry secrets in URLs.
const SECRET_PARAMS: &[&str] =
    &["password", "pass", "token", "access_token", "key", "api_key", "apikey", "secret", "sig", "signature"];

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    if k.ends_with("_env") {
        return false;
    }
    SECRET_KEYS.iter().any(|s| k == *s || k.ends_with(&format!("_{s}")) || k.starts_with(&format!("{s}_")))
}

fn is_secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|s| n == *s || n.ends_with(&format!("-{s}")) || n.ends_with(&format!("_{s}")))
}

/// A URL without its user, password and secret query values.
pub fn url(text: &str) -> String {
    let no_user = crate::telemetry::redact_url(text);
    let Some((base, query)) = no_user.split_once('?') else { return no_user };
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if is_secret_param(k) => format!("{k}={HIDDEN}"),
            _ => p.to_owned(),
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

/// The value with every secret hidden.
pub fn value(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::Null => Value::Null,
                        _ if is_secret_key(&k) => Value::String(HIDDEN.into()),
                        v => value(v),
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(value).collect()),
        Value::String(s) if s.contains("://") => Value::String(url(&s)),
        v => v,
    }
}

/// The config file's YAML, redacted and written back as YAML. A file that does
/// not read gives a note, never its text.
pub fn config_yaml(text: &str) -> String {
    let parsed: Value = match serde_saphyr::from_str(text) {
        Ok(v) => v,
        Err(_) => return "# the config file could not be read again".into(),
    };
    serde_saphyr::to_string(&value(parsed)).unwrap_or_else(|_| "# the config could not be shown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_hidden_and_env_var_names_are_kept() {
        let yaml = "\
storage:
  backend: s3
  config:
    endpoint: https://user:hunter2@s3.local:9000/bucket?X-Amz-Signature=abc&region=x&token=t0k
    secret_access_key: AKIAREALSECRET
    secret_access_key_env: S3_SECRET
notifiers:
  - backend: smtp
    config:
      password: pa55word
      password_env: SMTP_PASSWORD
      api_token: tok-123
cameras:
  - name: front
    source:
      backend: rtsp
      config:
        rtsp_url: rtsp://admin:cam-pass@10.0.0.2/ch1
";
        let out = config_yaml(yaml);
        for secret in ["hunter2", "AKIAREALSECRET", "pa55word", "tok-123", "cam-pass", "t0k", "abc"] {
            assert!(!out.contains(secret), "`{secret}` shows in:\n{out}");
        }
        for kept in ["S3_SECRET", "SMTP_PASSWORD", "rtsp://***@10.0.0.2/ch1", "region=x", "front"] {
            assert!(out.contains(kept), "`{kept}` is missing from:\n{out}");
        }
    }

    #[test]
    fn unreadable_text_is_not_echoed() {
        let out = config_yaml("password: [unclosed");
        assert!(!out.contains("unclosed"), "{out}");
    }
}
