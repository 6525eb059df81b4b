//! The daemon's outputs as the scoring stage sees them: rotated files in
//! the log directory, or JSON lines on standard output.

use std::io;
use std::time::SystemTime;

use super::platform::{AlertBody, Event, ReporterHandle};
use super::{ExtraColumns, JsonStream, LiveLogs, LogError, LogFormat, RotateConfig, RotatingLogs};
use crate::config::OutputConfig;
use crate::conn::ConnRecord;
use crate::model::{Model, Verdict};
use crate::score::live::LiveOutputs;

/// Opens the configured outputs (creating the log directory), so that an
/// unwritable directory fails the start, not the first record. Alerts
/// also go to the platform through `platform` (as `node`) when it is on.
pub fn open_outputs(
    o: &OutputConfig,
    platform: ReporterHandle,
    node: &str,
) -> Result<Box<dyn LiveOutputs>, LogError> {
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
    Ok(Box::new(Logs {
        logs: Some(logs),
        platform,
        node: node.to_owned(),
    }))
}

struct Logs {
    logs: Option<LiveLogs>,
    platform: ReporterHandle,
    node: String,
}

impl Logs {
    /// The alert as the platform receives it. Costs a second JSON
    /// rendering of the record, paid only for flagged records.
    fn report(&self, r: &ConnRecord, models: &[Model], v: &[Verdict]) {
        match AlertBody::from_record(r, models, v, r.interim) {
            Ok(body) => {
                let ts = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                self.platform.submit(&Event::alert(&self.node, ts, body));
            }
            Err(e) => {
                tracing::warn!(uid = %r.uid, error = %e, "alert not encodable for the platform")
            }
        }
    }
}

fn closed() -> io::Error {
    io::Error::other("the logs are already closed")
}

impl LiveOutputs for Logs {
    fn conn(&mut self, r: &ConnRecord) -> io::Result<()> {
        let logs = self.logs.as_mut().ok_or_else(closed)?;
        logs.write_conn(r, SystemTime::now())
            .map_err(io::Error::other)
    }

    fn alert(&mut self, r: &ConnRecord, models: &[Model], v: &[Verdict]) -> io::Result<bool> {
        let logs = self.logs.as_mut().ok_or_else(closed)?;
        let written = logs
            .write_alert(r, models, v, r.interim, SystemTime::now())
            .map_err(io::Error::other);
        if self.platform.enabled() && v.iter().any(|x| x.flagged) && self.platform.alert_allowed() {
            self.report(r, models, v);
        }
        written
    }

    fn tick(&mut self) -> io::Result<()> {
        let logs = self.logs.as_mut().ok_or_else(closed)?;
        logs.tick(SystemTime::now()).map_err(io::Error::other)
    }

    fn finish(&mut self) -> io::Result<()> {
        match self.logs.take() {
            Some(logs) => logs.finish(SystemTime::now()).map_err(io::Error::other),
            None => Ok(()),
        }
    }
}
