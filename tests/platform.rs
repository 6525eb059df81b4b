//! The platform reporter against a local test platform: delivery across a
//! restart while the platform is down, a refused token, a redirect to a
//! login page, the spool cap, a batch refused for one bad event, the cap
//! on alert actions, and the last delivery attempt at shutdown.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use osprey::report::platform::{
    AlertBody, Event, EventBody, PlatformConfig, Reporter, ReporterHandle,
};
use osprey::respond::dispatch::Dispatch;
use osprey::respond::{Action, ActionKind, Evidence};
use prometheus::{Encoder, Registry, TextEncoder};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Default)]
struct Received {
    /// Every event key in arrival order, duplicates included.
    keys: Vec<String>,
    heartbeats: usize,
    /// The bearer token accepted (None: any).
    token: Option<String>,
    /// Events are answered with a redirect to a login page (a proxy in
    /// front of a platform whose session expired).
    redirect: bool,
    /// Requests the login page answered 200 to.
    logins: usize,
    /// Events the platform refuses as malformed, with the status it
    /// answers: a batch holding one is refused whole, nothing of it kept.
    bad: HashMap<String, u16>,
    /// Event batches answered 400 or 422.
    refused: usize,
    /// The kind of every event kept, in arrival order.
    kinds: Vec<String>,
}

type Shared = Arc<Mutex<Received>>;

fn authorised(s: &Received, headers: &HeaderMap) -> bool {
    let Some(want) = &s.token else {
        return true;
    };
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {want}"))
}

async fn events(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut s = s.lock().unwrap();
    if s.redirect {
        return (StatusCode::FOUND, [("location", "/login")]).into_response();
    }
    if !authorised(&s, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    assert!(headers.get("idempotency-key").is_some());
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["sensor"]["node"], "node-a");
    let events = v["events"].as_array().unwrap();
    let refusal = events
        .iter()
        .find_map(|e| s.bad.get(e["key"].as_str().unwrap()).copied());
    if let Some(status) = refusal {
        s.refused += 1;
        return (
            StatusCode::from_u16(status).unwrap(),
            "event does not match the schema",
        )
            .into_response();
    }
    for e in events {
        s.keys.push(e["key"].as_str().unwrap().to_owned());
        s.kinds.push(e["kind"].as_str().unwrap().to_owned());
    }
    StatusCode::ACCEPTED.into_response()
}

async fn login(State(s): State<Shared>) -> StatusCode {
    s.lock().unwrap().logins += 1;
    StatusCode::OK
}

async fn heartbeat(State(s): State<Shared>, body: Bytes) -> StatusCode {
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["node"], "node-a");
    s.lock().unwrap().heartbeats += 1;
    StatusCode::OK
}

/// A platform on a fixed local port that starts down and comes up later.
struct Platform {
    addr: SocketAddr,
    state: Shared,
    server: Option<JoinHandle<()>>,
}

impl Platform {
    fn down() -> Platform {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        Platform {
            addr,
            state: Shared::default(),
            server: None,
        }
    }

    async fn up(&mut self) {
        let app = Router::new()
            .route("/api/v1/anomaly-detection/events", post(events))
            .route("/api/v1/anomaly-detection/heartbeat", post(heartbeat))
            .route("/login", get(login).post(login))
            .with_state(self.state.clone());
        let l = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.server = Some(tokio::spawn(async move {
            axum::serve(l, app).await.unwrap();
        }));
    }

    fn keys(&self) -> Vec<String> {
        self.state.lock().unwrap().keys.clone()
    }

    async fn wait_for(&self, n: usize) -> Vec<String> {
        for _ in 0..300 {
            let keys = self.keys();
            if keys.len() >= n {
                return keys;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("platform got {} of {n} events", self.keys().len());
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }
}

fn config(p: &Platform, spool: &Path) -> PlatformConfig {
    PlatformConfig {
        url: Some(format!("http://{}", p.addr)),
        spool_dir: spool.to_path_buf(),
        batch_events: 100,
        batch_max_wait_ms: 10,
        timeout_secs: 2,
        backoff_initial_ms: 20,
        backoff_max_secs: 1,
        heartbeat_interval_secs: 1,
        sync_interval_ms: 50,
        ..PlatformConfig::default()
    }
}

fn event(i: usize) -> Event {
    Event {
        key: format!("k{i:05}"),
        ts: i as f64,
        node: "node-a".into(),
        body: EventBody::Alert(AlertBody {
            uid: format!("C{i}"),
            interim: false,
            conn: json!({"uid": format!("C{i}"), "proto": "tcp"}),
            verdicts: vec![],
            identity: None,
        }),
    }
}

fn keys(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| event(i).key).collect()
}

struct Running {
    handle: ReporterHandle,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    registry: Registry,
}

fn start(cfg: &PlatformConfig) -> Running {
    let registry = Registry::new();
    let (handle, task) = Reporter::open(cfg, "node-a", &registry).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(task.run(async {
        let _ = stopped.await;
    }));
    Running {
        handle,
        stop,
        task,
        registry,
    }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }

    /// Sum of the samples of `name` (with the label, if given), read from
    /// the text exposition as a scraper would.
    fn metric(&self, name: &str, label: Option<(&str, &str)>) -> f64 {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .unwrap();
        let text = String::from_utf8(buf).unwrap();
        let want = label.map(|(k, v)| format!("{k}=\"{v}\""));
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter(|l| want.as_ref().is_none_or(|w| l.contains(w.as_str())))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

#[tokio::test]
async fn every_event_arrives_once_in_order_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut platform = Platform::down();
    let cfg = config(&platform, dir.path());

    let r = start(&cfg);
    for i in 0..1000 {
        r.handle.submit(&event(i));
    }
    assert_eq!(
        r.metric("osprey_platform_events_total", Some(("kind", "alert"))),
        1000.0
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        r.metric(
            "osprey_platform_deliveries_total",
            Some(("result", "retry"))
        ) >= 1.0
    );
    assert_eq!(r.handle.pending(), 1000);
    r.stop().await;

    // Restart on the same spool, then the platform comes up.
    let r = start(&cfg);
    assert_eq!(r.metric("osprey_platform_spool_events", None), 1000.0);
    platform.up().await;
    let got = platform.wait_for(1000).await;
    assert_eq!(got, keys(0..1000));
    for _ in 0..100 {
        if r.handle.pending() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(r.handle.pending(), 0);
    assert_eq!(r.metric("osprey_platform_spool_events", None), 0.0);
    r.stop().await;

    // Acknowledged events are not sent again after another restart.
    let r = start(&cfg);
    for i in 1000..1010 {
        r.handle.submit(&event(i));
    }
    let got = platform.wait_for(1010).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(platform.keys(), got);
    assert_eq!(got, keys(0..1010));
    assert!(platform.state.lock().unwrap().heartbeats >= 1);
    r.stop().await;
}

/// Collects log lines for a test.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_redirect_is_not_an_acknowledgement() {
    // A 302 to a login page, followed, ends in a 200 that acknowledged
    // events nobody received.
    let dir = tempfile::tempdir().unwrap();
    let mut platform = Platform::down();
    platform.state.lock().unwrap().redirect = true;
    platform.up().await;
    let r = start(&config(&platform, &dir.path().join("spool")));
    for i in 0..20 {
        r.handle.submit(&event(i));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        r.handle.pending(),
        20,
        "redirected events must stay spooled"
    );
    assert_eq!(
        platform.state.lock().unwrap().logins,
        0,
        "the redirect was followed"
    );
    // The platform is fixed: everything arrives.
    platform.state.lock().unwrap().redirect = false;
    assert_eq!(platform.wait_for(20).await, keys(0..20));
    r.stop().await;
}

#[tokio::test]
async fn a_refused_token_keeps_events_spooled_until_it_is_fixed() {
    let logs = Logs::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "wrong-token\n").unwrap();
    let mut platform = Platform::down();
    platform.state.lock().unwrap().token = Some("right-token".into());
    platform.up().await;
    let cfg = PlatformConfig {
        token_file: Some(token.clone()),
        ..config(&platform, &dir.path().join("spool"))
    };
    let r = start(&cfg);
    for i in 0..50 {
        r.handle.submit(&event(i));
    }
    for _ in 0..100 {
        if r.metric("osprey_platform_token_rejected", None) == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(r.metric("osprey_platform_token_rejected", None), 1.0);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let expected = format!("platform rejected the token in {}: 401", token.display());
    assert!(text.contains(&expected), "{text}");
    assert_eq!(text.matches(&expected).count(), 1, "{text}");
    assert_eq!(r.handle.pending(), 50);
    assert!(platform.keys().is_empty());

    std::fs::write(&token, "right-token\n").unwrap();
    let got = platform.wait_for(50).await;
    assert_eq!(got, keys(0..50));
    assert_eq!(r.metric("osprey_platform_token_rejected", None), 0.0);
    r.stop().await;
}

#[tokio::test]
async fn a_full_spool_drops_the_oldest_events_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut platform = Platform::down();
    let cfg = PlatformConfig {
        segment_bytes: 4096,
        spool_max_bytes: 16384,
        ..config(&platform, dir.path())
    };
    let r = start(&cfg);
    let n = 1000;
    for i in 0..n {
        r.handle.submit(&event(i));
    }
    let dropped = r.metric("osprey_platform_spool_dropped_events_total", None) as usize;
    assert!(dropped > 0);
    assert!(r.metric("osprey_platform_spool_bytes", None) <= 16384.0);
    assert_eq!(r.handle.pending() as usize, n - dropped);
    platform.up().await;
    let got = platform.wait_for(n - dropped).await;
    assert_eq!(got, keys(dropped..n));
    r.stop().await;
}

/// Captures the log lines of one test (the current thread's subscriber).
fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

async fn wait_pending(r: &Running, n: u64) {
    for _ in 0..300 {
        if r.handle.pending() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(r.handle.pending(), n);
}

#[tokio::test]
async fn a_refused_batch_is_split_until_the_bad_events_are_isolated() {
    // Before: a 400 or 422 dropped the whole batch, 98 good events with
    // the 2 bad ones.
    let (logs, _guard) = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut platform = Platform::down();
    {
        let mut s = platform.state.lock().unwrap();
        s.bad.insert(event(13).key, 400);
        s.bad.insert(event(77).key, 422);
    }
    platform.up().await;
    let cfg = PlatformConfig {
        batch_max_wait_ms: 200,
        ..config(&platform, dir.path())
    };
    let r = start(&cfg);
    for i in 0..100 {
        r.handle.submit(&event(i));
    }
    let want: Vec<String> = keys(0..100)
        .into_iter()
        .filter(|k| *k != event(13).key && *k != event(77).key)
        .collect();
    let got = platform.wait_for(98).await;
    wait_pending(&r, 0).await;
    // Every good event once, in order, under its own key.
    assert_eq!(got, want);
    let refused = platform.state.lock().unwrap().refused;
    assert!(
        refused <= 2 * 2 * 7,
        "{refused} refusals to isolate two bad events in 100"
    );
    assert_eq!(
        r.metric(
            "osprey_platform_events_rejected_total",
            Some(("reason", "malformed"))
        ),
        1.0
    );
    assert_eq!(
        r.metric(
            "osprey_platform_events_rejected_total",
            Some(("reason", "unprocessable"))
        ),
        1.0
    );
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    for bad in [event(13).key, event(77).key] {
        assert!(
            text.lines().any(|l| l.contains("WARN")
                && l.contains("platform refused an event")
                && l.contains(&bad)),
            "no warning names {bad}:\n{text}"
        );
    }
    // The queue is not blocked: later events go through.
    for i in 100..110 {
        r.handle.submit(&event(i));
    }
    let got = platform.wait_for(108).await;
    assert_eq!(&got[98..], &keys(100..110)[..]);
    r.stop().await;
}

fn action(i: usize, kind: ActionKind) -> Action {
    Action {
        id: format!("act-{}-{i}", kind.name()),
        ts: 1_700_000_000.0 + i as f64,
        rule: "flood".into(),
        kind,
        target: format!("198.18.{}.{}/32", i / 250, i % 250 + 1)
            .parse()
            .unwrap(),
        ttl: Duration::from_secs(60),
        enforce: false,
        softened: Some("circuit breaker for rate_limit open".into()),
        evidence: Evidence {
            uid: format!("C{i}"),
            interim: true,
            model: None,
            label: None,
            score: None,
            probability: None,
            orig_h: "198.18.0.9".parse().unwrap(),
            orig_p: 40000,
            resp_h: "198.18.0.1".parse().unwrap(),
            resp_p: 80,
            proto: "tcp".into(),
            service: None,
            conn_state: "S0".into(),
            history: Some("S".into()),
            facts: None,
            identity: None,
        },
    }
}

#[tokio::test]
async fn alert_actions_are_capped_like_alerts_and_enforcing_ones_are_not() {
    // Before: every action event went to the spool, so a flood's sources
    // (one alert action each once a breaker opened) flushed it.
    let dir = tempfile::tempdir().unwrap();
    let mut platform = Platform::down();
    platform.up().await;
    let cfg = PlatformConfig {
        max_actions_per_sec: 10,
        ..config(&platform, dir.path())
    };
    let r = start(&cfg);
    let mut dispatch = Dispatch::default().with_reporter(r.handle.clone(), "node-a");
    for i in 0..200 {
        dispatch.report(&action(i, ActionKind::Alert));
    }
    for i in 0..20 {
        dispatch.report(&action(i, ActionKind::Block));
    }
    let suppressed = r.metric("osprey_platform_actions_suppressed_total", None) as usize;
    let sent = 200 - suppressed;
    // The burst (10), and what refilled while the loop ran.
    assert!((10..=12).contains(&sent), "{sent} alert actions sent");
    assert_eq!(
        r.metric("osprey_platform_events_total", Some(("kind", "action"))) as usize,
        sent + 20
    );
    platform.wait_for(sent + 20).await;
    wait_pending(&r, 0).await;
    let (keys, kinds) = {
        let s = platform.state.lock().unwrap();
        (s.keys.clone(), s.kinds.clone())
    };
    let blocks = keys.iter().filter(|k| k.starts_with("act-block-")).count();
    assert_eq!(blocks, 20, "every block is reported");
    assert!(kinds.iter().all(|k| k == "action"));
    r.stop().await;
}

#[tokio::test]
async fn shutdown_delivers_what_is_spooled_before_it_returns() {
    // Before: the task broke out of its loop at once, and events waiting
    // for their batch to fill stayed spooled until the next start.
    let dir = tempfile::tempdir().unwrap();
    let mut platform = Platform::down();
    platform.up().await;
    let cfg = PlatformConfig {
        // Batches wait a minute to fill: only the last attempt sends them.
        batch_events: 500,
        batch_max_wait_ms: 60_000,
        ..config(&platform, dir.path())
    };
    let r = start(&cfg);
    for i in 0..1200 {
        r.handle.submit(&event(i));
    }
    // Two full batches go at once; the rest waits for its batch to fill.
    platform.wait_for(1000).await;
    assert_eq!(platform.keys().len(), 1000);
    let handle = r.handle.clone();
    let t0 = std::time::Instant::now();
    r.stop().await;
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(platform.keys(), keys(0..1200));
    assert_eq!(handle.pending(), 0);
}

#[tokio::test]
async fn a_platform_that_never_answers_cannot_hold_the_stop() {
    // Accepts connections, never answers: the last attempt is bounded by
    // shutdown_delivery_ms, not the request timeout, and nothing is lost.
    let dir = tempfile::tempdir().unwrap();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            held.push(c);
        }
    });
    let cfg = PlatformConfig {
        url: Some(format!("http://{addr}")),
        timeout_secs: 30,
        batch_max_wait_ms: 60_000,
        shutdown_delivery_ms: 300,
        ..config(&Platform::down(), dir.path())
    };
    let r = start(&cfg);
    for i in 0..10 {
        r.handle.submit(&event(i));
    }
    let handle = r.handle.clone();
    let t0 = std::time::Instant::now();
    r.stop().await;
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(handle.pending(), 10, "undelivered events stay spooled");
    drop(handle);
    hold.abort();
    // They are delivered by the next start.
    let mut platform = Platform::down();
    platform.up().await;
    let r = start(&config(&platform, dir.path()));
    assert_eq!(platform.wait_for(10).await, keys(0..10));
    r.stop().await;
}
