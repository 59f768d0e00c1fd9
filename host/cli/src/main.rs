//! `cairn`: back up and restore Microsoft Entra ID and Microsoft 365.
//!
//! Exit codes: 0 success, 1 failure, 2 bad usage or configuration, 3 partial success.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[macro_use]
mod out;
mod commands;
mod exit;
mod progress;

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
    /// Run the whole job on a simulated tenant: back up, cause a disaster, back up, diff.
    Demo(commands::demo::DemoArgs),
    /// Back up: run the manifest's collectors into its sinks (exit 3 if some tasks failed).
    Backup(commands::backup::BackupArgs),
    /// List a repository's snapshots.
    Snapshots(commands::browse::SnapshotsArgs),
    /// List the items of a snapshot.
    Ls(commands::browse::LsArgs),
    /// Print one item of a snapshot as JSON (needs --identity).
    Show(commands::browse::ShowArgs),
    /// What changed between two snapshots (attribute changes need --identity).
    Diff(commands::browse::DiffArgs),
    /// Check the manifest without running anything: every problem with file, line and fix.
    Validate(commands::validate::ValidateArgs),
    /// The Graph application permissions the manifest's plugins need.
    Permissions(commands::validate::PermissionsArgs),
    /// Inspect and list plugins.
    #[command(subcommand)]
    Plugins(commands::plugins::PluginsCommand),
    /// Restore from a snapshot: plan (default), apply, verify, journal, export.
    Restore(commands::restore::RestoreArgs),
    /// Restore a snapshot into a fresh simulated tenant, verify it, report recovery time and fidelity.
    Drill(commands::restore::DrillArgs),
    /// Write a starter manifest (and an age key pair with --with-keys); create the repositories.
    Init(commands::init::InitArgs),
    /// Verify the repositories: structure, and item data with --read-data.
    Check(commands::maintain::CheckArgs),
    /// Forget snapshots by the retention policy; place or release legal holds.
    Forget(commands::maintain::ForgetArgs),
    /// Delete data no snapshot needs (two phases, with a grace period).
    Prune(commands::maintain::PruneArgs),
    /// Run the Microsoft Graph tenant simulator in the foreground.
    Sim(commands::sim::SimArgs),
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
    out::install_broken_pipe_hook();
    // A backup's progress bars on a terminal, and the demo's narrative, say what info lines would.
    let quiet_info = matches!(cli.command, Command::Demo(_))
        || (matches!(cli.command, Command::Backup(_)) && progress::bars_wanted());
    init_logging(cli.verbose, quiet_info);
    let result = match cli.command {
        Command::Demo(a) => commands::demo::run(a),
        Command::Backup(a) => commands::backup::run(a),
        Command::Snapshots(a) => commands::browse::snapshots(a),
        Command::Ls(a) => commands::browse::ls(a),
        Command::Show(a) => commands::browse::show(a),
        Command::Diff(a) => commands::browse::diff(a),
        Command::Validate(a) => commands::validate::validate(a),
        Command::Permissions(a) => commands::validate::permissions(a),
        Command::Plugins(cmd) => commands::plugins::run(cmd),
        Command::Restore(a) => commands::restore::run(a),
        Command::Drill(a) => commands::restore::drill(a),
        Command::Init(a) => commands::init::run(a),
        Command::Check(a) => commands::maintain::check(a),
        Command::Forget(a) => commands::maintain::forget(a),
        Command::Prune(a) => commands::maintain::prune(a),
        Command::Sim(a) => commands::sim::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

fn init_logging(verbose: u8, quiet_info: bool) {
    let default = match verbose {
        0 if quiet_info => "warn",
        0 => "warn,cairn=info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| progress::LogWriter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand's arguments are consistent (unique names, valid defaults, …); clap
    /// checks this only when a subcommand is first used.
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
