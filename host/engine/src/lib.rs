//! `cairn-engine`: wires plugins, Graph connections, repositories and sinks into backup and
//! restore runs.

pub mod backup;
pub mod diff;
pub mod keys;
pub mod live;
pub mod registry;
pub mod restore;
pub mod setup;
pub mod sink;

pub use registry::{PluginRef, PluginRegistry};
pub use sink::{SinkBackend, StoreCapability};
