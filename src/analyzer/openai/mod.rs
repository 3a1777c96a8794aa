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
use serde_json::Value;
use tracing::{debug, info, warn};

use super::{VlmAnalyzer, VlmError};
use crate::domain::{AnalysisResult, Clip, FilterResult};
use crate::media::{self, Jpeg, MediaError};
use crate::plugin::{PluginBuildError, PluginContext};

mod config;
mod request;
mod response;

pub use config::{DEFAULT_BASE_PROMPT, OpenAiConfig, default_activity_types};
pub use request::{SCHEMA_NAME, clip_context, request_body, response_schema};
pub use response::{parse_analysis, parse_response};

use response::excerpt;

/// How much of an error body goes into [`VlmError::Status`].
const BODY_EXCERPT_CHARS: usize = 300;

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

impl OpenAiAnalyzer {
    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The frames a live camera kept while it recorded the clip; else frames
    /// decoded from the clip.
    async fn frames(&self, clip: &Clip) -> Result<Vec<Jpeg>, VlmError> {
        let path = PathBuf::from(&clip.local_path);
        let (max_frames, max_size, quality) = (self.cfg.max_frames, self.cfg.max_size, self.cfg.quality);
        let frames_err = |source| VlmError::Frames { path: clip.local_path.clone(), source };
        let frames = tokio::task::spawn_blocking(move || {
            match media::read_jpegs(&crate::fsutil::frames_dir(&path)) {
                Ok(live) if !live.is_empty() => return Ok(live.into_iter().take(max_frames as usize).collect()),
                Ok(_) => {}
                Err(e) => warn!(path = %path.display(), error = %e, "cannot read the live frames; decoding the clip"),
            }
            media::sample_jpegs(&path, max_frames, max_size, quality)
        })
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

    fn max_frames(&self) -> u32 {
        self.cfg.max_frames
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
        crate::metrics::global().vlm_tokens(clip.camera.as_str(), tokens("prompt_tokens"), tokens("completion_tokens"));
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

    #[test]
    fn the_key_is_never_printed() {
        let k = ApiKey("sk-secret".into());
        assert!(!format!("{k:?}").contains("secret"));
    }
}
