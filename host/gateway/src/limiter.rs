//! An adaptive concurrency limit (AIMD) with a "pause until" for `Retry-After`.
//!
//! * On success the limit grows by `1 / limit` (about one more slot per round trip of the whole
//!   window), up to `max`.
//! * On a throttled response it is multiplied by `decrease_factor`, down to `min` — at most
//!   once per *epoch*: responses to requests that were started before the last decrease do not
//!   shrink it again, so a burst of 429s from one window halves the limit once, not 16 times.
//! * A throttled response carrying `Retry-After` pauses new acquisitions until then: Graph keeps
//!   counting requests made while throttled, so sending more only lengthens the penalty.
//! * Priority: a [`Priority::Low`] request takes a slot only while no normal request is
//!   waiting for one, and low-priority requests together hold at most [`LOW_SHARE`] of the
//!   limit, so page chains always find a slot.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::pacer::Priority;

/// The share of the limit low-priority requests may hold together (at least one slot).
pub const LOW_SHARE: f64 = 0.75;

#[derive(Debug)]
struct State {
    limit: f64,
    in_flight: usize,
    in_flight_low: usize,
    /// Normal-priority acquisitions waiting for a slot (low priority yields to them).
    waiting_normal: usize,
    peak: usize,
    epoch: u64,
    decreases: u64,
    paused_until: Option<Instant>,
}

#[derive(Debug)]
pub struct Limiter {
    state: Mutex<State>,
    notify: Notify,
    min: f64,
    max: f64,
    decrease_factor: f64,
}

/// A slot; released when dropped.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<Limiter>,
    epoch: u64,
    priority: Priority,
}

impl Permit {
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        {
            let mut s = self.limiter.lock();
            s.in_flight = s.in_flight.saturating_sub(1);
            if self.priority == Priority::Low {
                s.in_flight_low = s.in_flight_low.saturating_sub(1);
            }
        }
        self.limiter.notify.notify_waiters();
    }
}

/// A snapshot of a limiter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimiterSnapshot {
    pub limit: f64,
    pub in_flight: usize,
    pub peak_in_flight: usize,
    pub decreases: u64,
}

/// Keeps `waiting_normal` right when an acquisition is abandoned while it waits.
struct WaitingGuard<'a> {
    limiter: &'a Arc<Limiter>,
    counted: bool,
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        if self.counted {
            let mut s = self.limiter.lock();
            s.waiting_normal = s.waiting_normal.saturating_sub(1);
            drop(s);
            // Low-priority waiters may go now.
            self.limiter.notify.notify_waiters();
        }
    }
}

impl Limiter {
    pub fn new(initial: u32, min: u32, max: u32, decrease_factor: f64) -> Arc<Self> {
        Arc::new(Limiter {
            state: Mutex::new(State {
                limit: initial as f64,
                in_flight: 0,
                in_flight_low: 0,
                waiting_normal: 0,
                peak: 0,
                epoch: 0,
                decreases: 0,
                paused_until: None,
            }),
            notify: Notify::new(),
            min: min.max(1) as f64,
            max: max.max(min).max(1) as f64,
            decrease_factor,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a normal-priority slot (and for any pause to end).
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        self.acquire_as(Priority::Normal).await
    }

    /// Waits for a slot of `priority` (and for any pause to end).
    pub async fn acquire_as(self: &Arc<Self>, priority: Priority) -> Permit {
        let mut waiting = WaitingGuard {
            limiter: self,
            counted: false,
        };
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Register before looking at the state so a release in between is not missed.
            notified.as_mut().enable();
            let pause = {
                let mut s = self.lock();
                let now = Instant::now();
                match s.paused_until {
                    Some(until) if until > now => Some(until),
                    _ => {
                        s.paused_until = None;
                        let limit = s.limit.floor().max(1.0);
                        let free = (s.in_flight as f64) < limit;
                        let admitted = match priority {
                            Priority::Normal => free,
                            Priority::Low => {
                                free && s.waiting_normal == 0
                                    && (s.in_flight_low as f64)
                                        < (limit * LOW_SHARE).floor().max(1.0)
                            }
                        };
                        if admitted {
                            let was_waiting = waiting.counted;
                            if was_waiting {
                                waiting.counted = false;
                                s.waiting_normal -= 1;
                            }
                            s.in_flight += 1;
                            if priority == Priority::Low {
                                s.in_flight_low += 1;
                            }
                            s.peak = s.peak.max(s.in_flight);
                            let permit = Permit {
                                limiter: self.clone(),
                                epoch: s.epoch,
                                priority,
                            };
                            drop(s);
                            if was_waiting {
                                // Low-priority waiters that yielded to this one look again.
                                self.notify.notify_waiters();
                            }
                            return permit;
                        }
                        if priority == Priority::Normal && !waiting.counted {
                            waiting.counted = true;
                            s.waiting_normal += 1;
                        }
                        None
                    }
                }
            };
            match pause {
                Some(until) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until.into()) => {}
                        _ = &mut notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// A response that was not throttled.
    pub fn on_success(&self) {
        let grew = {
            let mut s = self.lock();
            let before = s.limit.floor();
            s.limit = (s.limit + 1.0 / s.limit.max(1.0)).min(self.max);
            s.limit.floor() > before
        };
        if grew {
            self.notify.notify_waiters();
        }
    }

    /// A throttled response to a request sent under a permit of `epoch`; `pause` is the
    /// server's `Retry-After`, when it gave one.
    pub fn on_throttle(&self, epoch: u64, pause: Option<Duration>) {
        let mut s = self.lock();
        if epoch == s.epoch {
            s.limit = (s.limit * self.decrease_factor).max(self.min);
            s.epoch += 1;
            s.decreases += 1;
        }
        if let Some(d) = pause {
            let until = Instant::now() + d;
            if s.paused_until.is_none_or(|p| p < until) {
                s.paused_until = Some(until);
            }
        }
    }

    pub fn snapshot(&self) -> LimiterSnapshot {
        let s = self.lock();
        LimiterSnapshot {
            limit: s.limit,
            in_flight: s.in_flight,
            peak_in_flight: s.peak,
            decreases: s.decreases,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn limits_in_flight_and_releases() {
        rt().block_on(async {
            let l = Limiter::new(2, 1, 4, 0.5);
            let a = l.acquire().await;
            let _b = l.acquire().await;
            let third = tokio::time::timeout(Duration::from_millis(50), l.acquire()).await;
            assert!(third.is_err(), "a third slot must wait");
            drop(a);
            let c = tokio::time::timeout(Duration::from_millis(500), l.acquire()).await;
            assert!(c.is_ok(), "a released slot is handed on");
            assert_eq!(l.snapshot().peak_in_flight, 2);
        });
    }

    #[test]
    fn aimd_once_per_epoch_and_slow_growth() {
        let l = Limiter::new(16, 1, 32, 0.5);
        // Sixteen throttles from the same window shrink the limit once.
        for _ in 0..16 {
            l.on_throttle(0, None);
        }
        assert_eq!(l.snapshot().limit, 8.0);
        // A throttle of the next window shrinks it again.
        l.on_throttle(1, None);
        assert_eq!(l.snapshot().limit, 4.0);
        for e in 2..20 {
            l.on_throttle(e, None);
        }
        assert_eq!(l.snapshot().limit, 1.0, "never below min");
        // Growth: about one slot per `limit` successes.
        for _ in 0..3 {
            l.on_success();
        }
        let lim = l.snapshot().limit;
        assert!(lim > 2.0 && lim < 3.5, "{lim}");
        for _ in 0..10_000 {
            l.on_success();
        }
        assert_eq!(l.snapshot().limit, 32.0, "never above max");
    }

    #[test]
    fn low_priority_yields_to_waiting_normal_requests() {
        rt().block_on(async {
            let l = Limiter::new(2, 1, 2, 0.5);
            let a = l.acquire().await;
            let b = l.acquire().await;
            // A low-priority request queues first, a normal one after it.
            let low = tokio::spawn({
                let l = l.clone();
                async move { l.acquire_as(Priority::Low).await }
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
            let normal = tokio::spawn({
                let l = l.clone();
                async move { l.acquire().await }
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(a);
            // The freed slot goes to the normal request although the low one waited longer.
            let n = tokio::time::timeout(Duration::from_millis(500), normal)
                .await
                .expect("the normal request gets the slot")
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!low.is_finished(), "the low-priority request still waits");
            drop(b);
            let lo = tokio::time::timeout(Duration::from_millis(500), low)
                .await
                .expect("the next slot goes to the low-priority request")
                .unwrap();
            assert_eq!(l.snapshot().in_flight, 2);
            drop((n, lo));
            assert_eq!(l.snapshot().in_flight, 0);
        });
    }

    #[test]
    fn low_priority_holds_at_most_its_share_of_the_limit() {
        rt().block_on(async {
            let l = Limiter::new(4, 1, 4, 0.5);
            let mut lows = vec![];
            for _ in 0..3 {
                lows.push(l.acquire_as(Priority::Low).await);
            }
            // 3 of 4 slots (LOW_SHARE): a fourth low-priority request waits ...
            let fourth =
                tokio::time::timeout(Duration::from_millis(50), l.acquire_as(Priority::Low)).await;
            assert!(fourth.is_err(), "low priority is capped at 3 of 4 slots");
            // ... while a page request still finds the last slot at once.
            let page = tokio::time::timeout(Duration::from_millis(50), l.acquire()).await;
            assert!(page.is_ok(), "the reserved slot is the chains'");
            drop(page);
            lows.pop();
            let again =
                tokio::time::timeout(Duration::from_millis(500), l.acquire_as(Priority::Low)).await;
            assert!(again.is_ok(), "a released low slot is handed on");
            // An abandoned normal wait does not block low priority forever.
            let l1 = Limiter::new(1, 1, 1, 0.5);
            let held = l1.acquire().await;
            let gave_up = tokio::time::timeout(Duration::from_millis(30), l1.acquire()).await;
            assert!(gave_up.is_err());
            drop(held);
            let low =
                tokio::time::timeout(Duration::from_millis(500), l1.acquire_as(Priority::Low))
                    .await;
            assert!(low.is_ok(), "the abandoned waiter no longer counts");
        });
    }

    #[test]
    fn pause_holds_new_acquisitions() {
        rt().block_on(async {
            let l = Limiter::new(4, 1, 4, 0.5);
            let p = l.acquire().await;
            l.on_throttle(p.epoch(), Some(Duration::from_millis(150)));
            drop(p);
            let t0 = Instant::now();
            let _q = l.acquire().await;
            let waited = t0.elapsed();
            assert!(waited >= Duration::from_millis(140), "{waited:?}");
        });
    }
}
