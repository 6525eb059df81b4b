//! The DaemonSet's view of a node: `osprey run -i any` in namespaces shaped
//! like the nodes CNIs build logs every pod connection once, under the
//! pod's own addresses, with the counts a capture inside the pod gives —
//! not once per interface the packets cross (the pod's veth, the bridge,
//! the overlay device, the encapsulated copy on the uplink) and not a
//! second time under the node's address after NAT.
//!
//! Shapes: a bridge CNI with masquerade to an external host and a NodePort
//! (DNAT) into a pod, a pod whose veth vanishes and a pod started while
//! osprey runs; routed veths
//! with /32 routes (Calico's shape); two nodes joined by a VXLAN overlay
//! (flannel's shape); host-network traffic. Each compares the node's
//! conn.log with `osprey replay` of captures taken inside the pods (or, for
//! the host's own traffic, on the far side): every field but ts, uid and
//! duration, every connection exactly once, no extra row, and the
//! suppression counters the topology implies.
//!
//! Needs root, `ip`, `nft`, `tcpdump`, `curl` and python3; runs under
//! `OSPREY_E2E=1` (CI), else skips with the reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
use common::netns::{self, wait_for, Osprey, Server};

const TOOLS: &[&str] = &["tcpdump", "curl", "python3", "nft"];

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

fn sysctl(ns: &str, kv: &str) {
    in_ns(ns, &["sysctl", "-qw", kv]);
}

/// Network namespaces of one test, deleted on drop.
struct Topo {
    /// The test's tag and the process id: tests run in parallel.
    id: String,
    names: Vec<String>,
}

impl Topo {
    fn new(tag: &str) -> Topo {
        Topo {
            id: format!("{tag}{}", std::process::id() % 100_000),
            names: Vec::new(),
        }
    }

    /// A namespace with loopback up and IPv6 off (so that neighbour
    /// discovery adds nothing).
    fn ns(&mut self, role: &str) -> String {
        let ns = format!("onv-{role}-{}", self.id);
        ip(&["netns", "add", &ns]);
        self.names.push(ns.clone());
        sysctl(&ns, "net.ipv6.conf.all.disable_ipv6=1");
        sysctl(&ns, "net.ipv6.conf.default.disable_ipv6=1");
        in_ns(&ns, &["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// A veth from `a` (named `a_if`) to `b` (named `b_if`), both up.
    fn veth(&self, a: &str, a_if: &str, b: &str, b_if: &str) {
        ip(&[
            "link", "add", a_if, "netns", a, "type", "veth", "peer", "name", b_if, "netns", b,
        ]);
        in_ns(a, &["ip", "link", "set", a_if, "up"]);
        in_ns(b, &["ip", "link", "set", b_if, "up"]);
    }

    /// A node namespace with a bridge `br0` holding `gw` (the pod subnet's
    /// gateway) and forwarding on.
    fn bridge_node(&mut self, role: &str, gw: &str) -> String {
        let node = self.ns(role);
        sysctl(&node, "net.ipv4.ip_forward=1");
        in_ns(&node, &["ip", "link", "add", "br0", "type", "bridge"]);
        in_ns(&node, &["ip", "addr", "add", gw, "dev", "br0"]);
        in_ns(&node, &["ip", "link", "set", "br0", "up"]);
        node
    }

    /// A pod on `node`'s bridge: veth `host_if` in the bridge, `eth0` in
    /// the pod with `addr`, default route via `via`.
    fn bridge_pod(
        &mut self,
        node: &str,
        role: &str,
        host_if: &str,
        addr: &str,
        via: &str,
    ) -> String {
        let pod = self.ns(role);
        self.veth(node, host_if, &pod, "eth0");
        in_ns(node, &["ip", "link", "set", host_if, "master", "br0"]);
        in_ns(&pod, &["ip", "addr", "add", addr, "dev", "eth0"]);
        in_ns(&pod, &["ip", "route", "add", "default", "via", via]);
        pod
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// `nft -f -` of `rules` in `ns`.
fn nft(ns: &str, rules: &str) {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nft");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(rules.as_bytes())
        .expect("write rules");
    let out = child.wait_with_output().expect("nft");
    assert!(
        out.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A packet capture inside a namespace, stopped on drop.
struct Capture {
    _dump: Server,
    path: PathBuf,
}

impl Capture {
    /// Stops the capture once what it saw is in its file, and returns the
    /// file. `any` captures keep tcpdump's ring blocks (its immediate mode
    /// reorders an `any` capture's copies), which the kernel hands over at
    /// most a second after they open.
    fn stop(self) -> PathBuf {
        std::thread::sleep(Duration::from_millis(1500));
        drop(self._dump);
        self.path
    }
}

fn capture(ns: &str, iface: &str, path: PathBuf) -> Capture {
    let dump = Server(
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(["tcpdump", "-Z", "root", "-U", "-i", iface])
            // A pod's capture in immediate mode: by default tcpdump holds
            // quiet traffic in a ring block for up to a second.
            .args(if iface == "any" {
                &[][..]
            } else {
                &["--immediate-mode"][..]
            })
            // `any` as osprey captures it: each packet with its interface.
            .args(if iface == "any" {
                &["-y", "LINUX_SLL2"][..]
            } else {
                &[]
            })
            .arg("-w")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump"),
    );
    // tcpdump writes its file header once it listens.
    assert!(
        wait_for(Duration::from_secs(10), || std::fs::metadata(&path)
            .is_ok_and(|m| m.len() >= 24))
        .is_some(),
        "tcpdump did not start in {ns}"
    );
    Capture { _dump: dump, path }
}

/// When both sides close at once their FINs cross in flight, and which one
/// comes first depends on where it is observed: the node counts each packet
/// where it first sees it (the sender's side), a pod sees its peer's FIN
/// only after the bridge. Every count and the rest of the history match.
fn crossed_fins(history: String) -> String {
    match history.strip_suffix("fF") {
        Some(head) => format!("{head}Ff"),
        None => history,
    }
}

type Rows = BTreeMap<Vec<String>, usize>;

/// TCP rows of a conn.log between the test's addresses (198.18/15), without
/// ts, uid and duration: what must match. The node also talks to itself
/// (the metrics scrape on loopback); that is not the test's.
fn tcp_rows(text: &str) -> Rows {
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
        let ours = |h: String| h.starts_with("198.18.") || h.starts_with("198.19.");
        if get("proto") != "tcp" || !(ours(get("id.orig_h")) || ours(get("id.resp_h"))) {
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
            "tunnel_parents",
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

fn replay_rows(pcap: &Path, dir: &Path) -> Rows {
    let out = Command::new(env!("CARGO_BIN_EXE_osprey"))
        .args(["replay", "-q", "-C", "--no-models", "--log-dir"])
        .arg(dir)
        .arg(pcap)
        .output()
        .expect("osprey replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tcp_rows(&netns::read(&dir.join("conn.log")))
}

/// What osprey on a node counted and suppressed.
struct NodeRun {
    rows: Rows,
    duplicates: f64,
    twins_folded: f64,
    overlay_folded: f64,
    /// The node's conn.log, for the failure message.
    log: String,
}

/// Runs osprey on `node` with `-i any` while `traffic` runs, then returns
/// its TCP rows and counters.
fn run_node(name: &str, node: &str, dir: &Path, traffic: impl FnOnce()) -> NodeRun {
    run_node_on(name, node, &["any"], dir, traffic)
}

/// [`run_node`] capturing on `interfaces`.
fn run_node_on(
    name: &str,
    node: &str,
    interfaces: &[&str],
    dir: &Path,
    traffic: impl FnOnce(),
) -> NodeRun {
    let live_dir = dir.join("live");
    std::fs::create_dir_all(&live_dir).expect("dir");
    let cfg = dir.join("osprey.toml");
    netns::write(
        &cfg,
        "[pipeline]\nconn_workers = 2\n\n[output]\nrotate_interval_secs = 0\n",
    );
    let mut args = vec!["--config", cfg.to_str().expect("utf-8")];
    for i in interfaces {
        args.extend(["-i", i]);
    }
    let mut osprey = Osprey::start(node, netns::port_for(name), &live_dir, &args);
    osprey.wait_ready(Duration::from_secs(30));
    traffic();
    std::thread::sleep(Duration::from_millis(500));
    let m = osprey.metrics();
    let run = NodeRun {
        rows: Rows::new(),
        duplicates: m.sum("osprey_conn_duplicate_packets_total", &[]),
        twins_folded: m.sum("osprey_conn_nat_twins_folded_total", &[]),
        overlay_folded: m.sum("osprey_conn_overlay_flows_folded_total", &[]),
        log: String::new(),
    };
    osprey.stop(Duration::from_secs(10));
    let log = netns::read(&live_dir.join("conn.log"));
    NodeRun {
        rows: tcp_rows(&log),
        log,
        ..run
    }
}

/// The rows the pods' own captures give: each connection once (a
/// connection between two captured pods is in both captures).
fn pod_view(captures: &[&Capture], dir: &Path) -> Rows {
    // The pods' captures (immediate mode) write their last packets.
    std::thread::sleep(Duration::from_millis(300));
    let mut want = Rows::new();
    for (i, c) in captures.iter().enumerate() {
        for (k, n) in replay_rows(&c.path, &dir.join(format!("replay{i}"))) {
            let e = want.entry(k).or_default();
            *e = (*e).max(n);
        }
    }
    want
}

fn fetch(ns: &str, url: &str, times: usize) {
    assert!(
        wait_for(Duration::from_secs(10), || netns::curl_ok(ns, url, "2")).is_some(),
        "{url} never answered from {ns}"
    );
    for _ in 1..times {
        assert!(netns::curl_ok(ns, url, "2"), "{url} from {ns}");
    }
}

fn compare(what: &str, want: &Rows, got: &NodeRun, min_conns: usize) {
    eprintln!(
        "{what}: pod view {want:#?}\nnode view {:#?}\nduplicates {} twins folded {} overlay flows folded {}",
        got.rows, got.duplicates, got.twins_folded, got.overlay_folded
    );
    assert!(
        want.values().sum::<usize>() >= min_conns,
        "{what}: the pods saw too little"
    );
    let missing: Vec<_> = want
        .iter()
        .filter(|(k, n)| got.rows.get(*k) != Some(n))
        .collect();
    let extra: Vec<_> = got
        .rows
        .iter()
        .filter(|(k, n)| want.get(*k) != Some(n))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: the node's conn.log differs from the pods'\nnot as the pods saw them: {missing:#?}\n\
         not in the pods' view: {extra:#?}\n(node log:\n{})",
        got.log
    );
}

#[test]
fn bridge_node_with_masquerade_and_a_node_port_logs_each_pod_connection_once() {
    let name = "bridge_node_with_masquerade_and_a_node_port_logs_each_pod_connection_once";
    if !netns::enabled_with(name, TOOLS) {
        return;
    }
    let mut t = Topo::new("br");
    let node = t.bridge_node("node", "198.18.77.1/24");
    let a = t.bridge_pod(&node, "a", "vha", "198.18.77.10/24", "198.18.77.1");
    let b = t.bridge_pod(&node, "b", "vhb", "198.18.77.20/24", "198.18.77.1");
    let d = t.bridge_pod(&node, "d", "vhd", "198.18.77.40/24", "198.18.77.1");
    // The uplink to an external host; the pod subnet is masqueraded out of
    // it and port 30080 of the node is a NodePort for pod b's 8080.
    let ext = t.ns("ext");
    t.veth(&node, "uplink", &ext, "eth0");
    in_ns(
        &node,
        &["ip", "addr", "add", "198.19.77.1/24", "dev", "uplink"],
    );
    in_ns(
        &ext,
        &["ip", "addr", "add", "198.19.77.2/24", "dev", "eth0"],
    );
    nft(
        &node,
        "table ip onv {\n\
         chain pre { type nat hook prerouting priority dstnat; \
           iifname \"uplink\" tcp dport 30080 dnat to 198.18.77.20:8080; }\n\
         chain post { type nat hook postrouting priority srcnat; \
           ip saddr 198.18.77.0/24 oifname \"uplink\" masquerade; }\n\
         }\n",
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let _web_b = netns::web_server(&b);
    let _web_ext = netns::web_server(&ext);
    let cap_a = capture(&a, "eth0", tmp.path().join("a.pcap"));
    let cap_b = capture(&b, "eth0", tmp.path().join("b.pcap"));
    let cap_node = capture(&node, "any", tmp.path().join("node.pcap"));
    let mut cap_c = None;
    let run = run_node(name, &node, tmp.path(), || {
        fetch(&a, "http://198.18.77.20:8080/", 2);
        fetch(&a, "http://198.19.77.2:8080/", 2);
        fetch(&ext, "http://198.19.77.1:30080/", 2);
        // Pod d talks to b, then goes away (its veth with it) while osprey
        // runs: capture goes on (b's capture holds d's connection).
        fetch(&d, "http://198.18.77.20:8080/", 1);
        std::thread::sleep(Duration::from_millis(300));
        in_ns(&node, &["ip", "link", "del", "vhd"]);
        // A pod that starts while osprey runs.
        let c = t.bridge_pod(&node, "c", "vhc", "198.18.77.30/24", "198.18.77.1");
        cap_c = Some(capture(&c, "eth0", tmp.path().join("c.pcap")));
        std::thread::sleep(Duration::from_millis(300));
        fetch(&c, "http://198.18.77.20:8080/", 1);
        fetch(&c, "http://198.19.77.2:8080/", 1);
    });
    let cap_c = cap_c.expect("pod c");
    let want = pod_view(&[&cap_a, &cap_b, &cap_c], tmp.path());
    compare("bridge + masquerade + NodePort", &want, &run, 9);
    // The node's own capture, replayed, says the same.
    let node_pcap = cap_node.stop();
    let node_replay = replay_rows(&node_pcap, &tmp.path().join("node-replay"));
    assert_eq!(
        node_replay, run.rows,
        "osprey replay of the node's any capture"
    );
    assert!(run.duplicates > 0.0, "no copy was counted as a duplicate");
    // a→ext twice, c→ext once (SNAT), ext→NodePort twice (DNAT).
    assert_eq!(run.twins_folded, 5.0, "NAT twins folded");
}

#[test]
fn routed_veths_with_host_routes_log_each_pod_connection_once() {
    let name = "routed_veths_with_host_routes_log_each_pod_connection_once";
    if !netns::enabled_with(name, TOOLS) {
        return;
    }
    // Calico's shape: no bridge; each pod has a /32 and a default route on
    // its veth, whose host side answers every ARP by proxy, and the node
    // routes each pod address to its veth.
    let mut t = Topo::new("rt");
    let node = t.ns("node");
    sysctl(&node, "net.ipv4.ip_forward=1");
    let mut pods = Vec::new();
    for (role, host_if, addr) in [
        ("a", "cali0a", "198.18.78.10"),
        ("b", "cali0b", "198.18.78.20"),
    ] {
        let pod = t.ns(role);
        t.veth(&node, host_if, &pod, "eth0");
        sysctl(&node, &format!("net.ipv4.conf.{host_if}.proxy_arp=1"));
        in_ns(
            &pod,
            &["ip", "addr", "add", &format!("{addr}/32"), "dev", "eth0"],
        );
        in_ns(&pod, &["ip", "route", "add", "default", "dev", "eth0"]);
        in_ns(
            &node,
            &["ip", "route", "add", &format!("{addr}/32"), "dev", host_if],
        );
        pods.push(pod);
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let _web = netns::web_server(&pods[1]);
    let cap_a = capture(&pods[0], "eth0", tmp.path().join("a.pcap"));
    let cap_b = capture(&pods[1], "eth0", tmp.path().join("b.pcap"));
    let run = run_node(name, &node, tmp.path(), || {
        fetch(&pods[0], "http://198.18.78.20:8080/", 4);
    });
    let want = pod_view(&[&cap_a, &cap_b], tmp.path());
    compare("routed veths", &want, &run, 4);
    assert!(run.duplicates > 0.0, "no copy was counted as a duplicate");
    assert_eq!(run.twins_folded, 0.0, "no NAT here");
}

#[test]
fn a_vxlan_overlay_between_two_nodes_logs_each_pod_connection_once() {
    let name = "a_vxlan_overlay_between_two_nodes_logs_each_pod_connection_once";
    // Port 8472, the kernel's and flannel's default.
    overlay(name, "vx", "8472");
}

#[test]
fn a_vxlan_overlay_on_the_iana_port_logs_each_pod_connection_once() {
    // Port 4789 (Calico, Cilium, Antrea): the engine decapsulates these
    // datagrams itself (Zeek's VXLAN analyzer), so an arriving datagram
    // opens the inner connection first, which is folded.
    let name = "a_vxlan_overlay_on_the_iana_port_logs_each_pod_connection_once";
    overlay(name, "vi", "4789");
}

/// Two nodes joined by a VXLAN overlay on `port`: per node a bridge for its
/// pod subnet, a VXLAN device over the underlay and a route to the other
/// node's pod subnet through it (flannel's shape).
fn overlay(name: &str, tag: &str, port: &str) {
    if !netns::enabled_with(name, TOOLS) {
        return;
    }
    let mut t = Topo::new(tag);
    let n1 = t.bridge_node("n1-", "198.18.80.1/24");
    let n2 = t.bridge_node("n2-", "198.18.81.1/24");
    t.veth(&n1, "under", &n2, "under");
    in_ns(
        &n1,
        &["ip", "addr", "add", "198.19.78.1/24", "dev", "under"],
    );
    in_ns(
        &n2,
        &["ip", "addr", "add", "198.19.78.2/24", "dev", "under"],
    );
    for (n, local, remote, overlay, other) in [
        (
            &n1,
            "198.19.78.1",
            "198.19.78.2",
            "198.18.90.1/24",
            ("198.18.81.0/24", "198.18.90.2"),
        ),
        (
            &n2,
            "198.19.78.2",
            "198.19.78.1",
            "198.18.90.2/24",
            ("198.18.80.0/24", "198.18.90.1"),
        ),
    ] {
        in_ns(
            n,
            &[
                "ip", "link", "add", "vxlan0", "type", "vxlan", "id", "42", "local", local,
                "remote", remote, "dstport", port, "dev", "under",
            ],
        );
        in_ns(n, &["ip", "addr", "add", overlay, "dev", "vxlan0"]);
        in_ns(n, &["ip", "link", "set", "vxlan0", "up"]);
        in_ns(
            n,
            &[
                "ip", "route", "add", other.0, "via", other.1, "dev", "vxlan0",
            ],
        );
    }
    let a = t.bridge_pod(&n1, "a", "vha", "198.18.80.10/24", "198.18.80.1");
    let b = t.bridge_pod(&n1, "b", "vhb", "198.18.80.20/24", "198.18.80.1");
    let c = t.bridge_pod(&n2, "c", "vhc", "198.18.81.10/24", "198.18.81.1");
    let tmp = tempfile::tempdir().expect("tempdir");
    let _web_b = netns::web_server(&b);
    let _web_c = netns::web_server(&c);
    let cap_a = capture(&a, "eth0", tmp.path().join("a.pcap"));
    let cap_b = capture(&b, "eth0", tmp.path().join("b.pcap"));
    let cap_node = capture(&n1, "any", tmp.path().join("node.pcap"));
    let run = run_node(name, &n1, tmp.path(), || {
        fetch(&a, "http://198.18.81.10:8080/", 3);
        fetch(&a, "http://198.18.80.20:8080/", 2);
    });
    let want = pod_view(&[&cap_a, &cap_b], tmp.path());
    compare(&format!("VXLAN overlay on {port}"), &want, &run, 5);
    let node_pcap = cap_node.stop();
    let node_replay = replay_rows(&node_pcap, &tmp.path().join("node-replay"));
    assert_eq!(
        node_replay, run.rows,
        "osprey replay of the node's any capture"
    );
    assert!(run.duplicates > 0.0, "no copy was counted as a duplicate");
    assert!(run.overlay_folded >= 1.0, "no underlay flow was folded");
    assert_eq!(run.twins_folded, 0.0, "no NAT here");
}

#[test]
fn host_network_traffic_is_logged_once_as_the_host_sends_it() {
    let name = "host_network_traffic_is_logged_once_as_the_host_sends_it";
    if !netns::enabled_with(name, TOOLS) {
        return;
    }
    // A host-network process (here: the node namespace itself) talks to a
    // pod on the bridge and to an external host; an external host talks to
    // it. Its view is the node's; the far sides' captures give it.
    let mut t = Topo::new("hn");
    let node = t.bridge_node("node", "198.18.79.1/24");
    let b = t.bridge_pod(&node, "b", "vhb", "198.18.79.20/24", "198.18.79.1");
    let ext = t.ns("ext");
    t.veth(&node, "uplink", &ext, "eth0");
    in_ns(
        &node,
        &["ip", "addr", "add", "198.19.79.1/24", "dev", "uplink"],
    );
    in_ns(
        &ext,
        &["ip", "addr", "add", "198.19.79.2/24", "dev", "eth0"],
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let _web_b = netns::web_server(&b);
    let _web_ext = netns::web_server(&ext);
    let _web_node = netns::web_server(&node);
    let cap_b = capture(&b, "eth0", tmp.path().join("b.pcap"));
    let cap_ext = capture(&ext, "eth0", tmp.path().join("ext.pcap"));
    let run = run_node(name, &node, tmp.path(), || {
        fetch(&node, "http://198.18.79.20:8080/", 2);
        fetch(&node, "http://198.19.79.2:8080/", 2);
        fetch(&ext, "http://198.19.79.1:8080/", 2);
    });
    let want = pod_view(&[&cap_b, &cap_ext], tmp.path());
    compare("host network", &want, &run, 6);
    assert!(run.duplicates > 0.0, "the bridge's copies were not dropped");
    assert_eq!(run.twins_folded, 0.0, "no NAT here");
}

#[test]
fn an_interface_list_counts_a_packet_crossing_two_of_them_once() {
    let name = "an_interface_list_counts_a_packet_crossing_two_of_them_once";
    if !netns::enabled_with(name, TOOLS) {
        return;
    }
    // Both pods' veths named: one capture (`any` filtered to them in the
    // kernel), so a packet crossing both counts once.
    let mut t = Topo::new("il");
    let node = t.bridge_node("node", "198.18.76.1/24");
    let a = t.bridge_pod(&node, "a", "vha", "198.18.76.10/24", "198.18.76.1");
    let b = t.bridge_pod(&node, "b", "vhb", "198.18.76.20/24", "198.18.76.1");
    let tmp = tempfile::tempdir().expect("tempdir");
    let _web_b = netns::web_server(&b);
    let cap_a = capture(&a, "eth0", tmp.path().join("a.pcap"));
    let run = run_node_on(name, &node, &["vha", "vhb"], tmp.path(), || {
        fetch(&a, "http://198.18.76.20:8080/", 3);
    });
    let want = pod_view(&[&cap_a], tmp.path());
    compare("interface list", &want, &run, 3);
    assert!(run.duplicates > 0.0, "no copy was counted as a duplicate");
}
