//! SharePoint and OneDrive: sites, drives, drive items, `root/delta`, content downloads and
//! permissions with sharing links (`createLink`, `invite`).

use crate::gen::Sizes;
use crate::http::{Req, Resp};
use crate::model::{Id, Kind, Obj};
use crate::state::Tenant;
use crate::util::{self, Rng};
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Default, Clone, Debug)]
pub struct DriveStore {
    pub sites: BTreeMap<String, Site>,
    pub drives: BTreeMap<String, Drive>,
    /// Open upload sessions by id (see [`crate::drive_upload`]).
    pub sessions: BTreeMap<String, crate::drive_upload::DriveSession>,
    /// Every ranged `PUT` to an upload URL that named a live session, in arrival order, with
    /// its answer's status (tests check what was sent twice).
    pub uploads: Vec<crate::drive_upload::UploadedRange>,
}

#[derive(Clone, Debug)]
pub struct Site {
    pub id: String,
    pub name: String,
    pub display_name: String,
    pub web_url: String,
    pub created: String,
    pub drives: Vec<String>,
    /// A OneDrive's personal site (`isPersonalSite`): `getAllSites` lists it too.
    pub personal: bool,
}

#[derive(Clone, Debug)]
pub struct Drive {
    pub id: String,
    pub name: String,
    pub drive_type: &'static str,
    /// ("user"|"group"|"site", id, display name)
    pub owner: (String, String, String),
    pub web_url: String,
    pub root: String,
    pub items: BTreeMap<String, Item>,
    pub created: String,
}

#[derive(Clone, Debug)]
pub struct Item {
    pub id: String,
    pub name: String,
    pub parent: Option<String>,
    pub folder: bool,
    pub content: Vec<u8>,
    pub mime: String,
    pub created: String,
    pub modified: String,
    pub seq: u64,
    pub created_seq: u64,
    pub deleted: bool,
    pub perms: Vec<Obj>,
}

impl DriveStore {
    pub fn dump(&self) -> Value {
        let mut out = serde_json::Map::new();
        for d in self.drives.values() {
            let items: BTreeMap<&String, Value> = d
                .items
                .values()
                .filter(|i| !i.deleted)
                .map(|i| (&i.id, json!({"name": i.name, "parent": i.parent, "folder": i.folder, "sha256": hex(&util::sha256(&i.content)), "permissions": i.perms})))
                .collect();
            out.insert(
                d.id.clone(),
                json!({"name": d.name, "owner": [d.owner.0, d.owner.1], "items": items}),
            );
        }
        Value::Object(out)
    }
    /// Drive of a user, group or site owner.
    pub fn drive_of(&self, owner_id: &str) -> Option<&Drive> {
        self.drives.values().find(|d| d.owner.1 == owner_id)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn item_id(rng: &mut Rng) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let s: String = (0..32).map(|_| A[rng.below(32)] as char).collect();
    format!("01{s}")
}

const FILES: &[(&str, &str)] = &[
    (
        "Budget {y}.xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    (
        "Roadmap.docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    ("Team photo.png", "image/png"),
    ("Meeting notes {n}.txt", "text/plain"),
    ("Contract {n}.pdf", "application/pdf"),
    (
        "Architecture.pptx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ),
    ("README.md", "text/markdown"),
    ("Export {n}.csv", "text/csv"),
];

fn new_drive(
    rng: &mut Rng,
    name: &str,
    drive_type: &'static str,
    owner: (String, String, String),
    web_url: String,
    created: &str,
) -> Drive {
    let id = format!("b!{}", util::b64url(&rng.bytes(48)));
    let root = item_id(rng);
    let mut items = BTreeMap::new();
    items.insert(
        root.clone(),
        Item {
            id: root.clone(),
            name: "root".into(),
            parent: None,
            folder: true,
            content: vec![],
            mime: String::new(),
            created: created.into(),
            modified: created.into(),
            seq: 1,
            created_seq: 1,
            deleted: false,
            perms: vec![],
        },
    );
    Drive {
        id,
        name: name.into(),
        drive_type,
        owner,
        web_url,
        root,
        items,
        created: created.into(),
    }
}

fn fill_drive(t: &Tenant, rng: &mut Rng, d: &mut Drive, users: &[Id], n_files: usize) {
    let created = d.created.clone();
    let mut folders = vec![d.root.clone()];
    for name in ["Documents", "Projects", "Shared", "Archive"]
        .iter()
        .take(1 + rng.below(3))
    {
        let id = item_id(rng);
        d.items.insert(
            id.clone(),
            Item {
                id: id.clone(),
                name: name.to_string(),
                parent: Some(d.root.clone()),
                folder: true,
                content: vec![],
                mime: String::new(),
                created: created.clone(),
                modified: created.clone(),
                seq: 1,
                created_seq: 1,
                deleted: false,
                perms: vec![],
            },
        );
        folders.push(id);
    }
    for i in 0..n_files {
        let (name, mime) = FILES[rng.below(FILES.len())];
        let name = name
            .replace("{y}", &(2020 + rng.below(6)).to_string())
            .replace("{n}", &(i + 1).to_string());
        let parent = folders[rng.below(folders.len())].clone();
        if d.items
            .values()
            .any(|x| x.parent.as_deref() == Some(&parent) && x.name == name)
        {
            continue;
        }
        let id = item_id(rng);
        let content = format!(
            "{name}\nGenerated content {}\n{}",
            rng.next_u64(),
            "lorem ipsum ".repeat(5 + rng.below(40))
        )
        .into_bytes();
        let mut perms = vec![];
        let r = rng.unit();
        let web = &d.web_url;
        if r < 0.2 {
            perms.push(link_perm(rng, web, "view", "organization", None, false));
        } else if r < 0.27 {
            let exp = util::iso(t.base_time + 90 * 86400);
            let pw = rng.chance(0.5);
            perms.push(link_perm(rng, web, "edit", "anonymous", Some(exp), pw));
        }
        if rng.chance(0.12) && !users.is_empty() {
            let u = &users[rng.below(users.len())];
            if let Some(o) = t.get(Kind::User, u) {
                perms.push(grant_perm(
                    rng,
                    &o.id,
                    o.str("displayName").unwrap_or(""),
                    o.str("mail").unwrap_or(""),
                    "write",
                    None,
                ));
            }
        }
        d.items.insert(
            id.clone(),
            Item {
                id,
                name,
                parent: Some(parent),
                folder: false,
                content,
                mime: mime.to_string(),
                created: created.clone(),
                modified: created.clone(),
                seq: 1,
                created_seq: 1,
                deleted: false,
                perms,
            },
        );
    }
}

fn link_perm(
    rng: &mut Rng,
    web: &str,
    typ: &str,
    scope: &str,
    exp: Option<String>,
    password: bool,
) -> Obj {
    let code = util::b64url(&rng.bytes(18));
    let letter = if typ == "edit" { "w" } else { "r" };
    let url = format!("{web}/:{letter}:/g/{code}");
    let mut p = json!({
        "id": util::b64url(&rng.bytes(12)), "roles": [if typ == "edit" { "write" } else { "read" }],
        "shareId": format!("u!{}", util::b64url(url.as_bytes())), "hasPassword": password,
        "expirationDateTime": exp.unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        "grantedToIdentitiesV2": [], "grantedToIdentities": [],
        "link": {"scope": scope, "type": typ, "webUrl": url, "preventsDownload": false}
    });
    if scope == "users" {
        p["@deprecated.GrantedToIdentities"] =
            json!("GrantedToIdentities has been deprecated. Refer to GrantedToIdentitiesV2");
    }
    p.as_object().cloned().unwrap_or_default()
}

fn grant_perm(
    rng: &mut Rng,
    uid: &str,
    name: &str,
    email: &str,
    role: &str,
    invitation: Option<Value>,
) -> Obj {
    let site_user = json!({"displayName": name, "email": email, "id": (1 + rng.below(200)).to_string(), "loginName": format!("i:0#.f|membership|{email}")});
    let mut p = json!({
        "id": util::b64url(&rng.bytes(12)), "roles": [role],
        "@deprecated.GrantedTo": "GrantedTo has been deprecated. Refer to GrantedToV2",
        "grantedTo": {"user": {"displayName": name, "email": email, "id": uid}},
        "grantedToV2": {"user": {"@odata.type": "#microsoft.graph.sharePointIdentity", "displayName": name, "email": email, "id": uid}, "siteUser": site_user},
        "shareId": util::b64url(&rng.bytes(12)), "hasPassword": false, "expirationDateTime": "0001-01-01T00:00:00Z"
    });
    if let Some(inv) = invitation {
        p["invitation"] = inv;
    }
    p.as_object().cloned().unwrap_or_default()
}

pub fn generate(t: &mut Tenant, rng: &mut Rng, users: &[Id], unified: &[Id], sz: &Sizes) {
    let host = format!(
        "{}.sharepoint.com",
        t.domain.split('.').next().unwrap_or("contoso")
    );
    let created = util::iso(t.base_time - 400 * 86400);
    let mut store = DriveStore::default();
    let site_names = [
        "Intranet",
        "Finance",
        "Engineering",
        "Marketing",
        "HR Portal",
        "Legal",
        "Sales Hub",
        "Projects",
    ];
    // A site with one document library; `owner` is ("site" | "group", id, display name).
    #[allow(clippy::too_many_arguments)]
    fn add_site(
        t: &Tenant,
        rng: &mut Rng,
        store: &mut DriveStore,
        host: &str,
        name: String,
        display: String,
        group: Option<&Id>,
        created: &str,
        users: &[Id],
        files: usize,
    ) {
        let id = format!("{host},{},{}", rng.guid(), rng.guid());
        let web = format!("https://{host}/sites/{name}");
        let owner = match group {
            Some(g) => ("group".to_string(), g.to_string(), display.clone()),
            None => ("site".to_string(), id.clone(), display.clone()),
        };
        let mut d = new_drive(
            rng,
            "Documents",
            "documentLibrary",
            owner,
            format!("{web}/Shared%20Documents"),
            created,
        );
        fill_drive(t, rng, &mut d, users, files);
        store.sites.insert(
            id.clone(),
            Site {
                id,
                name,
                display_name: display,
                web_url: web,
                created: created.to_string(),
                drives: vec![d.id.clone()],
                personal: false,
            },
        );
        store.drives.insert(d.id.clone(), d);
    }
    for s in 0..sz.sites {
        let base = site_names[s % site_names.len()];
        let display = if s >= site_names.len() {
            format!("{base} {}", s / site_names.len() + 1)
        } else {
            base.to_string()
        };
        let name: String = display
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let files = 6 + rng.below(20);
        add_site(
            t, rng, &mut store, &host, name, display, None, &created, users, files,
        );
    }
    for g in unified.iter().take(sz.group_drives) {
        let Some(o) = t.get(Kind::Group, g) else {
            continue;
        };
        let dn = o.str("displayName").unwrap_or("").to_string();
        let nick = o.str("mailNickname").unwrap_or("group").to_string();
        let files = 3 + rng.below(10);
        add_site(
            t,
            rng,
            &mut store,
            &host,
            nick,
            dn,
            Some(g),
            &created,
            users,
            files,
        );
    }
    for u in users.iter().take(sz.onedrives) {
        let Some(o) = t.get(Kind::User, u) else {
            continue;
        };
        let dn = o.str("displayName").unwrap_or("").to_string();
        let upn = o
            .str("userPrincipalName")
            .unwrap_or("")
            .replace(['@', '.'], "_");
        let mut d = new_drive(
            rng,
            "OneDrive",
            "business",
            ("user".into(), u.to_string(), dn),
            format!(
                "https://{}-my.sharepoint.com/personal/{upn}/Documents",
                host.trim_end_matches(".sharepoint.com")
            ),
            &created,
        );
        let n = 3 + rng.below(12);
        fill_drive(t, rng, &mut d, users, n);
        // Every OneDrive is a personal site collection on the `-my` host, listed by
        // `getAllSites` with `isPersonalSite: true` (ids derived from the drive's, so the
        // generator's random stream is unchanged).
        let my_host = format!(
            "{}-my.sharepoint.com",
            host.trim_end_matches(".sharepoint.com")
        );
        let h = hex(&util::sha256(d.id.as_bytes()));
        let guid = |x: &str| {
            format!(
                "{}-{}-{}-{}-{}",
                &x[0..8],
                &x[8..12],
                &x[12..16],
                &x[16..20],
                &x[20..32]
            )
        };
        let site_id = format!("{my_host},{},{}", guid(&h[..32]), guid(&h[32..]));
        store.sites.insert(
            site_id.clone(),
            Site {
                id: site_id,
                name: upn.clone(),
                display_name: o.str("displayName").unwrap_or("").to_string(),
                web_url: format!("https://{my_host}/personal/{upn}"),
                created: created.clone(),
                drives: vec![d.id.clone()],
                personal: true,
            },
        );
        store.drives.insert(d.id.clone(), d);
    }
    t.drives = store;
}

fn identity(owner: &(String, String, String)) -> Value {
    json!({ owner.0.as_str(): {"id": owner.1, "displayName": owner.2} })
}

fn item_path(d: &Drive, it: &Item) -> String {
    let mut parts = vec![];
    let mut cur = it.parent.clone();
    while let Some(p) = cur {
        let Some(pi) = d.items.get(&p) else { break };
        if pi.parent.is_some() {
            parts.push(pi.name.clone());
        }
        cur = pi.parent.clone();
    }
    parts.reverse();
    format!(
        "/drive/root:{}",
        if parts.is_empty() {
            String::new()
        } else {
            format!("/{}", parts.join("/"))
        }
    )
}

pub(crate) fn render_item(req: &Req, d: &Drive, it: &Item, download: bool) -> Value {
    let etag = format!(
        "\"{{{}}},{}\"",
        &util::b64url(&util::sha1(it.id.as_bytes()))[..8],
        it.seq
    );
    let mut v = json!({
        "createdDateTime": it.created, "eTag": etag, "id": it.id, "lastModifiedDateTime": it.modified,
        "name": it.name, "webUrl": format!("{}/{}", d.web_url, util::pct_encode(&it.name)), "cTag": format!("\"c:{{{}}},{}\"", &it.id[2..10], it.seq),
        "size": if it.folder { d.items.values().filter(|c| !c.deleted && c.parent.as_deref() == Some(&it.id)).map(|c| c.content.len()).sum::<usize>() } else { it.content.len() },
        "createdBy": {"user": {"displayName": d.owner.2}}, "lastModifiedBy": {"user": {"displayName": d.owner.2}},
        "parentReference": {"driveType": d.drive_type, "driveId": d.id},
        "fileSystemInfo": {"createdDateTime": it.created, "lastModifiedDateTime": it.modified}
    });
    if let Some(p) = &it.parent {
        v["parentReference"]["id"] = json!(p);
        v["parentReference"]["path"] = json!(item_path(d, it));
    } else {
        v["root"] = json!({});
    }
    if it.folder {
        v["folder"] = json!({"childCount": d.items.values().filter(|c| !c.deleted && c.parent.as_deref() == Some(&it.id)).count()});
    } else {
        v["file"] = json!({"mimeType": it.mime, "hashes": {"sha1Hash": hex(&util::sha1(&it.content)).to_uppercase(), "sha256Hash": hex(&util::sha256(&it.content)).to_uppercase()}});
        if download {
            v["@microsoft.graph.downloadUrl"] = json!(download_url(req, &d.id, &it.id));
        }
    }
    if let Some(scope) = it
        .perms
        .iter()
        .filter_map(|p| {
            p.get("link")
                .and_then(|l| l.get("scope"))
                .and_then(Value::as_str)
        })
        .next()
    {
        v["shared"] = json!({"scope": scope});
    } else if !it.perms.is_empty() {
        v["shared"] = json!({"scope": "users"});
    }
    v
}

fn download_url(req: &Req, drive: &str, item: &str) -> String {
    let exp = util::unix_now().as_secs() + 3600;
    format!(
        "{}/_sim/download/{}",
        req.base,
        util::encode_token(&json!({"d": drive, "i": item, "e": exp}))
    )
}

/// Serves a pre-authenticated download URL (no Authorization header needed).
pub fn download(t: &Tenant, token: &str) -> Resp {
    let Some(v) = util::decode_token(token) else {
        return Resp::error(401, "unauthenticated", "The download URL is invalid.");
    };
    if v["e"].as_u64().unwrap_or(0) < util::unix_now().as_secs() {
        return Resp::error(401, "unauthenticated", "The download URL has expired.");
    }
    let (d, i) = (v["d"].as_str().unwrap_or(""), v["i"].as_str().unwrap_or(""));
    match t
        .drives
        .drives
        .get(d)
        .and_then(|d| d.items.get(i))
        .filter(|i| !i.deleted)
    {
        Some(it) => Resp::bytes(200, it.content.clone(), &it.mime),
        None => Resp::error(404, "itemNotFound", "The resource could not be found."),
    }
}

fn render_drive(d: &Drive) -> Value {
    json!({"id": d.id, "driveType": d.drive_type, "name": d.name, "createdDateTime": d.created, "lastModifiedDateTime": d.created,
        "webUrl": d.web_url, "description": "", "createdBy": {"user": {"displayName": "System Account"}},
        "owner": identity(&d.owner), "quota": {"deleted": 0, "remaining": 1_099_511_627_776u64, "state": "normal", "total": 1_099_511_627_776u64, "used": d.items.values().map(|i| i.content.len()).sum::<usize>()}})
}

fn render_site(s: &Site) -> Value {
    let parts: Vec<&str> = s.id.split(',').collect();
    json!({"id": s.id, "name": s.name, "displayName": s.display_name, "webUrl": s.web_url, "createdDateTime": s.created,
        "lastModifiedDateTime": s.created, "description": format!("{} site", s.display_name), "isPersonalSite": s.personal,
        "root": {}, "siteCollection": {"hostname": parts.first().copied().unwrap_or("")}})
}

pub(crate) fn not_found() -> Resp {
    Resp::error(404, "itemNotFound", "The resource could not be found.")
}

fn list(req: &Req, ctx: &str, items: Vec<Value>) -> Resp {
    let n = items.len();
    Resp::ok(json!({"@odata.context": format!("{}/{}/$metadata#{ctx}", req.base, req.version), "value": items})).with_objects(n)
}

/// SharePoint resource units for a drive request (1 single, 2 multi/write, 5 permissions).
pub fn sharepoint_cost(req: &Req) -> u32 {
    let p = req.path().to_ascii_lowercase();
    if p.contains("/permissions")
        || p.ends_with("/createlink")
        || p.ends_with("/invite")
        || req.q("$expand").is_some_and(|e| e.contains("permissions"))
    {
        5
    } else if req.is_write() {
        2
    } else if p.ends_with("/delta") {
        if req.q("token").is_some() {
            1
        } else {
            2
        }
    } else if p.ends_with("/children")
        || p.ends_with("/drives")
        || p.contains("getallsites")
        || p == "/sites"
    {
        2
    } else {
        1
    }
}

/// `/sites/...`, `/drives/...`, `/users/{id}/drive(s)`, `/groups/{id}/drive(s)`.
pub fn handle(t: &mut Tenant, req: &Req) -> Resp {
    let perms = if req.is_write() {
        crate::auth::perms::FILES_W
    } else {
        crate::auth::perms::FILES_R
    };
    if crate::auth::require(&req.app, perms).is_err() {
        return Resp::error(403, "accessDenied", "Access denied");
    }
    let s: Vec<&str> = req.segs.iter().map(String::as_str).collect();
    let l: Vec<String> = s.iter().map(|x| x.to_ascii_lowercase()).collect();
    let l: Vec<&str> = l.iter().map(String::as_str).collect();
    match (req.method.as_str(), l.as_slice()) {
        ("GET", ["sites", "getallsites"]) | ("GET", ["sites"]) => {
            let search = req.q("search").map(str::to_ascii_lowercase);
            // Team and communication sites first, then personal (OneDrive) sites.
            let (personal, team): (Vec<&Site>, Vec<&Site>) = t
                .drives
                .sites
                .values()
                .filter(|x| {
                    search
                        .as_deref()
                        .is_none_or(|q| q == "*" || x.display_name.to_ascii_lowercase().contains(q))
                })
                .partition(|x| x.personal);
            let items: Vec<Value> = team.into_iter().chain(personal).map(render_site).collect();
            list(req, "sites", items)
        }
        ("GET", ["sites", _]) => match t.drives.sites.get(s[1]) {
            Some(x) => Resp::ok(render_site(x)),
            None => not_found(),
        },
        ("GET", ["sites", _, "drives"]) => match t.drives.sites.get(s[1]) {
            Some(x) => {
                let items = x
                    .drives
                    .iter()
                    .filter_map(|d| t.drives.drives.get(d))
                    .map(render_drive)
                    .collect();
                list(req, "drives", items)
            }
            None => not_found(),
        },
        ("GET", ["sites", _, "drive"]) => match t
            .drives
            .sites
            .get(s[1])
            .and_then(|x| x.drives.first())
            .and_then(|d| t.drives.drives.get(d))
        {
            Some(d) => Resp::ok(render_drive(d)),
            None => not_found(),
        },
        ("GET", [owner @ ("users" | "groups"), _, "drive"])
        | ("GET", [owner @ ("users" | "groups"), _, "drives"]) => {
            let kind = if *owner == "users" {
                Kind::User
            } else {
                Kind::Group
            };
            let id = if kind == Kind::User {
                t.upn_index
                    .get(&s[1].to_ascii_lowercase())
                    .map(|x| x.to_string())
                    .unwrap_or(s[1].to_string())
            } else {
                s[1].to_string()
            };
            if t.live(kind, &id).is_none() {
                return Resp::not_found(s[1]);
            }
            let d = t.drives.drive_of(&id);
            match (d, l[2]) {
                (Some(d), "drive") => Resp::ok(render_drive(d)),
                (Some(d), _) => list(req, "drives", vec![render_drive(d)]),
                (None, "drives") => list(req, "drives", vec![]),
                (None, _) => Resp::error(
                    404,
                    "itemNotFound",
                    "The user's OneDrive is not provisioned.",
                ),
            }
        }
        (_, ["drives", _, ..]) => drive_ops(t, req, s[1], &s[2..]),
        _ => Resp::error(400, "invalidRequest", "Invalid request"),
    }
}

fn drive_ops(t: &mut Tenant, req: &Req, drive_id: &str, rest: &[&str]) -> Resp {
    if !t.drives.drives.contains_key(drive_id) {
        return not_found();
    }
    let l: Vec<String> = rest.iter().map(|x| x.to_ascii_lowercase()).collect();
    let l: Vec<&str> = l.iter().map(String::as_str).collect();
    if l.is_empty() {
        return if req.method == "GET" {
            Resp::ok(render_drive(&t.drives.drives[drive_id]))
        } else {
            Resp::method_not_allowed()
        };
    }
    if l.as_slice() == ["root", "delta"] {
        return delta(t, req, drive_id);
    }
    let Some(addr) = address(&t.drives.drives[drive_id], rest) else {
        return Resp::error(400, "invalidRequest", "Invalid request");
    };
    let tail: Vec<&str> = addr.tail.iter().map(String::as_str).collect();
    // Creating by path: `items/{parent}:/{name}:/content` (PUT) and
    // `…:/{name}:/createUploadSession` (POST); the parent folder must exist.
    if let Some(name) = &addr.name {
        let creates = matches!(
            (req.method.as_str(), tail.as_slice()),
            ("PUT", ["content"]) | ("POST", ["createuploadsession"])
        );
        if creates {
            let Some(parent) = addr.parent.clone() else {
                return not_found();
            };
            return if req.method == "PUT" {
                upload(t, req, drive_id, &parent, name)
            } else {
                crate::drive_upload::create_session(t, req, drive_id, &parent, name)
            };
        }
    }
    let Some(item) = addr.item else {
        return not_found();
    };
    let Some(it) = t.drives.drives[drive_id]
        .items
        .get(&item)
        .filter(|i| !i.deleted)
        .cloned()
    else {
        return not_found();
    };
    match (req.method.as_str(), tail.as_slice()) {
        ("GET", []) => {
            Resp::ok(render_item(req, &t.drives.drives[drive_id], &it, true)).with_objects(1)
        }
        ("DELETE", []) => {
            if it.parent.is_none() {
                return Resp::error(403, "accessDenied", "The root cannot be deleted.");
            }
            let seq = t.next_seq();
            let d = t.drives.drives.get_mut(drive_id).unwrap();
            let mut stack = vec![it.id.clone()];
            while let Some(x) = stack.pop() {
                for c in d
                    .items
                    .values()
                    .filter(|c| c.parent.as_deref() == Some(&x) && !c.deleted)
                {
                    stack.push(c.id.clone());
                }
                if let Some(i) = d.items.get_mut(&x) {
                    i.deleted = true;
                    i.seq = seq;
                }
            }
            Resp::no_content()
        }
        ("GET", ["children"]) => {
            let d = &t.drives.drives[drive_id];
            let items: Vec<Value> = d
                .items
                .values()
                .filter(|c| !c.deleted && c.parent.as_deref() == Some(&it.id))
                .map(|c| render_item(req, d, c, true))
                .collect();
            list(req, "drives('id')/items", items)
        }
        ("POST", ["children"]) => {
            let body = match req.json_body() {
                Ok(b) => b,
                Err(e) => return e,
            };
            let Some(name) = body.get("name").and_then(Value::as_str).map(str::to_string) else {
                return Resp::error(400, "invalidRequest", "name is required");
            };
            if body.get("folder").is_none() {
                return Resp::error(
                    400,
                    "invalidRequest",
                    "Use PUT .../content to create files; POST children creates folders.",
                );
            }
            // In the body for this call (`fail` unless it says otherwise).
            let conflict = body
                .get("@microsoft.graph.conflictBehavior")
                .and_then(Value::as_str)
                .unwrap_or("fail");
            let seq = t.next_seq();
            let now = t.now_iso();
            let d = t.drives.drives.get_mut(drive_id).unwrap();
            let mut name = name;
            if let Some(x) = child_named(d, &it.id, &name) {
                match conflict {
                    "rename" => name = free_name(d, &it.id, &name),
                    "replace" if x.folder => {
                        let id = x.id.clone();
                        let d = &t.drives.drives[drive_id];
                        return Resp::ok(render_item(req, d, &d.items[&id], false));
                    }
                    _ => {
                        return Resp::error(
                            409,
                            "nameAlreadyExists",
                            "The specified item name already exists.",
                        )
                    }
                }
            }
            let id = item_id(&mut t.rng);
            let n = Item {
                id: id.clone(),
                name,
                parent: Some(it.id.clone()),
                folder: true,
                content: vec![],
                mime: String::new(),
                created: now.clone(),
                modified: now,
                seq,
                created_seq: seq,
                deleted: false,
                perms: vec![],
            };
            d.items.insert(id.clone(), n);
            let d = &t.drives.drives[drive_id];
            Resp::created(render_item(req, d, &d.items[&id], false))
        }
        ("POST", ["createuploadsession"]) => {
            // A new version of an existing file.
            let Some(parent) = it.parent.clone().filter(|_| !it.folder) else {
                return Resp::error(400, "invalidRequest", "Only files have content.");
            };
            crate::drive_upload::create_session(t, req, drive_id, &parent, &it.name)
        }
        ("GET", ["content"]) => {
            if it.folder {
                return Resp::error(400, "invalidRequest", "Folders have no content.");
            }
            Resp {
                status: 302,
                headers: vec![("Location".into(), download_url(req, drive_id, &it.id))],
                body: crate::http::Body::Empty,
                objects: 0,
            }
        }
        ("PUT", ["content"]) => {
            let seq = t.next_seq();
            let now = t.now_iso();
            let d = t.drives.drives.get_mut(drive_id).unwrap();
            let i = d.items.get_mut(&it.id).unwrap();
            i.content = req.body.clone();
            i.modified = now;
            i.seq = seq;
            let d = &t.drives.drives[drive_id];
            Resp::ok(render_item(req, d, &d.items[&it.id], false))
        }
        ("GET", ["permissions"]) => {
            let items: Vec<Value> = it.perms.iter().map(|p| Value::Object(p.clone())).collect();
            list(req, "drives('id')/items('id')/permissions", items)
        }
        ("GET", ["permissions", pid]) => match it
            .perms
            .iter()
            .find(|p| p.get("id").and_then(Value::as_str) == Some(pid))
        {
            Some(p) => Resp::ok(Value::Object(p.clone())),
            None => not_found(),
        },
        ("DELETE", ["permissions", _]) => {
            let pid = rest[rest.len() - 1];
            let seq = t.next_seq();
            let i = t
                .drives
                .drives
                .get_mut(drive_id)
                .unwrap()
                .items
                .get_mut(&it.id)
                .unwrap();
            let before = i.perms.len();
            i.perms
                .retain(|p| p.get("id").and_then(Value::as_str) != Some(pid));
            if i.perms.len() == before {
                return not_found();
            }
            i.seq = seq;
            Resp::no_content()
        }
        ("POST", ["createlink"]) => {
            let body = match req.json_body() {
                Ok(b) => b,
                Err(e) => return e,
            };
            let typ = body
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if !matches!(typ.as_str(), "view" | "edit" | "embed") {
                return Resp::error(
                    400,
                    "invalidRequest",
                    "Invalid link type. Expected view, edit or embed.",
                );
            }
            let scope = body
                .get("scope")
                .and_then(Value::as_str)
                .unwrap_or("anonymous")
                .to_string();
            if !matches!(scope.as_str(), "anonymous" | "organization" | "users") {
                return Resp::error(
                    400,
                    "invalidRequest",
                    "Invalid link scope. Expected anonymous, organization or users.",
                );
            }
            if let Some(existing) = it.perms.iter().find(|p| {
                p.get("link")
                    .and_then(|l| l.get("type"))
                    .and_then(Value::as_str)
                    == Some(&typ)
                    && p.get("link")
                        .and_then(|l| l.get("scope"))
                        .and_then(Value::as_str)
                        == Some(&scope)
                    && scope != "users"
            }) {
                return Resp::ok(Value::Object(existing.clone()));
            }
            let exp = body
                .get("expirationDateTime")
                .and_then(Value::as_str)
                .map(str::to_string);
            let pw = body
                .get("password")
                .and_then(Value::as_str)
                .is_some_and(|p| !p.is_empty());
            let web = t.drives.drives[drive_id].web_url.clone();
            let mut p = link_perm(&mut t.rng, &web, &typ, &scope, exp, pw);
            if let Some(Value::Array(recips)) = body.get("recipients") {
                let mut v1 = vec![];
                let mut v2 = vec![];
                for (n, r) in recips.iter().enumerate() {
                    let email = r
                        .get("email")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    let oid = r
                        .get("objectId")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    let user = oid
                        .as_deref()
                        .and_then(|o| t.live(Kind::User, o))
                        .or_else(|| {
                            t.upn_index
                                .get(&email.to_ascii_lowercase())
                                .and_then(|i| t.live(Kind::User, i))
                        });
                    let (id, dn, mail) = match user {
                        Some(u) => (
                            u.id.to_string(),
                            u.str("displayName").unwrap_or("").to_string(),
                            u.str("mail").unwrap_or("").to_string(),
                        ),
                        None => (String::new(), email.clone(), email.clone()),
                    };
                    v1.push(json!({"user": {"id": id, "displayName": dn, "email": mail}}));
                    v2.push(json!({"user": {"id": id, "displayName": dn, "email": mail}, "siteUser": {"id": (n + 10).to_string(), "displayName": dn, "loginName": format!("i:0#.f|membership|{mail}")}}));
                }
                p.insert("grantedToIdentitiesV2".into(), json!(v2));
                p.insert("grantedToIdentities".into(), json!(v1));
            }
            let caller = req
                .app
                .as_ref()
                .map(|c| c.client_id.clone())
                .unwrap_or_default();
            if let Some(l) = p.get_mut("link").and_then(Value::as_object_mut) {
                l.insert(
                    "application".into(),
                    json!({"id": caller, "displayName": "Cairn Backup"}),
                );
            }
            let seq = t.next_seq();
            let i = t
                .drives
                .drives
                .get_mut(drive_id)
                .unwrap()
                .items
                .get_mut(&it.id)
                .unwrap();
            i.perms.push(p.clone());
            i.seq = seq;
            Resp::created(Value::Object(p))
        }
        ("POST", ["invite"]) => {
            let body = match req.json_body() {
                Ok(b) => b,
                Err(e) => return e,
            };
            let Some(recips) = body.get("recipients").and_then(Value::as_array).cloned() else {
                return Resp::error(400, "invalidRequest", "recipients is required");
            };
            let roles: Vec<String> = body
                .get("roles")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let Some(role) = roles
                .first()
                .cloned()
                .filter(|r| r == "read" || r == "write")
            else {
                return Resp::error(400, "invalidRequest", "roles must be read or write");
            };
            let sign_in = body
                .get("requireSignIn")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            let mut out = vec![];
            for r in recips {
                let email = r.get("email").and_then(Value::as_str).map(str::to_string);
                let oid = r
                    .get("objectId")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let user = oid
                    .as_deref()
                    .and_then(|o| t.live(Kind::User, o))
                    .or_else(|| {
                        let e = email.as_deref()?.to_ascii_lowercase();
                        t.upn_index
                            .get(&e)
                            .and_then(|id| t.live(Kind::User, id))
                            .or_else(|| {
                                t.map(Kind::User).values().find(|u| {
                                    u.is_live()
                                        && u.str("mail").is_some_and(|m| m.eq_ignore_ascii_case(&e))
                                })
                            })
                    });
                let key = match user {
                    Some(u) => u.id.to_string(),
                    None => email.clone().unwrap_or_default().to_ascii_lowercase(),
                };
                // One direct permission per grantee: inviting an existing grantee again
                // returns its permission, with the requested role.
                if let Some(existing) = it
                    .perms
                    .iter()
                    .find(|q| q.get("link").is_none() && grantee_key(q).as_deref() == Some(&key))
                {
                    let mut e = existing.clone();
                    e.insert("roles".into(), json!([role]));
                    out.push(e);
                    continue;
                }
                let p = match user {
                    Some(u) => {
                        let (id, dn, mail) = (
                            u.id.to_string(),
                            u.str("displayName").unwrap_or("").to_string(),
                            u.str("mail").unwrap_or("").to_string(),
                        );
                        grant_perm(&mut t.rng, &id, &dn, &mail, &role, None)
                    }
                    None => {
                        let Some(e) = email.clone() else {
                            return Resp::not_found(oid.as_deref().unwrap_or(""));
                        };
                        let mut p = grant_perm(
                            &mut t.rng,
                            "",
                            &e,
                            &e,
                            &role,
                            Some(json!({"email": e, "signInRequired": sign_in})),
                        );
                        p.remove("grantedTo");
                        p.remove("@deprecated.GrantedTo");
                        p.insert("grantedToV2".into(), json!({"siteUser": {"displayName": e, "email": e, "loginName": format!("i:0#.f|membership|urn:spo:guest#{e}")}}));
                        p
                    }
                };
                out.push(p);
            }
            let seq = t.next_seq();
            let i = t
                .drives
                .drives
                .get_mut(drive_id)
                .unwrap()
                .items
                .get_mut(&it.id)
                .unwrap();
            for p in &out {
                match i.perms.iter_mut().find(|q| q.get("id") == p.get("id")) {
                    Some(q) => *q = p.clone(),
                    None => i.perms.push(p.clone()),
                }
            }
            i.seq = seq;
            list(
                req,
                "Collection(permission)",
                out.into_iter().map(Value::Object).collect(),
            )
        }
        _ => Resp::error(400, "invalidRequest", "Invalid request"),
    }
}

/// Who a direct grant is for: the user's id, else the (lower-cased) e-mail of an invitation.
fn grantee_key(p: &Obj) -> Option<String> {
    let g = p.get("grantedToV2")?;
    g.get("user")
        .and_then(|u| u.get("id"))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .or_else(|| {
            g.get("siteUser")
                .and_then(|u| u.get("email"))
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
        })
}

/// `@microsoft.graph.conflictBehavior` of a request (query, or `fallback`): `fail`, `replace`
/// or `rename`.
pub fn conflict_behavior<'a>(req: &'a Req, fallback: &'a str) -> Result<&'a str, Resp> {
    let v = req
        .q("@microsoft.graph.conflictBehavior")
        .unwrap_or(fallback);
    if matches!(v, "fail" | "replace" | "rename") {
        Ok(v)
    } else {
        Err(Resp::error(
            400,
            "invalidRequest",
            "@microsoft.graph.conflictBehavior must be fail, replace or rename.",
        ))
    }
}

/// The live child of `parent` named `name` (case-insensitive, as SharePoint compares names).
pub fn child_named<'a>(d: &'a Drive, parent: &str, name: &str) -> Option<&'a Item> {
    d.items.values().find(|x| {
        !x.deleted && x.parent.as_deref() == Some(parent) && x.name.eq_ignore_ascii_case(name)
    })
}

/// `name 1.ext`, `name 2.ext` …: the first name free in `parent` (conflictBehavior `rename`).
pub fn free_name(d: &Drive, parent: &str, name: &str) -> String {
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    (1..)
        .map(|n| format!("{stem} {n}{ext}"))
        .find(|c| child_named(d, parent, c).is_none())
        .expect("some name is free")
}

/// Writes a file named `name` into folder `parent` under a conflict behaviour: `fail` (409
/// `nameAlreadyExists` if the name is taken), `replace` (new content for the existing file) or
/// `rename` (a free name). 201 with the new driveItem, or 200 when a file was replaced.
#[allow(clippy::too_many_arguments)]
pub fn write_file(
    t: &mut Tenant,
    req: &Req,
    drive_id: &str,
    parent: &str,
    name: &str,
    content: Vec<u8>,
    mime: &str,
    conflict: &str,
) -> Resp {
    let seq = t.next_seq();
    let now = t.now_iso();
    let new_id = item_id(&mut t.rng);
    let d = &t.drives.drives[drive_id];
    if !d.items.get(parent).is_some_and(|p| p.folder && !p.deleted) {
        return not_found();
    }
    let mut name = name.to_string();
    let existing = match child_named(d, parent, &name) {
        None => None,
        Some(_) if conflict == "rename" => {
            name = free_name(d, parent, &name);
            None
        }
        Some(x) if conflict == "replace" && !x.folder => Some(x.id.clone()),
        Some(_) => {
            return Resp::error(
                409,
                "nameAlreadyExists",
                "The specified item name already exists.",
            )
        }
    };
    let id = existing.clone().unwrap_or(new_id);
    let d = t.drives.drives.get_mut(drive_id).unwrap();
    let entry = d.items.entry(id.clone()).or_insert_with(|| Item {
        id: id.clone(),
        name: name.clone(),
        parent: Some(parent.to_string()),
        folder: false,
        content: vec![],
        mime: mime.to_string(),
        created: now.clone(),
        modified: now.clone(),
        seq,
        created_seq: seq,
        deleted: false,
        perms: vec![],
    });
    entry.content = content;
    entry.modified = now;
    entry.seq = seq;
    let d = &t.drives.drives[drive_id];
    let v = render_item(req, d, &d.items[&id], false);
    if existing.is_some() {
        Resp::ok(v)
    } else {
        Resp::created(v)
    }
}

/// `PUT …/items/{parent}:/{name}:/content`: a simple upload (up to 250 MB); Graph's default
/// conflict behaviour for it is `replace`.
fn upload(t: &mut Tenant, req: &Req, drive_id: &str, parent: &str, name: &str) -> Resp {
    if req.body.len() > 250 * 1024 * 1024 {
        return Resp::error(
            413,
            "requestTooLarge",
            "Use an upload session for files over 250 MB.",
        );
    }
    let conflict = match conflict_behavior(req, "replace") {
        Ok(c) => c.to_string(),
        Err(e) => return e,
    };
    let mime = req
        .header("content-type")
        .unwrap_or("application/octet-stream")
        .to_string();
    write_file(
        t,
        req,
        drive_id,
        parent,
        name,
        req.body.clone(),
        &mime,
        &conflict,
    )
}

/// What a drive request addresses, after Graph's path syntax (`root:/a/b`,
/// `items/{id}:/a/b:/tail`) is resolved against the drive.
struct Address {
    /// The addressed item, if it exists.
    item: Option<String>,
    /// With a path: the folder the last path segment is in (if it exists) and that segment.
    parent: Option<String>,
    name: Option<String>,
    /// Lower-cased segments after the item (`children`, `content`, …).
    tail: Vec<String>,
}

/// Resolves `rest` (the segments after `drives/{id}`). `None` for a malformed address.
fn address(d: &Drive, rest: &[&str]) -> Option<Address> {
    // The base item and the index of the segment that carries it.
    let (base, at) = match rest.first()?.to_ascii_lowercase().as_str() {
        "root" | "root:" => (d.root.clone(), 0),
        "items" => {
            let raw = rest.get(1)?.trim_end_matches(':');
            let id = if raw.eq_ignore_ascii_case("root") {
                d.root.clone()
            } else {
                raw.to_string()
            };
            (id, 1)
        }
        _ => return None,
    };
    let lower = |s: &[&str]| s.iter().map(|x| x.to_ascii_lowercase()).collect();
    if !rest[at].ends_with(':') {
        return Some(Address {
            item: Some(base),
            parent: None,
            name: None,
            tail: lower(&rest[at + 1..]),
        });
    }
    // `base:/seg/seg[:]/tail…`: the path runs to the segment that ends with `:`, or to the end.
    let mut path: Vec<String> = Vec::new();
    let mut i = at + 1;
    while i < rest.len() {
        let seg = rest[i];
        i += 1;
        if let Some(last) = seg.strip_suffix(':') {
            path.push(last.to_string());
            break;
        }
        path.push(seg.to_string());
    }
    let tail = lower(&rest[i..]);
    let Some((name, dirs)) = path.split_last() else {
        return Some(Address {
            item: Some(base),
            parent: None,
            name: None,
            tail,
        });
    };
    let mut parent = Some(base);
    for dir in dirs {
        parent = parent
            .and_then(|p| child_named(d, &p, dir))
            .filter(|x| x.folder)
            .map(|x| x.id.clone());
    }
    let item = parent
        .as_deref()
        .and_then(|p| child_named(d, p, name))
        .map(|x| x.id.clone());
    Some(Address {
        item,
        parent,
        name: Some(name.clone()),
        tail,
    })
}

fn delta(t: &mut Tenant, req: &Req, drive_id: &str) -> Resp {
    let base = req.self_url_without(&["token", "$skiptoken"]);
    let sep = if base.contains('?') { '&' } else { '?' };
    let (since, until, after) = match req.q("token") {
        Some("latest") => {
            let tok = util::encode_token(&json!({"d": drive_id, "s": t.seq}));
            return Resp::ok(
                json!({"@odata.context": format!("{}/{}/$metadata#Collection(driveItem)", req.base, req.version), "value": [],
                "@odata.deltaLink": format!("{base}{sep}token={tok}")}),
            );
        }
        Some(tok) => match util::decode_token(tok) {
            Some(v) if v["d"] == json!(drive_id) => (
                v["s"].as_u64().unwrap_or(0),
                v["u"].as_u64().unwrap_or(t.seq),
                v["c"].as_str().map(str::to_string),
            ),
            _ => {
                // A timestamp token (OneDrive for Business) is accepted; it restarts the round.
                if util::parse_iso(tok).is_some() {
                    (0, t.seq, None)
                } else {
                    return Resp::error(
                        410,
                        "resyncRequired",
                        "The delta token is no longer valid; resync the drive.",
                    )
                    .with_header("Location", base.to_string());
                }
            }
        },
        None => (0, t.seq, None),
    };
    let size = req
        .prefer_value("odata.maxpagesize")
        .and_then(|v| v.parse().ok())
        .or_else(|| req.q("$top").and_then(|v| v.parse().ok()))
        .unwrap_or(200usize)
        .clamp(1, 1000);
    let d = &t.drives.drives[drive_id];
    let mut out = vec![];
    let mut last = None;
    let mut more = false;
    for it in d.items.values().filter(|i| i.seq > since && i.seq <= until) {
        if after.as_ref().is_some_and(|a| it.id.as_str() <= a.as_str()) {
            continue;
        }
        if it.deleted && (since == 0 || it.created_seq > since) {
            continue;
        }
        if out.len() == size {
            more = true;
            break;
        }
        if it.deleted {
            out.push(json!({"id": it.id, "name": it.name, "parentReference": {"driveId": d.id, "driveType": d.drive_type, "id": it.parent}, "deleted": {"state": "deleted"}, "file": if it.folder { Value::Null } else { json!({}) }}));
            if let Some(o) = out.last_mut().and_then(Value::as_object_mut) {
                if o.get("file") == Some(&Value::Null) {
                    o.remove("file");
                    o.insert("folder".into(), json!({"childCount": 0}));
                }
            }
        } else {
            out.push(render_item(req, d, it, false));
        }
        last = Some(it.id.clone());
    }
    let n = out.len();
    let mut body = json!({"@odata.context": format!("{}/{}/$metadata#Collection(driveItem)", req.base, req.version), "value": out});
    if more {
        let tok = util::encode_token(&json!({"d": drive_id, "s": since, "u": until, "c": last}));
        body["@odata.nextLink"] = json!(format!("{base}{sep}token={tok}"));
    } else {
        let tok = util::encode_token(&json!({"d": drive_id, "s": until}));
        body["@odata.deltaLink"] = json!(format!("{base}{sep}token={tok}"));
    }
    Resp::ok(body).with_objects(n)
}
