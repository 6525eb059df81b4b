//! The Internet checksum (RFC 1071), for IP headers and the TCP/UDP/ICMP
//! pseudo-header sums Zeek verifies unless `-C` is given.
//!
//! The one's-complement sum does not depend on byte order (RFC 1071
//! §2(B)), so words are summed in native order, 32 bits at a time into
//! 64-bit accumulators that cannot overflow for any packet; the compiler
//! vectorises the loop. A sum that verifies is 0xffff in either order.

use std::net::IpAddr;

/// Sum of `data` as native-order 16-bit words (an odd last byte is the
/// high-order byte of a zero-padded word), not yet folded.
pub fn sum_native(data: &[u8]) -> u64 {
    let mut acc = [0u64; 4];
    let mut blocks = data.chunks_exact(16);
    for b in &mut blocks {
        for (i, a) in acc.iter_mut().enumerate() {
            let w = [b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]];
            *a += u64::from(u32::from_ne_bytes(w));
        }
    }
    let mut sum = acc[0] + acc[1] + acc[2] + acc[3];
    let rest = blocks.remainder();
    let mut words = rest.chunks_exact(2);
    for w in &mut words {
        sum += u64::from(u16::from_ne_bytes([w[0], w[1]]));
    }
    if let [b] = words.remainder() {
        sum += u64::from(u16::from_ne_bytes([*b, 0]));
    }
    sum
}

/// Folds an accumulated sum to 16 bits (end-around carry).
pub fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The checksum field value that would make `data` verify, in network
/// byte order (for tests and for building packets).
pub fn checksum_of(data: &[u8]) -> u16 {
    let folded = fold(sum_native(data));
    let be = if cfg!(target_endian = "little") {
        folded.swap_bytes()
    } else {
        folded
    };
    !be
}

/// True when an IPv4 header's checksum verifies.
pub fn ipv4_header_ok(hdr: &[u8]) -> bool {
    fold(sum_native(hdr)) == 0xffff
}

/// Native-order sum of the TCP/UDP/ICMPv6 pseudo-header.
fn pseudo_header_sum(src: &IpAddr, dst: &IpAddr, proto: u8, len: u32) -> u64 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let (s, d) = (s.octets(), d.octets());
            let l = (len as u16).to_be_bytes();
            let ph = [
                s[0], s[1], s[2], s[3], d[0], d[1], d[2], d[3], 0, proto, l[0], l[1],
            ];
            sum_native(&ph)
        }
        _ => {
            let v6 = |a: &IpAddr| match a {
                IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
                IpAddr::V6(v) => v.octets(),
            };
            let mut ph = [0u8; 40];
            ph[..16].copy_from_slice(&v6(src));
            ph[16..32].copy_from_slice(&v6(dst));
            ph[32..36].copy_from_slice(&len.to_be_bytes());
            ph[39] = proto;
            sum_native(&ph)
        }
    }
}

/// True when a transport segment (header + payload, `seg`) verifies against
/// its pseudo-header; the length used is the segment's own length.
pub fn transport_ok(src: &IpAddr, dst: &IpAddr, proto: u8, seg: &[u8]) -> bool {
    let sum = pseudo_header_sum(src, dst, proto, seg.len() as u32) + sum_native(seg);
    fold(sum) == 0xffff
}

/// ICMPv4 has no pseudo-header.
pub fn icmp4_ok(seg: &[u8]) -> bool {
    fold(sum_native(seg)) == 0xffff
}

/// Whether the outermost transport checksum of a packet verifies, worked
/// out ahead of time (by the capture thread) so that the connection engine
/// can skip summing the payload. `Unknown` when the packet is not a plain
/// single IP packet with a complete TCP, UDP or ICMP segment: the engine
/// then checks for itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChecksumHint {
    #[default]
    Unknown,
    Good,
    Bad,
}

/// Computes the [`ChecksumHint`] of a captured frame exactly as the engine
/// would check its outermost transport header (tcp/TCP.cc, udp/UDP.cc,
/// icmp/ICMP.cc): over the IP payload length, only when all of it was
/// captured; a zero IPv4 UDP checksum means "none" and verifies.
pub fn outer_transport_hint(
    link: crate::packet::LinkType,
    frame: &[u8],
    wire_len: usize,
) -> ChecksumHint {
    super::prepare::prepare(link, frame, wire_len, true).hint
}

/// [`outer_transport_hint`] for the IP packet `data` (from its header on,
/// with `wire_left` bytes on the wire).
pub fn ip_transport_hint(data: &[u8], wire_left: usize) -> ChecksumHint {
    ip_hints(data, wire_left).1
}

/// The verdicts on an IP packet's own header checksum (IPv4 only) and on
/// its transport checksum, as the engine would reach them.
pub fn ip_hints(data: &[u8], wire_left: usize) -> (ChecksumHint, ChecksumHint) {
    use super::ip::{parse_ip, IpOutcome, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
    let unknown = (ChecksumHint::Unknown, ChecksumHint::Unknown);
    let IpOutcome::Packet(ip) = parse_ip(data, wire_left, false) else {
        return unknown;
    };
    let header = if !ip.is_v4() {
        ChecksumHint::Unknown
    } else if ipv4_header_ok(ip.header()) {
        ChecksumHint::Good
    } else {
        // The engine drops the packet on this; its transport is moot.
        return (ChecksumHint::Bad, ChecksumHint::Unknown);
    };
    if ip.frag.is_some() {
        return (header, ChecksumHint::Unknown);
    }
    let remaining = ip.payload.len();
    let len = if ip.payload_len == 0 {
        remaining
    } else {
        ip.payload_len as usize
    };
    if remaining < len {
        return (header, ChecksumHint::Unknown);
    }
    let seg = &ip.payload[..len];
    let ok = match ip.proto {
        PROTO_TCP if seg.len() >= 20 => transport_ok(&ip.src, &ip.dst, PROTO_TCP, seg),
        PROTO_UDP if seg.len() >= 8 => {
            (ip.is_v4() && seg[6] == 0 && seg[7] == 0)
                || transport_ok(&ip.src, &ip.dst, PROTO_UDP, seg)
        }
        PROTO_ICMP if seg.len() >= 8 => icmp4_ok(seg),
        PROTO_ICMPV6 if seg.len() >= 8 => transport_ok(&ip.src, &ip.dst, PROTO_ICMPV6, seg),
        _ => return (header, ChecksumHint::Unknown),
    };
    (
        header,
        if ok {
            ChecksumHint::Good
        } else {
            ChecksumHint::Bad
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward big-endian reference sum.
    fn reference(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for c in data.chunks(2) {
            s += u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(!checksum_of(&data), 0xddf2);
    }

    #[test]
    fn matches_reference_for_all_lengths() {
        for n in 0..200usize {
            let data: Vec<u8> = (0..n).map(|i| (i * 131 + 7) as u8).collect();
            assert_eq!(!checksum_of(&data), reference(&data), "len {n}");
        }
    }

    #[test]
    fn a_filled_in_checksum_verifies() {
        let src: IpAddr = "192.0.2.1".parse().unwrap();
        let dst: IpAddr = "198.51.100.7".parse().unwrap();
        let mut seg = vec![
            0x12, 0x34, 0x00, 0x35, 0x00, 0x0d, 0x00, 0x00, b'h', b'e', b'l', b'l', b'o',
        ];
        let ph = pseudo_header_sum(&src, &dst, 17, seg.len() as u32);
        let folded = fold(ph + sum_native(&seg));
        let be = if cfg!(target_endian = "little") {
            folded.swap_bytes()
        } else {
            folded
        };
        seg[6..8].copy_from_slice(&(!be).to_be_bytes());
        assert!(transport_ok(&src, &dst, 17, &seg));
        seg[9] ^= 1;
        assert!(!transport_ok(&src, &dst, 17, &seg));
    }
}
