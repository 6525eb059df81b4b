//! The nftables enforcer's settings.

use serde::{Deserialize, Serialize};

use crate::respond::RateLimit;

/// Where and how osprey keeps its nftables state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NftConfig {
    /// Name of osprey's own `inet` table. Everything osprey enforces lives
    /// there and nowhere else, so other tools' rules are never touched and
    /// `osprey cleanup` removes all of it by deleting one table.
    pub table: String,
    /// Priority of the `prerouting` filter chain. -300 (`raw`) runs before
    /// conntrack (-200): a blocked or flooding source is dropped before it
    /// costs a conntrack entry, and before the routing decision, so the
    /// one chain covers traffic to the node (input) and traffic it forwards
    /// to pods (forward) alike.
    pub prerouting_priority: i32,
    /// The `nft` executable, by path or found in `PATH`: nodes with nft
    /// outside the PATH (distroless images) name it here.
    pub nft_path: String,
    /// Run `nft` inside this network namespace (`ip netns exec NAME nft`,
    /// as an argument vector, never a shell). Tests confine their rules to a
    /// throwaway namespace this way; a sensor on a node leaves it unset and
    /// acts on the namespace it runs in.
    pub netns: Option<String>,
    /// How often the caller runs `reconcile()`: the longest a `nft flush
    /// ruleset` or a firewalld reload can leave osprey's decisions
    /// unenforced.
    pub reconcile_interval_secs: u64,
    /// The rate limit of the base `ratelimit_v4`/`ratelimit_v6` sets. Rate
    /// limits that differ get sets and rules of their own, created on
    /// demand; most rules use the default, so most sources share one set.
    pub default_rate_limit: RateLimit,
    /// How long a source's rate-limit meter entry outlives its last packet:
    /// the meter forgets quiet sources, so its memory stays bounded (nft's
    /// meter size, 65535 entries, bounds it under a spoofed flood too).
    pub meter_timeout_secs: u32,
    /// Attempts after a failed nft call before the error is returned:
    /// transient failures (a concurrent ruleset change, netlink buffer
    /// pressure) pass on a retry, a refused operation never does.
    pub retries: u32,
    /// Pause before the first retry, doubled for each further one: short,
    /// because the caller waits for enforcement.
    pub retry_backoff_ms: u64,
    /// The longest one nft call may take before it is killed and counted
    /// as failed (the enforcer then retries the decision with backoff).
    pub call_timeout_ms: u64,
}

impl Default for NftConfig {
    fn default() -> Self {
        NftConfig {
            table: "osprey".into(),
            prerouting_priority: -300,
            nft_path: "nft".into(),
            netns: None,
            reconcile_interval_secs: 5,
            default_rate_limit: RateLimit {
                packets_per_sec: Some(100),
                bytes_per_sec: None,
                burst: 200,
            },
            meter_timeout_secs: 60,
            retries: 2,
            retry_backoff_ms: 50,
            call_timeout_ms: 5_000,
        }
    }
}
