//! Packets carried between threads in batches.
//!
//! libpcap's lending reader overwrites its buffer on every read, so a
//! packet that has to outlive the read — because another thread analyses
//! it — is copied once into a [`PacketBatch`]: one contiguous arena per
//! few thousand packets, reused once the consumer hands it back, so the
//! steady state allocates nothing. Consumers read the batch through the
//! same borrowed [`Packet`] view the sources lend.

use super::prepare::{prepare, Prepared};
use crate::packet::{LinkType, Packet, Time};

#[derive(Clone, Copy, Debug)]
struct Entry {
    prep: Prepared,
    ts: Time,
    wire_len: u32,
    link: LinkType,
    start: u32,
    len: u32,
}

/// A run of packets copied out of a source, in capture order.
#[derive(Debug, Default)]
pub struct PacketBatch {
    data: Vec<u8>,
    index: Vec<Entry>,
    /// Which input file (in order) the packets came from.
    pub file: usize,
}

impl PacketBatch {
    pub fn with_capacity(packets: usize, bytes: usize) -> Self {
        PacketBatch {
            data: Vec::with_capacity(bytes),
            index: Vec::with_capacity(packets),
            file: 0,
        }
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.index.clear();
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes of packet data held.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Whether `p` can be appended without growing the batch (an empty
    /// batch takes any packet).
    pub fn fits(&self, p: &Packet<'_>) -> bool {
        self.is_empty()
            || (self.index.len() < self.index.capacity()
                && self.data.len() + p.data.len() <= self.data.capacity())
    }

    /// Appends a copy of `p`, with its link layers decoded ahead of the
    /// engine (see [`Prepared`]) and, with `verify`, its outermost
    /// transport checksum checked, so that the thread filling batches
    /// takes that work off the consumer.
    pub fn push(&mut self, p: &Packet<'_>, verify: bool) {
        let prep = prepare(p.link, p.data, p.wire_len as usize, verify);
        self.push_prepared(p, prep);
    }

    /// Appends a copy of `p` with what the caller already prepared (the
    /// live capture thread prepares first, to pick the packet's shard).
    pub fn push_prepared(&mut self, p: &Packet<'_>, prep: Prepared) {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(p.data);
        self.index.push(Entry {
            prep,
            ts: p.ts,
            wire_len: p.wire_len,
            link: p.link,
            start,
            len: p.data.len() as u32,
        });
    }

    /// The packets, borrowed from the batch, with what was prepared.
    pub fn packets(&self) -> impl Iterator<Item = (Packet<'_>, &Prepared)> + '_ {
        self.index.iter().map(|e| {
            let p = Packet {
                ts: e.ts,
                link: e.link,
                wire_len: e.wire_len,
                data: self
                    .data
                    .get(e.start as usize..(e.start + e.len) as usize)
                    .unwrap_or_default(),
            };
            (p, &e.prep)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_round_trip() {
        let mut b = PacketBatch::with_capacity(4, 64);
        for (i, d) in [&b"abc"[..], b"", b"defgh"].iter().enumerate() {
            b.push(
                &Packet {
                    ts: i as f64,
                    link: LinkType::ETHERNET,
                    wire_len: 100 + i as u32,
                    data: d,
                },
                false,
            );
        }
        let got: Vec<(f64, u32, Vec<u8>)> = b
            .packets()
            .map(|(p, _)| (p.ts, p.wire_len, p.data.to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![
                (0.0, 100, b"abc".to_vec()),
                (1.0, 101, vec![]),
                (2.0, 102, b"defgh".to_vec())
            ]
        );
        b.clear();
        assert!(b.is_empty());
    }

    /// The hint must agree with the engine's own checksum verdicts.
    #[test]
    fn hint_matches_engine_checksums() {
        use crate::decode::checksum::ChecksumHint;
        use etherparse::PacketBuilder;
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .tcp(1000, 80, 7, 65535)
            .write(&mut frame, b"hello")
            .unwrap();
        fn pkt(d: &[u8]) -> Packet<'_> {
            Packet {
                ts: 1.0,
                link: LinkType::ETHERNET,
                wire_len: d.len() as u32,
                data: d,
            }
        }
        let mut b = PacketBatch::with_capacity(3, 512);
        b.push(&pkt(&frame), true);
        let mut bad = frame.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        b.push(&pkt(&bad), true);
        // A broken IPv4 header checksum (frame byte 22: the TTL).
        let mut bad_ip = frame.clone();
        bad_ip[22] ^= 0x01;
        b.push(&pkt(&bad_ip), true);
        let hints: Vec<(ChecksumHint, ChecksumHint)> =
            b.packets().map(|(_, p)| (p.ip_hint, p.hint)).collect();
        assert_eq!(
            hints,
            vec![
                (ChecksumHint::Good, ChecksumHint::Good),
                (ChecksumHint::Good, ChecksumHint::Bad),
                (ChecksumHint::Bad, ChecksumHint::Unknown)
            ]
        );
    }
}
