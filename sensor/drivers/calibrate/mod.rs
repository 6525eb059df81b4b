//! `osprey calibrate`: thresholds tuned to a deployment's own benign
//! traffic, for a target false-positive rate.
//!
//! Models trained on a lab flag a share of any real network's benign
//! traffic (the bundled ones flag an eighth of the Zeek oracle's traces),
//! and rules written for a lab fire on hosts that merely behave unlike
//! it. An operator has what it takes to fix that: a capture or the Zeek
//! conn.logs of a stretch of normal traffic. Calibration replays it
//! through the daemon's own stages — the conn engine for captures (as
//! `osprey replay`), the scorer with its streaming host context, the
//! evidence stage and the rules (`respond/decide.rs`) — and raises each
//! threshold until that traffic stays quiet:
//!
//! - an anomaly model's `threshold` and a classifier's
//!   `alert.min_probability` become the lowest value that flags at most
//!   `floor(n * target_fpr)` of the `n` benign connections (`threshold.rs`);
//!   a connection counts as flagged when its final record or any interim
//!   snapshot is, as the daemon alerts on either. A classifier's value
//!   stops at [`MAX_MIN_PROBABILITY`], so it can still flag;
//! - every rule threshold on an evidence column goes above the highest
//!   value any benign source reached in the rule's window while the
//!   rule's `match` held (with the calibrated models' verdicts), so no
//!   source of the input would have triggered it. A rule acts on a host,
//!   and one wrongly blocked host is one too many: the target rate is for
//!   the models' per-connection flags, not for rules.
//!
//! Calibration only ever raises a threshold: one already above what the
//! benign traffic needs was set for a reason (a rule's author, training's
//! margin) and stays. It refuses fewer than `ceil(10 / target_fpr)`
//! benign connections, so that at least ten lie above each quantile.
//!
//! Each input is its own trace (host context and evidence start afresh),
//! as in `osprey featurize`. Everything is computed, written to a hidden
//! folder beside the output folder and checked there — the specs load
//! with their ONNX copies, the rule file loads as the calibrated rules —
//! before any file is moved into the output folder: on any error it
//! receives nothing.

mod input;
mod measure;
pub mod threshold;
mod write;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

pub use input::{ReadError, EVIDENCE_COLUMNS};
pub use write::Rewritten;

use crate::conn::{ConnRecord, EngineConfig, InterimConfig};
use crate::drivers::featurize::needed_columns;
use crate::evidence::EvidenceConfig;
use crate::features::spec::{Meaning, ModelKind};
use crate::features::{FeatureSpec, LiveConfig, SpecError};
use crate::metrics::Metrics;
use crate::model::{Model, ModelError};
use crate::respond::decide::Decider;
use crate::respond::rules::{LoadContext, ModelFacts, RuleError, RuleSet};
use crate::score::live::{run_scorer, ModelSet, RecordBatch, Reload, ScorerOptions};
use input::Reader;
use measure::{Measure, Measured};
use write::{Edit, Setting, Staging};

/// The highest `alert.min_probability` calibration writes: at 1.0 only a
/// verdict with no probability left for the benign class could flag, and
/// a classifier that sure of benign traffic needs retraining, not a
/// threshold.
pub const MAX_MIN_PROBABILITY: f64 = 0.99;

/// The largest target false-positive rate: beyond half, "flagged" would
/// be the normal case.
pub const MAX_TARGET_FPR: f64 = 0.5;

/// Why calibration stopped. Nothing was written to the output folder.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error("--target-fpr must lie in (0, {MAX_TARGET_FPR}], not {0}")]
    TargetFpr(f64),
    #[error("{0}: the output folder exists and is not a folder")]
    OutNotDir(PathBuf),
    #[error("no model to calibrate")]
    NoModels,
    #[error(transparent)]
    SpecFile(#[from] SpecError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{path}: {message}")]
    Spec { path: PathBuf, message: String },
    #[error("{origin}: {source}")]
    RuleFile {
        origin: String,
        #[source]
        source: RuleError,
    },
    #[error("rules: {0}")]
    Rules(String),
    #[error("cannot read input {path}")]
    Input {
        path: PathBuf,
        #[source]
        source: Box<ReadError>,
    },
    #[error(
        "{records} benign connection(s) are too few for a target false-positive rate of \
         {target_fpr}: calibration needs at least {need} (ceil(10 / target_fpr), so that 10 \
         lie above the quantile); give more benign traffic or a higher --target-fpr"
    )]
    TooFew {
        records: u64,
        need: u64,
        target_fpr: f64,
    },
    #[error("model {model}: {message}")]
    Threshold { model: String, message: String },
    #[error("scoring failed on {unscored} record(s) of {path} (the log says why)")]
    Scoring { path: PathBuf, unscored: u64 },
    #[error("two outputs would be written as {0}: give the models distinct file names")]
    Clash(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl CalibrateError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CalibrateError + '_ {
        move |source| CalibrateError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A model to calibrate.
#[derive(Clone, Debug)]
pub struct ModelInput {
    /// Its spec, next to its ONNX file.
    pub spec: PathBuf,
    /// Where it came from, for the report (a path, or "bundled ...").
    pub origin: String,
}

/// The rules to calibrate, as the daemon would load them.
#[derive(Clone, Debug)]
pub struct RuleInput {
    pub text: String,
    /// YAML, else TOML.
    pub yaml: bool,
    /// Where the text came from, for messages and the report.
    pub origin: String,
    pub context: LoadContext,
}

/// Everything `calibrate` needs, already validated by the caller.
#[derive(Clone, Debug)]
pub struct CalibrateOptions {
    pub inputs: Vec<PathBuf>,
    pub models: Vec<ModelInput>,
    pub rules: Option<RuleInput>,
    pub target_fpr: f64,
    pub out: PathBuf,
    /// How captures become records (interim snapshots are turned on with
    /// `interim`, as the daemon's scorer sees them).
    pub engine: EngineConfig,
    pub filter: Option<String>,
    pub interim: InterimConfig,
    pub context: LiveConfig,
    pub evidence: EvidenceConfig,
    pub batch_rows: usize,
}

/// What was measured and decided: `calibration.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub target_fpr: f64,
    pub inputs: Vec<String>,
    /// Benign connections (final records).
    pub records: u64,
    /// Interim snapshots of open connections scored besides (captures).
    pub interim_snapshots: u64,
    /// Distinct originators.
    pub sources: u64,
    /// `ceil(10 / target_fpr)`: the fewest records calibration accepts.
    pub min_records: u64,
    /// `floor(records * target_fpr)`: connections a model may flag.
    pub allowed_flagged: u64,
    pub models: Vec<ModelReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<RulesReport>,
    /// The files written, in the output folder.
    pub files: Vec<String>,
    #[serde(skip)]
    pub out: PathBuf,
    #[serde(skip)]
    pub elapsed_secs: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelReport {
    pub name: String,
    pub kind: &'static str,
    /// Where the spec came from.
    pub spec: String,
    /// The calibrated spec's file name in the output folder.
    pub written: String,
    /// The spec key calibrated.
    pub key: &'static str,
    /// `1 - target_fpr`.
    pub quantile: f64,
    /// The lowest value that flags at most `allowed_flagged` connections.
    pub quantile_value: f64,
    pub old: f64,
    pub new: f64,
    /// Kept at the old value: it was already at or above the quantile.
    pub kept: bool,
    /// Stopped at `MAX_MIN_PROBABILITY` below the quantile (classifiers).
    pub capped: bool,
    pub flagged_before: u64,
    pub flagged_after: u64,
    pub share_before: f64,
    pub share_after: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RulesReport {
    pub source: String,
    pub written: String,
    pub rewritten: Rewritten,
    pub thresholds: Vec<RuleThreshold>,
    /// Rules that name a model not calibrated, written disabled.
    pub left_out: Vec<String>,
    /// Rules with nothing calibration can raise.
    pub not_calibrated: Vec<RuleNote>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RuleThreshold {
    pub rule: String,
    pub column: &'static str,
    pub window_secs: f64,
    pub old: u64,
    pub new: u64,
    /// The highest value a benign source reached while the rule's match
    /// held (0 when it never held).
    pub benign_max: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub benign_max_source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub benign_max_at: Option<f64>,
    /// Records (final and interim) the rule's match held for.
    pub matched_records: u64,
    /// A benign source still reaches the new value: distinct counts stop
    /// at `evidence.max_targets_per_source`, and the threshold with them.
    pub still_triggered: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct RuleNote {
    pub rule: String,
    pub matched_records: u64,
    pub reason: String,
}

/// A model with what its spec file said.
struct Loaded {
    model: Model,
    input: ModelInput,
    text: String,
    file_name: String,
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn load_model(m: &ModelInput) -> Result<Loaded, CalibrateError> {
    let text = std::fs::read_to_string(&m.spec).map_err(|source| SpecError::Read {
        path: m.spec.clone(),
        source,
    })?;
    let spec = FeatureSpec::parse(&text, &m.spec)?;
    let bad = |message: &str| CalibrateError::Spec {
        path: m.spec.clone(),
        message: message.into(),
    };
    let scores = spec
        .outputs
        .iter()
        .filter(|o| o.meaning == Meaning::Score)
        .count();
    if spec.model.kind == ModelKind::Classifier && scores > 0 {
        // The verdict's score would be that output, not the attack
        // probability min_probability is compared with.
        return Err(bad(
            "a classifier with a score output cannot be calibrated (its verdicts do not carry the attack probability)",
        ));
    }
    Ok(Loaded {
        model: Model::load(spec)?,
        file_name: file_name(&m.spec),
        input: m.clone(),
        text,
    })
}

fn rule_set(
    r: &RuleInput,
    facts: &[ModelFacts],
    cx: &LoadContext,
) -> Result<RuleSet, CalibrateError> {
    RuleSet::parse(&r.text, r.yaml, facts, cx).map_err(|source| CalibrateError::RuleFile {
        origin: r.origin.clone(),
        source,
    })
}

/// One pass over the inputs: each read, scored by `models` and (with
/// `rules`) run through a fresh decider.
fn pass(
    o: &CalibrateOptions,
    reader: &Reader,
    models: &[Model],
    rules: Option<&RuleSet>,
) -> Result<Measured, CalibrateError> {
    let facts: Vec<ModelFacts> = models.iter().map(ModelFacts::of).collect();
    let mut sink = Measure::new(models.len(), rules.map_or(0, |r| r.rules.len()));
    let metrics = Metrics::new();
    for (i, path) in o.inputs.iter().enumerate() {
        let records = reader
            .read(path, i)
            .map_err(|source| CalibrateError::Input {
                path: path.clone(),
                source: Box::new(source),
            })?;
        tracing::debug!(input = %path.display(), records = records.len(), "input read");
        sink.start(rules.map(|r| Decider::new(r.clone(), facts.clone(), o.evidence.clone())));
        score(records, models, &mut sink, o, &metrics).map_err(CalibrateError::io(path))?;
        if sink.unscored > 0 {
            return Err(CalibrateError::Scoring {
                path: path.clone(),
                unscored: sink.unscored,
            });
        }
    }
    Ok(sink.measured)
}

/// Scores one input's records with the daemon's scorer (its own host
/// context), the records in one batch, as a replay sends them.
fn score(
    records: Vec<ConnRecord>,
    models: &[Model],
    sink: &mut Measure,
    o: &CalibrateOptions,
    metrics: &Metrics,
) -> std::io::Result<()> {
    let (tx, rx) = crossbeam_channel::unbounded::<RecordBatch>();
    // One batch of every record: each is due at once, with the whole
    // input in its host context (as at the end of a replay).
    let _ = tx.send(RecordBatch {
        records,
        emitted: Instant::now(),
        clock: f64::INFINITY,
    });
    drop(tx);
    // Kept open until the scorer returns: a closed reload channel would
    // be ready on every turn of its loop.
    let (_reload_tx, reloads) = crossbeam_channel::bounded::<Reload<()>>(1);
    let set = ModelSet::new(models.to_vec(), o.context.clone());
    let options = ScorerOptions::replay(o.batch_rows, o.context.clone());
    run_scorer(rx, reloads, set, sink, options, metrics)
}

fn share(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        n as f64 / of as f64
    }
}

/// The new value of one model's setting.
struct Decided {
    setting: Setting,
    key: &'static str,
    quantile_value: f64,
    old: f64,
    new: f64,
    kept: bool,
    capped: bool,
}

fn decide_model(m: &Model, values: &[f32], allowed: u64) -> Result<Decided, CalibrateError> {
    let spec = m.spec();
    let q = threshold::lowest_threshold(values, allowed as usize).ok_or_else(|| {
        CalibrateError::Threshold {
            model: spec.model.name.clone(),
            message: "no finite threshold flags few enough benign connections (their values are infinite)".into(),
        }
    })?;
    Ok(match spec.model.kind {
        ModelKind::Anomaly => {
            let old = spec
                .outputs
                .iter()
                .find(|o| o.meaning == Meaning::Score)
                .and_then(|o| o.threshold)
                .unwrap_or(f64::INFINITY);
            let new = old.max(q);
            Decided {
                setting: Setting::Threshold(new),
                key: "threshold",
                quantile_value: q,
                old,
                new,
                kept: new == old,
                capped: false,
            }
        }
        ModelKind::Classifier => {
            let old = spec.alert.min_probability;
            let capped = q > MAX_MIN_PROBABILITY && old < MAX_MIN_PROBABILITY;
            let new = old.max(q.min(MAX_MIN_PROBABILITY));
            Decided {
                setting: Setting::MinProbability(new),
                key: "alert.min_probability",
                quantile_value: q,
                old,
                new,
                kept: new == old,
                capped,
            }
        }
    })
}

/// Calibrates the models and rules of `o` on its inputs and writes the
/// results into `o.out`.
pub fn run(o: &CalibrateOptions) -> Result<Report, CalibrateError> {
    let started = Instant::now();
    let fpr = o.target_fpr;
    if !(fpr > 0.0 && fpr <= MAX_TARGET_FPR) {
        return Err(CalibrateError::TargetFpr(fpr));
    }
    if o.out.exists() && !o.out.is_dir() {
        return Err(CalibrateError::OutNotDir(o.out.clone()));
    }
    if o.models.is_empty() {
        return Err(CalibrateError::NoModels);
    }
    let loaded = o
        .models
        .iter()
        .map(load_model)
        .collect::<Result<Vec<_>, _>>()?;
    let models: Vec<Model> = loaded.iter().map(|l| l.model.clone()).collect();
    let facts: Vec<ModelFacts> = models.iter().map(ModelFacts::of).collect();
    let rules = o
        .rules
        .as_ref()
        .map(|r| rule_set(r, &facts, &r.context))
        .transpose()?;
    let mut needed: Vec<&'static str> = Vec::new();
    for l in &loaded {
        needed.extend(needed_columns(l.model.spec()));
    }
    if rules.is_some() {
        needed.extend(EVIDENCE_COLUMNS);
    }
    needed.sort_unstable();
    needed.dedup();
    let mut engine = o.engine.clone();
    engine.interim = Some(o.interim);
    let reader = Reader {
        engine: &engine,
        filter: o.filter.as_deref(),
        needed: &needed,
    };

    // Pass 1: the models as they are.
    let before = pass(o, &reader, &models, None)?;
    let n = before.records;
    let need = threshold::min_records(fpr);
    if n < need {
        return Err(CalibrateError::TooFew {
            records: n,
            need,
            target_fpr: fpr,
        });
    }
    let allowed = threshold::allowed(n, fpr);
    let mut staging = Staging::new(&o.out)?;
    let decided = write_models(&loaded, &before, n, fpr, allowed, &mut staging)?;
    // The written specs, loaded as the daemon and `osprey check` will.
    let calibrated: Vec<Model> = loaded
        .iter()
        .map(|l| {
            Ok(Model::load(FeatureSpec::load(
                &staging.path(&l.file_name),
            )?)?)
        })
        .collect::<Result<_, CalibrateError>>()?;

    // Pass 2: the calibrated models, and the evidence the rules read.
    let after = pass(o, &reader, &calibrated, rules.as_ref())?;
    let rules_report = match (&o.rules, &rules) {
        (Some(input), Some(set)) => {
            let facts: Vec<ModelFacts> = calibrated.iter().map(ModelFacts::of).collect();
            Some(calibrate_rules(
                o,
                input,
                set,
                &after,
                &facts,
                &mut staging,
            )?)
        }
        _ => None,
    };
    let mut files: Vec<String> = Vec::new();
    for l in &loaded {
        files.push(l.file_name.clone());
        files.push(file_name(&l.model.spec().onnx_path()));
    }
    if let Some(r) = &rules_report {
        files.push(r.written.clone());
    }
    files.push("calibration.json".into());
    let mut report = Report {
        target_fpr: fpr,
        inputs: o.inputs.iter().map(|p| p.display().to_string()).collect(),
        records: n,
        interim_snapshots: before.interim,
        sources: before.sources.len() as u64,
        min_records: need,
        allowed_flagged: allowed,
        models: model_reports(&loaded, &decided, &before, &after, fpr),
        rules: rules_report,
        files,
        out: o.out.clone(),
        elapsed_secs: 0.0,
    };
    let json = serde_json::to_vec_pretty(&report)
        .map_err(|e| CalibrateError::io(&o.out)(std::io::Error::other(e)))?;
    staging.write("calibration.json", &json)?;
    staging.publish()?;
    report.elapsed_secs = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Decides each model's new setting from the values pass 1 measured, and
/// stages its spec and a copy of its ONNX file.
fn write_models(
    loaded: &[Loaded],
    before: &Measured,
    n: u64,
    fpr: f64,
    allowed: u64,
    staging: &mut Staging,
) -> Result<Vec<Decided>, CalibrateError> {
    let mut decided = Vec::with_capacity(loaded.len());
    for (l, values) in loaded.iter().zip(&before.values) {
        let d = decide_model(&l.model, values, allowed)?;
        let spec = l.model.spec();
        if d.capped {
            tracing::warn!(
                model = %spec.model.name,
                quantile = d.quantile_value,
                "the classifier is surer than {MAX_MIN_PROBABILITY} that more benign connections than the target allows are attacks: min_probability stops there, and it needs retraining on this traffic"
            );
        }
        let onnx = file_name(&spec.onnx_path());
        let header = format!(
            "# Calibrated by `osprey calibrate` to {n} benign connections at a target \
             false-positive rate of {fpr}:\n# {} {} -> {} (calibration.json beside this \
             file has the measurements).\n# Everything else as in {}.",
            d.key, d.old, d.new, l.file_name
        );
        let text = write::spec_text(&l.text, &spec.path, &onnx, d.setting, &header)?;
        staging.copy(&onnx, &spec.onnx_path())?;
        staging.write(&l.file_name, text.as_bytes())?;
        decided.push(d);
    }
    Ok(decided)
}

/// What became of each model: its old and new setting and the share of
/// benign connections it flagged before (pass 1) and after (pass 2).
fn model_reports(
    loaded: &[Loaded],
    decided: &[Decided],
    before: &Measured,
    after: &Measured,
    fpr: f64,
) -> Vec<ModelReport> {
    let n = before.records;
    let mut out = Vec::with_capacity(loaded.len());
    for (k, (l, d)) in loaded.iter().zip(decided).enumerate() {
        let fb = before.flagged.get(k).copied().unwrap_or(0);
        let fa = after.flagged.get(k).copied().unwrap_or(0);
        let spec = l.model.spec();
        tracing::info!(
            model = %spec.model.name,
            key = d.key,
            old = d.old,
            new = d.new,
            flagged_before = fb,
            flagged_after = fa,
            "model calibrated"
        );
        out.push(ModelReport {
            name: spec.model.name.clone(),
            kind: match spec.model.kind {
                ModelKind::Anomaly => "anomaly",
                ModelKind::Classifier => "classifier",
            },
            spec: l.input.origin.clone(),
            written: l.file_name.clone(),
            key: d.key,
            quantile: 1.0 - fpr,
            quantile_value: d.quantile_value,
            old: d.old,
            new: d.new,
            kept: d.kept,
            capped: d.capped,
            flagged_before: fb,
            flagged_after: fa,
            share_before: share(fb, n),
            share_after: share(fa, n),
        });
    }
    out
}

/// Raises every evidence threshold of `set` above what the benign sources
/// reached, writes rules.yaml and checks that it loads as the calibrated
/// set.
fn calibrate_rules(
    o: &CalibrateOptions,
    input: &RuleInput,
    set: &RuleSet,
    after: &Measured,
    facts: &[ModelFacts],
    staging: &mut Staging,
) -> Result<RulesReport, CalibrateError> {
    let cap = o.evidence.max_targets_per_source as u64;
    let mut expected = set.clone();
    let mut edits = Vec::new();
    let mut thresholds = Vec::new();
    let mut not_calibrated = Vec::new();
    for (i, rule) in expected.rules.iter_mut().enumerate() {
        let peaks = after.rules.get(i);
        let matched = peaks.map_or(0, |p| p.matched);
        let Some(ev) = &mut rule.evidence else {
            not_calibrated.push(RuleNote {
                rule: rule.name.clone(),
                matched_records: matched,
                reason: "no evidence: it acts on single connections, which the models' thresholds govern".into(),
            });
            continue;
        };
        let mut any = false;
        for (j, b) in ev.bounds.iter_mut().enumerate() {
            let Some(old) = b.min else { continue };
            any = true;
            let peak = peaks
                .and_then(|p| p.bounds.get(j))
                .copied()
                .unwrap_or_default();
            // Above the peak: the rule needs `value >= min`.
            let above = peak.value.max(0.0).floor() as u64 + 1;
            let limit = if b.column.distinct().is_some() {
                cap
            } else {
                u64::MAX
            };
            let new = old.max(above.min(limit));
            let still = peak.value >= new as f64;
            if still {
                tracing::warn!(
                    rule = %rule.name,
                    column = b.column.name(),
                    peak = peak.value,
                    "a benign source reaches the highest threshold a distinct count allows"
                );
            }
            if new != old {
                b.min = Some(new);
                edits.push(Edit {
                    rule: rule.name.clone(),
                    column: b.column.name(),
                    old,
                    new,
                    note: format!(
                        "osprey calibrate: was {old}; benign sources reached {}",
                        peak.value.floor()
                    ),
                });
            }
            thresholds.push(RuleThreshold {
                rule: rule.name.clone(),
                column: b.column.name(),
                window_secs: ev.window_secs,
                old,
                new,
                benign_max: peak.value,
                benign_max_source: peak.source.map(|a| a.to_string()),
                benign_max_at: peak.source.map(|_| peak.at),
                matched_records: matched,
                still_triggered: still,
            });
        }
        if !any {
            not_calibrated.push(RuleNote {
                rule: rule.name.clone(),
                matched_records: matched,
                reason: "its evidence sets only upper bounds".into(),
            });
        }
    }
    // Rules the daemon leaves out (they name a model that is not loaded)
    // are written disabled, so that the file loads with these models.
    let loaded: Vec<&str> = set.rules.iter().map(|r| r.name.as_str()).collect();
    let left_out: Vec<String> = write::rule_names(&input.text, input.yaml)?
        .into_iter()
        .filter(|(name, enabled)| *enabled && !loaded.contains(&name.as_str()))
        .map(|(name, _)| name)
        .collect();
    let disable: Vec<(String, String)> = left_out
        .iter()
        .map(|n| {
            (
                n.clone(),
                "osprey calibrate: it names a model that was not calibrated".to_string(),
            )
        })
        .collect();
    let header = format!(
        "# Calibrated by `osprey calibrate` (calibration.json beside this file has the\n\
         # measurements): evidence thresholds raised above what every source of the\n\
         # benign input reached; none lowered. Everything else as in {}.",
        input.origin
    );
    // The file must load, as `osprey check --rules` loads it, as exactly
    // the calibrated set.
    let strict = LoadContext {
        skip_rules_for_absent_models: false,
        ..input.context.clone()
    };
    let loads =
        |text: &str| RuleSet::parse(text, true, facts, &strict).is_ok_and(|s| s == expected);
    let (text, rewritten) =
        write::rules_text(&input.text, input.yaml, &edits, &disable, &header, loads)?;
    if rewritten == Rewritten::Reserialized {
        tracing::warn!(rules = %input.origin, "the rule file was written anew from its parsed form: its comments are not in rules.yaml");
    }
    staging.write("rules.yaml", text.as_bytes())?;
    Ok(RulesReport {
        source: input.origin.clone(),
        written: "rules.yaml".into(),
        rewritten,
        thresholds,
        left_out,
        not_calibrated,
    })
}

impl Report {
    /// The one-screen summary.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let pct = |x: f64| format!("{:.2}%", x * 100.0);
        let _ = writeln!(
            s,
            "osprey calibrate: {} benign connections ({} interim snapshots besides), {} sources, from {} input(s) in {:.1} s",
            self.records,
            self.interim_snapshots,
            self.sources,
            self.inputs.len(),
            self.elapsed_secs
        );
        let _ = writeln!(
            s,
            "  target false-positive rate {}: at most {} of {} connections flagged per model (needs at least {})",
            self.target_fpr, self.allowed_flagged, self.records, self.min_records
        );
        for m in &self.models {
            let what = if m.kept {
                "kept (already at or above the quantile)".to_string()
            } else if m.capped {
                format!(
                    "raised, stopped at {MAX_MIN_PROBABILITY} (quantile {})",
                    m.quantile_value
                )
            } else {
                "raised".to_string()
            };
            let _ = writeln!(
                s,
                "  {:<20} {} {} -> {}: {what}; flagged {} ({}) -> {} ({})",
                m.name,
                m.key,
                m.old,
                m.new,
                m.flagged_before,
                pct(m.share_before),
                m.flagged_after,
                pct(m.share_after)
            );
        }
        if let Some(r) = &self.rules {
            let _ = writeln!(s, "  rules ({}):", r.source);
            for t in &r.thresholds {
                let who = t
                    .benign_max_source
                    .as_deref()
                    .map(|a| format!(" by {a}"))
                    .unwrap_or_default();
                let what = if t.new != t.old {
                    format!("raised {} -> {}", t.old, t.new)
                } else {
                    format!("kept {}", t.old)
                };
                let still = if t.still_triggered {
                    " (STILL TRIGGERED: a distinct count stops at evidence.max_targets_per_source)"
                } else {
                    ""
                };
                // Counts over a sliding window are estimates (evidence/window.rs).
                let max = if t.benign_max.fract() == 0.0 {
                    format!("{}", t.benign_max)
                } else {
                    format!("{:.1}", t.benign_max)
                };
                let _ = writeln!(
                    s,
                    "    {:<22} {} in {}s: benign max {max}{who}; {what}{still}",
                    t.rule, t.column, t.window_secs
                );
            }
            for n in &r.not_calibrated {
                let _ = writeln!(
                    s,
                    "    {:<22} not calibrated: {} (matched {} benign records)",
                    n.rule, n.reason, n.matched_records
                );
            }
            for n in &r.left_out {
                let _ = writeln!(
                    s,
                    "    {n:<22} written disabled: it names a model that was not calibrated"
                );
            }
            if r.rewritten == Rewritten::Reserialized {
                let _ = writeln!(
                    s,
                    "    (written anew from the parsed file: its comments are not kept)"
                );
            }
        }
        let _ = writeln!(
            s,
            "  calibration only raises thresholds: one already above what the benign traffic needs is kept"
        );
        let _ = writeln!(
            s,
            "  written to {}: {}",
            self.out.display(),
            self.files.join(", ")
        );
        s
    }
}
