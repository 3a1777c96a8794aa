//! HomeSec: a home-security camera daemon. Clips from cameras go through a
//! durable local queue, an object filter, a VLM and an alert policy to notifiers.

pub mod analyzer;
pub mod api;
pub mod app;
pub mod backoff;
pub mod cli;
pub mod clock;
pub mod config;
pub mod controls;
pub mod domain;
pub mod filter;
pub mod fsutil;
pub mod health;
pub mod homeassistant;
pub mod media;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod plugin;
pub mod plugins;
pub mod policy;
pub mod retention;
pub mod sdnotify;
pub mod sources;
pub mod storage;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod tls;
pub mod update;
pub mod web;
