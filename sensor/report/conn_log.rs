//! conn.log in Zeek's ASCII (TSV with `#` header lines) or JSON format,
//! written so that `zeek-cut` and Zeek log readers accept it unchanged.

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::conn::record::ConnRecord;
use crate::identity::{ConnIdentity, Endpoint};

/// Output format of conn.log (`zeek` or `json` in a configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Zeek's ASCII writer: TSV with `#fields`/`#types` headers.
    #[default]
    Zeek,
    /// Zeek's JSON writer (`LogAscii::use_json=T`): one object per line.
    Json,
}

/// Optional columns that Zeek policy scripts add to conn.log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtraColumns {
    /// `policy/protocols/conn/mac-logging`: orig_l2_addr, resp_l2_addr.
    pub l2_addrs: bool,
    /// `policy/protocols/conn/vlan-logging`: vlan, inner_vlan.
    pub vlans: bool,
    /// `policy/protocols/conn/community-id-logging`: community_id.
    pub community_id: bool,
    /// `policy/frameworks/conn_key/vlan_fivetuple`: id.ctx.vlan and
    /// id.ctx.inner_vlan (the VLAN ids that are part of the key).
    pub ctx_vlans: bool,
    /// osprey's pod identity of both endpoints (`output.conn_pod_columns`),
    /// after every Zeek column: [`POD_COLUMNS`] for `orig_k8s`, then for
    /// `resp_k8s`. Unset (`-`) where a record comes without identity.
    pub pods: bool,
}

/// The pod identity columns of one endpoint, after its `orig_k8s.` or
/// `resp_k8s.` prefix (a Zeek record field's columns are dotted, as
/// `id.orig_h` is); `workload` is `Kind/name`.
pub const POD_COLUMNS: [&str; 5] = ["kind", "namespace", "pod", "workload", "node"];

/// An endpoint's values for [`POD_COLUMNS`], `None` where unset.
fn pod_values(e: &Endpoint) -> [Option<String>; 5] {
    let kind = Some(e.kind().to_owned());
    match e {
        Endpoint::Pod {
            namespace,
            pod,
            workload,
            node,
        } => [
            kind,
            Some(namespace.clone()),
            Some(pod.clone()),
            workload.as_ref().map(|w| format!("{}/{}", w.kind, w.name)),
            Some(node.clone()),
        ],
        Endpoint::Host { node } | Endpoint::Node { node } | Endpoint::PodCidr { node } => {
            [kind, None, None, None, Some(node.clone())]
        }
        Endpoint::External => [kind, None, None, None, None],
    }
}

/// Both endpoints' values, in column order.
fn pod_row(id: Option<&ConnIdentity>) -> Vec<(String, Option<String>)> {
    let mut out = Vec::with_capacity(10);
    for (side, e) in [
        ("orig_k8s", id.map(|i| &i.orig)),
        ("resp_k8s", id.map(|i| &i.resp)),
    ] {
        let values = e.map(pod_values).unwrap_or_default();
        for (name, v) in POD_COLUMNS.iter().zip(values) {
            out.push((format!("{side}.{name}"), v));
        }
    }
    out
}

impl ExtraColumns {
    /// Parses a comma list of `mac`, `vlan`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut e = ExtraColumns::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item {
                "mac" | "l2" | "orig_l2_addr" | "resp_l2_addr" => e.l2_addrs = true,
                "vlan" | "inner_vlan" => e.vlans = true,
                "community_id" | "community-id" => e.community_id = true,
                other => {
                    return Err(format!(
                        "unknown extra column set {other:?} (known: mac, vlan, community_id)"
                    ))
                }
            }
        }
        Ok(e)
    }
}

const FIELDS: &[(&str, &str)] = &[
    ("ts", "time"),
    ("uid", "string"),
    ("id.orig_h", "addr"),
    ("id.orig_p", "port"),
    ("id.resp_h", "addr"),
    ("id.resp_p", "port"),
    ("proto", "enum"),
    ("service", "string"),
    ("duration", "interval"),
    ("orig_bytes", "count"),
    ("resp_bytes", "count"),
    ("conn_state", "string"),
    ("local_orig", "bool"),
    ("local_resp", "bool"),
    ("missed_bytes", "count"),
    ("history", "string"),
    ("orig_pkts", "count"),
    ("orig_ip_bytes", "count"),
    ("resp_pkts", "count"),
    ("resp_ip_bytes", "count"),
    ("tunnel_parents", "set[string]"),
    ("ip_proto", "count"),
];

/// Writes conn.log rows to any sink.
pub struct ConnLogWriter<W: Write> {
    out: W,
    format: LogFormat,
    extra: ExtraColumns,
    line: String,
    /// The TSV row being built (bytes: every field is ASCII or already
    /// valid UTF-8, so nothing needs re-validating).
    row: Vec<u8>,
    rows: u64,
}

/// UTC civil time of a Unix time: `[year, month, day, hour, minute,
/// second]`.
pub(crate) fn civil_utc(secs: i64) -> [i64; 6] {
    // Civil-from-days (Howard Hinnant's algorithm) keeps this free of a
    // date crate for the few formats the logs need.
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    [y, m, d, rem / 3600, (rem / 60) % 60, rem % 60]
}

/// Zeek's `#open`/`#close` time stamp: `%Y-%m-%d-%H-%M-%S` in UTC (also
/// `Log::default_rotation_date_format`, which names rotated files).
pub(crate) fn zeek_log_time(secs: i64) -> String {
    let [y, m, d, hh, mm, ss] = civil_utc(secs);
    format!("{y:04}-{m:02}-{d:02}-{hh:02}-{mm:02}-{ss:02}")
}

/// Whole seconds since the epoch; a clock set before 1970 reads as 1970.
pub(crate) fn unix_secs(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn fmt_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

fn push_u64(l: &mut Vec<u8>, v: u64) {
    let mut b = itoa::Buffer::new();
    l.extend_from_slice(b.format(v).as_bytes());
}

/// Dotted quads without the formatting machinery; IPv6 (rarer, and with
/// zero compression) goes through `Display`.
fn push_ip(l: &mut Vec<u8>, a: &std::net::IpAddr) {
    match a {
        std::net::IpAddr::V4(v) => {
            let mut buf = [0u8; 16];
            let mut n = 0;
            for o in v.octets() {
                // Each octet's digits and a trailing dot, from a table.
                let (digits, len) = OCTETS[usize::from(o)];
                buf[n..n + 4].copy_from_slice(&digits);
                n += usize::from(len);
            }
            l.extend_from_slice(&buf[..n - 1]);
        }
        std::net::IpAddr::V6(_) => {
            let _ = write!(l, "{a}");
        }
    }
}

/// "0." to "255.", padded to four bytes, with their lengths.
const OCTETS: [([u8; 4], u8); 256] = {
    let mut t = [([0u8; 4], 0u8); 256];
    let mut i = 0;
    while i < 256 {
        let (h, d, u) = ((i / 100) as u8, (i / 10 % 10) as u8, (i % 10) as u8);
        t[i] = if i >= 100 {
            ([b'0' + h, b'0' + d, b'0' + u, b'.'], 4)
        } else if i >= 10 {
            ([b'0' + d, b'0' + u, b'.', 0], 3)
        } else {
            ([b'0' + u, b'.', 0, 0], 2)
        };
        i += 1;
    }
    t
};

fn push_uid(l: &mut Vec<u8>, u: &crate::conn::record::Uid) {
    u.push_to(l);
}

/// `%.6f` (Zeek's `Formatter::Render`: `std::to_chars(fixed, 6)`), exact.
/// Packet times are whole microseconds stored as doubles, so the scaled
/// fraction lies within a hair of an integer and rounds the same as the
/// exact decimal expansion; anything near a rounding tie takes the exact
/// (slow) path.
fn push_fixed6(l: &mut Vec<u8>, v: f64) {
    if v.is_finite() && (0.0..9.0e12).contains(&v) {
        let int = v.trunc();
        let scaled = (v - int) * 1e6;
        let r = scaled.round();
        if (scaled - r).abs() < 0.25 {
            let mut int = int as u64;
            let mut frac = r as u64;
            if frac == 1_000_000 {
                int += 1;
                frac = 0;
            }
            push_u64(l, int);
            // Six fraction digits, zero-padded.
            let mut d = [b'0'; 7];
            d[0] = b'.';
            let f = frac as usize;
            for (k, pair) in [f / 10_000, f / 100 % 100, f % 100].into_iter().enumerate() {
                d[1 + 2 * k] = b'0' + (pair / 10) as u8;
                d[2 + 2 * k] = b'0' + (pair % 10) as u8;
            }
            l.extend_from_slice(&d);
            return;
        }
    }
    let _ = write!(l, "{v:.6}");
}

/// rapidjson's `Writer::Double` prints the shortest round-trip form and
/// keeps a `.0` on integral values; Rust's `{}` drops it.
fn json_double(out: &mut String, d: f64) {
    if !d.is_finite() {
        out.push_str("null");
        return;
    }
    let start = out.len();
    let _ = write!(out, "{d}");
    if !out[start..].contains(['.', 'e', 'E']) {
        out.push_str(".0");
    }
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl<W: Write> ConnLogWriter<W> {
    pub fn new(out: W, format: LogFormat, extra: ExtraColumns) -> io::Result<Self> {
        Self::new_at(out, format, extra, std::time::SystemTime::now())
    }

    /// As `new`, with the `#open` time given: a rotating log names its
    /// files by their open time and must put the same time in the header.
    pub fn new_at(
        mut out: W,
        format: LogFormat,
        extra: ExtraColumns,
        open: std::time::SystemTime,
    ) -> io::Result<Self> {
        if format == LogFormat::Zeek {
            let mut h = String::new();
            h.push_str("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n");
            let _ = writeln!(h, "#open\t{}", zeek_log_time(unix_secs(open)));
            let mut names: Vec<&str> = FIELDS.iter().map(|f| f.0).collect();
            let mut types: Vec<&str> = FIELDS.iter().map(|f| f.1).collect();
            if extra.ctx_vlans {
                names.splice(6..6, ["id.ctx.vlan", "id.ctx.inner_vlan"]);
                types.splice(6..6, ["int", "int"]);
            }
            if extra.l2_addrs {
                names.extend(["orig_l2_addr", "resp_l2_addr"]);
                types.extend(["string", "string"]);
            }
            if extra.vlans {
                names.extend(["vlan", "inner_vlan"]);
                types.extend(["int", "int"]);
            }
            if extra.community_id {
                names.push("community_id");
                types.push("string");
            }
            let pod_names: Vec<String> = pod_row(None).into_iter().map(|(n, _)| n).collect();
            if extra.pods {
                names.extend(pod_names.iter().map(String::as_str));
                types.extend(pod_names.iter().map(|_| "string"));
            }
            let _ = writeln!(h, "#fields\t{}", names.join("\t"));
            let _ = writeln!(h, "#types\t{}", types.join("\t"));
            out.write_all(h.as_bytes())?;
        }
        Ok(ConnLogWriter {
            out,
            format,
            extra,
            line: String::with_capacity(512),
            row: Vec::with_capacity(512),
            rows: 0,
        })
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The sink, for a caller that measures what went into it.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// Flushes the sink so that a reader tailing the log sees every row
    /// written so far.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn write(&mut self, r: &ConnRecord) -> io::Result<()> {
        self.write_with(r, None)
    }

    /// Writes `r` with its endpoints' identity in the pod columns (when
    /// `ExtraColumns::pods` asks for them).
    pub fn write_with(&mut self, r: &ConnRecord, id: Option<&ConnIdentity>) -> io::Result<()> {
        match self.format {
            LogFormat::Zeek => {
                self.row.clear();
                self.format_tsv(r, id);
                self.out.write_all(&self.row)?;
            }
            LogFormat::Json => {
                self.line.clear();
                self.format_json(r, id);
                self.out.write_all(self.line.as_bytes())?;
            }
        }
        self.rows += 1;
        Ok(())
    }

    fn format_tsv(&mut self, r: &ConnRecord, id: Option<&ConnIdentity>) {
        let l = &mut self.row;
        fn opt_u64(l: &mut Vec<u8>, v: Option<u64>) {
            match v {
                Some(v) => push_u64(l, v),
                None => l.push(b'-'),
            }
        }
        fn opt_bool(l: &mut Vec<u8>, v: Option<bool>) {
            l.push(match v {
                Some(true) => b'T',
                Some(false) => b'F',
                None => b'-',
            });
        }
        push_fixed6(l, r.ts);
        l.push(b'\t');
        push_uid(l, &r.uid);
        l.push(b'\t');
        push_ip(l, &r.orig_h);
        l.push(b'\t');
        push_u64(l, u64::from(r.orig_p));
        l.push(b'\t');
        push_ip(l, &r.resp_h);
        l.push(b'\t');
        push_u64(l, u64::from(r.resp_p));
        l.push(b'\t');
        if self.extra.ctx_vlans {
            opt_u64(l, r.vlan.map(u64::from));
            l.push(b'\t');
            opt_u64(l, r.inner_vlan.map(u64::from));
            l.push(b'\t');
        }
        l.extend_from_slice(r.proto.as_str().as_bytes());
        l.push(b'\t');
        if r.service.is_empty() {
            l.push(b'-');
        } else {
            for (i, s) in r.service.iter().enumerate() {
                if i > 0 {
                    l.push(b',');
                }
                l.extend_from_slice(s.as_bytes());
            }
        }
        l.push(b'\t');
        match r.duration {
            Some(d) => push_fixed6(l, d),
            None => l.push(b'-'),
        }
        l.push(b'\t');
        opt_u64(l, r.orig_bytes);
        l.push(b'\t');
        opt_u64(l, r.resp_bytes);
        l.push(b'\t');
        l.extend_from_slice(r.conn_state.as_str().as_bytes());
        l.push(b'\t');
        opt_bool(l, r.local_orig);
        l.push(b'\t');
        opt_bool(l, r.local_resp);
        l.push(b'\t');
        push_u64(l, r.missed_bytes);
        l.push(b'\t');
        if r.history.is_empty() {
            l.push(b'-');
        } else {
            l.extend_from_slice(r.history.as_str().as_bytes());
        }
        for v in [r.orig_pkts, r.orig_ip_bytes, r.resp_pkts, r.resp_ip_bytes] {
            l.push(b'\t');
            push_u64(l, v);
        }
        l.push(b'\t');
        if r.tunnel_parents.is_empty() {
            l.push(b'-');
        } else {
            for (i, u) in r.tunnel_parents.iter().enumerate() {
                if i > 0 {
                    l.push(b',');
                }
                push_uid(l, u);
            }
        }
        l.push(b'\t');
        opt_u64(l, r.ip_proto.map(u64::from));
        if self.extra.l2_addrs {
            l.push(b'\t');
            match &r.orig_l2_addr {
                Some(m) => l.extend_from_slice(fmt_mac(m).as_bytes()),
                None => l.push(b'-'),
            }
            l.push(b'\t');
            match &r.resp_l2_addr {
                Some(m) => l.extend_from_slice(fmt_mac(m).as_bytes()),
                None => l.push(b'-'),
            }
        }
        if self.extra.vlans {
            l.push(b'\t');
            opt_u64(l, r.vlan.map(u64::from));
            l.push(b'\t');
            opt_u64(l, r.inner_vlan.map(u64::from));
        }
        if self.extra.community_id {
            l.push(b'\t');
            l.extend_from_slice(super::community_id::community_id(r, 0).as_bytes());
        }
        if self.extra.pods {
            for (_, v) in pod_row(id) {
                l.push(b'\t');
                // Kubernetes names are DNS labels and subdomains: no tab,
                // newline or backslash to escape.
                l.extend_from_slice(v.as_deref().unwrap_or("-").as_bytes());
            }
        }
        l.push(b'\n');
    }

    fn format_json(&mut self, r: &ConnRecord, id: Option<&ConnIdentity>) {
        let l = &mut self.line;
        l.push_str("{\"ts\":");
        json_double(l, r.ts);
        let _ = write!(l, ",\"uid\":\"{}\",\"id.orig_h\":", r.uid);
        json_str(l, &r.orig_h.to_string());
        let _ = write!(l, ",\"id.orig_p\":{},\"id.resp_h\":", r.orig_p);
        json_str(l, &r.resp_h.to_string());
        let _ = write!(l, ",\"id.resp_p\":{}", r.resp_p);
        if self.extra.ctx_vlans {
            if let Some(v) = r.vlan {
                let _ = write!(l, ",\"id.ctx.vlan\":{v}");
            }
            if let Some(v) = r.inner_vlan {
                let _ = write!(l, ",\"id.ctx.inner_vlan\":{v}");
            }
        }
        let _ = write!(l, ",\"proto\":\"{}\"", r.proto.as_str());
        if !r.service.is_empty() {
            l.push_str(",\"service\":");
            json_str(l, &r.service.join(","));
        }
        if let Some(d) = r.duration {
            l.push_str(",\"duration\":");
            json_double(l, d);
        }
        if let Some(b) = r.orig_bytes {
            let _ = write!(l, ",\"orig_bytes\":{b}");
        }
        if let Some(b) = r.resp_bytes {
            let _ = write!(l, ",\"resp_bytes\":{b}");
        }
        let _ = write!(l, ",\"conn_state\":\"{}\"", r.conn_state.as_str());
        if let Some(b) = r.local_orig {
            let _ = write!(l, ",\"local_orig\":{b}");
        }
        if let Some(b) = r.local_resp {
            let _ = write!(l, ",\"local_resp\":{b}");
        }
        let _ = write!(l, ",\"missed_bytes\":{}", r.missed_bytes);
        if !r.history.is_empty() {
            l.push_str(",\"history\":");
            json_str(l, r.history.as_str());
        }
        let _ = write!(
            l,
            ",\"orig_pkts\":{},\"orig_ip_bytes\":{},\"resp_pkts\":{},\"resp_ip_bytes\":{}",
            r.orig_pkts, r.orig_ip_bytes, r.resp_pkts, r.resp_ip_bytes
        );
        if !r.tunnel_parents.is_empty() {
            l.push_str(",\"tunnel_parents\":[");
            for (i, u) in r.tunnel_parents.iter().enumerate() {
                if i > 0 {
                    l.push(',');
                }
                let _ = write!(l, "\"{u}\"");
            }
            l.push(']');
        }
        if let Some(p) = r.ip_proto {
            let _ = write!(l, ",\"ip_proto\":{p}");
        }
        if self.extra.l2_addrs {
            if let Some(m) = &r.orig_l2_addr {
                let _ = write!(l, ",\"orig_l2_addr\":\"{}\"", fmt_mac(m));
            }
            if let Some(m) = &r.resp_l2_addr {
                let _ = write!(l, ",\"resp_l2_addr\":\"{}\"", fmt_mac(m));
            }
        }
        if self.extra.vlans {
            if let Some(v) = r.vlan {
                let _ = write!(l, ",\"vlan\":{v}");
            }
            if let Some(v) = r.inner_vlan {
                let _ = write!(l, ",\"inner_vlan\":{v}");
            }
        }
        if self.extra.community_id {
            let _ = write!(
                l,
                ",\"community_id\":\"{}\"",
                super::community_id::community_id(r, 0)
            );
        }
        if self.extra.pods {
            for (name, v) in pod_row(id) {
                if let Some(v) = v {
                    let _ = write!(l, ",\"{name}\":");
                    json_str(l, &v);
                }
            }
        }
        l.push_str("}\n");
    }

    /// The record as Zeek's JSON writer prints it, without the closing
    /// brace, so that another writer (alerts.log) can add members to the
    /// same object and stay readable by every tool that reads conn.log.
    pub fn json_members(&mut self, r: &ConnRecord) -> &str {
        self.json_members_with(r, None)
    }

    /// As `json_members`, with the endpoints' identity for the pod columns.
    pub fn json_members_with(&mut self, r: &ConnRecord, id: Option<&ConnIdentity>) -> &str {
        self.line.clear();
        self.format_json(r, id);
        let l = self.line.as_str();
        l.strip_suffix("}\n").unwrap_or(l)
    }

    /// Flushes and returns the sink without the `#close` footer, for output
    /// that must not look complete.
    pub fn into_inner_unfinished(mut self) -> W {
        let _ = self.out.flush();
        self.out
    }

    /// Writes the `#close` footer (ASCII format) and flushes; a log without
    /// its footer is, as with Zeek, one that was not closed cleanly.
    pub fn finish(self) -> io::Result<W> {
        self.finish_at(std::time::SystemTime::now())
    }

    /// As `finish`, with the `#close` time given (a caller-driven clock).
    pub fn finish_at(mut self, close: std::time::SystemTime) -> io::Result<W> {
        if self.format == LogFormat::Zeek {
            writeln!(self.out, "#close\t{}", zeek_log_time(unix_secs(close)))?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn ipv4_addresses_print_like_display() {
        for a in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.100",
            "198.18.9.99",
            "1.20.3.40",
        ] {
            let ip: std::net::IpAddr = a.parse().unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
            let mut l = Vec::new();
            push_ip(&mut l, &ip);
            assert_eq!(String::from_utf8_lossy(&l), ip.to_string());
        }
    }

    use super::*;

    #[test]
    fn log_time_is_civil_utc() {
        assert_eq!(zeek_log_time(0), "1970-01-01-00-00-00");
        assert_eq!(zeek_log_time(1_700_000_000), "2023-11-14-22-13-20");
    }

    #[test]
    fn fixed6_matches_printf() {
        for v in [
            0.0,
            1.0,
            0.0000005,
            1300475167.096535,
            1300475168.999999_6,
            3.004616,
            0.1 + 0.2,
            123456.7890125,
            1e13,
            f64::NAN,
        ] {
            let mut s = Vec::new();
            push_fixed6(&mut s, v);
            assert_eq!(String::from_utf8_lossy(&s), format!("{v:.6}"), "{v}");
        }
    }

    #[test]
    fn json_doubles_keep_a_fraction() {
        let mut s = String::new();
        json_double(&mut s, 1.0);
        assert_eq!(s, "1.0");
        s.clear();
        json_double(&mut s, 1300475167.096535);
        assert_eq!(s, "1300475167.096535");
    }
}
