//! The connection engine: walks each packet's layers outer to inner the way
//! Zeek's packet analysis does (link, IP, tunnels, transport), keeps the
//! connection table and its timers on packet time, and turns finished
//! connections into [`ConnRecord`]s.
//!
//! Zeek sources followed here: `src/packet_analysis/protocol/ip/IPBasedAnalyzer.cc`
//! (lookup, reuse, new connections and flips), `tcp/TCP.cc`, `udp/UDP.cc`,
//! `icmp/ICMP.cc`, `unknown_ip_transport/` (per-transport delivery and
//! checksums), `iptunnel/IPTunnel.cc` and the UDP tunnel analyzers,
//! `src/Conn.cc` (`CheckEncapsulation`, `FlipRoles`), `src/session/` (timers,
//! removal) and `scripts/base/protocols/conn/main.zeek` (`set_conn`,
//! `conn_state`).
//!
//! Limits: `max_connections` live connections (the least recently active
//! of a random sample is evicted beyond it, and counted), tunnel nesting
//! `Tunnel::max_depth`, [`MAX_EXPECTED`] scheduled analyzers, and the byte
//! budgets of fragment and TCP reassembly (`decode/frag.rs`, `tcp.rs`).
//!
//! With `EngineConfig::interim` set, the engine also snapshots connections
//! still open (rules in [`super::interim`]) into a queue of their own, so
//! that final records and their order stay exactly Zeek's.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use smallvec::SmallVec;

use super::config::{EngineConfig, PortProto};
use super::core::DEFAULT_IGNORE_VIOLATIONS_AFTER;
use super::core::{
    same_stack, AnalyzerState, ConnCore, Counters, Effects, EncapConn, EncapStack, TunnelState,
    HIST_ANALYZER_LIMIT_REACHED,
};
use super::icmp;
use super::interim::{InterimTrigger, Snapshots};
use super::node_view::Flow;
use super::record::{ConnRecord, ConnState, History, Proto, Uid};
use super::service::{
    Analyzer, AnalyzerSet, ConnInfo, ServiceDetector, ServiceEvent, ViolationCounts, L4,
};
use super::tcp::{self, EpState, Segment, Tcp};
use super::timer::{TimerEntry, TimerKind, TimerQueue, TimerReq};
use crate::decode::checksum::{self, ChecksumHint};
use crate::decode::frag::{FragDrop, FragResult, FragmentManager};
use crate::decode::ip::{
    self, parse_ip, IpOutcome, IpPacket, PROTO_GRE, PROTO_ICMP, PROTO_ICMPV6, PROTO_IPIP,
    PROTO_IPV6, PROTO_NONE, PROTO_TCP, PROTO_UDP,
};
use crate::decode::link::{decode_link_into, Frames, L2Info, LinkStop};
use crate::decode::prepare::Prepared;
use crate::decode::tunnel::{self, Decap, Payload, TunnelKind};
use crate::decode::weird::{Weird, WeirdCounts};
use crate::packet::{LinkType, Packet};

/// Scheduled analyzers (expected connections) kept at most.
pub const MAX_EXPECTED: usize = 10_000;
/// IP tunnels (address pairs) remembered at most.
pub const MAX_IP_TUNNELS: usize = 100_000;
/// Interim snapshots waiting at most. A later snapshot of a connection
/// supersedes an earlier one, so a caller that falls behind loses the
/// oldest, which matter least; memory stays bounded (about 70 MiB of
/// 280-byte records).
pub const MAX_INTERIM_QUEUED: usize = 1 << 18;

/// Counters of what the engine saw and did.
#[derive(Clone, Debug, Default)]
pub struct EngineStats {
    pub packets: u64,
    pub bytes: u64,
    /// Frames with no IP packet in them (ARP, LLC, 802.11 management...).
    pub non_ip: u64,
    /// Connections discarded unlogged: the node's view of a NAT'd
    /// connection whose pod view counts (conn/node_view.rs).
    pub conns_folded: u64,
    pub weirds: WeirdCounts,
    /// Protocol violations the service analyzers reported.
    pub analyzer_violations: ViolationCounts,
    pub conns_created: u64,
    pub conns_evicted: u64,
    pub records: u64,
    pub records_by_state: [u64; 13],
    pub fragments_reassembled: u64,
    /// Incomplete fragmented datagrams dropped, by [`FragDrop`] index.
    pub fragments_dropped: [u64; FragDrop::COUNT],
    /// Bytes the fragment table holds now.
    pub fragment_bytes: usize,
    /// Bytes TCP reassembly gave up, by [`tcp::ReasmDrop`] index.
    pub reassembly_dropped_bytes: [u64; tcp::ReasmDrop::COUNT],
    /// Bytes TCP reassembly holds now, over all connections.
    pub reassembly_bytes: usize,
    /// Interim snapshots queued, in all and by [`InterimTrigger`] index.
    pub interim_records: u64,
    pub interim_by_trigger: [u64; InterimTrigger::COUNT],
    /// Snapshots dropped (oldest first) because the interim queue was not
    /// drained and reached [`MAX_INTERIM_QUEUED`].
    pub interim_dropped: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct ConnKey {
    a: u128,
    b: u128,
    pa: u16,
    pb: u16,
    proto: u8,
    /// VLAN ids in the VLAN-aware key mode (0xffff: none).
    vlan: u16,
    inner_vlan: u16,
}

/// The latest packet time the engine accepts (2^40 s, some 34,800 years
/// after 1970). A capture's clock is input: beyond this, adding a timeout
/// to a packet time loses precision, and the timer wheel's second index
/// nears its limits. Later, negative or non-finite times are dropped and
/// counted (`packet_time_out_of_range`).
pub const MAX_PACKET_TIME: f64 = (1u64 << 40) as f64;

/// Moves timers re-armed while one fired to strictly after `now`. Adding
/// a timeout to a packet time changes nothing once the time is 2^53 s or
/// more (which a forged capture can claim): such a timer would be due
/// again at once, and `advance_time` would never return.
fn strictly_after(timers: &mut [TimerReq], now: f64) {
    for r in timers.iter_mut() {
        if r.at <= now {
            r.at = now.next_up();
        }
    }
}

/// An address as Zeek orders them: IPv4 in its IPv4-mapped IPv6 form,
/// compared as a big-endian 128-bit number.
fn addr16(a: &IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => 0xffff_0000_0000 | u128::from(u32::from(*v)),
        IpAddr::V6(v) => u128::from(*v),
    }
}

impl std::hash::Hash for ConnKey {
    // Three words instead of seven field writes: this runs per packet.
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u128(self.a);
        h.write_u128(self.b);
        let rest = u128::from(self.pa)
            | u128::from(self.pb) << 16
            | u128::from(self.proto) << 32
            | u128::from(self.vlan) << 40
            | u128::from(self.inner_vlan) << 56;
        h.write_u128(rest);
    }
}

impl ConnKey {
    /// Zeek's `InitTuple`: endpoints in canonical order unless one-way.
    fn new(src: &IpAddr, sport: u16, dst: &IpAddr, dport: u16, proto: u8, one_way: bool) -> Self {
        let (s, d) = (addr16(src), addr16(dst));
        if one_way || (s, sport) < (d, dport) {
            ConnKey {
                a: s,
                b: d,
                pa: sport,
                pb: dport,
                proto,
                vlan: NO_VLAN,
                inner_vlan: NO_VLAN,
            }
        } else {
            ConnKey {
                a: d,
                b: s,
                pa: dport,
                pb: sport,
                proto,
                vlan: NO_VLAN,
                inner_vlan: NO_VLAN,
            }
        }
    }
}

const NO_VLAN: u16 = 0xffff;

#[derive(Debug)]
struct Udp {
    request_len: i64,
    reply_len: i64,
    chk: [(u32, u32); 2],
    /// Generation of the DNS analyzer's expire timer (bumped to cancel).
    dns_gen: u32,
}

#[derive(Debug)]
struct Icmp {
    request_len: i64,
    reply_len: i64,
}

// TCP state lives inline: connections are stored in a slab, so boxing it
// would only add an allocation per connection.
#[allow(clippy::large_enum_variant)]
enum Transport {
    Tcp(Tcp),
    Udp(Udp),
    Icmp(Icmp),
    Unknown,
}

struct Conn {
    key: ConnKey,
    /// `key`'s hash in the index, kept so that neither filing nor removing
    /// the connection hashes the key again.
    hash: u64,
    core: ConnCore,
    transport: Transport,
    /// Creation order, for a stable end-of-trace flush.
    serial: u64,
    /// Interim snapshot bookkeeping (unused when interim is off).
    snap: Snapshots,
}

struct Slot {
    gen: u32,
    conn: Option<Conn>,
}

struct Expected {
    orig: Option<IpAddr>,
    resp: IpAddr,
    resp_p: u16,
    proto: L4,
    analyzer: Analyzer,
    expires: f64,
}

/// Per-(inner) packet facts that the layers below need.
#[derive(Clone, Copy)]
struct PktCtx<'e> {
    t: f64,
    /// Captured and wire length of the (possibly tunnelled) packet.
    cap_total: usize,
    wire_total: usize,
    l2: L2Info,
    encap: &'e [EncapConn],
    /// Precomputed validity of the outermost transport checksum; only
    /// meaningful for the top-level packet (see `outer`).
    hint: ChecksumHint,
    /// Precomputed validity of the outermost IPv4 header checksum.
    ip_hint: ChecksumHint,
}

const VXLAN_PORT: u16 = 4789;
const GENEVE_PORT: u16 = 6081;
const TEREDO_PORT: u16 = 3544;
const AYIYA_PORT: u16 = 5072;
const GTP_U_PORT: u16 = 2152;
const GTP_C_PORT: u16 = 2123;
const GRE_UDP_PORT: u16 = 4754;

fn is_broadcast(a: &IpAddr) -> bool {
    matches!(a, IpAddr::V4(v) if *v == Ipv4Addr::BROADCAST)
}

/// `conn_state()` of conn/main.zeek for TCP.
fn tcp_conn_state(os: EpState, rs: EpState, osize: u64, rsize: u64, history: &[u8]) -> ConnState {
    let o_inactive = matches!(os, EpState::Inactive | EpState::Partial);
    let r_inactive = matches!(rs, EpState::Inactive | EpState::Partial);
    if rs == EpState::Reset {
        if matches!(os, EpState::SynSent | EpState::SynAckSent)
            || (os == EpState::Reset && osize == 0 && rsize == 0)
        {
            ConnState::REJ
        } else if o_inactive {
            ConnState::RSTRH
        } else {
            ConnState::RSTR
        }
    } else if os == EpState::Reset {
        if r_inactive {
            if rstos0_history(history) {
                ConnState::RSTOS0
            } else {
                ConnState::OTH
            }
        } else {
            ConnState::RSTO
        }
    } else if rs == EpState::Closed && os == EpState::Closed {
        ConnState::SF
    } else if os == EpState::Closed {
        if r_inactive {
            ConnState::SH
        } else {
            ConnState::S2
        }
    } else if rs == EpState::Closed {
        if o_inactive {
            ConnState::SHR
        } else {
            ConnState::S3
        }
    } else if os == EpState::SynSent && rs == EpState::Inactive {
        ConnState::S0
    } else if os == EpState::Established && rs == EpState::Established {
        ConnState::S1
    } else {
        ConnState::OTH
    }
}

/// `/\^?S[^HAFGIQ]*R.*/ == history` (a whole-string match).
fn rstos0_history(h: &[u8]) -> bool {
    let h = h.strip_prefix(b"^").unwrap_or(h);
    let Some(rest) = h.strip_prefix(b"S") else {
        return false;
    };
    for (i, c) in rest.iter().enumerate() {
        if *c == b'R' {
            return true;
        }
        if b"HAFGIQ".contains(c) {
            let _ = i;
            return false;
        }
    }
    false
}

/// The connection engine. Feed it packets in capture order; it buffers the
/// records of connections that ended, which the caller drains.
pub struct Engine {
    cfg: EngineConfig,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Connection key → slot. Only slot numbers are stored (keys live in
    /// the slab), so the table stays small enough for the cache.
    index: hashbrown::HashTable<u32>,
    hasher: ahash::RandomState,
    live: usize,
    timers: TimerQueue,
    frags: FragmentManager,
    ip_tunnels: HashMap<(u128, u128), (EncapConn, f64), ahash::RandomState>,
    expected: Vec<Expected>,
    rng: StdRng,
    network_time: f64,
    serial: u64,
    stats: EngineStats,
    /// Records of ended connections, oldest first, until drained. A
    /// queue, so that they can be handed on in bounded batches even after
    /// a burst (every flood connection timing out in the same second).
    out: VecDeque<ConnRecord>,
    /// Interim snapshots, oldest first, until drained; apart from `out` so
    /// that a consumer of final records never sees them.
    interim_out: VecDeque<ConnRecord>,
    /// Timers and detection events of the packet being handled.
    fx: Effects,
}

impl Engine {
    pub fn new(mut cfg: EngineConfig) -> Self {
        let (rng, hasher) = match cfg.seed {
            Some(s) => (
                StdRng::seed_from_u64(s),
                ahash::RandomState::with_seeds(s, s ^ 0x9e37_79b9, s.rotate_left(17), 0x5eed),
            ),
            None => (
                StdRng::from_rng(&mut rand::rng()),
                ahash::RandomState::new(),
            ),
        };
        let frag_limits = cfg.frag_limits();
        if let Some(ic) = cfg.interim {
            if let Err(e) = ic.validate() {
                tracing::warn!("{e}; using the default instead");
            }
            cfg.interim = Some(ic.sanitized());
        }
        Engine {
            cfg,
            slots: Vec::new(),
            free: Vec::new(),
            index: hashbrown::HashTable::new(),
            hasher: hasher.clone(),
            live: 0,
            timers: TimerQueue::new(),
            frags: FragmentManager::new(frag_limits),
            ip_tunnels: HashMap::with_hasher(hasher),
            expected: Vec::new(),
            rng,
            network_time: 0.0,
            serial: 0,
            stats: EngineStats::default(),
            out: VecDeque::new(),
            interim_out: VecDeque::new(),
            fx: Effects::default(),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Copies the fragment table's figures into the stats (after each
    /// fragment: the table keeps its own counters).
    fn sync_frag_stats(&mut self) {
        for d in FragDrop::ALL {
            self.stats.fragments_dropped[d as usize] = self.frags.dropped(d);
        }
        self.stats.fragment_bytes = self.frags.bytes_held();
    }

    /// Copies the TCP reassembly ledger's figures into the stats and its
    /// weirds into the counts.
    fn sync_reasm_stats(&mut self) {
        let l = &mut self.fx.reasm;
        for w in l.weirds.drain(..) {
            self.stats.weirds.add(w);
        }
        self.stats.reassembly_dropped_bytes = l.dropped_bytes;
        self.stats.reassembly_bytes = l.held;
    }

    /// Packet time: the newest timestamp seen (0 before the first packet).
    pub fn network_time(&self) -> f64 {
        self.network_time
    }

    /// Connections currently tracked.
    pub fn active_connections(&self) -> usize {
        self.live
    }

    /// Records of connections that ended since the last call.
    pub fn drain_records(&mut self) -> std::collections::vec_deque::Drain<'_, ConnRecord> {
        self.out.drain(..)
    }

    /// Whether records are waiting to be taken.
    pub fn has_records(&self) -> bool {
        !self.out.is_empty()
    }

    /// Moves every waiting record into `into`.
    pub fn take_records(&mut self, into: &mut Vec<ConnRecord>) {
        into.extend(self.out.drain(..));
    }

    /// Moves waiting records into `into` until it holds `max` (so that a
    /// batch never grows past the size it was made for).
    pub fn take_records_up_to(&mut self, into: &mut Vec<ConnRecord>, max: usize) {
        let n = max.saturating_sub(into.len()).min(self.out.len());
        into.extend(self.out.drain(..n));
    }

    /// Whether interim snapshots are waiting to be taken.
    pub fn has_interim(&self) -> bool {
        !self.interim_out.is_empty()
    }

    /// Moves every waiting interim snapshot into `into`. With interim on,
    /// the caller must drain this as regularly as the final records: the
    /// queue only shrinks here (or, past [`MAX_INTERIM_QUEUED`], by
    /// dropping the oldest).
    pub fn take_interim(&mut self, into: &mut Vec<ConnRecord>) {
        into.extend(self.interim_out.drain(..));
    }

    /// Moves waiting interim snapshots into `into` until it holds `max`.
    pub fn take_interim_up_to(&mut self, into: &mut Vec<ConnRecord>, max: usize) {
        let n = max.saturating_sub(into.len()).min(self.interim_out.len());
        into.extend(self.interim_out.drain(..n));
    }

    fn weird(&mut self, w: Weird) {
        self.stats.weirds.add(w);
    }

    // --- time -----------------------------------------------------------

    /// Moves packet time forward to `t` (never backwards) and fires every
    /// timer due by then, as Zeek does before each packet.
    pub fn advance_time(&mut self, t: f64) {
        // A capture's clock is input: an infinite time would make every
        // timer due forever.
        if t.is_finite() && t > self.network_time {
            self.network_time = t;
        }
        let now = self.network_time;
        while let Some(e) = self.timers.pop_due(now) {
            self.fire_timer(e, now);
        }
    }

    /// Files the timers the connection in `slot` asked for.
    fn push_timers(&mut self, slot: u32) {
        if self.fx.timers.is_empty() {
            return;
        }
        let gen = self.slots[slot as usize].gen;
        for r in self.fx.timers.drain(..) {
            self.timers.push(slot, gen, r);
        }
    }

    fn fire_timer(&mut self, e: TimerEntry, now: f64) {
        if e.kind == TimerKind::Interim {
            return self.interim_timer(e, now);
        }
        let cfg = &self.cfg;
        let fx = &mut self.fx;
        let s = &mut self.slots[e.slot as usize];
        if s.gen != e.conn_gen {
            return;
        }
        let Some(conn) = s.conn.as_mut() else { return };
        let remove = match e.kind {
            TimerKind::Inactivity => {
                if e.gen != conn.core.inactivity_gen {
                    false
                } else if conn.core.last_time + conn.core.inactivity_timeout <= now {
                    true
                } else {
                    let at = conn.core.last_time + conn.core.inactivity_timeout;
                    fx.timers.push(TimerReq {
                        at,
                        kind: TimerKind::Inactivity,
                        gen: e.gen,
                    });
                    false
                }
            }
            TimerKind::DnsExpire => match &mut conn.transport {
                Transport::Udp(u) if u.dns_gen == e.gen => {
                    if now - conn.core.last_time >= cfg.dns_session_timeout - 1.0 {
                        true
                    } else {
                        fx.timers.push(TimerReq {
                            at: now + cfg.dns_session_timeout,
                            kind: TimerKind::DnsExpire,
                            gen: e.gen,
                        });
                        false
                    }
                }
                _ => false,
            },
            // Handled above; it never removes a connection.
            TimerKind::Interim => false,
            TimerKind::TcpExpire | TimerKind::TcpAttempt | TimerKind::TcpConnDelete => {
                match &mut conn.transport {
                    Transport::Tcp(tcp) if tcp.timer_gen == e.gen => match e.kind {
                        TimerKind::TcpExpire => tcp.expire_timer(&mut conn.core, fx, cfg, now),
                        TimerKind::TcpAttempt => tcp.attempt_timer(),
                        _ => true,
                    },
                    _ => false,
                }
            }
        };
        if remove {
            self.remove(e.slot);
        } else {
            strictly_after(&mut self.fx.timers, now);
            self.push_timers(e.slot);
        }
    }

    // --- table ----------------------------------------------------------

    fn remove(&mut self, slot: u32) {
        let Some(conn) = self.slots[slot as usize].conn.as_ref() else {
            return;
        };
        // Build the record in place; the slot is then dropped in place.
        let rec = self.record(conn, false);
        let hash = conn.hash;
        self.release(slot, hash);
        self.stats.records += 1;
        self.stats.records_by_state[rec.conn_state as usize] += 1;
        self.out.push_back(rec);
    }

    /// Discards the connection `flow` belongs to without a record: the
    /// node's view of a packet whose pod view came later
    /// (conn/node_view.rs). Its packets were never the pod's. With
    /// `tunnelled`, only a connection seen inside a tunnel is discarded:
    /// the pod's own (decapsulated) view of the same flow has the same key
    /// and may be what the table holds.
    pub fn fold(&mut self, flow: &Flow, tunnelled: bool) {
        let (sport, dport, one_way) = match flow.proto {
            PROTO_ICMP | PROTO_ICMPV6 => {
                let ty = u8::try_from(flow.sport).unwrap_or(u8::MAX);
                let code = u8::try_from(flow.dport).unwrap_or(0);
                let (counter, one_way) = icmp::counterpart(flow.proto == PROTO_ICMPV6, ty, code);
                (
                    flow.sport,
                    if one_way { flow.dport } else { counter },
                    one_way,
                )
            }
            _ => (flow.sport, flow.dport, false),
        };
        let key = ConnKey::new(&flow.src, sport, &flow.dst, dport, flow.proto, one_way);
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        let Ok(entry) = self.index.find_entry(hash, |s| {
            slots[*s as usize]
                .conn
                .as_ref()
                .is_some_and(|c| c.key == key && (!tunnelled || c.core.encap.is_some()))
        }) else {
            return;
        };
        let slot = *entry.get();
        self.release(slot, hash);
        self.stats.conns_folded += 1;
    }

    /// Empties a slot (its timers go stale with the generation) and takes
    /// it out of the index.
    fn release(&mut self, slot: u32, hash: u64) {
        let s = &mut self.slots[slot as usize];
        if let Some(Conn {
            transport: Transport::Tcp(t),
            ..
        }) = s.conn.as_mut()
        {
            t.release(&mut self.fx);
            self.stats.reassembly_bytes = self.fx.reasm.held;
        }
        s.conn = None;
        s.gen = s.gen.wrapping_add(1);
        self.free.push(slot);
        self.live -= 1;
        if let Ok(entry) = self.index.find_entry(hash, |s| *s == slot) {
            entry.remove();
        }
    }

    /// Evicts the least recently active of a random sample of connections.
    fn evict_one(&mut self) {
        let n = self.slots.len();
        let mut best: Option<(f64, u32)> = None;
        for _ in 0..32 {
            let i = self.rng.random_range(0..n) as u32;
            if let Some(c) = self.slots[i as usize].conn.as_ref() {
                if best.is_none_or(|(t, _)| c.core.last_time < t) {
                    best = Some((c.core.last_time, i));
                }
            }
        }
        let victim = best.map(|b| b.1).or_else(|| {
            self.slots
                .iter()
                .position(|s| s.conn.is_some())
                .map(|i| i as u32)
        });
        if let Some(v) = victim {
            self.stats.conns_evicted += 1;
            self.weird(Weird::ConnectionTableFull);
            self.remove(v);
        }
    }

    /// Files a new connection.
    fn insert(&mut self, conn: Conn) -> u32 {
        if self.live >= self.cfg.max_connections {
            self.evict_one();
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot { gen: 0, conn: None });
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        // A reused key's old entry was removed with its connection.
        self.index.insert_unique(conn.hash, slot, |s| {
            slots[*s as usize].conn.as_ref().map_or(0, |c| c.hash)
        });
        self.slots[slot as usize].conn = Some(conn);
        self.live += 1;
        self.stats.conns_created += 1;
        self.push_timers(slot);
        slot
    }

    fn new_uid(&mut self) -> Uid {
        Uid([self.rng.next_u64(), u64::from(self.rng.next_u32())])
    }

    // --- records --------------------------------------------------------

    fn record(&self, conn: &Conn, interim: bool) -> ConnRecord {
        let c = &conn.core;
        let (state, osize, rsize) = match &conn.transport {
            Transport::Tcp(t) => {
                let (os, rs) = t.states();
                let (o, r) = (t.size(0), t.size(1));
                (tcp_conn_state(os, rs, o, r, &c.history), o, r)
            }
            Transport::Udp(u) => {
                let st = match (u.request_len >= 0, u.reply_len >= 0) {
                    (true, true) => ConnState::SF,
                    (true, false) => ConnState::S0,
                    (false, true) => ConnState::SHR,
                    (false, false) => ConnState::OTH,
                };
                (st, u.request_len.max(0) as u64, u.reply_len.max(0) as u64)
            }
            Transport::Icmp(i) => (
                ConnState::OTH,
                i.request_len.max(0) as u64,
                i.reply_len.max(0) as u64,
            ),
            Transport::Unknown => (ConnState::OTH, 0, 0),
        };
        let duration = c.last_time - c.start_time;
        let has_dur = duration > 0.0;
        let local = !self.cfg.local_nets.is_empty();
        ConnRecord {
            ts: c.start_time,
            uid: c.uid,
            orig_h: c.orig_h,
            orig_p: c.orig_p,
            resp_h: c.resp_h,
            resp_p: c.resp_p,
            proto: c.proto,
            service: c.services.clone(),
            duration: has_dur.then_some(duration),
            orig_bytes: has_dur.then_some(osize),
            resp_bytes: has_dur.then_some(rsize),
            conn_state: state,
            local_orig: local.then(|| self.cfg.local_nets.contains(&c.orig_h)),
            local_resp: local.then(|| self.cfg.local_nets.contains(&c.resp_h)),
            missed_bytes: c.missed_bytes,
            history: History::from_bytes(&c.history),
            orig_pkts: c.counts.pkts[0],
            orig_ip_bytes: c.counts.ip_bytes[0],
            resp_pkts: c.counts.pkts[1],
            resp_ip_bytes: c.counts.ip_bytes[1],
            tunnel_parents: c.tunnel_parents.clone(),
            ip_proto: Some(c.ip_proto),
            orig_l2_addr: c.l2[0],
            resp_l2_addr: c.l2[1],
            vlan: c.vlan,
            inner_vlan: c.inner_vlan,
            interim,
            auth_failures: c.auth_failures,
            orig_verified: match &conn.transport {
                Transport::Tcp(t) => t.verify.orig_verified(),
                _ => false,
            },
        }
    }

    // --- interim snapshots ----------------------------------------------

    /// Queues a snapshot of the (open) connection in `slot`.
    fn emit_interim(&mut self, slot: u32, trigger: InterimTrigger) {
        let Some(conn) = self.slots[slot as usize].conn.as_ref() else {
            return;
        };
        let rec = self.record(conn, true);
        if self.interim_out.len() >= MAX_INTERIM_QUEUED {
            self.interim_out.pop_front();
            self.stats.interim_dropped += 1;
        }
        self.interim_out.push_back(rec);
        self.stats.interim_records += 1;
        self.stats.interim_by_trigger[trigger as usize] += 1;
    }

    /// The per-packet part: marks the connection active and queues its
    /// snapshot timer if it had gone quiet. One branch when interim is off.
    #[inline]
    fn interim_packet(&mut self, slot: u32) {
        let Some(ic) = self.cfg.interim else {
            return;
        };
        let now = self.network_time;
        let s = &mut self.slots[slot as usize];
        let Some(conn) = s.conn.as_mut() else {
            return;
        };
        if let Some(at) = conn.snap.on_packet(now, &ic) {
            let req = TimerReq {
                at,
                kind: TimerKind::Interim,
                gen: 0,
            };
            self.timers.push(slot, s.gen, req);
        }
    }

    /// A snapshot timer fired. The slot generation check makes a timer of
    /// a connection already logged a no-op, so no snapshot ever follows a
    /// final record.
    fn interim_timer(&mut self, e: TimerEntry, now: f64) {
        let Some(ic) = self.cfg.interim else {
            return;
        };
        let s = &mut self.slots[e.slot as usize];
        if s.gen != e.conn_gen {
            return;
        }
        let Some(conn) = s.conn.as_mut() else {
            return;
        };
        let silent = conn.core.counts.pkts[1] == 0;
        let out = conn.snap.on_timer(now, conn.core.start_time, silent, &ic);
        if let Some(at) = out.rearm_at {
            let req = TimerReq {
                at: if at > now { at } else { now.next_up() },
                kind: TimerKind::Interim,
                gen: 0,
            };
            self.timers.push(e.slot, e.conn_gen, req);
        }
        if let Some(trigger) = out.snapshot {
            self.emit_interim(e.slot, trigger);
        }
    }

    /// After a TCP packet: a snapshot at once when the connection reached
    /// a state that Zeek logs only after a delay (RST, or both FINs).
    fn interim_closing(&mut self, slot: u32) {
        if self.cfg.interim.is_none() {
            return;
        }
        let now = self.network_time;
        let Some(conn) = self.slots[slot as usize].conn.as_mut() else {
            return;
        };
        let Transport::Tcp(t) = &conn.transport else {
            return;
        };
        let (os, rs) = t.states();
        let reset = os == EpState::Reset || rs == EpState::Reset;
        let closed = os == EpState::Closed && rs == EpState::Closed;
        if !(reset || closed) {
            return;
        }
        if let Some(trigger) = conn.snap.on_closing(reset, now) {
            self.emit_interim(slot, trigger);
        }
    }

    /// Logs every connection still open, as Zeek does at the end of input
    /// (`session::Manager::Drain`), in the order they began.
    pub fn finish(&mut self) {
        let mut live: Vec<(f64, u64, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.conn
                    .as_ref()
                    .map(|c| (c.core.start_time, c.serial, i as u32))
            })
            .collect();
        live.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (_, _, slot) in live {
            self.remove(slot);
        }
        self.timers.clear();
    }

    // --- packets --------------------------------------------------------

    /// Processes one captured packet.
    pub fn process_packet(&mut self, pkt: &Packet<'_>) {
        self.process_packet_hinted(pkt, ChecksumHint::Unknown);
    }

    /// [`Engine::process_packet`] with the outermost transport checksum
    /// already verified by the capture thread.
    pub fn process_packet_hinted(&mut self, pkt: &Packet<'_>, hint: ChecksumHint) {
        let prep = Prepared {
            hint,
            ..Prepared::default()
        };
        self.process_packet_prepared(pkt, &prep);
    }

    /// [`Engine::process_packet`] for a packet whose link layers (and
    /// perhaps checksum) the capture thread has already decoded.
    pub fn process_packet_prepared(&mut self, pkt: &Packet<'_>, prep: &Prepared) {
        self.stats.packets += 1;
        self.stats.bytes += u64::from(pkt.wire_len);
        if !(0.0..=MAX_PACKET_TIME).contains(&pkt.ts) {
            return self.weird(Weird::PacketTimeOutOfRange);
        }
        self.advance_time(pkt.ts);
        let ctx = PktCtx {
            t: pkt.ts,
            cap_total: pkt.data.len(),
            wire_total: pkt.wire_len as usize,
            l2: prep.l2,
            encap: &[],
            hint: prep.hint,
            ip_hint: prep.ip_hint,
        };
        match prep.l3(pkt.data) {
            Some(ip) => {
                let wire_left = ctx.wire_total.saturating_sub(prep.l3_start as usize);
                self.process_ip(ctx, ip, wire_left, false);
            }
            None => self.process_frame(ctx, pkt.link, pkt.data),
        }
    }

    fn process_frame(&mut self, ctx: PktCtx<'_>, link: LinkType, frame: &[u8]) {
        let mut l2 = L2Info::default();
        let mut frames = Frames::new();
        match decode_link_into(link, frame, &mut l2, &mut frames) {
            Ok(()) => {
                // The hint describes a frame holding a single packet.
                let hint = if frames.len() == 1 {
                    ctx.hint
                } else {
                    ChecksumHint::Unknown
                };
                let ctx = PktCtx { l2, hint, ..ctx };
                for f in &frames {
                    let wire_left = ctx.wire_total.saturating_sub(f.offset);
                    self.process_ip(ctx, f.data, wire_left, false);
                }
            }
            Err(LinkStop::NotIp) => self.stats.non_ip += 1,
            Err(LinkStop::Weird(w)) => self.weird(w),
        }
    }

    fn ignore_checksums_for(&self, src: &IpAddr) -> bool {
        self.cfg.ignore_checksums || self.cfg.ignore_checksums_nets.contains(src)
    }

    fn process_ip(&mut self, ctx: PktCtx<'_>, data: &[u8], wire_left: usize, reassembled: bool) {
        let ip = match parse_ip(data, wire_left, self.cfg.ignore_checksums) {
            IpOutcome::Packet(p) => p,
            IpOutcome::Drop(w) => return self.weird(w),
            IpOutcome::Stop => return,
        };
        if !reassembled && ip.is_v4() && !self.ignore_checksums_for(&ip.src) {
            let ok = match ctx.ip_hint {
                ChecksumHint::Good => true,
                ChecksumHint::Bad => false,
                ChecksumHint::Unknown => checksum::ipv4_header_ok(ip.header()),
            };
            if !ok {
                return self.weird(Weird::BadIpChecksum);
            }
        }
        if let Some(fi) = ip.frag {
            if !reassembled {
                if data.len() < ip.total_len as usize {
                    self.weird(Weird::IncompletelyCapturedFragment);
                    if fi.offset != 0 {
                        return;
                    }
                    // A first fragment cut short is analysed as it is.
                } else {
                    let full = self.frags.dropped(FragDrop::TableFull);
                    let memory = self.frags.dropped(FragDrop::Memory);
                    let result = self.frags.add(ctx.t, &ip);
                    self.sync_frag_stats();
                    for _ in full..self.frags.dropped(FragDrop::TableFull) {
                        self.weird(Weird::FragmentTableFull);
                    }
                    for _ in memory..self.frags.dropped(FragDrop::Memory) {
                        self.weird(Weird::FragmentMemoryFull);
                    }
                    match result {
                        FragResult::Pending | FragResult::Dropped(FragDrop::Memory) => return,
                        FragResult::Dropped(_) => {
                            return self.weird(Weird::FragmentDatagramOverBudget)
                        }
                        FragResult::Inconsistent => {
                            return self.weird(Weird::FragmentInconsistency)
                        }
                        FragResult::Complete(whole) => {
                            self.stats.fragments_reassembled += 1;
                            let n = whole.len();
                            let inner = PktCtx {
                                hint: ChecksumHint::Unknown,
                                ip_hint: ChecksumHint::Unknown,
                                cap_total: n,
                                wire_total: n,
                                ..ctx
                            };
                            return self.process_ip(inner, &whole, n, true);
                        }
                    }
                }
            }
        }
        if ip.last_header == ip::PROTO_ESP {
            return self.weird(Weird::EspPacket);
        }
        if ip.last_header == ip::PROTO_MOBILITY {
            return;
        }
        match ip.proto {
            PROTO_NONE => {
                if ctx.encap.last().map(|e| e.kind) != Some(TunnelKind::Teredo) {
                    self.weird(Weird::Ipv6NoNext);
                }
            }
            PROTO_IPIP | PROTO_IPV6 => {
                let d = tunnel::checked_ip(ip.payload, ip.proto);
                self.ip_tunnel(ctx, &ip, TunnelKind::Ip, d);
            }
            PROTO_GRE => {
                let d = tunnel::gre(ip.payload);
                self.ip_tunnel(ctx, &ip, TunnelKind::Gre, d);
            }
            PROTO_TCP => self.tcp_packet(ctx, &ip),
            PROTO_UDP => self.udp_packet(ctx, &ip),
            PROTO_ICMP | PROTO_ICMPV6 => self.icmp_packet(ctx, &ip),
            _ => self.unknown_packet(ctx, &ip),
        }
    }

    // --- tunnels --------------------------------------------------------

    fn ip_tunnel(&mut self, ctx: PktCtx<'_>, ip: &IpPacket<'_>, kind: TunnelKind, d: Decap<'_>) {
        if ctx.encap.len() >= self.cfg.tunnel_max_depth {
            return self.weird(Weird::ExceededTunnelMaxDepth);
        }
        let payload = match d {
            Decap::Inner { payload, .. } => payload,
            Decap::Drop(w) | Decap::Nothing(Some(w)) => return self.weird(w),
            Decap::Nothing(None) => return,
            Decap::Violation => return self.weird(Weird::TunnelViolation),
        };
        let (a, b) = (addr16(&ip.src), addr16(&ip.dst));
        let pair = if a < b { (a, b) } else { (b, a) };
        let now = self.network_time;
        let timeout = self.cfg.tunnel_ip_tunnel_timeout;
        let ec = match self.ip_tunnels.get_mut(&pair) {
            Some((ec, last)) if now - *last < timeout => {
                *last = now;
                *ec
            }
            _ => {
                if self.ip_tunnels.len() >= MAX_IP_TUNNELS {
                    self.ip_tunnels.retain(|_, (_, last)| now - *last < timeout);
                    if self.ip_tunnels.len() >= MAX_IP_TUNNELS {
                        self.ip_tunnels.clear();
                    }
                }
                let ec = EncapConn {
                    kind,
                    uid: self.new_uid(),
                    src: ip.src,
                    dst: ip.dst,
                    src_port: 0,
                    dst_port: 0,
                };
                self.ip_tunnels.insert(pair, (ec, now));
                ec
            }
        };
        let mut stack: EncapStack = ctx.encap.iter().copied().collect();
        stack.push(ec);
        self.decapsulated(ctx, &stack, payload, None);
    }

    /// Analyses a tunnel's payload with `stack` as its encapsulation.
    /// `wire_from` is (outer cap_total, outer wire_total) for UDP tunnels,
    /// whose inner wire length is derived from the outer packet's.
    fn decapsulated(
        &mut self,
        ctx: PktCtx<'_>,
        stack: &[EncapConn],
        payload: Payload<'_>,
        wire_from: Option<(usize, usize)>,
    ) {
        let data = match payload {
            Payload::Ip(d)
            | Payload::CheckedIp(d)
            | Payload::Ethernet(d)
            | Payload::Ieee80211(d) => d,
            Payload::NotIp => {
                self.stats.non_ip += 1;
                return;
            }
        };
        let (cap, wire) = match wire_from {
            Some((cap_total, wire_total)) => (
                data.len(),
                wire_total.saturating_sub(cap_total.saturating_sub(data.len())),
            ),
            None => (data.len(), data.len()),
        };
        let inner = PktCtx {
            hint: ChecksumHint::Unknown,
            ip_hint: ChecksumHint::Unknown,
            t: ctx.t,
            cap_total: cap,
            wire_total: wire,
            l2: L2Info::default(),
            encap: stack,
        };
        match payload {
            Payload::Ip(d) | Payload::CheckedIp(d) => self.process_ip(inner, d, wire, false),
            Payload::Ethernet(d) => self.process_frame(inner, LinkType::ETHERNET, d),
            Payload::Ieee80211(d) => self.process_frame(inner, LinkType::IEEE802_11, d),
            Payload::NotIp => {}
        }
    }

    /// UDP tunnels: the outer connection is the tunnel; its uid becomes the
    /// inner connections' parent.
    fn udp_tunnel(
        &mut self,
        ctx: PktCtx<'_>,
        slot: u32,
        is_orig: bool,
        kind: TunnelKind,
        udp_payload: &[u8],
        outer_ip: &IpPacket<'_>,
    ) {
        if kind == TunnelKind::Gre {
            // GRE in UDP is an IP tunnel between the outer addresses.
            let d = tunnel::gre(udp_payload);
            return self.ip_tunnel(ctx, outer_ip, TunnelKind::Gre, d);
        }
        let max_depth = self.cfg.tunnel_max_depth;
        let delay_teredo = self.cfg.tunnel_delay_teredo_confirmation;
        let delay_gtp = self.cfg.tunnel_delay_gtp_confirmation;
        let Some(conn) = self.slots[slot as usize].conn.as_mut() else {
            return;
        };
        let core = &mut conn.core;
        if kind != TunnelKind::Gtpv1 && core.tunnel.get(kind) == AnalyzerState::Violated {
            return;
        }
        if ctx.encap.len() >= max_depth {
            if kind != TunnelKind::Gtpv1 {
                core.check_history(HIST_ANALYZER_LIMIT_REACHED, b'X');
            }
            return self.weird(Weird::ExceededTunnelMaxDepth);
        }
        let in_gtp = ctx.encap.last().map(|e| e.kind) == Some(TunnelKind::Gtpv1);
        let d = match kind {
            TunnelKind::Vxlan => tunnel::vxlan(udp_payload),
            TunnelKind::Geneve => tunnel::geneve(udp_payload),
            TunnelKind::Teredo => tunnel::teredo(udp_payload),
            TunnelKind::Ayiya => tunnel::ayiya(udp_payload),
            TunnelKind::Gtpv1 => tunnel::gtpv1(udp_payload, in_gtp),
            TunnelKind::Ip | TunnelKind::Gre => return,
        };
        let payload = match d {
            Decap::Violation => {
                core.tunnel.set(kind, AnalyzerState::Violated);
                return self.weird(Weird::TunnelViolation);
            }
            Decap::Nothing(w) => {
                if let Some(w) = w {
                    self.weird(w);
                }
                return;
            }
            Decap::Drop(w) => return self.weird(w),
            Decap::Inner { payload, confirm } => {
                let dir = usize::from(!is_orig);
                let confirm = confirm
                    && match kind {
                        TunnelKind::Teredo => {
                            core.tunnel.teredo_valid[dir] = true;
                            !delay_teredo || core.tunnel.teredo_valid == [true, true]
                        }
                        TunnelKind::Gtpv1 => {
                            core.tunnel.gtp_valid[dir] = true;
                            !delay_gtp || core.tunnel.gtp_valid == [true, true]
                        }
                        _ => true,
                    };
                if confirm && core.tunnel.get(kind) == AnalyzerState::Unknown {
                    core.tunnel.set(kind, AnalyzerState::Confirmed);
                    core.add_service(kind.service());
                }
                payload
            }
        };
        if payload == Payload::NotIp {
            self.weird(Weird::TunnelEmptyPacket);
            return;
        }
        let ec = EncapConn {
            kind,
            uid: core.uid,
            src: core.orig_h,
            dst: core.resp_h,
            src_port: core.orig_p,
            dst_port: core.resp_p,
        };
        let mut stack: EncapStack = ctx.encap.iter().copied().collect();
        stack.push(ec);
        self.decapsulated(ctx, &stack, payload, Some((ctx.cap_total, ctx.wire_total)));
    }

    // --- connections ----------------------------------------------------

    fn likely_server(&self, proto: PortProto, port: u16) -> bool {
        self.cfg.likely_server_ports.contains(proto, port)
    }

    /// Finds the connection for a packet, or makes one (`NewConn`), or
    /// replaces a reused one. Returns the slot and whether the packet's
    /// sender is the originator.
    #[allow(clippy::too_many_arguments)]
    fn lookup_or_create(
        &mut self,
        ctx: &PktCtx<'_>,
        ip: &IpPacket<'_>,
        proto: Proto,
        sport: u16,
        dport: u16,
        one_way: bool,
        flip: bool,
        reuse: impl Fn(&Tcp) -> bool,
    ) -> (u32, bool) {
        let mut key = ConnKey::new(&ip.src, sport, &ip.dst, dport, ip.proto, one_way);
        if self.cfg.conn_key_vlan {
            key.vlan = ctx.l2.vlan().unwrap_or(NO_VLAN);
            key.inner_vlan = ctx.l2.inner_vlan().unwrap_or(NO_VLAN);
        }
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        let mut slot = self
            .index
            .find(hash, |s| {
                slots[*s as usize]
                    .conn
                    .as_ref()
                    .is_some_and(|c| c.key == key)
            })
            .copied();
        if let Some(s) = slot {
            let reused = match self.slots[s as usize].conn.as_ref().map(|c| &c.transport) {
                Some(Transport::Tcp(t)) => reuse(t),
                _ => false,
            };
            if reused {
                self.remove(s);
                slot = None;
            } else {
                self.check_encapsulation(s, ctx.encap);
            }
        }
        let slot = match slot {
            Some(s) => {
                self.interim_packet(s);
                s
            }
            None => self.new_conn(ctx, ip, key, hash, proto, sport, dport, flip),
        };
        // The slot was found or filled just above.
        let is_orig = self.slots[slot as usize]
            .conn
            .as_ref()
            .is_some_and(|c| ip.src == c.core.orig_h && sport == c.core.orig_p);
        (slot, is_orig)
    }

    #[allow(clippy::too_many_arguments)]
    fn new_conn(
        &mut self,
        ctx: &PktCtx<'_>,
        ip: &IpPacket<'_>,
        key: ConnKey,
        hash: u64,
        proto: Proto,
        sport: u16,
        dport: u16,
        flip: bool,
    ) -> u32 {
        let uid = self.new_uid();
        let t = ctx.t;
        let mut core = ConnCore {
            uid,
            proto,
            ip_proto: ip.proto,
            orig_h: ip.src,
            resp_h: ip.dst,
            orig_p: sport,
            resp_p: dport,
            start_time: t,
            last_time: t,
            history: SmallVec::new(),
            hist_seen: 0,
            l2: [ctx.l2.src(), ctx.l2.dst()],
            vlan: ctx.l2.vlan(),
            inner_vlan: ctx.l2.inner_vlan(),
            counts: Counters::default(),
            missed_bytes: 0,
            auth_failures: 0,
            services: SmallVec::new(),
            svc: None,
            svc_enabled: AnalyzerSet::none(),
            svc_flip_base: 0,
            svc_ignore_after: DEFAULT_IGNORE_VIOLATIONS_AFTER,
            encap: (!ctx.encap.is_empty()).then(|| Box::new(ctx.encap.iter().copied().collect())),
            tunnel_changes: 0,
            tunnel_parents: SmallVec::new(),
            tunnel: TunnelState::default(),
            inactivity_timeout: 0.0,
            inactivity_gen: 0,
            flips: 0,
        };
        if let Some(last) = ctx.encap.last() {
            core.tunnel_parents.push(last.uid);
        }
        if flip && !is_broadcast(&ip.dst) {
            core.flip();
        }
        let mut dns_attached = false;
        let l4 = match proto {
            Proto::Tcp => Some(L4::Tcp),
            Proto::Udp => Some(L4::Udp),
            _ => None,
        };
        if let Some(l4) = l4 {
            let scheduled = self.scheduled_for(&core, l4);
            for a in &scheduled {
                core.add_service(a.name());
            }
            if !self.cfg.analyzers.is_empty() {
                core.svc_enabled = self.cfg.analyzers;
                core.svc_flip_base = core.flips;
                core.svc_ignore_after = self.cfg.dpd_ignore_violations_after;
                let info = ConnInfo {
                    proto: l4,
                    orig_h: core.orig_h,
                    orig_p: core.orig_p,
                    resp_h: core.resp_h,
                    resp_p: core.resp_p,
                };
                if !scheduled.is_empty() {
                    // Rare: build now so the scheduled analyzers apply.
                    let mut svc = ServiceDetector::new(info, self.cfg.analyzers, &scheduled);
                    if self.cfg.dpd_ignore_violations_after != DEFAULT_IGNORE_VIOLATIONS_AFTER {
                        svc.set_ignore_violations_after(self.cfg.dpd_ignore_violations_after);
                    }
                    svc.set_limits(&self.cfg.analyzer_limits);
                    core.svc = Some(Box::new(svc));
                }
                dns_attached = l4 == L4::Udp
                    && ServiceDetector::port_attaches(
                        &info,
                        self.cfg.analyzers,
                        &scheduled,
                        Analyzer::Dns,
                    );
            }
        }
        let mut snap = Snapshots::default();
        if let Some(ic) = &self.cfg.interim {
            let (s, at) = Snapshots::new(t, ic);
            snap = s;
            // Filed before the transport's timers, so that a snapshot due
            // at the very time Zeek ends the connection (an unanswered SYN
            // at `tcp_attempt_delay`) is taken before the final record.
            self.fx.timers.push(TimerReq {
                at,
                kind: TimerKind::Interim,
                gen: 0,
            });
        }
        let transport = match proto {
            Proto::Tcp => {
                core.set_inactivity_timeout(self.cfg.udp_inactivity_timeout, &mut self.fx);
                Transport::Tcp(Tcp::new(
                    &mut core,
                    &mut self.fx,
                    &self.cfg,
                    self.network_time,
                ))
            }
            Proto::Udp => {
                core.set_inactivity_timeout(self.cfg.udp_inactivity_timeout, &mut self.fx);
                if dns_attached {
                    // The port-registered DNS analyzer ends UDP sessions
                    // after dns_session_timeout of quiet.
                    self.fx.timers.push(TimerReq {
                        at: self.network_time + self.cfg.dns_session_timeout,
                        kind: TimerKind::DnsExpire,
                        gen: 0,
                    });
                }
                Transport::Udp(Udp {
                    request_len: -1,
                    reply_len: -1,
                    chk: [(0, 1), (0, 1)],
                    dns_gen: 0,
                })
            }
            Proto::Icmp => {
                core.set_inactivity_timeout(self.cfg.icmp_inactivity_timeout, &mut self.fx);
                Transport::Icmp(Icmp {
                    request_len: -1,
                    reply_len: -1,
                })
            }
            Proto::Unknown => {
                core.set_inactivity_timeout(self.cfg.unknown_ip_inactivity_timeout, &mut self.fx);
                Transport::Unknown
            }
        };
        self.serial += 1;
        self.insert(Conn {
            key,
            hash,
            core,
            transport,
            serial: self.serial,
            snap,
        })
    }

    /// `Connection::CheckEncapsulation`.
    fn check_encapsulation(&mut self, slot: u32, encap: &[EncapConn]) {
        let max = self.cfg.tunnel_max_changes_per_connection;
        let Some(conn) = self.slots[slot as usize].conn.as_mut() else {
            return;
        };
        let core = &mut conn.core;
        let changed = match core.encap.as_deref() {
            Some(cur) => !encap.is_empty() && !same_stack(cur, encap) || encap.is_empty(),
            None => !encap.is_empty(),
        };
        if !changed {
            return;
        }
        if max != 0 && core.tunnel_changes >= max {
            core.check_history(HIST_ANALYZER_LIMIT_REACHED, b'X');
            self.stats.weirds.add(Weird::TunnelMaxChangesExceeded);
        } else {
            core.tunnel_changes += 1;
            if let Some(last) = encap.last() {
                if !core.tunnel_parents.contains(&last.uid) {
                    core.tunnel_parents.push(last.uid);
                }
            }
        }
        core.encap = (!encap.is_empty()).then(|| Box::new(encap.iter().copied().collect()));
    }

    fn scheduled_for(&mut self, core: &ConnCore, l4: L4) -> SmallVec<[Analyzer; 1]> {
        let now = self.network_time;
        self.expected.retain(|e| e.expires > now);
        self.expected
            .iter()
            .filter(|e| {
                e.proto == l4
                    && e.resp == core.resp_h
                    && e.resp_p == core.resp_p
                    && e.orig.is_none_or(|o| o == core.orig_h)
                    && self.cfg.analyzers.contains(e.analyzer)
            })
            .map(|e| e.analyzer)
            .collect()
    }

    /// Applies what protocol detection reported for a connection.
    fn apply_service_events(&mut self, slot: u32) {
        if self.fx.svc_events.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.fx.svc_events);
        for ev in events {
            let Some(conn) = self.slots[slot as usize].conn.as_mut() else {
                return;
            };
            match ev {
                ServiceEvent::Confirmed(a) => {
                    conn.core.add_service(a.name());
                    if matches!(a, Analyzer::Ssh | Analyzer::Ftp) {
                        conn.core
                            .set_inactivity_timeout(self.cfg.long_inactivity_timeout, &mut self.fx);
                    }
                }
                ServiceEvent::Violation(a) => {
                    self.stats.analyzer_violations.add(a);
                    let size = match &conn.transport {
                        Transport::Tcp(t) => t.size(0) + t.size(1),
                        Transport::Udp(u) => (u.request_len.max(0) + u.reply_len.max(0)) as u64,
                        _ => 0,
                    };
                    let after = self.cfg.dpd_ignore_violations_after;
                    if after == 0 || size <= after {
                        conn.core.remove_service(a.name());
                    }
                }
                ServiceEvent::AuthFailure => {
                    conn.core.auth_failures = conn.core.auth_failures.saturating_add(1);
                }
                ServiceEvent::LimitReached(w) => {
                    // `Connection::LimitReachedWeird`: the weird every time,
                    // the letter once; appended now, while the packet that
                    // carried the data is handled, as Zeek does.
                    conn.core.check_history(HIST_ANALYZER_LIMIT_REACHED, b'X');
                    self.stats.weirds.add(w);
                    tracing::debug!(uid = %conn.core.uid, weird = w.name(), "analyzer limit reached");
                }
                ServiceEvent::FlipRoles => {
                    if let Transport::Tcp(t) = &mut conn.transport {
                        // Only UDP analyzers flip; keep TCP consistent anyway.
                        let _ = t;
                    } else {
                        conn.core.flip();
                    }
                }
                ServiceEvent::Expect {
                    orig_h,
                    resp_h,
                    resp_p,
                    proto,
                    analyzer,
                    timeout_secs,
                } => {
                    let expires = self.network_time + timeout_secs;
                    if let Some(e) = self.expected.iter_mut().find(|e| {
                        e.orig == orig_h
                            && e.resp == resp_h
                            && e.resp_p == resp_p
                            && e.proto == proto
                            && e.analyzer == analyzer
                    }) {
                        if e.expires < expires {
                            e.expires = expires;
                        }
                    } else {
                        if self.expected.len() >= MAX_EXPECTED {
                            self.expected.remove(0);
                        }
                        self.expected.push(Expected {
                            orig: orig_h,
                            resp: resp_h,
                            resp_p,
                            proto,
                            analyzer,
                            expires,
                        });
                    }
                }
            }
        }
    }

    fn count(&mut self, slot: u32, is_orig: bool, ip_bytes: u32) {
        if let Some(conn) = self.slots[slot as usize].conn.as_mut() {
            let d = usize::from(!is_orig);
            conn.core.counts.pkts[d] += 1;
            conn.core.counts.ip_bytes[d] += u64::from(ip_bytes);
        }
    }

    /// Zeek's `CheckHeaderTrunc`.
    fn header_trunc(&mut self, ip: &IpPacket<'_>, min: usize) -> bool {
        if ip.payload_len != 0 && (ip.payload_len as usize) < min {
            self.weird(Weird::TruncatedTransportHeader);
            true
        } else if ip.payload.len() < min {
            self.weird(Weird::InternallyTruncatedHeader);
            true
        } else {
            false
        }
    }

    /// Zeek's transport `len`: the IP payload length, or what was captured
    /// when the IP length field is zero (segmentation offload).
    fn transport_len(ip: &IpPacket<'_>) -> usize {
        if ip.payload_len == 0 {
            ip.payload.len()
        } else {
            ip.payload_len as usize
        }
    }

    fn tcp_packet(&mut self, ctx: PktCtx<'_>, ip: &IpPacket<'_>) {
        if self.header_trunc(ip, 20) {
            return;
        }
        let h = ip.payload;
        let sport = u16::from_be_bytes([h[0], h[1]]);
        let dport = u16::from_be_bytes([h[2], h[3]]);
        let seq = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        let ackn = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
        let off_ok = usize::from(h[12] >> 4) >= 5;
        let flags = h[13];
        let window = u16::from_be_bytes([h[14], h[15]]);

        // WantConnection (tcp/TCP.cc): a connection that starts without a
        // pure SYN is flipped when its source port looks like a server's.
        let mut flip = false;
        if (flags & tcp::SYN == 0 || flags & tcp::ACK != 0)
            && self.likely_server(PortProto::Tcp, sport)
        {
            flip = if self.likely_server(PortProto::Tcp, dport) {
                flags & tcp::SYN == 0 && sport < dport
            } else {
                true
            };
        }
        let (slot, is_orig) =
            self.lookup_or_create(&ctx, ip, Proto::Tcp, sport, dport, false, flip, |t| {
                t.is_reuse(flags, seq, off_ok)
            });

        let len = Self::transport_len(ip);
        let remaining = ip.payload.len();
        let hdr_len = usize::from(h[12] >> 4) * 4;
        if hdr_len < 20 {
            self.push_timers(slot);
            return self.weird(Weird::BadTcpHeaderLen);
        }
        if hdr_len > len || hdr_len > remaining {
            self.push_timers(slot);
            return self.weird(Weird::TruncatedTransportHeader);
        }
        let plen = len - hdr_len;
        let caplen = remaining - hdr_len;
        if !self.ignore_checksums_for(&ip.src) && caplen >= plen {
            let seg = &ip.payload[..hdr_len + plen];
            let ok = match ctx.hint {
                ChecksumHint::Good => true,
                ChecksumHint::Bad => false,
                ChecksumHint::Unknown => checksum::transport_ok(&ip.src, &ip.dst, PROTO_TCP, seg),
            };
            if !ok {
                self.weird(Weird::BadTcpChecksum);
                if let Some(conn) = self.slots[slot as usize].conn.as_mut() {
                    if let Transport::Tcp(t) = &mut conn.transport {
                        t.checksum_error(&mut conn.core, usize::from(!is_orig));
                    }
                }
                self.push_timers(slot);
                return;
            }
        }
        let payload = &ip.payload[hdr_len..hdr_len + caplen.min(plen)];
        let segment = Segment {
            flags,
            seq,
            ack: ackn,
            window,
            len: plen as u32,
            payload,
        };
        let t = ctx.t;
        let Some(conn) = self.slots[slot as usize].conn.as_mut() else {
            return;
        };
        let Transport::Tcp(tcp) = &mut conn.transport else {
            return;
        };
        let tctx = tcp::Ctx { cfg: &self.cfg, t };
        let flips_before = conn.core.flips;
        let mut is_orig_after = tcp.process(&mut conn.core, &mut self.fx, &tctx, is_orig, &segment);
        if conn.core.flips != flips_before {
            is_orig_after = is_orig ^ ((conn.core.flips - flips_before) % 2 == 1);
        }
        if tcp.established_event {
            // Conn::port_inactivity_timeouts, from connection_established.
            let mut service_port = conn.core.resp_p;
            if tcp.orig_inactive()
                && !self
                    .cfg
                    .likely_server_ports
                    .contains(PortProto::Tcp, service_port)
                && self
                    .cfg
                    .likely_server_ports
                    .contains(PortProto::Tcp, conn.core.orig_p)
            {
                service_port = conn.core.orig_p;
            }
            if self.cfg.long_inactivity_ports.contains(&service_port) {
                conn.core
                    .set_inactivity_timeout(self.cfg.long_inactivity_timeout, &mut self.fx);
            }
        }
        self.sync_reasm_stats();
        self.count(slot, is_orig_after, ip.total_len);
        self.apply_service_events(slot);
        self.interim_closing(slot);
        self.push_timers(slot);
    }

    fn udp_packet(&mut self, ctx: PktCtx<'_>, ip: &IpPacket<'_>) {
        if self.header_trunc(ip, 8) {
            return;
        }
        let h = ip.payload;
        let sport = u16::from_be_bytes([h[0], h[1]]);
        let dport = u16::from_be_bytes([h[2], h[3]]);
        let ulen = i64::from(u16::from_be_bytes([h[4], h[5]]));
        let chksum = u16::from_be_bytes([h[6], h[7]]);
        let flip =
            self.likely_server(PortProto::Udp, sport) && !self.likely_server(PortProto::Udp, dport);
        let (slot, is_orig) =
            self.lookup_or_create(&ctx, ip, Proto::Udp, sport, dport, false, flip, |_| false);

        let len = Self::transport_len(ip);
        let remaining = ip.payload.len();
        let mut validate = !self.ignore_checksums_for(&ip.src)
            && remaining >= len
            && ctx.wire_total <= ctx.cap_total;
        if validate
            && len > 8 + 8 + 14
            && h.get(8).is_some_and(|b| b & 0x08 == 0x08)
            && dport == VXLAN_PORT
        {
            // VXLAN sends zero checksums; a non-zero one is checked only
            // if Tunnel::validate_vxlan_checksums.
            validate = chksum != 0 && self.cfg.tunnel_validate_vxlan_checksums;
        }
        if validate {
            let seg = &ip.payload[..len.min(remaining)];
            let bad = match ctx.hint {
                ChecksumHint::Good => false,
                ChecksumHint::Bad => true,
                ChecksumHint::Unknown if ip.is_v4() => {
                    chksum != 0 && !checksum::transport_ok(&ip.src, &ip.dst, PROTO_UDP, seg)
                }
                ChecksumHint::Unknown => !checksum::transport_ok(&ip.src, &ip.dst, PROTO_UDP, seg),
            };
            if bad {
                self.weird(Weird::BadUdpChecksum);
                if let Some(conn) = self.slots[slot as usize].conn.as_mut() {
                    if let Transport::Udp(u) = &mut conn.transport {
                        let d = usize::from(!is_orig);
                        let (cnt, thr) = &mut u.chk[d];
                        conn.core
                            .scaled_history(if is_orig { b'C' } else { b'c' }, cnt, thr);
                    }
                }
                self.push_timers(slot);
                return;
            }
        }
        let payload = &ip.payload[8..len.min(remaining).max(8)];
        let resp_p;
        {
            let Some(conn) = self.slots[slot as usize].conn.as_mut() else {
                return;
            };
            conn.core.last_time = ctx.t;
            let Transport::Udp(u) = &mut conn.transport else {
                return;
            };
            let add = ulen - 8;
            if is_orig {
                conn.core.check_history(0x1, b'D');
                u.request_len = if u.request_len < 0 {
                    add
                } else {
                    u.request_len + add
                };
            } else {
                conn.core.check_history(0x2, b'd');
                u.reply_len = if u.reply_len < 0 {
                    add
                } else {
                    u.reply_len + add
                };
            }
            resp_p = conn.core.resp_p;
        }
        // Tunnels are dispatched on the responder port, then by content.
        let kind = match resp_p {
            VXLAN_PORT => Some(TunnelKind::Vxlan),
            GENEVE_PORT => Some(TunnelKind::Geneve),
            TEREDO_PORT => Some(TunnelKind::Teredo),
            AYIYA_PORT => Some(TunnelKind::Ayiya),
            GTP_U_PORT | GTP_C_PORT => Some(TunnelKind::Gtpv1),
            GRE_UDP_PORT => Some(TunnelKind::Gre),
            _ if tunnel::teredo_detect(payload) => Some(TunnelKind::Teredo),
            _ if tunnel::ayiya_detect(payload) => Some(TunnelKind::Ayiya),
            _ => None,
        };
        self.push_timers(slot);
        if let Some(kind) = kind {
            self.udp_tunnel(ctx, slot, is_orig, kind, payload, ip);
        }
        // The tunnel's inner packets cannot have removed this connection
        // (timers only fire between packets), but stay defensive.
        let Some(conn) = self.slots[slot as usize].conn.as_mut() else {
            return;
        };
        if conn.core.wants_service() && !payload.is_empty() {
            if let Some(svc) = conn.core.detector(&self.cfg.analyzer_limits) {
                svc.deliver(is_orig, payload, &mut self.fx.svc_events);
            }
        }
        self.apply_service_events(slot);
        self.count(slot, is_orig, ip.total_len);
        self.push_timers(slot);
    }

    fn icmp_packet(&mut self, ctx: PktCtx<'_>, ip: &IpPacket<'_>) {
        if self.header_trunc(ip, 8) {
            return;
        }
        let h = ip.payload;
        let (ty, code) = (h[0], h[1]);
        let (counter, one_way) = icmp::counterpart(ip.proto != PROTO_ICMP, ty, code);
        let (slot, is_orig) = self.lookup_or_create(
            &ctx,
            ip,
            Proto::Icmp,
            u16::from(ty),
            counter,
            one_way,
            false,
            |_| false,
        );
        let len = Self::transport_len(ip);
        let remaining = ip.payload.len();
        if !self.ignore_checksums_for(&ip.src) && remaining >= len {
            let seg = &ip.payload[..len];
            let ok = match ctx.hint {
                ChecksumHint::Good => true,
                ChecksumHint::Bad => false,
                ChecksumHint::Unknown if ip.proto == PROTO_ICMP => checksum::icmp4_ok(seg),
                ChecksumHint::Unknown => {
                    checksum::transport_ok(&ip.src, &ip.dst, PROTO_ICMPV6, seg)
                }
            };
            if !ok {
                self.weird(Weird::BadIcmpChecksum);
                self.push_timers(slot);
                return;
            }
        }
        if let Some(conn) = self.slots[slot as usize].conn.as_mut() {
            conn.core.last_time = ctx.t;
            if let Transport::Icmp(i) = &mut conn.transport {
                let add = len as i64 - 8;
                let l = if is_orig {
                    &mut i.request_len
                } else {
                    &mut i.reply_len
                };
                *l = if *l < 0 { add } else { *l + add };
            }
        }
        if remaining >= len {
            self.count(slot, is_orig, ip.total_len);
        }
        self.push_timers(slot);
    }

    fn unknown_packet(&mut self, ctx: PktCtx<'_>, ip: &IpPacket<'_>) {
        let (slot, is_orig) =
            self.lookup_or_create(&ctx, ip, Proto::Unknown, 0, 0, false, false, |_| false);
        if let Some(conn) = self.slots[slot as usize].conn.as_mut() {
            conn.core.last_time = ctx.t;
        }
        self.count(slot, is_orig, ip.total_len);
        self.push_timers(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rstos0_pattern() {
        assert!(rstos0_history(b"SR"));
        assert!(rstos0_history(b"^SdR"));
        assert!(!rstos0_history(b"SAR"));
        assert!(!rstos0_history(b"R"));
        assert!(rstos0_history(b"ScR"));
    }

    #[test]
    fn icmp_counterparts() {
        assert_eq!(icmp::counterpart(false, 8, 0), (0, false));
        assert_eq!(icmp::counterpart(false, 3, 1), (1, true));
        assert_eq!(icmp::counterpart(true, 135, 0), (136, false));
        assert_eq!(icmp::counterpart(true, 1, 4), (4, true));
    }

    #[test]
    fn keys_are_symmetric_unless_one_way() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(
            ConnKey::new(&a, 1000, &b, 80, 6, false),
            ConnKey::new(&b, 80, &a, 1000, 6, false)
        );
        assert_ne!(
            ConnKey::new(&a, 3, &b, 1, 1, true),
            ConnKey::new(&b, 3, &a, 1, 1, true)
        );
    }
}
