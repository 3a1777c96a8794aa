//! The `vlm.config` block of the `openai` backend, its defaults and validation.

use serde::Deserialize;

use crate::plugin::{PluginConfig, Validator};

pub const DEFAULT_BASE_PROMPT: &str = "You review short clips from a home security camera for the homeowner. \
Describe what happens factually and concisely: who or what appears (people, vehicles, animals, packages), \
what they do and where they go. Judge the security risk: low for ordinary activity (residents, visitors, \
deliveries, passers-by, animals, weather), medium for unusual behaviour worth a look (lingering, looking into \
windows or cars, trying doors, someone at night), high for signs of intrusion, tampering, theft, violence or \
danger. Do not guess identities. Set requires_review when you are unsure, the view is unclear, or the risk is \
medium or high.";

/// The `vlm.config` block of the `openai` backend.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// API root; the request goes to `{base_url}/chat/completions`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Model name as the endpoint knows it (e.g. `gpt-4o-mini`, `qwen2.5-vl-7b`).
    pub model: String,
    /// Env var with the API key; leave unset for local servers that need none.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Whole-request timeout (connect + upload + answer).
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
    /// Frames sent per clip, spread evenly over it.
    #[serde(default = "default_max_frames")]
    pub max_frames: u32,
    /// Longer side of each frame, in pixels.
    #[serde(default = "default_max_size")]
    pub max_size: u32,
    /// JPEG quality (1-100).
    #[serde(default = "default_quality")]
    pub quality: u8,
    /// The allowed values of `activity_type`.
    #[serde(default = "default_activity_types")]
    pub activity_types: Vec<String>,
    #[serde(default = "default_base_prompt")]
    pub base_prompt: String,
    #[serde(default)]
    pub temperature: Option<f64>,
}

fn default_base_url() -> String {
    "https://api.openai.com/v1".into()
}
fn default_timeout_s() -> f64 {
    60.0
}
fn default_max_frames() -> u32 {
    8
}
fn default_max_size() -> u32 {
    1024
}
fn default_quality() -> u8 {
    85
}
pub fn default_activity_types() -> Vec<String> {
    ["delivery", "doorbell", "person_at_door", "person_passing", "vehicle", "animal", "suspicious", "unknown"]
        .into_iter()
        .map(String::from)
        .collect()
}
fn default_base_prompt() -> String {
    DEFAULT_BASE_PROMPT.into()
}

impl OpenAiConfig {
    /// A config with every default and this model (tests, `notify-test`).
    pub fn with_model(model: impl Into<String>) -> Self {
        Self {
            base_url: default_base_url(),
            model: model.into(),
            api_key_env: None,
            timeout_s: default_timeout_s(),
            max_frames: default_max_frames(),
            max_size: default_max_size(),
            quality: default_quality(),
            activity_types: default_activity_types(),
            base_prompt: default_base_prompt(),
            temperature: None,
        }
    }

    pub(super) fn endpoint(&self) -> String {
        format!("{}/chat/completions", self.base_url.trim_end_matches('/'))
    }
}

impl PluginConfig for OpenAiConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        match reqwest::Url::parse(&self.base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            Ok(u) => v.error("base_url", format!("must be an http(s) URL, not {}", u.scheme())),
            Err(e) => v.error("base_url", format!("is not a URL: {e}")),
        }
        v.check(!self.model.trim().is_empty(), "model", "must not be empty");
        if let Some(env) = &self.api_key_env {
            if env.trim().is_empty() {
                v.error("api_key_env", "must name an environment variable (or be left out)");
            } else {
                v.require_env("api_key_env", env);
            }
        }
        v.check(
            self.timeout_s.is_finite() && self.timeout_s > 0.0 && self.timeout_s <= 600.0,
            "timeout_s",
            format!("must be > 0 and at most 600 (got {})", self.timeout_s),
        );
        v.check((1..=64).contains(&self.max_frames), "max_frames", format!("must be 1-64 (got {})", self.max_frames));
        v.check((64..=4096).contains(&self.max_size), "max_size", format!("must be 64-4096 (got {})", self.max_size));
        v.check((1..=100).contains(&self.quality), "quality", format!("must be 1-100 (got {})", self.quality));
        if self.activity_types.is_empty() {
            v.error("activity_types", "must list at least one activity type");
        }
        for (i, a) in self.activity_types.iter().enumerate() {
            if a.trim().is_empty() || a.trim() != a {
                v.error(&format!("activity_types[{i}]"), "must be a non-empty name without surrounding spaces");
            } else if self.activity_types[..i].iter().any(|b| b.eq_ignore_ascii_case(a)) {
                v.error(&format!("activity_types[{i}]"), format!("`{a}` is listed twice"));
            }
        }
        v.check(!self.base_prompt.trim().is_empty(), "base_prompt", "must not be empty");
        if let Some(t) = self.temperature {
            v.check(t.is_finite() && (0.0..=2.0).contains(&t), "temperature", format!("must be 0-2 (got {t})"));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugin::ConfigIssue;

    fn issues(cfg: &OpenAiConfig) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let locate = |_: &str| None;
        cfg.validate(&mut Validator::new("vlm.config", &mut issues, &locate));
        issues
    }

    #[test]
    fn config_defaults_and_required_model() {
        let cfg: OpenAiConfig = serde_json::from_value(json!({ "model": "gpt-4o-mini" })).expect("parse");
        assert_eq!(cfg, OpenAiConfig::with_model("gpt-4o-mini"));
        assert_eq!(cfg.base_url, "https://api.openai.com/v1");
        assert_eq!((cfg.timeout_s, cfg.max_frames, cfg.max_size, cfg.quality), (60.0, 8, 1024, 85));
        assert_eq!(cfg.activity_types.len(), 8);
        assert!(issues(&cfg).is_empty());
        assert!(serde_json::from_value::<OpenAiConfig>(json!({})).is_err(), "model is required");
        assert!(serde_json::from_value::<OpenAiConfig>(json!({ "model": "m", "modle": "x" })).is_err());
        let int: OpenAiConfig = serde_json::from_value(json!({ "model": "m", "timeout_s": 30 })).expect("integer");
        assert_eq!(int.timeout_s, 30.0);
        assert_eq!(cfg.endpoint(), "https://api.openai.com/v1/chat/completions");
        let slash = OpenAiConfig { base_url: "http://127.0.0.1:8080/v1/".into(), ..cfg };
        assert_eq!(slash.endpoint(), "http://127.0.0.1:8080/v1/chat/completions");
    }

    #[test]
    fn every_problem_is_reported() {
        let cfg = OpenAiConfig {
            base_url: "ftp://x".into(),
            model: " ".into(),
            api_key_env: Some("HOMESEC_TEST_SURELY_UNSET_KEY".into()),
            timeout_s: 0.0,
            max_frames: 0,
            max_size: 10,
            quality: 0,
            activity_types: vec!["a".into(), "A".into(), " ".into()],
            base_prompt: "".into(),
            temperature: Some(3.0),
        };
        let paths: Vec<String> = issues(&cfg).into_iter().map(|i| i.path).collect();
        for p in [
            "base_url",
            "model",
            "api_key_env",
            "timeout_s",
            "max_frames",
            "max_size",
            "quality",
            "activity_types[1]",
            "activity_types[2]",
            "base_prompt",
            "temperature",
        ] {
            assert!(paths.contains(&format!("vlm.config.{p}")), "missing {p} in {paths:?}");
        }
    }
}
