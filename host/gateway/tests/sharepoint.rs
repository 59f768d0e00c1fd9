//! SharePoint/OneDrive requests: counted in SharePoint resource units by Microsoft's documented
//! costs (equal to what the simulator charges), and throttled apart from the rest of the
//! connection (a SharePoint `Retry-After` does not hold up identity requests).

use crate::common;

use std::time::{Duration, Instant};

use cairn_graph_sim::{FaultKind, FaultRule};
use cairn_runtime::{BatchItem, GraphConnection, HttpRequest};
use common::*;
use serde_json::{json, Value};

fn json_request(conn: &dyn GraphConnection, method: &str, path: &str, body: Value) -> HttpRequest {
    HttpRequest {
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
        ..request(conn, method, path)
    }
}

/// A shared file: (drive id, item id, a permission id).
fn shared_file(conn: &dyn GraphConnection) -> (String, String, String) {
    let (sites, _) = get_all(conn, "/v1.0/sites/getAllSites");
    for s in sites {
        let (drives, _) = get_all(
            conn,
            &format!("/v1.0/sites/{}/drives", s["id"].as_str().unwrap()),
        );
        for d in drives {
            let drive = d["id"].as_str().unwrap().to_string();
            let (items, _) = get_all(conn, &format!("/v1.0/drives/{drive}/root/delta"));
            for it in items {
                if it.get("shared").is_some() && it.get("file").is_some() {
                    let item = it["id"].as_str().unwrap().to_string();
                    let perms = json(
                        &get(
                            conn,
                            &format!("/v1.0/drives/{drive}/items/{item}/permissions"),
                        )
                        .unwrap(),
                    );
                    let pid = perms["value"][0]["id"].as_str().unwrap().to_string();
                    return (drive, item, pid);
                }
            }
        }
    }
    panic!("no shared file in the small tenant")
}

#[test]
fn sharepoint_resource_units_follow_the_documented_costs() {
    let env = Env::small();
    let gw = env.gateway();
    let conn = gw.for_task("links");
    let (drive, item, _) = shared_file(&*conn);
    env.sim.reset_stats();
    let before = gw.stats().tasks["links"].clone();

    let base = format!("/v1.0/drives/{drive}/items/{item}");
    // 1 (single GET) + 2 (delta without token) + 5 (permissions) + 5 (createLink) + 5 (invite)
    // + 2 (children) + 1 (delta with a token) + 2 x 5 (permissions in a $batch).
    assert_eq!(get(&*conn, &base).unwrap().status, 200);
    let delta = json(&get(&*conn, &format!("/v1.0/drives/{drive}/root/delta")).unwrap());
    assert_eq!(
        get(&*conn, &format!("{base}/permissions")).unwrap().status,
        200
    );
    let created = conn
        .send(json_request(
            &*conn,
            "POST",
            &format!("{base}/createLink"),
            json!({"type": "edit", "scope": "anonymous"}),
        ))
        .unwrap();
    assert!(created.status < 300);
    let users = user_ids(&*conn, 1);
    let invited = conn
        .send(json_request(
            &*conn,
            "POST",
            &format!("{base}/invite"),
            json!({"recipients": [{"objectId": users[0]}], "roles": ["read"], "requireSignIn": true, "sendInvitation": false}),
        ))
        .unwrap();
    assert_eq!(invited.status, 200);
    assert_eq!(
        get(&*conn, &format!("/v1.0/drives/{drive}/root/children"))
            .unwrap()
            .status,
        200
    );
    let link = delta["@odata.deltaLink"].as_str().unwrap();
    assert_eq!(get(&*conn, link).unwrap().status, 200);
    let batch: Vec<BatchItem> = (0..2)
        .map(|_| BatchItem {
            request: request(&*conn, "GET", &format!("{base}/permissions")),
            depends_on: vec![],
        })
        .collect();
    for r in conn.batch(batch).unwrap() {
        assert_eq!(r.status, 200);
    }

    let after = &gw.stats().tasks["links"];
    let ours = after.sharepoint_resource_units - before.sharepoint_resource_units;
    assert_eq!(ours, 1 + 2 + 5 + 5 + 5 + 2 + 1 + 10);
    assert_eq!(
        ours,
        env.sim.stats().sharepoint_ru_spent,
        "the gateway counts what the simulator charges"
    );
    let prom = gw.stats().to_prometheus();
    assert!(
        prom.contains(&format!(
            "cairn_graph_sharepoint_resource_units_total{{connection=\"sim\",task=\"links\"}} {}",
            after.sharepoint_resource_units
        )),
        "{prom}"
    );
}

#[test]
fn a_sharepoint_retry_after_does_not_hold_up_identity_requests() {
    let env = Env::small();
    let gw = env.gateway();
    let conn = gw.for_task("links");
    let (drive, item, _) = shared_file(&*conn);
    env.sim.add_fault(
        FaultRule::new(
            "*/permissions",
            FaultKind::Throttle {
                retry_after: Some(3.0),
            },
        )
        .times(1),
    );
    let sp = gw.for_task("links");
    let path = format!("/v1.0/drives/{drive}/items/{item}/permissions");
    let t0 = Instant::now();
    let worker = std::thread::spawn(move || {
        let r = get(&*sp, &path).unwrap();
        (r.status, t0.elapsed())
    });
    // Wait until the 429 has been received.
    while gw.stats().tasks["links"].throttled == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    let id = gw.for_task("entra");
    let t1 = Instant::now();
    assert_eq!(get(&*id, "/v1.0/users?$top=1").unwrap().status, 200);
    let quick = t1.elapsed();
    assert!(
        quick < Duration::from_millis(1500),
        "an identity request waited {quick:?} behind SharePoint's Retry-After"
    );
    let (status, took) = worker.join().unwrap();
    assert_eq!(status, 200);
    assert!(
        took >= Duration::from_millis(2900),
        "SharePoint waited: {took:?}"
    );
}
