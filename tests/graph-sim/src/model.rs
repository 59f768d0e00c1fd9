//! Directory object kinds, their property schemas (defaults and property sets) and stored objects.

use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

pub type Id = Arc<str>;
pub type Obj = Map<String, Value>;

/// Every kind of object the simulator stores in its directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    User,
    Group,
    Application,
    ServicePrincipal,
    AdministrativeUnit,
    DirectoryRole,
    RoleDefinition,
    RoleAssignment,
    OAuth2Grant,
    AppRoleAssignment,
    CaPolicy,
    NamedLocation,
    AuthStrength,
    Domain,
    AuthContext,
    RoleEligibility,
}

pub const ALL_KINDS: [Kind; 16] = [
    Kind::User,
    Kind::Group,
    Kind::Application,
    Kind::ServicePrincipal,
    Kind::AdministrativeUnit,
    Kind::DirectoryRole,
    Kind::RoleDefinition,
    Kind::RoleAssignment,
    Kind::OAuth2Grant,
    Kind::AppRoleAssignment,
    Kind::CaPolicy,
    Kind::NamedLocation,
    Kind::AuthStrength,
    Kind::Domain,
    Kind::AuthContext,
    Kind::RoleEligibility,
];

impl Kind {
    pub fn index(self) -> usize {
        ALL_KINDS.iter().position(|k| *k == self).unwrap_or(0)
    }
    /// The short name used in dumps and the control API.
    pub fn name(self) -> &'static str {
        match self {
            Kind::User => "users",
            Kind::Group => "groups",
            Kind::Application => "applications",
            Kind::ServicePrincipal => "servicePrincipals",
            Kind::AdministrativeUnit => "administrativeUnits",
            Kind::DirectoryRole => "directoryRoles",
            Kind::RoleDefinition => "roleDefinitions",
            Kind::RoleAssignment => "roleAssignments",
            Kind::OAuth2Grant => "oauth2PermissionGrants",
            Kind::AppRoleAssignment => "appRoleAssignments",
            Kind::CaPolicy => "conditionalAccessPolicies",
            Kind::NamedLocation => "namedLocations",
            Kind::AuthStrength => "authenticationStrengthPolicies",
            Kind::Domain => "domains",
            Kind::AuthContext => "authenticationContextClassReferences",
            Kind::RoleEligibility => "roleEligibilitySchedules",
        }
    }
    pub fn from_name(s: &str) -> Option<Kind> {
        ALL_KINDS.iter().copied().find(|k| {
            k.name().eq_ignore_ascii_case(s) || k.odata_type_name().eq_ignore_ascii_case(s)
        })
    }
    /// The `@odata.context` entity set.
    pub fn context(self) -> &'static str {
        match self {
            Kind::RoleDefinition => "roleManagement/directory/roleDefinitions",
            Kind::RoleAssignment => "roleManagement/directory/roleAssignments",
            Kind::CaPolicy => "identity/conditionalAccess/policies",
            Kind::NamedLocation => "identity/conditionalAccess/namedLocations",
            Kind::AuthStrength => "policies/authenticationStrengthPolicies",
            Kind::AuthContext => "identity/conditionalAccess/authenticationContextClassReferences",
            Kind::RoleEligibility => "roleManagement/directory/roleEligibilitySchedules",
            Kind::AdministrativeUnit => "directory/administrativeUnits",
            k => k.name(),
        }
    }
    /// `user`, `group`, ... as in `#microsoft.graph.user`.
    pub fn odata_type_name(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Group => "group",
            Kind::Application => "application",
            Kind::ServicePrincipal => "servicePrincipal",
            Kind::AdministrativeUnit => "administrativeUnit",
            Kind::DirectoryRole => "directoryRole",
            Kind::RoleDefinition => "unifiedRoleDefinition",
            Kind::RoleAssignment => "unifiedRoleAssignment",
            Kind::OAuth2Grant => "oAuth2PermissionGrant",
            Kind::AppRoleAssignment => "appRoleAssignment",
            Kind::CaPolicy => "conditionalAccessPolicy",
            Kind::NamedLocation => "namedLocation",
            Kind::AuthStrength => "authenticationStrengthPolicy",
            Kind::Domain => "domain",
            Kind::AuthContext => "authenticationContextClassReference",
            Kind::RoleEligibility => "unifiedRoleEligibilitySchedule",
        }
    }
    pub fn supports_delta(self) -> bool {
        matches!(
            self,
            Kind::User
                | Kind::Group
                | Kind::Application
                | Kind::ServicePrincipal
                | Kind::AdministrativeUnit
                | Kind::OAuth2Grant
                | Kind::DirectoryRole
        )
    }
    /// Whether deleting puts it in `directory/deletedItems` (groups: see `security_groups_hard_delete`).
    pub fn soft_deletable(self) -> bool {
        matches!(
            self,
            Kind::User
                | Kind::Group
                | Kind::Application
                | Kind::ServicePrincipal
                | Kind::AdministrativeUnit
                | Kind::CaPolicy
                | Kind::NamedLocation
        )
    }
    /// Directory objects that can be members of groups and AUs.
    pub fn is_principal(self) -> bool {
        matches!(self, Kind::User | Kind::Group | Kind::ServicePrincipal)
    }
}

/// Lifecycle of a stored object.
#[derive(Clone, Debug, PartialEq)]
pub enum Life {
    Live,
    /// Soft-deleted at this simulated time (seconds): in the recycle bin.
    Deleted(i64),
    /// Permanently deleted; kept as a tombstone so delta can report `"reason": "deleted"`.
    Gone,
}

/// A stored directory object: sparse JSON properties plus bookkeeping for delta, relations and secrets.
#[derive(Clone, Debug)]
pub struct Stored {
    pub id: Id,
    pub kind: Kind,
    pub data: Obj,
    pub life: Life,
    /// Sequence number of the last change (delta).
    pub seq: u64,
    /// Sequence number at creation (or restore).
    pub created_seq: u64,
    /// Per-property sequence of the last PATCH, for `Prefer: return=minimal` delta rounds.
    pub prop_seq: BTreeMap<String, u64>,
    /// Relationship sets: `members`, `owners`, ...
    pub links: BTreeMap<&'static str, BTreeSet<Id>>,
    /// `(seq, member, added)` membership log for `members@delta`.
    pub member_log: Vec<(u64, Id, bool)>,
    /// `(seq, manager, set)` log for `manager@delta` (users).
    pub manager_log: Vec<(u64, Id, bool)>,
    /// Contained collections: `federatedIdentityCredentials`, `extensionProperties`, `scopedRoleMembers`.
    pub children: BTreeMap<String, Vec<Obj>>,
    /// Client secrets of applications: (keyId, secretText). Never rendered.
    pub secrets: Vec<(String, String)>,
    /// Generated users keep their derivable properties unmaterialised: (seed, index) regenerates
    /// them on demand (see `gen::lazy_user_props`); the first write materialises them.
    pub lazy: Option<(u64, u32)>,
}

impl Stored {
    pub fn new(id: Id, kind: Kind, data: Obj, seq: u64) -> Self {
        Stored {
            id,
            kind,
            data,
            life: Life::Live,
            seq,
            created_seq: seq,
            prop_seq: BTreeMap::new(),
            links: BTreeMap::new(),
            member_log: Vec::new(),
            manager_log: Vec::new(),
            children: BTreeMap::new(),
            secrets: Vec::new(),
            lazy: None,
        }
    }
    /// A lazily generated property (None if not lazy or not such a property).
    pub fn lazy_prop(&self, name: &str) -> Option<Value> {
        let (seed, index) = self.lazy?;
        crate::gen::lazy_user_value(
            seed,
            index,
            self.str("userPrincipalName").unwrap_or(""),
            name,
        )
    }
    /// All stored properties, including the lazily generated ones.
    pub fn view(&self) -> std::borrow::Cow<'_, Obj> {
        match self.lazy {
            None => std::borrow::Cow::Borrowed(&self.data),
            Some((seed, index)) => {
                let upn = self.str("userPrincipalName").unwrap_or("");
                let mut m = crate::gen::lazy_user_props(seed, index, upn);
                for (k, v) in &self.data {
                    m.insert(k.clone(), v.clone());
                }
                std::borrow::Cow::Owned(m)
            }
        }
    }
    /// Stores the lazily generated properties for good (before a write).
    pub fn materialize(&mut self) {
        if self.lazy.is_some() {
            let full = self.view().into_owned();
            self.data = full;
            self.lazy = None;
        }
    }
    pub fn is_live(&self) -> bool {
        self.life == Life::Live
    }
    pub fn str(&self, key: &str) -> Option<&str> {
        self.data.get(key).and_then(Value::as_str)
    }
    pub fn link(&self, rel: &str) -> impl Iterator<Item = &Id> {
        self.links.get(rel).into_iter().flatten()
    }
}

/// Property set of a kind: every property in output order with its default value.
pub struct Schema {
    pub props: Obj,
    /// Returned without `$select`; `None` = all except `select_only`.
    pub default_set: Option<Vec<&'static str>>,
    /// Returned only when selected.
    pub select_only: Vec<&'static str>,
    /// Readable only on a single-object GET: selecting them on a list gives 501.
    pub single_only: Vec<&'static str>,
    /// The default property names in output order (precomputed).
    pub defaults: Vec<String>,
}

impl Schema {
    pub fn has(&self, p: &str) -> bool {
        self.props.contains_key(p)
    }
    pub fn in_default(&self, p: &str) -> bool {
        match &self.default_set {
            Some(set) => set.contains(&p),
            None => !self.select_only.contains(&p) && !self.single_only.contains(&p),
        }
    }
}

pub const USER_DEFAULTS: [&str; 11] = [
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];

pub fn schema(kind: Kind) -> &'static Schema {
    static SCHEMAS: OnceLock<Vec<Schema>> = OnceLock::new();
    &SCHEMAS.get_or_init(|| ALL_KINDS.iter().map(|k| build_schema(*k)).collect())[kind.index()]
}

fn obj(v: Value) -> Obj {
    match v {
        Value::Object(m) => m,
        _ => Obj::new(),
    }
}

fn build_schema(kind: Kind) -> Schema {
    let mut default_set = None;
    let mut select_only = vec![];
    let mut single_only = vec![];
    let props = match kind {
        Kind::User => {
            default_set = Some(USER_DEFAULTS.to_vec());
            single_only = vec![
                "aboutMe",
                "birthday",
                "hireDate",
                "interests",
                "mySite",
                "pastProjects",
                "preferredName",
                "responsibilities",
                "schools",
                "skills",
                "mailboxSettings",
            ];
            json!({
                "id": null, "businessPhones": [], "displayName": null, "givenName": null, "jobTitle": null,
                "mail": null, "mobilePhone": null, "officeLocation": null, "preferredLanguage": null,
                "surname": null, "userPrincipalName": null,
                "accountEnabled": null, "ageGroup": null, "assignedLicenses": [], "assignedPlans": [],
                "city": null, "companyName": null, "consentProvidedForMinor": null, "country": null,
                "createdDateTime": null, "creationType": null, "deletedDateTime": null, "department": null,
                "employeeHireDate": null, "employeeId": null, "employeeType": null, "employeeOrgData": null,
                "externalUserState": null, "faxNumber": null, "identities": [], "imAddresses": [],
                "isResourceAccount": null, "lastPasswordChangeDateTime": null,
                "legalAgeGroupClassification": null, "mailNickname": null,
                "onPremisesDistinguishedName": null, "onPremisesDomainName": null,
                "onPremisesExtensionAttributes": {
                    "extensionAttribute1": null, "extensionAttribute2": null, "extensionAttribute3": null,
                    "extensionAttribute4": null, "extensionAttribute5": null, "extensionAttribute6": null,
                    "extensionAttribute7": null, "extensionAttribute8": null, "extensionAttribute9": null,
                    "extensionAttribute10": null, "extensionAttribute11": null, "extensionAttribute12": null,
                    "extensionAttribute13": null, "extensionAttribute14": null, "extensionAttribute15": null
                },
                "onPremisesImmutableId": null, "onPremisesLastSyncDateTime": null,
                "onPremisesSamAccountName": null, "onPremisesSecurityIdentifier": null,
                "onPremisesSyncEnabled": null, "onPremisesUserPrincipalName": null, "otherMails": [],
                "passwordPolicies": null, "passwordProfile": null, "postalCode": null,
                "preferredDataLocation": null, "proxyAddresses": [], "securityIdentifier": null,
                "showInAddressList": null, "signInActivity": null, "signInSessionsValidFromDateTime": null,
                "state": null, "streetAddress": null, "usageLocation": null, "userType": null,
                "aboutMe": null, "birthday": "0001-01-01T08:00:00Z", "hireDate": "0001-01-01T08:00:00Z",
                "interests": [], "mySite": null, "pastProjects": [], "preferredName": null,
                "responsibilities": [], "schools": [], "skills": [],
                "mailboxSettings": {
                    "archiveFolder": null, "timeZone": "UTC", "delegateMeetingMessageDeliveryOptions": "sendToDelegateOnly",
                    "dateFormat": "yyyy-MM-dd", "timeFormat": "HH:mm", "userPurpose": "user",
                    "automaticRepliesSetting": {"status": "disabled", "externalAudience": "all",
                        "internalReplyMessage": "", "externalReplyMessage": ""},
                    "language": {"locale": "en-US", "displayName": "English (United States)"},
                    "workingHours": {"daysOfWeek": ["monday","tuesday","wednesday","thursday","friday"],
                        "startTime": "08:00:00.0000000", "endTime": "17:00:00.0000000",
                        "timeZone": {"name": "UTC"}}
                }
            })
        }
        Kind::Group => {
            select_only = vec![
                "allowExternalSenders",
                "autoSubscribeNewMembers",
                "hideFromAddressLists",
                "hideFromOutlookClients",
                "isSubscribedByMail",
                "unseenCount",
            ];
            json!({
                "id": null, "deletedDateTime": null, "classification": null, "createdDateTime": null,
                "creationOptions": [], "description": null, "displayName": null, "expirationDateTime": null,
                "groupTypes": [], "isAssignableToRole": null, "mail": null, "mailEnabled": null,
                "mailNickname": null, "membershipRule": null, "membershipRuleProcessingState": null,
                "onPremisesDomainName": null, "onPremisesLastSyncDateTime": null,
                "onPremisesNetBiosName": null, "onPremisesSamAccountName": null,
                "onPremisesSecurityIdentifier": null, "onPremisesSyncEnabled": null,
                "preferredDataLocation": null, "preferredLanguage": null, "proxyAddresses": [],
                "renewedDateTime": null, "resourceBehaviorOptions": [], "resourceProvisioningOptions": [],
                "securityEnabled": null, "securityIdentifier": null, "theme": null, "visibility": null,
                "onPremisesProvisioningErrors": [], "serviceProvisioningErrors": [],
                "allowExternalSenders": null, "autoSubscribeNewMembers": null, "hideFromAddressLists": null,
                "hideFromOutlookClients": null, "isSubscribedByMail": null, "unseenCount": null
            })
        }
        Kind::Application => json!({
            "id": null, "deletedDateTime": null, "isFallbackPublicClient": null, "appId": null,
            "applicationTemplateId": null, "identifierUris": [], "createdDateTime": null,
            "description": null, "disabledByMicrosoftStatus": null, "displayName": null,
            "isDeviceOnlyAuthSupported": null, "groupMembershipClaims": null, "notes": null,
            "optionalClaims": null, "addIns": [], "publisherDomain": null, "samlMetadataUrl": null,
            "serviceManagementReference": null, "signInAudience": "AzureADMyOrg", "uniqueName": null,
            "verifiedPublisher": {"displayName": null, "verifiedPublisherId": null, "addedDateTime": null},
            "certification": null, "defaultRedirectUri": null, "tags": [], "tokenEncryptionKeyId": null,
            "api": {"requestedAccessTokenVersion": null, "acceptMappedClaims": null,
                "knownClientApplications": [], "oauth2PermissionScopes": [], "preAuthorizedApplications": []},
            "appRoles": [], "publicClient": {"redirectUris": []},
            "info": {"termsOfServiceUrl": null, "supportUrl": null, "privacyStatementUrl": null,
                "marketingUrl": null, "logoUrl": null},
            "keyCredentials": [],
            "parentalControlSettings": {"countriesBlockedForMinors": [], "legalAgeGroupRule": "Allow"},
            "passwordCredentials": [], "requiredResourceAccess": [],
            "spa": {"redirectUris": []},
            "web": {"redirectUris": [], "homePageUrl": null, "logoutUrl": null,
                "implicitGrantSettings": {"enableIdTokenIssuance": false, "enableAccessTokenIssuance": false}}
        }),
        Kind::ServicePrincipal => json!({
            "id": null, "deletedDateTime": null, "accountEnabled": true, "addIns": [],
            "alternativeNames": [], "appDescription": null, "appDisplayName": null, "appId": null,
            "applicationTemplateId": null, "appOwnerOrganizationId": null,
            "appRoleAssignmentRequired": false, "appRoles": [], "createdDateTime": null,
            "description": null, "disabledByMicrosoftStatus": null, "displayName": null, "endpoints": [],
            "homepage": null, "verifiedPublisher": {"displayName": null, "verifiedPublisherId": null,
                "addedDateTime": null},
            "info": {"termsOfServiceUrl": null, "supportUrl": null, "privacyStatementUrl": null,
                "marketingUrl": null, "logoUrl": null},
            "keyCredentials": [], "loginUrl": null, "logoutUrl": null, "notes": null,
            "notificationEmailAddresses": [], "oauth2PermissionScopes": [], "passwordCredentials": [],
            "preferredSingleSignOnMode": null, "preferredTokenSigningKeyThumbprint": null,
            "publisherName": null, "replyUrls": [], "resourceSpecificApplicationPermissions": [],
            "samlSingleSignOnSettings": null, "servicePrincipalNames": [],
            "servicePrincipalType": "Application", "signInAudience": null, "tags": [],
            "tokenEncryptionKeyId": null
        }),
        Kind::AdministrativeUnit => json!({
            "id": null, "deletedDateTime": null, "displayName": null, "description": null,
            "visibility": null, "membershipType": null, "membershipRule": null,
            "membershipRuleProcessingState": null, "isMemberManagementRestricted": null
        }),
        Kind::DirectoryRole => json!({
            "id": null, "deletedDateTime": null, "description": null, "displayName": null,
            "roleTemplateId": null
        }),
        Kind::RoleDefinition => json!({
            "id": null, "description": null, "displayName": null, "isBuiltIn": false, "isEnabled": true,
            "resourceScopes": ["/"], "templateId": null, "version": null, "rolePermissions": []
        }),
        Kind::RoleAssignment => json!({
            "id": null, "principalId": null, "resourceScope": "/", "directoryScopeId": "/",
            "roleDefinitionId": null
        }),
        Kind::OAuth2Grant => json!({
            "id": null, "clientId": null, "consentType": null, "principalId": null, "resourceId": null,
            "scope": null
        }),
        Kind::AppRoleAssignment => json!({
            "id": null, "deletedDateTime": null, "appRoleId": null, "createdDateTime": null,
            "principalDisplayName": null, "principalId": null, "principalType": null,
            "resourceDisplayName": null, "resourceId": null
        }),
        Kind::CaPolicy => json!({
            "id": null, "templateId": null, "displayName": null, "createdDateTime": null,
            "modifiedDateTime": null, "state": null,
            "conditions": {
                "userRiskLevels": [], "signInRiskLevels": [], "clientAppTypes": [],
                "servicePrincipalRiskLevels": [], "insiderRiskLevels": null,
                "platforms": null, "locations": null, "devices": null, "clientApplications": null,
                "times": null, "deviceStates": null,
                "applications": {"includeApplications": [], "excludeApplications": [],
                    "includeUserActions": [], "includeAuthenticationContextClassReferences": [],
                    "applicationFilter": null},
                "users": {"includeUsers": [], "excludeUsers": [], "includeGroups": [], "excludeGroups": [],
                    "includeRoles": [], "excludeRoles": [], "includeGuestsOrExternalUsers": null,
                    "excludeGuestsOrExternalUsers": null}
            },
            "grantControls": null,
            "sessionControls": null
        }),
        Kind::NamedLocation => json!({
            "id": null, "displayName": null, "modifiedDateTime": null, "createdDateTime": null
        }),
        Kind::AuthStrength => json!({
            "id": null, "createdDateTime": null, "modifiedDateTime": null, "displayName": null,
            "description": null, "policyType": "custom", "requirementsSatisfied": "mfa",
            "allowedCombinations": []
        }),
        Kind::Domain => json!({
            "id": null, "authenticationType": "Managed", "availabilityStatus": null,
            "isAdminManaged": true, "isDefault": false, "isInitial": false, "isRoot": true,
            "isVerified": false, "passwordNotificationWindowInDays": 14,
            "passwordValidityPeriodInDays": 2147483647, "supportedServices": [], "state": null
        }),
        Kind::AuthContext => json!({
            "id": null, "displayName": null, "description": null, "isAvailable": false
        }),
        Kind::RoleEligibility => json!({
            "id": null, "principalId": null, "roleDefinitionId": null, "directoryScopeId": "/",
            "appScopeId": null, "createdUsing": null, "createdDateTime": null,
            "modifiedDateTime": null, "status": "Provisioned", "memberType": "Direct",
            "scheduleInfo": {"startDateTime": null, "recurrence": null,
                "expiration": {"type": "noExpiration", "endDateTime": null, "duration": null}}
        }),
    };
    let props = obj(props);
    let mut s = Schema {
        props,
        default_set,
        select_only,
        single_only,
        defaults: vec![],
    };
    s.defaults = s
        .props
        .keys()
        .filter(|k| s.in_default(k))
        .cloned()
        .collect();
    s
}

/// Fills `stored` with the keys of `template` that it lacks, recursively for nested objects.
pub fn fill_defaults(stored: &Value, template: &Value) -> Value {
    match (stored, template) {
        (Value::Object(s), Value::Object(t)) => {
            let mut out = Map::new();
            for (k, tv) in t {
                match s.get(k) {
                    Some(sv) => out.insert(k.clone(), fill_defaults(sv, tv)),
                    None => out.insert(k.clone(), tv.clone()),
                };
            }
            for (k, sv) in s {
                if !out.contains_key(k) {
                    out.insert(k.clone(), sv.clone());
                }
            }
            Value::Object(out)
        }
        _ => stored.clone(),
    }
}

/// Type-specific properties of polymorphic named locations.
pub fn named_location_template(odata_type: &str) -> Value {
    if odata_type.ends_with("countryNamedLocation") {
        json!({"countriesAndRegions": [], "includeUnknownCountriesAndRegions": false,
               "countryLookupMethod": "clientIpAddress"})
    } else {
        json!({"isTrusted": false, "ipRanges": []})
    }
}

/// JSON-pointer lookup on a bare object.
pub trait ObjExt {
    fn pointer(&self, p: &str) -> Option<&Value>;
}

impl ObjExt for Obj {
    fn pointer(&self, p: &str) -> Option<&Value> {
        let mut parts = p.trim_start_matches('/').split('/');
        let mut v = self.get(parts.next()?)?;
        for part in parts {
            v = v.get(part)?;
        }
        Some(v)
    }
}
