//! IPv4/IPv6 fragment reassembly as Zeek does it (`src/Frag.cc`): keyed by
//! (src, dst, id); the first copy of any byte wins; a datagram is complete
//! once data runs without a hole from offset 0 to the size the last
//! fragment implies. The reassembled datagram gets the header of the first
//! fragment seen, with its length field fixed.
//!
//! Limits: at most `max_reassemblers` datagrams in flight (the oldest is
//! dropped beyond that), 64 KiB + header per datagram, and a datagram is
//! forgotten `frag_timeout` seconds after its first fragment.

use std::collections::HashMap;
use std::net::IpAddr;

use super::ip::{IpPacket, PROTO_FRAGMENT};

/// Largest reassembled payload accepted (beyond the 16-bit IP length).
const MAX_DATAGRAM: u32 = 65_535 + 8;

type Key = (IpAddr, IpAddr, u32);

struct Reassembler {
    first_seen: f64,
    /// Header of the first fragment seen, without the IPv6 fragment header.
    proto_hdr: Vec<u8>,
    version: u8,
    next_proto: u8,
    /// Payload bytes by offset; `have` marks which are filled.
    buf: Vec<u8>,
    /// Sorted, non-overlapping [start, end) ranges held.
    ranges: Vec<(u32, u32)>,
    /// Size implied by the last fragment, 0 while unknown.
    frag_size: u32,
}

/// Outcome of adding one fragment.
pub enum FragResult {
    /// Not complete yet.
    Pending,
    /// The whole datagram, header first.
    Complete(Vec<u8>),
    /// The fragment made no sense (length below its header); dropped.
    Inconsistent,
}

pub struct FragmentManager {
    table: HashMap<Key, Reassembler, ahash::RandomState>,
    pub timeout: f64,
    pub max_reassemblers: usize,
    /// Datagrams dropped because the table was full or they timed out.
    pub dropped: u64,
}

impl FragmentManager {
    pub fn new(timeout: f64, max_reassemblers: usize) -> Self {
        FragmentManager {
            table: HashMap::with_hasher(ahash::RandomState::new()),
            timeout,
            max_reassemblers,
            dropped: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Adds a fragment (`ip.frag` must be set, `ip.data` fully captured).
    pub fn add(&mut self, now: f64, ip: &IpPacket<'_>) -> FragResult {
        let Some(fi) = ip.frag else {
            return FragResult::Inconsistent;
        };
        let key = (ip.src, ip.dst, fi.id);
        if let Some(r) = self.table.get(&key) {
            if now - r.first_seen > self.timeout {
                self.table.remove(&key);
                self.dropped += 1;
            }
        }
        if !self.table.contains_key(&key) && self.table.len() >= self.max_reassemblers {
            // Evict the oldest datagram so a flood of fragments cannot grow
            // memory without bound.
            if let Some(old) = self
                .table
                .iter()
                .min_by(|a, b| a.1.first_seen.total_cmp(&b.1.first_seen))
                .map(|(k, _)| *k)
            {
                self.table.remove(&old);
                self.dropped += 1;
            }
        }
        let r = self.table.entry(key).or_insert_with(|| {
            let hdr_len = if ip.version == 4 {
                ip.hdr_len
            } else {
                ip.hdr_len.saturating_sub(8)
            };
            let mut proto_hdr = ip.data[..hdr_len.min(ip.data.len())].to_vec();
            if ip.version == 6 {
                fix_v6_next_header(&mut proto_hdr, ip.proto);
            }
            Reassembler {
                first_seen: now,
                proto_hdr,
                version: ip.version,
                next_proto: ip.proto,
                buf: Vec::new(),
                ranges: Vec::new(),
                frag_size: 0,
            }
        });

        let total = ip.total_len;
        let hdr = ip.hdr_len as u32;
        if total < hdr {
            return FragResult::Inconsistent;
        }
        let offset = fi.offset;
        let len = total - hdr;
        let upper = offset + len;
        if offset == 0 {
            r.next_proto = ip.proto;
        }
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
        let payload = &ip.data[ip.hdr_len..];
        let payload = &payload[..(len as usize).min(payload.len())];
        r.insert(offset, payload);
        match r.try_complete() {
            Some(pkt) => {
                self.table.remove(&key);
                FragResult::Complete(pkt)
            }
            None => FragResult::Pending,
        }
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
    /// Stores the parts of [offset, offset+len) not held yet (first wins).
    fn insert(&mut self, offset: u32, data: &[u8]) {
        let end = offset + data.len() as u32;
        if end as usize > self.buf.len() {
            self.buf.resize(end as usize, 0);
        }
        let mut cur = offset;
        let mut new_ranges = Vec::new();
        for &(s, e) in &self.ranges {
            if e <= cur {
                continue;
            }
            if s >= end {
                break;
            }
            if s > cur {
                new_ranges.push((cur, s.min(end)));
            }
            cur = cur.max(e);
            if cur >= end {
                break;
            }
        }
        if cur < end {
            new_ranges.push((cur, end));
        }
        for (s, e) in new_ranges {
            let (a, b) = ((s - offset) as usize, (e - offset) as usize);
            self.buf[s as usize..e as usize].copy_from_slice(&data[a..b]);
            self.ranges.push((s, e));
        }
        self.ranges.sort_unstable();
        // Merge adjacent ranges.
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(self.ranges.len());
        for &(s, e) in &self.ranges {
            match merged.last_mut() {
                Some(last) if last.1 >= s => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.ranges = merged;
    }

    fn try_complete(&mut self) -> Option<Vec<u8>> {
        let first = *self.ranges.first()?;
        if first.0 > 0 || self.frag_size == 0 {
            return None;
        }
        let contiguous_end = first.1;
        if self.ranges.len() > 1 {
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
        pkt.extend_from_slice(&self.buf[..size]);
        let hl = self.proto_hdr.len();
        if self.version == 4 {
            let total = (hl + size) as u16;
            pkt[2..4].copy_from_slice(&total.to_be_bytes());
            // Clear the fragment fields so the datagram parses as whole.
            pkt[6] = 0;
            pkt[7] = 0;
        } else if pkt.len() >= 40 {
            let plen = (hl + size - 40) as u16;
            pkt[4..6].copy_from_slice(&plen.to_be_bytes());
            let _ = self.next_proto;
        }
        Some(pkt)
    }
}
