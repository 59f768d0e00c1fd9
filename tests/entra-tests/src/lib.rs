//! Host-side tests of the `entra` collector plugin (`plugins/entra`), built to a component by
//! this crate's build script, run through `cairn-runtime` against the Graph simulator.
//!
//! Graph requests go through the real gateway (`cairn-gateway`) with the simulator's client
//! credentials; [`Recorder`] wraps a gateway connection to note which paths were requested. The
//! gateway, recorder, runtime and step loop are shared with `tests/m365-tests` through
//! `cairn-plugin-harness`.

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_runtime::types::{Item, Listing, NextStep, PluginError, Removal, Task, Tombstone};
use cairn_runtime::{Capabilities, GraphConnection, PluginInstance, Runtime};
use serde_json::Value;

pub use cairn_plugin_harness::sim_env;
pub use cairn_plugin_harness::{gateway, remove, runtime, Recorder, SimEnv};

/// The entra plugin component.
pub const ENTRA: &str = env!("WASM_CAIRN_PLUGIN_ENTRA");

/// A configured instance of the entra plugin bound to `graph`.
pub fn instance(
    rt: &Arc<Runtime>,
    graph: Arc<dyn GraphConnection>,
    config: &Value,
) -> PluginInstance {
    cairn_plugin_harness::instance_with(
        rt,
        ENTRA,
        Capabilities {
            graph: Some(graph),
            ..Default::default()
        },
        config,
    )
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
    let done = cairn_plugin_harness::run_steps(inst, task, state, 10_000, |n, step| {
        run.steps = n;
        match run.listing {
            None => run.listing = Some(step.listing),
            Some(l) => assert_eq!(
                l, step.listing,
                "task {} changed its listing mid-run",
                task.id
            ),
        }
        if let NextStep::More(c) = &step.next {
            assert!(c.len() < 4096, "cursor stays small: {} bytes", c.len());
        }
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
    let is_link = |k: &str| k.ends_with("Member") || k.ends_with("Manager");
    let done = cairn_plugin_harness::run_steps(inst, task, state, usize::MAX, |n, step| {
        run.steps = n;
        if run.listing.is_none() {
            run.listing = Some(step.listing);
        }
        run.items += step.items.len();
        run.removed += step.removed.len();
        run.objects += step.items.iter().filter(|i| !is_link(&i.kind)).count()
            + step.removed.iter().filter(|t| !is_link(&t.kind)).count();
        run.notes.extend(step.note);
    });
    match done {
        Ok(s) => run.state = Some(s),
        Err(e) => run.error = Some(e),
    }
    run
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
