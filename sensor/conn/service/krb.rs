//! Kerberos (`src/analyzer/protocol/krb/`: `KRB.cc`, `KRB_TCP.cc`,
//! `krb-protocol.pac`, `krb-types.pac`, `krb-padata.pac`), logged as `krb`
//! (UDP, attached on 88/udp or by the `dpd_krb_udp_*` signatures) and
//! `krb_tcp` (TCP, 88/tcp or `dpd_krb_tcp_*`); the GSSAPI analyzer hands
//! it Kerberos tokens it finds in LDAP SASL binds (see [`super::gssapi`]).
//!
//! A message is an APPLICATION-tagged PDU chosen by its tag number alone
//! (the class is not checked, as in binpac): AS-REQ and TGS-REQ (10, 12),
//! AS-REP and TGS-REP (11, 13), AP-REQ (14), AP-REP (15), KRB-SAFE (20),
//! KRB-PRIV (21), KRB-CRED (22), KRB-ERROR (30). The message is read the
//! way Zeek's binpac records read it (header after header, with the same
//! `&length` windows and arrays that run to the end of their window), so
//! that the same inputs parse: a message that parses confirms; an unknown
//! tag number, a read past the end of the data or a context index without
//! a case is a violation. Over UDP each datagram is one message (trailing
//! bytes are read as more elements, as binpac does); over TCP each message
//! is preceded by a 4-byte big-endian length, and, as in `KRB_TCP.cc`,
//! nothing is parsed on a partial connection or after a content gap.
//!
//! Limits: a TCP message is buffered up to [`MAX_PDU`] bytes; a longer one
//! is skipped without a verdict, except that a length over binpac's
//! flow-buffer cap ([`MAX_FLOWBUFFER`]) is a violation. Nothing here
//! recurses: the nesting is that of the fixed record layout (an AP-REQ
//! inside a TGS-REQ's padata at most).

use super::asn1::{to_int, Cur, Meta, Res};
use super::{Cx, Parser};

/// TCP messages longer than this are skipped, not judged.
pub const MAX_PDU: usize = 64 * 1024;
/// Zeek's `BinPAC::flowbuffer_capacity_max` (10 MB): a longer frame is an
/// exception, so a violation.
pub const MAX_FLOWBUFFER: u64 = 10 * 1024 * 1024;

const AS_REQ: u8 = 10;
const AS_REP: u8 = 11;
const TGS_REQ: u8 = 12;
const TGS_REP: u8 = 13;
const AP_REQ: u8 = 14;
const AP_REP: u8 = 15;
const KRB_SAFE: u8 = 20;
const KRB_PRIV: u8 = 21;
const KRB_CRED: u8 = 22;
const KRB_ERROR: u8 = 30;

const KDC_ERR_PREAUTH_REQUIRED: u64 = 25;

/// Parses one Kerberos message (`KRB_PDU`); returns its type.
pub(crate) fn parse_pdu(data: &[u8]) -> Res<u8> {
    let mut c = Cur::new(data);
    let app = c.meta()?;
    let ty = app.tag_num();
    match ty {
        AS_REQ | TGS_REQ => kdc_req(&mut c, ty)?,
        AS_REP | TGS_REP => kdc_rep(&mut c, ty)?,
        AP_REQ => ap_req(&mut c)?,
        AP_REP => {
            seq_element(&mut c, true)?;
            seq_element(&mut c, true)?;
            encrypted_data_in_seq(&mut c)?;
        }
        KRB_SAFE => safe(&mut c)?,
        KRB_PRIV => {
            seq_element(&mut c, true)?;
            seq_element(&mut c, true)?;
            encrypted_data_in_seq(&mut c)?;
        }
        KRB_CRED => {
            seq_element(&mut c, true)?;
            seq_element(&mut c, true)?;
            seq_element(&mut c, false)?;
            ticket_sequence(&mut c)?;
            encrypted_data_in_seq(&mut c)?;
        }
        KRB_ERROR => error(&mut c)?,
        _ => return Err(c.no_case(u64::from(ty))),
    }
    Ok(ty)
}

/// `SequenceElement(grab_content)`: a `[n]` header, then a whole element
/// or just its header.
fn seq_element<'a>(c: &mut Cur<'a>, grab: bool) -> Res<(Meta, &'a [u8])> {
    let index = c.meta()?;
    if grab {
        let (_, body) = c.encoding()?;
        Ok((index, body))
    } else {
        c.meta()?;
        Ok((index, &[]))
    }
}

/// Elements until the end of the window (`ASN1Encoding[]`).
fn encodings(c: &mut Cur<'_>) -> Res<()> {
    while !c.at_end() {
        c.encoding()?;
    }
    Ok(())
}

/// `KRB_KDC_REQ`.
fn kdc_req(c: &mut Cur<'_>, ty: u8) -> Res<()> {
    c.meta()?;
    seq_element(c, true)?;
    seq_element(c, true)?;
    pa_data_optional(c, ty, 3)?;
    c.meta()?;
    while !c.at_end() {
        let m = c.meta()?;
        let mut w = c.limit(m.len)?;
        req_arg(&mut w, m.index())?;
    }
    Ok(())
}

/// `KRB_REQ_Arg_Data`.
fn req_arg(c: &mut Cur<'_>, index: u8) -> Res<()> {
    match index {
        0 => {
            // KDC options: header, pad byte, 32 flag bits.
            c.meta()?;
            c.take(5)?;
        }
        1 | 3 => principal_name(c)?,
        2 | 7 | 10 => {
            c.encoding()?;
        }
        4..=6 => {
            c.meta()?;
            c.rest();
        }
        8 => {
            c.meta()?;
            encodings(c)?;
        }
        9 => {
            c.meta()?;
            while !c.at_end() {
                seq_element(c, false)?;
                c.encoding()?;
                seq_element(c, true)?;
            }
        }
        11 => ticket_sequence(c)?,
        _ => {
            c.rest();
        }
    }
    Ok(())
}

/// `KRB_PA_Data_Optional`: returns the header that follows (the first one
/// when there was no padata).
fn pa_data_optional(c: &mut Cur<'_>, ty: u8, desired: u8) -> Res<Meta> {
    let first = c.meta()?;
    if first.index() != desired {
        return Ok(first);
    }
    let mut w = c.limit(first.len)?;
    pa_data_sequence(&mut w, ty)?;
    c.meta()
}

/// `KRB_PA_Data_Sequence`.
fn pa_data_sequence(c: &mut Cur<'_>, ty: u8) -> Res<()> {
    let m = c.meta()?;
    if m.tag != 0x30 {
        c.take(m.len)?;
        return Ok(());
    }
    while !c.at_end() {
        pa_data(c, ty)?;
    }
    Ok(())
}

/// `KRB_PA_Data`.
fn pa_data(c: &mut Cur<'_>, ty: u8) -> Res<()> {
    c.meta()?;
    let (_, data_type) = seq_element(c, true)?;
    let data_type = to_int(data_type);
    let elem = c.meta()?;
    if ty == KRB_ERROR {
        c.take(elem.len)?;
        return Ok(());
    }
    match data_type {
        // PA-TGS-REQ: an AP-REQ behind two headers, not bounded by the
        // element's length.
        1 => {
            c.meta()?;
            c.meta()?;
            ap_req(c)?;
        }
        2 => encrypted_data(&mut c.limit(elem.len)?)?,
        3 => {
            c.encoding()?;
        }
        16 => pk_as(&mut c.limit(elem.len)?, 4)?,
        17 => pk_as(&mut c.limit(elem.len)?, 5)?,
        11 | 19 => enctype_info(&mut c.limit(elem.len)?)?,
        _ => {
            c.limit(elem.len)?.encoding()?;
        }
    }
    Ok(())
}

/// `KRB_PA_PK_AS_Req` (`headers` = 4) and `KRB_PA_PK_AS_Rep` (5): the
/// same walk after a different number of leading headers.
fn pk_as(c: &mut Cur<'_>, headers: usize) -> Res<()> {
    for _ in 0..headers {
        c.meta()?;
    }
    c.encoding()?;
    c.meta()?;
    c.meta()?;
    for _ in 0..3 {
        c.encoding()?;
    }
    let cert = c.meta()?;
    c.take(cert.len)?;
    c.rest();
    Ok(())
}

/// `KRB_PA_ENCTYPE_INFO`: a salt string follows the etype when the second
/// header is longer than 7.
fn enctype_info(c: &mut Cur<'_>) -> Res<()> {
    c.meta()?;
    let second = c.meta()?;
    c.meta()?;
    c.encoding()?;
    if second.len > 7 {
        c.meta()?;
        let s = c.meta()?;
        // binpac keeps the salt length in a uint32.
        c.take(s.len & 0xffff_ffff)?;
    }
    Ok(())
}

/// `KRB_KDC_REP`.
fn kdc_rep(c: &mut Cur<'_>, ty: u8) -> Res<()> {
    c.meta()?;
    seq_element(c, true)?;
    seq_element(c, true)?;
    let next = pa_data_optional(c, ty, 2)?;
    c.limit(next.len)?.encoding()?;
    let cname = c.meta()?;
    principal_name(&mut c.limit(cname.len)?)?;
    ticket(c, true)?;
    encrypted_data_in_seq(c)
}

/// `KRB_AP_REQ`.
fn ap_req(c: &mut Cur<'_>) -> Res<()> {
    c.meta()?;
    seq_element(c, true)?;
    seq_element(c, true)?;
    // AP options: a [2] BIT STRING header pair, a pad byte, 32 flag bits.
    seq_element(c, false)?;
    c.take(5)?;
    ticket(c, true)?;
    encrypted_data_in_seq(c)
}

/// `KRB_SAFE_MSG`. Its body is an array that runs to the end of the data,
/// so the checksum after it can never be read: as in Zeek, a KRB-SAFE
/// message never parses.
fn safe(c: &mut Cur<'_>) -> Res<()> {
    seq_element(c, true)?;
    seq_element(c, true)?;
    c.meta()?;
    while !c.at_end() {
        let m = c.meta()?;
        let mut w = c.limit(m.len)?;
        match m.index() {
            0 | 2 | 3 => {
                w.encoding()?;
            }
            1 => {
                w.meta()?;
                w.rest();
            }
            4 | 5 => {
                seq_element(&mut w, false)?;
                w.encoding()?;
                seq_element(&mut w, true)?;
            }
            i => return Err(w.no_case(u64::from(i))),
        }
    }
    seq_element(c, true)?;
    seq_element(c, true)?;
    Ok(())
}

/// `KRB_ERROR_MSG`: arguments up to `[6]` error-code, the code, the rest.
fn error(c: &mut Cur<'_>) -> Res<()> {
    c.meta()?;
    while !c.at_end() {
        let m = c.meta()?;
        if m.index() == 6 {
            break;
        }
        error_arg(&mut c.limit(m.len)?, m.index(), 0)?;
    }
    let (_, code) = c.encoding()?;
    let code = to_int(code);
    while !c.at_end() {
        let m = c.meta()?;
        if m.index() == 6 {
            continue;
        }
        error_arg(&mut c.limit(m.len)?, m.index(), code)?;
    }
    Ok(())
}

/// `KRB_ERROR_Arg_Data`.
fn error_arg(c: &mut Cur<'_>, index: u8, code: u64) -> Res<()> {
    match index {
        0 | 1 | 3 | 5 | 7 | 9 | 11 => {
            c.encoding()?;
        }
        2 | 4 => {
            c.meta()?;
            c.rest();
        }
        8 | 10 => principal_name(c)?,
        12 => {
            if code == KDC_ERR_PREAUTH_REQUIRED {
                pa_data_sequence(c, KRB_ERROR)?;
            } else {
                c.rest();
            }
        }
        i => return Err(c.no_case(u64::from(i))),
    }
    Ok(())
}

/// `KRB_Principal_Name`.
fn principal_name(c: &mut Cur<'_>) -> Res<()> {
    c.meta()?;
    c.meta()?;
    c.encoding()?;
    c.meta()?;
    c.meta()?;
    encodings(c)
}

/// `KRB_Ticket`.
fn ticket(c: &mut Cur<'_>, in_sequence: bool) -> Res<()> {
    if in_sequence {
        c.meta()?;
    }
    c.meta()?;
    c.meta()?;
    seq_element(c, true)?;
    seq_element(c, true)?;
    let sname = c.meta()?;
    principal_name(&mut c.limit(sname.len)?)?;
    encrypted_data_in_seq(c)
}

/// `KRB_Ticket_Sequence`.
fn ticket_sequence(c: &mut Cur<'_>) -> Res<()> {
    let m = c.meta()?;
    let mut w = c.limit(m.len)?;
    while !w.at_end() {
        ticket(&mut w, false)?;
    }
    Ok(())
}

/// `KRB_Encrypted_Data_in_Seq`.
fn encrypted_data_in_seq(c: &mut Cur<'_>) -> Res<()> {
    let m = c.meta()?;
    encrypted_data(&mut c.limit(m.len)?)
}

/// `KRB_Encrypted_Data`: etype, optional `[1]` kvno, cipher text.
fn encrypted_data(c: &mut Cur<'_>) -> Res<()> {
    c.meta()?;
    seq_element(c, true)?;
    let kvno = c.meta()?;
    let len = if kvno.index() == 1 {
        c.encoding()?;
        c.meta()?.len
    } else {
        kvno.len
    };
    c.limit(len)?.encoding()?;
    Ok(())
}

/// Reports one message's verdict.
fn judge(data: &[u8], cx: &mut Cx<'_>) {
    match parse_pdu(data) {
        Ok(ty) => {
            tracing::trace!(msg_type = ty, "krb message");
            cx.confirm();
        }
        Err(e) => {
            tracing::trace!(error = %e, "krb violation");
            cx.violation();
        }
    }
}

/// KRB over UDP: one message per datagram.
#[derive(Debug)]
pub(crate) struct Krb;

impl Parser for Krb {
    fn deliver(&mut self, _is_orig: bool, data: &[u8], cx: &mut Cx<'_>) -> usize {
        judge(data, cx);
        data.len()
    }
}

/// One direction of a KRB_TCP stream.
#[derive(Debug, Default)]
struct Dir {
    /// Length prefix bytes read so far.
    hdr: [u8; 4],
    nhdr: u8,
    /// Bytes of the current message still to come.
    left: u64,
    buf: Vec<u8>,
    /// The current message is too long to buffer: skip it.
    skipping: bool,
}

/// KRB over TCP: 4-byte length framing.
#[derive(Debug, Default)]
pub(crate) struct KrbTcp {
    dirs: [Dir; 2],
    had_gap: bool,
    /// A length over binpac's cap: Zeek's flow buffer throws on every
    /// delivery after that; once reported, nothing more is parsed.
    stopped: bool,
}

impl KrbTcp {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Parser for KrbTcp {
    fn deliver(&mut self, is_orig: bool, data: &[u8], cx: &mut Cx<'_>) -> usize {
        if cx.partial || self.had_gap || self.stopped {
            return data.len();
        }
        let dir = &mut self.dirs[usize::from(!is_orig)];
        let mut rest = data;
        while !rest.is_empty() {
            if dir.left == 0 && !dir.skipping {
                let Some((&b, r)) = rest.split_first() else {
                    break;
                };
                rest = r;
                if let Some(slot) = dir.hdr.get_mut(usize::from(dir.nhdr)) {
                    *slot = b;
                }
                dir.nhdr += 1;
                if dir.nhdr < 4 {
                    continue;
                }
                dir.nhdr = 0;
                let size = u64::from(u32::from_be_bytes(dir.hdr));
                if size + 4 > MAX_FLOWBUFFER {
                    tracing::trace!(size, "krb_tcp frame over the flow buffer cap");
                    cx.violation();
                    self.stopped = true;
                    return data.len();
                }
                dir.buf.clear();
                dir.left = size;
                dir.skipping = size > MAX_PDU as u64;
                if size == 0 {
                    judge(&[], cx);
                }
                continue;
            }
            let n = usize::try_from(dir.left)
                .unwrap_or(usize::MAX)
                .min(rest.len());
            let (take, r) = rest.split_at(n);
            rest = r;
            dir.left -= n as u64;
            if !dir.skipping {
                dir.buf.extend_from_slice(take);
            }
            if dir.left > 0 {
                continue;
            }
            if dir.skipping {
                dir.skipping = false;
            } else {
                judge(&dir.buf, cx);
                dir.buf.clear();
                if dir.buf.capacity() > 4096 {
                    dir.buf = Vec::new();
                }
            }
        }
        data.len()
    }

    fn undelivered(&mut self, _is_orig: bool, _len: u64, _cx: &mut Cx<'_>) {
        self.had_gap = true;
        self.dirs = Default::default();
    }

    fn finished(&self, confirmed: bool, settled: bool, _seen: u64) -> bool {
        self.had_gap || self.stopped || (confirmed && settled)
    }
}

/// Hand-built messages shared with the GSSAPI and LDAP tests.
#[cfg(test)]
pub(crate) mod build {
    /// A DER element with tag `tag` around `body`.
    pub fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        let n = body.len();
        if n < 0x80 {
            v.push(n as u8);
        } else if n < 0x100 {
            v.extend_from_slice(&[0x81, n as u8]);
        } else {
            v.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
        }
        v.extend_from_slice(body);
        v
    }

    pub fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
        parts.concat()
    }

    pub fn int(v: u8) -> Vec<u8> {
        tlv(0x02, &[v])
    }

    /// `[n] INTEGER v`.
    pub fn ctx_int(n: u8, v: u8) -> Vec<u8> {
        tlv(0xa0 + n, &int(v))
    }

    pub fn gstr(s: &str) -> Vec<u8> {
        tlv(0x1b, s.as_bytes())
    }

    /// PrincipalName { name-type, name-string SEQUENCE OF GeneralString }.
    pub fn principal(names: &[&str]) -> Vec<u8> {
        let strings: Vec<Vec<u8>> = names.iter().map(|s| gstr(s)).collect();
        tlv(
            0x30,
            &cat(&[ctx_int(0, 1), tlv(0xa1, &tlv(0x30, &cat(&strings)))]),
        )
    }

    /// EncryptedData { etype [0], kvno [1] (optional), cipher [2] }.
    pub fn enc_data(kvno: Option<u8>) -> Vec<u8> {
        let mut parts = vec![ctx_int(0, 18)];
        if let Some(k) = kvno {
            parts.push(ctx_int(1, k));
        }
        parts.push(tlv(0xa2, &tlv(0x04, &[0x5a; 24])));
        tlv(0x30, &cat(&parts))
    }

    /// Ticket ::= [APPLICATION 1] SEQUENCE { ... }.
    pub fn ticket() -> Vec<u8> {
        tlv(
            0x61,
            &tlv(
                0x30,
                &cat(&[
                    ctx_int(0, 5),
                    tlv(0xa1, &gstr("OSPREY.TEST")),
                    tlv(0xa2, &principal(&["krbtgt", "OSPREY.TEST"])),
                    tlv(0xa3, &enc_data(Some(2))),
                ]),
            ),
        )
    }

    /// An AS-REQ without padata.
    pub fn as_req() -> Vec<u8> {
        let body = tlv(
            0x30,
            &cat(&[
                tlv(0xa0, &tlv(0x03, &[0, 0x50, 0, 0, 0])),
                tlv(0xa1, &principal(&["alice"])),
                tlv(0xa2, &gstr("OSPREY.TEST")),
                tlv(0xa3, &principal(&["krbtgt", "OSPREY.TEST"])),
                tlv(0xa5, &tlv(0x18, b"20370913024805Z")),
                tlv(0xa7, &int(42)),
                tlv(0xa8, &tlv(0x30, &cat(&[int(18), int(17)]))),
            ]),
        );
        tlv(
            0x6a,
            &tlv(
                0x30,
                &cat(&[ctx_int(1, 5), ctx_int(2, 10), tlv(0xa4, &body)]),
            ),
        )
    }

    /// An AP-REQ.
    pub fn ap_req() -> Vec<u8> {
        tlv(
            0x6e,
            &tlv(
                0x30,
                &cat(&[
                    ctx_int(0, 5),
                    ctx_int(1, 14),
                    tlv(0xa2, &tlv(0x03, &[0, 0x20, 0, 0, 0])),
                    tlv(0xa3, &ticket()),
                    tlv(0xa4, &enc_data(None)),
                ]),
            ),
        )
    }

    /// An AP-REP.
    pub fn ap_rep() -> Vec<u8> {
        tlv(
            0x6f,
            &tlv(
                0x30,
                &cat(&[ctx_int(0, 5), ctx_int(1, 15), tlv(0xa2, &enc_data(None))]),
            ),
        )
    }

    /// A KRB-ERROR (PREAUTH_REQUIRED with padata in e-data).
    pub fn error() -> Vec<u8> {
        let padata = tlv(
            0x30,
            &tlv(0x30, &cat(&[ctx_int(1, 2), tlv(0xa2, &tlv(0x04, &[]))])),
        );
        tlv(
            0x7e,
            &tlv(
                0x30,
                &cat(&[
                    ctx_int(0, 5),
                    ctx_int(1, 30),
                    tlv(0xa4, &tlv(0x18, b"20261207150000Z")),
                    ctx_int(5, 0),
                    ctx_int(6, 25),
                    tlv(0xa9, &gstr("OSPREY.TEST")),
                    tlv(0xaa, &principal(&["krbtgt", "OSPREY.TEST"])),
                    tlv(0xac, &tlv(0x04, &padata)),
                ]),
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::build::{self, cat, ctx_int, enc_data, gstr, principal, tlv};
    use super::*;
    use crate::conn::service::asn1::Asn1Error;
    use crate::conn::service::{ConnInfo, Note, Notes, L4};

    fn feed(p: &mut dyn Parser, partial: bool, is_orig: bool, data: &[u8]) -> Notes {
        let i = ConnInfo {
            proto: L4::Tcp,
            orig_h: "10.0.0.1".parse().unwrap(),
            orig_p: 40000,
            resp_h: "10.0.0.2".parse().unwrap(),
            resp_p: 88,
        };
        let mut notes = Notes::new();
        let mut cx = Cx {
            info: &i,
            partial,
            notes: &mut notes,
        };
        p.deliver(is_orig, data, &mut cx);
        notes
    }

    #[test]
    fn known_messages_parse() {
        assert_eq!(parse_pdu(&build::as_req()), Ok(AS_REQ));
        assert_eq!(parse_pdu(&build::ap_req()), Ok(AP_REQ));
        assert_eq!(parse_pdu(&build::ap_rep()), Ok(AP_REP));
        assert_eq!(parse_pdu(&build::error()), Ok(KRB_ERROR));
        let mut tgs = build::as_req();
        tgs[0] = 0x6c;
        assert_eq!(parse_pdu(&tgs), Ok(TGS_REQ));
    }

    #[test]
    fn as_rep_with_padata() {
        let padata = tlv(
            0x30,
            &tlv(
                0x30,
                &cat(&[ctx_int(1, 3), tlv(0xa2, &tlv(0x04, b"OSPREY.TESTalice"))]),
            ),
        );
        let rep = tlv(
            0x6b,
            &tlv(
                0x30,
                &cat(&[
                    ctx_int(0, 5),
                    ctx_int(1, 11),
                    tlv(0xa2, &padata),
                    tlv(0xa3, &gstr("OSPREY.TEST")),
                    tlv(0xa4, &principal(&["alice"])),
                    tlv(0xa5, &build::ticket()),
                    tlv(0xa6, &enc_data(Some(1))),
                ]),
            ),
        );
        assert_eq!(parse_pdu(&rep), Ok(AS_REP));
    }

    #[test]
    fn malformed_messages_fail() {
        // Unknown application tag.
        let mut bad = build::ap_req();
        bad[0] = 0x63;
        assert!(matches!(parse_pdu(&bad), Err(Asn1Error::NoCase { .. })));
        // Truncations: as in binpac, the outer lengths are not enforced,
        // so a cut between a request's body arguments still parses; a cut
        // inside an element never does.
        for msg in [
            build::as_req(),
            build::ap_req(),
            build::ap_rep(),
            build::error(),
        ] {
            for n in 0..msg.len() {
                let r = parse_pdu(&msg[..n]);
                if n < 12 || n + 1 == msg.len() {
                    assert!(r.is_err(), "{n} of {}", msg.len());
                }
            }
        }
        // KRB-SAFE never parses in Zeek's grammar.
        let safe = tlv(
            0x74,
            &tlv(
                0x30,
                &cat(&[
                    ctx_int(0, 5),
                    ctx_int(1, 20),
                    tlv(0xa2, &tlv(0x30, &tlv(0xa0, &tlv(0x04, b"x")))),
                    tlv(
                        0xa3,
                        &tlv(0x30, &cat(&[ctx_int(0, 1), tlv(0xa1, &tlv(0x04, b"c"))])),
                    ),
                ]),
            ),
        );
        assert!(parse_pdu(&safe).is_err());
        assert!(parse_pdu(b"GET / HTTP/1.1\r\n").is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u32 = 0x1234_5678;
        for len in 0..200 {
            let mut v = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                v.push(x as u8);
            }
            for first in [0x6a, 0x6b, 0x6e, 0x6f, 0x7e, 0x76, 0x75] {
                if let Some(b) = v.first_mut() {
                    *b = first;
                }
                let _ = parse_pdu(&v);
            }
        }
    }

    #[test]
    fn udp_confirms_and_violates() {
        let mut k = Krb;
        assert_eq!(
            feed(&mut k, false, true, &build::as_req()).as_slice(),
            &[Note::Confirm]
        );
        assert_eq!(
            feed(&mut k, false, false, b"\x6b\x01").as_slice(),
            &[Note::Violation]
        );
    }

    #[test]
    fn tcp_framing() {
        let msg = build::as_req();
        let mut framed = (msg.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(&msg);
        let mut k = KrbTcp::new();
        let (a, b) = framed.split_at(7);
        assert!(feed(&mut k, false, true, &a[..2]).is_empty());
        assert!(feed(&mut k, false, true, &a[2..]).is_empty());
        assert_eq!(feed(&mut k, false, true, b).as_slice(), &[Note::Confirm]);
        // A frame whose content is not Kerberos.
        let mut k = KrbTcp::new();
        assert_eq!(
            feed(&mut k, false, true, b"\0\0\0\x04abcd").as_slice(),
            &[Note::Violation]
        );
        // Over binpac's cap.
        let mut k = KrbTcp::new();
        assert_eq!(
            feed(&mut k, false, true, b"\x7f\0\0\0").as_slice(),
            &[Note::Violation]
        );
        // Partial connections are not parsed.
        let mut k = KrbTcp::new();
        assert!(feed(&mut k, true, true, &framed).is_empty());
    }
}
