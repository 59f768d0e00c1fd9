//! Pacing of the identity resource-unit budget, and request priority.
//!
//! Graph limits identity reads per app and tenant with a token bucket of resource units (RU):
//! 3,500 / 5,000 / 8,000 RU per 10 s by tenant size. Every response says what it cost
//! (`x-ms-resource-unit`) and, once more than 80 % of the bucket is used, how full it is
//! (`x-ms-throttle-limit-percentage`, 0.8–1.8). Requests made while throttled still count, so a
//! client that spends the bucket in a burst and then bounces off it makes every request of the
//! connection wait — including the sequential page chains (`nextLink` after `nextLink`) that
//! decide how long a backup takes.
//!
//! The pacer keeps a reserve for those chains. Requests are [`Priority::Normal`] (single
//! requests: pages, `nextLink` and `deltaLink` follow-ups) or [`Priority::Low`] (`$batch`
//! calls of identity reads, or any identity request that asks for it with
//! `x-ms-throttle-priority: low`). A low-priority request starts only while the bucket's
//! estimated use is under [`PacingConfig::low_priority_below`]:
//!
//! * every identity response is an *observation*: the fraction used (the header's value, or at
//!   most 0.8 when a response with `x-ms-resource-unit` carries no percentage) as of the time
//!   its request was sent; the observation of the latest-sent request wins, so a slow page
//!   answering late cannot overwrite what a later batch item reported;
//! * between observations the estimate falls at the bucket's refill rate, a whole bucket per
//!   [`PacingConfig::window`] (10 s for identity): from a use of `u` observed at `t`, low
//!   priority resumes at `t + (u - low_priority_below) × window`;
//! * a throttled identity response (429 for the RU limit) means the bucket is empty: low
//!   priority waits out its `Retry-After` and then the refill up to the threshold, so the chains
//!   get the first tokens back.
//!
//! Normal-priority requests are never held by the pacer (they still honour `Retry-After`
//! through the connection's limiter). Low-priority work therefore spends the budget at about
//! its refill rate, the bucket hovers near the threshold, and the chains never find it empty.
//!
//! Conditional Access (`/identity/conditionalAccess/…`) has a limit of its own: 1 request per
//! second per tenant, answered without `Retry-After` when exceeded. A [`RateGate`] lets a small
//! burst ([`PacingConfig::conditional_access_burst`]) through and then spaces those requests
//! (each `$batch` item counts) by [`PacingConfig::conditional_access_interval`], so the tasks and
//! restore actions that read or write policies, named locations, authentication strengths and
//! contexts at the same moment queue instead of bouncing; a 429 there empties the gate.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::config::PacingConfig;
use crate::header;

/// Graph's request header for the priority of a request under throttling.
pub const PRIORITY_HEADER: &str = "x-ms-throttle-priority";
/// The fraction of the identity limit in use, sent only above 0.8.
pub const LIMIT_PERCENTAGE_HEADER: &str = "x-ms-throttle-limit-percentage";
/// Resource units a response cost.
pub const RESOURCE_UNIT_HEADER: &str = "x-ms-resource-unit";
/// The most the bucket can be in use when a response reports its cost but no percentage.
const UNREPORTED_USE: f64 = 0.8;

/// Whether a Graph path (after the version segment, e.g. `/identity/conditionalAccess/policies`)
/// is under the Conditional Access request limit.
pub fn is_conditional_access(path: &str) -> bool {
    let mut segs = path.trim_start_matches('/').split(['/', '?']);
    segs.next()
        .is_some_and(|s| s.eq_ignore_ascii_case("identity"))
        && segs
            .next()
            .is_some_and(|s| s.eq_ignore_ascii_case("conditionalAccess"))
}

/// Keeps requests under a per-second limit, as a token bucket of `burst` requests refilled one
/// per `interval` (the generic cell rate algorithm: a theoretical arrival time moved forward by
/// `interval` per request; a request may start `(burst - 1) × interval` before it). A throttle
/// answer says the service's own bucket is empty whatever this model thought: the gate then
/// empties too.
#[derive(Debug)]
pub struct RateGate {
    interval: Duration,
    /// How far ahead of the theoretical arrival time a request may start: `(burst - 1)` intervals.
    tolerance: Duration,
    /// The theoretical arrival time of the next request (`None`: the bucket is full).
    tat: Mutex<Option<Instant>>,
}

impl RateGate {
    pub fn new(interval: Duration, burst: u32) -> Self {
        RateGate {
            interval,
            tolerance: interval * burst.saturating_sub(1),
            tat: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.tat.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When `n` requests reserved at `now` may start (a `$batch` carries them together, so the
    /// call goes when the first may and the gate is charged for all of them), first come,
    /// first served.
    pub fn reserve_at(&self, now: Instant, n: u32) -> Instant {
        let mut tat = self.lock();
        let t = tat.map_or(now, |t| t.max(now));
        let at = t
            .checked_sub(self.tolerance)
            .map_or(now, |earliest| earliest.max(now));
        *tat = Some(t + self.interval * n.max(1));
        at
    }

    /// The service refused a request at `now` for this limit: nothing may start for an
    /// interval, and then one request at a time.
    pub fn on_throttle(&self, now: Instant) {
        let mut tat = self.lock();
        let empty = now + self.interval + self.tolerance;
        *tat = Some(tat.map_or(empty, |t| t.max(empty)));
    }

    /// Waits for a turn for `n` requests; returns how long it waited.
    pub async fn admit(&self, n: u32) -> Duration {
        if n == 0 || self.interval.is_zero() {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let at = self.reserve_at(now, n);
        if at > now {
            tokio::time::sleep_until(at.into()).await;
        }
        at - now
    }
}

/// How a request competes for the connection and the identity budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Priority {
    /// Paced: starts only while the identity budget has room above the reserve, and after
    /// every waiting normal request has a slot.
    Low,
    /// Pages and single requests: never held back by the pacer.
    #[default]
    Normal,
}

impl Priority {
    /// The priority a caller asked for with `x-ms-throttle-priority` (`low`; `normal` and
    /// `high` are both served as normal), if it did.
    pub fn requested(headers: &[(String, String)]) -> Option<Priority> {
        let v = header(headers, PRIORITY_HEADER)?;
        Some(if v.trim().eq_ignore_ascii_case("low") {
            Priority::Low
        } else {
            Priority::Normal
        })
    }
}

/// The fraction of the identity budget in use that a successful response reports: its
/// `x-ms-throttle-limit-percentage`, or [`UNREPORTED_USE`] when it reports a cost
/// (`x-ms-resource-unit`) without one; `None` when it says nothing about the budget.
pub fn reported_use(headers: &[(String, String)]) -> Option<f64> {
    if let Some(p) = header(headers, LIMIT_PERCENTAGE_HEADER)
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|p| p.is_finite() && *p >= 0.0)
    {
        return Some(p);
    }
    header(headers, RESOURCE_UNIT_HEADER).map(|_| UNREPORTED_USE)
}

/// Whether a throttled response is the identity RU limit (and not the write limit or a
/// per-resource limit such as Conditional Access' requests per second, which have buckets of
/// their own): `x-ms-throttle-information: ResourceUnitLimitExceeded`, or no information and a
/// `Retry-After`.
pub fn is_budget_throttle(headers: &[(String, String)]) -> bool {
    match header(headers, "x-ms-throttle-information") {
        Some(info) => info
            .trim()
            .eq_ignore_ascii_case("ResourceUnitLimitExceeded"),
        None => crate::retry::retry_after_of(headers).is_some(),
    }
}

#[derive(Debug, Default)]
struct State {
    /// The latest observation: when its request was sent and the fraction in use then.
    seen: Option<(Instant, f64)>,
    /// Low-priority starts that had to wait.
    holds: u64,
}

/// The connection's identity-budget pacer (see the module docs).
#[derive(Debug)]
pub struct Pacer {
    config: PacingConfig,
    state: Mutex<State>,
    notify: Notify,
}

/// A snapshot of a pacer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacerSnapshot {
    /// The last observed fraction of the identity budget in use.
    pub last_use: Option<f64>,
    /// Low-priority starts that waited for the budget.
    pub holds: u64,
}

impl Pacer {
    pub fn new(config: PacingConfig) -> Self {
        Pacer {
            config,
            state: Mutex::new(State::default()),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether low priority is paced at all (else it is served as normal).
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Records that the request sent at `sent` found `used` (a fraction) of the budget in use.
    pub fn observe(&self, sent: Instant, used: f64) {
        let newer = {
            let mut s = self.lock();
            let newer = s.seen.is_none_or(|(t, _)| sent >= t);
            if newer {
                s.seen = Some((sent, used));
            }
            newer
        };
        if newer {
            // A lower use can open the gate earlier than a waiter planned.
            self.notify.notify_waiters();
        }
    }

    /// Records a throttled identity response received at `now`: the bucket is empty until
    /// `Retry-After` has passed (and then has only what the request needed).
    pub fn on_throttle(&self, now: Instant, retry_after: Option<Duration>) {
        let empty_until = now + retry_after.unwrap_or(Duration::ZERO);
        let mut s = self.lock();
        if s.seen.is_none_or(|(t, _)| empty_until >= t) {
            s.seen = Some((empty_until, 1.0));
        }
    }

    /// When a low-priority request may start, if not at `now`.
    pub fn hold_until(&self, now: Instant) -> Option<Instant> {
        let (t, used) = self.lock().seen?;
        let over = used - self.config.low_priority_below;
        if over < 0.0 {
            return None;
        }
        let until = t + self.config.window.mul_f64(over);
        (until > now).then_some(until)
    }

    /// Waits until a low-priority request may start; returns how long it waited.
    pub async fn admit_low(&self) -> Duration {
        if !self.config.enabled {
            return Duration::ZERO;
        }
        let start = Instant::now();
        let mut counted = false;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let Some(until) = self.hold_until(Instant::now()) else {
                return if counted {
                    start.elapsed()
                } else {
                    Duration::ZERO
                };
            };
            if !counted {
                counted = true;
                self.lock().holds += 1;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until.into()) => {}
                _ = &mut notified => {}
            }
        }
    }

    pub fn snapshot(&self) -> PacerSnapshot {
        let s = self.lock();
        PacerSnapshot {
            last_use: s.seen.map(|(_, u)| u),
            holds: s.holds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacer() -> Pacer {
        Pacer::new(PacingConfig::default())
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn conditional_access_paths() {
        for p in [
            "/identity/conditionalAccess/policies",
            "identity/conditionalaccess/namedLocations/x",
            "/identity/conditionalAccess/policies?$top=999",
            "/IDENTITY/conditionalAccess",
        ] {
            assert!(is_conditional_access(p), "{p}");
        }
        for p in [
            "/identity/b2xUserFlows",
            "/users",
            "/policies/authorizationPolicy",
            "/identityGovernance/x",
        ] {
            assert!(!is_conditional_access(p), "{p}");
        }
    }

    #[test]
    fn the_gate_spaces_reservations_and_counts_batch_items() {
        let gate = RateGate::new(ms(1000), 1);
        let t0 = Instant::now();
        assert_eq!(gate.reserve_at(t0, 1), t0);
        assert_eq!(gate.reserve_at(t0, 1), t0 + ms(1000));
        // A batch of three items goes at its turn and holds the gate for three intervals.
        assert_eq!(gate.reserve_at(t0 + ms(200), 3), t0 + ms(2000));
        assert_eq!(gate.reserve_at(t0 + ms(300), 1), t0 + ms(5000));
        // After a quiet spell the next request goes at once.
        assert_eq!(gate.reserve_at(t0 + ms(9000), 1), t0 + ms(9000));
    }

    #[test]
    fn the_gate_lets_a_burst_through_then_refills_one_per_interval() {
        let gate = RateGate::new(ms(1000), 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(gate.reserve_at(t0, 1), t0);
        }
        assert_eq!(gate.reserve_at(t0, 1), t0 + ms(1000));
        assert_eq!(gate.reserve_at(t0 + ms(500), 1), t0 + ms(2000));
        // Quiet for long enough: the whole burst again.
        let t1 = t0 + ms(20_000);
        for _ in 0..3 {
            assert_eq!(gate.reserve_at(t1, 1), t1);
        }
        // Half refilled after 1.5 intervals: one goes now, the next waits.
        let t2 = t1 + ms(1500);
        assert_eq!(gate.reserve_at(t2, 1), t2);
        assert_eq!(gate.reserve_at(t2, 1), t2 + ms(500));
    }

    #[test]
    fn a_throttle_empties_the_gate() {
        let gate = RateGate::new(ms(1000), 5);
        let t0 = Instant::now();
        assert_eq!(gate.reserve_at(t0, 1), t0);
        // Another app spent the tenant's allowance: the service refuses.
        gate.on_throttle(t0 + ms(100));
        assert_eq!(gate.reserve_at(t0 + ms(100), 1), t0 + ms(1100));
        assert_eq!(gate.reserve_at(t0 + ms(100), 1), t0 + ms(2100));
    }

    #[test]
    fn reads_the_budget_headers() {
        assert_eq!(
            reported_use(&h(&[
                ("x-ms-resource-unit", "1"),
                ("X-MS-Throttle-Limit-Percentage", "0.9")
            ])),
            Some(0.9)
        );
        assert_eq!(
            reported_use(&h(&[("x-ms-resource-unit", "2")])),
            Some(UNREPORTED_USE)
        );
        // An Outlook or SharePoint response says nothing about the identity budget.
        assert_eq!(reported_use(&h(&[("RateLimit-Remaining", "10")])), None);
        assert_eq!(
            Priority::requested(&h(&[("x-ms-throttle-priority", "LOW")])),
            Some(Priority::Low)
        );
        assert_eq!(
            Priority::requested(&h(&[("x-ms-throttle-priority", "high")])),
            Some(Priority::Normal)
        );
        assert_eq!(Priority::requested(&h(&[])), None);
        assert!(is_budget_throttle(&h(&[
            ("x-ms-throttle-information", "ResourceUnitLimitExceeded"),
            ("Retry-After", "1")
        ])));
        assert!(!is_budget_throttle(&h(&[
            ("x-ms-throttle-information", "WriteLimitExceeded"),
            ("Retry-After", "1")
        ])));
        // Conditional Access' per-tenant limit: no Retry-After, not the RU bucket.
        assert!(!is_budget_throttle(&h(&[(
            "x-ms-throttle-information",
            "CPULimitExceeded"
        )])));
        assert!(is_budget_throttle(&h(&[("Retry-After", "0.5")])));
        assert!(!is_budget_throttle(&h(&[])));
    }

    #[test]
    fn low_priority_runs_free_below_the_threshold() {
        let p = pacer();
        let t0 = Instant::now();
        assert_eq!(p.hold_until(t0), None, "nothing observed yet");
        p.observe(t0, 0.8);
        assert_eq!(p.hold_until(t0), None, "0.8 is under 0.85");
    }

    #[test]
    fn holds_until_the_refill_brings_use_under_the_threshold() {
        let p = pacer();
        let t0 = Instant::now();
        // 0.9 in use, threshold 0.85, a bucket per 10 s: 0.05 × 10 s = 500 ms.
        p.observe(t0, 0.9);
        let until = p.hold_until(t0).expect("held");
        assert_eq!(until - t0, ms(500));
        assert_eq!(p.hold_until(t0 + ms(499)), Some(until));
        assert_eq!(p.hold_until(t0 + ms(500)), None);
        // 1.2 (over the limit): 3.5 s.
        p.observe(t0 + ms(10), 1.2);
        assert_eq!(p.hold_until(t0 + ms(10)).unwrap() - t0, ms(3510));
    }

    #[test]
    fn the_latest_sent_request_wins() {
        let p = pacer();
        let t0 = Instant::now();
        // A batch item sent at t0+300ms found the bucket at 0.9 ...
        p.observe(t0 + ms(300), 0.9);
        // ... a page sent at t0 answers later with "under 0.8": older news, ignored.
        p.observe(t0, 0.8);
        assert_eq!(p.hold_until(t0 + ms(300)).unwrap(), t0 + ms(300) + ms(500));
        // A later request that found room opens the gate at once.
        p.observe(t0 + ms(400), 0.8);
        assert_eq!(p.hold_until(t0 + ms(400)), None);
        assert_eq!(p.snapshot().last_use, Some(0.8));
    }

    #[test]
    fn a_throttle_holds_for_retry_after_and_the_reserve() {
        let p = pacer();
        let t0 = Instant::now();
        p.observe(t0, 0.8);
        p.on_throttle(t0, Some(ms(2000)));
        // Empty until t0+2s, then (1.0 − 0.85) × 10 s = 1.5 s of refill for the reserve.
        assert_eq!(p.hold_until(t0).unwrap() - t0, ms(3500));
        // Responses to requests sent before the bucket refills do not reopen the gate.
        p.observe(t0 + ms(100), 0.8);
        assert_eq!(p.hold_until(t0 + ms(100)).unwrap() - t0, ms(3500));
        // A throttle without Retry-After: empty now, 1.5 s to the threshold.
        let q = pacer();
        q.on_throttle(t0, None);
        assert_eq!(q.hold_until(t0).unwrap() - t0, ms(1500));
    }

    #[test]
    fn waiters_resume_on_a_fresh_observation_or_the_refill() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let p = std::sync::Arc::new(Pacer::new(PacingConfig {
                window: ms(1000),
                ..PacingConfig::default()
            }));
            // Unthrottled: no wait, no hold counted.
            assert_eq!(p.admit_low().await, Duration::ZERO);
            // 1.05 in use with a 1 s window: held 200 ms by the refill alone.
            p.observe(Instant::now(), 1.05);
            let waited = p.admit_low().await;
            assert!(waited >= ms(190) && waited < ms(600), "{waited:?}");
            // Held for 10 s by the estimate, released at once by an observation of room.
            p.observe(Instant::now(), 10.85);
            let q = p.clone();
            let opener = tokio::spawn(async move {
                tokio::time::sleep(ms(50)).await;
                q.observe(Instant::now(), 0.8);
            });
            let waited = p.admit_low().await;
            opener.await.unwrap();
            assert!(waited >= ms(40) && waited < ms(1000), "{waited:?}");
            assert_eq!(p.snapshot().holds, 2);
            // Disabled: never held.
            let off = Pacer::new(PacingConfig {
                enabled: false,
                ..PacingConfig::default()
            });
            off.observe(Instant::now(), 1.8);
            assert_eq!(off.admit_low().await, Duration::ZERO);
        });
    }
}
