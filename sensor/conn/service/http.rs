//! HTTP (`src/analyzer/protocol/http/HTTP.cc`), attached on 80, 81, 631,
//! 1080, 3128, 8000, 8080, 8888/tcp or by the `dpd_http_client` /
//! `dpd_http_server` signatures.
//!
//! Confirmation: every request line that parses (`HTTP_RequestLine`: a
//! method token, white space, and a URI; without an `HTTP/x.y` version the
//! method must have 3+ characters) confirms (`HTTP_Request`), as does a
//! reply line while a request is unanswered. Violations: a line that is not
//! a request line where a request is expected (first request, or any
//! later one on a keep-alive connection), and a non-empty line that is not a
//! reply line (`HTTP/` + code) where a reply is expected; either stops that
//! side. Nothing is parsed on partial connections.
//!
//! Messages are framed as `HTTP_Entity` does so the next request/reply
//! line is found: headers up to the empty line, then no body (HEAD, 1xx,
//! 204, 304, requests without length), chunked bodies (HTTP/1.1 only),
//! Content-Length bodies, `multipart/*` bodies up to their closing boundary
//! (or their Content-Length), `message/*` bodies as lines, or everything up
//! to the end of the connection (`Connection: close` or
//! compressed without length; replies without length are read as lines to
//! the end). A content gap inside a body with known length is skipped;
//! any other gap stops the side (and both sides for a request gap). After
//! a successful `CONNECT` reply, and after a `101` upgrade, the stream goes
//! to a new PIA (DPD on the tunnel) or, for WebSocket, to nothing we parse.
//!
//! Requests waiting for their reply are counted as the HTTP scripts count
//! `c$http_state$pending`: when a new request finds more than
//! `HTTP::max_pending_requests` (100; 0: no limit) of them, the scripts
//! raise `HTTP_excessive_pipelining` (an `X` in history) and flush them.
//! Since that can happen at any point of a long connection (one-sided
//! captures, a reply side stopped by a gap), a confirmed parser keeps
//! reading requests past `DPD::ignore_violations_after` until it has.
//!
//! Headers are read as `MIME_Entity` reads them (continuation lines joined,
//! `MIME::max_header_bytes`), and `multipart/*` and `message/*` bodies are
//! walked as MIME entities for `MIME::max_depth` (see [`super::mime`]);
//! inside a multipart part only CRLF ends a line, as in Zeek.
//!
//! Limits: lines are kept up to [`LINE_KEEP`] bytes (the rest is counted),
//! at most [`MAX_UNANSWERED`] requests are remembered.

use std::collections::VecDeque;

use super::line::{LineSplitter, Owned};
use super::mime::{split_header, ContentType, HeaderLine, Kind, Mime, MimeLimits};
use super::{AnalyzerLimits, ChildKind, Cx, Parser, GIVE_UP_AFTER};
use crate::decode::weird::Weird;

const LINE_KEEP: usize = 2048;
const MAX_UNANSWERED: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReqState {
    Line,
    Message,
    Nothing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RepState {
    Line,
    Message,
    Nothing,
    /// HTTP/0.9: raw data from the server.
    Http09,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Maybe,
    Expected,
    NotExpected,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Body {
    Headers,
    ChunkSize,
    ChunkData,
    ChunkCrlf,
    Trailer,
    /// Content-Length bytes, counted by the splitter's plain delivery.
    Plain,
    /// Multipart or message with Content-Length: lines counted with
    /// their CRLF, up to the length or the closing boundary.
    CountedLines(i64),
    /// Multipart or message without length: lines up to the closing
    /// boundary (a message has none).
    Multipart,
    /// Lines or bytes to the end of the connection.
    Forever,
}

#[derive(Debug)]
struct Msg {
    expect: Expect,
    body: Body,
    content_length: Option<u64>,
    chunked: bool,
    compressed: bool,
    /// The top-level entity's media type as far as it matters.
    content: ContentType,
    /// The header being read, with its continuation lines.
    header: HeaderLine,
    /// The MIME entities of a multipart or message body.
    mime: Option<Mime>,
    /// Body bytes seen (a gap before any is not skipped).
    body_seen: u64,
}

impl Msg {
    fn new(expect: Expect) -> Self {
        Msg {
            expect,
            body: Body::Headers,
            content_length: None,
            chunked: false,
            compressed: false,
            content: ContentType {
                kind: Kind::Other,
                boundary: None,
            },
            header: HeaderLine::default(),
            mime: None,
            body_seen: 0,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Http {
    lines: [LineSplitter; 2],
    req: ReqState,
    rep: RepState,
    req_msg: Option<Msg>,
    rep_msg: Option<Msg>,
    req_version: (u8, u8),
    rep_version: (u8, u8),
    keep_alive: bool,
    connection_close: bool,
    num_requests: u32,
    /// Unanswered requests: true if the method reads as HEAD.
    unanswered: VecDeque<bool>,
    connect_request: bool,
    upgrade_connection: bool,
    upgrade_protocol: Option<bool>,
    reply_code: u16,
    request_ongoing: bool,
    reply_ongoing: bool,
    scratch: Vec<u8>,
    /// The scripts' `current_request` and the replies done since (their
    /// difference is `|pending|`).
    requests: u64,
    replies_done: u64,
    /// `HTTP::max_pending_requests` (0: none).
    max_pending: u64,
    /// `MIME::max_depth` and `MIME::max_header_bytes`.
    mime_limits: MimeLimits,
    /// Limits reached and not yet handed to the connection.
    hits: Vec<Weird>,
    /// A limit was reported: the `X` is in history, so nothing further
    /// this parser could find changes conn.log.
    limit_reported: bool,
}

/// `is_HTTP_token_char`.
fn is_token_char(c: u8) -> bool {
    c > 31 && c < 127 && !b" \t()<>@,;:\\\"/[]?={}".contains(&c)
}

fn is_uri_char(c: u8) -> bool {
    c == 0 || c.is_ascii_alphanumeric() || b":/?#[]@!$&'()*+,;=-_.~%".contains(&c)
}

fn skip_ws(l: &[u8], mut i: usize) -> usize {
    while matches!(l.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

fn prefix_ci(l: &[u8], at: usize, p: &[u8]) -> bool {
    l.get(at..at + p.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(p))
}

/// `HTTP_Version`: `[0-9].[0-9]`, else unset.
fn parse_version(v: &[u8]) -> (u8, u8) {
    match v {
        [a, b'.', b, ..] if a.is_ascii_digit() && b.is_ascii_digit() => (a - b'0', b - b'0'),
        _ => (0, 0),
    }
}

/// The first token of a header value (`get_value_token`).
fn value_token(v: &[u8]) -> &[u8] {
    let s = v
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t'))
        .unwrap_or(v.len());
    let v = v.get(s..).unwrap_or(&[]);
    let e = v
        .iter()
        .position(|&c| !(c > 32 && c < 127 && !b"()<>@,;:\\\"/[]?=".contains(&c)))
        .unwrap_or(v.len());
    v.get(..e).unwrap_or(&[])
}

/// `atoi_n` (leading digits, at least one; overflow fails).
fn parse_num(v: &[u8], radix: u32) -> Option<u64> {
    let mut n: u64 = 0;
    let mut any = false;
    for &c in v {
        let Some(d) = (c as char).to_digit(radix) else {
            break;
        };
        n = n.checked_mul(u64::from(radix))?.checked_add(u64::from(d))?;
        any = true;
    }
    any.then_some(n)
}

enum Outcome {
    /// Keep parsing lines of this chunk.
    Go,
    /// The stream now belongs to a child.
    Child(ChildKind),
}

impl Http {
    pub fn new() -> Self {
        Http {
            lines: [LineSplitter::new(LINE_KEEP), LineSplitter::new(LINE_KEEP)],
            req: ReqState::Line,
            rep: RepState::Line,
            req_msg: None,
            rep_msg: None,
            req_version: (0, 0),
            rep_version: (0, 0),
            keep_alive: false,
            connection_close: false,
            num_requests: 0,
            unanswered: VecDeque::new(),
            connect_request: false,
            upgrade_connection: false,
            upgrade_protocol: None,
            reply_code: 0,
            request_ongoing: false,
            reply_ongoing: false,
            scratch: Vec::new(),
            requests: 0,
            replies_done: 0,
            max_pending: AnalyzerLimits::default().http_max_pending_requests,
            mime_limits: AnalyzerLimits::default().mime,
            hits: Vec::new(),
            limit_reported: false,
        }
    }

    pub fn with_limits(mut self, limits: &AnalyzerLimits) -> Self {
        self.max_pending = limits.http_max_pending_requests;
        self.mime_limits = limits.mime;
        self
    }

    /// Hands the limits reached to the connection.
    fn report_hits(&mut self, cx: &mut Cx<'_>) {
        for w in self.hits.drain(..) {
            cx.limit_reached(w);
            self.limit_reported = true;
        }
    }

    /// `http_request` in `main.zeek`: requests still waiting for a reply
    /// beyond the limit are logged out and forgotten.
    fn count_request(&mut self, cx: &mut Cx<'_>) {
        // HTTP_response_before_request: fast-forward.
        self.requests = self.requests.max(self.replies_done);
        let pending = self.requests - self.replies_done;
        if self.max_pending > 0 && pending > self.max_pending {
            cx.limit_reached(Weird::HttpExcessivePipelining);
            self.limit_reported = true;
            self.replies_done = self.requests;
        }
        self.requests += 1;
    }

    fn set_version(&mut self, is_req: bool, v: (u8, u8)) {
        if is_req {
            self.req_version = v;
        } else {
            self.rep_version = v;
        }
        if v.0 > 1 || (v.0 == 1 && v.1 > 0) {
            self.keep_alive = true;
        }
    }

    /// `HTTP_RequestLine`; returns whether it parsed, and the method.
    fn request_line<'l>(&mut self, l: &'l [u8], len: usize) -> Option<&'l [u8]> {
        let end_method = l.iter().position(|&c| !is_token_char(c)).unwrap_or(l.len());
        if end_method == 0 {
            return None;
        }
        let rest = skip_ws(l, end_method);
        if rest == end_method {
            return None;
        }
        // ParseRequest.
        let mut end_uri = rest;
        while l.get(end_uri).is_some_and(|&c| is_uri_char(c)) {
            end_uri += 1;
        }
        let end = l.len();
        if end_uri >= end && prefix_ci(l, rest, b"HTTP/") {
            end_uri = rest;
        }
        let mut version_at = None;
        let mut vs = end_uri;
        while vs < end {
            end_uri = vs;
            vs = skip_ws(l, vs);
            if prefix_ci(l, vs, b"HTTP/") {
                version_at = Some(vs);
                break;
            }
            vs += 1;
        }
        match version_at {
            None => {
                // A line longer than we keep: assume its version is past
                // what we have rather than calling it HTTP/0.9.
                if len > l.len() {
                    self.set_version(true, (1, 1));
                } else {
                    self.set_version(true, (0, 9));
                    if end_method < 3 || end_uri <= rest {
                        return None;
                    }
                }
            }
            Some(v) => {
                if v + 8 <= l.len() {
                    let ver = parse_version(l.get(v + 5..).unwrap_or(&[]));
                    self.set_version(true, ver);
                }
            }
        }
        l.get(..end_method)
    }

    /// `HTTP_ReplyLine`.
    fn reply_line(&mut self, l: &[u8]) -> bool {
        if !prefix_ci(l, 0, b"HTTP/") {
            return false;
        }
        let v = parse_version(l.get(5..).unwrap_or(&[]));
        self.set_version(false, v);
        let Some(ws) = l.iter().skip(5).position(|&c| c == b' ' || c == b'\t') else {
            return false;
        };
        let rest = skip_ws(l, 5 + ws);
        let Some(code) = l.get(rest..rest + 3) else {
            return false;
        };
        self.reply_code = if code.iter().all(u8::is_ascii_digit) {
            code.iter().fold(0, |a, &c| a * 10 + u16::from(c - b'0'))
        } else {
            0
        };
        true
    }

    fn expect_reply_body(&self) -> Expect {
        if self.unanswered.front() == Some(&true) {
            return Expect::NotExpected;
        }
        let c = self.reply_code;
        if (100..200).contains(&c) || c == 204 || c == 304 {
            return Expect::NotExpected;
        }
        Expect::Expected
    }

    fn request_made(&mut self, interrupted: bool) {
        if !self.request_ongoing {
            return;
        }
        self.request_ongoing = false;
        self.req_msg = None;
        self.lines[0].set_crlf_only(false);
        self.req = if interrupted {
            ReqState::Nothing
        } else {
            ReqState::Line
        };
    }

    /// `ReplyMade`; returns a child when the reply completed an upgrade.
    fn reply_made(&mut self, interrupted: bool) -> Option<ChildKind> {
        if !self.reply_ongoing {
            return None;
        }
        self.reply_ongoing = false;
        self.rep_msg = None;
        self.lines[1].set_crlf_only(false);
        let code = self.reply_code;
        if !(100..200).contains(&code) {
            self.unanswered.pop_front();
            // http_message_done: the reply's entry leaves `pending`.
            self.replies_done += 1;
        }
        let mut child = None;
        if code == 101 && self.unanswered.len() == 1 && self.upgrade_connection {
            if let Some(websocket) = self.upgrade_protocol {
                child = Some(if websocket {
                    ChildKind::Drop
                } else {
                    ChildKind::Pia
                });
            }
        }
        self.reply_code = 0;
        self.upgrade_connection = false;
        self.upgrade_protocol = None;
        self.rep = if interrupted || child.is_some() {
            RepState::Nothing
        } else {
            RepState::Line
        };
        child
    }

    /// Ends the current message of one side normally.
    fn message_done(&mut self, is_orig: bool) -> Option<ChildKind> {
        if is_orig {
            self.request_made(false);
            None
        } else {
            self.reply_made(false)
        }
    }

    /// One finished header (continuation lines joined).
    fn header(&mut self, is_orig: bool, line: &[u8]) {
        let Some((name, value)) = split_header(line) else {
            return;
        };
        let tok = value_token(value);
        let eq = |a: &[u8], b: &[u8]| a.eq_ignore_ascii_case(b);
        // HTTP_Analyzer::HTTP_Header.
        if eq(name, b"connection") {
            if is_orig {
                if eq(tok, b"keep-alive") {
                    self.keep_alive = true;
                }
            } else if eq(tok, b"close") {
                self.connection_close = true;
            } else if eq(tok, b"upgrade") {
                self.upgrade_connection = true;
            }
        }
        if !is_orig && eq(name, b"upgrade") {
            self.upgrade_protocol = Some(eq(tok, b"websocket"));
        }
        let version = if self.request_ongoing {
            self.req_version
        } else {
            self.rep_version
        };
        let Some(msg) = (if is_orig {
            self.req_msg.as_mut()
        } else {
            self.rep_msg.as_mut()
        }) else {
            return;
        };
        // HTTP_Entity::SubmitHeader (top-level entity).
        if eq(name, b"content-length") {
            if let Some(n) = parse_num(tok, 10) {
                msg.content_length = Some(n);
            }
        } else if eq(name, b"transfer-encoding") {
            if eq(tok, b"chunked") && version == (1, 1) {
                msg.chunked = true;
            }
        } else if eq(name, b"content-encoding") {
            if eq(tok, b"gzip") || eq(tok, b"x-gzip") || eq(tok, b"deflate") {
                msg.compressed = true;
            }
        } else if eq(name, b"content-type") {
            if let Some(ct) = ContentType::parse(value, msg.content.boundary.take()) {
                msg.content = ct;
            }
        }
    }

    /// `SubmitAllHeaders`: decides how the body is delimited. Returns true
    /// if the message is complete.
    fn end_of_headers(&mut self, is_orig: bool) -> bool {
        let close = self.connection_close;
        let limits = self.mime_limits;
        let d = usize::from(!is_orig);
        let Some(msg) = (if is_orig {
            self.req_msg.as_mut()
        } else {
            self.rep_msg.as_mut()
        }) else {
            return true;
        };
        if msg.body == Body::Trailer || msg.expect == Expect::NotExpected {
            return true;
        }
        if msg.content.kind != Kind::Other {
            match msg.content_length {
                Some(0) => return true,
                Some(n) => msg.body = Body::CountedLines(i64::try_from(n).unwrap_or(i64::MAX)),
                None => msg.body = Body::Multipart,
            }
            msg.mime = Some(Mime::body_of(msg.content.clone(), limits));
        } else if msg.chunked {
            msg.body = Body::ChunkSize;
        } else if let Some(n) = msg.content_length {
            if n == 0 {
                return true;
            }
            msg.body = Body::Plain;
            self.lines[d].set_plain(n);
        } else if close || msg.compressed {
            msg.body = Body::Forever;
            self.lines[d].set_plain(u64::MAX);
        } else if msg.expect != Expect::Expected {
            return true;
        } else {
            msg.body = Body::Forever;
        }
        false
    }

    /// A line within a message. Returns true when the message completed.
    fn message_line(&mut self, is_orig: bool, line: &[u8], len: usize) -> bool {
        let Some(msg) = (if is_orig {
            self.req_msg.as_mut()
        } else {
            self.rep_msg.as_mut()
        }) else {
            return false;
        };
        match msg.body.clone() {
            Body::Headers | Body::Trailer => {
                // MIME_Entity::Deliver in its headers.
                let headers_end = len == 0 || line.first() == Some(&0);
                let done = if headers_end {
                    msg.header.finish()
                } else if matches!(line.first(), Some(b' ' | b'\t')) {
                    let (done, hit) = msg
                        .header
                        .cont(line, len, self.mime_limits.max_header_bytes);
                    self.hits.extend(hit);
                    done
                } else {
                    msg.header.start(line, len)
                };
                if let Some(h) = done {
                    self.header(is_orig, &h);
                }
                if headers_end {
                    return self.end_of_headers(is_orig);
                }
                false
            }
            Body::ChunkSize => {
                match parse_num(line, 16) {
                    Some(n) if n > 0 => {
                        msg.body = Body::ChunkData;
                        self.lines[usize::from(!is_orig)].set_plain(n);
                    }
                    _ => msg.body = Body::Trailer,
                }
                false
            }
            Body::ChunkCrlf => {
                msg.body = Body::ChunkSize;
                false
            }
            Body::CountedLines(left) => {
                msg.body_seen += len as u64;
                if Self::mime_line(msg, line, len, &mut self.hits, &mut self.lines, is_orig) {
                    return true;
                }
                let left = left - len as i64 - 2;
                if left <= 0 {
                    return true;
                }
                msg.body = Body::CountedLines(left);
                false
            }
            Body::Multipart => {
                msg.body_seen += len as u64;
                Self::mime_line(msg, line, len, &mut self.hits, &mut self.lines, is_orig)
            }
            Body::Forever | Body::Plain | Body::ChunkData => {
                msg.body_seen += len as u64;
                false
            }
        }
    }

    /// A body line of a multipart or message entity; returns true when the
    /// top-level entity ended (its closing boundary). Entering and leaving
    /// a multipart part switches the side's line ends as Zeek's
    /// `SetCRLFAsEOL` does.
    fn mime_line(
        msg: &mut Msg,
        line: &[u8],
        len: usize,
        hits: &mut Vec<Weird>,
        lines: &mut [LineSplitter; 2],
        is_orig: bool,
    ) -> bool {
        let Some(mime) = msg.mime.as_mut() else {
            return false;
        };
        mime.line(line, len);
        hits.extend(mime.take_hits());
        if let (Some(crlf_only), Some(s)) =
            (mime.take_crlf_only(), lines.get_mut(usize::from(!is_orig)))
        {
            s.set_crlf_only(crlf_only);
        }
        mime.ended()
    }

    /// Plain-delivered body bytes; returns true when the message completed.
    fn message_plain(&mut self, is_orig: bool, n: usize) -> bool {
        let d = usize::from(!is_orig);
        let left = self.lines[d].plain_remaining();
        let Some(msg) = (if is_orig {
            self.req_msg.as_mut()
        } else {
            self.rep_msg.as_mut()
        }) else {
            return false;
        };
        msg.body_seen += n as u64;
        if left > 0 {
            return false;
        }
        match msg.body {
            Body::Plain => true,
            Body::ChunkData => {
                msg.body = Body::ChunkCrlf;
                false
            }
            _ => false,
        }
    }

    fn orig_line(&mut self, line: &[u8], len: usize, cx: &mut Cx<'_>) {
        match self.req {
            ReqState::Line => {
                let method = self.request_line(line, len).map(|m| {
                    (
                        m.len() <= 4 && prefix_ci(b"HEAD", 0, m),
                        m.len() <= 7 && prefix_ci(b"CONNECT", 0, m),
                    )
                });
                match method {
                    Some((head, connect)) => {
                        self.count_request(cx);
                        self.num_requests += 1;
                        self.req = ReqState::Message;
                        self.request_ongoing = true;
                        if self.unanswered.len() >= MAX_UNANSWERED {
                            self.unanswered.pop_front();
                        }
                        self.unanswered.push_back(head);
                        cx.confirm();
                        if connect {
                            self.connect_request = true;
                        }
                        self.req_msg = Some(Msg::new(Expect::Maybe));
                        if self.req_version == (0, 9) {
                            if self.rep_msg.is_some() {
                                self.rep_msg = None;
                            }
                            self.rep = RepState::Http09;
                        }
                    }
                    None => {
                        let expected = self.num_requests == 0 || self.keep_alive;
                        if expected && len != 0 {
                            cx.violation();
                            self.req = ReqState::Nothing;
                        }
                    }
                }
            }
            ReqState::Message => {
                if self.message_line(true, line, len) {
                    self.message_done(true);
                }
            }
            ReqState::Nothing => {}
        }
    }

    fn resp_line(&mut self, line: &[u8], len: usize, cx: &mut Cx<'_>) -> Outcome {
        match self.rep {
            RepState::Line => {
                if self.reply_line(line) {
                    if !self.unanswered.is_empty() {
                        cx.confirm();
                    }
                    if matches!(self.reply_code, 401 | 407) {
                        cx.auth_failure();
                    }
                    self.rep = RepState::Message;
                    self.reply_ongoing = true;
                    if self.connect_request && self.reply_code != 200 {
                        self.connect_request = false;
                    }
                    self.rep_msg = Some(Msg::new(self.expect_reply_body()));
                } else if len != 0 {
                    cx.violation();
                    self.rep = RepState::Nothing;
                }
            }
            RepState::Message => {
                if self.message_line(false, line, len) {
                    if let Some(c) = self.message_done(false) {
                        return Outcome::Child(c);
                    }
                }
                if self.connect_request && len == 0 {
                    return Outcome::Child(ChildKind::Pia);
                }
            }
            RepState::Nothing | RepState::Http09 => {}
        }
        Outcome::Go
    }

    fn plain(&mut self, is_orig: bool, n: usize) -> Outcome {
        if self.message_plain(is_orig, n) {
            if let Some(c) = self.message_done(is_orig) {
                return Outcome::Child(c);
            }
        }
        Outcome::Go
    }
}

impl Parser for Http {
    fn deliver(&mut self, is_orig: bool, data: &[u8], cx: &mut Cx<'_>) -> usize {
        if cx.partial {
            return data.len();
        }
        let d = usize::from(!is_orig);
        if !is_orig && self.rep == RepState::Http09 {
            if self.rep_msg.is_none() {
                if !self.unanswered.is_empty() {
                    cx.confirm();
                    self.unanswered.pop_front();
                }
                self.rep_msg = Some(Msg::new(Expect::Expected));
            }
            return data.len();
        }
        let mut rest = data;
        let mut line = std::mem::take(&mut self.scratch);
        let mut used = data.len();
        while let Some(piece) = self.lines[d].next_owned(&mut rest, &mut line) {
            let outcome = match piece {
                Owned::Line(len) => {
                    if is_orig {
                        self.orig_line(&line, len, cx);
                        Outcome::Go
                    } else {
                        self.resp_line(&line, len, cx)
                    }
                }
                Owned::Plain(p) => self.plain(is_orig, p.len()),
            };
            self.report_hits(cx);
            if let Outcome::Child(c) = outcome {
                cx.child(c);
                used = data.len() - rest.len();
                break;
            }
            if is_orig && self.req == ReqState::Nothing {
                break;
            }
            if !is_orig && self.rep == RepState::Nothing {
                break;
            }
            if !is_orig && self.rep == RepState::Http09 {
                break;
            }
        }
        self.scratch = line;
        used
    }

    fn undelivered(&mut self, is_orig: bool, len: u64, _cx: &mut Cx<'_>) {
        let d = usize::from(!is_orig);
        let plain = self.lines[d].plain_remaining();
        let msg = if is_orig {
            self.req_msg.as_mut()
        } else {
            self.rep_msg.as_mut()
        };
        if let Some(msg) = msg {
            let inside = msg.body_seen > 0
                && matches!(msg.body, Body::Plain | Body::ChunkData)
                && plain >= len;
            if inside {
                msg.body_seen = msg.body_seen.saturating_add(len);
                self.lines[d].set_plain(plain - len);
                if plain == len {
                    // The body ended inside the gap; an upgrade completed
                    // this way is not followed.
                    let _ = self.plain(is_orig, 0);
                }
                return;
            }
        }
        // Outside a body: stop parsing this side (a request gap also ends
        // an ongoing reply).
        if is_orig {
            self.request_made(true);
            self.reply_made(true);
            self.req = ReqState::Nothing;
        } else {
            self.reply_made(true);
            self.rep = RepState::Nothing;
        }
    }

    fn eof(&mut self, is_orig: bool, cx: &mut Cx<'_>) {
        if cx.partial {
            return;
        }
        let d = usize::from(!is_orig);
        let mut line = std::mem::take(&mut self.scratch);
        let flushed = self.lines[d].flush_owned(&mut line);
        let mut child = None;
        if let Some(len) = flushed {
            if is_orig {
                self.orig_line(&line, len, cx);
            } else if let Outcome::Child(c) = self.resp_line(&line, len, cx) {
                child = Some(c);
            }
        }
        self.scratch = line;
        self.report_hits(cx);
        if let Some(c) = child {
            cx.child(c);
            return;
        }
        if is_orig {
            self.request_made(false);
        } else if let Some(c) = self.reply_made(false) {
            cx.child(c);
        }
    }

    fn finished(&self, confirmed: bool, settled: bool, seen: u64) -> bool {
        // Pipelining can pass its limit late in a connection: while it
        // may (requests still parsed, limit not reported), keep going.
        // So can the MIME limits, on either side.
        let pipelining_open = self.max_pending > 0 && self.req != ReqState::Nothing;
        let mime = self.mime_limits;
        let mime_open = (mime.max_depth > 0 || mime.max_header_bytes > 0)
            && (self.req != ReqState::Nothing || self.rep != RepState::Nothing);
        let limits_open = !self.limit_reported && (pipelining_open || mime_open);
        (confirmed && settled && !limits_open)
            || (!confirmed && seen > GIVE_UP_AFTER)
            || (self.req == ReqState::Nothing && self.rep == RepState::Nothing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::service::{ConnInfo, Note, Notes, L4};

    fn feed(h: &mut Http, is_orig: bool, data: &[u8]) -> (Notes, usize) {
        let i = ConnInfo {
            proto: L4::Tcp,
            orig_h: "10.0.0.1".parse().unwrap(),
            orig_p: 40000,
            resp_h: "10.0.0.2".parse().unwrap(),
            resp_p: 80,
        };
        let mut notes = Notes::new();
        let mut cx = Cx {
            info: &i,
            partial: false,
            notes: &mut notes,
        };
        let used = h.deliver(is_orig, data, &mut cx);
        (notes, used)
    }

    fn limits_in(n: &Notes) -> usize {
        n.iter()
            .filter(|n| **n == Note::LimitReached(Weird::HttpExcessivePipelining))
            .count()
    }

    #[test]
    fn excessive_pipelining_at_the_default() {
        let mut h = Http::new();
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        // 101 requests pending are still fine...
        for _ in 0..101 {
            assert_eq!(limits_in(&feed(&mut h, true, req).0), 0);
        }
        assert!(!h.finished(true, true, 1 << 20));
        // ...the 102nd finds 101 > 100.
        assert_eq!(limits_in(&feed(&mut h, true, req).0), 1);
        assert!(h.finished(true, true, 1 << 20));
    }

    #[test]
    fn answered_requests_leave_pending_and_limit_is_settable() {
        let mut l = AnalyzerLimits::default();
        l.set("HTTP::max_pending_requests", 2);
        let mut h = Http::new().with_limits(&l);
        let req = b"GET / HTTP/1.1\r\n\r\n";
        let rep = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        for _ in 0..10 {
            assert_eq!(limits_in(&feed(&mut h, true, req).0), 0);
            assert_eq!(limits_in(&feed(&mut h, false, rep).0), 0);
        }
        // Three unanswered, then a fourth: 3 > 2.
        let three = req.repeat(3);
        assert_eq!(limits_in(&feed(&mut h, true, &three).0), 0);
        assert_eq!(limits_in(&feed(&mut h, true, req).0), 1);
        // 0: no limit, and the parser may stop once settled (with the
        // MIME limits off too).
        l.set("HTTP::max_pending_requests", 0);
        assert!(!Http::new().with_limits(&l).finished(true, true, 0));
        l.set("MIME::max_depth", 0);
        l.set("MIME::max_header_bytes", 0);
        let mut h = Http::new().with_limits(&l);
        assert_eq!(limits_in(&feed(&mut h, true, &req.repeat(300)).0), 0);
        assert!(h.finished(true, true, 0));
    }

    #[test]
    fn request_confirms_reply_ok() {
        let mut h = Http::new();
        let (n, _) = feed(&mut h, true, b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(n.as_slice(), &[Note::Confirm]);
        let (n, _) = feed(
            &mut h,
            false,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        );
        assert_eq!(n.as_slice(), &[Note::Confirm]);
        assert_eq!(h.rep, RepState::Line);
        let (n, _) = feed(&mut h, true, b"GET /2 HTTP/1.1\r\n\r\n");
        assert_eq!(n.as_slice(), &[Note::Confirm]);
        let (n, _) = feed(
            &mut h,
            false,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nHTTP/1.1 304 x\r\n\r\n",
        );
        assert_eq!(n.as_slice(), &[Note::Confirm]);
        assert_eq!(h.rep, RepState::Line);
    }

    /// Refused credentials are noted per reply (brute force evidence);
    /// other errors are not.
    #[test]
    fn refused_credentials_are_noted() {
        let mut h = Http::new();
        for (req, reply, want) in [
            (
                &b"POST /login HTTP/1.1\r\nContent-Length: 3\r\n\r\nx=1"[..],
                &b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"[..],
                true,
            ),
            (
                b"GET /a HTTP/1.1\r\n\r\n",
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                false,
            ),
            (
                b"GET /b HTTP/1.1\r\n\r\n",
                b"HTTP/1.1 407 Proxy Auth\r\nContent-Length: 0\r\n\r\n",
                true,
            ),
        ] {
            feed(&mut h, true, req);
            let (n, _) = feed(&mut h, false, reply);
            assert_eq!(n.contains(&Note::AuthFailure), want, "{n:?}");
        }
    }

    #[test]
    fn ssh_reply_is_a_violation() {
        let mut h = Http::new();
        feed(&mut h, true, b"GET / HTTP/1.0\r\n\r\n");
        let (n, _) = feed(&mut h, false, b"SSH-2.0-OpenSSH_7.4\r\n");
        assert_eq!(n.as_slice(), &[Note::Violation]);
    }

    #[test]
    fn not_a_request() {
        let mut h = Http::new();
        let (n, _) = feed(&mut h, true, b"\x16\x03\x01\x02\x00\x01\r\n");
        assert_eq!(n.as_slice(), &[Note::Violation]);
        let mut h = Http::new();
        let (n, _) = feed(&mut h, true, b"SSH-2.0-OpenSSH\r\n");
        assert_eq!(n.as_slice(), &[Note::Violation]);
        // HTTP/0.9 needs a 3-letter method and a URI.
        let mut h = Http::new();
        let (n, _) = feed(&mut h, true, b"GO x\r\n");
        assert_eq!(n.as_slice(), &[Note::Violation]);
    }

    #[test]
    fn connect_hands_over() {
        let mut h = Http::new();
        feed(&mut h, true, b"CONNECT mail:25 HTTP/1.1\r\n\r\n");
        let reply = b"HTTP/1.1 200 Connection established\r\n\r\n220 mail ESMTP\r\n";
        let (n, used) = feed(&mut h, false, reply);
        assert_eq!(n.as_slice(), &[Note::Confirm, Note::Child(ChildKind::Pia)]);
        assert_eq!(&reply[used..], b"220 mail ESMTP\r\n");
    }

    #[test]
    fn no_crlf_request_flushed_at_eof() {
        let mut h = Http::new();
        let (n, _) = feed(&mut h, true, b"GET /");
        assert!(n.is_empty());
        let i = ConnInfo {
            proto: L4::Tcp,
            orig_h: "10.0.0.1".parse().unwrap(),
            orig_p: 1,
            resp_h: "10.0.0.2".parse().unwrap(),
            resp_p: 80,
        };
        let mut notes = Notes::new();
        let mut cx = Cx {
            info: &i,
            partial: false,
            notes: &mut notes,
        };
        h.eof(true, &mut cx);
        assert_eq!(notes.as_slice(), &[Note::Confirm]);
    }

    #[test]
    fn noise_never_panics() {
        let mut x: u32 = 99;
        for _ in 0..300 {
            let mut h = Http::new();
            feed(
                &mut h,
                true,
                b"POST / HTTP/1.1\r\nContent-Type: multipart/x; boundary=\"ab\"\r\n\r\n",
            );
            for _ in 0..10 {
                let mut buf = Vec::new();
                for _ in 0..(x % 200) {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    let b = (x >> 16) as u8;
                    buf.push(if b.is_multiple_of(7) { b'\n' } else { b });
                }
                feed(&mut h, x & 4 == 0, &buf);
            }
        }
    }

    fn mime_limit(n: &Notes, w: Weird) -> bool {
        n.contains(&Note::LimitReached(w))
    }

    #[test]
    fn nested_message_bodies_reach_mime_max_depth() {
        let mut l = AnalyzerLimits::default();
        l.set("MIME::max_depth", 2);
        let body = "Content-Type: message/rfc822\r\n\r\n".repeat(3) + "x\r\n";
        let req = format!(
            "POST / HTTP/1.1\r\nConnection: keep-alive\r\nContent-Type: message/rfc822\r\n\
             Content-Length: {}\r\n\r\n{body}GET /next HTTP/1.1\r\n\r\n",
            body.len()
        );
        let mut h = Http::new().with_limits(&l);
        let (n, _) = feed(&mut h, true, req.as_bytes());
        assert!(mime_limit(&n, Weird::ExceededMimeMaxDepth));
        // The body was framed by its length: the next request parses.
        assert_eq!(n.iter().filter(|n| **n == Note::Confirm).count(), 2);
        assert!(!n.contains(&Note::Violation));
        // At the default depth nothing is reached.
        let mut h = Http::new();
        let (n, _) = feed(&mut h, true, req.as_bytes());
        assert!(!n.iter().any(|n| matches!(n, Note::LimitReached(_))));
    }

    #[test]
    fn multipart_part_lines_end_only_at_crlf() {
        // Bare LFs inside a part do not end lines (Zeek switches its
        // line analyzer to CRLF only), so the counted length lands exactly
        // on the closing boundary and the next request is found.
        let body = "--b\r\nContent-Type: application/octet-stream\r\n\r\n1\n2\n3\n4\r\n--b--\r\n";
        let req = format!(
            "POST /u HTTP/1.1\r\nConnection: keep-alive\r\nContent-Type: multipart/form-data; \
             boundary=b\r\nContent-Length: {}\r\n\r\n{body}GET /next HTTP/1.1\r\n\r\n",
            body.len()
        );
        let mut h = Http::new();
        let (n, _) = feed(&mut h, true, req.as_bytes());
        assert_eq!(n.iter().filter(|n| **n == Note::Confirm).count(), 2);
        assert!(!n.contains(&Note::Violation));
        // After the message, a bare LF ends lines again.
        let (n, _) = feed(&mut h, true, b"GET /lf HTTP/1.1\n\n");
        assert_eq!(n.as_slice(), &[Note::Confirm]);
    }

    #[test]
    fn folded_header_beyond_mime_max_header_bytes() {
        let mut l = AnalyzerLimits::default();
        l.set("MIME::max_header_bytes", 40);
        let mut h = Http::new().with_limits(&l);
        let req = b"GET / HTTP/1.1\r\nX-Long: a\r\n 0123456789\r\n 0123456789\r\n \
                    0123456789\r\n 0123456789\r\n 0123456789\r\n\r\n";
        let (n, _) = feed(&mut h, true, req);
        assert!(mime_limit(&n, Weird::ExceededMimeMaxHeaderBytes));
        // A folded Content-Type still gives the boundary that frames the body.
        let body = "--q\r\n\r\nx\r\n--q--\r\n";
        let req = format!(
            "POST / HTTP/1.1\r\nConnection: keep-alive\r\nContent-Type: multipart/mixed;\r\n \
             boundary=q\r\n\r\n{body}GET /next HTTP/1.1\r\n\r\n"
        );
        let mut h = Http::new();
        let (n, _) = feed(&mut h, true, req.as_bytes());
        assert_eq!(n.iter().filter(|n| **n == Note::Confirm).count(), 2);
    }
}
