//! VLM analyzer for any OpenAI-compatible chat-completions endpoint (OpenAI,
//! vLLM, llama.cpp server, Ollama, LM Studio, …).
//!
//! One request per clip: a system prompt (the configured `base_prompt` plus the
//! answer rules), a user message with the clip context (camera, duration, what the
//! object filter found and when) and up to `max_frames` JPEG frames as base64 data
//! URLs, and `response_format: json_schema` (strict) so the model answers with
//! exactly the fields of [`AnalysisResult`]. The answer is checked again here:
//! local servers do not all enforce the schema.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use super::{VlmAnalyzer, VlmError};
use crate::domain::{AnalysisResult, Clip, FilterResult, RiskLevel, TimelineEntry};
use crate::media::{self, Jpeg, MediaError};
use crate::plugin::{PluginBuildError, PluginContext};
use crate::plugin::{PluginConfig, Validator};

/// Name of the JSON schema sent in `response_format`.
pub const SCHEMA_NAME: &str = "homesec_clip_analysis";

/// How much of an error body goes into [`VlmError::Status`].
const BODY_EXCERPT_CHARS: usize = 300;

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

    fn endpoint(&self) -> String {
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

/// An API key; never printed.
#[derive(Clone)]
struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// The analyzer. Cheap to share: one pooled HTTP client.
#[derive(Debug)]
pub struct OpenAiAnalyzer {
    cfg: OpenAiConfig,
    endpoint: String,
    key: Option<ApiKey>,
    http: reqwest::Client,
}

fn build_error(msg: impl Into<String>) -> PluginBuildError {
    PluginBuildError::new("vlm", "openai", msg.into())
}

/// Builds the analyzer: reads the API key from `api_key_env` (when set) and prepares
/// the HTTP client with the configured timeout.
pub fn build(cfg: OpenAiConfig, ctx: &PluginContext) -> Result<OpenAiAnalyzer, PluginBuildError> {
    let _ = ctx; // nothing box-specific: the clip carries its camera
    if cfg.model.trim().is_empty() {
        return Err(build_error("model must not be empty"));
    }
    if cfg.activity_types.is_empty() {
        return Err(build_error("activity_types must not be empty"));
    }
    if !(cfg.timeout_s.is_finite() && cfg.timeout_s > 0.0) {
        return Err(build_error("timeout_s must be > 0"));
    }
    reqwest::Url::parse(&cfg.base_url).map_err(|e| build_error(format!("base_url is not a URL: {e}")))?;
    let key = match &cfg.api_key_env {
        None => None,
        Some(env) => match std::env::var(env) {
            Ok(k) if !k.is_empty() => Some(ApiKey(k)),
            _ => return Err(build_error(format!("environment variable {env} (api_key_env) is not set"))),
        },
    };
    let timeout = Duration::from_secs_f64(cfg.timeout_s.min(3600.0));
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("homesec/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| PluginBuildError::new("vlm", "openai", e))?;
    let endpoint = cfg.endpoint();
    Ok(OpenAiAnalyzer { cfg, endpoint, key, http })
}

/// The JSON schema of the answer (strict mode: every property required, no others).
pub fn response_schema(activity_types: &[String]) -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["risk_level", "activity_type", "summary", "entities_timeline", "requires_review"],
        "properties": {
            "risk_level": { "type": "string", "enum": ["low", "medium", "high"] },
            "activity_type": { "type": "string", "enum": activity_types },
            "summary": { "type": "string", "description": "One or two sentences for a phone notification." },
            "entities_timeline": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["ts_s", "entity", "description"],
                    "properties": {
                        "ts_s": { "type": "number", "description": "Seconds from the start of the clip." },
                        "entity": { "type": "string" },
                        "description": { "type": "string" }
                    }
                }
            },
            "requires_review": { "type": "boolean" }
        }
    })
}

fn system_prompt(cfg: &OpenAiConfig) -> String {
    format!(
        "{}\n\nAnswer only with a JSON object with these fields: risk_level (low, medium or high); \
         activity_type (exactly one of: {}); summary (one or two plain sentences); entities_timeline \
         (what each person, vehicle or animal does, in order, with ts_s in seconds from the start of the clip, \
         read from the frame times); requires_review (true or false).",
        cfg.base_prompt.trim(),
        cfg.activity_types.join(", ")
    )
}

/// The clip context the model gets before the frames.
pub fn clip_context(clip: &Clip, filter: &FilterResult, frames: usize) -> String {
    let mut s = format!(
        "Camera: {}\nClip: {} ({:.1} s long, starting {})\n",
        clip.camera,
        clip.clip_id,
        clip.duration_s(),
        crate::domain::rfc3339(clip.start_ms)
    );
    if filter.detections.is_empty() && filter.detected_classes.is_empty() {
        s.push_str(&format!(
            "Object detector ({}, {} frames checked): nothing detected.\n",
            filter.model, filter.sampled_frames
        ));
    } else {
        s.push_str(&format!("Object detector ({}, {} frames checked) found:\n", filter.model, filter.sampled_frames));
        for d in &filter.detections {
            s.push_str(&format!("- {} (confidence {:.2}) at {:.1} s\n", d.class, d.confidence, d.ts_s));
        }
        for c in &filter.detected_classes {
            if !filter.detections.iter().any(|d| &d.class == c) {
                s.push_str(&format!("- {c}\n"));
            }
        }
    }
    s.push_str(&format!("{frames} frames of the clip follow, in order, each preceded by its time."));
    s
}

/// The chat-completions request body.
pub fn request_body(cfg: &OpenAiConfig, clip: &Clip, filter: &FilterResult, frames: &[Jpeg]) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut content = vec![json!({ "type": "text", "text": clip_context(clip, filter, frames.len()) })];
    for (i, f) in frames.iter().enumerate() {
        content.push(json!({ "type": "text", "text": format!("Frame {} at {:.1} s", i + 1, f.ts_s) }));
        content.push(json!({
            "type": "image_url",
            "image_url": { "url": format!("data:image/jpeg;base64,{}", b64.encode(&f.bytes)) }
        }));
    }
    let mut body = json!({
        "model": cfg.model,
        "messages": [
            { "role": "system", "content": system_prompt(cfg) },
            { "role": "user", "content": content }
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": { "name": SCHEMA_NAME, "strict": true, "schema": response_schema(&cfg.activity_types) }
        }
    });
    if let (Some(t), Some(obj)) = (cfg.temperature, body.as_object_mut()) {
        obj.insert("temperature".into(), json!(t));
    }
    body
}

fn malformed(msg: impl Into<String>) -> VlmError {
    VlmError::Malformed(msg.into())
}

/// The text of a message's `content`: a string, or text parts.
fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let text: String = parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect();
            (!text.is_empty()).then_some(text)
        }
        _ => None,
    }
}

/// Strips a Markdown code fence some local models put around JSON.
fn strip_fence(s: &str) -> &str {
    let t = s.trim();
    let Some(rest) = t.strip_prefix("```") else { return t };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

fn str_field<'a>(obj: &'a serde_json::Map<String, Value>, key: &str) -> Result<&'a str, VlmError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(malformed(format!("`{key}` must be a string, got {}", kind(other)))),
        None => Err(malformed(format!("`{key}` is missing"))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads the answer JSON (the assistant message's content) into an [`AnalysisResult`].
pub fn parse_analysis(content: &str, activity_types: &[String], model: &str) -> Result<AnalysisResult, VlmError> {
    let text = strip_fence(content);
    let value: Value = serde_json::from_str(text)
        .map_err(|e| malformed(format!("content is not JSON ({e}): {}", excerpt(text, 120))))?;
    let Value::Object(obj) = value else {
        return Err(malformed(format!("content is {}, not a JSON object", kind(&value))));
    };
    let risk_level = match str_field(&obj, "risk_level")?.trim().to_ascii_lowercase().as_str() {
        "low" => RiskLevel::Low,
        "medium" => RiskLevel::Medium,
        "high" => RiskLevel::High,
        other => return Err(malformed(format!("risk_level `{other}` is not low, medium or high"))),
    };
    let activity = str_field(&obj, "activity_type")?.trim();
    let activity_type = activity_types.iter().find(|a| a.eq_ignore_ascii_case(activity)).cloned().ok_or_else(|| {
        malformed(format!(
            "activity_type `{activity}` is not one of the configured types ({})",
            activity_types.join(", ")
        ))
    })?;
    let summary = str_field(&obj, "summary")?.trim().to_owned();
    if summary.is_empty() {
        return Err(malformed("summary is empty"));
    }
    let requires_review = match obj.get("requires_review") {
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(malformed(format!("`requires_review` must be a boolean, got {}", kind(other)))),
        None => return Err(malformed("`requires_review` is missing")),
    };
    let items = match obj.get("entities_timeline") {
        Some(Value::Array(items)) => items,
        Some(other) => return Err(malformed(format!("`entities_timeline` must be an array, got {}", kind(other)))),
        None => return Err(malformed("`entities_timeline` is missing")),
    };
    let mut entities_timeline = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(e) = item else {
            return Err(malformed(format!("entities_timeline[{i}] is {}, not an object", kind(item))));
        };
        let ts_s = match e.get("ts_s") {
            Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0) as f32,
            Some(other) => {
                return Err(malformed(format!("entities_timeline[{i}].ts_s must be a number, got {}", kind(other))));
            }
            None => return Err(malformed(format!("entities_timeline[{i}].ts_s is missing"))),
        };
        let entity = str_field(e, "entity").map_err(|err| malformed(format!("entities_timeline[{i}]: {err}")))?;
        let description =
            str_field(e, "description").map_err(|err| malformed(format!("entities_timeline[{i}]: {err}")))?;
        entities_timeline.push(TimelineEntry { ts_s, entity: entity.to_owned(), description: description.to_owned() });
    }
    Ok(AnalysisResult {
        risk_level,
        activity_type,
        summary,
        entities_timeline,
        requires_review,
        model: model.to_owned(),
    })
}

/// Reads a chat-completions response body: `choices[0].message` → refusal or analysis.
/// `configured_model` is used when the response does not name its model.
pub fn parse_response(
    body: &[u8],
    activity_types: &[String],
    configured_model: &str,
) -> Result<AnalysisResult, VlmError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| malformed(format!("response body is not JSON: {e}")))?;
    let choice =
        v.get("choices").and_then(Value::as_array).and_then(|c| c.first()).ok_or_else(|| match v.get("error") {
            // some servers answer 200 with an error object
            Some(err) => {
                let msg = err.get("message").and_then(Value::as_str).map_or_else(|| err.to_string(), str::to_owned);
                malformed(format!("response has no choices but an error: {}", excerpt(&msg, 200)))
            }
            None => malformed("response has no choices"),
        })?;
    let message = choice.get("message").ok_or_else(|| malformed("choices[0] has no message"))?;
    if let Some(refusal) = message.get("refusal").and_then(Value::as_str).filter(|r| !r.trim().is_empty()) {
        return Err(VlmError::Refused(refusal.to_owned()));
    }
    let content = message.get("content").and_then(content_text).ok_or_else(|| {
        let reason = choice.get("finish_reason").and_then(Value::as_str).unwrap_or("unknown");
        malformed(format!("message has no content (finish_reason {reason})"))
    })?;
    let model = v.get("model").and_then(Value::as_str).filter(|m| !m.is_empty()).unwrap_or(configured_model);
    parse_analysis(&content, activity_types, model).map_err(|e| match (e, choice.get("finish_reason")) {
        (VlmError::Malformed(m), Some(Value::String(r))) if r == "length" => {
            malformed(format!("{m} (the answer was cut off: finish_reason length)"))
        }
        (e, _) => e,
    })
}

/// The first `n` characters of `s` on one line.
fn excerpt(s: &str, n: usize) -> String {
    let one_line: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let trimmed = one_line.trim();
    if trimmed.chars().count() > n {
        format!("{}…", trimmed.chars().take(n).collect::<String>())
    } else {
        trimmed.to_owned()
    }
}

impl OpenAiAnalyzer {
    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn frames(&self, clip: &Clip) -> Result<Vec<Jpeg>, VlmError> {
        let path = PathBuf::from(&clip.local_path);
        let (max_frames, max_size, quality) = (self.cfg.max_frames, self.cfg.max_size, self.cfg.quality);
        let frames_err = |source| VlmError::Frames { path: clip.local_path.clone(), source };
        let frames = tokio::task::spawn_blocking(move || media::sample_jpegs(&path, max_frames, max_size, quality))
            .await
            .map_err(|e| {
                frames_err(MediaError::Decode {
                    path: clip.local_path.clone(),
                    reason: format!("frame sampling task failed: {e}"),
                })
            })?
            .map_err(frames_err)?;
        if frames.is_empty() {
            return Err(frames_err(MediaError::Decode {
                path: clip.local_path.clone(),
                reason: "no frame could be sampled".into(),
            }));
        }
        Ok(frames)
    }

    /// Keeps the key out of error bodies that echo it.
    fn redact(&self, s: String) -> String {
        match &self.key {
            Some(ApiKey(k)) if k.len() >= 4 => s.replace(k.as_str(), "***"),
            _ => s,
        }
    }
}

#[async_trait]
impl VlmAnalyzer for OpenAiAnalyzer {
    fn name(&self) -> &str {
        "openai"
    }

    async fn analyze(&self, clip: &Clip, filter: &FilterResult) -> Result<AnalysisResult, VlmError> {
        let started = Instant::now();
        let frames = self.frames(clip).await?;
        let frame_bytes: usize = frames.iter().map(|f| f.bytes.len()).sum();
        let frame_count = frames.len();
        let body = request_body(&self.cfg, clip, filter, &frames);
        drop(frames);
        debug!(camera = %clip.camera, clip_id = %clip.clip_id, frames = frame_count, frame_bytes,
            prep_ms = started.elapsed().as_millis() as u64, "VLM request prepared");

        let http_err = |source| VlmError::Http { endpoint: self.endpoint.clone(), source };
        let mut req = self.http.post(&self.endpoint).json(&body);
        if let Some(ApiKey(k)) = &self.key {
            req = req.bearer_auth(k);
        }
        let sent = Instant::now();
        let resp = req.send().await.map_err(http_err)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(http_err)?;
        if !status.is_success() {
            let text = self.redact(String::from_utf8_lossy(&bytes).into_owned());
            let err = VlmError::Status {
                endpoint: self.endpoint.clone(),
                status: status.as_u16(),
                body: excerpt(&text, BODY_EXCERPT_CHARS),
            };
            warn!(camera = %clip.camera, clip_id = %clip.clip_id, status = status.as_u16(), "VLM request failed");
            return Err(err);
        }
        let result = parse_response(&bytes, &self.cfg.activity_types, &self.cfg.model);
        let usage = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| v.get("usage").cloned());
        let tokens = |k: &str| usage.as_ref().and_then(|u| u.get(k)).and_then(Value::as_u64).unwrap_or(0);
        match &result {
            Ok(a) => info!(
                camera = %clip.camera, clip_id = %clip.clip_id, model = %a.model,
                risk_level = %a.risk_level, activity_type = %a.activity_type, requires_review = a.requires_review,
                prompt_tokens = tokens("prompt_tokens"), completion_tokens = tokens("completion_tokens"),
                request_ms = sent.elapsed().as_millis() as u64, total_ms = started.elapsed().as_millis() as u64,
                "VLM analysis done"
            ),
            Err(e) => warn!(camera = %clip.camera, clip_id = %clip.clip_id, error = %e, "VLM answer rejected"),
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Detection;
    use crate::plugin::ConfigIssue;

    fn types() -> Vec<String> {
        default_activity_types()
    }

    fn issues(cfg: &OpenAiConfig) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let locate = |_: &str| None;
        cfg.validate(&mut Validator::new("vlm.config", &mut issues, &locate));
        issues
    }

    fn good_answer() -> String {
        json!({
            "risk_level": "low",
            "activity_type": "delivery",
            "summary": "A courier leaves a parcel at the door.",
            "entities_timeline": [{ "ts_s": 1.5, "entity": "person", "description": "walks to the door" }],
            "requires_review": false
        })
        .to_string()
    }

    fn completion(content: Value) -> Vec<u8> {
        json!({
            "id": "chatcmpl-1",
            "model": "gpt-4o-2024-08-06",
            "choices": [{ "index": 0, "finish_reason": "stop",
                "message": { "role": "assistant", "content": content, "refusal": null } }]
        })
        .to_string()
        .into_bytes()
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

    #[test]
    fn schema_requires_every_field_and_lists_the_activity_types() {
        let s = response_schema(&types());
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["required"].as_array().map(Vec::len), Some(5));
        assert_eq!(s["properties"]["activity_type"]["enum"], json!(types()));
        assert_eq!(s["properties"]["risk_level"]["enum"], json!(["low", "medium", "high"]));
        assert_eq!(s["properties"]["entities_timeline"]["items"]["required"], json!(["ts_s", "entity", "description"]));
    }

    #[test]
    fn request_body_carries_context_frames_and_schema() {
        let clip = Clip {
            clip_id: "front_1700000000".into(),
            camera: "front".into(),
            local_path: "/x.mp4".into(),
            start_ms: 1_700_000_000_000,
            end_ms: 1_700_000_012_500,
            source_backend: "folder".into(),
        };
        let filter = FilterResult {
            detected_classes: vec!["person".into()],
            confidence: 0.9,
            model: "yolox_nano".into(),
            sampled_frames: 20,
            detections: vec![Detection { class: "person".into(), confidence: 0.9, bbox: [0.0; 4], ts_s: 3.25 }],
        };
        let frames = vec![
            Jpeg { ts_s: 0.0, width: 2, height: 2, bytes: vec![0xFF, 0xD8, 0xFF, 0xD9] },
            Jpeg { ts_s: 6.0, width: 2, height: 2, bytes: vec![0xFF, 0xD8, 0xFF, 0xD9] },
        ];
        let cfg = OpenAiConfig { temperature: Some(0.2), ..OpenAiConfig::with_model("m") };
        let body = request_body(&cfg, &clip, &filter, &frames);
        assert_eq!(body["model"], "m");
        assert_eq!(body["temperature"], 0.2);
        assert_eq!(body["response_format"]["type"], "json_schema");
        assert_eq!(body["response_format"]["json_schema"]["strict"], true);
        let content = body["messages"][1]["content"].as_array().expect("parts");
        let text = content[0]["text"].as_str().expect("text");
        assert!(text.contains("Camera: front"), "{text}");
        assert!(text.contains("12.5 s long"), "{text}");
        assert!(text.contains("person (confidence 0.90) at 3.2 s"), "{text}");
        let images: Vec<&str> = content.iter().filter_map(|p| p["image_url"]["url"].as_str()).collect();
        assert_eq!(images, vec!["data:image/jpeg;base64,/9j/2Q==", "data:image/jpeg;base64,/9j/2Q=="]);
        assert!(body["messages"][0]["content"].as_str().expect("system").contains("person_passing"));
        assert!(OpenAiConfig::with_model("m").temperature.is_none());
        assert!(request_body(&OpenAiConfig::with_model("m"), &clip, &filter, &frames).get("temperature").is_none());
    }

    #[test]
    fn a_valid_answer_becomes_an_analysis() {
        let a = parse_response(&completion(json!(good_answer())), &types(), "cfg-model").expect("ok");
        assert_eq!(a.risk_level, RiskLevel::Low);
        assert_eq!(a.activity_type, "delivery");
        assert_eq!(a.entities_timeline.len(), 1);
        assert_eq!(a.entities_timeline[0].ts_s, 1.5);
        assert!(!a.requires_review);
        assert_eq!(a.model, "gpt-4o-2024-08-06");
        // content as parts, fenced, and no model in the response
        let fenced = format!("```json\n{}\n```", good_answer());
        let body = json!({ "choices": [{ "message": { "content": [{ "type": "text", "text": fenced }] } }] });
        let a = parse_response(body.to_string().as_bytes(), &types(), "cfg-model").expect("ok");
        assert_eq!(a.model, "cfg-model");
    }

    #[test]
    fn bad_answers_say_what_is_wrong() {
        let cases: Vec<(Value, &str)> = vec![
            (json!("Sure! The clip shows a person."), "not JSON"),
            (json!("[1,2]"), "not a JSON object"),
            (json!(good_answer().replace("delivery", "dancing")), "activity_type `dancing`"),
            (json!(good_answer().replace("\"low\"", "\"severe\"")), "risk_level `severe`"),
            (json!(good_answer().replace("false", "\"no\"")), "requires_review"),
            (json!(good_answer().replace("1.5", "\"soon\"")), "entities_timeline[0].ts_s"),
            (
                json!(r#"{"risk_level":"low","activity_type":"delivery","summary":"x","requires_review":true}"#),
                "entities_timeline",
            ),
            (Value::Null, "no content"),
        ];
        for (content, expected) in cases {
            match parse_response(&completion(content.clone()), &types(), "m") {
                Err(VlmError::Malformed(m)) => assert!(m.contains(expected), "{m:?} should mention {expected:?}"),
                other => panic!("{content}: expected Malformed, got {other:?}"),
            }
        }
        let err = br#"{"error": {"message": "model not loaded", "type": "server_error"}}"#;
        match parse_response(err, &types(), "m") {
            Err(VlmError::Malformed(m)) => assert!(m.contains("model not loaded"), "{m}"),
            other => panic!("expected Malformed, got {other:?}"),
        }
        for body in [&b"<html>502</html>"[..], br#"{"choices": []}"#, br#"{"choices": [{}]}"#] {
            assert!(matches!(parse_response(body, &types(), "m"), Err(VlmError::Malformed(_))));
        }
    }

    #[test]
    fn refusals_are_reported() {
        let body = json!({ "choices": [{ "message": { "content": null, "refusal": "I can't help with that." } }] });
        match parse_response(body.to_string().as_bytes(), &types(), "m") {
            Err(VlmError::Refused(r)) => assert_eq!(r, "I can't help with that."),
            other => panic!("expected Refused, got {other:?}"),
        }
    }

    #[test]
    fn excerpts_are_short_and_single_line() {
        assert_eq!(excerpt("a\nb", 10), "a b");
        assert_eq!(excerpt(&"x".repeat(400), 300).chars().count(), 301);
    }

    #[test]
    fn the_key_is_never_printed() {
        let k = ApiKey("sk-secret".into());
        assert!(!format!("{k:?}").contains("secret"));
    }
}
