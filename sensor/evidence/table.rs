//! A map with a hard limit on its entries, for state an attacker can make
//! grow (one entry per spoofed source address).
//!
//! When full, a new key makes room by evicting the least recently active
//! of a few entries picked at random — Redis's approximate LRU. That is
//! O(1) per insertion whatever the table's size, needs no ordering
//! structure beside the map, and under a flood of one-packet spoofed
//! sources keeps the sources that stay active (a real scanner touches its
//! entry on every connection; a spoofed address touches it once).
//! Entries live in an `IndexMap` with a random hasher (attacker-chosen
//! keys cannot steer buckets), whose dense index is what makes a random
//! pick O(1).

use std::hash::Hash;

use indexmap::IndexMap;

/// Entries look at this many random entries to pick a victim: Redis's
/// default (5) keeps the one picked among the least recently active few
/// per cent; each sample is a cache miss in a large table.
const SAMPLES: usize = 5;

/// What the table needs of its values.
pub trait Activity {
    /// When the entry was last active (record time).
    fn last_active(&self) -> f64;
}

impl Activity for f64 {
    fn last_active(&self) -> f64 {
        *self
    }
}

pub struct Bounded<K, V> {
    map: IndexMap<K, V, ahash::RandomState>,
    max: usize,
    rng: u64,
    /// Entries evicted to make room.
    pub evicted: u64,
}

impl<K: Hash + Eq, V: Activity> Bounded<K, V> {
    pub fn new(max: usize) -> Bounded<K, V> {
        Bounded {
            map: IndexMap::with_hasher(ahash::RandomState::new()),
            max: max.max(1),
            rng: 0x2545_f491_4f6c_dd1d,
            evicted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn capacity_limit(&self) -> usize {
        self.max
    }

    fn next(&mut self) -> u64 {
        // xorshift64*: the pick needs spread, not secrecy.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn evict_one(&mut self) {
        let n = self.map.len();
        if n == 0 {
            return;
        }
        let mut victim = (self.next() % n as u64) as usize;
        for _ in 1..SAMPLES.min(n) {
            let i = (self.next() % n as u64) as usize;
            let older = match (self.map.get_index(i), self.map.get_index(victim)) {
                (Some((_, a)), Some((_, b))) => a.last_active() < b.last_active(),
                _ => false,
            };
            if older {
                victim = i;
            }
        }
        self.map.swap_remove_index(victim);
        self.evicted += 1;
    }

    /// The entry's index, inserting `make()` first (evicting when full).
    /// The index stays valid until the next insertion or removal.
    pub fn index_or_insert(&mut self, key: K, make: impl FnOnce() -> V) -> usize {
        if let Some(i) = self.map.get_index_of(&key) {
            return i;
        }
        if self.map.len() >= self.max {
            self.evict_one();
        }
        self.map.insert_full(key, make()).0
    }

    pub fn index_of(&self, key: &K) -> Option<usize> {
        self.map.get_index_of(key)
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    pub fn at(&self, i: usize) -> Option<&V> {
        self.map.get_index(i).map(|(_, v)| v)
    }

    pub fn key_at(&self, i: usize) -> Option<&K> {
        self.map.get_index(i).map(|(k, _)| k)
    }

    pub fn at_mut(&mut self, i: usize) -> Option<&mut V> {
        self.map.get_index_mut(i).map(|(_, v)| v)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.map.swap_remove(key)
    }

    /// Drops every entry `keep` says no to (periodic expiry).
    pub fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        self.map.retain(|_, v| keep(v));
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values()
    }

    /// Bytes of the table itself (keys, values, index), not counting what
    /// the values own on the heap: an `IndexMap` keeps a `Vec` of (hash,
    /// key, value) and a hashbrown index of `usize` with a control byte
    /// per bucket (about 8/7 buckets per entry of capacity).
    pub fn table_bytes(&self) -> usize {
        let cap = self.map.capacity();
        let buckets = (cap * 8 / 7).next_power_of_two();
        cap * std::mem::size_of::<(u64, K, V)>() + buckets * (std::mem::size_of::<usize>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_holds_more_than_max_and_keeps_the_active() {
        let mut t: Bounded<u32, f64> = Bounded::new(1000);
        // Key 0 is active all along; a million one-shot keys pass through.
        for i in 1..1_000_000u32 {
            let now = f64::from(i);
            t.index_or_insert(i, || now);
            if i % 10 == 0 {
                let k = t.index_or_insert(0, || now);
                if let Some(v) = t.at_mut(k) {
                    *v = now;
                }
            }
            assert!(t.len() <= 1000);
        }
        assert!(t.get(&0).is_some(), "the active key was evicted");
        assert_eq!(t.evicted, 1_000_000 - 1000);
    }
}
