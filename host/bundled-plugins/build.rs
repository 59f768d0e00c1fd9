use cairn_wasm_build::{build_plugins, workspace_root, PluginCrate};

/// First-party plugins: (bundled name, package, directory).
const BUNDLED: &[(&str, &str, &str)] = &[
    ("age-sink", "cairn-plugin-age-sink", "plugins/age-sink"),
    ("entra", "cairn-plugin-entra", "plugins/entra"),
    ("m365-mail", "cairn-plugin-m365-mail", "plugins/m365-mail"),
    (
        "sharepoint-links",
        "cairn-plugin-sharepoint-links",
        "plugins/sharepoint-links",
    ),
];

fn main() {
    let root = workspace_root(&std::env::var("CARGO_MANIFEST_DIR").unwrap(), 2);
    let crates: Vec<PluginCrate<'_>> = BUNDLED
        .iter()
        .map(|(_, package, dir)| PluginCrate { package, dir })
        .collect();
    let built = build_plugins(&root, &crates);
    let mut code = String::from(
        "/// (bundled name, component bytes)\npub static BUNDLED: &[(&str, &[u8])] = &[\n",
    );
    for ((name, _, _), (_, path)) in BUNDLED.iter().zip(built) {
        code.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    code.push_str("];\n");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("bundled.rs");
    std::fs::write(out, code).unwrap();
}
