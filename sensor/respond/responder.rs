//! The responder task: proposals from the scorer in, actions out. Runs on
//! the daemon's I/O runtime so that a slow nft call or API request never
//! holds up scoring; enforcers that block (nft) run on tokio's blocking
//! pool.

use std::time::{Duration, Instant};

use super::action::wall_secs;

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};
use tokio::sync::mpsc;

use super::action::Action;
use super::admit::{describe, Admission, AdmitCounts, Outcome, Proposal};
use super::dispatch::{Dispatch, Enforced};
use crate::metrics::{counter, counter_vec, gauge, gauge_vec};

#[derive(Clone)]
pub struct RespondMetrics {
    pub actions: IntCounterVec,
    pub refused: IntCounterVec,
    pub breaker_open: IntGauge,
    pub breaker_trips: IntCounter,
    pub active: IntGaugeVec,
}

impl RespondMetrics {
    pub fn register(r: &Registry) -> RespondMetrics {
        RespondMetrics {
            actions: counter_vec(
                r,
                "osprey_respond_actions_total",
                "Actions decided, by kind and result (enforced, dry_run, alerted, duplicate, failed).",
                &["kind", "result"],
            ),
            refused: counter_vec(
                r,
                "osprey_respond_softened_total",
                "Actions a safety guard softened to alerts, by guard (allowlist, known_good, breaker).",
                &["guard"],
            ),
            breaker_open: gauge(
                r,
                "osprey_respond_breaker_open",
                "1 while a circuit breaker (of any kind of action) holds enforcement off.",
            ),
            breaker_trips: counter(
                r,
                "osprey_respond_breaker_trips_total",
                "Times the circuit breaker opened.",
            ),
            active: gauge_vec(
                r,
                "osprey_respond_active_actions",
                "Enforcement actions in force (not yet past their TTL), by kind.",
                &["kind"],
            ),
        }
    }

    fn add_counts(&self, before: &AdmitCounts, now: &AdmitCounts) {
        for (guard, b, n) in [
            ("allowlist", before.allowlisted, now.allowlisted),
            ("known_good", before.known_good, now.known_good),
            ("breaker", before.breaker_refused, now.breaker_refused),
        ] {
            if n > b {
                self.refused.with_label_values(&[guard]).inc_by(n - b);
            }
        }
        if now.breaker_trips > before.breaker_trips {
            self.breaker_trips
                .inc_by(now.breaker_trips - before.breaker_trips);
        }
    }
}

/// Owns the admission state and the enforcers.
pub struct Responder {
    pub admission: Admission,
    pub dispatch: Dispatch,
    pub metrics: RespondMetrics,
    /// How often the allowlist's discovered part is looked up again.
    pub rediscover: Duration,
    pub api_servers: Vec<std::net::IpAddr>,
}

impl Responder {
    /// Handles proposals until the scorer drops its sender.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Proposal>) {
        let mut last_discovery = Instant::now();
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                p = rx.recv() => match p {
                    Some(p) => self.handle(p).await,
                    None => break,
                },
                _ = housekeeping.tick() => {
                    let now = Instant::now();
                    self.admission.expire(wall_secs());
                    let active = self.admission.active_by_kind();
                    for kind in ["block", "rate_limit", "quarantine_pod", "hook"] {
                        self.metrics
                            .active
                            .with_label_values(&[kind])
                            .set(active.get(kind).copied().unwrap_or(0) as i64);
                    }
                    self.metrics.breaker_open.set(i64::from(self.admission.breaker_open()));
                    if now.duration_since(last_discovery) >= self.rediscover {
                        last_discovery = now;
                        self.admission.allowlist.discover(&self.api_servers);
                    }
                    // What discovery and SIGHUP published since the last tick.
                    self.admission.allowlist.refresh();
                    self.dispatch.housekeeping(&self.admission.allowlist).await;
                }
            }
        }
        self.dispatch.shutdown().await;
    }

    async fn handle(&mut self, p: Proposal) {
        let before = self.admission.counts;
        let was_open = self.admission.breaker_open();
        let (outcome, mut action) = self.admission.admit(p, wall_secs());
        self.metrics.add_counts(&before, &self.admission.counts);
        if self.admission.breaker_open() && !was_open {
            tracing::warn!(
                kinds = ?self.admission.open_breakers(),
                "circuit breaker open: too many enforcement actions of a kind in the last minute; alerting only for it until the rate drops"
            );
        }
        let kind = action.kind.name();
        if outcome == Outcome::Duplicate {
            self.metrics
                .actions
                .with_label_values(&[kind, "duplicate"])
                .inc();
            return;
        }
        self.dispatch.attribute(&mut action);
        log_action(&action);
        let result = if action.enforce {
            match self.dispatch.enforce(&action).await {
                Ok(Enforced::Done) => Some("enforced"),
                // The task counts its own result when the call ends.
                Ok(Enforced::Started) => None,
                Err(e) => {
                    tracing::error!(action = %describe(&action), error = %e, "enforcement failed");
                    Some("failed")
                }
            }
        } else if action.kind == super::ActionKind::Alert {
            Some("alerted")
        } else {
            Some("dry_run")
        };
        self.dispatch.report(&action);
        if let Some(result) = result {
            self.metrics
                .actions
                .with_label_values(&[kind, result])
                .inc();
        }
    }
}

/// The action log line: every action, enforced or not, with its TTL.
fn log_action(a: &Action) {
    let mode = if a.enforce {
        "enforce"
    } else if a.kind == super::ActionKind::Alert {
        "alert"
    } else {
        "dry-run"
    };
    tracing::info!(
        target: "osprey::action",
        id = %a.id,
        mode,
        kind = a.kind.name(),
        target = %a.target,
        ttl_secs = a.ttl.as_secs(),
        rule = %a.rule,
        model = a.evidence.model.as_deref().unwrap_or(""),
        label = a.evidence.label.as_deref().unwrap_or(""),
        uid = %a.evidence.uid,
        interim = a.evidence.interim,
        softened = a.softened.as_deref().unwrap_or(""),
        orig_pod = pod_of(a, |i| &i.orig).unwrap_or_default(),
        resp_pod = pod_of(a, |i| &i.resp).unwrap_or_default(),
        "action"
    );
}

/// `namespace/pod` of one endpoint of the action's connection, if a pod.
fn pod_of(
    a: &Action,
    side: impl Fn(&crate::identity::ConnIdentity) -> &crate::identity::Endpoint,
) -> Option<String> {
    a.evidence
        .identity
        .as_ref()
        .and_then(|i| side(i).pod_name())
}
