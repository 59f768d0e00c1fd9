//! Sharing semantics the links restorer relies on: one direct permission per grantee (inviting
//! an existing grantee again returns its permission), `createLink` answering 200 with the
//! existing link of a type and scope, `DELETE permissions/{id}` 204 then 404, and 5 SharePoint
//! resource units per permission operation.

use crate::common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn invite_is_one_permission_per_grantee_and_links_are_reused() {
    let sim = start(cairn_graph_sim::Profile::Small).await;
    let mut c = client(&sim).await;
    let (drive, item) = sim.with_tenant(|t| {
        let d = t.drives.drives.values().next().unwrap();
        let it = d.items.values().find(|i| !i.folder && !i.deleted).unwrap();
        (d.id.clone(), it.id.clone())
    });
    let user = first_id(&mut c, "/v1.0/users?$top=1&$select=id").await;
    let base = format!("/v1.0/drives/{drive}/items/{item}");
    let count = |sim: &cairn_graph_sim::SimHandle| {
        sim.with_tenant(|t| t.drives.drives[&drive].items[&item].perms.len())
    };
    let n0 = count(&sim);

    sim.reset_stats();
    let invite = |role: &str| json!({"recipients": [{"objectId": user}], "roles": [role], "requireSignIn": true, "sendInvitation": false});
    let first = c
        .post_json(&format!("{base}/invite"), &invite("read"))
        .await;
    assert_eq!(first.status, 200);
    let first = first.json()["value"][0].clone();
    assert_eq!(first["grantedToV2"]["user"]["id"], user.as_str());
    assert_eq!(count(&sim), n0 + 1);
    // Again: the same permission, not a second one.
    let again = c
        .post_json(&format!("{base}/invite"), &invite("read"))
        .await
        .json();
    assert_eq!(again["value"][0]["id"], first["id"]);
    assert_eq!(count(&sim), n0 + 1);
    // Another role updates it.
    let write = c
        .post_json(&format!("{base}/invite"), &invite("write"))
        .await
        .json();
    assert_eq!(write["value"][0]["id"], first["id"]);
    assert_eq!(write["value"][0]["roles"], json!(["write"]));
    assert_eq!(count(&sim), n0 + 1);

    // createLink: 201 new, then 200 with the same link.
    let body = json!({"type": "edit", "scope": "organization"});
    let made = c.post_json(&format!("{base}/createLink"), &body).await;
    assert_eq!(made.status, 201);
    let made = made.json();
    let same = c.post_json(&format!("{base}/createLink"), &body).await;
    assert_eq!(same.status, 200);
    assert_eq!(same.json()["link"]["webUrl"], made["link"]["webUrl"]);

    // DELETE: 204, then 404.
    let pid = made["id"].as_str().unwrap();
    assert_eq!(
        c.delete(&format!("{base}/permissions/{pid}")).await.status,
        204
    );
    assert_eq!(
        c.delete(&format!("{base}/permissions/{pid}")).await.status,
        404
    );
    // Seven permission operations (3 invites, 2 createLink, 2 deletes) at 5 RU each.
    assert_eq!(sim.stats().sharepoint_ru_spent, 7 * 5);
}
