//! Graph routing for directory objects, policies and the recycle bin: reads and writes with
//! Graph's validation rules.

use crate::auth::{self, perms, require};
use crate::gen;
use crate::http::{Req, Resp};
use crate::list::{self, ListSpec};
#[allow(unused_imports)]
use crate::model::ObjExt;
use crate::model::*;
use crate::render;
use crate::state::{Tenant, MANAGER, MEMBERS, OWNERS};
use crate::util;
use serde_json::{json, Map, Value};

fn lower(segs: &[String]) -> Vec<String> {
    segs.iter().map(|s| s.to_ascii_lowercase()).collect()
}

/// Splits `name(key='value')` into (name, key, value).
fn key_segment(s: &str) -> Option<(String, String, String)> {
    let open = s.find('(')?;
    let inner = s[open + 1..].strip_suffix(')')?;
    let (k, v) = inner.split_once('=')?;
    Some((
        s[..open].to_string(),
        k.trim().to_string(),
        v.trim().trim_matches('\'').to_string(),
    ))
}

fn kind_for_collection(seg: &str) -> Option<Kind> {
    Some(match seg {
        "users" => Kind::User,
        "groups" => Kind::Group,
        "applications" => Kind::Application,
        "serviceprincipals" => Kind::ServicePrincipal,
        "administrativeunits" => Kind::AdministrativeUnit,
        "directoryroles" => Kind::DirectoryRole,
        "oauth2permissiongrants" => Kind::OAuth2Grant,
        "domains" => Kind::Domain,
        _ => return None,
    })
}

/// Resolves the id segment of an entity: ids, UPNs for users.
fn resolve(t: &Tenant, kind: Kind, seg: &str) -> Option<Id> {
    if let Some(o) = t.get(kind, seg) {
        if o.is_live() {
            return Some(o.id.clone());
        }
    }
    if kind == Kind::User {
        return t.upn_index.get(&seg.to_ascii_lowercase()).cloned();
    }
    if kind == Kind::Domain {
        return t
            .map(kind)
            .values()
            .find(|d| d.is_live() && d.id.eq_ignore_ascii_case(seg))
            .map(|d| d.id.clone());
    }
    None
}

fn spec<'a>(
    kind: Option<Kind>,
    context: String,
    objs: Vec<&'a Stored>,
    typed: bool,
) -> ListSpec<'a> {
    ListSpec {
        kind,
        context,
        default_top: 100,
        max_top: 999,
        typed,
        no_paging: false,
        force: &[],
        source: list::Source::List(objs),
    }
}

/// Main entry for directory and policy paths. Returns `None` if the path is not a directory path.
pub fn dispatch(t: &mut Tenant, req: &Req) -> Option<Resp> {
    let mut segs = req.segs.clone();
    // Alternate keys: applications(appId='..'), servicePrincipals(appId='..'), applications(uniqueName='..').
    if let Some(first) = segs.first().cloned() {
        if let Some((name, key, value)) = key_segment(&first) {
            let lname = name.to_ascii_lowercase();
            let kind = match lname.as_str() {
                "applications" => Kind::Application,
                "serviceprincipals" => Kind::ServicePrincipal,
                _ => return Some(Resp::bad_request("Unsupported key segment.")),
            };
            let found = match key.to_ascii_lowercase().as_str() {
                "appid" => if kind == Kind::Application {
                    t.app_index.get(&value.to_ascii_lowercase())
                } else {
                    t.sp_index.get(&value.to_ascii_lowercase())
                }
                .cloned(),
                "uniquename" => t
                    .map(kind)
                    .values()
                    .find(|o| {
                        o.is_live()
                            && o.str("uniqueName")
                                .is_some_and(|u| u.eq_ignore_ascii_case(&value))
                    })
                    .map(|o| o.id.clone()),
                _ => None,
            };
            match found {
                Some(id) => {
                    segs[0] = name;
                    segs.insert(1, id.to_string());
                }
                None if key.eq_ignore_ascii_case("uniqueName")
                    && req.method == "PATCH"
                    && segs.len() == 1 =>
                {
                    // Upsert: create with Prefer: create-if-missing, 404 otherwise.
                    if let Err(e) = require(&req.app, perms::APPS_W) {
                        return Some(e);
                    }
                    if !req.prefers("create-if-missing") {
                        return Some(Resp::not_found(&value));
                    }
                    let mut body = match req.json_body() {
                        Ok(b) => b,
                        Err(e) => return Some(e),
                    };
                    body.insert("uniqueName".into(), json!(value));
                    return Some(create(t, req, Kind::Application, body));
                }
                None => return Some(Resp::not_found(&value)),
            }
        }
    }
    let l = lower(&segs);
    let ls: Vec<&str> = l.iter().map(String::as_str).collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = req.method.as_str();
    let r = match ls.as_slice() {
        // ---------------------------------------------------------------- recycle bin
        ["directory", "deleteditems"] => Resp::bad_request("The request URI is not valid. A type cast to microsoft.graph.user, group, application, servicePrincipal or administrativeUnit is required on directory/deletedItems."),
        ["directory", "deleteditems", cast] if cast.starts_with("microsoft.graph.") => {
            let Some(kind) = Kind::from_name(&cast["microsoft.graph.".len()..]).filter(|k| matches!(k, Kind::User | Kind::Group | Kind::Application | Kind::ServicePrincipal | Kind::AdministrativeUnit)) else {
                return Some(Resp::bad_request("Unsupported type cast on directory/deletedItems."));
            };
            if let Err(e) = require(&req.app, auth::kind_perms(kind).0) { return Some(e); }
            if m != "GET" { return Some(Resp::method_not_allowed()); }
            let mut sp = spec(Some(kind), format!("directory/deletedItems/microsoft.graph.{}", kind.odata_type_name()), vec![], false);
            sp.source = list::Source::Map(t.map(kind), |o| matches!(o.life, Life::Deleted(_)));
            sp.force = &["deletedDateTime"];
            list::list(t, req, sp)
        }
        ["directory", "deleteditems", _, ..] => recycle(t, req, s[2], &ls[3..]),
        ["identity", "conditionalaccess", "deleteditems", coll, ..] => {
            if req.version != "beta" {
                return Some(Resp::bad_request("Resource not found for the segment 'deletedItems'."));
            }
            let kind = match *coll { "policies" => Kind::CaPolicy, "namedlocations" => Kind::NamedLocation, _ => return Some(Resp::bad_request("Resource not found for the segment.")) };
            ca_recycle(t, req, kind, &s[4..], &ls[4..])
        }
        // ---------------------------------------------------------------- directory objects
        ["directoryobjects", "getbyids"] if m == "POST" => {
            let body = match req.json_body() { Ok(b) => b, Err(e) => return Some(e) };
            let ids: Vec<String> = body.get("ids").and_then(Value::as_array).map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default();
            if ids.len() > 1000 { return Some(Resp::bad_request("Too many ids: at most 1000.")); }
            let types: Vec<String> = body.get("types").and_then(Value::as_array).map(|a| a.iter().filter_map(|v| v.as_str().map(|s| s.to_ascii_lowercase())).collect()).unwrap_or_default();
            let objs: Vec<&Stored> = ids.iter().filter_map(|i| t.find_live(i)).filter(|o| types.is_empty() || types.iter().any(|ty| ty == &o.kind.odata_type_name().to_ascii_lowercase())).collect();
            for o in &objs {
                if let Err(e) = require(&req.app, auth::kind_perms(o.kind).0) { return Some(e); }
            }
            let vals: Vec<Value> = objs.iter().map(|o| Value::Object(list::render_for_list(t, o, None, None, true))).collect();
            let n = vals.len();
            Resp::ok(json!({"@odata.context": format!("{}/{}/$metadata#directoryObjects", req.base, req.version), "value": vals})).with_objects(n)
        }
        ["directoryobjects", _] => match t.find_live(s[1]) {
            Some(o) => {
                if let Err(e) = require(&req.app, auth::kind_perms(o.kind).0) { return Some(e); }
                let mut m = list::render_for_list(t, o, None, None, true);
                m.shift_insert(0, "@odata.context".into(), json!(format!("{}/{}/$metadata#directoryObjects/$entity", req.base, req.version)));
                Resp::ok(Value::Object(m))
            }
            None => Resp::not_found(s[1]),
        },
        // ---------------------------------------------------------------- role management
        ["rolemanagement", "directory", "roledefinitions", rest @ ..] => entity_routes(t, req, Kind::RoleDefinition, &s[3..], rest),
        ["rolemanagement", "directory", "roleassignments", rest @ ..] => entity_routes(t, req, Kind::RoleAssignment, &s[3..], rest),
        ["rolemanagement", "directory", "roleeligibilityschedules", rest @ ..] => {
            if let Err(e) = require(&req.app, auth::kind_perms(Kind::RoleEligibility).0) { return Some(e); }
            if let Err(e) = pim_licensed(t) { return Some(e); }
            match (m, rest) {
                ("GET", [] | [_]) => entity_routes(t, req, Kind::RoleEligibility, &s[3..], rest),
                // Schedules are written through roleEligibilityScheduleRequests only.
                _ => Resp::method_not_allowed(),
            }
        }
        ["rolemanagement", "directory", "roleeligibilityschedulerequests"] => match m {
            "POST" => eligibility_request(t, req),
            _ => Resp::error(501, "NotImplemented", "The simulator does not keep roleEligibilityScheduleRequests: list roleEligibilitySchedules instead."),
        },
        ["directoryroletemplates"] => {
            if let Err(e) = require(&req.app, perms::ROLES_R) { return Some(e); }
            let vals: Vec<Value> = gen::ROLE_TEMPLATES.iter().map(|(id, n, d)| json!({"id": id, "deletedDateTime": null, "description": d, "displayName": n})).collect();
            Resp::ok(json!({"@odata.context": format!("{}/{}/$metadata#directoryRoleTemplates", req.base, req.version), "value": vals}))
        }
        // ---------------------------------------------------------------- policies
        ["identity", "conditionalaccess", "policies", rest @ ..] => entity_routes(t, req, Kind::CaPolicy, &s[3..], rest),
        ["identity", "conditionalaccess", "namedlocations", rest @ ..] => entity_routes(t, req, Kind::NamedLocation, &s[3..], rest),
        ["identity", "conditionalaccess", "authenticationcontextclassreferences", rest @ ..] => match (m, rest) {
            ("PATCH", [_]) => auth_context_upsert(t, req, s[3]),
            ("POST", []) => Resp::method_not_allowed(),
            _ => entity_routes(t, req, Kind::AuthContext, &s[3..], rest),
        },
        ["identity", "conditionalaccess", "authenticationstrength", "policies", rest @ ..] => entity_routes(t, req, Kind::AuthStrength, &s[4..], rest),
        ["policies", "authenticationstrengthpolicies", rest @ ..] => entity_routes(t, req, Kind::AuthStrength, &s[2..], rest),
        ["policies", "authorizationpolicy"] | ["policies", "authorizationpolicy", "authorizationpolicy"] => singleton(t, req, "authorizationPolicy"),
        ["policies", "identitysecuritydefaultsenforcementpolicy"] => singleton(t, req, "securityDefaults"),
        ["policies", "authenticationmethodspolicy"] => singleton(t, req, "authenticationMethodsPolicy"),
        ["policies", "authenticationmethodspolicy", "authenticationmethodconfigurations", rest @ ..] => auth_method_config(t, req, rest.first().map(|_| s[3])),
        ["organization"] | ["organization", _] => organization(t, req, s.get(1).copied()),
        ["subscribedskus"] if m == "GET" => {
            if let Err(e) = require(&req.app, perms::ORG_R) { return Some(e); }
            let members = t.map(Kind::User).values().filter(|u| u.is_live() && u.str("userType") == Some("Member")).count();
            let sku = |id: &str, part: &str, n: usize, enabled: usize| json!({
                "accountId": t.tenant_id, "accountName": "Contoso", "appliesTo": "User", "capabilityStatus": "Enabled",
                "consumedUnits": n, "id": format!("{}_{id}", t.tenant_id), "skuId": id, "skuPartNumber": part,
                "subscriptionIds": [], "prepaidUnits": {"enabled": enabled, "suspended": 0, "warning": 0, "lockedOut": 0}, "servicePlans": []});
            Resp::ok(json!({"@odata.context": format!("{}/{}/$metadata#subscribedSkus", req.base, req.version), "value": [
                sku("6fd2c87f-b296-42f0-b197-1e91e994b900", "ENTERPRISEPACK", members, members + members / 10 + 5),
                sku("b05e124f-c7cc-45a0-a6aa-8cf78c946968", "EMSPREMIUM", members, members + 25),
            ]}))
        }
        ["domains", _, "verificationdnsrecords"] => {
            if let Err(e) = require(&req.app, perms::DOMAINS_R) { return Some(e); }
            let Some(d) = resolve(t, Kind::Domain, s[1]) else { return Some(Resp::not_found(s[1])) };
            let txt = format!("MS=ms{}", util::fnv1a(d.as_bytes()) % 100_000_000);
            Resp::ok(json!({"@odata.context": format!("{}/{}/$metadata#domains('{d}')/verificationDnsRecords", req.base, req.version), "value": [
                {"@odata.type": "#microsoft.graph.domainDnsTxtRecord", "isOptional": false, "label": d.to_string(), "recordType": "Txt", "supportedService": "Email", "ttl": 3600, "text": txt},
                {"@odata.type": "#microsoft.graph.domainDnsMxRecord", "isOptional": false, "label": d.to_string(), "recordType": "Mx", "supportedService": "Email", "ttl": 3600, "mailExchange": format!("ms{}.msv1.invalid", util::fnv1a(d.as_bytes()) % 100_000_000), "preference": 32767}]}))
        }
        ["domains", _, "verify"] if m == "POST" => {
            if let Err(e) = require(&req.app, perms::DOMAINS_W) { return Some(e); }
            match resolve(t, Kind::Domain, s[1]) {
                Some(d) if t.get(Kind::Domain, &d).and_then(|o| o.data.get("isVerified")) == Some(&json!(true)) => list::entity(t, req, t.get(Kind::Domain, &d).unwrap()),
                Some(_) => Resp::bad_request("Domain verification failed with the following error: the DNS record could not be found (DNS is not reachable from the simulator)."),
                None => Resp::not_found(s[1]),
            }
        }
        // ---------------------------------------------------------------- collections
        ["directory", "administrativeunits", rest @ ..] => entity_routes(t, req, Kind::AdministrativeUnit, &s[2..], rest),
        ["administrativeunits", rest @ ..] => entity_routes(t, req, Kind::AdministrativeUnit, &s[1..], rest),
        [coll, rest @ ..] if kind_for_collection(coll).is_some() => entity_routes(t, req, kind_for_collection(coll).unwrap(), &s[1..], rest),
        _ => return None,
    };
    Some(r)
}

/// Routes `{collection}/...` for a kind: list, count, delta, create, entity and relationships.
fn entity_routes(t: &mut Tenant, req: &Req, kind: Kind, s: &[&str], l: &[&str]) -> Resp {
    let (read, write) = auth::kind_perms(kind);
    let m = req.method.as_str();
    match (m, l) {
        ("GET", []) => {
            if let Err(e) = require(&req.app, read) {
                return e;
            }
            let mut sp = spec(Some(kind), kind.context().to_string(), vec![], false);
            sp.source = list::Source::Map(t.map(kind), Stored::is_live);
            if kind == Kind::DirectoryRole {
                sp.no_paging = true;
            }
            list::list(t, req, sp)
        }
        ("GET", ["$count"]) => {
            if let Err(e) = require(&req.app, read) {
                return e;
            }
            list::count(req, t.count_live(kind))
        }
        ("GET", ["delta"]) => {
            if !kind.supports_delta() {
                return Resp::error(
                    400,
                    "Request_BadRequest",
                    "Delta query is not supported on this resource.",
                );
            }
            if let Err(e) = require(&req.app, read) {
                return e;
            }
            crate::delta::delta(t, req, kind)
        }
        ("POST", []) => {
            if let Err(e) = require(&req.app, write) {
                return e;
            }
            let body = match req.json_body() {
                Ok(b) => b,
                Err(e) => return e,
            };
            create(t, req, kind, body)
        }
        (_, [_, rest @ ..]) => {
            let Some(id) = resolve(t, kind, s[0]) else {
                // Mail and drive paths on users and groups are resolved the same way.
                return Resp::not_found(s[0]);
            };
            entity_ops(t, req, kind, &id, &s[1..], rest)
        }
        _ => Resp::method_not_allowed(),
    }
}

fn entity_ops(t: &mut Tenant, req: &Req, kind: Kind, id: &Id, s: &[&str], l: &[&str]) -> Resp {
    let (read, write) = auth::kind_perms(kind);
    let m = req.method.as_str();
    // Microsoft 365 paths on users and groups.
    if kind == Kind::User && matches!(l.first(), Some(&"mailfolders" | &"messages")) {
        let rest: Vec<String> = s.iter().map(|x| x.to_string()).collect();
        return crate::mail::handle(t, req, id, &rest);
    }
    match (m, l) {
        ("GET", []) => {
            if let Err(e) = require(&req.app, read) {
                return e;
            }
            list::entity(t, req, t.get(kind, id).unwrap())
        }
        ("PATCH", []) => {
            if let Err(e) = require(&req.app, write) {
                return e;
            }
            let body = match req.json_body() {
                Ok(b) => b,
                Err(e) => return e,
            };
            patch(t, req, kind, id, body)
        }
        ("DELETE", []) => {
            if let Err(e) = require(&req.app, write) {
                return e;
            }
            if kind == Kind::RoleDefinition
                && t.get(kind, id).and_then(|o| o.data.get("isBuiltIn")) == Some(&json!(true))
            {
                return Resp::error(
                    400,
                    "Request_BadRequest",
                    "Built-in role definitions cannot be deleted.",
                );
            }
            if kind == Kind::NamedLocation {
                let used = t.map(Kind::CaPolicy).values().any(|p| {
                    p.is_live()
                        && p.data
                            .get("conditions")
                            .map(|c| c.to_string().contains(&**id))
                            .unwrap_or(false)
                });
                if used {
                    return Resp::error(400, "BadRequest", "1029: The named location is referenced by one or more Conditional Access policies and cannot be deleted.");
                }
            }
            if kind == Kind::AuthContext {
                let used = t.map(Kind::CaPolicy).values().any(|p| {
                    p.is_live()
                        && p.data
                            .get("conditions")
                            .and_then(|c| {
                                c.pointer(
                                    "/applications/includeAuthenticationContextClassReferences",
                                )
                            })
                            .and_then(Value::as_array)
                            .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(&**id)))
                });
                if used {
                    return Resp::error(400, "BadRequest", "The authentication context is referenced by one or more Conditional Access policies and cannot be deleted.");
                }
            }
            if kind == Kind::Domain {
                let o = t.get(kind, id).unwrap();
                if o.data.get("isDefault") == Some(&json!(true))
                    || o.data.get("isInitial") == Some(&json!(true))
                {
                    return Resp::bad_request("The default or initial domain cannot be deleted.");
                }
            }
            if kind == Kind::DirectoryRole {
                return Resp::method_not_allowed();
            }
            let assignment = (kind == Kind::RoleAssignment)
                .then(|| {
                    t.get(kind, id).map(|o| {
                        (
                            o.str("roleDefinitionId").unwrap_or("").to_string(),
                            o.str("principalId").unwrap_or("").to_string(),
                            o.str("directoryScopeId").unwrap_or("").to_string(),
                        )
                    })
                })
                .flatten();
            t.delete(kind, id);
            if let Some((role, principal, scope)) = assignment {
                if scope == "/" {
                    sync_directory_role(t, &role, &principal);
                }
            }
            Resp::no_content()
        }
        // ------------------------------------------------------------ relationships
        ("GET", [rel @ ("members" | "owners"), tail @ ..])
            if matches!(
                kind,
                Kind::Group
                    | Kind::AdministrativeUnit
                    | Kind::DirectoryRole
                    | Kind::Application
                    | Kind::ServicePrincipal
            ) =>
        {
            let p = if *rel == "members" {
                if kind == Kind::Group {
                    perms::MEMBERS_R
                } else {
                    read
                }
            } else {
                read
            };
            if let Err(e) = require(&req.app, p) {
                return e;
            }
            let relname = if *rel == "members" { MEMBERS } else { OWNERS };
            let o = t.get(kind, id).unwrap();
            let mut objs: Vec<&Stored> = o.link(relname).filter_map(|i| t.find_live(i)).collect();
            match tail {
                [] => {}
                ["$count"] => return list::count(req, objs.len()),
                ["$ref"] => {
                    let vals: Vec<Value> = objs.iter().map(|o| json!({"@odata.id": format!("https://graph.microsoft.com/v2/{}/directoryObjects/{}/Microsoft.DirectoryServices.{}", t.tenant_id, o.id, capitalize(o.kind.odata_type_name()))})).collect();
                    return Resp::ok(
                        json!({"@odata.context": format!("{}/{}/$metadata#directoryObjects", req.base, req.version), "value": vals}),
                    );
                }
                [cast] if cast.starts_with("microsoft.graph.") => {
                    let want = &cast["microsoft.graph.".len()..];
                    objs.retain(|o| o.kind.odata_type_name().eq_ignore_ascii_case(want));
                }
                _ => return Resp::bad_request("Unsupported segment."),
            }
            let ctx = format!("{}('{}')/{}", kind.context(), id, rel);
            list::list(t, req, spec(None, ctx, objs, true))
        }
        ("GET", ["transitivemembers", ..]) if kind == Kind::Group => {
            if let Err(e) = require(&req.app, perms::MEMBERS_R) {
                return e;
            }
            let mut seen = std::collections::BTreeSet::new();
            let mut stack = vec![id.clone()];
            while let Some(g) = stack.pop() {
                if let Some(o) = t.live(Kind::Group, &g) {
                    for m in o.link(MEMBERS) {
                        if seen.insert(m.clone()) && t.kind_of.get(m) == Some(&Kind::Group) {
                            stack.push(m.clone());
                        }
                    }
                }
            }
            let objs: Vec<&Stored> = seen.iter().filter_map(|i| t.find_live(i)).collect();
            if l.get(1) == Some(&"$count") {
                return list::count(req, objs.len());
            }
            list::list(
                t,
                req,
                spec(
                    None,
                    format!("groups('{id}')/transitiveMembers"),
                    objs,
                    true,
                ),
            )
        }
        ("POST", [rel @ ("members" | "owners"), "$ref"]) => {
            let p = if kind == Kind::Group {
                perms::MEMBERS_W
            } else {
                write
            };
            if let Err(e) = require(&req.app, p) {
                return e;
            }
            let target = match ref_target(req) {
                Ok(t) => t,
                Err(e) => return e,
            };
            add_ref(
                t,
                kind,
                id,
                if *rel == "members" { MEMBERS } else { OWNERS },
                &target,
            )
        }
        ("DELETE", [rel @ ("members" | "owners"), _, "$ref"]) => {
            let p = if kind == Kind::Group {
                perms::MEMBERS_W
            } else {
                write
            };
            if let Err(e) = require(&req.app, p) {
                return e;
            }
            let relname = if *rel == "members" { MEMBERS } else { OWNERS };
            let mid = s[1];
            if relname == OWNERS && kind == Kind::Group {
                let n = t.get(kind, id).map(|o| o.link(OWNERS).count()).unwrap_or(0);
                let unified = t.get(kind, id).is_some_and(|o| {
                    o.data
                        .get("groupTypes")
                        .is_some_and(|g| g.to_string().contains("Unified"))
                });
                if n <= 1 && unified {
                    return Resp::bad_request("The group must have at least one owner, hence this owner cannot be removed.");
                }
            }
            if t.remove_link(kind, id, relname, mid) {
                if kind == Kind::DirectoryRole {
                    // Legacy API: the tenant-wide role assignment goes too.
                    let tpl = t
                        .get(kind, id)
                        .and_then(|o| o.str("roleTemplateId"))
                        .unwrap_or("")
                        .to_string();
                    let doomed: Vec<Id> = t
                        .map(Kind::RoleAssignment)
                        .values()
                        .filter(|a| {
                            a.is_live()
                                && a.str("roleDefinitionId") == Some(&tpl)
                                && a.str("principalId") == Some(mid)
                                && a.str("directoryScopeId") == Some("/")
                        })
                        .map(|a| a.id.clone())
                        .collect();
                    for a in doomed {
                        t.hard_delete(Kind::RoleAssignment, &a);
                    }
                }
                Resp::no_content()
            } else {
                Resp::not_found(mid)
            }
        }
        ("DELETE", [rel @ ("members" | "owners"), "$ref"]) => {
            // DELETE .../members/$ref?$id=https://graph.microsoft.com/v1.0/directoryObjects/{id}
            let p = if kind == Kind::Group {
                perms::MEMBERS_W
            } else {
                write
            };
            if let Err(e) = require(&req.app, p) {
                return e;
            }
            let Some(mid) = req.q("$id").and_then(ref_id) else {
                return Resp::bad_request("$id is required.");
            };
            if t.remove_link(
                kind,
                id,
                if *rel == "members" { MEMBERS } else { OWNERS },
                &mid,
            ) {
                Resp::no_content()
            } else {
                Resp::not_found(&mid)
            }
        }
        ("GET", [rel @ ("memberof" | "transitivememberof"), tail @ ..]) => {
            if let Err(e) = require(&req.app, read) {
                return e;
            }
            let mut out: Vec<Id> = t
                .member_of
                .get(id)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            if *rel == "transitivememberof" {
                let mut i = 0;
                while i < out.len() {
                    let more: Vec<Id> = t
                        .member_of
                        .get(&out[i])
                        .map(|s| s.iter().cloned().collect())
                        .unwrap_or_default();
                    for x in more {
                        if !out.contains(&x) {
                            out.push(x);
                        }
                    }
                    i += 1;
                }
            }
            let mut objs: Vec<&Stored> = out.iter().filter_map(|i| t.find_live(i)).collect();
            if let [cast] = tail {
                let want = cast.trim_start_matches("microsoft.graph.");
                objs.retain(|o| o.kind.odata_type_name().eq_ignore_ascii_case(want));
            }
            list::list(
                t,
                req,
                spec(None, "directoryObjects".to_string(), objs, true),
            )
        }
        ("GET", ["manager"]) if kind == Kind::User => {
            if let Err(e) = require(&req.app, read) {
                return e;
            }
            match t
                .get(kind, id)
                .and_then(|o| o.link("manager").next().cloned())
                .and_then(|m| t.render_ref(&m, None))
            {
                Some(mut m) => {
                    m.shift_insert(
                        0,
                        "@odata.context".into(),
                        json!(format!(
                            "{}/{}/$metadata#directoryObjects/$entity",
                            req.base, req.version
                        )),
                    );
                    Resp::ok(Value::Object(m))
                }
                None => Resp::not_found("manager"),
            }
        }
        ("PUT", ["manager", "$ref"]) if kind == Kind::User => {
            if let Err(e) = require(&req.app, write) {
                return e;
            }
            let target = match ref_target(req) {
                Ok(t) => t,
                Err(e) => return e,
            };
            let Some(mgr) = t.live(Kind::User, &target).map(|o| o.id.clone()) else {
                return Resp::not_found(&target);
            };
            let old: Vec<Id> = t
                .get(kind, id)
                .map(|o| o.link("manager").cloned().collect())
                .unwrap_or_default();
            for o in old {
                t.remove_link(kind, id, MANAGER, &o);
            }
            t.add_link(kind, id, MANAGER, &mgr);
            Resp::no_content()
        }
        ("DELETE", ["manager", "$ref"]) if kind == Kind::User => {
            if let Err(e) = require(&req.app, write) {
                return e;
            }
            let old: Vec<Id> = t
                .get(kind, id)
                .map(|o| o.link("manager").cloned().collect())
                .unwrap_or_default();
            if old.is_empty() {
                return Resp::not_found("manager");
            }
            for o in old {
                t.remove_link(kind, id, MANAGER, &o);
            }
            Resp::no_content()
        }
        ("GET", ["directreports"]) if kind == Kind::User => {
            if let Err(e) = require(&req.app, read) {
                return e;
            }
            let objs: Vec<&Stored> = t
                .map(Kind::User)
                .values()
                .filter(|u| u.is_live() && u.link("manager").any(|m| m == id))
                .collect();
            list::list(t, req, spec(None, "directoryObjects".into(), objs, true))
        }
        // ------------------------------------------------------------ app role assignments, grants
        ("GET", [rel @ ("approleassignments" | "approleassignedto")]) => {
            if let Err(e) = require(&req.app, read) {
                return e;
            }
            let field = if *rel == "approleassignments" {
                "principalId"
            } else {
                "resourceId"
            };
            if *rel == "approleassignedto" && kind != Kind::ServicePrincipal {
                return Resp::bad_request(
                    "appRoleAssignedTo is only available on service principals.",
                );
            }
            let objs: Vec<&Stored> = t
                .map(Kind::AppRoleAssignment)
                .values()
                .filter(|a| a.is_live() && a.str(field) == Some(&**id))
                .collect();
            let ctx = format!(
                "{}('{id}')/{}",
                kind.context(),
                if *rel == "approleassignments" {
                    "appRoleAssignments"
                } else {
                    "appRoleAssignedTo"
                }
            );
            list::list(
                t,
                req,
                spec(Some(Kind::AppRoleAssignment), ctx, objs, false),
            )
        }
        ("POST", [rel @ ("approleassignments" | "approleassignedto")]) => {
            if let Err(e) = require(&req.app, perms::APP_ROLE_ASSIGN_W) {
                return e;
            }
            let body = match req.json_body() {
                Ok(b) => b,
                Err(e) => return e,
            };
            create_app_role_assignment(t, id, rel, body)
        }
        ("DELETE", ["approleassignments" | "approleassignedto", _]) => {
            if let Err(e) = require(&req.app, perms::APP_ROLE_ASSIGN_W) {
                return e;
            }
            let aid = s[1];
            match t.live(Kind::AppRoleAssignment, aid) {
                Some(a)
                    if a.str("principalId") == Some(&**id)
                        || a.str("resourceId") == Some(&**id) =>
                {
                    t.hard_delete(Kind::AppRoleAssignment, aid);
                    Resp::no_content()
                }
                _ => Resp::not_found(aid),
            }
        }
        ("GET", ["oauth2permissiongrants"]) if kind == Kind::ServicePrincipal => {
            if let Err(e) = require(&req.app, perms::GRANTS_R) {
                return e;
            }
            let objs: Vec<&Stored> = t
                .map(Kind::OAuth2Grant)
                .values()
                .filter(|a| a.is_live() && a.str("clientId") == Some(&**id))
                .collect();
            list::list(
                t,
                req,
                spec(
                    Some(Kind::OAuth2Grant),
                    "oauth2PermissionGrants".into(),
                    objs,
                    false,
                ),
            )
        }
        // ------------------------------------------------------------ application sub-resources
        (_, [coll @ ("federatedidentitycredentials" | "extensionproperties"), ..])
            if kind == Kind::Application =>
        {
            let p = if m == "GET" { read } else { write };
            if let Err(e) = require(&req.app, p) {
                return e;
            }
            let name = if *coll == "federatedidentitycredentials" {
                "federatedIdentityCredentials"
            } else {
                "extensionProperties"
            };
            children(t, req, kind, id, name, &s[1..])
        }
        (_, ["scopedrolemembers", ..]) if kind == Kind::AdministrativeUnit => {
            let p = if m == "GET" { read } else { perms::ROLES_W };
            if let Err(e) = require(&req.app, p) {
                return e;
            }
            children(t, req, kind, id, "scopedRoleMembers", &s[1..])
        }
        ("POST", ["addpassword"]) if matches!(kind, Kind::Application | Kind::ServicePrincipal) => {
            if let Err(e) = require(&req.app, write) {
                return e;
            }
            let body: Map<String, Value> = req.json_body().unwrap_or_default();
            let cred = body
                .get("passwordCredential")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let now = t.now();
            let key_id = t.new_guid();
            let secret = {
                let raw = t.rng.bytes(30);
                let s = util::b64url(&raw).replace(['-', '_'], "~");
                format!("{}8Q~{}", &s[..3], &s[3..])
            };
            let entry = json!({"customKeyIdentifier": null, "displayName": cred.get("displayName").cloned().unwrap_or(Value::Null),
                "endDateTime": cred.get("endDateTime").cloned().unwrap_or(json!(util::iso(now + 2 * 365 * 86400))),
                "hint": &secret[..3], "keyId": key_id, "secretText": null,
                "startDateTime": cred.get("startDateTime").cloned().unwrap_or(json!(util::iso(now)))});
            let mut list = t
                .get(kind, id)
                .and_then(|o| o.data.get("passwordCredentials"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            list.push(entry.clone());
            t.update(
                kind,
                id,
                Map::from_iter([("passwordCredentials".to_string(), Value::Array(list))]),
            );
            t.get_mut(kind, id)
                .unwrap()
                .secrets
                .push((key_id, secret.clone()));
            let mut out = entry;
            out["secretText"] = json!(secret);
            out.as_object_mut().unwrap().shift_insert(
                0,
                "@odata.context".into(),
                json!(format!(
                    "{}/{}/$metadata#microsoft.graph.passwordCredential",
                    req.base, req.version
                )),
            );
            Resp::ok(out)
        }
        ("POST", ["removepassword"])
            if matches!(kind, Kind::Application | Kind::ServicePrincipal) =>
        {
            if let Err(e) = require(&req.app, write) {
                return e;
            }
            let body = match req.json_body() {
                Ok(b) => b,
                Err(e) => return e,
            };
            let Some(key) = body
                .get("keyId")
                .and_then(Value::as_str)
                .map(str::to_string)
            else {
                return Resp::bad_request("keyId is required.");
            };
            let list: Vec<Value> = t
                .get(kind, id)
                .and_then(|o| o.data.get("passwordCredentials"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if !list
                .iter()
                .any(|c| c.get("keyId").and_then(Value::as_str) == Some(&key))
            {
                return Resp::error(
                    404,
                    "Request_ResourceNotFound",
                    &format!("No password credential found with keyId {key}."),
                );
            }
            let kept: Vec<Value> = list
                .into_iter()
                .filter(|c| c.get("keyId").and_then(Value::as_str) != Some(&key))
                .collect();
            t.update(
                kind,
                id,
                Map::from_iter([("passwordCredentials".to_string(), Value::Array(kept))]),
            );
            t.get_mut(kind, id)
                .unwrap()
                .secrets
                .retain(|(k, _)| *k != key);
            Resp::no_content()
        }
        ("GET", ["drive" | "drives"]) | ("GET", ["drive", ..])
            if matches!(kind, Kind::User | Kind::Group) =>
        {
            crate::drive::handle(t, req)
        }
        ("POST", ["updateallowedcombinations"]) if kind == Kind::AuthStrength => {
            if let Err(e) = require(&req.app, write) {
                return e;
            }
            let body = match req.json_body() {
                Ok(b) => b,
                Err(e) => return e,
            };
            update_allowed_combinations(t, req, id, body)
        }
        ("POST", [_]) => Resp::method_not_allowed(),
        _ => Resp::error(
            400,
            "Request_BadRequest",
            &format!("Unsupported request: {} {}", req.method, req.path()),
        ),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// The object id named by a `$ref` body: `{"@odata.id": ".../directoryObjects/{id}"}`.
fn ref_target(req: &Req) -> Result<String, Resp> {
    let body = req.json_body()?;
    body.get("@odata.id")
        .and_then(Value::as_str)
        .and_then(ref_id)
        .ok_or_else(|| Resp::bad_request("The request body must contain a valid @odata.id."))
}

/// Extracts the object id from `https://graph.microsoft.com/v1.0/directoryObjects/{id}` (or users/, groups/ ...).
pub fn ref_id(url: &str) -> Option<String> {
    let url = url.trim_end_matches('/');
    let last = url.rsplit('/').next()?;
    let last = if last.starts_with("Microsoft.DirectoryServices") {
        url.rsplit('/').nth(1)?
    } else {
        last
    };
    let last = last
        .trim_start_matches("directoryObjects('")
        .trim_end_matches("')");
    (!last.is_empty()).then(|| last.to_string())
}

fn add_ref(t: &mut Tenant, kind: Kind, id: &Id, rel: &'static str, target: &str) -> Resp {
    let Some(tk) = t.find_live(target).map(|o| o.kind) else {
        return Resp::not_found(target);
    };
    if rel == MEMBERS {
        if kind == Kind::Group
            && t.get(kind, id).is_some_and(|o| {
                o.data
                    .get("groupTypes")
                    .is_some_and(|g| g.to_string().contains("DynamicMembership"))
            })
        {
            return Resp::bad_request("Insufficient privileges to complete the operation. Members of a group with dynamic membership cannot be added or removed manually.");
        }
        if !tk.is_principal() {
            return Resp::bad_request("Invalid object type for a member.");
        }
        if kind == Kind::Group && &**id == target {
            return Resp::bad_request("A group cannot be a member of itself.");
        }
        if kind == Kind::DirectoryRole {
            // Legacy API: adding a member creates the tenant-wide role assignment.
            let tpl = t
                .get(kind, id)
                .and_then(|o| o.str("roleTemplateId"))
                .unwrap_or("")
                .to_string();
            let exists = t.map(Kind::RoleAssignment).values().any(|a| {
                a.is_live()
                    && a.str("roleDefinitionId") == Some(&tpl)
                    && a.str("principalId") == Some(target)
                    && a.str("directoryScopeId") == Some("/")
            });
            if !exists && !t.is_member(kind, id, target) {
                let rid = gen::role_assignment_id(&tpl, target, 1);
                t.insert(Kind::RoleAssignment, json!({"id": rid, "principalId": target, "roleDefinitionId": tpl, "directoryScopeId": "/", "resourceScope": "/"}).as_object().cloned().unwrap_or_default());
            }
        }
    } else if tk != Kind::User && tk != Kind::ServicePrincipal {
        return Resp::bad_request("Owners must be users or service principals.");
    }
    let target: Id = t.find_live(target).unwrap().id.clone();
    if t.add_link(kind, id, rel, &target) {
        Resp::no_content()
    } else {
        Resp::bad_request(&format!("One or more added object references already exist for the following modified properties: '{rel}'."))
    }
}

/// Keeps `/directoryRoles/{id}/members` in step with tenant-wide role assignments: removes the
/// principal from the activated role when no assignment of that role remains.
fn sync_directory_role(t: &mut Tenant, role_def: &str, principal: &str) {
    let still = t.map(Kind::RoleAssignment).values().any(|a| {
        a.is_live()
            && a.str("roleDefinitionId") == Some(role_def)
            && a.str("principalId") == Some(principal)
            && a.str("directoryScopeId") == Some("/")
    });
    if still {
        return;
    }
    let role = t
        .map(Kind::DirectoryRole)
        .values()
        .find(|r| r.is_live() && r.str("roleTemplateId") == Some(role_def))
        .map(|r| r.id.clone());
    if let Some(role) = role {
        t.remove_link(Kind::DirectoryRole, &role, MEMBERS, principal);
    }
}

/// Contained collections (federated credentials, extension properties, scoped role members).
fn children(t: &mut Tenant, req: &Req, kind: Kind, id: &Id, name: &str, s: &[&str]) -> Resp {
    let list: Vec<Obj> = t
        .get(kind, id)
        .and_then(|o| o.children.get(name))
        .cloned()
        .unwrap_or_default();
    let ctx = format!(
        "{}/{}/$metadata#{}('{id}')/{name}",
        req.base,
        req.version,
        kind.context()
    );
    match (req.method.as_str(), s) {
        ("GET", []) => {
            let n = list.len();
            Resp::ok(json!({"@odata.context": ctx, "value": list})).with_objects(n)
        }
        ("GET", [cid]) => match list.iter().find(|c| {
            c.get("id").and_then(Value::as_str) == Some(cid)
                || c.get("name").and_then(Value::as_str) == Some(cid)
        }) {
            Some(c) => {
                let mut c = c.clone();
                c.shift_insert(0, "@odata.context".into(), json!(format!("{ctx}/$entity")));
                Resp::ok(Value::Object(c))
            }
            None => Resp::not_found(cid),
        },
        ("POST", []) => {
            let body = match req.json_body() {
                Ok(b) => b,
                Err(e) => return e,
            };
            let new = match name {
                "federatedIdentityCredentials" => {
                    let (Some(n), Some(iss), Some(sub)) = (
                        body.get("name").and_then(Value::as_str),
                        body.get("issuer").and_then(Value::as_str),
                        body.get("subject").and_then(Value::as_str),
                    ) else {
                        return Resp::bad_request("name, issuer and subject are required.");
                    };
                    if n.len() > 120 {
                        return Resp::bad_request("name must be at most 120 characters.");
                    }
                    let auds = body
                        .get("audiences")
                        .cloned()
                        .unwrap_or(json!(["api://AzureADTokenExchange"]));
                    if auds.as_array().map(|a| a.len()) != Some(1) {
                        return Resp::bad_request("audiences must contain exactly one value.");
                    }
                    if list.len() >= 20 {
                        return Resp::bad_request(
                            "An application can have at most 20 federated identity credentials.",
                        );
                    }
                    if list
                        .iter()
                        .any(|c| c.get("name").and_then(Value::as_str) == Some(n))
                    {
                        return Resp::error(
                            409,
                            "Request_MultipleObjectsWithSameKeyValue",
                            "FederatedIdentityCredential with name already exists.",
                        );
                    }
                    if list.iter().any(|c| {
                        c.get("issuer").and_then(Value::as_str) == Some(iss)
                            && c.get("subject").and_then(Value::as_str) == Some(sub)
                    }) {
                        return Resp::error(409, "Request_MultipleObjectsWithSameKeyValue", "FederatedIdentityCredential with the same issuer and subject already exists.");
                    }
                    let fid = t.new_guid();
                    let v = json!({"@odata.id": format!("https://graph.microsoft.com/v2/{}/directoryObjects/$/Microsoft.DirectoryServices.Application('{id}')/federatedIdentityCredentials/{fid}", t.tenant_id),
                        "id": fid, "name": n, "issuer": iss, "subject": sub, "description": body.get("description").cloned().unwrap_or(Value::Null), "audiences": auds});
                    v
                }
                "extensionProperties" => {
                    let Some(n) = body.get("name").and_then(Value::as_str) else {
                        return Resp::bad_request("name is required.");
                    };
                    let app_id = t
                        .get(kind, id)
                        .and_then(|o| o.str("appId"))
                        .unwrap_or("")
                        .replace('-', "");
                    json!({"id": t.new_guid(), "deletedDateTime": null, "appDisplayName": t.get(kind, id).and_then(|o| o.str("displayName")),
                        "dataType": body.get("dataType").cloned().unwrap_or(json!("String")), "isMultiValued": body.get("isMultiValued").cloned().unwrap_or(json!(false)),
                        "isSyncedFromOnPremises": false, "name": format!("extension_{app_id}_{n}"), "targetObjects": body.get("targetObjects").cloned().unwrap_or(json!(["User"]))})
                }
                _ => {
                    let Some(role) = body.get("roleId").and_then(Value::as_str) else {
                        return Resp::bad_request("roleId is required.");
                    };
                    let Some(pid) = body.pointer("/roleMemberInfo/id").and_then(Value::as_str)
                    else {
                        return Resp::bad_request("roleMemberInfo.id is required.");
                    };
                    let Some(dn) = t
                        .find_live(pid)
                        .map(|p| p.data.get("displayName").cloned().unwrap_or(Value::Null))
                    else {
                        return Resp::not_found(pid);
                    };
                    json!({"id": util::b64url(&t.rng.bytes(24)), "administrativeUnitId": &**id, "roleId": role,
                        "roleMemberInfo": {"id": pid, "displayName": dn}})
                }
            };
            let seq = t.next_seq();
            let o = t.get_mut(kind, id).unwrap();
            let mut stored = new.as_object().unwrap().clone();
            stored.remove("@odata.id");
            o.children.entry(name.to_string()).or_default().push(stored);
            o.seq = seq;
            let mut out = new;
            out.as_object_mut().unwrap().shift_insert(
                0,
                "@odata.context".into(),
                json!(format!("{ctx}/$entity")),
            );
            Resp::created(out)
        }
        ("PATCH", [cid]) if name == "federatedIdentityCredentials" => {
            let body = match req.json_body() {
                Ok(b) => b,
                Err(e) => return e,
            };
            if body.get("name").is_some() {
                return Resp::bad_request("Property 'name' is immutable.");
            }
            let seq = t.next_seq();
            let o = t.get_mut(kind, id).unwrap();
            let Some(c) = o.children.get_mut(name).and_then(|l| {
                l.iter_mut().find(|c| {
                    c.get("id").and_then(Value::as_str) == Some(cid)
                        || c.get("name").and_then(Value::as_str) == Some(cid)
                })
            }) else {
                return Resp::not_found(cid);
            };
            for (k, v) in body {
                if matches!(
                    k.as_str(),
                    "issuer" | "subject" | "audiences" | "description"
                ) {
                    c.insert(k, v);
                }
            }
            o.seq = seq;
            Resp::no_content()
        }
        ("DELETE", [cid]) => {
            let seq = t.next_seq();
            let o = t.get_mut(kind, id).unwrap();
            let l = o.children.entry(name.to_string()).or_default();
            let before = l.len();
            l.retain(|c| {
                c.get("id").and_then(Value::as_str) != Some(cid)
                    && c.get("name").and_then(Value::as_str) != Some(cid)
            });
            if l.len() == before {
                return Resp::not_found(cid);
            }
            o.seq = seq;
            Resp::no_content()
        }
        _ => Resp::method_not_allowed(),
    }
}

fn create_app_role_assignment(t: &mut Tenant, id: &Id, rel: &str, body: Obj) -> Resp {
    let (Some(pid), Some(rid), Some(role)) = (
        body.get("principalId").and_then(Value::as_str),
        body.get("resourceId").and_then(Value::as_str),
        body.get("appRoleId").and_then(Value::as_str),
    ) else {
        return Resp::bad_request("principalId, resourceId and appRoleId are required.");
    };
    if rel == "approleassignedto" && rid != &**id || rel == "approleassignments" && pid != &**id {
        return Resp::bad_request("The resourceId (appRoleAssignedTo) or principalId (appRoleAssignments) must match the object in the URL.");
    }
    let Some(principal) = t
        .find_live(pid)
        .map(|o| (o.kind, o.str("displayName").unwrap_or("").to_string()))
    else {
        return Resp::not_found(pid);
    };
    let Some(resource) = t.live(Kind::ServicePrincipal, rid) else {
        return Resp::not_found(rid);
    };
    let roles = resource
        .data
        .get("appRoles")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ok_role = role == "00000000-0000-0000-0000-000000000000"
        || roles
            .iter()
            .any(|r| r.get("id").and_then(Value::as_str) == Some(role));
    if !ok_role {
        return Resp::bad_request("Permission being assigned was not found on application");
    }
    let rname = resource.str("displayName").unwrap_or("").to_string();
    if t.map(Kind::AppRoleAssignment).values().any(|a| {
        a.is_live()
            && a.str("principalId") == Some(pid)
            && a.str("resourceId") == Some(rid)
            && a.str("appRoleId") == Some(role)
    }) {
        return Resp::error(
            409,
            "Request_BadRequest",
            "Permission being assigned already exists on the object",
        );
    }
    let aid = util::b64url(&t.rng.bytes(32));
    let now = t.now_iso();
    let a = json!({"id": aid, "appRoleId": role, "createdDateTime": now, "principalDisplayName": principal.1, "principalId": pid,
        "principalType": capitalize(principal.0.odata_type_name()), "resourceDisplayName": rname, "resourceId": rid});
    let aid = t.insert(Kind::AppRoleAssignment, a.as_object().unwrap().clone());
    let o = t.get(Kind::AppRoleAssignment, &aid).unwrap();
    let mut m = render::render(o, None);
    m.shift_insert(
        0,
        "@odata.context".into(),
        json!("$metadata#appRoleAssignments/$entity"),
    );
    Resp::created(Value::Object(m))
}

/// Properties Graph computes; on PATCH a different value is refused.
fn read_only(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::User => &[
            "id",
            "createdDateTime",
            "deletedDateTime",
            "securityIdentifier",
            "creationType",
            "lastPasswordChangeDateTime",
            "signInActivity",
            "assignedPlans",
            "proxyAddresses",
        ],
        Kind::Group => &[
            "id",
            "createdDateTime",
            "deletedDateTime",
            "mail",
            "proxyAddresses",
            "securityIdentifier",
            "renewedDateTime",
            "onPremisesSyncEnabled",
        ],
        Kind::Application => &[
            "id",
            "appId",
            "createdDateTime",
            "deletedDateTime",
            "publisherDomain",
            "passwordCredentials",
            "applicationTemplateId",
            "disabledByMicrosoftStatus",
            "certification",
            "verifiedPublisher",
        ],
        Kind::ServicePrincipal => &[
            "id",
            "appId",
            "createdDateTime",
            "deletedDateTime",
            "appOwnerOrganizationId",
            "appDisplayName",
            "passwordCredentials",
        ],
        Kind::CaPolicy | Kind::NamedLocation | Kind::AuthStrength => {
            &["id", "createdDateTime", "modifiedDateTime"]
        }
        Kind::RoleDefinition => &["id", "isBuiltIn", "templateId"],
        _ => &["id"],
    }
}

/// Properties ignored on create (Graph generates them).
fn ignored_on_create(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::User => &[
            "id",
            "createdDateTime",
            "deletedDateTime",
            "securityIdentifier",
            "creationType",
            "lastPasswordChangeDateTime",
            "signInActivity",
            "assignedPlans",
            "proxyAddresses",
            "mail",
        ],
        Kind::Group => &[
            "id",
            "createdDateTime",
            "deletedDateTime",
            "mail",
            "proxyAddresses",
            "securityIdentifier",
            "renewedDateTime",
            "expirationDateTime",
            "onPremisesSyncEnabled",
        ],
        Kind::Application => &[
            "id",
            "appId",
            "createdDateTime",
            "deletedDateTime",
            "publisherDomain",
            "passwordCredentials",
            "disabledByMicrosoftStatus",
            "certification",
            "verifiedPublisher",
        ],
        Kind::ServicePrincipal => &[
            "id",
            "createdDateTime",
            "deletedDateTime",
            "appOwnerOrganizationId",
            "passwordCredentials",
        ],
        Kind::RoleDefinition => &["id", "isBuiltIn", "templateId"],
        _ => &[
            "id",
            "createdDateTime",
            "modifiedDateTime",
            "deletedDateTime",
        ],
    }
}

fn bad(msg: &str) -> Resp {
    Resp::bad_request(msg)
}

/// Checks what a role assignment or eligibility names, in Graph's order: the role definition
/// and the principal exist (404), a principal that is not a user, group or service principal is
/// refused with `not_principal` when given, a group must be role-assignable, and the scope is
/// the tenant (`/`) or a live administrative unit. Returns the principal.
fn role_target<'t>(
    t: &'t Tenant,
    rd: &str,
    pid: &str,
    scope: &str,
    not_principal: Option<&str>,
) -> Result<&'t Stored, Resp> {
    if t.live(Kind::RoleDefinition, rd).is_none() {
        return Err(Resp::not_found(rd));
    }
    let Some(p) = t.find_live(pid) else {
        return Err(Resp::not_found(pid));
    };
    if let Some(msg) = not_principal.filter(|_| !p.kind.is_principal()) {
        return Err(bad(msg));
    }
    if p.kind == Kind::Group && p.data.get("isAssignableToRole") != Some(&json!(true)) {
        return Err(bad(
            "Only groups created with isAssignableToRole set to true can be assigned to roles.",
        ));
    }
    if let Some(au) = scope.strip_prefix("/administrativeUnits/") {
        if t.live(Kind::AdministrativeUnit, au).is_none() {
            return Err(Resp::not_found(au));
        }
    } else if scope != "/" {
        return Err(bad(
            "directoryScopeId must be '/' or '/administrativeUnits/{id}'.",
        ));
    }
    Ok(p)
}

fn domain_ok(t: &Tenant, upn: &str) -> bool {
    let Some((_, dom)) = upn.rsplit_once('@') else {
        return false;
    };
    t.map(Kind::Domain).values().any(|d| {
        d.is_live()
            && d.id.eq_ignore_ascii_case(dom)
            && d.data.get("isVerified") == Some(&json!(true))
    })
}

/// `xxx@odata.bind` references in a body: (relationship, ids).
fn binds(body: &Obj) -> Result<Vec<(&'static str, Vec<String>)>, Resp> {
    let mut out = vec![];
    let mut total = 0;
    for (k, v) in body {
        let Some(rel) = k.strip_suffix("@odata.bind") else {
            continue;
        };
        let rel: &'static str = match rel {
            "members" => MEMBERS,
            "owners" => OWNERS,
            _ => return Err(bad(&format!("Unsupported @odata.bind property '{k}'."))),
        };
        let urls: Vec<String> = match v {
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            Value::String(s) => vec![s.clone()],
            _ => return Err(bad("@odata.bind values must be URLs.")),
        };
        total += urls.len();
        out.push((rel, urls.iter().filter_map(|u| ref_id(u)).collect()));
    }
    if total > 20 {
        return Err(bad("The request exceeds the limit of 20 objects in @odata.bind (members and owners combined). Add the rest with POST .../members/$ref or JSON batching."));
    }
    Ok(out)
}

pub fn create(t: &mut Tenant, req: &Req, kind: Kind, mut body: Obj) -> Resp {
    let rels = match binds(&body) {
        Ok(b) => b,
        Err(e) => return e,
    };
    for (_, ids) in &rels {
        for i in ids {
            if t.find_live(i).is_none() {
                return Resp::not_found(i);
            }
        }
    }
    body.retain(|k, _| {
        !(k.ends_with("@odata.bind") || k.starts_with("@odata.") && k != "@odata.type")
    });
    for k in ignored_on_create(kind) {
        body.remove(*k);
    }
    let now = t.now_iso();
    let s = |b: &Obj, k: &str| b.get(k).and_then(Value::as_str).map(str::to_string);
    let new_id = t.new_guid();
    match kind {
        Kind::User => {
            for f in [
                "accountEnabled",
                "displayName",
                "mailNickname",
                "userPrincipalName",
                "passwordProfile",
            ] {
                if !body.contains_key(f) {
                    return bad(&format!(
                        "Property '{f}' is required when creating the entity."
                    ));
                }
            }
            if body
                .get("passwordProfile")
                .and_then(|p| p.get("password"))
                .and_then(Value::as_str)
                .is_none_or(|p| p.len() < 8)
            {
                return bad("The specified password does not comply with password complexity requirements. Please provide a different password.");
            }
            let upn = s(&body, "userPrincipalName").unwrap_or_default();
            if !upn.contains("#EXT#") && !domain_ok(t, &upn) {
                return bad("The domain portion of the userPrincipalName property is invalid. You must use one of the verified domain names in your organization.");
            }
            if t.upn_index.contains_key(&upn.to_ascii_lowercase()) {
                return bad("Another object with the same value for property userPrincipalName already exists.");
            }
            if let Some(n) = s(&body, "mailNickname") {
                if t.nick_index.contains_key(&n.to_ascii_lowercase()) {
                    return bad("Another object with the same value for property mailNickname already exists.");
                }
            }
            body.remove("passwordProfile");
            body.insert("createdDateTime".into(), json!(now));
            if !upn.contains("#EXT#") {
                body.insert("mail".into(), json!(upn));
                body.insert("proxyAddresses".into(), json!([format!("SMTP:{upn}")]));
            }
            body.entry("userType").or_insert(json!("Member"));
        }
        Kind::Group => {
            for f in [
                "displayName",
                "mailEnabled",
                "mailNickname",
                "securityEnabled",
            ] {
                if !body.contains_key(f) {
                    return bad(&format!(
                        "Property '{f}' is required when creating the entity."
                    ));
                }
            }
            for f in [
                "allowExternalSenders",
                "autoSubscribeNewMembers",
                "hideFromAddressLists",
                "hideFromOutlookClients",
                "isSubscribedByMail",
                "unseenCount",
            ] {
                if body.contains_key(f) {
                    return bad(&format!("Property '{f}' cannot be set in the initial POST request; set it with PATCH after the group is created."));
                }
            }
            let types = body
                .get("groupTypes")
                .cloned()
                .unwrap_or(json!([]))
                .to_string();
            let unified = types.contains("Unified");
            let mail = body.get("mailEnabled") == Some(&json!(true));
            if mail && !unified {
                return bad("Only Microsoft 365 groups and security groups can be created through Microsoft Graph (mail-enabled security groups and distribution lists cannot).");
            }
            if !mail && !unified && body.get("securityEnabled") != Some(&json!(true)) {
                return bad("A group must be a Microsoft 365 group or a security group.");
            }
            if types.contains("DynamicMembership") && s(&body, "membershipRule").is_none() {
                return bad("A dynamic group needs a membershipRule.");
            }
            let nick = s(&body, "mailNickname").unwrap_or_default();
            if t.nick_index.contains_key(&nick.to_ascii_lowercase()) {
                return bad(
                    "Another object with the same value for property mailNickname already exists.",
                );
            }
            if types.contains("DynamicMembership")
                && rels.iter().any(|(r, l)| *r == MEMBERS && !l.is_empty())
            {
                return bad("Members of a group with dynamic membership cannot be added manually.");
            }
            body.insert("createdDateTime".into(), json!(now));
            body.insert("renewedDateTime".into(), json!(now));
            let mut r = t.rng.clone();
            body.insert(
                "securityIdentifier".into(),
                json!(format!(
                    "S-1-12-1-{}-{}-{}-{}",
                    r.next_u64() as u32,
                    r.next_u64() as u32,
                    r.next_u64() as u32,
                    r.next_u64() as u32
                )),
            );
            t.rng = r;
            if unified {
                let addr = format!("{nick}@{}", t.domain);
                body.insert("mail".into(), json!(addr));
                body.insert("proxyAddresses".into(), json!([format!("SMTP:{addr}")]));
                body.entry("visibility").or_insert(json!("Public"));
            }
            if types.contains("DynamicMembership") {
                body.entry("membershipRuleProcessingState")
                    .or_insert(json!("On"));
            }
        }
        Kind::Application => {
            if s(&body, "displayName").is_none() {
                return bad("Property 'displayName' is required when creating the entity.");
            }
            if let Some(u) = s(&body, "uniqueName") {
                if t.map(kind).values().any(|o| {
                    o.is_live()
                        && o.str("uniqueName")
                            .is_some_and(|x| x.eq_ignore_ascii_case(&u))
                }) {
                    return bad("Another object with the same value for property uniqueName already exists.");
                }
            }
            body.insert("appId".into(), json!(t.new_guid()));
            body.insert("createdDateTime".into(), json!(now));
            body.insert("publisherDomain".into(), json!(t.domain));
            body.insert("passwordCredentials".into(), json!([]));
        }
        Kind::ServicePrincipal => {
            let Some(app_id) = s(&body, "appId") else {
                return bad("Property 'appId' is required when creating the entity.");
            };
            if t.sp_index.contains_key(&app_id.to_ascii_lowercase()) {
                return Resp::error(
                    409,
                    "Request_MultipleObjectsWithSameKeyValue",
                    "The service principal for this application already exists.",
                );
            }
            let Some(app) = t
                .app_index
                .get(&app_id.to_ascii_lowercase())
                .and_then(|a| t.live(Kind::Application, a))
            else {
                return bad(&format!("The appId '{app_id}' of the service principal does not reference a valid application object."));
            };
            let name = app.str("displayName").unwrap_or("").to_string();
            body.entry("displayName").or_insert(json!(name));
            body.insert("appDisplayName".into(), json!(name));
            body.insert("appOwnerOrganizationId".into(), json!(t.tenant_id));
            body.insert("servicePrincipalNames".into(), json!([app_id]));
            body.insert("createdDateTime".into(), json!(now));
            body.insert(
                "appRoles".into(),
                app.data.get("appRoles").cloned().unwrap_or(json!([])),
            );
            body.insert(
                "signInAudience".into(),
                app.data
                    .get("signInAudience")
                    .cloned()
                    .unwrap_or(json!("AzureADMyOrg")),
            );
        }
        Kind::AdministrativeUnit => {
            if s(&body, "displayName").is_none() {
                return bad("Property 'displayName' is required when creating the entity.");
            }
        }
        Kind::DirectoryRole => {
            let Some(tid) = s(&body, "roleTemplateId") else {
                return bad("Property 'roleTemplateId' is required.");
            };
            let Some((_, name, desc)) = gen::ROLE_TEMPLATES.iter().find(|r| r.0 == tid) else {
                return Resp::not_found(&tid);
            };
            if t.map(kind)
                .values()
                .any(|o| o.is_live() && o.str("roleTemplateId") == Some(&tid))
            {
                return bad("A conflicting object with one or more of the specified property values is present in the directory.");
            }
            body.insert("displayName".into(), json!(name));
            body.insert("description".into(), json!(desc));
        }
        Kind::RoleDefinition => {
            for f in ["displayName", "isEnabled", "rolePermissions"] {
                if !body.contains_key(f) {
                    return bad(&format!(
                        "Property '{f}' is required when creating the entity."
                    ));
                }
            }
            body.insert("templateId".into(), json!(new_id));
            body.insert("isBuiltIn".into(), json!(false));
            if let Some(Value::Array(rp)) = body.get_mut("rolePermissions") {
                for p in rp.iter_mut() {
                    if let Some(o) = p.as_object_mut() {
                        o.entry("condition").or_insert(Value::Null);
                    }
                }
            }
        }
        Kind::RoleAssignment => {
            let (Some(rd), Some(pid), Some(scope)) = (
                s(&body, "roleDefinitionId"),
                s(&body, "principalId"),
                s(&body, "directoryScopeId"),
            ) else {
                return bad("roleDefinitionId, principalId and directoryScopeId are required.");
            };
            let p = match role_target(t, &rd, &pid, &scope, None) {
                Ok(p) => p,
                Err(e) => return e,
            };
            if t.map(kind).values().any(|o| {
                o.is_live()
                    && o.str("roleDefinitionId") == Some(&rd)
                    && o.str("principalId") == Some(&pid)
                    && o.str("directoryScopeId") == Some(&scope)
            }) {
                return Resp::error(409, "Request_BadRequest", "A conflicting object with one or more of the specified property values is present in the directory.");
            }
            let rid = gen::role_assignment_id(&rd, &pid, 1 + (scope != "/") as u32);
            let rid = if t.get(kind, &rid).is_some() {
                format!("{rid}{}", t.seq)
            } else {
                rid
            };
            body.insert("id".into(), json!(rid));
            body.insert("resourceScope".into(), json!(scope));
            let pid_arc: Id = p.id.clone();
            body.remove("appScopeId");
            let role_tpl = gen::ROLE_TEMPLATES.iter().find(|r| r.0 == rd).map(|r| r.0);
            let created = t.insert(kind, body);
            if let (Some(tpl), "/") = (role_tpl, scope.as_str()) {
                let role = t
                    .map(Kind::DirectoryRole)
                    .values()
                    .find(|o| o.is_live() && o.str("roleTemplateId") == Some(tpl))
                    .map(|o| o.id.clone());
                let role = match role {
                    Some(r) => r,
                    None => {
                        let (_, name, desc) =
                            gen::ROLE_TEMPLATES.iter().find(|r| r.0 == tpl).unwrap();
                        let rid = t.new_guid();
                        t.insert(Kind::DirectoryRole, json!({"id": rid, "roleTemplateId": tpl, "displayName": name, "description": desc}).as_object().unwrap().clone())
                    }
                };
                t.add_link(Kind::DirectoryRole, &role, MEMBERS, &pid_arc);
            }
            return created_resp(t, req, kind, &created);
        }
        Kind::OAuth2Grant => {
            let (Some(cid), Some(ct), Some(rid)) = (
                s(&body, "clientId"),
                s(&body, "consentType"),
                s(&body, "resourceId"),
            ) else {
                return bad("clientId, consentType and resourceId are required.");
            };
            if ct != "AllPrincipals" && ct != "Principal" {
                return bad("consentType must be AllPrincipals or Principal.");
            }
            if t.live(Kind::ServicePrincipal, &cid).is_none() {
                return Resp::not_found(&cid);
            }
            if t.live(Kind::ServicePrincipal, &rid).is_none() {
                return Resp::not_found(&rid);
            }
            let pid = s(&body, "principalId");
            if ct == "Principal" {
                match &pid {
                    Some(p) if t.live(Kind::User, p).is_some() => {}
                    Some(p) => return Resp::not_found(p),
                    None => return bad("principalId is required when consentType is Principal."),
                }
            } else if pid.is_some() {
                return bad("principalId must be null when consentType is AllPrincipals.");
            }
            if t.map(kind).values().any(|o| {
                o.is_live()
                    && o.str("clientId") == Some(&cid)
                    && o.str("resourceId") == Some(&rid)
                    && o.str("consentType") == Some(&ct)
                    && o.str("principalId") == pid.as_deref()
            }) {
                return Resp::error(
                    409,
                    "Request_MultipleObjectsWithSameKeyValue",
                    "Permission entry already exists.",
                );
            }
            body.insert("id".into(), json!(util::b64url(&t.rng.bytes(32))));
            let created = t.insert(kind, body);
            return created_resp(t, req, kind, &created);
        }
        Kind::CaPolicy => {
            if let Err(e) = validate_ca(t, &body) {
                return e;
            }
            body.insert("createdDateTime".into(), json!(now));
            body.insert("modifiedDateTime".into(), Value::Null);
            body.remove("modifiedDateTime");
            let full = fill_defaults(
                &Value::Object(body.clone()),
                &Value::Object(schema(Kind::CaPolicy).props.clone()),
            );
            if let Some(c) = full.get("conditions") {
                body.insert("conditions".into(), c.clone());
            }
        }
        Kind::NamedLocation => {
            let ty = s(&body, "@odata.type").unwrap_or_default();
            if !ty.ends_with("ipNamedLocation") && !ty.ends_with("countryNamedLocation") {
                return Resp::error(400, "BadRequest", "The @odata.type must be #microsoft.graph.ipNamedLocation or #microsoft.graph.countryNamedLocation.");
            }
            if s(&body, "displayName").is_none() {
                return Resp::error(400, "BadRequest", "displayName is required.");
            }
            if ty.ends_with("ipNamedLocation")
                && body
                    .get("ipRanges")
                    .and_then(Value::as_array)
                    .is_none_or(|a| a.is_empty())
            {
                return Resp::error(
                    400,
                    "BadRequest",
                    "An IP named location needs at least one ipRange.",
                );
            }
            if ty.ends_with("countryNamedLocation")
                && body
                    .get("countriesAndRegions")
                    .and_then(Value::as_array)
                    .is_none_or(|a| a.is_empty())
            {
                return Resp::error(
                    400,
                    "BadRequest",
                    "A country named location needs countriesAndRegions.",
                );
            }
            body.insert(
                "@odata.type".into(),
                json!(if ty.starts_with('#') {
                    ty
                } else {
                    format!("#{ty}")
                }),
            );
            body.insert("createdDateTime".into(), json!(now));
            body.insert("modifiedDateTime".into(), json!(now));
        }
        Kind::AuthStrength => {
            if s(&body, "displayName").is_none()
                || body
                    .get("allowedCombinations")
                    .and_then(Value::as_array)
                    .is_none_or(|a| a.is_empty())
            {
                return bad("displayName and allowedCombinations are required.");
            }
            body.insert("policyType".into(), json!("custom"));
            body.insert("createdDateTime".into(), json!(now));
            body.insert("modifiedDateTime".into(), json!(now));
        }
        // Created (upserted) with PATCH on their tenant-chosen id, never POSTed.
        Kind::AuthContext => return Resp::method_not_allowed(),
        // Created through roleEligibilityScheduleRequests (adminAssign), never POSTed.
        Kind::RoleEligibility => return Resp::method_not_allowed(),
        Kind::Domain => {
            // The id is the only writable property on create.
            let Some(name) = req
                .json_body()
                .ok()
                .and_then(|b| b.get("id").and_then(Value::as_str).map(str::to_string))
            else {
                return bad("Property 'id' (the domain name) is required.");
            };
            if t.map(kind)
                .values()
                .any(|d| d.is_live() && d.id.eq_ignore_ascii_case(&name))
            {
                return Resp::error(
                    409,
                    "Request_BadRequest",
                    "Another object with the same value for property id already exists.",
                );
            }
            let d =
                json!({"id": name, "isVerified": false, "isDefault": false, "isInitial": false});
            let id = t.insert(kind, d.as_object().unwrap().clone());
            return created_resp(t, req, kind, &id);
        }
        Kind::AppRoleAssignment => {
            return bad(
                "Create app role assignments through servicePrincipals/{id}/appRoleAssignedTo.",
            )
        }
    }
    body.insert("id".into(), json!(new_id));
    let id = t.insert(kind, body);
    for (rel, ids) in rels {
        for i in ids {
            let target = t.find_live(&i).unwrap().id.clone();
            t.add_link(kind, &id, rel, &target);
        }
    }
    created_resp(t, req, kind, &id)
}

fn created_resp(t: &Tenant, req: &Req, kind: Kind, id: &Id) -> Resp {
    let o = t.get(kind, id).unwrap();
    let mut m = render::render(o, None);
    if matches!(
        kind,
        Kind::User
            | Kind::Group
            | Kind::Application
            | Kind::ServicePrincipal
            | Kind::AdministrativeUnit
    ) {
        m.shift_insert(0, "@odata.id".into(), json!(format!("https://graph.microsoft.com/v2/{}/directoryObjects/{id}/Microsoft.DirectoryServices.{}", t.tenant_id, capitalize(kind.odata_type_name()))));
    }
    m.shift_insert(
        0,
        "@odata.context".into(),
        json!(render::context(
            &req.base,
            &req.version,
            kind.context(),
            None,
            true
        )),
    );
    Resp::created(Value::Object(m)).with_objects(1)
}

fn validate_ca(t: &Tenant, body: &Obj) -> Result<(), Resp> {
    let err = |m: &str| Resp::error(400, "BadRequest", m);
    if body.get("displayName").and_then(Value::as_str).is_none() {
        return Err(err("1001: displayName is required."));
    }
    match body.get("state").and_then(Value::as_str) {
        Some("enabled" | "disabled" | "enabledForReportingButNotEnforced") => {}
        _ => {
            return Err(err(
                "1002: state must be enabled, disabled or enabledForReportingButNotEnforced.",
            ))
        }
    }
    let c = body.get("conditions").cloned().unwrap_or(Value::Null);
    let apps = c
        .pointer("/applications/includeApplications")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
        || c.pointer("/applications/includeUserActions")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
        || c.pointer("/applications/includeAuthenticationContextClassReferences")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
    let users = ["includeUsers", "includeGroups", "includeRoles"]
        .iter()
        .any(|k| {
            c.pointer(&format!("/users/{k}"))
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
        })
        || c.pointer("/users/includeGuestsOrExternalUsers")
            .is_some_and(|v| !v.is_null());
    let controls = body.get("grantControls").is_some_and(|g| !g.is_null())
        || body.get("sessionControls").is_some_and(|g| !g.is_null());
    if !apps || !users || !controls {
        return Err(err("1037: The policy needs an application condition, a user condition and a grant or session control."));
    }
    let ids = |path: &str| -> Vec<String> {
        c.pointer(path)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    for p in ["/users/includeUsers", "/users/excludeUsers"] {
        for i in ids(p) {
            if util::is_guid(&i) && t.live(Kind::User, &i).is_none() {
                return Err(err(&format!(
                    "1040: Invalid user id '{i}' in {p}: the object does not exist."
                )));
            }
        }
    }
    for p in ["/users/includeGroups", "/users/excludeGroups"] {
        for i in ids(p) {
            if t.live(Kind::Group, &i).is_none() {
                return Err(err(&format!(
                    "1040: Invalid group id '{i}' in {p}: the object does not exist."
                )));
            }
        }
    }
    for p in ["/users/includeRoles", "/users/excludeRoles"] {
        for i in ids(p) {
            if t.live(Kind::RoleDefinition, &i).is_none() {
                return Err(err(&format!(
                    "1040: Invalid role template id '{i}' in {p}."
                )));
            }
        }
    }
    for p in ["/locations/includeLocations", "/locations/excludeLocations"] {
        for i in ids(p) {
            if util::is_guid(&i)
                && i != "00000000-0000-0000-0000-000000000000"
                && t.live(Kind::NamedLocation, &i).is_none()
            {
                return Err(err(&format!(
                    "1040: Invalid named location id '{i}' in {p}."
                )));
            }
        }
    }
    if let Some(sid) = body
        .pointer("/grantControls/authenticationStrength/id")
        .and_then(Value::as_str)
    {
        if t.live(Kind::AuthStrength, sid).is_none() {
            return Err(err(&format!(
                "1040: Invalid authentication strength id '{sid}'."
            )));
        }
    }
    Ok(())
}

pub fn patch(t: &mut Tenant, _req: &Req, kind: Kind, id: &Id, mut body: Obj) -> Resp {
    let rels = match binds(&body) {
        Ok(b) => b,
        Err(e) => return e,
    };
    body.retain(|k, _| !k.ends_with("@odata.bind"));
    let o = t.get(kind, id).unwrap();
    if kind == Kind::RoleDefinition && o.data.get("isBuiltIn") == Some(&json!(true)) {
        return bad("Built-in role definitions cannot be modified.");
    }
    if kind == Kind::AuthStrength && o.str("policyType") == Some("builtIn") {
        return bad("Built-in authentication strengths cannot be modified.");
    }
    if kind == Kind::AuthStrength && body.contains_key("allowedCombinations") {
        return bad("Property 'allowedCombinations' cannot be updated with PATCH; use the updateAllowedCombinations action.");
    }
    if kind == Kind::RoleAssignment || kind == Kind::DirectoryRole {
        return Resp::method_not_allowed();
    }
    for k in read_only(kind) {
        if let Some(v) = body.get(*k) {
            if render::prop(o, k) != *v {
                if *k == "passwordCredentials" {
                    return bad("Property 'passwordCredentials' cannot be updated with PATCH; use addPassword and removePassword.");
                }
                return bad(&format!("Property '{k}' is read-only and cannot be set."));
            }
            body.remove(*k);
        }
    }
    if kind == Kind::Group
        && body.contains_key("isAssignableToRole")
        && body.get("isAssignableToRole") != o.data.get("isAssignableToRole")
    {
        return bad("Property 'isAssignableToRole' can only be set when the group is created.");
    }
    if kind == Kind::Domain {
        body.retain(|k, _| {
            matches!(
                k.as_str(),
                "isDefault"
                    | "supportedServices"
                    | "passwordValidityPeriodInDays"
                    | "passwordNotificationWindowInDays"
                    | "authenticationType"
            )
        });
    }
    if kind == Kind::User {
        body.remove("passwordProfile");
        if let Some(upn) = body.get("userPrincipalName").and_then(Value::as_str) {
            if !upn.eq_ignore_ascii_case(o.str("userPrincipalName").unwrap_or("")) {
                if t.upn_index.contains_key(&upn.to_ascii_lowercase()) {
                    return bad("Another object with the same value for property userPrincipalName already exists.");
                }
                if !domain_ok(t, upn) {
                    return bad("The domain portion of the userPrincipalName property is invalid. You must use one of the verified domain names in your organization.");
                }
            }
        }
    }
    if matches!(kind, Kind::User | Kind::Group) {
        if let Some(n) = body.get("mailNickname").and_then(Value::as_str) {
            if t.nick_index
                .get(&n.to_ascii_lowercase())
                .is_some_and(|other| other != id)
            {
                return bad(
                    "Another object with the same value for property mailNickname already exists.",
                );
            }
        }
    }
    if kind == Kind::CaPolicy {
        let merged = fill_defaults(&Value::Object(body.clone()), &Value::Object(o.data.clone()));
        if let Value::Object(m) = merged {
            if let Err(e) = validate_ca(t, &m) {
                return e;
            }
        }
        body.insert("modifiedDateTime".into(), json!(t.now_iso()));
    }
    if matches!(kind, Kind::NamedLocation | Kind::AuthStrength) {
        if body
            .get("@odata.type")
            .is_some_and(|v| Some(v) != o.data.get("@odata.type"))
            && kind == Kind::NamedLocation
        {
            return Resp::error(
                400,
                "BadRequest",
                "The @odata.type of a named location cannot change.",
            );
        }
        body.insert("modifiedDateTime".into(), json!(t.now_iso()));
    }
    for (_, ids) in &rels {
        for i in ids {
            if t.find_live(i).is_none() {
                return Resp::not_found(i);
            }
        }
    }
    if !body.is_empty() {
        t.update(kind, id, body);
    }
    for (rel, ids) in rels {
        for i in ids {
            let target = t.find_live(&i).unwrap().id.clone();
            if !t.add_link(kind, id, rel, &target) {
                return bad(&format!("One or more added object references already exist for the following modified properties: '{rel}'."));
            }
        }
    }
    Resp::no_content()
}

fn recycle(t: &mut Tenant, req: &Req, id: &str, rest: &[&str]) -> Resp {
    let Some(kind) = t.kind_of.get(id).copied() else {
        return Resp::not_found(id);
    };
    if !matches!(t.get(kind, id).map(|o| &o.life), Some(Life::Deleted(_))) {
        return Resp::not_found(id);
    }
    let (read, write) = auth::kind_perms(kind);
    match (req.method.as_str(), rest) {
        ("GET", []) => {
            if let Err(e) = require(&req.app, read) {
                return e;
            }
            let o = t.get(kind, id).unwrap();
            let mut m = list::render_for_list(t, o, None, None, true);
            m.shift_insert(
                0,
                "@odata.context".into(),
                json!(format!(
                    "{}/{}/$metadata#directory/deletedItems/$entity",
                    req.base, req.version
                )),
            );
            Resp::ok(Value::Object(m))
        }
        ("POST", ["restore"]) => {
            let p = if kind == Kind::User {
                perms::USERS_RESTORE
            } else {
                write
            };
            if let Err(e) = require(&req.app, p) {
                return e;
            }
            if kind == Kind::User {
                if let Some(new_upn) = req.json_body().ok().and_then(|b| {
                    b.get("newUserPrincipalName")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                }) {
                    t.get_mut(kind, id)
                        .unwrap()
                        .data
                        .insert("userPrincipalName".into(), json!(new_upn));
                }
            }
            if let Err(msg) = t.restore(kind, id) {
                return bad(&msg);
            }
            let o = t.get(kind, id).unwrap();
            let mut m = list::render_for_list(t, o, None, None, true);
            m.shift_insert(
                0,
                "@odata.context".into(),
                json!(format!(
                    "{}/{}/$metadata#directoryObjects/$entity",
                    req.base, req.version
                )),
            );
            Resp::ok(Value::Object(m))
        }
        ("DELETE", []) => {
            if let Err(e) = require(&req.app, write) {
                return e;
            }
            t.hard_delete(kind, id);
            Resp::no_content()
        }
        _ => Resp::method_not_allowed(),
    }
}

fn ca_recycle(t: &mut Tenant, req: &Req, kind: Kind, s: &[&str], l: &[&str]) -> Resp {
    let (read, write) = auth::kind_perms(kind);
    let deleted =
        |t: &Tenant, id: &str| matches!(t.get(kind, id).map(|o| &o.life), Some(Life::Deleted(_)));
    match (req.method.as_str(), l) {
        ("GET", []) => {
            if let Err(e) = require(&req.app, read) {
                return e;
            }
            let objs: Vec<&Stored> = t
                .map(kind)
                .values()
                .filter(|o| matches!(o.life, Life::Deleted(_)))
                .collect();
            let ctx = format!(
                "identity/conditionalAccess/deletedItems/{}",
                if kind == Kind::CaPolicy {
                    "policies"
                } else {
                    "namedLocations"
                }
            );
            list::list(t, req, spec(Some(kind), ctx, objs, false))
        }
        ("GET", [_]) => {
            if let Err(e) = require(&req.app, read) {
                return e;
            }
            if !deleted(t, s[0]) {
                return Resp::not_found(s[0]);
            }
            let o = t.get(kind, s[0]).unwrap();
            let mut m = render::render(o, None);
            m.insert(
                "deletedDateTime".into(),
                o.data
                    .get("deletedDateTime")
                    .cloned()
                    .unwrap_or(Value::Null),
            );
            Resp::ok(Value::Object(m))
        }
        ("POST", [_, "restore"]) => {
            if let Err(e) = require(&req.app, write) {
                return e;
            }
            if !deleted(t, s[0]) {
                return Resp::not_found(s[0]);
            }
            if let Err(m) = t.restore(kind, s[0]) {
                return bad(&m);
            }
            let o = t.get(kind, s[0]).unwrap();
            Resp::ok(Value::Object(render::render(o, None)))
        }
        ("DELETE", [_]) => {
            if let Err(e) = require(&req.app, write) {
                return e;
            }
            if !deleted(t, s[0]) {
                return Resp::not_found(s[0]);
            }
            t.hard_delete(kind, s[0]);
            Resp::no_content()
        }
        _ => Resp::method_not_allowed(),
    }
}

/// `POST /policies/authenticationStrengthPolicies/{id}/updateAllowedCombinations`: replaces the
/// combinations of a custom strength; answers with an `updateAllowedCombinationsResult`.
fn update_allowed_combinations(t: &mut Tenant, req: &Req, id: &Id, body: Obj) -> Resp {
    let o = t.get(Kind::AuthStrength, id).unwrap();
    if o.str("policyType") == Some("builtIn") {
        return bad("Built-in authentication strengths cannot be modified.");
    }
    let Some(combos) = body
        .get("allowedCombinations")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty() && a.iter().all(Value::is_string))
        .cloned()
    else {
        return bad(
            "allowedCombinations is required and must be a non-empty list of method combinations.",
        );
    };
    let previous = o
        .data
        .get("allowedCombinations")
        .cloned()
        .unwrap_or(json!([]));
    let referencing: Vec<Value> = t
        .map(Kind::CaPolicy)
        .values()
        .filter(|p| p.is_live())
        .filter(|p| {
            p.data
                .get("grantControls")
                .and_then(|g| g.pointer("/authenticationStrength/id"))
                .and_then(Value::as_str)
                .is_some_and(|s| s.eq_ignore_ascii_case(id))
        })
        .map(|p| json!(p.id.to_string()))
        .collect();
    let now = t.now_iso();
    if let Some(o) = t.get_mut(Kind::AuthStrength, id) {
        o.data
            .insert("allowedCombinations".into(), Value::Array(combos.clone()));
        o.data.insert("modifiedDateTime".into(), json!(now));
    }
    t.next_seq();
    Resp::ok(json!({
        "@odata.context": format!("{}/{}/$metadata#microsoft.graph.updateAllowedCombinationsResult", req.base, req.version),
        "additionalInformation": null,
        "conditionalAccessReferences": referencing,
        "currentCombinations": combos,
        "previousCombinations": previous,
    }))
}

fn slot<'a>(t: &'a mut Tenant, which: &str) -> &'a mut Obj {
    match which {
        "authorizationPolicy" => &mut t.authorization_policy,
        "securityDefaults" => &mut t.security_defaults,
        _ => &mut t.auth_methods_policy,
    }
}

fn singleton(t: &mut Tenant, req: &Req, which: &str) -> Resp {
    let (read, write): (&[&str], &[&str]) = match which {
        "authorizationPolicy" => (perms::POLICY_R, perms::AUTHZ_W),
        "securityDefaults" => (perms::POLICY_R, perms::CA_W),
        _ => (
            &["Policy.Read.All", "Policy.ReadWrite.AuthenticationMethod"],
            perms::AUTH_METHODS_W,
        ),
    };
    let ctx = match which {
        "authorizationPolicy" => "policies/authorizationPolicy/$entity",
        "securityDefaults" => "policies/identitySecurityDefaultsEnforcementPolicy/$entity",
        _ => "policies/authenticationMethodsPolicy/$entity",
    };
    match req.method.as_str() {
        "GET" => {
            if let Err(e) = require(&req.app, read) {
                return e;
            }
            let mut m = slot(t, which).clone();
            m.shift_insert(
                0,
                "@odata.context".into(),
                json!(format!("{}/{}/$metadata#{ctx}", req.base, req.version)),
            );
            Resp::ok(Value::Object(m)).with_objects(1)
        }
        "PATCH" => {
            if let Err(e) = require(&req.app, write) {
                return e;
            }
            let body = match req.json_body() {
                Ok(b) => b,
                Err(e) => return e,
            };
            let ro = [
                "id",
                "displayName",
                "description",
                "lastModifiedDateTime",
                "policyVersion",
                "@odata.context",
            ];
            let now = t.now_iso();
            let obj = slot(t, which);
            for (k, v) in &body {
                if ro.contains(&k.as_str()) && k != "@odata.context" && obj.get(k) != Some(v) {
                    return bad(&format!("Property '{k}' is read-only and cannot be set."));
                }
            }
            for (k, v) in body {
                if ro.contains(&k.as_str()) {
                    continue;
                }
                if k == "authenticationMethodConfigurations" {
                    return bad("Update method configurations through authenticationMethodConfigurations/{id}.");
                }
                if !obj.contains_key(&k) {
                    return bad(&format!("Invalid property '{k}'."));
                }
                obj.insert(k, v);
            }
            if which == "authenticationMethodsPolicy" {
                obj.insert("lastModifiedDateTime".into(), json!(now));
            }
            t.next_seq();
            Resp::no_content()
        }
        _ => Resp::method_not_allowed(),
    }
}

fn auth_method_config(t: &mut Tenant, req: &Req, id: Option<&str>) -> Resp {
    let read: &[&str] = &["Policy.Read.All", "Policy.ReadWrite.AuthenticationMethod"];
    let configs = t
        .auth_methods_policy
        .get("authenticationMethodConfigurations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    match (req.method.as_str(), id) {
        ("GET", None) => {
            if let Err(e) = require(&req.app, read) {
                return e;
            }
            Resp::ok(
                json!({"@odata.context": format!("{}/{}/$metadata#policies/authenticationMethodsPolicy/authenticationMethodConfigurations", req.base, req.version), "value": configs}),
            )
        }
        ("GET", Some(id)) => {
            if let Err(e) = require(&req.app, read) {
                return e;
            }
            match configs.iter().find(|c| {
                c.get("id")
                    .and_then(Value::as_str)
                    .is_some_and(|x| x.eq_ignore_ascii_case(id))
            }) {
                Some(c) => Resp::ok(c.clone()),
                None => Resp::not_found(id),
            }
        }
        ("PATCH", Some(id)) => {
            if let Err(e) = require(&req.app, perms::AUTH_METHODS_W) {
                return e;
            }
            let body = match req.json_body() {
                Ok(b) => b,
                Err(e) => return e,
            };
            let mut configs = configs;
            let Some(c) = configs
                .iter_mut()
                .find(|c| {
                    c.get("id")
                        .and_then(Value::as_str)
                        .is_some_and(|x| x.eq_ignore_ascii_case(id))
                })
                .and_then(Value::as_object_mut)
            else {
                return Resp::not_found(id);
            };
            match body.get("@odata.type") {
                None => return bad("The '@odata.type' of the authentication method configuration is required in the request body."),
                Some(ty) if c.get("@odata.type") != Some(ty) => {
                    return bad(&format!("The '@odata.type' {ty} does not match the authentication method configuration '{id}'."))
                }
                _ => {}
            }
            if body.get("id").is_some_and(|v| c.get("id") != Some(v)) {
                return bad("Property 'id' is read-only and cannot be set.");
            }
            for (k, v) in body {
                if k == "id" || k.starts_with("@odata") {
                    continue;
                }
                c.insert(k, v);
            }
            t.auth_methods_policy.insert(
                "authenticationMethodConfigurations".into(),
                Value::Array(configs),
            );
            t.auth_methods_policy
                .insert("lastModifiedDateTime".into(), json!(t.now_iso()));
            t.next_seq();
            Resp::no_content()
        }
        _ => Resp::method_not_allowed(),
    }
}

fn organization(t: &mut Tenant, req: &Req, id: Option<&str>) -> Resp {
    if let Some(id) = id {
        if !id.eq_ignore_ascii_case(&t.tenant_id) {
            return Resp::not_found(id);
        }
    }
    match (req.method.as_str(), id) {
        ("GET", None) => {
            if let Err(e) = require(&req.app, perms::ORG_R) {
                return e;
            }
            Resp::ok(json!({"@odata.context": format!("{}/{}/$metadata#organization", req.base, req.version), "value": [t.organization]})).with_objects(1)
        }
        ("GET", Some(_)) => {
            if let Err(e) = require(&req.app, perms::ORG_R) {
                return e;
            }
            let mut m = t.organization.clone();
            m.shift_insert(
                0,
                "@odata.context".into(),
                json!(format!(
                    "{}/{}/$metadata#organization/$entity",
                    req.base, req.version
                )),
            );
            Resp::ok(Value::Object(m))
        }
        ("PATCH", Some(_)) => {
            if let Err(e) = require(&req.app, perms::ORG_W) {
                return e;
            }
            let body = match req.json_body() {
                Ok(b) => b,
                Err(e) => return e,
            };
            let allowed = [
                "marketingNotificationEmails",
                "privacyProfile",
                "securityComplianceNotificationMails",
                "securityComplianceNotificationPhones",
                "technicalNotificationMails",
            ];
            for k in body.keys() {
                if !allowed.contains(&k.as_str()) {
                    return bad(&format!(
                        "Property '{k}' cannot be updated on the organization."
                    ));
                }
            }
            for (k, v) in body {
                t.organization.insert(k, v);
            }
            t.next_seq();
            Resp::no_content()
        }
        _ => Resp::method_not_allowed(),
    }
}

/// Used by the control API's churn: a fresh user body.
pub fn new_user_body(t: &mut Tenant, n: u64) -> Obj {
    let given = gen::GIVEN[t.rng.below(gen::GIVEN.len())];
    let sur = gen::SURNAMES[t.rng.below(gen::SURNAMES.len())];
    let nick = format!("{given}{}.churn{n}", &sur[..1]);
    let upn = format!("{nick}@{}", t.domain);
    json!({"id": t.new_guid(), "accountEnabled": true, "displayName": format!("{given} {sur}"), "givenName": given, "surname": sur,
        "mailNickname": nick, "userPrincipalName": upn, "mail": upn, "userType": "Member", "createdDateTime": t.now_iso(),
        "department": gen::DEPARTMENTS[t.rng.below(gen::DEPARTMENTS.len())].0})
    .as_object()
    .cloned()
    .unwrap_or_default()
}

/// Whether `id` is a valid authentication context id: `c1` … `c99`.
pub fn is_auth_context_id(id: &str) -> bool {
    id.strip_prefix('c')
        .filter(|n| !n.starts_with('0'))
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| (1..=99).contains(&n))
}

/// `PATCH /identity/conditionalAccess/authenticationContextClassReferences/{id}`: updates the
/// context, or creates it with that id when the tenant does not have it (Graph's upsert). Ids are
/// tenant-chosen, `c1` … `c99`; the writable properties are `displayName`, `description` and
/// `isAvailable`.
fn auth_context_upsert(t: &mut Tenant, req: &Req, seg: &str) -> Resp {
    if let Err(e) = require(&req.app, auth::kind_perms(Kind::AuthContext).1) {
        return e;
    }
    if !is_auth_context_id(seg) {
        return bad(&format!(
            "Invalid authentication context id '{seg}': ids are c1 through c99."
        ));
    }
    let mut body = match req.json_body() {
        Ok(b) => b,
        Err(e) => return e,
    };
    body.remove("@odata.type");
    if let Some(v) = body.remove("id") {
        if v.as_str() != Some(seg) {
            return bad("Property 'id' is read-only and does not match the id in the URL.");
        }
    }
    for (k, v) in &body {
        let ok = match k.as_str() {
            "displayName" => v.as_str().is_some_and(|s| !s.trim().is_empty()),
            "description" => v.is_string() || v.is_null(),
            "isAvailable" => v.is_boolean(),
            _ => return bad(&format!("Property '{k}' does not exist on type 'microsoft.graph.authenticationContextClassReference' or is not writable.")),
        };
        if !ok {
            return bad(&format!("Invalid value for property '{k}'."));
        }
    }
    let id: Id = Id::from(seg);
    if t.live(Kind::AuthContext, &id).is_some() {
        if !body.is_empty() {
            t.update(Kind::AuthContext, &id, body);
        }
        return Resp::no_content();
    }
    if !body.contains_key("displayName") {
        return bad("displayName is required to create an authentication context.");
    }
    body.insert("id".into(), json!(seg));
    body.entry("description").or_insert(Value::Null);
    body.entry("isAvailable").or_insert(json!(false));
    t.insert(Kind::AuthContext, body);
    Resp::no_content()
}

/// Graph's answer on PIM endpoints for a tenant without a Microsoft Entra ID P2 or Governance
/// licence (seen on `roleEligibilitySchedule*` paths; Microsoft documents no other shape).
fn pim_licensed(t: &Tenant) -> Result<(), Resp> {
    if t.pim_enabled() {
        Ok(())
    } else {
        Err(Resp::error(
            400,
            "AadPremiumLicenseRequired",
            "The tenant needs to have Microsoft Entra ID P2 or Microsoft Entra ID Governance license.",
        ))
    }
}

/// `POST /roleManagement/directory/roleEligibilityScheduleRequests`: `adminAssign` creates an
/// eligibility schedule (principal, role definition and directory scope must exist; a duplicate
/// gives 400 `RoleAssignmentExists`), `adminRemove` removes one (400 `RoleAssignmentDoesNotExist`
/// when there is none). The response is the request (201), as Graph answers; the schedule's id is
/// the request's `targetScheduleId` and its `createdUsing`.
fn eligibility_request(t: &mut Tenant, req: &Req) -> Resp {
    if let Err(e) = require(&req.app, auth::kind_perms(Kind::RoleEligibility).1) {
        return e;
    }
    if let Err(e) = pim_licensed(t) {
        return e;
    }
    let body = match req.json_body() {
        Ok(b) => b,
        Err(e) => return e,
    };
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let Some(action) = text("action") else {
        return bad("The request body must contain 'action'.");
    };
    let (Some(pid), Some(rd)) = (text("principalId"), text("roleDefinitionId")) else {
        return bad("principalId and roleDefinitionId are required.");
    };
    if matches!(body.get("appScopeId"), Some(Value::String(a)) if a != "/") {
        return bad("App-scoped role eligibility is not supported for directory roles; use directoryScopeId.");
    }
    let Some(scope) = text("directoryScopeId") else {
        return bad("Either directoryScopeId or appScopeId is required.");
    };
    let existing = t
        .map(Kind::RoleEligibility)
        .values()
        .find(|o| {
            o.is_live()
                && o.str("principalId") == Some(&pid)
                && o.str("roleDefinitionId") == Some(&rd)
                && o.str("directoryScopeId") == Some(&scope)
        })
        .map(|o| o.id.clone());
    let now = t.now_iso();
    let request_id = t.new_guid();
    let mut out = json!({
        "@odata.context": format!("{}/{}/$metadata#roleManagement/directory/roleEligibilityScheduleRequests/$entity", req.base, req.version),
        "id": request_id, "status": "Provisioned", "createdDateTime": now, "completedDateTime": now,
        "approvalId": null, "customData": null, "action": action, "principalId": pid,
        "roleDefinitionId": rd, "directoryScopeId": scope, "appScopeId": null,
        "isValidationOnly": false, "targetScheduleId": null,
        "justification": body.get("justification").cloned().unwrap_or(Value::Null),
        "createdBy": {"application": {"displayName": null, "id": req.app.as_ref().map(|a| a.client_id.clone())}, "device": null, "user": null},
        "scheduleInfo": null,
        "ticketInfo": {"ticketNumber": null, "ticketSystem": null}
    });
    match action.as_str() {
        "adminAssign" => {
            if let Err(e) = role_target(
                t,
                &rd,
                &pid,
                &scope,
                Some("The principal of a role eligibility must be a user, a group or a service principal."),
            ) {
                return e;
            }
            if existing.is_some() {
                return Resp::error(400, "RoleAssignmentExists", "The Role assignment already exists.");
            }
            let info = match schedule_info(body.get("scheduleInfo"), t.now()) {
                Ok(i) => i,
                Err(m) => return bad(&m),
            };
            out["status"] = json!("Provisioned");
            out["targetScheduleId"] = json!(request_id);
            out["scheduleInfo"] = info.clone();
            let d = json!({
                "id": request_id, "principalId": pid, "roleDefinitionId": rd, "directoryScopeId": scope,
                "appScopeId": null, "createdUsing": request_id, "createdDateTime": now,
                "modifiedDateTime": now, "status": "Provisioned", "memberType": "Direct",
                "scheduleInfo": info
            });
            t.insert(Kind::RoleEligibility, d.as_object().cloned().unwrap_or_default());
            Resp::created(out)
        }
        "adminRemove" => {
            let Some(id) = existing else {
                return Resp::error(400, "RoleAssignmentDoesNotExist", "The Role assignment does not exist.");
            };
            t.hard_delete(Kind::RoleEligibility, &id);
            out["status"] = json!("Revoked");
            out["completedDateTime"] = Value::Null;
            Resp::created(out)
        }
        "adminUpdate" | "adminExtend" | "adminRenew" | "selfActivate" | "selfDeactivate"
        | "selfExtend" | "selfRenew" => Resp::error(
            501,
            "NotImplemented",
            &format!("The simulator supports the actions adminAssign and adminRemove, not {action}."),
        ),
        other => bad(&format!(
            "Invalid value '{other}' for property 'action' of type 'microsoft.graph.unifiedRoleScheduleRequestActions'."
        )),
    }
}

/// A request's `scheduleInfo` as the schedule stores it: `startDateTime` defaults to now, the
/// expiration to `noExpiration`; `afterDateTime` needs an `endDateTime` after the start and in
/// the future, `afterDuration` an ISO 8601 `duration`.
fn schedule_info(v: Option<&Value>, now: i64) -> Result<Value, String> {
    let v = v.cloned().unwrap_or(Value::Null);
    if !(v.is_null() || v.is_object()) {
        return Err("scheduleInfo must be an object.".into());
    }
    let start = match v.get("startDateTime") {
        None | Some(Value::Null) => now,
        Some(s) => s
            .as_str()
            .and_then(util::parse_iso)
            .ok_or("scheduleInfo.startDateTime is not a valid DateTimeOffset.")?,
    };
    let exp = v.get("expiration").cloned().unwrap_or(Value::Null);
    let ty = exp
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("noExpiration");
    let mut expiration = json!({"type": ty, "endDateTime": null, "duration": null});
    match ty {
        "noExpiration" => {}
        "afterDateTime" => {
            let end = exp
                .get("endDateTime")
                .and_then(Value::as_str)
                .and_then(util::parse_iso)
                .ok_or("scheduleInfo.expiration.endDateTime is required (a DateTimeOffset) when the type is afterDateTime.")?;
            if end <= start || end <= now {
                return Err("The expiration of the role eligibility must be in the future and after its start.".into());
            }
            expiration["endDateTime"] = json!(util::iso(end));
        }
        "afterDuration" => {
            let d = exp
                .get("duration")
                .and_then(Value::as_str)
                .filter(|d| d.starts_with('P') && d.len() > 1)
                .ok_or("scheduleInfo.expiration.duration is required (ISO 8601) when the type is afterDuration.")?;
            expiration["duration"] = json!(d);
        }
        other => {
            return Err(format!(
                "Invalid value '{other}' for scheduleInfo.expiration.type: noExpiration, afterDateTime or afterDuration."
            ))
        }
    }
    Ok(json!({"startDateTime": util::iso(start), "recurrence": null, "expiration": expiration}))
}
