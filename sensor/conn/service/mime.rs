//! MIME entities as Zeek's `MIME_Entity` walks them
//! (`src/analyzer/protocol/mime/MIME.cc`), for the two limits that put an
//! `X` in conn.log's `history`: `MIME::max_depth` (100: a child entity
//! deeper than this is not created, `exceeded_mime_max_depth`) and
//! `MIME::max_header_bytes` (65536: a continuation line arriving when the
//! header already holds this many bytes is dropped,
//! `exceeded_mime_max_header_bytes`).
//!
//! SMTP feeds every line of a `DATA` transaction to a root entity; HTTP
//! parses its own message headers with [`HeaderLine`] and hands the body
//! of a `multipart/*` or `message/*` message to a root entity that starts
//! in its body ([`Mime::body_of`]). Only what moves the limits is kept:
//! the header being read (its first [`HEADER_KEEP`] bytes, all of it
//! counted), each entity's type and boundary, and the chain of current
//! children. Bodies are not decoded: Zeek hands multipart and message
//! bodies to their children undecoded too.
//!
//! Where osprey's walk is narrower than Zeek's: HTTP child entities are
//! plain MIME entities (a `Content-Length` or chunked coding inside a part,
//! which Zeek's `HTTP_Entity` would read as such, is read as lines), and
//! compressed HTTP bodies and SMTP `BDAT` chunks are not walked. With
//! `MIME::max_depth` set to 0 (no limit) the chain stops growing at
//! [`MAX_CHAIN`] entities, so hostile nesting cannot take memory.

use super::Cx;
use crate::decode::weird::Weird;

/// Bytes of a header line kept for parsing (the total is still counted).
pub(crate) const HEADER_KEEP: usize = 1024;
/// Boundary bytes kept; a longer boundary is compared on these.
const BOUNDARY_KEEP: usize = 256;
/// Entities in the chain when `MIME::max_depth` is 0.
pub(crate) const MAX_CHAIN: usize = 1024;

/// `MIME::max_depth` and `MIME::max_header_bytes` (0: no limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MimeLimits {
    pub max_depth: u64,
    pub max_header_bytes: u64,
}

/// The media types that change how an entity's body is walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Multipart,
    Message,
    Other,
}

/// A `Content-Type` value as `ParseContentTypeField` reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ContentType {
    pub kind: Kind,
    /// The `boundary` parameter of a multipart type.
    pub boundary: Option<Vec<u8>>,
}

/// One header line and its continuation lines (`MIME_Multiline`).
#[derive(Debug, Default)]
pub(crate) struct HeaderLine {
    buf: Vec<u8>,
    total: u64,
    open: bool,
}

impl HeaderLine {
    /// `NewHeader`: starts a header with its first line (`len` bytes, of
    /// which `head` are kept). Returns the header it finished, if any.
    pub fn start(&mut self, head: &[u8], len: usize) -> Option<Vec<u8>> {
        let done = self.finish();
        if len > 0 {
            self.open = true;
            self.total = len as u64;
            self.keep(head);
        }
        done
    }

    /// `ContHeader`: appends a continuation line. Returns the weird when
    /// the header already holds `max_header_bytes` (the line is dropped).
    /// A continuation with no header open starts one without its leading
    /// white space, as Zeek does.
    pub fn cont(
        &mut self,
        head: &[u8],
        len: usize,
        max_header_bytes: u64,
    ) -> (Option<Vec<u8>>, Option<Weird>) {
        if !self.open {
            let ws = head.iter().take_while(|c| is_lws(**c)).count();
            let done = self.start(head.get(ws..).unwrap_or(&[]), len.saturating_sub(ws));
            return (done, None);
        }
        if max_header_bytes > 0 && self.total >= max_header_bytes {
            return (None, Some(Weird::ExceededMimeMaxHeaderBytes));
        }
        self.total += len as u64;
        self.keep(head);
        (None, None)
    }

    /// `FinishHeader`: the concatenated header, if one was open.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        if !self.open {
            return None;
        }
        self.open = false;
        self.total = 0;
        let mut out = Vec::new();
        std::mem::swap(&mut out, &mut self.buf);
        Some(out)
    }

    fn keep(&mut self, head: &[u8]) {
        let room = HEADER_KEEP.saturating_sub(self.buf.len());
        self.buf
            .extend_from_slice(head.get(..head.len().min(room)).unwrap_or(&[]));
    }
}

fn is_lws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// `MIME_skip_comments`: a parenthesised comment (nesting, `\` quoting).
fn skip_comment(d: &[u8]) -> usize {
    if d.first() != Some(&b'(') {
        return 0;
    }
    let mut par = 0i32;
    let mut i = 0;
    while i < d.len() {
        match d.get(i) {
            Some(b'(') => par += 1,
            Some(b')') => {
                par -= 1;
                if par == 0 {
                    return i + 1;
                }
            }
            Some(b'\\') => i += 1,
            _ => {}
        }
        i += 1;
    }
    d.len()
}

/// `MIME_skip_lws_comments`.
fn skip_lws_comments(d: &[u8]) -> usize {
    let mut i = 0;
    while let Some(&c) = d.get(i) {
        if is_lws(c) {
            i += 1;
        } else if c == b'(' {
            i += skip_comment(d.get(i..).unwrap_or(&[]));
        } else {
            return i;
        }
    }
    d.len()
}

fn is_tspecial(c: u8, boundary: bool) -> bool {
    if boundary {
        c == b'"'
    } else {
        matches!(
            c,
            b'(' | b')'
                | b'<'
                | b'>'
                | b'@'
                | b','
                | b';'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'='
        )
    }
}

fn is_token_char(c: u8, boundary: bool) -> bool {
    (33..=126).contains(&c) && !is_tspecial(c, boundary)
}

/// `MIME_get_token`: the first token and the offset just past it.
fn token(d: &[u8], boundary: bool) -> Option<(&[u8], usize)> {
    let mut i = if boundary { 0 } else { skip_lws_comments(d) };
    while let Some(&c) = d.get(i) {
        if is_token_char(c, boundary) {
            let n = d
                .get(i..)
                .unwrap_or(&[])
                .iter()
                .take_while(|c| is_token_char(**c, boundary))
                .count();
            return Some((d.get(i..i + n).unwrap_or(&[]), i + n));
        }
        let j = skip_lws_comments(d.get(i..).unwrap_or(&[]));
        i += j.max(1);
    }
    None
}

/// `MIME_get_quoted_string`: the inner bytes and the offset past the quote.
fn quoted(d: &[u8]) -> Option<(&[u8], usize)> {
    let off = skip_lws_comments(d);
    let s = d.get(off..)?;
    if s.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while let Some(&c) = s.get(i) {
        match c {
            b'"' => return Some((s.get(1..i)?, off + i + 1)),
            b'\\' => i += 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// `MIME_get_value`: a token or quoted string (quoted pairs decoded).
fn value(d: &[u8], boundary: bool) -> Option<(Vec<u8>, usize)> {
    let off = if boundary { 0 } else { skip_lws_comments(d) };
    let s = d.get(off..)?;
    if s.first() == Some(&b'"') {
        let (inner, end) = quoted(s)?;
        let mut out = Vec::with_capacity(inner.len());
        let mut it = inner.iter();
        while let Some(&c) = it.next() {
            if c == b'\\' {
                if let Some(&q) = it.next() {
                    out.push(q);
                }
            } else {
                out.push(c);
            }
        }
        Some((out, off + end))
    } else {
        let (t, end) = token(s, boundary)?;
        Some((t.to_vec(), off + end))
    }
}

/// A header's name and value as `MIME_Header` splits them: the name is a
/// run of printable non-colon characters after white space and comments,
/// then a colon (after more of those); the value has its leading white
/// space removed. `None` for a malformed line.
pub(crate) fn split_header(h: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut i = skip_lws_comments(h);
    let name_char = |c: u8| (33..=126).contains(&c) && c != b':';
    loop {
        let &c = h.get(i)?;
        if name_char(c) {
            break;
        }
        let j = skip_lws_comments(h.get(i..).unwrap_or(&[]));
        i += j.max(1);
    }
    let n = h
        .get(i..)
        .unwrap_or(&[])
        .iter()
        .take_while(|c| name_char(**c))
        .count();
    let name = h.get(i..i + n)?;
    let rest = h.get(i + n..)?;
    let at = skip_lws_comments(rest);
    if rest.get(at) != Some(&b':') {
        return None;
    }
    let v = rest.get(at + 1..)?;
    let lead = v.iter().take_while(|c| c.is_ascii_whitespace()).count();
    Some((name, v.get(lead..)?))
}

impl ContentType {
    /// Parses a `Content-Type` value; `None` when no `type/subtype` pair
    /// is found (Zeek then keeps the entity's previous type). `boundary`
    /// is the entity's boundary so far, which a later header without one
    /// keeps.
    pub fn parse(v: &[u8], boundary: Option<Vec<u8>>) -> Option<ContentType> {
        let (ty, off) = token(v, false)?;
        let rest = v.get(off..)?;
        let slash = skip_lws_comments(rest);
        if rest.get(slash) != Some(&b'/') {
            return None;
        }
        let rest = rest.get(slash + 1..)?;
        let (_subty, off) = token(rest, false)?;
        let mut params = rest.get(off..)?;
        let kind = if ty.eq_ignore_ascii_case(b"multipart") {
            Kind::Multipart
        } else if ty.eq_ignore_ascii_case(b"message") {
            Kind::Message
        } else {
            Kind::Other
        };
        let mut boundary = boundary;
        if kind != Kind::Other {
            // ParseFieldParameters.
            loop {
                let at = skip_lws_comments(params);
                if params.get(at) != Some(&b';') {
                    break;
                }
                params = params.get(at + 1..).unwrap_or(&[]);
                let Some((attr, off)) = token(params, false) else {
                    break;
                };
                let is_boundary = kind == Kind::Multipart && attr.eq_ignore_ascii_case(b"boundary");
                params = params.get(off..).unwrap_or(&[]);
                let at = skip_lws_comments(params);
                if params.get(at) != Some(&b'=') {
                    continue;
                }
                params = params.get(at + 1..).unwrap_or(&[]);
                match value(params, is_boundary) {
                    Some((val, end)) => {
                        if is_boundary {
                            let keep = val.len().min(BOUNDARY_KEEP);
                            boundary = Some(val.get(..keep).unwrap_or(&[]).to_vec());
                        }
                        params = params.get(end..).unwrap_or(&[]);
                    }
                    None => continue,
                }
            }
        }
        if kind == Kind::Multipart && boundary.is_none() {
            // "boundary delimiter is not specified": read as octets.
            return Some(ContentType {
                kind: Kind::Other,
                boundary: None,
            });
        }
        Some(ContentType { kind, boundary })
    }
}

#[derive(Debug)]
struct Entity {
    in_header: bool,
    ended: bool,
    kind: Kind,
    boundary: Option<Vec<u8>>,
}

impl Entity {
    fn new() -> Self {
        Entity {
            in_header: true,
            ended: false,
            kind: Kind::Other,
            boundary: None,
        }
    }
}

/// The mails of a mail protocol's session (SMTP `DATA`, POP3 `RETR`):
/// one [`Mime`] per mail, and whether a limit was reported yet.
#[derive(Debug)]
pub(crate) struct Mails {
    current: Option<Mime>,
    limits: MimeLimits,
    reported: bool,
}

impl Mails {
    pub fn new(limits: MimeLimits) -> Self {
        Mails {
            current: None,
            limits,
            reported: false,
        }
    }

    /// A line of the current mail (`BeginData` first if none is open).
    pub fn line(&mut self, line: &[u8], len: usize, cx: &mut Cx<'_>) {
        let limits = self.limits;
        let mail = self.current.get_or_insert_with(|| Mime::new(limits));
        mail.line(line, len);
        for w in mail.take_hits() {
            cx.limit_reached(w);
            self.reported = true;
        }
    }

    /// `EndData`: the next line starts a new mail.
    pub fn end(&mut self) {
        self.current = None;
    }

    /// True while a limit can still be reached: the parser must keep
    /// reading the session.
    pub fn watching(&self) -> bool {
        (self.limits.max_depth > 0 || self.limits.max_header_bytes > 0) && !self.reported
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delim {
    No,
    Boundary,
    Closing,
}

/// A root entity and the chain of its current children: `chain[i + 1]` is
/// `chain[i]`'s current child, at depth `i + 1`.
#[derive(Debug)]
pub(crate) struct Mime {
    chain: Vec<Entity>,
    header: HeaderLine,
    limits: MimeLimits,
    /// Weirds raised since the caller last took them.
    hits: Vec<Weird>,
    /// The last line-end switch since the caller last took it: HTTP's
    /// `SetCRLFAsEOL(0)` when a multipart part's headers end (true), back
    /// when such a part ends (false).
    crlf_only: Option<bool>,
}

impl Mime {
    /// A root entity that starts with its headers (an SMTP mail).
    pub fn new(limits: MimeLimits) -> Self {
        Mime {
            chain: vec![Entity::new()],
            header: HeaderLine::default(),
            limits,
            hits: Vec::new(),
            crlf_only: None,
        }
    }

    /// A root entity whose headers were read elsewhere (an HTTP message of
    /// this content type), now at the start of its body.
    pub fn body_of(ct: ContentType, limits: MimeLimits) -> Self {
        let mut m = Mime::new(limits);
        if let Some(root) = m.chain.first_mut() {
            root.in_header = false;
            root.kind = ct.kind;
            root.boundary = ct.boundary;
        }
        m.begin_body(0);
        m
    }

    /// The weirds raised since the last call.
    pub fn take_hits(&mut self) -> impl Iterator<Item = Weird> + '_ {
        self.hits.drain(..)
    }

    /// The line-end switch to apply, if one happened since the last call.
    pub fn take_crlf_only(&mut self) -> Option<bool> {
        self.crlf_only.take()
    }

    /// True once the root entity ended (its closing boundary).
    pub fn ended(&self) -> bool {
        self.chain.first().is_none_or(|e| e.ended)
    }

    /// `MIME_Entity::Deliver` on the root: one line without its terminator,
    /// `len` bytes long, of which `head` are kept.
    pub fn line(&mut self, head: &[u8], len: usize) {
        let mut i = 0;
        loop {
            let Some(e) = self.chain.get(i) else {
                return;
            };
            if e.ended {
                return;
            }
            if e.in_header {
                if len == 0 || head.first() == Some(&0) {
                    self.finish_header(i);
                    if let Some(e) = self.chain.get_mut(i) {
                        e.in_header = false;
                    }
                    if self.parent_is_multipart(i) {
                        self.crlf_only = Some(true);
                    }
                    self.begin_body(i);
                } else if head.first().copied().is_some_and(is_lws) {
                    let (done, hit) = self.header.cont(head, len, self.limits.max_header_bytes);
                    if let Some(h) = done {
                        self.parse_header(i, &h);
                    }
                    self.hits.extend(hit);
                } else if let Some(h) = self.header.start(head, len) {
                    self.parse_header(i, &h);
                }
                return;
            }
            // NewDataLine.
            if e.kind == Kind::Multipart {
                match delimiter(e.boundary.as_deref().unwrap_or(&[]), head) {
                    Delim::Boundary => {
                        self.end_child(i);
                        self.begin_child(i);
                        return;
                    }
                    Delim::Closing => {
                        self.end_child(i);
                        self.end_of_data(i);
                        return;
                    }
                    Delim::No => {}
                }
            }
            if e.kind == Kind::Other || i + 1 >= self.chain.len() {
                return;
            }
            i += 1;
        }
    }

    fn parse_header(&mut self, i: usize, h: &[u8]) {
        let Some((name, v)) = split_header(h) else {
            return;
        };
        if !name.eq_ignore_ascii_case(b"content-type") {
            return;
        }
        let Some(e) = self.chain.get_mut(i) else {
            return;
        };
        if let Some(ct) = ContentType::parse(v, e.boundary.take()) {
            e.kind = ct.kind;
            e.boundary = ct.boundary;
        }
    }

    fn finish_header(&mut self, i: usize) {
        if let Some(h) = self.header.finish() {
            self.parse_header(i, &h);
        }
    }

    fn begin_body(&mut self, i: usize) {
        if self.chain.get(i).is_some_and(|e| e.kind == Kind::Message) {
            self.begin_child(i);
        }
    }

    fn begin_child(&mut self, i: usize) {
        let max = self.limits.max_depth;
        if max > 0 && i as u64 >= max {
            self.hits.push(Weird::ExceededMimeMaxDepth);
            return;
        }
        if self.chain.len() >= MAX_CHAIN || self.chain.get(i).is_none_or(|e| e.ended) {
            return;
        }
        self.chain.truncate(i + 1);
        self.header = HeaderLine::default();
        self.chain.push(Entity::new());
    }

    /// `EndChildEntity`: the current child of `i` and all below it end.
    fn end_child(&mut self, i: usize) {
        if self.chain.len() > i + 1 {
            self.end_of_data(i + 1);
            self.chain.truncate(i + 1);
        }
    }

    fn end_of_data(&mut self, i: usize) {
        let Some(e) = self.chain.get(i) else {
            return;
        };
        if e.ended {
            return;
        }
        if e.in_header {
            self.finish_header(i);
        } else {
            self.end_child(i);
        }
        self.chain.truncate(i + 1);
        if let Some(e) = self.chain.get_mut(i) {
            e.in_header = false;
            e.ended = true;
        }
        if self.parent_is_multipart(i) {
            self.crlf_only = Some(false);
        }
    }

    fn parent_is_multipart(&self, i: usize) -> bool {
        i > 0
            && self
                .chain
                .get(i - 1)
                .is_some_and(|p| p.kind == Kind::Multipart)
    }
}

/// `CheckBoundaryDelimiter` on a kept line head.
fn delimiter(boundary: &[u8], head: &[u8]) -> Delim {
    let Some(rest) = head.strip_prefix(b"--") else {
        return Delim::No;
    };
    let Some(rest) = rest.strip_prefix(boundary) else {
        return Delim::No;
    };
    if rest.starts_with(b"--") {
        Delim::Closing
    } else {
        Delim::Boundary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: MimeLimits = MimeLimits {
        max_depth: 100,
        max_header_bytes: 65536,
    };

    fn feed(m: &mut Mime, text: &str) -> Vec<Weird> {
        for l in text.split("\r\n") {
            m.line(l.as_bytes(), l.len());
        }
        m.take_hits().collect()
    }

    #[test]
    fn content_type_as_zeek_reads_it() {
        let ct = |v: &str| ContentType::parse(v.as_bytes(), None);
        assert_eq!(
            ct("multipart/mixed; boundary=\"==a b==\""),
            Some(ContentType {
                kind: Kind::Multipart,
                boundary: Some(b"==a b==".to_vec())
            })
        );
        // A boundary token runs up to a quote: `;` is part of it.
        assert_eq!(
            ct("Multipart/Mixed (c) ; charset=x;BOUNDARY=ab;x=y").and_then(|c| c.boundary),
            Some(b"ab;x=y".to_vec())
        );
        assert_eq!(ct("multipart/mixed").map(|c| c.kind), Some(Kind::Other));
        assert_eq!(ct("message/rfc822").map(|c| c.kind), Some(Kind::Message));
        assert_eq!(ct("text"), None);
        assert_eq!(
            ct("multipart/x; boundary=\"q\\\"p\"").and_then(|c| c.boundary),
            Some(b"q\"p".to_vec())
        );
    }

    #[test]
    fn header_names_as_zeek_splits_them() {
        assert_eq!(
            split_header(b"Content-Type : a/b"),
            Some((&b"Content-Type"[..], &b"a/b"[..]))
        );
        assert_eq!(split_header(b"Content Type: a/b"), None);
        assert_eq!(split_header(b"no colon"), None);
    }

    #[test]
    fn nesting_beyond_max_depth_is_a_limit() {
        let mut m = Mime::new(MimeLimits {
            max_depth: 3,
            max_header_bytes: 0,
        });
        let mut text = String::new();
        for _ in 0..5 {
            text.push_str("Content-Type: message/rfc822\r\n\r\n");
        }
        assert_eq!(feed(&mut m, &text), vec![Weird::ExceededMimeMaxDepth]);
        assert_eq!(m.chain.len(), 4);
        // The default depth is far from reached.
        let mut m = Mime::new(LIMITS);
        assert!(feed(&mut m, &text).is_empty());
    }

    #[test]
    fn multipart_parts_are_siblings_not_children() {
        let mut m = Mime::new(MimeLimits {
            max_depth: 1,
            max_header_bytes: 0,
        });
        let text = "Content-Type: multipart/mixed;\r\n boundary=\"b1\"\r\n\r\npreamble\r\n\
                    --b1\r\nContent-Type: text/plain\r\n\r\nx\r\n\
                    --b1\r\nContent-Type: multipart/alternative; boundary=b2\r\n\r\n\
                    --b2\r\n\r\ny\r\n--b2--\r\n\
                    --b1--\r\nepilogue\r\n--b1\r\n";
        assert_eq!(feed(&mut m, text), vec![Weird::ExceededMimeMaxDepth]);
        assert!(m.ended());
        let mut m = Mime::new(MimeLimits {
            max_depth: 2,
            max_header_bytes: 0,
        });
        assert!(feed(&mut m, text).is_empty());
        assert!(m.ended());
    }

    #[test]
    fn long_folded_header_is_a_limit() {
        let mut m = Mime::new(MimeLimits {
            max_depth: 100,
            max_header_bytes: 100,
        });
        let mut text = String::from("Subject: x\r\n");
        for _ in 0..20 {
            text.push_str(" 0123456789\r\n");
        }
        text.push_str("\r\nbody\r\n");
        let hits = feed(&mut m, &text);
        assert!(!hits.is_empty());
        assert!(hits.iter().all(|w| *w == Weird::ExceededMimeMaxHeaderBytes));
    }

    #[test]
    fn body_of_a_message_starts_a_child() {
        let mut m = Mime::body_of(
            ContentType {
                kind: Kind::Message,
                boundary: None,
            },
            MimeLimits {
                max_depth: 1,
                max_header_bytes: 0,
            },
        );
        assert_eq!(m.chain.len(), 2);
        assert_eq!(
            feed(&mut m, "Content-Type: message/rfc822\r\n\r\n"),
            vec![Weird::ExceededMimeMaxDepth]
        );
    }

    #[test]
    fn unlimited_depth_is_still_bounded() {
        let mut m = Mime::new(MimeLimits {
            max_depth: 0,
            max_header_bytes: 0,
        });
        for _ in 0..(MAX_CHAIN * 2) {
            m.line(b"Content-Type: message/rfc822", 28);
            m.line(b"", 0);
        }
        assert_eq!(m.chain.len(), MAX_CHAIN);
        assert_eq!(m.take_hits().count(), 0);
    }
}
