//! OpenAI-compatible VLM analyzer (placeholder until implemented).
