//! Typed config.
mod issues;
pub use issues::{ConfigIssue, PluginConfig, Validator};
