//! Host-side bindings generated from `wit/` (world `cairn-host`: every import a plugin may use,
//! every export a plugin may provide). Each component's actual exports are loaded per interface.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "cairn-host",
});
