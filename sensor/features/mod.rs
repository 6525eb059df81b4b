//! From conn records to model inputs: the feature spec of a model
//! (`spec`), the flows it reads (`flow`: from the engine or from a Zeek
//! conn.log, `zeek_log`), host-context aggregates (`context` over a set of
//! flows, `live` over a stream of them), the vectors (`vector`) and the
//! lab's labels for training (`labels`).
//!
//! One code path serves training (through `osprey featurize`) and
//! production, so a model sees in production exactly what it was trained
//! on.

pub mod context;
pub mod flow;
pub mod labels;
pub mod live;
pub mod spec;
pub mod vector;
pub mod zeek_log;

pub use flow::Flow;
pub use live::{LiveConfig, LiveFeaturizer, LiveStats};
pub use spec::{FeatureSpec, SpecError};
pub use vector::{featurize, scale_rows, scaled_f32_into, to_f32};
