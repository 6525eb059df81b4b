//! `osprey featurize`'s input handling and CSV output: pcaps go through
//! the replay engine, conn.log files through the Zeek log reader, and both
//! end up as the same [`Flow`]s before anything is computed.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::conn::EngineConfig;
use crate::drivers::replay::{collect_records, ReplayError};
use crate::features::featurize;
use crate::features::labels::LabLabels;
use crate::features::spec::Value;
use crate::features::zeek_log::{read_conn_log, LogError};
use crate::features::FeatureSpec;
use crate::features::Flow;

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Capture(#[from] ReplayError),
    #[error(transparent)]
    Log(#[from] LogError),
}

/// What a file holds, by its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    Capture,
    ConnLog,
}

pub fn input_kind(path: &Path) -> Result<InputKind, InputError> {
    use std::io::Read;
    let mut head = [0u8; 4];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|source| InputError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let magic = u32::from_le_bytes(head);
    let pcap = [
        0xa1b2_c3d4u32,
        0xd4c3_b2a1,
        0xa1b2_3c4d,
        0x4d3c_b2a1,
        0x0a0d_0d0a,
    ];
    Ok(if n == 4 && pcap.contains(&magic) {
        InputKind::Capture
    } else {
        InputKind::ConnLog
    })
}

/// The conn.log columns the spec's features read (for header checks).
pub fn needed_columns(spec: &FeatureSpec) -> Vec<&'static str> {
    let mut cols: Vec<&'static str> = Vec::new();
    let mut add = |c: &'static str| {
        if !cols.contains(&c) {
            cols.push(c);
        }
    };
    for f in &spec.features {
        match &f.value {
            Value::Field(n) => add(n.column()),
            Value::Ratio { num, den, .. } => {
                add(num.column());
                add(den.column());
            }
            Value::Rate { field, .. } => {
                add(field.column());
                add("duration");
            }
            Value::OneHot { field, .. } => add(field.column()),
            Value::History { .. } => add("history"),
            Value::Context { stat, .. } => {
                if let crate::features::spec::ContextStat::Mean(n) = stat {
                    add(n.column());
                }
                if let crate::features::spec::ContextStat::ShareState(_) = stat {
                    add("conn_state");
                }
            }
        }
    }
    cols
}

/// The flows of one input file.
pub fn read_flows(
    path: &Path,
    spec: &FeatureSpec,
    engine: &EngineConfig,
    filter: Option<&str>,
) -> Result<Vec<Flow>, InputError> {
    match input_kind(path)? {
        InputKind::Capture => {
            let recs = collect_records(&[path.to_path_buf()], filter, engine.clone())?;
            Ok(recs.iter().map(Flow::from).collect())
        }
        InputKind::ConnLog => Ok(read_conn_log(path, &needed_columns(spec))?),
    }
}

/// Writes the CSV header.
pub fn write_header<W: Write>(
    out: &mut W,
    spec: &FeatureSpec,
    labels: bool,
) -> std::io::Result<()> {
    write!(out, "source,uid,ts,orig_h,orig_p,resp_h,resp_p,proto")?;
    for f in &spec.features {
        write!(out, ",{}", f.name)?;
    }
    if labels {
        write!(out, ",label")?;
    }
    writeln!(out)
}

/// Writes one CSV row per flow: identity, features (f64, shortest form
/// that reads back to the same value), label.
pub fn write_rows<W: Write>(
    out: &mut W,
    source: &str,
    spec: &FeatureSpec,
    flows: &[Flow],
    scaled: bool,
    labels: Option<&LabLabels>,
) -> std::io::Result<()> {
    let values = featurize(spec, flows, scaled);
    let cols = spec.columns();
    for (i, f) in flows.iter().enumerate() {
        write!(
            out,
            "{source},{},{:.6},{},{},{},{},{}",
            f.uid, f.ts, f.orig_h, f.orig_p, f.resp_h, f.resp_p, f.proto
        )?;
        for v in values.get(i * cols..(i + 1) * cols).unwrap_or_default() {
            write!(out, ",{v}")?;
        }
        if let Some(l) = labels {
            write!(out, ",{}", l.label(f, Some(source)))?;
        }
        writeln!(out)?;
    }
    Ok(())
}
