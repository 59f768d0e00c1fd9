//! Tokens: client secret, certificate assertion, refusals, caching, early refresh,
//! single-flight, and the 401 refresh-and-retry.

use crate::common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_gateway::{
    AssertionAlgorithm, CertificateCredential, Credential, Gateway, GatewayConfig, GatewayError,
};
use cairn_graph_sim::{FaultKind, FaultRule, SimConfig};
use common::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn cert_der(pem_file: &str) -> Vec<u8> {
    let c = CertificateCredential::from_files(
        &fixture(pem_file),
        &fixture(&pem_file.replace("cert", "key")),
    )
    .unwrap();
    c.certificate_der().to_vec()
}

#[test]
fn client_secret_token_is_cached_and_pages_are_followed() {
    let env = Env::small();
    let gw = env.gateway();
    gw.authenticate().expect("the secret is accepted");
    let conn = gw.for_task("users");
    assert_eq!(conn.base_url().as_str(), format!("{}/", env.sim.base_url()));

    let (users, pages) = get_all(&*conn, "/v1.0/users?$top=7&$select=id,displayName");
    // The same listing straight from the simulator.
    let truth = env.rt.block_on(async {
        let mut c = cairn_graph_sim::testkit::Client::new(&env.sim.base_url())
            .with_token(env.sim.access_token());
        c.get_all("/v1.0/users?$top=999&$select=id", &[]).await.0
    });
    assert_eq!(users.len(), truth.len(), "every user, across {pages} pages");
    assert!(pages > 3, "{pages} pages of 7");
    let mut a: Vec<&str> = users.iter().map(|u| u["id"].as_str().unwrap()).collect();
    let mut b: Vec<&str> = truth.iter().map(|u| u["id"].as_str().unwrap()).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // One token for everything.
    assert_eq!(env.sim.stats().token_requests, 1);
    assert_eq!(gw.stats().token_requests, 1);
    assert_eq!(gw.stats().tasks["users"].requests, pages as u64);
}

#[test]
fn bad_secret_gives_a_clear_error_without_the_secret() {
    let env = Env::small();
    let wrong = "Wr0ng~secret.value_that-must-never-appear";
    let cfg = GatewayConfig::new(
        env.sim.tenant_id(),
        env.sim.client_id(),
        Credential::secret(wrong),
    )
    .with_cloud(env.cloud())
    .with_retry(fast_retry());
    assert!(!format!("{cfg:?}").contains(wrong));
    let gw = Gateway::connect(cfg).unwrap();
    let e = gw.authenticate().unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, GatewayError::Auth(_)), "{e:?}");
    assert!(msg.contains("refused the client secret"), "{msg}");
    assert!(msg.contains("AADSTS7000215 invalid_client"), "{msg}");
    assert!(msg.contains(env.sim.client_id()), "{msg}");
    assert!(msg.contains("not its id"), "names the usual mistake: {msg}");
    assert!(!msg.contains(wrong), "{msg}");
    assert!(!format!("{e:?}").contains(wrong));

    // A plugin's request fails with the same words, and the refusal is remembered briefly so a
    // crowd of tasks does not hammer the token endpoint.
    let conn = gw.for_task("t");
    let err = get(&*conn, "/v1.0/users").unwrap_err();
    assert!(err.contains("AADSTS7000215"), "{err}");
    assert!(!err.contains(wrong));
    assert_eq!(env.sim.stats().token_requests, 1);
    assert_eq!(gw.stats().tasks["t"].failures, 1);
    assert_eq!(
        env.sim.stats().graph_requests,
        0,
        "no Graph request without a token"
    );
}

#[test]
fn unknown_tenant_and_unknown_app_are_named() {
    let env = Env::small();
    let cfg = GatewayConfig::new(
        "nope.onmicrosoft.com",
        env.sim.client_id(),
        Credential::secret(env.sim.client_secret()),
    )
    .with_cloud(env.cloud());
    let msg = Gateway::connect(cfg)
        .unwrap()
        .authenticate()
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("does not know the tenant") && msg.contains("AADSTS90002"),
        "{msg}"
    );

    let cfg = GatewayConfig::new(
        env.sim.tenant_id(),
        "11111111-2222-3333-4444-555555555555",
        Credential::secret("x-secret"),
    )
    .with_cloud(env.cloud());
    let msg = Gateway::connect(cfg)
        .unwrap()
        .authenticate()
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("does not know the application") && msg.contains("AADSTS700016"),
        "{msg}"
    );

    // The tenant may be given as its domain.
    let cfg = GatewayConfig::new(
        env.sim.domain(),
        env.sim.client_id(),
        Credential::secret(env.sim.client_secret()),
    )
    .with_cloud(env.cloud());
    Gateway::connect(cfg).unwrap().authenticate().unwrap();
}

#[test]
fn certificate_assertion_ps256_and_rs256() {
    let env = Env::small();
    env.sim
        .add_certificate(env.sim.client_id(), &cert_der("test-app.cert.pem"))
        .unwrap();
    for (key, alg) in [
        ("test-app.key.pem", AssertionAlgorithm::Ps256),
        ("test-app.key.pkcs1.pem", AssertionAlgorithm::Rs256),
    ] {
        let cert = CertificateCredential::from_files(&fixture("test-app.cert.pem"), &fixture(key))
            .unwrap()
            .with_algorithm(alg);
        let cfg = GatewayConfig::new(
            env.sim.tenant_id(),
            env.sim.client_id(),
            Credential::Certificate(cert),
        )
        .with_cloud(env.cloud())
        .with_retry(fast_retry());
        let gw = Gateway::connect(cfg).unwrap();
        let conn = gw.for_task("certs");
        let r = get(&*conn, "/v1.0/organization").unwrap();
        assert_eq!(
            r.status,
            200,
            "{alg:?}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }

    // A certificate the app does not have.
    let other =
        CertificateCredential::from_files(&fixture("other.cert.pem"), &fixture("other.key.pem"))
            .unwrap();
    let cfg = GatewayConfig::new(
        env.sim.tenant_id(),
        env.sim.client_id(),
        Credential::Certificate(other),
    )
    .with_cloud(env.cloud());
    let msg = Gateway::connect(cfg)
        .unwrap()
        .authenticate()
        .unwrap_err()
        .to_string();
    assert!(msg.contains("refused the certificate assertion"), "{msg}");
    assert!(msg.contains("AADSTS700027"), "{msg}");
}

#[test]
fn a_401_refreshes_the_token_once_and_retries() {
    let env = Env::small();
    let gw = env.gateway();
    let conn = gw.for_task("t");
    assert_eq!(get(&*conn, "/v1.0/organization").unwrap().status, 200);
    env.sim
        .add_fault(FaultRule::new("/v1.0/domains", FaultKind::ExpiredToken).times(1));
    let r = get(&*conn, "/v1.0/domains").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        env.sim.stats().token_requests,
        2,
        "one refresh after the 401"
    );
    assert_eq!(gw.stats().tasks["t"].retries, 1);

    // A token Graph keeps refusing is an error, after exactly one refresh.
    env.sim.clear_faults();
    env.sim
        .add_fault(FaultRule::new("/v1.0/domains", FaultKind::ExpiredToken));
    let e = get(&*conn, "/v1.0/domains").unwrap_err();
    assert!(e.contains("refused the access token twice"), "{e}");
    assert!(e.contains("InvalidAuthenticationToken"), "{e}");
    assert_eq!(env.sim.stats().token_requests, 3);
}

#[test]
fn tokens_refresh_early_and_single_flight() {
    let env = Env::start(SimConfig {
        token_lifetime: Duration::from_secs(3),
        ..SimConfig::default()
    });
    let gw = env.gateway();

    // Eight tasks start at once: one token request.
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let conn = gw.for_task(&format!("t{i}"));
            let b = barrier.clone();
            std::thread::spawn(move || {
                b.wait();
                get(&*conn, "/v1.0/organization").unwrap().status
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 200);
    }
    assert_eq!(env.sim.stats().token_requests, 1, "single-flight");

    // A 3 s token is refreshed after ~2.4 s (a fifth early), before Graph would refuse it.
    let conn = gw.for_task("late");
    std::thread::sleep(Duration::from_millis(2600));
    assert_eq!(get(&*conn, "/v1.0/organization").unwrap().status, 200);
    assert_eq!(env.sim.stats().token_requests, 2);
    assert_eq!(
        env.sim.stats().status.get(&401).copied().unwrap_or(0),
        0,
        "refreshed before expiry, never refused"
    );
}

#[test]
fn a_throttled_token_endpoint_is_waited_out() {
    let env = Env::small();
    env.sim.add_fault(
        FaultRule::new(
            "*/oauth2/v2.0/token",
            FaultKind::Throttle {
                retry_after: Some(0.2),
            },
        )
        .times(2),
    );
    let gw = env.gateway();
    let t0 = Instant::now();
    gw.authenticate().unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(400));
    assert_eq!(env.sim.stats().token_requests, 3);
    assert_eq!(gw.stats().token_requests, 3);

    // Past the budget the error says why.
    env.sim.add_fault(FaultRule::new(
        "*/oauth2/v2.0/token",
        FaultKind::ServerError {
            status: 503,
            retry_after: Some(0.01),
        },
    ));
    let mut cfg = env.config();
    cfg.retry.max_attempts = 2;
    let e = Gateway::connect(cfg)
        .unwrap()
        .authenticate()
        .unwrap_err()
        .to_string();
    assert!(e.contains("could not get a token"), "{e}");
    assert!(e.contains("gave up after 2 attempt(s)"), "{e}");
    assert!(e.contains("HTTP 503"), "{e}");
}

#[test]
fn runs_on_a_borrowed_multi_thread_runtime_only() {
    let env = Env::small();
    let gw = Gateway::connect_with_handle(env.config(), env.rt.handle().clone()).unwrap();
    let conn = gw.for_task("t");
    assert_eq!(get(&*conn, "/v1.0/organization").unwrap().status, 200);
    // From a spawn_blocking thread of that same runtime, as a plugin host would call it.
    let conn2 = gw.for_task("blocking");
    let status = env
        .rt
        .block_on(async move {
            tokio::task::spawn_blocking(move || get(&*conn2, "/v1.0/domains").unwrap().status).await
        })
        .unwrap();
    assert_eq!(status, 200);

    let current = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let e = Gateway::connect_with_handle(env.config(), current.handle().clone()).unwrap_err();
    assert!(e.to_string().contains("multi-thread"), "{e}");
}
