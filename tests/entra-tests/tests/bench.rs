//! Benchmark: a full and an incremental backup of a simulated tenant with Graph's latency model
//! and throttling on, every task on its own thread and instance (as the engine runs them),
//! through the real gateway. Prints wall time, requests, resource units, 429s and the
//! simulator's lower bound for the same workload.
//!
//! `ENTRA_BENCH_PROFILE=medium cargo test --release -p cairn-entra-tests --test bench -- --ignored --nocapture`
//! (profiles: small, medium, large; default medium). `ENTRA_BENCH_TASKS=1` prints per-task
//! figures; `ENTRA_BENCH_PACING=0` and `ENTRA_BENCH_READ_AHEAD=0` turn the gateway's budget
//! pacing and read-ahead of page chains off, for comparison.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_entra_tests::{instance, stream_task, SimEnv, Snapshot, StreamedRun};
use cairn_gateway::{Cloud, Credential, Gateway, GatewayConfig, PacingConfig};
use cairn_graph_sim::{LatencyModel, Profile, SimConfig, Workload};
use serde_json::json;

struct Figures {
    wall: Duration,
    /// Peak resident memory of the process during the run (simulator, host and plugin instances).
    peak_rss_mib: u64,
    /// What the run added on top of the resident memory before it (the simulator holding the
    /// tenant): the backup side's peak — host, gateway, plugin instances, pages in flight.
    backup_peak_mib: u64,
    /// Tasks run at once (one per type).
    tasks: u32,
    /// The plugin instances' linear memory at its largest, summed over the tasks.
    plugin_memory_mib: u64,
    requests: u64,
    batch_items: u64,
    ru: u64,
    throttled: u64,
    objects: u64,
    pages: u64,
    items: usize,
    /// Per task: (steps, objects listed), for the sequential page-chain bound.
    chains: Vec<(u64, u64)>,
}

fn run(
    sim: &cairn_graph_sim::SimHandle,
    wasm: &Arc<cairn_runtime::Runtime>,
    snap: &mut Snapshot,
) -> Figures {
    sim.reset_stats();
    let before_kib = reset_peak_rss();
    // As the engine connects it: on the gateway's own runtime, not the simulator's.
    let gw = Gateway::connect(
        GatewayConfig::new(
            sim.tenant_id(),
            sim.client_id(),
            Credential::secret(sim.client_secret()),
        )
        .with_name("sim")
        .with_cloud(Cloud::custom(&sim.base_url(), &sim.base_url()).unwrap())
        // ENTRA_BENCH_PACING=0 / ENTRA_BENCH_READ_AHEAD=0 measure the gateway without them.
        .with_pacing(PacingConfig {
            enabled: !off("ENTRA_BENCH_PACING"),
            ..PacingConfig::default()
        })
        .with_read_ahead(!off("ENTRA_BENCH_READ_AHEAD")),
    )
    .unwrap();
    let tasks = instance(wasm, gw.for_task("plan"), &json!({}))
        .plan_tasks()
        .unwrap()
        .unwrap();
    let started = Instant::now();
    let runs: Vec<(String, StreamedRun, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = tasks
            .iter()
            .map(|t| {
                let conn = gw.for_task(&t.id);
                let state = snap.states.get(&t.id).cloned();
                s.spawn(move || {
                    let mut inst = instance(wasm, conn, &json!({}));
                    let t0 = Instant::now();
                    let r = stream_task(&mut inst, t, state.as_deref());
                    let memory = inst.linear_memory_peak();
                    if std::env::var_os("ENTRA_BENCH_TASKS").is_some() {
                        println!(
                            "  {:<32} {:>6.2} s {:>4} steps, plugin memory {:>5.1} MiB",
                            t.id,
                            t0.elapsed().as_secs_f64(),
                            r.steps,
                            memory as f64 / MIB
                        );
                    }
                    (t.id.clone(), r, memory)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wall = started.elapsed();
    let mut items = 0;
    let mut chains = Vec::new();
    let mut plugin_memory = 0;
    for (id, r, memory) in &runs {
        plugin_memory += memory;
        // Objects Graph returned in the task's page chain (membership links ride inside them).
        chains.push((r.steps as u64, r.objects as u64));
        assert!(r.error.is_none(), "{id}: {:?}", r.error);
        items += r.items + r.removed;
        snap.keep_state(id, r.state.as_deref());
    }
    let gs = gw.stats();
    if std::env::var_os("ENTRA_BENCH_TASKS").is_some() {
        for (id, t) in gs.tasks.iter().filter(|(_, t)| t.requests > 0) {
            println!(
                "  {id:<32} {:>5} requests, paced {:>5.1} s, {} 429s, pages read ahead {}/{} used",
                t.requests,
                t.paced_seconds,
                t.throttled,
                t.pages_read_ahead_used,
                t.pages_read_ahead
            );
        }
    }
    let g = gs.total;
    let s = sim.stats();
    let peak_kib = rss_kib("VmHWM");
    Figures {
        wall,
        peak_rss_mib: peak_kib / 1024,
        backup_peak_mib: peak_kib.saturating_sub(before_kib) / 1024,
        tasks: tasks.len() as u32,
        plugin_memory_mib: (plugin_memory as f64 / MIB).round() as u64,
        requests: g.requests,
        batch_items: g.batch_items,
        ru: s.ru_spent,
        throttled: s.throttled,
        objects: s.objects_returned,
        pages: s.pages,
        items,
        chains,
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// Whether the environment variable `name` is `0`.
fn off(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "0")
}

/// Resets this process's peak resident memory (`VmHWM`) to its current size (Linux
/// `clear_refs` 5) and returns that size in kB, so the next peak is the run's own.
fn reset_peak_rss() -> u64 {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        println!("(cannot reset the peak RSS: {e}; peaks include earlier runs)");
    }
    rss_kib("VmRSS")
}

/// A memory figure of this process from `/proc/self/status` (kB), 0 where unavailable.
fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn print(label: &str, f: &Figures, bound: Duration) {
    println!(
        "{label}: wall {:.1} s, {} requests ({} in $batch), {} RU, {} 429s, {} items/tombstones, \
         {} objects in {} pages, {} tasks, peak RSS {} MiB (backup side +{} MiB, \
         of which plugin memory {} MiB); \
         lower bound {:.1} s ({:.2}x)",
        f.wall.as_secs_f64(),
        f.requests,
        f.batch_items,
        f.ru,
        f.throttled,
        f.items,
        f.objects,
        f.pages,
        f.tasks,
        f.peak_rss_mib,
        f.backup_peak_mib,
        f.plugin_memory_mib,
        bound.as_secs_f64(),
        f.wall.as_secs_f64() / bound.as_secs_f64().max(1e-9)
    );
}

/// The simulator's lower bound: the RU budget and latency throughput of the whole workload, and
/// each task's sequential page chain (its pages one after another, with their objects).
fn bound(sim: &cairn_graph_sim::SimHandle, f: &Figures, parallel: u32) -> Duration {
    let whole = sim.lower_bound(&Workload {
        requests: f.requests,
        resource_units: f.ru,
        objects: f.objects,
        longest_chain: 0,
        objects_per_request: 0,
        parallelism: parallel,
    });
    f.chains
        .iter()
        .map(|&(steps, objects)| {
            sim.lower_bound(&Workload {
                requests: steps,
                resource_units: 0,
                objects,
                longest_chain: steps,
                objects_per_request: objects / steps.max(1),
                parallelism: 1,
            })
        })
        .fold(whole, Duration::max)
}

#[test]
#[ignore = "benchmark: run explicitly with --ignored --nocapture"]
fn full_and_incremental_backup_figures() {
    let profile: Profile = std::env::var("ENTRA_BENCH_PROFILE")
        .unwrap_or_else(|_| "medium".into())
        .parse()
        .unwrap();
    let cfg = SimConfig::new(profile, 1)
        .with_latency(LatencyModel::graph_like())
        .with_throttling(true);
    let env = SimEnv::start(cfg);
    let (sim, wasm) = (&env.sim, &env.wasm);
    println!(
        "{profile:?} simulator started: RSS {} MiB",
        rss_kib("VmRSS") / 1024
    );
    let mut snap = Snapshot::default();
    let full = run(sim, wasm, &mut snap);
    print(
        &format!("{profile:?} full"),
        &full,
        bound(sim, &full, full.tasks),
    );
    let churn = sim.churn(1.0);
    let inc = run(sim, wasm, &mut snap);
    print(
        &format!(
            "{profile:?} incremental after 1% churn ({} changes)",
            churn.total()
        ),
        &inc,
        bound(sim, &inc, inc.tasks),
    );
    println!(
        "incremental / full: time {:.1} %, requests {:.1} %",
        100.0 * inc.wall.as_secs_f64() / full.wall.as_secs_f64(),
        100.0 * inc.requests as f64 / full.requests as f64
    );
}
