//! Application-protocol identification for conn.log's `service` field.
//!
//! Zeek never takes `service` from the port alone: an analyzer is attached
//! (by port registration, by a DPD signature, or by an expected connection)
//! and the name enters `c$service` only when that analyzer confirms the
//! protocol (`analyzer_confirmation_info`, handled in
//! `scripts/base/frameworks/analyzer/dpd.zeek`); a later violation removes it.
//! This module reproduces that from payload: each connection owns a
//! [`ServiceDetector`] which the connection engine feeds with in-order TCP
//! stream data or UDP datagram payloads and which answers with
//! [`ServiceEvent`]s. The engine owns the ordered service list and applies the
//! dpd.zeek rules (violations ignored after 10 KiB, and so on).
//!
//! Layout: [`tree`] is Zeek's analyzer tree of one connection (analyzers
//! attached by port, the PIA doing DPD with its replay buffer, analyzers
//! it activated, and children such as SSL after STARTTLS); [`sig`] holds
//! the DPD signatures; [`line`] splits lines like Zeek's ContentLine
//! analyzer; one file per protocol holds the parser that decides
//! confirmation and violation.
//!
//! Tunnel services (vxlan, geneve, teredo, ayiya, gtpv1) are confirmed by the
//! decapsulation code in the engine, not here.
//!
//! Limits (per connection): the DPD buffer holds at most
//! [`DPD_BUFFER_SIZE`] bytes / [`DPD_MAX_PACKETS`] chunks as in Zeek, plus
//! the chunk that crossed the limit, of which at most
//! [`tree::MAX_DPD_STORE`] bytes per direction are kept; analyzer trees nest
//! at most [`tree::MAX_DEPTH`] levels; each parser states its own limits.

use std::net::IpAddr;

use smallvec::SmallVec;

mod asn1;
mod dce_rpc;
mod dhcp;
mod dns;
mod ftp;
mod gssapi;
mod http;
mod imap;
mod irc;
mod krb;
mod ldap;
mod limits;
mod line;
mod mime;
mod modbus;
mod ntp;
mod pop3;
mod quic;
mod sig;
mod smtp;
mod socks;
mod ssh;
mod ssl;
mod tree;

use tree::{Env, Tree};

pub use limits::{AnalyzerLimits, KexList};
pub use mime::MimeLimits;

use crate::decode::weird::Weird;

/// Zeek's `dpd_buffer_size`.
pub const DPD_BUFFER_SIZE: usize = 1024;
/// Zeek's `dpd_max_packets`.
pub const DPD_MAX_PACKETS: usize = 100;
/// `DPD::ignore_violations_after` (default): a violation further into the
/// connection than this neither removes the service nor disables the
/// analyzer; 0 never ignores one.
pub const IGNORE_VIOLATIONS_AFTER: u64 = 10 * 1024;
/// An analyzer that has seen this many bytes without confirming is given
/// up on where its protocol would have confirmed by then (a simplification
/// that bounds the work per connection).
pub const GIVE_UP_AFTER: u64 = 10 * 1024;
/// Zeek's `max_analyzer_violations`: later violations are not reported.
pub const MAX_ANALYZER_VIOLATIONS: u32 = 1000;

/// A protocol analyzer, named as Zeek names it in conn.log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Analyzer {
    Http,
    Dns,
    Ssl,
    Ssh,
    Ftp,
    FtpData,
    Smtp,
    Pop3,
    Imap,
    Irc,
    IrcDccData,
    Dhcp,
    Ntp,
    /// DTLS (loaded with the SSL scripts; logged as `dtls`).
    Dtls,
    Modbus,
    DceRpc,
    /// LDAP over TCP (`ldap_tcp`).
    LdapTcp,
    /// LDAP over UDP (`ldap_udp`).
    LdapUdp,
    /// NTLM, fed by LDAP binds.
    Ntlm,
    /// QUIC (it feeds SSL with the handshake in its Initial packets).
    Quic,
    /// SOCKS v4/v5 (the proxied stream goes to a new PIA).
    Socks,
    /// Kerberos over UDP, and inside GSSAPI tokens (`krb`).
    Krb,
    /// Kerberos over TCP (`krb_tcp`).
    KrbTcp,
    /// GSSAPI, fed by LDAP SASL binds.
    Gssapi,
}

impl Analyzer {
    pub const ALL: &'static [Analyzer] = &[
        Analyzer::Http,
        Analyzer::Dns,
        Analyzer::Ssl,
        Analyzer::Ssh,
        Analyzer::Ftp,
        Analyzer::FtpData,
        Analyzer::Smtp,
        Analyzer::Pop3,
        Analyzer::Imap,
        Analyzer::Irc,
        Analyzer::IrcDccData,
        Analyzer::Dhcp,
        Analyzer::Ntp,
        Analyzer::Dtls,
        Analyzer::Modbus,
        Analyzer::DceRpc,
        Analyzer::LdapTcp,
        Analyzer::LdapUdp,
        Analyzer::Ntlm,
        Analyzer::Quic,
        Analyzer::Socks,
        Analyzer::Krb,
        Analyzer::KrbTcp,
        Analyzer::Gssapi,
    ];

    /// The name Zeek logs in `service`.
    pub fn name(self) -> &'static str {
        match self {
            Analyzer::Http => "http",
            Analyzer::Dns => "dns",
            Analyzer::Ssl => "ssl",
            Analyzer::Ssh => "ssh",
            Analyzer::Ftp => "ftp",
            Analyzer::FtpData => "ftp-data",
            Analyzer::Smtp => "smtp",
            Analyzer::Pop3 => "pop3",
            Analyzer::Imap => "imap",
            Analyzer::Irc => "irc",
            Analyzer::IrcDccData => "irc-dcc-data",
            Analyzer::Dhcp => "dhcp",
            Analyzer::Ntp => "ntp",
            Analyzer::Dtls => "dtls",
            Analyzer::Modbus => "modbus",
            Analyzer::DceRpc => "dce_rpc",
            Analyzer::LdapTcp => "ldap_tcp",
            Analyzer::LdapUdp => "ldap_udp",
            Analyzer::Ntlm => "ntlm",
            Analyzer::Quic => "quic",
            Analyzer::Socks => "socks",
            Analyzer::Krb => "krb",
            Analyzer::KrbTcp => "krb_tcp",
            Analyzer::Gssapi => "gssapi",
        }
    }

    pub fn from_name(name: &str) -> Option<Analyzer> {
        Analyzer::ALL.iter().copied().find(|a| a.name() == name)
    }

    fn bit(self) -> u64 {
        1 << (self as u32)
    }

    /// Ports `Analyzer::register_for_ports` attaches this analyzer to
    /// (server and non-server ports), from each protocol's `main.zeek`.
    /// The analyzers registered for a responder port, in `ALL` order (the
    /// inverse of [`Analyzer::ports`], as a lookup that runs per
    /// connection).
    fn for_port(proto: L4, port: u16) -> &'static [Analyzer] {
        use Analyzer::*;
        match (proto, port) {
            (L4::Tcp, 1080) => &[Http, Socks],
            (L4::Tcp, 80 | 81 | 631 | 3128 | 8000 | 8080 | 8888) => &[Http],
            (L4::Tcp, 53) => &[Dns],
            (L4::Udp, 53 | 137 | 5353 | 5355) => &[Dns],
            (L4::Tcp, 443 | 465 | 563 | 585 | 614 | 636 | 989 | 990 | 992 | 993 | 995 | 5223) => {
                &[Ssl]
            }
            (L4::Udp, 443) => &[Dtls, Quic],
            (L4::Udp, 784 | 853) => &[Quic],
            (L4::Tcp, 22) => &[Ssh],
            (L4::Tcp, 21 | 2811) => &[Ftp],
            (L4::Tcp, 25 | 587) => &[Smtp],
            (L4::Tcp, 143) => &[Imap],
            (L4::Tcp, 6666..=6669) => &[Irc],
            (L4::Udp, 67 | 68 | 4011) => &[Dhcp],
            (L4::Udp, 123) => &[Ntp],
            (L4::Tcp, 502) => &[Modbus],
            (L4::Tcp, 135) => &[DceRpc],
            (L4::Tcp, 389 | 3268) => &[LdapTcp],
            (L4::Udp, 389) => &[LdapUdp],
            (L4::Udp, 88) => &[Krb],
            (L4::Tcp, 88) => &[KrbTcp],
            _ => &[],
        }
    }

    #[cfg(test)]
    fn ports(self, proto: L4) -> &'static [u16] {
        match (self, proto) {
            (Analyzer::Http, L4::Tcp) => &[80, 81, 631, 1080, 3128, 8000, 8080, 8888],
            (Analyzer::Dns, L4::Tcp) => &[53],
            (Analyzer::Dns, L4::Udp) => &[53, 137, 5353, 5355],
            (Analyzer::Ssl, L4::Tcp) => {
                &[443, 465, 563, 585, 614, 636, 989, 990, 992, 993, 995, 5223]
            }
            (Analyzer::Dtls, L4::Udp) => &[443],
            (Analyzer::Quic, L4::Udp) => &[443, 784, 853],
            (Analyzer::Socks, L4::Tcp) => &[1080],
            (Analyzer::Ssh, L4::Tcp) => &[22],
            (Analyzer::Ftp, L4::Tcp) => &[21, 2811],
            (Analyzer::Smtp, L4::Tcp) => &[25, 587],
            (Analyzer::Imap, L4::Tcp) => &[143],
            (Analyzer::Irc, L4::Tcp) => &[6666, 6667, 6668, 6669],
            (Analyzer::Dhcp, L4::Udp) => &[67, 68, 4011],
            (Analyzer::Ntp, L4::Udp) => &[123],
            (Analyzer::Modbus, L4::Tcp) => &[502],
            (Analyzer::DceRpc, L4::Tcp) => &[135],
            (Analyzer::LdapTcp, L4::Tcp) => &[389, 3268],
            (Analyzer::LdapUdp, L4::Udp) => &[389],
            (Analyzer::Krb, L4::Udp) => &[88],
            (Analyzer::KrbTcp, L4::Tcp) => &[88],
            _ => &[],
        }
    }
}

/// Analyzer violations reported, by analyzer: what Zeek writes to
/// analyzer.log, as counts, so malformed or foreign payloads on a
/// protocol's port are visible in the summary and in metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViolationCounts([u64; 64]);

impl Default for ViolationCounts {
    fn default() -> Self {
        ViolationCounts([0; 64])
    }
}

impl ViolationCounts {
    pub fn add(&mut self, a: Analyzer) {
        if let Some(n) = self.0.get_mut(a as usize) {
            *n += 1;
        }
    }
    pub fn get(&self, a: Analyzer) -> u64 {
        self.0.get(a as usize).copied().unwrap_or(0)
    }
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
    /// Non-zero counts, in [`Analyzer::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Analyzer, u64)> + '_ {
        Analyzer::ALL
            .iter()
            .map(|a| (*a, self.get(*a)))
            .filter(|(_, n)| *n > 0)
    }
}

/// The set of analyzers that are loaded (Zeek: which protocol scripts are
/// loaded; `zeek -b` loads none unless asked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnalyzerSet(u64);

impl AnalyzerSet {
    pub fn all() -> Self {
        AnalyzerSet(Analyzer::ALL.iter().fold(0, |m, a| m | a.bit()))
    }
    pub fn none() -> Self {
        AnalyzerSet(0)
    }
    pub fn contains(self, a: Analyzer) -> bool {
        self.0 & a.bit() != 0
    }
    /// Adds `a`, with the analyzers its Zeek scripts bring along: FTP
    /// schedules `ftp-data`, IRC `irc-dcc-data`, the SSL scripts also
    /// load DTLS, and `base/protocols/krb` registers both KRB and KRB_TCP.
    pub fn insert(&mut self, a: Analyzer) {
        self.0 |= a.bit();
        match a {
            Analyzer::Ftp => self.0 |= Analyzer::FtpData.bit(),
            Analyzer::Irc => self.0 |= Analyzer::IrcDccData.bit(),
            Analyzer::Ssl => self.0 |= Analyzer::Dtls.bit(),
            Analyzer::LdapTcp | Analyzer::LdapUdp => {
                self.0 |= Analyzer::LdapTcp.bit() | Analyzer::LdapUdp.bit()
            }
            Analyzer::Krb | Analyzer::KrbTcp => {
                self.0 |= Analyzer::Krb.bit() | Analyzer::KrbTcp.bit()
            }
            _ => {}
        }
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = Analyzer> {
        Analyzer::ALL
            .iter()
            .copied()
            .filter(move |a| self.contains(*a))
    }

    /// Whether `a` is available: its protocol script is loaded. DTLS comes
    /// with the SSL scripts.
    fn loaded(self, a: Analyzer) -> bool {
        self.contains(a) || (a == Analyzer::Dtls && self.contains(Analyzer::Ssl))
    }
}

/// Transport of the connection being analysed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L4 {
    Tcp,
    Udp,
}

/// What a detector is told about its connection when it is created
/// (after any flip the engine made at creation time).
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    pub proto: L4,
    pub orig_h: IpAddr,
    pub orig_p: u16,
    pub resp_h: IpAddr,
    pub resp_p: u16,
}

/// What a detector reports back to the engine.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ServiceEvent {
    /// The analyzer confirmed its protocol: its name joins `service`.
    Confirmed(Analyzer),
    /// The analyzer found a protocol violation: the engine removes the name
    /// if it was confirmed (dpd.zeek), unless more than 10 KiB were seen.
    Violation(Analyzer),
    /// The analyzer decided that the roles are the other way round
    /// (DNS reply seen first, NTP server-mode message from the originator).
    FlipRoles,
    /// The server refused the originator's credentials once more.
    AuthFailure,
    /// An analyzer hit one of Zeek's limits (`LimitReachedWeird`): the
    /// engine counts the weird and adds `X` to history once.
    LimitReached(Weird),
    /// Schedule an analyzer for a future connection (FTP data channels,
    /// IRC DCC): Zeek's `Analyzer::schedule_analyzer`. `orig_h` `None`
    /// is the wildcard originator.
    Expect {
        orig_h: Option<IpAddr>,
        resp_h: IpAddr,
        resp_p: u16,
        proto: L4,
        analyzer: Analyzer,
        timeout_secs: f64,
    },
}

// --- what parsers see ---------------------------------------------------

/// What a protocol parser reports while it parses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Note {
    Confirm,
    Violation,
    /// A confirmation of an analyzer this one feeds (NTLM inside LDAP).
    ConfirmAs(Analyzer),
    /// A violation of an analyzer this one feeds.
    ViolationAs(Analyzer),
    Flip,
    Expect {
        orig_h: Option<IpAddr>,
        resp_h: IpAddr,
        resp_p: u16,
        analyzer: Analyzer,
    },
    /// From now on the stream belongs to a child (STARTTLS, HTTP CONNECT
    /// or upgrade); the parser returns how much of the current chunk it
    /// used.
    Child(ChildKind),
    /// The server refused credentials (HTTP 401/407, FTP 530): what
    /// brute force is made of, seen without a model.
    AuthFailure,
    /// One of Zeek's analyzer limits was reached (see [`limits`]); push it
    /// before any violation it brings, which stops the analyzer.
    LimitReached(Weird),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChildKind {
    /// An SSL analyzer (STARTTLS and friends).
    Ssl,
    /// A new PIA doing DPD on the tunnelled stream (HTTP CONNECT, upgrade
    /// to an unknown protocol).
    Pia,
    /// Nothing further is analysed (upgrade to a protocol we do not know).
    Drop,
}

pub(crate) type Notes = SmallVec<[Note; 4]>;

/// The context a parser gets with each call.
pub(crate) struct Cx<'a> {
    pub info: &'a ConnInfo,
    /// TCP: the connection started without a handshake (`IsPartial`).
    pub partial: bool,
    notes: &'a mut Notes,
}

impl Cx<'_> {
    pub fn confirm(&mut self) {
        self.notes.push(Note::Confirm);
    }
    pub fn violation(&mut self) {
        self.notes.push(Note::Violation);
    }
    pub fn confirm_as(&mut self, a: Analyzer) {
        self.notes.push(Note::ConfirmAs(a));
    }
    pub fn violation_as(&mut self, a: Analyzer) {
        self.notes.push(Note::ViolationAs(a));
    }
    pub fn flip(&mut self) {
        self.notes.push(Note::Flip);
    }
    pub fn auth_failure(&mut self) {
        self.notes.push(Note::AuthFailure);
    }
    pub fn limit_reached(&mut self, w: Weird) {
        self.notes.push(Note::LimitReached(w));
    }
    pub fn expect(&mut self, orig_h: Option<IpAddr>, resp_h: IpAddr, resp_p: u16, a: Analyzer) {
        self.notes.push(Note::Expect {
            orig_h,
            resp_h,
            resp_p,
            analyzer: a,
        });
    }
    pub fn child(&mut self, kind: ChildKind) {
        self.notes.push(Note::Child(kind));
    }
    /// Confirmations reported so far in this call.
    pub fn confirmed_count(&self) -> usize {
        self.notes.iter().filter(|n| **n == Note::Confirm).count()
    }
}

/// A protocol parser: reproduces when one Zeek analyzer confirms or
/// reports a violation. Every method must be total on arbitrary input.
pub(crate) trait Parser: std::fmt::Debug + Send {
    /// In-order data of one direction. Returns how many bytes it used:
    /// all of them, unless it pushed [`Note::Child`], after which the rest
    /// goes to the child.
    fn deliver(&mut self, is_orig: bool, data: &[u8], cx: &mut Cx<'_>) -> usize;
    /// A content gap.
    fn undelivered(&mut self, _is_orig: bool, _len: u64, _cx: &mut Cx<'_>) {}
    /// End of one direction.
    fn eof(&mut self, _is_orig: bool, _cx: &mut Cx<'_>) {}
    /// True when no further input can change what this parser reports
    /// (`confirmed`: it confirmed already; `settled`: the connection is
    /// past `DPD::ignore_violations_after`, so violations no longer count;
    /// `seen`: bytes since this analyzer was attached, for giving up on one
    /// that does not confirm).
    fn finished(&self, confirmed: bool, settled: bool, seen: u64) -> bool {
        let _ = seen;
        confirmed && settled
    }
}

/// A parser for an analyzer with nothing to parse (scheduled file-data
/// analyzers, removed analyzers).
#[derive(Debug)]
pub(crate) struct Null;

impl Parser for Null {
    fn deliver(&mut self, _: bool, data: &[u8], _: &mut Cx<'_>) -> usize {
        data.len()
    }
    fn finished(&self, _: bool, _: bool, _: u64) -> bool {
        true
    }
}

/// A fresh parser for analyzer `a` on transport `proto`.
pub(crate) fn new_parser(a: Analyzer, info: &ConnInfo, limits: &AnalyzerLimits) -> Box<dyn Parser> {
    match a {
        Analyzer::Http => Box::new(http::Http::new().with_limits(limits)),
        Analyzer::Dns => Box::new(dns::Dns::new(info).with_limits(limits)),
        Analyzer::Ssl => Box::new(ssl::Ssl::new()),
        Analyzer::Dtls => Box::new(ssl::Dtls::new()),
        Analyzer::Ssh => Box::new(ssh::Ssh::new().with_limits(limits)),
        Analyzer::Ftp => Box::new(ftp::Ftp::new().with_limits(limits)),
        Analyzer::Smtp => Box::new(smtp::Smtp::new().with_limits(limits)),
        Analyzer::Pop3 => Box::new(pop3::Pop3::new().with_limits(limits)),
        Analyzer::Imap => Box::new(imap::Imap::new()),
        Analyzer::Irc => Box::new(irc::Irc::new()),
        Analyzer::Dhcp => Box::new(dhcp::Dhcp),
        Analyzer::Ntp => Box::new(ntp::Ntp::new()),
        Analyzer::Modbus => Box::new(modbus::Modbus::new()),
        Analyzer::DceRpc => Box::new(dce_rpc::DceRpc::new()),
        Analyzer::LdapTcp | Analyzer::LdapUdp => Box::new(ldap::Ldap::new(info.proto)),
        Analyzer::Quic => Box::new(quic::Quic::new()),
        Analyzer::Socks => Box::new(socks::Socks::new()),
        Analyzer::Krb => Box::new(krb::Krb),
        Analyzer::KrbTcp => Box::new(krb::KrbTcp::new()),
        Analyzer::FtpData | Analyzer::IrcDccData | Analyzer::Ntlm | Analyzer::Gssapi => {
            Box::new(Null)
        }
    }
}

// --- the detector -------------------------------------------------------

/// Per-connection protocol identification state.
///
/// The analyzer tree is built when the first payload (or gap) arrives:
/// most connections of a scan or flood never carry any, and they should
/// not pay for signature state.
#[derive(Debug)]
pub struct ServiceDetector {
    info: ConnInfo,
    /// The connection as it was when Zeek would have attached the
    /// port-registered analyzers (at creation, after any creation flip).
    root_info: ConnInfo,
    enabled: AnalyzerSet,
    scheduled: smallvec::SmallVec<[Analyzer; 2]>,
    tree: Option<Tree>,
    /// Bytes delivered or skipped (gaps) in both directions.
    size: u64,
    partial: bool,
    gap: [bool; 2],
    ignore_after: u64,
    limits: AnalyzerLimits,
    done: bool,
}

impl ServiceDetector {
    /// `scheduled` holds analyzers an earlier connection scheduled for this
    /// one (already confirmed by the engine through
    /// `scheduled_analyzer_applied`); when it is non-empty Zeek attaches no
    /// port-registered analyzers, but DPD signatures still run.
    pub fn new(info: ConnInfo, enabled: AnalyzerSet, scheduled: &[Analyzer]) -> Self {
        Self::with_root(info, info, enabled, scheduled)
    }

    /// A detector created after the connection began: `root_info` is the
    /// orientation the connection had when it was created (port analyzers
    /// attach by that responder port), `info` the current one.
    pub fn with_root(
        info: ConnInfo,
        root_info: ConnInfo,
        enabled: AnalyzerSet,
        scheduled: &[Analyzer],
    ) -> Self {
        ServiceDetector {
            info,
            root_info,
            enabled,
            scheduled: scheduled.iter().copied().collect(),
            tree: None,
            size: 0,
            partial: false,
            gap: [false; 2],
            ignore_after: IGNORE_VIOLATIONS_AFTER,
            limits: AnalyzerLimits::default(),
            done: enabled.is_empty(),
        }
    }

    /// In-order payload of one direction: reassembled TCP stream bytes, or
    /// one UDP datagram's payload.
    pub fn deliver(&mut self, is_orig: bool, data: &[u8], events: &mut Vec<ServiceEvent>) {
        if self.done || data.is_empty() {
            return;
        }
        self.size += data.len() as u64;
        let mut env = Env {
            info: &self.info,
            enabled: self.enabled,
            partial: self.partial,
            gap: self.gap,
            size: self.size,
            ignore_after: self.ignore_after,
            limits: &self.limits,
            events,
        };
        let tree = self.tree.get_or_insert_with(|| {
            Tree::root(&self.root_info, self.enabled, &self.scheduled, &self.limits)
        });
        tree.deliver(is_orig, data, &mut env);
        self.done = tree.is_done(self.size, self.ignore_after);
    }

    /// A content gap of `len` bytes in one direction of a TCP stream.
    pub fn undelivered(&mut self, is_orig: bool, len: u64, events: &mut Vec<ServiceEvent>) {
        if self.done || len == 0 {
            return;
        }
        // A gap's length comes from sequence numbers the sender chose.
        self.size = self.size.saturating_add(len);
        self.gap[usize::from(!is_orig)] = true;
        let mut env = Env {
            info: &self.info,
            enabled: self.enabled,
            partial: self.partial,
            gap: self.gap,
            size: self.size,
            ignore_after: self.ignore_after,
            limits: &self.limits,
            events,
        };
        let tree = self.tree.get_or_insert_with(|| {
            Tree::root(&self.root_info, self.enabled, &self.scheduled, &self.limits)
        });
        tree.undelivered(is_orig, len, &mut env);
        self.done = tree.is_done(self.size, self.ignore_after);
    }

    /// One direction of a TCP stream ended (FIN or RST processed).
    pub fn end_of_data(&mut self, is_orig: bool, events: &mut Vec<ServiceEvent>) {
        // Without any payload or gap there is nothing an analyzer could
        // decide at the end of the stream.
        if self.done || self.tree.is_none() {
            return;
        }
        let mut env = Env {
            info: &self.info,
            enabled: self.enabled,
            partial: self.partial,
            gap: self.gap,
            size: self.size,
            ignore_after: self.ignore_after,
            limits: &self.limits,
            events,
        };
        let tree = self.tree.get_or_insert_with(|| {
            Tree::root(&self.root_info, self.enabled, &self.scheduled, &self.limits)
        });
        tree.eof(is_orig, &mut env);
        self.done = tree.is_done(self.size, self.ignore_after);
    }

    /// TCP only: whether the connection is partial (Zeek's
    /// `TCPSessionAdapter::IsPartial`: its first packet from either side
    /// was not a plain SYN / SYN-ACK). Zeek's analyzers ignore the payload
    /// of partial connections and never report violations on them. The
    /// engine should call this whenever the flag changes (before
    /// delivering the packet's payload).
    pub fn set_partial(&mut self, partial: bool) {
        self.partial = partial;
    }

    /// `DPD::ignore_violations_after` when not the default 10 KiB (0:
    /// violations always count). Call right after [`Self::new`].
    pub fn set_ignore_violations_after(&mut self, bytes: u64) {
        self.ignore_after = bytes;
    }

    /// The analyzer limits (Zeek's defaults unless set). Call right after
    /// [`Self::new`], before any payload.
    pub fn set_limits(&mut self, limits: &AnalyzerLimits) {
        self.limits = *limits;
    }

    /// The engine swapped originator and responder.
    pub fn flip_roles(&mut self) {
        std::mem::swap(&mut self.info.orig_h, &mut self.info.resp_h);
        std::mem::swap(&mut self.info.orig_p, &mut self.info.resp_p);
    }

    /// True once no analyzer wants more data; the engine then stops
    /// delivering payload (and stops buffering out-of-order data for it).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Analyzers currently attached at the top level and not removed
    /// after a violation.
    pub fn attached(&self) -> Vec<Analyzer> {
        match &self.tree {
            Some(t) => t.attached(),
            None => Tree::port_attached(&self.root_info, self.enabled, &self.scheduled),
        }
    }

    /// Whether Zeek attaches analyzer `a` to a new connection by its
    /// responder port (without creating a detector).
    pub fn port_attaches(
        info: &ConnInfo,
        enabled: AnalyzerSet,
        scheduled: &[Analyzer],
        a: Analyzer,
    ) -> bool {
        Tree::port_attached(info, enabled, scheduled).contains(&a)
    }

    /// Whether analyzer `a` is attached at the top level (e.g. the DNS
    /// analyzer, whose UDP connections Zeek expires after
    /// `dns_session_timeout`).
    pub fn has_attached(&self, a: Analyzer) -> bool {
        self.attached().contains(&a)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod port_table_tests {
    use super::*;

    #[test]
    fn for_port_inverts_ports() {
        for proto in [L4::Tcp, L4::Udp] {
            for port in 0..=u16::MAX {
                let want: Vec<Analyzer> = Analyzer::ALL
                    .iter()
                    .copied()
                    .filter(|a| a.ports(proto).contains(&port))
                    .collect();
                assert_eq!(
                    Analyzer::for_port(proto, port),
                    want.as_slice(),
                    "{proto:?} {port}"
                );
            }
        }
    }
}
