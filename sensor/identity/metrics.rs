//! The identity watch's metrics. No pod, namespace or address labels:
//! their number is not bounded.

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Registry};

use crate::metrics::{counter_vec, gauge, gauge_vec};

/// Counters and gauges of the pod and node watches.
#[derive(Clone)]
pub struct IdentityMetrics {
    /// 1 while a watch has listed its objects and runs, by resource
    /// (`pods`, `nodes`); 0 while it cannot (no RBAC, no API server).
    pub watch_up: IntGaugeVec,
    /// Failed API calls by operation (`watch_pods`, `watch_nodes`,
    /// `get_replicaset`, `get_job`).
    pub errors: IntCounterVec,
    /// This node's pods whose addresses events can name.
    pub pods_known: IntGauge,
    /// Nodes whose addresses and pod CIDRs are known.
    pub nodes_known: IntGauge,
}

impl IdentityMetrics {
    /// Registers the metrics on `r`; call once per registry.
    pub fn new(r: &Registry) -> IdentityMetrics {
        IdentityMetrics {
            watch_up: gauge_vec(
                r,
                "osprey_identity_watch_up",
                "1 while the pod identity watch of a resource (pods, nodes) is listed and running.",
                &["resource"],
            ),
            errors: counter_vec(
                r,
                "osprey_identity_errors_total",
                "Failed Kubernetes API calls of the pod identity watch, by operation.",
                &["op"],
            ),
            pods_known: gauge(
                r,
                "osprey_identity_pods_known",
                "Pods of this node whose addresses events can name.",
            ),
            nodes_known: gauge(
                r,
                "osprey_identity_nodes_known",
                "Nodes whose addresses and pod CIDRs events can name.",
            ),
        }
    }
}
