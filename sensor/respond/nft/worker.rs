//! The nftables enforcer on a thread of its own.
//!
//! nft is a process per call: milliseconds normally, seconds when the
//! kernel's netlink is busy, forever when it hangs (each call is killed
//! after `call_timeout_ms`). Running it here, behind a bounded queue,
//! keeps the responder free: alerts, reporting, Kubernetes calls and hooks
//! go on whatever nft does. A decision that fails is retried with backoff
//! until its TTL ends; it counts as active only once applied. The periodic
//! reconcile runs here too, between decisions, so it never races one.

use std::collections::HashMap;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use ipnet::IpNet;
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::{Held, NftEnforcer, NftError};
use crate::respond::enforce::{EnforceMetrics, RetryPolicy};
use crate::respond::safety::Allowlist;
use crate::respond::Action;

/// Decisions waiting in the queue before new ones are refused (and
/// counted as dropped).
const QUEUE: usize = 1024;

/// A decision that failed and waits for its next attempt.
#[derive(Clone, Debug)]
pub struct Retrying {
    pub action: Action,
    pub attempts: u32,
    pub error: String,
    next: Instant,
    wait: Duration,
    until: Instant,
}

/// What `osprey decisions list` shows of the nft side.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// In the sets now.
    pub held: Vec<Held>,
    /// Decided, not applied yet.
    pub retrying: Vec<Retrying>,
}

enum Job {
    Apply(Box<Action>),
    Lift {
        net: IpNet,
        reply: oneshot::Sender<Result<Vec<Held>, String>>,
    },
    Snapshot(oneshot::Sender<Snapshot>),
    /// The allowlist to lift elements by after each reconcile.
    Allowlist(Box<Allowlist>),
}

/// The handle the dispatcher keeps; dropping it stops the thread.
pub struct NftWorker {
    tx: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl NftWorker {
    /// Moves `nft` onto its own thread.
    pub fn spawn(
        nft: NftEnforcer,
        policy: RetryPolicy,
        metrics: Option<EnforceMetrics>,
        allowlist: Option<Allowlist>,
    ) -> std::io::Result<NftWorker> {
        let (tx, rx) = bounded(QUEUE);
        let reconcile_every = Duration::from_secs(nft.config().reconcile_interval_secs.max(1));
        let mut w = Worker {
            nft,
            policy,
            metrics,
            retrying: HashMap::new(),
            reconcile_every,
            allowlist,
        };
        let thread = std::thread::Builder::new()
            .name("osprey-nft".into())
            .spawn(move || w.run(rx))?;
        Ok(NftWorker {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues a decision; false when the queue is full (the caller counts
    /// it as dropped).
    pub fn submit(&self, a: &Action) -> bool {
        let Some(tx) = &self.tx else { return false };
        match tx.try_send(Job::Apply(Box::new(a.clone()))) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// The allowlist changed (or may have): elements it covers go at the
    /// next reconcile. Never blocks; a full queue defers it to the next
    /// call.
    pub fn set_allowlist(&self, allowlist: Allowlist) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Job::Allowlist(Box::new(allowlist)));
        }
    }

    /// Lifts every decision overlapping `net` (and forgets any retry of
    /// one); waits behind the queue, so a lift follows the decisions made
    /// before it.
    pub async fn lift(&self, net: IpNet) -> Result<Vec<Held>, String> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Lift { net, reply }).await?;
        rx.await
            .map_err(|_| "the nftables thread stopped".to_string())?
    }

    /// What the sets hold and what waits for a retry.
    pub async fn snapshot(&self) -> Result<Snapshot, String> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Snapshot(reply)).await?;
        rx.await
            .map_err(|_| "the nftables thread stopped".to_string())
    }

    /// A control request waits for room in the queue instead of being
    /// refused, without holding the runtime's thread.
    async fn send(&self, mut job: Job) -> Result<(), String> {
        let Some(tx) = &self.tx else {
            return Err("the nftables thread stopped".into());
        };
        for _ in 0..200 {
            match tx.try_send(job) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(j)) => {
                    job = j;
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                Err(TrySendError::Disconnected(_)) => break,
            }
        }
        Err("the nftables thread is not taking requests".into())
    }
}

impl Drop for NftWorker {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                error!("the nftables thread panicked");
            }
        }
    }
}

struct Worker {
    nft: NftEnforcer,
    policy: RetryPolicy,
    metrics: Option<EnforceMetrics>,
    /// (target, kind name) -> the failed decision.
    retrying: HashMap<(IpNet, &'static str), Retrying>,
    reconcile_every: Duration,
    allowlist: Option<Allowlist>,
}

impl Worker {
    fn run(&mut self, rx: Receiver<Job>) {
        // The first reconcile comes at once: a table adopted from an
        // earlier run is checked before the first decision.
        let mut next_reconcile = Instant::now();
        loop {
            let now = Instant::now();
            let due = self
                .retrying
                .values()
                .map(|r| r.next)
                .fold(next_reconcile, Instant::min);
            match rx.recv_timeout(due.saturating_duration_since(now)) {
                Ok(job) => self.handle(job),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            self.retry_due(now);
            if now >= next_reconcile {
                next_reconcile = now + self.reconcile_every;
                if let Err(e) = self.nft.reconcile() {
                    error!(error = %e, "nftables reconcile failed");
                }
                if let Some(a) = &self.allowlist {
                    if let Err(e) = self.nft.lift_allowlisted(a) {
                        error!(error = %e, "lifting allowlisted nftables elements failed");
                    }
                }
            }
            self.publish();
        }
        if !self.retrying.is_empty() {
            warn!(
                decisions = self.retrying.len(),
                "stopping with decisions that were never applied"
            );
        }
    }

    fn handle(&mut self, job: Job) {
        match job {
            Job::Apply(a) => {
                let kind = a.kind.name();
                self.retrying.remove(&(a.target, kind));
                let until = Instant::now() + a.ttl;
                self.attempt(*a, 0, self.policy.initial, until);
            }
            Job::Lift { net, reply } => {
                self.retrying
                    .retain(|(n, _), _| !(n.contains(&net) || net.contains(n)));
                let r = self.nft.remove_overlapping(&net).map_err(|e| e.to_string());
                let _ = reply.send(r);
            }
            Job::Allowlist(a) => self.allowlist = Some(*a),
            Job::Snapshot(reply) => {
                let mut retrying: Vec<Retrying> = self.retrying.values().cloned().collect();
                retrying.sort_by_key(|r| r.action.target);
                let _ = reply.send(Snapshot {
                    held: self.nft.held(),
                    retrying,
                });
            }
        }
    }

    /// One attempt at `a`; a transient failure schedules the next.
    fn attempt(&mut self, a: Action, attempts: u32, wait: Duration, until: Instant) {
        let kind = a.kind.name();
        match self.nft.apply(&a) {
            Ok(()) => {
                if attempts > 0 {
                    info!(target = %a.target, kind, attempts = attempts + 1, "enforced after retrying");
                }
                self.count(kind, "enforced");
            }
            Err(e) if retryable(&e) && Instant::now() + wait < until => {
                warn!(target = %a.target, kind, error = %e, retry_in = ?wait, "enforcement failed; retrying until its TTL ends");
                self.retrying.insert(
                    (a.target, kind),
                    Retrying {
                        error: e.to_string(),
                        action: a,
                        attempts: attempts + 1,
                        next: Instant::now() + wait,
                        wait,
                        until,
                    },
                );
            }
            Err(e) => {
                error!(target = %a.target, kind, attempts = attempts + 1, error = %e, "enforcement failed for good");
                self.count(kind, "failed");
            }
        }
    }

    fn retry_due(&mut self, now: Instant) {
        let due: Vec<(IpNet, &'static str)> = self
            .retrying
            .iter()
            .filter(|(_, r)| r.next <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in due {
            let Some(r) = self.retrying.remove(&k) else {
                continue;
            };
            if let Some(m) = &self.metrics {
                m.retries.with_label_values(&[k.1]).inc();
            }
            let wait = self.policy.next(r.wait);
            self.attempt(r.action, r.attempts, wait, r.until);
        }
    }

    fn count(&self, kind: &str, result: &str) {
        if let Some(m) = &self.metrics {
            m.result(kind, result);
        }
    }

    fn publish(&self) {
        let Some(m) = &self.metrics else { return };
        let active = self.nft.active();
        m.active
            .with_label_values(&["block"])
            .set(active.blocked as i64);
        m.active
            .with_label_values(&["rate_limit"])
            .set(active.rate_limited as i64);
        for kind in ["block", "rate_limit"] {
            let n = self.retrying.keys().filter(|(_, k)| *k == kind).count();
            m.pending.with_label_values(&[kind]).set(n as i64);
        }
    }
}

/// Whether another attempt could succeed: an action nftables cannot
/// express, or a range that overlaps one osprey does not hold, stays so.
fn retryable(e: &NftError) -> bool {
    !matches!(e, NftError::Invalid(_) | NftError::Overlap { .. })
}
