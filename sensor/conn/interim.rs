//! Interim snapshots: when a connection that is still open is worth
//! scoring again. Zeek logs a connection once, when it ends, which can be
//! minutes after an attack began; the live sensor also scores snapshots
//! of open connections. Deciding *when* lives here, apart from the engine,
//! so that the rules can be read (and tested) without packets; the engine
//! only builds the record (the same `record()` that logs final ones) and
//! files the timer this module asks for.
//!
//! A snapshot is only ever taken when something changed since the last
//! one, so a quiet connection costs nothing after its last snapshot, and
//! the engine keeps at most one snapshot timer per connection.

use super::config::InterimConfig;

/// Why a snapshot was taken (index into `EngineStats::interim_by_trigger`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterimTrigger {
    /// `interval` of packet time passed with new packets.
    Periodic = 0,
    /// The responder was still silent `attempt_timeout` after the start.
    Attempt = 1,
    /// A RST was seen: Zeek logs only after `tcp_reset_delay` or
    /// `tcp_connection_linger`.
    Reset = 2,
    /// Both sides sent a FIN: Zeek logs only after `tcp_close_delay`.
    Closed = 3,
}

impl InterimTrigger {
    pub const COUNT: usize = 4;

    /// Names for metrics, in index order.
    pub const NAMES: [&'static str; Self::COUNT] = ["periodic", "attempt", "reset", "closed"];
}

const SEEN_RESET: u8 = 1;
const SEEN_CLOSED: u8 = 2;

/// Per-connection snapshot bookkeeping (16 bytes, inline in the
/// connection so that the per-packet update touches no other memory).
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshots {
    /// Time of the last snapshot (the start time before the first).
    last: f64,
    /// Packets arrived since the last snapshot (the first packet counts,
    /// so that every connection open for `interval` is scored once).
    dirty: bool,
    /// A snapshot timer is queued for this connection.
    armed: bool,
    /// The attempt check is still to be made.
    attempt_pending: bool,
    /// Closing states already snapshotted (`SEEN_*`).
    seen: u8,
}

/// What a snapshot timer decided.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimerOutcome {
    pub snapshot: Option<InterimTrigger>,
    /// When to check again, if anything can still be due.
    pub rearm_at: Option<f64>,
}

impl Snapshots {
    /// State for a connection that starts at `start`, and the time of its
    /// first snapshot timer.
    pub fn new(start: f64, cfg: &InterimConfig) -> (Self, f64) {
        let s = Snapshots {
            last: start,
            dirty: true,
            armed: true,
            attempt_pending: true,
            seen: 0,
        };
        let first = (start + cfg.interval).min(start + cfg.attempt_timeout);
        (s, first)
    }

    /// A packet reached the connection at `now`. Returns when to queue a
    /// snapshot timer, if none is queued: timers stop once a connection
    /// goes quiet, so that idle connections cost nothing.
    #[inline]
    pub fn on_packet(&mut self, now: f64, cfg: &InterimConfig) -> Option<f64> {
        self.dirty = true;
        if self.armed {
            return None;
        }
        self.armed = true;
        // After a long quiet spell the snapshot is due at once (at the
        // next packet time), not `interval` later: resumed activity is
        // exactly what should be scored promptly.
        Some((self.last + cfg.interval).max(now))
    }

    /// The snapshot timer fired at `now`. `start` is the connection's
    /// start; `responder_silent` whether the responder has sent nothing.
    pub fn on_timer(
        &mut self,
        now: f64,
        start: f64,
        responder_silent: bool,
        cfg: &InterimConfig,
    ) -> TimerOutcome {
        let attempt_at = start + cfg.attempt_timeout;
        let mut snapshot = None;
        if self.attempt_pending && now >= attempt_at {
            self.attempt_pending = false;
            if responder_silent && self.dirty {
                snapshot = Some(InterimTrigger::Attempt);
            }
        }
        if snapshot.is_none() && self.dirty && now >= self.last + cfg.interval {
            snapshot = Some(InterimTrigger::Periodic);
        }
        if snapshot.is_some() {
            self.taken(now);
        }
        let periodic = self.dirty.then_some(self.last + cfg.interval);
        let attempt = self.attempt_pending.then_some(attempt_at);
        let rearm_at = match (periodic, attempt) {
            (Some(p), Some(a)) => Some(p.min(a)),
            (p, a) => p.or(a),
        };
        self.armed = rearm_at.is_some();
        TimerOutcome { snapshot, rearm_at }
    }

    /// A TCP connection is in a state Zeek logs only after a delay (RST
    /// seen, or both FINs). Returns the trigger if this state was not
    /// snapshotted before, and counts the snapshot as taken at `now`.
    pub fn on_closing(&mut self, reset: bool, now: f64) -> Option<InterimTrigger> {
        let (bit, trigger) = if reset {
            (SEEN_RESET, InterimTrigger::Reset)
        } else {
            (SEEN_CLOSED, InterimTrigger::Closed)
        };
        if self.seen & bit != 0 {
            return None;
        }
        self.seen |= bit;
        self.taken(now);
        Some(trigger)
    }

    fn taken(&mut self, now: f64) {
        self.last = now;
        self.dirty = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(interval: f64, attempt_timeout: f64) -> InterimConfig {
        InterimConfig {
            interval,
            attempt_timeout,
        }
    }

    #[test]
    fn first_timer_is_the_earlier_deadline() {
        assert_eq!(Snapshots::new(100.0, &cfg(5.0, 2.0)).1, 102.0);
        assert_eq!(Snapshots::new(100.0, &cfg(5.0, 9.0)).1, 105.0);
    }

    #[test]
    fn quiet_connection_disarms_and_resumes() {
        let c = cfg(5.0, 5.0);
        let (mut s, at) = Snapshots::new(0.0, &c);
        let o = s.on_timer(at, 0.0, false, &c);
        assert_eq!(o.snapshot, Some(InterimTrigger::Periodic));
        assert_eq!(o.rearm_at, None, "nothing new: no timer kept");
        // Activity 20 s later: due at once, not 5 s later.
        assert_eq!(s.on_packet(25.0, &c), Some(25.0));
        assert_eq!(s.on_packet(25.5, &c), None, "already armed");
        let o = s.on_timer(25.5, 0.0, false, &c);
        assert_eq!(o.snapshot, Some(InterimTrigger::Periodic));
    }

    #[test]
    fn attempt_fires_once_and_only_when_silent() {
        let c = cfg(5.0, 2.0);
        let (mut s, at) = Snapshots::new(0.0, &c);
        let o = s.on_timer(at, 0.0, true, &c);
        assert_eq!(o.snapshot, Some(InterimTrigger::Attempt));
        assert_eq!(o.rearm_at, None);
        let (mut s, at) = Snapshots::new(0.0, &c);
        let o = s.on_timer(at, 0.0, false, &c);
        assert_eq!(o.snapshot, None, "answered: no attempt snapshot");
        assert_eq!(o.rearm_at, Some(5.0), "the periodic one is still due");
    }

    #[test]
    fn closing_states_snapshot_once_each() {
        let (mut s, _) = Snapshots::new(0.0, &cfg(5.0, 5.0));
        assert_eq!(s.on_closing(false, 1.0), Some(InterimTrigger::Closed));
        assert_eq!(s.on_closing(false, 1.5), None);
        assert_eq!(s.on_closing(true, 2.0), Some(InterimTrigger::Reset));
        assert_eq!(s.on_closing(true, 2.5), None);
    }
}
