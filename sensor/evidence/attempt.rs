//! What one connection record says about its originator: a failed
//! attempt, an answer that reports someone else's failure, or neither.
//!
//! Failed attempts are what scans are made of (Zeek's scan policy counts
//! the histories `S`, `SW`, `Sr`, `SWr`; osprey counts the same and their
//! relatives): a TCP connection on which no payload moved and whose
//! originator never proved its address — unanswered (`S0`), refused
//! (`REJ`), reset before anything was said (`RSTO`/`RSTR`/`RSTOS0`
//! without data), or probes without a SYN (`OTH`: ACK, FIN, Xmas scans);
//! a UDP datagram nobody answered; an ICMP echo request without a reply.
//! Multicast and broadcast destinations never answer by design and are
//! not failures.
//!
//! ICMP destination-unreachable messages are answers to somebody's
//! attempt: the record's responder is the host whose packet could not be
//! delivered, so the failure is counted for it, not for the host that
//! sent the error.

use std::net::IpAddr;

use crate::conn::{ConnRecord, ConnState, Proto};

/// What a record contributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// A connection by the originator; `failed` as above.
    Conn { failed: bool },
    /// An ICMP error telling `to` (the record's responder) that its packet
    /// was not delivered.
    Unreachable { to: IpAddr },
}

/// A destination that is not one host: nobody is expected to answer.
pub fn is_group(a: IpAddr) -> bool {
    match a.to_canonical() {
        IpAddr::V4(v) => v.is_multicast() || v.is_broadcast() || v.octets()[3] == 255,
        IpAddr::V6(v) => v.is_multicast(),
    }
}

/// ICMP destination unreachable: type 3 (v4) or 1 (v6). The record's
/// `orig_p` is the type.
fn is_unreachable(r: &ConnRecord) -> bool {
    r.proto == Proto::Icmp
        && match r.orig_h {
            IpAddr::V4(_) => r.orig_p == 3,
            IpAddr::V6(_) => r.orig_p == 1,
        }
}

/// Echo request: 8 (v4), 128 (v6).
fn is_echo_request(r: &ConnRecord) -> bool {
    match r.orig_h {
        IpAddr::V4(_) => r.orig_p == 8,
        IpAddr::V6(_) => r.orig_p == 128,
    }
}

pub fn classify(r: &ConnRecord) -> Attempt {
    if is_unreachable(r) {
        return Attempt::Unreachable { to: r.resp_h };
    }
    if is_group(r.resp_h) {
        return Attempt::Conn { failed: false };
    }
    let quiet = r.orig_bytes.unwrap_or(0) == 0 && r.resp_bytes.unwrap_or(0) == 0;
    let failed = match r.proto {
        Proto::Tcp => {
            !r.orig_verified
                && quiet
                && matches!(
                    r.conn_state,
                    ConnState::S0
                        | ConnState::REJ
                        | ConnState::RSTO
                        | ConnState::RSTR
                        | ConnState::RSTOS0
                        | ConnState::RSTRH
                        | ConnState::SH
                        | ConnState::SHR
                        | ConnState::OTH
                )
        }
        Proto::Udp => r.resp_pkts == 0,
        Proto::Icmp => is_echo_request(r) && r.resp_pkts == 0,
        Proto::Unknown => false,
    };
    Attempt::Conn { failed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::record::History;

    fn rec(proto: Proto, state: ConnState, history: &str) -> ConnRecord {
        let mut r = ConnRecord::skeleton(
            "198.18.0.9".parse().unwrap(),
            40_000,
            "198.18.0.1".parse().unwrap(),
            80,
            proto,
        );
        r.conn_state = state;
        r.history = History::from(history);
        r
    }

    #[test]
    fn refused_unanswered_and_reset_probes_fail() {
        for (st, h) in [
            (ConnState::S0, "S"),
            (ConnState::REJ, "Sr"),
            (ConnState::RSTO, "ShR"),
            (ConnState::RSTOS0, "SR"),
            (ConnState::OTH, "Fr"),
        ] {
            assert_eq!(
                classify(&rec(Proto::Tcp, st, h)),
                Attempt::Conn { failed: true },
                "{h}"
            );
        }
    }

    #[test]
    fn a_verified_or_talkative_connection_does_not_fail() {
        let mut r = rec(Proto::Tcp, ConnState::RSTO, "ShAR");
        r.orig_verified = true;
        assert_eq!(classify(&r), Attempt::Conn { failed: false });
        let mut r = rec(Proto::Tcp, ConnState::RSTR, "ShADdr");
        r.orig_bytes = Some(10);
        assert_eq!(classify(&r), Attempt::Conn { failed: false });
        assert_eq!(
            classify(&rec(Proto::Tcp, ConnState::SF, "ShAFf")),
            Attempt::Conn { failed: false }
        );
    }

    #[test]
    fn udp_icmp_and_groups() {
        assert_eq!(
            classify(&rec(Proto::Udp, ConnState::S0, "D")),
            Attempt::Conn { failed: true }
        );
        let mut answered = rec(Proto::Udp, ConnState::SF, "Dd");
        answered.resp_pkts = 1;
        assert_eq!(classify(&answered), Attempt::Conn { failed: false });
        let mut mdns = rec(Proto::Udp, ConnState::S0, "D");
        mdns.resp_h = "224.0.0.251".parse().unwrap();
        assert_eq!(classify(&mdns), Attempt::Conn { failed: false });
        let mut ping = rec(Proto::Icmp, ConnState::OTH, "");
        ping.orig_p = 8;
        assert_eq!(classify(&ping), Attempt::Conn { failed: true });
        let mut unreach = rec(Proto::Icmp, ConnState::OTH, "");
        unreach.orig_p = 3;
        assert_eq!(
            classify(&unreach),
            Attempt::Unreachable {
                to: "198.18.0.1".parse().unwrap()
            }
        );
    }
}
