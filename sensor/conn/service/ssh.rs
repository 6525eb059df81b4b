//! SSH (`src/analyzer/protocol/ssh/SSH.cc`, `ssh-protocol.pac`,
//! `ssh-analyzer.pac`), attached on 22/tcp or by the `dpd_ssh_client`
//! signature (both sides' banners).
//!
//! The analyzer confirms on the first `SSH_MSG_NEWKEYS` (SSH2, from either
//! side) or `SSH_CMSG_SESSION_KEY` (SSH1) that it parses, i.e. when a key
//! exchange completed, not on the banners alone. Violations are binpac
//! exceptions: a client whose first line does not start with `SSH-`, a
//! binary packet before both versions are known (or with incompatible
//! versions), a key-exchange message that does not parse in the current
//! state (KEXINIT structure while in KEX_INIT, the DH/GEX/ECDH/GSS/RSA
//! messages after the algorithm was chosen, with no catch-all for the ECDH,
//! GSS and RSA families), a padding larger than the packet. The server may
//! send lines before its banner. Nothing is parsed on partial connections
//! or after a content gap; encrypted data is not parsed.
//!
//! Zeek's limits (`ssh-analyzer.pac`), each a weird and an `X` in history:
//! a packet longer than `SSH::max_packet_length` (8 MiB) and a string
//! longer than `SSH::max_string_length` (2 MiB) are cut to that length, and
//! what follows is parsed from there (so the rest of a cut packet reads as
//! the next one, usually a violation); a KEXINIT that parses and has more
//! names in a list than `SSH::max_kexinit_*` (100 each) allows. 0 disables
//! a limit.
//!
//! Limits: version lines are kept up to [`LINE_KEEP`] bytes; a packet is
//! buffered up to [`MAX_PACKET_KEEP`] bytes (a longer one is checked on its
//! first bytes only, but a KEXINIT's names are counted as its bytes pass,
//! in [`KexScan`]); the first KEXINIT's algorithm list is kept up to
//! [`MAX_KEX_LIST`] bytes and 100 names for choosing the key exchange.

use std::cell::Cell;

use super::line::{LineSplitter, Owned};
use super::{AnalyzerLimits, Cx, KexList, Parser};
use crate::decode::weird::Weird;

const LINE_KEEP: usize = 256;
const MAX_PACKET_KEEP: usize = 4096;
const MAX_KEX_LIST: usize = 2048;
const MAX_KEX_ALGS: usize = 100;

const MSG_NEWKEYS: u8 = 21;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    Unknown,
    V1,
    V2,
    V199,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    VersionExchange,
    KexInit,
    KexDhGex,
    KexDh,
    KexEcc,
    KexGss,
    KexRsa,
    Encrypted,
}

#[derive(Debug)]
struct Dir {
    state: State,
    lines: Option<LineSplitter>,
    hdr: [u8; 4],
    hdr_len: u8,
    /// Bytes of the current packet still to come.
    left: u32,
    /// Length of the current packet (after the length field).
    total: u32,
    buf: Vec<u8>,
    /// Name counts of the packet, if it is read as a KEXINIT.
    kex: KexScan,
}

impl Dir {
    fn new() -> Self {
        Dir {
            state: State::VersionExchange,
            lines: Some(LineSplitter::new(LINE_KEEP)),
            hdr: [0; 4],
            hdr_len: 0,
            left: 0,
            total: 0,
            buf: Vec::new(),
            kex: KexScan::default(),
        }
    }
}

/// The ten name lists of a KEXINIT, by the limit each falls under.
const KEX_LISTS: [KexList; 10] = [
    KexList::Kex,
    KexList::HostKey,
    KexList::Encryption,
    KexList::Encryption,
    KexList::Mac,
    KexList::Mac,
    KexList::Compression,
    KexList::Compression,
    KexList::Languages,
    KexList::Languages,
];

/// Counts the names of a KEXINIT's lists as the packet's bytes pass, so
/// that lists beyond what a packet keeps ([`MAX_PACKET_KEEP`]) still count:
/// `proc_ssh2_kexinit` splits every list at commas, and a list with more
/// names than its limit is a weird.
#[derive(Debug, Default)]
struct KexScan {
    /// Bytes of the packet (after its length field) seen.
    off: u64,
    /// Where the payload ends (packet length less padding), once known.
    end: u64,
    /// List being read (10: all read).
    list: u8,
    len_buf: [u8; 4],
    len_got: u8,
    /// Bytes of the current list still to come (after the string cap).
    left: u32,
    words: u64,
    /// Offset just after the last list.
    lists_end: u64,
    counts: [u64; 10],
    /// The list's length field was not 0 (languages count only then).
    nonempty: [bool; 10],
    /// A list was longer than `SSH::max_string_length`.
    string_cut: bool,
}

impl KexScan {
    fn reset(&mut self) {
        *self = KexScan::default();
    }

    fn finish_list(&mut self) {
        if let Some(c) = self.counts.get_mut(usize::from(self.list)) {
            *c = self.words;
        }
        self.list += 1;
        self.len_got = 0;
        if self.list == 10 {
            self.lists_end = self.off + 1;
        }
    }

    /// More bytes of a packet of `total` bytes; `max_string` caps strings.
    fn feed(&mut self, data: &[u8], total: u32, max_string: u32) {
        for &b in data {
            if self.list >= 10 {
                // Only the offset matters from here on.
                break;
            }
            match self.off {
                0 => self.end = u64::from(total).saturating_sub(u64::from(b)),
                1..=17 => {} // message type, cookie
                _ if self.len_got < 4 => {
                    self.len_buf[usize::from(self.len_got)] = b;
                    self.len_got += 1;
                    if self.len_got == 4 {
                        let raw = u32::from_be_bytes(self.len_buf);
                        self.left = raw.min(max_string);
                        self.string_cut |= raw > max_string;
                        self.words = 1;
                        if let Some(n) = self.nonempty.get_mut(usize::from(self.list)) {
                            *n = raw > 0;
                        }
                        if self.left == 0 {
                            self.finish_list();
                        }
                    }
                }
                _ => {
                    if b == b',' {
                        self.words += 1;
                    }
                    self.left -= 1;
                    if self.left == 0 {
                        self.finish_list();
                    }
                }
            }
            self.off += 1;
        }
    }

    /// Whether the KEXINIT parsed: all lists, the flag and the reserved
    /// word inside the payload (binpac's `&length`).
    fn parsed(&self) -> bool {
        self.list == 10 && self.lists_end + 5 <= self.end
    }

    /// The limits this KEXINIT went over, in list order.
    fn over(&self, max: &[u64; 6]) -> impl Iterator<Item = KexList> + '_ {
        let max = *max;
        KEX_LISTS
            .iter()
            .zip(self.counts.iter().zip(self.nonempty.iter()))
            .filter(move |(k, (n, nonempty))| {
                let m = max[**k as usize];
                (**k != KexList::Languages || **nonempty) && m > 0 && **n > m
            })
            .map(|(k, _)| *k)
    }
}

fn kex_weird(k: KexList) -> Weird {
    match k {
        KexList::Kex => Weird::SshMaxKexinitKexAlgorithmsExceeded,
        KexList::HostKey => Weird::SshMaxKexinitHostkeyAlgorithmsExceeded,
        KexList::Encryption => Weird::SshMaxKexinitEncryptionAlgorithmsExceeded,
        KexList::Mac => Weird::SshMaxKexinitMacAlgorithmsExceeded,
        KexList::Compression => Weird::SshMaxKexinitCompressionAlgorithmsExceeded,
        KexList::Languages => Weird::SshMaxKexinitLanguagesExceeded,
    }
}

/// `SSH::max_string_length` while a packet is parsed; remembers whether
/// a string was cut.
struct StrCap {
    max: u32,
    cut: Cell<bool>,
}

impl StrCap {
    fn new(max: u32) -> Self {
        StrCap {
            max,
            cut: Cell::new(false),
        }
    }
    fn apply(&self, len: u32) -> u32 {
        if len > self.max {
            self.cut.set(true);
            self.max
        } else {
            len
        }
    }
}

#[derive(Debug)]
pub(crate) struct Ssh {
    had_gap: bool,
    /// A violation was raised; binpac's state is unreliable after it, so
    /// nothing more is parsed (the analyzer is removed anyway within 10 KiB).
    broken: bool,
    dirs: [Dir; 2],
    v_client: Version,
    v_server: Version,
    version: Version,
    kex_seen: bool,
    kex_orig: bool,
    kex_cache: Vec<u8>,
    scratch: Vec<u8>,
    /// `SSH::max_packet_length` and `SSH::max_string_length` (no limit:
    /// `u32::MAX`).
    max_packet: u32,
    max_string: u32,
    max_kexinit: [u64; 6],
}

impl Ssh {
    pub fn new() -> Self {
        Ssh {
            had_gap: false,
            broken: false,
            dirs: [Dir::new(), Dir::new()],
            v_client: Version::Unknown,
            v_server: Version::Unknown,
            version: Version::Unknown,
            kex_seen: false,
            kex_orig: false,
            kex_cache: Vec::new(),
            scratch: Vec::new(),
            max_packet: AnalyzerLimits::cap_u32(AnalyzerLimits::default().ssh_max_packet_length),
            max_string: AnalyzerLimits::cap_u32(AnalyzerLimits::default().ssh_max_string_length),
            max_kexinit: AnalyzerLimits::default().ssh_max_kexinit,
        }
    }

    pub fn with_limits(mut self, limits: &AnalyzerLimits) -> Self {
        self.max_packet = AnalyzerLimits::cap_u32(limits.ssh_max_packet_length);
        self.max_string = AnalyzerLimits::cap_u32(limits.ssh_max_string_length);
        self.max_kexinit = limits.ssh_max_kexinit;
        self
    }

    fn set_both(&mut self, s: State) {
        self.dirs[0].state = s;
        self.dirs[1].state = s;
    }

    /// `update_version`.
    fn update_version(&mut self, line: &[u8], is_orig: bool) {
        if line.len() >= 5 {
            let v = match line.get(4) {
                Some(b'2') => Some(Version::V2),
                Some(b'1') => {
                    if line.get(6) == Some(&b'9') && line.get(7) == Some(&b'9') {
                        Some(Version::V199)
                    } else {
                        Some(Version::V1)
                    }
                }
                _ => None,
            };
            if let Some(v) = v {
                if is_orig {
                    self.v_client = v;
                } else {
                    self.v_server = v;
                }
            }
        }
        use Version::*;
        self.version = match (self.v_client, self.v_server) {
            (c, s) if c == s => {
                if s == V199 {
                    V2
                } else {
                    s
                }
            }
            (V1, V2) | (V2, V1) => Unknown,
            (V199, V2) | (V2, V199) => V2,
            (V1, V199) | (V199, V1) => V1,
            _ => self.version,
        };
    }

    fn version_line(&mut self, is_orig: bool, line: &[u8], cx: &mut Cx<'_>) {
        let d = usize::from(!is_orig);
        if is_orig {
            if !line.starts_with(b"SSH-") {
                self.fail(cx);
                return;
            }
            self.dirs[d].state = State::KexInit;
            self.update_version(line, true);
        } else if line.starts_with(b"SSH-") {
            self.dirs[d].state = State::KexInit;
            self.update_version(line, false);
        }
    }

    fn fail(&mut self, cx: &mut Cx<'_>) {
        cx.violation();
        self.broken = true;
    }

    /// One complete binary packet (or its first bytes) of direction `d`.
    fn packet(&mut self, is_orig: bool, cx: &mut Cx<'_>) {
        let d = usize::from(!is_orig);
        let total = self.dirs[d].total;
        let buf = std::mem::take(&mut self.dirs[d].buf);
        let truncated = (buf.len() as u64) < u64::from(total);
        match self.version {
            Version::V2 => self.ssh2_packet(is_orig, &buf, total, truncated, cx),
            Version::V1 => {
                // pad_fill, msg_type, message, crc.
                let pad = 8 - (total % 8) as usize;
                match buf.get(pad) {
                    Some(3) => {
                        self.dirs[d].state = State::Encrypted;
                        cx.confirm();
                    }
                    Some(2) => self.dirs[d].state = State::Encrypted,
                    Some(_) => self.fail(cx),
                    None if truncated => {}
                    None => self.fail(cx),
                }
            }
            _ => self.fail(cx),
        }
        let mut buf = buf;
        buf.clear();
        if buf.capacity() <= 512 {
            self.dirs[d].buf = buf;
        }
    }

    fn ssh2_packet(
        &mut self,
        is_orig: bool,
        p: &[u8],
        total: u32,
        truncated: bool,
        cx: &mut Cx<'_>,
    ) {
        let d = usize::from(!is_orig);
        let (Some(&padding), Some(&msg_type)) = (p.first(), p.get(1)) else {
            if !truncated {
                self.fail(cx);
            }
            return;
        };
        if msg_type == MSG_NEWKEYS {
            self.dirs[d].state = State::Encrypted;
        }
        let Some(payload_len) = total.checked_sub(u32::from(padding) + 2) else {
            self.fail(cx);
            return;
        };
        let end = (2 + payload_len as usize).min(p.len());
        let payload = p.get(2..end).unwrap_or(&[]);
        let cut = truncated && payload.len() < payload_len as usize;
        let sc = StrCap::new(self.max_string);
        let sc = &sc;
        let state = self.dirs[d].state;
        let ok = match state {
            State::KexInit => {
                let ok = self.kexinit(is_orig, payload, cut, sc);
                // The scan saw the whole packet, and reports the cuts.
                sc.cut.set(false);
                let scan = &self.dirs[d].kex;
                if scan.string_cut {
                    cx.limit_reached(Weird::SshMaxStringLengthExceeded);
                }
                if scan.parsed() {
                    for k in scan.over(&self.max_kexinit) {
                        cx.limit_reached(kex_weird(k));
                    }
                }
                ok
            }
            State::KexDhGex => match msg_type {
                30 => fixed(payload, 4, cut),
                34 => fixed(payload, 12, cut),
                31 => strings(payload, 2, cut, sc).is_some(),
                32 => strings(payload, 1, cut, sc).is_some(),
                33 => strings(payload, 3, cut, sc).is_some(),
                _ => true,
            },
            State::KexDh => match msg_type {
                30 => strings(payload, 1, cut, sc).is_some(),
                31 => strings(payload, 3, cut, sc).is_some(),
                _ => true,
            },
            State::KexEcc => match msg_type {
                30 => strings(payload, 1, cut, sc).is_some(),
                31 => strings(payload, 3, cut, sc).is_some(),
                _ => false,
            },
            State::KexGss => match msg_type {
                30 => strings(payload, 2, cut, sc).is_some(),
                31 | 33 => strings(payload, 1, cut, sc).is_some(),
                32 => gss_complete(payload, cut, sc),
                34 => {
                    payload.len() >= 8
                        || cut && strings(payload.get(8..).unwrap_or(&[]), 2, cut, sc).is_some()
                }
                40 => fixed(payload, 12, cut),
                41 => strings(payload, 2, cut, sc).is_some(),
                _ => false,
            },
            State::KexRsa => match msg_type {
                30 => strings(payload, 2, cut, sc).is_some(),
                31 | 32 => strings(payload, 1, cut, sc).is_some(),
                _ => false,
            },
            State::Encrypted | State::VersionExchange => true,
        };
        if sc.cut.get() {
            cx.limit_reached(Weird::SshMaxStringLengthExceeded);
        }
        if !ok {
            self.fail(cx);
            return;
        }
        // The padding must fit in the packet.
        if !truncated && (2 + payload_len as usize + usize::from(padding)) > p.len() {
            self.fail(cx);
            return;
        }
        if msg_type == MSG_NEWKEYS {
            cx.confirm();
        }
    }

    /// `SSH2_KEXINIT` and `update_kex`.
    fn kexinit(&mut self, is_orig: bool, p: &[u8], cut: bool, sc: &StrCap) -> bool {
        let Some(body) = p.get(16..) else {
            return cut;
        };
        let Some(lists) = strings(body, 10, cut, sc) else {
            return false;
        };
        let rest_at = 16 + lists.1;
        if !cut && p.len() < rest_at + 5 {
            return false;
        }
        let kex = lists.0;
        if !self.kex_seen {
            self.kex_seen = true;
            self.kex_orig = is_orig;
            self.kex_cache = kex
                .get(..kex.len().min(MAX_KEX_LIST))
                .unwrap_or(&[])
                .to_vec();
            return true;
        }
        if self.kex_orig == is_orig {
            return true;
        }
        let cache = std::mem::take(&mut self.kex_cache);
        let (client, server): (&[u8], &[u8]) = if is_orig {
            (kex, &cache)
        } else {
            (&cache, kex)
        };
        let server_algs: Vec<&[u8]> = server.split(|&c| c == b',').take(MAX_KEX_ALGS).collect();
        for alg in client.split(|&c| c == b',').take(MAX_KEX_ALGS) {
            if server_algs.contains(&alg) {
                if let Some(s) = kex_state(alg) {
                    self.set_both(s);
                }
                break;
            }
        }
        true
    }
}

/// The key-exchange state an algorithm leads to (`update_kex`).
fn kex_state(alg: &[u8]) -> Option<State> {
    const EXACT: &[(&[u8], State)] = &[
        (b"rsa1024-sha1", State::KexRsa),
        (b"rsa2048-sha256", State::KexRsa),
        (b"diffie-hellman-group1-sha1", State::KexDh),
        (b"diffie-hellman-group14-sha1", State::KexDh),
        (b"diffie-hellman-group14-sha256", State::KexDh),
        (b"diffie-hellman-group16-sha512", State::KexDh),
        (b"diffie-hellman-group18-sha512", State::KexDh),
        (b"diffie-hellman-group-exchange-sha1", State::KexDhGex),
        (b"diffie-hellman-group-exchange-sha256", State::KexDhGex),
        (b"ecmqv-sha2", State::KexEcc),
    ];
    const PREFIX: &[(&[u8], State)] = &[
        (b"gss-", State::KexGss),
        (b"ecdh-sha2-", State::KexEcc),
        (b"curve25519-sha256", State::KexEcc),
        (b"sntrup761x25519-sha512", State::KexEcc),
        (b"mlkem", State::KexEcc),
    ];
    if let Some((_, s)) = EXACT.iter().find(|(a, _)| *a == alg) {
        return Some(*s);
    }
    PREFIX
        .iter()
        .find(|(a, _)| alg.starts_with(a))
        .map(|(_, s)| *s)
}

/// `n` fixed bytes.
fn fixed(p: &[u8], n: usize, cut: bool) -> bool {
    p.len() >= n || cut
}

/// `n` consecutive `ssh_string`s; returns the first one's value and the
/// bytes used, None if they do not fit (a truncated packet may end early).
fn strings<'p>(p: &'p [u8], n: usize, cut: bool, sc: &StrCap) -> Option<(&'p [u8], usize)> {
    let mut pos = 0;
    let mut first: &[u8] = &[];
    for i in 0..n {
        let Some(len) = p.get(pos..pos + 4) else {
            return cut.then_some((first, pos));
        };
        let len = sc.apply(u32::from_be_bytes([len[0], len[1], len[2], len[3]])) as usize;
        pos += 4;
        let Some(v) = p.get(pos..pos + len) else {
            return cut.then_some((first, pos));
        };
        if i == 0 {
            first = v;
        }
        pos += len;
    }
    Some((first, pos))
}

fn gss_complete(p: &[u8], cut: bool, sc: &StrCap) -> bool {
    let Some((_, used)) = strings(p, 2, cut, sc) else {
        return false;
    };
    match p.get(used) {
        None => cut,
        Some(0) => true,
        Some(_) => strings(p.get(used + 1..).unwrap_or(&[]), 1, cut, sc).is_some(),
    }
}

impl Parser for Ssh {
    fn deliver(&mut self, is_orig: bool, data: &[u8], cx: &mut Cx<'_>) -> usize {
        if cx.partial || self.had_gap || self.broken {
            return data.len();
        }
        let d = usize::from(!is_orig);
        let mut rest = data;
        while !rest.is_empty() && !self.broken {
            match self.dirs[d].state {
                State::Encrypted => break,
                State::VersionExchange => {
                    let Some(mut lines) = self.dirs[d].lines.take() else {
                        break;
                    };
                    let mut line = std::mem::take(&mut self.scratch);
                    let got =
                        matches!(lines.next_owned(&mut rest, &mut line), Some(Owned::Line(_)));
                    self.dirs[d].lines = Some(lines);
                    if got {
                        self.version_line(is_orig, &line, cx);
                    }
                    self.scratch = line;
                    if !got {
                        break;
                    }
                    if self.dirs[d].state != State::VersionExchange {
                        self.dirs[d].lines = None;
                    }
                }
                _ => {
                    let dir = &mut self.dirs[d];
                    if dir.left == 0 {
                        // Packet length field.
                        while dir.hdr_len < 4 {
                            let Some((&b, r)) = rest.split_first() else {
                                break;
                            };
                            dir.hdr[usize::from(dir.hdr_len)] = b;
                            dir.hdr_len += 1;
                            rest = r;
                        }
                        if dir.hdr_len < 4 {
                            break;
                        }
                        dir.hdr_len = 0;
                        let raw = u32::from_be_bytes(dir.hdr);
                        // `cap_packet_length`, before the version decides
                        // how to read the packet.
                        let len = if raw > self.max_packet {
                            cx.limit_reached(Weird::SshMaxPacketLengthExceeded);
                            self.max_packet
                        } else {
                            raw
                        };
                        if self.version != Version::V2 && self.version != Version::V1 {
                            self.fail(cx);
                            break;
                        }
                        dir.kex.reset();
                        let body = if self.version == Version::V1 {
                            len + 8 - len % 8
                        } else {
                            len
                        };
                        dir.total = len;
                        dir.left = body;
                        if body == 0 {
                            self.packet(is_orig, cx);
                            continue;
                        }
                    }
                    let dir = &mut self.dirs[d];
                    let n = (dir.left as usize).min(rest.len());
                    let (take, r) = rest.split_at(n);
                    let room = MAX_PACKET_KEEP.saturating_sub(dir.buf.len()).min(n);
                    dir.buf.extend_from_slice(take.get(..room).unwrap_or(&[]));
                    if self.version == Version::V2 && dir.state == State::KexInit {
                        dir.kex.feed(take, dir.total, self.max_string);
                    }
                    dir.left -= n as u32;
                    rest = r;
                    if dir.left == 0 {
                        self.packet(is_orig, cx);
                    }
                }
            }
        }
        data.len()
    }

    fn undelivered(&mut self, _is_orig: bool, _len: u64, _cx: &mut Cx<'_>) {
        self.had_gap = true;
        self.dirs = [Dir::new(), Dir::new()];
    }

    fn finished(&self, confirmed: bool, _settled: bool, _seen: u64) -> bool {
        confirmed
            || self.had_gap
            || self.broken
            || (self.dirs[0].state == State::Encrypted && self.dirs[1].state == State::Encrypted)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::conn::service::{ConnInfo, Note, Notes, L4};

    fn info() -> ConnInfo {
        ConnInfo {
            proto: L4::Tcp,
            orig_h: "10.0.0.1".parse().unwrap(),
            orig_p: 40000,
            resp_h: "10.0.0.2".parse().unwrap(),
            resp_p: 22,
        }
    }

    fn feed(s: &mut Ssh, is_orig: bool, data: &[u8]) -> Notes {
        let i = info();
        let mut notes = Notes::new();
        let mut cx = Cx {
            info: &i,
            partial: false,
            notes: &mut notes,
        };
        s.deliver(is_orig, data, &mut cx);
        notes
    }

    pub fn packet(msg_type: u8, payload: &[u8]) -> Vec<u8> {
        let pad = 4u8;
        let len = (payload.len() + 2 + usize::from(pad)) as u32;
        let mut p = len.to_be_bytes().to_vec();
        p.push(pad);
        p.push(msg_type);
        p.extend_from_slice(payload);
        p.extend_from_slice(&[0; 4]);
        p
    }

    fn string(s: &[u8]) -> Vec<u8> {
        let mut v = (s.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(s);
        v
    }

    pub fn kexinit(alg: &[u8]) -> Vec<u8> {
        let mut p = vec![7u8; 16];
        p.extend(string(alg));
        for _ in 0..9 {
            p.extend(string(b"x"));
        }
        p.extend_from_slice(&[0, 0, 0, 0, 0]);
        packet(20, &p)
    }

    #[test]
    fn full_handshake_confirms_on_newkeys() {
        let mut s = Ssh::new();
        assert!(feed(&mut s, true, b"SSH-2.0-OpenSSH_9.0\r\n").is_empty());
        assert!(feed(&mut s, false, b"SSH-2.0-OpenSSH_8.0\r\n").is_empty());
        assert!(feed(&mut s, true, &kexinit(b"curve25519-sha256,ext-info-c")).is_empty());
        assert!(feed(&mut s, false, &kexinit(b"curve25519-sha256")).is_empty());
        assert_eq!(s.dirs[0].state, State::KexEcc);
        assert!(feed(&mut s, true, &packet(30, &string(&[1; 32]))).is_empty());
        let mut reply = string(b"hostkey");
        reply.extend(string(&[2; 32]));
        reply.extend(string(b"sig"));
        let mut both = packet(31, &reply);
        both.extend(packet(21, &[]));
        assert_eq!(feed(&mut s, false, &both).as_slice(), &[Note::Confirm]);
        assert!(s.finished(true, false, 0));
    }

    fn kexinit_lists(lists: &[Vec<u8>; 10]) -> Vec<u8> {
        let mut p = vec![7u8; 16];
        for l in lists {
            p.extend(string(l));
        }
        p.extend_from_slice(&[0, 0, 0, 0, 0]);
        packet(20, &p)
    }

    fn names(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| format!("alg{i}"))
            .collect::<Vec<_>>()
            .join(",")
            .into_bytes()
    }

    fn banners(s: &mut Ssh) {
        feed(s, true, b"SSH-2.0-a\r\n");
        feed(s, false, b"SSH-2.0-b\r\n");
    }

    fn limits(n: &Notes) -> Vec<Weird> {
        n.iter()
            .filter_map(|n| match n {
                Note::LimitReached(w) => Some(*w),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn kexinit_name_lists_over_their_limits() {
        let mut lists: [Vec<u8>; 10] = Default::default();
        for l in lists.iter_mut() {
            *l = names(3);
        }
        lists[0] = names(101);
        lists[8] = Vec::new();
        let mut s = Ssh::new();
        banners(&mut s);
        assert_eq!(
            limits(&feed(&mut s, true, &kexinit_lists(&lists))),
            vec![Weird::SshMaxKexinitKexAlgorithmsExceeded]
        );
        // Zeek's max-kexinit-algorithms btest settings, a packet far past
        // what is kept of it: every list is still counted.
        let mut l = AnalyzerLimits::default();
        for (name, v) in [
            ("SSH::max_kexinit_kex_algorithms", 101),
            ("SSH::max_kexinit_hostkey_algorithms", 102),
            ("SSH::max_kexinit_encryption_algorithms", 103),
            ("SSH::max_kexinit_mac_algorithms", 104),
            ("SSH::max_kexinit_compression_algorithms", 105),
            ("SSH::max_kexinit_languages", 106),
        ] {
            l.set(name, v);
        }
        let big: [Vec<u8>; 10] = std::array::from_fn(|i| names(500 + 10 * i));
        let pkt = kexinit_lists(&big);
        assert!(pkt.len() > MAX_PACKET_KEEP);
        let mut s = Ssh::new().with_limits(&l);
        banners(&mut s);
        let got = limits(&feed(&mut s, true, &pkt));
        assert_eq!(got.len(), 10, "{got:?}");
        assert_eq!(got[9], Weird::SshMaxKexinitLanguagesExceeded);
        // Unlimited (0): nothing.
        let mut s = Ssh::new().with_limits(&AnalyzerLimits {
            ssh_max_kexinit: [0; 6],
            ..AnalyzerLimits::default()
        });
        banners(&mut s);
        assert!(limits(&feed(&mut s, true, &pkt)).is_empty());
    }

    #[test]
    fn long_packets_and_strings_are_cut() {
        // The default packet limit: 8 MiB.
        let mut s = Ssh::new();
        banners(&mut s);
        let hdr = (8 * 1024 * 1024 + 1u32).to_be_bytes();
        assert_eq!(
            limits(&feed(&mut s, true, &hdr)),
            vec![Weird::SshMaxPacketLengthExceeded]
        );
        // Zeek's max-lengths btest: packets over 1000, strings over 200.
        let mut l = AnalyzerLimits::default();
        l.set("SSH::max_packet_length", 1000);
        let mut lists: [Vec<u8>; 10] = Default::default();
        lists[0] = names(90);
        lists[1] = names(90);
        let pkt = kexinit_lists(&lists);
        assert!(pkt.len() > 1004);
        let mut s = Ssh::new().with_limits(&l);
        banners(&mut s);
        let n = feed(&mut s, true, &pkt);
        assert_eq!(limits(&n)[0], Weird::SshMaxPacketLengthExceeded);
        let mut l = AnalyzerLimits::default();
        l.set("SSH::max_string_length", 200);
        let mut s = Ssh::new().with_limits(&l);
        banners(&mut s);
        let n = feed(&mut s, true, &pkt);
        assert_eq!(limits(&n), vec![Weird::SshMaxStringLengthExceeded]);
        // Within both limits: nothing.
        let mut s = Ssh::new();
        banners(&mut s);
        let got = limits(&feed(&mut s, true, &pkt));
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn http_client_is_a_violation() {
        let mut s = Ssh::new();
        assert_eq!(
            feed(&mut s, true, b"GET / HTTP/1.1\r\n").as_slice(),
            &[Note::Violation]
        );
    }

    #[test]
    fn unknown_message_in_ecc_state() {
        let mut s = Ssh::new();
        feed(&mut s, true, b"SSH-2.0-a\n");
        feed(&mut s, false, b"banner\r\nSSH-2.0-b\n");
        feed(&mut s, true, &kexinit(b"ecdh-sha2-nistp256"));
        feed(&mut s, false, &kexinit(b"ecdh-sha2-nistp256"));
        assert_eq!(
            feed(&mut s, true, &packet(2, b"ignored")).as_slice(),
            &[Note::Violation]
        );
    }

    #[test]
    fn noise_never_panics() {
        let mut x: u32 = 7;
        for _ in 0..300 {
            let mut s = Ssh::new();
            feed(&mut s, true, b"SSH-2.0-a\n");
            feed(&mut s, false, b"SSH-2.0-b\n");
            for _ in 0..10 {
                let mut buf = Vec::new();
                for _ in 0..(x % 100) {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    buf.push((x >> 16) as u8);
                }
                feed(&mut s, x & 2 == 0, &buf);
            }
        }
    }
}
