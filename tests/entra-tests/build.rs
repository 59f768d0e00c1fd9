use cairn_wasm_build::{build_plugins, workspace_root, PluginCrate};

fn main() {
    let root = workspace_root(&std::env::var("CARGO_MANIFEST_DIR").unwrap(), 2);
    let built = build_plugins(
        &root,
        &[PluginCrate {
            package: "cairn-plugin-entra",
            dir: "plugins/entra",
        }],
    );
    for (package, path) in built {
        let var = package.to_uppercase().replace('-', "_");
        println!("cargo:rustc-env=WASM_{var}={}", path.display());
    }
}
