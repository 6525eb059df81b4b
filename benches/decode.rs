//! Decode throughput: link layer -> IP header -> TCP/UDP checksum, over every
//! packet of the shared lab captures held in memory.
//!
//! Run with `cargo bench --bench decode`. The lab captures are read from
//! `$OSPREY_SHARED/lab-pcaps` (default `<crate>/../shared/lab-pcaps`); when
//! they are missing the bench prints "skipped" and exits successfully.
//!
//! Groups (all `Throughput::Elements(packets)`, one iteration = every packet):
//! - `decode/link`: `decode_link_into` only.
//! - `decode/link_ip`: plus `parse_ip` and the IPv4 header checksum.
//! - `decode/link_ip_transport_checksum`: plus `transport_ok` over every
//!   complete, unfragmented TCP/UDP segment (what checksum verification costs).

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use osprey::capture::{LinkType, OfflineSource, PacketSource};
use osprey::decode::checksum;
use osprey::decode::ip::{parse_ip, IpOutcome};
use osprey::decode::link::{decode_link_into, Frames, L2Info};

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// One captured packet, copied out of libpcap's buffer.
struct OwnedPacket {
    link: LinkType,
    wire_len: u32,
    data: Vec<u8>,
}

/// `$OSPREY_SHARED/lab-pcaps`, or `<crate>/../shared/lab-pcaps`.
fn lab_dir() -> PathBuf {
    let shared = std::env::var_os("OSPREY_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    shared.join("lab-pcaps")
}

/// Every `*.pcap` of the lab directory, sorted by name; `None` when absent.
fn lab_pcaps() -> Option<Vec<PathBuf>> {
    let dir = lab_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    files.sort();
    if files.is_empty() {
        None
    } else {
        Some(files)
    }
}

/// Reads every lab packet into memory, or returns `None` (with a message)
/// when the captures are not there.
fn load_packets(bench: &str) -> Option<Vec<OwnedPacket>> {
    let Some(files) = lab_pcaps() else {
        println!(
            "{bench}: skipped: lab captures not found in {} (set OSPREY_SHARED to the `shared` folder)",
            lab_dir().display()
        );
        return None;
    };
    let mut out = Vec::new();
    for f in &files {
        let mut src = match OfflineSource::open(f, None) {
            Ok(s) => s,
            Err(e) => {
                println!("{bench}: skipping {}: {e}", f.display());
                continue;
            }
        };
        loop {
            match src.next_packet() {
                Ok(Some(p)) => out.push(OwnedPacket {
                    link: p.link,
                    wire_len: p.wire_len,
                    data: p.data.to_vec(),
                }),
                Ok(None) => break,
                Err(e) => {
                    println!("{bench}: {e} (keeping the packets read before it)");
                    break;
                }
            }
        }
    }
    if out.is_empty() {
        println!("{bench}: skipped: no packets in {}", lab_dir().display());
        return None;
    }
    println!(
        "{bench}: {} packets ({} bytes) from {} files in {}",
        out.len(),
        out.iter().map(|p| p.data.len()).sum::<usize>(),
        files.len(),
        lab_dir().display()
    );
    Some(out)
}

/// What one pass found, so that nothing is optimised away and so that the
/// set-up message can show the mix.
#[derive(Default, Debug, Clone, Copy)]
struct Tally {
    frames: u64,
    ip: u64,
    segments_checked: u64,
    checksum_ok: u64,
}

/// Link decoding only.
fn pass_link(pkts: &[OwnedPacket]) -> Tally {
    let mut t = Tally::default();
    let mut l2 = L2Info::default();
    for p in pkts {
        let mut frames = Frames::new();
        if decode_link_into(p.link, &p.data, &mut l2, &mut frames).is_ok() {
            t.frames += frames.len() as u64;
        }
    }
    t
}

/// Link decoding, IP parsing (checksums on) and, if `transport`, the
/// TCP/UDP checksum of every complete unfragmented segment.
fn pass_ip(pkts: &[OwnedPacket], transport: bool) -> Tally {
    let mut t = Tally::default();
    let mut l2 = L2Info::default();
    for p in pkts {
        let mut frames = Frames::new();
        if decode_link_into(p.link, &p.data, &mut l2, &mut frames).is_err() {
            continue;
        }
        for f in &frames {
            t.frames += 1;
            let wire_left = (p.wire_len as usize).saturating_sub(f.offset);
            let ip = match parse_ip(f.data, wire_left, false) {
                IpOutcome::Packet(ip) => ip,
                _ => continue,
            };
            if ip.is_v4() && !checksum::ipv4_header_ok(ip.header()) {
                continue;
            }
            t.ip += 1;
            if !transport || ip.frag.is_some() || !matches!(ip.proto, PROTO_TCP | PROTO_UDP) {
                continue;
            }
            // Only segments captured in full can be verified.
            if ip.payload_len != 0 && ip.payload.len() < ip.payload_len as usize {
                continue;
            }
            t.segments_checked += 1;
            if checksum::transport_ok(&ip.src, &ip.dst, ip.proto, ip.payload) {
                t.checksum_ok += 1;
            }
        }
    }
    t
}

fn bench_decode(c: &mut Criterion) {
    let Some(pkts) = load_packets("decode") else {
        return;
    };
    let t = pass_ip(&pkts, true);
    println!(
        "decode: {} IP frames, {} valid IP packets, {} TCP/UDP segments checked ({} checksums ok)",
        t.frames, t.ip, t.segments_checked, t.checksum_ok
    );

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(pkts.len() as u64));
    g.bench_function("link", |b| {
        b.iter(|| black_box(pass_link(black_box(&pkts))))
    });
    g.bench_function("link_ip", |b| {
        b.iter(|| black_box(pass_ip(black_box(&pkts), false)))
    });
    g.bench_function("link_ip_transport_checksum", |b| {
        b.iter(|| black_box(pass_ip(black_box(&pkts), true)))
    });
    g.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
