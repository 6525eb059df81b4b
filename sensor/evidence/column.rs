//! The evidence columns rules can name, and the numbers an action carries.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::targets::Distinct;

/// What a column counts over its window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Column {
    /// Connections the source opened.
    Conns,
    /// Failed attempts (`attempt.rs`), ICMP unreachable answers included.
    Failed,
    /// Connections on which the source proved its address.
    Verified,
    /// Packets the source sent.
    Packets,
    /// Connections a model flagged with one of the rule's labels.
    Flagged,
    /// Of those, connections on which the source proved its address.
    VerifiedFlagged,
    /// Credentials the servers refused it (HTTP 401/407, FTP 530), on
    /// connections where it proved its address: brute force, seen without
    /// a model.
    AuthFailures,
    /// Connections on which it proved its address, sent data, and got no
    /// byte back for `evidence.stall_secs` or more: requests held open
    /// unfinished (slowloris), seen without a model.
    Stalled,
    /// Distinct host:port pairs touched.
    Targets,
    /// Distinct hosts touched.
    Hosts,
    /// Distinct ports touched.
    Ports,
    /// Distinct host:port pairs of failed attempts.
    FailedTargets,
    /// Distinct hosts of failed attempts.
    FailedHosts,
    /// Distinct ports of failed attempts.
    FailedPorts,
    /// The same counts for the source and the record's target service
    /// (responder address, port and protocol).
    ServiceConns,
    ServiceFailed,
    ServiceVerified,
    ServicePackets,
    ServiceFlagged,
    ServiceVerifiedFlagged,
    ServiceAuthFailures,
    ServiceStalled,
}

/// Every column with its rule-file name.
pub const COLUMNS: [(Column, &str); 22] = [
    (Column::Conns, "conns"),
    (Column::Failed, "failed"),
    (Column::Verified, "verified"),
    (Column::Packets, "packets"),
    (Column::Flagged, "flagged"),
    (Column::VerifiedFlagged, "verified_flagged"),
    (Column::AuthFailures, "auth_failures"),
    (Column::Stalled, "stalled"),
    (Column::Targets, "targets"),
    (Column::Hosts, "hosts"),
    (Column::Ports, "ports"),
    (Column::FailedTargets, "failed_targets"),
    (Column::FailedHosts, "failed_hosts"),
    (Column::FailedPorts, "failed_ports"),
    (Column::ServiceConns, "service_conns"),
    (Column::ServiceFailed, "service_failed"),
    (Column::ServiceVerified, "service_verified"),
    (Column::ServicePackets, "service_packets"),
    (Column::ServiceFlagged, "service_flagged"),
    (Column::ServiceVerifiedFlagged, "service_verified_flagged"),
    (Column::ServiceAuthFailures, "service_auth_failures"),
    (Column::ServiceStalled, "service_stalled"),
];

impl Column {
    pub fn name(self) -> &'static str {
        COLUMNS
            .iter()
            .find(|(c, _)| *c == self)
            .map_or("?", |(_, n)| n)
    }

    pub fn parse(name: &str) -> Option<Column> {
        COLUMNS.iter().find(|(_, n)| *n == name).map(|(c, _)| *c)
    }

    /// Whether somebody else could make this count rise for a source by
    /// putting its address on packets. Only what happened on connections
    /// where the source proved its address cannot be forged.
    pub fn forgeable(self) -> bool {
        !matches!(
            self,
            Column::Verified
                | Column::VerifiedFlagged
                | Column::AuthFailures
                | Column::Stalled
                | Column::ServiceVerified
                | Column::ServiceVerifiedFlagged
                | Column::ServiceAuthFailures
                | Column::ServiceStalled
        )
    }

    /// Whether the column counts flagged connections (and so depends on
    /// the rule's models and labels).
    pub fn is_flagged(self) -> bool {
        matches!(
            self,
            Column::Flagged
                | Column::VerifiedFlagged
                | Column::ServiceFlagged
                | Column::ServiceVerifiedFlagged
        )
    }

    /// The distinct count behind the column, with whether it counts only
    /// failed attempts.
    pub fn distinct(self) -> Option<(Distinct, bool)> {
        Some(match self {
            Column::Targets => (Distinct::Targets, false),
            Column::Hosts => (Distinct::Hosts, false),
            Column::Ports => (Distinct::Ports, false),
            Column::FailedTargets => (Distinct::Targets, true),
            Column::FailedHosts => (Distinct::Hosts, true),
            Column::FailedPorts => (Distinct::Ports, true),
            _ => return None,
        })
    }
}

/// What a source did, in numbers, over the window of the rule that acted:
/// the part of an action an operator reads to see why.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// The window the counts cover.
    pub window_secs: f64,
    pub conns: u64,
    pub failed: u64,
    pub verified: u64,
    pub packets: u64,
    pub auth_failures: u64,
    pub stalled: u64,
    pub targets: u64,
    pub hosts: u64,
    pub ports: u64,
    pub failed_targets: u64,
    pub failed_hosts: u64,
    pub failed_ports: u64,
    /// Connections flagged per model and label (`model/label`), with how
    /// many of them were verified.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flagged: BTreeMap<String, FlaggedCount>,
    /// The same counts for the target service of the connection that
    /// decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceFacts>,
    /// When osprey first saw the source (record time), as far as its
    /// bounded memory reaches back.
    pub first_seen: f64,
    /// The source's last verified exchange (record time), if any within
    /// the known-good period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified: Option<f64>,
    /// Whether the evidence the rule matched on could be forged by
    /// somebody else using the source's address.
    pub forgeable: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FlaggedCount {
    pub conns: u64,
    pub verified: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceFacts {
    pub resp_h: IpAddr,
    pub resp_p: u16,
    pub proto: String,
    pub conns: u64,
    pub failed: u64,
    pub verified: u64,
    pub packets: u64,
    pub auth_failures: u64,
    pub stalled: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flagged: BTreeMap<String, FlaggedCount>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_only_verified_columns_are_unforgeable() {
        for (c, n) in COLUMNS {
            assert_eq!(Column::parse(n), Some(c));
            assert_eq!(c.name(), n);
            let proven = n.contains("verified") || n.contains("auth") || n.contains("stalled");
            assert_eq!(!c.forgeable(), proven, "{n}");
        }
        assert_eq!(Column::parse("bogus"), None);
    }
}
