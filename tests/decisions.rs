//! End to end: decisions an operator can switch on. `osprey run
//! --enforce` with the bundled models and rules in a victim namespace,
//! while
//!
//! - a benign client retries a refused service until it is up, polls a
//!   service across two restarts, tries three ports in turn and queries a
//!   resolver that is down — and is never blocked or limited;
//! - a never-seen host scans 1,024 closed ports with `nmap -sS` — and is
//!   blocked within 2 s of the scan's start;
//! - a forger puts the (known-good) client's address on SYNs to a few
//!   hundred ports, each followed by a blind ACK, so the victim's SYN-ACKs
//!   reach the client, whose kernel resets them — and the client never
//!   enters osprey's sets;
//! - a real host brute-forces a login (refused with 401), another holds
//!   slowloris connections — and each is blocked on unforgeable evidence
//!   (credentials refused, requests held open unanswered, on connections
//!   where the source proved its address), whatever the models say.
//!
//! Needs root, nft, nmap, curl and python3; skips with a reason otherwise
//! unless `OSPREY_E2E=1`. All traffic stays between the namespaces the
//! test creates (198.18.0.0/15), every count and wait is bounded.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::netns::{
    curl_ok, enabled_with, nft_set_elements, port_for, wait_for, Lan, Osprey, Server,
};

const TOOLS: [&str; 4] = ["nft", "nmap", "curl", "python3"];

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/decisions")
        .join(name)
}

/// A python3 helper of tests/decisions/ in `ns`.
fn python(ns: &str, name: &str, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns, "python3"])
        .arg(script(name))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 {name}: {e}"))
}

/// The victim's web service on `port` (tests/decisions/web.py).
fn web(ns: &str, port: u16) -> Server {
    Server(python(ns, "web.py", &[&port.to_string()]))
}

/// osprey enforcing with the bundled models and rules, capturing on every
/// interface of the victim.
fn start_osprey(lan: &Lan, dir: &Path, name: &str) -> Osprey {
    let cfg = dir.join("osprey.toml");
    std::fs::write(
        &cfg,
        "[respond]\nenforce = true\n\n[respond.nft]\nreconcile_interval_secs = 1\n",
    )
    .expect("config");
    // The forger's packets come in on the attacker's link with the
    // client's address: reverse-path filtering would drop them before
    // the victim's stack answers (a node behind a router sees the same).
    for key in ["all", "default", lan.victim_if.as_str()] {
        let out = Lan::try_exec(
            &lan.victim,
            &["sysctl", "-qw", &format!("net.ipv4.conf.{key}.rp_filter=0")],
        );
        assert!(out.status.success(), "sysctl rp_filter: {out:?}");
    }
    let mut osprey = Osprey::start(
        &lan.victim,
        port_for(name),
        dir,
        &["-i", "any", "--config", cfg.to_str().expect("utf-8 path")],
    );
    osprey.wait_ready(Duration::from_secs(30));
    osprey
}

/// Watches osprey's sets for addresses, every 50 ms, until stopped:
/// whether (and when) each appeared in a block or rate-limit set.
struct Watch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(String, String, Duration)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    fn start(ns: &str, addrs: &[&str]) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (ns, addrs) = (
            ns.to_string(),
            addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        );
        let t0 = Instant::now();
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for set in ["block_v4", "ratelimit_v4"] {
                        let els = nft_set_elements(&ns, set);
                        for a in &addrs {
                            if els.contains(a) {
                                let mut s = seen.lock().expect("watch");
                                if !s.iter().any(|(x, y, _)| x == a && y == set) {
                                    s.push((a.clone(), set.to_string(), t0.elapsed()));
                                }
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Watch {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn seen(&self, addr: &str) -> Vec<(String, Duration)> {
        self.seen
            .lock()
            .expect("watch")
            .iter()
            .filter(|(a, _, _)| a == addr)
            .map(|(_, set, t)| (set.clone(), *t))
            .collect()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The osprey::action log lines about `target` (an address).
fn action_lines(osprey: &Osprey, target: &str) -> Vec<String> {
    let needle = format!("target={target}/");
    osprey
        .stderr_text()
        .lines()
        .filter(|l| l.contains("osprey::action") && l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// Retries `url` from `ns` every `every` until it answers or `limit`
/// passes; how many attempts failed before, and whether it got through.
fn retry_until_up(ns: &str, url: &str, every: Duration, limit: Duration) -> (u32, bool) {
    let t0 = Instant::now();
    let mut failed = 0;
    while t0.elapsed() < limit {
        if curl_ok(ns, url, "1") {
            return (failed, true);
        }
        failed += 1;
        std::thread::sleep(every);
    }
    (failed, false)
}

#[test]
fn a_benign_client_is_served_a_scanner_blocked_and_a_forger_blocks_nobody() {
    let test = "a_benign_client_is_served_a_scanner_blocked_and_a_forger_blocks_nobody";
    if !enabled_with(test, &TOOLS) {
        return;
    }
    let lan = Lan::new();
    let dir = tempfile::tempdir().expect("tempdir");
    // The victim's address on the client's side, and on the attacker's.
    let (victim_c, victim_x) = ("198.18.2.1", lan.victim_ip.as_str());
    let _web = web(&lan.victim, 8080);
    let mut osprey = start_osprey(&lan, dir.path(), "decisions-benign");
    let watch = Watch::start(&lan.victim, &[&lan.client_ip, &lan.attacker_ip]);
    let url = |port: u16| format!("http://{victim_c}:{port}/");

    // The client talks to the service: a verified exchange with data
    // makes it a known-good peer.
    assert!(
        wait_for(Duration::from_secs(5), || curl_ok(
            &lan.client,
            &url(8080),
            "2"
        ))
        .is_some(),
        "the web service never answered the client"
    );
    std::thread::sleep(Duration::from_millis(300));

    let t0 = Instant::now();
    // (a) retries a refused service until it is up (it starts at +3 s).
    let retry = {
        let (ns, u) = (lan.client.clone(), url(8081));
        std::thread::spawn(move || {
            retry_until_up(&ns, &u, Duration::from_millis(200), Duration::from_secs(20))
        })
    };
    // (b) polls a service that restarts twice.
    let poll_stop = Arc::new(AtomicBool::new(false));
    let poll = {
        let (ns, u, stop) = (lan.client.clone(), url(8082), poll_stop.clone());
        std::thread::spawn(move || {
            let (mut ok, mut failed, mut last_ok) = (0u32, 0u32, false);
            while !stop.load(Ordering::Relaxed) {
                last_ok = curl_ok(&ns, &u, "1");
                if last_ok {
                    ok += 1;
                } else {
                    failed += 1;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            (ok, failed, last_ok)
        })
    };
    // (c) tries three ports in turn; (d) a resolver that is down.
    let fallback = {
        let ns = lan.client.clone();
        let urls = [url(8083), url(8084), url(8080)];
        std::thread::spawn(move || {
            urls.iter()
                .map(|u| curl_ok(&ns, u, "1"))
                .collect::<Vec<_>>()
        })
    };
    let mut dns = python(&lan.client, "dns_down.py", &[victim_c, "8", "0.5"]);

    let mut polled = Some(web(&lan.victim, 8082));
    std::thread::sleep(Duration::from_millis(800));

    // The scan from a host osprey never saw: 1,024 ports, all closed.
    let scan_start = Instant::now();
    let mut nmap = Command::new("ip")
        .args(["netns", "exec", &lan.attacker])
        .args(["nmap", "-sS", "-Pn", "-n", "-T4", "--max-retries", "0"])
        .args(["-p", "1-1024", victim_x])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nmap");
    let blocked = wait_for(Duration::from_secs(5), || {
        nft_set_elements(&lan.victim, "block_v4").contains(&lan.attacker_ip)
    })
    .map(|_| scan_start.elapsed());
    let _ = nmap.wait();

    // The restarts of (b) and the late start of (a).
    let mut late = None;
    for (at, what) in [
        (2.0, "stop"),
        (3.0, "start-late"),
        (3.5, "start"),
        (5.5, "stop"),
        (7.0, "start"),
    ] {
        let wait = Duration::from_secs_f64(at).saturating_sub(t0.elapsed());
        std::thread::sleep(wait);
        match what {
            "stop" => polled = None,
            "start" => polled = Some(web(&lan.victim, 8082)),
            _ => late = Some(web(&lan.victim, 8081)),
        }
    }

    // The forger: the client's address on SYNs and blind ACKs to 300
    // ports of the victim (and its open service), from the attacker's
    // side, so the victim's SYN-ACKs and resets go to the client.
    let mut forger = python(
        &lan.attacker,
        "forge.py",
        &[&lan.client_ip, victim_c, "1-300,8080,8082"],
    );
    let forged = forger.wait().expect("forge.py");
    assert!(forged.success(), "forge.py failed (raw socket?)");

    std::thread::sleep(Duration::from_secs(2));
    poll_stop.store(true, Ordering::Relaxed);
    let (retry_failed, retry_ok) = retry.join().expect("retry thread");
    let (poll_ok, poll_failed, poll_last) = poll.join().expect("poll thread");
    let fell_back = fallback.join().expect("fallback thread");
    let _ = dns.wait();
    // Records of reset connections come at once; give the last ones their
    // batch and rule time.
    std::thread::sleep(Duration::from_secs(2));

    let latency = blocked.unwrap_or_else(|| {
        panic!(
            "the scanner was not blocked within 5 s:\n{}",
            osprey.stderr_text()
        )
    });
    eprintln!(
        "scan start to block: {:.0} ms; client: retried {retry_failed}x before the service came up, \
         polled {poll_ok} ok / {poll_failed} refused, fallback {fell_back:?}",
        latency.as_secs_f64() * 1e3
    );
    assert!(
        latency < Duration::from_secs(2),
        "blocked after {latency:?}"
    );
    assert!(
        retry_ok && retry_failed >= 5,
        "(a): {retry_failed} {retry_ok}"
    );
    assert!(
        poll_ok >= 5 && poll_failed >= 2 && poll_last,
        "(b): {poll_ok} {poll_failed} {poll_last}"
    );
    assert_eq!(fell_back, [false, false, true], "(c)");

    // The client was never blocked or limited, and is served at the end.
    let client_seen = watch.seen(&lan.client_ip);
    assert!(
        client_seen.is_empty(),
        "the client entered osprey's sets: {client_seen:?}\n{}",
        action_lines(&osprey, &lan.client_ip).join("\n")
    );
    assert!(
        curl_ok(&lan.client, &url(8080), "2"),
        "the client is not served"
    );
    // The forged scan was seen, and only alerted on, saying why.
    let lines = action_lines(&osprey, &lan.client_ip);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("rule=port-scan") && l.contains("known-good")),
        "no known-good alert about the forged scan:\n{}",
        lines.join("\n")
    );
    assert!(
        watch
            .seen(&lan.attacker_ip)
            .iter()
            .all(|(set, _)| set == "block_v4"),
        "{:?}",
        watch.seen(&lan.attacker_ip)
    );
    let m = osprey.metrics();
    assert!(m.sum("osprey_respond_softened_total", &["guard=\"known_good\""]) >= 1.0);
    assert!(m.sum("osprey_evidence_tracked", &["table=\"sources\""]) >= 2.0);
    drop((late, polled, watch));
    osprey.stop(Duration::from_secs(10));
}

/// Runs `attack` from the attacker (after one ordinary request, so the
/// attacker is a known-good peer whose own verified connections are the
/// evidence) and expects a block by `rule` within `limit`.
fn real_host_is_blocked(
    name: &str,
    rule: &str,
    limit: Duration,
    attack: impl FnOnce(&Lan) -> Child,
) {
    if !enabled_with(name, &TOOLS) {
        return;
    }
    let lan = Lan::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let _web = web(&lan.victim, 8080);
    let mut osprey = start_osprey(&lan, dir.path(), name);
    let url = format!("http://{}:8080/", lan.victim_ip);
    assert!(wait_for(Duration::from_secs(5), || curl_ok(&lan.attacker, &url, "2")).is_some());
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let mut child = attack(&lan);
    let blocked = wait_for(limit, || {
        nft_set_elements(&lan.victim, "block_v4").contains(&lan.attacker_ip)
    });
    let _ = child.kill();
    let _ = child.wait();
    let lines = action_lines(&osprey, &lan.attacker_ip);
    assert!(
        blocked.is_some(),
        "{rule}: the attacker was not blocked within {limit:?}; actions:\n{}\n{}",
        lines.join("\n"),
        osprey.stderr_text()
    );
    eprintln!(
        "{rule}: blocked {:.1} s after the attack began",
        t0.elapsed().as_secs_f64()
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("kind=\"block\"") && l.contains(&format!("rule={rule}"))),
        "no block by {rule}:\n{}",
        lines.join("\n")
    );
    osprey.stop(Duration::from_secs(10));
}

#[test]
fn http_brute_force_from_a_real_host_is_blocked() {
    real_host_is_blocked(
        "http_brute_force_from_a_real_host_is_blocked",
        "auth-bruteforce",
        Duration::from_secs(30),
        |lan| {
            // A new connection per guess, 20 ms apart, bounded.
            let target = format!("http://{}:8080/admin/login", lan.victim_ip);
            let cmd = format!(
                "for i in $(seq 1 600); do curl -s -o /dev/null -m 2 -X POST \
                 -d \"username=admin&password=guess$i\" {target}; sleep 0.02; done"
            );
            Command::new("ip")
                .args(["netns", "exec", &lan.attacker, "bash", "-c", &cmd])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("curl loop")
        },
    );
}

#[test]
fn slowloris_from_a_real_host_is_blocked() {
    real_host_is_blocked(
        "slowloris_from_a_real_host_is_blocked",
        "slowloris",
        Duration::from_secs(40),
        |lan| {
            python(
                &lan.attacker,
                "slowloris.py",
                &[&lan.victim_ip, "8080", "80", "3", "40"],
            )
        },
    );
}
