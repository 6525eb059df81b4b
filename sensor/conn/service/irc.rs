//! IRC (`src/analyzer/protocol/irc/IRC.cc`, DCC scheduling from
//! `scripts/base/protocols/irc/dcc-send.zeek`), attached on 6666-6669/tcp
//! or by the `irc_client1`/`irc_client2` signatures (with
//! `irc_server_reply` in the other direction) or `irc_server_to_server2`.
//!
//! Lines end at CR, LF or CRLF and are cut at 1000 bytes; lines longer than
//! 512 bytes, or shorter than 3 after leading spaces, are ignored. After an
//! optional `@tags` word and `:prefix`, the analyzer reports a violation for
//! a remainder shorter than 3 bytes, for a leading digit not followed by two
//! more digits and a space, and for the 21st command longer than 20
//! characters. A known client command from the originator confirms it.
//! Reply 670 hands the stream to an SSL analyzer (STARTTLS). A
//! `PRIVMSG target :\x01DCC SEND name ip port [size]\x01` schedules an
//! `irc-dcc-data` analyzer for `ip:port` from any originator (5 minutes).
//!
//! Limits: lines are kept up to [`LINE_KEEP`] bytes (longer ones are
//! ignored anyway).

use std::net::{IpAddr, Ipv4Addr};

use super::line::{LineSplitter, Owned};
use super::{Analyzer, ChildKind, Cx, Parser, GIVE_UP_AFTER};

const LINE_KEEP: usize = 1024;
/// IRC's ContentLine `max_line_length`.
const MAX_LINE: usize = 1000;
const MAX_INVALID: u32 = 20;

/// `IsValidClientCommand`.
const CLIENT_COMMANDS: &[&[u8]] = &[
    b"ADMIN",
    b"AWAY",
    b"CNOTICE",
    b"CPRIVMSG",
    b"CONNECT",
    b"DIE",
    b"ENCAP",
    b"ERROR",
    b"INFO",
    b"INVITE",
    b"ISON",
    b"JOIN",
    b"KICK",
    b"KILL",
    b"KNOCK",
    b"LINKS",
    b"LIST",
    b"LUSERS",
    b"MODE",
    b"MOTD",
    b"NAMES",
    b"NICK",
    b"NOTICE",
    b"OPER",
    b"PART",
    b"PASS",
    b"PING",
    b"PONG",
    b"PRIVMSG",
    b"QUIT",
    b"REHASH",
    b"RULES",
    b"SERVER",
    b"SERVICE",
    b"SERVLIST",
    b"SETNAME",
    b"SILENCE",
    b"SQUERY",
    b"SQUIT",
    b"STATS",
    b"SUMMON",
    b"TIME",
    b"TOPIC",
    b"TRACE",
    b"USER",
    b"USERHOST",
    b"USERS",
    b"VERSION",
    b"WALLOPS",
    b"WHO",
    b"WHOIS",
    b"WHOWAS",
    b"STARTTLS",
];

#[derive(Debug)]
pub(crate) struct Irc {
    lines: [LineSplitter; 2],
    invalid: u32,
    confirmed: bool,
    scratch: Vec<u8>,
}

fn skip_spaces(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&c| c == b' ').count();
    s.get(n..).unwrap_or(&[])
}

/// `atoi_n` into a u32 (leading digits, no overflow).
fn atoi_u32(s: &[u8]) -> Option<u32> {
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    std::str::from_utf8(s.get(..digits)?).ok()?.parse().ok()
}

impl Irc {
    pub fn new() -> Self {
        Irc {
            lines: [
                LineSplitter::new(LINE_KEEP).with_max_line(MAX_LINE),
                LineSplitter::new(LINE_KEEP).with_max_line(MAX_LINE),
            ],
            invalid: 0,
            confirmed: false,
            scratch: Vec::new(),
        }
    }

    /// Returns true when the stream now belongs to an SSL child.
    fn line(&mut self, is_orig: bool, line: &[u8], len: usize, cx: &mut Cx<'_>) -> bool {
        if len > 512 {
            return false;
        }
        let mut l = skip_spaces(line);
        if l.len() < 3 {
            return false;
        }
        if l.first() == Some(&b'@') {
            let Some(sp) = l.iter().position(|&c| c == b' ') else {
                return false;
            };
            l = l.get(sp + 1..).unwrap_or(&[]);
        }
        if l.first() == Some(&b':') {
            let Some(sp) = l.iter().position(|&c| c == b' ') else {
                return false;
            };
            l = skip_spaces(l.get(sp + 1..).unwrap_or(&[]));
        }
        if l.len() < 3 {
            cx.violation();
            return false;
        }
        let mut code = 0u16;
        let command: Vec<u8>;
        let params: &[u8];
        if l.first().is_some_and(u8::is_ascii_digit) {
            let ok = l.get(1).is_some_and(u8::is_ascii_digit)
                && l.get(2).is_some_and(u8::is_ascii_digit)
                && l.get(3) == Some(&b' ');
            if !ok {
                cx.violation();
                return false;
            }
            code = l
                .iter()
                .take(3)
                .fold(0u16, |a, &c| a * 10 + u16::from(c - b'0'));
            command = Vec::new();
            params = l.get(4..).unwrap_or(&[]);
        } else {
            let sp = l.iter().position(|&c| c == b' ').unwrap_or(l.len());
            command = l.get(..sp).unwrap_or(&[]).to_ascii_uppercase();
            params = skip_spaces(l.get(sp + 1..).unwrap_or(&[]));
        }
        if !self.confirmed && is_orig && CLIENT_COMMANDS.contains(&command.as_slice()) {
            self.confirmed = true;
            cx.confirm();
        }
        if command == b"STARTTLS" {
            return false;
        }
        if code > 0 {
            return code == 670;
        }
        if command.len() > 20 {
            self.invalid += 1;
            if self.invalid > MAX_INVALID {
                cx.violation();
            }
            return false;
        }
        if command == b"PRIVMSG" {
            self.privmsg(params, cx);
        }
        false
    }

    /// DCC SEND in a PRIVMSG (`irc_dcc_message`, dcc-send.zeek).
    fn privmsg(&mut self, params: &[u8], cx: &mut Cx<'_>) {
        let Some(sp) = params.iter().position(|&c| c == b' ') else {
            return;
        };
        let mut msg = skip_spaces(params.get(sp + 1..).unwrap_or(&[]));
        if let Some((b':', r)) = msg.split_first() {
            msg = r;
        }
        if let Some((1, r)) = msg.split_first() {
            msg = r;
        }
        if msg.len() <= 3 || !msg.starts_with(b"DCC") {
            return;
        }
        if let Some((1, r)) = msg.split_last() {
            msg = r;
        }
        let parts: Vec<&[u8]> = msg
            .split(|&c| c == b' ')
            .filter(|w| !w.is_empty())
            .collect();
        let n = parts.len();
        let turbo = n == 7 && parts.get(6) == Some(&&b"T"[..]);
        if !((5..=6).contains(&n) || turbo) {
            return;
        }
        let (Some(kind), Some(host), Some(port)) = (parts.get(1), parts.get(3), parts.get(4))
        else {
            return;
        };
        let Some(host) = atoi_u32(host) else {
            return;
        };
        let Some(port) = atoi_u32(port).and_then(|p| u16::try_from(p).ok()) else {
            return;
        };
        if *kind == b"SEND" {
            cx.expect(
                None,
                IpAddr::V4(Ipv4Addr::from(host)),
                port,
                Analyzer::IrcDccData,
            );
        }
    }
}

impl Parser for Irc {
    fn deliver(&mut self, is_orig: bool, data: &[u8], cx: &mut Cx<'_>) -> usize {
        let d = usize::from(!is_orig);
        let mut rest = data;
        let mut line = std::mem::take(&mut self.scratch);
        let mut used = data.len();
        while let Some(piece) = self.lines[d].next_owned(&mut rest, &mut line) {
            let Owned::Line(len) = piece else {
                continue;
            };
            if self.line(is_orig, &line, len, cx) {
                cx.child(ChildKind::Ssl);
                used = data.len() - rest.len();
                break;
            }
        }
        self.scratch = line;
        used
    }

    fn finished(&self, confirmed: bool, _settled: bool, seen: u64) -> bool {
        // DCC transfers can be announced at any time.
        !confirmed && seen > GIVE_UP_AFTER
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::service::{ConnInfo, Note, Notes, L4};

    fn feed(p: &mut Irc, is_orig: bool, data: &[u8]) -> Notes {
        let i = ConnInfo {
            proto: L4::Tcp,
            orig_h: "10.0.0.1".parse().unwrap(),
            orig_p: 40000,
            resp_h: "10.0.0.2".parse().unwrap(),
            resp_p: 6667,
        };
        let mut notes = Notes::new();
        let mut cx = Cx {
            info: &i,
            partial: false,
            notes: &mut notes,
        };
        p.deliver(is_orig, data, &mut cx);
        notes
    }

    #[test]
    fn session_and_dcc() {
        let mut p = Irc::new();
        assert_eq!(
            feed(&mut p, true, b"NICK joe\r\nUSER a b c :d\r\n").as_slice(),
            &[Note::Confirm]
        );
        assert!(feed(&mut p, false, b":srv 001 joe :Welcome\r\n").is_empty());
        let n = feed(
            &mut p,
            false,
            b":bob!x@y PRIVMSG joe :\x01DCC SEND file.zip 3232235777 1026 41709\x01\r\n",
        );
        assert_eq!(
            n.as_slice(),
            &[Note::Expect {
                orig_h: None,
                resp_h: "192.168.1.1".parse().unwrap(),
                resp_p: 1026,
                analyzer: Analyzer::IrcDccData
            }]
        );
    }

    #[test]
    fn violations() {
        let mut p = Irc::new();
        assert_eq!(
            feed(&mut p, false, b":srv 01x joe\r\n").as_slice(),
            &[Note::Violation]
        );
        assert_eq!(
            feed(&mut p, false, b":srv ab\r\n").as_slice(),
            &[Note::Violation]
        );
        assert!(feed(&mut p, false, b"GET / HTTP/1.1\r\n").is_empty());
    }
}
