//! One counter for every drop: `osprey_dropped_total{stage,reason}`.
//!
//! Each stage also keeps its own, more detailed metrics; this family is the
//! one an operator alerts on: if it grows, osprey saw something it did not
//! fully handle (a packet, a fragment, a record, an event), and `stage`
//! and `reason` say where and why. Bytes given up by TCP reassembly are
//! not items and stay in `osprey_conn_reassembly_evicted_bytes_total`.
//!
//! The family is one per process, like Prometheus' default registry: a
//! stage that registers its metrics on the daemon's registry later gets
//! the same counter through [`Dropped::on`], so nothing has to be passed
//! down through every constructor.

use std::sync::OnceLock;

use prometheus::{IntCounterVec, Opts, Registry};

/// Where a drop happened, in data-flow order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Capture,
    Decode,
    Conn,
    Features,
    Score,
    Evidence,
    Respond,
    Report,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Capture => "capture",
            Stage::Decode => "decode",
            Stage::Conn => "conn",
            Stage::Features => "features",
            Stage::Score => "score",
            Stage::Evidence => "evidence",
            Stage::Respond => "respond",
            Stage::Report => "report",
        }
    }
}

/// The `osprey_dropped_total` family.
#[derive(Clone, Debug)]
pub struct Dropped(IntCounterVec);

static FAMILY: OnceLock<IntCounterVec> = OnceLock::new();

impl Dropped {
    /// The process's family, registered in `r` if it is not there yet.
    pub fn on(r: &Registry) -> Dropped {
        let c = FAMILY
            .get_or_init(|| {
                IntCounterVec::new(
                    Opts::new(
                        "osprey_dropped_total",
                        "Items osprey dropped or could not fully handle (packets, fragments, \
                         connections, snapshots, records, proposals, events), by stage and reason.",
                    ),
                    &["stage", "reason"],
                )
                .expect("static metric definition")
            })
            .clone();
        // Already registered (the same object) is fine: one family.
        let _ = r.register(Box::new(c.clone()));
        Dropped(c)
    }

    /// Counts `n` items dropped at `stage` for `reason`.
    pub fn add(&self, stage: Stage, reason: &str, n: u64) {
        if n > 0 {
            self.0
                .with_label_values(&[stage.as_str(), reason])
                .inc_by(n);
        }
    }

    /// The count so far (tests and summaries).
    pub fn get(&self, stage: Stage, reason: &str) -> u64 {
        self.0.with_label_values(&[stage.as_str(), reason]).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_family_however_many_registries() {
        let (a, b) = (Registry::new(), Registry::new());
        let (da, db) = (Dropped::on(&a), Dropped::on(&a));
        let before = da.get(Stage::Score, "test_only");
        da.add(Stage::Score, "test_only", 2);
        db.add(Stage::Score, "test_only", 3);
        Dropped::on(&b).add(Stage::Score, "test_only", 0);
        assert_eq!(da.get(Stage::Score, "test_only") - before, 5);
        for r in [&a, &b] {
            let names: Vec<String> = r.gather().iter().map(|f| f.name().to_string()).collect();
            assert_eq!(names, ["osprey_dropped_total"]);
        }
    }
}
