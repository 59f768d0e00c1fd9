//! `cairn plugins inspect <file.wasm>`: what a plugin is and what it needs; `cairn plugins
//! list`: the bundled plugins and those the manifest names.

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
    /// The plugins embedded in `cairn` and those the manifest names (`.wasm` files), with
    /// kinds, version and Graph permissions.
    List {
        #[command(flatten)]
        manifest: super::common::ManifestArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: PluginsCommand) -> Result<(), Failure> {
    match cmd {
        PluginsCommand::Inspect { file, json } => inspect(file, json),
        PluginsCommand::List { manifest, json } => list(&manifest.path, json),
    }
}

/// One row of `plugins list`.
struct Listed {
    source: String,
    used_by: Vec<String>,
    info: Result<PluginInfo, String>,
}

fn list(manifest_path: &std::path::Path, as_json: bool) -> Result<(), Failure> {
    use cairn_engine::PluginRef;
    let registry = super::common::registry()?;
    // plugin reference → manifest entries using it
    let mut refs: Vec<(PluginRef, Vec<String>)> = cairn_bundled_plugins::names()
        .map(|n| (PluginRef::Bundled(n.to_string()), Vec::new()))
        .collect();
    if manifest_path.exists() {
        match cairn_manifest::load(manifest_path) {
            Ok(m) => {
                let uses = m
                    .collectors
                    .iter()
                    .map(|(n, c)| (format!("collectors.{n}"), &c.plugin))
                    .chain(
                        m.sinks
                            .iter()
                            .map(|(n, s)| (format!("sinks.{n}"), &s.plugin)),
                    );
                for (entry, r) in uses {
                    let r = cairn_engine::setup::plugin_ref(r);
                    match refs.iter_mut().find(|(x, _)| *x == r) {
                        Some((_, users)) => users.push(entry),
                        None => refs.push((r, vec![entry])),
                    }
                }
            }
            Err(_) => eprintln!(
                "warning: {} has errors (see `cairn validate`); listing the bundled plugins only",
                manifest_path.display()
            ),
        }
    }
    let rows: Vec<Listed> = refs
        .into_iter()
        .map(|(r, used_by)| Listed {
            source: match &r {
                PluginRef::Bundled(_) => "bundled".to_string(),
                PluginRef::File(p) => p.display().to_string(),
            },
            used_by,
            info: registry
                .get(&r)
                .map(|p| p.info().clone())
                .map_err(|e| format!("{r}: {e}")),
        })
        .collect();
    if as_json {
        let v: Vec<_> = rows
            .iter()
            .map(|l| {
                let mut v = match &l.info {
                    Ok(info) => {
                        let mut v = info_json(info);
                        if let Some(o) = v.as_object_mut() {
                            o.remove("configSchema");
                        }
                        v
                    }
                    Err(e) => json!({"error": e}),
                };
                v["source"] = json!(l.source);
                v["usedBy"] = json!(l.used_by);
                v
            })
            .collect();
        super::common::print_json(&v);
    } else {
        outln!(
            "{:<16} {:<8} {:<20} {:<10} {:<28} PERMISSIONS",
            "NAME",
            "VERSION",
            "KINDS",
            "SOURCE",
            "USED BY"
        );
        for l in &rows {
            match &l.info {
                Ok(info) => {
                    let perms: Vec<String> = info
                        .permissions
                        .iter()
                        .map(|p| format!("{} ({})", p.name, use_name(&p.needed_for)))
                        .collect();
                    outln!(
                        "{:<16} {:<8} {:<20} {:<10} {:<28} {}",
                        info.name,
                        info.version,
                        info.kinds
                            .iter()
                            .map(kind_name)
                            .collect::<Vec<_>>()
                            .join(","),
                        l.source,
                        if l.used_by.is_empty() {
                            "-".to_string()
                        } else {
                            l.used_by.join(", ")
                        },
                        if perms.is_empty() {
                            "none".to_string()
                        } else {
                            perms.join(", ")
                        }
                    );
                }
                Err(e) => outln!("error: {e}"),
            }
        }
    }
    if rows.iter().any(|l| l.info.is_err()) {
        return Err(Failure::failed(
            "some plugins could not be loaded (see above)",
        ));
    }
    Ok(())
}

fn inspect(file: PathBuf, as_json: bool) -> Result<(), Failure> {
    let runtime = Runtime::new(RuntimeConfig::with_default_cache())?;
    let plugin = runtime.load_file(&file).map_err(|e| match e {
        LoadError::Read { .. } => Failure::usage(e.to_string()),
        other => Failure::failed(other.to_string()),
    })?;
    let info = plugin.info();
    if as_json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&info_json(info)).expect("JSON")
        );
    } else {
        outp!("{}", info_text(info));
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
