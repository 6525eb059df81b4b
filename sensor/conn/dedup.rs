//! One observation per packet on a node: with libpcap's `any` device a
//! packet a pod sends is captured on its veth and again on the bridge (and
//! on every further interface it crosses), and counting each copy doubles
//! packets and bytes and turns them into retransmissions in `history`.
//!
//! A copy is the same IP packet seen on another interface within a short
//! window. Its identity is a hash of the IP packet without what forwarding
//! changes (the TTL or hop limit, the IPv4 header checksum, and the
//! transport checksum, which offloads leave unfinished on one side of a
//! veth), in the spirit of Arkime's packet dedup. Only copies on a
//! *different* interface are dropped: a retransmission on the wire is a
//! packet of its own however similar, and it stays. The interface comes
//! from the `LINUX_SLL2` header `any` captures carry; other link types have
//! no interface per packet and pass untouched.
//!
//! The table is direct-mapped (a packet's hash picks its one slot), so
//! memory is fixed by configuration and each packet costs one hash and one
//! probe; a collision can only let a copy through (it is then counted as a
//! packet), never drop a packet that is not a copy.

use std::hash::{BuildHasher, Hasher};

/// A slot: the hash of the packet last seen there, when, and where.
#[derive(Clone, Copy, Default)]
struct Slot {
    hash: u64,
    ts: f64,
    ifindex: u32,
}

/// Dedup settings (`conn.dedup_*` in the configuration).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DedupConfig {
    /// Copies further apart than this (seconds of packet time) are
    /// different packets: the copies of one packet on a node are
    /// microseconds apart, a retransmission is at least a round trip later
    /// (and on the same interface).
    pub window_secs: f64,
    /// Slots (rounded up to a power of two; 0 turns dedup off): 24 bytes
    /// each.
    pub slots: usize,
}

impl Default for DedupConfig {
    /// 5 ms and 65,536 slots (1.5 MiB): at a million packets per second
    /// a window holds 5,000 packets, so collisions stay rare.
    fn default() -> Self {
        DedupConfig {
            window_secs: 0.005,
            slots: 1 << 16,
        }
    }
}

pub struct Dedup {
    window: f64,
    table: Box<[Slot]>,
    mask: u64,
    hasher: ahash::RandomState,
}

/// `LINUX_SLL2`'s interface index (bytes 4..8 of its header).
pub fn sll2_ifindex(frame: &[u8]) -> Option<u32> {
    let b: [u8; 4] = frame.get(4..8)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

impl Dedup {
    pub fn new(cfg: DedupConfig) -> Option<Dedup> {
        if cfg.slots == 0 {
            return None;
        }
        let n = cfg.slots.next_power_of_two();
        Some(Dedup {
            window: cfg.window_secs.max(0.0),
            table: vec![Slot::default(); n].into_boxed_slice(),
            mask: (n - 1) as u64,
            // Fixed keys: the same capture always dedups the same way.
            hasher: ahash::RandomState::with_seeds(1, 2, 3, 4),
        })
    }

    /// Whether `ip` (an IP packet seen on interface `ifindex` at `ts`) is a
    /// copy of one already counted; if not, it is remembered.
    pub fn is_copy(&mut self, ts: f64, ifindex: u32, ip: &[u8]) -> bool {
        let Some(hash) = self.identity(ip) else {
            return false;
        };
        let i = (hash & self.mask) as usize;
        let Some(slot) = self.table.get_mut(i) else {
            return false;
        };
        if slot.hash == hash
            && slot.ifindex != ifindex
            && ts >= slot.ts
            && ts - slot.ts <= self.window
        {
            return true;
        }
        *slot = Slot { hash, ts, ifindex };
        false
    }

    /// The packet's identity: every byte but the TTL / hop limit and the
    /// checksums forwarding or offloads rewrite. `None` for what is not an
    /// IP packet (it is never a copy).
    fn identity(&self, ip: &[u8]) -> Option<u64> {
        let mut h = self.hasher.build_hasher();
        let (l4, proto) = match ip.first()? >> 4 {
            4 => {
                let ihl = usize::from(ip.first()? & 0x0f) * 4;
                if ihl < 20 || ip.len() < ihl {
                    return None;
                }
                // Version .. fragment offset, protocol, addresses, options.
                h.write(ip.get(0..8)?);
                h.write(ip.get(9..10)?);
                h.write(ip.get(12..ihl)?);
                let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
                // Only a whole datagram or a first fragment starts with
                // the transport header.
                let proto = if frag == 0 { ip[9] } else { 0 };
                (ip.get(ihl..)?, proto)
            }
            6 => {
                if ip.len() < 40 {
                    return None;
                }
                // Everything but the hop limit (byte 7).
                h.write(ip.get(0..7)?);
                h.write(ip.get(8..40)?);
                (ip.get(40..)?, ip[6])
            }
            _ => return None,
        };
        // The transport checksum's offset, for the headers it is in.
        let sum_at = match proto {
            6 => Some(16),     // TCP
            17 => Some(6),     // UDP
            1 | 58 => Some(2), // ICMP, ICMPv6
            _ => None,
        };
        match sum_at {
            Some(at) if l4.len() >= at + 2 => {
                h.write(&l4[..at]);
                h.write(&l4[at + 2..]);
            }
            _ => h.write(l4),
        }
        Some(h.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP segment over IPv4 with the given TTL, checksums and IP id.
    fn tcp4(ttl: u8, ip_sum: u16, tcp_sum: u16, id: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, (id >> 8) as u8, id as u8, 0x40, 0, ttl, 6];
        p.extend_from_slice(&ip_sum.to_be_bytes());
        p.extend_from_slice(&[198, 18, 0, 2, 198, 18, 0, 1]);
        let mut tcp = vec![
            0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff,
        ];
        tcp.extend_from_slice(&tcp_sum.to_be_bytes());
        tcp.extend_from_slice(&[0, 0]);
        p.extend_from_slice(&tcp);
        p.extend_from_slice(payload);
        let len = p.len() as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        p
    }

    fn dedup() -> Dedup {
        Dedup::new(DedupConfig::default()).expect("on")
    }

    #[test]
    fn a_copy_on_another_interface_is_dropped_even_routed_and_offloaded() {
        let mut d = dedup();
        let p = tcp4(64, 0x1234, 0xaaaa, 7, b"GET / HTTP/1.1\r\n");
        assert!(!d.is_copy(1.0, 5, &p), "the first copy counts");
        // The bridge's copy: same packet, another interface.
        assert!(d.is_copy(1.000_01, 3, &p));
        // A routed hop lowered the TTL (and so the header checksum); the
        // other side of a veth finished the transport checksum.
        let routed = tcp4(63, 0x1334, 0x5151, 7, b"GET / HTTP/1.1\r\n");
        assert!(d.is_copy(1.000_02, 2, &routed));
    }

    #[test]
    fn retransmissions_and_late_or_different_packets_are_kept() {
        let mut d = dedup();
        let p = tcp4(64, 1, 2, 7, b"data");
        assert!(!d.is_copy(1.0, 5, &p));
        // The same bytes again on the same interface: a retransmission.
        assert!(!d.is_copy(1.0001, 5, &p));
        // Beyond the window on another interface: another packet.
        assert!(!d.is_copy(2.0, 3, &p));
        // Another IP id or payload is another packet.
        assert!(!d.is_copy(2.0, 4, &tcp4(64, 1, 2, 8, b"data")));
        assert!(!d.is_copy(2.0, 4, &tcp4(64, 1, 2, 7, b"datb")));
        // Not IP, or truncated: never a copy.
        assert!(!d.is_copy(2.0, 1, &[0x00, 1, 2]));
        assert!(!d.is_copy(2.0, 2, &[0x00, 1, 2]));
        assert!(!d.is_copy(2.0, 2, &[0x45, 0, 0]));
    }

    #[test]
    fn ipv6_copies_ignore_the_hop_limit() {
        let mut d = dedup();
        let mut p = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        p.extend_from_slice(&[0xfd; 32]);
        p.extend_from_slice(&[0x30, 0x39, 0, 53, 0, 8, 0xbe, 0xef]);
        assert!(!d.is_copy(1.0, 1, &p));
        let mut hop = p.clone();
        hop[7] = 63;
        hop[46] = 0;
        hop[47] = 0;
        assert!(d.is_copy(1.0, 2, &hop));
    }

    #[test]
    fn off_when_no_slots_and_the_sll2_interface_index_is_read() {
        assert!(Dedup::new(DedupConfig {
            slots: 0,
            ..DedupConfig::default()
        })
        .is_none());
        let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 42];
        sll2.extend_from_slice(&[0; 12]);
        assert_eq!(sll2_ifindex(&sll2), Some(42));
        assert_eq!(sll2_ifindex(&sll2[..6]), None);
    }
}
