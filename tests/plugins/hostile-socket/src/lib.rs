//! A collector that tries to open its own TCP connection instead of using its Graph binding.

use cairn_sdk::prelude::*;

struct Socket;

impl Plugin for Socket {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "hostile-socket",
            env!("CARGO_PKG_VERSION"),
            "Opens a socket (tests only)",
        )
        .collector(&["thing"])
    }
}

impl Collector for Socket {
    fn plan() -> Result<Vec<Task>, PluginError> {
        match std::net::TcpStream::connect("127.0.0.1:9") {
            Ok(_) => Ok(vec![task("connected", "connected", serde_json::json!({}))]),
            Err(e) => Err(PluginError::Other(format!("connect failed: {e}"))),
        }
    }

    fn run_step(_: Task, _: Option<String>, _: Option<String>) -> Result<Step, PluginError> {
        Err(PluginError::Other("no steps".into()))
    }
}

cairn_sdk::export_collector!(Socket);
