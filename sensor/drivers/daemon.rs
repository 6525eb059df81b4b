//! `osprey run`: the live daemon's start-up, signals and shutdown.
//!
//! Everything that can fail for a reason the operator must fix (the
//! configuration, the metrics port, an interface, the capture filter,
//! permissions, a model, the log directory) is tried in that order before
//! a single thread starts, so a bad start is one line and a non-zero exit.
//! SIGTERM/SIGINT stop capture; every open connection is then flushed as
//! at the end of a trace, scored and written. SIGHUP reloads the models
//! (and the configuration's model list), the rules and the configured
//! allowlist, and looks the discovered allowlist up again: a broken one is
//! refused, logged and counted, and the running ones stay.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::capture::{LiveOptions, LiveSource};
use crate::config::Config;
use crate::conn::ConnRecord;
use crate::drivers::live::{StageOptions, Stages};
use crate::identity::{Attribution, Directory, Fallbacks};
use crate::metrics::{Health, Metrics, ServerLimits};
use crate::model::bundled::load_models;
use crate::model::Model;
use crate::report::platform::{ModelRef, Reporter, ReporterHandle, ReporterTask};
use crate::respond::admit::{Admission, AdmitConfig, Aggregate, BreakerLimits, Proposal};
use crate::respond::decide::{DecideMetrics, Decider, Verdicts};
use crate::respond::discover::{publish, Discovery, DiscoverySettings};
use crate::respond::dispatch::Dispatch;
use crate::respond::hook::Hooks;
use crate::respond::kube::{KubeEnforcer, KubeError};
use crate::respond::nft::NftEnforcer;
use crate::respond::responder::{RespondMetrics, Responder};
use crate::respond::rules::{LoadContext, ModelFacts, RuleSet};
use crate::respond::safety::{Allowlist, Published};
use crate::score::live::{
    lower_thread_priority, run_scorer, LiveOutputs, ModelSet, RecordSink, Reload, Scored,
    ScorerOptions, DEFAULT_MAX_HELD,
};

/// An error of any stage the daemon starts, carried with the step it
/// failed in.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why the daemon did not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A configuration value is refused; `key` names it.
    #[error("{key}: {reason}")]
    Setting { key: String, reason: String },
    /// A step of start-up or shutdown failed.
    #[error("{step}")]
    Step {
        step: String,
        #[source]
        source: BoxError,
    },
    /// A thread panicked or the capture failed: the sensor stopped.
    #[error("stopped because {0}")]
    Stopped(String),
}

/// Names the step a fallible call belongs to.
trait StepContext<T> {
    fn step(self, step: &str) -> Result<T, DaemonError>;
    fn step_with(self, step: impl FnOnce() -> String) -> Result<T, DaemonError>;
}

impl<T, E: Into<BoxError>> StepContext<T> for Result<T, E> {
    fn step(self, step: &str) -> Result<T, DaemonError> {
        self.step_with(|| step.to_string())
    }

    fn step_with(self, step: impl FnOnce() -> String) -> Result<T, DaemonError> {
        self.map_err(|e| DaemonError::Step {
            step: step(),
            source: e.into(),
        })
    }
}

/// An error and its causes on one line.
fn chain(e: &dyn StdError) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

/// The rule file the configuration names, or the bundled default, checked
/// against the models that will run.
pub fn load_rules(cfg: &Config, models: &[Model]) -> Result<RuleSet, DaemonError> {
    let facts: Vec<ModelFacts> = models.iter().map(ModelFacts::of).collect();
    let cx = rule_context(cfg);
    let set = match &cfg.respond.rules_file {
        Some(p) => RuleSet::load(p, &facts, &cx).step("respond.rules_file")?,
        None => RuleSet::parse(DEFAULT_RULES, true, &facts, &cx)
            .step("the bundled rules/default.yaml")?,
    };
    for (model, classes) in set.unused_classes(&facts) {
        tracing::warn!(
            model = %model,
            classes = ?classes,
            "no rule can match these classes of the model: its verdicts of them only reach alerts.log"
        );
    }
    Ok(set)
}

/// What rules are checked against besides the models: the configured
/// allowlist and hooks, and the evidence stage's distinct-count limit.
/// The bundled rules leave out those that name a model not loaded.
pub fn rule_context(cfg: &Config) -> LoadContext {
    LoadContext {
        allowlist: Allowlist::new(&cfg.respond.allowlist_nets())
            .fixed()
            .to_vec(),
        hooks: cfg.respond.hooks.iter().map(|h| h.name.clone()).collect(),
        skip_rules_for_absent_models: cfg.respond.rules_file.is_none(),
        max_targets_per_source: cfg.evidence.max_targets_per_source,
    }
}

/// The admission settings of a configuration.
pub fn admit_config(cfg: &Config) -> AdmitConfig {
    let b = &cfg.respond.breakers;
    AdmitConfig {
        enforce: cfg.respond.enforce,
        alert_repeat: Duration::from_secs(cfg.respond.alert_repeat_secs),
        breakers: BreakerLimits {
            block: b.block_per_minute,
            rate_limit: b.rate_limit_per_minute,
            quarantine_pod: b.quarantine_pod_per_minute,
            hook: b.hook_per_minute,
        },
        repeat_memory: Duration::from_secs(cfg.respond.repeat_memory_secs),
        ipv6_aggregate: (cfg.respond.ipv6_aggregate_after > 0).then_some(Aggregate {
            prefix: cfg.respond.ipv6_aggregate_prefix,
            after: cfg.respond.ipv6_aggregate_after,
        }),
    }
}

/// Where the daemon's scored records go: conn.log and alerts.log, then
/// the decision stage, whose proposals cross to the responder.
struct DaemonSink {
    outputs: Box<dyn LiveOutputs>,
    decider: Decider,
    /// To the responder; full means the responder is behind, and the
    /// proposal is dropped and counted rather than stalling scoring.
    tx: tokio::sync::mpsc::Sender<Proposal>,
    metrics: Arc<Metrics>,
    decide_metrics: DecideMetrics,
}

impl DaemonSink {
    fn alert(&mut self, r: &ConnRecord, s: &Scored<'_>) {
        if let Err(e) = self.outputs.alert(r, s.models, s.verdicts) {
            self.metrics
                .log_write_errors
                .with_label_values(&["alerts"])
                .inc();
            self.metrics
                .dropped
                .add(crate::metrics::Stage::Report, "alerts_write_failed", 1);
            tracing::warn!(error = %e, "alerts.log write failed");
        }
    }

    /// Writes the alert, then lets `decide` (the decider's path for a
    /// record decided at once, or for one held for the look-ahead) decide.
    fn after_scoring(
        &mut self,
        r: &ConnRecord,
        scored: Option<Scored<'_>>,
        decide: fn(&mut Decider, &ConnRecord, Option<Verdicts<'_>>) -> Option<Proposal>,
    ) {
        if let Some(s) = &scored {
            self.alert(r, s);
        }
        let proposal = decide(&mut self.decider, r, scored.map(Verdicts::from));
        self.propose(proposal);
    }

    /// Hands a decision to the responder; full means the responder is
    /// behind, and the proposal is dropped and counted.
    fn propose(&mut self, proposal: Option<Proposal>) {
        if let Some(p) = proposal {
            if self.tx.try_send(p).is_err() {
                self.metrics
                    .pipeline_dropped_records
                    .with_label_values(&["respond"])
                    .inc();
                self.metrics
                    .dropped
                    .add(crate::metrics::Stage::Respond, "proposal_queue_full", 1);
            }
        }
    }
}

impl RecordSink for DaemonSink {
    type Reload = RuleSet;

    fn conn(&mut self, r: &ConnRecord) {
        if let Err(e) = self.outputs.conn(r) {
            self.metrics
                .log_write_errors
                .with_label_values(&["conn"])
                .inc();
            self.metrics
                .dropped
                .add(crate::metrics::Stage::Report, "conn_log_write_failed", 1);
            tracing::warn!(error = %e, "conn.log write failed");
        }
    }

    fn record(&mut self, r: &ConnRecord, scored: Option<Scored<'_>>) {
        self.after_scoring(r, scored, Decider::record);
    }

    fn arrived(&mut self, r: &ConnRecord) {
        let proposal = self.decider.arrived(r);
        self.propose(proposal);
    }

    fn held(&mut self, r: &ConnRecord, scored: Option<Scored<'_>>) {
        self.after_scoring(r, scored, Decider::scored);
    }

    fn reload(&mut self, models: &[Model], rules: Option<RuleSet>) {
        if let Some(rules) = rules {
            self.decider
                .reload(rules, models.iter().map(ModelFacts::of).collect());
        }
    }

    fn tick(&mut self) {
        if let Err(e) = self.outputs.tick() {
            self.metrics
                .log_write_errors
                .with_label_values(&["tick"])
                .inc();
            tracing::warn!(error = %e, "log flush or rotation failed");
        }
        self.decide_metrics.export(&self.decider);
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.outputs.finish()
    }
}

/// rules/default.yaml, so the daemon responds out of the box.
pub const DEFAULT_RULES: &str = include_str!("../../rules/default.yaml");

/// Re-reads the configuration on SIGHUP (the file with the command line's
/// overrides), checked as at start.
pub type ConfigLoader = Box<dyn Fn() -> Result<Config, BoxError> + Send + Sync>;

/// Runs the daemon on `cfg` until SIGTERM or SIGINT, or until a thread
/// fails; `reload` gives the configuration again on SIGHUP.
pub fn run(cfg: Config, reload: ConfigLoader) -> Result<(), DaemonError> {
    let mut engine = cfg
        .engine_config()
        .map_err(|(key, reason)| DaemonError::Setting {
            key: key.to_string(),
            reason: reason.to_string(),
        })?;
    engine.interim = Some(cfg.interim());

    let addr = cfg.metrics.listen_addr;
    let listener = std::net::TcpListener::bind(addr)
        .step_with(|| format!("metrics.listen_addr {addr}: cannot listen"))?;

    let sources = LiveSource::open_set(
        &cfg.capture.interfaces,
        &LiveOptions {
            interface: String::new(),
            snaplen: cfg.capture.snaplen_bytes,
            buffer_size: cfg.capture.buffer_size_bytes,
            promiscuous: cfg.capture.promiscuous,
            filter: Some(cfg.capture.bpf_filter.clone()),
            read_timeout_ms: cfg.capture.read_timeout_ms,
            block_timeout_ms: cfg.capture.block_timeout_ms,
        },
    )
    .step("opening the capture")?;

    let models = load_models(&cfg.models.specs).step("loading the models")?;
    let metrics = Arc::new(Metrics::new());
    let node = node_name(&cfg);
    let (reporter, reporter_task) = Reporter::open(&cfg.platform, &node, &metrics.registry)
        .step("starting the platform reporter")?;
    reporter.set_models(model_refs(&models));
    let hooks = Hooks::new(&cfg.respond.hooks, &metrics.registry).step("respond.hooks")?;

    let health = Arc::new(Health::default());
    let stop = Arc::new(AtomicBool::new(false));
    // From here on a panic in any thread stops the sensor and exits
    // non-zero (metrics/fail.rs).
    crate::metrics::fail::install(health.clone(), stop.clone(), &metrics.registry);
    let server_limits = server_limits(&cfg);
    let rules = load_rules(&cfg, &models)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .step("starting the I/O runtime")?;
    let identity = rt.block_on(crate::identity::start(
        &cfg.identity,
        &identity_fallbacks(&cfg),
        &metrics.registry,
        Some(health.clone()),
    ));
    let attribution = Attribution::from(&identity);
    let outputs = crate::report::live::open_outputs(
        &cfg.output,
        reporter.clone(),
        &node,
        attribution.clone(),
    )
    .step("opening the outputs")?;
    let (nft, kube) = start_enforcers(&cfg, &rt, &metrics, &health, identity.directory);
    let allowlist = start_allowlist(&cfg, &rt, &metrics);
    let (proposals_tx, proposals_rx) = tokio::sync::mpsc::channel(cfg.respond.queue_actions);
    let respond_metrics = RespondMetrics::register(&metrics.registry);
    let responder = Responder {
        admission: Admission::new(admit_config(&cfg), {
            let mut a =
                Allowlist::new(&cfg.respond.allowlist_nets()).follow(allowlist.feed.subscribe());
            a.discover(&[]);
            a
        }),
        dispatch: Dispatch::new(nft)
            .with_kube(kube)
            .with_hooks(hooks)
            .with_reporter(reporter.clone(), &node)
            .with_identity(attribution)
            .with_metrics(respond_metrics.enforce.clone())
            .with_retry(cfg.respond.retry_policy()),
        metrics: respond_metrics,
        rediscover: Duration::from_secs(60),
        api_servers: Vec::new(),
        control: None,
    };
    let mut responder = responder;
    let control_socket = start_control_socket(&cfg, &rt, &mut responder);
    let mut sink = DaemonSink {
        outputs,
        decider: Decider::new(
            rules,
            models.iter().map(ModelFacts::of).collect(),
            cfg.evidence.clone(),
        ),
        tx: proposals_tx,
        metrics: metrics.clone(),
        decide_metrics: DecideMetrics::register(&metrics.registry),
    };
    let (reload_tx, reload_rx) = crossbeam_channel::bounded::<Reload<RuleSet>>(1);
    rt.spawn(crate::metrics::notify::supervise(health.clone()));
    let io = IoThread::start(
        rt,
        (listener, server_limits),
        metrics.clone(),
        health.clone(),
        stop.clone(),
        Reloader {
            load: reload,
            tx: reload_tx,
            metrics: metrics.clone(),
            reporter: reporter.clone(),
            allowlist,
        },
        (responder, proposals_rx),
        reporter_task,
    )?;

    let stage_opts = StageOptions {
        workers: cfg.pipeline.workers(),
        batch_packets: cfg.pipeline.batch_packets,
        packet_queue_batches: cfg.pipeline.packet_queue_batches,
        record_queue_batches: cfg.pipeline.record_queue_batches,
        flush_interval: Duration::from_millis(u64::from(cfg.capture.flush_interval_ms)),
        read_timeout: Duration::from_millis(u64::from(cfg.capture.read_timeout_ms)),
        block_timeout: Duration::from_millis(u64::from(cfg.capture.block_timeout_ms)),
        engine,
    };
    let interfaces = cfg.capture.interfaces.join(",");
    let stages = Stages::start(sources, &stage_opts, metrics.clone(), stop.clone())
        .step("starting the capture and conn threads")?;
    health.set_models_loaded(!models.is_empty());
    health.set_capture_running(true);
    crate::metrics::notify::ready();
    reporter.set_ready(!models.is_empty());
    tracing::info!(
        interfaces = %interfaces,
        workers = stage_opts.workers,
        models = models.len(),
        metrics = %addr,
        "osprey running"
    );
    eprintln!(
        "osprey: capturing on {interfaces} with {} conn worker(s), {} model(s); metrics on http://{addr}/metrics",
        stage_opts.workers,
        models.len()
    );

    let context = cfg.live_context();
    let records = stages.records.clone();
    // After every other thread has started, so that only scoring (on this
    // thread from here on) runs at the lower priority.
    if let Err(e) = lower_thread_priority(cfg.pipeline.score_nice) {
        tracing::warn!(error = %e, nice = cfg.pipeline.score_nice, "could not lower the scorer's priority");
    }
    let scored = run_scorer(
        records,
        reload_rx,
        ModelSet::new(models, context.clone()),
        &mut sink,
        ScorerOptions {
            batch_rows: cfg.pipeline.score_batch_rows,
            max_wait: Duration::from_millis(cfg.pipeline.score_max_wait_ms),
            shed_backlog: cfg.pipeline.record_queue_batches / 2,
            max_lag: Duration::from_millis(cfg.pipeline.score_max_lag_ms),
            context: context.clone(),
            hold_by_wall_time: true,
            max_held: DEFAULT_MAX_HELD,
        },
        &metrics,
    );
    health.set_capture_running(false);
    reporter.set_ready(false);
    let joined = stages.join();
    // Closes the responder's queue: it handles what is in it (each action
    // into the spool) and ends; then the reporter's last delivery attempt.
    drop(sink);
    io.shutdown();
    if let Some(path) = control_socket {
        let _ = std::fs::remove_file(path);
    }
    // A panicked thread (including a tokio task, which no join sees) fails
    // the run: the exit status tells the orchestrator to restart.
    if let Some(why) = health.failure() {
        return Err(DaemonError::Stopped(why.to_string()));
    }
    scored.step("closing the logs")?;
    joined.step("the capture and conn threads")?;
    eprintln!("osprey: stopped");
    Ok(())
}

/// Listens for `osprey decisions` on `respond.control_socket`. A socket
/// that cannot be bound (a second daemon on the same path, an unwritable
/// directory) costs the operator the command, not the node its sensor:
/// logged as an error, and the daemon runs on. Returns the path to remove
/// at exit.
fn start_control_socket(
    cfg: &Config,
    rt: &tokio::runtime::Runtime,
    responder: &mut Responder,
) -> Option<PathBuf> {
    let path = PathBuf::from(&cfg.respond.control_socket);
    if path.as_os_str().is_empty() {
        return None;
    }
    let _enter = rt.enter();
    match crate::respond::control::bind(&path) {
        Ok(listener) => {
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            responder.control = Some(rx);
            rt.spawn(crate::respond::control::serve(listener, tx));
            tracing::info!(socket = %path.display(), "osprey decisions: control socket listening");
            Some(path)
        }
        Err(e) => {
            tracing::error!(error = %e, "respond.control_socket: `osprey decisions` will not reach this daemon");
            None
        }
    }
}

/// Descriptors kept free of the metrics server's connections: capture
/// rings, log files, the spool, sockets to the API server and platform,
/// and the pipes of every `nft` and hook process.
const FD_RESERVE: u64 = 512;

/// The metrics server's limits, with the connection cap held below the
/// descriptor limit (raised to its hard limit first, as servers do), so
/// that slow clients can never take the descriptors enforcement needs.
fn server_limits(cfg: &Config) -> ServerLimits {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limits = cfg.metrics.limits();
    let mut nofile = getrlimit(Resource::Nofile);
    if nofile.current < nofile.maximum {
        nofile.current = nofile.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, nofile) {
            tracing::warn!(error = %e, "could not raise the open-file limit");
        }
        nofile = getrlimit(Resource::Nofile);
    }
    if let Some(soft) = nofile.current {
        let room = usize::try_from(soft.saturating_sub(FD_RESERVE).max(16)).unwrap_or(usize::MAX);
        if limits.max_connections > room {
            tracing::warn!(
                configured = limits.max_connections,
                used = room,
                open_files = soft,
                "metrics.max_connections lowered to leave descriptors for enforcement"
            );
            limits.max_connections = room;
        }
    }
    limits
}

/// What the identity section falls back to: `respond.kube`'s node and
/// kubeconfig (one `NODE_NAME` serves both), and whether the Kubernetes
/// enforcer, which finds pods through the same watch, will run.
fn identity_fallbacks(cfg: &Config) -> Fallbacks {
    let k = &cfg.respond.kube;
    let node_name = [&k.node_name, &cfg.identity.node_name]
        .into_iter()
        .find(|n| !n.is_empty())
        .cloned()
        .or_else(|| std::env::var("NODE_NAME").ok())
        .unwrap_or_default();
    Fallbacks {
        node_name,
        kubeconfig: k.kubeconfig.clone(),
        cluster_wide_pods: k.cluster_wide_pods,
        enforcer: cfg.respond.enforce && k.enabled,
    }
}

/// The node this sensor reports as: `respond.kube.node_name` (from
/// `NODE_NAME`, set by the chart), else `identity.node_name`, else the
/// host name.
fn node_name(cfg: &Config) -> String {
    if !cfg.respond.kube.node_name.is_empty() {
        return cfg.respond.kube.node_name.clone();
    }
    if !cfg.identity.node_name.is_empty() {
        return cfg.identity.node_name.clone();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn model_refs(models: &[Model]) -> Vec<ModelRef> {
    models
        .iter()
        .map(|m| ModelRef {
            name: m.spec().model.name.clone(),
            version: m.spec().model.version.clone(),
        })
        .collect()
}

/// Starts the enforcers `respond.enforce` asks for. One that cannot start
/// (nft missing, no CAP_NET_ADMIN, no API server) leaves a degraded
/// sensor, not a dead one: detection and alerts go on, and /readyz says
/// what is missing.
fn start_enforcers(
    cfg: &Config,
    rt: &tokio::runtime::Runtime,
    metrics: &Metrics,
    health: &Health,
    pods: Option<Directory>,
) -> (Option<NftEnforcer>, Option<KubeEnforcer>) {
    if !cfg.respond.enforce {
        return (None, None);
    }
    let mut degraded = Vec::new();
    let nft = match NftEnforcer::start(cfg.respond.nft.clone(), &metrics.registry) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::error!(error = %e, "nftables enforcement unavailable; alerting only");
            eprintln!("osprey: nftables enforcement unavailable, alerting only: {e}");
            degraded.push(format!("nftables: {e}"));
            None
        }
    };
    let kube = if cfg.respond.kube.enabled {
        let started = match pods {
            Some(pods) => rt.block_on(KubeEnforcer::start(
                cfg.respond.kube.clone(),
                pods,
                &metrics.registry,
            )),
            None => Err(KubeError::NoPodWatch),
        };
        match started {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::error!(error = %e, "Kubernetes enforcement unavailable");
                eprintln!("osprey: Kubernetes enforcement unavailable: {e}");
                degraded.push(format!("kubernetes: {e}"));
                None
            }
        }
    } else {
        None
    };
    let gauge = crate::metrics::gauge_vec(
        &metrics.registry,
        "osprey_respond_enforcement_degraded",
        "1 for an enforcer that enforcement asked for but that could not start (nft, kubernetes).",
        &["enforcer"],
    );
    for (name, failed) in [
        ("nft", nft.is_none()),
        ("kubernetes", cfg.respond.kube.enabled && kube.is_none()),
    ] {
        gauge.with_label_values(&[name]).set(i64::from(failed));
    }
    if !degraded.is_empty() {
        health.set_enforcement_degraded(Some(degraded.join("; ")));
    }
    (nft, kube)
}

/// The allowlist's discovery task and what it publishes to.
struct AllowlistFeed {
    /// The responder's allowlist follows it; SIGHUP sends the configured
    /// ranges, the discovery task what it found.
    feed: Arc<tokio::sync::watch::Sender<Published>>,
    /// Wakes the discovery task for a round now (SIGHUP).
    rediscover: Arc<tokio::sync::Notify>,
}

/// The discovery settings of a configuration.
fn discovery_settings(cfg: &Config) -> DiscoverySettings {
    let r = &cfg.respond;
    DiscoverySettings {
        refresh: Duration::from_secs(r.allowlist_refresh_secs),
        resolv_conf: r.allowlist_resolv_conf.clone(),
        cluster: r.allowlist_cluster,
        kubeconfig: cfg
            .identity
            .kubeconfig
            .clone()
            .or_else(|| r.kube.kubeconfig.clone()),
        platform_url: cfg.platform.url.clone(),
        webhook_urls: r
            .hooks
            .iter()
            .filter_map(|h| h.webhook.as_ref().map(|w| w.url.clone()))
            .collect(),
        ..DiscoverySettings::default()
    }
}

/// Runs the first discovery round before the responder starts (so the
/// nft table adopted from an earlier run is checked against the whole
/// allowlist on the first housekeeping tick; each lookup is bounded),
/// then leaves the task refreshing on the runtime.
fn start_allowlist(cfg: &Config, rt: &tokio::runtime::Runtime, metrics: &Metrics) -> AllowlistFeed {
    let (feed, _) = tokio::sync::watch::channel(Published {
        configured: cfg.respond.allowlist_nets(),
        discovered: Vec::new(),
    });
    let feed = Arc::new(feed);
    let rediscover = Arc::new(tokio::sync::Notify::new());
    let discovery = rt.block_on(async {
        let mut d = Discovery::start(discovery_settings(cfg), &metrics.registry).await;
        publish(&feed, d.round().await);
        tracing::info!(sources = ?d.counts(), "allowlist discovered");
        d
    });
    rt.spawn(discovery.run(feed.clone(), rediscover.clone()));
    AllowlistFeed { feed, rediscover }
}

/// Loads the model set again on SIGHUP.
struct Reloader {
    /// Re-reads the configuration on SIGHUP with the same overrides as at
    /// start.
    load: ConfigLoader,
    tx: crossbeam_channel::Sender<Reload<RuleSet>>,
    metrics: Arc<Metrics>,
    /// The heartbeat lists the models in use.
    reporter: ReporterHandle,
    /// The configured allowlist is reloaded too.
    allowlist: AllowlistFeed,
}

impl Reloader {
    fn reload(&self) {
        // A bad allowlist entry fails `effective_config` with its key
        // (respond.allowlist[N]): the whole reload is refused, and the
        // running allowlist stays with the running models and rules.
        let result = (|| -> Result<(Reload<RuleSet>, Vec<ipnet::IpNet>), DaemonError> {
            let cfg = (self.load)().step("the configuration")?;
            let models = load_models(&cfg.models.specs).step("loading the models")?;
            let rules = load_rules(&cfg, &models)?;
            self.reporter.set_models(model_refs(&models));
            Ok((
                Reload {
                    models,
                    extra: Some(rules),
                },
                cfg.respond.allowlist_nets(),
            ))
        })();
        match result {
            Ok((reload, allowlist)) => {
                if self.tx.try_send(reload).is_ok() {
                    let n = allowlist.len();
                    self.allowlist
                        .feed
                        .send_modify(|p| p.configured = allowlist);
                    self.allowlist.rediscover.notify_one();
                    self.metrics.reloads.with_label_values(&["ok"]).inc();
                    tracing::info!(
                        configured_allowlist = n,
                        "SIGHUP: new models, rules and allowlist loaded"
                    );
                } else {
                    self.metrics.reloads.with_label_values(&["error"]).inc();
                    tracing::error!("SIGHUP: a reload is already pending; this one is dropped");
                }
            }
            Err(e) => {
                self.metrics.reloads.with_label_values(&["error"]).inc();
                let e = chain(&e);
                tracing::error!(
                    error = e,
                    "SIGHUP: reload refused, the running models, rules and allowlist stay"
                );
                eprintln!(
                    "osprey: reload refused, the running models, rules and allowlist stay: {e}"
                );
            }
        }
    }
}

/// The tokio runtime: the HTTP endpoints, the signal handlers, the
/// responder and the platform reporter.
struct IoThread {
    handle: std::thread::JoinHandle<()>,
    /// Set once the pipeline has ended: stops the metrics server, and the
    /// signal loop when the pipeline ended on its own (a capture error).
    done: tokio::sync::watch::Sender<bool>,
}

/// Longest the responder may take at shutdown to handle the proposals
/// still queued, so a stuck enforcer cannot hold the exit.
const RESPONDER_DRAIN: Duration = Duration::from_secs(10);

impl IoThread {
    #[allow(clippy::too_many_arguments)]
    fn start(
        rt: tokio::runtime::Runtime,
        (listener, limits): (std::net::TcpListener, ServerLimits),
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        stop: Arc<AtomicBool>,
        reloader: Reloader,
        responder: (Responder, tokio::sync::mpsc::Receiver<Proposal>),
        reporter: ReporterTask,
    ) -> Result<IoThread, DaemonError> {
        use tokio::signal::unix::{signal, SignalKind};
        // Handlers are installed here, before capture starts, so that a
        // SIGTERM during start-up is not lost.
        let (mut term, mut int, mut hup) = rt
            .block_on(async {
                Ok::<_, std::io::Error>((
                    signal(SignalKind::terminate())?,
                    signal(SignalKind::interrupt())?,
                    signal(SignalKind::hangup())?,
                ))
            })
            .step("installing the signal handlers")?;
        let (done, done_rx) = tokio::sync::watch::channel(false);
        let handle = std::thread::Builder::new()
            .name("osprey-io".into())
            .spawn(move || {
                rt.block_on(async move {
                    let mut server_done = done_rx.clone();
                    let server = tokio::spawn(crate::metrics::serve(
                        listener,
                        metrics,
                        health.clone(),
                        limits,
                        async move {
                            let _ = server_done.wait_for(|&d| d).await;
                        },
                    ));
                    let (responder, proposals) = responder;
                    let responding = tokio::spawn(responder.run(proposals));
                    let (report_stop, report_stop_rx) = tokio::sync::oneshot::channel::<()>();
                    let reporting = tokio::spawn(reporter.run(async move {
                        let _ = report_stop_rx.await;
                    }));
                    let reloader = Arc::new(reloader);
                    let mut ended = done_rx;
                    loop {
                        tokio::select! {
                            _ = term.recv() => break,
                            _ = int.recv() => break,
                            _ = ended.wait_for(|&d| d) => break,
                            _ = hup.recv() => {
                                let r = reloader.clone();
                                let _ = tokio::task::spawn_blocking(move || r.reload()).await;
                            }
                        }
                    }
                    tracing::info!("stopping: flushing open connections");
                    health.set_stopping();
                    crate::metrics::notify::stopping();
                    stop.store(true, Ordering::Relaxed);
                    // Keep serving /metrics while the pipeline drains.
                    if let Ok(Err(e)) = server.await {
                        tracing::warn!(error = %e, "metrics server failed");
                    }
                    // Ends once the scorer has finished and its sender is
                    // dropped: every proposal queued by then is handled, and
                    // its action is in the spool.
                    if tokio::time::timeout(RESPONDER_DRAIN, responding)
                        .await
                        .is_err()
                    {
                        tracing::warn!(
                            limit = ?RESPONDER_DRAIN,
                            "the responder did not drain its queue in time; its last proposals are not reported"
                        );
                    }
                    // One last delivery attempt, bounded by
                    // platform.shutdown_delivery_ms; what it does not
                    // deliver stays spooled for the next start.
                    let _ = report_stop.send(());
                    let _ = reporting.await;
                });
            })
            .step("starting the I/O thread")?;
        Ok(IoThread { handle, done })
    }

    /// Waits for the thread: the responder's drain and the reporter's last
    /// attempt run after the pipeline ends (each bounded), and exiting
    /// before them would lose the proposals still queued and leave the
    /// final flush's events spooled.
    fn shutdown(self) {
        let _ = self.done.send(true);
        if self.handle.join().is_err() {
            tracing::error!("the I/O thread panicked");
        }
    }
}
