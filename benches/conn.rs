//! Connection-engine throughput: every packet of the shared lab captures,
//! held in memory, fed through a fresh `Engine` per iteration (then
//! `finish()`, and the records drained and dropped).
//!
//! Run with `cargo bench --bench conn`. The lab captures are read from
//! `$OSPREY_SHARED/lab-pcaps` (default `<crate>/../shared/lab-pcaps`); when
//! they are missing the bench prints "skipped" and exits successfully.
//!
//! Variants (all `Throughput::Elements(packets)`; engine construction is
//! outside the timed region, dropping it is not):
//! - `conn/default`: checksums verified, every analyzer (as `osprey replay`).
//! - `conn/ignore_checksums`: Zeek's `-C`.
//! - `conn/no_analyzers`: `AnalyzerSet::none()`, i.e. without protocol
//!   detection for the `service` field; the difference to `default` is what
//!   service identification costs.
//!
//! - `node_view/once`: the node view (conn/node_view.rs) judging every lab
//!   packet as if captured on one interface of a node (`any`): one content
//!   hash and one table probe each, every packet new.
//! - `node_view/copies`: every packet seen twice, on two interfaces, as a
//!   pod's packet crosses its veth and the bridge; half are copies. The
//!   throughput counts every observed packet; `conn/ignore_checksums` in the
//!   same run is the per-packet cost it adds to (the summary line prints the
//!   ratio). Goal: <= 100 ns per packet.
//!
//! No log is written here; `benches/replay.rs` measures the whole path.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};

use osprey::capture::{LinkType, OfflineSource, Packet, PacketSource, Time};
use osprey::conn::node_view::{NodeView, NodeViewConfig};
use osprey::conn::service::AnalyzerSet;
use osprey::conn::{ConnRecord, Engine, EngineConfig};
use osprey::decode::prepare::prepare;

/// One captured packet, copied out of libpcap's buffer.
struct OwnedPacket {
    ts: Time,
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
///
/// The lab scenarios were captured one after another on one clock, so the
/// packets are merged by timestamp (a stable sort, like `mergecap`) into a
/// single monotonic trace of the whole lab session; `benches/replay.rs`
/// builds its large capture from copies of the same merge.
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
                    ts: p.ts,
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
    out.sort_by(|a, b| a.ts.total_cmp(&b.ts));
    println!(
        "{bench}: {} packets ({} bytes) from {} files in {}",
        out.len(),
        out.iter().map(|p| p.data.len()).sum::<usize>(),
        files.len(),
        lab_dir().display()
    );
    Some(out)
}

/// Feeds every packet through `engine`, ends the trace and drops the
/// records; returns how many records there were.
fn run_engine(mut engine: Engine, pkts: &[OwnedPacket]) -> usize {
    let mut records: Vec<ConnRecord> = Vec::new();
    let mut n = 0;
    for p in pkts {
        engine.process_packet(&Packet {
            ts: p.ts,
            link: p.link,
            wire_len: p.wire_len,
            data: &p.data,
        });
        engine.take_records(&mut records);
        if records.len() >= 512 {
            n += records.len();
            records.clear();
        }
    }
    engine.finish();
    engine.take_records(&mut records);
    n + records.len()
}

fn bench_conn(c: &mut Criterion) {
    let Some(pkts) = load_packets("conn") else {
        return;
    };
    let variants: [(&str, EngineConfig); 3] = [
        (
            "default",
            EngineConfig {
                seed: Some(1),
                ..EngineConfig::default()
            },
        ),
        (
            "ignore_checksums",
            EngineConfig {
                seed: Some(1),
                ignore_checksums: true,
                ..EngineConfig::default()
            },
        ),
        (
            "no_analyzers",
            EngineConfig {
                seed: Some(1),
                analyzers: AnalyzerSet::none(),
                ..EngineConfig::default()
            },
        ),
    ];
    for (name, cfg) in &variants {
        let records = run_engine(Engine::new(cfg.clone()), &pkts);
        println!("conn/{name}: {records} connection records per pass");
    }

    let mut g = c.benchmark_group("conn");
    // One pass takes a good fraction of a second: few, flat samples.
    g.sample_size(30)
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Elements(pkts.len() as u64));
    for (name, cfg) in &variants {
        g.bench_function(*name, |b| {
            b.iter_batched(
                || Engine::new(cfg.clone()),
                |engine| black_box(run_engine(engine, black_box(&pkts))),
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

/// Every lab packet's IP bytes (what the node view reads), with its time.
fn ip_packets(pkts: &[OwnedPacket]) -> Vec<(f64, &[u8])> {
    pkts.iter()
        .filter_map(|p| {
            let prep = prepare(p.link, &p.data, p.wire_len as usize, false);
            prep.l3(&p.data).map(|ip| (p.ts, ip))
        })
        .collect()
}

/// Judges every packet on each of `ifaces` interfaces in turn (a
/// microsecond apart); returns how many counted.
fn run_node_view(ips: &[(f64, &[u8])], ifaces: u32) -> usize {
    match NodeView::new(NodeViewConfig::default()) {
        Some(v) => judge(v, ips, ifaces),
        None => 0,
    }
}

fn judge(mut v: NodeView, ips: &[(f64, &[u8])], ifaces: u32) -> usize {
    let mut counted = 0;
    for (ts, ip) in ips {
        for i in 0..ifaces {
            let t = ts + f64::from(i) * 1e-6;
            if v.observe(t, 2 + i, ip) == osprey::conn::node_view::Verdict::Count {
                counted += 1;
            }
        }
    }
    counted
}

fn bench_node_view(c: &mut Criterion) {
    let Some(pkts) = load_packets("node_view") else {
        return;
    };
    let ips = ip_packets(&pkts);
    let once = run_node_view(&ips, 1);
    let twice = run_node_view(&ips, 2);
    println!(
        "node_view: {} IP packets; counted once: {once}; seen twice: {twice} of {} counted",
        ips.len(),
        2 * ips.len()
    );
    let mut g = c.benchmark_group("node_view");
    g.sample_size(30).sampling_mode(SamplingMode::Flat);
    for (name, ifaces) in [("once", 1u32), ("copies", 2)] {
        g.throughput(Throughput::Elements(ips.len() as u64 * u64::from(ifaces)));
        // The table is allocated (and zeroed) outside the timed region.
        g.bench_function(name, |b| {
            b.iter_batched(
                || NodeView::new(NodeViewConfig::default()),
                |v| v.map(|v| black_box(judge(v, black_box(&ips), ifaces))),
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench_conn, bench_node_view);
criterion_main!(benches);
