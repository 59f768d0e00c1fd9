//! Client-credentials tokens (secret or certificate assertion), cached, refreshed early and
//! single-flight.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rand::RngCore;
use serde_json::{json, Value};
use url::Url;

use crate::config::{
    AssertionAlgorithm, CertificateCredential, Credential, GatewayConfig, RetryPolicy,
};
use crate::error::GatewayError;
use crate::retry::{self, Budget};
use crate::secret::{scrub, Secret};

pub(crate) fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A random (version 4) GUID.
pub(crate) fn guid() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[derive(Clone)]
struct Cached {
    token: Arc<Secret>,
    /// From here on one caller refreshes while the others keep using this token.
    refresh_at: Instant,
    /// Not used after this.
    usable_until: Instant,
}

pub(crate) struct TokenProvider {
    http: reqwest::Client,
    token_url: Url,
    scope: String,
    client_id: String,
    tenant: String,
    credential: Credential,
    retry: RetryPolicy,
    timeout: Duration,
    cache: Mutex<Option<Cached>>,
    refresh: tokio::sync::Mutex<()>,
    refused: Mutex<Option<(Instant, GatewayError)>>,
    requests: AtomicU64,
}

/// How long a refusal by the token endpoint is remembered, so that many tasks starting at once
/// with a wrong secret do not each ask again.
const REFUSAL_MEMORY: Duration = Duration::from_secs(5);

impl TokenProvider {
    pub fn new(http: reqwest::Client, cfg: &GatewayConfig) -> Self {
        TokenProvider {
            http,
            token_url: cfg.token_url(),
            scope: cfg.cloud.scope(),
            client_id: cfg.client_id.trim().to_string(),
            tenant: cfg.tenant.trim().to_string(),
            credential: cfg.credential.clone(),
            retry: cfg.retry.clone(),
            timeout: cfg.request_timeout,
            cache: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
            refused: Mutex::new(None),
            requests: AtomicU64::new(0),
        }
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }

    fn cached(&self) -> Option<Cached> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A valid token: the cached one, or a new one (one request at a time; callers arriving
    /// while a refresh runs wait for it, or keep using the old token while it is still good).
    pub async fn get(&self) -> Result<Arc<Secret>, GatewayError> {
        let now = Instant::now();
        let current = self.cached();
        if let Some(c) = &current {
            if now < c.refresh_at {
                return Ok(c.token.clone());
            }
        }
        let _guard = match self.refresh.try_lock() {
            Ok(g) => g,
            Err(_) => {
                if let Some(c) = &current {
                    if now < c.usable_until {
                        return Ok(c.token.clone());
                    }
                }
                self.refresh.lock().await
            }
        };
        // Someone may have refreshed while we waited.
        if let Some(c) = self.cached() {
            if Instant::now() < c.refresh_at {
                return Ok(c.token.clone());
            }
        }
        if let Some((at, e)) = self
            .refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            if at.elapsed() < REFUSAL_MEMORY {
                return Err(e);
            }
        }
        match self.fetch().await {
            Ok(c) => {
                let t = c.token.clone();
                *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = Some(c);
                Ok(t)
            }
            Err((e, refusal)) => {
                if refusal {
                    *self.refused.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some((Instant::now(), e.clone()));
                }
                Err(e)
            }
        }
    }

    /// Graph refused `token` (401): forget it unless it was already replaced.
    pub fn invalidate(&self, token: &Secret) {
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if c.as_ref().is_some_and(|c| *c.token == *token) {
            *c = None;
        }
    }

    fn where_(&self) -> String {
        format!(
            "{}://{}",
            self.token_url.scheme(),
            self.token_url.host_str().unwrap_or("")
        ) + &self
            .token_url
            .port()
            .map(|p| format!(":{p}"))
            .unwrap_or_default()
    }

    /// One token request, with retries on 429/5xx/transport failures. The `bool` of an error
    /// says whether the endpoint refused (as opposed to being unreachable).
    async fn fetch(&self) -> Result<Cached, (GatewayError, bool)> {
        let mut budget = Budget::new(self.retry.clone());
        loop {
            budget.start_attempt();
            let mut form: Vec<(&str, String)> = vec![
                ("client_id", self.client_id.clone()),
                ("scope", self.scope.clone()),
                ("grant_type", "client_credentials".into()),
            ];
            let secret_text: Option<String> = match &self.credential {
                Credential::Secret(s) => {
                    form.push(("client_secret", s.expose().to_string()));
                    Some(s.expose().to_string())
                }
                Credential::Certificate(c) => {
                    let jwt = client_assertion(c, &self.client_id, self.token_url.as_str())
                        .map_err(|e| (e, true))?;
                    form.push((
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                    ));
                    form.push(("client_assertion", jwt.clone()));
                    Some(jwt)
                }
            };
            let started = Instant::now();
            self.requests.fetch_add(1, Relaxed);
            let sent = self
                .http
                .post(self.token_url.clone())
                .header("Accept", "application/json")
                .form(&form)
                .timeout(self.timeout)
                .send()
                .await;
            drop(form);
            let (status, retry_after, body) = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let ra = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(retry::parse_retry_after);
                    match resp.bytes().await {
                        Ok(b) => (status, ra, b.to_vec()),
                        Err(e) => {
                            let msg = format!("reading the response failed: {}", e.without_url());
                            self.transient(&mut budget, None, msg).await?;
                            continue;
                        }
                    }
                }
                Err(e) => {
                    let msg = format!("the request failed: {}", describe(&e.without_url()));
                    self.transient(&mut budget, None, msg).await?;
                    continue;
                }
            };
            if status == 200 {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let token = v.get("access_token").and_then(Value::as_str);
                let expires_in = v.get("expires_in").and_then(|e| {
                    e.as_f64()
                        .or_else(|| e.as_str().and_then(|s| s.trim().parse().ok()))
                });
                let (Some(token), Some(expires_in)) = (token, expires_in) else {
                    return Err((
                        GatewayError::Auth(format!(
                            "the token endpoint at {} answered 200 without an access_token and \
                             expires_in",
                            self.where_()
                        )),
                        true,
                    ));
                };
                let lifetime = Duration::from_secs_f64(expires_in.clamp(1.0, 86_400.0));
                // Refresh early: a fifth of the lifetime, at most five minutes, before expiry.
                let margin = (lifetime / 5).min(Duration::from_secs(300));
                let slack = (lifetime / 10).min(Duration::from_secs(30));
                tracing::debug!(
                    target: "cairn_gateway",
                    lifetime_s = lifetime.as_secs_f64(),
                    "access token issued"
                );
                return Ok(Cached {
                    token: Arc::new(Secret::new(token)),
                    refresh_at: started + lifetime - margin,
                    usable_until: started + lifetime - slack,
                });
            }
            if status == 429 || status >= 500 {
                let msg = format!("HTTP {status}{}", oauth_summary(&body));
                self.transient(&mut budget, retry_after, msg).await?;
                continue;
            }
            let message = self.refusal_message(status, &body);
            let message = match &secret_text {
                Some(s) => scrub(&message, s),
                None => message,
            };
            return Err((GatewayError::Auth(message), true));
        }
    }

    async fn transient(
        &self,
        budget: &mut Budget,
        retry_after: Option<Duration>,
        what: String,
    ) -> Result<(), (GatewayError, bool)> {
        match budget.next_wait(retry_after) {
            Ok(wait) => {
                tracing::info!(target: "cairn_gateway", "token endpoint: {what}; retrying in {wait:.1?}");
                tokio::time::sleep(wait).await;
                Ok(())
            }
            Err(why) => Err((
                GatewayError::Auth(format!(
                    "could not get a token from {} for client id {} in tenant {}: gave up after {} \
                     attempt(s) ({why}); last outcome: {what}",
                    self.where_(),
                    self.client_id,
                    self.tenant,
                    budget.attempts
                )),
                false,
            )),
        }
    }

    /// "the token endpoint refused the client secret (AADSTS7000215 invalid_client): …"
    fn refusal_message(&self, status: u16, body: &[u8]) -> String {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let error = v.get("error").and_then(Value::as_str).unwrap_or("");
        let code = v
            .get("error_codes")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_u64);
        let desc = v
            .get("error_description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("")
            .trim();
        // Drop the "AADSTS123: " prefix; the code is shown separately.
        let desc = match desc.split_once(": ") {
            Some((p, rest)) if p.starts_with("AADSTS") => rest,
            _ => desc,
        };
        let cred = self.credential.kind();
        let (what, hint) = match code {
            Some(7000215) => (
                format!("refused the {cred}"),
                "use the secret's value (not its id) and check it has not been deleted",
            ),
            Some(7000222) => (
                format!("refused the {cred}"),
                "the secret has expired; create a new one on the app registration",
            ),
            Some(700027) | Some(700023) | Some(700024) | Some(700021) | Some(5002738) => (
                "refused the certificate assertion".to_string(),
                "check that this certificate is uploaded to the app registration and that the \
                 machine's clock is right",
            ),
            Some(700016) => (
                "does not know the application".to_string(),
                "check the client id, the tenant, and that the app is registered in (or \
                 consented to) this tenant",
            ),
            Some(90002) | Some(900023) => (
                "does not know the tenant".to_string(),
                "check the tenant id or domain and the cloud (global, usgov, china)",
            ),
            Some(70011) => (
                "refused the scope".to_string(),
                "the Graph endpoint and the token endpoint belong to different clouds",
            ),
            Some(7000218) => (
                "received no credential".to_string(),
                "configure a client secret or a certificate",
            ),
            _ => (format!("refused the request (HTTP {status})"), ""),
        };
        let code_s = match (code, error.is_empty()) {
            (Some(c), false) => format!(" (AADSTS{c} {error})"),
            (Some(c), true) => format!(" (AADSTS{c})"),
            (None, false) => format!(" ({error})"),
            (None, true) => String::new(),
        };
        let mut msg = format!(
            "the token endpoint at {} {what} for client id {} in tenant {}{code_s}",
            self.where_(),
            self.client_id,
            self.tenant
        );
        if !desc.is_empty() {
            msg.push_str(": ");
            msg.push_str(desc);
        }
        if !hint.is_empty() {
            msg.push_str(" — ");
            msg.push_str(hint);
        }
        msg
    }
}

fn oauth_summary(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match v.get("error").and_then(Value::as_str) {
        Some(e) => format!(" ({e})"),
        None => String::new(),
    }
}

/// A reqwest error in words, with its causes (the URL already removed).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

/// A client-assertion JWT (header `alg`, `typ`, `x5t#S256` or `x5t`; claims aud, iss, sub,
/// jti, nbf, iat, exp = nbf + 10 minutes), signed with the certificate's key.
pub(crate) fn client_assertion(
    cert: &CertificateCredential,
    client_id: &str,
    audience: &str,
) -> Result<String, GatewayError> {
    let header = match cert.algorithm {
        AssertionAlgorithm::Ps256 => json!({
            "alg": "PS256", "typ": "JWT", "x5t#S256": cert.thumbprint_sha256()
        }),
        AssertionAlgorithm::Rs256 => {
            let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert.cert_der);
            json!({"alg": "RS256", "typ": "JWT", "x5t": b64url(d.as_ref())})
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let claims = json!({
        "aud": audience,
        "iss": client_id,
        "sub": client_id,
        "jti": guid(),
        "nbf": now,
        "iat": now,
        "exp": now + 600,
    });
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let alg: &'static dyn ring::signature::RsaEncoding = match cert.algorithm {
        AssertionAlgorithm::Ps256 => &ring::signature::RSA_PSS_SHA256,
        AssertionAlgorithm::Rs256 => &ring::signature::RSA_PKCS1_SHA256,
    };
    let mut sig = vec![0u8; cert.key.public().modulus_len()];
    cert.key
        .sign(
            alg,
            &ring::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut sig,
        )
        .map_err(|_| GatewayError::Auth("signing the client assertion failed".into()))?;
    Ok(format!("{input}.{}", b64url(&sig)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_v4() {
        let g = guid();
        assert_eq!(g.len(), 36);
        assert_eq!(&g[14..15], "4");
        assert_ne!(guid(), g);
    }

    #[test]
    fn assertion_shape_and_signature() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let cert = CertificateCredential::from_files(
            &dir.join("test-app.cert.pem"),
            &dir.join("test-app.key.pem"),
        )
        .unwrap();
        let aud = "https://login.microsoftonline.com/t/oauth2/v2.0/token";
        let jwt = client_assertion(&cert, "client-1", aud).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let dec = |s: &str| -> Value {
            serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(s)
                    .unwrap(),
            )
            .unwrap()
        };
        let h = dec(parts[0]);
        assert_eq!(h["alg"], "PS256");
        assert_eq!(h["x5t#S256"], cert.thumbprint_sha256());
        let c = dec(parts[1]);
        assert_eq!(c["aud"], aud);
        assert_eq!(c["iss"], "client-1");
        assert_eq!(c["sub"], "client-1");
        assert_eq!(c["exp"].as_i64().unwrap() - c["nbf"].as_i64().unwrap(), 600);
        assert!(c["jti"].as_str().unwrap().len() == 36);
        // The signature verifies with the certificate's public key.
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[2])
            .unwrap();
        let pk = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PSS_2048_8192_SHA256,
            cert.key.public().as_ref().to_vec(),
        );
        pk.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .unwrap();
    }

    #[test]
    fn key_formats_and_mismatch() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let cert = std::fs::read(dir.join("test-app.cert.pem")).unwrap();
        let pkcs1 = std::fs::read(dir.join("test-app.key.pkcs1.pem")).unwrap();
        CertificateCredential::from_pem(&cert, &pkcs1).unwrap();
        // A combined file works.
        let mut both = cert.clone();
        both.extend_from_slice(&pkcs1);
        CertificateCredential::from_pem(&both, &both).unwrap();
        let other = std::fs::read(dir.join("other.key.pem")).unwrap();
        let e = CertificateCredential::from_pem(&cert, &other)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not belong to the certificate"), "{e}");
        let e = CertificateCredential::from_pem(b"nothing", &pkcs1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no `CERTIFICATE` block"), "{e}");
        let e = CertificateCredential::from_pem(
            &cert,
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("encrypted"), "{e}");
        // Debug shows the thumbprint, never key material.
        let c = CertificateCredential::from_pem(&cert, &pkcs1).unwrap();
        let dbg = format!("{c:?}");
        assert!(
            dbg.contains("[redacted]") && dbg.contains(&c.thumbprint_sha1_hex()),
            "{dbg}"
        );
    }
}
