//! The live daemon end to end, in network namespaces the tests create.
//!
//! osprey captures on one end of a veth pair; tcpreplay sends lab
//! captures (`../shared/lab-pcaps`) or generated ones from the other end.
//! These tests need root; without it they skip with the reason, unless
//! `OSPREY_E2E=1` (set by `.ci/run`) makes that a failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod common;
use common::lab_dir;
use common::netns::{self, wait_for, LoopNs, Osprey, VethPair};

/// Captures to replay at their own pace: `OSPREY_E2E_PCAPS` (comma
/// separated names in lab-pcaps) or two short ones of different kinds.
fn paced_captures(lab: &Path) -> Vec<PathBuf> {
    let names = std::env::var("OSPREY_E2E_PCAPS")
        .unwrap_or_else(|_| "benign_http.pcap,scan_connect.pcap".into());
    names
        .split(',')
        .map(|n| lab.join(n.trim()))
        .filter(|p| p.is_file())
        .collect()
}

/// conn.log rows without ts, uid and duration (which depend on when and
/// how the packets were captured, not on the traffic), as a multiset.
fn comparable_rows(log: &str) -> BTreeMap<Vec<String>, usize> {
    let fields: Vec<&str> = log
        .lines()
        .find_map(|l| l.strip_prefix("#fields\t"))
        .map(|f| f.split('\t').collect())
        .unwrap_or_default();
    let keep: Vec<usize> = fields
        .iter()
        .enumerate()
        .filter(|(_, f)| !matches!(**f, "ts" | "uid" | "duration"))
        .map(|(i, _)| i)
        .collect();
    let mut rows = BTreeMap::new();
    for line in log.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        let row: Vec<String> = keep
            .iter()
            .map(|&i| cols.get(i).copied().unwrap_or("").to_string())
            .collect();
        *rows.entry(row).or_insert(0) += 1;
    }
    rows
}

fn diff(a: &BTreeMap<Vec<String>, usize>, b: &BTreeMap<Vec<String>, usize>) -> String {
    let mut out = String::new();
    for (row, n) in a {
        let m = b.get(row).copied().unwrap_or(0);
        if m < *n {
            out += &format!("  live only ({}x): {}\n", n - m, row.join(" "));
        }
    }
    for (row, n) in b {
        let m = a.get(row).copied().unwrap_or(0);
        if m < *n {
            out += &format!("  replay only ({}x): {}\n", n - m, row.join(" "));
        }
    }
    out
}

fn replay_conn_log(pcap: &Path, dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_osprey"))
        .args(["replay", "-C", "--no-models", "--quiet", "--log-dir"])
        .arg(dir)
        .arg(pcap)
        .output()
        .expect("osprey replay");
    assert!(
        out.status.success(),
        "osprey replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    netns::read(&dir.join("conn.log"))
}

/// A capture sent through a veth pair to a live osprey at its own pace,
/// and what came of it next to `osprey replay` of the same file.
struct LiveVsReplay {
    sent: u64,
    /// A scrape after the packets were sent, before SIGTERM.
    metrics: netns::Metrics,
    /// From SIGTERM to exit.
    took: Duration,
    live: BTreeMap<Vec<String>, usize>,
    want: BTreeMap<Vec<String>, usize>,
}

fn live_vs_replay(pcap: &Path, port_name: &str, settle: Duration) -> LiveVsReplay {
    let tmp = tempfile::tempdir().unwrap();
    let live_dir = tmp.path().join("live");
    let replay_dir = tmp.path().join("replay");
    std::fs::create_dir_all(&live_dir).unwrap();
    std::fs::create_dir_all(&replay_dir).unwrap();
    let cfg = config(tmp.path(), "");
    let pair = VethPair::new();
    let mut osprey = Osprey::start(
        &pair.ns_a,
        netns::port_for(port_name),
        &live_dir,
        &["--config", cfg.to_str().unwrap(), "-i", &pair.if_a],
    );
    osprey.wait_ready(Duration::from_secs(30));
    let sent = pair.replay(pcap, &[]);
    std::thread::sleep(settle);
    let metrics = osprey.metrics();
    let took = osprey.stop(Duration::from_secs(5));
    LiveVsReplay {
        sent,
        metrics,
        took,
        live: comparable_rows(&netns::read(&live_dir.join("conn.log"))),
        want: comparable_rows(&replay_conn_log(pcap, &replay_dir)),
    }
}

fn config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("osprey.toml");
    netns::write(
        &path,
        &format!("[pipeline]\nconn_workers = 2\n\n[output]\nrotate_interval_secs = 0\n{extra}\n"),
    );
    path
}

/// Acceptance: live capture of a lab capture at its own pace writes the
/// conn.log `osprey replay` writes for it (but ts, uid and duration), and
/// /metrics counted every packet.
#[test]
fn live_conn_log_equals_replay() {
    if !netns::enabled("live_conn_log_equals_replay") {
        return;
    }
    let Some(lab) = lab_dir() else {
        common::missing("../shared/lab-pcaps (live_conn_log_equals_replay)");
        return;
    };
    let captures = paced_captures(&lab);
    assert!(
        !captures.is_empty(),
        "no capture to replay in {}",
        lab.display()
    );
    for pcap in captures {
        // Capture threads publish their counters every 250 ms.
        let LiveVsReplay {
            sent,
            metrics: m,
            took,
            live,
            want,
        } = live_vs_replay(&pcap, "paced", Duration::from_millis(800));
        let counted = m.sum("osprey_capture_packets_total", &[]);
        let kernel = m.sum("osprey_capture_kernel_drops_total", &[]);
        let channel = m.sum("osprey_pipeline_dropped_packets_total", &[]);
        let name = pcap.file_name().unwrap().to_string_lossy();
        eprintln!(
            "{name}: sent {sent}, captured {counted}, kernel drops {kernel}, channel drops {channel}; {} conn records live, \
             {} in replay; stopped in {took:?}",
            live.values().sum::<usize>(),
            want.values().sum::<usize>()
        );
        assert_eq!(
            counted as u64, sent,
            "{name}: /metrics did not count every packet"
        );
        assert_eq!(
            kernel + channel,
            0.0,
            "{name}: packets were dropped at the capture's own pace"
        );
        assert!(
            live == want,
            "{name}: live conn.log differs from the replay's:\n{}",
            diff(&live, &want)
        );
    }
}

/// Acceptance: at tcpreplay's top speed, every packet sent is either
/// analysed or counted as dropped (kernel ring, interface, or a full
/// channel), exactly.
#[test]
fn top_speed_packets_add_up() {
    if !netns::enabled("top_speed_packets_add_up") {
        return;
    }
    let Some(lab) = lab_dir() else {
        common::missing("../shared/lab-pcaps (top_speed_packets_add_up)");
        return;
    };
    let pcap =
        lab.join(std::env::var("OSPREY_E2E_FAST_PCAP").unwrap_or_else(|_| "flood_syn.pcap".into()));
    assert!(pcap.is_file(), "{} is missing", pcap.display());
    let tmp = tempfile::tempdir().unwrap();
    // A small ring, so that drops are likely and their accounting is
    // exercised, not just the happy path.
    let cfg = config(tmp.path(), "[capture]\nbuffer_size_bytes = 1048576\n");
    let pair = VethPair::new();
    let mut osprey = Osprey::start(
        &pair.ns_a,
        netns::port_for("topspeed"),
        tmp.path(),
        &["--config", cfg.to_str().unwrap(), "-i", &pair.if_a],
    );
    osprey.wait_ready(Duration::from_secs(30));
    let veth_drops_before = pair.if_stat(&pair.ns_b, &pair.if_b, "tx_dropped")
        + pair.if_stat(&pair.ns_a, &pair.if_a, "rx_dropped");
    let sent = pair.replay(&pcap, &["--topspeed", "--loop", "3"]);
    std::thread::sleep(Duration::from_millis(1500));
    let m = osprey.metrics();
    osprey.stop(Duration::from_secs(5));
    let veth_drops = pair.if_stat(&pair.ns_b, &pair.if_b, "tx_dropped")
        + pair.if_stat(&pair.ns_a, &pair.if_a, "rx_dropped")
        - veth_drops_before;
    let captured = m.sum("osprey_capture_packets_total", &[]) as u64;
    let kernel = m.sum("osprey_capture_kernel_drops_total", &[]) as u64;
    let iface = m.sum("osprey_capture_interface_drops_total", &[]) as u64;
    let channel = m.sum("osprey_pipeline_dropped_packets_total", &[]) as u64;
    let analysed = m.sum("osprey_conn_packets_total", &[]) as u64;
    eprintln!(
        "top speed: sent {sent}; captured {captured} (analysed {analysed}, channel drops \
         {channel}); kernel drops {kernel}, interface drops {iface}; veth drops {veth_drops}"
    );
    assert_eq!(veth_drops, 0, "the veth itself dropped packets");
    assert_eq!(
        sent,
        captured + kernel + iface,
        "capture counters do not add up"
    );
    assert_eq!(
        captured,
        analysed + channel,
        "pipeline counters do not add up"
    );
}

/// Acceptance: /metrics passes `promtool check metrics`, and /readyz
/// answers 200 only once capture and the models are up.
#[test]
fn metrics_lint_and_readiness() {
    if !netns::enabled("metrics_lint_and_readiness") {
        return;
    }
    let forced = std::env::var("OSPREY_E2E").is_ok_and(|v| v == "1");
    let ns = LoopNs::new();
    let tmp = tempfile::tempdir().unwrap();
    let mut osprey = Osprey::start(&ns.ns, netns::port_for("lint"), tmp.path(), &["-i", "lo"]);
    let seen = osprey.wait_ready(Duration::from_secs(30));
    // Before ready, the endpoint was either not listening yet or said 503.
    assert!(
        seen[..seen.len() - 1]
            .iter()
            .all(|s| matches!(s, None | Some(503))),
        "/readyz answered {seen:?}"
    );
    // Some loopback traffic so that labelled series exist.
    let _ = ns.exec(&[
        "bash",
        "-c",
        "for i in 1 2 3; do (exec 3<>/dev/tcp/127.0.0.1/9) 2>/dev/null; done; true",
    ]);
    std::thread::sleep(Duration::from_millis(600));
    let m = osprey.metrics();
    assert_eq!(m.sum("osprey_ready", &[]), 1.0);
    assert!(m.sum("osprey_models_loaded", &[]) >= 1.0);
    assert!(m.sum("osprey_capture_packets_total", &["interface=\"lo\""]) > 0.0);
    let (h, _) = osprey.get("/healthz").unwrap();
    assert_eq!(h, 200);
    scorer_gives_way(&osprey);
    if netns::have("promtool") {
        let (ok, text) = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .output_with_stdin(&m.0);
        assert!(ok, "promtool check metrics failed:\n{text}");
    } else if forced {
        panic!("promtool (Debian's prometheus package) is needed with OSPREY_E2E=1");
    } else {
        eprintln!("metrics_lint_and_readiness: promtool absent, lint skipped");
    }
    osprey.stop(Duration::from_secs(5));
}

/// (thread name, niceness) of every thread of `pid`, from /proc.
fn thread_niceness(pid: u32) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        // "tid (comm) state ppid ...": the name may hold spaces, so fields
        // are counted after the last ')'; niceness is field 19.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let nice = stat[close + 1..]
            .split_whitespace()
            .nth(16)
            .and_then(|v| v.parse().ok());
        if let Some(nice) = nice {
            out.push((stat[open + 1..close].to_string(), nice));
        }
    }
    out
}

/// The scoring thread (the main one) runs at `pipeline.score_nice` (10 by
/// default) and capture and the conn workers at the process's own, so
/// that on a shared core the stage that may shed is the one that waits.
fn scorer_gives_way(osprey: &Osprey) {
    let pid = osprey.child.as_ref().expect("running").id();
    // Relative to the process's own niceness (CI may run the tests niced).
    let base = thread_niceness(pid)
        .iter()
        .find(|(name, _)| name.starts_with("osprey-cap"))
        .map_or(0, |&(_, n)| n);
    let want = (base + 10).min(19);
    let scorer = |threads: &[(String, i64)]| {
        threads
            .iter()
            .find(|(name, _)| name == "osprey")
            .map(|&(_, n)| n)
    };
    // The scorer lowers its priority just after /readyz turns ready.
    wait_for(Duration::from_secs(5), || {
        scorer(&thread_niceness(pid)) == Some(want)
    });
    let threads = thread_niceness(pid);
    let nice_of = |prefix: &str| -> Vec<i64> {
        threads
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|&(_, n)| n)
            .collect()
    };
    assert_eq!(nice_of("osprey-cap"), vec![base], "capture: {threads:?}");
    let conn = nice_of("osprey-conn");
    assert!(
        !conn.is_empty() && conn.iter().all(|&n| n == base),
        "conn workers: {threads:?}"
    );
    assert_eq!(scorer(&threads), Some(want), "the scorer: {threads:?}");
}

trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &str) -> (bool, String);
}

impl OutputWithStdin for Command {
    fn output_with_stdin(&mut self, input: &str) -> (bool, String) {
        use std::io::Write;
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input.as_bytes());
        }
        let out = child.wait_with_output().expect("wait");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

/// A classic pcap file (Ethernet) of `frames` at 1 µs spacing from `t0`.
fn write_pcap(path: &Path, t0: u32, frames: &[Vec<u8>]) {
    let mut out = Vec::with_capacity(24 + frames.iter().map(|f| f.len() + 16).sum::<usize>());
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        let usec = i as u32;
        out.extend_from_slice(&(t0 + usec / 1_000_000).to_le_bytes());
        out.extend_from_slice(&(usec % 1_000_000).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).expect("writing a pcap");
}

/// `from`/`to`: (address, port).
fn tcp_frame(
    from: ([u8; 4], u16),
    to: ([u8; 4], u16),
    flags: &str,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let ((src, sp), (dst, dp)) = (from, to);
    let mut b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .tcp(sp, dp, seq, 64240);
    for c in flags.chars() {
        b = match c {
            'S' => b.syn(),
            'A' => b.ack(ack),
            'F' => b.fin(),
            'R' => b.rst(),
            'P' => b.psh(),
            _ => b,
        };
    }
    let mut f = Vec::new();
    b.write(&mut f, payload).expect("frame");
    f
}

/// Acceptance: a SYN flood from many spoofed sources keeps memory bounded
/// by the configured connection limit, counts evictions, and osprey keeps
/// running and stops cleanly.
#[test]
fn syn_flood_stays_bounded() {
    if !netns::enabled("syn_flood_stays_bounded") {
        return;
    }
    const SYNS: u32 = 200_000;
    const MAX_PER_WORKER: usize = 5_000;
    const WORKERS: usize = 2;
    const CONTEXT: usize = 20_000;
    const PQ: usize = 16;
    const RQ: usize = 64;
    const RING: usize = 8 << 20;
    // The memory the configuration allows on top of the process at rest
    // (models loaded): connections and remembered flows at 3 KiB each (a
    // Conn is 800 bytes in a slab that grows by doubling, plus its index
    // entry, timers, TCP state and the record it becomes),
    // every packet batch that can be queued (512 packets of 768 bytes), every
    // record batch (256 records of 1 KiB), the kernel ring, and 32 MiB of
    // allocator slack. It does not depend on how long the flood lasts.
    let budget = (WORKERS * MAX_PER_WORKER + CONTEXT) * 3072
        + WORKERS * (PQ + 2) * 512 * 768
        + RQ * 256 * 1024
        + RING
        + (64 << 20);
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let frames: Vec<Vec<u8>> = (0..SYNS)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // Spoofed sources across 198.18.0.0/15, random ports.
            let host = (rng & 0x1_ffff) as u32;
            let src = [198, 18 + (host >> 16) as u8, (host >> 8) as u8, host as u8];
            tcp_frame(
                (src, 1024 + (rng >> 20) as u16 % 60000),
                ([198, 19, 255, 1], 80),
                "S",
                rng as u32,
                0,
                b"",
            )
        })
        .collect();
    let pcap = tmp.path().join("flood.pcap");
    write_pcap(&pcap, 1_700_000_000, &frames);
    let cfg = tmp.path().join("osprey.toml");
    netns::write(
        &cfg,
        &format!(
            "[pipeline]\nconn_workers = {WORKERS}\nmax_connections_per_worker = {MAX_PER_WORKER}\n\
             context_max_flows = {CONTEXT}\npacket_queue_batches = {PQ}\nrecord_queue_batches = {RQ}\n\n\
             [capture]\nbuffer_size_bytes = {RING}\n\n[output]\nrotate_interval_secs = 0\n"
        ),
    );
    let pair = VethPair::new();
    let mut osprey = Osprey::start(
        &pair.ns_a,
        netns::port_for("flood"),
        tmp.path(),
        &["--config", cfg.to_str().unwrap(), "-i", &pair.if_a],
    );
    osprey.wait_ready(Duration::from_secs(30));
    let rest = osprey.metrics().sum("process_resident_memory_bytes", &[]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        let ns = osprey.ns.clone();
        let port = osprey.port;
        std::thread::spawn(move || {
            let probe = Osprey {
                child: None,
                ns,
                port,
                log_dir: PathBuf::new(),
                stderr: PathBuf::new(),
            };
            let mut peak = 0f64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some((200, body)) = probe.get("/metrics") {
                    peak = peak.max(netns::Metrics(body).sum("process_resident_memory_bytes", &[]));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        })
    };
    let sent = pair.replay(&pcap, &["--topspeed"]);
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    let m = osprey.metrics();
    let evicted = m.sum("osprey_conns_evicted_total", &[]);
    let active = m.sum("osprey_conns_active", &[]);
    let analysed = m.sum("osprey_conn_packets_total", &[]);
    osprey.stop(Duration::from_secs(5));
    eprintln!(
        "flood: sent {sent} SYNs, analysed {analysed}; evicted {evicted}, active {active}; RSS at rest \
         {:.0} MiB, peak {:.0} MiB, bound {:.0} MiB",
        rest / 1048576.0,
        peak / 1048576.0,
        (rest + budget as f64) / 1048576.0
    );
    assert!(peak > 0.0, "no RSS sample");
    assert!(peak < rest + budget as f64, "RSS peaked at {peak} bytes");
    assert!(active <= (WORKERS * MAX_PER_WORKER) as f64);
    assert!(evicted > 0.0, "the connection limit never evicted anything");
}

/// Acceptance: SIGHUP with a broken model file keeps the running models
/// (logged, counted); a good file afterwards is taken.
#[test]
fn sighup_with_a_broken_model_keeps_the_old_one() {
    if !netns::enabled("sighup_with_a_broken_model_keeps_the_old_one") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    for f in ["osprey-anomaly.toml", "osprey-anomaly.onnx"] {
        std::fs::copy(models.join(f), tmp.path().join(f)).unwrap();
    }
    let spec = tmp.path().join("osprey-anomaly.toml");
    let onnx = tmp.path().join("osprey-anomaly.onnx");
    let cfg = tmp.path().join("osprey.yaml");
    netns::write(
        &cfg,
        &format!(
            "models:\n  specs: [{}]\noutput:\n  rotate_interval_secs: 0\n",
            spec.display()
        ),
    );
    let ns = LoopNs::new();
    let mut osprey = Osprey::start(
        &ns.ns,
        netns::port_for("sighup"),
        tmp.path(),
        &["--config", cfg.to_str().unwrap(), "-i", "lo"],
    );
    osprey.wait_ready(Duration::from_secs(30));
    let good = std::fs::read(&onnx).unwrap();
    std::fs::write(&onnx, b"this is not an ONNX model").unwrap();
    osprey.signal("HUP");
    let wait_for = |name: &str, label: &str, want: f64| {
        for _ in 0..100 {
            if osprey.metrics().sum(name, &[label]) >= want {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{name}{{{label}}} never reached {want}:\n{}",
            osprey.stderr_text()
        );
    };
    wait_for("osprey_reloads_total", "result=\"error\"", 1.0);
    let m = osprey.metrics();
    assert_eq!(m.sum("osprey_models_loaded", &[]), 1.0);
    assert_eq!(m.sum("osprey_ready", &[]), 1.0);
    assert!(osprey.stderr_text().contains("reload refused"));
    std::fs::write(&onnx, good).unwrap();
    osprey.signal("HUP");
    wait_for("osprey_reloads_total", "result=\"ok\"", 1.0);
    osprey.stop(Duration::from_secs(5));
}

/// Acceptance: SIGTERM flushes connections still open: they are written to
/// conn.log as at the end of a trace, exactly as a replay writes them.
#[test]
fn sigterm_flushes_open_conns() {
    if !netns::enabled("sigterm_flushes_open_conns") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (c, s) = ([198, 18, 1, 10], [198, 18, 2, 20]);
    let frames = vec![
        tcp_frame((c, 40001), (s, 8080), "S", 1000, 0, b""),
        tcp_frame((s, 8080), (c, 40001), "SA", 5000, 1001, b""),
        tcp_frame((c, 40001), (s, 8080), "A", 1001, 5001, b""),
        tcp_frame((c, 40001), (s, 8080), "PA", 1001, 5001, b"hello there"),
        tcp_frame((s, 8080), (c, 40001), "A", 5001, 1012, b""),
        tcp_frame((c, 40002), (s, 9090), "S", 7000, 0, b""),
    ];
    let pcap = tmp.path().join("open.pcap");
    write_pcap(&pcap, 1_700_000_000, &frames);
    let LiveVsReplay {
        took, live, want, ..
    } = live_vs_replay(&pcap, "flush", Duration::from_millis(500));
    eprintln!(
        "flushed {} open conns in {took:?}",
        live.values().sum::<usize>()
    );
    assert_eq!(want.values().sum::<usize>(), 2);
    assert!(
        live == want,
        "flushed records differ:\n{}",
        diff(&live, &want)
    );
}
