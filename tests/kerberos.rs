//! Kerberos against a real KDC: MIT `krb5kdc` in one network namespace,
//! `kinit` in another (once over UDP, once over TCP), a capture on the
//! KDC's side replayed through osprey, whose conn.log must name the
//! service `krb` for the UDP exchange and `krb_tcp` for the TCP one, as
//! Zeek does.
//!
//! Needs root, `ip`, `tcpdump`, and MIT Kerberos (`krb5kdc`, `kdb5_util`,
//! `kadmin.local`, `kinit`: Debian's krb5-kdc, krb5-admin-server and
//! krb5-user); runs under `OSPREY_E2E=1` (CI), else skips with the reason.
//! Traffic stays between the test's two namespaces (198.18.0.0/30).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

mod common;
use common::netns::{self, wait_for, Server, VethPair};

const TOOLS: &[&str] = &["tcpdump", "krb5kdc", "kdb5_util", "kadmin.local", "kinit"];
const REALM: &str = "OSPREY.TEST";
const KDC_IP: &str = "198.18.0.1";

fn run_env(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A client krb5.conf that reaches the KDC over UDP or TCP only.
fn client_conf(dir: &Path, tcp: bool) -> PathBuf {
    let path = dir.join(if tcp {
        "krb5-tcp.conf"
    } else {
        "krb5-udp.conf"
    });
    // udp_preference_limit = 1: every request goes over TCP first; a
    // large limit keeps them on UDP.
    let (kdc, limit) = (KDC_IP, if tcp { 1 } else { 65535 });
    let text = format!(
        "[libdefaults]\n default_realm = {REALM}\n dns_lookup_kdc = false\n \
         dns_lookup_realm = false\n rdns = false\n udp_preference_limit = {limit}\n\
         [realms]\n {REALM} = {{\n  kdc = {kdc}\n }}\n"
    );
    netns::write(&path, &text);
    path
}

/// A KDC database with one user, `alice`.
fn kdc_setup(dir: &Path) -> (PathBuf, PathBuf) {
    let d = dir.display();
    let profile = dir.join("kdc.conf");
    netns::write(
        &profile,
        &format!(
            "[kdcdefaults]\n kdc_ports = 88\n kdc_tcp_ports = 88\n\
             [realms]\n {REALM} = {{\n  database_name = {d}/principal\n  \
             key_stash_file = {d}/stash\n  acl_file = {d}/kadm5.acl\n  \
             kdc_ports = 88\n  kdc_tcp_ports = 88\n }}\n\
             [logging]\n kdc = FILE:{d}/kdc.log\n"
        ),
    );
    netns::write(&dir.join("kadm5.acl"), "");
    let conf = dir.join("krb5-kdc.conf");
    netns::write(&conf, &format!("[libdefaults]\n default_realm = {REALM}\n"));
    let env = |c: &mut Command| {
        c.env("KRB5_CONFIG", &conf)
            .env("KRB5_KDC_PROFILE", &profile);
    };
    let mut c = Command::new("kdb5_util");
    env(&mut c);
    c.args(["create", "-s", "-r", REALM, "-P", "osprey-master"]);
    run_env(&mut c, "kdb5_util create");
    let mut c = Command::new("kadmin.local");
    env(&mut c);
    c.args(["-r", REALM, "-q", "addprinc -pw osprey-secret alice"]);
    run_env(&mut c, "kadmin.local addprinc");
    (conf, profile)
}

fn kinit(ns: &str, conf: &Path, cache: &Path) {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, "kinit", &format!("alice@{REALM}")])
        .env("KRB5_CONFIG", conf)
        .env("KRB5CCNAME", format!("FILE:{}", cache.display()))
        .env("KRB5_TRACE", "/dev/stderr")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("kinit");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("kinit stdin");
        stdin.write_all(b"osprey-secret\n").expect("password");
    }
    let out = child.wait_with_output().expect("kinit");
    assert!(
        out.status.success(),
        "kinit ({}) failed: {}{}",
        conf.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (proto, resp_p, service) of each conn.log row.
fn services(conn_log: &str) -> Vec<(String, String, String)> {
    let mut fields: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in conn_log.lines() {
        if let Some(f) = line.strip_prefix("#fields\t") {
            fields = f.split('\t').map(str::to_string).collect();
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let row: Vec<&str> = line.split('\t').collect();
        let get = |name: &str| {
            fields
                .iter()
                .position(|f| f == name)
                .and_then(|i| row.get(i))
                .map(|s| s.to_string())
                .unwrap_or_default()
        };
        out.push((get("proto"), get("id.resp_p"), get("service")));
    }
    out
}

#[test]
fn kinit_over_udp_and_tcp_is_krb_and_krb_tcp() {
    if !netns::enabled_with("kerberos", TOOLS) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (kdc_conf, profile) = kdc_setup(dir);
    let udp_conf = client_conf(dir, false);
    let tcp_conf = client_conf(dir, true);
    let veth = VethPair::new();

    let pcap = dir.join("kdc.pcap");
    let dump = Server(
        Command::new("ip")
            .args(["netns", "exec", &veth.ns_a])
            .args(["tcpdump", "-Z", "root", "-U", "--immediate-mode", "-i"])
            .arg(&veth.if_a)
            .arg("-w")
            .arg(&pcap)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump"),
    );
    assert!(
        wait_for(Duration::from_secs(10), || std::fs::metadata(&pcap)
            .is_ok_and(|m| m.len() >= 24))
        .is_some(),
        "tcpdump did not start"
    );
    let kdc = Server(
        Command::new("ip")
            .args(["netns", "exec", &veth.ns_a, "krb5kdc", "-n", "-r", REALM])
            .env("KRB5_CONFIG", &kdc_conf)
            .env("KRB5_KDC_PROFILE", &profile)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("krb5kdc"),
    );
    let log = dir.join("kdc.log");
    assert!(
        wait_for(Duration::from_secs(10), || std::fs::read_to_string(&log)
            .is_ok_and(|t| t.contains("commencing operation")))
        .is_some(),
        "krb5kdc did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    kinit(&veth.ns_b, &udp_conf, &dir.join("cc-udp"));
    kinit(&veth.ns_b, &tcp_conf, &dir.join("cc-tcp"));
    drop(kdc);
    std::thread::sleep(Duration::from_millis(500));
    drop(dump);

    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).expect("log dir");
    let out = Command::new(env!("CARGO_BIN_EXE_osprey"))
        .args(["replay", "-C", "--no-models", "--analyzers", "all", "-q"])
        .args(["--format", "zeek", "--log-dir"])
        .arg(&logs)
        .arg(&pcap)
        .output()
        .expect("osprey replay");
    assert!(
        out.status.success(),
        "osprey replay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = services(&netns::read(&logs.join("conn.log")));
    let krb: Vec<_> = rows.iter().filter(|(_, p, _)| p == "88").collect();
    assert!(
        krb.iter().any(|(proto, _, s)| proto == "udp" && s == "krb"),
        "no UDP row with service krb: {rows:?}"
    );
    assert!(
        krb.iter()
            .any(|(proto, _, s)| proto == "tcp" && s == "krb_tcp"),
        "no TCP row with service krb_tcp: {rows:?}"
    );
    assert!(
        krb.iter().all(|(_, _, s)| s == "krb" || s == "krb_tcp"),
        "a Kerberos exchange without its service: {rows:?}"
    );
}
