//! Alert policy: decides from the filter and VLM results whether to notify.

pub mod default;
pub mod noop;

use crate::domain::{AlertDecision, AnalysisResult, CameraName, FilterResult};

pub trait AlertPolicy: Send + Sync {
    fn decide(&self, camera: &CameraName, filter: &FilterResult, analysis: Option<&AnalysisResult>) -> AlertDecision;
}
