//! `cairn validate` and `cairn permissions`: check a manifest without running anything, and
//! list the Graph permissions its plugins need.

use std::collections::BTreeMap;

use cairn_engine::setup::plugin_ref;
use cairn_manifest::{Diagnostic, PluginRole};
use cairn_runtime::types::{PermissionUse, PluginKind};
use clap::Args;
use serde_json::json;

use super::common::{print_json, registry, require_manifest, ManifestArg};
use crate::exit::Failure;

#[derive(Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    /// Print the diagnostics as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct PermissionsArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Every problem of the manifest: syntax and structure, secrets that do not resolve, unknown
/// plugins, plugin configs that break their schema. Exit 2 if there is any error.
pub fn validate(args: ValidateArgs) -> Result<(), Failure> {
    let path = &args.manifest.path;
    require_manifest(path)?;
    let mut diagnostics: Vec<Diagnostic> = Vec::new();
    match cairn_manifest::load(path) {
        Err(d) => diagnostics.extend(d.0),
        Ok(m) => {
            diagnostics.extend(m.warnings.iter().cloned());
            diagnostics.extend(cairn_manifest::check_secrets(&m));
            let reg = registry()?;
            let bundled: Vec<&str> = cairn_bundled_plugins::names().collect();
            diagnostics.extend(cairn_manifest::check_plugin_configs(
                &m,
                &bundled,
                |r, role| {
                    let plugin = reg.get(&plugin_ref(r)).map_err(|e| e.to_string())?;
                    let info = plugin.info();
                    let (wanted, word) = match role {
                        PluginRole::Collector => (PluginKind::Collector, "collector"),
                        PluginRole::Sink => (PluginKind::Sink, "sink"),
                    };
                    if !info.kinds.contains(&wanted) {
                        return Err(format!("plugin `{}` is not a {word}", info.name));
                    }
                    serde_json::from_str(&info.config_schema).map_err(|e| e.to_string())
                },
            ));
        }
    }
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    if args.json {
        print_json(&json!({"errors": errors, "diagnostics": diagnostics}));
    } else {
        for d in &diagnostics {
            eprintln!("{d}");
        }
        if errors == 0 {
            outln!("{}: ok", path.display());
        }
    }
    if errors > 0 {
        return Err(Failure::usage(format!(
            "{}: {errors} error{}",
            path.display(),
            if errors == 1 { "" } else { "s" }
        )));
    }
    Ok(())
}

/// The Graph application permissions the manifest's plugins declare, with who needs them.
pub fn permissions(args: PermissionsArgs) -> Result<(), Failure> {
    let manifest = super::common::load_manifest(&args.manifest.path)?;
    let reg = registry()?;
    // permission → (use, [collector: reason])
    let mut table: BTreeMap<(String, &'static str), Vec<String>> = BTreeMap::new();
    for (name, c) in &manifest.collectors {
        let plugin = reg
            .get(&plugin_ref(&c.plugin))
            .map_err(|e| Failure::usage(format!("collector `{name}`: {e}")))?;
        for p in &plugin.info().permissions {
            let use_ = match p.needed_for {
                PermissionUse::Backup => "backup",
                PermissionUse::Restore => "restore",
            };
            table
                .entry((p.name.clone(), use_))
                .or_default()
                .push(format!("{name}: {}", p.reason));
        }
    }
    if args.json {
        let v: Vec<_> = table
            .iter()
            .map(|((perm, use_), why)| json!({"permission": perm, "neededFor": use_, "reasons": why}))
            .collect();
        print_json(&v);
        return Ok(());
    }
    outln!(
        "Microsoft Graph application permissions (grant admin consent on the app registration):"
    );
    for ((perm, use_), why) in &table {
        outln!("  {perm:<45} {use_:<8} {}", why.join("; "));
    }
    Ok(())
}
