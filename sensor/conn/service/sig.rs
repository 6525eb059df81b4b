//! The DPD signatures of the supported protocols (`dpd.sig` of each
//! `scripts/base/protocols/*`), matched the way Zeek's rule matcher does it
//! (`src/RuleMatcher.cc`):
//!
//! * a payload pattern is anchored at the start of the direction's stream
//!   (TCP: everything delivered so far in that direction while DPD still
//!   buffers; UDP: each datagram on its own) and matches as soon as some
//!   prefix of the data matches; `.` matches any byte, newlines included;
//! * `tcp-state originator|responder` restricts the direction;
//! * `requires-reverse-signature` needs the other signature to have fired
//!   in the opposite direction, in either order;
//! * a signature fires at most once per direction, and only `enable`
//!   activates an analyzer.
//!
//! Each pattern is written by hand as a small matcher returning
//! [`M::Match`], [`M::Dead`] (no continuation of the data can match) or
//! [`M::More`]. Patterns of the form `(|.*[\r\n])X` are tried at every line
//! start; the matcher keeps the first undecided line start in `resume` so
//! the data is not rescanned. Limits: the data handed in is bounded by the
//! caller (the DPD buffer); every matcher is linear in it, apart from the
//! IRC client patterns which scan the data once per candidate line start
//! until one of them is undecided.

use super::line::find_eol;
use super::{Analyzer, L4};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum M {
    Match,
    More,
    Dead,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Sig {
    HttpClient,
    HttpServer,
    FtpClient,
    FtpServer,
    IrcClient1,
    IrcClient2,
    IrcServerReply,
    IrcS2S1,
    IrcS2S2,
    Pop3Server,
    Pop3Client,
    SmtpClient,
    SmtpServer,
    SshClient,
    SshServer,
    TlsServer,
    TlsClient,
    DtlsClient,
    DhcpCookie,
    DceRpc,
    LdapClientTcp,
    LdapServerTcp,
    LdapClientUdp,
    LdapServerUdp,
    QuicInitial,
    QuicV2Initial,
    Socks4Client,
    Socks4Server,
    Socks4ReverseClient,
    Socks4ReverseServer,
    Socks5Client,
    Socks5Server,
    KrbUdpRequests,
    KrbUdpReplies,
    KrbTcpRequests,
    KrbTcpReplies,
}

pub(crate) const NSIGS: usize = 36;
/// Line starts remembered per direction.
const MAX_STARTS: usize = 1024;

/// Direction condition (`tcp-state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Any,
    Orig,
    Resp,
}

struct Def {
    sig: Sig,
    /// `ip-proto` (None: any transport).
    proto: Option<L4>,
    dir: Dir,
    requires_reverse: Option<Sig>,
    enable: Option<Analyzer>,
    /// The analyzer whose script loads this signature.
    owner: Analyzer,
    /// Tried at every line start (`(|.*[\r\n])...`) rather than anchored.
    line_start: bool,
    matcher: fn(&[u8], &[u16], &mut u16) -> M,
}

const TCP: Option<L4> = Some(L4::Tcp);
const UDP: Option<L4> = Some(L4::Udp);

static DEFS: [Def; NSIGS] = [
    Def {
        sig: Sig::HttpClient,
        proto: TCP,
        dir: Dir::Orig,
        requires_reverse: None,
        enable: Some(Analyzer::Http),
        owner: Analyzer::Http,
        line_start: false,
        matcher: http_client,
    },
    Def {
        sig: Sig::HttpServer,
        proto: TCP,
        dir: Dir::Resp,
        requires_reverse: None,
        enable: Some(Analyzer::Http),
        owner: Analyzer::Http,
        line_start: false,
        matcher: http_server,
    },
    Def {
        sig: Sig::FtpClient,
        proto: TCP,
        dir: Dir::Orig,
        requires_reverse: None,
        enable: None,
        owner: Analyzer::Ftp,
        line_start: true,
        matcher: ftp_client,
    },
    Def {
        sig: Sig::FtpServer,
        proto: TCP,
        dir: Dir::Resp,
        requires_reverse: Some(Sig::FtpClient),
        enable: Some(Analyzer::Ftp),
        owner: Analyzer::Ftp,
        line_start: false,
        matcher: ftp_server,
    },
    Def {
        sig: Sig::IrcClient1,
        proto: TCP,
        dir: Dir::Orig,
        requires_reverse: Some(Sig::IrcServerReply),
        enable: Some(Analyzer::Irc),
        owner: Analyzer::Irc,
        line_start: true,
        matcher: irc_client1,
    },
    Def {
        sig: Sig::IrcClient2,
        proto: TCP,
        dir: Dir::Orig,
        requires_reverse: Some(Sig::IrcServerReply),
        enable: Some(Analyzer::Irc),
        owner: Analyzer::Irc,
        line_start: true,
        matcher: irc_client2,
    },
    Def {
        sig: Sig::IrcServerReply,
        proto: TCP,
        dir: Dir::Resp,
        requires_reverse: None,
        enable: None,
        owner: Analyzer::Irc,
        line_start: true,
        matcher: irc_server_reply,
    },
    Def {
        sig: Sig::IrcS2S1,
        proto: TCP,
        dir: Dir::Any,
        requires_reverse: None,
        enable: None,
        owner: Analyzer::Irc,
        line_start: true,
        matcher: irc_server_to_server,
    },
    Def {
        sig: Sig::IrcS2S2,
        proto: TCP,
        dir: Dir::Any,
        requires_reverse: Some(Sig::IrcS2S1),
        enable: Some(Analyzer::Irc),
        owner: Analyzer::Irc,
        line_start: true,
        matcher: irc_server_to_server,
    },
    Def {
        sig: Sig::Pop3Server,
        proto: TCP,
        dir: Dir::Resp,
        requires_reverse: Some(Sig::Pop3Client),
        enable: Some(Analyzer::Pop3),
        owner: Analyzer::Pop3,
        line_start: false,
        matcher: pop3_server,
    },
    Def {
        sig: Sig::Pop3Client,
        proto: TCP,
        dir: Dir::Orig,
        requires_reverse: None,
        enable: None,
        owner: Analyzer::Pop3,
        line_start: true,
        matcher: pop3_client,
    },
    Def {
        sig: Sig::SmtpClient,
        proto: TCP,
        dir: Dir::Orig,
        requires_reverse: Some(Sig::SmtpServer),
        enable: Some(Analyzer::Smtp),
        owner: Analyzer::Smtp,
        line_start: true,
        matcher: smtp_client,
    },
    Def {
        sig: Sig::SmtpServer,
        proto: TCP,
        dir: Dir::Resp,
        requires_reverse: None,
        enable: None,
        owner: Analyzer::Smtp,
        line_start: false,
        matcher: smtp_server,
    },
    Def {
        sig: Sig::SshClient,
        proto: TCP,
        dir: Dir::Orig,
        requires_reverse: Some(Sig::SshServer),
        enable: Some(Analyzer::Ssh),
        owner: Analyzer::Ssh,
        line_start: false,
        matcher: ssh_banner,
    },
    Def {
        sig: Sig::SshServer,
        proto: TCP,
        dir: Dir::Resp,
        requires_reverse: None,
        enable: None,
        owner: Analyzer::Ssh,
        line_start: false,
        matcher: ssh_banner,
    },
    Def {
        sig: Sig::TlsServer,
        proto: TCP,
        dir: Dir::Resp,
        requires_reverse: None,
        enable: Some(Analyzer::Ssl),
        owner: Analyzer::Ssl,
        line_start: false,
        matcher: tls_server,
    },
    Def {
        sig: Sig::TlsClient,
        proto: TCP,
        dir: Dir::Orig,
        requires_reverse: None,
        enable: Some(Analyzer::Ssl),
        owner: Analyzer::Ssl,
        line_start: false,
        matcher: tls_client,
    },
    Def {
        sig: Sig::DtlsClient,
        proto: UDP,
        dir: Dir::Any,
        requires_reverse: None,
        enable: Some(Analyzer::Dtls),
        owner: Analyzer::Dtls,
        line_start: false,
        matcher: dtls_client,
    },
    Def {
        sig: Sig::DhcpCookie,
        proto: UDP,
        dir: Dir::Any,
        requires_reverse: None,
        enable: Some(Analyzer::Dhcp),
        owner: Analyzer::Dhcp,
        line_start: false,
        matcher: dhcp_cookie,
    },
    // No ip-proto, but DCE_RPC only attaches to TCP.
    Def {
        sig: Sig::DceRpc,
        proto: TCP,
        dir: Dir::Any,
        requires_reverse: None,
        enable: Some(Analyzer::DceRpc),
        owner: Analyzer::DceRpc,
        line_start: false,
        matcher: dce_rpc,
    },
    Def {
        sig: Sig::LdapClientTcp,
        proto: TCP,
        dir: Dir::Any,
        requires_reverse: None,
        enable: None,
        owner: Analyzer::LdapTcp,
        line_start: false,
        matcher: ldap_client,
    },
    Def {
        sig: Sig::LdapServerTcp,
        proto: TCP,
        dir: Dir::Any,
        requires_reverse: Some(Sig::LdapClientTcp),
        enable: Some(Analyzer::LdapTcp),
        owner: Analyzer::LdapTcp,
        line_start: false,
        matcher: ldap_server,
    },
    Def {
        sig: Sig::LdapClientUdp,
        proto: UDP,
        dir: Dir::Any,
        requires_reverse: None,
        enable: None,
        owner: Analyzer::LdapUdp,
        line_start: false,
        matcher: ldap_client,
    },
    Def {
        sig: Sig::LdapServerUdp,
        proto: UDP,
        dir: Dir::Any,
        requires_reverse: Some(Sig::LdapClientUdp),
        enable: Some(Analyzer::LdapUdp),
        owner: Analyzer::LdapUdp,
        line_start: false,
        matcher: ldap_server,
    },
    // scripts/base/protocols/quic/dpd.sig: a long-header Initial of
    // QUIC v1 (type bits 00) or v2 (type bits 01), whatever the
    // (protected) low bits.
    Def {
        sig: Sig::QuicInitial,
        proto: UDP,
        dir: Dir::Any,
        requires_reverse: None,
        enable: Some(Analyzer::Quic),
        owner: Analyzer::Quic,
        line_start: false,
        matcher: quic_initial,
    },
    Def {
        sig: Sig::QuicV2Initial,
        proto: UDP,
        dir: Dir::Any,
        requires_reverse: None,
        enable: Some(Analyzer::Quic),
        owner: Analyzer::Quic,
        line_start: false,
        matcher: quic_v2_initial,
    },
    // scripts/base/protocols/socks/dpd.sig: a client greeting answered by
    // a server reply; v4 in either orientation.
    Def {
        sig: Sig::Socks4Client,
        proto: TCP,
        dir: Dir::Orig,
        requires_reverse: None,
        enable: None,
        owner: Analyzer::Socks,
        line_start: false,
        matcher: socks4_client,
    },
    Def {
        sig: Sig::Socks4Server,
        proto: TCP,
        dir: Dir::Resp,
        requires_reverse: Some(Sig::Socks4Client),
        enable: Some(Analyzer::Socks),
        owner: Analyzer::Socks,
        line_start: false,
        matcher: socks4_server,
    },
    Def {
        sig: Sig::Socks4ReverseClient,
        proto: TCP,
        dir: Dir::Resp,
        requires_reverse: None,
        enable: None,
        owner: Analyzer::Socks,
        line_start: false,
        matcher: socks4_client,
    },
    Def {
        sig: Sig::Socks4ReverseServer,
        proto: TCP,
        dir: Dir::Orig,
        requires_reverse: Some(Sig::Socks4ReverseClient),
        enable: Some(Analyzer::Socks),
        owner: Analyzer::Socks,
        line_start: false,
        matcher: socks4_server,
    },
    Def {
        sig: Sig::Socks5Client,
        proto: TCP,
        dir: Dir::Orig,
        requires_reverse: None,
        enable: None,
        owner: Analyzer::Socks,
        line_start: false,
        matcher: socks5_client,
    },
    Def {
        sig: Sig::Socks5Server,
        proto: TCP,
        dir: Dir::Resp,
        requires_reverse: Some(Sig::Socks5Client),
        enable: Some(Analyzer::Socks),
        owner: Analyzer::Socks,
        line_start: false,
        matcher: socks5_server,
    },
    Def {
        sig: Sig::KrbUdpRequests,
        proto: UDP,
        dir: Dir::Any,
        requires_reverse: None,
        enable: Some(Analyzer::Krb),
        owner: Analyzer::Krb,
        line_start: false,
        matcher: krb_udp_request,
    },
    Def {
        sig: Sig::KrbUdpReplies,
        proto: UDP,
        dir: Dir::Any,
        requires_reverse: None,
        enable: Some(Analyzer::Krb),
        owner: Analyzer::Krb,
        line_start: false,
        matcher: krb_udp_reply,
    },
    Def {
        sig: Sig::KrbTcpRequests,
        proto: TCP,
        dir: Dir::Any,
        requires_reverse: None,
        enable: Some(Analyzer::KrbTcp),
        owner: Analyzer::KrbTcp,
        line_start: false,
        matcher: krb_tcp_request,
    },
    Def {
        sig: Sig::KrbTcpReplies,
        proto: TCP,
        dir: Dir::Any,
        requires_reverse: None,
        enable: Some(Analyzer::KrbTcp),
        owner: Analyzer::KrbTcp,
        line_start: false,
        matcher: krb_tcp_reply,
    },
];

fn def(s: Sig) -> &'static Def {
    // DEFS is indexed by the discriminant (checked by a unit test).
    &DEFS[s as usize % NSIGS]
}

/// Rule-matching state of one DPD context (both directions).
#[derive(Debug)]
pub(crate) struct Sigs {
    /// Signatures in play (loaded and applicable to the transport).
    active: u64,
    /// Pattern matched, per direction (0 = originator).
    pattern: [u64; 2],
    /// Rule fired, per direction.
    fired: [u64; 2],
    /// Pattern can no longer match, per direction.
    dead: [u64; 2],
    /// Resume points of the matchers (line-start index for line-start
    /// patterns).
    resume: [[u16; NSIGS]; 2],
    /// TCP: line starts of each direction's stream found so far, and how
    /// far it was scanned.
    starts: [Vec<u16>; 2],
    scanned: [usize; 2],
}

impl Default for Sigs {
    fn default() -> Self {
        Sigs {
            active: 0,
            pattern: [0; 2],
            fired: [0; 2],
            dead: [0; 2],
            resume: [[0; NSIGS]; 2],
            starts: Default::default(),
            scanned: [0; 2],
        }
    }
}

fn bit(s: Sig) -> u64 {
    1 << (s as u64)
}

impl Sigs {
    /// `loaded(a)` tells whether analyzer `a`'s script (and so its
    /// signatures) is loaded.
    pub fn new(proto: L4, loaded: impl Fn(Analyzer) -> bool) -> Self {
        let mut active = 0;
        for d in DEFS.iter() {
            if d.proto.is_none_or(|p| p == proto) && loaded(d.owner) {
                active |= bit(d.sig);
            }
        }
        Sigs {
            active,
            ..Default::default()
        }
    }

    /// True if no signature is in play.
    pub fn is_empty(&self) -> bool {
        self.active == 0
    }

    /// True while some pattern may still match in some direction (TCP).
    pub fn pending(&self) -> bool {
        let undecided = |d: usize| self.active & !(self.pattern[d] | self.dead[d]);
        undecided(0) != 0 || undecided(1) != 0
    }

    /// Runs the patterns over `data` (the direction's stream so far for
    /// TCP, one datagram for UDP) and appends the analyzers that fired
    /// rules enable, in firing order.
    pub fn matches(&mut self, proto: L4, is_orig: bool, data: &[u8], out: &mut Vec<Analyzer>) {
        let d = usize::from(!is_orig);
        let undecided = self.active & !(self.pattern[d] | self.dead[d]);
        if undecided == 0 {
            return;
        }
        let needs_starts = DEFS
            .iter()
            .any(|def| def.line_start && undecided & bit(def.sig) != 0);
        let mut udp_starts = Vec::new();
        let starts: &[u16] = if !needs_starts {
            &[]
        } else if proto == L4::Udp {
            udp_starts.push(0);
            scan_starts(data, 0, &mut udp_starts);
            &udp_starts
        } else {
            if self.starts[d].is_empty() {
                self.starts[d].push(0);
            }
            let from = self.scanned[d];
            if data.len() > from {
                scan_starts(data, from, &mut self.starts[d]);
                self.scanned[d] = data.len();
            }
            &self.starts[d]
        };
        let mut matched = 0u64;
        for def in DEFS.iter() {
            let b = bit(def.sig);
            if undecided & b == 0 {
                continue;
            }
            let slot = def.sig as usize % NSIGS;
            let mut resume = if proto == L4::Udp {
                0
            } else {
                self.resume[d][slot]
            };
            match (def.matcher)(data, starts, &mut resume) {
                M::Match => matched |= b,
                M::Dead if proto == L4::Tcp => self.dead[d] |= b,
                _ => {}
            }
            if proto == L4::Tcp {
                self.resume[d][slot] = resume;
            }
        }
        if matched == 0 {
            return;
        }
        for def in DEFS.iter() {
            if matched & bit(def.sig) != 0 {
                self.pattern[d] |= bit(def.sig);
                self.try_fire(def.sig, d, out);
            }
        }
    }

    fn try_fire(&mut self, s: Sig, d: usize, out: &mut Vec<Analyzer>) {
        let def = def(s);
        let b = bit(s);
        if self.fired[d] & b != 0 || self.pattern[d] & b == 0 {
            return;
        }
        match def.dir {
            Dir::Orig if d != 0 => return,
            Dir::Resp if d != 1 => return,
            _ => {}
        }
        if let Some(r) = def.requires_reverse {
            if self.fired[1 - d] & bit(r) == 0 {
                return;
            }
        }
        if self.fired[1 - d] & b != 0 {
            // The actions already ran for the other direction.
            return;
        }
        self.fired[d] |= b;
        if let Some(a) = def.enable {
            out.push(a);
        }
        for dep in DEFS.iter() {
            if dep.requires_reverse == Some(s) && self.active & bit(dep.sig) != 0 {
                self.try_fire(dep.sig, d, out);
                self.try_fire(dep.sig, 1 - d, out);
            }
        }
    }
}

// --- matcher helpers -------------------------------------------------

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Matches `lit` case-insensitively (ASCII) at `pos`.
fn lit_ci(data: &[u8], pos: usize, lit: &[u8]) -> M {
    for (i, l) in lit.iter().enumerate() {
        match data.get(pos + i) {
            None => return M::More,
            Some(c) if c.eq_ignore_ascii_case(l) => {}
            Some(_) => return M::Dead,
        }
    }
    M::Match
}

/// Matches `lit` exactly at `pos`.
fn lit(data: &[u8], pos: usize, lit: &[u8]) -> M {
    for (i, l) in lit.iter().enumerate() {
        match data.get(pos + i) {
            None => return M::More,
            Some(c) if c == l => {}
            Some(_) => return M::Dead,
        }
    }
    M::Match
}

/// Index of the first byte at or after `pos` that is not in `set`.
fn skip(data: &[u8], mut pos: usize, set: impl Fn(u8) -> bool) -> usize {
    while data.get(pos).is_some_and(|&c| set(c)) {
        pos += 1;
    }
    pos
}

/// Best of alternatives: any match wins, else more if any needs more.
fn any(results: impl IntoIterator<Item = M>) -> M {
    let mut r = M::Dead;
    for m in results {
        match m {
            M::Match => return M::Match,
            M::More => r = M::More,
            M::Dead => {}
        }
    }
    r
}

/// Tries `at` at the line starts `starts` (position 0 and after every CR
/// or LF) from index `*resume` on. The first undecided line start ends the
/// scan: later candidates of these patterns can only match if it does too,
/// or lie beyond the data.
fn line_starts(data: &[u8], starts: &[u16], resume: &mut u16, at: impl Fn(&[u8], usize) -> M) -> M {
    let from = usize::from(*resume);
    for (i, &pos) in starts.iter().enumerate().skip(from) {
        match at(data, usize::from(pos)) {
            M::Match => return M::Match,
            M::More => {
                *resume = u16::try_from(i).unwrap_or(u16::MAX);
                return M::More;
            }
            M::Dead => {}
        }
    }
    *resume = u16::try_from(starts.len()).unwrap_or(u16::MAX);
    M::More
}

/// Appends the line starts of `data[from..]` to `starts` (at most
/// [`MAX_STARTS`]).
fn scan_starts(data: &[u8], from: usize, starts: &mut Vec<u16>) {
    let mut pos = from;
    while starts.len() < MAX_STARTS {
        let Some(i) = data.get(pos..).and_then(find_eol) else {
            break;
        };
        pos += i + 1;
        match u16::try_from(pos) {
            Ok(p) => starts.push(p),
            Err(_) => break,
        }
    }
}

/// Finds `[\r\n]` at or after `from`.
fn newline_at_or_after(data: &[u8], from: usize) -> M {
    if data
        .get(from..)
        .is_some_and(|r| r.iter().any(|&c| c == b'\r' || c == b'\n'))
    {
        M::Match
    } else {
        M::More
    }
}

// --- patterns ---------------------------------------------------------

/// Request methods accepted by the HTTP client signature.
const HTTP_METHODS: &[&[u8]] = &[
    b"OPTIONS",
    b"GET",
    b"HEAD",
    b"POST",
    b"PUT",
    b"DELETE",
    b"QUERY",
    b"ACL",
    b"BASELINE-CONTROL",
    b"BIND",
    b"CHECKIN",
    b"CHECKOUT",
    b"CONNECT",
    b"COPY",
    b"LABEL",
    b"LINK",
    b"LOCK",
    b"MERGE",
    b"MKACTIVITY",
    b"MKCALENDAR",
    b"MKCOL",
    b"MKREDIRECTREF",
    b"MOVE",
    b"ORDERPATCH",
    b"PATCH",
    b"PROPFIND",
    b"PROPPATCH",
    b"REBIND",
    b"REPORT",
    b"SEARCH",
    b"TRACE",
    b"UNBIND",
    b"UNCHECKOUT",
    b"UNLINK",
    b"UNLOCK",
    b"UPDATE",
    b"VERSION-CONTROL",
    b"BCOPY",
    b"BDELETE",
    b"BMOVE",
    b"BPROPFIND",
    b"BPROPPATCH",
    b"NOTIFY",
    b"POLL",
    b"SUBSCRIBE",
    b"UNSUBSCRIBE",
    b"X-MS-ENUMATTS",
    b"MKWORKSPACE",
    b"RPC_IN_DATA",
    b"RPC_OUT_DATA",
];

/// Optional white space, then a known request method.
fn http_client(data: &[u8], _: &[u16], _: &mut u16) -> M {
    let p = skip(data, 0, is_space);
    if p >= data.len() {
        return M::More;
    }
    any(HTTP_METHODS.iter().map(|m| lit(data, p, m)))
}

/// `HTTP/` (any case) and a digit.
fn http_server(data: &[u8], _: &[u16], _: &mut u16) -> M {
    match lit_ci(data, 0, b"HTTP/") {
        M::Match => match data.get(5) {
            None => M::More,
            Some(c) if c.is_ascii_digit() => M::Match,
            Some(_) => M::Dead,
        },
        m => m,
    }
}

/// At a line start: spaces, `USER` (any case) and a space.
fn ftp_client(data: &[u8], starts: &[u16], resume: &mut u16) -> M {
    line_starts(data, starts, resume, |d, p| {
        let p = skip(d, p, |c| c == b' ');
        lit_ci(d, p, b"USER ")
    })
}

/// Greeting 120/220, then on a following line 230 or 331.
fn ftp_server(data: &[u8], _: &[u16], _: &mut u16) -> M {
    let p = skip(data, 0, |c| matches!(c, b'\n' | b'\r' | b' '));
    let code = any([lit(data, p, b"120"), lit(data, p, b"220")]);
    if code != M::Match {
        return code;
    }
    match data.get(p + 3) {
        None => return M::More,
        Some(c) if c.is_ascii_digit() => return M::Dead,
        Some(_) => {}
    }
    // `.*[\n\r] *(230|331)[^0-9]` somewhere after the greeting code.
    let mut i = p + 4;
    while let Some(e) = data.get(i..).and_then(find_eol) {
        let q = skip(data, i + e + 1, |c| c == b' ');
        if any([lit(data, q, b"230"), lit(data, q, b"331")]) == M::Match
            && data.get(q + 3).is_some_and(|c| !c.is_ascii_digit())
        {
            return M::Match;
        }
        i += e + 1;
    }
    // More data can always bring the second line.
    M::More
}

/// At a line start: spaces, `word` (any case), at least one space; returns
/// the position after the first space.
fn word_then_space(data: &[u8], p: usize, word: &[u8]) -> Result<usize, M> {
    let p = skip(data, p, |c| c == b' ');
    match lit_ci(data, p, word) {
        M::Match => {}
        m => return Err(m),
    }
    match data.get(p + word.len()) {
        None => Err(M::More),
        Some(b' ') => Ok(p + word.len() + 1),
        Some(_) => Err(M::Dead),
    }
}

/// `first +.+[\r\n]+ *second +` followed by `tail`: `after` is the
/// position after the first space following `first`.
fn two_lines(data: &[u8], after: usize, second: &[u8], tail: impl Fn(&[u8], usize) -> M) -> M {
    // The newline run may start no earlier than one byte after `after`.
    let mut k = after + 2;
    while k <= data.len() {
        let prev_nl = data.get(k - 1).is_some_and(|&c| c == b'\n' || c == b'\r');
        if prev_nl {
            if let Ok(q) = word_then_space(data, k, second) {
                if tail(data, q) == M::Match {
                    return M::Match;
                }
            }
        }
        k += 1;
    }
    M::More
}

/// `USER +.+[\n\r]+ *NICK +.*[\r\n]` at a line start.
fn irc_client1(data: &[u8], starts: &[u16], resume: &mut u16) -> M {
    line_starts(data, starts, resume, |d, p| {
        match word_then_space(d, p, b"USER") {
            Ok(after) => two_lines(d, after, b"NICK", newline_at_or_after),
            Err(m) => m,
        }
    })
}

/// `NICK +.+[\r\n]+ *USER +.+[\r\n]` at a line start.
fn irc_client2(data: &[u8], starts: &[u16], resume: &mut u16) -> M {
    line_starts(data, starts, resume, |d, p| {
        match word_then_space(d, p, b"NICK") {
            Ok(after) => two_lines(d, after, b"USER", |d, q| newline_at_or_after(d, q + 1)),
            Err(m) => m,
        }
    })
}

/// At a line start: an optional `:prefix `, three digits and a space.
fn irc_server_reply(data: &[u8], starts: &[u16], resume: &mut u16) -> M {
    line_starts(data, starts, resume, |d, p| {
        let digits = |q: usize| -> M {
            for i in 0..3 {
                match d.get(q + i) {
                    None => return M::More,
                    Some(c) if c.is_ascii_digit() => {}
                    Some(_) => return M::Dead,
                }
            }
            lit(d, q + 3, b" ")
        };
        let plain = digits(p);
        let prefixed = match d.get(p) {
            None => M::More,
            Some(b':') => {
                let e = skip(d, p + 1, |c| !matches!(c, b' ' | b'\n' | b'\r'));
                match d.get(e) {
                    None => M::More,
                    Some(b' ') if e > p + 1 => digits(e + 1),
                    Some(_) => M::Dead,
                }
            }
            Some(_) => M::Dead,
        };
        any([plain, prefixed])
    })
}

/// `SERVER +name +hops +:info[\r\n]` at a line start.
fn irc_server_to_server(data: &[u8], starts: &[u16], resume: &mut u16) -> M {
    line_starts(data, starts, resume, |d, p| {
        let q = match word_then_space(d, p, b"SERVER") {
            Ok(q) => q,
            Err(m) => return m,
        };
        let q = skip(d, q, |c| c == b' ');
        let name_end = skip(d, q, |c| c != b' ');
        if name_end == q {
            return if q >= d.len() { M::More } else { M::Dead };
        }
        let q = skip(d, name_end, |c| c == b' ');
        if q >= d.len() {
            return M::More;
        }
        let digits_end = skip(d, q, |c| c.is_ascii_digit());
        if digits_end == q {
            return M::Dead;
        }
        let q = skip(d, digits_end, |c| c == b' ');
        if q >= d.len() {
            return M::More;
        }
        if q == digits_end {
            return M::Dead;
        }
        match d.get(q) {
            Some(b':') => newline_at_or_after(d, q + 2),
            _ => M::Dead,
        }
    })
}

fn pop3_server(data: &[u8], _: &[u16], _: &mut u16) -> M {
    lit(data, 0, b"+OK")
}

/// At a line start: white space, then `USER `, `APOP `, `CAPA`, `AUTH` or
/// `STLS` (any case).
fn pop3_client(data: &[u8], starts: &[u16], resume: &mut u16) -> M {
    line_starts(data, starts, resume, |d, p| {
        let p = skip(d, p, is_space);
        if p >= d.len() {
            return M::More;
        }
        let with_space = |w: &[u8]| match lit_ci(d, p, w) {
            M::Match => match d.get(p + w.len()) {
                None => M::More,
                Some(&c) if is_space(c) => M::Match,
                Some(_) => M::Dead,
            },
            m => m,
        };
        any([
            with_space(b"USER"),
            with_space(b"APOP"),
            lit_ci(d, p, b"CAPA"),
            lit_ci(d, p, b"AUTH"),
            lit_ci(d, p, b"STLS"),
        ])
    })
}

/// At a line start: white space, then `HELO` or `EHLO` (any case).
fn smtp_client(data: &[u8], starts: &[u16], resume: &mut u16) -> M {
    line_starts(data, starts, resume, |d, p| {
        let p = skip(d, p, is_space);
        if p >= d.len() {
            return M::More;
        }
        any([lit_ci(d, p, b"HELO"), lit_ci(d, p, b"EHLO")])
    })
}

/// White space, `220`, then white space or `-`.
fn smtp_server(data: &[u8], _: &[u16], _: &mut u16) -> M {
    let p = skip(data, 0, is_space);
    if p >= data.len() {
        return M::More;
    }
    match lit(data, p, b"220") {
        M::Match => match data.get(p + 3) {
            None => M::More,
            Some(&c) if is_space(c) || c == b'-' => M::Match,
            Some(_) => M::Dead,
        },
        m => m,
    }
}

/// `SSH-1.` or `SSH-2.` (`SSH` in any case).
fn ssh_banner(data: &[u8], _: &[u16], _: &mut u16) -> M {
    match lit_ci(data, 0, b"SSH-") {
        M::Match => match data.get(4) {
            None => M::More,
            Some(b'1' | b'2') => lit(data, 5, b"."),
            Some(_) => M::Dead,
        },
        m => m,
    }
}

/// Checks `data[pos..]` against a byte template where `None` is any byte
/// and `Some(lo, hi)` an inclusive range.
fn template(data: &[u8], pos: usize, t: &[Option<(u8, u8)>]) -> M {
    for (i, want) in t.iter().enumerate() {
        let Some(&c) = data.get(pos + i) else {
            return M::More;
        };
        if let Some((lo, hi)) = want {
            if c < *lo || c > *hi {
                return M::Dead;
            }
        }
    }
    M::Match
}

const fn b(x: u8) -> Option<(u8, u8)> {
    Some((x, x))
}
const fn r(lo: u8, hi: u8) -> Option<(u8, u8)> {
    Some((lo, hi))
}
const ANY: Option<(u8, u8)> = None;

/// A TLS record with a ClientHello of version 3.0-3.3.
fn tls_client(data: &[u8], _: &[u16], _: &mut u16) -> M {
    template(
        data,
        0,
        &[
            b(0x16),
            b(0x03),
            r(0, 3),
            ANY,
            ANY,
            b(0x01),
            ANY,
            ANY,
            ANY,
            b(0x03),
            r(0, 3),
        ],
    )
}

/// An optional alert record, then a handshake record with a ServerHello
/// of version 3.0-3.4 or a TLS 1.3 draft.
fn tls_server(data: &[u8], _: &[u16], _: &mut u16) -> M {
    let hello = |p: usize| -> M {
        let head = template(
            data,
            p,
            &[b(0x16), b(0x03), r(0, 3), ANY, ANY, b(0x02), ANY, ANY, ANY],
        );
        if head != M::Match {
            return head;
        }
        any([
            template(data, p + 9, &[b(0x03), r(0, 4)]),
            template(data, p + 9, &[b(0x7f), r(0, 0x50)]),
        ])
    };
    let with_alert = match template(data, 0, &[b(0x15), b(0x03), r(0, 3), ANY, ANY, ANY, ANY]) {
        M::Match => hello(7),
        m => m,
    };
    any([hello(0), with_alert])
}

/// A DTLS 1.0/1.2 ClientHello record in epoch 0.
fn dtls_client(data: &[u8], _: &[u16], _: &mut u16) -> M {
    let mut t = [ANY; 27];
    t[0] = b(0x16);
    t[1] = b(0xfe);
    t[2] = Some((0xfd, 0xff));
    for z in t.iter_mut().take(10).skip(3) {
        *z = b(0);
    }
    t[13] = b(0x01);
    t[25] = b(0xfe);
    t[26] = Some((0xfd, 0xff));
    // [\xff\xfd] is two values, not a range.
    match template(data, 0, &t) {
        M::Match => {
            if matches!(data.get(2), Some(0xff | 0xfd)) && matches!(data.get(26), Some(0xff | 0xfd))
            {
                M::Match
            } else {
                M::Dead
            }
        }
        m => m,
    }
}

/// The DHCP magic cookie after the 236-byte BOOTP header.
fn dhcp_cookie(data: &[u8], _: &[u16], _: &mut u16) -> M {
    lit(data, 236, &[0x63, 0x82, 0x53, 0x63])
}

/// `\x05`, `\x00` or `\x01`, then 0x00-0x13.
fn dce_rpc(data: &[u8], _: &[u16], _: &mut u16) -> M {
    template(data, 0, &[b(5), r(0, 1), r(0, 0x13)])
}

/// A SEQUENCE with a one-byte length, message id 1 byte, a BindRequest.
fn ldap_client(data: &[u8], _: &[u16], _: &mut u16) -> M {
    template(data, 0, &[b(0x30), ANY, b(2), b(1), ANY, b(0x60)])
}

/// `^[\xC0-\xCF]\x00\x00\x00\x01`: a QUIC v1 Initial.
fn quic_initial(data: &[u8], _: &[u16], _: &mut u16) -> M {
    template(data, 0, &[r(0xc0, 0xcf), b(0), b(0), b(0), b(1)])
}

/// `^[\xD0-\xDF]\x6b\x33\x43\xcf`: a QUIC v2 Initial.
fn quic_v2_initial(data: &[u8], _: &[u16], _: &mut u16) -> M {
    template(
        data,
        0,
        &[r(0xd0, 0xdf), b(0x6b), b(0x33), b(0x43), b(0xcf)],
    )
}

/// `^\x04[\x01\x02].{0,32}\x00`: a SOCKS4 request with a user name of
/// at most 32 bytes.
fn socks4_client(data: &[u8], _: &[u16], _: &mut u16) -> M {
    match template(data, 0, &[b(4), r(1, 2)]) {
        M::Match => {}
        m => return m,
    }
    for i in 2..=34 {
        match data.get(i) {
            None => return M::More,
            Some(0) => return M::Match,
            Some(_) => {}
        }
    }
    M::Dead
}

/// `^\x00[\x5a\x5b\x5c\x5d]`: a SOCKS4 reply.
fn socks4_server(data: &[u8], _: &[u16], _: &mut u16) -> M {
    template(data, 0, &[b(0), r(0x5a, 0x5d)])
}

/// The SOCKS5 methods the signatures watch for (0x04 is unassigned).
fn socks5_method(c: u8) -> bool {
    matches!(c, 0..=3 | 5..=9)
}

/// `^\x05.[\x00-\x03\x05-\x09]`: a SOCKS5 greeting.
fn socks5_client(data: &[u8], _: &[u16], _: &mut u16) -> M {
    match template(data, 0, &[b(5), ANY, ANY]) {
        M::Match if data.get(2).is_some_and(|&c| socks5_method(c)) => M::Match,
        M::Match => M::Dead,
        m => m,
    }
}

/// `^\x05[\x00-\x03\x05-\x09\xff]`: a SOCKS5 method selection.
fn socks5_server(data: &[u8], _: &[u16], _: &mut u16) -> M {
    match template(data, 0, &[b(5), ANY]) {
        M::Match if data.get(1).is_some_and(|&c| socks5_method(c) || c == 0xff) => M::Match,
        M::Match => M::Dead,
        m => m,
    }
}

/// A SEQUENCE.
fn ldap_server(data: &[u8], _: &[u16], _: &mut u16) -> M {
    lit(data, 0, &[0x30])
}

/// The shape `dpd_krb_*` look for at `at`: one of `first`, 1-4 bytes,
/// a SEQUENCE tag, 1-4 bytes, then `tail` (pvno 5 and the start of the
/// msg-type element).
fn krb_shape(data: &[u8], at: usize, first: &[u8], tail: &[u8]) -> M {
    match data.get(at) {
        None => return M::More,
        Some(c) if first.contains(c) => {}
        Some(_) => return M::Dead,
    }
    any((1..=4).flat_map(|i| {
        let seq = at + 1 + i;
        (1..=4).map(move |j| match lit(data, seq, &[0x30]) {
            M::Match => lit(data, seq + 1 + j, tail),
            m => m,
        })
    }))
}

const KRB_REQ_TAIL: &[u8] = &[0xa1, 0x03, 0x02, 0x01, 0x05, 0xa2, 0x03, 0x02, 0x01];
const KRB_REP_TAIL: &[u8] = &[0xa0, 0x03, 0x02, 0x01, 0x05, 0xa1, 0x03, 0x02, 0x01];

/// An AS-REQ or TGS-REQ header.
fn krb_udp_request(data: &[u8], _: &[u16], _: &mut u16) -> M {
    krb_shape(data, 0, &[0x6a, 0x6c], KRB_REQ_TAIL)
}

/// An AS-REP, TGS-REP or KRB-ERROR header.
fn krb_udp_reply(data: &[u8], _: &[u16], _: &mut u16) -> M {
    krb_shape(data, 0, &[0x6b, 0x6d, 0x7e], KRB_REP_TAIL)
}

/// A request after the 4-byte record length.
fn krb_tcp_request(data: &[u8], _: &[u16], _: &mut u16) -> M {
    krb_shape(data, 4, &[0x6a, 0x6c], KRB_REQ_TAIL)
}

/// A reply after the 4-byte record length.
fn krb_tcp_reply(data: &[u8], _: &[u16], _: &mut u16) -> M {
    krb_shape(data, 4, &[0x6b, 0x6d, 0x7e], KRB_REP_TAIL)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: fn(&[u8], &[u16], &mut u16) -> M, data: &[u8]) -> M {
        let mut r = 0;
        let mut starts = vec![0];
        scan_starts(data, 0, &mut starts);
        f(data, &starts, &mut r)
    }

    #[test]
    fn table_is_indexed_by_discriminant() {
        for (i, d) in DEFS.iter().enumerate() {
            assert_eq!(d.sig as usize, i);
        }
    }

    #[test]
    fn http() {
        assert_eq!(run(http_client, b"  GET / HTTP/1.1\r\n"), M::Match);
        assert_eq!(run(http_client, b"GE"), M::More);
        assert_eq!(run(http_client, b"get /"), M::Dead);
        assert_eq!(run(http_server, b"HTTP/1.1 200"), M::Match);
        assert_eq!(run(http_server, b"http/x"), M::Dead);
        assert_eq!(run(http_server, b"HTT"), M::More);
    }

    #[test]
    fn ftp() {
        assert_eq!(run(ftp_client, b"SYST\r\n  user bob\r\n"), M::Match);
        assert_eq!(run(ftp_client, b"SYST\r\nUSERX"), M::More);
        assert_eq!(
            run(ftp_server, b"220 hello\r\n331 need password\r\n"),
            M::Match
        );
        assert_eq!(run(ftp_server, b"220-a\r\n220 b\r\n"), M::More);
        assert_eq!(run(ftp_server, b"2201"), M::Dead);
        assert_eq!(run(ftp_server, b"500 x"), M::Dead);
    }

    #[test]
    fn irc() {
        assert_eq!(run(irc_client1, b"USER a b c :d\r\nNICK joe\r\n"), M::Match);
        assert_eq!(run(irc_client1, b"USER a b c :d\r\nNICK joe"), M::More);
        assert_eq!(run(irc_client2, b"NICK joe\r\nUSER a b c :d\r\n"), M::Match);
        assert_eq!(run(irc_server_reply, b":irc.x 001 joe :hi\r\n"), M::Match);
        assert_eq!(run(irc_server_reply, b"NOTICE x\r\n020 y"), M::Match);
        assert_eq!(
            run(irc_server_to_server, b"SERVER irc.x 1 :desc\r\n"),
            M::Match
        );
    }

    #[test]
    fn mail() {
        assert_eq!(run(pop3_server, b"+OK ready"), M::Match);
        assert_eq!(run(pop3_client, b"CAPA\r\n"), M::Match);
        assert_eq!(run(pop3_client, b"user bob\r\n"), M::Match);
        assert_eq!(run(pop3_client, b"userx"), M::More);
        assert_eq!(run(smtp_client, b"EHLO me\r\n"), M::Match);
        assert_eq!(run(smtp_server, b"220-mx ESMTP"), M::Match);
        assert_eq!(run(smtp_server, b"554 no"), M::Dead);
    }

    #[test]
    fn binary() {
        assert_eq!(run(ssh_banner, b"SSH-2.0-OpenSSH"), M::Match);
        assert_eq!(run(ssh_banner, b"SSH-3.0"), M::Dead);
        let ch = [0x16, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3, 0];
        assert_eq!(run(tls_client, &ch), M::Match);
        let sh = [0x16, 3, 3, 0, 80, 2, 0, 0, 76, 3, 3];
        assert_eq!(run(tls_server, &sh), M::Match);
        let mut with_alert = vec![0x15, 3, 3, 0, 2, 2, 40];
        with_alert.extend_from_slice(&sh);
        assert_eq!(run(tls_server, &with_alert), M::Match);
        assert_eq!(run(tls_server, &[0x17, 3, 3]), M::Dead);
        let mut d = vec![0u8; 240];
        d[236..].copy_from_slice(&[0x63, 0x82, 0x53, 0x63]);
        assert_eq!(run(dhcp_cookie, &d), M::Match);
        assert_eq!(run(dhcp_cookie, &d[..100]), M::More);
    }

    #[test]
    fn krb() {
        // AS-REQ with a two-byte length and a one-byte SEQUENCE length.
        let req = [
            0x6a, 0x81, 0x90, 0x30, 0x81, 0x8d, 0xa1, 3, 2, 1, 5, 0xa2, 3, 2, 1, 10,
        ];
        assert_eq!(run(krb_udp_request, &req), M::Match);
        assert_eq!(run(krb_udp_request, &req[..10]), M::More);
        assert_eq!(run(krb_udp_reply, &req), M::Dead);
        let err = [0x7e, 0x5a, 0x30, 0x58, 0xa0, 3, 2, 1, 5, 0xa1, 3, 2, 1, 30];
        assert_eq!(run(krb_udp_reply, &err), M::Match);
        let mut framed = vec![0, 0, 0, 0x5c];
        framed.extend_from_slice(&err);
        assert_eq!(run(krb_tcp_reply, &framed), M::Match);
        assert_eq!(run(krb_tcp_request, &framed), M::Dead);
        assert_eq!(run(krb_udp_request, &[0x6a, 1, 2, 3, 4, 5, 6]), M::Dead);
    }

    #[test]
    fn rules_need_reverse_in_either_order() {
        let mut s = Sigs::new(L4::Tcp, |_| true);
        let mut out = Vec::new();
        s.matches(L4::Tcp, true, b"EHLO x\r\n", &mut out);
        assert!(out.is_empty());
        s.matches(L4::Tcp, false, b"220 mx\r\n", &mut out);
        assert_eq!(out, vec![Analyzer::Smtp]);
        let mut s = Sigs::new(L4::Tcp, |_| true);
        let mut out = Vec::new();
        s.matches(L4::Tcp, false, b"220 mx\r\n", &mut out);
        s.matches(L4::Tcp, true, b"EHLO x\r\n", &mut out);
        assert_eq!(out, vec![Analyzer::Smtp]);
        // Wrong direction never fires.
        let mut s = Sigs::new(L4::Tcp, |_| true);
        let mut out = Vec::new();
        s.matches(L4::Tcp, false, b"GET / HTTP/1.0\r\n", &mut out);
        assert!(out.is_empty());
    }
}
