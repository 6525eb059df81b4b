//! Timers on packet time.
//!
//! Zeek keeps every connection timer in one priority queue ordered by
//! packet time and, before each packet, fires those that are due. Most
//! connections set two or three timers at birth, so a binary heap pays a
//! cache-missing `log n` per timer. [`TimerQueue`] instead files timers
//! into one-second buckets (an append) and sorts a bucket only when it
//! comes due; timers still fire in (time, insertion) order.
//!
//! A state machine asks for a timer by pushing a [`TimerReq`]; cancelling
//! is done by bumping a generation counter, so stale timers are recognised
//! and skipped when they fire.

/// What a timer does when it fires (Zeek's `TIMER_CONN_INACTIVITY`,
/// `TIMER_TCP_EXPIRE`, `TIMER_TCP_ATTEMPT`, `TIMER_CONN_DELETE`,
/// `TIMER_DNS_EXPIRE`, and osprey's own interim snapshot timer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerKind {
    /// `Session::InactivityTimer`.
    Inactivity,
    /// `TCPSessionAdapter::ExpireTimer`.
    TcpExpire,
    /// `TCPSessionAdapter::AttemptTimer`.
    TcpAttempt,
    /// `TCPSessionAdapter::ConnDeleteTimer` (close/reset linger).
    TcpConnDelete,
    /// `DNS_Analyzer::ExpireTimer` on UDP (`dns_session_timeout`).
    DnsExpire,
    /// Not Zeek's: the next interim snapshot check (see `conn::interim`).
    /// It never ends a connection, so it cannot change what is logged.
    Interim,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimerReq {
    pub at: f64,
    pub kind: TimerKind,
    /// Generation of the timer family when the timer was set.
    pub gen: u32,
}

/// A queued timer for the connection in `slot` (valid while the slot's
/// generation is still `conn_gen`).
#[derive(Clone, Copy, Debug)]
pub struct TimerEntry {
    pub at: f64,
    pub seq: u64,
    pub slot: u32,
    pub conn_gen: u32,
    pub kind: TimerKind,
    pub gen: u32,
}

/// Seconds covered by the ring of buckets; later timers wait in `far`.
const RING: usize = 4096;

/// Emptied buckets kept for reuse at most, and the largest kept (in
/// timers). A flood fills one second's bucket with tens of thousands of
/// timers; kept and handed out again, such a buffer then sits under a
/// bucket of a handful of timers for up to an hour, and over many floods
/// every bucket in use ended up that large: memory grew with the length
/// of the trace, not with the timers pending. A larger buffer is freed
/// instead, which costs one allocation per flood second.
const SPARE_MAX: usize = 64;
const SPARE_MAX_CAPACITY: usize = 1024;

/// Timers filed by whole second of their due time in a ring of buckets.
pub struct TimerQueue {
    ring: Vec<Vec<TimerEntry>>,
    /// Bucket (second) that `ring[base % RING]` holds; every earlier bucket
    /// has been taken.
    base: i64,
    started: bool,
    ring_len: usize,
    /// Timers at least `RING` seconds ahead of `base`.
    far: Vec<TimerEntry>,
    far_min: i64,
    /// Timers being fired, sorted so that the next one is last.
    due: Vec<TimerEntry>,
    /// Emptied bucket allocations, handed to the next bucket that fills:
    /// memory then follows the timers pending, not every second the ring
    /// has ever covered, and stays warm in the cache.
    spare: Vec<Vec<TimerEntry>>,
    /// No timer is due before this time, so the check made before every
    /// packet is usually a single comparison.
    quiet_until: f64,
    seq: u64,
    len: usize,
}

impl Default for TimerQueue {
    fn default() -> Self {
        TimerQueue {
            ring: (0..RING).map(|_| Vec::new()).collect(),
            base: 0,
            started: false,
            ring_len: 0,
            far: Vec::new(),
            far_min: i64::MAX,
            due: Vec::new(),
            spare: Vec::new(),
            quiet_until: f64::NEG_INFINITY,
            seq: 0,
            len: 0,
        }
    }
}

fn bucket_of(at: f64) -> i64 {
    // `as` saturates (and maps NaN to 0); truncation equals floor for the
    // non-negative times packets have.
    at as i64
}

fn ring_index(b: i64) -> usize {
    b.rem_euclid(RING as i64) as usize
}

/// Firing order as one integer: the time's bits mapped so that integer
/// order is `f64::total_cmp` order, then insertion order. Sorting on it
/// is much cheaper than comparing `(f64, u64)` tuples.
fn order_key(e: &TimerEntry) -> u128 {
    let b = e.at.to_bits();
    let t = if b >> 63 == 1 { !b } else { b | 1 << 63 };
    (u128::from(t) << 64) | u128::from(e.seq)
}

fn later(x: &TimerEntry, y: &TimerEntry) -> bool {
    order_key(x) > order_key(y)
}

impl TimerQueue {
    pub fn new() -> Self {
        TimerQueue::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, slot: u32, conn_gen: u32, r: TimerReq) {
        self.seq += 1;
        self.len += 1;
        let e = TimerEntry {
            at: r.at,
            seq: self.seq,
            slot,
            conn_gen,
            kind: r.kind,
            gen: r.gen,
        };
        // (A NaN time compares false either way: it lowers the bound too.)
        if r.at < self.quiet_until || r.at.is_nan() {
            self.quiet_until = r.at;
        }
        let b = bucket_of(r.at);
        if !self.started {
            self.started = true;
            self.base = b;
        }
        if b < self.base {
            // Already-taken second (time went backwards, or a timer for
            // the second being fired): keep `due` in order.
            let pos = self.due.partition_point(|x| later(x, &e));
            self.due.insert(pos, e);
        } else if b - self.base < RING as i64 {
            let bucket = &mut self.ring[ring_index(b)];
            if bucket.capacity() == 0 {
                if let Some(v) = self.spare.pop() {
                    *bucket = v;
                }
            }
            bucket.push(e);
            self.ring_len += 1;
        } else {
            self.far_min = self.far_min.min(b);
            self.far.push(e);
        }
    }

    /// Moves far timers that now fall inside the ring window.
    fn pull_far(&mut self) {
        if self.far.is_empty() || self.far_min - self.base >= RING as i64 {
            return;
        }
        let far = std::mem::take(&mut self.far);
        self.far_min = i64::MAX;
        for e in far {
            let b = bucket_of(e.at).max(self.base);
            if b - self.base < RING as i64 {
                self.ring[ring_index(b)].push(e);
                self.ring_len += 1;
            } else {
                self.far_min = self.far_min.min(b);
                self.far.push(e);
            }
        }
    }

    /// The next timer due at or before `now`, in (time, insertion) order.
    #[inline]
    pub fn pop_due(&mut self, now: f64) -> Option<TimerEntry> {
        if now < self.quiet_until {
            return None;
        }
        self.pop_due_slow(now)
    }

    fn pop_due_slow(&mut self, now: f64) -> Option<TimerEntry> {
        loop {
            if let Some(last) = self.due.last() {
                if last.at <= now {
                    self.len -= 1;
                    return self.due.pop();
                }
                // Ring timers all lie at or after `base`, later still.
                self.quiet_until = last.at;
                return None;
            }
            let until = bucket_of(now);
            if !self.started {
                // The window starts at the current time, not at the first
                // timer (which lies in the future: starting there would
                // file every earlier timer the slow way, into `due`).
                self.started = true;
                self.base = until;
                self.quiet_until = f64::INFINITY;
                return None;
            }
            if self.ring_len == 0 {
                // Nothing within the window: jump over empty seconds.
                let next = self.far_min.min(until);
                if next > self.base {
                    self.base = next;
                }
                self.pull_far();
                if self.ring_len == 0 {
                    self.quiet_until = if self.far.is_empty() {
                        f64::INFINITY
                    } else {
                        self.far_min as f64
                    };
                    return None;
                }
            }
            if self.base > until {
                self.quiet_until = self.base as f64;
                return None;
            }
            // Take the bucket before moving far timers in: one of them may
            // belong in this very slot, a full ring later.
            let idx = ring_index(self.base);
            let mut v = std::mem::take(&mut self.ring[idx]);
            self.base += 1;
            self.pull_far();
            if v.is_empty() {
                self.recycle(v);
            } else {
                self.ring_len -= v.len();
                v.sort_unstable_by_key(|e| std::cmp::Reverse(order_key(e)));
                let drained = std::mem::replace(&mut self.due, v);
                self.recycle(drained);
            }
        }
    }

    /// Keeps an emptied buffer for the next bucket that fills, unless it
    /// is too large or enough are kept (see [`SPARE_MAX_CAPACITY`]).
    fn recycle(&mut self, mut v: Vec<TimerEntry>) {
        if v.capacity() == 0 || v.capacity() > SPARE_MAX_CAPACITY || self.spare.len() >= SPARE_MAX {
            return;
        }
        v.clear();
        self.spare.push(v);
    }

    /// Bytes the queue's buffers hold (pending timers and spare capacity).
    #[cfg(test)]
    fn allocated_bytes(&self) -> usize {
        let cap = |v: &Vec<TimerEntry>| v.capacity();
        let entries = self.ring.iter().map(cap).sum::<usize>()
            + self.spare.iter().map(cap).sum::<usize>()
            + cap(&self.far)
            + cap(&self.due);
        entries * std::mem::size_of::<TimerEntry>()
    }

    pub fn clear(&mut self) {
        for b in &mut self.ring {
            b.clear();
        }
        self.far.clear();
        self.far_min = i64::MAX;
        self.due.clear();
        self.ring_len = 0;
        self.quiet_until = f64::NEG_INFINITY;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(at: f64) -> TimerReq {
        TimerReq {
            at,
            kind: TimerKind::Inactivity,
            gen: 0,
        }
    }

    #[test]
    fn fires_in_time_then_insertion_order() {
        let mut q = TimerQueue::new();
        for (i, at) in [5.5, 1.2, 3.0, 1.2, 7.0, 0.5].iter().enumerate() {
            q.push(i as u32, 0, req(*at));
        }
        let mut fired = Vec::new();
        while let Some(e) = q.pop_due(6.0) {
            fired.push((e.at, e.slot));
        }
        assert_eq!(
            fired,
            vec![(0.5, 5), (1.2, 1), (1.2, 3), (3.0, 2), (5.5, 0)]
        );
        assert_eq!(q.len(), 1);
        assert!(q.pop_due(6.99).is_none());
        assert_eq!(q.pop_due(7.0).map(|e| e.slot), Some(4));
    }

    /// A flood's bucket is not kept for reuse once fired: memory follows
    /// the timers pending, however many floods came before.
    #[test]
    fn a_flood_bucket_is_not_kept() {
        let mut q = TimerQueue::new();
        let bound = (SPARE_MAX * SPARE_MAX_CAPACITY + 2 * 64) * std::mem::size_of::<TimerEntry>();
        for round in 0..5u32 {
            let base = f64::from(round) * 10_000.0;
            for i in 0..200_000u32 {
                q.push(i, 0, req(base + 0.5));
            }
            // A few long timers after it, as inactivity timers are.
            for k in 0..64u32 {
                q.push(k, 0, req(base + 10.0 + f64::from(k)));
            }
            while q.pop_due(base + 5_000.0).is_some() {}
            // A later second replaces the flood's buffer as the one firing.
            q.push(0, 0, req(base + 6_000.0));
            while q.pop_due(base + 6_001.0).is_some() {}
            assert!(q.is_empty());
            assert!(
                q.allocated_bytes() <= bound,
                "round {round}: {} bytes held with no timer pending",
                q.allocated_bytes()
            );
        }
    }

    #[test]
    fn far_timers_and_time_jumps() {
        let mut q = TimerQueue::new();
        q.push(1, 0, req(100.0));
        q.push(2, 0, req(100.0 + 10_000.0));
        q.push(3, 0, req(1.0e9));
        assert_eq!(q.pop_due(150.0).map(|e| e.slot), Some(1));
        assert!(q.pop_due(5_000.0).is_none());
        assert_eq!(q.pop_due(20_000.0).map(|e| e.slot), Some(2));
        assert!(q.pop_due(2.0e8).is_none());
        assert_eq!(q.pop_due(2.0e9).map(|e| e.slot), Some(3));
        assert!(q.is_empty());
    }

    #[test]
    fn timers_added_while_firing_are_ordered() {
        let mut q = TimerQueue::new();
        q.push(1, 0, req(10.4));
        q.push(2, 0, req(10.9));
        let first = q.pop_due(11.0).map(|e| e.slot);
        assert_eq!(first, Some(1));
        // Filed into the bucket being fired, and into an earlier one.
        q.push(3, 0, req(10.5));
        q.push(4, 0, req(2.0));
        let rest: Vec<u32> = std::iter::from_fn(|| q.pop_due(11.0).map(|e| e.slot)).collect();
        assert_eq!(rest, vec![4, 3, 2]);
        assert!(q.is_empty());
    }

    proptest::proptest! {
        /// Any interleaving of pushes (the engine's fixed delays, short and
        /// far ones, and times in the past) and pops fires exactly as a
        /// reference list sorted by (time, insertion) does.
        #[test]
        fn matches_a_sorted_reference(
            ops in proptest::collection::vec((0u8..10, 0u32..4000, 0u32..20000), 1..300)
        ) {
            let mut q = TimerQueue::new();
            let mut reference: Vec<(f64, u64, u32)> = Vec::new();
            let mut now = 1000.0f64;
            let mut seq = 0u64;
            for (i, (op, step, delay)) in ops.into_iter().enumerate() {
                match op {
                    0..=5 => {
                        let at = match op {
                            0 => now + 5.0,
                            1 => now + 300.0,
                            2 => now + f64::from(delay),
                            3 => now + 0.25,
                            4 => now + f64::from(delay) / 7.0,
                            _ => now - f64::from(delay) / 100.0,
                        };
                        seq += 1;
                        q.push(i as u32, 0, req(at));
                        reference.push((at, seq, i as u32));
                    }
                    _ => {
                        now += f64::from(step) / 3.0;
                        reference.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                        let due = reference.iter().take_while(|r| r.0 <= now).count();
                        let want: Vec<u32> = reference.drain(..due).map(|r| r.2).collect();
                        let got: Vec<u32> =
                            std::iter::from_fn(|| q.pop_due(now).map(|e| e.slot)).collect();
                        proptest::prop_assert_eq!(got, want);
                    }
                }
                proptest::prop_assert_eq!(q.len(), reference.len());
            }
        }
    }
}
