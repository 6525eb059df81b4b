//! The scoring stage, as the daemon and `osprey replay` both run it:
//! records in, as they arrive; conn.log, verdicts and decisions out.
//!
//! Final records go to conn.log as they arrive (conn.log stays Zeek-exact:
//! interim snapshots never reach it). Every record, final or interim, is
//! featurized against the host context seen so far and waits for its
//! batch, which is scored when it holds `batch_rows` records or its oldest
//! record has waited `max_wait`: large batches when traffic is heavy,
//! bounded latency when it is light. Scored records, and records shed
//! under overload (unscored), then go to a [`RecordSink`]: alerts.log and
//! the decision stage in the daemon, the same plus actions.log in a
//! replay. A replay sheds nothing and waits for full batches only, so the
//! same capture always gives the same verdicts and decisions.

use std::io;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};

use crate::conn::ConnRecord;
use crate::features::{scale_rows, to_f32, Flow, LiveConfig, LiveFeaturizer};
use crate::metrics::Metrics;
use crate::model::{Model, Verdict};

/// Where the daemon's scorer writes logs.
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

/// Records from the conn workers, in the order a worker emitted them.
pub struct RecordBatch {
    pub records: Vec<ConnRecord>,
    pub emitted: Instant,
}

/// A record as scored: every model's verdict, and each model's unscaled
/// feature row (rules read host-context columns from it).
pub struct Scored<'a> {
    pub models: &'a [Model],
    pub verdicts: &'a [Verdict],
    pub rows: &'a [&'a [f64]],
}

/// What happens to records after the models.
pub trait RecordSink {
    /// What a reload brings besides models (the daemon: its rules).
    type Reload;
    /// A final record, for conn.log (before it is scored).
    fn conn(&mut self, r: &ConnRecord);
    /// A record after scoring; `None` when it was not scored (shed under
    /// overload, or no model is loaded).
    fn record(&mut self, r: &ConnRecord, scored: Option<Scored<'_>>);
    /// The models changed; `extra` came with them.
    fn reload(&mut self, models: &[Model], extra: Option<Self::Reload>);
    /// Called about twice a second: flush, rotate, export gauges.
    fn tick(&mut self);
    /// The stream ended: close the logs.
    fn finish(&mut self) -> io::Result<()>;
}

/// A set of models with their streaming featurizers. Models with the same
/// column list share one featurizer: one copy of the host context, and
/// each flow featurized once.
pub struct ModelSet {
    models: Vec<Model>,
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

impl ScorerOptions {
    /// A replay's: never shed, batches by size only (a day is "never";
    /// `Instant` arithmetic must not overflow).
    pub fn replay(batch_rows: usize, context: LiveConfig) -> ScorerOptions {
        let day = Duration::from_secs(86_400);
        ScorerOptions {
            batch_rows,
            max_wait: day,
            shed_backlog: usize::MAX,
            max_lag: day,
            context,
        }
    }
}

/// A reload: new models, and what the sink wants with them.
pub struct Reload<R> {
    pub models: Vec<Model>,
    pub extra: Option<R>,
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
pub fn run_scorer<S: RecordSink>(
    records: Receiver<RecordBatch>,
    reloads: Receiver<Reload<S::Reload>>,
    mut set: ModelSet,
    sink: &mut S,
    o: ScorerOptions,
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
                        if !record.interim {
                            sink.conn(&record);
                        }
                        if shed || set.models.is_empty() {
                            sink.record(&record, None);
                            continue;
                        }
                        pending.push(Pending { record, emitted: batch.emitted });
                        if pending.len() >= batch_rows {
                            score(&mut set, &mut pending, sink, metrics);
                        }
                    }
                }
                Err(_) => closed = true,
            },
            recv(reloads) -> msg => {
                if let Ok(Reload { models, extra }) = msg {
                    // Records already waiting are scored by the models they
                    // were featurized for.
                    score(&mut set, &mut pending, sink, metrics);
                    set = ModelSet::new(models, o.context.clone());
                    sink.reload(&set.models, extra);
                    metrics.models_loaded.set(set.models.len() as i64);
                    tracing::info!(models = set.models.len(), "models reloaded");
                }
            },
            default(timeout) => {},
        }
        if closed {
            score(&mut set, &mut pending, sink, metrics);
            return sink.finish();
        }
        let now = Instant::now();
        if pending
            .first()
            .is_some_and(|p| now >= p.emitted + o.max_wait)
        {
            score(&mut set, &mut pending, sink, metrics);
        }
        if now.duration_since(last_tick) >= tick_every {
            last_tick = now;
            sink.tick();
        }
    }
}

/// Scores and empties `pending`, handing every record to the sink. A model
/// error is logged and counted; the records go on unscored (conn.log has
/// them already, and the evidence stage still counts them).
fn score<S: RecordSink>(set: &mut ModelSet, pending: &mut Vec<Pending>, sink: &mut S, m: &Metrics) {
    if pending.is_empty() {
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
    let mut failed = false;
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
                m.pipeline_dropped_records
                    .with_label_values(&["inference"])
                    .inc_by(n as u64);
                failed = true;
                break;
            }
        }
    }
    let now = Instant::now();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let widths: Vec<usize> = set.models.iter().map(|x| x.spec().columns()).collect();
    for (j, (p, v)) in pending.iter().zip(&verdicts).enumerate() {
        if failed {
            sink.record(&p.record, None);
            continue;
        }
        m.record_to_verdict_seconds
            .observe(now.duration_since(p.emitted).as_secs_f64());
        if p.record.interim {
            let last = p.record.ts + p.record.duration.unwrap_or(0.0);
            m.last_packet_to_verdict_seconds
                .observe((wall - last).max(0.0));
        }
        let rows: Vec<&[f64]> = set
            .uses
            .iter()
            .zip(&widths)
            .map(|(&u, &w)| raws[u].get(j * w..(j + 1) * w).unwrap_or(&[]))
            .collect();
        sink.record(
            &p.record,
            Some(Scored {
                models: &set.models,
                verdicts: v,
                rows: &rows,
            }),
        );
    }
    pending.clear();
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
