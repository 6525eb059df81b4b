//! osprey needs CAP_NET_RAW and CAP_NET_ADMIN, and nothing else: the
//! daemon runs from docs/osprey.example.toml (with the test's interface,
//! directories and enforcement on) under a throwaway system user holding
//! only those two capabilities, in the two ways the deployment files give
//! them:
//!
//! - as systemd/osprey.service does: ambient capabilities, a bounding set
//!   of the two, no_new_privs, and the unit's notification protocol
//!   (NOTIFY_SOCKET, WATCHDOG_USEC): READY=1, WATCHDOG=1 pings, STOPPING=1;
//! - as the container image under the Helm chart's securityContext: the
//!   runtime's sets (the two capabilities permitted and bounding, none
//!   ambient, no_new_privs from allowPrivilegeEscalation: false) and file
//!   capabilities on the osprey and nft executables, as the Dockerfile sets
//!   them. Without the file capabilities the same launch cannot capture.
//!
//! Each time capture counts a peer namespace's packets in /metrics, and
//! osprey's nftables table appears and blocks a port scan. A user without
//! the capabilities is refused at start.
//!
//! Needs root, ip, nft, nmap, curl, ping, python3, setpriv, useradd/userdel
//! and setcap; skips with the reason otherwise unless `OSPREY_E2E=1`.
//! Traffic stays between the namespaces the test creates (198.18.0.0/15);
//! the namespaces and the user are removed whatever the outcome.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::netns::{
    curl_ok, enabled_with, nft_set_elements, port_for, syn_scan, wait_for, web_server, Lan, Osprey,
};

/// NET_ADMIN (12) and NET_RAW (13), as /proc/PID/status prints them.
const NET_RAW_ADMIN: u64 = (1 << 12) | (1 << 13);

/// What these tests run besides osprey.
const TOOLS: [&str; 8] = [
    "nft", "nmap", "curl", "ping", "python3", "setpriv", "useradd", "userdel",
];

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A system user of its own, deleted (with its group) on drop.
struct SystemUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl SystemUser {
    fn new(tag: &str) -> SystemUser {
        let name = format!("osprey-{tag}-{}", std::process::id() % 100_000);
        // A leftover of a killed run has the same name only by chance.
        let _ = Command::new("userdel")
            .arg(&name)
            .stderr(Stdio::null())
            .status();
        run(Command::new("useradd").args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            &name,
        ]));
        let id = |flag: &str| -> u32 {
            String::from_utf8_lossy(&run(Command::new("id").args([flag, &name])).stdout)
                .trim()
                .parse()
                .expect("numeric id")
        };
        let (uid, gid) = (id("-u"), id("-g"));
        assert_ne!(uid, 0);
        SystemUser { name, uid, gid }
    }

    fn chown(&self, path: &Path) {
        run(Command::new("chown")
            .arg(format!("{}:{}", self.uid, self.gid))
            .arg(path));
    }
}

impl Drop for SystemUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// A directory the user can read (the config, the binaries) with logs/ and
/// spool/ it can write.
struct Workdir {
    _tmp: tempfile::TempDir,
    path: PathBuf,
}

impl Workdir {
    fn new(user: &SystemUser) -> Workdir {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().to_path_buf();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        for d in ["logs", "spool"] {
            std::fs::create_dir(path.join(d)).unwrap();
            user.chown(&path.join(d));
        }
        Workdir { _tmp: tmp, path }
    }

    /// A copy of a program the user may run (the build directory may not
    /// be reachable for it, and file capabilities go on the copy).
    fn copy_program(&self, from: &Path, name: &str) -> PathBuf {
        let to = self.path.join(name);
        std::fs::copy(from, &to).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
        to
    }

    /// docs/osprey.example.toml with the test's interface, directories,
    /// metrics address and nft, and enforcement on.
    fn config(&self, iface: &str, port: u16, nft: &str) -> PathBuf {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/osprey.example.toml"
        ))
        .expect("example config");
        let mut cfg: toml::Table = text.parse().expect("example config parses");
        let section = |cfg: &mut toml::Table, name: &str| -> toml::Table {
            cfg[name].as_table().expect(name).clone()
        };
        let mut capture = section(&mut cfg, "capture");
        capture.insert("interfaces".into(), vec![iface.to_string()].into());
        cfg.insert("capture".into(), capture.into());
        let mut output = section(&mut cfg, "output");
        output.insert("log_dir".into(), self.dir("logs").into());
        cfg.insert("output".into(), output.into());
        let mut metrics = section(&mut cfg, "metrics");
        metrics.insert("listen_addr".into(), format!("127.0.0.1:{port}").into());
        cfg.insert("metrics".into(), metrics.into());
        let mut respond = section(&mut cfg, "respond");
        respond.insert("enforce".into(), true.into());
        let mut nft_cfg = respond["nft"].as_table().expect("respond.nft").clone();
        nft_cfg.insert("nft_path".into(), nft.into());
        nft_cfg.insert("reconcile_interval_secs".into(), 1.into());
        respond.insert("nft".into(), nft_cfg.into());
        cfg.insert("respond".into(), respond.into());
        let mut platform = section(&mut cfg, "platform");
        platform.insert("spool_dir".into(), self.dir("spool").into());
        cfg.insert("platform".into(), platform.into());
        let path = self.path.join("osprey.toml");
        std::fs::write(&path, toml::to_string(&cfg).expect("toml")).expect("config");
        path
    }

    fn dir(&self, name: &str) -> String {
        self.path.join(name).to_string_lossy().into_owned()
    }
}

/// How the capabilities reach osprey.
enum Grant {
    /// systemd's AmbientCapabilities with NoNewPrivileges.
    Ambient,
    /// A container runtime's: the two permitted (setpriv keeps them across
    /// the change of user, as runc does) and bounding, none ambient, and
    /// no_new_privs; only file capabilities make them effective in the
    /// program.
    Container,
    /// None at all.
    Nothing,
}

/// Who runs which osprey where.
struct Launch<'a> {
    user: &'a SystemUser,
    work: &'a Workdir,
    ns: &'a str,
    program: &'a Path,
    config: &'a Path,
    port: u16,
}

/// Starts `program run --config config` in `ns` as `user`, through setpriv.
fn start_as(l: &Launch, grant: Grant, env: &[(&str, String)]) -> Osprey {
    let Launch {
        user,
        work,
        ns,
        program,
        config,
        port,
    } = *l;
    let stderr = work.path.join(format!("osprey-{port}.stderr"));
    let err = std::fs::File::create(&stderr).expect("stderr file");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "setpriv"])
        .arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .arg("--init-groups");
    if !matches!(grant, Grant::Nothing) {
        cmd.arg("--bounding-set=-all,+net_raw,+net_admin");
    }
    match grant {
        Grant::Ambient => {
            cmd.args([
                "--inh-caps=-all,+net_raw,+net_admin",
                "--ambient-caps=-all,+net_raw,+net_admin",
                "--no-new-privs",
            ]);
        }
        Grant::Container => {
            cmd.args(["--inh-caps=-all", "--no-new-privs"]);
        }
        Grant::Nothing => {
            cmd.args(["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]);
        }
    }
    cmd.arg("--")
        .arg(program)
        .args(["run", "--config"])
        .arg(config)
        .env("OSPREY_LOG", "info")
        .stdout(Stdio::null())
        .stderr(err);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("starting osprey through setpriv");
    Osprey {
        child: Some(child),
        ns: ns.to_string(),
        port,
        log_dir: work.path.join("logs"),
        stderr,
    }
}

/// Starts osprey as `l` says with `grant`, expecting a refusal: its
/// stderr once it has exited unsuccessfully, `None` if it kept running
/// for 20 s or exited successfully.
fn refused_start(l: &Launch, grant: Grant) -> Option<String> {
    let mut refused = start_as(l, grant, &[]);
    let mut child = refused.child.take().expect("started");
    let ended = wait_for(Duration::from_secs(20), || {
        child.try_wait().ok().flatten().is_some()
    });
    if ended.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    let failed = !child.wait().expect("wait").success();
    failed.then(|| refused.stderr_text())
}

/// The capability sets and uid of a running process.
struct ProcStatus {
    uid: u32,
    eff: u64,
    prm: u64,
    bnd: u64,
}

fn proc_status(pid: u32) -> ProcStatus {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
            .trim()
            .to_string()
    };
    let hex = |name: &str| u64::from_str_radix(&field(name), 16).expect("hex");
    ProcStatus {
        uid: field("Uid:")
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap(),
        eff: hex("CapEff:"),
        prm: hex("CapPrm:"),
        bnd: hex("CapBnd:"),
    }
}

/// What the deployment promises, checked on a running sensor: it runs as
/// the user with exactly the two capabilities, captures, has created its
/// nftables table, and blocks a scanner.
fn exercise(lan: &Lan, osprey: &mut Osprey, user: &SystemUser) {
    osprey.wait_ready(Duration::from_secs(30));
    let pid = osprey.child.as_ref().unwrap().id();
    // `ip netns exec` and setpriv exec in place: the child is osprey.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_eq!(comm.trim(), "osprey", "the child is not osprey itself");
    let st = proc_status(pid);
    assert_eq!(st.uid, user.uid, "osprey does not run as the test user");
    assert_eq!(
        st.eff, NET_RAW_ADMIN,
        "effective capabilities {:#x}, expected NET_RAW|NET_ADMIN only",
        st.eff
    );
    assert_eq!(st.prm, NET_RAW_ADMIN, "permitted {:#x}", st.prm);
    assert_eq!(st.bnd, NET_RAW_ADMIN, "bounding set {:#x}", st.bnd);

    // The table exists, created by the unprivileged osprey.
    let table = Lan::try_exec(&lan.victim, &["nft", "list", "table", "inet", "osprey"]);
    assert!(
        table.status.success(),
        "no nftables table inet osprey: {}\nosprey said:\n{}",
        String::from_utf8_lossy(&table.stderr),
        osprey.stderr_text()
    );

    // Capture: the attacker's pings are counted.
    let web = format!("http://{}:8080/", lan.victim_ip);
    let before = osprey.metrics().sum("osprey_capture_packets_total", &[]);
    let ping = Lan::try_exec(
        &lan.attacker,
        &["ping", "-c", "5", "-i", "0.2", "-W", "1", &lan.victim_ip],
    );
    assert!(ping.status.success(), "the attacker cannot ping the victim");
    // From the client: a conversation would make the attacker a known-good
    // peer, which forgeable scan evidence never gets blocked.
    assert!(
        curl_ok(&lan.client, &web, "2"),
        "the web server does not answer"
    );
    let counted = wait_for(Duration::from_secs(5), || {
        osprey.metrics().sum("osprey_capture_packets_total", &[]) >= before + 10.0
    });
    assert!(
        counted.is_some(),
        "capture did not count the 10 echo packets: {} -> {}",
        before,
        osprey.metrics().sum("osprey_capture_packets_total", &[])
    );

    // Enforcement: a SYN scan gets the scanner blocked, and its traffic
    // dropped.
    let nmap = Lan::try_exec(&lan.attacker, &syn_scan(&lan.victim_ip));
    assert!(nmap.status.success(), "nmap failed");
    let hit = wait_for(Duration::from_secs(10), || {
        nft_set_elements(&lan.victim, "block_v4").contains(&lan.attacker_ip)
    });
    assert!(
        hit.is_some(),
        "the scanner was not blocked; osprey said:\n{}",
        osprey.stderr_text()
    );
    assert!(
        !curl_ok(&lan.attacker, &web, "2"),
        "the blocked scanner still reaches the web server"
    );
    let m = osprey.metrics();
    assert!(
        m.sum(
            "osprey_respond_actions_total",
            &["kind=\"block\"", "result=\"enforced\""]
        ) >= 1.0
    );
    eprintln!(
        "uid {} with capabilities {:#x}: {} packets captured, scanner blocked",
        st.uid,
        st.eff,
        m.sum("osprey_capture_packets_total", &[])
    );
}

/// systemd's notification socket, as the service manager listens on it.
struct NotifySocket {
    path: PathBuf,
    got: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl NotifySocket {
    fn new(work: &Workdir) -> NotifySocket {
        let path = work.path.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("notify socket");
        // Like /run/systemd/notify: any local process may send.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends when the socket file is gone and nothing comes.
            let mut idle = 0;
            while idle < 600 {
                match sock.recv(&mut buf) {
                    Ok(n) => {
                        idle = 0;
                        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                        sink.lock().unwrap().push((Instant::now(), msg));
                    }
                    Err(_) => idle += 1,
                }
            }
        });
        NotifySocket { path, got }
    }

    fn messages(&self) -> Vec<(Instant, String)> {
        self.got.lock().unwrap().clone()
    }

    fn count(&self, line: &str) -> usize {
        self.messages()
            .iter()
            .filter(|(_, m)| m.lines().any(|l| l == line))
            .count()
    }
}

/// As systemd/osprey.service runs it: a system user, ambient NET_RAW and
/// NET_ADMIN only, no_new_privs, Type=notify with a watchdog.
#[test]
fn runs_as_the_systemd_unit_does_with_two_ambient_capabilities() {
    let test = "runs_as_the_systemd_unit_does_with_two_ambient_capabilities";
    if !enabled_with(test, &TOOLS) {
        return;
    }
    let user = SystemUser::new("unit");
    let work = Workdir::new(&user);
    let lan = Lan::new();
    let _web = web_server(&lan.victim);
    let program = work.copy_program(Path::new(env!("CARGO_BIN_EXE_osprey")), "osprey");

    // Without the capabilities the start is refused, with a reason.
    let port = port_for("least-privilege-unit");
    let config = work.config(&lan.victim_if, port, "nft");
    let launch = Launch {
        user: &user,
        work: &work,
        ns: &lan.victim,
        program: &program,
        config: &config,
        port,
    };
    let err = refused_start(&launch, Grant::Nothing)
        .unwrap_or_else(|| panic!("osprey without capabilities kept running"));
    assert!(
        err.to_lowercase().contains("permi") || err.contains("CAP_NET_RAW"),
        "no permission error from osprey without capabilities:\n{err}"
    );
    eprintln!(
        "without capabilities: {}",
        err.lines().find(|l| l.contains("error")).unwrap_or("")
    );

    // With them, as the unit grants them, and systemd listening.
    let notify = NotifySocket::new(&work);
    let watchdog = Duration::from_millis(600);
    let mut osprey = start_as(
        &launch,
        Grant::Ambient,
        &[
            ("NOTIFY_SOCKET", notify.path.to_string_lossy().into_owned()),
            ("WATCHDOG_USEC", watchdog.as_micros().to_string()),
        ],
    );
    exercise(&lan, &mut osprey, &user);

    // READY=1 came once the sensor was ready, and the watchdog is pinged
    // at about half its period.
    assert_eq!(notify.count("READY=1"), 1, "{:?}", notify.messages());
    let pings_before = notify.count("WATCHDOG=1");
    std::thread::sleep(Duration::from_millis(1500));
    let pings = notify.count("WATCHDOG=1") - pings_before;
    assert!(
        (3..=8).contains(&pings),
        "{pings} watchdog pings in 1.5 s with WATCHDOG_USEC={}",
        watchdog.as_micros()
    );
    let stopped_in = osprey.stop(Duration::from_secs(15));
    assert!(
        wait_for(Duration::from_secs(2), || notify.count("STOPPING=1") == 1).is_some(),
        "no STOPPING=1: {:?}",
        notify.messages()
    );
    let msgs = notify.messages();
    let ready_at = msgs.iter().position(|(_, m)| m.contains("READY=1"));
    let stop_at = msgs.iter().position(|(_, m)| m.contains("STOPPING=1"));
    assert!(ready_at < stop_at);
    assert!(
        !msgs[stop_at.unwrap()..]
            .iter()
            .any(|(_, m)| m.contains("WATCHDOG=1")),
        "watchdog pings after STOPPING=1"
    );
    eprintln!(
        "notify: READY=1, {} WATCHDOG=1, STOPPING=1; stopped in {:.1} s",
        notify.count("WATCHDOG=1"),
        stopped_in.as_secs_f64()
    );

    // Its logs are its own.
    let conn_log = work.path.join("logs/conn.log");
    let meta = std::fs::metadata(&conn_log).expect("conn.log written");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), user.uid);
}

/// As the container image runs under the chart's securityContext: an
/// unprivileged user, NET_RAW and NET_ADMIN permitted and bounding,
/// no_new_privs, and file capabilities on osprey and nft.
#[test]
fn runs_as_the_image_does_with_file_capabilities() {
    let test = "runs_as_the_image_does_with_file_capabilities";
    if !enabled_with(test, &[&TOOLS[..], &["setcap"]].concat()) {
        return;
    }
    let user = SystemUser::new("image");
    let work = Workdir::new(&user);
    let lan = Lan::new();
    let _web = web_server(&lan.victim);
    let plain = work.copy_program(Path::new(env!("CARGO_BIN_EXE_osprey")), "osprey-plain");
    let program = work.copy_program(Path::new(env!("CARGO_BIN_EXE_osprey")), "osprey");
    let nft_path =
        String::from_utf8(run(Command::new("sh").args(["-c", "command -v nft"])).stdout).unwrap();
    let nft = work.copy_program(Path::new(nft_path.trim()), "nft");
    // The Dockerfile's setcap lines.
    run(Command::new("setcap")
        .arg("cap_net_raw,cap_net_admin=ep")
        .arg(&program));
    run(Command::new("setcap").arg("cap_net_admin=ep").arg(&nft));

    let port = port_for("least-privilege-image");
    let config = work.config(&lan.victim_if, port, &nft.to_string_lossy());

    // Without file capabilities the runtime's permitted set does not
    // survive the exec (Kubernetes gives no ambient capabilities): osprey
    // cannot capture.
    let launch = Launch {
        user: &user,
        work: &work,
        ns: &lan.victim,
        program: &plain,
        config: &config,
        port,
    };
    let err = refused_start(&launch, Grant::Container).unwrap_or_else(|| {
        panic!("osprey without file capabilities started in the container's sets")
    });
    eprintln!(
        "without file capabilities: {}",
        err.lines().find(|l| l.contains("error")).unwrap_or("")
    );

    let launch = Launch {
        program: &program,
        ..launch
    };
    let mut osprey = start_as(&launch, Grant::Container, &[]);
    exercise(&lan, &mut osprey, &user);
    osprey.stop(Duration::from_secs(15));
}
