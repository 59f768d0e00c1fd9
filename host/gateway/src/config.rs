//! Connection configuration: tenant, app, credential, cloud endpoints and the retry and
//! concurrency policies.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use ring::signature::RsaKeyPair;
use url::Url;

use crate::error::GatewayError;
use crate::secret::Secret;

/// The scope every supported cloud's Graph accepts for app-only tokens, and the default for
/// [`Cloud::Custom`] (the simulator accepts it).
pub const GLOBAL_GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// A Microsoft cloud: where tokens come from and where Graph lives.
#[derive(Clone, PartialEq, Eq)]
pub enum Cloud {
    /// `login.microsoftonline.com` + `graph.microsoft.com`.
    Global,
    /// US Government L4 (GCC High): `login.microsoftonline.us` + `graph.microsoft.us`.
    UsGov,
    /// US Government L5 (DoD): `login.microsoftonline.us` + `dod-graph.microsoft.us`.
    UsGovDod,
    /// China (operated by 21Vianet): `login.chinacloudapi.cn` + `microsoftgraph.chinacloudapi.cn`.
    China,
    /// Explicit endpoints, e.g. the Graph simulator. `scope` defaults to
    /// `https://graph.microsoft.com/.default`.
    Custom {
        login: Url,
        graph: Url,
        scope: Option<String>,
    },
}

impl Cloud {
    /// Explicit base URLs for the token endpoint host and Graph (both `http(s)://host[:port][/path]`).
    pub fn custom(login: &str, graph: &str) -> Result<Cloud, GatewayError> {
        Ok(Cloud::Custom {
            login: parse_base(login, "login")?,
            graph: parse_base(graph, "Graph")?,
            scope: None,
        })
    }

    /// The authority base, e.g. `https://login.microsoftonline.com/`.
    pub fn login_url(&self) -> Url {
        let s = match self {
            Cloud::Global => "https://login.microsoftonline.com/",
            Cloud::UsGov | Cloud::UsGovDod => "https://login.microsoftonline.us/",
            Cloud::China => "https://login.chinacloudapi.cn/",
            Cloud::Custom { login, .. } => return login.clone(),
        };
        Url::parse(s).expect("static URL")
    }

    /// The Graph root (without a version segment), e.g. `https://graph.microsoft.com/`.
    pub fn graph_url(&self) -> Url {
        let s = match self {
            Cloud::Global => "https://graph.microsoft.com/",
            Cloud::UsGov => "https://graph.microsoft.us/",
            Cloud::UsGovDod => "https://dod-graph.microsoft.us/",
            Cloud::China => "https://microsoftgraph.chinacloudapi.cn/",
            Cloud::Custom { graph, .. } => return graph.clone(),
        };
        Url::parse(s).expect("static URL")
    }

    /// The OAuth scope requested for Graph: `{graph}/.default`.
    pub fn scope(&self) -> String {
        match self {
            Cloud::Custom { scope, .. } => scope
                .clone()
                .unwrap_or_else(|| GLOBAL_GRAPH_SCOPE.to_string()),
            other => format!(
                "{}/.default",
                other.graph_url().as_str().trim_end_matches('/')
            ),
        }
    }
}

impl fmt::Debug for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cloud::Global => f.write_str("Global"),
            Cloud::UsGov => f.write_str("UsGov"),
            Cloud::UsGovDod => f.write_str("UsGovDod"),
            Cloud::China => f.write_str("China"),
            Cloud::Custom {
                login,
                graph,
                scope,
            } => f
                .debug_struct("Custom")
                .field("login", &login.as_str())
                .field("graph", &graph.as_str())
                .field("scope", scope)
                .finish(),
        }
    }
}

impl std::str::FromStr for Cloud {
    type Err = GatewayError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "global" | "public" | "azure" | "azurecloud" => Ok(Cloud::Global),
            "usgov" | "us-gov" | "gcchigh" | "gcc-high" | "azureusgovernment" => Ok(Cloud::UsGov),
            "usgov-dod" | "dod" => Ok(Cloud::UsGovDod),
            "china" | "azurechinacloud" => Ok(Cloud::China),
            other => Err(GatewayError::Config(format!(
                "unknown cloud `{other}` (global, usgov, usgov-dod, china; or set explicit \
                 login and Graph URLs)"
            ))),
        }
    }
}

fn parse_base(s: &str, what: &str) -> Result<Url, GatewayError> {
    let mut url = Url::parse(s)
        .map_err(|e| GatewayError::Config(format!("the {what} URL `{s}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(GatewayError::Config(format!(
            "the {what} URL `{s}` must be http(s)://host[:port][/path]"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(GatewayError::Config(format!(
            "the {what} URL must not contain user information"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(GatewayError::Config(format!(
            "the {what} URL `{s}` must not have a query or fragment"
        )));
    }
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(url)
}

/// How the app proves its identity to the token endpoint.
#[derive(Clone, Debug)]
pub enum Credential {
    /// A client secret (the secret's value, not its id).
    Secret(Secret),
    /// A certificate whose public part is registered on the app; the gateway signs a client
    /// assertion with its private key.
    Certificate(CertificateCredential),
}

impl Credential {
    pub fn secret(value: impl Into<Secret>) -> Credential {
        Credential::Secret(value.into())
    }
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::Secret(_) => "client secret",
            Credential::Certificate(_) => "certificate",
        }
    }
}

/// Signature algorithm of the client assertion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AssertionAlgorithm {
    /// RSA-PSS with SHA-256 and an `x5t#S256` header (the current Microsoft documentation).
    #[default]
    Ps256,
    /// RSA PKCS#1 v1.5 with SHA-256 and an `x5t` (SHA-1) header, for authorities that predate
    /// PS256 support.
    Rs256,
}

/// A certificate and its RSA private key, parsed and checked.
#[derive(Clone)]
pub struct CertificateCredential {
    pub(crate) key: Arc<RsaKeyPair>,
    pub(crate) cert_der: Arc<Vec<u8>>,
    pub algorithm: AssertionAlgorithm,
}

impl CertificateCredential {
    /// From PEM text: the certificate (the first `CERTIFICATE` block is the app's) and an
    /// unencrypted RSA private key (`PRIVATE KEY` PKCS#8 or `RSA PRIVATE KEY` PKCS#1). Both may
    /// be in one file; pass it twice.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, GatewayError> {
        let cert_der = pem_block(cert_pem, &["CERTIFICATE"]).ok_or_else(|| {
            GatewayError::Config("the certificate PEM has no `CERTIFICATE` block".into())
        })??;
        let key = parse_private_key(key_pem)?;
        // The certificate's SubjectPublicKeyInfo holds the RSAPublicKey DER that ring reports.
        let public = key.public().as_ref();
        if !cert_der.windows(public.len()).any(|w| w == public) {
            return Err(GatewayError::Config(
                "the private key does not belong to the certificate (their public keys differ)"
                    .into(),
            ));
        }
        Ok(CertificateCredential {
            key: Arc::new(key),
            cert_der: Arc::new(cert_der),
            algorithm: AssertionAlgorithm::Ps256,
        })
    }

    /// Reads the certificate and key from files (they may be the same file).
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, GatewayError> {
        let read = |p: &Path, what: &str| {
            std::fs::read(p).map_err(|e| {
                GatewayError::Config(format!("cannot read the {what} {}: {e}", p.display()))
            })
        };
        let c = read(cert, "certificate")?;
        let k = read(key, "private key")?;
        Self::from_pem(&c, &k).map_err(|e| match e {
            GatewayError::Config(m) => GatewayError::Config(format!(
                "{m} (certificate {}, key {})",
                cert.display(),
                key.display()
            )),
            other => other,
        })
    }

    pub fn with_algorithm(mut self, algorithm: AssertionAlgorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// The certificate (DER).
    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Base64url SHA-256 thumbprint of the certificate (the `x5t#S256` header).
    pub fn thumbprint_sha256(&self) -> String {
        let d = ring::digest::digest(&ring::digest::SHA256, &self.cert_der);
        crate::token::b64url(d.as_ref())
    }

    /// Hex SHA-1 thumbprint, as the Entra portal shows it.
    pub fn thumbprint_sha1_hex(&self) -> String {
        let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &self.cert_der);
        d.as_ref().iter().map(|b| format!("{b:02X}")).collect()
    }
}

impl fmt::Debug for CertificateCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateCredential")
            .field("thumbprint", &self.thumbprint_sha1_hex())
            .field("algorithm", &self.algorithm)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

/// Finds the first PEM block with one of `labels`; `None` when there is none.
fn pem_block(pem: &[u8], labels: &[&str]) -> Option<Result<Vec<u8>, GatewayError>> {
    let text = String::from_utf8_lossy(pem);
    for label in labels {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        if let Some(start) = text.find(&begin) {
            let rest = &text[start + begin.len()..];
            let Some(stop) = rest.find(&end) else {
                return Some(Err(GatewayError::Config(format!(
                    "the PEM block `{label}` is not terminated"
                ))));
            };
            let b64: String = rest[..stop]
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            return Some(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| {
                        GatewayError::Config(format!("the PEM block `{label}` is not valid base64"))
                    }),
            );
        }
    }
    None
}

fn parse_private_key(pem: &[u8]) -> Result<RsaKeyPair, GatewayError> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
    {
        return Err(GatewayError::Config(
            "the private key is encrypted; store it unencrypted with restricted file \
             permissions (e.g. `openssl pkcs8 -in key.pem -out plain.pem`)"
                .into(),
        ));
    }
    if text.contains("-----BEGIN EC PRIVATE KEY-----") {
        return Err(GatewayError::Config(
            "the private key is an EC key; Entra client assertions need an RSA key".into(),
        ));
    }
    let bad = |e: ring::error::KeyRejected| {
        GatewayError::Config(format!(
            "the private key is not a usable RSA key ({e}); it must be an unencrypted RSA key \
             of 2048 bits or more"
        ))
    };
    if let Some(der) = pem_block(pem, &["PRIVATE KEY"]) {
        return RsaKeyPair::from_pkcs8(&der?).map_err(bad);
    }
    if let Some(der) = pem_block(pem, &["RSA PRIVATE KEY"]) {
        return RsaKeyPair::from_der(&der?).map_err(bad);
    }
    Err(GatewayError::Config(
        "no private key found: expected a `PRIVATE KEY` (PKCS#8) or `RSA PRIVATE KEY` (PKCS#1) \
         PEM block"
            .into(),
    ))
}

/// When and how long to retry.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included (at least 1).
    pub max_attempts: u32,
    /// Total time one call may spend sleeping between attempts (Retry-After and backoff). A
    /// wait that would exceed what is left fails the call at once instead of sleeping.
    pub max_total_wait: Duration,
    /// First backoff step when the server gives no `Retry-After`; doubles per attempt.
    pub base_delay: Duration,
    /// Largest backoff step (a server's `Retry-After` is honoured even when longer).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            max_total_wait: Duration::from_secs(600),
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// Concurrency limits: connection-wide (adaptive, AIMD) and per mailbox.
#[derive(Clone, Debug, PartialEq)]
pub struct ConcurrencyConfig {
    /// Starting connection-wide limit.
    pub initial: u32,
    /// The limit never shrinks below this.
    pub min: u32,
    /// The limit never grows above this.
    pub max: u32,
    /// Multiplicative decrease on a throttled response (0 < factor < 1).
    pub decrease_factor: f64,
    /// Concurrent requests per Outlook mailbox (Outlook allows 4 per app per mailbox).
    pub per_mailbox: u32,
}

impl Default for ConcurrencyConfig {
    fn default() -> Self {
        ConcurrencyConfig {
            initial: 16,
            min: 1,
            max: 64,
            decrease_factor: 0.5,
            per_mailbox: 4,
        }
    }
}

/// Pacing of the identity resource-unit budget (see the `pacer` module): low-priority requests
/// (`$batch` calls of identity reads) start only while the budget's estimated use is under
/// `low_priority_below`, so the sequential page chains always find tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct PacingConfig {
    /// Pace low-priority requests (`false`: every request is served as normal priority and no
    /// `x-ms-throttle-priority` header is added).
    pub enabled: bool,
    /// Fraction of the identity budget above which low-priority requests wait (0.8 < x ≤ 1;
    /// Graph reports the use only above 0.8). The rest is the reserve for page chains.
    pub low_priority_below: f64,
    /// Time in which the budget refills completely (Graph's identity limits are per 10 s).
    pub window: Duration,
    /// Time between two Conditional Access requests (`/identity/conditionalAccess/…`: policies,
    /// named locations and the rest of that tree) on this connection once its burst is spent.
    /// Graph allows 1 request per second per tenant there and its 429s carry no `Retry-After`,
    /// so bouncing off that limit costs exponential back-off; the default keeps 10 % under it.
    /// `Duration::ZERO` turns the spacing off.
    pub conditional_access_interval: Duration,
    /// Conditional Access requests that may go at once before the spacing applies (Graph does
    /// not document a burst; the first 429 there empties the gate, so a smaller real allowance
    /// costs one bounce, not one per request).
    pub conditional_access_burst: u32,
}

impl Default for PacingConfig {
    fn default() -> Self {
        PacingConfig {
            enabled: true,
            low_priority_below: 0.85,
            window: Duration::from_secs(10),
            conditional_access_interval: Duration::from_millis(1100),
            conditional_access_burst: 4,
        }
    }
}

/// Everything the gateway needs to reach one tenant as one app.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// The connection's name (logs and metrics).
    pub name: String,
    /// Tenant id (GUID) or a verified domain (`contoso.onmicrosoft.com`).
    pub tenant: String,
    /// The app registration's application (client) id.
    pub client_id: String,
    pub credential: Credential,
    pub cloud: Cloud,
    pub retry: RetryPolicy,
    pub concurrency: ConcurrencyConfig,
    pub pacing: PacingConfig,
    /// Read page chains one page ahead: when an identity `GET` is answered with an
    /// `@odata.nextLink`, request that link at once (see the `prefetch` module).
    pub read_ahead: bool,
    /// Per attempt, for buffered requests (downloads use `read_timeout` between chunks).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Longest silence while reading a response body.
    pub read_timeout: Duration,
    pub user_agent: String,
}

impl GatewayConfig {
    pub fn new(
        tenant: impl Into<String>,
        client_id: impl Into<String>,
        credential: Credential,
    ) -> Self {
        GatewayConfig {
            name: "default".into(),
            tenant: tenant.into(),
            client_id: client_id.into(),
            credential,
            cloud: Cloud::Global,
            retry: RetryPolicy::default(),
            concurrency: ConcurrencyConfig::default(),
            pacing: PacingConfig::default(),
            read_ahead: true,
            request_timeout: Duration::from_secs(100),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(120),
            user_agent: format!("cairn/{}", env!("CARGO_PKG_VERSION")),
        }
    }

    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
    pub fn with_cloud(mut self, cloud: Cloud) -> Self {
        self.cloud = cloud;
        self
    }
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
    pub fn with_concurrency(mut self, concurrency: ConcurrencyConfig) -> Self {
        self.concurrency = concurrency;
        self
    }
    pub fn with_pacing(mut self, pacing: PacingConfig) -> Self {
        self.pacing = pacing;
        self
    }
    pub fn with_read_ahead(mut self, read_ahead: bool) -> Self {
        self.read_ahead = read_ahead;
        self
    }

    /// Checks the settings; every problem is named.
    pub fn validate(&self) -> Result<(), GatewayError> {
        let mut problems = vec![];
        let t = self.tenant.trim();
        if t.is_empty() {
            problems.push("the tenant is empty (a tenant id GUID or a verified domain)".into());
        } else if !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            problems.push(format!(
                "the tenant `{t}` is neither a GUID nor a domain name"
            ));
        } else if matches!(
            t.to_ascii_lowercase().as_str(),
            "common" | "organizations" | "consumers"
        ) {
            problems.push(format!(
                "the tenant `{t}` is a multi-tenant alias; app-only tokens need the tenant's id or domain"
            ));
        }
        if self.client_id.trim().is_empty() {
            problems.push("the client id is empty".to_string());
        }
        if let Credential::Secret(s) = &self.credential {
            if s.is_empty() {
                problems.push("the client secret is empty".to_string());
            }
        }
        let r = &self.retry;
        if r.max_attempts == 0 {
            problems.push("retry.max_attempts must be at least 1".to_string());
        }
        let c = &self.concurrency;
        if c.min == 0 || c.min > c.max || c.initial < c.min || c.initial > c.max {
            problems.push(format!(
                "concurrency limits must satisfy 1 <= min ({}) <= initial ({}) <= max ({})",
                c.min, c.initial, c.max
            ));
        }
        if !(c.decrease_factor > 0.0 && c.decrease_factor < 1.0) {
            problems.push(format!(
                "concurrency.decrease_factor must be between 0 and 1 (got {})",
                c.decrease_factor
            ));
        }
        if c.per_mailbox == 0 {
            problems.push("concurrency.per_mailbox must be at least 1".to_string());
        }
        let p = &self.pacing;
        if !(p.low_priority_below > 0.8 && p.low_priority_below <= 1.0) {
            problems.push(format!(
                "pacing.low_priority_below must be above 0.8 (Graph reports the budget's use \
                 only above 80 %) and at most 1 (got {})",
                p.low_priority_below
            ));
        }
        if p.window.is_zero() {
            problems.push("pacing.window must be longer than zero".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(GatewayError::Config(problems.join("; ")))
        }
    }

    /// `{login}/{tenant}/oauth2/v2.0/token`
    pub fn token_url(&self) -> Url {
        self.cloud
            .login_url()
            .join(&format!("{}/oauth2/v2.0/token", self.tenant.trim()))
            .expect("validated tenant")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clouds() {
        assert_eq!(
            Cloud::Global.scope(),
            "https://graph.microsoft.com/.default"
        );
        assert_eq!(Cloud::UsGov.scope(), "https://graph.microsoft.us/.default");
        assert_eq!(
            Cloud::China.graph_url().as_str(),
            "https://microsoftgraph.chinacloudapi.cn/"
        );
        assert_eq!(
            Cloud::China.login_url().as_str(),
            "https://login.chinacloudapi.cn/"
        );
        assert_eq!(
            Cloud::UsGov.login_url().as_str(),
            "https://login.microsoftonline.us/"
        );
        let c = Cloud::custom("http://127.0.0.1:9/", "http://127.0.0.1:9/graph").unwrap();
        assert_eq!(c.graph_url().as_str(), "http://127.0.0.1:9/graph/");
        assert_eq!(c.scope(), GLOBAL_GRAPH_SCOPE);
        assert!(Cloud::custom("ftp://x", "http://y").is_err());
        assert_eq!("GCCHigh".parse::<Cloud>().unwrap(), Cloud::UsGov);
        assert!("mars".parse::<Cloud>().is_err());
    }

    #[test]
    fn token_url_and_validation() {
        let cfg = GatewayConfig::new(
            "contoso.onmicrosoft.com",
            "abc",
            Credential::secret("s3cr3t-value"),
        )
        .with_cloud(Cloud::UsGov);
        assert_eq!(
            cfg.token_url().as_str(),
            "https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        cfg.validate().unwrap();
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("s3cr3t-value"), "{dbg}");
        let bad = GatewayConfig::new("common", "", Credential::secret(""));
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("multi-tenant alias"), "{e}");
        assert!(e.contains("client id is empty"), "{e}");
        assert!(e.contains("client secret is empty"), "{e}");
        let paced = |below: f64, window: Duration| {
            GatewayConfig::new("contoso.com", "abc", Credential::secret("s"))
                .with_pacing(PacingConfig {
                    low_priority_below: below,
                    window,
                    ..PacingConfig::default()
                })
                .validate()
        };
        paced(0.85, Duration::from_secs(10)).unwrap();
        paced(1.0, Duration::from_secs(10)).unwrap();
        let e = paced(0.5, Duration::from_secs(10)).unwrap_err().to_string();
        assert!(e.contains("low_priority_below must be above 0.8"), "{e}");
        let e = paced(0.9, Duration::ZERO).unwrap_err().to_string();
        assert!(e.contains("pacing.window"), "{e}");
    }
}
