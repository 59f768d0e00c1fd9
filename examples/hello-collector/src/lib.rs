//! An example third-party collector, built only on `cairn-sdk`: backs up the tenant's users,
//! one Graph page per step, incrementally through delta queries.
//!
//! Build: `cargo build --release --target wasm32-wasip2 -p hello-collector`, then point a
//! manifest's `plugin = "path/to/hello_collector.wasm"` at the result.

use cairn_sdk::prelude::*;
use serde::Deserialize;

/// The plugin's manifest config: which user properties to keep.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    select: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            select: [
                "id",
                "displayName",
                "userPrincipalName",
                "mail",
                "accountEnabled",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

struct Hello;

impl Plugin for Hello {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "hello-collector",
            env!("CARGO_PKG_VERSION"),
            "Backs up users (example plugin)",
        )
        .collector(&["user"])
        .config_schema(serde_json::json!({
            "type": "object",
            "properties": {"select": {"type": "array", "items": {"type": "string"}}},
            "additionalProperties": false
        }))
        .permission(
            "User.Read.All",
            "read every user's profile",
            PermissionUse::Backup,
        )
    }
}

impl Collector for Hello {
    fn plan() -> Result<Vec<Task>, PluginError> {
        Ok(vec![task("users", "Users", serde_json::json!({}))])
    }

    fn run_step(
        _task: Task,
        state: Option<String>,
        cursor: Option<String>,
    ) -> Result<Step, PluginError> {
        let cfg: Config = config()?;
        let first = format!("/v1.0/users/delta?$select={}", cfg.select.join(","));
        // Resume this run's paging, else continue from the last run's delta link, else start.
        let (url, listing) = match (cursor, state.filter(|s| !s.is_empty())) {
            (Some(c), _) => (c, Listing::Changes),
            (None, Some(delta)) => (delta, Listing::Changes),
            (None, None) => (first.clone(), Listing::Full),
        };
        let page = match graph::get_page(&url) {
            Err(e) if graph::is_resync(&e) => {
                warn("delta token expired; reading all users again");
                let mut step = read_page(&first, Listing::Full)?;
                step.note = Some("delta token expired; full read".into());
                return Ok(step);
            }
            other => other?,
        };
        let items = page
            .value
            .iter()
            .map(|u| item_from_json("user", u, "displayName"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page.into_delta_step("user", listing, items))
    }
}

fn read_page(url: &str, listing: Listing) -> Result<Step, PluginError> {
    let page = graph::get_page(url)?;
    let items = page
        .value
        .iter()
        .map(|u| item_from_json("user", u, "displayName"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(page.into_delta_step("user", listing, items))
}

cairn_sdk::export_collector!(Hello);
