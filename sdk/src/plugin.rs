//! What every plugin implements, and a builder for its self-description.

use crate::{Permission, PermissionUse, PluginInfo, PluginKind};

/// Every plugin describes itself. Configuration arrives through [`crate::config`].
pub trait Plugin {
    /// Name, version, kinds, item kinds, config schema and the Graph permissions it needs.
    fn describe() -> PluginInfo;

    /// Called right after the host hands over the configuration: check it here so a bad
    /// configuration fails at start-up with a clear message, not at the first use.
    fn configured() -> Result<(), crate::PluginError> {
        Ok(())
    }
}

/// Builder methods for [`PluginInfo`].
pub trait PluginInfoExt: Sized {
    /// A description with no kinds yet, an empty-object config schema and no permissions.
    fn new(name: &str, version: &str, description: &str) -> Self;
    /// Declares the plugin a collector producing `item_kinds`.
    fn collector(self, item_kinds: &[&str]) -> Self;
    /// Declares the plugin a restorer of `item_kinds`.
    fn restorer(self, item_kinds: &[&str]) -> Self;
    /// Declares the plugin a sink.
    fn sink(self) -> Self;
    /// Sets the JSON Schema of the plugin's configuration.
    fn config_schema(self, schema: serde_json::Value) -> Self;
    /// Adds a Graph application permission the plugin needs.
    fn permission(self, name: &str, reason: &str, needed_for: PermissionUse) -> Self;
}

impl PluginInfoExt for PluginInfo {
    fn new(name: &str, version: &str, description: &str) -> Self {
        PluginInfo {
            name: name.into(),
            version: version.into(),
            description: description.into(),
            kinds: Vec::new(),
            item_kinds: Vec::new(),
            config_schema: r#"{"type":"object","additionalProperties":false}"#.into(),
            permissions: Vec::new(),
        }
    }

    fn collector(mut self, item_kinds: &[&str]) -> Self {
        self.add_kind(PluginKind::Collector, item_kinds);
        self
    }

    fn restorer(mut self, item_kinds: &[&str]) -> Self {
        self.add_kind(PluginKind::Restorer, item_kinds);
        self
    }

    fn sink(mut self) -> Self {
        self.add_kind(PluginKind::Sink, &[]);
        self
    }

    fn config_schema(mut self, schema: serde_json::Value) -> Self {
        self.config_schema = schema.to_string();
        self
    }

    fn permission(mut self, name: &str, reason: &str, needed_for: PermissionUse) -> Self {
        self.permissions.push(Permission {
            name: name.into(),
            reason: reason.into(),
            needed_for,
        });
        self
    }
}

trait AddKind {
    fn add_kind(&mut self, kind: PluginKind, item_kinds: &[&str]);
}

impl AddKind for PluginInfo {
    fn add_kind(&mut self, kind: PluginKind, item_kinds: &[&str]) {
        if !self.kinds.contains(&kind) {
            self.kinds.push(kind);
        }
        for k in item_kinds {
            if !self.item_kinds.iter().any(|have| have == k) {
                self.item_kinds.push((*k).to_string());
            }
        }
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __impl_plugin_guest {
    ($export:ident, $t:ty) => {
        impl $crate::bindings::exports::cairn::plugin::plugin::Guest for $export {
            fn describe() -> $crate::PluginInfo {
                <$t as $crate::Plugin>::describe()
            }
            fn configure(
                config: ::std::string::String,
            ) -> ::std::result::Result<(), $crate::PluginError> {
                $crate::__private::set_config(&config)?;
                <$t as $crate::Plugin>::configured()
            }
        }
    };
}
