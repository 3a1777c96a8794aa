//! Noop policy.
