//! IMAP (`src/analyzer/protocol/imap/IMAP.cc`, `imap-protocol.pac`,
//! `imap-analyzer.pac`), attached on 143/tcp; no DPD signature.
//!
//! binpac parses each delivered chunk on its own (a `datagram` flow) as a
//! sequence of `tag SP command [SP] text CRLF` tokens, where tag and
//! command are runs of printable non-space ASCII; a server `* CAPABILITY`
//! line is a list of such words. Anything else, including a line cut by
//! the end of the chunk, is a binpac exception, i.e. a violation. The
//! analyzer confirms on a server `* OK`, a client `capability` (lower case,
//! as binpac compares it) or `STARTTLS` (any case); a client
//! `authenticate`, `login`, `examine`, `create`, `list` or `fetch` (lower
//! case) confirms and stops the analysis. A server `OK` with the tag of the
//! client's `STARTTLS` hands the stream to an SSL analyzer. Nothing is
//! parsed on partial connections or after a content gap.
//!
//! Limits: stateless per chunk apart from the STARTTLS tag (at most
//! [`MAX_TAG`] bytes).

use super::{ChildKind, Cx, Parser};

const MAX_TAG: usize = 64;

#[derive(Debug)]
pub(crate) struct Imap {
    had_gap: bool,
    skip: bool,
    starttls_tag: Option<Vec<u8>>,
}

fn word(d: &[u8], pos: &mut usize) -> Option<(usize, usize)> {
    let s = *pos;
    while d.get(*pos).is_some_and(|&c| (0x21..=0x7e).contains(&c)) {
        *pos += 1;
    }
    (*pos > s).then_some((s, *pos))
}

fn spaces(d: &[u8], pos: &mut usize) -> usize {
    let s = *pos;
    while d.get(*pos) == Some(&b' ') {
        *pos += 1;
    }
    *pos - s
}

fn newlines(d: &[u8], pos: &mut usize) -> usize {
    let s = *pos;
    while matches!(d.get(*pos), Some(b'\r' | b'\n')) {
        *pos += 1;
    }
    *pos - s
}

enum Tok {
    Go,
    Tls,
    Skip,
}

impl Imap {
    pub fn new() -> Self {
        Imap {
            had_gap: false,
            skip: false,
            starttls_tag: None,
        }
    }

    /// `proc_imap_token`.
    fn token(&mut self, is_orig: bool, tag: &[u8], command: &[u8], cx: &mut Cx<'_>) -> Tok {
        let lower = command.to_ascii_lowercase();
        if !is_orig && tag == b"*" && lower == b"ok" {
            cx.confirm();
        }
        if is_orig && (command == b"capability" || lower == b"starttls") {
            cx.confirm();
        }
        if matches!(
            command,
            b"authenticate" | b"login" | b"examine" | b"create" | b"list" | b"fetch"
        ) {
            cx.confirm();
            return Tok::Skip;
        }
        if is_orig && lower == b"starttls" {
            self.starttls_tag = Some(tag.get(..tag.len().min(MAX_TAG)).unwrap_or(&[]).to_vec());
        }
        if !is_orig && lower == b"ok" && self.starttls_tag.as_deref() == Some(tag) {
            return Tok::Tls;
        }
        Tok::Go
    }
}

impl Parser for Imap {
    fn deliver(&mut self, is_orig: bool, data: &[u8], cx: &mut Cx<'_>) -> usize {
        if self.skip || cx.partial || self.had_gap {
            return data.len();
        }
        let mut pos = 0;
        let mut tls = false;
        while pos < data.len() {
            let Some((ts, te)) = word(data, &mut pos) else {
                cx.violation();
                break;
            };
            if spaces(data, &mut pos) == 0 {
                cx.violation();
                break;
            }
            let Some((cs, ce)) = word(data, &mut pos) else {
                cx.violation();
                break;
            };
            spaces(data, &mut pos);
            let tag = data.get(ts..te).unwrap_or(&[]);
            let command = data.get(cs..ce).unwrap_or(&[]);
            if !is_orig && tag == b"*" && command.eq_ignore_ascii_case(b"capability") {
                let mut ok = true;
                loop {
                    if word(data, &mut pos).is_none() {
                        ok = false;
                        break;
                    }
                    spaces(data, &mut pos);
                    if newlines(data, &mut pos) > 0 {
                        break;
                    }
                }
                if !ok {
                    cx.violation();
                    break;
                }
            } else {
                while data.get(pos).is_some_and(|&c| c != b'\r' && c != b'\n') {
                    pos += 1;
                }
                if newlines(data, &mut pos) == 0 {
                    cx.violation();
                    break;
                }
            }
            match self.token(is_orig, tag, command, cx) {
                Tok::Go => {}
                Tok::Tls => tls = true,
                Tok::Skip => self.skip = true,
            }
        }
        if tls && !self.skip {
            cx.child(ChildKind::Ssl);
            return data.len();
        }
        data.len()
    }

    fn undelivered(&mut self, _is_orig: bool, _len: u64, _cx: &mut Cx<'_>) {
        self.had_gap = true;
    }

    fn finished(&self, confirmed: bool, settled: bool, _seen: u64) -> bool {
        self.skip || self.had_gap || (confirmed && settled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::service::{ConnInfo, Note, Notes, L4};

    fn feed(m: &mut Imap, is_orig: bool, data: &[u8]) -> Notes {
        let i = ConnInfo {
            proto: L4::Tcp,
            orig_h: "10.0.0.1".parse().unwrap(),
            orig_p: 40000,
            resp_h: "10.0.0.2".parse().unwrap(),
            resp_p: 143,
        };
        let mut notes = Notes::new();
        let mut cx = Cx {
            info: &i,
            partial: false,
            notes: &mut notes,
        };
        m.deliver(is_orig, data, &mut cx);
        notes
    }

    #[test]
    fn starttls() {
        let mut m = Imap::new();
        assert_eq!(
            feed(&mut m, false, b"* OK [CAPABILITY IMAP4rev1] ready\r\n").as_slice(),
            &[Note::Confirm]
        );
        assert_eq!(feed(&mut m, true, b"a1 CAPABILITY\r\n").as_slice(), &[]);
        assert!(feed(
            &mut m,
            false,
            b"* CAPABILITY IMAP4rev1 STARTTLS\r\na1 OK done\r\n"
        )
        .is_empty());
        assert_eq!(
            feed(&mut m, true, b"a2 STARTTLS\r\n").as_slice(),
            &[Note::Confirm]
        );
        assert_eq!(
            feed(&mut m, false, b"a2 OK Begin TLS\r\n").as_slice(),
            &[Note::Child(ChildKind::Ssl)]
        );
    }

    #[test]
    fn violations() {
        let mut m = Imap::new();
        assert_eq!(
            feed(&mut m, false, b"\x16\x03\x01").as_slice(),
            &[Note::Violation]
        );
        let mut m = Imap::new();
        assert_eq!(
            feed(&mut m, false, b"* OK cut").as_slice(),
            &[Note::Confirm, Note::Violation][1..]
        );
        let mut m = Imap::new();
        assert_eq!(
            feed(&mut m, true, b"a1 login x y\r\n").as_slice(),
            &[Note::Confirm]
        );
        assert!(feed(&mut m, false, b"garbage").is_empty());
    }
}
