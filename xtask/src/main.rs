//! Project tasks: `cargo xtask test` runs everything CI runs; `cargo xtask plugins` builds the
//! WebAssembly plugins; `cargo xtask bench` runs the benchmarks.

use std::process::{Command, ExitCode};

/// Plugin crates built for wasm32-wasip2, each checked with clippy on its own (they enable
/// different cairn-sdk features, which one cargo invocation would unify).
const PLUGIN_PACKAGES: &[&str] = &[
    "cairn-test-hostile",
    "cairn-test-hostile-socket",
    "cairn-test-echo-sink",
    "hello-collector",
    "cairn-plugin-age-sink",
    "cairn-plugin-entra",
    "cairn-plugin-m365-mail",
    "cairn-plugin-sharepoint-links",
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("lint") => lint(),
        Some("plugins") => plugins(),
        Some("bench") => bench(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 test [ARGS]   fmt check, clippy (host and plugins), then all tests (ARGS go to cargo test)\n  \
                 lint          fmt check and clippy only\n  \
                 plugins       build the WebAssembly plugins (wasm32-wasip2)\n  \
                 bench [ARGS]  run the benchmarks (they print figures; they assert nothing)"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn cargo(args: &[&str]) -> Result<(), String> {
    // The rustup proxy on PATH, so rust-toolchain.toml picks the toolchain (a `CARGO` variable
    // inherited from elsewhere could name another toolchain's cargo).
    let cargo = "cargo";
    eprintln!("==> cargo {}", args.join(" "));
    let status = Command::new(cargo)
        .args(args)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed", args.join(" ")))
    }
}

fn lint() -> Result<(), String> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&["clippy", "--all-targets", "--", "-D", "warnings"])?;
    cargo(&[
        "clippy",
        "--package",
        "cairn-sdk",
        "--features",
        "collector,restorer",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    for p in PLUGIN_PACKAGES {
        cargo(&[
            "clippy",
            "--package",
            p,
            "--target",
            "wasm32-wasip2",
            "--profile",
            "plugin",
            "--",
            "-D",
            "warnings",
        ])?;
    }
    Ok(())
}

fn test(extra: &[String]) -> Result<(), String> {
    lint()?;
    // The SDK's own tests need a kind feature (it is not a default member).
    let sdk = cargo_test(&[
        "test",
        "--package",
        "cairn-sdk",
        "--features",
        "collector,restorer",
    ]);
    // The first-party plugins' unit tests run natively, one package at a time (they are not
    // default members, and their cairn-sdk features differ).
    let plugins: Vec<TestRun> = PLUGIN_PACKAGES
        .iter()
        .filter(|p| p.starts_with("cairn-plugin-"))
        .map(|p| cargo_test(&["test", "--package", p]))
        .collect();
    let mut args = vec!["test"];
    args.extend(extra.iter().map(String::as_str));
    let all = cargo_test(&args);
    let runs = std::iter::once(&sdk)
        .chain(&plugins)
        .chain(std::iter::once(&all));
    let (passed, failed) = runs
        .clone()
        .fold((0, 0), |(p, f), r| (p + r.passed, f + r.failed));
    // One closing line for the whole run (libtest prints one per test binary).
    println!("{passed} passed, {failed} failed");
    runs.map(|r| r.result.clone())
        .collect::<Result<Vec<()>, String>>()
        .map(|_| ())
}

/// Totals of a `cargo test` run, read from libtest's `test result:` lines.
struct TestRun {
    passed: u64,
    failed: u64,
    result: Result<(), String>,
}

/// Runs `cargo test …`, passing its output through and adding up the results.
fn cargo_test(args: &[&str]) -> TestRun {
    use std::io::{BufRead, BufReader};
    eprintln!("==> cargo {}", args.join(" "));
    let child = Command::new("cargo")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return TestRun {
                passed: 0,
                failed: 0,
                result: Err(format!("cannot run cargo: {e}")),
            }
        }
    };
    let (mut passed, mut failed) = (0, 0);
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let count = |word: &str| -> u64 {
                rest.split(';')
                    .find_map(|part| {
                        let part = part.trim();
                        let part = part
                            .strip_prefix("ok. ")
                            .or_else(|| part.strip_prefix("FAILED. "))
                            .unwrap_or(part);
                        part.strip_suffix(word).and_then(|n| n.trim().parse().ok())
                    })
                    .unwrap_or(0)
            };
            passed += count("passed");
            failed += count("failed");
        }
    }
    let result = match child.wait() {
        Ok(s) if s.success() => Ok(()),
        Ok(_) => Err(format!("`cargo {}` failed", args.join(" "))),
        Err(e) => Err(format!("waiting for cargo: {e}")),
    };
    TestRun {
        passed,
        failed,
        result,
    }
}

fn plugins() -> Result<(), String> {
    for p in PLUGIN_PACKAGES {
        cargo(&[
            "build",
            "--package",
            p,
            "--target",
            "wasm32-wasip2",
            "--profile",
            "plugin",
        ])?;
    }
    Ok(())
}

fn bench(extra: &[String]) -> Result<(), String> {
    let mut args = vec!["bench"];
    args.extend(extra.iter().map(String::as_str));
    cargo(&args)
}
