//! Timer requests from connection state machines. Zeek keeps per-connection
//! timers in one priority queue ordered by packet time; osprey does the
//! same (see the engine), and a state machine asks for a timer by pushing
//! a [`TimerReq`]. Cancelling is done by bumping a generation counter, so
//! stale timers are recognised and skipped when they come due.

/// What a timer does when it fires (Zeek's `TIMER_CONN_INACTIVITY`,
/// `TIMER_TCP_EXPIRE`, `TIMER_TCP_ATTEMPT`, `TIMER_CONN_DELETE`).
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
