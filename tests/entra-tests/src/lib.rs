//! Host-side tests of the `entra` collector plugin (`plugins/entra`), built to a component by
//! this crate's build script, run through `cairn-runtime` against the Graph simulator.
//!
//! Graph requests go through the real gateway (`cairn-gateway`) with the simulator's client
//! credentials; [`Recorder`] wraps a gateway connection to note which paths were requested.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use cairn_gateway::{Cloud, Credential, Gateway, GatewayConfig};
use cairn_graph_sim::SimHandle;
use cairn_runtime::types::{Item, Listing, NextStep, PluginError, Removal, Task, Tombstone};
use cairn_runtime::{
    BatchItem, Capabilities, GraphConnection, HttpRequest, HttpResponse, PluginInstance, Runtime,
    RuntimeConfig,
};
use serde_json::Value;
use url::Url;

/// The entra plugin component.
pub const ENTRA: &str = env!("WASM_CAIRN_PLUGIN_ENTRA");

/// A gateway to the simulator for the app `client_id` (tokens by client credentials, retries,
/// `$batch` splitting, counters), on the simulator's tokio runtime.
pub fn gateway(
    rt: tokio::runtime::Handle,
    sim: &SimHandle,
    client_id: &str,
    client_secret: &str,
) -> Arc<Gateway> {
    let cloud = Cloud::custom(&sim.base_url(), &sim.base_url()).unwrap();
    let config = GatewayConfig::new(
        sim.tenant_id(),
        client_id,
        Credential::secret(client_secret),
    )
    .with_name("sim")
    .with_cloud(cloud);
    Gateway::connect_with_handle(config, rt).unwrap()
}

/// A Graph connection that notes the paths of the requests it forwards (batch items too).
pub struct Recorder {
    inner: Arc<dyn GraphConnection>,
    pub paths: Mutex<Vec<String>>,
}

impl Recorder {
    pub fn new(inner: Arc<dyn GraphConnection>) -> Arc<Self> {
        Arc::new(Recorder {
            inner,
            paths: Mutex::new(Vec::new()),
        })
    }
}

impl GraphConnection for Recorder {
    fn base_url(&self) -> &Url {
        self.inner.base_url()
    }
    fn send(&self, request: HttpRequest) -> Result<HttpResponse, String> {
        self.paths
            .lock()
            .unwrap()
            .push(request.url.path().to_string());
        self.inner.send(request)
    }
    fn batch(&self, requests: Vec<BatchItem>) -> Result<Vec<HttpResponse>, String> {
        self.paths
            .lock()
            .unwrap()
            .extend(requests.iter().map(|r| r.request.url.path().to_string()));
        self.inner.batch(requests)
    }
    fn download(&self, request: HttpRequest) -> Result<Box<dyn std::io::Read + Send>, String> {
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

/// A configured instance of the entra plugin bound to `graph`.
pub fn instance(
    rt: &Arc<Runtime>,
    graph: Arc<dyn GraphConnection>,
    config: &Value,
) -> PluginInstance {
    let plugin = rt.load_file(std::path::Path::new(ENTRA)).unwrap();
    let mut inst = plugin
        .instantiate_default(Capabilities {
            graph: Some(graph),
            ..Default::default()
        })
        .unwrap();
    inst.configure(&config.to_string()).unwrap().unwrap();
    inst
}

/// What one run of one task produced.
#[derive(Debug, Default)]
pub struct TaskRun {
    /// The listing of the first step (the mode the repository opens the task in).
    pub listing: Option<Listing>,
    pub items: Vec<Item>,
    pub removed: Vec<Tombstone>,
    /// The state returned by `done`.
    pub state: Option<String>,
    pub notes: Vec<String>,
    pub error: Option<PluginError>,
    pub steps: usize,
}

/// Runs `task` to completion (or its first error), checking that every step keeps the listing
/// of the first one.
pub fn run_task(inst: &mut PluginInstance, task: &Task, state: Option<&str>) -> TaskRun {
    let mut run = TaskRun::default();
    let mut cursor: Option<String> = None;
    loop {
        let step = match inst.run_step(task, state, cursor.as_deref()).unwrap() {
            Ok(s) => s,
            Err(e) => {
                run.error = Some(e);
                return run;
            }
        };
        run.steps += 1;
        match run.listing {
            None => run.listing = Some(step.listing),
            Some(l) => assert_eq!(
                l, step.listing,
                "task {} changed its listing mid-run",
                task.id
            ),
        }
        run.items.extend(step.items);
        run.removed.extend(step.removed);
        run.notes.extend(step.note);
        match step.next {
            NextStep::More(c) => {
                assert!(c.len() < 4096, "cursor stays small: {} bytes", c.len());
                cursor = Some(c)
            }
            NextStep::Done(s) => {
                run.state = Some(s);
                return run;
            }
        }
        assert!(run.steps < 10_000, "task {} does not finish", task.id);
    }
}

/// The repository's view of a collector's trees, emulated: per task, items by (kind, id).
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub tasks: BTreeMap<String, BTreeMap<(String, String), Value>>,
    /// Task states (delta links) for the next run.
    pub states: BTreeMap<String, String>,
}

impl Snapshot {
    /// Applies a finished task run as the repository does: a full listing replaces the task's
    /// tree, a change listing upserts items and applies tombstones.
    pub fn apply(&mut self, task: &str, run: &TaskRun) {
        assert!(run.error.is_none(), "task {task} failed: {:?}", run.error);
        let tree = self.tasks.entry(task.to_string()).or_default();
        if run.listing == Some(Listing::Full) {
            tree.clear();
        }
        for it in &run.items {
            let body: Value = serde_json::from_str(&it.body).expect("item bodies are JSON");
            tree.insert((it.kind.clone(), it.id.clone()), body);
        }
        for t in &run.removed {
            remove(tree, t);
        }
        match &run.state {
            Some(s) if !s.is_empty() => {
                self.states.insert(task.to_string(), s.clone());
            }
            _ => {
                self.states.remove(task);
            }
        }
    }

    /// Applies the state a run ended with (the bench keeps states only, never the items).
    pub fn keep_state(&mut self, task: &str, state: Option<&str>) {
        match state {
            Some(s) if !s.is_empty() => {
                self.states.insert(task.to_string(), s.to_string());
            }
            _ => {
                self.states.remove(task);
            }
        }
    }

    /// Every item of `kind` across tasks, by id.
    pub fn of_kind(&self, kind: &str) -> BTreeMap<String, Value> {
        self.tasks
            .values()
            .flat_map(|t| t.iter())
            .filter(|((k, _), _)| k == kind)
            .map(|((_, id), v)| (id.clone(), v.clone()))
            .collect()
    }
}

/// Applies a tombstone as the repository does: an id ending in `/*` removes every item of the
/// kind under that prefix (`cairn_repository::TaskWriter::delete_item`).
pub fn remove(tree: &mut BTreeMap<(String, String), Value>, t: &Tombstone) {
    match t.id.strip_suffix('*').filter(|p| p.ends_with('/')) {
        Some(prefix) => tree.retain(|(k, id), _| !(k == &t.kind && id.starts_with(prefix))),
        None => {
            tree.remove(&(t.kind.clone(), t.id.clone()));
        }
    }
}

/// Counts of one task run whose items were handed to a callback step by step and dropped
/// (the benchmark: a `large` tenant's items never sit in memory together).
#[derive(Debug, Default)]
pub struct StreamedRun {
    pub listing: Option<Listing>,
    pub steps: usize,
    pub items: usize,
    pub removed: usize,
    /// Items and tombstones of object kinds (not `…Member`/`…Manager` links, which ride inside
    /// their container's delta entries).
    pub objects: usize,
    pub state: Option<String>,
    pub notes: Vec<String>,
    pub error: Option<PluginError>,
}

/// Runs `task` to completion like [`run_task`], keeping only counts: each step's items are
/// dropped once counted, so memory stays at one step's worth.
pub fn stream_task(inst: &mut PluginInstance, task: &Task, state: Option<&str>) -> StreamedRun {
    let mut run = StreamedRun::default();
    let mut cursor: Option<String> = None;
    let is_link = |k: &str| k.ends_with("Member") || k.ends_with("Manager");
    loop {
        let step = match inst.run_step(task, state, cursor.as_deref()).unwrap() {
            Ok(s) => s,
            Err(e) => {
                run.error = Some(e);
                return run;
            }
        };
        run.steps += 1;
        if run.listing.is_none() {
            run.listing = Some(step.listing);
        }
        run.items += step.items.len();
        run.removed += step.removed.len();
        run.objects += step.items.iter().filter(|i| !is_link(&i.kind)).count()
            + step.removed.iter().filter(|t| !is_link(&t.kind)).count();
        run.notes.extend(step.note);
        match step.next {
            NextStep::More(c) => cursor = Some(c),
            NextStep::Done(s) => {
                run.state = Some(s);
                return run;
            }
        }
    }
}

/// Results of running every planned task once.
pub struct Run {
    pub tasks: BTreeMap<String, TaskRun>,
}

/// Plans and runs every task, starting each from `snapshot`'s state, and applies successful
/// runs to `snapshot`.
pub fn run_all(inst: &mut PluginInstance, snapshot: &mut Snapshot) -> Run {
    let tasks = inst.plan_tasks().unwrap().unwrap();
    let mut out = BTreeMap::new();
    for t in &tasks {
        let state = snapshot.states.get(&t.id).cloned();
        let run = run_task(inst, t, state.as_deref());
        if run.error.is_none() {
            snapshot.apply(&t.id, &run);
        }
        out.insert(t.id.clone(), run);
    }
    Run { tasks: out }
}

/// A tombstone's reason, for assertions.
pub fn reason_of(run: &TaskRun, kind: &str, id: &str) -> Option<Removal> {
    run.removed
        .iter()
        .find(|t| t.kind == kind && t.id == id)
        .map(|t| t.reason)
}
