//! The `kube` section of the configuration.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where the Kubernetes enforcer talks to and what it marks.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KubeConfig {
    /// Off by default: NetworkPolicy enforcement changes what other teams'
    /// pods may receive, so a cluster operator turns it on deliberately.
    pub enabled: bool,
    /// The node this sensor runs on. Defaults to the `NODE_NAME`
    /// environment variable, which the Helm chart sets through the downward
    /// API (`spec.nodeName`); it limits the pod watch to local pods and
    /// labels every policy so each sensor collects only its own.
    pub node_name: String,
    /// A kubeconfig file, for running outside the cluster. Unset, the
    /// in-cluster service account is used, else the default kubeconfig
    /// (`KUBECONFIG`, `~/.kube/config`), as `kubectl` would.
    pub kubeconfig: Option<PathBuf>,
    /// Watch every pod of the cluster rather than this node's only. The
    /// sensor sees only traffic to and from local pods, so the node-local
    /// watch is enough and keeps memory and API load per node constant;
    /// cluster-wide helps when node_name cannot be set.
    pub cluster_wide_pods: bool,
    /// The pod label a quarantine policy selects; osprey adds it to the
    /// pod and removes it when the quarantine expires.
    pub quarantine_label: String,
    /// A namespace must carry this annotation with the value `"true"`
    /// before osprey blocks sources for its pods: the block policy
    /// replaces "allow everything" for the selected pods by an allow-list
    /// (see docs/kubernetes-enforcement.md), which the namespace's owners
    /// must agree to.
    pub namespace_opt_in_annotation: String,
    /// How often expired policies are looked for. Expiry is best-effort to
    /// this resolution; nftables on the node carries the exact TTLs.
    pub gc_interval_secs: u64,
    /// Attempts per API call (first try included) before giving up, so a
    /// restarting API server delays an action rather than losing it.
    pub retry_attempts: u32,
    /// Wait before the first retry; doubled each time.
    pub retry_initial_backoff_ms: u64,
    /// Longest wait between retries, so a long outage is polled at a
    /// steady pace rather than ever more slowly.
    pub retry_max_backoff_ms: u64,
}

impl Default for KubeConfig {
    fn default() -> Self {
        KubeConfig {
            enabled: false,
            node_name: std::env::var("NODE_NAME").unwrap_or_default(),
            kubeconfig: None,
            cluster_wide_pods: false,
            quarantine_label: "osprey.io/quarantine".into(),
            namespace_opt_in_annotation: "osprey.io/enforce".into(),
            gc_interval_secs: 30,
            retry_attempts: 5,
            retry_initial_backoff_ms: 200,
            retry_max_backoff_ms: 5_000,
        }
    }
}

impl KubeConfig {
    pub(crate) fn gc_interval(&self) -> Duration {
        Duration::from_secs(self.gc_interval_secs.max(1))
    }
}
