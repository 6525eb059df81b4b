//! The host:port pairs a source touched recently, for distinct counts.
//!
//! Scan detection rests on distinct counts (Zeek's scan policy and
//! bro-simple-scan count distinct host:port pairs of failed attempts), and
//! a threshold on them must be exact: one refused connection retried a
//! hundred times is one target, not a hundred. The set keeps the `cap`
//! most recently touched targets. That is exact for every threshold up to
//! `cap`: if fewer than `cap` distinct targets were touched in a window,
//! all of them are held; if more were, the `cap` most recent are all in
//! the window and the count reads `cap`. Rules are checked at load never
//! to ask for more than the cap.
//!
//! An entry is 16 bytes: a 32-bit hash of the host (a collision can only
//! merge two hosts, undercounting by one), port, protocol, and the last
//! touch and last failed touch as seconds after the set's base time.

use std::net::IpAddr;

use smallvec::SmallVec;

#[derive(Clone, Copy, Debug)]
struct Target {
    host: u32,
    port: u16,
    proto: u8,
    last: f32,
    /// `f32::NEG_INFINITY` when no attempt at it failed.
    last_failed: f32,
}

/// What to count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distinct {
    Targets,
    Hosts,
    Ports,
}

/// The recent targets of one source.
#[derive(Clone, Debug)]
pub struct RecentTargets {
    base: f64,
    items: Vec<Target>,
}

/// A host's 32-bit tag for the set. A keyed hash would add nothing: the
/// set belongs to one source, and a source choosing colliding hosts only
/// lowers its own count.
pub fn host_tag(a: IpAddr) -> u32 {
    match a.to_canonical() {
        IpAddr::V4(v) => u32::from(v),
        IpAddr::V6(v) => {
            let x = u128::from(v);
            let h = (x as u64) ^ ((x >> 64) as u64).rotate_left(29);
            let h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            (h >> 32) as u32
        }
    }
}

impl RecentTargets {
    pub fn new(base: f64) -> RecentTargets {
        RecentTargets {
            base,
            items: Vec::new(),
        }
    }

    fn rel(&self, t: f64) -> f32 {
        (t - self.base) as f32
    }

    /// Notes a touch of `host:port/proto` at `t`, failed or not. At `cap`
    /// entries the least recently touched one makes room.
    pub fn touch(&mut self, host: u32, port: u16, proto: u8, t: f64, failed: bool, cap: usize) {
        let now = self.rel(t);
        if let Some(e) = self
            .items
            .iter_mut()
            .find(|e| e.host == host && e.port == port && e.proto == proto)
        {
            e.last = e.last.max(now);
            if failed {
                e.last_failed = e.last_failed.max(now);
            }
            return;
        }
        let entry = Target {
            host,
            port,
            proto,
            last: now,
            last_failed: if failed { now } else { f32::NEG_INFINITY },
        };
        if self.items.len() < cap.max(1) {
            self.items.push(entry);
            return;
        }
        if let Some(oldest) = self
            .items
            .iter_mut()
            .min_by(|a, b| a.last.total_cmp(&b.last))
        {
            if oldest.last <= now {
                *oldest = entry;
            }
        }
    }

    /// A connection first seen failing turned out to succeed (an attempt
    /// answered late): the target is no longer a failed one.
    pub fn unfail(&mut self, host: u32, port: u16, proto: u8) {
        if let Some(e) = self
            .items
            .iter_mut()
            .find(|e| e.host == host && e.port == port && e.proto == proto)
        {
            e.last_failed = f32::NEG_INFINITY;
        }
    }

    /// Distinct targets, hosts or ports touched (or failed, with
    /// `failed_only`) at or after `since`.
    pub fn count(&self, what: Distinct, since: f64, failed_only: bool) -> usize {
        let since = self.rel(since);
        let live = self.items.iter().filter(|e| {
            let t = if failed_only { e.last_failed } else { e.last };
            t >= since
        });
        match what {
            Distinct::Targets => live.count(),
            Distinct::Hosts => {
                let mut v: SmallVec<[u32; 64]> = live.map(|e| e.host).collect();
                v.sort_unstable();
                v.dedup();
                v.len()
            }
            Distinct::Ports => {
                let mut v: SmallVec<[u32; 64]> = live
                    .map(|e| (u32::from(e.proto) << 16) | u32::from(e.port))
                    .collect();
                v.sort_unstable();
                v.dedup();
                v.len()
            }
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.items.capacity() * std::mem::size_of::<Target>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retried_target_counts_once() {
        let mut s = RecentTargets::new(100.0);
        for i in 0..50 {
            s.touch(7, 80, 6, 100.0 + f64::from(i), true, 32);
        }
        assert_eq!(s.count(Distinct::Targets, 0.0, true), 1);
        assert_eq!(s.count(Distinct::Ports, 0.0, false), 1);
    }

    #[test]
    fn counts_are_exact_up_to_the_cap_and_read_the_cap_beyond() {
        let mut s = RecentTargets::new(0.0);
        for p in 0..20u16 {
            s.touch(1, p, 6, f64::from(p), true, 32);
        }
        assert_eq!(s.count(Distinct::Targets, 0.0, true), 20);
        // Only those within the window.
        assert_eq!(s.count(Distinct::Targets, 10.0, true), 10);
        for p in 20..1000u16 {
            s.touch(1, p, 6, f64::from(p), true, 32);
        }
        assert_eq!(s.count(Distinct::Targets, 0.0, true), 32);
        assert_eq!(s.count(Distinct::Hosts, 0.0, true), 1);
        assert_eq!(s.count(Distinct::Ports, 990.0, true), 10);
        assert_eq!(s.heap_bytes(), s.items.capacity() * 16);
        assert!(s.items.len() <= 32);
    }

    #[test]
    fn successes_are_not_failures() {
        let mut s = RecentTargets::new(0.0);
        s.touch(1, 80, 6, 1.0, false, 8);
        s.touch(2, 80, 6, 1.0, true, 8);
        assert_eq!(s.count(Distinct::Targets, 0.0, false), 2);
        assert_eq!(s.count(Distinct::Hosts, 0.0, true), 1);
        s.unfail(2, 80, 6);
        assert_eq!(s.count(Distinct::Targets, 0.0, true), 0);
    }

    #[test]
    fn v6_hosts_get_distinct_tags() {
        let a: IpAddr = "fd00::1".parse().unwrap();
        let b: IpAddr = "fd00::2".parse().unwrap();
        assert_ne!(host_tag(a), host_tag(b));
        let m: IpAddr = "::ffff:198.18.0.1".parse().unwrap();
        assert_eq!(host_tag(m), host_tag("198.18.0.1".parse().unwrap()));
    }
}
