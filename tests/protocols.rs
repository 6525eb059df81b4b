//! `service` from real protocol peers: clients and servers run in network
//! namespaces the test creates (198.18.0.0/15), tcpdump records the veth
//! between them, and `osprey replay` must name the protocols as Zeek's
//! documented semantics say. What the Zeek oracle cannot show (a current
//! QUIC stack, QUIC v2 found by DPD on a port no analyzer is registered
//! for) is checked here.
//!
//! Needs root, `ip`, `tcpdump` and the test tools venv
//! (`tests/tools/setup.sh`: aioquic); runs under `OSPREY_E2E=1` (CI),
//! else skips with the reason.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
use common::netns::{self, wait_for, Server, VethPair};
use common::python::tools_python;

/// The server side of the veth pair (`a`), and the client's (`b`).
const SERVER_IP: &str = "198.18.0.1";

fn tools(test: &str) -> Option<PathBuf> {
    if !netns::enabled_with(test, &["tcpdump"]) {
        return None;
    }
    match tools_python("aioquic") {
        Some(p) => Some(p),
        None if std::env::var("OSPREY_E2E").is_ok_and(|v| v == "1") => {
            panic!("{test}: OSPREY_E2E=1 but aioquic is missing: run tests/tools/setup.sh")
        }
        None => {
            eprintln!("{test}: skipped: needs tests/tools/setup.sh (aioquic)");
            None
        }
    }
}

fn script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tools")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// tcpdump on `ifc` of `ns` into `path`, stopped (and flushed) on drop of
/// the returned guard by [`stop_capture`].
fn capture(ns: &str, ifc: &str, path: &Path) -> Server {
    let dump = Server(
        Command::new("ip")
            .args([
                "netns", "exec", ns, "tcpdump", "-Z", "root", "-U", "-n", "-s", "0",
            ])
            .args(["--immediate-mode", "-i", ifc, "-w"])
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump"),
    );
    // tcpdump writes the file header once it is capturing.
    assert!(
        wait_for(Duration::from_secs(10), || std::fs::metadata(path)
            .is_ok_and(|m| m.len() >= 24))
        .is_some(),
        "tcpdump did not start"
    );
    dump
}

/// Stops tcpdump politely so the last packets reach the file.
fn stop_capture(mut dump: Server) {
    std::thread::sleep(Duration::from_millis(300));
    let pid = dump.0.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let _ = wait_for(Duration::from_secs(5), || {
        dump.0.try_wait().ok().flatten().is_some()
    });
}

/// `osprey replay` of `pcap` as plain `zeek -C` would read it; the
/// conn.log rows as (proto, resp_p, service, history).
fn replay(pcap: &Path, dir: &Path) -> Vec<(String, u16, String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_osprey"))
        .args([
            "replay",
            "-C",
            "--no-models",
            "--analyzers",
            "all",
            "--log-dir",
        ])
        .arg(dir)
        .arg(pcap)
        .output()
        .expect("osprey replay");
    assert!(
        out.status.success(),
        "osprey replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::read_to_string(dir.join("conn.log")).expect("conn.log");
    let fields: Vec<&str> = log
        .lines()
        .find_map(|l| l.strip_prefix("#fields\t"))
        .expect("#fields")
        .split('\t')
        .collect();
    let col = |n: &str| fields.iter().position(|f| *f == n).expect(n);
    let (proto, resp_p, service, history) = (
        col("proto"),
        col("id.resp_p"),
        col("service"),
        col("history"),
    );
    log.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let v: Vec<&str> = l.split('\t').collect();
            (
                v[proto].to_string(),
                v[resp_p].parse().unwrap_or(0),
                v[service].to_string(),
                v[history].to_string(),
            )
        })
        .collect()
}

fn quic_server(python: &Path, ns: &str, port: u16, version: u8) -> Server {
    let s = Server(
        Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(python)
            .args([&script("quic_pair.py"), "server", SERVER_IP])
            .args([port.to_string(), version.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("quic server"),
    );
    s
}

fn quic_client(python: &Path, ns: &str, port: u16, version: u8) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(python)
        .args([&script("quic_pair.py"), "client", SERVER_IP])
        .args([port.to_string(), version.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("osprey-protocols-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn quic_from_a_real_client_and_server_is_quic_ssl_on_443_and_found_by_dpd_elsewhere() {
    let test = "quic_from_a_real_client_and_server_is_quic_ssl_on_443_and_found_by_dpd_elsewhere";
    let Some(python) = tools(test) else {
        return;
    };
    let pair = VethPair::new();
    let dir = tempdir("quic");
    let pcap = dir.join("quic.pcap");
    let dump = capture(&pair.ns_a, &pair.if_a, &pcap);
    // v1 on QUIC's port; v2 on a port no analyzer registers (DPD's v2
    // signature finds it); a v1 client against the v2-only server (a
    // version negotiation, which is not QUIC Zeek can confirm).
    let _v1 = quic_server(&python, &pair.ns_a, 443, 1);
    let _v2 = quic_server(&python, &pair.ns_a, 4433, 2);
    std::thread::sleep(Duration::from_millis(800));
    let mut ok = false;
    for _ in 0..3 {
        ok = quic_client(&python, &pair.ns_b, 443, 1) && quic_client(&python, &pair.ns_b, 4433, 2);
        if ok {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(ok, "the QUIC clients did not complete their exchanges");
    // Forged "Initials" that match the DPD signature but do not decrypt:
    // QUIC is attached, fails, and the connection names no service.
    let forged = Command::new("ip")
        .args(["netns", "exec", &pair.ns_b, "python3", "-c"])
        .arg(format!(
            "import os, socket\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             for _ in range(3):\n    \
                 s.sendto(b'\\xc3\\x00\\x00\\x00\\x01\\x08' + os.urandom(1200), ('{SERVER_IP}', 9443))\n"
        ))
        .status()
        .expect("python3");
    assert!(forged.success());
    stop_capture(dump);
    let rows = replay(&pcap, &dir);
    let udp = |port: u16| -> Vec<&(String, u16, String, String)> {
        rows.iter()
            .filter(|r| r.0 == "udp" && r.1 == port)
            .collect()
    };
    let on_443 = udp(443);
    assert!(!on_443.is_empty(), "no udp/443 row: {rows:?}");
    for r in &on_443 {
        assert_eq!(r.2, "quic,ssl", "QUIC v1 on 443: {r:?}");
    }
    let on_4433 = udp(4433);
    assert!(!on_4433.is_empty(), "no udp/4433 row: {rows:?}");
    for r in &on_4433 {
        assert_eq!(r.2, "quic,ssl", "QUIC v2 on 4433 (DPD): {r:?}");
    }
    let junk = udp(9443);
    assert_eq!(junk.len(), 1, "one udp/9443 row expected: {rows:?}");
    assert_eq!(
        junk[0].2, "-",
        "undecryptable Initials are not QUIC: {:?}",
        junk[0]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn socks5_on_an_odd_port_is_found_by_dpd_and_the_proxied_http_too() {
    let test = "socks5_on_an_odd_port_is_found_by_dpd_and_the_proxied_http_too";
    if !netns::enabled_with(test, &["tcpdump", "curl", "python3"]) {
        return;
    }
    let pair = VethPair::new();
    let dir = tempdir("socks");
    let pcap = dir.join("socks.pcap");
    let dump = capture(&pair.ns_a, &pair.if_a, &pcap);
    let _web = netns::web_server(&pair.ns_a);
    let _proxy = Server(
        Command::new("ip")
            .args(["netns", "exec", &pair.ns_a, "python3"])
            .args([&script("socks5_proxy.py"), SERVER_IP, "10080"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socks proxy"),
    );
    std::thread::sleep(Duration::from_millis(800));
    let url = format!("http://{SERVER_IP}:8080/");
    let proxy = format!("socks5://{SERVER_IP}:10080");
    let fetched = wait_for(Duration::from_secs(10), || {
        Command::new("ip")
            .args(["netns", "exec", &pair.ns_b, "curl", "-s", "-o", "/dev/null"])
            .args(["--max-time", "3", "--proxy", &proxy, &url])
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(
        fetched.is_some(),
        "curl could not fetch through the SOCKS proxy"
    );
    stop_capture(dump);
    let rows = replay(&pcap, &dir);
    let proxied: Vec<_> = rows
        .iter()
        .filter(|r| r.0 == "tcp" && r.1 == 10080)
        .collect();
    assert!(!proxied.is_empty(), "no tcp/10080 row: {rows:?}");
    // Zeek's SOCKS analyzer hands the proxied stream to a new PIA, whose
    // DPD finds HTTP in it: socks first, then http.
    assert!(
        proxied.iter().any(|r| r.2 == "socks,http"),
        "SOCKS on 10080 with HTTP through it: {proxied:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
