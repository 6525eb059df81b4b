//! The live daemon's scoring stage: records in, conn.log and verdicts out.
//!
//! Final records go to conn.log as they arrive (conn.log stays Zeek-exact:
//! interim snapshots never reach it). Every record, final or interim, is
//! featurized against the host context seen so far and waits for its
//! batch, which is scored when it holds `batch_rows` records or its oldest
//! record has waited `max_wait`: large batches when traffic is heavy,
//! bounded latency when it is light.

use std::io;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};

use crate::conn::ConnRecord;
use crate::features::{scale_rows, to_f32, Flow, LiveConfig, LiveFeaturizer};
use crate::metrics::Metrics;
use crate::model::{Model, Verdict};
use crate::pipeline::RecordBatch;
use crate::respond::admit::Proposal;
use crate::respond::rules::{ModelFacts, RuleSet, Scored};
use crate::respond::safety::ProvenSources;
use crate::respond::Evidence;

/// Where the scorer writes.
pub trait LiveOutputs {
    /// A final record, for conn.log.
    fn conn(&mut self, r: &ConnRecord) -> io::Result<()>;
    /// A scored record; returns whether it was written as an alert.
    fn alert(&mut self, r: &ConnRecord, models: &[Model], v: &[Verdict]) -> io::Result<bool>;
    /// Called at least once a second: flush buffers, rotate files.
    fn tick(&mut self) -> io::Result<()>;
    /// Closes the logs (footers) at shutdown.
    fn finish(&mut self) -> io::Result<()>;
}

/// A set of models with their streaming featurizers. Models with the same
/// column list share one featurizer: one copy of the host context, and
/// each flow featurized once.
pub struct ModelSet {
    models: Vec<Model>,
    /// What rules may name, per model.
    facts: Vec<ModelFacts>,
    featurizers: Vec<LiveFeaturizer>,
    /// `featurizers` index of each model.
    uses: Vec<usize>,
}

impl ModelSet {
    pub fn new(models: Vec<Model>, context: LiveConfig) -> ModelSet {
        let mut featurizers: Vec<LiveFeaturizer> = Vec::new();
        let mut uses = Vec::with_capacity(models.len());
        for m in &models {
            let features = &m.spec().features;
            match featurizers
                .iter()
                .position(|f| f.features() == features.as_slice())
            {
                Some(i) => uses.push(i),
                None => {
                    uses.push(featurizers.len());
                    featurizers.push(LiveFeaturizer::with_config(features, context.clone()));
                }
            }
        }
        ModelSet {
            facts: models.iter().map(ModelFacts::of).collect(),
            models,
            featurizers,
            uses,
        }
    }

    pub fn models(&self) -> &[Model] {
        &self.models
    }
}

/// Scoring settings.
#[derive(Clone, Debug)]
pub struct ScorerOptions {
    pub batch_rows: usize,
    pub max_wait: Duration,
    /// Record batches waiting in the channel beyond which new records are
    /// logged but not scored (counted as dropped at stage `score`): under
    /// a flood, scoring is what falls behind, and conn workers must not
    /// wait on it, or capture would start dropping packets instead.
    pub shed_backlog: usize,
    /// Records older than this (since they left their conn worker) when
    /// the scorer gets to them are logged but not scored: a verdict that
    /// late is worth less than keeping up, and it bounds verdict latency
    /// when records come faster than the models can score them.
    pub max_lag: Duration,
    /// Host-context memory bounds for the featurizers.
    pub context: LiveConfig,
}

/// The scorer's side of the response: rules run right where the verdicts
/// and feature rows are, so only decisions cross to the responder.
pub struct Responding {
    pub rules: RuleSet,
    /// To the responder; full means the responder is behind, and the
    /// proposal is dropped and counted rather than stalling scoring.
    pub tx: tokio::sync::mpsc::Sender<Proposal>,
    /// Fed with every record, scored or shed.
    pub proven: ProvenSources,
    /// (target, rule, proven) -> when last proposed (record time): a flood
    /// matches the same rule for the same source thousands of times a
    /// second, and the responder needs to hear it about once a second (to
    /// refresh a TTL, or to upgrade once the source is proven).
    pub recent: hashbrown::HashMap<(std::net::IpAddr, String, bool), f64>,
}

/// How often the same decision about the same target is proposed again.
const REPROPOSE_SECS: f64 = 1.0;

/// A reload: new models, and the rules checked against them.
pub struct Reload {
    pub models: Vec<Model>,
    pub rules: Option<RuleSet>,
}

struct Pending {
    record: ConnRecord,
    emitted: Instant,
}

/// Lowers the calling thread's priority by `nice` (Linux niceness is per
/// thread): under overload the scorer sheds records by design, while
/// capture and the conn workers lose packets for good, so when they share
/// a core the scorer must be the one that waits. Threads it spawns later
/// inherit the value.
pub fn lower_thread_priority(nice: i32) -> io::Result<()> {
    if nice == 0 {
        return Ok(());
    }
    let me = Some(rustix::thread::gettid());
    let now = rustix::process::getpriority_process(me)?;
    rustix::process::setpriority_process(me, (now + nice).min(19))?;
    Ok(())
}

/// Runs until the record channel closes (every conn worker has flushed):
/// scores what is pending, closes the logs and returns.
pub fn run_scorer(
    records: Receiver<RecordBatch>,
    reloads: Receiver<Reload>,
    mut set: ModelSet,
    mut respond: Option<Responding>,
    o: ScorerOptions,
    out: &mut dyn LiveOutputs,
    metrics: &Metrics,
) -> io::Result<()> {
    let batch_rows = o.batch_rows.max(1);
    let mut pending: Vec<Pending> = Vec::with_capacity(batch_rows);
    let mut last_tick = Instant::now();
    let tick_every = Duration::from_millis(500);
    metrics.models_loaded.set(set.models.len() as i64);
    loop {
        let deadline = pending
            .first()
            .map(|p| p.emitted + o.max_wait)
            .unwrap_or_else(|| Instant::now() + tick_every)
            .min(last_tick + tick_every);
        let timeout = deadline.saturating_duration_since(Instant::now());
        let mut closed = false;
        select! {
            recv(records) -> msg => match msg {
                Ok(batch) => {
                    let shed = records.len() > o.shed_backlog
                        || batch.emitted.elapsed() > o.max_lag;
                    if shed {
                        metrics
                            .pipeline_dropped_records
                            .with_label_values(&["score"])
                            .inc_by(batch.records.len() as u64);
                    }
                    for record in batch.records {
                        if let Some(r) = respond.as_mut() {
                            r.proven.observe(&record);
                        }
                        if !record.interim {
                            if let Err(e) = out.conn(&record) {
                                metrics.log_write_errors.with_label_values(&["conn"]).inc();
                                tracing::warn!(error = %e, "conn.log write failed");
                            }
                        }
                        if shed {
                            continue;
                        }
                        pending.push(Pending { record, emitted: batch.emitted });
                        if pending.len() >= batch_rows {
                            score(&mut set, &mut pending, respond.as_mut(), out, metrics);
                        }
                    }
                }
                Err(_) => closed = true,
            },
            recv(reloads) -> msg => {
                if let Ok(Reload { models, rules }) = msg {
                    // Records already waiting are scored by the models they
                    // were featurized for.
                    score(&mut set, &mut pending, respond.as_mut(), out, metrics);
                    set = ModelSet::new(models, o.context.clone());
                    if let (Some(r), Some(rules)) = (respond.as_mut(), rules) {
                        r.rules = rules;
                    }
                    metrics.models_loaded.set(set.models.len() as i64);
                    tracing::info!(models = set.models.len(), "models reloaded");
                }
            },
            default(timeout) => {},
        }
        if closed {
            score(&mut set, &mut pending, respond.as_mut(), out, metrics);
            return out.finish();
        }
        let now = Instant::now();
        if pending
            .first()
            .is_some_and(|p| now >= p.emitted + o.max_wait)
        {
            score(&mut set, &mut pending, respond.as_mut(), out, metrics);
        }
        if now.duration_since(last_tick) >= tick_every {
            last_tick = now;
            if let Err(e) = out.tick() {
                metrics.log_write_errors.with_label_values(&["tick"]).inc();
                tracing::warn!(error = %e, "log flush or rotation failed");
            }
        }
    }
}

/// Scores and empties `pending`. A model error is logged and counted; the
/// records are not lost from conn.log (already written).
fn score(
    set: &mut ModelSet,
    pending: &mut Vec<Pending>,
    respond: Option<&mut Responding>,
    out: &mut dyn LiveOutputs,
    m: &Metrics,
) {
    if pending.is_empty() || set.models.is_empty() {
        pending.clear();
        return;
    }
    let flows: Vec<Flow> = pending.iter().map(|p| Flow::from(&p.record)).collect();
    let n = flows.len();
    let mut verdicts: Vec<Vec<Verdict>> = (0..n)
        .map(|_| Vec::with_capacity(set.models.len()))
        .collect();
    let raws: Vec<Vec<f64>> = set
        .featurizers
        .iter_mut()
        .map(|f| f.push_and_featurize(&flows))
        .collect();
    for (model, &uses) in set.models.iter().zip(&set.uses) {
        let spec = model.spec();
        let name = spec.model.name.as_str();
        let rows = match &spec.scaler {
            Some(s) => {
                let mut raw = raws[uses].clone();
                scale_rows(s, spec.columns(), &mut raw);
                to_f32(&raw)
            }
            None => to_f32(&raws[uses]),
        };
        let started = Instant::now();
        match model.run(&rows, n) {
            Ok(vs) => {
                m.inference_seconds
                    .with_label_values(&[name])
                    .observe(started.elapsed().as_secs_f64());
                m.inference_batch_rows
                    .with_label_values(&[name])
                    .observe(n as f64);
                for (slot, v) in verdicts.iter_mut().zip(vs) {
                    m.verdicts.with_label_values(&[name, v.label_name()]).inc();
                    if v.flagged {
                        m.alerts.with_label_values(&[name]).inc();
                    }
                    slot.push(v);
                }
            }
            Err(e) => {
                tracing::error!(model = name, error = %e, "inference failed");
                return pending.clear();
            }
        }
    }
    let now = Instant::now();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    for (p, v) in pending.iter().zip(&verdicts) {
        m.record_to_verdict_seconds
            .observe(now.duration_since(p.emitted).as_secs_f64());
        if p.record.interim {
            let last = p.record.ts + p.record.duration.unwrap_or(0.0);
            m.last_packet_to_verdict_seconds
                .observe((wall - last).max(0.0));
        }
        if let Err(e) = out.alert(&p.record, &set.models, v) {
            m.log_write_errors.with_label_values(&["alerts"]).inc();
            tracing::warn!(error = %e, "alerts.log write failed");
        }
    }
    if let Some(r) = respond {
        propose(set, &raws, pending, &verdicts, r, m);
    }
    pending.clear();
}

/// Runs the rules over a scored batch and hands decisions to the responder.
fn propose(
    set: &ModelSet,
    raws: &[Vec<f64>],
    pending: &[Pending],
    verdicts: &[Vec<Verdict>],
    r: &mut Responding,
    m: &Metrics,
) {
    if r.rules.rules.is_empty() {
        return;
    }
    let widths: Vec<usize> = set.models.iter().map(|x| x.spec().columns()).collect();
    for (j, (p, v)) in pending.iter().zip(verdicts).enumerate() {
        let rows: Vec<&[f64]> = set
            .uses
            .iter()
            .zip(&widths)
            .map(|(&u, &w)| raws[u].get(j * w..(j + 1) * w).unwrap_or(&[]))
            .collect();
        let scored = Scored {
            record: &p.record,
            verdicts: v,
            models: &set.facts,
            rows: &rows,
        };
        let Some(decision) = r.rules.decide(&scored) else {
            continue;
        };
        let rec = &p.record;
        let verdict = &v[decision.model];
        let now_ts = rec.ts + rec.duration.unwrap_or(0.0);
        let proven = r.proven.is_proven(rec.orig_h, now_ts);
        let key = (decision.target, decision.rule.clone(), proven);
        if r.recent
            .get(&key)
            .is_some_and(|&t| now_ts - t < REPROPOSE_SECS && now_ts >= t)
        {
            continue;
        }
        if r.recent.len() >= 1 << 16 {
            r.recent.retain(|_, t| now_ts - *t < REPROPOSE_SECS);
            if r.recent.len() >= 1 << 16 {
                r.recent.clear();
            }
        }
        r.recent.insert(key, now_ts);
        let proposal = Proposal {
            source_proven: proven,
            evidence: Evidence {
                uid: rec.uid.to_string(),
                interim: rec.interim,
                model: set.facts[decision.model].name.clone(),
                label: verdict.label.clone(),
                score: verdict.score,
                probability: verdict.probability,
                orig_h: rec.orig_h,
                orig_p: rec.orig_p,
                resp_h: rec.resp_h,
                resp_p: rec.resp_p,
                proto: rec.proto.as_str().to_string(),
                service: (!rec.service.is_empty()).then(|| rec.service.join(",")),
                conn_state: rec.conn_state.as_str().to_string(),
                history: (!rec.history.as_str().is_empty())
                    .then(|| rec.history.as_str().to_string()),
            },
            decision,
        };
        if r.tx.try_send(proposal).is_err() {
            m.pipeline_dropped_records
                .with_label_values(&["respond"])
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lower_thread_priority;

    fn my_nice() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("getpriority")
    }

    #[test]
    fn only_the_calling_thread_gives_way() {
        let before = my_nice();
        let (lowered, sibling) = std::thread::scope(|s| {
            let lowered = s.spawn(|| {
                let start = my_nice();
                lower_thread_priority(5).expect("lowering needs no privilege");
                // A thread it starts afterwards inherits the niceness.
                let child = std::thread::spawn(my_nice).join().expect("child");
                (my_nice() - start, child - start)
            });
            let lowered = lowered.join().expect("thread");
            (lowered, s.spawn(my_nice).join().expect("sibling"))
        });
        assert_eq!(lowered, ((5).min(19 - before), (5).min(19 - before)));
        assert_eq!(sibling, before, "other threads keep their priority");
        assert_eq!(my_nice(), before);
        lower_thread_priority(0).expect("zero is a no-op");
        assert_eq!(my_nice(), before);
    }
}
