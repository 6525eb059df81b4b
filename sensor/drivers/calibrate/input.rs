//! Calibration inputs as the stream of conn records the daemon would have
//! scored: a capture goes through the conn engine as `osprey replay` runs
//! it (final records and the interim snapshots of open connections, in
//! the order the engine emits them); a Zeek conn.log is read as `osprey
//! featurize` reads it and its rows become records in the order their
//! connections ended (`ts + duration`), which is the order the engine
//! would have emitted them in and the clock the evidence stage runs on.
//!
//! A conn.log says nothing of what osprey adds to a record: whether the
//! originator proved its address (`orig_verified`) and the credentials
//! servers refused (`auth_failures`). Its records have neither, so the
//! evidence columns that count them stay at zero for conn.log input.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use smallvec::SmallVec;

use crate::conn::record::{ConnState, History, Proto, Uid};
use crate::conn::{ConnRecord, EngineConfig};
use crate::drivers::featurize::{input_kind, InputError, InputKind};
use crate::drivers::replay::collect_records;
use crate::features::flow::Flow;
use crate::features::zeek_log::read_conn_log;

/// Why an input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(
        "more than {MAX_SERVICE_NAMES} distinct service names: not a conn.log osprey can calibrate on"
    )]
    Services,
}

/// The columns of a conn.log the evidence stage reads, besides those that
/// identify a connection: a log cut down without them would count every
/// connection as a failed attempt, or none.
pub const EVIDENCE_COLUMNS: [&str; 6] = [
    "duration",
    "orig_bytes",
    "resp_bytes",
    "conn_state",
    "history",
    "orig_pkts",
];

/// How inputs become records.
pub struct Reader<'a> {
    /// The engine's settings, interim snapshots on.
    pub engine: &'a EngineConfig,
    pub filter: Option<&'a str>,
    /// conn.log columns the models and the evidence stage read.
    pub needed: &'a [&'static str],
}

impl Reader<'_> {
    /// The records of one input, in the order the daemon would score them;
    /// `input` numbers the file (it keeps conn.log uids unique).
    pub fn read(&self, path: &Path, input: usize) -> Result<Vec<ConnRecord>, ReadError> {
        match input_kind(path)? {
            InputKind::Capture => {
                Ok(
                    collect_records(&[path.to_path_buf()], self.filter, self.engine.clone())
                        .map_err(InputError::from)?,
                )
            }
            InputKind::ConnLog => {
                let flows = read_conn_log(path, self.needed).map_err(InputError::from)?;
                let mut records = flows
                    .iter()
                    .enumerate()
                    .map(|(i, f)| record_of(f, Uid([input as u64, i as u64])))
                    .collect::<Result<Vec<_>, _>>()?;
                records.sort_by(|a, b| end(a).total_cmp(&end(b)));
                Ok(records)
            }
        }
    }
}

/// When a record's connection was last seen: the evidence stage's clock.
fn end(r: &ConnRecord) -> f64 {
    r.ts + r.duration.unwrap_or(0.0)
}

/// A conn.log row as the engine's record. Featurizing the record gives the
/// row's own values back (`Flow::from` of it equals the row where the row
/// sets the fields the engine always sets).
fn record_of(f: &Flow, uid: Uid) -> Result<ConnRecord, ReadError> {
    let proto = match f.proto.as_str() {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        "icmp" => Proto::Icmp,
        _ => Proto::Unknown,
    };
    let mut r = ConnRecord::skeleton(f.orig_h, f.orig_p, f.resp_h, f.resp_p, proto);
    r.ts = f.ts;
    r.uid = uid;
    r.service = f
        .service
        .iter()
        .map(|s| service_name(s).ok_or(ReadError::Services))
        .collect::<Result<SmallVec<_>, _>>()?;
    r.duration = f.duration;
    r.orig_bytes = f.orig_bytes;
    r.resp_bytes = f.resp_bytes;
    // Zeek always sets conn_state; a log that does not is read as
    // midstream traffic, which counts as no failed attempt.
    r.conn_state = ConnState::ALL
        .into_iter()
        .find(|s| s.as_str() == f.conn_state)
        .unwrap_or(ConnState::OTH);
    r.local_orig = f.local_orig;
    r.local_resp = f.local_resp;
    r.missed_bytes = f.missed_bytes.unwrap_or(0);
    r.history = History::from(f.history.as_str());
    r.orig_pkts = f.orig_pkts.unwrap_or(0);
    r.orig_ip_bytes = f.orig_ip_bytes.unwrap_or(0);
    r.resp_pkts = f.resp_pkts.unwrap_or(0);
    r.resp_ip_bytes = f.resp_ip_bytes.unwrap_or(0);
    r.ip_proto = f.ip_proto.and_then(|p| u8::try_from(p).ok());
    Ok(r)
}

/// Distinct service names kept at most: Zeek knows a few dozen.
const MAX_SERVICE_NAMES: usize = 1024;

/// A service name as records hold them (`&'static str`: the engine's
/// names are constants). A name from a log is kept for the life of the
/// process, once; a log with more distinct names than any Zeek writes is
/// refused rather than let grow memory without bound.
fn service_name(name: &str) -> Option<&'static str> {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let names = NAMES.get_or_init(|| Mutex::new(HashSet::new()));
    let mut names = names.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&n) = names.get(name) {
        return Some(n);
    }
    if names.len() >= MAX_SERVICE_NAMES {
        return None;
    }
    let n: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(n);
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_featurizes_as_itself() {
        let flow = Flow {
            ts: 1300475168.853899,
            uid: "CjhGID4nQcgTWjvg4c".into(),
            orig_h: "141.142.220.118".parse().expect("address"),
            orig_p: 43927,
            resp_h: "141.142.2.2".parse().expect("address"),
            resp_p: 53,
            proto: "udp".into(),
            service: vec!["dns".into(), "quic".into()],
            duration: Some(0.000435),
            orig_bytes: Some(38),
            resp_bytes: Some(89),
            conn_state: "SF".into(),
            local_orig: Some(true),
            local_resp: None,
            missed_bytes: Some(0),
            history: "Dd".into(),
            orig_pkts: Some(1),
            orig_ip_bytes: Some(66),
            resp_pkts: Some(1),
            resp_ip_bytes: Some(117),
            ip_proto: Some(17),
        };
        let r = record_of(&flow, Uid([1, 2])).expect("a record");
        let back = Flow::from(&r);
        assert_eq!(
            Flow {
                uid: flow.uid.clone(),
                ..back
            },
            flow
        );
        assert!(!r.orig_verified && !r.interim);
    }
}
