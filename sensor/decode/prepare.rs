//! Per-packet decoding done ahead of the connection engine, on the
//! capture thread: the link layers and the outermost transport checksum.
//! Both cores are busy during a replay, so work done once here instead of
//! twice (once to verify, once to analyse) is work saved, not just moved.

use super::checksum::{ip_hints, ChecksumHint};
use super::link::{decode_link_into, Frames, L2Info};
use crate::packet::LinkType;

/// What the capture thread found out about a frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prepared {
    /// The frame's layer-2 facts; meaningful only with `l3_len > 0`.
    pub l2: L2Info,
    /// Where the frame's single IP packet lies (it may be shorter than the
    /// rest of the frame: 802.3 and PPPoE length fields trim it). A zero
    /// length means "not prepared": the link layers stopped short, failed
    /// (the engine then counts why) or held several packets (A-MSDU).
    pub l3_start: u32,
    pub l3_len: u32,
    /// The outermost transport checksum's verdict, when asked for.
    pub hint: ChecksumHint,
    /// The (IPv4) header checksum's verdict, when asked for.
    pub ip_hint: ChecksumHint,
}

impl Prepared {
    /// The IP packet inside `frame`, when prepared.
    pub fn l3<'a>(&self, frame: &'a [u8]) -> Option<&'a [u8]> {
        if self.l3_len == 0 {
            return None;
        }
        let start = self.l3_start as usize;
        frame.get(start..start + self.l3_len as usize)
    }
}

/// Decodes `frame`'s link layers and, with `verify`, checks its outermost
/// transport checksum.
pub fn prepare(link: LinkType, frame: &[u8], wire_len: usize, verify: bool) -> Prepared {
    let mut out = Prepared::default();
    let mut frames = Frames::new();
    if decode_link_into(link, frame, &mut out.l2, &mut frames).is_err() {
        return Prepared::default();
    }
    let [f] = frames.as_slice() else {
        return Prepared::default();
    };
    if f.data.is_empty() || f.data.len() > u32::MAX as usize {
        return Prepared::default();
    }
    out.l3_start = f.offset as u32;
    out.l3_len = f.data.len() as u32;
    if verify {
        (out.ip_hint, out.hint) = ip_hints(f.data, wire_len.saturating_sub(f.offset));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethernet_ipv4_is_prepared() {
        let mut f = vec![0u8; 12];
        f[5] = 1;
        f[11] = 2;
        f.extend_from_slice(&[0x08, 0x00]);
        // A minimal IPv4 header (no valid transport: hint stays unknown).
        f.extend_from_slice(&[
            0x45, 0, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        let p = prepare(LinkType::ETHERNET, &f, f.len(), true);
        assert_eq!((p.l3_start, p.l3_len), (14, 20));
        assert_eq!(p.l2.src(), Some([0, 0, 0, 0, 0, 2]));
        assert_eq!(p.l3(&f).map(|d| d[0]), Some(0x45));
        assert_eq!(p.hint, ChecksumHint::Unknown);
    }

    #[test]
    fn failed_or_non_ip_frames_are_left_to_the_engine() {
        let arp = [0u8; 12]
            .iter()
            .copied()
            .chain([0x08, 0x06])
            .chain([0u8; 28])
            .collect::<Vec<u8>>();
        assert_eq!(prepare(LinkType::ETHERNET, &arp, arp.len(), true).l3_len, 0);
        assert_eq!(prepare(LinkType::ETHERNET, &[1, 2, 3], 3, true).l3_len, 0);
    }
}
