//! `cairn restore plan|apply|verify|journal|export` and `cairn drill`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use cairn_engine::restore::{
    self, full_options, open_context, preload, restore_id, ApplyOptions, ApplyReport, Plan,
    PlanAction, RestoreContext, Selector, VerifyReport,
};
use cairn_engine::setup::{gateways, OpenSink};
use cairn_engine::PluginRegistry;
use cairn_manifest::Manifest;
use clap::{Args, Subcommand};
use serde_json::json;

use super::common::{load_manifest, open_repo, print_json, registry, short, ManifestArg, RepoArgs};
use crate::exit::Failure;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct RestoreArgs {
    #[command(subcommand)]
    pub command: Option<RestoreCommand>,
    /// Without a subcommand: plan.
    #[command(flatten)]
    pub plan: PlanArgs,
}

#[derive(Subcommand)]
pub enum RestoreCommand {
    /// Compare the snapshot with the live tenant and list the actions a restore would take.
    Plan(PlanArgs),
    /// Apply a plan (from --plan, or planned now from the same selection).
    Apply(ApplyArgs),
    /// After apply: plan again and report what still differs (exit 3 if anything does).
    Verify(VerifyArgs),
    /// Show restore journals: without an id, every restore; with one, its actions.
    Journal(JournalArgs),
    /// Write the selected items as plain JSON files, one per object.
    Export(ExportArgs),
}

/// Which snapshot, which items, how.
#[derive(Args, Clone)]
pub struct SelectArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Snapshot id (or a unique prefix), or `latest` (default).
    pub snapshot: Option<String>,
    /// Only items of these kinds (`user`, `group`, `conditionalAccessPolicy`, …).
    #[arg(long = "kind", value_delimiter = ',')]
    pub kinds: Vec<String>,
    /// Only these items: `id` or `kind/id` (repeatable).
    #[arg(long = "id")]
    pub ids: Vec<String>,
    /// Only items whose display name matches this glob (`*`, `?`; case-insensitive).
    #[arg(long = "name")]
    pub names: Vec<String>,
    /// Everything deleted since snapshot S: S's items that are absent from the live tenant.
    #[arg(long = "deleted-since", value_name = "SNAPSHOT")]
    pub deleted_since: Option<String>,
    /// Attribute-level restore: only these attributes (e.g. `jobTitle,department`).
    #[arg(long, value_delimiter = ',')]
    pub attributes: Vec<String>,
    /// State of restored Conditional Access policies.
    #[arg(long = "ca-state", default_value = "report-only", value_parser = ["report-only", "as-backed-up"])]
    pub ca_state: String,
    /// Restore into this connection of the manifest (another tenant): every object re-created.
    #[arg(long = "target-connection", value_name = "NAME")]
    pub target_connection: Option<String>,
    /// Cross-tenant: rewrite a UPN/mail domain, `old=new` (repeatable).
    #[arg(long = "domain-map", value_name = "OLD=NEW")]
    pub domain_map: Vec<String>,
    /// Mail: restore into another mailbox (user id or UPN).
    #[arg(long = "target-mailbox")]
    pub target_mailbox: Option<String>,
    /// Mail: the folder to restore into.
    #[arg(long = "restore-folder")]
    pub restore_folder: Option<String>,
    /// Sharing links: also remove links and grants added after the snapshot.
    #[arg(long = "revoke-added")]
    pub revoke_added: bool,
}

#[derive(Args, Clone)]
pub struct PlanArgs {
    #[command(flatten)]
    pub select: Box<SelectArgs>,
    /// Print the plan as JSON (the document `apply --plan` reads) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Only counts.
    #[arg(long)]
    pub summary: bool,
    /// Also write the plan (JSON) to this file.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub select: Box<SelectArgs>,
    /// A plan written by `cairn restore plan -o FILE` (instead of planning now).
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Apply without asking (required when stdin is not a terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Actions applied at once per plugin (plugin instances).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub select: Box<SelectArgs>,
    /// Verify the requests of this plan file.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct JournalArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// A restore id (or unique prefix); without it, every restore is listed.
    pub restore: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub select: Box<SelectArgs>,
    /// The directory to write into.
    #[arg(long = "out", short = 'o', value_name = "DIR")]
    pub out: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct DrillArgs {
    #[command(flatten)]
    pub select: Box<SelectArgs>,
    /// Seed of the fresh simulated tenant.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Actions applied at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: RestoreArgs) -> Result<(), Failure> {
    match args.command {
        None => plan_cmd(args.plan),
        Some(RestoreCommand::Plan(a)) => plan_cmd(a),
        Some(RestoreCommand::Apply(a)) => apply_cmd(a),
        Some(RestoreCommand::Verify(a)) => verify_cmd(a),
        Some(RestoreCommand::Journal(a)) => journal_cmd(a),
        Some(RestoreCommand::Export(a)) => export_cmd(a),
    }
}

/// What every restore command opens.
struct Opened {
    manifest: Manifest,
    registry: PluginRegistry,
    sink: OpenSink,
}

fn open(select: &SelectArgs) -> Result<Opened, Failure> {
    let manifest = load_manifest(&select.manifest.path)?;
    if select.repo.identity.is_empty() {
        return Err(Failure::usage(
            "a restore reads item contents: pass the restore key with -i/--identity FILE",
        ));
    }
    let registry = registry()?;
    let sink = open_repo(&manifest, &registry, &select.repo)?;
    Ok(Opened {
        manifest,
        registry,
        sink,
    })
}

impl SelectArgs {
    fn snapshot_spec(&self) -> Result<String, Failure> {
        match (&self.snapshot, &self.deleted_since) {
            (Some(a), Some(b)) if a != b => Err(Failure::usage(format!(
                "--deleted-since {b} restores from snapshot {b}; do not also name snapshot {a}"
            ))),
            (_, Some(s)) => Ok(s.clone()),
            (Some(s), None) => Ok(s.clone()),
            (None, None) => Ok("latest".into()),
        }
    }

    fn selector(&self) -> Selector {
        Selector {
            kinds: self.kinds.clone(),
            ids: self.ids.clone(),
            names: self.names.clone(),
            attributes: self.attributes.clone(),
            only_missing: self.deleted_since.is_some(),
        }
    }

    fn options(&self) -> Result<serde_json::Value, Failure> {
        let mut domain_map = serde_json::Map::new();
        for m in &self.domain_map {
            let (a, b) = m
                .split_once('=')
                .ok_or_else(|| Failure::usage(format!("--domain-map `{m}`: expected OLD=NEW")))?;
            domain_map.insert(a.trim().to_string(), json!(b.trim()));
        }
        let mut o = json!({"caState": self.ca_state,
                           "crossTenant": self.target_connection.is_some(),
                           "revokeAdded": self.revoke_added});
        if !domain_map.is_empty() {
            o["domainMap"] = serde_json::Value::Object(domain_map);
        }
        if let Some(m) = &self.target_mailbox {
            o["targetMailbox"] = json!(m);
        }
        if let Some(f) = &self.restore_folder {
            o["restoreFolder"] = json!(f);
        }
        Ok(o)
    }
}

/// Opens the restore context of `snapshot` (restorers bound to their connections, or to the
/// target connection).
fn context(
    o: &Opened,
    snapshot: &str,
    target: Option<&str>,
    with_restorers: bool,
) -> Result<RestoreContext, Failure> {
    let info = o
        .sink
        .repo
        .find_snapshot(snapshot)
        .map_err(|e| Failure::usage(format!("snapshot `{snapshot}`: {e}")))?;
    let gws = if with_restorers {
        Some(gateways(&o.manifest)?)
    } else {
        None
    };
    let target = match target {
        Some(name) => {
            let gw = gws
                .as_ref()
                .and_then(|g| g.get(name))
                .cloned()
                .ok_or_else(|| {
                    Failure::usage(format!(
                        "--target-connection {name}: there is no [connections.{name}] in {}",
                        o.manifest.file_name()
                    ))
                })?;
            Some((name, gw))
        }
        None => None,
    };
    let ctx = open_context(
        &o.manifest,
        &o.registry,
        gws.as_ref(),
        &o.sink.repo,
        &info,
        target,
    )?;
    for p in &ctx.parts {
        p.view
            .probe()
            .map_err(|e| Failure::usage(format!("{e:#}")))?;
    }
    Ok(ctx)
}

/// Plans from the command line's selection, with the journal of the same restore pre-loaded.
fn plan_selection(o: &Opened, select: &SelectArgs) -> Result<(RestoreContext, Plan), Failure> {
    let ctx = context(
        o,
        &select.snapshot_spec()?,
        select.target_connection.as_deref(),
        true,
    )?;
    let selector = select.selector();
    let options = select.options()?;
    let rid = restore_id(
        &ctx.snapshot_id,
        ctx.target_connection.as_deref(),
        &selector,
        &full_options(&ctx, &selector, &options),
    );
    preload(&ctx, &o.sink.repo, &rid)?;
    let plan = restore::plan(&ctx, &selector, &options)?;
    Ok((ctx, plan))
}

fn plan_cmd(args: PlanArgs) -> Result<(), Failure> {
    let o = open(&args.select)?;
    let started = Instant::now();
    let (_ctx, plan) = plan_selection(&o, &args.select)?;
    let secs = started.elapsed().as_secs_f64();
    if let Some(path) = &args.out {
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&plan).expect("serialisable"),
        )
        .map_err(|e| Failure::failed(format!("writing {}: {e}", path.display())))?;
    }
    if args.json {
        print_json(&plan);
    } else if args.summary {
        print_summary(&plan);
    } else {
        print_plan(&plan);
        eprintln!("planned in {secs:.1}s");
    }
    Ok(())
}

fn print_summary(plan: &Plan) {
    let s = plan.summary();
    println!(
        "restore {}  snapshot {}  plan {}",
        plan.restore_id,
        short(&plan.snapshot),
        &plan.plan_hash[..12]
    );
    println!("{} selected items, {} actions", s["selected"], s["actions"]);
    for (k, n) in s["byKind"].as_object().into_iter().flatten() {
        println!("  {k:<10} {n}");
    }
    for (k, n) in s["byItemKind"].as_object().into_iter().flatten() {
        println!("  {k:<32} {n}");
    }
}

/// The plan as a table in dependency order, then the manual steps spelled out.
pub fn print_plan(plan: &Plan) {
    if plan.actions.is_empty() {
        println!(
            "Nothing to restore: the selected items of snapshot {} match the tenant.",
            short(&plan.snapshot)
        );
        return;
    }
    print_actions(plan, |_| true);
    print_plan_footer(plan);
}

/// The plan's actions that `keep` selects, as a table numbered in plan order.
pub fn print_actions(plan: &Plan, keep: impl Fn(&PlanAction) -> bool) {
    println!(
        "{:>5}  {:<9} {:<26} {:<34} SUMMARY — REASON",
        "#", "ACTION", "KIND", "ITEM"
    );
    for (i, a) in plan.actions.iter().enumerate().filter(|(_, a)| keep(a)) {
        let item = if a.display_name.is_empty() {
            a.item_id.clone()
        } else {
            a.display_name.clone()
        };
        println!(
            "{:>5}  {:<9} {:<26} {:<34} {} — {}",
            i + 1,
            a.kind,
            a.item_kind,
            cut(&item, 34),
            a.summary,
            a.reason
        );
    }
}

/// The manual steps spelled out, then the plan's totals.
pub fn print_plan_footer(plan: &Plan) {
    let manual: Vec<_> = plan.actions.iter().filter(|a| a.is_manual()).collect();
    if !manual.is_empty() {
        println!("\nManual steps (Graph cannot do these; the operator must):");
        for a in manual {
            println!("  - {}", a.summary);
        }
    }
    let s = plan.summary();
    let counts: Vec<String> = s["byKind"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    println!(
        "\nrestore {} (plan {}): {} actions ({}) from snapshot {} ({})",
        plan.restore_id,
        &plan.plan_hash[..12],
        plan.actions.len(),
        counts.join(", "),
        short(&plan.snapshot),
        plan.snapshot_time
    );
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn read_plan(path: &PathBuf) -> Result<Plan, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::usage(format!("reading {}: {e}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Failure::usage(format!(
            "{} is not a restore plan (write one with `cairn restore plan -o FILE`): {e}",
            path.display()
        ))
    })
}

fn apply_cmd(args: ApplyArgs) -> Result<(), Failure> {
    let interactive = std::io::stdin().is_terminal();
    if !args.yes && !interactive {
        return Err(Failure::usage(
            "refusing to apply without confirmation: stdin is not a terminal; pass --yes to apply non-interactively",
        ));
    }
    let o = open(&args.select)?;
    let (ctx, plan) = match &args.plan {
        Some(path) => {
            let plan = read_plan(path)?;
            let ctx = context(&o, &plan.snapshot, plan.target_connection.as_deref(), true)?;
            (ctx, plan)
        }
        None => plan_selection(&o, &args.select)?,
    };
    let prior = preload(&ctx, &o.sink.repo, &plan.restore_id)?;
    let pending = plan
        .actions
        .iter()
        .filter(|a| !prior.done.contains_key(&a.id))
        .count();
    if !args.yes {
        print_plan(&plan);
        eprint!(
            "\nApply {pending} action(s) of restore {} to the tenant? [y/N] ",
            plan.restore_id
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(|e| Failure::failed(e.to_string()))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(Failure::usage("not applied"));
        }
    }
    let report = restore::apply(
        &ctx,
        &plan,
        &prior,
        &ApplyOptions {
            concurrency: args.concurrency,
            journal: Some(o.sink.repo.clone()),
            who: restore::who(),
            on_result: Some(Box::new(|e| {
                if matches!(e.outcome.as_str(), "failed" | "skipped") {
                    eprintln!(
                        "{} {}: {}",
                        e.outcome,
                        e.action,
                        e.message.as_deref().unwrap_or("")
                    );
                }
            })),
        },
    )?;
    if args.json {
        print_json(&report);
    } else {
        print_apply(&report);
    }
    apply_exit(&report)
}

pub fn print_apply(r: &ApplyReport) {
    print_apply_counts(r);
    // What the restorers reported about what they did: new sharing-link URLs (Graph issues
    // new ones), drafts, re-created ids.
    let noted: Vec<_> = r.entries.iter().filter(|e| !e.notes.is_empty()).collect();
    if !noted.is_empty() {
        println!("Notes:");
        for e in noted {
            for n in &e.notes {
                println!("  {} ({}): {n}", e.action, e.display_name);
            }
        }
    }
    let manual: Vec<_> = r.entries.iter().filter(|e| e.outcome == "manual").collect();
    if !manual.is_empty() {
        println!("Manual steps left to the operator:");
        for e in manual {
            println!("  - {}", e.message.as_deref().unwrap_or(""));
        }
    }
    print_apply_failures(r);
}

/// One line: what an apply did, and its journal.
pub fn print_apply_counts(r: &ApplyReport) {
    let counts: Vec<String> = r.counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!(
        "restore {}: {} in {:.1}s{}; journal: {} record(s) in the repository",
        r.restore_id,
        if counts.is_empty() {
            "nothing to do".to_string()
        } else {
            counts.join(", ")
        },
        r.duration_secs,
        if r.done_earlier > 0 {
            format!(" ({} done by an earlier run, skipped)", r.done_earlier)
        } else {
            String::new()
        },
        r.journal_records
    );
}

/// The actions an apply did not carry out, with the reason.
pub fn print_apply_failures(r: &ApplyReport) {
    let failures = r.failures();
    if !failures.is_empty() {
        println!("Not restored:");
        for e in failures {
            println!(
                "  {} {} ({}): {}",
                e.outcome,
                e.action,
                e.display_name,
                e.message.as_deref().unwrap_or("")
            );
        }
    }
}

fn apply_exit(r: &ApplyReport) -> Result<(), Failure> {
    let failed = r.failures().len();
    if failed > 0 {
        return Err(Failure {
            code: 3,
            message: format!(
                "{failed} action(s) were not applied (listed above); fix the cause and run the same apply again — done actions are skipped"
            ),
        });
    }
    Ok(())
}

fn verify_cmd(args: VerifyArgs) -> Result<(), Failure> {
    let o = open(&args.select)?;
    let (snapshot, target, selector, options) = match &args.plan {
        Some(path) => {
            let plan = read_plan(path)?;
            (
                plan.snapshot.clone(),
                plan.target_connection.clone(),
                plan.selector.clone(),
                plan.options.clone(),
            )
        }
        None => (
            args.select.snapshot_spec()?,
            args.select.target_connection.clone(),
            args.select.selector(),
            args.select.options()?,
        ),
    };
    let ctx = context(&o, &snapshot, target.as_deref(), true)?;
    let full = full_options(&ctx, &selector, &options);
    let rid = restore_id(
        &ctx.snapshot_id,
        ctx.target_connection.as_deref(),
        &selector,
        &full,
    );
    let prior = preload(&ctx, &o.sink.repo, &rid)?;
    // "Only what is missing" would skip everything the restore brought back: verify those
    // objects in full instead (the restored scope, from the journal).
    let scope = match restored_scope(&prior, &selector) {
        Some(narrow) if selector.only_missing => narrow,
        _ => selector,
    };
    let mut plan = restore::plan(&ctx, &scope, &options)?;
    plan.restore_id = rid;
    let actions = plan.actions.clone();
    let report = restore::verify_report(&plan, actions);
    if args.json {
        print_json(&report);
    } else {
        print_verify(&report);
    }
    verify_exit(&report)
}

/// The objects a restore acted on (from its journal), selected whole.
fn restored_scope(prior: &restore::Prior, selector: &Selector) -> Option<Selector> {
    let ids: std::collections::BTreeSet<String> = prior
        .entries
        .iter()
        .map(|e| format!("{}/{}", e.item_kind, e.item_id))
        .collect();
    if ids.is_empty() {
        return None;
    }
    Some(Selector {
        ids: ids.into_iter().collect(),
        attributes: selector.attributes.clone(),
        ..Default::default()
    })
}

pub fn print_verify(r: &VerifyReport) {
    let (equal, total) = r.fidelity();
    if r.is_clean() {
        println!(
            "restore {}: clean — the restored scope matches the snapshot ({equal}/{total} items)",
            r.restore_id
        );
    } else {
        println!(
            "restore {}: {} difference(s) remain ({equal}/{total} items equal):",
            r.restore_id,
            r.remaining.len()
        );
        for a in &r.remaining {
            println!(
                "  {:<9} {:<26} {} — {}",
                a.kind, a.item_kind, a.display_name, a.reason
            );
        }
    }
    if !r.manual.is_empty() {
        println!("Expected differences (manual steps):");
        for a in &r.manual {
            println!("  - {}", a.summary);
        }
    }
}

fn verify_exit(r: &VerifyReport) -> Result<(), Failure> {
    if r.is_clean() {
        Ok(())
    } else {
        Err(Failure {
            code: 3,
            message: format!("{} difference(s) remain", r.remaining.len()),
        })
    }
}

fn journal_cmd(args: JournalArgs) -> Result<(), Failure> {
    let manifest = load_manifest(&args.manifest.path)?;
    let reg = registry()?;
    let sink = open_repo(&manifest, &reg, &args.repo)?;
    let repo = &sink.repo;
    let ids = repo
        .journals()
        .map_err(|e| Failure::failed(e.to_string()))?;
    let Some(want) = &args.restore else {
        let mut rows = Vec::new();
        for id in &ids {
            let j = restore::read_journal(repo, id)?;
            let first = j.starts.first().cloned().unwrap_or_default();
            let last_end = j.ends.last().cloned().unwrap_or_default();
            rows.push(json!({"restoreId": id, "attempts": j.attempts,
                             "started": first["time"], "who": first["who"],
                             "snapshot": first["snapshot"], "planHash": first["planHash"],
                             "actions": j.entries.len(), "done": j.done.len(),
                             "lastCounts": last_end["counts"],
                             "finished": !j.ends.is_empty()}));
        }
        if args.json {
            print_json(&rows);
        } else if rows.is_empty() {
            println!("no restores journaled in this repository");
        } else {
            println!(
                "{:<20} {:<22} {:<24} {:>8} {:>7} {:>6}",
                "RESTORE", "STARTED", "WHO", "ENTRIES", "DONE", "RUNS"
            );
            for r in rows {
                println!(
                    "{:<20} {:<22} {:<24} {:>8} {:>7} {:>6}",
                    r["restoreId"].as_str().unwrap_or(""),
                    cut(r["started"].as_str().unwrap_or(""), 22),
                    cut(r["who"].as_str().unwrap_or(""), 24),
                    r["actions"],
                    r["done"],
                    r["attempts"]
                );
            }
        }
        return Ok(());
    };
    let matches: Vec<&String> = ids
        .iter()
        .filter(|i| i.starts_with(want.as_str()))
        .collect();
    let id = match matches.as_slice() {
        [one] => (*one).clone(),
        [] => {
            return Err(Failure::usage(format!(
                "no restore journal `{want}` in this repository (list them with `cairn restore journal`)"
            )))
        }
        many => {
            return Err(Failure::usage(format!(
                "`{want}` matches several restores: {}",
                many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )))
        }
    };
    let j = restore::read_journal(repo, &id)?;
    if args.json {
        print_json(&json!({"restoreId": id, "starts": j.starts, "ends": j.ends,
                           "entries": j.entries, "mappings": j.mappings}));
        return Ok(());
    }
    for s in &j.starts {
        println!(
            "run {} of {id}: started {} by {}, plan {}, snapshot {}",
            s["attempt"],
            s["time"].as_str().unwrap_or("?"),
            s["who"].as_str().unwrap_or("?"),
            cut(s["planHash"].as_str().unwrap_or("?"), 12),
            short(s["snapshot"].as_str().unwrap_or("?"))
        );
    }
    println!(
        "{:<22} {:<12} {:<9} {:<24} {:<30} OLD ID → NEW ID",
        "TIME", "OUTCOME", "ACTION", "KIND", "ITEM"
    );
    for e in &j.entries {
        println!(
            "{:<22} {:<12} {:<9} {:<24} {:<30} {}{}{}",
            cut(&e.time, 22),
            e.outcome,
            e.kind,
            e.item_kind,
            cut(&e.display_name, 30),
            e.item_id,
            e.new_id
                .as_deref()
                .map(|n| format!(" → {n}"))
                .unwrap_or_default(),
            e.message
                .as_deref()
                .map(|m| format!("  ({m})"))
                .unwrap_or_default()
        );
        for n in &e.notes {
            println!("{:<22} {n}", "");
        }
    }
    Ok(())
}

fn export_cmd(args: ExportArgs) -> Result<(), Failure> {
    let o = open(&args.select)?;
    let ctx = context(&o, &args.select.snapshot_spec()?, None, false)?;
    let report = restore::export(&ctx, &args.select.selector(), &args.out)?;
    if args.json {
        print_json(&report);
    } else {
        println!(
            "exported {} item(s) and {} part(s) ({} bytes) of snapshot {} to {}",
            report.items,
            report.parts,
            report.bytes,
            short(&ctx.snapshot_id.to_string()),
            report.dir.display()
        );
        for (k, n) in &report.per_kind {
            println!("  {k:<40} {n}");
        }
    }
    Ok(())
}

/// `cairn drill`: restore a snapshot into a fresh simulated tenant, verify, report.
pub fn drill(args: DrillArgs) -> Result<(), Failure> {
    use cairn_gateway::{Cloud, Credential, Gateway, GatewayConfig};
    use cairn_graph_sim::{Profile, SimConfig};

    let o = open(&args.select)?;
    let (rt, sim) = super::sim::start_in_process(SimConfig {
        // Another tenant, with its own domain: UPNs and mail go through the domain map.
        domain: format!("drill{}.onmicrosoft.com", args.seed),
        // Licensed for PIM, like the tenant a recovery restores into: role eligibilities
        // are restored and verified, not only listed as a manual step.
        pim: Some(true),
        ..SimConfig::new(Profile::Empty, args.seed)
    })?;
    let base = sim.base_url().trim_end_matches('/').to_string();
    let mut cfg = GatewayConfig::new(
        sim.tenant_id().to_string(),
        sim.client_id().to_string(),
        Credential::secret(sim.client_secret().to_string()),
    );
    cfg.name = "drill".into();
    cfg.cloud = Cloud::custom(&base, &base).map_err(|e| Failure::failed(e.to_string()))?;
    let gw = Gateway::connect(cfg).map_err(|e| Failure::failed(e.to_string()))?;
    eprintln!(
        "==> drill: fresh simulated tenant {} ({}) at {base}",
        sim.domain(),
        sim.tenant_id()
    );

    let info = o
        .sink
        .repo
        .find_snapshot(&args.select.snapshot_spec()?)
        .map_err(|e| Failure::usage(e.to_string()))?;
    let gws = gateways(&o.manifest)?;
    let ctx = open_context(
        &o.manifest,
        &o.registry,
        Some(&gws),
        &o.sink.repo,
        &info,
        Some(("drill", gw.clone())),
    )?;
    for p in &ctx.parts {
        p.view
            .probe()
            .map_err(|e| Failure::usage(format!("{e:#}")))?;
    }
    let selector = args.select.selector();
    let mut options = args.select.options()?;
    options["crossTenant"] = json!(true);
    // Every verified domain of the backed-up tenant maps to the drill tenant's domain.
    let mut domain_map: BTreeMap<String, String> = BTreeMap::new();
    for p in &ctx.parts {
        for e in p.view.entries().filter(|e| e.kind == "domain") {
            domain_map.insert(e.id.clone(), sim.domain().to_string());
        }
    }
    for m in &args.select.domain_map {
        if let Some((a, b)) = m.split_once('=') {
            domain_map.insert(a.trim().into(), b.trim().into());
        }
    }
    if !domain_map.is_empty() {
        options["domainMap"] = json!(domain_map);
    }

    let started = Instant::now();
    let plan = restore::plan(&ctx, &selector, &options)?;
    let plan_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "==> planned {} actions in {plan_secs:.1}s; applying",
        plan.actions.len()
    );
    let report = restore::apply(
        &ctx,
        &plan,
        &Default::default(),
        &ApplyOptions {
            concurrency: args.concurrency,
            journal: None,
            who: restore::who(),
            on_result: None,
        },
    )?;
    let recovery = started.elapsed().as_secs_f64();
    let v = restore::verify(&ctx, &plan)?;
    let verify_secs = started.elapsed().as_secs_f64() - recovery;
    let (equal, total) = v.fidelity();
    let requests = gw.stats().total.requests;
    let per_kind: BTreeMap<&String, serde_json::Value> = v
        .per_kind
        .iter()
        .filter(|(_, k)| k.total > 0)
        .map(|(kind, k)| {
            (
                kind,
                json!({"equal": k.total - k.differing.min(k.total), "total": k.total}),
            )
        })
        .collect();
    let failures = report.failures();
    if args.json {
        print_json(&json!({
            "snapshot": info.id.to_string(), "tenant": sim.tenant_id(),
            "recoverySecs": recovery, "planSecs": plan_secs, "applySecs": report.duration_secs,
            "verifySecs": verify_secs, "actions": plan.actions.len(), "requests": requests,
            "counts": report.counts, "fidelity": {"equal": equal, "total": total},
            "perKind": per_kind, "clean": v.is_clean(),
            "remaining": v.remaining, "manual": v.manual.len(),
            "failures": failures,
        }));
    } else {
        println!(
            "drill of snapshot {} ({}) into a fresh tenant:",
            short(&info.id.to_string()),
            info.snapshot.time
        );
        println!(
            "  recovery time {recovery:.1}s (plan {plan_secs:.1}s, apply {:.1}s); verify {verify_secs:.1}s; {} actions, {requests} Graph requests",
            report.duration_secs,
            plan.actions.len()
        );
        println!(
            "  fidelity {equal}/{total} items equal ({:.1} %)",
            if total == 0 {
                100.0
            } else {
                100.0 * equal as f64 / total as f64
            }
        );
        for (kind, k) in &per_kind {
            println!("    {kind:<34} {}/{}", k["equal"], k["total"]);
        }
        if !v.manual.is_empty() {
            println!("  {} manual step(s) (expected differences)", v.manual.len());
        }
        for a in &v.remaining {
            println!(
                "  differs: {} {} — {}",
                a.item_kind, a.display_name, a.reason
            );
        }
        for e in &failures {
            println!(
                "  {}: {} — {}",
                e.outcome,
                e.action,
                e.message.as_deref().unwrap_or("")
            );
        }
    }
    drop(sim);
    drop(rt);
    if !failures.is_empty() || !v.is_clean() {
        return Err(Failure {
            code: 3,
            message: format!(
                "the drill did not restore everything: {} action(s) failed, {} difference(s) remain",
                failures.len(),
                v.remaining.len()
            ),
        });
    }
    Ok(())
}
