//! What the restorer may write, per object kind, in one table: where the objects live, which
//! attributes a PATCH (or the create POST) may carry, and which are sent only at creation.
//!
//! Everything not listed is read-only or computed (`id`, `createdDateTime`, `mail`,
//! `proxyAddresses`, `securityIdentifier`, `appId`, `publisherDomain`, `passwordCredentials`,
//! …) or write-only (`passwordProfile`) and is never compared or written: a restore that
//! matches on these lists is complete.

/// One restorable object kind.
#[derive(Debug)]
pub struct KindSpec {
    /// Item kind (Graph's type name).
    pub kind: &'static str,
    /// Collection path under `/v1.0`.
    pub path: &'static str,
    /// Attributes compared with the snapshot and written by PATCH (and by the create POST).
    pub writable: &'static [&'static str],
    /// Attributes sent only in the create POST (Graph refuses to change them later).
    pub create_only: &'static [&'static str],
    /// Soft-deleted into `/directory/deletedItems` (restorable with the same id).
    pub recycle: bool,
    /// Conditional Access recycle bin collection (`/beta/identity/conditionalAccess/deletedItems/…`).
    pub ca_recycle: Option<&'static str>,
    /// Whether live reads may use `$select` (polymorphic policy resources may not).
    pub select: bool,
}

impl KindSpec {
    /// `$select` for live reads: the id and every writable attribute.
    pub fn select_list(&self) -> String {
        let mut s = vec!["id"];
        s.extend(self.writable.iter().copied());
        s.extend(self.create_only.iter().copied());
        if self.kind == "application" {
            s.extend(["appId", "passwordCredentials", "keyCredentials"]);
        }
        if self.kind == "servicePrincipal" {
            s.extend(["appId", "appOwnerOrganizationId"]);
        }
        if self.kind == "group" {
            s.push("groupTypes");
        }
        s.dedup();
        s.join(",")
    }

    /// The URL of one object.
    pub fn object_url(&self, id: &str) -> String {
        format!("/v1.0{}/{id}", self.path)
    }
}

pub const USER_WRITABLE: &[&str] = &[
    "accountEnabled",
    "ageGroup",
    "businessPhones",
    "city",
    "companyName",
    "consentProvidedForMinor",
    "country",
    "department",
    "displayName",
    "employeeHireDate",
    "employeeId",
    "employeeOrgData",
    "employeeType",
    "faxNumber",
    "givenName",
    "jobTitle",
    "mailNickname",
    "mobilePhone",
    "officeLocation",
    "onPremisesExtensionAttributes",
    "otherMails",
    "passwordPolicies",
    "postalCode",
    "preferredDataLocation",
    "preferredLanguage",
    "showInAddressList",
    "state",
    "streetAddress",
    "surname",
    "usageLocation",
    "userPrincipalName",
    "userType",
];

pub const GROUP_WRITABLE: &[&str] = &[
    "classification",
    "description",
    "displayName",
    "mailEnabled",
    "mailNickname",
    "membershipRule",
    "membershipRuleProcessingState",
    "preferredDataLocation",
    "preferredLanguage",
    "securityEnabled",
    "theme",
    "visibility",
];

pub const AU_WRITABLE: &[&str] = &[
    "description",
    "displayName",
    "membershipRule",
    "membershipRuleProcessingState",
    "membershipType",
    "visibility",
];

pub const APPLICATION_WRITABLE: &[&str] = &[
    "addIns",
    "api",
    "appRoles",
    "description",
    "displayName",
    "groupMembershipClaims",
    "identifierUris",
    "info",
    "isDeviceOnlyAuthSupported",
    "isFallbackPublicClient",
    "notes",
    "optionalClaims",
    "parentalControlSettings",
    "publicClient",
    "requiredResourceAccess",
    "samlMetadataUrl",
    "serviceManagementReference",
    "signInAudience",
    "spa",
    "tags",
    "tokenEncryptionKeyId",
    "web",
];

pub const SERVICE_PRINCIPAL_WRITABLE: &[&str] = &[
    "accountEnabled",
    "addIns",
    "alternativeNames",
    "appRoleAssignmentRequired",
    "description",
    "homepage",
    "loginUrl",
    "logoutUrl",
    "notes",
    "notificationEmailAddresses",
    "preferredSingleSignOnMode",
    "replyUrls",
    "samlSingleSignOnSettings",
    "tags",
];

pub const CA_WRITABLE: &[&str] = &[
    "displayName",
    "state",
    "conditions",
    "grantControls",
    "sessionControls",
];

pub const NAMED_LOCATION_WRITABLE: &[&str] = &[
    "displayName",
    "ipRanges",
    "isTrusted",
    "countriesAndRegions",
    "includeUnknownCountriesAndRegions",
    "countryLookupMethod",
];

pub const KINDS: &[KindSpec] = &[
    KindSpec {
        kind: "namedLocation",
        path: "/identity/conditionalAccess/namedLocations",
        writable: NAMED_LOCATION_WRITABLE,
        create_only: &["@odata.type"],
        recycle: false,
        ca_recycle: Some("namedLocations"),
        select: false,
    },
    KindSpec {
        kind: "user",
        path: "/users",
        writable: USER_WRITABLE,
        create_only: &[],
        recycle: true,
        ca_recycle: None,
        select: true,
    },
    KindSpec {
        kind: "group",
        path: "/groups",
        writable: GROUP_WRITABLE,
        create_only: &["groupTypes", "isAssignableToRole"],
        recycle: true,
        ca_recycle: None,
        select: true,
    },
    KindSpec {
        kind: "administrativeUnit",
        path: "/directory/administrativeUnits",
        writable: AU_WRITABLE,
        create_only: &[],
        recycle: true,
        ca_recycle: None,
        select: true,
    },
    KindSpec {
        kind: "application",
        path: "/applications",
        writable: APPLICATION_WRITABLE,
        create_only: &[],
        recycle: true,
        ca_recycle: None,
        select: true,
    },
    KindSpec {
        kind: "servicePrincipal",
        path: "/servicePrincipals",
        writable: SERVICE_PRINCIPAL_WRITABLE,
        create_only: &[],
        recycle: true,
        ca_recycle: None,
        select: true,
    },
    KindSpec {
        kind: "conditionalAccessPolicy",
        path: "/identity/conditionalAccess/policies",
        writable: CA_WRITABLE,
        create_only: &[],
        recycle: false,
        ca_recycle: Some("policies"),
        select: false,
    },
];

/// The spec of an object kind.
pub fn of(kind: &str) -> Option<&'static KindSpec> {
    KINDS.iter().find(|k| k.kind == kind)
}

/// Restore-time permissions, with the reason (for `describe`).
pub const RESTORE_PERMISSIONS: &[(&str, &str)] = &[
    (
        "User.ReadWrite.All",
        "re-create users and PATCH their attributes; restore users from the recycle bin; set managers",
    ),
    (
        "Group.ReadWrite.All",
        "re-create groups, PATCH them, restore them from the recycle bin, add members and owners",
    ),
    (
        "AdministrativeUnit.ReadWrite.All",
        "re-create administrative units and add their members",
    ),
    (
        "Application.ReadWrite.All",
        "re-create applications and service principals, their owners and federated credentials",
    ),
    (
        "AppRoleAssignment.ReadWrite.All",
        "re-create app role assignments",
    ),
    (
        "DelegatedPermissionGrant.ReadWrite.All",
        "re-create delegated permission grants (oauth2PermissionGrants)",
    ),
    (
        "RoleManagement.ReadWrite.Directory",
        "re-create directory role assignments (also needed to add members to role-assignable groups); \
         PATCH and re-create custom role definitions; write back PIM role eligibilities \
         (roleEligibilityScheduleRequests)",
    ),
    (
        "Policy.ReadWrite.ConditionalAccess",
        "re-create and PATCH Conditional Access policies, named locations and custom \
         authentication strengths",
    ),
    (
        "Policy.ReadWrite.AuthenticationMethod",
        "PATCH the authentication methods policy and its method configurations",
    ),
    (
        "Policy.ReadWrite.Authorization",
        "PATCH the authorization policy (user consent, default user role permissions, guest access)",
    ),
    (
        "Policy.ReadWrite.SecurityDefaults",
        "turn security defaults back on or off as in the snapshot",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{
        ADMINISTRATIVE_UNIT_SELECT, APPLICATION_SELECT, GROUP_SELECT, SERVICE_PRINCIPAL_SELECT,
        USER_SELECT,
    };

    /// Live reads `$select` only what the collector selects (the simulator and Graph refuse
    /// unknown properties), so every writable attribute must be backed up.
    #[test]
    fn writable_attributes_are_backed_up() {
        for (k, sel) in [
            ("user", USER_SELECT),
            ("group", GROUP_SELECT),
            ("administrativeUnit", ADMINISTRATIVE_UNIT_SELECT),
            ("application", APPLICATION_SELECT),
            ("servicePrincipal", SERVICE_PRINCIPAL_SELECT),
        ] {
            let spec = of(k).unwrap();
            for a in spec.select_list().split(',') {
                assert!(
                    sel.contains(&a),
                    "{k}.{a} is not in the collector's $select"
                );
            }
        }
    }
}
