use cairn_wasm_build::{build_plugins, workspace_root, PluginCrate};

/// The Microsoft 365 plugins under test: (package, directory). A plugin whose directory does
/// not exist yet is skipped (its tests are added with it).
const PLUGINS: &[(&str, &str)] = &[
    ("cairn-plugin-m365-mail", "plugins/m365-mail"),
    ("cairn-plugin-sharepoint-links", "plugins/sharepoint-links"),
];

fn main() {
    let root = workspace_root(&std::env::var("CARGO_MANIFEST_DIR").unwrap(), 2);
    let crates: Vec<PluginCrate<'_>> = PLUGINS
        .iter()
        .filter(|(_, dir)| root.join(dir).join("Cargo.toml").exists())
        .map(|(package, dir)| PluginCrate { package, dir })
        .collect();
    for (package, path) in build_plugins(&root, &crates) {
        let var = package.to_uppercase().replace('-', "_");
        println!("cargo:rustc-env=WASM_{var}={}", path.display());
    }
}
