//! `cairn`: back up and restore Microsoft Entra ID and Microsoft 365.
//!
//! Exit codes: 0 success, 1 failure, 2 bad usage or configuration, 3 partial success.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod exit;

use exit::Failure;

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "Immutable, encrypted backups of Microsoft Entra ID and Microsoft 365"
)]
struct Cli {
    /// More log output (-v: debug, -vv: trace). `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect and list plugins.
    #[command(subcommand)]
    Plugins(commands::plugins::PluginsCommand),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Plugins(cmd) => commands::plugins::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn,cairn=info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

// Keep `Failure` referenced from the binary root for the command modules.
#[allow(dead_code)]
fn _failure_type(_: Failure) {}
