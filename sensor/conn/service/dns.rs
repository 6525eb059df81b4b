//! DNS (`src/analyzer/protocol/dns/DNS.cc`), attached by port only
//! (53/udp+tcp, 137, 5353, 5355/udp; `scripts/base/protocols/dns/main.zeek`).
//!
//! `DNS_Interpreter::ParseMessage`, per message: shorter than the 12-byte
//! header is ignored; an opcode other than QUERY, NOTIFY and UPDATE (any
//! opcode on NetBIOS port 137) is ignored with a `DNS_unknown_opcode` weird
//! and an `X` in history. The first message that is a response but
//! came from the originator flips the roles, unless the responder is a
//! multicast address. More than `dns_max_queries` (25; 0: no limit)
//! questions is a violation and a limit (`DNS_Conn_count_too_large`, `X`).
//! A name whose compression pointers nest deeper than
//! `dns_max_compression_chain_depth` (20) ends there, with
//! `DNS_max_compression_chain_depth_exceeded` and `X`. Otherwise the questions and the answer section are parsed and,
//! if that works, the analyzer confirms (authority and additional records
//! are parsed only afterwards and cannot prevent it). Parse failures are
//! weirds, not violations. Over TCP each message is preceded by a 2-byte
//! length (`Contents_DNS`); a partial message is parsed at the end of the
//! stream.
//!
//! Answer records are checked like Zeek's `ParseRR_*` for A, AAAA/A6, NS,
//! CNAME, PTR, SOA, MX, SRV, TXT and SPF (including how far each of them
//! advances); other types are skipped by their rdlength.
//!
//! Since any later message can still bring an `X`, the parser runs for the
//! whole connection (as Zeek's does) until it has reported one.
//!
//! Limits: over TCP at most [`MAX_TCP_MSG`] bytes of a message are kept
//! (a longer message confirms if its questions parse); names are limited
//! to 512 bytes as in Zeek. Names inside record types osprey skips by
//! their rdlength (NAPTR, RRSIG, NSEC, TSIG, SVCB, ...) and in the
//! authority and additional sections (which Zeek skips by default,
//! `dns_skip_all_auth`/`dns_skip_all_addl`) are not followed, so their
//! compression chains are not checked.

use std::cell::Cell;
use std::net::IpAddr;

use super::{AnalyzerLimits, ConnInfo, Cx, Parser, GIVE_UP_AFTER, L4};
use crate::decode::weird::Weird;

/// Bytes of one TCP DNS message kept for parsing.
const MAX_TCP_MSG: usize = 4096;
const NETBIOS_PORT: u16 = 137;

const OP_QUERY: u16 = 0;
const OP_NOTIFY: u16 = 4;
const OP_UPDATE: u16 = 5;

#[derive(Debug, Default)]
struct Framer {
    /// 0: expecting the high length byte, 1: the low byte, 2: message.
    state: u8,
    msg_size: usize,
    got: usize,
    buf: Vec<u8>,
}

#[derive(Debug)]
pub(crate) struct Dns {
    netbios: bool,
    first_message: bool,
    tcp: Option<Box<[Framer; 2]>>,
    /// `dns_max_queries` (0: none).
    max_queries: u64,
    /// `dns_max_compression_chain_depth`.
    max_depth: u64,
    /// A limit was reported: the `X` is in history, nothing later changes
    /// it.
    limit_reported: bool,
}

impl Dns {
    pub fn new(info: &ConnInfo) -> Self {
        Dns {
            netbios: info.orig_p == NETBIOS_PORT || info.resp_p == NETBIOS_PORT,
            first_message: true,
            tcp: (info.proto == L4::Tcp).then(Default::default),
            max_queries: AnalyzerLimits::default().dns_max_queries,
            max_depth: AnalyzerLimits::default().dns_max_compression_chain_depth,
            limit_reported: false,
        }
    }

    pub fn with_limits(mut self, limits: &AnalyzerLimits) -> Self {
        self.max_queries = limits.dns_max_queries;
        self.max_depth = limits.dns_max_compression_chain_depth;
        self
    }

    fn limit(&mut self, w: Weird, cx: &mut Cx<'_>) {
        self.limit_reported = true;
        cx.limit_reached(w);
    }

    /// `is_query`: 1 from the originator, 0 from the responder, 2 unknown.
    fn message(&mut self, data: &[u8], is_query: u8, truncated: bool, cx: &mut Cx<'_>) {
        let Some(h) = Header::parse(data) else {
            return;
        };
        let opcode = (h.flags & 0x7800) >> 11;
        if !matches!(opcode, OP_QUERY | OP_UPDATE | OP_NOTIFY) && !self.netbios {
            // Not a limit, but Zeek marks it the same way.
            self.limit(Weird::DnsUnknownOpcode, cx);
            return;
        }
        let qr = h.flags & 0x8000 != 0;
        if self.first_message && qr && is_query == 1 && !is_multicast(&cx.info.resp_h) {
            cx.flip();
        }
        self.first_message = false;
        if self.max_queries > 0 && u64::from(h.qd) > self.max_queries {
            // The weird comes after the violation in Zeek, but a violation
            // stops the analyzer here, so report the limit first.
            self.limit(Weird::DnsConnCountTooLarge, cx);
            cx.violation();
            return;
        }
        let p = Msg {
            msg: data,
            resp_netbios: cx.info.resp_p == NETBIOS_PORT,
            max_depth: self.max_depth,
            too_deep: Cell::new(false),
        };
        let mut pos = 12;
        let ok = if opcode == OP_UPDATE {
            p.dynamic_update(&h, &mut pos)
        } else {
            p.questions(h.qd, &mut pos) && (truncated || p.answers(h.an, false, &mut pos))
        };
        if p.too_deep.get() {
            self.limit(Weird::DnsMaxCompressionChainDepthExceeded, cx);
        }
        if ok {
            cx.confirm();
        }
    }
}

fn is_multicast(a: &IpAddr) -> bool {
    a.is_multicast()
}

struct Header {
    flags: u16,
    qd: u16,
    an: u16,
    ns: u16,
}

impl Header {
    fn parse(d: &[u8]) -> Option<Header> {
        let w =
            |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*d.get(i)?, *d.get(i + 1)?])) };
        if d.len() < 12 {
            return None;
        }
        Some(Header {
            flags: w(2)?,
            qd: w(4)?,
            an: w(6)?,
            ns: w(8)?,
        })
    }
}

/// A message being parsed; positions are offsets into `msg`.
struct Msg<'a> {
    msg: &'a [u8],
    resp_netbios: bool,
    /// `dns_max_compression_chain_depth`.
    max_depth: u64,
    /// A name went past `max_depth` (reported once per message).
    too_deep: Cell<bool>,
}

impl Msg<'_> {
    fn u16_at(&self, pos: usize) -> Option<u16> {
        Some(u16::from_be_bytes([
            *self.msg.get(pos)?,
            *self.msg.get(pos + 1)?,
        ]))
    }

    /// `ExtractName` on the message, reading at most up to `limit`.
    /// Returns false on a parse error.
    fn name(&self, pos: &mut usize, limit: usize, name_len: &mut usize, depth: u64) -> bool {
        if depth > self.max_depth {
            // `ExtractName`: the name ends here, parsing goes on.
            self.too_deep.set(true);
            return true;
        }
        loop {
            if *pos >= limit {
                return false;
            }
            let Some(&l) = self.msg.get(*pos) else {
                return false;
            };
            let label_at = *pos;
            *pos += 1;
            if l == 0 {
                return true;
            }
            if l & 0xc0 == 0xc0 {
                if *pos >= limit {
                    return false;
                }
                let Some(&lo) = self.msg.get(*pos) else {
                    return false;
                };
                *pos += 1;
                let off = (usize::from(l & 0x3f) << 8) | usize::from(lo);
                if off >= label_at {
                    // Forward (or self) pointer.
                    return false;
                }
                let mut p = off;
                return self.name(&mut p, label_at, name_len, depth + 1);
            }
            let l = usize::from(l);
            if l > limit - *pos {
                *pos = limit;
                return false;
            }
            if l > 63 && !self.resp_netbios {
                return false;
            }
            if l >= *name_len {
                return false;
            }
            *name_len -= l + 1;
            *pos += l;
        }
    }

    fn full_name(&self, pos: &mut usize) -> bool {
        let mut name_len = 512;
        self.name(pos, self.msg.len(), &mut name_len, 0)
    }

    fn remaining(&self, pos: usize) -> usize {
        self.msg.len().saturating_sub(pos)
    }

    fn questions(&self, n: u16, pos: &mut usize) -> bool {
        for _ in 0..n {
            if !self.full_name(pos) || self.remaining(*pos) < 4 {
                return false;
            }
            *pos += 4;
        }
        true
    }

    /// `ParseAnswerHeader`: name, type and class; returns the type and class.
    fn answer_header(&self, pos: &mut usize) -> Option<(u16, u16)> {
        if !self.full_name(pos) || self.remaining(*pos) < 4 {
            return None;
        }
        let t = self.u16_at(*pos)?;
        let c = self.u16_at(*pos + 2)?;
        *pos += 4;
        Some((t, c))
    }

    /// `ExtractShort`/`ExtractLong`: nothing is consumed when too short.
    fn skip_fixed(&self, pos: &mut usize, n: usize) {
        if self.remaining(*pos) >= n {
            *pos += n;
        }
    }

    fn answers(&self, n: u16, dynamic_update: bool, pos: &mut usize) -> bool {
        for _ in 0..n {
            if !self.answer(dynamic_update, None, pos) {
                return false;
            }
        }
        true
    }

    /// One resource record (`ParseAnswer`). `du_section`: Some(true) for
    /// dynamic-update prerequisites, Some(false) for updates.
    fn answer(
        &self,
        dynamic_update: bool,
        du_section: Option<(bool, u16)>,
        pos: &mut usize,
    ) -> bool {
        let Some((atype, class)) = self.answer_header(pos) else {
            return false;
        };
        let ttl = if self.remaining(*pos) >= 4 {
            let t = u32::from_be_bytes([
                self.msg.get(*pos).copied().unwrap_or(0),
                self.msg.get(*pos + 1).copied().unwrap_or(0),
                self.msg.get(*pos + 2).copied().unwrap_or(0),
                self.msg.get(*pos + 3).copied().unwrap_or(0),
            ]);
            *pos += 4;
            t
        } else {
            0
        };
        let rdlength = if self.remaining(*pos) >= 2 {
            let r = usize::from(self.u16_at(*pos).unwrap_or(0));
            *pos += 2;
            r
        } else {
            0
        };
        if rdlength > self.remaining(*pos) {
            return false;
        }
        if let Some((prereq, zclass)) = du_section {
            const ANY: u16 = 255;
            const NONE: u16 = 254;
            if prereq {
                return true;
            }
            if class == ANY && ttl == 0 && rdlength == 0 {
                return true;
            }
            if !((class == NONE && ttl == 0) || class == zclass) {
                return true;
            }
        }
        if rdlength == 0 && self.remaining(*pos) > 0 {
            return dynamic_update;
        }
        let end = *pos + rdlength;
        match atype {
            1 => {
                if rdlength != 4 {
                    return false;
                }
                *pos += 4;
                true
            }
            28 | 38 => {
                for _ in 0..4 {
                    self.skip_fixed(pos, 4);
                }
                true
            }
            2 | 5 | 12 => self.full_name(pos),
            6 => {
                if !self.full_name(pos) || !self.full_name(pos) || self.remaining(*pos) < 20 {
                    return false;
                }
                *pos += 20;
                true
            }
            15 => {
                self.skip_fixed(pos, 2);
                self.full_name(pos)
            }
            33 => {
                if self.resp_netbios {
                    return true;
                }
                for _ in 0..3 {
                    self.skip_fixed(pos, 2);
                }
                self.full_name(pos)
            }
            16 | 99 => {
                let mut rd = rdlength;
                while rd > 0 {
                    let Some(&size) = self.msg.get(*pos) else {
                        return false;
                    };
                    *pos += 1;
                    rd -= 1;
                    let size = usize::from(size);
                    if size > rd {
                        break;
                    }
                    rd -= size;
                    *pos += size;
                }
                rd == 0
            }
            _ => {
                *pos = end;
                true
            }
        }
    }

    fn dynamic_update(&self, h: &Header, pos: &mut usize) -> bool {
        if h.qd != 1 {
            return false;
        }
        let Some((t, zclass)) = self.answer_header(pos) else {
            return false;
        };
        if t != 6 {
            return false;
        }
        for _ in 0..h.an {
            if !self.answer(true, Some((true, zclass)), pos) {
                return false;
            }
        }
        for _ in 0..h.ns {
            if !self.answer(true, Some((false, zclass)), pos) {
                return false;
            }
        }
        true
    }
}

impl Parser for Dns {
    fn deliver(&mut self, is_orig: bool, data: &[u8], cx: &mut Cx<'_>) -> usize {
        let Some(mut framers) = self.tcp.take() else {
            self.message(data, u8::from(is_orig), false, cx);
            return data.len();
        };
        let d = usize::from(!is_orig);
        let mut rest = data;
        while let Some((&b, after)) = rest.split_first() {
            let f = &mut framers[d];
            match f.state {
                0 => {
                    f.msg_size = usize::from(b) << 8;
                    f.state = 1;
                    rest = after;
                    continue;
                }
                1 => {
                    f.msg_size |= usize::from(b);
                    f.state = 2;
                    f.got = 0;
                    f.buf.clear();
                    rest = after;
                }
                _ => {}
            }
            let n = f.msg_size.saturating_sub(f.got).min(rest.len());
            let (take, after) = rest.split_at(n);
            let room = MAX_TCP_MSG.saturating_sub(f.buf.len()).min(n);
            f.buf.extend_from_slice(take.get(..room).unwrap_or(&[]));
            f.got += n;
            rest = after;
            if f.got >= f.msg_size {
                let truncated = f.msg_size > f.buf.len();
                let mut msg = std::mem::take(&mut f.buf);
                f.state = 0;
                self.message(&msg, u8::from(is_orig), truncated, cx);
                msg.clear();
                if msg.capacity() <= 512 {
                    framers[d].buf = msg;
                }
            }
        }
        self.tcp = Some(framers);
        data.len()
    }

    fn eof(&mut self, is_orig: bool, cx: &mut Cx<'_>) {
        // Contents_DNS::Flush: a partial message is parsed as it is.
        let Some(mut framers) = self.tcp.take() else {
            return;
        };
        let f = &mut framers[usize::from(!is_orig)];
        if f.state == 2 && f.got > 0 {
            let msg = std::mem::take(&mut f.buf);
            f.state = 0;
            self.message(&msg, 2, false, cx);
        }
        self.tcp = Some(framers);
    }

    fn finished(&self, confirmed: bool, settled: bool, seen: u64) -> bool {
        // Any message can still bring an `X` (an unknown opcode, a limit),
        // so the parser runs until it has reported one.
        self.limit_reported && ((confirmed && settled) || seen > GIVE_UP_AFTER)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::conn::service::{Note, Notes};

    pub fn query(id: u16, name: &str, response: bool) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&(if response { 0x8180u16 } else { 0x0100 }).to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m.extend_from_slice(&(u16::from(response)).to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        for l in name.split('.') {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&[0, 1, 0, 1]);
        if response {
            m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1]);
        }
        m
    }

    fn info(proto: L4) -> ConnInfo {
        ConnInfo {
            proto,
            orig_h: "10.0.0.1".parse().unwrap(),
            orig_p: 5000,
            resp_h: "10.0.0.2".parse().unwrap(),
            resp_p: 53,
        }
    }

    fn run(d: &mut Dns, info: &ConnInfo, is_orig: bool, data: &[u8]) -> Notes {
        let mut notes = Notes::new();
        let mut cx = Cx {
            info,
            partial: false,
            notes: &mut notes,
        };
        d.deliver(is_orig, data, &mut cx);
        notes
    }

    #[test]
    fn query_and_reply_confirm() {
        let i = info(L4::Udp);
        let mut d = Dns::new(&i);
        assert_eq!(
            run(&mut d, &i, true, &query(1, "example.com", false)).as_slice(),
            &[Note::Confirm]
        );
        assert_eq!(
            run(&mut d, &i, false, &query(1, "example.com", true)).as_slice(),
            &[Note::Confirm]
        );
    }

    #[test]
    fn reply_first_flips() {
        let i = info(L4::Udp);
        let mut d = Dns::new(&i);
        let n = run(&mut d, &i, true, &query(1, "a.b", true));
        assert_eq!(n.as_slice(), &[Note::Flip, Note::Confirm]);
    }

    #[test]
    fn garbage_and_too_many_queries() {
        let i = info(L4::Udp);
        let mut d = Dns::new(&i);
        // Its "flags" read as opcode 13: ignored, but marked as Zeek does.
        assert_eq!(
            run(&mut d, &i, true, b"hello world, this is not dns").as_slice(),
            &[Note::LimitReached(
                crate::decode::weird::Weird::DnsUnknownOpcode
            )]
        );
        let mut q = query(1, "a.b", false);
        q[4] = 0;
        q[5] = 26;
        assert_eq!(
            run(&mut d, &i, true, &q).as_slice(),
            &[
                Note::LimitReached(crate::decode::weird::Weird::DnsConnCountTooLarge),
                Note::Violation
            ]
        );
        // Bad compression pointer: no confirmation.
        let mut q = query(2, "a.b", false);
        q[12] = 0xc0;
        q[13] = 40;
        assert!(run(&mut d, &i, true, &q).is_empty());
    }

    /// A reply whose second answer's name is a chain of `n` compression
    /// pointers, each pointing at the one before (the first at the
    /// question name): names nest `n + 1` deep.
    pub fn pointer_chain(n: u8) -> Vec<u8> {
        let mut m = vec![0, 9, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
        m.extend_from_slice(&[1, b'a', 1, b'b', 0, 0, 1, 0, 1]);
        // Answer 1: NULL record whose rdata holds the chain.
        m.extend_from_slice(&[0xc0, 12, 0, 10, 0, 1, 0, 0, 0, 0, 0, 2 * n]);
        let first = m.len() as u8;
        for i in 0..n {
            let to = if i == 0 { 12 } else { first + 2 * (i - 1) };
            m.extend_from_slice(&[0xc0, to]);
        }
        // Answer 2: an A record named by the last pointer.
        let last = first + 2 * (n - 1);
        m.extend_from_slice(&[0xc0, last, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1]);
        m
    }

    #[test]
    fn unknown_opcode_marks_history() {
        let i = info(L4::Udp);
        let mut d = Dns::new(&i);
        let mut q = query(1, "a.b", false);
        q[2] |= 2 << 3; // opcode 2 (STATUS)
        assert_eq!(
            run(&mut d, &i, true, &q).as_slice(),
            &[Note::LimitReached(Weird::DnsUnknownOpcode)]
        );
        // NetBIOS takes any opcode.
        let mut nb = info(L4::Udp);
        nb.resp_p = 137;
        let mut d = Dns::new(&nb);
        assert!(!run(&mut d, &nb, true, &q)
            .iter()
            .any(|n| matches!(n, Note::LimitReached(_))));
    }

    #[test]
    fn too_many_queries_is_a_limit_and_a_violation() {
        let i = info(L4::Udp);
        let mut q = query(1, "a.b", false);
        q[5] = 26;
        let mut d = Dns::new(&i);
        assert_eq!(
            run(&mut d, &i, true, &q).as_slice(),
            &[
                Note::LimitReached(Weird::DnsConnCountTooLarge),
                Note::Violation
            ]
        );
        // `dns_max_queries=3` (Zeek's max-queries btest): 10 questions.
        let mut l = AnalyzerLimits::default();
        l.set("dns_max_queries", 3);
        q[5] = 10;
        let mut d = Dns::new(&i).with_limits(&l);
        assert_eq!(
            run(&mut d, &i, true, &q)[0],
            Note::LimitReached(Weird::DnsConnCountTooLarge)
        );
        q[5] = 3;
        let mut d = Dns::new(&i).with_limits(&l);
        assert!(run(&mut d, &i, true, &q).is_empty());
        // 0: no limit (the 26 questions just fail to parse).
        l.set("dns_max_queries", 0);
        q[5] = 26;
        let mut d = Dns::new(&i).with_limits(&l);
        assert!(run(&mut d, &i, true, &q).is_empty());
    }

    #[test]
    fn compression_chain_depth() {
        let i = info(L4::Udp);
        // 19 pointers: 20 deep, at the default limit.
        let mut d = Dns::new(&i);
        assert_eq!(
            run(&mut d, &i, false, &pointer_chain(19)).as_slice(),
            &[Note::Confirm]
        );
        let mut d = Dns::new(&i);
        assert_eq!(
            run(&mut d, &i, false, &pointer_chain(20)).as_slice(),
            &[
                Note::LimitReached(Weird::DnsMaxCompressionChainDepthExceeded),
                Note::Confirm
            ]
        );
        let mut l = AnalyzerLimits::default();
        l.set("dns_max_compression_chain_depth", 5);
        let mut d = Dns::new(&i).with_limits(&l);
        assert_eq!(
            run(&mut d, &i, false, &pointer_chain(5))[0],
            Note::LimitReached(Weird::DnsMaxCompressionChainDepthExceeded)
        );
        let mut d = Dns::new(&i).with_limits(&l);
        assert_eq!(
            run(&mut d, &i, false, &pointer_chain(4)).as_slice(),
            &[Note::Confirm]
        );
    }

    #[test]
    fn runs_until_a_limit_is_reported() {
        let i = info(L4::Udp);
        let mut d = Dns::new(&i);
        assert!(!d.finished(true, true, 1 << 20));
        let mut q = query(1, "a.b", false);
        q[2] |= 3 << 3;
        run(&mut d, &i, true, &q);
        assert!(d.finished(true, true, 1 << 20));
        assert!(!d.finished(false, false, 0));
    }

    #[test]
    fn tcp_framing() {
        let i = info(L4::Tcp);
        let mut d = Dns::new(&i);
        let q = query(7, "example.org", false);
        let mut s = (q.len() as u16).to_be_bytes().to_vec();
        s.extend_from_slice(&q);
        s.extend_from_slice(&s.clone());
        let (a, b) = s.split_at(5);
        assert!(run(&mut d, &i, true, a).is_empty());
        let n = run(&mut d, &i, true, b);
        assert_eq!(n.as_slice(), &[Note::Confirm, Note::Confirm]);
    }

    #[test]
    fn never_panics_on_noise() {
        let i = info(L4::Tcp);
        let mut d = Dns::new(&i);
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            let mut buf = Vec::new();
            for _ in 0..(x % 300) {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                buf.push((x >> 16) as u8);
            }
            run(&mut d, &i, x & 1 == 0, &buf);
            let u = info(L4::Udp);
            let mut du = Dns::new(&u);
            run(&mut du, &u, true, &buf);
        }
    }
}
