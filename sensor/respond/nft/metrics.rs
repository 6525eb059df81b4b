//! The enforcer's own metrics. No address labels: set names only.

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::metrics::{counter, counter_vec};

/// Registered once per enforcer on the registry it is given.
#[derive(Clone)]
pub struct NftMetrics {
    pub operations: IntCounterVec,
    pub errors: IntCounterVec,
    pub reconcile_repairs: IntCounter,
    pub allowlist_lifted: IntCounter,
    pub active_elements: IntGaugeVec,
}

impl NftMetrics {
    pub fn register(r: &Registry) -> NftMetrics {
        let active_elements = IntGaugeVec::new(
            Opts::new(
                "osprey_nft_active_elements",
                "Decisions osprey holds live in each of its nftables sets.",
            ),
            &["set"],
        )
        .expect("static metric definition");
        r.register(Box::new(active_elements.clone()))
            .expect("each metric is registered once");
        NftMetrics {
            operations: counter_vec(
                r,
                "osprey_nft_operations_total",
                "nft invocations by operation and result (ok, retried, not_found, timeout, error).",
                &["op", "result"],
            ),
            errors: counter_vec(
                r,
                "osprey_nft_errors_total",
                "nftables operations that failed after their retries.",
                &["op"],
            ),
            reconcile_repairs: counter(
                r,
                "osprey_nft_reconcile_repairs_total",
                "Reconcile passes that found osprey's table, sets, rules or elements gone and restored them.",
            ),
            allowlist_lifted: counter(
                r,
                "osprey_nft_allowlist_lifted_total",
                "Elements removed from osprey's sets because the allowlist covers them (adopted from an earlier run, or allowlisted since).",
            ),
            active_elements,
        }
    }
}
