//! What the host-side plugin test crates (`tests/entra-tests`, `tests/m365-tests`) share: a
//! gateway to the Graph simulator, a connection that records the requests it forwards, the
//! component runtime, configured plugin instances, running a collector task step by step, and
//! applying tombstones as the repository does. Each crate keeps its own view of a snapshot.
//! [`SimEnv`] is the test environment they all start from: a simulator on its own tokio
//! runtime, and a component runtime with a private compiled-component cache.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cairn_gateway::{Cloud, Credential, Gateway, GatewayConfig};
use cairn_graph_sim::testkit::Client;
use cairn_graph_sim::{Profile, SimConfig, SimHandle, Simulator};
use cairn_runtime::types::{NextStep, PluginError, Step, Task, Tombstone};
use cairn_runtime::{
    BatchItem, Capabilities, GraphConnection, HttpRequest, HttpResponse, PluginInstance, Runtime,
    RuntimeConfig,
};
use serde_json::Value;
use url::Url;

/// A gateway to the simulator for the app `client_id` (tokens by client credentials, retries,
/// `$batch` splitting, counters), on the simulator's tokio runtime.
pub fn gateway(
    rt: tokio::runtime::Handle,
    sim: &SimHandle,
    client_id: &str,
    client_secret: &str,
) -> Arc<Gateway> {
    Gateway::connect_with_handle(gateway_config(sim, client_id, client_secret), rt).unwrap()
}

/// The configuration of a gateway to the simulator for an app (default policies).
pub fn gateway_config(sim: &SimHandle, client_id: &str, client_secret: &str) -> GatewayConfig {
    let cloud = Cloud::custom(&sim.base_url(), &sim.base_url()).unwrap();
    GatewayConfig::new(
        sim.tenant_id(),
        client_id,
        Credential::secret(client_secret),
    )
    .with_name("sim")
    .with_cloud(cloud)
}

/// A Graph connection that notes the method and path (with query) of every request it
/// forwards, downloads and batch items included.
pub struct Recorder {
    inner: Arc<dyn GraphConnection>,
    pub requests: Mutex<Vec<String>>,
}

impl Recorder {
    pub fn new(inner: Arc<dyn GraphConnection>) -> Arc<Self> {
        Arc::new(Recorder {
            inner,
            requests: Mutex::new(Vec::new()),
        })
    }
    fn note(&self, r: &HttpRequest) {
        let q = r.url.query().map(|q| format!("?{q}")).unwrap_or_default();
        self.requests
            .lock()
            .unwrap()
            .push(format!("{} {}{q}", r.method, r.url.path()));
    }
    /// The recorded requests, and clears them.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
    /// The paths of the recorded requests (no method, no query).
    pub fn paths(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| {
                let target = r.split_once(' ').map_or(r.as_str(), |(_, t)| t);
                target.split('?').next().unwrap_or(target).to_string()
            })
            .collect()
    }
}

impl GraphConnection for Recorder {
    fn base_url(&self) -> &Url {
        self.inner.base_url()
    }
    fn send(&self, request: HttpRequest) -> Result<HttpResponse, String> {
        self.note(&request);
        self.inner.send(request)
    }
    fn batch(&self, requests: Vec<BatchItem>) -> Result<Vec<HttpResponse>, String> {
        for r in &requests {
            self.note(&r.request);
        }
        self.inner.batch(requests)
    }
    fn download(&self, request: HttpRequest) -> Result<Box<dyn Read + Send>, String> {
        self.note(&request);
        self.inner.download(request)
    }
}

/// A runtime with its compiled-component cache in `cache`.
pub fn runtime(cache: &std::path::Path) -> Arc<Runtime> {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.to_path_buf()),
        ..Default::default()
    })
    .unwrap()
}

/// The tokio runtime the simulator (and the gateways of a test) run on: two workers, timers
/// and I/O enabled. Plugin calls run on the test thread.
pub fn sim_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A directory of its own under the system's temporary directory, removed (with what is in
/// it) when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(prefix: &str) -> ScratchDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        ScratchDir(path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A test environment: the Graph simulator on a background tokio runtime ([`sim_runtime`]),
/// and a component runtime whose compiled-component cache lives in a directory of its own,
/// removed with the environment. Test files wrap it to add what only they need.
pub struct SimEnv {
    pub sim: SimHandle,
    pub wasm: Arc<Runtime>,
    pub rt: tokio::runtime::Runtime,
    cache: ScratchDir,
}

impl SimEnv {
    /// Starts a simulator with `cfg`.
    pub fn start(cfg: SimConfig) -> SimEnv {
        let rt = sim_runtime();
        let sim = rt.block_on(Simulator::start(cfg)).unwrap();
        let cache = ScratchDir::new("cairn-plugin-harness");
        SimEnv {
            wasm: runtime(&cache.0),
            sim,
            rt,
            cache,
        }
    }

    /// Starts a simulator with the small tenant generated from `seed`.
    pub fn small(seed: u64) -> SimEnv {
        SimEnv::start(SimConfig::new(Profile::Small, seed))
    }

    /// The component runtime's compiled-component cache.
    pub fn cache_dir(&self) -> &Path {
        &self.cache.0
    }

    /// A gateway to the simulator for the app `client_id` ([`gateway`]).
    pub fn gateway_for(&self, client_id: &str, client_secret: &str) -> Arc<Gateway> {
        gateway(
            self.rt.handle().clone(),
            &self.sim,
            client_id,
            client_secret,
        )
    }

    /// A gateway to the simulator for the default app (every permission).
    pub fn gateway(&self) -> Arc<Gateway> {
        self.gateway_for(self.sim.client_id(), self.sim.client_secret())
    }

    /// A gateway to the simulator for the default app that sends each request once (no
    /// retries), so a refused or failed request reaches the plugin at once.
    pub fn gateway_without_retries(&self) -> Arc<Gateway> {
        let config = gateway_config(&self.sim, self.sim.client_id(), self.sim.client_secret())
            .with_retry(cairn_gateway::RetryPolicy {
                max_attempts: 1,
                ..Default::default()
            });
        Gateway::connect_with_handle(config, self.rt.handle().clone()).unwrap()
    }

    /// A simulator client with the default app's token, for control-plane calls.
    pub fn client(&self) -> Client {
        Client::new(&self.sim.base_url()).with_token(self.sim.access_token())
    }

    /// A control-plane Graph call with the default app's token and an optional JSON body:
    /// status and JSON body (`null` when empty).
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut c = self.client();
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let r = self
            .rt
            .block_on(c.send(
                method,
                path,
                &[("Content-Type", "application/json")],
                &bytes,
            ))
            .unwrap();
        let v = if r.body.is_empty() {
            Value::Null
        } else {
            r.json()
        };
        (r.status, v)
    }

    /// [`SimEnv::call`], asserting a 2xx status; returns the JSON body.
    pub fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.call(method, path, body);
        assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
        v
    }
}

/// Declares a test file's own environment type: a newtype over [`SimEnv`] that derefs to it
/// (`env.sim`, `env.rt`, `env.wasm`, `env.gateway()`), so the file can add its own methods in
/// an `impl` block and build it with `Name(SimEnv::small(seed))`.
#[macro_export]
macro_rules! sim_env {
    ($(#[$attr:meta])* $name:ident) => {
        $(#[$attr])*
        struct $name($crate::SimEnv);

        impl ::std::ops::Deref for $name {
            type Target = $crate::SimEnv;
            fn deref(&self) -> &$crate::SimEnv {
                &self.0
            }
        }
    };
}

/// A configured instance of the plugin at `wasm` with the given capabilities.
pub fn instance_with(
    rt: &Arc<Runtime>,
    wasm: &str,
    caps: Capabilities,
    config: &Value,
) -> PluginInstance {
    let plugin = rt.load_file(std::path::Path::new(wasm)).unwrap();
    let mut inst = plugin.instantiate_default(caps).unwrap();
    inst.configure(&config.to_string()).unwrap().unwrap();
    inst
}

/// Runs `task` step by step from `state` until it is done, handing every step to `each` (with
/// its number, from 1). Returns the state the task finished with, or the plugin's error.
pub fn run_steps(
    inst: &mut PluginInstance,
    task: &Task,
    state: Option<&str>,
    max_steps: usize,
    mut each: impl FnMut(usize, Step),
) -> Result<String, PluginError> {
    let mut cursor: Option<String> = None;
    let mut steps = 0;
    loop {
        let step = inst.run_step(task, state, cursor.as_deref()).unwrap()?;
        steps += 1;
        let next = step.next.clone();
        each(steps, step);
        match next {
            NextStep::More(c) => cursor = Some(c),
            NextStep::Done(s) => return Ok(s),
        }
        assert!(steps < max_steps, "task {} does not finish", task.id);
    }
}

/// Applies a tombstone to a task's items (keyed by kind and id) as the repository does: an id
/// ending in `/*` removes every item of the kind under that prefix, `*` alone every item of
/// the kind (`cairn_repository::TaskWriter::delete_item`).
pub fn remove<V>(tree: &mut BTreeMap<(String, String), V>, t: &Tombstone) {
    let prefix = match t.id.as_str() {
        "*" => Some(""),
        id => id.strip_suffix('*').filter(|p| p.ends_with('/')),
    };
    match prefix {
        Some(prefix) => tree.retain(|(k, id), _| !(k == &t.kind && id.starts_with(prefix))),
        None => {
            tree.remove(&(t.kind.clone(), t.id.clone()));
        }
    }
}
