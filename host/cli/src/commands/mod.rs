//! One module per `cairn` subcommand.

pub mod backup;
pub mod browse;
pub mod common;
pub mod demo;
pub mod init;
pub mod maintain;
pub mod plugins;
pub mod restore;
pub mod sim;
pub mod validate;
