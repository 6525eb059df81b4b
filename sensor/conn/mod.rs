//! Connections with Zeek's conn.log semantics: the table and its timers
//! (`engine`), TCP (`tcp`), shared per-connection state (`core`), the
//! record type (`record`), protocol identification (`service`), snapshots
//! of open connections (`interim`) and the engine's settings (`config`).

pub mod config;
pub mod core;
pub mod engine;
pub mod icmp;
pub mod interim;
pub mod node_view;
pub mod record;
pub mod service;
pub mod tcp;
pub mod timer;
pub mod verify;

pub use config::{EngineConfig, InterimConfig};
pub use engine::{Engine, EngineStats};
pub use interim::InterimTrigger;
pub use record::{ConnRecord, ConnState, Proto, Uid};
