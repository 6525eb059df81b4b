//! Packets carried between threads in batches.
//!
//! libpcap's lending reader overwrites its buffer on every read, so a
//! packet that has to outlive the read — because another thread analyses
//! it — is copied once into a [`PacketBatch`]: one contiguous arena per
//! few thousand packets, reused once the consumer hands it back, so the
//! steady state allocates nothing. Consumers read the batch through the
//! same borrowed [`Packet`] view the sources lend.

use super::{LinkType, Packet, Time};

#[derive(Clone, Copy, Debug)]
struct Entry {
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

    /// Appends a copy of `p`.
    pub fn push(&mut self, p: &Packet<'_>) {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(p.data);
        self.index.push(Entry {
            ts: p.ts,
            wire_len: p.wire_len,
            link: p.link,
            start,
            len: p.data.len() as u32,
        });
    }

    /// The packets, borrowed from the batch.
    pub fn packets(&self) -> impl Iterator<Item = Packet<'_>> + '_ {
        self.index.iter().map(|e| Packet {
            ts: e.ts,
            link: e.link,
            wire_len: e.wire_len,
            data: self
                .data
                .get(e.start as usize..(e.start + e.len) as usize)
                .unwrap_or_default(),
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
            b.push(&Packet {
                ts: i as f64,
                link: LinkType::ETHERNET,
                wire_len: 100 + i as u32,
                data: d,
            });
        }
        let got: Vec<(f64, u32, Vec<u8>)> = b
            .packets()
            .map(|p| (p.ts, p.wire_len, p.data.to_vec()))
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
}
