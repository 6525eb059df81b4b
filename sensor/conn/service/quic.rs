//! QUIC (Zeek's Spicy analyzer, `src/analyzer/protocol/quic/QUIC.spicy`,
//! `decrypt_crypto.cc`; logged as `quic`), attached on 443/udp, on the DoQ
//! ports 853 and 784/udp, or by the `dpd_quic_initial` /
//! `dpd_quic_v2_initial` signatures; and the SSL analyzer it feeds with the
//! TLS handshake carried in CRYPTO frames (logged as `ssl`), so that a
//! QUIC connection is `quic,ssl` exactly when Zeek says so.
//!
//! Each datagram is parsed on its own as a sequence of QUIC packets (a
//! Spicy block parser sharing one context per connection):
//!
//! * a packet without the fixed bit ends the datagram (discarded, not an
//!   error); a short-header packet takes the rest of the datagram;
//! * a long header names a version: QUIC v1, v2 (RFC 9369), drafts 22-34
//!   and Facebook's mvfst versions; any other version is a violation;
//! * an Initial packet is decrypted (HKDF-SHA256 from the version's
//!   initial salt and the client's first destination connection id,
//!   AES-128 header protection, AES-128-GCM) while that direction's
//!   handshake message is incomplete — the server's only once the
//!   client's connection id is known. The first decryption that succeeds
//!   confirms QUIC; one that fails is a violation;
//! * the decrypted frames (PADDING, PING, ACK, CRYPTO, CONNECTION_CLOSE;
//!   any other type is a violation) are parsed; CRYPTO data is reassembled
//!   by offset per direction, and the first handshake message (the
//!   ClientHello or ServerHello) goes to an SSL analyzer as one TLS
//!   record, where it confirms or violates `ssl` by the SSL rules;
//! * more CRYPTO data than the handshake message announced is a violation;
//! * a Retry packet resets the decryption state and the SSL analyzer.
//!
//! After any violation the analyzer stops (Spicy's `SetSkip`), whether or
//! not the violation still counts for `service`.
//!
//! The cryptography is `ring`'s (HKDF, AES-GCM, QUIC header protection);
//! keys are derived once per direction and connection id. Only candidate
//! Initial packets are decrypted: short-header packets, which carry the
//! bulk of a QUIC connection, cost a header check.
//!
//! Limits: an Initial payload over 10,000 bytes is not decrypted (a
//! violation, as in Zeek); out-of-order CRYPTO data is buffered up to
//! [`MAX_CRYPTO_PENDING`] bytes per direction (more is a violation); the
//! handshake message may announce at most 2^14 + 256 bytes, or its
//! delivery stops (without a violation, as a Spicy sink's unit error).

use std::collections::BTreeMap;

use ring::aead::{self, quic as header_protection, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;

use super::ssl::Ssl;
use super::{Analyzer, Cx, Note, Notes, Parser};

/// Out-of-order CRYPTO bytes kept per direction: a handshake message is at
/// most 2^14 + 256 bytes.
pub const MAX_CRYPTO_PENDING: usize = 32 * 1024;
/// `decrypt_crypto.cc`: longer Initial payloads are refused.
const MAX_PAYLOAD: u64 = 10_000;
/// RFC 8446: a handshake message fits one record's 2^14 + 256 bytes.
const MAX_HANDSHAKE: u32 = (1 << 14) + 256;
const TAG_LEN: usize = 16;
const SAMPLE_LEN: usize = 16;

const SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];
const SALT_D22: [u8; 20] = [
    0x7f, 0xbc, 0xdb, 0x0e, 0x7c, 0x66, 0xbb, 0xe9, 0x19, 0x3a, 0x96, 0xcd, 0x21, 0x51, 0x9e, 0xbd,
    0x7a, 0x02, 0x64, 0x4a,
];
const SALT_D23_D28: [u8; 20] = [
    0xc3, 0xee, 0xf7, 0x12, 0xc7, 0x2e, 0xbb, 0x5a, 0x11, 0xa7, 0xd2, 0x43, 0x2b, 0xb4, 0x63, 0x65,
    0xbe, 0xf9, 0xf5, 0x02,
];
const SALT_D29_D32: [u8; 20] = [
    0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97, 0x86, 0xf1, 0x9c, 0x61, 0x11, 0xe0,
    0x43, 0x90, 0xa8, 0x99,
];
const SALT_V2: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb,
    0xf9, 0xbd, 0x2e, 0xd9,
];

const VERSION_1: u32 = 0x0000_0001;
const VERSION_2: u32 = 0x6b33_43cf;

/// The packet protection family of a version Zeek's analyzer handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    /// QUIC v1 labels and packet types (v1, drafts, mvfst).
    V1,
    /// RFC 9369: its own salt, labels and packet type numbers.
    V2,
}

fn family(version: u32) -> Option<Family> {
    match version {
        VERSION_1 | 0xff00_0016..=0xff00_0022 | 0xface_b001 | 0xface_b002..=0xface_b013 => {
            Some(Family::V1)
        }
        VERSION_2 => Some(Family::V2),
        _ => None,
    }
}

fn initial_salt(version: u32) -> &'static [u8; 20] {
    match version {
        VERSION_2 => &SALT_V2,
        0xff00_0016 | 0xface_b001 => &SALT_D22,
        0xff00_0017..=0xff00_001c | 0xface_b002..=0xface_b013 => &SALT_D23_D28,
        0xff00_001d..=0xff00_0020 => &SALT_D29_D32,
        _ => &SALT_V1,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LongType {
    Initial,
    ZeroRtt,
    Handshake,
    Retry,
}

fn long_type(f: Family, bits: u8) -> LongType {
    match (f, bits & 3) {
        (Family::V1, 0) | (Family::V2, 1) => LongType::Initial,
        (Family::V1, 1) | (Family::V2, 2) => LongType::ZeroRtt,
        (Family::V1, 2) | (Family::V2, 3) => LongType::Handshake,
        _ => LongType::Retry,
    }
}

/// Why a datagram was a protocol violation (kept for debugging and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    Truncated,
    UnhandledVersion,
    InitialTooShort,
    PayloadTooLarge,
    DecryptionFailed,
    UnhandledFrame(u8),
    TooMuchCrypto,
}

// --- keys ---------------------------------------------------------------

/// An HKDF output length for `ring`'s expand.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// TLS 1.3's HkdfLabel with an empty context (RFC 8446 7.1).
fn label(out_len: u16, name: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + 6 + name.len());
    v.extend_from_slice(&out_len.to_be_bytes());
    v.push((6 + name.len()) as u8);
    v.extend_from_slice(b"tls13 ");
    v.extend_from_slice(name);
    v.push(0);
    v
}

/// Initial packet protection of one direction.
struct Keys {
    key: LessSafeKey,
    iv: [u8; 12],
    hp: header_protection::HeaderProtectionKey,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys")
    }
}

impl Keys {
    /// RFC 9001 5.2 (RFC 9369 3.3.1 for v2): the client's or server's
    /// Initial key, IV and header protection key, derived from the
    /// client's first destination connection id.
    fn material(version: u32, dcid: &[u8], client: bool) -> Option<([u8; 16], [u8; 12], [u8; 16])> {
        let fam = family(version)?;
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, initial_salt(version));
        let initial = salt.extract(dcid);
        let side = label(32, if client { b"client in" } else { b"server in" });
        let secret: hkdf::Prk = initial.expand(&[&side], hkdf::HKDF_SHA256).ok()?.into();
        let (k, i, h): (&[u8], &[u8], &[u8]) = match fam {
            Family::V1 => (b"quic key", b"quic iv", b"quic hp"),
            Family::V2 => (b"quicv2 key", b"quicv2 iv", b"quicv2 hp"),
        };
        let mut key = [0u8; 16];
        let mut iv = [0u8; 12];
        let mut hp = [0u8; 16];
        for (name, out) in [(k, &mut key[..]), (i, &mut iv[..]), (h, &mut hp[..])] {
            let info = label(out.len() as u16, name);
            secret
                .expand(&[&info], Len(out.len()))
                .ok()?
                .fill(out)
                .ok()?;
        }
        Some((key, iv, hp))
    }

    fn derive(version: u32, dcid: &[u8], client: bool) -> Option<Keys> {
        let (key, iv, hp) = Self::material(version, dcid, client)?;
        Some(Keys {
            key: LessSafeKey::new(UnboundKey::new(&aead::AES_128_GCM, &key).ok()?),
            iv,
            hp: header_protection::HeaderProtectionKey::new(&header_protection::AES_128, &hp)
                .ok()?,
        })
    }

    /// Removes header protection and opens the packet `pkt` whose packet
    /// number starts at `pn_at` and whose Length field says `len` bytes
    /// (packet number + ciphertext + tag). As `decrypt_crypto.cc`, the
    /// packet number used for the nonce is the truncated one on the wire.
    fn open(&self, pkt: &[u8], pn_at: usize, len: u64) -> Result<Vec<u8>, Fault> {
        if len > MAX_PAYLOAD {
            return Err(Fault::PayloadTooLarge);
        }
        let sample = pkt
            .get(pn_at + 4..pn_at + 4 + SAMPLE_LEN)
            .ok_or(Fault::Truncated)?;
        let mask = self
            .hp
            .new_mask(sample)
            .map_err(|_| Fault::DecryptionFailed)?;
        let first = pkt.first().ok_or(Fault::Truncated)? ^ (mask[0] & 0x0f);
        let pn_len = usize::from(first & 3) + 1;
        if (len as usize) < pn_len + TAG_LEN {
            return Err(Fault::DecryptionFailed);
        }
        let mut header = pkt.get(..pn_at + pn_len).ok_or(Fault::Truncated)?.to_vec();
        header[0] = first;
        let mut pn: u64 = 0;
        for i in 0..pn_len {
            let b = header[pn_at + i] ^ mask[1 + i];
            header[pn_at + i] = b;
            pn = pn << 8 | u64::from(b);
        }
        let mut nonce = self.iv;
        for (i, b) in pn.to_be_bytes().iter().enumerate() {
            nonce[4 + i] ^= b;
        }
        let body_end = pn_at + len as usize;
        let mut body = pkt
            .get(pn_at + pn_len..body_end)
            .ok_or(Fault::Truncated)?
            .to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&header[..]),
                &mut body,
            )
            .map_err(|_| Fault::DecryptionFailed)?;
        let n = plain.len();
        body.truncate(n);
        if body.is_empty() {
            return Err(Fault::DecryptionFailed);
        }
        Ok(body)
    }
}

// --- CRYPTO reassembly -----------------------------------------------------

/// One direction's CRYPTO stream: reassembled by offset (earlier data wins
/// on overlap, as a Spicy sink), its first handshake message forwarded to
/// SSL as one TLS record.
#[derive(Debug, Default)]
struct Crypto {
    /// Bytes delivered in order (the sink's size).
    next: u64,
    pending: BTreeMap<u64, Vec<u8>>,
    pending_bytes: usize,
    hdr: [u8; 4],
    hdr_len: u8,
    /// Handshake message length plus its 4-byte header; 0 until known.
    length: u32,
    body_left: u32,
    /// The message announced too much: nothing more is forwarded.
    stopped: bool,
    /// The whole message was forwarded.
    finished: bool,
}

impl Crypto {
    /// Writes CRYPTO data at `offset`; in-order data goes to `out` (the
    /// TLS bytes for SSL). Errors as the Spicy sink and Frame do.
    fn write(&mut self, offset: u64, data: &[u8], out: &mut Vec<u8>) -> Result<(), Fault> {
        let end = offset.saturating_add(data.len() as u64);
        if data.is_empty() || end <= self.next {
            return self.check();
        }
        let skip = self.next.saturating_sub(offset) as usize;
        let (offset, data) = (offset.max(self.next), data.get(skip..).unwrap_or(&[]));
        if offset == self.next && self.pending.is_empty() {
            self.deliver(data, out)?;
        } else {
            if self.pending_bytes + data.len() > MAX_CRYPTO_PENDING {
                return Err(Fault::TooMuchCrypto);
            }
            if !self.pending.contains_key(&offset) {
                self.pending_bytes += data.len();
                self.pending.insert(offset, data.to_vec());
            }
            while let Some(entry) = self.pending.first_entry() {
                if *entry.key() > self.next {
                    break;
                }
                let at = *entry.key();
                let chunk = entry.remove();
                self.pending_bytes -= chunk.len();
                let skip = (self.next - at) as usize;
                if let Some(fresh) = chunk.get(skip..) {
                    if !fresh.is_empty() {
                        self.deliver(fresh, out)?;
                    }
                }
            }
        }
        self.check()
    }

    /// Frame's check after each write: no more data than the message.
    fn check(&self) -> Result<(), Fault> {
        let too_much = if self.length > 0 {
            self.next > u64::from(self.length)
        } else {
            self.next > 2000
        };
        if too_much {
            Err(Fault::TooMuchCrypto)
        } else {
            Ok(())
        }
    }

    fn deliver(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), Fault> {
        if self.finished {
            // "more data after sink's unit has already completed parsing"
            return Err(Fault::TooMuchCrypto);
        }
        self.next += data.len() as u64;
        if self.stopped {
            return Ok(());
        }
        while self.hdr_len < 4 {
            let Some((&b, rest)) = data.split_first() else {
                return Ok(());
            };
            self.hdr[usize::from(self.hdr_len)] = b;
            self.hdr_len += 1;
            data = rest;
        }
        if self.length == 0 {
            let len = u32::from_be_bytes([0, self.hdr[1], self.hdr[2], self.hdr[3]]) + 4;
            self.length = len;
            if len > MAX_HANDSHAKE {
                self.stopped = true;
                return Ok(());
            }
            self.body_left = len - 4;
            out.extend_from_slice(&[0x16, 0x03, 0x03]);
            out.extend_from_slice(&(len as u16).to_be_bytes());
            out.extend_from_slice(&self.hdr);
        }
        let n = (self.body_left as usize).min(data.len());
        out.extend_from_slice(data.get(..n).unwrap_or(&[]));
        self.body_left -= n as u32;
        if self.body_left == 0 {
            self.finished = true;
        }
        Ok(())
    }
}

// --- the analyzer --------------------------------------------------------

/// A bounds-checked reader over one packet.
struct Rd<'a> {
    d: &'a [u8],
    pos: usize,
}

impl<'a> Rd<'a> {
    fn u8(&mut self) -> Result<u8, Fault> {
        let b = *self.d.get(self.pos).ok_or(Fault::Truncated)?;
        self.pos += 1;
        Ok(b)
    }
    fn bytes(&mut self, n: u64) -> Result<&'a [u8], Fault> {
        let n = usize::try_from(n).map_err(|_| Fault::Truncated)?;
        let end = self.pos.checked_add(n).ok_or(Fault::Truncated)?;
        let s = self.d.get(self.pos..end).ok_or(Fault::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, Fault> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// RFC 9000 16: two high bits give the length (1, 2, 4, 8 bytes).
    fn varint(&mut self) -> Result<u64, Fault> {
        let first = self.u8()?;
        let n = 1usize << (first >> 6);
        let mut v = u64::from(first & 0x3f);
        for _ in 1..n {
            v = v << 8 | u64::from(self.u8()?);
        }
        Ok(v)
    }
    fn at_end(&self) -> bool {
        self.pos >= self.d.len()
    }
}

#[derive(Debug)]
pub(crate) struct Quic {
    /// The client's first Initial destination connection id: both
    /// directions' Initial keys derive from it.
    initial_dcid: Option<Vec<u8>>,
    client_cid_len: u8,
    /// Keys per direction (0 = client), for the version they were made for.
    keys: [Option<(u32, Keys)>; 2],
    crypto: [Crypto; 2],
    ssl: Option<Ssl>,
    skip: bool,
}

impl Quic {
    pub fn new() -> Self {
        Quic {
            initial_dcid: None,
            client_cid_len: 0,
            keys: [None, None],
            crypto: Default::default(),
            ssl: None,
            skip: false,
        }
    }

    /// Zeek's `reset_crypto` after a Retry: a new handshake, new keys, a
    /// new SSL analyzer.
    fn reset(&mut self) {
        self.initial_dcid = None;
        self.keys = [None, None];
        self.crypto = Default::default();
        self.ssl = None;
    }

    fn can_decrypt(&self, is_orig: bool) -> bool {
        let d = usize::from(!is_orig);
        (is_orig || self.initial_dcid.is_some()) && !self.crypto[d].finished
    }

    fn datagram(&mut self, is_orig: bool, data: &[u8], cx: &mut Cx<'_>) -> Result<(), Fault> {
        let mut pos = 0;
        while let Some(&first) = data.get(pos) {
            if first & 0x40 == 0 {
                // Not a QUIC packet: the rest of the datagram is dropped.
                return Ok(());
            }
            if first & 0x80 == 0 {
                // Short header: the destination id, then opaque payload.
                let need = 1 + usize::from(self.client_cid_len);
                return if data.len() - pos >= need {
                    Ok(())
                } else {
                    Err(Fault::Truncated)
                };
            }
            pos += self.long_packet(is_orig, data.get(pos..).unwrap_or(&[]), cx)?;
        }
        Ok(())
    }

    /// One long-header packet at the start of `pkt`; returns its length.
    fn long_packet(&mut self, is_orig: bool, pkt: &[u8], cx: &mut Cx<'_>) -> Result<usize, Fault> {
        let mut r = Rd { d: pkt, pos: 0 };
        let first = r.u8()?;
        let version = r.u32()?;
        let dcid_len = r.u8()?;
        let dcid = r.bytes(u64::from(dcid_len))?;
        let scid_len = r.u8()?;
        r.bytes(u64::from(scid_len))?;
        let fam = family(version).ok_or(Fault::UnhandledVersion)?;
        let (pn_at, len) = match long_type(fam, first >> 4) {
            LongType::Initial => {
                let token_len = r.varint()?;
                r.bytes(token_len)?;
                let len = r.varint()?;
                if len < 20 {
                    return Err(Fault::InitialTooShort);
                }
                let pn_at = r.pos;
                r.bytes(len)?;
                (pn_at, len)
            }
            LongType::ZeroRtt | LongType::Handshake => {
                let len = r.varint()?;
                r.bytes(len)?;
                return Ok(r.pos);
            }
            LongType::Retry => {
                self.reset();
                return Ok(pkt.len());
            }
        };
        let end = r.pos;
        if !self.can_decrypt(is_orig) {
            return Ok(end);
        }
        if is_orig {
            self.client_cid_len = scid_len;
            if self.initial_dcid.is_none() {
                self.initial_dcid = Some(dcid.to_vec());
            }
        } else {
            self.client_cid_len = dcid_len;
        }
        let d = usize::from(!is_orig);
        if self.keys[d].as_ref().is_none_or(|(v, _)| *v != version) {
            let id = self.initial_dcid.as_deref().unwrap_or(&[]);
            let keys = Keys::derive(version, id, is_orig).ok_or(Fault::DecryptionFailed)?;
            self.keys[d] = Some((version, keys));
        }
        let plain = match &self.keys[d] {
            Some((_, k)) => k.open(pkt.get(..end).unwrap_or(&[]), pn_at, len)?,
            None => return Err(Fault::DecryptionFailed),
        };
        cx.confirm();
        self.frames(is_orig, &plain, cx)?;
        Ok(end)
    }

    /// The frames of a decrypted Initial packet.
    fn frames(&mut self, is_orig: bool, plain: &[u8], cx: &mut Cx<'_>) -> Result<(), Fault> {
        let d = usize::from(!is_orig);
        let mut r = Rd { d: plain, pos: 0 };
        let mut tls = Vec::new();
        let mut result = Ok(());
        while !r.at_end() {
            let step = (|| -> Result<(), Fault> {
                match r.u8()? {
                    0x00 => {
                        while r.d.get(r.pos) == Some(&0) {
                            r.pos += 1;
                        }
                    }
                    0x01 => {}
                    t @ (0x02 | 0x03) => {
                        r.varint()?;
                        r.varint()?;
                        let ranges = r.varint()?;
                        r.varint()?;
                        for _ in 0..ranges {
                            r.varint()?;
                            r.varint()?;
                        }
                        if t == 0x03 {
                            r.varint()?;
                            r.varint()?;
                            r.varint()?;
                        }
                    }
                    0x06 => {
                        let offset = r.varint()?;
                        let len = r.varint()?;
                        let data = r.bytes(len)?;
                        self.crypto[d].write(offset, data, &mut tls)?;
                    }
                    0x1c => {
                        r.varint()?;
                        if r.d.get(r.pos) == Some(&0) {
                            r.pos += 1;
                        } else {
                            r.varint()?;
                        }
                        let reason = r.varint()?;
                        r.bytes(reason)?;
                    }
                    t => return Err(Fault::UnhandledFrame(t)),
                }
                Ok(())
            })();
            if step.is_err() {
                result = step;
                break;
            }
        }
        // What reached the sink before an error still went to SSL.
        if !tls.is_empty() {
            self.feed_ssl(is_orig, &tls, cx);
        }
        result
    }

    /// Hands TLS bytes to the SSL child; its verdicts count for `ssl`.
    fn feed_ssl(&mut self, is_orig: bool, tls: &[u8], cx: &mut Cx<'_>) {
        let ssl = self.ssl.get_or_insert_with(Ssl::new);
        let mut notes = Notes::new();
        {
            let mut sub = Cx {
                info: cx.info,
                partial: false,
                notes: &mut notes,
            };
            ssl.deliver(is_orig, tls, &mut sub);
        }
        for n in notes {
            match n {
                Note::Confirm => cx.confirm_as(Analyzer::Ssl),
                Note::Violation => cx.violation_as(Analyzer::Ssl),
                _ => {}
            }
        }
    }
}

impl Parser for Quic {
    fn deliver(&mut self, is_orig: bool, data: &[u8], cx: &mut Cx<'_>) -> usize {
        if self.skip {
            return data.len();
        }
        if let Err(fault) = self.datagram(is_orig, data, cx) {
            tracing::trace!(?fault, is_orig, "QUIC protocol violation");
            cx.violation();
            self.skip = true;
            self.ssl = None;
        }
        data.len()
    }

    fn finished(&self, confirmed: bool, settled: bool, _seen: u64) -> bool {
        self.skip || (confirmed && settled)
    }
}

#[cfg(test)]
#[path = "quic_tests.rs"]
mod tests;
