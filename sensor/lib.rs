//! osprey: a node-level network anomaly-detection sensor.
//!
//! The library is organised by pipeline stage: `capture` reads packets,
//! `decode` parses them into layers, `conn` rebuilds connections exactly as
//! Zeek's conn.log describes them, `identity` names the pods behind
//! addresses (a side stage every event writer reads), `report` writes logs, and `replay` drives
//! the whole chain over capture files (`calibrate` does too, to tune the
//! thresholds of models and rules to a deployment's benign traffic).

#![forbid(unsafe_code)]

pub mod capture;
pub mod config;
pub mod conn;
pub mod decode;
pub mod drivers;
pub mod evidence;
pub mod fault;
pub mod features;
pub mod identity;
pub mod metrics;
pub mod model;
pub mod packet;
pub mod report;
pub mod respond;
pub mod score;
