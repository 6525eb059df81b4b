//! The delivery task: spool → platform, in order, in batches, with retries;
//! and the heartbeat.
//!
//! Response handling (docs/platform-api.yaml says the same to the platform):
//! - 2xx, and 409 (the platform already has the batch): acknowledged, the
//!   cursor moves past the batch.
//! - 401/403: the token is refused. Logged once per token, the file is read
//!   again, and the batch is retried every `backoff_max_secs`: events stay
//!   spooled until someone fixes the Secret.
//! - 429: retried after `Retry-After` (seconds) or the backoff.
//! - 400/422: the platform says the payload is malformed. Retrying the
//!   same bytes can only fail again and would block every later event,
//!   while dropping the batch would lose every good event in it with the
//!   bad one. So the batch is split in halves, sent in order, and a
//!   refused half is split again: the good events are delivered (each
//!   once: a delivered part is acknowledged and never sent again, under
//!   its unchanged event keys) and an event refused on its own is
//!   dropped, counted in `osprey_platform_events_rejected_total{reason}`
//!   and logged with its key. One bad event costs about 2·log2(batch)
//!   requests and never blocks the queue.
//! - 413: the same split (and later batches are read at half the size);
//!   a single event still too large is dropped as for 400.
//! - anything else (404 included: a misrouted gateway heals), connection
//!   errors and timeouts: retried with exponential backoff and full jitter.
//!
//! Spool reads happen on the runtime thread: a batch is at most
//! `batch_events` lines from a file the page cache just saw written.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use tokio::time::{interval, sleep_until, Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use super::event::{Heartbeat, HeartbeatHealth, SensorInfo};
use super::spool::{Batch, ReadPos};
use super::token::Token;
use super::{PlatformConfig, PlatformError, Shared};
use crate::respond::backoff::Backoff;
use crate::respond::Action;

/// Longest `Retry-After` honoured, so a confused platform cannot park
/// the sensor for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Delivers spooled events until shutdown. Spawn `run` on the runtime.
pub struct ReporterTask {
    inner: Option<Deliverer>,
}

struct Deliverer {
    shared: Arc<Shared>,
    client: reqwest::Client,
    events_url: String,
    heartbeat_url: String,
    sensor: SensorInfo,
    token: Token,
    backoff: Backoff,
    auth_retry: Duration,
    batch_events: usize,
    batch_limit: usize,
    batch_max_wait: Duration,
    heartbeat_interval: Duration,
    sync_interval: Duration,
    shutdown_delivery: Duration,
    /// What is being delivered, oldest first: the batch read from the
    /// spool, or the parts a rejection split it into. The front is sent
    /// and removed only once answered, so a delivery abandoned at
    /// shutdown leaves it in place (and in the spool).
    inflight: VecDeque<Batch>,
    pos: Option<ReadPos>,
    reachable: bool,
}

enum Outcome {
    Ok,
    Auth(u16),
    RetryAfter(Option<Duration>),
    TooLarge,
    Rejected(u16, String),
    Retry(String),
}

impl ReporterTask {
    pub(super) fn disabled() -> Self {
        ReporterTask { inner: None }
    }

    pub(super) fn new(
        cfg: &PlatformConfig,
        url: &str,
        node: &str,
        shared: Arc<Shared>,
    ) -> Result<Self, PlatformError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.timeout_secs))
            .user_agent(concat!("osprey/", env!("CARGO_PKG_VERSION")))
            // A redirect is not an acknowledgement: followed, a 302 to a
            // login page ends in a 200 for events nobody received.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let base = url.trim_end_matches('/');
        let sensor = SensorInfo {
            node: node.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            spool_id: shared.spool.spool_id().to_owned(),
        };
        Ok(ReporterTask {
            inner: Some(Deliverer {
                shared,
                client,
                events_url: format!("{base}{}", cfg.events_path),
                heartbeat_url: format!("{base}{}", cfg.heartbeat_path),
                sensor,
                token: Token::new(cfg.token_file.clone()),
                backoff: Backoff::new(
                    Duration::from_millis(cfg.backoff_initial_ms),
                    Duration::from_secs(cfg.backoff_max_secs),
                ),
                auth_retry: Duration::from_secs(cfg.backoff_max_secs),
                batch_events: cfg.batch_events,
                batch_limit: cfg.batch_events,
                batch_max_wait: Duration::from_millis(cfg.batch_max_wait_ms),
                heartbeat_interval: Duration::from_secs(cfg.heartbeat_interval_secs),
                sync_interval: Duration::from_millis(cfg.sync_interval_ms),
                shutdown_delivery: Duration::from_millis(cfg.shutdown_delivery_ms),
                inflight: VecDeque::new(),
                pos: None,
                reachable: true,
            }),
        })
    }

    /// Delivers until `shutdown` resolves, then makes one last attempt:
    /// everything spooled by then is sent at once (no batch wait, no
    /// backoff) until the spool is empty, a batch is not acknowledged, or
    /// `platform.shutdown_delivery_ms` has passed; whatever is not
    /// delivered stays spooled for the next start. Then fsyncs the spool.
    ///
    /// The daemon resolves `shutdown` once the responder has drained its
    /// queue into the spool, so the last attempt covers the actions and
    /// alerts of the final flush.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Some(mut d) = self.inner else {
            return;
        };
        let mut shutdown = pin!(shutdown);
        let mut heartbeat = interval(d.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut sync = interval(d.sync_interval);
        sync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut retry_at: Option<Instant> = None;
        let mut waiting_since: Option<Instant> = None;
        loop {
            let due = d.due(&mut retry_at, &mut waiting_since);
            let wait = async {
                match due {
                    Some(at) => sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                _ = heartbeat.tick() => {
                    tokio::select! {
                        () = d.heartbeat() => {}
                        () = &mut shutdown => break,
                    }
                }
                _ = sync.tick() => d.shared.spool.sync(),
                () = wait => {
                    waiting_since = None;
                    tokio::select! {
                        r = d.deliver_once() => retry_at = r,
                        () = &mut shutdown => break,
                    }
                }
                () = d.shared.spool.notified() => {}
            }
        }
        d.last_attempt().await;
        d.shared.spool.sync();
        debug!("platform reporter stopped");
    }
}

impl Deliverer {
    /// When the next delivery attempt is due (`None`: nothing to send).
    fn due(
        &self,
        retry_at: &mut Option<Instant>,
        waiting_since: &mut Option<Instant>,
    ) -> Option<Instant> {
        let pending = self.shared.spool.pending();
        if self.inflight.is_empty() && pending == 0 {
            *waiting_since = None;
            return None;
        }
        if let Some(at) = *retry_at {
            return Some(at);
        }
        let now = Instant::now();
        if !self.inflight.is_empty() || pending >= self.batch_limit as u64 {
            return Some(now);
        }
        Some(*waiting_since.get_or_insert(now) + self.batch_max_wait)
    }

    /// The shutdown's delivery: batches back to back while each is
    /// acknowledged (or split), bounded by `shutdown_delivery`. A request
    /// still in flight at the bound is abandoned; its events stay spooled.
    async fn last_attempt(&mut self) {
        let pending = self.shared.spool.pending();
        if pending == 0 && self.inflight.is_empty() {
            return;
        }
        let deadline = Instant::now() + self.shutdown_delivery;
        let drained = tokio::time::timeout_at(deadline, async {
            while !self.inflight.is_empty() || self.shared.spool.pending() > 0 {
                if self.deliver_once().await.is_some() {
                    // Not acknowledged: no retry at shutdown.
                    return false;
                }
            }
            true
        })
        .await
        .unwrap_or(false);
        let left = self.shared.spool.pending();
        if drained {
            info!(
                events = pending,
                "platform: spooled events delivered before exit"
            );
        } else {
            info!(
                delivered = pending.saturating_sub(left),
                left,
                "platform: last delivery attempt at shutdown ended; the rest stays spooled for the next start"
            );
        }
    }

    /// One POST of one batch (or of a part of a split one); returns when
    /// to try again, if it must (`None`: go on at once with what is next).
    async fn deliver_once(&mut self) -> Option<Instant> {
        if self.inflight.is_empty() {
            let batch = match self
                .shared
                .spool
                .read_batch(self.batch_limit, &mut self.pos)
            {
                Ok(b) => b,
                Err(e) => {
                    warn!(error = %e, "platform spool unreadable; retrying");
                    self.pos = None;
                    return Some(Instant::now() + self.backoff.next_delay());
                }
            };
            if batch.end == batch.first {
                // Nothing readable although events are pending: do not spin.
                return Some(Instant::now() + self.backoff.next_delay());
            }
            if batch.lines.is_empty() {
                self.ack(batch.end);
                return None;
            }
            self.inflight.push_back(batch);
        }
        let request = match self.inflight.front().map(|b| self.request(b)) {
            Some(Ok(r)) => r,
            Some(Err(e)) => return Some(Instant::now() + self.retry(e)),
            None => return None,
        };
        let outcome = self.post(request).await;
        let batch = self.inflight.pop_front()?;
        let m = &self.shared.metrics;
        match outcome {
            Outcome::Ok => {
                m.deliveries.with_label_values(&["ok"]).inc();
                self.token.accepted();
                m.token_rejected.set(0);
                self.backoff.reset();
                if !self.reachable {
                    self.reachable = true;
                    info!("platform reachable again; delivering spooled events");
                }
                if self.inflight.is_empty() {
                    self.batch_limit = self.batch_events.min(self.batch_limit.saturating_mul(2));
                }
                self.ack(batch.end);
                None
            }
            Outcome::TooLarge | Outcome::Rejected(..) => {
                m.deliveries.with_label_values(&["rejected"]).inc();
                self.backoff.reset();
                let (status, answer) = match outcome {
                    Outcome::Rejected(s, a) => (s, a),
                    _ => (413, String::new()),
                };
                if status == 413 {
                    self.batch_limit = (batch.lines.len() / 2).max(1);
                }
                self.refused(batch, status, &answer);
                None
            }
            Outcome::Auth(status) => {
                m.deliveries.with_label_values(&["retry"]).inc();
                self.token.rejected(status);
                m.token_rejected.set(1);
                self.inflight.push_front(batch);
                Some(Instant::now() + self.auth_retry)
            }
            Outcome::RetryAfter(after) => {
                m.deliveries.with_label_values(&["retry"]).inc();
                self.inflight.push_front(batch);
                let wait = after.unwrap_or_else(|| self.backoff.next_delay());
                debug!(?wait, "platform asks to slow down (429)");
                Some(Instant::now() + wait)
            }
            Outcome::Retry(reason) => {
                m.deliveries.with_label_values(&["retry"]).inc();
                self.inflight.push_front(batch);
                Some(Instant::now() + self.retry(reason))
            }
        }
    }

    /// The wait before a batch that failed to go through is sent again.
    fn retry(&mut self, reason: String) -> Duration {
        if self.reachable {
            self.reachable = false;
            warn!(reason = %reason, url = %self.events_url,
                "platform unreachable; events stay spooled and are retried");
        } else {
            debug!(reason = %reason, "platform still unreachable");
        }
        self.backoff.next_delay()
    }

    /// A batch the platform refused as malformed (400/422) or too large
    /// (413): its halves go first in line, in order; a single event is
    /// dropped, counted and logged by its key, and the cursor passes it.
    fn refused(&mut self, batch: Batch, status: u16, answer: &str) {
        let events = batch.lines.len();
        let first = batch.first;
        let whole = !batch.part;
        match batch.split() {
            Ok((left, right)) => {
                if whole {
                    warn!(status, first, events, answer = %answer,
                        "platform refused an events batch; splitting it to isolate the bad events");
                } else {
                    debug!(
                        status,
                        first, events, "platform refused a part of a batch; splitting it"
                    );
                }
                self.inflight.push_front(right);
                self.inflight.push_front(left);
            }
            Err(batch) => {
                let reason = match status {
                    413 => "too_large",
                    422 => "unprocessable",
                    _ => "malformed",
                };
                self.shared
                    .metrics
                    .events_rejected
                    .with_label_values(&[reason])
                    .inc();
                self.shared.metrics.dropped.add(
                    crate::metrics::Stage::Report,
                    &format!("platform_rejected_{reason}"),
                    1,
                );
                let key = batch
                    .lines
                    .first()
                    .map_or_else(String::new, |l| event_key(l));
                warn!(key = %key, status, reason, seq = first, answer = %answer,
                    "platform refused an event; dropped it so later events are not held up");
                self.ack(batch.end);
            }
        }
    }

    fn ack(&mut self, end: u64) {
        if let Err(e) = self.shared.spool.ack(end) {
            warn!(error = %e,
                "platform spool cursor not written; acknowledged events may be resent after a restart");
        }
    }

    /// The body and the batch's idempotency key (`spool_id:first-end`:
    /// a part of a split batch has a range, so a key, of its own).
    fn request(&self, batch: &Batch) -> Result<(String, String), String> {
        let sensor = serde_json::to_string(&self.sensor).map_err(|e| e.to_string())?;
        let size = batch.lines.iter().map(|l| l.len() + 1).sum::<usize>();
        let mut body = String::with_capacity(size + sensor.len() + 32);
        body.push_str("{\"sensor\":");
        body.push_str(&sensor);
        body.push_str(",\"events\":[");
        for (i, line) in batch.lines.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(line);
        }
        body.push_str("]}");
        let key = format!("{}:{}-{}", self.sensor.spool_id, batch.first, batch.end);
        Ok((body, key))
    }

    async fn post(&mut self, (body, key): (String, String)) -> Outcome {
        let mut req = self
            .client
            .post(&self.events_url)
            .header(CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", key)
            .body(body);
        if let Some(token) = self.token.current() {
            req = req.bearer_auth(token);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Outcome::Retry(e.to_string()),
        };
        let status = resp.status();
        match status.as_u16() {
            _ if status.is_success() => Outcome::Ok,
            409 => Outcome::Ok,
            401 | 403 => Outcome::Auth(status.as_u16()),
            429 => Outcome::RetryAfter(retry_after(&resp)),
            413 => Outcome::TooLarge,
            400 | 422 => {
                let mut answer = resp.text().await.unwrap_or_default();
                truncate(&mut answer, 512);
                Outcome::Rejected(status.as_u16(), answer)
            }
            300..=399 => {
                let to = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                Outcome::Retry(format!(
                    "HTTP {status}: a redirect to {to} is not followed (not an \
                     acknowledgement; check platform.url)"
                ))
            }
            _ => Outcome::Retry(format!("HTTP {status}")),
        }
    }

    async fn heartbeat(&mut self) {
        let (spool_events, spool_bytes) = self.shared.spool.stats();
        let (models, ready) = {
            let d = self
                .shared
                .daemon
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            (d.models.clone(), d.ready)
        };
        let hb = Heartbeat {
            node: self.sensor.node.clone(),
            version: self.sensor.version.clone(),
            spool_id: self.sensor.spool_id.clone(),
            ts: Action::now_ts(),
            models,
            health: HeartbeatHealth {
                ready,
                spool_events,
                spool_bytes,
                spool_dropped_events: self.shared.metrics.spool_dropped.get(),
            },
        };
        let mut req = self.client.post(&self.heartbeat_url).json(&hb);
        if let Some(token) = self.token.current() {
            req = req.bearer_auth(token);
        }
        let result = match req.send().await {
            Ok(r) if r.status().is_success() => {
                self.token.accepted();
                self.shared.metrics.token_rejected.set(0);
                "ok"
            }
            Ok(r)
                if r.status() == StatusCode::UNAUTHORIZED
                    || r.status() == StatusCode::FORBIDDEN =>
            {
                self.token.rejected(r.status().as_u16());
                self.shared.metrics.token_rejected.set(1);
                "failed"
            }
            Ok(r) => {
                debug!(status = %r.status(), "platform heartbeat not accepted");
                "failed"
            }
            Err(e) => {
                debug!(error = %e, "platform heartbeat failed");
                "failed"
            }
        };
        self.shared
            .metrics
            .heartbeats
            .with_label_values(&[result])
            .inc();
    }
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let secs: u64 = resp
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// The `key` of a spooled event line, for logs ("-" if it has none).
fn event_key(line: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Keyed {
        key: Option<String>,
    }
    serde_json::from_str::<Keyed>(line)
        .ok()
        .and_then(|k| k.key)
        .unwrap_or_else(|| "-".to_owned())
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
}
