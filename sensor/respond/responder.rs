//! The responder task: proposals from the scorer in, actions out. Runs on
//! the daemon's I/O runtime so that a slow nft call or API request never
//! holds up scoring; enforcers that block (nft) run on tokio's blocking
//! pool.

use std::time::{Duration, Instant};

use super::action::wall_secs;

use prometheus::{IntCounter, IntCounterVec, IntGauge, Registry};
use tokio::sync::mpsc;

use super::action::Action;
use super::admit::{describe, Admission, AdmitCounts, Outcome, Proposal};
use super::control::{self, Answer, Decision, Request};
use super::dispatch::{Dispatch, DispatchError, Enforced};
use super::enforce::EnforceMetrics;
use crate::metrics::{counter, counter_vec, gauge};

#[derive(Clone)]
pub struct RespondMetrics {
    /// Results, retries, active and pending actions (shared with the
    /// enforcers, which count what ends after `handle` returns).
    pub enforce: EnforceMetrics,
    pub refused: IntCounterVec,
    pub breaker_open: IntGauge,
    pub breaker_trips: IntCounter,
    /// `osprey_respond_lifted_total{kind}`.
    pub lifted: IntCounterVec,
    pub dropped: crate::metrics::Dropped,
}

impl RespondMetrics {
    pub fn register(r: &Registry) -> RespondMetrics {
        RespondMetrics {
            dropped: crate::metrics::Dropped::on(r),
            enforce: EnforceMetrics::register(r),
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
            lifted: counter_vec(
                r,
                "osprey_respond_lifted_total",
                "Decisions an operator lifted (osprey decisions delete), by kind.",
                &["kind"],
            ),
        }
    }

    fn add_counts(&self, before: &AdmitCounts, now: &AdmitCounts) {
        for (guard, b, n) in [
            ("allowlist", before.allowlisted, now.allowlisted),
            ("known_good", before.known_good, now.known_good),
            ("breaker", before.breaker_refused, now.breaker_refused),
            ("lifted", before.lifted_refused, now.lifted_refused),
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
    /// Requests from `osprey decisions` (the control socket), if it runs.
    pub control: Option<mpsc::Receiver<control::Pending>>,
}

/// The next control request, or never when there is no socket.
async fn next_request(
    rx: &mut Option<mpsc::Receiver<control::Pending>>,
) -> Option<control::Pending> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
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
                c = next_request(&mut self.control) => match c {
                    Some(c) => {
                        let answer = self.answer(c.request).await;
                        let _ = c.reply.send(answer);
                    }
                    // The socket's server stopped: requests end, decisions go on.
                    None => self.control = None,
                },
                _ = housekeeping.tick() => {
                    crate::fault::point("responder");
                    let now = Instant::now();
                    self.admission.expire(wall_secs());
                    let active = self.admission.active_by_kind();
                    // With nftables, blocks and rate limits are active once
                    // the nft thread applied them (it sets those gauges).
                    let kinds: &[&str] = if self.dispatch.has_nft() {
                        &["quarantine_pod", "hook"]
                    } else {
                        &["block", "rate_limit", "quarantine_pod", "hook"]
                    };
                    for kind in kinds {
                        self.metrics
                            .enforce
                            .active
                            .with_label_values(&[kind])
                            .set(active.get(*kind).copied().unwrap_or(0) as i64);
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
            self.metrics.enforce.result(kind, "duplicate");
            return;
        }
        self.dispatch.attribute(&mut action);
        log_action(&action);
        let result = if action.enforce {
            match self.dispatch.enforce(&action).await {
                Ok(Enforced::Done) => Some("enforced"),
                // The enforcer counts its own result when the call ends.
                Ok(Enforced::Started) => None,
                Err(e @ DispatchError::QueueFull) => {
                    tracing::error!(action = %describe(&action), error = %e, "enforcement dropped");
                    self.metrics.dropped.add(
                        crate::metrics::Stage::Respond,
                        "enforcer_queue_full",
                        1,
                    );
                    Some("dropped")
                }
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
            self.metrics.enforce.result(kind, result);
        }
    }
}

impl Responder {
    /// Answers `osprey decisions list|delete`.
    async fn answer(&mut self, request: Request) -> Answer {
        match request {
            Request::List => match self.list().await {
                Ok(decisions) => Answer::Decisions { decisions },
                Err(error) => Answer::Error { error },
            },
            Request::Delete { target, reason } => self.lift(target, reason).await,
        }
    }

    /// The decisions in force, with the state their enforcer reports.
    async fn list(&mut self) -> Result<Vec<Decision>, String> {
        let now = wall_secs();
        let enforcing = self.admission.enforcing();
        let snap = match self.dispatch.nft().map_err(|e| e.to_string())? {
            Some(nft) => Some(nft.snapshot().await?),
            None => None,
        };
        let mut out = Vec::new();
        for (target, kind, rule, left) in self.admission.decisions(now) {
            let mut d = Decision {
                target,
                kind: kind.clone(),
                rule,
                state: "started".into(),
                expires_in_secs: left.ceil() as u64,
                attempts: None,
                error: None,
                detail: None,
            };
            if !enforcing {
                d.state = "dry_run".into();
            } else if let (Some(s), "block" | "rate_limit") = (&snap, kind.as_str()) {
                if let Some(h) = s
                    .held
                    .iter()
                    .find(|h| h.kind.name() == kind && h.target.contains(&target))
                {
                    d.state = "enforced".into();
                    d.target = h.target;
                    d.expires_in_secs = h.left.as_secs();
                } else if let Some(r) = s
                    .retrying
                    .iter()
                    .find(|r| r.action.kind.name() == kind && r.action.target == target)
                {
                    d.state = "retrying".into();
                    d.attempts = Some(r.attempts);
                    d.error = Some(r.error.clone());
                } else {
                    d.state = "pending".into();
                }
            }
            out.push(d);
        }
        // Elements no decision of this run explains: adopted from an
        // earlier run.
        if let Some(s) = &snap {
            for h in &s.held {
                let known = out
                    .iter()
                    .any(|d| d.target == h.target && d.kind == h.kind.name());
                if !known {
                    out.push(Decision {
                        target: h.target,
                        kind: h.kind.name().into(),
                        rule: "-".into(),
                        state: "enforced".into(),
                        expires_in_secs: h.left.as_secs(),
                        attempts: None,
                        error: None,
                        detail: None,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.target.cmp(&b.target).then(a.kind.cmp(&b.kind)));
        out.dedup_by(|a, b| a.target == b.target && a.kind == b.kind);
        Ok(out)
    }

    /// Lifts every decision on `target`, enforced or not, and tells the
    /// platform. A lifted decision stays lifted: nft forgets it (reconcile
    /// does not put it back) and admission wants evidence newer than the
    /// lift before deciding about the target again.
    async fn lift(&mut self, target: ipnet::IpNet, reason: Option<String>) -> Answer {
        let now = wall_secs();
        let mut lifted: Vec<Decision> = self
            .admission
            .lift(target, now)
            .into_iter()
            .map(|(t, kind, rule, left)| Decision {
                target: t,
                kind,
                rule,
                state: "lifted".into(),
                expires_in_secs: left.ceil() as u64,
                attempts: None,
                error: None,
                detail: None,
            })
            .collect();
        let mut failure = None;
        match self.dispatch.nft() {
            Ok(Some(nft)) => match nft.lift(target).await {
                Ok(held) => {
                    for h in held {
                        if let Some(d) = lifted
                            .iter_mut()
                            .find(|d| d.kind == h.kind.name() && h.target.contains(&d.target))
                        {
                            d.target = h.target;
                        } else {
                            lifted.push(Decision {
                                target: h.target,
                                kind: h.kind.name().into(),
                                rule: "-".into(),
                                state: "lifted".into(),
                                expires_in_secs: h.left.as_secs(),
                                attempts: None,
                                error: None,
                                detail: None,
                            });
                        }
                    }
                }
                Err(e) => failure = Some(format!("nftables: {e}")),
            },
            Ok(None) => {}
            Err(e) => failure = Some(e.to_string()),
        }
        match self.dispatch.lift_kube(target).await {
            Some(Ok(changed)) => {
                for c in changed {
                    let kind = if c.starts_with("quarantine") {
                        "quarantine_pod"
                    } else {
                        "block"
                    };
                    match lifted
                        .iter_mut()
                        .find(|d| d.kind == kind && d.detail.is_none() && kind == "quarantine_pod")
                    {
                        Some(d) => d.detail = Some(c),
                        None => lifted.push(Decision {
                            target,
                            kind: kind.into(),
                            rule: "-".into(),
                            state: "lifted".into(),
                            expires_in_secs: 0,
                            attempts: None,
                            error: None,
                            detail: Some(c),
                        }),
                    }
                }
            }
            Some(Err(e)) => {
                let e = format!("Kubernetes: {e}");
                failure = Some(failure.map_or(e.clone(), |f| format!("{f}; {e}")));
            }
            None => {}
        }
        for d in &lifted {
            self.metrics
                .lifted
                .with_label_values(&[d.kind.as_str()])
                .inc();
        }
        tracing::warn!(
            target: "osprey::action",
            %target,
            reason = reason.as_deref().unwrap_or(""),
            lifted = lifted.len(),
            "decisions lifted by an operator"
        );
        self.dispatch.report_lift(
            now,
            super::control::LiftBody {
                target,
                reason,
                lifted: lifted.clone(),
            },
        );
        match failure {
            None => Answer::Deleted { deleted: lifted },
            Some(e) => Answer::Error {
                error: format!(
                    "lifted {} decision(s), but an enforcer failed: {e}",
                    lifted.len()
                ),
            },
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
