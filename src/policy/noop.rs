//! A policy that never alerts (record and analyse only).

use serde::Deserialize;

use super::AlertPolicy;
use crate::domain::{AlertDecision, AnalysisResult, CameraName, FilterResult};
use crate::plugin::{PluginConfig, Validator};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoopPolicyConfig {}

impl PluginConfig for NoopPolicyConfig {
    fn validate(&self, _v: &mut Validator<'_>) {}
}

pub struct NoopPolicy;

impl AlertPolicy for NoopPolicy {
    fn decide(&self, _: &CameraName, _: &FilterResult, _: Option<&AnalysisResult>) -> AlertDecision {
        AlertDecision { notify: false, reason: "alerts disabled (noop policy)".into() }
    }
}
