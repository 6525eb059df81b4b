//! A webhook hook: POST the action JSON, retrying transient failures.

use std::fs;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::StatusCode;

use super::{HookError, WebhookConfig};
use crate::respond::backoff::Backoff;

/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub(super) struct Webhook {
    client: reqwest::Client,
    cfg: WebhookConfig,
}

impl Webhook {
    pub(super) fn new(name: &str, cfg: &WebhookConfig) -> Result<Webhook, HookError> {
        let mut headers = HeaderMap::new();
        for (k, v) in &cfg.headers {
            let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) else {
                return Err(HookError::Config {
                    hook: name.to_owned(),
                    key: "webhook.headers",
                    reason: format!("{k:?}: not a valid header"),
                });
            };
            headers.insert(k, v);
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.timeout_secs))
            .user_agent(concat!("osprey/", env!("CARGO_PKG_VERSION")))
            // A redirect is not an acceptance: followed, a 302 to a login
            // page ends in a 200 for an action nobody received.
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .build()
            .map_err(|source| HookError::Http {
                hook: name.to_owned(),
                source,
            })?;
        Ok(Webhook {
            client,
            cfg: cfg.clone(),
        })
    }

    pub(super) async fn send(&self, hook: &str, body: Vec<u8>) -> Result<(), HookError> {
        let mut backoff = Backoff::new(
            Duration::from_millis(self.cfg.backoff_initial_ms),
            MAX_BACKOFF,
        );
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt > self.cfg.retries;
            let err = match self.post(hook, body.clone()).await? {
                Ok(status) if status.is_success() => return Ok(()),
                Ok(status) => {
                    let transient = status == StatusCode::REQUEST_TIMEOUT
                        || status == StatusCode::TOO_MANY_REQUESTS
                        || status.is_server_error();
                    let e = HookError::Status {
                        hook: hook.to_owned(),
                        status: status.as_u16(),
                        attempts: attempt,
                    };
                    if !transient {
                        return Err(e);
                    }
                    e
                }
                Err(source) => HookError::Http {
                    hook: hook.to_owned(),
                    source,
                },
            };
            if last {
                return Err(err);
            }
            tracing::debug!(hook, attempt, error = %err, "hook attempt failed; retrying");
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// One attempt: the outer error is final (the token file), the inner
    /// one worth retrying.
    async fn post(
        &self,
        hook: &str,
        body: Vec<u8>,
    ) -> Result<Result<StatusCode, reqwest::Error>, HookError> {
        let mut req = self
            .client
            .post(&self.cfg.url)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(path) = &self.cfg.token_file {
            let token = fs::read_to_string(path).map_err(|source| HookError::Io {
                hook: hook.to_owned(),
                action: "read webhook.token_file",
                source,
            })?;
            req = req.bearer_auth(token.trim());
        }
        Ok(req.send().await.map(|r| r.status()))
    }
}
