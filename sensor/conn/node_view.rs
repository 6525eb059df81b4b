//! One observation per packet on a node.
//!
//! With libpcap's `any` device a packet a pod sends is captured on its
//! veth, again on the bridge, on the overlay device and (encapsulated) on
//! the uplink; a connection the node masquerades (SNAT) or receives through
//! a Service or NodePort (DNAT) shows up a second time under the node's or
//! the Service's address. Counting each copy doubles packets and bytes,
//! turns copies into retransmissions in `history`, and logs NAT'd
//! connections twice — features the models were never trained on.
//!
//! This stage sits in front of the connection engine (the capture thread
//! runs it before packets are sharded, so that the two views of a NAT'd
//! connection, which hash to different shards, meet here) and decides per
//! packet whether it counts:
//!
//! - **Copies.** A packet's *content hash* covers every byte forwarding
//!   and NAT leave alone: the IP header but the TTL / hop limit, its
//!   checksum and the addresses; the transport header but the ports (the
//!   ICMP echo identifier) and the checksum (offloads leave it unfinished
//!   on one side of a veth); the payload (its length, first 64 and last
//!   16 bytes: with the headers that tells packets apart at a fixed cost).
//!   The same content with the same
//!   flow (addresses and ports) seen on a *different* interface within a
//!   short window is a copy and is dropped, in the spirit of Arkime's
//!   packet dedup. A retransmission on the wire is on the same interface
//!   (or a round trip later) and stays.
//! - **NAT twins.** The same content under *another* flow on another
//!   interface within the window is one packet before and after
//!   translation (Linux NAT keeps the IP id, sequence numbers and payload).
//!   The view that counts is the pod's own: the source before SNAT and the
//!   destination after DNAT. When only the destination differs the later
//!   view (after DNAT, or a reply after un-SNAT) is kept; when only the
//!   source differs, the earlier (before SNAT, or a reply before un-DNAT);
//!   when both differ (a NodePort that also masquerades), a connection's
//!   first packet (a SYN) keeps its later view and a SYN-ACK its earlier,
//!   which are the pod's in both directions. The dropped view's flow is
//!   remembered as a twin, so its later packets are dropped on sight
//!   without waiting for a content match, and the view kept is remembered
//!   as canonical so that it is never folded. When the kept view is the
//!   later one, the connection the earlier view may already have opened in
//!   the engine is *folded*: discarded without a record ([`Fold`]).
//! - **Overlays.** A VXLAN (4789, and 8472, the Linux and flannel
//!   default) or Geneve (6081) datagram on the uplink carries a pod packet
//!   the overlay device shows decapsulated. The encapsulated view is the
//!   copy: its underlay flow becomes a twin (all its packets are dropped)
//!   and, if it came first, the underlay and inner connections it opened
//!   are folded.
//!
//! Why content hashing rather than conntrack or the kernel's interface
//! choice: it needs no privileges beyond capture and no netlink events
//! (which arrive after the packets they describe), it works the same on a
//! recorded `any` capture as live (so the replay of a node's capture gives
//! the same conn.log), and it is one hash and one probe per packet.
//! Interfaces come from the `LINUX_SLL2` header `any` captures carry;
//! other link types have no interface per packet and pass untouched.
//!
//! Memory is fixed by configuration: a direct-mapped table of recent
//! packets (a packet's hash picks its one slot; a collision can only let a
//! copy through, never drop a packet that is not one) and a bounded table
//! of twin and canonical flows, idle entries expiring first.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::icmp;
use crate::decode::link::decode_inner_ethernet;
use crate::decode::prepare::{prepare, Prepared};
use crate::packet::{LinkType, Packet};

/// Node-view settings (`conn.dedup_*` in the configuration).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeViewConfig {
    /// Views further apart than this (seconds of packet time) are
    /// different packets: the copies of one packet on a node are
    /// microseconds apart, a retransmission at least a round trip.
    pub window_secs: f64,
    /// Slots of the recent-packet table (rounded up to a power of two; 0
    /// turns the stage off): about 100 bytes each.
    pub slots: usize,
    /// Twin and canonical flows remembered at most (about 64 bytes each).
    pub max_twins: usize,
    /// A twin flow without packets for this long is forgotten (its next
    /// packets are matched by content again).
    pub twin_idle_secs: f64,
}

impl Default for NodeViewConfig {
    /// 5 ms, 65,536 slots (about 6 MiB) and 65,536 twins (about 4 MiB): at
    /// a million packets per second a window holds 5,000 packets, so
    /// collisions stay rare.
    fn default() -> Self {
        NodeViewConfig {
            window_secs: 0.005,
            slots: 1 << 16,
            max_twins: 1 << 16,
            twin_idle_secs: 600.0,
        }
    }
}

/// A flow as one packet shows it: source, destination, ports (ICMP: its
/// type and its counterpart's, as the engine keys it) and IP protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

impl Flow {
    /// Both directions alike.
    fn key(&self) -> FlowKey {
        let a = (self.src, self.sport);
        let b = (self.dst, self.dport);
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        FlowKey {
            lo,
            hi,
            proto: self.proto,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FlowKey {
    lo: (IpAddr, u16),
    hi: (IpAddr, u16),
    proto: u8,
}

/// A connection the engine must discard without logging it: an earlier
/// view of a packet whose pod view came later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fold {
    pub flow: Flow,
    /// The outermost flow the view travelled in (the underlay datagram of
    /// an overlay), which decides the live shard; else `flow` itself.
    pub outer: Option<Flow>,
}

impl Fold {
    /// The IP pair that chose the connection's shard.
    pub fn shard_pair(&self) -> (IpAddr, IpAddr) {
        let f = self.outer.unwrap_or(self.flow);
        (f.src, f.dst)
    }
}

/// What a packet is on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Counts.
    Count,
    /// A copy of a packet counted on another interface.
    Duplicate,
    /// The other side of a NAT of a connection counted under its pod view.
    NatTwin,
}

/// What the stage suppressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeViewStats {
    /// Copies dropped (encapsulated copies included).
    pub duplicates: u64,
    /// Packets of NAT twins dropped.
    pub nat_twin_packets: u64,
    /// NAT'd connections whose twin view was folded into the pod view.
    pub nat_twins_folded: u64,
    /// Overlay underlay flows found to carry copies (their packets are
    /// counted in `duplicates`).
    pub overlay_flows_folded: u64,
}

#[derive(Clone, Copy)]
struct Slot {
    hash: u64,
    ts: f64,
    ifindex: u32,
    echo_id: u16,
    flow: Flow,
    outer: Option<Flow>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A view that counts; never folded.
    Canonical,
    /// A NAT twin: its packets are dropped.
    Twin,
    /// An underlay flow carrying copies: its packets are dropped.
    Underlay,
}

struct Known {
    role: Role,
    /// The flow crosses an overlay here: its datagrams on the underlay are
    /// copies of what the overlay device shows, whichever comes first.
    overlaid: bool,
    last: f64,
}

pub struct NodeView {
    cfg: NodeViewConfig,
    table: Box<[Option<Slot>]>,
    mask: u64,
    hasher: ahash::RandomState,
    known: HashMap<FlowKey, Known, ahash::RandomState>,
    folds: Vec<Fold>,
    stats: NodeViewStats,
}

/// `LINUX_SLL2`'s interface index (bytes 4..8 of its header).
pub fn sll2_ifindex(frame: &[u8]) -> Option<u32> {
    let b: [u8; 4] = frame.get(4..8)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// UDP ports of the overlays whose datagrams carry pod packets.
const VXLAN_PORTS: [u16; 2] = [4789, 8472];
const GENEVE_PORT: u16 = 6081;

/// What the stage reads of one IP packet.
struct Parsed {
    hash: u64,
    flow: Flow,
    echo_id: u16,
    /// TCP flags (0 for other protocols).
    tcp_flags: u8,
}

impl NodeView {
    pub fn new(cfg: NodeViewConfig) -> Option<NodeView> {
        if cfg.slots == 0 {
            return None;
        }
        let n = cfg.slots.next_power_of_two();
        Some(NodeView {
            cfg,
            table: vec![None; n].into_boxed_slice(),
            mask: (n - 1) as u64,
            // Fixed keys: the same capture always gives the same result.
            hasher: ahash::RandomState::with_seeds(1, 2, 3, 4),
            known: HashMap::with_hasher(ahash::RandomState::with_seeds(5, 6, 7, 8)),
            folds: Vec::new(),
            stats: NodeViewStats::default(),
        })
    }

    pub fn stats(&self) -> &NodeViewStats {
        &self.stats
    }

    /// Connections the engine must discard, whatever the verdict on the
    /// packet [`NodeView::observe`] saw last (before counting it).
    pub fn folds(&self) -> &[Fold] {
        &self.folds
    }

    /// [`NodeView::observe`] for a captured frame: only `LINUX_SLL2`
    /// frames name their interface; others always count.
    pub fn observe_frame(&mut self, pkt: &Packet<'_>, prep: &Prepared) -> Verdict {
        self.folds.clear();
        if pkt.link != LinkType::LINUX_SLL2 {
            return Verdict::Count;
        }
        let Some(ifindex) = sll2_ifindex(pkt.data) else {
            return Verdict::Count;
        };
        // The IP packet: where the capture thread found it, else where the
        // link decoder finds it.
        let own;
        let ip = match prep.l3(pkt.data) {
            Some(ip) => Some(ip),
            None => {
                own = prepare(pkt.link, pkt.data, 0, false);
                own.l3(pkt.data)
            }
        };
        match ip {
            Some(ip) => self.observe(pkt.ts, ifindex, ip),
            None => Verdict::Count,
        }
    }

    /// Decides whether `ip`, an IP packet captured on interface `ifindex`
    /// at `ts`, counts.
    pub fn observe(&mut self, ts: f64, ifindex: u32, ip: &[u8]) -> Verdict {
        self.folds.clear();
        let Some(outer) = self.parse(ip) else {
            return Verdict::Count;
        };
        // An underlay flow known to carry copies: whatever it carries now
        // (ARP included) is seen on the overlay device too.
        if is_overlay_port(&outer.flow) && self.known_role(&outer.flow, ts) == Some(Role::Underlay)
        {
            self.stats.duplicates += 1;
            return Verdict::Duplicate;
        }
        // A datagram of an overlay: the packet inside is what crosses the
        // node's other interfaces.
        let inner = overlay_payload(&outer.flow, ip).and_then(|inner| self.parse(inner));
        let (p, under) = match inner {
            Some(i) => (i, Some(outer.flow)),
            None => (outer, None),
        };
        let role = self.known_role(&p.flow, ts);
        if role == Some(Role::Twin) {
            self.stats.nat_twin_packets += 1;
            return Verdict::NatTwin;
        }
        if let Some(u) = under {
            if self.is_overlaid(&p.flow) {
                // A datagram of a flow already seen decapsulated (a reply
                // arriving encapsulated before the overlay device shows
                // it): a copy before the engine counts it.
                self.underlay(u, ts);
                self.stats.duplicates += 1;
                return Verdict::Duplicate;
            }
        }
        let i = (p.hash & self.mask) as usize;
        let here = Slot {
            hash: p.hash,
            ts,
            ifindex,
            echo_id: p.echo_id,
            flow: p.flow,
            outer: under,
        };
        let Some(prev) = self.table.get(i).copied().flatten().filter(|s| {
            s.hash == p.hash
                && s.ifindex != ifindex
                && ts >= s.ts
                && ts - s.ts <= self.cfg.window_secs
        }) else {
            self.table[i] = Some(here);
            return Verdict::Count;
        };
        if prev.flow == p.flow {
            if prev.echo_id != p.echo_id {
                self.table[i] = Some(here);
                return Verdict::Count;
            }
            return match (prev.outer, under) {
                (Some(u), None) => {
                    // The encapsulated view came first (a connection from
                    // another node): the decapsulated one counts, and what
                    // the first opened inside the tunnel is undone.
                    self.underlay(u, ts);
                    self.overlaid(p.flow, ts);
                    self.folds.push(Fold {
                        flow: p.flow,
                        outer: Some(u),
                    });
                    self.table[i] = Some(here);
                    Verdict::Count
                }
                (None, Some(u)) => {
                    self.underlay(u, ts);
                    self.overlaid(p.flow, ts);
                    self.stats.duplicates += 1;
                    Verdict::Duplicate
                }
                _ => {
                    self.stats.duplicates += 1;
                    Verdict::Duplicate
                }
            };
        }
        // The same packet under another flow: a NAT.
        if p.flow.proto == 0 {
            // A later fragment names no ports, so its "flow" is every
            // fragment between two hosts: judged alone, never remembered.
            if pod_view_is_earlier(&prev.flow, &p.flow, 0) {
                self.stats.nat_twin_packets += 1;
                return Verdict::NatTwin;
            }
            self.table[i] = Some(here);
            return Verdict::Count;
        }
        let prev_role = self.known_role(&prev.flow, ts);
        let keep_earlier = match (prev_role, role) {
            (Some(Role::Canonical), Some(Role::Canonical)) => {
                // Two counted flows: a hash collision, not a NAT.
                self.table[i] = Some(here);
                return Verdict::Count;
            }
            (Some(Role::Canonical), _) => true,
            (_, Some(Role::Canonical)) => false,
            _ => pod_view_is_earlier(&prev.flow, &p.flow, p.tcp_flags),
        };
        self.stats.nat_twins_folded += 1;
        if keep_earlier {
            self.remember(prev.flow, Role::Canonical, ts);
            self.remember(p.flow, Role::Twin, ts);
            self.stats.nat_twin_packets += 1;
            return Verdict::NatTwin;
        }
        self.remember(p.flow, Role::Canonical, ts);
        self.remember(prev.flow, Role::Twin, ts);
        self.folds.push(Fold {
            flow: prev.flow,
            outer: prev.outer,
        });
        if let Some(u) = prev.outer {
            self.underlay(u, ts);
            self.overlaid(p.flow, ts);
        }
        self.table[i] = Some(here);
        Verdict::Count
    }

    /// A known flow's role, refreshing its idle time.
    fn known_role(&mut self, f: &Flow, ts: f64) -> Option<Role> {
        if self.known.is_empty() {
            return None;
        }
        let k = self.known.get_mut(&f.key())?;
        k.last = k.last.max(ts);
        Some(k.role)
    }

    fn is_overlaid(&self, f: &Flow) -> bool {
        self.known.get(&f.key()).is_some_and(|k| k.overlaid)
    }

    fn remember(&mut self, f: Flow, role: Role, ts: f64) {
        self.make_room(&f, ts);
        let k = self.known.entry(f.key()).or_insert(Known {
            role,
            overlaid: false,
            last: ts,
        });
        k.role = role;
        k.last = ts;
    }

    /// Marks a flow as crossing an overlay (a counted view unless known
    /// otherwise).
    fn overlaid(&mut self, f: Flow, ts: f64) {
        self.make_room(&f, ts);
        let k = self.known.entry(f.key()).or_insert(Known {
            role: Role::Canonical,
            overlaid: true,
            last: ts,
        });
        k.overlaid = true;
        k.last = ts;
    }

    /// An underlay flow carries copies from now on; what it opened before
    /// (its first datagram, an ARP inside it) is folded.
    fn underlay(&mut self, u: Flow, ts: f64) {
        if self.known_role(&u, ts) == Some(Role::Underlay) {
            return;
        }
        self.remember(u, Role::Underlay, ts);
        self.stats.overlay_flows_folded += 1;
        self.folds.push(Fold {
            flow: u,
            outer: None,
        });
    }

    fn make_room(&mut self, f: &Flow, ts: f64) {
        if self.known.len() >= self.cfg.max_twins.max(1) && !self.known.contains_key(&f.key()) {
            self.expire(ts);
        }
    }

    /// Makes room: idle entries go; if none are idle, the older half.
    fn expire(&mut self, now: f64) {
        let idle = self.cfg.twin_idle_secs;
        self.known.retain(|_, k| now - k.last <= idle);
        if self.known.len() >= self.cfg.max_twins.max(1) {
            let mut lasts: Vec<f64> = self.known.values().map(|k| k.last).collect();
            let mid = lasts.len() / 2;
            lasts.select_nth_unstable_by(mid, f64::total_cmp);
            let cut = lasts[mid];
            self.known.retain(|_, k| k.last > cut);
        }
    }

    /// The flow and content hash of an IP packet; `None` for what is not
    /// one (it always counts).
    fn parse(&self, ip: &[u8]) -> Option<Parsed> {
        let mut h = self.hasher.build_hasher();
        let (src, dst, l4, proto) = match ip.first()? >> 4 {
            4 => {
                let ihl = usize::from(ip.first()? & 0x0f) * 4;
                if ihl < 20 || ip.len() < ihl {
                    return None;
                }
                // Version .. fragment offset, protocol, options.
                h.write(ip.get(0..8)?);
                h.write(ip.get(9..10)?);
                h.write(ip.get(20..ihl)?);
                let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
                let dst: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
                let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
                // Only a whole datagram or a first fragment starts with the
                // transport header.
                let proto = if frag == 0 { ip[9] } else { 0 };
                (
                    IpAddr::V4(Ipv4Addr::from(src)),
                    IpAddr::V4(Ipv4Addr::from(dst)),
                    ip.get(ihl..)?,
                    proto,
                )
            }
            6 => {
                if ip.len() < 40 {
                    return None;
                }
                // Version, class, flow label, payload length, next header.
                h.write(ip.get(0..7)?);
                let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
                let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
                (
                    IpAddr::V6(Ipv6Addr::from(src)),
                    IpAddr::V6(Ipv6Addr::from(dst)),
                    ip.get(40..)?,
                    ip[6],
                )
            }
            _ => return None,
        };
        let mut flow = Flow {
            src,
            dst,
            sport: 0,
            dport: 0,
            proto,
        };
        let port = |at: usize| l4.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        let mut echo_id = 0;
        let mut tcp_flags = 0;
        match proto {
            6 if l4.len() >= 20 => {
                flow.sport = port(0)?;
                flow.dport = port(2)?;
                tcp_flags = l4[13];
                h.write(&l4[4..16]);
                h.write(&l4[18..20]);
                sample(&mut h, l4.get(20..).unwrap_or_default());
            }
            17 if l4.len() >= 8 => {
                flow.sport = port(0)?;
                flow.dport = port(2)?;
                h.write(&l4[4..6]);
                sample(&mut h, &l4[8..]);
            }
            1 | 58 if l4.len() >= 8 => {
                let (ty, code) = (l4[0], l4[1]);
                // The engine's ports: a request and its reply share them.
                flow.sport = u16::from(ty);
                flow.dport = icmp::counterpart(proto == 58, ty, code).0;
                h.write(&l4[0..2]);
                let echo = if proto == 1 {
                    matches!(ty, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18)
                } else {
                    matches!(ty, 128 | 129)
                };
                if echo {
                    // NAT rewrites the identifier as it does a port.
                    echo_id = port(4)?;
                    sample(&mut h, &l4[6..]);
                } else {
                    // An error quotes the packet it answers, addresses and
                    // ports as translated on this side: its type, code and
                    // length identify it well enough within a window.
                    h.write_usize(l4.len());
                }
            }
            _ => sample(&mut h, l4),
        }
        Some(Parsed {
            hash: h.finish(),
            flow,
            echo_id,
            tcp_flags,
        })
    }
}

fn is_overlay_port(flow: &Flow) -> bool {
    flow.proto == 17 && (VXLAN_PORTS.contains(&flow.dport) || flow.dport == GENEVE_PORT)
}

/// Bytes of a payload hashed from its start and from its end.
const SAMPLE_HEAD: usize = 64;
const SAMPLE_TAIL: usize = 16;

/// Hashes a payload's length, its first 64 and its last 16 bytes. With the
/// headers (IP id, sequence and acknowledgement numbers, lengths) that tells
/// one packet from another as well as the whole payload would, at a fixed
/// cost: hashing every byte cost more than all the rest of the node view on
/// full-size packets.
fn sample(h: &mut impl Hasher, payload: &[u8]) {
    h.write_usize(payload.len());
    if payload.len() <= SAMPLE_HEAD + SAMPLE_TAIL {
        h.write(payload);
    } else {
        h.write(&payload[..SAMPLE_HEAD]);
        h.write(&payload[payload.len() - SAMPLE_TAIL..]);
    }
}

/// The IP packet a VXLAN or Geneve datagram carries, if `ip` is one.
fn overlay_payload<'a>(flow: &Flow, ip: &'a [u8]) -> Option<&'a [u8]> {
    if !is_overlay_port(flow) {
        return None;
    }
    let ihl = match ip.first()? >> 4 {
        4 => usize::from(ip.first()? & 0x0f) * 4,
        _ => 40,
    };
    let udp = ip.get(ihl..)?;
    let payload = udp.get(8..)?;
    if VXLAN_PORTS.contains(&flow.dport) {
        // Flags with the I bit, then an Ethernet frame.
        if payload.len() < 8 || payload[0] & 0x08 == 0 {
            return None;
        }
        return ethernet_ip(payload.get(8..)?);
    }
    if flow.dport == GENEVE_PORT {
        let first = *payload.first()?;
        if first >> 6 != 0 {
            return None;
        }
        let hdr = 8 + usize::from(first & 0x3f) * 4;
        let next = u16::from_be_bytes([*payload.get(2)?, *payload.get(3)?]);
        let inner = payload.get(hdr..)?;
        return match next {
            0x6558 => ethernet_ip(inner),
            0x0800 | 0x86dd => Some(inner),
            _ => None,
        };
    }
    None
}

fn ethernet_ip(frame: &[u8]) -> Option<&[u8]> {
    let (_, frames) = decode_inner_ethernet(frame);
    match frames.ok()?.as_slice() {
        [f] => Some(f.data),
        _ => None,
    }
}

/// Whether the earlier of two views of one packet is the pod's own: the
/// source before SNAT and the destination after DNAT (see the module
/// comment).
fn pod_view_is_earlier(earlier: &Flow, later: &Flow, tcp_flags: u8) -> bool {
    let same_src = (earlier.src, earlier.sport) == (later.src, later.sport);
    let same_dst = (earlier.dst, earlier.dport) == (later.dst, later.dport);
    match (same_src, same_dst) {
        // Only the source was translated: SNAT on the way out (or un-DNAT
        // of a reply); the view before it is the pod's.
        (false, true) => true,
        // Only the destination: DNAT on the way in, or un-SNAT of a reply.
        (true, false) => false,
        // Both: a SYN-ACK is a reply (its responder's view is the earlier);
        // anything else is taken as travelling towards the pod.
        _ => tcp_flags & 0x12 == 0x12,
    }
}

#[cfg(test)]
#[path = "node_view_tests.rs"]
mod tests;
