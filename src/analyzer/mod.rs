//! VLM analyzer: turns a clip into a structured risk assessment.

pub mod openai;

use async_trait::async_trait;

use crate::domain::{AnalysisResult, Clip, FilterResult};

#[derive(Debug, thiserror::Error)]
pub enum VlmError {
    #[error("cannot prepare frames from {path}")]
    Frames {
        path: String,
        #[source]
        source: crate::media::MediaError,
    },
    #[error("request to {endpoint} failed")]
    Http {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{endpoint} answered HTTP {status}: {body}")]
    Status { endpoint: String, status: u16, body: String },
    #[error("the model refused to answer: {0}")]
    Refused(String),
    #[error("malformed answer: {0}")]
    Malformed(String),
}

impl VlmError {
    pub fn is_transient(&self) -> bool {
        match self {
            VlmError::Frames { .. } => false,
            VlmError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => true,
        }
    }
}

#[async_trait]
pub trait VlmAnalyzer: Send + Sync {
    fn name(&self) -> &str;
    /// Frames the model is shown per clip (live cameras keep this many).
    fn max_frames(&self) -> u32;
    async fn analyze(&self, clip: &Clip, filter: &FilterResult) -> Result<AnalysisResult, VlmError>;
    async fn shutdown(&self) {}
}
