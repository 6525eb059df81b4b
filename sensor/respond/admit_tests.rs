use super::*;

fn evidence(orig: &str) -> Evidence {
    Evidence {
        uid: "CabC".into(),
        interim: true,
        model: "m".into(),
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
    }
}

fn proposal(kind: ActionKind, target: &str, proven: bool) -> Proposal {
    let ev = evidence(target);
    Proposal {
        decision: Decision {
            rule: "r".into(),
            kind,
            target: target.parse().unwrap(),
            ttl: Duration::from_secs(60),
            model: 0,
        },
        evidence: ev,
        source_proven: proven,
    }
}

fn admission(enforce: bool, max: u32) -> Admission {
    let mut allow = Allowlist::new(&["198.19.0.0/16".parse().unwrap()]);
    allow.discover(&["198.18.200.1".parse().unwrap()]);
    Admission::new(
        AdmitConfig {
            enforce,
            spoofed_limit: RateLimit {
                packets_per_sec: Some(100),
                bytes_per_sec: None,
                burst: 200,
            },
            alert_repeat: Duration::from_secs(60),
        },
        allow,
        max,
    )
}

/// Trying to break the allowlist: loopback written as an IPv4-mapped IPv6
/// address, a configured range, a discovered address (as the API server),
/// link-local metadata; all end as alerts that say why.
#[test]
fn allowlisted_targets_are_never_enforced() {
    let mut a = admission(true, 100);
    let now = Instant::now();
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
            let (_, act) = a.admit(proposal(kind, t, true), now);
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
    let (_, act) = a.admit(proposal(ActionKind::Block, "198.18.0.9", true), now);
    assert_eq!((act.kind, act.enforce), (ActionKind::Block, true));
}

#[test]
fn unproven_sources_get_a_rate_limit_not_a_block() {
    let mut a = admission(true, 100);
    let now = Instant::now();
    let (_, act) = a.admit(proposal(ActionKind::Block, "198.18.0.9", false), now);
    assert!(matches!(act.kind, ActionKind::RateLimit(l) if l.packets_per_sec == Some(100)));
    assert!(act.softened.is_some() && act.enforce);
    // Once the source answers a SYN-ACK, the block goes through.
    let (o, act) = a.admit(proposal(ActionKind::Block, "198.18.0.9", true), now);
    assert_eq!((o, act.kind), (Outcome::Act, ActionKind::Block));
}

#[test]
fn dry_run_enforces_nothing() {
    let mut a = admission(false, 100);
    let (o, act) = a.admit(
        proposal(ActionKind::Block, "198.18.0.9", true),
        Instant::now(),
    );
    assert_eq!(
        (o, act.kind, act.enforce),
        (Outcome::Act, ActionKind::Block, false)
    );
}

#[test]
fn repeats_are_suppressed_until_half_the_ttl_has_passed() {
    let mut a = admission(true, 100);
    let t0 = Instant::now();
    let (o, first) = a.admit(proposal(ActionKind::Block, "198.18.0.9", true), t0);
    assert_eq!(o, Outcome::Act);
    let (o, again) = a.admit(
        proposal(ActionKind::Block, "198.18.0.9", true),
        t0 + Duration::from_secs(10),
    );
    assert_eq!(o, Outcome::Duplicate);
    // Same decision, same connection: same idempotency key.
    assert_eq!(again.id, first.id);
    let (o, _) = a.admit(
        proposal(ActionKind::Block, "198.18.0.9", true),
        t0 + Duration::from_secs(31),
    );
    assert_eq!(o, Outcome::Act);
    assert_eq!(a.active_by_kind().get("block"), Some(&1));
    a.expire(t0 + Duration::from_secs(200));
    assert!(a.active_by_kind().is_empty());
}

/// Trying to break the breaker through the admission path: 1,000 distinct
/// attackers in one second get exactly `max` enforcements; the rest are
/// alerts saying the breaker is open; alerts themselves are not limited.
#[test]
fn the_breaker_caps_enforcement() {
    let mut a = admission(true, 10);
    let t0 = Instant::now();
    let mut enforced = 0;
    for i in 0..1_000u32 {
        let ip = std::net::Ipv4Addr::from(0xC612_1000 + i).to_string();
        let (_, act) = a.admit(
            proposal(ActionKind::Block, &ip, true),
            t0 + Duration::from_micros(u64::from(i)),
        );
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
    let (_, act) = a.admit(proposal(ActionKind::Alert, "198.18.99.1", true), t0);
    assert_eq!(act.kind, ActionKind::Alert);
    // A minute later there is room again.
    let (_, act) = a.admit(
        proposal(ActionKind::Block, "198.18.99.2", true),
        t0 + Duration::from_secs(61),
    );
    assert!(act.enforce);
    assert!(!a.breaker_open());
}
