//! MQTT notifier (placeholder until implemented).
// TEMPORARY STUB so the crate compiles while this module is written; replace all of it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct MqttConfig {}
impl crate::config::PluginConfig for MqttConfig {
    fn validate(&self, _v: &mut crate::config::Validator<'_>) {}
}
pub struct MqttNotifier;
#[async_trait::async_trait]
impl crate::notify::Notifier for MqttNotifier {
    fn name(&self) -> &str { "mqtt" }
    async fn send(&self, _a: &crate::domain::Alert, _s: Option<&[u8]>) -> Result<(), crate::notify::NotifyError> { Err(crate::notify::NotifyError::NotConnected("stub".into())) }
    async fn ping(&self) -> bool { false }
}
pub async fn build(_c: MqttConfig, _x: &crate::plugins::PluginContext) -> Result<MqttNotifier, crate::plugins::PluginBuildError> { Ok(MqttNotifier) }
