//! Retry decisions: which outcomes are retried, `Retry-After`, backoff with jitter, the budget.

use std::time::Duration;

use rand::Rng;

use crate::config::RetryPolicy;

/// Parses `Retry-After` as Graph sends it: a decimal number of seconds (`2.128`, `10`).
/// HTTP dates and garbage give `None` (the caller then backs off exponentially).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v: f64 = value.trim().parse().ok()?;
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    // Cap absurd values at a day; the budget decides whether to wait that long.
    Some(Duration::from_secs_f64(v.min(86_400.0)))
}

/// The `Retry-After` of a header list (case-insensitive).
pub fn retry_after_of(headers: &[(String, String)]) -> Option<Duration> {
    crate::header(headers, "retry-after").and_then(parse_retry_after)
}

/// Idempotent methods may be retried after an ambiguous failure (the server may have acted).
pub fn idempotent(method: &str) -> bool {
    matches!(
        method.to_ascii_uppercase().as_str(),
        "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE"
    )
}

/// Whether a response status is retried. 429, 503 and 504 mean the request was refused
/// before it was acted on, so every method is retried; 500 and 502 only for idempotent ones.
pub fn retryable_status(status: u16, idempotent: bool) -> bool {
    match status {
        429 | 503 | 504 => true,
        500 | 502 => idempotent,
        _ => false,
    }
}

/// Whether the status is a throttling signal (counted, and shrinks the concurrency limit).
pub fn is_throttle(status: u16) -> bool {
    status == 429 || status == 503
}

/// Exponential backoff with "equal jitter": half the step fixed, half random.
pub fn backoff(policy: &RetryPolicy, retry_number: u32) -> Duration {
    let exp = retry_number.saturating_sub(1).min(20);
    let step = policy
        .base_delay
        .saturating_mul(1u32 << exp)
        .min(policy.max_delay);
    let half = step / 2;
    let jitter = rand::thread_rng().gen_range(0.0..=1.0);
    half + half.mul_f64(jitter)
}

/// Tracks one call's attempts and waiting against the policy.
#[derive(Debug)]
pub struct Budget {
    pub policy: RetryPolicy,
    pub attempts: u32,
    pub waited: Duration,
}

impl Budget {
    pub fn new(policy: RetryPolicy) -> Self {
        Budget {
            policy,
            attempts: 0,
            waited: Duration::ZERO,
        }
    }

    /// Counts the attempt about to be made.
    pub fn start_attempt(&mut self) {
        self.attempts += 1;
    }

    /// Decides the wait before the next attempt: the server's `Retry-After` when given, else
    /// backoff. `Err(reason)` when the budget does not allow another attempt.
    pub fn next_wait(&mut self, retry_after: Option<Duration>) -> Result<Duration, String> {
        if self.attempts >= self.policy.max_attempts {
            return Err(format!(
                "the retry budget allows {} attempt(s)",
                self.policy.max_attempts
            ));
        }
        let wait = retry_after.unwrap_or_else(|| backoff(&self.policy, self.attempts));
        let left = self.policy.max_total_wait.saturating_sub(self.waited);
        if wait > left {
            return Err(format!(
                "the next wait of {:.1?} exceeds the {:.1?} of waiting the retry budget has left \
                 (max total wait {:.1?})",
                wait, left, self.policy.max_total_wait
            ));
        }
        self.waited += wait;
        Ok(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_decimal_seconds() {
        assert_eq!(
            parse_retry_after("2.128"),
            Some(Duration::from_millis(2128))
        );
        assert_eq!(parse_retry_after(" 10 "), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("NaN"), None);
        let h = vec![("RETRY-AFTER".to_string(), "0.5".to_string())];
        assert_eq!(retry_after_of(&h), Some(Duration::from_millis(500)));
    }

    #[test]
    fn statuses() {
        assert!(retryable_status(429, false));
        assert!(retryable_status(503, false));
        assert!(retryable_status(504, false));
        assert!(retryable_status(500, true));
        assert!(!retryable_status(500, false));
        assert!(!retryable_status(501, true));
        assert!(!retryable_status(404, true));
        assert!(idempotent("get") && idempotent("DELETE") && !idempotent("POST"));
        assert!(!idempotent("PATCH"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(800),
            ..RetryPolicy::default()
        };
        for n in 1..10 {
            let d = backoff(&p, n);
            let step = Duration::from_millis(100 * (1 << (n - 1).min(20))).min(p.max_delay);
            assert!(
                d >= step / 2 && d <= step,
                "retry {n}: {d:?} vs step {step:?}"
            );
        }
    }

    #[test]
    fn budget_limits_attempts_and_waiting() {
        let mut b = Budget::new(RetryPolicy {
            max_attempts: 3,
            max_total_wait: Duration::from_secs(5),
            ..RetryPolicy::default()
        });
        b.start_attempt();
        assert_eq!(
            b.next_wait(Some(Duration::from_secs(2))),
            Ok(Duration::from_secs(2))
        );
        b.start_attempt();
        let e = b.next_wait(Some(Duration::from_secs(4))).unwrap_err();
        assert!(e.contains("exceeds"), "{e}");
        assert_eq!(
            b.next_wait(Some(Duration::from_secs(3))),
            Ok(Duration::from_secs(3))
        );
        b.start_attempt();
        let e = b.next_wait(Some(Duration::ZERO)).unwrap_err();
        assert!(e.contains("3 attempt(s)"), "{e}");
    }
}
