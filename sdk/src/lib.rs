//! `cairn-sdk`: write Cairn plugins as WebAssembly components.
//!
//! A plugin crate is a `cdylib` built for `wasm32-wasip2`. It depends on this crate with the
//! features of the kinds it implements (`collector`, `sink`, `restorer`), implements
//! [`Plugin`] plus the kind traits, and calls the matching export macro:
//!
//! ```ignore
//! use cairn_sdk::prelude::*;
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn describe() -> PluginInfo {
//!         PluginInfo::new("hello", env!("CARGO_PKG_VERSION"), "Backs up the tenant's users")
//!             .collector(&["user"])
//!             .permission("User.Read.All", "read users", PermissionUse::Backup)
//!     }
//! }
//!
//! impl Collector for Hello {
//!     fn plan() -> Result<Vec<Task>, PluginError> {
//!         Ok(vec![task("users", "Users", serde_json::json!({}))])
//!     }
//!     fn run_step(_task: Task, _state: Option<String>, cursor: Option<String>) -> Result<Step, PluginError> {
//!         let page = graph::get_page(cursor.as_deref().unwrap_or("/v1.0/users?$top=999"))?;
//!         let items = page.value.iter().map(|u| item_from_json("user", u, "displayName")).collect::<Result<_, _>>()?;
//!         Ok(page.into_full_step(items))
//!     }
//! }
//!
//! cairn_sdk::export_collector!(Hello);
//! ```
//!
//! Plugin code holds no secrets and reaches Graph only through [`graph`], which the host routes
//! to the connection the manifest binds the plugin to.

#[cfg(all(feature = "collector", feature = "restorer", not(feature = "sink")))]
mod world {
    wit_bindgen::generate!({
        path: "wit",
        world: "collector-restorer-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "cairn_sdk::bindings",
    });
}
#[cfg(all(
    feature = "collector",
    not(feature = "restorer"),
    not(feature = "sink")
))]
mod world {
    wit_bindgen::generate!({
        path: "wit",
        world: "collector-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "cairn_sdk::bindings",
    });
}
#[cfg(all(
    feature = "restorer",
    not(feature = "collector"),
    not(feature = "sink")
))]
mod world {
    wit_bindgen::generate!({
        path: "wit",
        world: "restorer-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "cairn_sdk::bindings",
    });
}
#[cfg(all(
    feature = "sink",
    not(feature = "collector"),
    not(feature = "restorer")
))]
mod world {
    wit_bindgen::generate!({
        path: "wit",
        world: "sink-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "cairn_sdk::bindings",
    });
}
#[cfg(not(any(feature = "collector", feature = "sink", feature = "restorer")))]
compile_error!(
    "cairn-sdk: enable the features of the plugin kinds you implement: `collector`, `sink`, \
     `restorer` (or `collector` + `restorer`)"
);
#[cfg(all(feature = "sink", any(feature = "collector", feature = "restorer")))]
compile_error!(
    "cairn-sdk: a sink is a plugin of its own; build it as a separate crate with only the `sink` feature"
);

/// The generated WIT bindings of the world this build targets. Plugin code rarely needs them
/// directly: the SDK re-exports the types and wraps the imports.
#[doc(hidden)]
pub mod bindings {
    pub use crate::world::*;
}

mod config;
pub mod log;
mod plugin;

#[cfg(any(feature = "collector", feature = "restorer"))]
pub mod content;
#[cfg(any(feature = "collector", feature = "restorer"))]
pub mod graph;

#[cfg(feature = "collector")]
mod collector;
#[cfg(feature = "restorer")]
mod restorer;
#[cfg(feature = "sink")]
mod sink;

pub use config::config;
pub use plugin::{Plugin, PluginInfoExt};
pub use world::cairn::plugin::types::{
    ContentRef, Item, Listing, NextStep, Part, PartData, Permission, PermissionUse, PluginError,
    PluginInfo, PluginKind, Removal, Step, Task, Tombstone,
};

#[cfg(feature = "collector")]
pub use collector::{item_from_json, task, Collector};
#[cfg(feature = "restorer")]
pub use restorer::{
    current_id, record_mapping, snapshot_entries, snapshot_item, Action, ActionKind, Outcome,
    RestoreRequest, Restorer, Selected, SnapshotEntry,
};
#[cfg(feature = "sink")]
pub use sink::{BlobStore, DeleteOutcome, PutOutcome, Sink, SinkError};

/// Everything a plugin usually needs, in one `use`.
pub mod prelude {
    pub use crate::log::{debug, error, info, warn};
    pub use crate::{
        config, Item, Listing, NextStep, Part, PartData, Permission, PermissionUse, Plugin,
        PluginError, PluginInfo, PluginInfoExt, PluginKind, Removal, Step, Task, Tombstone,
    };

    #[cfg(any(feature = "collector", feature = "restorer"))]
    pub use crate::{content, graph};
    #[cfg(feature = "collector")]
    pub use crate::{item_from_json, task, Collector};
    #[cfg(feature = "restorer")]
    pub use crate::{Action, ActionKind, Outcome, RestoreRequest, Restorer, Selected};
    #[cfg(feature = "sink")]
    pub use crate::{BlobStore, Sink, SinkError};
}

/// Implementation details used by the export macros.
#[doc(hidden)]
pub mod __private {
    pub use crate::config::set_config;
}

impl From<serde_json::Error> for PluginError {
    fn from(e: serde_json::Error) -> Self {
        PluginError::Other(format!("invalid JSON: {e}"))
    }
}
