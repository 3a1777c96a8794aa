//! Collecting config problems so that `validate` can list every one at once.

use std::fmt;

use serde::de::DeserializeOwned;

/// One problem in the config, with its YAML path (`filter.config.min_confidence`)
/// and, where known, its line.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigIssue {
    pub path: String,
    pub line: Option<u64>,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() { "(top level)" } else { &self.path };
        match self.line {
            Some(line) => write!(f, "{path} (line {line}): {}", self.message),
            None => write!(f, "{path}: {}", self.message),
        }
    }
}

/// Validation context for one config block: prefixes field names with the block's
/// YAML path and collects the problems found.
pub struct Validator<'a> {
    path: String,
    issues: &'a mut Vec<ConfigIssue>,
    locate: &'a dyn Fn(&str) -> Option<u64>,
}

impl<'a> Validator<'a> {
    pub fn new(
        path: impl Into<String>,
        issues: &'a mut Vec<ConfigIssue>,
        locate: &'a dyn Fn(&str) -> Option<u64>,
    ) -> Self {
        Self { path: path.into(), issues, locate }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The full YAML path of `field` in this block.
    pub fn field_path(&self, field: &str) -> String {
        match (self.path.is_empty(), field.is_empty()) {
            (_, true) => self.path.clone(),
            (true, false) => field.to_owned(),
            (false, false) => format!("{}.{field}", self.path),
        }
    }

    /// Records a problem with `field` (relative to this block; "" for the block).
    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        let path = self.field_path(field);
        let line = (self.locate)(&path);
        self.issues.push(ConfigIssue { path, line, message: message.into() });
    }

    /// A validator for a nested block (`field` relative to this one).
    pub fn nested(&mut self, field: &str) -> Validator<'_> {
        let path = self.field_path(field);
        Validator { path, issues: self.issues, locate: self.locate }
    }

    /// Reads the secret named by `field` (whose value is `env_name`) from the
    /// environment; records a problem when it is unset or empty.
    pub fn require_env(&mut self, field: &str, env_name: &str) -> Option<String> {
        match std::env::var(env_name) {
            Ok(v) if !v.is_empty() => Some(v),
            Ok(_) => {
                self.error(field, format!("environment variable {env_name} is empty"));
                None
            }
            Err(_) => {
                self.error(field, format!("environment variable {env_name} is not set"));
                None
            }
        }
    }

    /// Parses a plugin's `config` block (a YAML value) into its typed config,
    /// recording a problem at the exact field path when it does not fit.
    pub fn parse<T: DeserializeOwned>(&mut self, value: &serde_json::Value) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let inner = e.path().to_string();
                let field = if inner == "." { String::new() } else { inner };
                self.error(&field, e.inner().to_string());
                None
            }
        }
    }

    pub fn check(&mut self, ok: bool, field: &str, message: impl Into<String>) {
        if !ok {
            self.error(field, message);
        }
    }
}

/// A plugin's own config: deserialised from its `config` block, then checked.
pub trait PluginConfig: DeserializeOwned {
    /// Semantic checks (ranges, files, env vars); report through `v`.
    fn validate(&self, v: &mut Validator<'_>);
}
