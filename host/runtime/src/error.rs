//! Errors of loading and calling plugins, in words an operator can act on.

use std::fmt;

/// Why a plugin call was stopped by the runtime.
#[derive(Debug, Clone, PartialEq)]
pub enum TrapReason {
    /// It ran past its time limit.
    Timeout { limit_secs: f64 },
    /// It tried to grow its memory past the cap.
    Memory { cap_bytes: usize },
    /// It used up its fuel.
    Fuel,
    /// It trapped (panic, unreachable, out-of-bounds access …).
    Trap(String),
}

impl fmt::Display for TrapReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrapReason::Timeout { limit_secs } => write!(
                f,
                "timeout: it ran for more than {limit_secs}s of guest time and was stopped"
            ),
            TrapReason::Memory { cap_bytes } => write!(
                f,
                "memory: it tried to use more than its {} MiB memory cap and was stopped",
                cap_bytes >> 20
            ),
            TrapReason::Fuel => {
                write!(f, "fuel: it used up its instruction budget and was stopped")
            }
            TrapReason::Trap(msg) => write!(f, "trap: {msg}"),
        }
    }
}

/// A plugin call that did not return normally.
#[derive(Debug, thiserror::Error)]
pub enum PluginCallError {
    /// The runtime stopped the call; the instance is discarded.
    #[error("plugin `{plugin}` was stopped in `{export}`: {reason}")]
    Stopped {
        plugin: String,
        export: String,
        reason: TrapReason,
    },
    /// The instance was stopped earlier and cannot be used again.
    #[error("plugin `{plugin}`: this instance was stopped earlier and cannot be called again")]
    Poisoned { plugin: String },
    /// The component does not export what was called.
    #[error("plugin `{plugin}` is not a {kind} (it does not export cairn:plugin/{kind})")]
    NotExported { plugin: String, kind: &'static str },
}

impl PluginCallError {
    /// The trap reason, if the runtime stopped the call.
    pub fn reason(&self) -> Option<&TrapReason> {
        match self {
            PluginCallError::Stopped { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// Why a file could not be loaded as a plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read plugin file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{name} is not a WebAssembly file (it does not start with the `\\0asm` magic bytes)")]
    NotWasm { name: String },
    #[error(
        "{name} is a core WebAssembly module, not a component: build the plugin for the \
         `wasm32-wasip2` target (cargo build --target wasm32-wasip2), which produces a component"
    )]
    CoreModule { name: String },
    #[error("{name} could not be compiled as a WebAssembly component: {reason}")]
    Invalid { name: String, reason: String },
    #[error(
        "{name} was built against {found}, but this Cairn supports {supported}: rebuild the \
         plugin with a cairn-sdk for {supported}"
    )]
    WrongVersion {
        name: String,
        found: String,
        supported: String,
    },
    #[error("{name} is not a Cairn plugin: it exports no `{expected}` interface")]
    NotAPlugin { name: String, expected: String },
    #[error("{name} imports {import}, which Cairn does not grant to plugins: {why}")]
    ForbiddenImport {
        name: String,
        import: String,
        why: String,
    },
    #[error("{name}: {message}")]
    Describe { name: String, message: String },
}
