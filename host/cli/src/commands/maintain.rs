//! Repository maintenance: `check`, `forget` (with legal holds) and `prune`, over every sink's
//! repository (or the one named with `--sink`).

use cairn_engine::setup::{open_sinks, read_identities, Access, OpenSink};
use cairn_manifest::{values::parse_duration, Manifest, Retention};
use cairn_repository::{
    CheckOptions, DeleteOutcome, ForgetPolicy, ForgetReport, PruneOptions, PruneReport, ReadData,
};
use clap::Args;
use serde_json::json;

use super::common::{load_manifest, print_json, registry, short, ManifestArg, RepoArgs};
use crate::exit::Failure;

#[derive(Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Also read and verify pack contents: all of them, a subset `n/m` (`1/7` … `7/7` cover
    /// everything over a week), or a random `p%`. Item contents need --identity.
    #[arg(long, num_args = 0..=1, default_missing_value = "all", value_name = "SUBSET")]
    pub read_data: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ForgetArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    /// Only this sink's repository (default: every sink).
    #[arg(long)]
    pub sink: Option<String>,
    /// Keep the n newest snapshots. Any --keep-* flag replaces the manifest's [retention].
    #[arg(long)]
    pub keep_last: Option<usize>,
    /// Keep the newest snapshot of each of the last n hours that have one.
    #[arg(long)]
    pub keep_hourly: Option<usize>,
    /// … of each of the last n days.
    #[arg(long)]
    pub keep_daily: Option<usize>,
    /// … of each of the last n ISO weeks.
    #[arg(long)]
    pub keep_weekly: Option<usize>,
    /// … of each of the last n months.
    #[arg(long)]
    pub keep_monthly: Option<usize>,
    /// … of each of the last n years.
    #[arg(long)]
    pub keep_yearly: Option<usize>,
    /// Keep everything within this long of the newest snapshot (e.g. `30d`, `2w`, `36h`).
    #[arg(long)]
    pub keep_within: Option<String>,
    /// Always keep snapshots with this tag (repeatable).
    #[arg(long = "keep-tag")]
    pub keep_tags: Vec<String>,
    /// Only consider snapshots that have this tag (repeatable: all of them); others are left alone.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Put a legal hold on this snapshot (`forget` never removes it) instead of forgetting.
    #[arg(long, value_name = "SNAP", conflicts_with = "release")]
    pub hold: Option<String>,
    /// Why the hold is placed (stored with it).
    #[arg(long, default_value = "legal hold")]
    pub reason: String,
    /// Release the legal hold on this snapshot instead of forgetting.
    #[arg(long, value_name = "SNAP")]
    pub release: Option<String>,
    /// Show what would be forgotten; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Prune afterwards (see `cairn prune`).
    #[arg(long)]
    pub prune: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub opts: PruneFlags,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Clone)]
pub struct PruneFlags {
    /// How long a pack found unused stays marked before a later prune deletes it. Must exceed
    /// the longest backup run.
    #[arg(long, default_value = "24h")]
    pub grace: String,
    /// Unfinished runs' checkpoints older than this stop protecting their data.
    #[arg(long, default_value = "7d")]
    pub checkpoint_expiry: String,
    /// Also repack packs in use whose unused share is at least this fraction (0.0–1.0);
    /// needs --identity (it reads item data).
    #[arg(long)]
    pub repack_threshold: Option<f64>,
    /// Show what would be marked and deleted; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Opens the sinks' repositories (all, or `--sink`), as writer or with identities.
fn open(
    manifest: &Manifest,
    sink: Option<&str>,
    identities: &[std::path::PathBuf],
) -> Result<Vec<OpenSink>, Failure> {
    let reg = registry()?;
    let access = Access {
        identities: read_identities(identities).map_err(|e| Failure::usage(format!("{e:#}")))?,
    };
    if manifest.sinks.is_empty() {
        return Err(Failure::usage("the manifest has no [sinks.*]"));
    }
    Ok(open_sinks(manifest, &reg, &access, sink)?)
}

fn chrono_duration(flag: &str, text: &str) -> Result<chrono::Duration, Failure> {
    let d = parse_duration(text).map_err(|e| Failure::usage(format!("--{flag}: {e}")))?;
    chrono::Duration::from_std(d).map_err(|e| Failure::usage(format!("--{flag}: {e}")))
}

pub fn check(args: CheckArgs) -> Result<(), Failure> {
    let manifest = load_manifest(&args.manifest.path)?;
    let read_data = match &args.read_data {
        None => ReadData::None,
        Some(s) => s
            .parse::<ReadData>()
            .map_err(|e| Failure::usage(format!("--read-data: {e}")))?,
    };
    if read_data != ReadData::None && args.repo.identity.is_empty() {
        return Err(Failure::usage(
            "--read-data decrypts item contents: give a recipient's identity file with -i \
             (the writer's key reads metadata only)",
        ));
    }
    let sinks = open(&manifest, args.repo.sink.as_deref(), &args.repo.identity)?;
    let opts = CheckOptions {
        read_data,
        ..Default::default()
    };
    let mut reports = Vec::new();
    for s in &sinks {
        let r = s
            .repo
            .check(&opts)
            .map_err(|e| Failure::failed(format!("sink `{}`: {e}", s.name)))?;
        reports.push((s.name.clone(), r));
    }
    let errors: usize = reports.iter().map(|(_, r)| r.errors.len()).sum();
    if args.json {
        print_json(
            &reports
                .iter()
                .map(|(n, r)| json!({"sink": n, "ok": r.is_ok(), "report": r}))
                .collect::<Vec<_>>(),
        );
    } else {
        for (name, r) in &reports {
            outln!("sink `{name}`: {}", r.to_string().trim_end());
        }
    }
    if errors > 0 {
        return Err(Failure::failed(format!(
            "the check found {errors} error{} (see above)",
            if errors == 1 { "" } else { "s" }
        )));
    }
    Ok(())
}

/// The keep rules: the flags if any is given, else the manifest's `[retention]`.
fn policy(args: &ForgetArgs, retention: Option<&Retention>) -> Result<ForgetPolicy, Failure> {
    let keep_within = match &args.keep_within {
        Some(t) => Some(chrono_duration("keep-within", t)?),
        None => None,
    };
    let from_flags = ForgetPolicy {
        keep_last: args.keep_last,
        keep_hourly: args.keep_hourly,
        keep_daily: args.keep_daily,
        keep_weekly: args.keep_weekly,
        keep_monthly: args.keep_monthly,
        keep_yearly: args.keep_yearly,
        keep_within,
        keep_tags: args.keep_tags.clone(),
        tags: args.tags.clone(),
    };
    let any_flag = from_flags.keep_last.is_some()
        || from_flags.keep_hourly.is_some()
        || from_flags.keep_daily.is_some()
        || from_flags.keep_weekly.is_some()
        || from_flags.keep_monthly.is_some()
        || from_flags.keep_yearly.is_some()
        || from_flags.keep_within.is_some()
        || !from_flags.keep_tags.is_empty();
    if any_flag {
        return Ok(from_flags);
    }
    let Some(r) = retention else {
        return Err(Failure::usage(
            "no keep rule: add a [retention] table to the manifest or give --keep-last, \
             --keep-daily, … (forget never removes every snapshot)",
        ));
    };
    Ok(ForgetPolicy {
        keep_last: r.keep_last,
        keep_hourly: r.keep_hourly,
        keep_daily: r.keep_daily,
        keep_weekly: r.keep_weekly,
        keep_monthly: r.keep_monthly,
        keep_yearly: r.keep_yearly,
        keep_within: match r.keep_within {
            Some(d) => Some(
                chrono::Duration::from_std(d)
                    .map_err(|e| Failure::usage(format!("[retention] keep_within: {e}")))?,
            ),
            None => None,
        },
        keep_tags: r.keep_tags.clone(),
        tags: args.tags.clone(),
    })
}

pub fn forget(args: ForgetArgs) -> Result<(), Failure> {
    let manifest = load_manifest(&args.manifest.path)?;
    let sinks = open(&manifest, args.sink.as_deref(), &[])?;
    if let Some(spec) = args.hold.as_deref().or(args.release.as_deref()) {
        return hold_or_release(&sinks, spec, args.hold.is_some(), &args.reason, args.json);
    }
    let policy = policy(&args, manifest.retention.as_ref())?;
    let mut out = Vec::new();
    let mut refused = 0;
    for s in &sinks {
        let r = s.repo.forget(&policy, args.dry_run).map_err(|e| match e {
            cairn_repository::Error::Usage(m) => Failure::usage(m),
            e => Failure::failed(format!("sink `{}`: {e}", s.name)),
        })?;
        refused += r.refused.len();
        out.push((s.name.clone(), r));
    }
    if args.json {
        print_json(
            &out.iter()
                .map(|(n, r)| forget_json(n, r))
                .collect::<Vec<_>>(),
        );
    } else {
        for (name, r) in &out {
            print_forget(name, r);
        }
    }
    if refused > 0 {
        eprintln!(
            "note: the store refused {refused} delete(s) (Object Lock?); those snapshots are \
             forgotten all the same and their objects go when the lock allows"
        );
    }
    if args.prune && !args.dry_run {
        let flags = PruneFlags {
            grace: "24h".into(),
            checkpoint_expiry: "7d".into(),
            repack_threshold: None,
            dry_run: false,
        };
        run_prune(&sinks, &flags, args.json)?;
    }
    Ok(())
}

fn forget_json(sink: &str, r: &ForgetReport) -> serde_json::Value {
    json!({
        "sink": sink,
        "dryRun": r.dry_run,
        "keep": r.keep.iter().map(|(id, why)| json!({"id": id.to_hex(), "reasons": why})).collect::<Vec<_>>(),
        "forget": r.forget.iter().map(|id| id.to_hex()).collect::<Vec<_>>(),
        "refused": r.refused.iter().map(|(k, why)| json!({"key": k, "reason": why})).collect::<Vec<_>>(),
    })
}

fn print_forget(sink: &str, r: &ForgetReport) {
    let verb = if r.dry_run { "would forget" } else { "forgot" };
    outln!(
        "sink `{sink}`: keep {}, {verb} {}",
        r.keep.len(),
        r.forget.len()
    );
    for (id, why) in &r.keep {
        outln!("  keep   {}  {}", short(&id.to_hex()), why.join(", "));
    }
    for id in &r.forget {
        outln!("  forget {}", short(&id.to_hex()));
    }
    for (key, why) in &r.refused {
        outln!("  refused delete of {key}: {why}");
    }
}

fn hold_or_release(
    sinks: &[OpenSink],
    spec: &str,
    hold: bool,
    reason: &str,
    as_json: bool,
) -> Result<(), Failure> {
    let mut results = Vec::new();
    for s in sinks {
        let info = s
            .repo
            .find_snapshot(spec)
            .map_err(|e| Failure::usage(format!("sink `{}`: snapshot `{spec}`: {e}", s.name)))?;
        let outcome = if hold {
            s.repo
                .hold(&info.id, reason)
                .map_err(|e| Failure::failed(format!("sink `{}`: {e}", s.name)))?;
            "held".to_string()
        } else {
            match s
                .repo
                .release_hold(&info.id)
                .map_err(|e| Failure::failed(format!("sink `{}`: {e}", s.name)))?
            {
                DeleteOutcome::Deleted => "released".to_string(),
                DeleteOutcome::NotFound => "had no hold".to_string(),
                DeleteOutcome::Refused(why) => format!("release refused by the store: {why}"),
            }
        };
        results.push((s.name.clone(), info.id.to_hex(), outcome));
    }
    if as_json {
        print_json(
            &results
                .iter()
                .map(|(s, id, o)| json!({"sink": s, "snapshot": id, "outcome": o}))
                .collect::<Vec<_>>(),
        );
    } else {
        for (s, id, o) in &results {
            outln!("sink `{s}`: snapshot {} {o}", short(id));
        }
    }
    Ok(())
}

pub fn prune(args: PruneArgs) -> Result<(), Failure> {
    let manifest = load_manifest(&args.manifest.path)?;
    if args.opts.repack_threshold.is_some() && args.repo.identity.is_empty() {
        return Err(Failure::usage(
            "--repack-threshold reads item data: give a recipient's identity file with -i",
        ));
    }
    let sinks = open(&manifest, args.repo.sink.as_deref(), &args.repo.identity)?;
    run_prune(&sinks, &args.opts, args.json)
}

fn run_prune(sinks: &[OpenSink], flags: &PruneFlags, as_json: bool) -> Result<(), Failure> {
    if let Some(t) = flags.repack_threshold {
        if !(0.0..=1.0).contains(&t) {
            return Err(Failure::usage(
                "--repack-threshold is a fraction from 0.0 to 1.0",
            ));
        }
    }
    let opts = PruneOptions {
        grace: chrono_duration("grace", &flags.grace)?,
        checkpoint_expiry: chrono_duration("checkpoint-expiry", &flags.checkpoint_expiry)?,
        dry_run: flags.dry_run,
        now: None,
        repack_threshold: flags.repack_threshold,
    };
    let mut out = Vec::new();
    for s in sinks {
        let r = s.repo.prune(&opts).map_err(|e| match e {
            cairn_repository::Error::Usage(m) => Failure::failed(format!("sink `{}`: {m}", s.name)),
            e => Failure::failed(format!("sink `{}`: {e}", s.name)),
        })?;
        out.push((s.name.clone(), r));
    }
    if as_json {
        print_json(
            &out.iter()
                .map(|(n, r)| json!({"sink": n, "report": r}))
                .collect::<Vec<_>>(),
        );
    } else {
        for (name, r) in &out {
            print_prune(name, r, &flags.grace);
        }
    }
    Ok(())
}

fn print_prune(sink: &str, r: &PruneReport, grace: &str) {
    let dry = if r.dry_run {
        " (dry run: nothing changed)"
    } else {
        ""
    };
    outln!("sink `{sink}`{dry}:");
    outln!(
        "  marked {} unused pack(s) (a prune after the {grace} grace period deletes them if still unused)",
        r.marked.len()
    );
    if !r.pending.is_empty() {
        outln!(
            "  {} marked pack(s) still within the grace period",
            r.pending.len()
        );
    }
    if !r.spared.is_empty() {
        outln!("  {} marked pack(s) in use again, spared", r.spared.len());
    }
    outln!(
        "  deleted {} object(s), {} bytes of packs{}",
        r.deleted.len(),
        r.deleted_bytes,
        if r.index_rewritten {
            "; index consolidated"
        } else {
            ""
        }
    );
    if r.partly_used_packs > 0 {
        outln!(
            "  {} pack(s) in use also hold {} unused bytes (--repack-threshold frees them)",
            r.partly_used_packs,
            r.unused_bytes_in_used_packs
        );
    }
    if !r.repacked.is_empty() {
        outln!("  repacked {} pack(s)", r.repacked.len());
    }
    for (k, why) in &r.repack_errors {
        outln!("  could not repack {k}: {why}");
    }
    for (k, why) in &r.refused {
        outln!("  the store refused to delete {k}: {why} (kept; a later prune retries)");
    }
}
