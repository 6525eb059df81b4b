use super::*;
use crate::conn::record::History;
use crate::conn::ConnState;

fn cfg() -> EvidenceConfig {
    EvidenceConfig {
        max_sources: 1000,
        max_services: 1000,
        max_targets_per_source: 64,
        max_open_conns: 1000,
        ..EvidenceConfig::default()
    }
}

fn stage() -> EvidenceStage {
    EvidenceStage::new(cfg(), Windows(vec![10.0, 300.0]))
}

fn rec(n: u64, src: &str, dst: &str, port: u16, state: ConnState, t: f64) -> ConnRecord {
    crate::evidence::fixtures::tcp(n, (src, 40_000), (dst, port), state, t)
}

const SCANNER: &str = "198.18.9.9";
const SERVER: &str = "198.18.0.1";

#[test]
fn a_retried_refusal_is_one_failed_target_and_a_scan_is_many() {
    let mut s = stage();
    let mut o = None;
    for i in 0..100 {
        let r = rec(
            i,
            "198.18.5.5",
            SERVER,
            8080,
            ConnState::REJ,
            1000.0 + i as f64 * 0.05,
        );
        o = Some(s.observe(&r, &[]));
    }
    let o = o.unwrap();
    assert_eq!(s.value(&o, Column::FailedTargets, 0, &[]), 1.0);
    assert_eq!(s.value(&o, Column::Failed, 0, &[]), 100.0);
    assert_eq!(s.value(&o, Column::ServiceFailed, 0, &[]), 100.0);
    let mut o = None;
    for p in 1..=1024u16 {
        let r = rec(
            10_000 + u64::from(p),
            SCANNER,
            SERVER,
            p,
            ConnState::REJ,
            1000.0 + f64::from(p) * 0.001,
        );
        o = Some(s.observe(&r, &[]));
    }
    let o = o.unwrap();
    assert_eq!(
        s.value(&o, Column::FailedTargets, 0, &[]),
        64.0,
        "capped at the set size"
    );
    assert_eq!(s.value(&o, Column::FailedPorts, 0, &[]), 64.0);
    assert_eq!(s.value(&o, Column::FailedHosts, 0, &[]), 1.0);
    assert_eq!(s.value(&o, Column::Conns, 1, &[]), 1024.0);
    assert_eq!(s.value(&o, Column::Verified, 1, &[]), 0.0);
    assert_eq!(s.value(&o, Column::ServiceConns, 1, &[]), 1.0);
    let f = s.facts(&o, 1, true);
    assert_eq!(
        (f.conns, f.failed, f.failed_targets, f.hosts),
        (1024, 1024, 64, 1)
    );
    assert!(f.forgeable && f.last_verified.is_none());
    assert_eq!(f.service.as_ref().map(|x| x.resp_p), Some(1024));
    // Beyond the longest window, nothing is left of it.
    let later = rec(99_999, SCANNER, SERVER, 1, ConnState::SF, 2000.0);
    let o = s.observe(&later, &[]);
    assert_eq!(s.value(&o, Column::FailedTargets, 1, &[]), 0.0);
}

#[test]
fn a_connection_counts_once_whatever_its_snapshots() {
    let mut s = stage();
    let mut r = rec(1, "198.18.5.5", SERVER, 80, ConnState::S0, 100.0);
    r.interim = true;
    let o = s.observe(&r, &[]);
    assert_eq!(s.value(&o, Column::Failed, 0, &[]), 1.0);
    assert_eq!(s.value(&o, Column::FailedTargets, 0, &[]), 1.0);
    // Answered after all: the same connection, established and verified.
    let mut r2 = rec(1, "198.18.5.5", SERVER, 80, ConnState::SF, 100.0);
    r2.interim = true;
    let o = s.observe(&r2, &[]);
    let mut fin = r2.clone();
    fin.interim = false;
    fin.orig_pkts = 9;
    let o2 = s.observe(&fin, &[]);
    assert_eq!(o.source, o2.source);
    assert_eq!(s.value(&o2, Column::Conns, 0, &[]), 1.0);
    assert_eq!(s.value(&o2, Column::Failed, 0, &[]), 0.0);
    assert_eq!(s.value(&o2, Column::FailedTargets, 0, &[]), 0.0);
    assert_eq!(s.value(&o2, Column::Verified, 0, &[]), 1.0);
    assert_eq!(s.value(&o2, Column::Packets, 0, &[]), 9.0);
    assert_eq!(s.stats().open_conns, 0, "the final record forgets the mark");
}

#[test]
fn flagged_counts_per_label_and_verified_ones_apart() {
    let mut s = stage();
    let brute = s.label_id("clf", "http_bruteforce");
    let scan = s.label_id("clf", "scan_connect");
    assert_eq!(s.label_id("clf", "http_bruteforce"), brute);
    let mut o = None;
    for i in 0..30 {
        let r = rec(
            i,
            "198.18.5.5",
            SERVER,
            80,
            ConnState::SF,
            100.0 + i as f64 * 0.1,
        );
        o = Some(s.observe(&r, &[brute]));
    }
    let r = rec(99, "198.18.5.5", SERVER, 81, ConnState::REJ, 103.5);
    s.observe(&r, &[scan]);
    let o = o.unwrap();
    let o = Observed { now: 103.5, ..o };
    assert_eq!(s.value(&o, Column::Flagged, 0, &[brute]), 30.0);
    assert_eq!(s.value(&o, Column::VerifiedFlagged, 0, &[brute]), 30.0);
    assert_eq!(s.value(&o, Column::Flagged, 0, &[brute, scan]), 31.0);
    assert_eq!(s.value(&o, Column::VerifiedFlagged, 0, &[scan]), 0.0);
    assert_eq!(
        s.value(&o, Column::ServiceVerifiedFlagged, 0, &[brute]),
        30.0
    );
    let f = s.facts(&o, 0, false);
    assert_eq!(f.flagged["clf/http_bruteforce"].verified, 30);
    assert_eq!(f.flagged["clf/scan_connect"].conns, 1);
}

#[test]
fn only_verified_exchanges_make_a_known_good_peer() {
    let mut s = stage();
    let client: IpAddr = "198.18.5.5".parse().unwrap();
    // A forger's SYNs, blind ACKs and the victim's resets: never verified.
    for i in 0..300 {
        let mut r = rec(i, "198.18.5.5", SERVER, 1 + i as u16, ConnState::RSTO, 50.0);
        r.history = History::from("ShAR");
        s.observe(&r, &[]);
    }
    assert_eq!(s.last_verified(client, 60.0), None);
    // A bare verified handshake (a connect scan's probe) is not enough.
    let mut probe = rec(999, "198.18.5.5", SERVER, 81, ConnState::RSTO, 90.0);
    probe.orig_verified = true;
    s.observe(&probe, &[]);
    assert_eq!(s.last_verified(client, 95.0), None);
    let mut exchange = rec(1000, "198.18.5.5", SERVER, 80, ConnState::SF, 100.0);
    exchange.duration = Some(0.1);
    s.observe(&exchange, &[]);
    assert_eq!(s.last_verified(client, 200.0), Some(100.1));
    assert_eq!(s.last_verified(client, 100.1 + 86_400.0 + 1.0), None);
    // Written as an IPv4-mapped address, it is the same peer.
    assert!(s
        .last_verified("::ffff:198.18.5.5".parse().unwrap(), 200.0)
        .is_some());
}

#[test]
fn icmp_unreachable_counts_against_the_host_that_sent_the_probe() {
    let mut s = stage();
    let mut r = ConnRecord::skeleton(
        SERVER.parse().unwrap(),
        3,
        SCANNER.parse().unwrap(),
        3,
        Proto::Icmp,
    );
    r.ts = 10.0;
    let o = s.observe(&r, &[]);
    assert!(o.answer);
    assert_eq!(o.source, SCANNER.parse::<IpAddr>().unwrap());
    assert_eq!(s.value(&o, Column::Failed, 0, &[]), 1.0);
    assert_eq!(s.value(&o, Column::Conns, 0, &[]), 0.0);
}

#[test]
fn a_million_spoofed_sources_stay_within_the_table_limits() {
    let mut s = stage();
    let scanner_every = 100;
    for i in 0..1_000_000u32 {
        let t = 1000.0 + f64::from(i) * 1e-4;
        let src = std::net::Ipv4Addr::from(0xC612_0000u32.wrapping_add(i * 7 + 1));
        let mut r = rec(u64::from(i), "198.18.0.2", SERVER, 22, ConnState::S0, t);
        r.orig_h = IpAddr::V4(src);
        r.interim = i % 2 == 0;
        s.observe(&r, &[]);
        if i % scanner_every == 0 {
            let port = (i / scanner_every) as u16;
            s.observe(
                &rec(
                    5_000_000 + u64::from(i),
                    SCANNER,
                    SERVER,
                    port,
                    ConnState::REJ,
                    t,
                ),
                &[],
            );
        }
        let st = s.stats();
        assert!(st.sources <= 1000 && st.services <= 1000 && st.open_conns <= 1000);
    }
    let st = s.stats();
    assert!(st.evicted_sources > 990_000, "{st:?}");
    // The scanner stayed: it was active all along.
    let o = s.observe(
        &rec(9_000_000, SCANNER, SERVER, 9999, ConnState::REJ, 1100.0),
        &[],
    );
    assert!(s.value(&o, Column::FailedTargets, 1, &[]) >= 60.0);
}

/// Counting a record on arrival and its verdicts after the scorer's hold
/// gives the same evidence as counting both at once, interim snapshots
/// included: every column, each connection and label once. (Over a window
/// shorter than the hold's lag, a label counts at the time it comes, as a
/// late record's evidence does: compared over the long window here.)
#[test]
fn verdicts_after_the_hold_count_as_verdicts_with_the_record() {
    let mut at_once = stage();
    let mut held = stage();
    let brute = at_once.label_id("clf", "http_bruteforce");
    assert_eq!(held.label_id("clf", "http_bruteforce"), brute);
    let mut records = Vec::new();
    for i in 0..20u64 {
        let state = if i % 3 == 0 {
            ConnState::REJ
        } else {
            ConnState::SF
        };
        let mut r = rec(
            i,
            "198.18.5.5",
            SERVER,
            80 + (i % 4) as u16,
            state,
            100.0 + i as f64,
        );
        if i % 5 == 0 {
            // An interim snapshot first, flagged too: the label counts once.
            let mut snap = r.clone();
            snap.interim = true;
            records.push((snap, true));
        }
        r.auth_failures = 2;
        records.push((r, i % 2 == 0));
    }
    let mut last = (None, None);
    for (r, flagged) in &records {
        let labels: &[LabelId] = if *flagged { &[brute] } else { &[] };
        last.0 = Some(at_once.observe(r, labels));
    }
    // Held: all arrive, then their verdicts follow in the same order.
    for (r, _) in &records {
        held.observe_pending(r);
    }
    for (r, flagged) in &records {
        let labels: &[LabelId] = if *flagged { &[brute] } else { &[] };
        last.1 = Some(held.observe_verdicts(r, labels));
    }
    let (a, b) = (last.0.unwrap(), last.1.unwrap());
    for col in [
        Column::Conns,
        Column::Failed,
        Column::FailedTargets,
        Column::Verified,
        Column::Flagged,
        Column::VerifiedFlagged,
        Column::ServiceFlagged,
        Column::ServiceVerifiedFlagged,
        Column::AuthFailures,
        Column::Packets,
    ] {
        assert_eq!(
            at_once.value(&a, col, 1, &[brute]),
            held.value(&b, col, 1, &[brute]),
            "{col:?}"
        );
    }
    // Ten flagged finals, and two connections flagged on a snapshot only.
    assert_eq!(held.value(&b, Column::Flagged, 1, &[brute]), 12.0);
    assert_eq!(held.stats().open_conns, 0, "every mark is forgotten");
}
