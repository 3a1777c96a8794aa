//! redb store.
#[derive(Debug, thiserror::Error)]
#[error("store")]
pub struct StoreError;
