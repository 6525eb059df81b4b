//! The daemon's outputs as the scoring stage sees them: rotated files in
//! the log directory, or JSON lines on standard output.

use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::platform::{AlertBody, Event, ReporterHandle};
use super::{ExtraColumns, JsonStream, LiveLogs, LogError, LogFormat, RotateConfig, RotatingLogs};
use crate::conn::ConnRecord;
use crate::identity::{Attribution, ConnIdentity};
use crate::model::{Model, Verdict};
use crate::score::live::LiveOutputs;

/// Where records and alerts go.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Directory of conn.log and alerts.log.
    pub log_dir: PathBuf,
    /// `zeek` (TSV with headers) or `json` lines.
    pub format: LogFormat,
    /// JSON lines on standard output instead of files (containers).
    pub stdout: bool,
    /// Rotate after this long (0: never); aligned to the clock as Zeek's
    /// `Log::default_rotation_interval`.
    pub rotate_interval_secs: u64,
    /// Rotate once a file reaches this size (0: never).
    pub rotate_size_bytes: u64,
    /// Rotated files kept per log (0: all).
    pub keep_files: usize,
    /// Append the pod identity of both endpoints to conn.log, after
    /// Zeek's columns (`orig_k8s.kind`, `orig_k8s.namespace`,
    /// `orig_k8s.pod`, `orig_k8s.workload`, `orig_k8s.node`, then the same
    /// for `resp_k8s`). Off by default: conn.log stays exactly Zeek's, and
    /// tools that read it by position keep working.
    pub conn_pod_columns: bool,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            log_dir: PathBuf::from("/var/log/osprey"),
            format: LogFormat::Zeek,
            stdout: false,
            rotate_interval_secs: 3600,
            rotate_size_bytes: 0,
            keep_files: 48,
            conn_pod_columns: false,
        }
    }
}

/// Opens the configured outputs (creating the log directory), so that an
/// unwritable directory fails the start, not the first record. Alerts
/// also go to the platform through `platform` (as `node`) when it is on.
/// With `identity` on, alerts (in alerts.log and to the platform) name
/// both endpoints, and so does conn.log with `conn_pod_columns`.
pub fn open_outputs(
    o: &OutputConfig,
    platform: ReporterHandle,
    node: &str,
    identity: Attribution,
) -> Result<Box<dyn LiveOutputs>, LogError> {
    let extra = ExtraColumns {
        pods: o.conn_pod_columns,
        ..ExtraColumns::default()
    };
    let logs = if o.stdout {
        LiveLogs::Stdout(JsonStream::new(io::stdout(), extra)?)
    } else {
        std::fs::create_dir_all(&o.log_dir).map_err(|source| LogError {
            path: o.log_dir.clone(),
            action: "creating the log directory",
            source,
        })?;
        LiveLogs::Files(RotatingLogs::open(
            RotateConfig {
                log_dir: o.log_dir.clone(),
                format: o.format,
                extra,
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
        identity,
        pod_columns: o.conn_pod_columns,
    }))
}

struct Logs {
    logs: Option<LiveLogs>,
    platform: ReporterHandle,
    node: String,
    identity: Attribution,
    /// conn.log has the pod columns, so every record needs its identity.
    pod_columns: bool,
}

impl Logs {
    /// The alert as the platform receives it. Costs a second JSON
    /// rendering of the record, paid only for flagged records.
    fn report(&self, r: &ConnRecord, models: &[Model], v: &[Verdict], id: Option<ConnIdentity>) {
        match AlertBody::from_record(r, models, v, r.interim) {
            Ok(mut body) => {
                body.identity = id.map(Box::new);
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
        let id = if self.pod_columns {
            self.identity.conn(r.orig_h, r.resp_h)
        } else {
            None
        };
        logs.write_conn(r, id.as_ref(), SystemTime::now())
            .map_err(io::Error::other)
    }

    fn alert(&mut self, r: &ConnRecord, models: &[Model], v: &[Verdict]) -> io::Result<bool> {
        let flagged = v.iter().any(|x| x.flagged);
        // Looked up once, for flagged records only: the same identity in
        // alerts.log and in the platform's event.
        let id = if flagged {
            self.identity.conn(r.orig_h, r.resp_h)
        } else {
            None
        };
        let logs = self.logs.as_mut().ok_or_else(closed)?;
        let written = logs
            .write_alert(r, models, v, r.interim, id.as_ref(), SystemTime::now())
            .map_err(io::Error::other);
        if self.platform.enabled() && flagged && self.platform.alert_allowed() {
            self.report(r, models, v, id);
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
