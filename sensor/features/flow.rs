//! The conn.log fields features are computed from, in one owned form for
//! both of their sources: the engine's `ConnRecord`s and rows of a conn.log
//! file that Zeek (or `zeek-cut`, or osprey) wrote. Featurizing both through
//! this one type is what makes a model trained on Zeek logs see the same
//! numbers in production.

use std::net::IpAddr;

use crate::conn::ConnRecord;

/// One connection, as conn.log describes it (unset fields are `None`).
#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    pub ts: f64,
    pub uid: String,
    pub orig_h: IpAddr,
    pub orig_p: u16,
    pub resp_h: IpAddr,
    pub resp_p: u16,
    /// `tcp`, `udp`, `icmp`, `unknown_transport`.
    pub proto: String,
    /// Confirmed services in order (empty when unset).
    pub service: Vec<String>,
    pub duration: Option<f64>,
    pub orig_bytes: Option<u64>,
    pub resp_bytes: Option<u64>,
    /// Empty when unset.
    pub conn_state: String,
    pub local_orig: Option<bool>,
    pub local_resp: Option<bool>,
    pub missed_bytes: Option<u64>,
    /// Empty when unset.
    pub history: String,
    pub orig_pkts: Option<u64>,
    pub orig_ip_bytes: Option<u64>,
    pub resp_pkts: Option<u64>,
    pub resp_ip_bytes: Option<u64>,
    pub ip_proto: Option<u64>,
}

/// The value conn.log's `%.6f` prints, read back: training data comes from
/// conn.log files (TSV), so the engine's times go through the same rounding
/// to whole microseconds and a model sees bit-identical inputs either way.
fn as_logged(v: f64) -> f64 {
    if v.is_finite() && (0.0..9.0e9).contains(&v) {
        let int = v.trunc();
        let scaled = (v - int) * 1e6;
        let r = scaled.round();
        if (scaled - r).abs() < 0.25 {
            // int * 1e6 + r is an exact integer below 2^53, and one correctly
            // rounded division gives the double nearest the decimal, as
            // parsing the printed text does.
            return (int * 1e6 + r) / 1e6;
        }
    }
    format!("{v:.6}").parse().unwrap_or(v)
}

impl From<&ConnRecord> for Flow {
    fn from(r: &ConnRecord) -> Self {
        Flow {
            ts: as_logged(r.ts),
            uid: r.uid.to_string(),
            orig_h: r.orig_h,
            orig_p: r.orig_p,
            resp_h: r.resp_h,
            resp_p: r.resp_p,
            proto: r.proto.as_str().to_string(),
            service: r.service.iter().map(|s| s.to_string()).collect(),
            duration: r.duration.map(as_logged),
            orig_bytes: r.orig_bytes,
            resp_bytes: r.resp_bytes,
            conn_state: r.conn_state.as_str().to_string(),
            local_orig: r.local_orig,
            local_resp: r.local_resp,
            missed_bytes: Some(r.missed_bytes),
            history: r.history.as_str().to_string(),
            orig_pkts: Some(r.orig_pkts),
            orig_ip_bytes: Some(r.orig_ip_bytes),
            resp_pkts: Some(r.resp_pkts),
            resp_ip_bytes: Some(r.resp_ip_bytes),
            ip_proto: r.ip_proto.map(u64::from),
        }
    }
}

/// The numeric conn.log fields a feature may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NumField {
    Duration,
    OrigBytes,
    RespBytes,
    MissedBytes,
    OrigPkts,
    OrigIpBytes,
    RespPkts,
    RespIpBytes,
    OrigP,
    RespP,
    IpProto,
    LocalOrig,
    LocalResp,
}

impl NumField {
    pub const ALL: [NumField; 13] = [
        NumField::Duration,
        NumField::OrigBytes,
        NumField::RespBytes,
        NumField::MissedBytes,
        NumField::OrigPkts,
        NumField::OrigIpBytes,
        NumField::RespPkts,
        NumField::RespIpBytes,
        NumField::OrigP,
        NumField::RespP,
        NumField::IpProto,
        NumField::LocalOrig,
        NumField::LocalResp,
    ];

    /// The conn.log column it comes from.
    pub fn column(self) -> &'static str {
        match self {
            NumField::Duration => "duration",
            NumField::OrigBytes => "orig_bytes",
            NumField::RespBytes => "resp_bytes",
            NumField::MissedBytes => "missed_bytes",
            NumField::OrigPkts => "orig_pkts",
            NumField::OrigIpBytes => "orig_ip_bytes",
            NumField::RespPkts => "resp_pkts",
            NumField::RespIpBytes => "resp_ip_bytes",
            NumField::OrigP => "id.orig_p",
            NumField::RespP => "id.resp_p",
            NumField::IpProto => "ip_proto",
            NumField::LocalOrig => "local_orig",
            NumField::LocalResp => "local_resp",
        }
    }

    /// The field's value; booleans are 1 or 0.
    pub fn get(self, f: &Flow) -> Option<f64> {
        let b = |v: Option<bool>| v.map(|b| if b { 1.0 } else { 0.0 });
        match self {
            NumField::Duration => f.duration,
            NumField::OrigBytes => f.orig_bytes.map(|v| v as f64),
            NumField::RespBytes => f.resp_bytes.map(|v| v as f64),
            NumField::MissedBytes => f.missed_bytes.map(|v| v as f64),
            NumField::OrigPkts => f.orig_pkts.map(|v| v as f64),
            NumField::OrigIpBytes => f.orig_ip_bytes.map(|v| v as f64),
            NumField::RespPkts => f.resp_pkts.map(|v| v as f64),
            NumField::RespIpBytes => f.resp_ip_bytes.map(|v| v as f64),
            NumField::OrigP => Some(f64::from(f.orig_p)),
            NumField::RespP => Some(f64::from(f.resp_p)),
            NumField::IpProto => f.ip_proto.map(|v| v as f64),
            NumField::LocalOrig => b(f.local_orig),
            NumField::LocalResp => b(f.local_resp),
        }
    }
}

/// The categorical conn.log fields a one-hot feature may test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CatField {
    Proto,
    ConnState,
    /// Matches when any of the connection's services equals the value.
    Service,
}

impl CatField {
    pub fn column(self) -> &'static str {
        match self {
            CatField::Proto => "proto",
            CatField::ConnState => "conn_state",
            CatField::Service => "service",
        }
    }

    /// Whether the flow's value is `v` (an empty `v` matches an unset
    /// field).
    pub fn is(self, f: &Flow, v: &str) -> bool {
        match self {
            CatField::Proto => f.proto == v,
            CatField::ConnState => f.conn_state == v,
            CatField::Service => {
                if v.is_empty() {
                    f.service.is_empty()
                } else {
                    f.service.iter().any(|s| s == v)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::as_logged;

    #[test]
    fn times_round_as_conn_log_prints_them() {
        for v in [
            1795302751.612246,
            0.000_836_499_1,
            1.999_999_7,
            0.0,
            1.0e-7,
            1300475167.096535,
            4.5e-7,
            123.456_789_5,
        ] {
            let printed: f64 = format!("{v:.6}").parse().expect("number");
            assert_eq!(as_logged(v).to_bits(), printed.to_bits(), "{v}");
        }
    }
}
