//! LDAP over TCP and UDP (the Spicy analyzer in
//! `src/analyzer/protocol/ldap/ldap.spicy`, `ldap_zeek.spicy`; logged as
//! `ldap_tcp` / `ldap_udp`), attached on 389 and 3268/tcp, 389/udp, or by
//! the `dpd_ldap_server_*` signatures (with `dpd_ldap_client_*` in the
//! other direction); and the NTLM analyzer it feeds (`ntlm`,
//! `src/analyzer/protocol/ntlm/NTLM.cc`).
//!
//! Each LDAPMessage (BER) that parses confirms LDAP; a parse error is a
//! violation and ends the analysis of that direction. What is checked: the
//! message is a universal SEQUENCE with an INTEGER message id and an
//! APPLICATION-class operation that fits in it; a BindRequest has a
//! context-specific authentication choice, SASL credentials for GSS-SPNEGO
//! are an initial-context token with SPNEGO's OID, a SPNEGO choice or
//! `NTLMSSP`, Sicily authentication starts with `NTLMSSP`; a BindResponse's
//! trailing elements are `[7]` server SASL credentials. Other operations
//! are not looked into. Tokens carried in binds are handed on as
//! `ldap_zeek.spicy` does, after the bind parsed and before LDAP confirms
//! the message (so a first message that is a bind logs e.g.
//! `krb,gssapi,ldap_tcp`): bare NTLMSSP tokens (SASL GSS-SPNEGO/NTLM or
//! Sicily) to NTLM, which confirms on any token that parses (signature, a
//! known message type with its fixed fields) and reports a violation
//! otherwise; other GSS-SPNEGO and GSSAPI tokens, empty ones included, to
//! [`super::gssapi`] (which feeds Kerberos and NTLM). Over UDP nothing is
//! handed on: Zeek delivers them as packets, which these stream analyzers
//! ignore. After a successful SASL bind, messages that do not start with
//! a SEQUENCE tag are taken as length-prefixed encrypted blobs
//! (`MAYBE_ENCRYPTED`); with a GSS mechanism (or none seen), a first blob
//! that starts with a krb5 wrap token id (`0x0504`), or a GSS-SPNEGO
//! BindResponse that accepts MS KRB5 with a response token, switches to
//! `MS_KRB5` framing, where each blob's wrap token header must parse (the
//! `0xff` filler, an EC/RRC pair it handles, room for the EC bytes) or it
//! is a violation. After a successful StartTLS extended operation the
//! stream goes to an SSL analyzer.
//!
//! Limits: a message is buffered up to [`MAX_MESSAGE`] bytes (a longer one
//! is checked on its first bytes, and its tokens are not handed on); the
//! SASL mechanism name is kept up to 32 bytes; the LDAP messages inside
//! unsealed `MS_KRB5` wrap tokens are not parsed.

use super::gssapi::{self, Verdict};
use super::{Analyzer, ChildKind, Cx, Parser, L4};

const MAX_MESSAGE: usize = 16 * 1024;
const MAX_MECH: usize = 32;
const STARTTLS_OID: &[u8] = b"1.3.6.1.4.1.1466.20037";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Undef,
    MaybeEncrypted,
    Cleartext,
    Encrypted,
    /// `MS_KRB5`: length-prefixed messages, each a krb5 wrap token.
    MsKrb5,
}

/// MS KRB5's mechanism OID, 1.2.840.48018.1.2.2.
const MS_KRB5_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x82, 0xf7, 0x12, 0x01, 0x02, 0x02];
/// A krb5 wrap token's header: token id, flags, filler, EC, RRC,
/// sequence number.
const WRAP_HDR: usize = 16;

#[derive(Debug, Default)]
struct Dir {
    /// Header bytes of the current message (tag, length).
    hdr: Vec<u8>,
    /// Encrypted framing: the 4-byte length being read.
    enc: bool,
    buf: Vec<u8>,
    /// Body bytes of the current message still to come.
    left: u64,
    total: u64,
    in_body: bool,
    failed: bool,
    /// Length-prefixed framing: the first body bytes, while they are
    /// wanted (a krb5 wrap token header).
    wrap: [u8; WRAP_HDR],
    nwrap: u8,
    wrap_on: bool,
}

#[derive(Debug)]
pub(crate) struct Ldap {
    udp: bool,
    mode: Mode,
    mechanism: Vec<u8>,
    start_tls_requested: bool,
    /// `MaybeEncrypted` chose encrypted for a GSS mechanism: the next
    /// frame's first two bytes may switch to `MS_KRB5`.
    peek: bool,
    dirs: [Dir; 2],
}

/// A BER element: tag byte, content offset and length within `d`.
#[derive(Clone, Copy, Debug)]
struct Tlv {
    tag: u8,
    at: usize,
    len: usize,
}

impl Tlv {
    fn class(&self) -> u8 {
        self.tag >> 6
    }
    fn ty(&self) -> u8 {
        self.tag & 0x1f
    }
    fn end(&self) -> usize {
        self.at + self.len
    }
}

/// Reads a BER header at `pos` (`ASN1Header`); None if it does not fit.
fn header(d: &[u8], pos: usize) -> Option<(u8, usize, usize)> {
    let &tag = d.get(pos)?;
    let &l = d.get(pos + 1)?;
    if l & 0x80 == 0 {
        return Some((tag, usize::from(l), pos + 2));
    }
    let n = usize::from(l & 0x7f);
    let bytes = d.get(pos + 2..pos + 2 + n)?;
    let mut len: u64 = 0;
    for &b in bytes {
        len = len.checked_mul(256)?.checked_add(u64::from(b))?;
    }
    Some((tag, usize::try_from(len).ok()?, pos + 2 + n))
}

/// A whole element (`ASN1Message`) at `pos`, which must fit before `end`.
fn element(d: &[u8], pos: usize, end: usize) -> Option<Tlv> {
    let (tag, len, at) = header(d, pos)?;
    (at.checked_add(len)? <= end).then_some(Tlv { tag, at, len })
}

fn body(d: &[u8], t: Tlv) -> &[u8] {
    d.get(t.at..t.end()).unwrap_or(&[])
}

/// A token a bind hands to another analyzer (`ldap_zeek.spicy`'s
/// `protocol_data_in`).
enum Fwd {
    Ntlm(Vec<u8>),
    Gssapi(Vec<u8>),
}

/// What one message parse found.
#[derive(Default)]
struct Found {
    fwd: Vec<Fwd>,
    sasl_success: bool,
    /// A SPNEGO accept of MS KRB5 with a response token.
    ms_krb5: bool,
    starttls_success: bool,
}

/// The SPNEGO mechanism OID, 1.3.6.1.5.5.2 (`GSS_SPNEGO_negTokenInit`).
const SPNEGO_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];

/// Whether a SASL mechanism's tokens go to GSSAPI.
fn gss_mech(m: &[u8]) -> bool {
    m == b"GSS-SPNEGO" || m == b"GSSAPI"
}

/// `GSS_SPNEGO_Init`: a GSS-SPNEGO bind's credentials must be an
/// initial-context token whose OID is SPNEGO's, a negTokenResp choice
/// (`0xa1`) or a bare NTLMSSP token. Returns whether it is the latter
/// (then the token goes to NTLM directly), None when it does not parse.
fn spnego_init(p: &[u8]) -> Option<bool> {
    match p.first() {
        Some(0x60) => {
            let (_, _, at) = header(p, 0)?;
            let (tag, len, oid_at) = header(p, at)?;
            if tag >> 6 != 0 || tag & 0x1f != 6 {
                return None;
            }
            let oid = p.get(oid_at..oid_at.checked_add(len)?)?;
            (oid == SPNEGO_OID).then_some(false)
        }
        Some(0xa1) => header(p, 0).map(|_| false),
        _ if p.starts_with(b"NTLMSSP") => Some(true),
        _ => None,
    }
}

/// `GSS_SPNEGO_Subsequent`: a GSS-SPNEGO BindResponse's first server
/// credentials are a bare NTLMSSP token or a negTokenResp, a SEQUENCE of
/// `[0]`-`[3]` elements. Returns (NTLMSSP, accepted MS KRB5 with a
/// response token); None when it does not parse.
fn spnego_subsequent(p: &[u8]) -> Option<(bool, bool)> {
    if p.starts_with(b"NTLMSSP") {
        return Some((true, false));
    }
    if p.first() != Some(&0xa1) {
        return None;
    }
    let (_, _, at) = header(p, 0)?;
    let seq = element(p, at, p.len())?;
    let mut pos = seq.at;
    let (mut accepted, mut ms_krb5_mech, mut response) = (false, false, false);
    while pos < seq.end() {
        let e = element(p, pos, seq.end())?;
        if e.class() == 0 {
            return None;
        }
        let b = body(p, e);
        match e.ty() {
            0 => accepted = b == [0x0a, 0x01, 0x00],
            1 => {
                let oid = element(b, 0, b.len())?;
                ms_krb5_mech = body(b, oid) == MS_KRB5_OID;
            }
            2 => response = true,
            3 => {}
            _ => return None,
        }
        pos = e.end();
    }
    Some((false, accepted && ms_krb5_mech && response))
}

/// Whether a `MS_KRB5` frame of `total` bytes starting with `w` parses:
/// the token id needs two bytes; a wrap token (`0x0504`) needs its
/// 16-byte header with the `0xff` filler, an EC/RRC pair it can handle
/// when not sealed, and room for the EC bytes.
fn wrap_ok(w: &[u8], total: u64) -> bool {
    if total < 2 {
        return false;
    }
    if !w.starts_with(&[0x05, 0x04]) {
        return true;
    }
    let be16 = |i: usize| match w.get(i..i + 2) {
        Some(&[a, b]) => Some(u64::from(u16::from_be_bytes([a, b]))),
        _ => None,
    };
    let (Some(&flags), Some(&filler), Some(ec), Some(rrc)) = (w.get(2), w.get(3), be16(4), be16(6))
    else {
        return false;
    };
    if total < WRAP_HDR as u64 || filler != 0xff {
        return false;
    }
    let sealed = flags & 0x02 != 0;
    let (head, trail) = if rrc == ec {
        (ec, 0)
    } else if rrc == 0 {
        (0, ec)
    } else if !sealed {
        return false;
    } else {
        (0, 0)
    };
    total >= WRAP_HDR as u64 + head + trail
}

/// NTLM_SSP_Token: signature, type and the fixed fields of types 1-3.
pub(super) fn ntlm_ok(t: &[u8]) -> bool {
    if t.len() < 12 {
        return false;
    }
    let ty = u32::from_le_bytes([t[8], t[9], t[10], t[11]]);
    let fixed = match ty {
        1 => 4 + 8 + 8,
        2 => 8 + 4 + 8 + 8 + 8,
        3 => 6 * 8 + 4,
        _ => 0,
    };
    t.len() >= 12 + fixed
}

impl Ldap {
    pub fn new(proto: L4) -> Self {
        Ldap {
            udp: proto == L4::Udp,
            mode: Mode::Undef,
            mechanism: Vec::new(),
            start_tls_requested: false,
            peek: false,
            dirs: Default::default(),
        }
    }

    /// Parses one complete (or truncated) LDAPMessage whose content is
    /// `d[at..at + len]`. None on a parse error.
    fn message(&mut self, d: &[u8], at: usize, len: usize, truncated: bool) -> Option<Found> {
        let end = at + len;
        let cut = |x: bool| {
            if truncated {
                Some(Found::default())
            } else {
                x.then(Found::default)
            }
        };
        let Some(id) = element(d, at, end) else {
            return cut(false);
        };
        if id.class() != 0 || id.ty() != 2 {
            return None;
        }
        let Some((tag, op_len, op_at)) = header(d, id.end()) else {
            return cut(false);
        };
        if tag >> 6 != 1 {
            return None;
        }
        let op_end = op_at.checked_add(op_len)?;
        if op_end > end {
            return cut(false);
        }
        let mut found = Found::default();
        let op = d.get(op_at..op_end).unwrap_or(&[]);
        match tag & 0x1f {
            0 => self.bind_request(op, &mut found)?,
            1 => self.bind_response(op, &mut found)?,
            23 => {
                let h = element(op, 0, op.len())?;
                if h.class() != 2 {
                    return None;
                }
                if body(op, h) == STARTTLS_OID {
                    self.start_tls_requested = true;
                }
            }
            24 => {
                let code = result_code(op)?;
                if self.start_tls_requested && code == 0 {
                    found.starttls_success = true;
                }
            }
            _ => {}
        }
        Some(found)
    }

    fn bind_request(&mut self, op: &[u8], found: &mut Found) -> Option<()> {
        let version = element(op, 0, op.len())?;
        let name = element(op, version.end(), op.len())?;
        let auth = element(op, name.end(), op.len())?;
        if auth.class() == 0 {
            // `&requires` a known authentication type.
            return None;
        }
        let data = body(op, auth);
        if data.is_empty() {
            return Some(());
        }
        match auth.ty() {
            3 => {
                let mech = element(data, 0, data.len())?;
                let m = body(data, mech);
                self.mechanism = m.get(..m.len().min(MAX_MECH)).unwrap_or(&[]).to_vec();
                let payload = match element(data, mech.end(), data.len()) {
                    Some(c) if c.ty() == 4 => Some(body(data, c)),
                    _ => None,
                };
                if let Some(p) = payload {
                    let mut ntlm = self.mechanism == b"NTLM";
                    if self.mechanism == b"GSS-SPNEGO" {
                        ntlm = spnego_init(p)?;
                    }
                    if ntlm {
                        found.fwd.push(Fwd::Ntlm(p.to_vec()));
                    } else if gss_mech(&self.mechanism) {
                        found.fwd.push(Fwd::Gssapi(p.to_vec()));
                    }
                }
            }
            10 | 11 => {
                if !data.starts_with(b"NTLMSSP") {
                    return None;
                }
                found.fwd.push(Fwd::Ntlm(data.to_vec()));
            }
            _ => {}
        }
        Some(())
    }

    fn bind_response(&mut self, op: &[u8], found: &mut Found) -> Option<()> {
        let code = result_code(op)?;
        let mut pos = 0;
        for _ in 0..3 {
            pos = element(op, pos, op.len())?.end();
        }
        let mut creds = Vec::new();
        while pos < op.len() {
            let c = element(op, pos, op.len())?;
            if c.class() != 2 || c.ty() != 7 {
                return None;
            }
            creds.push(body(op, c));
            pos = c.end();
        }
        let mut ntlm = self.mechanism == b"NTLM";
        let mut ms_krb5 = false;
        if self.mechanism == b"GSS-SPNEGO" {
            if let Some(first) = creds.first() {
                (ntlm, ms_krb5) = spnego_subsequent(first)?;
            }
        }
        for c in &creds {
            if ntlm {
                found.fwd.push(Fwd::Ntlm(c.to_vec()));
            } else if gss_mech(&self.mechanism) {
                found.fwd.push(Fwd::Gssapi(c.to_vec()));
            }
        }
        if !self.mechanism.is_empty() && code == 0 {
            found.sasl_success = true;
        }
        found.ms_krb5 = ms_krb5;
        Some(())
    }

    /// Applies a parsed message; returns true when the stream now goes to
    /// an SSL analyzer.
    fn apply(&mut self, found: Found, cx: &mut Cx<'_>) -> bool {
        // Over UDP the tokens are handed on as packets, which neither NTLM
        // nor GSSAPI (stream analyzers) look at.
        if !self.udp {
            let mut verdicts = Vec::new();
            for f in &found.fwd {
                match f {
                    Fwd::Ntlm(t) => verdicts.push(if ntlm_ok(t) {
                        Verdict::Confirm(Analyzer::Ntlm)
                    } else {
                        Verdict::Violation(Analyzer::Ntlm)
                    }),
                    Fwd::Gssapi(t) => gssapi::token(t, &mut verdicts),
                }
            }
            for v in verdicts {
                match v {
                    Verdict::Confirm(a) => cx.confirm_as(a),
                    Verdict::Violation(a) => cx.violation_as(a),
                }
            }
        }
        cx.confirm();
        if found.sasl_success {
            self.mode = Mode::MaybeEncrypted;
        }
        if found.ms_krb5 {
            self.mode = Mode::MsKrb5;
        }
        found.starttls_success
    }

    /// `SaslMsKrb5Stripper` (and `MaybeEncrypted`'s peek) on the first
    /// bytes of a length-prefixed frame; false after a violation. The
    /// LDAP messages inside an unsealed wrap token are not parsed.
    fn wrap_check(&mut self, d: usize, cx: &mut Cx<'_>) -> bool {
        let Some(dir) = self.dirs.get_mut(d) else {
            return true;
        };
        dir.wrap_on = false;
        let w = dir.wrap.get(..usize::from(dir.nwrap)).unwrap_or(&[]);
        let total = dir.total;
        if self.peek {
            self.peek = false;
            if !w.starts_with(&[0x05, 0x04]) {
                return true;
            }
            self.mode = Mode::MsKrb5;
        }
        if self.mode != Mode::MsKrb5 || wrap_ok(w, total) {
            return true;
        }
        self.fail(d, cx);
        false
    }

    fn fail(&mut self, d: usize, cx: &mut Cx<'_>) {
        self.dirs[d].failed = true;
        cx.violation();
    }

    /// One datagram (LDAP over UDP): messages back to back.
    fn datagram(&mut self, data: &[u8], cx: &mut Cx<'_>) {
        let mut pos = 0;
        while pos < data.len() {
            let Some((tag, len, at)) = header(data, pos) else {
                cx.violation();
                return;
            };
            if tag >> 6 != 0 || tag & 0x1f != 16 || at.saturating_add(len) > data.len() {
                cx.violation();
                return;
            }
            match self.message(data, at, len, false) {
                Some(f) => {
                    self.apply(f, cx);
                }
                None => {
                    cx.violation();
                    return;
                }
            }
            pos = at + len;
        }
    }
}

/// `Result`: the result code of an operation that starts with one.
fn result_code(op: &[u8]) -> Option<u64> {
    let code = element(op, 0, op.len())?;
    Some(
        body(op, code)
            .iter()
            .fold(0u64, |a, &b| a.wrapping_shl(8) | u64::from(b)),
    )
}

impl Parser for Ldap {
    fn deliver(&mut self, is_orig: bool, data: &[u8], cx: &mut Cx<'_>) -> usize {
        if self.udp {
            self.datagram(data, cx);
            return data.len();
        }
        let d = usize::from(!is_orig);
        let mut rest = data;
        while !rest.is_empty() && !self.dirs[d].failed {
            let dir = &mut self.dirs[d];
            if !dir.in_body {
                if dir.hdr.is_empty() {
                    // MessageDispatch: after a SASL bind, decide per message.
                    let first = rest.first().copied().unwrap_or(0);
                    if self.mode == Mode::MaybeEncrypted {
                        self.mode = if first == 0x30 {
                            Mode::Cleartext
                        } else {
                            // Peek for a wrap token if the mechanism may
                            // be Kerberos.
                            self.peek =
                                self.mechanism.is_empty() || self.mechanism.starts_with(b"GSS");
                            Mode::Encrypted
                        };
                    }
                    dir.enc = matches!(self.mode, Mode::Encrypted | Mode::MsKrb5);
                }
                let Some((&b, r)) = rest.split_first() else {
                    break;
                };
                dir.hdr.push(b);
                rest = r;
                if dir.enc {
                    if dir.hdr.len() < 4 {
                        continue;
                    }
                    let n = u32::from_be_bytes([dir.hdr[0], dir.hdr[1], dir.hdr[2], dir.hdr[3]]);
                    dir.hdr.clear();
                    dir.left = u64::from(n);
                    dir.total = u64::from(n);
                    dir.in_body = n > 0;
                    if self.peek && n < 2 {
                        self.peek = false;
                    }
                    dir.wrap_on = self.peek || self.mode == Mode::MsKrb5;
                    dir.nwrap = 0;
                    if n == 0 && dir.wrap_on && !self.wrap_check(d, cx) {
                        break;
                    }
                    continue;
                }
                if dir.hdr.len() == 1 && (b >> 6 != 0 || b & 0x1f != 16) {
                    self.fail(d, cx);
                    break;
                }
                let Some((_, len, at)) = header(&dir.hdr, 0) else {
                    if dir.hdr.len() > 10 {
                        self.fail(d, cx);
                        break;
                    }
                    continue;
                };
                debug_assert_eq!(at, dir.hdr.len());
                dir.buf.clear();
                dir.buf.extend_from_slice(&dir.hdr);
                dir.hdr.clear();
                dir.left = len as u64;
                dir.total = len as u64;
                dir.in_body = true;
                if len > 0 {
                    continue;
                }
            }
            let dir = &mut self.dirs[d];
            let n = usize::try_from(dir.left)
                .unwrap_or(usize::MAX)
                .min(rest.len());
            let (take, r) = rest.split_at(n);
            if !dir.enc {
                let room = MAX_MESSAGE.saturating_sub(dir.buf.len()).min(n);
                dir.buf.extend_from_slice(take.get(..room).unwrap_or(&[]));
            } else if dir.wrap_on {
                for &b in take.iter().take(WRAP_HDR - usize::from(dir.nwrap)) {
                    if let Some(slot) = dir.wrap.get_mut(usize::from(dir.nwrap)) {
                        *slot = b;
                    }
                    dir.nwrap += 1;
                }
            }
            dir.left -= n as u64;
            rest = r;
            let wrap_ready = dir.wrap_on && (usize::from(dir.nwrap) == WRAP_HDR || dir.left == 0);
            if wrap_ready && !self.wrap_check(d, cx) {
                break;
            }
            let dir = &mut self.dirs[d];
            if dir.left > 0 {
                continue;
            }
            dir.in_body = false;
            if dir.enc {
                continue;
            }
            let buf = std::mem::take(&mut dir.buf);
            let total = usize::try_from(dir.total).unwrap_or(usize::MAX);
            let hdr_len = header(&buf, 0).map_or(buf.len(), |(_, _, at)| at);
            let truncated = buf.len() < hdr_len.saturating_add(total);
            let avail = buf.len().saturating_sub(hdr_len);
            let parsed = self.message(&buf, hdr_len, total.min(avail), truncated);
            let mut buf = buf;
            buf.clear();
            if buf.capacity() <= 1024 {
                self.dirs[d].buf = buf;
            }
            match parsed {
                Some(f) => {
                    if self.apply(f, cx) {
                        cx.child(ChildKind::Ssl);
                        return data.len() - rest.len();
                    }
                }
                None => {
                    self.fail(d, cx);
                    break;
                }
            }
        }
        data.len()
    }

    fn undelivered(&mut self, _is_orig: bool, _len: u64, _cx: &mut Cx<'_>) {
        self.dirs[0].failed = true;
        self.dirs[1].failed = true;
    }

    fn finished(&self, confirmed: bool, settled: bool, _seen: u64) -> bool {
        (self.dirs[0].failed && self.dirs[1].failed) || (confirmed && settled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::service::{ConnInfo, Note, Notes};

    fn feed(l: &mut Ldap, is_orig: bool, data: &[u8]) -> Notes {
        let i = ConnInfo {
            proto: L4::Tcp,
            orig_h: "10.0.0.1".parse().unwrap(),
            orig_p: 40000,
            resp_h: "10.0.0.2".parse().unwrap(),
            resp_p: 389,
        };
        let mut notes = Notes::new();
        let mut cx = Cx {
            info: &i,
            partial: false,
            notes: &mut notes,
        };
        l.deliver(is_orig, data, &mut cx);
        notes
    }

    #[test]
    fn spnego_ntlm_bind() {
        let mut ntlm = b"NTLMSSP\x00\x01\x00\x00\x00".to_vec();
        ntlm.extend_from_slice(&[0x97, 0x82, 0x08, 0xe2]);
        ntlm.extend_from_slice(&[0; 16]);
        ntlm.extend_from_slice(&[6, 1, 0xb1, 0x1d, 0, 0, 0, 0x0f]);
        let mut sasl = vec![0x04, 10];
        sasl.extend_from_slice(b"GSS-SPNEGO");
        sasl.push(0x04);
        sasl.push(ntlm.len() as u8);
        sasl.extend_from_slice(&ntlm);
        let mut op = vec![0x02, 0x01, 0x03, 0x04, 0x00, 0xa3, sasl.len() as u8];
        op.extend_from_slice(&sasl);
        let mut msg = vec![0x02, 0x02, 0x00, 0xa0, 0x60, 0x84, 0, 0, 0, op.len() as u8];
        msg.extend_from_slice(&op);
        let mut pdu = vec![0x30, 0x84, 0, 0, 0, msg.len() as u8];
        pdu.extend_from_slice(&msg);
        let mut l = Ldap::new(L4::Tcp);
        let (a, b) = pdu.split_at(9);
        assert!(feed(&mut l, true, a).is_empty());
        assert_eq!(
            feed(&mut l, true, b).as_slice(),
            &[Note::ConfirmAs(Analyzer::Ntlm), Note::Confirm]
        );
    }

    #[test]
    fn spnego_credentials_are_checked() {
        use crate::conn::service::gssapi::build as g;
        use crate::conn::service::krb::build as k;
        let good = g::neg_token_init(&g::krb5_token([1, 0], &k::ap_req()));
        assert_eq!(spnego_init(&good), Some(false));
        assert_eq!(spnego_init(&g::neg_token_resp(&[])), Some(false));
        assert_eq!(spnego_init(b"NTLMSSP\0"), Some(true));
        // An initial-context token of another mechanism, and garbage.
        let raw = g::krb5_token([1, 0], &k::ap_req());
        assert_eq!(spnego_init(&raw), None);
        assert_eq!(spnego_init(&[0x60]), None);
        assert_eq!(spnego_init(b"hello"), None);
    }

    #[test]
    fn not_ldap() {
        let mut l = Ldap::new(L4::Tcp);
        assert_eq!(
            feed(&mut l, true, b"GET / HTTP/1.1\r\n").as_slice(),
            &[Note::Violation]
        );
        let mut l = Ldap::new(L4::Tcp);
        // A SEQUENCE whose first element is not an INTEGER.
        assert_eq!(
            feed(&mut l, true, &[0x30, 3, 0x04, 1, 0]).as_slice(),
            &[Note::Violation]
        );
        // An unbind request is fine.
        let mut l = Ldap::new(L4::Tcp);
        assert_eq!(
            feed(&mut l, true, &[0x30, 5, 0x02, 1, 3, 0x42, 0]).as_slice(),
            &[Note::Confirm]
        );
    }
}
