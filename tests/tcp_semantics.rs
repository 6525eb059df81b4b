//! Connection semantics through the public engine API, one rule per test.
//!
//! Each test builds a few packets with etherparse's `PacketBuilder`
//! (addresses in 198.18.0.0/15 and fd00::/8, times chosen by the test),
//! feeds them to an [`Engine`], calls `finish()` and checks the records
//! against what Zeek would log. The expected values come from the spec in
//! `shared/zeek-oracle/README.md` ("Gotchas", "conn_state", "Who is the
//! originator") and from the Zeek source it cites; every test names the
//! rule it pins and where that rule is written down. Zeek's own test suite
//! has no `S2` and no `RSTOS0` row, so the synthetic tests here are the only
//! check of those two states.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::PacketBuilder;
use osprey::capture::{LinkType, Packet};
use osprey::conn::config::PortSet;
use osprey::conn::service::AnalyzerSet;
use osprey::conn::{ConnRecord, ConnState, Engine, EngineConfig, Proto};

// ---------------------------------------------------------------------------
// Packet building

/// Base of all packet times (seconds); small enough that differences of a
/// few milliseconds stay exact to well below a microsecond.
const T0: f64 = 1000.0;

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 254);
const CLIENT_PORT: u16 = 40000;
/// A server port that is not in the tests' `likely_server_ports`.
const PLAIN_PORT: u16 = 5555;

/// Client and server ISNs used by most TCP tests.
const CISN: u32 = 1000;
const SISN: u32 = 5000;

/// Offset of the TCP checksum in an Ethernet + 20-byte IPv4 frame.
const TCP4_CHECKSUM_AT: usize = 14 + 20 + 16;
/// Offset of the UDP length and checksum fields in such a frame.
const UDP4_LENGTH_AT: usize = 14 + 20 + 4;
const UDP4_CHECKSUM_AT: usize = 14 + 20 + 6;

fn mac_of(a: &IpAddr) -> [u8; 6] {
    match a {
        IpAddr::V4(v) => {
            let o = v.octets();
            [0x02, 0, o[0], o[1], o[2], o[3]]
        }
        IpAddr::V6(v) => {
            let o = v.octets();
            [0x02, 0, o[12], o[13], o[14], o[15]]
        }
    }
}

/// Starts an Ethernet + IP packet from `src` to `dst` (same family).
fn ip_step(src: IpAddr, dst: IpAddr) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    let eth = PacketBuilder::ethernet2(mac_of(&src), mac_of(&dst));
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => panic!("test bug: mixed address families {src} -> {dst}"),
    }
}

/// A TCP segment. `flags` uses tcpdump letters: `S` SYN, `A` ACK (with
/// `ack` as the acknowledgement number), `F` FIN, `R` RST, `P` PSH.
#[allow(clippy::too_many_arguments)]
fn tcp_frame(
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    flags: &str,
    seq: u32,
    ack: u32,
    window: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = ip_step(src, dst).tcp(sport, dport, seq, window);
    for c in flags.chars() {
        b = match c {
            'S' => b.syn(),
            'A' => b.ack(ack),
            'F' => b.fin(),
            'R' => b.rst(),
            'P' => b.psh(),
            other => panic!("test bug: unknown TCP flag letter {other:?} in {flags:?}"),
        };
    }
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload)
        .expect("etherparse builds the TCP test packet");
    out
}

fn udp_frame(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = ip_step(src, dst).udp(sport, dport);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload)
        .expect("etherparse builds the UDP test packet");
    out
}

fn icmp4_frame(src: Ipv4Addr, dst: Ipv4Addr, ty: u8, code: u8, payload: &[u8]) -> Vec<u8> {
    let b = ip_step(src.into(), dst.into()).icmpv4_raw(ty, code, [0, 1, 0, 1]);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload)
        .expect("etherparse builds the ICMP test packet");
    out
}

fn icmp6_frame(src: Ipv6Addr, dst: Ipv6Addr, ty: u8, code: u8, payload: &[u8]) -> Vec<u8> {
    let b = ip_step(src.into(), dst.into()).icmpv6_raw(ty, code, [0, 1, 0, 1]);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload)
        .expect("etherparse builds the ICMPv6 test packet");
    out
}

/// Both directions of one TCP 5-tuple.
#[derive(Clone, Copy)]
struct Flow {
    client: IpAddr,
    cport: u16,
    server: IpAddr,
    sport: u16,
}

impl Flow {
    /// 198.18.0.1:40000 -> 198.18.0.2:`sport`.
    fn v4(sport: u16) -> Self {
        Flow {
            client: CLIENT.into(),
            cport: CLIENT_PORT,
            server: SERVER.into(),
            sport,
        }
    }

    /// Client to server, window 65535, `len` bytes of payload.
    fn c(&self, flags: &str, seq: u32, ack: u32, len: usize) -> Vec<u8> {
        self.cw(flags, seq, ack, len, 65535)
    }

    fn cw(&self, flags: &str, seq: u32, ack: u32, len: usize, window: u16) -> Vec<u8> {
        let payload = vec![b'x'; len];
        tcp_frame(
            self.client,
            self.cport,
            self.server,
            self.sport,
            flags,
            seq,
            ack,
            window,
            &payload,
        )
    }

    /// Server to client.
    fn s(&self, flags: &str, seq: u32, ack: u32, len: usize) -> Vec<u8> {
        self.sw(flags, seq, ack, len, 65535)
    }

    fn sw(&self, flags: &str, seq: u32, ack: u32, len: usize, window: u16) -> Vec<u8> {
        let payload = vec![b'y'; len];
        tcp_frame(
            self.server,
            self.sport,
            self.client,
            self.cport,
            flags,
            seq,
            ack,
            window,
            &payload,
        )
    }

    /// The three handshake packets at T0, T0+0.1 and T0+0.2.
    fn handshake(&self) -> Vec<(f64, Vec<u8>)> {
        vec![
            (T0, self.c("S", CISN, 0, 0)),
            (T0 + 0.1, self.s("SA", SISN, CISN + 1, 0)),
            (T0 + 0.2, self.c("A", CISN + 1, SISN + 1, 0)),
        ]
    }
}

// ---------------------------------------------------------------------------
// Running the engine

/// Deterministic settings without protocol analyzers (which could flip or
/// end connections on their own), and an explicit, small set of likely
/// server ports so that flips in these tests are deliberate.
fn cfg() -> EngineConfig {
    EngineConfig {
        seed: Some(1),
        analyzers: AnalyzerSet::none(),
        likely_server_ports: PortSet::from_list("80/tcp,53/udp,67/udp")
            .expect("the test's likely_server_ports list parses"),
        ..EngineConfig::default()
    }
}

fn cfg_no_checksums() -> EngineConfig {
    EngineConfig {
        ignore_checksums: true,
        ..cfg()
    }
}

fn feed(engine: &mut Engine, t: f64, frame: &[u8]) {
    engine.process_packet(&Packet {
        ts: t,
        link: LinkType::ETHERNET,
        wire_len: u32::try_from(frame.len()).expect("test frames are small"),
        data: frame,
    });
}

/// Feeds the packets in order, ends the input, returns every record.
fn run_with(cfg: EngineConfig, pkts: &[(f64, Vec<u8>)]) -> Vec<ConnRecord> {
    let mut engine = Engine::new(cfg);
    for (t, f) in pkts {
        feed(&mut engine, *t, f);
    }
    engine.finish();
    engine.drain_records().collect()
}

fn run(pkts: &[(f64, Vec<u8>)]) -> Vec<ConnRecord> {
    run_with(cfg(), pkts)
}

/// A one-line summary of a record for assertion messages.
fn brief(r: &ConnRecord) -> String {
    format!(
        "{} {}:{} -> {}:{} ts={} state={} history={:?} duration={:?} bytes={:?}/{:?} \
         pkts={}/{} ip_bytes={}/{} missed={}",
        r.proto.as_str(),
        r.orig_h,
        r.orig_p,
        r.resp_h,
        r.resp_p,
        r.ts,
        r.conn_state.as_str(),
        r.history.as_str(),
        r.duration,
        r.orig_bytes,
        r.resp_bytes,
        r.orig_pkts,
        r.resp_pkts,
        r.orig_ip_bytes,
        r.resp_ip_bytes,
        r.missed_bytes
    )
}

fn briefs(recs: &[ConnRecord]) -> String {
    recs.iter().map(|r| format!("\n  {}", brief(r))).collect()
}

/// The single record a trace produced.
fn only(recs: Vec<ConnRecord>) -> ConnRecord {
    assert_eq!(
        recs.len(),
        1,
        "expected exactly one connection record, got:{}",
        briefs(&recs)
    );
    recs.into_iter().next().expect("length checked above")
}

/// Checks state and history, printing the whole record on failure.
#[track_caller]
fn assert_state(r: &ConnRecord, state: ConnState, history: &str) {
    assert_eq!(
        (r.conn_state, r.history.as_str()),
        (state, history),
        "conn_state/history mismatch in {}",
        brief(r)
    );
}

#[track_caller]
fn assert_duration(r: &ConnRecord, expected: Option<f64>) {
    match (r.duration, expected) {
        (None, None) => {}
        (Some(d), Some(e)) if (d - e).abs() < 1e-6 => {}
        (got, want) => panic!("duration {got:?}, expected {want:?} in {}", brief(r)),
    }
}

#[track_caller]
fn assert_bytes(r: &ConnRecord, orig: Option<u64>, resp: Option<u64>) {
    assert_eq!(
        (r.orig_bytes, r.resp_bytes),
        (orig, resp),
        "orig_bytes/resp_bytes mismatch in {}",
        brief(r)
    );
}

#[track_caller]
fn assert_pkts(r: &ConnRecord, orig: u64, resp: u64) {
    assert_eq!(
        (r.orig_pkts, r.resp_pkts),
        (orig, resp),
        "orig_pkts/resp_pkts mismatch in {}",
        brief(r)
    );
}

#[track_caller]
fn assert_endpoints(r: &ConnRecord, orig: (IpAddr, u16), resp: (IpAddr, u16)) {
    assert_eq!(
        ((r.orig_h, r.orig_p), (r.resp_h, r.resp_p)),
        (orig, resp),
        "originator/responder mismatch in {}",
        brief(r)
    );
}

// ---------------------------------------------------------------------------
// conn_state: every TCP state (README "conn_state"; `conn_state()` in
// scripts/base/protocols/conn/main.zeek)

/// S0: a SYN with no reply. A single packet also leaves duration and the
/// byte counts unset (README field table: `duration` is `-` when 0, and
/// `set_conn()` in conn/main.zeek only sets the sizes with a duration).
#[test]
fn s0_syn_without_reply() {
    let f = Flow::v4(PLAIN_PORT);
    let r = only(run(&[(T0, f.c("S", CISN, 0, 0))]));
    assert_state(&r, ConnState::S0, "S");
    assert_eq!(r.proto, Proto::Tcp);
    assert_eq!(r.ip_proto, Some(6));
    assert_eq!(r.ts, T0);
    assert_endpoints(&r, (f.client, CLIENT_PORT), (f.server, PLAIN_PORT));
    assert_duration(&r, None);
    assert_bytes(&r, None, None);
    assert_pkts(&r, 1, 0);
    assert_eq!(r.orig_ip_bytes, 40, "IP total length of a bare SYN");
}

/// S1: handshake complete, nobody closed (README "conn_state": `S1` = both
/// established).
#[test]
fn s1_handshake_without_close() {
    let f = Flow::v4(PLAIN_PORT);
    let r = only(run(&f.handshake()));
    assert_state(&r, ConnState::S1, "ShA");
    assert_duration(&r, Some(0.2));
    assert_bytes(&r, Some(0), Some(0));
    assert_pkts(&r, 2, 1);
}

/// SF: both sides closed. Sizes come from sequence numbers, and the
/// duration stops advancing once both sides have closed, so the trailing
/// ACK is not included (README field table, `duration`; the
/// `SetLastTime` guard in `TCPSessionAdapter::Process`).
#[test]
fn sf_clean_close_and_duration_stops_at_close() {
    let f = Flow::v4(PLAIN_PORT);
    let mut p = f.handshake();
    p.push((T0 + 0.3, f.c("PA", CISN + 1, SISN + 1, 10)));
    p.push((T0 + 0.4, f.s("PA", SISN + 1, CISN + 11, 20)));
    p.push((T0 + 0.5, f.c("FA", CISN + 11, SISN + 21, 0)));
    p.push((T0 + 0.6, f.s("FA", SISN + 21, CISN + 12, 0)));
    p.push((T0 + 0.9, f.c("A", CISN + 12, SISN + 22, 0)));
    let r = only(run(&p));
    assert_state(&r, ConnState::SF, "ShADdFf");
    assert_bytes(&r, Some(10), Some(20));
    assert_duration(&r, Some(0.6));
    assert_pkts(&r, 5, 3);
    assert_eq!(r.missed_bytes, 0);
}

/// REJ: the responder answers the SYN with RST-ACK (README "conn_state":
/// responder RST while the originator is in SYN_SENT).
#[test]
fn rej_syn_answered_by_rst_ack() {
    let f = Flow::v4(PLAIN_PORT);
    let r = only(run(&[
        (T0, f.c("S", CISN, 0, 0)),
        (T0 + 0.1, f.s("RA", 0, CISN + 1, 0)),
    ]));
    assert_state(&r, ConnState::REJ, "Sr");
    assert_bytes(&r, Some(0), Some(0));
    assert_pkts(&r, 1, 1);
}

/// S2: established, the originator sent a FIN, the responder never did
/// (`conn_state()`: `os == TCP_CLOSED` and the responder not inactive).
/// Zeek's suite has no S2 row; this is its only check.
#[test]
fn s2_originator_fin_responder_never_fins() {
    let f = Flow::v4(PLAIN_PORT);
    let mut p = f.handshake();
    p.push((T0 + 0.3, f.c("FA", CISN + 1, SISN + 1, 0)));
    p.push((T0 + 0.4, f.s("A", SISN + 1, CISN + 2, 0)));
    let r = only(run(&p));
    assert_state(&r, ConnState::S2, "ShAFa");
    assert_bytes(&r, Some(0), Some(0));
    assert_duration(&r, Some(0.4));
}

/// S3: established, only the responder sent a FIN (`conn_state()`:
/// `rs == TCP_CLOSED`, originator not inactive).
#[test]
fn s3_responder_fin_only() {
    let f = Flow::v4(PLAIN_PORT);
    let mut p = f.handshake();
    p.push((T0 + 0.3, f.s("FA", SISN + 1, CISN + 1, 0)));
    let r = only(run(&p));
    assert_state(&r, ConnState::S3, "ShAf");
}

/// RSTO: established, then the originator resets (`conn_state()`).
#[test]
fn rsto_originator_resets_established_connection() {
    let f = Flow::v4(PLAIN_PORT);
    let mut p = f.handshake();
    p.push((T0 + 0.3, f.c("R", CISN + 1, 0, 0)));
    let r = only(run(&p));
    assert_state(&r, ConnState::RSTO, "ShAR");
}

/// RSTR: established, then the responder resets (`conn_state()`).
#[test]
fn rstr_responder_resets_established_connection() {
    let f = Flow::v4(PLAIN_PORT);
    let mut p = f.handshake();
    p.push((T0 + 0.3, f.s("R", SISN + 1, 0, 0)));
    let r = only(run(&p));
    assert_state(&r, ConnState::RSTR, "ShAr");
}

/// REJ also covers "both sides reset and neither sent a byte"
/// (`conn_state()`: `os == TCP_RESET && c$orig$size == 0 &&
/// c$resp$size == 0`).
#[test]
fn rej_when_both_sides_reset_without_data() {
    let f = Flow::v4(PLAIN_PORT);
    let mut p = f.handshake();
    p.push((T0 + 0.3, f.c("R", CISN + 1, 0, 0)));
    p.push((T0 + 0.4, f.s("R", SISN + 1, 0, 0)));
    let r = only(run(&p));
    assert_state(&r, ConnState::REJ, "ShARr");
    assert_bytes(&r, Some(0), Some(0));

    // With data sent first, the same double reset is RSTR.
    let mut p = f.handshake();
    p.push((T0 + 0.25, f.c("PA", CISN + 1, SISN + 1, 10)));
    p.push((T0 + 0.3, f.c("R", CISN + 11, 0, 0)));
    p.push((T0 + 0.4, f.s("R", SISN + 1, 0, 0)));
    let r = only(run(&p));
    assert_state(&r, ConnState::RSTR, "ShADRr");
}

/// `conn_state()` looks only at endpoint states: a lone RST leaves the
/// originator RESET and the responder inactive, and `R` alone does not
/// match the RSTOS0 pattern, so it is `OTH`.
#[test]
fn lone_rst_is_oth() {
    let f = Flow::v4(PLAIN_PORT);
    let r = only(run(&[(T0, f.c("R", CISN, 0, 0))]));
    assert_state(&r, ConnState::OTH, "R");
}

/// A lone FIN closes the originator while the responder is inactive,
/// which `conn_state()` calls `SH` even without a SYN.
#[test]
fn lone_fin_is_sh() {
    let f = Flow::v4(PLAIN_PORT);
    let r = only(run(&[(T0, f.c("FA", CISN, SISN, 0))]));
    assert_state(&r, ConnState::SH, "F");
}

/// RSTOS0: the originator sends a SYN then a RST, the responder stays
/// silent, and the history matches `^?S[^HAFGIQ]*R` (`conn_state()`).
/// A half-open connection aborted like this reports 0 bytes (README,
/// sizes; `TCP_Endpoint::Size`). Zeek's suite has no RSTOS0 row.
#[test]
fn rstos0_syn_then_originator_rst() {
    let f = Flow::v4(PLAIN_PORT);
    let r = only(run(&[
        (T0, f.c("S", CISN, 0, 0)),
        (T0 + 0.5, f.c("R", CISN + 1, 0, 0)),
    ]));
    assert_state(&r, ConnState::RSTOS0, "SR");
    assert_bytes(&r, Some(0), Some(0));
    assert_pkts(&r, 2, 0);
}

/// An originator reset with a silent responder whose history does not
/// match the RSTOS0 pattern (an `A` between `S` and `R`) is `OTH`
/// (`conn_state()`, the `return "OTH"` inside the `r_inactive` branch).
#[test]
fn originator_reset_with_ack_in_history_is_oth_not_rstos0() {
    let f = Flow::v4(PLAIN_PORT);
    let r = only(run(&[
        (T0, f.c("S", CISN, 0, 0)),
        (T0 + 0.1, f.c("A", CISN + 1, SISN + 1, 0)),
        (T0 + 0.2, f.c("R", CISN + 1, 0, 0)),
    ]));
    assert_state(&r, ConnState::OTH, "SAR");
}

/// RSTRH: the responder sent a SYN-ACK then a RST and no SYN was seen.
/// The SYN-ACK comes from port 80, a likely server port, so the
/// connection is flipped at creation (README "Who is the originator",
/// rule 1) and the originator stays inactive (`conn_state()`).
#[test]
fn rstrh_synack_then_rst_without_syn() {
    let f = Flow::v4(80);
    let r = only(run(&[
        (T0, f.s("SA", SISN, CISN + 1, 0)),
        (T0 + 0.1, f.s("R", SISN + 1, 0, 0)),
    ]));
    assert_state(&r, ConnState::RSTRH, "^hr");
    assert_endpoints(&r, (f.client, CLIENT_PORT), (f.server, 80));
    assert_pkts(&r, 0, 2);
}

/// SH: the originator sent a SYN then a FIN, no reply (`conn_state()`:
/// originator closed, responder inactive).
#[test]
fn sh_syn_then_fin_without_reply() {
    let f = Flow::v4(PLAIN_PORT);
    let r = only(run(&[
        (T0, f.c("S", CISN, 0, 0)),
        (T0 + 0.1, f.c("F", CISN + 1, 0, 0)),
    ]));
    assert_state(&r, ConnState::SH, "SF");
}

/// SHR: the responder sent a SYN-ACK then a FIN, no SYN seen (flipped at
/// creation because the SYN-ACK comes from likely server port 80).
#[test]
fn shr_synack_then_fin_without_syn() {
    let f = Flow::v4(80);
    let r = only(run(&[
        (T0, f.s("SA", SISN, CISN + 1, 0)),
        (T0 + 0.1, f.s("FA", SISN + 1, CISN + 1, 0)),
    ]));
    assert_state(&r, ConnState::SHR, "^hf");
    assert_endpoints(&r, (f.client, CLIENT_PORT), (f.server, 80));
}

/// OTH: midstream traffic with no SYN. Sizes still come from sequence
/// numbers (numbered as though a SYN had been seen, `init_endpoint` in
/// TCPSessionAdapter.cc) and partial connections report no gaps.
#[test]
fn oth_midstream_without_syn() {
    let f = Flow::v4(PLAIN_PORT);
    let r = only(run(&[
        (T0, f.c("PA", 70000, 90000, 10)),
        (T0 + 0.1, f.s("PA", 90000, 70010, 20)),
    ]));
    assert_state(&r, ConnState::OTH, "Dd");
    assert_bytes(&r, Some(10), Some(20));
    assert_eq!(r.missed_bytes, 0);
}

// ---------------------------------------------------------------------------
// History letters (README "Gotchas" / History letters; `update_history()`
// in TCPSessionAdapter.cc, `TCP_Endpoint::CheckHistory`)

/// `A` and `D` are recorded once per direction; the case says who sent it.
#[test]
fn history_ack_and_data_once_per_direction() {
    let f = Flow::v4(PLAIN_PORT);
    let mut p = f.handshake();
    p.push((T0 + 0.3, f.c("PA", CISN + 1, SISN + 1, 10)));
    p.push((T0 + 0.31, f.c("PA", CISN + 11, SISN + 1, 10)));
    p.push((T0 + 0.4, f.s("PA", SISN + 1, CISN + 21, 5)));
    p.push((T0 + 0.41, f.s("PA", SISN + 6, CISN + 21, 5)));
    p.push((T0 + 0.5, f.c("A", CISN + 21, SISN + 11, 0)));
    p.push((T0 + 0.6, f.s("A", SISN + 11, CISN + 21, 0)));
    p.push((T0 + 0.7, f.s("A", SISN + 11, CISN + 21, 0)));
    let r = only(run(&p));
    assert_state(&r, ConnState::S1, "ShADda");
    assert_bytes(&r, Some(20), Some(10));
}

/// A retransmitted SYN with the same sequence number adds no second `S`
/// (S/H/F/R repeat only when the sequence number differs), and is not a
/// new connection (`TCPSessionAdapter::IsReuse`: same ISN).
#[test]
fn history_syn_retransmission_with_same_isn_is_one_s() {
    let f = Flow::v4(PLAIN_PORT);
    let r = only(run(&[
        (T0, f.c("S", CISN, 0, 0)),
        (T0 + 1.0, f.c("S", CISN, 0, 0)),
        (T0 + 3.0, f.c("S", CISN, 0, 0)),
    ]));
    assert_state(&r, ConnState::S0, "S");
    assert_pkts(&r, 3, 0);
    assert_duration(&r, Some(3.0));
}

/// `R` repeats only when the RST's sequence number differs from the
/// previous RST's.
#[test]
fn history_rst_repeats_only_with_new_seq() {
    let f = Flow::v4(PLAIN_PORT);
    let mut p = f.handshake();
    p.push((T0 + 0.3, f.c("R", CISN + 1, 0, 0)));
    p.push((T0 + 0.31, f.c("R", CISN + 1, 0, 0)));
    p.push((T0 + 0.32, f.c("R", CISN + 11, 0, 0)));
    let r = only(run(&p));
    assert_state(&r, ConnState::RSTO, "ShARR");
}

/// `F` repeats only when the FIN's end (sequence number plus payload
/// length) differs from the previous FIN's.
#[test]
fn history_fin_repeats_only_with_new_end_seq() {
    let f = Flow::v4(PLAIN_PORT);
    let mut p = f.handshake();
    p.push((T0 + 0.3, f.c("FA", CISN + 1, SISN + 1, 0)));
    p.push((T0 + 0.31, f.c("FA", CISN + 1, SISN + 1, 0)));
    p.push((T0 + 0.32, f.c("FA", CISN + 6, SISN + 1, 0)));
    let r = only(run(&p));
    assert_state(&r, ConnState::S2, "ShAFF");
}

/// `T`/`t` are logarithmic: added at the 1st, 10th, 100th retransmission
/// (README "Gotchas": C, G, T, W; `Session::ScaledHistoryEntry`).
#[test]
fn history_retransmissions_are_logarithmic() {
    for (n, orig_hist, resp_hist) in [
        (1, "ShADT", "ShAdt"),
        (9, "ShADT", "ShAdt"),
        (10, "ShADTT", "ShAdtt"),
        (99, "ShADTT", "ShAdtt"),
        (100, "ShADTTT", "ShAdttt"),
    ] {
        let f = Flow::v4(PLAIN_PORT);
        let mut p = f.handshake();
        for i in 0..=n {
            p.push((
                T0 + 0.3 + 0.001 * f64::from(i),
                f.c("PA", CISN + 1, SISN + 1, 10),
            ));
        }
        let r = only(run(&p));
        assert_state(&r, ConnState::S1, orig_hist);
        assert_bytes(&r, Some(10), Some(0));

        let mut p = f.handshake();
        for i in 0..=n {
            p.push((
                T0 + 0.3 + 0.001 * f64::from(i),
                f.s("PA", SISN + 1, CISN + 1, 10),
            ));
        }
        let r = only(run(&p));
        assert_state(&r, ConnState::S1, resp_hist);
    }
}

/// A segment that fills a hole below the highest sequence number seen is a
/// retransmission too (README "Retransmission `T`": any payload whose end
/// does not advance the highest sequence number; `update_last_seq()`).
#[test]
fn history_out_of_order_fill_counts_as_retransmission() {
    let f = Flow::v4(PLAIN_PORT);
    let mut p = f.handshake();
    p.push((T0 + 0.3, f.c("PA", CISN + 11, SISN + 1, 10)));
    p.push((T0 + 0.31, f.c("PA", CISN + 1, SISN + 1, 10)));
    p.push((T0 + 0.4, f.s("A", SISN + 1, CISN + 21, 0)));
    let r = only(run(&p));
    assert_state(&r, ConnState::S1, "ShADTa");
    assert_bytes(&r, Some(20), Some(0));
    assert_eq!(r.missed_bytes, 0, "the hole was filled before the ACK");
}

/// `W`/`w`: zero-window advertisements, logarithmic (`update_window()` in
/// TCPSessionAdapter.cc, `TCP_Endpoint::ZeroWindow`).
#[test]
fn history_zero_window_is_logarithmic() {
    let f = Flow::v4(PLAIN_PORT);
    let mut p = vec![
        (T0, f.c("S", CISN, 0, 0)),
        (T0 + 0.1, f.s("SA", SISN, CISN + 1, 0)),
        (T0 + 0.2, f.cw("A", CISN + 1, SISN + 1, 0, 0)),
    ];
    let r = only(run(&p));
    assert_state(&r, ConnState::S1, "ShAW");

    for i in 1..10 {
        p.push((
            T0 + 0.2 + 0.01 * f64::from(i),
            f.cw("A", CISN + 1, SISN + 1, 0, 0),
        ));
    }
    let r = only(run(&p));
    assert_state(&r, ConnState::S1, "ShAWW");

    let mut p = f.handshake();
    p.push((T0 + 0.3, f.sw("A", SISN + 1, CISN + 1, 0, 0)));
    let r = only(run(&p));
    assert_state(&r, ConnState::S1, "ShAaw");
}

/// Zero windows are not recorded with a RST, or after the peer has sent a
/// FIN (`update_window()` in TCPSessionAdapter.cc).
#[test]
fn zero_window_ignored_with_rst_or_after_peer_fin() {
    let f = Flow::v4(PLAIN_PORT);
    let mut p = f.handshake();
    p.push((T0 + 0.3, f.s("FA", SISN + 1, CISN + 1, 0)));
    p.push((T0 + 0.4, f.cw("A", CISN + 1, SISN + 2, 0, 0)));
    let r = only(run(&p));
    assert_state(&r, ConnState::S3, "ShAf");

    let mut p = f.handshake();
    p.push((T0 + 0.3, f.cw("R", CISN + 1, 0, 0, 0)));
    let r = only(run(&p));
    assert_state(&r, ConnState::RSTO, "ShAR");
}

/// `C`: a bad TCP checksum still creates the connection and marks the
/// history, but the packet is not analysed or counted (README "Checksums";
/// `core.tcp.bad-checksum-syn`: 0 packets, `C`, `OTH`).
#[test]
fn history_bad_checksum_is_c_and_packet_not_counted() {
    let f = Flow::v4(PLAIN_PORT);
    let mut syn = f.c("S", CISN, 0, 0);
    syn[TCP4_CHECKSUM_AT] ^= 0xff;
    let r = only(run(&[(T0, syn.clone())]));
    assert_state(&r, ConnState::OTH, "C");
    assert_pkts(&r, 0, 0);

    // With -C the same packet is an ordinary SYN.
    let r = only(run_with(cfg_no_checksums(), &[(T0, syn)]));
    assert_state(&r, ConnState::S0, "S");
    assert_pkts(&r, 1, 0);
}

/// `c` is the responder's bad checksum; it is logarithmic like `T`.
#[test]
fn history_bad_checksum_is_logarithmic_and_directional() {
    let f = Flow::v4(PLAIN_PORT);
    let mut synack = f.s("SA", SISN, CISN + 1, 0);
    synack[TCP4_CHECKSUM_AT] ^= 0xff;
    let r = only(run(&[(T0, f.c("S", CISN, 0, 0)), (T0 + 0.1, synack)]));
    assert_state(&r, ConnState::S0, "Sc");
    assert_pkts(&r, 1, 0);

    let mut p = f.handshake();
    for i in 0..10 {
        let mut d = f.c("PA", CISN + 1, SISN + 1, 10);
        d[TCP4_CHECKSUM_AT] ^= 0xff;
        p.push((T0 + 0.3 + 0.01 * f64::from(i), d));
    }
    let r = only(run(&p));
    assert_state(&r, ConnState::S1, "ShACC");
    assert_pkts(&r, 2, 1);
    assert_bytes(&r, Some(0), Some(0));
}

/// `I`: a FIN+RST packet yields only `I`, never `F` or `R` (README: a
/// multi-flag packet yields only I/Q).
#[test]
fn history_fin_rst_is_i() {
    let f = Flow::v4(PLAIN_PORT);
    let mut p = f.handshake();
    p.push((T0 + 0.3, f.c("FRA", CISN + 1, SISN + 1, 0)));
    let r = only(run(&p));
    assert_state(&r, ConnState::RSTO, "ShAI");
}

/// `Q`: a SYN+FIN packet yields only `Q` (README history letters).
#[test]
fn history_syn_fin_is_q() {
    let f = Flow::v4(PLAIN_PORT);
    let r = only(run(&[(T0, f.c("SF", CISN, 0, 0))]));
    assert_state(&r, ConnState::SH, "Q");
}

/// A connection that began with a SYN-ACK (history exactly `H`) is flipped
/// when the first pure ACK arrives, and its history becomes `^h` (README
/// "Who is the originator", rule 2; `TCP_Endpoint::CheckHistory`).
/// The SYN-ACK sender stays in SYN_ACK_SENT (it was the originator when it
/// sent it), so the ACK's sender becomes PARTIAL, not ESTABLISHED
/// (`UpdateInactiveState` wants an ESTABLISHED peer): `OTH`.
#[test]
fn synack_first_connection_flips_on_first_ack() {
    let f = Flow::v4(PLAIN_PORT);
    let r = only(run(&[
        (T0, f.s("SA", SISN, CISN + 1, 0)),
        (T0 + 0.1, f.c("A", CISN + 1, SISN + 1, 0)),
    ]));
    assert_state(&r, ConnState::OTH, "^hA");
    assert_endpoints(&r, (f.client, CLIENT_PORT), (f.server, PLAIN_PORT));
    assert_pkts(&r, 1, 1);
    assert_eq!(r.ts, T0, "a flip does not change the start time");
}

/// The flip of a SYN-ACK-first connection also happens when the SYN-ACK
/// sender itself sends data: `CheckHistory` flips on `A` or `D` from either
/// side, and the data letter is then the responder's `d`.
#[test]
fn synack_first_connection_flips_on_data_from_either_side() {
    let f = Flow::v4(PLAIN_PORT);
    let r = only(run(&[
        (T0, f.s("SA", SISN, CISN + 1, 0)),
        (T0 + 0.1, f.s("PA", SISN + 1, CISN + 1, 10)),
    ]));
    assert_state(&r, ConnState::OTH, "^hd");
    assert_endpoints(&r, (f.client, CLIENT_PORT), (f.server, PLAIN_PORT));
    assert_pkts(&r, 0, 2);
}

/// Without any later packet, a SYN-ACK-only connection is not flipped: the
/// SYN-ACK sender stays the originator (README: `wikipedia.pcap`'s
/// SYN-ACK-only flow stays `H` in bare mode).
#[test]
fn synack_only_connection_is_not_flipped() {
    let f = Flow::v4(PLAIN_PORT);
    let r = only(run(&[(T0, f.s("SA", SISN, CISN + 1, 0))]));
    assert_state(&r, ConnState::OTH, "H");
    assert_endpoints(&r, (f.server, PLAIN_PORT), (f.client, CLIENT_PORT));
}

/// A TCP connection that does not start with a pure SYN, from a likely
/// server port to a port that is not, is flipped at creation (README "Who
/// is the originator", rule 1; `TCPAnalyzer::WantConnection`).
#[test]
fn tcp_flipped_at_creation_from_likely_server_port() {
    let f = Flow::v4(80);
    let r = only(run(&[(T0, f.s("PA", SISN + 1, CISN + 1, 20))]));
    assert_state(&r, ConnState::OTH, "^d");
    assert_endpoints(&r, (f.client, CLIENT_PORT), (f.server, 80));
    assert_pkts(&r, 0, 1);

    // A pure SYN is never flipped, whatever its ports.
    let r = only(run(&[(T0, f.s("S", SISN, 0, 0))]));
    assert_state(&r, ConnState::S0, "S");
    assert_endpoints(&r, (f.server, 80), (f.client, CLIENT_PORT));
}

/// When both ports are likely server ports, a TCP connection that does not
/// start with a pure SYN flips only if its first packet is not a SYN-ACK and
/// its source port is the lower one (README "Who is the originator",
/// rule 1; `TCPAnalyzer::WantConnection`).
#[test]
fn tcp_both_likely_server_ports_flip_only_from_lower_port() {
    let mut c = cfg();
    c.likely_server_ports =
        PortSet::from_list("80/tcp,443/tcp").expect("the test's port list parses");
    let (a, b): (IpAddr, IpAddr) = (CLIENT.into(), SERVER.into());

    // Data from 80 to 443: 80 < 443, so flipped.
    let d = tcp_frame(a, 80, b, 443, "PA", 7, 9, 1000, b"hello");
    let r = only(run_with(c.clone(), &[(T0, d)]));
    assert_endpoints(&r, (b, 443), (a, 80));
    assert_state(&r, ConnState::OTH, "^d");

    // Data from 443 to 80: not flipped.
    let d = tcp_frame(a, 443, b, 80, "PA", 7, 9, 1000, b"hello");
    let r = only(run_with(c.clone(), &[(T0, d)]));
    assert_endpoints(&r, (a, 443), (b, 80));
    assert_state(&r, ConnState::OTH, "D");

    // A SYN-ACK from 80 to 443: not flipped.
    let d = tcp_frame(a, 80, b, 443, "SA", 7, 9, 1000, b"");
    let r = only(run_with(c, &[(T0, d)]));
    assert_endpoints(&r, (a, 80), (b, 443));
    assert_state(&r, ConnState::OTH, "H");
}

/// A SYN that arrives after the SYN-ACK it answers (matching sequence
/// numbers, e.g. two capture interfaces) flips the connection and
/// establishes it; letters already written keep their case (README "Who is
/// the originator", rule 3; `UpdateInactiveState` and `IsReuse`).
#[test]
fn syn_after_matching_synack_flips_and_establishes() {
    let f = Flow::v4(PLAIN_PORT);
    let r = only(run(&[
        (T0, f.s("SA", SISN, CISN + 1, 0)),
        (T0 + 0.001, f.c("S", CISN, 0, 0)),
    ]));
    assert_state(&r, ConnState::S1, "Hs^");
    assert_endpoints(&r, (f.client, CLIENT_PORT), (f.server, PLAIN_PORT));
    assert_pkts(&r, 1, 1);
}

/// A UDP connection whose source port is a likely server port and whose
/// destination port is not is flipped at creation (README rule 1;
/// `UDPAnalyzer::WantConnection`); only the responder was seen: `SHR`.
#[test]
fn udp_flipped_at_creation_from_likely_server_port() {
    let r = only(run(&[(
        T0,
        udp_frame(SERVER.into(), 53, CLIENT.into(), 40000, b"answer"),
    )]));
    assert_state(&r, ConnState::SHR, "^d");
    assert_endpoints(&r, (CLIENT.into(), 40000), (SERVER.into(), 53));
    assert_eq!(r.proto, Proto::Udp);
    assert_eq!(r.ip_proto, Some(17));

    // Both ports likely server ports (53 and 67): no flip.
    let r = only(run(&[(
        T0,
        udp_frame(SERVER.into(), 53, CLIENT.into(), 67, b"x"),
    )]));
    assert_state(&r, ConnState::S0, "D");
    assert_endpoints(&r, (SERVER.into(), 53), (CLIENT.into(), 67));
}

/// No flip when the responder would be 255.255.255.255 (README rule 1,
/// `core.udp-broadcast-no-flip`).
#[test]
fn udp_not_flipped_towards_broadcast() {
    let bcast = Ipv4Addr::BROADCAST;
    let r = only(run(&[(
        T0,
        udp_frame(SERVER.into(), 67, bcast.into(), 68, b"offer"),
    )]));
    assert_state(&r, ConnState::S0, "D");
    assert_endpoints(&r, (SERVER.into(), 67), (bcast.into(), 68));
}

// ---------------------------------------------------------------------------
// Sizes, gaps and sequence space (README "orig_bytes / resp_bytes for TCP",
// "missed_bytes and g/G"; `TCP_Endpoint::Size`, `TCP_Reassembler::Gap`)

/// Data the peer acknowledged but the capture never showed counts in
/// orig_bytes, and the acknowledged hole is a content gap (`G`,
/// missed_bytes).
#[test]
fn sizes_include_bytes_acked_but_never_captured() {
    let f = Flow::v4(PLAIN_PORT);
    let mut p = f.handshake();
    p.push((T0 + 0.3, f.s("A", SISN + 1, CISN + 101, 0)));
    let r = only(run(&p));
    assert_state(&r, ConnState::S1, "ShAaG");
    assert_bytes(&r, Some(100), Some(0));
    assert_eq!(r.missed_bytes, 100);
}

/// A hole between two captured segments, acknowledged by the peer, is a
/// content gap of exactly the hole's size (`G` for the originator's data).
#[test]
fn gap_between_segments_acked_by_peer_is_missed_bytes() {
    let f = Flow::v4(PLAIN_PORT);
    let mut p = f.handshake();
    p.push((T0 + 0.3, f.c("PA", CISN + 1, SISN + 1, 10)));
    p.push((T0 + 0.31, f.c("PA", CISN + 51, SISN + 1, 10)));
    p.push((T0 + 0.4, f.s("A", SISN + 1, CISN + 61, 0)));
    let r = only(run(&p));
    assert_state(&r, ConnState::S1, "ShADaG");
    assert_bytes(&r, Some(60), Some(0));
    assert_eq!(r.missed_bytes, 40);
}

/// The responder's gap is `g`.
#[test]
fn responder_gap_is_lowercase_g() {
    let f = Flow::v4(PLAIN_PORT);
    let mut p = f.handshake();
    p.push((T0 + 0.3, f.s("PA", SISN + 1, CISN + 1, 10)));
    p.push((T0 + 0.31, f.s("PA", SISN + 21, CISN + 1, 10)));
    p.push((T0 + 0.4, f.c("A", CISN + 1, SISN + 31, 0)));
    let r = only(run(&p));
    assert_state(&r, ConnState::S1, "ShAdg");
    assert_bytes(&r, Some(0), Some(30));
    assert_eq!(r.missed_bytes, 10);
}

/// Gaps are only reported while both endpoints are established: a
/// midstream (partial) connection reports none unless
/// `report_gaps_for_partial` (README "missed_bytes and g/G").
#[test]
fn gaps_in_partial_connections_are_not_reported_by_default() {
    let f = Flow::v4(PLAIN_PORT);
    let p = vec![
        (T0, f.c("PA", 70000, 90000, 10)),
        (T0 + 0.01, f.c("PA", 70050, 90000, 10)),
        (T0 + 0.1, f.s("PA", 90000, 70060, 20)),
    ];
    let r = only(run(&p));
    assert_state(&r, ConnState::OTH, "Dd");
    assert_eq!(r.missed_bytes, 0);
    assert_bytes(&r, Some(60), Some(20));

    let mut c = cfg();
    c.set("report_gaps_for_partial=T")
        .expect("report_gaps_for_partial is a known setting");
    let r = only(run_with(c, &p));
    assert_eq!(
        r.missed_bytes, 40,
        "gap reported with report_gaps_for_partial"
    );
    assert_state(&r, ConnState::OTH, "Dd");
}

/// Sequence numbers that wrap past 2^32 are tracked in 64-bit space:
/// sizes stay exact and nothing looks like a retransmission.
#[test]
fn sizes_across_sequence_number_wrap() {
    let f = Flow::v4(PLAIN_PORT);
    let isn: u32 = 0xFFFF_FF00;
    let p = vec![
        (T0, f.c("S", isn, 0, 0)),
        (T0 + 0.1, f.s("SA", SISN, isn.wrapping_add(1), 0)),
        (T0 + 0.2, f.c("A", isn.wrapping_add(1), SISN + 1, 0)),
        (T0 + 0.3, f.c("PA", isn.wrapping_add(1), SISN + 1, 200)),
        (T0 + 0.31, f.c("PA", isn.wrapping_add(201), SISN + 1, 200)),
        (T0 + 0.4, f.s("A", SISN + 1, isn.wrapping_add(401), 0)),
        (T0 + 0.5, f.c("FA", isn.wrapping_add(401), SISN + 1, 0)),
        (T0 + 0.6, f.s("FA", SISN + 1, isn.wrapping_add(402), 0)),
        (T0 + 0.7, f.c("A", isn.wrapping_add(402), SISN + 2, 0)),
    ];
    let r = only(run(&p));
    assert_state(&r, ConnState::SF, "ShADaFf");
    assert_bytes(&r, Some(400), Some(0));
    assert_eq!(r.missed_bytes, 0);
}

/// More than 4 GiB of sequence space: the sender's highest sequence number
/// is tracked with a wrap counter, so the size stays exact past 2^32
/// (README sizes: "64-bit sequence space with wrap tracking";
/// `TCP_Endpoint::UpdateLastSeq`). One-byte segments 1 GiB apart stand in
/// for the data between them.
///
/// Acknowledgements alone would not do: while no wrap has been seen, Zeek's
/// `get_relative_seq` treats an ack more than 2^31 past the ISN as an
/// underflow and ignores it, so an ack-only trace stops at 1 GiB (the
/// engine does the same).
#[test]
fn sizes_beyond_4_gib_use_wrap_count() {
    let f = Flow::v4(PLAIN_PORT);
    let mut p = f.handshake();
    const STEP: u32 = 1 << 30;
    for k in 0..=5u32 {
        let seq = (CISN + 1).wrapping_add(k.wrapping_mul(STEP));
        p.push((T0 + 0.3 + f64::from(k), f.c("PA", seq, SISN + 1, 1)));
    }
    let r = only(run(&p));
    assert_state(&r, ConnState::S1, "ShAD");
    assert_bytes(&r, Some((5 << 30) + 1), Some(0));

    // Acks only: the first ack past 2^31 is an "underflow" and is ignored.
    let mut p = f.handshake();
    for k in 1..=5u32 {
        let ack = (CISN + 1).wrapping_add(k.wrapping_mul(STEP));
        p.push((T0 + 0.2 + f64::from(k), f.s("A", SISN + 1, ack, 0)));
    }
    let r = only(run(&p));
    assert_bytes(&r, Some(1 << 30), Some(0));
}

/// A segment cut short by the snaplen still advances the sequence
/// numbers, so its bytes count, but its payload is not reassembled
/// (README "Truncation"; `TCP_Endpoint::DataSent` skips it when
/// `caplen < len`), so the peer's ACK of it reveals a content gap. Its
/// checksum cannot be verified and is not.
#[test]
fn snaplen_truncated_segment_still_counts_bytes() {
    let f = Flow::v4(PLAIN_PORT);
    let mut engine = Engine::new(cfg());
    for (t, fr) in f.handshake() {
        feed(&mut engine, t, &fr);
    }
    // The checksum is wrong too, but cannot be verified on a truncated
    // capture (README "Checksums"), so it must not matter.
    let mut full = f.c("PA", CISN + 1, SISN + 1, 500);
    full[TCP4_CHECKSUM_AT] ^= 0xff;
    let snap = &full[..14 + 20 + 20 + 16];
    engine.process_packet(&Packet {
        ts: T0 + 0.3,
        link: LinkType::ETHERNET,
        wire_len: u32::try_from(full.len()).expect("small frame"),
        data: snap,
    });
    feed(&mut engine, T0 + 0.4, &f.s("A", SISN + 1, CISN + 501, 0));
    engine.finish();
    let r = only(engine.drain_records().collect());
    assert_bytes(&r, Some(500), Some(0));
    assert_eq!(
        r.orig_ip_bytes,
        40 + 40 + 540,
        "IP bytes from the IP header"
    );
    assert_eq!(r.missed_bytes, 500, "the uncaptured payload is a gap");
    assert_state(&r, ConnState::S1, "ShADaG");
}

// ---------------------------------------------------------------------------
// duration and sizes presence (README field table; `set_conn()`)

/// Two packets with the same timestamp: duration 0 is logged as unset,
/// and so are orig_bytes and resp_bytes.
#[test]
fn zero_duration_leaves_duration_and_bytes_unset() {
    let f = Flow::v4(PLAIN_PORT);
    let r = only(run(&[
        (T0, f.c("S", CISN, 0, 0)),
        (T0, f.s("SA", SISN, CISN + 1, 0)),
    ]));
    assert_duration(&r, None);
    assert_bytes(&r, None, None);
    assert_pkts(&r, 1, 1);

    let r = only(run(&[
        (
            T0,
            udp_frame(CLIENT.into(), 40000, SERVER.into(), 7000, b"abc"),
        ),
        (
            T0,
            udp_frame(SERVER.into(), 7000, CLIENT.into(), 40000, b"de"),
        ),
    ]));
    assert_state(&r, ConnState::SF, "Dd");
    assert_duration(&r, None);
    assert_bytes(&r, None, None);
}

// ---------------------------------------------------------------------------
// Timeouts on packet time (README "Timeouts")

/// UDP inactivity (60 s by default) ends a connection; a later packet on
/// the same 5-tuple starts a new row with its own ts.
#[test]
fn udp_inactivity_timeout_splits_flow() {
    let a = udp_frame(CLIENT.into(), 40000, SERVER.into(), 7000, b"0123456789");
    let recs = run(&[(T0, a.clone()), (T0 + 30.0, a.clone()), (T0 + 100.0, a)]);
    assert_eq!(recs.len(), 2, "{}", briefs(&recs));
    let first = recs
        .iter()
        .find(|r| r.ts == T0)
        .expect("a row starting at the first packet");
    let second = recs
        .iter()
        .find(|r| r.ts == T0 + 100.0)
        .expect("a row starting after the timeout");
    assert_state(first, ConnState::S0, "D");
    assert_duration(first, Some(30.0));
    assert_bytes(first, Some(20), Some(0));
    assert_pkts(first, 2, 0);
    assert_state(second, ConnState::S0, "D");
    assert_duration(second, None);
    assert_pkts(second, 1, 0);
}

/// 59 s of silence is below the UDP timeout: one row.
#[test]
fn udp_gap_below_inactivity_timeout_keeps_one_row() {
    let a = udp_frame(CLIENT.into(), 40000, SERVER.into(), 7000, b"x");
    let r = only(run(&[(T0, a.clone()), (T0 + 59.0, a)]));
    assert_pkts(&r, 2, 0);
}

/// An unanswered SYN is logged once `tcp_attempt_delay` (5 s) has passed
/// on packet time, before the input ends; a retransmission of the same
/// SYN after that starts a new row (`TCPSessionAdapter::AttemptTimer`).
#[test]
fn unanswered_syn_logged_after_attempt_delay() {
    let f = Flow::v4(PLAIN_PORT);
    let mut engine = Engine::new(cfg());
    let syn = f.c("S", CISN, 0, 0);
    feed(&mut engine, T0, &syn);
    feed(&mut engine, T0 + 4.0, &syn);
    assert_eq!(engine.drain_records().count(), 0, "still within 5 s");
    // Unrelated traffic moves packet time on.
    let other = udp_frame(ROUTER.into(), 1234, SERVER.into(), 7000, b"tick");
    feed(&mut engine, T0 + 6.0, &other);
    let early: Vec<ConnRecord> = engine.drain_records().collect();
    assert_eq!(
        early.len(),
        1,
        "the attempt is logged at T0+5:{}",
        briefs(&early)
    );
    assert_state(&early[0], ConnState::S0, "S");
    assert_pkts(&early[0], 2, 0);
    assert_eq!(early[0].ts, T0);

    feed(&mut engine, T0 + 7.0, &syn);
    engine.finish();
    let rest: Vec<ConnRecord> = engine.drain_records().collect();
    let tcp: Vec<&ConnRecord> = rest.iter().filter(|r| r.proto == Proto::Tcp).collect();
    assert_eq!(tcp.len(), 1, "{}", briefs(&rest));
    assert_eq!(tcp[0].ts, T0 + 7.0, "the retransmission starts a new row");
    assert_state(tcp[0], ConnState::S0, "S");
}

/// A new SYN with a different ISN on a closed 5-tuple starts a new
/// connection (README "Timeouts"; `TCPSessionAdapter::IsReuse`).
#[test]
fn port_reuse_with_new_isn_after_close_starts_new_connection() {
    let f = Flow::v4(PLAIN_PORT);
    let mut p = f.handshake();
    p.push((T0 + 0.3, f.c("FA", CISN + 1, SISN + 1, 0)));
    p.push((T0 + 0.4, f.s("FA", SISN + 1, CISN + 2, 0)));
    p.push((T0 + 0.5, f.c("A", CISN + 2, SISN + 2, 0)));
    p.push((T0 + 1.0, f.c("S", 777_777, 0, 0)));
    let recs = run(&p);
    assert_eq!(recs.len(), 2, "{}", briefs(&recs));
    let old = recs
        .iter()
        .find(|r| r.ts == T0)
        .expect("the first connection");
    let new = recs
        .iter()
        .find(|r| r.ts == T0 + 1.0)
        .expect("the reused port's new connection");
    assert_state(old, ConnState::SF, "ShAFf");
    assert_state(new, ConnState::S0, "S");
    assert_pkts(new, 1, 0);
}

/// Once a side has closed, any new SYN is a reuse, even with the old ISN
/// (`IsReuse` compares ISNs only while the connection is not closed).
#[test]
fn port_reuse_after_close_even_with_same_isn() {
    let f = Flow::v4(PLAIN_PORT);
    let mut p = f.handshake();
    p.push((T0 + 0.3, f.c("R", CISN + 1, 0, 0)));
    p.push((T0 + 1.0, f.c("S", CISN, 0, 0)));
    let recs = run(&p);
    assert_eq!(recs.len(), 2, "{}", briefs(&recs));
    let old = recs
        .iter()
        .find(|r| r.ts == T0)
        .expect("the reset connection");
    let new = recs
        .iter()
        .find(|r| r.ts == T0 + 1.0)
        .expect("the new attempt");
    assert_state(old, ConnState::RSTO, "ShAR");
    assert_state(new, ConnState::S0, "S");
}

/// Whatever is still open when the input ends is logged by `finish()`
/// (README "Timeouts"; `session::Manager::Drain`).
#[test]
fn end_of_input_flushes_open_connections() {
    let f = Flow::v4(PLAIN_PORT);
    let mut engine = Engine::new(cfg());
    for (t, fr) in f.handshake() {
        feed(&mut engine, t, &fr);
    }
    feed(
        &mut engine,
        T0 + 0.3,
        &udp_frame(CLIENT.into(), 40001, SERVER.into(), 7000, b"q"),
    );
    assert_eq!(engine.drain_records().count(), 0);
    assert_eq!(engine.active_connections(), 2);
    engine.finish();
    let recs: Vec<ConnRecord> = engine.drain_records().collect();
    assert_eq!(recs.len(), 2, "{}", briefs(&recs));
    assert_eq!(engine.active_connections(), 0);
}

/// After the handshake, TCP uses `tcp_inactivity_timeout` (settable by its
/// Zeek name); past it, later packets start a new row (README "Timeouts").
#[test]
fn tcp_inactivity_timeout_splits_established_connection() {
    let f = Flow::v4(PLAIN_PORT);
    let mut c = cfg();
    c.set("tcp_inactivity_timeout=10")
        .expect("tcp_inactivity_timeout is a known setting");
    let mut p = f.handshake();
    p.push((T0 + 5.0, f.c("PA", CISN + 1, SISN + 1, 10)));
    p.push((T0 + 30.0, f.c("PA", CISN + 11, SISN + 1, 10)));
    let recs = run_with(c, &p);
    assert_eq!(recs.len(), 2, "{}", briefs(&recs));
    let first = recs.iter().find(|r| r.ts == T0).expect("first row");
    let second = recs.iter().find(|r| r.ts == T0 + 30.0).expect("second row");
    assert_state(first, ConnState::S1, "ShAD");
    assert_duration(first, Some(5.0));
    assert_state(second, ConnState::OTH, "D");

    // With the default 5 min timeout the same trace is one row.
    let r = only(run(&p));
    assert_state(&r, ConnState::S1, "ShAD");
}

/// Ports 21, 22, 23 and 513/tcp get a 1 h inactivity timeout once the
/// connection is established (README "Timeouts";
/// `Conn::port_inactivity_timeouts` in conn/inactivity.zeek), so a 1000 s
/// pause that splits an ordinary connection keeps a telnet one whole.
#[test]
fn interactive_ports_get_one_hour_inactivity_timeout() {
    for (port, rows) in [(23u16, 1usize), (PLAIN_PORT, 2)] {
        let f = Flow::v4(port);
        let mut p = f.handshake();
        p.push((T0 + 1.0, f.c("PA", CISN + 1, SISN + 1, 5)));
        p.push((T0 + 1000.0, f.c("PA", CISN + 6, SISN + 1, 5)));
        let recs = run(&p);
        assert_eq!(recs.len(), rows, "port {port}:{}", briefs(&recs));
    }
}

/// Once both sides have closed, the connection is logged `tcp_close_delay`
/// (5 s) later; a stray packet after that starts a new row (README
/// "Timeouts"; `TCPSessionAdapter::ConnectionClosed`, `ConnDeleteTimer`).
#[test]
fn closed_connection_is_logged_after_close_delay() {
    let f = Flow::v4(PLAIN_PORT);
    let mut engine = Engine::new(cfg());
    let mut p = f.handshake();
    p.push((T0 + 0.3, f.c("FA", CISN + 1, SISN + 1, 0)));
    p.push((T0 + 0.4, f.s("FA", SISN + 1, CISN + 2, 0)));
    for (t, fr) in &p {
        feed(&mut engine, *t, fr);
    }
    let tick = udp_frame(ROUTER.into(), 1234, SERVER.into(), 7000, b"tick");
    feed(&mut engine, T0 + 4.0, &tick);
    assert_eq!(engine.drain_records().count(), 0, "within the close delay");
    feed(&mut engine, T0 + 6.0, &tick);
    let closed: Vec<ConnRecord> = engine.drain_records().collect();
    assert_eq!(closed.len(), 1, "{}", briefs(&closed));
    assert_state(&closed[0], ConnState::SF, "ShAFf");

    feed(&mut engine, T0 + 10.0, &f.c("A", CISN + 2, SISN + 2, 0));
    engine.finish();
    let rest: Vec<ConnRecord> = engine.drain_records().collect();
    let late = rest
        .iter()
        .find(|r| r.proto == Proto::Tcp)
        .expect("the late ACK makes a new TCP row");
    assert_eq!(late.ts, T0 + 10.0);
    assert_state(late, ConnState::OTH, "A");
}

// ---------------------------------------------------------------------------
// ICMP (README "ICMP ports"; `ICMP4_counterpart`/`ICMP6_counterpart`)

/// An echo request and its reply are one connection with orig_p = 8 and
/// resp_p = 0; sizes are IP payload length minus 8; no history; OTH.
#[test]
fn icmp_echo_request_and_reply_are_one_connection() {
    let payload = [0x55u8; 32];
    let r = only(run(&[
        (T0, icmp4_frame(CLIENT, SERVER, 8, 0, &payload)),
        (T0 + 0.01, icmp4_frame(SERVER, CLIENT, 0, 0, &payload)),
    ]));
    assert_eq!(r.proto, Proto::Icmp);
    assert_eq!(r.ip_proto, Some(1));
    assert_endpoints(&r, (CLIENT.into(), 8), (SERVER.into(), 0));
    assert_state(&r, ConnState::OTH, "");
    assert_bytes(&r, Some(32), Some(32));
    assert_pkts(&r, 1, 1);
}

/// ICMPv6 echo (128/129): one connection, proto `icmp`, ip_proto 58.
#[test]
fn icmpv6_echo_request_and_reply_are_one_connection() {
    let a: Ipv6Addr = "fd00::1".parse().expect("IPv6 literal");
    let b: Ipv6Addr = "fd00::2".parse().expect("IPv6 literal");
    let payload = [0x66u8; 16];
    let r = only(run(&[
        (T0, icmp6_frame(a, b, 128, 0, &payload)),
        (T0 + 0.01, icmp6_frame(b, a, 129, 0, &payload)),
    ]));
    assert_eq!(r.proto, Proto::Icmp);
    assert_eq!(r.ip_proto, Some(58));
    assert_endpoints(&r, (a.into(), 128), (b.into(), 129));
    assert_state(&r, ConnState::OTH, "");
    assert_bytes(&r, Some(16), Some(16));
}

/// One-way types (here destination unreachable, code 1) use the code as
/// resp_p, and the reverse direction is a different connection.
#[test]
fn icmp_unreachable_is_one_way_with_code_as_resp_port() {
    // The quoted datagram: an IPv4 header plus 8 bytes of its payload.
    let mut quoted = udp_frame(CLIENT.into(), 40000, SERVER.into(), 7000, b"")[14..].to_vec();
    quoted.truncate(28);
    let recs = run(&[
        (T0, icmp4_frame(ROUTER, CLIENT, 3, 1, &quoted)),
        (T0 + 0.5, icmp4_frame(CLIENT, ROUTER, 3, 1, &quoted)),
    ]);
    assert_eq!(recs.len(), 2, "{}", briefs(&recs));
    for r in &recs {
        assert_eq!((r.orig_p, r.resp_p), (3, 1), "{}", brief(r));
        assert_state(r, ConnState::OTH, "");
        assert_pkts(r, 1, 0);
    }
    assert!(recs.iter().any(|r| r.orig_h == IpAddr::from(ROUTER)));
    assert!(recs.iter().any(|r| r.orig_h == IpAddr::from(CLIENT)));
}

// ---------------------------------------------------------------------------
// UDP (README field table and conn_state; UDP.cc, UDPSessionAdapter.cc)

/// Request and reply: `SF`, history `Dd`, sizes from the payloads.
#[test]
fn udp_request_and_reply_is_sf() {
    let r = only(run(&[
        (
            T0,
            udp_frame(CLIENT.into(), 40000, SERVER.into(), 7000, &[1; 10]),
        ),
        (
            T0 + 0.1,
            udp_frame(SERVER.into(), 7000, CLIENT.into(), 40000, &[2; 25]),
        ),
        (
            T0 + 0.2,
            udp_frame(CLIENT.into(), 40000, SERVER.into(), 7000, &[1; 5]),
        ),
    ]));
    assert_state(&r, ConnState::SF, "Dd");
    assert_bytes(&r, Some(15), Some(25));
    assert_pkts(&r, 2, 1);
    assert_eq!(r.orig_ip_bytes, 2 * 28 + 15);
}

/// Originator only: `S0`.
#[test]
fn udp_one_way_is_s0() {
    let r = only(run(&[
        (
            T0,
            udp_frame(CLIENT.into(), 40000, SERVER.into(), 7000, &[1; 10]),
        ),
        (
            T0 + 1.0,
            udp_frame(CLIENT.into(), 40000, SERVER.into(), 7000, &[1; 10]),
        ),
    ]));
    assert_state(&r, ConnState::S0, "D");
    assert_bytes(&r, Some(20), Some(0));
}

/// orig_bytes comes from the UDP length field minus 8, not from the
/// captured payload (README field table; `UDPAnalyzer::DeliverPacket`
/// uses `uh_ulen`). Checksums are off so the edited field is accepted.
#[test]
fn udp_bytes_come_from_length_field() {
    let mut a = udp_frame(CLIENT.into(), 40000, SERVER.into(), 7000, &[1; 10]);
    a[UDP4_LENGTH_AT..UDP4_LENGTH_AT + 2].copy_from_slice(&100u16.to_be_bytes());
    let b = udp_frame(CLIENT.into(), 40000, SERVER.into(), 7000, &[1; 10]);
    let r = only(run_with(cfg_no_checksums(), &[(T0, a), (T0 + 1.0, b)]));
    assert_bytes(&r, Some(92 + 10), Some(0));
}

/// Every packet with a bad UDP checksum: the connection exists with `C`
/// but no packets, and no side is active: `OTH` (README "Checksums",
/// `core.udp-corrupt`).
#[test]
fn udp_bad_checksum_only_is_oth_with_c() {
    let mut a = udp_frame(CLIENT.into(), 40000, SERVER.into(), 7000, &[1; 10]);
    a[UDP4_CHECKSUM_AT] ^= 0xff;
    let r = only(run(&[(T0, a)]));
    assert_state(&r, ConnState::OTH, "C");
    assert_pkts(&r, 0, 0);
}

// ---------------------------------------------------------------------------
// IPv6 TCP

/// IPv6 connections are keyed and logged like IPv4 ones.
#[test]
fn ipv6_tcp_handshake_and_close() {
    let a: IpAddr = "fd00::1".parse().expect("IPv6 literal");
    let b: IpAddr = "fd00::2".parse().expect("IPv6 literal");
    let f = Flow {
        client: a,
        cport: CLIENT_PORT,
        server: b,
        sport: PLAIN_PORT,
    };
    let mut p = f.handshake();
    p.push((T0 + 0.3, f.c("PA", CISN + 1, SISN + 1, 7)));
    p.push((T0 + 0.4, f.c("FA", CISN + 8, SISN + 1, 0)));
    p.push((T0 + 0.5, f.s("FA", SISN + 1, CISN + 9, 0)));
    let r = only(run(&p));
    assert_state(&r, ConnState::SF, "ShADFf");
    assert_endpoints(&r, (a, CLIENT_PORT), (b, PLAIN_PORT));
    assert_bytes(&r, Some(7), Some(0));
    assert_eq!(r.orig_ip_bytes, 3 * (40 + 20) + (40 + 20 + 7));
}
