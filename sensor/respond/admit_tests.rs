use super::*;
use crate::respond::rules::Escalate;
use crate::respond::RateLimit;

fn evidence(orig: &str) -> Evidence {
    Evidence {
        uid: "CabC".into(),
        interim: true,
        model: Some("m".into()),
        label: Some("scan_syn".into()),
        score: Some(0.9),
        probability: Some(0.9),
        orig_h: orig.parse().unwrap(),
        orig_p: 40000,
        resp_h: "198.18.0.1".parse().unwrap(),
        resp_p: 80,
        proto: "tcp".into(),
        service: None,
        conn_state: "RSTO".into(),
        history: Some("ShR".into()),
        facts: None,
        identity: None,
    }
}

const T0: f64 = 1_700_000_000.0;

/// A proposal about `target`; `known_good`: when it last had a verified
/// exchange; `forgeable`: whether the evidence could be forged.
fn proposal_with(
    kind: ActionKind,
    target: &str,
    known_good: Option<f64>,
    forgeable: bool,
) -> Proposal {
    Proposal {
        decision: Decision {
            rule: "r".into(),
            kind,
            target: target.parse().unwrap(),
            ttl: Duration::from_secs(60),
            model: Some(0),
            index: 0,
            escalate: None,
        },
        evidence: evidence(target),
        known_good,
        forgeable,
        at: T0,
    }
}

fn proposal(kind: ActionKind, target: &str) -> Proposal {
    proposal_with(kind, target, None, true)
}

fn admission(enforce: bool, max: u32) -> Admission {
    let mut allow = Allowlist::new(&["198.19.0.0/16".parse().unwrap()]);
    allow.discover(&["198.18.200.1".parse().unwrap()]);
    Admission::new(
        AdmitConfig {
            enforce,
            alert_repeat: Duration::from_secs(60),
            breakers: BreakerLimits {
                block: max,
                rate_limit: max,
                quarantine_pod: max,
                hook: max,
            },
            repeat_memory: Duration::from_secs(86_400),
            ipv6_aggregate: None,
        },
        allow,
    )
}

/// Trying to break the allowlist: loopback written as an IPv4-mapped IPv6
/// address, a configured range, a discovered address (as the API server),
/// link-local metadata; all end as alerts that say why.
#[test]
fn allowlisted_targets_are_never_enforced() {
    let mut a = admission(true, 100);
    let now = T0;
    for t in [
        "127.0.0.1",
        "::ffff:127.0.0.1",
        "198.19.3.3",
        "198.18.200.1",
        "169.254.169.254",
        "fe80::1",
        "::1",
    ] {
        for kind in [
            ActionKind::Block,
            ActionKind::QuarantinePod,
            ActionKind::RateLimit(RateLimit {
                packets_per_sec: Some(1),
                bytes_per_sec: None,
                burst: 1,
            }),
        ] {
            let (_, act) = a.admit(proposal(kind, t), now);
            assert_eq!(act.kind, ActionKind::Alert, "{t}");
            assert!(!act.enforce, "{t}");
            assert!(
                act.softened
                    .as_deref()
                    .is_some_and(|s| s.contains("allowlisted")),
                "{t}"
            );
        }
    }
    assert!(a.counts.allowlisted >= 21);
    // The message says why: which entry, and where it came from.
    let (_, act) = a.admit(proposal(ActionKind::Block, "198.18.200.1"), now + 120.0);
    assert_eq!(
        act.softened.as_deref(),
        Some("198.18.200.1/32 is allowlisted (api server endpoint 198.18.200.1/32)")
    );
    let (_, act) = a.admit(proposal(ActionKind::Block, "198.19.3.3"), now + 240.0);
    assert_eq!(
        act.softened.as_deref(),
        Some("198.19.3.3/32 is allowlisted (configured 198.19.0.0/16)")
    );
    let (_, act) = a.admit(proposal(ActionKind::Block, "198.18.0.9"), now);
    assert_eq!((act.kind, act.enforce), (ActionKind::Block, true));
}

/// A known-good peer (a verified exchange not long ago) is not enforced
/// against on forgeable evidence, whatever the kind; on unforgeable
/// evidence it is.
#[test]
fn known_good_peers_only_get_alerts_on_forgeable_evidence() {
    let mut a = admission(true, 100);
    for kind in [
        ActionKind::Block,
        ActionKind::QuarantinePod,
        ActionKind::Hook {
            hook: "soar".into(),
        },
        ActionKind::RateLimit(RateLimit {
            packets_per_sec: Some(1),
            bytes_per_sec: None,
            burst: 1,
        }),
    ] {
        let (_, act) = a.admit(proposal_with(kind, "198.18.0.9", Some(T0 - 30.0), true), T0);
        assert_eq!((act.kind.clone(), act.enforce), (ActionKind::Alert, false));
        let why = act.softened.unwrap_or_default();
        assert!(why.contains("known-good") && why.contains("30 s"), "{why}");
    }
    assert_eq!(a.counts.known_good, 4);
    let (o, act) = a.admit(
        proposal_with(ActionKind::Block, "198.18.0.9", Some(T0 - 30.0), false),
        T0,
    );
    assert_eq!(
        (o, act.kind, act.enforce),
        (Outcome::Act, ActionKind::Block, true)
    );
    // A never-seen source on forgeable evidence is enforced against.
    let (_, act) = a.admit(proposal(ActionKind::Block, "198.18.0.10"), T0);
    assert_eq!((act.kind, act.enforce), (ActionKind::Block, true));
}

#[test]
fn dry_run_enforces_nothing() {
    let mut a = admission(false, 100);
    let (o, act) = a.admit(proposal(ActionKind::Block, "198.18.0.9"), T0);
    assert_eq!(
        (o, act.kind, act.enforce),
        (Outcome::Act, ActionKind::Block, false)
    );
}

#[test]
fn repeats_are_suppressed_until_half_the_ttl_has_passed() {
    let mut a = admission(true, 100);
    let t0 = T0;
    let (o, first) = a.admit(proposal(ActionKind::Block, "198.18.0.9"), t0);
    assert_eq!(o, Outcome::Act);
    let (o, again) = a.admit(proposal(ActionKind::Block, "198.18.0.9"), t0 + 10.0);
    assert_eq!(o, Outcome::Duplicate);
    // Same decision, same connection: same idempotency key.
    assert_eq!(again.id, first.id);
    let (o, _) = a.admit(proposal(ActionKind::Block, "198.18.0.9"), t0 + 31.0);
    assert_eq!(o, Outcome::Act);
    assert_eq!(a.active_by_kind().get("block"), Some(&1));
    a.expire(t0 + 200.0);
    assert!(a.active_by_kind().is_empty());
}

/// Trying to break the breaker through the admission path: 1,000 distinct
/// attackers in one second get exactly `max` enforcements; the rest are
/// alerts saying the breaker is open; alerts themselves are not limited.
#[test]
fn the_breaker_caps_enforcement() {
    let mut a = admission(true, 10);
    let t0 = T0;
    let mut enforced = 0;
    for i in 0..1_000u32 {
        let ip = std::net::Ipv4Addr::from(0xC612_1000 + i).to_string();
        let (_, act) = a.admit(proposal(ActionKind::Block, &ip), t0 + f64::from(i) * 1e-6);
        if act.enforce {
            enforced += 1;
        } else {
            assert_eq!(act.kind, ActionKind::Alert);
            assert!(act
                .softened
                .as_deref()
                .is_some_and(|s| s.contains("circuit breaker")));
        }
    }
    assert_eq!(enforced, 10);
    assert!(a.breaker_open());
    assert_eq!((a.counts.breaker_refused, a.counts.breaker_trips), (990, 1));
    let (_, act) = a.admit(proposal(ActionKind::Alert, "198.18.99.1"), t0);
    assert_eq!(act.kind, ActionKind::Alert);
    // A minute later there is room again.
    let (_, act) = a.admit(proposal(ActionKind::Block, "198.18.99.2"), t0 + 61.0);
    assert!(act.enforce);
    assert!(!a.breaker_open());
}

/// Breakers are per kind: a flood's rate limits use up theirs, and a
/// scanner's block still goes through.
#[test]
fn a_flood_of_rate_limits_leaves_room_for_blocks() {
    let mut a = admission(true, 10);
    let limit = ActionKind::RateLimit(RateLimit {
        packets_per_sec: Some(100),
        bytes_per_sec: None,
        burst: 200,
    });
    for i in 0..500u32 {
        let ip = std::net::Ipv4Addr::from(0xC612_2000 + i).to_string();
        a.admit(proposal(limit.clone(), &ip), T0 + f64::from(i) * 1e-3);
    }
    assert_eq!(a.open_breakers(), ["rate_limit"]);
    let (_, act) = a.admit(proposal(ActionKind::Block, "198.18.77.7"), T0 + 1.0);
    assert_eq!((act.kind, act.enforce), (ActionKind::Block, true));
}

#[test]
fn repeated_enforcement_escalates_and_refreshes_do_not() {
    let mut a = admission(true, 100);
    let esc = |p: Proposal| Proposal {
        decision: Decision {
            escalate: Some(Escalate {
                factor: 4,
                max_ttl: Duration::from_secs(1000),
            }),
            ..p.decision
        },
        ..p
    };
    let p = || esc(proposal(ActionKind::Block, "198.18.5.5"));
    let (_, first) = a.admit(p(), T0);
    assert_eq!(first.ttl.as_secs(), 60);
    // A refresh past half the TTL keeps the TTL.
    let (o, refresh) = a.admit(p(), T0 + 40.0);
    assert_eq!((o, refresh.ttl.as_secs()), (Outcome::Act, 60));
    // Once it ran out, a new offence gets 4x, then 16x capped at 1000.
    let (_, second) = a.admit(p(), T0 + 200.0);
    assert_eq!(second.ttl.as_secs(), 240);
    let (_, third) = a.admit(p(), T0 + 1000.0);
    assert_eq!(third.ttl.as_secs(), 960);
    let (_, fourth) = a.admit(p(), T0 + 3000.0);
    assert_eq!(fourth.ttl.as_secs(), 1000);
    assert_eq!(a.counts.escalated, 3);
    // A day later the slate is clean.
    let (_, later) = a.admit(p(), T0 + 3000.0 + 86_401.0);
    assert_eq!(later.ttl.as_secs(), 60);
}

fn aggregating(after: u32) -> Admission {
    let mut a = admission(true, 1000);
    a.cfg.ipv6_aggregate = Some(Aggregate { prefix: 64, after });
    a
}

/// A source rotating through its /64: the first `after` addresses get
/// their own blocks, the next decision covers the prefix, and later
/// addresses in it are already covered. Another prefix, IPv4 and a prefix
/// holding an allowlisted address stay per address.
#[test]
fn rotating_ipv6_sources_are_blocked_by_prefix() {
    let mut a = aggregating(3);
    for (i, t) in ["fd00:1::1", "fd00:1::2", "fd00:1::3"].iter().enumerate() {
        let (o, act) = a.admit(proposal(ActionKind::Block, t), T0 + i as f64);
        assert_eq!(o, Outcome::Act);
        assert_eq!(act.target, format!("{t}/128").parse::<IpNet>().unwrap());
    }
    // The same address again is a duplicate, not a new address.
    let (o, _) = a.admit(proposal(ActionKind::Block, "fd00:1::3"), T0 + 4.0);
    assert_eq!(o, Outcome::Duplicate);
    let (o, act) = a.admit(proposal(ActionKind::Block, "fd00:1::4"), T0 + 5.0);
    assert_eq!(o, Outcome::Act);
    assert_eq!(act.target, "fd00:1::/64".parse::<IpNet>().unwrap());
    assert_eq!(a.counts.aggregated, 1);
    let (o, act) = a.admit(proposal(ActionKind::Block, "fd00:1::99"), T0 + 6.0);
    assert_eq!(o, Outcome::Duplicate);
    assert_eq!(act.target, "fd00:1::/64".parse::<IpNet>().unwrap());
    // Another prefix starts its own count.
    let (_, act) = a.admit(proposal(ActionKind::Block, "fd00:2::1"), T0 + 7.0);
    assert_eq!(act.target, "fd00:2::1/128".parse::<IpNet>().unwrap());
    // IPv4 never aggregates.
    for i in 1..6 {
        let (_, act) = a.admit(proposal(ActionKind::Block, &format!("198.18.7.{i}")), T0);
        assert_eq!(act.target.prefix_len(), 32);
    }
    // A prefix with an allowlisted address in it is never blocked whole.
    let mut b = aggregating(2);
    b.allowlist = Allowlist::new(&["fd00:3::53/128".parse().unwrap()]);
    for i in 1..5 {
        let (_, act) = b.admit(proposal(ActionKind::Block, &format!("fd00:3::{i}")), T0);
        assert_eq!(act.target.prefix_len(), 128, "fd00:3::{i}");
    }
    // Off: never.
    let mut c = admission(true, 1000);
    for i in 1..6 {
        let (_, act) = c.admit(proposal(ActionKind::Block, &format!("fd00:4::{i}")), T0);
        assert_eq!(act.target.prefix_len(), 128);
    }
}

/// An operator's lift: the decision stops being in force, the same
/// evidence (a window that began before the lift) only alerts, and
/// evidence gathered wholly after the lift acts again, with the
/// escalation history forgotten.
#[test]
fn a_lifted_decision_needs_new_evidence() {
    let mut a = admission(true, 1000);
    let with_window = |t: &str, at: f64, window: f64| {
        let mut p = proposal(ActionKind::Block, t);
        p.at = at;
        p.evidence.facts = Some(crate::evidence::Facts {
            window_secs: window,
            ..Default::default()
        });
        p
    };
    let (_, act) = a.admit(with_window("198.18.0.9", T0, 60.0), T0);
    assert!(act.enforce);
    assert_eq!(a.decisions(T0 + 1.0).len(), 1);
    let lifted = a.lift("198.18.0.0/24".parse().unwrap(), T0 + 10.0);
    assert_eq!(lifted.len(), 1);
    assert_eq!(lifted[0].0, "198.18.0.9/32".parse::<IpNet>().unwrap());
    assert!(a.decisions(T0 + 11.0).is_empty());
    // The scanner's next connection, judged on a window that still holds
    // what came before the lift: an alert that says why.
    let (o, act) = a.admit(with_window("198.18.0.9", T0 + 20.0, 60.0), T0 + 20.0);
    assert_eq!(o, Outcome::Act);
    assert_eq!(act.kind, ActionKind::Alert);
    assert!(act.softened.as_deref().unwrap_or("").contains("lifted"));
    assert_eq!(a.counts.lifted_refused, 1);
    // An address outside the lifted range is unaffected.
    let (_, act) = a.admit(with_window("198.18.1.9", T0 + 20.0, 60.0), T0 + 20.0);
    assert!(act.enforce);
    // A window that began after the lift is new evidence.
    let (o, act) = a.admit(with_window("198.18.0.9", T0 + 80.0, 60.0), T0 + 80.0);
    assert_eq!(o, Outcome::Act);
    assert_eq!((act.kind, act.enforce), (ActionKind::Block, true));
}
