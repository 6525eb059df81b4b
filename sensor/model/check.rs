//! The model against its spec, before anything is scored: a model fed
//! columns in another order or number would answer garbage without a word,
//! so every disagreement is refused with the column or tensor it is about.

use std::path::Path;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::{DimLike, Factoid};

use super::ModelError;
use crate::features::spec::{Dtype, Meaning};
use crate::features::FeatureSpec;

/// A tensor as the model declares it.
#[derive(Clone, Debug)]
pub struct Port {
    pub name: String,
    pub dtype: String,
    pub shape: String,
}

/// The model's input and all its outputs.
#[derive(Clone, Debug)]
pub struct Signature {
    pub input: Port,
    pub outputs: Vec<Port>,
}

fn mismatch(spec: &FeatureSpec, message: String) -> ModelError {
    ModelError::Mismatch {
        spec: spec.path.clone(),
        message,
    }
}

/// `FeatureSpec::check` refuses a scaler of the wrong length in a spec it
/// parses; a spec built in code has not been through it.
pub fn scaler(spec: &FeatureSpec) -> Result<(), ModelError> {
    let Some(s) = &spec.scaler else {
        return Ok(());
    };
    let cols = spec.columns();
    for (what, v) in [("center", &s.center), ("scale", &s.scale)] {
        if v.len() != cols {
            let first = spec
                .features
                .get(v.len())
                .map(|f| format!(" (the first without a value is {:?})", f.name))
                .unwrap_or_default();
            return Err(mismatch(
                spec,
                format!(
                    "scaler.{what} has {} values, the spec lists {cols} features{first}",
                    v.len()
                ),
            ));
        }
    }
    Ok(())
}

fn datum(d: Dtype) -> DatumType {
    match d {
        Dtype::Float32 => DatumType::F32,
        Dtype::Int64 => DatumType::I64,
    }
}

fn dtype_name(d: DatumType) -> String {
    match d {
        DatumType::F32 => "float32".into(),
        DatumType::F64 => "float64".into(),
        DatumType::I64 => "int64".into(),
        DatumType::I32 => "int32".into(),
        DatumType::String => "string".into(),
        DatumType::TDim => "int64".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn shape_text(shape: &ShapeFact) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

/// Checks the input against the spec, types the model with a symbolic
/// batch `N`, checks every spec output, and keeps as outputs only those a
/// verdict reads; `results[i]` is where `spec.outputs[i]` lands in the
/// plan's results, if it is computed.
pub fn against_spec(
    spec: &FeatureSpec,
    mut model: InferenceModel,
    path: &Path,
) -> Result<(TypedModel, Signature, Vec<Option<usize>>), ModelError> {
    let load_err = |e: TractError| ModelError::Load {
        path: path.to_path_buf(),
        message: format!("{e:#}"),
    };
    let cols = spec.columns();
    let want = &spec.input;
    let inputs: Vec<String> = model
        .inputs
        .iter()
        .map(|o| model.node(o.node).name.clone())
        .collect();
    if inputs.len() != 1 {
        return Err(mismatch(
            spec,
            format!(
                "the model has {} inputs ({}); osprey feeds one, {:?}",
                inputs.len(),
                inputs.join(", "),
                want.name
            ),
        ));
    }
    if inputs[0] != want.name {
        return Err(mismatch(
            spec,
            format!(
                "the model's input is named {:?}, the spec's [input] name is {:?}",
                inputs[0], want.name
            ),
        ));
    }
    let declared = model.input_fact(0).map_err(load_err)?.clone();
    if let Some(dt) = declared.datum_type.concretize() {
        if dt != datum(want.dtype) {
            return Err(mismatch(
                spec,
                format!(
                    "input {:?} is {}, the spec's [input] dtype is {}",
                    want.name,
                    dtype_name(dt),
                    want.dtype.as_str()
                ),
            ));
        }
    }
    let declared_shape = format!("{:?}", declared.shape);
    if let Some(rank) = declared.shape.rank().concretize() {
        if rank != 2 {
            return Err(mismatch(
                spec,
                format!(
                    "input {:?} has rank {rank} ({declared_shape}); osprey feeds [rows, {cols}]",
                    want.name
                ),
            ));
        }
        let width = declared
            .shape
            .dim(1)
            .and_then(|d| d.concretize())
            .and_then(|d| d.to_usize().ok());
        if let Some(width) = width {
            if width != cols {
                let which = if width > cols {
                    format!("the model has {} more than the spec names", width - cols)
                } else {
                    format!(
                        "the spec's columns from {} ({:?}) on are not in the model",
                        width + 1,
                        spec.features[width].name
                    )
                };
                return Err(mismatch(
                    spec,
                    format!(
                        "input {:?} has {width} columns, the spec lists {cols} features: {which}",
                        want.name
                    ),
                ));
            }
        }
    }

    let n = model.sym("N");
    let fact = TypedFact::dt_shape(datum(want.dtype), tvec![n.to_dim(), cols.to_dim()]);
    model.set_input_fact(0, fact.into()).map_err(load_err)?;
    let mut typed = model.into_typed().map_err(load_err)?;

    let mut ports = Vec::new();
    for &o in typed.output_outlets().map_err(load_err)? {
        let name = typed
            .outlet_label(o)
            .map(str::to_string)
            .unwrap_or_else(|| typed.node(o.node).name.clone());
        let fact = typed.outlet_fact(o).map_err(load_err)?.clone();
        ports.push((name, o, fact));
    }
    let mut chosen = Vec::new();
    let mut results = Vec::new();
    for out in &spec.outputs {
        let Some((_, outlet, fact)) = ports.iter().find(|(n, ..)| *n == out.name) else {
            let names: Vec<&str> = ports.iter().map(|(n, ..)| n.as_str()).collect();
            return Err(mismatch(
                spec,
                format!(
                    "the spec's output {:?} is not an output of the model (its outputs: {})",
                    out.name,
                    names.join(", ")
                ),
            ));
        };
        // tract types integer results of shape-like ops (ArgMax, as in
        // skl2onnx's MLP labels) as TDim: they are int64 in ONNX.
        let dt = if fact.datum_type == DatumType::TDim {
            DatumType::I64
        } else {
            fact.datum_type
        };
        if dt != datum(out.dtype) {
            return Err(mismatch(
                spec,
                format!(
                    "output {:?} is {}, the spec says dtype = {}",
                    out.name,
                    dtype_name(dt),
                    out.dtype.as_str()
                ),
            ));
        }
        let dims: Vec<TDim> = fact.shape.iter().cloned().collect();
        let ok = match out.meaning {
            Meaning::Probabilities => {
                let classes = out.classes.as_ref().map_or(0, Vec::len);
                match dims.get(1).map(|d| d.to_usize()) {
                    Some(Ok(w)) if dims.len() == 2 && w != classes => {
                        return Err(mismatch(
                            spec,
                            format!(
                                "output {:?} gives {w} class probabilities, the spec names {classes} classes",
                                out.name
                            ),
                        ))
                    }
                    _ => dims.len() == 2,
                }
            }
            Meaning::Score => dims.len() == 1 || (dims.len() == 2 && dims[1] == TDim::from(1)),
            Meaning::Label => dims.len() == 1,
        };
        if !ok {
            return Err(mismatch(
                spec,
                format!(
                    "output {:?} has shape {}, which does not hold one {} per row",
                    out.name,
                    shape_text(&fact.shape),
                    match out.meaning {
                        Meaning::Probabilities => "row of class probabilities",
                        Meaning::Score => "score",
                        Meaning::Label => "label",
                    }
                ),
            ));
        }
        // A verdict takes its class from the probabilities, so the label
        // output is checked but not computed (for an MLP its ArgMax and
        // lookup cost more than the network).
        if out.meaning == Meaning::Label {
            results.push(None);
        } else {
            results.push(Some(chosen.len()));
            chosen.push(*outlet);
        }
    }
    let signature = Signature {
        input: Port {
            name: want.name.clone(),
            dtype: want.dtype.as_str().into(),
            shape: format!("[N, {cols}]"),
        },
        outputs: ports
            .iter()
            .map(|(name, _, fact)| Port {
                name: name.clone(),
                dtype: dtype_name(fact.datum_type),
                shape: shape_text(&fact.shape),
            })
            .collect(),
    };
    typed.select_output_outlets(&chosen).map_err(load_err)?;
    Ok((typed, signature, results))
}
