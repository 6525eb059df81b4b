//! Evidence: what each source did over time, the facts rules decide on.
//!
//! A verdict is about one connection; an action is about a source. This
//! stage sits between the models and the rules and turns the stream of
//! records (and their verdicts) into per-source facts over bounded time
//! windows: connections opened, failed attempts, distinct hosts, ports
//! and host:port pairs touched (and failed), packets, connections flagged
//! per model and label, connections on which the source proved its
//! address — per source, and per source and target service. It also
//! remembers the *known-good* peers: addresses that had a verified
//! exchange (`conn/verify.rs`) in which they sent data, within
//! `known_good_secs`. (A bare handshake proves an address too, but a
//! connect scan makes one on every open port; a conversation is what a
//! real client has and a scan does not.)
//!
//! The anchors it learns from: Zeek's scan policy and bro-simple-scan
//! (distinct host:port pairs of failed attempts), CrowdSec's leaky buckets
//! (counts of one kind of event per source within a window, a distinct
//! field, buckets per source and service), and psad's lesson that
//! evidence a forger can produce must not get innocent addresses blocked.
//! Every column says whether it can be forged (`column.rs`): only
//! connections on which the source proved its address cannot.
//!
//! Memory is bounded: at most `max_sources` sources, `max_services`
//! source+service pairs, `max_open_conns` open connections remembered
//! between their snapshots and `max_known_good` known-good peers, each
//! table evicting its least recently active entries (sampled, O(1)) and
//! counting the evictions: [`memory_bound`] is what that means in bytes.
//! With the defaults, the bundled rules (4 windows) and models (12
//! labels) it is about 96 MB, reached only when every table is full of
//! entries at their worst; a spoofed flood (one-packet sources) costs a
//! third of it (tests/evidence.rs measures both).

pub mod attempt;
pub mod bound;
pub mod column;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod stage;
pub mod table;
pub mod targets;
pub mod window;

pub use bound::{memory_bound, MemoryBound};
pub use column::{Column, Facts};
pub use stage::{EvidenceStage, EvidenceStats, LabelId, Observed};
pub use window::Windows;

use serde::{Deserialize, Serialize};

/// The `evidence` section of the configuration.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EvidenceConfig {
    /// Sources tracked at most; beyond it the least recently active are
    /// forgotten (counted).
    pub max_sources: usize,
    /// Source + target service pairs tracked at most.
    pub max_services: usize,
    /// Distinct host:port pairs remembered per source: distinct counts are
    /// exact up to this many, and no rule may ask for more.
    pub max_targets_per_source: usize,
    /// Open connections whose snapshots are remembered, so that each
    /// connection counts once.
    pub max_open_conns: usize,
    /// An open connection silent for longer than this is forgotten.
    pub open_conn_secs: f64,
    /// A verified connection on which the source sent data and got no
    /// byte back for this long counts as `stalled` (slowloris holds
    /// requests open unfinished; a server answers a finished one).
    pub stall_secs: f64,
    /// How long a verified exchange in which the address sent data makes
    /// it a known-good peer, never acted on by evidence a forger could
    /// produce.
    pub known_good_secs: f64,
    /// Known-good peers remembered at most.
    pub max_known_good: usize,
}

impl Default for EvidenceConfig {
    /// 20,000 sources active within the rules' windows cover a busy node;
    /// a flood of spoofed sources beyond that evicts the quiet ones first.
    /// The whole stage then holds at most ~96 MB (`memory_bound`).
    fn default() -> Self {
        EvidenceConfig {
            max_sources: 20_000,
            max_services: 20_000,
            max_targets_per_source: 64,
            max_open_conns: 50_000,
            open_conn_secs: 600.0,
            stall_secs: 10.0,
            known_good_secs: 86_400.0,
            max_known_good: 50_000,
        }
    }
}

impl EvidenceConfig {
    /// Checks what serde cannot; the error names the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (key, v) in [
            ("evidence.max_sources", self.max_sources),
            ("evidence.max_services", self.max_services),
            (
                "evidence.max_targets_per_source",
                self.max_targets_per_source,
            ),
            ("evidence.max_open_conns", self.max_open_conns),
            ("evidence.max_known_good", self.max_known_good),
        ] {
            if v == 0 {
                return Err((key.into(), "must be positive".into()));
            }
        }
        if self.max_targets_per_source > 4096 {
            return Err((
                "evidence.max_targets_per_source".into(),
                "at most 4096 (each source's distinct set is scanned per rule)".into(),
            ));
        }
        for (key, v) in [
            ("evidence.open_conn_secs", self.open_conn_secs),
            ("evidence.stall_secs", self.stall_secs),
            ("evidence.known_good_secs", self.known_good_secs),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err((
                    key.into(),
                    format!("{v} is not a positive number of seconds"),
                ));
            }
        }
        Ok(())
    }
}
