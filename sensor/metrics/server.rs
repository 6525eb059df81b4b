//! `/metrics`, `/healthz` and `/readyz` over HTTP/1.1 (axum on the
//! daemon's tokio runtime).
//!
//! `/healthz` answers as long as the process serves requests and no thread
//! has panicked (liveness: restart only a wedged or broken process);
//! `/readyz` only once capture runs and the models are loaded, and again
//! not while shutting down or after a panic, so a rollout waits for a
//! sensor that actually sees traffic.
//!
//! The endpoint faces the network, so slow clients are bounded: at most
//! `max_connections` are served at once, and a connection must deliver
//! each request's header within `header_read_timeout`. 2,000 idle or
//! trickling connections would otherwise hold 2,000 descriptors (past the
//! default limit of 1,024, after which `nft` cannot even be started for an
//! enforcement) and keep the kubelet's probe waiting in the accept queue.
//! When the cap is reached, the connection that has waited longest for its
//! request is closed to make room for the new one: a probe that sends its
//! request at once is served however many slow clients keep coming.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{IntCounterVec, IntGauge};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::Metrics;

/// What the probes report.
#[derive(Default)]
pub struct Health {
    capture_running: AtomicBool,
    models_loaded: AtomicBool,
    stopping: AtomicBool,
    /// Why enforcement cannot run (nft missing, no CAP_NET_ADMIN, no API
    /// server), if it cannot. Detection goes on, so the sensor stays
    /// ready, but the probe's body says so.
    enforcement_degraded: std::sync::Mutex<Option<String>>,
    /// Other parts that run degraded without making the sensor unready
    /// (the pod identity watch), by what `/readyz` calls them.
    notes: std::sync::Mutex<std::collections::BTreeMap<&'static str, String>>,
    /// Why the process is broken (a thread panicked: metrics/fail.rs);
    /// set once, never cleared. Lock-free: it is set from a panic hook.
    failed: OnceLock<String>,
}

impl Health {
    pub fn set_capture_running(&self, v: bool) {
        self.capture_running.store(v, Ordering::Release);
    }
    pub fn set_models_loaded(&self, v: bool) {
        self.models_loaded.store(v, Ordering::Release);
    }
    pub fn set_enforcement_degraded(&self, why: Option<String>) {
        if let Ok(mut g) = self.enforcement_degraded.lock() {
            *g = why;
        }
    }
    pub fn enforcement_degraded(&self) -> Option<String> {
        self.enforcement_degraded
            .lock()
            .ok()
            .and_then(|g| g.clone())
    }
    /// Sets (or clears, with `None`) the note `/readyz` shows as
    /// `<key>: <why>`; the sensor stays ready.
    pub fn set_note(&self, key: &'static str, why: Option<String>) {
        if let Ok(mut g) = self.notes.lock() {
            match why {
                Some(w) => g.insert(key, w),
                None => g.remove(key),
            };
        }
    }
    /// Every note `/readyz` shows, enforcement's first, `; `-separated.
    pub fn notes(&self) -> Option<String> {
        let mut all: Vec<String> = self
            .enforcement_degraded()
            .map(|w| format!("enforcement degraded: {w}"))
            .into_iter()
            .collect();
        if let Ok(g) = self.notes.lock() {
            all.extend(g.iter().map(|(k, w)| format!("{k}: {w}")));
        }
        (!all.is_empty()).then(|| all.join("; "))
    }
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }
    /// Whether a stop signal has begun the shutdown.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
    /// Marks the process broken (the first reason stays): both probes
    /// fail from now on.
    pub fn set_failed(&self, why: String) {
        let _ = self.failed.set(why);
    }
    /// Why the process is broken, if it is.
    pub fn failure(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }
    pub fn ready(&self) -> bool {
        self.failed.get().is_none()
            && self.capture_running.load(Ordering::Acquire)
            && self.models_loaded.load(Ordering::Acquire)
            && !self.stopping.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

async fn metrics_page(State(s): State<Shared>) -> impl IntoResponse {
    s.metrics.ready.set(i64::from(s.health.ready()));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn healthz(State(s): State<Shared>) -> impl IntoResponse {
    match s.health.failure() {
        None => (StatusCode::OK, "ok\n".to_string()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("failed: {why}\n")),
    }
}

async fn readyz(State(s): State<Shared>) -> impl IntoResponse {
    if let Some(why) = s.health.failure() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        );
    }
    match (s.health.ready(), s.health.notes()) {
        (true, None) => (StatusCode::OK, "ready\n".to_string()),
        (true, Some(notes)) => (StatusCode::OK, format!("ready; {notes}\n")),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_string()),
    }
}

/// Bounds on the endpoint's clients (`metrics.max_connections`,
/// `metrics.header_read_timeout_secs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections served at once. At the cap, the connection that has
    /// waited longest for its request is closed for the new one; when
    /// every connection is busy with a request, the new one is closed.
    pub max_connections: usize,
    /// How long a connection may take to deliver a request's header,
    /// counted from the accept and from the end of the previous response
    /// (so an idle keep-alive connection is closed after it, too).
    pub header_read_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(5),
        }
    }
}

/// The server's own metrics.
struct ConnMetrics {
    open: IntGauge,
    /// By reason: `header_timeout`, `evicted`, `over_capacity`,
    /// `accept_error`.
    closed: IntCounterVec,
}

impl ConnMetrics {
    fn register(r: &prometheus::Registry) -> ConnMetrics {
        let closed = super::counter_vec(
            r,
            "osprey_http_connections_closed_total",
            "Connections to /metrics, /healthz and /readyz the server closed or refused: header_timeout (no complete request header in time), evicted (made room for a new connection at the cap), over_capacity (every slot busy), accept_error.",
            &["reason"],
        );
        for reason in ["header_timeout", "evicted", "over_capacity", "accept_error"] {
            closed.with_label_values(&[reason]);
        }
        ConnMetrics {
            open: super::gauge(
                r,
                "osprey_http_connections_open",
                "Connections to /metrics, /healthz and /readyz open now.",
            ),
            closed,
        }
    }
}

/// One served connection, as the accept loop sees it.
struct Slot {
    /// A request is being answered (never evicted or timed out then).
    busy: AtomicBool,
    /// Milliseconds since the server's epoch at which the connection began
    /// waiting for its next request header.
    waiting_since_ms: AtomicU64,
    /// Tells the connection's task to close it.
    close: Notify,
}

/// Milliseconds since `epoch` (saturating).
fn ms_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Serves the endpoints on an already bound listener (bound before start-up
/// goes further, so a port in use fails the start) until `shutdown`
/// resolves; then closes idle connections, lets requests in flight finish
/// (within the header timeout) and returns.
pub async fn serve(
    listener: std::net::TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let counters = Arc::new(ConnMetrics::register(&metrics.registry));
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Shared { metrics, health });
    let max = limits.max_connections.max(1);
    let epoch = Instant::now();
    let slots: Arc<Mutex<HashMap<u64, Arc<Slot>>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut next_id = 0u64;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        // Reap finished connection tasks (their results carry nothing).
        while tasks.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors, or the peer gave up before the
                // accept: wait a little rather than spin.
                counters.closed.with_label_values(&["accept_error"]).inc();
                tracing::debug!(error = %e, "metrics server: accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let slot = {
            let Ok(mut table) = slots.lock() else {
                break;
            };
            if table.len() >= max {
                let victim = table
                    .iter()
                    .filter(|(_, s)| !s.busy.load(Ordering::Acquire))
                    .min_by_key(|(_, s)| s.waiting_since_ms.load(Ordering::Acquire))
                    .map(|(id, _)| *id);
                match victim.and_then(|id| table.remove(&id)) {
                    Some(v) => {
                        v.close.notify_one();
                        counters.closed.with_label_values(&["evicted"]).inc();
                    }
                    None => {
                        counters.closed.with_label_values(&["over_capacity"]).inc();
                        continue;
                    }
                }
            }
            let slot = Arc::new(Slot {
                busy: AtomicBool::new(false),
                waiting_since_ms: AtomicU64::new(ms_since(epoch)),
                close: Notify::new(),
            });
            next_id += 1;
            table.insert(next_id, slot.clone());
            counters.open.set(table.len() as i64);
            slot
        };
        tasks.spawn(serve_connection(
            stream,
            app.clone(),
            ConnCtx {
                id: next_id,
                slot,
                slots: slots.clone(),
                counters: counters.clone(),
                epoch,
                timeout: limits.header_read_timeout,
            },
            stop_rx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    counters.open.set(0);
    Ok(())
}

struct ConnCtx {
    id: u64,
    slot: Arc<Slot>,
    slots: Arc<Mutex<HashMap<u64, Arc<Slot>>>>,
    counters: Arc<ConnMetrics>,
    epoch: Instant,
    timeout: Duration,
}

impl Drop for ConnCtx {
    /// The slot is given back however the connection ended.
    fn drop(&mut self) {
        if let Ok(mut table) = self.slots.lock() {
            table.remove(&self.id);
            self.counters.open.set(table.len() as i64);
        }
    }
}

/// Serves one connection until it ends, is evicted, or sends no complete
/// request header within the timeout.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    app: Router,
    cx: ConnCtx,
    mut stop: watch::Receiver<bool>,
) {
    use tower::ServiceExt;

    let slot = cx.slot.clone();
    let epoch = cx.epoch;
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let slot = slot.clone();
        let app = app.clone();
        async move {
            slot.busy.store(true, Ordering::Release);
            let response = app.oneshot(req.map(axum::body::Body::new)).await;
            // Writing the response out is waited for like a header: a
            // client that does not read is a slow client too.
            slot.waiting_since_ms
                .store(ms_since(epoch), Ordering::Release);
            slot.busy.store(false, Ordering::Release);
            response
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        let since = cx.slot.waiting_since_ms.load(Ordering::Acquire);
        let deadline = epoch + Duration::from_millis(since) + cx.timeout;
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "metrics server: connection error");
                }
                return;
            }
            () = cx.slot.close.notified() => return,
            () = tokio::time::sleep_until(deadline) => {
                let waited = cx.slot.waiting_since_ms.load(Ordering::Acquire);
                if !cx.slot.busy.load(Ordering::Acquire) && waited == since {
                    cx.counters.closed.with_label_values(&["header_timeout"]).inc();
                    return;
                }
                // Busy, or a request came and went: wait again.
            }
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    // Idle connections close now, a request in flight
                    // is answered first.
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
