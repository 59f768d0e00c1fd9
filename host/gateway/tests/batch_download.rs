//! `$batch` (splitting, dependsOn, inner throttling, outer failures), streaming downloads
//! (redirects without the token), and counters checked against the simulator's own.

use crate::common;

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_gateway::{Cloud, Credential, Gateway, GatewayConfig};
use cairn_graph_sim::{FaultKind, FaultRule};
use cairn_runtime::{BatchItem, GraphConnection, HttpRequest};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MISSING: &str = "00000000-0000-0000-0000-0000000000aa";

fn item(conn: &dyn GraphConnection, method: &str, path: &str, deps: &[u32]) -> BatchItem {
    BatchItem {
        request: request(conn, method, path),
        depends_on: deps.to_vec(),
    }
}

#[test]
fn batch_splits_matches_ids_keeps_dependencies_and_retries_throttled_items() {
    let env = Env::small();
    let gw = env.gateway();
    let conn = gw.for_task("batch");
    let ids = user_ids(&*conn, 45);
    assert_eq!(ids.len(), 45);
    env.sim.reset_stats();
    let before = gw.stats().tasks["batch"].clone();

    let mut items: Vec<BatchItem> = ids
        .iter()
        .map(|id| {
            item(
                &*conn,
                "GET",
                &format!("/v1.0/users/{id}?$select=id,displayName"),
                &[],
            )
        })
        .collect();
    // 2 fails (404); 3 depends on it in the same batch (Graph answers 424); 25 depends on it
    // from the next batch (the gateway answers 424 without sending it).
    items[2] = item(&*conn, "GET", &format!("/v1.0/users/{MISSING}"), &[]);
    items[3].depends_on = vec![2];
    items[25].depends_on = vec![2];
    // 5 is throttled once; 6 depends on it and is re-sent with it.
    items[6].depends_on = vec![5];
    // 30 depends on 1, in an earlier batch, which succeeds.
    items[30].depends_on = vec![1];
    // 44 depends on 43, and 43 on 42: a chain.
    items[44].depends_on = vec![43];
    items[43].depends_on = vec![42];
    env.sim.add_fault(
        FaultRule::new(
            &format!("/v1.0/users/{}", ids[5]),
            FaultKind::Throttle {
                retry_after: Some(0.3),
            },
        )
        .times(1),
    );

    let t0 = Instant::now();
    let out = conn.batch(items).unwrap();
    let took = t0.elapsed();
    assert_eq!(out.len(), 45);
    for (i, r) in out.iter().enumerate() {
        match i {
            2 => assert_eq!(r.status, 404),
            3 | 25 => {
                assert_eq!(r.status, 424, "item {i}");
                assert_eq!(json(r)["error"]["code"], "FailedDependency");
            }
            _ => {
                assert_eq!(
                    r.status,
                    200,
                    "item {i}: {}",
                    String::from_utf8_lossy(&r.body)
                );
                assert_eq!(json(r)["id"], ids[i].as_str(), "item {i} matched by id");
            }
        }
    }
    assert!(
        took >= Duration::from_millis(300),
        "waited the inner Retry-After: {took:?}"
    );

    let sim = env.sim.stats();
    let s = gw.stats().tasks["batch"].clone();
    // 45 items: ≤ 20 per batch, 25 answered locally, 5 and 6 re-sent: three POSTs.
    assert_eq!(sim.batch_requests, 3);
    assert_eq!(s.requests - before.requests, 3);
    assert_eq!(s.batch_items - before.batch_items, 44 + 2);
    assert_eq!(sim.batch_items, 46);
    assert_eq!(s.throttled - before.throttled, 1);
    assert_eq!(s.retries - before.retries, 2, "items 5 and 6 sent twice");
    assert!((s.wait_seconds - before.wait_seconds - 0.3).abs() < 0.01);
    assert_eq!(
        sim.status.get(&400),
        None,
        "no batch was refused as malformed"
    );
}

#[test]
fn batch_bodies_writes_and_outer_failures() {
    let env = Env::small();
    let gw = env.gateway();
    let conn = gw.for_task("w");
    let mut create = item(&*conn, "POST", "/v1.0/groups", &[]);
    // No Content-Type: the gateway adds it for a JSON body (Graph requires it).
    create.request.body =
        br#"{"displayName":"Batch group","mailEnabled":false,"mailNickname":"batchgroup","securityEnabled":true}"#.to_vec();
    let mut with_ct = item(&*conn, "POST", "/v1.0/groups", &[0]);
    with_ct
        .request
        .headers
        .push(("Content-Type".into(), "application/json".into()));
    with_ct.request.body =
        br#"{"displayName":"Batch group 2","mailEnabled":false,"mailNickname":"batchgroup2","securityEnabled":true}"#.to_vec();
    let read = item(&*conn, "GET", "/v1.0/organization", &[0, 1]);
    let out = conn.batch(vec![create, with_ct, read]).unwrap();
    assert_eq!(
        out[0].status,
        201,
        "{}",
        String::from_utf8_lossy(&out[0].body)
    );
    assert_eq!(json(&out[0])["displayName"], "Batch group");
    assert_eq!(
        out[1].status,
        201,
        "{}",
        String::from_utf8_lossy(&out[1].body)
    );
    assert_eq!(out[2].status, 200);

    // A body that is not JSON and has no Content-Type is refused before sending.
    let mut bad = item(&*conn, "POST", "/v1.0/groups", &[]);
    bad.request.body = b"not json".to_vec();
    let e = conn.batch(vec![bad]).unwrap_err();
    assert!(e.contains("request 0") && e.contains("Content-Type"), "{e}");
    // Bad dependencies are refused.
    let e = conn
        .batch(vec![
            item(&*conn, "GET", "/v1.0/organization", &[1]),
            item(&*conn, "GET", "/v1.0/domains", &[0]),
        ])
        .unwrap_err();
    assert!(e.contains("cycle"), "{e}");
    let e = conn
        .batch(vec![item(&*conn, "GET", "/v1.0/organization", &[7])])
        .unwrap_err();
    assert!(e.contains("only 1"), "{e}");

    // The outer request is retried like any other (503 + Retry-After), …
    env.sim.add_fault(
        FaultRule::new(
            "/v1.0/$batch",
            FaultKind::ServerError {
                status: 503,
                retry_after: Some(0.1),
            },
        )
        .times(1),
    );
    let out = conn
        .batch(vec![item(&*conn, "GET", "/v1.0/organization", &[])])
        .unwrap();
    assert_eq!(out[0].status, 200);
    // …and a final non-200 is an error naming the status.
    env.sim.add_fault(
        FaultRule::new(
            "/v1.0/$batch",
            FaultKind::ServerError {
                status: 400,
                retry_after: None,
            },
        )
        .times(1),
    );
    let e = conn
        .batch(vec![item(&*conn, "GET", "/v1.0/organization", &[])])
        .unwrap_err();
    assert!(e.contains("$batch: Graph answered HTTP 400"), "{e}");
    assert!(conn.batch(vec![]).unwrap().is_empty());
}

#[test]
fn batch_items_throttled_past_the_budget_keep_their_last_response() {
    let env = Env::small();
    let mut cfg = env.config();
    cfg.retry.max_attempts = 3;
    let gw = Gateway::connect(cfg).unwrap();
    let conn = gw.for_task("b");
    env.sim.add_fault(FaultRule::new(
        "/v1.0/domains",
        FaultKind::Throttle {
            retry_after: Some(0.05),
        },
    ));
    let out = conn
        .batch(vec![
            item(&*conn, "GET", "/v1.0/organization", &[]),
            item(&*conn, "GET", "/v1.0/domains", &[]),
        ])
        .unwrap();
    assert_eq!(out[0].status, 200, "the good item's result is kept");
    assert_eq!(out[1].status, 429);
    let ra = header(&out[1], "retry-after").and_then(cairn_gateway::retry::parse_retry_after);
    assert_eq!(
        ra,
        Some(Duration::from_millis(50)),
        "the item's own Retry-After"
    );
    assert_eq!(
        env.sim.stats().batch_requests,
        3,
        "three attempts for the throttled item"
    );
}

#[test]
fn downloads_stream_simulator_content_through_the_redirect() {
    let env = Env::small();
    let gw = env.gateway();
    let conn = gw.for_task("files");
    let (drive, item_id, content) = env.sim.with_tenant(|t| {
        t.drives
            .drives
            .values()
            .find_map(|d| {
                d.items
                    .values()
                    .find(|i| !i.folder && !i.deleted && i.content.len() > 10)
                    .map(|i| (d.id.clone(), i.id.clone(), i.content.clone()))
            })
            .expect("a file in the small tenant")
    });
    let mut reader = conn
        .download(request(
            &*conn,
            "GET",
            &format!("/v1.0/drives/{drive}/items/{item_id}/content"),
        ))
        .unwrap();
    let mut got = vec![];
    reader.read_to_end(&mut got).unwrap();
    assert_eq!(got, content);
    let s = &gw.stats().tasks["files"];
    assert_eq!(
        s.requests, 2,
        "the Graph request and the pre-authenticated download"
    );
    assert_eq!(s.bytes_received, content.len() as u64);

    let e = conn
        .download(request(
            &*conn,
            "GET",
            &format!("/v1.0/drives/{drive}/items/nope/content"),
        ))
        .err()
        .expect("missing item");
    assert!(e.contains("HTTP 404"), "{e}");
}

/// What a tiny test server saw.
#[derive(Default, Clone, Debug)]
struct Seen {
    requests: Vec<(String, Option<String>)>, // (path, authorization)
}

/// A loopback HTTP/1.1 server answering with `route(path)` and recording each request's path
/// and `Authorization` header.
fn serve(
    rt: &tokio::runtime::Runtime,
    seen: Arc<Mutex<Seen>>,
    route: impl Fn(&str) -> (u16, Vec<(String, String)>, Vec<u8>) + Send + Sync + 'static,
) -> u16 {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let route = Arc::new(route);
    rt.spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            let route = route.clone();
            tokio::spawn(async move {
                let mut buf = vec![];
                let mut tmp = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let Ok(n) = sock.read(&mut tmp).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let mut lines = head.lines();
                let path = lines
                    .next()
                    .unwrap_or("")
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_string();
                let auth = lines.take_while(|l| !l.is_empty()).find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("authorization")
                        .then(|| v.trim().to_string())
                });
                seen.lock().unwrap().requests.push((path.clone(), auth));
                let (status, headers, body) = route(&path);
                let mut resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    resp.push_str(&format!("{k}: {v}\r\n"));
                }
                resp.push_str("\r\n");
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.write_all(&body).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    port
}

#[test]
fn redirects_never_carry_the_token() {
    let env = Env::small();
    let blob: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let seen_graph = Arc::new(Mutex::new(Seen::default()));
    let seen_cdn = Arc::new(Mutex::new(Seen::default()));
    let b2 = blob.clone();
    let cdn = serve(&env.rt, seen_cdn.clone(), move |_| {
        (200, vec![], b2.clone())
    });
    let b3 = blob.clone();
    let graph = serve(&env.rt, seen_graph.clone(), move |path| {
        if path.starts_with("/v1.0/cross/") {
            (
                302,
                vec![(
                    "Location".into(),
                    format!("http://127.0.0.1:{cdn}/blob?tempauth=SECRETSAS"),
                )],
                vec![],
            )
        } else if path.starts_with("/v1.0/same/") {
            // A relative redirect on the Graph host itself: still no token.
            (
                302,
                vec![("Location".into(), "/dl/blob?tempauth=SECRETSAS".into())],
                vec![],
            )
        } else if path.starts_with("/dl/") {
            (200, vec![], b3.clone())
        } else {
            (
                404,
                vec![],
                br#"{"error":{"code":"itemNotFound","message":"nope"}}"#.to_vec(),
            )
        }
    });
    // Tokens from the simulator, "Graph" at the test server.
    let cfg = GatewayConfig::new(
        env.sim.tenant_id(),
        env.sim.client_id(),
        Credential::secret(env.sim.client_secret()),
    )
    .with_cloud(Cloud::custom(&env.sim.base_url(), &format!("http://127.0.0.1:{graph}")).unwrap())
    .with_retry(fast_retry());
    let gw = Gateway::connect(cfg).unwrap();
    let conn = gw.for_task("dl");

    for path in ["/v1.0/cross/items/1/content", "/v1.0/same/items/1/content"] {
        let mut r = conn.download(request(&*conn, "GET", path)).unwrap();
        let mut got = vec![];
        r.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), blob.len());
        assert!(got == blob, "{path}: content intact");
    }
    let g = seen_graph.lock().unwrap().clone();
    let c = seen_cdn.lock().unwrap().clone();
    assert_eq!(c.requests.len(), 1);
    assert_eq!(c.requests[0].0, "/blob?tempauth=SECRETSAS");
    assert_eq!(c.requests[0].1, None, "no Authorization to another host");
    let on_graph: Vec<_> = g
        .requests
        .iter()
        .filter(|(p, _)| p.starts_with("/v1.0/"))
        .collect();
    assert_eq!(on_graph.len(), 2);
    for (p, auth) in &on_graph {
        assert!(
            auth.as_deref().is_some_and(|a| a.starts_with("Bearer ")),
            "{p} is authenticated"
        );
    }
    let same: Vec<_> = g
        .requests
        .iter()
        .filter(|(p, _)| p.starts_with("/dl/"))
        .collect();
    assert_eq!(same.len(), 1);
    assert_eq!(
        same[0].1, None,
        "no Authorization to a pre-authenticated URL on the Graph host"
    );
    assert_eq!(gw.stats().tasks["dl"].bytes_received, 2 * blob.len() as u64);

    // Errors name the path but never the pre-authenticated query.
    let e = conn
        .download(request(&*conn, "GET", "/v1.0/missing/content"))
        .err()
        .unwrap();
    assert!(e.contains("HTTP 404 (itemNotFound: nope)"), "{e}");
}

#[test]
fn caller_authorization_headers_never_reach_graph() {
    let env = Env::small();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let graph = serve(&env.rt, seen.clone(), |_| (200, vec![], b"{}".to_vec()));
    let cfg = GatewayConfig::new(
        env.sim.tenant_id(),
        env.sim.client_id(),
        Credential::secret(env.sim.client_secret()),
    )
    .with_cloud(Cloud::custom(&env.sim.base_url(), &format!("http://127.0.0.1:{graph}")).unwrap());
    let gw = Gateway::connect(cfg).unwrap();
    let conn = gw.for_task("t");
    let mut req = request(&*conn, "GET", "/v1.0/organization");
    req.headers
        .push(("Authorization".into(), "Bearer stolen".into()));
    req.headers
        .push(("ConsistencyLevel".into(), "eventual".into()));
    assert_eq!(conn.send(req).unwrap().status, 200);
    let s = seen.lock().unwrap().clone();
    let auth = s.requests[0].1.clone().unwrap();
    assert!(
        auth.starts_with("Bearer ") && !auth.contains("stolen"),
        "{auth}"
    );
}

#[test]
fn requests_for_other_hosts_are_refused_without_sending() {
    let env = Env::small();
    let gw = env.gateway();
    let conn = gw.for_task("t");
    let req = HttpRequest {
        method: "GET".into(),
        url: url::Url::parse("https://evil.example/v1.0/users").unwrap(),
        headers: vec![],
        body: vec![],
    };
    let e = conn.send(req.clone()).unwrap_err();
    assert!(e.contains("not on this connection's Graph endpoint"), "{e}");
    assert!(conn.download(req.clone()).is_err());
    assert!(conn
        .batch(vec![BatchItem {
            request: req,
            depends_on: vec![]
        }])
        .is_err());
    assert_eq!(env.sim.stats().token_requests, 0);
    assert_eq!(gw.stats().tasks["t"].requests, 0);
}

#[test]
fn counters_add_up_against_the_simulator() {
    let env = Env::small();
    let gw = env.gateway();
    let a = gw.for_task("users");
    let b = gw.for_task("groups");
    env.sim.add_fault(
        FaultRule::new(
            "/v1.0/groups*",
            FaultKind::Throttle {
                retry_after: Some(0.05),
            },
        )
        .times(2),
    );
    env.sim.add_fault(
        FaultRule::new(
            "/v1.0/organization",
            FaultKind::ServerError {
                status: 503,
                retry_after: Some(0.05),
            },
        )
        .times(1),
    );
    let mut bodies = 0u64;
    let mut next = Some("/v1.0/users?$top=20".to_string());
    while let Some(p) = next.take() {
        let r = get(&*a, &p).unwrap();
        bodies += r.body.len() as u64;
        next = json(&r)["@odata.nextLink"].as_str().map(str::to_string);
    }
    let r = get(&*b, "/v1.0/groups?$top=50").unwrap();
    assert_eq!(r.status, 200);
    let out = b
        .batch(
            (0..5)
                .map(|_| item(&*b, "GET", "/v1.0/organization", &[]))
                .collect(),
        )
        .unwrap();
    assert!(out.iter().all(|r| r.status == 200));
    // The same handle name shares counters.
    let again = gw.for_task("users");
    get(&*again, "/v1.0/domains").unwrap();

    let s = gw.stats();
    let sim = env.sim.stats();
    assert_eq!(s.tasks.len(), 2);
    let sum = |f: fn(&cairn_gateway::TaskStats) -> u64| s.tasks.values().map(f).sum::<u64>();
    assert_eq!(s.total.requests, sum(|t| t.requests));
    assert_eq!(
        s.total.requests, sim.graph_requests,
        "every request reached Graph once"
    );
    assert_eq!(s.total.throttled, sim.throttled + 1, "two 429s and one 503");
    assert_eq!(s.total.throttled, 3);
    assert_eq!(
        s.total.resource_units, sim.ru_spent,
        "x-ms-resource-unit summed, batch items included"
    );
    assert!(s.total.resource_units > 0);
    assert_eq!(s.tasks["groups"].batch_items, sim.batch_items);
    assert_eq!(s.tasks["groups"].retries, 3);
    assert!(
        s.tasks["users"].bytes_received > bodies,
        "pages plus the domains response"
    );
    assert_eq!(s.token_requests, 1);
    let text = s.to_prometheus();
    assert!(
        text.contains(&format!(
            "cairn_graph_requests_total{{connection=\"sim\",task=\"groups\"}} {}",
            s.tasks["groups"].requests
        )),
        "{text}"
    );
    let back: cairn_gateway::GatewayStats =
        serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(back, s);
}
