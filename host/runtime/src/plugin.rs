//! Loading a component as a plugin: compile (or take from cache), check its contract version and
//! imports, describe it.

use std::path::Path;
use std::sync::Arc;

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasSelf, InstancePre, Linker};

use crate::bindings::exports::cairn::plugin::{collector, plugin, restorer, sink};
use crate::bindings::CairnHost;
use crate::error::LoadError;
use crate::host::HostState;
use crate::instance::PluginInstance;
use crate::types::{PluginInfo, PluginKind};
use crate::{Capabilities, Limits, Runtime};

/// The WIT package plugins are built against.
pub const CONTRACT_PACKAGE: &str = "cairn:plugin";
/// The contract version this host implements.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// Host interfaces each plugin kind may import (WASI's non-network interfaces aside).
fn allowed_cairn_imports(kinds: &[PluginKind]) -> Vec<&'static str> {
    let mut allowed = vec!["types", "log"];
    for k in kinds {
        match k {
            PluginKind::Collector => allowed.extend(["graph", "content"]),
            PluginKind::Sink => allowed.extend(["blob-store"]),
            PluginKind::Restorer => allowed.extend(["graph", "content", "remap", "snapshot"]),
        }
    }
    allowed
}

/// A compiled, described plugin. Cheap to clone; instantiate it as often as needed.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

struct PluginInner {
    runtime: Arc<Runtime>,
    info: PluginInfo,
    pre: InstancePre<HostState>,
    exports: ExportIndices,
}

pub(crate) struct ExportIndices {
    pub(crate) plugin: plugin::GuestIndices,
    pub(crate) collector: Option<collector::GuestIndices>,
    pub(crate) sink: Option<sink::GuestIndices>,
    pub(crate) restorer: Option<restorer::GuestIndices>,
}

impl Runtime {
    /// Loads a plugin from a `.wasm` file.
    pub fn load_file(self: &Arc<Self>, path: &Path) -> Result<Plugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        self.load(&name, &bytes)
    }

    /// Loads a plugin from bytes; `name` is used in messages (a file name, or a bundled name).
    pub fn load(self: &Arc<Self>, name: &str, bytes: &[u8]) -> Result<Plugin, LoadError> {
        check_header(name, bytes)?;
        let component =
            crate::cache::compile(&self.engine, self.config.cache_dir.as_deref(), bytes).map_err(
                |e| LoadError::Invalid {
                    name: name.into(),
                    reason: format!("{e:#}"),
                },
            )?;
        let kinds = check_contract(self, name, &component)?;

        let mut linker: Linker<HostState> = Linker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| LoadError::Invalid {
            name: name.into(),
            reason: format!("linking WASI: {e:#}"),
        })?;
        CairnHost::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s).map_err(
            |e| LoadError::Invalid {
                name: name.into(),
                reason: format!("linking Cairn imports: {e:#}"),
            },
        )?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Invalid {
                name: name.into(),
                reason: format!("{e:#}"),
            })?;
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            name: name.into(),
            reason: format!("{e:#}"),
        };
        let exports = ExportIndices {
            plugin: plugin::GuestIndices::new(&pre).map_err(invalid)?,
            collector: kinds
                .contains(&PluginKind::Collector)
                .then(|| collector::GuestIndices::new(&pre))
                .transpose()
                .map_err(invalid)?,
            sink: kinds
                .contains(&PluginKind::Sink)
                .then(|| sink::GuestIndices::new(&pre))
                .transpose()
                .map_err(invalid)?,
            restorer: kinds
                .contains(&PluginKind::Restorer)
                .then(|| restorer::GuestIndices::new(&pre))
                .transpose()
                .map_err(invalid)?,
        };

        // Ask the plugin to describe itself, in a throwaway instance with no capabilities.
        let mut probe = PluginInstance::new(
            self.clone(),
            name,
            &pre,
            &exports,
            Capabilities::default(),
            &self.config.limits,
        )
        .map_err(|e| LoadError::Describe {
            name: name.into(),
            message: format!("cannot instantiate: {e}"),
        })?;
        let info = probe.describe().map_err(|e| LoadError::Describe {
            name: name.into(),
            message: e.to_string(),
        })?;
        let mut declared = info.kinds.clone();
        declared.sort_by_key(kind_order);
        declared.dedup();
        if declared != kinds {
            return Err(LoadError::Describe {
                name: name.into(),
                message: format!(
                    "describe() declares kinds [{}] but the component exports [{}]",
                    kinds_text(&declared),
                    kinds_text(&kinds)
                ),
            });
        }
        if info.name.trim().is_empty() {
            return Err(LoadError::Describe {
                name: name.into(),
                message: "describe() returned an empty name".into(),
            });
        }
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&info.config_schema) {
            return Err(LoadError::Describe {
                name: name.into(),
                message: format!("its config schema is not valid JSON: {e}"),
            });
        }
        Ok(Plugin {
            inner: Arc::new(PluginInner {
                runtime: self.clone(),
                info,
                pre,
                exports,
            }),
        })
    }
}

impl Plugin {
    /// What the plugin said about itself.
    pub fn info(&self) -> &PluginInfo {
        &self.inner.info
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.inner.info.name
    }

    /// A fresh instance with its own store, the given capabilities and limits.
    pub fn instantiate(
        &self,
        caps: Capabilities,
        limits: &Limits,
    ) -> anyhow::Result<PluginInstance> {
        PluginInstance::new(
            self.inner.runtime.clone(),
            &self.inner.info.name,
            &self.inner.pre,
            &self.inner.exports,
            caps,
            limits,
        )
    }

    /// A fresh instance with the runtime's default limits.
    pub fn instantiate_default(&self, caps: Capabilities) -> anyhow::Result<PluginInstance> {
        let limits = self.inner.runtime.config.limits.clone();
        self.instantiate(caps, &limits)
    }
}

fn kind_order(k: &PluginKind) -> u8 {
    match k {
        PluginKind::Collector => 0,
        PluginKind::Sink => 1,
        PluginKind::Restorer => 2,
    }
}

fn kinds_text(kinds: &[PluginKind]) -> String {
    kinds
        .iter()
        .map(|k| match k {
            PluginKind::Collector => "collector",
            PluginKind::Sink => "sink",
            PluginKind::Restorer => "restorer",
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Tells a core module and non-wasm files apart from components before compiling.
fn check_header(name: &str, bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm { name: name.into() });
    }
    // Core modules have version 1 and layer 0; components have layer 1.
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(LoadError::CoreModule { name: name.into() });
    }
    Ok(())
}

/// Checks the component's Cairn exports and imports: returns the kinds it implements.
fn check_contract(
    runtime: &Runtime,
    name: &str,
    component: &Component,
) -> Result<Vec<PluginKind>, LoadError> {
    let ty = component.component_type();
    let engine = &runtime.engine;
    let mut kinds = Vec::new();
    let mut has_plugin = false;
    for (export, _) in ty.exports(engine) {
        let Some((iface, version)) = cairn_interface(export) else {
            continue;
        };
        if version != CONTRACT_VERSION {
            return Err(LoadError::WrongVersion {
                name: name.into(),
                found: format!("{CONTRACT_PACKAGE}@{version}"),
                supported: format!("{CONTRACT_PACKAGE}@{CONTRACT_VERSION}"),
            });
        }
        match iface {
            "plugin" => has_plugin = true,
            "collector" => kinds.push(PluginKind::Collector),
            "sink" => kinds.push(PluginKind::Sink),
            "restorer" => kinds.push(PluginKind::Restorer),
            _ => {}
        }
    }
    if !has_plugin {
        return Err(LoadError::NotAPlugin {
            name: name.into(),
            expected: format!("{CONTRACT_PACKAGE}/plugin@{CONTRACT_VERSION}"),
        });
    }
    kinds.sort_by_key(kind_order);
    let allowed = allowed_cairn_imports(&kinds);
    for (import, item) in ty.imports(engine) {
        if let Some((iface, version)) = cairn_interface(import) {
            if version != CONTRACT_VERSION {
                return Err(LoadError::WrongVersion {
                    name: name.into(),
                    found: format!("{CONTRACT_PACKAGE}@{version}"),
                    supported: format!("{CONTRACT_PACKAGE}@{CONTRACT_VERSION}"),
                });
            }
            if !allowed.contains(&iface) {
                return Err(LoadError::ForbiddenImport {
                    name: name.into(),
                    import: import.into(),
                    why: format!(
                        "a {} may use only {}",
                        kinds_text(&kinds),
                        allowed
                            .iter()
                            .map(|a| format!("cairn:plugin/{a}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        } else if import.starts_with("wasi:sockets/") {
            return Err(LoadError::ForbiddenImport {
                name: name.into(),
                import: import.into(),
                why: "plugins get no network access of their own; they reach their bound \
                      Graph connection through cairn:plugin/graph"
                    .into(),
            });
        } else if import.starts_with("wasi:http/") {
            return Err(LoadError::ForbiddenImport {
                name: name.into(),
                import: import.into(),
                why: "plugins make HTTP requests only through cairn:plugin/graph".into(),
            });
        } else if !import.starts_with("wasi:")
            || !matches!(item.ty, ComponentItem::ComponentInstance(_))
        {
            return Err(LoadError::ForbiddenImport {
                name: name.into(),
                import: import.into(),
                why: "it is neither a Cairn interface nor a WASI interface the host provides"
                    .into(),
            });
        }
    }
    Ok(kinds)
}

/// Splits `cairn:plugin/iface@version` into (`iface`, `version`).
fn cairn_interface(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("cairn:plugin/")?;
    let (iface, version) = rest.split_once('@').unwrap_or((rest, ""));
    Some((iface, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_check_names_the_problem() {
        assert!(matches!(
            check_header("x.wasm", b"hello world"),
            Err(LoadError::NotWasm { .. })
        ));
        let core = [0, b'a', b's', b'm', 1, 0, 0, 0];
        let err = check_header("core.wasm", &core).unwrap_err();
        assert!(err.to_string().contains("wasm32-wasip2"), "{err}");
        let component = [0, b'a', b's', b'm', 0x0d, 0, 1, 0];
        assert!(check_header("c.wasm", &component).is_ok());
    }

    #[test]
    fn interface_names_split() {
        assert_eq!(
            cairn_interface("cairn:plugin/collector@0.1.0"),
            Some(("collector", "0.1.0"))
        );
        assert_eq!(cairn_interface("wasi:cli/stdout@0.2.0"), None);
    }
}
