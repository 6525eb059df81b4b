//! Output of the sensor: conn.log writers (Zeek's ASCII and JSON formats).

pub mod community_id;
pub mod conn_log;

pub use conn_log::{ConnLogWriter, ExtraColumns, LogFormat};
