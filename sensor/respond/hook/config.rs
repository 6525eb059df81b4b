//! `[[hooks]]` in the configuration file, checked at load.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use super::HookError;

/// One named hook a rule can hand actions to; exactly one of `webhook`
/// and `exec` is set.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HookConfig {
    /// What rules call it by; also its metric label, so names are few.
    pub name: String,
    /// POST the action to an HTTP endpoint (a SOAR, a chat bridge).
    pub webhook: Option<WebhookConfig>,
    /// Run a local program with the action on its stdin, for enforcement
    /// osprey has no built-in for.
    pub exec: Option<ExecConfig>,
}

/// An HTTP endpoint that receives each action as a JSON body.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Where to POST (http or https).
    pub url: String,
    /// Extra request headers, for receivers that route or authenticate
    /// by header (values here are not secret: use `token_file` for that).
    pub headers: BTreeMap<String, String>,
    /// File holding a bearer token (a mounted Secret), read at each call
    /// so that rotating the Secret needs no restart.
    pub token_file: Option<PathBuf>,
    /// Per-attempt timeout, so a hung receiver does not hold the action.
    pub timeout_secs: u64,
    /// Attempts after the first on connection errors, timeouts, 408, 429
    /// and 5xx; other answers are final.
    pub retries: u32,
    /// First delay between attempts; later ones double, with full jitter.
    pub backoff_initial_ms: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: String::new(),
            headers: BTreeMap::new(),
            token_file: None,
            timeout_secs: 10,
            retries: 3,
            backoff_initial_ms: 500,
        }
    }
}

/// A program run once per action, without a shell: nothing in an action
/// can become a command.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExecConfig {
    /// The program (an absolute path, so `PATH` cannot substitute another)
    /// and its fixed arguments.
    pub argv: Vec<String>,
    /// The program is killed past this, so a stuck one cannot pile up.
    pub timeout_secs: u64,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            argv: Vec::new(),
            timeout_secs: 10,
        }
    }
}

fn invalid(hook: &str, key: &'static str, reason: impl Into<String>) -> HookError {
    HookError::Config {
        hook: hook.to_owned(),
        key,
        reason: reason.into(),
    }
}

/// Checks a hook list; errors name the hook and the key.
pub fn validate(hooks: &[HookConfig]) -> Result<(), HookError> {
    let mut names = HashSet::new();
    for h in hooks {
        if h.name.is_empty() {
            return Err(invalid("", "name", "must not be empty"));
        }
        if !names.insert(h.name.as_str()) {
            return Err(invalid(&h.name, "name", "used by another hook"));
        }
        match (&h.webhook, &h.exec) {
            (Some(w), None) => validate_webhook(&h.name, w)?,
            (None, Some(e)) => validate_exec(&h.name, e)?,
            _ => {
                return Err(invalid(
                    &h.name,
                    "webhook",
                    "exactly one of webhook and exec must be set",
                ))
            }
        }
    }
    Ok(())
}

fn validate_webhook(name: &str, w: &WebhookConfig) -> Result<(), HookError> {
    let url = reqwest::Url::parse(&w.url)
        .map_err(|e| invalid(name, "webhook.url", format!("{:?}: {e}", w.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(name, "webhook.url", "not http or https"));
    }
    for (k, v) in &w.headers {
        HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| invalid(name, "webhook.headers", format!("{k:?}: not a header name")))?;
        HeaderValue::from_str(v)
            .map_err(|_| invalid(name, "webhook.headers", format!("{k}: not a header value")))?;
    }
    if w.timeout_secs == 0 {
        return Err(invalid(name, "webhook.timeout_secs", "must be positive"));
    }
    Ok(())
}

fn validate_exec(name: &str, e: &ExecConfig) -> Result<(), HookError> {
    let Some(program) = e.argv.first() else {
        return Err(invalid(name, "exec.argv", "must not be empty"));
    };
    if !Path::new(program).is_absolute() {
        return Err(invalid(
            name,
            "exec.argv",
            format!("{program:?}: the program must be an absolute path"),
        ));
    }
    if e.timeout_secs == 0 {
        return Err(invalid(name, "exec.timeout_secs", "must be positive"));
    }
    Ok(())
}
