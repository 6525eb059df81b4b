//! Feature vectors: every column of a spec computed for every flow, then
//! scaled, all in f64. Models take f32: the rounding happens once, at the
//! model's input (`to_f32`), and the training code (which reads the
//! unscaled f64 values that `osprey featurize --raw` prints and applies
//! the scaler the same way) rounds at the same point.

use super::context::context_columns;
use super::flow::{Flow, NumField};
use super::spec::{Feature, FeatureSpec, Scaler, Value};

/// The unscaled value of a non-context column (`None`: use `missing`).
fn column_value(f: &Feature, flow: &Flow) -> Option<f64> {
    match &f.value {
        Value::Field(field) => field.get(flow),
        Value::Ratio { num, den, den_zero } => {
            let n = num.get(flow)?;
            match den.get(flow) {
                Some(d) if d != 0.0 => Some(n / d),
                _ => Some(*den_zero),
            }
        }
        Value::Rate {
            field,
            min_duration,
        } => {
            let v = field.get(flow)?;
            let d = NumField::Duration.get(flow).unwrap_or(0.0);
            Some(v / d.max(*min_duration))
        }
        Value::OneHot { field, equals } => Some(if field.is(flow, equals) { 1.0 } else { 0.0 }),
        Value::History { letter } => Some(if flow.history.contains(*letter) {
            1.0
        } else {
            0.0
        }),
        // Filled in from the context sweep.
        Value::Context { .. } => None,
    }
}

/// Feature rows for `flows`, row-major (`flows.len() * spec.columns()`),
/// scaled when `scaled` and the spec has a scaler. Values that are not
/// finite (which no column should produce) become the column's `missing`,
/// so NaN or infinity never reaches a model.
pub fn featurize(spec: &FeatureSpec, flows: &[Flow], scaled: bool) -> Vec<f64> {
    let cols = spec.columns();
    let ctx = if spec
        .features
        .iter()
        .any(|f| matches!(f.value, Value::Context { .. }))
    {
        context_columns(&spec.features, flows)
    } else {
        Vec::new()
    };
    let scaler = spec.scaler.as_ref().filter(|_| scaled);
    let mut out = Vec::with_capacity(flows.len() * cols);
    push_rows(&spec.features, flows, &ctx, &mut out);
    if let Some(s) = scaler {
        scale_rows(s, cols, &mut out);
    }
    out
}

/// Appends the unscaled rows of `flows` to `out`, taking context columns
/// from `ctx` (laid out as [`context_columns`] returns them; missing
/// entries count as unset). The one place rows are assembled, so the
/// batch and the live featurizer cannot drift apart.
pub(super) fn push_rows(features: &[Feature], flows: &[Flow], ctx: &[f64], out: &mut Vec<f64>) {
    let cols = features.len();
    for (i, flow) in flows.iter().enumerate() {
        for (c, f) in features.iter().enumerate() {
            let raw = match f.value {
                Value::Context { .. } => ctx.get(i * cols + c).copied(),
                _ => column_value(f, flow),
            };
            let mut v = f.transform.apply(raw.unwrap_or(f.missing));
            if !v.is_finite() {
                v = f.transform.apply(f.missing);
            }
            out.push(v);
        }
    }
}

/// Applies a scaler to unscaled rows in place: what `featurize(.., true)`
/// does after computing the columns, so models that share their columns
/// (the bundled two) compute them once and scale them each their own way.
pub fn scale_rows(s: &Scaler, cols: usize, rows: &mut [f64]) {
    if cols == 0 {
        return;
    }
    for row in rows.chunks_exact_mut(cols) {
        // Lengths were checked when the spec was loaded.
        for ((v, center), scale) in row.iter_mut().zip(&s.center).zip(&s.scale) {
            *v = (*v - center) / scale;
        }
    }
}

/// The model's input: the same values rounded to f32.
pub fn to_f32(values: &[f64]) -> Vec<f32> {
    values.iter().map(|&v| v as f32).collect()
}

/// [`scale_rows`] then [`to_f32`] in one pass into a reused buffer:
/// the same f64 arithmetic and the same rounding, so the values are
/// bit-identical, without copying the unscaled rows (which other models
/// sharing the columns still need) or allocating per batch.
pub fn scaled_f32_into(s: Option<&Scaler>, cols: usize, rows: &[f64], out: &mut Vec<f32>) {
    out.clear();
    match s {
        Some(s) if cols > 0 => {
            // Written by index into a sized buffer, not pushed: the loop
            // then compiles to vector divisions (the division itself must
            // stay: multiplying by a reciprocal would round differently
            // from the training side). Scaler lengths were checked when
            // the spec was loaded.
            out.resize(rows.len() / cols * cols, 0.0);
            for (o, row) in out.chunks_exact_mut(cols).zip(rows.chunks_exact(cols)) {
                for (((o, v), c), k) in o.iter_mut().zip(row).zip(&s.center).zip(&s.scale) {
                    *o = ((v - c) / k) as f32;
                }
            }
        }
        _ => out.extend(rows.iter().map(|&v| v as f32)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::spec::ScalerKind;

    #[test]
    fn one_pass_scaling_is_bit_identical_to_two() {
        let cols = 7;
        let s = Scaler {
            kind: ScalerKind::Standard,
            center: vec![0.0, 1.5, -3.25, 1e9, 0.1, 7.0, -0.0],
            scale: vec![1.0, 0.3, 2.5, 1e-3, 3.0, 1e12, 0.7],
        };
        // A deterministic spread of magnitudes and signs.
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let rows: Vec<f64> = (0..cols * 300)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let m = (x % 2001) as f64 - 1000.0;
                m * 10f64.powi((x >> 32) as i32 % 12 - 6)
            })
            .collect();
        let mut two = rows.clone();
        scale_rows(&s, cols, &mut two);
        let two = to_f32(&two);
        let mut one = Vec::new();
        scaled_f32_into(Some(&s), cols, &rows, &mut one);
        assert_eq!(
            one.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            two.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        scaled_f32_into(None, cols, &rows, &mut one);
        assert_eq!(one, to_f32(&rows));
    }
}
