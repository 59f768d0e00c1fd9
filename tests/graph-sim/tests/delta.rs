//! Delta queries (§3) and the recycle bin (§7).

use crate::common;

use cairn_graph_sim::model::Kind;
use cairn_graph_sim::{FaultKind, FaultRule, Profile, SimConfig};
use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

fn by_id(items: &[Value]) -> BTreeMap<String, Value> {
    items
        .iter()
        .map(|i| (i["id"].as_str().unwrap().to_string(), i.clone()))
        .collect()
}

#[tokio::test]
async fn users_delta_round_trip_with_removals() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let live = sim.with_tenant(|t| t.count_live(Kind::User));
    let (items, pages, last) = c
        .get_all(
            "/v1.0/users/delta?$select=displayName,jobTitle",
            &[("Prefer", "odata.maxpagesize=7")],
        )
        .await;
    assert!(pages > 1);
    assert_eq!(items.len(), live, "the initial round lists every user once");
    let link = last["@odata.deltaLink"].as_str().unwrap().to_string();
    // Nothing changed: an empty round with a new deltaLink.
    let r = c.get(&link).await.json();
    assert_eq!(r["value"].as_array().unwrap().len(), 0);
    let link = r["@odata.deltaLink"].as_str().unwrap().to_string();

    let ids: Vec<String> = items
        .iter()
        .filter(|u| !u["displayName"].as_str().unwrap().starts_with("MOD"))
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect();
    let (upd, soft, hard) = (&ids[0], &ids[1], &ids[2]);
    assert_eq!(
        c.patch_json(
            &format!("/v1.0/users/{upd}"),
            &json!({"jobTitle": "Chief Tester", "city": "Oslo"})
        )
        .await
        .status,
        204
    );
    assert_eq!(c.delete(&format!("/v1.0/users/{soft}")).await.status, 204);
    assert_eq!(c.delete(&format!("/v1.0/users/{hard}")).await.status, 204);
    assert_eq!(
        c.delete(&format!("/v1.0/directory/deletedItems/{hard}"))
            .await
            .status,
        204
    );
    let created = c.post_json("/v1.0/users", &json!({"accountEnabled": true, "displayName": "New Hire", "mailNickname": "newhire", "userPrincipalName": format!("newhire@{}", sim.domain()), "passwordProfile": {"password": "Passw0rd!Passw0rd"}})).await.json();
    let new_id = created["id"].as_str().unwrap().to_string();

    let (round, _, last) = c.get_all(&link, &[]).await;
    let m = by_id(&round);
    assert_eq!(m.len(), 4, "exactly the changed objects: {round:?}");
    assert_eq!(m[upd]["jobTitle"], "Chief Tester");
    assert!(m[upd].get("city").is_none(), "the token carries $select");
    assert_eq!(m[soft]["@removed"]["reason"], "changed");
    assert_eq!(m[hard]["@removed"]["reason"], "deleted");
    assert_eq!(m[&new_id]["displayName"], "New Hire");
    assert!(m[&new_id].get("@removed").is_none());
    let link = last["@odata.deltaLink"].as_str().unwrap().to_string();

    // Restoring brings the user back without annotation; purging later reports "deleted".
    assert_eq!(
        c.post_json(
            &format!("/v1.0/directory/deletedItems/{soft}/restore"),
            &json!({})
        )
        .await
        .status,
        200
    );
    let r = c.get(&link).await.json();
    let m = by_id(r["value"].as_array().unwrap());
    assert!(m[soft].get("@removed").is_none() && m[soft]["displayName"].is_string());
    let link = r["@odata.deltaLink"].as_str().unwrap().to_string();

    // Prefer: return=minimal returns only the changed properties.
    assert_eq!(
        c.patch_json(&format!("/v1.0/users/{upd}"), &json!({"jobTitle": "CTO"}))
            .await
            .status,
        204
    );
    let r = c
        .get_with(&link, &[("Prefer", "return=minimal")])
        .await
        .json();
    let entry = &r["value"][0];
    assert_eq!(entry["jobTitle"], "CTO");
    assert!(entry.get("displayName").is_none(), "{entry}");
}

#[tokio::test]
async fn latest_expiry_filter_and_410() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let r = c.get("/v1.0/users/delta?$deltatoken=latest").await.json();
    assert_eq!(r["value"].as_array().unwrap().len(), 0);
    let link = r["@odata.deltaLink"].as_str().unwrap().to_string();
    let some = c.get("/v1.0/users?$top=2&$select=id").await.json();
    let (a, b) = (
        some["value"][0]["id"].as_str().unwrap().to_string(),
        some["value"][1]["id"].as_str().unwrap().to_string(),
    );
    assert_eq!(
        c.patch_json(&format!("/v1.0/users/{a}"), &json!({"department": "Sync"}))
            .await
            .status,
        204
    );
    let r = c.get(&link).await.json();
    assert_eq!(
        r["value"].as_array().unwrap().len(),
        1,
        "sync from now: only later changes"
    );
    let link = r["@odata.deltaLink"].as_str().unwrap().to_string();

    // $filter=id eq ... or ... (≤ 50 ids).
    let r = c
        .get(&format!(
            "/v1.0/users/delta?$filter=id eq '{a}' or id eq '{b}'"
        ))
        .await
        .json();
    assert_eq!(r["value"].as_array().unwrap().len(), 2);
    assert_eq!(
        c.get("/v1.0/users/delta?$filter=startswith(displayName,'a')")
            .await
            .status,
        400
    );

    // Tokens expire after 7 days of simulated time.
    sim.advance_clock(Duration::from_secs(6 * 86_400));
    let mut c = client(&sim).await;
    let r = c.get(&link).await;
    assert_eq!(r.status, 200);
    let link = r.json()["@odata.deltaLink"].as_str().unwrap().to_string();
    sim.advance_clock(Duration::from_secs(7 * 86_400 + 60));
    let mut c = client(&sim).await;
    let r = c.get(&link).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "syncStateNotFound");

    // 410 Gone on demand, with a Location that restarts the sync.
    sim.add_fault(FaultRule::new("/v1.0/users/delta*", FaultKind::Resync).times(1));
    let r = c.get("/v1.0/users/delta").await;
    assert_eq!(r.status, 410);
    let loc = r.header("location").unwrap();
    assert!(loc.ends_with("/v1.0/users/delta?$deltatoken="), "{loc}");
    assert_eq!(c.get("/v1.0/users/delta").await.status, 200);
}

#[tokio::test]
async fn groups_members_delta_and_large_groups_split_across_pages() {
    let sim = start(Profile::Medium).await;
    let mut c = client(&sim).await;
    // A group of 2,500 members (more than one members@delta slice).
    let users: Vec<String> = sim.with_tenant(|t| {
        t.map(Kind::User)
            .values()
            .filter(|u| u.is_live())
            .take(2500)
            .map(|u| u.id.to_string())
            .collect()
    });
    let g = c.post_json("/v1.0/groups", &json!({"displayName": "Huge", "mailEnabled": false, "mailNickname": "huge", "securityEnabled": true})).await.json();
    let gid = g["id"].as_str().unwrap().to_string();
    sim.with_tenant(|t| {
        for u in &users {
            let u = t.get(Kind::User, u).unwrap().id.clone();
            t.add_link(Kind::Group, &gid, "members", &u);
        }
    });
    let (items, pages, last) = c
        .get_all(
            &format!("/v1.0/groups/delta?$filter=id eq '{gid}'"),
            &[("Prefer", "odata.maxpagesize=2")],
        )
        .await;
    assert!(pages >= 2, "the group's members span pages");
    assert!(
        items.len() >= 3,
        "the group repeats with a different slice each time"
    );
    let mut seen = BTreeSet::new();
    for it in &items {
        assert_eq!(it["id"], gid.as_str());
        for m in it["members@delta"].as_array().unwrap() {
            assert_eq!(m["@odata.type"], "#microsoft.graph.user");
            assert!(
                seen.insert(m["id"].as_str().unwrap().to_string()),
                "no member twice"
            );
        }
    }
    assert_eq!(seen.len(), 2500);
    let link = last["@odata.deltaLink"].as_str().unwrap().to_string();
    // Remove one member, add one, delete (soft) one member user: members@delta reports each.
    assert_eq!(
        c.delete(&format!("/v1.0/groups/{gid}/members/{}/$ref", users[0]))
            .await
            .status,
        204
    );
    let outsider = sim.with_tenant(|t| {
        t.map(Kind::User)
            .values()
            .filter(|u| u.is_live())
            .nth(3000)
            .unwrap()
            .id
            .to_string()
    });
    assert_eq!(c.post_json(&format!("/v1.0/groups/{gid}/members/$ref"), &json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{outsider}")})).await.status, 204);
    assert_eq!(
        c.delete(&format!("/v1.0/users/{}", users[1])).await.status,
        204
    );
    let r = c.get(&link).await.json();
    let entry = r["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == gid.as_str())
        .unwrap()
        .clone();
    let md: BTreeMap<String, Value> = entry["members@delta"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap().to_string(), m.clone()))
        .collect();
    assert_eq!(md.len(), 3, "{entry}");
    assert_eq!(md[&users[0]]["@removed"]["reason"], "deleted");
    assert_eq!(md[&users[1]]["@removed"]["reason"], "deleted");
    assert!(md[&outsider].get("@removed").is_none());
}

#[tokio::test]
async fn other_delta_collections() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    for (coll, change) in [
        ("applications", "app"),
        ("servicePrincipals", "sp"),
        ("directory/administrativeUnits", "au"),
        ("oauth2PermissionGrants", "grant"),
        ("directoryRoles", "role"),
    ] {
        let delta_path = if coll.starts_with("directory/") {
            "/v1.0/administrativeUnits/delta".to_string()
        } else {
            format!("/v1.0/{coll}/delta")
        };
        let (items, _, last) = c.get_all(&delta_path, &[]).await;
        assert!(!items.is_empty(), "{coll}");
        let link = last["@odata.deltaLink"].as_str().unwrap().to_string();
        let id = items[0]["id"].as_str().unwrap().to_string();
        let status = match change {
            "app" | "sp" | "au" => {
                c.patch_json(
                    &format!("/v1.0/{coll}/{id}"),
                    &json!({"description": "changed"}),
                )
                .await
                .status
            }
            "grant" => {
                c.patch_json(
                    &format!("/v1.0/oauth2PermissionGrants/{id}"),
                    &json!({"scope": "User.Read"}),
                )
                .await
                .status
            }
            _ => {
                let u = c.get("/v1.0/users?$top=30&$select=id").await.json()["value"][20]["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let tpl = items[0]["roleTemplateId"].as_str().unwrap().to_string();
                c.post_json(
                    "/v1.0/roleManagement/directory/roleAssignments",
                    &json!({"roleDefinitionId": tpl, "principalId": u, "directoryScopeId": "/"}),
                )
                .await
                .status
            }
        };
        assert!(status == 204 || status == 201, "{coll}: {status}");
        let r = c.get(&link).await.json();
        assert!(
            r["value"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["id"] == id.as_str()),
            "{coll}: {r}"
        );
    }
    assert_eq!(
        c.get("/v1.0/identity/conditionalAccess/policies/delta")
            .await
            .status,
        400,
        "no delta for CA policies"
    );
}

#[tokio::test]
async fn recycle_bin_restore_purge_and_hard_deletes() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let users = c
        .get("/v1.0/users?$top=10&$filter=userType eq 'Member'&$select=id,userPrincipalName")
        .await
        .json();
    let u = users["value"][3]["id"].as_str().unwrap().to_string();
    let groups_before = c.get(&format!("/v1.0/users/{u}/memberOf")).await.json()["value"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(c.delete(&format!("/v1.0/users/{u}")).await.status, 204);
    assert_eq!(c.get(&format!("/v1.0/users/{u}")).await.status, 404);
    assert_eq!(
        c.get("/v1.0/directory/deletedItems").await.status,
        400,
        "the type cast is required"
    );
    let bin = c
        .get("/v1.0/directory/deletedItems/microsoft.graph.user")
        .await
        .json();
    let entry = bin["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == u.as_str())
        .unwrap()
        .clone();
    assert!(entry["deletedDateTime"].is_string());
    let r = c
        .post_json(
            &format!("/v1.0/directory/deletedItems/{u}/restore"),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["id"], u.as_str(), "restore keeps the id");
    assert_eq!(c.get(&format!("/v1.0/users/{u}")).await.status, 200);
    assert_eq!(
        c.get(&format!("/v1.0/users/{u}/memberOf")).await.json()["value"]
            .as_array()
            .unwrap()
            .len(),
        groups_before,
        "memberships come back"
    );

    // 30-day purge on the simulated clock.
    assert_eq!(c.delete(&format!("/v1.0/users/{u}")).await.status, 204);
    sim.advance_clock(Duration::from_secs(29 * 86_400));
    let mut c = client(&sim).await;
    assert_eq!(
        c.get(&format!("/v1.0/directory/deletedItems/{u}"))
            .await
            .status,
        200
    );
    sim.advance_clock(Duration::from_secs(2 * 86_400));
    let mut c = client(&sim).await;
    assert_eq!(
        c.get(&format!("/v1.0/directory/deletedItems/{u}"))
            .await
            .status,
        404
    );
    assert!(!c
        .get("/v1.0/directory/deletedItems/microsoft.graph.user")
        .await
        .json()["value"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["id"] == u.as_str()));

    // Security groups are hard-deleted (older v1.0 docs); Microsoft 365 groups are soft-deleted.
    let sg = c.post_json("/v1.0/groups", &json!({"displayName": "sg", "mailEnabled": false, "mailNickname": "sgdel", "securityEnabled": true})).await.json()["id"].as_str().unwrap().to_string();
    let m365 = c.post_json("/v1.0/groups", &json!({"displayName": "m", "mailEnabled": true, "mailNickname": "mdel", "securityEnabled": false, "groupTypes": ["Unified"]})).await.json()["id"].as_str().unwrap().to_string();
    assert_eq!(c.delete(&format!("/v1.0/groups/{sg}")).await.status, 204);
    assert_eq!(c.delete(&format!("/v1.0/groups/{m365}")).await.status, 204);
    let bin: Vec<String> = c
        .get("/v1.0/directory/deletedItems/microsoft.graph.group")
        .await
        .json()["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap().to_string())
        .collect();
    assert!(bin.contains(&m365) && !bin.contains(&sg));

    // Deleting an app deletes its service principal; restoring the app does not restore it.
    let app = c
        .get("/v1.0/applications?$filter=displayName eq 'Cairn Backup'")
        .await
        .json();
    assert_eq!(app["value"].as_array().unwrap().len(), 1);
    let other = c.get("/v1.0/applications?$top=3").await.json()["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["displayName"] != "Cairn Backup")
        .unwrap()
        .clone();
    let (oid, app_id) = (
        other["id"].as_str().unwrap().to_string(),
        other["appId"].as_str().unwrap().to_string(),
    );
    let had_sp = c
        .get(&format!("/v1.0/servicePrincipals(appId='{app_id}')"))
        .await
        .status
        == 200;
    assert_eq!(
        c.delete(&format!("/v1.0/applications/{oid}")).await.status,
        204
    );
    assert_eq!(
        c.get(&format!("/v1.0/servicePrincipals(appId='{app_id}')"))
            .await
            .status,
        404
    );
    assert_eq!(
        c.post_json(
            &format!("/v1.0/directory/deletedItems/{oid}/restore"),
            &json!({})
        )
        .await
        .status,
        200
    );
    assert_eq!(
        c.get(&format!("/v1.0/applications(appId='{app_id}')"))
            .await
            .status,
        200
    );
    if had_sp {
        assert_eq!(
            c.get(&format!("/v1.0/servicePrincipals(appId='{app_id}')"))
                .await
                .status,
            404
        );
        let bin = c
            .get("/v1.0/directory/deletedItems/microsoft.graph.servicePrincipal")
            .await
            .json();
        assert!(bin["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["appId"] == app_id.as_str()));
    }
}

#[tokio::test]
async fn conditional_access_deleted_items_are_beta_only() {
    let mut cfg = SimConfig::new(Profile::Small, 9);
    cfg.security_groups_hard_delete = false;
    let sim = start_with(cfg).await;
    let mut c = client(&sim).await;
    let p = first_id(&mut c, "/v1.0/identity/conditionalAccess/policies?$top=1").await;
    assert_eq!(
        c.delete(&format!("/v1.0/identity/conditionalAccess/policies/{p}"))
            .await
            .status,
        204
    );
    assert_eq!(
        c.get(&format!("/v1.0/identity/conditionalAccess/policies/{p}"))
            .await
            .status,
        404
    );
    assert_eq!(
        c.get("/v1.0/identity/conditionalAccess/deletedItems/policies")
            .await
            .status,
        400
    );
    let bin = c
        .get("/beta/identity/conditionalAccess/deletedItems/policies")
        .await
        .json();
    assert!(bin["value"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["id"] == p.as_str()));
    assert_eq!(
        c.post_json(
            &format!("/beta/identity/conditionalAccess/deletedItems/policies/{p}/restore"),
            &json!({})
        )
        .await
        .status,
        200
    );
    assert_eq!(
        c.get(&format!("/v1.0/identity/conditionalAccess/policies/{p}"))
            .await
            .status,
        200
    );
    // Named locations: delete (when unused), list, purge.
    let loc = c.post_json("/v1.0/identity/conditionalAccess/namedLocations", &json!({"@odata.type": "#microsoft.graph.ipNamedLocation", "displayName": "tmp", "ipRanges": [{"@odata.type": "#microsoft.graph.iPv4CidrRange", "cidrAddress": "198.51.100.0/24"}]})).await.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        c.delete(&format!(
            "/v1.0/identity/conditionalAccess/namedLocations/{loc}"
        ))
        .await
        .status,
        204
    );
    assert_eq!(
        c.get(&format!(
            "/beta/identity/conditionalAccess/deletedItems/namedLocations/{loc}"
        ))
        .await
        .status,
        200
    );
    assert_eq!(
        c.delete(&format!(
            "/beta/identity/conditionalAccess/deletedItems/namedLocations/{loc}"
        ))
        .await
        .status,
        204
    );
    assert_eq!(
        c.get(&format!(
            "/beta/identity/conditionalAccess/deletedItems/namedLocations/{loc}"
        ))
        .await
        .status,
        404
    );
    // With security_groups_hard_delete = false, security groups go to the recycle bin.
    let sg = c.post_json("/v1.0/groups", &json!({"displayName": "sg", "mailEnabled": false, "mailNickname": "sgsoft", "securityEnabled": true})).await.json()["id"].as_str().unwrap().to_string();
    assert_eq!(c.delete(&format!("/v1.0/groups/{sg}")).await.status, 204);
    assert_eq!(
        c.get(&format!("/v1.0/directory/deletedItems/{sg}"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn users_delta_tracks_manager_when_selected() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let (items, _, last) = c
        .get_all("/v1.0/users/delta?$select=displayName,manager", &[])
        .await;
    let with_manager = items
        .iter()
        .filter(|u| u.get("manager@delta").is_some())
        .count();
    assert!(
        with_manager * 10 >= items.len() * 8,
        "the generated org chart gives most users a manager ({with_manager}/{})",
        items.len()
    );
    let link = last["@odata.deltaLink"].as_str().unwrap().to_string();
    let a = items
        .iter()
        .find(|u| u.get("manager@delta").is_some())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let old = items.iter().find(|u| u["id"] == a.as_str()).unwrap()["manager@delta"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = items
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .find(|u| *u != a && *u != old)
        .unwrap();
    assert_eq!(
        c.get(&format!("/v1.0/users/{a}/manager")).await.json()["id"],
        old.as_str()
    );
    let body =
        json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/users/{b}")}).to_string();
    assert_eq!(
        c.send(
            "PUT",
            &format!("/v1.0/users/{a}/manager/$ref"),
            &[("Content-Type", "application/json")],
            body.as_bytes()
        )
        .await
        .unwrap()
        .status,
        204
    );
    let r = c.get(&link).await.json();
    let entry = r["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == a.as_str())
        .unwrap()
        .clone();
    let md = entry["manager@delta"].as_array().unwrap();
    assert!(
        md.iter()
            .any(|m| m["id"] == b.as_str() && m.get("@removed").is_none()),
        "{entry}"
    );
    assert!(
        md.iter()
            .any(|m| m["id"] == old.as_str() && m["@removed"]["reason"] == "deleted"),
        "{entry}"
    );
    let link = r["@odata.deltaLink"].as_str().unwrap().to_string();
    assert_eq!(
        c.delete(&format!("/v1.0/users/{a}/manager/$ref"))
            .await
            .status,
        204
    );
    let r = c.get(&link).await.json();
    let entry = r["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == a.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        entry["manager@delta"],
        json!([{"@odata.type": "#microsoft.graph.user", "id": b, "@removed": {"reason": "deleted"}}])
    );
    // Without $select=manager the relationship is not tracked.
    let plain = c.get("/v1.0/users/delta").await.json();
    assert!(plain["value"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u.get("manager@delta").is_none()));
}
