//! What the command-line tools print: reports built on the library for the
//! `homesec` subcommands that analyse files.

pub mod cleanup;
pub mod motion;
pub mod sync;
pub mod zones;
