//! PIM role eligibility schedules (`unifiedRoleEligibilitySchedule`) as Graph v1.0 documents
//! them: list (paging, `$filter`, `$select`) and get; writes only through
//! `roleEligibilityScheduleRequests` (`adminAssign` validates principal, role and scope and
//! refuses duplicates; `adminRemove`); permissions; a principal's hard delete takes its
//! eligibilities; a tenant without the licence answers `AadPremiumLicenseRequired`.

use crate::common;

use cairn_graph_sim::{Profile, SimConfig};
use common::*;
use serde_json::{json, Value};

const SCHEDULES: &str = "/v1.0/roleManagement/directory/roleEligibilitySchedules";
const REQUESTS: &str = "/v1.0/roleManagement/directory/roleEligibilityScheduleRequests";
const GLOBAL_ADMIN: &str = "62e90394-69f5-4237-9190-012177145e10";
const USER_ADMIN: &str = "fe930be7-5e62-47db-91af-98c3a49a38b1";

fn dumped(sim: &cairn_graph_sim::SimHandle) -> Vec<Value> {
    sim.dump()["roleEligibilitySchedules"]
        .as_object()
        .unwrap()
        .values()
        .cloned()
        .collect()
}

/// A live member user that holds no eligibility yet.
fn free_user(sim: &cairn_graph_sim::SimHandle) -> String {
    let d = sim.dump();
    let taken: Vec<&str> = d["roleEligibilitySchedules"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|e| e["principalId"].as_str())
        .collect();
    d["users"]
        .as_object()
        .unwrap()
        .values()
        .find(|u| {
            u["userType"] == "Member"
                && u.get("@sim.deleted").is_none()
                && !taken.contains(&u["id"].as_str().unwrap())
        })
        .map(|u| u["id"].as_str().unwrap().to_string())
        .unwrap()
}

#[tokio::test]
async fn generated_schedules_list_get_filter_and_page() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let v = c.get(SCHEDULES).await.json();
    assert_eq!(
        v["@odata.context"].as_str().unwrap(),
        format!(
            "{}/v1.0/$metadata#roleManagement/directory/roleEligibilitySchedules",
            sim.base_url()
        )
    );
    let all = v["value"].as_array().unwrap().clone();
    assert_eq!(all.len(), 4, "small tenant: 4 eligibilities");
    assert_eq!(all.len(), dumped(&sim).len());
    for e in &all {
        for p in [
            "id",
            "principalId",
            "roleDefinitionId",
            "directoryScopeId",
            "appScopeId",
            "createdUsing",
            "createdDateTime",
            "modifiedDateTime",
            "status",
            "memberType",
            "scheduleInfo",
        ] {
            assert!(e.get(p).is_some(), "{p} missing in {e}");
        }
        assert_eq!(e["status"], "Provisioned");
        assert_eq!(e["memberType"], "Direct");
        assert!(e["scheduleInfo"]["startDateTime"].is_string());
    }
    let globals = all
        .iter()
        .filter(|e| e["roleDefinitionId"] == GLOBAL_ADMIN)
        .count();
    assert!(globals >= 2, "{all:?}");
    assert!(
        all.iter().any(|e| e["directoryScopeId"]
            .as_str()
            .unwrap()
            .starts_with("/administrativeUnits/")),
        "one is scoped to an administrative unit"
    );
    assert!(
        all.iter().any(
            |e| e["scheduleInfo"]["expiration"]["type"] == "afterDateTime"
                && e["scheduleInfo"]["expiration"]["endDateTime"].is_string()
        ),
        "one has an end date"
    );
    // The same seed generates the same tenant.
    let again = start(Profile::Small).await;
    assert_eq!(dumped(&again), dumped(&sim));

    // Get by id, $filter on principalId / roleDefinitionId, $select, paging.
    let first = &all[0];
    let id = first["id"].as_str().unwrap();
    let one = c.get(&format!("{SCHEDULES}/{id}")).await.json();
    assert_eq!(one["principalId"], first["principalId"]);
    assert_eq!(c.get(&format!("{SCHEDULES}/no-such-id")).await.status, 404);
    let pid = first["principalId"].as_str().unwrap();
    let f = c
        .get(&format!("{SCHEDULES}?$filter=principalId eq '{pid}'"))
        .await
        .json();
    assert!(ids(&f).contains(&id.to_string()));
    assert!(f["value"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["principalId"] == pid));
    let f = c
        .get(&format!(
            "{SCHEDULES}?$filter=roleDefinitionId eq '{GLOBAL_ADMIN}'"
        ))
        .await
        .json();
    assert_eq!(ids(&f).len(), globals);
    let s = c
        .get(&format!("{SCHEDULES}?$select=id,principalId"))
        .await
        .json();
    let keys: Vec<&String> = s["value"][0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["id", "principalId"]);
    let (paged, pages, _) = c.get_all(&format!("{SCHEDULES}?$top=3"), &[]).await;
    assert_eq!(paged.len(), all.len());
    assert_eq!(pages, 2);
    // Writes go through requests only.
    assert_eq!(
        c.post_json(SCHEDULES, &json!({"principalId": pid}))
            .await
            .status,
        405
    );
    assert_eq!(c.delete(&format!("{SCHEDULES}/{id}")).await.status, 405);
}

#[tokio::test]
async fn admin_assign_and_remove() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let user = free_user(&sim);
    let assign = json!({
        "action": "adminAssign", "justification": "test", "roleDefinitionId": USER_ADMIN,
        "directoryScopeId": "/", "principalId": user,
        "scheduleInfo": {"startDateTime": "2025-02-01T00:00:00Z",
            "expiration": {"type": "afterDateTime", "endDateTime": "2099-04-10T00:00:00Z"}}
    });
    let r = c.post_json(REQUESTS, &assign).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let req = r.json();
    // The properties of a unifiedRoleEligibilityScheduleRequest as Graph v1.0 answers it.
    for p in [
        "id",
        "status",
        "createdDateTime",
        "completedDateTime",
        "approvalId",
        "customData",
        "action",
        "principalId",
        "roleDefinitionId",
        "directoryScopeId",
        "appScopeId",
        "isValidationOnly",
        "targetScheduleId",
        "justification",
        "createdBy",
        "scheduleInfo",
        "ticketInfo",
    ] {
        assert!(req.get(p).is_some(), "{p} missing in {req}");
    }
    assert_eq!(req["justification"], "test");
    assert_eq!(req["status"], "Provisioned");
    assert_eq!(req["action"], "adminAssign");
    let sid = req["targetScheduleId"].as_str().unwrap().to_string();
    let s = c.get(&format!("{SCHEDULES}/{sid}")).await.json();
    assert_eq!(s["principalId"], user.as_str());
    assert_eq!(s["roleDefinitionId"], USER_ADMIN);
    assert_eq!(s["directoryScopeId"], "/");
    assert_eq!(s["createdUsing"], sid.as_str());
    assert_eq!(s["scheduleInfo"]["startDateTime"], "2025-02-01T00:00:00Z");
    assert_eq!(
        s["scheduleInfo"]["expiration"],
        json!({"type": "afterDateTime", "endDateTime": "2099-04-10T00:00:00Z", "duration": null})
    );
    assert!(sim.dump()["roleEligibilitySchedules"][&sid].is_object());

    // The same eligibility again: Graph's RoleAssignmentExists.
    let r = c.post_json(REQUESTS, &assign).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "RoleAssignmentExists");

    // Validation: unknown principal, role or unit; bad scope; past end date; unknown action.
    let with = |k: &str, v: Value| {
        let mut b = assign.clone();
        b[k] = v;
        b
    };
    let missing = "00000000-0000-0000-0000-0000000000aa";
    assert_eq!(
        c.post_json(REQUESTS, &with("principalId", json!(missing)))
            .await
            .status,
        404
    );
    assert_eq!(
        c.post_json(REQUESTS, &with("roleDefinitionId", json!(missing)))
            .await
            .status,
        404
    );
    let other = with("roleDefinitionId", json!(GLOBAL_ADMIN));
    let mut au = other.clone();
    au["directoryScopeId"] = json!(format!("/administrativeUnits/{missing}"));
    assert_eq!(c.post_json(REQUESTS, &au).await.status, 404);
    let mut bad_scope = other.clone();
    bad_scope["directoryScopeId"] = json!("/users");
    assert_eq!(c.post_json(REQUESTS, &bad_scope).await.status, 400);
    let mut past = other.clone();
    past["scheduleInfo"]["expiration"]["endDateTime"] = json!("2020-01-01T00:00:00Z");
    assert_eq!(c.post_json(REQUESTS, &past).await.status, 400);
    assert_eq!(
        c.post_json(REQUESTS, &with("action", json!("nonsense")))
            .await
            .status,
        400
    );
    let mut no_action = assign.clone();
    no_action.as_object_mut().unwrap().remove("action");
    assert_eq!(c.post_json(REQUESTS, &no_action).await.status, 400);
    // Without scheduleInfo: starts now, never expires.
    let mut plain = other.clone();
    plain.as_object_mut().unwrap().remove("scheduleInfo");
    let r = c.post_json(REQUESTS, &plain).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.json()["scheduleInfo"]["expiration"]["type"],
        "noExpiration"
    );

    // adminRemove takes it away; removing it again is RoleAssignmentDoesNotExist.
    let remove = json!({"action": "adminRemove", "roleDefinitionId": USER_ADMIN,
        "directoryScopeId": "/", "principalId": user});
    let r = c.post_json(REQUESTS, &remove).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["status"], "Revoked");
    assert_eq!(c.get(&format!("{SCHEDULES}/{sid}")).await.status, 404);
    assert!(sim.dump()["roleEligibilitySchedules"].get(&sid).is_none());
    let r = c.post_json(REQUESTS, &remove).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "RoleAssignmentDoesNotExist");
}

#[tokio::test]
async fn hard_delete_of_the_principal_or_unit_takes_the_eligibilities() {
    let sim = start(Profile::Small).await;
    let before = dumped(&sim);
    let user_scoped = before
        .iter()
        .find(|e| e["directoryScopeId"] == "/")
        .unwrap();
    let uid = user_scoped["principalId"].as_str().unwrap().to_string();
    let n_user = before
        .iter()
        .filter(|e| e["principalId"] == uid.as_str())
        .count();
    // A soft delete keeps them (the user can come back from the recycle bin) …
    sim.delete(std::slice::from_ref(&uid), false);
    assert_eq!(dumped(&sim).len(), before.len());
    // … a permanent delete does not.
    sim.delete(std::slice::from_ref(&uid), true);
    let after = dumped(&sim);
    assert_eq!(after.len(), before.len() - n_user);
    assert!(after.iter().all(|e| e["principalId"] != uid.as_str()));

    let scoped = after
        .iter()
        .find(|e| {
            e["directoryScopeId"]
                .as_str()
                .unwrap()
                .starts_with("/administrativeUnits/")
        })
        .unwrap()
        .clone();
    let au =
        scoped["directoryScopeId"].as_str().unwrap()["/administrativeUnits/".len()..].to_string();
    sim.delete(&[au], true);
    assert!(dumped(&sim).iter().all(|e| e["id"] != scoped["id"]));
}

#[tokio::test]
async fn permissions_and_unlicensed_tenants() {
    let sim = start(Profile::Small).await;
    for (perms, read, write) in [
        (&["RoleEligibilitySchedule.Read.Directory"][..], 200, 403),
        (&["RoleManagement.Read.Directory"][..], 200, 403),
        (
            &["RoleEligibilitySchedule.ReadWrite.Directory"][..],
            200,
            400,
        ),
        (&["RoleManagement.ReadWrite.Directory"][..], 200, 400),
        (&["Directory.Read.All"][..], 403, 403),
    ] {
        let mut c = client_for(&sim, perms).await;
        let r = c.get(SCHEDULES).await;
        assert_eq!(r.status, read, "{perms:?}: {}", r.text());
        if read == 403 {
            assert_eq!(r.json()["error"]["code"], "Authorization_RequestDenied");
        }
        // An empty request body: 400 past the permission check, 403 before it.
        let w = c.post_json(REQUESTS, &json!({})).await;
        assert_eq!(w.status, write, "{perms:?}: {}", w.text());
    }

    // Without PIM (the empty profile, or the config flag) Graph answers with the licence error.
    let expect_unlicensed = |r: cairn_graph_sim::testkit::HttpResponse| {
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "AadPremiumLicenseRequired");
    };
    let empty = start(Profile::Empty).await;
    let mut c = client(&empty).await;
    expect_unlicensed(c.get(SCHEDULES).await);
    let none = start_with(SimConfig::new(Profile::Small, 7).with_pim(false)).await;
    let mut c = client(&none).await;
    expect_unlicensed(c.get(SCHEDULES).await);
    let user = free_user(&none);
    expect_unlicensed(
        c.post_json(
            REQUESTS,
            &json!({"action": "adminAssign", "principalId": user, "roleDefinitionId": USER_ADMIN, "directoryScopeId": "/"}),
        )
        .await,
    );
    // The flag can also turn PIM on in an empty tenant.
    let on = start_with(SimConfig::new(Profile::Empty, 7).with_pim(true)).await;
    let mut c = client(&on).await;
    let r = c.get(SCHEDULES).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(ids(&r.json()).is_empty());
}
