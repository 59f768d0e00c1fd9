//! `cairn sim`: the Microsoft Graph tenant simulator in the foreground, with what a manifest
//! needs to back it up.

use std::path::PathBuf;
use std::time::Duration;

use cairn_graph_sim::{LatencyModel, Profile, SimConfig, SimHandle, Simulator};
use clap::Args;

use super::init::write_private;
use crate::exit::Failure;

#[derive(Args)]
pub struct SimArgs {
    /// Tenant size: empty, small (~50 users), medium (5,000), large (100,000).
    #[arg(long, default_value = "small")]
    pub profile: Profile,
    /// Seed of the generated tenant (the same seed gives the same tenant).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Throttle like Graph: resource-unit buckets, write limits, Outlook and SharePoint limits.
    #[arg(long)]
    pub throttling: bool,
    /// Latency per request in milliseconds (turns the latency model on).
    #[arg(long)]
    pub latency_base_ms: Option<u64>,
    /// Latency per returned object in microseconds (with --latency-base-ms).
    #[arg(long, default_value_t = 600)]
    pub latency_per_object_us: u64,
    /// Lifetime of access tokens, seconds.
    #[arg(long, default_value_t = 3599)]
    pub token_lifetime: u64,
    /// Where to write the client secret (owner-only); a manifest refers to it as `file:…`.
    /// Default: `sim-client-secret-<port>.txt` in the temporary directory.
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// Print the connection details as one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The two-thread tokio runtime the simulator runs on.
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(e.to_string()))
}

/// Starts the simulator with `cfg` inside this process, on a runtime of its own (`cairn demo`,
/// `cairn drill`). Keep the runtime until the simulator's handle is dropped.
pub fn start_in_process(cfg: SimConfig) -> Result<(tokio::runtime::Runtime, SimHandle), Failure> {
    let rt = runtime()?;
    let sim = rt
        .block_on(Simulator::start(cfg))
        .map_err(|e| Failure::failed(format!("starting the simulator: {e:#}")))?;
    Ok((rt, sim))
}

pub fn run(args: SimArgs) -> Result<(), Failure> {
    let rt = runtime()?;
    let mut cfg = SimConfig::new(args.profile, args.seed);
    cfg.port = args.port;
    cfg.throttling = args.throttling;
    cfg.token_lifetime = Duration::from_secs(args.token_lifetime);
    if let Some(ms) = args.latency_base_ms {
        cfg.latency = Some(LatencyModel {
            base: Duration::from_millis(ms),
            per_object: Duration::from_micros(args.latency_per_object_us),
        });
    }
    rt.block_on(async move {
        let sim = Simulator::start(cfg).await.map_err(|e| {
            Failure::failed(format!("starting the simulator on port {}: {e:#}", args.port))
        })?;
        let secret_file = args.secret_file.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("sim-client-secret-{}.txt", sim.addr().port()))
        });
        if secret_file.exists() {
            std::fs::remove_file(&secret_file).map_err(|e| {
                Failure::failed(format!("replacing {}: {e}", secret_file.display()))
            })?;
        }
        write_private(&secret_file, sim.client_secret())?;
        let secret_file = std::fs::canonicalize(&secret_file).unwrap_or(secret_file);
        let base = sim.base_url();
        if args.json {
            let mut info = serde_json::json!({
                "url": base,
                "graph": sim.graph_url(),
                "token_url": sim.token_url(),
                "tenant_id": sim.tenant_id(),
                "domain": sim.domain(),
                "client_id": sim.client_id(),
                "client_secret_file": secret_file.display().to_string(),
            });
            info["startup_ms"] = serde_json::json!(sim.startup_time().as_millis() as u64);
            outln!("{info}");
        } else {
            outln!(
                "Graph simulator: {:?} tenant {} ({}), seed {}, generated in {:.1}s",
                args.profile,
                sim.domain(),
                sim.tenant_id(),
                args.seed,
                sim.startup_time().as_secs_f64()
            );
            outln!("  base URL       {base}   (Graph under /v1.0 and /beta, control API under /_sim/)");
            outln!("  token endpoint {}", sim.token_url());
            outln!("  client id      {}", sim.client_id());
            outln!("  client secret  in {} (owner-only)", secret_file.display());
            outln!();
            outln!("A connection for cairn.toml (or `cairn init --endpoint {base} --tenant {} --client-id {}`):", sim.tenant_id(), sim.client_id());
            outln!();
            outln!("[connections.main]");
            outln!("tenant = \"{}\"", sim.tenant_id());
            outln!("client_id = \"{}\"", sim.client_id());
            outln!("client_secret = \"file:{}\"", secret_file.display());
            outln!("authority_url = \"{base}\"");
            outln!("graph_url = \"{base}\"");
            outln!();
            outln!("Serving until Ctrl-C.");
        }
        wait_for_stop().await;
        drop(sim);
        let _ = std::fs::remove_file(&secret_file);
        Ok(())
    })
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM.
async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
