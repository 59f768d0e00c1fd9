//! Mutations of a full manifest never panic, and every failure is explained by a located error.

use crate::common;

use std::path::Path;

fn check(text: &str) {
    match cairn_manifest::parse_with_env(
        "cairn.toml",
        text,
        Path::new("/etc/cairn"),
        &common::env(),
    ) {
        Ok(m) => {
            let _ = m.hash();
        }
        Err(d) => {
            assert!(d.has_errors());
            for e in d.errors() {
                assert!(
                    !e.message.contains("went unreported"),
                    "a check failed silently for:\n{text}"
                );
                assert!(e.line >= 1, "unlocated error {e} for:\n{text}");
                let _ = e.to_string();
            }
        }
    }
}

#[test]
fn deleting_duplicating_or_cutting_any_line_is_handled() {
    let full = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/manifests/full.toml"),
    )
    .unwrap();
    let lines: Vec<&str> = full.lines().collect();
    for i in 0..lines.len() {
        let mut deleted = lines.clone();
        deleted.remove(i);
        check(&deleted.join("\n"));
        let mut doubled = lines.clone();
        doubled.insert(i, lines[i]);
        check(&doubled.join("\n"));
        for cut in [1, lines[i].len() / 2, lines[i].len().saturating_sub(1)] {
            if let Some(prefix) = lines[i].get(..cut) {
                let mut cut_lines = lines.clone();
                cut_lines[i] = prefix;
                check(&cut_lines.join("\n"));
            }
        }
        // Values replaced by other types.
        if let Some((k, _)) = lines[i].split_once(" = ") {
            for v in [
                "1",
                "\"x\"",
                "[]",
                "{}",
                "true",
                "1979-05-27",
                "-1",
                "\"${X}\"",
            ] {
                let mut swapped = lines.clone();
                let line = format!("{k} = {v}");
                swapped[i] = &line;
                check(&swapped.join("\n"));
            }
        }
    }
    // Truncations of the whole file.
    for n in (0..full.len()).step_by(7) {
        if let Some(prefix) = full.get(..n) {
            check(prefix);
        }
    }
}
