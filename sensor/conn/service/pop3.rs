//! POP3 (`src/analyzer/protocol/pop3/POP3.cc`); no port registration, only
//! the `dpd_pop3_server` signature (with `dpd_pop3_client` in the other
//! direction).
//!
//! Lines end at CR, LF or CRLF; nothing is parsed on partial connections.
//! Client commands are queued (at most 10) and processed one at a time as
//! replies arrive; they set the state the next reply is read in. The
//! analyzer confirms on `+OK` answering `USER` (in the authorization
//! phase), `CAPA` or `STLS`; `+OK` to `STLS` hands the stream to an SSL
//! analyzer. Violations: a server line whose first word is not a POP3
//! keyword (`+OK`, `-ERR`, or a command word) outside an authentication
//! exchange and outside a multi-line answer, and more than 10 unknown
//! client commands.
//!
//! The answer to `RETR` or `TOP`, from its `+OK` line to the lone `.`, is
//! walked as a MIME mail for `MIME::max_depth` and `MIME::max_header_bytes`
//! (see [`super::mime`]), as Zeek's `MIME_Mail` does (the `+OK` line is
//! its first header line, as in Zeek); while those limits can still be
//! reached the parser runs for the whole connection.
//!
//! Limits: lines are kept up to [`LINE_KEEP`] bytes; the command queue
//! holds [`MAX_PENDING`] lines of at most [`LINE_KEEP`] bytes.

use std::collections::VecDeque;

use super::line::{LineSplitter, Owned};
use super::mime::Mails;
use super::{AnalyzerLimits, ChildKind, Cx, Parser};

const LINE_KEEP: usize = 1024;
/// `POP3::max_pending_commands`.
const MAX_PENDING: usize = 10;
/// `POP3::max_unknown_client_commands`.
const MAX_UNKNOWN: u32 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Master {
    Start,
    Authorization,
    Transaction,
    Update,
    Finished,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Start,
    User,
    Pass,
    Apop,
    Auth,
    Stat,
    List,
    Retr,
    Dele,
    Rset,
    Noop,
    Last,
    Quit,
    Top,
    Capa,
    Uidl,
    Stls,
    Xsender,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kw {
    Ok,
    Err,
    User,
    Pass,
    Apop,
    Auth,
    Stat,
    List,
    Retr,
    Dele,
    Rset,
    Noop,
    Last,
    Quit,
    Top,
    Capa,
    Uidl,
    Stls,
    Xsender,
}

const KEYWORDS: &[(&[u8], Kw)] = &[
    (b"OK", Kw::Ok),
    (b"ERR", Kw::Err),
    (b"USER", Kw::User),
    (b"PASS", Kw::Pass),
    (b"APOP", Kw::Apop),
    (b"AUTH", Kw::Auth),
    (b"STAT", Kw::Stat),
    (b"LIST", Kw::List),
    (b"RETR", Kw::Retr),
    (b"DELE", Kw::Dele),
    (b"RSET", Kw::Rset),
    (b"NOOP", Kw::Noop),
    (b"LAST", Kw::Last),
    (b"QUIT", Kw::Quit),
    (b"TOP", Kw::Top),
    (b"CAPA", Kw::Capa),
    (b"UIDL", Kw::Uidl),
    (b"STLS", Kw::Stls),
    (b"XSENDER", Kw::Xsender),
];

/// `ParseCmd`: strips one leading `+`/`-` per keyword tried.
fn parse_cmd(tok: &[u8]) -> Option<Kw> {
    let mut t = tok;
    for (w, k) in KEYWORDS {
        if let Some((b'+' | b'-', r)) = t.split_first() {
            t = r;
        }
        if t.eq_ignore_ascii_case(w) {
            return Some(*k);
        }
    }
    None
}

/// `trim_whitespace` + `TokenizeLine`: first word and whether more follows.
fn first_word(line: &[u8]) -> (&[u8], bool) {
    let line = match line.iter().position(|&c| c == 0) {
        Some(n) => line.get(..n).unwrap_or(&[]),
        None => line,
    };
    let s = line
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
        .unwrap_or(line.len());
    let line = line.get(s..).unwrap_or(&[]);
    match line.iter().position(|&c| c == b' ') {
        Some(sp) => {
            let arg = line.get(sp..).unwrap_or(&[]);
            (
                line.get(..sp).unwrap_or(&[]),
                arg.iter().any(|&c| c != b' '),
            )
        }
        None => (line, false),
    }
}

#[derive(Debug)]
pub(crate) struct Pop3 {
    lines: [LineSplitter; 2],
    master: Master,
    state: St,
    last_state: St,
    guessing: bool,
    waiting_auth: bool,
    request_multi: bool,
    multi: bool,
    unknown_cmds: u32,
    cmds: VecDeque<Vec<u8>>,
    scratch: Vec<u8>,
    /// The mails of `RETR`/`TOP` answers.
    mails: Mails,
}

impl Pop3 {
    pub fn new() -> Self {
        Pop3 {
            lines: [LineSplitter::new(LINE_KEEP), LineSplitter::new(LINE_KEEP)],
            master: Master::Start,
            state: St::Start,
            last_state: St::Start,
            guessing: false,
            waiting_auth: false,
            request_multi: false,
            multi: false,
            unknown_cmds: 0,
            cmds: VecDeque::new(),
            scratch: Vec::new(),
            mails: Mails::new(AnalyzerLimits::default().mime),
        }
    }

    pub fn with_limits(mut self, limits: &AnalyzerLimits) -> Self {
        self.mails = Mails::new(limits.mime);
        self
    }

    fn request(&mut self, line: &[u8], cx: &mut Cx<'_>) {
        if line.is_empty() || self.waiting_auth {
            return;
        }
        self.cmds.push_back(line.to_vec());
        if self.cmds.len() > MAX_PENDING {
            self.cmds.pop_front();
        }
        if self.cmds.len() == 1 {
            self.client_cmd(cx);
        }
    }

    fn guess(&mut self, s: St) {
        self.guessing = true;
        self.last_state = s;
    }

    /// `ProcessClientCmd` on the oldest queued command.
    fn client_cmd(&mut self, cx: &mut Cx<'_>) {
        let Some(front) = self.cmds.front() else {
            return;
        };
        let (word, has_arg) = first_word(front);
        let Some(kw) = parse_cmd(word) else {
            if !self.waiting_auth {
                self.unknown_cmds += 1;
                if self.unknown_cmds > MAX_UNKNOWN {
                    cx.violation();
                }
            }
            return;
        };
        let auth = self.master == Master::Authorization;
        let trans = self.master == Master::Transaction;
        match kw {
            Kw::Ok | Kw::Err => {}
            Kw::User => {
                if auth {
                    self.state = St::User;
                }
            }
            Kw::Pass => {
                if auth && self.state == St::User {
                    self.state = St::Pass;
                }
            }
            Kw::Apop => {
                if auth {
                    self.state = St::Apop;
                }
            }
            Kw::Auth => {
                if auth {
                    if has_arg {
                        self.waiting_auth = true;
                    } else {
                        self.request_multi = true;
                    }
                    self.state = St::Auth;
                }
            }
            Kw::Stat | Kw::Dele | Kw::Rset | Kw::Noop | Kw::Last | Kw::Xsender => {
                let s = match kw {
                    Kw::Stat => St::Stat,
                    Kw::Dele => St::Dele,
                    Kw::Rset => St::Rset,
                    Kw::Noop => St::Noop,
                    Kw::Xsender => St::Last,
                    _ => St::Last,
                };
                if trans {
                    self.state = s;
                } else {
                    self.guess(if kw == Kw::Xsender { St::Xsender } else { s });
                }
            }
            Kw::List | Kw::Uidl => {
                let s = if kw == Kw::List { St::List } else { St::Uidl };
                if !has_arg {
                    self.request_multi = true;
                }
                if trans {
                    self.state = s;
                } else {
                    self.guess(s);
                }
            }
            Kw::Retr | Kw::Top => {
                let s = if kw == Kw::Retr { St::Retr } else { St::Top };
                self.request_multi = true;
                if trans {
                    self.state = s;
                } else {
                    self.guess(s);
                }
            }
            Kw::Quit => {
                if matches!(
                    self.master,
                    Master::Authorization | Master::Transaction | Master::Start
                ) {
                    self.state = St::Quit;
                } else {
                    self.guess(St::Last);
                }
            }
            Kw::Capa => {
                self.state = St::Capa;
                self.request_multi = true;
            }
            Kw::Stls => self.state = St::Stls,
        }
    }

    fn finish_cmd(&mut self, cx: &mut Cx<'_>) {
        if self.cmds.pop_front().is_some() {
            self.client_cmd(cx);
        }
    }

    /// Returns true when the stream now belongs to an SSL child.
    fn reply(&mut self, line: &[u8], len: usize, cx: &mut Cx<'_>) -> bool {
        if self.multi {
            if line.first() == Some(&b'.') && len == 1 {
                self.request_multi = false;
                self.multi = false;
                self.mails.end();
                self.finish_cmd(cx);
            } else if matches!(self.state, St::Retr | St::Top) {
                self.mails.line(line, len, cx);
            }
            return false;
        }
        let (word, _) = first_word(line);
        let Some(kw) = parse_cmd(word) else {
            if !self.waiting_auth {
                cx.violation();
            }
            return false;
        };
        match kw {
            Kw::Ok => {
                if self.guessing {
                    self.master = Master::Transaction;
                    self.guessing = false;
                    self.state = self.last_state;
                }
                match self.state {
                    St::Start => self.master = Master::Authorization,
                    St::User => {
                        self.master = Master::Authorization;
                        cx.confirm();
                    }
                    St::Pass
                    | St::Apop
                    | St::Noop
                    | St::Last
                    | St::Stat
                    | St::Rset
                    | St::Dele
                    | St::Xsender => self.master = Master::Transaction,
                    St::Auth => {
                        if self.request_multi {
                            self.multi = true;
                        }
                        if self.waiting_auth {
                            self.master = Master::Transaction;
                        }
                        self.waiting_auth = false;
                    }
                    St::Top | St::Retr => {
                        self.mails.line(line, len, cx);
                        if self.request_multi {
                            self.multi = true;
                        }
                    }
                    St::Uidl | St::List => {
                        if self.request_multi {
                            self.multi = true;
                        }
                    }
                    St::Capa => {
                        cx.confirm();
                        if self.request_multi {
                            self.multi = true;
                        }
                    }
                    St::Stls => {
                        cx.confirm();
                        return true;
                    }
                    St::Quit => {
                        if matches!(self.master, Master::Authorization | Master::Start) {
                            self.master = Master::Finished;
                        } else if self.master == Master::Transaction {
                            self.master = Master::Update;
                        }
                    }
                }
                if !self.multi {
                    self.finish_cmd(cx);
                }
            }
            Kw::Err => {
                self.multi = false;
                self.request_multi = false;
                self.guessing = false;
                self.waiting_auth = false;
                match self.state {
                    St::User | St::Pass | St::Apop | St::Auth => {
                        self.master = Master::Authorization;
                        self.state = St::Start;
                    }
                    St::Noop
                    | St::Last
                    | St::Stat
                    | St::Rset
                    | St::Dele
                    | St::List
                    | St::Retr
                    | St::Uidl
                    | St::Top
                    | St::Xsender => self.master = Master::Transaction,
                    St::Quit => {
                        if matches!(
                            self.master,
                            Master::Authorization | Master::Transaction | Master::Start
                        ) {
                            self.master = Master::Finished;
                        }
                    }
                    St::Start | St::Capa | St::Stls => {}
                }
                self.finish_cmd(cx);
            }
            _ => {}
        }
        false
    }
}

impl Parser for Pop3 {
    fn deliver(&mut self, is_orig: bool, data: &[u8], cx: &mut Cx<'_>) -> usize {
        if cx.partial {
            return data.len();
        }
        let d = usize::from(!is_orig);
        let mut rest = data;
        let mut line = std::mem::take(&mut self.scratch);
        let mut used = data.len();
        while let Some(piece) = self.lines[d].next_owned(&mut rest, &mut line) {
            let Owned::Line(len) = piece else {
                continue;
            };
            if is_orig {
                self.request(&line, cx);
            } else if self.reply(&line, len, cx) {
                cx.child(ChildKind::Ssl);
                used = data.len() - rest.len();
                break;
            }
        }
        self.scratch = line;
        used
    }

    fn finished(&self, confirmed: bool, settled: bool, _seen: u64) -> bool {
        // A retrieved mail can reach a MIME limit at any point.
        confirmed && settled && !self.mails.watching()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::service::{ConnInfo, Note, Notes, L4};

    fn feed(p: &mut Pop3, is_orig: bool, data: &[u8]) -> Notes {
        let i = ConnInfo {
            proto: L4::Tcp,
            orig_h: "10.0.0.1".parse().unwrap(),
            orig_p: 40000,
            resp_h: "10.0.0.2".parse().unwrap(),
            resp_p: 110,
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
    fn login_confirms() {
        let mut p = Pop3::new();
        assert!(feed(&mut p, false, b"+OK ready\r\n").is_empty());
        assert!(feed(&mut p, true, b"USER bob\r\n").is_empty());
        assert_eq!(feed(&mut p, false, b"+OK\r\n").as_slice(), &[Note::Confirm]);
        feed(&mut p, true, b"PASS x\r\n");
        feed(&mut p, false, b"+OK logged in\r\n");
        feed(&mut p, true, b"RETR 1\r\n");
        assert!(feed(&mut p, false, b"+OK 12 octets\r\nnot a keyword\r\n.\r\n").is_empty());
        assert_eq!(
            feed(&mut p, false, b"garbage\r\n").as_slice(),
            &[Note::Violation]
        );
    }

    #[test]
    fn capa_and_stls() {
        let mut p = Pop3::new();
        feed(&mut p, false, b"+OK ready\r\n");
        feed(&mut p, true, b"CAPA\r\n");
        assert_eq!(
            feed(&mut p, false, b"+OK\r\nSTLS\r\nUSER\r\n.\r\n").as_slice(),
            &[Note::Confirm]
        );
        feed(&mut p, true, b"STLS\r\n");
        assert_eq!(
            feed(&mut p, false, b"+OK begin\r\n").as_slice(),
            &[Note::Confirm, Note::Child(ChildKind::Ssl)]
        );
    }

    #[test]
    fn keywords() {
        assert_eq!(parse_cmd(b"+OK"), Some(Kw::Ok));
        assert_eq!(parse_cmd(b"-ERR"), Some(Kw::Err));
        assert_eq!(parse_cmd(b"user"), Some(Kw::User));
        assert_eq!(parse_cmd(b"HTTP/1.1"), None);
        assert_eq!(first_word(b"  USER  bob"), (&b"USER"[..], true));
    }

    #[test]
    fn retrieved_mail_nested_beyond_mime_max_depth() {
        let mut l = AnalyzerLimits::default();
        l.set("MIME::max_depth", 1);
        let mut p = Pop3::new().with_limits(&l);
        feed(&mut p, false, b"+OK ready\r\n");
        feed(&mut p, true, b"USER bob\r\n");
        feed(&mut p, false, b"+OK\r\n");
        feed(&mut p, true, b"PASS x\r\n");
        feed(&mut p, false, b"+OK\r\n");
        feed(&mut p, true, b"RETR 1\r\n");
        let n = feed(
            &mut p,
            false,
            b"+OK 99 octets\r\nContent-Type: message/rfc822\r\n\r\n\
              Content-Type: message/rfc822\r\n\r\nx\r\n.\r\n",
        );
        assert_eq!(
            n.as_slice(),
            &[Note::LimitReached(
                crate::decode::weird::Weird::ExceededMimeMaxDepth
            )]
        );
        // A LIST answer is no mail.
        feed(&mut p, true, b"LIST\r\n");
        let n = feed(
            &mut p,
            false,
            b"+OK\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\n.\r\n",
        );
        assert!(n.is_empty());
    }
}
