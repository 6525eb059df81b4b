//! The `osprey` command line. Flags become a validated `ReplayOptions`
//! before anything runs; errors are printed with their whole chain.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use osprey::conn::config::{NetSet, PortSet};
use osprey::conn::EngineConfig;
use osprey::replay::{self, ReplayOptions};
use osprey::report::{ExtraColumns, LogFormat};

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
    /// Extra conn.log columns from Zeek policy scripts: `mac`, `vlan`.
    #[arg(long, default_value = "")]
    extra_columns: String,
    /// Override a Zeek setting, e.g. `tcp_inactivity_timeout=10min` or
    /// `ignore_checksums_nets+=192.168.0.0/16` (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    settings: Vec<String>,
    /// Do not print the summary.
    #[arg(short, long)]
    quiet: bool,
}

fn build_options(a: ReplayArgs) -> Result<ReplayOptions> {
    let mut cfg = EngineConfig {
        ignore_checksums: a.ignore_checksums,
        seed: a.seed,
        ..EngineConfig::default()
    };
    if let Some(p) = &a.likely_server_ports {
        cfg.likely_server_ports =
            PortSet::from_list(p).map_err(|e| anyhow::anyhow!("--likely-server-ports: {e}"))?;
    }
    if let Some(n) = &a.local_nets {
        cfg.local_nets = if n.trim() == "none" {
            NetSet::default()
        } else {
            NetSet::parse(n).map_err(|e| anyhow::anyhow!("--local-nets: {e}"))?
        };
    }
    cfg.analyzers = EngineConfig::parse_analyzers(&a.analyzers)
        .map_err(|e| anyhow::anyhow!("--analyzers: {e}"))?;
    for s in &a.settings {
        cfg.set(s).with_context(|| format!("--set {s}"))?;
    }
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
        filter: a.filter,
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

fn run(cli: Cli) -> Result<()> {
    match cli.command {
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
            let opts = build_options(a)?;
            let summary = replay::run(&opts)?;
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
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OSPREY_LOG")
                .unwrap_or_else(|_| "warn".into()),
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
