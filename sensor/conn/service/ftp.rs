//! FTP (`src/analyzer/protocol/ftp/FTP.cc`, data channels from
//! `scripts/base/protocols/ftp/main.zeek` and `functions.bif`), attached on
//! 21 and 2811/tcp or by the `dpd_ftp_server` signature (with
//! `dpd_ftp_client` in the other direction).
//!
//! Lines end at LF or CRLF (the NVT support analyzer). Client: the first
//! word of a non-empty line, if it has 3 to 100 printable non-space
//! characters, is a command and confirms the analyzer (on any connection,
//! partial ones included). Server: a line that does not continue a
//! multi-line reply must start with a 3-digit code of at least 100 followed
//! by a space, a dash or the end of the line, else it is a violation.
//! `AUTH TLS` answered by 234 hands the stream to an SSL analyzer. `PORT`
//! and `EPRT` requests, and 227/229 replies to `PASV`/`EPSV`, schedule an
//! `ftp-data` analyzer for the announced address and port (5 minutes; PORT
//! and EPRT from the server's address, PASV and EPSV from the client's; an
//! EPSV without address means the server's).
//!
//! A command word longer than `FTP::max_command_length` (100; 0: no limit)
//! is ignored with its line; once the analyzer confirmed, it is also
//! `FTP_max_command_length_exceeded` and an `X` in history (`FTP.cc`).
//!
//! Limits: lines are kept up to [`LINE_KEEP`] bytes (a command word that
//! runs past them counts as long as the whole line); at most
//! [`MAX_PENDING`] unanswered commands are remembered.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::line::{LineSplitter, Owned};
use super::{Analyzer, AnalyzerLimits, ChildKind, Cx, Parser, GIVE_UP_AFTER};
use crate::decode::weird::Weird;

const LINE_KEEP: usize = 1024;
const MAX_PENDING: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Passive,
    Other,
}

#[derive(Debug)]
pub(crate) struct Ftp {
    lines: [LineSplitter; 2],
    pending_reply: u16,
    auth_tls: bool,
    pending: VecDeque<Pending>,
    scratch: Vec<u8>,
    /// `FTP::max_command_length` (0: none).
    max_command_length: u64,
    /// This analyzer confirmed (`AnalyzerConfirmed`): only then is a long
    /// command a weird.
    confirmed: bool,
}

impl Ftp {
    pub fn new() -> Self {
        Ftp {
            lines: [
                LineSplitter::lf_only(LINE_KEEP),
                LineSplitter::lf_only(LINE_KEEP),
            ],
            pending_reply: 0,
            auth_tls: false,
            pending: VecDeque::new(),
            scratch: Vec::new(),
            max_command_length: AnalyzerLimits::default().ftp_max_command_length,
            confirmed: false,
        }
    }

    pub fn with_limits(mut self, limits: &AnalyzerLimits) -> Self {
        self.max_command_length = limits.ftp_max_command_length;
        self
    }

    /// One client line; `full_len` is its length before [`LINE_KEEP`] cut
    /// it.
    fn request(&mut self, line: &[u8], full_len: usize, cx: &mut Cx<'_>) {
        let start = skip_ws(line, 0);
        let end = line
            .iter()
            .skip(start)
            .position(|&c| c == 0 || c.is_ascii_whitespace())
            .map_or(line.len(), |p| start + p);
        let cmd = line.get(start..end).unwrap_or(&[]);
        if cmd.len() < 3 || !cmd.iter().all(|c| c.is_ascii_graphic()) {
            return;
        }
        // A word that reaches the cut may go on to the end of the line.
        let cmd_len = if end == line.len() {
            full_len.saturating_sub(start).max(cmd.len())
        } else {
            cmd.len()
        };
        if self.max_command_length > 0 && cmd_len as u64 > self.max_command_length {
            if self.confirmed {
                cx.limit_reached(Weird::FtpMaxCommandLengthExceeded);
            }
            return;
        }
        let arg = line.get(skip_ws(line, end)..).unwrap_or(&[]);
        cx.confirm();
        self.confirmed = true;
        let upper = cmd.to_ascii_uppercase();
        if b"AUTH".starts_with(&upper) || upper == b"AUTH" {
            self.auth_tls = arg == b"TLS";
        }
        // ftp_request in main.zeek.
        let data = match upper.as_slice() {
            b"PORT" => parse_port(arg).map(|(h, p)| (IpAddr::V4(h), p)),
            b"EPRT" => parse_eftp(arg),
            _ => None,
        };
        if let Some((h, p)) = data {
            cx.expect(Some(cx.info.resp_h), h, p, Analyzer::FtpData);
        }
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
        }
        let kind = if upper == b"PASV" || upper == b"EPSV" {
            Pending::Passive
        } else {
            Pending::Other
        };
        self.pending.push_back(kind);
    }

    /// Returns true when the stream now belongs to an SSL child.
    fn reply(&mut self, line: &[u8], cx: &mut Cx<'_>) -> bool {
        let digits = line.get(..3).filter(|d| d.iter().all(u8::is_ascii_digit));
        let mut code = digits.map_or(0, |d| {
            d.iter().fold(0u16, |a, &c| a * 10 + u16::from(c - b'0'))
        });
        let sep = line.get(3).copied();
        let cont;
        let msg_at;
        if self.pending_reply != 0 {
            if code == self.pending_reply && sep == Some(b' ') {
                self.pending_reply = 0;
                cont = false;
                msg_at = skip_ws(line, 3);
            } else {
                cont = true;
                code = 0;
                msg_at = 0;
            }
        } else {
            if code == 0 || code < 100 {
                cx.violation();
                return false;
            }
            match sep {
                Some(b'-') => {
                    self.pending_reply = code;
                    cont = true;
                    msg_at = skip_ws(line, 4);
                }
                Some(b' ') | None => {
                    cont = false;
                    msg_at = skip_ws(line, 3);
                }
                Some(_) => {
                    cx.violation();
                    return false;
                }
            }
        }
        if code == 234 && self.auth_tls {
            return true;
        }
        if cont {
            return false;
        }
        if code == 530 {
            cx.auth_failure();
        }
        // ftp_reply in main.zeek: match the reply with a pending command.
        let msg = line.get(msg_at..).unwrap_or(&[]);
        if code == 227 || code == 229 {
            if let Some(i) = self.pending.iter().position(|p| *p == Pending::Passive) {
                self.pending.remove(i);
                let data = if code == 227 {
                    parse_pasv(msg).map(|(h, p)| (IpAddr::V4(h), p))
                } else {
                    let inner = match msg.iter().position(|&c| c == b'(') {
                        Some(i) => msg.get(i + 1..).unwrap_or(&[]),
                        None => msg,
                    };
                    parse_eftp(inner)
                };
                if let Some((mut h, p)) = data {
                    if code == 229 && h == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
                        h = cx.info.resp_h;
                    }
                    cx.expect(Some(cx.info.orig_h), h, p, Analyzer::FtpData);
                }
                return false;
            }
        }
        self.pending.pop_front();
        false
    }
}

fn skip_ws(l: &[u8], mut i: usize) -> usize {
    while matches!(l.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

/// `%d` of sscanf: optional white space, sign, digits.
fn scan_int(s: &[u8], pos: &mut usize) -> Option<i64> {
    while s.get(*pos).is_some_and(|c| c.is_ascii_whitespace()) {
        *pos += 1;
    }
    let neg = match s.get(*pos) {
        Some(b'-') => {
            *pos += 1;
            true
        }
        Some(b'+') => {
            *pos += 1;
            false
        }
        _ => false,
    };
    let start = *pos;
    let mut v: i64 = 0;
    while let Some(c) = s.get(*pos).filter(|c| c.is_ascii_digit()) {
        v = v.saturating_mul(10).saturating_add(i64::from(c - b'0'));
        *pos += 1;
    }
    (*pos > start).then_some(if neg { -v } else { v })
}

/// `parse_port`: six comma-separated numbers 0-255.
fn parse_port(s: &[u8]) -> Option<(Ipv4Addr, u16)> {
    if s.len() < 11 {
        return None;
    }
    let mut pos = 0;
    let mut b = [0u8; 6];
    for (i, slot) in b.iter_mut().enumerate() {
        if i > 0 {
            if s.get(pos) != Some(&b',') {
                return None;
            }
            pos += 1;
        }
        let v = scan_int(s, &mut pos)?;
        *slot = u8::try_from(v).ok()?;
    }
    Some((
        Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        u16::from(b[4]) << 8 | u16::from(b[5]),
    ))
}

/// `parse_ftp_pasv`: the numbers after `(`, after `PORT`, or around the
/// first comma.
fn parse_pasv(s: &[u8]) -> Option<(Ipv4Addr, u16)> {
    let start = if let Some(i) = s.iter().position(|&c| c == b'(') {
        i + 1
    } else if let Some(i) = s.windows(4).position(|w| w == b"PORT") {
        i + 5
    } else {
        let i = s.iter().position(|&c| c == b',')?;
        let mut j = i;
        while j > 0 && s.get(j - 1).is_some_and(u8::is_ascii_digit) {
            j -= 1;
        }
        j
    };
    parse_port(s.get(start..)?)
}

/// strtol: optional white space and sign, digits (none: 0 at `pos`).
fn strtol(s: &[u8], pos: &mut usize) -> i64 {
    let save = *pos;
    match scan_int(s, pos) {
        Some(v) => v,
        None => {
            *pos = save;
            0
        }
    }
}

/// `parse_eftp` (EPRT arguments, EPSV replies): `<d>proto<d>addr<d>port<d>`.
fn parse_eftp(s: &[u8]) -> Option<(IpAddr, u16)> {
    let mut pos = skip_ws_all(s, 0);
    let &delim = s.get(pos)?;
    pos += 1;
    let _proto = strtol(s, &mut pos);
    if s.get(pos) != Some(&delim) {
        return None;
    }
    pos += 1;
    let mut addr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    if let Some(&c) = s.get(pos) {
        if c != delim {
            let e = s
                .iter()
                .skip(pos)
                .position(|&c| c == delim)
                .map_or(s.len(), |i| pos + i);
            let text = std::str::from_utf8(s.get(pos..e)?).ok()?;
            addr = text.parse().ok()?;
            pos = e;
        }
    }
    let d = s.iter().skip(pos).position(|&c| c == delim)?;
    pos += d + 1;
    let port = strtol(s, &mut pos);
    if s.get(pos) != Some(&delim) {
        return None;
    }
    let port = u16::try_from(port).ok()?;
    Some((addr, port))
}

fn skip_ws_all(s: &[u8], mut i: usize) -> usize {
    while s.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

impl Parser for Ftp {
    fn deliver(&mut self, is_orig: bool, data: &[u8], cx: &mut Cx<'_>) -> usize {
        let d = usize::from(!is_orig);
        let mut rest = data;
        let mut line = std::mem::take(&mut self.scratch);
        let mut used = data.len();
        while let Some(piece) = self.lines[d].next_owned(&mut rest, &mut line) {
            let Owned::Line(len) = piece else {
                continue;
            };
            if len == 0 {
                continue;
            }
            if is_orig {
                self.request(&line, len, cx);
            } else if self.reply(&line, cx) {
                cx.child(ChildKind::Ssl);
                used = data.len() - rest.len();
                break;
            }
        }
        self.scratch = line;
        used
    }

    fn finished(&self, confirmed: bool, _settled: bool, seen: u64) -> bool {
        // Data channels can be announced at any time.
        !confirmed && seen > GIVE_UP_AFTER
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::service::{ConnInfo, Note, Notes, L4};

    fn feed(f: &mut Ftp, is_orig: bool, data: &[u8]) -> (Notes, usize) {
        let i = ConnInfo {
            proto: L4::Tcp,
            orig_h: "10.0.0.1".parse().unwrap(),
            orig_p: 40000,
            resp_h: "10.0.0.2".parse().unwrap(),
            resp_p: 21,
        };
        let mut notes = Notes::new();
        let mut cx = Cx {
            info: &i,
            partial: false,
            notes: &mut notes,
        };
        let n = f.deliver(is_orig, data, &mut cx);
        (notes, n)
    }

    #[test]
    fn session() {
        let mut f = Ftp::new();
        assert!(feed(&mut f, false, b"220-Welcome\r\n220 ready\r\n")
            .0
            .is_empty());
        assert_eq!(
            feed(&mut f, true, b"USER ftp\r\n").0.as_slice(),
            &[Note::Confirm]
        );
        assert!(feed(&mut f, false, b"331 pass?\r\n").0.is_empty());
        let (n, _) = feed(&mut f, true, b"PORT 10,0,0,1,4,31\r\n");
        assert_eq!(
            n.as_slice(),
            &[
                Note::Confirm,
                Note::Expect {
                    orig_h: Some("10.0.0.2".parse().unwrap()),
                    resp_h: "10.0.0.1".parse().unwrap(),
                    resp_p: 1055,
                    analyzer: Analyzer::FtpData
                }
            ]
        );
        feed(&mut f, false, b"200 ok\r\n");
        feed(&mut f, true, b"EPSV\r\n");
        let (n, _) = feed(
            &mut f,
            false,
            b"229 Entering Extended Passive Mode (|||6446|)\r\n",
        );
        assert_eq!(
            n.as_slice(),
            &[Note::Expect {
                orig_h: Some("10.0.0.1".parse().unwrap()),
                resp_h: "10.0.0.2".parse().unwrap(),
                resp_p: 6446,
                analyzer: Analyzer::FtpData
            }]
        );
        feed(&mut f, true, b"PASV\r\n");
        let (n, _) = feed(
            &mut f,
            false,
            b"227 Entering Passive Mode (10,0,0,3,200,1).\r\n",
        );
        assert!(matches!(n.as_slice(), [Note::Expect { resp_p: 51201, .. }]));
    }

    #[test]
    fn violations_and_tls() {
        let mut f = Ftp::new();
        assert_eq!(
            feed(&mut f, false, b"hello\r\n").0.as_slice(),
            &[Note::Violation]
        );
        let mut f = Ftp::new();
        assert_eq!(
            feed(&mut f, false, b"2201\r\n").0.as_slice(),
            &[Note::Violation]
        );
        let mut f = Ftp::new();
        feed(&mut f, true, b"AUTH TLS\r\n");
        let (n, used) = feed(&mut f, false, b"234 go\r\nrest");
        assert_eq!(n.as_slice(), &[Note::Child(ChildKind::Ssl)]);
        assert_eq!(used, 8);
    }

    #[test]
    fn long_command_is_a_limit_once_confirmed() {
        let long = format!("{}\r\n", "A".repeat(101));
        // Before confirmation: ignored, no weird (FTP.cc).
        let mut f = Ftp::new();
        assert!(feed(&mut f, true, long.as_bytes()).0.is_empty());
        assert_eq!(
            feed(&mut f, true, b"USER x\r\n").0.as_slice(),
            &[Note::Confirm]
        );
        assert_eq!(
            feed(&mut f, true, long.as_bytes()).0.as_slice(),
            &[Note::LimitReached(Weird::FtpMaxCommandLengthExceeded)]
        );
        // Exactly at the limit is a command.
        let at = format!("{} x\r\n", "B".repeat(100));
        assert_eq!(
            feed(&mut f, true, at.as_bytes()).0.as_slice(),
            &[Note::Confirm]
        );
        // A word running past what is kept of the line still counts whole.
        let huge = format!("{}\r\n", "C".repeat(LINE_KEEP + 50));
        assert_eq!(
            feed(&mut f, true, huge.as_bytes()).0.as_slice(),
            &[Note::LimitReached(Weird::FtpMaxCommandLengthExceeded)]
        );
    }

    #[test]
    fn command_length_limit_is_settable() {
        let mut l = AnalyzerLimits::default();
        l.set("FTP::max_command_length", 4);
        let mut f = Ftp::new().with_limits(&l);
        assert_eq!(
            feed(&mut f, true, b"USER x\r\n").0.as_slice(),
            &[Note::Confirm]
        );
        assert_eq!(
            feed(&mut f, true, b"SITE x\r\nSTORE y\r\n").0.as_slice(),
            &[
                Note::Confirm,
                Note::LimitReached(Weird::FtpMaxCommandLengthExceeded)
            ]
        );
        // 0 disables the limit.
        l.set("FTP::max_command_length", 0);
        let mut f = Ftp::new().with_limits(&l);
        let long = format!("{}\r\n", "A".repeat(500));
        assert_eq!(
            feed(&mut f, true, long.as_bytes()).0.as_slice(),
            &[Note::Confirm]
        );
    }

    #[test]
    fn parsers() {
        assert_eq!(
            parse_port(b"1,2,3,4,5,6"),
            Some((Ipv4Addr::new(1, 2, 3, 4), 1286))
        );
        assert_eq!(parse_port(b"1,2,3,4,5,600"), None);
        assert_eq!(
            parse_eftp(b"|2|::1|5282|"),
            Some(("::1".parse().unwrap(), 5282))
        );
        assert_eq!(
            parse_eftp(b"|1|132.235.1.2|6275|"),
            Some(("132.235.1.2".parse().unwrap(), 6275))
        );
        assert_eq!(parse_eftp(b"|x"), None);
        assert_eq!(
            parse_pasv(b"=192,168,0,1,1,2"),
            Some((Ipv4Addr::new(192, 168, 0, 1), 258))
        );
    }
}
