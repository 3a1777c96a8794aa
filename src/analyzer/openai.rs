//! OpenAI-compatible VLM analyzer (placeholder until implemented).
// TEMPORARY STUB so the crate compiles while this module is written; replace all of it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct OpenAiConfig {}
impl crate::config::PluginConfig for OpenAiConfig {
    fn validate(&self, _v: &mut crate::config::Validator<'_>) {}
}
pub struct OpenAiAnalyzer;
#[async_trait::async_trait]
impl crate::analyzer::VlmAnalyzer for OpenAiAnalyzer {
    fn name(&self) -> &str {
        "stub"
    }
    async fn analyze(
        &self,
        _c: &crate::domain::Clip,
        _f: &crate::domain::FilterResult,
    ) -> Result<crate::domain::AnalysisResult, crate::analyzer::VlmError> {
        Err(crate::analyzer::VlmError::Refused("stub".into()))
    }
}
pub fn build(
    _c: OpenAiConfig,
    _x: &crate::plugins::PluginContext,
) -> Result<OpenAiAnalyzer, crate::plugins::PluginBuildError> {
    Ok(OpenAiAnalyzer)
}
