//! `graph-sim`: runs the Microsoft Graph tenant simulator on 127.0.0.1 and prints its connection
//! details as JSON on the first line of stdout.

use cairn_graph_sim::{LatencyModel, Profile, SimConfig, Simulator};
use clap::Parser;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "graph-sim",
    about = "A stateful Microsoft Graph tenant simulator on loopback"
)]
struct Args {
    /// Tenant size: empty, small (~50 users), medium (5,000), large (100,000).
    #[arg(long, default_value = "small")]
    profile: Profile,
    /// Seed of the generated tenant.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Enable throttling (RU buckets, write limits, Outlook and SharePoint limits).
    #[arg(long)]
    throttling: bool,
    /// Latency per request in milliseconds (enables the latency model).
    #[arg(long)]
    latency_base_ms: Option<u64>,
    /// Latency per returned object in microseconds.
    #[arg(long, default_value_t = 600)]
    latency_per_object_us: u64,
    /// `expires_in` of access tokens, seconds.
    #[arg(long, default_value_t = 3599)]
    token_lifetime: u64,
    /// Keep security groups in the recycle bin on delete (default: hard delete, as older v1.0 docs say).
    #[arg(long)]
    soft_delete_security_groups: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let mut cfg = SimConfig::new(a.profile, a.seed);
    cfg.port = a.port;
    cfg.throttling = a.throttling;
    cfg.token_lifetime = Duration::from_secs(a.token_lifetime);
    cfg.security_groups_hard_delete = !a.soft_delete_security_groups;
    if let Some(ms) = a.latency_base_ms {
        cfg.latency = Some(LatencyModel {
            base: Duration::from_millis(ms),
            per_object: Duration::from_micros(a.latency_per_object_us),
        });
    }
    let sim = Simulator::start(cfg).await?;
    let mut info = sim.info();
    info["startup_ms"] = serde_json::json!(sim.startup_time().as_millis() as u64);
    println!("{}", serde_json::to_string(&info)?);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
