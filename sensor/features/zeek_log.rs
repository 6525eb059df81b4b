//! Reading conn.log files as Zeek writes them: the ASCII writer's TSV with
//! its `#` header lines (also as `zeek-cut -c` passes them through), or the
//! JSON writer's one object per line.
//!
//! Zeek's own conventions hold: in TSV, `#unset_field` (`-`) is an unset
//! value and `#empty_field` (`(empty)`) an empty set; in JSON an unset field
//! is simply absent. Columns the features do not use may be missing;
//! columns they need may not, and a value that does not parse is an error
//! naming the file, the line and the column.

use std::collections::HashMap;
use std::io::BufRead;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::flow::Flow;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
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
    #[error("{path}: {message}")]
    Header { path: PathBuf, message: String },
}

/// Columns every row must carry: they identify the connection.
const IDENTITY: [&str; 7] = [
    "ts",
    "uid",
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "proto",
];

/// TSV conventions from the header.
struct Tsv {
    sep: String,
    set_sep: String,
    empty: String,
    unset: String,
    fields: Vec<String>,
}

/// One row's raw values by column name (`None`: unset).
type RawRow<'a> = HashMap<&'a str, Option<RawVal<'a>>>;

#[derive(Clone, Debug)]
enum RawVal<'a> {
    Str(std::borrow::Cow<'a, str>),
    Num(f64),
    Bool(bool),
    List(Vec<String>),
}

/// Reads every row of a conn.log file; `needed` names the columns the
/// caller's features use (they must be present in a TSV header).
pub fn read_conn_log(path: &Path, needed: &[&str]) -> Result<Vec<Flow>, LogError> {
    let file = std::fs::File::open(path).map_err(|source| LogError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = std::io::BufReader::new(file);
    read_conn_log_from(reader, path, needed)
}

pub fn read_conn_log_from<R: BufRead>(
    reader: R,
    path: &Path,
    needed: &[&str],
) -> Result<Vec<Flow>, LogError> {
    let mut tsv: Option<Tsv> = None;
    let mut sep = "\t".to_string();
    let mut set_sep = ",".to_string();
    let mut empty = "(empty)".to_string();
    let mut unset = "-".to_string();
    let mut flows = Vec::new();
    let mut json: Option<bool> = None;
    for (n, line) in reader.lines().enumerate() {
        let lineno = n + 1;
        let line = line.map_err(|source| LogError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let bad = |message: String| LogError::Line {
            path: path.to_path_buf(),
            line: lineno,
            message,
        };
        if json.is_none() {
            json = Some(line.starts_with('{'));
        }
        if json == Some(true) {
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| bad(format!("not a JSON object: {e}")))?;
            let obj = v
                .as_object()
                .ok_or_else(|| bad("not a JSON object".into()))?;
            let mut row: RawRow = HashMap::new();
            for (k, v) in obj {
                let val = match v {
                    serde_json::Value::Null => None,
                    serde_json::Value::Bool(b) => Some(RawVal::Bool(*b)),
                    serde_json::Value::Number(x) => x.as_f64().map(RawVal::Num),
                    serde_json::Value::String(s) => Some(RawVal::Str(s.clone().into())),
                    serde_json::Value::Array(a) => Some(RawVal::List(
                        a.iter()
                            .map(|x| match x {
                                serde_json::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            })
                            .collect(),
                    )),
                    serde_json::Value::Object(_) => {
                        return Err(bad(format!("column {k:?}: a nested object")))
                    }
                };
                row.insert(k.as_str(), val);
            }
            for c in IDENTITY {
                if !row.contains_key(c) {
                    return Err(bad(format!("column {c:?} is missing")));
                }
            }
            flows.push(to_flow(&row, &bad)?);
            continue;
        }
        if let Some(h) = line.strip_prefix('#') {
            let (key, rest) = h.split_once([' ', '\t']).unwrap_or((h, ""));
            match key {
                "separator" => sep = unescape(rest.trim()),
                "set_separator" => {
                    set_sep = rest.split(sep.as_str()).next().unwrap_or(",").to_string()
                }
                "empty_field" => {
                    empty = rest
                        .split(sep.as_str())
                        .next()
                        .unwrap_or("(empty)")
                        .to_string()
                }
                "unset_field" => unset = rest.split(sep.as_str()).next().unwrap_or("-").to_string(),
                "fields" => {
                    let fields: Vec<String> =
                        rest.split(sep.as_str()).map(str::to_string).collect();
                    for c in IDENTITY.iter().chain(needed) {
                        if !fields.iter().any(|f| f == c) {
                            return Err(LogError::Header {
                                path: path.to_path_buf(),
                                message: format!("the #fields line has no column {c:?}"),
                            });
                        }
                    }
                    tsv = Some(Tsv {
                        sep: sep.clone(),
                        set_sep: set_sep.clone(),
                        empty: empty.clone(),
                        unset: unset.clone(),
                        fields,
                    });
                }
                _ => {}
            }
            continue;
        }
        let Some(t) = tsv.as_ref() else {
            return Err(LogError::Header {
                path: path.to_path_buf(),
                message: "a row before any #fields line (run zeek-cut with -c to keep the header, or use JSON)".into(),
            });
        };
        let values: Vec<&str> = line.split(t.sep.as_str()).collect();
        if values.len() != t.fields.len() {
            return Err(bad(format!(
                "{} values, the #fields line names {} columns",
                values.len(),
                t.fields.len()
            )));
        }
        let mut row: RawRow = HashMap::new();
        for (name, v) in t.fields.iter().zip(values) {
            let val = if v == t.unset {
                None
            } else if v == t.empty {
                Some(RawVal::List(Vec::new()))
            } else if name == "service" || name == "tunnel_parents" {
                Some(RawVal::List(
                    v.split(t.set_sep.as_str()).map(str::to_string).collect(),
                ))
            } else {
                Some(RawVal::Str(v.into()))
            };
            row.insert(name.as_str(), val);
        }
        flows.push(to_flow(&row, &bad)?);
    }
    Ok(flows)
}

/// `\x09` style escapes of the #separator line.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("\\x") {
        out.push_str(&rest[..i]);
        let hex = rest.get(i + 2..i + 4).unwrap_or("");
        match u8::from_str_radix(hex, 16) {
            Ok(b) => {
                out.push(char::from(b));
                rest = &rest[i + 4..];
            }
            Err(_) => {
                out.push_str("\\x");
                rest = &rest[i + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn to_flow(row: &RawRow, bad: &dyn Fn(String) -> LogError) -> Result<Flow, LogError> {
    let get = |c: &str| row.get(c).cloned().flatten();
    let text = |c: &str| -> Result<Option<String>, LogError> {
        Ok(match get(c) {
            None => None,
            Some(RawVal::Str(s)) => Some(s.into_owned()),
            Some(RawVal::Num(x)) => Some(x.to_string()),
            Some(RawVal::Bool(b)) => Some(b.to_string()),
            Some(RawVal::List(l)) => Some(l.join(",")),
        })
    };
    let number = |c: &str| -> Result<Option<f64>, LogError> {
        match get(c) {
            None => Ok(None),
            Some(RawVal::Num(x)) => Ok(Some(x)),
            Some(RawVal::Str(s)) => s
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .map(Some)
                .ok_or_else(|| bad(format!("column {c:?}: {s:?} is not a number"))),
            Some(_) => Err(bad(format!("column {c:?}: not a number"))),
        }
    };
    let count = |c: &str| -> Result<Option<u64>, LogError> {
        match number(c)? {
            None => Ok(None),
            Some(x) if x >= 0.0 && x.fract() == 0.0 && x <= 2f64.powi(63) => Ok(Some(x as u64)),
            Some(x) => Err(bad(format!("column {c:?}: {x} is not a count"))),
        }
    };
    let port = |c: &str| -> Result<u16, LogError> {
        match count(c)? {
            Some(p) if p <= u64::from(u16::MAX) => Ok(p as u16),
            Some(p) => Err(bad(format!("column {c:?}: {p} is not a port"))),
            None => Err(bad(format!("column {c:?} is unset"))),
        }
    };
    let boolean = |c: &str| -> Result<Option<bool>, LogError> {
        match get(c) {
            None => Ok(None),
            Some(RawVal::Bool(b)) => Ok(Some(b)),
            Some(RawVal::Str(s)) => match s.as_ref() {
                "T" | "true" => Ok(Some(true)),
                "F" | "false" => Ok(Some(false)),
                other => Err(bad(format!("column {c:?}: {other:?} is not T or F"))),
            },
            Some(_) => Err(bad(format!("column {c:?}: not a bool"))),
        }
    };
    let addr = |c: &str| -> Result<IpAddr, LogError> {
        let s = text(c)?.ok_or_else(|| bad(format!("column {c:?} is unset")))?;
        s.parse::<IpAddr>()
            .map_err(|_| bad(format!("column {c:?}: {s:?} is not an address")))
    };
    let ts = match get("ts") {
        Some(RawVal::Str(s)) if s.contains('T') => {
            parse_iso8601(&s).ok_or_else(|| bad(format!("column \"ts\": {s:?} is not a time")))?
        }
        _ => number("ts")?.ok_or_else(|| bad("column \"ts\" is unset".into()))?,
    };
    let service = match get("service") {
        None => Vec::new(),
        Some(RawVal::List(l)) => l,
        Some(RawVal::Str(s)) => s.split(',').map(str::to_string).collect(),
        Some(_) => return Err(bad("column \"service\": not a string".into())),
    };
    Ok(Flow {
        ts,
        uid: text("uid")?.unwrap_or_default(),
        orig_h: addr("id.orig_h")?,
        orig_p: port("id.orig_p")?,
        resp_h: addr("id.resp_h")?,
        resp_p: port("id.resp_p")?,
        proto: text("proto")?.ok_or_else(|| bad("column \"proto\" is unset".into()))?,
        service,
        duration: number("duration")?,
        orig_bytes: count("orig_bytes")?,
        resp_bytes: count("resp_bytes")?,
        conn_state: text("conn_state")?.unwrap_or_default(),
        local_orig: boolean("local_orig")?,
        local_resp: boolean("local_resp")?,
        missed_bytes: count("missed_bytes")?,
        history: text("history")?.unwrap_or_default(),
        orig_pkts: count("orig_pkts")?,
        orig_ip_bytes: count("orig_ip_bytes")?,
        resp_pkts: count("resp_pkts")?,
        resp_ip_bytes: count("resp_ip_bytes")?,
        ip_proto: count("ip_proto")?,
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` (Zeek's `JSON::TS_ISO8601`) as epoch
/// seconds.
fn parse_iso8601(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z').unwrap_or(s);
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let mut t = time.split(':');
    let (h, mi): (i64, i64) = (t.next()?.parse().ok()?, t.next()?.parse().ok()?);
    let sec: f64 = t.next()?.parse().ok()?;
    // Years past 9999 (or before 0) are no log's: bounding them keeps the
    // day arithmetic below from overflowing i64 on a hostile file.
    if !(0..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || !(0..=23).contains(&h)
        || !(0..=59).contains(&mi)
        || !(0.0..61.0).contains(&sec)
    {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86400 + h * 3600 + mi * 60) as f64 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, needed: &[&str]) -> Result<Vec<Flow>, LogError> {
        read_conn_log_from(
            std::io::Cursor::new(text.as_bytes()),
            Path::new("conn.log"),
            needed,
        )
    }

    const TSV: &str = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n\
#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\n\
#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]\n\
1300475167.096535\tCXWv6p3arKYeMETxOg\t141.142.220.202\t5353\t224.0.0.251\t5353\tudp\tdns\t-\t-\t-\tS0\t-\t-\t0\tD\t1\t73\t0\t0\t(empty)\n\
1300475168.853899\tCjhGID4nQcgTWjvg4c\t141.142.220.118\t43927\t141.142.2.2\t53\tudp\tssl,http\t0.000435\t38\t89\tSF\tT\tF\t0\tDd\t1\t66\t1\t117\t(empty)\n";

    #[test]
    fn tsv_rows_with_unset_and_sets() {
        let f = read(TSV, &["duration", "history"]).unwrap_or_default();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].duration, None);
        assert_eq!(f[0].service, vec!["dns".to_string()]);
        assert_eq!(f[1].service, vec!["ssl".to_string(), "http".to_string()]);
        assert_eq!(f[1].local_orig, Some(true));
        assert_eq!(f[1].resp_ip_bytes, Some(117));
        assert_eq!(f[1].orig_p, 43927);
    }

    /// Regression: a JSON `ts` with a year near i64::MAX overflowed the
    /// day arithmetic (a panic in debug builds, a wrapped time in release).
    #[test]
    fn iso8601_year_out_of_range_is_an_error_not_a_panic() {
        let j = r#"{"ts":"9223372036854775807-01-01T00:00:00Z","uid":"C1","id.orig_h":"10.0.0.1","id.orig_p":1,"id.resp_h":"10.0.0.2","id.resp_p":2,"proto":"tcp"}"#;
        let e = read(j, &[]).unwrap_err().to_string();
        assert!(e.contains("is not a time"), "{e}");
        assert_eq!(parse_iso8601("2011-03-18T-1:00:00Z"), None);
    }

    #[test]
    fn json_rows_with_absent_fields() {
        let j = r#"{"ts":1300475167.096535,"uid":"C1","id.orig_h":"10.0.0.1","id.orig_p":5353,"id.resp_h":"10.0.0.2","id.resp_p":53,"proto":"udp","service":"dns","conn_state":"S0","orig_pkts":1}
{"ts":"2011-03-18T19:06:07.096535Z","uid":"C2","id.orig_h":"fe80::1","id.orig_p":1,"id.resp_h":"fe80::2","id.resp_p":2,"proto":"tcp","tunnel_parents":["Cx"]}"#;
        let f = read(j, &[]).unwrap_or_default();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].orig_bytes, None);
        assert_eq!(f[0].orig_pkts, Some(1));
        assert!((f[1].ts - 1300475167.096535).abs() < 1e-6, "{}", f[1].ts);
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let broken = TSV.replace("\t38\t", "\tthirty\t");
        let e = read(&broken, &[]).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("line 9") && e.contains("orig_bytes"), "{e}");
        let e = read(TSV, &["missed_bytes", "ip_proto"])
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.contains("ip_proto"), "{e}");
        let e = read("1\t2\n", &[]).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("#fields"), "{e}");
        let short = TSV.replace("\tDd\t1\t66", "\tDd\t1");
        let e = read(&short, &[]).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("line 9") && e.contains("20 values"), "{e}");
    }
}
