//! # `m365-mail`: Cairn's Microsoft 365 mailbox collector and restorer
//!
//! Backs up Exchange Online mailboxes through Microsoft Graph v1.0 and restores messages, folders
//! or whole mailboxes without overwriting anything.
//!
//! ## Scope (`plan`)
//! Mailboxes come from Graph, never from a hand-kept list: the tenant's member users that have a
//! `mail` address (guests have no mailbox here). The configuration narrows it:
//! `groups = ["Finance"]` (transitive user members of groups named so) and `users = [upn|id]`
//! select mailboxes; without either every mailbox is in scope. `sharedMailboxes = true` adds
//! every shared mailbox, `false` removes them (unset: as the scope says) — Graph has no recipient type, so a shared
//! mailbox is recognised as Exchange creates it: a user with a mailbox whose account is disabled
//! (a disabled former employee's mailbox counts too). `exclude = [upn|id]` removes mailboxes.
//! One task per mailbox, `mailbox/<user-id>`, so many mailboxes run at once; Outlook's limits are
//! per mailbox (4 concurrent requests, 10,000 per 10 minutes), enforced by the host's gateway.
//!
//! ## Items
//! - `mailbox` (id = user id): `{id, userPrincipalName, displayName, mail}`.
//! - `mailFolder` (id = folder id): the folder as `mailFolders/delta` returns it (all folders,
//!   well-known, nested and hidden) without its counters, plus `mailbox`.
//! - `message` (id = message id): a metadata record (`parentFolderId`, `internetMessageId`,
//!   `conversationId`, received/sent/created/modified times, `isRead`, `isDraft`, `flag`,
//!   `categories`, `importance`, `subject`, `from`, `hasAttachments`, `size` from
//!   `PR_MESSAGE_SIZE`, `mailbox`) with the message's MIME (`$value`) as the part `mime`
//!   (`message/rfc822`), streamed by the host into the repository's chunks.
//! - `messageError` (id = message id): a message that could not be backed up in this run, with
//!   the reason (`tooLarge`, `vanished`, `mimeUnavailable`), the HTTP status and Graph's code.
//!   The run goes on; the item stays while the problem does (a later successful read of the
//!   message, or its deletion, removes it), so `cairn ls SNAP messageError` lists every
//!   message a snapshot lacks.
//!
//! ## Incremental runs
//! See [`collect`]: `mailFolders/delta` and a message delta per folder, their links kept per
//! folder in the task state.

use cairn_sdk::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};

pub mod collect;
pub mod mime;
pub mod restore;

/// Outlook's largest message (150 MB): the default size limit.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 150 * 1024 * 1024;

/// The plugin's manifest configuration.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// `all` (default) or `listed` (only `groups` and `users`; implied when either is set).
    pub scope: Scope,
    /// Groups (display names) whose transitive user members' mailboxes are backed up.
    pub groups: Vec<String>,
    /// Users (UPN, mail address or id) whose mailboxes are backed up.
    pub users: Vec<String>,
    /// Shared mailboxes (users with a mailbox and a disabled account): `None` = as the scope
    /// says (all: included; listed: only if listed), `true` = always added, `false` = left out.
    pub shared_mailboxes: Option<bool>,
    /// Mailboxes to leave out (UPN, mail address or id).
    pub exclude: Vec<String>,
    /// Messages larger than this are recorded as `messageError` (`tooLarge`), not downloaded.
    pub max_message_bytes: u64,
    /// Messages per Graph delta page (`Prefer: odata.maxpagesize`).
    pub page_size: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            scope: Scope::All,
            groups: Vec::new(),
            users: Vec::new(),
            shared_mailboxes: None,
            exclude: Vec::new(),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            page_size: 25,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    All,
    Listed,
}

pub(crate) fn load_config() -> Result<Config, PluginError> {
    let cfg: Config = config()?;
    if cfg.scope == Scope::Listed && cfg.groups.is_empty() && cfg.users.is_empty() {
        return Err(PluginError::Config(
            "scope = \"listed\" needs `groups` or `users` (or use scope = \"all\")".into(),
        ));
    }
    if cfg.page_size == 0 || cfg.page_size > 1000 {
        return Err(PluginError::Config(
            "pageSize must be between 1 and 1000".into(),
        ));
    }
    Ok(cfg)
}

struct Mail;

/// Item kinds this plugin produces and restores.
pub const KINDS: &[&str] = &["mailbox", "mailFolder", "message", "messageError"];

impl Plugin for Mail {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "m365-mail",
            env!("CARGO_PKG_VERSION"),
            "Backs up Microsoft 365 mailboxes (folder tree, message metadata and MIME) \
             incrementally and restores messages, folders or mailboxes without overwriting",
        )
        .collector(KINDS)
        .restorer(&["mailbox", "mailFolder", "message"])
        .config_schema(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "scope": {
                    "description": "`all` mailboxes (default), or only the `listed` groups and users (implied when `groups` or `users` is set)",
                    "enum": ["all", "listed"],
                    "default": "all"
                },
                "groups": {
                    "description": "Group display names: their transitive user members' mailboxes",
                    "type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": true
                },
                "users": {
                    "description": "Users by userPrincipalName, mail address or object id",
                    "type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": true
                },
                "sharedMailboxes": {
                    "description": "Shared mailboxes (mailbox users whose account is disabled): true adds them all, false leaves them out; unset follows the scope (all: included, listed: only if listed)",
                    "type": "boolean"
                },
                "exclude": {
                    "description": "Mailboxes to leave out, by userPrincipalName, mail address or object id",
                    "type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": true
                },
                "maxMessageBytes": {
                    "description": "Messages larger than this are recorded as errors, not downloaded (default 150 MiB, Outlook's limit)",
                    "type": "integer", "minimum": 1, "default": DEFAULT_MAX_MESSAGE_BYTES
                },
                "pageSize": {
                    "description": "Messages per Graph delta page (default 25)",
                    "type": "integer", "minimum": 1, "maximum": 1000, "default": 25
                }
            }
        }))
        .permission(
            "User.Read.All",
            "find the tenant's mailboxes (users with mail) and resolve listed users",
            PermissionUse::Backup,
        )
        .permission(
            "GroupMember.Read.All",
            "resolve `groups` in the scope to their members",
            PermissionUse::Backup,
        )
        .permission(
            "Mail.Read",
            "read mail folders, message metadata and MIME of every mailbox in scope",
            PermissionUse::Backup,
        )
        .permission(
            "Mail.ReadWrite",
            "re-create mail folders and messages (MIME import) when restoring",
            PermissionUse::Restore,
        )
    }

    fn configured() -> Result<(), PluginError> {
        load_config().map(|_| ())
    }
}

impl Collector for Mail {
    fn plan() -> Result<Vec<Task>, PluginError> {
        let cfg = load_config()?;
        let boxes = mailboxes_in_scope(&cfg)?;
        Ok(boxes
            .into_iter()
            .map(|u| {
                task(
                    &format!("mailbox/{}", u.id),
                    &format!("Mailbox {}", u.upn),
                    json!({"user": u.id, "upn": u.upn, "displayName": u.display_name, "mail": u.mail}),
                )
            })
            .collect())
    }

    fn run_step(
        task: Task,
        state: Option<String>,
        cursor: Option<String>,
    ) -> Result<Step, PluginError> {
        let cfg = load_config()?;
        collect::run_step(&cfg, &task, state, cursor)
    }
}

impl Restorer for Mail {
    fn plan(request: RestoreRequest) -> Result<Vec<Action>, PluginError> {
        restore::plan(request)
    }
    fn apply(action: Action) -> Result<Outcome, PluginError> {
        restore::apply(action)
    }
}

cairn_sdk::export_collector_restorer!(Mail);

/// A user with a mailbox.
#[derive(Debug, Clone, PartialEq)]
pub struct MailUser {
    pub id: String,
    pub upn: String,
    pub mail: String,
    pub display_name: String,
    pub enabled: bool,
}

impl MailUser {
    fn matches(&self, key: &str) -> bool {
        self.id.eq_ignore_ascii_case(key)
            || self.upn.eq_ignore_ascii_case(key)
            || self.mail.eq_ignore_ascii_case(key)
    }
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Member users with a mail address, from Graph.
fn mail_users() -> Result<Vec<MailUser>, PluginError> {
    let users = graph::get_all(
        "/v1.0/users?$select=id,userPrincipalName,displayName,mail,userType,accountEnabled&$top=999",
    )
    .map_err(|e| forbidden(e, "User.Read.All"))?;
    Ok(users
        .iter()
        .filter(|u| !str_of(u, "mail").is_empty() && str_of(u, "userType") != "Guest")
        .map(|u| MailUser {
            id: str_of(u, "id").to_string(),
            upn: str_of(u, "userPrincipalName").to_string(),
            mail: str_of(u, "mail").to_string(),
            display_name: str_of(u, "displayName").to_string(),
            enabled: u
                .get("accountEnabled")
                .and_then(Value::as_bool)
                .unwrap_or(true),
        })
        .collect())
}

pub(crate) fn forbidden(e: PluginError, permission: &str) -> PluginError {
    if graph::is_forbidden(&e) {
        PluginError::PermissionDenied(permission.into())
    } else {
        e
    }
}

/// The ids of the transitive user members of the group named `name` (exactly one group).
fn group_member_ids(name: &str) -> Result<Vec<String>, PluginError> {
    let filter = graph::encode(&format!("displayName eq '{}'", name.replace('\'', "''")));
    let groups = graph::get_all(&format!(
        "/v1.0/groups?$filter={filter}&$select=id,displayName"
    ))
    .map_err(|e| forbidden(e, "GroupMember.Read.All"))?;
    let group = match groups.as_slice() {
        [g] => g,
        [] => {
            return Err(PluginError::Config(format!(
                "`groups`: no group is named `{name}`"
            )))
        }
        _ => {
            return Err(PluginError::Config(format!(
                "`groups`: {} groups are named `{name}`; name a unique group",
                groups.len()
            )))
        }
    };
    let members = graph::get_all(&format!(
        "/v1.0/groups/{}/transitiveMembers?$select=id&$top=999",
        str_of(group, "id")
    ))
    .map_err(|e| forbidden(e, "GroupMember.Read.All"))?;
    Ok(members
        .iter()
        .filter(|m| str_of(m, "@odata.type") == "#microsoft.graph.user")
        .map(|m| str_of(m, "id").to_string())
        .collect())
}

/// The mailboxes the configuration selects, in a stable order.
pub fn mailboxes_in_scope(cfg: &Config) -> Result<Vec<MailUser>, PluginError> {
    let all = mail_users()?;
    let listed = cfg.scope == Scope::Listed || !cfg.groups.is_empty() || !cfg.users.is_empty();
    let mut chosen: Vec<MailUser> = if listed {
        let mut ids: Vec<String> = Vec::new();
        for g in &cfg.groups {
            ids.extend(group_member_ids(g)?);
        }
        for key in &cfg.users {
            match all.iter().find(|u| u.matches(key)) {
                Some(u) => ids.push(u.id.clone()),
                None => {
                    return Err(PluginError::Config(format!(
                        "`users`: `{key}` is not a user with a mailbox in this tenant"
                    )))
                }
            }
        }
        all.iter()
            .filter(|u| {
                ids.iter().any(|i| i.eq_ignore_ascii_case(&u.id))
                    || (cfg.shared_mailboxes == Some(true) && !u.enabled)
            })
            .cloned()
            .collect()
    } else {
        all.clone()
    };
    if cfg.shared_mailboxes == Some(false) {
        chosen.retain(|u| u.enabled);
    }
    chosen.retain(|u| !cfg.exclude.iter().any(|x| u.matches(x)));
    chosen.sort_by(|a, b| a.id.cmp(&b.id));
    chosen.dedup_by(|a, b| a.id == b.id);
    Ok(chosen)
}
