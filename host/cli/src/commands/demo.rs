//! `cairn demo`: the whole job end to end on an embedded default — a simulated tenant, a local
//! age-encrypted repository, two backups (Entra, mail and sharing links) around a disaster, the
//! diff between them, and the recovery: a restore plan from the first snapshot, applied and
//! verified.

use std::path::PathBuf;
use std::time::Instant;

use cairn_engine::backup::run_backup;
use cairn_engine::diff::diff_snapshots;
use cairn_engine::keys::generate_identity;
use cairn_engine::restore::{
    self, full_options, open_context, preload, restore_id, ApplyOptions, Selector,
};
use cairn_engine::setup::{collectors, gateways, init_sinks, open_sinks, sink_targets, Access};
use cairn_graph_sim::{Profile, SimConfig};
use cairn_runtime::HttpRequest;
use clap::Args;

use super::backup::print_report;
use super::browse::print_diff;
use super::common::registry;
use super::restore::{
    print_actions, print_apply_counts, print_apply_failures, print_plan_footer, print_verify,
};
use crate::exit::Failure;

#[derive(Args)]
pub struct DemoArgs {
    /// Where to put the demo's manifest, keys and repository (default: a new temporary
    /// directory, kept so you can explore it with the other commands).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Simulator seed (the tenant is generated deterministically from it).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the diff and the restore's plan summary, apply and verify reports as one JSON
    /// document (progress lines stay on stderr).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DemoArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let dir = match args.dir {
        Some(d) => d,
        None => {
            let d = std::env::temp_dir().join(format!("cairn-demo-{}", std::process::id()));
            d
        }
    };
    if dir.join("cairn.toml").exists() {
        return Err(Failure::usage(format!(
            "{} already holds a demo; pass another --dir",
            dir.display()
        )));
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::failed(format!("{}: {e}", dir.display())))?;

    // 1. A simulated tenant on loopback.
    let (_rt, sim) = super::sim::start_in_process(SimConfig::new(Profile::Small, args.seed))?;
    say(&format!(
        "simulated tenant {} ({}) at {}",
        sim.domain(),
        sim.tenant_id(),
        sim.base_url()
    ));

    // 2. A manifest, a restore key and a repository, as `cairn init` would make them.
    let (secret_key, recipient) = generate_identity();
    let identity = dir.join("restore-identity.txt");
    write(
        &identity,
        &format!("# cairn demo restore key — keep it off the backup machine\n{secret_key}\n"),
    )?;
    write(&dir.join("client-secret.txt"), sim.client_secret())?;
    let manifest_text = format!(
        r#"# Written by `cairn demo`.
version = 1

[connections.demo]
tenant = "{tenant}"
client_id = "{client}"
client_secret = "file:client-secret.txt"
authority_url = "{url}"
graph_url = "{url}"

[collectors.entra]
plugin = "entra"
connection = "demo"

[collectors.mail]
plugin = "m365-mail"
connection = "demo"
concurrency = 8

[collectors.links]
plugin = "sharepoint-links"
connection = "demo"

[sinks.local]
plugin = "age-sink"
url = "repository"
recipients = ["{recipient}"]
key_file = "writer-key.json"
inputs = ["entra", "mail", "links"]
"#,
        tenant = sim.tenant_id(),
        client = sim.client_id(),
        url = sim.base_url().trim_end_matches('/'),
    );
    let manifest_path = dir.join("cairn.toml");
    write(&manifest_path, &manifest_text)?;
    let manifest =
        cairn_manifest::load(&manifest_path).map_err(|d| Failure::failed(d.to_string()))?;
    let registry = registry()?;
    init_sinks(&manifest, &registry)?;
    say(&format!(
        "repository {} (age-encrypted to {recipient})",
        dir.join("repository").display()
    ));

    let gws = gateways(&manifest)?;
    let specs = collectors(&manifest, &registry, &gws, &[])?;

    // 3. The first backup.
    let json = args.json;
    let backup = |label: &str| -> Result<String, Failure> {
        let sinks = open_sinks(&manifest, &registry, &Access::default(), None)?;
        let targets = sink_targets(&sinks, &manifest, &[label.to_string()]);
        let report = run_backup(&specs, &targets, None)?;
        if !json {
            print_report(&report);
        }
        if report.partial() {
            return Err(Failure {
                code: 3,
                message: "the demo backup was partial".into(),
            });
        }
        Ok(report.sinks[0].snapshot.clone())
    };
    say("backing up the tenant");
    let first = backup("before")?;

    // 4. The disaster: a bulk deletion and a weakened Conditional Access policy.
    let gw = gws
        .get("demo")
        .expect("the demo connection")
        .task("demo-attacker");
    let base = sim.base_url();
    let call = |method: &str,
                path: &str,
                body: Option<serde_json::Value>|
     -> Result<serde_json::Value, Failure> {
        let url = url::Url::parse(&base)
            .and_then(|b| b.join(path.trim_start_matches('/')))
            .map_err(|e| Failure::failed(e.to_string()))?;
        let mut headers = Vec::new();
        if body.is_some() {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        let r = gw
            .send_request(HttpRequest {
                method: method.into(),
                url,
                headers,
                body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
            })
            .map_err(|e| Failure::failed(e.to_string()))?;
        if r.status >= 300 {
            return Err(Failure::failed(format!(
                "{method} {path}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )));
        }
        Ok(serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null))
    };
    let get = |path: &str| call("GET", path, None);
    let users = get("/v1.0/users?$select=id,displayName&$top=12")?;
    let ids: Vec<String> = users["value"]
        .as_array()
        .into_iter()
        .flatten()
        .skip(2)
        .filter_map(|u| u["id"].as_str().map(str::to_string))
        .collect();
    let (soft, _) = sim.delete(&ids[..ids.len() / 2], false);
    let (hard, _) = sim.delete(&ids[ids.len() / 2..], true);
    let policies = get("/v1.0/identity/conditionalAccess/policies")?;
    let policy = policies["value"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["state"] == "enabled"))
        .cloned();
    if let Some(p) = &policy {
        let mut conditions = p["conditions"].clone();
        conditions["users"]["excludeUsers"] = serde_json::json!(["All"]);
        let body = serde_json::json!({"state": "enabledForReportingButNotEnforced", "conditions": conditions});
        call(
            "PATCH",
            &format!(
                "/v1.0/identity/conditionalAccess/policies/{}",
                p["id"].as_str().unwrap_or_default()
            ),
            Some(body),
        )?;
    }
    // A mail folder of a user who stays: deleted with its messages.
    let mut mail_loss = String::new();
    if let Some(user) = users["value"].as_array().and_then(|u| u.first()) {
        let uid = user["id"].as_str().unwrap_or_default();
        let children = get(&format!("/v1.0/users/{uid}/mailFolders/inbox/childFolders"))?;
        if let Some(folder) = children["value"].as_array().and_then(|f| f.first()) {
            call(
                "DELETE",
                &format!(
                    "/v1.0/users/{uid}/mailFolders/{}",
                    folder["id"].as_str().unwrap_or_default()
                ),
                None,
            )?;
            mail_loss = format!(
                ", mail folder \"{}\" of {} deleted with its {} messages",
                folder["displayName"].as_str().unwrap_or("?"),
                user["displayName"].as_str().unwrap_or("?"),
                folder["totalItemCount"]
            );
        }
    }
    // Sharing: a grant to a user who stays removed, and an anonymous edit link put on a file
    // nobody shared (what an attacker leaves behind to take data out).
    let targets = sharing_targets(&sim, &ids);
    let mut sharing_loss = String::new();
    if let Some((drive, item, path, perm, who)) = &targets.grant {
        call(
            "DELETE",
            &format!("/v1.0/drives/{drive}/items/{item}/permissions/{perm}"),
            None,
        )?;
        sharing_loss.push_str(&format!(", {who}'s access to {path} removed"));
    }
    if let Some((drive, item, path)) = &targets.unshared {
        call(
            "POST",
            &format!("/v1.0/drives/{drive}/items/{item}/createLink"),
            Some(serde_json::json!({"type": "edit", "scope": "anonymous"})),
        )?;
        sharing_loss.push_str(&format!(", anonymous edit link added to {path}"));
    }
    say(&format!(
        "disaster: {soft} users soft-deleted, {hard} users permanently deleted{mail_loss}{sharing_loss}{}",
        policy
            .as_ref()
            .map(|p| format!(
                ", Conditional Access policy \"{}\" weakened",
                p["displayName"].as_str().unwrap_or("?")
            ))
            .unwrap_or_default()
    ));

    // 5. The second backup, and what changed.
    say("backing up again (incremental: delta queries from the first run's links)");
    let second = backup("after")?;
    let reader = open_sinks(
        &manifest,
        &registry,
        &Access {
            identities: vec![secret_key.clone()],
        },
        None,
    )?
    .remove(0);
    let a = reader
        .repo
        .find_snapshot(&first)
        .map_err(|e| Failure::failed(e.to_string()))?;
    let b = reader
        .repo
        .find_snapshot(&second)
        .map_err(|e| Failure::failed(e.to_string()))?;
    let d = diff_snapshots(&reader.repo, &a.snapshot, &b.snapshot, true)
        .map_err(|e| Failure::failed(e.to_string()))?;
    if !args.json {
        say(&format!(
            "what changed between {} and {}:",
            &first[..12],
            &second[..12]
        ));
        print_diff(&d);
    }

    // 6. The recovery: a plan from the first snapshot, read before anything is written, then
    //    applied (journaled in the repository) and verified against the tenant.
    let ctx = open_context(&manifest, &registry, Some(&gws), &reader.repo, &a, None)
        .map_err(|e| Failure::failed(format!("{e:#}")))?;
    let selector = Selector::default();
    // The weakened policy goes back as it was backed up (enforced); by default Cairn restores
    // Conditional Access policies report-only for the operator to switch on. Sharing added
    // since the snapshot (the attacker's link) is revoked, as `--revoke-added` asks.
    let options = serde_json::json!({"caState": "as-backed-up", "revokeAdded": true});
    let rid = restore_id(
        &ctx.snapshot_id,
        None,
        &selector,
        &full_options(&ctx, &selector, &options),
    );
    let prior = preload(&ctx, &reader.repo, &rid)?;
    let plan = restore::plan(&ctx, &selector, &options)?;
    let plan_path = dir.join("restore-plan.json");
    write(
        &plan_path,
        &serde_json::to_string_pretty(&plan).expect("a plan serialises"),
    )?;
    if !args.json {
        say(&format!(
            "restore plan from snapshot {} — nothing written yet; the objects it brings back \
             (the whole plan, with each relationship and message: {}):",
            &first[..12],
            plan_path.display()
        ));
        let mail =
            |a: &restore::PlanAction| a.item_kind == "message" || a.item_kind == "mailFolder";
        // Sharing is shown in full (a grant given back is a `link` action too).
        print_actions(&plan, |a| {
            !a.is_manual() && (a.kind != "link" || a.item_kind == "sharing") && !mail(a)
        });
        let count =
            |f: &dyn Fn(&restore::PlanAction) -> bool| plan.actions.iter().filter(|a| f(a)).count();
        println!(
            "       … and {} relationship links (memberships, managers, owners), {} mail folders and {} \
             mail messages (the deleted folder, and the mailboxes of the re-created users), in \
             dependency order",
            count(&|a| a.kind == "link" && a.item_kind != "sharing"),
            count(&|a| a.item_kind == "mailFolder"),
            count(&|a| a.item_kind == "message"),
        );
        print_plan_footer(&plan);
    }
    say("applying the plan");
    let report = restore::apply(
        &ctx,
        &plan,
        &prior,
        &ApplyOptions {
            concurrency: 8,
            journal: Some(reader.repo.clone()),
            who: restore::who(),
            on_result: None,
        },
    )?;
    if !args.json {
        print_apply_counts(&report);
        print_apply_failures(&report);
    }
    let mut check = restore::plan(&ctx, &selector, &options)?;
    check.restore_id = rid;
    let actions = check.actions.clone();
    let verified = restore::verify_report(&check, actions);
    say("verifying the tenant against the snapshot");
    if args.json {
        // One document: the diff of the disaster and what the restore did about it.
        super::common::print_json(&serde_json::json!({
            "diff": d,
            "restore": {
                "plan": plan.summary(),
                "apply": report,
                "verify": verified,
            },
        }));
    } else {
        print_verify(&verified);
    }
    if !report.failures().is_empty() || !verified.is_clean() {
        return Err(Failure {
            code: 3,
            message: "the demo restore left differences (listed above)".into(),
        });
    }

    say(&format!(
        "done in {:.1}s. Explore: cairn snapshots -m {m}; cairn diff -m {m} -i {i} {f} {s}; \
         cairn restore journal -m {m} -i {i}",
        started.elapsed().as_secs_f64(),
        m = manifest_path.display(),
        i = identity.display(),
        f = &first[..12],
        s = &second[..12],
    ));
    drop(sim);
    Ok(())
}

/// What the demo's attacker changes in SharePoint, chosen from the simulated tenant's site
/// libraries: a direct grant to a user the disaster leaves alone (drive, item, path,
/// permission id, grantee) and a file nobody shared (drive, item, path).
#[derive(Default)]
struct SharingTargets {
    grant: Option<(String, String, String, String, String)>,
    unshared: Option<(String, String, String)>,
}

fn sharing_targets(sim: &cairn_graph_sim::SimHandle, deleted: &[String]) -> SharingTargets {
    sim.with_tenant(|t| {
        let mut out = SharingTargets::default();
        for d in t.drives.drives.values().filter(|d| d.owner.0 != "user") {
            for it in d
                .items
                .values()
                .filter(|i| !i.deleted && i.parent.is_some())
            {
                let path = || {
                    let mut parts = vec![it.name.clone()];
                    let mut cur = it.parent.clone();
                    while let Some(p) = cur.and_then(|p| d.items.get(&p)) {
                        if p.parent.is_some() {
                            parts.push(p.name.clone());
                        }
                        cur = p.parent.clone();
                    }
                    parts.reverse();
                    format!("/{}", parts.join("/"))
                };
                if out.grant.is_none() {
                    let grant = it.perms.iter().find(|p| {
                        p.get("link").is_none()
                            && p.get("inheritedFrom").is_none()
                            && p["grantedToV2"]["user"]["id"]
                                .as_str()
                                .is_some_and(|u| !deleted.iter().any(|x| x == u))
                    });
                    if let Some(p) = grant {
                        out.grant = Some((
                            d.id.clone(),
                            it.id.clone(),
                            path(),
                            p["id"].as_str().unwrap_or_default().to_string(),
                            p["grantedToV2"]["user"]["displayName"]
                                .as_str()
                                .unwrap_or("a user")
                                .to_string(),
                        ));
                        continue;
                    }
                }
                if out.unshared.is_none() && it.perms.is_empty() && it.name.contains('.') {
                    out.unshared = Some((d.id.clone(), it.id.clone(), path()));
                }
            }
        }
        out
    })
}

fn say(line: &str) {
    eprintln!("==> {line}");
}

/// Writes a demo file readable by its owner only (it may hold a key or a secret).
fn write(path: &std::path::Path, text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| Failure::failed(format!("{}: {e}", path.display())))
}
