//! Token endpoint, bearer tokens, least-privilege permissions and certificate assertions.

use crate::common;

use cairn_graph_sim::certs::{client_assertion, self_signed_certificate, AssertionAlg};
use cairn_graph_sim::testkit::Client;
use cairn_graph_sim::{Profile, SimConfig};
use common::*;
use serde_json::json;
use std::time::Duration;

fn form<'a>(id: &'a str, secret: &'a str, scope: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("client_id", id),
        ("client_secret", secret),
        ("grant_type", "client_credentials"),
        ("scope", scope),
    ]
}

#[tokio::test]
async fn token_endpoint_errors_have_the_oauth2_shape() {
    let sim = start(Profile::Empty).await;
    let mut c = Client::new(&sim.base_url());
    let url = format!("/{}/oauth2/v2.0/token", sim.tenant_id());
    let ok = c
        .post_form(
            &url,
            &form(
                sim.client_id(),
                sim.client_secret(),
                "https://graph.microsoft.com/.default",
            ),
        )
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["token_type"], "Bearer");
    assert_eq!(ok.json()["expires_in"], 3599);

    let r = c
        .post_form(
            &url,
            &form(
                sim.client_id(),
                sim.client_secret(),
                "https://foo.microsoft.com/.default",
            ),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_scope");
    assert_eq!(r.json()["error_codes"], json!([70011]));
    assert!(r.json()["error_description"]
        .as_str()
        .unwrap()
        .starts_with("AADSTS70011:"));
    // A scope that is not .default is refused as well.
    let r = c
        .post_form(
            &url,
            &form(
                sim.client_id(),
                sim.client_secret(),
                "https://graph.microsoft.com/User.Read",
            ),
        )
        .await;
    assert_eq!(r.json()["error"], "invalid_scope");

    let r = c
        .post_form(
            &url,
            &form(
                sim.client_id(),
                "wrong",
                "https://graph.microsoft.com/.default",
            ),
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_client");
    assert_eq!(r.json()["error_codes"], json!([7000215]));

    let r = c
        .post_form(
            &url,
            &form(
                "00000000-1111-2222-3333-444444444444",
                "x",
                "https://graph.microsoft.com/.default",
            ),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "unauthorized_client");

    let r = c
        .post_form(
            "/not-my-tenant/oauth2/v2.0/token",
            &form(
                sim.client_id(),
                sim.client_secret(),
                "https://graph.microsoft.com/.default",
            ),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error_codes"], json!([90002]));

    let r = c
        .post_form(
            &url,
            &[
                ("client_id", sim.client_id()),
                ("client_secret", sim.client_secret()),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    assert_eq!(r.json()["error"], "invalid_request");

    // Token endpoint throttling (on demand): 429 with Retry-After: 60.
    sim.add_fault(
        cairn_graph_sim::FaultRule::new(
            "*/oauth2/v2.0/token",
            cairn_graph_sim::FaultKind::Throttle { retry_after: None },
        )
        .times(1),
    );
    let r = c
        .post_form(
            &url,
            &form(
                sim.client_id(),
                sim.client_secret(),
                "https://graph.microsoft.com/.default",
            ),
        )
        .await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("60"));
    // The domain works as the tenant, and HTTP Basic client authentication is accepted.
    let basic = cairn_graph_sim::util::b64(
        format!("{}:{}", sim.client_id(), sim.client_secret()).as_bytes(),
    );
    let body = "grant_type=client_credentials&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default";
    let r = c
        .send(
            "POST",
            &format!("/{}/oauth2/v2.0/token", sim.domain()),
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Authorization", &format!("Basic {basic}")),
            ],
            body.as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn graph_calls_need_a_valid_unexpired_token() {
    let mut cfg = SimConfig::new(Profile::Empty, 2);
    cfg.token_lifetime = Duration::from_secs(120);
    let sim = start_with(cfg).await;
    let mut anon = Client::new(&sim.base_url());
    let r = anon.get("/v1.0/users").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "InvalidAuthenticationToken");
    assert!(r.header("www-authenticate").is_some());
    let r = anon
        .get_with("/v1.0/users", &[("Authorization", "Bearer not.a.token")])
        .await;
    assert_eq!(r.status, 401);

    let mut tc = Client::new(&sim.base_url());
    let t = tc
        .post_form(
            &format!("/{}/oauth2/v2.0/token", sim.tenant_id()),
            &form(
                sim.client_id(),
                sim.client_secret(),
                "https://graph.microsoft.com/.default",
            ),
        )
        .await;
    assert_eq!(
        t.json()["expires_in"],
        120,
        "expires_in follows the configured lifetime"
    );
    let mut c = client(&sim).await;
    assert_eq!(c.get("/v1.0/users").await.status, 200);
    sim.advance_clock(Duration::from_secs(121));
    let r = c.get("/v1.0/users").await;
    assert_eq!(r.status, 401, "the token expired on the simulated clock");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
}

#[tokio::test]
async fn missing_permissions_give_403_authorization_request_denied() {
    let sim = start(Profile::Small).await;
    let mut c = client_for(&sim, &["User.Read.All"]).await;
    assert_eq!(c.get("/v1.0/users?$top=1").await.status, 200);
    for path in [
        "/v1.0/groups",
        "/v1.0/applications",
        "/v1.0/identity/conditionalAccess/policies",
        "/v1.0/roleManagement/directory/roleAssignments",
        "/v1.0/sites/getAllSites",
    ] {
        let r = c.get(path).await;
        assert_eq!(r.status, 403, "{path}");
    }
    let r = c.get("/v1.0/groups").await;
    assert_eq!(r.json()["error"]["code"], "Authorization_RequestDenied");
    assert_eq!(
        r.json()["error"]["message"],
        "Insufficient privileges to complete the operation."
    );
    let r = c
        .post_json("/v1.0/users", &json!({"accountEnabled": true}))
        .await;
    assert_eq!(r.status, 403, "reading users does not allow writing them");

    // Directory.Read.All covers all directory reads but no writes, and no policies.
    let mut d = client_for(&sim, &["Directory.Read.All"]).await;
    for path in [
        "/v1.0/users",
        "/v1.0/groups",
        "/v1.0/applications",
        "/v1.0/servicePrincipals",
        "/v1.0/directoryRoles",
        "/v1.0/domains",
        "/v1.0/organization",
    ] {
        assert_eq!(d.get(path).await.status, 200, "{path}");
    }
    assert_eq!(
        d.get("/v1.0/identity/conditionalAccess/policies")
            .await
            .status,
        403
    );
    let g = first_id(&mut d, "/v1.0/groups?$top=1").await;
    assert_eq!(d.delete(&format!("/v1.0/groups/{g}")).await.status, 403);

    // GroupMember.Read.All reads members but not groups.
    let mut m = client_for(&sim, &["GroupMember.Read.All"]).await;
    assert_eq!(
        m.get(&format!("/v1.0/groups/{g}/members")).await.status,
        200
    );
    assert_eq!(m.get("/v1.0/groups").await.status, 403);

    // Mail needs Mail.Read.
    let u = first_id(&mut d, "/v1.0/users?$filter=userType eq 'Member'&$top=1").await;
    assert_eq!(
        d.get(&format!("/v1.0/users/{u}/mailFolders")).await.status,
        403
    );
    let mail = sim.add_app(&["Mail.Read"]);
    let mut mc = Client::new(&sim.base_url())
        .with_token(token(&sim, &mail.client_id, &mail.client_secret).await);
    assert_eq!(
        mc.get(&format!("/v1.0/users/{u}/mailFolders")).await.status,
        200
    );
    // The token carries the app's roles.
    let tok = token(&sim, &mail.client_id, &mail.client_secret).await;
    let claims: serde_json::Value = serde_json::from_slice(
        &cairn_graph_sim::util::b64url_decode(tok.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(claims["roles"], json!(["Mail.Read"]));
}

#[tokio::test]
async fn certificate_assertions_rs256_and_ps256() {
    let sim = start(Profile::Empty).await;
    let app = sim.add_app(&["User.Read.All"]);
    // 1024-bit keys keep the debug-build test fast; the simulator does not check key size.
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).expect("rsa key");
    let cert = self_signed_certificate(&key, "cairn-test");
    assert!(cairn_graph_sim::certs::spki_of_certificate(&cert).is_some());
    sim.add_certificate(&app.client_id, &cert).unwrap();
    let aud = format!(
        "https://login.microsoftonline.com/{}/oauth2/v2.0/token",
        sim.tenant_id()
    );
    let url = format!("/{}/oauth2/v2.0/token", sim.tenant_id());
    let mut c = Client::new(&sim.base_url());
    let assertion_form = |a: &str| {
        vec![
            ("client_id".to_string(), app.client_id.clone()),
            (
                "client_assertion_type".to_string(),
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
            ),
            ("client_assertion".to_string(), a.to_string()),
            ("grant_type".to_string(), "client_credentials".to_string()),
            (
                "scope".to_string(),
                "https://graph.microsoft.com/.default".to_string(),
            ),
        ]
    };
    for alg in [AssertionAlg::Rs256, AssertionAlg::Ps256] {
        let a = client_assertion(&key, &cert, &app.client_id, &aud, alg);
        let f = assertion_form(&a);
        let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = c.post_form(&url, &pairs).await;
        assert_eq!(r.status, 200, "{alg:?}: {}", r.text());
        let mut g =
            Client::new(&sim.base_url()).with_token(r.json()["access_token"].as_str().unwrap());
        assert_eq!(g.get("/v1.0/users").await.status, 200);
    }
    // Signed by another key (same certificate thumbprint): refused.
    let other = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
    let bad = client_assertion(&other, &cert, &app.client_id, &aud, AssertionAlg::Ps256);
    let f = assertion_form(&bad);
    let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = c.post_form(&url, &pairs).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_client");
    // Wrong audience.
    let wrong_aud = client_assertion(
        &key,
        &cert,
        &app.client_id,
        "https://example.invalid/token",
        AssertionAlg::Rs256,
    );
    let f = assertion_form(&wrong_aud);
    let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(c.post_form(&url, &pairs).await.status, 401);
    // A certificate that is not registered.
    let other_cert = self_signed_certificate(&other, "other");
    let unknown = client_assertion(
        &other,
        &other_cert,
        &app.client_id,
        &aud,
        AssertionAlg::Rs256,
    );
    let f = assertion_form(&unknown);
    let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = c.post_form(&url, &pairs).await;
    assert_eq!(r.status, 401);
    assert!(r.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("AADSTS700027"));

    // A certificate uploaded through Graph (keyCredentials) works too.
    let mut admin = client(&sim).await;
    let key_cred = json!({"keyCredentials": [{"type": "AsymmetricX509Cert", "usage": "Verify", "key": cairn_graph_sim::util::b64(&other_cert), "displayName": "CN=other"}]});
    let r = admin
        .patch_json(&format!("/v1.0/applications/{}", app.object_id), &key_cred)
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let ok = client_assertion(
        &other,
        &other_cert,
        &app.client_id,
        &aud,
        AssertionAlg::Rs256,
    );
    let f = assertion_form(&ok);
    let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(c.post_form(&url, &pairs).await.status, 200);
    // keyCredentials.key is returned only with $select=keyCredentials.
    let plain = admin
        .get(&format!("/v1.0/applications/{}", app.object_id))
        .await
        .json();
    assert!(plain["keyCredentials"][0]["key"].is_null());
    let sel = admin
        .get(&format!(
            "/v1.0/applications/{}?$select=keyCredentials",
            app.object_id
        ))
        .await
        .json();
    assert!(sel["keyCredentials"][0]["key"].is_string());
}
