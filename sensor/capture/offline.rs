//! Reading a pcap or pcapng file.
//!
//! Classic pcap files are read with libpcap. pcapng files are read by
//! osprey's own reader ([`super::pcapng`]), as Zeek reads them with its
//! own: libpcap refuses a pcapng whose interfaces have different link
//! types or snapshot lengths, and gives every packet the first
//! interface's link type. The reader is chosen by the file's first four
//! bytes.
//!
//! One source reads one file; a trace made of several files is read by
//! opening them in turn (see [`open_all`]), which keeps the lending
//! `next_packet()` free of cross-file state.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use pcap::{Capture, Offline};

use super::pcapng::{PcapNgReader, SHB_TYPE};
use super::{CaptureError, LinkType, Packet, PacketSource, SourceStats};

/// Which reader opens a file. Only benches and tests pick one; everything
/// else uses [`FileReader::Auto`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FileReader {
    /// pcapng files with osprey's reader, everything else with libpcap.
    #[default]
    Auto,
    /// libpcap for every file (fails on pcapng files libpcap refuses).
    Libpcap,
    /// osprey's pcapng reader (fails on anything but pcapng).
    PcapNg,
}

enum Reader {
    Libpcap {
        cap: Capture<Offline>,
        link: LinkType,
        stats: SourceStats,
    },
    PcapNg(Box<PcapNgReader<File>>),
}

pub struct OfflineSource {
    path: PathBuf,
    reader: Reader,
}

impl OfflineSource {
    /// Opens `path`, applying the BPF `filter` (Zeek's `-f`) if given.
    pub fn open(path: &Path, filter: Option<&str>) -> Result<Self, CaptureError> {
        Self::open_with(path, filter, FileReader::Auto)
    }

    /// Opens `path` with the reader `how` names.
    pub fn open_with(
        path: &Path,
        filter: Option<&str>,
        how: FileReader,
    ) -> Result<Self, CaptureError> {
        let open_err = |e: std::io::Error| CaptureError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let pcapng = match how {
            FileReader::Libpcap => false,
            FileReader::PcapNg => true,
            FileReader::Auto => {
                let mut magic = [0u8; 4];
                let mut f = File::open(path).map_err(open_err)?;
                // A file too short for a magic number is left to libpcap,
                // whose error says so.
                f.read_exact(&mut magic).is_ok() && u32::from_le_bytes(magic) == SHB_TYPE
            }
        };
        let reader = if pcapng {
            let f = File::open(path).map_err(open_err)?;
            Reader::PcapNg(Box::new(PcapNgReader::open(path, f, filter)?))
        } else {
            Self::open_libpcap(path, filter)?
        };
        Ok(OfflineSource {
            path: path.to_path_buf(),
            reader,
        })
    }

    fn open_libpcap(path: &Path, filter: Option<&str>) -> Result<Reader, CaptureError> {
        let mut cap = Capture::from_file(path).map_err(|e| CaptureError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if let Some(f) = filter {
            cap.filter(f, true).map_err(|e| CaptureError::Filter {
                path: path.to_path_buf(),
                filter: f.to_owned(),
                reason: e.to_string(),
            })?;
        }
        let link = LinkType(cap.get_datalink().0);
        Ok(Reader::Libpcap {
            cap,
            link,
            stats: SourceStats::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens every file before any is read, so that a bad third file fails the
/// run before two files' worth of output has been written.
pub fn open_all(
    paths: &[PathBuf],
    filter: Option<&str>,
) -> Result<Vec<OfflineSource>, CaptureError> {
    paths
        .iter()
        .map(|p| OfflineSource::open(p, filter))
        .collect()
}

impl PacketSource for OfflineSource {
    fn next_packet(&mut self) -> Result<Option<Packet<'_>>, CaptureError> {
        let (cap, link, stats) = match &mut self.reader {
            Reader::PcapNg(r) => return r.next_packet(),
            Reader::Libpcap { cap, link, stats } => (cap, *link, stats),
        };
        match cap.next_packet() {
            Ok(p) => {
                let h = p.header;
                stats.packets += 1;
                stats.bytes_captured += u64::from(h.caplen);
                stats.bytes_wire += u64::from(h.len);
                // Zeek: pkt->time = ts.tv_sec + ts.tv_usec / 1e6 (Packet.cc).
                let ts = h.ts.tv_sec as f64 + h.ts.tv_usec as f64 / 1e6;
                Ok(Some(Packet {
                    ts,
                    link,
                    wire_len: h.len,
                    data: p.data,
                }))
            }
            Err(pcap::Error::NoMorePackets) => Ok(None),
            Err(e) => Err(CaptureError::Read {
                path: self.path.clone(),
                packets: stats.packets,
                reason: e.to_string(),
            }),
        }
    }

    fn stats(&self) -> SourceStats {
        match &self.reader {
            Reader::Libpcap { stats, .. } => *stats,
            Reader::PcapNg(r) => r.stats(),
        }
    }
}
