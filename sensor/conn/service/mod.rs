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
//! Tunnel services (vxlan, geneve, teredo, ayiya, gtpv1) are confirmed by the
//! decapsulation code in the engine, not here.

use std::net::IpAddr;

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
        }
    }

    pub fn from_name(name: &str) -> Option<Analyzer> {
        Analyzer::ALL.iter().copied().find(|a| a.name() == name)
    }

    fn bit(self) -> u64 {
        1 << (self as u32)
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
    pub fn insert(&mut self, a: Analyzer) {
        self.0 |= a.bit();
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

/// Per-connection protocol identification state.
#[derive(Debug)]
pub struct ServiceDetector {
    info: ConnInfo,
    enabled: AnalyzerSet,
    done: bool,
}

impl ServiceDetector {
    /// `scheduled` holds analyzers an earlier connection scheduled for this
    /// one (already confirmed by the engine through
    /// `scheduled_analyzer_applied`); when it is non-empty Zeek attaches no
    /// port-registered analyzers, but DPD signatures still run.
    pub fn new(info: ConnInfo, enabled: AnalyzerSet, scheduled: &[Analyzer]) -> Self {
        let _ = scheduled;
        ServiceDetector {
            info,
            enabled,
            done: enabled.is_empty(),
        }
    }

    /// In-order payload of one direction: reassembled TCP stream bytes, or
    /// one UDP datagram's payload.
    pub fn deliver(&mut self, is_orig: bool, data: &[u8], events: &mut Vec<ServiceEvent>) {
        let _ = (is_orig, data, events, &self.info);
    }

    /// A content gap of `len` bytes in one direction of a TCP stream.
    pub fn undelivered(&mut self, is_orig: bool, len: u64, events: &mut Vec<ServiceEvent>) {
        let _ = (is_orig, len, events);
    }

    /// One direction of a TCP stream ended (FIN or RST processed).
    pub fn end_of_data(&mut self, is_orig: bool, events: &mut Vec<ServiceEvent>) {
        let _ = (is_orig, events);
    }

    /// The engine swapped originator and responder.
    pub fn flip_roles(&mut self) {
        std::mem::swap(&mut self.info.orig_h, &mut self.info.resp_h);
        std::mem::swap(&mut self.info.orig_p, &mut self.info.resp_p);
    }

    /// True once no analyzer wants more data; the engine then stops
    /// delivering payload (and stops buffering out-of-order data for it).
    pub fn is_done(&self) -> bool {
        self.done || self.enabled.is_empty()
    }
}
