//! Pacing of the identity RU budget and read-ahead of page chains, against the simulator's
//! throttling (an RU token bucket that keeps counting while throttled) and latency.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_gateway::{Gateway, PacingConfig};
use cairn_graph_sim::{LatencyModel, SimConfig};
use cairn_runtime::BatchItem;
use common::*;

/// A small tenant whose identity budget is 200 RU per 10 s (20 RU/s refill).
fn tight_budget() -> Env {
    let mut cfg = SimConfig::default().with_throttling(true);
    cfg.throttle.ru_per_10s = Some(200);
    Env::start(cfg)
}

/// 220 one-RU reads in one `$batch` call (more than the whole bucket) while another task
/// follows a page chain (a 1-RU page every 250 ms). Returns the two tasks' stats and the
/// simulator's 429 count.
fn batch_beside_a_chain(env: &Env) -> (cairn_gateway::TaskStats, cairn_gateway::TaskStats, u64) {
    let gw = Gateway::connect(env.config().with_pacing(PacingConfig::default())).unwrap();
    let setup = gw.for_task("setup");
    let ids = user_ids(&*setup, 20);
    env.sim.reset_stats();
    let reads = gw.for_task("reads");
    let chain = gw.for_task("chain");
    let items: Vec<BatchItem> = (0..220)
        .map(|i| BatchItem {
            request: request(
                &*reads,
                "GET",
                &format!("/v1.0/users/{}?$select=id", ids[i % 20]),
            ),
            depends_on: vec![],
        })
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        let d = done.clone();
        let chain = &chain;
        let pages = s.spawn(move || {
            let mut n = 0;
            while !d.load(Ordering::SeqCst) {
                let r = get(&**chain, "/v1.0/users?$top=1&$select=id").unwrap();
                assert_eq!(r.status, 200, "a chain page");
                n += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
            n
        });
        let out = reads.batch(items).unwrap();
        done.store(true, Ordering::SeqCst);
        assert!(pages.join().unwrap() > 0);
        assert_eq!(out.len(), 220);
        for r in &out {
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        }
    });
    let st = gw.stats();
    (
        st.tasks["reads"].clone(),
        st.tasks["chain"].clone(),
        env.sim.stats().throttled,
    )
}

#[test]
fn batch_reads_spend_the_budget_at_its_refill_rate_and_never_starve_the_chain() {
    let env = tight_budget();
    let (reads, chain, throttled) = batch_beside_a_chain(&env);
    // The chain never met an empty bucket and never waited for the budget.
    assert_eq!(chain.throttled, 0, "{chain:?}");
    assert_eq!(chain.paced_seconds, 0.0);
    // The batch waited for the budget instead of bouncing off it.
    assert!(reads.paced_seconds > 0.5, "{reads:?}");
    assert!(throttled <= 2, "{throttled} 429s with pacing");
    assert_eq!(reads.batch_items, 220 + reads.retries);
    // 220 RU against a 200-RU bucket: about 170 RU at once (up to the 0.85 threshold), the
    // rest at the refill rate beside the chain's pages.
    assert!(reads.queue_seconds >= reads.paced_seconds);
}

#[test]
fn page_chains_are_read_ahead_once_followed() {
    let env = Env::small();
    let gw = env.gateway();
    let conn = gw.for_task("chain");
    let (items, pages) = get_all(&*conn, "/v1.0/users?$top=7&$select=id,displayName");
    assert!(pages >= 4, "{pages} pages");
    let s = gw.stats().tasks["chain"].clone();
    // Page 1 is a single read; from the first follow-up on, every next page was read ahead
    // and used, and no request was made in vain.
    assert_eq!(s.requests, pages as u64, "{s:?}");
    assert_eq!(s.pages_read_ahead, pages as u64 - 2);
    assert_eq!(s.pages_read_ahead_used, pages as u64 - 2);
    // The same items as without read-ahead.
    let plain = Gateway::connect(env.config().with_read_ahead(false)).unwrap();
    let (again, pages_again) = get_all(
        &*plain.for_task("t"),
        "/v1.0/users?$top=7&$select=id,displayName",
    );
    assert_eq!(pages_again, pages);
    assert_eq!(again, items);
    assert_eq!(plain.stats().tasks["t"].pages_read_ahead, 0);
}

#[test]
fn a_page_read_ahead_is_only_handed_to_the_request_it_answers() {
    let env = Env::small();
    let gw = env.gateway();
    let conn = gw.for_task("t");
    let first = json(&get(&*conn, "/v1.0/users?$top=3&$select=id").unwrap());
    let p2 = first["@odata.nextLink"].as_str().unwrap().to_string();
    let second = json(&get(&*conn, &p2).unwrap());
    let p3 = second["@odata.nextLink"].as_str().unwrap().to_string();
    // Page 3 is on its way; other requests in between (another chain's first page, a single
    // read) get their own answers and leave it in place ...
    let groups = json(&get(&*conn, "/v1.0/groups?$top=2&$select=id").unwrap());
    assert!(groups["@odata.nextLink"].is_string());
    let domains = json(&get(&*conn, "/v1.0/domains").unwrap());
    assert!(domains["value"].as_array().is_some_and(|v| !v.is_empty()));
    // ... so page 3 comes from the read-ahead, and is the right page.
    let third = json(&get(&*conn, &p3).unwrap());
    assert_eq!(third["value"].as_array().unwrap().len(), 3);
    assert_ne!(third["value"][0]["id"], second["value"][0]["id"]);
    let s = gw.stats().tasks["t"].clone();
    assert_eq!(s.pages_read_ahead_used, 1, "{s:?}");
    // Page 3, and page 4 after it (its request is on its way in the background).
    assert_eq!(s.pages_read_ahead, 2);
    // The same URL with other headers is another request: answered anew, the read-ahead unused.
    let p4 = third["@odata.nextLink"].as_str().unwrap();
    let mut req = request(&*conn, "GET", p4);
    req.headers
        .push(("ConsistencyLevel".into(), "eventual".into()));
    let fourth = conn.send(req).unwrap();
    assert_eq!(fourth.status, 200);
    assert_eq!(json(&fourth)["value"].as_array().unwrap().len(), 3);
    assert_eq!(gw.stats().tasks["t"].pages_read_ahead_used, 1);
    // Chains beyond the remembered ones are forgotten oldest first: after five first pages,
    // the second chain's page 2 is a follow-up (page 3 read ahead), the first one's is not.
    let conn = gw.for_task("u");
    let mut nexts = vec![];
    for top in 1..=5 {
        let v = json(&get(&*conn, &format!("/v1.0/users?$top={top}&$select=id")).unwrap());
        nexts.push(v["@odata.nextLink"].as_str().unwrap().to_string());
    }
    assert_eq!(get(&*conn, &nexts[1]).unwrap().status, 200);
    assert_eq!(gw.stats().tasks["u"].pages_read_ahead, 1);
    assert_eq!(get(&*conn, &nexts[0]).unwrap().status, 200);
    assert_eq!(gw.stats().tasks["u"].pages_read_ahead, 1);
}

#[test]
fn read_ahead_overlaps_graph_latency_with_the_callers_work() {
    let env = Env::start(SimConfig::default().with_latency(LatencyModel {
        base: Duration::from_millis(200),
        per_object: Duration::ZERO,
    }));
    let gw = env.gateway();
    let conn = gw.for_task("t");
    let t0 = Instant::now();
    let mut next = Some("/v1.0/users?$top=5&$select=id".to_string());
    let mut pages = 0;
    while let Some(p) = next.take().filter(|_| pages < 7) {
        let v = json(&get(&*conn, &p).unwrap());
        pages += 1;
        // The caller's work on the page, as long as Graph's latency.
        std::thread::sleep(Duration::from_millis(200));
        next = v["@odata.nextLink"].as_str().map(str::to_string);
    }
    let took = t0.elapsed();
    assert_eq!(pages, 7);
    // One after the other: 7 × (200 + 200) ms = 2.8 s. Read ahead from page 2 on: about
    // 2 × 400 + 5 × 200 ms = 1.8 s.
    assert!(took < Duration::from_millis(2400), "{took:?}");
    assert_eq!(gw.stats().tasks["t"].pages_read_ahead_used, 5);
}

/// `n` Conditional Access reads from 8 threads at once through a gateway with `pacing` (and
/// few, fast retries); returns the task's stats, the wall time, the simulator's 429 count and
/// how many reads failed.
fn conditional_access_burst(
    env: &Env,
    pacing: PacingConfig,
    n: usize,
) -> (cairn_gateway::TaskStats, Duration, u64, usize) {
    let gw = Gateway::connect(env.config().with_pacing(pacing).with_retry(fast_retry())).unwrap();
    let conn = gw.for_task("ca");
    env.sim.reset_stats();
    let started = Instant::now();
    let failed: usize = std::thread::scope(|s| {
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let conn = &conn;
                s.spawn(move || {
                    (t..n)
                        .step_by(8)
                        .filter(|i| {
                            let path = if i % 2 == 0 {
                                "/v1.0/identity/conditionalAccess/policies?$select=id"
                            } else {
                                "/v1.0/identity/conditionalAccess/namedLocations"
                            };
                            get(&**conn, path).map_or(true, |r| r.status != 200)
                        })
                        .count()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum()
    });
    let wall = started.elapsed();
    let throttled = env.sim.stats().throttled;
    (gw.stats().tasks["ca"].clone(), wall, throttled, failed)
}

#[test]
fn conditional_access_requests_queue_under_their_limit_instead_of_bouncing() {
    // Graph: 1 request per second per tenant, 429 without Retry-After. Here 20 per second
    // (the simulator's bucket holds 5 seconds' worth) so the test is quick.
    let mut cfg = SimConfig::default().with_throttling(true);
    cfg.throttle.ca_requests_per_second = 20.0;
    let env = Env::start(cfg);
    let interval = Duration::from_millis(55);
    let paced = PacingConfig {
        conditional_access_interval: interval,
        ..PacingConfig::default()
    };
    let (stats, wall, throttled, failed) = conditional_access_burst(&env, paced, 120);
    assert_eq!(failed, 0, "{stats:?}");
    assert_eq!(throttled, 0, "{stats:?}");
    assert_eq!(stats.throttled, 0);
    // The first few go at once (the gate's burst), the rest one per interval.
    let burst = PacingConfig::default().conditional_access_burst;
    assert!(wall >= interval * (119 - burst), "spaced: {wall:?}");
    assert!(stats.paced_seconds > 1.0, "{stats:?}");

    // The same burst unpaced, with the bucket still drained by the first: it bounces (and with
    // no Retry-After to go by, some reads run out of retries).
    let unpaced = PacingConfig {
        conditional_access_interval: Duration::ZERO,
        ..PacingConfig::default()
    };
    let (stats, _, throttled, _) = conditional_access_burst(&env, unpaced, 120);
    assert!(throttled > 0, "{stats:?}");
    assert!(stats.throttled > 0);
}
