//! The IP layer as Zeek's IP analyzer (`src/packet_analysis/protocol/ip/IP.cc`)
//! and `IP_Hdr` (`src/IP.h`) see it: header checks in Zeek's order, the
//! IPv6 extension-header chain, and Zeek's notion of total and payload length.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{Ipv4HeaderSlice, Ipv6HeaderSlice};

use super::weird::Weird;

pub const PROTO_HOPOPTS: u8 = 0;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_IPIP: u8 = 4;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_IPV6: u8 = 41;
pub const PROTO_ROUTING: u8 = 43;
pub const PROTO_FRAGMENT: u8 = 44;
pub const PROTO_GRE: u8 = 47;
pub const PROTO_ESP: u8 = 50;
pub const PROTO_AH: u8 = 51;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_NONE: u8 = 59;
pub const PROTO_DSTOPTS: u8 = 60;
pub const PROTO_MOBILITY: u8 = 135;

/// Fragmentation fields of a datagram that is a fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragInfo {
    pub id: u32,
    /// Offset in bytes.
    pub offset: u32,
    pub more: bool,
    pub dont_fragment: bool,
}

/// A parsed IP header with the lengths Zeek derives from it.
#[derive(Clone, Copy, Debug)]
pub struct IpPacket<'a> {
    pub version: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Protocol of the payload (after the IPv6 extension chain).
    pub proto: u8,
    /// Type of the last header of the IPv6 chain (ESP/mobility stop analysis).
    pub last_header: u8,
    /// Header length including IPv6 extension headers.
    pub hdr_len: usize,
    /// Zeek's `TotalLen()`: IPv4 total length, IPv6 payload length + 40.
    /// Zero for IPv4 with a zeroed length field (segmentation offload).
    pub total_len: u32,
    /// Zeek's `PayloadLen()` (0 when the IPv4 length field is 0).
    pub payload_len: u32,
    pub ttl: u8,
    pub flow_label: u32,
    pub frag: Option<FragInfo>,
    /// The captured datagram, from the IP header on.
    pub data: &'a [u8],
    /// Captured transport bytes: after the header, cut to `payload_len`
    /// when that is non-zero (so Ethernet padding never counts).
    pub payload: &'a [u8],
}

impl IpPacket<'_> {
    pub fn is_v4(&self) -> bool {
        self.version == 4
    }

    /// The IPv4 header bytes (for its checksum).
    pub fn header(&self) -> &[u8] {
        &self.data[..self.hdr_len.min(self.data.len())]
    }
}

/// What parsing decided about a datagram.
#[derive(Debug)]
pub enum IpOutcome<'a> {
    /// Ready for the transport layer (or for reassembly if `frag` is set).
    Packet(IpPacket<'a>),
    /// Dropped with a named weird.
    Drop(Weird),
    /// Nothing more to analyse, but nothing wrong (ESP payload, mobility).
    Stop,
}

struct V6Chain {
    hdr_len: usize,
    next: u8,
    last: u8,
    frag: Option<FragInfo>,
}

/// Walks IPv6 extension headers like `IPv6_Hdr_Chain::Init`: the chain ends
/// at a fragment, ESP or mobility header, at a non-extension protocol, or
/// where a header would run past the captured data.
fn v6_chain(data: &[u8]) -> V6Chain {
    let mut off = 0usize;
    let mut cur = PROTO_IPV6;
    let mut next = data[6];
    let mut total = 40usize;
    off += 40;
    let mut frag = None;
    let is_ext = |t: u8| {
        matches!(
            t,
            PROTO_HOPOPTS
                | PROTO_ROUTING
                | PROTO_DSTOPTS
                | PROTO_FRAGMENT
                | PROTO_AH
                | PROTO_ESP
                | PROTO_MOBILITY
        )
    };
    while cur != PROTO_FRAGMENT && cur != PROTO_ESP && cur != PROTO_MOBILITY && is_ext(next) {
        let rest = &data[off..];
        if rest.len() < 2 {
            break;
        }
        let t = next;
        let len = match t {
            PROTO_HOPOPTS | PROTO_DSTOPTS | PROTO_ROUTING | PROTO_MOBILITY => {
                8 + 8 * usize::from(rest[1])
            }
            PROTO_FRAGMENT | PROTO_ESP => 8,
            PROTO_AH => 8 + 4 * usize::from(rest[1]),
            _ => 0,
        };
        if len > rest.len() {
            break;
        }
        if t == PROTO_FRAGMENT {
            let offlg = u16::from_be_bytes([rest[2], rest[3]]);
            frag = Some(FragInfo {
                id: u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]),
                offset: u32::from(offlg & 0xfff8),
                more: offlg & 1 != 0,
                dont_fragment: false,
            });
        }
        next = if t == PROTO_ESP { PROTO_NONE } else { rest[0] };
        cur = t;
        off += len;
        total += len;
    }
    V6Chain {
        hdr_len: total,
        next,
        last: cur,
        frag,
    }
}

/// Parses and checks the IP header at the start of `data`.
///
/// `wire_left` is the wire length from the IP header to the end of the
/// frame; `ignore_checksums` is Zeek's `-C`, which also lets a zero IPv4
/// length field fall back to the captured length.
#[inline(always)]
pub fn parse_ip(data: &[u8], wire_left: usize, ignore_checksums: bool) -> IpOutcome<'_> {
    if data.len() < 20 {
        return IpOutcome::Drop(Weird::TruncatedIp);
    }
    let version = data[0] >> 4;
    let (src, dst, hdr_len, total_hdr, payload_len, proto, last, ttl, flow, frag) = match version {
        4 => {
            let Ok(h) = Ipv4HeaderSlice::from_slice(data) else {
                // ihl < 5 or the options run past the capture.
                let ihl = usize::from(data[0] & 0x0f) * 4;
                return IpOutcome::Drop(if ihl < 20 {
                    Weird::Ipv4MinHeaderSize
                } else {
                    Weird::InternallyTruncatedHeader
                });
            };
            let hdr_len = usize::from(h.ihl()) * 4;
            let total = u32::from(h.total_len());
            let payload = if total == 0 {
                0
            } else {
                total.wrapping_sub(hdr_len as u32) & 0xffff
            };
            let off = u32::from(u16::from(h.fragments_offset())) * 8;
            let frag = (h.more_fragments() || off != 0).then_some(FragInfo {
                id: u32::from(h.identification()),
                offset: off,
                more: h.more_fragments(),
                dont_fragment: h.dont_fragment(),
            });
            (
                IpAddr::V4(Ipv4Addr::from(h.source())),
                IpAddr::V4(Ipv4Addr::from(h.destination())),
                hdr_len,
                total,
                payload,
                h.protocol().0,
                PROTO_IPIP, // "raw" for IPv4: never ESP/mobility
                h.ttl(),
                0u32,
                frag,
            )
        }
        6 => {
            if data.len() < 40 {
                return IpOutcome::Drop(Weird::TruncatedIp);
            }
            let Ok(h) = Ipv6HeaderSlice::from_slice(data) else {
                return IpOutcome::Drop(Weird::TruncatedIp);
            };
            let chain = v6_chain(data);
            let total = u32::from(h.payload_length()) + 40;
            let payload = (total.wrapping_sub(chain.hdr_len as u32)) & 0xffff;
            (
                IpAddr::V6(Ipv6Addr::from(h.source())),
                IpAddr::V6(Ipv6Addr::from(h.destination())),
                chain.hdr_len,
                total,
                payload,
                chain.next,
                chain.last,
                h.hop_limit(),
                h.flow_label().value(),
                chain.frag,
            )
        }
        _ => return IpOutcome::Drop(Weird::UnknownIpVersion),
    };

    let mut total_len = total_hdr as usize;
    if total_len == 0 {
        if !ignore_checksums {
            return IpOutcome::Drop(Weird::IpHdrLenZero);
        }
        total_len = data.len();
    }
    if wire_left < total_len {
        return IpOutcome::Drop(Weird::TruncatedIpLen);
    }
    if hdr_len > total_len {
        return IpOutcome::Drop(Weird::InvalidIpHeaderSize);
    }
    if hdr_len > data.len() {
        return IpOutcome::Drop(Weird::InternallyTruncatedHeader);
    }
    if version == 6 && hdr_len < 40 {
        return IpOutcome::Drop(Weird::Ipv6MinHeaderSize);
    }
    let mut payload = &data[hdr_len..];
    if payload_len != 0 && payload.len() > payload_len as usize {
        payload = &payload[..payload_len as usize];
    }
    IpOutcome::Packet(IpPacket {
        version,
        src,
        dst,
        proto,
        last_header: last,
        hdr_len,
        total_len: total_hdr,
        payload_len,
        ttl,
        flow_label: flow,
        frag,
        data,
        payload,
    })
}

/// The result of Zeek's `IP::ParsePacket`, used by tunnel decapsulation to
/// vet an inner packet before handing it on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InnerCheck {
    Ok,
    BadProtocol,
    CaplenTooSmall,
    CaplenTooLarge,
}

/// Checks that `data` holds exactly one IP packet of the expected version
/// (`proto` is 4/IPPROTO_IPIP or 41/IPPROTO_IPV6).
pub fn check_inner_ip(data: &[u8], proto: u8) -> InnerCheck {
    let total = if proto == PROTO_IPV6 {
        if data.len() < 40 {
            return InnerCheck::CaplenTooSmall;
        }
        if data[0] & 0xf0 != 0x60 {
            return InnerCheck::BadProtocol;
        }
        usize::from(u16::from_be_bytes([data[4], data[5]])) + 40
    } else if proto == PROTO_IPIP {
        if data.len() < 20 {
            return InnerCheck::BadProtocol;
        }
        if data[0] >> 4 != 4 {
            return InnerCheck::BadProtocol;
        }
        usize::from(u16::from_be_bytes([data[2], data[3]]))
    } else {
        return InnerCheck::BadProtocol;
    };
    match data.len().cmp(&total) {
        std::cmp::Ordering::Equal => InnerCheck::Ok,
        std::cmp::Ordering::Less => InnerCheck::CaplenTooSmall,
        std::cmp::Ordering::Greater => InnerCheck::CaplenTooLarge,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(total: u16, proto: u8, extra: usize) -> Vec<u8> {
        let mut h = vec![
            0x45, 0, 0, 0, 0, 1, 0, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h.resize(usize::from(total) + extra, 0);
        h
    }

    #[test]
    fn padding_is_not_payload() {
        let p = v4(40, PROTO_TCP, 6);
        match parse_ip(&p, p.len(), true) {
            IpOutcome::Packet(ip) => {
                assert_eq!(ip.payload.len(), 20);
                assert_eq!(ip.total_len, 40);
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn wire_shorter_than_total_is_truncated() {
        let p = v4(60, PROTO_TCP, 0);
        assert!(matches!(
            parse_ip(&p, 50, true),
            IpOutcome::Drop(Weird::TruncatedIpLen)
        ));
    }

    #[test]
    fn zero_length_needs_ignore_checksums() {
        let p = v4(0, PROTO_TCP, 40);
        assert!(matches!(
            parse_ip(&p, 40, false),
            IpOutcome::Drop(Weird::IpHdrLenZero)
        ));
        assert!(matches!(parse_ip(&p, 40, true), IpOutcome::Packet(_)));
    }

    #[test]
    fn inner_check_lengths() {
        let p = v4(40, PROTO_UDP, 0);
        assert_eq!(check_inner_ip(&p, PROTO_IPIP), InnerCheck::Ok);
        assert_eq!(
            check_inner_ip(&p[..39], PROTO_IPIP),
            InnerCheck::CaplenTooSmall
        );
        assert_eq!(check_inner_ip(&p, PROTO_IPV6), InnerCheck::BadProtocol);
    }
}
