//! Which enforcer carries out which action, and who hears about it.
//!
//! No enforcer is awaited here: nft blocks and rate limits go to the nft
//! thread's queue, Kubernetes calls and hooks run as tasks of their own,
//! and each counts its result when it ends. A hung nft, an API server in
//! an outage or a slow webhook therefore never delays another enforcer,
//! an alert or the platform report. Each retries a failed enforcement
//! with backoff until the action's TTL ends (`enforce`).

use std::sync::Arc;

use super::action::{Action, ActionKind};
use super::enforce::{deadline, retry_until, EnforceMetrics, RetryPolicy, Transient};
use super::hook::{HookError, Hooks};
use super::kube::{KubeEnforcer, KubeError};
use super::nft::{NftEnforcer, NftWorker};
use crate::identity::Attribution;

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("no enforcer for {0} actions is configured")]
    NoEnforcer(&'static str),
    #[error("the nftables queue is full: the decision is dropped")]
    QueueFull,
    #[error("the nftables thread could not start: {0}")]
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
/// Where the dispatcher tells the platform about actions and lifts. The
/// report stage implements it (its platform reporter), so that respond
/// never imports report; an implementation must not block (the platform
/// reporter spools).
pub trait ActionReport: Send + Sync {
    /// An action, within the reporter's own cap on alert actions.
    fn action(&self, node: &str, a: &Action);
    /// An operator's lift at `ts`.
    fn lift(&self, node: &str, ts: f64, body: super::control::LiftBody);
}

pub struct Dispatch {
    /// The enforcer until its thread starts (at the first use, once the
    /// metrics are known).
    nft_idle: Option<NftEnforcer>,
    nft: Option<NftWorker>,
    kube: Option<Arc<KubeEnforcer>>,
    hooks: Arc<Hooks>,
    reporter: Option<Box<dyn ActionReport>>,
    node: String,
    /// Names the endpoints of every action's evidence, when on.
    identity: Attribution,
    /// Where enforcers count their results, retries and what is active.
    metrics: Option<EnforceMetrics>,
    retry: RetryPolicy,
    /// The responder's allowlist as of its last housekeeping tick: the nft
    /// thread lifts elements it covers.
    allowlist: Option<super::safety::Allowlist>,
}

impl Default for Dispatch {
    fn default() -> Self {
        Dispatch::new(None)
    }
}

impl Dispatch {
    pub fn new(nft: Option<NftEnforcer>) -> Dispatch {
        Dispatch {
            nft_idle: nft,
            nft: None,
            kube: None,
            hooks: Arc::new(Hooks::none()),
            reporter: None,
            node: String::new(),
            identity: Attribution::off(),
            metrics: None,
            retry: RetryPolicy::default(),
            allowlist: None,
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
    pub fn with_reporter(mut self, reporter: impl ActionReport + 'static, node: &str) -> Dispatch {
        self.reporter = Some(Box::new(reporter));
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

    /// Where enforcers count their results (kind, result), retries and
    /// active and pending actions.
    pub fn with_metrics(mut self, metrics: EnforceMetrics) -> Dispatch {
        self.metrics = Some(metrics);
        self
    }

    /// How failed enforcement is retried until its TTL ends.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Dispatch {
        self.retry = retry;
        self
    }

    /// Whether nftables enforcement is configured.
    pub fn has_nft(&self) -> bool {
        self.nft.is_some() || self.nft_idle.is_some()
    }

    /// The nft thread, started on first use.
    pub fn nft(&mut self) -> Result<Option<&NftWorker>, DispatchError> {
        if let Some(n) = self.nft_idle.take() {
            let w = NftWorker::spawn(n, self.retry, self.metrics.clone(), self.allowlist.clone())
                .map_err(|e| DispatchError::Worker(e.to_string()))?;
            self.nft = Some(w);
        }
        Ok(self.nft.as_ref())
    }

    pub async fn enforce(&mut self, a: &Action) -> Result<Enforced, DispatchError> {
        match &a.kind {
            ActionKind::Alert => Ok(Enforced::Done),
            ActionKind::Block | ActionKind::RateLimit(_) => {
                self.block_pod_side(a);
                let nft = self
                    .nft()?
                    .ok_or(DispatchError::NoEnforcer(a.kind.name()))?;
                if nft.submit(a) {
                    Ok(Enforced::Started)
                } else {
                    Err(DispatchError::QueueFull)
                }
            }
            ActionKind::QuarantinePod => {
                let kube = self
                    .kube
                    .clone()
                    .ok_or(DispatchError::NoEnforcer(a.kind.name()))?;
                let a = a.clone();
                let (metrics, retry) = (self.metrics.clone(), self.retry);
                tokio::spawn(async move {
                    let until = deadline(&a);
                    let r = retry_until(retry, until, metrics.as_ref(), "quarantine_pod", || {
                        kube.quarantine(&a)
                    })
                    .await;
                    finish(&metrics, &a, r.map(|_| ()).map_err(|e| e.to_string()));
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
                let (metrics, retry) = (self.metrics.clone(), self.retry);
                tokio::spawn(async move {
                    let until = deadline(&a);
                    let r = retry_until(retry, until, metrics.as_ref(), "hook", || {
                        hooks.send(&hook, &a)
                    })
                    .await;
                    finish(&metrics, &a, r.map_err(|e| e.to_string()));
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

    /// Tells the platform (never blocks: the reporter spools), within the
    /// reporter's cap on alert actions.
    pub fn report(&mut self, a: &Action) {
        if let Some(r) = &self.reporter {
            r.action(&self.node, a);
        }
    }

    /// Lifts `net` from the Kubernetes enforcer's policies (a pod's
    /// quarantine, pod-side blocks); `None` without that enforcer. Bounded
    /// in time: the API server may be down, and the responder waits.
    pub async fn lift_kube(&self, net: ipnet::IpNet) -> Option<Result<Vec<String>, String>> {
        let kube = self.kube.as_ref()?;
        Some(
            match tokio::time::timeout(std::time::Duration::from_secs(15), kube.lift(net)).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err("the API server did not answer within 15 s".into()),
            },
        )
    }

    /// Tells the platform an operator lifted decisions.
    pub fn report_lift(&mut self, ts: f64, body: super::control::LiftBody) {
        if let Some(r) = &self.reporter {
            r.lift(&self.node, ts, body);
        }
    }

    /// Once a second. The nft thread reconciles on its own clock, lifting
    /// whatever the allowlist covers after each reconcile (adopted
    /// elements at its first, newly allowlisted addresses within one
    /// period); this hands it the current allowlist and makes sure it has
    /// started, so a table adopted from an earlier run is checked before
    /// the first decision.
    pub async fn housekeeping(&mut self, allowlist: &super::safety::Allowlist) {
        self.allowlist = Some(allowlist.clone());
        match self.nft() {
            Ok(Some(nft)) => nft.set_allowlist(allowlist.clone()),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "nftables enforcement is not running"),
        }
    }

    /// Stops the nft thread (the queue's decisions are applied first).
    pub async fn shutdown(&mut self) {
        if let Some(w) = self.nft.take() {
            let _ = tokio::task::spawn_blocking(move || drop(w)).await;
        }
    }
}

/// Counts and logs the end of a background enforcement call.
fn finish(metrics: &Option<EnforceMetrics>, a: &Action, r: Result<(), String>) {
    let result = match &r {
        Ok(()) => "enforced",
        Err(e) => {
            tracing::error!(action = %a.id, kind = a.kind.name(), target = %a.target, error = %e, "enforcement failed");
            "failed"
        }
    };
    if let Some(m) = metrics {
        m.result(a.kind.name(), result);
    }
}

impl Transient for HookError {
    /// A webhook that answered 4xx refuses the same payload again, and a
    /// hook osprey cannot encode for stays so; a network failure, a 5xx, a
    /// timeout or a program that failed may pass later.
    fn transient(&self) -> bool {
        match self {
            HookError::Status { status, .. } => *status >= 500 || *status == 429,
            HookError::Http { .. }
            | HookError::Io { .. }
            | HookError::Timeout { .. }
            | HookError::Exit { .. } => true,
            HookError::Config { .. } | HookError::Unknown(_) | HookError::Encode { .. } => false,
        }
    }
}

impl Transient for KubeError {
    /// The API server's trouble and a pod watch still listing pass; a
    /// refused object, a namespace that has not opted in or an unknown
    /// pod stay so.
    fn transient(&self) -> bool {
        match self {
            KubeError::Api { source, .. } | KubeError::Client(source) => {
                super::kube::retryable(source)
            }
            KubeError::NotSynced | KubeError::NoPodWatch => true,
            _ => false,
        }
    }
}
