//! The `osprey` command line. Flags become validated options
//! (`ReplayOptions`, `CalibrateOptions`) before anything runs; errors are
//! printed with their whole chain.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use osprey::conn::config::{NetSet, PortSet};
use osprey::conn::EngineConfig;
use osprey::drivers::replay::{self, ReplayOptions};
use osprey::report::{ExtraColumns, LogFormat};

use osprey::drivers::daemon;

/// mimalloc keeps freed memory in per-thread pages instead of handing it
/// back to the kernel and faulting it in again, which glibc's allocator did
/// thousands of times per replay as connections came and went.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "osprey",
    version,
    about = "Network anomaly-detection sensor with Zeek-exact connection records"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read pcap/pcapng files as one trace and write Zeek's conn.log for them.
    Replay(ReplayArgs),
    /// Compute a model's input features for every connection of pcap files
    /// or Zeek conn.log files (TSV or JSON), as CSV.
    Featurize(FeaturizeArgs),
    /// Load models with their feature specs, check each model against its
    /// spec and print the spec as a table; fails on the first mismatch.
    Check(CheckArgs),
    /// Tune the models' and rules' thresholds to a deployment's own benign
    /// traffic, for a target false-positive rate (thresholds only rise).
    ///
    /// Reads captures and/or Zeek conn.logs of normal traffic, scores and
    /// decides on them as the daemon would, and writes into --out the
    /// calibrated specs with copies of their ONNX files, rules.yaml and
    /// calibration.json (what was measured), for `osprey check` and
    /// `osprey run`. A model's threshold becomes the (1 - FPR) quantile of
    /// what it scores the benign connections; a rule's evidence threshold
    /// goes above the highest value any benign source reached.
    Calibrate(CalibrateArgs),
    /// Run the live sensor: capture, conn records, scoring, metrics.
    Run(RunArgs),
    /// Delete osprey's nftables table (every block and rate limit).
    Cleanup(CleanupArgs),
    /// List or lift the running daemon's decisions (blocks, rate limits,
    /// quarantines), through its local control socket.
    Decisions(DecisionsArgs),
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["models", "config", "rules"])))]
struct CheckArgs {
    /// Feature specs (models/NAME.toml), each next to its ONNX model.
    #[arg(long = "model", value_name = "SPEC", num_args = 1..)]
    models: Vec<PathBuf>,
    /// A daemon configuration file (`osprey run --config`): parsed,
    /// checked, and its models loaded.
    #[arg(long)]
    config: Option<PathBuf>,
    /// A rule file: checked against the models (--model, else the
    /// config's, else the bundled ones) and printed in the order rules are
    /// tried.
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
}

#[derive(clap::Args)]
struct CalibrateArgs {
    /// A feature spec to calibrate (models/NAME.toml, next to its ONNX
    /// model; repeatable). Default: the configuration's models, else the
    /// bundled classifier and anomaly model.
    #[arg(long = "model", value_name = "SPEC")]
    models: Vec<PathBuf>,
    /// The rule file whose evidence thresholds to raise (default: the
    /// configuration's rules_file, else the bundled rules/default.yaml).
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// Calibrate the models only: no rules.yaml.
    #[arg(long, conflicts_with = "rules")]
    no_rules: bool,
    /// Share of benign connections each model may still flag, in
    /// (0, 0.5]. The input must hold at least ceil(10 / FPR) connections
    /// (10,000 at 0.001), so that ten lie above the quantile.
    #[arg(long, value_name = "FPR", default_value_t = 0.001, value_parser = target_fpr)]
    target_fpr: f64,
    /// Folder for the calibrated specs (with copies of their ONNX files),
    /// rules.yaml and calibration.json; created if need be. Files land in
    /// it only when calibration succeeded.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The daemon's configuration (`osprey run --config`): its models,
    /// rules, evidence bounds, allowlist, hooks and interim settings.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
    /// Benign traffic of the deployment: captures (pcap, pcapng) and/or
    /// Zeek conn.log files (TSV or JSON). Each is its own trace (host
    /// context and evidence do not cross files).
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
}

/// `--target-fpr`: a share in (0, 0.5].
fn target_fpr(s: &str) -> Result<f64, String> {
    let max = osprey::drivers::calibrate::MAX_TARGET_FPR;
    match s.trim().parse::<f64>() {
        Ok(x) if x > 0.0 && x <= max => Ok(x),
        Ok(_) => Err(format!("must lie in (0, {max}]")),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}

fn calibrate(a: CalibrateArgs) -> Result<()> {
    use osprey::drivers::calibrate::{self, CalibrateOptions, ModelInput, RuleInput};
    let mut cfg = match &a.config {
        Some(p) => osprey::config::Config::load(p)?,
        None => osprey::config::Config::default(),
    };
    let named = if a.models.is_empty() {
        cfg.models.specs.clone()
    } else {
        a.models.clone()
    };
    // The bundled models are calibrated from files like any other: they
    // live in a temporary folder until calibration is done.
    let bundled = tempfile::Builder::new()
        .prefix("osprey-models-")
        .tempdir()
        .context("a temporary folder for the bundled models")?;
    let models: Vec<ModelInput> = if named.is_empty() {
        osprey::model::bundled::unpack(bundled.path())?
            .into_iter()
            .map(|spec| ModelInput {
                origin: format!(
                    "bundled models/{}",
                    spec.file_name().unwrap_or_default().to_string_lossy()
                ),
                spec,
            })
            .collect()
    } else {
        named
            .into_iter()
            .map(|spec| ModelInput {
                origin: spec.display().to_string(),
                spec,
            })
            .collect()
    };
    if let Some(r) = &a.rules {
        cfg.respond.rules_file = Some(r.clone());
    }
    let rules = if a.no_rules {
        None
    } else {
        let (text, yaml, origin) = match &cfg.respond.rules_file {
            Some(p) => (
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
                osprey::respond::rules::RuleSet::is_yaml(p),
                p.display().to_string(),
            ),
            None => (
                daemon::DEFAULT_RULES.to_string(),
                true,
                "bundled rules/default.yaml".to_string(),
            ),
        };
        Some(RuleInput {
            text,
            yaml,
            origin,
            context: daemon::rule_context(&cfg),
        })
    };
    let opts = CalibrateOptions {
        inputs: a.inputs,
        models,
        rules,
        target_fpr: a.target_fpr,
        out: a.out,
        engine: a.engine.config()?,
        filter: a.engine.filter,
        interim: cfg.interim(),
        context: cfg.live_context(),
        evidence: cfg.evidence.clone(),
        batch_rows: osprey::score::DEFAULT_BATCH_ROWS,
    };
    let report = calibrate::run(&opts)?;
    print!("{}", report.render());
    let dir = report.out.display();
    let mut check = String::from("osprey check");
    for m in &report.models {
        check += &format!(" --model {dir}/{}", m.written);
    }
    if let Some(r) = &report.rules {
        check += &format!(" --rules {dir}/{}", r.written);
    }
    if let Some(c) = &a.config {
        check += &format!(" --config {}", c.display());
    }
    println!("  check them with: {check}");
    Ok(())
}

#[derive(clap::Args)]
struct CleanupArgs {
    /// The daemon's configuration (for respond.nft: table name, nft path).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct DecisionsArgs {
    #[command(subcommand)]
    op: DecisionsOp,
    /// The daemon's control socket (default: the configuration's
    /// respond.control_socket, else /run/osprey/control.sock).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// The daemon's configuration, to find its control socket.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum DecisionsOp {
    /// Every decision in force or waiting to be applied.
    List {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Lift every decision on an address or range (and on ranges around
    /// or inside it). It stays lifted: a new decision needs evidence
    /// gathered after the lift. The platform is told.
    Delete {
        /// ADDR or CIDR.
        target: String,
        /// Why, for the platform and the log.
        #[arg(long)]
        reason: Option<String>,
        /// JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
}

fn decisions(a: DecisionsArgs) -> Result<()> {
    use osprey::respond::control::{self, Answer, Request};
    let socket = match (&a.socket, &a.config) {
        (Some(s), _) => s.clone(),
        (None, Some(c)) => PathBuf::from(osprey::config::Config::load(c)?.respond.control_socket),
        (None, None) => PathBuf::from(control::DEFAULT_SOCKET),
    };
    let (request, json) = match &a.op {
        DecisionsOp::List { json } => (Request::List, *json),
        DecisionsOp::Delete {
            target,
            reason,
            json,
        } => (
            Request::Delete {
                target: control::parse_target(target)?,
                reason: reason.clone(),
            },
            *json,
        ),
    };
    let answer = control::call(&socket, &request)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    match answer {
        Answer::Decisions { decisions } if decisions.is_empty() => println!("no decisions"),
        Answer::Decisions { decisions } => print!("{}", control::table(&decisions)),
        Answer::Deleted { deleted } => {
            println!("{} decision(s) deleted", deleted.len());
            if !deleted.is_empty() {
                print!("{}", control::table(&deleted));
            }
        }
        Answer::Error { error } => anyhow::bail!("{error}"),
    }
    Ok(())
}

fn cleanup(a: CleanupArgs) -> Result<()> {
    let cfg = match &a.config {
        Some(p) => osprey::config::Config::load(p)?,
        None => osprey::config::Config::default(),
    };
    let table = &cfg.respond.nft.table;
    if osprey::respond::nft::NftEnforcer::cleanup(&cfg.respond.nft)? {
        println!("deleted nftables table inet {table}");
    } else {
        println!("no nftables table inet {table}");
    }
    Ok(())
}

#[derive(clap::Args)]
struct FeaturizeArgs {
    /// The model's feature spec (models/NAME.toml).
    #[arg(long)]
    spec: PathBuf,
    /// Lab labels (labels.csv, with hosts.csv beside it): adds a label column.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Write the features before scaling (what training fits the scaler on).
    #[arg(long)]
    raw: bool,
    /// Output file (default: standard output).
    #[arg(short, long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
    /// Capture files or conn.log files; each is featurized on its own (host
    /// context does not cross files). The file name is the `source` column.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
}

/// How captures become conn records: the same flags for `replay` and
/// `featurize`, so that training data and production agree.
#[derive(clap::Args, Clone)]
struct EngineArgs {
    /// Do not verify IP/TCP/UDP/ICMP checksums (Zeek's -C).
    #[arg(short = 'C', long)]
    ignore_checksums: bool,
    /// BPF capture filter (Zeek's -f).
    #[arg(short = 'f', long)]
    filter: Option<String>,
    /// Ports that identify the responder of a connection whose start was
    /// not seen, e.g. `80/tcp,53/udp` (default: Zeek's default-mode set).
    #[arg(long)]
    likely_server_ports: Option<String>,
    /// Networks counted as local for local_orig/local_resp, e.g.
    /// `10.0.0.0/8,fd00::/8` (default: Zeek's private address space;
    /// `none` leaves the fields unset).
    #[arg(long)]
    local_nets: Option<String>,
    /// Seed for connection uids, for reproducible output.
    #[arg(long)]
    seed: Option<u64>,
    /// Protocol analyzers used to identify `service`: `all`, `none` or a
    /// list such as `http,dns,ssl`.
    #[arg(long, default_value = "all")]
    analyzers: String,
    /// Override a Zeek setting, e.g. `tcp_inactivity_timeout=10min` or
    /// `ignore_checksums_nets+=192.168.0.0/16` (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    settings: Vec<String>,
}

impl EngineArgs {
    fn config(&self) -> Result<EngineConfig> {
        let mut cfg = EngineConfig {
            ignore_checksums: self.ignore_checksums,
            seed: self.seed,
            ..EngineConfig::default()
        };
        if let Some(p) = &self.likely_server_ports {
            cfg.likely_server_ports =
                PortSet::from_list(p).map_err(|e| anyhow::anyhow!("--likely-server-ports: {e}"))?;
        }
        if let Some(n) = &self.local_nets {
            cfg.local_nets = if n.trim() == "none" {
                NetSet::default()
            } else {
                NetSet::parse(n).map_err(|e| anyhow::anyhow!("--local-nets: {e}"))?
            };
        }
        cfg.analyzers = EngineConfig::parse_analyzers(&self.analyzers)
            .map_err(|e| anyhow::anyhow!("--analyzers: {e}"))?;
        for s in &self.settings {
            cfg.set(s).with_context(|| format!("--set {s}"))?;
        }
        Ok(cfg)
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// Zeek's ASCII writer (TSV with #fields/#types headers).
    Zeek,
    /// Zeek's JSON writer: one object per line.
    Json,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// Capture files (pcap or pcapng), read in order as one trace
    /// (default: the bundled sample capture).
    pcaps: Vec<PathBuf>,
    /// Directory for conn.log.
    #[arg(long, default_value = ".")]
    log_dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "zeek")]
    format: Format,
    #[command(flatten)]
    engine: EngineArgs,
    /// Extra conn.log columns from Zeek policy scripts: `mac`, `vlan`.
    #[arg(long, default_value = "")]
    extra_columns: String,
    /// Score every record with this model (its spec file,
    /// models/NAME.toml; repeatable). Default: the bundled classifier and
    /// anomaly model.
    #[arg(long = "model", value_name = "SPEC")]
    models: Vec<PathBuf>,
    /// Write conn.log only: no scoring, no alerts.log (and no rules,
    /// unless --rules names a file of rules on evidence alone).
    #[arg(long, conflicts_with = "models")]
    no_models: bool,
    /// Evaluate these rules (default: the configuration's rules_file, else
    /// the bundled rules/default.yaml), in dry run, and write actions.log.
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// Do not evaluate rules: no actions.log.
    #[arg(long, conflicts_with = "rules")]
    no_rules: bool,
    /// The daemon's configuration (`osprey run --config`), so the replay
    /// decides with its evidence bounds, allowlist, breakers, rules and
    /// interim settings.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Rows per inference call.
    #[arg(long, default_value_t = osprey::score::DEFAULT_BATCH_ROWS)]
    batch_rows: usize,
    /// Do not print the summary.
    #[arg(short, long)]
    quiet: bool,
}

fn build_options(a: ReplayArgs) -> Result<ReplayOptions> {
    let cfg = a.engine.config()?;
    let mut extra = ExtraColumns::parse(&a.extra_columns)
        .map_err(|e| anyhow::anyhow!("--extra-columns: {e}"))?;
    extra.ctx_vlans = cfg.conn_key_vlan;
    Ok(ReplayOptions {
        inputs: a.pcaps,
        log_dir: a.log_dir,
        format: match a.format {
            Format::Zeek => LogFormat::Zeek,
            Format::Json => LogFormat::Json,
        },
        extra,
        filter: a.engine.filter,
        engine: cfg,
        progress: replay::stderr_is_terminal() && !a.quiet,
    })
}

/// The bundled lab excerpt (samples/README.md), so that `osprey replay`
/// with no arguments runs anywhere.
const SAMPLE_PCAP: &[u8] = include_bytes!("../samples/lab-mix-excerpt.pcap");

/// A file removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn write_sample() -> Result<TempFile> {
    let path = std::env::temp_dir().join(format!("osprey-sample-{}.pcap", std::process::id()));
    std::fs::write(&path, SAMPLE_PCAP)
        .with_context(|| format!("writing the bundled sample to {}", path.display()))?;
    Ok(TempFile(path))
}

/// Loads the named specs and their ONNX files, or the bundled models when
/// none is named.
fn load_models(specs: &[PathBuf]) -> Result<Vec<osprey::model::Model>> {
    Ok(osprey::model::bundled::load_models(specs)?)
}

fn featurize(a: FeaturizeArgs) -> Result<()> {
    use osprey::drivers::featurize as table;
    use osprey::features::{labels::LabLabels, FeatureSpec};
    use std::io::Write;
    let spec = FeatureSpec::load(&a.spec)?;
    let labels = a.labels.as_deref().map(LabLabels::load).transpose()?;
    let engine = a.engine.config()?;
    let mut out: Box<dyn Write> = match &a.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    table::write_header(&mut out, &spec, labels.is_some())?;
    for input in &a.inputs {
        let flows = table::read_flows(input, &spec, &engine, a.engine.filter.as_deref())?;
        let source = input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        table::write_rows(&mut out, &source, &spec, &flows, !a.raw, labels.as_ref())?;
    }
    out.flush()?;
    Ok(())
}

fn check(a: CheckArgs) -> Result<()> {
    use osprey::features::FeatureSpec;
    use osprey::model::Model;
    if let Some(path) = &a.config {
        let cfg = osprey::config::Config::load(path)?;
        let models = load_models(&cfg.models.specs)?;
        println!(
            "{}: ok ({} interface(s), {} model(s): {})",
            path.display(),
            cfg.capture.interfaces.len(),
            models.len(),
            models
                .iter()
                .map(|m| m.spec().model.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(path) = &a.rules {
        let mut cfg = match &a.config {
            Some(p) => osprey::config::Config::load(p)?,
            None => osprey::config::Config::default(),
        };
        if !a.models.is_empty() {
            cfg.models.specs = a.models.clone();
        }
        cfg.respond.rules_file = Some(path.clone());
        let models = load_models(&cfg.models.specs)?;
        let set = daemon::load_rules(&cfg, &models)?;
        println!(
            "{}: ok, {} rule(s), tried in this order:",
            path.display(),
            set.rules.len()
        );
        for r in &set.rules {
            println!("  {}", osprey::respond::rules::summary(r));
        }
    }
    for (i, path) in a.models.iter().enumerate() {
        let spec = FeatureSpec::load(path)?;
        let model = Model::load(spec)?;
        if i > 0 {
            println!();
        }
        print!("{}", model.describe());
    }
    Ok(())
}

/// Models, rules and the daemon's settings for a replay's scoring and
/// decisions (loaded, and so checked, before any packet is read).
fn replay_scoring(a: &ReplayArgs) -> Result<Option<replay::ReplayScoring>> {
    let mut cfg = match &a.config {
        Some(p) => osprey::config::Config::load(p)?,
        None => osprey::config::Config::default(),
    };
    let models = if a.no_models {
        Vec::new()
    } else if !a.models.is_empty() {
        load_models(&a.models)?
    } else {
        load_models(&cfg.models.specs)?
    };
    if let Some(r) = &a.rules {
        cfg.respond.rules_file = Some(r.clone());
    }
    let want_rules = !a.no_rules && (!a.no_models || a.rules.is_some());
    let rules = if want_rules {
        let source = cfg.respond.rules_file.as_ref().map_or_else(
            || "bundled rules/default.yaml".to_string(),
            |p| p.display().to_string(),
        );
        Some((daemon::load_rules(&cfg, &models)?, source))
    } else {
        None
    };
    if models.is_empty() && rules.is_none() {
        return Ok(None);
    }
    let mut admit = daemon::admit_config(&cfg);
    admit.enforce = false;
    Ok(Some(replay::ReplayScoring {
        models,
        rules,
        evidence: cfg.evidence.clone(),
        admit,
        allowlist: cfg.respond.allowlist_nets(),
        batch_rows: a.batch_rows,
        context: cfg.live_context(),
        interim: cfg.interim(),
    }))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Check(a) => check(a),
        Command::Calibrate(a) => calibrate(a),
        Command::Run(a) => {
            let cfg = effective_config(&a)?;
            let reload: daemon::ConfigLoader =
                Box::new(move || effective_config(&a).map_err(|e| format!("{e:#}").into()));
            Ok(daemon::run(cfg, reload)?)
        }
        Command::Cleanup(a) => cleanup(a),
        Command::Decisions(a) => decisions(a),
        Command::Featurize(a) => featurize(a),
        Command::Replay(mut a) => {
            let quiet = a.quiet;
            let _sample = if a.pcaps.is_empty() {
                let t = write_sample()?;
                if !quiet {
                    eprintln!("osprey replay: no capture named, reading the bundled sample (samples/lab-mix-excerpt.pcap)");
                }
                a.pcaps.push(t.0.clone());
                Some(t)
            } else {
                None
            };
            let scoring = replay_scoring(&a)?;
            let opts = build_options(a)?;
            let summary = replay::run(&opts, scoring)?;
            if !quiet {
                eprint!("{}", summary.render());
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            // Action lines are the audit trail of enforcement: on unless
            // OSPREY_LOG says otherwise.
            tracing_subscriber::EnvFilter::try_from_env("OSPREY_LOG")
                .unwrap_or_else(|_| "warn,osprey::action=info".into()),
        )
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("osprey: error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// `osprey run`'s command line: the configuration file and overrides of
/// its keys.
#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Configuration file (TOML or YAML; docs/osprey.example.toml lists
    /// every key). Without it, every key has its default.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Interface to capture on (repeatable; replaces capture.interfaces).
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    interfaces: Vec<String>,
    /// Directory for conn.log and alerts.log (output.log_dir).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Address of /metrics, /healthz and /readyz (metrics.listen_addr).
    #[arg(long, value_name = "HOST:PORT", value_parser = osprey::config::parse_listen_addr)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// A model's feature spec (repeatable; replaces models.specs).
    #[arg(long = "model", value_name = "SPEC")]
    models: Vec<PathBuf>,
    /// BPF capture filter (capture.bpf_filter).
    #[arg(short = 'f', long)]
    filter: Option<String>,
    /// JSON lines on standard output instead of log files (output.stdout).
    #[arg(long)]
    stdout: bool,
    /// Enforce actions (respond.enforce); without it, every action is a
    /// logged and reported dry run.
    #[arg(long)]
    enforce: bool,
    /// Rule file (respond.rules_file; default: the bundled rules).
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
}

/// The configuration file with the command line's overrides applied.
fn effective_config(a: &RunArgs) -> Result<osprey::config::Config> {
    let mut cfg = match &a.config {
        Some(p) => osprey::config::Config::load(p)?,
        None => osprey::config::Config::default(),
    };
    if !a.interfaces.is_empty() {
        cfg.capture.interfaces = a.interfaces.clone();
    }
    if let Some(d) = &a.log_dir {
        cfg.output.log_dir = d.clone();
    }
    if let Some(m) = &a.metrics_addr {
        cfg.metrics.listen_addr = *m;
    }
    if !a.models.is_empty() {
        cfg.models.specs = a.models.clone();
    }
    if let Some(f) = &a.filter {
        cfg.capture.bpf_filter = f.clone();
    }
    if a.stdout {
        cfg.output.stdout = true;
    }
    if a.enforce {
        cfg.respond.enforce = true;
    }
    if let Some(r) = &a.rules {
        cfg.respond.rules_file = Some(r.clone());
    }
    let origin = a
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("(command line)"));
    cfg.validate(&origin)?;
    Ok(cfg)
}
