//! Runs `nft -j -f -` with a JSON batch, optionally inside a network
//! namespace, with bounded retries.
//!
//! The process is started here rather than through
//! `nftables::helper::apply_ruleset_with_args`: that helper leaves nft's
//! stderr uncaptured, and the message is what tells a missing element
//! (success for a removal) from a refused one. The JSON itself is the
//! `nftables` crate's schema.

use std::io::Write;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use nftables::schema::Nftables;
use tracing::{debug, warn};

use super::config::NftConfig;
use super::error::NftError;
use super::metrics::NftMetrics;

/// How to invoke nft, and how hard to try.
pub(crate) struct Exec {
    /// Program and the arguments before nft's own (`ip netns exec NAME nft`).
    argv: Vec<String>,
    retries: u32,
    backoff: Duration,
    metrics: Option<NftMetrics>,
}

impl Exec {
    pub(crate) fn new(cfg: &NftConfig, metrics: Option<NftMetrics>) -> Exec {
        let argv = match &cfg.netns {
            Some(ns) => vec![
                "ip".into(),
                "netns".into(),
                "exec".into(),
                ns.clone(),
                cfg.nft_path.clone(),
            ],
            None => vec![cfg.nft_path.clone()],
        };
        Exec {
            argv,
            retries: cfg.retries,
            backoff: Duration::from_millis(cfg.retry_backoff_ms),
            metrics,
        }
    }

    /// Feeds `batch` to nft, retrying transient failures; returns stdout.
    pub(crate) fn run(&self, op: &'static str, batch: &Nftables) -> Result<String, NftError> {
        let payload = serde_json::to_string(batch).map_err(|e| NftError::Output {
            op,
            detail: e.to_string(),
        })?;
        let mut pause = self.backoff;
        let mut attempt = 0;
        loop {
            match self.once(op, &payload) {
                Ok(out) => {
                    self.count(op, "ok");
                    return Ok(out);
                }
                Err(e) if e.transient() && attempt < self.retries => {
                    attempt += 1;
                    self.count(op, "retried");
                    warn!(op, attempt, error = %e, "nft failed; retrying");
                    thread::sleep(pause);
                    pause = pause.saturating_mul(2);
                }
                Err(e) => {
                    // A missing object is an answer, not a fault: callers
                    // decide whether it is one.
                    let result = if matches!(e, NftError::NotFound { .. }) {
                        "not_found"
                    } else {
                        "error"
                    };
                    self.count(op, result);
                    return Err(e);
                }
            }
        }
    }

    /// Counts an operation that failed for good (after `run` and any
    /// fallback the caller tried).
    pub(crate) fn count_error(&self, op: &'static str) {
        if let Some(m) = &self.metrics {
            m.errors.with_label_values(&[op]).inc();
        }
    }

    fn count(&self, op: &'static str, result: &str) {
        if let Some(m) = &self.metrics {
            m.operations.with_label_values(&[op, result]).inc();
        }
    }

    fn once(&self, op: &'static str, payload: &str) -> Result<String, NftError> {
        let program = self.argv.join(" ");
        let missing = |source| NftError::Missing {
            program: program.clone(),
            source,
        };
        let (exe, pre) = self
            .argv
            .split_first()
            .ok_or_else(|| NftError::Invalid("empty nft command".into()))?;
        let mut child = Command::new(exe)
            .args(pre)
            .args(["-j", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(missing)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(payload.as_bytes())
                .map_err(|e| NftError::Failed {
                    op,
                    stderr: format!("writing the batch: {e}"),
                })?;
        }
        let out = child.wait_with_output().map_err(|e| NftError::Failed {
            op,
            stderr: format!("waiting for nft: {e}"),
        })?;
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if out.status.success() {
            debug!(op, bytes = payload.len(), "nft ok");
            return String::from_utf8(out.stdout).map_err(|e| NftError::Output {
                op,
                detail: e.to_string(),
            });
        }
        // `ip netns exec` reports a missing nft (or namespace) on stderr
        // with status 255 instead of failing to spawn.
        if self.argv.len() > 1
            && (stderr.contains("exec of") || stderr.contains("Cannot open network namespace"))
        {
            return Err(NftError::Missing {
                program,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, stderr),
            });
        }
        Err(NftError::from_stderr(op, &program, stderr))
    }
}
