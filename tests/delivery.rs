//! End to end: what the platform spool promises a real `osprey run`
//! across a stop and a crash (issue 16, item 5).
//!
//! - SIGTERM right after a SYN scan: every event of the scan reaches the
//!   platform before the process exits (the responder's queue is drained
//!   into the spool, then one last bounded delivery attempt), and nothing
//!   is left spooled for the next start.
//! - SIGKILL three times during scans while the platform answers 503,
//!   then a start with the platform answering 202: every event that
//!   reached the spool (a complete line) is delivered; a key may arrive
//!   twice, never an event under a new key.
//!
//! osprey captures in one namespace of a veth pair and `nmap -sS` scans it
//! from the other; the stand-in platform listens on that namespace's
//! loopback (its socket is bound from a thread that entered the
//! namespace). Needs root, nmap; skips with a reason otherwise unless
//! `OSPREY_E2E=1`. All traffic stays inside the namespaces the test
//! creates (198.18.0.0/15); every wait is bounded.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use common::netns::{enabled_with, port_for, wait_for, Osprey, VethPair};

const TOOLS: [&str; 1] = ["nmap"];

#[derive(Default)]
struct Seen {
    /// Keys of events in batches answered 2xx, in arrival order,
    /// duplicates included.
    keys: Vec<String>,
    /// Event batches answered with something else.
    refused: usize,
}

/// The platform's events endpoint (docs/platform-api.yaml), answering
/// `status` (changeable while it runs).
struct StandIn {
    port: u16,
    status: Arc<AtomicU16>,
    seen: Arc<Mutex<Seen>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type AppState = (Arc<AtomicU16>, Arc<Mutex<Seen>>);

async fn events(State((status, seen)): State<AppState>, body: Bytes) -> StatusCode {
    let code = StatusCode::from_u16(status.load(Ordering::Relaxed))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut seen = seen.lock().expect("stand-in state");
    if !code.is_success() {
        seen.refused += 1;
        return code;
    }
    let v: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return StatusCode::BAD_REQUEST,
    };
    for e in v["events"].as_array().into_iter().flatten() {
        if let Some(k) = e["key"].as_str() {
            seen.keys.push(k.to_owned());
        }
    }
    code
}

async fn heartbeat() -> StatusCode {
    StatusCode::OK
}

/// A listener on 127.0.0.1 inside `ns`: a thread enters the namespace,
/// binds, and ends; the socket stays in the namespace it was made in.
fn bind_in(ns: &str) -> std::net::TcpListener {
    let path = PathBuf::from("/var/run/netns").join(ns);
    std::thread::scope(|s| {
        s.spawn(|| {
            let f = File::open(&path).expect("namespace file");
            rustix::thread::move_into_link_name_space(
                f.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("setns");
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind in namespace")
        })
        .join()
        .expect("bind thread")
    })
}

impl StandIn {
    fn start(ns: &str, status: u16) -> StandIn {
        let listener = bind_in(ns);
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let status = Arc::new(AtomicU16::new(status));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state: AppState = (status.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let app = Router::new()
                    .route("/api/v1/anomaly-detection/events", post(events))
                    .route("/api/v1/anomaly-detection/heartbeat", post(heartbeat))
                    .with_state(state);
                let l = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let _ = axum::serve(l, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        StandIn {
            port,
            status,
            seen,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn keys(&self) -> Vec<String> {
        self.seen.lock().expect("stand-in state").keys.clone()
    }

    fn refused(&self) -> usize {
        self.seen.lock().expect("stand-in state").refused
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// osprey's configuration: the bundled models and rules in dry run, every
/// alert reported (no cap in the way of counting), quick retries.
fn config(dir: &Path, platform_port: u16) -> PathBuf {
    let path = dir.join("osprey.toml");
    std::fs::write(
        &path,
        format!(
            "[pipeline]\nconn_workers = 2\n\n[output]\nrotate_interval_secs = 0\n\n\
             [platform]\nurl = \"http://127.0.0.1:{platform_port}\"\nspool_dir = {:?}\n\
             batch_max_wait_ms = 200\nbackoff_initial_ms = 50\nbackoff_max_secs = 1\n\
             heartbeat_interval_secs = 1\nsync_interval_ms = 100\ntimeout_secs = 2\n\
             max_alerts_per_sec = 100000\nmax_actions_per_sec = 100000\n",
            dir.join("spool"),
        ),
    )
    .expect("config");
    path
}

fn start(pair: &VethPair, dir: &Path, cfg: &Path, name: &str) -> Osprey {
    let mut o = Osprey::start(
        &pair.ns_a,
        port_for(name),
        dir,
        &["-i", &pair.if_a, "--config", cfg.to_str().expect("utf-8")],
    );
    o.wait_ready(Duration::from_secs(60));
    o
}

/// A SYN scan of 1,001 closed ports of osprey's side, from the other.
fn scan(pair: &VethPair) -> std::process::Child {
    Command::new("ip")
        .args(["netns", "exec", &pair.ns_b])
        .args(common::netns::syn_scan("198.18.0.1"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nmap")
}

/// The spool as a new start would find it: the cursor, and the key of
/// every complete line at or after it (a line cut by a crash was never
/// in the spool).
struct SpoolView {
    acked: u64,
    pending: BTreeMap<u64, String>,
}

fn read_spool(dir: &Path) -> SpoolView {
    let cursor: serde_json::Value = std::fs::read(dir.join("cursor.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let acked = cursor["acked"].as_u64().unwrap_or(0);
    let mut segs: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter_map(|p| {
                    let first = p
                        .file_name()?
                        .to_str()?
                        .strip_suffix(".seg")?
                        .parse()
                        .ok()?;
                    Some((first, p))
                })
                .collect()
        })
        .unwrap_or_default();
    segs.sort();
    let mut pending = BTreeMap::new();
    for (first, path) in segs {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
        for (i, line) in complete.lines().enumerate() {
            let seq = first + i as u64;
            if seq < acked {
                continue;
            }
            let key = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["key"].as_str().map(str::to_owned));
            if let Some(key) = key {
                pending.insert(seq, key);
            }
        }
    }
    SpoolView { acked, pending }
}

/// The `id=` of every action line osprey logged: each is the key of the
/// platform event the responder submitted for it.
fn logged_action_ids(stderr: &str) -> BTreeSet<String> {
    stderr
        .lines()
        .filter(|l| l.contains("osprey::action"))
        .filter_map(|l| {
            let rest = &l[l.find(" id=")? + 4..];
            Some(rest.split_whitespace().next()?.trim_matches('"').to_owned())
        })
        .collect()
}

#[test]
fn sigterm_after_a_scan_delivers_every_event_before_exit() {
    let name = "sigterm_after_a_scan_delivers_every_event_before_exit";
    if !enabled_with(name, &TOOLS) {
        return;
    }
    let pair = VethPair::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let platform = StandIn::start(&pair.ns_a, 202);
    let cfg = config(dir.path(), platform.port);
    let mut osprey = start(&pair, dir.path(), &cfg, name);
    let mut nmap = scan(&pair);
    let ended = wait_for(Duration::from_secs(60), || {
        nmap.try_wait().ok().flatten().is_some()
    });
    assert!(ended.is_some(), "nmap did not end within 60 s");
    // SIGTERM at once: the open connections' records, their alerts and
    // the actions they lead to are all produced during the stop.
    let took = osprey.stop(Duration::from_secs(15));
    let spool = read_spool(&dir.path().join("spool"));
    let keys = platform.keys();
    let distinct: BTreeSet<&String> = keys.iter().collect();
    let actions = logged_action_ids(&osprey.stderr_text());
    let undelivered: Vec<&String> = actions.iter().filter(|a| !distinct.contains(a)).collect();
    eprintln!(
        "{name}: {} events spooled in all; {} delivered ({} distinct keys), {} left in the spool; \
         {} actions logged, {} of them not delivered; stopped in {took:?}",
        spool.acked + spool.pending.len() as u64,
        keys.len(),
        distinct.len(),
        spool.pending.len(),
        actions.len(),
        undelivered.len(),
    );
    assert!(
        spool.acked > 100,
        "the scan made only {} events",
        spool.acked
    );
    assert!(
        spool.pending.is_empty(),
        "{} events were left spooled at exit",
        spool.pending.len()
    );
    assert_eq!(
        distinct.len() as u64,
        spool.acked,
        "every spooled event is delivered once"
    );
    assert!(
        undelivered.is_empty(),
        "actions logged but never delivered: {undelivered:?}"
    );
    assert!(took < Duration::from_secs(10), "stop took {took:?}");
}

#[test]
fn three_sigkills_while_the_platform_answers_503_lose_no_spooled_event() {
    let name = "three_sigkills_while_the_platform_answers_503_lose_no_spooled_event";
    if !enabled_with(name, &TOOLS) {
        return;
    }
    let pair = VethPair::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let spool_dir = dir.path().join("spool");
    let platform = StandIn::start(&pair.ns_a, 503);
    let cfg = config(dir.path(), platform.port);
    let mut spooled: BTreeMap<u64, String> = BTreeMap::new();
    for round in 0..3u64 {
        let mut osprey = start(&pair, dir.path(), &cfg, name);
        let before = read_spool(&spool_dir).pending.len();
        let refused = platform.refused();
        let mut nmap = scan(&pair);
        // Killed while events are being appended and retried: some events
        // in, the platform refused at least once since this start.
        let t0 = Instant::now();
        let grown = wait_for(Duration::from_secs(60), || {
            read_spool(&spool_dir).pending.len() >= before + 50 && platform.refused() > refused
        });
        assert!(
            grown.is_some(),
            "round {round}: the spool did not grow ({} events) or the platform saw no retry",
            read_spool(&spool_dir).pending.len()
        );
        let mut child = osprey.child.take().expect("running");
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("wait");
        let _ = nmap.kill();
        let _ = nmap.wait();
        let view = read_spool(&spool_dir);
        assert_eq!(view.acked, 0, "the platform acknowledged nothing");
        for (seq, key) in &view.pending {
            if let Some(old) = spooled.insert(*seq, key.clone()) {
                assert_eq!(&old, key, "event {seq} changed its key after a crash");
            }
        }
        eprintln!(
            "{name}: round {round}: killed ({status}) {:?} after the scan started; \
             {} events in the spool",
            t0.elapsed(),
            view.pending.len()
        );
    }
    assert!(platform.keys().is_empty(), "503 acknowledged events");

    // Recovery: the platform accepts, osprey starts on the same spool.
    platform.status.store(202, Ordering::Relaxed);
    let mut osprey = start(&pair, dir.path(), &cfg, name);
    let want: BTreeSet<&String> = spooled.values().collect();
    let all = wait_for(Duration::from_secs(60), || {
        let got = platform.keys();
        let got: BTreeSet<&String> = got.iter().collect();
        want.iter().all(|k| got.contains(k))
    });
    let keys = platform.keys();
    let got: BTreeSet<&String> = keys.iter().collect();
    let missing: Vec<&&String> = want.iter().filter(|k| !got.contains(**k)).collect();
    eprintln!(
        "{name}: {} events reached the spool over three crashes; after recovery the platform \
         got {} ({} distinct), {} missing",
        want.len(),
        keys.len(),
        got.len(),
        missing.len()
    );
    assert!(
        all.is_some() && missing.is_empty(),
        "{} spooled events never delivered, e.g. {:?}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    osprey.stop(Duration::from_secs(15));
    assert!(
        read_spool(&spool_dir).pending.is_empty(),
        "events left in the spool after recovery"
    );
}
