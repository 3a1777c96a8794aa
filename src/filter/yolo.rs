//! YOLO object filter through ONNX Runtime (placeholder until implemented).
// TEMPORARY STUB so the crate compiles while this module is written; replace all of it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct YoloConfig {}
impl crate::config::PluginConfig for YoloConfig {
    fn validate(&self, _v: &mut crate::config::Validator<'_>) {}
}
pub struct YoloFilter;
#[async_trait::async_trait]
impl crate::filter::ObjectFilter for YoloFilter {
    fn name(&self) -> &str {
        "stub"
    }
    async fn detect(&self, _v: &std::path::Path) -> Result<crate::filter::FilterOutput, crate::filter::FilterError> {
        Err(crate::filter::FilterError::WorkerGone)
    }
}
pub fn build(
    _c: YoloConfig,
    _x: &crate::plugins::PluginContext,
) -> Result<YoloFilter, crate::plugins::PluginBuildError> {
    Ok(YoloFilter)
}
