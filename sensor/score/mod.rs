//! Scoring conn records with the models: feature rows (sensor/features),
//! inference in batches (sensor/model), verdicts per record, alerts.log.
//!
//! A replay scores after the trace is read: host context looks back over
//! the window from each flow's start, and a flow's record exists only once
//! it ends, so the full set of records gives every flow its exact context
//! whatever order the records came out in. The live daemon scores as it
//! goes (interim records) and uses the same functions per batch.

mod alerts;
pub mod live;
mod summary;

pub use alerts::AlertWriter;
pub use summary::LabelSummary;

use crate::features::{featurize, scale_rows, to_f32, Flow};
use crate::model::{Model, ModelError, Verdict};

/// Rows per inference call: large enough to amortise the per-call cost,
/// small enough to stay in cache (benches/inference.rs).
pub const DEFAULT_BATCH_ROWS: usize = 256;

/// Every model's verdict for every flow: `out[flow][model]`.
pub fn score_flows(
    models: &[Model],
    flows: &[Flow],
    batch_rows: usize,
) -> Result<Vec<Vec<Verdict>>, ModelError> {
    let mut out: Vec<Vec<Verdict>> = (0..flows.len())
        .map(|_| Vec::with_capacity(models.len()))
        .collect();
    let batch_rows = batch_rows.max(1);
    // Unscaled columns, computed once per distinct column list.
    let mut computed: Vec<(&[crate::features::spec::Feature], Vec<f64>)> = Vec::new();
    for model in models {
        let spec = model.spec();
        let cols = spec.columns();
        let raw = match computed
            .iter()
            .find(|(f, _)| *f == spec.features.as_slice())
        {
            Some((_, raw)) => raw.clone(),
            None => {
                let raw = featurize(spec, flows, false);
                computed.push((spec.features.as_slice(), raw.clone()));
                raw
            }
        };
        let mut scaled = raw;
        if let Some(s) = &spec.scaler {
            scale_rows(s, cols, &mut scaled);
        }
        let rows = to_f32(&scaled);
        let mut at = 0;
        for chunk in rows.chunks(batch_rows * cols) {
            let n = chunk.len() / cols;
            for v in model.run(chunk, n)? {
                if let Some(slot) = out.get_mut(at) {
                    slot.push(v);
                }
                at += 1;
            }
        }
    }
    Ok(out)
}

/// Why scoring a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Scores a replay's records with every model and writes `alerts.log` in
/// `log_dir` (written under a temporary name and renamed when complete, as
/// conn.log is). Returns the per-label summary.
pub fn score_replay(
    models: &[Model],
    records: &[crate::conn::ConnRecord],
    log_dir: &std::path::Path,
    batch_rows: usize,
) -> Result<LabelSummary, ScoreError> {
    use std::io::BufWriter;
    let flows: Vec<Flow> = records.iter().map(Flow::from).collect();
    let verdicts = score_flows(models, &flows, batch_rows)?;
    let path = log_dir.join("alerts.log");
    let tmp = log_dir.join(format!(".alerts.log.tmp-{}", std::process::id()));
    let io = |p: &std::path::Path| {
        let p = p.to_path_buf();
        move |source| ScoreError::Io { path: p, source }
    };
    let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let mut alerts = AlertWriter::new(BufWriter::new(file)).map_err(io(&tmp))?;
    let mut summary = LabelSummary::new(models);
    for (record, v) in records.iter().zip(&verdicts) {
        summary.add(v);
        if let Err(e) = alerts.write(record, models, v, false) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(&tmp)(e));
        }
    }
    alerts.finish().map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(summary)
}
