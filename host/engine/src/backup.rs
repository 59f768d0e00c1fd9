//! A backup run: collectors' tasks run concurrently in plugin instances; their items go to the
//! snapshot writer of every sink that takes the collector as input.
//!
//! - **Resumable.** Each step's items are stored before its cursor is checkpointed; after a
//!   crash the run reopens from the sinks' checkpoints, finished tasks are not redone, and an
//!   interrupted task continues from its last cursor.
//! - **Incremental.** A task's state from the previous snapshot (a delta link) is handed back to
//!   the collector; a `changes` listing is merged onto the previous tree by the repository. When
//!   several sinks disagree on a task's state (one missed a run), the task is read in full so
//!   every sink ends up right.
//! - **Failures stay local.** A task whose plugin fails or traps is recorded as failed (the
//!   snapshot is marked partial and keeps the task's previous tree); the other tasks go on.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cairn_repository::{
    Chunking, Id, Item as RepoItem, PartRef, Repository, SnapshotWriter, TaskMode, TaskProgress,
    TaskWriter, WriterOptions,
};
use cairn_runtime::types::{Listing, NextStep, PartData, Removal, Step, Task};
use cairn_runtime::{Capabilities, ContentRef, ContentStore, GraphConnection, Limits, Plugin};
use serde::Serialize;

use crate::sink::plugin_error_text;

/// Gives the Graph connection for a task name (the gateway scoped to the task, for counters).
pub type GraphFor = Arc<dyn Fn(&str) -> Arc<dyn GraphConnection> + Send + Sync>;

/// A collector as the run sees it.
pub struct CollectorSpec {
    /// The manifest name (`[collectors.<name>]`): the prefix of its task names.
    pub name: String,
    pub plugin: Plugin,
    /// The plugin's configuration (validated, secrets resolved).
    pub config: serde_json::Value,
    /// The collector's Graph connection, if bound.
    pub graph: Option<GraphFor>,
    /// Tasks run at once (plugin instances).
    pub concurrency: usize,
    pub limits: Limits,
}

/// A sink's repository as the run sees it.
pub struct SinkTarget {
    /// The manifest name (`[sinks.<name>]`).
    pub name: String,
    pub repo: Repository,
    /// Names of the collectors this sink takes.
    pub inputs: Vec<String>,
    pub writer_options: WriterOptions,
}

/// Counters of one task, stored in the snapshot's run statistics.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TaskStats {
    pub items: u64,
    pub removed: u64,
    pub steps: u64,
    pub content_bytes: u64,
    pub duration_secs: f64,
    pub listing: String,
    /// Steps that removed every item of a kind (`*` tombstones): the collector's enumeration
    /// was reset mid-run (a drive delta's 410) and it listed everything again.
    #[serde(skip_serializing_if = "is_zero")]
    pub restarts: u64,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The outcome for one sink.
#[derive(Debug, Clone, Serialize)]
pub struct SinkOutcome {
    pub sink: String,
    pub snapshot: String,
    pub partial: bool,
    pub failed_tasks: Vec<String>,
    pub resumed: bool,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub sinks: Vec<SinkOutcome>,
    pub tasks: BTreeMap<String, TaskStats>,
    pub duration_secs: f64,
}

impl BackupReport {
    /// True if any task failed (the snapshots are partial).
    pub fn partial(&self) -> bool {
        self.sinks.iter().any(|s| s.partial)
    }
}

/// Extra statistics the caller adds to each snapshot (e.g. the gateway's request counters).
pub type StatsHook = Box<dyn Fn() -> serde_json::Value + Send + Sync>;

/// What a run reports while it goes, for progress displays. Task names are `collector/task`.
#[derive(Debug)]
pub enum ProgressEvent<'a> {
    /// A collector planned its tasks.
    Planned {
        collector: &'a str,
        tasks: &'a [String],
    },
    /// A task started (or resumed) in a plugin instance.
    TaskStarted { task: &'a str },
    /// A task stored one step: its totals so far.
    Step {
        task: &'a str,
        steps: u64,
        items: u64,
        removed: u64,
    },
    /// A task ended (complete or failed).
    TaskFinished { task: &'a str, stats: &'a TaskStats },
}

/// Receives [`ProgressEvent`]s from the run's threads.
pub type ProgressHook = Arc<dyn Fn(ProgressEvent<'_>) + Send + Sync>;

/// Runs a backup of `collectors` into `sinks`.
pub fn run_backup(
    collectors: &[CollectorSpec],
    sinks: &[SinkTarget],
    extra_stats: Option<StatsHook>,
) -> anyhow::Result<BackupReport> {
    run_backup_with_progress(collectors, sinks, extra_stats, None)
}

/// [`run_backup`], reporting progress to `progress`.
pub fn run_backup_with_progress(
    collectors: &[CollectorSpec],
    sinks: &[SinkTarget],
    extra_stats: Option<StatsHook>,
    progress: Option<ProgressHook>,
) -> anyhow::Result<BackupReport> {
    let started = Instant::now();
    // Open (or resume) one writer per sink.
    let mut writers = Vec::new();
    for sink in sinks {
        let unfinished = sink.repo.unfinished_runs()?;
        let (writer, resumed) = match unfinished.first() {
            Some(run) => {
                tracing::info!(sink = %sink.name, run = %run.checkpoint.run, "resuming an interrupted run");
                (
                    SnapshotWriter::resume(&sink.repo, run, sink.writer_options.clone())?,
                    true,
                )
            }
            None => (
                SnapshotWriter::new(&sink.repo, sink.writer_options.clone())?,
                false,
            ),
        };
        writers.push((sink, Arc::new(writer), resumed));
    }

    let stats: Mutex<BTreeMap<String, TaskStats>> = Mutex::new(BTreeMap::new());
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let mut handles = Vec::new();
        for collector in collectors {
            let targets: Vec<(String, Arc<SnapshotWriter>)> = writers
                .iter()
                .filter(|(s, _, _)| s.inputs.iter().any(|i| i == &collector.name))
                .map(|(s, w, _)| (s.name.clone(), w.clone()))
                .collect();
            if targets.is_empty() {
                continue;
            }
            let stats = &stats;
            let progress = progress.clone();
            handles.push(
                scope.spawn(move || run_collector(collector, &targets, stats, progress.as_ref())),
            );
        }
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a collector thread panicked"))??;
        }
        Ok(())
    })?;

    let stats = stats.into_inner().expect("stats lock");
    let ran: Vec<&str> = collectors.iter().map(|c| c.name.as_str()).collect();
    let mut outcomes = Vec::new();
    for (sink, writer, resumed) in writers {
        // Tasks of collectors that did not run this time keep their previous state; tasks of
        // collectors that ran but no longer planned them (a deleted mailbox) are dropped.
        if let Some(parent) = writer.parent() {
            let snap = sink.repo.snapshot(&parent)?;
            for t in &snap.tasks {
                let collector = t.name.split('/').next().unwrap_or("");
                if !ran.contains(&collector) && writer.task_progress(&t.name).is_none() {
                    writer.carry_task(&t.name)?;
                }
            }
        }
        let mine: BTreeMap<&String, &TaskStats> = stats
            .iter()
            .filter(|(name, _)| {
                let c = name.split('/').next().unwrap_or("");
                sink.inputs.iter().any(|i| i == c)
            })
            .collect();
        let failed: Vec<String> = mine
            .iter()
            .filter(|(_, s)| s.status == "failed")
            .map(|(n, _)| (*n).clone())
            .collect();
        let mut run_stats = serde_json::json!({
            "tasks": mine,
            "duration_secs": started.elapsed().as_secs_f64(),
        });
        if let Some(hook) = &extra_stats {
            run_stats["gateway"] = hook();
        }
        let writer = Arc::try_unwrap(writer)
            .map_err(|_| anyhow::anyhow!("snapshot writer still shared at commit"))?;
        let id: Id = writer.commit(run_stats)?;
        outcomes.push(SinkOutcome {
            sink: sink.name.clone(),
            snapshot: id.to_string(),
            partial: !failed.is_empty(),
            failed_tasks: failed,
            resumed,
        });
    }
    Ok(BackupReport {
        sinks: outcomes,
        tasks: stats,
        duration_secs: started.elapsed().as_secs_f64(),
    })
}

/// Plans a collector's tasks and runs them on `concurrency` instances.
fn run_collector(
    spec: &CollectorSpec,
    targets: &[(String, Arc<SnapshotWriter>)],
    stats: &Mutex<BTreeMap<String, TaskStats>>,
    progress: Option<&ProgressHook>,
) -> anyhow::Result<()> {
    let report = |e: ProgressEvent<'_>| {
        if let Some(p) = progress {
            p(e)
        }
    };
    let graph_for = |task: &str| spec.graph.as_ref().map(|g| g(task));
    let instance = |task: &str,
                    content: Arc<RunContent>|
     -> anyhow::Result<cairn_runtime::PluginInstance> {
        let mut inst = spec.plugin.instantiate(
            Capabilities {
                graph: graph_for(task),
                content: Some(content),
                ..Default::default()
            },
            &spec.limits,
        )?;
        inst.configure(&spec.config.to_string())?
            .map_err(|e| anyhow::anyhow!("collector `{}`: {}", spec.name, plugin_error_text(&e)))?;
        Ok(inst)
    };

    // Plan. A collector that cannot plan fails as a whole (one "plan" task records it).
    let plan_name = format!("{}/plan", spec.name);
    let planned = instance(&plan_name, Arc::new(RunContent::default())).and_then(|mut inst| {
        inst.plan_tasks()?
            .map_err(|e| anyhow::anyhow!("{}", plugin_error_text(&e)))
    });
    let tasks = match planned {
        Ok(t) => t,
        Err(e) => {
            let msg = format!("planning failed: {e:#}");
            tracing::error!(collector = %spec.name, "{msg}");
            record_failure(targets, &plan_name, &msg)?;
            let s = TaskStats {
                status: "failed".into(),
                error: Some(msg),
                ..Default::default()
            };
            report(ProgressEvent::TaskFinished {
                task: &plan_name,
                stats: &s,
            });
            stats.lock().expect("stats").insert(plan_name, s);
            return Ok(());
        }
    };
    tracing::info!(collector = %spec.name, tasks = tasks.len(), "planned");
    let names: Vec<String> = tasks
        .iter()
        .map(|t| format!("{}/{}", spec.name, t.id))
        .collect();
    report(ProgressEvent::Planned {
        collector: &spec.name,
        tasks: &names,
    });

    let queue = Mutex::new(tasks.into_iter().collect::<VecDeque<Task>>());
    let workers = spec.concurrency.max(1);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let Some(task) = queue.lock().expect("queue").pop_front() else {
                    return;
                };
                let name = format!("{}/{}", spec.name, task.id);
                // Each task gets its own instance and content store (content goes to the
                // task's own writers).
                let content = Arc::new(RunContent::default());
                report(ProgressEvent::TaskStarted { task: &name });
                let result = instance(&name, content.clone()).and_then(|mut inst| {
                    run_task(&mut inst, &task, &name, targets, &content, &report)
                });
                let s = match result {
                    Ok(s) => s,
                    Err(e) => {
                        let msg = format!("{e:#}");
                        tracing::error!(task = %name, "{msg}");
                        let _ = record_failure(targets, &name, &msg);
                        TaskStats {
                            status: "failed".into(),
                            error: Some(msg),
                            ..Default::default()
                        }
                    }
                };
                report(ProgressEvent::TaskFinished {
                    task: &name,
                    stats: &s,
                });
                stats.lock().expect("stats").insert(name, s);
            });
        }
    });
    Ok(())
}

/// Records a task as failed in every target (keeping the parent's tree for it).
fn record_failure(
    targets: &[(String, Arc<SnapshotWriter>)],
    name: &str,
    error: &str,
) -> anyhow::Result<()> {
    for (_, w) in targets {
        if matches!(w.task_progress(name), Some(TaskProgress::Done(_))) {
            continue;
        }
        let t = w.task(name, TaskMode::Changes)?;
        t.fail(error)?;
    }
    Ok(())
}

/// Runs one task to its end across all target writers.
fn run_task(
    inst: &mut cairn_runtime::PluginInstance,
    task: &Task,
    name: &str,
    targets: &[(String, Arc<SnapshotWriter>)],
    content: &Arc<RunContent>,
    report: &dyn Fn(ProgressEvent<'_>),
) -> anyhow::Result<TaskStats> {
    let started = Instant::now();
    inst.set_task(Some(name));
    // Which sinks still need this task in this run, and from where.
    let mut pending: Vec<&(String, Arc<SnapshotWriter>)> = Vec::new();
    let mut resume_cursors = Vec::new();
    for target in targets {
        match target.1.task_progress(name) {
            Some(TaskProgress::Done(_)) => {}
            Some(TaskProgress::Resumable { cursor, .. }) => {
                resume_cursors.push(cursor);
                pending.push(target);
            }
            _ => {
                resume_cursors.push(None);
                pending.push(target);
            }
        }
    }
    if pending.is_empty() {
        return Ok(TaskStats {
            status: "complete".into(),
            notes: vec!["already finished in an earlier attempt of this run".into()],
            ..Default::default()
        });
    }
    let states: Vec<Option<String>> = pending
        .iter()
        .map(|(_, w)| {
            w.parent_task(name)
                .and_then(|r| r.checkpoint)
                .filter(|c| !c.is_empty())
        })
        .collect();
    let mut notes = Vec::new();
    let state = if states.windows(2).all(|w| w[0] == w[1]) {
        states[0].clone()
    } else {
        notes.push("sinks had different delta states; read in full".into());
        None
    };
    let mut cursor = if resume_cursors.windows(2).all(|w| w[0] == w[1]) {
        resume_cursors[0].clone()
    } else {
        None
    };
    if cursor.is_some() {
        notes.push("resumed from the last checkpoint".into());
    }

    let mut writers: Option<Vec<Arc<TaskWriter>>> = None;
    let mut stats = TaskStats::default();
    loop {
        let step: Step = match inst.run_step(task, state.as_deref(), cursor.as_deref())? {
            Ok(step) => step,
            Err(e) => {
                let msg = plugin_error_text(&e);
                close_failed(writers.take(), &pending, name, &msg)?;
                stats.status = "failed".into();
                stats.error = Some(msg);
                stats.notes = notes;
                stats.duration_secs = started.elapsed().as_secs_f64();
                return Ok(stats);
            }
        };
        stats.steps += 1;
        if let Some(n) = &step.note {
            notes.push(n.clone());
        }
        let mode = match step.listing {
            Listing::Full => TaskMode::Full,
            Listing::Changes => TaskMode::Changes,
        };
        let ws = match &writers {
            Some(ws) => {
                if ws[0].mode() != mode && mode == TaskMode::Full {
                    let msg = "the collector switched to a full listing in the middle of a run; \
                               the next run starts over";
                    close_failed(writers.take(), &pending, name, msg)?;
                    stats.status = "failed".into();
                    stats.error = Some(msg.into());
                    stats.notes = notes;
                    return Ok(stats);
                }
                ws
            }
            None => {
                let mut ws = Vec::new();
                for (_, w) in &pending {
                    ws.push(Arc::new(w.task(name, mode)?));
                }
                stats.listing = format!("{:?}", ws[0].mode()).to_lowercase();
                content.set_writers(ws.clone());
                writers = Some(ws);
                writers.as_ref().expect("just set")
            }
        };
        for item in &step.items {
            let body: serde_json::Value = serde_json::from_str(&item.body).map_err(|e| {
                anyhow::anyhow!(
                    "item {}/{} has an invalid JSON body: {e}",
                    item.kind,
                    item.id
                )
            })?;
            let mut parts_per_writer: Vec<Vec<PartRef>> = vec![Vec::new(); ws.len()];
            for part in &item.parts {
                match &part.data {
                    PartData::Inline(bytes) => {
                        for (i, w) in ws.iter().enumerate() {
                            parts_per_writer[i].push(w.write_part_with(
                                &part.name,
                                Chunking::for_content_type(&part.content_type),
                                bytes,
                            )?);
                        }
                        stats.content_bytes += bytes.len() as u64;
                    }
                    PartData::Stored(c) => {
                        let refs = content.take(&c.id).ok_or_else(|| {
                            anyhow::anyhow!(
                                "item {}/{} names content {} that this run did not store",
                                item.kind,
                                item.id,
                                c.id
                            )
                        })?;
                        for (i, r) in refs.into_iter().enumerate() {
                            parts_per_writer[i].push(r.named(part.name.clone()));
                        }
                        stats.content_bytes += c.size;
                    }
                }
            }
            for (w, parts) in ws.iter().zip(parts_per_writer) {
                w.put_item(&RepoItem {
                    kind: &item.kind,
                    id: &item.id,
                    name: &item.display_name,
                    body: &body,
                    parts,
                })?;
            }
            stats.items += 1;
        }
        if step.removed.iter().any(|t| t.id == "*") {
            stats.restarts += 1;
            tracing::warn!(
                task = name,
                "the collector restarted its listing mid-run (every item of a kind removed, \
                 then listed again)"
            );
        }
        for t in &step.removed {
            for w in ws {
                w.delete_item(&t.kind, &t.id);
            }
            stats.removed += 1;
            if matches!(t.reason, Removal::SoftDeleted) {
                tracing::debug!(task = name, kind = %t.kind, id = %t.id, "soft-deleted (in the recycle bin)");
            }
        }
        report(ProgressEvent::Step {
            task: name,
            steps: stats.steps,
            items: stats.items,
            removed: stats.removed,
        });
        match step.next {
            NextStep::More(next) => {
                for w in ws {
                    w.checkpoint_if_due(next.clone())?;
                }
                cursor = Some(next);
            }
            NextStep::Done(final_state) => {
                let ws = writers.take().expect("writers are open");
                content.clear();
                for w in ws {
                    let w = Arc::try_unwrap(w)
                        .map_err(|_| anyhow::anyhow!("task writer still shared"))?;
                    w.finish(Some(final_state.clone()).filter(|s| !s.is_empty()))?;
                }
                stats.status = "complete".into();
                stats.notes = notes;
                stats.duration_secs = started.elapsed().as_secs_f64();
                tracing::info!(
                    task = name,
                    items = stats.items,
                    removed = stats.removed,
                    "task finished"
                );
                return Ok(stats);
            }
        }
    }
}

fn close_failed(
    writers: Option<Vec<Arc<TaskWriter>>>,
    pending: &[&(String, Arc<SnapshotWriter>)],
    name: &str,
    msg: &str,
) -> anyhow::Result<()> {
    match writers {
        Some(ws) => {
            for w in ws {
                let w =
                    Arc::try_unwrap(w).map_err(|_| anyhow::anyhow!("task writer still shared"))?;
                w.fail(msg)?;
            }
        }
        None => {
            for (_, w) in pending {
                w.task(name, TaskMode::Changes)?.fail(msg)?;
            }
        }
    }
    Ok(())
}

/// Content streamed by a collector (`content.download`) into the current task's writers, one
/// chunked copy per sink; items then refer to it by the id handed back to the plugin.
#[derive(Default)]
struct RunContent {
    writers: Mutex<Vec<Arc<TaskWriter>>>,
    stored: Mutex<HashMap<String, Vec<cairn_repository::ContentRef>>>,
    next: AtomicU64,
}

impl RunContent {
    fn set_writers(&self, ws: Vec<Arc<TaskWriter>>) {
        *self.writers.lock().expect("content lock") = ws;
    }

    fn clear(&self) {
        self.writers.lock().expect("content lock").clear();
        self.stored.lock().expect("content lock").clear();
    }

    fn take(&self, id: &str) -> Option<Vec<cairn_repository::ContentRef>> {
        self.stored.lock().expect("content lock").remove(id)
    }
}

impl ContentStore for RunContent {
    fn store(&self, reader: &mut dyn Read) -> Result<ContentRef, String> {
        self.store_typed(reader, None)
    }

    /// Chunks by the plugin's media type: MIME structure for `message/rfc822` (so a shared
    /// attachment is stored once), content-defined otherwise. Several downloads of one
    /// `download-many` call store at once (each into its own content writers).
    fn store_typed(
        &self,
        reader: &mut dyn Read,
        content_type: Option<&str>,
    ) -> Result<ContentRef, String> {
        let writers = self.writers.lock().expect("content lock").clone();
        if writers.is_empty() {
            return Err(
                "content can only be stored while a task runs (after its first step)".into(),
            );
        }
        let chunking = content_type
            .map(Chunking::for_content_type)
            .unwrap_or_default();
        let mut sinks: Vec<_> = writers
            .iter()
            .map(|w| w.content_writer_with(chunking))
            .collect();
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| format!("reading the download: {e}"))?;
            if n == 0 {
                break;
            }
            for s in &mut sinks {
                s.write_all(&buf[..n])
                    .map_err(|e| format!("storing content: {e}"))?;
            }
            size += n as u64;
        }
        let refs = sinks
            .into_iter()
            .map(|s| s.finish().map_err(|e| format!("storing content: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let id = format!("run-content-{}", self.next.fetch_add(1, Ordering::Relaxed));
        self.stored
            .lock()
            .expect("content lock")
            .insert(id.clone(), refs);
        Ok(ContentRef { id, size })
    }

    fn read(&self, _content: &ContentRef, _offset: u64, _len: u32) -> Result<Vec<u8>, String> {
        Err("collectors cannot read stored content back".into())
    }
}
