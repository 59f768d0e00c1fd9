//! The commented starter manifest `cairn init` writes.

/// What `cairn init` knows when it writes the starter manifest. Unset fields get
/// placeholders that parse but must be edited (the tenant, the app id).
#[derive(Debug, Clone, Default)]
pub struct StarterOptions {
    /// age recipients of the repository (e.g. the one `cairn init` just generated). With none,
    /// the starter has a placeholder that `cairn validate` reports until it is replaced: who can
    /// read the backups must be chosen, not defaulted.
    pub recipients: Vec<String>,
    /// Where the private key of the generated recipient was written (a comment tells the
    /// operator to move it off the backup machine).
    pub identity_file: Option<String>,
    /// The tenant id or domain.
    pub tenant: Option<String>,
    /// The app registration's client id.
    pub client_id: Option<String>,
    /// The environment variable holding the client secret (default `CAIRN_CLIENT_SECRET`).
    pub client_secret_env: Option<String>,
    /// Token and Graph endpoint override (the simulator's base URL).
    pub endpoint: Option<String>,
    /// The repository URL or directory (default `repository`, beside the manifest).
    pub repository: Option<String>,
    /// The writer key file (default `local.writer-key.json`, beside the manifest).
    pub key_file: Option<String>,
}

/// A TOML basic string.
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

/// The starter manifest text. With at least one valid recipient it parses without errors
/// or warnings.
pub fn starter_manifest(o: &StarterOptions) -> String {
    let tenant = o.tenant.as_deref().unwrap_or("contoso.onmicrosoft.com");
    let client_id = o
        .client_id
        .as_deref()
        .unwrap_or("00000000-0000-0000-0000-000000000000");
    let secret_env = o
        .client_secret_env
        .as_deref()
        .unwrap_or("CAIRN_CLIENT_SECRET");
    let repository = o.repository.as_deref().unwrap_or("repository");
    let key_file = o.key_file.as_deref().unwrap_or("local.writer-key.json");
    let endpoints = match &o.endpoint {
        Some(e) => format!(
            "authority_url = {e}                # token endpoint override (here: the simulator)\n\
             graph_url = {e}                    # Graph endpoint override\n",
            e = q(e)
        ),
        None => "# authority_url = \"http://127.0.0.1:8123\"   # endpoint overrides, e.g. for the simulator\n\
                 # graph_url = \"http://127.0.0.1:8123\"\n"
            .to_string(),
    };
    let recipients = if o.recipients.is_empty() {
        "  \"age1-REPLACE-ME\",   # an age1… recipient from `age-keygen`, or an `ssh-ed25519 AAAA…` line\n"
            .to_string()
    } else {
        o.recipients
            .iter()
            .map(|r| format!("  {},\n", q(r)))
            .collect::<String>()
    };
    let identity = match &o.identity_file {
        Some(f) => format!(
            "# The private key (identity) of the first recipient is in {f}. Only it can read\n\
             # the backups: copy it somewhere safe and remove it from this machine.\n"
        ),
        None => String::new(),
    };
    format!(
        r#"# Cairn manifest. Every table and key is described in the README ("Manifest").
# `cairn validate` checks this file; `cairn permissions` prints the Graph application
# permissions the app registration needs.
version = 1

# --- Where to read from: a Microsoft Graph connection (an app registration) ----------------
[connections.main]
tenant = {tenant}         # the tenant's id (a GUID) or one of its domains
client_id = {client_id}   # the app registration's application (client) id
# Secrets are references, never written here: env:NAME or file:/path.
client_secret = "env:{secret_env}"
# Or authenticate with a certificate (PEM files; the key is a secret reference):
# certificate = "file:/etc/cairn/app.crt"
# certificate_key = "file:/etc/cairn/app.key"
# cloud = "global"                             # global | usgov | usgov-dod | china
{endpoints}
# --- What to back up -------------------------------------------------------------------------
[collectors.entra]
plugin = "entra"            # a bundled plugin (`cairn plugins list`), or a path to a .wasm file
connection = "main"
# concurrency = 4                              # tasks at once, 1..=64
# limits = {{ memory_mb = 256, timeout_secs = 60 }}
# The plugin's own settings (`cairn plugins inspect entra` shows its schema):
# [collectors.entra.config]

# --- Where backups go: an encrypted, deduplicated repository -----------------------------------
[sinks.local]
plugin = "age-sink"
url = {repository}          # a directory (relative to this file), s3://bucket/prefix, az://container/prefix or gs://bucket/prefix
# Who can read the backups. This machine needs no private key to write them.
{identity}recipients = [
{recipients}]
key_file = {key_file}       # this machine's writer key for the repository (created on first use)
inputs = ["*"]              # collector names or globs
# zstd_level = 3                               # 1..=22
# pack_size_mb = 4
# checkpoint_interval = "30s"                  # a killed run resumes from its last checkpoint
# Options for s3://, az:// and gs:// stores; secrets as references:
# [sinks.local.store]
# region = "eu-west-1"
# access_key_id = "AKIA…"
# secret_access_key = "env:AWS_SECRET_ACCESS_KEY"

# --- Which snapshots `cairn forget` keeps ------------------------------------------------------
[retention]
keep_daily = 7
keep_weekly = 4
keep_monthly = 12
# keep_within = "30d"                          # everything newer than this (m, h, d, w, y)
# keep_tags = ["legal"]                        # snapshots with these tags, always

# --- When to run, for an external scheduler (5-field cron) ------------------------------------
[schedule]
backup = "0 2 * * *"
check = "0 4 * * 0"
prune = "0 5 * * 0"
"#,
        tenant = q(tenant),
        client_id = q(client_id),
        repository = q(repository),
        key_file = q(key_file),
    )
}
