//! TCP as Zeek tracks it: the per-endpoint state machine, sequence-number
//! bookkeeping with 64-bit wrap tracking, history letters, and the parts of
//! the stream reassembler that decide content gaps (`missed_bytes`, `G`),
//! close deferral and what reaches protocol detection.
//!
//! Sources, all in the Zeek tree:
//! `src/packet_analysis/protocol/tcp/TCPSessionAdapter.cc` (Process, the
//! Update*State functions, ConnectionClosed, the timers, IsReuse),
//! `src/analyzer/protocol/tcp/TCP_Endpoint.cc` (Size, CheckHistory, SetState),
//! `src/analyzer/protocol/tcp/TCP_Reassembler.cc` and `src/Reassem.cc`
//! (DataSent, AckReceived, Undelivered, Gap, DataPending, CheckEOF).
//!
//! Limits: at most [`MAX_BLOCKS`] buffered segment ranges per endpoint,
//! and a byte budget per connection (`tcp_reassembly_flow_bytes`) and per
//! engine (`tcp_reassembly_total_bytes`) on what reassembly holds: the
//! ranges and the out-of-order payload kept for protocol detection. The
//! budgets hold whatever the peer acknowledges: Zeek's no-ACK rule
//! (`tcp_max_above_hole_without_any_acks`) is kept as Zeek has it, but one
//! spoofed ACK turns it off, so it cannot be what bounds memory. A
//! connection over budget first loses its stored payload (protocol
//! detection sees a gap), then its ranges (the reassembler stops
//! delivering, as Zeek does past `tcp_excessive_data_without_further_acks`).
//! Every such loss is a weird and counted in bytes by [`ReasmDrop`].

use std::collections::VecDeque;

use smallvec::SmallVec;

use super::config::EngineConfig;
use super::core::{ConnCore, Effects};
use super::timer::{TimerKind, TimerReq};
use super::verify::Verifier;
use crate::decode::weird::Weird;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

const TOO_LARGE_SEQ_DELTA: i32 = 1_048_576;
const ORIG: u8 = 1;
const RESP: u8 = 2;

/// Segment ranges an endpoint's reassembler keeps before it gives up.
pub const MAX_BLOCKS: usize = 4096;
/// Bytes charged per slot of an endpoint's range list.
const BLOCK_COST: usize = 16;
/// Bytes charged per slot of the stored-payload list, and per stored piece
/// (its allocation's header), on top of the payload itself.
const PIECE_SLOT_COST: usize = 32;
const PIECE_ALLOC_COST: usize = 16;

/// Why reassembly gave up bytes it held or would have held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReasmDrop {
    /// The connection reached `tcp_reassembly_flow_bytes`.
    FlowBudget,
    /// All connections together reached `tcp_reassembly_total_bytes`.
    Memory,
    /// Zeek's `tcp_max_above_hole_without_any_acks`.
    AboveHoleWithoutAcks,
    /// Zeek's `tcp_excessive_data_without_further_acks`.
    ExcessiveData,
    /// More than [`MAX_BLOCKS`] ranges in one direction.
    TooManyBlocks,
}

impl ReasmDrop {
    pub const ALL: [ReasmDrop; 5] = [
        ReasmDrop::FlowBudget,
        ReasmDrop::Memory,
        ReasmDrop::AboveHoleWithoutAcks,
        ReasmDrop::ExcessiveData,
        ReasmDrop::TooManyBlocks,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// Metric label.
    pub fn name(self) -> &'static str {
        match self {
            ReasmDrop::FlowBudget => "flow_budget",
            ReasmDrop::Memory => "memory",
            ReasmDrop::AboveHoleWithoutAcks => "above_hole_without_acks",
            ReasmDrop::ExcessiveData => "excessive_data",
            ReasmDrop::TooManyBlocks => "too_many_blocks",
        }
    }

    fn weird(self) -> Weird {
        match self {
            ReasmDrop::FlowBudget => Weird::TcpReassemblyFlowBudget,
            ReasmDrop::Memory => Weird::TcpReassemblyMemory,
            ReasmDrop::AboveHoleWithoutAcks => Weird::AboveHoleDataWithoutAnyAcks,
            ReasmDrop::ExcessiveData => Weird::ExcessiveDataWithoutFurtherAcks,
            ReasmDrop::TooManyBlocks => Weird::TcpReassemblyTooManyBlocks,
        }
    }
}

/// The engine's account of TCP reassembly memory: what all its
/// connections hold, and what was given up. Lives in [`Effects`] so that
/// the state machine can check the engine-wide budget without a lock or a
/// back reference; the engine drains `weirds`.
#[derive(Debug, Default)]
pub struct ReasmLedger {
    /// Bytes charged for all connections (each keeps its own share in
    /// `Tcp::charged`, returned when the connection goes).
    pub held: usize,
    /// Bytes given up (held and freed, or refused), by [`ReasmDrop`] index.
    pub dropped_bytes: [u64; ReasmDrop::COUNT],
    /// Weirds raised since the engine last looked.
    pub weirds: SmallVec<[Weird; 2]>,
}

// History bits (TCP_Endpoint::HIST_*), shifted by 16 for the responder.
const HIST_SYN_PKT: u32 = 0x1;
const HIST_FIN_PKT: u32 = 0x2;
const HIST_RST_PKT: u32 = 0x4;
const HIST_FIN_RST_PKT: u32 = 0x8;
const HIST_DATA_PKT: u32 = 0x10;
const HIST_ACK_PKT: u32 = 0x20;
const HIST_MULTI_FLAG_PKT: u32 = 0x40;

/// An endpoint's state (`EndpointState`); the numbers are Zeek's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EpState {
    Inactive = 0,
    SynSent = 1,
    SynAckSent = 2,
    Partial = 3,
    Established = 4,
    Closed = 5,
    Reset = 6,
}

fn is_handshake(s: EpState) -> bool {
    matches!(
        s,
        EpState::Inactive | EpState::SynSent | EpState::SynAckSent
    )
}

#[inline]
fn seq_delta(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

fn seq_between(a: u32, b: u32, c: u32) -> bool {
    if b <= c {
        a >= b && a <= c
    } else {
        a >= b || a <= c
    }
}

/// One TCP segment as the state machine needs it.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    /// Payload length from the IP header (may exceed what was captured).
    pub len: u32,
    /// Captured payload, at most `len` bytes.
    pub payload: &'a [u8],
}

/// The reassembler's view of one direction of the stream: which sequence
/// ranges it holds (not the bytes, except what protocol detection needs).
#[derive(Debug)]
struct Reassembler {
    last_reassem_seq: u64,
    trim_seq: u64,
    /// Sorted, non-overlapping [seq, upper) ranges still held.
    blocks: VecDeque<(u64, u64)>,
    skip_deliveries: bool,
    did_eof: bool,
    /// Bytes of held ranges kept for protocol detection, by start seq.
    dpd_data: Vec<(u64, Vec<u8>)>,
    dpd_bytes: usize,
    /// A budget weird was raised for this direction already (one per
    /// connection direction is enough to see it; bytes are all counted).
    budget_weird: bool,
}

impl Default for Reassembler {
    fn default() -> Self {
        Reassembler {
            last_reassem_seq: 1,
            trim_seq: 1,
            blocks: VecDeque::new(),
            skip_deliveries: false,
            did_eof: false,
            dpd_data: Vec::new(),
            dpd_bytes: 0,
            budget_weird: false,
        }
    }
}

impl Reassembler {
    fn data_size(&self) -> u64 {
        self.blocks.iter().map(|(s, u)| u - s).sum()
    }

    fn num_undelivered(&self) -> u64 {
        self.blocks
            .back()
            .map_or(0, |b| b.1.saturating_sub(self.last_reassem_seq))
    }

    /// Forgets every range and stored byte, returning the memory (a
    /// cleared list would keep its capacity).
    fn clear_blocks(&mut self) {
        self.blocks = VecDeque::new();
        self.clear_dpd();
    }

    fn clear_dpd(&mut self) {
        self.dpd_data = Vec::new();
        self.dpd_bytes = 0;
    }

    /// Bytes this direction's reassembly holds, as charged to the budgets.
    fn cost(&self) -> usize {
        self.blocks.capacity() * BLOCK_COST
            + self.dpd_data.capacity() * PIECE_SLOT_COST
            + self.dpd_data.len() * PIECE_ALLOC_COST
            + self.dpd_bytes
    }

    /// Adds the parts of [seq, upper) not held yet; returns the index of the
    /// first part added (`DataBlockList::Insert`), if any.
    fn insert(&mut self, seq: u64, upper: u64) -> Option<usize> {
        let mut first = None;
        let mut cur = seq;
        let mut i = self.blocks.partition_point(|b| b.1 <= cur);
        while cur < upper {
            let (bs, bu) = match self.blocks.get(i) {
                Some(b) => *b,
                None => (u64::MAX, u64::MAX),
            };
            if cur < bs {
                let end = upper.min(bs);
                self.blocks.insert(i, (cur, end));
                first.get_or_insert(i);
                i += 1;
                cur = end;
            } else {
                cur = cur.max(bu);
                i += 1;
            }
        }
        first
    }
}

/// One side of the connection (`TCP_Endpoint`).
#[derive(Debug)]
pub struct Endpoint {
    pub state: EpState,
    pub prev_state: EpState,
    start_seq: i64,
    last_seq: u32,
    ack_seq: u32,
    seq_wraps: u32,
    ack_wraps: u32,
    fin_seq: u64,
    fin_cnt: u32,
    rst_cnt: u32,
    pub did_close: bool,
    hist_last_syn: u64,
    hist_last_fin: u64,
    hist_last_rst: u64,
    gap_cnt: u32,
    gap_thresh: u32,
    pub chk_cnt: u32,
    pub chk_thresh: u32,
    rxmt_cnt: u32,
    rxmt_thresh: u32,
    win0_cnt: u32,
    win0_thresh: u32,
    last_time: f64,
    reasm: Reassembler,
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint {
            state: EpState::Inactive,
            prev_state: EpState::Inactive,
            start_seq: 0,
            last_seq: 0,
            ack_seq: 0,
            seq_wraps: 0,
            ack_wraps: 0,
            fin_seq: 0,
            fin_cnt: 0,
            rst_cnt: 0,
            did_close: false,
            hist_last_syn: 0,
            hist_last_fin: 0,
            hist_last_rst: 0,
            gap_cnt: 0,
            gap_thresh: 1,
            chk_cnt: 0,
            chk_thresh: 1,
            rxmt_cnt: 0,
            rxmt_thresh: 1,
            win0_cnt: 0,
            win0_thresh: 1,
            last_time: 0.0,
            reasm: Reassembler::default(),
        }
    }
}

impl Endpoint {
    fn start_seq_u32(&self) -> u32 {
        self.start_seq as u32
    }

    fn init_start_seq(&mut self, seq: u32) {
        self.start_seq = i64::from(seq);
    }

    fn update_last_seq(&mut self, seq: u32) {
        if seq < self.last_seq {
            self.seq_wraps += 1;
        }
        self.last_seq = seq;
    }

    fn update_ack_seq(&mut self, seq: u32) {
        if seq < self.ack_seq {
            self.ack_wraps += 1;
        }
        self.ack_seq = seq;
    }

    fn full(seq: u32, wraps: u32) -> u64 {
        (u64::from(wraps) << 32) + u64::from(seq)
    }

    fn to_relative(&self, seq: u32, wraps: u32) -> u64 {
        Self::full(seq, wraps).wrapping_sub(self.start_seq as u64)
    }

    fn no_data_acked(&self) -> bool {
        let ack = Self::full(self.ack_seq, self.ack_wraps);
        let start = self.start_seq as u64;
        ack == start || ack == start.wrapping_add(1)
    }

    fn is_clean(&self) -> bool {
        self.state == EpState::Established
            || (self.state == EpState::Closed && self.prev_state == EpState::Established)
    }
}

/// TCP state of one connection (`TCPSessionAdapter` with its two
/// endpoints); `ep[0]` is always the current originator.
#[derive(Debug)]
pub struct Tcp {
    pub ep: [Endpoint; 2],
    is_active: bool,
    is_partial: bool,
    first_packet_seen: u8,
    close_deferred: bool,
    deferred_gen_event: bool,
    /// Generation of this adapter's timers; bumped by `CancelTimers`.
    pub timer_gen: u32,
    /// `connection_established` was raised by the current packet.
    pub established_event: bool,
    /// Whether protocol detection still wants stream data.
    pub want_stream: bool,
    /// Whether the originator has proven its address (`verify.rs`).
    pub verify: Verifier,
    /// Bytes of reassembly memory charged to the engine's ledger for this
    /// connection (see [`Tcp::release`]).
    charged: usize,
}

/// Context the state machine needs from outside the connection.
pub struct Ctx<'c> {
    pub cfg: &'c EngineConfig,
    pub t: f64,
}

impl Tcp {
    /// A new adapter; schedules Zeek's initial `tcp_SYN_timeout` expire
    /// timer.
    pub fn new(
        core: &mut ConnCore,
        fx: &mut Effects,
        cfg: &EngineConfig,
        network_time: f64,
    ) -> Self {
        let tcp = Tcp {
            ep: [Endpoint::default(), Endpoint::default()],
            is_active: true,
            is_partial: false,
            first_packet_seen: 0,
            close_deferred: false,
            deferred_gen_event: false,
            timer_gen: 0,
            established_event: false,
            want_stream: !core.svc_enabled.is_empty() || core.svc.is_some(),
            verify: Verifier::default(),
            charged: 0,
        };
        fx.timers.push(TimerReq {
            at: network_time + cfg.tcp_syn_timeout,
            kind: TimerKind::TcpExpire,
            gen: 0,
        });
        tcp
    }

    fn add_timer(&self, fx: &mut Effects, at: f64, kind: TimerKind) {
        fx.timers.push(TimerReq {
            at,
            kind,
            gen: self.timer_gen,
        });
    }

    fn cancel_timers(&mut self) {
        self.timer_gen = self.timer_gen.wrapping_add(1);
    }

    /// Swaps originator and responder (adapter part of `FlipRoles`).
    fn flip(&mut self, core: &mut ConnCore) {
        self.ep.swap(0, 1);
        let f = self.first_packet_seen;
        self.first_packet_seen =
            (if f & ORIG != 0 { RESP } else { 0 }) | (if f & RESP != 0 { ORIG } else { 0 });
        self.is_partial = false;
        self.verify.flip();
        core.flip();
    }

    /// Payload bytes an endpoint sent, from sequence numbers
    /// (`TCP_Endpoint::Size`).
    pub fn size(&self, idx: usize) -> u64 {
        let ep = &self.ep[idx];
        let peer = &self.ep[1 - idx];
        if ep.prev_state == EpState::SynSent
            && ep.state == EpState::Reset
            && peer.state == EpState::Inactive
            && !ep.no_data_acked()
        {
            return 0;
        }
        let last = Endpoint::full(ep.last_seq, ep.seq_wraps);
        let ack = Endpoint::full(ep.ack_seq, ep.ack_wraps);
        // Neither the SYN nor a FIN occupies payload space.
        let mut size = if last > ack { last } else { ack }.wrapping_sub(ep.start_seq as u64);
        size = size.saturating_sub(1);
        if ep.fin_cnt > 0 {
            size = size.saturating_sub(1);
        }
        size
    }

    fn set_state(
        &mut self,
        core: &mut ConnCore,
        fx: &mut Effects,
        cfg: &EngineConfig,
        idx: usize,
        new: EpState,
    ) {
        let cur = self.ep[idx].state;
        if new != cur {
            if !is_handshake(new) && is_handshake(cur) && is_handshake(self.ep[1 - idx].state) {
                core.set_inactivity_timeout(cfg.tcp_inactivity_timeout, fx);
            }
            self.ep[idx].prev_state = cur;
            self.ep[idx].state = new;
        }
    }

    /// `TCP_Endpoint::CheckHistory` for endpoint `e`; returns the endpoint's
    /// index afterwards (a SYN-ACK-first connection flips here) and whether
    /// the letter had been seen.
    fn check_history(
        &mut self,
        core: &mut ConnCore,
        mut e: usize,
        mask: u32,
        code: u8,
    ) -> (usize, bool) {
        if (code == b'A' || code == b'D') && core.history.as_slice() == b"H" {
            // Began with a SYN-ACK and now shows productive traffic: the
            // SYN-ACK sender was the responder after all.
            self.flip(core);
            e = 1 - e;
            core.history.clear();
            core.history.extend_from_slice(b"^h");
            self.first_packet_seen |= ORIG;
        }
        let (mask, code) = if e == 0 {
            (mask, code)
        } else {
            (mask << 16, code.to_ascii_lowercase())
        };
        (e, core.check_history(mask, code))
    }

    fn add_history(core: &mut ConnCore, e: usize, code: u8) {
        core.add_history(if e == 0 {
            code
        } else {
            code.to_ascii_lowercase()
        });
    }

    fn update_history(
        &mut self,
        core: &mut ConnCore,
        mut e: usize,
        flags: u8,
        rel_seq: u64,
        len: u32,
    ) -> usize {
        let bits =
            u8::from(flags & SYN != 0) + u8::from(flags & FIN != 0) + u8::from(flags & RST != 0);
        if bits > 1 {
            if flags & FIN != 0 && flags & RST != 0 {
                e = self.check_history(core, e, HIST_FIN_RST_PKT, b'I').0;
            } else {
                e = self.check_history(core, e, HIST_MULTI_FLAG_PKT, b'Q').0;
            }
        } else if bits == 1 {
            if flags & SYN != 0 {
                let code = if flags & ACK != 0 { b'H' } else { b'S' };
                let (ne, seen) = self.check_history(core, e, HIST_SYN_PKT, code);
                e = ne;
                if seen && rel_seq != self.ep[e].hist_last_syn {
                    Self::add_history(core, e, code);
                }
                self.ep[e].hist_last_syn = rel_seq;
            }
            if flags & FIN != 0 {
                let fin_at = rel_seq.wrapping_add(u64::from(len));
                let (ne, seen) = self.check_history(core, e, HIST_FIN_PKT, b'F');
                e = ne;
                if seen && fin_at != self.ep[e].hist_last_fin {
                    Self::add_history(core, e, b'F');
                }
                self.ep[e].hist_last_fin = fin_at;
            }
            if flags & RST != 0 {
                let (ne, seen) = self.check_history(core, e, HIST_RST_PKT, b'R');
                e = ne;
                if seen && rel_seq != self.ep[e].hist_last_rst {
                    Self::add_history(core, e, b'R');
                }
                self.ep[e].hist_last_rst = rel_seq;
            }
        } else if len > 0 {
            e = self.check_history(core, e, HIST_DATA_PKT, b'D').0;
        } else if flags & ACK != 0 {
            e = self.check_history(core, e, HIST_ACK_PKT, b'A').0;
        }
        e
    }

    fn get_relative_seq(
        ep: &Endpoint,
        cur: u32,
        last: u32,
        mut wraps: u32,
        underflow: &mut bool,
    ) -> u64 {
        let delta = seq_delta(cur, last);
        if delta < 0 {
            if wraps > 0 && cur > last {
                wraps -= 1;
            }
        } else if delta > 0 && cur < last {
            wraps += 1;
        }
        if wraps == 0 {
            let d = seq_delta(cur, ep.start_seq_u32());
            if d < 0 {
                *underflow = true;
            }
            return i64::from(d) as u64;
        }
        ep.to_relative(cur, wraps)
    }

    /// `TCPSessionAdapter::Process` for a segment from the endpoint that is
    /// currently the originator when `is_orig`. Returns whether that sender
    /// is the originator after processing (the roles may flip).
    /// Handles one segment (`TCPSessionAdapter::DeliverPacket`); returns
    /// whether its sender is the originator after any flip. Settles the
    /// connection's share of the reassembly ledger afterwards.
    pub fn process(
        &mut self,
        core: &mut ConnCore,
        fx: &mut Effects,
        ctx: &Ctx<'_>,
        is_orig: bool,
        seg: &Segment<'_>,
    ) -> bool {
        let r = self.process_segment(core, fx, ctx, is_orig, seg);
        self.recharge(fx);
        r
    }

    /// Bytes this connection's reassembly holds now.
    fn cost(&self) -> usize {
        self.ep[0].reasm.cost() + self.ep[1].reasm.cost()
    }

    /// Brings the ledger up to date with what the connection holds.
    fn recharge(&mut self, fx: &mut Effects) {
        let now = self.cost();
        let l = &mut fx.reasm;
        l.held = l.held.saturating_sub(self.charged) + now;
        self.charged = now;
    }

    /// Returns the connection's share of the ledger (it is going away).
    pub fn release(&mut self, fx: &mut Effects) {
        fx.reasm.held = fx.reasm.held.saturating_sub(self.charged);
        self.charged = 0;
    }

    /// Whether `add` more bytes fit both the connection's and the
    /// engine's budget; the reason they do not, if not.
    fn over_budget(&self, fx: &Effects, cfg: &EngineConfig, add: usize) -> Option<ReasmDrop> {
        let now = self.cost();
        if now + add > cfg.tcp_reassembly_flow_bytes {
            return Some(ReasmDrop::FlowBudget);
        }
        let total = fx.reasm.held.saturating_sub(self.charged) + now + add;
        (total > cfg.tcp_reassembly_total_bytes).then_some(ReasmDrop::Memory)
    }

    /// Counts bytes given up by endpoint `e`'s reassembly; raises the
    /// reason's weird once per direction (Zeek's own rules stop
    /// reassembly, so theirs come once anyway).
    fn give_up(&mut self, fx: &mut Effects, e: usize, why: ReasmDrop, bytes: usize) {
        fx.reasm.dropped_bytes[why as usize] += bytes as u64;
        let r = &mut self.ep[e].reasm;
        let zeeks = matches!(
            why,
            ReasmDrop::AboveHoleWithoutAcks | ReasmDrop::ExcessiveData
        );
        if zeeks || !r.budget_weird {
            if !zeeks {
                r.budget_weird = true;
            }
            fx.reasm.weirds.push(why.weird());
        }
    }

    fn process_segment(
        &mut self,
        core: &mut ConnCore,
        fx: &mut Effects,
        ctx: &Ctx<'_>,
        is_orig: bool,
        seg: &Segment<'_>,
    ) -> bool {
        let cfg = ctx.cfg;
        let t = ctx.t;
        let flags = seg.flags;
        let len = seg.len;
        let base_seq = seg.seq;
        let ack_seq = seg.ack;
        self.established_event = false;
        let mut e = if is_orig { 0 } else { 1 };

        self.set_partial_status(flags, is_orig);

        let mut seg_len = len as i64;
        if flags & SYN != 0 {
            seg_len += 1;
        }
        if flags & FIN != 0 {
            seg_len += 1;
        }
        if flags & RST != 0 {
            seg_len -= i64::from(len);
        }
        let seq_one_past = base_seq.wrapping_add(seg_len as u32);

        self.init_endpoint(e, flags, base_seq, seq_one_past, t);

        let mut seq_underflow = false;
        let ep = &self.ep[e];
        let rel_seq =
            Self::get_relative_seq(ep, base_seq, ep.last_seq, ep.seq_wraps, &mut seq_underflow);

        e = self.update_history(core, e, flags, rel_seq, len);
        // update_window: only the zero-window letter matters for conn.log.
        if seg.window == 0
            && flags & RST == 0
            && self.ep[1 - e].state != EpState::Closed
            && self.ep[e].state != EpState::Reset
        {
            let letter = if e == 0 { b'W' } else { b'w' };
            let ep = &mut self.ep[e];
            core.scaled_history(letter, &mut ep.win0_cnt, &mut ep.win0_thresh);
        }

        if !self.ep[0].did_close || !self.ep[1].did_close {
            core.last_time = t;
        }

        if flags & FIN != 0 {
            let ep = &mut self.ep[e];
            ep.fin_cnt += 1;
            ep.fin_seq = rel_seq.wrapping_add(seg_len as u64);
        }
        if flags & RST != 0 {
            self.ep[e].rst_cnt += 1;
        }

        let p = 1 - e;
        let mut rel_ack = 0u64;
        if flags & ACK != 0 {
            if self.ep[p].state == EpState::Inactive {
                rel_ack = 1;
                let peer = &mut self.ep[p];
                let s = ack_seq.wrapping_sub(1);
                peer.init_start_seq(s);
                peer.ack_seq = s;
                peer.last_seq = s;
            } else {
                let mut ack_underflow = false;
                let peer = &self.ep[p];
                rel_ack = Self::get_relative_seq(
                    peer,
                    ack_seq,
                    peer.ack_seq,
                    peer.ack_wraps,
                    &mut ack_underflow,
                );
                if ack_underflow {
                    rel_ack = 0;
                } else if flags & RST == 0 {
                    let peer = &mut self.ep[p];
                    let delta = seq_delta(ack_seq, peer.ack_seq);
                    if !(ack_seq == 0 && delta > TOO_LARGE_SEQ_DELTA) && delta > 0 {
                        peer.update_ack_seq(ack_seq);
                    }
                }
            }
        }

        let delta_last = self.update_last_seq(core, e, seq_one_past, flags, len);
        self.ep[e].last_time = t;

        let (e, p, do_close, gen_event) = self.update_state_machine(
            core, fx, ctx, e, base_seq, ack_seq, len, delta_last, is_orig, flags,
        );

        if flags & ACK != 0 {
            self.ack_received(core, fx, cfg, p, rel_ack);
        }

        // CheckPIA_FirstPacket uses the role the packet arrived with.
        if is_orig {
            self.first_packet_seen |= ORIG;
        } else {
            self.first_packet_seen |= RESP;
        }

        let rel_data_seq = if flags & SYN != 0 {
            rel_seq.wrapping_add(1)
        } else {
            rel_seq
        };
        if len > 0 && flags & RST == 0 && !seq_underflow && seg.payload.len() >= len as usize {
            // A segment cut short by the snaplen advances the sequence
            // numbers (so it counts in the sizes) but is not reassembled.
            self.data_sent(core, fx, cfg, e, rel_data_seq, seg.payload);
        }

        self.check_eof(core, fx, cfg, e);

        if do_close {
            self.connection_closed(core, fx, cfg, e, gen_event);
        }
        // The sender's role after any flip.
        let _ = p;
        self.verify
            .segment(e == 0, flags, base_seq, ack_seq, seg_len.max(0) as u32);
        e == 0
    }

    fn set_partial_status(&mut self, flags: u8, is_orig: bool) {
        if is_orig {
            if self.first_packet_seen & ORIG == 0 {
                self.is_partial = flags & SYN == 0 || flags & ACK != 0;
            }
        } else if self.first_packet_seen & RESP == 0 && !self.is_partial {
            self.is_partial = flags & SYN == 0;
        }
    }

    fn init_endpoint(&mut self, e: usize, flags: u8, first_seg_seq: u32, last_seq: u32, t: f64) {
        let ep = &mut self.ep[e];
        match ep.state {
            EpState::Inactive => {
                let mut last = last_seq;
                if flags & SYN != 0 {
                    ep.ack_seq = first_seg_seq;
                    ep.init_start_seq(first_seg_seq);
                } else {
                    // A partial connection: number as though a SYN was seen.
                    let s = first_seg_seq.wrapping_sub(1);
                    ep.ack_seq = s;
                    ep.init_start_seq(s);
                    last = first_seg_seq;
                }
                ep.last_seq = last;
                let _ = t;
            }
            EpState::SynSent | EpState::SynAckSent => {
                if flags & SYN != 0 && first_seg_seq != ep.start_seq_u32() {
                    ep.init_start_seq(first_seg_seq);
                    ep.ack_seq = first_seg_seq;
                    ep.last_seq = last_seq;
                }
            }
            EpState::Established | EpState::Partial => {
                if flags & SYN != 0 {
                    ep.init_start_seq(first_seg_seq);
                    ep.ack_seq = first_seg_seq;
                    ep.last_seq = last_seq;
                }
            }
            EpState::Reset => {
                if flags & SYN != 0 && ep.prev_state == EpState::Inactive {
                    ep.init_start_seq(first_seg_seq);
                    ep.ack_seq = first_seg_seq;
                    ep.last_seq = last_seq;
                }
            }
            EpState::Closed => {}
        }
    }

    fn update_last_seq(
        &mut self,
        core: &mut ConnCore,
        e: usize,
        last_seq: u32,
        flags: u8,
        len: u32,
    ) -> i32 {
        let ep = &mut self.ep[e];
        let delta_last = seq_delta(last_seq, ep.last_seq);
        if (flags & (SYN | RST)) != 0
            && !(-TOO_LARGE_SEQ_DELTA..=TOO_LARGE_SEQ_DELTA).contains(&delta_last)
        {
            // Untrustworthy SYN/RST sequence numbers.
        } else if flags & FIN != 0 && ep.last_seq == ep.start_seq_u32().wrapping_add(1) {
            // Only SYN and FIN seen: trust the FIN even going backwards
            // (connections over 2 GB).
            ep.update_last_seq(last_seq);
        } else if ep.state == EpState::Reset {
            // Nothing after a RST is trusted.
        } else if delta_last > 0 {
            ep.update_last_seq(last_seq);
        } else if len > 0 {
            let letter = if e == 0 { b'T' } else { b't' };
            core.scaled_history(letter, &mut ep.rxmt_cnt, &mut ep.rxmt_thresh);
        }
        delta_last
    }

    /// Returns the (possibly flipped) endpoint and peer indices and whether
    /// to close, and to report the close.
    #[allow(clippy::too_many_arguments)]
    fn update_state_machine(
        &mut self,
        core: &mut ConnCore,
        fx: &mut Effects,
        ctx: &Ctx<'_>,
        e: usize,
        base_seq: u32,
        ack_seq: u32,
        len: u32,
        delta_last: i32,
        is_orig: bool,
        flags: u8,
    ) -> (usize, usize, bool, bool) {
        let cfg = ctx.cfg;
        let mut e = e;
        let mut do_close = false;
        let mut gen_event = false;
        match self.ep[e].state {
            EpState::Inactive => {
                if flags & SYN != 0 {
                    if is_orig {
                        let st = if flags & ACK != 0 {
                            EpState::SynAckSent
                        } else {
                            EpState::SynSent
                        };
                        self.set_state(core, fx, cfg, e, st);
                        if cfg.tcp_attempt_delay > 0.0 {
                            self.add_timer(
                                fx,
                                ctx.t + cfg.tcp_attempt_delay,
                                TimerKind::TcpAttempt,
                            );
                        }
                    } else {
                        let p = 1 - e;
                        if flags & ACK != 0 {
                            let _ = seq_between(
                                ack_seq,
                                self.ep[p].start_seq_u32(),
                                self.ep[p].last_seq,
                            );
                        } else if self.ep[p].state == EpState::SynAckSent
                            && base_seq == self.ep[e].start_seq_u32()
                        {
                            // SYN after the SYN-ACK (reordered capture):
                            // flip and establish.
                            self.is_partial = false;
                            self.flip(core);
                            e = 1 - e;
                            let p = 1 - e;
                            self.set_state(core, fx, cfg, p, EpState::Established);
                            self.first_packet_seen |= ORIG;
                        }
                        let p = 1 - e;
                        if self.ep[p].state == EpState::SynSent {
                            self.set_state(core, fx, cfg, p, EpState::Established);
                        }
                        self.set_state(core, fx, cfg, e, EpState::Established);
                        if self.ep[p].state != EpState::Partial {
                            self.established_event = true;
                        }
                    }
                }
                if flags & FIN != 0 {
                    self.set_state(core, fx, cfg, e, EpState::Closed);
                    do_close = true;
                    gen_event = true;
                }
                if flags & RST != 0 {
                    self.set_state(core, fx, cfg, e, EpState::Reset);
                    let p = 1 - e;
                    let is_reject = if is_orig {
                        self.ep[p].state == EpState::Established
                    } else {
                        matches!(self.ep[p].state, EpState::SynSent | EpState::SynAckSent)
                    };
                    do_close = true;
                    gen_event = !is_reject;
                }
                if self.ep[e].state == EpState::Inactive {
                    let p = 1 - e;
                    if !is_orig && len == 0 && self.ep[0].state == EpState::SynSent {
                        // An ACK of the SYN before the SYN-ACK: not partial.
                    } else if flags & ACK != 0 && self.ep[p].state == EpState::Established {
                        // Missed the SYN, saw the SYN-ACK and now an ACK.
                        self.set_state(core, fx, cfg, e, EpState::Established);
                        self.is_partial = false;
                        self.first_packet_seen |= if is_orig { ORIG } else { RESP };
                    } else {
                        self.set_state(core, fx, cfg, e, EpState::Partial);
                    }
                }
            }
            EpState::SynSent | EpState::SynAckSent => {
                if flags & FIN != 0 {
                    self.set_state(core, fx, cfg, e, EpState::Closed);
                    do_close = true;
                    gen_event = true;
                }
                if flags & RST != 0 {
                    self.set_state(core, fx, cfg, e, EpState::Reset);
                    self.is_active = false; // ConnectionReset
                    do_close = true;
                }
            }
            EpState::Established | EpState::Partial => {
                let p = 1 - e;
                if flags & SYN != 0
                    && self.ep[e].state == EpState::Partial
                    && self.ep[p].state == EpState::Inactive
                    && flags & ACK == 0
                {
                    self.set_state(core, fx, cfg, e, EpState::SynSent);
                }
                if flags & FIN != 0 && flags & RST == 0 {
                    self.set_state(core, fx, cfg, e, EpState::Closed);
                    if self.ep[p].state == EpState::Reset
                        && self.ep[p].prev_state == EpState::Closed
                    {
                        // FIN then RST from the peer was a normal close.
                        self.set_state(core, fx, cfg, p, EpState::Closed);
                    }
                    do_close = true;
                    gen_event = true;
                }
                if flags & RST != 0 {
                    self.set_state(core, fx, cfg, e, EpState::Reset);
                    do_close = true;
                    if self.ep[p].state != EpState::Reset
                        || self.ep[p].prev_state != EpState::Established
                    {
                        self.is_active = false; // ConnectionReset
                    }
                }
            }
            EpState::Closed => {
                let p = 1 - e;
                let _ = delta_last;
                if flags & RST != 0 && self.ep[p].state != EpState::Closed {
                    self.set_state(core, fx, cfg, e, EpState::Reset);
                    if !self.ep[e].did_close {
                        do_close = true;
                    }
                    // Zeek schedules a reset timer only when a script
                    // handles connection_reset; the base scripts do not.
                }
            }
            EpState::Reset => {}
        }
        (e, 1 - e, do_close, gen_event)
    }

    // --- reassembler --------------------------------------------------

    fn gap(
        &mut self,
        core: &mut ConnCore,
        fx: &mut Effects,
        cfg: &EngineConfig,
        e: usize,
        len: u64,
    ) {
        let clean = self.ep[e].is_clean() && self.ep[1 - e].is_clean();
        if clean {
            let letter = if e == 0 { b'G' } else { b'g' };
            let ep = &mut self.ep[e];
            core.scaled_history(letter, &mut ep.gap_cnt, &mut ep.gap_thresh);
        }
        if cfg.report_gaps_for_partial || clean {
            core.missed_bytes = core.missed_bytes.saturating_add(len);
        }
        if self.want_stream {
            if let Some(svc) = core.detector(&cfg.analyzer_limits) {
                svc.set_partial(self.is_partial);
                svc.undelivered(e == 0, len, &mut fx.svc_events);
            }
        }
    }

    fn data_sent(
        &mut self,
        core: &mut ConnCore,
        fx: &mut Effects,
        cfg: &EngineConfig,
        e: usize,
        seq: u64,
        data: &[u8],
    ) {
        let ep = &self.ep[e];
        let ack = ep.to_relative(ep.ack_seq, ep.ack_wraps);
        if ep.reasm.skip_deliveries {
            return;
        }
        let mut seq = seq;
        let mut data = data;
        let upper = seq.wrapping_add(data.len() as u64);
        if seq < ack {
            if upper <= ack {
                return;
            }
            let acked = (ack - seq) as usize;
            seq += acked as u64;
            data = &data[acked..];
        }
        self.new_block(core, fx, cfg, e, seq, data);

        let ep = &self.ep[e];
        if ep.no_data_acked()
            && cfg.tcp_max_above_hole_without_any_acks > 0
            && ep.reasm.num_undelivered() > cfg.tcp_max_above_hole_without_any_acks
        {
            self.stop_reassembly(fx, e, ReasmDrop::AboveHoleWithoutAcks);
        }
        let r = &self.ep[e].reasm;
        if cfg.tcp_excessive_data_without_further_acks > 0
            && r.data_size() > cfg.tcp_excessive_data_without_further_acks
        {
            self.stop_reassembly(fx, e, ReasmDrop::ExcessiveData);
        } else if r.blocks.len() > MAX_BLOCKS {
            self.stop_reassembly(fx, e, ReasmDrop::TooManyBlocks);
        }
        self.enforce_budget(fx, cfg, e);
    }

    /// Zeek's way out of reassembly (`ClearBlocks`, `skip_deliveries`),
    /// counted.
    fn stop_reassembly(&mut self, fx: &mut Effects, e: usize, why: ReasmDrop) {
        let r = &mut self.ep[e].reasm;
        let bytes = r.cost();
        r.clear_blocks();
        r.skip_deliveries = true;
        self.give_up(fx, e, why, bytes);
    }

    /// Keeps endpoint `e`, which may just have grown, within the budgets:
    /// its stored payload goes first (only protocol detection misses it),
    /// its ranges only if that is not enough. Unlike Zeek's no-ACK rule,
    /// this holds whatever the peer acknowledged.
    fn enforce_budget(&mut self, fx: &mut Effects, cfg: &EngineConfig, e: usize) {
        let grew = self.cost() > self.charged;
        let Some(why) = self.over_budget(fx, cfg, 0) else {
            return;
        };
        if why == ReasmDrop::Memory && !grew {
            // Someone else's growth; this connection holds no more than
            // before, and is not the one to pay.
            return;
        }
        let r = &mut self.ep[e].reasm;
        if r.dpd_bytes > 0 || r.dpd_data.capacity() > 0 {
            let bytes = r.dpd_bytes;
            r.clear_dpd();
            self.give_up(fx, e, why, bytes);
            if self.over_budget(fx, cfg, 0).is_none() {
                return;
            }
        }
        if !self.ep[e].reasm.blocks.is_empty() {
            self.stop_reassembly(fx, e, why);
        }
    }

    fn new_block(
        &mut self,
        core: &mut ConnCore,
        fx: &mut Effects,
        cfg: &EngineConfig,
        e: usize,
        seq: u64,
        data: &[u8],
    ) {
        if data.is_empty() {
            return;
        }
        let r = &mut self.ep[e].reasm;
        let mut seq = seq;
        let mut data = data;
        let upper = seq + data.len() as u64;
        if upper <= r.trim_seq {
            return;
        }
        if seq < r.trim_seq {
            let old = (r.trim_seq - seq) as usize;
            data = &data[old..];
            seq = r.trim_seq;
        }
        let Some(first) = r.insert(seq, upper) else {
            return;
        };
        self.block_inserted(core, fx, cfg, e, first, Some((seq, data)));
        // Keep what could not be delivered yet (above a hole) for protocol
        // detection, within its budget.
        if self.want_stream {
            let r = &self.ep[e].reasm;
            let from = r.last_reassem_seq.max(seq);
            if from < upper {
                let part = &data[(from - seq) as usize..];
                let slot = if r.dpd_data.len() == r.dpd_data.capacity() {
                    // The list's growth, charged before it happens.
                    r.dpd_data.capacity().max(4) * PIECE_SLOT_COST
                } else {
                    0
                };
                match self.over_budget(fx, cfg, part.len() + PIECE_ALLOC_COST + slot) {
                    None => {
                        let r = &mut self.ep[e].reasm;
                        r.dpd_bytes += part.len();
                        r.dpd_data.push((from, part.to_vec()));
                    }
                    Some(why) => self.give_up(fx, e, why, part.len()),
                }
            }
        }
    }

    /// `Reassembler::BlockInserted`: delivers what is now contiguous.
    /// `current` is the segment being processed (seq, bytes), the usual
    /// source of the delivered bytes.
    fn block_inserted(
        &mut self,
        core: &mut ConnCore,
        fx: &mut Effects,
        cfg: &EngineConfig,
        e: usize,
        start: usize,
        current: Option<(u64, &[u8])>,
    ) {
        let r = &self.ep[e].reasm;
        let Some(&(s, u)) = r.blocks.get(start) else {
            return;
        };
        if s > r.last_reassem_seq || u <= r.last_reassem_seq {
            return;
        }
        let mut i = start;
        while let Some(&(bs, bu)) = self.ep[e].reasm.blocks.get(i) {
            let r = &mut self.ep[e].reasm;
            if bs > r.last_reassem_seq {
                break;
            }
            if bs == r.last_reassem_seq {
                r.last_reassem_seq = bu;
                self.deliver(core, fx, cfg, e, bs, bu, current);
            }
            i += 1;
        }
        let ep = &self.ep[e];
        if ep.no_data_acked()
            && cfg.tcp_max_initial_window > 0
            && self.size(e) > cfg.tcp_max_initial_window
        {
            let to = self.ep[e].reasm.last_reassem_seq;
            self.trim_to_seq(core, fx, cfg, e, to);
        }
    }

    /// Hands [seq, upper) of endpoint `e`'s stream to protocol detection,
    /// from the first copy of each byte held (stored out-of-order data,
    /// then the current segment); bytes held nowhere are a gap to it.
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &mut self,
        core: &mut ConnCore,
        fx: &mut Effects,
        cfg: &EngineConfig,
        e: usize,
        seq: u64,
        upper: u64,
        current: Option<(u64, &[u8])>,
    ) {
        if !self.want_stream {
            return;
        }
        let is_partial = self.is_partial;
        let r = &mut self.ep[e].reasm;
        let Some(svc) = core.detector(&cfg.analyzer_limits) else {
            r.dpd_data.clear();
            r.dpd_bytes = 0;
            return;
        };
        svc.set_partial(is_partial);
        let mut cur = seq;
        while cur < upper {
            let stored = r
                .dpd_data
                .iter()
                .find(|(ds, b)| *ds <= cur && cur < ds + b.len() as u64)
                .map(|(ds, b)| (*ds, b.as_slice()));
            let held =
                stored.or(current.filter(|(cs, cb)| *cs <= cur && cur < cs + cb.len() as u64));
            if let Some((ds, bytes)) = held {
                let to = upper.min(ds + bytes.len() as u64);
                svc.deliver(
                    e == 0,
                    &bytes[(cur - ds) as usize..(to - ds) as usize],
                    &mut fx.svc_events,
                );
                cur = to;
                continue;
            }
            let next = r
                .dpd_data
                .iter()
                .map(|(ds, _)| *ds)
                .chain(current.map(|(cs, _)| cs))
                .filter(|ds| *ds > cur)
                .min()
                .unwrap_or(upper)
                .min(upper);
            svc.undelivered(e == 0, next - cur, &mut fx.svc_events);
            cur = next;
        }
        if !r.dpd_data.is_empty() {
            let mut freed = 0;
            r.dpd_data.retain(|(ds, b)| {
                let keep = ds + b.len() as u64 > upper;
                if !keep {
                    freed += b.len();
                }
                keep
            });
            r.dpd_bytes -= freed;
        }
        if svc.is_done() {
            self.want_stream = false;
            for ep in self.ep.iter_mut() {
                ep.reasm.dpd_data = Vec::new();
                ep.reasm.dpd_bytes = 0;
            }
        }
    }

    fn trim_to_seq(
        &mut self,
        core: &mut ConnCore,
        fx: &mut Effects,
        cfg: &EngineConfig,
        e: usize,
        seq: u64,
    ) {
        if seq > self.ep[e].reasm.last_reassem_seq {
            self.undelivered(core, fx, cfg, e, seq);
        }
        let r = &mut self.ep[e].reasm;
        while let Some(&(_, u)) = r.blocks.front() {
            if u > seq {
                break;
            }
            r.blocks.pop_front();
        }
        if !r.dpd_data.is_empty() {
            let mut freed = 0;
            r.dpd_data.retain(|(s, b)| {
                let keep = s + b.len() as u64 > seq;
                if !keep {
                    freed += b.len();
                }
                keep
            });
            r.dpd_bytes -= freed;
        }
        if let Some(&(s, _)) = r.blocks.front() {
            if s == r.last_reassem_seq {
                self.block_inserted(core, fx, cfg, e, 0, None);
            }
        }
        self.ep[e].reasm.trim_seq = seq;
    }

    fn undelivered(
        &mut self,
        core: &mut ConnCore,
        fx: &mut Effects,
        cfg: &EngineConfig,
        e: usize,
        up_to: u64,
    ) {
        if up_to <= 2 && self.is_partial {
            // The faked SYN octet of a partial connection, or a keep-alive.
            return;
        }
        let p = 1 - e;
        let filtered = cfg.detect_filtered_trace
            && self.ep[e].reasm.last_reassem_seq == 1
            && (self.ep[e].fin_cnt > 0
                || self.ep[e].rst_cnt > 0
                || self.ep[p].fin_cnt > 0
                || self.ep[p].rst_cnt > 0);
        if filtered {
            self.ep[e].reasm.skip_deliveries = true;
        } else if !self.ep[e].reasm.skip_deliveries {
            loop {
                let r = &self.ep[e].reasm;
                let last = r.last_reassem_seq;
                let next = r.blocks.iter().position(|b| b.0 >= last);
                let Some(i) = next else { break };
                let bs = r.blocks[i].0;
                if bs >= up_to {
                    break;
                }
                let gap_len = bs - last;
                self.gap(core, fx, cfg, e, gap_len);
                self.ep[e].reasm.last_reassem_seq += gap_len;
                let before = self.ep[e].reasm.last_reassem_seq;
                self.block_inserted(core, fx, cfg, e, i, None);
                if self.ep[e].reasm.last_reassem_seq == before {
                    // Nothing was delivered (cannot happen for a block that
                    // starts at last_reassem_seq, but never loop forever).
                    break;
                }
            }
            let last = self.ep[e].reasm.last_reassem_seq;
            if up_to > last {
                self.gap(core, fx, cfg, e, up_to - last);
            }
        }
        let r = &mut self.ep[e].reasm;
        if up_to > r.last_reassem_seq {
            r.last_reassem_seq = up_to;
        }
    }

    fn ack_received(
        &mut self,
        core: &mut ConnCore,
        fx: &mut Effects,
        cfg: &EngineConfig,
        e: usize,
        seq: u64,
    ) {
        let ep = &self.ep[e];
        let mut seq = seq;
        if ep.fin_cnt > 0 && seq >= ep.fin_seq {
            // A FIN sent just before the stream's first byte (relative
            // sequence -1, forged or a reused port) has `fin_seq` 0: it acks
            // nothing, where a wrapping `- 1` would make every byte up to
            // 2^64 a gap.
            seq = ep.fin_seq.saturating_sub(1);
        }
        if seq <= ep.reasm.trim_seq {
            return;
        }
        self.trim_to_seq(core, fx, cfg, e, seq);
        self.check_eof(core, fx, cfg, e);
    }

    fn data_pending(&self, e: usize) -> bool {
        let ep = &self.ep[e];
        if ep.reasm.skip_deliveries {
            return false;
        }
        let delivered = (ep.start_seq as u64).wrapping_add(ep.reasm.last_reassem_seq);
        let last = Endpoint::full(ep.last_seq, ep.seq_wraps);
        if last < delivered {
            return false;
        }
        if delivered != last.wrapping_sub(1) && delivered != last {
            return true;
        }
        ep.state != EpState::Reset && !self.ep[1 - e].reasm.blocks.is_empty()
    }

    fn check_eof(&mut self, core: &mut ConnCore, fx: &mut Effects, cfg: &EngineConfig, e: usize) {
        let ep = &self.ep[e];
        if !ep.reasm.did_eof
            && (ep.fin_cnt > 0 || ep.state == EpState::Closed || ep.state == EpState::Reset)
            && !self.data_pending(e)
        {
            self.ep[e].reasm.did_eof = true;
            if let Some(svc) = core.svc.as_mut() {
                svc.set_partial(self.is_partial);
                svc.end_of_data(e == 0, &mut fx.svc_events);
            }
            if self.close_deferred {
                let gen = self.deferred_gen_event;
                self.connection_closed(core, fx, cfg, e, gen);
                self.close_deferred = false;
            }
        }
    }

    fn connection_closed(
        &mut self,
        core: &mut ConnCore,
        fx: &mut Effects,
        cfg: &EngineConfig,
        e: usize,
        gen_event: bool,
    ) {
        if self.data_pending(e) {
            self.close_deferred = true;
            if !self.deferred_gen_event {
                self.deferred_gen_event = gen_event;
            }
            return;
        }
        self.close_deferred = false;
        let p = 1 - e;
        if self.ep[e].did_close {
            return;
        }
        self.ep[e].did_close = true;
        let close_complete = self.ep[e].state == EpState::Reset
            || self.ep[p].did_close
            || self.ep[p].state == EpState::Inactive;
        if close_complete {
            if self.ep[e].prev_state != EpState::Inactive || self.ep[p].state != EpState::Inactive {
                let mut gen = gen_event;
                if self.deferred_gen_event {
                    gen = true;
                    self.deferred_gen_event = false;
                }
                if gen {
                    // ConnectionFinished
                    self.is_active = false;
                }
            }
            self.cancel_timers();
            let at = core.last_time + cfg.tcp_close_delay;
            self.add_timer(fx, at, TimerKind::TcpConnDelete);
        } else if self.ep[e].prev_state != EpState::Inactive {
            let at = core.last_time + cfg.tcp_session_timer;
            self.add_timer(fx, at, TimerKind::TcpExpire);
        }
    }

    // --- timers ---------------------------------------------------------

    /// `ExpireTimer`; returns true when the connection is to be removed.
    pub fn expire_timer(
        &mut self,
        core: &mut ConnCore,
        fx: &mut Effects,
        cfg: &EngineConfig,
        t: f64,
    ) -> bool {
        if !self.is_active {
            return false;
        }
        if core.last_time + cfg.tcp_connection_linger < t {
            let (o, r) = (&self.ep[0], &self.ep[1]);
            if (o.did_close || r.did_close)
                && ((o.did_close && r.did_close)
                    || o.state == EpState::Reset
                    || r.state == EpState::Reset
                    || o.state == EpState::Inactive
                    || r.state == EpState::Inactive)
            {
                self.is_active = false;
                return true;
            }
            if r.state == EpState::Inactive && o.state == EpState::Inactive {
                return true;
            }
        }
        self.add_timer(fx, t + cfg.tcp_session_timer, TimerKind::TcpExpire);
        false
    }

    /// `AttemptTimer`; returns true when the connection is to be removed.
    pub fn attempt_timer(&mut self) -> bool {
        if !self.is_active {
            return false;
        }
        if matches!(self.ep[0].state, EpState::SynSent | EpState::SynAckSent)
            && self.ep[1].state == EpState::Inactive
        {
            self.is_active = false;
            return true;
        }
        false
    }

    /// `TCPSessionAdapter::IsReuse`: a new SYN (or a SYN-ACK on a half
    /// connection) with a fresh sequence number starts a new connection.
    pub fn is_reuse(&self, flags: u8, seq: u32, data_offset_ok: bool) -> bool {
        if !data_offset_ok || flags & SYN == 0 {
            return false;
        }
        let mut conn_orig = 0;
        if flags & ACK != 0 {
            if self.ep[0].state != EpState::Inactive {
                return false;
            }
            conn_orig = 1;
        }
        let closed = self.ep[0].did_close || self.ep[1].did_close;
        if !closed {
            if seq == self.ep[conn_orig].start_seq_u32() {
                return false;
            }
            if flags & ACK == 0
                && self.ep[conn_orig].state == EpState::SynAckSent
                && self.ep[1].state == EpState::Inactive
                && seq == self.ep[1].start_seq_u32()
            {
                return false;
            }
        }
        true
    }

    /// `c$orig$state` / `c$resp$state`.
    pub fn states(&self) -> (EpState, EpState) {
        (self.ep[0].state, self.ep[1].state)
    }

    /// The originator was seen in the handshake (`TCP_INACTIVE` check of
    /// the `connection_established` handler).
    pub fn orig_inactive(&self) -> bool {
        self.ep[0].state == EpState::Inactive
    }

    /// A bad checksum from endpoint `idx` (`TCP_Endpoint::ChecksumError`).
    pub fn checksum_error(&mut self, core: &mut ConnCore, idx: usize) {
        let letter = if idx == 0 { b'C' } else { b'c' };
        let ep = &mut self.ep[idx];
        core.scaled_history(letter, &mut ep.chk_cnt, &mut ep.chk_thresh);
    }
}
