//! The enforcer's own metrics, registered on the daemon's registry.
//! No pod, namespace or address labels: their number is not bounded.

use prometheus::{IntCounterVec, IntGauge, Registry};

use crate::metrics::{counter_vec, gauge};

/// Counters and gauges of the Kubernetes enforcer.
#[derive(Clone)]
pub struct KubeMetrics {
    /// API requests by verb (get, list, apply, delete, watch) and result
    /// (ok, not_found, client_error, server_error, transport).
    pub requests: IntCounterVec,
    /// Failed attempts by operation, retried or not (404s are not errors).
    pub errors: IntCounterVec,
    /// osprey's NetworkPolicies of this node, as of the last change or GC.
    pub policies_active: IntGauge,
}

impl KubeMetrics {
    /// Registers the metrics on `r`; call once per registry.
    pub fn new(r: &Registry) -> KubeMetrics {
        KubeMetrics {
            requests: counter_vec(
                r,
                "osprey_kube_requests_total",
                "Kubernetes API requests, by verb and result.",
                &["verb", "result"],
            ),
            errors: counter_vec(
                r,
                "osprey_kube_errors_total",
                "Failed Kubernetes API attempts (retried or not), by operation.",
                &["op"],
            ),
            policies_active: gauge(
                r,
                "osprey_kube_policies_active",
                "NetworkPolicies osprey maintains for this node.",
            ),
        }
    }
}
