//! Which enforcer carries out which action, and who hears about it.
//!
//! nft blocks and rate limits are awaited: they take milliseconds and are
//! what acceptance of a block means. Kubernetes calls and hooks go over
//! the network with retries that can last seconds during an outage, so
//! they run as their own tasks and count their result when they finish;
//! a slow API server must not delay the next nft block.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::IntCounterVec;

use super::action::{Action, ActionKind};
use super::hook::Hooks;
use super::kube::KubeEnforcer;
use super::nft::{NftEnforcer, NftError};
use crate::identity::Attribution;
use crate::report::platform::{Event, ReporterHandle};

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("no enforcer for {0} actions is configured")]
    NoEnforcer(&'static str),
    #[error("nftables: {0}")]
    Nft(#[from] NftError),
    #[error("the nftables worker stopped: {0}")]
    Worker(String),
}

/// How an enforced action went, as far as the responder waits for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enforced {
    /// Done before `enforce` returned.
    Done,
    /// Handed to a task that counts its own result when it ends.
    Started,
}

/// The enforcers and the reporter the daemon was configured with.
pub struct Dispatch {
    nft: Option<Arc<Mutex<NftEnforcer>>>,
    kube: Option<Arc<KubeEnforcer>>,
    hooks: Arc<Hooks>,
    reporter: ReporterHandle,
    node: String,
    /// Names the endpoints of every action's evidence, when on.
    identity: Attribution,
    /// `osprey_respond_actions_total`, for results of background calls.
    results: Option<IntCounterVec>,
    reconcile_every: Duration,
    last_reconcile: Option<Instant>,
}

impl Default for Dispatch {
    fn default() -> Self {
        Dispatch::new(None)
    }
}

impl Dispatch {
    pub fn new(nft: Option<NftEnforcer>) -> Dispatch {
        let reconcile_every = nft.as_ref().map_or(Duration::from_secs(5), |n| {
            Duration::from_secs(n.config().reconcile_interval_secs.max(1))
        });
        Dispatch {
            nft: nft.map(|n| Arc::new(Mutex::new(n))),
            kube: None,
            hooks: Arc::new(Hooks::none()),
            reporter: ReporterHandle::disabled(),
            node: String::new(),
            identity: Attribution::off(),
            results: None,
            reconcile_every,
            last_reconcile: None,
        }
    }

    /// Adds the Kubernetes enforcer (`quarantine_pod`, pod-side blocks).
    pub fn with_kube(mut self, kube: Option<KubeEnforcer>) -> Dispatch {
        self.kube = kube.map(Arc::new);
        self
    }

    /// Adds the hooks that `hook` rules name.
    pub fn with_hooks(mut self, hooks: Hooks) -> Dispatch {
        self.hooks = Arc::new(hooks);
        self
    }

    /// Reports every action to the platform as `node`.
    pub fn with_reporter(mut self, reporter: ReporterHandle, node: &str) -> Dispatch {
        self.reporter = reporter;
        self.node = node.to_owned();
        self
    }

    /// Names both endpoints of every action (its platform event, hook
    /// payload and log line carry them).
    pub fn with_identity(mut self, identity: Attribution) -> Dispatch {
        self.identity = identity;
        self
    }

    /// Adds the endpoints' identity to `a`'s evidence, when on. Done once
    /// per action, before it is logged, enforced, hooked or reported, so
    /// every copy says the same.
    pub fn attribute(&self, a: &mut Action) {
        if a.evidence.identity.is_none() {
            a.evidence.identity = self.identity.conn(a.evidence.orig_h, a.evidence.resp_h);
        }
    }

    /// Where background calls count their result (kind, result).
    pub fn with_results(mut self, actions: IntCounterVec) -> Dispatch {
        self.results = Some(actions);
        self
    }

    pub async fn enforce(&mut self, a: &Action) -> Result<Enforced, DispatchError> {
        match &a.kind {
            ActionKind::Alert => Ok(Enforced::Done),
            ActionKind::Block | ActionKind::RateLimit(_) => {
                self.block_pod_side(a);
                let nft = self
                    .nft
                    .clone()
                    .ok_or(DispatchError::NoEnforcer(a.kind.name()))?;
                let a = a.clone();
                tokio::task::spawn_blocking(move || {
                    let mut n = nft
                        .lock()
                        .map_err(|e| DispatchError::Worker(e.to_string()))?;
                    n.apply(&a).map_err(DispatchError::from)
                })
                .await
                .map_err(|e| DispatchError::Worker(e.to_string()))??;
                Ok(Enforced::Done)
            }
            ActionKind::QuarantinePod => {
                let kube = self
                    .kube
                    .clone()
                    .ok_or(DispatchError::NoEnforcer(a.kind.name()))?;
                let a = a.clone();
                let results = self.results.clone();
                tokio::spawn(async move {
                    let r = kube.quarantine(&a).await;
                    finish(&results, &a, r.map(|_| ()).map_err(|e| e.to_string()));
                });
                Ok(Enforced::Started)
            }
            ActionKind::Hook { hook } => {
                if !self.hooks.contains(hook) {
                    return Err(DispatchError::NoEnforcer("hook"));
                }
                let hooks = self.hooks.clone();
                let hook = hook.clone();
                let a = a.clone();
                let results = self.results.clone();
                tokio::spawn(async move {
                    let r = hooks.send(&hook, &a).await;
                    finish(&results, &a, r.map_err(|e| e.to_string()));
                });
                Ok(Enforced::Started)
            }
        }
    }

    /// A block of a source that targets a pod also goes into that pod's
    /// namespace as a NetworkPolicy, where the namespace opted in (the
    /// enforcer checks); nft on the node stays the block that counts.
    fn block_pod_side(&self, a: &Action) {
        let (Some(kube), ActionKind::Block) = (&self.kube, &a.kind) else {
            return;
        };
        let dst = a.evidence.resp_h;
        if !a.target.contains(&a.evidence.orig_h) || kube.pod_for(dst).is_none() {
            return;
        }
        let kube = kube.clone();
        let a = a.clone();
        tokio::spawn(async move {
            if let Err(e) = kube.block(&a, dst).await {
                tracing::warn!(action = %a.id, pod_ip = %dst, error = %e, "NetworkPolicy block failed");
            }
        });
    }

    /// Tells the platform (never blocks: the reporter spools).
    pub fn report(&mut self, a: &Action) {
        if self.reporter.enabled() {
            self.reporter.submit(&Event::action(&self.node, a));
        }
    }

    /// Once a second: re-creates osprey's nft state if someone removed it,
    /// then lifts whatever the allowlist now covers (adopted elements on
    /// the first tick, newly allowlisted addresses within one period).
    pub async fn housekeeping(&mut self, allowlist: &super::safety::Allowlist) {
        let Some(nft) = self.nft.clone() else { return };
        let now = Instant::now();
        if self
            .last_reconcile
            .is_some_and(|t| now.duration_since(t) < self.reconcile_every)
        {
            return;
        }
        self.last_reconcile = Some(now);
        let allowlist = allowlist.clone();
        let r = tokio::task::spawn_blocking(move || match nft.lock() {
            Ok(mut n) => n
                .reconcile()
                .and_then(|_| n.lift_allowlisted(&allowlist))
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        })
        .await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "nftables reconcile or allowlist lift failed")
            }
            Err(e) => tracing::error!(error = %e, "nftables reconcile worker failed"),
        }
    }

    pub async fn shutdown(&mut self) {}
}

/// Counts and logs the end of a background enforcement call.
fn finish(results: &Option<IntCounterVec>, a: &Action, r: Result<(), String>) {
    let result = match &r {
        Ok(()) => "enforced",
        Err(e) => {
            tracing::error!(action = %a.id, kind = a.kind.name(), target = %a.target, error = %e, "enforcement failed");
            "failed"
        }
    };
    if let Some(c) = results {
        c.with_label_values(&[a.kind.name(), result]).inc();
    }
}
