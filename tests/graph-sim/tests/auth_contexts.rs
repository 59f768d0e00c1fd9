//! Authentication contexts (`authenticationContextClassReference`) as Graph v1.0 documents them:
//! list and get, PATCH that updates or creates (upsert) on a tenant-chosen id `c1` … `c99`,
//! DELETE (refused while a Conditional Access policy requires the context), permissions.

use crate::common;

use cairn_graph_sim::Profile;
use common::*;
use serde_json::json;

const ACR: &str = "/v1.0/identity/conditionalAccess/authenticationContextClassReferences";

#[tokio::test]
async fn list_get_upsert_and_delete() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let v = c.get(ACR).await.json();
    assert_eq!(
        v["@odata.context"].as_str().unwrap(),
        format!(
            "{}/v1.0/$metadata#identity/conditionalAccess/authenticationContextClassReferences",
            sim.base_url()
        )
    );
    assert_eq!(ids(&v), ["c1", "c2", "c3"]);
    let c1 = c.get(&format!("{ACR}/c1")).await.json();
    assert_eq!(c1["displayName"], "Require trusted location");
    assert_eq!(c1["isAvailable"], true);
    assert!(c1["description"].is_string());
    assert_eq!(
        c1["@odata.context"].as_str().unwrap(),
        format!("{}/v1.0/$metadata#identity/conditionalAccess/authenticationContextClassReferences/$entity", sim.base_url())
    );
    assert_eq!(c.get(&format!("{ACR}/c9")).await.status, 404);

    // PATCH updates an existing context (only the properties sent).
    let r = c
        .patch_json(
            &format!("{ACR}/c1"),
            &json!({"displayName": "Trusted location", "isAvailable": false}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let c1b = c.get(&format!("{ACR}/c1")).await.json();
    assert_eq!(c1b["displayName"], "Trusted location");
    assert_eq!(c1b["isAvailable"], false);
    assert_eq!(c1b["description"], c1["description"]);

    // ... and creates one that does not exist, with the id of the URL.
    let r = c
        .patch_json(
            &format!("{ACR}/c42"),
            &json!({"displayName": "Payroll", "description": "HR step-up", "isAvailable": true}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let c42 = c.get(&format!("{ACR}/c42")).await.json();
    assert_eq!(c42["id"], "c42");
    assert_eq!(c42["displayName"], "Payroll");
    assert_eq!(c42["isAvailable"], true);
    assert_eq!(ids(&c.get(ACR).await.json()).len(), 4);

    // Ids are c1..c99 only; creating needs a displayName; unknown and mistyped properties are refused.
    for bad in ["c0", "c100", "c07", "x1", "C", "1"] {
        let r = c
            .patch_json(&format!("{ACR}/{bad}"), &json!({"displayName": "x"}))
            .await;
        assert_eq!(r.status, 400, "{bad}");
    }
    let r = c
        .patch_json(&format!("{ACR}/c50"), &json!({"isAvailable": true}))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = c
        .patch_json(&format!("{ACR}/c2"), &json!({"isAvailable": "yes"}))
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .patch_json(&format!("{ACR}/c2"), &json!({"noSuch": 1}))
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .patch_json(&format!("{ACR}/c2"), &json!({"id": "c3"}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        c.post_json(ACR, &json!({"id": "c5", "displayName": "x"}))
            .await
            .status,
        405
    );

    // DELETE removes it for good (no recycle bin); PATCH brings it back with the same id.
    assert_eq!(c.delete(&format!("{ACR}/c3")).await.status, 204);
    assert_eq!(c.get(&format!("{ACR}/c3")).await.status, 404);
    assert_eq!(c.delete(&format!("{ACR}/c3")).await.status, 404);
    let r = c
        .patch_json(&format!("{ACR}/c3"), &json!({"displayName": "Back"}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let c3 = c.get(&format!("{ACR}/c3")).await.json();
    assert_eq!(c3["displayName"], "Back");
    assert_eq!(c3["isAvailable"], false);
    assert!(sim.dump()["authenticationContextClassReferences"]["c3"].is_object());
}

#[tokio::test]
async fn delete_is_refused_while_a_policy_requires_the_context() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let p = c
        .post_json(
            "/v1.0/identity/conditionalAccess/policies",
            &json!({"displayName": "Step-up for c2", "state": "enabledForReportingButNotEnforced",
                "conditions": {"users": {"includeUsers": ["All"]},
                    "applications": {"includeAuthenticationContextClassReferences": ["c2"]},
                    "clientAppTypes": ["all"]},
                "grantControls": {"operator": "OR", "builtInControls": ["mfa"]}}),
        )
        .await;
    assert_eq!(p.status, 201, "{}", p.text());
    let r = c.delete(&format!("{ACR}/c2")).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let pid = p.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        c.delete(&format!("/v1.0/identity/conditionalAccess/policies/{pid}"))
            .await
            .status,
        204
    );
    assert_eq!(c.delete(&format!("{ACR}/c2")).await.status, 204);
}

#[tokio::test]
async fn permissions_and_empty_profile() {
    let sim = start(Profile::Empty).await;
    let mut c = client(&sim).await;
    assert!(ids(&c.get(ACR).await.json()).is_empty());

    let mut r = client_for(&sim, &["Policy.Read.All"]).await;
    assert_eq!(r.get(ACR).await.status, 200);
    let w = r
        .patch_json(&format!("{ACR}/c1"), &json!({"displayName": "x"}))
        .await;
    assert_eq!(
        w.status, 403,
        "reading policies does not allow writing them"
    );
    let mut d = client_for(&sim, &["Directory.Read.All"]).await;
    assert_eq!(d.get(ACR).await.status, 403);
    let mut w = client_for(&sim, &["Policy.ReadWrite.ConditionalAccess"]).await;
    let r = w
        .patch_json(&format!("{ACR}/c1"), &json!({"displayName": "Created"}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(ids(&w.get(ACR).await.json()), ["c1"]);
}
