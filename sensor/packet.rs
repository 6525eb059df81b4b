//! What a captured packet is, shared by the stages that read packets:
//! its time, its link type and the borrowed bytes. A leaf module, so that
//! capture and decode both use it without importing each other.

/// Packet time in seconds since the epoch, computed exactly as Zeek computes
/// it (`tv_sec + tv_usec / 1e6` as a double) so that `ts` and `duration`
/// round the same way in both tools.
pub type Time = f64;

/// libpcap's DLT_* / LINKTYPE_* value of a packet's first header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinkType(pub i32);

impl LinkType {
    pub const NULL: LinkType = LinkType(0);
    pub const ETHERNET: LinkType = LinkType(1);
    pub const FDDI: LinkType = LinkType(10);
    pub const RAW_OPENBSD: LinkType = LinkType(12);
    pub const RAW_BSDOS: LinkType = LinkType(14);
    pub const PPP_SERIAL: LinkType = LinkType(50);
    pub const PPP_ETHER: LinkType = LinkType(51);
    pub const PPP: LinkType = LinkType(9);
    pub const RAW: LinkType = LinkType(101);
    pub const IEEE802_11: LinkType = LinkType(105);
    pub const LOOP: LinkType = LinkType(108);
    pub const LINUX_SLL: LinkType = LinkType(113);
    pub const IEEE802_11_RADIO: LinkType = LinkType(127);
    pub const NFLOG: LinkType = LinkType(239);
    pub const LINUX_SLL2: LinkType = LinkType(276);
    pub const IPV4: LinkType = LinkType(228);
    pub const IPV6: LinkType = LinkType(229);
}

/// One captured packet, borrowed from the source.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    pub ts: Time,
    pub link: LinkType,
    /// Length on the wire (may exceed `data.len()` when the snaplen cut it).
    pub wire_len: u32,
    pub data: &'a [u8],
}
