//! pcapng files read in pure Rust, every packet with its own interface's
//! link type and clock.
//!
//! Why not libpcap: libpcap gives a whole file one link type and one
//! snapshot length, and stops part-way through a pcapng whose interfaces
//! differ ("an interface has a snapshot length 8192 different from the
//! snapshot length of the first interface"). Zeek reads every pcapng with
//! a reader of its own that decodes each packet with the link type of the
//! interface the packet names; so does this one. `pcap-parser` decodes the
//! blocks; this file frames them for a lending reader (the packet borrows
//! the block buffer, nothing is copied), keeps each section's interfaces
//! and turns timestamps into Zeek's.
//!
//! The whole file is walked once when it is opened, so that a damaged file
//! fails before anything is written (as `capture::open_all` promises), and
//! so that every link type is known before the BPF filter is compiled for
//! it. Walking costs one extra read of the file (see benches/README.md).
//!
//! Limits, checked during that walk:
//! - a block is at most [`MAX_BLOCK_BYTES`] (16 MiB, libpcap's own ceiling
//!   for pcapng), so a corrupt length cannot make the reader allocate 4 GiB;
//! - a block's length is a multiple of 4, at least its type's fixed part,
//!   and the copy at its end equals the one at its start;
//! - a section starts with a section header of major version 1, in either
//!   byte order (each section has its own);
//! - `if_tsresol` names a unit a 64-bit count can hold (10^-19 or 2^-63 at
//!   most).
//!
//! Not errors, but counted in [`SourceStats::skipped`]: a packet naming an
//! interface its section has not described, and a packet with a captured
//! or wire length of zero (Zeek's `empty_pcapng_header`; it skips those).
//! Other block types (name resolution, statistics, custom, decryption
//! secrets, ...) are skipped.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use pcap_parser::nom;
use pcap_parser::pcapng::{
    parse_enhancedpacketblock_be, parse_enhancedpacketblock_le, parse_interfacedescriptionblock_be,
    parse_interfacedescriptionblock_le, parse_sectionheaderblock, parse_simplepacketblock_be,
    parse_simplepacketblock_le, OptionCode,
};
use pcap_parser::PcapError;

use super::{CaptureError, LinkType, Packet, SourceStats, Time};

/// The largest block read (libpcap's limit for a pcapng block).
pub const MAX_BLOCK_BYTES: u32 = 16 << 20;
/// Bytes asked of the file per read.
const READ_CHUNK: usize = 1 << 20;

/// Section header: the same bytes in either byte order.
pub const SHB_TYPE: u32 = 0x0A0D_0D0A;
const IDB_TYPE: u32 = 1;
/// The obsolete Packet Block (pcapng drafts before EPB).
const PB_TYPE: u32 = 2;
const SPB_TYPE: u32 = 3;
const EPB_TYPE: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
/// Microseconds per second: Zeek and libpcap keep packet time to the
/// microsecond.
const MICROS: u64 = 1_000_000;

/// What is wrong with a pcapng file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PcapNgError {
    #[error("not a pcapng file: the first block has type {0:#010x}, not a section header")]
    NotPcapNg(u32),
    #[error("section header with unknown byte-order magic {0:#010x}")]
    ByteOrder(u32),
    #[error("section header of unsupported pcapng version {major}.{minor}")]
    Version { major: u16, minor: u16 },
    #[error(
        "block of type {block_type:#x} has length {len}, not a multiple of 4 of at least {min}"
    )]
    BadLength { block_type: u32, len: u32, min: u32 },
    #[error(
        "block of type {block_type:#x} has length {len}, over the limit of {MAX_BLOCK_BYTES} bytes"
    )]
    TooLarge { block_type: u32, len: u32 },
    #[error("truncated block: {declared} bytes declared, {available} left in the file")]
    Truncated { declared: u32, available: usize },
    #[error("truncated block header: {available} bytes left in the file")]
    TruncatedHeader { available: usize },
    #[error("block length {head} at its start and {tail} at its end disagree")]
    LengthMismatch { head: u32, tail: u32 },
    #[error("malformed {block} block: {detail}")]
    Malformed { block: &'static str, detail: String },
    #[error("interface {index} has if_tsresol {value:#04x}, a unit no 64-bit count holds")]
    TsResol { index: usize, value: u8 },
    #[error("read error: {0}")]
    Io(String),
}

/// How an interface counts time: `units` per second since `offset_secs`
/// (`if_tsresol`, `if_tsoffset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    pub units_per_sec: u64,
    pub offset_secs: i64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            units_per_sec: MICROS,
            offset_secs: 0,
        }
    }
}

impl Clock {
    /// Packet time as Zeek computes it: whole seconds plus the fraction
    /// truncated to microseconds, `sec + usec / 1e6` in f64. For
    /// microsecond interfaces this is bit for bit what the libpcap path
    /// computes from `tv_sec` and `tv_usec`; for finer ones it truncates
    /// as libpcap (opened at microsecond precision) and Zeek's own pcapng
    /// reader do.
    ///
    /// Zeek's pcapng reader ignores `if_tsoffset` and takes a binary
    /// `if_tsresol` of n as 2^(n+1) units; this follows the pcapng
    /// specification (and libpcap) instead: offset added, 2^n units.
    pub fn time(self, units: u64) -> Time {
        let per_sec = self.units_per_sec.max(1);
        let secs = units / per_sec;
        let frac = units % per_sec;
        let usec = if per_sec == MICROS {
            frac
        } else {
            // frac < per_sec, so the quotient is below one million.
            u64::try_from(u128::from(frac) * u128::from(MICROS) / u128::from(per_sec)).unwrap_or(0)
        };
        let secs = i128::from(secs) + i128::from(self.offset_secs);
        secs as f64 + usec as f64 / 1e6
    }

    /// The unit of `if_tsresol`: 10^-n seconds, or 2^-n with the top bit.
    fn from_tsresol(value: u8) -> Option<u64> {
        let n = u32::from(value & 0x7f);
        if value & 0x80 == 0 {
            10u64.checked_pow(n)
        } else {
            1u64.checked_shl(n).filter(|_| n < 64)
        }
    }
}

/// One Interface Description Block, as packets need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interface {
    pub link: LinkType,
    pub snaplen: u32,
    pub clock: Clock,
}

/// A packet block's fields, without borrowing the block.
#[derive(Clone, Copy, Debug)]
struct PacketBlock {
    interface: u32,
    /// Raw timestamp in the interface's units; a Simple Packet Block has
    /// none.
    ts: Option<u64>,
    /// Captured bytes in the block (before an SPB's snaplen cut).
    caplen: u32,
    wire_len: u32,
    /// Where the packet's bytes start in the block.
    data_at: usize,
    simple: bool,
}

enum Item {
    Section,
    Interface(Interface),
    Packet(PacketBlock),
    Other,
}

fn u16_at(b: &[u8], at: usize, big_endian: bool) -> Option<u16> {
    let a: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(if big_endian {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    })
}

fn u32_at(b: &[u8], at: usize, big_endian: bool) -> Option<u32> {
    let a: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if big_endian {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    })
}

/// A parser failure, described without dumping the input bytes (which
/// pcap-parser's own `Display` does).
fn malformed(block: &'static str, e: nom::Err<PcapError<&[u8]>>) -> PcapNgError {
    let detail = match e {
        nom::Err::Incomplete(_) => "shorter than its fields say".to_owned(),
        nom::Err::Error(e) | nom::Err::Failure(e) => match e {
            PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
                format!("{} check failed", kind.description())
            }
            PcapError::HeaderNotRecognized => "header not recognized".to_owned(),
            other => format!("{other:?}"),
        },
    };
    PcapNgError::Malformed { block, detail }
}

/// Reads one complete block (framing already checked).
fn interpret(block: &[u8], big_endian: bool, index: usize) -> Result<Item, PcapNgError> {
    let Some(block_type) = u32_at(block, 0, big_endian) else {
        return Ok(Item::Other);
    };
    match block_type {
        SHB_TYPE => {
            let (_, shb) =
                parse_sectionheaderblock(block).map_err(|e| malformed("section header", e))?;
            if shb.major_version != 1 {
                return Err(PcapNgError::Version {
                    major: shb.major_version,
                    minor: shb.minor_version,
                });
            }
            Ok(Item::Section)
        }
        IDB_TYPE => {
            let parsed = if big_endian {
                parse_interfacedescriptionblock_be(block)
            } else {
                parse_interfacedescriptionblock_le(block)
            };
            let (_, idb) = parsed.map_err(|e| malformed("interface description", e))?;
            let mut clock = Clock::default();
            // Read here rather than through pcap-parser's accessors: its
            // if_tsoffset is always little-endian and its binary
            // resolutions are refused.
            for opt in &idb.options {
                let value = opt.value();
                if opt.code == OptionCode::IfTsresol {
                    if let Some(&v) = value.first() {
                        clock.units_per_sec = Clock::from_tsresol(v)
                            .ok_or(PcapNgError::TsResol { index, value: v })?;
                    }
                } else if opt.code == OptionCode::IfTsoffset {
                    if let Some(Ok(a)) = value.get(..8).map(<[u8; 8]>::try_from) {
                        clock.offset_secs = if big_endian {
                            i64::from_be_bytes(a)
                        } else {
                            i64::from_le_bytes(a)
                        };
                    }
                }
            }
            Ok(Item::Interface(Interface {
                link: LinkType(idb.linktype.0),
                snaplen: idb.snaplen,
                clock,
            }))
        }
        EPB_TYPE => {
            let parsed = if big_endian {
                parse_enhancedpacketblock_be(block)
            } else {
                parse_enhancedpacketblock_le(block)
            };
            let (_, epb) = parsed.map_err(|e| malformed("enhanced packet", e))?;
            Ok(Item::Packet(PacketBlock {
                interface: epb.if_id,
                ts: Some((u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low)),
                caplen: epb.caplen,
                wire_len: epb.origlen,
                data_at: 28,
                simple: false,
            }))
        }
        SPB_TYPE => {
            let parsed = if big_endian {
                parse_simplepacketblock_be(block)
            } else {
                parse_simplepacketblock_le(block)
            };
            let (_, spb) = parsed.map_err(|e| malformed("simple packet", e))?;
            let room = u32::try_from(spb.data.len()).unwrap_or(u32::MAX);
            Ok(Item::Packet(PacketBlock {
                interface: 0,
                ts: None,
                caplen: spb.origlen.min(room),
                wire_len: spb.origlen,
                data_at: 12,
                simple: true,
            }))
        }
        PB_TYPE => {
            // pcap-parser has no parser for the obsolete Packet Block:
            // interface (u16), drops (u16), timestamp (2 x u32), captured
            // and wire lengths (u32), then the data.
            let field = |at| u32_at(block, at, big_endian);
            let bad = |detail: &str| PcapNgError::Malformed {
                block: "packet",
                detail: detail.to_owned(),
            };
            let (Some(interface), Some(hi), Some(lo), Some(caplen), Some(wire_len)) = (
                u16_at(block, 8, big_endian),
                field(12),
                field(16),
                field(20),
                field(24),
            ) else {
                return Err(bad("shorter than its fields say"));
            };
            let fits = usize::try_from(caplen)
                .ok()
                .and_then(|c| c.checked_add(28 + 4))
                .is_some_and(|end| end <= block.len());
            if !fits {
                return Err(bad("captured length runs past the block"));
            }
            Ok(Item::Packet(PacketBlock {
                interface: u32::from(interface),
                ts: Some((u64::from(hi) << 32) | u64::from(lo)),
                caplen,
                wire_len,
                data_at: 28,
                simple: false,
            }))
        }
        _ => Ok(Item::Other),
    }
}

/// Frames blocks over a reader: each `advance` leaves one complete,
/// length-checked block in the buffer until the next call.
struct Blocks<R> {
    inner: R,
    buf: Vec<u8>,
    /// The current block is `buf[start..start + len]`.
    start: usize,
    len: usize,
    /// Bytes of `buf` holding file data.
    end: usize,
    /// File offset of `buf[0]`.
    base: u64,
    big_endian: bool,
    started: bool,
}

impl<R: Read> Blocks<R> {
    fn new(inner: R) -> Self {
        Blocks {
            inner,
            buf: Vec::new(),
            start: 0,
            len: 0,
            end: 0,
            base: 0,
            big_endian: false,
            started: false,
        }
    }

    /// File offset of the current block (or of the one that failed).
    fn offset(&self) -> u64 {
        self.base + self.start as u64
    }

    fn block(&self) -> &[u8] {
        self.buf
            .get(self.start..self.start + self.len)
            .unwrap_or_default()
    }

    /// Makes `n` bytes from `start` available; false if the file ends
    /// first.
    fn fill(&mut self, n: usize) -> Result<bool, PcapNgError> {
        if self.end - self.start >= n {
            return Ok(true);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.base += self.start as u64;
            self.start = 0;
        }
        let want = n.max(READ_CHUNK);
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        while self.end < n {
            let Some(space) = self.buf.get_mut(self.end..) else {
                return Ok(false);
            };
            match self.inner.read(space) {
                Ok(0) => return Ok(false),
                Ok(k) => self.end += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(PcapNgError::Io(e.to_string())),
            }
        }
        Ok(true)
    }

    /// Moves to the next block; false at the end of the file.
    fn advance(&mut self) -> Result<bool, PcapNgError> {
        self.start += self.len;
        self.len = 0;
        if !self.fill(12)? {
            let available = self.end - self.start;
            if available == 0 {
                return Ok(false);
            }
            return Err(PcapNgError::TruncatedHeader { available });
        }
        let head = self
            .buf
            .get(self.start..self.start + 12)
            .unwrap_or_default();
        // The section header's type reads the same in both byte orders;
        // its byte-order magic sets the order of everything after it.
        if u32_at(head, 0, false) == Some(SHB_TYPE) {
            let magic = u32_at(head, 8, false).unwrap_or(0);
            self.big_endian = if magic == BYTE_ORDER_MAGIC {
                false
            } else if magic == BYTE_ORDER_MAGIC.swap_bytes() {
                true
            } else {
                return Err(PcapNgError::ByteOrder(magic));
            };
        } else if !self.started {
            return Err(PcapNgError::NotPcapNg(u32_at(head, 0, false).unwrap_or(0)));
        }
        let be = self.big_endian;
        let block_type = u32_at(head, 0, be).unwrap_or(0);
        let len = u32_at(head, 4, be).unwrap_or(0);
        let min = match block_type {
            SHB_TYPE => 28,
            IDB_TYPE => 20,
            EPB_TYPE | PB_TYPE => 32,
            SPB_TYPE => 16,
            _ => 12,
        };
        if len < min || !len.is_multiple_of(4) {
            return Err(PcapNgError::BadLength {
                block_type,
                len,
                min,
            });
        }
        if len > MAX_BLOCK_BYTES {
            return Err(PcapNgError::TooLarge { block_type, len });
        }
        let n = len as usize;
        if !self.fill(n)? {
            return Err(PcapNgError::Truncated {
                declared: len,
                available: self.end - self.start,
            });
        }
        let tail = self
            .buf
            .get(self.start..self.start + n)
            .and_then(|b| u32_at(b, n - 4, be))
            .unwrap_or(0);
        if tail != len {
            return Err(PcapNgError::LengthMismatch { head: len, tail });
        }
        self.len = n;
        self.started = true;
        Ok(true)
    }
}

/// The DLT_* value libpcap's filter compiler knows a file's LINKTYPE_*
/// value by. They are equal except for a few old link types whose DLT_*
/// numbers differ between systems; these are Linux's (libpcap's
/// `linktype_to_dlt`). Packets keep the file's value, as Zeek's pcapng
/// reader passes it; decode treats both numbers of raw IP alike.
fn dlt_of(link: LinkType) -> i32 {
    match link.0 {
        100 => 11, // ATM_RFC1483
        101 => 12, // RAW
        102 => 15, // SLIP_BSDOS
        103 => 16, // PPP_BSDOS
        106 => 19, // ATM_CLIP
        other => other,
    }
}

/// The BPF filter compiled once per link type of the file.
struct Filters {
    programs: Vec<(LinkType, pcap::BpfProgram)>,
}

impl Filters {
    /// Compiles `filter` for every link type in `sections`; the error
    /// names the link type that failed.
    fn compile(filter: &str, sections: &[Vec<Interface>]) -> Result<Self, (LinkType, String)> {
        let mut programs: Vec<(LinkType, pcap::BpfProgram)> = Vec::new();
        for link in sections.iter().flatten().map(|i| i.link) {
            if programs.iter().any(|(l, _)| *l == link) {
                continue;
            }
            let program = pcap::Capture::dead(pcap::Linktype(dlt_of(link)))
                .and_then(|dead| dead.compile(filter, true))
                .map_err(|e| (link, e.to_string()))?;
            programs.push((link, program));
        }
        Ok(Filters { programs })
    }

    /// Whether the filter accepts `data`. libpcap is handed the captured
    /// length as the wire length too (the `pcap` crate's
    /// `BpfProgram::filter`), so `len`/`greater`/`less` see the captured
    /// size of a packet the snapshot length cut.
    fn accepts(&self, link: LinkType, data: &[u8]) -> bool {
        self.programs
            .iter()
            .find(|(l, _)| *l == link)
            .is_some_and(|(_, p)| p.filter(data))
    }
}

/// A pcapng file (or any pcapng byte stream that can be rewound) read
/// packet by packet.
pub struct PcapNgReader<R> {
    path: PathBuf,
    blocks: Blocks<R>,
    /// The interfaces of every section, from the walk at open.
    sections: Vec<Vec<Interface>>,
    /// Index of the section being read.
    section: Option<usize>,
    /// Interfaces described so far in this section: a packet may only
    /// name one of these.
    described: usize,
    filters: Option<Filters>,
    /// A Simple Packet Block has no timestamp; it takes the time of the
    /// packet before it, so that packet time never jumps back to 1970.
    last_ts: Time,
    stats: SourceStats,
}

impl<R: Read + Seek> PcapNgReader<R> {
    /// Walks the whole of `inner` (named `path` in errors), checking every
    /// block, then rewinds it for reading. With `filter`, compiles it for
    /// every link type the file's interfaces use.
    pub fn open(path: &Path, mut inner: R, filter: Option<&str>) -> Result<Self, CaptureError> {
        let sections = walk(&mut inner).map_err(|(offset, problem)| CaptureError::PcapNg {
            path: path.to_path_buf(),
            offset,
            problem,
        })?;
        inner
            .seek(SeekFrom::Start(0))
            .map_err(|e| CaptureError::Open {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        let filters = match filter {
            None => None,
            Some(f) => Some(Filters::compile(f, &sections).map_err(|(link, reason)| {
                CaptureError::FilterLinkType {
                    path: path.to_path_buf(),
                    filter: f.to_owned(),
                    link: link.0,
                    reason,
                }
            })?),
        };
        let links: Vec<i32> = {
            let mut l: Vec<i32> = sections.iter().flatten().map(|i| i.link.0).collect();
            l.sort_unstable();
            l.dedup();
            l
        };
        tracing::debug!(
            path = %path.display(),
            sections = sections.len(),
            interfaces = sections.iter().map(Vec::len).sum::<usize>(),
            ?links,
            "pcapng file opened"
        );
        Ok(PcapNgReader {
            path: path.to_path_buf(),
            blocks: Blocks::new(inner),
            sections,
            section: None,
            described: 0,
            filters,
            last_ts: 0.0,
            stats: SourceStats::default(),
        })
    }
}

/// The interfaces of each section of `inner`, or the first problem and
/// the offset of the block that has it.
fn walk<R: Read>(inner: R) -> Result<Vec<Vec<Interface>>, (u64, PcapNgError)> {
    let mut blocks = Blocks::new(inner);
    let mut sections: Vec<Vec<Interface>> = Vec::new();
    loop {
        match blocks.advance() {
            Ok(true) => {}
            Ok(false) => return Ok(sections),
            Err(e) => return Err((blocks.offset(), e)),
        }
        let index = sections.last().map_or(0, Vec::len);
        match interpret(blocks.block(), blocks.big_endian, index) {
            Ok(Item::Section) => sections.push(Vec::new()),
            Ok(Item::Interface(i)) => {
                if let Some(s) = sections.last_mut() {
                    s.push(i);
                }
            }
            Ok(Item::Packet(_) | Item::Other) => {}
            Err(e) => return Err((blocks.offset(), e)),
        }
    }
}

impl<R: Read> PcapNgReader<R> {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> SourceStats {
        self.stats
    }

    /// The interfaces of every section, in file order.
    pub fn sections(&self) -> &[Vec<Interface>] {
        &self.sections
    }

    fn read_error(&self, e: PcapNgError) -> CaptureError {
        CaptureError::Read {
            path: self.path.clone(),
            packets: self.stats.packets,
            reason: format!("{e} at byte {}", self.blocks.offset()),
        }
    }

    /// The interface a packet block names, if its section described it.
    fn interface(&self, id: u32) -> Option<Interface> {
        let id = usize::try_from(id).ok().filter(|&i| i < self.described)?;
        self.sections.get(self.section?)?.get(id).copied()
    }

    /// The next packet; blocks that carry none are read past.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, CaptureError> {
        let (pb, iface, caplen) = loop {
            match self.blocks.advance() {
                Ok(true) => {}
                Ok(false) => {
                    if self.stats.skipped > 0 {
                        tracing::warn!(
                            path = %self.path.display(),
                            skipped = self.stats.skipped,
                            "pcapng packet blocks skipped: unknown interface or zero length"
                        );
                    }
                    return Ok(None);
                }
                Err(e) => return Err(self.read_error(e)),
            }
            let item = match interpret(self.blocks.block(), self.blocks.big_endian, self.described)
            {
                Ok(item) => item,
                Err(e) => return Err(self.read_error(e)),
            };
            match item {
                Item::Section => {
                    self.section = Some(self.section.map_or(0, |s| s + 1));
                    self.described = 0;
                }
                Item::Interface(_) => self.described += 1,
                Item::Other => {}
                Item::Packet(pb) => {
                    let Some(iface) = self.interface(pb.interface) else {
                        self.stats.skipped += 1;
                        continue;
                    };
                    let mut caplen = pb.caplen;
                    if pb.simple && iface.snaplen > 0 {
                        caplen = caplen.min(iface.snaplen);
                    }
                    if caplen == 0 || pb.wire_len == 0 {
                        self.stats.skipped += 1;
                        continue;
                    }
                    if let Some(f) = &self.filters {
                        let data = packet_bytes(self.blocks.block(), pb.data_at, caplen);
                        if !f.accepts(iface.link, data) {
                            self.stats.filtered += 1;
                            continue;
                        }
                    }
                    break (pb, iface, caplen);
                }
            }
        };
        let ts = match pb.ts {
            Some(units) => iface.clock.time(units),
            None => self.last_ts,
        };
        self.last_ts = ts;
        self.stats.packets += 1;
        self.stats.bytes_captured += u64::from(caplen);
        self.stats.bytes_wire += u64::from(pb.wire_len);
        Ok(Some(Packet {
            ts,
            link: iface.link,
            wire_len: pb.wire_len,
            data: packet_bytes(self.blocks.block(), pb.data_at, caplen),
        }))
    }
}

fn packet_bytes(block: &[u8], at: usize, caplen: u32) -> &[u8] {
    let end = usize::try_from(caplen)
        .ok()
        .and_then(|c| at.checked_add(c))
        .unwrap_or(usize::MAX);
    block.get(at..end).unwrap_or_default()
}
