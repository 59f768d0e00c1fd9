//! The collector trait and its export macro.

use serde_json::Value;

use crate::{Item, PluginError, Step, Task};

/// A collector: plans tasks, then runs each one step at a time (typically a Graph page a step).
pub trait Collector: crate::Plugin {
    /// The run's tasks. Ids must be stable from run to run.
    fn plan() -> Result<Vec<Task>, PluginError>;

    /// One step of `task`. `state` is the previous run's final state for this task (a delta
    /// link); `cursor` is this run's previous step's cursor. Must be repeatable: after a crash
    /// the host calls it again with the last checkpointed cursor.
    fn run_step(
        task: Task,
        state: Option<String>,
        cursor: Option<String>,
    ) -> Result<Step, PluginError>;
}

/// Makes a task with JSON parameters.
pub fn task(id: &str, label: &str, params: Value) -> Task {
    Task {
        id: id.into(),
        label: label.into(),
        params: params.to_string(),
    }
}

/// Makes an item from a Graph object: its `id` property is the item id and `name_field` (e.g.
/// `displayName`) the display name. The body is the object's JSON; the host canonicalises it.
pub fn item_from_json(kind: &str, object: &Value, name_field: &str) -> Result<Item, PluginError> {
    let id = object
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| PluginError::Other(format!("a {kind} object has no string `id`")))?;
    let display_name = object
        .get(name_field)
        .and_then(Value::as_str)
        .unwrap_or_default();
    Ok(Item {
        kind: kind.into(),
        id: id.into(),
        display_name: display_name.into(),
        body: object.to_string(),
        parts: Vec::new(),
    })
}

#[doc(hidden)]
#[macro_export]
macro_rules! __impl_collector_guest {
    ($export:ident, $t:ty) => {
        impl $crate::bindings::exports::cairn::plugin::collector::Guest for $export {
            fn plan() -> ::std::result::Result<::std::vec::Vec<$crate::Task>, $crate::PluginError> {
                <$t as $crate::Collector>::plan()
            }
            fn run_step(
                task: $crate::Task,
                state: ::std::option::Option<::std::string::String>,
                cursor: ::std::option::Option<::std::string::String>,
            ) -> ::std::result::Result<$crate::Step, $crate::PluginError> {
                <$t as $crate::Collector>::run_step(task, state, cursor)
            }
        }
    };
}

/// Exports `$t` (which implements [`crate::Plugin`] and [`Collector`]) as the component's
/// collector. Use once, at the crate root.
#[cfg(not(feature = "restorer"))]
#[macro_export]
macro_rules! export_collector {
    ($t:ty) => {
        #[doc(hidden)]
        pub struct __CairnExport;
        $crate::__impl_plugin_guest!(__CairnExport, $t);
        $crate::__impl_collector_guest!(__CairnExport, $t);
        $crate::bindings::__export_world!(__CairnExport with_types_in $crate::bindings);
    };
}
