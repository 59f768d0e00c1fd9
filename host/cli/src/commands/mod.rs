//! One module per `cairn` subcommand.

pub mod plugins;
