//! Bounded exponential backoff around one API call, with every attempt
//! counted.

use std::future::Future;
use std::time::Duration;

use super::config::KubeConfig;
use super::metrics::KubeMetrics;

/// How often and how patiently a call is retried.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Retry {
    attempts: u32,
    initial: Duration,
    max: Duration,
}

impl Retry {
    pub(crate) fn from_config(cfg: &KubeConfig) -> Retry {
        Retry {
            attempts: cfg.retry_attempts.max(1),
            initial: Duration::from_millis(cfg.retry_initial_backoff_ms),
            max: Duration::from_millis(cfg.retry_max_backoff_ms.max(cfg.retry_initial_backoff_ms)),
        }
    }

    /// Runs `call` until it succeeds, fails for good, or the attempts are
    /// used up; returns the last result. `op` names the operation in the
    /// error counter, `verb` the request in the request counter.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        metrics: &KubeMetrics,
        op: &'static str,
        verb: &'static str,
        mut call: F,
    ) -> Result<T, kube::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let mut wait = self.initial;
        let mut attempt = 1;
        loop {
            let res = call().await;
            let class = classify(&res);
            metrics.requests.with_label_values(&[verb, class]).inc();
            let err = match res {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if class == "not_found" {
                return Err(err);
            }
            metrics.errors.with_label_values(&[op]).inc();
            if !retryable(&err) || attempt >= self.attempts {
                tracing::warn!(op, attempt, error = %err, "kubernetes API call failed");
                return Err(err);
            }
            tracing::debug!(op, attempt, error = %err, ?wait, "kubernetes API call failed; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(self.max);
            attempt += 1;
        }
    }
}

fn classify<T>(res: &Result<T, kube::Error>) -> &'static str {
    match res {
        Ok(_) => "ok",
        Err(kube::Error::Api(s)) if s.code == 404 => "not_found",
        Err(kube::Error::Api(s)) if s.code >= 500 => "server_error",
        Err(kube::Error::Api(_)) => "client_error",
        Err(_) => "transport",
    }
}

/// Server-side trouble, throttling and broken connections pass; a request
/// the server refused (bad object, forbidden) fails the same way again.
pub(crate) fn retryable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code >= 500 || s.code == 429 || s.code == 409,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// Whether `e` is the API's "not found".
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}
