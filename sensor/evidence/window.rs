//! Counts over sliding windows in constant memory.
//!
//! Each counter keeps two numbers per window: what arrived in the current
//! fixed interval of the window's length, and what arrived in the one
//! before. The count over the last `W` seconds is estimated as the current
//! interval's count plus the previous one's weighted by how much of it the
//! sliding window still covers — the estimate nginx's and Cloudflare's rate
//! limiters use. It is exact while events are spread evenly and never off
//! by more than the previous interval's count; it costs 8 bytes per counter
//! and window, so a flood of sources costs a bounded amount per source.
//! (Distinct counts, where thresholds must be exact, live in `targets.rs`.)

use smallvec::SmallVec;

/// Window lengths in seconds, shared by every counter of a stage. Each is
/// at least one second (rules refuse shorter ones).
#[derive(Clone, Debug, PartialEq)]
pub struct Windows(pub Vec<f64>);

impl Windows {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn epoch(&self, w: usize, t: f64) -> u32 {
        let secs = self.0.get(w).copied().unwrap_or(1.0).max(1.0);
        // Packet times are positive and far below 2^32 windows.
        (t.max(0.0) / secs) as u32
    }

    fn frac(&self, w: usize, t: f64) -> f64 {
        let secs = self.0.get(w).copied().unwrap_or(1.0).max(1.0);
        let x = t.max(0.0) / secs;
        x - x.floor()
    }
}

/// A group of counters over every window of `Windows`: one epoch per
/// window, and per counter and window the current and previous interval.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Inline up to the rules' limit of windows (`rules::MAX_WINDOWS`).
    epochs: SmallVec<[u32; 4]>,
    /// `[counter * windows + w]` -> (current, previous).
    vals: Vec<[u32; 2]>,
}

impl Counters {
    pub fn new(counters: usize, windows: &Windows) -> Counters {
        Counters {
            epochs: SmallVec::from_elem(0, windows.len()),
            vals: vec![[0, 0]; counters * windows.len()],
        }
    }

    /// How many counters the group holds.
    pub fn counters(&self) -> usize {
        if self.epochs.is_empty() {
            0
        } else {
            self.vals.len() / self.epochs.len()
        }
    }

    /// Adds `n` more counters at zero (a label seen for the first time).
    pub fn grow(&mut self, n: usize) {
        let w = self.epochs.len();
        // Exactly: a source's memory bound counts what it can hold.
        self.vals.reserve_exact(n * w);
        self.vals.resize(self.vals.len() + n * w, [0, 0]);
    }

    /// Moves every window's intervals forward to `t`. Time that goes
    /// backwards (a record of an older connection) counts in the current
    /// interval.
    fn roll(&mut self, windows: &Windows, t: f64) {
        let nw = self.epochs.len();
        for w in 0..nw {
            let e = windows.epoch(w, t);
            let old = self.epochs[w];
            if e <= old {
                continue;
            }
            let keep_prev = e == old + 1;
            for c in self.vals.iter_mut().skip(w).step_by(nw) {
                *c = if keep_prev { [0, c[0]] } else { [0, 0] };
            }
            self.epochs[w] = e;
        }
    }

    /// Adds `n` to counter `c` at time `t`, in every window.
    pub fn add(&mut self, c: usize, n: u32, windows: &Windows, t: f64) {
        if n == 0 {
            return;
        }
        self.roll(windows, t);
        let nw = self.epochs.len();
        for w in 0..nw {
            if let Some(v) = self.vals.get_mut(c * nw + w) {
                v[0] = v[0].saturating_add(n);
            }
        }
    }

    /// Takes back one event of counter `c` that was added at time `at`
    /// (a connection first counted as failed that turned out not to be),
    /// where its interval is still held.
    pub fn sub(&mut self, c: usize, windows: &Windows, at: f64) {
        let nw = self.epochs.len();
        for w in 0..nw {
            let e = windows.epoch(w, at);
            let cur = self.epochs[w];
            if let Some(v) = self.vals.get_mut(c * nw + w) {
                if e >= cur {
                    v[0] = v[0].saturating_sub(1);
                } else if e + 1 == cur {
                    v[1] = v[1].saturating_sub(1);
                }
            }
        }
    }

    /// The estimated count of counter `c` over window `w` ending at `t`.
    pub fn get(&self, c: usize, w: usize, windows: &Windows, t: f64) -> f64 {
        let nw = self.epochs.len();
        let Some(v) = self.vals.get(c * nw + w) else {
            return 0.0;
        };
        let (cur, prev) = (f64::from(v[0]), f64::from(v[1]));
        let e = windows.epoch(w, t);
        let held = self.epochs[w];
        let rest = 1.0 - windows.frac(w, t);
        if e <= held {
            cur + prev * if e == held { rest } else { 1.0 }
        } else if e == held + 1 {
            cur * rest
        } else {
            0.0
        }
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.vals.capacity() * std::mem::size_of::<[u32; 2]>()
            + if self.epochs.spilled() {
                self.epochs.capacity() * 4
            } else {
                0
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_rate_is_counted_exactly_and_old_events_leave() {
        let w = Windows(vec![10.0, 60.0]);
        let mut c = Counters::new(2, &w);
        // 1 event per second for 100 s, from t = 1000.
        for i in 0..100 {
            c.add(0, 1, &w, 1000.0 + f64::from(i));
        }
        let t = 1099.5;
        assert!(
            (c.get(0, 0, &w, t) - 10.0).abs() <= 1.0,
            "{}",
            c.get(0, 0, &w, t)
        );
        assert!(
            (c.get(0, 1, &w, t) - 60.0).abs() <= 1.5,
            "{}",
            c.get(0, 1, &w, t)
        );
        assert_eq!(c.get(1, 0, &w, t), 0.0);
        // Two windows later nothing is left.
        assert_eq!(c.get(0, 0, &w, t + 25.0), 0.0);
        assert_eq!(c.get(0, 1, &w, t + 130.0), 0.0);
    }

    #[test]
    fn a_burst_is_seen_whole_right_after() {
        let w = Windows(vec![5.0]);
        let mut c = Counters::new(1, &w);
        for i in 0..30 {
            c.add(0, 1, &w, 2002.0 + f64::from(i) * 0.01);
        }
        assert_eq!(c.get(0, 0, &w, 2002.5), 30.0);
        // Into the next interval, the burst fades with the overlap.
        let later = c.get(0, 0, &w, 2006.0);
        assert!(later > 0.0 && later < 30.0, "{later}");
        c.sub(0, &w, 2002.0);
        assert_eq!(c.get(0, 0, &w, 2002.5), 29.0);
    }

    #[test]
    fn grown_counters_start_at_zero() {
        let w = Windows(vec![5.0]);
        let mut c = Counters::new(1, &w);
        c.add(0, 3, &w, 10.0);
        c.grow(2);
        assert_eq!(c.counters(), 3);
        assert_eq!(c.get(2, 0, &w, 10.0), 0.0);
        c.add(2, 1, &w, 10.0);
        assert_eq!(c.get(2, 0, &w, 10.0), 1.0);
        assert_eq!(c.get(0, 0, &w, 10.0), 3.0);
    }
}
