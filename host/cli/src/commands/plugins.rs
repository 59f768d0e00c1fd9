//! `cairn plugins inspect <file.wasm>`: what a plugin is and what it needs.

use std::path::PathBuf;

use cairn_runtime::types::{PermissionUse, PluginInfo, PluginKind};
use cairn_runtime::{LoadError, Runtime, RuntimeConfig};
use clap::Subcommand;
use serde_json::json;

use crate::exit::Failure;

#[derive(Subcommand)]
pub enum PluginsCommand {
    /// Load a plugin file and print its name, version, kinds, config schema and the Graph
    /// permissions it needs. Rejects files that are not Cairn plugin components.
    Inspect {
        /// The plugin's `.wasm` file.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: PluginsCommand) -> Result<(), Failure> {
    match cmd {
        PluginsCommand::Inspect { file, json } => inspect(file, json),
    }
}

fn inspect(file: PathBuf, as_json: bool) -> Result<(), Failure> {
    let runtime = Runtime::new(RuntimeConfig::with_default_cache())?;
    let plugin = runtime.load_file(&file).map_err(|e| match e {
        LoadError::Read { .. } => Failure::usage(e.to_string()),
        other => Failure::failed(other.to_string()),
    })?;
    let info = plugin.info();
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&info_json(info)).expect("JSON")
        );
    } else {
        print!("{}", info_text(info));
    }
    Ok(())
}

pub fn kind_name(k: &PluginKind) -> &'static str {
    match k {
        PluginKind::Collector => "collector",
        PluginKind::Sink => "sink",
        PluginKind::Restorer => "restorer",
    }
}

fn use_name(u: &PermissionUse) -> &'static str {
    match u {
        PermissionUse::Backup => "backup",
        PermissionUse::Restore => "restore",
    }
}

fn info_json(info: &PluginInfo) -> serde_json::Value {
    let schema: serde_json::Value =
        serde_json::from_str(&info.config_schema).unwrap_or(serde_json::Value::Null);
    json!({
        "name": info.name,
        "version": info.version,
        "description": info.description,
        "kinds": info.kinds.iter().map(kind_name).collect::<Vec<_>>(),
        "itemKinds": info.item_kinds,
        "configSchema": schema,
        "permissions": info.permissions.iter().map(|p| json!({
            "name": p.name, "reason": p.reason, "neededFor": use_name(&p.needed_for)
        })).collect::<Vec<_>>(),
        "contract": format!("{}@{}", cairn_runtime::CONTRACT_PACKAGE, cairn_runtime::CONTRACT_VERSION),
    })
}

fn info_text(info: &PluginInfo) -> String {
    let mut out = String::new();
    out.push_str(&format!("{} {}\n", info.name, info.version));
    out.push_str(&format!("  {}\n", info.description));
    out.push_str(&format!(
        "  kinds:       {}\n",
        info.kinds
            .iter()
            .map(kind_name)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if !info.item_kinds.is_empty() {
        out.push_str(&format!("  item kinds:  {}\n", info.item_kinds.join(", ")));
    }
    out.push_str(&format!(
        "  contract:    {}@{}\n",
        cairn_runtime::CONTRACT_PACKAGE,
        cairn_runtime::CONTRACT_VERSION
    ));
    if info.permissions.is_empty() {
        out.push_str("  permissions: none\n");
    } else {
        out.push_str("  permissions:\n");
        for p in &info.permissions {
            out.push_str(&format!(
                "    {:<40} {:<8} {}\n",
                p.name,
                use_name(&p.needed_for),
                p.reason
            ));
        }
    }
    let schema: serde_json::Value =
        serde_json::from_str(&info.config_schema).unwrap_or(serde_json::Value::Null);
    out.push_str("  config schema:\n");
    for line in serde_json::to_string_pretty(&schema).expect("JSON").lines() {
        out.push_str(&format!("    {line}\n"));
    }
    out
}
