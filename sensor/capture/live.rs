//! Live capture from a network interface with libpcap.
//!
//! libpcap on Linux reads through an mmap ring: the kernel writes packets
//! into memory shared with osprey and `next_packet()` lends them in place.
//!
//! By default the ring is TPACKET_V3, which hands packets over a block at a
//! time: when a block fills or `block_timeout_ms` after it opened. That is
//! one wake-up per block instead of one per packet, which is what keeps the
//! capture thread ahead of a flood on a 2-core node (measured with
//! benches/live_rate.py: at tcpreplay's top speed on a veth, immediate mode
//! lost a quarter of a SYN flood in the kernel ring with the capture thread
//! spending most of its time in poll; block mode lost nothing and used a
//! tenth of the CPU). The price is up to `block_timeout_ms` of latency.
//! `block_timeout_ms = 0` asks for libpcap's immediate mode instead, which
//! libpcap implements with TPACKET_V2 (V3 cannot hand over single packets):
//! every packet at once, at one wake-up each.
//!
//! The handle is non-blocking and osprey waits in `poll(2)` itself: libpcap
//! 1.10's blocking read can wait in poll without a timeout, so a quiet wire
//! would never return control — no clock-driven timeouts, and no reaction
//! to a stop request until the next packet.

use pcap::{Active, Capture};

use super::{CaptureError, LinkType, Packet, SourceStats};

/// How to open an interface.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub interface: String,
    pub snaplen: u32,
    pub buffer_size: u32,
    pub promiscuous: bool,
    pub filter: Option<String>,
    pub read_timeout_ms: u32,
    /// TPACKET_V3 block timeout; 0 selects immediate mode.
    pub block_timeout_ms: u32,
}

/// The kernel's counters for one capture, accumulated past libpcap's
/// 32-bit wrap-around.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Packets dropped because the ring was full.
    pub dropped: u64,
    /// Packets the interface or driver dropped.
    pub if_dropped: u64,
}

pub struct LiveSource {
    interface: String,
    read_timeout: std::time::Duration,
    /// The last read found a packet, so more may be waiting in the ring:
    /// ask libpcap before sleeping in poll.
    pending: bool,
    cap: Capture<Active>,
    link: LinkType,
    stats: SourceStats,
    kernel: KernelStats,
    last_raw: (u32, u32),
}

/// The kernel's index of interface `name` (from sysfs, as `ip link`
/// shows it).
fn ifindex(name: &str) -> Option<u32> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return None;
    }
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// What one read found.
pub enum Read<'a> {
    Packet(Packet<'a>),
    /// The ring was empty just now (no time was spent waiting).
    Empty,
    /// The wait passed without a packet.
    Quiet,
}

impl LiveSource {
    /// Opens and activates the capture; the errors say what an operator
    /// has to fix (no such interface, no permission, a bad filter).
    pub fn open(o: &LiveOptions) -> Result<Self, CaptureError> {
        let err = |reason: String| CaptureError::Live {
            interface: o.interface.clone(),
            reason,
        };
        let inactive =
            Capture::from_device(o.interface.as_str()).map_err(|e| err(e.to_string()))?;
        let mut cap = inactive
            .promisc(o.promiscuous)
            .snaplen(i32::try_from(o.snaplen).unwrap_or(i32::MAX))
            .buffer_size(i32::try_from(o.buffer_size).unwrap_or(i32::MAX))
            .immediate_mode(o.block_timeout_ms == 0)
            .timeout(i32::try_from(o.block_timeout_ms).unwrap_or(i32::MAX))
            .open()
            .map_err(|e| err(explain_open_error(&e)))?
            .setnonblock()
            .map_err(|e| err(e.to_string()))?;
        // On `any`, ask for LINUX_SLL2: its header names the interface of
        // every packet, which is how the conn stage counts a packet that
        // crossed a pod's veth and the bridge once (conn/dedup.rs). Before
        // the filter, which is compiled for the link type.
        if o.interface == "any" {
            if let Err(e) = cap.set_datalink(pcap::Linktype(LinkType::LINUX_SLL2.0)) {
                tracing::warn!(
                    error = %e,
                    "libpcap cannot give `any` the LINUX_SLL2 link type: packets crossing \
                     several interfaces are counted once per interface"
                );
            }
        }
        if let Some(f) = o.filter.as_deref().filter(|f| !f.trim().is_empty()) {
            cap.filter(f, true).map_err(|e| CaptureError::LiveFilter {
                interface: o.interface.clone(),
                filter: f.to_owned(),
                reason: e.to_string(),
            })?;
        }
        let link = LinkType(cap.get_datalink().0);
        Ok(LiveSource {
            interface: o.interface.clone(),
            pending: true,
            read_timeout: std::time::Duration::from_millis(u64::from(o.read_timeout_ms.max(1))),
            cap,
            link,
            stats: SourceStats::default(),
            kernel: KernelStats::default(),
            last_raw: (0, 0),
        })
    }

    /// Opens the captures for a list of interfaces. One interface (or
    /// `any` among them) is opened as named. Several are one `any` capture
    /// whose kernel filter keeps only their packets (`ifindex N or ...`):
    /// its `LINUX_SLL2` header names each packet's interface, so a packet
    /// crossing two of them is counted once (conn/node_view.rs), which
    /// separate captures could not tell; and an interface that goes away
    /// just stops matching instead of ending a capture.
    pub fn open_set(interfaces: &[String], o: &LiveOptions) -> Result<Vec<Self>, CaptureError> {
        if interfaces.len() < 2 || interfaces.iter().any(|i| i == "any") {
            let any = interfaces.iter().find(|i| *i == "any");
            let names: Vec<&String> = match any {
                Some(a) => vec![a],
                None => interfaces.iter().collect(),
            };
            return names
                .into_iter()
                .map(|i| {
                    Self::open(&LiveOptions {
                        interface: i.clone(),
                        ..o.clone()
                    })
                })
                .collect();
        }
        let joined = interfaces.join(",");
        let mut wanted = Vec::with_capacity(interfaces.len());
        for name in interfaces {
            let index = ifindex(name).ok_or_else(|| CaptureError::Live {
                interface: name.clone(),
                reason: "no such interface".into(),
            })?;
            wanted.push(format!("ifindex {index}"));
        }
        let only_these = format!("({})", wanted.join(" or "));
        let filter = match o.filter.as_deref().map(str::trim) {
            Some(f) if !f.is_empty() => format!("{only_these} and ({f})"),
            _ => only_these,
        };
        let mut src = Self::open(&LiveOptions {
            interface: "any".into(),
            filter: Some(filter),
            ..o.clone()
        })?;
        src.interface = joined;
        Ok(vec![src])
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    pub fn link_type(&self) -> LinkType {
        self.link
    }

    pub fn stats(&self) -> SourceStats {
        self.stats
    }

    /// The next packet; `Empty` when the ring turned out to be empty (the
    /// next call waits); `Quiet` when nothing came by `deadline` (or within
    /// the read timeout).
    pub fn read(&mut self, deadline: Option<std::time::Instant>) -> Result<Read<'_>, CaptureError> {
        if !self.pending && !self.ready(deadline)? {
            return Ok(Read::Quiet);
        }
        let LiveSource {
            cap,
            pending,
            stats,
            link,
            interface,
            ..
        } = self;
        match cap.next_packet() {
            Ok(p) => {
                *pending = true;
                let h = p.header;
                stats.packets += 1;
                stats.bytes_captured += u64::from(h.caplen);
                stats.bytes_wire += u64::from(h.len);
                // The same conversion as the offline source (and Zeek).
                let ts = h.ts.tv_sec as f64 + h.ts.tv_usec as f64 / 1e6;
                Ok(Read::Packet(Packet {
                    ts,
                    link: *link,
                    wire_len: h.len,
                    data: p.data,
                }))
            }
            // Non-blocking: the ring is empty; the next call waits in poll.
            Err(pcap::Error::TimeoutExpired) => {
                *pending = false;
                Ok(Read::Empty)
            }
            Err(e) => Err(CaptureError::Live {
                interface: interface.clone(),
                reason: format!("read failed after {} packets: {e}", stats.packets),
            }),
        }
    }

    /// Waits until `deadline` (at most the read timeout) for the ring to
    /// have a packet.
    fn ready(&mut self, deadline: Option<std::time::Instant>) -> Result<bool, CaptureError> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let w = deadline.map_or(self.read_timeout, |d| {
            d.saturating_duration_since(std::time::Instant::now())
                .min(self.read_timeout)
        });
        let timeout = Timespec {
            tv_sec: w.as_secs() as i64,
            tv_nsec: i64::from(w.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&self.cap, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => Ok(false),
            Ok(_) => {
                let ev = fds[0].revents();
                if ev.intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL) {
                    return Err(
                        self.read_error(format!("the interface went away or failed ({ev:?})"))
                    );
                }
                Ok(true)
            }
            Err(rustix::io::Errno::INTR) => Ok(false),
            Err(e) => Err(self.read_error(format!("poll: {e}"))),
        }
    }

    fn read_error(&self, reason: String) -> CaptureError {
        CaptureError::Live {
            interface: self.interface.clone(),
            reason: format!("read failed after {} packets: {reason}", self.stats.packets),
        }
    }

    /// The kernel's drop counters so far.
    pub fn kernel_stats(&mut self) -> KernelStats {
        if let Ok(s) = self.cap.stats() {
            self.kernel.dropped += u64::from(s.dropped.wrapping_sub(self.last_raw.0));
            self.kernel.if_dropped += u64::from(s.if_dropped.wrapping_sub(self.last_raw.1));
            self.last_raw = (s.dropped, s.if_dropped);
        }
        self.kernel
    }
}

/// libpcap's activation errors are terse ("socket: Operation not
/// permitted"); say what to do about them.
fn explain_open_error(e: &pcap::Error) -> String {
    let s = e.to_string();
    let lower = s.to_ascii_lowercase();
    if lower.contains("not permitted") || lower.contains("permission") {
        format!("{s} (capturing needs CAP_NET_RAW, and CAP_NET_ADMIN for promiscuous mode)")
    } else if lower.contains("no such device") || lower.contains("doesn't exist") {
        format!("{s} (no such interface; `ip link` lists them)")
    } else {
        s
    }
}
