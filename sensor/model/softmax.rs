//! A softmax over a short last axis (class probabilities), swapped in for
//! tract's after optimisation.
//!
//! tract's softmax runs 64-wide SIMD kernels along the axis, once per row:
//! over three classes that is mostly set-up, and it took half of an MLP
//! classifier's time (perf, skl2onnx's 64x32 MLP, 1,024 rows). A plain loop
//! per row costs a few nanoseconds.

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
        softmax_rows(values, self.width);
        Ok(tvec!(out.into_tvalue()))
    }
}

/// Softmax of each `width`-long row of `values`, in place.
///
/// Compiled a second time for AVX2: tract's AVX-512 kernels leave the
/// upper vector state dirty, and the baseline (SSE) build of this loop then
/// ran about 50 times slower than its instruction count (perf: 57% of an
/// MLP's time in this loop and libm's `expf` for three classes a row). The
/// VEX-encoded copy is picked at run time where the CPU has it.
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
fn softmax_rows(values: &mut [f32], width: usize) {
    if width == 0 {
        return;
    }
    for row in values.chunks_exact_mut(width) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        row.iter_mut().for_each(|x| *x -= max);
    }
    // One pass over the whole batch, so it vectorises across rows.
    values.iter_mut().for_each(|x| *x = exp_nonpositive(*x));
    for row in values.chunks_exact_mut(width) {
        let inv = 1.0 / row.iter().sum::<f32>();
        row.iter_mut().for_each(|x| *x *= inv);
    }
}

/// `exp(d)` for `d <= 0`, branch-free so the loop above vectorises (libm's
/// `expf` is a call per value). Cephes' single-precision range reduction
/// and polynomial (about 1 ulp); below -87 the result would be subnormal
/// and is flushed to about 1.6e-38, nothing next to the row's maximum,
/// whose term is 1.
#[inline(always)]
fn exp_nonpositive(d: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer
    // without a call to `roundf` on CPUs lacking SSE4.1.
    const ROUND: f32 = 12_582_912.0;
    let x = d.clamp(-87.0, 0.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // n is in [-126, 0]: a normal power of two.
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    y * scale
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_within_two_ulp() {
        let mut d = 0.0f32;
        while d > -87.0 {
            let want = d.exp();
            let got = exp_nonpositive(d);
            let ulps = (got.to_bits() as i64 - want.to_bits() as i64).abs();
            assert!(ulps <= 2, "exp({d}) = {got}, std says {want} ({ulps} ulp)");
            d -= 0.0137;
        }
        assert!(exp_nonpositive(-1000.0) < 2e-38);
        assert_eq!(exp_nonpositive(0.0), 1.0);
    }

    #[test]
    fn rows_sum_to_one_and_keep_order() {
        let mut v = vec![1.0, 2.0, 3.0, -50.0, 0.0, 50.0, 7.0, 7.0, 7.0];
        softmax_rows(&mut v, 3);
        for row in v.chunks(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        assert!(v[0] < v[1] && v[1] < v[2]);
        assert!((v[6] - 1.0 / 3.0).abs() < 1e-7);
        let want = [(-2.0f32).exp(), (-1.0f32).exp(), 1.0];
        let sum: f32 = want.iter().sum();
        for (g, w) in v[..3].iter().zip(want) {
            assert!((g - w / sum).abs() < 1e-7);
        }
    }
}
