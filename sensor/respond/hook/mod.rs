//! Policy-enforcement hooks: hand an [`Action`] to a webhook or to a local
//! program, for enforcement osprey does not do itself.

mod config;
mod exec;
mod webhook;

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use prometheus::{IntCounterVec, Registry};

pub use config::{validate, ExecConfig, HookConfig, WebhookConfig};

use super::Action;
use crate::metrics::counter_vec;

/// A hook call that failed, naming the hook.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("hooks[{hook:?}].{key}: {reason}")]
    Config {
        hook: String,
        key: &'static str,
        reason: String,
    },
    #[error("no hook named {0:?}")]
    Unknown(String),
    #[error("hook {hook}: cannot encode the action: {source}")]
    Encode {
        hook: String,
        source: serde_json::Error,
    },
    #[error("hook {hook}: {source}")]
    Http {
        hook: String,
        source: reqwest::Error,
    },
    #[error("hook {hook}: HTTP {status} after {attempts} attempt(s)")]
    Status {
        hook: String,
        status: u16,
        attempts: u32,
    },
    #[error("hook {hook}: {action}: {source}")]
    Io {
        hook: String,
        action: &'static str,
        source: io::Error,
    },
    #[error("hook {hook}: no exit within {timeout:?}; killed")]
    Timeout { hook: String, timeout: Duration },
    #[error("hook {hook}: exited with {status}: {stderr}")]
    Exit {
        hook: String,
        status: String,
        stderr: String,
    },
}

enum Kind {
    Webhook(webhook::Webhook),
    Exec(ExecConfig),
}

/// The configured hooks, by name.
pub struct Hooks {
    hooks: HashMap<String, Kind>,
    calls: IntCounterVec,
}

impl Hooks {
    /// Validates the list and registers `osprey_hook_calls_total`.
    pub fn new(cfgs: &[HookConfig], registry: &Registry) -> Result<Hooks, HookError> {
        validate(cfgs)?;
        let mut hooks = HashMap::with_capacity(cfgs.len());
        for c in cfgs {
            let kind = match (&c.webhook, &c.exec) {
                (Some(w), _) => Kind::Webhook(webhook::Webhook::new(&c.name, w)?),
                (None, Some(e)) => Kind::Exec(e.clone()),
                (None, None) => return Err(HookError::Unknown(c.name.clone())),
            };
            hooks.insert(c.name.clone(), kind);
        }
        let calls = counter_vec(
            registry,
            "osprey_hook_calls_total",
            "Actions handed to hooks, by hook and outcome (ok, error, timeout).",
            &["hook", "result"],
        );
        Ok(Hooks { hooks, calls })
    }

    /// No hooks (metrics on a registry of their own, never scraped).
    pub fn none() -> Hooks {
        Hooks {
            hooks: HashMap::new(),
            calls: counter_vec(
                &Registry::new(),
                "osprey_hook_calls_total",
                "unused",
                &["hook", "result"],
            ),
        }
    }

    /// Names of the configured hooks, for checking rules at load.
    pub fn names(&self) -> Vec<String> {
        self.hooks.keys().cloned().collect()
    }

    /// Whether a hook of that name is configured (for checking rules).
    pub fn contains(&self, name: &str) -> bool {
        self.hooks.contains_key(name)
    }

    /// Hands the action (as JSON, the same object the platform receives)
    /// to the named hook; returns once it accepted or finally failed.
    pub async fn send(&self, hook: &str, action: &Action) -> Result<(), HookError> {
        let Some(kind) = self.hooks.get(hook) else {
            return Err(HookError::Unknown(hook.to_owned()));
        };
        let body = serde_json::to_vec(action).map_err(|source| HookError::Encode {
            hook: hook.to_owned(),
            source,
        })?;
        let r = match kind {
            Kind::Webhook(w) => w.send(hook, body).await,
            Kind::Exec(e) => exec::run(hook, e, &body).await,
        };
        let result = match &r {
            Ok(()) => "ok",
            Err(HookError::Timeout { .. }) => "timeout",
            Err(_) => "error",
        };
        self.calls.with_label_values(&[hook, result]).inc();
        if let Err(e) = &r {
            tracing::warn!(hook, action = %action.id, error = %e, "hook failed");
        }
        r
    }
}
