//! Scoring conn records with the models: feature rows (sensor/features),
//! inference in batches (sensor/model), verdicts per record, alerts.log.
//!
//! One scoring path, `live::run_scorer`, serves the daemon and `osprey
//! replay`: records are featurized against the host context seen so far
//! as they arrive (final records and interim snapshots of open
//! connections), so a replay gives the verdicts the daemon would have
//! given. (Training featurizes whole traces at once, `osprey featurize`:
//! a flow's context there also holds flows whose records came after it.)

pub mod live;
mod summary;

pub use summary::LabelSummary;

/// Rows per inference call: large enough to amortise the per-call cost,
/// small enough to stay in cache (benches/inference.rs).
pub const DEFAULT_BATCH_ROWS: usize = 256;
