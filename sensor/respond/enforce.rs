//! What every enforcer shares: how long a failed enforcement is retried,
//! and the counters its outcome goes to.
//!
//! An enforcement that fails (nft busy or hung, the API server restarting,
//! a webhook down) is not dropped: it is tried again with exponential
//! backoff until its TTL ends, because a block that silently never
//! happened is worse than one that happened late. Only a failure no retry
//! can fix (an action nftables cannot express, an overlap, a pod that does
//! not exist) ends it early.

use std::future::Future;
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, IntGaugeVec, Registry};

use super::action::Action;
use crate::metrics::{counter_vec, gauge_vec};

/// Backoff between attempts of one enforcement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Pause before the second attempt.
    pub initial: Duration,
    /// Longest pause; the pause doubles up to it.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The pause after `wait`.
    pub fn next(&self, wait: Duration) -> Duration {
        wait.saturating_mul(2).min(self.max).max(self.initial)
    }
}

/// Counters of enforcement outcomes, shared by the responder, the nft
/// thread and the tasks that call the Kubernetes API and hooks.
#[derive(Clone)]
pub struct EnforceMetrics {
    /// `osprey_respond_actions_total{kind,result}`.
    pub results: IntCounterVec,
    /// `osprey_respond_enforce_retries_total{kind}`.
    pub retries: IntCounterVec,
    /// `osprey_respond_pending_actions{kind}`.
    pub pending: IntGaugeVec,
    /// `osprey_respond_active_actions{kind}`.
    pub active: IntGaugeVec,
}

impl EnforceMetrics {
    pub fn register(r: &Registry) -> EnforceMetrics {
        EnforceMetrics {
            results: counter_vec(
                r,
                "osprey_respond_actions_total",
                "Actions decided, by kind and result (enforced, dry_run, alerted, duplicate, failed, dropped).",
                &["kind", "result"],
            ),
            retries: counter_vec(
                r,
                "osprey_respond_enforce_retries_total",
                "Attempts to enforce an action again after a failure, by kind.",
                &["kind"],
            ),
            pending: gauge_vec(
                r,
                "osprey_respond_pending_actions",
                "Enforcement actions decided but not applied yet (failed and waiting for a retry), by kind.",
                &["kind"],
            ),
            active: gauge_vec(
                r,
                "osprey_respond_active_actions",
                "Enforcement actions in force (applied, not yet past their TTL), by kind.",
                &["kind"],
            ),
        }
    }

    /// Counts one outcome of an action of `kind`.
    pub fn result(&self, kind: &str, result: &str) {
        self.results.with_label_values(&[kind, result]).inc();
    }
}

/// When an action's enforcement stops mattering: its TTL after now (the
/// action was decided moments ago). An action without a TTL gets one
/// attempt.
pub fn deadline(a: &Action) -> Instant {
    Instant::now() + a.ttl
}

/// Whether a failure can pass on a later attempt.
pub trait Transient {
    fn transient(&self) -> bool;
}

/// Runs `attempt` until it succeeds, fails for good, or `until` passes,
/// pausing by `policy` between attempts; counts each retry and keeps the
/// action counted as pending meanwhile. Returns the last result.
pub async fn retry_until<T, E, F, Fut>(
    policy: RetryPolicy,
    until: Instant,
    metrics: Option<&EnforceMetrics>,
    kind: &'static str,
    mut attempt: F,
) -> Result<T, E>
where
    E: Transient + std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut wait = policy.initial;
    let mut pending = false;
    let result = loop {
        let r = attempt().await;
        match &r {
            Err(e) if e.transient() && Instant::now() + wait < until => {
                tracing::warn!(kind, error = %e, retry_in = ?wait, "enforcement failed; retrying until its TTL ends");
                if let Some(m) = metrics {
                    m.retries.with_label_values(&[kind]).inc();
                    if !pending {
                        m.pending.with_label_values(&[kind]).inc();
                        pending = true;
                    }
                }
                tokio::time::sleep(wait).await;
                wait = policy.next(wait);
            }
            _ => break r,
        }
    };
    if pending {
        if let Some(m) = metrics {
            m.pending.with_label_values(&[kind]).dec();
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Flaky(bool);
    impl std::fmt::Display for Flaky {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "flaky({})", self.0)
        }
    }
    impl Transient for Flaky {
        fn transient(&self) -> bool {
            self.0
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(20),
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_maximum() {
        let p = fast();
        assert_eq!(p.next(Duration::from_millis(5)), Duration::from_millis(10));
        assert_eq!(p.next(Duration::from_millis(15)), Duration::from_millis(20));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn transient_failures_are_retried_until_success() {
        let m = EnforceMetrics::register(&Registry::new());
        let mut left = 3;
        let r: Result<u32, Flaky> = retry_until(
            fast(),
            Instant::now() + Duration::from_secs(5),
            Some(&m),
            "block",
            || {
                left -= 1;
                let r = if left > 0 { Err(Flaky(true)) } else { Ok(7) };
                async move { r }
            },
        )
        .await;
        assert_eq!(r.ok(), Some(7));
        assert_eq!(m.retries.with_label_values(&["block"]).get(), 2);
        assert_eq!(m.pending.with_label_values(&["block"]).get(), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn retries_stop_at_the_deadline_and_on_permanent_failures() {
        let start = Instant::now();
        let r: Result<(), Flaky> = retry_until(
            fast(),
            start + Duration::from_millis(60),
            None,
            "hook",
            || async { Err(Flaky(true)) },
        )
        .await;
        assert!(r.is_err());
        assert!(start.elapsed() < Duration::from_secs(1));
        let mut calls = 0;
        let r: Result<(), Flaky> = retry_until(
            fast(),
            Instant::now() + Duration::from_secs(5),
            None,
            "hook",
            || {
                calls += 1;
                async { Err(Flaky(false)) }
            },
        )
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }
}
