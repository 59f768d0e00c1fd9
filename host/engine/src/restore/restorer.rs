//! Restorers as the engine drives them: a trait (so the scheduler can be tested without
//! WebAssembly) and its implementation over a plugin, with a small pool of instances.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use cairn_runtime::types::{Action, Outcome, RestoreRequest};
use cairn_runtime::{
    Capabilities, ContentStore, GraphConnection, Limits, Plugin, PluginInstance, RemapTable,
    SnapshotReader,
};

use crate::sink::plugin_error_text;

/// Plans and applies one collector's part of a restore.
pub trait Restorer: Send + Sync {
    /// Compares the request's selection with the live tenant. `Err`: planning failed
    /// (the message says why).
    fn plan(&self, request: &RestoreRequest) -> Result<Vec<Action>, String>;
    /// Applies one action (called from several threads at once for independent actions).
    /// `Err`: the action failed (the message says why).
    fn apply(&self, action: &Action) -> Result<Outcome, String>;
}

/// The restore's shared old-id → new-id table. Mappings recorded since the last
/// [`Remap::take_new`] are handed to the journal.
#[derive(Default)]
pub struct Remap {
    map: RwLock<HashMap<String, (String, String)>>,
    fresh: Mutex<Vec<(String, String, String)>>,
}

impl Remap {
    /// Loads mappings of an earlier run (not journaled again).
    pub fn preload(&self, mappings: impl IntoIterator<Item = (String, String, String)>) {
        let mut m = self.map.write().expect("remap lock");
        for (kind, old, new) in mappings {
            m.insert(old, (kind, new));
        }
    }

    /// Mappings recorded since the last call: (kind, old, new).
    pub fn take_new(&self) -> Vec<(String, String, String)> {
        std::mem::take(&mut *self.fresh.lock().expect("remap lock"))
    }

    /// Every mapping: (kind, old, new), sorted by old id.
    pub fn all(&self) -> Vec<(String, String, String)> {
        let mut v: Vec<_> = self
            .map
            .read()
            .expect("remap lock")
            .iter()
            .map(|(old, (kind, new))| (kind.clone(), old.clone(), new.clone()))
            .collect();
        v.sort_by(|a, b| a.1.cmp(&b.1));
        v
    }

    /// Number of mappings.
    pub fn len(&self) -> usize {
        self.map.read().expect("remap lock").len()
    }

    /// True if no object was remapped.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl RemapTable for Remap {
    fn record(&self, kind: &str, old_id: &str, new_id: &str) {
        let prev = self
            .map
            .write()
            .expect("remap lock")
            .insert(old_id.to_string(), (kind.to_string(), new_id.to_string()));
        if prev.as_ref().map(|(_, n)| n.as_str()) != Some(new_id) {
            self.fresh.lock().expect("remap lock").push((
                kind.to_string(),
                old_id.to_string(),
                new_id.to_string(),
            ));
        }
    }

    fn lookup(&self, old_id: &str) -> Option<String> {
        self.map
            .read()
            .expect("remap lock")
            .get(old_id)
            .map(|(_, n)| n.clone())
    }
}

/// A restorer plugin with its capabilities; instances are made on demand and reused.
pub struct WasmRestorer {
    collector: String,
    plugin: Plugin,
    config: String,
    limits: Limits,
    caps: Capabilities,
    idle: Mutex<Vec<PluginInstance>>,
}

impl WasmRestorer {
    /// `graph`: the connection to restore into; `snapshot`: the collector's items.
    pub fn new(
        collector: &str,
        plugin: Plugin,
        config: &serde_json::Value,
        limits: Limits,
        graph: Option<Arc<dyn GraphConnection>>,
        snapshot: Arc<super::SnapshotView>,
        remap: Arc<Remap>,
    ) -> Self {
        let content: Arc<dyn ContentStore> = snapshot.clone();
        let reader: Arc<dyn SnapshotReader> = snapshot;
        WasmRestorer {
            collector: collector.to_string(),
            plugin,
            config: config.to_string(),
            limits,
            caps: Capabilities {
                graph,
                content: Some(content),
                blob_store: None,
                remap: Some(remap),
                snapshot: Some(reader),
            },
            idle: Mutex::new(Vec::new()),
        }
    }

    fn instance(&self) -> Result<PluginInstance, String> {
        if let Some(i) = self.idle.lock().expect("pool lock").pop() {
            return Ok(i);
        }
        let mut inst = self
            .plugin
            .instantiate(self.caps.clone(), &self.limits)
            .map_err(|e| format!("restorer `{}`: {e:#}", self.collector))?;
        inst.set_task(Some(&format!("{}/restore", self.collector)));
        inst.configure(&self.config)
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("restorer `{}`: {}", self.collector, plugin_error_text(&e)))?;
        Ok(inst)
    }

    fn give_back(&self, inst: PluginInstance) {
        if !inst.is_poisoned() {
            self.idle.lock().expect("pool lock").push(inst);
        }
    }
}

impl Restorer for WasmRestorer {
    fn plan(&self, request: &RestoreRequest) -> Result<Vec<Action>, String> {
        let mut inst = self.instance()?;
        let r = inst.restore_plan(request);
        self.give_back(inst);
        match r {
            Ok(Ok(actions)) => Ok(actions),
            Ok(Err(e)) => Err(plugin_error_text(&e)),
            Err(call) => Err(call.to_string()),
        }
    }

    fn apply(&self, action: &Action) -> Result<Outcome, String> {
        let mut inst = self.instance()?;
        let r = inst.restore_apply(action);
        self.give_back(inst);
        match r {
            Ok(Ok(o)) => Ok(o),
            Ok(Err(e)) => Err(plugin_error_text(&e)),
            Err(call) => Err(call.to_string()),
        }
    }
}
