//! Reading a repository: `snapshots`, `ls`, `show`, `diff`.

use cairn_engine::diff::{diff_across, diff_snapshots, Diff};
use cairn_engine::live::backup_live;
use cairn_engine::setup::{collectors, gateways};
use cairn_repository::{Repository, SnapshotInfo};
use clap::Args;
use serde_json::json;

use super::common::{load_manifest, open_repo, print_json, registry, short, ManifestArg, RepoArgs};
use crate::exit::Failure;

#[derive(Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Snapshot id (or a prefix), or `latest`.
    pub snapshot: String,
    /// Only this kind (e.g. `user`), or `kind/id-prefix`.
    #[arg(value_name = "KIND[/ID-PREFIX]")]
    pub filter: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    #[command(flatten)]
    pub repo: RepoArgs,
    pub snapshot: String,
    /// `kind/id`, e.g. `user/6e7b768e-…`.
    pub item: String,
}

#[derive(Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The older snapshot (id prefix, `latest`, …).
    pub old: String,
    /// The newer snapshot, or `live`: the tenant as it is now (the sink's collectors read it
    /// into a scratch repository in memory; nothing is written).
    pub new: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// List every item (the table shows at most 10 per change and kind).
    #[arg(long)]
    pub all: bool,
}

fn find(repo: &Repository, spec: &str) -> Result<SnapshotInfo, Failure> {
    repo.find_snapshot(spec)
        .map_err(|e| Failure::usage(format!("snapshot `{spec}`: {e}")))
}

pub fn snapshots(args: SnapshotsArgs) -> Result<(), Failure> {
    let manifest = load_manifest(&args.manifest.path)?;
    let reg = registry()?;
    let sink = open_repo(&manifest, &reg, &args.repo)?;
    let snaps = sink
        .repo
        .snapshots()
        .map_err(|e| Failure::failed(e.to_string()))?;
    if args.json {
        let v: Vec<_> = snaps
            .iter()
            .map(|s| {
                json!({"id": s.id.to_string(), "time": s.snapshot.time, "tags": s.snapshot.tags,
                       "partial": s.snapshot.partial, "failedTasks": s.snapshot.failed_tasks,
                       "parent": s.snapshot.parent.map(|p| p.to_string()),
                       "items": s.snapshot.tasks.iter().map(|t| t.items).sum::<u64>(),
                       "tasks": s.snapshot.tasks.len(), "stats": s.snapshot.stats})
            })
            .collect();
        print_json(&v);
        return Ok(());
    }
    outln!(
        "{:<13} {:<28} {:>8} {:>6}  NOTES",
        "ID",
        "TIME",
        "ITEMS",
        "TASKS"
    );
    for s in &snaps {
        let items: u64 = s.snapshot.tasks.iter().map(|t| t.items).sum();
        let mut notes = Vec::new();
        if s.snapshot.partial {
            notes.push(format!("PARTIAL: {}", s.snapshot.failed_tasks.join(", ")));
        }
        if !s.snapshot.tags.is_empty() {
            notes.push(format!("tags: {}", s.snapshot.tags.join(",")));
        }
        outln!(
            "{:<13} {:<28} {:>8} {:>6}  {}",
            short(&s.id.to_string()),
            s.snapshot.time,
            items,
            s.snapshot.tasks.len(),
            notes.join("; ")
        );
    }
    Ok(())
}

pub fn ls(args: LsArgs) -> Result<(), Failure> {
    let manifest = load_manifest(&args.manifest.path)?;
    let reg = registry()?;
    let sink = open_repo(&manifest, &reg, &args.repo)?;
    let info = find(&sink.repo, &args.snapshot)?;
    let (kind, prefix) = match args.filter.as_deref() {
        Some(p) => match p.split_once('/') {
            Some((k, i)) => (Some(k.to_string()), Some(i.to_string())),
            None => (Some(p.to_string()), None),
        },
        None => (None, None),
    };
    let mut rows = Vec::new();
    for t in &info.snapshot.tasks {
        for e in sink
            .repo
            .tree_entries(t.tree)
            .map_err(|e| Failure::failed(e.to_string()))?
        {
            if kind.as_ref().is_some_and(|k| k != &e.kind) {
                continue;
            }
            if prefix
                .as_ref()
                .is_some_and(|p| !e.id.starts_with(p.as_str()))
            {
                continue;
            }
            rows.push((t.name.clone(), e));
        }
    }
    if args.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(t, e)| json!({"task": t, "kind": e.kind, "id": e.id, "name": e.name,
                                 "parts": e.parts.iter().map(|p| json!({"name": p.name, "size": p.size})).collect::<Vec<_>>()}))
            .collect();
        print_json(&v);
        return Ok(());
    }
    for (_, e) in &rows {
        outln!("{:<28} {:<38} {}", e.kind, e.id, e.name);
    }
    Ok(())
}

pub fn show(args: ShowArgs) -> Result<(), Failure> {
    let manifest = load_manifest(&args.manifest.path)?;
    let reg = registry()?;
    let sink = open_repo(&manifest, &reg, &args.repo)?;
    let info = find(&sink.repo, &args.snapshot)?;
    let (kind, id) = args
        .item
        .split_once('/')
        .ok_or_else(|| Failure::usage("name the item as kind/id, e.g. user/6e7b768e-…"))?;
    for t in &info.snapshot.tasks {
        if let Some(e) = sink
            .repo
            .find_entry(t.tree, kind, id)
            .map_err(|e| Failure::failed(e.to_string()))?
        {
            let body = sink
                .repo
                .read_item(&e)
                .map_err(|e| Failure::failed(e.to_string()))?;
            print_json(&body);
            return Ok(());
        }
    }
    Err(Failure::failed(format!(
        "{kind}/{id} is not in snapshot {}",
        short(&info.id.to_string())
    )))
}

pub fn diff(args: DiffArgs) -> Result<(), Failure> {
    let manifest = load_manifest(&args.manifest.path)?;
    let reg = registry()?;
    let sink = open_repo(&manifest, &reg, &args.repo)?;
    let old = find(&sink.repo, &args.old)?;
    let attributes = !args.repo.identity.is_empty();
    let (d, failed) = if args.new.eq_ignore_ascii_case("live") {
        diff_live(&manifest, &reg, &sink, &old, attributes)?
    } else {
        let new = find(&sink.repo, &args.new)?;
        let d = diff_snapshots(&sink.repo, &old.snapshot, &new.snapshot, attributes)
            .map_err(|e| Failure::failed(e.to_string()))?;
        (d, Vec::new())
    };
    if args.json {
        print_json(&d);
    } else {
        print_diff_limited(&d, (!args.all).then_some(DIFF_LINES_PER_KIND));
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::partial(format!(
            "the live read of {} failed, so {} not compared: {}",
            failed.len(),
            if failed.len() == 1 {
                "it was"
            } else {
                "they were"
            },
            failed.join(", ")
        )))
    }
}

/// `cairn diff <snapshot> live`: the collectors that feed this sink read the tenant now into a
/// scratch repository in memory (keyed like this one), which is compared with the snapshot.
/// Returns the diff and the live tasks that failed (left out of the comparison).
fn diff_live(
    manifest: &cairn_manifest::Manifest,
    reg: &cairn_engine::PluginRegistry,
    sink: &cairn_engine::setup::OpenSink,
    old: &SnapshotInfo,
    attributes: bool,
) -> Result<(Diff, Vec<String>), Failure> {
    let gws = gateways(manifest).map_err(|e| Failure::usage(format!("{e:#}")))?;
    let specs = collectors(manifest, reg, &gws, &sink.collectors)
        .map_err(|e| Failure::usage(format!("{e:#}")))?;
    tracing::info!(
        collectors = %sink.collectors.join(", "),
        "reading the live tenant for the diff (nothing is written to the repository)"
    );
    let live = backup_live(&specs, &sink.repo).map_err(|e| Failure::failed(format!("{e:#}")))?;
    let d = diff_across(
        (&sink.repo, &old.snapshot),
        (&live.repo, &live.snapshot),
        attributes,
    )
    .map_err(|e| Failure::failed(e.to_string()))?;
    Ok((d, live.snapshot.failed_tasks.clone()))
}

/// Lines of the human diff per change and kind, unless `--all`.
pub const DIFF_LINES_PER_KIND: usize = 10;

/// The human table of a diff: the counts per kind, then changed items (with their attributes),
/// added and removed ones, at most [`DIFF_LINES_PER_KIND`] per change and kind.
pub fn print_diff(d: &Diff) {
    print_diff_limited(d, Some(DIFF_LINES_PER_KIND));
}

/// [`print_diff`] with a chosen limit per change and kind (`None`: every item).
pub fn print_diff_limited(d: &Diff, limit: Option<usize>) {
    outln!(
        "{} added, {} removed, {} changed",
        d.summary.added,
        d.summary.removed,
        d.summary.changed
    );
    // (change, kind) → count, in the order shown below.
    let order = ["changed", "added", "removed"];
    let mut counts: std::collections::BTreeMap<(usize, &str), usize> = Default::default();
    for i in &d.items {
        let rank = order.iter().position(|c| *c == i.change).unwrap_or(0);
        *counts.entry((rank, i.kind.as_str())).or_default() += 1;
    }
    if counts.len() > 1 {
        for ((rank, kind), n) in &counts {
            outln!("  {:<8} {n:>6} {kind}", order[*rank]);
        }
    }
    let mut shown: std::collections::BTreeMap<(usize, &str), usize> = Default::default();
    for (rank, change) in order.iter().enumerate() {
        for i in d.items.iter().filter(|i| i.change == *change) {
            let seen = shown.entry((rank, i.kind.as_str())).or_default();
            *seen += 1;
            let total = counts[&(rank, i.kind.as_str())];
            match limit {
                Some(l) if *seen > l => {
                    if *seen == l + 1 {
                        outln!(
                            "  … and {} more {change} {} (--all or --json lists every item)",
                            total - l,
                            i.kind
                        );
                    }
                    continue;
                }
                _ => {}
            }
            let mark = match i.change {
                "added" => "+",
                "removed" => "-",
                _ => "~",
            };
            outln!("{mark} {:<26} {:<40} {}", i.kind, i.name, i.id);
            // Kinds with a describer (sharing) say what changed in words instead.
            for line in &i.description {
                outln!("      {line}");
            }
            let attributes = if i.description.is_empty() {
                &i.attributes[..]
            } else {
                &[]
            };
            for a in attributes {
                let show = |v: &Option<serde_json::Value>| match v {
                    Some(v) => {
                        let s = v.to_string();
                        if s.len() > 60 {
                            format!(
                                "{}…",
                                &s[..s.char_indices().nth(60).map(|(i, _)| i).unwrap_or(s.len())]
                            )
                        } else {
                            s
                        }
                    }
                    None => "(absent)".into(),
                };
                outln!("      {}: {} → {}", a.attribute, show(&a.old), show(&a.new));
            }
        }
    }
}
