//! Repositories through sink plugins: the repository hands opaque objects to a
//! [`SinkBackend`], which passes them to a sink plugin (age encryption), which places them in
//! the blob store through the host's `blob-store` import ([`StoreCapability`]).

use std::sync::{Arc, Mutex};

use cairn_repository::{Backend, BackendError, DeleteOutcome, ObjectInfo, PutOutcome};
use cairn_runtime::types::SinkError;
use cairn_runtime::{Capabilities, Limits, Plugin, PluginCallError, PluginInstance};

/// Gives a sink plugin its blob store: a repository [`Backend`] over `object_store`.
pub struct StoreCapability {
    store: Arc<dyn Backend>,
}

impl StoreCapability {
    pub fn new(store: Arc<dyn Backend>) -> Arc<Self> {
        Arc::new(StoreCapability { store })
    }
}

impl cairn_runtime::BlobStore for StoreCapability {
    fn put(&self, key: &str, data: Vec<u8>) -> Result<cairn_runtime::PutOutcome, String> {
        match self.store.put(key, data).map_err(|e| e.to_string())? {
            PutOutcome::Created => Ok(cairn_runtime::PutOutcome::Created),
            PutOutcome::AlreadyExisted => Ok(cairn_runtime::PutOutcome::AlreadyExisted),
        }
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        match self.store.get(key) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<cairn_runtime::ObjectMeta>, String> {
        Ok(self
            .store
            .list(prefix)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|o| cairn_runtime::ObjectMeta {
                key: o.key,
                size: o.size.unwrap_or(0),
            })
            .collect())
    }

    fn delete(&self, key: &str) -> Result<cairn_runtime::DeleteOutcome, String> {
        Ok(match self.store.delete(key).map_err(|e| e.to_string())? {
            DeleteOutcome::Deleted => cairn_runtime::DeleteOutcome::Deleted,
            DeleteOutcome::NotFound => cairn_runtime::DeleteOutcome::NotFound,
            DeleteOutcome::Refused(why) => cairn_runtime::DeleteOutcome::Refused(why),
        })
    }
}

/// A repository backend that runs every object through a sink plugin. Keeps a small pool of
/// configured instances so packs can be wrapped in parallel; an instance that traps is dropped
/// and replaced, and the operation reports the plugin's error.
pub struct SinkBackend {
    plugin: Plugin,
    store: Arc<dyn Backend>,
    config: String,
    limits: Limits,
    idle: Mutex<Vec<PluginInstance>>,
}

impl SinkBackend {
    /// Makes the backend and configures one instance right away, so a bad sink configuration
    /// (an invalid recipient, say) fails here with the plugin's message.
    pub fn new(
        plugin: Plugin,
        store: Arc<dyn Backend>,
        config: &serde_json::Value,
        limits: Limits,
    ) -> anyhow::Result<SinkBackend> {
        let backend = SinkBackend {
            plugin,
            store,
            config: config.to_string(),
            limits,
            idle: Mutex::new(Vec::new()),
        };
        let first = backend.fresh_instance()?;
        backend.idle.lock().expect("pool lock").push(first);
        Ok(backend)
    }

    fn fresh_instance(&self) -> anyhow::Result<PluginInstance> {
        let caps = Capabilities {
            blob_store: Some(StoreCapability::new(self.store.clone())),
            ..Default::default()
        };
        let mut inst = self.plugin.instantiate(caps, &self.limits)?;
        inst.configure(&self.config)?.map_err(|e| {
            anyhow::anyhow!("sink `{}`: {}", self.plugin.name(), plugin_error_text(&e))
        })?;
        Ok(inst)
    }

    /// Runs `f` on a pooled instance; maps sink errors to backend errors.
    fn with_instance<R>(
        &self,
        op: &'static str,
        key: &str,
        f: impl FnOnce(&mut PluginInstance) -> Result<Result<R, SinkError>, PluginCallError>,
    ) -> Result<R, BackendError> {
        let pooled = self.idle.lock().expect("pool lock").pop();
        let mut inst = match pooled {
            Some(i) => i,
            None => self
                .fresh_instance()
                .map_err(|e| BackendError::other(op, key, format!("{e:#}")))?,
        };
        let result = f(&mut inst);
        if !inst.is_poisoned() {
            self.idle.lock().expect("pool lock").push(inst);
        }
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(SinkError::NotFound)) => Err(BackendError::NotFound {
                key: key.to_string(),
            }),
            Ok(Err(e)) => Err(BackendError::other(op, key, sink_error_text(&e))),
            Err(call) => Err(BackendError::other(op, key, call.to_string())),
        }
    }
}

/// The operator-facing text of a sink error.
pub fn sink_error_text(e: &SinkError) -> String {
    match e {
        SinkError::NotFound => "not found".into(),
        SinkError::CannotDecrypt(m)
        | SinkError::Corrupt(m)
        | SinkError::Store(m)
        | SinkError::Config(m) => m.clone(),
    }
}

/// The operator-facing text of a plugin error.
pub fn plugin_error_text(e: &cairn_runtime::types::PluginError) -> String {
    use cairn_runtime::types::PluginError as E;
    match e {
        E::Config(m) => format!("configuration: {m}"),
        E::PermissionDenied(p) => format!("missing Graph permission {p}"),
        E::Graph(g) => format!(
            "Graph answered {} {} to {}: {}",
            g.status, g.code, g.request, g.message
        ),
        E::Refused(m) => format!("refused by the host: {m}"),
        E::Other(m) => m.clone(),
    }
}

impl Backend for SinkBackend {
    fn location(&self) -> String {
        format!("{} via {}", self.store.location(), self.plugin.name())
    }

    fn put(&self, key: &str, data: Vec<u8>) -> Result<PutOutcome, BackendError> {
        self.with_instance("put", key, |i| i.sink_put(key, &data))
            .map(|created| {
                if created {
                    PutOutcome::Created
                } else {
                    PutOutcome::AlreadyExisted
                }
            })
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, BackendError> {
        self.with_instance("get", key, |i| i.sink_get(key))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        // Sizes are the stored (wrapped) sizes, as the repository expects.
        self.store.list(prefix)
    }

    fn delete(&self, key: &str) -> Result<DeleteOutcome, BackendError> {
        // Deletes go straight to the store: the sink would only pass them through, and the
        // store's refusal reason (Object Lock) is kept intact this way.
        self.store.delete(key)
    }
}
