//! `cairn init`: a commented starter manifest, an age key pair if asked, and the repositories
//! of the manifest's sinks.

use std::path::{Path, PathBuf};

use cairn_engine::keys::generate_identity;
use cairn_engine::setup::init_sinks;
use cairn_manifest::{starter_manifest, StarterOptions};
use clap::Args;
use serde_json::json;

use super::common::{load_manifest, print_json, registry};
use crate::exit::Failure;

/// File name of the manifest `cairn init` writes.
const MANIFEST: &str = "cairn.toml";
/// File name of the restore key `--with-keys` writes.
const IDENTITY: &str = "restore-identity.txt";

#[derive(Args)]
pub struct InitArgs {
    /// The directory to set up (created if missing).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Also generate an age key pair: the public key becomes the repository's recipient, the
    /// private key (the only way to read the backups) goes to `restore-identity.txt`.
    #[arg(long)]
    pub with_keys: bool,
    /// An age recipient (`age1…` or an `ssh-ed25519 …` line) who can read the backups; may be
    /// repeated. Added to the generated key's recipient, if any.
    #[arg(long = "recipient")]
    pub recipients: Vec<String>,
    /// Where the repository goes: a directory (relative to the manifest), `s3://…`, `az://…`
    /// or `gs://…` (default: `repository` beside the manifest).
    #[arg(long)]
    pub repo: Option<String>,
    /// The tenant id or domain.
    #[arg(long)]
    pub tenant: Option<String>,
    /// The app registration's client id.
    #[arg(long)]
    pub client_id: Option<String>,
    /// The environment variable that holds the client secret (default `CAIRN_CLIENT_SECRET`).
    #[arg(long)]
    pub client_secret_env: Option<String>,
    /// Token and Graph endpoint override, e.g. the simulator's URL from `cairn sim`.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Keep an existing `cairn.toml` and only create the repositories it names that do not
    /// exist yet (e.g. once the bucket is reachable, or after editing the recipients).
    #[arg(long)]
    pub repositories: bool,
    /// Print what was done as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InitArgs) -> Result<(), Failure> {
    let dir = &args.dir;
    let manifest_path = dir.join(MANIFEST);
    let mut written: Vec<String> = Vec::new();
    let mut recipient = None;
    if args.repositories {
        if !manifest_path.exists() {
            return Err(Failure::usage(format!(
                "no manifest at {} — run `cairn init` without --repositories first",
                manifest_path.display()
            )));
        }
    } else {
        if manifest_path.exists() {
            return Err(Failure::usage(format!(
                "{} already exists and was left as it is; `cairn init --repositories` creates \
                 the repositories it names",
                manifest_path.display()
            )));
        }
        let identity_path = dir.join(IDENTITY);
        if args.with_keys && identity_path.exists() {
            return Err(Failure::usage(format!(
                "{} already exists and was left as it is (it may be the only key to existing \
                 backups); move it away first",
                identity_path.display()
            )));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::failed(format!("creating {}: {e}", dir.display())))?;
        let mut recipients = Vec::new();
        if args.with_keys {
            let (secret, public) = generate_identity();
            write_private(
                &identity_path,
                &format!(
                    "# Cairn restore key (age identity) for the recipient {public}.\n\
                     # Whoever holds this file can read the backups. Keep it off the backup\n\
                     # machine, somewhere safe (a password manager, a safe).\n{secret}\n"
                ),
            )?;
            written.push(identity_path.display().to_string());
            recipients.push(public.clone());
            recipient = Some(public);
        }
        recipients.extend(args.recipients.iter().cloned());
        let text = starter_manifest(&StarterOptions {
            recipients,
            identity_file: args.with_keys.then(|| IDENTITY.to_string()),
            tenant: args.tenant.clone(),
            client_id: args.client_id.clone(),
            client_secret_env: args.client_secret_env.clone(),
            endpoint: args.endpoint.clone(),
            repository: args.repo.clone(),
            key_file: None,
        });
        write_private(&manifest_path, &text)?;
        written.push(manifest_path.display().to_string());
    }

    // The repositories: only once the manifest says who can read them.
    let (repositories, note) = match cairn_manifest::load(&manifest_path) {
        Err(d) if args.repositories => return Err(Failure::usage(d.to_string())),
        Err(_) => (
            Vec::new(),
            Some(format!(
                "repositories not created yet: set the recipients in {} (or rerun with \
                 --with-keys / --recipient), check it with `cairn validate`, then run \
                 `cairn init --repositories`",
                manifest_path.display()
            )),
        ),
        Ok(_) => {
            let manifest = load_manifest(&manifest_path)?;
            let reg = registry()?;
            match init_sinks(&manifest, &reg) {
                Ok(done) => (done, None),
                Err(e) if args.repositories => return Err(Failure::failed(format!("{e:#}"))),
                Err(e) => (
                    Vec::new(),
                    Some(format!(
                        "repositories not created yet: {e:#} — once the store is reachable, \
                         run `cairn init --repositories`"
                    )),
                ),
            }
        }
    };

    if args.json {
        print_json(&json!({
            "manifest": manifest_path.display().to_string(),
            "written": written,
            "recipient": recipient,
            "repositories": repositories.iter().map(|(s, created)| json!({"sink": s, "created": created})).collect::<Vec<_>>(),
            "note": note,
        }));
        return Ok(());
    }
    for w in &written {
        outln!("wrote {w}");
    }
    if let Some(r) = &recipient {
        outln!(
            "generated the age key pair: recipient {r}; its private key is in {} — copy it \
             somewhere safe and remove it from this machine",
            dir.join(IDENTITY).display()
        );
    }
    for (sink, created) in &repositories {
        if *created {
            outln!("created the repository of sink `{sink}`");
        } else {
            outln!("sink `{sink}`: repository already set up (writer key file exists)");
        }
    }
    if let Some(n) = &note {
        eprintln!("note: {n}");
    }
    outln!(
        "next: edit {m} (tenant, client_id), then `cairn validate -m {m}` and `cairn permissions -m {m}`",
        m = manifest_path.display()
    );
    Ok(())
}

/// Writes a new file readable by its owner only; never overwrites.
pub fn write_private(path: &Path, text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
        .map_err(|e| Failure::failed(format!("writing {}: {e}", path.display())))
}
