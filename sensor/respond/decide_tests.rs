use std::time::Duration;

use super::*;
use crate::conn::record::History;
use crate::conn::{ConnState, Proto};
use crate::respond::admit::{Admission, AdmitConfig, BreakerLimits, Outcome};
use crate::respond::rules::LoadContext;
use crate::respond::safety::Allowlist;
use crate::respond::ActionKind;

/// The bundled classifier's facts (its classes, in its order).
fn facts() -> Vec<ModelFacts> {
    let facts = ModelFacts::bundled_named("osprey-classifier").expect("the bundled models");
    vec![facts.expect("the bundled classifier")]
}

/// The bundled rules against a classifier with the bundled classes.
fn decider() -> Decider {
    let text = include_str!("../../rules/default.yaml");
    let rules = RuleSet::parse(text, true, &facts(), &LoadContext::default()).unwrap();
    Decider::new(rules, facts(), crate::evidence::EvidenceConfig::default())
}

fn admission() -> Admission {
    Admission::new(
        AdmitConfig {
            enforce: true,
            alert_repeat: Duration::from_secs(60),
            breakers: BreakerLimits {
                block: 60,
                rate_limit: 60,
                quarantine_pod: 10,
                hook: 60,
            },
            repeat_memory: Duration::from_secs(86_400),
            ipv6_aggregate: None,
        },
        Allowlist::new(&[]),
    )
}

fn rec(n: u64, src: &str, port: u16, state: ConnState, t: f64) -> ConnRecord {
    let sport = 40_000 + (n % 20_000) as u16;
    crate::evidence::fixtures::tcp(n, (src, sport), (SERVER, port), state, t)
}

/// A connect scan of ports 1..=`ports` from SCANNER, all refused, 1 ms apart.
fn scan(ports: u16) -> Vec<ConnRecord> {
    (1..=ports)
        .map(|p| {
            rec(
                u64::from(p),
                SCANNER,
                p,
                ConnState::REJ,
                50.0 + f64::from(p) * 0.001,
            )
        })
        .collect()
}

fn classify(label: &str) -> Vec<Verdict> {
    vec![Verdict {
        label: Some(label.into()),
        class: None,
        probability: Some(0.95),
        score: Some(0.95),
        flagged: label != "benign",
    }]
}

const SERVER: &str = "198.18.0.1";
const CLIENT: &str = "198.18.0.20";
const SCANNER: &str = "198.18.0.66";

/// Feeds records with the classifier's verdict, returns every proposal.
fn feed(d: &mut Decider, records: &[(ConnRecord, &str)]) -> Vec<Proposal> {
    let mut out = Vec::new();
    for (r, label) in records {
        let v = classify(label);
        let rows: [&[f64]; 1] = [&[]];
        out.extend(d.record(
            r,
            Some(Verdicts {
                verdicts: &v,
                rows: &rows,
            }),
        ));
    }
    out
}

fn enforcing(ps: &[Proposal]) -> Vec<&Proposal> {
    ps.iter()
        .filter(|p| p.decision.kind != ActionKind::Alert)
        .collect()
}

#[test]
fn everyday_failures_of_a_benign_client_are_not_acted_on() {
    let mut d = decider();
    let mut rs = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    // (a) retries a refused service every 200 ms for 20 s until it is up,
    // each refusal called a scan by the classifier.
    for i in 0..100 {
        rs.push((
            rec(
                next(),
                CLIENT,
                8080,
                ConnState::REJ,
                100.0 + f64::from(i) * 0.2,
            ),
            "scan_connect",
        ));
    }
    rs.push((rec(next(), CLIENT, 8080, ConnState::SF, 120.1), "benign"));
    // (b) polls across two restarts.
    for i in 0..60 {
        let state = if (20..30).contains(&i) || (40..45).contains(&i) {
            ConnState::REJ
        } else {
            ConnState::SF
        };
        rs.push((
            rec(next(), CLIENT, 8081, state, 130.0 + f64::from(i)),
            "scan_connect",
        ));
    }
    // (c) three ports in turn.
    for (i, p) in [8443u16, 8444, 8445].into_iter().enumerate() {
        rs.push((
            rec(next(), CLIENT, p, ConnState::REJ, 200.0 + i as f64),
            "scan_connect",
        ));
    }
    // (d) a resolver that is down: UDP queries nobody answers.
    for i in 0..30 {
        let mut q = rec(
            next(),
            CLIENT,
            53,
            ConnState::S0,
            210.0 + f64::from(i) * 0.5,
        );
        q.proto = Proto::Udp;
        q.history = History::from("D");
        rs.push((q, "dns_tunnel"));
    }
    let ps = feed(&mut d, &rs);
    assert!(enforcing(&ps).is_empty(), "{:#?}", enforcing(&ps));
}

#[test]
fn a_never_seen_scanner_is_blocked_on_distinct_failed_targets() {
    let mut d = decider();
    let rs: Vec<_> = scan(1024).into_iter().map(|r| (r, "scan_syn")).collect();
    let ps = feed(&mut d, &rs);
    let blocks = enforcing(&ps);
    let first = blocks.first().expect("no block");
    assert_eq!(first.decision.rule, "port-scan");
    assert_eq!(first.decision.target, SCANNER.parse::<IpAddr>().unwrap());
    assert!(first.forgeable && first.known_good.is_none());
    let f = first.evidence.facts.as_ref().expect("facts");
    assert_eq!((f.failed_targets, f.verified), (20, 0), "{f:?}");
    // It fired on the 20th distinct port, and once a second after.
    assert_eq!(first.evidence.resp_p, 20);
    assert_eq!(
        blocks.len(),
        2,
        "re-proposed about once a second of packet time"
    );
    // Admission enforces it.
    let mut a = admission();
    let (o, act) = a.admit((*first).clone(), first.at);
    assert_eq!(
        (o, act.kind.name(), act.enforce),
        (Outcome::Act, "block", true)
    );
    assert_eq!(act.ttl, Duration::from_secs(300));
}

/// The forged-source attack: SYNs with a known-good client's address to a
/// few hundred ports, each followed by a blind ACK; the target's SYN-ACKs
/// reach the real client, whose kernel resets them (`ShAR`/`ShR`, never
/// verified). The evidence is the same as a scan's, so the rule fires,
/// but admission only alerts.
#[test]
fn a_forger_cannot_get_a_known_good_client_blocked() {
    let mut d = decider();
    let mut rs = vec![(rec(1, CLIENT, 80, ConnState::SF, 100.0), "benign")];
    for p in 1..=300u16 {
        let state = if p % 3 == 0 {
            ConnState::RSTO
        } else {
            ConnState::REJ
        };
        let mut r = rec(
            10 + u64::from(p),
            CLIENT,
            p,
            state,
            200.0 + f64::from(p) * 0.01,
        );
        r.history = History::from(if state == ConnState::RSTO {
            "ShAR"
        } else {
            "SAr"
        });
        rs.push((r, "scan_syn"));
    }
    let ps = feed(&mut d, &rs);
    let blocks = enforcing(&ps);
    assert!(!blocks.is_empty());
    let mut a = admission();
    for p in blocks {
        assert!(p.forgeable);
        assert_eq!(p.known_good, Some(100.05));
        let (_, act) = a.admit(p.clone(), p.at);
        assert_eq!(act.kind, ActionKind::Alert, "{act:?}");
        assert!(act
            .softened
            .as_deref()
            .is_some_and(|s| s.contains("known-good")));
    }
}

#[test]
fn brute_force_over_verified_connections_is_unforgeable() {
    // Refused credentials need no model; the classifier's label without
    // them is the fallback.
    for (auth, rule) in [(1u16, "auth-bruteforce"), (0, "classified-bruteforce")] {
        let mut d = decider();
        // The client was known-good before it started.
        let mut rs = vec![(rec(1, CLIENT, 80, ConnState::SF, 10.0), "benign")];
        for i in 0..40 {
            let mut r = rec(100 + i, CLIENT, 80, ConnState::SF, 20.0 + i as f64 * 0.05);
            r.auth_failures = auth;
            rs.push((r, "http_bruteforce"));
        }
        let ps = feed(&mut d, &rs);
        let blocks = enforcing(&ps);
        let b = blocks.first().expect("no block");
        assert_eq!(b.decision.rule, rule);
        assert!(!b.forgeable && b.known_good.is_some());
        let svc = b.evidence.facts.as_ref().unwrap().service.clone().unwrap();
        assert_eq!(svc.auth_failures, 20 * u64::from(auth));
        let (_, act) = admission().admit((*b).clone(), b.at);
        assert_eq!((act.kind.name(), act.softened), ("block", None));
    }
}

/// Slowloris without a model: verified connections that keep sending and
/// get nothing back.
#[test]
fn requests_held_open_unanswered_are_slowloris() {
    let mut d = decider();
    let mut ps = Vec::new();
    for i in 0..30u64 {
        let mut r = rec(500 + i, SCANNER, 80, ConnState::S1, 100.0 + i as f64 * 0.1);
        r.history = History::from("ShADa");
        r.orig_verified = true;
        r.interim = true;
        r.orig_bytes = Some(60);
        r.resp_bytes = Some(0);
        r.duration = Some(11.0);
        ps.extend(feed(&mut d, &[(r, "benign")]));
    }
    let b = enforcing(&ps);
    assert_eq!(
        b.first().map(|p| p.decision.rule.as_str()),
        Some("slowloris")
    );
    assert!(!b[0].forgeable);
}

#[test]
fn unscored_records_still_feed_evidence_rules() {
    let mut d = decider();
    let mut got = Vec::new();
    for p in 1..=30u16 {
        got.extend(d.record(
            &rec(
                u64::from(p),
                SCANNER,
                p,
                ConnState::S0,
                5.0 + f64::from(p) * 0.01,
            ),
            None,
        ));
    }
    assert_eq!(
        got.first().map(|p| p.decision.rule.as_str()),
        Some("port-scan")
    );
    assert!(got[0].evidence.model.is_none());
}

#[test]
fn a_flood_gets_a_rate_limit_and_blocks_escalate_on_repeat() {
    let mut d = decider();
    let rs: Vec<_> = (0..3000u64)
        .map(|i| {
            (
                rec(i, SCANNER, 22022, ConnState::S0, 1.0 + i as f64 * 1e-4),
                "flood_syn",
            )
        })
        .collect();
    let ps = feed(&mut d, &rs);
    let e = enforcing(&ps);
    assert_eq!(e.first().map(|p| p.decision.rule.as_str()), Some("flood"));
    assert_eq!(e[0].decision.kind.name(), "rate_limit");
    // Escalation: the same target blocked again after its TTL ran out.
    let mut d = decider();
    let mut a = admission();
    let mut ttls = Vec::new();
    for round in 0..3u32 {
        let t0 = 1000.0 + f64::from(round) * 100_000.0 / 10.0;
        let rs: Vec<_> = (1..=25u16)
            .map(|p| {
                (
                    rec(
                        u64::from(round * 100 + u32::from(p)),
                        SCANNER,
                        p,
                        ConnState::REJ,
                        t0 + f64::from(p) * 0.01,
                    ),
                    "scan_syn",
                )
            })
            .collect();
        let p = feed(&mut d, &rs)
            .into_iter()
            .find(|p| p.decision.kind == ActionKind::Block)
            .unwrap();
        let (_, act) = a.admit(p.clone(), p.at);
        ttls.push(act.ttl.as_secs());
    }
    assert_eq!(ttls, [300, 1200, 4800]);
}

/// Held for the models' look-ahead, a scan is blocked when its records
/// arrive (the port-scan rule reads evidence alone), the same decisions as
/// when each record is decided at once; the verdicts that follow decide
/// only the rules that read them, so they do not re-propose the block (and
/// refresh its TTL) seconds after the scan.
#[test]
fn evidence_rules_decide_on_arrival_and_verdicts_do_not_repeat_them() {
    let rs = scan(200);
    let mut at_once = decider();
    let want = feed(
        &mut at_once,
        &rs.iter().map(|r| (r.clone(), "benign")).collect::<Vec<_>>(),
    );
    let mut held = decider();
    let arrived: Vec<Proposal> = rs.iter().filter_map(|r| held.arrived(r)).collect();
    let summary = |ps: &[Proposal]| -> Vec<(String, u16)> {
        ps.iter()
            .map(|p| (p.decision.rule.clone(), p.evidence.resp_p))
            .collect()
    };
    assert_eq!(summary(&arrived), summary(&want));
    assert_eq!(
        arrived.first().map(|p| p.decision.rule.as_str()),
        Some("port-scan")
    );
    let v = classify("benign");
    let rows: [&[f64]; 1] = [&[]];
    let later: Vec<Proposal> = rs
        .iter()
        .filter_map(|r| {
            held.scored(
                r,
                Some(Verdicts {
                    verdicts: &v,
                    rows: &rows,
                }),
            )
        })
        .collect();
    assert!(later.is_empty(), "{:?}", summary(&later));
}
