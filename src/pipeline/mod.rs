//! The pipeline.
#[derive(Clone)]
pub struct ClipSink;
