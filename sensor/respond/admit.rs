//! Between a rule's decision and an enforcer: the guards no rule can talk
//! its way past, the dry-run switch, de-duplication and escalation. Pure
//! bookkeeping with no I/O and no clock of its own (the caller says what
//! time it is: the wall clock in the daemon, packet time in a replay), so
//! every guard is tested directly and a replay decides as the daemon does.
//!
//! The guards, in order:
//! 1. the allowlist (node addresses, gateways, resolvers, API server,
//!    configured ranges) is never acted on;
//! 2. a *known-good peer* — an address with a verified exchange within
//!    `evidence.known_good_secs` — is never enforced against on evidence a
//!    forger could produce: a forger can put a known client's address on
//!    SYNs and blind ACKs, and the client's own RSTs follow; only an alert
//!    says what was seen;
//! 3. a circuit breaker per kind of action, so that a flood's rate limits
//!    cannot use up the budget a real scanner's block needs.
//!
//! Each guard softens rather than drops: the action becomes an alert whose
//! `softened` says why, so the platform sees what would have happened.

use std::net::IpAddr;
use std::time::Duration;

use hashbrown::HashMap;
use ipnet::IpNet;
use sha1::{Digest, Sha1};

use super::action::{Action, ActionKind, Evidence};
use super::rules::Decision;
use super::safety::{Allowlist, Breaker, BreakerVerdict};
use crate::evidence::table::Bounded;

/// What the decision stage proposes for one record.
#[derive(Clone, Debug)]
pub struct Proposal {
    pub decision: Decision,
    pub evidence: Evidence,
    /// The target's last verified exchange (record time), if within the
    /// known-good period.
    pub known_good: Option<f64>,
    /// Whether somebody else could have produced the evidence by forging
    /// the target's address.
    pub forgeable: bool,
    /// Record time of the decision.
    pub at: f64,
}

/// Why a proposal led to no action, or to a weaker one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Carry out (or, in dry-run, log) the action.
    Act,
    /// The same action on the same target is already in force.
    Duplicate,
}

/// Enforcements per minute each kind of action may make before its
/// breaker opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerLimits {
    pub block: u32,
    pub rate_limit: u32,
    pub quarantine_pod: u32,
    pub hook: u32,
}

impl BreakerLimits {
    fn of(&self, kind: &str) -> u32 {
        match kind {
            "block" => self.block,
            "rate_limit" => self.rate_limit,
            "quarantine_pod" => self.quarantine_pod,
            _ => self.hook,
        }
    }
}

#[derive(Clone, Debug)]
pub struct AdmitConfig {
    pub enforce: bool,
    /// How long the same rule's alert about the same address is not
    /// repeated.
    pub alert_repeat: Duration,
    pub breakers: BreakerLimits,
    /// Earlier enforcements on a target count for escalation this long.
    pub repeat_memory: Duration,
    /// IPv6 prefix aggregation, when on.
    pub ipv6_aggregate: Option<Aggregate>,
}

/// When decisions about IPv6 hosts become one about their prefix: a
/// source that rotates through the addresses of its /64 (privacy
/// addresses, a hosting provider's allocation) would otherwise cost one
/// block per address, each only after it offended anew.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aggregate {
    /// Prefix length the decision widens to.
    pub prefix: u8,
    /// Distinct addresses of one prefix enforced against (within
    /// `repeat_memory`) before the next decision covers the prefix.
    pub after: u32,
}

/// Counters the responder turns into metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdmitCounts {
    pub allowlisted: u64,
    pub known_good: u64,
    pub breaker_refused: u64,
    pub breaker_trips: u64,
    pub duplicates: u64,
    pub escalated: u64,
    /// Decisions widened to an IPv6 prefix.
    pub aggregated: u64,
    /// Lifts an operator asked for.
    pub lifts: u64,
    /// Proposals softened because an operator lifted their target and
    /// their evidence began before that.
    pub lifted_refused: u64,
}

/// Enforcements on one target and kind, for escalation.
#[derive(Clone, Copy, Debug)]
struct Offences {
    count: u32,
    last: f64,
}

/// Targets remembered for escalation (bounded: a forger making up
/// addresses cannot grow it).
const MAX_OFFENDERS: usize = 100_000;

/// Lifted ranges remembered (an operator lifts a handful; the bound only
/// keeps a script gone wrong from growing the table).
const MAX_LIFTED: usize = 10_000;

/// IPv6 addresses of one prefix enforced against, for aggregation.
#[derive(Clone, Debug)]
struct Spread {
    addrs: Vec<IpAddr>,
    last: f64,
}

pub struct Admission {
    cfg: AdmitConfig,
    pub allowlist: Allowlist,
    breakers: HashMap<&'static str, Breaker>,
    /// (target, kind name or alert's rule) -> (until when it holds, its
    /// TTL, the rule that made it).
    active: HashMap<(IpNet, String), (f64, Duration, String)>,
    /// Ranges an operator lifted decisions on, and when: a decision about
    /// them needs evidence newer than the lift.
    lifted: Bounded<IpNet, f64>,
    offences: Bounded<(IpNet, &'static str), Offences>,
    /// (IPv6 prefix, kind) -> its addresses enforced against.
    spreads: Bounded<(IpNet, &'static str), Spread>,
    pub counts: AdmitCounts,
}

impl Admission {
    pub fn new(cfg: AdmitConfig, allowlist: Allowlist) -> Admission {
        Admission {
            cfg,
            allowlist,
            breakers: HashMap::new(),
            active: HashMap::new(),
            lifted: Bounded::new(MAX_LIFTED),
            offences: Bounded::new(MAX_OFFENDERS),
            spreads: Bounded::new(MAX_OFFENDERS),
            counts: AdmitCounts::default(),
        }
    }

    /// Whether actions are enforced (false in dry-run).
    pub fn enforcing(&self) -> bool {
        self.cfg.enforce
    }

    /// Whether any kind's breaker holds enforcement off now.
    pub fn breaker_open(&self) -> bool {
        self.breakers.values().any(Breaker::is_open)
    }

    /// The kinds whose breaker is open.
    pub fn open_breakers(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = self
            .breakers
            .iter()
            .filter(|(_, b)| b.is_open())
            .map(|(k, _)| *k)
            .collect();
        v.sort_unstable();
        v
    }

    /// Turns a proposal into the action to carry out, after every guard,
    /// at time `now` (seconds since the epoch).
    pub fn admit(&mut self, p: Proposal, now: f64) -> (Outcome, Action) {
        let d = p.decision;
        // An IPv4-mapped IPv6 address is the IPv4 host: the allowlist and
        // the v4 sets must see it as such.
        let mut target = IpNet::from(d.target.to_canonical());
        let mut kind = d.kind;
        let mut ttl = d.ttl;
        let mut softened = None;
        let to_alert = |why: String, kind: &mut ActionKind, ttl: &mut Duration| {
            *kind = ActionKind::Alert;
            *ttl = Duration::ZERO;
            Some(why)
        };
        if kind != ActionKind::Alert {
            if let Some(a) = self.allowlist.covering(&target) {
                self.counts.allowlisted += 1;
                softened = to_alert(
                    format!("{target} is allowlisted ({a})"),
                    &mut kind,
                    &mut ttl,
                );
            }
        }
        if kind != ActionKind::Alert && p.forgeable {
            if let Some(last) = p.known_good {
                self.counts.known_good += 1;
                softened = to_alert(
                    format!(
                        "{} is a known-good peer (verified exchange {:.0} s before) and this evidence can be forged by anyone using its address: alert only",
                        target.addr(),
                        (p.at - last).max(0.0)
                    ),
                    &mut kind,
                    &mut ttl,
                );
            }
        }
        if kind != ActionKind::Alert {
            // The evidence began `window` before the record that completed
            // it; a lift after that start means the operator has not seen
            // this evidence judged anew.
            let window = p
                .evidence
                .facts
                .as_ref()
                .map_or(0.0, |f| f.window_secs.max(0.0));
            if let Some(at) = self.lifted_after(&target, p.at - window) {
                self.counts.lifted_refused += 1;
                softened = to_alert(
                    format!(
                        "decisions on {target} were lifted by an operator {:.0} s before; acting again needs evidence newer than that",
                        (p.at - at).max(0.0)
                    ),
                    &mut kind,
                    &mut ttl,
                );
            }
        }
        if let (Some(prefix), ActionKind::Block | ActionKind::RateLimit(_)) =
            (self.prefix_of(target), &kind)
        {
            let name = kind.name();
            // A prefix decision in force covers its addresses.
            if let Some(&(until, held_ttl, _)) = self.active.get(&(prefix, name.to_string())) {
                if until > now {
                    self.counts.duplicates += 1;
                    return (
                        Outcome::Duplicate,
                        self.action(&d.rule, kind, prefix, held_ttl, softened, p.evidence, now),
                    );
                }
            }
            if self.spread(prefix, name, target.addr(), now) {
                // Never widen over an allowlisted address: the host alone
                // is blocked then.
                if self.allowlist.covering(&prefix).is_none() {
                    self.counts.aggregated += 1;
                    target = prefix;
                }
            }
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
        let mut refresh = false;
        if let Some(&(until, held_ttl, _)) = self.active.get(&key) {
            // Still in force for more than half its time: nothing to do.
            // Past half, re-applying refreshes the enforcement's timeout
            // with the TTL it got (a refresh is not a repeat offence).
            if until > now {
                let left = until - now;
                if left > held_ttl.as_secs_f64() / 2.0 || kind == ActionKind::Alert {
                    self.counts.duplicates += 1;
                    return (
                        Outcome::Duplicate,
                        self.action(&d.rule, kind, target, held_ttl, softened, p.evidence, now),
                    );
                }
                refresh = true;
                ttl = held_ttl;
            }
        }
        if kind != ActionKind::Alert {
            let name = kind.name();
            let limit = self.cfg.breakers.of(name);
            let breaker = self
                .breakers
                .entry(name)
                .or_insert_with(|| Breaker::new(limit));
            match breaker.check(now) {
                BreakerVerdict::Admit => {}
                BreakerVerdict::Refuse { tripped } => {
                    self.counts.breaker_refused += 1;
                    self.counts.breaker_trips += u64::from(tripped);
                    softened = to_alert(
                        format!(
                            "circuit breaker for {name} open (more than {limit} per minute): not enforced"
                        ),
                        &mut kind,
                        &mut ttl,
                    );
                    return (
                        Outcome::Act,
                        self.action(&d.rule, kind, target, ttl, softened, p.evidence, now),
                    );
                }
            }
            if !refresh {
                ttl = self.escalated(target, name, ttl, d.escalate.as_ref(), now);
            }
        }
        let hold = if kind == ActionKind::Alert { hold } else { ttl };
        self.active
            .insert(key, (now + hold.as_secs_f64(), hold, d.rule.clone()));
        if self.active.len() > 100_000 {
            self.active.retain(|_, &mut (until, _, _)| until > now);
        }
        (
            Outcome::Act,
            self.action(&d.rule, kind, target, ttl, softened, p.evidence, now),
        )
    }

    /// The aggregation prefix of an IPv6 host target, when aggregation is
    /// on.
    fn prefix_of(&self, target: IpNet) -> Option<IpNet> {
        let agg = self.cfg.ipv6_aggregate?;
        match target {
            IpNet::V6(n) if n.prefix_len() == 128 => ipnet::Ipv6Net::new(n.addr(), agg.prefix)
                .ok()
                .map(|p| IpNet::V6(p.trunc())),
            _ => None,
        }
    }

    /// Notes `addr` as enforced against within `prefix`; true when enough
    /// other addresses of the prefix were before it.
    fn spread(&mut self, prefix: IpNet, kind: &'static str, addr: IpAddr, now: f64) -> bool {
        let Some(after) = self.cfg.ipv6_aggregate.map(|a| a.after as usize) else {
            return false;
        };
        let memory = self.cfg.repeat_memory.as_secs_f64();
        let i = self.spreads.index_or_insert((prefix, kind), || Spread {
            addrs: Vec::new(),
            last: now,
        });
        let Some(s) = self.spreads.at_mut(i) else {
            return false;
        };
        if now - s.last > memory {
            s.addrs.clear();
        }
        s.last = now;
        let others = s.addrs.iter().filter(|a| **a != addr).count();
        if !s.addrs.contains(&addr) && s.addrs.len() < after {
            s.addrs.push(addr);
        }
        others >= after
    }

    /// The TTL of a new enforcement on `target`: the rule's, times the
    /// escalation factor for every earlier one within `repeat_memory`.
    fn escalated(
        &mut self,
        target: IpNet,
        kind: &'static str,
        ttl: Duration,
        esc: Option<&super::rules::Escalate>,
        now: f64,
    ) -> Duration {
        let memory = self.cfg.repeat_memory.as_secs_f64();
        let i = self.offences.index_or_insert((target, kind), || Offences {
            count: 0,
            last: now,
        });
        let Some(o) = self.offences.at_mut(i) else {
            return ttl;
        };
        if now - o.last > memory {
            o.count = 0;
        }
        let before = o.count;
        o.count = o.count.saturating_add(1);
        o.last = now;
        let Some(e) = esc else { return ttl };
        if before == 0 {
            return ttl;
        }
        self.counts.escalated += 1;
        let factor = f64::from(e.factor).powi(before.min(64) as i32);
        let secs = (ttl.as_secs_f64() * factor).min(e.max_ttl.as_secs_f64());
        Duration::from_secs(secs.round() as u64)
    }

    /// Forgets enforcement that has run out (its TTL passed): the
    /// responder calls it before counting active actions.
    pub fn expire(&mut self, now: f64) {
        self.active.retain(|_, &mut (until, _, _)| until > now);
    }

    /// Lifts every decision whose target overlaps `net` at `now`
    /// (seconds since the epoch): they stop counting as in force, their
    /// escalation history is forgotten (the operator said they were
    /// wrong), and a new decision on any address of `net` needs evidence
    /// gathered after now. Returns the lifted (target, kind, rule, time
    /// left) — alerts' repeat suppression is lifted too but not returned.
    pub fn lift(&mut self, net: IpNet, now: f64) -> Vec<(IpNet, String, String, f64)> {
        let overlaps = |n: &IpNet| n.contains(&net) || net.contains(n);
        let mut out = Vec::new();
        self.active.retain(|(target, kind), (until, _, rule)| {
            if !overlaps(target) {
                return true;
            }
            if *until > now && !kind.starts_with("alert:") {
                out.push((*target, kind.clone(), rule.clone(), *until - now));
            }
            false
        });
        self.offences
            .retain_entries(|(target, _), _| !overlaps(target));
        self.spreads
            .retain_entries(|(target, _), _| !overlaps(target));
        let i = self.lifted.index_or_insert(net, || now);
        if let Some(at) = self.lifted.at_mut(i) {
            *at = now;
        }
        self.counts.lifts += 1;
        out.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        out
    }

    /// The enforcement decisions in force (alerts' repeat suppression
    /// left out): (target, kind, rule, seconds left).
    pub fn decisions(&self, now: f64) -> Vec<(IpNet, String, String, f64)> {
        let mut v: Vec<_> = self
            .active
            .iter()
            .filter(|((_, kind), (until, _, _))| *until > now && !kind.starts_with("alert:"))
            .map(|((t, k), (until, _, rule))| (*t, k.clone(), rule.clone(), until - now))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        v
    }

    /// When an operator last lifted decisions covering `target`, if that
    /// was after the evidence behind a proposal began (`since`).
    fn lifted_after(&self, target: &IpNet, since: f64) -> Option<f64> {
        self.lifted
            .iter()
            .filter(|(n, _)| n.contains(target) || target.contains(*n))
            .map(|(_, at)| *at)
            .filter(|at| *at > since)
            .fold(None, |m: Option<f64>, at| Some(m.map_or(at, |m| m.max(at))))
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

    #[allow(clippy::too_many_arguments)]
    fn action(
        &self,
        rule: &str,
        kind: ActionKind,
        target: IpNet,
        ttl: Duration,
        softened: Option<String>,
        evidence: Evidence,
        now: f64,
    ) -> Action {
        let enforce = self.cfg.enforce && kind != ActionKind::Alert;
        Action {
            id: action_id(rule, &kind, target, &evidence.uid, evidence.interim),
            ts: now,
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
