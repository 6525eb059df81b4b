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
//! The lines of a `DATA` transaction (a leading `.` removed) are walked as
//! a MIME entity for `MIME::max_depth` and `MIME::max_header_bytes` (see
//! [`super::mime`]), as Zeek's `MIME_Mail` does.
//!
//! Mail transactions are checked as `scripts/base/protocols/smtp/main.zeek`
//! does: `RCPT TO:` without `MAIL FROM:`, and `DATA`/`BDAT` without
//! `RCPT TO:`, are invalid; beyond `SMTP::max_invalid_mail_transactions`
//! (25; 0: no limit) of them on a confirmed connection the scripts raise
//! `smtp_excessive_invalid_mail_transactions` (an `X` in history) and
//! disable the analyzer, so nothing further is parsed (no STARTTLS). Since
//! that can happen at any point, a confirmed parser runs past
//! `DPD::ignore_violations_after` until it has.
//!
//! Limits: lines are kept up to [`LINE_KEEP`] bytes; at most
//! [`MAX_PENDING`] pipelined commands are remembered (the queue is cleared
//! beyond that, as Zeek does at 1000).

use std::collections::VecDeque;

use super::line::{LineSplitter, Owned};
use super::mime::Mails;
use super::{AnalyzerLimits, ChildKind, Cx, Parser};
use crate::decode::weird::Weird;

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
    /// `trans_mail_from_seen` / `trans_rcpt_to_seen` of the SMTP scripts.
    mail_from: bool,
    rcpt_to: bool,
    invalid_transactions: u64,
    /// `SMTP::max_invalid_mail_transactions` (0: none).
    max_invalid: u64,
    confirmed: bool,
    /// The scripts disabled the analyzer after too many invalid
    /// transactions.
    disabled: bool,
    /// The mails of `DATA` transactions.
    mails: Mails,
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
            mail_from: false,
            rcpt_to: false,
            invalid_transactions: 0,
            max_invalid: AnalyzerLimits::default().smtp_max_invalid_mail_transactions,
            confirmed: false,
            disabled: false,
            mails: Mails::new(AnalyzerLimits::default().mime),
        }
    }

    pub fn with_limits(mut self, limits: &AnalyzerLimits) -> Self {
        self.max_invalid = limits.smtp_max_invalid_mail_transactions;
        self.mails = Mails::new(limits.mime);
        self
    }

    /// `smtp_request` in `main.zeek`, for the commands that make up a mail
    /// transaction.
    fn transaction(&mut self, word: &[u8], arg: &[u8], cx: &mut Cx<'_>) {
        let is = |w: &[u8]| word.eq_ignore_ascii_case(w);
        let starts = |p: &[u8]| {
            arg.get(..p.len())
                .is_some_and(|a| a.eq_ignore_ascii_case(p))
        };
        if is(b"RCPT") && starts(b"TO:") {
            self.rcpt_to = true;
            if !self.mail_from {
                self.invalid_transaction(cx);
            }
        } else if is(b"MAIL") && starts(b"FROM:") {
            self.mail_from = true;
            self.rcpt_to = false;
        } else if is(b"DATA") || is(b"BDAT") {
            if !self.rcpt_to {
                self.invalid_transaction(cx);
            }
            if is(b"BDAT") && arg.ends_with(b" LAST") {
                self.mail_from = false;
                self.rcpt_to = false;
            }
        }
    }

    /// `mail_transaction_invalid`: the scripts disable the analyzer (which
    /// they know of once it confirmed) past the limit.
    fn invalid_transaction(&mut self, cx: &mut Cx<'_>) {
        self.invalid_transactions += 1;
        if self.max_invalid > 0 && self.invalid_transactions > self.max_invalid && self.confirmed {
            cx.limit_reached(Weird::SmtpExcessiveInvalidMailTransactions);
            self.disabled = true;
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
        // BeginData / EndData: each transaction is a new mail.
        self.mails.end();
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

    fn client_line(&mut self, line: &[u8], len: usize, cx: &mut Cx<'_>) {
        match self.state {
            State::AfterGap => {}
            State::InData => {
                if line == b"." {
                    self.new_cmd(Cmd::EndOfData);
                    self.command_state(Cmd::EndOfData);
                    cx.confirm();
                    self.confirmed = true;
                    self.mail_from = false;
                    self.rcpt_to = false;
                } else {
                    self.mail_line(line, len, cx);
                }
            }
            State::InAuth => {
                self.new_cmd(Cmd::AuthAnswer);
                cx.confirm();
                self.confirmed = true;
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
                self.confirmed = true;
                let arg = line.get(end..).unwrap_or(&[]);
                let arg = arg
                    .iter()
                    .position(|c| !c.is_ascii_whitespace())
                    .and_then(|s| arg.get(s..))
                    .unwrap_or(&[]);
                self.transaction(word, arg, cx);
                if self.disabled {
                    return;
                }
                if cmd == Cmd::Bdat {
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

    /// `ProcessData`: one line of mail data (`len` bytes, `line` kept).
    fn mail_line(&mut self, line: &[u8], len: usize, cx: &mut Cx<'_>) {
        let (line, len) = match line.strip_prefix(b".") {
            Some(rest) => (rest, len.saturating_sub(1)),
            None => (line, len),
        };
        self.mails.line(line, len, cx);
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
                self.confirmed = true;
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
        if cx.partial || self.disabled {
            return data.len();
        }
        let d = usize::from(!is_orig);
        let mut rest = data;
        let mut line = std::mem::take(&mut self.scratch);
        let mut used = data.len();
        while let Some(piece) = self.lines[d].next_owned(&mut rest, &mut line) {
            if self.disabled {
                break;
            }
            let Owned::Line(mut len) = piece else {
                continue;
            };
            while line.last() == Some(&b'\r') {
                line.pop();
                len = len.saturating_sub(1);
            }
            if is_orig {
                self.client_line(&line, len, cx);
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
        if cx.partial || self.disabled {
            return;
        }
        let d = usize::from(!is_orig);
        let mut line = std::mem::take(&mut self.scratch);
        let Some(len) = self.lines[d].flush_owned(&mut line) else {
            self.scratch = line;
            return;
        };
        if is_orig {
            self.client_line(&line, len, cx);
        } else if self.server_line(&line, cx) {
            cx.child(ChildKind::Ssl);
        }
        self.scratch = line;
    }

    fn finished(&self, confirmed: bool, settled: bool, _seen: u64) -> bool {
        // Invalid transactions and MIME limits can come at any point of a
        // session.
        self.disabled || (confirmed && settled && self.max_invalid == 0 && !self.mails.watching())
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
    fn invalid_transactions_past_the_limit_disable_the_analyzer() {
        let mut s = Smtp::new();
        feed(&mut s, false, b"220 mx\r\n");
        feed(&mut s, true, b"HELO x\r\n");
        for _ in 0..25 {
            let (n, _) = feed(&mut s, true, b"RCPT TO:<b>\r\n");
            assert_eq!(n.as_slice(), &[Note::Confirm]);
        }
        let (n, _) = feed(&mut s, true, b"RCPT TO:<c>\r\n");
        assert_eq!(
            n.as_slice(),
            &[
                Note::Confirm,
                Note::LimitReached(Weird::SmtpExcessiveInvalidMailTransactions)
            ]
        );
        assert!(s.finished(true, false, 0));
        // Disabled: not even STARTTLS is followed.
        assert!(feed(&mut s, true, b"STARTTLS\r\n").0.is_empty());
        assert!(feed(&mut s, false, b"220 go\r\n").0.is_empty());
    }

    #[test]
    fn valid_transactions_and_a_set_limit() {
        let mut s = Smtp::new();
        for _ in 0..40 {
            let (n, _) = feed(
                &mut s,
                true,
                b"MAIL FROM:<a>\r\nRCPT TO:<b>\r\nBDAT 0 LAST\r\n",
            );
            assert!(!n.iter().any(|n| matches!(n, Note::LimitReached(_))));
        }
        let mut l = AnalyzerLimits::default();
        l.set("SMTP::max_invalid_mail_transactions", 2);
        let mut s = Smtp::new().with_limits(&l);
        feed(&mut s, false, b"220 mx\r\n");
        for _ in 0..2 {
            let (n, _) = feed(&mut s, true, b"DATA\r\n");
            assert_eq!(n.as_slice(), &[Note::Confirm]);
            feed(&mut s, false, b"503 no\r\n");
        }
        let (n, _) = feed(&mut s, true, b"DATA\r\n");
        assert_eq!(
            n.as_slice(),
            &[
                Note::Confirm,
                Note::LimitReached(Weird::SmtpExcessiveInvalidMailTransactions)
            ]
        );
        // 0: no limit, and the parser may stop once settled (unless the
        // MIME limits are still to watch).
        l.set("SMTP::max_invalid_mail_transactions", 0);
        assert!(!Smtp::new().with_limits(&l).finished(true, true, 0));
        l.set("MIME::max_depth", 0);
        l.set("MIME::max_header_bytes", 0);
        let s = Smtp::new().with_limits(&l);
        assert!(s.finished(true, true, 0));
        assert!(!Smtp::new().finished(true, true, 0));
    }

    #[test]
    fn mail_nested_beyond_mime_max_depth() {
        let mut l = AnalyzerLimits::default();
        l.set("MIME::max_depth", 2);
        let mut s = Smtp::new().with_limits(&l);
        feed(&mut s, false, b"220 mx\r\n");
        feed(&mut s, true, b"MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n");
        feed(&mut s, false, b"250 ok\r\n250 ok\r\n354 go\r\n");
        // Two levels are fine; dot-stuffed boundaries still count.
        let two = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n\
                    ..--x\r\nContent-Type: message/rfc822\r\n\r\nSubject: hi\r\n\r\nbody\r\n\
                    --x--\r\n.\r\n";
        let (n, _) = feed(&mut s, true, two);
        assert!(!n.iter().any(|n| matches!(n, Note::LimitReached(_))));
        feed(&mut s, false, b"250 ok\r\n");
        // A third level is not created.
        feed(&mut s, true, b"MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n");
        feed(&mut s, false, b"250 ok\r\n250 ok\r\n354 go\r\n");
        let three = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n\
                      --x\r\nContent-Type: message/rfc822\r\n\r\n\
                      Content-Type: message/rfc822\r\n\r\nx\r\n.\r\n";
        let (n, _) = feed(&mut s, true, three);
        assert!(n.contains(&Note::LimitReached(Weird::ExceededMimeMaxDepth)));
    }

    #[test]
    fn mail_header_beyond_mime_max_header_bytes() {
        let mut l = AnalyzerLimits::default();
        l.set("MIME::max_header_bytes", 64);
        let mut s = Smtp::new().with_limits(&l);
        feed(&mut s, true, b"DATA\r\n");
        let mut mail = b"To: a".to_vec();
        for _ in 0..10 {
            mail.extend_from_slice(b"\r\n\t0123456789");
        }
        mail.extend_from_slice(b"\r\n\r\nbody\r\n.\r\n");
        let (n, _) = feed(&mut s, true, &mail);
        assert!(n.contains(&Note::LimitReached(Weird::ExceededMimeMaxHeaderBytes)));
        // The body is not headers: long lines there are no limit.
        let mut s = Smtp::new().with_limits(&l);
        feed(&mut s, true, b"DATA\r\n");
        let (n, _) = feed(&mut s, true, b"To: a\r\n\r\n \x20aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n \x20b\r\n.\r\n");
        assert!(!n.iter().any(|n| matches!(n, Note::LimitReached(_))));
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
