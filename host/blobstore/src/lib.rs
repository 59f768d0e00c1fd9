//! Blob stores for Cairn repositories, by URL, through the `object_store` crate:
//!
//! | URL | store |
//! |---|---|
//! | `/path`, `./path`, `file:///path` | local directory (the default) |
//! | `s3://bucket/prefix` | S3 or S3-compatible (endpoint override, path-style, plain HTTP for test servers) |
//! | `az://container/prefix` (also `azure://`) | Azure Blob Storage or Azurite |
//! | `gs://bucket/prefix` | Google Cloud Storage |
//!
//! Credentials come from the options map (the manifest) or the standard environment variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT`, `AZURE_STORAGE_ACCOUNT_NAME`,
//! `AZURE_STORAGE_ACCOUNT_KEY`, `GOOGLE_SERVICE_ACCOUNT`, …). Option names are `object_store`'s
//! config keys (`endpoint`, `region`, `access_key_id`, `secret_access_key`, `allow_http`,
//! `virtual_hosted_style_request`, `account_name`, `access_key`, `use_emulator`, …).
//!
//! For an S3 bucket with Object Lock, set `checksum_algorithm=sha256` (uploads to such buckets
//! must carry a checksum).
//!
//! Puts are create-if-absent (`PutMode::Create`; "already exists" is success). Deletes the
//! store refuses (S3 Object Lock, immutability policies, delete-denied credentials) come back
//! as [`DeleteOutcome::Refused`]. On a versioned S3 bucket a delete removes the object's
//! version (freeing storage, and meeting Object Lock), not just hiding it behind a delete marker.
//!
//! [`BlobStore`] implements `cairn_repository::Backend` without encryption; the age sink wraps
//! it for encrypted repositories.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, OnceLock};

use cairn_repository::{Backend, BackendError, DeleteOutcome, ObjectInfo, PutOutcome};
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

/// Options for a store (`object_store` config keys → values).
pub type StoreOptions = BTreeMap<String, String>;

/// Failure to set up a store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is not one we understand.
    #[error("unsupported blob store URL {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// An option is not valid for this kind of store.
    #[error("blob store option {key:?}: {reason}")]
    BadOption {
        /// The option name.
        key: String,
        /// Why.
        reason: String,
    },
    /// The store could not be built.
    #[error("cannot set up blob store {url}: {source}")]
    Build {
        /// The URL.
        url: String,
        /// Cause.
        #[source]
        source: object_store::Error,
    },
    /// The async runtime could not start.
    #[error("cannot start the I/O runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// A tokio runtime that can be dropped anywhere (even inside another runtime).
struct Rt(Option<tokio::runtime::Runtime>);

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Rt {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("runtime present until drop")
            .handle()
    }
}

#[derive(Clone)]
struct S3Delete {
    s3: Arc<AmazonS3>,
    endpoint: String,
    bucket: String,
    region: String,
    virtual_hosted: bool,
    allow_http: bool,
    prefix: String,
}

enum Kind {
    /// A local directory, created on the first put (so `open` of a missing one writes nothing).
    Local {
        root: PathBuf,
        store: OnceLock<Arc<dyn ObjectStore>>,
    },
    Remote {
        store: Arc<dyn ObjectStore>,
        s3: Option<S3Delete>,
    },
}

/// A blob store: a [`Backend`] over an `object_store` store.
pub struct BlobStore {
    kind: Kind,
    location: String,
    rt: Arc<Rt>,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobStore({})", self.location)
    }
}

fn split_bucket(url: &url::Url) -> (String, String) {
    let bucket = url.host_str().unwrap_or_default().to_string();
    let prefix = url.path().trim_matches('/').to_string();
    (bucket, prefix)
}

fn prefixed(store: Arc<dyn ObjectStore>, prefix: &str) -> Arc<dyn ObjectStore> {
    if prefix.is_empty() {
        store
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    }
}

impl BlobStore {
    /// Open a store by URL or local path with options. Nothing is written.
    pub fn open(url: &str, options: &StoreOptions) -> Result<BlobStore, Error> {
        let rt = Self::runtime()?;
        let bad = |reason: &str| Error::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        let (kind, location) = match scheme.as_deref() {
            None => Self::local(FsPath::new(url))?,
            Some("file") => {
                let u = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
                let p = u.to_file_path().map_err(|_| bad("not a local file path"))?;
                Self::local(&p)?
            }
            Some("s3") | Some("s3a") => {
                let u = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
                let (bucket, prefix) = split_bucket(&u);
                if bucket.is_empty() {
                    return Err(bad("no bucket"));
                }
                let mut b = AmazonS3Builder::from_env().with_bucket_name(&bucket);
                // Object Lock buckets require a checksum on every upload: with
                // `checksum_algorithm=sha256` object_store sends `x-amz-checksum-sha256`; also name
                // the algorithm in `x-amz-sdk-checksum-algorithm` as the AWS SDKs do (some
                // S3-compatible servers, moto among them, look for that header).
                if let Some(alg) = options
                    .get("checksum_algorithm")
                    .or(options.get("aws_checksum_algorithm"))
                {
                    let mut h = object_store::HeaderMap::new();
                    let v = object_store::HeaderValue::from_str(&alg.to_ascii_uppercase())
                        .map_err(|e| Error::BadOption {
                            key: "checksum_algorithm".into(),
                            reason: e.to_string(),
                        })?;
                    h.insert("x-amz-sdk-checksum-algorithm", v);
                    b = b.with_client_options(
                        object_store::ClientOptions::new().with_default_headers(h),
                    );
                }
                for (k, v) in options {
                    b = b.with_config(config_key::<AmazonS3ConfigKey>(k)?, v);
                }
                let cfg = |k: AmazonS3ConfigKey| b.get_config_value(&k);
                let truthy = |v: Option<String>| v.is_some_and(|v| v == "true" || v == "1");
                let region = cfg(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".into());
                let virtual_hosted = truthy(cfg(AmazonS3ConfigKey::VirtualHostedStyleRequest));
                let allow_http = truthy(cfg(AmazonS3ConfigKey::Client(
                    object_store::ClientConfigKey::AllowHttp,
                )));
                let endpoint = cfg(AmazonS3ConfigKey::Endpoint)
                    .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
                let s3 = Arc::new(b.build().map_err(|source| Error::Build {
                    url: url.to_string(),
                    source,
                })?);
                let del = S3Delete {
                    s3: s3.clone(),
                    endpoint: endpoint.trim_end_matches('/').to_string(),
                    bucket,
                    region,
                    virtual_hosted,
                    allow_http,
                    prefix: prefix.clone(),
                };
                (
                    Kind::Remote {
                        store: prefixed(s3, &prefix),
                        s3: Some(del),
                    },
                    url.to_string(),
                )
            }
            Some("az") | Some("azure") | Some("abfs") => {
                let u = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
                let (container, prefix) = split_bucket(&u);
                if container.is_empty() {
                    return Err(bad("no container"));
                }
                let mut b = MicrosoftAzureBuilder::from_env().with_container_name(&container);
                let mut opts = options.clone();
                // Azurite on a chosen port: object_store's emulator mode only reads the port from
                // AZURITE_BLOB_STORAGE_URL, so with an explicit endpoint, talk to it as a plain
                // account at that endpoint with the well-known development credentials.
                let emulator = opts
                    .get("use_emulator")
                    .or(opts.get("azure_storage_use_emulator"))
                    .is_some_and(|v| v == "true" || v == "1");
                if emulator {
                    if let Some(ep) = opts.get("endpoint").cloned() {
                        opts.remove("use_emulator");
                        opts.remove("azure_storage_use_emulator");
                        let account = opts
                            .entry("account_name".into())
                            .or_insert_with(|| "devstoreaccount1".into())
                            .clone();
                        opts.entry("access_key".into()).or_insert_with(|| {
                            "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==".into()
                        });
                        opts.insert(
                            "endpoint".into(),
                            format!("{}/{account}", ep.trim_end_matches('/')),
                        );
                        opts.insert("allow_http".into(), "true".into());
                    }
                }
                for (k, v) in &opts {
                    b = b.with_config(config_key::<AzureConfigKey>(k)?, v);
                }
                let az = b.build().map_err(|source| Error::Build {
                    url: url.to_string(),
                    source,
                })?;
                (
                    Kind::Remote {
                        store: prefixed(Arc::new(az), &prefix),
                        s3: None,
                    },
                    url.to_string(),
                )
            }
            Some("gs") | Some("gcs") => {
                let u = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
                let (bucket, prefix) = split_bucket(&u);
                if bucket.is_empty() {
                    return Err(bad("no bucket"));
                }
                let mut b = GoogleCloudStorageBuilder::from_env().with_bucket_name(&bucket);
                for (k, v) in options {
                    b = b.with_config(config_key::<GoogleConfigKey>(k)?, v);
                }
                let gs = b.build().map_err(|source| Error::Build {
                    url: url.to_string(),
                    source,
                })?;
                (
                    Kind::Remote {
                        store: prefixed(Arc::new(gs), &prefix),
                        s3: None,
                    },
                    url.to_string(),
                )
            }
            Some(other) => {
                return Err(bad(&format!(
                    "unknown scheme {other}:// (use a path, file://, s3://, az:// or gs://)"
                )))
            }
        };
        Ok(BlobStore { kind, location, rt })
    }

    /// A throwaway store in this process's memory: nothing persists and nothing touches disk.
    /// For scratch repositories, such as the live side of `cairn diff <snapshot> live`.
    pub fn in_memory() -> Result<BlobStore, Error> {
        Ok(BlobStore {
            kind: Kind::Remote {
                store: Arc::new(object_store::memory::InMemory::new()),
                s3: None,
            },
            location: "memory".to_string(),
            rt: Self::runtime()?,
        })
    }

    fn runtime() -> Result<Arc<Rt>, Error> {
        Ok(Arc::new(Rt(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("cairn-blobstore")
                .enable_all()
                .build()?,
        ))))
    }

    fn local(path: &FsPath) -> Result<(Kind, String), Error> {
        let root = std::path::absolute(path)?;
        let store = OnceLock::new();
        if root.is_dir() {
            let fs = LocalFileSystem::new_with_prefix(&root).map_err(|source| Error::Build {
                url: root.display().to_string(),
                source,
            })?;
            let _ = store.set(Arc::new(fs) as Arc<dyn ObjectStore>);
        }
        let location = root.display().to_string();
        Ok((Kind::Local { root, store }, location))
    }

    /// Run a future on this store's runtime and wait for it (callable from any thread,
    /// including async contexts of other runtimes).
    fn block<F, T>(&self, fut: F) -> T
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.rt.handle().block_on(fut);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt.handle().spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().expect("blob store task completes")
    }

    /// The store, or `None` for a local directory that does not exist yet.
    fn store(&self, create: bool) -> Result<Option<Arc<dyn ObjectStore>>, BackendError> {
        match &self.kind {
            Kind::Remote { store, .. } => Ok(Some(store.clone())),
            Kind::Local { root, store } => {
                if let Some(s) = store.get() {
                    return Ok(Some(s.clone()));
                }
                if !create {
                    if !root.exists() {
                        return Ok(None);
                    }
                    if !root.is_dir() {
                        return Err(BackendError::other(
                            "open",
                            &self.location,
                            "not a directory",
                        ));
                    }
                } else {
                    std::fs::create_dir_all(root)
                        .map_err(|e| BackendError::other("put", &self.location, e))?;
                }
                let fs = LocalFileSystem::new_with_prefix(root)
                    .map_err(|e| BackendError::other("open", &self.location, e))?;
                Ok(Some(store.get_or_init(|| Arc::new(fs)).clone()))
            }
        }
    }
}

fn obj_path(key: &str) -> Path {
    Path::from(key)
}

fn map_err(op: &'static str, key: &str, e: object_store::Error) -> BackendError {
    match e {
        object_store::Error::NotFound { .. } => BackendError::NotFound {
            key: key.to_string(),
        },
        e => BackendError::other(op, key, e),
    }
}

fn looks_refused(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    [
        "accessdenied",
        "access denied",
        "403",
        "409",
        "immutab",
        "locked",
        "retention",
        "legal hold",
        "forbidden",
    ]
    .iter()
    .any(|s| m.contains(s))
}

impl Backend for BlobStore {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn put(&self, key: &str, data: Vec<u8>) -> Result<PutOutcome, BackendError> {
        let store = self.store(true)?.expect("created");
        let path = obj_path(key);
        let k = key.to_string();
        self.block(async move {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            match store.put_opts(&path, PutPayload::from(data), opts).await {
                Ok(_) => Ok(PutOutcome::Created),
                Err(object_store::Error::AlreadyExists { .. })
                | Err(object_store::Error::Precondition { .. }) => Ok(PutOutcome::AlreadyExisted),
                Err(e) => Err(map_err("put", &k, e)),
            }
        })
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, BackendError> {
        let Some(store) = self.store(false)? else {
            return Err(BackendError::NotFound { key: key.into() });
        };
        let path = obj_path(key);
        let k = key.to_string();
        self.block(async move {
            let r = store.get(&path).await.map_err(|e| map_err("get", &k, e))?;
            let b = r.bytes().await.map_err(|e| map_err("get", &k, e))?;
            Ok(b.to_vec())
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        let Some(store) = self.store(false)? else {
            return Ok(Vec::new());
        };
        // object_store lists by whole path segments; list the directory part and filter.
        let dir = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let dir_path = if dir.is_empty() {
            None
        } else {
            Some(obj_path(dir))
        };
        let p = prefix.to_string();
        self.block(async move {
            let items: Vec<object_store::ObjectMeta> = store
                .list(dir_path.as_ref())
                .try_collect()
                .await
                .map_err(|e| BackendError::other("list", &p, e))?;
            Ok(items
                .into_iter()
                .map(|m| ObjectInfo {
                    key: m.location.to_string(),
                    size: Some(m.size),
                })
                .filter(|o| o.key.starts_with(&p))
                .collect())
        })
    }

    fn delete(&self, key: &str) -> Result<DeleteOutcome, BackendError> {
        let Some(store) = self.store(false)? else {
            return Ok(DeleteOutcome::NotFound);
        };
        let path = obj_path(key);
        let k = key.to_string();
        let s3 = match &self.kind {
            Kind::Remote { s3, .. } => s3.clone(),
            Kind::Local { .. } => None,
        };
        let remote = s3.is_some() || matches!(self.kind, Kind::Remote { .. });
        self.block(async move {
            if let Some(s3) = s3 {
                let meta = match store.head(&path).await {
                    Ok(m) => m,
                    Err(object_store::Error::NotFound { .. }) => {
                        return Ok(DeleteOutcome::NotFound)
                    }
                    Err(e) => return Err(map_err("delete", &k, e)),
                };
                if let Some(version) = meta.version {
                    return s3_delete_version(&s3, &k, &version).await;
                }
            }
            match store.delete(&path).await {
                Ok(()) => Ok(DeleteOutcome::Deleted),
                Err(object_store::Error::NotFound { .. }) => Ok(DeleteOutcome::NotFound),
                Err(e) if remote && looks_refused(&e.to_string()) => {
                    Ok(DeleteOutcome::Refused(e.to_string()))
                }
                Err(e) => Err(map_err("delete", &k, e)),
            }
        })
    }
}

/// DELETE one object version with a SigV4-signed request (object_store has no versioned delete).
async fn s3_delete_version(
    s3: &S3Delete,
    key: &str,
    version: &str,
) -> Result<DeleteOutcome, BackendError> {
    use object_store::aws::AwsAuthorizer;
    use object_store::client::{HttpConnector, HttpRequestBody, ReqwestConnector};
    let full = if s3.prefix.is_empty() {
        key.to_string()
    } else {
        format!("{}/{key}", s3.prefix)
    };
    let encoded: String = obj_path(&full).as_ref().to_string();
    let base = if s3.virtual_hosted {
        s3.endpoint.clone()
    } else {
        format!("{}/{}", s3.endpoint, s3.bucket)
    };
    let vq: String = url::form_urlencoded::byte_serialize(version.as_bytes()).collect();
    let uri = format!("{base}/{encoded}?versionId={vq}");
    let cred = s3
        .s3
        .credentials()
        .get_credential()
        .await
        .map_err(|e| BackendError::other("delete", key, e))?;
    let mut req = http::Request::builder()
        .method(http::Method::DELETE)
        .uri(&uri)
        .body(HttpRequestBody::empty())
        .map_err(|e| BackendError::other("delete", key, e))?;
    AwsAuthorizer::new(&cred, "s3", &s3.region).authorize(&mut req, None);
    let client = ReqwestConnector::default()
        .connect(&object_store::ClientOptions::new().with_allow_http(s3.allow_http))
        .map_err(|e| BackendError::other("delete", key, e))?;
    let resp = client
        .execute(req)
        .await
        .map_err(|e| BackendError::other("delete", key, e))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .bytes()
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    if status.is_success() {
        Ok(DeleteOutcome::Deleted)
    } else if status == http::StatusCode::NOT_FOUND {
        Ok(DeleteOutcome::NotFound)
    } else if status == http::StatusCode::FORBIDDEN || looks_refused(&body) {
        let code = xml_field(&body, "Code").unwrap_or_else(|| status.to_string());
        let msg = xml_field(&body, "Message").unwrap_or_default();
        Ok(DeleteOutcome::Refused(
            format!("{code}: {msg}").trim_end_matches(": ").to_string(),
        ))
    } else {
        Err(BackendError::other(
            "delete",
            key,
            format!("HTTP {status}: {body}"),
        ))
    }
}

fn xml_field(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let s = body.find(&open)? + open.len();
    let e = body[s..].find(&close)? + s;
    Some(body[s..e].to_string())
}

/// Open a store as a shareable backend.
pub fn open_backend(url: &str, options: &StoreOptions) -> Result<Arc<dyn Backend>, Error> {
    Ok(Arc::new(BlobStore::open(url, options)?))
}

/// A store option's name as the backend's config key; an unknown name is a `BadOption`.
fn config_key<K>(name: &str) -> Result<K, Error>
where
    K: std::str::FromStr<Err = object_store::Error>,
{
    name.parse()
        .map_err(|e: object_store::Error| Error::BadOption {
            key: name.to_string(),
            reason: e.to_string(),
        })
}
