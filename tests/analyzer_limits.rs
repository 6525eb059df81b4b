//! Zeek's analyzer limits through the public engine API: reaching one puts
//! a single `X` in history where Zeek would (`Connection::LimitReachedWeird`
//! in `src/Conn.cc`) and counts the limit's weird; `--set` takes Zeek's
//! option names. Packets are built with etherparse (198.18.0.0/15).

use std::net::Ipv4Addr;

use etherparse::PacketBuilder;
use osprey::capture::{LinkType, Packet};
use osprey::conn::{ConnRecord, Engine, EngineConfig};
use osprey::decode::weird::Weird;

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const T0: f64 = 1000.0;

fn tcp(from_client: bool, sport: u16, flags: &str, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let (src, dst, sp, dp) = if from_client {
        (CLIENT, SERVER, 40000, sport)
    } else {
        (SERVER, CLIENT, sport, 40000)
    };
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src.octets(), dst.octets(), 64)
        .tcp(sp, dp, seq, 65535);
    for c in flags.chars() {
        b = match c {
            'S' => b.syn(),
            'A' => b.ack(ack),
            'F' => b.fin(),
            'P' => b.psh(),
            other => panic!("test bug: flag {other:?}"),
        };
    }
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload)
        .expect("etherparse builds the TCP test packet");
    out
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(CLIENT.octets(), SERVER.octets(), 64)
        .udp(sport, dport);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload)
        .expect("etherparse builds the UDP test packet");
    out
}

/// A TCP session on `port`: handshake, the given lines (client lines when
/// the flag is true) each in its own segment acknowledged by the peer, then
/// FIN from the client and the server.
fn session(port: u16, lines: &[(bool, Vec<u8>)]) -> Vec<Vec<u8>> {
    let (mut cs, mut ss) = (1000u32, 5000u32);
    let mut p = vec![
        tcp(true, port, "S", cs, 0, b""),
        tcp(false, port, "SA", ss, cs + 1, b""),
        tcp(true, port, "A", cs + 1, ss + 1, b""),
    ];
    cs += 1;
    ss += 1;
    for (from_client, data) in lines {
        if *from_client {
            p.push(tcp(true, port, "PA", cs, ss, data));
            cs += data.len() as u32;
            p.push(tcp(false, port, "A", ss, cs, b""));
        } else {
            p.push(tcp(false, port, "PA", ss, cs, data));
            ss += data.len() as u32;
            p.push(tcp(true, port, "A", cs, ss, b""));
        }
    }
    p.push(tcp(true, port, "FA", cs, ss, b""));
    p.push(tcp(false, port, "FA", ss, cs + 1, b""));
    p.push(tcp(true, port, "A", cs + 1, ss + 1, b""));
    p
}

fn run(cfg: EngineConfig, frames: &[Vec<u8>]) -> (Vec<ConnRecord>, Engine) {
    let mut e = Engine::new(cfg);
    for (i, f) in frames.iter().enumerate() {
        e.process_packet(&Packet {
            ts: T0 + i as f64 * 0.01,
            link: LinkType::ETHERNET,
            wire_len: u32::try_from(f.len()).expect("test frames are small"),
            data: f,
        });
    }
    e.finish();
    let recs = e.drain_records().collect();
    (recs, e)
}

fn cfg(sets: &[&str]) -> EngineConfig {
    let mut c = EngineConfig {
        seed: Some(1),
        ..EngineConfig::default()
    };
    for s in sets {
        c.set(s).expect("the test's setting applies");
    }
    c
}

fn ftp_lines(command_len: usize) -> Vec<(bool, Vec<u8>)> {
    let long = format!("{} x\r\n", "A".repeat(command_len));
    vec![
        (false, b"220 ready\r\n".to_vec()),
        (true, b"USER anonymous\r\n".to_vec()),
        (false, b"331 password?\r\n".to_vec()),
        (true, long.clone().into_bytes()),
        (true, long.into_bytes()),
        (false, b"500 what?\r\n".to_vec()),
    ]
}

fn only(recs: &[ConnRecord]) -> &ConnRecord {
    assert_eq!(recs.len(), 1, "one connection expected");
    &recs[0]
}

/// Zeek's ftp-max-command-length btest in miniature: one `X`, after the
/// data that carried the first long command, and one weird per command.
#[test]
fn ftp_max_command_length_marks_history_once() {
    let (recs, e) = run(cfg(&[]), &session(21, &ftp_lines(101)));
    let r = only(&recs);
    assert_eq!(r.service.as_slice(), &["ftp"]);
    assert_eq!(r.history.as_str(), "ShAdDaXFf");
    assert_eq!(e.stats().weirds.get(Weird::FtpMaxCommandLengthExceeded), 2);
}

#[test]
fn ftp_max_command_length_follows_set() {
    let (recs, e) = run(
        cfg(&["FTP::max_command_length=200"]),
        &session(21, &ftp_lines(101)),
    );
    assert_eq!(only(&recs).history.as_str(), "ShAdDaFf");
    assert_eq!(e.stats().weirds.get(Weird::FtpMaxCommandLengthExceeded), 0);
    let (recs, _) = run(
        cfg(&["FTP::max_command_length=10"]),
        &session(21, &ftp_lines(11)),
    );
    assert_eq!(only(&recs).history.as_str(), "ShAdDaXFf");
}

/// Zeek's dns max-queries btest: `dns_max_queries=3` and a query with 10
/// questions give history `DX` and no service (the limit is a violation).
#[test]
fn dns_max_queries_is_a_violation_and_an_x() {
    let mut q = vec![0, 1, 1, 0, 0, 10, 0, 0, 0, 0, 0, 0];
    for _ in 0..10 {
        q.extend_from_slice(&[1, b'a', 0, 0, 1, 0, 1]);
    }
    let (recs, e) = run(cfg(&["dns_max_queries=3"]), &[udp(12345, 53, &q)]);
    let r = only(&recs);
    assert_eq!(r.history.as_str(), "DX");
    assert!(r.service.is_empty());
    assert_eq!(e.stats().weirds.get(Weird::DnsConnCountTooLarge), 1);
    // At the default (25) the same query confirms.
    let (recs, _) = run(cfg(&[]), &[udp(12345, 53, &q)]);
    let r = only(&recs);
    assert_eq!(r.history.as_str(), "D");
    assert_eq!(r.service.as_slice(), &["dns"]);
}

/// Zeek marks a DNS message with an unknown opcode the same way.
#[test]
fn dns_unknown_opcode_is_an_x() {
    let q = [
        0, 1, 0x10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1,
    ];
    let (recs, e) = run(cfg(&[]), &[udp(12345, 53, &q), udp(12345, 53, &q)]);
    assert_eq!(only(&recs).history.as_str(), "DX");
    assert!(e.stats().weirds.get(Weird::DnsUnknownOpcode) >= 1);
}

/// HTTP pipelining: 102 requests without replies pass the default 100.
#[test]
fn http_excessive_pipelining() {
    let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    let lines: Vec<(bool, Vec<u8>)> = (0..102).map(|_| (true, req.clone())).collect();
    let (recs, e) = run(cfg(&[]), &session(80, &lines));
    let r = only(&recs);
    assert_eq!(r.service.as_slice(), &["http"]);
    assert_eq!(r.history.as_str(), "ShADaXFf");
    assert_eq!(e.stats().weirds.get(Weird::HttpExcessivePipelining), 1);
    let (recs, _) = run(cfg(&["HTTP::max_pending_requests=0"]), &session(80, &lines));
    assert_eq!(only(&recs).history.as_str(), "ShADaFf");
}

#[test]
fn unknown_limit_names_are_refused() {
    let mut c = EngineConfig::default();
    let e = c.set("FTP::max_command_lenght=5").unwrap_err();
    assert!(e.reason.contains("FTP::max_command_length"), "{e}");
}

/// The fuzz seeds made for the limits (`fuzz/make_seeds.py`,
/// `limit_*`) each trip theirs at Zeek's defaults, so the fuzzer starts
/// from inputs that reach the limit paths.
#[test]
fn fuzz_seeds_trip_their_limits() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode_conn");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("the decode_conn corpus is committed") {
        let path = entry.expect("corpus entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if !name.starts_with("limit_") {
            continue;
        }
        seen += 1;
        let data = std::fs::read(&path).expect("seed reads");
        // decode_conn's format: a flags byte, then records of link index
        // (0: Ethernet), time step, wire extra and length, then the frame.
        assert_eq!(data[0], 0, "{name}: flags");
        let mut rest = &data[1..];
        let mut frames = Vec::new();
        while rest.len() >= 7 {
            assert_eq!(rest[0], 0, "{name}: Ethernet records only");
            let len = usize::from(u16::from_le_bytes([rest[5], rest[6]]));
            frames.push(rest[7..7 + len].to_vec());
            rest = &rest[7 + len..];
        }
        let (recs, e) = run(cfg(&[]), &frames);
        assert!(
            recs.iter().any(|r| r.history.as_str().contains('X')),
            "{name}: {:?}",
            recs.iter()
                .map(|r| r.history.as_str().to_owned())
                .collect::<Vec<_>>()
        );
        assert!(e.stats().weirds.total() > 0, "{name}");
    }
    assert_eq!(
        seen, 11,
        "one seed per limit (the MIME limits have one each for HTTP and SMTP)"
    );
}
