//! Issue 16, item 6: the sensor fails loudly.
//!
//! - The metrics endpoint survives slow clients: 2,000 idle connections
//!   neither keep `/readyz` waiting nor stall the runtime enforcement
//!   shares with it, and connections that send no complete request header
//!   in time are closed and counted.
//! - A panicking worker thread (capture, conn worker, scorer, responder)
//!   makes `/readyz` fail and the daemon exit non-zero, with a log line
//!   naming the thread. The panic is injected through the debug-only fault
//!   points of `sensor/fault.rs` (`OSPREY_TEST_PANIC`); these tests run the
//!   daemon in a network namespace of their own (root, as in tests/live.rs).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::netns::{self, LoopNs, Osprey};
use osprey::metrics::{Health, Metrics, ServerLimits};

/// A metrics server on its own current-thread runtime (the daemon's is one
/// too), with a task beside it that ticks every 50 ms as the responder's
/// housekeeping does; returns the address, the metrics, the largest gap
/// between ticks seen so far (ms), and the runtime's thread.
struct Server {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    worst_tick_gap_ms: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(limits: ServerLimits) -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::default());
        health.set_capture_running(true);
        health.set_models_loaded(true);
        let worst = Arc::new(AtomicU64::new(0));
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (m, w) = (metrics.clone(), worst.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let ticker = tokio::spawn(async move {
                    let mut last = Instant::now();
                    let mut every = tokio::time::interval(Duration::from_millis(50));
                    loop {
                        every.tick().await;
                        let gap = last.elapsed().as_millis() as u64;
                        w.fetch_max(gap, Ordering::Relaxed);
                        last = Instant::now();
                    }
                });
                osprey::metrics::serve(listener, m, health, limits, async move {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
                ticker.abort();
            });
        });
        Server {
            addr,
            metrics,
            worst_tick_gap_ms: worst,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn metric(&self, series: &str) -> f64 {
        self.metrics
            .render()
            .lines()
            .find_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                (name == series).then(|| value.parse().ok()).flatten()
            })
            .unwrap_or(0.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One `GET` on a fresh connection: (status line, time taken).
fn get(addr: SocketAddr, path: &str, limit: Duration) -> (String, Duration) {
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, limit).expect("connect");
    s.set_read_timeout(Some(limit)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text.lines().next().unwrap_or("(no answer)").to_owned();
    (status, start.elapsed())
}

/// Waits until the server closes `s` (a read returns 0 or fails with a
/// reset); returns how long that took, or `None` past `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = [0u8; 256];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

/// Sets this process's open-file limit to `n` (lowering or raising the
/// soft limit), so that an uncapped server would run out of descriptors
/// as the daemon would at its default limit of 1,024.
/// Returns the limit before.
fn set_open_files(n: u64) -> rustix::process::Rlimit {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let before = getrlimit(Resource::Nofile);
    let mut l = before;
    if let Some(hard) = l.maximum {
        assert!(hard >= n, "the hard open-file limit {hard} is below {n}");
    }
    l.current = Some(n);
    setrlimit(Resource::Nofile, l).unwrap();
    before
}

const SLOW_CLIENTS: usize = 2_000;

/// The slow-client test narrows the whole process's descriptor limit
/// while it holds thousands: the other tests of this binary wait for it
/// (read side), it waits for them (write side).
static FDS: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared_fds() -> std::sync::RwLockReadGuard<'static, ()> {
    FDS.read().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn two_thousand_idle_connections_do_not_starve_readyz() {
    // Room for the 2,000 client ends, the server's capped ends and the
    // rest of the test binary, but not for 2,000 server ends on top.
    let _alone = FDS.write().unwrap_or_else(|e| e.into_inner());
    let before = set_open_files(SLOW_CLIENTS as u64 + 600);
    let limits = ServerLimits {
        max_connections: 64,
        header_read_timeout: Duration::from_secs(3),
    };
    let server = Server::start(limits);
    let mut idle = Vec::with_capacity(SLOW_CLIENTS);
    for i in 0..SLOW_CLIENTS {
        match TcpStream::connect_timeout(&server.addr, Duration::from_secs(2)) {
            Ok(s) => idle.push(s),
            Err(e) => panic!("slow client {i}: cannot connect: {e}"),
        }
    }
    // A probe as the kubelet sends it, while all 2,000 stay open.
    let (status, took) = get(server.addr, "/readyz", Duration::from_secs(5));
    assert!(status.contains(" 200 "), "/readyz answered {status:?}");
    assert!(took < Duration::from_secs(1), "/readyz took {took:?}");
    // The runtime enforcement runs on was never held up for long.
    let worst = server.worst_tick_gap_ms.load(Ordering::Relaxed);
    assert!(worst < 500, "a 50 ms tick waited {worst} ms");
    let open = server.metric("osprey_http_connections_open");
    assert!(open <= 64.0, "{open} connections held open");
    let evicted = server.metric("osprey_http_connections_closed_total{reason=\"evicted\"}");
    assert!(
        evicted >= (SLOW_CLIENTS - 64) as f64,
        "{evicted} connections evicted"
    );
    // The ones still held are closed at the header timeout and counted.
    let mut last = idle.pop().expect("a slow client");
    let waited = closed_within(&mut last, Duration::from_secs(10));
    assert!(waited.is_some(), "an idle connection stayed open");
    // The server counts a close just after the client sees it: poll.
    let counted =
        || server.metric("osprey_http_connections_closed_total{reason=\"header_timeout\"}");
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while counted() < 1.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let timed_out = counted();
    assert!(timed_out >= 1.0, "{timed_out} header timeouts counted");
    drop(idle);
    drop(server);
    let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, before);
}

#[test]
fn idle_and_trickling_connections_are_closed_at_the_header_timeout() {
    let _fds = shared_fds();
    let timeout = Duration::from_secs(1);
    let server = Server::start(ServerLimits {
        max_connections: 16,
        header_read_timeout: timeout,
    });
    let mut idle = TcpStream::connect(server.addr).unwrap();
    let mut trickle = TcpStream::connect(server.addr).unwrap();
    let addr = server.addr;
    let feeding = Arc::new(AtomicBool::new(true));
    let feeder = {
        let mut t = trickle.try_clone().unwrap();
        let feeding = feeding.clone();
        std::thread::spawn(move || {
            let _ = t.write_all(b"GET /readyz HTTP/1.1\r\n");
            let mut i = 0;
            while feeding.load(Ordering::Relaxed) && i < 100 {
                if t.write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                    .is_err()
                {
                    break;
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let idle_closed = closed_within(&mut idle, Duration::from_secs(5));
    let trickle_closed = closed_within(&mut trickle, Duration::from_secs(5));
    feeding.store(false, Ordering::Relaxed);
    let _ = feeder.join();
    let idle_closed = idle_closed.expect("the idle connection was never closed");
    assert!(
        idle_closed >= timeout - Duration::from_millis(100) && idle_closed < timeout * 3,
        "idle connection closed after {idle_closed:?}"
    );
    assert!(
        trickle_closed.is_some(),
        "the trickling connection was never closed"
    );
    assert!(
        server.metric("osprey_http_connections_closed_total{reason=\"header_timeout\"}") >= 2.0
    );
    // A prompt client is still served.
    let (status, _) = get(addr, "/healthz", Duration::from_secs(2));
    assert!(status.contains(" 200 "), "{status}");
}

/// Starts the daemon with a panic injected at `site` 3 s after its threads
/// start; checks that it was ready first, that `/readyz` never answers 200
/// again, that it exits non-zero within 15 s, and that its log names the
/// thread.
fn panic_at(site: &str, thread: &str) {
    let test = format!("a_panicking_{site}_fails_the_process");
    if !netns::enabled(&test) {
        return;
    }
    let _fds = shared_fds();
    let ns = LoopNs::new();
    let tmp = tempfile::tempdir().unwrap();
    let mut osprey = Osprey::start_with_env(
        &ns.ns,
        netns::port_for(&test),
        tmp.path(),
        &["-i", "lo"],
        &[
            ("OSPREY_TEST_PANIC", site),
            ("OSPREY_TEST_PANIC_AFTER_MS", "3000"),
        ],
    );
    osprey.wait_ready(Duration::from_secs(30));
    let start = Instant::now();
    let mut after_ready = Vec::new();
    let status = loop {
        if let Some(status) = osprey.child.as_mut().unwrap().try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "osprey still running {:?} after ready; /readyz said {after_ready:?}:\n{}",
            start.elapsed(),
            osprey.stderr_text()
        );
        let seen = osprey.get("/readyz");
        if after_ready.last() != Some(&seen) {
            after_ready.push(seen);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    osprey.child = None;
    let log = osprey.stderr_text();
    assert!(!status.success(), "osprey exited with {status}:\n{log}");
    assert!(
        status.code().is_some(),
        "osprey was killed: {status}:\n{log}"
    );
    // Once it stopped being ready it never was again.
    let first_down = after_ready
        .iter()
        .position(|s| !matches!(s, Some((200, _))))
        .unwrap_or(after_ready.len());
    assert!(
        after_ready[first_down..]
            .iter()
            .all(|s| !matches!(s, Some((200, _)))),
        "/readyz answered {after_ready:?}"
    );
    for s in after_ready[first_down..].iter().flatten() {
        assert_eq!(s.0, 503, "{after_ready:?}");
        assert!(s.1.contains("panicked"), "{after_ready:?}");
    }
    assert!(
        log.contains("thread panicked") && log.contains(&format!("thread={thread}")),
        "no log line names {thread}:\n{log}"
    );
    assert!(log.contains(&format!("injected fault at {site}")), "{log}");
}

#[test]
fn a_panicking_conn_worker_fails_the_process() {
    panic_at("conn", "osprey-conn-0");
}

#[test]
fn a_panicking_capture_thread_fails_the_process() {
    panic_at("capture", "osprey-cap-lo");
}

#[test]
fn a_panicking_scorer_fails_the_process() {
    panic_at("scorer", "main");
}

#[test]
fn a_panicking_responder_fails_the_process() {
    panic_at("responder", "osprey-io");
}
