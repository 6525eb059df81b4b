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
