//! SMTP (`src/analyzer/protocol/smtp/SMTP.cc`), attached on 25 and 587/tcp
//! or by the `dpd_smtp_client` signature (with `dpd_smtp_server` in the
//! other direction).
//!
//! Lines end at CR, LF or CRLF; nothing is parsed on partial connections.
//! Client lines are commands (a known command word, compared in full and
//! in any case), mail data while in a DATA transaction (a lone `.` ends
//! it), or authentication answers after a 334. Every command, the end of
//! data and every authentication answer confirms (`RequestEvent`); so does
//! the first server reply after a content gap. Every server line must start
//! with a code from 100 to 599, else it is a violation. Replies are paired
//! with commands in order (pipelining); a 220 answering `STARTTLS` or
//! `X-ANONYMOUSTLS` hands the stream to an SSL analyzer. `BDAT <n>` data
//! is skipped.
//!
//! Limits: lines are kept up to [`LINE_KEEP`] bytes; at most
//! [`MAX_PENDING`] pipelined commands are remembered (the queue is cleared
//! beyond that, as Zeek does at 1000).

use std::collections::VecDeque;

use super::line::{LineSplitter, Owned};
use super::{ChildKind, Cx, Parser};

const LINE_KEEP: usize = 512;
const MAX_PENDING: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    ConnEstablishment,
    Data,
    EndOfData,
    Auth,
    AuthAnswer,
    StartTls,
    Bdat,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Normal,
    InData,
    InAuth,
    AfterGap,
}

#[derive(Debug)]
pub(crate) struct Smtp {
    lines: [LineSplitter; 2],
    state: State,
    first_cmd: Option<Cmd>,
    pending_cmds: VecDeque<Cmd>,
    pending_reply: u16,
    scratch: Vec<u8>,
}

/// SMTP command words (`SMTP_cmd.def`), compared case-insensitively.
const WORDS: &[(&[u8], Cmd)] = &[
    (b"EHLO", Cmd::Other),
    (b"HELO", Cmd::Other),
    (b"MAIL", Cmd::Other),
    (b"RCPT", Cmd::Other),
    (b"DATA", Cmd::Data),
    (b"QUIT", Cmd::Other),
    (b"RSET", Cmd::Other),
    (b"VRFY", Cmd::Other),
    (b"EXPN", Cmd::Other),
    (b"HELP", Cmd::Other),
    (b"NOOP", Cmd::Other),
    (b"STARTTLS", Cmd::StartTls),
    (b"X_ANONYMOUSTLS", Cmd::StartTls),
    (b"X-ANONYMOUSTLS", Cmd::StartTls),
    (b"CONN_ESTABLISHMENT", Cmd::ConnEstablishment),
    (b"END_OF_DATA", Cmd::EndOfData),
    (b"SEND", Cmd::Other),
    (b"SOML", Cmd::Other),
    (b"SAML", Cmd::Other),
    (b"TURN", Cmd::Other),
    (b"BDAT", Cmd::Bdat),
    (b"ETRN", Cmd::Other),
    (b"AUTH", Cmd::Auth),
    (b"AUTH_ANSWER", Cmd::AuthAnswer),
];

impl Smtp {
    pub fn new() -> Self {
        Smtp {
            lines: [LineSplitter::new(LINE_KEEP), LineSplitter::new(LINE_KEEP)],
            state: State::Normal,
            first_cmd: Some(Cmd::ConnEstablishment),
            pending_cmds: VecDeque::new(),
            pending_reply: 0,
            scratch: Vec::new(),
        }
    }

    fn new_cmd(&mut self, c: Cmd) {
        if self.first_cmd.is_none() {
            self.first_cmd = Some(c);
        } else {
            if self.pending_cmds.len() >= MAX_PENDING {
                self.pending_cmds.clear();
            }
            self.pending_cmds.push_back(c);
        }
    }

    /// State changes at command time (`UpdateState` with reply 0).
    fn command_state(&mut self, c: Cmd) {
        if c == Cmd::Data {
            self.state = State::InData;
        } else if c == Cmd::EndOfData {
            self.state = State::Normal;
        }
    }

    /// `UpdateState` for a reply; returns true when STARTTLS succeeded.
    fn reply_state(&mut self, c: Option<Cmd>, code: u16) -> bool {
        match c {
            Some(Cmd::Data) if code != 354 => self.state = State::Normal,
            Some(Cmd::Auth | Cmd::AuthAnswer) => {
                self.state = if code == 334 {
                    State::InAuth
                } else {
                    State::Normal
                };
            }
            Some(Cmd::StartTls) => return code == 220,
            _ => {}
        }
        false
    }

    fn client_line(&mut self, line: &[u8], cx: &mut Cx<'_>) {
        match self.state {
            State::AfterGap => {}
            State::InData => {
                if line == b"." {
                    self.new_cmd(Cmd::EndOfData);
                    self.command_state(Cmd::EndOfData);
                    cx.confirm();
                }
            }
            State::InAuth => {
                self.new_cmd(Cmd::AuthAnswer);
                cx.confirm();
            }
            State::Normal => {
                let end = line
                    .iter()
                    .position(|&c| c == 0 || c.is_ascii_whitespace())
                    .unwrap_or(line.len());
                let word = line.get(..end).unwrap_or(&[]);
                let Some(&(_, cmd)) = WORDS.iter().find(|(w, _)| w.eq_ignore_ascii_case(word))
                else {
                    return;
                };
                self.new_cmd(cmd);
                cx.confirm();
                if cmd == Cmd::Bdat {
                    let arg = line.get(end..).unwrap_or(&[]);
                    let arg = arg
                        .iter()
                        .position(|c| !c.is_ascii_whitespace())
                        .and_then(|s| arg.get(s..))
                        .unwrap_or(&[]);
                    let digits = arg.iter().take_while(|c| c.is_ascii_digit()).count();
                    if let Some(n) = std::str::from_utf8(arg.get(..digits).unwrap_or(&[]))
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                    {
                        self.lines[0].set_plain(n);
                    }
                } else {
                    self.command_state(cmd);
                }
            }
        }
    }

    /// Returns true when the stream now belongs to an SSL child.
    fn server_line(&mut self, line: &[u8], cx: &mut Cx<'_>) -> bool {
        let code = match line.get(..3) {
            Some(d) if d.iter().all(u8::is_ascii_digit) => {
                d.iter().fold(0u16, |a, &c| a * 10 + u16::from(c - b'0'))
            }
            _ => 0,
        };
        if !(100..=599).contains(&code) {
            cx.violation();
            return false;
        }
        if self.pending_reply != 0 && code != self.pending_reply {
            self.pending_reply = 0;
        }
        let mut tls = false;
        if self.pending_reply == 0 {
            // NewReply.
            if self.state == State::AfterGap {
                self.state = State::Normal;
                cx.confirm();
            }
            let c = self.first_cmd.take();
            self.first_cmd = self.pending_cmds.pop_front();
            tls = self.reply_state(c, code);
        }
        if line.get(3) == Some(&b'-') {
            self.pending_reply = code;
        } else {
            self.pending_reply = 0;
        }
        tls
    }
}

impl Parser for Smtp {
    fn deliver(&mut self, is_orig: bool, data: &[u8], cx: &mut Cx<'_>) -> usize {
        if cx.partial {
            return data.len();
        }
        let d = usize::from(!is_orig);
        let mut rest = data;
        let mut line = std::mem::take(&mut self.scratch);
        let mut used = data.len();
        while let Some(piece) = self.lines[d].next_owned(&mut rest, &mut line) {
            let Owned::Line(_) = piece else {
                continue;
            };
            while line.last() == Some(&b'\r') {
                line.pop();
            }
            if is_orig {
                self.client_line(&line, cx);
            } else if self.server_line(&line, cx) {
                cx.child(ChildKind::Ssl);
                used = data.len() - rest.len();
                break;
            }
        }
        self.scratch = line;
        used
    }

    fn undelivered(&mut self, _is_orig: bool, _len: u64, _cx: &mut Cx<'_>) {
        self.pending_cmds.clear();
        self.first_cmd = None;
        self.state = State::AfterGap;
    }

    fn eof(&mut self, is_orig: bool, cx: &mut Cx<'_>) {
        if cx.partial {
            return;
        }
        let d = usize::from(!is_orig);
        let mut line = std::mem::take(&mut self.scratch);
        if self.lines[d].flush_owned(&mut line).is_none() {
            self.scratch = line;
            return;
        }
        if is_orig {
            self.client_line(&line, cx);
        } else if self.server_line(&line, cx) {
            cx.child(ChildKind::Ssl);
        }
        self.scratch = line;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::service::{ConnInfo, Note, Notes, L4};

    fn feed(s: &mut Smtp, is_orig: bool, data: &[u8]) -> (Notes, usize) {
        let i = ConnInfo {
            proto: L4::Tcp,
            orig_h: "10.0.0.1".parse().unwrap(),
            orig_p: 40000,
            resp_h: "10.0.0.2".parse().unwrap(),
            resp_p: 25,
        };
        let mut notes = Notes::new();
        let mut cx = Cx {
            info: &i,
            partial: false,
            notes: &mut notes,
        };
        let n = s.deliver(is_orig, data, &mut cx);
        (notes, n)
    }

    #[test]
    fn session_and_starttls() {
        let mut s = Smtp::new();
        assert!(feed(&mut s, false, b"220 mx ESMTP\r\n").0.is_empty());
        assert_eq!(
            feed(&mut s, true, b"EHLO me\r\n").0.as_slice(),
            &[Note::Confirm]
        );
        assert!(feed(&mut s, false, b"250-mx\r\n250 STARTTLS\r\n")
            .0
            .is_empty());
        feed(&mut s, true, b"STARTTLS\r\n");
        let (n, used) = feed(&mut s, false, b"220 go ahead\r\n\x16\x03");
        assert_eq!(n.as_slice(), &[Note::Child(ChildKind::Ssl)]);
        assert_eq!(used, 14);
    }

    #[test]
    fn data_is_not_commands() {
        let mut s = Smtp::new();
        feed(&mut s, false, b"220 mx\r\n");
        feed(
            &mut s,
            true,
            b"HELO x\r\nMAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n",
        );
        feed(&mut s, false, b"250 a\r\n250 b\r\n250 c\r\n354 go\r\n");
        let (n, _) = feed(&mut s, true, b"Subject: STARTTLS\r\n\r\nhi\r\n.\r\n");
        assert_eq!(n.as_slice(), &[Note::Confirm]);
        assert_eq!(s.state, State::Normal);
    }

    #[test]
    fn bad_reply_is_violation() {
        let mut s = Smtp::new();
        assert_eq!(
            feed(&mut s, false, b"SSH-2.0-x\r\n").0.as_slice(),
            &[Note::Violation]
        );
        assert_eq!(
            feed(&mut s, false, b"999 x\r\n").0.as_slice(),
            &[Note::Violation]
        );
        assert!(feed(&mut s, true, b"GET / HTTP/1.1\r\n").0.is_empty());
    }
}
