//! The decision stage: every record (with its verdicts when it was
//! scored) goes through the evidence stage, then the rules, and what
//! they decide becomes a [`Proposal`] for admission. The daemon and
//! `osprey replay` run this same code on the same stream of records, so a
//! replay predicts what the daemon would do.

use std::net::IpAddr;

use hashbrown::HashMap;
use smallvec::SmallVec;

use super::action::Evidence;
use super::admit::Proposal;
use super::rules::{ModelFacts, Rule, RuleSet, Scored};
use crate::conn::ConnRecord;
use crate::evidence::{EvidenceConfig, EvidenceStage, EvidenceStats, LabelId, Observed};
use crate::model::Verdict;

/// How often the same decision about the same target is proposed again
/// (record time): a flood matches the same rule for the same source
/// thousands of times a second, and admission needs to hear it about once
/// a second (to refresh a TTL).
const REPROPOSE_SECS: f64 = 1.0;

/// Decisions remembered for re-proposal suppression.
const MAX_RECENT: usize = 1 << 16;
const RECENT_ENTRY: usize = std::mem::size_of::<((IpAddr, usize), f64)>();

/// What the scorer knows of a record it scored.
pub struct Verdicts<'a> {
    /// One per model, in model order.
    pub verdicts: &'a [Verdict],
    /// Each model's unscaled feature row for the record.
    pub rows: &'a [&'a [f64]],
}

impl<'a> From<crate::score::live::Scored<'a>> for Verdicts<'a> {
    fn from(s: crate::score::live::Scored<'a>) -> Self {
        Verdicts {
            verdicts: s.verdicts,
            rows: s.rows,
        }
    }
}

pub struct Decider {
    rules: RuleSet,
    models: Vec<ModelFacts>,
    stage: EvidenceStage,
    /// Per model: class name -> label id in the evidence stage.
    model_labels: Vec<HashMap<String, LabelId>>,
    /// Per rule: the label ids its flagged columns count.
    rule_labels: Vec<SmallVec<[LabelId; 4]>>,
    /// (target, rule index) -> record time last proposed.
    recent: HashMap<(IpAddr, usize), f64>,
}

impl Decider {
    pub fn new(rules: RuleSet, models: Vec<ModelFacts>, cfg: EvidenceConfig) -> Decider {
        let stage = EvidenceStage::new(cfg, rules.evidence_windows());
        let mut d = Decider {
            rules: RuleSet::default(),
            models: Vec::new(),
            stage,
            model_labels: Vec::new(),
            rule_labels: Vec::new(),
            recent: HashMap::new(),
        };
        d.install(rules, models);
        d
    }

    /// New rules and models (SIGHUP). The evidence collected so far stays
    /// when the rules' windows did not change.
    pub fn reload(&mut self, rules: RuleSet, models: Vec<ModelFacts>) {
        if rules.windows != self.stage.windows().0 {
            tracing::info!(
                windows = ?rules.windows,
                "the rules' evidence windows changed: evidence starts afresh"
            );
            self.stage = EvidenceStage::new(self.stage.config().clone(), rules.evidence_windows());
        }
        self.install(rules, models);
    }

    fn install(&mut self, rules: RuleSet, models: Vec<ModelFacts>) {
        self.model_labels = models
            .iter()
            .map(|m| {
                m.labels
                    .iter()
                    .map(|l| (l.clone(), self.stage.label_id(&m.name, l)))
                    .collect()
            })
            .collect();
        self.rule_labels = rules
            .rules
            .iter()
            .map(|r| {
                let mut ids = SmallVec::new();
                for (m, labels) in models.iter().zip(&self.model_labels) {
                    if !r.when.models.is_empty() && !r.when.models.contains(&m.name) {
                        continue;
                    }
                    for (l, &id) in labels {
                        if r.when.labels.is_empty() || r.when.labels.contains(l) {
                            ids.push(id);
                        }
                    }
                }
                ids
            })
            .collect();
        self.rules = rules;
        self.models = models;
        self.recent.clear();
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    pub fn stats(&self) -> EvidenceStats {
        self.stage.stats()
    }

    /// Heap held: the evidence stage and the re-proposal memory.
    pub fn memory_bytes(&self) -> usize {
        self.stage.memory_bytes()
            + crate::evidence::bound::map_bytes(self.recent.capacity(), RECENT_ENTRY)
    }

    /// The most heap this decider can hold with its configuration, rules
    /// and models (`evidence/bound.rs`).
    pub fn memory_bound(&self) -> usize {
        self.stage.memory_bound().total()
            + crate::evidence::bound::map_bytes(MAX_RECENT, RECENT_ENTRY)
    }

    /// Counts the record in the evidence stage, with the labels the
    /// models flagged it with.
    fn flagged(&self, scored: Option<&Verdicts<'_>>) -> SmallVec<[LabelId; 4]> {
        let mut flagged: SmallVec<[LabelId; 4]> = SmallVec::new();
        if let Some(s) = scored {
            for (v, labels) in s.verdicts.iter().zip(&self.model_labels) {
                if v.flagged {
                    if let Some(&id) = labels.get(v.label_name()) {
                        flagged.push(id);
                    }
                }
            }
        }
        flagged
    }

    fn observe(&mut self, r: &ConnRecord, scored: Option<&Verdicts<'_>>) -> Observed {
        let flagged = self.flagged(scored);
        self.stage.observe(r, &flagged)
    }

    /// One record, counted as [`Decider::record`] counts it; instead of
    /// deciding, `seen(rule, values)` is called for every rule whose
    /// `match` holds for it, with the value each of the rule's evidence
    /// columns has for the record's source (in the order of its bounds;
    /// none for a rule without evidence). Calibration raises thresholds
    /// above what benign sources reach, so it needs every rule's values,
    /// not only those of the rule that fires first.
    pub fn measure(
        &mut self,
        r: &ConnRecord,
        scored: Option<Verdicts<'_>>,
        mut seen: impl FnMut(usize, &[f64]),
    ) {
        let obs = self.observe(r, scored.as_ref());
        if obs.answer {
            return;
        }
        let view = view(r, scored.as_ref(), &self.models);
        let mut values: SmallVec<[f64; 4]> = SmallVec::new();
        for i in self.rules.matching(&view) {
            values.clear();
            let labels = self.rule_labels.get(i).map_or(&[][..], |l| l.as_slice());
            if let Some(ev) = self.rules.rules.get(i).and_then(|r| r.evidence.as_ref()) {
                for b in &ev.bounds {
                    values.push(self.stage.value(&obs, b.column, ev.window, labels));
                }
            }
            seen(i, &values);
        }
    }

    /// One record, scored (`Some`) or not (shed under load, or no models).
    /// Returns what the rules decided, if anything is to be proposed.
    pub fn record(&mut self, r: &ConnRecord, scored: Option<Verdicts<'_>>) -> Option<Proposal> {
        let obs = self.observe(r, scored.as_ref());
        self.decide(r, obs, scored, |_| true)
    }

    /// A record the scorer holds for its models' look-ahead, as it
    /// arrives: its evidence counts now, and rules on evidence alone
    /// decide now (a port scan is blocked without waiting for the models).
    /// [`Decider::scored`] follows with its verdicts.
    pub fn arrived(&mut self, r: &ConnRecord) -> Option<Proposal> {
        let obs = self.stage.observe_pending(r);
        self.decide(r, obs, None, |rule| !rule.reads_scores())
    }

    /// The verdicts of a record [`Decider::arrived`] counted (`None` when
    /// it was shed unscored): its flagged labels count, and the rules that
    /// read scores decide (the others decided when it arrived: deciding
    /// again on the same evidence would refresh their actions' TTLs).
    pub fn scored(&mut self, r: &ConnRecord, scored: Option<Verdicts<'_>>) -> Option<Proposal> {
        let flagged = self.flagged(scored.as_ref());
        let obs = self.stage.observe_verdicts(r, &flagged);
        scored.as_ref()?;
        self.decide(r, obs, scored, Rule::reads_scores)
    }

    fn decide(
        &mut self,
        r: &ConnRecord,
        obs: Observed,
        scored: Option<Verdicts<'_>>,
        include: impl Fn(&Rule) -> bool,
    ) -> Option<Proposal> {
        if obs.answer || self.rules.rules.is_empty() {
            return None;
        }
        let view = view(r, scored.as_ref(), &self.models);
        let stage = &self.stage;
        let rule_labels = &self.rule_labels;
        let decision = self.rules.decide_among(&view, include, |i, ev| {
            let labels = rule_labels.get(i).map_or(&[][..], |l| l.as_slice());
            ev.bounds
                .iter()
                .all(|b| b.holds(stage.value(&obs, b.column, ev.window, labels)))
        })?;
        let now = obs.now;
        let key = (decision.target, decision.index);
        if self
            .recent
            .get(&key)
            .is_some_and(|&t| now - t < REPROPOSE_SECS && now >= t)
        {
            return None;
        }
        if self.recent.len() >= MAX_RECENT {
            self.recent.retain(|_, t| now - *t < REPROPOSE_SECS);
            if self.recent.len() >= MAX_RECENT {
                self.recent.clear();
            }
        }
        self.recent.insert(key, now);
        let rule = self.rules.rules.get(decision.index)?;
        let forgeable = if rule.evidence.is_some() {
            rule.forgeable_evidence()
        } else {
            !r.orig_verified
        };
        let window = rule
            .evidence
            .as_ref()
            .map(|e| e.window)
            .or_else(|| (!self.stage.windows().is_empty()).then_some(0));
        let facts = window.map(|w| self.stage.facts(&obs, w, forgeable));
        let verdict = decision.model.and_then(|i| view.verdicts.get(i));
        let evidence = Evidence {
            uid: r.uid.to_string(),
            interim: r.interim,
            model: decision
                .model
                .and_then(|i| self.models.get(i))
                .map(|m| m.name.clone()),
            label: verdict.and_then(|v| v.label.clone()),
            score: verdict.and_then(|v| v.score),
            probability: verdict.and_then(|v| v.probability),
            orig_h: r.orig_h,
            orig_p: r.orig_p,
            resp_h: r.resp_h,
            resp_p: r.resp_p,
            proto: r.proto.as_str().to_string(),
            service: (!r.service.is_empty()).then(|| r.service.join(",")),
            conn_state: r.conn_state.as_str().to_string(),
            history: (!r.history.as_str().is_empty()).then(|| r.history.as_str().to_string()),
            facts,
            // The responder names the endpoints, on the I/O runtime.
            identity: None,
        };
        Some(Proposal {
            known_good: self.stage.last_verified(decision.target, now),
            forgeable,
            at: now,
            evidence,
            decision,
        })
    }
}

/// What the rules read of one record: its verdicts and feature rows when
/// it was scored, none when it was shed or no model runs.
fn view<'a>(
    record: &'a ConnRecord,
    scored: Option<&Verdicts<'a>>,
    models: &'a [ModelFacts],
) -> Scored<'a> {
    let (verdicts, rows) = scored.map_or((&[][..], &[][..]), |s| (s.verdicts, s.rows));
    Scored {
        record,
        verdicts,
        models,
        rows,
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;

/// The evidence stage's metrics: how much it tracks, what it had to
/// forget to stay within its bounds, and its memory.
pub struct DecideMetrics {
    tracked: prometheus::IntGaugeVec,
    evicted: prometheus::IntCounterVec,
    dropped: crate::metrics::Dropped,
    memory: prometheus::IntGauge,
    last: EvidenceStats,
    last_memory: std::time::Instant,
}

impl DecideMetrics {
    pub fn register(r: &prometheus::Registry) -> DecideMetrics {
        use crate::metrics::{counter_vec, gauge, gauge_vec};
        DecideMetrics {
            dropped: crate::metrics::Dropped::on(r),
            tracked: gauge_vec(
                r,
                "osprey_evidence_tracked",
                "Entries the evidence stage holds, by table (sources, services, open_conns, known_good).",
                &["table"],
            ),
            evicted: counter_vec(
                r,
                "osprey_evidence_evicted_total",
                "Entries the evidence stage forgot to stay within its bounds, by table.",
                &["table"],
            ),
            memory: gauge(
                r,
                "osprey_evidence_memory_bytes",
                "Heap the evidence stage holds (estimated from its tables' capacities, every 10 s).",
            ),
            last: EvidenceStats::default(),
            last_memory: std::time::Instant::now() - std::time::Duration::from_secs(60),
        }
    }

    /// Brings the metrics up to date (about twice a second).
    pub fn export(&mut self, d: &Decider) {
        let s = d.stats();
        for (table, n, ev, last) in [
            (
                "sources",
                s.sources,
                s.evicted_sources,
                self.last.evicted_sources,
            ),
            (
                "services",
                s.services,
                s.evicted_services,
                self.last.evicted_services,
            ),
            (
                "open_conns",
                s.open_conns,
                s.evicted_open_conns,
                self.last.evicted_open_conns,
            ),
            (
                "known_good",
                s.known_good,
                s.evicted_known_good,
                self.last.evicted_known_good,
            ),
        ] {
            self.tracked.with_label_values(&[table]).set(n as i64);
            if ev > last {
                self.evicted.with_label_values(&[table]).inc_by(ev - last);
                self.dropped.add(
                    crate::metrics::Stage::Evidence,
                    &format!("evicted_{table}"),
                    ev - last,
                );
            }
        }
        self.last = s;
        if self.last_memory.elapsed() >= std::time::Duration::from_secs(10) {
            self.last_memory = std::time::Instant::now();
            self.memory.set(d.memory_bytes() as i64);
        }
    }
}
