//! Output of the sensor: conn.log writers (Zeek's ASCII and JSON formats),
//! alerts.log, the live daemon's rotated log files or stdout stream, and
//! the platform reporter.

mod alerts;
pub mod community_id;
pub mod conn_log;
pub mod live;
pub mod platform;
pub mod rotate;

pub use alerts::AlertWriter;
pub use conn_log::{ConnLogWriter, ExtraColumns, LogFormat};
pub use rotate::{JsonStream, LiveLogs, LogError, RotateConfig, RotatingLogs};
