//! The DaemonSet's view of a node: `osprey run -i any` in a namespace
//! shaped like a node with a bridge CNI (a bridge holding the pod subnet,
//! each pod on a veth) logs every pod-to-pod connection once, with the
//! counts a capture inside the pod gives — not once per interface the
//! packets cross (the pod's veth, then the bridge's port of the other pod).
//!
//! Needs root, `ip`, `tcpdump`, `curl` and python3; runs under
//! `OSPREY_E2E=1` (CI), else skips with the reason.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
use common::netns::{self, wait_for, Osprey, Server};

/// A node namespace with bridge `br0` (198.18.77.1/24) and two pod
/// namespaces on veths (198.18.77.10 and .20); IPv6 off everywhere so the
/// kernel's neighbour discovery adds nothing. Deleted on drop.
struct Node {
    node: String,
    pods: [String; 2],
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_ns(ns: &str, cmd: &[&str]) {
    let mut args = vec!["netns", "exec", ns];
    args.extend_from_slice(cmd);
    ip(&args);
}

impl Node {
    fn new() -> Node {
        let id = std::process::id() % 100_000;
        let node = format!("onv-node{id}");
        let pods = [format!("onv-a{id}"), format!("onv-b{id}")];
        let n = Node { node, pods };
        for ns in [&n.node, &n.pods[0], &n.pods[1]] {
            ip(&["netns", "add", ns]);
            in_ns(ns, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
            in_ns(
                ns,
                &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
            );
            in_ns(ns, &["ip", "link", "set", "lo", "up"]);
        }
        in_ns(&n.node, &["ip", "link", "add", "br0", "type", "bridge"]);
        in_ns(
            &n.node,
            &["ip", "addr", "add", "198.18.77.1/24", "dev", "br0"],
        );
        in_ns(&n.node, &["ip", "link", "set", "br0", "up"]);
        for (i, (pod, addr)) in n
            .pods
            .iter()
            .zip(["198.18.77.10/24", "198.18.77.20/24"])
            .enumerate()
        {
            let host = format!("vh{i}");
            ip(&[
                "link", "add", &host, "netns", &n.node, "type", "veth", "peer", "name", "eth0",
                "netns", pod,
            ]);
            in_ns(&n.node, &["ip", "link", "set", &host, "master", "br0"]);
            in_ns(&n.node, &["ip", "link", "set", &host, "up"]);
            in_ns(pod, &["ip", "addr", "add", addr, "dev", "eth0"]);
            in_ns(pod, &["ip", "link", "set", "eth0", "up"]);
        }
        n
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for ns in [&self.node, &self.pods[0], &self.pods[1]] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// When both sides close at once their FINs cross in flight, and which one
/// comes first depends on where it is observed: the node counts each packet
/// where it first sees it (the sender's veth), the pod sees its peer's FIN
/// only after the bridge. Not yet the pod's own view for that order (issue
/// 15's canonical interface); every count and the rest of the history are.
fn crossed_fins(history: String) -> String {
    match history.strip_suffix("fF") {
        Some(head) => format!("{head}Ff"),
        None => history,
    }
}

/// TCP rows of a conn.log, without ts, uid and duration: what must match.
fn tcp_rows(text: &str) -> BTreeMap<Vec<String>, usize> {
    let mut fields: Vec<String> = Vec::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
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
                .map_or(String::new(), |v| (*v).to_string())
        };
        // The pods' connections (the node also talks to itself: the
        // metrics scrape on its loopback).
        let pod = |h: String| h.starts_with("198.18.77.");
        if get("proto") != "tcp" || !pod(get("id.orig_h")) || !pod(get("id.resp_h")) {
            continue;
        }
        let key: Vec<String> = [
            "id.orig_h",
            "id.orig_p",
            "id.resp_h",
            "id.resp_p",
            "service",
            "orig_bytes",
            "resp_bytes",
            "conn_state",
            "history",
            "orig_pkts",
            "orig_ip_bytes",
            "resp_pkts",
            "resp_ip_bytes",
        ]
        .iter()
        .map(|f| match *f {
            "history" => crossed_fins(get(f)),
            _ => get(f),
        })
        .collect();
        *out.entry(key).or_default() += 1;
    }
    out
}

#[test]
fn pod_connections_on_a_bridge_node_are_logged_once_as_the_pod_sees_them() {
    let name = "pod_connections_on_a_bridge_node_are_logged_once_as_the_pod_sees_them";
    if !netns::enabled_with(name, &["tcpdump", "curl", "python3"]) {
        return;
    }
    let node = Node::new();
    let tmp = tempfile::tempdir().expect("tempdir");
    let live_dir = tmp.path().join("live");
    std::fs::create_dir_all(&live_dir).expect("dir");
    let cfg = tmp.path().join("osprey.toml");
    netns::write(
        &cfg,
        "[pipeline]\nconn_workers = 2\n\n[output]\nrotate_interval_secs = 0\n",
    );
    let _server = netns::web_server(&node.pods[1]);
    let pcap = tmp.path().join("pod.pcap");
    let dump = Server(
        Command::new("ip")
            .args(["netns", "exec", &node.pods[0]])
            .args(["tcpdump", "-Z", "root", "-U", "-i", "eth0", "-w"])
            .arg(&pcap)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump"),
    );
    // tcpdump writes its file header once it listens.
    assert!(
        wait_for(Duration::from_secs(10), || std::fs::metadata(&pcap)
            .is_ok_and(|m| m.len() >= 24))
        .is_some(),
        "tcpdump did not start"
    );
    std::thread::sleep(Duration::from_millis(500));
    let mut osprey = Osprey::start(
        &node.node,
        netns::port_for(name),
        &live_dir,
        &["--config", cfg.to_str().expect("utf-8"), "-i", "any"],
    );
    osprey.wait_ready(Duration::from_secs(30));
    let url = "http://198.18.77.20:8080/";
    assert!(
        wait_for(Duration::from_secs(10), || netns::curl_ok(
            &node.pods[0],
            url,
            "2"
        ))
        .is_some(),
        "the server pod never answered"
    );
    for _ in 0..4 {
        assert!(netns::curl_ok(&node.pods[0], url, "2"));
    }
    std::thread::sleep(Duration::from_millis(500));
    let duplicates = osprey
        .metrics()
        .sum("osprey_conn_duplicate_packets_total", &[]);
    drop(dump);
    osprey.stop(Duration::from_secs(10));

    let replay_dir = tmp.path().join("replay");
    let out = Command::new(env!("CARGO_BIN_EXE_osprey"))
        .args(["replay", "-q", "-C", "--no-models", "--log-dir"])
        .arg(&replay_dir)
        .arg(&pcap)
        .output()
        .expect("osprey replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "pod capture: {} bytes; {}",
        std::fs::metadata(&pcap).map_or(0, |m| m.len()),
        String::from_utf8_lossy(&out.stderr)
    );
    let want = tcp_rows(&netns::read(&replay_dir.join("conn.log")));
    let live = tcp_rows(&netns::read(&Path::new(&live_dir).join("conn.log")));
    eprintln!("pod view: {want:#?}\nnode view: {live:#?}\nduplicates dropped: {duplicates}");
    assert!(want.values().sum::<usize>() >= 5, "the pod saw too little");
    assert_eq!(live, want, "the node's conn.log differs from the pod's");
    assert!(duplicates > 0.0, "no copy was counted as a duplicate");
}
