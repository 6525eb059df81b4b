//! Packet sources.
//!
//! A source hands out packets through a lending `next_packet()`: the returned
//! [`Packet`] borrows the source's own buffer (libpcap's file buffer or mmap
//! ring, or the pcapng reader's block buffer), so nothing on the per-packet
//! path allocates or copies payload.

mod live;
mod offline;
pub mod pcapng;

pub use crate::packet::{LinkType, Packet, Time};

pub use live::{KernelStats, LiveOptions, LiveSource, Read};
pub use offline::{open_all, FileReader, OfflineSource};

use std::path::PathBuf;

/// Counters a source keeps about what it read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    pub packets: u64,
    pub bytes_captured: u64,
    pub bytes_wire: u64,
    /// Packets the BPF filter rejected (counted by the pcapng reader;
    /// libpcap filters before osprey sees a packet).
    pub filtered: u64,
    /// pcapng packet blocks skipped: they name an interface their section
    /// did not describe, or have a captured or wire length of zero.
    pub skipped: u64,
}

impl std::ops::AddAssign for SourceStats {
    fn add_assign(&mut self, o: SourceStats) {
        self.packets += o.packets;
        self.bytes_captured += o.bytes_captured;
        self.bytes_wire += o.bytes_wire;
        self.filtered += o.filtered;
        self.skipped += o.skipped;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{path}: cannot open capture: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("{path}: bad capture filter {filter:?}: {reason}")]
    Filter {
        path: PathBuf,
        filter: String,
        reason: String,
    },
    /// A pcapng file whose structure is damaged or that osprey cannot
    /// read: found when the file is opened, before anything is written.
    #[error("{path}: cannot open capture: {problem} at byte {offset}")]
    PcapNg {
        path: PathBuf,
        offset: u64,
        problem: pcapng::PcapNgError,
    },
    /// The filter does not compile for one of the link types of a pcapng
    /// file's interfaces (a filter naming Ethernet fields, say, on a
    /// Linux cooked capture).
    #[error("{path}: bad capture filter {filter:?} for link type {link}: {reason}")]
    FilterLinkType {
        path: PathBuf,
        filter: String,
        link: i32,
        reason: String,
    },
    #[error("interface {interface}: {reason}")]
    Live { interface: String, reason: String },
    #[error("interface {interface}: bad capture filter {filter:?}: {reason}")]
    LiveFilter {
        interface: String,
        filter: String,
        reason: String,
    },
    #[error("{path}: read error after {packets} packets: {reason}")]
    Read {
        path: PathBuf,
        packets: u64,
        reason: String,
    },
}

/// A source of packets with a lending iterator.
pub trait PacketSource {
    /// The next packet, or `None` at the end of input.
    fn next_packet(&mut self) -> Result<Option<Packet<'_>>, CaptureError>;
    fn stats(&self) -> SourceStats;
}
