//! QUIC analyzer tests: key derivation against the RFCs' published
//! values, and Initial packets sealed here with those keys.

use super::*;
use crate::conn::service::{ConnInfo, L4};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const RFC_DCID: &str = "8394c8f03e515708";

#[test]
fn v1_initial_keys_match_rfc9001_appendix_a() {
    let dcid = hex(RFC_DCID);
    let (key, iv, hp) = Keys::material(VERSION_1, &dcid, true).unwrap();
    assert_eq!(key.to_vec(), hex("1f369613dd76d5467730efcbe3b1a22d"));
    assert_eq!(iv.to_vec(), hex("fa044b2f42a3fd3b46fb255c"));
    assert_eq!(hp.to_vec(), hex("9f50449e04a0e810283a1e9933adedd2"));
    let (key, iv, hp) = Keys::material(VERSION_1, &dcid, false).unwrap();
    assert_eq!(key.to_vec(), hex("cf3a5331653c364c88f0f379b6067e37"));
    assert_eq!(iv.to_vec(), hex("0ac1493ca1905853b0bba03e"));
    assert_eq!(hp.to_vec(), hex("c206b8d9b9f0f37644430b490eeaa314"));
}

#[test]
fn v2_initial_keys_match_rfc9369_appendix_a() {
    let dcid = hex(RFC_DCID);
    let (key, iv, hp) = Keys::material(VERSION_2, &dcid, true).unwrap();
    assert_eq!(key.to_vec(), hex("8b1a0bc121284290a29e0971b5cd045d"));
    assert_eq!(iv.to_vec(), hex("91f73e2351d8fa91660e909f"));
    assert_eq!(hp.to_vec(), hex("45b95e15235d6f45a6b19cbcb0294ba9"));
}

#[test]
fn unknown_versions_have_no_keys() {
    assert!(Keys::material(0x0a0a_0a0a, &hex(RFC_DCID), true).is_none());
    assert!(Keys::material(0, &hex(RFC_DCID), true).is_none());
}

/// A TLS 1.3 ClientHello handshake message (no record header).
fn client_hello() -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x5a; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 1]);
    body.extend_from_slice(&[1, 0]);
    // supported_versions: TLS 1.3; server_name: localhost.
    let ext = b"\x00\x2b\x00\x03\x02\x03\x04\x00\x00\x00\x0e\x00\x0c\x00\x00\x09localhost";
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(ext);
    let mut hs = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend(body);
    hs
}

fn crypto_frame(offset: u64, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    f.extend_from_slice(&[
        0x80 | (offset >> 24) as u8,
        (offset >> 16) as u8,
        (offset >> 8) as u8,
        offset as u8,
    ]);
    f.extend_from_slice(&[0x40 | (data.len() >> 8) as u8, data.len() as u8]);
    f.extend_from_slice(data);
    f
}

/// An Initial packet of `version` with `frames`, protected as RFC 9001 5
/// says, with the keys of the client's first destination id `odcid`.
fn initial(
    version: u32,
    odcid: &[u8],
    dcid: &[u8],
    scid: &[u8],
    client: bool,
    pn: u8,
    frames: &[u8],
) -> Vec<u8> {
    let mut payload = frames.to_vec();
    // Enough ciphertext for the header protection sample.
    while payload.len() < 24 {
        payload.push(0);
    }
    let ty = if version == VERSION_2 { 1u8 } else { 0 };
    let mut h = vec![0xc0 | ty << 4]; // packet number length 1
    h.extend_from_slice(&version.to_be_bytes());
    h.push(dcid.len() as u8);
    h.extend_from_slice(dcid);
    h.push(scid.len() as u8);
    h.extend_from_slice(scid);
    h.push(0); // no token
    let len = 1 + payload.len() + 16;
    h.extend_from_slice(&[0x40 | (len >> 8) as u8, len as u8]);
    let pn_at = h.len();
    h.push(pn);
    let (key, iv, hpk) = Keys::material(version, odcid, client).unwrap();
    let key = LessSafeKey::new(UnboundKey::new(&aead::AES_128_GCM, &key).unwrap());
    let mut nonce = iv;
    nonce[11] ^= pn;
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&h[..]),
            &mut payload,
        )
        .unwrap();
    let mut pkt = h;
    pkt.extend_from_slice(&payload);
    pkt.extend_from_slice(tag.as_ref());
    let hpk =
        header_protection::HeaderProtectionKey::new(&header_protection::AES_128, &hpk).unwrap();
    let mask = hpk.new_mask(&pkt[pn_at + 4..pn_at + 20]).unwrap();
    pkt[0] ^= mask[0] & 0x0f;
    pkt[pn_at] ^= mask[1];
    pkt
}

fn info() -> ConnInfo {
    ConnInfo {
        proto: L4::Udp,
        orig_h: "198.18.0.1".parse().unwrap(),
        orig_p: 50000,
        resp_h: "198.18.0.2".parse().unwrap(),
        resp_p: 443,
    }
}

fn feed(q: &mut Quic, is_orig: bool, d: &[u8]) -> Notes {
    let i = info();
    let mut notes = Notes::new();
    let mut cx = Cx {
        info: &i,
        partial: false,
        notes: &mut notes,
    };
    q.deliver(is_orig, d, &mut cx);
    notes
}

const ODCID: &[u8] = &[1, 2, 3, 4, 5, 6, 7, 8];
const SCID: &[u8] = &[9, 9, 9, 9];

#[test]
fn a_client_initial_confirms_quic_then_ssl() {
    for version in [VERSION_1, VERSION_2, 0xff00_001d, 0xface_b002] {
        let mut q = Quic::new();
        let mut d = initial(
            version,
            ODCID,
            ODCID,
            SCID,
            true,
            0,
            &crypto_frame(0, &client_hello()),
        );
        // Datagram padding after the packet is not QUIC and not an error.
        d.extend_from_slice(&[0; 40]);
        assert_eq!(
            feed(&mut q, true, &d).as_slice(),
            &[Note::Confirm, Note::ConfirmAs(Analyzer::Ssl)],
            "version {version:#x}"
        );
    }
}

#[test]
fn a_client_hello_split_over_initials_and_out_of_order_confirms_once_complete() {
    let ch = client_hello();
    let (a, b) = ch.split_at(30);
    let mut q = Quic::new();
    // The second half first, in packet 1; then the first half.
    let p1 = initial(VERSION_1, ODCID, ODCID, SCID, true, 1, &crypto_frame(30, b));
    assert_eq!(feed(&mut q, true, &p1).as_slice(), &[Note::Confirm]);
    let p0 = initial(VERSION_1, ODCID, ODCID, SCID, true, 0, &crypto_frame(0, a));
    assert_eq!(
        feed(&mut q, true, &p0).as_slice(),
        &[Note::Confirm, Note::ConfirmAs(Analyzer::Ssl)]
    );
    // The handshake message is complete: later Initials are not decrypted.
    let p2 = initial(VERSION_1, ODCID, ODCID, SCID, true, 2, &[0x01]);
    assert!(feed(&mut q, true, &p2).is_empty());
}

#[test]
fn the_server_initial_uses_the_client_id_and_server_keys() {
    let mut q = Quic::new();
    let c = initial(
        VERSION_1,
        ODCID,
        ODCID,
        SCID,
        true,
        0,
        &crypto_frame(0, &client_hello()),
    );
    feed(&mut q, true, &c);
    // A server Initial carrying an ACK, to the client's id, from a new id.
    let s = initial(
        VERSION_1,
        ODCID,
        SCID,
        &[7; 8],
        false,
        0,
        &[0x02, 0, 0, 0, 0],
    );
    assert_eq!(feed(&mut q, false, &s).as_slice(), &[Note::Confirm]);
    assert!(!q.skip);
}

#[test]
fn a_server_initial_before_the_client_is_not_decrypted() {
    let mut q = Quic::new();
    let s = initial(VERSION_1, ODCID, SCID, &[7; 8], false, 0, &[0x01]);
    assert!(feed(&mut q, false, &s).is_empty());
}

#[test]
fn wrong_keys_are_a_violation_and_stop_the_analyzer() {
    let mut q = Quic::new();
    // Sealed with another connection id than the one on the wire.
    let d = initial(
        VERSION_1,
        &[0xee; 8],
        ODCID,
        SCID,
        true,
        0,
        &crypto_frame(0, &client_hello()),
    );
    assert_eq!(feed(&mut q, true, &d).as_slice(), &[Note::Violation]);
    assert!(q.skip);
    let good = initial(
        VERSION_1,
        ODCID,
        ODCID,
        SCID,
        true,
        0,
        &crypto_frame(0, &client_hello()),
    );
    assert!(feed(&mut q, true, &good).is_empty());
}

#[test]
fn unknown_versions_and_frames_are_violations() {
    let mut q = Quic::new();
    let mut d = initial(VERSION_1, ODCID, ODCID, SCID, true, 0, &[0x01]);
    d[1..5].copy_from_slice(&0x1a2a_3a4au32.to_be_bytes());
    assert_eq!(feed(&mut q, true, &d).as_slice(), &[Note::Violation]);
    // A STREAM frame has no place in an Initial: QUIC confirmed, then failed.
    let mut q = Quic::new();
    let d = initial(VERSION_1, ODCID, ODCID, SCID, true, 0, &[0x08, 0, 1, 0x41]);
    assert_eq!(
        feed(&mut q, true, &d).as_slice(),
        &[Note::Confirm, Note::Violation]
    );
}

#[test]
fn more_crypto_than_the_message_is_a_violation() {
    let mut ch = client_hello();
    ch.extend_from_slice(&[0x16; 8]);
    let mut q = Quic::new();
    let d = initial(
        VERSION_1,
        ODCID,
        ODCID,
        SCID,
        true,
        0,
        &crypto_frame(0, &ch),
    );
    assert_eq!(
        feed(&mut q, true, &d).as_slice(),
        &[
            Note::Confirm,
            Note::ConfirmAs(Analyzer::Ssl),
            Note::Violation
        ]
    );
}

#[test]
fn short_headers_and_non_quic_bytes_are_cheap_and_quiet() {
    let mut q = Quic::new();
    assert!(feed(&mut q, true, &[0x40, 1, 2, 3, 4, 5, 6, 7, 8, 9]).is_empty());
    assert!(feed(&mut q, false, &[0x00, 0xff]).is_empty());
    assert!(!q.skip);
}

#[test]
fn a_retry_resets_the_handshake() {
    let mut q = Quic::new();
    let c = initial(
        VERSION_1,
        ODCID,
        ODCID,
        SCID,
        true,
        0,
        &crypto_frame(0, &client_hello()),
    );
    feed(&mut q, true, &c);
    let mut retry = vec![0xf0];
    retry.extend_from_slice(&VERSION_1.to_be_bytes());
    retry.push(4);
    retry.extend_from_slice(SCID);
    retry.push(8);
    retry.extend_from_slice(&[7; 8]);
    retry.extend_from_slice(&[0xab; 40]);
    assert!(feed(&mut q, false, &retry).is_empty());
    // The client starts again towards the server's new id.
    let new_id = [7u8; 8];
    let c2 = initial(
        VERSION_1,
        &new_id,
        &new_id,
        SCID,
        true,
        1,
        &crypto_frame(0, &client_hello()),
    );
    assert_eq!(
        feed(&mut q, true, &c2).as_slice(),
        &[Note::Confirm, Note::ConfirmAs(Analyzer::Ssl)]
    );
}

#[test]
fn noise_never_panics() {
    let mut x: u32 = 7;
    let mut next = || {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        (x >> 16) as u8
    };
    let good = initial(
        VERSION_1,
        ODCID,
        ODCID,
        SCID,
        true,
        0,
        &crypto_frame(0, &client_hello()),
    );
    for round in 0..3000 {
        let mut q = Quic::new();
        let mut d = good.clone();
        let flips = 1 + usize::from(next() % 4);
        for _ in 0..flips {
            let i = usize::from(next()) * 7 % d.len();
            d[i] ^= next() | 1;
        }
        if round % 3 == 0 {
            let cut = usize::from(next()) * 5 % d.len();
            d.truncate(cut);
        }
        feed(&mut q, true, &d);
        feed(&mut q, false, &d);
    }
}
