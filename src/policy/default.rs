//! Default policy.
