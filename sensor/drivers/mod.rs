//! The drivers: what runs the stages, in the order packets flow through
//! them. `replay` reads capture files through the whole chain; `live` is
//! the daemon's capture and connection threads; `daemon` wires the live
//! pipeline, scoring, responders, reporters and the metrics server
//! together; `calibrate` replays benign traffic to tune thresholds;
//! `featurize` writes feature tables for training. Nothing outside this
//! folder imports a driver.

pub mod calibrate;
pub mod daemon;
pub mod featurize;
pub mod live;
pub mod replay;
