//! End to end: osprey enforcing on a victim namespace while an attacker
//! namespace scans it and a client namespace keeps using its web server.
//!
//! Needs root, nft, nmap and curl; skips with a reason otherwise unless
//! `OSPREY_E2E=1`. All traffic stays between the namespaces the test
//! creates (198.18.0.0/15); every count and wait is bounded.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::netns::{
    curl_ok, enabled, enabled_with, nft_set_elements, port_for, syn_scan, wait_for, web_server,
    Lan, LoopNs, Osprey, Server,
};

const TTL_SECS: u64 = 6;

/// What the response tests run besides osprey.
const TOOLS: [&str; 4] = ["nft", "nmap", "curl", "python3"];

/// The platform's side of docs/platform-api.yaml, as little of it as the
/// test needs: every POST (path, Authorization header, JSON body) is
/// appended to a file as one JSON line, and answered 200.
const PLATFORM_STANDIN: &str = r#"
import http.server, json, sys
out = open(sys.argv[2], "a", buffering=1)
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        out.write(json.dumps({"path": self.path,
                              "auth": self.headers.get("Authorization"),
                              "body": json.loads(body)}) + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

const PLATFORM_TOKEN: &str = "osprey-test-token";

/// Starts the stand-in platform on the namespace's loopback.
fn platform_standin(ns: &str, port: u16, dir: &Path) -> (Server, std::path::PathBuf) {
    let script = dir.join("platform.py");
    std::fs::write(&script, PLATFORM_STANDIN).expect("platform.py");
    let received = dir.join("platform-received.jsonl");
    let child = Command::new("ip")
        .args(["netns", "exec", ns, "python3"])
        .arg(&script)
        .arg(port.to_string())
        .arg(&received)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 platform stand-in");
    (Server(child), received)
}

/// What the stand-in platform received, one object per request.
fn platform_requests(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Rules as shipped, with short TTLs so the test sees expiry; reports go
/// to a platform stand-in on `platform_port` of the namespace's loopback.
fn write_config(dir: &Path, platform_port: u16) -> std::path::PathBuf {
    let rules = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rules/default.yaml"))
        .expect("rules/default.yaml")
        .replace("ttl_secs: 600", &format!("ttl_secs: {TTL_SECS}"))
        .replace("ttl_secs: 300", &format!("ttl_secs: {TTL_SECS}"));
    let rules_path = dir.join("rules.yaml");
    std::fs::write(&rules_path, rules).expect("rules");
    let token = dir.join("platform-token");
    std::fs::write(&token, format!("{PLATFORM_TOKEN}\n")).expect("token");
    let cfg = dir.join("osprey.toml");
    std::fs::write(
        &cfg,
        format!(
            "[respond]\nenforce = true\nrules_file = {:?}\n\n[respond.nft]\nreconcile_interval_secs = 1\n\n\
             [platform]\nurl = \"http://127.0.0.1:{platform_port}\"\ntoken_file = {:?}\nspool_dir = {:?}\n\
             batch_max_wait_ms = 100\nheartbeat_interval_secs = 1\n",
            rules_path,
            token,
            dir.join("spool"),
        ),
    )
    .expect("config");
    cfg
}

#[test]
fn a_scan_is_blocked_from_the_interim_path_and_clients_keep_working() {
    if !enabled_with(
        "a_scan_is_blocked_from_the_interim_path_and_clients_keep_working",
        &TOOLS,
    ) {
        return;
    }
    let lan = Lan::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let platform_port = port_for("respond-platform");
    let cfg = write_config(dir.path(), platform_port);
    let (_platform, received) = platform_standin(&lan.victim, platform_port, dir.path());
    let _web = web_server(&lan.victim);
    let port = port_for("respond-scan");
    let mut osprey = Osprey::start(
        &lan.victim,
        port,
        dir.path(),
        &[
            "-i",
            &lan.victim_if,
            "--config",
            cfg.to_str().expect("utf-8 path"),
        ],
    );
    osprey.wait_ready(Duration::from_secs(20));
    let web = format!("http://{}:8080/", "198.18.2.1");
    assert!(
        wait_for(Duration::from_secs(5), || curl_ok(&lan.client, &web, "1")).is_some(),
        "the web server never answered the client"
    );

    // The client keeps using the server through the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let client = {
        let (ns, url, stop, ok, failed) = (
            lan.client.clone(),
            web.clone(),
            stop.clone(),
            ok.clone(),
            failed.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if curl_ok(&ns, &url, "2") {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let mut nmap = Command::new("ip")
        .args(["netns", "exec", &lan.attacker])
        .args(syn_scan(&lan.victim_ip))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nmap");
    let blocked_after = wait_for(Duration::from_secs(5), || {
        nft_set_elements(&lan.victim, "block_v4").contains(&lan.attacker_ip)
    });
    let _ = nmap.wait();
    let latency = blocked_after.unwrap_or_else(|| {
        panic!(
            "the scanner was not blocked within 5 s; osprey said:\n{}",
            osprey.stderr_text()
        )
    });
    eprintln!(
        "attack-to-block latency: {:.0} ms (scan start to element in block_v4)",
        latency.as_secs_f64() * 1e3
    );
    assert!(
        latency < Duration::from_secs(2),
        "blocked after {latency:?}"
    );
    // It came from an interim record: final records of reset connections
    // only come tcp_reset_delay (5 s) later.
    let err = osprey.stderr_text();
    assert!(
        err.lines().any(|l| l.contains("osprey::action")
            && l.contains("kind=\"block\"")
            && l.contains("interim=true")),
        "no interim block action in the log:\n{err}"
    );

    // The platform heard of the block (and of the alerts behind it), with
    // the token from the file.
    let attacker_net = format!("{}/32", lan.attacker_ip);
    let reported = wait_for(Duration::from_secs(5), || {
        platform_requests(&received).iter().any(|r| {
            r["body"]["events"].as_array().is_some_and(|evs| {
                evs.iter().any(|e| {
                    e["kind"] == "action"
                        && e["body"]["kind"] == "block"
                        && e["body"]["target"] == attacker_net.as_str()
                })
            })
        })
    });
    let requests = platform_requests(&received);
    assert!(
        reported.is_some(),
        "the platform was not told of the block; it received {} request(s)",
        requests.len()
    );
    let bearer = format!("Bearer {PLATFORM_TOKEN}");
    assert!(requests.iter().all(|r| r["auth"] == bearer.as_str()));
    // The alerts behind it come after the models' look-ahead (the bundled
    // ones hold each record 5 s before scoring it); the block did not wait.
    let alerted = wait_for(Duration::from_secs(15), || {
        platform_requests(&received).iter().any(|r| {
            r["path"] == "/api/v1/anomaly-detection/events"
                && r["body"]["events"]
                    .as_array()
                    .is_some_and(|evs| evs.iter().any(|e| e["kind"] == "alert"))
        })
    });
    assert!(alerted.is_some(), "the platform heard of no alert");
    let requests = platform_requests(&received);
    assert!(requests.iter().all(|r| r["auth"] == bearer.as_str()));
    // Heartbeats come every second (the first may have raced the
    // stand-in's start).
    let heartbeat = wait_for(Duration::from_secs(5), || {
        platform_requests(&received)
            .iter()
            .any(|r| r["path"] == "/api/v1/anomaly-detection/heartbeat")
    });
    assert!(
        heartbeat.is_some(),
        "no heartbeat among the requests to {:?}",
        requests.iter().map(|r| &r["path"]).collect::<Vec<_>>()
    );

    // A follow-up connection from the attacker fails; the client's work on.
    assert!(
        !curl_ok(
            &lan.attacker,
            &format!("http://{}:8080/", lan.victim_ip),
            "2"
        ),
        "the blocked attacker still reached the server"
    );

    // Someone flushes the whole ruleset: the reconcile loop restores it.
    let flush = Lan::try_exec(&lan.victim, &["nft", "flush", "ruleset"]);
    assert!(flush.status.success());
    let repaired = wait_for(Duration::from_secs(4), || {
        nft_set_elements(&lan.victim, "block_v4").contains(&lan.attacker_ip)
    });
    assert!(repaired.is_some(), "nft flush ruleset was not repaired");
    assert!(!curl_ok(
        &lan.attacker,
        &format!("http://{}:8080/", lan.victim_ip),
        "2"
    ));

    // After the TTL the element is gone and the attacker gets through.
    let gone = wait_for(Duration::from_secs(TTL_SECS + 5), || {
        !nft_set_elements(&lan.victim, "block_v4").contains(&lan.attacker_ip)
    });
    assert!(gone.is_some(), "the block outlived its TTL");
    assert!(curl_ok(
        &lan.attacker,
        &format!("http://{}:8080/", lan.victim_ip),
        "2"
    ));

    stop.store(true, Ordering::Relaxed);
    let _ = client.join();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("client requests during the test: {ok} ok, {failed} failed");
    assert!(ok >= 10 && failed == 0, "client: {ok} ok, {failed} failed");
    let m = osprey.metrics();
    assert!(
        m.sum(
            "osprey_respond_actions_total",
            &["kind=\"block\"", "result=\"enforced\""]
        ) >= 1.0
    );
    assert!(m.sum("osprey_nft_reconcile_repairs_total", &[]) >= 1.0);
    osprey.stop(Duration::from_secs(10));
}

/// A SYN flood (a lab capture replayed from the attacker's side) earns a
/// rate limit, not a block.
#[test]
fn a_syn_flood_gets_a_rate_limit_not_a_block() {
    if !enabled_with("a_syn_flood_gets_a_rate_limit_not_a_block", &TOOLS) {
        return;
    }
    let Some(pcap) = common::lab_pcap("flood_syn.pcap") else {
        return;
    };
    let lan = Lan::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), port_for("respond-flood-platform"));
    let port = port_for("respond-flood");
    let mut osprey = Osprey::start(
        &lan.victim,
        port,
        dir.path(),
        &[
            "-i",
            &lan.victim_if,
            "--config",
            cfg.to_str().expect("utf-8 path"),
        ],
    );
    osprey.wait_ready(Duration::from_secs(20));
    let out = Lan::try_exec(
        &lan.attacker,
        &[
            "tcpreplay",
            "-q",
            "-i",
            &attacker_if(&lan),
            pcap.to_str().expect("utf-8 path"),
        ],
    );
    assert!(
        out.status.success(),
        "tcpreplay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let limited = wait_for(Duration::from_secs(8), || {
        !nft_set_elements(&lan.victim, "ratelimit_v4").is_empty()
    });
    assert!(
        limited.is_some(),
        "no rate limit; osprey said:\n{}",
        osprey.stderr_text()
    );
    assert!(
        nft_set_elements(&lan.victim, "block_v4").is_empty(),
        "a flood source was blocked: {:?}",
        nft_set_elements(&lan.victim, "block_v4")
    );
    // The element is in the set once nft has applied it; the counter
    // follows when the nft call returns, so it is waited for, not raced.
    wait_for(Duration::from_secs(5), || {
        osprey.metrics().sum(
            "osprey_respond_actions_total",
            &["kind=\"rate_limit\"", "result=\"enforced\""],
        ) >= 1.0
    });
    let m = osprey.metrics();
    assert!(
        m.sum(
            "osprey_respond_actions_total",
            &["kind=\"rate_limit\"", "result=\"enforced\""]
        ) >= 1.0
    );
    assert_eq!(
        m.sum(
            "osprey_respond_actions_total",
            &["kind=\"block\"", "result=\"enforced\""]
        ),
        0.0
    );
    osprey.stop(Duration::from_secs(10));
}

/// The attacker's end of the victim's capture interface.
fn attacker_if(lan: &Lan) -> String {
    lan.victim_if.replacen("ospv", "ospx", 1)
}

/// Enforcement that cannot start (here: no nft executable) leaves a
/// sensor that still captures and detects, says so on /readyz and in a
/// metric, and does not exit.
#[test]
fn a_missing_nft_degrades_enforcement_but_detection_runs() {
    if !enabled("a_missing_nft_degrades_enforcement_but_detection_runs") {
        return;
    }
    let ns = LoopNs::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("osprey.toml");
    std::fs::write(
        &cfg,
        "[respond]\nenforce = true\n\n[respond.nft]\nnft_path = \"/nonexistent/nft\"\n",
    )
    .expect("config");
    let mut osprey = Osprey::start(
        &ns.ns,
        port_for("respond-degraded"),
        dir.path(),
        &["-i", "lo", "--config", cfg.to_str().expect("utf-8 path")],
    );
    osprey.wait_ready(Duration::from_secs(20));
    let (status, body) = osprey.get("/readyz").expect("/readyz answers");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("enforcement degraded: nftables") && body.contains("/nonexistent/nft"),
        "/readyz: {body}"
    );
    let err = osprey.stderr_text();
    assert!(
        err.contains("nftables enforcement unavailable"),
        "no clear line about nft:\n{err}"
    );
    // Detection goes on: packets on the loopback are captured and counted.
    ns.exec(&[
        "bash",
        "-c",
        "for i in 1 2 3 4 5; do (exec 3<>/dev/tcp/127.0.0.1/9) 2>/dev/null; done; true",
    ]);
    let counted = wait_for(Duration::from_secs(5), || {
        osprey.metrics().sum("osprey_capture_packets_total", &[]) >= 10.0
    });
    assert!(
        counted.is_some(),
        "no packets counted:\n{}",
        osprey.stderr_text()
    );
    let m = osprey.metrics();
    assert_eq!(
        m.sum("osprey_respond_enforcement_degraded", &["enforcer=\"nft\""]),
        1.0
    );
    osprey.stop(Duration::from_secs(10));
}

/// `osprey decisions` against the running daemon: the scanner's block is
/// listed, `delete` lifts it at once, it stays lifted through several
/// reconcile periods (and a second scan on the same evidence window only
/// alerts), the platform hears of the lift, and the listing is empty.
#[test]
fn a_deleted_decision_stays_deleted() {
    if !enabled_with("a_deleted_decision_stays_deleted", &TOOLS) {
        return;
    }
    let lan = Lan::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let platform_port = port_for("respond-lift-platform");
    let cfg = write_config(dir.path(), platform_port);
    // Long enough that expiry cannot pass for a lift.
    let rules = std::fs::read_to_string(dir.path().join("rules.yaml"))
        .expect("rules")
        .replace(&format!("ttl_secs: {TTL_SECS}"), "ttl_secs: 600");
    std::fs::write(dir.path().join("rules.yaml"), rules).expect("rules");
    let socket = dir.path().join("control.sock");
    let text = std::fs::read_to_string(&cfg).expect("config").replace(
        "enforce = true\n",
        &format!("enforce = true\ncontrol_socket = {socket:?}\n"),
    );
    std::fs::write(&cfg, text).expect("config");
    let (_platform, received) = platform_standin(&lan.victim, platform_port, dir.path());
    let _web = web_server(&lan.victim);
    let mut osprey = Osprey::start(
        &lan.victim,
        port_for("respond-lift"),
        dir.path(),
        &[
            "-i",
            &lan.victim_if,
            "--config",
            cfg.to_str().expect("utf-8 path"),
        ],
    );
    osprey.wait_ready(Duration::from_secs(20));
    let decisions = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_osprey"))
            .arg("decisions")
            .args(args)
            .arg("--socket")
            .arg(&socket)
            .output()
            .expect("osprey decisions");
        assert!(
            out.status.success(),
            "osprey decisions {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(decisions(&["list"]).contains("no decisions"));

    let scan = || {
        let _ = Command::new("ip")
            .args(["netns", "exec", &lan.attacker])
            .args(syn_scan(&lan.victim_ip))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    };
    scan();
    let blocked = wait_for(Duration::from_secs(5), || {
        nft_set_elements(&lan.victim, "block_v4").contains(&lan.attacker_ip)
    });
    assert!(
        blocked.is_some(),
        "the scanner was not blocked; osprey said:\n{}",
        osprey.stderr_text()
    );
    let attacker_net = format!("{}/32", lan.attacker_ip);
    let listed: serde_json::Value =
        serde_json::from_str(&decisions(&["list", "--json"])).expect("json");
    let entry = listed["decisions"]
        .as_array()
        .and_then(|ds| {
            ds.iter()
                .find(|d| d["target"] == attacker_net.as_str() && d["kind"] == "block")
        })
        .cloned()
        .unwrap_or_else(|| panic!("the block is not listed: {listed}"));
    assert_eq!(entry["state"], "enforced", "{entry}");
    assert!(
        entry["expires_in_secs"].as_u64().unwrap_or(0) > 500,
        "{entry}"
    );

    let log_before_lift = osprey.stderr_text().len();
    let out = decisions(&["delete", &lan.attacker_ip, "--reason", "test lift"]);
    assert!(out.contains("decision(s) deleted"), "{out}");
    assert!(
        !nft_set_elements(&lan.victim, "block_v4").contains(&lan.attacker_ip),
        "still in block_v4 after delete"
    );
    // Three reconcile periods (1 s each), and the same scanner scanning
    // again on the evidence window that holds the lifted scan: it stays
    // out of the set.
    scan();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !nft_set_elements(&lan.victim, "block_v4").contains(&lan.attacker_ip),
        "the lifted block came back; osprey said:\n{}",
        osprey.stderr_text()
    );
    assert!(curl_ok(
        &lan.attacker,
        &format!("http://{}:8080/", lan.victim_ip),
        "2"
    ));
    let listed: serde_json::Value =
        serde_json::from_str(&decisions(&["list", "--json"])).expect("json");
    assert!(
        !listed.to_string().contains(&attacker_net),
        "still listed after delete: {listed}"
    );
    let m = osprey.metrics();
    assert!(m.sum("osprey_respond_lifted_total", &["kind=\"block\""]) >= 1.0);
    // Whatever the second scan made the rules propose about the attacker
    // was no enforcement: at most an alert saying the lift holds.
    let log = osprey.stderr_text();
    let after: Vec<&str> = log[log_before_lift.min(log.len())..]
        .lines()
        .filter(|l| l.contains("osprey::action") && l.contains(&lan.attacker_ip))
        .collect();
    for l in &after {
        assert!(
            !l.contains("mode=\"enforce\"") && !l.contains("mode=enforce"),
            "enforced again after the lift: {l}"
        );
    }
    eprintln!(
        "after the lift: {} action line(s) about the attacker, softened by the lift: {}",
        after.len(),
        m.sum("osprey_respond_softened_total", &["guard=\"lifted\""])
    );
    let told = wait_for(Duration::from_secs(5), || {
        platform_requests(&received).iter().any(|r| {
            r["body"]["events"].as_array().is_some_and(|evs| {
                evs.iter().any(|e| {
                    e["kind"] == "lift"
                        && e["body"]["target"] == attacker_net.as_str()
                        && e["body"]["reason"] == "test lift"
                        && e["body"]["lifted"][0]["kind"] == "block"
                })
            })
        })
    });
    assert!(told.is_some(), "the platform was not told of the lift");
    // A bad target is refused by the CLI with a clear error.
    let bad = Command::new(env!("CARGO_BIN_EXE_osprey"))
        .args(["decisions", "delete", "not-an-address", "--socket"])
        .arg(&socket)
        .output()
        .expect("osprey decisions");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not an address or CIDR"));
    osprey.stop(Duration::from_secs(10));
}
