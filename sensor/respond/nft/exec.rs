//! Runs `nft -j -f -` with a JSON batch, optionally inside a network
//! namespace, with bounded retries.
//!
//! The process is started here rather than through
//! `nftables::helper::apply_ruleset_with_args`: that helper leaves nft's
//! stderr uncaptured, and the message is what tells a missing element
//! (success for a removal) from a refused one. The JSON itself is the
//! `nftables` crate's schema.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

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
    /// The longest one nft process may run before it is killed: a hung
    /// nft (a netlink lock held elsewhere, a stuck kernel) must not hold
    /// the enforcer, and with it every later decision, forever.
    timeout: Duration,
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
            timeout: Duration::from_millis(cfg.call_timeout_ms.max(1)),
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
                    let result = match e {
                        NftError::NotFound { .. } => "not_found",
                        NftError::Timeout { .. } => "timeout",
                        _ => "error",
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
        // Both pipes are drained while nft runs (a listing of a large set
        // fills a pipe buffer long before nft exits), and the wait is
        // bounded: past the timeout the process is killed.
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        // Written from a thread too: a hung nft that stops reading must
        // not block the writer past the timeout.
        let writer = child.stdin.take().map(|mut stdin| {
            let payload = payload.to_owned();
            thread::spawn(move || stdin.write_all(payload.as_bytes()))
        });
        let status = wait_bounded(&mut child, self.timeout).map_err(|e| NftError::Failed {
            op,
            stderr: format!("waiting for nft: {e}"),
        })?;
        let Some(status) = status else {
            return Err(NftError::Timeout {
                op,
                after: self.timeout,
            });
        };
        if let Some(Ok(Err(e))) = writer.map(thread::JoinHandle::join) {
            // nft exited before reading all of the batch: its message says why.
            debug!(op, error = %e, "nft closed its input early");
        }
        let out = Output {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        };
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

/// What a finished nft left.
struct Output {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Reads a child's pipe to its end on a thread of its own.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// Waits for `child` at most `limit`; past it, kills and reaps it and
/// returns `None`. Polls (nft usually ends within milliseconds, so the
/// first checks come quickly) instead of a signal handler or a helper
/// crate: std alone cannot wait with a timeout.
fn wait_bounded(child: &mut Child, limit: Duration) -> std::io::Result<Option<ExitStatus>> {
    let start = Instant::now();
    let mut pause = Duration::from_micros(200);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let spent = start.elapsed();
        if spent >= limit {
            let _ = child.kill();
            child.wait()?;
            return Ok(None);
        }
        thread::sleep(pause.min(limit - spent));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}
