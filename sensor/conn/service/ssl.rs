//! SSL/TLS (`src/analyzer/protocol/ssl/SSL.cc`, `ssl-protocol.pac`,
//! `ssl-dtls-protocol.pac`, `ssl-analyzer.pac`, `tls-handshake-*.pac`),
//! attached on 443, 465, 563, 585, 614, 636, 989, 990, 992, 993, 995,
//! 5223/tcp, by the `dpd_tls_client`/`dpd_tls_server` signatures, or as
//! the child of a STARTTLS; and DTLS (`DTLS.cc`, `dtls-*.pac`, logged as
//! `dtls`), attached on 443/udp or by `dpd_dtls_client`.
//!
//! TLS confirms when a ClientHello (SSLv2-compatible or TLS, in a
//! handshake record that parses completely, extensions framing included)
//! carries a known version (SSLv2, SSLv3, TLS 1.0-1.3, DTLS, TLS 1.3
//! drafts). Violations: a first record header that is not SSLv2 or
//! TLS 3.0-3.3 with a content type 20-30, a later record with another
//! version, an unknown record type, an unknown handshake message type, a
//! handshake message that does not parse, an unsupported hello version;
//! after the record-layer violations (and unsupported hello versions)
//! nothing more is parsed (`SetSkip`). Records after a ChangeCipherSpec
//! (ignored once TLS 1.3 was negotiated) and application data of TLS 1.3
//! are encrypted and not parsed. Nothing is parsed on partial connections
//! or after a content gap.
//!
//! DTLS does the same per datagram for complete (unfragmented) handshake
//! messages; a STUN packet is skipped; a record with a bad version is a
//! violation only once confirmed and swallows the rest of the datagram.
//!
//! Limits: record headers need 5 bytes of state; a hello message is
//! buffered up to [`MAX_HELLO`] bytes (a longer one is checked on that
//! prefix); other handshake messages are skipped without buffering.

use super::{Cx, Parser, GIVE_UP_AFTER};

const MAX_HELLO: usize = 4096;

const SSLV20: u16 = 0x0002;
const SSLV30: u16 = 0x0300;
const TLSV10: u16 = 0x0301;
const TLSV11: u16 = 0x0302;
const TLSV12: u16 = 0x0303;
const TLSV13: u16 = 0x0304;
const DTLSV10: u16 = 0xfeff;
const DTLSV12: u16 = 0xfefd;
const DTLSV13: u16 = 0xfefc;

fn version_ok(v: u16) -> bool {
    v >> 8 == 0x7f
        || matches!(
            v,
            SSLV20 | SSLV30 | TLSV10 | TLSV11 | TLSV12 | TLSV13 | DTLSV10 | DTLSV12 | DTLSV13
        )
}

fn is_tls13(v: u16) -> bool {
    v == TLSV13 || v >> 8 == 0x7f
}

fn be16(d: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*d.get(i)?, *d.get(i + 1)?]))
}

/// What parsing a hello message found.
#[derive(Debug, PartialEq, Eq)]
enum Hello {
    /// Parsed; the version to check and, for a ServerHello, the version
    /// it selects.
    Ok { version: u16, chosen: u16 },
    /// binpac exception.
    Bad,
}

/// Walks the extensions block (`ext_len` then extensions until the end);
/// returns the selected version of a `supported_versions` extension of a
/// ServerHello.
fn extensions(d: &[u8], mut pos: usize, server: bool, truncated: bool) -> Result<Option<u16>, ()> {
    if pos >= d.len() {
        return if truncated || pos == d.len() {
            Ok(None)
        } else {
            Err(())
        };
    }
    // The ext_len field (one uint16 if anything is left).
    if d.len() - pos < 2 {
        return if truncated { Ok(None) } else { Err(()) };
    }
    pos += 2;
    let mut selected = None;
    while pos < d.len() {
        let (Some(t), Some(len)) = (be16(d, pos), be16(d, pos + 2)) else {
            return if truncated { Ok(selected) } else { Err(()) };
        };
        let start = pos + 4;
        let end = start + usize::from(len);
        if end > d.len() {
            return if truncated { Ok(selected) } else { Err(()) };
        }
        if server && t == 43 {
            selected = be16(d, start);
        }
        pos = end;
    }
    Ok(selected)
}

/// A ClientHello body (`ClientHello` in tls-handshake-protocol.pac).
fn client_hello(d: &[u8], truncated: bool) -> Hello {
    let Some(version) = be16(d, 0) else {
        return if truncated {
            Hello::Ok {
                version: 0,
                chosen: 0,
            }
        } else {
            Hello::Bad
        };
    };
    let ok_prefix = Hello::Ok { version, chosen: 0 };
    let mut pos = 34;
    let Some(&sid) = d.get(pos) else {
        return if truncated { ok_prefix } else { Hello::Bad };
    };
    pos += 1 + usize::from(sid);
    if version == DTLSV10 || version == DTLSV12 {
        let Some(&c) = d.get(pos) else {
            return if truncated { ok_prefix } else { Hello::Bad };
        };
        pos += 1 + usize::from(c);
    }
    let Some(cs) = be16(d, pos) else {
        return if truncated { ok_prefix } else { Hello::Bad };
    };
    pos += 2 + usize::from(cs / 2) * 2;
    let Some(&cm) = d.get(pos) else {
        return if truncated { ok_prefix } else { Hello::Bad };
    };
    pos += 1 + usize::from(cm);
    if pos > d.len() {
        return if truncated { ok_prefix } else { Hello::Bad };
    }
    match extensions(d, pos, false, truncated) {
        Ok(_) => ok_prefix,
        Err(()) => Hello::Bad,
    }
}

/// A ServerHello body (`ServerHelloChoice`).
fn server_hello(d: &[u8], truncated: bool) -> Hello {
    let Some(version) = be16(d, 0) else {
        return if truncated {
            Hello::Ok {
                version: 0,
                chosen: 0,
            }
        } else {
            Hello::Bad
        };
    };
    let ok = |chosen: Option<u16>| Hello::Ok {
        version,
        chosen: chosen.unwrap_or(version),
    };
    let mut pos = 34;
    if !is_tls13(version) {
        let Some(&sid) = d.get(pos) else {
            return if truncated { ok(None) } else { Hello::Bad };
        };
        pos += 1 + usize::from(sid) + 2 + 1;
    } else {
        pos += 2;
    }
    if pos > d.len() {
        return if truncated { ok(None) } else { Hello::Bad };
    }
    match extensions(d, pos, true, truncated) {
        Ok(sel) => ok(sel),
        Err(()) => Hello::Bad,
    }
}

/// Handshake message reassembly for one direction.
#[derive(Debug, Default)]
struct Hs {
    hdr: [u8; 4],
    hdr_len: u8,
    /// Body bytes still to come.
    left: u32,
    total: u32,
    msg_type: u8,
    buf: Vec<u8>,
}

#[derive(Debug, Default)]
struct Rec {
    hdr: [u8; 5],
    hdr_len: u8,
    /// Body bytes of the current record still to come.
    left: u32,
    content_type: u16,
    v2: bool,
    /// First bytes of an SSLv2 record body.
    v2_buf: Vec<u8>,
}

#[derive(Debug)]
pub(crate) struct Ssl {
    had_gap: bool,
    skip: bool,
    /// `record_layer_version_`; 0 unknown.
    record_layer: u16,
    chosen: u16,
    encrypted: [bool; 2],
    rec: [Rec; 2],
    hs: [Hs; 2],
}

enum Act {
    Go,
    Stop,
}

impl Ssl {
    pub fn new() -> Self {
        Ssl {
            had_gap: false,
            skip: false,
            record_layer: 0,
            chosen: 0,
            encrypted: [false; 2],
            rec: Default::default(),
            hs: Default::default(),
        }
    }

    fn skip_with_violation(&mut self, cx: &mut Cx<'_>) -> Act {
        cx.violation();
        self.skip = true;
        Act::Stop
    }

    /// `determine_ssl_record_layer` on a complete header; sets up the
    /// record or stops.
    fn record_header(&mut self, is_orig: bool, cx: &mut Cx<'_>) -> Act {
        let d = usize::from(!is_orig);
        let h = self.rec[d].hdr;
        let version = u16::from_be_bytes([h[1], h[2]]);
        if self.record_layer != 0
            && self.record_layer != SSLV20
            && !matches!(version, SSLV30 | TLSV10 | TLSV11 | TLSV12)
        {
            return self.skip_with_violation(cx);
        }
        let r = &mut self.rec[d];
        if self.record_layer == SSLV20 {
            // An SSLv2 connection stays SSLv2.
            r.v2 = true;
        } else if self.record_layer != 0 {
            r.v2 = false;
        } else if h[0] & 0x80 != 0 {
            if h[2] == 0x01 && is_orig {
                let v = u16::from_be_bytes([h[3], h[4]]);
                if !matches!(v, SSLV20 | SSLV30 | TLSV10 | TLSV11 | TLSV12) {
                    return self.skip_with_violation(cx);
                }
                r.v2 = true;
            } else if h[2] == 0x04 && h[4] < 2 && !is_orig {
                self.record_layer = SSLV20;
                self.rec[d].v2 = true;
            } else {
                return self.skip_with_violation(cx);
            }
        } else {
            if !matches!(version, SSLV30 | TLSV10 | TLSV11 | TLSV12) {
                return self.skip_with_violation(cx);
            }
            if !(20..=30).contains(&h[0]) {
                return self.skip_with_violation(cx);
            }
            self.record_layer = version;
            self.rec[d].v2 = false;
        }
        let r = &mut self.rec[d];
        if r.v2 {
            let len = ((u32::from(h[0]) & 0x7f) << 8 | u32::from(h[1])).saturating_sub(3);
            r.left = len;
            r.content_type = u16::from(h[2]) + 300;
            r.v2_buf.clear();
        } else {
            r.left = u32::from(u16::from_be_bytes([h[3], h[4]]));
            r.content_type = u16::from(h[0]);
        }
        Act::Go
    }

    /// `determine_state` for the current record.
    fn encrypted_now(&mut self, d: usize, content_type: u16) -> bool {
        if self.encrypted[d] || content_type != 23 {
            return self.encrypted[d];
        }
        if !matches!(self.chosen, SSLV20 | SSLV30 | TLSV10 | TLSV11 | TLSV12) {
            self.encrypted[d] = true;
        }
        self.encrypted[d]
    }

    /// Body bytes of the current record.
    fn record_body(&mut self, is_orig: bool, body: &[u8], first: bool, cx: &mut Cx<'_>) -> Act {
        let d = usize::from(!is_orig);
        let ct = self.rec[d].content_type;
        if self.rec[d].v2 {
            let r = &mut self.rec[d];
            let room = 16usize.saturating_sub(r.v2_buf.len()).min(body.len());
            r.v2_buf.extend_from_slice(body.get(..room).unwrap_or(&[]));
            return Act::Go;
        }
        if first && self.encrypted_now(d, ct) {
            return Act::Go;
        }
        if self.encrypted[d] {
            return Act::Go;
        }
        match ct {
            22 => self.handshake_data(is_orig, body, cx),
            20 => {
                // Each byte is a ChangeCipherSpec message.
                if !body.is_empty() && !is_tls13(self.chosen) {
                    self.encrypted[d] = true;
                }
                Act::Go
            }
            21 | 23 | 24 => Act::Go,
            _ => {
                if first {
                    cx.violation();
                }
                Act::Go
            }
        }
    }

    /// End of an SSLv2 record: the v2 messages.
    fn v2_record_done(&mut self, is_orig: bool, cx: &mut Cx<'_>) -> Act {
        let d = usize::from(!is_orig);
        let h = self.rec[d].hdr;
        let total = ((u32::from(h[0]) & 0x7f) << 8 | u32::from(h[1])).saturating_sub(3) as usize;
        let b = std::mem::take(&mut self.rec[d].v2_buf);
        match self.rec[d].content_type {
            301 => {
                // V2ClientHello: three lengths, then the fields.
                let (Some(cs), Some(sid), Some(ch)) = (be16(&b, 0), be16(&b, 2), be16(&b, 4))
                else {
                    cx.violation();
                    return Act::Go;
                };
                if 6 + usize::from(cs) + usize::from(sid) + usize::from(ch) > total {
                    cx.violation();
                    return Act::Go;
                }
                let v = u16::from_be_bytes([h[3], h[4]]);
                if version_ok(v) {
                    cx.confirm();
                } else {
                    return self.skip_with_violation(cx);
                }
            }
            304 => {
                let v = be16(&b, 0).unwrap_or(0);
                if v != SSLV20 {
                    return self.skip_with_violation(cx);
                }
            }
            300 | 302 => {
                if self.rec[d].content_type == 302 {
                    self.encrypted = [true, true];
                }
            }
            _ => cx.violation(),
        }
        Act::Go
    }

    /// Handshake protocol bytes of one direction.
    fn handshake_data(&mut self, is_orig: bool, data: &[u8], cx: &mut Cx<'_>) -> Act {
        let d = usize::from(!is_orig);
        let mut rest = data;
        while !rest.is_empty() {
            let hs = &mut self.hs[d];
            if hs.left == 0 && hs.hdr_len < 4 {
                while hs.hdr_len < 4 {
                    let Some((&b, r)) = rest.split_first() else {
                        break;
                    };
                    hs.hdr[usize::from(hs.hdr_len)] = b;
                    hs.hdr_len += 1;
                    rest = r;
                }
                if hs.hdr_len < 4 {
                    break;
                }
                hs.msg_type = hs.hdr[0];
                hs.total = u32::from_be_bytes([0, hs.hdr[1], hs.hdr[2], hs.hdr[3]]);
                hs.left = hs.total;
                hs.buf.clear();
                if hs.left == 0 {
                    hs.hdr_len = 0;
                    if let Act::Stop = self.handshake_message(is_orig, cx) {
                        return Act::Stop;
                    }
                    continue;
                }
            }
            let hs = &mut self.hs[d];
            let n = (hs.left as usize).min(rest.len());
            let (take, r) = rest.split_at(n);
            if matches!(hs.msg_type, 1 | 2) {
                let room = MAX_HELLO.saturating_sub(hs.buf.len()).min(n);
                hs.buf.extend_from_slice(take.get(..room).unwrap_or(&[]));
            }
            hs.left -= n as u32;
            rest = r;
            if hs.left == 0 {
                hs.hdr_len = 0;
                if let Act::Stop = self.handshake_message(is_orig, cx) {
                    return Act::Stop;
                }
            }
        }
        Act::Go
    }

    fn handshake_message(&mut self, is_orig: bool, cx: &mut Cx<'_>) -> Act {
        let d = usize::from(!is_orig);
        let msg_type = self.hs[d].msg_type;
        let truncated = (self.hs[d].buf.len() as u64) < u64::from(self.hs[d].total);
        let buf = std::mem::take(&mut self.hs[d].buf);
        let act = self.hello(msg_type, &buf, truncated, cx);
        let mut buf = buf;
        buf.clear();
        if buf.capacity() <= 512 {
            self.hs[d].buf = buf;
        }
        act
    }

    /// One complete handshake message (shared with DTLS).
    fn hello(&mut self, msg_type: u8, body: &[u8], truncated: bool, cx: &mut Cx<'_>) -> Act {
        match msg_type {
            1 => match client_hello(body, truncated) {
                Hello::Bad => cx.violation(),
                Hello::Ok { version, .. } => {
                    if version_ok(version) {
                        cx.confirm();
                    } else {
                        return self.skip_with_violation(cx);
                    }
                }
            },
            2 => match server_hello(body, truncated) {
                Hello::Bad => cx.violation(),
                Hello::Ok { version, chosen } => {
                    if self.chosen == 0 {
                        self.chosen = chosen;
                    }
                    if !version_ok(version) {
                        return self.skip_with_violation(cx);
                    }
                }
            },
            0 | 3 | 4 | 11..=16 | 20..=22 => {}
            _ => cx.violation(),
        }
        Act::Go
    }
}

impl Parser for Ssl {
    fn deliver(&mut self, is_orig: bool, data: &[u8], cx: &mut Cx<'_>) -> usize {
        if cx.partial || self.had_gap || self.skip {
            return data.len();
        }
        let d = usize::from(!is_orig);
        let mut rest = data;
        while !rest.is_empty() && !self.skip {
            let r = &mut self.rec[d];
            if r.left == 0 && r.hdr_len < 5 {
                while r.hdr_len < 5 {
                    let Some((&b, t)) = rest.split_first() else {
                        break;
                    };
                    r.hdr[usize::from(r.hdr_len)] = b;
                    r.hdr_len += 1;
                    rest = t;
                }
                if r.hdr_len < 5 {
                    break;
                }
                if let Act::Stop = self.record_header(is_orig, cx) {
                    break;
                }
                let r = &mut self.rec[d];
                if r.left == 0 {
                    // An empty record holds no message (an empty SSLv2
                    // record still fails to parse).
                    r.hdr_len = 0;
                    if r.v2 {
                        self.v2_record_done(is_orig, cx);
                    }
                    continue;
                }
                let r = &mut self.rec[d];
                let n = (r.left as usize).min(rest.len());
                let (take, t) = rest.split_at(n);
                r.left -= n as u32;
                rest = t;
                let done = self.rec[d].left == 0;
                if let Act::Stop = self.record_body(is_orig, take, true, cx) {
                    break;
                }
                if done {
                    self.record_done(is_orig, cx);
                }
                continue;
            }
            let n = (r.left as usize).min(rest.len());
            let (take, t) = rest.split_at(n);
            r.left -= n as u32;
            rest = t;
            let done = self.rec[d].left == 0;
            if let Act::Stop = self.record_body(is_orig, take, false, cx) {
                break;
            }
            if done {
                self.record_done(is_orig, cx);
            }
        }
        data.len()
    }

    fn undelivered(&mut self, _is_orig: bool, _len: u64, _cx: &mut Cx<'_>) {
        self.had_gap = true;
    }

    fn finished(&self, confirmed: bool, settled: bool, seen: u64) -> bool {
        // A ClientHello comes first; later violations no longer count.
        self.skip || self.had_gap || (confirmed && settled) || seen > GIVE_UP_AFTER
    }
}

impl Ssl {
    fn record_done(&mut self, is_orig: bool, cx: &mut Cx<'_>) {
        let d = usize::from(!is_orig);
        self.rec[d].hdr_len = 0;
        if self.rec[d].v2 {
            self.v2_record_done(is_orig, cx);
        }
    }
}

/// DTLS over UDP.
#[derive(Debug)]
pub(crate) struct Dtls {
    ssl: Ssl,
    confirmed: bool,
    invalid_versions: u32,
    reported: u32,
}

/// `SSL::dtls_max_version_errors`.
const DTLS_MAX_VERSION_ERRORS: u32 = 10;
/// `SSL::dtls_max_reported_version_errors`.
const DTLS_MAX_REPORTED: u32 = 1;

impl Dtls {
    pub fn new() -> Self {
        Dtls {
            ssl: Ssl::new(),
            confirmed: false,
            invalid_versions: 0,
            reported: 0,
        }
    }
}

impl Parser for Dtls {
    fn deliver(&mut self, _is_orig: bool, data: &[u8], cx: &mut Cx<'_>) -> usize {
        if self.ssl.skip {
            return data.len();
        }
        // STUN.
        if data.len() > 20 && data.get(4..8) == Some(&[0x21, 0x12, 0xa4, 0x42][..]) {
            return data.len();
        }
        let mut pos = 0;
        while pos < data.len() {
            let (Some(&ct), Some(version), Some(epoch), Some(len)) = (
                data.get(pos),
                be16(data, pos + 1),
                be16(data, pos + 3),
                be16(data, pos + 11),
            ) else {
                cx.violation();
                break;
            };
            let body_at = pos + 13;
            if !matches!(version, DTLSV10 | DTLSV12) {
                self.invalid_versions += 1;
                if self.confirmed {
                    self.reported += 1;
                    if self.reported <= DTLS_MAX_REPORTED {
                        cx.violation();
                    }
                }
                if self.invalid_versions > DTLS_MAX_VERSION_ERRORS {
                    self.ssl.skip = true;
                }
                break;
            }
            if self.confirmed {
                self.invalid_versions = 0;
            }
            let Some(body) = data.get(body_at..body_at + usize::from(len)) else {
                cx.violation();
                break;
            };
            pos = body_at + usize::from(len);
            if epoch != 0 {
                continue;
            }
            match ct {
                22 => {
                    // msg_type, length(3), message_seq(2), frag offset(3),
                    // frag length(3), data.
                    let (Some(&mt), Some(l), Some(off), Some(fl)) = (
                        body.first(),
                        body.get(1..4),
                        body.get(6..9),
                        body.get(9..12),
                    ) else {
                        cx.violation();
                        continue;
                    };
                    let l = u32::from_be_bytes([0, l[0], l[1], l[2]]);
                    let off = u32::from_be_bytes([0, off[0], off[1], off[2]]);
                    let fl = u32::from_be_bytes([0, fl[0], fl[1], fl[2]]);
                    if off == 0 && l == fl {
                        let msg = body.get(12..).unwrap_or(&[]);
                        let before = cx.confirmed_count();
                        self.ssl.hello(mt, msg, false, cx);
                        if cx.confirmed_count() > before {
                            self.confirmed = true;
                        }
                    }
                }
                20 | 21 | 23 | 24 => {}
                _ => cx.violation(),
            }
        }
        data.len()
    }

    fn finished(&self, confirmed: bool, settled: bool, seen: u64) -> bool {
        self.ssl.skip || (confirmed && settled) || seen > GIVE_UP_AFTER
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::conn::service::{ConnInfo, Note, Notes, L4};

    pub fn client_hello_record() -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0xaa; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 4, 0x13, 1, 0x13, 2]);
        body.extend_from_slice(&[1, 0]);
        let sni = b"\x00\x00\x00\x0e\x00\x0c\x00\x00\x09localhost";
        body.extend_from_slice(&(sni.len() as u16).to_be_bytes());
        body.extend_from_slice(sni);
        let mut hs = vec![1, 0, 0, body.len() as u8];
        hs.extend(body);
        let mut rec = vec![0x16, 3, 1, 0, hs.len() as u8];
        rec.extend(hs);
        rec
    }

    fn feed(s: &mut Ssl, is_orig: bool, data: &[u8]) -> Notes {
        let i = ConnInfo {
            proto: L4::Tcp,
            orig_h: "10.0.0.1".parse().unwrap(),
            orig_p: 40000,
            resp_h: "10.0.0.2".parse().unwrap(),
            resp_p: 443,
        };
        let mut notes = Notes::new();
        let mut cx = Cx {
            info: &i,
            partial: false,
            notes: &mut notes,
        };
        s.deliver(is_orig, data, &mut cx);
        notes
    }

    #[test]
    fn client_hello_confirms_even_split() {
        let rec = client_hello_record();
        let mut s = Ssl::new();
        let (a, b) = rec.split_at(20);
        assert!(feed(&mut s, true, a).is_empty());
        assert_eq!(feed(&mut s, true, b).as_slice(), &[Note::Confirm]);
    }

    #[test]
    fn garbage_is_a_violation() {
        let mut s = Ssl::new();
        assert_eq!(
            feed(&mut s, true, b"GET / HTTP/1.1\r\n").as_slice(),
            &[Note::Violation]
        );
        assert!(s.skip);
        let mut s = Ssl::new();
        // Bad hello body: extension length past the end.
        let mut rec = client_hello_record();
        let n = rec.len();
        rec[n - 16] = 0x7f;
        assert_eq!(feed(&mut s, true, &rec).as_slice(), &[Note::Violation]);
    }

    #[test]
    fn encrypted_after_ccs() {
        let mut s = Ssl::new();
        feed(&mut s, true, &client_hello_record());
        let ccs = [20, 3, 3, 0, 1, 1];
        assert!(feed(&mut s, true, &ccs).is_empty());
        // An "unknown" handshake type inside an encrypted record is fine.
        assert!(feed(&mut s, true, &[22, 3, 3, 0, 4, 99, 0, 0, 0]).is_empty());
        let mut s = Ssl::new();
        feed(&mut s, true, &client_hello_record());
        assert_eq!(
            feed(&mut s, true, &[22, 3, 3, 0, 4, 99, 0, 0, 0]).as_slice(),
            &[Note::Violation]
        );
    }

    #[test]
    fn noise_never_panics() {
        let mut x: u32 = 5;
        for _ in 0..500 {
            let mut s = Ssl::new();
            feed(&mut s, true, &client_hello_record()[..30]);
            for _ in 0..6 {
                let mut buf = vec![0x16, 3, 1];
                for _ in 0..(x % 120) {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    buf.push((x >> 16) as u8);
                }
                feed(&mut s, x & 8 == 0, &buf);
            }
            let mut d = Dtls::new();
            let i = ConnInfo {
                proto: L4::Udp,
                orig_h: "10.0.0.1".parse().unwrap(),
                orig_p: 1,
                resp_h: "10.0.0.2".parse().unwrap(),
                resp_p: 443,
            };
            let mut notes = Notes::new();
            let mut cx = Cx {
                info: &i,
                partial: false,
                notes: &mut notes,
            };
            let mut buf = vec![0x16, 0xfe, 0xfd, 0, 0];
            for _ in 0..(x % 90) {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                buf.push((x >> 16) as u8);
            }
            d.deliver(true, &buf, &mut cx);
        }
    }
}
