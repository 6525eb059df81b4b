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

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// What a timer does when it fires (Zeek's `TIMER_CONN_INACTIVITY`,
/// `TIMER_TCP_EXPIRE`, `TIMER_TCP_ATTEMPT`, `TIMER_CONN_DELETE`,
/// `TIMER_DNS_EXPIRE`).
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

/// Timers filed by whole second of their due time.
#[derive(Default)]
pub struct TimerQueue {
    buckets: HashMap<i64, Vec<TimerEntry>, ahash::RandomState>,
    /// Bucket numbers in due order; each bucket appears once.
    order: BinaryHeap<Reverse<i64>>,
    /// The bucket being fired, sorted so that the next timer is last.
    due: Vec<TimerEntry>,
    /// Bucket number of `due`.
    due_bucket: Option<i64>,
    spare: Vec<Vec<TimerEntry>>,
    seq: u64,
    len: usize,
}

fn bucket_of(at: f64) -> i64 {
    if at.is_finite() {
        at.floor() as i64
    } else if at > 0.0 {
        i64::MAX
    } else {
        i64::MIN
    }
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
        let b = bucket_of(r.at);
        if self.due_bucket == Some(b) {
            // Keep `due` sorted descending by (at, seq): newest timers at
            // the same time go before older ones' position from the end.
            let pos = self.due.partition_point(|x| (x.at, x.seq) > (e.at, e.seq));
            self.due.insert(pos, e);
            return;
        }
        let spare = &mut self.spare;
        let order = &mut self.order;
        self.buckets
            .entry(b)
            .or_insert_with(|| {
                order.push(Reverse(b));
                spare.pop().unwrap_or_default()
            })
            .push(e);
    }

    /// The next timer due at or before `now`, in (time, insertion) order.
    pub fn pop_due(&mut self, now: f64) -> Option<TimerEntry> {
        loop {
            if let Some(last) = self.due.last() {
                // `due` may hold an earlier bucket than a newly filed one.
                let earlier_bucket = self.order.peek().map(|r| r.0);
                let due_b = self.due_bucket.unwrap_or(i64::MIN);
                if earlier_bucket.is_none_or(|b| b >= due_b) {
                    if last.at <= now {
                        self.len -= 1;
                        return self.due.pop();
                    }
                    return None;
                }
                // A timer was filed into an earlier bucket: put the current
                // one back and take the earlier first.
                let back = std::mem::take(&mut self.due);
                self.buckets.insert(due_b, back);
                self.order.push(Reverse(due_b));
                self.due_bucket = None;
                continue;
            }
            if let Some(b) = self.due_bucket.take() {
                let _ = b;
            }
            let Reverse(b) = *self.order.peek()?;
            if b > bucket_of(now) {
                return None;
            }
            self.order.pop();
            let Some(mut v) = self.buckets.remove(&b) else {
                continue;
            };
            v.sort_unstable_by(|x, y| {
                (y.at, y.seq)
                    .partial_cmp(&(x.at, x.seq))
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            let old = std::mem::replace(&mut self.due, v);
            if old.capacity() > 0 && self.spare.len() < 64 {
                self.spare.push(old);
            }
            self.due_bucket = Some(b);
        }
    }

    pub fn clear(&mut self) {
        self.buckets.clear();
        self.order.clear();
        self.due.clear();
        self.due_bucket = None;
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
}
