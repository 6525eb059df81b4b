//! The evidence stage's memory bound under a flood of spoofed sources.
//!
//! A million one-packet SYNs, each from its own address (half of them
//! interim snapshots whose connection never gets a final record), go
//! through `Decider::record` with the bundled rules, with a verified
//! client now and then (30,000 of them, each a known-good peer) and one
//! real scanner probing a new port every thousand records. The test
//! binary counts live heap bytes (a counting global allocator); what the
//! decider holds, minus what it held before, must stay within the bound
//! its configuration sets (`Decider::memory_bound`, derived in
//! sensor/evidence/bound.rs from the entry types and the containers'
//! growth). The tables never exceed their limits, every eviction is
//! counted, and the scanner, active all along, keeps its evidence: its
//! `port-scan` proposal still comes at the end, and nobody else gets one.
//!
//! A second test puts every entry at its worst (full target sets, every
//! label) and checks the stage's bound there too.
//!
//! Run with `cargo test --test evidence -- --nocapture` to see the
//! figures (measured heap beside the bound).

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Mutex;

use osprey::conn::record::History;
use osprey::conn::{ConnRecord, ConnState, Proto, Uid};
use osprey::evidence::{EvidenceConfig, EvidenceStage, EvidenceStats, LabelId};
use osprey::model::Verdict;
use osprey::respond::admit::Proposal;
use osprey::respond::decide::{Decider, Verdicts};
use osprey::respond::rules::{LoadContext, ModelFacts, RuleSet};
use osprey::respond::ActionKind;

/// Live heap bytes of the whole test binary.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call is passed on to `System` unchanged; the counter only
// observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is `System::alloc`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from `System`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// The tests measure the whole binary's heap: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const MODEL: &str = "osprey-classifier";

/// The bundled classifier's facts: its classes, in its order.
fn facts() -> Vec<ModelFacts> {
    let facts = ModelFacts::bundled_named(MODEL).expect("the bundled models");
    vec![facts.unwrap_or_else(|| panic!("no bundled model {MODEL}"))]
}

/// The classifier's classes.
fn classes() -> Vec<String> {
    facts().swap_remove(0).labels
}

fn rules() -> RuleSet {
    RuleSet::parse(
        include_str!("../rules/default.yaml"),
        true,
        &facts(),
        &LoadContext::default(),
    )
    .expect("the bundled rules")
}

fn verdict(label: &str) -> Vec<Verdict> {
    let class = classes().iter().position(|c| c == label);
    vec![Verdict {
        label: Some(label.into()),
        class,
        probability: Some(0.95),
        score: Some(if label == "benign" { 0.05 } else { 0.95 }),
        flagged: label != "benign",
    }]
}

/// A small configuration, so that a million sources are 50 times its
/// source table.
fn config() -> EvidenceConfig {
    EvidenceConfig {
        max_sources: 20_000,
        max_services: 40_000,
        max_open_conns: 40_000,
        max_known_good: 20_000,
        ..EvidenceConfig::default()
    }
}

fn mb(x: usize) -> f64 {
    x as f64 / 1e6
}

// --- the records -------------------------------------------------------------

const T0: f64 = 1_000.0;
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SCANNER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);

fn tcp(uid: u64, orig: IpAddr, sport: u16, port: u16, ts: f64) -> ConnRecord {
    let mut r = ConnRecord::skeleton(orig, sport, IpAddr::V4(SERVER), port, Proto::Tcp);
    r.uid = Uid([uid, 0x6576_6964]);
    r.ts = ts;
    r
}

/// Spoofed SYN number `i`: from an address no other record uses (an odd
/// multiplier is a bijection of 24-bit numbers), one packet, nothing back.
/// Odd ones are interim snapshots of a connection that never ends.
fn spoofed(i: u64, ts: f64) -> ConnRecord {
    let a = 0x0b00_0000 | ((i as u32).wrapping_mul(0x9e37_79b1) & 0x00ff_ffff);
    let mut r = tcp(
        i,
        IpAddr::V4(Ipv4Addr::from(a)),
        1024 + (i % 60_000) as u16,
        80,
        ts,
    );
    r.conn_state = ConnState::S0;
    r.history = History::from("S");
    r.orig_pkts = 1;
    r.orig_ip_bytes = 44;
    r.orig_bytes = Some(0);
    r.resp_bytes = Some(0);
    r.interim = i % 2 == 1;
    r
}

/// A verified conversation of client `j` (a known-good peer).
fn client(uid: u64, j: u32, ts: f64) -> ConnRecord {
    let a = Ipv4Addr::from(0x0a00_0000 | (j + 1));
    let mut r = tcp(uid, IpAddr::V4(a), 40_000, 443, ts);
    r.conn_state = ConnState::SF;
    r.history = History::from("ShADadFf");
    r.orig_verified = true;
    r.duration = Some(0.05);
    r.orig_bytes = Some(517);
    r.resp_bytes = Some(4_000);
    r.orig_pkts = 6;
    r.resp_pkts = 6;
    r.orig_ip_bytes = 6 * 52 + 517;
    r.resp_ip_bytes = 6 * 52 + 4_000;
    r
}

const PROBE_SECS: f64 = 0.0002;

/// The scanner's probe `k`: refused.
fn probe(uid: u64, k: u16, ts: f64) -> ConnRecord {
    let mut r = tcp(uid, IpAddr::V4(SCANNER), 61_000, 1 + k, ts);
    r.conn_state = ConnState::REJ;
    r.history = History::from("Sr");
    r.duration = Some(PROBE_SECS);
    r.orig_pkts = 1;
    r.resp_pkts = 1;
    r.orig_ip_bytes = 44;
    r.resp_ip_bytes = 40;
    r.orig_bytes = Some(0);
    r.resp_bytes = Some(0);
    r
}

fn check_limits(s: &EvidenceStats, cfg: &EvidenceConfig, at: u64) {
    assert!(
        s.sources <= cfg.max_sources
            && s.services <= cfg.max_services
            && s.open_conns <= cfg.max_open_conns
            && s.known_good <= cfg.max_known_good,
        "a table over its limit after record {at}: {s:?}"
    );
}

#[test]
fn a_spoofed_flood_stays_within_the_configured_bound() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const SPOOFED: u64 = 1_000_000;
    const CLIENT_EVERY: u64 = 33;
    const PROBE_EVERY: u64 = 1_000;
    // 5,000 spoofed SYNs a second: 200 s, within every window, so every
    // source leaves its table by eviction, none by age.
    const STEP: f64 = 0.0002;

    let cfg = config();
    let rules = rules();
    let windows = rules.windows.len();
    let labels = classes().len();
    // What the records carry, allocated before the measurement starts.
    let flood = verdict("flood_syn");
    let scan = verdict("scan_syn");
    let benign = verdict("benign");
    let rows: [&[f64]; 1] = [&[]];

    let mut d = Decider::new(rules, facts(), cfg.clone());
    let before = live();

    let mut uid = SPOOFED;
    let (mut clients, mut probes) = (0u32, 0u16);
    let mut peak = 0isize;
    let mut proposals = 0u64;
    // The scanner's port-scan proposals: how many, the first's and the
    // last's record time, and the last one's failed targets.
    let mut scan_proposals = 0u64;
    let (mut first_scan, mut last_scan, mut last_failed_targets) = (None, 0.0, 0);
    let mut handle = |p: Option<Proposal>| {
        let Some(p) = p else { return };
        proposals += 1;
        assert_eq!(
            p.decision.target,
            IpAddr::V4(SCANNER),
            "only the scanner is acted on: {:?} by {}",
            p.decision.kind,
            p.decision.rule
        );
        if p.decision.rule == "port-scan" {
            assert_eq!(p.decision.kind, ActionKind::Block);
            scan_proposals += 1;
            first_scan.get_or_insert(p.at);
            last_scan = p.at;
            last_failed_targets = p.evidence.facts.as_ref().map_or(0, |f| f.failed_targets);
        }
    };
    let mut last = T0;
    for i in 0..SPOOFED {
        let t = T0 + i as f64 * STEP;
        last = t;
        // Most spoofed records are shed by the scorer under a flood: one
        // in four is scored.
        let v = (i % 4 == 0).then_some(Verdicts {
            verdicts: &flood,
            rows: &rows,
        });
        handle(d.record(&spoofed(i, t), v));
        if i % CLIENT_EVERY == CLIENT_EVERY / 2 {
            uid += 1;
            let v = Verdicts {
                verdicts: &benign,
                rows: &rows,
            };
            handle(d.record(&client(uid, clients, t), Some(v)));
            clients += 1;
        }
        if i % PROBE_EVERY == PROBE_EVERY / 2 {
            uid += 1;
            let v = Verdicts {
                verdicts: &scan,
                rows: &rows,
            };
            handle(d.record(&probe(uid, probes, t), Some(v)));
            probes += 1;
        }
        check_limits(&d.stats(), &cfg, i);
        if i % 10_000 == 0 {
            peak = peak.max(live() - before);
        }
    }
    let held = live() - before;
    peak = peak.max(held);
    let s = d.stats();
    let bound = d.memory_bound();
    println!(
        "evidence flood: {SPOOFED} spoofed sources, {clients} verified clients, {probes} probes; \
         {windows} windows, {labels} labels; {s:?}"
    );
    println!(
        "heap held by the decider: {:.2} MB after the flood, {:.2} MB at most at checkpoints; \
         memory_bytes() says {:.2} MB; the configuration's bound: {:.2} MB",
        mb(held as usize),
        mb(peak as usize),
        mb(d.memory_bytes()),
        mb(bound)
    );
    println!(
        "scanner: {scan_proposals} port-scan proposals from {first_scan:?} to {last_scan}, \
         the last with {last_failed_targets} failed targets; {proposals} proposals in all"
    );

    assert!(
        peak as usize <= bound,
        "the decider holds {peak} bytes, over its bound of {bound}"
    );
    // Every table full, and every entry beyond its limit evicted (none
    // is old enough to expire).
    let sources = SPOOFED + u64::from(clients) + 1;
    let services = SPOOFED + u64::from(clients) + u64::from(probes);
    assert_eq!(
        (s.sources, s.services, s.open_conns, s.known_good),
        (
            cfg.max_sources,
            cfg.max_services,
            cfg.max_open_conns,
            cfg.max_known_good
        )
    );
    assert_eq!(s.evicted_sources, sources - cfg.max_sources as u64);
    assert_eq!(s.evicted_services, services - cfg.max_services as u64);
    assert_eq!(
        s.evicted_open_conns,
        SPOOFED / 2 - cfg.max_open_conns as u64
    );
    assert_eq!(
        s.evicted_known_good,
        u64::from(clients) - cfg.max_known_good as u64
    );
    // The scanner kept its evidence through the flood: proposed from its
    // 20th port on, again about once a second, up to the end, with every
    // target it failed (up to the per-source cap) still counted.
    let first = first_scan.expect("the scanner was never proposed");
    // (A record's time is its end: the probe's start plus its duration.)
    let expected_first = T0 + (19 * PROBE_EVERY + PROBE_EVERY / 2) as f64 * STEP + PROBE_SECS;
    assert!((first - expected_first).abs() < 1e-6, "first at {first}");
    assert!(
        last - last_scan <= 1.5,
        "last at {last_scan}, flood ended at {last}"
    );
    assert_eq!(last_failed_targets, cfg.max_targets_per_source as u64);
    let seconds = (last_scan - first).round() as u64;
    assert!(
        scan_proposals >= seconds / 2 && scan_proposals <= seconds + 1,
        "{scan_proposals} proposals over {seconds} s"
    );
    drop(d);
}

/// Every entry at its worst: sources at the full target set with every
/// label, services and open connections with every label, straight into
/// the stage. First the source table alone (the others limited to one
/// entry), to see a source's real cost; then every table.
#[test]
fn tables_at_their_worst_stay_within_the_derived_bound() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let windows = rules().evidence_windows();
    let labels = classes().len();
    let base = EvidenceConfig {
        max_sources: 500,
        max_services: 1,
        max_open_conns: 1,
        max_known_good: 1,
        ..EvidenceConfig::default()
    };
    let every = EvidenceConfig {
        max_services: 1_000,
        max_open_conns: 1_000,
        max_known_good: 500,
        ..base.clone()
    };
    for (name, cfg, snapshots) in [("sources alone", base, 1), ("every table", every, labels)] {
        let mut stage = EvidenceStage::new(cfg.clone(), windows.clone());
        let ids: Vec<LabelId> = classes().iter().map(|c| stage.label_id(MODEL, c)).collect();
        let before = live();
        let mut t = T0;
        let mut uid = 0u64;
        // Half again as many sources as the table holds: it evicts.
        let sources = cfg.max_sources as u32 * 3 / 2;
        for j in 0..sources {
            // A known-good peer first, then a scan of the full target set
            // with every label: on each target's connection (interim
            // snapshots, never a final record) `snapshots` labels, one
            // a snapshot; across the source every label.
            let src = IpAddr::V4(Ipv4Addr::from(0x0c00_0000 | j));
            uid += 1;
            t += 0.0001;
            let mut hello = client(uid, j, t);
            hello.orig_h = src;
            stage.observe(&hello, &[]);
            for k in 0..cfg.max_targets_per_source {
                uid += 1;
                for n in 0..snapshots {
                    t += 0.0001;
                    let mut r = tcp(uid, src, 50_000, 1 + k as u16, t);
                    r.conn_state = ConnState::S0;
                    r.history = History::from("S");
                    r.orig_pkts = 1 + n as u64;
                    r.orig_bytes = Some(0);
                    r.resp_bytes = Some(0);
                    r.interim = true;
                    stage.observe(&r, &[ids[(k + n) % labels]]);
                }
            }
        }
        let held = (live() - before) as usize;
        let s = stage.stats();
        check_limits(&s, &cfg, 0);
        let b = stage.memory_bound();
        let per_source = held as f64 / cfg.max_sources as f64;
        println!(
            "{name}: {s:?}\n  heap {:.3} MB ({per_source:.0} B per source slot), memory_bytes() \
             {:.3} MB; bound {:.3} MB ({b:?})",
            mb(held),
            mb(stage.memory_bytes()),
            mb(b.total()),
        );
        assert_eq!(s.sources, cfg.max_sources);
        assert!(s.evicted_sources > 0);
        assert!(
            held <= b.total(),
            "{name}: the stage holds {held} bytes, over its bound of {}",
            b.total()
        );
    }
}
