//! Log outputs of the live daemon, which runs for weeks: conn.log and
//! alerts.log in a directory, rotated the way Zeek rotates its logs, or
//! both as one JSON-lines stream on standard output for a container's log
//! collector.
//!
//! A replay writes conn.log under a temporary name and renames it when it
//! is complete; the live files are written in place instead, because
//! operators tail them. Completeness shows the way Zeek shows it: a file
//! that was closed cleanly (rotated, or at `finish`) ends with `#close`.
//!
//! Rotated files are named as Zeek's default `Log::rotation_format_func`
//! names them for the ASCII writer, `<path>.<open time>.log`, with the
//! open time in `Log::default_rotation_date_format` (`%Y-%m-%d-%H-%M-%S`)
//! in UTC. Size rotation can open two files within one second; Zeek would
//! overwrite the older, so the later one gets `.1`, `.2`, ... before
//! `.log` instead: nothing is lost and the names still sort by age.
//!
//! Time is always the caller's (`now`), so that tests drive rotation
//! without sleeping and the daemon decides what its clock is.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::conn::ConnRecord;
use crate::identity::ConnIdentity;
use crate::model::{Model, Verdict};
use crate::report::conn_log::{civil_utc, unix_secs, zeek_log_time};
use crate::report::AlertWriter;
use crate::report::{ConnLogWriter, ExtraColumns, LogFormat};

/// A failed log operation. The daemon counts these and keeps running, so
/// the message names the file and what was being done to it.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {action}: {source}")]
pub struct LogError {
    pub path: PathBuf,
    pub action: &'static str,
    pub source: io::Error,
}

impl LogError {
    fn new(path: &Path, action: &'static str, source: io::Error) -> Self {
        LogError {
            path: path.to_path_buf(),
            action,
            source,
        }
    }
}

/// Where and how the live daemon keeps its log files.
#[derive(Clone, Debug)]
pub struct RotateConfig {
    pub log_dir: PathBuf,
    /// conn.log's format; alerts.log is always JSON lines.
    pub format: LogFormat,
    pub extra: ExtraColumns,
    /// Rotate a file once it holds at least this many bytes (0: never).
    /// A file ends on a whole row, so it may pass the size by one row.
    pub rotate_size_bytes: u64,
    /// Rotate at every wall-clock multiple of this many seconds counted
    /// from UTC midnight (0: never), as Zeek does with
    /// `Log::default_rotation_interval` and `log_rotate_base_time="0:00"`.
    pub rotate_interval_secs: u64,
    /// Rotated files kept per log, oldest deleted first (0: keep all).
    pub keep_files: usize,
}

/// A buffered file that counts what went into it, so that size rotation
/// needs no `stat` per row.
struct Counted {
    out: BufWriter<File>,
    bytes: u64,
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// What a rotating file needs from the writer that formats its rows.
trait LogSink: Sized {
    fn create(out: Counted, open: SystemTime, config: &RotateConfig) -> io::Result<Self>;
    fn row_count(&self) -> u64;
    fn bytes(&self) -> u64;
    fn flush_out(&mut self) -> io::Result<()>;
    fn close(self, at: SystemTime) -> io::Result<()>;
}

impl LogSink for ConnLogWriter<Counted> {
    fn create(out: Counted, open: SystemTime, config: &RotateConfig) -> io::Result<Self> {
        ConnLogWriter::new_at(out, config.format, config.extra, open)
    }

    fn row_count(&self) -> u64 {
        self.rows()
    }

    fn bytes(&self) -> u64 {
        self.get_ref().bytes
    }

    fn flush_out(&mut self) -> io::Result<()> {
        self.flush()
    }

    fn close(self, at: SystemTime) -> io::Result<()> {
        self.finish_at(at).map(drop)
    }
}

impl LogSink for AlertWriter<Counted> {
    fn create(out: Counted, _open: SystemTime, _config: &RotateConfig) -> io::Result<Self> {
        AlertWriter::new(out)
    }

    fn row_count(&self) -> u64 {
        self.written()
    }

    fn bytes(&self) -> u64 {
        self.get_ref().bytes
    }

    fn flush_out(&mut self) -> io::Result<()> {
        self.flush()
    }

    fn close(self, _at: SystemTime) -> io::Result<()> {
        self.finish().map(drop)
    }
}

/// The file being written and when it is due for interval rotation.
struct Current<S> {
    sink: S,
    opened: SystemTime,
    due: Option<SystemTime>,
}

/// One log (`conn` or `alerts`) in the log directory.
struct RotatingFile<S> {
    /// Zeek's `path`: the file is `<stem>.log`.
    stem: &'static str,
    live: PathBuf,
    /// None only after a failure to open; the next write or tick retries.
    current: Option<Current<S>>,
}

impl<S: LogSink> RotatingFile<S> {
    fn new(stem: &'static str, config: &RotateConfig) -> Self {
        RotatingFile {
            stem,
            live: config.log_dir.join(format!("{stem}.log")),
            current: None,
        }
    }

    fn err(&self, action: &'static str, source: io::Error) -> LogError {
        LogError::new(&self.live, action, source)
    }

    fn ensure_open(
        &mut self,
        config: &RotateConfig,
        now: SystemTime,
    ) -> Result<&mut Current<S>, LogError> {
        if let Some(c) = self.current.take() {
            return Ok(self.current.insert(c));
        }
        let c = open_file(&self.live, self.stem, config, now)?;
        Ok(self.current.insert(c))
    }

    /// Runs one write on the open file: interval rotation before it (the
    /// row belongs to the new period), size rotation after it (the file
    /// ends on a whole row). A rotation failure is reported after the row
    /// has been written, if it could be.
    fn write<T>(
        &mut self,
        config: &RotateConfig,
        now: SystemTime,
        f: impl FnOnce(&mut S) -> io::Result<T>,
    ) -> Result<T, LogError> {
        let before = self.rotate_if_due(config, now);
        let cur = self.ensure_open(config, now)?;
        let written = f(&mut cur.sink);
        let full = config.rotate_size_bytes > 0 && cur.sink.bytes() >= config.rotate_size_bytes;
        let out = written.map_err(|e| self.err("write", e))?;
        before?;
        if full {
            self.rotate(config, now)?;
        }
        Ok(out)
    }

    fn rotate_if_due(&mut self, config: &RotateConfig, now: SystemTime) -> Result<(), LogError> {
        match &self.current {
            Some(c) if c.due.is_some_and(|d| now >= d) => self.rotate(config, now),
            _ => Ok(()),
        }
    }

    /// Closes the current file, renames it to its rotated name and opens a
    /// fresh one. A file without rows is deleted instead: keep_files counts
    /// files, and empty ones would push real data out of retention.
    fn rotate(&mut self, config: &RotateConfig, now: SystemTime) -> Result<(), LogError> {
        let mut first: Option<LogError> = None;
        let mut archived = false;
        if let Some(cur) = self.current.take() {
            let rows = cur.sink.row_count();
            // A file whose footer could not be written is still renamed:
            // without `#close` it reads as not closed cleanly, which it was.
            if let Err(e) = cur.sink.close(now) {
                first.get_or_insert(self.err("close", e));
            }
            if rows == 0 {
                if let Err(e) = fs::remove_file(&self.live) {
                    first.get_or_insert(self.err("remove empty file", e));
                }
            } else {
                let date = zeek_log_time(unix_secs(cur.opened));
                match archive(&self.live, &config.log_dir, self.stem, &date) {
                    Ok(_) => archived = true,
                    Err(e) => {
                        first.get_or_insert(e);
                    }
                }
            }
        }
        match open_file(&self.live, self.stem, config, now) {
            Ok(c) => self.current = Some(c),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
        if archived {
            if let Err(e) = prune(&config.log_dir, self.stem, config.keep_files) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Interval rotation even when nothing is written, a retry of a failed
    /// open, and a flush so that tailing readers see every row.
    fn tick(&mut self, config: &RotateConfig, now: SystemTime) -> Result<(), LogError> {
        let rotated = self.rotate_if_due(config, now);
        let cur = self.ensure_open(config, now)?;
        let flushed = cur.sink.flush_out();
        flushed.map_err(|e| self.err("flush", e))?;
        rotated
    }

    fn finish(self, now: SystemTime) -> Result<(), LogError> {
        match self.current {
            Some(cur) => cur
                .sink
                .close(now)
                .map_err(|e| LogError::new(&self.live, "close", e)),
            None => Ok(()),
        }
    }
}

/// Opens a fresh live file with its header. A file already there is left
/// from an earlier run (or a failed rotation): it is rotated aside first,
/// never truncated.
fn open_file<S: LogSink>(
    live: &Path,
    stem: &'static str,
    config: &RotateConfig,
    now: SystemTime,
) -> Result<Current<S>, LogError> {
    fs::create_dir_all(&config.log_dir)
        .map_err(|e| LogError::new(&config.log_dir, "create directory", e))?;
    if fs::symlink_metadata(live).is_ok() && set_aside_leftover(live, stem, config)? {
        prune(&config.log_dir, stem, config.keep_files)?;
    }
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(live)
        .map_err(|e| LogError::new(live, "create", e))?;
    let out = Counted {
        out: BufWriter::new(file),
        bytes: 0,
    };
    let sink = S::create(out, now, config).map_err(|e| LogError::new(live, "write header", e))?;
    Ok(Current {
        sink,
        opened: now,
        due: interval_due(now, config.rotate_interval_secs),
    })
}

/// Rotates a left-over live file aside under its open time (from its
/// `#open` line, else the file's own times), or deletes it when it holds
/// no rows. True when a file was archived.
fn set_aside_leftover(
    live: &Path,
    stem: &'static str,
    config: &RotateConfig,
) -> Result<bool, LogError> {
    let read_err = |e| LogError::new(live, "read left-over file", e);
    let file = File::open(live).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    let mut opened: Option<String> = None;
    let mut has_rows = false;
    // Header lines come first, so this stops at the first row.
    for line in BufReader::new(file).split(b'\n') {
        let line = line.map_err(read_err)?;
        if let Some(t) = line.strip_prefix(b"#open\t") {
            if let Ok(t) = std::str::from_utf8(t) {
                if is_rotation_date(t) {
                    opened = Some(t.to_string());
                }
            }
        } else if !line.starts_with(b"#") && !line.is_empty() {
            has_rows = true;
            break;
        }
    }
    if !has_rows {
        fs::remove_file(live).map_err(|e| LogError::new(live, "remove empty left-over file", e))?;
        return Ok(false);
    }
    let date = match opened {
        Some(d) => d,
        None => {
            let t = meta
                .created()
                .or_else(|_| meta.modified())
                .unwrap_or(UNIX_EPOCH);
            zeek_log_time(unix_secs(t))
        }
    };
    archive(live, &config.log_dir, stem, &date)?;
    Ok(true)
}

/// Renames the live file to `<stem>.<date>.log`, or `<stem>.<date>.<n>.log`
/// with the first free n when that name is taken.
fn archive(live: &Path, dir: &Path, stem: &str, date: &str) -> Result<PathBuf, LogError> {
    for n in 0..10_000u32 {
        let name = if n == 0 {
            format!("{stem}.{date}.log")
        } else {
            format!("{stem}.{date}.{n}.log")
        };
        let target = dir.join(name);
        match fs::symlink_metadata(&target) {
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::rename(live, &target).map_err(|e| LogError::new(&target, "rotate into", e))?;
                return Ok(target);
            }
            Err(e) => return Err(LogError::new(&target, "check rotated name", e)),
        }
    }
    Err(LogError::new(
        live,
        "rotate",
        io::Error::new(io::ErrorKind::AlreadyExists, "no free rotated name"),
    ))
}

/// Parses a rotated file name of `stem`: its date and suffix number.
fn parse_rotated<'a>(name: &'a str, stem: &str) -> Option<(&'a str, u32)> {
    let rest = name
        .strip_prefix(stem)?
        .strip_prefix('.')?
        .strip_suffix(".log")?;
    let (date, n) = match rest.split_once('.') {
        None => (rest, 0),
        Some((d, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (d, n.parse().ok()?)
        }
        Some(_) => return None,
    };
    is_rotation_date(date).then_some((date, n))
}

/// `%Y-%m-%d-%H-%M-%S` with a four-digit year.
fn is_rotation_date(s: &str) -> bool {
    s.len() == 19
        && s.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 | 10 | 13 | 16 => b == b'-',
            _ => b.is_ascii_digit(),
        })
}

/// Deletes the oldest rotated files of `stem` beyond `keep` (0: keep all).
/// The directory is listed rather than remembered, so files from earlier
/// runs count too.
fn prune(dir: &Path, stem: &str, keep: usize) -> Result<(), LogError> {
    if keep == 0 {
        return Ok(());
    }
    let list_err = |e| LogError::new(dir, "list rotated files", e);
    let mut found: Vec<(String, u32, PathBuf)> = Vec::new();
    for entry in fs::read_dir(dir).map_err(list_err)? {
        let entry = entry.map_err(list_err)?;
        if !entry.file_type().map_err(list_err)?.is_file() {
            continue;
        }
        let name = entry.file_name();
        if let Some((date, n)) = name.to_str().and_then(|n| parse_rotated(n, stem)) {
            found.push((date.to_string(), n, entry.path()));
        }
    }
    if found.len() <= keep {
        return Ok(());
    }
    found.sort();
    let excess = found.len() - keep;
    for (_, _, path) in found.iter().take(excess) {
        fs::remove_file(path).map_err(|e| LogError::new(path, "delete old rotated file", e))?;
    }
    Ok(())
}

/// The next rotation time after `now`: Zeek's `calc_next_rotate` with the
/// default base time 00:00, in UTC. Intervals that divide a day land on
/// multiples of the interval since the epoch; for others the grid restarts
/// each midnight (the day's last period runs past it, as in Zeek).
fn interval_due(now: SystemTime, interval_secs: u64) -> Option<SystemTime> {
    if interval_secs == 0 {
        return None;
    }
    let interval = i64::try_from(interval_secs).unwrap_or(i64::MAX);
    let now = unix_secs(now);
    let midnight = now - now.rem_euclid(86_400);
    let periods = (now - midnight) / interval + 1;
    let due = midnight.saturating_add(periods.saturating_mul(interval));
    UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(due).ok()?))
}

/// conn.log and alerts.log in a log directory, rotated by size and/or
/// interval.
pub struct RotatingLogs {
    config: RotateConfig,
    conn: RotatingFile<ConnLogWriter<Counted>>,
    alerts: RotatingFile<AlertWriter<Counted>>,
}

impl RotatingLogs {
    /// Opens both logs now, so that a directory the daemon cannot write is
    /// reported at start-up rather than at the first connection. Files
    /// left by an earlier run are rotated aside, not overwritten.
    pub fn open(config: RotateConfig, now: SystemTime) -> Result<Self, LogError> {
        let mut logs = RotatingLogs {
            conn: RotatingFile::new("conn", &config),
            alerts: RotatingFile::new("alerts", &config),
            config,
        };
        logs.conn.ensure_open(&logs.config, now)?;
        logs.alerts.ensure_open(&logs.config, now)?;
        Ok(logs)
    }

    pub fn config(&self) -> &RotateConfig {
        &self.config
    }

    /// The live conn.log (what operators tail).
    pub fn conn_path(&self) -> &Path {
        &self.conn.live
    }

    /// The live alerts.log.
    pub fn alerts_path(&self) -> &Path {
        &self.alerts.live
    }

    pub fn write_conn(&mut self, record: &ConnRecord, now: SystemTime) -> Result<(), LogError> {
        self.write_conn_with(record, None, now)
    }

    /// As `write_conn`, with the endpoints' identity for the pod columns.
    pub fn write_conn_with(
        &mut self,
        record: &ConnRecord,
        id: Option<&ConnIdentity>,
        now: SystemTime,
    ) -> Result<(), LogError> {
        self.conn
            .write(&self.config, now, |w| w.write_with(record, id))
    }

    /// Writes an alert when any verdict is flagged; true when it did.
    pub fn write_alert(
        &mut self,
        record: &ConnRecord,
        models: &[Model],
        verdicts: &[Verdict],
        interim: bool,
        now: SystemTime,
    ) -> Result<bool, LogError> {
        self.write_alert_with(record, models, verdicts, interim, None, now)
    }

    /// As `write_alert`, with the endpoints' identity.
    pub fn write_alert_with(
        &mut self,
        record: &ConnRecord,
        models: &[Model],
        verdicts: &[Verdict],
        interim: bool,
        id: Option<&ConnIdentity>,
        now: SystemTime,
    ) -> Result<bool, LogError> {
        self.alerts.write(&self.config, now, |w| {
            w.write_with(record, models, verdicts, interim, id)
        })
    }

    /// Call about once a second: rotates on time when no rows arrive,
    /// reopens a file whose opening failed, and flushes so that `tail -f`
    /// shows rows within a tick.
    pub fn tick(&mut self, now: SystemTime) -> Result<(), LogError> {
        let conn = self.conn.tick(&self.config, now);
        let alerts = self.alerts.tick(&self.config, now);
        conn.and(alerts)
    }

    /// Closes both files in place (conn.log gets its `#close` footer); the
    /// next start rotates them aside under their open time.
    pub fn finish(self, now: SystemTime) -> Result<(), LogError> {
        let conn = self.conn.finish(now);
        let alerts = self.alerts.finish(now);
        conn.and(alerts)
    }
}

/// Names standard output in errors.
const STDOUT: &str = "<stdout>";

/// conn records and alerts as one stream of JSON lines, for a container's
/// log collector. Each line starts with the members Zeek's JSON streaming
/// logs (the json-streaming-logs package) add, so collectors built for
/// Zeek route it unchanged: `"_path"` (`conn` or `alerts`) and
/// `"_write_ts"` (ISO 8601, UTC).
pub struct JsonStream<W: Write> {
    out: BufWriter<W>,
    conn: ConnLogWriter<io::Sink>,
    alerts: AlertWriter<Vec<u8>>,
    line: Vec<u8>,
}

impl<W: Write> JsonStream<W> {
    pub fn new(out: W, extra: ExtraColumns) -> Result<Self, LogError> {
        let err = |e| LogError::new(Path::new(STDOUT), "open", e);
        Ok(JsonStream {
            out: BufWriter::new(out),
            conn: ConnLogWriter::new(io::sink(), LogFormat::Json, extra).map_err(err)?,
            alerts: AlertWriter::new(Vec::new()).map_err(err)?,
            line: Vec::with_capacity(1024),
        })
    }

    pub fn write_conn(&mut self, record: &ConnRecord, now: SystemTime) -> Result<(), LogError> {
        self.write_conn_with(record, None, now)
    }

    /// As `write_conn`, with the endpoints' identity for the pod columns.
    pub fn write_conn_with(
        &mut self,
        record: &ConnRecord,
        id: Option<&ConnIdentity>,
        now: SystemTime,
    ) -> Result<(), LogError> {
        let body = self.conn.json_members_with(record, id);
        tagged_line(&mut self.line, "conn", now, body.as_bytes());
        self.line.extend_from_slice(b"}\n");
        self.out
            .write_all(&self.line)
            .map_err(|e| LogError::new(Path::new(STDOUT), "write", e))
    }

    /// Writes an alert when any verdict is flagged; true when it did.
    pub fn write_alert(
        &mut self,
        record: &ConnRecord,
        models: &[Model],
        verdicts: &[Verdict],
        interim: bool,
        now: SystemTime,
    ) -> Result<bool, LogError> {
        self.write_alert_with(record, models, verdicts, interim, None, now)
    }

    /// As `write_alert`, with the endpoints' identity.
    pub fn write_alert_with(
        &mut self,
        record: &ConnRecord,
        models: &[Model],
        verdicts: &[Verdict],
        interim: bool,
        id: Option<&ConnIdentity>,
        now: SystemTime,
    ) -> Result<bool, LogError> {
        let err = |e| LogError::new(Path::new(STDOUT), "write", e);
        self.alerts.get_mut().clear();
        if !self
            .alerts
            .write_with(record, models, verdicts, interim, id)
            .map_err(err)?
        {
            return Ok(false);
        }
        tagged_line(&mut self.line, "alerts", now, self.alerts.get_mut());
        self.out.write_all(&self.line).map_err(err)?;
        Ok(true)
    }

    /// Lines are buffered; call about once a second so that the collector
    /// sees them promptly.
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.out
            .flush()
            .map_err(|e| LogError::new(Path::new(STDOUT), "flush", e))
    }

    pub fn finish(self) -> Result<W, LogError> {
        self.out
            .into_inner()
            .map_err(|e| LogError::new(Path::new(STDOUT), "flush", e.into_error()))
    }
}

/// `line` = `{"_path":…,"_write_ts":…,` then `object` without its `{`.
fn tagged_line(line: &mut Vec<u8>, path: &str, now: SystemTime, object: &[u8]) {
    line.clear();
    line.extend_from_slice(b"{\"_path\":\"");
    line.extend_from_slice(path.as_bytes());
    line.extend_from_slice(b"\",\"_write_ts\":\"");
    line.extend_from_slice(iso8601(now).as_bytes());
    line.extend_from_slice(b"\",");
    line.extend_from_slice(object.strip_prefix(b"{").unwrap_or(object));
}

/// `2015-10-16T13:05:35.778708Z`, as json-streaming-logs writes `_write_ts`.
fn iso8601(t: SystemTime) -> String {
    let [y, m, d, hh, mm, ss] = civil_utc(unix_secs(t));
    let micros = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_micros())
        .unwrap_or(0);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{micros:06}Z")
}

/// The daemon's log output, as configured: files in a directory or one
/// stream on standard output.
pub enum LiveLogs {
    Files(RotatingLogs),
    Stdout(JsonStream<io::Stdout>),
}

impl LiveLogs {
    /// Writes a conn record (`id` fills the pod columns, if configured).
    pub fn write_conn(
        &mut self,
        record: &ConnRecord,
        id: Option<&ConnIdentity>,
        now: SystemTime,
    ) -> Result<(), LogError> {
        match self {
            LiveLogs::Files(f) => f.write_conn_with(record, id, now),
            LiveLogs::Stdout(s) => s.write_conn_with(record, id, now),
        }
    }

    /// Writes an alert when any verdict is flagged, with the endpoints'
    /// identity when known; true when it did.
    pub fn write_alert(
        &mut self,
        record: &ConnRecord,
        models: &[Model],
        verdicts: &[Verdict],
        interim: bool,
        id: Option<&ConnIdentity>,
        now: SystemTime,
    ) -> Result<bool, LogError> {
        match self {
            LiveLogs::Files(f) => f.write_alert_with(record, models, verdicts, interim, id, now),
            LiveLogs::Stdout(s) => s.write_alert_with(record, models, verdicts, interim, id, now),
        }
    }

    /// Call about once a second (see `RotatingLogs::tick`).
    pub fn tick(&mut self, now: SystemTime) -> Result<(), LogError> {
        match self {
            LiveLogs::Files(f) => f.tick(now),
            LiveLogs::Stdout(s) => s.flush(),
        }
    }

    pub fn finish(self, now: SystemTime) -> Result<(), LogError> {
        match self {
            LiveLogs::Files(f) => f.finish(now),
            LiveLogs::Stdout(s) => s.finish().map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::record::{ConnState, History, Proto, Uid};

    fn record(n: u64) -> ConnRecord {
        ConnRecord {
            ts: 1_700_000_000.0 + n as f64,
            uid: Uid([n, n + 1]),
            orig_h: std::net::IpAddr::from([10, 0, 0, 1]),
            orig_p: 40_000,
            resp_h: std::net::IpAddr::from([10, 0, 0, 2]),
            resp_p: 443,
            proto: Proto::Tcp,
            service: Default::default(),
            duration: Some(0.5),
            orig_bytes: Some(n),
            resp_bytes: Some(0),
            conn_state: ConnState::SF,
            local_orig: None,
            local_resp: None,
            missed_bytes: 0,
            history: History::from_bytes(b"ShADadFf"),
            orig_pkts: 5,
            orig_ip_bytes: 300,
            resp_pkts: 4,
            resp_ip_bytes: 250,
            tunnel_parents: Default::default(),
            ip_proto: Some(6),
            orig_l2_addr: None,
            resp_l2_addr: None,
            vlan: None,
            inner_vlan: None,
            interim: false,
            orig_verified: true,
            auth_failures: 0,
        }
    }

    fn flagged() -> Vec<Verdict> {
        vec![Verdict {
            label: Some("dos".into()),
            class: Some(1),
            probability: Some(0.9),
            score: Some(0.9),
            flagged: true,
        }]
    }

    /// 2024-02-29 10:00:00 UTC (a leap day).
    const T0: u64 = 1_709_200_800;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn config(dir: &Path) -> RotateConfig {
        RotateConfig {
            log_dir: dir.to_path_buf(),
            format: LogFormat::Zeek,
            extra: ExtraColumns::default(),
            rotate_size_bytes: 0,
            rotate_interval_secs: 0,
            keep_files: 0,
        }
    }

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().expect("temp dir")
    }

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// Rotated files of `stem`, oldest first.
    fn rotated(dir: &Path, stem: &str) -> Vec<String> {
        let mut names: Vec<(String, u32, String)> = fs::read_dir(dir)
            .expect("list")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| {
                let (d, k) = parse_rotated(&n, stem)?;
                Some((d.to_string(), k, n.clone()))
            })
            .collect();
        names.sort();
        names.into_iter().map(|(_, _, n)| n).collect()
    }

    fn data_rows(text: &str) -> usize {
        text.lines().filter(|l| !l.starts_with('#')).count()
    }

    /// A complete Zeek log: header first, `#close` last, `#open` as given.
    fn assert_complete(text: &str, open: &str) {
        assert!(text.starts_with("#separator \\x09\n"), "{text}");
        assert!(text.contains(&format!("\n#open\t{open}\n")), "{text}");
        let last = text.lines().last().unwrap_or("");
        assert!(last.starts_with("#close\t"), "{text}");
    }

    #[test]
    fn size_rotation_makes_complete_files_and_loses_no_rows() {
        let dir = tempdir();
        let mut c = config(dir.path());
        c.rotate_size_bytes = 2_000;
        let mut logs = RotatingLogs::open(c, at(T0)).expect("open");
        // Twenty rows per second: several files share an open second.
        for n in 0..60 {
            logs.write_conn(&record(n), at(T0 + n / 20)).expect("write");
        }
        logs.finish(at(T0 + 30)).expect("finish");

        let names = rotated(dir.path(), "conn");
        assert!(names.len() >= 4, "{names:?}");
        let mut rows = 0;
        for name in &names {
            let (date, _) = parse_rotated(name, "conn").expect("pattern");
            let text = read(&dir.path().join(name));
            assert_complete(&text, date);
            assert!(text.len() as u64 >= 2_000, "{name} rotated early");
            rows += data_rows(&text);
        }
        let live = read(&dir.path().join("conn.log"));
        assert!(live.lines().last().unwrap_or("").starts_with("#close\t"));
        rows += data_rows(&live);
        assert_eq!(rows, 60);
        assert!(names.contains(&"conn.2024-02-29-10-00-00.log".to_string()));
        assert!(
            names.iter().any(|n| n.ends_with(".1.log")),
            "same-second files get a suffix: {names:?}"
        );
    }

    #[test]
    fn json_conn_log_rotates_by_size_too() {
        let dir = tempdir();
        let mut c = config(dir.path());
        c.format = LogFormat::Json;
        c.rotate_size_bytes = 1_000;
        let mut logs = RotatingLogs::open(c, at(T0)).expect("open");
        for n in 0..20 {
            logs.write_conn(&record(n), at(T0 + n)).expect("write");
        }
        logs.finish(at(T0 + 20)).expect("finish");
        let mut rows = 0;
        let mut files = rotated(dir.path(), "conn");
        files.push("conn.log".into());
        for name in &files {
            for line in read(&dir.path().join(name)).lines() {
                let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
                assert!(v.get("uid").is_some());
                rows += 1;
            }
        }
        assert!(files.len() >= 3, "{files:?}");
        assert_eq!(rows, 20);
    }

    #[test]
    fn interval_rotation_follows_the_wall_clock() {
        let dir = tempdir();
        let mut c = config(dir.path());
        c.rotate_interval_secs = 3_600;
        let start = T0 + 3_599; // 10:59:59
        let mut logs = RotatingLogs::open(c, at(start)).expect("open");
        logs.write_conn(&record(1), at(start)).expect("write");
        // Just before the boundary: nothing happens.
        logs.tick(at(T0 + 3_599) + Duration::from_millis(999))
            .expect("tick");
        assert!(rotated(dir.path(), "conn").is_empty());
        // At 11:00:00 the file opened at 10:59:59 is closed and renamed.
        logs.tick(at(T0 + 3_600)).expect("tick");
        assert_eq!(
            rotated(dir.path(), "conn"),
            ["conn.2024-02-29-10-59-59.log"]
        );
        let first = read(&dir.path().join("conn.2024-02-29-10-59-59.log"));
        assert_complete(&first, "2024-02-29-10-59-59");
        assert!(first.ends_with("#close\t2024-02-29-11-00-00\n"));
        assert_eq!(data_rows(&first), 1);

        // A row written after the next boundary without a tick in between
        // goes to the new period's file.
        logs.write_conn(&record(2), at(T0 + 5_400)).expect("write");
        logs.write_conn(&record(3), at(T0 + 7_201)).expect("write");
        assert_eq!(
            rotated(dir.path(), "conn"),
            [
                "conn.2024-02-29-10-59-59.log",
                "conn.2024-02-29-11-00-00.log"
            ]
        );
        // An hour without rows leaves no empty rotated file.
        logs.tick(at(T0 + 10_800)).expect("tick");
        logs.tick(at(T0 + 14_400)).expect("tick");
        assert_eq!(rotated(dir.path(), "conn").len(), 3);
        assert!(rotated(dir.path(), "alerts").is_empty());
        logs.finish(at(T0 + 14_401)).expect("finish");
        assert_complete(&read(&dir.path().join("conn.log")), "2024-02-29-14-00-00");
    }

    #[test]
    fn interval_boundaries_count_from_utc_midnight() {
        let midnight = T0 - 10 * 3_600;
        assert_eq!(
            interval_due(at(midnight), 3_600),
            Some(at(midnight + 3_600))
        );
        assert_eq!(interval_due(at(midnight - 1), 3_600), Some(at(midnight)));
        // 7 h does not divide a day: 00, 07, 14, 21, then (as in Zeek)
        // 04 the next day, after which that day's grid 07, 14, 21 holds.
        assert_eq!(
            interval_due(at(midnight + 21 * 3_600 + 5), 7 * 3_600),
            Some(at(midnight + 28 * 3_600))
        );
        assert_eq!(
            interval_due(at(midnight + 28 * 3_600), 7 * 3_600),
            Some(at(midnight + 31 * 3_600))
        );
        assert_eq!(
            interval_due(at(midnight + 1), 7 * 3_600),
            Some(at(midnight + 7 * 3_600))
        );
        assert_eq!(interval_due(at(midnight), 0), None);
        // A huge interval means "never", without overflowing.
        assert!(interval_due(at(midnight), u64::MAX).is_none_or(|t| t > at(midnight + (1 << 40))));
    }

    #[test]
    fn keep_files_deletes_the_oldest() {
        let dir = tempdir();
        fs::write(dir.path().join("conn.notes.log"), "operator's file\n").expect("write");
        let mut c = config(dir.path());
        c.rotate_size_bytes = 1;
        c.keep_files = 2;
        let mut logs = RotatingLogs::open(c, at(T0)).expect("open");
        for n in 0..5 {
            logs.write_conn(&record(n), at(T0 + 60 * n)).expect("write");
        }
        logs.finish(at(T0 + 600)).expect("finish");
        // Each file opens when the one before it rotates: 10:00:00 (twice,
        // so .1), 10:01, 10:02, 10:03; the newest two remain.
        assert_eq!(
            rotated(dir.path(), "conn"),
            [
                "conn.2024-02-29-10-02-00.log",
                "conn.2024-02-29-10-03-00.log"
            ]
        );
        assert!(dir.path().join("conn.notes.log").exists());
    }

    #[test]
    fn finish_writes_the_footer_and_a_restart_rotates_it_aside() {
        let dir = tempdir();
        let mut logs = RotatingLogs::open(config(dir.path()), at(T0)).expect("open");
        for n in 0..3 {
            logs.write_conn(&record(n), at(T0 + n)).expect("write");
        }
        let wrote = logs
            .write_alert(&record(9), &[], &flagged(), true, at(T0 + 4))
            .expect("alert");
        assert!(wrote);
        logs.finish(at(T0 + 5)).expect("finish");
        let text = read(&dir.path().join("conn.log"));
        assert_complete(&text, "2024-02-29-10-00-00");
        assert!(text.ends_with("#close\t2024-02-29-10-00-05\n"));
        assert_eq!(data_rows(&text), 3);
        assert_eq!(read(&dir.path().join("alerts.log")).lines().count(), 1);

        // The next run keeps the old file under its #open time and starts
        // a fresh one; it never truncates.
        let logs = RotatingLogs::open(config(dir.path()), at(T0 + 7_200)).expect("reopen");
        assert_eq!(
            rotated(dir.path(), "conn"),
            ["conn.2024-02-29-10-00-00.log"]
        );
        assert_eq!(read(&dir.path().join("conn.2024-02-29-10-00-00.log")), text);
        assert_eq!(rotated(dir.path(), "alerts").len(), 1);
        logs.finish(at(T0 + 7_201)).expect("finish");
        // Nothing written: the empty alerts.log is not kept as a rotation.
        let logs = RotatingLogs::open(config(dir.path()), at(T0 + 9_000)).expect("reopen");
        assert_eq!(rotated(dir.path(), "alerts").len(), 1);
        assert_eq!(rotated(dir.path(), "conn").len(), 1);
        logs.finish(at(T0 + 9_001)).expect("finish");
    }

    #[test]
    fn alerts_rotate_by_size() {
        let dir = tempdir();
        let mut c = config(dir.path());
        c.rotate_size_bytes = 600;
        let mut logs = RotatingLogs::open(c, at(T0)).expect("open");
        let quiet = vec![Verdict {
            flagged: false,
            ..flagged()[0].clone()
        }];
        for n in 0..10 {
            logs.write_alert(&record(n), &[], &flagged(), false, at(T0 + n))
                .expect("alert");
            let wrote = logs
                .write_alert(&record(n), &[], &quiet, false, at(T0 + n))
                .expect("alert");
            assert!(!wrote);
        }
        logs.finish(at(T0 + 10)).expect("finish");
        let mut files = rotated(dir.path(), "alerts");
        assert!(files.len() >= 2, "{files:?}");
        files.push("alerts.log".into());
        let lines: usize = files
            .iter()
            .map(|f| read(&dir.path().join(f)).lines().count())
            .sum();
        assert_eq!(lines, 10);
    }

    #[test]
    fn errors_name_the_path() {
        let dir = tempdir();
        let not_a_dir = dir.path().join("file");
        fs::write(&not_a_dir, "x").expect("write");
        let err = match RotatingLogs::open(config(&not_a_dir), at(T0)) {
            Ok(_) => panic!("opened logs under a file"),
            Err(e) => e,
        };
        assert!(
            err.to_string().contains(&*not_a_dir.to_string_lossy()),
            "{err}"
        );
    }

    #[test]
    fn stdout_stream_tags_each_line() {
        let mut s = JsonStream::new(Vec::new(), ExtraColumns::default()).expect("stream");
        let now = at(T0) + Duration::from_micros(778_708);
        s.write_conn(&record(1), now).expect("conn");
        assert!(s
            .write_alert(&record(2), &[], &flagged(), true, now)
            .expect("alert"));
        s.write_conn(&record(3), now).expect("conn");
        let out = String::from_utf8(s.finish().expect("finish")).expect("UTF-8");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        let paths = ["conn", "alerts", "conn"];
        for (line, path) in lines.iter().zip(paths) {
            let prefix = format!(
                "{{\"_path\":\"{path}\",\"_write_ts\":\"2024-02-29T10:00:00.778708Z\",\"ts\":"
            );
            assert!(line.starts_with(&prefix), "{line}");
            let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
            assert_eq!(v["_path"], path);
            assert!(v["uid"].is_string());
            assert_eq!(v.get("osprey").is_some(), path == "alerts", "{line}");
        }
    }

    #[test]
    fn rotated_names_parse_strictly() {
        assert_eq!(
            parse_rotated("conn.2024-02-29-10-00-00.log", "conn"),
            Some(("2024-02-29-10-00-00", 0))
        );
        assert_eq!(
            parse_rotated("conn.2024-02-29-10-00-00.12.log", "conn"),
            Some(("2024-02-29-10-00-00", 12))
        );
        for bad in [
            "conn.log",
            "conn.2024-02-29-10-00-00.log.gz",
            "conn.2024-02-29-10-00.log",
            "conn.2024-02-29-10-00-00.+1.log",
            "alerts.2024-02-29-10-00-00.log",
            "connx.2024-02-29-10-00-00.log",
        ] {
            assert_eq!(parse_rotated(bad, "conn"), None, "{bad}");
        }
        assert_eq!(iso8601(at(0)), "1970-01-01T00:00:00.000000Z");
        assert_eq!(zeek_log_time(951_782_400), "2000-02-29-00-00-00");
    }
}
