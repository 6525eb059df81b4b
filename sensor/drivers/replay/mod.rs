//! `osprey replay`: capture files in, conn.log out — and, with models or
//! rules, the daemon's scoring and decisions over the same records
//! (`respond.rs`): alerts.log and actions.log as the daemon would write
//! them.
//!
//! The log is written to a hidden temporary file and renamed into place
//! only when every input was read to its end, so a `conn.log` with its
//! `#close` footer always describes complete input. When an input turns out
//! to be damaged part-way, what was read is kept as `conn.log.partial`
//! (no footer) and the error names the file.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod respond;

pub use respond::{ActionSummary, ReplayOutcome, ReplayScoring};

use crate::capture::{self, CaptureError, Packet, PacketSource, SourceStats};
use crate::conn::node_view::{NodeView, NodeViewStats, Verdict};
use crate::conn::record::{ConnRecord, ConnState};
use crate::conn::service::ViolationCounts;
use crate::conn::tcp::ReasmDrop;
use crate::conn::{Engine, EngineConfig};
use crate::decode::frag::FragDrop;
use crate::decode::prepare::Prepared;
use crate::decode::PacketBatch;
use crate::decode::WeirdCounts;
use crate::metrics::Metrics;
use crate::report::{ConnLogWriter, ExtraColumns, LogFormat};
use crate::score::live::{run_scorer, ModelSet, RecordBatch, Reload, ScorerOptions};

/// Packets per batch from the reader thread, and its arena size.
const READER_BATCH_PACKETS: usize = 4096;
const READER_BATCH_BYTES: usize = 1 << 20;
/// Batches queued from the reader before it waits.
const READER_QUEUE_BATCHES: usize = 8;
/// Batches in circulation: the queue, one being filled, one being read.
const READER_POOL_BATCHES: usize = READER_QUEUE_BATCHES + 2;

/// The reader thread: copies packets from the sources, file after file,
/// into batches; a read error ends the stream with that error.
/// Returns how many files were opened, and what their sources counted.
fn read_batches(
    mut sources: Vec<capture::OfflineSource>,
    out: crossbeam_channel::Sender<Result<PacketBatch, CaptureError>>,
    empties: crossbeam_channel::Receiver<PacketBatch>,
    verify: bool,
) -> (usize, SourceStats) {
    send_batches(&mut sources, &out, &empties, verify);
    let mut total = SourceStats::default();
    for s in &sources {
        total += s.stats();
    }
    (sources.len(), total)
}

/// [`read_batches`]' loop; returns when the sources are read, when one
/// fails, or when the engine has gone.
fn send_batches(
    sources: &mut [capture::OfflineSource],
    out: &crossbeam_channel::Sender<Result<PacketBatch, CaptureError>>,
    empties: &crossbeam_channel::Receiver<PacketBatch>,
    verify: bool,
) {
    // Batches come back from the engine; a fixed set of them circulates, so
    // the steady state allocates (and maps, and unmaps) nothing.
    for (i, src) in sources.iter_mut().enumerate() {
        let Ok(mut batch) = empties.recv() else {
            return;
        };
        batch.clear();
        batch.file = i;
        loop {
            match src.next_packet() {
                Ok(Some(p)) => {
                    if !batch.fits(&p) {
                        let Ok(mut next) = empties.recv() else {
                            return;
                        };
                        next.clear();
                        next.file = i;
                        if out.send(Ok(std::mem::replace(&mut batch, next))).is_err() {
                            return;
                        }
                    }
                    batch.push(&p, verify);
                }
                Ok(None) => break,
                Err(e) => {
                    if !batch.is_empty() {
                        let _ = out.send(Ok(batch));
                    }
                    let _ = out.send(Err(e));
                    return;
                }
            }
        }
        if !batch.is_empty() && out.send(Ok(batch)).is_err() {
            return;
        }
    }
}

/// Records handed to the writer thread at a time.
const BATCH_RECORDS: usize = 512;
/// Batches queued for the writer before the engine waits.
const WRITER_QUEUE_BATCHES: usize = 16;
/// Record batches in circulation: the queue, one being filled, one being
/// written.
const WRITER_POOL_BATCHES: usize = WRITER_QUEUE_BATCHES + 2;

/// Everything `replay` needs, already validated.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    pub inputs: Vec<PathBuf>,
    pub log_dir: PathBuf,
    pub format: LogFormat,
    pub extra: ExtraColumns,
    pub filter: Option<String>,
    pub engine: EngineConfig,
    /// Print a progress line (only sensible when stderr is a terminal).
    pub progress: bool,
}

/// What a replay saw, for the end-of-run summary.
#[derive(Default)]
pub struct Summary {
    pub files: usize,
    /// pcapng packet blocks not read: an unknown interface, or a zero
    /// length (`SourceStats::skipped`).
    pub skipped_packet_blocks: u64,
    pub packets: u64,
    pub bytes: u64,
    pub non_ip: u64,
    /// What the node view suppressed (copies seen on another interface,
    /// NAT twins) in an `any` capture.
    pub node_view: NodeViewStats,
    pub records: u64,
    pub records_by_state: [u64; 13],
    pub weirds: WeirdCounts,
    /// Protocol violations the service analyzers reported.
    pub analyzer_violations: ViolationCounts,
    pub evicted: u64,
    pub fragments_reassembled: u64,
    /// Incomplete datagrams dropped, by `FragDrop` index.
    pub fragments_dropped: [u64; FragDrop::COUNT],
    /// TCP reassembly bytes given up, by `ReasmDrop` index.
    pub reassembly_dropped_bytes: [u64; ReasmDrop::COUNT],
    pub elapsed: Duration,
    /// The process's peak resident memory when the replay ended (Linux's
    /// VmHWM), the figure that says what hostile traffic cost.
    pub peak_rss_bytes: Option<u64>,
    pub log_path: PathBuf,
    /// What scoring and deciding made of the records, when they ran.
    pub scored: Option<ReplayOutcome>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{source}; the {records} connections read before it are in {partial}")]
    Partial {
        source: CaptureError,
        records: u64,
        partial: PathBuf,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ReplayError + '_ {
    move |source| ReplayError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Removes the temporary log unless disarmed.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The temporary names of a replay's logs, removed unless renamed into
/// place.
struct Outputs {
    dir: PathBuf,
    guards: Vec<TempGuard>,
}

impl Outputs {
    fn tmp(&mut self, name: &str) -> PathBuf {
        let p = self.dir.join(format!(".{name}.tmp-{}", std::process::id()));
        self.guards.push(TempGuard(Some(p.clone())));
        p
    }

    /// Renames the temporary `tmp` to `name` and disarms its guard.
    fn publish(&mut self, tmp: &Path, name: &str) -> Result<PathBuf, ReplayError> {
        let dest = self.dir.join(name);
        std::fs::rename(tmp, &dest).map_err(io_err(&dest))?;
        for g in &mut self.guards {
            if g.0.as_deref() == Some(tmp) {
                g.0 = None;
            }
        }
        Ok(dest)
    }
}

/// Reads the inputs in order as one trace and writes conn.log; with
/// `scoring`, also scores every record and decides as the daemon would
/// (alerts.log, actions.log).
pub fn run(opts: &ReplayOptions, scoring: Option<ReplayScoring>) -> Result<Summary, ReplayError> {
    let started = Instant::now();
    // Open (and so validate) every input before creating any output.
    let sources = capture::open_all(&opts.inputs, opts.filter.as_deref())?;

    std::fs::create_dir_all(&opts.log_dir).map_err(io_err(&opts.log_dir))?;
    let name = "conn.log";
    let final_path = opts.log_dir.join(name);
    let mut outputs = Outputs {
        dir: opts.log_dir.clone(),
        guards: Vec::new(),
    };
    let tmp_path = outputs.tmp(name);
    let file = File::create(&tmp_path).map_err(io_err(&tmp_path))?;
    let writer = ConnLogWriter::new(
        BufWriter::with_capacity(1 << 20, file),
        opts.format,
        opts.extra,
    )
    .map_err(io_err(&tmp_path))?;
    let mut engine_cfg = opts.engine.clone();
    // Formatting, writing (and scoring) run on their own thread so that
    // the engine's thread only decodes and tracks connections. Batches
    // bound the queue; a set of record batches circulates between the
    // engine and a plain writer (the engine takes a fresh one only when
    // none has come back), so batches keep the capacity they grew to.
    let (tx, rx) = crossbeam_channel::bounded::<RecordBatch>(WRITER_QUEUE_BATCHES);
    let (recycle_tx, recycle_rx) =
        crossbeam_channel::bounded::<Vec<ConnRecord>>(WRITER_POOL_BATCHES);
    for _ in 1..WRITER_POOL_BATCHES {
        let _ = recycle_tx.send(Vec::with_capacity(BATCH_RECORDS));
    }
    let writer_thread = match scoring {
        None => std::thread::Builder::new()
            .name("conn-log-writer".into())
            .spawn(move || -> WriterResult {
                let mut writer = writer;
                for mut batch in rx {
                    for r in &batch.records {
                        writer.write(r)?;
                    }
                    batch.records.clear();
                    // Never wait: when the engine has made fresh batches
                    // meanwhile, the pool may be full, and a spare one is
                    // simply dropped.
                    let _ = recycle_tx.try_send(batch.records);
                }
                Ok((writer, None))
            }),
        Some(mut sc) => {
            // The daemon's scorer sees interim snapshots of open
            // connections; so does its replay.
            engine_cfg.interim = Some(sc.interim);
            let alerts_tmp = (!sc.models.is_empty()).then(|| outputs.tmp("alerts.log"));
            let actions_tmp = sc.rules.is_some().then(|| outputs.tmp("actions.log"));
            let mut sink = respond::ReplaySink::new(writer, &sc, alerts_tmp, actions_tmp)
                .map_err(io_err(&opts.log_dir))?;
            let models = std::mem::take(&mut sc.models);
            let options = ScorerOptions::replay(sc.batch_rows, sc.context.clone());
            std::thread::Builder::new()
                .name("replay-scorer".into())
                .spawn(move || -> WriterResult {
                    let set = ModelSet::new(models, options.context.clone());
                    let (_reload_tx, reloads) = crossbeam_channel::bounded::<Reload<()>>(1);
                    let metrics = Metrics::new();
                    let done = run_scorer(rx, reloads, set, &mut sink, options, &metrics);
                    let (writer, error, outcome) = sink.into_parts();
                    if let Some(e) = error {
                        return Err(e);
                    }
                    done?;
                    Ok((writer, Some(outcome)))
                })
        }
    }
    .map_err(io_err(&tmp_path))?;
    let emit = |records: Vec<ConnRecord>, clock: f64| RecordBatch {
        records,
        emitted: Instant::now(),
        clock,
    };
    let fresh = || {
        recycle_rx
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH_RECORDS))
    };

    // Reading runs on its own thread too: libpcap's per-packet reads and
    // copies then overlap with connection tracking. Packets cross over in
    // reused batches.
    let (pkt_tx, pkt_rx) =
        crossbeam_channel::bounded::<Result<PacketBatch, CaptureError>>(READER_QUEUE_BATCHES);
    let (empty_tx, empty_rx) = crossbeam_channel::bounded::<PacketBatch>(READER_POOL_BATCHES);
    for _ in 0..READER_POOL_BATCHES {
        let _ = empty_tx.send(PacketBatch::with_capacity(
            READER_BATCH_PACKETS,
            READER_BATCH_BYTES,
        ));
    }
    let file_names: Vec<PathBuf> = sources.iter().map(|s| s.path().to_path_buf()).collect();
    // The reader thread decodes link layers and verifies checksums (unless
    // they are ignored) ahead of the engine.
    let verify = !opts.engine.ignore_checksums;
    let reader_thread = std::thread::Builder::new()
        .name("pcap-reader".into())
        .spawn(move || read_batches(sources, pkt_tx, empty_rx, verify))
        .map_err(io_err(&tmp_path))?;

    let mut view = NodeView::new(engine_cfg.node_view);
    let mut engine = Engine::new(engine_cfg);
    let mut failure = None;
    let mut last_progress = Instant::now();
    let total_files = file_names.len();
    let mut batch: Vec<ConnRecord> = Vec::with_capacity(BATCH_RECORDS);
    let mut writer_gone = false;
    'batches: for msg in pkt_rx.iter() {
        let packets = match msg {
            Ok(p) => p,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        for (pkt, prep) in packets.packets() {
            through_node_view(view.as_mut(), &mut engine, &pkt, prep);
            while engine.has_records() || engine.has_interim() {
                engine.take_records_up_to(&mut batch, BATCH_RECORDS);
                engine.take_interim_up_to(&mut batch, BATCH_RECORDS);
                // Fails only when the writer stopped with an error, which
                // is collected below.
                if batch.len() >= BATCH_RECORDS
                    && tx
                        .send(emit(
                            std::mem::replace(&mut batch, fresh()),
                            engine.network_time(),
                        ))
                        .is_err()
                {
                    writer_gone = true;
                    break 'batches;
                }
            }
        }
        if opts.progress && last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            eprint!(
                "\rosprey replay: file {}/{} {}: {} packets, {} connections open   ",
                packets.file + 1,
                total_files,
                file_names
                    .get(packets.file)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                engine.stats().packets,
                engine.active_connections()
            );
        }
        let _ = empty_tx.send(packets);
    }
    // Stop the reader (if it is still reading) and collect it.
    drop(pkt_rx);
    drop(empty_tx);
    let (sources_read, source_stats) = reader_thread.join().unwrap_or_default();
    if opts.progress {
        eprint!("\r{:80}\r", "");
    }
    if !writer_gone {
        engine.finish();
        'flush: while engine.has_records() || engine.has_interim() {
            engine.take_records_up_to(&mut batch, BATCH_RECORDS);
            engine.take_interim_up_to(&mut batch, BATCH_RECORDS);
            if batch.len() >= BATCH_RECORDS
                && tx
                    .send(emit(
                        std::mem::replace(&mut batch, fresh()),
                        engine.network_time(),
                    ))
                    .is_err()
            {
                break 'flush;
            }
        }
        // The trace's last packet time, not a time past every record's
        // hold: the records flushed at the end arrive over several batches
        // and must all be in the host context before any is scored (the
        // scorer scores everything that waits when the channel closes).
        let _ = tx.send(emit(batch, engine.network_time()));
    }
    drop(tx);
    let (writer, scored) = match writer_thread.join() {
        Ok(r) => r.map_err(io_err(&tmp_path))?,
        Err(_) => {
            return Err(ReplayError::Io {
                path: tmp_path.clone(),
                source: std::io::Error::other("log writer thread panicked"),
            })
        }
    };
    let st = engine.stats().clone();
    let mut summary = Summary {
        files: sources_read,
        skipped_packet_blocks: source_stats.skipped,
        packets: st.packets,
        bytes: st.bytes,
        non_ip: st.non_ip,
        node_view: view.as_ref().map(|v| *v.stats()).unwrap_or_default(),
        records: st.records,
        records_by_state: st.records_by_state,
        weirds: st.weirds,
        analyzer_violations: st.analyzer_violations,
        evicted: st.conns_evicted,
        fragments_reassembled: st.fragments_reassembled,
        fragments_dropped: st.fragments_dropped,
        reassembly_dropped_bytes: st.reassembly_dropped_bytes,
        elapsed: started.elapsed(),
        peak_rss_bytes: peak_rss_bytes(),
        log_path: final_path.clone(),
        scored: None,
    };

    if let Some(source) = failure {
        // Keep what was read, without a footer, under a name that says so.
        let mut out = writer.into_inner_unfinished();
        out.flush().map_err(io_err(&tmp_path))?;
        drop(out);
        let partial = outputs.publish(&tmp_path, &format!("{name}.partial"))?;
        return Err(ReplayError::Partial {
            source,
            records: summary.records,
            partial,
        });
    }

    // The footer is written and the buffer flushed; the rename makes the
    // finished log appear at once. No fsync: a replay's output is as
    // durable as its input, and syncing tens of megabytes would dominate
    // short runs.
    let out = writer.finish().map_err(io_err(&tmp_path))?;
    drop(out);
    outputs.publish(&tmp_path, name)?;
    if let Some(mut o) = scored {
        if let Some(p) = o.alerts.take() {
            o.alerts = Some(outputs.publish(&p, "alerts.log")?);
        }
        if let Some(p) = o.actions.take() {
            o.actions = Some(outputs.publish(&p, "actions.log")?);
        }
        summary.scored = Some(o);
    }
    Ok(summary)
}

type WriterResult = std::io::Result<(ConnLogWriter<BufWriter<File>>, Option<ReplayOutcome>)>;

impl Summary {
    /// The one-screen end-of-run summary.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let _ = writeln!(
            s,
            "osprey replay: {} file(s), {} packets, {} bytes in {:.3} s ({:.0} packets/s)",
            self.files,
            self.packets,
            self.bytes,
            secs,
            self.packets as f64 / secs
        );
        if let Some(b) = self.peak_rss_bytes {
            let _ = writeln!(s, "  peak memory (RSS): {} MiB", b / (1024 * 1024));
        }
        let _ = writeln!(
            s,
            "  connections logged: {} -> {}",
            self.records,
            self.log_path.display()
        );
        let mut states = String::new();
        for st in ConnState::ALL {
            let n = self.records_by_state[st as usize];
            if n > 0 {
                let _ = write!(states, " {}={}", st.as_str(), n);
            }
        }
        if !states.is_empty() {
            let _ = writeln!(s, "  by conn_state:{states}");
        }
        if self.skipped_packet_blocks > 0 {
            let _ = writeln!(
                s,
                "  pcapng packet blocks skipped (unknown interface or zero length): {}",
                self.skipped_packet_blocks
            );
        }
        if self.non_ip > 0 {
            let _ = writeln!(s, "  non-IP frames (ARP, LLC, ...): {}", self.non_ip);
        }
        let nv = &self.node_view;
        if nv.duplicates > 0 {
            let _ = writeln!(
                s,
                "  duplicate packets (copies seen on another interface, not counted): {}",
                nv.duplicates
            );
        }
        if nv.nat_twins_folded > 0 || nv.nat_twin_packets > 0 {
            let _ = writeln!(
                s,
                "  NAT twins folded (connections counted under the pod's view): {} ({} packets not counted)",
                nv.nat_twins_folded, nv.nat_twin_packets
            );
        }
        if nv.overlay_flows_folded > 0 {
            let _ = writeln!(
                s,
                "  overlay underlay flows folded (their packets are duplicates): {}",
                nv.overlay_flows_folded
            );
        }
        if self.fragments_reassembled > 0 {
            let _ = writeln!(
                s,
                "  fragmented datagrams reassembled: {}",
                self.fragments_reassembled
            );
        }
        if self.fragments_dropped.iter().any(|n| *n > 0) {
            let parts: Vec<String> = FragDrop::ALL
                .iter()
                .filter(|d| self.fragments_dropped[**d as usize] > 0)
                .map(|d| format!("{} {}", d.name(), self.fragments_dropped[*d as usize]))
                .collect();
            let _ = writeln!(
                s,
                "  fragmented datagrams dropped incomplete: {}",
                parts.join(", ")
            );
        }
        if self.reassembly_dropped_bytes.iter().any(|n| *n > 0) {
            let parts: Vec<String> = ReasmDrop::ALL
                .iter()
                .filter(|d| self.reassembly_dropped_bytes[**d as usize] > 0)
                .map(|d| {
                    format!(
                        "{} {}",
                        d.name(),
                        self.reassembly_dropped_bytes[*d as usize]
                    )
                })
                .collect();
            let _ = writeln!(s, "  TCP reassembly bytes given up: {}", parts.join(", "));
        }
        if self.evicted > 0 {
            let _ = writeln!(s, "  connections evicted (table full): {}", self.evicted);
        }
        let total = self.weirds.total();
        if total > 0 {
            let _ = writeln!(s, "  decode anomalies: {total}");
            for (w, n) in self.weirds.iter() {
                let _ = writeln!(s, "    {:<40} {n}", w.name());
            }
        } else {
            let _ = writeln!(s, "  decode anomalies: none");
        }
        if self.analyzer_violations.total() > 0 {
            let parts: Vec<String> = self
                .analyzer_violations
                .iter()
                .map(|(a, n)| format!("{} {n}", a.name()))
                .collect();
            let _ = writeln!(s, "  analyzer violations: {}", parts.join(", "));
        }
        if let Some(o) = &self.scored {
            if let Some(p) = &o.alerts {
                let _ = writeln!(s, "  alerts: {} -> {}", o.labels.alerts(), p.display());
                s += &o.labels.render();
                if o.interim_scored > 0 {
                    let _ = writeln!(
                        s,
                        "  interim snapshots of open connections scored: {} (as the daemon scores them)",
                        o.interim_scored
                    );
                }
            }
            if let Some(p) = &o.actions {
                s += &o.summary.render(p, &o.rules_source);
            }
        }
        s
    }
}

/// The process's peak resident set size so far (`VmHWM` of
/// `/proc/self/status`); `None` where there is no such file.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// True when progress lines make sense (stderr is a terminal).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Hands a packet to the engine unless the node view suppresses it
/// (folding first what it says to fold).
fn through_node_view(
    view: Option<&mut NodeView>,
    engine: &mut Engine,
    pkt: &Packet<'_>,
    prep: &Prepared,
) {
    if let Some(v) = view {
        let verdict = v.observe_frame(pkt, prep);
        for f in v.folds() {
            engine.fold(&f.flow, f.outer.is_some());
        }
        if verdict != Verdict::Count {
            engine.advance_time(pkt.ts);
            return;
        }
    }
    engine.process_packet_prepared(pkt, prep);
}

/// The connection records of the inputs (read in order as one trace),
/// in the order the engine ends them, without writing a log: for
/// `osprey featurize`, `osprey calibrate` and tests. When `engine.interim`
/// is set, the interim snapshots of open connections come in the stream
/// too, after each packet's final records, as `run` hands them to the
/// scorer. Single-threaded: these are not the throughput path.
pub fn collect_records(
    inputs: &[PathBuf],
    filter: Option<&str>,
    engine: EngineConfig,
) -> Result<Vec<ConnRecord>, ReplayError> {
    let mut sources = capture::open_all(inputs, filter)?;
    let mut view = NodeView::new(engine.node_view);
    let mut engine = Engine::new(engine);
    let mut out = Vec::new();
    for src in sources.iter_mut() {
        while let Some(p) = src.next_packet()? {
            through_node_view(view.as_mut(), &mut engine, &p, &Prepared::default());
            engine.take_records(&mut out);
            engine.take_interim(&mut out);
        }
    }
    engine.finish();
    engine.take_records(&mut out);
    engine.take_interim(&mut out);
    Ok(out)
}
