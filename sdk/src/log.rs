//! Logging into the host's run log. Messages are attributed to the plugin and task by the host.
//! Never log secrets or item contents.

use crate::world::cairn::plugin::log::{log as host_log, Level};

/// Logs at debug level.
pub fn debug(message: &str) {
    host_log(Level::Debug, message);
}

/// Logs at info level.
pub fn info(message: &str) {
    host_log(Level::Info, message);
}

/// Logs at warning level.
pub fn warn(message: &str) {
    host_log(Level::Warn, message);
}

/// Logs at error level.
pub fn error(message: &str) {
    host_log(Level::Error, message);
}
