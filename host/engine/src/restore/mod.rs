//! Restore: selection against a snapshot, a combined plan across restorer plugins, apply in
//! dependency order with a journal in the repository, verify, and export to plain JSON files.
//!
//! - [`RestoreContext`]: the snapshot, one [`Part`] per collector (its items as a
//!   [`SnapshotView`], its [`Restorer`]), and the shared old → new id table ([`Remap`]).
//! - [`plan`] resolves a [`Selector`] per collector, asks each restorer to plan, and combines
//!   the actions into a [`Plan`] (ids prefixed with the collector name, a plan hash).
//! - [`apply`] runs the plan: collectors in order (entra first), within one collector
//!   independent actions run concurrently; every result goes to the journal
//!   (`journals/<restore id>/…` in the repository) as it arrives; actions journaled as done
//!   by an earlier run of the same restore are skipped and its id mappings pre-loaded.
//! - [`verify`] plans again with the same requests: what remains (other than manual steps) is
//!   a difference.
//! - [`export`] writes the selected items as JSON files.

mod export;
mod journal;
mod restorer;
mod select;
mod view;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use cairn_repository::{Id, Repository, Snapshot};
use cairn_runtime::types::{Action, ActionKind, RestoreRequest, Selected};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use export::{export, ExportReport};
pub use journal::{outcome_counts, read_journal, JournalEntry, JournalWriter, Prior};
pub use restorer::{Remap, Restorer, WasmRestorer};
pub use select::{glob_match, resolve, SelectedItem, Selector};
pub use view::SnapshotView;

/// Format name of plan documents.
pub const PLAN_FORMAT: &str = "cairn-restore-plan/1";

/// One collector's part of a restore.
pub struct Part {
    /// The collector's manifest name (prefix of action ids).
    pub collector: String,
    /// Its items in the snapshot.
    pub view: Arc<SnapshotView>,
    /// Its restorer; `None` if the plugin cannot restore (its items can still be exported).
    pub restorer: Option<Arc<dyn Restorer>>,
}

/// Everything a restore works with.
pub struct RestoreContext {
    pub snapshot_id: Id,
    pub snapshot: Snapshot,
    /// Collectors in apply order.
    pub parts: Vec<Part>,
    /// The shared id table the restorers' `remap` import uses.
    pub remap: Arc<Remap>,
    /// The connection restored into, when it is not each collector's own (cross-tenant).
    pub target_connection: Option<String>,
}

impl RestoreContext {
    /// Apply order: collectors of the `entra` plugin first (others look up re-created users
    /// and groups in `remap`), then the rest by name. `entra_first` names those collectors.
    pub fn order_parts(&mut self, entra: &[String]) {
        self.parts
            .sort_by_key(|p| (!entra.contains(&p.collector), p.collector.clone()));
    }

    fn part(&self, collector: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.collector == collector)
    }
}

/// The request one collector's restorer gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestDoc {
    pub selection: Vec<SelectedItem>,
    /// Options as JSON text.
    pub options: String,
}

impl RequestDoc {
    fn to_wit(&self) -> RestoreRequest {
        RestoreRequest {
            selection: self
                .selection
                .iter()
                .map(|s| Selected {
                    kind: s.kind.clone(),
                    id: s.id.clone(),
                    attributes: s.attributes.clone(),
                })
                .collect(),
            options: self.options.clone(),
        }
    }
}

/// One action of the combined plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanAction {
    /// `<collector>:<plugin's action id>`.
    pub id: String,
    pub plugin: String,
    /// The id the plugin gave it.
    pub action: String,
    /// `undelete`, `recreate`, `update`, `link`, `unlink`, `manual`.
    pub kind: String,
    pub item_kind: String,
    pub item_id: String,
    pub display_name: String,
    pub summary: String,
    pub reason: String,
    /// Prefixed ids of actions that must be applied first.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Private to the plugin.
    pub payload: String,
}

impl PlanAction {
    fn to_wit(&self) -> Action {
        let prefix = format!("{}:", self.plugin);
        Action {
            id: self.action.clone(),
            kind: parse_kind(&self.kind).unwrap_or(ActionKind::Manual),
            item_kind: self.item_kind.clone(),
            item_id: self.item_id.clone(),
            display_name: self.display_name.clone(),
            summary: self.summary.clone(),
            reason: self.reason.clone(),
            depends_on: self
                .depends_on
                .iter()
                .map(|d| d.strip_prefix(&prefix).unwrap_or(d).to_string())
                .collect(),
            payload: self.payload.clone(),
        }
    }

    /// True for steps the operator must do.
    pub fn is_manual(&self) -> bool {
        self.kind == "manual"
    }
}

/// The name of an action kind.
pub fn kind_name(k: ActionKind) -> &'static str {
    match k {
        ActionKind::Undelete => "undelete",
        ActionKind::Recreate => "recreate",
        ActionKind::Update => "update",
        ActionKind::Link => "link",
        ActionKind::Unlink => "unlink",
        ActionKind::Manual => "manual",
    }
}

fn parse_kind(s: &str) -> Option<ActionKind> {
    Some(match s {
        "undelete" => ActionKind::Undelete,
        "recreate" => ActionKind::Recreate,
        "update" => ActionKind::Update,
        "link" => ActionKind::Link,
        "unlink" => ActionKind::Unlink,
        "manual" => ActionKind::Manual,
        _ => return None,
    })
}

/// A combined restore plan (the `--json` output of `cairn restore plan`, and what
/// `cairn restore apply --plan` reads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub format: String,
    /// Names the restore: the same snapshot, target, selection and options give the same id,
    /// so re-running a restore continues its journal.
    pub restore_id: String,
    pub snapshot: String,
    pub snapshot_time: String,
    /// BLAKE3 of the restore id, requests and actions (not the creation time).
    pub plan_hash: String,
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_connection: Option<String>,
    pub selector: Selector,
    pub options: serde_json::Value,
    /// Per collector: what its restorer was asked.
    pub requests: BTreeMap<String, RequestDoc>,
    /// In dependency order.
    pub actions: Vec<PlanAction>,
}

impl Plan {
    /// Counts of actions by kind, and of non-manual actions by item kind.
    pub fn summary(&self) -> serde_json::Value {
        let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
        let mut by_item: BTreeMap<&str, usize> = BTreeMap::new();
        for a in &self.actions {
            *by_kind.entry(&a.kind).or_default() += 1;
            *by_item.entry(&a.item_kind).or_default() += 1;
        }
        let selected: usize = self.requests.values().map(|r| r.selection.len()).sum();
        json!({"restoreId": self.restore_id, "snapshot": self.snapshot, "planHash": self.plan_hash,
               "selected": selected, "actions": self.actions.len(),
               "byKind": by_kind, "byItemKind": by_item})
    }
}

/// The restore id for a snapshot, target, selector and options.
pub fn restore_id(
    snapshot: &Id,
    target: Option<&str>,
    selector: &Selector,
    options: &serde_json::Value,
) -> String {
    let doc = json!({"snapshot": snapshot.to_string(), "target": target,
                     "selector": selector, "options": options});
    let bytes = cairn_repository::canonical::to_canonical_vec(&doc).expect("serialises");
    format!("r-{}", &blake3::hash(&bytes).to_hex()[..16])
}

/// The options each restorer gets: the caller's, plus `onlyMissing` and `snapshotTime`.
pub fn full_options(
    ctx: &RestoreContext,
    selector: &Selector,
    options: &serde_json::Value,
) -> serde_json::Value {
    let mut o = if options.is_object() {
        options.clone()
    } else {
        json!({})
    };
    o["onlyMissing"] = json!(selector.only_missing);
    o["snapshotTime"] = json!(ctx.snapshot.time);
    if o.get("crossTenant").is_none() {
        o["crossTenant"] = json!(false);
    }
    o
}

/// Plans a restore. Collectors whose plugin cannot restore are left out of the plan (with a
/// warning) unless the selection names none of their items.
pub fn plan(
    ctx: &RestoreContext,
    selector: &Selector,
    options: &serde_json::Value,
) -> anyhow::Result<Plan> {
    let options = full_options(ctx, selector, options);
    let rid = restore_id(
        &ctx.snapshot_id,
        ctx.target_connection.as_deref(),
        selector,
        &options,
    );
    let mut requests = BTreeMap::new();
    for part in &ctx.parts {
        let selection = resolve(&part.view, selector);
        if selection.is_empty() {
            continue;
        }
        if part.restorer.is_none() {
            tracing::warn!(
                collector = %part.collector,
                items = selection.len(),
                "the collector's plugin cannot restore; its items are left out of the plan"
            );
            continue;
        }
        requests.insert(
            part.collector.clone(),
            RequestDoc {
                selection,
                options: options.to_string(),
            },
        );
    }
    let actions = plan_requests(ctx, &requests)?;
    let mut plan = Plan {
        format: PLAN_FORMAT.into(),
        restore_id: rid,
        snapshot: ctx.snapshot_id.to_string(),
        snapshot_time: ctx.snapshot.time.clone(),
        plan_hash: String::new(),
        created: now(),
        target_connection: ctx.target_connection.clone(),
        selector: selector.clone(),
        options,
        requests,
        actions,
    };
    plan.plan_hash = plan_hash(&plan);
    Ok(plan)
}

/// The hash of a plan's content (restore id, requests, actions).
pub fn plan_hash(plan: &Plan) -> String {
    let doc =
        json!({"restoreId": plan.restore_id, "requests": plan.requests, "actions": plan.actions});
    let bytes = cairn_repository::canonical::to_canonical_vec(&doc).expect("serialises");
    blake3::hash(&bytes).to_hex()[..32].to_string()
}

/// Runs each collector's restorer on its request; combines and orders the actions.
fn plan_requests(
    ctx: &RestoreContext,
    requests: &BTreeMap<String, RequestDoc>,
) -> anyhow::Result<Vec<PlanAction>> {
    let mut out = Vec::new();
    for part in &ctx.parts {
        let Some(req) = requests.get(&part.collector) else {
            continue;
        };
        let restorer = part
            .restorer
            .as_ref()
            .ok_or_else(|| anyhow!("collector `{}` has no restorer", part.collector))?;
        let actions = restorer
            .plan(&req.to_wit())
            .map_err(|e| anyhow!("restorer `{}`: planning failed: {e}", part.collector))?;
        out.extend(combine(&part.collector, actions)?);
    }
    Ok(out)
}

/// Prefixes a plugin's actions and puts them in dependency order (stable: the plugin's own
/// order where dependencies allow). Unknown dependencies, duplicate ids and cycles are errors.
fn combine(collector: &str, actions: Vec<Action>) -> anyhow::Result<Vec<PlanAction>> {
    let mut index = HashMap::new();
    for (i, a) in actions.iter().enumerate() {
        if index.insert(a.id.clone(), i).is_some() {
            bail!(
                "restorer `{collector}` planned two actions with the id `{}`",
                a.id
            );
        }
    }
    let mut deps_left = vec![0usize; actions.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); actions.len()];
    for (i, a) in actions.iter().enumerate() {
        for d in &a.depends_on {
            let j = *index.get(d).ok_or_else(|| {
                anyhow!(
                    "restorer `{collector}`: action `{}` depends on `{d}`, which is not in its plan",
                    a.id
                )
            })?;
            deps_left[i] += 1;
            dependents[j].push(i);
        }
    }
    // Kahn's algorithm, always taking the lowest original index that is ready.
    let mut ready: std::collections::BTreeSet<usize> =
        (0..actions.len()).filter(|&i| deps_left[i] == 0).collect();
    let mut order = Vec::with_capacity(actions.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &k in &dependents[i] {
            deps_left[k] -= 1;
            if deps_left[k] == 0 {
                ready.insert(k);
            }
        }
    }
    if order.len() != actions.len() {
        let stuck: Vec<&str> = (0..actions.len())
            .filter(|i| deps_left[*i] > 0)
            .take(5)
            .map(|i| actions[i].id.as_str())
            .collect();
        bail!(
            "restorer `{collector}` planned a dependency cycle (e.g. {})",
            stuck.join(", ")
        );
    }
    Ok(order
        .into_iter()
        .map(|i| {
            let a = &actions[i];
            PlanAction {
                id: format!("{collector}:{}", a.id),
                plugin: collector.to_string(),
                action: a.id.clone(),
                kind: kind_name(a.kind).into(),
                item_kind: a.item_kind.clone(),
                item_id: a.item_id.clone(),
                display_name: a.display_name.clone(),
                summary: a.summary.clone(),
                reason: a.reason.clone(),
                depends_on: a
                    .depends_on
                    .iter()
                    .map(|d| format!("{collector}:{d}"))
                    .collect(),
                payload: a.payload.clone(),
            }
        })
        .collect())
}

/// Loads the journal of restore `restore_id` (if the repository has one) and pre-loads the id
/// mappings of every journaled restore into the same target (this one's last, so its own
/// mappings win): an object re-created by any earlier restore is found at its new id instead
/// of being created again. Returns what `restore_id`'s own journal recorded.
pub fn preload(ctx: &RestoreContext, repo: &Repository, restore_id: &str) -> anyhow::Result<Prior> {
    let mut others: Vec<(String, Prior)> = Vec::new();
    for id in repo.journals().context("listing restore journals")? {
        if id == restore_id {
            continue;
        }
        let j = read_journal(repo, &id)?;
        let Some(start) = j.starts.first() else {
            continue;
        };
        let target = start["targetConnection"].as_str();
        if target == ctx.target_connection.as_deref() {
            others.push((start["time"].as_str().unwrap_or("").to_string(), j));
        }
    }
    others.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, j) in &others {
        ctx.remap.preload(j.mappings.iter().cloned());
    }
    let prior = read_journal(repo, restore_id)?;
    ctx.remap.preload(prior.mappings.iter().cloned());
    Ok(prior)
}

/// How to apply.
pub struct ApplyOptions {
    /// Plugin instances (and actions) at once per collector.
    pub concurrency: usize,
    /// Where to journal (the repository restored from); `None` for no journal (drills).
    pub journal: Option<Repository>,
    /// Who runs it (`user@host`), for the journal.
    pub who: String,
    /// Called after every action (progress display).
    pub on_result: Option<ResultHook>,
}

/// A callback for each action's result.
pub type ResultHook = Box<dyn Fn(&JournalEntry) + Send + Sync>;

/// What an apply did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyReport {
    pub restore_id: String,
    pub plan_hash: String,
    /// Results of this run, in completion order.
    pub entries: Vec<JournalEntry>,
    /// Actions skipped because an earlier run journaled them as done.
    pub done_earlier: usize,
    pub counts: BTreeMap<String, usize>,
    pub duration_secs: f64,
    /// Journal records written (0 without a journal).
    pub journal_records: u64,
}

impl ApplyReport {
    /// Entries that failed or were skipped because a dependency failed.
    pub fn failures(&self) -> Vec<&JournalEntry> {
        self.entries
            .iter()
            .filter(|e| matches!(e.outcome.as_str(), "failed" | "skipped"))
            .collect()
    }
}

/// Applies `plan`. `prior` is what earlier runs of the restore journaled ([`preload`]).
pub fn apply(
    ctx: &RestoreContext,
    plan: &Plan,
    prior: &Prior,
    opts: &ApplyOptions,
) -> anyhow::Result<ApplyReport> {
    let started = Instant::now();
    if plan.format != PLAN_FORMAT {
        bail!(
            "not a restore plan of this Cairn (format `{}`, expected `{PLAN_FORMAT}`)",
            plan.format
        );
    }
    if plan.snapshot != ctx.snapshot_id.to_string() {
        bail!(
            "the plan is for snapshot {}, not {}",
            plan.snapshot,
            ctx.snapshot_id
        );
    }
    for a in &plan.actions {
        if ctx.part(&a.plugin).is_none() {
            bail!(
                "the plan has actions of collector `{}`, which this manifest does not have",
                a.plugin
            );
        }
    }
    let journal = match &opts.journal {
        Some(repo) => Some(JournalWriter::start(
            repo,
            &plan.restore_id,
            json!({"restoreId": plan.restore_id, "planHash": plan.plan_hash,
                   "snapshot": plan.snapshot, "who": opts.who, "time": now(),
                   "targetConnection": plan.target_connection, "selector": plan.selector,
                   "options": plan.options, "actions": plan.actions.len(),
                   "attempt": prior.attempts + 1}),
            ctx.remap.clone(),
        )?),
        None => None,
    };
    let results: Mutex<Vec<JournalEntry>> = Mutex::new(Vec::new());
    let mut done_earlier = 0usize;
    let mut abort: Option<String> = None;
    let sink = |e: JournalEntry| {
        if let Some(cb) = &opts.on_result {
            cb(&e);
        }
        if let Some(j) = &journal {
            j.record(e.clone());
        }
        results.lock().expect("results lock").push(e);
    };
    for part in &ctx.parts {
        let actions: Vec<&PlanAction> = plan
            .actions
            .iter()
            .filter(|a| a.plugin == part.collector)
            .collect();
        if actions.is_empty() {
            continue;
        }
        let restorer = part
            .restorer
            .clone()
            .ok_or_else(|| anyhow!("collector `{}` has no restorer", part.collector))?;
        let r = run_part(
            &actions,
            restorer.as_ref(),
            prior,
            opts.concurrency.max(1),
            &sink,
            || journal.as_ref().and_then(|j| j.error()),
        );
        done_earlier += r.done_earlier;
        if let Some(e) = r.aborted {
            abort = Some(e);
            break;
        }
    }
    let entries = results.into_inner().expect("results lock");
    let counts = outcome_counts(&entries);
    let duration = started.elapsed().as_secs_f64();
    let records = match journal {
        Some(j) => j.finish(
            json!({"time": now(), "counts": counts, "doneEarlier": done_earlier,
                                    "durationSecs": duration, "aborted": abort}),
        )?,
        None => 0,
    };
    if let Some(e) = abort {
        bail!("the apply stopped: the journal could not be written ({e}); nothing after that point was applied");
    }
    Ok(ApplyReport {
        restore_id: plan.restore_id.clone(),
        plan_hash: plan.plan_hash.clone(),
        entries,
        done_earlier,
        counts,
        duration_secs: duration,
        journal_records: records,
    })
}

struct PartResult {
    done_earlier: usize,
    aborted: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Waiting,
    Ok,
    Failed,
}

struct Sched {
    ready: VecDeque<usize>,
    deps_left: Vec<usize>,
    status: Vec<Status>,
    running: usize,
    done_earlier: usize,
    aborted: Option<String>,
}

/// Applies one collector's actions on `workers` threads in dependency order.
fn run_part(
    actions: &[&PlanAction],
    restorer: &dyn Restorer,
    prior: &Prior,
    workers: usize,
    sink: &(dyn Fn(JournalEntry) + Sync),
    journal_error: impl Fn() -> Option<String> + Sync,
) -> PartResult {
    let index: HashMap<&str, usize> = actions
        .iter()
        .enumerate()
        .map(|(i, a)| (a.id.as_str(), i))
        .collect();
    let mut deps_left = vec![0usize; actions.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); actions.len()];
    for (i, a) in actions.iter().enumerate() {
        for d in &a.depends_on {
            // Dependencies outside the plan (already applied or dropped) do not hold it up.
            if let Some(&j) = index.get(d.as_str()) {
                deps_left[i] += 1;
                dependents[j].push(i);
            }
        }
    }
    let sched = Mutex::new(Sched {
        ready: (0..actions.len()).filter(|&i| deps_left[i] == 0).collect(),
        deps_left,
        status: vec![Status::Waiting; actions.len()],
        running: 0,
        done_earlier: 0,
        aborted: None,
    });
    let cv = Condvar::new();

    let entry = |a: &PlanAction, outcome: &str, message: Option<String>| JournalEntry {
        action: a.id.clone(),
        plugin: a.plugin.clone(),
        kind: a.kind.clone(),
        item_kind: a.item_kind.clone(),
        item_id: a.item_id.clone(),
        display_name: a.display_name.clone(),
        new_id: None,
        outcome: outcome.into(),
        message,
        notes: Vec::new(),
        time: now(),
    };

    std::thread::scope(|scope| {
        for _ in 0..workers.min(actions.len()).max(1) {
            scope.spawn(|| loop {
                let i = {
                    let mut s = sched.lock().expect("sched lock");
                    loop {
                        if s.aborted.is_some() {
                            return;
                        }
                        if let Some(i) = s.ready.pop_front() {
                            s.running += 1;
                            break i;
                        }
                        if s.running == 0 {
                            return;
                        }
                        s = cv.wait(s).expect("sched lock");
                    }
                };
                if let Some(e) = journal_error() {
                    let mut s = sched.lock().expect("sched lock");
                    s.aborted = Some(e);
                    s.running -= 1;
                    cv.notify_all();
                    return;
                }
                let a = actions[i];
                let ok = if prior.done.contains_key(&a.id) {
                    sched.lock().expect("sched lock").done_earlier += 1;
                    true
                } else if a.is_manual() {
                    sink(entry(a, "manual", Some(a.summary.clone())));
                    true
                } else {
                    match restorer.apply(&a.to_wit()) {
                        Ok(o) => {
                            let mut e = entry(
                                a,
                                if o.already_done {
                                    "already-done"
                                } else {
                                    "done"
                                },
                                None,
                            );
                            e.new_id = o.new_id;
                            e.notes = o.notes;
                            sink(e);
                            true
                        }
                        Err(msg) => {
                            sink(entry(a, "failed", Some(msg)));
                            false
                        }
                    }
                };
                let mut skipped = Vec::new();
                {
                    let mut s = sched.lock().expect("sched lock");
                    s.running -= 1;
                    s.status[i] = if ok { Status::Ok } else { Status::Failed };
                    if ok {
                        for &k in &dependents[i] {
                            s.deps_left[k] -= 1;
                            if s.deps_left[k] == 0 && s.status[k] == Status::Waiting {
                                s.ready.push_back(k);
                            }
                        }
                    } else {
                        // Everything downstream is skipped.
                        let mut stack = dependents[i].clone();
                        while let Some(k) = stack.pop() {
                            if s.status[k] == Status::Waiting {
                                s.status[k] = Status::Failed;
                                skipped.push(k);
                                stack.extend(dependents[k].iter().copied());
                            }
                        }
                    }
                    cv.notify_all();
                }
                for k in skipped {
                    sink(entry(
                        actions[k],
                        "skipped",
                        Some(format!("not applied: it depends on {}, which failed", a.id)),
                    ));
                }
            });
        }
    });
    let s = sched.into_inner().expect("sched lock");
    PartResult {
        done_earlier: s.done_earlier,
        aborted: s.aborted,
    }
}

/// What verify found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub restore_id: String,
    /// Actions a new plan still has (other than manual): differences that remain.
    pub remaining: Vec<PlanAction>,
    /// Manual steps: expected differences.
    pub manual: Vec<PlanAction>,
    /// Per item kind: selected items, and items with a remaining difference.
    pub per_kind: BTreeMap<String, KindFidelity>,
}

/// Fidelity of one item kind.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct KindFidelity {
    pub total: usize,
    pub differing: usize,
}

impl VerifyReport {
    /// True if nothing but manual steps remains.
    pub fn is_clean(&self) -> bool {
        self.remaining.is_empty()
    }

    /// (equal, total) over every kind.
    pub fn fidelity(&self) -> (usize, usize) {
        let total: usize = self.per_kind.values().map(|k| k.total).sum();
        let diff: usize = self.per_kind.values().map(|k| k.differing).sum();
        (total - diff.min(total), total)
    }
}

/// Plans the same requests again (with the id mappings of the apply) and reports what remains.
pub fn verify(ctx: &RestoreContext, plan: &Plan) -> anyhow::Result<VerifyReport> {
    let actions = plan_requests(ctx, &plan.requests).context("planning again to verify")?;
    Ok(verify_report(plan, actions))
}

/// The verify report of `actions`, a fresh plan of `plan`'s requests.
pub fn verify_report(plan: &Plan, actions: Vec<PlanAction>) -> VerifyReport {
    let (manual, remaining): (Vec<PlanAction>, Vec<PlanAction>) =
        actions.into_iter().partition(|a| a.is_manual());
    let mut per_kind: BTreeMap<String, KindFidelity> = BTreeMap::new();
    for req in plan.requests.values() {
        for s in &req.selection {
            per_kind.entry(s.kind.clone()).or_default().total += 1;
        }
    }
    let mut differing: std::collections::BTreeSet<(&str, &str)> = Default::default();
    for a in &remaining {
        differing.insert((&a.item_kind, &a.item_id));
    }
    for (kind, _) in differing {
        per_kind.entry(kind.to_string()).or_default().differing += 1;
    }
    VerifyReport {
        restore_id: plan.restore_id.clone(),
        remaining,
        manual,
        per_kind,
    }
}

/// Now, as the repository writes times.
pub fn now() -> String {
    cairn_repository::format_time(chrono::Utc::now())
}

/// `user@host` of this process, for journals.
pub fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

/// Builds the context of a restore from the manifest: one [`Part`] per collector (in apply
/// order), restorers bound to each collector's connection, or to `target` for a restore into
/// another tenant. Without `gateways`, no restorers (enough to export).
pub fn open_context(
    manifest: &cairn_manifest::Manifest,
    registry: &crate::PluginRegistry,
    gateways: Option<&BTreeMap<String, Arc<cairn_gateway::Gateway>>>,
    repo: &Repository,
    snapshot: &cairn_repository::SnapshotInfo,
    target: Option<(&str, Arc<cairn_gateway::Gateway>)>,
) -> anyhow::Result<RestoreContext> {
    use cairn_runtime::types::PluginKind;
    let remap = Arc::new(Remap::default());
    let mut parts = Vec::new();
    let mut entra = Vec::new();
    for (name, c) in &manifest.collectors {
        let plugin = registry
            .get(&crate::setup::plugin_ref(&c.plugin))
            .with_context(|| format!("collector `{name}`"))?;
        let view = Arc::new(SnapshotView::open(repo, &snapshot.snapshot, name)?);
        if plugin.name() == "entra" {
            entra.push(name.clone());
        }
        let can_restore = plugin
            .info()
            .kinds
            .iter()
            .any(|k| matches!(k, PluginKind::Restorer));
        let restorer: Option<Arc<dyn Restorer>> = match gateways.filter(|_| can_restore) {
            None => None,
            Some(gateways) => {
                let schema: serde_json::Value =
                    serde_json::from_str(&plugin.info().config_schema).unwrap_or_default();
                let config = cairn_manifest::resolve_plugin_config(manifest, c, &schema)
                    .map_err(|e| anyhow!("collector `{name}`: {e}"))?;
                let task = format!("restore/{name}");
                let graph = match &target {
                    Some((_, gw)) => gw.for_task(&task),
                    None => gateways
                        .get(&c.connection)
                        .ok_or_else(|| {
                            anyhow!("collector `{name}`: no connection `{}`", c.connection)
                        })?
                        .for_task(&task),
                };
                Some(Arc::new(WasmRestorer::new(
                    name,
                    plugin.clone(),
                    &config,
                    crate::setup::limits(&c.limits),
                    Some(graph),
                    view.clone(),
                    remap.clone(),
                )))
            }
        };
        parts.push(Part {
            collector: name.clone(),
            view,
            restorer,
        });
    }
    let mut ctx = RestoreContext {
        snapshot_id: snapshot.id,
        snapshot: snapshot.snapshot.clone(),
        parts,
        remap,
        target_connection: target.map(|(n, _)| n.to_string()),
    };
    ctx.order_parts(&entra);
    Ok(ctx)
}
