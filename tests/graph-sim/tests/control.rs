//! The generator's determinism, the control API (churn, bulk delete, clock, dump and diff,
//! stats, apps) and the `graph-sim` binary.

use crate::common;

use cairn_graph_sim::testkit::Client;
use cairn_graph_sim::{Profile, SimConfig, SimHandle};
use common::*;
use serde_json::json;
use std::io::BufRead;

#[tokio::test]
async fn same_seed_same_tenant() {
    let a = start_with(SimConfig::new(Profile::Small, 42)).await;
    let b = start_with(SimConfig::new(Profile::Small, 42)).await;
    let c = start_with(SimConfig::new(Profile::Small, 43)).await;
    let (da, db, dc) = (a.dump(), b.dump(), c.dump());
    assert_eq!(da, db, "the same seed and profile give the same tenant");
    assert!(!SimHandle::diff(&da, &dc).is_empty());
    assert_eq!(a.tenant_id(), b.tenant_id());
    assert_eq!(a.client_secret(), b.client_secret());
    // Canonical JSON: keys sorted at every level.
    let text = serde_json::to_string(&da).unwrap();
    let reparsed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        serde_json::to_string(&cairn_graph_sim::state::canonical(&reparsed)).unwrap(),
        text
    );
    // Small profile: ~50 users, a realistic CA set referencing real objects.
    let (users, ca) = a.with_tenant(|t| {
        (
            t.count_live(cairn_graph_sim::model::Kind::User),
            t.count_live(cairn_graph_sim::model::Kind::CaPolicy),
        )
    });
    assert_eq!(users, 50);
    assert!(ca >= 10);
}

/// Churn never deletes the app clients sign in as: after many heavy rounds the default app
/// still gets tokens (a deleted default app failed backups that ran after a churn).
#[tokio::test]
async fn churn_spares_the_apps_clients_sign_in_as() {
    let sim = start(Profile::Small).await;
    for _ in 0..40 {
        sim.churn(50.0);
    }
    common::token(&sim, sim.client_id(), sim.client_secret()).await;
}

#[tokio::test]
async fn churn_delete_clock_dump_and_diff() {
    let sim = start(Profile::Small).await;
    let before = sim.dump();
    let rep = sim.churn(20.0);
    assert!(rep.total() > 5, "{rep:?}");
    let after = sim.dump();
    let d = SimHandle::diff(&before, &after);
    assert!(!d.is_empty());
    for id in &rep.updated {
        assert!(
            d.changed.iter().any(|x| x.ends_with(id.as_str())),
            "{id} changed"
        );
    }
    for id in &rep.hard_deleted {
        assert!(
            d.removed.iter().any(|x| x.ends_with(id.as_str())),
            "{id} removed"
        );
    }
    for id in &rep.created {
        assert!(
            d.added.iter().any(|x| x.ends_with(id.as_str())),
            "{id} added"
        );
    }
    // Bulk delete: soft then hard.
    let ids: Vec<String> = sim.with_tenant(|t| {
        t.map(cairn_graph_sim::model::Kind::User)
            .values()
            .filter(|u| {
                u.is_live()
                    && u.str("userPrincipalName")
                        .is_some_and(|p| !p.starts_with("admin@"))
            })
            .take(3)
            .map(|u| u.id.to_string())
            .collect()
    });
    let (n, missing) = sim.delete(&ids, false);
    assert_eq!((n, missing.len()), (3, 0));
    let mut c = client(&sim).await;
    let bin = c
        .get("/v1.0/directory/deletedItems/microsoft.graph.user")
        .await
        .json();
    for id in &ids {
        assert!(bin["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["id"] == id.as_str()));
    }
    let (n, _) = sim.delete(&ids[..1], true);
    assert_eq!(n, 1);
    assert_eq!(
        sim.delete(&["nope".to_string()], true).1,
        vec!["nope".to_string()]
    );

    // The same over HTTP.
    let mut ctl = Client::new(&sim.base_url());
    let info = ctl.get("/_sim/info").await.json();
    assert_eq!(info["tenant_id"], sim.tenant_id());
    let s1 = ctl.get("/_sim/state").await.json();
    let churn = ctl.post_json("/_sim/churn", &json!({"percent": 10})).await;
    assert_eq!(churn.status, 200);
    let s2 = ctl.get("/_sim/state").await.json();
    let diff = ctl
        .post_json("/_sim/diff", &json!({"a": s1, "b": s2}))
        .await
        .json();
    assert!(
        !diff["changed"].as_array().unwrap().is_empty()
            || !diff["removed"].as_array().unwrap().is_empty()
    );
    let now0 = ctl.get("/_sim/clock").await.json()["offsetSeconds"]
        .as_i64()
        .unwrap();
    let adv = ctl
        .post_json("/_sim/clock/advance", &json!({"days": 2}))
        .await
        .json();
    assert_eq!(adv["offsetSeconds"].as_i64().unwrap() - now0, 2 * 86_400);
    let del = ctl
        .post_json("/_sim/delete", &json!({"ids": [ids[1]], "hard": true}))
        .await
        .json();
    assert_eq!(del["deleted"], 1);
    let app = ctl
        .post_json("/_sim/apps", &json!({"permissions": ["Group.Read.All"]}))
        .await;
    assert_eq!(app.status, 201);
    let app = app.json();
    let t = token(
        &sim,
        app["client_id"].as_str().unwrap(),
        app["client_secret"].as_str().unwrap(),
    )
    .await;
    let mut g = Client::new(&sim.base_url()).with_token(t);
    assert_eq!(g.get("/v1.0/groups?$top=1").await.status, 200);
    assert_eq!(g.get("/v1.0/users?$top=1").await.status, 403);
    let stats = ctl.get("/_sim/stats").await.json();
    assert!(stats["graph_requests"].as_u64().unwrap() >= 3);
    assert_eq!(
        ctl.post_json("/_sim/stats/reset", &json!({})).await.status,
        204
    );
    assert_eq!(ctl.get("/_sim/stats").await.json()["graph_requests"], 0);
}

#[tokio::test]
async fn lower_bound_reflects_the_ru_budget() {
    let mut cfg = SimConfig::new(Profile::Empty, 1);
    cfg.throttling = true;
    let sim = start_with(cfg).await;
    assert_eq!(
        sim.ru_per_10s(),
        3500.0,
        "a tenant under 50 users is tier S"
    );
    // 100,000 users in pages of 100 at 2 RU: 2,000 RU fits the first bucket.
    let w = cairn_graph_sim::Workload::full_read(100_000, 100, 2, 4);
    assert_eq!(sim.lower_bound(&w).as_secs(), 0);
    let w = cairn_graph_sim::Workload {
        requests: 5000,
        resource_units: 10_000,
        ..Default::default()
    };
    let secs = sim.lower_bound(&w).as_secs_f64();
    assert!((secs - (10_000.0 - 3500.0) / 350.0).abs() < 0.01, "{secs}");
}

#[test]
fn graph_sim_binary_prints_connection_details() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_graph-sim"))
        .args(["--profile", "small", "--seed", "3", "--port", "0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("graph-sim starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info: serde_json::Value = serde_json::from_str(&line).expect("first line is JSON");
    for k in [
        "url",
        "tenant_id",
        "client_id",
        "client_secret",
        "token_url",
    ] {
        assert!(info[k].is_string(), "{k}");
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        let mut c = Client::new(info["url"].as_str().unwrap());
        let url = format!("/{}/oauth2/v2.0/token", info["tenant_id"].as_str().unwrap());
        let tok = c
            .post_form(
                &url,
                &[
                    ("client_id", info["client_id"].as_str().unwrap()),
                    ("client_secret", info["client_secret"].as_str().unwrap()),
                    ("grant_type", "client_credentials"),
                    ("scope", "https://graph.microsoft.com/.default"),
                ],
            )
            .await;
        let mut g = Client::new(info["url"].as_str().unwrap())
            .with_token(tok.json()["access_token"].as_str().unwrap());
        g.get("/v1.0/users?$top=1").await.status
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200);
}
