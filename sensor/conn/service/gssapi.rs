//! GSSAPI (`src/analyzer/protocol/gssapi/`: `GSSAPI.cc`,
//! `gssapi-protocol.pac`, `gssapi-analyzer.pac`), logged as `gssapi`. It
//! has no port or signature: LDAP hands it the SASL credentials of
//! GSS-SPNEGO and GSSAPI binds (see [`super::ldap`]), one token per call.
//!
//! A token is read as binpac's `GSSAPI_SELECT` reads it: a header whose
//! tag and first length byte, taken together, say `0x0404` (MIC) or
//! `0x0504` (wrap) are taken whole; otherwise a `0x60` header starts a
//! SPNEGO negTokenInit (mechanism OID, a header, a SEQUENCE of `[0]`-`[3]`
//! arguments) and any other header a negTokenResp (a SEQUENCE of `[0]`-`[3]`
//! arguments). A mechToken / responseToken whose content starts with
//! `NTLMSSP` goes to NTLM; one that starts with `0x60` (a krb5 initial
//! context token: header, OID, two-byte token id) has the rest after the
//! token id handed to Kerberos; one that starts with `0x6e` or `0x6f` (a
//! bare AP-REQ or AP-REP) is handed to Kerberos whole. Tokens are handed on
//! while parsing, so they keep their verdict when a later argument fails.
//!
//! GSSAPI confirms after each token that parses, after the analyzers it
//! fed (so `krb` comes before `gssapi`); a token that does not parse (a
//! read past its end, an argument index outside `[0]`-`[3]`) is a
//! violation. A raw krb5 token (the SASL `GSSAPI` mechanism) is not a
//! SPNEGO token and so, as in Zeek, fails to parse.
//!
//! Limits: stateless; the argument walk is bounded by the token.

use super::asn1::{Cur, Res};
use super::{krb, ldap::ntlm_ok, Analyzer};

/// What one token led to, in the order Zeek reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Confirm(Analyzer),
    Violation(Analyzer),
}

/// Parses one GSSAPI token; appends the verdicts of the analyzers it fed,
/// then GSSAPI's own.
pub(crate) fn token(data: &[u8], out: &mut Vec<Verdict>) {
    match select(data, out) {
        Ok(()) => out.push(Verdict::Confirm(Analyzer::Gssapi)),
        Err(e) => {
            tracing::trace!(error = %e, "gssapi violation");
            out.push(Verdict::Violation(Analyzer::Gssapi));
        }
    }
}

/// `GSSAPI_SELECT`.
fn select(data: &[u8], out: &mut Vec<Verdict>) -> Res<()> {
    let mut c = Cur::new(data);
    let wrapper = c.meta()?;
    let tok_id = (u16::from(wrapper.tag) << 8) | u16::from(wrapper.len_byte);
    if tok_id == 0x0404 || tok_id == 0x0504 {
        c.rest();
        return Ok(());
    }
    let init = wrapper.tag == 0x60;
    if init {
        c.encoding()?;
        c.meta()?;
    }
    c.meta()?;
    while !c.at_end() {
        let m = c.meta()?;
        let mut w = c.limit(m.len)?;
        match m.index() {
            0 | 1 | 3 => {
                w.encoding()?;
            }
            2 => mech_token(&mut w, out)?,
            i => return Err(w.no_case(u64::from(i))),
        }
    }
    Ok(())
}

/// `GSSAPI_NEG_TOKEN_MECH_TOKEN` and `forward_blob`.
fn mech_token(c: &mut Cur<'_>, out: &mut Vec<Verdict>) -> Res<()> {
    let m = c.meta()?;
    let tok = c.take(m.len)?;
    match tok.first() {
        Some(0x4e) if tok.starts_with(b"NTLMSSP") => out.push(if ntlm_ok(tok) {
            Verdict::Confirm(Analyzer::Ntlm)
        } else {
            Verdict::Violation(Analyzer::Ntlm)
        }),
        Some(0x60) => {
            // KRB_OID_BLOB: header, OID, token id, then the message.
            let mut t = Cur::new(tok);
            t.meta()?;
            t.encoding()?;
            t.u16_le()?;
            out.push(kerberos(t.rest()));
        }
        Some(0x6e | 0x6f) => out.push(kerberos(tok)),
        _ => {}
    }
    Ok(())
}

/// The verdict of the Kerberos analyzer on one message.
fn kerberos(msg: &[u8]) -> Verdict {
    match krb::parse_pdu(msg) {
        Ok(_) => Verdict::Confirm(Analyzer::Krb),
        Err(e) => {
            tracing::trace!(error = %e, "krb (in gssapi) violation");
            Verdict::Violation(Analyzer::Krb)
        }
    }
}

/// Hand-built SPNEGO tokens shared with the LDAP tests.
#[cfg(test)]
pub(crate) mod build {
    use super::super::krb::build::{cat, tlv};

    pub const SPNEGO_OID: &[u8] = &[0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];
    pub const KRB5_OID: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02,
    ];
    pub const MS_KRB5_OID: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x82, 0xf7, 0x12, 0x01, 0x02, 0x02,
    ];

    /// A krb5 initial context token around `msg` (RFC 1964 framing).
    pub fn krb5_token(tok_id: [u8; 2], msg: &[u8]) -> Vec<u8> {
        tlv(
            0x60,
            &cat(&[KRB5_OID.to_vec(), tok_id.to_vec(), msg.to_vec()]),
        )
    }

    /// negTokenInit with `mech_token` as its mechToken.
    pub fn neg_token_init(mech_token: &[u8]) -> Vec<u8> {
        let mechs = tlv(0x30, &cat(&[MS_KRB5_OID.to_vec(), KRB5_OID.to_vec()]));
        let seq = tlv(
            0x30,
            &cat(&[tlv(0xa0, &mechs), tlv(0xa2, &tlv(0x04, mech_token))]),
        );
        tlv(0x60, &cat(&[SPNEGO_OID.to_vec(), tlv(0xa0, &seq)]))
    }

    /// negTokenResp accepting MS KRB5 with `response` as responseToken.
    pub fn neg_token_resp(response: &[u8]) -> Vec<u8> {
        let seq = tlv(
            0x30,
            &cat(&[
                tlv(0xa0, &[0x0a, 0x01, 0x00]),
                tlv(0xa1, MS_KRB5_OID),
                tlv(0xa2, &tlv(0x04, response)),
            ]),
        );
        tlv(0xa1, &seq)
    }
}

#[cfg(test)]
mod tests {
    use super::super::krb::build as k;
    use super::build::*;
    use super::*;

    fn run(data: &[u8]) -> Vec<Verdict> {
        let mut v = Vec::new();
        token(data, &mut v);
        v
    }

    #[test]
    fn ap_req_in_spnego_init() {
        let t = neg_token_init(&krb5_token([1, 0], &k::ap_req()));
        assert_eq!(
            run(&t),
            vec![
                Verdict::Confirm(Analyzer::Krb),
                Verdict::Confirm(Analyzer::Gssapi)
            ]
        );
    }

    #[test]
    fn ap_rep_in_spnego_resp() {
        let t = neg_token_resp(&krb5_token([2, 0], &k::ap_rep()));
        assert_eq!(
            run(&t),
            vec![
                Verdict::Confirm(Analyzer::Krb),
                Verdict::Confirm(Analyzer::Gssapi)
            ]
        );
        // A bare AP-REP as the response token.
        let t = neg_token_resp(&k::ap_rep());
        assert_eq!(run(&t).first(), Some(&Verdict::Confirm(Analyzer::Krb)));
    }

    #[test]
    fn bad_kerberos_inside_good_spnego() {
        let mut bad = k::ap_req();
        bad.truncate(bad.len() - 3);
        let t = neg_token_init(&krb5_token([1, 0], &bad));
        assert_eq!(
            run(&t),
            vec![
                Verdict::Violation(Analyzer::Krb),
                Verdict::Confirm(Analyzer::Gssapi)
            ]
        );
    }

    #[test]
    fn ntlm_in_spnego() {
        let mut ntlm = b"NTLMSSP\0\x01\0\0\0".to_vec();
        ntlm.extend_from_slice(&[0; 20]);
        assert_eq!(
            run(&neg_token_init(&ntlm)),
            vec![
                Verdict::Confirm(Analyzer::Ntlm),
                Verdict::Confirm(Analyzer::Gssapi)
            ]
        );
    }

    #[test]
    fn raw_krb5_token_is_not_spnego() {
        let t = krb5_token([1, 0], &k::ap_req());
        assert_eq!(run(&t), vec![Verdict::Violation(Analyzer::Gssapi)]);
    }

    #[test]
    fn wrap_and_mic_tokens() {
        assert_eq!(
            run(&[0x05, 0x04, 0x06, 0xff, 1, 2, 3]),
            vec![Verdict::Confirm(Analyzer::Gssapi)]
        );
        assert_eq!(run(&[0x04, 0x04]), vec![Verdict::Confirm(Analyzer::Gssapi)]);
    }

    #[test]
    fn truncated_and_garbage() {
        let t = neg_token_init(&krb5_token([1, 0], &k::ap_req()));
        for n in 0..t.len() {
            // As in binpac, the outer headers' lengths are not enforced:
            // a cut right after an argument still parses.
            let v = run(&t[..n]);
            assert!(
                matches!(
                    v.last(),
                    Some(Verdict::Violation(Analyzer::Gssapi) | Verdict::Confirm(Analyzer::Gssapi))
                ),
                "{n}"
            );
        }
        // Cut inside the OID, and inside the mechToken.
        assert_eq!(run(&t[..5]), vec![Verdict::Violation(Analyzer::Gssapi)]);
        assert_eq!(
            run(&t[..t.len() - 1]),
            vec![Verdict::Violation(Analyzer::Gssapi)]
        );
        assert_eq!(run(b""), vec![Verdict::Violation(Analyzer::Gssapi)]);
        // An argument index outside [0]-[3].
        let t = tlv_bad_index();
        assert_eq!(run(&t), vec![Verdict::Violation(Analyzer::Gssapi)]);
    }

    fn tlv_bad_index() -> Vec<u8> {
        k::tlv(0xa1, &k::tlv(0x30, &k::tlv(0xa5, &[0x05, 0x00])))
    }
}
