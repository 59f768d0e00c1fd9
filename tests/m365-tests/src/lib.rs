//! Host-side tests of the Microsoft 365 plugins (`plugins/m365-mail`, and
//! `plugins/sharepoint-links` once it exists), built to components by this crate's build script
//! and run through `cairn-runtime` against the Graph simulator, with Graph going through the
//! real gateway (`cairn-gateway`).
//!
//! The harness stands in for the repository and the restore engine with in-memory
//! capabilities: [`MemContent`] stores streamed content (and reads it back for restores),
//! [`Snapshot`] applies task runs as the repository does (full listings replace a task's
//! tree, change listings upsert and tombstone) and serves restorers as a [`SnapshotReader`],
//! [`MemRemap`] is the restore's id table. The gateway, recorder, runtime, plugin instances and
//! step loop are shared with `tests/entra-tests` through `cairn-plugin-harness`.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cairn_runtime::types::{Item, Listing, PartData, PluginError, Task, Tombstone};
use cairn_runtime::{
    Capabilities, ContentRef, ContentStore, GraphConnection, PluginInstance, RemapTable, Runtime,
    SnapshotEntry, SnapshotReader,
};
use serde_json::Value;

pub use cairn_plugin_harness::sim_env;
pub use cairn_plugin_harness::{gateway, instance_with, runtime, Recorder, SimEnv};

/// The m365-mail plugin component.
pub const MAIL: &str = env!("WASM_CAIRN_PLUGIN_M365_MAIL");

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
    inst.set_task(Some(&task.id));
    let done = cairn_plugin_harness::run_steps(inst, task, state, 100_000, |n, step| {
        run.steps = n;
        match run.listing {
            None => run.listing = Some(step.listing),
            Some(l) => assert_eq!(l, step.listing, "task {} changed its listing", task.id),
        }
        if n == 1 {
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
    });
    match done {
        Ok(s) => run.state = Some(s),
        Err(e) => run.error = Some(e),
    }
    run
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
                cairn_plugin_harness::remove(tree, t);
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

/// The m365-mail plugin, loaded (compiled, or read from the runtime's cache) into `wasm`.
pub fn mail_plugin(wasm: &Arc<Runtime>) -> cairn_runtime::Plugin {
    wasm.load_file(std::path::Path::new(MAIL)).unwrap()
}

/// One backup run of the m365-mail collector `plugin` ([`mail_plugin`]; configured with
/// `config`, `concurrency` tasks at once, every task through `gw`) into `repo`, as
/// `cairn backup` runs it. The report says whether the run was partial; the caller decides
/// whether that is expected.
pub fn backup_mail(
    plugin: &cairn_runtime::Plugin,
    gw: &Arc<cairn_gateway::Gateway>,
    repo: &Repo,
    config: Value,
    concurrency: usize,
) -> cairn_engine::backup::BackupReport {
    use cairn_engine::backup::{run_backup, CollectorSpec, SinkTarget};
    let g = gw.clone();
    let collectors = [CollectorSpec {
        name: "mail".into(),
        plugin: plugin.clone(),
        config,
        graph: Some(Arc::new(move |task: &str| -> Arc<dyn GraphConnection> {
            g.for_task(task)
        })),
        concurrency,
        limits: cairn_runtime::Limits::default(),
    }];
    let sinks = [SinkTarget {
        name: "local".into(),
        repo: repo.repo.clone(),
        inputs: vec!["mail".into()],
        writer_options: cairn_repository::WriterOptions::default(),
    }];
    run_backup(&collectors, &sinks, None).unwrap()
}

/// `len` pseudo-random (incompressible) bytes from `seed` (xorshift), base64-wrapped at 76
/// columns as Outlook writes attachments.
pub fn attachment_b64(seed: u64, len: usize) -> String {
    let mut x = seed | 1;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let b64 = cairn_graph_sim::util::b64(&bytes);
    b64.as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n")
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
