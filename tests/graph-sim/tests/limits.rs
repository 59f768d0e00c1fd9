//! Throttling (§4), `$batch`, fault injection and the latency model.

use crate::common;

use cairn_graph_sim::testkit::Client;
use cairn_graph_sim::{FaultKind, FaultRule, LatencyModel, Profile, SimConfig};
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn throttled(ru: u32) -> SimConfig {
    let mut cfg = SimConfig::new(Profile::Small, 5);
    cfg.throttling = true;
    cfg.throttle.ru_per_10s = Some(ru);
    cfg
}

#[tokio::test]
async fn resource_units_and_429() {
    let sim = start_with(throttled(20)).await;
    let mut c = client(&sim).await;
    let r = c.get("/v1.0/users").await;
    assert_eq!(
        r.header("x-ms-resource-unit"),
        Some("2"),
        "GET users costs 2 RU"
    );
    assert_eq!(
        c.get("/v1.0/users?$select=id")
            .await
            .header("x-ms-resource-unit"),
        Some("1"),
        "$select -1"
    );
    assert_eq!(
        c.get("/v1.0/domains").await.header("x-ms-resource-unit"),
        Some("1")
    );
    let mut got = None;
    let mut warned = false;
    for _ in 0..20 {
        let r = c.get("/v1.0/users").await;
        if r.status == 429 {
            got = Some(r);
            break;
        }
        if let Some(p) = r.header("x-ms-throttle-limit-percentage") {
            let p: f64 = p.parse().unwrap();
            assert!((0.8..=1.8).contains(&p), "{p}");
            warned = true;
        }
    }
    assert!(
        warned,
        "x-ms-throttle-limit-percentage above 80 % of the limit"
    );
    let r = got.expect("throttled within the bucket");
    assert_eq!(r.json()["error"]["code"], "TooManyRequests");
    assert_eq!(r.json()["error"]["innerError"]["status"], "429");
    let ra: f64 = r
        .header("retry-after")
        .unwrap()
        .parse()
        .expect("Retry-After is a decimal number of seconds");
    assert!(ra > 0.0 && ra <= 20.0, "{ra}");
    assert!(r
        .header("x-ms-throttle-scope")
        .unwrap()
        .starts_with("Tenant_Application/Read/"));
    assert_eq!(
        r.header("x-ms-throttle-information"),
        Some("ResourceUnitLimitExceeded")
    );
    // Waiting Retry-After makes the request succeed.
    tokio::time::sleep(Duration::from_secs_f64(ra + 0.05)).await;
    assert_eq!(c.get("/v1.0/users?$select=id").await.status, 200);
    let s = sim.stats();
    assert!(s.throttled >= 1 && s.ru_spent >= 20, "{s:?}");
    assert_eq!(s.status.get(&429).copied().unwrap_or(0), s.throttled);
}

#[tokio::test]
async fn write_limits_and_conditional_access_without_retry_after() {
    let mut cfg = throttled(10_000);
    cfg.throttle.writes_per_150s = 3;
    cfg.throttle.ca_requests_per_second = 0.4;
    let sim = start_with(cfg).await;
    let mut c = client(&sim).await;
    let uid = first_id(&mut c, "/v1.0/users?$top=1&$select=id").await;
    let mut statuses = vec![];
    for i in 0..4 {
        statuses.push(
            c.patch_json(
                &format!("/v1.0/users/{uid}"),
                &json!({"jobTitle": format!("t{i}")}),
            )
            .await,
        );
    }
    assert_eq!(
        statuses.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![204, 204, 204, 429]
    );
    assert_eq!(
        statuses[3].header("x-ms-throttle-information"),
        Some("WriteLimitExceeded")
    );
    assert!(statuses[3].header("retry-after").is_some());
    // Conditional Access: a per-tenant request rate, 429 without Retry-After.
    let mut no_retry_after = None;
    for _ in 0..10 {
        let r = c.get("/v1.0/identity/conditionalAccess/policies").await;
        if r.status == 429 {
            no_retry_after = Some(r);
            break;
        }
    }
    let r = no_retry_after.expect("CA requests are limited");
    assert!(r.header("retry-after").is_none());
}

#[tokio::test]
async fn batch_rules() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let many: Vec<Value> = (0..21)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/users?$top=1"}))
        .collect();
    assert_eq!(
        c.post_json("/v1.0/$batch", &json!({"requests": many}))
            .await
            .status,
        400,
        "at most 20"
    );
    let dup = json!({"requests": [{"id": "a", "method": "GET", "url": "/users"}, {"id": "A", "method": "GET", "url": "/groups"}]});
    assert_eq!(
        c.post_json("/v1.0/$batch", &dup).await.status,
        400,
        "ids are unique, case-insensitively"
    );
    assert_eq!(
        c.send(
            "POST",
            "/v1.0/$batch",
            &[("Content-Type", "application/json")],
            b"{not json"
        )
        .await
        .unwrap()
        .status,
        400
    );
    let body = json!({"requests": [
        {"id": "1", "method": "GET", "url": "/users/00000000-0000-0000-0000-00000000dead"},
        {"id": "2", "method": "GET", "url": "/users?$top=1", "dependsOn": ["1"]},
        {"id": "3", "method": "GET", "url": "/groups?$top=1"},
        {"id": "4", "method": "POST", "url": "/groups", "body": {"displayName": "x"}},
        {"id": "5", "method": "GET", "url": "/users/$count", "headers": {"ConsistencyLevel": "eventual"}},
        {"id": "6", "method": "GET", "url": "/groups?$top=1", "dependsOn": ["3"]}
    ]});
    let r = c.post_json("/v1.0/$batch", &body).await;
    assert_eq!(r.status, 200, "outer 200 whatever the items");
    let v = r.json();
    let by = |id: &str| {
        v["responses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by("1")["status"], 404);
    assert_eq!(by("2")["status"], 424, "depends on a failed request");
    assert_eq!(by("3")["status"], 200);
    assert_eq!(by("4")["status"], 400, "a body needs a Content-Type header");
    assert_eq!(by("5")["status"], 200);
    assert!(by("5")["body"].as_str().unwrap().parse::<u64>().is_ok());
    assert_eq!(by("6")["status"], 200);
    assert_eq!(v["responses"].as_array().unwrap().len(), 6);
    assert!(by("3")["headers"]["x-ms-resource-unit"].is_string());
}

#[tokio::test]
async fn batch_items_are_throttled_individually() {
    let sim = start_with(throttled(6)).await;
    let mut c = client(&sim).await;
    let reqs: Vec<Value> = (0..10)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/users"}))
        .collect();
    let r = c
        .post_json("/v1.0/$batch", &json!({"requests": reqs}))
        .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    let items = v["responses"].as_array().unwrap();
    let ok = items.iter().filter(|x| x["status"] == 200).count();
    let limited: Vec<&Value> = items.iter().filter(|x| x["status"] == 429).collect();
    // 6 RU / 2 RU per GET users = 3; a slow machine may refill 2 RU (0.6 RU/s) meanwhile.
    assert!(ok == 3 || ok == 4, "{ok}");
    assert_eq!(limited.len(), 10 - ok);
    for l in limited {
        let ra: f64 = l["headers"]["Retry-After"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(ra > 0.0);
        assert_eq!(l["body"]["error"]["code"], "TooManyRequests");
    }
    let order: Vec<&str> = items.iter().map(|x| x["id"].as_str().unwrap()).collect();
    let mut sorted = order.clone();
    sorted.sort_by_key(|s| s.parse::<u32>().unwrap());
    assert_eq!(
        sorted,
        (0..10)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    assert_ne!(order, sorted, "responses may come back in another order");
}

#[tokio::test]
async fn mailbox_concurrency_is_four() {
    let mut cfg = SimConfig::new(Profile::Small, 5);
    cfg.throttling = true;
    // Long enough that the six requests overlap even on a loaded machine.
    cfg.latency = Some(LatencyModel {
        base: Duration::from_millis(1500),
        per_object: Duration::ZERO,
    });
    let sim = start_with(cfg).await;
    let user = sim.with_tenant(|t| t.mail.boxes.keys().next().unwrap().clone());
    let tok = sim.access_token();
    let mut tasks = vec![];
    for _ in 0..6 {
        let base = sim.base_url();
        let tok = tok.clone();
        let user = user.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::new(&base).with_token(tok);
            c.get(&format!("/v1.0/users/{user}/mailFolders")).await
        }));
    }
    let mut statuses = vec![];
    for t in tasks {
        let r = t.await.unwrap();
        if r.status == 429 {
            assert_eq!(r.json()["error"]["code"], "ApplicationThrottled");
        }
        statuses.push(r.status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn faults_are_injected_by_path_and_rate() {
    let sim = start(Profile::Empty).await;
    let mut c = client(&sim).await;
    sim.add_fault(
        FaultRule::new(
            "/v1.0/users*",
            FaultKind::ServerError {
                status: 503,
                retry_after: Some(1.5),
            },
        )
        .times(1),
    );
    let r = c.get("/v1.0/users").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1.500"));
    assert_eq!(
        c.get("/v1.0/users").await.status,
        200,
        "the rule fired once"
    );
    sim.add_fault(
        FaultRule::new(
            "/v1.0/groups",
            FaultKind::ServerError {
                status: 500,
                retry_after: None,
            },
        )
        .times(1),
    );
    let r = c.get("/v1.0/groups").await;
    assert_eq!(r.status, 500);
    assert!(r.header("retry-after").is_none());
    sim.add_fault(FaultRule::new("/v1.0/domains", FaultKind::DropConnection).times(1));
    let mut fresh = Client::new(&sim.base_url()).with_token(sim.access_token());
    assert!(
        fresh.send("GET", "/v1.0/domains", &[], b"").await.is_err(),
        "the connection is dropped"
    );
    assert_eq!(c.get("/v1.0/domains").await.status, 200);
    sim.add_fault(FaultRule::new("/v1.0/organization", FaultKind::Slow { millis: 300 }).times(1));
    let t0 = Instant::now();
    assert_eq!(c.get("/v1.0/organization").await.status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    sim.add_fault(FaultRule::new("*", FaultKind::ExpiredToken).times(1));
    assert_eq!(c.get("/v1.0/organization").await.status, 401);
    sim.add_fault(FaultRule::new("*", FaultKind::Throttle { retry_after: None }).times(1));
    let r = c.get("/v1.0/organization").await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_none());
    assert_eq!(sim.stats().faults_injected, 6);

    // Seeded: the same seed gives the same sequence at a partial rate.
    async fn run(seed: u64) -> Vec<u16> {
        let sim = start_with(SimConfig::new(Profile::Empty, seed)).await;
        sim.add_fault(
            FaultRule::new(
                "/v1.0/domains",
                FaultKind::ServerError {
                    status: 502,
                    retry_after: None,
                },
            )
            .rate(0.5),
        );
        let mut c = client(&sim).await;
        let mut out = vec![];
        for _ in 0..20 {
            out.push(c.get("/v1.0/domains").await.status);
        }
        out
    }
    let a = run(11).await;
    assert_eq!(a, run(11).await);
    assert!(a.contains(&502) && a.contains(&200));
    // Control API over HTTP.
    let mut ctl = Client::new(&sim.base_url());
    assert_eq!(ctl.post_json("/_sim/faults", &json!({"path": "/v1.0/users", "type": "serverError", "status": 504, "retryAfter": 2, "max": 1})).await.status, 204);
    assert_eq!(c.get("/v1.0/users").await.status, 504);
    assert_eq!(ctl.delete("/_sim/faults").await.status, 204);
}

#[tokio::test]
async fn latency_model_base_and_per_object() {
    let mut cfg = SimConfig::new(Profile::Small, 5);
    cfg.latency = Some(LatencyModel {
        base: Duration::from_millis(100),
        per_object: Duration::from_millis(4),
    });
    let sim = start_with(cfg).await;
    let mut c = client(&sim).await;
    let t0 = Instant::now();
    c.get("/v1.0/users?$top=1").await;
    let one = t0.elapsed();
    let t0 = Instant::now();
    c.get("/v1.0/users?$top=50").await;
    let fifty = t0.elapsed();
    assert!(one >= Duration::from_millis(104), "{one:?}");
    assert!(fifty >= Duration::from_millis(100 + 4 * 50), "{fifty:?}");
    // The lower bound of a sequential read follows the same model.
    let w = cairn_graph_sim::Workload::full_read(50, 10, 2, 1);
    assert_eq!(sim.lower_bound(&w), Duration::from_millis(5 * (100 + 40)));
}
