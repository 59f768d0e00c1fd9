//! The write paths a restore takes (GRAPH.md §6–§7), as the entra restorer uses them: recycle
//! bin listing with `$select` and restore, `$filter` lookups of role assignments and grants,
//! grant scope PATCH, manager `$ref`, app role assignment and federated credential creation,
//! the Conditional Access recycle bin (beta), and what a permanent delete takes along.

use crate::common;

use cairn_graph_sim::Profile;
use common::*;
use serde_json::json;

#[tokio::test]
async fn restore_write_paths() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let users = ids(&c.get("/v1.0/users?$select=id&$top=5").await.json());

    // Recycle bin: the cast listing honours $select; restore keeps the id.
    let u = &users[2];
    assert_eq!(c.delete(&format!("/v1.0/users/{u}")).await.status, 204);
    let bin = c
        .get("/v1.0/directory/deletedItems/microsoft.graph.user?$select=id,jobTitle,userPrincipalName")
        .await
        .json();
    let entry = bin["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == json!(u))
        .expect("the deleted user is in the bin")
        .clone();
    assert!(entry.get("userPrincipalName").is_some());
    let r = c
        .post_json(
            &format!("/v1.0/directory/deletedItems/{u}/restore"),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["id"], json!(u));
    // A second restore: the object is not in the bin any more.
    let r = c
        .post_json(
            &format!("/v1.0/directory/deletedItems/{u}/restore"),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "Request_ResourceNotFound");

    // Manager: PUT $ref, read back, 404 when none.
    let (a, b) = (&users[1], &users[3]);
    let r = c
        .send(
            "PUT",
            &format!("/v1.0/users/{a}/manager/$ref"),
            &[("Content-Type", "application/json")],
            json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{b}")})
                .to_string()
                .as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    let m = c.get(&format!("/v1.0/users/{a}/manager?$select=id")).await;
    assert_eq!(m.json()["id"], json!(b));

    // Role assignments: $filter on principalId; a duplicate is refused.
    let defs = ids(&c
        .get("/v1.0/roleManagement/directory/roleDefinitions?$select=id")
        .await
        .json());
    let body = json!({"roleDefinitionId": defs[0], "principalId": b, "directoryScopeId": "/"});
    let r = c
        .post_json("/v1.0/roleManagement/directory/roleAssignments", &body)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let mine = c
        .get(&format!(
            "/v1.0/roleManagement/directory/roleAssignments?$filter=principalId%20eq%20'{b}'"
        ))
        .await
        .json();
    assert!(mine["value"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["principalId"] == json!(b)));
    assert!(mine["value"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["roleDefinitionId"] == json!(defs[0])));
    let r = c
        .post_json("/v1.0/roleManagement/directory/roleAssignments", &body)
        .await;
    assert_eq!(r.status, 409);

    // A unit-scoped assignment goes when the unit is deleted for good.
    let au = c
        .post_json(
            "/v1.0/directory/administrativeUnits",
            &json!({"displayName": "Restore test unit", "description": "x", "visibility": "Public"}),
        )
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let scope = format!("/administrativeUnits/{au}");
    let r = c
        .post_json(
            "/v1.0/roleManagement/directory/roleAssignments",
            &json!({"roleDefinitionId": defs[0], "principalId": b, "directoryScopeId": scope}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let scoped_id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        c.delete(&format!("/v1.0/directory/administrativeUnits/{au}"))
            .await
            .status,
        204
    );
    assert_eq!(
        c.delete(&format!("/v1.0/directory/deletedItems/{au}"))
            .await
            .status,
        204
    );
    let all = c
        .get("/v1.0/roleManagement/directory/roleAssignments?$top=999")
        .await
        .json();
    assert!(
        !ids(&all).contains(&scoped_id),
        "the unit's assignment is gone"
    );

    // Delegated grants: $filter on clientId, PATCH of the scope.
    let grants = c.get("/v1.0/oauth2PermissionGrants").await.json();
    let g = grants["value"][0].clone();
    let client_id = g["clientId"].as_str().unwrap();
    let by_client = c
        .get(&format!(
            "/v1.0/oauth2PermissionGrants?$filter=clientId%20eq%20'{client_id}'"
        ))
        .await
        .json();
    assert!(ids(&by_client).contains(&g["id"].as_str().unwrap().to_string()));
    let gid = g["id"].as_str().unwrap();
    let r = c
        .patch_json(
            &format!("/v1.0/oauth2PermissionGrants/{gid}"),
            &json!({"scope": "User.Read"}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let again = c
        .get(&format!("/v1.0/oauth2PermissionGrants/{gid}"))
        .await
        .json();
    assert_eq!(again["scope"], json!("User.Read"));

    // App role assignment and federated credential creation.
    let apps = c.get("/v1.0/applications?$select=id,appId").await.json();
    let app = apps["value"][0]["id"].as_str().unwrap().to_string();
    let fic = json!({"name": "restore-test", "issuer": "https://token.actions.githubusercontent.com",
        "subject": "repo:contoso/x:ref:refs/heads/main", "audiences": ["api://AzureADTokenExchange"]});
    let url = format!("/v1.0/applications/{app}/federatedIdentityCredentials");
    assert_eq!(c.post_json(&url, &fic).await.status, 201);
    let dup = c.post_json(&url, &fic).await;
    assert_eq!(dup.status, 409, "{}", dup.text());
    assert_eq!(
        dup.json()["error"]["code"],
        "Request_MultipleObjectsWithSameKeyValue"
    );

    // Conditional Access recycle bin (beta): delete, list, restore keeps the id.
    let pols = c
        .get("/v1.0/identity/conditionalAccess/policies")
        .await
        .json();
    let pid = pols["value"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        c.delete(&format!("/v1.0/identity/conditionalAccess/policies/{pid}"))
            .await
            .status,
        204
    );
    let bin = c
        .get("/beta/identity/conditionalAccess/deletedItems/policies")
        .await
        .json();
    assert!(ids(&bin).contains(&pid));
    let r = c
        .post_json(
            &format!("/beta/identity/conditionalAccess/deletedItems/policies/{pid}/restore"),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        c.get(&format!("/v1.0/identity/conditionalAccess/policies/{pid}"))
            .await
            .status,
        200
    );
}

/// The lookups a restore rerun makes after a create whose answer was lost: an application by
/// the tag its create wrote (`tags/any(t:t eq '…')`, filterable on applications and service
/// principals without advanced query parameters).
#[tokio::test]
async fn restore_marker_lookups() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let tag = "cairn-restore:5a1b2c3d-0000-4000-8000-00000000000a";
    let r = c
        .post_json(
            "/v1.0/applications",
            &json!({"displayName": "Marked", "tags": ["keep", tag]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let app = r.json()["id"].as_str().unwrap().to_string();
    c.post_json(
        "/v1.0/applications",
        &json!({"displayName": "Marked", "tags": ["keep"]}),
    )
    .await;
    let found = c
        .get(&format!(
            "/v1.0/applications?$filter=tags/any(t:t%20eq%20'{}')&$select=id",
            tag.replace(':', "%3A")
        ))
        .await;
    assert_eq!(found.status, 200, "{}", found.text());
    assert_eq!(ids(&found.json()), vec![app]);
    let none = c
        .get("/v1.0/applications?$filter=tags/any(t:t%20eq%20'cairn-restore:other')&$select=id")
        .await;
    assert_eq!(none.status, 200, "{}", none.text());
    assert!(ids(&none.json()).is_empty());
    let sps = c
        .get("/v1.0/servicePrincipals?$filter=tags/any(t:t%20eq%20'WindowsAzureActiveDirectoryIntegratedApp')&$select=id,tags")
        .await;
    assert_eq!(sps.status, 200, "{}", sps.text());
    let sps = sps.json()["value"].as_array().unwrap().clone();
    assert!(!sps.is_empty());
    for sp in &sps {
        assert!(sp["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("WindowsAzureActiveDirectoryIntegratedApp")));
    }
}
