//! Enforcement through the Kubernetes API: quarantining a pod behind a
//! deny-all NetworkPolicy, and blocking a source range from a pod with an
//! allow-all-except policy where the namespace opts in.
//!
//! Policies carry their owner and expiry (see `policy`), so the GC loop
//! can remove them after a restart without any state in the sensor.
//! docs/kubernetes-enforcement.md explains what NetworkPolicy can and
//! cannot express, and why nftables on the node stays the primary block.

mod config;
mod enforce;
mod error;
mod gc;
mod metrics;
mod policy;
mod retry;

pub(crate) use retry::retryable;

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use std::sync::{Arc, Mutex};

use kube::api::ListParams;
use kube::Client;
use prometheus::Registry;
use tokio::task::JoinHandle;

/// The pod owning an address, found through the identity stage's index
/// (one pod watch serves events and the enforcer).
pub use crate::identity::PodRef;
pub use config::KubeConfig;
pub use error::KubeError;
pub use metrics::KubeMetrics;
pub use policy::{
    ANN_ACTION_ID, ANN_BLOCKED, ANN_EXPIRES_AT, ANN_POD, ANN_RULE, LABEL_KIND, LABEL_MANAGED_BY,
    LABEL_NODE,
};

use crate::identity::Directory;
use retry::Retry;

/// What an enforcement call did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The policy `namespace/name` is in place (created or unchanged).
    Applied { namespace: String, name: String },
    /// The action was not to be enforced (dry-run); nothing was sent.
    DryRun,
}

/// The running enforcer: an API client, the identity stage's pod
/// directory, and the GC loop. Dropping it stops the loop (the directory's
/// watches stop with its last holder).
pub struct KubeEnforcer {
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
}

pub(crate) struct Inner {
    client: Client,
    cfg: KubeConfig,
    metrics: KubeMetrics,
    retry: Retry,
    pods: Directory,
    /// Policies of this node known to exist, for the gauge.
    active: Mutex<BTreeSet<(String, String)>>,
    /// Serialises read-modify-write of block policies (an action and the
    /// GC could otherwise each drop the other's range).
    block_lock: tokio::sync::Mutex<()>,
}

impl KubeEnforcer {
    /// Connects (kubeconfig file, else in-cluster, else the default
    /// kubeconfig), starts the GC loop, and registers the enforcer's
    /// metrics on `registry`. Pods are found through `pods`, the identity
    /// stage's directory (its watch selects this node's pods, or all with
    /// `cluster_wide_pods`). Does not wait for the first pod list: see
    /// [`KubeEnforcer::wait_synced`].
    pub async fn start(
        cfg: KubeConfig,
        pods: Directory,
        registry: &Registry,
    ) -> Result<Self, KubeError> {
        if cfg.node_name.is_empty() && !cfg.cluster_wide_pods {
            return Err(KubeError::NoNodeName);
        }
        let kc = crate::identity::client_config(cfg.kubeconfig.as_ref()).await?;
        Self::start_with(cfg, kc, pods, registry)
    }

    /// As [`KubeEnforcer::start`], with the client configuration given.
    pub fn start_with(
        cfg: KubeConfig,
        client_cfg: kube::Config,
        pods: Directory,
        registry: &Registry,
    ) -> Result<Self, KubeError> {
        let client = Client::try_from(client_cfg).map_err(KubeError::Client)?;
        let metrics = KubeMetrics::new(registry);
        let inner = Arc::new(Inner {
            retry: Retry::from_config(&cfg),
            client: client.clone(),
            metrics: metrics.clone(),
            pods,
            active: Mutex::new(BTreeSet::new()),
            block_lock: tokio::sync::Mutex::new(()),
            cfg,
        });
        let gc = gc::spawn_loop(inner.clone());
        tracing::info!(
            node = %inner.cfg.node_name,
            cluster_wide = inner.cfg.cluster_wide_pods,
            "kubernetes enforcer started"
        );
        Ok(KubeEnforcer {
            inner,
            tasks: vec![gc],
        })
    }

    /// The pod that owns `ip`, as of the watch's last event.
    pub fn pod_for(&self, ip: IpAddr) -> Option<PodRef> {
        self.inner.pod_for(ip)
    }

    /// Waits until the pod watch has listed pods once, or `timeout`.
    pub async fn wait_synced(&self, timeout: std::time::Duration) -> Result<(), KubeError> {
        self.inner
            .pods
            .wait_synced(timeout)
            .await
            .map_err(|_| KubeError::NotSynced)
    }

    /// The enforcer's metrics (also on the registry given to `start`).
    pub fn metrics(&self) -> &KubeMetrics {
        &self.inner.metrics
    }

    /// Isolates the pod owning `action.target` (a single address) behind
    /// a deny-all NetworkPolicy until the action's TTL ends.
    pub async fn quarantine(&self, action: &crate::respond::Action) -> Result<Outcome, KubeError> {
        self.inner.quarantine(action).await
    }

    /// Stops `action.target` (an address or range) from reaching the pod
    /// at `dst_pod_ip`, if its namespace opted in.
    pub async fn block(
        &self,
        action: &crate::respond::Action,
        dst_pod_ip: IpAddr,
    ) -> Result<Outcome, KubeError> {
        self.inner.block(action, dst_pod_ip).await
    }

    /// Lifts the quarantine of the pod at `net` (a single address) and
    /// `net` from this node's block policies (`osprey decisions delete`).
    pub async fn lift(&self, net: IpNet) -> Result<Vec<String>, KubeError> {
        self.inner.lift(net).await
    }

    /// Removes this node's policies whose time is up (and quarantine
    /// labels); returns how many policies were deleted.
    pub async fn collect_expired(&self) -> Result<usize, KubeError> {
        self.inner.collect_expired().await
    }
}

impl Drop for KubeEnforcer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Inner {
    fn pod_for(&self, ip: IpAddr) -> Option<PodRef> {
        self.pods.pod(ip)
    }

    fn set_active(&self, f: impl FnOnce(&mut BTreeSet<(String, String)>)) {
        let mut a = self.active.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut a);
        self.metrics.policies_active.set(a.len() as i64);
    }

    /// The label selector of this node's policies.
    fn own_policies(&self) -> ListParams {
        ListParams::default().labels(&format!(
            "{}={},{}={}",
            policy::LABEL_MANAGED_BY,
            policy::MANAGER,
            policy::LABEL_NODE,
            policy::label_value(&self.cfg.node_name)
        ))
    }
}
