//! Between a rule's decision and an enforcer: the safety checks, the
//! dry-run switch, and de-duplication. Pure bookkeeping with no I/O, so
//! every guard is tested directly.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use ipnet::IpNet;
use sha1::{Digest, Sha1};

use super::action::{Action, ActionKind, Evidence, RateLimit};
use super::rules::Decision;
use super::safety::{Allowlist, Breaker, BreakerVerdict};

/// What the scorer proposes for one record.
#[derive(Clone, Debug)]
pub struct Proposal {
    pub decision: Decision,
    pub evidence: Evidence,
    /// The originator has answered a SYN-ACK recently (`ProvenSources`).
    pub source_proven: bool,
}

/// Why a proposal led to no action, or to a weaker one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Carry out (or, in dry-run, log) the action.
    Act,
    /// The same action on the same target is already in force.
    Duplicate,
}

#[derive(Clone, Debug)]
pub struct AdmitConfig {
    pub enforce: bool,
    /// The rate limit a block becomes when its source may be spoofed.
    pub spoofed_limit: RateLimit,
    /// How long the same rule's alert about the same address is not
    /// repeated.
    pub alert_repeat: Duration,
}

/// Counters the responder turns into metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdmitCounts {
    pub allowlisted: u64,
    pub softened_spoofable: u64,
    pub breaker_refused: u64,
    pub breaker_trips: u64,
    pub duplicates: u64,
}

pub struct Admission {
    cfg: AdmitConfig,
    pub allowlist: Allowlist,
    breaker: Breaker,
    max_per_minute: u32,
    /// (target, kind name or alert's rule) -> until when it holds.
    active: HashMap<(IpNet, String), Instant>,
    pub counts: AdmitCounts,
}

impl Admission {
    pub fn new(cfg: AdmitConfig, allowlist: Allowlist, max_actions_per_minute: u32) -> Admission {
        Admission {
            cfg,
            allowlist,
            breaker: Breaker::new(max_actions_per_minute),
            max_per_minute: max_actions_per_minute,
            active: HashMap::new(),
            counts: AdmitCounts::default(),
        }
    }

    pub fn breaker_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// Turns a proposal into the action to carry out, after every guard.
    /// Guards soften rather than drop: an allowlisted target or an open
    /// breaker still yields an alert (with `softened` saying why), so the
    /// platform sees what would have happened.
    pub fn admit(&mut self, p: Proposal, now: Instant) -> (Outcome, Action) {
        let d = p.decision;
        // An IPv4-mapped IPv6 address is the IPv4 host: the allowlist and
        // the v4 sets must see it as such.
        let target = IpNet::from(d.target.to_canonical());
        let mut kind = d.kind;
        let mut ttl = d.ttl;
        let mut softened = None;
        let soften_to_alert = |why: String, kind: &mut ActionKind, ttl: &mut Duration| {
            *kind = ActionKind::Alert;
            *ttl = Duration::ZERO;
            Some(why)
        };
        if !matches!(kind, ActionKind::Alert) {
            if let Some(a) = self.allowlist.covering(&target) {
                self.counts.allowlisted += 1;
                softened = soften_to_alert(
                    format!("{target} is allowlisted ({a})"),
                    &mut kind,
                    &mut ttl,
                );
            }
        }
        if kind == ActionKind::Block && d.target == p.evidence.orig_h && !p.source_proven {
            self.counts.softened_spoofable += 1;
            kind = ActionKind::RateLimit(self.cfg.spoofed_limit);
            softened = Some("the source never answered a SYN-ACK, so its address may be spoofed: rate limited instead of blocked".into());
        }
        let key_name = match &kind {
            ActionKind::Alert => format!("alert:{}", d.rule),
            k => k.name().to_string(),
        };
        let key = (target, key_name);
        let hold = if kind == ActionKind::Alert {
            self.cfg.alert_repeat
        } else {
            ttl
        };
        if let Some(&until) = self.active.get(&key) {
            // Still in force for more than half its time: nothing to do.
            // Past half, re-applying refreshes the enforcement's timeout.
            if until > now + hold / 2 {
                self.counts.duplicates += 1;
                return (
                    Outcome::Duplicate,
                    self.action(&d.rule, kind, target, ttl, softened, p.evidence),
                );
            }
        }
        if kind != ActionKind::Alert {
            match self.breaker.check(now) {
                BreakerVerdict::Admit => {}
                BreakerVerdict::Refuse { tripped } => {
                    self.counts.breaker_refused += 1;
                    self.counts.breaker_trips += u64::from(tripped);
                    softened = soften_to_alert(
                        format!(
                            "circuit breaker open (more than {} enforcements per minute): {} not enforced",
                            self.max_per_minute,
                            kind.name()
                        ),
                        &mut kind,
                        &mut ttl,
                    );
                    return (
                        Outcome::Act,
                        self.action(&d.rule, kind, target, ttl, softened, p.evidence),
                    );
                }
            }
        }
        self.active.insert(key, now + hold);
        if self.active.len() > 100_000 {
            self.active.retain(|_, &mut until| until > now);
        }
        (
            Outcome::Act,
            self.action(&d.rule, kind, target, ttl, softened, p.evidence),
        )
    }

    /// Forgets enforcement that has run out (its TTL passed): the
    /// responder calls it before counting active actions.
    pub fn expire(&mut self, now: Instant) {
        self.active.retain(|_, &mut until| until > now);
    }

    /// Active enforcement by kind name (alerts excluded).
    pub fn active_by_kind(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for (_, kind) in self.active.keys() {
            if !kind.starts_with("alert:") {
                *out.entry(kind.clone()).or_insert(0) += 1;
            }
        }
        out
    }

    fn action(
        &self,
        rule: &str,
        kind: ActionKind,
        target: IpNet,
        ttl: Duration,
        softened: Option<String>,
        evidence: Evidence,
    ) -> Action {
        let enforce = self.cfg.enforce && kind != ActionKind::Alert;
        Action {
            id: action_id(rule, &kind, target, &evidence.uid, evidence.interim),
            ts: Action::now_ts(),
            rule: rule.to_string(),
            kind,
            target,
            ttl,
            enforce,
            softened,
            evidence,
        }
    }
}

/// Deterministic: the same rule acting the same way on the same target
/// because of the same connection snapshot gets the same key, so a
/// receiver can drop a redelivered event.
fn action_id(rule: &str, kind: &ActionKind, target: IpNet, uid: &str, interim: bool) -> String {
    let mut h = Sha1::new();
    for part in [
        rule,
        kind.name(),
        &target.to_string(),
        uid,
        if interim { "i" } else { "f" },
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The address a decision is about, for log lines.
pub fn describe(a: &Action) -> String {
    let target: IpAddr = a.target.addr();
    format!(
        "{} {} ({}s) by rule {}",
        a.kind.name(),
        target,
        a.ttl.as_secs(),
        a.rule
    )
}

#[cfg(test)]
#[path = "admit_tests.rs"]
mod tests;
