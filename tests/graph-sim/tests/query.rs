//! Query rules (§2): paging, $top bounds, default property sets, $select, 501, $filter,
//! $count/ConsistencyLevel, $search, $expand.

use crate::common;

use cairn_graph_sim::Profile;
use common::*;
use std::collections::HashSet;

#[tokio::test]
async fn paging_follows_next_links_to_the_end() {
    let sim = start(Profile::Medium).await;
    let mut c = client(&sim).await;
    let live = sim.with_tenant(|t| t.count_live(cairn_graph_sim::model::Kind::User));
    assert!(live >= 5000);
    let (items, pages, _) = c.get_all("/v1.0/users", &[]).await;
    assert_eq!(items.len(), live);
    assert_eq!(pages, live.div_ceil(100), "default page size is 100");
    let ids: HashSet<&str> = items.iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), live, "no duplicates across pages");
    // nextLink: absolute, carries the original query options and an opaque skiptoken.
    let first = c
        .get("/v1.0/users?$top=999&$select=id,displayName")
        .await
        .json();
    let next = first["@odata.nextLink"].as_str().unwrap();
    assert!(next.starts_with(&sim.base_url()));
    assert!(
        next.contains("$top=999")
            && next.contains("$select=id,displayName")
            && next.contains("$skiptoken=")
    );
    let (all, pages, _) = c
        .get_all("/v1.0/users?$top=999&$select=id,displayName", &[])
        .await;
    assert_eq!((all.len(), pages), (live, live.div_ceil(999)));
    assert_eq!(c.get("/v1.0/users?$top=1000").await.status, 400);
    assert_eq!(c.get("/v1.0/users?$top=0").await.status, 400);
    assert_eq!(
        c.get("/v1.0/users?$select=signInActivity&$top=501")
            .await
            .status,
        400,
        "500 max with signInActivity"
    );
    // A skiptoken is bound to its request.
    let tok = next.split("$skiptoken=").nth(1).unwrap();
    assert_eq!(
        c.get(&format!("/v1.0/groups?$skiptoken={tok}"))
            .await
            .status,
        400
    );
    assert_eq!(
        c.get("/v1.0/users?$skip=10").await.status,
        400,
        "$skip is not supported on users"
    );
    // Group members page at 100 too.
    let big = sim.with_tenant(|t| {
        t.map(cairn_graph_sim::model::Kind::Group)
            .values()
            .max_by_key(|g| g.link("members").count())
            .unwrap()
            .id
            .to_string()
    });
    let (members, pages, _) = c.get_all(&format!("/v1.0/groups/{big}/members"), &[]).await;
    assert!(members.len() > 100 && pages > 1);
    assert!(members.iter().all(|m| m["@odata.type"].is_string()));
}

#[tokio::test]
async fn default_properties_select_and_501() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let v = c.get("/v1.0/users?$top=3").await.json();
    for u in v["value"].as_array().unwrap() {
        let mut keys: Vec<&str> = u.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        let mut want = cairn_graph_sim::model::USER_DEFAULTS.to_vec();
        want.sort();
        assert_eq!(
            keys, want,
            "users return only the 11 default properties without $select"
        );
    }
    let v = c
        .get("/v1.0/users?$top=3&$select=department,accountEnabled")
        .await
        .json();
    let keys: HashSet<&str> = v["value"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, HashSet::from(["id", "department", "accountEnabled"]));
    assert!(v["@odata.context"]
        .as_str()
        .unwrap()
        .ends_with("#users(department,accountEnabled)"));
    let r = c.get("/v1.0/users?$select=nope").await;
    assert_eq!(r.status, 400);
    let r = c.get("/v1.0/users?$select=aboutMe").await;
    assert_eq!(r.status, 501, "list-only properties");
    assert_eq!(r.json()["error"]["code"], "NotImplemented");
    let id = v["value"][0]["id"].as_str().unwrap();
    assert_eq!(
        c.get(&format!("/v1.0/users/{id}?$select=aboutMe,skills"))
            .await
            .status,
        200
    );
    // Groups: select-only properties appear only when selected.
    let g = c.get("/v1.0/groups?$top=1").await.json();
    assert!(g["value"][0].get("hideFromOutlookClients").is_none());
    assert!(g["value"][0].get("securityIdentifier").is_some());
    let g = c
        .get("/v1.0/groups?$top=1&$select=hideFromOutlookClients")
        .await
        .json();
    assert!(g["value"][0].get("hideFromOutlookClients").is_some());
}

#[tokio::test]
async fn filters_count_and_search() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let all = c.get_all("/v1.0/users", &[]).await.0;
    let a: Vec<_> = all
        .iter()
        .filter(|u| {
            u["displayName"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .starts_with('a')
        })
        .collect();
    let r = c
        .get("/v1.0/users?$filter=startswith(displayName,'a')")
        .await
        .json();
    assert_eq!(r["value"].as_array().unwrap().len(), a.len());
    let ids: Vec<&str> = all
        .iter()
        .take(3)
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    let r = c
        .get(&format!(
            "/v1.0/users?$filter=id in ('{}','{}','{}')",
            ids[0], ids[1], ids[2]
        ))
        .await
        .json();
    assert_eq!(r["value"].as_array().unwrap().len(), 3);
    let r = c
        .get(&format!("/v1.0/users?$filter=id eq '{}'", ids[0]))
        .await
        .json();
    assert_eq!(r["value"].as_array().unwrap().len(), 1);
    let sixteen = (0..16)
        .map(|i| format!("'{i}'"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        c.get(&format!("/v1.0/users?$filter=id in ({sixteen})"))
            .await
            .status,
        400,
        "at most 15 values in 'in'"
    );
    let r = c
        .get("/v1.0/groups?$filter=groupTypes/any(c:c eq 'Unified')")
        .await
        .json();
    assert!(r["value"]
        .as_array()
        .unwrap()
        .iter()
        .all(|g| g["groupTypes"].to_string().contains("Unified")));
    // Advanced queries need ConsistencyLevel: eventual and $count=true.
    let r = c.get("/v1.0/users?$filter=accountEnabled ne true").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "Request_UnsupportedQuery");
    let r = c
        .get_with(
            "/v1.0/users?$filter=accountEnabled ne true&$count=true",
            &[("ConsistencyLevel", "eventual")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["@odata.count"].as_u64().unwrap() as usize,
        r.json()["value"].as_array().unwrap().len()
    );
    let r = c.get("/v1.0/users/$count").await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"]["message"],
        "$count is not currently supported."
    );
    let r = c
        .get_with("/v1.0/users/$count", &[("ConsistencyLevel", "eventual")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text().parse::<usize>().unwrap(), all.len());
    // ?$count=true without the header is silently ignored.
    assert!(c
        .get("/v1.0/users?$count=true")
        .await
        .json()
        .get("@odata.count")
        .is_none());
    // @odata.count on the first page only; headers are not carried over to the next page.
    let first = c
        .get_with(
            "/v1.0/users?$count=true&$top=10",
            &[("ConsistencyLevel", "eventual")],
        )
        .await
        .json();
    assert_eq!(first["@odata.count"].as_u64().unwrap() as usize, all.len());
    let second = c
        .get_with(
            first["@odata.nextLink"].as_str().unwrap(),
            &[("ConsistencyLevel", "eventual")],
        )
        .await
        .json();
    assert!(second.get("@odata.count").is_none());
    // $search needs the header.
    assert_eq!(
        c.get("/v1.0/users?$search=\"displayName:adm\"")
            .await
            .json()["error"]["code"],
        "Request_UnsupportedQuery"
    );
    let r = c
        .get_with(
            "/v1.0/users?$search=\"displayName:MOD\"",
            &[("ConsistencyLevel", "eventual")],
        )
        .await
        .json();
    assert!(r["value"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["displayName"] == "MOD Administrator"));
    // $expand: at most 20 related objects, not with advanced queries.
    let g = c
        .get("/v1.0/groups?$filter=displayName eq 'All Company'&$expand=members")
        .await
        .json();
    let members = g["value"][0]["members"].as_array().unwrap();
    assert_eq!(members.len(), 20);
    assert_eq!(
        c.get_with(
            "/v1.0/groups?$expand=members&$count=true",
            &[("ConsistencyLevel", "eventual")]
        )
        .await
        .status,
        400
    );
    // Named locations by type.
    let ip = c.get("/v1.0/identity/conditionalAccess/namedLocations?$filter=isof('microsoft.graph.ipNamedLocation')").await.json();
    assert!(ip["value"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["@odata.type"] == "#microsoft.graph.ipNamedLocation"));
}

#[tokio::test]
async fn orderby_rules_and_sorted_paging() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let (items, pages, _) = c
        .get_all(
            "/v1.0/users?$orderby=displayName&$top=7&$select=displayName",
            &[],
        )
        .await;
    assert!(pages > 1);
    let names: Vec<String> = items
        .iter()
        .map(|u| u["displayName"].as_str().unwrap().to_lowercase())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "sorted across pages");
    assert_eq!(
        names.len(),
        sim.with_tenant(|t| t.count_live(cairn_graph_sim::model::Kind::User))
    );
    let desc = c
        .get("/v1.0/users?$orderby=displayName desc&$top=3&$select=displayName")
        .await
        .json();
    assert_eq!(
        desc["value"][0]["displayName"]
            .as_str()
            .unwrap()
            .to_lowercase(),
        *sorted.last().unwrap()
    );
    // Other properties, and $filter with $orderby, need an advanced query.
    assert_eq!(
        c.get("/v1.0/users?$orderby=jobTitle").await.json()["error"]["code"],
        "Request_UnsupportedQuery"
    );
    assert_eq!(
        c.get("/v1.0/users?$filter=accountEnabled eq true&$orderby=displayName")
            .await
            .status,
        400
    );
    let r = c
        .get_with(
            "/v1.0/users?$filter=accountEnabled eq true&$orderby=displayName&$count=true",
            &[("ConsistencyLevel", "eventual")],
        )
        .await;
    assert_eq!(r.status, 200);
}
