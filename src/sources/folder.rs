//! Folder source.
