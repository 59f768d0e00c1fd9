//! Writes with Graph's validation rules (§6) and error bodies in Graph's shape (§5).

use crate::common;

use cairn_graph_sim::Profile;
use common::*;
use serde_json::{json, Value};

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}
fn msg(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("")
}

#[tokio::test]
async fn users_groups_and_references() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let dom = sim.domain();
    let body = json!({"accountEnabled": true, "displayName": "Test User", "mailNickname": "testuser", "userPrincipalName": format!("testuser@{dom}"), "passwordProfile": {"forceChangePasswordNextSignIn": true, "password": "Str0ng!Passw0rd"}});
    let r = c.post_json("/v1.0/users", &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let uid = r.json()["id"].as_str().unwrap().to_string();
    // Error shape: code, message, innerError with date and request ids.
    let r = c.post_json("/v1.0/users", &body).await;
    assert_eq!(r.status, 400);
    assert_eq!(code(&r.json()), "Request_BadRequest");
    assert_eq!(
        msg(&r.json()),
        "Another object with the same value for property userPrincipalName already exists."
    );
    for k in ["date", "request-id", "client-request-id"] {
        assert!(
            r.json()["error"]["innerError"][k].is_string(),
            "innerError.{k}"
        );
    }
    let mut dup_nick = body.clone();
    dup_nick["userPrincipalName"] = json!(format!("other@{dom}"));
    assert!(msg(&c.post_json("/v1.0/users", &dup_nick).await.json()).contains("mailNickname"));
    let mut missing = body.clone();
    missing.as_object_mut().unwrap().remove("passwordProfile");
    missing["userPrincipalName"] = json!(format!("x1@{dom}"));
    missing["mailNickname"] = json!("x1");
    assert_eq!(c.post_json("/v1.0/users", &missing).await.status, 400);
    let mut bad_domain = body.clone();
    bad_domain["userPrincipalName"] = json!("x2@not-verified.example");
    bad_domain["mailNickname"] = json!("x2");
    assert!(msg(&c.post_json("/v1.0/users", &bad_domain).await.json()).contains("domain"));
    // passwordProfile is write-only; UPN addressing works.
    let v = c
        .get(&format!(
            "/v1.0/users/testuser@{dom}?$select=id,passwordProfile"
        ))
        .await
        .json();
    assert_eq!(v["id"], uid.as_str());
    assert!(v["passwordProfile"].is_null());
    // Read-only properties.
    let r = c
        .patch_json(
            &format!("/v1.0/users/{uid}"),
            &json!({"createdDateTime": "2000-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        c.patch_json(
            &format!("/v1.0/users/{uid}"),
            &json!({"jobTitle": "Tester"})
        )
        .await
        .status,
        204
    );
    assert_eq!(
        c.get(&format!("/v1.0/users/{uid}")).await.json()["jobTitle"],
        "Tester"
    );
    assert_eq!(
        c.get("/v1.0/users/00000000-0000-0000-0000-00000000dead")
            .await
            .json()["error"]["code"],
        "Request_ResourceNotFound"
    );

    // Generated users keep derivable properties lazy; a write materialises them unchanged.
    let gen_user = c
        .get("/v1.0/users?$filter=startswith(userPrincipalName,'a')&$select=id")
        .await
        .json()["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .find(|id| {
            sim.with_tenant(|t| {
                t.get(cairn_graph_sim::model::Kind::User, id)
                    .unwrap()
                    .lazy
                    .is_some()
            })
        })
        .expect("a lazily generated user");
    let sel = "$select=department,city,officeLocation,employeeId,jobTitle,accountEnabled";
    let before = c.get(&format!("/v1.0/users/{gen_user}?{sel}")).await.json();
    assert!(before["department"].is_string() && before["city"].is_string());
    assert_eq!(
        c.patch_json(
            &format!("/v1.0/users/{gen_user}"),
            &json!({"jobTitle": "Renamed"})
        )
        .await
        .status,
        204
    );
    let after = c.get(&format!("/v1.0/users/{gen_user}?{sel}")).await.json();
    assert!(sim.with_tenant(|t| t
        .get(cairn_graph_sim::model::Kind::User, &gen_user)
        .unwrap()
        .lazy
        .is_none()));
    for k in [
        "department",
        "city",
        "officeLocation",
        "employeeId",
        "accountEnabled",
    ] {
        assert_eq!(before[k], after[k], "{k}");
    }
    assert_eq!(after["jobTitle"], "Renamed");
    let dept = before["department"].as_str().unwrap().to_string();
    let by_dept = c
        .get(&format!(
            "/v1.0/users?$filter=department eq '{dept}'&$select=department"
        ))
        .await
        .json();
    assert!(by_dept["value"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["department"] == dept.as_str()));
    // Groups: ≤ 20 @odata.bind, missing references → 404, POST-only rules.
    let users: Vec<String> = c
        .get("/v1.0/users?$top=25&$filter=userType eq 'Member'&$select=id")
        .await
        .json()["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect();
    let bind = |ids: &[String]| {
        ids.iter()
            .map(|i| format!("https://graph.microsoft.com/v1.0/directoryObjects/{i}"))
            .collect::<Vec<_>>()
    };
    let g = |nick: &str| json!({"displayName": nick, "mailEnabled": false, "mailNickname": nick, "securityEnabled": true});
    let mut too_many = g("toomany");
    too_many["members@odata.bind"] = json!(bind(&users[..21]));
    assert_eq!(c.post_json("/v1.0/groups", &too_many).await.status, 400);
    let mut missing_ref = g("missingref");
    missing_ref["members@odata.bind"] =
        json!(bind(&["11111111-2222-4333-8444-555555555555".to_string()]));
    assert_eq!(c.post_json("/v1.0/groups", &missing_ref).await.status, 404);
    let mut fine = g("fine");
    fine["members@odata.bind"] = json!(bind(&users[..15]));
    fine["owners@odata.bind"] = json!(bind(&users[15..20]));
    let r = c.post_json("/v1.0/groups", &fine).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let gid = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        c.get(&format!("/v1.0/groups/{gid}/members")).await.json()["value"]
            .as_array()
            .unwrap()
            .len(),
        15
    );
    assert_eq!(
        c.get(&format!("/v1.0/groups/{gid}/owners")).await.json()["value"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    let mut post_only = g("postonly");
    post_only["hideFromOutlookClients"] = json!(true);
    assert_eq!(c.post_json("/v1.0/groups", &post_only).await.status, 400);
    assert_eq!(c.post_json("/v1.0/groups", &json!({"displayName": "dl", "mailEnabled": true, "mailNickname": "dl", "securityEnabled": false})).await.status, 400);
    assert!(msg(&c.post_json("/v1.0/groups", &g("fine")).await.json()).contains("mailNickname"));
    let m365 = c.post_json("/v1.0/groups", &json!({"displayName": "Team", "mailEnabled": true, "mailNickname": "team42", "securityEnabled": false, "groupTypes": ["Unified"]})).await;
    assert_eq!(m365.status, 201);
    assert_eq!(m365.json()["mail"], format!("team42@{dom}"));

    // $ref writes.
    let refbody = |id: &str| json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{id}")});
    assert_eq!(
        c.post_json(
            &format!("/v1.0/groups/{gid}/members/$ref"),
            &refbody(&users[20])
        )
        .await
        .status,
        204
    );
    let again = c
        .post_json(
            &format!("/v1.0/groups/{gid}/members/$ref"),
            &refbody(&users[20]),
        )
        .await;
    assert_eq!(again.status, 400);
    assert!(msg(&again.json()).contains("already exist"));
    assert_eq!(
        c.post_json(
            &format!("/v1.0/groups/{gid}/members/$ref"),
            &refbody("11111111-2222-4333-8444-555555555555")
        )
        .await
        .status,
        404
    );
    assert_eq!(
        c.delete(&format!("/v1.0/groups/{gid}/members/{}/$ref", users[20]))
            .await
            .status,
        204
    );
    assert_eq!(
        c.delete(&format!("/v1.0/groups/{gid}/members/{}/$ref", users[20]))
            .await
            .status,
        404
    );
    // Dynamic groups refuse manual members.
    let dynamic = c.post_json("/v1.0/groups", &json!({"displayName": "dyn", "mailEnabled": false, "mailNickname": "dyn", "securityEnabled": true, "groupTypes": ["DynamicMembership"], "membershipRule": "user.department -eq \"Sales\"", "membershipRuleProcessingState": "On"})).await;
    assert_eq!(dynamic.status, 201, "{}", dynamic.text());
    let did = dynamic.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        c.post_json(
            &format!("/v1.0/groups/{did}/members/$ref"),
            &refbody(&users[1])
        )
        .await
        .status,
        400
    );
    // isAssignableToRole only at creation.
    assert_eq!(
        c.patch_json(
            &format!("/v1.0/groups/{gid}"),
            &json!({"isAssignableToRole": true})
        )
        .await
        .status,
        400
    );
    // Manager.
    assert_eq!(
        c.send(
            "PUT",
            &format!("/v1.0/users/{uid}/manager/$ref"),
            &[("Content-Type", "application/json")],
            refbody(&users[2]).to_string().as_bytes()
        )
        .await
        .unwrap()
        .status,
        204
    );
    assert_eq!(
        c.get(&format!("/v1.0/users/{uid}/manager")).await.json()["id"],
        users[2].as_str()
    );
}

#[tokio::test]
async fn applications_service_principals_and_grants() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let r = c.post_json("/v1.0/applications", &json!({"displayName": "Restored app", "id": "11111111-1111-4111-8111-111111111111", "appId": "22222222-2222-4222-8222-222222222222"})).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let app = r.json();
    assert_ne!(
        app["id"], "11111111-1111-4111-8111-111111111111",
        "re-creating always gives a new id"
    );
    assert_ne!(
        app["appId"], "22222222-2222-4222-8222-222222222222",
        "and a new appId"
    );
    let (aid, app_id) = (
        app["id"].as_str().unwrap().to_string(),
        app["appId"].as_str().unwrap().to_string(),
    );
    assert_eq!(
        c.post_json("/v1.0/applications", &json!({"description": "no name"}))
            .await
            .status,
        400
    );
    // Secrets: returned once by addPassword, never read back, not patchable.
    let p = c
        .post_json(
            &format!("/v1.0/applications/{aid}/addPassword"),
            &json!({"passwordCredential": {"displayName": "restore"}}),
        )
        .await;
    assert_eq!(p.status, 200);
    let secret = p.json()["secretText"].as_str().unwrap().to_string();
    assert_eq!(p.json()["hint"], &secret[..3]);
    let got = c
        .get(&format!("/v1.0/applications(appId='{app_id}')"))
        .await
        .json();
    assert_eq!(got["id"], aid.as_str());
    assert!(got["passwordCredentials"][0]["secretText"].is_null());
    assert_eq!(got["passwordCredentials"][0]["hint"], &secret[..3]);
    assert_eq!(
        c.patch_json(
            &format!("/v1.0/applications/{aid}"),
            &json!({"passwordCredentials": []})
        )
        .await
        .status,
        400
    );
    // The new secret authenticates once the app has a service principal with permissions.
    let sp = c
        .post_json("/v1.0/servicePrincipals", &json!({"appId": app_id}))
        .await;
    assert_eq!(sp.status, 201, "{}", sp.text());
    let sp_id = sp.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        c.post_json("/v1.0/servicePrincipals", &json!({"appId": app_id}))
            .await
            .status,
        409
    );
    assert_eq!(
        c.post_json(
            "/v1.0/servicePrincipals",
            &json!({"appId": "33333333-3333-4333-8333-333333333333"})
        )
        .await
        .status,
        400
    );
    let graph = c
        .get("/v1.0/servicePrincipals(appId='00000003-0000-0000-c000-000000000000')")
        .await
        .json();
    let graph_id = graph["id"].as_str().unwrap().to_string();
    let role = graph["appRoles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["value"] == "User.Read.All")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let grant = c
        .post_json(
            &format!("/v1.0/servicePrincipals/{graph_id}/appRoleAssignedTo"),
            &json!({"principalId": sp_id, "resourceId": graph_id, "appRoleId": role}),
        )
        .await;
    assert_eq!(grant.status, 201, "{}", grant.text());
    assert_eq!(grant.json()["principalType"], "ServicePrincipal");
    assert_eq!(c.post_json(&format!("/v1.0/servicePrincipals/{graph_id}/appRoleAssignedTo"), &json!({"principalId": sp_id, "resourceId": graph_id, "appRoleId": "44444444-4444-4444-8444-444444444444"})).await.status, 400);
    let t = token(&sim, &app_id, &secret).await;
    let mut as_app = cairn_graph_sim::testkit::Client::new(&sim.base_url()).with_token(t);
    assert_eq!(as_app.get("/v1.0/users?$top=1").await.status, 200);
    assert_eq!(as_app.get("/v1.0/groups").await.status, 403);
    assert_eq!(
        c.get(&format!(
            "/v1.0/servicePrincipals/{sp_id}/appRoleAssignments"
        ))
        .await
        .json()["value"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Delegated grants.
    let g = |ct: &str| json!({"clientId": sp_id, "consentType": ct, "resourceId": graph_id, "scope": "User.Read"});
    assert_eq!(
        c.post_json("/v1.0/oauth2PermissionGrants", &g("Principal"))
            .await
            .status,
        400,
        "Principal needs principalId"
    );
    assert_eq!(
        c.post_json("/v1.0/oauth2PermissionGrants", &g("AllPrincipals"))
            .await
            .status,
        201
    );
    assert_eq!(
        c.post_json("/v1.0/oauth2PermissionGrants", &g("AllPrincipals"))
            .await
            .status,
        409
    );
    assert_eq!(
        c.get(&format!(
            "/v1.0/servicePrincipals/{sp_id}/oauth2PermissionGrants"
        ))
        .await
        .json()["value"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Federated identity credentials: ≤ 20, issuer+subject unique, name immutable.
    let fic = |n: usize| json!({"name": format!("fic{n}"), "issuer": "https://token.actions.githubusercontent.com", "subject": format!("repo:x/y:ref:refs/heads/b{n}"), "audiences": ["api://AzureADTokenExchange"]});
    for n in 0..20 {
        assert_eq!(
            c.post_json(
                &format!("/v1.0/applications/{aid}/federatedIdentityCredentials"),
                &fic(n)
            )
            .await
            .status,
            201
        );
    }
    assert_eq!(
        c.post_json(
            &format!("/v1.0/applications/{aid}/federatedIdentityCredentials"),
            &fic(20)
        )
        .await
        .status,
        400
    );
    let list = c
        .get(&format!(
            "/v1.0/applications/{aid}/federatedIdentityCredentials"
        ))
        .await
        .json();
    let fid = list["value"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        c.patch_json(
            &format!("/v1.0/applications/{aid}/federatedIdentityCredentials/{fid}"),
            &json!({"name": "renamed"})
        )
        .await
        .status,
        400
    );
    assert_eq!(
        c.delete(&format!(
            "/v1.0/applications/{aid}/federatedIdentityCredentials/{fid}"
        ))
        .await
        .status,
        204
    );
    let mut dup = fic(1);
    dup["name"] = json!("other");
    assert_eq!(
        c.post_json(
            &format!("/v1.0/applications/{aid}/federatedIdentityCredentials"),
            &dup
        )
        .await
        .status,
        409
    );
    // Extension properties.
    let e = c
        .post_json(
            &format!("/v1.0/applications/{aid}/extensionProperties"),
            &json!({"name": "costCenter", "dataType": "String", "targetObjects": ["User"]}),
        )
        .await;
    assert_eq!(e.status, 201);
    assert!(e.json()["name"].as_str().unwrap().starts_with("extension_"));
    // Upsert by uniqueName.
    assert_eq!(
        c.patch_json(
            "/v1.0/applications(uniqueName='cairn-upsert')",
            &json!({"displayName": "Upserted"})
        )
        .await
        .status,
        404
    );
    let up = c
        .send(
            "PATCH",
            "/v1.0/applications(uniqueName='cairn-upsert')",
            &[
                ("Content-Type", "application/json"),
                ("Prefer", "create-if-missing"),
            ],
            br#"{"displayName":"Upserted"}"#,
        )
        .await
        .unwrap();
    assert_eq!(up.status, 201, "{}", up.text());
    let up2 = c
        .send(
            "PATCH",
            "/v1.0/applications(uniqueName='cairn-upsert')",
            &[
                ("Content-Type", "application/json"),
                ("Prefer", "create-if-missing"),
            ],
            br#"{"displayName":"Upserted 2"}"#,
        )
        .await
        .unwrap();
    assert_eq!(up2.status, 204);
}

#[tokio::test]
async fn roles_policies_domains_and_organization() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let users: Vec<String> = c
        .get("/v1.0/users?$top=5&$filter=userType eq 'Member'&$select=id")
        .await
        .json()["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect();
    // Role assignments (users[3] becomes a user without a User Administrator assignment).
    let mut users = users;
    let free = sim.with_tenant(|t| {
        t.map(cairn_graph_sim::model::Kind::User)
            .values()
            .filter(|u| u.is_live() && u.str("userType") == Some("Member"))
            .find(|u| {
                !t.map(cairn_graph_sim::model::Kind::RoleAssignment)
                    .values()
                    .any(|a| a.str("principalId") == Some(&*u.id))
            })
            .unwrap()
            .id
            .to_string()
    });
    users[3] = free;
    let ra = |p: &str| json!({"roleDefinitionId": "fe930be7-5e62-47db-91af-98c3a49a38b1", "principalId": p, "directoryScopeId": "/"});
    let r = c
        .post_json(
            "/v1.0/roleManagement/directory/roleAssignments",
            &ra(&users[3]),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        c.post_json(
            "/v1.0/roleManagement/directory/roleAssignments",
            &ra(&users[3])
        )
        .await
        .status,
        409
    );
    assert_eq!(
        c.post_json(
            "/v1.0/roleManagement/directory/roleAssignments",
            &ra("11111111-2222-4333-8444-555555555555")
        )
        .await
        .status,
        404
    );
    let sg = c.post_json("/v1.0/groups", &json!({"displayName": "plain", "mailEnabled": false, "mailNickname": "plainsg", "securityEnabled": true})).await.json();
    assert_eq!(
        c.post_json(
            "/v1.0/roleManagement/directory/roleAssignments",
            &ra(sg["id"].as_str().unwrap())
        )
        .await
        .status,
        400,
        "only role-assignable groups"
    );
    let list = c.get(&format!("/v1.0/roleManagement/directory/roleAssignments?$filter=principalId eq '{}' and roleDefinitionId eq 'fe930be7-5e62-47db-91af-98c3a49a38b1'", users[3])).await.json();
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
    let expanded = c.get(&format!("/v1.0/roleManagement/directory/roleAssignments?$filter=principalId eq '{}' and roleDefinitionId eq 'fe930be7-5e62-47db-91af-98c3a49a38b1'&$expand=principal", users[3])).await.json();
    assert_eq!(expanded["value"][0]["principal"]["id"], users[3].as_str());
    // The role became active with the user as member; directoryRoles do not page.
    let roles = c.get("/v1.0/directoryRoles?$top=1").await.json();
    assert!(roles["@odata.nextLink"].is_null());
    let ua = roles["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["roleTemplateId"] == "fe930be7-5e62-47db-91af-98c3a49a38b1")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let members = c
        .get(&format!("/v1.0/directoryRoles/{ua}/members"))
        .await
        .json();
    assert!(members["value"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == users[3].as_str()));
    // Deleting the assignment takes the user out of the role; the legacy members/$ref API creates one.
    let ra_id = list["value"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        c.delete(&format!(
            "/v1.0/roleManagement/directory/roleAssignments/{ra_id}"
        ))
        .await
        .status,
        204
    );
    let members = c
        .get(&format!("/v1.0/directoryRoles/{ua}/members"))
        .await
        .json();
    assert!(!members["value"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == users[3].as_str()));
    assert_eq!(c.post_json(&format!("/v1.0/directoryRoles/{ua}/members/$ref"), &json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{}", users[3])})).await.status, 204);
    let again = c.get(&format!("/v1.0/roleManagement/directory/roleAssignments?$filter=principalId eq '{}' and roleDefinitionId eq 'fe930be7-5e62-47db-91af-98c3a49a38b1'", users[3])).await.json();
    assert_eq!(again["value"].as_array().unwrap().len(), 1);
    // Built-in role definitions are read-only; custom need displayName, isEnabled, rolePermissions.
    assert_eq!(
        c.patch_json(
            "/v1.0/roleManagement/directory/roleDefinitions/62e90394-69f5-4237-9190-012177145e10",
            &json!({"description": "x"})
        )
        .await
        .status,
        400
    );
    assert_eq!(
        c.post_json(
            "/v1.0/roleManagement/directory/roleDefinitions",
            &json!({"displayName": "x"})
        )
        .await
        .status,
        400
    );
    let custom = c.post_json("/v1.0/roleManagement/directory/roleDefinitions", &json!({"displayName": "Custom", "isEnabled": true, "rolePermissions": [{"allowedResourceActions": ["microsoft.directory/applications/basic/update"]}]})).await.json();
    assert_eq!(custom["id"], custom["templateId"]);

    // Conditional Access: rules, references, read-only timestamps.
    let loc = c.post_json("/v1.0/identity/conditionalAccess/namedLocations", &json!({"@odata.type": "#microsoft.graph.countryNamedLocation", "displayName": "Nowhere", "countriesAndRegions": ["AQ"], "includeUnknownCountriesAndRegions": false})).await;
    assert_eq!(loc.status, 201, "{}", loc.text());
    let loc_id = loc.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        c.post_json(
            "/v1.0/identity/conditionalAccess/namedLocations",
            &json!({"displayName": "untyped"})
        )
        .await
        .status,
        400
    );
    let policy = |user: &str| {
        json!({"displayName": "Block Antarctica", "state": "enabled",
        "conditions": {"applications": {"includeApplications": ["All"]}, "users": {"includeUsers": [user]}, "locations": {"includeLocations": [loc_id]}, "clientAppTypes": ["all"]},
        "grantControls": {"operator": "OR", "builtInControls": ["block"]}})
    };
    let bad = c
        .post_json(
            "/v1.0/identity/conditionalAccess/policies",
            &policy("11111111-2222-4333-8444-555555555555"),
        )
        .await;
    assert_eq!(bad.status, 400, "unknown user ids are refused");
    let mut no_controls = policy(&users[1]);
    no_controls.as_object_mut().unwrap().remove("grantControls");
    assert_eq!(
        c.post_json("/v1.0/identity/conditionalAccess/policies", &no_controls)
            .await
            .status,
        400
    );
    let ok = c
        .post_json(
            "/v1.0/identity/conditionalAccess/policies",
            &policy(&users[1]),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.text());
    let pid = ok.json()["id"].as_str().unwrap().to_string();
    assert!(
        ok.json()["conditions"]["users"]["excludeGroups"].is_array(),
        "Graph returns the full conditions shape"
    );
    assert_eq!(
        c.patch_json(
            &format!("/v1.0/identity/conditionalAccess/policies/{pid}"),
            &json!({"state": "disabled"})
        )
        .await
        .status,
        204
    );
    let p = c
        .get(&format!("/v1.0/identity/conditionalAccess/policies/{pid}"))
        .await
        .json();
    assert_eq!(p["state"], "disabled");
    assert!(p["modifiedDateTime"].is_string());
    assert_eq!(
        c.delete(&format!(
            "/v1.0/identity/conditionalAccess/namedLocations/{loc_id}"
        ))
        .await
        .status,
        400,
        "a location in use cannot be deleted"
    );

    // Singletons.
    let amp = c
        .get("/v1.0/policies/authenticationMethodsPolicy")
        .await
        .json();
    assert!(
        amp["authenticationMethodConfigurations"]
            .as_array()
            .unwrap()
            .len()
            >= 5
    );
    assert_eq!(c.patch_json("/v1.0/policies/authenticationMethodsPolicy/authenticationMethodConfigurations/Sms", &json!({"@odata.type": "#microsoft.graph.smsAuthenticationMethodConfiguration", "state": "disabled"})).await.status, 204);
    assert_eq!(
        c.get("/v1.0/policies/authenticationMethodsPolicy/authenticationMethodConfigurations/Sms")
            .await
            .json()["state"],
        "disabled"
    );
    assert_eq!(
        c.patch_json(
            "/v1.0/policies/authorizationPolicy",
            &json!({"allowInvitesFrom": "adminsAndGuestInviters"})
        )
        .await
        .status,
        204
    );
    assert_eq!(
        c.get("/v1.0/policies/authorizationPolicy").await.json()["allowInvitesFrom"],
        "adminsAndGuestInviters"
    );
    assert_eq!(
        c.get("/v1.0/policies/identitySecurityDefaultsEnforcementPolicy")
            .await
            .json()["isEnabled"],
        false
    );
    let org = c.get("/v1.0/organization").await.json();
    let oid = org["value"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(oid, sim.tenant_id());
    assert_eq!(
        c.patch_json(
            &format!("/v1.0/organization/{oid}"),
            &json!({"technicalNotificationMails": ["it@contoso.com"]})
        )
        .await
        .status,
        204
    );
    assert_eq!(
        c.patch_json(
            &format!("/v1.0/organization/{oid}"),
            &json!({"displayName": "Other"})
        )
        .await
        .status,
        400
    );
    let skus = c.get("/v1.0/subscribedSkus").await;
    assert_eq!(
        skus.header("x-ms-resource-unit"),
        Some("3"),
        "subscribedSkus costs 3 RU"
    );
    assert!(skus.json()["value"][0]["consumedUnits"].as_u64().unwrap() > 0);
    // Domains: created unverified; verification cannot succeed here.
    let d = c
        .post_json("/v1.0/domains", &json!({"id": "restored.example"}))
        .await;
    assert_eq!(d.status, 201);
    assert_eq!(d.json()["isVerified"], false);
    assert_eq!(
        c.post_json("/v1.0/domains/restored.example/verify", &json!({}))
            .await
            .status,
        400
    );
    assert_eq!(
        c.get("/v1.0/domains/restored.example/verificationDnsRecords")
            .await
            .json()["value"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Administrative units with members and scoped role members.
    let au = c
        .post_json(
            "/v1.0/directory/administrativeUnits",
            &json!({"displayName": "AU", "description": "d", "visibility": "Public"}),
        )
        .await
        .json();
    let au_id = au["id"].as_str().unwrap().to_string();
    assert_eq!(
        c.post_json(
            &format!("/v1.0/directory/administrativeUnits/{au_id}/members/$ref"),
            &json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/users/{}", users[0])})
        )
        .await
        .status,
        204
    );
    let srm = c
        .post_json(
            &format!("/v1.0/directory/administrativeUnits/{au_id}/scopedRoleMembers"),
            &json!({"roleId": ua, "roleMemberInfo": {"id": users[1]}}),
        )
        .await;
    assert_eq!(srm.status, 201, "{}", srm.text());
    assert_eq!(
        c.get(&format!(
            "/v1.0/directory/administrativeUnits/{au_id}/scopedRoleMembers"
        ))
        .await
        .json()["value"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
