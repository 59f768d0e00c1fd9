//! The object types the plugin backs up, as data: one row per task, with the Graph endpoint,
//! the `$select` list, how it is read and the permission that a 403 names.
//!
//! `$select` lists hold every documented readable v1.0 property of the type that a list or
//! delta call may select, except:
//! - properties readable only on a single-object GET (Graph answers 501 or ignores them on lists:
//!   the user's `aboutMe, birthday, …, mailboxSettings`; the group's Exchange settings
//!   `allowExternalSenders, autoSubscribeNewMembers, hideFromAddressLists, hideFromOutlookClients`
//!   and the per-user `isSubscribedByMail, unseenCount`);
//! - `signInActivity` (activity, not configuration: it needs `AuditLog.Read.All` plus a premium
//!   licence and changes at every sign-in, which would defeat delta and deduplication);
//! - write-only properties (`passwordProfile`, secrets).
//!
//! Documented properties the Graph simulator does not model yet are listed in
//! [`NOT_YET_SELECTED`]: selecting an unknown property is a 400 from Graph and from the simulator,
//! so they join the lists once the simulator knows them.
//!
//! Policy resources (Conditional Access, named locations, authentication strengths and contexts,
//! the singleton policies) return every property by default and are polymorphic (named
//! locations, method configurations), where a `$select` of one subtype's properties fails on the
//! base collection; they are read without `$select`.

/// How a type is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// A delta round: full on the first run, changes afterwards. `links` names a relationship
    /// selected with the properties and tracked as `{links}@delta` (`members` of groups and
    /// units, `manager` of users), stored as link items. `max_page` goes into
    /// `Prefer: odata.maxpagesize`.
    Delta {
        links: Option<&'static str>,
        max_page: u32,
    },
    /// A collection read in full every run, page by page.
    List,
    /// A single object (`GET` returns the object itself).
    Singleton,
    /// A collection that holds exactly one object (`/organization`).
    SingletonList,
    /// Something specific to the type (see `lib.rs`).
    Custom,
}

/// One object type: a task of the plugin.
#[derive(Debug, Clone, Copy)]
pub struct TypeSpec {
    /// Task id and the name used in the `types` config (stable: it keys checkpoints and trees).
    pub task: &'static str,
    /// Label for progress output.
    pub label: &'static str,
    /// The item kind of the type's objects (Graph's type name).
    pub kind: &'static str,
    /// Further item kinds the task produces (relationship links, method configurations).
    pub extra_kinds: &'static [&'static str],
    /// Collection or object path under `/v1.0`.
    pub path: &'static str,
    /// `$select`; `None` = the type's default set is already every property.
    pub select: Option<&'static [&'static str]>,
    /// Whether `$top=999` is allowed.
    pub top: bool,
    pub read: Read,
    /// The application permission a 403 on this type names.
    pub permission: &'static str,
    /// Optional types: a 403 or an endpoint the service does not offer makes the task report
    /// itself skipped (with the permission's name) instead of failing.
    pub optional: bool,
    /// Property used as the item's display name.
    pub name_field: &'static str,
}

impl TypeSpec {
    /// The URL of the first request of a run that reads everything.
    pub fn initial_url(&self) -> String {
        let delta = matches!(self.read, Read::Delta { .. });
        let mut url = format!("/v1.0{}{}", self.path, if delta { "/delta" } else { "" });
        let mut params: Vec<String> = Vec::new();
        if let Some(select) = self.select {
            let mut s = select.join(",");
            if let Read::Delta {
                links: Some(nav), ..
            } = self.read
            {
                s.push(',');
                s.push_str(nav);
            }
            params.push(format!("$select={s}"));
        }
        if self.top && !delta {
            params.push("$top=999".into());
        }
        if !params.is_empty() {
            url.push('?');
            url.push_str(&params.join("&"));
        }
        url
    }
}

/// Microsoft's own tenant: first-party service principals carry it as `appOwnerOrganizationId`.
pub const MICROSOFT_TENANT: &str = "f8cdef31-a31e-4b4a-93e4-5f571e91255a";

pub const USER_SELECT: &[&str] = &[
    "id",
    "accountEnabled",
    "ageGroup",
    "assignedLicenses",
    "assignedPlans",
    "businessPhones",
    "city",
    "companyName",
    "consentProvidedForMinor",
    "country",
    "createdDateTime",
    "creationType",
    "deletedDateTime",
    "department",
    "displayName",
    "employeeHireDate",
    "employeeId",
    "employeeOrgData",
    "employeeType",
    "externalUserState",
    "faxNumber",
    "givenName",
    "identities",
    "imAddresses",
    "isResourceAccount",
    "jobTitle",
    "lastPasswordChangeDateTime",
    "legalAgeGroupClassification",
    "mail",
    "mailNickname",
    "mobilePhone",
    "officeLocation",
    "onPremisesDistinguishedName",
    "onPremisesDomainName",
    "onPremisesExtensionAttributes",
    "onPremisesImmutableId",
    "onPremisesLastSyncDateTime",
    "onPremisesSamAccountName",
    "onPremisesSecurityIdentifier",
    "onPremisesSyncEnabled",
    "onPremisesUserPrincipalName",
    "otherMails",
    "passwordPolicies",
    "postalCode",
    "preferredDataLocation",
    "preferredLanguage",
    "proxyAddresses",
    "securityIdentifier",
    "showInAddressList",
    "signInSessionsValidFromDateTime",
    "state",
    "streetAddress",
    "surname",
    "usageLocation",
    "userPrincipalName",
    "userType",
];

pub const GROUP_SELECT: &[&str] = &[
    "id",
    "classification",
    "createdDateTime",
    "creationOptions",
    "deletedDateTime",
    "description",
    "displayName",
    "expirationDateTime",
    "groupTypes",
    "isAssignableToRole",
    "mail",
    "mailEnabled",
    "mailNickname",
    "membershipRule",
    "membershipRuleProcessingState",
    "onPremisesDomainName",
    "onPremisesLastSyncDateTime",
    "onPremisesNetBiosName",
    "onPremisesProvisioningErrors",
    "onPremisesSamAccountName",
    "onPremisesSecurityIdentifier",
    "onPremisesSyncEnabled",
    "preferredDataLocation",
    "preferredLanguage",
    "proxyAddresses",
    "renewedDateTime",
    "resourceBehaviorOptions",
    "resourceProvisioningOptions",
    "securityEnabled",
    "securityIdentifier",
    "serviceProvisioningErrors",
    "theme",
    "visibility",
];

pub const ADMINISTRATIVE_UNIT_SELECT: &[&str] = &[
    "id",
    "deletedDateTime",
    "description",
    "displayName",
    "isMemberManagementRestricted",
    "membershipRule",
    "membershipRuleProcessingState",
    "membershipType",
    "visibility",
];

pub const ROLE_DEFINITION_SELECT: &[&str] = &[
    "id",
    "description",
    "displayName",
    "isBuiltIn",
    "isEnabled",
    "resourceScopes",
    "rolePermissions",
    "templateId",
    "version",
];

pub const ROLE_ASSIGNMENT_SELECT: &[&str] =
    &["id", "directoryScopeId", "principalId", "roleDefinitionId"];

pub const APPLICATION_SELECT: &[&str] = &[
    "id",
    "addIns",
    "api",
    "appId",
    "applicationTemplateId",
    "appRoles",
    "certification",
    "createdDateTime",
    "defaultRedirectUri",
    "deletedDateTime",
    "description",
    "disabledByMicrosoftStatus",
    "displayName",
    "groupMembershipClaims",
    "identifierUris",
    "info",
    "isDeviceOnlyAuthSupported",
    "isFallbackPublicClient",
    "keyCredentials",
    "notes",
    "optionalClaims",
    "parentalControlSettings",
    "passwordCredentials",
    "publicClient",
    "publisherDomain",
    "requiredResourceAccess",
    "samlMetadataUrl",
    "serviceManagementReference",
    "signInAudience",
    "spa",
    "tags",
    "tokenEncryptionKeyId",
    "uniqueName",
    "verifiedPublisher",
    "web",
];

pub const SERVICE_PRINCIPAL_SELECT: &[&str] = &[
    "id",
    "accountEnabled",
    "addIns",
    "alternativeNames",
    "appDescription",
    "appDisplayName",
    "appId",
    "applicationTemplateId",
    "appOwnerOrganizationId",
    "appRoleAssignmentRequired",
    "appRoles",
    "createdDateTime",
    "deletedDateTime",
    "description",
    "disabledByMicrosoftStatus",
    "displayName",
    "endpoints",
    "homepage",
    "info",
    "keyCredentials",
    "loginUrl",
    "logoutUrl",
    "notes",
    "notificationEmailAddresses",
    "oauth2PermissionScopes",
    "passwordCredentials",
    "preferredSingleSignOnMode",
    "preferredTokenSigningKeyThumbprint",
    "publisherName",
    "replyUrls",
    "resourceSpecificApplicationPermissions",
    "samlSingleSignOnSettings",
    "servicePrincipalNames",
    "servicePrincipalType",
    "signInAudience",
    "tags",
    "tokenEncryptionKeyId",
    "verifiedPublisher",
];

pub const APP_ROLE_ASSIGNMENT_SELECT: &[&str] = &[
    "id",
    "appRoleId",
    "createdDateTime",
    "deletedDateTime",
    "principalDisplayName",
    "principalId",
    "principalType",
    "resourceDisplayName",
    "resourceId",
];

pub const OAUTH2_GRANT_SELECT: &[&str] = &[
    "id",
    "clientId",
    "consentType",
    "principalId",
    "resourceId",
    "scope",
];

pub const DOMAIN_SELECT: &[&str] = &[
    "id",
    "authenticationType",
    "availabilityStatus",
    "isAdminManaged",
    "isDefault",
    "isInitial",
    "isRoot",
    "isVerified",
    "passwordNotificationWindowInDays",
    "passwordValidityPeriodInDays",
    "state",
    "supportedServices",
];

/// Documented v1.0 properties not selected yet because the Graph simulator does not model them
/// (selecting them would be a 400 there). (type, properties)
pub const NOT_YET_SELECTED: &[(&str, &[&str])] = &[
    (
        "user",
        &[
            "authorizationInfo",
            "externalUserStateChangeDateTime",
            "licenseAssignmentStates",
            "onPremisesProvisioningErrors",
            "onPremisesSipInfo",
            "provisionedPlans",
            "serviceProvisioningErrors",
        ],
    ),
    (
        "application",
        &[
            "authenticationBehaviors",
            "nativeAuthenticationApisEnabled",
            "requestSignatureVerification",
            "servicePrincipalLockConfiguration",
        ],
    ),
    ("unifiedRoleAssignment", &["appScopeId", "condition"]),
];

const fn spec(
    task: &'static str,
    label: &'static str,
    kind: &'static str,
    path: &'static str,
    select: Option<&'static [&'static str]>,
    read: Read,
    permission: &'static str,
) -> TypeSpec {
    TypeSpec {
        task,
        label,
        kind,
        extra_kinds: &[],
        path,
        select,
        top: false,
        read,
        permission,
        optional: false,
        name_field: "displayName",
    }
}

/// Every type, in plan order (big delta types first so they start early).
pub const TYPES: &[TypeSpec] = &[
    TypeSpec {
        name_field: "userPrincipalName",
        extra_kinds: &["userManager"],
        ..spec(
            "users",
            "Users",
            "user",
            "/users",
            Some(USER_SELECT),
            Read::Delta {
                links: Some("manager"),
                max_page: 999,
            },
            "User.Read.All",
        )
    },
    TypeSpec {
        extra_kinds: &["groupMember"],
        ..spec(
            "groups",
            "Groups, members and owners",
            "group",
            "/groups",
            Some(GROUP_SELECT),
            Read::Delta {
                links: Some("members"),
                max_page: 100,
            },
            "Group.Read.All",
        )
    },
    spec(
        "servicePrincipals",
        "Service principals and owners",
        "servicePrincipal",
        "/servicePrincipals",
        Some(SERVICE_PRINCIPAL_SELECT),
        Read::Delta {
            links: None,
            max_page: 999,
        },
        "Application.Read.All",
    ),
    spec(
        "applications",
        "Applications, owners, federated credentials, extension properties",
        "application",
        "/applications",
        Some(APPLICATION_SELECT),
        Read::Delta {
            links: None,
            max_page: 999,
        },
        "Application.Read.All",
    ),
    TypeSpec {
        name_field: "principalDisplayName",
        ..spec(
            "appRoleAssignments",
            "App role assignments",
            "appRoleAssignment",
            "/servicePrincipals",
            Some(APP_ROLE_ASSIGNMENT_SELECT),
            Read::Custom,
            "Application.Read.All",
        )
    },
    TypeSpec {
        name_field: "scope",
        ..spec(
            "oauth2PermissionGrants",
            "Delegated permission grants",
            "oauth2PermissionGrant",
            "/oauth2PermissionGrants",
            Some(OAUTH2_GRANT_SELECT),
            Read::Delta {
                links: None,
                max_page: 999,
            },
            "DelegatedPermissionGrant.Read.All",
        )
    },
    TypeSpec {
        extra_kinds: &["administrativeUnitMember"],
        ..spec(
            "administrativeUnits",
            "Administrative units, members and scoped role members",
            "administrativeUnit",
            "/administrativeUnits",
            Some(ADMINISTRATIVE_UNIT_SELECT),
            Read::Delta {
                links: Some("members"),
                max_page: 100,
            },
            "AdministrativeUnit.Read.All",
        )
    },
    spec(
        "roleDefinitions",
        "Directory role definitions",
        "unifiedRoleDefinition",
        "/roleManagement/directory/roleDefinitions",
        Some(ROLE_DEFINITION_SELECT),
        Read::List,
        "RoleManagement.Read.Directory",
    ),
    TypeSpec {
        top: true,
        name_field: "principalId",
        ..spec(
            "roleAssignments",
            "Directory role assignments",
            "unifiedRoleAssignment",
            "/roleManagement/directory/roleAssignments",
            Some(ROLE_ASSIGNMENT_SELECT),
            Read::List,
            "RoleManagement.Read.Directory",
        )
    },
    TypeSpec {
        optional: true,
        name_field: "principalId",
        ..spec(
            "roleEligibilitySchedules",
            "PIM role eligibility schedules",
            "unifiedRoleEligibilitySchedule",
            "/roleManagement/directory/roleEligibilitySchedules",
            None,
            Read::List,
            "RoleEligibilitySchedule.Read.Directory",
        )
    },
    spec(
        "conditionalAccessPolicies",
        "Conditional Access policies",
        "conditionalAccessPolicy",
        "/identity/conditionalAccess/policies",
        None,
        Read::List,
        "Policy.Read.All",
    ),
    spec(
        "namedLocations",
        "Named locations",
        "namedLocation",
        "/identity/conditionalAccess/namedLocations",
        None,
        Read::List,
        "Policy.Read.All",
    ),
    spec(
        "authenticationStrengthPolicies",
        "Authentication strengths",
        "authenticationStrengthPolicy",
        "/policies/authenticationStrengthPolicies",
        None,
        Read::List,
        "Policy.Read.All",
    ),
    TypeSpec {
        optional: true,
        ..spec(
            "authenticationContexts",
            "Authentication contexts",
            "authenticationContextClassReference",
            "/identity/conditionalAccess/authenticationContextClassReferences",
            None,
            Read::List,
            "Policy.Read.All",
        )
    },
    TypeSpec {
        extra_kinds: &["authenticationMethodConfiguration"],
        ..spec(
            "authenticationMethodsPolicy",
            "Authentication methods policy and method configurations",
            "authenticationMethodsPolicy",
            "/policies/authenticationMethodsPolicy",
            None,
            Read::Custom,
            "Policy.Read.All",
        )
    },
    spec(
        "authorizationPolicy",
        "Authorization policy",
        "authorizationPolicy",
        "/policies/authorizationPolicy",
        None,
        Read::Singleton,
        "Policy.Read.All",
    ),
    spec(
        "securityDefaults",
        "Security defaults",
        "identitySecurityDefaultsEnforcementPolicy",
        "/policies/identitySecurityDefaultsEnforcementPolicy",
        None,
        Read::Singleton,
        "Policy.Read.All",
    ),
    TypeSpec {
        name_field: "id",
        ..spec(
            "domains",
            "Domains",
            "domain",
            "/domains",
            Some(DOMAIN_SELECT),
            Read::List,
            "Domain.Read.All",
        )
    },
    spec(
        "organization",
        "Organization",
        "organization",
        "/organization",
        None,
        Read::SingletonList,
        "Organization.Read.All",
    ),
];

/// The type whose task id is `task`.
pub fn by_task(task: &str) -> Option<&'static TypeSpec> {
    TYPES.iter().find(|t| t.task == task)
}

/// Application permissions with the reason each is needed (for `describe`).
pub const PERMISSIONS: &[(&str, &str)] = &[
    (
        "User.Read.All",
        "read users and their managers (users/delta with manager@delta)",
    ),
    (
        "Group.Read.All",
        "read groups with their members (members@delta) and owners",
    ),
    (
        "AdministrativeUnit.Read.All",
        "read administrative units, their members and scoped role members",
    ),
    (
        "RoleManagement.Read.Directory",
        "read directory role definitions and role assignments",
    ),
    (
        "RoleEligibilitySchedule.Read.Directory",
        "read PIM role eligibility schedules (optional: skipped without it)",
    ),
    (
        "Application.Read.All",
        "read applications, service principals, their owners, federated credentials, extension properties and app role assignments",
    ),
    (
        "DelegatedPermissionGrant.Read.All",
        "read delegated permission grants (oauth2PermissionGrants)",
    ),
    (
        "Policy.Read.All",
        "read Conditional Access policies, named locations, authentication strengths and contexts, the authentication methods, authorization and security defaults policies",
    ),
    ("Domain.Read.All", "read domains"),
    ("Organization.Read.All", "read the organization"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_are_unique_and_urls_well_formed() {
        for (i, t) in TYPES.iter().enumerate() {
            assert!(TYPES[..i].iter().all(|o| o.task != t.task), "{}", t.task);
            assert!(
                PERMISSIONS.iter().any(|(p, _)| *p == t.permission),
                "{}",
                t.task
            );
        }
        assert_eq!(
            by_task("groups").unwrap().initial_url(),
            format!(
                "/v1.0/groups/delta?$select={},members",
                GROUP_SELECT.join(",")
            )
        );
        assert!(by_task("users")
            .unwrap()
            .initial_url()
            .ends_with(",userType,manager"));
        assert!(by_task("roleAssignments")
            .unwrap()
            .initial_url()
            .ends_with("&$top=999"));
    }
}
