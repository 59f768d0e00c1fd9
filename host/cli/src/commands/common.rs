//! What several commands share: loading the manifest, opening repositories, printing.

use std::path::{Path, PathBuf};

use cairn_engine::setup::{open_sinks, read_identities, Access, OpenSink};
use cairn_engine::PluginRegistry;
use cairn_manifest::Manifest;
use cairn_runtime::{Runtime, RuntimeConfig};
use clap::Args;

use crate::exit::Failure;

/// Where the manifest is.
#[derive(Args, Clone)]
pub struct ManifestArg {
    /// The manifest.
    #[arg(
        short = 'm',
        long = "manifest",
        default_value = "cairn.toml",
        env = "CAIRN_MANIFEST"
    )]
    pub path: PathBuf,
}

/// Which repository and with which keys.
#[derive(Args, Clone, Default)]
pub struct RepoArgs {
    /// The sink whose repository to use (default: the first in the manifest).
    #[arg(long)]
    pub sink: Option<String>,
    /// An age identity file (or OpenSSH private key) of a recipient: needed to read item
    /// contents. Without it, the writer's key file is used (metadata only).
    #[arg(short = 'i', long = "identity")]
    pub identity: Vec<PathBuf>,
}

/// A missing manifest is a usage failure (exit 2) that says how to get one.
pub fn require_manifest(path: &Path) -> Result<(), Failure> {
    if path.exists() {
        return Ok(());
    }
    Err(Failure::usage(format!(
        "no manifest at {} — write one with `cairn init`, or pass --manifest",
        path.display()
    )))
}

/// Loads and checks the manifest; any error is a usage failure (exit 2) with every problem.
pub fn load_manifest(path: &Path) -> Result<Manifest, Failure> {
    require_manifest(path)?;
    let manifest = cairn_manifest::load(path).map_err(|d| {
        // The diagnostics carry their own `file:line: error:` headlines.
        eprintln!("{d}");
        Failure::usage("")
    })?;
    for w in &manifest.warnings {
        eprintln!("{w}");
    }
    Ok(manifest)
}

/// The plugin registry with the default compiled-component cache.
pub fn registry() -> Result<PluginRegistry, Failure> {
    Ok(PluginRegistry::new(Runtime::new(
        RuntimeConfig::with_default_cache(),
    )?))
}

/// Opens the repository of one sink (the first, unless `--sink`).
pub fn open_repo(
    manifest: &Manifest,
    registry: &PluginRegistry,
    args: &RepoArgs,
) -> Result<OpenSink, Failure> {
    let access = Access {
        identities: read_identities(&args.identity)
            .map_err(|e| Failure::usage(format!("{e:#}")))?,
    };
    let name = match &args.sink {
        Some(s) => s.clone(),
        None => manifest
            .sinks
            .keys()
            .next()
            .cloned()
            .ok_or_else(|| Failure::usage("the manifest has no [sinks.*]"))?,
    };
    let mut sinks = open_sinks(manifest, registry, &access, Some(&name))?;
    Ok(sinks.remove(0))
}

/// Prints JSON to stdout.
pub fn print_json(v: &impl serde::Serialize) {
    outln!("{}", serde_json::to_string_pretty(v).expect("serialisable"));
}

/// Shortens an id for tables.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
