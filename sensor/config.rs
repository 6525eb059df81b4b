//! The daemon's configuration file (`osprey run --config FILE`): TOML or
//! YAML by extension, every key optional with the default documented in
//! `docs/osprey.example.toml`, unknown keys refused with their full path
//! (`capture.snaplen`), values checked before anything starts.
//!
//! Units are in the key names (`_secs`, `_bytes`, `_ms`) so a reader of a
//! Helm values file never has to guess them.

pub use crate::report::live::OutputConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::conn::config::{Cidr, Port};
use crate::conn::EngineConfig;

/// Why a configuration was refused; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {key}: {reason}")]
    Parse {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error("{path}: {key}: {reason}")]
    Invalid {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error("{path}: unknown file type (expected .toml, .yaml or .yml)")]
    Format { path: PathBuf },
}

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub capture: CaptureConfig,
    pub pipeline: PipelineConfig,
    pub conn: ConnConfig,
    pub output: OutputConfig,
    pub models: ModelsConfig,
    pub metrics: MetricsConfig,
    /// Per-source evidence the rules decide on (`sensor/evidence`).
    pub evidence: crate::evidence::EvidenceConfig,
    pub respond: RespondConfig,
    /// The management platform's API: alerts, actions and a heartbeat.
    pub platform: crate::report::platform::PlatformConfig,
    /// Pod identity on events (`sensor/identity`).
    pub identity: crate::identity::IdentityConfig,
}

/// Live capture (libpcap).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// Interfaces to capture on; `any` is every interface of the network
    /// namespace (Linux cooked capture).
    pub interfaces: Vec<String>,
    /// Bytes kept of each packet. Headers are all conn.log needs, but
    /// service identification reads the first payload bytes.
    pub snaplen_bytes: u32,
    /// Size of libpcap's mmap ring per interface: how long a burst the
    /// kernel can hold while osprey is busy.
    pub buffer_size_bytes: u32,
    pub promiscuous: bool,
    /// BPF filter, as for tcpdump or Zeek's `-f` (empty: everything).
    pub bpf_filter: String,
    /// How long a read waits on a quiet wire before packet time is
    /// advanced by the clock, so that timeouts still fire.
    pub read_timeout_ms: u32,
    /// The kernel hands packets over a ring block at a time, when the block
    /// is full or this long after its first packet: one wake-up per block
    /// keeps capture ahead of floods, at up to this much added latency.
    /// 0 is libpcap's immediate mode: each packet at once, one wake-up
    /// each (several times the capture CPU under load).
    pub block_timeout_ms: u32,
    /// A partly filled batch is handed to its conn worker after this long,
    /// which bounds the delay a slow trickle of packets sees.
    pub flush_interval_ms: u32,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            interfaces: vec!["any".into()],
            snaplen_bytes: 262_144,
            buffer_size_bytes: 64 << 20,
            promiscuous: true,
            bpf_filter: String::new(),
            read_timeout_ms: 100,
            block_timeout_ms: 5,
            flush_interval_ms: 5,
        }
    }
}

/// Threads and queues.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Connection-table shards, one thread each (0: one per core beyond
    /// the first, at least one). Two fit a 2-core node: capture and
    /// scoring share the other core.
    pub conn_workers: usize,
    /// Packets per batch from capture to a conn worker.
    pub batch_packets: usize,
    /// Batches queued per conn worker; when full, new packets for it are
    /// dropped and counted instead of stalling capture.
    pub packet_queue_batches: usize,
    /// Record batches queued for conn.log and scoring; beyond half of it
    /// records are logged but not scored (counted).
    pub record_queue_batches: usize,
    /// Connections tracked per shard before the oldest idle one is evicted
    /// (bounds memory under a spoofed flood).
    pub max_connections_per_worker: usize,
    /// Rows per inference call.
    pub score_batch_rows: usize,
    /// Longest a record waits for its batch to fill before it is scored.
    pub score_max_wait_ms: u64,
    /// Records that waited longer than this for the scorer (in the queue
    /// from the conn workers, or once due after the look-ahead) are
    /// logged but not scored (counted): under overload, verdicts stay
    /// timely and the conn workers are never kept waiting.
    pub score_max_lag_ms: u64,
    /// Niceness of the scoring thread (0-19, added to the process's own):
    /// the one stage that may shed gives way to capture and the conn
    /// workers whenever they share a core, instead of taking an equal
    /// share and making them drop packets. It ranks osprey's threads
    /// among themselves (a pod or a systemd unit has its own cgroup).
    pub score_nice: i32,
    /// Host-context memory: flows remembered for the models' windows (the
    /// oldest are forgotten first, counted), shared by models with the
    /// same columns; about 1 KiB each.
    pub context_max_flows: usize,
    /// How far behind the newest flow a late record may start and still
    /// see its context.
    pub context_retention_secs: f64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            conn_workers: 0,
            batch_packets: 512,
            packet_queue_batches: 64,
            record_queue_batches: 256,
            max_connections_per_worker: 250_000,
            score_batch_rows: crate::score::DEFAULT_BATCH_ROWS,
            score_max_wait_ms: 10,
            score_max_lag_ms: 15,
            score_nice: 10,
            context_max_flows: 100_000,
            context_retention_secs: 300.0,
        }
    }
}

impl PipelineConfig {
    /// The number of conn workers to start.
    pub fn workers(&self) -> usize {
        if self.conn_workers > 0 {
            return self.conn_workers;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        cores.saturating_sub(1).max(1)
    }
}

/// How packets become conn records (Zeek's settings) and when open
/// connections are scored.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConnConfig {
    /// Score a connection still open after every this much activity.
    pub interim_interval_secs: f64,
    /// Score an attempt (no answer yet) after this long.
    pub attempt_timeout_secs: f64,
    /// Zeek's `-C`. On by default: on a node, locally sent packets are
    /// captured before the NIC computes their checksums (offload), and
    /// verifying them would discard most of the node's own traffic.
    pub ignore_checksums: bool,
    /// `Site::local_nets` (default: Zeek's private address space): CIDRs
    /// or addresses, each checked as it is read.
    pub local_nets: Option<Vec<Cidr>>,
    /// Responder ports for connections whose start was not seen, e.g.
    /// `["80/tcp", "53/udp"]` (default: Zeek's), each checked as it is
    /// read.
    pub likely_server_ports: Option<Vec<Port>>,
    /// Analyzers for `service`: `all`, `none`, or e.g. `http,dns,ssl`.
    pub analyzers: String,
    /// Zeek settings as `NAME=VALUE`, as `osprey replay --set` takes them.
    pub settings: Vec<String>,
    /// Counting each packet once on a node (`conn/node_view.rs`).
    pub node_view: NodeViewSettings,
    /// Memory that fragment and TCP reassembly may hold.
    pub reassembly: ReassemblySettings,
}

/// `[conn.reassembly]`: byte budgets of fragment and TCP reassembly, the
/// memory hostile traffic (lone high-offset fragments, out-of-order
/// segments, spoofed ACKs) can make the sensor hold beyond its connection
/// tables. The `total_` budgets are the sensor's, shared evenly among the
/// conn workers (each owns its tables); what is dropped at a limit is
/// counted (`osprey_decode_fragments_evicted_total`,
/// `osprey_conn_reassembly_evicted_bytes_total`) and named as a weird.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReassemblySettings {
    /// Fragmented datagrams in flight per conn worker.
    pub frag_max_datagrams: usize,
    /// Bytes one fragmented datagram may hold (payload and bookkeeping).
    pub frag_datagram_bytes: usize,
    /// Bytes all fragmented datagrams in flight may hold, sensor-wide.
    pub frag_total_bytes: usize,
    /// Bytes one TCP connection's reassembly may hold (both directions).
    pub tcp_flow_bytes: usize,
    /// Bytes all TCP connections' reassembly may hold, sensor-wide.
    pub tcp_total_bytes: usize,
}

impl Default for ReassemblySettings {
    fn default() -> Self {
        let d = EngineConfig::default();
        // Sensor-wide defaults: what one engine gets by default, for the
        // two conn workers of a small node.
        ReassemblySettings {
            frag_max_datagrams: d.frag_max_datagrams,
            frag_datagram_bytes: d.frag_datagram_bytes,
            frag_total_bytes: 2 * d.frag_total_bytes,
            tcp_flow_bytes: d.tcp_reassembly_flow_bytes,
            tcp_total_bytes: 2 * d.tcp_reassembly_total_bytes,
        }
    }
}

/// `[conn.node_view]`: copies and NAT twins of packets captured on several
/// interfaces (`any`). Memory is about 100 bytes per slot and 64 per twin.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NodeViewSettings {
    /// Views of one packet further apart than this are different packets.
    pub window_ms: f64,
    /// Recent packets remembered (0 turns the node view off).
    pub slots: usize,
    /// NAT twins and underlay flows remembered at most.
    pub max_twins: usize,
    /// A twin without packets for this long is forgotten.
    pub twin_idle_secs: f64,
}

impl Default for NodeViewSettings {
    fn default() -> Self {
        let d = crate::conn::node_view::NodeViewConfig::default();
        NodeViewSettings {
            window_ms: d.window_secs * 1000.0,
            slots: d.slots,
            max_twins: d.max_twins,
            twin_idle_secs: d.twin_idle_secs,
        }
    }
}

impl Default for ConnConfig {
    fn default() -> Self {
        ConnConfig {
            interim_interval_secs: 5.0,
            attempt_timeout_secs: 5.0,
            ignore_checksums: true,
            local_nets: None,
            likely_server_ports: None,
            analyzers: "all".into(),
            settings: Vec::new(),
            node_view: NodeViewSettings::default(),
            reassembly: ReassemblySettings::default(),
        }
    }
}

/// Which models score the records.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Feature specs (`NAME.toml` next to `NAME.onnx`); empty: the bundled
    /// classifier and anomaly model.
    pub specs: Vec<PathBuf>,
}

/// The HTTP endpoint for Prometheus and the probes.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of `/metrics`, `/healthz` and `/readyz`, as `HOST:PORT`
    /// with an IP address for the host: it is bound before anything
    /// could resolve a name.
    #[serde(deserialize_with = "deserialize_listen_addr")]
    pub listen_addr: SocketAddr,
    /// Connections the endpoint serves at once. It faces the network: past
    /// the cap, the connection that has waited longest for its request is
    /// closed, so slow clients can neither exhaust the process's file
    /// descriptors (which enforcement needs to run `nft`) nor keep the
    /// kubelet's probes out.
    pub max_connections: usize,
    /// Seconds a connection may take to send a request's whole header
    /// (from the accept, or from the previous response); slower ones are
    /// closed and counted.
    pub header_read_timeout_secs: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        let limits = crate::metrics::ServerLimits::default();
        MetricsConfig {
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 9750)),
            max_connections: limits.max_connections,
            header_read_timeout_secs: limits.header_read_timeout.as_secs(),
        }
    }
}

impl MetricsConfig {
    /// The server's limits as configured.
    pub fn limits(&self) -> crate::metrics::ServerLimits {
        crate::metrics::ServerLimits {
            max_connections: self.max_connections,
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_secs),
        }
    }
}

/// From verdicts to actions (rules/default.yaml explains the safety
/// guards).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RespondConfig {
    /// Off by default: until an operator has watched the dry-run actions
    /// in the log and the platform, nothing is enforced.
    pub enforce: bool,
    /// Rule file (YAML, or TOML by extension); unset: the bundled
    /// rules/default.yaml.
    pub rules_file: Option<PathBuf>,
    /// Addresses and CIDRs never acted on, besides the discovered ones
    /// (node addresses, gateways, resolvers, API server) and loopback,
    /// link-local and multicast. Each is checked as it is read, so a bad
    /// entry refuses the file (or a SIGHUP's reload) with its key.
    pub allowlist: Vec<Cidr>,
    /// How often the allowlist's moving parts are looked up again: the
    /// API server's endpoints, the nodes, the cluster DNS, the host's
    /// resolvers and the platform's and webhooks' addresses. A lookup
    /// that fails keeps what it found last.
    pub allowlist_refresh_secs: u64,
    /// The host's resolv.conf files, whose nameservers are allowlisted
    /// (missing ones are skipped). systemd-resolved's own file is read as
    /// well as /etc/resolv.conf, whose `127.0.0.53` stub names no
    /// upstream. In a hostNetwork pod /etc/resolv.conf is the cluster's
    /// (ClusterFirstWithHostNet): the chart mounts the host's files and
    /// points this at them.
    pub allowlist_resolv_conf: Vec<PathBuf>,
    /// Allowlist the cluster's API server endpoints (EndpointSlices of
    /// `default/kubernetes`), nodes' InternalIPs and kube-dns/CoreDNS:
    /// `auto` (default) where a Kubernetes configuration is found and
    /// quietly not elsewhere, `true`, or `false`. Uses
    /// `identity.kubeconfig`, else `respond.kube.kubeconfig`, else
    /// in-cluster or the default kubeconfig.
    pub allowlist_cluster: crate::identity::Enabled,
    /// Circuit breakers, one per kind of action: enforcements per minute
    /// beyond which osprey only alerts, so a model gone wrong cannot block
    /// half the internet, and a flood's rate limits cannot use up the
    /// budget a scanner's block needs.
    pub breakers: BreakerConfig,
    /// Earlier enforcements on an address count towards a rule's
    /// `escalate` for this long.
    pub repeat_memory_secs: u64,
    /// The same rule's alert about the same address is not repeated
    /// within this time.
    pub alert_repeat_secs: u64,
    /// Decisions queued from the scorer to the responder; beyond it they
    /// are dropped and counted (stage `respond`).
    pub queue_actions: usize,
    /// osprey's own nftables table (blocks and rate limits on the node).
    pub nft: crate::respond::nft::NftConfig,
    /// NetworkPolicy enforcement through the Kubernetes API
    /// (`quarantine_pod`, and `block` towards pods of opted-in namespaces).
    pub kube: crate::respond::kube::KubeConfig,
    /// Policy-enforcement hooks that `hook` rules name: a webhook or a
    /// local program each.
    pub hooks: Vec<crate::respond::hook::HookConfig>,
    /// A failed enforcement (nft, the Kubernetes API, a hook) is tried
    /// again after this pause, doubled each time up to
    /// `enforce_retry_max_ms`, until the action's TTL ends.
    pub enforce_retry_initial_ms: u64,
    pub enforce_retry_max_ms: u64,
    /// IPv6 sources rotate addresses within their prefix: once this many
    /// addresses of one `/ipv6_aggregate_prefix` have been blocked or
    /// rate limited (within `repeat_memory_secs`), the next decision
    /// covers the whole prefix. 0 turns aggregation off.
    pub ipv6_aggregate_after: u32,
    pub ipv6_aggregate_prefix: u8,
    /// The local socket `osprey decisions` talks to (file permissions
    /// guard it; nothing listens on the network). Empty: no socket.
    pub control_socket: String,
}

impl Default for RespondConfig {
    fn default() -> Self {
        RespondConfig {
            enforce: false,
            rules_file: None,
            allowlist: Vec::new(),
            allowlist_refresh_secs: 30,
            allowlist_resolv_conf: vec![
                PathBuf::from("/etc/resolv.conf"),
                PathBuf::from("/run/systemd/resolve/resolv.conf"),
            ],
            allowlist_cluster: crate::identity::Enabled::Auto,
            breakers: BreakerConfig::default(),
            repeat_memory_secs: 86_400,
            alert_repeat_secs: 60,
            queue_actions: 4096,
            nft: Default::default(),
            kube: Default::default(),
            hooks: Vec::new(),
            enforce_retry_initial_ms: 1_000,
            enforce_retry_max_ms: 60_000,
            ipv6_aggregate_after: 3,
            ipv6_aggregate_prefix: 64,
            control_socket: crate::respond::control::DEFAULT_SOCKET.into(),
        }
    }
}

/// Enforcements per minute per kind of action.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    pub block_per_minute: u32,
    pub rate_limit_per_minute: u32,
    pub quarantine_pod_per_minute: u32,
    pub hook_per_minute: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            block_per_minute: 60,
            rate_limit_per_minute: 60,
            quarantine_pod_per_minute: 10,
            hook_per_minute: 60,
        }
    }
}

impl RespondConfig {
    /// The configured allowlist as the responder takes it (the entries
    /// were checked as the file was read).
    pub fn allowlist_nets(&self) -> Vec<ipnet::IpNet> {
        self.allowlist.iter().map(|c| c.0).collect()
    }

    /// How failed enforcement is retried.
    pub fn retry_policy(&self) -> crate::respond::enforce::RetryPolicy {
        crate::respond::enforce::RetryPolicy {
            initial: std::time::Duration::from_millis(self.enforce_retry_initial_ms),
            max: std::time::Duration::from_millis(self.enforce_retry_max_ms),
        }
    }
}

/// Parses a listen address (`metrics.listen_addr`, `--metrics-addr`): the
/// one place it is checked, with a message that shows the expected form
/// (the standard library's says only "invalid socket address syntax").
pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|e| {
        format!(
            "{s:?}: {e} (expected HOST:PORT with an IP address as HOST, \
             e.g. 0.0.0.0:9750 or [::]:9750)"
        )
    })
}

fn deserialize_listen_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    crate::conn::config::deserialize_parsed(d, "an address HOST:PORT", parse_listen_addr)
}

impl Config {
    /// Interim snapshots of open connections, as `[conn]` sets them.
    pub fn interim(&self) -> crate::conn::InterimConfig {
        crate::conn::InterimConfig {
            interval: self.conn.interim_interval_secs,
            attempt_timeout: self.conn.attempt_timeout_secs,
        }
    }

    /// The scorer's host-context tables, as `[pipeline]` sets them.
    pub fn live_context(&self) -> crate::features::LiveConfig {
        crate::features::LiveConfig {
            retention_secs: self.pipeline.context_retention_secs,
            max_flows: self.pipeline.context_max_flows,
        }
    }

    /// Reads and checks `path` (TOML or YAML by extension).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let cfg = match ext.as_str() {
            "toml" => Self::parse_toml(&text, path)?,
            "yaml" | "yml" => Self::parse_yaml(&text, path)?,
            _ => {
                return Err(ConfigError::Format {
                    path: path.to_path_buf(),
                })
            }
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Parses TOML; errors name the key's full path.
    pub fn parse_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            key: "(syntax)".into(),
            reason: e.to_string().trim().replace('\n', " "),
        })?;
        serde_path_to_error::deserialize(de).map_err(|e| parse_error(path, e))
    }

    /// Parses YAML; errors name the key's full path.
    pub fn parse_yaml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let de = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| parse_error(path, e))
    }

    /// Checks what deserialising cannot: ranges, relations between keys,
    /// and the Zeek settings (by building the engine configuration).
    /// Addresses, networks, ports and formats were checked as they were
    /// read.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.into(),
            reason,
        };
        let c = &self.capture;
        if c.interfaces.is_empty() {
            return Err(bad("capture.interfaces", "names no interface".into()));
        }
        if c.snaplen_bytes < 64 {
            return Err(bad("capture.snaplen_bytes", "must be at least 64".into()));
        }
        if c.buffer_size_bytes < 1 << 16 {
            return Err(bad(
                "capture.buffer_size_bytes",
                "must be at least 65536".into(),
            ));
        }
        if self.respond.allowlist_refresh_secs == 0 {
            return Err(bad(
                "respond.allowlist_refresh_secs",
                "must be positive".into(),
            ));
        }
        let r = &self.respond;
        if r.queue_actions == 0 {
            return Err(bad("respond.queue_actions", "must be positive".into()));
        }
        if r.enforce_retry_initial_ms == 0 {
            return Err(bad(
                "respond.enforce_retry_initial_ms",
                "must be positive".into(),
            ));
        }
        if r.enforce_retry_max_ms < r.enforce_retry_initial_ms {
            return Err(bad(
                "respond.enforce_retry_max_ms",
                format!(
                    "must be at least respond.enforce_retry_initial_ms ({})",
                    r.enforce_retry_initial_ms
                ),
            ));
        }
        if !(48..=127).contains(&r.ipv6_aggregate_prefix) {
            return Err(bad(
                "respond.ipv6_aggregate_prefix",
                format!(
                    "must be between 48 and 127, not {}",
                    r.ipv6_aggregate_prefix
                ),
            ));
        }
        if r.ipv6_aggregate_after == 1 {
            return Err(bad(
                "respond.ipv6_aggregate_after",
                "1 would block a whole prefix for one address; use 0 (off) or 2 or more".into(),
            ));
        }
        let sock = Path::new(&r.control_socket);
        if !r.control_socket.is_empty() && (!sock.is_absolute() || r.control_socket.len() > 107) {
            return Err(bad(
                "respond.control_socket",
                format!(
                    "{:?}: an absolute path of at most 107 bytes (a Unix socket's limit), or \"\" for none",
                    r.control_socket
                ),
            ));
        }
        if r.nft.call_timeout_ms == 0 {
            return Err(bad(
                "respond.nft.call_timeout_ms",
                "must be positive".into(),
            ));
        }
        self.evidence
            .validate()
            .map_err(|(key, reason)| bad(&key, reason))?;
        if c.read_timeout_ms == 0 {
            return Err(bad("capture.read_timeout_ms", "must be positive".into()));
        }
        if c.block_timeout_ms >= c.read_timeout_ms {
            // A wire would look quiet while packets still wait in a block.
            return Err(bad(
                "capture.block_timeout_ms",
                format!(
                    "must be less than capture.read_timeout_ms ({})",
                    c.read_timeout_ms
                ),
            ));
        }
        let p = &self.pipeline;
        if !(0..=19).contains(&p.score_nice) {
            return Err(bad(
                "pipeline.score_nice",
                format!("must be between 0 and 19, not {}", p.score_nice),
            ));
        }
        for (key, v) in [
            ("pipeline.batch_packets", p.batch_packets),
            ("pipeline.packet_queue_batches", p.packet_queue_batches),
            ("pipeline.record_queue_batches", p.record_queue_batches),
            (
                "pipeline.max_connections_per_worker",
                p.max_connections_per_worker,
            ),
            ("pipeline.score_batch_rows", p.score_batch_rows),
            ("pipeline.context_max_flows", p.context_max_flows),
        ] {
            if v == 0 {
                return Err(bad(key, "must be positive".into()));
            }
        }
        for (key, v) in [
            (
                "conn.interim_interval_secs",
                self.conn.interim_interval_secs,
            ),
            ("conn.attempt_timeout_secs", self.conn.attempt_timeout_secs),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(bad(key, format!("{v} is not a positive number of seconds")));
            }
        }
        self.engine_config()
            .map_err(|(key, reason)| bad(&key, reason))?;
        if self.metrics.max_connections == 0 {
            return Err(bad(
                "metrics.max_connections",
                "must be at least 1 (the probes need a connection)".into(),
            ));
        }
        if !(1..=300).contains(&self.metrics.header_read_timeout_secs) {
            return Err(bad(
                "metrics.header_read_timeout_secs",
                "must be between 1 and 300".into(),
            ));
        }
        match crate::respond::hook::validate(&self.respond.hooks) {
            Ok(()) => {}
            Err(crate::respond::hook::HookError::Config { hook, key, reason }) => {
                return Err(bad(&format!("respond.hooks[{hook:?}].{key}"), reason))
            }
            Err(e) => return Err(bad("respond.hooks", e.to_string())),
        }
        if self.respond.kube.enabled
            && self.respond.kube.node_name.is_empty()
            && !self.respond.kube.cluster_wide_pods
        {
            return Err(bad(
                "respond.kube.node_name",
                "is empty (set it, or NODE_NAME in the environment, or cluster_wide_pods)".into(),
            ));
        }
        match self.platform.validate() {
            Ok(()) => {}
            Err(crate::report::platform::PlatformError::Config { key, reason }) => {
                return Err(bad(&format!("platform.{key}"), reason))
            }
            Err(e) => return Err(bad("platform", e.to_string())),
        }
        Ok(())
    }

    /// The connection engine's settings for one conn worker; an error names
    /// the key.
    pub fn engine_config(&self) -> Result<EngineConfig, (String, String)> {
        let c = &self.conn;
        let mut cfg = EngineConfig {
            ignore_checksums: c.ignore_checksums,
            max_connections: self.pipeline.max_connections_per_worker,
            ..EngineConfig::default()
        };
        if let Some(nets) = &c.local_nets {
            cfg.local_nets = nets.iter().map(|n| n.0).collect();
        }
        if let Some(ports) = &c.likely_server_ports {
            cfg.likely_server_ports = ports.iter().copied().collect();
        }
        cfg.analyzers = EngineConfig::parse_analyzers(&c.analyzers)
            .map_err(|e| ("conn.analyzers".to_string(), e))?;
        for s in &c.settings {
            cfg.set(s)
                .map_err(|e| ("conn.settings".to_string(), e.to_string()))?;
        }
        let nv = &c.node_view;
        let bad = |k: &str, why: &str| (format!("conn.node_view.{k}"), why.to_string());
        if nv.window_ms.is_nan() || nv.window_ms <= 0.0 || nv.window_ms > 1000.0 {
            return Err(bad("window_ms", "must be above 0 and at most 1000"));
        }
        if nv.slots > 1 << 24 {
            return Err(bad("slots", "at most 16777216"));
        }
        if nv.max_twins == 0 || nv.max_twins > 1 << 24 {
            return Err(bad("max_twins", "must be 1 to 16777216"));
        }
        if nv.twin_idle_secs.is_nan() || nv.twin_idle_secs <= 0.0 {
            return Err(bad("twin_idle_secs", "must be above 0"));
        }
        cfg.node_view = crate::conn::node_view::NodeViewConfig {
            window_secs: nv.window_ms / 1000.0,
            slots: nv.slots,
            max_twins: nv.max_twins,
            twin_idle_secs: nv.twin_idle_secs,
        };
        let ra = &c.reassembly;
        let bad = |k: &str, why: &str| (format!("conn.reassembly.{k}"), why.to_string());
        let workers = self.pipeline.workers().max(1);
        for (k, v, min) in [
            ("frag_max_datagrams", ra.frag_max_datagrams, 1),
            ("frag_datagram_bytes", ra.frag_datagram_bytes, 1024),
            ("frag_total_bytes", ra.frag_total_bytes, 1024 * workers),
            ("tcp_flow_bytes", ra.tcp_flow_bytes, 1024),
            ("tcp_total_bytes", ra.tcp_total_bytes, 1024 * workers),
        ] {
            if v < min {
                return Err(bad(k, &format!("must be at least {min}")));
            }
        }
        cfg.frag_max_datagrams = ra.frag_max_datagrams;
        cfg.frag_datagram_bytes = ra.frag_datagram_bytes;
        cfg.frag_total_bytes = ra.frag_total_bytes / workers;
        cfg.tcp_reassembly_flow_bytes = ra.tcp_flow_bytes;
        cfg.tcp_reassembly_total_bytes = ra.tcp_total_bytes / workers;
        Ok(cfg)
    }
}

fn parse_error<E: std::fmt::Display>(path: &Path, e: serde_path_to_error::Error<E>) -> ConfigError {
    let key = e.path().to_string();
    let reason = e.into_inner().to_string();
    // toml's errors span lines: where, a snippet, then what. Keep the what,
    // and the where after it.
    let lines: Vec<&str> = reason
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let reason = match (lines.first(), lines.last()) {
        (Some(first), Some(last)) if lines.len() > 1 => format!("{last} ({first})"),
        _ => reason.trim().to_string(),
    };
    // serde_yaml_ng starts its messages with the path it knows, which is
    // the key again when it knows all of it: say it once.
    let reason = match reason.strip_prefix(&key).and_then(|r| r.strip_prefix(": ")) {
        Some(rest) => rest.to_string(),
        None => reason,
    };
    ConfigError::Parse {
        path: path.to_path_buf(),
        key: if key == "." {
            "(top level)".into()
        } else {
            key
        },
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toml(text: &str) -> Result<Config, ConfigError> {
        let c = Config::parse_toml(text, Path::new("t.toml"))?;
        c.validate(Path::new("t.toml"))?;
        Ok(c)
    }

    fn yaml(text: &str) -> Result<Config, ConfigError> {
        let c = Config::parse_yaml(text, Path::new("t.yaml"))?;
        c.validate(Path::new("t.yaml"))?;
        Ok(c)
    }

    #[test]
    fn reassembly_totals_are_shared_among_conn_workers() {
        let c = toml(
            "[pipeline]\nconn_workers = 4\n[conn.reassembly]\ntcp_total_bytes = 4000000\n\
             frag_total_bytes = 400000\ntcp_flow_bytes = 65536\n",
        )
        .unwrap();
        let e = c.engine_config().unwrap();
        assert_eq!(e.tcp_reassembly_total_bytes, 1_000_000);
        assert_eq!(e.frag_total_bytes, 100_000);
        assert_eq!(e.tcp_reassembly_flow_bytes, 65536);
    }

    #[test]
    fn empty_files_give_the_defaults() {
        assert_eq!(toml("").unwrap(), Config::default());
        assert_eq!(yaml("").unwrap(), Config::default());
        assert!(Config::default().validate(Path::new("x")).is_ok());
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        let e = toml("[capture]\nsnaplen = 100\n").unwrap_err().to_string();
        assert!(e.contains("capture") && e.contains("snaplen"), "{e}");
        let e = yaml("pipeline:\n  workers: 3\n").unwrap_err().to_string();
        assert!(e.contains("pipeline") && e.contains("workers"), "{e}");
        let e = yaml("bogus: 1\n").unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn wrong_types_and_values_name_the_key() {
        let e = toml("[capture]\nsnaplen_bytes = \"big\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("capture.snaplen_bytes"), "{e}");
        let e = yaml("conn:\n  settings: [\"tcp_inactivity_timeout=soon\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("conn.settings"), "{e}");
        let e = yaml("metrics:\n  listen_addr: nowhere\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("metrics.listen_addr"), "{e}");
        let e = yaml("output:\n  format: xml\n").unwrap_err().to_string();
        assert!(e.contains("output.format"), "{e}");
        let e = yaml("conn:\n  interim_interval_secs: 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("conn.interim_interval_secs"), "{e}");
        for (text, key) in [
            ("evidence:\n  max_sources: 0\n", "evidence.max_sources"),
            (
                "evidence:\n  known_good_secs: -1\n",
                "evidence.known_good_secs",
            ),
            (
                "evidence:\n  max_targets_per_source: 100000\n",
                "evidence.max_targets_per_source",
            ),
            ("evidence:\n  max_source: 5\n", "evidence"),
            (
                "conn:\n  node_view:\n    window_ms: 0\n",
                "conn.node_view.window_ms",
            ),
            (
                "conn:\n  node_view:\n    max_twins: 0\n",
                "conn.node_view.max_twins",
            ),
            ("conn:\n  node_view:\n    slotz: 1\n", "conn.node_view"),
            (
                "respond:\n  allowlist_refresh_secs: 0\n",
                "respond.allowlist_refresh_secs",
            ),
            (
                "respond:\n  allowlist: [\"198.18.0.0/15\", \"nope\"]\n",
                "respond.allowlist[1]",
            ),
            (
                "respond:\n  allowlist_cluster: maybe\n",
                "respond.allowlist_cluster",
            ),
            (
                "conn:\n  reassembly:\n    tcp_flow_bytes: 0\n",
                "conn.reassembly.tcp_flow_bytes",
            ),
            (
                "conn:\n  reassembly:\n    frag_total_bytes: 10\n",
                "conn.reassembly.frag_total_bytes",
            ),
            (
                "conn:\n  reassembly:\n    tcp_bytes: 1\n",
                "conn.reassembly",
            ),
            (
                "respond:\n  breakers:\n    block_per_minute: many\n",
                "respond.breakers.block_per_minute",
            ),
        ] {
            let e = yaml(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        let e = toml("[capture]\nblock_timeout_ms = 100\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("capture.block_timeout_ms"), "{e}");
        assert!(toml("[capture]\nblock_timeout_ms = 0\n").is_ok());
        let e = toml("[pipeline]\nscore_nice = 20\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pipeline.score_nice"), "{e}");
    }

    /// Addresses, networks and ports are refused as the file is read, in
    /// either syntax, with the path of the bad entry; `validate` never
    /// sees them.
    #[test]
    fn bad_typed_values_are_refused_at_parse_with_their_key() {
        for (toml_text, yaml_text, key, value) in [
            (
                "[respond]\nallowlist = [\"10.0.0.0/8\", \"10.0.0.300\"]\n",
                "respond:\n  allowlist: [10.0.0.0/8, 10.0.0.300]\n",
                "respond.allowlist[1]",
                "10.0.0.300",
            ),
            (
                "[metrics]\nlisten_addr = \"localhost:9750\"\n",
                "metrics:\n  listen_addr: localhost:9750\n",
                "metrics.listen_addr",
                "HOST:PORT",
            ),
            (
                "[conn]\nlocal_nets = [\"fd00::/200\"]\n",
                "conn:\n  local_nets: [fd00::/200]\n",
                "conn.local_nets[0]",
                "fd00::/200",
            ),
            (
                "[conn]\nlikely_server_ports = [\"80/tcp\", \"53/sctp\"]\n",
                "conn:\n  likely_server_ports: [80/tcp, 53/sctp]\n",
                "conn.likely_server_ports[1]",
                "sctp",
            ),
        ] {
            for parsed in [
                Config::parse_toml(toml_text, Path::new("t.toml")),
                Config::parse_yaml(yaml_text, Path::new("t.yaml")),
            ] {
                match parsed {
                    Err(e @ ConfigError::Parse { .. }) => {
                        let e = e.to_string();
                        assert!(e.contains(key) && e.contains(value), "{key}: {e}");
                    }
                    other => panic!("{key}: not refused at parse: {other:?}"),
                }
            }
        }
        // The key is named once (serde_yaml_ng names it in its message
        // too).
        let e = yaml("respond:\n  allowlist: [nope]\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e.matches("respond.allowlist[0]").count(), 1, "{e}");
        // A number where a port belongs says what was expected.
        let e = toml("[conn]\nlikely_server_ports = [80]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("conn.likely_server_ports[0]") && e.contains("80/tcp"),
            "{e}"
        );
    }

    /// The typed values read from both forms, write back as the strings
    /// they were read from, and become the engine's and the responder's
    /// sets without another parse.
    #[test]
    fn typed_values_round_trip_and_reach_the_engine() {
        use crate::conn::config::PortProto;
        let c = yaml(
            "respond:\n  allowlist: [198.18.0.0/15, 192.0.2.7, \"fd00::1\"]\n\
             metrics:\n  listen_addr: \"[::1]:9750\"\n\
             conn:\n  local_nets: [10.0.0.0/8, \"[fd00::]/8\"]\n  \
             likely_server_ports: [80/tcp, 53/udp, 8/icmp]\n",
        )
        .unwrap();
        let nets: Vec<ipnet::IpNet> = ["198.18.0.0/15", "192.0.2.7/32", "fd00::1/128"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(c.respond.allowlist_nets(), nets);
        assert_eq!(c.metrics.listen_addr, "[::1]:9750".parse().unwrap());

        let e = c.engine_config().unwrap();
        assert!(e.local_nets.contains(&"10.1.2.3".parse().unwrap()));
        assert!(e.local_nets.contains(&"fd12::1".parse().unwrap()));
        assert!(!e.local_nets.contains(&"192.168.1.1".parse().unwrap()));
        assert!(e.likely_server_ports.contains(PortProto::Tcp, 80));
        assert!(e.likely_server_ports.contains(PortProto::Udp, 53));
        assert!(e.likely_server_ports.contains(PortProto::Icmp, 8));
        assert!(!e.likely_server_ports.contains(PortProto::Tcp, 443));

        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("\"192.0.2.7/32\""), "{text}");
        assert!(text.contains("\"53/udp\""), "{text}");
        assert!(text.contains("listen_addr = \"[::1]:9750\""), "{text}");
        assert_eq!(toml(&text).unwrap(), c);
    }

    #[test]
    fn yaml_and_toml_say_the_same() {
        let t = toml(
            "[capture]\ninterfaces = [\"eth0\", \"eth1\"]\nbpf_filter = \"tcp\"\n\
             [conn]\nlocal_nets = [\"10.0.0.0/8\"]\n",
        )
        .unwrap();
        let y = yaml(
            "capture:\n  interfaces: [eth0, eth1]\n  bpf_filter: tcp\n\
             conn:\n  local_nets: [10.0.0.0/8]\n",
        )
        .unwrap();
        assert_eq!(t, y);
        assert_eq!(t.capture.interfaces, ["eth0", "eth1"]);
    }

    /// The documented example sets every key; it must parse and check.
    #[test]
    fn the_example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/osprey.example.toml");
        let cfg = Config::load(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        // Every key of every section appears in the example.
        let doc: toml::Table = text.parse().unwrap();
        let all: toml::Table = toml::to_string(&Config::default())
            .unwrap()
            .parse()
            .unwrap();
        let keys = |t: &toml::Table, path: &str| -> Vec<String> {
            let mut out = Vec::new();
            for (k, v) in t {
                match v.as_table() {
                    Some(sub) => out.extend(sub.keys().map(|s| format!("{path}{k}.{s}"))),
                    None => out.push(format!("{path}{k}")),
                }
            }
            out.sort();
            out
        };
        // (Unset optional keys are not serialised; the example shows them
        // too, and deny_unknown_fields has already vouched for its keys.)
        let have = keys(&doc, "");
        let missing: Vec<_> = keys(&all, "")
            .into_iter()
            .filter(|k| !have.contains(k))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/osprey.example.toml lacks {missing:?}"
        );
        assert_eq!(cfg.capture.interfaces, ["any"]);
    }
}
