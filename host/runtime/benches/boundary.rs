//! Micro-benchmark of the plugin boundary: the cost of one export call, and of moving 1 MiB
//! into and out of a plugin. Prints figures; asserts nothing.
//!
//! `cargo bench -p cairn-runtime --bench boundary`

use std::path::Path;
use std::time::{Duration, Instant};

use cairn_runtime::{Capabilities, Runtime, RuntimeConfig};

fn per_op(total: Duration, n: u32) -> String {
    let ns = total.as_nanos() as f64 / f64::from(n);
    if ns > 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns > 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn main() {
    let cache = std::env::temp_dir().join("cairn-bench-component-cache");
    let rt = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache),
        ..Default::default()
    })
    .expect("runtime");

    let t = Instant::now();
    let plugin = rt
        .load_file(Path::new(cairn_test_plugins::ECHO_SINK))
        .expect("echo sink loads");
    println!("load (compile or cache hit) + describe: {:?}", t.elapsed());

    let t = Instant::now();
    let n = 200;
    for _ in 0..n {
        let mut i = plugin.instantiate_default(Capabilities::default()).unwrap();
        i.configure("{}").unwrap().unwrap();
    }
    println!(
        "instantiate + configure:                {}",
        per_op(t.elapsed(), n)
    );

    let mut inst = plugin.instantiate_default(Capabilities::default()).unwrap();
    inst.configure("{}").unwrap().unwrap();

    // Warm up, then time an export call that does almost nothing.
    for _ in 0..1000 {
        inst.sink_list("nothing/").unwrap().unwrap();
    }
    let n = 20_000;
    let t = Instant::now();
    for _ in 0..n {
        inst.sink_list("nothing/").unwrap().unwrap();
    }
    println!(
        "export call (sink.list, empty result):  {}",
        per_op(t.elapsed(), n)
    );

    let mib = vec![0xA5u8; 1 << 20];
    let n = 200;
    let t = Instant::now();
    for i in 0..n {
        inst.sink_put(&format!("k{i}"), &mib).unwrap().unwrap();
    }
    let into = t.elapsed();
    let t = Instant::now();
    for i in 0..n {
        let back = inst.sink_get(&format!("k{i}")).unwrap().unwrap();
        assert_eq!(back.len(), mib.len());
    }
    let out = t.elapsed();
    println!(
        "1 MiB into the plugin (sink.put):       {}  ({:.0} MiB/s)",
        per_op(into, n),
        f64::from(n) / into.as_secs_f64()
    );
    println!(
        "1 MiB out of the plugin (sink.get):     {}  ({:.0} MiB/s)",
        per_op(out, n),
        f64::from(n) / out.as_secs_f64()
    );
}
