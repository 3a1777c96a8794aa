//! Home Assistant MQTT discovery (placeholder until implemented).
