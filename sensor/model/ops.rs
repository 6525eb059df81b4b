//! osprey's TreeEnsembleClassifier and TreeEnsembleRegressor for tract:
//! the ONNX attributes are parsed when the model is read, the forest is laid
//! out once the input type is known, and one typed op evaluates it.
//!
//! They replace tract's own tree op, whose cost grows with the square of the
//! tree count and which refuses some of skl2onnx's binary models.

use std::sync::Arc;

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::{NodeProto, TensorProto};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_hir::internal::{
    check_input_arity, check_output_arity, expand, Expansion, InferenceOp, InferenceResult, Solver,
    TensorProxy,
};

use super::aggregate::{self, Aggregate, ClassifierHead, Pick, RegressorHead};
use super::forest::{Attrs, Forest, Mode};
use super::post::PostTransform;

/// Puts osprey's tree ops into an ONNX op register (over tract's own).
pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert("TreeEnsembleClassifier", classifier);
    reg.insert("TreeEnsembleRegressor", regressor);
}

/// Class labels, as the model names them.
#[derive(Clone, Debug)]
enum Labels {
    Ints(Vec<i64>),
    Strings(Vec<String>),
}

#[derive(Clone, Debug)]
enum Head {
    Classifier(ClassifierHead, Labels),
    Regressor(RegressorHead),
}

/// A parsed tree op, before its input type is known.
#[derive(Clone, Debug)]
struct Parsed {
    attrs: Arc<Attrs>,
    head: Head,
}

fn classifier(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = nodes(ctx, node, "class")?;
    let ints = node.get_attr_opt_vec::<i64>("classlabels_int64s")?;
    let strings = node.get_attr_opt_vec::<String>("classlabels_strings")?;
    let labels = match (ints, strings) {
        (Some(v), None) => Labels::Ints(v),
        (None, Some(v)) => Labels::Strings(v),
        (None, None) => bail!("neither classlabels_int64s nor classlabels_strings is set"),
        (Some(_), Some(_)) => bail!("both classlabels_int64s and classlabels_strings are set"),
    };
    let classes = match &labels {
        Labels::Ints(v) => v.len(),
        Labels::Strings(v) => v.len(),
    };
    ensure!(
        classes >= 2,
        "a classifier needs two class labels or more, not {classes}"
    );
    let mut voted: Vec<i64> = attrs.w_target.clone();
    voted.sort_unstable();
    voted.dedup();
    let head = ClassifierHead {
        classes,
        base: floats(ctx, node, "base_values")?.unwrap_or_default(),
        post: post_transform(node)?,
        binary_case: classes == 2 && voted.len() == 1,
        all_positive: attrs.w_value.iter().all(|w| *w >= 0.0),
    };
    let parsed = Parsed {
        attrs: Arc::new(attrs),
        head: Head::Classifier(head, labels),
    };
    Ok((expand(TreeEnsembleExpansion(parsed)), vec![]))
}

fn regressor(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = nodes(ctx, node, "target")?;
    let targets = node.get_attr_opt::<i64>("n_targets")?.unwrap_or(0);
    ensure!(targets >= 1, "n_targets must be 1 or more, not {targets}");
    let aggregate = match node.get_attr_opt::<String>("aggregate_function")? {
        None => Aggregate::Sum,
        Some(s) => Aggregate::parse(&s)
            .with_context(|| format!("aggregate_function {s:?} is not SUM, AVERAGE, MIN or MAX"))?,
    };
    let head = RegressorHead {
        targets: targets as usize,
        base: floats(ctx, node, "base_values")?.unwrap_or_default(),
        post: post_transform(node)?,
        aggregate,
    };
    let parsed = Parsed {
        attrs: Arc::new(attrs),
        head: Head::Regressor(head),
    };
    Ok((expand(TreeEnsembleExpansion(parsed)), vec![]))
}

fn post_transform(node: &NodeProto) -> TractResult<PostTransform> {
    match node.get_attr_opt::<String>("post_transform")? {
        None => Ok(PostTransform::None),
        Some(s) => PostTransform::parse(&s).with_context(|| {
            format!("post_transform {s:?} is not NONE, SOFTMAX, LOGISTIC, SOFTMAX_ZERO or PROBIT")
        }),
    }
}

fn ints(node: &NodeProto, name: &str) -> TractResult<Vec<i64>> {
    Ok(node.get_attr_opt_vec::<i64>(name)?.unwrap_or_default())
}

/// A float list given either as floats (`name`) or as a tensor of any
/// float type (`name_as_tensor`, doubles in practice).
fn floats(ctx: &ParsingContext, node: &NodeProto, name: &str) -> TractResult<Option<Vec<f64>>> {
    let plain = node.get_attr_opt_vec::<f32>(name)?;
    let tensor_name = format!("{name}_as_tensor");
    let tensor = node.get_attr_opt::<&TensorProto>(&tensor_name)?;
    match (plain, tensor) {
        (Some(_), Some(_)) => bail!("both {name} and {tensor_name} are set"),
        (Some(v), None) => Ok(Some(v.into_iter().map(f64::from).collect())),
        (None, Some(t)) => {
            let t = ctx.load_tensor(t)?;
            let t = t.cast_to::<f64>()?;
            Ok(Some(t.try_as_plain_ram()?.as_slice::<f64>()?.to_vec()))
        }
        (None, None) => Ok(None),
    }
}

/// The node lists and the leaf weights (`prefix` is `class` or `target`).
fn nodes(ctx: &ParsingContext, node: &NodeProto, prefix: &str) -> TractResult<Attrs> {
    let modes = node
        .get_attr_opt_vec::<String>("nodes_modes")?
        .unwrap_or_default()
        .iter()
        .map(|m| Mode::parse(m).map_err(|_| format_err!("nodes_modes: unknown mode {m:?}")))
        .collect::<TractResult<Vec<_>>>()?;
    let missing = ints(node, "nodes_missing_value_tracks_true")?;
    Ok(Attrs {
        node_tree: ints(node, "nodes_treeids")?,
        node_id: ints(node, "nodes_nodeids")?,
        feature: ints(node, "nodes_featureids")?,
        mode: modes,
        value: floats(ctx, node, "nodes_values")?.unwrap_or_default(),
        true_id: ints(node, "nodes_truenodeids")?,
        false_id: ints(node, "nodes_falsenodeids")?,
        missing_true: missing.iter().map(|&m| m == 1).collect(),
        w_tree: ints(node, &format!("{prefix}_treeids"))?,
        w_node: ints(node, &format!("{prefix}_nodeids"))?,
        w_target: ints(node, &format!("{prefix}_ids"))?,
        w_value: floats(ctx, node, &format!("{prefix}_weights"))?.unwrap_or_default(),
    })
}

#[derive(Clone, Debug)]
struct TreeEnsembleExpansion(Parsed);

impl Expansion for TreeEnsembleExpansion {
    fn name(&self) -> StaticName {
        match self.0.head {
            Head::Classifier(..) => "TreeEnsembleClassifier".into(),
            Head::Regressor(..) => "TreeEnsembleRegressor".into(),
        }
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(match self.0.head {
            Head::Classifier(..) => 2,
            Head::Regressor(..) => 1,
        })
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        s.equals(&inputs[0].rank, 2)?;
        match &self.0.head {
            Head::Classifier(head, labels) => {
                check_output_arity(outputs, 2)?;
                let dt = match labels {
                    Labels::Ints(_) => DatumType::I64,
                    Labels::Strings(_) => DatumType::String,
                };
                s.equals(&outputs[0].datum_type, dt)?;
                s.equals(&outputs[0].rank, 1)?;
                s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
                s.equals(&outputs[1].datum_type, DatumType::F32)?;
                s.equals(&outputs[1].rank, 2)?;
                s.equals(&outputs[1].shape[0], &inputs[0].shape[0])?;
                s.equals(&outputs[1].shape[1], head.classes.to_dim())?;
            }
            Head::Regressor(head) => {
                check_output_arity(outputs, 1)?;
                s.equals(&outputs[0].datum_type, DatumType::F32)?;
                s.equals(&outputs[0].rank, 2)?;
                s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
                s.equals(&outputs[0].shape[1], head.targets.to_dim())?;
            }
        }
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let dt = model.outlet_fact(inputs[0])?.datum_type;
        let outputs = match &self.0.head {
            Head::Classifier(h, _) => h.classes,
            Head::Regressor(h) => h.targets,
        };
        let forest = match dt {
            DatumType::F64 => {
                Precision::F64(Forest::build(&self.0.attrs, outputs).map_err(|e| format_err!(e))?)
            }
            DatumType::F32 | DatumType::I64 | DatumType::I32 => {
                Precision::F32(Forest::build(&self.0.attrs, outputs).map_err(|e| format_err!(e))?)
            }
            other => bail!("a tree ensemble cannot read {other:?} inputs"),
        };
        let op = TreeEnsemble(Arc::new(Built {
            forest,
            head: self.0.head.clone(),
        }));
        model.wire_node(prefix, op, inputs)
    }
}

/// The forest in the precision of the input, as onnxruntime keeps it:
/// doubles for double inputs, floats for everything else.
#[derive(Debug)]
enum Precision {
    F32(Forest<f32>),
    F64(Forest<f64>),
}

#[derive(Debug)]
struct Built {
    forest: Precision,
    head: Head,
}

/// The typed op. Ops compare equal only when they share one forest.
#[derive(Clone, Debug)]
struct TreeEnsemble(Arc<Built>);

impl PartialEq for TreeEnsemble {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for TreeEnsemble {}

impl Op for TreeEnsemble {
    fn name(&self) -> StaticName {
        match self.0.head {
            Head::Classifier(..) => "OspreyTreeEnsembleClassifier".into(),
            Head::Regressor(..) => "OspreyTreeEnsembleRegressor".into(),
        }
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let trees = match &self.0.forest {
            Precision::F32(f) => f.trees(),
            Precision::F64(f) => f.trees(),
        };
        Ok(vec![format!("{trees} trees")])
    }

    op_as_typed_op!();
}

impl EvalOp for TreeEnsemble {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let (n, cols) = match input.shape() {
            [n, c] => (*n, *c),
            other => bail!("a tree ensemble reads [rows, columns], not {other:?}"),
        };
        let built = &*self.0;
        match &built.forest {
            Precision::F32(f) => {
                let x = input.cast_to::<f32>()?;
                let x = x.try_as_plain_ram()?;
                score(f, &built.head, x.as_slice::<f32>()?, n, cols)
            }
            Precision::F64(f) => {
                let x = input.cast_to::<f64>()?;
                let x = x.try_as_plain_ram()?;
                score(f, &built.head, x.as_slice::<f64>()?, n, cols)
            }
        }
    }
}

fn score<T: super::forest::Real>(
    forest: &Forest<T>,
    head: &Head,
    x: &[T],
    n: usize,
    cols: usize,
) -> TractResult<TVec<TValue>> {
    ensure!(
        cols >= forest.min_columns,
        "the trees read column {} but the input has {cols} columns",
        forest.min_columns - 1
    );
    match head {
        Head::Classifier(h, labels) => {
            let (picks, probs) = aggregate::classify(forest, h, x, cols, n);
            let labels = match labels {
                Labels::Ints(l) => {
                    let v: Vec<i64> = picks
                        .iter()
                        .map(|p| match *p {
                            Pick::Class(k) => l[k],
                            Pick::Raw(r) => r,
                        })
                        .collect();
                    Tensor::from_shape(&[n], &v)?
                }
                Labels::Strings(l) => {
                    let v: Vec<String> = picks
                        .iter()
                        .map(|p| match *p {
                            Pick::Class(k) => l[k].clone(),
                            Pick::Raw(r) => l[r as usize].clone(),
                        })
                        .collect();
                    tensor1(&v)
                }
            };
            let probs = Tensor::from_shape(&[n, h.classes], &probs)?;
            Ok(tvec!(labels.into_tvalue(), probs.into_tvalue()))
        }
        Head::Regressor(h) => {
            let out = aggregate::regress(forest, h, x, cols, n);
            Ok(tvec!(
                Tensor::from_shape(&[n, h.targets], &out)?.into_tvalue()
            ))
        }
    }
}

impl TypedOp for TreeEnsemble {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let n = inputs[0].shape[0].clone();
        Ok(match &self.0.head {
            Head::Classifier(h, labels) => {
                let dt = match labels {
                    Labels::Ints(_) => DatumType::I64,
                    Labels::Strings(_) => DatumType::String,
                };
                tvec!(
                    TypedFact::dt_shape(dt, [n.clone()]),
                    f32::fact([n, h.classes.to_dim()])
                )
            }
            Head::Regressor(h) => tvec!(f32::fact([n, h.targets.to_dim()])),
        })
    }

    as_op!();
}
