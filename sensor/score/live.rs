//! The scoring stage, as the daemon and `osprey replay` both run it:
//! records in, as they arrive; conn.log, verdicts and decisions out.
//!
//! Final records go to conn.log as they arrive (conn.log stays Zeek-exact:
//! interim snapshots never reach it). Every record, final or interim, joins
//! the host context as it arrives, and is held until the packet clock has
//! moved the models' look-ahead (`ahead_secs` of their context columns)
//! past the time it arrived, so its window holds the flows that started
//! just after it (the first probes of a scan see the rest of the scan).
//! Records that are due wait for their batch, which is scored when it holds
//! `batch_rows` records or its oldest record has waited `max_wait`: large
//! batches when traffic is heavy, bounded latency when it is light. Live,
//! a record is also due once it has waited the look-ahead in wall time
//! (when traffic stops, the packet clock stops with it), and at most
//! `max_held` records are held (beyond, the oldest are scored early and
//! counted). Scored records, and records shed
//! under overload (unscored), then go to a [`RecordSink`]: alerts.log and
//! the decision stage in the daemon, the same plus actions.log in a
//! replay. A replay sheds nothing and waits for full batches only, so the
//! same capture always gives the same verdicts and decisions.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};

use crate::conn::ConnRecord;
use crate::features::{scaled_f32_into, Flow, LiveConfig, LiveFeaturizer};
use crate::metrics::{Metrics, Stage};
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
    /// The worker's packet time when it emitted the batch.
    pub clock: f64,
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
    /// A record the scorer holds for its models' look-ahead, as it
    /// arrives ([`RecordSink::held`] follows with its verdicts): what does
    /// not need the models (evidence, rules on evidence alone) need not
    /// wait for them.
    fn arrived(&mut self, _r: &ConnRecord) {}
    /// A record announced by [`RecordSink::arrived`], after scoring.
    fn held(&mut self, r: &ConnRecord, scored: Option<Scored<'_>>) {
        self.record(r, scored);
    }
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
    /// Seconds of packet time a record is held before scoring: the
    /// longest look-ahead of any model's context columns.
    hold: f64,
    /// Host-context flows evicted and records not kept, as last counted
    /// in `osprey_dropped_total`.
    drops_counted: (u64, u64),
    /// The model input of a batch, and each featurizer's unscaled rows,
    /// reused from batch to batch.
    input: Vec<f32>,
    raws: Vec<Vec<f64>>,
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
        let hold = models
            .iter()
            .map(|m| m.spec().max_ahead())
            .fold(0.0, f64::max);
        ModelSet {
            models,
            featurizers,
            uses,
            hold,
            drops_counted: (0, 0),
            input: Vec::new(),
            raws: Vec::new(),
        }
    }

    /// Counts what the host contexts dropped since the last call: flows
    /// evicted at their memory bound (contexts are partial then), and
    /// records whose time could not be placed.
    fn count_drops(&mut self, m: &Metrics) {
        let (evicted, unusable) = self.featurizers.iter().fold((0, 0), |(e, u), f| {
            let s = f.stats();
            (e + s.evicted, u + s.unusable)
        });
        let (e0, u0) = self.drops_counted;
        m.dropped
            .add(Stage::Features, "context_full", evicted.saturating_sub(e0));
        m.dropped.add(
            Stage::Features,
            "context_unusable_time",
            unusable.saturating_sub(u0),
        );
        self.drops_counted = (evicted, unusable);
    }

    /// Seconds of packet time records are held before scoring.
    pub fn hold(&self) -> f64 {
        self.hold
    }

    /// How long a record is held at most in wall time (live), if at all.
    fn wall_hold(&self, o: &ScorerOptions) -> Option<Duration> {
        o.hold_by_wall_time
            .then(|| Duration::from_secs_f64(self.hold))
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
    /// the scorer reads them, or due for longer than this when their turn
    /// to be scored comes, are logged but not scored: a verdict that late
    /// is worth less than keeping up, and it bounds verdict latency when
    /// records come faster than the models can score them.
    pub max_lag: Duration,
    /// Host-context memory bounds for the featurizers.
    pub context: LiveConfig,
    /// Whether a held record is also due once it has waited the
    /// look-ahead in wall time (live: packet time stops when traffic
    /// does); a replay holds by packet time only, so it stays repeatable.
    pub hold_by_wall_time: bool,
    /// Records held for the look-ahead at most; beyond, the oldest are
    /// scored early (counted in `osprey_score_held_early_total`).
    pub max_held: usize,
}

/// Records held at most for the look-ahead by default: five seconds of a
/// 50,000-connection-per-second flood (a record is ~0.5 KB with its flow).
pub const DEFAULT_MAX_HELD: usize = 250_000;

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
            hold_by_wall_time: false,
            max_held: DEFAULT_MAX_HELD,
        }
    }
}

/// A reload: new models, and what the sink wants with them.
pub struct Reload<R> {
    pub models: Vec<Model>,
    pub extra: Option<R>,
}

/// A held record. The queue holds them boxed: under a flood it holds a
/// quarter of a million (632 bytes each), and growing a queue of the
/// records themselves moved all of them at once, stalling the scorer long
/// enough for the conn workers' channel to fill.
struct Pending {
    record: ConnRecord,
    /// The record as the featurizers read it (pushed on arrival).
    flow: Flow,
    emitted: Instant,
    /// Packet time from which it may be scored.
    due: f64,
    /// When the scorer found it due (set then; `emitted` until then).
    ready_at: Instant,
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
    // Held and waiting records in arrival order; the first `ready` of them
    // are due (readiness only ever grows: the clocks only move forward).
    let mut pending: VecDeque<Box<Pending>> = VecDeque::with_capacity(batch_rows);
    let mut ready = 0usize;
    let mut clock = f64::NEG_INFINITY;
    let mut last_tick = Instant::now();
    let tick_every = Duration::from_millis(500);
    metrics.models_loaded.set(set.models.len() as i64);
    loop {
        crate::fault::point("scorer");
        let wall = set.wall_hold(&o);
        let mut deadline = (Instant::now() + tick_every).min(last_tick + tick_every);
        if let Some(p) = pending.front() {
            if ready > 0 {
                deadline = deadline.min(p.emitted + wall.unwrap_or_default() + o.max_wait);
            } else if let Some(w) = wall {
                deadline = deadline.min(p.emitted + w);
            }
        }
        let timeout = deadline.saturating_duration_since(Instant::now());
        let mut closed = false;
        select! {
            recv(records) -> msg => match msg {
                Ok(batch) => {
                    let backlog = records.len();
                    arrive(batch, backlog, &mut set, &mut pending, &mut clock, sink, &o, metrics);
                }
                Err(_) => closed = true,
            },
            recv(reloads) -> msg => {
                if let Ok(Reload { models, extra }) = msg {
                    // Records already waiting are scored by the models they
                    // were featurized for.
                    score_front(&mut set, &mut pending, usize::MAX, sink, metrics);
                    ready = 0;
                    set = ModelSet::new(models, o.context.clone());
                    sink.reload(&set.models, extra);
                    metrics.models_loaded.set(set.models.len() as i64);
                    tracing::info!(models = set.models.len(), "models reloaded");
                }
            },
            default(timeout) => {},
        }
        if closed {
            score_front(&mut set, &mut pending, usize::MAX, sink, metrics);
            return sink.finish();
        }
        let now = Instant::now();
        let wall = set.wall_hold(&o);
        let over_held = pending.len() > o.max_held;
        while let Some(p) = pending.get_mut(ready) {
            let by_wall = wall.is_some_and(|w| now >= p.emitted + w);
            if p.due > clock && !by_wall {
                if !over_held {
                    break;
                }
                metrics.score_held_early.inc();
            }
            p.ready_at = now;
            ready += 1;
        }
        loop {
            // Late records are handed on a batch's worth at a time: a
            // flood's worth at once would leave the channel unread as long
            // as scoring them would have.
            let late = ready.min(batch_rows);
            let shed = shed_late(&mut pending, late, Instant::now(), &o, sink, metrics);
            ready -= shed;
            if shed == 0 {
                if ready < batch_rows {
                    break;
                }
                score_front(&mut set, &mut pending, batch_rows, sink, metrics);
                ready -= batch_rows;
            }
            // Live, between batches, take what the conn workers sent
            // meanwhile (it joins the back of the queue): a conn worker
            // waits on a full record channel, and capture drops what it
            // cannot queue. A replay reads one batch per turn, so that what
            // the host context holds when a batch is scored never depends
            // on thread timing.
            let live = o.hold_by_wall_time;
            while let Some(batch) = live.then(|| records.try_recv().ok()).flatten() {
                let backlog = records.len();
                arrive(
                    batch,
                    backlog,
                    &mut set,
                    &mut pending,
                    &mut clock,
                    sink,
                    &o,
                    metrics,
                );
            }
        }
        let waited = o.max_wait + wall.unwrap_or_default();
        ready -= shed_late(&mut pending, ready, now, &o, sink, metrics);
        if ready > 0 && pending.front().is_some_and(|p| now >= p.emitted + waited) {
            score_front(&mut set, &mut pending, ready, sink, metrics);
            ready = 0;
        }
        if now.duration_since(last_tick) >= tick_every {
            last_tick = now;
            sink.tick();
        }
    }
}

/// Handles a batch of records as it is read off the channel: final
/// records to conn.log, then each either held for scoring or, when the
/// scorer is behind (`backlog` batches still waiting, or the batch already
/// older than `max_lag`), handed on unscored and counted.
#[allow(clippy::too_many_arguments)]
fn arrive<S: RecordSink>(
    batch: RecordBatch,
    backlog: usize,
    set: &mut ModelSet,
    pending: &mut VecDeque<Box<Pending>>,
    clock: &mut f64,
    sink: &mut S,
    o: &ScorerOptions,
    metrics: &Metrics,
) {
    let shed = backlog > o.shed_backlog || batch.emitted.elapsed() > o.max_lag;
    if shed {
        count_shed(metrics, batch.records.len());
    }
    let batch_clock = batch.clock;
    if batch_clock > *clock {
        *clock = batch_clock;
    }
    let mut arrived = Vec::with_capacity(batch.records.len());
    for record in batch.records {
        if !record.interim {
            sink.conn(&record);
        }
        if shed || set.models.is_empty() {
            sink.record(&record, None);
            continue;
        }
        sink.arrived(&record);
        arrived.push(record);
    }
    set.push(arrived, batch.emitted, batch_clock, pending);
    set.count_drops(metrics);
}

/// Hands on unscored (and counts) the due records at the front that have
/// been due for longer than `max_lag`: when records come due faster than
/// the models score them, the oldest are given up so that the rest get
/// timely verdicts and the channel from the conn workers keeps moving.
/// Returns how many of the `ready` records it took.
fn shed_late<S: RecordSink>(
    pending: &mut VecDeque<Box<Pending>>,
    ready: usize,
    now: Instant,
    o: &ScorerOptions,
    sink: &mut S,
    metrics: &Metrics,
) -> usize {
    let late = pending
        .iter()
        .take(ready)
        .take_while(|p| now.saturating_duration_since(p.ready_at) > o.max_lag)
        .count();
    if late == 0 {
        return 0;
    }
    count_shed(metrics, late);
    for p in pending.drain(..late) {
        sink.held(&p.record, None);
    }
    late
}

fn count_shed(metrics: &Metrics, n: usize) {
    metrics
        .pipeline_dropped_records
        .with_label_values(&["score"])
        .inc_by(n as u64);
    metrics.dropped.add(Stage::Score, "backlog", n as u64);
}

impl ModelSet {
    /// Records arriving records in every featurizer's host context and
    /// queues them, due `hold` seconds of packet time after `clock`.
    fn push(
        &mut self,
        records: Vec<ConnRecord>,
        emitted: Instant,
        clock: f64,
        pending: &mut VecDeque<Box<Pending>>,
    ) {
        if records.is_empty() {
            return;
        }
        let flows: Vec<Flow> = records.iter().map(Flow::from).collect();
        for f in &mut self.featurizers {
            f.push(&flows);
        }
        let due = clock + self.hold;
        pending.extend(records.into_iter().zip(flows).map(|(record, flow)| {
            Box::new(Pending {
                record,
                flow,
                emitted,
                due,
                ready_at: emitted,
            })
        }));
    }
}

/// Scores the first `n` pending records.
fn score_front<S: RecordSink>(
    set: &mut ModelSet,
    pending: &mut VecDeque<Box<Pending>>,
    n: usize,
    sink: &mut S,
    m: &Metrics,
) {
    let (waiting, flows): (Vec<Waiting>, Vec<Flow>) = pending
        .drain(..n.min(pending.len()))
        .map(|p| ((p.record, p.emitted), p.flow))
        .unzip();
    score(set, &waiting, &flows, sink, m);
}

/// A record and when it left its conn worker.
type Waiting = (ConnRecord, Instant);

/// Scores `pending` (whose flows are `flows`), handing every record to the sink. A model
/// error is logged and counted; the records go on unscored (conn.log has
/// them already, and the evidence stage still counts them).
fn score<S: RecordSink>(
    set: &mut ModelSet,
    pending: &[Waiting],
    flows: &[Flow],
    sink: &mut S,
    m: &Metrics,
) {
    if pending.is_empty() {
        return;
    }
    let n = flows.len();
    let mut verdicts: Vec<Vec<Verdict>> = (0..n)
        .map(|_| Vec::with_capacity(set.models.len()))
        .collect();
    let mut raws = std::mem::take(&mut set.raws);
    raws.resize_with(set.featurizers.len(), Vec::new);
    for (f, out) in set.featurizers.iter_mut().zip(raws.iter_mut()) {
        f.featurize_into(flows, out);
    }
    let mut failed = false;
    let mut rows = std::mem::take(&mut set.input);
    for (model, &uses) in set.models.iter().zip(&set.uses) {
        let spec = model.spec();
        let name = spec.model.name.as_str();
        let raw = raws.get(uses).map_or(&[][..], Vec::as_slice);
        scaled_f32_into(spec.scaler.as_ref(), spec.columns(), raw, &mut rows);
        let started = Instant::now();
        match model.run(&rows, n) {
            Ok(vs) => {
                m.inference_seconds
                    .with_label_values(&[name])
                    .observe(started.elapsed().as_secs_f64());
                m.inference_batch_rows
                    .with_label_values(&[name])
                    .observe(n as f64);
                // Counted per label once per batch: a labelled counter
                // lookup per record costs more than the model's arithmetic.
                let mut by_label: Vec<(&str, u64)> = Vec::new();
                let mut alerts = 0u64;
                for v in &vs {
                    let label = v.label_name();
                    match by_label.iter_mut().find(|(l, _)| *l == label) {
                        Some((_, c)) => *c += 1,
                        None => by_label.push((label, 1)),
                    }
                    alerts += u64::from(v.flagged);
                }
                for (label, c) in by_label {
                    m.verdicts.with_label_values(&[name, label]).inc_by(c);
                }
                if alerts > 0 {
                    m.alerts.with_label_values(&[name]).inc_by(alerts);
                }
                for (slot, v) in verdicts.iter_mut().zip(vs) {
                    slot.push(v);
                }
            }
            Err(e) => {
                tracing::error!(model = name, error = %e, "inference failed");
                m.pipeline_dropped_records
                    .with_label_values(&["inference"])
                    .inc_by(n as u64);
                m.dropped.add(Stage::Score, "inference_failed", n as u64);
                failed = true;
                break;
            }
        }
    }
    set.input = rows;
    let now = Instant::now();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let widths: Vec<usize> = set.models.iter().map(|x| x.spec().columns()).collect();
    for (j, ((record, emitted), v)) in pending.iter().zip(&verdicts).enumerate() {
        if failed {
            sink.held(record, None);
            continue;
        }
        m.record_to_verdict_seconds
            .observe(now.duration_since(*emitted).as_secs_f64());
        if record.interim {
            let last = record.ts + record.duration.unwrap_or(0.0);
            m.last_packet_to_verdict_seconds
                .observe((wall - last).max(0.0));
        }
        let rows: Vec<&[f64]> = set
            .uses
            .iter()
            .zip(&widths)
            .map(|(&u, &w)| raws[u].get(j * w..(j + 1) * w).unwrap_or(&[]))
            .collect();
        sink.held(
            record,
            Some(Scored {
                models: &set.models,
                verdicts: v,
                rows: &rows,
            }),
        );
    }
    set.raws = raws;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::ConnState;
    use crate::evidence::fixtures::tcp;
    use crate::features::FeatureSpec;
    use std::sync::{Arc, Mutex};

    /// Rows of `src_resp_ports_60s` as scored, by record start time.
    #[derive(Clone, Default)]
    struct Rows(Arc<Mutex<Vec<(f64, f64)>>>);

    impl RecordSink for Rows {
        type Reload = ();
        fn conn(&mut self, _: &ConnRecord) {}
        fn record(&mut self, r: &ConnRecord, scored: Option<Scored<'_>>) {
            let Some(s) = scored else { return };
            let spec = s.models[0].spec();
            let col = spec
                .features
                .iter()
                .position(|f| f.name == "src_resp_ports_60s")
                .expect("the bundled classifier's column");
            let mut rows = self.0.lock().expect("rows");
            rows.push((r.ts, s.rows[0][col]));
        }
        fn reload(&mut self, _: &[Model], _: Option<()>) {}
        fn tick(&mut self) {}
        fn finish(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn classifier() -> Model {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/osprey-classifier.toml");
        Model::load(FeatureSpec::load(&path).expect("spec")).expect("model")
    }

    /// The first probe of a scan is held for the look-ahead and then sees
    /// the probes that followed it, even when they arrive in later batches;
    /// a replay (packet time only) scores nothing before its clock passes.
    #[test]
    fn held_records_see_the_flows_that_followed() {
        let model = classifier();
        let hold = model.spec().max_ahead();
        assert!(hold > 0.0, "the bundled classifier looks ahead");
        let probe = |n: u64, t: f64| {
            tcp(
                n,
                ("198.18.0.9", 40000),
                ("198.18.0.1", n as u16),
                ConnState::REJ,
                t,
            )
        };
        let (tx, rx) = crossbeam_channel::unbounded::<RecordBatch>();
        let (_reload_tx, reloads) = crossbeam_channel::bounded::<Reload<()>>(1);
        let rows = Rows::default();
        let mut sink = rows.clone();
        let scorer = std::thread::spawn(move || {
            let options = ScorerOptions::replay(1, LiveConfig::default());
            let set = ModelSet::new(vec![model], options.context.clone());
            run_scorer(rx, reloads, set, &mut sink, options, &Metrics::new())
        });
        let batch = |records, clock| RecordBatch {
            records,
            emitted: Instant::now(),
            clock,
        };
        // The first probe, then four more in later batches, all within
        // the look-ahead; the clock stays short of the first one's due time.
        tx.send(batch(vec![probe(1, 100.0)], 110.0)).expect("send");
        for n in 2..=5 {
            let t = 100.0 + n as f64 * 0.001;
            tx.send(batch(vec![probe(n, t)], 110.0 + hold / 2.0))
                .expect("send");
        }
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            rows.0.lock().expect("rows").is_empty(),
            "nothing is due yet"
        );
        // A later flow moves the clock past the first five's due time.
        tx.send(batch(vec![probe(6, 200.0)], 110.0 + hold * 2.0))
            .expect("send");
        std::thread::sleep(Duration::from_millis(300));
        let seen = rows.0.lock().expect("rows").clone();
        assert_eq!(
            seen.len(),
            5,
            "the five probes are due, the sixth is not: {seen:?}"
        );
        let five = 5f64.ln_1p();
        for (ts, ports) in &seen {
            assert_eq!(*ports, five, "the probe at {ts} sees all five ports");
        }
        drop(tx);
        scorer.join().expect("scorer").expect("closed");
        assert_eq!(rows.0.lock().expect("rows").len(), 6, "the rest at close");
    }

    /// Counts what reaches the sink, scored or not, and is slow to take a
    /// scored record (as a scorer slower than the traffic is).
    #[derive(Clone, Default)]
    struct Slow(Arc<Mutex<(usize, usize)>>);

    impl RecordSink for Slow {
        type Reload = ();
        fn conn(&mut self, _: &ConnRecord) {}
        fn record(&mut self, _: &ConnRecord, scored: Option<Scored<'_>>) {
            let mut n = self.0.lock().expect("counts");
            if scored.is_some() {
                n.0 += 1;
                std::thread::sleep(Duration::from_millis(10));
            } else {
                n.1 += 1;
            }
        }
        fn reload(&mut self, _: &[Model], _: Option<()>) {}
        fn tick(&mut self) {}
        fn finish(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Live, records that come due faster than they are scored are not
    /// all scored late: those due for longer than `max_lag` go on unscored
    /// and are counted, and every record still reaches the sink once.
    #[test]
    fn records_due_too_long_go_on_unscored() {
        let model = classifier();
        let hold = model.spec().max_ahead();
        let (tx, rx) = crossbeam_channel::unbounded::<RecordBatch>();
        let (_reload_tx, reloads) = crossbeam_channel::bounded::<Reload<()>>(1);
        let counts = Slow::default();
        let mut sink = counts.clone();
        let metrics = Arc::new(Metrics::new());
        let before = metrics.dropped.get(Stage::Score, "backlog");
        let m = metrics.clone();
        let scorer = std::thread::spawn(move || {
            let options = ScorerOptions {
                max_lag: Duration::from_millis(100),
                shed_backlog: usize::MAX,
                hold_by_wall_time: true,
                max_wait: Duration::from_millis(1),
                ..ScorerOptions::replay(1, LiveConfig::default())
            };
            let set = ModelSet::new(vec![model], options.context.clone());
            run_scorer(rx, reloads, set, &mut sink, options, &m)
        });
        let n = 100u64;
        let records = (1..=n)
            .map(|i| {
                let t = 100.0 + i as f64 * 0.001;
                let to = ("198.18.0.1", i as u16);
                tcp(i, ("198.18.0.9", 40000), to, ConnState::REJ, t)
            })
            .collect();
        let batch = |records, clock| RecordBatch {
            records,
            emitted: Instant::now(),
            clock,
        };
        tx.send(batch(records, 110.0)).expect("send");
        // The clock moves past their look-ahead: all are due at once, and
        // scoring them all would take a second.
        tx.send(batch(Vec::new(), 110.0 + 2.0 * hold))
            .expect("send");
        let deadline = Instant::now() + Duration::from_secs(60);
        let (scored, shed) = loop {
            let c = *counts.0.lock().expect("counts");
            if c.0 + c.1 == n as usize || Instant::now() > deadline {
                break c;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        drop(tx);
        scorer.join().expect("scorer").expect("closed");
        assert_eq!(
            scored + shed,
            n as usize,
            "each record reaches the sink once"
        );
        assert!(scored >= 1, "the first are scored");
        assert!(
            shed >= 50,
            "most wait too long: {scored} scored, {shed} shed"
        );
        let counted = metrics.dropped.get(Stage::Score, "backlog") - before;
        assert_eq!(counted, shed as u64, "every record given up is counted");
    }

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
