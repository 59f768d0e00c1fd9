//! Host-side tests of the Microsoft 365 plugins (`plugins/m365-mail`, and
//! `plugins/sharepoint-links` once it exists), built to components by this crate's build script
//! and run through `cairn-runtime` against the Graph simulator, with Graph going through the
//! real gateway (`cairn-gateway`).
//!
//! The harness stands in for the repository and the restore engine with in-memory
//! capabilities: [`MemContent`] stores streamed content (and reads it back for restores),
//! [`Snapshot`] applies task runs as the repository does (full listings replace a task's
//! tree, change listings upsert and tombstone) and serves restorers as a [`SnapshotReader`],
//! [`MemRemap`] is the restore's id table.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cairn_gateway::{Cloud, Credential, Gateway, GatewayConfig};
use cairn_graph_sim::SimHandle;
use cairn_runtime::types::{Item, Listing, NextStep, PartData, PluginError, Task, Tombstone};
use cairn_runtime::{
    BatchItem, Capabilities, ContentRef, ContentStore, GraphConnection, HttpRequest, HttpResponse,
    PluginInstance, RemapTable, Runtime, RuntimeConfig, SnapshotEntry, SnapshotReader,
};
use serde_json::Value;
use url::Url;

/// The m365-mail plugin component.
pub const MAIL: &str = env!("WASM_CAIRN_PLUGIN_M365_MAIL");

/// A gateway to the simulator for the app `client_id`, on the simulator's tokio runtime.
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

/// Content stored in memory: what the repository's chunks would hold.
#[derive(Default)]
pub struct MemContent {
    blobs: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    next: AtomicU64,
}

impl MemContent {
    /// Replaces stored content (to damage a backup in tests).
    pub fn replace(&self, id: &str, bytes: Vec<u8>) {
        self.blobs
            .lock()
            .unwrap()
            .insert(id.to_string(), Arc::new(bytes));
    }
    /// The bytes of stored content.
    pub fn bytes(&self, id: &str) -> Option<Arc<Vec<u8>>> {
        self.blobs.lock().unwrap().get(id).cloned()
    }
}

impl ContentStore for MemContent {
    fn store(&self, reader: &mut dyn Read) -> Result<ContentRef, String> {
        let mut buf = Vec::new();
        reader
            .read_to_end(&mut buf)
            .map_err(|e| format!("reading the download: {e}"))?;
        let id = format!("mem-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let size = buf.len() as u64;
        self.blobs.lock().unwrap().insert(id.clone(), Arc::new(buf));
        Ok(ContentRef { id, size })
    }
    fn read(&self, content: &ContentRef, offset: u64, len: u32) -> Result<Vec<u8>, String> {
        let b = self
            .bytes(&content.id)
            .ok_or_else(|| format!("no content {}", content.id))?;
        let start = (offset as usize).min(b.len());
        let end = (start + len as usize).min(b.len());
        Ok(b[start..end].to_vec())
    }
}

/// A restore's old → new id table.
#[derive(Default)]
pub struct MemRemap {
    pub map: Mutex<BTreeMap<String, (String, String)>>,
}

impl RemapTable for MemRemap {
    fn record(&self, kind: &str, old_id: &str, new_id: &str) {
        self.map
            .lock()
            .unwrap()
            .insert(old_id.to_string(), (kind.to_string(), new_id.to_string()));
    }
    fn lookup(&self, old_id: &str) -> Option<String> {
        self.map.lock().unwrap().get(old_id).map(|(_, n)| n.clone())
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

/// A collector instance of the mail plugin bound to `graph`, storing content in `content`.
pub fn collector(
    rt: &Arc<Runtime>,
    graph: Arc<dyn GraphConnection>,
    content: Arc<MemContent>,
    config: &Value,
) -> PluginInstance {
    instance_with(
        rt,
        MAIL,
        Capabilities {
            graph: Some(graph),
            content: Some(content),
            ..Default::default()
        },
        config,
    )
}

/// A stored item: body and parts (part name → content reference or inline bytes).
#[derive(Debug, Clone)]
pub struct Stored {
    pub name: String,
    pub body: Value,
    pub parts: Vec<cairn_runtime::types::Part>,
}

/// What one run of one task produced.
#[derive(Debug, Default)]
pub struct TaskRun {
    pub listing: Option<Listing>,
    pub items: Vec<Item>,
    pub removed: Vec<Tombstone>,
    pub state: Option<String>,
    pub notes: Vec<String>,
    pub error: Option<PluginError>,
    pub steps: usize,
    /// Per step: its items and tombstones (the repository applies a step's items, then its
    /// tombstones, step after step).
    pub log: Vec<(Vec<Item>, Vec<Tombstone>)>,
}

impl TaskRun {
    pub fn of_kind(&self, kind: &str) -> Vec<&Item> {
        self.items.iter().filter(|i| i.kind == kind).collect()
    }
}

/// Runs `task` to completion (or its first error), checking that the listing stays the
/// first step's.
pub fn run_task(inst: &mut PluginInstance, task: &Task, state: Option<&str>) -> TaskRun {
    let mut run = TaskRun::default();
    let mut cursor: Option<String> = None;
    inst.set_task(Some(&task.id));
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
            Some(l) => assert_eq!(l, step.listing, "task {} changed its listing", task.id),
        }
        if run.steps == 1 {
            assert!(
                step.items.iter().all(|i| i
                    .parts
                    .iter()
                    .all(|p| matches!(p.data, PartData::Inline(_)))),
                "the first step of a task cannot store content (the host opens storage after it)"
            );
        }
        run.log.push((step.items.clone(), step.removed.clone()));
        run.items.extend(step.items);
        run.removed.extend(step.removed);
        run.notes.extend(step.note);
        match step.next {
            NextStep::More(c) => cursor = Some(c),
            NextStep::Done(s) => {
                run.state = Some(s);
                return run;
            }
        }
        assert!(run.steps < 100_000, "task {} does not finish", task.id);
    }
}

/// The repository's view of a collector's trees, emulated.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub tasks: BTreeMap<String, BTreeMap<(String, String), Stored>>,
    pub states: BTreeMap<String, String>,
}

impl Snapshot {
    /// Applies a finished task run as the repository does.
    pub fn apply(&mut self, task: &str, run: &TaskRun) {
        assert!(run.error.is_none(), "task {task} failed: {:?}", run.error);
        let tree = self.tasks.entry(task.to_string()).or_default();
        if run.listing == Some(Listing::Full) {
            tree.clear();
        }
        for (items, removed) in &run.log {
            for it in items {
                let body: Value = serde_json::from_str(&it.body).expect("item bodies are JSON");
                tree.insert(
                    (it.kind.clone(), it.id.clone()),
                    Stored {
                        name: it.display_name.clone(),
                        body,
                        parts: it.parts.clone(),
                    },
                );
            }
            for t in removed {
                // A prefix tombstone (`{prefix}/*`) removes every item of the kind under it;
                // `*` alone every item of the kind (a listing restarted mid-run).
                let prefix = match t.id.as_str() {
                    "*" => Some(""),
                    id => id.strip_suffix('*').filter(|p| p.ends_with('/')),
                };
                match prefix {
                    Some(prefix) => {
                        tree.retain(|(k, id), _| !(k == &t.kind && id.starts_with(prefix)))
                    }
                    None => {
                        tree.remove(&(t.kind.clone(), t.id.clone()));
                    }
                }
            }
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

    /// Every item of `kind` across tasks, by id.
    pub fn of_kind(&self, kind: &str) -> BTreeMap<String, Stored> {
        self.tasks
            .values()
            .flat_map(|t| t.iter())
            .filter(|((k, _), _)| k == kind)
            .map(|((_, id), v)| (id.clone(), v.clone()))
            .collect()
    }

    /// The bytes of an item's part, inline or stored in `content`.
    pub fn part_bytes(
        &self,
        kind: &str,
        id: &str,
        part: &str,
        content: &MemContent,
    ) -> Option<Vec<u8>> {
        let item = self.of_kind(kind).remove(id)?;
        let p = item.parts.into_iter().find(|p| p.name == part)?;
        match p.data {
            PartData::Inline(b) => Some(b),
            PartData::Stored(c) => content.bytes(&c.id).map(|b| b.to_vec()),
        }
    }

    /// Replaces the bytes of an item's part (to damage a backup in tests).
    pub fn damage_part(&mut self, kind: &str, id: &str, part: &str, bytes: Vec<u8>) {
        for tree in self.tasks.values_mut() {
            if let Some(item) = tree.get_mut(&(kind.to_string(), id.to_string())) {
                for p in item.parts.iter_mut().filter(|p| p.name == part) {
                    p.data = PartData::Inline(bytes.clone());
                }
            }
        }
    }

    /// The stored content id of an item's part.
    pub fn part(&self, kind: &str, id: &str, part: &str) -> Option<String> {
        self.of_kind(kind).get(id).and_then(|s| {
            s.parts
                .iter()
                .find(|p| p.name == part)
                .and_then(|p| match &p.data {
                    PartData::Stored(c) => Some(c.id.clone()),
                    PartData::Inline(_) => None,
                })
        })
    }
}

/// A frozen snapshot served to restorers.
pub struct SnapshotView(pub Snapshot);

impl SnapshotReader for SnapshotView {
    fn get(&self, kind: &str, id: &str) -> Option<Item> {
        self.0.of_kind(kind).get(id).map(|s| Item {
            kind: kind.to_string(),
            id: id.to_string(),
            display_name: s.name.clone(),
            body: s.body.to_string(),
            parts: s.parts.clone(),
        })
    }
    fn list(&self, kind: &str) -> Vec<SnapshotEntry> {
        self.0
            .of_kind(kind)
            .into_iter()
            .map(|(id, s)| SnapshotEntry {
                kind: kind.to_string(),
                id,
                display_name: s.name,
            })
            .collect()
    }
}

/// Results of running every planned task once.
pub struct Run {
    pub tasks: BTreeMap<String, TaskRun>,
}

/// Plans and runs every task (sequentially), each from `snapshot`'s state; applies successful
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

/// A repository in `dir` behind the bundled age sink (writer and reader), as `cairn` sets it up.
pub struct Repo {
    pub repo: cairn_repository::Repository,
    pub reader: cairn_repository::Repository,
    pub registry: cairn_engine::PluginRegistry,
}

/// Initialises an age-encrypted repository in `dir` (a local directory blob store).
pub fn repository(runtime: Arc<Runtime>, dir: &std::path::Path) -> Repo {
    use cairn_engine::keys::{age_sink_config, generate_identity};
    use cairn_engine::{PluginRef, PluginRegistry, SinkBackend};
    use cairn_repository::{Backend, InitOptions, OpenOptions, Repository};
    let registry = PluginRegistry::new(runtime);
    let (restore_secret, restore_public) = generate_identity();
    let (meta_secret, _) = generate_identity();
    let store = cairn_blobstore::open_backend(dir.to_str().unwrap(), &Default::default()).unwrap();
    let plugin = registry
        .get(&PluginRef::Bundled("age-sink".into()))
        .unwrap();
    let writer: Arc<dyn Backend> = Arc::new(
        SinkBackend::new(
            plugin.clone(),
            store.clone(),
            &age_sink_config(
                std::slice::from_ref(&restore_public),
                Some(&meta_secret),
                &[],
            )
            .unwrap(),
            cairn_runtime::Limits::default(),
        )
        .unwrap(),
    );
    let repo = Repository::init(writer, InitOptions::default()).unwrap();
    let reader: Arc<dyn Backend> = Arc::new(
        SinkBackend::new(
            plugin,
            store,
            &age_sink_config(&[restore_public], None, &[restore_secret]).unwrap(),
            cairn_runtime::Limits::default(),
        )
        .unwrap(),
    );
    let reader = Repository::open(reader, OpenOptions::default()).unwrap();
    Repo {
        repo,
        reader,
        registry,
    }
}

/// Total size of the files under `dir` (a local repository's growth).
pub fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                total += dir_size(&p);
            } else if let Ok(m) = e.metadata() {
                total += m.len();
            }
        }
    }
    total
}
