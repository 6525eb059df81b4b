//! Reports alerts and actions to the management platform, and a heartbeat.
//!
//! Every event is appended to an on-disk spool first (see `spool`), then
//! delivered in order, in batches, by one tokio task; the scorer only
//! ever pays for a JSON serialisation and a `write(2)`. The platform side
//! of the protocol is specified in docs/platform-api.yaml.

mod config;
mod deliver;
mod event;
mod metrics;
mod spool;
mod token;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::Registry;

pub use config::PlatformConfig;
pub use deliver::ReporterTask;
pub use event::{
    AlertBody, Event, EventBody, Heartbeat, HeartbeatHealth, ModelRef, SensorInfo, VerdictSummary,
};

use crate::respond::{Action, ActionKind};
use metrics::PlatformMetrics;
use spool::Spool;

/// Why the reporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("platform.{key}: {reason}")]
    Config { key: &'static str, reason: String },
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error("platform HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// What the heartbeat reports that only the daemon knows.
#[derive(Default)]
struct DaemonState {
    models: Vec<ModelRef>,
    ready: bool,
}

struct Shared {
    spool: Spool,
    metrics: PlatformMetrics,
    daemon: Mutex<DaemonState>,
    alerts: Mutex<Budget>,
    actions: Mutex<Budget>,
}

/// A token bucket for alert and action events: `rate` a second, up to
/// `rate` saved.
struct Budget {
    rate: f64,
    tokens: f64,
    last: std::time::Instant,
}

impl Budget {
    fn new(rate: u32) -> Budget {
        Budget {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: std::time::Instant::now(),
        }
    }

    fn take(&mut self, now: std::time::Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The side the daemon submits through: cheap to clone, never blocks on
/// the network. A handle of a disabled reporter (no URL) drops events.
#[derive(Clone)]
pub struct ReporterHandle {
    shared: Option<Arc<Shared>>,
}

/// Starts the reporter.
pub struct Reporter;

impl Reporter {
    /// Opens (or recovers) the spool and builds the delivery task; the
    /// caller spawns `task.run(shutdown)` on its runtime. With no URL
    /// configured, nothing is opened: the handle drops events and the task
    /// returns at once.
    pub fn open(
        cfg: &PlatformConfig,
        node: &str,
        registry: &Registry,
    ) -> Result<(ReporterHandle, ReporterTask), PlatformError> {
        cfg.validate()?;
        let metrics = PlatformMetrics::new(registry);
        let Some(url) = cfg.url.as_deref() else {
            return Ok((ReporterHandle { shared: None }, ReporterTask::disabled()));
        };
        let spool = Spool::open(
            &cfg.spool_dir,
            cfg.segment_bytes,
            cfg.spool_max_bytes,
            metrics.clone(),
        )?;
        let shared = Arc::new(Shared {
            spool,
            metrics,
            daemon: Mutex::new(DaemonState::default()),
            alerts: Mutex::new(Budget::new(cfg.max_alerts_per_sec)),
            actions: Mutex::new(Budget::new(cfg.max_actions_per_sec)),
        });
        let task = ReporterTask::new(cfg, url, node, Arc::clone(&shared))?;
        Ok((
            ReporterHandle {
                shared: Some(shared),
            },
            task,
        ))
    }
}

impl ReporterHandle {
    /// A handle that drops every event (no platform configured).
    pub fn disabled() -> ReporterHandle {
        ReporterHandle { shared: None }
    }

    /// Spools the event for delivery. Takes a mutex held only for a file
    /// append; a spool that cannot be written drops the event (counted in
    /// `osprey_platform_spool_dropped_events_total`, logged once).
    pub fn submit(&self, event: &Event) {
        let Some(s) = &self.shared else {
            return;
        };
        s.metrics.events.with_label_values(&[event.kind()]).inc();
        match serde_json::to_vec(event) {
            Ok(mut line) => {
                line.push(b'\n');
                s.spool.append(&line);
            }
            Err(e) => {
                s.metrics.spool_dropped.inc();
                s.metrics
                    .dropped
                    .add(crate::metrics::Stage::Report, "event_not_serialisable", 1);
                tracing::warn!(key = %event.key, error = %e, "platform event not serialisable; dropped");
            }
        }
    }

    /// Whether an alert may be sent now (`platform.max_alerts_per_sec`);
    /// a refusal is counted. Asked before the alert is built, so a flood
    /// costs the scorer nothing beyond this.
    pub fn alert_allowed(&self) -> bool {
        let Some(s) = &self.shared else {
            return false;
        };
        let ok = s
            .alerts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(std::time::Instant::now());
        if !ok {
            s.metrics.alerts_suppressed.inc();
        }
        ok
    }

    /// Whether an action event may be sent now: actions that enforce (in
    /// dry run too) always, alert actions within
    /// `platform.max_actions_per_sec` (a refusal is counted). The
    /// breakers bound enforcing actions per minute already; alert actions
    /// are what a flood's many sources become once a breaker opens.
    pub fn action_allowed(&self, action: &Action) -> bool {
        let Some(s) = &self.shared else {
            return false;
        };
        if action.kind != ActionKind::Alert {
            return true;
        }
        let ok = s
            .actions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(std::time::Instant::now());
        if !ok {
            s.metrics.actions_suppressed.inc();
        }
        ok
    }

    /// Whether reporting is on (a URL is configured).
    pub fn enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// The models the heartbeat lists (after each load or reload).
    pub fn set_models(&self, models: Vec<ModelRef>) {
        if let Some(s) = &self.shared {
            s.daemon
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .models = models;
        }
    }

    /// Readiness as the heartbeat reports it (what /readyz answers).
    pub fn set_ready(&self, ready: bool) {
        if let Some(s) = &self.shared {
            s.daemon
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .ready = ready;
        }
    }

    /// Events spooled and not yet acknowledged (0 when disabled).
    pub fn pending(&self) -> u64 {
        self.shared.as_ref().map_or(0, |s| s.spool.pending())
    }
}

/// The responder reports its actions and lifts through this handle.
impl crate::respond::dispatch::ActionReport for ReporterHandle {
    fn action(&self, node: &str, a: &Action) {
        if self.action_allowed(a) {
            self.submit(&Event::action(node, a));
        }
    }

    fn lift(&self, node: &str, ts: f64, body: crate::respond::control::LiftBody) {
        if self.enabled() {
            self.submit(&Event::lift(node, ts, body));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Budget;
    use std::time::{Duration, Instant};

    #[test]
    fn the_alert_budget_allows_its_rate_and_refills() {
        let mut b = Budget::new(10);
        let t0 = b.last;
        let sent = (0..100).filter(|_| b.take(t0)).count();
        assert_eq!(sent, 10, "the burst is one second's worth");
        assert!(!b.take(t0));
        // Half a second later, five more; never more than a second's worth.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..100).filter(|_| b.take(t1)).count(), 5);
        let t2 = t1 + Duration::from_secs(3600);
        assert_eq!((0..100).filter(|_| b.take(t2)).count(), 10);
        // A clock that goes backwards adds nothing.
        assert!(!b.take(
            Instant::now()
                .checked_sub(Duration::from_secs(1))
                .unwrap_or(t0)
        ));
    }
}
