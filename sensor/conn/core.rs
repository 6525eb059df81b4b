//! State every connection has, whatever its transport: identity,
//! orientation, timing, history letters, packet counters, tunnels and
//! services (`Connection` and `Session` in Zeek's `src/Conn.cc`,
//! `src/session/Session.cc`).

use std::net::IpAddr;

use smallvec::SmallVec;

use super::record::{Proto, Uid};
use super::service::{AnalyzerLimits, AnalyzerSet, ConnInfo, ServiceDetector, ServiceEvent, L4};

/// Zeek's default `DPD::ignore_violations_after`.
pub const DEFAULT_IGNORE_VIOLATIONS_AFTER: u64 = 10 * 1024;
use super::timer::{TimerKind, TimerReq};
use crate::decode::tunnel::TunnelKind;

/// History bit Zeek reserves for analyzer and tunnel limits (`X`).
pub const HIST_ANALYZER_LIMIT_REACHED: u32 = 0x400;

/// Longest history kept; Zeek's is unbounded, but a history of this length
/// already says everything a log reader can use and bounds memory.
pub const MAX_HISTORY: usize = 64;

/// One layer of encapsulation around a packet (`EncapsulatingConn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncapConn {
    pub kind: TunnelKind,
    pub uid: Uid,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
}

impl EncapConn {
    /// Zeek's `operator==`: IP and GRE tunnels (and VXLAN, whose
    /// destination port is fixed) are the same tunnel in either direction.
    pub fn same_as(&self, o: &EncapConn) -> bool {
        if self.kind != o.kind || self.uid != o.uid {
            return false;
        }
        let same_dir = self.src == o.src && self.dst == o.dst;
        let reversed = self.src == o.dst && self.dst == o.src;
        match self.kind {
            TunnelKind::Ip | TunnelKind::Gre => same_dir || reversed,
            TunnelKind::Vxlan => self.dst_port == o.dst_port && (same_dir || reversed),
            _ => same_dir && self.src_port == o.src_port && self.dst_port == o.dst_port,
        }
    }
}

pub type EncapStack = SmallVec<[EncapConn; 2]>;

pub fn same_stack(a: &[EncapConn], b: &[EncapConn]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_as(y))
}

/// Confirmation state of a (packet) analyzer on one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AnalyzerState {
    #[default]
    Unknown,
    Confirmed,
    Violated,
}

/// Per-connection tunnel analyzer bookkeeping.
#[derive(Clone, Debug, Default)]
pub struct TunnelState {
    pub states: [AnalyzerState; 7],
    pub teredo_valid: [bool; 2],
    pub gtp_valid: [bool; 2],
}

impl TunnelState {
    pub fn get(&self, k: TunnelKind) -> AnalyzerState {
        self.states[k as usize]
    }
    pub fn set(&mut self, k: TunnelKind, s: AnalyzerState) {
        self.states[k as usize] = s;
    }
}

/// Direction-indexed counters: index 0 is the originator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub pkts: [u64; 2],
    pub ip_bytes: [u64; 2],
}

/// What handling one packet (or timer) asks of the engine besides the
/// connection's own state: timers to set and protocol-detection events.
/// Kept outside the connection so that the per-packet check touches a hot
/// engine buffer rather than a cold corner of the connection.
#[derive(Debug, Default)]
pub struct Effects {
    pub timers: SmallVec<[TimerReq; 8]>,
    pub svc_events: Vec<ServiceEvent>,
    /// TCP reassembly memory of all the engine's connections.
    pub reasm: super::tcp::ReasmLedger,
}

pub struct ConnCore {
    pub uid: Uid,
    pub proto: Proto,
    pub ip_proto: u8,
    pub orig_h: IpAddr,
    pub resp_h: IpAddr,
    pub orig_p: u16,
    pub resp_p: u16,
    pub start_time: f64,
    pub last_time: f64,
    pub history: SmallVec<[u8; 24]>,
    pub hist_seen: u32,
    pub l2: [Option<[u8; 6]>; 2],
    pub vlan: Option<u16>,
    pub inner_vlan: Option<u16>,
    pub counts: Counters,
    pub missed_bytes: u64,
    /// Credentials the server refused (HTTP 401/407, FTP 530).
    pub auth_failures: u16,
    pub services: SmallVec<[&'static str; 2]>,
    /// Protocol detection, created on the first payload (most connections
    /// of a scan or flood never carry any).
    pub svc: Option<Box<ServiceDetector>>,
    /// Analyzers that may run on this connection (none: no detection).
    pub svc_enabled: AnalyzerSet,
    /// `flips` when the connection was created (after any creation flip),
    /// to recover the orientation port analyzers attach by.
    pub svc_flip_base: u32,
    /// `DPD::ignore_violations_after` for the detector.
    pub svc_ignore_after: u64,
    pub encap: Option<Box<EncapStack>>,
    pub tunnel_changes: u32,
    pub tunnel_parents: SmallVec<[Uid; 1]>,
    pub tunnel: TunnelState,
    /// Current inactivity timeout (0 = none) and the generation that
    /// invalidates older inactivity timers when it changes.
    pub inactivity_timeout: f64,
    pub inactivity_gen: u32,
    /// Set when roles flipped while processing the current packet.
    pub flips: u32,
}

impl ConnCore {
    /// The connection's protocol detector, created on first use with the
    /// engine's analyzer `limits` (passed in rather than kept per
    /// connection, which would cost every connection their size).
    pub fn detector(&mut self, limits: &AnalyzerLimits) -> Option<&mut ServiceDetector> {
        if self.svc.is_none() {
            let proto = match self.proto {
                Proto::Tcp => L4::Tcp,
                Proto::Udp => L4::Udp,
                _ => return None,
            };
            if self.svc_enabled.is_empty() {
                return None;
            }
            let cur = ConnInfo {
                proto,
                orig_h: self.orig_h,
                orig_p: self.orig_p,
                resp_h: self.resp_h,
                resp_p: self.resp_p,
            };
            let root = if self.flips.wrapping_sub(self.svc_flip_base) % 2 == 1 {
                ConnInfo {
                    orig_h: cur.resp_h,
                    orig_p: cur.resp_p,
                    resp_h: cur.orig_h,
                    resp_p: cur.orig_p,
                    ..cur
                }
            } else {
                cur
            };
            let mut d = ServiceDetector::with_root(cur, root, self.svc_enabled, &[]);
            if self.svc_ignore_after != DEFAULT_IGNORE_VIOLATIONS_AFTER {
                d.set_ignore_violations_after(self.svc_ignore_after);
            }
            d.set_limits(limits);
            self.svc = Some(Box::new(d));
        }
        self.svc.as_deref_mut()
    }

    /// Whether protocol detection may ever want this connection's payload.
    pub fn wants_service(&self) -> bool {
        self.svc.as_ref().is_some_and(|s| !s.is_done())
            || (self.svc.is_none() && !self.svc_enabled.is_empty())
    }

    /// `Session::CheckHistory`: adds `code` the first time `mask` is seen.
    /// Returns true if the mask had been seen before.
    pub fn check_history(&mut self, mask: u32, code: u8) -> bool {
        if self.hist_seen & mask == 0 {
            self.hist_seen |= mask;
            self.add_history(code);
            false
        } else {
            true
        }
    }

    pub fn add_history(&mut self, code: u8) {
        if self.history.len() < MAX_HISTORY {
            self.history.push(code);
        }
    }

    /// `Session::ScaledHistoryEntry` with base 10: letters at the 1st,
    /// 10th, 100th... occurrence.
    pub fn scaled_history(&mut self, code: u8, counter: &mut u32, threshold: &mut u32) -> bool {
        *counter += 1;
        if *counter == *threshold {
            self.add_history(code);
            let next = threshold.wrapping_mul(10);
            if next <= *threshold {
                *counter = 0;
            } else {
                *threshold = next;
            }
            true
        } else {
            false
        }
    }

    /// `Connection::FlipRoles` for the parts owned here; transport state
    /// flips itself. UDP and ICMP request/reply sizes and the history bits
    /// are left alone, as in Zeek.
    pub fn flip(&mut self) {
        std::mem::swap(&mut self.orig_h, &mut self.resp_h);
        std::mem::swap(&mut self.orig_p, &mut self.resp_p);
        self.l2.swap(0, 1);
        self.counts.pkts.swap(0, 1);
        self.counts.ip_bytes.swap(0, 1);
        if let Some(s) = self.svc.as_mut() {
            s.flip_roles();
        }
        self.add_history(b'^');
        self.flips += 1;
    }

    /// `Session::SetInactivityTimeout`: replaces the inactivity timer with
    /// one `timeout` after the last packet (none for 0).
    pub fn set_inactivity_timeout(&mut self, timeout: f64, fx: &mut Effects) {
        if timeout == self.inactivity_timeout {
            return;
        }
        self.inactivity_gen = self.inactivity_gen.wrapping_add(1);
        if timeout > 0.0 {
            fx.timers.push(TimerReq {
                at: self.last_time + timeout,
                kind: TimerKind::Inactivity,
                gen: self.inactivity_gen,
            });
        }
        self.inactivity_timeout = timeout;
    }

    /// Adds a confirmed service name once (`c$service` is an ordered set).
    pub fn add_service(&mut self, name: &'static str) {
        if !self.services.contains(&name) {
            self.services.push(name);
        }
    }

    pub fn remove_service(&mut self, name: &str) {
        self.services.retain(|s| *s != name);
    }
}
