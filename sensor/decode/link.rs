//! Link layers down to the IP header, following Zeek's packet analyzers
//! (`src/packet_analysis/protocol/{ethernet,vlan,mpls,pbb,vntag,ppp,pppoe,
//! null,fddi,ieee802_11,ieee802_11_radio,linux_sll,linux_sll2,nflog,llc,snap}`)
//! and their dispatch tables (`scripts/base/packet-protocols/*/main.zeek`).
//!
//! Limits: MPLS stacks and VLAN nesting are bounded by the frame length;
//! an 802.11 A-MSDU yields at most [`MAX_FRAMES`] inner packets.

use smallvec::SmallVec;

use super::weird::Weird;
use crate::packet::LinkType;

/// At most this many IP packets are taken out of one frame (A-MSDU).
pub const MAX_FRAMES: usize = 16;

/// Layer-2 facts Zeek keeps with a packet (for mac- and vlan-logging).
///
/// Every field is one machine word, written whole: the struct is built
/// field by field and then copied along with each packet, and a copy that
/// reads across several narrower earlier writes (as `Option<[u8; 6]>`
/// fields made it) stalls on store forwarding, which cost more than the
/// rest of Ethernet decoding together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L2Info {
    /// MAC addresses in the low 48 bits (big-endian order); 0 = absent.
    src: u64,
    dst: u64,
    /// `0x1_0000 | id` when present, 0 when absent.
    vlan: u32,
    inner_vlan: u32,
}

const VLAN_PRESENT: u32 = 0x1_0000;

fn mac_word(m: Option<[u8; 6]>) -> u64 {
    m.map_or(0, |m| {
        u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
    })
}

fn word_mac(w: u64) -> Option<[u8; 6]> {
    let b = w.to_be_bytes();
    (w != 0).then_some([b[2], b[3], b[4], b[5], b[6], b[7]])
}

fn vlan_word(v: Option<u16>) -> u32 {
    v.map_or(0, |id| VLAN_PRESENT | u32::from(id))
}

fn word_vlan(w: u32) -> Option<u16> {
    (w & VLAN_PRESENT != 0).then_some(w as u16)
}

impl L2Info {
    pub fn new(
        src: Option<[u8; 6]>,
        dst: Option<[u8; 6]>,
        vlan: Option<u16>,
        inner_vlan: Option<u16>,
    ) -> Self {
        L2Info {
            src: mac_word(src),
            dst: mac_word(dst),
            vlan: vlan_word(vlan),
            inner_vlan: vlan_word(inner_vlan),
        }
    }

    /// Source MAC address; absent (like Zeek's) when all zeros.
    pub fn src(&self) -> Option<[u8; 6]> {
        word_mac(self.src)
    }

    pub fn dst(&self) -> Option<[u8; 6]> {
        word_mac(self.dst)
    }

    /// Outer 802.1Q/802.1ad VLAN id.
    pub fn vlan(&self) -> Option<u16> {
        word_vlan(self.vlan)
    }

    pub fn inner_vlan(&self) -> Option<u16> {
        word_vlan(self.inner_vlan)
    }
}

/// Where an IP packet starts inside the captured frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L3Frame<'a> {
    /// Captured bytes from the IP header on (possibly trimmed by an 802.3
    /// or PPPoE length field).
    pub data: &'a [u8],
    /// Offset of `data` from the start of the frame, so that the wire
    /// length left for the IP packet is `wire_len - offset`.
    pub offset: usize,
}

/// Why link decoding produced no IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkStop {
    /// A non-IP payload Zeek does not turn into connections (ARP, LLC,
    /// 802.11 management frames, encrypted 802.11 data): not an error.
    NotIp,
    Weird(Weird),
}

pub type Frames<'a> = SmallVec<[L3Frame<'a>; 2]>;

/// A MAC address as an [`L2Info`] word; all zeros counts as absent, as in
/// Zeek's conn record.
fn mac(b: &[u8]) -> u64 {
    b.get(..6).map_or(0, |m| {
        u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
    })
}

struct Walker<'a, 'o> {
    frame: &'a [u8],
    l2: &'o mut L2Info,
    out: &'o mut Frames<'a>,
}

impl<'a> Walker<'a, '_> {
    fn off(&self, data: &[u8]) -> usize {
        // `data` is always a sub-slice of `frame`.
        data.as_ptr() as usize - self.frame.as_ptr() as usize
    }

    fn ip(&mut self, data: &'a [u8]) -> Result<(), LinkStop> {
        if self.out.len() < MAX_FRAMES {
            let offset = self.off(data);
            self.out.push(L3Frame { data, offset });
        }
        Ok(())
    }

    fn root(&mut self, link: LinkType, data: &'a [u8]) -> Result<(), LinkStop> {
        match link {
            LinkType::ETHERNET => self.ethernet(data),
            LinkType::FDDI => self.fddi(data),
            LinkType::IEEE802_11 => self.ieee802_11(data),
            LinkType::IEEE802_11_RADIO => self.radiotap(data),
            LinkType::LINUX_SLL => self.linux_sll(data),
            LinkType::LINUX_SLL2 => self.linux_sll2(data),
            LinkType::NFLOG => self.nflog(data),
            LinkType::NULL | LinkType::LOOP => self.null(data),
            LinkType::PPP => self.ppp(data),
            LinkType::PPP_SERIAL => self.ppp_serial(data),
            // Zeek's root falls back to the IP analyzer for every other
            // link type (DLT_RAW and friends).
            _ => self.ip(data),
        }
    }

    /// Ethernet (and Cisco FabricPath in front of it).
    fn ethernet(&mut self, data: &'a [u8]) -> Result<(), LinkStop> {
        if data.len() <= 16 {
            return Err(LinkStop::Weird(Weird::TruncatedEthernetFrame));
        }
        let mut data = data;
        if data[12] == 0x89 && data[13] == 0x03 {
            if data.len() <= 16 + 14 {
                return Err(LinkStop::Weird(Weird::TruncatedLinkHeaderCfp));
            }
            data = &data[16..];
        }
        let proto = u16::from_be_bytes([data[12], data[13]]);
        self.l2.dst = mac(&data[0..6]);
        self.l2.src = mac(&data[6..12]);
        if proto >= 1536 {
            return self.ethertype(EtherTable::Ethernet, proto, &data[14..]);
        }
        if proto <= 1500 {
            return self.ieee802_3(&data[14..], proto, Weird::TruncatedEthernetFrame);
        }
        Err(LinkStop::Weird(Weird::UndefinedEtherType))
    }

    /// 802.3 frames with a length field: SNAP, Novell raw, or plain LLC.
    fn ieee802_3(&mut self, data: &'a [u8], length: u16, short: Weird) -> Result<(), LinkStop> {
        if data.len() < 2 {
            return Err(LinkStop::Weird(short));
        }
        let data = &data[..data.len().min(usize::from(length))];
        if data.len() >= 2 && data[0] == 0xAA && data[1] == 0xAA {
            self.snap(data)
        } else {
            // Novell raw 802.3 and LLC have no analyzer that leads to IP.
            if data.len() >= 2 && !(data[0] == 0xFF && data[1] == 0xFF) && llc_len(data).is_none() {
                return Err(LinkStop::Weird(Weird::TruncatedLlcHeader));
            }
            Err(LinkStop::NotIp)
        }
    }

    fn snap(&mut self, data: &'a [u8]) -> Result<(), LinkStop> {
        let Some(llc) = llc_len(data) else {
            return Err(LinkStop::Weird(Weird::TruncatedSnapHeader));
        };
        if data.len() < llc + 5 {
            return Err(LinkStop::Weird(Weird::TruncatedSnapHeader));
        }
        let d = &data[llc..];
        let oui = (u32::from(d[0]) << 16) | (u32::from(d[1]) << 8) | u32::from(d[2]);
        let proto = u16::from_be_bytes([d[3], d[4]]);
        // SNAP's table is keyed by OUI<<16|type and only lists OUI 0.
        match (oui, proto) {
            (0, 0x0800) | (0, 0x86DD) => self.ip(&d[5..]),
            _ => Err(LinkStop::NotIp),
        }
    }

    fn ethertype(&mut self, table: EtherTable, proto: u16, data: &'a [u8]) -> Result<(), LinkStop> {
        match (table, proto) {
            (_, 0x0800) | (_, 0x86DD) => self.ip(data),
            (_, 0x0806) | (_, 0x8035) => Err(LinkStop::NotIp),
            (_, 0x8847) => self.mpls(data),
            (_, 0x88E7) => self.pbb(data),
            (_, 0x8100) => self.vlan(data),
            (EtherTable::Ethernet, 0x88A8) | (EtherTable::Ethernet, 0x9100) => self.vlan(data),
            (_, 0x8864) => self.pppoe(data),
            (_, 0x8926) => self.vntag(data),
            _ => Err(LinkStop::Weird(Weird::UnknownL3Protocol)),
        }
    }

    fn vlan(&mut self, data: &'a [u8]) -> Result<(), LinkStop> {
        if data.len() <= 4 {
            return Err(LinkStop::Weird(Weird::TruncatedVlanHeader));
        }
        let id = u16::from_be_bytes([data[0], data[1]]) & 0x0fff;
        if self.l2.vlan == 0 {
            self.l2.vlan = VLAN_PRESENT | u32::from(id);
        } else {
            self.l2.inner_vlan = VLAN_PRESENT | u32::from(id);
        }
        let proto = u16::from_be_bytes([data[2], data[3]]);
        if proto >= 1536 {
            return self.ethertype(EtherTable::Vlan, proto, &data[4..]);
        }
        if proto <= 1500 {
            return self.ieee802_3(&data[4..], proto, Weird::TruncatedVlanHeader);
        }
        Err(LinkStop::Weird(Weird::UndefinedVlanProtocol))
    }

    fn mpls(&mut self, mut data: &'a [u8]) -> Result<(), LinkStop> {
        loop {
            if data.len() <= 4 {
                return Err(LinkStop::Weird(Weird::TruncatedMplsHeader));
            }
            let bottom = data[2] & 0x01 != 0;
            data = &data[4..];
            if bottom {
                break;
            }
        }
        // RFC 3032 does not say what follows the stack; Zeek assumes IP.
        self.ip(data)
    }

    fn pbb(&mut self, data: &'a [u8]) -> Result<(), LinkStop> {
        if data.len() <= 18 {
            return Err(LinkStop::Weird(Weird::TruncatedPbbHeader));
        }
        self.ethernet(&data[4..])
    }

    fn vntag(&mut self, data: &'a [u8]) -> Result<(), LinkStop> {
        if data.len() <= 6 {
            return Err(LinkStop::Weird(Weird::TruncatedVntagHeader));
        }
        let proto = u16::from_be_bytes([data[4], data[5]]);
        // VN-Tag's table only leads to VLAN.
        match proto {
            0x8100 | 0x88A8 | 0x9100 => self.vlan(&data[6..]),
            _ => Err(LinkStop::Weird(Weird::UnknownL3Protocol)),
        }
    }

    fn pppoe(&mut self, data: &'a [u8]) -> Result<(), LinkStop> {
        if data.len() <= 8 {
            return Err(LinkStop::Weird(Weird::TruncatedPppoeHeader));
        }
        let payload_len = usize::from(u16::from_be_bytes([data[4], data[5]]));
        let proto = u16::from_be_bytes([data[6], data[7]]);
        let n = payload_len.saturating_sub(2).min(data.len() - 8);
        let inner = &data[8..8 + n];
        match proto {
            0x0021 | 0x0057 => self.ip(inner),
            _ => Err(LinkStop::NotIp),
        }
    }

    fn ppp_proto(&mut self, proto: u16, data: &'a [u8]) -> Result<(), LinkStop> {
        match proto {
            0x0021 | 0x0057 => self.ip(data),
            0x0281 => self.mpls(data),
            _ => Err(LinkStop::NotIp),
        }
    }

    fn ppp(&mut self, data: &'a [u8]) -> Result<(), LinkStop> {
        if data.len() <= 2 {
            return Err(LinkStop::Weird(Weird::TruncatedPppHeader));
        }
        if data[0] == 0xff && data[1] == 0x03 {
            if data.len() <= 4 {
                return Err(LinkStop::Weird(Weird::TruncatedPppHeader));
            }
            return self.ppp_proto(u16::from_be_bytes([data[2], data[3]]), &data[4..]);
        }
        self.ppp_proto(u16::from_be_bytes([data[0], data[1]]), &data[2..])
    }

    fn ppp_serial(&mut self, data: &'a [u8]) -> Result<(), LinkStop> {
        if data.len() <= 4 {
            return Err(LinkStop::Weird(Weird::TruncatedPppHeader));
        }
        self.ppp_proto(u16::from_be_bytes([data[2], data[3]]), &data[4..])
    }

    fn null(&mut self, data: &'a [u8]) -> Result<(), LinkStop> {
        if data.len() <= 4 {
            return Err(LinkStop::Weird(Weird::TruncatedNullHeader));
        }
        // The address family is in the capturing host's byte order; Zeek
        // reads it little-endian. 2 = AF_INET, 24/28/30 = AF_INET6 on BSDs.
        let family = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        match family {
            2 | 24 | 28 | 30 => self.ip(&data[4..]),
            _ => Err(LinkStop::Weird(Weird::UnknownL3Protocol)),
        }
    }

    fn fddi(&mut self, data: &'a [u8]) -> Result<(), LinkStop> {
        // FDDI header (13) + LLC/SNAP (8), then Zeek assumes IP.
        if data.len() <= 21 {
            return Err(LinkStop::Weird(Weird::TruncatedFddiHeader));
        }
        self.ip(&data[21..])
    }

    fn linux_sll(&mut self, data: &'a [u8]) -> Result<(), LinkStop> {
        if data.len() <= 16 {
            return Err(LinkStop::Weird(Weird::TruncatedSllHeader));
        }
        self.l2.src = mac(&data[6..12]);
        self.l2.dst = 0;
        let proto = u16::from_be_bytes([data[14], data[15]]);
        self.sll_proto(proto, &data[16..])
    }

    fn linux_sll2(&mut self, data: &'a [u8]) -> Result<(), LinkStop> {
        if data.len() <= 20 {
            return Err(LinkStop::Weird(Weird::TruncatedSllHeader));
        }
        self.l2.src = mac(&data[12..18]);
        self.l2.dst = 0;
        let proto = u16::from_be_bytes([data[0], data[1]]);
        self.sll_proto(proto, &data[20..])
    }

    fn sll_proto(&mut self, proto: u16, data: &'a [u8]) -> Result<(), LinkStop> {
        match proto {
            0x0800 | 0x86DD => self.ip(data),
            _ => Err(LinkStop::NotIp),
        }
    }

    fn nflog(&mut self, data: &'a [u8]) -> Result<(), LinkStop> {
        if data.len() <= 4 {
            return Err(LinkStop::Weird(Weird::TruncatedNflogHeader));
        }
        let family = data[0];
        if data[1] != 0 {
            return Err(LinkStop::Weird(Weird::TruncatedNflogHeader));
        }
        let mut d = &data[4..];
        loop {
            if d.len() <= 4 {
                return Err(LinkStop::Weird(Weird::TruncatedNflogHeader));
            }
            // TLV fields are in the capturing host's byte order; libpcap
            // writes them little-endian on the platforms that matter.
            let tlv_len = usize::from(u16::from_le_bytes([d[0], d[1]]));
            let tlv_type = u16::from_le_bytes([d[2], d[3]]);
            if tlv_type == 9 {
                d = &d[4..];
                break;
            }
            if tlv_len < 4 {
                return Err(LinkStop::Weird(Weird::TruncatedNflogHeader));
            }
            let skip = tlv_len.div_ceil(4) * 4;
            if skip > d.len() {
                return Err(LinkStop::Weird(Weird::TruncatedNflogHeader));
            }
            d = &d[skip..];
        }
        match family {
            2 | 10 => self.ip(d),
            _ => Err(LinkStop::NotIp),
        }
    }

    fn radiotap(&mut self, data: &'a [u8]) -> Result<(), LinkStop> {
        if data.len() <= 3 {
            return Err(LinkStop::Weird(Weird::TruncatedRadiotapHeader));
        }
        let hlen = usize::from(u16::from_le_bytes([data[2], data[3]]));
        if hlen >= data.len() {
            return Err(LinkStop::Weird(Weird::TruncatedRadiotapHeader));
        }
        self.ieee802_11(&data[hlen..])
    }

    fn ieee802_11(&mut self, data: &'a [u8]) -> Result<(), LinkStop> {
        let mut hlen = 24usize;
        if hlen >= data.len() {
            return Err(LinkStop::Weird(Weird::Truncated80211Header));
        }
        let fc = data[0];
        // Only data frames, and only subtypes that carry data.
        if (fc >> 2) & 0x02 == 0 || (fc >> 4) & 0x04 != 0 {
            return Err(LinkStop::NotIp);
        }
        let ds = data[1] & 0x03;
        if ds == 0x03 {
            hlen += 6;
        }
        if hlen >= data.len() {
            return Err(LinkStop::Weird(Weird::Truncated80211Header));
        }
        let mut amsdu = false;
        if (fc >> 4) & 0x08 != 0 {
            amsdu = data[hlen] & 0x80 != 0;
            if data[1] & 0x40 != 0 {
                // Protected (encrypted) frame: nothing to analyse.
                return Err(LinkStop::NotIp);
            }
            hlen += 2;
        }
        if hlen >= data.len() {
            return Err(LinkStop::Weird(Weird::Truncated80211Header));
        }
        let (src, dst) = match ds {
            0x00 => (10, 4),
            0x01 => (10, 16),
            0x02 => (16, 4),
            _ => (24, 16),
        };
        self.l2.src = mac(&data[src..]);
        self.l2.dst = mac(&data[dst..]);
        let mut d = &data[hlen..];
        if !amsdu {
            return self.ieee802_11_inner(d);
        }
        while !d.is_empty() {
            if d.len() < 14 {
                return Err(LinkStop::Weird(Weird::Truncated80211Amsdu));
            }
            let sub = usize::from(u16::from_be_bytes([d[12], d[13]]));
            if d.len() < sub + 14 {
                return Err(LinkStop::Weird(Weird::Truncated80211Amsdu));
            }
            d = &d[14..];
            self.ieee802_11_inner(&d[..sub])?;
            d = &d[sub..];
            let pad = sub % 4;
            if d.len() >= pad {
                d = &d[pad..];
            }
        }
        Ok(())
    }

    fn ieee802_11_inner(&mut self, d: &'a [u8]) -> Result<(), LinkStop> {
        if d.len() < 8 {
            return Err(LinkStop::Weird(Weird::Truncated80211Header));
        }
        if d[..6] != [0xAA, 0xAA, 0x03, 0, 0, 0] {
            return Err(LinkStop::NotIp);
        }
        let proto = u16::from_be_bytes([d[6], d[7]]);
        match proto {
            0x0800 | 0x86DD => self.ip(&d[8..]),
            _ => Err(LinkStop::NotIp),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum EtherTable {
    Ethernet,
    Vlan,
}

/// Length of an LLC header (3, or 4 when the control field is not an
/// unnumbered PDU), if the data holds one.
fn llc_len(data: &[u8]) -> Option<usize> {
    if data.len() < 3 {
        return None;
    }
    let n = if data[2] & 0x03 != 0x03 { 4 } else { 3 };
    (data.len() >= n).then_some(n)
}

/// Decodes a captured frame of `link` type down to its IP packet(s).
pub fn decode_link(link: LinkType, frame: &[u8]) -> (L2Info, Result<Frames<'_>, LinkStop>) {
    let mut l2 = L2Info::default();
    let mut out = Frames::new();
    match decode_link_into(link, frame, &mut l2, &mut out) {
        Ok(()) => (l2, Ok(out)),
        Err(e) => (l2, Err(e)),
    }
}

/// [`decode_link`] writing into the caller's `l2` and `out` (cleared
/// first), for the per-packet path: results are read field by field where
/// they were written rather than moved out as one large value, which keeps
/// the CPU's store forwarding working.
pub fn decode_link_into<'a>(
    link: LinkType,
    frame: &'a [u8],
    l2: &mut L2Info,
    out: &mut Frames<'a>,
) -> Result<(), LinkStop> {
    *l2 = L2Info::default();
    out.clear();
    let mut w = Walker { frame, l2, out };
    match w.root(link, frame) {
        Ok(()) => Ok(()),
        // An A-MSDU whose later subframe is broken still delivers the
        // earlier ones, as Zeek processes subframes one by one.
        Err(_) if !w.out.is_empty() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Decodes a tunnelled frame (GRE transparent bridging, VXLAN, Geneve's
/// Ethernet payload, ERSPAN) that starts with an Ethernet header.
pub fn decode_inner_ethernet(frame: &[u8]) -> (L2Info, Result<Frames<'_>, LinkStop>) {
    decode_link(LinkType::ETHERNET, frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb,
        ];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn ethernet_ipv4() {
        let f = eth(0x0800, &[0x45; 30]);
        let (l2, r) = decode_link(LinkType::ETHERNET, &f);
        let frames = r.unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].offset, 14);
        assert_eq!(l2.src(), Some([0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb]));
    }

    #[test]
    fn qinq_records_both_tags() {
        let mut inner = vec![0x00, 0x0a, 0x81, 0x00, 0x00, 0x14, 0x08, 0x00];
        inner.extend_from_slice(&[0x45; 30]);
        let f = eth(0x88a8, &inner);
        let (l2, r) = decode_link(LinkType::ETHERNET, &f);
        assert_eq!(r.unwrap()[0].offset, 22);
        assert_eq!((l2.vlan(), l2.inner_vlan()), (Some(10), Some(20)));
    }

    #[test]
    fn short_frames_are_weird_not_panics() {
        for n in 0..20 {
            let f = vec![0u8; n];
            for lt in [1, 9, 10, 50, 105, 113, 127, 239, 276, 0] {
                let _ = decode_link(LinkType(lt), &f);
            }
        }
    }

    #[test]
    fn arp_is_not_ip() {
        let f = eth(0x0806, &[0; 28]);
        assert_eq!(
            decode_link(LinkType::ETHERNET, &f).1.unwrap_err(),
            LinkStop::NotIp
        );
    }
}
