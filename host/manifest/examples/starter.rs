//! `cargo run -p cairn-manifest --example starter [recipient]`: prints the starter manifest.
fn main() {
    let opts = cairn_manifest::StarterOptions {
        recipients: std::env::args().skip(1).collect(),
        identity_file: Some("cairn-identity.txt".into()),
        ..Default::default()
    };
    print!("{}", cairn_manifest::starter_manifest(&opts));
}
