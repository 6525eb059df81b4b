//! A replay's scoring and decisions: the daemon's scorer, evidence stage,
//! rules and admission, run over a capture in dry run. conn.log,
//! alerts.log and actions.log come out as the daemon would write them, and
//! the summary lists the sources the daemon would have blocked or limited
//! (CrowdSec's `cscli explain` and file replay are the anchors): an
//! operator tests rules against a capture before enabling enforcement.
//!
//! Time is packet time throughout — evidence windows, TTLs, escalation,
//! the breakers — so the same capture always gives the same actions.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use crate::conn::ConnRecord;
use crate::evidence::EvidenceConfig;
use crate::model::Model;
use crate::report::AlertWriter;
use crate::report::ConnLogWriter;
use crate::respond::admit::{Admission, AdmitConfig, Outcome, Proposal};
use crate::respond::decide::{Decider, Verdicts};
use crate::respond::rules::{ModelFacts, RuleSet};
use crate::respond::safety::Allowlist;
use crate::respond::{Action, ActionKind};
use crate::score::live::{RecordSink, Scored};
use crate::score::LabelSummary;

/// What a replay scores and decides with.
pub struct ReplayScoring {
    pub models: Vec<Model>,
    /// The rules and where they came from (for the summary); none: no
    /// decisions.
    pub rules: Option<(RuleSet, String)>,
    pub evidence: EvidenceConfig,
    pub admit: AdmitConfig,
    /// Configured allowlist ranges (nothing is discovered from the host
    /// running the replay: it is not the node that saw the traffic).
    pub allowlist: Vec<IpNet>,
    pub batch_rows: usize,
    pub context: crate::features::LiveConfig,
    pub interim: crate::conn::InterimConfig,
}

/// Enforcement the replay would have made, per target, kind and rule.
#[derive(Clone, Debug, Default)]
struct Enforced {
    first_ts: f64,
    times: u64,
    max_ttl: u64,
    why: String,
}

/// Decisions a replay made, for the summary.
#[derive(Default)]
pub struct ActionSummary {
    pub actions: u64,
    /// (kind, target, rule) -> what happened.
    enforced: BTreeMap<(String, String, String), Enforced>,
    /// Alerts by rule, and those softened by a guard.
    alerts: BTreeMap<String, u64>,
    softened: BTreeMap<String, u64>,
}

impl ActionSummary {
    fn add(&mut self, a: &Action) {
        self.actions += 1;
        if a.kind == ActionKind::Alert {
            *self.alerts.entry(a.rule.clone()).or_default() += 1;
            if let Some(s) = &a.softened {
                let guard = if s.contains("allowlisted") {
                    "allowlisted"
                } else if s.contains("known-good") {
                    "known-good peer, forgeable evidence"
                } else {
                    "circuit breaker"
                };
                *self.softened.entry(guard.to_string()).or_default() += 1;
            }
            return;
        }
        let key = (
            a.kind.name().to_string(),
            a.target.to_string(),
            a.rule.clone(),
        );
        let e = self.enforced.entry(key).or_insert_with(|| Enforced {
            first_ts: a.ts,
            why: describe_facts(a),
            ..Enforced::default()
        });
        e.times += 1;
        e.max_ttl = e.max_ttl.max(a.ttl.as_secs());
    }

    /// Sources that would have been blocked or rate limited.
    pub fn enforced_targets(&self) -> Vec<(String, String, String)> {
        self.enforced.keys().cloned().collect()
    }

    pub fn render(&self, log: &Path, rules: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "  actions (dry run, rules: {rules}): {} -> {}",
            self.actions,
            log.display()
        );
        if self.enforced.is_empty() {
            let _ = writeln!(s, "    would block or limit: nobody");
        } else {
            let _ = writeln!(s, "    would block or limit:");
            for ((kind, target, rule), e) in &self.enforced {
                let _ = writeln!(
                    s,
                    "      {kind:<10} {target:<22} rule {rule:<18} first at {:.3}, {}x, ttl up to {}s; {}",
                    e.first_ts, e.times, e.max_ttl, e.why
                );
            }
        }
        for (rule, n) in &self.alerts {
            let _ = writeln!(s, "    alerts by rule {rule}: {n}");
        }
        for (guard, n) in &self.softened {
            let _ = writeln!(s, "    softened to alerts ({guard}): {n}");
        }
        s
    }
}

/// The evidence in a line: what the source did.
fn describe_facts(a: &Action) -> String {
    let Some(f) = &a.evidence.facts else {
        return format!("on one connection ({})", a.evidence.uid);
    };
    let mut parts = vec![format!(
        "in {}s: {} conns, {} failed ({} targets, {} ports, {} hosts), {} verified",
        f.window_secs,
        f.conns,
        f.failed,
        f.failed_targets,
        f.failed_ports,
        f.failed_hosts,
        f.verified
    )];
    for (label, c) in &f.flagged {
        parts.push(format!("{label} {} ({} verified)", c.conns, c.verified));
    }
    if let Some(svc) = &f.service {
        parts.push(format!(
            "to {}:{}/{}: {} conns, {} packets, {} auth failures, {} stalled",
            svc.resp_h,
            svc.resp_p,
            svc.proto,
            svc.conns,
            svc.packets,
            svc.auth_failures,
            svc.stalled
        ));
    }
    parts.join(", ")
}

/// Where a replay's scored records go.
pub struct ReplaySink {
    conn: ConnLogWriter<BufWriter<File>>,
    alerts: Option<(AlertWriter<BufWriter<File>>, PathBuf)>,
    pub labels: LabelSummary,
    pub interim_scored: u64,
    decider: Option<Decider>,
    admission: Admission,
    actions: Option<(BufWriter<File>, PathBuf)>,
    pub summary: ActionSummary,
    rules_source: String,
    /// The first write error; writing stops there and `finish` returns it.
    error: Option<io::Error>,
}

impl ReplaySink {
    /// `alerts` and `actions` are the temporary paths to write to.
    pub fn new(
        conn: ConnLogWriter<BufWriter<File>>,
        s: &ReplayScoring,
        alerts: Option<PathBuf>,
        actions: Option<PathBuf>,
    ) -> io::Result<ReplaySink> {
        let create = |p: &Path| File::create(p).map(|f| BufWriter::with_capacity(1 << 20, f));
        let alerts = match alerts {
            Some(p) if !s.models.is_empty() => Some((AlertWriter::new(create(&p)?)?, p)),
            _ => None,
        };
        let (decider, actions) = match (&s.rules, actions) {
            (Some((rules, _)), Some(p)) => (
                Some(Decider::new(
                    rules.clone(),
                    s.models.iter().map(ModelFacts::of).collect(),
                    s.evidence.clone(),
                )),
                Some((create(&p)?, p)),
            ),
            _ => (None, None),
        };
        Ok(ReplaySink {
            conn,
            alerts,
            labels: LabelSummary::new(&s.models),
            interim_scored: 0,
            decider,
            admission: Admission::new(s.admit.clone(), Allowlist::new(&s.allowlist)),
            actions,
            summary: ActionSummary::default(),
            rules_source: s.rules.as_ref().map(|r| r.1.clone()).unwrap_or_default(),
            error: None,
        })
    }

    fn keep(&mut self, r: io::Result<()>) {
        if let Err(e) = r {
            self.error.get_or_insert(e);
        }
    }

    /// The conn.log writer back, and the first error, for the driver to
    /// finish the log.
    pub fn into_parts(
        self,
    ) -> (
        ConnLogWriter<BufWriter<File>>,
        Option<io::Error>,
        ReplayOutcome,
    ) {
        (
            self.conn,
            self.error,
            ReplayOutcome {
                labels: self.labels,
                interim_scored: self.interim_scored,
                summary: self.summary,
                rules_source: self.rules_source,
                alerts: self.alerts.map(|(_, p)| p),
                actions: self.actions.map(|(_, p)| p),
            },
        )
    }
}

/// What scoring and deciding left, for the summary.
pub struct ReplayOutcome {
    pub labels: LabelSummary,
    pub interim_scored: u64,
    pub summary: ActionSummary,
    /// Where the rules came from.
    pub rules_source: String,
    /// Temporary paths of alerts.log and actions.log, when written.
    pub alerts: Option<PathBuf>,
    pub actions: Option<PathBuf>,
}

impl RecordSink for ReplaySink {
    type Reload = ();

    fn conn(&mut self, r: &ConnRecord) {
        if self.error.is_none() {
            let res = self.conn.write(r);
            self.keep(res);
        }
    }

    fn record(&mut self, r: &ConnRecord, scored: Option<Scored<'_>>) {
        self.scored(r, scored, Decider::record);
    }

    fn arrived(&mut self, r: &ConnRecord) {
        if self.error.is_some() {
            return;
        }
        if let Some(p) = self.decider.as_mut().and_then(|d| d.arrived(r)) {
            self.admit(p);
        }
    }

    fn held(&mut self, r: &ConnRecord, scored: Option<Scored<'_>>) {
        self.scored(r, scored, Decider::scored);
    }

    fn reload(&mut self, _models: &[Model], _extra: Option<()>) {}

    fn tick(&mut self) {}

    fn finish(&mut self) -> io::Result<()> {
        if let Some((w, _)) = &mut self.alerts {
            let res = w.flush();
            self.keep(res);
        }
        if let Some((w, _)) = &mut self.actions {
            let res = w.flush();
            self.keep(res);
        }
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl ReplaySink {
    /// A record after scoring; `decide` is the decider's path for it
    /// ([`Decider::scored`] for one held for the look-ahead, whose evidence
    /// was counted when it arrived).
    fn scored(
        &mut self,
        r: &ConnRecord,
        scored: Option<Scored<'_>>,
        decide: fn(&mut Decider, &ConnRecord, Option<Verdicts<'_>>) -> Option<Proposal>,
    ) {
        if self.error.is_some() {
            return;
        }
        if let Some(s) = &scored {
            if r.interim {
                self.interim_scored += 1;
            } else {
                self.labels.add(s.verdicts);
            }
            if let Some((w, _)) = &mut self.alerts {
                let res = w.write(r, s.models, s.verdicts, r.interim).map(|_| ());
                self.keep(res);
            }
        }
        let Some(decider) = &mut self.decider else {
            return;
        };
        let v = scored.map(Verdicts::from);
        let proposal = decide(decider, r, v);
        if let Some(p) = proposal {
            self.admit(p);
        }
    }

    fn admit(&mut self, p: Proposal) {
        let at = p.at;
        self.admission.expire(at);
        let (outcome, action) = self.admission.admit(p, at);
        if outcome == Outcome::Duplicate {
            return;
        }
        self.summary.add(&action);
        if let Some((w, _)) = &mut self.actions {
            let res = serde_json::to_writer(&mut *w, &action)
                .map_err(io::Error::other)
                .and_then(|()| w.write_all(b"\n"));
            self.keep(res);
        }
    }
}
