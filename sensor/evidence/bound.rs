//! The most heap the evidence stage can hold for a configuration: what
//! `max_sources` and the other limits mean in bytes, derived from the
//! entry types and the growth rules of the containers that hold them.
//! `tests/evidence.rs` measures the heap (a counting allocator) under a
//! million spoofed sources and checks it against this bound.

use std::mem::size_of;

use super::stage::{entry_sizes, BASE_COUNTERS};
use super::EvidenceConfig;

/// hashbrown's control bytes past the last bucket (its SSE2 group).
const GROUP_WIDTH: usize = 16;

/// hashbrown's capacity with `buckets` buckets (at most 7/8 full).
fn capacity_of(buckets: usize) -> usize {
    if buckets <= 8 {
        buckets - 1
    } else {
        buckets / 8 * 7
    }
}

/// The most buckets the index of a table holding at most `max` entries
/// can reach. Each eviction may leave a tombstone; when tombstones use up
/// the spare room, hashbrown rehashes in place if at most half its
/// capacity is used and otherwise doubles, so the capacity can reach
/// twice `max`, never more.
fn worst_buckets(max: usize) -> usize {
    let mut b = 4;
    while capacity_of(b) < 2 * max {
        b *= 2;
    }
    b
}

/// A `Bounded` table (an `IndexMap`) of at most `max` entries of
/// `entry_bytes` (hash, key and value): its entries are kept at the
/// index's capacity, and the index holds a `usize` and a control byte a
/// bucket.
pub fn table_bytes(max: usize, entry_bytes: usize) -> usize {
    let b = worst_buckets(max);
    capacity_of(b) * entry_bytes + b * (size_of::<usize>() + 1) + GROUP_WIDTH
}

/// A hashbrown map of at most `max` entries of `entry_bytes`.
pub fn map_bytes(max: usize, entry_bytes: usize) -> usize {
    let b = worst_buckets(max.max(1));
    b * (entry_bytes + 1) + GROUP_WIDTH
}

/// Heap of a `SmallVec` with `inline` elements inline, holding `n` of
/// `size` bytes pushed one by one (doubling once spilled).
fn smallvec_heap(n: usize, inline: usize, size: usize) -> usize {
    if n <= inline {
        0
    } else {
        n.next_power_of_two() * size
    }
}

/// The heap of one set of counters with `windows` windows and `labels`
/// flagged labels: two `u32` per counter and window, allocated exactly
/// (`Counters::grow` reserves exactly), and the label list past 4.
fn tally_heap(windows: usize, labels: usize) -> usize {
    (BASE_COUNTERS + 2 * labels) * windows * 8 + smallvec_heap(labels, 4, 2)
}

/// A source's target set: 16-byte targets pushed up to the cap.
fn targets_heap(cap: usize) -> usize {
    cap.max(4).next_power_of_two() * 16
}

/// The bound, table by table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBound {
    pub sources: usize,
    pub services: usize,
    pub open_conns: usize,
    pub known_good: usize,
}

impl MemoryBound {
    pub fn total(&self) -> usize {
        self.sources + self.services + self.open_conns + self.known_good
    }
}

/// The most heap the stage holds with `cfg`, `windows` evidence windows
/// and `labels` flagged labels (every model's classes): every table at its
/// limit with its worst index, every entry at its worst.
pub fn memory_bound(cfg: &EvidenceConfig, windows: usize, labels: usize) -> MemoryBound {
    let e = entry_sizes();
    let tally = tally_heap(windows, labels);
    MemoryBound {
        sources: table_bytes(cfg.max_sources, e.source)
            + cfg.max_sources * (tally + targets_heap(cfg.max_targets_per_source)),
        services: table_bytes(cfg.max_services, e.service) + cfg.max_services * tally,
        open_conns: table_bytes(cfg.max_open_conns, e.open)
            + cfg.max_open_conns * smallvec_heap(labels, 2, 2),
        known_good: table_bytes(cfg.max_known_good, e.known),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default configuration's bound with the bundled rules (4
    /// windows) and models (12 labels), as docs/operations.md states it.
    #[test]
    fn the_default_bound_is_what_the_docs_say() {
        let b = memory_bound(&EvidenceConfig::default(), 4, 12);
        let mb = b.total() as f64 / 1e6;
        assert!((60.0..=130.0).contains(&mb), "{b:?} = {mb:.1} MB");
        println!("default evidence bound: {b:?} = {mb:.1} MB");
    }

    #[test]
    fn tables_grow_to_a_power_of_two_at_most_twice_their_limit() {
        assert_eq!(worst_buckets(1), 4);
        assert!(capacity_of(worst_buckets(1000)) >= 2000);
        assert!(capacity_of(worst_buckets(1000) / 2) < 2000);
        assert_eq!(smallvec_heap(5, 4, 2), 16);
    }
}
