//! Bad input: damaged capture files through the `osprey` binary, arbitrary
//! and mutated packets through the engine and the decoders, and the bound
//! on tracked connections.
//!
//! The contract pinned here (see `sensor/drivers/replay/` and `sensor/main.rs`):
//! a capture that cannot be read is a clear error (non-zero exit, stderr
//! names the file and the reason, no `conn.log`; a file damaged part-way
//! leaves `conn.log.partial` without a `#close` footer), while packets that
//! are merely malformed are counted as decode anomalies (exit 0, listed in
//! the summary on stderr). Nothing may panic.
//!
//! Property tests keep their case counts small so that the whole file runs
//! in a few seconds in a debug build (`PROPTEST_CASES=N` raises them for a
//! longer fuzzing run); they persist no regression files.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use etherparse::PacketBuilder;
use osprey::capture::{LinkType, Packet};
use osprey::conn::{Engine, EngineConfig};
use osprey::decode::{ip, link, tunnel};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

// ---------------------------------------------------------------------------
// A tiny pcap writer (classic format: 24-byte global header, 16-byte
// record headers, little-endian, microsecond timestamps)

const PCAP_MAGIC: u32 = 0xa1b2_c3d4;
const LINKTYPE_ETHERNET: u32 = 1;

struct PcapWriter {
    buf: Vec<u8>,
}

impl PcapWriter {
    fn new() -> Self {
        Self::with_magic(PCAP_MAGIC, LINKTYPE_ETHERNET)
    }

    fn with_magic(magic: u32, link: u32) -> Self {
        let mut buf = Vec::with_capacity(1024);
        buf.extend_from_slice(&magic.to_le_bytes());
        buf.extend_from_slice(&2u16.to_le_bytes()); // version major
        buf.extend_from_slice(&4u16.to_le_bytes()); // version minor
        buf.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        buf.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        buf.extend_from_slice(&65535u32.to_le_bytes()); // snaplen
        buf.extend_from_slice(&link.to_le_bytes());
        PcapWriter { buf }
    }

    /// A record whose captured and wire lengths are the frame's length.
    fn packet(&mut self, ts_sec: u32, frame: &[u8]) -> &mut Self {
        let n = u32::try_from(frame.len()).expect("test frames are small");
        self.record(ts_sec, 0, n, n, frame)
    }

    /// A record with explicit header fields; `data` is written as given,
    /// whatever `incl_len` claims.
    fn record(
        &mut self,
        ts_sec: u32,
        ts_usec: u32,
        incl_len: u32,
        orig_len: u32,
        data: &[u8],
    ) -> &mut Self {
        self.buf.extend_from_slice(&ts_sec.to_le_bytes());
        self.buf.extend_from_slice(&ts_usec.to_le_bytes());
        self.buf.extend_from_slice(&incl_len.to_le_bytes());
        self.buf.extend_from_slice(&orig_len.to_le_bytes());
        self.buf.extend_from_slice(data);
        self
    }

    fn bytes(&self) -> &[u8] {
        &self.buf
    }

    fn write_to(&self, path: &Path) {
        std::fs::write(path, &self.buf)
            .unwrap_or_else(|e| panic!("cannot write test capture {}: {e}", path.display()));
    }
}

// ---------------------------------------------------------------------------
// Valid frames to start from

const A: [u8; 4] = [198, 18, 0, 1];
const B: [u8; 4] = [198, 18, 0, 2];
const A6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const B6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn tcp4(sport: u16, dport: u16, seq: u32, syn: bool, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(A, B, 64)
        .tcp(sport, dport, seq, 1024);
    let b = if syn { b.syn() } else { b.ack(77).psh() };
    let mut out = Vec::new();
    b.write(&mut out, payload)
        .expect("etherparse builds a TCP frame");
    out
}

fn udp4(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(A, B, 64)
        .udp(sport, dport);
    let mut out = Vec::new();
    b.write(&mut out, payload)
        .expect("etherparse builds a UDP frame");
    out
}

/// Ones'-complement checksum over 16-bit words.
fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A bare IPv4 datagram (no link layer) carrying `payload` as `proto`.
fn ipv4_raw(proto: u8, flags_frag: u16, payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).expect("test datagrams are small");
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0x12, 0x34]);
    h.extend_from_slice(&flags_frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&A);
    h.extend_from_slice(&B);
    let c = inet_checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The IP part of an Ethernet frame built above.
fn l3(frame: &[u8]) -> Vec<u8> {
    frame[14..].to_vec()
}

/// Valid frames of many kinds (link types, IPv6, VLAN, fragments, every
/// tunnel, application payloads for the service analyzers), the seeds that
/// the mutation tests start from.
fn corpus() -> &'static [(LinkType, Vec<u8>)] {
    static CORPUS: OnceLock<Vec<(LinkType, Vec<u8>)>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let e = LinkType::ETHERNET;
        let inner_udp = l3(&udp4(1111, 2222, b"inner datagram"));
        let inner_tcp = l3(&tcp4(3333, 80, 9, false, b"GET / HTTP/1.0\r\n\r\n"));
        let inner_v6 = {
            let b = PacketBuilder::ipv6(A6, B6, 64).udp(4444, 5555);
            let mut out = Vec::new();
            b.write(&mut out, b"v6 inside")
                .expect("etherparse builds an IPv6 datagram");
            out
        };
        let mut v = vec![
            (e, tcp4(40000, 80, 1000, true, b"")),
            (
                e,
                tcp4(
                    40000,
                    80,
                    1001,
                    false,
                    b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n",
                ),
            ),
            (
                e,
                tcp4(
                    80,
                    40000,
                    5001,
                    false,
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                ),
            ),
            (e, tcp4(40001, 22, 1, false, b"SSH-2.0-OpenSSH_9.0\r\n")),
            (e, tcp4(25, 40002, 1, false, b"220 mail.example ESMTP\r\n")),
            (e, tcp4(40003, 21, 1, false, b"USER anonymous\r\n")),
            (
                e,
                tcp4(
                    40004,
                    443,
                    1,
                    false,
                    &[
                        0x16, 0x03, 0x01, 0x00, 0x31, 0x01, 0x00, 0x00, 0x2d, 0x03, 0x03, 1, 2, 3,
                        4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
                        24, 25, 26, 27, 28, 29, 30, 31, 32, 0x00, 0x00, 0x04, 0x00, 0x2f, 0x00,
                        0x35, 0x01, 0x00,
                    ],
                ),
            ),
            (
                e,
                udp4(
                    40005,
                    53,
                    &[
                        0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 7, b'e', b'x', b'a', b'm',
                        b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, 0, 1, 0, 1,
                    ],
                ),
            ),
            (e, udp4(123, 123, &[0x23; 48])),
            (
                e,
                udp4(68, 67, &{
                    let mut d = vec![0u8; 240];
                    d[0] = 1;
                    d[1] = 1;
                    d[2] = 6;
                    d[236..240].copy_from_slice(&[0x63, 0x82, 0x53, 0x63]);
                    d
                }),
            ),
            (e, {
                let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
                    .ipv4(A, B, 64)
                    .icmpv4_echo_request(1, 1);
                let mut out = Vec::new();
                b.write(&mut out, b"ping").expect("ICMP echo builds");
                out
            }),
            (e, {
                let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
                    .ipv6(A6, B6, 64)
                    .tcp(40006, 8080, 5, 100)
                    .syn()
                    .ack(9);
                let mut out = Vec::new();
                b.write(&mut out, b"").expect("IPv6 TCP builds");
                out
            }),
            (e, {
                let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
                    .ipv6(A6, B6, 64)
                    .icmpv6_echo_request(1, 1);
                let mut out = Vec::new();
                b.write(&mut out, b"ping6").expect("ICMPv6 echo builds");
                out
            }),
            (e, {
                let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
                    .single_vlan(etherparse::VlanId::try_new(10).expect("VLAN id 10"))
                    .ipv4(A, B, 64)
                    .udp(40007, 7000);
                let mut out = Vec::new();
                b.write(&mut out, b"tagged").expect("VLAN frame builds");
                out
            }),
            // GRE carrying IPv4.
            (
                e,
                eth(
                    0x0800,
                    &ipv4_raw(47, 0, &{
                        let mut g = vec![0, 0, 0x08, 0x00];
                        g.extend_from_slice(&inner_udp);
                        g
                    }),
                ),
            ),
            // IP in IP.
            (e, eth(0x0800, &ipv4_raw(4, 0, &inner_udp))),
            // 6in4.
            (e, eth(0x0800, &ipv4_raw(41, 0, &inner_v6))),
            // First and last fragment of a datagram.
            (e, eth(0x0800, &ipv4_raw(17, 0x2000, &[7; 24]))),
            (e, eth(0x0800, &ipv4_raw(17, 3, &[8; 16]))),
            // VXLAN carrying Ethernet + TCP.
            (
                e,
                udp4(40008, 4789, &{
                    let mut d = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
                    d.extend_from_slice(&eth(0x0800, &inner_tcp));
                    d
                }),
            ),
            // Geneve carrying Ethernet + UDP.
            (
                e,
                udp4(40009, 6081, &{
                    let mut d = vec![0, 0, 0x65, 0x58, 0, 0, 1, 0];
                    d.extend_from_slice(&eth(0x0800, &inner_udp));
                    d
                }),
            ),
            // Teredo carrying IPv6.
            (e, udp4(40010, 3544, &inner_v6)),
            // GTPv1-U carrying IPv4.
            (
                e,
                udp4(40011, 2152, &{
                    let len = u16::try_from(inner_tcp.len()).expect("small inner packet");
                    let mut d = vec![0x30, 0xff];
                    d.extend_from_slice(&len.to_be_bytes());
                    d.extend_from_slice(&[0, 0, 0, 1]);
                    d.extend_from_slice(&inner_tcp);
                    d
                }),
            ),
            // AYIYA carrying IPv4.
            (
                e,
                udp4(40012, 5072, &{
                    // 16-byte identity, 20-byte signature, opcode 1
                    // (forward), next header IPv4.
                    let mut d = vec![0x41, 0x52, 0x11, 4, 0, 0, 0, 0];
                    d.extend_from_slice(&[0; 16 + 20]);
                    d.extend_from_slice(&inner_udp);
                    d
                }),
            ),
            (LinkType::RAW, inner_tcp.clone()),
            (LinkType::NULL, {
                let mut d = 2u32.to_le_bytes().to_vec();
                d.extend_from_slice(&inner_udp);
                d
            }),
            (LinkType::PPP, {
                let mut d = vec![0xff, 0x03, 0x00, 0x21];
                d.extend_from_slice(&inner_udp);
                d
            }),
            (LinkType::LINUX_SLL, {
                let mut d = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
                d.extend_from_slice(&inner_tcp);
                d
            }),
            (LinkType::LINUX_SLL2, {
                let mut d = vec![
                    0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0,
                ];
                d.extend_from_slice(&inner_udp);
                d
            }),
        ];
        // PPPoE session carrying IPv4.
        let mut pppoe = vec![0x11, 0, 0, 1];
        let plen = u16::try_from(inner_udp.len() + 2).expect("small PPPoE payload");
        pppoe.extend_from_slice(&plen.to_be_bytes());
        pppoe.extend_from_slice(&[0x00, 0x21]);
        pppoe.extend_from_slice(&inner_udp);
        v.push((e, eth(0x8864, &pppoe)));
        v
    })
}

// ---------------------------------------------------------------------------
// Running the binary

struct Run {
    success: bool,
    stderr: String,
    log_dir: PathBuf,
}

/// `osprey replay --seed 1 --log-dir DIR FILE...` (without `-q`, so that
/// the summary is on stderr).
fn replay(dir: &Path, inputs: &[&Path]) -> Run {
    let log_dir = dir.join("logs");
    let out = Command::new(env!("CARGO_BIN_EXE_osprey"))
        .arg("replay")
        .args(["--seed", "1", "--log-dir"])
        .arg(&log_dir)
        .args(inputs)
        .env_remove("OSPREY_LOG")
        .output()
        .expect("the osprey binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked"),
        "osprey panicked on {inputs:?}:\n{stderr}"
    );
    Run {
        success: out.status.success(),
        stderr,
        log_dir,
    }
}

/// Writes `bytes` as `name` in a fresh temporary directory and replays it.
fn replay_bytes(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf, Run) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    let run = replay(dir.path(), &[&path]);
    (dir, path, run)
}

/// A clear error: non-zero exit, stderr names the file and gives the
/// reason, and no `conn.log` was left behind.
#[track_caller]
fn assert_rejected(run: &Run, file: &Path, reasons: &[&str]) {
    assert!(!run.success, "expected failure, stderr:\n{}", run.stderr);
    let name = file.display().to_string();
    assert!(
        run.stderr.contains(&name),
        "stderr does not name {name}:\n{}",
        run.stderr
    );
    for r in reasons {
        assert!(
            run.stderr.contains(r),
            "stderr does not give the reason {r:?}:\n{}",
            run.stderr
        );
    }
    assert!(
        !run.log_dir.join("conn.log").exists(),
        "a conn.log was written for a capture that could not be read"
    );
}

/// A file damaged part-way: rejected as above, and what was read before
/// the damage is in `conn.log.partial`, which has no `#close` footer.
#[track_caller]
fn assert_partial(run: &Run, file: &Path, reasons: &[&str]) {
    assert_rejected(run, file, reasons);
    let partial = run.log_dir.join("conn.log.partial");
    let text = std::fs::read_to_string(&partial)
        .unwrap_or_else(|e| panic!("{} missing: {e}\n{}", partial.display(), run.stderr));
    assert!(
        text.starts_with("#separator"),
        "the partial log has its header:\n{text}"
    );
    assert!(
        !text.contains("#close"),
        "a partial log must not have a #close footer:\n{text}"
    );
    assert!(
        run.stderr.contains("conn.log.partial"),
        "stderr points to the partial log:\n{}",
        run.stderr
    );
}

/// Malformed packets are counted, not fatal: exit 0, a complete conn.log,
/// and the summary lists each named anomaly.
#[track_caller]
fn assert_counted(run: &Run, anomalies: &[&str]) {
    assert!(run.success, "expected success, stderr:\n{}", run.stderr);
    let log = run.log_dir.join("conn.log");
    let text = std::fs::read_to_string(&log)
        .unwrap_or_else(|e| panic!("{} missing: {e}\n{}", log.display(), run.stderr));
    assert!(text.contains("#close"), "conn.log is complete:\n{text}");
    assert!(
        run.stderr.contains("decode anomalies:"),
        "summary missing:\n{}",
        run.stderr
    );
    for a in anomalies {
        assert!(
            run.stderr.contains(a),
            "summary does not list {a}:\n{}",
            run.stderr
        );
    }
}

fn good_capture() -> PcapWriter {
    let mut w = PcapWriter::new();
    w.packet(1_000_000_000, &tcp4(40000, 80, 1000, true, b""))
        .packet(1_000_000_001, &udp4(40001, 7000, b"hello"))
        .packet(1_000_000_002, &udp4(40001, 7000, b"again"));
    w
}

// ---------------------------------------------------------------------------
// Damaged files through the binary

/// Control: the well-formed capture the damaged ones are made from
/// replays cleanly, with no anomalies.
#[test]
fn binary_valid_capture_is_clean() {
    let (_d, _p, run) = replay_bytes("good.pcap", good_capture().bytes());
    assert_counted(&run, &["decode anomalies: none"]);
    let text = std::fs::read_to_string(run.log_dir.join("conn.log")).expect("conn.log written");
    assert_eq!(
        text.lines().filter(|l| !l.starts_with('#')).count(),
        2,
        "one TCP and one UDP row:\n{text}"
    );
}

/// A capture cut in the middle of a packet's data: error naming the file,
/// the packets before it kept in `conn.log.partial`.
#[test]
fn binary_truncated_in_packet_data() {
    let mut w = good_capture();
    let frame = udp4(40002, 7000, &[9; 100]);
    let n = u32::try_from(frame.len()).expect("small frame");
    w.record(1_000_000_003, 0, n, n, &frame[..40]);
    let (_d, path, run) = replay_bytes("cut-data.pcap", w.bytes());
    assert_partial(&run, &path, &["read error", "truncated"]);
}

/// A capture cut inside a record header.
#[test]
fn binary_truncated_in_record_header() {
    let mut bytes = good_capture().bytes().to_vec();
    bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7]);
    let (_d, path, run) = replay_bytes("cut-header.pcap", &bytes);
    assert_partial(&run, &path, &["read error", "truncated"]);
}

/// Bytes that are no capture format at all.
#[test]
fn binary_garbage_file() {
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (_d, path, run) = replay_bytes("garbage.pcap", &garbage);
    assert_rejected(&run, &path, &["cannot open capture"]);
    assert!(!run.log_dir.join("conn.log.partial").exists());
}

/// A pcap whose magic number is wrong (otherwise well-formed).
#[test]
fn binary_wrong_magic_number() {
    let mut w = PcapWriter::with_magic(0xdead_beef, LINKTYPE_ETHERNET);
    w.packet(1, &udp4(1, 2, b"x"));
    let (_d, path, run) = replay_bytes("magic.pcap", w.bytes());
    assert_rejected(&run, &path, &["cannot open capture", "format"]);
}

/// A pcapng section header followed by garbage.
#[test]
fn binary_pcapng_with_garbage_body() {
    let mut bytes = vec![
        0x0a, 0x0d, 0x0d, 0x0a, 0x1c, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a,
    ];
    bytes.extend(std::iter::repeat_n(0xee, 64));
    let (_d, path, run) = replay_bytes("broken.pcapng", &bytes);
    assert_rejected(&run, &path, &[]);
}

/// An empty file.
#[test]
fn binary_empty_file() {
    let (_d, path, run) = replay_bytes("empty.pcap", b"");
    assert_rejected(&run, &path, &["cannot open capture"]);
}

/// A file shorter than the pcap global header.
#[test]
fn binary_short_global_header() {
    let (_d, path, run) = replay_bytes("short.pcap", &good_capture().bytes()[..10]);
    assert_rejected(&run, &path, &["cannot open capture"]);
}

/// A path that does not exist.
#[test]
fn binary_nonexistent_path() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("no-such-file.pcap");
    let run = replay(dir.path(), &[&path]);
    assert_rejected(&run, &path, &["cannot open capture", "No such file"]);
}

/// Every input is opened before any is read, so a bad second file fails
/// the run before anything is written (`capture::open_all`).
#[test]
fn binary_bad_second_file_fails_before_output() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let good = dir.path().join("good.pcap");
    let bad = dir.path().join("bad.pcap");
    good_capture().write_to(&good);
    std::fs::write(&bad, b"not a capture").expect("write bad capture");
    let run = replay(dir.path(), &[&good, &bad]);
    assert_rejected(&run, &bad, &["cannot open capture"]);
    assert!(!run.log_dir.join("conn.log.partial").exists());
}

/// Packets whose capture is shorter than their own headers (caplen cut in
/// the Ethernet, IP and TCP headers, wire length intact) are counted
/// anomalies, not errors.
#[test]
fn binary_packets_shorter_than_their_headers() {
    let frame = tcp4(40000, 80, 1000, false, b"some payload bytes");
    let wire = u32::try_from(frame.len()).expect("small frame");
    let mut w = PcapWriter::new();
    for (i, cut) in [8usize, 14 + 12, 14 + 20 + 6].into_iter().enumerate() {
        let i = u32::try_from(i).expect("few packets");
        w.record(
            1_000_000_000 + i,
            0,
            u32::try_from(cut).expect("small"),
            wire,
            &frame[..cut],
        );
    }
    let (_d, _p, run) = replay_bytes("short-packets.pcap", w.bytes());
    assert_counted(
        &run,
        &[
            "truncated_ethernet_frame",
            "truncated_IP",
            "internally_truncated_header",
        ],
    );
}

/// An absurd captured length in a record header is a read error, not an
/// allocation of 4 GiB or a crash.
#[test]
fn binary_absurd_capture_length() {
    let mut w = good_capture();
    w.record(1_000_000_005, 0, 0xffff_fff0, 0xffff_fff0, &[0; 32]);
    let (_d, path, run) = replay_bytes("absurd-caplen.pcap", w.bytes());
    assert_partial(&run, &path, &["read error"]);
}

/// Absurd wire lengths (4 GiB, and smaller than what was captured) and an
/// IP total length far beyond the frame are handled as packet anomalies.
#[test]
fn binary_absurd_wire_and_ip_lengths() {
    let mut w = PcapWriter::new();
    let f = udp4(40000, 7000, b"x");
    let n = u32::try_from(f.len()).expect("small frame");
    w.record(1_000_000_000, 0, n, u32::MAX, &f);
    w.record(1_000_000_001, 0, n, 1, &f);
    let mut bad_len = udp4(40000, 7000, b"y");
    bad_len[16..18].copy_from_slice(&0xfff0u16.to_be_bytes());
    w.record(1_000_000_002, 0, n, n, &bad_len);
    let (_d, _p, run) = replay_bytes("absurd-lengths.pcap", w.bytes());
    assert_counted(&run, &["truncated_IP_len"]);
}

/// A capture with a link type the engine has no decoder for (here USER0,
/// 147) is read as raw IP, as Zeek's root packet analyzer falls back to
/// its IP analyzer (`default_analyzer` in
/// scripts/base/packet-protocols/root): frames that are not IP are counted
/// anomalies, IP packets make connections, and the run completes.
#[test]
fn binary_unknown_link_type_read_as_raw_ip() {
    let mut w = PcapWriter::with_magic(PCAP_MAGIC, 147);
    w.packet(1_000_000_000, &udp4(40000, 7000, b"ethernet, not IP"))
        .packet(1_000_000_001, &l3(&udp4(40001, 7000, b"raw IP")));
    let (_d, _p, run) = replay_bytes("user0.pcap", w.bytes());
    assert_counted(&run, &["unknown_ip_version"]);
    let text = std::fs::read_to_string(run.log_dir.join("conn.log")).expect("conn.log written");
    assert_eq!(
        text.lines().filter(|l| !l.starts_with('#')).count(),
        1,
        "the raw IP packet is a connection:\n{text}"
    );
}

/// Timestamps that go backwards and huge jumps forward do not break the
/// run.
#[test]
fn binary_timestamps_out_of_order() {
    let mut w = PcapWriter::new();
    w.packet(2_000_000_000, &udp4(40000, 7000, b"a"))
        .packet(1, &udp4(40000, 7000, b"b"))
        .record(u32::MAX, 999_999, 43, 43, &udp4(40000, 7000, b"c"))
        .packet(0, &tcp4(40000, 80, 7, true, b""));
    let (_d, _p, run) = replay_bytes("time-travel.pcap", w.bytes());
    assert!(run.success, "stderr:\n{}", run.stderr);
}

// ---------------------------------------------------------------------------
// The engine on arbitrary and mutated input

/// Property-test case count: `default`, or `PROPTEST_CASES` when set (for
/// long fuzzing runs, e.g. `PROPTEST_CASES=50000 cargo test --release
/// --test robustness`).
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Every link type the engine decodes (the fuzz target's list), plus one
/// arbitrary value per case.
fn link_type() -> impl Strategy<Value = LinkType> {
    use decode_conn_target::LINKS;
    prop_oneof![
        4 => (0..LINKS.len()).prop_map(|i| LINKS[i]),
        1 => any::<i32>().prop_map(LinkType),
    ]
}

/// How a packet's wire length relates to its captured length.
#[derive(Clone, Copy, Debug)]
enum Wire {
    Equal,
    Longer(u32),
    Arbitrary(u32),
}

fn wire() -> impl Strategy<Value = Wire> {
    prop_oneof![
        3 => Just(Wire::Equal),
        2 => (1u32..70_000).prop_map(Wire::Longer),
        1 => any::<u32>().prop_map(Wire::Arbitrary),
    ]
}

fn wire_len(w: Wire, data_len: usize) -> u32 {
    let n = u32::try_from(data_len).expect("test frames are small");
    match w {
        Wire::Equal => n,
        Wire::Longer(extra) => n.saturating_add(extra),
        Wire::Arbitrary(x) => x,
    }
}

/// Engine settings for fuzzing: every analyzer on, so that the service
/// detectors see the hostile payloads too.
fn fuzz_cfg(ignore_checksums: bool) -> EngineConfig {
    EngineConfig {
        seed: Some(1),
        ignore_checksums,
        ..EngineConfig::default()
    }
}

/// Invariants that hold after `finish()` whatever the input was: nothing
/// is left open, every connection created was logged exactly once, and
/// each record is internally sane.
fn check_after_finish(engine: &mut Engine, fed: u64) -> Result<(), TestCaseError> {
    prop_assert_eq!(engine.active_connections(), 0);
    let st = engine.stats().clone();
    prop_assert_eq!(st.records, st.conns_created);
    let recs: Vec<_> = engine.drain_records().collect();
    prop_assert_eq!(recs.len() as u64, st.records);
    for r in &recs {
        prop_assert!(r.ts.is_finite());
        prop_assert!(
            r.duration.is_none_or(|d| d > 0.0 && d.is_finite()),
            "{:?}",
            r
        );
        // One frame carries up to MAX_FRAMES IP packets (802.11 A-MSDU).
        prop_assert!(
            r.orig_pkts + r.resp_pkts <= fed * link::MAX_FRAMES as u64,
            "{:?}",
            r
        );
        prop_assert_eq!(r.orig_bytes.is_some(), r.duration.is_some());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// `Engine::process_packet` never panics on arbitrary bytes, for every
    /// link type, with wire lengths equal to, longer than or unrelated to
    /// the captured length.
    #[test]
    fn engine_survives_arbitrary_frames(
        pkts in prop::collection::vec(
            (link_type(), prop::collection::vec(any::<u8>(), 0..160), wire(), 0.0f64..100.0),
            1..12,
        ),
        ignore_checksums in any::<bool>(),
    ) {
        let mut engine = Engine::new(fuzz_cfg(ignore_checksums));
        let mut t = 1_000.0;
        for (link, data, w, dt) in &pkts {
            t += dt;
            engine.process_packet(&Packet { ts: t, link: *link, wire_len: wire_len(*w, data.len()), data });
        }
        engine.finish();
        check_after_finish(&mut engine, pkts.len() as u64)?;
    }

    /// Valid frames of every kind the corpus holds (tunnels, fragments,
    /// IPv6, application payloads), with random bytes overwritten and
    /// random truncation, fed as sequences so that connections build up.
    #[test]
    fn engine_survives_mutated_valid_frames(
        pkts in prop::collection::vec(
            (
                any::<prop::sample::Index>(),
                prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
                prop::option::of(any::<prop::sample::Index>()),
                wire(),
                0.0f64..30.0,
            ),
            1..24,
        ),
        ignore_checksums in any::<bool>(),
    ) {
        let corpus = corpus();
        let mut engine = Engine::new(fuzz_cfg(ignore_checksums));
        let mut t = 1_000.0;
        for (pick, edits, cut, w, dt) in &pkts {
            let (link, base) = &corpus[pick.index(corpus.len())];
            let mut data = base.clone();
            for (at, byte) in edits {
                let i = at.index(data.len());
                data[i] = *byte;
            }
            if let Some(c) = cut {
                data.truncate(c.index(data.len() + 1));
            }
            t += dt;
            engine.process_packet(&Packet { ts: t, link: *link, wire_len: wire_len(*w, data.len()), data: &data });
        }
        engine.finish();
        check_after_finish(&mut engine, pkts.len() as u64)?;
    }

    /// Structurally valid Ethernet/IPv4/TCP-or-UDP packets with random
    /// header fields, flags, ports, sequence numbers and payload sizes over
    /// a small set of hosts and ports (so that they meet in connections),
    /// random truncation, and times that sometimes jump far ahead (timers)
    /// or back.
    #[test]
    fn engine_survives_random_tcp_udp_sequences(
        pkts in prop::collection::vec(
            (
                (any::<bool>(), any::<bool>(), 0usize..6, 0usize..6, any::<bool>()),
                (any::<u8>(), seq_number(), seq_number(), any::<u16>()),
                (0usize..80, prop::option::of(0usize..140), time_step()),
            ),
            1..40,
        ),
        ignore_checksums in any::<bool>(),
    ) {
        const PORTS: [u16; 6] = [80, 443, 53, 40000, 40001, 5555];
        let mut engine = Engine::new(fuzz_cfg(ignore_checksums));
        let mut t = 1_000.0;
        for ((a_to_b, is_tcp, sp, dp, zero_src), (flags, seq, ack, win), (plen, cut, dt)) in &pkts {
            let (src, dst) = if *a_to_b { (A, B) } else { (B, A) };
            let src = if *zero_src && !is_tcp { [0, 0, 0, 0] } else { src };
            let payload = vec![0x41u8; *plen];
            let ipb = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(src, dst, 64);
            let mut frame = Vec::new();
            if *is_tcp {
                let mut b = ipb.tcp(PORTS[*sp], PORTS[*dp], *seq, *win);
                if flags & 0x01 != 0 { b = b.fin(); }
                if flags & 0x02 != 0 { b = b.syn(); }
                if flags & 0x04 != 0 { b = b.rst(); }
                if flags & 0x08 != 0 { b = b.psh(); }
                if flags & 0x10 != 0 { b = b.ack(*ack); }
                if flags & 0x20 != 0 { b = b.urg(1); }
                b.write(&mut frame, &payload).expect("etherparse builds TCP");
            } else {
                ipb.udp(PORTS[*sp], PORTS[*dp]).write(&mut frame, &payload).expect("etherparse builds UDP");
            }
            let wire = u32::try_from(frame.len()).expect("small frame");
            if let Some(c) = cut {
                frame.truncate(*c);
            }
            t += dt;
            engine.process_packet(&Packet { ts: t, link: LinkType::ETHERNET, wire_len: wire, data: &frame });
        }
        engine.finish();
        check_after_finish(&mut engine, pkts.len() as u64)?;
    }
}

/// Sequence numbers near the interesting places: zero, the wrap, and
/// anywhere.
fn seq_number() -> impl Strategy<Value = u32> {
    prop_oneof![
        0u32..3000,
        (u32::MAX - 3000)..=u32::MAX,
        (1u32 << 31) - 1000..(1u32 << 31) + 1000,
        any::<u32>(),
    ]
}

/// Time steps: bursts, pauses beyond the TCP/UDP timeouts, and going back.
fn time_step() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => 0.0f64..0.5,
        2 => 4.0f64..8.0,
        1 => 55.0f64..400.0,
        1 => -50.0f64..0.0,
    ]
}

// ---------------------------------------------------------------------------
// The decoders on arbitrary bytes

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(512),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// `decode_link` never panics, and whatever IP frames it returns lie
    /// inside the input.
    #[test]
    fn decode_link_survives_arbitrary_bytes(
        link in link_type(),
        data in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let (_, r) = link::decode_link(link, &data);
        if let Ok(frames) = r {
            for f in frames {
                prop_assert!(f.offset <= data.len());
                prop_assert!(f.offset + f.data.len() <= data.len());
            }
        }
        let _ = link::decode_inner_ethernet(&data);
    }

    /// `parse_ip` never panics; an accepted packet's header and payload lie
    /// inside the input.
    #[test]
    fn parse_ip_survives_arbitrary_bytes(
        data in ip_like_bytes(),
        wire_left in prop_oneof![Just(usize::MAX), 0usize..200],
        ignore_checksums in any::<bool>(),
    ) {
        if let ip::IpOutcome::Packet(p) = ip::parse_ip(&data, wire_left, ignore_checksums) {
            prop_assert!(p.hdr_len <= data.len());
            prop_assert!(p.payload.len() <= data.len() - p.hdr_len);
            let _ = p.header();
        }
        let _ = ip::check_inner_ip(&data, ip::PROTO_IPIP);
        let _ = ip::check_inner_ip(&data, ip::PROTO_IPV6);
        let _ = ip::check_inner_ip(&data, ip::PROTO_TCP);
    }

    /// The tunnel parsers never panic on arbitrary bytes.
    #[test]
    fn tunnel_parsers_survive_arbitrary_bytes(
        data in prop::collection::vec(any::<u8>(), 0..160),
        in_gtp in any::<bool>(),
    ) {
        let _ = tunnel::gre(&data);
        let _ = tunnel::checked_ip(&data, ip::PROTO_IPIP);
        let _ = tunnel::checked_ip(&data, ip::PROTO_IPV6);
        let _ = tunnel::vxlan(&data);
        let _ = tunnel::geneve(&data);
        let _ = tunnel::teredo(&data);
        let _ = tunnel::teredo_detect(&data);
        let _ = tunnel::ayiya(&data);
        let _ = tunnel::ayiya_detect(&data);
        let _ = tunnel::gtpv1(&data, in_gtp);
    }
}

/// Bytes that start like an IPv4 or IPv6 header often enough to get past
/// the version check.
fn ip_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            Just(0x45u8),
            Just(0x46),
            Just(0x4f),
            Just(0x60),
            any::<u8>()
        ],
        prop::collection::vec(any::<u8>(), 0..120),
    )
        .prop_map(|(first, mut rest)| {
            rest.insert(0, first);
            rest
        })
}

// ---------------------------------------------------------------------------
// Memory bound

/// With `max_connections=1000`, 20,000 SYNs from distinct sources never
/// make the engine track more than 1000 connections; each eviction is
/// counted (and logged, so no connection is lost from conn.log).
#[test]
fn connection_table_is_bounded() {
    let mut cfg = EngineConfig {
        seed: Some(1),
        ..EngineConfig::default()
    };
    cfg.set("max_connections=1000")
        .expect("max_connections is a known setting");
    let mut engine = Engine::new(cfg);
    let server = [198, 19, 0, 1];
    const N: u32 = 20_000;
    let mut records = 0usize;
    for i in 0..N {
        let src = Ipv4Addr::from(0xc612_0000u32 + i + 1).octets(); // 198.18.x.y
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(src, server, 64)
            .tcp(40000, 80, i, 1024)
            .syn();
        let mut frame = Vec::with_capacity(54);
        b.write(&mut frame, &[]).expect("etherparse builds a SYN");
        // All within 2 s, so no attempt timer (5 s) ends any of them.
        let t = 1_000.0 + f64::from(i) * 1e-4;
        engine.process_packet(&Packet {
            ts: t,
            link: LinkType::ETHERNET,
            wire_len: 54,
            data: &frame,
        });
        assert!(
            engine.active_connections() <= 1000,
            "{} connections tracked after packet {i}",
            engine.active_connections()
        );
        records += engine.drain_records().count();
    }
    assert_eq!(engine.active_connections(), 1000);
    let st = engine.stats().clone();
    assert_eq!(st.conns_created, u64::from(N));
    assert_eq!(st.conns_evicted, u64::from(N) - 1000);
    assert_eq!(
        records as u64, st.conns_evicted,
        "evicted connections are logged"
    );
    engine.finish();
    records += engine.drain_records().count();
    assert_eq!(records, N as usize, "every connection logged exactly once");
}

/// The mutation corpus is made of frames the engine fully decodes (no
/// anomaly, at least one connection each, two for UDP tunnels), so that
/// mutations start deep inside the decoders rather than at the first
/// length check.
#[test]
fn corpus_frames_decode_cleanly() {
    for (i, (link, frame)) in corpus().iter().enumerate() {
        let mut engine = Engine::new(fuzz_cfg(false));
        engine.process_packet(&Packet {
            ts: 1_000.0,
            link: *link,
            wire_len: u32::try_from(frame.len()).expect("small frame"),
            data: frame,
        });
        let weirds: Vec<_> = engine
            .stats()
            .weirds
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(w, n)| (w.name(), n))
            .collect();
        assert!(weirds.is_empty(), "corpus[{i}]: {weirds:?}");
        engine.finish();
        let recs: Vec<_> = engine.drain_records().collect();
        let is_fragment = *link == LinkType::ETHERNET
            && frame[12..14] == [0x08, 0x00]
            && u16::from_be_bytes([frame[20], frame[21]]) & 0x3fff != 0;
        let udp_tunnel = *link == LinkType::ETHERNET
            && frame[12..14] == [0x08, 0x00]
            && frame[23] == 17
            && [4789u16, 6081, 3544, 2152, 5072]
                .contains(&u16::from_be_bytes([frame[36], frame[37]]));
        let expected = if is_fragment {
            0
        } else if udp_tunnel {
            2
        } else {
            1
        };
        assert_eq!(recs.len(), expected, "corpus[{i}]: {recs:?}");
    }
}

/// Regression: with many more records than the writer's pool of batches
/// (30,000 one-packet flows), `osprey replay --no-models` hung — the
/// engine made fresh batches when none came back, and the writer then
/// waited to return one to a full pool while the engine waited on the
/// writer. Both modes must finish, every flow logged.
#[test]
fn binary_many_records_do_not_stall_the_log_writer() {
    let mut w = PcapWriter::new();
    for i in 0..30_000u32 {
        let sport = 1024 + (i % 60_000) as u16;
        w.packet(1_000_000_000 + i / 1000, &udp4(sport, 7000, b"x"));
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("many.pcap");
    std::fs::write(&path, w.bytes()).expect("write the capture");
    for extra in [&["--no-models"][..], &[][..]] {
        let log_dir = dir.path().join(format!("logs{}", extra.len()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_osprey"))
            .args(["replay", "-q", "-C", "--log-dir"])
            .arg(&log_dir)
            .args(extra)
            .arg(&path)
            .spawn()
            .expect("the osprey binary runs");
        let t0 = std::time::Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if t0.elapsed() > std::time::Duration::from_secs(120) {
                let _ = child.kill();
                panic!("osprey replay {extra:?} of 30,000 flows did not finish in 120 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert!(status.success(), "{extra:?}: {status}");
        let text = std::fs::read_to_string(log_dir.join("conn.log")).expect("conn.log");
        assert_eq!(
            text.lines().filter(|l| !l.starts_with('#')).count(),
            30_000,
            "{extra:?}"
        );
    }
}

/// A capture's clock is input: at 2^60 s and more, adding a timeout to a
/// packet time changes nothing, so a timer re-armed "later" was due again
/// at once and the engine never returned (found by the pcapng fuzz
/// target). Times up to 2^40 s are analysed; later ones are counted. Runs in a thread so that a regression fails instead of
/// hanging the suite.
#[test]
fn packet_times_beyond_float_precision_do_not_stall_the_timers() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut engine = Engine::new(EngineConfig {
            seed: Some(1),
            ignore_checksums: true,
            ..EngineConfig::default()
        });
        let dns = udp4(
            5353,
            53,
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01a\x00\x00\x01\x00\x01",
        );
        let syn = tcp4(40000, 80, 1, true, b"");
        let mut out = Vec::new();
        for ts in [
            1.0e12,
            1.09e12,
            1.2e19,
            1.2e19,
            f64::MAX / 2.0,
            f64::INFINITY,
            f64::NAN,
        ] {
            for frame in [&dns, &syn] {
                let p = Packet {
                    ts,
                    link: LinkType::ETHERNET,
                    wire_len: frame.len() as u32,
                    data: frame,
                };
                engine.process_packet(&p);
                engine.take_records(&mut out);
            }
        }
        engine.finish();
        engine.take_records(&mut out);
        let dropped = engine
            .stats()
            .weirds
            .get(osprey::decode::weird::Weird::PacketTimeOutOfRange);
        let _ = tx.send((out.len(), dropped));
    });
    let got = rx.recv_timeout(std::time::Duration::from_secs(20));
    let Ok((_, dropped)) = got else {
        panic!("the engine did not return within 20 s");
    };
    // 1.2e19 (twice), f64::MAX / 2, infinity and NaN, two packets each.
    assert_eq!(dropped, 10, "out-of-range packet times are counted");
}

// ---------------------------------------------------------------------------
// The decode_conn fuzz target's committed seeds and past findings, replayed
// through the target's own code on every test run (debug build: overflow
// checks on, as in the fuzz build), so a finding fixed once stays fixed.

#[path = "../fuzz/common/decode_conn.rs"]
mod decode_conn_target;

#[test]
fn decode_conn_corpus_runs_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode_conn");
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the decode_conn corpus is committed")
        .map(|e| e.expect("corpus entry").path())
        .collect();
    entries.sort();
    assert!(
        entries
            .iter()
            .any(|p| p.ends_with("regress_ack_past_wrapped_fin")),
        "the past finding is in the corpus"
    );
    for path in &entries {
        let data = std::fs::read(path).expect("seed reads");
        let outcome = std::panic::catch_unwind(|| decode_conn_target::run(&data));
        assert!(outcome.is_ok(), "{} panics the engine", path.display());
    }
}
