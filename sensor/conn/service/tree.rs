//! The analyzer tree of one connection, as Zeek builds it in
//! `IPBasedAnalyzer::BuildSessionAnalyzerTree` and grows it in
//! `src/analyzer/protocol/pia/PIA.cc`:
//!
//! * analyzers registered for the responder port are attached first
//!   (none when an expected connection applied a scheduled analyzer);
//! * then the PIA: it buffers the first [`DPD_BUFFER_SIZE`] bytes /
//!   [`DPD_MAX_PACKETS`] chunks of both directions together (the chunk
//!   crossing the limit included), matches the DPD signatures on them, and
//!   when a signature enables an analyzer that is not attached yet, attaches
//!   it and replays the buffer into it, so it sees the connection from the
//!   start; once the buffer is full it stops matching for good
//!   (`dpd_match_only_beginning`);
//! * analyzers activated by DPD come after the PIA in delivery order.
//!
//! Confirmations and violations go through [`Inst`], which applies what
//! `Analyzer::AnalyzerConfirmation` (once per analyzer),
//! `TCP_ApplicationAnalyzer::AnalyzerViolation` (nothing on partial
//! connections or after a content gap) and dpd.zeek (an analyzer with a
//! violation within the first 10 KiB is removed) do. A parser that hands its
//! stream to a child (STARTTLS, HTTP CONNECT) gets a nested tree.
//!
//! Limits: at most [`MAX_DPD_STORE`] bytes per direction are stored for
//! matching and replay (only the chunk crossing the DPD limit can be cut,
//! and it is replayed whole from the live data); trees nest at most
//! [`MAX_DEPTH`] levels; an analyzer that has neither confirmed nor failed
//! after [`MAX_UNDECIDED`] bytes stops being fed.

use super::sig::Sigs;
use super::{
    new_parser, Analyzer, AnalyzerLimits, AnalyzerSet, ChildKind, ConnInfo, Cx, Note, Notes, Null,
    Parser, ServiceEvent, DPD_BUFFER_SIZE, DPD_MAX_PACKETS, L4, MAX_ANALYZER_VIOLATIONS,
};

/// Bytes per direction kept for signature matching and replay.
pub const MAX_DPD_STORE: usize = 2048;
/// Nesting depth of analyzer trees (HTTP CONNECT inside HTTP CONNECT...).
pub const MAX_DEPTH: u8 = 3;
/// Bytes after which an analyzer that has not confirmed yet is given up
/// (a simplification: Zeek would keep it running).
pub const MAX_UNDECIDED: u64 = 64 * 1024;
/// Timeout of scheduled analyzers (FTP data channels, IRC DCC): 5 min.
const EXPECT_TIMEOUT: f64 = 300.0;

/// Per-call context shared by the whole tree.
pub(crate) struct Env<'a> {
    pub info: &'a ConnInfo,
    pub enabled: AnalyzerSet,
    pub partial: bool,
    pub gap: [bool; 2],
    pub size: u64,
    /// `DPD::ignore_violations_after` (0: never).
    pub ignore_after: u64,
    /// Zeek's analyzer limits, for parsers created from here on.
    pub limits: &'a AnalyzerLimits,
    pub events: &'a mut Vec<ServiceEvent>,
}

/// Whether a violation at `size` bytes no longer counts.
fn past_horizon(size: u64, ignore_after: u64) -> bool {
    ignore_after > 0 && size > ignore_after
}

/// One attached analyzer.
#[derive(Debug)]
struct Inst {
    kind: Analyzer,
    parser: Box<dyn Parser>,
    confirmed: bool,
    /// Removed after a violation (dpd.zeek's `disable_analyzer`).
    disabled: bool,
    violations: u32,
    /// The analyzer handed its stream to a child.
    child: Option<Box<Tree>>,
    /// Analyzers this one feeds directly (NTLM inside LDAP): confirmed,
    /// and removed after a violation.
    sub_confirmed: u64,
    sub_disabled: u64,
}

impl Inst {
    fn new(kind: Analyzer, info: &ConnInfo, limits: &AnalyzerLimits) -> Self {
        Inst {
            kind,
            parser: new_parser(kind, info, limits),
            confirmed: false,
            disabled: false,
            violations: 0,
            child: None,
            sub_confirmed: 0,
            sub_disabled: 0,
        }
    }

    fn finished(&self, size: u64, base: u64, ignore_after: u64) -> bool {
        if self.disabled {
            return true;
        }
        match &self.child {
            Some(c) => c.is_done(size, ignore_after),
            None => {
                let seen = size.saturating_sub(base);
                // Bounds the work spent on an analyzer that neither
                // confirmed nor failed (e.g. a port analyzer seeing only
                // one side of a long connection).
                (!self.confirmed && seen > MAX_UNDECIDED)
                    || self
                        .parser
                        .finished(self.confirmed, past_horizon(size, ignore_after), seen)
            }
        }
    }

    fn apply(&mut self, notes: Notes, env: &mut Env<'_>, depth: u8) {
        for n in notes {
            if self.disabled {
                break;
            }
            match n {
                Note::Confirm => {
                    if !self.confirmed {
                        self.confirmed = true;
                        push_confirm(env.events, self.kind);
                    }
                }
                Note::Violation => {
                    if env.info.proto == L4::Tcp && (env.partial || env.gap[0] || env.gap[1]) {
                        // TCP_ApplicationAnalyzer::AnalyzerViolation.
                        continue;
                    }
                    self.violations += 1;
                    if self.violations > MAX_ANALYZER_VIOLATIONS {
                        continue;
                    }
                    env.events.push(ServiceEvent::Violation(self.kind));
                    if !past_horizon(env.size, env.ignore_after) {
                        self.disabled = true;
                        self.parser = Box::new(Null);
                        self.child = None;
                    }
                }
                Note::ConfirmAs(a) => {
                    let b = 1u64 << (a as u32);
                    if (self.sub_confirmed | self.sub_disabled) & b == 0 {
                        self.sub_confirmed |= b;
                        push_confirm(env.events, a);
                    }
                }
                Note::ViolationAs(a) => {
                    let b = 1u64 << (a as u32);
                    let gated =
                        env.info.proto == L4::Tcp && (env.partial || env.gap[0] || env.gap[1]);
                    if self.sub_disabled & b == 0 && !gated {
                        env.events.push(ServiceEvent::Violation(a));
                        if !past_horizon(env.size, env.ignore_after) {
                            self.sub_disabled |= b;
                        }
                    }
                }
                Note::Flip => env.events.push(ServiceEvent::FlipRoles),
                Note::AuthFailure => env.events.push(ServiceEvent::AuthFailure),
                // Zeek raises these whatever the connection's state (partial,
                // after a gap): they are weirds, not violations.
                Note::LimitReached(w) => env.events.push(ServiceEvent::LimitReached(w)),
                Note::Expect {
                    orig_h,
                    resp_h,
                    resp_p,
                    analyzer,
                } => env.events.push(ServiceEvent::Expect {
                    orig_h,
                    resp_h,
                    resp_p,
                    proto: L4::Tcp,
                    analyzer,
                    timeout_secs: EXPECT_TIMEOUT,
                }),
                Note::Child(kind) => {
                    if self.child.is_none() {
                        let d = depth + 1;
                        let mut t = if d > MAX_DEPTH {
                            Tree::empty(env.info.proto, d)
                        } else {
                            match kind {
                                ChildKind::Ssl => {
                                    Tree::single(Analyzer::Ssl, env.info, d, env.limits)
                                }
                                ChildKind::Pia => Tree::pia_only(env.info.proto, env.enabled, d),
                                ChildKind::Drop => Tree::empty(env.info.proto, d),
                            }
                        };
                        t.base = env.size;
                        self.child = Some(Box::new(t));
                    }
                }
            }
        }
    }

    fn deliver(&mut self, is_orig: bool, data: &[u8], env: &mut Env<'_>, depth: u8) {
        if self.disabled {
            return;
        }
        if let Some(c) = self.child.as_mut() {
            c.deliver(is_orig, data, env);
            return;
        }
        let mut notes = Notes::new();
        let used = {
            let mut cx = Cx {
                info: env.info,
                partial: env.partial,
                notes: &mut notes,
            };
            self.parser.deliver(is_orig, data, &mut cx)
        };
        self.apply(notes, env, depth);
        if let (Some(c), Some(rest)) = (self.child.as_mut(), data.get(used..)) {
            if !rest.is_empty() {
                c.deliver(is_orig, rest, env);
            }
        }
    }

    fn undelivered(&mut self, is_orig: bool, len: u64, env: &mut Env<'_>, depth: u8) {
        if self.disabled {
            return;
        }
        if let Some(c) = self.child.as_mut() {
            c.undelivered(is_orig, len, env);
            return;
        }
        let mut notes = Notes::new();
        {
            let mut cx = Cx {
                info: env.info,
                partial: env.partial,
                notes: &mut notes,
            };
            self.parser.undelivered(is_orig, len, &mut cx);
        }
        self.apply(notes, env, depth);
    }

    fn eof(&mut self, is_orig: bool, env: &mut Env<'_>, depth: u8) {
        if self.disabled {
            return;
        }
        if let Some(c) = self.child.as_mut() {
            c.eof(is_orig, env);
            return;
        }
        let mut notes = Notes::new();
        {
            let mut cx = Cx {
                info: env.info,
                partial: env.partial,
                notes: &mut notes,
            };
            self.parser.eof(is_orig, &mut cx);
        }
        self.apply(notes, env, depth);
    }
}

/// Adds a confirmation to this packet's events. Zeek removes a service
/// (analyzer_failed) only after all events of the packet ran, so a
/// violation and a confirmation of the same analyzer in one packet leave
/// the service out whatever their order: put the confirmation first.
fn push_confirm(events: &mut Vec<ServiceEvent>, a: Analyzer) {
    match events.iter().position(|e| *e == ServiceEvent::Violation(a)) {
        Some(i) => events.insert(i, ServiceEvent::Confirmed(a)),
        None => events.push(ServiceEvent::Confirmed(a)),
    }
}

#[derive(Clone, Copy, Debug)]
enum Chunk {
    Data { orig: bool, start: u32, end: u32 },
    Gap { orig: bool, len: u64 },
}

/// Zeek's PIA: DPD buffer and signature state.
#[derive(Debug)]
struct Pia {
    sigs: Sigs,
    /// Stored bytes per direction (0 = originator).
    stream: [Vec<u8>; 2],
    chunks: Vec<Chunk>,
    size: usize,
    nchunks: usize,
}

impl Pia {
    fn new(sigs: Sigs) -> Self {
        Pia {
            sigs,
            stream: [Vec::new(), Vec::new()],
            chunks: Vec::new(),
            size: 0,
            nchunks: 0,
        }
    }

    /// Buffers a data chunk; returns true if the buffer is full after it.
    fn add(&mut self, is_orig: bool, data: &[u8]) -> bool {
        let store = &mut self.stream[usize::from(!is_orig)];
        let take = data.len().min(MAX_DPD_STORE.saturating_sub(store.len()));
        let start = store.len();
        store.extend_from_slice(data.get(..take).unwrap_or(&[]));
        self.chunks.push(Chunk::Data {
            orig: is_orig,
            start: start as u32,
            end: (start + take) as u32,
        });
        self.size += data.len();
        self.nchunks += 1;
        self.size > DPD_BUFFER_SIZE || self.nchunks > DPD_MAX_PACKETS
    }

    /// Replays the first `n` buffered chunks into `inst`.
    fn replay(&self, n: usize, inst: &mut Inst, env: &mut Env<'_>, depth: u8) {
        for c in self.chunks.iter().take(n) {
            match *c {
                Chunk::Data { orig, start, end } => {
                    let s = &self.stream[usize::from(!orig)];
                    if let Some(d) = s.get(start as usize..end as usize) {
                        inst.deliver(orig, d, env, depth);
                    }
                }
                Chunk::Gap { orig, len } => inst.undelivered(orig, len, env, depth),
            }
        }
    }
}

/// An analyzer tree: the top level of a connection, or what a parent
/// analyzer hands its stream to.
#[derive(Debug)]
pub(crate) struct Tree {
    proto: L4,
    depth: u8,
    insts: Vec<Inst>,
    /// Instances that come before the PIA in delivery order.
    n_pre: usize,
    pia: Option<Box<Pia>>,
    /// Connection bytes seen when this tree was created.
    base: u64,
}

impl Tree {
    fn empty(proto: L4, depth: u8) -> Self {
        Tree {
            proto,
            depth,
            insts: Vec::new(),
            n_pre: 0,
            pia: None,
            base: 0,
        }
    }

    fn new_pia(proto: L4, enabled: AnalyzerSet) -> Option<Box<Pia>> {
        let sigs = Sigs::new(proto, |a| enabled.loaded(a));
        (!sigs.is_empty()).then(|| Box::new(Pia::new(sigs)))
    }

    /// The analyzers Zeek attaches to a new connection by its responder
    /// port (none when a scheduled analyzer applied).
    pub fn port_attached(
        info: &ConnInfo,
        enabled: AnalyzerSet,
        scheduled: &[Analyzer],
    ) -> Vec<Analyzer> {
        if !scheduled.is_empty() {
            return Vec::new();
        }
        Analyzer::for_port(info.proto, info.resp_p)
            .iter()
            .copied()
            .filter(|a| enabled.loaded(*a))
            .collect()
    }

    /// The tree of a new connection.
    pub fn root(
        info: &ConnInfo,
        enabled: AnalyzerSet,
        scheduled: &[Analyzer],
        limits: &AnalyzerLimits,
    ) -> Self {
        let mut t = Tree::empty(info.proto, 0);
        for a in Self::port_attached(info, enabled, scheduled) {
            t.insts.push(Inst::new(a, info, limits));
        }
        t.n_pre = t.insts.len();
        t.pia = Self::new_pia(info.proto, enabled);
        t
    }

    /// A tree holding one analyzer (an SSL child).
    fn single(kind: Analyzer, info: &ConnInfo, depth: u8, limits: &AnalyzerLimits) -> Self {
        let mut t = Tree::empty(info.proto, depth);
        t.insts.push(Inst::new(kind, info, limits));
        t.n_pre = 1;
        t
    }

    /// A tree with only a PIA (HTTP CONNECT tunnels, upgrades).
    fn pia_only(proto: L4, enabled: AnalyzerSet, depth: u8) -> Self {
        let mut t = Tree::empty(proto, depth);
        t.pia = Self::new_pia(proto, enabled);
        t
    }

    /// True when nothing in the tree wants more data.
    pub fn is_done(&self, size: u64, ignore_after: u64) -> bool {
        self.pia.is_none()
            && self
                .insts
                .iter()
                .all(|i| i.finished(size, self.base, ignore_after))
    }

    fn has_active(&self, a: Analyzer) -> bool {
        self.insts.iter().any(|i| i.kind == a && !i.disabled)
    }

    /// Analyzers attached at this level and not removed.
    pub fn attached(&self) -> Vec<Analyzer> {
        self.insts
            .iter()
            .filter(|i| !i.disabled)
            .map(|i| i.kind)
            .collect()
    }

    pub fn deliver(&mut self, is_orig: bool, data: &[u8], env: &mut Env<'_>) {
        let depth = self.depth;
        let n = self.insts.len();
        for inst in self.insts.iter_mut().take(self.n_pre) {
            inst.deliver(is_orig, data, env, depth);
        }
        if let Some(mut pia) = self.pia.take() {
            let prev = pia.chunks.len();
            let full = if data.is_empty() {
                false
            } else {
                pia.add(is_orig, data)
            };
            let mut fire = Vec::new();
            match self.proto {
                L4::Tcp => {
                    let d = usize::from(!is_orig);
                    let Pia { sigs, stream, .. } = &mut *pia;
                    sigs.matches(L4::Tcp, is_orig, &stream[d], &mut fire);
                }
                L4::Udp => pia.sigs.matches(L4::Udp, is_orig, data, &mut fire),
            }
            for a in fire {
                if !env.enabled.loaded(a) || self.has_active(a) {
                    continue;
                }
                let mut inst = Inst::new(a, env.info, env.limits);
                pia.replay(prev, &mut inst, env, depth);
                inst.deliver(is_orig, data, env, depth);
                self.insts.push(inst);
            }
            let keep = !full && (self.proto == L4::Udp || pia.sigs.pending());
            if keep {
                self.pia = Some(pia);
            }
        }
        for inst in self.insts.iter_mut().take(n).skip(self.n_pre) {
            inst.deliver(is_orig, data, env, depth);
        }
    }

    pub fn undelivered(&mut self, is_orig: bool, len: u64, env: &mut Env<'_>) {
        let depth = self.depth;
        for inst in self.insts.iter_mut().take(self.n_pre) {
            inst.undelivered(is_orig, len, env, depth);
        }
        if let Some(pia) = self.pia.as_mut() {
            pia.chunks.push(Chunk::Gap { orig: is_orig, len });
            pia.nchunks += 1;
            if pia.nchunks > DPD_MAX_PACKETS {
                self.pia = None;
            }
        }
        for inst in self.insts.iter_mut().skip(self.n_pre) {
            inst.undelivered(is_orig, len, env, depth);
        }
    }

    pub fn eof(&mut self, is_orig: bool, env: &mut Env<'_>) {
        let depth = self.depth;
        for inst in self.insts.iter_mut() {
            inst.eof(is_orig, env, depth);
        }
    }
}
