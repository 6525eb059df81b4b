//! IPv4/IPv6 fragment reassembly as Zeek does it (`src/Frag.cc`): keyed by
//! (src, dst, id); the first copy of any byte wins; a datagram is complete
//! once data runs without a hole from offset 0 to the size the last
//! fragment implies. The reassembled datagram gets the header of the first
//! fragment seen, with its length field fixed.
//!
//! Limits ([`FragLimits`]), because every fragment is attacker-controlled
//! and Zeek itself bounds none of this:
//! - a datagram holds only the bytes it was sent (pieces by offset, never
//!   a buffer up to the highest offset seen: one 60-byte fragment at
//!   offset 65,000 costs its 60 bytes plus bookkeeping, not 64 KiB);
//! - at most `datagram_bytes` of bookkeeping and payload per datagram
//!   (tiny fragments cost more in bookkeeping than in data), at most
//!   `max_datagrams` datagrams and `total_bytes` over all of them;
//! - a datagram is forgotten `timeout` seconds after its first fragment.
//!
//! Whatever is dropped is counted by [`FragDrop`] reason. The oldest
//! datagram is found in O(1): datagrams sit in a FIFO in the order they
//! started (packet time), and entries of datagrams already gone are skipped
//! lazily and compacted away once they outnumber the live ones.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use super::ip::{IpPacket, PROTO_FRAGMENT};

/// Largest reassembled payload accepted (beyond the 16-bit IP length).
const MAX_DATAGRAM: u32 = 65_535 + 8;

/// Bytes charged for a datagram before any payload: the table entry, its
/// FIFO slot and the allocations' headers. An estimate, on the high side,
/// so that the budget bounds real memory rather than payload alone.
const DATAGRAM_OVERHEAD: usize = 256;
/// Bytes charged per stored piece on top of its payload (the piece's slot
/// in the list and its allocation's header).
const PIECE_OVERHEAD: usize = 48;

type Key = (IpAddr, IpAddr, u32);

/// The bounds of a [`FragmentManager`]; see the module's comment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FragLimits {
    /// Seconds after its first fragment that an incomplete datagram is
    /// forgotten (Zeek's `frag_timeout`).
    pub timeout: f64,
    /// Datagrams in flight at most.
    pub max_datagrams: usize,
    /// Bytes (payload and bookkeeping) one datagram may hold.
    pub datagram_bytes: usize,
    /// Bytes all datagrams in flight may hold together.
    pub total_bytes: usize,
}

impl Default for FragLimits {
    fn default() -> Self {
        FragLimits {
            timeout: 300.0,
            max_datagrams: 10_000,
            // A whole 64 KiB datagram in fragments of any size down to
            // about 100 bytes fits.
            datagram_bytes: 128 * 1024,
            total_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Why an incomplete datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FragDrop {
    /// Its first fragment is older than the timeout.
    Timeout,
    /// The oldest datagram, dropped for a new one beyond `max_datagrams`.
    TableFull,
    /// The oldest datagram, dropped because all of them together reached
    /// `total_bytes` (or the new fragment could not fit even so).
    Memory,
    /// The datagram itself grew beyond `datagram_bytes`.
    DatagramBudget,
}

impl FragDrop {
    pub const ALL: [FragDrop; 4] = [
        FragDrop::Timeout,
        FragDrop::TableFull,
        FragDrop::Memory,
        FragDrop::DatagramBudget,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// Metric label.
    pub fn name(self) -> &'static str {
        match self {
            FragDrop::Timeout => "timeout",
            FragDrop::TableFull => "table_full",
            FragDrop::Memory => "memory",
            FragDrop::DatagramBudget => "datagram_budget",
        }
    }
}

struct Reassembler {
    /// Stamp of this datagram's FIFO entry (a stale entry has another).
    serial: u64,
    first_seen: f64,
    /// Header of the first fragment seen, without the IPv6 fragment header.
    proto_hdr: Vec<u8>,
    version: u8,
    /// Payload held, by offset: sorted, non-overlapping (first copy wins).
    pieces: Vec<(u32, Box<[u8]>)>,
    /// Size implied by the last fragment, 0 while unknown.
    frag_size: u32,
    /// Bytes charged to the budget for this datagram.
    cost: usize,
}

/// Outcome of adding one fragment.
pub enum FragResult {
    /// Not complete yet.
    Pending,
    /// The whole datagram, header first.
    Complete(Vec<u8>),
    /// The fragment made no sense (length below its header); dropped.
    Inconsistent,
    /// The fragment's datagram was dropped, for this reason (counted).
    Dropped(FragDrop),
}

pub struct FragmentManager {
    table: HashMap<Key, Reassembler, ahash::RandomState>,
    /// Datagrams in the order they started; see the module's comment.
    order: VecDeque<(Key, u64)>,
    next_serial: u64,
    limits: FragLimits,
    /// Bytes charged for all datagrams in flight.
    held: usize,
    /// Datagrams dropped, by [`FragDrop`] index.
    dropped: [u64; FragDrop::COUNT],
}

impl FragmentManager {
    pub fn new(limits: FragLimits) -> Self {
        FragmentManager {
            table: HashMap::with_hasher(ahash::RandomState::new()),
            order: VecDeque::new(),
            next_serial: 0,
            limits,
            held: 0,
            dropped: [0; FragDrop::COUNT],
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Bytes charged for the datagrams in flight (payload and bookkeeping).
    pub fn bytes_held(&self) -> usize {
        self.held
    }

    /// Datagrams dropped for `why` so far.
    pub fn dropped(&self, why: FragDrop) -> u64 {
        self.dropped[why as usize]
    }

    fn drop_datagram(&mut self, key: &Key, why: FragDrop) {
        if self.forget(key) {
            self.dropped[why as usize] += 1;
        }
    }

    /// Removes a datagram (dropped or complete); true if it was there.
    fn forget(&mut self, key: &Key) -> bool {
        let Some(r) = self.table.remove(key) else {
            return false;
        };
        self.held -= r.cost;
        // Stale FIFO entries are skipped when met; compacting once they
        // outnumber live ones keeps the FIFO's length O(table) and the
        // work per datagram O(1) amortised.
        if self.order.len() > 2 * self.table.len() + 64 {
            let table = &self.table;
            self.order
                .retain(|(k, s)| table.get(k).is_some_and(|r| r.serial == *s));
        }
        true
    }

    /// The key of the datagram that started first (skipping stale FIFO
    /// entries), without removing it.
    fn oldest(&mut self) -> Option<Key> {
        while let Some(&(k, s)) = self.order.front() {
            if self.table.get(&k).is_some_and(|r| r.serial == s) {
                return Some(k);
            }
            self.order.pop_front();
        }
        None
    }

    /// Drops datagrams whose first fragment is older than the timeout,
    /// oldest first, stopping at the first one still in time.
    fn expire(&mut self, now: f64) {
        while let Some(k) = self.oldest() {
            let expired = self
                .table
                .get(&k)
                .is_some_and(|r| now - r.first_seen > self.limits.timeout);
            if !expired {
                break;
            }
            self.drop_datagram(&k, FragDrop::Timeout);
        }
    }

    /// Drops the oldest datagram other than `keep`; false if there is none.
    fn evict_oldest(&mut self, keep: &Key, why: FragDrop) -> bool {
        match self.oldest() {
            Some(k) if k != *keep => {
                self.drop_datagram(&k, why);
                true
            }
            _ => false,
        }
    }

    /// Adds a fragment (`ip.frag` must be set, `ip.data` fully captured).
    pub fn add(&mut self, now: f64, ip: &IpPacket<'_>) -> FragResult {
        let Some(fi) = ip.frag else {
            return FragResult::Inconsistent;
        };
        self.expire(now);
        let key = (ip.src, ip.dst, fi.id);
        if self
            .table
            .get(&key)
            .is_some_and(|r| now - r.first_seen > self.limits.timeout)
        {
            // Packet time went backwards past the FIFO's order.
            self.drop_datagram(&key, FragDrop::Timeout);
        }
        if !self.table.contains_key(&key) {
            if self.table.len() >= self.limits.max_datagrams.max(1) {
                self.evict_oldest(&key, FragDrop::TableFull);
            }
            self.start(now, key, ip);
        }

        let total = ip.total_len;
        let hdr = ip.hdr_len as u32;
        if total < hdr {
            return FragResult::Inconsistent;
        }
        let offset = fi.offset;
        let len = total - hdr;
        let upper = offset.saturating_add(len);
        let Some(r) = self.table.get_mut(&key) else {
            return FragResult::Inconsistent;
        };
        if !fi.more {
            if r.frag_size == 0 || upper > r.frag_size {
                r.frag_size = upper;
            }
        } else if r.frag_size != 0 && upper > r.frag_size {
            r.frag_size = upper;
        }
        if upper > MAX_DATAGRAM {
            return FragResult::Inconsistent;
        }
        let payload = ip.data.get(ip.hdr_len..).unwrap_or(&[]);
        let payload = &payload[..(len as usize).min(payload.len())];
        let gaps = r.gaps(offset, payload.len() as u32);
        let cost: usize = gaps
            .iter()
            .map(|(s, e)| (e - s) as usize + PIECE_OVERHEAD)
            .sum();
        if r.cost + cost > self.limits.datagram_bytes {
            self.drop_datagram(&key, FragDrop::DatagramBudget);
            return FragResult::Dropped(FragDrop::DatagramBudget);
        }
        while self.held + cost > self.limits.total_bytes {
            if !self.evict_oldest(&key, FragDrop::Memory) {
                self.drop_datagram(&key, FragDrop::Memory);
                return FragResult::Dropped(FragDrop::Memory);
            }
        }
        let Some(r) = self.table.get_mut(&key) else {
            return FragResult::Inconsistent;
        };
        for (s, e) in gaps {
            let (a, b) = ((s - offset) as usize, (e - offset) as usize);
            let at = r.pieces.partition_point(|p| p.0 < s);
            r.pieces.insert(at, (s, payload[a..b].into()));
        }
        r.cost += cost;
        self.held += cost;
        match r.try_complete() {
            Some(pkt) => {
                self.forget(&key);
                FragResult::Complete(pkt)
            }
            None => FragResult::Pending,
        }
    }

    /// Files a new datagram started by the fragment `ip`.
    fn start(&mut self, now: f64, key: Key, ip: &IpPacket<'_>) {
        let hdr_len = if ip.version == 4 {
            ip.hdr_len
        } else {
            ip.hdr_len.saturating_sub(8)
        };
        let mut proto_hdr = ip.data[..hdr_len.min(ip.data.len())].to_vec();
        if ip.version == 6 {
            fix_v6_next_header(&mut proto_hdr, ip.proto);
        }
        let cost = DATAGRAM_OVERHEAD + proto_hdr.len();
        let serial = self.next_serial;
        self.next_serial += 1;
        self.table.insert(
            key,
            Reassembler {
                serial,
                first_seen: now,
                proto_hdr,
                version: ip.version,
                pieces: Vec::new(),
                frag_size: 0,
                cost,
            },
        );
        self.order.push_back((key, serial));
        self.held += cost;
    }
}

fn fix_v6_next_header(hdr: &mut [u8], next: u8) {
    // The copied chain's last "next header" field still names the fragment
    // header; point it at the fragmented payload's protocol instead.
    if hdr.len() < 40 {
        return;
    }
    let mut off = 40usize;
    let mut next_field = 6usize;
    let mut t = hdr[6];
    while t != PROTO_FRAGMENT && off + 2 <= hdr.len() {
        let len = match t {
            0 | 43 | 60 | 135 => 8 + 8 * usize::from(hdr[off + 1]),
            51 => 8 + 4 * usize::from(hdr[off + 1]),
            _ => break,
        };
        next_field = off;
        t = hdr[off];
        off += len;
    }
    if t == PROTO_FRAGMENT {
        hdr[next_field] = next;
    }
}

impl Reassembler {
    /// The parts of [offset, offset+len) not held yet, in order.
    fn gaps(&self, offset: u32, len: u32) -> Vec<(u32, u32)> {
        let end = offset + len;
        let mut cur = offset;
        let mut gaps = Vec::new();
        let from = self
            .pieces
            .partition_point(|(s, b)| s + b.len() as u32 <= offset);
        for (s, b) in &self.pieces[from..] {
            if *s >= end {
                break;
            }
            if *s > cur {
                gaps.push((cur, *s));
            }
            cur = cur.max(s + b.len() as u32);
            if cur >= end {
                break;
            }
        }
        if cur < end {
            gaps.push((cur, end));
        }
        gaps
    }

    fn try_complete(&mut self) -> Option<Vec<u8>> {
        let (first, _) = self.pieces.first()?;
        if *first > 0 || self.frag_size == 0 {
            return None;
        }
        // The run of pieces without a hole from offset 0.
        let mut contiguous_end = 0u32;
        let mut run = 0usize;
        for (s, b) in &self.pieces {
            if *s > contiguous_end {
                break;
            }
            contiguous_end = contiguous_end.max(s + b.len() as u32);
            run += 1;
        }
        if run < self.pieces.len() {
            if contiguous_end >= self.frag_size {
                // Contiguous through the expected end, more beyond a hole:
                // Zeek analyses the contiguous part.
                self.frag_size = contiguous_end;
            } else {
                return None;
            }
        } else if contiguous_end > self.frag_size {
            self.frag_size = contiguous_end;
        } else if contiguous_end < self.frag_size {
            return None;
        }
        let size = self.frag_size as usize;
        let mut pkt = Vec::with_capacity(self.proto_hdr.len() + size);
        pkt.extend_from_slice(&self.proto_hdr);
        for (_, b) in &self.pieces[..run] {
            pkt.extend_from_slice(b);
        }
        let hl = self.proto_hdr.len();
        if self.version == 4 {
            if pkt.len() >= 8 {
                let total = (hl + size) as u16;
                pkt[2..4].copy_from_slice(&total.to_be_bytes());
                // Clear the fragment fields so the datagram parses as whole.
                pkt[6] = 0;
                pkt[7] = 0;
            }
        } else if pkt.len() >= 40 {
            let plen = (hl + size - 40) as u16;
            pkt[4..6].copy_from_slice(&plen.to_be_bytes());
        }
        Some(pkt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::ip::{parse_ip, IpOutcome};

    /// An IPv4 fragment of datagram `id` from 198.18.0.1 carrying `len`
    /// bytes of `fill` at byte `offset` (a multiple of 8).
    fn frag4(id: u16, offset: u32, more: bool, len: usize, fill: u8) -> Vec<u8> {
        let total = u16::try_from(20 + len).expect("small test fragments");
        let ff = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&ff.to_be_bytes());
        p.extend_from_slice(&[64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2]);
        p.resize(20 + len, fill);
        p
    }

    fn add(m: &mut FragmentManager, now: f64, pkt: &[u8]) -> FragResult {
        match parse_ip(pkt, pkt.len(), true) {
            IpOutcome::Packet(ip) => m.add(now, &ip),
            _ => panic!("test fragment does not parse"),
        }
    }

    #[test]
    fn a_lone_high_offset_fragment_costs_its_bytes_not_its_offset() {
        let mut m = FragmentManager::new(FragLimits::default());
        assert!(matches!(
            add(&mut m, 1.0, &frag4(1, 65_000, true, 40, 7)),
            FragResult::Pending
        ));
        assert!(m.bytes_held() < 1024, "{}", m.bytes_held());
    }

    #[test]
    fn fragments_reassemble_in_any_order_first_copy_wins() {
        let mut m = FragmentManager::new(FragLimits::default());
        assert!(matches!(
            add(&mut m, 1.0, &frag4(9, 16, false, 8, b'c')),
            FragResult::Pending
        ));
        assert!(matches!(
            add(&mut m, 1.0, &frag4(9, 8, true, 16, b'b')),
            FragResult::Pending
        ));
        let FragResult::Complete(whole) = add(&mut m, 1.0, &frag4(9, 0, true, 8, b'a')) else {
            panic!("datagram not complete");
        };
        assert_eq!(&whole[20..], b"aaaaaaaabbbbbbbbcccccccc".as_slice());
        assert_eq!(u16::from_be_bytes([whole[2], whole[3]]), 44);
        assert!(m.is_empty());
        assert_eq!(m.bytes_held(), 0);
    }

    #[test]
    fn a_full_table_drops_the_oldest_in_constant_time() {
        let limits = FragLimits {
            max_datagrams: 1000,
            ..FragLimits::default()
        };
        let mut m = FragmentManager::new(limits);
        for id in 0..30_000u32 {
            let t = f64::from(id) * 1e-3;
            add(&mut m, t, &frag4(id as u16, 65_000, true, 40, 1));
        }
        assert_eq!(m.len(), 1000);
        assert_eq!(m.dropped(FragDrop::TableFull), 29_000);
        // The survivors are the newest: an old datagram's next fragment
        // starts it anew.
        assert!(m.order.len() <= 2 * m.len() + 64 + 1);
        assert!(m.bytes_held() < 1000 * 512);
    }

    #[test]
    fn the_total_budget_drops_the_oldest_datagrams() {
        let limits = FragLimits {
            total_bytes: 64 * 1024,
            ..FragLimits::default()
        };
        let mut m = FragmentManager::new(limits);
        for id in 0..100u16 {
            add(&mut m, 1.0, &frag4(id, 8, true, 1400, 1));
            assert!(m.bytes_held() <= 64 * 1024);
        }
        assert!(m.dropped(FragDrop::Memory) > 50);
        // The newest survive and still complete.
        assert!(matches!(
            add(&mut m, 1.0, &frag4(99, 0, true, 8, 1)),
            FragResult::Pending
        ));
        assert!(matches!(
            add(&mut m, 1.0, &frag4(99, 1408, false, 8, 1)),
            FragResult::Complete(_)
        ));
    }

    #[test]
    fn tiny_fragments_reach_the_datagram_budget() {
        let limits = FragLimits {
            datagram_bytes: 4096,
            ..FragLimits::default()
        };
        let mut m = FragmentManager::new(limits);
        let mut dropped = false;
        for i in 0..200u32 {
            // Every other 8-byte piece, so that nothing merges.
            if let FragResult::Dropped(FragDrop::DatagramBudget) =
                add(&mut m, 1.0, &frag4(5, 16 * i + 8, true, 8, 1))
            {
                dropped = true;
                break;
            }
        }
        assert!(dropped);
        assert_eq!(m.dropped(FragDrop::DatagramBudget), 1);
        assert!(m.is_empty());
        assert_eq!(m.bytes_held(), 0);
    }

    #[test]
    fn datagrams_time_out_oldest_first() {
        let mut m = FragmentManager::new(FragLimits {
            timeout: 30.0,
            ..FragLimits::default()
        });
        add(&mut m, 0.0, &frag4(1, 8, true, 8, 1));
        add(&mut m, 10.0, &frag4(2, 8, true, 8, 1));
        add(&mut m, 35.0, &frag4(3, 8, true, 8, 1));
        assert_eq!(m.dropped(FragDrop::Timeout), 1);
        assert_eq!(m.len(), 2);
        add(&mut m, 100.0, &frag4(4, 8, true, 8, 1));
        assert_eq!(m.dropped(FragDrop::Timeout), 3);
        assert_eq!(m.len(), 1);
    }
}
