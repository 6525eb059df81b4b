//! A softmax over a short last axis (class probabilities), swapped in for
//! tract's after optimisation.
//!
//! tract's softmax runs 64-wide SIMD kernels along the axis, once per row:
//! over three classes that is mostly set-up, and it took half of an MLP
//! classifier's time (perf, skl2onnx's 64x32 MLP, 1,024 rows). A plain loop
//! per row costs a few nanoseconds, and `exp` from the standard library also
//! keeps the probabilities closer to onnxruntime's.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::nn::{Softmax, SoftmaxKind};

/// Axes up to this long get the per-row loop.
const MAX_WIDTH: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
struct RowSoftmax {
    width: usize,
}

impl Op for RowSoftmax {
    fn name(&self) -> StaticName {
        "OspreyRowSoftmax".into()
    }

    op_as_typed_op!();
}

impl EvalOp for RowSoftmax {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let mut out = input.into_tensor();
        let mut view = out.try_as_plain_ram_mut()?;
        let values = view.as_slice_mut::<f32>()?;
        for row in values.chunks_exact_mut(self.width) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for x in row.iter_mut() {
                *x = (*x - max).exp();
                sum += *x;
            }
            let inv = 1.0 / sum;
            row.iter_mut().for_each(|x| *x *= inv);
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for RowSoftmax {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].without_value()))
    }

    as_op!();
}

/// Replaces every f32 softmax over a short last axis; returns how many.
pub fn narrow(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    loop {
        let mut found = None;
        for node in model.nodes() {
            let Some(op) = node.op_as::<Softmax>() else {
                continue;
            };
            let fact = model.outlet_fact(node.inputs[0])?;
            let rank = fact.rank();
            let width = fact.shape.last().and_then(|d| d.to_usize().ok());
            if op.kind == SoftmaxKind::Softmax
                && op.quant_output_dt.is_none()
                && fact.datum_type == DatumType::F32
                && rank >= 1
                && op.axes.as_slice() == [rank - 1]
            {
                if let Some(w) = width.filter(|w| (1..=MAX_WIDTH).contains(w)) {
                    found = Some((node.id, w));
                    break;
                }
            }
        }
        let Some((id, width)) = found else { break };
        let node = model.node(id).clone();
        let patch =
            TypedModelPatch::replace_single_op(model, &node, &node.inputs, RowSoftmax { width })?;
        patch.apply(model)?;
        model.compact()?;
        replaced += 1;
    }
    Ok(replaced)
}
