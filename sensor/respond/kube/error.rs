//! Why the Kubernetes enforcer could not act.

use std::net::IpAddr;

use ipnet::IpNet;

/// Every failure of the enforcer; the message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("kube.node_name is empty (set NODE_NAME or kube.cluster_wide_pods)")]
    NoNodeName,
    #[error(transparent)]
    Config(#[from] crate::identity::IdentityError),
    #[error("the pod watch could not start (see the pod identity warning)")]
    NoPodWatch,
    #[error("kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error("kubernetes API: {op}: {source}")]
    Api {
        op: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("a {got} action cannot be enforced as a {expected}")]
    WrongKind {
        expected: &'static str,
        got: &'static str,
    },
    #[error("{0} is a range; a pod is found by a single address")]
    NotAnAddress(IpNet),
    #[error("no known pod has address {0}")]
    UnknownPod(IpAddr),
    #[error(
        "namespace {namespace} has not opted in to source blocking \
         (annotate it {annotation}=\"true\")"
    )]
    NotOptedIn {
        namespace: String,
        annotation: String,
    },
    #[error("pod {namespace}/{name} has no labels to select it by")]
    Unselectable { namespace: String, name: String },
    #[error("refusing to block {0}: it would except every address")]
    TooBroad(IpNet),
    #[error("the pod watch has not listed pods yet")]
    NotSynced,
}

impl KubeError {
    pub(crate) fn api(op: &'static str) -> impl FnOnce(kube::Error) -> KubeError {
        move |source| KubeError::Api { op, source }
    }
}
