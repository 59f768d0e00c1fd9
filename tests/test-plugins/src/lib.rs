//! Paths of the test plugins, compiled to `wasm32-wasip2` components by this crate's build
//! script.

/// A collector that misbehaves on request: its config `{"behaviour": …}` picks `loop`,
/// `allocate`, `read-file`, `unbound-host`, `auth-header` or `panic`; `none` behaves.
pub const HOSTILE: &str = env!("WASM_CAIRN_TEST_HOSTILE");

/// A collector that opens a TCP socket (it imports `wasi:sockets`).
pub const HOSTILE_SOCKET: &str = env!("WASM_CAIRN_TEST_HOSTILE_SOCKET");

/// The example third-party collector from `examples/hello-collector`.
pub const HELLO_COLLECTOR: &str = env!("WASM_HELLO_COLLECTOR");

/// A sink that keeps objects in memory, or passes them to the host blob store.
pub const ECHO_SINK: &str = env!("WASM_CAIRN_TEST_ECHO_SINK");
