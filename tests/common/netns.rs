//! Network namespaces for the live tests, and osprey running inside one.
//!
//! Traffic only ever flows between namespaces a test creates itself (a
//! veth pair with 198.18.0.0/15 addresses) or on a namespace's own
//! loopback; the namespaces are deleted when the guard drops, whatever the
//! test's outcome. IPv6 is switched off in them so that the kernel's own
//! neighbour discovery does not add packets to what a test counts.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Whether the live tests run; `Err` carries the reason printed on skip.
/// `OSPREY_E2E=1` turns a skip into a failure (CI sets it).
pub fn enabled(test: &str) -> bool {
    let forced = std::env::var("OSPREY_E2E").is_ok_and(|v| v == "1");
    let reason = if !is_root() {
        Some("needs root (network namespaces, packet capture)")
    } else if !have("ip") {
        Some("needs `ip` (iproute2)")
    } else if !have("tcpreplay") {
        Some("needs `tcpreplay`")
    } else {
        None
    };
    match reason {
        None => true,
        Some(r) if forced => panic!("{test}: OSPREY_E2E=1 but the test cannot run: {r}"),
        Some(r) => {
            eprintln!("{test}: skipped: {r} (set OSPREY_E2E=1 to make this an error)");
            false
        }
    }
}

/// [`enabled`], and every one of `tools` is installed; a missing tool is
/// a skip with the reason printed, or a failure under `OSPREY_E2E=1`.
pub fn enabled_with(test: &str, tools: &[&str]) -> bool {
    if !enabled(test) {
        return false;
    }
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!("needs {}", missing.join(", "));
    if std::env::var("OSPREY_E2E").is_ok_and(|v| v == "1") {
        panic!("{test}: OSPREY_E2E=1 but the test cannot run: {why}");
    }
    eprintln!("{test}: skipped: {why}");
    false
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(cmd: &[&str]) -> Output {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", cmd.join(" ")));
    assert!(
        out.status.success(),
        "{} failed: {}",
        cmd.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Switches IPv6 off in `ns` (through /proc/sys, which shows the sysctls
/// of the namespace the writer is in).
fn no_ipv6(ns: &str) {
    run(&[
        "ip", "netns", "exec", ns, "sh", "-c",
        "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 && echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
    ]);
}

static SERIAL: AtomicU32 = AtomicU32::new(0);

/// A suffix no other namespace of this or a concurrent test run has.
fn unique_id() -> String {
    format!(
        "{}{}",
        std::process::id() % 100_000,
        SERIAL.fetch_add(1, Ordering::Relaxed)
    )
}

/// Two namespaces joined by a veth pair: `a` (where osprey captures) and
/// `b` (where traffic is sent from).
pub struct VethPair {
    pub ns_a: String,
    pub ns_b: String,
    pub if_a: String,
    pub if_b: String,
}

impl VethPair {
    pub fn new() -> VethPair {
        let id = unique_id();
        let p = VethPair {
            ns_a: format!("osprey-a-{id}"),
            ns_b: format!("osprey-b-{id}"),
            if_a: format!("ospa{id}"),
            if_b: format!("ospb{id}"),
        };
        for ns in [&p.ns_a, &p.ns_b] {
            run(&["ip", "netns", "add", ns]);
            no_ipv6(ns);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        run(&[
            "ip", "-n", &p.ns_a, "link", "add", &p.if_a, "type", "veth", "peer", "name", &p.if_b,
            "netns", &p.ns_b,
        ]);
        // Large frames of the lab captures (offloaded segments) must fit.
        for (ns, ifc, addr) in [
            (&p.ns_a, &p.if_a, "198.18.0.1/30"),
            (&p.ns_b, &p.if_b, "198.18.0.2/30"),
        ] {
            run(&["ip", "-n", ns, "link", "set", ifc, "mtu", "65535"]);
            run(&["ip", "-n", ns, "addr", "add", addr, "dev", ifc]);
            run(&["ip", "-n", ns, "link", "set", ifc, "up"]);
        }
        p
    }

    /// Sends `pcap` out of `b` with tcpreplay; returns the packets it
    /// reports as sent.
    pub fn replay(&self, pcap: &Path, extra: &[&str]) -> u64 {
        let mut cmd = vec![
            "ip",
            "netns",
            "exec",
            &self.ns_b,
            "tcpreplay",
            "-i",
            &self.if_b,
        ];
        cmd.extend_from_slice(extra);
        let p = pcap.to_string_lossy().into_owned();
        cmd.push(&p);
        let out = run(&cmd);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let failed = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Failed packets:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        assert_eq!(failed, 0, "tcpreplay could not send some packets:\n{text}");
        text.lines()
            .find_map(|l| l.trim().strip_prefix("Successful packets:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no packet count in tcpreplay's output:\n{text}"))
    }

    /// A counter of an interface as the kernel keeps it.
    pub fn if_stat(&self, ns: &str, ifc: &str, name: &str) -> u64 {
        let out = run(&[
            "ip",
            "netns",
            "exec",
            ns,
            "cat",
            &format!("/sys/class/net/{ifc}/statistics/{name}"),
        ]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for ns in [&self.ns_a, &self.ns_b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A fresh namespace with only its loopback, deleted on drop.
pub struct LoopNs {
    pub ns: String,
}

impl LoopNs {
    pub fn new() -> LoopNs {
        let ns = format!("osprey-l-{}", unique_id());
        run(&["ip", "netns", "add", &ns]);
        no_ipv6(&ns);
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        LoopNs { ns }
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, cmd: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.ns];
        full.extend_from_slice(cmd);
        run(&full)
    }
}

impl Drop for LoopNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// osprey running in a namespace.
pub struct Osprey {
    pub child: Option<Child>,
    pub ns: String,
    pub port: u16,
    pub log_dir: PathBuf,
    pub stderr: PathBuf,
}

impl Osprey {
    /// Starts `osprey run` in `ns` with `args`; metrics on 127.0.0.1:`port`
    /// inside the namespace.
    pub fn start(ns: &str, port: u16, log_dir: &Path, args: &[&str]) -> Osprey {
        Osprey::start_with_env(ns, port, log_dir, args, &[])
    }

    /// [`Osprey::start`] with extra environment variables.
    pub fn start_with_env(
        ns: &str,
        port: u16,
        log_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Osprey {
        let stderr = log_dir.join("osprey.stderr");
        let err = std::fs::File::create(&stderr).expect("stderr file");
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_osprey"), "run"])
            .args(["--metrics-addr", &addr, "--log-dir"])
            .arg(log_dir)
            .args(args)
            .env("OSPREY_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("starting osprey");
        Osprey {
            child: Some(child),
            ns: ns.to_string(),
            port,
            log_dir: log_dir.to_path_buf(),
            stderr,
        }
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// GET `path` inside the namespace: (status, body), or `None` while
    /// nothing listens.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        // The test process stays in its own namespace; bash's /dev/tcp
        // makes the request from inside osprey's.
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/{} || exit 7; printf 'GET {} HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n' >&3; cat <&3",
            self.port, path
        );
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "bash", "-c", &script])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((status, body))
    }

    /// Waits until `/readyz` answers 200; returns every status seen first.
    pub fn wait_ready(&mut self, limit: Duration) -> Vec<Option<u16>> {
        let start = Instant::now();
        let mut seen = Vec::new();
        loop {
            let s = self.get("/readyz").map(|(s, _)| s);
            seen.push(s);
            if s == Some(200) {
                return seen;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "osprey exited ({status}) before it was ready:\n{}",
                    self.stderr_text()
                );
            }
            assert!(
                start.elapsed() < limit,
                "osprey not ready after {limit:?}:\n{}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn metrics(&self) -> Metrics {
        let (status, body) = self.get("/metrics").expect("/metrics answers");
        assert_eq!(status, 200);
        Metrics(body)
    }

    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            // bash's builtin kill: no dependency on procps.
            let _ = Command::new("bash")
                .args(["-c", &format!("kill -{sig} {}", c.id())])
                .status();
        }
    }

    /// SIGTERM, then waits for the exit; returns how long it took.
    pub fn stop(&mut self, limit: Duration) -> Duration {
        self.signal("TERM");
        let start = Instant::now();
        let mut child = self.child.take().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                assert!(
                    status.success(),
                    "osprey exited with {status}:\n{}",
                    self.stderr_text()
                );
                return start.elapsed();
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                panic!(
                    "osprey did not exit within {limit:?} of SIGTERM:\n{}",
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Osprey {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A scrape, with lookups by name and labels.
pub struct Metrics(pub String);

impl Metrics {
    /// Sum of every sample of `name` whose labels contain all `labels`
    /// (`key="value"` strings).
    pub fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (n, rest) = match series.split_once('{') {
                    Some((n, rest)) => (n, rest),
                    None => (series, ""),
                };
                (n == name && labels.iter().all(|want| rest.contains(want)))
                    .then(|| value.parse::<f64>().ok())
                    .flatten()
            })
            .sum()
    }
}

/// Fetches a URL-less resource: a free TCP port on loopback (namespaces
/// have their own port spaces, so any fixed port would do; a varying one
/// keeps parallel tests apart in debugging sessions).
pub fn port_for(test: &str) -> u16 {
    let h = test
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    20_000 + (h % 20_000) as u16
}

/// Reads a whole file, or an empty string.
pub fn read(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// Writes a file, creating parents.
pub fn write(path: &Path, text: &str) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let mut f = std::fs::File::create(path).expect("create");
    f.write_all(text.as_bytes()).expect("write");
}

/// Three namespaces: a victim (where osprey runs) joined by one veth pair
/// to an attacker and by another to a client, each on its own /24 of
/// 198.18.0.0/15, routed through the victim.
pub struct Lan {
    pub victim: String,
    pub attacker: String,
    pub client: String,
    /// The victim's interface towards the attacker (osprey captures here).
    pub victim_if: String,
    pub victim_ip: String,
    pub attacker_ip: String,
    pub client_ip: String,
}

impl Lan {
    pub fn new() -> Lan {
        let id = unique_id();
        let lan = Lan {
            victim: format!("osprey-v-{id}"),
            attacker: format!("osprey-x-{id}"),
            client: format!("osprey-c-{id}"),
            victim_if: format!("ospv{id}"),
            victim_ip: "198.18.1.1".into(),
            attacker_ip: "198.18.1.2".into(),
            client_ip: "198.18.2.2".into(),
        };
        for ns in [&lan.victim, &lan.attacker, &lan.client] {
            run(&["ip", "netns", "add", ns]);
            no_ipv6(ns);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        let client_if = format!("ospw{id}");
        for (peer_ns, vif, pif, net) in [
            (
                &lan.attacker,
                &lan.victim_if,
                format!("ospx{id}"),
                "198.18.1",
            ),
            (&lan.client, &client_if, format!("ospc{id}"), "198.18.2"),
        ] {
            run(&[
                "ip",
                "-n",
                &lan.victim,
                "link",
                "add",
                vif,
                "type",
                "veth",
                "peer",
                "name",
                &pif,
                "netns",
                peer_ns,
            ]);
            run(&[
                "ip",
                "-n",
                &lan.victim,
                "addr",
                "add",
                &format!("{net}.1/24"),
                "dev",
                vif,
            ]);
            run(&["ip", "-n", &lan.victim, "link", "set", vif, "up"]);
            run(&[
                "ip",
                "-n",
                peer_ns,
                "addr",
                "add",
                &format!("{net}.2/24"),
                "dev",
                &pif,
            ]);
            run(&["ip", "-n", peer_ns, "link", "set", &pif, "up"]);
            run(&[
                "ip",
                "-n",
                peer_ns,
                "route",
                "add",
                "198.18.0.0/15",
                "via",
                &format!("{net}.1"),
            ]);
        }
        lan
    }

    /// Runs a command in `ns`, returning its output whatever the status.
    pub fn try_exec(ns: &str, cmd: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(cmd)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", cmd.join(" ")))
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in [&self.victim, &self.attacker, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A child process killed when the guard drops (a test's server).
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Python's http.server on port 8080 of `ns`, for clients to reach.
pub fn web_server(ns: &str) -> Server {
    Server(
        Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-m", "http.server", "8080"])
            .args(["--bind", "0.0.0.0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 http.server"),
    )
}

/// Whether `curl` from `ns` fetches `url` within `timeout_secs`.
pub fn curl_ok(ns: &str, url: &str, timeout_secs: &str) -> bool {
    Lan::try_exec(
        ns,
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            timeout_secs,
            url,
        ],
    )
    .status
    .success()
}

/// Polls `f` every 20 ms (the resolution of latencies it measures) up to
/// `limit`; how long it took to hold.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The bounded SYN scan the response tests expect osprey to block: ports
/// 1-1000 and 8080 of `victim_ip`, no retries.
pub fn syn_scan(victim_ip: &str) -> [&str; 10] {
    [
        "nmap",
        "-sS",
        "-Pn",
        "-n",
        "-T4",
        "--max-retries",
        "0",
        "-p",
        "1-1000,8080",
        victim_ip,
    ]
}

/// The elements of osprey's nft set `set` in `ns` (addresses, and CIDRs
/// as `addr/len`); empty while the table or set does not exist.
pub fn nft_set_elements(ns: &str, set: &str) -> Vec<String> {
    let out = Lan::try_exec(ns, &["nft", "-j", "list", "set", "inet", "osprey", set]);
    if !out.status.success() {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut found = Vec::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        for e in item["set"]["elem"].as_array().into_iter().flatten() {
            let val = if e["elem"].is_object() {
                &e["elem"]["val"]
            } else {
                e
            };
            match val {
                serde_json::Value::String(s) => found.push(s.clone()),
                serde_json::Value::Object(o) if o.contains_key("prefix") => found.push(format!(
                    "{}/{}",
                    o["prefix"]["addr"].as_str().unwrap_or(""),
                    o["prefix"]["len"]
                )),
                _ => {}
            }
        }
    }
    found
}
