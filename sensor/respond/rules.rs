//! Rules: which records, verdicts and accumulated evidence lead to which
//! action.
//!
//! A rule file (YAML, or TOML by extension) lists rules with explicit
//! priorities; the lowest priority number is tried first and the first
//! rule that matches decides (ties keep file order). A rule has up to
//! three parts: `match` filters the record and its verdicts (one
//! connection), `evidence` sets thresholds on what the record's source
//! did over a window (`sensor/evidence`: failed attempts, distinct
//! targets, flagged connections, verified exchanges...), and `action`
//! says what to do, with a TTL that may escalate on repeat. A rule
//! without `evidence` acts on one connection; none of the bundled rules
//! that enforce does.
//!
//! Everything a rule names is checked at load against the models that are
//! running — a misspelt label would otherwise be a rule that silently
//! never fires — and every error names the rule and the key.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::action::{ActionKind, RateLimit};
use crate::conn::ConnRecord;
use crate::evidence::{Column, Windows};
use crate::features::spec::Transform;
use crate::model::{Model, Verdict};

/// Distinct evidence windows all rules together may use: each costs every
/// tracked source its counters once more.
pub const MAX_WINDOWS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("rule {rule:?}: {key}: {reason}")]
    Rule {
        rule: String,
        key: String,
        reason: String,
    },
}

fn bad(rule: &str, key: &str, reason: impl Into<String>) -> RuleError {
    RuleError::Rule {
        rule: rule.into(),
        key: key.into(),
        reason: reason.into(),
    }
}

/// The file: rules stay untyped until each is read on its own, so that
/// every error can name its rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rules: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    priority: i32,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default, rename = "match")]
    when: RawMatch,
    /// Column name (or `window_secs`) -> threshold, checked by hand so
    /// that an unknown column is named with the known ones.
    #[serde(default)]
    evidence: Option<BTreeMap<String, serde_json::Value>>,
    action: RawAction,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMatch {
    models: Vec<String>,
    labels: Vec<String>,
    /// Only verdicts the model itself flagged (its spec's alert rule);
    /// false lets thresholds below the model's own match.
    flagged: Option<bool>,
    min_probability: Option<f32>,
    min_score: Option<f32>,
    max_score: Option<f32>,
    record: Option<String>,
    proto: Vec<String>,
    service: Vec<String>,
    conn_state: Vec<String>,
    src: Vec<String>,
    dst: Vec<String>,
    not_src: Vec<String>,
    not_dst: Vec<String>,
    src_ports: Vec<PortSpec>,
    dst_ports: Vec<PortSpec>,
    context: BTreeMap<String, RawBound>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PortSpec {
    One(u16),
    Range(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBound {
    min: Option<f64>,
    max: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    kind: String,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    ttl_secs: Option<u64>,
    #[serde(default)]
    packets_per_sec: Option<u32>,
    #[serde(default)]
    bytes_per_sec: Option<u64>,
    #[serde(default)]
    burst: Option<u32>,
    #[serde(default)]
    hook: Option<String>,
    #[serde(default)]
    escalate: Option<RawEscalate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEscalate {
    factor: u32,
    max_ttl_secs: u64,
}

/// Which record a rule wants: interim snapshots of open connections,
/// final records, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    Any,
    Interim,
    Final,
}

/// Which end of the connection the action is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Source,
    Destination,
}

/// A context column's bound, on the count or mean itself (a log1p
/// transform in the spec is undone, so rules read as plain numbers).
#[derive(Clone, Debug, PartialEq)]
pub struct Bound {
    pub column: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Match {
    pub models: Vec<String>,
    pub labels: Vec<String>,
    pub flagged: bool,
    pub min_probability: Option<f32>,
    pub min_score: Option<f32>,
    pub max_score: Option<f32>,
    pub record: RecordKind,
    pub proto: Vec<String>,
    pub service: Vec<String>,
    pub conn_state: Vec<String>,
    pub src: Vec<IpNet>,
    pub dst: Vec<IpNet>,
    pub not_src: Vec<IpNet>,
    pub not_dst: Vec<IpNet>,
    pub src_ports: Vec<(u16, u16)>,
    pub dst_ports: Vec<(u16, u16)>,
    pub context: Vec<Bound>,
    /// Whether the rule looks at verdicts at all: a rule with evidence and
    /// no verdict key matches records that were not scored too.
    pub needs_verdict: bool,
}

/// A threshold on one evidence column.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvidenceBound {
    pub column: Column,
    pub min: Option<u64>,
    pub max: Option<u64>,
}

impl EvidenceBound {
    pub fn holds(&self, x: f64) -> bool {
        self.min.is_none_or(|m| x >= m as f64) && self.max.is_none_or(|m| x <= m as f64)
    }
}

/// A rule's `evidence`: thresholds over one window.
#[derive(Clone, Debug, PartialEq)]
pub struct EvidenceMatch {
    pub window_secs: f64,
    /// Index of the window in [`RuleSet::windows`].
    pub window: usize,
    pub bounds: Vec<EvidenceBound>,
}

/// How a repeated enforcement on the same target grows: `ttl` times
/// `factor` to the number of earlier ones (within a day), at most
/// `max_ttl`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Escalate {
    pub factor: u32,
    pub max_ttl: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub name: String,
    pub priority: i32,
    pub when: Match,
    pub evidence: Option<EvidenceMatch>,
    pub kind: ActionKind,
    pub target: Target,
    pub ttl: Duration,
    pub escalate: Option<Escalate>,
}

impl Rule {
    /// Whether the rule reads what scoring adds: verdicts, the model's
    /// host-context columns, or evidence of flagged connections. The others
    /// decide on a record as it arrives, before the scorer's look-ahead
    /// hold ends.
    pub fn reads_scores(&self) -> bool {
        self.when.needs_verdict
            || !self.when.context.is_empty()
            || self.evidence.as_ref().is_some_and(|e| {
                e.bounds.iter().any(|b| {
                    matches!(
                        b.column,
                        Column::Flagged
                            | Column::VerifiedFlagged
                            | Column::ServiceFlagged
                            | Column::ServiceVerifiedFlagged
                    )
                })
            })
    }

    /// Whether somebody else could make this rule fire for an address by
    /// forging it. Only a rule whose every lower bound is on connections
    /// the source verified (`verified*` columns) cannot be; a rule without
    /// evidence rests on one record, which is forgeable unless the record
    /// itself is verified (the caller knows that).
    pub fn forgeable_evidence(&self) -> bool {
        let Some(ev) = &self.evidence else {
            return true;
        };
        let mut lower = ev.bounds.iter().filter(|b| b.min.is_some_and(|m| m > 0));
        let context_lower = self.when.context.iter().any(|b| b.min.is_some());
        let first = lower.next();
        first.is_none()
            || context_lower
            || first.is_some_and(|b| b.column.forgeable())
            || lower.any(|b| b.column.forgeable())
    }
}

/// What a model offers rules: its labels and its columns.
#[derive(Clone, Debug)]
pub struct ModelFacts {
    pub name: String,
    pub labels: Vec<String>,
    /// Column name -> (index, transform).
    pub columns: HashMap<String, (usize, Transform)>,
}

impl ModelFacts {
    pub fn of(m: &Model) -> ModelFacts {
        let spec = m.spec();
        let labels = match spec.outputs.iter().find_map(|o| o.classes.clone()) {
            Some(classes) => classes,
            None => vec!["anomalous".into(), "normal".into()],
        };
        let columns = spec
            .features
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.clone(), (i, f.transform)))
            .collect();
        ModelFacts {
            name: spec.model.name.clone(),
            labels,
            columns,
        }
    }

    /// The bundled models' facts: what tests and benches of the bundled
    /// rules check them against, so that they follow the models when
    /// these are retrained with other classes. Loaded once per process
    /// (loading optimises the models' graphs).
    pub fn bundled() -> Result<Vec<ModelFacts>, crate::model::bundled::LoadError> {
        static FACTS: std::sync::OnceLock<Vec<ModelFacts>> = std::sync::OnceLock::new();
        if let Some(f) = FACTS.get() {
            return Ok(f.clone());
        }
        let loaded = crate::model::bundled::load_models(&[])?
            .iter()
            .map(ModelFacts::of)
            .collect();
        Ok(FACTS.get_or_init(|| loaded).clone())
    }

    /// The bundled model called `name` (none when no bundled model is).
    pub fn bundled_named(
        name: &str,
    ) -> Result<Option<ModelFacts>, crate::model::bundled::LoadError> {
        Ok(ModelFacts::bundled()?.into_iter().find(|f| f.name == name))
    }
}

/// What load-time checks need besides the models.
#[derive(Clone, Debug, Default)]
pub struct LoadContext {
    /// Ranges no rule may act on (the static part of the allowlist).
    pub allowlist: Vec<IpNet>,
    /// Configured hook names.
    pub hooks: Vec<String>,
    /// Leave out rules that name a model that is not loaded, instead of
    /// refusing the file: for the bundled rules, written for the bundled
    /// models, when an operator runs models of their own.
    pub skip_rules_for_absent_models: bool,
    /// `evidence.max_targets_per_source`: distinct counts are exact up to
    /// it, so no threshold may ask for more (0: the default, 64).
    pub max_targets_per_source: usize,
}

/// The rules in the order they are tried.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// The distinct evidence windows the rules use, in seconds.
    pub windows: Vec<f64>,
}

/// One record's verdicts, as rules see them.
pub struct Scored<'a> {
    pub record: &'a ConnRecord,
    /// One verdict per model, in `models` order.
    pub verdicts: &'a [Verdict],
    pub models: &'a [ModelFacts],
    /// Unscaled feature row of each model for this record.
    pub rows: &'a [&'a [f64]],
}

/// A rule's decision about one record.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub rule: String,
    pub kind: ActionKind,
    pub target: IpAddr,
    pub ttl: Duration,
    /// Index of the model whose verdict matched (none for a rule that
    /// needs no verdict).
    pub model: Option<usize>,
    /// Index of the rule in the set.
    pub index: usize,
    pub escalate: Option<Escalate>,
}

impl RuleSet {
    /// Whether a rule file is YAML: anything but `.toml` is.
    pub fn is_yaml(path: &Path) -> bool {
        !path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
    }

    /// Reads and checks a rule file.
    pub fn load(
        path: &Path,
        models: &[ModelFacts],
        cx: &LoadContext,
    ) -> Result<RuleSet, RuleError> {
        let text = std::fs::read_to_string(path).map_err(|e| RuleError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        RuleSet::parse(&text, RuleSet::is_yaml(path), models, cx).map_err(|e| match e {
            RuleError::File { reason, .. } => RuleError::File {
                path: path.display().to_string(),
                reason,
            },
            e => e,
        })
    }

    pub fn parse(
        text: &str,
        yaml: bool,
        models: &[ModelFacts],
        cx: &LoadContext,
    ) -> Result<RuleSet, RuleError> {
        let file_err = |reason: String| RuleError::File {
            path: String::new(),
            reason,
        };
        let file: RuleFile = if yaml {
            let de = serde_yaml_ng::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| file_err(e.to_string()))?
        } else {
            let de = toml::Deserializer::parse(text).map_err(|e| file_err(e.to_string()))?;
            serde_path_to_error::deserialize(de).map_err(|e| file_err(e.to_string()))?
        };
        let mut rules = Vec::new();
        let mut names = std::collections::HashSet::new();
        let mut windows: Vec<f64> = Vec::new();
        for (i, value) in file.rules.into_iter().enumerate() {
            let name = value
                .get("name")
                .and_then(|n| n.as_str())
                .map_or_else(|| format!("rules[{i}]"), str::to_owned);
            let raw: RawRule = serde_path_to_error::deserialize(value).map_err(|e| {
                let path = e.path().to_string();
                bad(
                    &name,
                    if path == "." { "(rule)" } else { &path },
                    e.inner().to_string(),
                )
            })?;
            if !names.insert(raw.name.clone()) {
                return Err(bad(&raw.name, "name", "is used by another rule"));
            }
            if !raw.enabled {
                continue;
            }
            let absent = raw
                .when
                .models
                .iter()
                .any(|m| !models.iter().any(|f| &f.name == m));
            if absent && cx.skip_rules_for_absent_models {
                tracing::info!(rule = %raw.name, "rule left out: it names a model that is not loaded");
                continue;
            }
            rules.push(check(raw, models, cx, &mut windows)?);
        }
        // Stable: equal priorities keep file order.
        rules.sort_by_key(|r| r.priority);
        Ok(RuleSet { rules, windows })
    }

    /// The windows as the evidence stage takes them.
    pub fn evidence_windows(&self) -> Windows {
        Windows(self.windows.clone())
    }

    /// Classes of each model that no rule can ever match (a model whose
    /// verdicts only reach alerts.log is usually a rule file written for
    /// other models). Benign classes (`benign`, `normal`) are left out.
    pub fn unused_classes(&self, models: &[ModelFacts]) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        for m in models {
            let unused: Vec<String> = m
                .labels
                .iter()
                .filter(|l| !matches!(l.as_str(), "benign" | "normal"))
                .filter(|l| {
                    !self.rules.iter().any(|r| {
                        let w = &r.when;
                        (w.models.is_empty() || w.models.contains(&m.name))
                            && (w.labels.is_empty() || w.labels.contains(l))
                    })
                })
                .cloned()
                .collect();
            if !unused.is_empty() {
                out.push((m.name.clone(), unused));
            }
        }
        out
    }

    /// Every rule whose `match` holds for the record, evidence aside, in
    /// the order rules are tried: what calibration measures evidence for
    /// (a rule further down fires when those before it do not, so each
    /// must stay quiet on its own).
    pub fn matching<'s>(&'s self, s: &'s Scored<'s>) -> impl Iterator<Item = usize> + 's {
        self.rules
            .iter()
            .enumerate()
            .filter(move |(_, r)| r.matched(s).is_some())
            .map(|(i, _)| i)
    }

    /// The first rule that matches, if any; `evidence(rule index, its
    /// evidence)` says whether a rule's evidence thresholds hold.
    pub fn decide(
        &self,
        s: &Scored,
        evidence: impl FnMut(usize, &EvidenceMatch) -> bool,
    ) -> Option<Decision> {
        self.decide_among(s, |_| true, evidence)
    }

    /// [`RuleSet::decide`] over the rules `include` accepts only.
    pub fn decide_among(
        &self,
        s: &Scored,
        include: impl Fn(&Rule) -> bool,
        mut evidence: impl FnMut(usize, &EvidenceMatch) -> bool,
    ) -> Option<Decision> {
        self.rules.iter().enumerate().find_map(|(i, r)| {
            if !include(r) {
                return None;
            }
            let mut d = r.decide(s)?;
            if let Some(ev) = &r.evidence {
                if !evidence(i, ev) {
                    return None;
                }
            }
            d.index = i;
            Some(d)
        })
    }
}

impl Rule {
    fn decide(&self, s: &Scored) -> Option<Decision> {
        let model = self.matched(s)?;
        let target = match self.target {
            Target::Source => s.record.orig_h,
            Target::Destination => s.record.resp_h,
        };
        Some(Decision {
            rule: self.name.clone(),
            kind: self.kind.clone(),
            target,
            ttl: self.ttl,
            model,
            index: 0,
            escalate: self.escalate,
        })
    }

    /// Whether the rule's `match` holds for the record (its evidence
    /// aside): `Some` with the index of the model whose verdict matched
    /// (`None` inside for a rule that needs no verdict).
    fn matched(&self, s: &Scored) -> Option<Option<usize>> {
        let m = &self.when;
        let r = s.record;
        match m.record {
            RecordKind::Interim if !r.interim => return None,
            RecordKind::Final if r.interim => return None,
            _ => {}
        }
        if !m.proto.is_empty() && !m.proto.iter().any(|p| p == r.proto.as_str()) {
            return None;
        }
        if !m.conn_state.is_empty() && !m.conn_state.iter().any(|c| c == r.conn_state.as_str()) {
            return None;
        }
        if !m.service.is_empty() && !r.service.iter().any(|s| m.service.iter().any(|w| w == s)) {
            return None;
        }
        let within = |nets: &[IpNet], a: IpAddr| nets.iter().any(|n| n.contains(&a));
        if (!m.src.is_empty() && !within(&m.src, r.orig_h))
            || (!m.dst.is_empty() && !within(&m.dst, r.resp_h))
            || within(&m.not_src, r.orig_h)
            || within(&m.not_dst, r.resp_h)
        {
            return None;
        }
        let in_ports =
            |ps: &[(u16, u16)], p: u16| ps.is_empty() || ps.iter().any(|&(a, b)| a <= p && p <= b);
        if !in_ports(&m.src_ports, r.orig_p) || !in_ports(&m.dst_ports, r.resp_p) {
            return None;
        }
        if !m.needs_verdict {
            return Some(None);
        }
        Some(Some(s.models.iter().enumerate().position(
            |(i, facts)| {
                (m.models.is_empty() || m.models.contains(&facts.name))
                    && s.verdicts.get(i).is_some_and(|v| verdict_matches(m, v))
                    && s.rows
                        .get(i)
                        .is_some_and(|row| context_matches(m, facts, row))
            },
        )?))
    }
}

/// One line per rule for `osprey check --rules`.
pub fn summary(r: &Rule) -> String {
    let m = &r.when;
    let mut when = Vec::new();
    let list = |k: &str, v: &[String]| (!v.is_empty()).then(|| format!("{k}={}", v.join(",")));
    let nets = |k: &str, v: &[IpNet]| {
        (!v.is_empty()).then(|| {
            format!(
                "{k}={}",
                v.iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            )
        })
    };
    when.extend(list("models", &m.models));
    when.extend(list("labels", &m.labels));
    if !m.flagged {
        when.push("flagged=any".into());
    }
    when.extend(m.min_probability.map(|p| format!("probability>={p}")));
    when.extend(m.min_score.map(|p| format!("score>={p}")));
    when.extend(m.max_score.map(|p| format!("score<={p}")));
    match m.record {
        RecordKind::Interim => when.push("interim".into()),
        RecordKind::Final => when.push("final".into()),
        RecordKind::Any => {}
    }
    when.extend(list("proto", &m.proto));
    when.extend(list("service", &m.service));
    when.extend(list("conn_state", &m.conn_state));
    when.extend(nets("src", &m.src));
    when.extend(nets("dst", &m.dst));
    when.extend(nets("not_src", &m.not_src));
    when.extend(nets("not_dst", &m.not_dst));
    for (k, ps) in [("src_ports", &m.src_ports), ("dst_ports", &m.dst_ports)] {
        if !ps.is_empty() {
            let v: Vec<String> = ps
                .iter()
                .map(|&(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect();
            when.push(format!("{k}={}", v.join(",")));
        }
    }
    for b in &m.context {
        when.extend(b.min.map(|x| format!("{}>={x}", b.column)));
        when.extend(b.max.map(|x| format!("{}<={x}", b.column)));
    }
    if let Some(ev) = &r.evidence {
        let mut parts = Vec::new();
        for b in &ev.bounds {
            parts.extend(b.min.map(|x| format!("{}>={x}", b.column.name())));
            parts.extend(b.max.map(|x| format!("{}<={x}", b.column.name())));
        }
        let note = match (&r.kind, r.forgeable_evidence()) {
            (ActionKind::Alert, _) => "",
            (_, true) => " (forgeable: alert only for known-good peers)",
            (_, false) => " (unforgeable)",
        };
        when.push(format!("{} in {}s{note}", parts.join(" "), ev.window_secs));
    }
    let action = match &r.kind {
        ActionKind::RateLimit(l) => match (l.packets_per_sec, l.bytes_per_sec) {
            (Some(p), _) => format!("rate_limit {p} packets/s burst {}", l.burst),
            (_, Some(b)) => format!("rate_limit {b} bytes/s burst {}", l.burst),
            _ => "rate_limit".into(),
        },
        ActionKind::Hook { hook } => format!("hook {hook}"),
        k => k.name().to_string(),
    };
    let target = match r.target {
        Target::Source => "source",
        Target::Destination => "destination",
    };
    let mut ttl = if r.ttl.is_zero() {
        String::new()
    } else {
        format!(" for {}s", r.ttl.as_secs())
    };
    if let Some(e) = r.escalate {
        ttl += &format!(
            " (x{} on repeat, at most {}s)",
            e.factor,
            e.max_ttl.as_secs()
        );
    }
    let when = if when.is_empty() {
        if m.needs_verdict {
            "any flagged verdict".to_string()
        } else {
            "any record".to_string()
        }
    } else {
        when.join(" ")
    };
    format!(
        "{:>5} {:<20} {action} {target}{ttl} when {when}",
        r.priority, r.name
    )
}

fn verdict_matches(m: &Match, v: &Verdict) -> bool {
    if m.flagged && !v.flagged {
        return false;
    }
    if !m.labels.is_empty() {
        let label = v.label_name();
        if !m.labels.iter().any(|l| l == label) {
            return false;
        }
    }
    let at_least =
        |want: Option<f32>, have: Option<f32>| want.is_none_or(|w| have.is_some_and(|h| h >= w));
    at_least(m.min_probability, v.probability)
        && at_least(m.min_score, v.score)
        && m.max_score.is_none_or(|w| v.score.is_some_and(|h| h <= w))
}

fn context_matches(m: &Match, facts: &ModelFacts, row: &[f64]) -> bool {
    m.context.iter().all(|b| {
        let Some(&(i, transform)) = facts.columns.get(&b.column) else {
            // Another model's column: this model cannot satisfy the rule.
            return false;
        };
        let Some(&x) = row.get(i) else { return false };
        let x = match transform {
            Transform::None => x,
            Transform::Log1p => x.signum() * x.abs().exp_m1(),
        };
        b.min.is_none_or(|lo| x >= lo) && b.max.is_none_or(|hi| x <= hi)
    })
}

fn nets(rule: &str, key: &str, v: &[String]) -> Result<Vec<IpNet>, RuleError> {
    v.iter()
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| bad(rule, key, format!("{s:?} is not an address or CIDR")))
        })
        .collect()
}

fn ports(rule: &str, key: &str, v: &[PortSpec]) -> Result<Vec<(u16, u16)>, RuleError> {
    v.iter()
        .map(|p| match p {
            PortSpec::One(n) => Ok((*n, *n)),
            PortSpec::Range(s) => {
                let parse = |x: &str| x.trim().parse::<u16>().ok();
                let r = match s.split_once('-') {
                    Some((a, b)) => parse(a).zip(parse(b)),
                    None => parse(s).map(|n| (n, n)),
                };
                r.filter(|(a, b)| a <= b)
                    .ok_or_else(|| bad(rule, key, format!("{s:?} is not a port or a range lo-hi")))
            }
        })
        .collect()
}

/// Reads a rule's `evidence` map; new windows are added to `windows`.
fn evidence(
    name: &str,
    raw: BTreeMap<String, serde_json::Value>,
    cx: &LoadContext,
    windows: &mut Vec<f64>,
) -> Result<EvidenceMatch, RuleError> {
    let max_targets = if cx.max_targets_per_source == 0 {
        crate::evidence::EvidenceConfig::default().max_targets_per_source
    } else {
        cx.max_targets_per_source
    };
    let window_secs = match raw.get("window_secs") {
        None => {
            return Err(bad(
                name,
                "evidence.window_secs",
                "every evidence needs its window",
            ))
        }
        Some(v) => match v.as_u64() {
            Some(0) => return Err(bad(name, "evidence.window_secs", "must be positive")),
            Some(s) if s as f64 > crate::evidence::stage::MAX_WINDOW_SECS => {
                return Err(bad(
                    name,
                    "evidence.window_secs",
                    format!("{s} is longer than a day"),
                ))
            }
            Some(s) => s as f64,
            None => {
                return Err(bad(
                    name,
                    "evidence.window_secs",
                    format!("{v} is not a whole number of seconds"),
                ))
            }
        },
    };
    let mut bounds = Vec::new();
    for (key, v) in raw {
        if key == "window_secs" {
            continue;
        }
        let path = format!("evidence.{key}");
        let Some(column) = Column::parse(&key) else {
            let known: Vec<&str> = crate::evidence::column::COLUMNS
                .iter()
                .map(|(_, n)| *n)
                .collect();
            return Err(bad(
                name,
                &path,
                format!("no evidence column {key:?} (known: {})", known.join(", ")),
            ));
        };
        let count = |x: &serde_json::Value, which: &str| {
            x.as_u64().ok_or_else(|| {
                bad(
                    name,
                    &format!("{path}{which}"),
                    format!("{x} is not a count (a whole number >= 0)"),
                )
            })
        };
        let (min, max) = match &v {
            serde_json::Value::Number(_) => (Some(count(&v, "")?), None),
            serde_json::Value::Object(o) => {
                if let Some(k) = o.keys().find(|k| !matches!(k.as_str(), "min" | "max")) {
                    return Err(bad(
                        name,
                        &path,
                        format!("unknown key {k:?} (expected min, max)"),
                    ));
                }
                let min = o.get("min").map(|x| count(x, ".min")).transpose()?;
                let max = o.get("max").map(|x| count(x, ".max")).transpose()?;
                if min.is_none() && max.is_none() {
                    return Err(bad(name, &path, "needs min or max"));
                }
                if let (Some(a), Some(b)) = (min, max) {
                    if a > b {
                        return Err(bad(name, &path, format!("min {a} is above max {b}")));
                    }
                }
                (min, max)
            }
            other => {
                return Err(bad(
                    name,
                    &path,
                    format!("{other} is neither a count nor {{min, max}}"),
                ))
            }
        };
        if column.distinct().is_some() && min.is_some_and(|m| m as usize > max_targets) {
            return Err(bad(
                name,
                &path,
                format!(
                    "distinct counts are exact up to {max_targets} \
                     (evidence.max_targets_per_source); raise it or lower the threshold"
                ),
            ));
        }
        bounds.push(EvidenceBound { column, min, max });
    }
    if bounds.is_empty() {
        return Err(bad(name, "evidence", "names no column"));
    }
    let window = match windows.iter().position(|&w| w == window_secs) {
        Some(i) => i,
        None if windows.len() < MAX_WINDOWS => {
            windows.push(window_secs);
            windows.len() - 1
        }
        None => {
            return Err(bad(
                name,
                "evidence.window_secs",
                format!(
                    "the rules use more than {MAX_WINDOWS} distinct windows ({windows:?} and {window_secs})"
                ),
            ))
        }
    };
    Ok(EvidenceMatch {
        window_secs,
        window,
        bounds,
    })
}

fn check(
    raw: RawRule,
    models: &[ModelFacts],
    cx: &LoadContext,
    windows: &mut Vec<f64>,
) -> Result<Rule, RuleError> {
    let name = raw.name.as_str();
    let w = raw.when;
    let evidence = raw
        .evidence
        .map(|e| evidence(name, e, cx, windows))
        .transpose()?;
    let needs_verdict = evidence.is_none()
        || !w.models.is_empty()
        || !w.labels.is_empty()
        || w.flagged.is_some()
        || w.min_probability.is_some()
        || w.min_score.is_some()
        || w.max_score.is_some()
        || !w.context.is_empty();
    if let Some(ev) = &evidence {
        if ev.bounds.iter().any(|b| b.column.is_flagged()) && !needs_verdict {
            return Err(bad(
                name,
                "evidence",
                "flagged columns count the rule's own labels: name match.models or match.labels",
            ));
        }
    }
    for m in &w.models {
        if !models.iter().any(|f| &f.name == m) {
            let known: Vec<_> = models.iter().map(|f| f.name.as_str()).collect();
            return Err(bad(
                name,
                "match.models",
                format!("no model {m:?} is loaded (loaded: {known:?})"),
            ));
        }
    }
    let candidates: Vec<&ModelFacts> = models
        .iter()
        .filter(|f| w.models.is_empty() || w.models.contains(&f.name))
        .collect();
    for l in &w.labels {
        if !candidates.iter().any(|f| f.labels.contains(l)) {
            return Err(bad(
                name,
                "match.labels",
                format!("no matching model has the label {l:?}"),
            ));
        }
    }
    for c in w.context.keys() {
        if !candidates.iter().any(|f| f.columns.contains_key(c)) {
            return Err(bad(
                name,
                "match.context",
                format!("no matching model has a column {c:?}"),
            ));
        }
    }
    let record = match w.record.as_deref() {
        None | Some("any") => RecordKind::Any,
        Some("interim") => RecordKind::Interim,
        Some("final") => RecordKind::Final,
        Some(o) => {
            return Err(bad(
                name,
                "match.record",
                format!("{o:?}: expected interim, final or any"),
            ))
        }
    };
    for p in &w.proto {
        if !matches!(p.as_str(), "tcp" | "udp" | "icmp") {
            return Err(bad(
                name,
                "match.proto",
                format!("{p:?}: expected tcp, udp or icmp"),
            ));
        }
    }
    const STATES: [&str; 13] = [
        "S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH",
    ];
    for c in &w.conn_state {
        if !STATES.contains(&c.as_str()) {
            return Err(bad(
                name,
                "match.conn_state",
                format!("{c:?} is not a Zeek conn_state"),
            ));
        }
    }
    let when = Match {
        labels: w.labels,
        flagged: w.flagged.unwrap_or(true),
        min_probability: w.min_probability,
        min_score: w.min_score,
        max_score: w.max_score,
        record,
        proto: w.proto,
        service: w.service,
        conn_state: w.conn_state,
        src: nets(name, "match.src", &w.src)?,
        dst: nets(name, "match.dst", &w.dst)?,
        not_src: nets(name, "match.not_src", &w.not_src)?,
        not_dst: nets(name, "match.not_dst", &w.not_dst)?,
        src_ports: ports(name, "match.src_ports", &w.src_ports)?,
        dst_ports: ports(name, "match.dst_ports", &w.dst_ports)?,
        context: w
            .context
            .into_iter()
            .map(|(column, b)| Bound {
                column,
                min: b.min,
                max: b.max,
            })
            .collect(),
        models: w.models,
        needs_verdict,
    };
    let a = raw.action;
    let target = match a.target.as_deref() {
        None | Some("source") => Target::Source,
        Some("destination") => Target::Destination,
        Some(o) => {
            return Err(bad(
                name,
                "action.target",
                format!("{o:?}: expected source or destination"),
            ))
        }
    };
    let kind = match a.kind.as_str() {
        "alert" => ActionKind::Alert,
        "block" => ActionKind::Block,
        "quarantine_pod" => ActionKind::QuarantinePod,
        "rate_limit" => {
            let limit = RateLimit {
                packets_per_sec: a.packets_per_sec,
                bytes_per_sec: a.bytes_per_sec,
                burst: a.burst.unwrap_or(0),
            };
            match (limit.packets_per_sec, limit.bytes_per_sec) {
                (Some(0), _) | (_, Some(0)) => {
                    return Err(bad(
                        name,
                        "action",
                        "a rate of zero is a block: use kind block",
                    ))
                }
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    return Err(bad(
                        name,
                        "action",
                        "a rate_limit needs exactly one of packets_per_sec and bytes_per_sec",
                    ))
                }
            }
            if limit.burst == 0 {
                return Err(bad(name, "action.burst", "must be positive"));
            }
            ActionKind::RateLimit(limit)
        }
        "hook" => {
            let h = a
                .hook
                .clone()
                .ok_or_else(|| bad(name, "action.hook", "a hook action names its hook"))?;
            if !cx.hooks.contains(&h) {
                return Err(bad(
                    name,
                    "action.hook",
                    format!("no hook {h:?} is configured"),
                ));
            }
            ActionKind::Hook { hook: h }
        }
        o => {
            return Err(bad(
                name,
                "action.kind",
                format!("{o:?}: expected alert, block, rate_limit, quarantine_pod or hook"),
            ))
        }
    };
    if !matches!(kind, ActionKind::RateLimit(_))
        && (a.packets_per_sec.is_some() || a.bytes_per_sec.is_some() || a.burst.is_some())
    {
        return Err(bad(
            name,
            "action",
            "rates and burst belong to rate_limit actions",
        ));
    }
    if !matches!(kind, ActionKind::Hook { .. }) && a.hook.is_some() {
        return Err(bad(name, "action.hook", "only hook actions name a hook"));
    }
    let ttl = match (&kind, a.ttl_secs) {
        (ActionKind::Alert, None) => Duration::ZERO,
        (ActionKind::Alert, Some(_)) => {
            return Err(bad(
                name,
                "action.ttl_secs",
                "alerts enforce nothing and have no TTL",
            ))
        }
        (_, None) => return Err(bad(name, "action.ttl_secs", "every enforcement has a TTL")),
        (_, Some(0)) => return Err(bad(name, "action.ttl_secs", "must be positive")),
        (_, Some(s)) => Duration::from_secs(s),
    };
    // A rule that could only ever act on allowlisted addresses is a
    // mistake worth refusing outright (the runtime check would refuse each
    // action anyway). A range that only overlaps the allowlist is fine:
    // the runtime check spares the allowlisted part.
    if !matches!(kind, ActionKind::Alert) {
        let (key, ranges) = match target {
            Target::Source => ("match.src", &when.src),
            Target::Destination => ("match.dst", &when.dst),
        };
        for r in ranges {
            if let Some(a) = cx.allowlist.iter().find(|a| a.contains(r)) {
                return Err(bad(
                    name,
                    key,
                    format!("{r} lies inside the allowlisted {a}"),
                ));
            }
        }
    }
    let escalate = match (&kind, a.escalate) {
        (_, None) => None,
        (ActionKind::Alert, Some(_)) => {
            return Err(bad(
                name,
                "action.escalate",
                "alerts have no TTL to escalate",
            ))
        }
        (_, Some(e)) if e.factor < 2 => {
            return Err(bad(name, "action.escalate.factor", "must be at least 2"))
        }
        (_, Some(e)) if Duration::from_secs(e.max_ttl_secs) < ttl => {
            return Err(bad(
                name,
                "action.escalate.max_ttl_secs",
                format!("is below ttl_secs ({})", ttl.as_secs()),
            ))
        }
        (_, Some(e)) => Some(Escalate {
            factor: e.factor,
            max_ttl: Duration::from_secs(e.max_ttl_secs),
        }),
    };
    Ok(Rule {
        name: raw.name,
        priority: raw.priority,
        when,
        evidence,
        kind,
        target,
        ttl,
        escalate,
    })
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
