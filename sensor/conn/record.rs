//! One row of Zeek's conn.log (`Conn::Info` in
//! `scripts/base/protocols/conn/main.zeek`), field for field.

use std::fmt;
use std::net::IpAddr;

use smallvec::SmallVec;

/// A connection's unique id, Zeek-style: 96 random bits printed in base62
/// after a `C`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Uid(pub [u64; 2]);

impl Uid {
    /// Zeek's `UID::Base62("C")`: each 64-bit word in base62, most
    /// significant digit first, concatenated (src/UID.cc, util::uitoa_n).
    fn write_base62(n: u64, out: &mut [u8; 12]) -> usize {
        const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        const P5: u64 = 62 * 62 * 62 * 62 * 62;
        // Two divisions on 64 bits, then five-digit groups in 32-bit
        // arithmetic: all 11 digits, most significant first.
        let mut all = [0u8; 11];
        all[0] = DIGITS[(n / (P5 * P5)) as usize];
        let rest = n % (P5 * P5);
        for (g, mut v) in [(rest / P5) as u32, (rest % P5) as u32]
            .into_iter()
            .enumerate()
        {
            for k in (0..5).rev() {
                all[1 + 5 * g + k] = DIGITS[(v % 62) as usize];
                v /= 62;
            }
        }
        // Zeek prints no leading zeros (and "0" for zero).
        let skip = all[..10].iter().take_while(|&&d| d == b'0').count();
        let len = 11 - skip;
        out[..len].copy_from_slice(&all[skip..]);
        len
    }
}

impl Uid {
    /// Appends the printed form to `out` (the hot path of log writing).
    pub fn push_to(&self, out: &mut Vec<u8>) {
        // Assembled on the stack and appended at once: pushing char by
        // char was a tenth of the log writer's time.
        let mut line = [0u8; 25];
        line[0] = b'C';
        let mut len = 1;
        let mut buf = [0u8; 12];
        for w in self.0 {
            let n = Uid::write_base62(w, &mut buf);
            line[len..len + n].copy_from_slice(&buf[..n]);
            len += n;
        }
        out.extend_from_slice(&line[..len]);
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 12];
        f.write_str("C")?;
        for w in self.0 {
            let n = Uid::write_base62(w, &mut buf);
            // Base62 digits are ASCII.
            f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

/// conn.log's `history`: state letters, always ASCII, kept inline because
/// nearly every history is short.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct History(SmallVec<[u8; 24]>);

impl History {
    pub fn from_bytes(b: &[u8]) -> Self {
        History(b.iter().copied().filter(u8::is_ascii).collect())
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for History {
    fn from(s: &str) -> Self {
        History::from_bytes(s.as_bytes())
    }
}

/// `proto` column: the transport as Zeek names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Unknown,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
            Proto::Unknown => "unknown_transport",
        }
    }
}

/// `conn_state` column (see `conn_state()` in conn/main.zeek).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConnState {
    /// Connection attempt seen, no reply.
    S0,
    /// Connection established, not terminated.
    S1,
    /// Normal establishment and termination.
    SF,
    /// Connection attempt rejected.
    REJ,
    /// Established, originator attempted close, no reply from responder.
    S2,
    /// Established, responder attempted close, no reply from originator.
    S3,
    /// Established, originator aborted (sent a RST).
    RSTO,
    /// Responder sent a RST.
    RSTR,
    /// Originator sent a SYN followed by a RST, never saw a SYN-ACK.
    RSTOS0,
    /// Responder sent a SYN-ACK followed by a RST, never saw a SYN.
    RSTRH,
    /// Originator sent a SYN followed by a FIN, never saw a SYN-ACK.
    SH,
    /// Responder sent a SYN-ACK followed by a FIN, never saw a SYN.
    SHR,
    /// No SYN seen, just midstream traffic.
    OTH,
}

impl ConnState {
    pub const ALL: [ConnState; 13] = [
        ConnState::S0,
        ConnState::S1,
        ConnState::SF,
        ConnState::REJ,
        ConnState::S2,
        ConnState::S3,
        ConnState::RSTO,
        ConnState::RSTR,
        ConnState::RSTOS0,
        ConnState::RSTRH,
        ConnState::SH,
        ConnState::SHR,
        ConnState::OTH,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::S0 => "S0",
            ConnState::S1 => "S1",
            ConnState::SF => "SF",
            ConnState::REJ => "REJ",
            ConnState::S2 => "S2",
            ConnState::S3 => "S3",
            ConnState::RSTO => "RSTO",
            ConnState::RSTR => "RSTR",
            ConnState::RSTOS0 => "RSTOS0",
            ConnState::RSTRH => "RSTRH",
            ConnState::SH => "SH",
            ConnState::SHR => "SHR",
            ConnState::OTH => "OTH",
        }
    }
}

/// One conn.log row.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnRecord {
    /// Time of the first packet.
    pub ts: f64,
    /// Unique identifier of the connection.
    pub uid: Uid,
    /// The originator's address.
    pub orig_h: IpAddr,
    /// The originator's port (ICMP: the type).
    pub orig_p: u16,
    /// The responder's address.
    pub resp_h: IpAddr,
    /// The responder's port (ICMP: the counterpart type, or the code).
    pub resp_p: u16,
    /// The transport layer protocol of the connection.
    pub proto: Proto,
    /// Application protocols confirmed on the connection, in the order they
    /// were confirmed.
    pub service: SmallVec<[&'static str; 2]>,
    /// How long the connection lasted (unset when zero).
    pub duration: Option<f64>,
    /// Payload bytes the originator sent (TCP: from sequence numbers).
    pub orig_bytes: Option<u64>,
    /// Payload bytes the responder sent.
    pub resp_bytes: Option<u64>,
    pub conn_state: ConnState,
    /// Whether the originator is in `Site::local_nets` (unset when empty).
    pub local_orig: Option<bool>,
    /// Whether the responder is in `Site::local_nets`.
    pub local_resp: Option<bool>,
    /// Bytes missed in content gaps (packet loss).
    pub missed_bytes: u64,
    /// State history letters; empty is logged as unset.
    pub history: History,
    /// Packets the originator sent.
    pub orig_pkts: u64,
    /// IP-level bytes the originator sent (from the IP total length).
    pub orig_ip_bytes: u64,
    /// Packets the responder sent.
    pub resp_pkts: u64,
    /// IP-level bytes the responder sent.
    pub resp_ip_bytes: u64,
    /// uids of the encapsulating connections over this connection's life.
    pub tunnel_parents: SmallVec<[Uid; 1]>,
    /// IP protocol number from the header.
    pub ip_proto: Option<u8>,
    /// First-packet L2 source of the originator (policy mac-logging).
    pub orig_l2_addr: Option<[u8; 6]>,
    /// First-packet L2 destination, i.e. the responder side.
    pub resp_l2_addr: Option<[u8; 6]>,
    /// Outer 802.1Q VLAN id of the first packet (policy vlan-logging).
    pub vlan: Option<u16>,
    /// Inner 802.1Q VLAN id of the first packet.
    pub inner_vlan: Option<u16>,
    /// A snapshot of a connection still open (never written to conn.log).
    pub interim: bool,
    /// Whether the originator proved its address: it acknowledged what the
    /// responder sent, or the responder acknowledged its data
    /// (`conn/verify.rs`). Not a conn.log column; TCP only.
    pub orig_verified: bool,
    /// Replies refusing the originator's credentials (HTTP 401/407, FTP
    /// 530). Not a conn.log column.
    pub auth_failures: u16,
}

impl ConnRecord {
    /// A record with only its endpoints set and every count at zero: the
    /// starting point for tests that need one field or two.
    pub fn skeleton(
        orig_h: IpAddr,
        orig_p: u16,
        resp_h: IpAddr,
        resp_p: u16,
        proto: Proto,
    ) -> ConnRecord {
        ConnRecord {
            ts: 0.0,
            uid: Uid::default(),
            orig_h,
            orig_p,
            resp_h,
            resp_p,
            proto,
            service: SmallVec::new(),
            duration: None,
            orig_bytes: None,
            resp_bytes: None,
            conn_state: ConnState::OTH,
            local_orig: None,
            local_resp: None,
            missed_bytes: 0,
            history: History::default(),
            orig_pkts: 0,
            orig_ip_bytes: 0,
            resp_pkts: 0,
            resp_ip_bytes: 0,
            tunnel_parents: SmallVec::new(),
            ip_proto: None,
            orig_l2_addr: None,
            resp_l2_addr: None,
            vlan: None,
            inner_vlan: None,
            interim: false,
            orig_verified: false,
            auth_failures: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The digit-at-a-time form of `util::uitoa_n`.
    fn reference(mut n: u64) -> String {
        const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut out = Vec::new();
        loop {
            out.push(DIGITS[(n % 62) as usize]);
            n /= 62;
            if n == 0 {
                break;
            }
        }
        out.reverse();
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn base62_matches_the_reference() {
        let p5 = 62u64.pow(5);
        let mut values = vec![0, 1, 61, 62, 63, p5 - 1, p5, p5 * p5 - 1, p5 * p5, u64::MAX];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x >> (x % 64));
        }
        for v in values {
            let mut buf = [0u8; 12];
            let n = Uid::write_base62(v, &mut buf);
            assert_eq!(
                std::str::from_utf8(&buf[..n]).ok(),
                Some(reference(v).as_str()),
                "{v}"
            );
        }
        let mut line = Vec::new();
        Uid([0, 61]).push_to(&mut line);
        assert_eq!(line, b"C0z");
    }
}
