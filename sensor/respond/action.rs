//! What the responder decided, in the form every enforcer, hook and the
//! platform reporter receive (and the platform API's payload carries).

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::evidence::Facts;
use crate::identity::ConnIdentity;

/// One decision about one target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// Idempotency key: the same decision about the same target from the
    /// same connection gets the same id, so a retried delivery or a replay
    /// after restart is recognised by the receiver.
    pub id: String,
    /// When it was decided, seconds since the Unix epoch.
    pub ts: f64,
    /// The rule that chose it.
    pub rule: String,
    #[serde(flatten)]
    pub kind: ActionKind,
    /// The address (or range) acted on.
    pub target: IpNet,
    /// How long the enforcement lasts; an alert's is zero.
    #[serde(with = "secs")]
    pub ttl: Duration,
    /// False in dry-run: logged and reported, never enforced.
    pub enforce: bool,
    /// Why the safety layer changed the rule's choice, if it did (e.g. a
    /// block softened to a rate limit because the source never completed
    /// a handshake).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub softened: Option<String>,
    pub evidence: Evidence,
}

/// What to do. Serialised with a `kind` tag: `{"kind":"rate_limit",...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ActionKind {
    /// Tell the platform (and alerts.log); nothing is enforced.
    Alert,
    /// Drop everything from the target for the TTL.
    Block,
    /// Police the target's traffic per source.
    RateLimit(RateLimit),
    /// Isolate the pod that owns the target address.
    QuarantinePod,
    /// Hand the action to a configured hook by name.
    Hook { hook: String },
}

impl ActionKind {
    /// The kind's name as in rules and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            ActionKind::Alert => "alert",
            ActionKind::Block => "block",
            ActionKind::RateLimit(_) => "rate_limit",
            ActionKind::QuarantinePod => "quarantine_pod",
            ActionKind::Hook { .. } => "hook",
        }
    }
}

/// A per-source rate limit: packets or bytes per second, with a burst in
/// the same unit. Exactly one of the rates is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RateLimit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets_per_sec: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_sec: Option<u64>,
    pub burst: u32,
}

/// The connection (and verdict) that led to the action, and what its
/// source did over the rule's window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub uid: String,
    /// Whether the record was an interim snapshot of an open connection.
    pub interim: bool,
    /// The model whose verdict matched; none for a rule on evidence alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f32>,
    pub orig_h: IpAddr,
    pub orig_p: u16,
    pub resp_h: IpAddr,
    pub resp_p: u16,
    pub proto: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub conn_state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<String>,
    /// What the source did over the rule's window, in numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<Facts>,
    /// Who the endpoints are (pod, host, node, pod_cidr, external), added
    /// by the responder when pod identity is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ConnIdentity>,
}

/// Seconds since the epoch now: the daemon's clock for admission (a
/// replay uses packet time instead).
pub fn wall_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Action {
    /// Seconds since the epoch now, as `ts` wants it in the daemon.
    pub fn now_ts() -> f64 {
        wall_secs()
    }

    /// When the enforcement ends, seconds since the epoch.
    pub fn expires_ts(&self) -> f64 {
        self.ts + self.ttl.as_secs_f64()
    }
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_flat_with_a_kind_tag() {
        let a = Action {
            id: "x".into(),
            ts: 1.5,
            rule: "scan".into(),
            kind: ActionKind::RateLimit(RateLimit {
                packets_per_sec: Some(100),
                bytes_per_sec: None,
                burst: 200,
            }),
            target: "198.18.0.9/32".parse().unwrap(),
            ttl: Duration::from_secs(600),
            enforce: true,
            softened: None,
            evidence: Evidence {
                uid: "C1".into(),
                interim: true,
                model: Some("m".into()),
                label: Some("scan".into()),
                score: Some(0.9),
                probability: None,
                orig_h: "198.18.0.9".parse().unwrap(),
                orig_p: 1,
                resp_h: "198.18.0.1".parse().unwrap(),
                resp_p: 80,
                proto: "tcp".into(),
                service: None,
                conn_state: "REJ".into(),
                history: Some("Sr".into()),
                facts: Some(Facts {
                    window_secs: 60.0,
                    failed_targets: 30,
                    forgeable: true,
                    ..Facts::default()
                }),
                identity: None,
            },
        };
        let j = serde_json::to_value(&a).unwrap();
        assert_eq!(j["kind"], "rate_limit");
        assert_eq!(j["packets_per_sec"], 100);
        assert_eq!(j["ttl"], 600);
        assert_eq!(j["evidence"]["facts"]["failed_targets"], 30);
        let back: Action = serde_json::from_value(j).unwrap();
        assert_eq!(back, a);
    }
}
