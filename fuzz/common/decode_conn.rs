//! The decode_conn fuzz target's input format and run, shared by the
//! target (fuzz/fuzz_targets/decode_conn.rs) and by `tests/robustness.rs`,
//! which replays every committed seed and past finding on each test run.
//!
//! It drives the whole per-packet path of the connection engine (link
//! decoding, IP, fragments, tunnels, TCP/UDP/ICMP state machines, service
//! detection, timers) on a sequence of packets, then `finish()`.
//!
//! Run on the stable toolchain (what CI does, bounded: see .ci/fuzz):
//!
//! ```text
//! .ci/fuzz decode_conn 300                  # from the repository root
//! .ci/fuzz decode_conn 0 crash-...          # replay a finding
//! ```
//!
//! or with cargo-fuzz on nightly (`cargo +nightly fuzz run decode_conn`,
//! with a scratch corpus directory before `fuzz/corpus/decode_conn`, so
//! that the committed seeds stay as they are). The stable property tests
//! in `tests/robustness.rs` cover the same entry points with fewer cases.
//!
//! Input format (all integers little-endian), chosen so that libFuzzer's
//! mutations of one packet do not shift the framing of the others much:
//!
//! ```text
//! byte 0          flags: bit 0 = ignore checksums (Zeek's -C),
//!                        bit 1 = no protocol analyzers
//! then records:   link    u8   index into LINKS; 0xff = next 4 bytes are
//!                              an arbitrary i32 link type
//!                 dt      u16  time step in milliseconds (bit 15 set:
//!                              step in seconds of the low 15 bits, so
//!                              timers fire)
//!                 extra   u16  wire_len - captured length (0: equal)
//!                 len     u16  captured length, then that many bytes
//! ```
//!
//! A truncated last record uses whatever bytes remain.

use osprey::capture::{LinkType, Packet};
use osprey::conn::service::AnalyzerSet;
use osprey::conn::{Engine, EngineConfig};
use osprey::decode::link::MAX_FRAMES as FRAMES_PER_PACKET;

const MAX_FRAMES: u64 = FRAMES_PER_PACKET as u64;

/// Link types the engine decodes (the robustness tests draw from it too).
pub const LINKS: [LinkType; 16] = [
    LinkType::ETHERNET,
    LinkType::LINUX_SLL,
    LinkType::LINUX_SLL2,
    LinkType::RAW,
    LinkType::PPP,
    LinkType::NULL,
    LinkType::IEEE802_11,
    LinkType::IEEE802_11_RADIO,
    LinkType::FDDI,
    LinkType::NFLOG,
    LinkType::LOOP,
    LinkType::RAW_OPENBSD,
    LinkType::RAW_BSDOS,
    LinkType::PPP_SERIAL,
    LinkType::IPV4,
    LinkType::IPV6,
];

/// Reads little-endian integers off the front of the input.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_le_bytes([
            self.u8()?,
            self.u8()?,
            self.u8()?,
            self.u8()?,
        ]))
    }

    /// Up to `n` bytes (fewer at the end of the input).
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b
    }
}

/// Feeds one input (the format above) through the engine and checks the
/// invariants that hold whatever the packets: packet counts bounded by what
/// was fed, positive durations, every connection flushed at `finish()`.
pub fn run(input: &[u8]) {
    let mut r = Reader(input);
    let Some(flags) = r.u8() else { return };
    let mut cfg = EngineConfig {
        seed: Some(1),
        ignore_checksums: flags & 1 != 0,
        ..EngineConfig::default()
    };
    if flags & 2 != 0 {
        cfg.analyzers = AnalyzerSet::none();
    }
    let mut engine = Engine::new(cfg);
    let mut t = 1_000_000_000.0f64;
    let mut fed = 0u64;
    while !r.0.is_empty() {
        let Some(sel) = r.u8() else { break };
        let link = if sel == 0xff {
            match r.i32() {
                Some(v) => LinkType(v),
                None => break,
            }
        } else {
            LINKS[usize::from(sel) % LINKS.len()]
        };
        let (Some(dt), Some(extra), Some(len)) = (r.u16(), r.u16(), r.u16()) else {
            break;
        };
        t += if dt & 0x8000 != 0 {
            f64::from(dt & 0x7fff)
        } else {
            f64::from(dt) / 1000.0
        };
        let data = r.bytes(usize::from(len));
        let wire_len = u32::try_from(data.len())
            .unwrap_or(u32::MAX)
            .saturating_add(u32::from(extra));
        engine.process_packet(&Packet {
            ts: t,
            link,
            wire_len,
            data,
        });
        // An 802.11 A-MSDU frame carries up to MAX_FRAMES IP packets.
        fed += MAX_FRAMES;
        // Records of ended connections are drained as the replay does.
        for rec in engine.drain_records() {
            assert!(rec.orig_pkts + rec.resp_pkts <= fed);
        }
    }
    engine.finish();
    for rec in engine.drain_records() {
        assert!(rec.duration.is_none_or(|d| d > 0.0));
        assert!(rec.orig_pkts + rec.resp_pkts <= fed);
    }
    assert_eq!(engine.active_connections(), 0);
    assert_eq!(engine.stats().records, engine.stats().conns_created);
}
