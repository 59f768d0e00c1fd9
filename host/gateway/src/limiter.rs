//! An adaptive concurrency limit (AIMD) with a "pause until" for `Retry-After`.
//!
//! * On success the limit grows by `1 / limit` (about one more slot per round trip of the whole
//!   window), up to `max`.
//! * On a throttled response it is multiplied by `decrease_factor`, down to `min` — at most
//!   once per *epoch*: responses to requests that were started before the last decrease do not
//!   shrink it again, so a burst of 429s from one window halves the limit once, not 16 times.
//! * A throttled response carrying `Retry-After` pauses new acquisitions until then: Graph keeps
//!   counting requests made while throttled, so sending more only lengthens the penalty.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

#[derive(Debug)]
struct State {
    limit: f64,
    in_flight: usize,
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

impl Limiter {
    pub fn new(initial: u32, min: u32, max: u32, decrease_factor: f64) -> Arc<Self> {
        Arc::new(Limiter {
            state: Mutex::new(State {
                limit: initial as f64,
                in_flight: 0,
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

    /// Waits for a slot (and for any pause to end).
    pub async fn acquire(self: &Arc<Self>) -> Permit {
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
                        if (s.in_flight as f64) < s.limit.floor().max(1.0) {
                            s.in_flight += 1;
                            s.peak = s.peak.max(s.in_flight);
                            return Permit {
                                limiter: self.clone(),
                                epoch: s.epoch,
                            };
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
