//! Writes to tenant policies as Graph documents them: PATCH of the authentication methods
//! policy, its method configurations (`@odata.type` required), the authorization policy and
//! security defaults; custom authentication strengths (POST, PATCH, `updateAllowedCombinations`)
//! and custom role definitions (POST, PATCH); 400 on read-only properties and built-ins.

use crate::common;

use cairn_graph_sim::Profile;
use common::*;
use serde_json::{json, Value};

fn msg(v: &Value) -> String {
    v["error"]["message"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn singletons_and_method_configurations() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let amp = "/v1.0/policies/authenticationMethodsPolicy";
    let r = c
        .patch_json(amp, &json!({"registrationEnforcement": {"authenticationMethodsRegistrationCampaign": {"state": "disabled", "snoozeDurationInDays": 3, "includeTargets": [], "excludeTargets": []}}}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let v = c.get(amp).await.json();
    assert_eq!(
        v["registrationEnforcement"]["authenticationMethodsRegistrationCampaign"]["state"],
        "disabled"
    );
    // A read-only property with a different value is refused; the same value is ignored.
    let r = c.patch_json(amp, &json!({"policyVersion": "9.9"})).await;
    assert_eq!(r.status, 400);
    assert!(msg(&r.json()).contains("policyVersion"), "{}", r.text());
    let r = c
        .patch_json(amp, &json!({"policyVersion": v["policyVersion"]}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text());

    // Method configurations: @odata.type is required and must be the configuration's.
    let sms = format!("{amp}/authenticationMethodConfigurations/Sms");
    let r = c.patch_json(&sms, &json!({"state": "disabled"})).await;
    assert_eq!(r.status, 400);
    assert!(msg(&r.json()).contains("@odata.type"), "{}", r.text());
    let r = c
        .patch_json(&sms, &json!({"@odata.type": "#microsoft.graph.voiceAuthenticationMethodConfiguration", "state": "disabled"}))
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .patch_json(&sms, &json!({"@odata.type": "#microsoft.graph.smsAuthenticationMethodConfiguration", "state": "disabled",
            "excludeTargets": [{"targetType": "group", "id": "5a1b2c3d-0000-4000-8000-00000000000a"}]}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let v = c.get(&sms).await.json();
    assert_eq!(v["state"], "disabled");
    assert_eq!(
        v["excludeTargets"][0]["id"],
        "5a1b2c3d-0000-4000-8000-00000000000a"
    );
    assert_eq!(
        v["@odata.type"],
        "#microsoft.graph.smsAuthenticationMethodConfiguration"
    );

    // Authorization policy and security defaults.
    let authz = "/v1.0/policies/authorizationPolicy";
    let r = c
        .patch_json(authz, &json!({"allowInvitesFrom": "adminsAndGuestInviters", "defaultUserRolePermissions": {"allowedToCreateApps": false}}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let v = c.get(authz).await.json();
    assert_eq!(v["allowInvitesFrom"], "adminsAndGuestInviters");
    assert_eq!(
        v["defaultUserRolePermissions"]["allowedToCreateApps"],
        false
    );
    let r = c.patch_json(authz, &json!({"noSuchProperty": 1})).await;
    assert_eq!(r.status, 400);
    let r = c.patch_json(authz, &json!({"id": "other"})).await;
    assert_eq!(r.status, 400);
    let sd = "/v1.0/policies/identitySecurityDefaultsEnforcementPolicy";
    let before = c.get(sd).await.json()["isEnabled"].as_bool().unwrap();
    let r = c.patch_json(sd, &json!({"isEnabled": !before})).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(c.get(sd).await.json()["isEnabled"], !before);
}

#[tokio::test]
async fn custom_strengths_and_role_definitions() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let base = "/v1.0/policies/authenticationStrengthPolicies";
    let r = c
        .post_json(base, &json!({"displayName": "Keys and TAP", "description": "d", "allowedCombinations": ["fido2"]}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(r.json()["policyType"], "custom");
    let url = format!("{base}/{id}");
    // allowedCombinations only through updateAllowedCombinations.
    let r = c
        .patch_json(&url, &json!({"allowedCombinations": ["sms"]}))
        .await;
    assert_eq!(r.status, 400);
    assert!(
        msg(&r.json()).contains("updateAllowedCombinations"),
        "{}",
        r.text()
    );
    let r = c
        .patch_json(
            &url,
            &json!({"displayName": "Keys only", "description": "e"}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = c
        .post_json(
            &format!("{url}/updateAllowedCombinations"),
            &json!({"allowedCombinations": ["fido2", "temporaryAccessPassOneTime"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["previousCombinations"], json!(["fido2"]));
    assert_eq!(
        r.json()["currentCombinations"],
        json!(["fido2", "temporaryAccessPassOneTime"])
    );
    let v = c.get(&url).await.json();
    assert_eq!(v["displayName"], "Keys only");
    assert_eq!(
        v["allowedCombinations"],
        json!(["fido2", "temporaryAccessPassOneTime"])
    );
    let r = c
        .post_json(
            &format!("{url}/updateAllowedCombinations"),
            &json!({"allowedCombinations": []}),
        )
        .await;
    assert_eq!(r.status, 400);
    // Built-ins are never written.
    let builtin = format!("{base}/00000000-0000-0000-0000-000000000004");
    let r = c
        .post_json(
            &format!("{builtin}/updateAllowedCombinations"),
            &json!({"allowedCombinations": ["fido2"]}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        c.patch_json(&builtin, &json!({"displayName": "x"}))
            .await
            .status,
        400
    );

    // Custom role definitions: POST, PATCH; built-ins refused.
    let rd = "/v1.0/roleManagement/directory/roleDefinitions";
    let r = c
        .post_json(rd, &json!({"displayName": "App readers", "description": "d", "isEnabled": true,
            "rolePermissions": [{"allowedResourceActions": ["microsoft.directory/applications/standard/read"]}]}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let rid = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(r.json()["isBuiltIn"], false);
    let r = c
        .patch_json(
            &format!("{rd}/{rid}"),
            &json!({"description": "changed", "isEnabled": false}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let v = c.get(&format!("{rd}/{rid}")).await.json();
    assert_eq!(v["description"], "changed");
    assert_eq!(v["isEnabled"], false);
    let r = c
        .patch_json(&format!("{rd}/{rid}"), &json!({"isBuiltIn": true}))
        .await;
    assert_eq!(r.status, 400);
    let all = c.get(rd).await.json();
    let b = all["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["isBuiltIn"] == true)
        .and_then(|d| d["id"].as_str())
        .expect("a built-in role definition")
        .to_string();
    let r = c
        .patch_json(&format!("{rd}/{b}"), &json!({"description": "x"}))
        .await;
    assert_eq!(r.status, 400);
    assert!(msg(&r.json()).contains("Built-in"), "{}", r.text());
}
