//! Detector-level tests: port attachment, DPD activation and replay,
//! event gating, children.

use super::*;

fn info(proto: L4, resp_p: u16) -> ConnInfo {
    ConnInfo {
        proto,
        orig_h: "10.0.0.1".parse().unwrap(),
        orig_p: 40000,
        resp_h: "10.0.0.2".parse().unwrap(),
        resp_p,
    }
}

fn confirmed(ev: &[ServiceEvent]) -> Vec<&'static str> {
    ev.iter()
        .filter_map(|e| match e {
            ServiceEvent::Confirmed(a) => Some(a.name()),
            _ => None,
        })
        .collect()
}

#[test]
fn http_on_any_port_via_dpd() {
    let mut d = ServiceDetector::new(info(L4::Tcp, 5555), AnalyzerSet::all(), &[]);
    assert!(d.attached().is_empty());
    let mut ev = Vec::new();
    d.deliver(true, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &mut ev);
    assert_eq!(confirmed(&ev), vec!["http"]);
    assert_eq!(d.attached(), vec![Analyzer::Http]);
}

#[test]
fn port_analyzer_violation_removes_it() {
    let mut d = ServiceDetector::new(info(L4::Tcp, 22), AnalyzerSet::all(), &[]);
    assert_eq!(d.attached(), vec![Analyzer::Ssh]);
    let mut ev = Vec::new();
    d.deliver(true, b"GET / HTTP/1.1\r\n\r\n", &mut ev);
    assert_eq!(ev.first(), Some(&ServiceEvent::Violation(Analyzer::Ssh)));
    assert!(ev.contains(&ServiceEvent::Confirmed(Analyzer::Http)));
    assert_eq!(d.attached(), vec![Analyzer::Http]);
}

#[test]
fn bare_mode_only_loaded_analyzers() {
    let mut set = AnalyzerSet::none();
    set.insert(Analyzer::Dns);
    let mut d = ServiceDetector::new(info(L4::Tcp, 80), set, &[]);
    let mut ev = Vec::new();
    d.deliver(true, b"GET / HTTP/1.1\r\n\r\n", &mut ev);
    assert!(ev.is_empty());
    assert!(d.is_done());
}

#[test]
fn smtp_needs_both_signatures_and_replays() {
    let mut d = ServiceDetector::new(info(L4::Tcp, 2525), AnalyzerSet::all(), &[]);
    let mut ev = Vec::new();
    d.deliver(false, b"220 mx ESMTP\r\n", &mut ev);
    assert!(ev.is_empty());
    d.deliver(true, b"EHLO me\r\n", &mut ev);
    assert_eq!(confirmed(&ev), vec!["smtp"]);
}

#[test]
fn violation_and_confirmation_in_one_packet() {
    let mut ev = vec![ServiceEvent::Violation(Analyzer::Dhcp)];
    tree_push_confirm(&mut ev, Analyzer::Dhcp);
    assert_eq!(
        ev,
        vec![
            ServiceEvent::Confirmed(Analyzer::Dhcp),
            ServiceEvent::Violation(Analyzer::Dhcp)
        ]
    );
}

fn tree_push_confirm(ev: &mut Vec<ServiceEvent>, a: Analyzer) {
    // Same rule as the tree: confirmations go before this packet's
    // violations of the same analyzer.
    match ev.iter().position(|e| *e == ServiceEvent::Violation(a)) {
        Some(i) => ev.insert(i, ServiceEvent::Confirmed(a)),
        None => ev.push(ServiceEvent::Confirmed(a)),
    }
}

#[test]
fn dns_udp_confirms_and_finishes() {
    let mut d = ServiceDetector::new(info(L4::Udp, 53), AnalyzerSet::all(), &[]);
    let mut ev = Vec::new();
    d.deliver(true, &dns::tests::query(1, "example.com", false), &mut ev);
    assert_eq!(confirmed(&ev), vec!["dns"]);
}

#[test]
fn dhcp_by_signature() {
    let mut d = ServiceDetector::new(info(L4::Udp, 9999), AnalyzerSet::all(), &[]);
    let mut ev = Vec::new();
    d.deliver(true, &dhcp::tests::discover(), &mut ev);
    assert_eq!(confirmed(&ev), vec!["dhcp"]);
}

#[test]
fn ftp_auth_tls_gives_ftp_then_ssl() {
    let mut d = ServiceDetector::new(info(L4::Tcp, 21), AnalyzerSet::all(), &[]);
    let mut ev = Vec::new();
    d.deliver(false, b"220 hi\r\n", &mut ev);
    d.deliver(true, b"AUTH TLS\r\n", &mut ev);
    d.deliver(false, b"234 go\r\n", &mut ev);
    d.deliver(true, &ssl::tests::client_hello_record(), &mut ev);
    assert_eq!(confirmed(&ev), vec!["ftp", "ssl"]);
}

#[test]
fn http_connect_tunnel_runs_dpd() {
    let mut d = ServiceDetector::new(info(L4::Tcp, 3128), AnalyzerSet::all(), &[]);
    let mut ev = Vec::new();
    d.deliver(true, b"CONNECT mx:25 HTTP/1.1\r\n\r\n", &mut ev);
    d.deliver(false, b"HTTP/1.1 200 OK\r\n\r\n", &mut ev);
    d.deliver(false, b"220 mx ESMTP\r\n", &mut ev);
    d.deliver(true, b"EHLO me\r\n", &mut ev);
    assert_eq!(confirmed(&ev), vec!["http", "smtp"]);
}

#[test]
fn partial_connections_confirm_nothing_for_http() {
    let mut d = ServiceDetector::new(info(L4::Tcp, 80), AnalyzerSet::all(), &[]);
    d.set_partial(true);
    let mut ev = Vec::new();
    d.deliver(true, b"GET / HTTP/1.1\r\n\r\n", &mut ev);
    d.deliver(false, b"junk junk\r\n", &mut ev);
    assert!(ev.is_empty());
}

#[test]
fn done_after_window_without_candidates() {
    let mut d = ServiceDetector::new(info(L4::Tcp, 5555), AnalyzerSet::all(), &[]);
    let mut ev = Vec::new();
    let junk = vec![0xffu8; 1500];
    d.deliver(true, &junk, &mut ev);
    assert!(d.is_done());
    assert!(ev.is_empty());
}

#[test]
fn random_streams_never_panic() {
    let mut x: u64 = 0x1234_5678;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let ports = [
        21u16, 22, 25, 53, 80, 135, 143, 389, 443, 502, 6667, 5555, 67, 123, 88,
    ];
    for round in 0..2000 {
        let proto = if round % 3 == 0 { L4::Udp } else { L4::Tcp };
        let port = ports[(next() % ports.len() as u64) as usize];
        let mut d = ServiceDetector::new(info(proto, port), AnalyzerSet::all(), &[]);
        let mut ev = Vec::new();
        for _ in 0..20 {
            let n = (next() % 300) as usize;
            let mut buf: Vec<u8> = (0..n).map(|_| next() as u8).collect();
            if next() % 4 == 0 {
                let seeds: [&[u8]; 10] = [
                    b"\x6a\x81\x90\x30\x81\x8d\xa1\x03\x02\x01\x05\xa2\x03\x02\x01\x0a",
                    b"\0\0\0\x5c\x7e\x5a\x30\x58\xa0\x03\x02\x01\x05\xa1\x03\x02\x01\x1e",
                    b"GET / HTTP/1.1\r\n",
                    b"220 hi\r\n",
                    b"USER x\r\n",
                    b"SSH-2.0-x\r\n",
                    b"\x16\x03\x01\x00\x40\x01",
                    b"+OK\r\n",
                    b"\x30\x0c\x02\x01\x01\x60\x07\x02\x01\x03\x04\x00\xa3\x00",
                    b"\x05\x00\x0b\x03\x10\x00\x00\x00",
                ];
                let s = seeds[(next() % 10) as usize];
                buf.splice(0..0, s.iter().copied());
            }
            let is_orig = next() % 2 == 0;
            match next() % 10 {
                0 if proto == L4::Tcp => d.undelivered(is_orig, n as u64, &mut ev),
                1 if proto == L4::Tcp => d.end_of_data(is_orig, &mut ev),
                _ => d.deliver(is_orig, &buf, &mut ev),
            }
        }
    }
}

#[test]
fn late_starttls_child_still_confirms() {
    let mut d = ServiceDetector::new(info(L4::Tcp, 21), AnalyzerSet::all(), &[]);
    let mut ev = Vec::new();
    d.deliver(false, b"220 hi\r\n", &mut ev);
    for _ in 0..2000 {
        d.deliver(true, b"NOOP\r\n", &mut ev);
        d.deliver(false, b"200 ok\r\n", &mut ev);
    }
    d.deliver(true, b"AUTH TLS\r\n", &mut ev);
    d.deliver(false, b"234 go\r\n", &mut ev);
    d.deliver(true, &ssl::tests::client_hello_record(), &mut ev);
    assert_eq!(confirmed(&ev), vec!["ftp", "ssl"]);
}

/// Past `DPD::ignore_violations_after` a confirmed HTTP parser keeps
/// reading only while `HTTP::max_pending_requests` or a MIME limit can
/// still be passed.
#[test]
fn http_after_ten_kib_is_done_without_a_pipelining_limit() {
    let mut d = ServiceDetector::new(info(L4::Tcp, 80), AnalyzerSet::all(), &[]);
    let mut limits = AnalyzerLimits::default();
    limits.set("HTTP::max_pending_requests", 0);
    limits.set("MIME::max_depth", 0);
    limits.set("MIME::max_header_bytes", 0);
    d.set_limits(&limits);
    let mut ev = Vec::new();
    d.deliver(true, b"GET / HTTP/1.1\r\n\r\n", &mut ev);
    d.deliver(
        false,
        b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n",
        &mut ev,
    );
    let body = vec![b'x'; 1400];
    for _ in 0..10 {
        d.deliver(false, &body, &mut ev);
    }
    assert!(d.is_done());
    assert_eq!(confirmed(&ev), vec!["http"]);
}

#[test]
fn http_after_ten_kib_still_counts_pipelined_requests() {
    let mut d = ServiceDetector::new(info(L4::Tcp, 80), AnalyzerSet::all(), &[]);
    let mut ev = Vec::new();
    d.deliver(true, b"GET / HTTP/1.1\r\n\r\n", &mut ev);
    d.deliver(
        false,
        b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n",
        &mut ev,
    );
    let body = vec![b'x'; 1400];
    for _ in 0..10 {
        d.deliver(false, &body, &mut ev);
    }
    assert!(!d.is_done());
    for _ in 0..102 {
        d.deliver(true, b"GET / HTTP/1.1\r\n\r\n", &mut ev);
    }
    assert!(ev.contains(&ServiceEvent::LimitReached(
        crate::decode::weird::Weird::HttpExcessivePipelining
    )));
}

/// An LDAP SASL BindRequest (message id 1) with `mech` and `creds`.
fn sasl_bind(mech: &str, creds: &[u8]) -> Vec<u8> {
    use krb::build::{cat, int, tlv};
    let sasl = cat(&[tlv(0x04, mech.as_bytes()), tlv(0x04, creds)]);
    let op = tlv(0x60, &cat(&[int(3), tlv(0x04, b""), tlv(0xa3, &sasl)]));
    tlv(0x30, &cat(&[int(1), op]))
}

/// An LDAP BindResponse (message id 1) with server SASL credentials.
fn sasl_bind_response(code: u8, creds: &[u8]) -> Vec<u8> {
    use krb::build::{cat, int, tlv};
    let op = tlv(
        0x61,
        &cat(&[
            tlv(0x0a, &[code]),
            tlv(0x04, b""),
            tlv(0x04, b""),
            tlv(0x87, creds),
        ]),
    );
    tlv(0x30, &cat(&[int(1), op]))
}

#[test]
fn kerberos_in_ldap_sasl_bind() {
    let spnego =
        gssapi::build::neg_token_init(&gssapi::build::krb5_token([1, 0], &krb::build::ap_req()));
    let mut d = ServiceDetector::new(info(L4::Tcp, 389), AnalyzerSet::all(), &[]);
    let mut ev = Vec::new();
    d.deliver(true, &sasl_bind("GSS-SPNEGO", &spnego), &mut ev);
    // The bind is the first message: its tokens are handed on before
    // LDAP confirms it.
    assert_eq!(confirmed(&ev), vec!["krb", "gssapi", "ldap_tcp"]);
    let resp =
        gssapi::build::neg_token_resp(&gssapi::build::krb5_token([2, 0], &krb::build::ap_rep()));
    ev.clear();
    d.deliver(false, &sasl_bind_response(0, &resp), &mut ev);
    assert!(ev.is_empty(), "{ev:?}");
}

#[test]
fn sasl_gssapi_raw_token_is_a_gssapi_violation() {
    let raw = gssapi::build::krb5_token([1, 0], &krb::build::ap_req());
    let mut d = ServiceDetector::new(info(L4::Tcp, 389), AnalyzerSet::all(), &[]);
    let mut ev = Vec::new();
    d.deliver(true, &sasl_bind("GSSAPI", &raw), &mut ev);
    assert_eq!(
        ev,
        vec![
            ServiceEvent::Violation(Analyzer::Gssapi),
            ServiceEvent::Confirmed(Analyzer::LdapTcp)
        ]
    );
}

#[test]
fn krb_udp_by_port_and_signature() {
    for port in [88, 7088] {
        let mut d = ServiceDetector::new(info(L4::Udp, port), AnalyzerSet::all(), &[]);
        let mut ev = Vec::new();
        d.deliver(true, &krb::build::as_req(), &mut ev);
        assert_eq!(confirmed(&ev), vec!["krb"], "port {port}");
    }
    // A datagram on 88 that is not Kerberos.
    let mut d = ServiceDetector::new(info(L4::Udp, 88), AnalyzerSet::all(), &[]);
    let mut ev = Vec::new();
    d.deliver(true, b"hello", &mut ev);
    assert_eq!(ev, vec![ServiceEvent::Violation(Analyzer::Krb)]);
}

#[test]
fn krb_tcp_by_port_and_signature() {
    let msg = krb::build::error();
    let mut framed = (msg.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&msg);
    for port in [88, 7088] {
        let mut d = ServiceDetector::new(info(L4::Tcp, port), AnalyzerSet::all(), &[]);
        let mut ev = Vec::new();
        let (a, b) = framed.split_at(10);
        d.deliver(false, a, &mut ev);
        d.deliver(false, b, &mut ev);
        assert_eq!(confirmed(&ev), vec!["krb_tcp"], "port {port}");
    }
    // Bare mode without the krb scripts: nothing.
    let mut d = ServiceDetector::new(info(L4::Tcp, 88), AnalyzerSet::none(), &[]);
    let mut ev = Vec::new();
    d.deliver(false, &framed, &mut ev);
    assert!(ev.is_empty());
    // `krb` loads both.
    let mut set = AnalyzerSet::none();
    set.insert(Analyzer::Krb);
    assert!(set.contains(Analyzer::KrbTcp));
}
