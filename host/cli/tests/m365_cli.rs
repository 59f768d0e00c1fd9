//! Microsoft 365 mail as processes against the Graph simulator: one `cairn backup` of Entra and
//! mailboxes into one repository, messages deleted, one restored with `cairn restore apply --id
//! message/…` (byte for byte, idempotent, `verify` clean) and a folder restored into another
//! mailbox's `Restored …` folder; `cairn permissions` lists the mail permissions.

use cairn_graph_sim::util::pct_encode;
use cairn_graph_sim::{Profile, SimConfig};
use serde_json::Value;

use crate::support;

use support::{labelled as text, Collector, Setup};

support::setup_newtype!(
    /// The simulated tenant and a setup backing up `entra` and `m365-mail`.
    Env
);

impl Env {
    /// `mailboxes`: the users whose mail is backed up (empty: the simulator's first two).
    fn start(seed: u64, mailboxes: &[String]) -> Env {
        Env(Setup::start(SimConfig::new(Profile::Small, seed), |sim| {
            let users: Vec<String> = if mailboxes.is_empty() {
                sim.with_tenant(|t| t.mail.boxes.keys().take(2).cloned().collect())
            } else {
                mailboxes.to_vec()
            };
            vec![Collector {
                name: "mail",
                plugin: "m365-mail",
                config: Some(format!(
                    "{{ users = {} }}",
                    serde_json::to_string(&users).unwrap()
                )),
            }]
        }))
    }

    fn messages(&self, user: &str) -> Vec<Value> {
        self.graph_ok(
            "GET",
            &format!(
                "/v1.0/users/{user}/messages?$select=id,internetMessageId,parentFolderId,isDraft&$top=999"
            ),
            None,
        )["value"]
            .as_array()
            .unwrap()
            .clone()
    }
}

#[test]
fn entra_and_mail_back_up_together_and_a_deleted_message_comes_back_byte_for_byte() {
    let env = Env::start(31, &[]);
    let user = env
        .sim
        .with_tenant(|t| t.mail.boxes.keys().next().unwrap().clone());
    let report = env.backup_report();
    let snap = report["sinks"][0]["snapshot"].as_str().unwrap().to_string();
    let tasks = report["tasks"].as_object().unwrap();
    assert!(tasks.contains_key("entra/users"), "{report}");
    assert!(
        tasks.contains_key(&format!("mail/mailbox/{user}")),
        "{report}"
    );
    assert!(
        tasks.values().all(|t| t["status"] == "complete"),
        "{report}"
    );

    // Two messages deleted.
    let msgs = env.messages(&user);
    assert!(msgs.len() >= 2);
    let (victim, other) = (&msgs[0], &msgs[1]);
    let gid = |m: &Value| m["id"].as_str().unwrap().to_string();
    let (_, original) = env.graph_raw(
        "GET",
        &format!(
            "/v1.0/users/{user}/messages/{}/$value",
            pct_encode(&gid(victim))
        ),
    );
    for m in [victim, other] {
        env.graph_ok(
            "DELETE",
            &format!("/v1.0/users/{user}/messages/{}", pct_encode(&gid(m))),
            None,
        );
    }

    // Restore one of them by its item id.
    let key = format!(
        "message/{}/{}",
        victim["parentFolderId"].as_str().unwrap(),
        gid(victim)
    );
    let sel = ["--id", key.as_str(), snap.as_str()];
    let entry = env.apply_one(&sel);
    assert!(entry["notes"].to_string().contains("draft"), "{entry}");

    let now = env.messages(&user);
    let back: Vec<&Value> = now
        .iter()
        .filter(|m| m["internetMessageId"] == victim["internetMessageId"])
        .collect();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0]["parentFolderId"], victim["parentFolderId"]);
    assert_eq!(back[0]["isDraft"], true);
    let (_, restored) = env.graph_raw(
        "GET",
        &format!(
            "/v1.0/users/{user}/messages/{}/$value",
            pct_encode(&gid(back[0]))
        ),
    );
    assert_eq!(restored, original, "the MIME comes back byte for byte");
    assert!(
        !now.iter()
            .any(|m| m["internetMessageId"] == other["internetMessageId"]),
        "only the selected message is restored"
    );

    // Idempotent: applying again creates nothing; verify is clean.
    let again = env.apply_json(&sel);
    for e in again["entries"].as_array().unwrap() {
        assert_ne!(e["outcome"], "done", "{again}");
    }
    assert_eq!(
        env.messages(&user)
            .iter()
            .filter(|m| m["internetMessageId"] == victim["internetMessageId"])
            .count(),
        1
    );
    env.verify_clean(&sel);

    // A folder into another mailbox's `Restored …` folder.
    let target = env
        .sim
        .with_tenant(|t| t.mail.boxes.keys().nth(1).unwrap().clone());
    let inbox = env.graph_ok(
        "GET",
        &format!("/v1.0/users/{user}/mailFolders/inbox"),
        None,
    );
    let folder_sel = format!("mailFolder/{}", inbox["id"].as_str().unwrap());
    let applied = env.apply_json(&[
        "--id",
        &folder_sel,
        "--target-mailbox",
        &target,
        "--restore-folder",
        "Restored 2026-11-30",
        &snap,
    ]);
    let entries = applied["entries"].as_array().unwrap();
    assert!(entries.iter().all(|e| e["outcome"] == "done"), "{applied}");
    let folders = env.graph_ok(
        "GET",
        &format!("/v1.0/users/{target}/mailFolders?$top=999"),
        None,
    );
    assert!(folders["value"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["displayName"] == "Restored 2026-11-30"));

    // The permissions the manifest's plugins need include mail, for backup and restore.
    let perms = env.json(&["permissions", "--json"], false).to_string();
    for p in ["Mail.Read", "Mail.ReadWrite"] {
        assert!(perms.contains(p), "{p} missing: {perms}");
    }
}

#[test]
fn a_deleted_user_and_their_mailbox_come_back_in_one_restore() {
    let env = Env::start(32, &[]);
    let user = env
        .sim
        .with_tenant(|t| t.mail.boxes.keys().next().unwrap().clone());
    let upn = env.graph_ok(
        "GET",
        &format!("/v1.0/users/{user}?$select=userPrincipalName"),
        None,
    )["userPrincipalName"]
        .as_str()
        .unwrap()
        .to_string();
    let before = env.messages(&user);
    assert!(!before.is_empty());
    let sample = &before[0];
    let (_, sample_mime) = env.graph_raw(
        "GET",
        &format!(
            "/v1.0/users/{user}/messages/{}/$value",
            pct_encode(sample["id"].as_str().unwrap())
        ),
    );
    let snap = env.backup();

    // The user is permanently deleted: their mailbox goes with them.
    env.sim.delete(std::slice::from_ref(&user), true);
    let (status, _) = env.graph_raw("GET", &format!("/v1.0/users/{user}/mailFolders"));
    assert_eq!(status, 404);

    // One restore selects the user (entra) and their mailbox (mail) by the same id: Entra
    // re-creates the user under a new id, the mail restorer finds it in remap.
    let out = env.run(
        &["restore", "apply", "--yes", "--json", "--id", &user, &snap],
        true,
    );
    let applied: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("apply: not JSON ({e}): {}", text(&out)));
    let entries = applied["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["outcome"] == "done"
                && e["action"].as_str().unwrap_or("").starts_with("entra:")),
        "{applied}"
    );
    assert!(
        entries
            .iter()
            .filter(|e| e["action"].as_str().unwrap_or("").starts_with("mail:"))
            .all(|e| e["outcome"] == "done" || e["outcome"] == "already-done"),
        "{applied}"
    );
    let new_id = env.graph_ok(
        "GET",
        &format!("/v1.0/users/{}?$select=id", pct_encode(&upn)),
        None,
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_id, user, "re-created under a new id");
    let after = env.messages(&new_id);
    for m in &before {
        assert!(
            after
                .iter()
                .any(|a| a["internetMessageId"] == m["internetMessageId"]),
            "{} restored into the re-created mailbox",
            m["internetMessageId"]
        );
    }
    let back = after
        .iter()
        .find(|a| a["internetMessageId"] == sample["internetMessageId"])
        .unwrap();
    let (_, mime) = env.graph_raw(
        "GET",
        &format!(
            "/v1.0/users/{new_id}/messages/{}/$value",
            pct_encode(back["id"].as_str().unwrap())
        ),
    );
    assert_eq!(mime, sample_mime);
}
