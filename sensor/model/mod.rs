//! Scoring connections: an ONNX model loaded with tract, checked against its
//! feature spec before it runs, and its outputs decoded into [`Verdict`]s.
//!
//! tract-onnx runs the graph (its optimised plan makes MLPs and
//! autoencoders fast); the ONNX-ML tree ensembles run on osprey's own ops
//! ([`ops`]), because tract's are quadratic in the tree count and refuse
//! some skl2onnx exports. A model is checked against its spec at load time
//! so that a model trained on other columns never scores a single row.

mod aggregate;
pub mod bundled;
mod check;
mod describe;
mod forest;
mod ops;
mod post;
mod softmax;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use tract_onnx::prelude::*;

use crate::features::spec::{Dtype, Meaning, ModelKind, SpecError};
use crate::features::FeatureSpec;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The spec itself is unusable for scoring.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// tract could not read, type or optimise the ONNX file.
    #[error("{path}: {message}")]
    Load { path: PathBuf, message: String },
    /// The model and its spec disagree.
    #[error("{spec}: the model does not match its spec: {message}")]
    Mismatch { spec: PathBuf, message: String },
    /// The rows handed to `run` do not have the spec's shape.
    #[error("{0}")]
    Input(String),
    /// tract failed while scoring.
    #[error("scoring failed: {0}")]
    Run(String),
}

/// What the model says about one row.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    /// The class's name (classifiers): the likeliest attack class when
    /// flagged, else the likeliest class.
    pub label: Option<String>,
    /// That class's index in the spec's class list.
    pub class: Option<usize>,
    /// That class's probability.
    pub probability: Option<f32>,
    /// Anomaly models: the anomaly score. Classifiers: the probability that
    /// the flow is an attack of any kind (1 - p(benign class)).
    pub score: Option<f32>,
    /// Whether this row is worth an alert under the spec's rule.
    pub flagged: bool,
}

impl Verdict {
    /// The label rules, metrics and summaries use: the class for
    /// classifiers; anomaly models have no classes, so their label is the
    /// alert rule's outcome.
    pub fn label_name(&self) -> &str {
        match (&self.label, self.flagged) {
            (Some(l), _) => l.as_str(),
            (None, true) => "anomalous",
            (None, false) => "normal",
        }
    }
}

/// Where the outputs a verdict needs sit in the plan's results.
#[derive(Clone, Debug, Default)]
struct Outputs {
    /// (result index, class count)
    probabilities: Option<(usize, usize)>,
    /// (result index, threshold)
    score: Option<(usize, f64)>,
}

/// A loaded, checked, optimised model. Cheap to share: `run` takes `&self`
/// and several threads may score with one `Model` at once, and a clone
/// shares the optimised plan (a driver that scores several traces, each
/// with its own host context, clones instead of loading again).
#[derive(Clone)]
pub struct Model {
    spec: FeatureSpec,
    plan: Arc<TypedRunnableModel>,
    outputs: Outputs,
    benign: Option<usize>,
    columns: usize,
    /// Input and outputs as the model declares them, for `describe`.
    signature: check::Signature,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("spec", &self.spec.path)
            .field("columns", &self.columns)
            .finish_non_exhaustive()
    }
}

/// Reads an ONNX file with its subnormal float weights flushed to zero
/// (sign kept). A multiply that touches a subnormal takes the CPU's slow
/// path (tens to a hundred times slower on x86), and osprey may not set
/// the FTZ/DAZ flags (no unsafe code); a weight below 1.2e-38 cannot
/// change a score at f32 precision, so dropping it changes no verdict.
fn read_flushed(path: &std::path::Path) -> TractResult<InferenceModel> {
    let onnx = onnx();
    let mut proto = onnx.proto_model_for_path(path)?;
    let flushed = flush_subnormals(&mut proto);
    if flushed > 0 {
        tracing::info!(
            onnx = %path.display(),
            weights = flushed,
            "subnormal weights flushed to zero"
        );
    }
    let dir = path.parent().and_then(|d| d.to_str());
    let parsed = onnx.parse(&proto, dir)?;
    if !parsed.unresolved_inputs.is_empty() {
        return Err(TractError::msg(format!(
            "could not resolve inputs at top level: {:?}",
            parsed.unresolved_inputs
        )));
    }
    Ok(parsed.model)
}

/// Flushes the subnormal f32 values of a model's initializers and
/// `Constant` tensors (subgraphs included) to signed zero; returns how
/// many it changed.
pub fn flush_subnormals(proto: &mut tract_onnx::pb::ModelProto) -> usize {
    fn tensor(t: &mut tract_onnx::pb::TensorProto) -> usize {
        // TensorProto.DataType.FLOAT
        if t.data_type != 1 {
            return 0;
        }
        let mut n = 0;
        for v in &mut t.float_data {
            if v.is_subnormal() {
                *v = 0.0f32.copysign(*v);
                n += 1;
            }
        }
        for b in t.raw_data.chunks_exact_mut(4) {
            let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            if v.is_subnormal() {
                b.copy_from_slice(&0.0f32.copysign(v).to_le_bytes());
                n += 1;
            }
        }
        n
    }
    fn graph(g: &mut tract_onnx::pb::GraphProto) -> usize {
        let mut n: usize = g.initializer.iter_mut().map(tensor).sum();
        for node in &mut g.node {
            for a in &mut node.attribute {
                n += a.t.as_mut().map_or(0, tensor);
                n += a.tensors.iter_mut().map(tensor).sum::<usize>();
                n += a.g.as_mut().map_or(0, graph);
                n += a.graphs.iter_mut().map(graph).sum::<usize>();
            }
        }
        n
    }
    proto.graph.as_mut().map_or(0, graph)
}

/// tract's ONNX reader with osprey's tree ops in place of tract's.
pub fn onnx() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx();
    ops::register(&mut onnx.op_register);
    onnx
}

impl Model {
    /// Loads `spec.onnx_path()`, checks it against the spec (input count,
    /// name, type and width; every spec output by name, type and width) and
    /// builds an optimised plan with a symbolic batch size.
    pub fn load(spec: FeatureSpec) -> Result<Model, ModelError> {
        spec.check_outputs()?;
        check::scaler(&spec)?;
        let path = spec.onnx_path();
        let load_err = |e: TractError| ModelError::Load {
            path: path.clone(),
            message: format!("{e:#}"),
        };
        let model = read_flushed(&path).map_err(load_err)?;
        let (typed, signature, results) = check::against_spec(&spec, model, &path)?;
        let mut optimized = typed.into_optimized().map_err(load_err)?;
        let narrowed = softmax::narrow(&mut optimized).map_err(load_err)?;
        tracing::debug!(softmaxes = narrowed, "short softmaxes replaced");
        let plan = optimized.into_runnable().map_err(load_err)?;

        let mut outputs = Outputs::default();
        for (o, at) in spec.outputs.iter().zip(&results) {
            let Some(at) = *at else { continue };
            match o.meaning {
                Meaning::Probabilities => {
                    let n = o.classes.as_ref().map_or(0, Vec::len);
                    outputs.probabilities.get_or_insert((at, n));
                }
                Meaning::Score => {
                    outputs
                        .score
                        .get_or_insert((at, o.threshold.unwrap_or(f64::INFINITY)));
                }
                Meaning::Label => {}
            }
        }
        let benign = spec
            .outputs
            .iter()
            .find(|o| o.meaning == Meaning::Probabilities)
            .and_then(|o| o.classes.as_ref())
            .and_then(|c| c.iter().position(|n| *n == spec.alert.benign_class));
        tracing::info!(
            model = %spec.model.name,
            version = %spec.model.version,
            onnx = %path.display(),
            columns = spec.columns(),
            "model loaded"
        );
        Ok(Model {
            columns: spec.columns(),
            spec,
            plan,
            outputs,
            benign,
            signature,
        })
    }

    pub fn spec(&self) -> &FeatureSpec {
        &self.spec
    }

    /// Scores `n` rows of already-scaled features (`n x columns` values,
    /// row after row) and returns one verdict per row.
    pub fn run(&self, rows: &[f32], n: usize) -> Result<Vec<Verdict>, ModelError> {
        if rows.len() != n * self.columns {
            return Err(ModelError::Input(format!(
                "{} values are not {n} rows of {} columns",
                rows.len(),
                self.columns
            )));
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        let run_err = |e: TractError| ModelError::Run(format!("{e:#}"));
        let mut input = Tensor::from_shape(&[n, self.columns], rows).map_err(run_err)?;
        if self.spec.input.dtype == Dtype::Int64 {
            input = input.cast_to::<i64>().map_err(run_err)?.into_owned();
        }
        let results = self.plan.run(tvec!(input.into_tvalue())).map_err(run_err)?;

        let mut verdicts = vec![
            Verdict {
                label: None,
                class: None,
                probability: None,
                score: None,
                flagged: false,
            };
            n
        ];
        if let Some((at, classes)) = self.outputs.probabilities {
            let probs = f32_output(&results, at, n * classes)?;
            let names = self
                .spec
                .outputs
                .iter()
                .find(|o| o.meaning == Meaning::Probabilities)
                .and_then(|o| o.classes.as_deref())
                .unwrap_or_default();
            let min_p = self.spec.alert.min_probability;
            for (v, row) in verdicts.iter_mut().zip(probs.chunks_exact(classes)) {
                // Flagged when the attack classes together reach
                // min_probability: a flow that is 80% "some attack" split
                // between two similar attack types is still an attack.
                let attack = self.benign.and_then(|b| row.get(b)).map(|p| 1.0 - p);
                let flagged = attack.is_some_and(|a| f64::from(a) >= min_p);
                let (k, p) = if flagged {
                    top_except(row, self.benign)
                } else {
                    top(row)
                };
                v.class = Some(k);
                v.label = names.get(k).cloned();
                v.probability = Some(p);
                v.score = attack;
                v.flagged = flagged;
            }
        }
        if let Some((at, _)) = self.outputs.score {
            let scores = f32_output(&results, at, n)?;
            for (v, s) in verdicts.iter_mut().zip(scores) {
                v.score = Some(*s);
            }
        }
        if self.spec.model.kind == ModelKind::Anomaly {
            for v in &mut verdicts {
                v.flagged = match (v.score, self.outputs.score) {
                    (Some(s), Some((_, t))) => f64::from(s) >= t,
                    _ => false,
                };
            }
        }
        Ok(verdicts)
    }

    /// The spec as a table (columns with their transform and scaler) and
    /// the model's input and outputs: what `osprey check --model` prints.
    pub fn describe(&self) -> String {
        describe::render(&self.spec, &self.signature)
    }
}

/// The most probable class other than `skip`.
fn top_except(row: &[f32], skip: Option<usize>) -> (usize, f32) {
    let mut best: Option<(usize, f32)> = None;
    for (k, &p) in row.iter().enumerate() {
        if Some(k) == skip {
            continue;
        }
        if best.is_none_or(|(_, b)| p > b || b.is_nan()) {
            best = Some((k, p));
        }
    }
    best.unwrap_or_else(|| top(row))
}

/// The first most probable class; NaN never wins.
fn top(row: &[f32]) -> (usize, f32) {
    let mut best = (0, row.first().copied().unwrap_or(f32::NAN));
    for (k, &p) in row.iter().enumerate().skip(1) {
        if p > best.1 || best.1.is_nan() {
            best = (k, p);
        }
    }
    best
}

fn f32_output(results: &TVec<TValue>, at: usize, len: usize) -> Result<&[f32], ModelError> {
    let t = results
        .get(at)
        .ok_or_else(|| ModelError::Run(format!("the plan returned no output {at}")))?;
    let view = t
        .as_plain_ram()
        .ok_or_else(|| ModelError::Run(format!("output {at} is not in memory")))?;
    let s = view
        .as_slice::<f32>()
        .map_err(|e| ModelError::Run(format!("output {at}: {e:#}")))?;
    if s.len() != len {
        return Err(ModelError::Run(format!(
            "output {at} holds {} values, {len} expected",
            s.len()
        )));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnormal_weights_are_flushed_with_their_sign() {
        use tract_onnx::pb;
        let tiny = f32::MIN_POSITIVE / 4.0;
        let raw: Vec<u8> = [1.5f32, -tiny, tiny, 0.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut proto = pb::ModelProto {
            graph: Some(pb::GraphProto {
                initializer: vec![
                    pb::TensorProto {
                        data_type: 1,
                        float_data: vec![tiny, 2.0, -tiny],
                        ..Default::default()
                    },
                    pb::TensorProto {
                        data_type: 1,
                        raw_data: raw,
                        ..Default::default()
                    },
                    // Not floats: untouched.
                    pb::TensorProto {
                        data_type: 7,
                        raw_data: vec![1, 0, 0, 0, 0, 0, 0, 0],
                        ..Default::default()
                    },
                ],
                node: vec![pb::NodeProto {
                    op_type: "Constant".into(),
                    attribute: vec![pb::AttributeProto {
                        t: Some(pb::TensorProto {
                            data_type: 1,
                            float_data: vec![tiny],
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(flush_subnormals(&mut proto), 5);
        let g = proto.graph.as_ref().unwrap();
        let f = &g.initializer[0].float_data;
        assert_eq!(f[0].to_bits(), 0.0f32.to_bits());
        assert_eq!(f[1], 2.0);
        assert_eq!(f[2].to_bits(), (-0.0f32).to_bits());
        let r = &g.initializer[1].raw_data;
        assert_eq!(f32::from_le_bytes([r[0], r[1], r[2], r[3]]), 1.5);
        assert_eq!(
            f32::from_le_bytes([r[4], r[5], r[6], r[7]]).to_bits(),
            (-0.0f32).to_bits()
        );
        assert_eq!(g.initializer[2].raw_data, [1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(flush_subnormals(&mut proto), 0);
    }

    #[test]
    fn top_prefers_the_first_of_equals_and_skips_nan() {
        assert_eq!(top(&[0.2, 0.5, 0.5]), (1, 0.5));
        assert_eq!(top(&[f32::NAN, 0.1]), (1, 0.1));
    }
}
