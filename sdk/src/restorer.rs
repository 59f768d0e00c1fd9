//! The restorer trait and its export macro.

use crate::world::cairn::plugin::snapshot as host_snapshot;
use crate::{Item, PluginError};

pub use crate::world::exports::cairn::plugin::restorer::{
    Action, ActionKind, Outcome, RestoreRequest, Selected,
};
pub use host_snapshot::Entry as SnapshotEntry;

/// A restorer: plans the restore of selected snapshot items against the live tenant, then
/// applies the plan one action at a time.
pub trait Restorer: crate::Plugin {
    /// The actions, in dependency order, each with its reason.
    fn plan(request: RestoreRequest) -> Result<Vec<Action>, PluginError>;
    /// Applies one action. Must be idempotent (report `already_done` when the effect is there).
    fn apply(action: Action) -> Result<Outcome, PluginError>;
}

/// Reads an item of the snapshot being restored.
pub fn snapshot_item(kind: &str, id: &str) -> Option<Item> {
    host_snapshot::get(kind, id)
}

/// Lists every entry of `kind` in the snapshot being restored.
pub fn snapshot_entries(kind: &str) -> Vec<SnapshotEntry> {
    host_snapshot::list(kind)
}

/// Records that `old_id` was re-created as `new_id`, for every restorer of this run.
pub fn record_mapping(kind: &str, old_id: &str, new_id: &str) {
    crate::world::cairn::plugin::remap::record_mapping(kind, old_id, new_id)
}

/// The id that `old_id` has after this restore (itself if it was not re-created).
pub fn current_id(old_id: &str) -> String {
    crate::world::cairn::plugin::remap::lookup(old_id).unwrap_or_else(|| old_id.to_string())
}

#[doc(hidden)]
#[macro_export]
macro_rules! __impl_restorer_guest {
    ($export:ident, $t:ty) => {
        impl $crate::bindings::exports::cairn::plugin::restorer::Guest for $export {
            fn plan(
                request: $crate::RestoreRequest,
            ) -> ::std::result::Result<::std::vec::Vec<$crate::Action>, $crate::PluginError> {
                <$t as $crate::Restorer>::plan(request)
            }
            fn apply(
                action: $crate::Action,
            ) -> ::std::result::Result<$crate::Outcome, $crate::PluginError> {
                <$t as $crate::Restorer>::apply(action)
            }
        }
    };
}

/// Exports `$t` as the component's restorer.
#[cfg(not(feature = "collector"))]
#[macro_export]
macro_rules! export_restorer {
    ($t:ty) => {
        #[doc(hidden)]
        pub struct __CairnExport;
        $crate::__impl_plugin_guest!(__CairnExport, $t);
        $crate::__impl_restorer_guest!(__CairnExport, $t);
        $crate::bindings::__export_world!(__CairnExport with_types_in $crate::bindings);
    };
}

/// Exports `$t` as the component's collector and restorer.
#[cfg(feature = "collector")]
#[macro_export]
macro_rules! export_collector_restorer {
    ($t:ty) => {
        #[doc(hidden)]
        pub struct __CairnExport;
        $crate::__impl_plugin_guest!(__CairnExport, $t);
        $crate::__impl_collector_guest!(__CairnExport, $t);
        $crate::__impl_restorer_guest!(__CairnExport, $t);
        $crate::bindings::__export_world!(__CairnExport with_types_in $crate::bindings);
    };
}
