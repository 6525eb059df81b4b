//! Reading a pcap or pcapng file with libpcap.
//!
//! One source reads one file; a trace made of several files is read by
//! opening them in turn (see [`open_all`]), which keeps the lending
//! `next_packet()` free of cross-file state.

use std::path::{Path, PathBuf};

use pcap::{Capture, Offline};

use super::{CaptureError, LinkType, Packet, PacketSource, SourceStats};

pub struct OfflineSource {
    path: PathBuf,
    cap: Capture<Offline>,
    link: LinkType,
    stats: SourceStats,
}

impl OfflineSource {
    /// Opens `path`, applying the BPF `filter` (Zeek's `-f`) if given.
    pub fn open(path: &Path, filter: Option<&str>) -> Result<Self, CaptureError> {
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
        Ok(OfflineSource {
            path: path.to_path_buf(),
            cap,
            link,
            stats: SourceStats::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn link_type(&self) -> LinkType {
        self.link
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
        match self.cap.next_packet() {
            Ok(p) => {
                let h = p.header;
                self.stats.packets += 1;
                self.stats.bytes_captured += u64::from(h.caplen);
                self.stats.bytes_wire += u64::from(h.len);
                // Zeek: pkt->time = ts.tv_sec + ts.tv_usec / 1e6 (Packet.cc).
                let ts = h.ts.tv_sec as f64 + h.ts.tv_usec as f64 / 1e6;
                Ok(Some(Packet {
                    ts,
                    link: self.link,
                    wire_len: h.len,
                    data: p.data,
                }))
            }
            Err(pcap::Error::NoMorePackets) => Ok(None),
            Err(e) => Err(CaptureError::Read {
                path: self.path.clone(),
                packets: self.stats.packets,
                reason: e.to_string(),
            }),
        }
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }
}
