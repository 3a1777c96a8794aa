//! MQTT notifier (placeholder until implemented).
