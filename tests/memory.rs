//! Memory under hostile traffic (issue 16, item 4): fragment and TCP
//! reassembly stay within their byte budgets whatever the traffic, and
//! every byte or datagram given up is a named weird and a counter.
//!
//! The hostile capture is built here (addresses in 198.18.0.0/15): lone
//! first fragments at offset 64,992 (before the budgets, each cost a 64 KiB
//! buffer, 10,000 per table), connections whose client sends data above a
//! hole with no ACK from the server (Zeek's no-ACK rule applies), and
//! connections where one spoofed server ACK, one byte into the hole, turns
//! that rule off. `osprey replay -C --no-models` reports its own peak RSS;
//! the hostile run must stay within a benign run's + 256 MiB.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use etherparse::PacketBuilder;
use osprey::capture::{LinkType, Packet};
use osprey::conn::{Engine, EngineConfig};
use osprey::metrics::Metrics;

const SERVER: [u8; 4] = [198, 19, 0, 1];
const SERVER_PORT: u16 = 8080;
/// Client and server initial sequence numbers.
const CISN: u32 = 1_000_000;
const SISN: u32 = 5_000_000;
/// Bytes of each out-of-order segment, and of the hole before them.
const SEG: usize = 1000;

/// The headroom the issue allows over a benign capture.
const MAX_EXTRA_RSS: u64 = 256 * 1024 * 1024;

fn client(i: u32) -> [u8; 4] {
    [198, 18, (i >> 8) as u8, i as u8]
}

/// A TCP frame; `flags` in tcpdump letters (S, A, F, P).
#[allow(clippy::too_many_arguments)]
fn tcp(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    flags: &str,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, seq, 65535);
    if flags.contains('S') {
        b = b.syn();
    }
    if flags.contains('A') {
        b = b.ack(ack);
    }
    if flags.contains('F') {
        b = b.fin();
    }
    if flags.contains('P') {
        b = b.psh();
    }
    let mut f = Vec::with_capacity(64 + payload.len());
    b.write(&mut f, payload).expect("building a test frame");
    f
}

/// A lone first fragment of UDP datagram `id` from `src`, 40 bytes at
/// offset 64,992 with more to come (checksums are not checked: `-C`).
fn high_fragment(src: [u8; 4], id: u16) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let off = 64_992u16 / 8;
    f.extend_from_slice(&[0x45, 0, 0, 60]);
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&(0x2000 | off).to_be_bytes());
    f.extend_from_slice(&[64, 17, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&SERVER);
    f.resize(14 + 60, 0x5a);
    f
}

/// A classic pcap file written as frames come, one microsecond apart.
struct PcapOut {
    w: BufWriter<File>,
    n: u64,
}

impl PcapOut {
    fn create(path: &Path) -> PcapOut {
        let mut w = BufWriter::new(File::create(path).expect("creating a pcap"));
        let mut h = Vec::new();
        h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&[0; 8]);
        h.extend_from_slice(&65535u32.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes());
        w.write_all(&h).expect("writing a pcap");
        PcapOut { w, n: 0 }
    }

    fn push(&mut self, frame: &[u8]) {
        let (secs, usecs) = (1_700_000_000 + self.n / 1_000_000, self.n % 1_000_000);
        self.n += 1;
        let len = frame.len() as u32;
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&(secs as u32).to_le_bytes());
        h[4..8].copy_from_slice(&(usecs as u32).to_le_bytes());
        h[8..12].copy_from_slice(&len.to_le_bytes());
        h[12..16].copy_from_slice(&len.to_le_bytes());
        self.w.write_all(&h).expect("writing a pcap");
        self.w.write_all(frame).expect("writing a pcap");
    }

    fn finish(mut self) {
        self.w.flush().expect("writing a pcap");
    }
}

/// Handshake of client `i` (port 40000 + i % 20000).
fn handshake(out: &mut impl FnMut(Vec<u8>), i: u32) {
    let (c, p) = (client(i), 40_000 + (i % 20_000) as u16);
    out(tcp(c, p, SERVER, SERVER_PORT, "S", CISN, 0, b""));
    out(tcp(SERVER, SERVER_PORT, c, p, "SA", SISN, CISN + 1, b""));
    out(tcp(c, p, SERVER, SERVER_PORT, "A", CISN + 1, SISN + 1, b""));
}

/// Client `i` sends `segs` segments above a `SEG`-byte hole; with
/// `spoof`, a forged server ACK one byte into the hole follows the first.
fn above_hole(out: &mut impl FnMut(Vec<u8>), i: u32, segs: u32, spoof: bool) {
    let (c, p) = (client(i), 40_000 + (i % 20_000) as u16);
    let payload = vec![0u8; SEG];
    for k in 0..segs {
        let seq = CISN + 1 + (SEG as u32) * (k + 1);
        out(tcp(
            c,
            p,
            SERVER,
            SERVER_PORT,
            "PA",
            seq,
            SISN + 1,
            &payload,
        ));
        if spoof && k == 0 {
            out(tcp(SERVER, SERVER_PORT, c, p, "A", SISN + 1, CISN + 2, b""));
        }
    }
}

/// Benign: short request-response connections.
fn write_benign(path: &Path, conns: u32) {
    let mut pcap = PcapOut::create(path);
    let mut out = |f: Vec<u8>| pcap.push(&f);
    for i in 0..conns {
        let (c, p) = (client(i), 40_000 + i as u16);
        handshake(&mut out, i);
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        out(tcp(
            c,
            p,
            SERVER,
            SERVER_PORT,
            "PA",
            CISN + 1,
            SISN + 1,
            req,
        ));
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let cnext = CISN + 1 + req.len() as u32;
        out(tcp(SERVER, SERVER_PORT, c, p, "PA", SISN + 1, cnext, resp));
        let snext = SISN + 1 + resp.len() as u32;
        out(tcp(c, p, SERVER, SERVER_PORT, "FA", cnext, snext, b""));
        out(tcp(SERVER, SERVER_PORT, c, p, "FA", snext, cnext + 1, b""));
        out(tcp(
            c,
            p,
            SERVER,
            SERVER_PORT,
            "A",
            cnext + 1,
            snext + 1,
            b"",
        ));
    }

    pcap.finish();
}

/// How many of each kind the hostile capture holds.
struct Hostile {
    fragments: u32,
    no_ack_conns: u32,
    spoofed_conns: u32,
    /// Spoofed-ACK connections that send more than one connection's budget.
    big_conns: u32,
}

const HOSTILE: Hostile = Hostile {
    // Past the 10,000-datagram table, so that the oldest are dropped.
    fragments: 12_000,
    // 20 KB above the hole each: past Zeek's 16 KiB no-ACK limit.
    no_ack_conns: 1_000,
    // 40 KB each, 80 MB together: past the engine's 64 MiB default.
    spoofed_conns: 2_000,
    // 250 KB each: past the 192 KiB per-connection default.
    big_conns: 20,
};

fn write_hostile(path: &Path, h: &Hostile) {
    let mut pcap = PcapOut::create(path);
    let mut out = |f: Vec<u8>| pcap.push(&f);
    for id in 0..h.fragments {
        out(high_fragment(
            [198, 19, 128 + (id >> 16) as u8, (id >> 8) as u8],
            id as u16,
        ));
    }
    let mut i = 0;
    for _ in 0..h.no_ack_conns {
        handshake(&mut out, i);
        above_hole(&mut out, i, 20, false);
        i += 1;
    }
    // The big ones first, while the engine-wide budget still has room.
    for _ in 0..h.big_conns {
        handshake(&mut out, i);
        above_hole(&mut out, i, 250, true);
        i += 1;
    }
    for _ in 0..h.spoofed_conns {
        handshake(&mut out, i);
        above_hole(&mut out, i, 40, true);
        i += 1;
    }

    pcap.finish();
}

struct Replay {
    peak_rss: u64,
    stderr: String,
    conn_log: String,
}

fn replay(pcap: &Path, log_dir: &Path) -> Replay {
    let out = Command::new(env!("CARGO_BIN_EXE_osprey"))
        .args(["replay", "-C", "--no-models", "--log-dir"])
        .arg(log_dir)
        .arg(pcap)
        .output()
        .expect("running osprey replay");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "osprey replay failed:\n{stderr}{stdout}"
    );
    let text = format!("{stdout}{stderr}");
    let mib: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("peak memory (RSS): "))
        .and_then(|v| v.trim_end_matches(" MiB").parse().ok())
        .unwrap_or_else(|| panic!("no peak memory line in the summary:\n{text}"));
    let conn_log =
        std::fs::read_to_string(log_dir.join("conn.log")).expect("replay wrote conn.log");
    Replay {
        peak_rss: mib * 1024 * 1024,
        stderr: text,
        conn_log,
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("osprey-memory-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("creating a temporary directory");
    d
}

/// Before the budgets, the fragments alone made this replay peak at
/// about 640 MiB over the benign one.
#[test]
fn hostile_reassembly_stays_within_baseline_plus_256_mib() {
    let dir = tmp("rss");
    let benign = dir.join("benign.pcap");
    let hostile = dir.join("hostile.pcap");
    write_benign(&benign, 200);
    write_hostile(&hostile, &HOSTILE);

    let base = replay(&benign, &dir.join("benign"));
    let host = replay(&hostile, &dir.join("hostile"));
    eprintln!(
        "peak RSS: benign {} MiB, hostile {} MiB",
        base.peak_rss >> 20,
        host.peak_rss >> 20
    );
    assert!(
        host.peak_rss <= base.peak_rss + MAX_EXTRA_RSS,
        "hostile replay peaked at {} MiB, benign at {} MiB:\n{}",
        host.peak_rss >> 20,
        base.peak_rss >> 20,
        host.stderr
    );

    // Every loss is named.
    for name in [
        "fragment_table_full",
        "above_hole_data_without_any_acks",
        "tcp_reassembly_memory_full",
        "tcp_reassembly_flow_over_budget",
    ] {
        assert!(
            host.stderr.contains(name),
            "weird {name} missing from the summary:\n{}",
            host.stderr
        );
    }
    assert!(
        host.stderr
            .contains("fragmented datagrams dropped incomplete: table_full 2000"),
        "{}",
        host.stderr
    );
    assert!(
        host.stderr.contains("TCP reassembly bytes given up:"),
        "{}",
        host.stderr
    );
    // And the connections are all still logged.
    let conns = HOSTILE.no_ack_conns + HOSTILE.spoofed_conns + HOSTILE.big_conns;
    let records = host
        .conn_log
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    assert_eq!(records, conns as usize);
    let _ = std::fs::remove_dir_all(&dir);
}

fn feed(engine: &mut Engine, frames: Vec<Vec<u8>>) {
    for (n, f) in frames.iter().enumerate() {
        engine.process_packet(&Packet {
            ts: 1000.0 + n as f64 * 1e-6,
            link: LinkType::ETHERNET,
            wire_len: f.len() as u32,
            data: f,
        });
    }
}

/// One spoofed ACK one byte into the hole turns Zeek's no-ACK rule off
/// (as in Zeek); the connection's budget still bounds what it holds.
#[test]
fn a_spoofed_ack_into_the_hole_does_not_lift_the_bound() {
    let cfg = EngineConfig {
        ignore_checksums: true,
        tcp_reassembly_flow_bytes: 64 * 1024,
        ..EngineConfig::default()
    };
    let mut frames = Vec::new();
    let mut out = |f: Vec<u8>| frames.push(f);
    handshake(&mut out, 1);
    above_hole(&mut out, 1, 300, true);
    let mut engine = Engine::new(cfg);
    feed(&mut engine, frames);
    let st = engine.stats().clone();
    assert!(st.reassembly_bytes <= 64 * 1024, "{}", st.reassembly_bytes);
    let names: Vec<_> = st.weirds.iter().map(|(w, _)| w.name()).collect();
    assert!(
        names.contains(&"tcp_reassembly_flow_over_budget"),
        "{names:?}"
    );
    assert!(
        !names.contains(&"above_hole_data_without_any_acks"),
        "{names:?}"
    );

    // Without the spoofed ACK, Zeek's rule gives up first, as in Zeek.
    let mut frames = Vec::new();
    let mut out = |f: Vec<u8>| frames.push(f);
    handshake(&mut out, 2);
    above_hole(&mut out, 2, 300, false);
    let mut engine = Engine::new(EngineConfig {
        ignore_checksums: true,
        ..EngineConfig::default()
    });
    feed(&mut engine, frames);
    let st2 = engine.stats().clone();
    let names: Vec<_> = st2.weirds.iter().map(|(w, _)| w.name()).collect();
    assert!(
        names.contains(&"above_hole_data_without_any_acks"),
        "{names:?}"
    );
    assert!(st2.reassembly_bytes < 32 * 1024, "{}", st2.reassembly_bytes);

    // Both reach Prometheus.
    let m = Metrics::new();
    let zero = Engine::new(EngineConfig::default()).stats().clone();
    m.add_engine_delta(&zero, &st);
    m.add_engine_delta(&zero, &st2);
    let text = m.render();
    for needle in [
        "osprey_conn_reassembly_evicted_bytes_total{reason=\"flow_budget\"}",
        "osprey_conn_reassembly_evicted_bytes_total{reason=\"above_hole_without_acks\"}",
        "osprey_decode_errors_total{kind=\"tcp_reassembly_flow_over_budget\"} 1",
        "osprey_decode_errors_total{kind=\"above_hole_data_without_any_acks\"} 1",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }

    // The connection's share is returned when it ends.
    engine.finish();
    assert_eq!(engine.stats().reassembly_bytes, 0);
}

/// The engine-wide TCP budget holds over many connections, each within
/// its own budget, with or without spoofed ACKs.
#[test]
fn the_engine_wide_tcp_budget_holds_over_many_connections() {
    let total = 1024 * 1024;
    let cfg = EngineConfig {
        ignore_checksums: true,
        tcp_reassembly_total_bytes: total,
        ..EngineConfig::default()
    };
    let mut frames = Vec::new();
    let mut out = |f: Vec<u8>| frames.push(f);
    for i in 0..200 {
        handshake(&mut out, i);
        above_hole(&mut out, i, 12, i % 2 == 0);
    }
    let mut engine = Engine::new(cfg);
    feed(&mut engine, frames);
    let st = engine.stats().clone();
    assert!(st.reassembly_bytes <= total, "{}", st.reassembly_bytes);
    assert!(st
        .weirds
        .iter()
        .any(|(w, _)| w.name() == "tcp_reassembly_memory_full"));
    engine.finish();
    assert_eq!(engine.stats().reassembly_bytes, 0);
}
