//! The daemon's outputs as the scoring stage sees them: rotated files in
//! the log directory, or JSON lines on standard output.

use std::io;
use std::time::SystemTime;

use super::{ExtraColumns, JsonStream, LiveLogs, LogError, LogFormat, RotateConfig, RotatingLogs};
use crate::config::OutputConfig;
use crate::conn::ConnRecord;
use crate::model::{Model, Verdict};
use crate::score::live::LiveOutputs;

/// Opens the configured outputs (creating the log directory), so that an
/// unwritable directory fails the start, not the first record.
pub fn open_outputs(o: &OutputConfig) -> Result<Box<dyn LiveOutputs>, LogError> {
    let logs = if o.stdout {
        LiveLogs::Stdout(JsonStream::new(io::stdout(), ExtraColumns::default())?)
    } else {
        std::fs::create_dir_all(&o.log_dir).map_err(|source| LogError {
            path: o.log_dir.clone(),
            action: "creating the log directory",
            source,
        })?;
        LiveLogs::Files(RotatingLogs::open(
            RotateConfig {
                log_dir: o.log_dir.clone(),
                format: if o.format == "json" {
                    LogFormat::Json
                } else {
                    LogFormat::Zeek
                },
                extra: ExtraColumns::default(),
                rotate_size_bytes: o.rotate_size_bytes,
                rotate_interval_secs: o.rotate_interval_secs,
                keep_files: o.keep_files,
            },
            SystemTime::now(),
        )?)
    };
    Ok(Box::new(Logs(Some(logs))))
}

struct Logs(Option<LiveLogs>);

fn closed() -> io::Error {
    io::Error::other("the logs are already closed")
}

impl LiveOutputs for Logs {
    fn conn(&mut self, r: &ConnRecord) -> io::Result<()> {
        let logs = self.0.as_mut().ok_or_else(closed)?;
        logs.write_conn(r, SystemTime::now())
            .map_err(io::Error::other)
    }

    fn alert(&mut self, r: &ConnRecord, models: &[Model], v: &[Verdict]) -> io::Result<bool> {
        let logs = self.0.as_mut().ok_or_else(closed)?;
        logs.write_alert(r, models, v, r.interim, SystemTime::now())
            .map_err(io::Error::other)
    }

    fn tick(&mut self) -> io::Result<()> {
        let logs = self.0.as_mut().ok_or_else(closed)?;
        logs.tick(SystemTime::now()).map_err(io::Error::other)
    }

    fn finish(&mut self) -> io::Result<()> {
        match self.0.take() {
            Some(logs) => logs.finish(SystemTime::now()).map_err(io::Error::other),
            None => Ok(()),
        }
    }
}
