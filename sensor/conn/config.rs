//! Settings of the connection engine, named after the Zeek script constants
//! they mirror (`tcp_inactivity_timeout`, `Tunnel::max_depth`, ...) so that a
//! Zeek user can carry a `redef` over as `--set NAME=VALUE`.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::service::{Analyzer, AnalyzerLimits, AnalyzerSet};
use crate::decode::frag::FragLimits;

/// Transport part of a port, as in Zeek's `80/tcp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortProto {
    Tcp,
    Udp,
    Icmp,
}

impl PortProto {
    /// Zeek's name of the transport, as written after the `/` of a port.
    pub fn as_str(self) -> &'static str {
        match self {
            PortProto::Tcp => "tcp",
            PortProto::Udp => "udp",
            PortProto::Icmp => "icmp",
        }
    }
}

/// A transport port as Zeek writes it (`80/tcp`, `53/udp`): an entry of
/// `likely_server_ports`. It is parsed where it is read (a configuration
/// list, `--likely-server-ports`, a `--set` value), so a bad entry is
/// refused there with the name of its key, and a [`PortSet`] is built
/// from ports that need no further checking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    pub number: u16,
    pub proto: PortProto,
}

impl FromStr for Port {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let item = s.trim();
        let (num, proto) = item
            .split_once('/')
            .ok_or_else(|| format!("port {item:?} lacks its transport (e.g. 80/tcp)"))?;
        let number: u16 = num
            .trim()
            .parse()
            .map_err(|_| format!("port {item:?}: {num:?} is not a port number"))?;
        let proto = match proto.trim() {
            "tcp" => PortProto::Tcp,
            "udp" => PortProto::Udp,
            "icmp" => PortProto::Icmp,
            other => return Err(format!("port {item:?}: unknown transport {other:?}")),
        };
        Ok(Port { number, proto })
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.number, self.proto.as_str())
    }
}

/// Written back as `80/tcp`, the form it is read in.
impl Serialize for Port {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_parsed(d, "a port such as 80/tcp", str::parse)
    }
}

/// An IP network as a configuration writes it: a CIDR (`10.0.0.0/8`, or
/// Zeek's `[fd00::]/8`) or a bare address, which stands for its host
/// network (`192.0.2.7` is `192.0.2.7/32`). Like [`Port`], it is checked
/// as it is read, so a bad entry is refused with its key and what is
/// built from it (a [`NetSet`], the responder's allowlist) takes networks
/// as they are. Host bits are kept as written: [`NetSet`] clears them,
/// and `IpNet::contains` ignores them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr(pub IpNet);

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let item = s.trim();
        let bare = item.trim_start_matches('[').replace("]/", "/");
        IpNet::from_str(&bare)
            .or_else(|_| IpAddr::from_str(&bare).map(IpNet::from))
            .map(Cidr)
            .map_err(|_| format!("{item:?} is not a network (CIDR) or address"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<Cidr> for IpNet {
    fn from(c: Cidr) -> IpNet {
        c.0
    }
}

/// Written back as a CIDR string (a bare address as `/32` or `/128`),
/// which reads as the same network.
impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_parsed(d, "a network (CIDR) or an address", str::parse)
    }
}

/// Deserialises a value from a string through `parse`. A refusal becomes
/// serde's own error, which the configuration loader prefixes with the
/// path of the key (`conn.likely_server_ports[2]`): the value is checked
/// once, where it is read, and nothing downstream checks it again.
/// `expecting` names the value in serde's type errors (a number where a
/// string belongs).
pub(crate) fn deserialize_parsed<'de, D, T, E>(
    d: D,
    expecting: &'static str,
    parse: fn(&str) -> Result<T, E>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    E: fmt::Display,
{
    struct Parsed<T, E> {
        expecting: &'static str,
        parse: fn(&str) -> Result<T, E>,
    }

    impl<T, E: fmt::Display> serde::de::Visitor<'_> for Parsed<T, E> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.expecting)
        }

        fn visit_str<X: serde::de::Error>(self, v: &str) -> Result<T, X> {
            (self.parse)(v).map_err(X::custom)
        }
    }

    d.deserialize_str(Parsed { expecting, parse })
}

/// A set of transport ports (`likely_server_ports`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSet {
    tcp: Box<[u64; 1024]>,
    udp: Box<[u64; 1024]>,
    icmp: BTreeSet<u16>,
}

impl Default for PortSet {
    fn default() -> Self {
        PortSet::new()
    }
}

impl PortSet {
    pub fn new() -> Self {
        PortSet {
            tcp: Box::new([0; 1024]),
            udp: Box::new([0; 1024]),
            icmp: BTreeSet::new(),
        }
    }

    pub fn insert(&mut self, proto: PortProto, port: u16) {
        let (w, b) = (usize::from(port) / 64, port % 64);
        match proto {
            PortProto::Tcp => self.tcp[w] |= 1 << b,
            PortProto::Udp => self.udp[w] |= 1 << b,
            PortProto::Icmp => {
                self.icmp.insert(port);
            }
        }
    }

    pub fn contains(&self, proto: PortProto, port: u16) -> bool {
        let (w, b) = (usize::from(port) / 64, port % 64);
        match proto {
            PortProto::Tcp => self.tcp[w] & (1 << b) != 0,
            PortProto::Udp => self.udp[w] & (1 << b) != 0,
            PortProto::Icmp => self.icmp.contains(&port),
        }
    }

    /// Parses `80/tcp,53/udp` (spaces and braces allowed, as in Zeek syntax).
    pub fn parse_list(s: &str) -> Result<Vec<Port>, String> {
        let s = s.trim().trim_start_matches('{').trim_end_matches('}');
        s.split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(str::parse)
            .collect()
    }

    pub fn from_list(s: &str) -> Result<Self, String> {
        Ok(Self::parse_list(s)?.into_iter().collect())
    }

    /// Ports every Zeek run has: the UDP tunnel decapsulation ports.
    pub const TUNNEL_PORTS: &'static str =
        "2123/udp,2152/udp,3544/udp,4754/udp,4789/udp,5072/udp,6081/udp";

    /// The server ports registered by the protocol scripts that plain `zeek`
    /// (all of `base/`) loads: `Analyzer::register_for_ports` adds each
    /// analyzer's server ports to `likely_server_ports`.
    pub const ZEEK_DEFAULT_SERVER_PORTS: &'static str =
        "135/tcp,67/udp,4011/udp,20000/tcp,20000/udp,\
        53/udp,53/tcp,137/udp,5353/udp,5355/udp,79/tcp,21/tcp,2811/tcp,\
        80/tcp,81/tcp,631/tcp,1080/tcp,3128/tcp,8000/tcp,8080/tcp,8888/tcp,143/tcp,\
        6666/tcp,6667/tcp,6668/tcp,6669/tcp,88/tcp,88/udp,389/tcp,3268/tcp,389/udp,502/tcp,\
        1883/tcp,1434/tcp,3306/tcp,123/udp,5432/tcp,443/udp,1812/udp,3389/tcp,3389/udp,\
        6379/tcp,5060/udp,139/tcp,445/tcp,25/tcp,587/tcp,161/udp,162/udp,22/tcp,\
        443/tcp,465/tcp,563/tcp,585/tcp,614/tcp,636/tcp,989/tcp,990/tcp,992/tcp,993/tcp,\
        995/tcp,5223/tcp,514/udp,514/tcp,5222/tcp,5269/tcp";

    /// Zeek's default-mode `likely_server_ports`.
    pub fn zeek_default() -> Self {
        let mut set = PortSet::new();
        for list in [Self::TUNNEL_PORTS, Self::ZEEK_DEFAULT_SERVER_PORTS] {
            set.extend(Self::parse_list(list).unwrap_or_default());
        }
        set
    }
}

impl Extend<Port> for PortSet {
    fn extend<I: IntoIterator<Item = Port>>(&mut self, ports: I) {
        for p in ports {
            self.insert(p.proto, p.number);
        }
    }
}

/// A set of ports already parsed (a configuration's list).
impl FromIterator<Port> for PortSet {
    fn from_iter<I: IntoIterator<Item = Port>>(ports: I) -> Self {
        let mut set = PortSet::new();
        set.extend(ports);
        set
    }
}

/// `Site::private_address_space` (scripts/base/utils/site.zeek), which
/// `Site::private_address_space_is_local = T` copies into `Site::local_nets`.
pub const ZEEK_PRIVATE_ADDRESS_SPACE: &[&str] = &[
    "0.0.0.0/8",
    "2002::/24",
    "10.0.0.0/8",
    "2002:a00::/24",
    "100.64.0.0/10",
    "2002:6440::/26",
    "127.0.0.0/8",
    "2002:7f00::/24",
    "169.254.0.0/16",
    "2002:a9fe::/32",
    "172.16.0.0/12",
    "2002:ac10::/28",
    "192.0.0.0/24",
    "2002:c000::/40",
    "192.0.2.0/24",
    "2002:c000:200::/40",
    "192.168.0.0/16",
    "2002:c0a8::/32",
    "198.18.0.0/15",
    "2002:c612::/31",
    "198.51.100.0/24",
    "2002:c633:6400::/40",
    "203.0.113.0/24",
    "2002:cb00:7100::/40",
    "224.0.0.0/24",
    "2002:e000::/40",
    "239.0.0.0/8",
    "2002:ef00::/24",
    "240.0.0.0/4",
    "2002:f000::/20",
    "255.255.255.255/32",
    "2002:ffff:ffff::/48",
    "::/128",
    "::1/128",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",
    "2001:2::/48",
    "2001:db8::/32",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
];

/// A list of networks with a membership test. Lookups run per logged
/// connection, so the networks are also kept as (prefix, mask) integers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetSet {
    nets: Vec<IpNet>,
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl NetSet {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut set = NetSet::default();
        set.extend_from(s)?;
        Ok(set)
    }

    pub fn extend_from(&mut self, s: &str) -> Result<(), String> {
        let s = s.trim().trim_start_matches('{').trim_end_matches('}');
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let Cidr(net) = item.parse()?;
            self.push(net.trunc());
        }
        Ok(())
    }

    fn push(&mut self, net: IpNet) {
        match net {
            IpNet::V4(n) => {
                let mask = u32::from(n.netmask());
                self.v4.push((u32::from(n.network()) & mask, mask));
            }
            IpNet::V6(n) => {
                let mask = u128::from(n.netmask());
                self.v6.push((u128::from(n.network()) & mask, mask));
            }
        }
        self.nets.push(net);
    }

    pub fn zeek_private() -> Self {
        let mut set = NetSet::default();
        for n in ZEEK_PRIVATE_ADDRESS_SPACE {
            if let Ok(net) = IpNet::from_str(n) {
                set.push(net);
            }
        }
        set
    }

    pub fn contains(&self, a: &IpAddr) -> bool {
        // Zeek compares IPv4 addresses in their IPv4-mapped IPv6 form, so a
        // v4 network never matches a v6 address and vice versa.
        match a {
            IpAddr::V4(v) => {
                let x = u32::from(*v);
                self.v4.iter().any(|(net, mask)| x & mask == *net)
            }
            IpAddr::V6(v) => {
                let x = u128::from(*v);
                self.v6.iter().any(|(net, mask)| x & mask == *net)
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

/// A set of networks already parsed (a configuration's list); host bits
/// are cleared, as when parsing.
impl FromIterator<IpNet> for NetSet {
    fn from_iter<I: IntoIterator<Item = IpNet>>(nets: I) -> Self {
        let mut set = NetSet::default();
        for net in nets {
            set.push(net.trunc());
        }
        set
    }
}

/// Everything that changes what the engine logs.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Zeek's `-C`.
    pub ignore_checksums: bool,
    pub ignore_checksums_nets: NetSet,
    pub likely_server_ports: PortSet,
    /// `Site::local_nets`; when empty, local_orig/local_resp are unset.
    pub local_nets: NetSet,
    pub analyzers: AnalyzerSet,
    /// Seed for connection uids (`None`: random).
    pub seed: Option<u64>,
    /// Upper bound on tracked connections; beyond it the oldest-idle
    /// connection is evicted (logged as if it timed out) and counted.
    pub max_connections: usize,

    pub tcp_inactivity_timeout: f64,
    pub udp_inactivity_timeout: f64,
    pub icmp_inactivity_timeout: f64,
    pub unknown_ip_inactivity_timeout: f64,
    pub tcp_syn_timeout: f64,
    pub tcp_session_timer: f64,
    pub tcp_connection_linger: f64,
    pub tcp_attempt_delay: f64,
    pub tcp_close_delay: f64,
    pub tcp_max_initial_window: u64,
    pub tcp_max_above_hole_without_any_acks: u64,
    pub tcp_excessive_data_without_further_acks: u64,
    pub report_gaps_for_partial: bool,
    pub detect_filtered_trace: bool,
    pub frag_timeout: f64,
    /// Fragmented datagrams in flight at most (the oldest is dropped).
    pub frag_max_datagrams: usize,
    /// Bytes one datagram's reassembly may hold (payload and bookkeeping).
    pub frag_datagram_bytes: usize,
    /// Bytes all datagrams in flight may hold together (the oldest are
    /// dropped). Not Zeek settings: Zeek bounds none of this, and a flood
    /// of lone fragments is cheap to send.
    pub frag_total_bytes: usize,
    /// Bytes one TCP connection's reassembly may hold (ranges and the
    /// out-of-order payload kept for protocol detection, both directions).
    pub tcp_reassembly_flow_bytes: usize,
    /// Bytes all TCP connections' reassembly may hold together. With the
    /// fragment budget, what hostile traffic can make one engine hold
    /// beyond its connection table.
    pub tcp_reassembly_total_bytes: usize,
    pub tunnel_max_depth: usize,
    pub tunnel_max_changes_per_connection: u32,
    pub tunnel_ip_tunnel_timeout: f64,
    pub tunnel_delay_teredo_confirmation: bool,
    pub tunnel_delay_gtp_confirmation: bool,
    pub tunnel_validate_vxlan_checksums: bool,
    pub dpd_ignore_violations_after: u64,
    /// Zeek's analyzer limits (`FTP::max_command_length`, `dns_max_queries`,
    /// ...): reaching one puts an `X` in history.
    pub analyzer_limits: AnalyzerLimits,
    /// `ConnKey::factory = ConnKey::CONNKEY_VLAN_FIVETUPLE`: outer and inner
    /// VLAN ids become part of the connection key (and of the logged id).
    pub conn_key_vlan: bool,
    /// `dns_session_timeout`: a UDP connection with the DNS analyzer ends
    /// this long after its last packet.
    pub dns_session_timeout: f64,
    /// `Conn::port_inactivity_timeouts` (21, 22, 23, 513/tcp: 1 h).
    pub long_inactivity_ports: Vec<u16>,
    pub long_inactivity_timeout: f64,
    /// Snapshots of connections still open (`None`: only final records,
    /// as Zeek logs them; `osprey replay` keeps it so).
    pub interim: Option<InterimConfig>,
    /// Copies of one packet captured on several interfaces (`any` on a
    /// node) count once, NAT twins folded (see `conn/node_view.rs`).
    pub node_view: super::node_view::NodeViewConfig,
}

/// When the engine snapshots open connections. Not a Zeek setting: a live
/// sensor cannot wait for a close or a 5-minute timeout to score a
/// connection, so it scores what it has so far. Times are packet time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InterimConfig {
    /// `interim_interval_secs`: at most one periodic snapshot per
    /// connection per this many seconds, and only after new packets.
    pub interval: f64,
    /// `attempt_timeout_secs`: a connection whose responder is still
    /// silent this long after its first packet is snapshotted then
    /// (unless nothing changed since an earlier snapshot, which would make
    /// the two identical).
    pub attempt_timeout: f64,
}

impl InterimConfig {
    /// Checks the settings. A non-finite time would be a timer that never
    /// comes due and, in the timer queue, holds back every timer after it;
    /// a zero interval would snapshot on every packet.
    pub fn validate(&self) -> Result<(), SettingError> {
        let bad = |name: &str, reason: &str| SettingError {
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        if !(self.interval.is_finite() && self.interval > 0.0) {
            return Err(bad("interim_interval_secs", "must be a positive number"));
        }
        if !(self.attempt_timeout.is_finite() && self.attempt_timeout >= 0.0) {
            return Err(bad("attempt_timeout_secs", "must be a number >= 0"));
        }
        Ok(())
    }

    /// These settings with any invalid one replaced by its default, for
    /// the engine, which cannot refuse its configuration.
    pub fn sanitized(self) -> Self {
        let d = InterimConfig::default();
        InterimConfig {
            interval: if self.interval.is_finite() && self.interval > 0.0 {
                self.interval
            } else {
                d.interval
            },
            attempt_timeout: if self.attempt_timeout.is_finite() && self.attempt_timeout >= 0.0 {
                self.attempt_timeout
            } else {
                d.attempt_timeout
            },
        }
    }
}

impl Default for InterimConfig {
    fn default() -> Self {
        // Five seconds matches Zeek's own attempt delay (`tcp_attempt_delay`)
        // and keeps one snapshot per connection per scoring round cheap.
        InterimConfig {
            interval: 5.0,
            attempt_timeout: 5.0,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            ignore_checksums: false,
            ignore_checksums_nets: NetSet::default(),
            likely_server_ports: PortSet::zeek_default(),
            local_nets: NetSet::zeek_private(),
            analyzers: AnalyzerSet::all(),
            seed: None,
            max_connections: 1_000_000,
            tcp_inactivity_timeout: 300.0,
            udp_inactivity_timeout: 60.0,
            icmp_inactivity_timeout: 60.0,
            unknown_ip_inactivity_timeout: 60.0,
            tcp_syn_timeout: 5.0,
            tcp_session_timer: 6.0,
            tcp_connection_linger: 5.0,
            tcp_attempt_delay: 5.0,
            tcp_close_delay: 5.0,
            tcp_max_initial_window: 16384,
            tcp_max_above_hole_without_any_acks: 16384,
            tcp_excessive_data_without_further_acks: 10 * 1024 * 1024,
            report_gaps_for_partial: false,
            detect_filtered_trace: false,
            frag_timeout: 300.0,
            frag_max_datagrams: FragLimits::default().max_datagrams,
            frag_datagram_bytes: FragLimits::default().datagram_bytes,
            frag_total_bytes: FragLimits::default().total_bytes,
            // Today's 64 KiB of payload per direction, plus ranges.
            tcp_reassembly_flow_bytes: 192 * 1024,
            tcp_reassembly_total_bytes: 64 * 1024 * 1024,
            tunnel_max_depth: 4,
            tunnel_max_changes_per_connection: 5,
            tunnel_ip_tunnel_timeout: 86400.0,
            tunnel_delay_teredo_confirmation: true,
            tunnel_delay_gtp_confirmation: false,
            tunnel_validate_vxlan_checksums: true,
            dpd_ignore_violations_after: 10 * 1024,
            analyzer_limits: AnalyzerLimits::default(),
            conn_key_vlan: false,
            dns_session_timeout: 10.0,
            long_inactivity_ports: vec![21, 22, 23, 513],
            long_inactivity_timeout: 3600.0,
            interim: None,
            node_view: super::node_view::NodeViewConfig::default(),
        }
    }
}

/// Error of `--set NAME=VALUE`, naming the setting.
#[derive(Debug, thiserror::Error)]
#[error("setting {name}: {reason}")]
pub struct SettingError {
    pub name: String,
    pub reason: String,
}

fn parse_interval(v: &str) -> Result<f64, String> {
    let v = v.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{v:?} is not an interval (e.g. 5min, 30 secs, 1.5)"))?;
    let mult = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" | "msec" | "msecs" => 0.001,
        "us" | "usec" | "usecs" => 0.000_001,
        "m" | "min" | "mins" => 60.0,
        "h" | "hr" | "hrs" => 3600.0,
        "d" | "day" | "days" => 86400.0,
        other => return Err(format!("unknown interval unit {other:?}")),
    };
    Ok(n * mult)
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.trim() {
        "T" | "t" | "true" | "yes" | "1" => Ok(true),
        "F" | "f" | "false" | "no" | "0" => Ok(false),
        other => Err(format!("{other:?} is not a boolean (T/F)")),
    }
}

fn parse_count(v: &str) -> Result<u64, String> {
    let v = v.trim().replace('_', "");
    if let Some((a, b)) = v.split_once('*') {
        let a: u64 = a
            .trim()
            .parse()
            .map_err(|_| format!("{v:?} is not a count"))?;
        let b: u64 = b
            .trim()
            .parse()
            .map_err(|_| format!("{v:?} is not a count"))?;
        return Ok(a.saturating_mul(b));
    }
    v.parse().map_err(|_| format!("{v:?} is not a count"))
}

impl EngineConfig {
    /// The fragment table's bounds.
    pub fn frag_limits(&self) -> FragLimits {
        FragLimits {
            timeout: self.frag_timeout,
            max_datagrams: self.frag_max_datagrams,
            datagram_bytes: self.frag_datagram_bytes,
            total_bytes: self.frag_total_bytes,
        }
    }

    /// Names accepted by [`EngineConfig::set`].
    pub const SETTINGS: &'static [&'static str] = &[
        "ignore_checksums",
        "ignore_checksums_nets",
        "likely_server_ports",
        "Site::local_nets",
        "tcp_inactivity_timeout",
        "udp_inactivity_timeout",
        "icmp_inactivity_timeout",
        "unknown_ip_inactivity_timeout",
        "tcp_SYN_timeout",
        "tcp_session_timer",
        "tcp_connection_linger",
        "tcp_attempt_delay",
        "tcp_close_delay",
        "tcp_max_initial_window",
        "tcp_max_above_hole_without_any_acks",
        "tcp_excessive_data_without_further_acks",
        "report_gaps_for_partial",
        "detect_filtered_trace",
        "frag_timeout",
        "frag_max_datagrams",
        "frag_datagram_bytes",
        "frag_total_bytes",
        "tcp_reassembly_flow_bytes",
        "tcp_reassembly_total_bytes",
        "Tunnel::max_depth",
        "Tunnel::max_changes_per_connection",
        "Tunnel::ip_tunnel_timeout",
        "Tunnel::delay_teredo_confirmation",
        "Tunnel::delay_gtp_confirmation",
        "Tunnel::validate_vxlan_checksums",
        "DPD::ignore_violations_after",
        "max_connections",
        "ConnKey::factory",
        "dns_session_timeout",
    ];

    /// Every name [`EngineConfig::set`] accepts: the engine's own, then the
    /// analyzer limits' ([`AnalyzerLimits::SETTINGS`]).
    pub fn settings() -> impl Iterator<Item = &'static str> {
        Self::SETTINGS
            .iter()
            .chain(AnalyzerLimits::SETTINGS)
            .copied()
    }

    /// Applies one `NAME=VALUE` or `NAME+=VALUE` (sets only) assignment.
    pub fn set(&mut self, assignment: &str) -> Result<(), SettingError> {
        let (name, add, value) = match assignment.split_once('=') {
            Some((n, v)) if n.ends_with('+') => (n.trim_end_matches('+').trim(), true, v.trim()),
            Some((n, v)) => (n.trim(), false, v.trim()),
            None => {
                return Err(SettingError {
                    name: assignment.to_owned(),
                    reason: "expected NAME=VALUE".into(),
                })
            }
        };
        let err = |reason: String| SettingError {
            name: name.to_owned(),
            reason,
        };
        let f = |v: &str| parse_interval(v).map_err(err);
        match name {
            "ignore_checksums" => self.ignore_checksums = parse_bool(value).map_err(err)?,
            "ignore_checksums_nets" => {
                if !add {
                    self.ignore_checksums_nets = NetSet::default();
                }
                self.ignore_checksums_nets.extend_from(value).map_err(err)?;
            }
            "likely_server_ports" => {
                if !add {
                    self.likely_server_ports = PortSet::new();
                }
                self.likely_server_ports
                    .extend(PortSet::parse_list(value).map_err(err)?);
            }
            "Site::local_nets" => {
                // Zeek still adds the private address space on top of a
                // redef'd local_nets (private_address_space_is_local = T).
                let mut nets = if add {
                    self.local_nets.clone()
                } else {
                    NetSet::zeek_private()
                };
                nets.extend_from(value).map_err(err)?;
                self.local_nets = nets;
            }
            "tcp_inactivity_timeout" => self.tcp_inactivity_timeout = f(value)?,
            "udp_inactivity_timeout" => self.udp_inactivity_timeout = f(value)?,
            "icmp_inactivity_timeout" => self.icmp_inactivity_timeout = f(value)?,
            "unknown_ip_inactivity_timeout" => self.unknown_ip_inactivity_timeout = f(value)?,
            "tcp_SYN_timeout" => self.tcp_syn_timeout = f(value)?,
            "tcp_session_timer" => self.tcp_session_timer = f(value)?,
            "tcp_connection_linger" => self.tcp_connection_linger = f(value)?,
            "tcp_attempt_delay" => self.tcp_attempt_delay = f(value)?,
            "tcp_close_delay" => self.tcp_close_delay = f(value)?,
            "tcp_max_initial_window" => {
                self.tcp_max_initial_window = parse_count(value).map_err(err)?
            }
            "tcp_max_above_hole_without_any_acks" => {
                self.tcp_max_above_hole_without_any_acks = parse_count(value).map_err(err)?
            }
            "tcp_excessive_data_without_further_acks" => {
                self.tcp_excessive_data_without_further_acks = parse_count(value).map_err(err)?
            }
            "report_gaps_for_partial" => {
                self.report_gaps_for_partial = parse_bool(value).map_err(err)?
            }
            "detect_filtered_trace" => {
                self.detect_filtered_trace = parse_bool(value).map_err(err)?
            }
            "frag_timeout" => self.frag_timeout = f(value)?,
            "frag_max_datagrams"
            | "frag_datagram_bytes"
            | "frag_total_bytes"
            | "tcp_reassembly_flow_bytes"
            | "tcp_reassembly_total_bytes" => {
                let n = parse_count(value).map_err(err)?;
                if n == 0 {
                    return Err(err("must be at least 1".into()));
                }
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                match name {
                    "frag_max_datagrams" => self.frag_max_datagrams = n,
                    "frag_datagram_bytes" => self.frag_datagram_bytes = n,
                    "frag_total_bytes" => self.frag_total_bytes = n,
                    "tcp_reassembly_flow_bytes" => self.tcp_reassembly_flow_bytes = n,
                    _ => self.tcp_reassembly_total_bytes = n,
                }
            }
            "Tunnel::max_depth" => {
                self.tunnel_max_depth = parse_count(value).map_err(err)? as usize
            }
            "Tunnel::max_changes_per_connection" => {
                let n = parse_count(value).map_err(err)?;
                if n > 255 {
                    return Err(err("must be at most 255".into()));
                }
                self.tunnel_max_changes_per_connection = n as u32;
            }
            "Tunnel::ip_tunnel_timeout" => self.tunnel_ip_tunnel_timeout = f(value)?,
            "Tunnel::delay_teredo_confirmation" => {
                self.tunnel_delay_teredo_confirmation = parse_bool(value).map_err(err)?
            }
            "Tunnel::delay_gtp_confirmation" => {
                self.tunnel_delay_gtp_confirmation = parse_bool(value).map_err(err)?
            }
            "Tunnel::validate_vxlan_checksums" => {
                self.tunnel_validate_vxlan_checksums = parse_bool(value).map_err(err)?
            }
            "DPD::ignore_violations_after" => {
                self.dpd_ignore_violations_after = parse_count(value).map_err(err)?
            }
            _ if AnalyzerLimits::SETTINGS.contains(&name) => {
                let n = parse_count(value).map_err(err)?;
                self.analyzer_limits.set(name, n);
            }
            "ConnKey::factory" => {
                self.conn_key_vlan = match value.trim_start_matches("ConnKey::") {
                    "vlan_fivetuple" | "CONNKEY_VLAN_FIVETUPLE" => true,
                    "fivetuple" | "CONNKEY_FIVETUPLE" => false,
                    other => {
                        return Err(err(format!(
                            "{other:?} is not a key factory (fivetuple, vlan_fivetuple)"
                        )))
                    }
                };
            }
            "dns_session_timeout" => self.dns_session_timeout = f(value)?,
            "max_connections" => {
                let n = parse_count(value).map_err(err)?;
                if n == 0 {
                    return Err(err("must be at least 1".into()));
                }
                self.max_connections = n as usize;
            }
            _ => {
                return Err(err(format!(
                    "unknown setting; known: {}",
                    Self::settings().collect::<Vec<_>>().join(", ")
                )))
            }
        }
        Ok(())
    }

    /// Parses `--analyzers`: `all`, `none`, or a comma list of names.
    pub fn parse_analyzers(s: &str) -> Result<AnalyzerSet, String> {
        match s.trim() {
            "all" => return Ok(AnalyzerSet::all()),
            "none" | "" => return Ok(AnalyzerSet::none()),
            _ => {}
        }
        let mut set = AnalyzerSet::none();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let a = Analyzer::from_name(name).ok_or_else(|| {
                let known: Vec<_> = Analyzer::ALL.iter().map(|a| a.name()).collect();
                format!("unknown analyzer {name:?}; known: {}", known.join(", "))
            })?;
            set.insert(a);
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_with_units() {
        assert_eq!(parse_interval("5min").unwrap(), 300.0);
        assert_eq!(parse_interval("1 hrs").unwrap(), 3600.0);
        assert_eq!(parse_interval("2.5").unwrap(), 2.5);
        assert!(parse_interval("soon").is_err());
    }

    #[test]
    fn set_names_the_bad_setting() {
        let mut c = EngineConfig::default();
        let e = c.set("tcp_close_delay=later").unwrap_err();
        assert_eq!(e.name, "tcp_close_delay");
        let e = c.set("no_such_thing=1").unwrap_err();
        assert!(e.reason.contains("unknown setting"));
    }

    #[test]
    fn sets_add_and_replace() {
        let mut c = EngineConfig::default();
        c.set("likely_server_ports+={40190/udp}").unwrap();
        assert!(c.likely_server_ports.contains(PortProto::Udp, 40190));
        assert!(c.likely_server_ports.contains(PortProto::Tcp, 80));
        c.set("likely_server_ports=22/tcp").unwrap();
        assert!(!c.likely_server_ports.contains(PortProto::Tcp, 80));
        c.set("ignore_checksums_nets+={192.168.0.0/16}").unwrap();
        assert!(c
            .ignore_checksums_nets
            .contains(&"192.168.1.1".parse().unwrap()));
    }

    #[test]
    fn ports_and_networks_parse_one_entry_each() {
        let p: Port = " 53/udp ".parse().unwrap();
        assert_eq!(
            p,
            Port {
                number: 53,
                proto: PortProto::Udp
            }
        );
        assert_eq!(p.to_string(), "53/udp");
        for (bad, why) in [
            ("80", "lacks its transport"),
            ("http/tcp", "not a port number"),
            ("70000/tcp", "not a port number"),
            ("80/sctp", "unknown transport"),
        ] {
            let e = bad.parse::<Port>().unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert_eq!(
            PortSet::parse_list("{80/tcp, 53/udp}").unwrap(),
            ["80/tcp".parse::<Port>().unwrap(), "53/udp".parse().unwrap()]
        );

        for (text, net) in [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("192.0.2.7", "192.0.2.7/32"),
            ("fd00::1", "fd00::1/128"),
            ("[fd00::]/8", "fd00::/8"),
            ("10.1.2.3/8", "10.1.2.3/8"),
        ] {
            let c: Cidr = text.parse().unwrap();
            assert_eq!(c.0, net.parse::<IpNet>().unwrap(), "{text}");
            assert_eq!(c.to_string().parse::<Cidr>().unwrap(), c, "{text}");
        }
        for bad in ["", "10.0.0.0/33", "10.0.0.300", "example.com"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
        let set: NetSet = ["10.1.2.3/8".parse::<IpNet>().unwrap()]
            .into_iter()
            .collect();
        assert_eq!(set, NetSet::parse("10.0.0.0/8").unwrap());
    }

    #[test]
    fn analyzer_limits_are_settings() {
        for name in AnalyzerLimits::SETTINGS {
            assert!(EngineConfig::settings().any(|s| s == *name), "{name}");
        }
        let mut c = EngineConfig::default();
        assert_eq!(c.analyzer_limits.ftp_max_command_length, 100);
        c.set("FTP::max_command_length=12").unwrap();
        c.set("dns_max_queries=3").unwrap();
        c.set("SSH::max_kexinit_mac_algorithms=104").unwrap();
        assert_eq!(c.analyzer_limits.ftp_max_command_length, 12);
        assert_eq!(c.analyzer_limits.dns_max_queries, 3);
        assert_eq!(c.analyzer_limits.ssh_max_kexinit[3], 104);
        let e = c.set("HTTP::max_pending_requests=many").unwrap_err();
        assert_eq!(e.name, "HTTP::max_pending_requests");
    }

    #[test]
    fn interim_settings_are_checked() {
        assert!(InterimConfig::default().validate().is_ok());
        let bad = InterimConfig {
            interval: f64::NAN,
            attempt_timeout: -1.0,
        };
        let e = bad.validate().unwrap_err();
        assert_eq!(e.name, "interim_interval_secs");
        assert_eq!(bad.sanitized(), InterimConfig::default());
    }

    #[test]
    fn default_local_nets_follow_zeek() {
        let n = NetSet::zeek_private();
        for a in [
            "10.1.2.3",
            "224.0.0.251",
            "239.1.1.1",
            "2001:0:1::1",
            "fe80::1",
        ] {
            assert!(n.contains(&a.parse().unwrap()), "{a}");
        }
        for a in ["8.8.8.8", "224.2.1.1", "ff02::1", "2a00::1"] {
            assert!(!n.contains(&a.parse().unwrap()), "{a}");
        }
    }
}
