//! Community ID v1 (<https://github.com/corelight/community-id-spec>), the
//! flow hash Zeek's `policy/protocols/conn/community-id-logging` adds to
//! conn.log, so that osprey's records join with Suricata's and Zeek's.
//! Follows Zeek's `community_id_v1` (`src/communityid.bif`).

use std::net::IpAddr;

use base64::Engine as _;
use sha1::{Digest, Sha1};

use crate::conn::record::{ConnRecord, Proto};

/// ICMP types with a request/reply counterpart (the rest are one-way and
/// are hashed in the direction they were seen).
fn icmp_two_way(v4: bool, t: u16) -> bool {
    if v4 {
        matches!(t, 0 | 8 | 9 | 10 | 13 | 14 | 15 | 16 | 17 | 18)
    } else {
        matches!(
            t,
            128 | 129 | 130 | 131 | 133 | 134 | 135 | 136 | 139 | 140 | 144 | 145
        )
    }
}

fn addr_bytes(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

/// Zeek's address order: IPv4 in mapped form, compared as 128-bit numbers.
fn addr_key(a: &IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => 0xffff_0000_0000 | u128::from(u32::from(*v)),
        IpAddr::V6(v) => u128::from(*v),
    }
}

/// The `1:<base64 sha1>` string for a record, with `seed` (default 0).
pub fn community_id(r: &ConnRecord, seed: u16) -> String {
    let v4 = r.orig_h.is_ipv4();
    let (proto, has_ports) = match r.proto {
        Proto::Tcp => (6u8, true),
        Proto::Udp => (17, true),
        Proto::Icmp => (if v4 { 1 } else { 58 }, true),
        Proto::Unknown => {
            let p = r.ip_proto.unwrap_or(0);
            // SCTP carries ports Zeek does not parse; the spec hashes them.
            (p, p == 132)
        }
    };
    let one_way = r.proto == Proto::Icmp && !icmp_two_way(v4, r.orig_p);
    // Zeek compares the ports as stored, in network byte order.
    let (sp, dp) = (r.orig_p.to_be(), r.resp_p.to_be());
    let in_order = one_way || (addr_key(&r.orig_h), sp) < (addr_key(&r.resp_h), dp);
    let (src, dst, sport, dport) = if in_order {
        (&r.orig_h, &r.resp_h, r.orig_p, r.resp_p)
    } else {
        (&r.resp_h, &r.orig_h, r.resp_p, r.orig_p)
    };
    let mut h = Sha1::new();
    h.update(seed.to_be_bytes());
    h.update(addr_bytes(src));
    h.update(addr_bytes(dst));
    h.update([proto, 0]);
    if has_ports {
        h.update(sport.to_be_bytes());
        h.update(dport.to_be_bytes());
    }
    let digest = h.finalize();
    format!(
        "1:{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(o: &str, op: u16, r: &str, rp: u16, proto: Proto) -> ConnRecord {
        let mut c = ConnRecord::skeleton(o.parse().unwrap(), op, r.parse().unwrap(), rp, proto);
        c.ip_proto = Some(6);
        c
    }

    #[test]
    fn matches_zeeks_baseline_and_is_direction_free() {
        // scripts.policy.protocols.conn.community-id-logging (Zeek's baseline).
        let r = rec("141.142.228.5", 59856, "192.150.187.43", 80, Proto::Tcp);
        assert_eq!(community_id(&r, 0), "1:yvyB8h+3dnggTZW0UEITWCst97w=");
        let back = rec("192.150.187.43", 80, "141.142.228.5", 59856, Proto::Tcp);
        assert_eq!(community_id(&back, 0), community_id(&r, 0));
    }

    #[test]
    fn spec_test_vectors() {
        // From the community-id spec's baseline (seed 0).
        let r = rec("128.232.110.120", 34855, "66.35.250.204", 80, Proto::Tcp);
        assert_eq!(community_id(&r, 0), "1:LQU9qZlK+B5F3KDmev6m5PMibrg=");
        let mut icmp = rec("192.168.0.89", 8, "192.168.0.1", 0, Proto::Icmp);
        icmp.ip_proto = Some(1);
        assert_eq!(community_id(&icmp, 0), "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=");
    }
}
