//! osprey's pcapng reader (sensor/capture/pcapng.rs) on files built here:
//! several sections, interfaces with different link types, snapshot
//! lengths and clocks, both byte orders, every packet block type, and
//! damaged files. libpcap is the oracle where it can read the file.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use etherparse::PacketBuilder;
use osprey::capture::pcapng::{Clock, PcapNgError, PcapNgReader};
use osprey::capture::{CaptureError, FileReader, LinkType, OfflineSource, PacketSource};
use osprey::conn::{EngineConfig, Proto};

const A: [u8; 4] = [10, 0, 0, 1];
const B: [u8; 4] = [10, 0, 0, 2];

/// Writes pcapng blocks in the byte order of the current section.
struct Ng {
    out: Vec<u8>,
    be: bool,
}

impl Ng {
    fn new() -> Self {
        Ng {
            out: Vec::new(),
            be: false,
        }
    }

    fn u16(&self, v: u16) -> [u8; 2] {
        if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn u32(&self, v: u32) -> [u8; 4] {
        if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn block(&mut self, block_type: u32, body: &[u8]) -> &mut Self {
        let mut body = body.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let len = u32::try_from(12 + body.len()).expect("small block");
        let (t, l) = (self.u32(block_type), self.u32(len));
        self.out.extend_from_slice(&t);
        self.out.extend_from_slice(&l);
        self.out.extend_from_slice(&body);
        self.out.extend_from_slice(&l);
        self
    }

    fn options(&self, opts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut b = Vec::new();
        if opts.is_empty() {
            return b;
        }
        for (code, value) in opts {
            b.extend_from_slice(&self.u16(*code));
            b.extend_from_slice(&self.u16(u16::try_from(value.len()).expect("short option")));
            b.extend_from_slice(value);
            while !b.len().is_multiple_of(4) {
                b.push(0);
            }
        }
        b.extend_from_slice(&[0; 4]);
        b
    }

    fn shb(&mut self, big_endian: bool) -> &mut Self {
        self.be = big_endian;
        let mut body = self.u32(0x1A2B_3C4D).to_vec();
        body.extend_from_slice(&self.u16(1));
        body.extend_from_slice(&self.u16(0));
        body.extend_from_slice(&[0xff; 8]);
        self.block(0x0A0D_0D0A, &body)
    }

    fn idb(&mut self, link: u16, snaplen: u32, opts: &[(u16, Vec<u8>)]) -> &mut Self {
        let mut body = self.u16(link).to_vec();
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&self.u32(snaplen));
        body.extend_from_slice(&self.options(opts));
        self.block(1, &body)
    }

    /// An interface whose clock ticks 10^-`resol` s (2^-n with 0x80).
    fn tsresol(resol: u8) -> (u16, Vec<u8>) {
        (9, vec![resol])
    }

    fn tsoffset(&self, secs: i64) -> (u16, Vec<u8>) {
        let v = if self.be {
            secs.to_be_bytes()
        } else {
            secs.to_le_bytes()
        };
        (14, v.to_vec())
    }

    fn epb(&mut self, iface: u32, ts: u64, data: &[u8], wire: u32) -> &mut Self {
        let mut body = self.u32(iface).to_vec();
        body.extend_from_slice(&self.u32((ts >> 32) as u32));
        body.extend_from_slice(&self.u32(ts as u32));
        body.extend_from_slice(&self.u32(u32::try_from(data.len()).expect("small")));
        body.extend_from_slice(&self.u32(wire));
        body.extend_from_slice(data);
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        // An epb_flags option, as dumpcap writes.
        let opts = self.options(&[(2, self.u32(1).to_vec())]);
        body.extend_from_slice(&opts);
        self.block(6, &body)
    }

    fn spb(&mut self, data: &[u8], wire: u32) -> &mut Self {
        let mut body = self.u32(wire).to_vec();
        body.extend_from_slice(data);
        self.block(3, &body)
    }

    /// The obsolete Packet Block.
    fn pb(&mut self, iface: u16, ts: u64, data: &[u8], wire: u32) -> &mut Self {
        let mut body = self.u16(iface).to_vec();
        body.extend_from_slice(&self.u16(0));
        body.extend_from_slice(&self.u32((ts >> 32) as u32));
        body.extend_from_slice(&self.u32(ts as u32));
        body.extend_from_slice(&self.u32(u32::try_from(data.len()).expect("small")));
        body.extend_from_slice(&self.u32(wire));
        body.extend_from_slice(data);
        self.block(2, &body)
    }

    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, &self.out).expect("write the capture");
        p
    }
}

fn raw_udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut out, payload)
        .expect("etherparse builds a datagram");
    out
}

fn ether_udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut out, payload)
        .expect("etherparse builds a frame");
    out
}

/// A Linux cooked (SLL, link type 113) frame around an IPv4 datagram.
fn sll_udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 4, 0, 1, 0, 6, 2, 0, 0, 0, 0, 2, 0, 0, 0x08, 0x00];
    out.extend(raw_udp(src, dst, sport, dport, payload));
    out
}

#[derive(Debug, PartialEq)]
struct Seen {
    ts: f64,
    link: LinkType,
    wire_len: u32,
    data: Vec<u8>,
}

fn read_all(src: &mut OfflineSource) -> Vec<Seen> {
    let mut out = Vec::new();
    while let Some(p) = src.next_packet().expect("the capture reads") {
        out.push(Seen {
            ts: p.ts,
            link: p.link,
            wire_len: p.wire_len,
            data: p.data.to_vec(),
        });
    }
    out
}

/// The file of most tests: a little-endian section with an Ethernet
/// interface (microseconds) and a Linux cooked one (nanoseconds, snaplen
/// 8192: libpcap refuses the file), blocks that carry no packet between
/// them; then a big-endian section with a raw-IP interface counting
/// milliseconds from an offset, holding an EPB, an SPB and an obsolete PB.
fn mixed() -> (Ng, Vec<Vec<u8>>) {
    let frames = vec![
        ether_udp(A, B, 1000, 53, b"query"),
        sll_udp(B, A, 53, 1000, b"answer"),
        raw_udp(A, B, 2000, 123, b"ntp"),
        raw_udp(B, A, 123, 2000, b"spb"),
        raw_udp(A, B, 2000, 123, b"old pb"),
    ];
    let mut ng = Ng::new();
    ng.shb(false)
        .idb(1, 65535, &[])
        .block(4, &[0; 8]) // name resolution: skipped
        .idb(113, 8192, &[Ng::tsresol(9)])
        .epb(0, 1_700_000_000_123_456, &frames[0], 100)
        .block(5, &[0; 12]) // interface statistics: skipped
        .epb(1, 1_700_000_000_223_456_789, &frames[1], 61)
        .block(0x0000_0BAD, &[0, 0, 0, 0]); // custom: skipped
    ng.shb(true);
    let off = ng.tsoffset(1_000_000_000);
    ng.idb(101, 0, &[Ng::tsresol(3), off])
        .epb(
            0,
            700_000_000_250,
            &frames[2],
            u32::try_from(frames[2].len()).expect("small"),
        )
        .spb(&frames[3], u32::try_from(frames[3].len()).expect("small"))
        .pb(
            0,
            700_000_000_500,
            &frames[4],
            u32::try_from(frames[4].len()).expect("small"),
        );
    (ng, frames)
}

#[test]
fn sections_interfaces_and_byte_orders_are_read() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (ng, frames) = mixed();
    let path = ng.write(dir.path(), "mixed.pcapng");
    let mut src = OfflineSource::open(&path, None).expect("opens");
    let seen = read_all(&mut src);
    let ms = |whole: f64, frac: u64| whole + frac as f64 / 1e6;
    let want = vec![
        Seen {
            ts: 1_700_000_000.0 + 123_456.0 / 1e6,
            link: LinkType::ETHERNET,
            wire_len: 100,
            data: frames[0].clone(),
        },
        Seen {
            // Nanoseconds truncated to microseconds, as Zeek and libpcap.
            ts: 1_700_000_000.0 + 223_456.0 / 1e6,
            link: LinkType::LINUX_SLL,
            wire_len: 61,
            data: frames[1].clone(),
        },
        Seen {
            ts: ms(1_000_000_000.0 + 700_000_000.0, 250_000),
            link: LinkType::RAW,
            wire_len: u32::try_from(frames[2].len()).expect("small"),
            data: frames[2].clone(),
        },
        Seen {
            // An SPB has no time: it takes the previous packet's.
            ts: ms(1_000_000_000.0 + 700_000_000.0, 250_000),
            link: LinkType::RAW,
            wire_len: u32::try_from(frames[3].len()).expect("small"),
            data: frames[3].clone(),
        },
        Seen {
            ts: ms(1_000_000_000.0 + 700_000_000.0, 500_000),
            link: LinkType::RAW,
            wire_len: u32::try_from(frames[4].len()).expect("small"),
            data: frames[4].clone(),
        },
    ];
    assert_eq!(seen, want);
    let st = src.stats();
    assert_eq!((st.packets, st.skipped, st.filtered), (5, 0, 0));
}

#[test]
fn libpcap_refuses_the_mixed_file_that_osprey_reads() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (ng, _) = mixed();
    let path = ng.write(dir.path(), "mixed.pcapng");
    // libpcap either refuses to open it or stops at the second interface.
    let libpcap_reads_all = OfflineSource::open_with(&path, None, FileReader::Libpcap)
        .ok()
        .map(|mut s| {
            let mut n = 0;
            while let Ok(Some(_)) = s.next_packet() {
                n += 1;
            }
            n
        })
        == Some(5);
    assert!(
        !libpcap_reads_all,
        "libpcap read the mixed file: the test proves nothing"
    );
    let mut src = OfflineSource::open(&path, None).expect("osprey opens it");
    assert_eq!(read_all(&mut src).len(), 5);
}

/// Where libpcap reads a pcapng (one interface per link type and snaplen),
/// both readers give the same packets and bit-identical times.
#[test]
fn timestamps_match_libpcap_bit_for_bit() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let starts = [
        (6u8, 1_767_663_089_500_330u64),
        (9, 1_767_663_089_500_330_493),
        (3, 1_767_663_089_500),
        // 2^-20 s.
        (0x80 | 20, (1_767_663_089u64 << 20) + 123_457),
    ];
    for (resol, units) in starts {
        let mut ng = Ng::new();
        ng.shb(false).idb(1, 262_144, &[Ng::tsresol(resol)]);
        for i in 0..50u64 {
            let frame = ether_udp(A, B, 1000, 53, &i.to_be_bytes());
            ng.epb(0, units + i * 7_777_777, &frame, 90);
        }
        let path = ng.write(dir.path(), &format!("uniform-{resol}.pcapng"));
        let mut ours = OfflineSource::open_with(&path, None, FileReader::PcapNg).expect("opens");
        let mut theirs =
            OfflineSource::open_with(&path, None, FileReader::Libpcap).expect("libpcap opens");
        let (a, b) = (read_all(&mut ours), read_all(&mut theirs));
        assert_eq!(a.len(), 50);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(
                x.ts.to_bits(),
                y.ts.to_bits(),
                "tsresol {resol:#x}: {} vs {}",
                x.ts,
                y.ts
            );
            assert_eq!((x.link, x.wire_len, &x.data), (y.link, y.wire_len, &y.data));
        }
        assert_eq!(a, b);
    }
}

#[test]
fn clock_units_and_offsets() {
    let micro = Clock::default();
    assert_eq!(
        micro.time(1_500_000).to_bits(),
        (1.0f64 + 500_000.0 / 1e6).to_bits()
    );
    let nano = Clock {
        units_per_sec: 1_000_000_000,
        offset_secs: 0,
    };
    assert_eq!(nano.time(2_000_000_999), 2.0);
    let back = Clock {
        units_per_sec: 1_000,
        offset_secs: -10,
    };
    assert_eq!(back.time(12_500), 2.5);
}

#[test]
fn unknown_interface_is_skipped_and_counted() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let frame = ether_udp(A, B, 1000, 53, b"x");
    let mut ng = Ng::new();
    ng.shb(false)
        .idb(1, 65535, &[])
        .epb(0, 1_000_000, &frame, 60)
        .epb(7, 2_000_000, &frame, 60) // no interface 7
        .epb(1, 2_500_000, &frame, 60) // interface 1 is described only below
        .idb(1, 65535, &[])
        .epb(1, 3_000_000, &frame, 60)
        .epb(0, 4_000_000, &frame, 0); // zero wire length
    ng.shb(false).epb(0, 5_000_000, &frame, 60); // a new section forgets interfaces
    let path = ng.write(dir.path(), "unknown-if.pcapng");
    let mut src = OfflineSource::open(&path, None).expect("opens");
    let seen = read_all(&mut src);
    assert_eq!(
        seen.iter().map(|s| s.ts).collect::<Vec<_>>(),
        vec![1.0, 3.0]
    );
    assert_eq!(src.stats().skipped, 4);
}

/// Opens `bytes` as a file and returns the error, which must name it.
fn open_error(bytes: &[u8]) -> (String, CaptureError) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("bad.pcapng");
    std::fs::write(&path, bytes).expect("write");
    let Err(e) = OfflineSource::open(&path, None) else {
        panic!("a damaged file opened");
    };
    let text = e.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("cannot open capture"), "{text}");
    (text, e)
}

fn problem(e: &CaptureError) -> (u64, PcapNgError) {
    match e {
        CaptureError::PcapNg {
            offset, problem, ..
        } => (*offset, problem.clone()),
        other => panic!("not a pcapng error: {other}"),
    }
}

#[test]
fn truncated_block_fails_at_open() {
    let (ng, _) = mixed();
    let cut = &ng.out[..ng.out.len() - 10];
    let (text, e) = open_error(cut);
    assert!(text.contains("truncated block"), "{text}");
    let (offset, p) = problem(&e);
    assert!(matches!(p, PcapNgError::Truncated { .. }), "{p:?}");
    assert!(offset > 0 && offset < cut.len() as u64);
    // Bytes after the last block, too few for a block header.
    let mut b = ng.out.clone();
    b.extend_from_slice(&[6, 0, 0, 0, 0, 0]);
    let (text, e) = open_error(&b);
    assert!(text.contains("truncated block header"), "{text}");
    assert_eq!(problem(&e).0, ng.out.len() as u64);
}

#[test]
fn damaged_blocks_fail_at_open() {
    let frame = ether_udp(A, B, 1000, 53, b"x");
    let mut ng = Ng::new();
    ng.shb(false).idb(1, 65535, &[]).epb(0, 1, &frame, 60);
    let good = ng.out.clone();
    let epb_at = good.len() - (12 + 20 + 44 + 12);
    // The trailing length disagrees.
    let mut b = good.clone();
    let last = b.len() - 4;
    b[last] ^= 0x40;
    assert!(matches!(
        problem(&open_error(&b).1).1,
        PcapNgError::LengthMismatch { .. }
    ));
    // A length that is not a multiple of 4.
    let mut b = good.clone();
    b[epb_at + 4] += 1;
    assert!(
        matches!(problem(&open_error(&b).1), (o, PcapNgError::BadLength { .. }) if o == epb_at as u64)
    );
    // A captured length running past the block.
    let mut b = good.clone();
    b[epb_at + 20] = 0xf0;
    let (text, e) = open_error(&b);
    assert!(
        matches!(problem(&e).1, PcapNgError::Malformed { .. }),
        "{text}"
    );
    // An absurd block length.
    let mut b = good.clone();
    b[epb_at + 4..epb_at + 8].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    assert!(matches!(
        problem(&open_error(&b).1).1,
        PcapNgError::TooLarge { .. }
    ));
    // A bad byte-order magic.
    let mut b = good.clone();
    b[8] = 0;
    assert!(matches!(
        problem(&open_error(&b).1).1,
        PcapNgError::ByteOrder(_)
    ));
    // An if_tsresol no 64-bit count holds.
    let mut ng = Ng::new();
    ng.shb(false).idb(1, 65535, &[Ng::tsresol(20)]);
    assert!(matches!(
        problem(&open_error(&ng.out).1).1,
        PcapNgError::TsResol { .. }
    ));
}

#[test]
fn unknown_format_fails_at_open() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("junk.cap");
    std::fs::write(&path, b"this is not a capture file at all").expect("write");
    let Err(e) = OfflineSource::open(&path, None) else {
        panic!("junk opened");
    };
    let text = e.to_string();
    assert!(text.contains(&path.display().to_string()) && text.contains("cannot open capture"));
    // The pure-Rust reader says what it expected.
    let Err(e) = PcapNgReader::open(
        Path::new("junk.cap"),
        Cursor::new(b"abcdefghijklmnop"),
        None,
    ) else {
        panic!("junk opened");
    };
    assert!(matches!(problem(&e).1, PcapNgError::NotPcapNg(_)), "{e}");
}

#[test]
fn filter_applies_per_link_type() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (ng, _) = mixed();
    let path = ng.write(dir.path(), "mixed.pcapng");
    // Port 53 is in the Ethernet and the cooked frames, not in the raw ones.
    let mut src = OfflineSource::open(&path, Some("udp port 53")).expect("opens");
    let seen = read_all(&mut src);
    let links: Vec<LinkType> = seen.iter().map(|s| s.link).collect();
    assert_eq!(links, vec![LinkType::ETHERNET, LinkType::LINUX_SLL]);
    assert_eq!(src.stats().filtered, 3);
}

#[test]
fn filter_that_does_not_compile_for_a_link_type_names_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (ng, _) = mixed();
    let path = ng.write(dir.path(), "mixed.pcapng");
    // Ethernet addresses mean nothing on raw IP (link type 101).
    let Err(e) = OfflineSource::open(&path, Some("ether host 02:00:00:00:00:01")) else {
        panic!("the filter compiled for raw IP");
    };
    let text = e.to_string();
    assert!(
        matches!(e, CaptureError::FilterLinkType { .. }) && text.contains("link type"),
        "{text}"
    );
    assert!(text.contains(&path.display().to_string()), "{text}");
}

/// One conversation seen on two interfaces of different link types: the
/// query on Ethernet, the answer on a cooked capture. Each packet is
/// decoded with its own link type, so both land in one connection.
#[test]
fn one_connection_across_link_types() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (ng, _) = mixed();
    let path = ng.write(dir.path(), "mixed.pcapng");
    let records = osprey::drivers::replay::collect_records(
        &[path],
        None,
        EngineConfig {
            seed: Some(1),
            ..EngineConfig::default()
        },
    )
    .expect("the replay runs");
    let dns = records
        .iter()
        .find(|r| r.proto == Proto::Udp && r.resp_p == 53)
        .expect("a DNS connection");
    assert_eq!((dns.orig_pkts, dns.resp_pkts), (1, 1));
    assert_eq!(dns.orig_h.to_string(), "10.0.0.1");
    let ntp = records
        .iter()
        .find(|r| r.proto == Proto::Udp && r.resp_p == 123)
        .expect("an NTP connection");
    assert_eq!((ntp.orig_pkts, ntp.resp_pkts), (2, 1));
}
