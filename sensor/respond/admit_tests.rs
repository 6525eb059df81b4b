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
