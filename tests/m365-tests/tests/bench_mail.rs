//! Mail backup benchmark (ignored; run with
//! `cargo test -p cairn-m365-tests --test bench_mail -- --ignored --nocapture`).
//!
//! With the simulator's latency model and throttling on, through the engine, the gateway and an
//! age-encrypted local repository, it prints:
//! 1. full backup throughput of the `small` tenant's 48 mailboxes against the per-mailbox lower
//!    bound (every mailbox at once, 4 concurrent requests each: the Outlook limit), with 16
//!    tasks at once and with every mailbox at once;
//! 2. the incremental run after 1% mail churn (requests, downloads, time) of each;
//! 3. repository growth when the same 5 MB attachment arrives in 100 mailboxes (`medium`
//!    tenant): MIME-aware chunking should store it about once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_gateway::Gateway;
use cairn_graph_sim::{mail, LatencyModel, Profile, SimConfig};
use cairn_m365_tests::*;
use serde_json::json;

sim_env! {
    /// The shared simulator environment, with the benchmark's backup run.
    Bench
}

impl Bench {
    fn start(cfg: SimConfig) -> Bench {
        Bench(SimEnv::start(cfg))
    }

    /// One backup run of the mail collector with `concurrency` tasks at once.
    fn backup(
        &self,
        gw: &Arc<Gateway>,
        repo: &Repo,
        config: serde_json::Value,
        concurrency: usize,
    ) -> (Duration, cairn_engine::backup::BackupReport) {
        let plugin = mail_plugin(&self.wasm);
        let t = Instant::now();
        let report = backup_mail(&plugin, gw, repo, config, concurrency);
        assert!(!report.partial(), "{:?}", report.sinks);
        (t.elapsed(), report)
    }
}

fn totals(report: &cairn_engine::backup::BackupReport) -> (u64, u64) {
    report
        .tasks
        .values()
        .fold((0, 0), |(i, b), t| (i + t.items, b + t.content_bytes))
}

/// One full backup of the tenant into a fresh repository with `concurrency` tasks at once;
/// prints its throughput against the per-mailbox bound. Returns the gateway, the repository
/// (for an incremental run), the run's duration and its request count.
fn full_run(
    b: &Bench,
    concurrency: usize,
) -> (Arc<Gateway>, Repo, tempfile::TempDir, Duration, u64) {
    let latency = LatencyModel::graph_like();
    let mailboxes = b.sim.with_tenant(|t| t.mail.boxes.len());
    let gw = b.gateway();
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(b.wasm.clone(), dir.path());
    let (full, report) = b.backup(&gw, &repo, json!({}), concurrency);
    let stats = gw.stats();
    let (items, bytes) = totals(&report);
    let requests = stats.total.requests;
    let per = latency.base.as_secs_f64();
    // Per-mailbox bound: every mailbox at once, 4 requests in flight each; the busiest mailbox
    // decides. Requests per mailbox from the gateway's per-task counters.
    let busiest = stats
        .tasks
        .iter()
        .filter(|(k, _)| k.contains("mailbox/"))
        .map(|(_, t)| t.requests)
        .max()
        .unwrap_or(0);
    let bound_mailbox = busiest as f64 * per / 4.0;
    let bound_rate = mailboxes as f64 * 4.0 / per;
    // With `concurrency` tasks at once and one call in flight per task, the tasks' calls
    // follow each other: requests x latency / tasks.
    let bound_tasks = requests as f64 * per / concurrency.min(mailboxes) as f64;
    println!(
        "full, {concurrency} tasks at once: {mailboxes} mailboxes, {items} items, {:.1} MB MIME, {requests} requests, \
         {} throttled, {:.2}s ({:.0} items/s, {:.0} req/s) = {:.1}x the per-mailbox lower bound {:.2}s \
         (busiest mailbox {busiest} requests / 4 concurrent x {:.0} ms; {:.0} req/s at mailboxes x 4 concurrent), \
         {:.1}x the {concurrency}-task bound {:.2}s",
        bytes as f64 / 1e6,
        stats.total.throttled,
        full.as_secs_f64(),
        items as f64 / full.as_secs_f64(),
        requests as f64 / full.as_secs_f64(),
        full.as_secs_f64() / bound_mailbox,
        bound_mailbox,
        per * 1000.0,
        bound_rate,
        full.as_secs_f64() / bound_tasks,
        bound_tasks,
    );
    (gw, repo, dir, full, requests)
}

#[test]
#[ignore = "benchmark: prints figures; run with --ignored --nocapture"]
fn mail_backup_throughput_incremental_and_dedup() {
    // 1 + 2: small tenant, latency and throttling on; full runs with 16 tasks at once and
    // with every mailbox at once, then 1% churn and an incremental run of each.
    let b = Bench::start(
        SimConfig::new(Profile::Small, 3)
            .with_throttling(true)
            .with_latency(LatencyModel::graph_like()),
    );
    let mailboxes = b.sim.with_tenant(|t| t.mail.boxes.len());
    let runs: Vec<_> = [16, mailboxes]
        .into_iter()
        .map(|c| (c, full_run(&b, c)))
        .collect();

    // 2: 1% churn.
    let (changed, deleted, added) = b.sim.with_tenant(|t| mail::churn(t, 1.0, 9));
    for (concurrency, (gw, repo, _dir, full, requests)) in &runs {
        let before = gw.stats().total.requests;
        let (incr, report) = b.backup(gw, repo, json!({}), *concurrency);
        let after = gw.stats();
        let downloads: u64 = report.tasks.values().map(|t| t.content_bytes).sum();
        let (items, _) = totals(&report);
        println!(
            "incremental after 1% churn ({changed} changed, {deleted} deleted, {added} added), {concurrency} tasks at once: \
             {items} items, {} requests ({:.0}% of the full run), {:.1} KB MIME downloaded, {:.2}s ({:.0}% of the full run)",
            after.total.requests - before,
            (after.total.requests - before) as f64 * 100.0 / *requests as f64,
            downloads as f64 / 1e3,
            incr.as_secs_f64(),
            incr.as_secs_f64() * 100.0 / full.as_secs_f64(),
        );
    }
    drop(runs);
    drop(b);

    // 3: the same 5 MB attachment in 100 mailboxes (medium tenant), no latency.
    let b = Bench::start(SimConfig::new(Profile::Medium, 3));
    let users: Vec<String> = b
        .sim
        .with_tenant(|t| t.mail.boxes.keys().cloned().collect());
    assert_eq!(users.len(), 100);
    let gw = b.gateway();
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(b.wasm.clone(), dir.path());
    let cfg = json!({"users": users, "maxMessageBytes": 20_000_000});
    b.backup(&gw, &repo, cfg.clone(), 8);
    // `cairn prune` deletes a finished run's checkpoints: measure from a pruned repository.
    let prune = || {
        repo.repo
            .prune(&cairn_repository::PruneOptions::default())
            .unwrap()
    };
    prune();
    let base = dir_size(dir.path());
    let base_parts = sizes_by_kind(dir.path());
    // 5 MB of incompressible bytes, base64-wrapped at 76 columns as Outlook writes it.
    let raw = 5 * 1024 * 1024;
    let body = attachment_b64(0x9E37_79B9_7F4A_7C15, raw);
    for (i, u) in users.iter().enumerate() {
        let mime = format!(
            "From: Finance <finance@contoso.com>\r\nTo: {u}@contoso.com\r\nSubject: Q4 figures\r\n\
             Date: Mon, 30 Nov 2026 06:00:00 +0000\r\nMessage-ID: <q4-{i}@contoso.com>\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
             Figures attached.\r\n--b\r\nContent-Type: application/octet-stream; name=\"q4.xlsx\"\r\n\
             Content-Disposition: attachment; filename=\"q4.xlsx\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
             {body}\r\n--b--\r\n"
        );
        b.sim
            .with_tenant(|t| mail::insert_mime(t, u, "inbox", &mime))
            .unwrap();
    }
    let (t, report) = b.backup(&gw, &repo, cfg, 8);
    let grown = dir_size(dir.path()) - base;
    let parts: Vec<String> = sizes_by_kind(dir.path())
        .into_iter()
        .map(|(k, v)| {
            let before = base_parts.get(&k).copied().unwrap_or(0);
            format!("{k} {:.2} MB", (v - before) as f64 / 1e6)
        })
        .collect();
    let (_, bytes) = totals(&report);
    prune();
    let pruned = dir_size(dir.path()) - base;
    println!(
        "dedup: the same 5 MiB attachment in {} mailboxes: {:.1} MB of MIME backed up in {:.1}s, repository \
         grew {:.2} MB ({:.2}x one attachment; {:.0}x less than storing each copy; by object kind: {}); \
         after `prune` (the run's checkpoints deleted) {:.2} MB = {:.2}x one attachment",
        users.len(),
        bytes as f64 / 1e6,
        t.as_secs_f64(),
        grown as f64 / 1e6,
        grown as f64 / raw as f64,
        bytes as f64 / grown as f64,
        parts.join(", "),
        pruned as f64 / 1e6,
        pruned as f64 / raw as f64,
    );
}

/// Bytes under each top-level directory of a local repository (`data`, `index`, …).
fn sizes_by_kind(dir: &std::path::Path) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let size = if e.path().is_dir() {
            dir_size(&e.path())
        } else {
            e.metadata().map(|m| m.len()).unwrap_or(0)
        };
        *out.entry(name).or_insert(0) += size;
    }
    out
}
