//! A map with a hard limit on its entries, for state an attacker can make
//! grow (one entry per spoofed source address).
//!
//! When full, a new key makes room by the CLOCK policy (second chance, as
//! page caches evict): a hand walks the entries in order; an entry touched
//! again since the hand last passed gets its mark cleared and is skipped,
//! the first unmarked one is evicted. Under a flood of one-packet spoofed
//! sources every new entry is unmarked and the hand evicts at once, while
//! a real scanner, touching its entry on every connection, keeps its mark
//! and its evidence. O(1) amortised per insertion, and the hand moves
//! through the dense entry array in order, so the walk is cheap on the
//! cache where random sampling missed it on every probe (measured:
//! benches/README.md). Entries live in an `IndexMap` with a random hasher
//! (attacker-chosen keys cannot steer buckets).

use std::hash::Hash;

use indexmap::IndexMap;

#[derive(Clone, Debug)]
struct Slot<V> {
    v: V,
    /// Touched again since the hand last passed.
    marked: bool,
}

pub struct Bounded<K, V> {
    map: IndexMap<K, Slot<V>, ahash::RandomState>,
    max: usize,
    hand: usize,
    /// Entries evicted to make room.
    pub evicted: u64,
}

impl<K: Hash + Eq, V> Bounded<K, V> {
    pub fn new(max: usize) -> Bounded<K, V> {
        Bounded {
            map: IndexMap::with_hasher(ahash::RandomState::new()),
            max: max.max(1),
            hand: 0,
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

    /// Evicts one entry by the CLOCK policy: at most one full turn of the
    /// hand clearing marks before an unmarked entry comes up.
    fn evict_one(&mut self) {
        loop {
            let n = self.map.len();
            if n == 0 {
                return;
            }
            if self.hand >= n {
                self.hand = 0;
            }
            let Some((_, slot)) = self.map.get_index_mut(self.hand) else {
                return;
            };
            if slot.marked {
                slot.marked = false;
                self.hand += 1;
            } else {
                // The newest entry moves into the hand's place; the hand
                // passes it, so it gets a full turn like every other.
                self.map.swap_remove_index(self.hand);
                self.evicted += 1;
                self.hand += 1;
                return;
            }
        }
    }

    /// The entry's index, inserting `make()` first (evicting when full);
    /// an existing entry is marked as touched again. The index stays
    /// valid until the next insertion or removal.
    pub fn index_or_insert(&mut self, key: K, make: impl FnOnce() -> V) -> usize {
        if let Some((i, _, slot)) = self.map.get_full_mut(&key) {
            slot.marked = true;
            return i;
        }
        if self.map.len() >= self.max {
            self.evict_one();
        }
        self.map
            .insert_full(
                key,
                Slot {
                    v: make(),
                    marked: false,
                },
            )
            .0
    }

    pub fn index_of(&self, key: &K) -> Option<usize> {
        self.map.get_index_of(key)
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|s| &s.v)
    }

    pub fn at(&self, i: usize) -> Option<&V> {
        self.map.get_index(i).map(|(_, s)| &s.v)
    }

    pub fn key_at(&self, i: usize) -> Option<&K> {
        self.map.get_index(i).map(|(k, _)| k)
    }

    pub fn at_mut(&mut self, i: usize) -> Option<&mut V> {
        self.map.get_index_mut(i).map(|(_, s)| &mut s.v)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.map.swap_remove(key).map(|s| s.v)
    }

    /// Drops every entry `keep` says no to (periodic expiry).
    pub fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        self.map.retain(|_, s| keep(&s.v));
    }

    /// Drops every entry `keep` says no to, by key and value.
    pub fn retain_entries(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.map.retain(|k, s| keep(k, &s.v));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, s)| (k, &s.v))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values().map(|s| &s.v)
    }

    /// Bytes of the table itself (keys, values, index), not counting what
    /// the values own on the heap: an `IndexMap` keeps a `Vec` of (hash,
    /// key, slot) and a hashbrown index of `usize` with a control byte
    /// per bucket (about 8/7 buckets per entry of capacity).
    pub fn table_bytes(&self) -> usize {
        let cap = self.map.capacity();
        let buckets = (cap * 8 / 7).next_power_of_two();
        cap * Self::entry_bytes() + buckets * (std::mem::size_of::<usize>() + 1)
    }

    /// Bytes of one entry: hash, key and value with its mark.
    pub fn entry_bytes() -> usize {
        std::mem::size_of::<(u64, K, Slot<V>)>()
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
            if i % 100 == 0 {
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

    /// A new key gets a full turn of the hand before it can be evicted:
    /// its second touch, a few hundred insertions later, finds it.
    #[test]
    fn a_new_key_survives_a_flood_until_its_second_touch() {
        let mut t: Bounded<u32, ()> = Bounded::new(1000);
        for i in 0..5_000u32 {
            t.index_or_insert(i, || ());
        }
        t.index_or_insert(u32::MAX, || ());
        for i in 5_000..5_900u32 {
            t.index_or_insert(i, || ());
        }
        assert!(
            t.get(&u32::MAX).is_some(),
            "evicted before its second touch"
        );
        assert_eq!(t.len(), 1000);
    }
}
