//! The v2 token endpoint (client secret and certificate assertion), access tokens and the
//! application-permission checks Graph applies to each call.

use crate::http::Resp;
use crate::model::*;
use crate::state::Tenant;
use crate::util;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Microsoft Graph's appId (the resource of `https://graph.microsoft.com/.default`).
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// Application permissions (app roles of the Microsoft Graph service principal) the simulator knows.
/// Ids are Microsoft's where well known; the rest are stable ids derived from the name.
pub const GRAPH_APP_ROLES: &[(&str, &str)] = &[
    ("User.Read.All", "df021288-bdef-42ef-a4f7-b6b69d2f1f8e"),
    ("User.ReadWrite.All", "741f803b-c850-494e-b5df-cde7c675a1ca"),
    ("User.DeleteRestore.All", ""),
    ("Group.Read.All", "5b567255-7703-4780-807c-7be8301ae99b"),
    (
        "Group.ReadWrite.All",
        "62a82d76-70ea-41e2-9197-370581804d09",
    ),
    (
        "GroupMember.Read.All",
        "98830695-27a2-44f7-8c18-0c3ebc9698f6",
    ),
    ("GroupMember.ReadWrite.All", ""),
    ("Directory.Read.All", "7ab1d382-f21e-4acd-a863-ba3e13f7da61"),
    (
        "Directory.ReadWrite.All",
        "19dbc75e-c2e2-444c-a770-ec69d8559fc7",
    ),
    ("AdministrativeUnit.Read.All", ""),
    ("AdministrativeUnit.ReadWrite.All", ""),
    (
        "Application.Read.All",
        "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30",
    ),
    (
        "Application.ReadWrite.All",
        "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9",
    ),
    ("AppRoleAssignment.ReadWrite.All", ""),
    ("DelegatedPermissionGrant.Read.All", ""),
    ("DelegatedPermissionGrant.ReadWrite.All", ""),
    (
        "RoleManagement.Read.Directory",
        "483bed4a-2ad3-4361-a73b-c83ccdbdc53c",
    ),
    ("RoleManagement.Read.All", ""),
    ("RoleManagement.ReadWrite.Directory", ""),
    ("Policy.Read.All", "246dd0d5-5bd0-4def-940b-0421030a5b68"),
    ("Policy.ReadWrite.ConditionalAccess", ""),
    ("Policy.ReadWrite.AuthenticationMethod", ""),
    ("Policy.ReadWrite.Authorization", ""),
    ("Domain.Read.All", ""),
    ("Domain.ReadWrite.All", ""),
    ("Organization.Read.All", ""),
    ("Organization.ReadWrite.All", ""),
    ("Mail.Read", "810c84a8-4a9e-49e6-bf7d-12d183f40d01"),
    ("Mail.ReadWrite", ""),
    ("Files.Read.All", "01d4889c-1287-42c6-ac1f-5d1e02578ef6"),
    ("Files.ReadWrite.All", ""),
    ("Sites.Read.All", "332a536c-c7ef-4017-ab91-336970924f0d"),
    ("Sites.ReadWrite.All", ""),
];

/// Application permissions added after `GRAPH_APP_ROLES` was fixed: kept apart because the
/// generator draws from `GRAPH_APP_ROLES` by index, so growing it would change every generated
/// tenant. The Graph service principal offers them and the default app holds them (granted last).
pub const LATE_GRAPH_APP_ROLES: &[(&str, &str)] = &[
    ("RoleEligibilitySchedule.Read.Directory", ""),
    ("RoleEligibilitySchedule.ReadWrite.Directory", ""),
];

pub fn app_role_id(name: &str) -> String {
    GRAPH_APP_ROLES
        .iter()
        .chain(LATE_GRAPH_APP_ROLES)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(n, id)| {
            if id.is_empty() {
                let h = util::fnv1a(n.as_bytes());
                util::format_guid(h, h.rotate_left(17) ^ 0xA5A5)
            } else {
                id.to_string()
            }
        })
        .unwrap_or_else(|| {
            let h = util::fnv1a(name.as_bytes());
            util::format_guid(h, h.rotate_left(17) ^ 0xA5A5)
        })
}

/// The permissions of `GRAPH_APP_ROLES` (the default app's first grants; see
/// `LATE_GRAPH_APP_ROLES` for the rest).
pub fn all_permissions() -> Vec<String> {
    GRAPH_APP_ROLES.iter().map(|(n, _)| n.to_string()).collect()
}

/// The authenticated caller of a Graph request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub client_id: String,
    pub roles: BTreeSet<String>,
}

impl Caller {
    pub fn has_any(&self, perms: &[&str]) -> bool {
        perms.iter().any(|p| self.roles.contains(*p))
    }
}

/// Fails with 403 `Authorization_RequestDenied` unless the caller holds one of `perms`.
pub fn require(caller: &Option<Caller>, perms: &[&str]) -> Result<(), Resp> {
    match caller {
        Some(c) if c.has_any(perms) => Ok(()),
        _ => Err(Resp::denied()),
    }
}

/// Permission sets per resource: (read, write). Any one permission of a set suffices.
pub mod perms {
    pub const USERS_R: &[&str] = &[
        "User.Read.All",
        "User.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ];
    pub const USERS_W: &[&str] = &["User.ReadWrite.All", "Directory.ReadWrite.All"];
    pub const USERS_RESTORE: &[&str] = &[
        "User.DeleteRestore.All",
        "User.ReadWrite.All",
        "Directory.ReadWrite.All",
    ];
    pub const GROUPS_R: &[&str] = &[
        "Group.Read.All",
        "Group.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ];
    pub const GROUPS_W: &[&str] = &["Group.ReadWrite.All", "Directory.ReadWrite.All"];
    pub const MEMBERS_R: &[&str] = &[
        "GroupMember.Read.All",
        "GroupMember.ReadWrite.All",
        "Group.Read.All",
        "Group.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ];
    pub const MEMBERS_W: &[&str] = &[
        "GroupMember.ReadWrite.All",
        "Group.ReadWrite.All",
        "Directory.ReadWrite.All",
    ];
    pub const AUS_R: &[&str] = &[
        "AdministrativeUnit.Read.All",
        "AdministrativeUnit.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ];
    pub const AUS_W: &[&str] = &[
        "AdministrativeUnit.ReadWrite.All",
        "Directory.ReadWrite.All",
    ];
    pub const ROLES_R: &[&str] = &[
        "RoleManagement.Read.Directory",
        "RoleManagement.Read.All",
        "RoleManagement.ReadWrite.Directory",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ];
    pub const ROLES_W: &[&str] = &["RoleManagement.ReadWrite.Directory"];
    /// PIM role eligibility schedules (Graph does not accept Directory.Read.All for them).
    pub const ELIGIBILITY_R: &[&str] = &[
        "RoleEligibilitySchedule.Read.Directory",
        "RoleEligibilitySchedule.ReadWrite.Directory",
        "RoleManagement.Read.Directory",
        "RoleManagement.Read.All",
        "RoleManagement.ReadWrite.Directory",
    ];
    pub const ELIGIBILITY_W: &[&str] = &[
        "RoleEligibilitySchedule.ReadWrite.Directory",
        "RoleManagement.ReadWrite.Directory",
    ];
    pub const APPS_R: &[&str] = &[
        "Application.Read.All",
        "Application.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ];
    pub const APPS_W: &[&str] = &["Application.ReadWrite.All"];
    pub const APP_ROLE_ASSIGN_W: &[&str] = &[
        "AppRoleAssignment.ReadWrite.All",
        "Application.ReadWrite.All",
    ];
    pub const GRANTS_R: &[&str] = &[
        "DelegatedPermissionGrant.Read.All",
        "DelegatedPermissionGrant.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ];
    pub const GRANTS_W: &[&str] = &["DelegatedPermissionGrant.ReadWrite.All"];
    pub const POLICY_R: &[&str] = &["Policy.Read.All", "Policy.ReadWrite.ConditionalAccess"];
    pub const CA_W: &[&str] = &["Policy.ReadWrite.ConditionalAccess"];
    pub const AUTH_METHODS_W: &[&str] = &["Policy.ReadWrite.AuthenticationMethod"];
    pub const AUTHZ_W: &[&str] = &["Policy.ReadWrite.Authorization"];
    pub const DOMAINS_R: &[&str] = &[
        "Domain.Read.All",
        "Domain.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ];
    pub const DOMAINS_W: &[&str] = &["Domain.ReadWrite.All"];
    pub const ORG_R: &[&str] = &[
        "Organization.Read.All",
        "Organization.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ];
    pub const ORG_W: &[&str] = &["Organization.ReadWrite.All"];
    pub const MAIL_R: &[&str] = &["Mail.Read", "Mail.ReadWrite"];
    pub const MAIL_W: &[&str] = &["Mail.ReadWrite"];
    pub const FILES_R: &[&str] = &[
        "Files.Read.All",
        "Files.ReadWrite.All",
        "Sites.Read.All",
        "Sites.ReadWrite.All",
    ];
    pub const FILES_W: &[&str] = &["Files.ReadWrite.All", "Sites.ReadWrite.All"];
}

/// Read and write permission sets for a directory kind.
pub fn kind_perms(kind: Kind) -> (&'static [&'static str], &'static [&'static str]) {
    use perms::*;
    match kind {
        Kind::User => (USERS_R, USERS_W),
        Kind::Group => (GROUPS_R, GROUPS_W),
        Kind::Application | Kind::ServicePrincipal => (APPS_R, APPS_W),
        Kind::AdministrativeUnit => (AUS_R, AUS_W),
        Kind::DirectoryRole | Kind::RoleDefinition | Kind::RoleAssignment => (ROLES_R, ROLES_W),
        Kind::OAuth2Grant => (GRANTS_R, GRANTS_W),
        Kind::AppRoleAssignment => (APPS_R, APP_ROLE_ASSIGN_W),
        Kind::CaPolicy | Kind::NamedLocation | Kind::AuthStrength | Kind::AuthContext => {
            (POLICY_R, CA_W)
        }
        Kind::Domain => (DOMAINS_R, DOMAINS_W),
        Kind::RoleEligibility => (ELIGIBILITY_R, ELIGIBILITY_W),
    }
}

// ---------------------------------------------------------------------------------------------
// Token endpoint

fn oauth_error(status: u16, error: &str, code: u32, desc: &str) -> Resp {
    let trace = crate::http::request_id();
    let corr = crate::http::request_id();
    let ts = util::iso(util::unix_now().as_secs() as i64).replace('T', " ");
    Resp::json(
        status,
        json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {desc}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}\r\nTimestamp: {ts}"),
            "error_codes": [code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": corr,
            "error_uri": "https://login.microsoftonline.com/error?code=".to_string() + &code.to_string()
        }),
    )
}

/// Secret used to sign access tokens (derived from the seed; tokens are checked by signature).
pub fn signing_key(t: &Tenant) -> Vec<u8> {
    util::sha256(format!("cairn-graph-sim:{}:{}", t.cfg.seed, t.tenant_id).as_bytes()).to_vec()
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub fn token_endpoint(
    t: &Tenant,
    tenant_seg: &str,
    headers: &[(String, String)],
    body: &[u8],
    base: &str,
) -> Resp {
    if !tenant_seg.eq_ignore_ascii_case(&t.tenant_id) && !tenant_seg.eq_ignore_ascii_case(&t.domain)
    {
        return oauth_error(400, "invalid_request", 90002, &format!("Tenant '{tenant_seg}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."));
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let field = |n: &str| form.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut client_id = field("client_id");
    let mut client_secret = field("client_secret");
    // HTTP Basic client authentication (RFC 6749 §2.3.1).
    if let Some((_, auth)) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
    {
        if let Some(b) = auth.strip_prefix("Basic ") {
            if let Some(dec) = util::b64_decode(b.trim()).and_then(|d| String::from_utf8(d).ok()) {
                if let Some((u, p)) = dec.split_once(':') {
                    let dec = |s: &str| {
                        form_urlencoded::parse(format!("x={s}").as_bytes())
                            .next()
                            .map(|(_, v)| v.into_owned())
                            .unwrap_or_default()
                    };
                    client_id.get_or_insert(dec(u));
                    client_secret.get_or_insert(dec(p));
                }
            }
        }
    }
    match field("grant_type").as_deref() {
        Some("client_credentials") => {}
        Some(other) => {
            return oauth_error(
                400,
                "unsupported_grant_type",
                70003,
                &format!("The app requested an unsupported grant type '{other}'."),
            )
        }
        None => {
            return oauth_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            )
        }
    }
    let Some(client_id) = client_id else {
        return oauth_error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    let Some(scope) = field("scope") else {
        return oauth_error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        );
    };
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    let graph_scope = |s: &str| {
        matches!(
            s.to_ascii_lowercase().as_str(),
            "https://graph.microsoft.com/.default"
                | "https://graph.microsoft.com//.default"
                | "00000003-0000-0000-c000-000000000000/.default"
        )
    };
    if scopes.is_empty() || !scopes.iter().all(|s| graph_scope(s)) {
        let bad = scopes
            .iter()
            .find(|s| !graph_scope(s))
            .copied()
            .unwrap_or("");
        return oauth_error(400, "invalid_scope", 70011, &format!("The provided value for the input parameter 'scope' is not valid. The scope {bad} is not valid."));
    }
    let Some(app_obj) = t
        .app_index
        .get(&client_id.to_ascii_lowercase())
        .and_then(|id| t.live(Kind::Application, id))
    else {
        return oauth_error(
            400,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'.",
                t.tenant_id
            ),
        );
    };
    if let Some(secret) = client_secret {
        if !app_obj.secrets.iter().any(|(_, s)| *s == secret) {
            return oauth_error(401, "invalid_client", 7000215, &format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."));
        }
    } else if let Some(assertion) = field("client_assertion") {
        if field("client_assertion_type").as_deref()
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return oauth_error(400, "invalid_request", 700024, "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.");
        }
        if let Err((code, msg)) = verify_assertion(t, app_obj, &client_id, &assertion, base) {
            return oauth_error(401, "invalid_client", code, &msg);
        }
    } else {
        return oauth_error(401, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.");
    }
    let roles = roles_of(t, &client_id);
    let lifetime = t.cfg.token_lifetime.as_secs().max(1);
    let now = t.now();
    let token = issue_token(t, &client_id, &roles, now, now + lifetime as i64);
    Resp::ok(json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": token
    }))
}

/// Application permissions granted to a client: its service principal's app role assignments on
/// the Microsoft Graph service principal.
pub fn roles_of(t: &Tenant, client_id: &str) -> Vec<String> {
    let Some(sp_id) = t.sp_index.get(&client_id.to_ascii_lowercase()) else {
        return vec![];
    };
    let Some(graph) = t.live(Kind::ServicePrincipal, &t.graph_sp) else {
        return vec![];
    };
    let roles = graph
        .data
        .get("appRoles")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out: Vec<String> = t
        .map(Kind::AppRoleAssignment)
        .values()
        .filter(|a| {
            a.is_live()
                && a.str("principalId") == Some(&**sp_id)
                && a.str("resourceId") == Some(&*t.graph_sp)
        })
        .filter_map(|a| {
            let rid = a.str("appRoleId")?;
            roles
                .iter()
                .find(|r| r.get("id").and_then(Value::as_str) == Some(rid))
                .and_then(|r| r.get("value").and_then(Value::as_str))
                .map(str::to_string)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

pub fn issue_token(t: &Tenant, client_id: &str, roles: &[String], iat: i64, exp: i64) -> String {
    let header =
        json!({"typ": "JWT", "alg": "RS256", "x5t": "c2ltdWxhdG9y", "kid": "c2ltdWxhdG9y"});
    let claims = json!({
        "aud": "https://graph.microsoft.com",
        "iss": format!("https://sts.windows.net/{}/", t.tenant_id),
        "iat": iat, "nbf": iat, "exp": exp,
        "appid": client_id, "azp": client_id, "idtyp": "app",
        "oid": t.sp_index.get(&client_id.to_ascii_lowercase()).map(|s| s.to_string()),
        "roles": roles, "tid": t.tenant_id, "ver": "1.0",
    });
    let input = format!(
        "{}.{}",
        util::b64url(header.to_string().as_bytes()),
        util::b64url(claims.to_string().as_bytes())
    );
    let mut mac = signing_key(t);
    mac.extend_from_slice(input.as_bytes());
    format!("{input}.{}", util::b64url(&util::sha256(&mac)))
}

/// Validates a bearer token; `Err` is Graph's 401.
pub fn authenticate(t: &Tenant, authorization: Option<&str>) -> Result<Caller, Resp> {
    let unauthorized = |msg: &str| {
        Resp::error(401, "InvalidAuthenticationToken", msg)
            .with_header("WWW-Authenticate", "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"")
    };
    let Some(auth) = authorization else {
        return Err(unauthorized("Access token is empty."));
    };
    let Some(token) = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))
    else {
        return Err(unauthorized("Access token is empty."));
    };
    let parts: Vec<&str> = token.trim().split('.').collect();
    if parts.len() != 3 {
        return Err(unauthorized(
            "IDX14100: JWT is not well formed, there are no dots (.).",
        ));
    }
    let mut mac = signing_key(t);
    mac.extend_from_slice(format!("{}.{}", parts[0], parts[1]).as_bytes());
    if util::b64url(&util::sha256(&mac)) != parts[2] {
        return Err(unauthorized(
            "Access token validation failure. Invalid signature.",
        ));
    }
    let claims: Value = util::b64url_decode(parts[1])
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if exp <= t.now() {
        return Err(unauthorized(
            "Lifetime validation failed, the token is expired.",
        ));
    }
    let client_id = claims
        .get("appid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let roles = claims
        .get("roles")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(Caller { client_id, roles })
}

// ---------------------------------------------------------------------------------------------
// Certificate assertions

fn verify_assertion(
    t: &Tenant,
    app: &Stored,
    client_id: &str,
    jwt: &str,
    base: &str,
) -> Result<(), (u32, String)> {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::signature::Verifier;
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return Err((50027, "JWT token is invalid or malformed.".into()));
    }
    let dec =
        |s: &str| util::b64url_decode(s).and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let (Some(header), Some(claims), Some(sig)) =
        (dec(parts[0]), dec(parts[1]), util::b64url_decode(parts[2]))
    else {
        return Err((50027, "JWT token is invalid or malformed.".into()));
    };
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let x5t = header.get("x5t").and_then(Value::as_str);
    let x5t256 = header.get("x5t#S256").and_then(Value::as_str);
    if x5t.is_none() && x5t256.is_none() {
        return Err((700027, "Client assertion failed signature validation: the header carries neither 'x5t' nor 'x5t#S256'.".into()));
    }
    let norm = |s: &str| util::b64url_decode(&s.replace('+', "-").replace('/', "_"));
    let want1 = x5t.and_then(norm);
    let want256 = x5t256.and_then(norm);
    let certs = app
        .data
        .get("keyCredentials")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let der = certs.iter().find_map(|c| {
        let der = util::b64_decode(c.get("key")?.as_str()?)?;
        let m1 = want1
            .as_ref()
            .is_some_and(|w| *w == util::sha1(&der).to_vec());
        let m256 = want256
            .as_ref()
            .is_some_and(|w| *w == util::sha256(&der).to_vec());
        (m1 || m256).then_some(der)
    });
    let Some(der) = der else {
        return Err((700027, format!("Client assertion failed signature validation. Key was not found. The certificate with thumbprint in the assertion is not registered for app '{client_id}'.")));
    };
    let spki = crate::certs::spki_of_certificate(&der).unwrap_or(der.clone());
    let key = rsa::RsaPublicKey::from_public_key_der(&spki).map_err(|_| {
        (
            700027,
            "Client assertion failed signature validation: the registered key is not an RSA key."
                .to_string(),
        )
    })?;
    let input = format!("{}.{}", parts[0], parts[1]);
    let ok = match alg {
        "RS256" => rsa::pkcs1v15::Signature::try_from(sig.as_slice())
            .ok()
            .is_some_and(|s| rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key).verify(input.as_bytes(), &s).is_ok()),
        "PS256" => rsa::pss::Signature::try_from(sig.as_slice())
            .ok()
            .is_some_and(|s| rsa::pss::VerifyingKey::<sha2::Sha256>::new(key).verify(input.as_bytes(), &s).is_ok()),
        other => return Err((5002738, format!("Invalid JWT token. '{other}' is not a supported signature algorithm. Supported algorithms are RS256 and PS256."))),
    };
    if !ok {
        return Err((
            700027,
            "Client assertion failed signature validation.".into(),
        ));
    }
    let c = |k: &str| {
        claims
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    if c("iss") != client_id || c("sub") != client_id {
        return Err((700023, "Client assertion audience claim does not match Realm issuer (iss and sub must be the client id).".into()));
    }
    let aud = c("aud");
    let okaud = [
        format!(
            "https://login.microsoftonline.com/{}/oauth2/v2.0/token",
            t.tenant_id
        ),
        format!(
            "https://login.microsoftonline.com/{}/oauth2/v2.0/token",
            t.domain
        ),
        format!("https://login.microsoftonline.com/{}/v2.0", t.tenant_id),
        format!(
            "https://login.microsoftonline.com/{}/oauth2/token",
            t.tenant_id
        ),
        format!("{base}/{}/oauth2/v2.0/token", t.tenant_id),
        format!("{base}/{}/oauth2/v2.0/token", t.domain),
    ];
    if !okaud.iter().any(|a| a.eq_ignore_ascii_case(&aud)) {
        return Err((
            700016,
            format!("Client assertion contains an invalid audience '{aud}'."),
        ));
    }
    let now = util::unix_now().as_secs() as i64;
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    let nbf = claims.get("nbf").and_then(Value::as_i64).unwrap_or(0);
    if exp + 300 < now {
        return Err((
            700024,
            "Client assertion is not within its valid time range.".into(),
        ));
    }
    if nbf - 300 > now {
        return Err((
            700024,
            "Client assertion is not within its valid time range.".into(),
        ));
    }
    if c("jti").is_empty() {
        return Err((700021, "Client assertion is missing the jti claim.".into()));
    }
    Ok(())
}
