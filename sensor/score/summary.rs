//! The per-label summary a replay prints: how many records each model put
//! in each class, and how many it flagged.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::model::{Model, Verdict};

/// label -> (records, flagged)
type ByLabel = BTreeMap<String, (u64, u64)>;

#[derive(Default)]
pub struct LabelSummary {
    /// Per model (in load order): name, then label -> (records, flagged).
    models: Vec<(String, ByLabel)>,
    records: u64,
    alerts: u64,
}

impl LabelSummary {
    pub fn new(models: &[Model]) -> Self {
        LabelSummary {
            models: models
                .iter()
                .map(|m| (m.spec().model.name.clone(), BTreeMap::new()))
                .collect(),
            records: 0,
            alerts: 0,
        }
    }

    pub fn add(&mut self, verdicts: &[Verdict]) {
        self.records += 1;
        if verdicts.iter().any(|v| v.flagged) {
            self.alerts += 1;
        }
        for ((_, by_label), v) in self.models.iter_mut().zip(verdicts) {
            let e = by_label.entry(v.label_name().to_string()).or_insert((0, 0));
            e.0 += 1;
            e.1 += u64::from(v.flagged);
        }
    }

    pub fn alerts(&self) -> u64 {
        self.alerts
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "  scored: {} records, {} alerts (records that any model flagged)",
            self.records, self.alerts
        );
        for (name, by_label) in &self.models {
            let _ = writeln!(s, "  {name}:");
            for (label, (n, flagged)) in by_label {
                let _ = writeln!(s, "    {label:<20} {n:>9} records {flagged:>9} flagged");
            }
        }
        s
    }
}
