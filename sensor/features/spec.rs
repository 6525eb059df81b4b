//! A model's feature spec (`models/NAME.toml`): the ordered input columns
//! and how each is computed from conn records, the scaler fitted at
//! training time, and what the model's outputs mean.
//!
//! Every rule of the spec is checked when it is loaded, and an error names
//! the feature (by position and name) and the key at fault: a model must
//! never start with a column it would compute differently from training.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::flow::{CatField, NumField};

/// Why a spec was refused.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Class probabilities with class names.
    Classifier,
    /// An anomaly score with a threshold.
    Anomaly,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dtype {
    Float32,
    Int64,
}

impl Dtype {
    pub fn as_str(self) -> &'static str {
        match self {
            Dtype::Float32 => "float32",
            Dtype::Int64 => "int64",
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    /// The ONNX file, relative to the spec's folder.
    pub onnx: PathBuf,
    pub kind: ModelKind,
    #[serde(default)]
    pub description: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// The ONNX input tensor's name.
    pub name: String,
    pub dtype: Dtype,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContextDefaults {
    /// Default window of host-context aggregates, seconds of packet time.
    #[serde(default = "default_window")]
    pub window_secs: f64,
    /// Default look-ahead of host-context aggregates, seconds of packet
    /// time after the flow's start (0: the window ends at the flow).
    #[serde(default)]
    pub ahead_secs: f64,
}

fn default_window() -> f64 {
    60.0
}

impl Default for ContextDefaults {
    fn default() -> Self {
        ContextDefaults {
            window_secs: default_window(),
            ahead_secs: 0.0,
        }
    }
}

/// How a computed value is transformed before scaling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    #[default]
    None,
    /// `sign(x) * ln(1 + |x|)`: compresses counts and byte volumes that
    /// span orders of magnitude; defined for every real x.
    Log1p,
}

/// Whole numbers below this have their `Log1p` looked up in a table.
const LOG1P_SMALL: usize = 4096;

/// `Log1p` of 0, 1, 2, ... computed once with the same expression as
/// [`Transform::apply`], so a lookup gives the same bits: most columns
/// under `log1p` are counts, and libm's `log1p` was a visible share of
/// scoring.
static LOG1P_TABLE: std::sync::LazyLock<Box<[f64]>> =
    std::sync::LazyLock::new(|| (0..LOG1P_SMALL).map(|i| log1p_signed(i as f64)).collect());

fn log1p_signed(x: f64) -> f64 {
    x.signum() * x.abs().ln_1p()
}

impl Transform {
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Transform::None => x,
            Transform::Log1p => {
                // +0 only (-0 maps to -0), and whole numbers only.
                if x.is_sign_positive() && x < LOG1P_SMALL as f64 && x.fract() == 0.0 {
                    if let Some(&v) = LOG1P_TABLE.get(x as usize) {
                        return v;
                    }
                }
                log1p_signed(x)
            }
        }
    }
}

/// Which side's address keys a host-context aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextKey {
    /// What the originating host did.
    OrigH,
    /// What the responding host received.
    RespH,
    /// What the originating host did to the same service (responder port
    /// and transport, on any host): a brute force or a slow-read attack
    /// looks the same whatever else the host does at the time.
    OrigHRespP,
    /// What the responding host originated: the flows whose originator is
    /// this flow's responder. A victim's ICMP unreachable answers to a UDP
    /// scan are flows the victim originates; what their responder (the
    /// scanner) did at the time is what shows them to be part of a scan.
    RespHAsOrig,
}

impl ContextKey {
    /// The key the windows of this key are made of: flows are grouped by
    /// their originator for [`ContextKey::RespHAsOrig`], and queried by
    /// their responder.
    pub fn members(self) -> ContextKey {
        match self {
            ContextKey::RespHAsOrig => ContextKey::OrigH,
            k => k,
        }
    }
}

/// A host-context statistic over the flows of the same key in the window.
#[derive(Clone, Debug, PartialEq)]
pub enum ContextStat {
    /// Flows (this one included).
    Conns,
    DistinctRespP,
    DistinctRespH,
    DistinctOrigH,
    DistinctOrigP,
    /// Share of flows whose conn_state is one of these.
    ShareState(Vec<String>),
    /// Mean of a numeric field (unset counts as 0).
    Mean(NumField),
}

/// What one column computes (before its transform).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Field(NumField),
    /// `num / den`; `den_zero` when the denominator is 0 or unset.
    Ratio {
        num: NumField,
        den: NumField,
        den_zero: f64,
    },
    /// `field / max(duration, min_duration)`: a rate that stays finite for
    /// single-packet flows (whose duration is unset).
    Rate {
        field: NumField,
        min_duration: f64,
    },
    OneHot {
        field: CatField,
        equals: String,
    },
    /// 1 when the history holds the letter (case-sensitive: upper case is
    /// the originator).
    History {
        letter: char,
    },
    Context {
        key: ContextKey,
        stat: ContextStat,
        window_secs: f64,
        /// The window reaches this far past the flow's start: the live
        /// scorer holds a record this long before scoring it, so the first
        /// probes of a scan see the ones that follow.
        ahead_secs: f64,
    },
}

/// One input column.
#[derive(Clone, Debug, PartialEq)]
pub struct Feature {
    pub name: String,
    pub value: Value,
    pub transform: Transform,
    /// Used when the source field is unset (before the transform).
    pub missing: f64,
}

/// The column as written in the TOML file; checked into a [`Feature`].
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeature {
    pub name: String,
    /// field | ratio | rate | one_hot | history | context
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num: Option<NumField>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub den: Option<NumField>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub den_zero: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_duration: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub letter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<ContextKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub states: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_secs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ahead_secs: Option<f64>,
    #[serde(default)]
    pub transform: Transform,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScalerKind {
    /// Fitted as (mean, standard deviation).
    Standard,
    /// Fitted as (min, max - min).
    Minmax,
}

/// `scaled = (x - center) / scale`, per column, in f64 then rounded to f32.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scaler {
    pub kind: ScalerKind,
    pub center: Vec<f64>,
    pub scale: Vec<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Meaning {
    /// Per-class probabilities, `[N, classes]`.
    Probabilities,
    /// The predicted class index, `[N]`.
    Label,
    /// An anomaly score, `[N]` or `[N, 1]`.
    Score,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutputDef {
    pub name: String,
    pub dtype: Dtype,
    pub meaning: Meaning,
    /// Class names in the model's order (probabilities).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    /// Scores at or above this are anomalous (score).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

/// When a classifier's verdict is an alert.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// The class that means "nothing to report".
    #[serde(default = "default_benign")]
    pub benign_class: String,
    /// A flow is flagged when the classes other than `benign_class` are,
    /// together, at least this likely; its label is the likeliest of them.
    #[serde(default = "default_min_probability")]
    pub min_probability: f64,
}

fn default_benign() -> String {
    "benign".into()
}

fn default_min_probability() -> f64 {
    0.5
}

impl Default for AlertRule {
    fn default() -> Self {
        AlertRule {
            benign_class: default_benign(),
            min_probability: default_min_probability(),
        }
    }
}

/// The file as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    pub model: ModelInfo,
    pub input: InputSpec,
    #[serde(default)]
    pub context: ContextDefaults,
    #[serde(rename = "feature")]
    pub features: Vec<RawFeature>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaler: Option<Scaler>,
    /// Empty in a features-only spec (the template training starts from);
    /// a model needs them (see [`FeatureSpec::check_outputs`]).
    #[serde(rename = "output", default)]
    pub outputs: Vec<OutputDef>,
    #[serde(default)]
    pub alert: AlertRule,
}

/// A checked spec.
#[derive(Clone, Debug)]
pub struct FeatureSpec {
    pub model: ModelInfo,
    pub input: InputSpec,
    pub features: Vec<Feature>,
    pub scaler: Option<Scaler>,
    pub outputs: Vec<OutputDef>,
    pub alert: AlertRule,
    /// The spec file (for messages) and its folder (for the ONNX path).
    pub path: PathBuf,
}

impl FeatureSpec {
    pub fn load(path: &Path) -> Result<FeatureSpec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        FeatureSpec::parse(&text, path)
    }

    /// Parses and checks `text` (`path` names it in messages).
    pub fn parse(text: &str, path: &Path) -> Result<FeatureSpec, SpecError> {
        let raw: RawSpec = toml::from_str(text).map_err(|e| SpecError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        FeatureSpec::check(raw, path)
    }

    pub fn check(raw: RawSpec, path: &Path) -> Result<FeatureSpec, SpecError> {
        let bad = |message: String| SpecError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        if raw.features.is_empty() {
            return Err(bad("the spec lists no [[feature]]".into()));
        }
        if !(raw.context.window_secs > 0.0 && raw.context.window_secs.is_finite()) {
            return Err(bad(format!(
                "context.window_secs must be a positive number of seconds, not {}",
                raw.context.window_secs
            )));
        }
        if !(raw.context.ahead_secs >= 0.0 && raw.context.ahead_secs.is_finite()) {
            return Err(bad(format!(
                "context.ahead_secs must be zero or a positive number of seconds, not {}",
                raw.context.ahead_secs
            )));
        }
        let mut names = HashSet::new();
        let mut features = Vec::with_capacity(raw.features.len());
        for (i, f) in raw.features.iter().enumerate() {
            let at = format!("feature {} ({:?})", i + 1, f.name);
            if f.name.is_empty() {
                return Err(bad(format!("feature {}: name is empty", i + 1)));
            }
            if !names.insert(f.name.as_str()) {
                return Err(bad(format!("{at}: the name is used twice")));
            }
            let feature = check_feature(f, &raw.context).map_err(|m| bad(format!("{at}: {m}")))?;
            features.push(feature);
        }
        if let Some(s) = &raw.scaler {
            for (what, v) in [("center", &s.center), ("scale", &s.scale)] {
                if v.len() != features.len() {
                    return Err(bad(format!(
                        "scaler.{what} has {} values, the spec lists {} features{}",
                        v.len(),
                        features.len(),
                        features
                            .get(v.len())
                            .map(|f| format!(" (the first without a value is {:?})", f.name))
                            .unwrap_or_default()
                    )));
                }
            }
            for (i, (c, sc)) in s.center.iter().zip(&s.scale).enumerate() {
                let name = features.get(i).map(|f| f.name.as_str()).unwrap_or("?");
                if !c.is_finite() {
                    return Err(bad(format!(
                        "scaler.center[{i}] ({name:?}) is not a finite number"
                    )));
                }
                if !sc.is_finite() || *sc == 0.0 {
                    return Err(bad(format!(
                        "scaler.scale[{i}] ({name:?}) must be a finite non-zero number, not {sc}"
                    )));
                }
            }
        }
        let spec = FeatureSpec {
            model: raw.model,
            input: raw.input,
            features,
            scaler: raw.scaler,
            outputs: raw.outputs,
            alert: raw.alert,
            path: path.to_path_buf(),
        };
        if !spec.outputs.is_empty() {
            spec.check_outputs()?;
        }
        Ok(spec)
    }

    /// Checks what the spec says about the model's outputs; a spec that
    /// drives a model must pass this.
    pub fn check_outputs(&self) -> Result<(), SpecError> {
        let bad = |message: String| SpecError::Invalid {
            path: self.path.clone(),
            message,
        };
        let raw = self;
        if raw.outputs.is_empty() {
            return Err(bad("the spec lists no [[output]]".into()));
        }
        let mut out_names = HashSet::new();
        for (i, o) in raw.outputs.iter().enumerate() {
            let at = format!("output {} ({:?})", i + 1, o.name);
            if !out_names.insert(o.name.as_str()) {
                return Err(bad(format!("{at}: the name is used twice")));
            }
            match o.meaning {
                Meaning::Probabilities => {
                    let Some(c) = &o.classes else {
                        return Err(bad(format!("{at}: probabilities need `classes`")));
                    };
                    if c.len() < 2 {
                        return Err(bad(format!("{at}: `classes` needs at least two names")));
                    }
                    let uniq: HashSet<&String> = c.iter().collect();
                    if uniq.len() != c.len() {
                        return Err(bad(format!("{at}: `classes` repeats a name")));
                    }
                    if o.dtype != Dtype::Float32 {
                        return Err(bad(format!("{at}: probabilities must be float32")));
                    }
                }
                Meaning::Score => match o.threshold {
                    Some(t) if t.is_finite() => {}
                    _ => return Err(bad(format!("{at}: a score needs a finite `threshold`"))),
                },
                Meaning::Label => {}
            }
        }
        match raw.model.kind {
            ModelKind::Classifier => {
                let Some(p) = raw
                    .outputs
                    .iter()
                    .find(|o| o.meaning == Meaning::Probabilities)
                else {
                    return Err(bad(
                        "a classifier needs an output with meaning = \"probabilities\"".into(),
                    ));
                };
                let classes = p.classes.as_deref().unwrap_or_default();
                if !classes.contains(&raw.alert.benign_class) {
                    return Err(bad(format!(
                        "alert.benign_class {:?} is not one of the classes of output {:?}",
                        raw.alert.benign_class, p.name
                    )));
                }
            }
            ModelKind::Anomaly => {
                if !raw.outputs.iter().any(|o| o.meaning == Meaning::Score) {
                    return Err(bad(
                        "an anomaly model needs an output with meaning = \"score\"".into(),
                    ));
                }
            }
        }
        if !(0.0..=1.0).contains(&raw.alert.min_probability) {
            return Err(bad(format!(
                "alert.min_probability must lie in [0, 1], not {}",
                raw.alert.min_probability
            )));
        }
        Ok(())
    }

    /// The ONNX file's path (relative paths are relative to the spec).
    pub fn onnx_path(&self) -> PathBuf {
        if self.model.onnx.is_absolute() {
            self.model.onnx.clone()
        } else {
            self.path
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join(&self.model.onnx)
        }
    }

    pub fn columns(&self) -> usize {
        self.features.len()
    }

    /// The longest context window any column uses.
    pub fn max_window(&self) -> f64 {
        self.features
            .iter()
            .filter_map(|f| match f.value {
                Value::Context { window_secs, .. } => Some(window_secs),
                _ => None,
            })
            .fold(0.0, f64::max)
    }

    /// The longest look-ahead any column uses: how long the live scorer
    /// holds a record before scoring it.
    pub fn max_ahead(&self) -> f64 {
        max_ahead(&self.features)
    }
}

/// The longest look-ahead of `features`' context columns (0 without any).
pub fn max_ahead(features: &[Feature]) -> f64 {
    features
        .iter()
        .filter_map(|f| match f.value {
            Value::Context { ahead_secs, .. } => Some(ahead_secs),
            _ => None,
        })
        .fold(0.0, f64::max)
}

fn num_field(name: &str) -> Result<NumField, String> {
    NumField::ALL
        .iter()
        .copied()
        .find(|f| {
            let col = f.column();
            col == name || col.strip_prefix("id.") == Some(name)
        })
        .ok_or_else(|| {
            format!(
                "field {name:?} is not a numeric conn.log field (one of: {})",
                NumField::ALL.map(|f| f.column()).join(", ")
            )
        })
}

fn cat_field(name: &str) -> Result<CatField, String> {
    [CatField::Proto, CatField::ConnState, CatField::Service]
        .into_iter()
        .find(|f| f.column() == name)
        .ok_or_else(|| {
            format!("field {name:?} cannot be one-hot encoded (proto, conn_state or service)")
        })
}

/// Checks one column: the keys its kind needs are there, and no others.
fn check_feature(f: &RawFeature, defaults: &ContextDefaults) -> Result<Feature, String> {
    let allowed: &[&str] = match f.kind.as_str() {
        "field" => &["field"],
        "ratio" => &["num", "den", "den_zero"],
        "rate" => &["field", "min_duration"],
        "one_hot" => &["field", "equals"],
        "history" => &["letter"],
        "context" => &[
            "key",
            "stat",
            "states",
            "field",
            "window_secs",
            "ahead_secs",
        ],
        other => {
            return Err(format!(
                "kind {other:?} is not one of field, ratio, rate, one_hot, history, context"
            ))
        }
    };
    let present = [
        ("field", f.field.is_some()),
        ("num", f.num.is_some()),
        ("den", f.den.is_some()),
        ("den_zero", f.den_zero.is_some()),
        ("min_duration", f.min_duration.is_some()),
        ("equals", f.equals.is_some()),
        ("letter", f.letter.is_some()),
        ("key", f.key.is_some()),
        ("stat", f.stat.is_some()),
        ("states", f.states.is_some()),
        ("window_secs", f.window_secs.is_some()),
        ("ahead_secs", f.ahead_secs.is_some()),
    ];
    if let Some((k, _)) = present.iter().find(|(k, p)| *p && !allowed.contains(k)) {
        return Err(format!("`{k}` does not apply to kind {:?}", f.kind));
    }
    let need = |k: &str| format!("kind {:?} needs `{k}`", f.kind);
    let missing = f.missing.unwrap_or(0.0);
    if !missing.is_finite() {
        return Err("`missing` must be a finite number".into());
    }
    let value = match f.kind.as_str() {
        "field" => Value::Field(num_field(f.field.as_deref().ok_or_else(|| need("field"))?)?),
        "ratio" => Value::Ratio {
            num: f.num.ok_or_else(|| need("num"))?,
            den: f.den.ok_or_else(|| need("den"))?,
            den_zero: finite("den_zero", f.den_zero.unwrap_or(0.0))?,
        },
        "rate" => {
            let min_duration = f.min_duration.unwrap_or(1e-3);
            if !(min_duration > 0.0 && min_duration.is_finite()) {
                return Err("`min_duration` must be positive".into());
            }
            Value::Rate {
                field: num_field(f.field.as_deref().ok_or_else(|| need("field"))?)?,
                min_duration,
            }
        }
        "one_hot" => Value::OneHot {
            field: cat_field(f.field.as_deref().ok_or_else(|| need("field"))?)?,
            equals: f.equals.clone().ok_or_else(|| need("equals"))?,
        },
        "history" => {
            let l = f.letter.as_deref().ok_or_else(|| need("letter"))?;
            let mut chars = l.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if c.is_ascii_graphic() => Value::History { letter: c },
                _ => return Err(format!("`letter` must be one history letter, not {l:?}")),
            }
        }
        "context" => {
            let key = f.key.ok_or_else(|| need("key"))?;
            let window_secs = f.window_secs.unwrap_or(defaults.window_secs);
            if !(window_secs > 0.0 && window_secs.is_finite()) {
                return Err("`window_secs` must be a positive number of seconds".into());
            }
            let ahead_secs = f.ahead_secs.unwrap_or(defaults.ahead_secs);
            if !(ahead_secs >= 0.0 && ahead_secs.is_finite()) {
                return Err("`ahead_secs` must be zero or a positive number of seconds".into());
            }
            let stat_name = f.stat.as_deref().ok_or_else(|| need("stat"))?;
            let stat = match stat_name {
                "conns" => ContextStat::Conns,
                "distinct_resp_p" => ContextStat::DistinctRespP,
                "distinct_resp_h" => ContextStat::DistinctRespH,
                "distinct_orig_h" => ContextStat::DistinctOrigH,
                "distinct_orig_p" => ContextStat::DistinctOrigP,
                "share_state" => {
                    let s = f
                        .states
                        .clone()
                        .ok_or_else(|| "stat \"share_state\" needs `states`".to_string())?;
                    if s.is_empty() {
                        return Err("`states` is empty".into());
                    }
                    ContextStat::ShareState(s)
                }
                "mean" => ContextStat::Mean(num_field(
                    f.field
                        .as_deref()
                        .ok_or_else(|| "stat \"mean\" needs `field`".to_string())?,
                )?),
                other => {
                    return Err(format!(
                        "stat {other:?} is not one of conns, distinct_resp_p, distinct_resp_h, \
                         distinct_orig_h, distinct_orig_p, share_state, mean"
                    ))
                }
            };
            if f.states.is_some() && !matches!(stat, ContextStat::ShareState(_)) {
                return Err(format!("`states` does not apply to stat {stat_name:?}"));
            }
            if f.field.is_some() && !matches!(stat, ContextStat::Mean(_)) {
                return Err(format!("`field` does not apply to stat {stat_name:?}"));
            }
            Value::Context {
                key,
                stat,
                window_secs,
                ahead_secs,
            }
        }
        other => return Err(format!("kind {other:?} is not known")),
    };
    Ok(Feature {
        name: f.name.clone(),
        value,
        transform: f.transform,
        missing,
    })
}

fn finite(what: &str, v: f64) -> Result<f64, String> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("`{what}` must be a finite number"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table is a cache, not an approximation: every input gives the
    /// bits the plain expression gives (the training side computes the
    /// same `sign(x) * log1p(|x|)`).
    #[test]
    fn log1p_lookups_give_the_computed_bits() {
        let mut xs: Vec<f64> = (0..LOG1P_SMALL + 3).map(|i| i as f64).collect();
        xs.extend([
            -0.0,
            -1.0,
            -4095.0,
            0.5,
            4095.5,
            1e-300,
            f64::MIN_POSITIVE / 2.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            1e18,
        ]);
        for x in xs {
            let got = Transform::Log1p.apply(x);
            let want = log1p_signed(x);
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "log1p({x:e}): {got:e} against {want:e}"
            );
        }
    }
}
