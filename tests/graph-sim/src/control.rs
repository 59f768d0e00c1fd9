//! The control API (`/_sim/...` over HTTP, and the same operations as Rust functions).

use crate::gen;
use crate::http::Resp;
use crate::model::{Id, Kind, Life};
use crate::server::{self, Inner};
use crate::state::{self, Tenant, MEMBERS};
use crate::util::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;

/// What a churn round did.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ChurnReport {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub soft_deleted: Vec<String>,
    pub hard_deleted: Vec<String>,
    /// Group ids whose membership changed.
    pub membership_changed: Vec<String>,
}

impl ChurnReport {
    pub fn total(&self) -> usize {
        self.created.len()
            + self.updated.len()
            + self.soft_deleted.len()
            + self.hard_deleted.len()
            + self.membership_changed.len()
    }
}

/// Credentials of an app registered through the control API.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AppCredentials {
    pub client_id: String,
    pub client_secret: String,
    pub object_id: String,
    pub service_principal_id: String,
    pub permissions: Vec<String>,
}

/// Randomly mutates `percent` % of users, groups, applications and service principals:
/// creates, updates, soft deletes, hard deletes and membership changes (deterministic for the
/// tenant's seed and the number of churn rounds so far).
pub fn churn(t: &mut Tenant, percent: f64, round: u64) -> ChurnReport {
    let mut rng = Rng::derive(t.cfg.seed ^ round.wrapping_mul(0x9E37), "churn");
    let mut rep = ChurnReport::default();
    for kind in [
        Kind::User,
        Kind::Group,
        Kind::Application,
        Kind::ServicePrincipal,
    ] {
        let live: Vec<Id> = t
            .map(kind)
            .values()
            .filter(|o| o.is_live())
            .map(|o| o.id.clone())
            .collect();
        let protected: Vec<String> = protected_ids(t);
        let n = ((live.len() as f64) * percent / 100.0).round() as usize;
        for i in 0..n {
            let roll = rng.unit();
            let pick = live[rng.below(live.len())].clone();
            if protected.iter().any(|p| **p == *pick)
                || !t.get(kind, &pick).is_some_and(|o| o.is_live())
            {
                continue;
            }
            if roll < 0.2 && kind == Kind::User {
                let body = crate::directory::new_user_body(t, round * 1_000_000 + i as u64);
                let id = t.insert(Kind::User, body);
                rep.created.push(id.to_string());
            } else if roll < 0.6 {
                let patch = match kind {
                    Kind::User => {
                        json!({"jobTitle": gen::DEPARTMENTS[rng.below(gen::DEPARTMENTS.len())].1[0], "officeLocation": format!("{}/{}", rng.below(40), rng.below(3000))})
                    }
                    _ => json!({"description": format!("Updated in churn round {round}")}),
                };
                t.update(kind, &pick, patch.as_object().cloned().unwrap_or_default());
                rep.updated.push(pick.to_string());
            } else if roll < 0.75 && kind == Kind::Group {
                let dynamic = t
                    .get(kind, &pick)
                    .is_some_and(|o| o.data.get("membershipRule").is_some());
                if dynamic {
                    continue;
                }
                let users: Vec<Id> = t
                    .map(Kind::User)
                    .values()
                    .filter(|o| o.is_live())
                    .map(|o| o.id.clone())
                    .take(5000)
                    .collect();
                if let Some(u) = users.get(rng.below(users.len().max(1))).cloned() {
                    if t.is_member(kind, &pick, &u) {
                        t.remove_link(kind, &pick, MEMBERS, &u);
                    } else {
                        t.add_link(kind, &pick, MEMBERS, &u);
                    }
                    rep.membership_changed.push(pick.to_string());
                }
            } else if roll < 0.92 {
                if t.deletes_softly(kind, &pick) {
                    t.soft_delete(kind, &pick);
                    rep.soft_deleted.push(pick.to_string());
                } else {
                    t.hard_delete(kind, &pick);
                    rep.hard_deleted.push(pick.to_string());
                }
            } else {
                t.hard_delete(kind, &pick);
                rep.hard_deleted.push(pick.to_string());
            }
        }
    }
    rep
}

/// Objects churn never touches: the apps clients sign in as (the default app and
/// any other registered with a client secret — their application and service principal),
/// Microsoft Graph, the admin.
fn protected_ids(t: &Tenant) -> Vec<String> {
    let mut p = vec![t.graph_sp.to_string()];
    if let Some(admin) = t.upn_index.get(&format!("admin@{}", t.domain)) {
        p.push(admin.to_string());
    }
    for app in t
        .map(Kind::Application)
        .values()
        .filter(|a| !a.secrets.is_empty())
    {
        p.push(app.id.to_string());
        let sp = app
            .data
            .get("appId")
            .and_then(Value::as_str)
            .and_then(|a| t.sp_index.get(&a.to_ascii_lowercase()));
        if let Some(sp) = sp {
            p.push(sp.to_string());
        }
    }
    for (app_id, _) in gen::FIRST_PARTY {
        if let Some(sp) = t.sp_index.get(*app_id) {
            p.push(sp.to_string());
        }
    }
    p
}

/// Deletes objects by id: `hard` = permanently, otherwise as Graph would (soft where supported).
pub fn bulk_delete(t: &mut Tenant, ids: &[String], hard: bool) -> (usize, Vec<String>) {
    let mut done = 0;
    let mut missing = vec![];
    for id in ids {
        let Some(kind) = t.kind_of.get(id.as_str()).copied() else {
            missing.push(id.clone());
            continue;
        };
        let life = t.get(kind, id).map(|o| o.life.clone());
        match life {
            Some(Life::Live) if hard => t.hard_delete(kind, id),
            Some(Life::Live) => t.delete(kind, id),
            Some(Life::Deleted(_)) if hard => t.hard_delete(kind, id),
            _ => {
                missing.push(id.clone());
                continue;
            }
        }
        done += 1;
    }
    (done, missing)
}

pub fn advance_clock(t: &mut Tenant, secs: i64) -> i64 {
    t.clock_offset += secs;
    t.purge_expired();
    t.now()
}

/// Registers a new application with a secret and the given Graph application permissions.
pub fn add_app(sim: &Inner, name: &str, permissions: &[String]) -> AppCredentials {
    let mut t = sim.tenant();
    let n = t.seq;
    let mut rng = Rng::derive(t.cfg.seed ^ n, "apps");
    let (client_id, client_secret, object_id, sp) =
        gen::register_app(&mut t, &mut rng, name, permissions);
    AppCredentials {
        client_id,
        client_secret,
        object_id,
        service_principal_id: sp,
        permissions: permissions.to_vec(),
    }
}

/// Adds a certificate (DER) as a key credential of the application with this appId.
pub fn add_certificate(t: &mut Tenant, client_id: &str, der: &[u8]) -> Result<String, String> {
    let Some(app) = t.app_index.get(&client_id.to_ascii_lowercase()).cloned() else {
        return Err(format!("no application with appId {client_id}"));
    };
    let key_id = t.new_guid();
    let now = t.now();
    let mut creds = t
        .get(Kind::Application, &app)
        .and_then(|o| o.data.get("keyCredentials"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    creds.push(json!({"customKeyIdentifier": crate::util::b64(&crate::util::sha1(der)), "displayName": "CN=cairn", "endDateTime": crate::util::iso(now + 365 * 86400),
        "key": crate::util::b64(der), "keyId": key_id, "startDateTime": crate::util::iso(now), "type": "AsymmetricX509Cert", "usage": "Verify"}));
    t.update(
        Kind::Application,
        &app,
        serde_json::Map::from_iter([("keyCredentials".to_string(), Value::Array(creds))]),
    );
    Ok(key_id)
}

fn body_json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(json!({}))
}

/// `/_sim/...`
pub fn handle(sim: &Arc<Inner>, method: &str, rest: &str, body: &[u8]) -> Resp {
    let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let b = body_json(body);
    match (method, parts.as_slice()) {
        ("GET", ["info"]) => Resp::ok(server::info(sim)),
        ("GET", ["download", tok]) => crate::drive::download(&sim.tenant(), tok),
        ("POST", ["churn"]) => {
            let pct = b.get("percent").and_then(Value::as_f64).unwrap_or(1.0);
            let round = sim.stats().requests;
            let rep = churn(&mut sim.tenant(), pct, round);
            Resp::ok(json!(rep))
        }
        ("POST", ["delete"]) => {
            let ids: Vec<String> = b
                .get("ids")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let hard = b.get("hard").and_then(Value::as_bool).unwrap_or(false);
            let (n, missing) = bulk_delete(&mut sim.tenant(), &ids, hard);
            Resp::ok(json!({"deleted": n, "missing": missing}))
        }
        ("GET", ["clock"]) => {
            let t = sim.tenant();
            Resp::ok(json!({"now": t.now_iso(), "offsetSeconds": t.clock_offset}))
        }
        ("POST", ["clock", "advance"]) => {
            let secs = b.get("seconds").and_then(Value::as_f64).unwrap_or(0.0)
                + b.get("days").and_then(Value::as_f64).unwrap_or(0.0) * 86400.0;
            let mut t = sim.tenant();
            advance_clock(&mut t, secs as i64);
            Resp::ok(json!({"now": t.now_iso(), "offsetSeconds": t.clock_offset}))
        }
        ("GET", ["state"]) => Resp::ok(sim.tenant().dump()),
        ("POST", ["diff"]) => {
            let d = state::diff_dumps(
                b.get("a").unwrap_or(&Value::Null),
                b.get("b").unwrap_or(&Value::Null),
            );
            Resp::ok(json!(d))
        }
        ("GET", ["stats"]) => Resp::ok(json!(*sim.stats())),
        ("POST", ["stats", "reset"]) => {
            *sim.stats() = Default::default();
            Resp::no_content()
        }
        ("GET", ["faults"]) => Resp::ok(json!(sim.faults().rules)),
        ("POST", ["faults"]) => match server::fault_rule_from(b) {
            Ok(r) => {
                sim.faults().rules.push(r);
                Resp::no_content()
            }
            Err(e) => Resp::bad_request(&format!("invalid fault rule: {e}")),
        },
        ("DELETE", ["faults"]) => {
            sim.faults().rules.clear();
            Resp::no_content()
        }
        ("POST", ["apps"]) => {
            let perms: Vec<String> = b
                .get("permissions")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let name = b
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("Test app")
                .to_string();
            Resp::created(json!(add_app(sim, &name, &perms)))
        }
        ("POST", ["apps", client_id, "certificates"]) => {
            let Some(der) = b
                .get("der")
                .and_then(Value::as_str)
                .and_then(crate::util::b64_decode)
            else {
                return Resp::bad_request("body must be {\"der\": \"<base64 DER certificate>\"}");
            };
            match add_certificate(&mut sim.tenant(), client_id, &der) {
                Ok(k) => Resp::created(json!({"keyId": k})),
                Err(e) => Resp::bad_request(&e),
            }
        }
        _ => Resp::error(
            404,
            "NotFound",
            "Unknown control endpoint. See the README section 'Graph simulator'.",
        ),
    }
}
