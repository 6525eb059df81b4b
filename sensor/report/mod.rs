//! Output of the sensor: conn.log writers (Zeek's ASCII and JSON formats)
//! and the live daemon's rotated log files or stdout stream.

pub mod community_id;
pub mod conn_log;
pub mod live;
pub mod platform;
pub mod rotate;

pub use conn_log::{ConnLogWriter, ExtraColumns, LogFormat};
pub use rotate::{JsonStream, LiveLogs, LogError, RotateConfig, RotatingLogs};
