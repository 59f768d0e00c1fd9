//! `cairn backup`: run the manifest's collectors into its sinks.

use cairn_engine::backup::{run_backup_with_progress, BackupReport};
use cairn_engine::setup::{collectors, gateways, open_sinks, sink_targets, Access};
use clap::Args;

use super::common::{load_manifest, print_json, registry, ManifestArg};
use crate::exit::Failure;

#[derive(Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    /// Run only these collectors (the others' tasks are carried over from the last snapshot).
    #[arg(long)]
    pub only: Vec<String>,
    /// Tag the snapshots.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Print the run report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write the run's metrics in Prometheus text format to this file.
    #[arg(long)]
    pub metrics_file: Option<std::path::PathBuf>,
}

pub fn run(args: BackupArgs) -> Result<(), Failure> {
    let manifest = load_manifest(&args.manifest.path)?;
    let registry = registry()?;
    let gws = gateways(&manifest).map_err(|e| Failure::usage(format!("{e:#}")))?;
    let specs = collectors(&manifest, &registry, &gws, &args.only)
        .map_err(|e| Failure::usage(format!("{e:#}")))?;
    let sinks = open_sinks(&manifest, &registry, &Access::default(), None)?;
    let targets = sink_targets(&sinks, &manifest, &args.tags);
    let stats_gws = gws.clone();
    let display = crate::progress::Display::start(&gws);
    let report = run_backup_with_progress(
        &specs,
        &targets,
        Some(Box::new(move || {
            serde_json::to_value(
                stats_gws
                    .iter()
                    .map(|(n, g)| (n.clone(), g.stats()))
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
            .unwrap_or_default()
        })),
        display.as_ref().map(|d| d.hook()),
    )?;
    drop(display);
    if let Some(path) = &args.metrics_file {
        let mut text = String::new();
        for g in gws.values() {
            text.push_str(&g.stats().to_prometheus());
        }
        text.push_str(&report_metrics(&report));
        std::fs::write(path, text)
            .map_err(|e| Failure::failed(format!("writing {}: {e}", path.display())))?;
    }
    if args.json {
        print_json(&report);
    } else {
        print_report(&report);
    }
    if report.partial() {
        return Err(Failure {
            code: 3,
            message: "some tasks failed; the snapshot is marked partial (see above)".into(),
        });
    }
    Ok(())
}

/// Tasks of one collector and kind (`mail/mailbox/<id>`) beyond this many are summed up in
/// one line of the table (failed ones are still listed); `--json` has every task.
const GROUP_OVER: usize = 8;

pub fn print_report(report: &BackupReport) {
    outln!(
        "{:<40} {:>8} {:>8} {:>8}  STATUS",
        "TASK",
        "ITEMS",
        "REMOVED",
        "SECS"
    );
    // `collector/kind/id` tasks grouped by `collector/kind`.
    let group_of = |name: &str| -> Option<String> {
        let mut parts = name.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(c), Some(k), Some(_)) => Some(format!("{c}/{k}")),
            _ => None,
        }
    };
    let mut sizes: std::collections::BTreeMap<String, usize> = Default::default();
    for name in report.tasks.keys() {
        if let Some(g) = group_of(name) {
            *sizes.entry(g).or_default() += 1;
        }
    }
    let line = |name: &str, t: &cairn_engine::backup::TaskStats| {
        let status = match &t.error {
            Some(e) => format!("{} — {e}", t.status),
            None => t.status.clone(),
        };
        outln!(
            "{:<40} {:>8} {:>8} {:>8.1}  {}",
            name,
            t.items,
            t.removed,
            t.duration_secs,
            status
        );
    };
    let mut summed: std::collections::BTreeSet<String> = Default::default();
    for (name, t) in &report.tasks {
        let group = group_of(name).filter(|g| sizes[g] > GROUP_OVER);
        let Some(group) = group else {
            line(name, t);
            continue;
        };
        if t.status == "failed" {
            line(name, t);
        }
        if !summed.insert(group.clone()) {
            continue;
        }
        let members: Vec<&cairn_engine::backup::TaskStats> = report
            .tasks
            .iter()
            .filter(|(n, _)| group_of(n).as_deref() == Some(group.as_str()))
            .map(|(_, t)| t)
            .collect();
        let failed = members.iter().filter(|t| t.status == "failed").count();
        outln!(
            "{:<40} {:>8} {:>8} {:>8.1}  {}",
            format!("{group}/* ({} tasks)", members.len()),
            members.iter().map(|t| t.items).sum::<u64>(),
            members.iter().map(|t| t.removed).sum::<u64>(),
            members.iter().map(|t| t.duration_secs).fold(0.0, f64::max),
            if failed == 0 {
                "complete".to_string()
            } else {
                format!("{failed} failed (listed)")
            }
        );
    }
    for s in &report.sinks {
        outln!(
            "snapshot {} in sink `{}`{}{}",
            &s.snapshot[..12.min(s.snapshot.len())],
            s.sink,
            if s.partial { " (PARTIAL)" } else { "" },
            if s.resumed {
                " (resumed an interrupted run)"
            } else {
                ""
            },
        );
    }
}

fn report_metrics(report: &BackupReport) -> String {
    let mut out = String::from(
        "# HELP cairn_task_items Items stored by the task in the last run.\n# TYPE cairn_task_items gauge\n",
    );
    for (name, t) in &report.tasks {
        out.push_str(&format!(
            "cairn_task_items{{task=\"{name}\"}} {}\n",
            t.items
        ));
    }
    out.push_str("# HELP cairn_task_failed 1 if the task failed in the last run.\n# TYPE cairn_task_failed gauge\n");
    for (name, t) in &report.tasks {
        out.push_str(&format!(
            "cairn_task_failed{{task=\"{name}\"}} {}\n",
            u8::from(t.status == "failed")
        ));
    }
    out.push_str("# HELP cairn_task_listing_restarts Times the task's enumeration was reset mid-run and listed again (e.g. a drive delta's 410).\n# TYPE cairn_task_listing_restarts gauge\n");
    for (name, t) in &report.tasks {
        out.push_str(&format!(
            "cairn_task_listing_restarts{{task=\"{name}\"}} {}\n",
            t.restarts
        ));
    }
    out.push_str(&format!(
        "# HELP cairn_backup_duration_seconds Duration of the last run.\n# TYPE cairn_backup_duration_seconds gauge\ncairn_backup_duration_seconds {}\n",
        report.duration_secs
    ));
    out
}
