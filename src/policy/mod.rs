//! Alert policy: decides from the filter and VLM results whether to notify.

pub mod default;
pub mod noop;

use crate::domain::{AlertDecision, AnalysisResult, CameraName, FilterResult, RiskLevel};

pub trait AlertPolicy: Send + Sync {
    fn decide(&self, camera: &CameraName, filter: &FilterResult, analysis: Option<&AnalysisResult>) -> AlertDecision;

    /// [`AlertPolicy::decide`] with the camera's minimum risk level set at run
    /// time (Home Assistant), which wins over the policy's own when given.
    fn decide_with_min_risk(
        &self,
        camera: &CameraName,
        filter: &FilterResult,
        analysis: Option<&AnalysisResult>,
        min_risk: Option<RiskLevel>,
    ) -> AlertDecision {
        let _ = min_risk;
        self.decide(camera, filter, analysis)
    }

    /// Whether confirmed objects of `classes`, seen live while the camera still
    /// records, are worth an early alert: its reason, e.g. `detected=person (early)`.
    fn early_alert(&self, camera: &CameraName, classes: &[String]) -> Option<String> {
        let _ = (camera, classes);
        None
    }

    /// Classes whose detection alone can make this camera alert (the clip filter
    /// stops sampling once one is confirmed).
    fn notify_classes(&self, camera: &CameraName) -> Vec<String> {
        let _ = camera;
        Vec::new()
    }

    /// Seconds an alert of this camera stays open after the last clip that
    /// updated it (the cooldown); 0: every alert is new.
    fn cooldown_s(&self, camera: &CameraName) -> u64 {
        let _ = camera;
        0
    }
}
