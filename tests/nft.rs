//! The nftables enforcer against a real kernel, inside network namespaces
//! the tests create: a "node" namespace where osprey's table lives and a
//! "peer" namespace that sends pings to it over a veth pair, from
//! addresses in 198.18.0.0/15 and fd00::/64.
//!
//! Needs root (namespaces, nft) and iputils' ping. Skipped with a message otherwise, unless
//! OSPREY_E2E=1, which turns the skip into a failure.

use std::process::Command;
use std::thread::sleep;
use std::time::Duration;

use ipnet::IpNet;
use osprey::respond::nft::{NftConfig, NftEnforcer, NftError};
use osprey::respond::{Action, ActionKind, Evidence, RateLimit};
use prometheus::{Encoder, Registry};

const NODE4: &str = "198.18.0.1";
const NODE6: &str = "fd00::1";
const PEER_ADDRS: &[&str] = &[
    "198.18.0.2/15",
    "198.18.0.3/15",
    "198.18.0.4/15",
    "198.18.64.5/15",
];
const PEER_ADDRS6: &[&str] = &["fd00::2/64", "fd00::3/64"];

fn run(argv: &[&str]) -> std::process::Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {argv:?}: {e}"))
}

fn must(argv: &[&str]) -> String {
    let out = run(argv);
    assert!(
        out.status.success(),
        "{argv:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// True when the test may run; prints why not otherwise.
fn may_run(test: &str) -> bool {
    let tools = run_ok(&["ip", "-V"]) && run_ok(&["nft", "--version"]) && run_ok(&["ping", "-V"]);
    if is_root() && tools {
        return true;
    }
    let why = if tools {
        "needs root for network namespaces and nft"
    } else {
        "needs `ip`, `nft` and `ping` (iputils-ping)"
    };
    if std::env::var("OSPREY_E2E").as_deref() == Ok("1") {
        panic!("{test}: {why} (OSPREY_E2E=1)");
    }
    eprintln!("skipping {test}: {why}");
    false
}

fn run_ok(argv: &[&str]) -> bool {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A node namespace and a peer namespace joined by a veth pair; both
/// deleted on drop.
struct Lab {
    node: String,
    peer: String,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let base = format!("osprey-nft-{}-{tag}", std::process::id());
        let lab = Lab {
            node: format!("{base}-n"),
            peer: format!("{base}-p"),
        };
        for ns in [&lab.node, &lab.peer] {
            must(&["ip", "netns", "add", ns]);
        }
        let (n, p) = (lab.node.as_str(), lab.peer.as_str());
        must(&[
            "ip", "link", "add", "vnode", "netns", n, "type", "veth", "peer", "name", "vpeer",
            "netns", p,
        ]);
        let node_v4 = format!("{NODE4}/15");
        let node_v6 = format!("{NODE6}/64");
        must(&["ip", "-n", n, "addr", "add", &node_v4, "dev", "vnode"]);
        must(&[
            "ip", "-n", n, "addr", "add", &node_v6, "dev", "vnode", "nodad",
        ]);
        for a in PEER_ADDRS {
            must(&["ip", "-n", p, "addr", "add", a, "dev", "vpeer"]);
        }
        for a in PEER_ADDRS6 {
            must(&["ip", "-n", p, "addr", "add", a, "dev", "vpeer", "nodad"]);
        }
        for (ns, dev) in [(n, "vnode"), (p, "vpeer")] {
            must(&["ip", "-n", ns, "link", "set", dev, "up"]);
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        lab
    }

    fn cfg(&self) -> NftConfig {
        NftConfig {
            netns: Some(self.node.clone()),
            ..NftConfig::default()
        }
    }

    fn start(&self) -> NftEnforcer {
        NftEnforcer::start(self.cfg(), &Registry::new()).expect("start")
    }

    fn nft(&self, args: &[&str]) -> std::process::Output {
        let mut argv = vec!["ip", "netns", "exec", &self.node, "nft"];
        argv.extend_from_slice(args);
        run(&argv)
    }

    fn set_text(&self, set: &str) -> String {
        let out = self.nft(&["list", "set", "inet", "osprey", set]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Seconds left on `addr` in `set`, if it is there.
    fn expires(&self, set: &str, addr: &str) -> Option<u64> {
        let out = self.nft(&["-j", "list", "set", "inet", "osprey", set]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let objs = v["nftables"].as_array()?;
        let elems = objs.iter().find_map(|o| o["set"]["elem"].as_array())?;
        elems
            .iter()
            .find(|e| e["elem"]["val"] == addr)
            .and_then(|e| e["elem"]["expires"].as_u64())
    }

    fn table_exists(&self) -> bool {
        self.nft(&["list", "table", "inet", "osprey"])
            .status
            .success()
    }

    /// Pings the node from `src`; returns (sent, received).
    fn ping(&self, src: &str, count: u32, interval: &str) -> (u32, u32) {
        let dst = if src.contains(':') { NODE6 } else { NODE4 };
        let c = count.to_string();
        let out = run(&[
            "ip", "netns", "exec", &self.peer, "ping", "-n", "-q", "-c", &c, "-i", interval, "-W",
            "1", "-I", src, dst,
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains("received"))
            .unwrap_or_default();
        let nums: Vec<u32> = line
            .split(',')
            .filter_map(|part| part.split_whitespace().next()?.parse().ok())
            .collect();
        (
            nums.first().copied().unwrap_or(0),
            nums.get(1).copied().unwrap_or(0),
        )
    }

    fn reaches(&self, src: &str) -> bool {
        self.ping(src, 2, "0.2").1 > 0
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.node, &self.peer] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn action(kind: ActionKind, target: &str, ttl_secs: u64) -> Action {
    let target: IpNet = target.parse().expect("test address");
    Action {
        id: format!("t-{target}"),
        ts: Action::now_ts(),
        rule: "test".into(),
        kind,
        target,
        ttl: Duration::from_secs(ttl_secs),
        enforce: true,
        softened: None,
        evidence: Evidence {
            uid: "C1".into(),
            interim: false,
            model: Some("m".into()),
            label: None,
            score: None,
            probability: None,
            orig_h: target.addr(),
            orig_p: 1,
            resp_h: NODE4.parse().expect("node address"),
            resp_p: 80,
            proto: "icmp".into(),
            service: None,
            conn_state: "OTH".into(),
            history: None,
            facts: None,
            identity: None,
        },
    }
}

fn rate(pps: u32, burst: u32) -> ActionKind {
    ActionKind::RateLimit(RateLimit {
        packets_per_sec: Some(pps),
        bytes_per_sec: None,
        burst,
    })
}

#[test]
fn block_drops_the_source_until_its_ttl_ends() {
    if !may_run("block_drops_the_source_until_its_ttl_ends") {
        return;
    }
    let lab = Lab::new("ttl");
    let registry = Registry::new();
    let mut nft = NftEnforcer::start(lab.cfg(), &registry).expect("start");
    assert!(lab.reaches("198.18.0.3") && lab.reaches("198.18.0.2"));

    nft.apply(&action(ActionKind::Block, "198.18.0.3/32", 2))
        .expect("apply");
    assert!(lab.set_text("block_v4").contains("198.18.0.3 timeout 2s"));
    assert!(!lab.reaches("198.18.0.3"), "blocked source got through");
    assert!(lab.reaches("198.18.0.2"), "an unblocked source was dropped");
    assert_eq!(nft.active().blocked, 1);

    let text = {
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut buf)
            .expect("encode");
        String::from_utf8(buf).expect("utf8")
    };
    assert!(text.contains(r#"osprey_nft_active_elements{set="block_v4"} 1"#));
    assert!(text.contains(r#"osprey_nft_operations_total{op="apply",result="ok"} 1"#));
    assert!(!text.contains("198.18."), "an address leaked into a label");

    sleep(Duration::from_millis(2600));
    assert!(!lab.set_text("block_v4").contains("198.18.0.3"));
    assert!(lab.reaches("198.18.0.3"), "still dropped after the TTL");
    let out = nft.reconcile().expect("reconcile");
    assert_eq!(out.forgotten, 1);
    assert_eq!(nft.active().blocked, 0);
}

#[test]
fn reapplying_restarts_the_timeout() {
    if !may_run("reapplying_restarts_the_timeout") {
        return;
    }
    let lab = Lab::new("refresh");
    let mut nft = lab.start();
    nft.apply(&action(ActionKind::Block, "198.18.0.3/32", 10))
        .expect("apply");
    sleep(Duration::from_millis(2200));
    let before = lab.expires("block_v4", "198.18.0.3").expect("element");
    assert!(before <= 8, "expires {before}");
    nft.apply(&action(ActionKind::Block, "198.18.0.3/32", 10))
        .expect("re-apply");
    let after = lab.expires("block_v4", "198.18.0.3").expect("element");
    assert!(after >= 9, "timeout not restarted: {after}");
    // A shorter TTL replaces a longer one as well.
    nft.apply(&action(ActionKind::Block, "198.18.0.3/32", 3))
        .expect("shorter");
    let short = lab.expires("block_v4", "198.18.0.3").expect("element");
    assert!(short <= 3, "expires {short}");
}

#[test]
fn cidr_and_ipv6_blocks() {
    if !may_run("cidr_and_ipv6_blocks") {
        return;
    }
    let lab = Lab::new("cidr");
    let mut nft = lab.start();
    assert!(lab.reaches("198.18.64.5") && lab.reaches("fd00::3"));
    nft.apply(&action(ActionKind::Block, "198.18.64.0/24", 30))
        .expect("cidr");
    nft.apply(&action(ActionKind::Block, "fd00::3/128", 30))
        .expect("v6");
    assert!(lab.set_text("block_v4").contains("198.18.64.0/24"));
    assert!(lab.set_text("block_v6").contains("fd00::3"));
    assert!(
        !lab.reaches("198.18.64.5"),
        "source in the blocked /24 passed"
    );
    assert!(lab.reaches("198.18.0.2"));
    assert!(!lab.reaches("fd00::3"), "blocked v6 source passed");
    assert!(lab.reaches("fd00::2"));
    // Re-applying an interval element refreshes it rather than failing.
    nft.apply(&action(ActionKind::Block, "198.18.64.0/24", 30))
        .expect("cidr again");
    // A host inside a blocked range is already enforced by it (the
    // interval set would refuse it as an overlap).
    nft.apply(&action(ActionKind::Block, "198.18.64.9/32", 30))
        .expect("a host inside a blocked range");
    assert!(!lab.set_text("block_v4").contains("198.18.64.9"));
    assert_eq!(nft.active().blocked, 2);
}

#[test]
fn rate_limit_polices_the_source() {
    if !may_run("rate_limit_polices_the_source") {
        return;
    }
    let lab = Lab::new("rate");
    let mut nft = lab.start();
    // A limit other than the default gets its own set and rule.
    nft.apply(&action(rate(10, 5), "198.18.0.3/32", 60))
        .expect("apply");
    assert!(lab.set_text("ratelimit_v4_p10_b5").contains("198.18.0.3"));
    // The default limit uses the base set.
    nft.apply(&action(
        ActionKind::RateLimit(NftConfig::default().default_rate_limit),
        "198.18.0.4/32",
        60,
    ))
    .expect("default");
    assert!(lab.set_text("ratelimit_v4").contains("198.18.0.4"));

    // Under the limit: 5 pings at 5/s all pass.
    let (sent, got) = lab.ping("198.18.0.3", 5, "0.2");
    assert_eq!((sent, got), (5, 5), "pings under the limit were dropped");
    sleep(Duration::from_secs(1));
    // Over the limit: 200 pings at 100/s, about 2 s: the meter lets
    // roughly 10/s plus the burst through.
    let (sent, got) = lab.ping("198.18.0.3", 200, "0.01");
    assert_eq!(sent, 200);
    assert!(got < 60, "{got} of 200 passed a 10/s limit");
    assert!(got >= 10, "only {got} of 200 passed: limit, not block");
    // An unlimited source at the same rate passes.
    let (_, free) = lab.ping("198.18.0.2", 200, "0.01");
    eprintln!("10/s limit: {got} of 200 passed; unlimited source: {free} of 200");
    assert!(free >= 190, "unlimited source lost {}", 200 - free);
    assert_eq!(nft.active().rate_limited, 2);
}

#[test]
fn reconcile_restores_what_a_flush_removed() {
    if !may_run("reconcile_restores_what_a_flush_removed") {
        return;
    }
    let lab = Lab::new("flush");
    let mut nft = lab.start();
    nft.apply(&action(ActionKind::Block, "198.18.0.3/32", 60))
        .expect("block");
    nft.apply(&action(rate(10, 5), "198.18.0.4/32", 60))
        .expect("rate");
    let out = nft.reconcile().expect("reconcile");
    assert!(!out.rebuilt && out.restored == 0, "{out:?}");

    assert!(lab.nft(&["flush", "ruleset"]).status.success());
    assert!(!lab.table_exists());
    assert!(lab.reaches("198.18.0.3"));
    let out = nft.reconcile().expect("reconcile");
    assert!(out.rebuilt && out.restored == 2, "{out:?}");
    assert!(lab.set_text("block_v4").contains("198.18.0.3"));
    assert!(lab.set_text("ratelimit_v4_p10_b5").contains("198.18.0.4"));
    assert!(
        !lab.reaches("198.18.0.3"),
        "block not enforced after repair"
    );
    let left = lab.expires("block_v4", "198.18.0.3").expect("element");
    assert!((50..=60).contains(&left), "restored with {left}s left");

    // One element deleted by hand comes back, nothing else is rebuilt.
    assert!(lab
        .nft(&[
            "delete",
            "element",
            "inet",
            "osprey",
            "block_v4",
            "{ 198.18.0.3 }"
        ])
        .status
        .success());
    let out = nft.reconcile().expect("reconcile");
    assert!(!out.rebuilt && out.restored == 1, "{out:?}");

    // Apply after a flush repairs by itself.
    assert!(lab.nft(&["flush", "ruleset"]).status.success());
    nft.apply(&action(ActionKind::Block, "198.18.0.2/32", 60))
        .expect("apply after flush");
    assert!(lab.set_text("block_v4").contains("198.18.0.2"));
    assert!(lab.set_text("block_v4").contains("198.18.0.3"));
}

#[test]
fn a_leftover_table_is_adopted_with_its_elements() {
    if !may_run("a_leftover_table_is_adopted_with_its_elements") {
        return;
    }
    let lab = Lab::new("adopt");
    {
        let mut first = lab.start();
        first
            .apply(&action(ActionKind::Block, "198.18.0.3/32", 60))
            .expect("block");
        first
            .apply(&action(rate(10, 5), "198.18.0.4/32", 60))
            .expect("rate");
    }
    sleep(Duration::from_millis(1100));
    let mut second = lab.start();
    let left = lab.expires("block_v4", "198.18.0.3").expect("element kept");
    assert!(left < 60, "timeout was restarted: {left}");
    assert!(!lab.reaches("198.18.0.3"));
    let active = second.active();
    assert_eq!((active.blocked, active.rate_limited), (1, 1));
    // Adopted decisions are remembered: a flush is repaired.
    assert!(lab.nft(&["flush", "ruleset"]).status.success());
    let out = second.reconcile().expect("reconcile");
    assert!(out.rebuilt && out.restored == 2, "{out:?}");
    assert!(lab.set_text("ratelimit_v4_p10_b5").contains("198.18.0.4"));
}

#[test]
fn cleanup_removes_the_table() {
    if !may_run("cleanup_removes_the_table") {
        return;
    }
    let lab = Lab::new("cleanup");
    let mut nft = lab.start();
    nft.apply(&action(ActionKind::Block, "198.18.0.3/32", 60))
        .expect("block");
    assert!(NftEnforcer::cleanup(&lab.cfg()).expect("cleanup"));
    assert!(!lab.table_exists());
    assert!(lab.reaches("198.18.0.3"));
    assert!(!NftEnforcer::cleanup(&lab.cfg()).expect("second cleanup"));
}

#[test]
fn removing_a_missing_element_is_ok() {
    if !may_run("removing_a_missing_element_is_ok") {
        return;
    }
    let lab = Lab::new("remove");
    let mut nft = lab.start();
    let target: IpNet = "198.18.0.3/32".parse().expect("address");
    nft.remove(&target, &ActionKind::Block)
        .expect("never added");
    nft.remove(&target, &rate(7, 7)).expect("set never created");
    nft.apply(&action(ActionKind::Block, "198.18.0.3/32", 60))
        .expect("block");
    nft.remove(&target, &ActionKind::Block).expect("remove");
    assert!(!lab.set_text("block_v4").contains("198.18.0.3"));
    assert!(lab.reaches("198.18.0.3"));
    nft.remove(&target, &ActionKind::Block).expect("again");
    assert_eq!(nft.active().blocked, 0);
}

#[test]
fn dry_run_and_alerts_are_not_enforced() {
    if !may_run("dry_run_and_alerts_are_not_enforced") {
        return;
    }
    let lab = Lab::new("dry");
    let mut nft = lab.start();
    let mut a = action(ActionKind::Block, "198.18.0.3/32", 60);
    a.enforce = false;
    nft.apply(&a).expect("dry run");
    assert!(!lab.set_text("block_v4").contains("198.18.0.3"));
    let alert = action(ActionKind::Alert, "198.18.0.3/32", 60);
    assert!(matches!(nft.apply(&alert), Err(NftError::Invalid(_))));
    let no_ttl = action(ActionKind::Block, "198.18.0.3/32", 0);
    assert!(matches!(nft.apply(&no_ttl), Err(NftError::Invalid(_))));
}

#[test]
fn a_missing_nft_is_named() {
    // No root needed: the program is never found.
    let cfg = NftConfig {
        nft_path: "/nonexistent/osprey-test/nft".into(),
        ..NftConfig::default()
    };
    match NftEnforcer::start(cfg, &Registry::new()) {
        Err(e @ NftError::Missing { .. }) => {
            assert!(
                e.to_string().contains("/nonexistent/osprey-test/nft"),
                "{e}"
            )
        }
        other => panic!("expected Missing, got {:?}", other.err()),
    }
}

/// An `nft` that hangs while `flag` exists and is the real one (in the
/// lab's node namespace, through the enforcer's `netns`) otherwise.
fn hanging_nft(dir: &std::path::Path, flag: &std::path::Path) -> String {
    let script = dir.join("nft-maybe-hung");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nif [ -e {flag:?} ]; then exec sleep 30; fi\nexec nft \"$@\"\n"),
    )
    .expect("script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script.to_str().expect("utf-8 path").to_string()
}

fn wait_until(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if ok() {
            return true;
        }
        sleep(Duration::from_millis(50));
    }
    ok()
}

/// nft hangs (a netlink lock held elsewhere): the call is killed at its
/// timeout, the decision is queued without waiting for it, retried with
/// backoff, counted as pending meanwhile, and applied once nft works
/// again — not dropped, and not counted active before it is.
#[test]
fn a_hung_nft_is_killed_and_the_decision_retried_until_applied() {
    use osprey::respond::enforce::{EnforceMetrics, RetryPolicy};
    use osprey::respond::nft::NftWorker;
    if !may_run("a_hung_nft_is_killed_and_the_decision_retried_until_applied") {
        return;
    }
    let lab = Lab::new("hung");
    let dir = tempfile::tempdir().expect("tempdir");
    let flag = dir.path().join("hang");
    let registry = Registry::new();
    let cfg = NftConfig {
        nft_path: hanging_nft(dir.path(), &flag),
        call_timeout_ms: 300,
        retries: 0,
        reconcile_interval_secs: 3600,
        ..lab.cfg()
    };
    let nft = NftEnforcer::start(cfg, &registry).expect("start");
    let m = EnforceMetrics::register(&registry);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let worker = NftWorker::spawn(
        nft,
        RetryPolicy {
            initial: Duration::from_millis(200),
            max: Duration::from_millis(400),
        },
        Some(m.clone()),
        None,
    )
    .expect("worker");
    // Let the worker's first reconcile (with nft working) pass.
    rt.block_on(worker.snapshot()).expect("snapshot");
    std::fs::write(&flag, b"").expect("flag");
    let t = std::time::Instant::now();
    assert!(worker.submit(&action(ActionKind::Block, "198.18.0.2/32", 60)));
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "submitting waited for nft: {:?}",
        t.elapsed()
    );
    let retrying = wait_until(Duration::from_secs(5), || {
        rt.block_on(worker.snapshot())
            .map(|s| {
                s.retrying
                    .iter()
                    .any(|r| r.attempts >= 2 && r.error.contains("did not finish"))
            })
            .unwrap_or(false)
    });
    assert!(retrying, "the hung call was not killed and retried");
    assert_eq!(m.active.with_label_values(&["block"]).get(), 0);
    assert_eq!(m.pending.with_label_values(&["block"]).get(), 1);
    assert!(lab.reaches("198.18.0.2"), "blocked while nft was hung?");

    std::fs::remove_file(&flag).expect("unflag");
    let applied = wait_until(Duration::from_secs(5), || {
        lab.set_text("block_v4").contains("198.18.0.2")
    });
    assert!(
        applied,
        "the decision was not applied once nft worked again"
    );
    assert!(!lab.reaches("198.18.0.2"));
    assert!(m.retries.with_label_values(&["block"]).get() >= 2);
    assert!(wait_until(Duration::from_secs(2), || {
        m.results.with_label_values(&["block", "enforced"]).get() == 1
            && m.pending.with_label_values(&["block"]).get() == 0
            && m.active.with_label_values(&["block"]).get() == 1
    }));
    let mut buf = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .expect("encode");
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.lines()
            .any(|l| l.starts_with("osprey_nft_operations_total")
                && l.contains("result=\"timeout\"")),
        "no timed-out nft call counted:\n{text}"
    );
    drop(worker);
}

/// IPv6 aggregation in the kernel: a /64 replaces the hosts it covers in
/// one transaction (an interval set refuses overlaps), a host inside a
/// held /64 is already enforced, and lifting one address lifts the range
/// around it.
#[test]
fn an_ipv6_prefix_replaces_its_hosts_and_a_lift_clears_overlaps() {
    if !may_run("an_ipv6_prefix_replaces_its_hosts_and_a_lift_clears_overlaps") {
        return;
    }
    let lab = Lab::new("v6agg");
    let mut nft = lab.start();
    nft.apply(&action(ActionKind::Block, "fd00::2/128", 60))
        .expect("host 2");
    nft.apply(&action(ActionKind::Block, "fd00::3/128", 60))
        .expect("host 3");
    nft.apply(&action(ActionKind::Block, "fd00::/64", 30))
        .expect("the prefix over its hosts");
    let text = lab.set_text("block_v6");
    assert!(text.contains("fd00::/64"), "{text}");
    assert!(!text.contains("fd00::2 "), "{text}");
    // The prefix took the longest time left of what it replaced.
    let held = nft.held();
    assert!(held[0].left > Duration::from_secs(50), "{held:?}");
    nft.apply(&action(ActionKind::Block, "fd00::3/128", 60))
        .expect("a host inside a held prefix");
    assert!(!lab.reaches("fd00::2"));
    assert!(!lab.reaches("fd00::3"));
    let held = nft.held();
    assert_eq!(held.len(), 1, "{held:?}");
    let lifted = nft
        .remove_overlapping(&"fd00::3/128".parse().expect("net"))
        .expect("lift");
    assert_eq!(lifted.len(), 1);
    assert_eq!(lifted[0].target, "fd00::/64".parse::<IpNet>().expect("net"));
    let text = lab.set_text("block_v6");
    assert!(!text.contains("fd00::"), "{text}");
    // Neighbour discovery may need a moment after being dropped.
    assert!(wait_until(Duration::from_secs(5), || lab.reaches("fd00::2")));
    assert!(nft.held().is_empty());
    // Reconcile does not bring a lifted decision back.
    nft.reconcile().expect("reconcile");
    assert!(!lab.set_text("block_v6").contains("fd00::"));
}

/// While nft hangs on a block, a hook decided right after it runs at
/// once, and the responder takes further proposals: one stuck enforcer
/// holds up no other.
#[test]
fn a_hung_nft_holds_up_no_other_enforcer() {
    use osprey::respond::admit::{Admission, AdmitConfig, BreakerLimits, Proposal};
    use osprey::respond::dispatch::Dispatch;
    use osprey::respond::enforce::RetryPolicy;
    use osprey::respond::hook::{ExecConfig, HookConfig, Hooks};
    use osprey::respond::responder::{RespondMetrics, Responder};
    use osprey::respond::rules::Decision;
    use osprey::respond::safety::Allowlist;
    if !may_run("a_hung_nft_holds_up_no_other_enforcer") {
        return;
    }
    let lab = Lab::new("indep");
    let dir = tempfile::tempdir().expect("tempdir");
    let flag = dir.path().join("hang");
    let registry = Registry::new();
    let nft = NftEnforcer::start(
        NftConfig {
            nft_path: hanging_nft(dir.path(), &flag),
            call_timeout_ms: 5_000,
            retries: 0,
            reconcile_interval_secs: 3600,
            ..lab.cfg()
        },
        &registry,
    )
    .expect("start");
    let out = dir.path().join("hook-ran");
    let hooks = Hooks::new(
        &[HookConfig {
            name: "note".into(),
            webhook: None,
            exec: Some(ExecConfig {
                argv: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    format!("cat > {:?}", out.to_str().expect("utf-8")),
                ],
                timeout_secs: 5,
            }),
        }],
        &registry,
    )
    .expect("hooks");
    let metrics = RespondMetrics::register(&registry);
    let responder = Responder {
        admission: Admission::new(
            AdmitConfig {
                enforce: true,
                alert_repeat: Duration::from_secs(60),
                breakers: BreakerLimits {
                    block: 100,
                    rate_limit: 100,
                    quarantine_pod: 100,
                    hook: 100,
                },
                repeat_memory: Duration::from_secs(60),
                ipv6_aggregate: None,
            },
            Allowlist::new(&[]),
        ),
        dispatch: Dispatch::new(Some(nft))
            .with_hooks(hooks)
            .with_metrics(metrics.enforce.clone())
            .with_retry(RetryPolicy {
                initial: Duration::from_millis(200),
                max: Duration::from_millis(400),
            }),
        metrics: metrics.clone(),
        rediscover: Duration::from_secs(3600),
        api_servers: Vec::new(),
        control: None,
    };
    let proposal = |kind: ActionKind, target: &str| {
        let a = action(ActionKind::Block, &format!("{target}/32"), 60);
        Proposal {
            decision: Decision {
                rule: "test".into(),
                kind,
                target: target.parse().expect("addr"),
                ttl: Duration::from_secs(60),
                model: None,
                index: 0,
                escalate: None,
            },
            evidence: a.evidence,
            known_good: None,
            forgeable: false,
            at: Action::now_ts(),
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let responding = tokio::spawn(responder.run(rx));
        // The first reconcile runs with nft working; then nft hangs.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        std::fs::write(&flag, b"").expect("flag");
        let t = std::time::Instant::now();
        tx.send(proposal(ActionKind::Block, "198.18.0.2"))
            .await
            .expect("send");
        tx.send(proposal(
            ActionKind::Hook {
                hook: "note".into(),
            },
            "198.18.0.3",
        ))
        .await
        .expect("send");
        while !out.exists() && t.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = t.elapsed();
        assert!(out.exists(), "the hook never ran");
        assert!(
            took < Duration::from_secs(2),
            "the hook waited {took:?} behind the hung nft call"
        );
        eprintln!(
            "hook ran {:.0} ms after the block was decided, nft hung",
            took.as_secs_f64() * 1e3
        );
        // nft works again: the block lands by its retries.
        std::fs::remove_file(&flag).expect("unflag");
        let start = std::time::Instant::now();
        while !lab.set_text("block_v4").contains("198.18.0.2")
            && start.elapsed() < Duration::from_secs(15)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            lab.set_text("block_v4").contains("198.18.0.2"),
            "the block never landed"
        );
        drop(tx);
        responding.await.expect("responder");
    });
    assert_eq!(
        metrics
            .enforce
            .results
            .with_label_values(&["block", "enforced"])
            .get(),
        1
    );
}

#[test]
fn allowlisted_elements_are_lifted_and_not_restored() {
    if !may_run("allowlisted_elements_are_lifted_and_not_restored") {
        return;
    }
    let lab = Lab::new("lift");
    let registry = Registry::new();
    let mut nft = NftEnforcer::start(lab.cfg(), &registry).expect("start");
    nft.apply(&action(ActionKind::Block, "198.18.0.3/32", 60))
        .expect("block");
    nft.apply(&action(ActionKind::Block, "198.18.0.4/32", 60))
        .expect("block");
    nft.apply(&action(ActionKind::Block, "198.18.64.0/24", 60))
        .expect("cidr");
    nft.apply(&action(rate(10, 5), "198.18.0.2/32", 60))
        .expect("rate");
    nft.apply(&action(ActionKind::Block, "fd00::3/128", 60))
        .expect("v6");
    // An element added behind osprey's back (not in its memory) is read
    // from the kernel's set.
    assert!(lab
        .nft(&[
            "add",
            "element",
            "inet",
            "osprey",
            "block_v4",
            "{ 198.18.0.9 timeout 60s }"
        ])
        .status
        .success());
    assert!(!lab.reaches("198.18.0.3"));
    let allow = osprey::respond::safety::Allowlist::new(&[
        "198.18.0.3/32".parse().expect("net"),
        // Inside the blocked /24: the /24 holds an allowlisted address.
        "198.18.64.5/32".parse().expect("net"),
        "198.18.0.2/32".parse().expect("net"),
        "198.18.0.8/29".parse().expect("net"),
        "fd00::/64".parse().expect("net"),
    ]);
    assert_eq!(nft.lift_allowlisted(&allow).expect("lift"), 5);
    let v4 = lab.set_text("block_v4");
    assert!(v4.contains("198.18.0.4"), "{v4}");
    for gone in ["198.18.0.3", "198.18.64.0", "198.18.0.9"] {
        assert!(!v4.contains(gone), "{gone} still in {v4}");
    }
    assert!(!lab.set_text("ratelimit_v4_p10_b5").contains("198.18.0.2"));
    assert!(!lab.set_text("block_v6").contains("fd00::3"));
    assert!(lab.reaches("198.18.0.3") && lab.reaches("198.18.64.5"));
    // Forgotten: reconcile does not put them back; nothing left to lift.
    let out = nft.reconcile().expect("reconcile");
    assert_eq!(out.restored, 0, "{out:?}");
    assert_eq!(nft.lift_allowlisted(&allow).expect("lift"), 0);
    assert_eq!(nft.active().blocked, 1);
    assert_eq!(nft.active().rate_limited, 0);
    let mut buf = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .expect("encode");
    let text = String::from_utf8(buf).expect("utf8");
    assert!(
        text.contains("osprey_nft_allowlist_lifted_total 5"),
        "{text}"
    );
}
