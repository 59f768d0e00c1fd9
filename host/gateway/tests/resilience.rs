//! Retries and throttling against the simulator's fault injection and limits: 429 storms,
//! 5xx bursts, dropped connections, the retry budget, the adaptive connection limit and the
//! per-mailbox limit.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_gateway::{Gateway, RetryPolicy};
use cairn_graph_sim::{FaultKind, FaultRule, LatencyModel, SimConfig};
use cairn_runtime::GraphConnection;
use common::*;

fn throttle(path: &str, retry_after: Option<f64>) -> FaultRule {
    FaultRule::new(path, FaultKind::Throttle { retry_after })
}

fn server_error(path: &str, status: u16, retry_after: Option<f64>) -> FaultRule {
    FaultRule::new(
        path,
        FaultKind::ServerError {
            status,
            retry_after,
        },
    )
}

#[test]
fn a_429_storm_is_ridden_out_honouring_decimal_retry_after() {
    let env = Env::small();
    let gw = env.gateway();
    let conn = gw.for_task("storm");
    env.sim
        .add_fault(throttle("/v1.0/users*", Some(0.25)).times(4));
    let t0 = Instant::now();
    let r = get(&*conn, "/v1.0/users?$top=5").unwrap();
    let took = t0.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(json(&r)["value"].as_array().unwrap().len(), 5);
    // Four waits of 0.25 s (the simulator sends "0.25"): not earlier, not much later.
    assert!(took >= Duration::from_millis(1000), "{took:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
    let s = &gw.stats().tasks["storm"];
    assert_eq!(s.requests, 5);
    assert_eq!(s.retries, 4);
    assert_eq!(s.throttled, 4);
    assert!((s.wait_seconds - 1.0).abs() < 0.01, "{}", s.wait_seconds);
    assert_eq!(s.failures, 0);
    assert_eq!(env.sim.stats().throttled, 4);
}

#[test]
fn a_429_without_retry_after_backs_off_exponentially() {
    let env = Env::small();
    let gw = env.gateway();
    let conn = gw.for_task("t");
    env.sim.add_fault(throttle("/v1.0/domains", None).times(3));
    assert_eq!(get(&*conn, "/v1.0/domains").unwrap().status, 200);
    let s = &gw.stats().tasks["t"];
    assert_eq!((s.retries, s.throttled), (3, 3));
    // Backoff steps of 20, 40, 80 ms with equal jitter: between 70 and 140 ms in total.
    assert!(
        s.wait_seconds >= 0.069 && s.wait_seconds <= 0.141,
        "{}",
        s.wait_seconds
    );
}

#[test]
fn server_error_bursts_with_and_without_retry_after() {
    let env = Env::small();
    let gw = env.gateway();
    let conn = gw.for_task("t");

    // 503 with Retry-After: waited as told; 503 counts as throttling.
    env.sim
        .add_fault(server_error("/v1.0/domains", 503, Some(0.2)).times(2));
    let t0 = Instant::now();
    assert_eq!(get(&*conn, "/v1.0/domains").unwrap().status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(400));
    let s = gw.stats().tasks["t"].clone();
    assert_eq!((s.retries, s.throttled), (2, 2));
    assert!((s.wait_seconds - 0.4).abs() < 0.01, "{}", s.wait_seconds);

    // 504, 500 and 502 without Retry-After: backoff; not throttling.
    env.sim.clear_faults();
    env.sim
        .add_fault(server_error("/v1.0/organization", 504, None).times(1));
    env.sim
        .add_fault(server_error("/v1.0/organization", 500, None).times(1));
    env.sim
        .add_fault(server_error("/v1.0/organization", 502, None).times(1));
    assert_eq!(get(&*conn, "/v1.0/organization").unwrap().status, 200);
    let s2 = gw.stats().tasks["t"].clone();
    assert_eq!(s2.retries - s.retries, 3);
    assert_eq!(
        s2.throttled, s.throttled,
        "5xx other than 503 is not throttling"
    );

    // A 500 to a POST is not retried (Graph may have created the object): it is returned.
    env.sim.clear_faults();
    env.sim.add_fault(
        server_error("/v1.0/groups", 500, None)
            .method("POST")
            .times(1),
    );
    let mut req = request(&*conn, "POST", "/v1.0/groups");
    req.headers
        .push(("Content-Type".into(), "application/json".into()));
    req.body =
        br#"{"displayName":"x","mailEnabled":false,"mailNickname":"x","securityEnabled":true}"#
            .to_vec();
    let r = conn.send(req.clone()).unwrap();
    assert_eq!(r.status, 500);
    assert_eq!(gw.stats().tasks["t"].retries, s2.retries);
    // …but a 503 to a POST is (Graph refused it before acting).
    env.sim.add_fault(
        server_error("/v1.0/groups", 503, Some(0.05))
            .method("POST")
            .times(1),
    );
    let r = conn.send(req).unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn dropped_connections_are_retried_for_reads_only() {
    let env = Env::small();
    let gw = env.gateway();
    let conn = gw.for_task("t");
    env.sim
        .add_fault(FaultRule::new("/v1.0/organization", FaultKind::DropConnection).times(2));
    assert_eq!(get(&*conn, "/v1.0/organization").unwrap().status, 200);
    assert_eq!(gw.stats().tasks["t"].retries, 2);

    env.sim.add_fault(
        FaultRule::new("/v1.0/groups", FaultKind::DropConnection)
            .method("POST")
            .times(1),
    );
    let mut req = request(&*conn, "POST", "/v1.0/groups");
    req.headers
        .push(("Content-Type".into(), "application/json".into()));
    req.body =
        br#"{"displayName":"y","mailEnabled":false,"mailNickname":"y","securityEnabled":true}"#
            .to_vec();
    let e = conn.send(req).unwrap_err();
    assert!(e.contains("POST /v1.0/groups"), "{e}");
    assert!(e.contains("not retried"), "{e}");
}

#[test]
fn the_retry_budget_ends_in_a_clear_error() {
    let env = Env::small();
    let mut cfg = env.config();
    cfg.retry = RetryPolicy {
        max_attempts: 3,
        ..fast_retry()
    };
    let gw = Gateway::connect(cfg).unwrap();
    let conn = gw.for_task("t");
    env.sim.add_fault(throttle("/v1.0/domains", Some(0.05)));
    let e = get(&*conn, "/v1.0/domains").unwrap_err();
    assert!(
        e.contains("GET /v1.0/domains: gave up after 3 attempt(s)"),
        "{e}"
    );
    assert!(e.contains("HTTP 429 (TooManyRequests"), "{e}");
    assert!(e.contains("Retry-After 0.050s"), "{e}");
    let s = &gw.stats().tasks["t"];
    assert_eq!(
        (s.requests, s.retries, s.throttled, s.failures),
        (3, 2, 3, 1)
    );

    // The wait budget: a Retry-After longer than what is left fails at once, without sleeping.
    let mut cfg = env.config();
    cfg.retry = RetryPolicy {
        max_total_wait: Duration::from_secs(1),
        ..fast_retry()
    };
    let gw = Gateway::connect(cfg).unwrap();
    let conn = gw.for_task("t");
    env.sim.clear_faults();
    env.sim.add_fault(throttle("/v1.0/domains", Some(5.0)));
    let t0 = Instant::now();
    let e = get(&*conn, "/v1.0/domains").unwrap_err();
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    assert!(e.contains("exceeds"), "{e}");
    assert!(e.contains("max total wait 1.0s"), "{e}");
}

#[test]
fn the_connection_limit_caps_requests_in_flight() {
    let env = Env::start(SimConfig::default().with_latency(LatencyModel {
        base: Duration::from_millis(40),
        per_object: Duration::ZERO,
    }));
    let gw = Gateway::connect(env.config().with_concurrency(concurrency(3, 1, 3))).unwrap();
    let threads: Vec<_> = (0..10)
        .map(|i| {
            let conn = gw.for_task(&format!("t{i}"));
            std::thread::spawn(move || {
                for _ in 0..4 {
                    assert_eq!(get(&*conn, "/v1.0/organization").unwrap().status, 200);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = gw.stats();
    assert_eq!(s.total.requests, 40);
    assert_eq!(s.peak_in_flight, 3, "ten threads, three slots");
    assert!(
        s.total.queue_seconds > 0.1,
        "callers queued: {}",
        s.total.queue_seconds
    );
}

#[test]
fn the_concurrency_limit_shrinks_under_throttling_and_grows_back() {
    let env = Env::start(SimConfig::default().with_latency(LatencyModel {
        base: Duration::from_millis(10),
        per_object: Duration::ZERO,
    }));
    let gw = Gateway::connect(env.config().with_concurrency(concurrency(16, 2, 16))).unwrap();
    env.sim
        .add_fault(throttle("/v1.0/domains", Some(0.05)).rate(0.5).times(40));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let conn = gw.for_task(&format!("t{i}"));
            std::thread::spawn(move || {
                for _ in 0..10 {
                    assert_eq!(get(&*conn, "/v1.0/domains").unwrap().status, 200);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = gw.stats();
    assert!(s.total.throttled >= 10, "{}", s.total.throttled);
    assert!(s.limit_decreases >= 1, "{s:?}");
    let shrunk = s.concurrency_limit;
    assert!(
        (2.0..16.0).contains(&shrunk),
        "limit after the storm: {shrunk}"
    );
    // Once Graph stops throttling, the limit grows again (slowly: ~1 per window of successes).
    env.sim.clear_faults();
    let conn = gw.for_task("calm");
    for _ in 0..40 {
        assert_eq!(get(&*conn, "/v1.0/domains").unwrap().status, 200);
    }
    let grown = gw.stats().concurrency_limit;
    assert!(grown > shrunk, "{shrunk} -> {grown}");
}

/// Finds a user whose mailbox the simulator serves.
fn mailbox_user(conn: &dyn GraphConnection) -> String {
    for id in user_ids(conn, 50) {
        if get(conn, &format!("/v1.0/users/{id}/mailFolders"))
            .unwrap()
            .status
            == 200
        {
            return id;
        }
    }
    panic!("no user with a mailbox in the small tenant");
}

fn hammer_mailbox(gw: &Arc<Gateway>, user: &str) {
    let threads: Vec<_> = (0..10)
        .map(|i| {
            let conn = gw.for_task(&format!("mail{i}"));
            let path = format!("/v1.0/users/{user}/messages?$top=1");
            std::thread::spawn(move || {
                for _ in 0..2 {
                    let r = get(&*conn, &path).unwrap();
                    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn at_most_four_requests_per_mailbox() {
    let env = Env::start(
        SimConfig::default()
            .with_throttling(true)
            .with_latency(LatencyModel {
                base: Duration::from_millis(50),
                per_object: Duration::ZERO,
            }),
    );
    let gw = Gateway::connect(env.config().with_concurrency(concurrency(32, 1, 32))).unwrap();
    let user = mailbox_user(&*gw.for_task("probe"));
    env.sim.reset_stats();

    hammer_mailbox(&gw, &user);
    let s = gw.stats();
    assert_eq!(
        s.total.throttled, 0,
        "the mailbox limiter kept Outlook's 4 concurrent requests"
    );
    assert_eq!(env.sim.stats().throttled, 0);
    assert!(
        s.peak_in_flight >= 4,
        "four at a time: {}",
        s.peak_in_flight
    );

    // Control: the simulator does enforce the limit — a gateway allowed 16 per mailbox gets
    // MailboxConcurrency 429s (and rides them out).
    let mut loose = env.config().with_concurrency(concurrency(32, 1, 32));
    loose.concurrency.per_mailbox = 16;
    let gw2 = Gateway::connect(loose).unwrap();
    hammer_mailbox(&gw2, &user);
    assert!(
        gw2.stats().total.throttled > 0,
        "the simulator refused the fifth concurrent request"
    );
}
