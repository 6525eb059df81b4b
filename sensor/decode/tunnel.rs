//! Tunnel headers, parsed as Zeek's packet analyzers parse them
//! (`src/packet_analysis/protocol/{gre,vxlan,geneve,teredo,ayiya,gtpv1}`).
//! These functions only look at bytes; which connection a tunnel belongs
//! to, nesting limits and confirmation are the connection engine's job.

use super::ip::{check_inner_ip, InnerCheck, PROTO_IPIP, PROTO_IPV6};
use super::weird::Weird;

/// Encapsulation types, as in Zeek's `Tunnel::Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TunnelKind {
    Ip,
    Gre,
    Vxlan,
    Geneve,
    Teredo,
    Ayiya,
    Gtpv1,
}

impl TunnelKind {
    /// The analyzer name that enters `service` when the tunnel confirms.
    pub fn service(self) -> &'static str {
        match self {
            TunnelKind::Ip => "ip",
            TunnelKind::Gre => "gre",
            TunnelKind::Vxlan => "vxlan",
            TunnelKind::Geneve => "geneve",
            TunnelKind::Teredo => "teredo",
            TunnelKind::Ayiya => "ayiya",
            TunnelKind::Gtpv1 => "gtpv1",
        }
    }
}

/// How the payload of a tunnel starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload<'a> {
    /// An IP packet (Zeek's DLT_RAW), possibly garbage: the IP layer checks.
    Ip(&'a [u8]),
    /// An IP packet already vetted to be exactly one datagram
    /// (`IP::ParsePacket` said OK).
    CheckedIp(&'a [u8]),
    Ethernet(&'a [u8]),
    Ieee80211(&'a [u8]),
    /// Not a packet Zeek analyses further (Geneve carrying ARP, ...).
    NotIp,
}

/// Outcome of parsing a tunnel header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decap<'a> {
    /// Decapsulated; `confirm` says whether the tunnel analyzer confirms
    /// the protocol on this packet (before any delay rule).
    Inner { payload: Payload<'a>, confirm: bool },
    /// The bytes are not this tunnel: an analyzer violation.
    Violation,
    /// Valid, but nothing to decapsulate (AYIYA control messages, GTP
    /// signalling, empty payloads): counted, not a violation.
    Nothing(Option<Weird>),
    /// Dropped with a weird (not a violation).
    Drop(Weird),
}

fn gre_header_len(flags: u16) -> usize {
    let mut len = 4;
    if flags & 0x8000 != 0 {
        len += 4;
    }
    if flags & 0x2000 != 0 {
        len += 4;
    }
    if flags & 0x1000 != 0 {
        len += 4;
    }
    if flags & 0x0080 != 0 {
        len += 4;
    }
    len
}

/// A GRE header (`GRE.cc`), including ERSPAN I/II/III, transparent
/// Ethernet bridging, Aruba WLAN encapsulation and PPTP (enhanced GRE).
/// Returns the payload and whether it must pass `IP::ParsePacket` checks
/// (PPTP does; plain GRE goes straight to the IP layer).
pub fn gre(data: &[u8]) -> Decap<'_> {
    if data.len() < 4 {
        return Decap::Drop(Weird::TruncatedGre);
    }
    let flags_ver = u16::from_be_bytes([data[0], data[1]]);
    let proto = u16::from_be_bytes([data[2], data[3]]);
    let version = flags_ver & 0x0007;
    let gre_len = gre_header_len(flags_ver);
    let len = data.len();
    if version > 1 {
        return Decap::Drop(Weird::UnknownGreVersion);
    }
    let pptp_len = if version == 1 { 4 } else { 0 };
    let mut eth_len = 0;
    let mut erspan_len = 0;
    let mut kind = 0u8; // 0 raw IP, 1 ethernet, 2 802.11
    if version == 0 {
        match proto {
            0x6558 => {
                if len > gre_len + 14 {
                    eth_len = 14;
                    kind = 1;
                } else {
                    return Decap::Drop(Weird::TruncatedGre);
                }
            }
            0x88be => {
                if len > gre_len + 14 {
                    eth_len = 14;
                    kind = 1;
                    if flags_ver & 0x1000 != 0 {
                        // ERSPAN type II: 8-byte header after the sequence.
                        erspan_len += 8;
                        if len < gre_len + eth_len + erspan_len {
                            return Decap::Drop(Weird::TruncatedGre);
                        }
                    }
                } else {
                    return Decap::Drop(Weird::TruncatedGre);
                }
            }
            0x22eb => {
                if len > gre_len + 14 + 12 {
                    erspan_len = 12;
                    eth_len = 14;
                    kind = 1;
                    let f = data[gre_len + erspan_len - 1];
                    if f & 0x01 != 0 {
                        if len > gre_len + erspan_len + 8 + eth_len {
                            erspan_len += 8;
                        } else {
                            return Decap::Drop(Weird::TruncatedGre);
                        }
                    }
                } else {
                    return Decap::Drop(Weird::TruncatedGre);
                }
            }
            p if ((p & 0x8200) == 0x8200 && (p & 0x0F) == 0)
                || ((p & 0x8300) == 0x8300 && (p & 0x0F) == 0 && p <= 0x8370)
                || p == 0x9000 =>
            {
                if len <= gre_len {
                    return Decap::Drop(Weird::TruncatedGre);
                }
                kind = 2;
            }
            _ => {}
        }
    } else if proto != 0x880b {
        return Decap::Drop(Weird::EgreProtocolType);
    }
    if flags_ver & 0x4000 != 0 {
        return Decap::Drop(Weird::GreRouting);
    }
    if flags_ver & 0x0078 != 0 {
        return Decap::Drop(Weird::UnknownGreFlags);
    }
    if len < gre_len + pptp_len + eth_len + erspan_len {
        return Decap::Drop(Weird::TruncatedGre);
    }
    let start = gre_len + pptp_len + erspan_len;
    let inner = &data[start..];
    if version == 1 {
        let pptp_proto = u16::from_be_bytes([data[gre_len + 2], data[gre_len + 3]]);
        let ipp = match pptp_proto {
            0x0021 => PROTO_IPIP,
            0x0057 => PROTO_IPV6,
            _ => return Decap::Drop(Weird::NonIpPacketInEncap),
        };
        return checked_ip(inner, ipp);
    }
    let payload = match kind {
        1 => Payload::Ethernet(inner),
        2 => Payload::Ieee80211(inner),
        _ => Payload::Ip(inner),
    };
    Decap::Inner {
        payload,
        confirm: false,
    }
}

/// IP-in-IP / 6in4 / PPTP inner packets go through `IP::ParsePacket`.
pub fn checked_ip(inner: &[u8], proto: u8) -> Decap<'_> {
    match check_inner_ip(inner, proto) {
        InnerCheck::Ok => Decap::Inner {
            payload: Payload::CheckedIp(inner),
            confirm: false,
        },
        InnerCheck::BadProtocol => Decap::Drop(Weird::InvalidInnerIpVersion),
        InnerCheck::CaplenTooSmall => Decap::Drop(Weird::TruncatedInnerIp),
        InnerCheck::CaplenTooLarge => Decap::Drop(Weird::InnerIpPayloadLengthMismatch),
    }
}

/// VXLAN (`VXLAN.cc`): 8-byte header with the I flag, then Ethernet.
pub fn vxlan(data: &[u8]) -> Decap<'_> {
    if data.len() < 8 || data[0] & 0x08 == 0 {
        return Decap::Violation;
    }
    let inner = &data[8..];
    if inner.is_empty() {
        // Confirmed, but empty: Zeek confirms before this check.
        return Decap::Inner {
            payload: Payload::NotIp,
            confirm: true,
        };
    }
    Decap::Inner {
        payload: Payload::Ethernet(inner),
        confirm: true,
    }
}

/// Geneve (`Geneve.cc`): version 0, options, then the protocol in the header.
pub fn geneve(data: &[u8]) -> Decap<'_> {
    if data.len() < 8 {
        return Decap::Violation;
    }
    if data[0] >> 6 != 0 {
        return Decap::Drop(Weird::TunnelViolation);
    }
    let hdr = 8 + usize::from(data[0] & 0x3f) * 4;
    if hdr > data.len() {
        return Decap::Violation;
    }
    let next = u16::from_be_bytes([data[2], data[3]]);
    let inner = &data[hdr..];
    let payload = if inner.is_empty() {
        Payload::NotIp
    } else {
        match next {
            0x6558 => Payload::Ethernet(inner),
            0x0800 | 0x86DD => Payload::Ip(inner),
            _ => Payload::NotIp,
        }
    };
    Decap::Inner {
        payload,
        confirm: true,
    }
}

/// Teredo (`Teredo.cc`): optional authentication and origin indication,
/// then an IPv6 packet whose length must fit the datagram (bubbles may
/// carry trailing bytes).
pub fn teredo(data: &[u8]) -> Decap<'_> {
    let mut d = data;
    let mut found_origin = false;
    let mut found_auth = false;
    loop {
        if d.len() < 2 {
            return Decap::Violation;
        }
        let tag = u16::from_be_bytes([d[0], d[1]]);
        if tag == 0 {
            if found_origin || d.len() < 8 {
                return Decap::Violation;
            }
            found_origin = true;
            d = &d[8..];
        } else if tag == 1 {
            if found_origin || found_auth || d.len() < 4 {
                return Decap::Violation;
            }
            let tot = 4 + usize::from(d[2]) + usize::from(d[3]) + 8 + 1;
            if d.len() < tot {
                return Decap::Violation;
            }
            found_auth = true;
            d = &d[tot..];
        } else if (tag & 0xf000) >> 12 == 6 {
            if d.len() < 40 {
                return Decap::Violation;
            }
            break;
        } else {
            return Decap::Violation;
        }
    }
    match check_inner_ip(d, PROTO_IPV6) {
        InnerCheck::Ok => {}
        InnerCheck::CaplenTooLarge => {
            let next = d[6];
            let plen = u16::from_be_bytes([d[4], d[5]]);
            if !(next == 59 && plen == 0) {
                return Decap::Violation;
            }
        }
        InnerCheck::CaplenTooSmall | InnerCheck::BadProtocol => return Decap::Violation,
    }
    Decap::Inner {
        payload: Payload::Ip(d),
        confirm: true,
    }
}

/// Zeek's Teredo protocol detection on non-Teredo ports
/// (`TeredoAnalyzer::DetectProtocol`).
pub fn teredo_detect(data: &[u8]) -> bool {
    let len = data.len();
    if len < 40
        || (len > 8 && (data[0] >> 4) != 6 && (data[0] != 0 || (data[1] != 0 && data[1] != 1)))
    {
        return false;
    }
    // The old DPD signature, anchored at the start (Zeek's `Match` accepts
    // as soon as a prefix matches): an IPv6 header whose source or
    // destination is a Teredo (2001:0::/32) address. `.` does not match a
    // newline in Zeek patterns.
    if (0x60..=0x6f).contains(&data[0]) {
        let teredo = [0x20, 0x01, 0x00, 0x00];
        let no_newline = |s: &[u8]| !s.contains(&b'\n');
        if data[8..12] == teredo && no_newline(&data[1..8]) && no_newline(&data[12..40]) {
            return true;
        }
        if data[24..28] == teredo && no_newline(&data[1..24]) && no_newline(&data[28..40]) {
            return true;
        }
    }
    let mut d = data;
    let mut val = u16::from(d[1]);
    if val == 1 {
        let cid = usize::from(d[2]);
        let auth = usize::from(d[3]);
        if d.len() < 13 + cid + auth {
            return false;
        }
        d = &d[13 + cid + auth..];
        if d.len() < 40 {
            return false;
        }
        val = u16::from_be_bytes([d[0], d[1]]);
    }
    if val == 0 {
        if d.len() < 8 {
            return false;
        }
        d = &d[8..];
        if d.len() < 40 {
            return false;
        }
        return d[0] >> 4 == 6;
    }
    false
}

/// AYIYA (`AYIYA.cc`).
pub fn ayiya(data: &[u8]) -> Decap<'_> {
    if data.len() < 8 {
        return Decap::Violation;
    }
    let identity_len = 1usize << (data[0] >> 4);
    let signature_len = usize::from(data[1] >> 4) * 4;
    let hdr = 8 + identity_len + signature_len;
    if hdr > data.len() {
        return Decap::Violation;
    }
    if data[2] & 0x0f != 1 {
        return Decap::Nothing(None);
    }
    let next = data[3];
    let inner = &data[hdr..];
    if inner.is_empty() {
        return Decap::Inner {
            payload: Payload::NotIp,
            confirm: true,
        };
    }
    let payload = match next {
        PROTO_IPIP | PROTO_IPV6 => Payload::Ip(inner),
        _ => Payload::NotIp,
    };
    Decap::Inner {
        payload,
        confirm: true,
    }
}

/// Zeek's AYIYA protocol detection.
pub fn ayiya_detect(data: &[u8]) -> bool {
    data.len() >= 3 && data[1] == 0x52 && data[2] == 0x11
}

/// GTPv1-U (`GTPv1.cc`, `gtpv1-analyzer.pac`): only G-PDUs (type 255)
/// carry packets; `in_gtp` is true when the packet is already inside GTP.
pub fn gtpv1(data: &[u8], in_gtp: bool) -> Decap<'_> {
    if data.len() < 8 {
        return Decap::Violation;
    }
    let flags = data[0];
    let msg_type = data[1];
    let mut hdr = 8usize;
    let has_opt = flags & 0x07 != 0;
    if has_opt {
        if data.len() < 12 {
            return Decap::Violation;
        }
        hdr += 4;
    }
    if flags & 0x04 != 0 {
        // Extension headers (binpac parses at least one when E is set):
        // length in 4-byte units, the next type in the last byte.
        loop {
            let Some(&units) = data.get(hdr) else {
                return Decap::Violation;
            };
            let l = usize::from(units) * 4;
            if l < 2 || data.len() < hdr + l {
                return Decap::Violation;
            }
            let next_type = data[hdr + l - 1];
            hdr += l;
            if next_type == 0 {
                break;
            }
        }
    }
    if in_gtp {
        return Decap::Violation;
    }
    if (flags & 0xE0) >> 5 != 1 {
        return Decap::Violation;
    }
    if flags & 0x10 == 0 {
        return Decap::Nothing(None);
    }
    if msg_type != 255 {
        return Decap::Nothing(None);
    }
    let inner = &data[hdr..];
    if inner.len() < 20 {
        return Decap::Violation;
    }
    let v = inner[0] >> 4;
    if v != 4 && v != 6 {
        return Decap::Violation;
    }
    let proto = if v == 6 { PROTO_IPV6 } else { PROTO_IPIP };
    match check_inner_ip(inner, proto) {
        InnerCheck::Ok => Decap::Inner {
            payload: Payload::CheckedIp(inner),
            confirm: true,
        },
        _ => Decap::Violation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gre_plain_ip() {
        let mut d = vec![0x00, 0x00, 0x08, 0x00];
        d.extend_from_slice(&[0x45; 20]);
        assert!(matches!(gre(&d), Decap::Inner { payload: Payload::Ip(p), .. } if p.len() == 20));
    }

    #[test]
    fn vxlan_needs_i_flag() {
        assert_eq!(vxlan(&[0u8; 30]), Decap::Violation);
        let mut d = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
        d.extend_from_slice(&[0u8; 20]);
        assert!(matches!(
            vxlan(&d),
            Decap::Inner {
                payload: Payload::Ethernet(_),
                confirm: true
            }
        ));
    }

    #[test]
    fn nothing_panics_on_short_input() {
        for n in 0..60 {
            let d: Vec<u8> = (0..n).map(|i| (i * 37) as u8).collect();
            let _ = (
                gre(&d),
                vxlan(&d),
                geneve(&d),
                teredo(&d),
                ayiya(&d),
                gtpv1(&d, false),
            );
            let _ = (teredo_detect(&d), ayiya_detect(&d));
        }
    }
}
