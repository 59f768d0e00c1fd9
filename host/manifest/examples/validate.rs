//! `cargo run -p cairn-manifest --example validate -- cairn.toml`: prints the diagnostics.
fn main() {
    let path = std::env::args().nth(1).expect("usage: validate <manifest>");
    match cairn_manifest::load(std::path::Path::new(&path)) {
        Ok(m) => {
            for w in &m.warnings {
                println!("{w}");
            }
            println!(
                "ok: {} collectors, {} sinks, hash {}",
                m.collectors.len(),
                m.sinks.len(),
                m.hash()
            );
            for d in cairn_manifest::check_secrets(&m) {
                println!("{d}");
            }
        }
        Err(d) => {
            println!("{d}");
            std::process::exit(2);
        }
    }
}
