//! Finding and loading plugins: bundled names or `.wasm` files, each compiled once per process.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use cairn_runtime::{LoadError, Plugin, Runtime};

/// How a manifest names a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PluginRef {
    /// A first-party plugin embedded in the binary (`age-sink`, `entra`, …).
    Bundled(String),
    /// A `.wasm` file.
    File(PathBuf),
}

impl PluginRef {
    /// `*.wasm` or anything with a path separator is a file; otherwise a bundled name.
    pub fn parse(text: &str) -> PluginRef {
        if text.ends_with(".wasm") || text.contains('/') || text.contains('\\') {
            PluginRef::File(PathBuf::from(text))
        } else {
            PluginRef::Bundled(text.to_string())
        }
    }
}

impl std::fmt::Display for PluginRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginRef::Bundled(n) => f.write_str(n),
            PluginRef::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Why a plugin could not be had.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("there is no bundled plugin `{name}`{hint}; bundled plugins: {known}")]
    UnknownBundled {
        name: String,
        hint: String,
        known: String,
    },
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// Loads plugins on first use and keeps them for the process.
pub struct PluginRegistry {
    runtime: Arc<Runtime>,
    loaded: Mutex<HashMap<PluginRef, Plugin>>,
}

impl PluginRegistry {
    pub fn new(runtime: Arc<Runtime>) -> Self {
        PluginRegistry {
            runtime,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// The runtime plugins run in.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The plugin `r`, loading it if needed.
    pub fn get(&self, r: &PluginRef) -> Result<Plugin, RegistryError> {
        if let Some(p) = self.loaded.lock().expect("registry lock").get(r) {
            return Ok(p.clone());
        }
        let plugin = match r {
            PluginRef::Bundled(name) => {
                let bytes = cairn_bundled_plugins::get(name).ok_or_else(|| unknown(name))?;
                self.runtime.load(name, bytes)?
            }
            PluginRef::File(path) => self.runtime.load_file(path)?,
        };
        self.loaded
            .lock()
            .expect("registry lock")
            .insert(r.clone(), plugin.clone());
        Ok(plugin)
    }
}

fn unknown(name: &str) -> RegistryError {
    let known: Vec<&str> = cairn_bundled_plugins::names().collect();
    let closest = known
        .iter()
        .filter(|k| strsim::levenshtein(k, name) <= 3)
        .min_by_key(|k| strsim::levenshtein(k, name));
    RegistryError::UnknownBundled {
        name: name.to_string(),
        hint: closest
            .map(|c| format!(" (did you mean `{c}`?)"))
            .unwrap_or_default(),
        known: known.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_refs_parse() {
        assert_eq!(
            PluginRef::parse("entra"),
            PluginRef::Bundled("entra".into())
        );
        assert_eq!(
            PluginRef::parse("./vendor.wasm"),
            PluginRef::File("./vendor.wasm".into())
        );
    }

    #[test]
    fn unknown_bundled_names_suggest_the_closest() {
        let e = unknown("age-snk").to_string();
        assert!(e.contains("did you mean `age-sink`"), "{e}");
    }
}
