//! The plugin's configuration, handed over once by the host through `configure`.

use std::sync::OnceLock;

use serde::de::DeserializeOwned;

use crate::PluginError;

static CONFIG: OnceLock<serde_json::Value> = OnceLock::new();

/// Stores the configuration (called by the export macros' `configure`).
pub fn set_config(json: &str) -> Result<(), PluginError> {
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| PluginError::Config(format!("configuration is not valid JSON: {e}")))?;
    // A second `configure` with the same config is harmless; a different one is a host bug.
    if let Err(value) = CONFIG.set(value) {
        if CONFIG.get() != Some(&value) {
            return Err(PluginError::Config(
                "configure was called twice with different configurations".into(),
            ));
        }
    }
    Ok(())
}

/// The plugin's configuration, deserialised into `T`. Fields absent from the manifest take
/// `T`'s serde defaults; an empty configuration is `{}`.
pub fn config<T: DeserializeOwned>() -> Result<T, PluginError> {
    let value = CONFIG
        .get()
        .cloned()
        .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
    serde_json::from_value(value).map_err(|e| PluginError::Config(e.to_string()))
}
