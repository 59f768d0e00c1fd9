//! Deterministic tenant generator: the same seed and profile always give the same tenant.

use crate::auth::{self, GRAPH_APP_ID};
use crate::config::Profile;
use crate::model::*;
use crate::state::{Tenant, MANAGER, MEMBERS, OWNERS};
use crate::util::{self, Rng};
use serde_json::{json, Value};
use std::collections::HashMap;

pub const GIVEN: &[&str] = &[
    "Adele",
    "Alex",
    "Allan",
    "Bianca",
    "Brian",
    "Cameron",
    "Christie",
    "Debra",
    "Delia",
    "Diego",
    "Emily",
    "Enrico",
    "Gerhart",
    "Grady",
    "Henrietta",
    "Irvin",
    "Isaiah",
    "Johanna",
    "Joni",
    "Lee",
    "Lidia",
    "Lynne",
    "Megan",
    "Miriam",
    "Nestor",
    "Patti",
    "Pradeep",
    "Raul",
    "Sanjay",
    "Sophia",
    "Aisha",
    "Akira",
    "Amara",
    "Anders",
    "Ana",
    "Beatriz",
    "Carlos",
    "Chen",
    "Dmitri",
    "Elena",
    "Farah",
    "Fatima",
    "Giulia",
    "Hana",
    "Hiroshi",
    "Ines",
    "Ivan",
    "Jamal",
    "Jin",
    "Kai",
    "Kofi",
    "Lars",
    "Leila",
    "Lucas",
    "Mateo",
    "Mei",
    "Mohammed",
    "Nadia",
    "Nikolai",
    "Noah",
    "Olga",
    "Omar",
    "Priya",
    "Rafael",
    "Ravi",
    "Rosa",
    "Sara",
    "Sven",
    "Tariq",
    "Thomas",
    "Valentina",
    "Wei",
    "Yara",
    "Yusuf",
    "Zoe",
    "Ingrid",
    "Javier",
    "Keiko",
    "Liam",
    "Maya",
];
pub const SURNAMES: &[&str] = &[
    "Vance",
    "Wilber",
    "Deyoung",
    "Pires",
    "Johnson",
    "White",
    "Cline",
    "Berger",
    "Dennis",
    "Siciliani",
    "Braun",
    "Bossi",
    "Mueller",
    "Archie",
    "Gerhardt",
    "Sayers",
    "Turner",
    "Lauer",
    "Sherman",
    "Gu",
    "Holloway",
    "Robbins",
    "Bowen",
    "Graham",
    "Wilke",
    "Fernandez",
    "Gupta",
    "Razi",
    "Shah",
    "Nguyen",
    "Okafor",
    "Tanaka",
    "Adeyemi",
    "Lindqvist",
    "Silva",
    "Costa",
    "Garcia",
    "Wang",
    "Petrov",
    "Popescu",
    "Haddad",
    "Rahman",
    "Romano",
    "Sato",
    "Kimura",
    "Moreau",
    "Ivanova",
    "Ali",
    "Park",
    "Kowalski",
    "Mensah",
    "Nielsen",
    "Hosseini",
    "Martin",
    "Lopez",
    "Chen",
    "Hassan",
    "Novak",
    "Schmidt",
    "Smith",
    "Kuznetsova",
    "Ahmed",
    "Iyer",
    "Almeida",
    "Rao",
    "Rossi",
    "Cohen",
    "Berg",
    "Malik",
    "Dubois",
    "Ricci",
    "Zhang",
    "Khalil",
    "Yilmaz",
    "Evans",
    "Larsen",
    "Ortega",
    "Fujita",
    "Murphy",
    "Singh",
];
pub const DEPARTMENTS: &[(&str, &[&str])] = &[
    (
        "Sales",
        &["Account Executive", "Sales Manager", "Sales Representative"],
    ),
    (
        "Marketing",
        &[
            "Product Marketing Manager",
            "Marketing Specialist",
            "Content Strategist",
        ],
    ),
    (
        "Engineering",
        &[
            "Software Engineer",
            "Senior Software Engineer",
            "Engineering Manager",
        ],
    ),
    (
        "Finance",
        &["Accountant", "Financial Analyst", "Controller"],
    ),
    (
        "Human Resources",
        &["HR Generalist", "Recruiter", "HR Manager"],
    ),
    ("Legal", &["Counsel", "Paralegal", "Compliance Officer"]),
    (
        "IT",
        &["System Administrator", "Helpdesk Technician", "IT Manager"],
    ),
    (
        "Operations",
        &[
            "Operations Analyst",
            "Logistics Coordinator",
            "Operations Manager",
        ],
    ),
    (
        "Research",
        &["Research Scientist", "Data Scientist", "Lab Technician"],
    ),
    (
        "Support",
        &[
            "Support Engineer",
            "Customer Success Manager",
            "Support Lead",
        ],
    ),
    (
        "Executive Management",
        &[
            "Chief Executive Officer",
            "Chief Financial Officer",
            "Executive Assistant",
        ],
    ),
    (
        "Retail",
        &["Store Manager", "Retail Associate", "Merchandiser"],
    ),
];
const CITIES: &[(&str, &str, &str)] = &[
    ("Seattle", "United States", "US"),
    ("Redmond", "United States", "US"),
    ("New York", "United States", "US"),
    ("London", "United Kingdom", "GB"),
    ("Dublin", "Ireland", "IE"),
    ("Berlin", "Germany", "DE"),
    ("Paris", "France", "FR"),
    ("Tokyo", "Japan", "JP"),
    ("Sydney", "Australia", "AU"),
    ("Toronto", "Canada", "CA"),
    ("Bangalore", "India", "IN"),
    ("Sao Paulo", "Brazil", "BR"),
];
const APP_WORDS: &[&str] = &[
    "HR",
    "Payroll",
    "Expense",
    "CRM",
    "Analytics",
    "Backup",
    "Portal",
    "Sync",
    "Reporting",
    "Inventory",
    "Ticketing",
    "Wiki",
    "Billing",
    "Identity",
    "Provisioning",
    "Chat",
    "Scheduler",
    "Monitor",
    "Docs",
    "Onboarding",
    "Audit",
    "Forecast",
    "Signing",
    "Travel",
    "Learning",
];

/// Built-in directory role templates (Microsoft's template ids).
pub const ROLE_TEMPLATES: &[(&str, &str, &str)] = &[
    ("62e90394-69f5-4237-9190-012177145e10", "Global Administrator", "Can manage all aspects of Microsoft Entra ID and Microsoft services that use Microsoft Entra identities."),
    ("fe930be7-5e62-47db-91af-98c3a49a38b1", "User Administrator", "Can manage all aspects of users and groups, including resetting passwords for limited admins."),
    ("729827e3-9c14-49f7-bb1b-9608f156bbb8", "Helpdesk Administrator", "Can reset passwords for non-administrators and Helpdesk Administrators."),
    ("194ae4cb-b126-40b2-bd5b-6091b380977d", "Security Administrator", "Can read security information and reports, and manage configuration in Microsoft Entra ID and Office 365."),
    ("5d6b6bb7-de71-4623-b4af-96380a352509", "Security Reader", "Can read security information and reports in Microsoft Entra ID and Office 365."),
    ("f2ef992c-3afb-46b9-b7cf-a126ee74c451", "Global Reader", "Can read everything that a Global Administrator can, but not update anything."),
    ("9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3", "Application Administrator", "Can create and manage all aspects of app registrations and enterprise apps."),
    ("158c047a-c907-4556-b7ef-446551a6b5f7", "Cloud Application Administrator", "Can create and manage all aspects of app registrations and enterprise apps except App Proxy."),
    ("29232cdf-9323-42fd-ade2-1d097af3e4de", "Exchange Administrator", "Can manage all aspects of the Exchange product."),
    ("f28a1f50-f6e7-4571-818b-6a12f2af6b6c", "SharePoint Administrator", "Can manage all aspects of the SharePoint service."),
    ("69091246-20e8-4a56-aa4d-066075b2a7a8", "Teams Administrator", "Can manage the Microsoft Teams service."),
    ("b1be1c3e-b65d-4f19-8427-f6fa0d97feb9", "Conditional Access Administrator", "Can manage Conditional Access capabilities."),
    ("e8611ab8-c189-46e8-94e1-60213ab1f814", "Privileged Role Administrator", "Can manage role assignments in Microsoft Entra ID, and all aspects of Privileged Identity Management."),
    ("b0f54661-2d74-4c50-afa3-1ec803f12efe", "Billing Administrator", "Can perform common billing related tasks like updating payment information."),
    ("fdd7a751-b60b-444a-984c-02652fe8fa1c", "Groups Administrator", "Members of this role can create/manage groups, create/manage groups settings like naming and expiration policies, and view groups activity and audit reports."),
    ("c4e39bd9-1100-46d3-8c65-fb160da0071f", "Authentication Administrator", "Can access to view, set and reset authentication method information for any non-admin user."),
    ("7be44c8a-adaf-4e2a-84d6-ab2649e08a13", "Privileged Authentication Administrator", "Can access to view, set and reset authentication method information for any user (admin or non-admin)."),
    ("88d8e3e3-8f55-4a1e-953a-9b9898b8876b", "Directory Readers", "Can read basic directory information. Commonly used to grant directory read access to applications and guests."),
    ("9360feb5-f418-4baa-8175-e2a00bac4301", "Directory Writers", "Can read and write basic directory information. For granting access to applications, not intended for users."),
    ("17315797-102d-40b4-93e0-432062caca18", "Compliance Administrator", "Can read and manage compliance configuration and reports in Microsoft Entra ID and Microsoft 365."),
    ("3a2c62db-5318-420d-8d74-23affee5d9d5", "Intune Administrator", "Can manage all aspects of the Intune product."),
    ("4a5d8f65-41da-4de4-8968-e035b65339cf", "Reports Reader", "Can read sign-in and audit reports."),
    ("966707d0-3269-4727-9be2-8c3a10f19b9d", "Password Administrator", "Can reset passwords for non-administrators and Password Administrators."),
    ("cf1c38e5-3621-4004-a7cb-879624dced7c", "Application Developer", "Can create application registrations independent of the 'Users can register applications' setting."),
    ("95e79109-95c0-4d8e-aee3-d01accf2d47b", "Guest Inviter", "Can invite guest users independent of the 'members can invite guests' setting."),
];

/// First-party Microsoft service principals present in every tenant (appId, name).
pub const FIRST_PARTY: &[(&str, &str)] = &[
    (GRAPH_APP_ID, "Microsoft Graph"),
    (
        "00000002-0000-0ff1-ce00-000000000000",
        "Office 365 Exchange Online",
    ),
    (
        "00000003-0000-0ff1-ce00-000000000000",
        "Office 365 SharePoint Online",
    ),
    (
        "00000002-0000-0000-c000-000000000000",
        "Windows Azure Active Directory",
    ),
    (
        "797f4846-ba00-4fd7-ba43-dac1f8f63013",
        "Windows Azure Service Management API",
    ),
    ("c44b4083-3bb0-49c1-b47d-974e53cbdf3c", "Azure Portal"),
    ("1fec8e78-bce4-4aaf-ab1b-5451cc387264", "Microsoft Teams"),
    (
        "c5393580-f805-4401-95e8-94b7a6ef2fc2",
        "Office 365 Management APIs",
    ),
    (
        "14d82eec-204b-4c2f-b7e8-296a70dab67e",
        "Microsoft Graph Command Line Tools",
    ),
    ("de8bc8b5-d9f9-48b1-a8ad-b748da725064", "Graph Explorer"),
    ("499b84ac-1321-427f-aa17-267ca6975798", "Azure DevOps"),
    ("00000007-0000-0000-c000-000000000000", "Dataverse"),
];

/// Sizes per profile.
pub struct Sizes {
    pub users: usize,
    pub groups: usize,
    pub apps: usize,
    pub sps: usize,
    pub aus: usize,
    pub ca: usize,
    pub named_locations: usize,
    pub role_assignments: usize,
    pub custom_roles: usize,
    pub mailboxes: usize,
    pub sites: usize,
    pub onedrives: usize,
    pub group_drives: usize,
}

pub fn sizes(p: Profile) -> Sizes {
    match p {
        Profile::Empty => Sizes {
            users: 1,
            groups: 0,
            apps: 0,
            sps: 0,
            aus: 0,
            ca: 0,
            named_locations: 0,
            role_assignments: 0,
            custom_roles: 0,
            mailboxes: 0,
            sites: 0,
            onedrives: 0,
            group_drives: 0,
        },
        Profile::Small => Sizes {
            users: 50,
            groups: 14,
            apps: 12,
            sps: 20,
            aus: 3,
            ca: 12,
            named_locations: 4,
            role_assignments: 14,
            custom_roles: 1,
            mailboxes: 50,
            sites: 4,
            onedrives: 10,
            group_drives: 4,
        },
        Profile::Medium => Sizes {
            users: 5000,
            groups: 800,
            apps: 300,
            sps: 380,
            aus: 40,
            ca: 40,
            named_locations: 12,
            role_assignments: 150,
            custom_roles: 5,
            mailboxes: 100,
            sites: 30,
            onedrives: 60,
            group_drives: 40,
        },
        Profile::Large => Sizes {
            users: 100_000,
            groups: 20_000,
            apps: 5000,
            sps: 6000,
            aus: 500,
            ca: 200,
            named_locations: 40,
            role_assignments: 2000,
            custom_roles: 20,
            mailboxes: 300,
            sites: 200,
            onedrives: 300,
            group_drives: 200,
        },
    }
}

/// Credentials of the default app registered in every generated tenant.
pub struct DefaultApp {
    pub client_id: String,
    pub client_secret: String,
}

fn id(rng: &mut Rng) -> String {
    rng.guid()
}

/// Registers an application + service principal with a secret and the given Graph permissions.
/// Returns (appId, secret, application object id, service principal id).
pub fn register_app(
    t: &mut Tenant,
    rng: &mut Rng,
    name: &str,
    permissions: &[String],
) -> (String, String, String, String) {
    let app_id = id(rng);
    let obj_id = id(rng);
    let key_id = id(rng);
    let secret: String = {
        let raw = rng.bytes(30);
        let s = util::b64url(&raw).replace(['-', '_'], "~");
        format!("{}Q~{}", &s[..3], &s[3..])
    };
    let now = t.base_time;
    let mut app = json!({
        "id": obj_id, "appId": app_id, "displayName": name, "createdDateTime": util::iso(now),
        "publisherDomain": t.domain, "signInAudience": "AzureADMyOrg",
        "passwordCredentials": [{
            "customKeyIdentifier": null, "displayName": "cairn", "endDateTime": util::iso(now + 2 * 365 * 86400),
            "hint": &secret[..3], "keyId": key_id, "secretText": null, "startDateTime": util::iso(now)
        }],
        "requiredResourceAccess": [{
            "resourceAppId": GRAPH_APP_ID,
            "resourceAccess": permissions.iter().map(|p| json!({"id": auth::app_role_id(p), "type": "Role"})).collect::<Vec<_>>()
        }]
    });
    let app_obj = app.as_object_mut().unwrap().clone();
    let aid = t.insert(Kind::Application, app_obj);
    t.get_mut(Kind::Application, &aid)
        .unwrap()
        .secrets
        .push((key_id, secret.clone()));
    let sp_id = id(rng);
    let sp = json!({
        "id": sp_id, "appId": app_id, "displayName": name, "appDisplayName": name,
        "appOwnerOrganizationId": t.tenant_id, "servicePrincipalNames": [app_id],
        "createdDateTime": util::iso(now), "servicePrincipalType": "Application",
        "signInAudience": "AzureADMyOrg", "tags": ["WindowsAzureActiveDirectoryIntegratedApp"]
    });
    t.insert(Kind::ServicePrincipal, sp.as_object().unwrap().clone());
    for p in permissions {
        grant_app_role(t, rng, &sp_id, name, p);
    }
    (app_id, secret, obj_id, sp_id)
}

/// Grants a Graph application permission to a service principal (an app role assignment).
pub fn grant_app_role(t: &mut Tenant, rng: &mut Rng, sp_id: &str, sp_name: &str, permission: &str) {
    let graph = t.graph_sp.to_string();
    let a = json!({
        "id": util::b64url(&rng.bytes(32)), "appRoleId": auth::app_role_id(permission),
        "createdDateTime": util::iso(t.base_time), "principalDisplayName": sp_name, "principalId": sp_id,
        "principalType": "ServicePrincipal", "resourceDisplayName": "Microsoft Graph", "resourceId": graph
    });
    t.insert(Kind::AppRoleAssignment, a.as_object().unwrap().clone());
}

/// Picks `k` distinct indices below `n` (deterministic, O(k)).
fn sample(rng: &mut Rng, n: usize, k: usize) -> Vec<usize> {
    if n == 0 {
        return vec![];
    }
    let k = k.min(n);
    const PRIMES: [usize; 8] = [
        7919, 104_729, 15_485_863, 2_750_159, 1_299_709, 611_953, 86_028_121, 32_452_843,
    ];
    let stride = PRIMES
        .iter()
        .copied()
        .cycle()
        .skip(rng.below(PRIMES.len()))
        .take(PRIMES.len())
        .find(|p| !n.is_multiple_of(*p))
        .unwrap_or(1);
    let start = rng.below(n);
    (0..k).map(|i| (start + i * stride) % n).collect()
}

/// Bulk version of `link_gen` for a group's members (the set is built from sorted ids at once).
fn link_many(t: &mut Tenant, group: &Id, members: Vec<Id>) {
    for m in &members {
        t.member_of
            .entry(m.clone())
            .or_default()
            .insert(group.clone());
    }
    let set: std::collections::BTreeSet<Id> = members.into_iter().collect();
    if let Some(o) = t.get_mut(Kind::Group, group) {
        let e = o.links.entry(MEMBERS).or_default();
        if e.is_empty() {
            *e = set;
        } else {
            e.extend(set);
        }
    }
}

fn link_gen(t: &mut Tenant, kind: Kind, container: &Id, rel: &'static str, member: &Id) {
    // Generation-time links don't go to the membership log: the initial delta round lists them.
    if let Some(o) = t.get_mut(kind, container) {
        o.links.entry(rel).or_default().insert(member.clone());
    }
    if rel == MEMBERS {
        t.member_of
            .entry(member.clone())
            .or_default()
            .insert(container.clone());
    }
}

fn guid_bytes_le(g: &str) -> Vec<u8> {
    let hex: String = g.chars().filter(|c| *c != '-').collect();
    let mut b: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    b
}

/// Graph-style composite id of a role assignment.
pub fn role_assignment_id(role_def: &str, principal: &str, n: u32) -> String {
    format!(
        "{}{}-{n}",
        util::b64url(&guid_bytes_le(role_def)),
        util::b64url(&guid_bytes_le(principal))
    )
}

pub fn generate(t: &mut Tenant) -> DefaultApp {
    let seed = t.cfg.seed;
    let sz = sizes(t.cfg.profile);
    let mut rng = Rng::derive(seed, "tenant");
    let domain = t.domain.clone();
    let custom_domain = domain.split('.').next().unwrap_or("contoso").to_string() + ".com";
    let base = t.base_time;

    // Organization and policies.
    t.organization = json!({
        "id": t.tenant_id, "deletedDateTime": null, "businessPhones": ["+1 425 555 0100"], "city": "Redmond",
        "country": null, "countryLetterCode": "US", "createdDateTime": util::iso(base - 1500 * 86400),
        "displayName": "Contoso", "marketingNotificationEmails": [], "onPremisesLastSyncDateTime": null,
        "onPremisesSyncEnabled": null, "postalCode": "98052", "preferredLanguage": "en", "privacyProfile": null,
        "securityComplianceNotificationMails": [], "securityComplianceNotificationPhones": [], "state": "WA",
        "street": "One Microsoft Way", "technicalNotificationMails": [format!("admin@{custom_domain}")], "tenantType": "AAD",
        "assignedPlans": [],
        "verifiedDomains": [
            {"capabilities": "Email, OfficeCommunicationsOnline", "isDefault": false, "isInitial": true, "name": domain, "type": "Managed"},
            {"capabilities": "Email", "isDefault": true, "isInitial": false, "name": custom_domain, "type": "Managed"}
        ]
    }).as_object().unwrap().clone();
    t.authorization_policy = json!({
        "id": "authorizationPolicy", "allowInvitesFrom": "everyone", "allowedToSignUpEmailBasedSubscriptions": true,
        "allowedToUseSSPR": true, "allowEmailVerifiedUsersToJoinOrganization": false, "blockMsolPowerShell": false,
        "displayName": "Authorization Policy", "description": "Used to manage authorization related settings across the company.",
        "guestUserRoleId": "10dae51f-b6af-4016-8d66-8c2a99b929b3",
        "defaultUserRolePermissions": {"allowedToCreateApps": true, "allowedToCreateSecurityGroups": true,
            "allowedToCreateTenants": true, "allowedToReadOtherUsers": true, "allowedToReadBitlockerKeysForOwnedDevice": true,
            "permissionGrantPoliciesAssigned": ["ManagePermissionGrantsForSelf.microsoft-user-default-legacy"]}
    }).as_object().unwrap().clone();
    t.security_defaults = json!({
        "id": "00000000-0000-0000-0000-000000000005", "displayName": "Security Defaults",
        "description": "Security defaults is a set of basic identity security mechanisms recommended by Microsoft.",
        "isEnabled": t.cfg.profile == Profile::Empty
    }).as_object().unwrap().clone();
    let method = |id: &str, extra: Value| {
        let mut m = json!({"@odata.type": format!("#microsoft.graph.{}AuthenticationMethodConfiguration", lower_first(id)),
            "id": id, "state": "enabled", "excludeTargets": [],
            "includeTargets": [{"targetType": "group", "id": "all_users", "isRegistrationRequired": false}]});
        if let (Some(m), Value::Object(e)) = (m.as_object_mut(), extra) {
            m.extend(e);
        }
        m
    };
    t.auth_methods_policy = json!({
        "id": "authenticationMethodsPolicy", "displayName": "Authentication Methods Policy",
        "description": "The tenant-wide policy that controls which authentication methods are allowed in the tenant, authentication method registration requirements, and self-service password reset settings",
        "lastModifiedDateTime": util::iso(base - 30 * 86400), "policyVersion": "1.5", "policyMigrationState": "migrationComplete",
        "reconfirmationInDays": null,
        "registrationEnforcement": {"authenticationMethodsRegistrationCampaign": {"snoozeDurationInDays": 1, "state": "default", "excludeTargets": [], "includeTargets": [{"id": "all_users", "targetType": "group", "targetedAuthenticationMethod": "microsoftAuthenticator"}]}},
        "authenticationMethodConfigurations": [
            method("Fido2", json!({"isAttestationEnforced": false, "isSelfServiceRegistrationAllowed": true, "keyRestrictions": {"isEnforced": false, "enforcementType": "block", "aaGuids": []}})),
            method("MicrosoftAuthenticator", json!({"isSoftwareOathEnabled": false})),
            method("Sms", json!({})),
            method("TemporaryAccessPass", json!({"defaultLifetimeInMinutes": 60, "defaultLength": 8, "minimumLifetimeInMinutes": 60, "maximumLifetimeInMinutes": 480, "isUsableOnce": false})),
            method("Email", json!({"allowExternalIdToUseEmailOtp": "default"})),
            method("SoftwareOath", json!({})),
            method("Voice", json!({"isOfficePhoneAllowed": false})),
            method("X509Certificate", json!({"certificateUserBindings": [], "authenticationModeConfiguration": {"x509CertificateAuthenticationDefaultMode": "x509CertificateSingleFactor", "rules": []}}))
        ]
    }).as_object().unwrap().clone();

    // Domains.
    let mut doms = vec![
        (domain.clone(), true, false, true),
        (custom_domain.clone(), false, true, true),
    ];
    let extra_domains = match t.cfg.profile {
        Profile::Empty => 0,
        Profile::Small => 1,
        Profile::Medium => 3,
        Profile::Large => 8,
    };
    for i in 0..extra_domains {
        doms.push((
            format!(
                "{}{}.com",
                [
                    "fabrikam",
                    "northwind",
                    "tailspin",
                    "woodgrove",
                    "litware",
                    "adatum",
                    "proseware",
                    "wingtip"
                ][i % 8],
                if i >= 8 { i.to_string() } else { String::new() }
            ),
            false,
            false,
            i % 2 == 0,
        ));
    }
    for (name, initial, default, verified) in doms {
        let d = json!({"id": name, "isInitial": initial, "isDefault": default, "isVerified": verified,
            "supportedServices": if verified { json!(["Email", "OfficeCommunicationsOnline"]) } else { json!([]) }});
        t.insert(Kind::Domain, d.as_object().unwrap().clone());
    }

    // Microsoft Graph and the other first-party service principals.
    let mut graph_roles = vec![];
    for (name, _) in auth::GRAPH_APP_ROLES
        .iter()
        .chain(auth::LATE_GRAPH_APP_ROLES)
    {
        graph_roles.push(json!({"allowedMemberTypes": ["Application"], "description": format!("Allows the app to {name} without a signed-in user."),
            "displayName": name, "id": auth::app_role_id(name), "isEnabled": true, "origin": "Application", "value": name}));
    }
    for (app_id, name) in FIRST_PARTY {
        let sp_id = id(&mut rng);
        let mut sp = json!({
            "id": sp_id, "appId": app_id, "displayName": name, "appDisplayName": name,
            "appOwnerOrganizationId": "f8cdef31-a31e-4b4a-93e4-5f571e91255a", "servicePrincipalNames": [app_id],
            "createdDateTime": util::iso(base - 1500 * 86400), "signInAudience": "AzureADMultipleOrgs",
            "servicePrincipalType": "Application", "tags": []
        });
        if *app_id == GRAPH_APP_ID {
            sp["servicePrincipalNames"] = json!([
                "https://graph.microsoft.com",
                GRAPH_APP_ID,
                "https://graph.microsoft.com/"
            ]);
            sp["appRoles"] = Value::Array(graph_roles.clone());
            sp["oauth2PermissionScopes"] = json!([
                {"adminConsentDescription": "Allows users to sign-in to the app, and allows the app to read the profile of signed-in users.", "adminConsentDisplayName": "Sign in and read user profile", "id": "e1fe6dd8-ba31-4d61-89e7-88639da4683d", "isEnabled": true, "type": "User", "userConsentDescription": "Allows you to sign in to the app with your organizational account and let the app read your profile.", "userConsentDisplayName": "Sign in and read your profile", "value": "User.Read"}
            ]);
        }
        let sid = t.insert(Kind::ServicePrincipal, sp.as_object().unwrap().clone());
        if *app_id == GRAPH_APP_ID {
            t.graph_sp = sid;
        }
    }

    // The default app, holding every permission the simulator knows.
    let (client_id, client_secret, default_app, default_sp) =
        register_app(t, &mut rng, "Cairn Backup", &auth::all_permissions());

    // Users.
    let mut used: HashMap<String, u32> = HashMap::new();
    let mut users: Vec<Id> = Vec::with_capacity(sz.users);
    let mut member_users: Vec<Id> = Vec::with_capacity(sz.users);
    let mut by_dept: HashMap<String, Vec<Id>> = HashMap::new();
    for i in 0..sz.users {
        let (given, surname) = if i == 0 {
            ("MOD", "Administrator")
        } else {
            (*rng.pick(GIVEN), *rng.pick(SURNAMES))
        };
        let guest = i > 0 && rng.chance(0.03);
        let base_nick = if i == 0 {
            "admin".to_string()
        } else {
            format!("{}{}", given, &surname[..1])
        };
        let n = used.entry(base_nick.to_ascii_lowercase()).or_insert(0);
        *n += 1;
        let nick = if *n == 1 {
            base_nick.clone()
        } else {
            format!("{base_nick}{n}")
        };
        let uid = id(&mut rng);
        let created = base - (rng.below(1500) as i64) * 86400 - rng.below(86400) as i64;
        let mut u = serde_json::Map::with_capacity(24);
        u.insert("id".into(), json!(uid));
        u.insert(
            "displayName".into(),
            json!(if i == 0 {
                "MOD Administrator".to_string()
            } else {
                format!("{given} {surname}")
            }),
        );
        u.insert("givenName".into(), json!(given));
        u.insert("surname".into(), json!(surname));
        if guest {
            u.insert("accountEnabled".into(), json!(!rng.chance(0.05)));
            u.insert("createdDateTime".into(), json!(util::iso(created)));
            let ext = format!("{}.{}", given.to_lowercase(), surname.to_lowercase());
            let home = [
                "gmail.com",
                "outlook.com",
                "fabrikam.com",
                "partner.example",
            ][rng.below(4)];
            u.insert(
                "userPrincipalName".into(),
                json!(format!(
                    "{ext}{}_{}#EXT#@{domain}",
                    if *n > 1 { n.to_string() } else { String::new() },
                    home.replace('.', "_")
                )
                .replace("_gmail_com", "_gmail.com")),
            );
            u.insert("mail".into(), json!(format!("{ext}@{home}")));
            u.insert(
                "mailNickname".into(),
                json!(format!(
                    "{}{}#EXT#",
                    ext.replace('.', "_"),
                    if *n > 1 { n.to_string() } else { String::new() }
                )),
            );
            u.insert("userType".into(), json!("Guest"));
            u.insert("creationType".into(), json!("Invitation"));
            u.insert("externalUserState".into(), json!("Accepted"));
            u.insert("otherMails".into(), json!([format!("{ext}@{home}")]));
        } else {
            let upn = format!("{nick}@{domain}");
            u.insert("userPrincipalName".into(), json!(upn));
            u.insert("mail".into(), json!(upn));
            u.insert("mailNickname".into(), json!(nick));
            u.insert("userType".into(), json!("Member"));
            if i == 0 {
                // The admin is stored in full; other members keep derivable properties lazy.
                for (k, v) in lazy_user_props(seed, 0, &upn) {
                    u.insert(k, v);
                }
                u.insert("jobTitle".into(), json!("IT Administrator"));
                u.insert("department".into(), json!("IT"));
            }
        }
        let member = !guest;
        let uid = t.insert(Kind::User, u);
        if member {
            let dept = if i == 0 {
                "IT"
            } else {
                user_department(seed, i as u32)
            };
            by_dept
                .entry(dept.to_string())
                .or_default()
                .push(uid.clone());
            member_users.push(uid.clone());
            if i > 0 {
                if let Some(o) = t.get_mut(Kind::User, &uid) {
                    o.lazy = Some((seed, i as u32));
                }
            }
        }
        users.push(uid);
    }
    // An org chart per department: each member reports to one of the first people of the
    // department (a tree with fan-out 8); department heads report to the admin.
    let admin = users.first().cloned();
    let mut depts: Vec<&String> = by_dept.keys().collect();
    depts.sort();
    let chart: Vec<(Id, Id)> = depts
        .into_iter()
        .flat_map(|d| {
            let people = &by_dept[d];
            people
                .iter()
                .enumerate()
                .filter_map(|(pos, u)| {
                    let mgr = if pos == 0 {
                        admin.clone()?
                    } else {
                        people[(pos - 1) / 8].clone()
                    };
                    (mgr != *u).then(|| (u.clone(), mgr))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    for (u, mgr) in chart {
        link_gen(t, Kind::User, &u, MANAGER, &mgr);
    }
    // Groups: M365, security, dynamic and mail-enabled security, with a skewed membership.
    let mut groups: Vec<Id> = vec![];
    let mut unified: Vec<Id> = vec![];
    let mut role_assignable: Vec<Id> = vec![];
    let big = (sz.users as f64 * 0.15).max(4.0);
    for g in 0..sz.groups {
        let (dept, _) = DEPARTMENTS[g % DEPARTMENTS.len()];
        let r = rng.unit();
        let kind = if g == 0 || r < 0.4 {
            0
        } else if r < 0.88 {
            1
        } else if r < 0.94 {
            2
        } else {
            3
        };
        let name = match (g, kind) {
            (0, _) => "All Company".to_string(),
            (_, 0) => format!("{dept} Team {}", g / DEPARTMENTS.len() + 1),
            (_, 1) => format!("SG-{}-{}", dept.replace(' ', ""), g),
            (_, 2) => format!("DYN-{}-{}", dept.replace(' ', ""), g),
            _ => format!("{dept} Distribution {g}"),
        };
        let nick: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_lowercase();
        let nick = format!(
            "{nick}{}",
            if g > 0 { format!("{g}") } else { String::new() }
        );
        let gid = id(&mut rng);
        let created = base - (rng.below(1200) as i64) * 86400;
        let mut d = json!({
            "id": gid, "displayName": name, "description": format!("{name} ({dept})"), "mailNickname": nick,
            "createdDateTime": util::iso(created), "renewedDateTime": util::iso(created),
            "securityIdentifier": format!("S-1-12-1-{}-{}-{}-{}", rng.next_u64() as u32, rng.next_u64() as u32, rng.next_u64() as u32, rng.next_u64() as u32),
        });
        match kind {
            0 => {
                d["groupTypes"] = json!(["Unified"]);
                d["mailEnabled"] = json!(true);
                d["securityEnabled"] = json!(false);
                d["mail"] = json!(format!("{nick}@{domain}"));
                d["proxyAddresses"] = json!([format!("SMTP:{nick}@{domain}")]);
                d["visibility"] = json!(if rng.chance(0.8) { "Private" } else { "Public" });
                d["resourceProvisioningOptions"] = json!(if rng.chance(0.5) {
                    json!(["Team"])
                } else {
                    json!([])
                });
            }
            1 => {
                d["mailEnabled"] = json!(false);
                d["securityEnabled"] = json!(true);
                if rng.chance(0.05) {
                    d["isAssignableToRole"] = json!(true);
                }
            }
            2 => {
                d["groupTypes"] = json!(["DynamicMembership"]);
                d["mailEnabled"] = json!(false);
                d["securityEnabled"] = json!(true);
                d["membershipRule"] = json!(format!("(user.department -eq \"{dept}\")"));
                d["membershipRuleProcessingState"] = json!("On");
            }
            _ => {
                d["mailEnabled"] = json!(true);
                d["securityEnabled"] = json!(true);
                d["mail"] = json!(format!("{nick}@{domain}"));
                d["proxyAddresses"] = json!([format!("SMTP:{nick}@{domain}")]);
            }
        }
        let gid = t.insert(Kind::Group, d.as_object().unwrap().clone());
        // Membership skew: rank r gets ~ big / (r+1)^0.8 members.
        let size = if t.cfg.profile == Profile::Small {
            if g == 0 {
                member_users.len()
            } else {
                2 + rng.below(10)
            }
        } else {
            ((big / ((g + 1) as f64).powf(0.8)) as usize).max(1 + rng.below(6))
        };
        let members: Vec<Id> = if kind == 2 {
            by_dept
                .get(dept)
                .map(|v| v.iter().take(size.max(5)).cloned().collect())
                .unwrap_or_default()
        } else {
            sample(&mut rng, member_users.len(), size)
                .into_iter()
                .map(|ix| member_users[ix].clone())
                .collect()
        };
        link_many(t, &gid, members);
        if kind == 0 || rng.chance(0.3) {
            for _ in 0..1 + rng.below(2) {
                let o = member_users[rng.below(member_users.len().max(1))].clone();
                link_gen(t, Kind::Group, &gid, OWNERS, &o);
            }
        }
        if kind == 0 {
            unified.push(gid.clone());
        }
        if t.get(Kind::Group, &gid)
            .and_then(|o| o.data.get("isAssignableToRole"))
            .is_some()
        {
            role_assignable.push(gid.clone());
        }
        groups.push(gid);
    }
    // Some nested groups.
    for i in 1..groups.len() {
        if rng.chance(0.03) {
            let parent = groups[rng.below(groups.len())].clone();
            let child = groups[i].clone();
            let dynamic = t
                .get(Kind::Group, &parent)
                .is_some_and(|o| o.data.get("membershipRule").is_some());
            if parent != child && !dynamic {
                link_gen(t, Kind::Group, &parent, MEMBERS, &child);
            }
        }
    }

    // Applications and their service principals.
    let mut sps: Vec<Id> = vec![];
    for a in 0..sz.apps {
        let name = format!(
            "Contoso {} {}",
            APP_WORDS[a % APP_WORDS.len()],
            ["App", "Service", "Connector", "API", "Portal"][rng.below(5)]
        ) + &if a >= APP_WORDS.len() {
            format!(" {}", a / APP_WORDS.len())
        } else {
            String::new()
        };
        let app_id = id(&mut rng);
        let obj_id = id(&mut rng);
        let created = base - (rng.below(900) as i64) * 86400;
        let mut d = json!({
            "id": obj_id, "appId": app_id, "displayName": name, "createdDateTime": util::iso(created),
            "publisherDomain": domain, "signInAudience": if rng.chance(0.8) { "AzureADMyOrg" } else { "AzureADMultipleOrgs" },
            "identifierUris": if rng.chance(0.4) { json!([format!("api://{app_id}")]) } else { json!([]) },
            "web": {"redirectUris": [format!("https://{}.{custom_domain}/signin-oidc", name.to_lowercase().replace(' ', "-"))],
                "homePageUrl": format!("https://{}.{custom_domain}", name.to_lowercase().replace(' ', "-")), "logoutUrl": null,
                "implicitGrantSettings": {"enableIdTokenIssuance": rng.chance(0.3), "enableAccessTokenIssuance": false}},
            "requiredResourceAccess": [{"resourceAppId": GRAPH_APP_ID, "resourceAccess": [
                {"id": "e1fe6dd8-ba31-4d61-89e7-88639da4683d", "type": "Scope"}]}],
            "tags": [],
        });
        if rng.chance(0.5) {
            let key_id = id(&mut rng);
            let s = util::b64url(&rng.bytes(30));
            d["passwordCredentials"] = json!([{"customKeyIdentifier": null, "displayName": "prod secret",
                "endDateTime": util::iso(created + 730 * 86400), "hint": &s[..3], "keyId": key_id, "secretText": null,
                "startDateTime": util::iso(created)}]);
        }
        if rng.chance(0.25) {
            let fake_cert = util::b64(&rng.bytes(64));
            d["keyCredentials"] = json!([{"customKeyIdentifier": util::b64url(&rng.bytes(20)).to_uppercase(), "displayName": format!("CN={}", name),
                "endDateTime": util::iso(created + 365 * 86400), "key": fake_cert, "keyId": id(&mut rng),
                "startDateTime": util::iso(created), "type": "AsymmetricX509Cert", "usage": "Verify"}]);
        }
        if rng.chance(0.15) {
            d["appRoles"] = json!([{"allowedMemberTypes": ["User"], "description": "Readers", "displayName": "Reader",
                "id": id(&mut rng), "isEnabled": true, "origin": "Application", "value": "Data.Read"}]);
        }
        let aid = t.insert(Kind::Application, d.as_object().unwrap().clone());
        if rng.chance(0.1) {
            let fic = json!({"id": id(&mut rng), "name": format!("github-{}", a), "issuer": "https://token.actions.githubusercontent.com",
                "subject": format!("repo:contoso/app{a}:ref:refs/heads/main"), "description": null, "audiences": ["api://AzureADTokenExchange"]});
            t.get_mut(Kind::Application, &aid)
                .unwrap()
                .children
                .entry("federatedIdentityCredentials".into())
                .or_default()
                .push(fic.as_object().unwrap().clone());
        }
        if !member_users.is_empty() {
            let owner = member_users[rng.below(member_users.len())].clone();
            link_gen(t, Kind::Application, &aid, OWNERS, &owner);
        }
        if sps.len() + FIRST_PARTY.len() < sz.sps {
            let sp = json!({"id": id(&mut rng), "appId": app_id, "displayName": name, "appDisplayName": name,
                "appOwnerOrganizationId": t.tenant_id, "servicePrincipalNames": [app_id],
                "createdDateTime": util::iso(created), "signInAudience": d["signInAudience"],
                "tags": ["WindowsAzureActiveDirectoryIntegratedApp"], "appRoleAssignmentRequired": rng.chance(0.2),
                "appRoles": d.get("appRoles").cloned().unwrap_or(json!([]))});
            let sid = t.insert(Kind::ServicePrincipal, sp.as_object().unwrap().clone());
            sps.push(sid);
        }
    }
    // Multi-tenant third-party apps consented in this tenant.
    while sps.len() + FIRST_PARTY.len() + 1 < sz.sps {
        let name = format!(
            "{} {} (partner)",
            [
                "Zava",
                "Fabrikam",
                "Litware",
                "Adatum",
                "Northwind",
                "Tailspin"
            ][rng.below(6)],
            APP_WORDS[rng.below(APP_WORDS.len())]
        );
        let app_id = id(&mut rng);
        let sp = json!({"id": id(&mut rng), "appId": app_id, "displayName": name, "appDisplayName": name,
            "appOwnerOrganizationId": id(&mut rng), "servicePrincipalNames": [app_id], "signInAudience": "AzureADMultipleOrgs",
            "createdDateTime": util::iso(base - (rng.below(900) as i64) * 86400), "tags": []});
        sps.push(t.insert(Kind::ServicePrincipal, sp.as_object().unwrap().clone()));
    }
    // Managed identities (service principals without an app registration).
    for m in 0..(sz.sps / 50).max(if sz.sps > 0 { 1 } else { 0 }) {
        let name = format!("contoso-func-{m}");
        let app_id = id(&mut rng);
        let sub_id = id(&mut rng);
        let sp = json!({"id": id(&mut rng), "appId": app_id, "displayName": name, "servicePrincipalType": "ManagedIdentity",
            "alternativeNames": ["isExplicit=False", format!("/subscriptions/{sub_id}/resourcegroups/rg-prod/providers/Microsoft.Web/sites/{name}")],
            "servicePrincipalNames": [app_id, format!("https://identity.azure.net/{}", util::b64url(&rng.bytes(24)))],
            "createdDateTime": util::iso(base - (rng.below(300) as i64) * 86400), "tags": [], "signInAudience": null});
        sps.push(t.insert(Kind::ServicePrincipal, sp.as_object().unwrap().clone()));
    }
    // App permissions and delegated grants on Graph.
    let graph_sp = t.graph_sp.clone();
    for sp in sps.clone() {
        let name = t
            .get(Kind::ServicePrincipal, &sp)
            .and_then(|o| o.str("displayName"))
            .unwrap_or("")
            .to_string();
        if rng.chance(0.4) {
            for _ in 0..1 + rng.below(3) {
                let (perm, _) = auth::GRAPH_APP_ROLES[rng.below(auth::GRAPH_APP_ROLES.len())];
                grant_app_role(t, &mut rng, &sp, &name, perm);
            }
        }
        if rng.chance(0.3) {
            let g = json!({"id": util::b64url(&rng.bytes(32)), "clientId": &*sp, "consentType": "AllPrincipals",
                "principalId": null, "resourceId": &*graph_sp, "scope": " User.Read openid profile offline_access"});
            t.insert(Kind::OAuth2Grant, g.as_object().unwrap().clone());
        } else if rng.chance(0.2) && !member_users.is_empty() {
            let u = member_users[rng.below(member_users.len())].clone();
            let g = json!({"id": util::b64url(&rng.bytes(32)), "clientId": &*sp, "consentType": "Principal",
                "principalId": &*u, "resourceId": &*graph_sp, "scope": "User.Read Mail.Read"});
            t.insert(Kind::OAuth2Grant, g.as_object().unwrap().clone());
        }
        // Users assigned to the app (appRoleAssignedTo) for apps that require assignment.
        if t.get(Kind::ServicePrincipal, &sp)
            .and_then(|o| o.data.get("appRoleAssignmentRequired"))
            .and_then(Value::as_bool)
            == Some(true)
        {
            for _ in 0..1 + rng.below(3) {
                let Some(u) = member_users
                    .get(rng.below(member_users.len().max(1)))
                    .cloned()
                else {
                    break;
                };
                let udn = t
                    .get(Kind::User, &u)
                    .and_then(|o| o.str("displayName"))
                    .unwrap_or("")
                    .to_string();
                let a = json!({"id": util::b64url(&rng.bytes(32)), "appRoleId": "00000000-0000-0000-0000-000000000000",
                    "createdDateTime": util::iso(base), "principalDisplayName": udn, "principalId": &*u, "principalType": "User",
                    "resourceDisplayName": name, "resourceId": &*sp});
                t.insert(Kind::AppRoleAssignment, a.as_object().unwrap().clone());
            }
        }
    }

    // Role definitions (built-in + custom), directory roles and role assignments.
    for (tid, name, desc) in ROLE_TEMPLATES {
        let d = json!({"id": tid, "templateId": tid, "displayName": name, "description": desc, "isBuiltIn": true,
            "isEnabled": true, "version": "1", "rolePermissions": [{"allowedResourceActions": [format!("microsoft.directory/{}/allProperties/read", lower_first(&name.replace(' ', "")))], "condition": null}]});
        t.insert(Kind::RoleDefinition, d.as_object().unwrap().clone());
    }
    let mut role_defs: Vec<String> = ROLE_TEMPLATES.iter().map(|r| r.0.to_string()).collect();
    for c in 0..sz.custom_roles {
        let rid = id(&mut rng);
        let d = json!({"id": rid, "templateId": rid, "displayName": format!("Contoso Custom Role {}", c + 1),
            "description": "Custom role for delegated administration", "isBuiltIn": false, "isEnabled": true, "version": null,
            "rolePermissions": [{"allowedResourceActions": ["microsoft.directory/applications/basic/update", "microsoft.directory/applications/standard/read"], "condition": null}]});
        t.insert(Kind::RoleDefinition, d.as_object().unwrap().clone());
        role_defs.push(rid);
    }
    let mut aus: Vec<Id> = vec![];
    for a in 0..sz.aus {
        let (city, _, _) = CITIES[a % CITIES.len()];
        let d = json!({"id": id(&mut rng), "displayName": format!("{city} {}", if a >= CITIES.len() { format!("Region {}", a / CITIES.len()) } else { "Office".into() }),
            "description": format!("Users and groups of the {city} office"), "visibility": if rng.chance(0.2) { "HiddenMembership" } else { "Public" },
            "membershipType": "Assigned"});
        let auid = t.insert(Kind::AdministrativeUnit, d.as_object().unwrap().clone());
        let k = 5 + rng.below(60);
        for ix in sample(&mut rng, member_users.len(), k) {
            let m = member_users[ix].clone();
            link_gen(t, Kind::AdministrativeUnit, &auid, MEMBERS, &m);
        }
        aus.push(auid);
    }
    let mut activated: HashMap<String, Id> = HashMap::new();
    let principals_for_roles: Vec<Id> = member_users
        .iter()
        .take(member_users.len().min(2000))
        .cloned()
        .collect();
    let mut seen = std::collections::HashSet::new();
    for r in 0..sz.role_assignments {
        let role = if r < 3 {
            ROLE_TEMPLATES[0].0.to_string()
        } else {
            role_defs[rng.below(role_defs.len())].clone()
        };
        let principal = if r == 0 {
            users[0].clone()
        } else if !role_assignable.is_empty() && rng.chance(0.05) {
            role_assignable[rng.below(role_assignable.len())].clone()
        } else if !sps.is_empty() && rng.chance(0.05) {
            sps[rng.below(sps.len())].clone()
        } else {
            principals_for_roles[rng.below(principals_for_roles.len())].clone()
        };
        let scope = if !aus.is_empty() && rng.chance(0.1) && r > 2 {
            format!("/administrativeUnits/{}", aus[rng.below(aus.len())])
        } else {
            "/".to_string()
        };
        if !seen.insert((role.clone(), principal.clone(), scope.clone())) {
            continue;
        }
        let d = json!({"id": role_assignment_id(&role, &principal, 1 + (scope != "/") as u32), "principalId": &*principal,
            "roleDefinitionId": role, "directoryScopeId": scope, "resourceScope": scope});
        t.insert(Kind::RoleAssignment, d.as_object().unwrap().clone());
        if scope == "/" {
            if let Some((tid, name, desc)) = ROLE_TEMPLATES.iter().find(|x| x.0 == role) {
                let rid = match activated.get(*tid) {
                    Some(r) => r.clone(),
                    None => {
                        let d = json!({"id": id(&mut rng), "roleTemplateId": tid, "displayName": name, "description": desc});
                        let rid = t.insert(Kind::DirectoryRole, d.as_object().unwrap().clone());
                        activated.insert(tid.to_string(), rid.clone());
                        rid
                    }
                };
                link_gen(t, Kind::DirectoryRole, &rid, MEMBERS, &principal);
            }
        } else if let Some(au) = scope.strip_prefix("/administrativeUnits/") {
            let srm = json!({"id": util::b64url(&rng.bytes(24)), "administrativeUnitId": au, "roleId": activated.get(&role).map(|r| r.to_string()).unwrap_or(role.clone()),
                "roleMemberInfo": {"id": &*principal, "displayName": t.find_live(&principal).and_then(|o| o.str("displayName")).unwrap_or("")}});
            if let Some(o) = t.get_mut(Kind::AdministrativeUnit, au) {
                o.children
                    .entry("scopedRoleMembers".into())
                    .or_default()
                    .push(srm.as_object().unwrap().clone());
            }
        }
    }

    // Named locations, authentication strengths and Conditional Access.
    let mut locations: Vec<String> = vec![];
    let countries = [
        "US", "CA", "GB", "DE", "FR", "JP", "AU", "IN", "BR", "NL", "KP", "IR", "RU", "CN",
    ];
    for l in 0..sz.named_locations {
        let lid = id(&mut rng);
        let created = util::iso(base - (rng.below(700) as i64) * 86400);
        let d = if l % 2 == 0 {
            json!({"@odata.type": "#microsoft.graph.ipNamedLocation", "id": lid, "displayName": if l == 0 { "Corporate HQ".to_string() } else { format!("Office network {l}") },
                "createdDateTime": created, "modifiedDateTime": created, "isTrusted": l % 4 == 0,
                "ipRanges": [{"@odata.type": "#microsoft.graph.iPv4CidrRange", "cidrAddress": format!("203.0.{}.0/24", 113 + l % 100)},
                             {"@odata.type": "#microsoft.graph.iPv6CidrRange", "cidrAddress": format!("2001:db8:{:x}::/48", l)}]})
        } else {
            json!({"@odata.type": "#microsoft.graph.countryNamedLocation", "id": lid,
                "displayName": if l == 1 { "Blocked countries".to_string() } else { format!("Allowed countries {l}") },
                "createdDateTime": created, "modifiedDateTime": created,
                "countriesAndRegions": if l == 1 { json!(["KP", "IR"]) } else { json!([countries[l % 10], countries[(l + 3) % 10]]) },
                "includeUnknownCountriesAndRegions": l == 1, "countryLookupMethod": "clientIpAddress"})
        };
        locations.push(
            t.insert(Kind::NamedLocation, d.as_object().unwrap().clone())
                .to_string(),
        );
    }
    let strengths = [
        ("00000000-0000-0000-0000-000000000002", "Multifactor authentication", "Combinations of methods that satisfy strong authentication, such as a password + SMS", json!(["windowsHelloForBusiness", "fido2", "x509CertificateMultiFactor", "deviceBasedPush", "temporaryAccessPassOneTime", "temporaryAccessPassMultiUse", "password,microsoftAuthenticatorPush", "password,softwareOath", "password,hardwareOath", "password,sms", "password,voice"])),
        ("00000000-0000-0000-0000-000000000003", "Passwordless MFA", "Passwordless methods that satisfy strong authentication, such as Passwordless sign-in with the Microsoft Authenticator", json!(["windowsHelloForBusiness", "fido2", "x509CertificateMultiFactor", "deviceBasedPush"])),
        ("00000000-0000-0000-0000-000000000004", "Phishing-resistant MFA", "Phishing-resistant, Passwordless methods for the strongest authentication, such as a FIDO2 security key", json!(["windowsHelloForBusiness", "fido2", "x509CertificateMultiFactor"])),
    ];
    // The built-in strengths are in every tenant, a new one too (same ids everywhere).
    for (sid, name, desc, combos) in strengths.iter() {
        let d = json!({"id": sid, "displayName": name, "description": desc, "policyType": "builtIn", "requirementsSatisfied": "mfa",
            "allowedCombinations": combos, "createdDateTime": "2021-12-01T00:00:00Z", "modifiedDateTime": "2021-12-01T00:00:00Z"});
        t.insert(Kind::AuthStrength, d.as_object().unwrap().clone());
    }
    if t.cfg.profile != Profile::Empty {
        let d = json!({"id": id(&mut rng), "displayName": "Contoso FIDO2 only", "description": "Security keys for admins", "policyType": "custom",
            "requirementsSatisfied": "mfa", "allowedCombinations": ["fido2"], "createdDateTime": util::iso(base), "modifiedDateTime": util::iso(base)});
        t.insert(Kind::AuthStrength, d.as_object().unwrap().clone());
    }
    let breakglass = users.first().cloned();
    for p in 0..sz.ca {
        let cid = id(&mut rng);
        let created = util::iso(base - (rng.below(400) as i64) * 86400);
        let pick_users = |rng: &mut Rng, n: usize| -> Vec<String> {
            (0..n)
                .filter_map(|_| {
                    member_users
                        .get(rng.below(member_users.len().max(1)))
                        .map(|s| s.to_string())
                })
                .collect()
        };
        let pick_groups = |rng: &mut Rng, n: usize| -> Vec<String> {
            (0..n)
                .filter_map(|_| {
                    groups
                        .get(rng.below(groups.len().max(1)))
                        .map(|s| s.to_string())
                })
                .collect()
        };
        let excl_users: Vec<String> = breakglass.iter().map(|s| s.to_string()).collect();
        let template = p % 12;
        let (name, state, conditions, grant, session) = match template {
            0 => (
                "Require MFA for administrators",
                "enabled",
                json!({"clientAppTypes": ["all"], "applications": {"includeApplications": ["All"]},
                    "users": {"includeRoles": ["62e90394-69f5-4237-9190-012177145e10", "194ae4cb-b126-40b2-bd5b-6091b380977d", "e8611ab8-c189-46e8-94e1-60213ab1f814", "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3"], "excludeUsers": excl_users}}),
                json!({"operator": "OR", "builtInControls": ["mfa"]}),
                Value::Null,
            ),
            1 => (
                "Block legacy authentication",
                "enabled",
                json!({"clientAppTypes": ["exchangeActiveSync", "other"], "applications": {"includeApplications": ["All"]},
                    "users": {"includeUsers": ["All"], "excludeUsers": excl_users}}),
                json!({"operator": "OR", "builtInControls": ["block"]}),
                Value::Null,
            ),
            2 => (
                "Require MFA for all users",
                "enabledForReportingButNotEnforced",
                json!({"clientAppTypes": ["browser", "mobileAppsAndDesktopClients"], "applications": {"includeApplications": ["All"]},
                    "users": {"includeUsers": ["All"], "excludeUsers": excl_users, "excludeGroups": pick_groups(&mut rng, 1)}}),
                json!({"operator": "OR", "builtInControls": ["mfa"]}),
                Value::Null,
            ),
            3 => (
                "Block access from untrusted countries",
                "enabled",
                json!({"clientAppTypes": ["all"], "applications": {"includeApplications": ["All"]},
                    "users": {"includeUsers": ["All"], "excludeUsers": excl_users},
                    "locations": {"includeLocations": locations.get(1).map(|l| vec![l.clone()]).unwrap_or_default(), "excludeLocations": []}}),
                json!({"operator": "OR", "builtInControls": ["block"]}),
                Value::Null,
            ),
            4 => (
                "Require compliant device for Office 365",
                "enabled",
                json!({"clientAppTypes": ["all"], "applications": {"includeApplications": ["Office365"]},
                    "users": {"includeGroups": pick_groups(&mut rng, 2), "excludeUsers": excl_users},
                    "platforms": {"includePlatforms": ["all"], "excludePlatforms": ["iOS"]}}),
                json!({"operator": "OR", "builtInControls": ["compliantDevice", "domainJoinedDevice"]}),
                Value::Null,
            ),
            5 => (
                "MFA for medium and high sign-in risk",
                "enabled",
                json!({"clientAppTypes": ["all"], "signInRiskLevels": ["high", "medium"], "applications": {"includeApplications": ["All"]},
                    "users": {"includeUsers": ["All"], "excludeUsers": excl_users}}),
                json!({"operator": "OR", "builtInControls": ["mfa"]}),
                Value::Null,
            ),
            6 => (
                "Password change for high user risk",
                "enabled",
                json!({"clientAppTypes": ["all"], "userRiskLevels": ["high"], "applications": {"includeApplications": ["All"]},
                    "users": {"includeUsers": ["All"], "excludeUsers": excl_users}}),
                json!({"operator": "AND", "builtInControls": ["mfa", "passwordChange"]}),
                Value::Null,
            ),
            7 => (
                "Sign-in frequency outside trusted locations",
                "enabled",
                json!({"clientAppTypes": ["browser"], "applications": {"includeApplications": ["All"]},
                    "users": {"includeUsers": pick_users(&mut rng, 3)},
                    "locations": {"includeLocations": ["All"], "excludeLocations": ["AllTrusted"]}}),
                Value::Null,
                json!({"applicationEnforcedRestrictions": null, "cloudAppSecurity": null, "persistentBrowser": {"mode": "never", "isEnabled": true},
                    "signInFrequency": {"value": 4, "type": "hours", "isEnabled": true, "authenticationType": "primaryAndSecondaryAuthentication", "frequencyInterval": "timeBased"}}),
            ),
            8 => (
                "Guests require MFA",
                "enabled",
                json!({"clientAppTypes": ["all"], "applications": {"includeApplications": ["All"]},
                    "users": {"includeUsers": ["GuestsOrExternalUsers"]}}),
                json!({"operator": "OR", "builtInControls": ["mfa"]}),
                Value::Null,
            ),
            9 => (
                "Phishing-resistant MFA for privileged roles",
                "enabledForReportingButNotEnforced",
                json!({"clientAppTypes": ["all"], "applications": {"includeApplications": ["All"]},
                    "users": {"includeRoles": ["62e90394-69f5-4237-9190-012177145e10", "e8611ab8-c189-46e8-94e1-60213ab1f814"], "excludeUsers": excl_users}}),
                json!({"operator": "OR", "builtInControls": [], "authenticationStrength": {"id": "00000000-0000-0000-0000-000000000004", "displayName": "Phishing-resistant MFA"}}),
                Value::Null,
            ),
            10 => (
                "Require MFA for Azure management",
                "enabled",
                json!({"clientAppTypes": ["all"], "applications": {"includeApplications": ["797f4846-ba00-4fd7-ba43-dac1f8f63013"]},
                    "users": {"includeUsers": ["All"], "excludeUsers": excl_users, "excludeRoles": ["b0f54661-2d74-4c50-afa3-1ec803f12efe"]}}),
                json!({"operator": "OR", "builtInControls": ["mfa"]}),
                Value::Null,
            ),
            _ => (
                "Block unknown platforms (pilot)",
                "disabled",
                json!({"clientAppTypes": ["all"], "applications": {"includeApplications": ["All"], "excludeApplications": sps.iter().take(2).map(|s| t.get(Kind::ServicePrincipal, s).and_then(|o| o.str("appId")).unwrap_or("").to_string()).collect::<Vec<_>>()},
                    "users": {"includeUsers": pick_users(&mut rng, 2), "includeGroups": pick_groups(&mut rng, 1)},
                    "platforms": {"includePlatforms": ["all"], "excludePlatforms": ["android", "iOS", "windows", "macOS", "linux"]}}),
                json!({"operator": "OR", "builtInControls": ["block"]}),
                Value::Null,
            ),
        };
        let name = if p >= 12 {
            format!("{name} ({})", p / 12 + 1)
        } else {
            name.to_string()
        };
        let d = json!({"id": cid, "displayName": name, "state": state, "createdDateTime": created, "modifiedDateTime": created,
            "conditions": conditions, "grantControls": grant, "sessionControls": session});
        let mut d = d.as_object().unwrap().clone();
        // Fill the nested shape as Graph returns it.
        let full = fill_defaults(
            &Value::Object(d.clone()),
            &Value::Object(schema(Kind::CaPolicy).props.clone()),
        );
        if let Value::Object(f) = full {
            d.insert("conditions".into(), f["conditions"].clone());
        }
        t.insert(Kind::CaPolicy, d);
    }

    // Microsoft 365: mailboxes and drives.
    crate::mail::generate(
        t,
        &mut Rng::derive(seed, "mail"),
        &member_users,
        sz.mailboxes,
    );
    crate::drive::generate(
        t,
        &mut Rng::derive(seed, "drives"),
        &member_users,
        &unified,
        &sz,
    );
    // Authentication contexts last (fixed ids, no random draws), so nothing generated before them
    // changes.
    if t.cfg.profile != Profile::Empty {
        generate_auth_contexts(t);
    }
    // PIM after everything else, with its own random stream, for the same reason.
    let mut pim_rng = Rng::derive(seed, "pim");
    grant_late_permissions(t, &mut pim_rng, &default_app, &default_sp, "Cairn Backup");
    if t.cfg.profile != Profile::Empty {
        generate_role_eligibilities(t, &mut pim_rng, &member_users, &aus);
    }
    DefaultApp {
        client_id,
        client_secret,
    }
}

/// The authentication contexts of a non-empty tenant: two published ones that Conditional Access
/// policies can require and one not yet published.
pub const AUTH_CONTEXTS: [(&str, &str, &str, bool); 3] = [
    (
        "c1",
        "Require trusted location",
        "Step-up: sign-ins from a trusted named location",
        true,
    ),
    (
        "c2",
        "Sensitive apps",
        "Step-up: phishing-resistant MFA for sensitive applications",
        true,
    ),
    (
        "c3",
        "Finance approvals",
        "Reserved for the finance approval workflow",
        false,
    ),
];

fn generate_auth_contexts(t: &mut Tenant) {
    for (id, name, desc, available) in AUTH_CONTEXTS {
        let d =
            json!({"id": id, "displayName": name, "description": desc, "isAvailable": available});
        t.insert(Kind::AuthContext, d.as_object().unwrap().clone());
    }
}

/// Gives the default app the permissions of `auth::LATE_GRAPH_APP_ROLES` (required resource
/// access and granted app roles) after the rest of the tenant is generated.
fn grant_late_permissions(t: &mut Tenant, rng: &mut Rng, app: &str, sp: &str, name: &str) {
    if let Some(a) = t.get_mut(Kind::Application, app) {
        if let Some(access) = a
            .data
            .get_mut("requiredResourceAccess")
            .and_then(|r| r.get_mut(0))
            .and_then(|r| r.get_mut("resourceAccess"))
            .and_then(Value::as_array_mut)
        {
            for (p, _) in auth::LATE_GRAPH_APP_ROLES {
                access.push(json!({"id": auth::app_role_id(p), "type": "Role"}));
            }
        }
    }
    for (p, _) in auth::LATE_GRAPH_APP_ROLES {
        grant_app_role(t, rng, sp, name, p);
    }
}

/// PIM role eligibility schedules: a few member users eligible for Global Administrator, User
/// Administrator or Security Administrator; one User Administrator eligibility scoped to an
/// administrative unit, one with an end date (years after the base time, so it is still in force).
fn generate_role_eligibilities(t: &mut Tenant, rng: &mut Rng, members: &[Id], aus: &[Id]) {
    let n = match t.cfg.profile {
        Profile::Empty => 0,
        Profile::Small => 4,
        Profile::Medium => 6,
        Profile::Large => 10,
    };
    // Not the first member (the tenant's administrator, who holds Global Administrator already).
    let candidates = members.get(1..).unwrap_or_default();
    let (global, user_admin, security) = (
        ROLE_TEMPLATES[0].0,
        ROLE_TEMPLATES[1].0,
        ROLE_TEMPLATES[3].0,
    );
    let base = t.base_time;
    for (i, ix) in sample(rng, candidates.len(), n).into_iter().enumerate() {
        let principal = &candidates[ix];
        let (role, scope) = match i {
            0 | 2 => (global, "/".to_string()),
            1 if !aus.is_empty() => (
                user_admin,
                format!("/administrativeUnits/{}", aus[rng.below(aus.len())]),
            ),
            _ if i % 3 == 0 => (security, "/".to_string()),
            _ => (user_admin, "/".to_string()),
        };
        let created = base - (30 + rng.below(300) as i64) * 86_400;
        let expiration = if i == 2 {
            json!({"type": "afterDateTime", "endDateTime": util::iso(base + 5 * 365 * 86_400), "duration": null})
        } else {
            json!({"type": "noExpiration", "endDateTime": null, "duration": null})
        };
        let sid = id(rng);
        let d = json!({
            "id": sid, "principalId": &**principal, "roleDefinitionId": role, "directoryScopeId": scope,
            "appScopeId": null, "createdUsing": sid, "createdDateTime": util::iso(created),
            "modifiedDateTime": util::iso(created), "status": "Provisioned", "memberType": "Direct",
            "scheduleInfo": {"startDateTime": util::iso(created), "recurrence": null, "expiration": expiration}
        });
        t.insert(Kind::RoleEligibility, d.as_object().unwrap().clone());
    }
}

fn user_rng(seed: u64, index: u32) -> Rng {
    Rng::new(seed ^ (index as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F) ^ 0x1A2B_3C4D)
}

/// Department of generated user `index`.
pub fn user_department(seed: u64, index: u32) -> &'static str {
    lazy_user(seed, index).dept
}

/// The generated, derivable facts about member user `index` (no allocation).
struct LazyUser {
    enabled: bool,
    created: i64,
    title: &'static str,
    dept: &'static str,
    office: (usize, usize),
    phone: usize,
    mobile: Option<usize>,
    city: (&'static str, &'static str, &'static str),
}

fn lazy_user(seed: u64, index: u32) -> LazyUser {
    let mut r = user_rng(seed, index);
    let (dept, titles) = DEPARTMENTS[r.below(DEPARTMENTS.len())];
    let city = *r.pick(CITIES);
    let created = 1_735_689_600 - (r.below(1500) as i64) * 86400 - r.below(86400) as i64;
    let enabled = !r.chance(0.05);
    let title = *r.pick(titles);
    let office = (10 + r.below(30), 1000 + r.below(2000));
    let phone = r.below(10000);
    let mobile = r.chance(0.6).then(|| r.below(10000));
    LazyUser {
        enabled,
        created,
        title,
        dept,
        office,
        phone,
        mobile,
        city,
    }
}

/// Names of the lazily generated user properties.
pub const LAZY_USER_PROPS: [&str; 14] = [
    "accountEnabled",
    "createdDateTime",
    "jobTitle",
    "department",
    "officeLocation",
    "businessPhones",
    "mobilePhone",
    "preferredLanguage",
    "usageLocation",
    "city",
    "country",
    "companyName",
    "employeeId",
    "proxyAddresses",
];

/// One lazily generated property of member user `index` (deterministic for the seed).
pub fn lazy_user_value(seed: u64, index: u32, upn: &str, name: &str) -> Option<Value> {
    let u = lazy_user(seed, index);
    Some(match name {
        "accountEnabled" => json!(u.enabled),
        "createdDateTime" => json!(util::iso(u.created)),
        "jobTitle" => json!(u.title),
        "department" => json!(u.dept),
        "officeLocation" => json!(format!("{}/{}", u.office.0, u.office.1)),
        "businessPhones" => json!([format!("+1 425 555 {:04}", u.phone)]),
        "mobilePhone" => json!(format!("+1 425 555 {:04}", u.mobile?)),
        "preferredLanguage" => json!("en-US"),
        "usageLocation" => json!(u.city.2),
        "city" => json!(u.city.0),
        "country" => json!(u.city.1),
        "companyName" => json!("Contoso"),
        "employeeId" => json!(format!("{:06}", 100_000 + index)),
        "proxyAddresses" => json!([format!("SMTP:{upn}")]),
        _ => return None,
    })
}

/// All lazily generated properties of member user `index`.
pub fn lazy_user_props(seed: u64, index: u32, upn: &str) -> Obj {
    LAZY_USER_PROPS
        .iter()
        .filter_map(|p| lazy_user_value(seed, index, upn, p).map(|v| (p.to_string(), v)))
        .collect()
}

pub fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}
