//! Records as the conn engine emits them, for the evidence and decision
//! tests: one TCP connection in a given state, with the history, packets
//! and (for `SF`) the verified exchange with data that state implies.

use crate::conn::record::History;
use crate::conn::{ConnRecord, ConnState, Proto, Uid};

/// Connection `n` from `src:sport` to `dst:port` at `t`, ending in `state`.
pub(crate) fn tcp(
    n: u64,
    (src, sport): (&str, u16),
    (dst, port): (&str, u16),
    state: ConnState,
    t: f64,
) -> ConnRecord {
    let mut r = ConnRecord::skeleton(
        src.parse().expect("a test address"),
        sport,
        dst.parse().expect("a test address"),
        port,
        Proto::Tcp,
    );
    r.uid = Uid([n, 7]);
    r.ts = t;
    r.conn_state = state;
    r.orig_pkts = 1;
    r.history = History::from(match state {
        ConnState::REJ => "Sr",
        ConnState::S0 => "S",
        ConnState::RSTO => "ShR",
        _ => "ShADadFf",
    });
    if state == ConnState::SF {
        r.orig_verified = true;
        r.orig_bytes = Some(200);
        r.resp_bytes = Some(300);
        r.duration = Some(0.05);
        r.orig_pkts = 6;
    }
    r
}
