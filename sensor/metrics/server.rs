//! `/metrics`, `/healthz` and `/readyz` over HTTP/1.1 (axum on the
//! daemon's tokio runtime).
//!
//! `/healthz` answers as long as the process serves requests (liveness:
//! restart only a wedged process); `/readyz` only once capture runs and the
//! models are loaded, and again not while shutting down, so a rollout
//! waits for a sensor that actually sees traffic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

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
    pub fn ready(&self) -> bool {
        self.capture_running.load(Ordering::Acquire)
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

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

async fn readyz(State(s): State<Shared>) -> impl IntoResponse {
    match (s.health.ready(), s.health.notes()) {
        (true, None) => (StatusCode::OK, "ready\n".to_string()),
        (true, Some(notes)) => (StatusCode::OK, format!("ready; {notes}\n")),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_string()),
    }
}

/// Serves the endpoints on an already bound listener (bound before start-up
/// goes further, so a port in use fails the start) until `shutdown`
/// resolves.
pub async fn serve(
    listener: std::net::TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Shared { metrics, health });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
