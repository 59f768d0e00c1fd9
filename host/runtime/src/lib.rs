//! `cairn-runtime`: runs Cairn plugins as sandboxed WebAssembly components.
//!
//! - One [`Runtime`] per process: one wasmtime `Engine`, an epoch ticker, and an on-disk cache
//!   of compiled components keyed by wasmtime version, engine configuration and the component's
//!   bytes.
//! - [`Runtime::load`] compiles (or loads from cache) a component, checks that it is a Cairn
//!   plugin of a supported contract version whose imports are all granted, and asks it to
//!   `describe` itself → [`Plugin`].
//! - [`Plugin::instantiate`] makes a [`PluginInstance`]: its own `Store` with a memory cap, a
//!   guest-time deadline per call, optional fuel, no preopened directories, no environment, no
//!   sockets, and only the host capabilities it is given ([`Capabilities`]).
//! - A trap or limit hit poisons that instance; the error names the plugin, the export and the
//!   reason in plain words. Other instances and the host go on.

mod bindings;
mod cache;
mod capabilities;
mod error;
mod host;
mod instance;
mod output;
mod plugin;

pub use capabilities::{
    BatchItem, BlobStore, Capabilities, ContentRef, ContentStore, DeleteOutcome, GraphConnection,
    HttpRequest, HttpResponse, ObjectMeta, PutOutcome, RemapTable, SnapshotEntry, SnapshotReader,
};
pub use error::{LoadError, PluginCallError, TrapReason};
pub use instance::PluginInstance;
pub use plugin::{Plugin, CONTRACT_PACKAGE, CONTRACT_VERSION};

/// The WIT types plugins and host exchange, as generated Rust types.
pub mod types {
    pub use crate::bindings::cairn::plugin::graph::{
        BatchRequest, Body, Header, Request, RequestError, Response,
    };
    pub use crate::bindings::cairn::plugin::types::*;
    pub use crate::bindings::exports::cairn::plugin::restorer::{
        Action, ActionKind, Outcome, RestoreRequest, Selected,
    };
    pub use crate::bindings::exports::cairn::plugin::sink::SinkError;
}

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Config, Engine};

/// How often the engine's epoch advances; the granularity of call deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Limits applied to every plugin instance unless a plugin's manifest entry overrides them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum linear memory (and table) size of an instance, in bytes.
    pub memory_bytes: usize,
    /// Maximum time one export call may spend executing guest code (time spent in host
    /// imports, such as waiting for Graph, does not count).
    pub call_timeout: Duration,
    /// Fuel (roughly, wasm instructions) per call, if fuel metering is on (see
    /// [`RuntimeConfig::fuel`]).
    pub fuel_per_call: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 256 << 20,
            call_timeout: Duration::from_secs(60),
            fuel_per_call: None,
        }
    }
}

/// Process-wide settings of the runtime.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// Where compiled components are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Turn on fuel metering (slower; makes [`Limits::fuel_per_call`] effective).
    pub fuel: bool,
    /// Default limits for instances.
    pub limits: Limits,
}

impl RuntimeConfig {
    /// The default configuration with the cache in the user's cache directory
    /// (`$XDG_CACHE_HOME/cairn/components` or `~/.cache/cairn/components`).
    pub fn with_default_cache() -> Self {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
        RuntimeConfig {
            cache_dir: base.map(|b| b.join("cairn").join("components")),
            ..Default::default()
        }
    }
}

/// The plugin runtime: one per process.
pub struct Runtime {
    engine: Engine,
    config: RuntimeConfig,
    ticker_stop: Arc<AtomicBool>,
}

impl Runtime {
    /// Creates the engine and starts its epoch ticker.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Arc<Runtime>> {
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .consume_fuel(config.fuel)
            .max_wasm_stack(1 << 20);
        let engine = Engine::new(&wasm)?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.weak();
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("cairn-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        match engine.upgrade() {
                            Some(engine) => engine.increment_epoch(),
                            None => return,
                        }
                    }
                })?;
        }
        Ok(Arc::new(Runtime {
            engine,
            config,
            ticker_stop,
        }))
    }

    /// The wasmtime engine (shared by every plugin).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The runtime's configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}
