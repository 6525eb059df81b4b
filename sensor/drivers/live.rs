//! The live daemon's threads and the channels between them.
//!
//! ```text
//! capture thread per interface --PacketBatch--> conn worker per shard
//!   (symmetric hash of the IP pair)            --RecordBatch--> scorer
//! ```
//!
//! The capture thread copies each packet once out of libpcap's ring into
//! the batch of the shard that owns its connection, chosen by a symmetric
//! hash of the outermost IP pair: both directions, every fragment of a
//! datagram and every tunnelled flow with its tunnel land on the same
//! worker, which owns its part of the table outright (no locks per packet).
//! Capture never waits: a batch for a full queue is dropped and counted.
//! Conn workers do wait on the scorer (records are never dropped: conn.log
//! must stay complete), which only pushes the backlog back to the packet
//! queues, where it is counted.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::capture::{CaptureError, LiveSource, Read};
use crate::conn::node_view::{Fold, NodeView, NodeViewConfig, NodeViewStats, Verdict};
use crate::conn::{Engine, EngineConfig};
use crate::decode::prepare::{prepare, Prepared};
use crate::decode::PacketBatch;
use crate::metrics::{Metrics, Stage};

/// Bytes of packet data per batch arena, per packet of the batch: enough
/// for full-size Ethernet frames on average. The arenas of every queued
/// batch are resident memory (64 queued batches of 512 packets at 1 MiB
/// each made a quarter of a GiB per shard under a flood); a batch holding a
/// larger packet grows for it.
const BATCH_BYTES_PER_PACKET: usize = 768;
/// How often threads publish their local counters.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);
/// A shard that got no packets for this long (packet time) is told the
/// time anyway, so its timers fire while other shards are busy.
const IDLE_SHARD_TICK: f64 = 0.05;
/// How far behind the clock a quiet wire's packet time is set, beyond
/// the longest a packet may wait in an unfinished ring block.
const QUIET_MARGIN_SECS: f64 = 0.01;
/// Tolerance on batch flush deadlines.
const FLUSH_SLACK: Duration = Duration::from_micros(500);

/// What a capture thread sends a conn worker.
pub enum ToWorker {
    /// Packets, and the connections to fold before the packet at each
    /// position (after the packets before it, one of which may have opened
    /// the connection): the node's view of a packet whose pod view came
    /// later (conn/node_view.rs).
    Packets(PacketBatch, Vec<(usize, Fold)>),
    /// Packet time advanced without packets for this shard.
    Time(f64),
}

/// Records leaving a conn worker, stamped for the latency histogram.
pub use crate::score::live::RecordBatch;

/// Settings of the capture and conn stages.
#[derive(Clone, Debug)]
pub struct StageOptions {
    pub workers: usize,
    pub batch_packets: usize,
    pub packet_queue_batches: usize,
    pub record_queue_batches: usize,
    pub flush_interval: Duration,
    /// A wire quiet this long has its packet time moved on by the clock.
    pub read_timeout: Duration,
    /// How long the kernel may hold a packet in a ring block (capture's
    /// `block_timeout_ms`): a quiet wire's clock time stays this far behind.
    pub block_timeout: Duration,
    pub engine: EngineConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("a {0} thread panicked")]
    Panicked(&'static str),
}

/// The worker (shard) that owns a packet's connection: a symmetric hash of
/// the outermost IP pair, so that both directions meet.
pub fn shard_of(prep: &Prepared, frame: &[u8], shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    let Some(ip) = prep.l3(frame) else {
        return 0;
    };
    let (a, b) = match ip.first().map(|v| v >> 4) {
        Some(4) if ip.len() >= 20 => (fold(&ip[12..16]), fold(&ip[16..20])),
        Some(6) if ip.len() >= 40 => (fold(&ip[8..24]), fold(&ip[24..40])),
        _ => return 0,
    };
    shard_of_folded(a, b, shards)
}

/// [`shard_of`] for an IP pair already parsed (a fold's connection).
pub fn shard_of_pair(pair: (IpAddr, IpAddr), shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    let bytes = |a: IpAddr| match a {
        IpAddr::V4(v) => fold(&v.octets()),
        IpAddr::V6(v) => fold(&v.octets()),
    };
    shard_of_folded(bytes(pair.0), bytes(pair.1), shards)
}

fn shard_of_folded(a: u64, b: u64, shards: usize) -> usize {
    // Addition commutes, so (a, b) and (b, a) hash alike.
    let h = mix(a).wrapping_add(mix(b));
    ((u128::from(mix(h)) * shards as u128) >> 64) as usize
}

fn fold(bytes: &[u8]) -> u64 {
    bytes.chunks(8).fold(0u64, |acc, c| {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        acc.rotate_left(29) ^ u64::from_be_bytes(w)
    })
}

/// splitmix64's finaliser: every input bit reaches every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Handles of the running capture and conn stages.
pub struct Stages {
    captures: Vec<thread::JoinHandle<Result<(), CaptureError>>>,
    workers: Vec<thread::JoinHandle<()>>,
    /// Where the scorer reads records from.
    pub records: Receiver<RecordBatch>,
}

impl Stages {
    /// Starts one capture thread per source and `workers` conn workers.
    /// They run until `stop` is set; then every open connection is flushed
    /// as at the end of a trace and the record channel closes.
    pub fn start(
        sources: Vec<LiveSource>,
        o: &StageOptions,
        metrics: Arc<Metrics>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<Stages> {
        let n = o.workers.max(1);
        let (rec_tx, rec_rx) = bounded::<RecordBatch>(o.record_queue_batches.max(1));
        let mut to_workers = Vec::with_capacity(n);
        let (empty_tx, empty_rx) = bounded::<PacketBatch>(n * (o.packet_queue_batches + 2));
        let mut workers = Vec::with_capacity(n);
        for shard in 0..n {
            let (tx, rx) = bounded::<ToWorker>(o.packet_queue_batches.max(1));
            to_workers.push(tx);
            let engine = Engine::new(o.engine.clone());
            let out = rec_tx.clone();
            let empties = empty_tx.clone();
            let m = metrics.clone();
            workers.push(
                thread::Builder::new()
                    .name(format!("osprey-conn-{shard}"))
                    .spawn(move || conn_worker(shard, engine, rx, out, empties, &m))?,
            );
        }
        drop(rec_tx);
        let verify = !o.engine.ignore_checksums;
        let mut captures = Vec::with_capacity(sources.len());
        for src in sources {
            let c = CaptureLoop {
                shards: to_workers.clone(),
                empties: empty_rx.clone(),
                batch_packets: o.batch_packets.max(1),
                flush_interval: o.flush_interval,
                read_timeout: o.read_timeout,
                quiet_margin: QUIET_MARGIN_SECS + o.block_timeout.as_secs_f64(),
                verify,
                node_view: o.engine.node_view,
                metrics: metrics.clone(),
                stop: stop.clone(),
            };
            let name = format!("osprey-cap-{}", src.interface());
            captures.push(
                thread::Builder::new()
                    .name(name)
                    .spawn(move || c.run(src))?,
            );
        }
        Ok(Stages {
            captures,
            workers,
            records: rec_rx,
        })
    }

    /// Waits for the capture threads (after `stop`) and then the workers.
    /// The first capture error is returned after everything has stopped.
    pub fn join(self) -> Result<(), PipelineError> {
        let mut first = Ok(());
        for c in self.captures {
            match c.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    if first.is_ok() {
                        first = Err(PipelineError::Capture(e));
                    }
                }
                Err(_) => first = Err(PipelineError::Panicked("capture")),
            }
        }
        for w in self.workers {
            if w.join().is_err() {
                first = Err(PipelineError::Panicked("conn worker"));
            }
        }
        first
    }
}

struct CaptureLoop {
    shards: Vec<Sender<ToWorker>>,
    empties: Receiver<PacketBatch>,
    batch_packets: usize,
    flush_interval: Duration,
    read_timeout: Duration,
    quiet_margin: f64,
    verify: bool,
    node_view: NodeViewConfig,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
}

/// Counters a capture thread adds to the registry now and then.
#[derive(Default)]
struct CaptureCounts {
    packets: u64,
    bytes: u64,
    dropped: u64,
    /// Folds that found their shard's queue full (the node-address twin
    /// of a connection then stays in conn.log).
    folds_dropped: u64,
}

impl CaptureLoop {
    fn new_batch(&self) -> PacketBatch {
        match self.empties.try_recv() {
            Ok(mut b) => {
                b.clear();
                b
            }
            Err(_) => PacketBatch::with_capacity(
                self.batch_packets,
                self.batch_packets * BATCH_BYTES_PER_PACKET,
            ),
        }
    }

    /// Hands a shard its batch (and folds); a full queue drops it
    /// (counted).
    fn send(
        &self,
        shard: usize,
        batch: &mut PacketBatch,
        folds: &mut Vec<(usize, Fold)>,
        counts: &mut CaptureCounts,
    ) {
        if batch.is_empty() && folds.is_empty() {
            return;
        }
        let full = std::mem::replace(batch, self.new_batch());
        match self.shards[shard].try_send(ToWorker::Packets(full, std::mem::take(folds))) {
            Ok(()) => {}
            Err(TrySendError::Full(ToWorker::Packets(mut b, mut f)))
            | Err(TrySendError::Disconnected(ToWorker::Packets(mut b, mut f))) => {
                counts.dropped += b.len() as u64;
                counts.folds_dropped += f.len() as u64;
                b.clear();
                f.clear();
                *batch = b;
                *folds = f;
            }
            Err(_) => {}
        }
    }

    fn run(self, mut src: LiveSource) -> Result<(), CaptureError> {
        let iface = src.interface().to_owned();
        let n = self.shards.len();
        let mut batches: Vec<PacketBatch> = (0..n).map(|_| self.new_batch()).collect();
        let mut folds: Vec<Vec<(usize, Fold)>> = vec![Vec::new(); n];
        let mut oldest: Vec<Option<Instant>> = vec![None; n];
        let mut shard_ts = vec![0f64; n];
        let mut counts = CaptureCounts::default();
        let mut published = CaptureCounts::default();
        let mut kernel_published = crate::capture::KernelStats::default();
        let mut last_ts = 0f64;
        let mut last_packet_check = Instant::now();
        let mut last_check = Instant::now();
        let mut last_publish = Instant::now();
        let mut since_check = 0u32;
        // Copies and NAT twins on a node, before the packets are sharded
        // (the two views of a NAT'd connection hash to different shards).
        let mut view = match src.link_type() {
            crate::capture::LinkType::LINUX_SLL2 => NodeView::new(self.node_view),
            _ => None,
        };
        let mut view_published = NodeViewStats::default();
        let result = loop {
            if self.stop.load(Ordering::Relaxed) {
                break Ok(());
            }
            crate::fault::point("capture");
            // Wait no longer than the oldest partial batch may wait (the
            // clock is read only if the source has to wait at all).
            let deadline = oldest
                .iter()
                .flatten()
                .min()
                .map(|t| *t + self.flush_interval);
            let quiet = match src.read(deadline) {
                Ok(Read::Packet(p)) => {
                    counts.packets += 1;
                    counts.bytes += u64::from(p.wire_len);
                    if p.ts > last_ts {
                        last_ts = p.ts;
                    }
                    let prep = prepare(p.link, p.data, p.wire_len as usize, self.verify);
                    let counts_here = match view.as_mut() {
                        Some(v) => {
                            let verdict = v.observe_frame(&p, &prep);
                            for f in v.folds() {
                                // After the packets already batched, one of
                                // which may have opened it.
                                let s = shard_of_pair(f.shard_pair(), n);
                                folds[s].push((batches[s].len(), *f));
                                if oldest[s].is_none() {
                                    oldest[s] = Some(Instant::now());
                                }
                            }
                            verdict == Verdict::Count
                        }
                        None => true,
                    };
                    if counts_here {
                        let shard = shard_of(&prep, p.data, n);
                        if !batches[shard].fits(&p) {
                            self.send(shard, &mut batches[shard], &mut folds[shard], &mut counts);
                            oldest[shard] = None;
                        }
                        batches[shard].push_prepared(&p, prep);
                        shard_ts[shard] = last_ts;
                        if oldest[shard].is_none() {
                            oldest[shard] = Some(Instant::now());
                        }
                        if batches[shard].len() >= self.batch_packets {
                            self.send(shard, &mut batches[shard], &mut folds[shard], &mut counts);
                            oldest[shard] = None;
                        }
                    }
                    since_check += 1;
                    // The clock is read every few packets, not per packet.
                    if since_check < 64 {
                        continue;
                    }
                    false
                }
                // The ring emptied; the next read waits for it.
                Ok(Read::Empty) => continue,
                Ok(Read::Quiet) => true,
                Err(e) => break Err(e),
            };
            since_check = 0;
            let now = Instant::now();
            if !quiet {
                last_packet_check = now;
            }
            if quiet || now.duration_since(last_check) >= self.flush_interval {
                last_check = now;
                for s in 0..n {
                    // A little early counts: poll may wake a hair before
                    // the deadline it was given.
                    let due = |t: Instant| now + FLUSH_SLACK >= t + self.flush_interval;
                    if oldest[s].is_some_and(due) {
                        self.send(s, &mut batches[s], &mut folds[s], &mut counts);
                        oldest[s] = None;
                    }
                }
                // Live packet timestamps are the kernel's wall clock, so a
                // wire quiet for a read timeout is brought to the clock's
                // time (less a margin for packets still on their way).
                let mut t = last_ts;
                if quiet && now.duration_since(last_packet_check) >= self.read_timeout {
                    let wall = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64());
                    t = t.max(wall - self.quiet_margin);
                }
                for s in 0..n {
                    if t > 0.0
                        && t - shard_ts[s] >= IDLE_SHARD_TICK
                        && batches[s].is_empty()
                        && self.shards[s].try_send(ToWorker::Time(t)).is_ok()
                    {
                        shard_ts[s] = t;
                    }
                }
            }
            if now.duration_since(last_publish) >= PUBLISH_EVERY {
                last_publish = now;
                self.publish(&iface, &counts, &mut published);
                if let Some(v) = view.as_ref() {
                    self.metrics.add_node_view_delta(&view_published, v.stats());
                    view_published = *v.stats();
                }
                let k = src.kernel_stats();
                self.publish_kernel(&iface, &k, &mut kernel_published);
            }
        };
        for (s, batch) in batches.iter_mut().enumerate() {
            self.send(s, batch, &mut folds[s], &mut counts);
        }
        self.publish(&iface, &counts, &mut published);
        let k = src.kernel_stats();
        self.publish_kernel(&iface, &k, &mut kernel_published);
        result
    }

    fn publish(&self, iface: &str, c: &CaptureCounts, done: &mut CaptureCounts) {
        let m = &self.metrics;
        m.capture_packets
            .with_label_values(&[iface])
            .inc_by(c.packets - done.packets);
        m.capture_bytes
            .with_label_values(&[iface])
            .inc_by(c.bytes - done.bytes);
        m.pipeline_dropped_packets
            .with_label_values(&["conn"])
            .inc_by(c.dropped - done.dropped);
        m.pipeline_dropped_packets
            .with_label_values(&["fold"])
            .inc_by(c.folds_dropped - done.folds_dropped);
        m.dropped
            .add(Stage::Conn, "queue_full", c.dropped - done.dropped);
        m.dropped.add(
            Stage::Conn,
            "fold_queue_full",
            c.folds_dropped - done.folds_dropped,
        );
        *done = CaptureCounts {
            packets: c.packets,
            bytes: c.bytes,
            dropped: c.dropped,
            folds_dropped: c.folds_dropped,
        };
    }

    fn publish_kernel(
        &self,
        iface: &str,
        k: &crate::capture::KernelStats,
        done: &mut crate::capture::KernelStats,
    ) {
        self.metrics
            .capture_kernel_drops
            .with_label_values(&[iface])
            .inc_by(k.dropped.saturating_sub(done.dropped));
        self.metrics
            .capture_interface_drops
            .with_label_values(&[iface])
            .inc_by(k.if_dropped.saturating_sub(done.if_dropped));
        self.metrics.dropped.add(
            Stage::Capture,
            "kernel_ring_full",
            k.dropped.saturating_sub(done.dropped),
        );
        self.metrics.dropped.add(
            Stage::Capture,
            "interface",
            k.if_dropped.saturating_sub(done.if_dropped),
        );
        *done = *k;
    }
}

/// Records handed to the scorer at a time (at most).
const RECORDS_PER_BATCH: usize = 256;

fn conn_worker(
    shard: usize,
    mut engine: Engine,
    rx: Receiver<ToWorker>,
    out: Sender<RecordBatch>,
    empties: Sender<PacketBatch>,
    metrics: &Metrics,
) {
    let label = shard.to_string();
    let active = metrics.conns_active.with_label_values(&[label.as_str()]);
    let frag_bytes = metrics.fragment_bytes.with_label_values(&[label.as_str()]);
    let reasm_bytes = metrics
        .reassembly_bytes
        .with_label_values(&[label.as_str()]);
    let mut before = engine.stats().clone();
    let mut last_publish = Instant::now();
    let mut done = false;
    while !done {
        crate::fault::point("conn");
        match rx.recv_timeout(PUBLISH_EVERY) {
            Ok(ToWorker::Packets(batch, folds)) => {
                let mut folds = folds.iter().peekable();
                for (i, (p, prep)) in batch.packets().enumerate() {
                    while let Some((_, f)) = folds.next_if(|(at, _)| *at <= i) {
                        engine.fold(&f.flow, f.outer.is_some());
                    }
                    engine.process_packet_prepared(&p, prep);
                }
                for (_, f) in folds {
                    engine.fold(&f.flow, f.outer.is_some());
                }
                let _ = empties.try_send(batch);
            }
            Ok(ToWorker::Time(t)) => engine.advance_time(t),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                // Capture stopped: end every connection as Zeek does at the
                // end of a trace.
                engine.finish();
                done = true;
            }
        }
        if forward_records(&mut engine, &out).is_err() {
            // The scorer is gone; nothing downstream is left to serve.
            return;
        }
        if done || last_publish.elapsed() >= PUBLISH_EVERY {
            last_publish = Instant::now();
            let now = engine.stats().clone();
            metrics.add_engine_delta(&before, &now);
            before = now;
            active.set(engine.active_connections() as i64);
            frag_bytes.set(i64::try_from(before.fragment_bytes).unwrap_or(i64::MAX));
            reasm_bytes.set(i64::try_from(before.reassembly_bytes).unwrap_or(i64::MAX));
        }
    }
}

/// Sends the engine's waiting records (final and interim) to the scorer,
/// waiting when its queue is full.
fn forward_records(
    engine: &mut Engine,
    out: &Sender<RecordBatch>,
) -> Result<(), crossbeam_channel::SendError<RecordBatch>> {
    while engine.has_records() || engine.has_interim() {
        let mut records = Vec::with_capacity(RECORDS_PER_BATCH);
        engine.take_records_up_to(&mut records, RECORDS_PER_BATCH);
        engine.take_interim_up_to(&mut records, RECORDS_PER_BATCH);
        out.send(RecordBatch {
            records,
            emitted: Instant::now(),
            clock: engine.network_time(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::LinkType;

    fn frame(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16) -> Vec<u8> {
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4(src, dst, 64)
            .tcp(sp, dp, 1, 1000)
            .write(&mut f, b"x")
            .unwrap();
        f
    }

    #[test]
    fn both_directions_meet_on_one_shard() {
        let mut seen = vec![0usize; 4];
        for i in 0..200u8 {
            let a = [198, 18, 0, i];
            let b = [198, 19, i, 7];
            let fwd = frame(a, b, 40000 + u16::from(i), 80);
            let rev = frame(b, a, 80, 40000 + u16::from(i));
            let pf = prepare(LinkType::ETHERNET, &fwd, fwd.len(), false);
            let pr = prepare(LinkType::ETHERNET, &rev, rev.len(), false);
            let s = shard_of(&pf, &fwd, 4);
            assert_eq!(s, shard_of(&pr, &rev, 4));
            seen[s] += 1;
        }
        // The hash spreads hosts over every shard.
        assert!(seen.iter().all(|&c| c > 20), "{seen:?}");
    }

    #[test]
    fn non_ip_goes_to_shard_zero() {
        let arp = [0u8; 42];
        let p = prepare(LinkType::ETHERNET, &arp, arp.len(), false);
        assert_eq!(shard_of(&p, &arp, 8), 0);
    }
}
