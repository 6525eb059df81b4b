//! The human-readable summary `osprey check --model` prints: enough to
//! compare a spec with the training notebook column by column.

use std::fmt::Write;

use super::check::Signature;
use crate::features::spec::{ContextKey, ContextStat, Meaning, ModelKind, Transform, Value};
use crate::features::FeatureSpec;

fn kind_text(v: &Value) -> String {
    match v {
        Value::Field(f) => format!("field {}", f.column()),
        Value::Ratio { num, den, .. } => format!("ratio {} / {}", num.column(), den.column()),
        Value::Rate { field, .. } => format!("rate {} / duration", field.column()),
        Value::OneHot { field, equals } => format!("one_hot {} = {equals:?}", field.column()),
        Value::History { letter } => format!("history {letter:?}"),
        Value::Context {
            key,
            stat,
            window_secs,
            ahead_secs,
        } => {
            let key = match key {
                ContextKey::OrigH => "orig_h",
                ContextKey::RespH => "resp_h",
                ContextKey::OrigHRespP => "orig_h+resp_p",
                ContextKey::RespHAsOrig => "resp_h as orig_h",
            };
            let stat = match stat {
                ContextStat::Conns => "conns".to_string(),
                ContextStat::DistinctRespP => "distinct resp_p".into(),
                ContextStat::DistinctRespH => "distinct resp_h".into(),
                ContextStat::DistinctOrigH => "distinct orig_h".into(),
                ContextStat::DistinctOrigP => "distinct orig_p".into(),
                ContextStat::ShareState(s) => format!("share {}", s.join("|")),
                ContextStat::Mean(f) => format!("mean {}", f.column()),
            };
            if *ahead_secs > 0.0 {
                format!("context {key} {stat} {window_secs}s +{ahead_secs}s ahead")
            } else {
                format!("context {key} {stat} {window_secs}s")
            }
        }
    }
}

pub fn render(spec: &FeatureSpec, sig: &Signature) -> String {
    let mut s = String::new();
    let kind = match spec.model.kind {
        ModelKind::Classifier => "classifier",
        ModelKind::Anomaly => "anomaly",
    };
    let _ = writeln!(
        s,
        "model    {} {} ({kind})",
        spec.model.name, spec.model.version
    );
    if !spec.model.description.is_empty() {
        let _ = writeln!(s, "         {}", spec.model.description);
    }
    let _ = writeln!(s, "spec     {}", spec.path.display());
    let _ = writeln!(s, "onnx     {}", spec.onnx_path().display());
    let _ = writeln!(
        s,
        "input    {}: {} {}",
        sig.input.name, sig.input.dtype, sig.input.shape
    );
    let _ = writeln!(s, "outputs");
    for p in &sig.outputs {
        let used = spec.outputs.iter().find(|o| o.name == p.name);
        let meaning = match used {
            None => "(not used)".to_string(),
            Some(o) => match o.meaning {
                Meaning::Probabilities => format!(
                    "probabilities of {}",
                    o.classes.as_deref().unwrap_or_default().join(", ")
                ),
                Meaning::Label => "label".into(),
                Meaning::Score => {
                    format!("score, anomalous at >= {}", o.threshold.unwrap_or(f64::NAN))
                }
            },
        };
        let _ = writeln!(
            s,
            "  {:<16} {:<8} {:<10} {meaning}",
            p.name, p.dtype, p.shape
        );
    }
    if spec.model.kind == ModelKind::Classifier {
        let _ = writeln!(
            s,
            "alert    classes other than {:?} together at probability >= {} (label: the likeliest of them)",
            spec.alert.benign_class, spec.alert.min_probability
        );
    }
    let scaler = spec.scaler.as_ref();
    let _ = writeln!(
        s,
        "scaler   {}",
        match scaler.map(|x| x.kind) {
            None => "none (the model takes the transformed values)".to_string(),
            Some(k) => format!("{k:?}").to_lowercase(),
        }
    );
    let _ = writeln!(s);
    let name_w = spec
        .features
        .iter()
        .map(|f| f.name.len())
        .max()
        .unwrap_or(4)
        .max(6);
    let kinds: Vec<String> = spec.features.iter().map(|f| kind_text(&f.value)).collect();
    let kind_w = kinds.iter().map(String::len).max().unwrap_or(4).max(4);
    let _ = writeln!(
        s,
        "{:>3}  {:<name_w$}  {:<kind_w$}  {:<9}  {:>12}  {:>12}",
        "#", "column", "kind", "transform", "center", "scale"
    );
    for (i, (f, kind)) in spec.features.iter().zip(&kinds).enumerate() {
        let transform = match f.transform {
            Transform::None => "none",
            Transform::Log1p => "log1p",
        };
        let (c, sc) = match scaler {
            Some(x) => (
                x.center.get(i).map_or("?".into(), |v| format!("{v:.6}")),
                x.scale.get(i).map_or("?".into(), |v| format!("{v:.6}")),
            ),
            None => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            s,
            "{i:>3}  {:<name_w$}  {kind:<kind_w$}  {transform:<9}  {c:>12}  {sc:>12}",
            f.name
        );
    }
    s
}
