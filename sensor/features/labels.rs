//! Labels for the lab captures (`labels.csv` and `hosts.csv` of a lab
//! folder), by the rule its README gives: a flow is an attack iff one of
//! its endpoints is an attacker address, and its type is the attack window
//! of labels.csv that holds its first packet.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::flow::Flow;

#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// The label of benign flows.
pub const BENIGN: &str = "benign";

#[derive(Clone, Debug)]
struct Window {
    pcap: String,
    label: String,
    start: f64,
    end: f64,
}

/// The lab's labelling rule, loaded.
#[derive(Clone, Debug)]
pub struct LabLabels {
    attackers: HashSet<IpAddr>,
    windows: Vec<Window>,
}

/// Splits one CSV line (fields may be quoted, with `""` for a quote).
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// A line number and its (header, value) pairs.
type CsvRow = (usize, Vec<(String, String)>);

/// Rows of a CSV file with a header, as (line number, header -> value).
fn read_csv(path: &Path) -> Result<Vec<CsvRow>, LabelError> {
    let text = std::fs::read_to_string(path).map_err(|source| LabelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let header = csv_fields(header);
    Ok(lines
        .map(|(n, l)| {
            let vals = csv_fields(l);
            (n + 1, header.iter().cloned().zip(vals).collect())
        })
        .collect())
}

fn col<'a>(row: &'a [(String, String)], name: &str) -> Option<&'a str> {
    row.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

impl LabLabels {
    /// Loads `labels.csv` and the `hosts.csv` beside it.
    pub fn load(labels: &Path) -> Result<LabLabels, LabelError> {
        let hosts = labels.with_file_name("hosts.csv");
        let mut attackers = HashSet::new();
        for (line, row) in read_csv(&hosts)? {
            if col(&row, "role") != Some("attacker") {
                continue;
            }
            for c in ["ipv4", "ipv6", "ipv6_link_local"] {
                if let Some(v) = col(&row, c).filter(|v| !v.is_empty()) {
                    let a = v.parse::<IpAddr>().map_err(|_| LabelError::Line {
                        path: hosts.clone(),
                        line,
                        message: format!("column {c:?}: {v:?} is not an address"),
                    })?;
                    attackers.insert(a);
                }
            }
        }
        let mut windows = Vec::new();
        for (line, row) in read_csv(labels)? {
            let bad = |message: String| LabelError::Line {
                path: labels.to_path_buf(),
                line,
                message,
            };
            let label = col(&row, "label").ok_or_else(|| bad("no column \"label\"".into()))?;
            if label == BENIGN {
                continue;
            }
            let num = |c: &str| -> Result<f64, LabelError> {
                col(&row, c)
                    .and_then(|v| v.parse::<f64>().ok())
                    .ok_or_else(|| bad(format!("column {c:?} is not a number")))
            };
            windows.push(Window {
                pcap: col(&row, "pcap").unwrap_or_default().to_string(),
                label: label.to_string(),
                start: num("start_epoch")?,
                end: num("end_epoch")?,
            });
        }
        Ok(LabLabels { attackers, windows })
    }

    /// The flow's label. `pcap` (the capture's file name), when known,
    /// restricts the windows to that capture's. An attacker's flow that no
    /// window holds (a straggler after its tool stopped) takes the nearest
    /// window's type.
    pub fn label(&self, f: &Flow, pcap: Option<&str>) -> String {
        if !self.attackers.contains(&f.orig_h) && !self.attackers.contains(&f.resp_h) {
            return BENIGN.to_string();
        }
        let candidates = self.windows.iter().filter(|w| {
            pcap.is_none_or(|p| w.pcap == p)
                || pcap.is_some_and(|p| !self.windows.iter().any(|w| w.pcap == p))
        });
        let mut best: Option<(&Window, f64)> = None;
        for w in candidates {
            let dist = if f.ts < w.start {
                w.start - f.ts
            } else if f.ts > w.end {
                f.ts - w.end
            } else {
                0.0
            };
            if best.is_none_or(|(_, d)| dist < d) {
                best = Some((w, dist));
            }
        }
        best.map_or_else(|| "attack".to_string(), |(w, _)| w.label.clone())
    }
}
