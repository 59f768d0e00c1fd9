//! Configuration of a simulated tenant.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Tenant size profile used by the generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Only the signed-in admin, the default app and the built-in objects.
    Empty,
    /// ~50 users, a realistic Conditional Access set, a few mailboxes and drives.
    #[default]
    Small,
    /// 5,000 users.
    Medium,
    /// 100,000 users, 20,000 groups (skewed, incl. 10,000+ member groups), 5,000 apps,
    /// 6,000 service principals, 200 CA policies, 2,000 role assignments, 500 AUs.
    Large,
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "empty" => Ok(Profile::Empty),
            "small" => Ok(Profile::Small),
            "medium" => Ok(Profile::Medium),
            "large" => Ok(Profile::Large),
            other => Err(format!(
                "unknown profile '{other}' (empty, small, medium, large)"
            )),
        }
    }
}

/// Response latency: `base` per request plus `per_object` for every object returned.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct LatencyModel {
    #[serde(with = "duration_ms")]
    pub base: Duration,
    #[serde(with = "duration_ms")]
    pub per_object: Duration,
}

impl LatencyModel {
    /// Roughly what Graph shows for directory reads: ~80 ms per request plus ~0.6 ms per object.
    pub fn graph_like() -> Self {
        LatencyModel {
            base: Duration::from_millis(80),
            per_object: Duration::from_micros(600),
        }
    }
    pub fn for_objects(&self, n: usize) -> Duration {
        self.base + self.per_object * n as u32
    }
}

/// Throttling settings (§4). Limits default to the documented values for the tenant's size.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ThrottleConfig {
    /// Resource units per 10 s per app+tenant; `None` = the documented tier (S 3,500 / M 5,000 / L 8,000).
    pub ru_per_10s: Option<u32>,
    /// Writes per 150 s per app+tenant (documented: 3,000).
    pub writes_per_150s: u32,
    /// Writes per 5 min per tenant (documented: 18,000).
    pub tenant_writes_per_5min: u32,
    /// Conditional Access requests per second per tenant; their 429 carries no `Retry-After`.
    pub ca_requests_per_second: f64,
    /// Outlook: requests per 10 minutes per app per mailbox.
    pub mailbox_requests_per_10min: u32,
    /// Outlook: concurrent requests per app per mailbox.
    pub mailbox_concurrency: u32,
    /// Outlook: bytes uploaded (request bodies of writes: MIME imports, attachments, upload
    /// session `PUT`s) per 5 minutes per app per mailbox (documented: 150 MB).
    #[serde(default = "default_mailbox_upload_bytes")]
    pub mailbox_upload_bytes_per_5min: u64,
    /// SharePoint RU per minute per app+tenant; `None` = the documented budget by licensed seats.
    pub sharepoint_ru_per_min: Option<u32>,
}

fn default_mailbox_upload_bytes() -> u64 {
    150 * 1024 * 1024
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            ru_per_10s: None,
            writes_per_150s: 3000,
            tenant_writes_per_5min: 18_000,
            ca_requests_per_second: 1.0,
            mailbox_requests_per_10min: 10_000,
            mailbox_concurrency: 4,
            mailbox_upload_bytes_per_5min: default_mailbox_upload_bytes(),
            sharepoint_ru_per_min: None,
        }
    }
}

/// Everything that shapes a simulated tenant and its service behaviour.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SimConfig {
    pub profile: Profile,
    pub seed: u64,
    /// Off by default.
    pub latency: Option<LatencyModel>,
    /// Enables the RU buckets, write limits, Outlook and SharePoint limits (off by default).
    pub throttling: bool,
    pub throttle: ThrottleConfig,
    /// `expires_in` of issued access tokens (default 3,599 s).
    #[serde(with = "duration_ms")]
    pub token_lifetime: Duration,
    /// Delta token lifetime in simulated time (default 7 days).
    #[serde(with = "duration_ms")]
    pub delta_token_ttl: Duration,
    /// Recycle-bin retention in simulated time (default 30 days).
    #[serde(with = "duration_ms")]
    pub recycle_bin_retention: Duration,
    /// Older v1.0 docs: deleting a security group is permanent. Default true.
    pub security_groups_hard_delete: bool,
    /// Shuffle `$batch` responses (Graph may reorder them). Default true.
    pub batch_shuffle: bool,
    /// Port to bind on 127.0.0.1 (0 = any free port).
    pub port: u16,
    /// Verified domain of the tenant (default `contoso.onmicrosoft.com`).
    pub domain: String,
    /// Whether the tenant has PIM (a Microsoft Entra ID P2 / Governance licence): `None` = every
    /// profile but `empty`. Without it the role eligibility endpoints answer 400
    /// `AadPremiumLicenseRequired`.
    #[serde(default)]
    pub pim: Option<bool>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            profile: Profile::Small,
            seed: 1,
            latency: None,
            throttling: false,
            throttle: ThrottleConfig::default(),
            token_lifetime: Duration::from_secs(3599),
            delta_token_ttl: Duration::from_secs(7 * 86_400),
            recycle_bin_retention: Duration::from_secs(30 * 86_400),
            security_groups_hard_delete: true,
            batch_shuffle: true,
            port: 0,
            domain: "contoso.onmicrosoft.com".into(),
            pim: None,
        }
    }
}

impl SimConfig {
    pub fn new(profile: Profile, seed: u64) -> Self {
        SimConfig {
            profile,
            seed,
            ..Default::default()
        }
    }
    pub fn with_latency(mut self, latency: LatencyModel) -> Self {
        self.latency = Some(latency);
        self
    }
    pub fn with_throttling(mut self, on: bool) -> Self {
        self.throttling = on;
        self
    }
    /// A tenant with (true) or without (false) PIM, whatever its profile.
    pub fn with_pim(mut self, on: bool) -> Self {
        self.pim = Some(on);
        self
    }
}

pub(crate) mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
