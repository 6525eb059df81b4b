//! What calibration learns from scoring the benign records: per model,
//! the value its alert rule compares for every connection (the highest of
//! its final record and interim snapshots: the daemon alerts on either),
//! and per rule the highest value each evidence column reached for any
//! source while the rule's `match` held.
//!
//! It is a [`RecordSink`] of the daemon's scorer, so the records are
//! featurized and scored exactly as the daemon would, and the evidence
//! stage is the decider's own ([`Decider::measure`]).

use std::collections::HashSet;
use std::io;
use std::net::IpAddr;

use hashbrown::HashMap;
use smallvec::SmallVec;

use crate::conn::{ConnRecord, Uid};
use crate::model::Model;
use crate::respond::decide::{Decider, Verdicts};
use crate::score::live::{RecordSink, Scored};

/// One connection of the current input: per model, the highest value its
/// alert rule compared and whether any record of it was flagged.
#[derive(Clone, Debug, Default)]
struct Conn {
    models: SmallVec<[(f32, bool); 2]>,
}

/// The highest value of one evidence column, and who reached it first.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Peak {
    pub value: f64,
    pub source: Option<IpAddr>,
    /// Record time it was reached at.
    pub at: f64,
}

/// Per rule (in the rule set's order): records (final and interim) its
/// `match` held for, and the peak of each evidence bound.
#[derive(Clone, Debug, Default)]
pub struct RulePeaks {
    pub matched: u64,
    pub bounds: Vec<Peak>,
}

/// Everything measured over all inputs.
#[derive(Debug, Default)]
pub struct Measured {
    /// Final records (connections).
    pub records: u64,
    /// Interim snapshots scored.
    pub interim: u64,
    pub sources: HashSet<IpAddr>,
    /// Per model, one value per connection (the highest its alert rule
    /// compared).
    pub values: Vec<Vec<f32>>,
    /// Per model, connections flagged.
    pub flagged: Vec<u64>,
    pub rules: Vec<RulePeaks>,
}

/// The sink for one pass over the inputs: connections of the input being
/// scored, then folded into [`Measured`] when it ends.
///
/// The value a model's alert rule compares is the verdict's `score` for
/// both kinds: an anomaly model's score (against `threshold`), and a
/// classifier's attack probability, every class but the benign one
/// together (against `min_probability`; the driver refuses a classifier
/// whose spec names a score output, which would take its place).
pub struct Measure {
    models: usize,
    conns: HashMap<Uid, Conn>,
    decider: Option<Decider>,
    pub measured: Measured,
    /// A record came unscored: inference failed (the scorer logged why).
    pub unscored: u64,
}

impl Measure {
    pub fn new(models: usize, rules: usize) -> Measure {
        Measure {
            models,
            conns: HashMap::new(),
            decider: None,
            measured: Measured {
                values: vec![Vec::new(); models],
                flagged: vec![0; models],
                rules: vec![RulePeaks::default(); rules],
                ..Measured::default()
            },
            unscored: 0,
        }
    }

    /// Starts an input: its own evidence (a fresh decider), or none.
    pub fn start(&mut self, decider: Option<Decider>) {
        self.decider = decider;
        self.conns.clear();
    }

    fn peaks(rules: &mut [RulePeaks], r: &ConnRecord, rule: usize, values: &[f64]) {
        let Some(p) = rules.get_mut(rule) else { return };
        p.matched += 1;
        if p.bounds.len() < values.len() {
            p.bounds.resize(values.len(), Peak::default());
        }
        // A peak names the first source that reached it; zero names none.
        for (peak, &x) in p.bounds.iter_mut().zip(values) {
            if x > peak.value {
                *peak = Peak {
                    value: x,
                    source: Some(r.orig_h),
                    at: r.ts + r.duration.unwrap_or(0.0),
                };
            }
        }
    }
}

impl RecordSink for Measure {
    type Reload = ();

    fn conn(&mut self, _r: &ConnRecord) {}

    fn record(&mut self, r: &ConnRecord, scored: Option<Scored<'_>>) {
        if r.interim {
            self.measured.interim += 1;
        } else {
            self.measured.records += 1;
            self.measured.sources.insert(r.orig_h.to_canonical());
        }
        let Some(s) = scored else {
            self.unscored += 1;
            return;
        };
        let conn = self.conns.entry(r.uid).or_default();
        if conn.models.is_empty() {
            conn.models = (0..self.models).map(|_| (f32::NAN, false)).collect();
        }
        for ((best, flagged), v) in conn.models.iter_mut().zip(s.verdicts) {
            let x = v.score.unwrap_or(f32::NAN);
            // NaN loses to any number: a NaN score is never flagged.
            if best.is_nan() || x > *best {
                *best = x;
            }
            *flagged |= v.flagged;
        }
        if let Some(d) = &mut self.decider {
            let rules = &mut self.measured.rules;
            let verdicts = Verdicts {
                verdicts: s.verdicts,
                rows: s.rows,
            };
            d.measure(r, Some(verdicts), |rule, values| {
                Measure::peaks(rules, r, rule, values)
            });
        }
    }

    fn reload(&mut self, _models: &[Model], _extra: Option<()>) {}

    fn tick(&mut self) {}

    /// The input ended: its connections join the totals.
    fn finish(&mut self) -> io::Result<()> {
        for (_, c) in self.conns.drain() {
            for (m, (best, flagged)) in c.models.into_iter().enumerate() {
                if let Some(v) = self.measured.values.get_mut(m) {
                    v.push(best);
                }
                if let Some(n) = self.measured.flagged.get_mut(m) {
                    *n += u64::from(flagged);
                }
            }
        }
        self.decider = None;
        Ok(())
    }
}
