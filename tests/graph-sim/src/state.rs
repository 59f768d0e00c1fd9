//! The tenant's state: stored objects, indexes, the change sequence and the simulated clock.

use crate::config::SimConfig;
use crate::model::*;
use crate::util::{self, Rng};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use util::FastMap as HashMap;

/// Relationship names that are logged for `members@delta`.
pub const MEMBERS: &str = "members";
pub const OWNERS: &str = "owners";
pub const MANAGER: &str = "manager";

pub struct Tenant {
    pub cfg: SimConfig,
    pub tenant_id: String,
    pub domain: String,
    /// Monotonic change sequence (delta).
    pub seq: u64,
    pub objs: Vec<BTreeMap<Id, Stored>>,
    pub kind_of: HashMap<Id, Kind>,
    /// Reverse index of `members` links: member id → containers (groups, AUs, directory roles).
    pub member_of: HashMap<Id, BTreeSet<Id>>,
    /// Lower-cased userPrincipalName → user id.
    pub upn_index: HashMap<String, Id>,
    /// Lower-cased mailNickname → object id (users and groups).
    pub nick_index: HashMap<String, Id>,
    /// appId → application / service principal id.
    pub app_index: HashMap<String, Id>,
    pub sp_index: HashMap<String, Id>,
    /// Simulated clock offset from the wall clock, in seconds.
    pub clock_offset: i64,
    /// Generator for ids of objects created at run time (deterministic for a given order of writes).
    pub rng: Rng,
    pub organization: Obj,
    pub authorization_policy: Obj,
    pub security_defaults: Obj,
    pub auth_methods_policy: Obj,
    pub mail: crate::mail::MailStore,
    pub drives: crate::drive::DriveStore,
    /// The Microsoft Graph service principal's id (resource of application permissions).
    pub graph_sp: Id,
    /// Objects (kind, id) in generation order, used by churn and stats.
    pub base_time: i64,
}

impl Tenant {
    pub fn new(cfg: SimConfig, tenant_id: String) -> Self {
        let domain = cfg.domain.clone();
        let rng = Rng::derive(cfg.seed, "runtime");
        Tenant {
            cfg,
            tenant_id,
            domain,
            seq: 1,
            objs: ALL_KINDS.iter().map(|_| BTreeMap::new()).collect(),
            kind_of: HashMap::default(),
            member_of: HashMap::default(),
            upn_index: HashMap::default(),
            nick_index: HashMap::default(),
            app_index: HashMap::default(),
            sp_index: HashMap::default(),
            clock_offset: 0,
            rng,
            organization: Obj::new(),
            authorization_policy: Obj::new(),
            security_defaults: Obj::new(),
            auth_methods_policy: Obj::new(),
            mail: Default::default(),
            drives: Default::default(),
            graph_sp: Arc::from(""),
            base_time: 1_735_689_600, // 2025-01-01T00:00:00Z
        }
    }

    /// Whether the tenant has PIM (see `SimConfig::pim`).
    pub fn pim_enabled(&self) -> bool {
        self.cfg
            .pim
            .unwrap_or(self.cfg.profile != crate::config::Profile::Empty)
    }

    /// Simulated time in Unix seconds.
    pub fn now(&self) -> i64 {
        util::unix_now().as_secs() as i64 + self.clock_offset
    }
    pub fn now_iso(&self) -> String {
        util::iso(self.now())
    }
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
    pub fn new_guid(&mut self) -> String {
        self.rng.guid()
    }

    pub fn map(&self, kind: Kind) -> &BTreeMap<Id, Stored> {
        &self.objs[kind.index()]
    }
    pub fn map_mut(&mut self, kind: Kind) -> &mut BTreeMap<Id, Stored> {
        &mut self.objs[kind.index()]
    }
    pub fn get(&self, kind: Kind, id: &str) -> Option<&Stored> {
        self.objs[kind.index()].get(id)
    }
    pub fn get_mut(&mut self, kind: Kind, id: &str) -> Option<&mut Stored> {
        self.objs[kind.index()].get_mut(id)
    }
    pub fn live(&self, kind: Kind, id: &str) -> Option<&Stored> {
        self.get(kind, id).filter(|o| o.is_live())
    }
    /// Finds a live directory object of any kind.
    pub fn find_live(&self, id: &str) -> Option<&Stored> {
        let kind = *self.kind_of.get(id)?;
        self.live(kind, id)
    }
    pub fn count_live(&self, kind: Kind) -> usize {
        self.map(kind).values().filter(|o| o.is_live()).count()
    }

    /// Stores a new object and indexes it. `data` must carry `id`.
    pub fn insert(&mut self, kind: Kind, data: Obj) -> Id {
        let id: Id = Arc::from(data.get("id").and_then(Value::as_str).unwrap_or_default());
        let seq = self.next_seq();
        self.index(kind, &id, &data);
        self.kind_of.insert(id.clone(), kind);
        self.map_mut(kind)
            .insert(id.clone(), Stored::new(id.clone(), kind, data, seq));
        id
    }

    fn index(&mut self, kind: Kind, id: &Id, data: &Obj) {
        let s = |k: &str| {
            data.get(k)
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
        };
        match kind {
            Kind::User => {
                if let Some(upn) = s("userPrincipalName") {
                    self.upn_index.insert(upn, id.clone());
                }
                if let Some(n) = s("mailNickname") {
                    self.nick_index.insert(n, id.clone());
                }
            }
            Kind::Group => {
                if let Some(n) = s("mailNickname") {
                    self.nick_index.insert(n, id.clone());
                }
            }
            Kind::Application => {
                if let Some(a) = s("appId") {
                    self.app_index.insert(a, id.clone());
                }
            }
            Kind::ServicePrincipal => {
                if let Some(a) = s("appId") {
                    self.sp_index.insert(a, id.clone());
                }
            }
            _ => {}
        }
    }
    fn unindex(&mut self, kind: Kind, data: &Obj) {
        let s = |k: &str| {
            data.get(k)
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
        };
        match kind {
            Kind::User => {
                if let Some(upn) = s("userPrincipalName") {
                    self.upn_index.remove(&upn);
                }
                if let Some(n) = s("mailNickname") {
                    self.nick_index.remove(&n);
                }
            }
            Kind::Group => {
                if let Some(n) = s("mailNickname") {
                    self.nick_index.remove(&n);
                }
            }
            Kind::Application => {
                if let Some(a) = s("appId") {
                    self.app_index.remove(&a);
                }
            }
            Kind::ServicePrincipal => {
                if let Some(a) = s("appId") {
                    self.sp_index.remove(&a);
                }
            }
            _ => {}
        }
    }

    /// Merges `patch` into an object (null removes), recording which properties changed.
    pub fn update(&mut self, kind: Kind, id: &str, patch: Obj) {
        let seq = self.next_seq();
        let Some(old) = self.get_mut(kind, id).map(|o| {
            o.materialize();
            o.data.clone()
        }) else {
            return;
        };
        self.unindex(kind, &old);
        let o = self.get_mut(kind, id).unwrap();
        for (k, v) in patch {
            if o.data.get(&k) != Some(&v) {
                o.prop_seq.insert(k.clone(), seq);
            }
            if v.is_null() {
                o.data.remove(&k);
            } else {
                o.data.insert(k, v);
            }
        }
        o.seq = seq;
        let data = o.data.clone();
        let idv = o.id.clone();
        self.index(kind, &idv, &data);
    }

    /// Marks an object changed without changing properties (e.g. a relationship changed).
    pub fn touch(&mut self, kind: Kind, id: &str) {
        let seq = self.next_seq();
        if let Some(o) = self.get_mut(kind, id) {
            o.seq = seq;
        }
    }

    /// Adds `target` to `rel` of an object. Returns false if it was already there.
    pub fn add_link(&mut self, kind: Kind, id: &str, rel: &'static str, target: &Id) -> bool {
        let seq = self.next_seq();
        let Some(o) = self.get_mut(kind, id) else {
            return false;
        };
        let inserted = o.links.entry(rel).or_default().insert(target.clone());
        if inserted {
            o.seq = seq;
            if rel == MANAGER {
                o.manager_log.push((seq, target.clone(), true));
            }
            if rel == MEMBERS {
                o.member_log.push((seq, target.clone(), true));
                let cid = o.id.clone();
                self.member_of
                    .entry(target.clone())
                    .or_default()
                    .insert(cid);
            }
        }
        inserted
    }

    pub fn remove_link(&mut self, kind: Kind, id: &str, rel: &'static str, target: &str) -> bool {
        let seq = self.next_seq();
        let Some(o) = self.get_mut(kind, id) else {
            return false;
        };
        let removed = o.links.get_mut(rel).is_some_and(|s| s.remove(target));
        if removed {
            o.seq = seq;
            if rel == MANAGER {
                o.manager_log.push((seq, Arc::from(target), false));
            }
            if rel == MEMBERS {
                o.member_log.push((seq, Arc::from(target), false));
                let cid = o.id.clone();
                if let Some(set) = self.member_of.get_mut(target) {
                    set.remove(&cid);
                }
            }
        }
        removed
    }

    /// Whether `member` is a member (live link) of container `id`.
    pub fn is_member(&self, kind: Kind, id: &str, member: &str) -> bool {
        self.get(kind, id)
            .is_some_and(|o| o.links.get(MEMBERS).is_some_and(|s| s.contains(member)))
    }

    /// Logs membership visibility changes of `member` in all its containers (soft delete / restore).
    fn log_member_visibility(&mut self, member: &Id, added: bool) {
        let containers: Vec<Id> = self
            .member_of
            .get(member)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for c in containers {
            let seq = self.next_seq();
            if let Some(kind) = self.kind_of.get(&c).copied() {
                if let Some(o) = self.get_mut(kind, &c) {
                    o.member_log.push((seq, member.clone(), added));
                    o.seq = seq;
                }
            }
        }
    }

    /// Whether deleting this object puts it in the recycle bin.
    pub fn deletes_softly(&self, kind: Kind, id: &str) -> bool {
        match kind {
            Kind::Group => {
                let unified = self.get(kind, id).is_some_and(|o| {
                    o.data
                        .get("groupTypes")
                        .and_then(Value::as_array)
                        .is_some_and(|a| a.iter().any(|v| v == "Unified"))
                });
                unified || !self.cfg.security_groups_hard_delete
            }
            k => k.soft_deletable(),
        }
    }

    /// Deletes as Graph does for this kind: soft (recycle bin) or hard.
    pub fn delete(&mut self, kind: Kind, id: &str) {
        if self.deletes_softly(kind, id) {
            self.soft_delete(kind, id);
        } else {
            self.hard_delete(kind, id);
        }
    }

    pub fn soft_delete(&mut self, kind: Kind, id: &str) {
        let now = self.now();
        let seq = self.next_seq();
        let Some(o) = self.get_mut(kind, id) else {
            return;
        };
        if !o.is_live() {
            return;
        }
        o.life = Life::Deleted(now);
        o.seq = seq;
        o.data
            .insert("deletedDateTime".into(), json!(util::iso(now)));
        let idv = o.id.clone();
        let data = o.data.clone();
        self.unindex(kind, &data);
        self.log_member_visibility(&idv, false);
        if kind == Kind::Application {
            // Deleting an app registration deletes its service principal too; restoring the app
            // does not bring the service principal back.
            if let Some(app_id) = data.get("appId").and_then(Value::as_str) {
                if let Some(sp) = self.sp_index.get(&app_id.to_ascii_lowercase()).cloned() {
                    self.soft_delete(Kind::ServicePrincipal, &sp);
                }
            }
        }
    }

    pub fn hard_delete(&mut self, kind: Kind, id: &str) {
        let seq = self.next_seq();
        let Some(o) = self.get_mut(kind, id) else {
            return;
        };
        let was_live = o.is_live();
        if o.life == Life::Gone {
            return;
        }
        o.life = Life::Gone;
        o.seq = seq;
        let idv = o.id.clone();
        o.lazy = None;
        let data = std::mem::take(&mut o.data);
        let links = std::mem::take(&mut o.links);
        o.children.clear();
        o.secrets.clear();
        o.member_log.clear();
        if was_live {
            self.unindex(kind, &data);
        }
        // Remove from containers.
        let containers: Vec<Id> = self
            .member_of
            .remove(&idv)
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        for c in containers {
            if let Some(ck) = self.kind_of.get(&c).copied() {
                let seq = self.next_seq();
                if let Some(co) = self.get_mut(ck, &c) {
                    if co.links.get_mut(MEMBERS).is_some_and(|s| s.remove(&idv)) {
                        co.seq = seq;
                        if was_live {
                            co.member_log.push((seq, idv.clone(), false));
                        }
                    }
                }
            }
        }
        // Its own members no longer point back to it.
        if let Some(members) = links.get(MEMBERS) {
            for m in members {
                if let Some(set) = self.member_of.get_mut(m) {
                    set.remove(&idv);
                }
            }
        }
        if kind == Kind::Application && was_live {
            if let Some(app_id) = data.get("appId").and_then(Value::as_str) {
                if let Some(sp) = self.sp_index.get(&app_id.to_ascii_lowercase()).cloned() {
                    self.hard_delete(Kind::ServicePrincipal, &sp);
                }
            }
        }
        if kind == Kind::ServicePrincipal || kind == Kind::User || kind == Kind::Group {
            self.drop_assignments_of(&idv);
        }
        if kind == Kind::AdministrativeUnit {
            // Role assignments and eligibilities scoped to a unit go with it.
            let scope = format!("/administrativeUnits/{idv}");
            let doomed: Vec<(Kind, Id)> = [Kind::RoleAssignment, Kind::RoleEligibility]
                .iter()
                .flat_map(|k| {
                    self.map(*k)
                        .values()
                        .filter(|o| {
                            o.is_live() && o.str("directoryScopeId") == Some(scope.as_str())
                        })
                        .map(|o| (*k, o.id.clone()))
                        .collect::<Vec<_>>()
                })
                .collect();
            for (k, a) in doomed {
                self.hard_delete(k, &a);
            }
        }
    }

    /// Removes app role assignments, grants, role assignments and PIM role eligibilities that
    /// reference a gone principal (on hard delete only: a soft-deleted principal keeps them, as
    /// its role assignments).
    fn drop_assignments_of(&mut self, id: &Id) {
        let doomed: Vec<(Kind, Id)> = [
            Kind::AppRoleAssignment,
            Kind::OAuth2Grant,
            Kind::RoleAssignment,
            Kind::RoleEligibility,
        ]
        .iter()
        .flat_map(|k| {
            self.map(*k)
                .values()
                .filter(|o| o.is_live())
                .filter(|o| {
                    ["principalId", "resourceId", "clientId"]
                        .iter()
                        .any(|f| o.str(f) == Some(&**id))
                })
                .map(|o| (*k, o.id.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
        for (k, i) in doomed {
            self.hard_delete(k, &i);
        }
    }

    /// Restores a soft-deleted object, keeping its id. Returns an error message on conflict.
    pub fn restore(&mut self, kind: Kind, id: &str) -> Result<(), String> {
        let seq = self.next_seq();
        let Some(o) = self.get(kind, id) else {
            return Err("not found".into());
        };
        if !matches!(o.life, Life::Deleted(_)) {
            return Err("not deleted".into());
        }
        if kind == Kind::User {
            if let Some(upn) = o.str("userPrincipalName") {
                if self.upn_index.contains_key(&upn.to_ascii_lowercase()) {
                    return Err(
                        "Another object with the same value for property userPrincipalName already exists."
                            .into(),
                    );
                }
            }
        }
        let o = self.get_mut(kind, id).unwrap();
        o.life = Life::Live;
        o.seq = seq;
        o.created_seq = seq;
        o.data.remove("deletedDateTime");
        let idv = o.id.clone();
        let data = o.data.clone();
        self.index(kind, &idv, &data);
        self.log_member_visibility(&idv, true);
        Ok(())
    }

    /// Permanently deletes recycle-bin items older than the retention.
    pub fn purge_expired(&mut self) -> usize {
        let cutoff = self.now() - self.cfg.recycle_bin_retention.as_secs() as i64;
        let expired: Vec<(Kind, Id)> = self
            .objs
            .iter()
            .flat_map(|m| m.values())
            .filter(|o| matches!(o.life, Life::Deleted(t) if t <= cutoff))
            .map(|o| (o.kind, o.id.clone()))
            .collect();
        let n = expired.len();
        for (k, id) in expired {
            self.hard_delete(k, &id);
        }
        n
    }

    /// Renders a member/owner reference list entry with `@odata.type`.
    pub fn render_ref(&self, id: &Id, select: Option<&[String]>) -> Option<Obj> {
        let o = self.find_live(id)?;
        let mut m = crate::render::render(o, select);
        m.shift_insert(
            0,
            "@odata.type".into(),
            json!(format!("#microsoft.graph.{}", o.kind.odata_type_name())),
        );
        Some(m)
    }

    /// The canonical state dump (sorted keys): every live and recycle-bin object, relations and
    /// singletons. Two dumps of the same tenant compare equal exactly when the state is the same.
    pub fn dump(&self) -> Value {
        let mut out = BTreeMap::new();
        for kind in ALL_KINDS {
            let mut objs = BTreeMap::new();
            for o in self.map(kind).values() {
                if o.life == Life::Gone {
                    continue;
                }
                let mut m: BTreeMap<String, Value> = o.view().into_owned().into_iter().collect();
                if let Life::Deleted(_) = o.life {
                    m.insert("@sim.deleted".into(), json!(true));
                }
                for (rel, set) in &o.links {
                    m.insert(
                        format!("@sim.{rel}"),
                        Value::Array(set.iter().map(|s| json!(&**s)).collect()),
                    );
                }
                for (name, list) in &o.children {
                    m.insert(format!("@sim.{name}"), json!(list));
                }
                objs.insert(o.id.to_string(), json!(m));
            }
            out.insert(kind.name().to_string(), json!(objs));
        }
        out.insert("organization".into(), json!(self.organization));
        out.insert(
            "authorizationPolicy".into(),
            json!(self.authorization_policy),
        );
        out.insert("securityDefaults".into(), json!(self.security_defaults));
        out.insert(
            "authenticationMethodsPolicy".into(),
            json!(self.auth_methods_policy),
        );
        out.insert("mail".into(), self.mail.dump());
        out.insert("drives".into(), self.drives.dump());
        canonical(&json!(out))
    }
}

/// Returns the value with all object keys sorted (canonical JSON).
pub fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> =
                m.iter().map(|(k, v)| (k, canonical(v))).collect();
            let mut out = Map::new();
            for (k, v) in sorted {
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Differences between two state dumps.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct StateDiff {
    /// `collection/id` present only in the second dump.
    pub added: Vec<String>,
    /// `collection/id` present only in the first dump.
    pub removed: Vec<String>,
    /// `collection/id` present in both with different content.
    pub changed: Vec<String>,
}

impl StateDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Compares two dumps made by [`Tenant::dump`] collection by collection.
pub fn diff_dumps(a: &Value, b: &Value) -> StateDiff {
    let mut d = StateDiff::default();
    let empty = Map::new();
    let am = a.as_object().unwrap_or(&empty);
    let bm = b.as_object().unwrap_or(&empty);
    let keys: BTreeSet<&String> = am.keys().chain(bm.keys()).collect();
    for k in keys {
        let (av, bv) = (am.get(k), bm.get(k));
        let is_collection =
            ALL_KINDS.iter().any(|kind| kind.name() == k.as_str()) || k == "mail" || k == "drives";
        if is_collection {
            let ao = av.and_then(Value::as_object).unwrap_or(&empty);
            let bo = bv.and_then(Value::as_object).unwrap_or(&empty);
            for (id, v) in ao {
                match bo.get(id) {
                    None => d.removed.push(format!("{k}/{id}")),
                    Some(w) if w != v => d.changed.push(format!("{k}/{id}")),
                    _ => {}
                }
            }
            for id in bo.keys() {
                if !ao.contains_key(id) {
                    d.added.push(format!("{k}/{id}"));
                }
            }
        } else if av != bv {
            d.changed.push(k.clone());
        }
    }
    d
}
