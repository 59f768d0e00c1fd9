//! `cairn check`, `forget` (policy, tags, legal holds) and `prune` as processes, on a
//! repository made by `cairn init` and two backups of the simulated tenant.

use crate::support;

use cairn_graph_sim::{Profile, SimConfig};
use support::{assert_ok, text, Env};

fn ids(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| {
            x.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| x["id"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn check_forget_hold_and_prune() {
    let env = Env::start(SimConfig::new(Profile::Small, 5));
    let manifest = env.init("maint");
    assert_ok(&env.run(&manifest, &["backup", "--tag", "first"]));
    env.sim.churn(5.0);
    assert_ok(&env.run(&manifest, &["backup", "--tag", "second"]));
    let snaps = env.json(&manifest, &["snapshots", "--json"]);
    let first = snaps[0]["id"].as_str().unwrap().to_string();
    let second = snaps[1]["id"].as_str().unwrap().to_string();

    // check: structure with the writer key; item data with the restore identity.
    let v = env.json(&manifest, &["check", "--json"]);
    assert_eq!(v[0]["ok"], true, "{v}");
    assert_eq!(v[0]["report"]["snapshots"], 2, "{v}");
    let identity = support::identity(&manifest);
    let identity = identity.to_str().unwrap();
    let v = env.json(
        &manifest,
        &["check", "--read-data", "-i", identity, "--json"],
    );
    assert_eq!(v[0]["ok"], true, "{v}");
    assert!(
        v[0]["report"]["blobs_verified"].as_u64().unwrap() > 0,
        "{v}"
    );
    let out = env.run(&manifest, &["check", "--read-data"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "data needs an identity: {}",
        text(&out)
    );

    // forget: a dry run changes nothing.
    let v = env.json(
        &manifest,
        &["forget", "--keep-last", "1", "--dry-run", "--json"],
    );
    assert_eq!(ids(&v[0]["forget"]), vec![first.clone()], "{v}");
    assert_eq!(v[0]["dryRun"], true);
    assert_eq!(
        env.json(&manifest, &["snapshots", "--json"])
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A tag filter leaves other snapshots alone; --keep-tag keeps.
    let v = env.json(
        &manifest,
        &[
            "forget",
            "--keep-last",
            "1",
            "--tag",
            "second",
            "--dry-run",
            "--json",
        ],
    );
    assert!(ids(&v[0]["forget"]).is_empty(), "{v}");
    let v = env.json(
        &manifest,
        &[
            "forget",
            "--keep-last",
            "1",
            "--keep-tag",
            "first",
            "--dry-run",
            "--json",
        ],
    );
    assert!(ids(&v[0]["forget"]).is_empty(), "{v}");

    // A legal hold keeps the first snapshot against the policy.
    let v = env.json(&manifest, &["forget", "--hold", &first[..10], "--json"]);
    assert_eq!(v[0]["outcome"], "held", "{v}");
    let v = env.json(&manifest, &["forget", "--keep-last", "1", "--json"]);
    assert!(ids(&v[0]["forget"]).is_empty(), "{v}");
    let kept = v[0]["keep"].to_string();
    assert!(kept.contains("legal hold"), "{v}");
    let v = env.json(&manifest, &["forget", "--release", &first[..10], "--json"]);
    assert_eq!(v[0]["outcome"], "released", "{v}");

    // Without flags, the manifest's [retention] applies (the starter keeps 7 daily: both
    // snapshots are from today, so the newest of the day is kept).
    let v = env.json(&manifest, &["forget", "--dry-run", "--json"]);
    assert_eq!(ids(&v[0]["forget"]), vec![first.clone()], "{v}");
    assert!(v[0]["keep"].to_string().contains("daily"), "{v}");

    // Now for real, then prune: the second snapshot is intact and fully readable.
    let v = env.json(&manifest, &["forget", "--keep-last", "1", "--json"]);
    assert_eq!(ids(&v[0]["forget"]), vec![first.clone()], "{v}");
    let snaps = env.json(&manifest, &["snapshots", "--json"]);
    assert_eq!(ids(&snaps), vec![second.clone()]);
    let v = env.json(&manifest, &["prune", "--json"]);
    assert_eq!(v[0]["report"]["dry_run"], false, "{v}");
    assert!(
        v[0]["report"]["refused"].as_array().unwrap().is_empty(),
        "{v}"
    );
    let out = env.run(&manifest, &["prune"]);
    assert_ok(&out);
    assert!(text(&out).contains("grace"), "{}", text(&out));
    // Repacking (it reads data: needs the identity) copies the live blobs of partly used packs
    // and marks the old packs; phase two with no grace deletes them. The remaining snapshot
    // still checks out, data and all.
    let out = env.run(&manifest, &["prune", "--repack-threshold", "0.01"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let v = env.json(
        &manifest,
        &[
            "prune",
            "--repack-threshold",
            "0.01",
            "-i",
            identity,
            "--json",
        ],
    );
    let repacked = v[0]["report"]["repacked"].as_array().unwrap().len();
    assert!(repacked > 0, "{v}");
    let v = env.json(&manifest, &["prune", "--grace", "0s", "--json"]);
    let deleted = v[0]["report"]["deleted"].as_array().unwrap();
    assert!(
        deleted.len() >= repacked,
        "the repacked packs are deleted: {v}"
    );
    assert!(v[0]["report"]["deleted_bytes"].as_u64().unwrap() > 0, "{v}");
    let v = env.json(
        &manifest,
        &["check", "--read-data", "-i", identity, "--json"],
    );
    assert_eq!(v[0]["ok"], true, "{v}");
    assert_eq!(v[0]["report"]["snapshots"], 1, "{v}");

    // A forget with no rule at all is refused.
    let bare = manifest.with_file_name("bare.toml");
    let text_ = std::fs::read_to_string(&manifest).unwrap();
    let cut = text_.find("[retention]").unwrap();
    let end = text_.find("[schedule]").unwrap();
    std::fs::write(&bare, format!("{}{}", &text_[..cut], &text_[end..])).unwrap();
    let out = env.run(&bare, &["forget"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no keep rule"), "{}", text(&out));
}
