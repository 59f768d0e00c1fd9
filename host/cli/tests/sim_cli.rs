//! `cairn sim` as a process: it prints what a manifest needs, a backup against it works, and
//! it stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_backup_runs_against_cairn_sim() {
    let tmp = tempfile::tempdir().unwrap();
    let secret_file = tmp.path().join("secret.txt");
    let mut sim = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args([
            "sim",
            "--profile",
            "empty",
            "--seed",
            "2",
            "--json",
            "--secret-file",
        ])
        .arg(&secret_file)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(sim.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info: serde_json::Value = serde_json::from_str(&line).unwrap();
    let url = info["url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{info}");
    assert!(
        info.get("client_secret").is_none(),
        "the secret is only in the file: {info}"
    );
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let dir = tmp.path().join("site");
    let cairn = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(args)
            .env("CAIRN_CLIENT_SECRET", &secret)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = cairn(&[
        "init",
        "--with-keys",
        "--dir",
        dir.to_str().unwrap(),
        "--endpoint",
        url,
        "--tenant",
        info["tenant_id"].as_str().unwrap(),
        "--client-id",
        info["client_id"].as_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let manifest = dir.join("cairn.toml");
    let out = cairn(&["backup", "--json", "-m", manifest.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["tasks"]["entra/users"]["items"].as_u64().unwrap() >= 1,
        "{report}"
    );

    // SIGTERM: it stops, exit 0, and removes the secret file it wrote.
    let status = Command::new("kill")
        .args(["-TERM", &sim.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = sim.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!secret_file.exists());
}

#[test]
fn the_text_output_has_a_manifest_snippet() {
    let tmp = tempfile::tempdir().unwrap();
    let secret_file = tmp.path().join("secret.txt");
    let mut sim = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["sim", "--profile", "empty", "--secret-file"])
        .arg(&secret_file)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(sim.stdout.take().unwrap());
    let mut all = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        all.push_str(&line);
        if line.starts_with("Serving until") {
            break;
        }
    }
    sim.kill().unwrap();
    let _ = sim.wait();
    assert!(all.contains("[connections.main]"), "{all}");
    assert!(
        all.contains(&format!("client_secret = \"file:{}", secret_file.display())),
        "{all}"
    );
    assert!(all.contains("graph_url = \"http://127.0.0.1:"), "{all}");
}
