//! Pod identity: who is behind each address of an event.
//!
//! On a Kubernetes node an address alone says little: pods come and go
//! and reuse addresses within minutes. This stage keeps a read-only watch
//! of the pods on this node (field selector `spec.nodeName=<node>`, the
//! owners that name their workload, and the cluster's nodes), so that
//! every alert, platform event, action and hook payload can say, for both
//! endpoints of its connection, which pod it was — namespace, pod,
//! workload (Deployment, StatefulSet, DaemonSet, Job, CronJob...) and
//! node, as Falco's `k8s.ns.name`/`k8s.pod.name` and Hubble's endpoints
//! do — or else whether it was this host, another node, a pod CIDR of the
//! cluster, or outside it (see [`Endpoint`]).
//!
//! It is a side stage: it imports nothing of the pipeline (only the
//! metrics it exports), and every stage that writes events reads it — the
//! scorer's outputs (alerts.log, platform alerts, conn.log's optional
//! columns), the responder (actions and hooks), and the Kubernetes
//! enforcer, which finds the pod to quarantine through the same index.
//!
//! Outside a cluster it is off without error; a watch that cannot run
//! degrades attribution and never stops detection (`watch`).

mod config;
mod index;
mod metrics;
mod owner;
mod watch;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Api, Client};
use prometheus::Registry;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

pub use config::{Enabled, IdentityConfig};
pub use index::PodRef;
pub use metrics::IdentityMetrics;
pub use owner::Workload;

use index::{NodeIndex, PodIndex};
use owner::Owners;
use watch::Status;

use crate::metrics::Health;

/// What one endpoint of a connection is, serialised with a `kind` tag:
/// `{"kind":"pod","namespace":"shop","pod":"web-1","workload":{"kind":"Deployment","name":"web"},"node":"node-a"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Endpoint {
    /// A pod the watch knows (this node's, or any with
    /// `respond.kube.cluster_wide_pods`).
    Pod {
        namespace: String,
        pod: String,
        /// Absent for a pod without controller.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        workload: Option<Workload>,
        node: String,
    },
    /// This node itself: one of its interface addresses or of its Node
    /// object's addresses (host-network pods share them).
    Host { node: String },
    /// Another node's InternalIP or ExternalIP.
    Node { node: String },
    /// In a node's pod CIDR (`spec.podCIDRs`) but not a pod the watch
    /// names: a pod of another node, or one not yet seen.
    PodCidr { node: String },
    /// Anything else: outside the cluster as far as this node knows.
    External,
}

impl Endpoint {
    /// The kind's name as serialised.
    pub fn kind(&self) -> &'static str {
        match self {
            Endpoint::Pod { .. } => "pod",
            Endpoint::Host { .. } => "host",
            Endpoint::Node { .. } => "node",
            Endpoint::PodCidr { .. } => "pod_cidr",
            Endpoint::External => "external",
        }
    }

    /// `namespace/pod` for a pod.
    pub fn pod_name(&self) -> Option<String> {
        match self {
            Endpoint::Pod { namespace, pod, .. } => Some(format!("{namespace}/{pod}")),
            _ => None,
        }
    }
}

/// Both endpoints of a connection, named after conn.log's `id.orig_h`
/// and `id.resp_h`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnIdentity {
    pub orig: Endpoint,
    pub resp: Endpoint,
}

/// Why the directory could not start.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("no node name (set NODE_NAME or identity.node_name)")]
    NoNodeName,
    #[error("no Kubernetes configuration found: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error("the pod watch has not listed pods yet")]
    NotSynced,
}

/// What the watches select.
#[derive(Clone, Debug, Default)]
pub struct WatchOptions {
    /// This node: the pod watch's field selector, and what `host` names.
    pub node_name: String,
    /// Every pod of the cluster rather than this node's.
    pub cluster_wide_pods: bool,
    /// Also watch Node objects (`node`, `pod_cidr`, this node's own
    /// addresses).
    pub watch_nodes: bool,
    /// Read ReplicaSets and Jobs to name Deployments and CronJobs (off
    /// when only the enforcer needs the index: its role grants neither).
    pub resolve_owners: bool,
}

/// Settings of `respond.kube` the identity section falls back to, so one
/// `NODE_NAME` and one kubeconfig serve both.
#[derive(Clone, Debug, Default)]
pub struct Fallbacks {
    pub node_name: String,
    pub kubeconfig: Option<PathBuf>,
    pub cluster_wide_pods: bool,
    /// The Kubernetes enforcer is on: it needs the pod index whatever
    /// `identity.enabled` says.
    pub enforcer: bool,
}

/// The started directory and whether events carry identity.
pub struct Started {
    /// The running watches, if any.
    pub directory: Option<Directory>,
    /// Events name their endpoints (`identity.enabled` is not false and
    /// the watch could start).
    pub attribute: bool,
}

/// The running watches and what they know. Cheap to clone; the watches
/// stop when the last clone is dropped.
#[derive(Clone)]
pub struct Directory {
    shared: Arc<Shared>,
}

struct Shared {
    node: String,
    pods: Arc<RwLock<PodIndex>>,
    nodes: Arc<RwLock<NodeIndex>>,
    host: Arc<RwLock<Vec<IpAddr>>>,
    watch_nodes: bool,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // Updates are whole steps, so a poisoned index is still consistent.
    lock.read().unwrap_or_else(|e| e.into_inner())
}

/// The client configuration: the kubeconfig file given, else in-cluster,
/// else the default kubeconfig, as `kubectl` would.
pub async fn client_config(kubeconfig: Option<&PathBuf>) -> Result<kube::Config, IdentityError> {
    Ok(match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await?,
    })
}

/// Starts what `cfg` (with `respond.kube`'s `fb`) asks for. Never fails:
/// outside a cluster with `enabled = "auto"` it is off with one info
/// line; where it was asked for and cannot start, it is degraded with one
/// warning, `osprey_identity_watch_up` at 0 and a `/readyz` note.
pub async fn start(
    cfg: &IdentityConfig,
    fb: &Fallbacks,
    registry: &Registry,
    health: Option<Arc<Health>>,
) -> Started {
    let attribute = cfg.enabled != Enabled::Off;
    let required = cfg.enabled == Enabled::On || fb.enforcer;
    if !attribute && !fb.enforcer {
        tracing::info!("pod identity off (identity.enabled = false)");
        return Started {
            directory: None,
            attribute: false,
        };
    }
    let metrics = IdentityMetrics::new(registry);
    let opts = WatchOptions {
        node_name: if cfg.node_name.is_empty() {
            fb.node_name.clone()
        } else {
            cfg.node_name.clone()
        },
        cluster_wide_pods: fb.cluster_wide_pods,
        // Only the enforcer needs the index: no more than its pods.
        watch_nodes: cfg.watch_nodes && attribute,
        resolve_owners: attribute,
    };
    let kubeconfig = cfg.kubeconfig.as_ref().or(fb.kubeconfig.as_ref());
    let started = match client_config(kubeconfig).await {
        Ok(kc) => Directory::start_with(kc, opts, metrics.clone(), health.clone()),
        Err(e) => Err(e),
    };
    match started {
        Ok(d) => Started {
            directory: Some(d),
            attribute,
        },
        Err(e) if required => {
            metrics.watch_up.with_label_values(&["pods"]).set(0);
            tracing::warn!(error = %e, "pod identity degraded: the pod watch cannot start; events carry no pod identity (detection goes on)");
            if let Some(h) = &health {
                h.set_note(watch::NOTE, Some(e.to_string()));
            }
            Started {
                directory: None,
                attribute: false,
            }
        }
        Err(e) => {
            tracing::info!(reason = %e, "pod identity off: not in a Kubernetes cluster (identity.enabled = \"auto\")");
            Started {
                directory: None,
                attribute: false,
            }
        }
    }
}

impl Directory {
    /// Starts the watches on the current tokio runtime with the client
    /// configuration given; does not wait for the first list (see
    /// [`Directory::wait_synced`]).
    pub fn start_with(
        client_cfg: kube::Config,
        opts: WatchOptions,
        metrics: IdentityMetrics,
        health: Option<Arc<Health>>,
    ) -> Result<Directory, IdentityError> {
        if opts.node_name.is_empty() && !opts.cluster_wide_pods {
            return Err(IdentityError::NoNodeName);
        }
        let client = Client::try_from(client_cfg).map_err(IdentityError::Client)?;
        let pods = Arc::new(RwLock::new(PodIndex::default()));
        let nodes = Arc::new(RwLock::new(NodeIndex::default()));
        let host = Arc::new(RwLock::new(watch::host_addresses()));
        let mut wc = watcher::Config::default();
        if !opts.cluster_wide_pods {
            wc = wc.fields(&format!("spec.nodeName={}", opts.node_name));
        }
        let mut tasks = vec![
            watch::spawn_pods(
                Api::<Pod>::all(client.clone()),
                wc,
                pods.clone(),
                Owners::new(opts.resolve_owners.then(|| client.clone()), metrics.clone()),
                Status::new("pods", "watch_pods", metrics.clone(), health.clone()),
                metrics.clone(),
            ),
            watch::spawn_host(host.clone()),
        ];
        if opts.watch_nodes {
            tasks.push(watch::spawn_nodes(
                Api::<Node>::all(client),
                nodes.clone(),
                Status::new("nodes", "watch_nodes", metrics.clone(), health),
                metrics,
            ));
        }
        tracing::info!(
            node = %opts.node_name,
            cluster_wide = opts.cluster_wide_pods,
            nodes = opts.watch_nodes,
            "pod identity watch started"
        );
        Ok(Directory {
            shared: Arc::new(Shared {
                node: opts.node_name,
                pods,
                nodes,
                host,
                watch_nodes: opts.watch_nodes,
                tasks,
            }),
        })
    }

    /// The pod that owns `ip`, as of the watch's last event.
    pub fn pod(&self, ip: IpAddr) -> Option<PodRef> {
        read(&self.shared.pods).get(&ip).cloned()
    }

    /// Whether the pod watch has listed pods once.
    pub fn synced(&self) -> bool {
        read(&self.shared.pods).synced
    }

    /// Waits until the pod watch (and the node watch, if any) has listed
    /// once, or `timeout`.
    pub async fn wait_synced(&self, timeout: Duration) -> Result<(), IdentityError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.synced() && (!self.shared.watch_nodes || read(&self.shared.nodes).synced) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(IdentityError::NotSynced);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What `ip` is, as far as the watches know now.
    pub fn endpoint(&self, ip: IpAddr) -> Endpoint {
        if let Some(p) = read(&self.shared.pods).get(&ip) {
            return Endpoint::Pod {
                namespace: p.namespace.clone(),
                pod: p.name.clone(),
                workload: p.workload.clone(),
                node: p.node.clone(),
            };
        }
        let me = &self.shared.node;
        let nodes = read(&self.shared.nodes);
        let node = nodes.node_of(&ip);
        if node == Some(me.as_str()) || read(&self.shared.host).contains(&ip) || ip.is_loopback() {
            return Endpoint::Host { node: me.clone() };
        }
        if let Some(n) = node {
            return Endpoint::Node { node: n.to_owned() };
        }
        if let Some(n) = nodes.pod_cidr_of(&ip) {
            return Endpoint::PodCidr { node: n.to_owned() };
        }
        Endpoint::External
    }

    /// Both endpoints of a connection.
    pub fn conn(&self, orig: IpAddr, resp: IpAddr) -> ConnIdentity {
        ConnIdentity {
            orig: self.endpoint(orig),
            resp: self.endpoint(resp),
        }
    }
}

/// What event writers hold: the directory when events are to name their
/// endpoints, nothing otherwise (outside a cluster, or turned off).
#[derive(Clone, Default)]
pub struct Attribution(Option<Directory>);

impl Attribution {
    pub fn new(directory: Option<Directory>) -> Attribution {
        Attribution(directory)
    }

    /// No identity on events.
    pub fn off() -> Attribution {
        Attribution(None)
    }

    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Both endpoints of a connection, when attribution is on.
    pub fn conn(&self, orig: IpAddr, resp: IpAddr) -> Option<ConnIdentity> {
        self.0.as_ref().map(|d| d.conn(orig, resp))
    }
}

impl From<&Started> for Attribution {
    fn from(s: &Started) -> Attribution {
        Attribution(s.directory.clone().filter(|_| s.attribute))
    }
}
