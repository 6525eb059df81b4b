//! The Internet checksum (RFC 1071), for IP headers and the TCP/UDP/ICMP
//! pseudo-header sums Zeek verifies unless `-C` is given.

use std::net::IpAddr;

/// One's-complement sum of `data` folded to 16 bits, added to `initial`.
/// Sums 8 bytes at a time into a u64; the carries fold back at the end.
pub fn ones_sum(data: &[u8], initial: u64) -> u64 {
    let mut sum = initial;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let (s, carry) = sum.overflowing_add(v);
        sum = s + u64::from(carry);
    }
    let rest = chunks.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        let (s, carry) = sum.overflowing_add(u64::from(u16::from_be_bytes([p[0], p[1]])));
        sum = s + u64::from(carry);
    }
    if let [b] = pairs.remainder() {
        let (s, carry) = sum.overflowing_add(u64::from(*b) << 8);
        sum = s + u64::from(carry);
    }
    sum
}

/// Folds a 64-bit one's-complement accumulator to 16 bits.
pub fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// True when an IPv4 header's checksum verifies.
pub fn ipv4_header_ok(hdr: &[u8]) -> bool {
    fold(ones_sum(hdr, 0)) == 0xffff
}

/// Sum of the TCP/UDP/ICMPv6 pseudo-header.
pub fn pseudo_header_sum(src: &IpAddr, dst: &IpAddr, proto: u8, len: u32) -> u64 {
    let mut sum = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ones_sum(&s.octets(), ones_sum(&d.octets(), 0)),
        (IpAddr::V6(s), IpAddr::V6(d)) => ones_sum(&s.octets(), ones_sum(&d.octets(), 0)),
        (s, d) => {
            let (s, d) = (to_v6(s), to_v6(d));
            ones_sum(&s, ones_sum(&d, 0))
        }
    };
    sum += u64::from(proto);
    sum += u64::from(len);
    sum
}

fn to_v6(a: &IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
        IpAddr::V6(v) => v.octets(),
    }
}

/// True when a transport segment (header + payload, `seg`) verifies against
/// its pseudo-header; the length used is the segment's own length.
pub fn transport_ok(src: &IpAddr, dst: &IpAddr, proto: u8, seg: &[u8]) -> bool {
    let sum = pseudo_header_sum(src, dst, proto, seg.len() as u32);
    fold(ones_sum(seg, sum)) == 0xffff
}

/// ICMPv4 has no pseudo-header.
pub fn icmp4_ok(seg: &[u8]) -> bool {
    fold(ones_sum(seg, 0)) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(ones_sum(&data, 0)), 0xddf2);
    }

    #[test]
    fn odd_lengths_pad_with_zero() {
        assert_eq!(fold(ones_sum(&[0x12], 0)), 0x1200);
        assert_eq!(fold(ones_sum(&[0x12, 0x34, 0x56], 0)), 0x1234 + 0x5600);
    }

    #[test]
    fn wide_sum_matches_narrow_sum() {
        let data: Vec<u8> = (0..1001u32).map(|i| (i * 7 + 3) as u8).collect();
        let narrow = data.chunks(2).fold(0u32, |s, c| {
            let v = u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
            let s = s + v;
            (s & 0xffff) + (s >> 16)
        });
        assert_eq!(u32::from(fold(ones_sum(&data, 0))), narrow);
    }
}
