//! Prometheus metrics and the HTTP endpoints that serve them.
//!
//! Names follow Prometheus' conventions: an `osprey_` prefix, base units
//! (seconds, bytes), `_total` on counters, and no address labels (a label
//! per IP would let a spoofed flood blow up the time-series database).
//! Threads on the packet path count locally and add here once per batch,
//! so the shared atomics are touched thousands of times less often than
//! packets arrive.

mod dropped;
pub mod fail;
pub mod notify;
mod server;

pub use dropped::{Dropped, Stage};
pub use server::{serve, Health, ServerLimits};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::conn::node_view::NodeViewStats;
use crate::conn::tcp::ReasmDrop;
use crate::conn::ConnState;
use crate::conn::EngineStats;
use crate::decode::frag::FragDrop;
use crate::decode::weird::Weird;

/// Every metric osprey exports.
pub struct Metrics {
    pub registry: Registry,
    /// `osprey_dropped_total{stage,reason}`: every drop, wherever it is.
    pub dropped: Dropped,
    pub capture_packets: IntCounterVec,
    pub capture_bytes: IntCounterVec,
    pub capture_kernel_drops: IntCounterVec,
    pub capture_interface_drops: IntCounterVec,
    pub pipeline_dropped_packets: IntCounterVec,
    pub pipeline_dropped_records: IntCounterVec,
    pub conn_packets: IntCounter,
    pub conn_non_ip_packets: IntCounter,
    pub conn_duplicate_packets: IntCounter,
    pub conn_nat_twin_packets: IntCounter,
    pub conn_nat_twins_folded: IntCounter,
    pub conn_overlay_flows_folded: IntCounter,
    pub decode_errors: IntCounterVec,
    pub fragments_evicted: IntCounterVec,
    pub analyzer_violations: IntCounterVec,
    pub fragment_bytes: IntGaugeVec,
    pub reassembly_evicted_bytes: IntCounterVec,
    pub reassembly_bytes: IntGaugeVec,
    pub conns_active: IntGaugeVec,
    pub conns_created: IntCounter,
    pub conns_evicted: IntCounter,
    pub records: IntCounterVec,
    pub interim_records: IntCounter,
    pub inference_batch_rows: HistogramVec,
    pub inference_seconds: HistogramVec,
    pub verdicts: IntCounterVec,
    pub alerts: IntCounterVec,
    pub record_to_verdict_seconds: Histogram,
    pub last_packet_to_verdict_seconds: Histogram,
    pub reloads: IntCounterVec,
    pub log_write_errors: IntCounterVec,
    pub models_loaded: IntGauge,
    pub score_held_early: IntCounter,
    pub ready: IntGauge,
}

pub(crate) fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    r.register(Box::new(c.clone()))
        .expect("each metric is registered once");
    c
}

pub(crate) fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("static metric definition");
    r.register(Box::new(c.clone()))
        .expect("each metric is registered once");
    c
}

pub fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition");
    r.register(Box::new(g.clone()))
        .expect("each metric is registered once");
    g
}

pub(crate) fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("static metric definition");
    r.register(Box::new(g.clone()))
        .expect("each metric is registered once");
    g
}

pub(crate) fn histogram_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("static metric definition");
    r.register(Box::new(h.clone()))
        .expect("each metric is registered once");
    h
}

pub(crate) fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("static");
    r.register(Box::new(h.clone()))
        .expect("each metric is registered once");
    h
}

/// Latency buckets from 100 µs to 10 s: verdicts are expected within tens
/// of milliseconds, and the tail shows when a stage backs up.
pub(crate) fn latency_buckets() -> Vec<f64> {
    vec![
        // Fine between 10 and 100 ms, where the verdict-latency target
        // (50 ms) sits: a quantile is interpolated within its bucket.
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075,
        0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
}

impl Metrics {
    /// A fresh registry with every metric at zero (`build_info` at one).
    pub fn new() -> Metrics {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = r.register(Box::new(pc));
        }
        gauge_vec(
            &r,
            "osprey_build_info",
            "osprey's version; always 1.",
            &["version"],
        )
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
        let conns_active = gauge_vec(
            &r,
            "osprey_conns_active",
            "Connections tracked now, per conn worker (shard).",
            &["shard"],
        );
        Metrics {
            dropped: Dropped::on(&r),
            capture_packets: counter_vec(
                &r,
                "osprey_capture_packets_total",
                "Packets read from libpcap.",
                &["interface"],
            ),
            capture_bytes: counter_vec(
                &r,
                "osprey_capture_bytes_total",
                "Bytes on the wire of the packets read from libpcap.",
                &["interface"],
            ),
            capture_kernel_drops: counter_vec(
                &r,
                "osprey_capture_kernel_drops_total",
                "Packets the kernel dropped because the capture ring was full.",
                &["interface"],
            ),
            capture_interface_drops: counter_vec(
                &r,
                "osprey_capture_interface_drops_total",
                "Packets the interface or its driver dropped (libpcap's ps_ifdrop).",
                &["interface"],
            ),
            pipeline_dropped_packets: counter_vec(
                &r,
                "osprey_pipeline_dropped_packets_total",
                "Packets dropped because the next stage's queue was full, by stage.",
                &["stage"],
            ),
            pipeline_dropped_records: counter_vec(
                &r,
                "osprey_pipeline_dropped_records_total",
                "Conn records not scored because scoring fell behind, by stage (they are still \
                 logged).",
                &["stage"],
            ),
            conn_packets: counter(
                &r,
                "osprey_conn_packets_total",
                "Packets analysed by the conn workers.",
            ),
            conn_non_ip_packets: counter(
                &r,
                "osprey_conn_non_ip_packets_total",
                "Frames without an IP packet (ARP, LLC...).",
            ),
            conn_duplicate_packets: counter(
                &r,
                "osprey_conn_duplicate_packets_total",
                "Copies of a packet already counted, captured on another interface (the \
                 `any` device on a node: a pod's veth, then the bridge, or an overlay's \
                 encapsulated copy); not analysed.",
            ),
            conn_nat_twin_packets: counter(
                &r,
                "osprey_conn_nat_twin_packets_total",
                "Packets of the node's view of a NAT'd connection (after SNAT, before DNAT), \
                 not analysed: the connection counts under the pod's view.",
            ),
            conn_nat_twins_folded: counter(
                &r,
                "osprey_conn_nat_twins_folded_total",
                "NAT'd connections whose node-address twin was folded into the pod's view.",
            ),
            conn_overlay_flows_folded: counter(
                &r,
                "osprey_conn_overlay_flows_folded_total",
                "Overlay underlay flows (VXLAN, Geneve) found to carry packets the overlay \
                 device shows decapsulated; their packets count as duplicates.",
            ),
            decode_errors: counter_vec(
                &r,
                "osprey_decode_errors_total",
                "Malformed or unusual packets, by Zeek weird name.",
                &["kind"],
            ),
            fragments_evicted: counter_vec(
                &r,
                "osprey_decode_fragments_evicted_total",
                "Fragmented datagrams dropped before they were complete, by reason (timeout, \
                 table_full, memory, datagram_budget).",
                &["reason"],
            ),
            analyzer_violations: counter_vec(
                &r,
                "osprey_conn_analyzer_violations_total",
                "Protocol violations the service analyzers reported (payload that is not the \
                 protocol the port or a DPD signature suggested), by analyzer.",
                &["analyzer"],
            ),
            fragment_bytes: gauge_vec(
                &r,
                "osprey_decode_fragment_bytes",
                "Bytes the fragment table holds now (payload and bookkeeping), per conn worker.",
                &["shard"],
            ),
            reassembly_evicted_bytes: counter_vec(
                &r,
                "osprey_conn_reassembly_evicted_bytes_total",
                "Bytes TCP reassembly gave up or refused to hold, by reason (flow_budget, \
                 memory, above_hole_without_acks, excessive_data, too_many_blocks).",
                &["reason"],
            ),
            reassembly_bytes: gauge_vec(
                &r,
                "osprey_conn_reassembly_bytes",
                "Bytes TCP reassembly holds now over all connections, per conn worker.",
                &["shard"],
            ),
            conns_active,
            conns_created: counter(&r, "osprey_conns_created_total", "Connections created."),
            conns_evicted: counter(
                &r,
                "osprey_conns_evicted_total",
                "Connections evicted early because a shard reached its limit.",
            ),
            records: counter_vec(
                &r,
                "osprey_conn_records_total",
                "Final conn records (conn.log lines), by conn_state.",
                &["conn_state"],
            ),
            interim_records: counter(
                &r,
                "osprey_interim_records_total",
                "Snapshots of open connections sent to scoring.",
            ),
            inference_batch_rows: histogram_vec(
                &r,
                "osprey_inference_batch_rows",
                "Rows per inference call.",
                &["model"],
                vec![1.0, 4.0, 16.0, 64.0, 128.0, 256.0, 512.0, 1024.0],
            ),
            inference_seconds: histogram_vec(
                &r,
                "osprey_inference_duration_seconds",
                "Time of one inference call.",
                &["model"],
                latency_buckets(),
            ),
            verdicts: counter_vec(
                &r,
                "osprey_verdicts_total",
                "Records scored, by model and predicted label.",
                &["model", "label"],
            ),
            alerts: counter_vec(
                &r,
                "osprey_alerts_total",
                "Records a model flagged, by model.",
                &["model"],
            ),
            record_to_verdict_seconds: histogram(
                &r,
                "osprey_record_to_verdict_seconds",
                "From a record leaving its conn worker to its verdicts.",
                latency_buckets(),
            ),
            last_packet_to_verdict_seconds: histogram(
                &r,
                "osprey_last_packet_to_verdict_seconds",
                "From an open connection's last packet (capture time) to the verdict on its \
                 snapshot.",
                latency_buckets(),
            ),
            reloads: counter_vec(
                &r,
                "osprey_reloads_total",
                "SIGHUP reloads, by result (ok, error).",
                &["result"],
            ),
            log_write_errors: counter_vec(
                &r,
                "osprey_log_write_errors_total",
                "Records that could not be written, by log.",
                &["log"],
            ),
            models_loaded: gauge(&r, "osprey_models_loaded", "Models scoring records now."),
            score_held_early: counter(
                &r,
                "osprey_score_held_early_total",
                "Records scored before their look-ahead ended because too many were held \
                 (their host context misses some of the flows that followed them).",
            ),
            ready: gauge(
                &r,
                "osprey_ready",
                "1 once capture runs and the models are loaded.",
            ),
            registry: r,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let families = self.registry.gather();
        if TextEncoder::new().encode(&families, &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Adds what a capture thread's node view suppressed since `before`.
    pub fn add_node_view_delta(&self, before: &NodeViewStats, now: &NodeViewStats) {
        self.conn_duplicate_packets
            .inc_by(now.duplicates - before.duplicates);
        self.conn_nat_twin_packets
            .inc_by(now.nat_twin_packets - before.nat_twin_packets);
        self.conn_nat_twins_folded
            .inc_by(now.nat_twins_folded - before.nat_twins_folded);
        self.conn_overlay_flows_folded
            .inc_by(now.overlay_flows_folded - before.overlay_flows_folded);
    }

    /// Adds what a conn worker's engine counted since `before`.
    pub fn add_engine_delta(&self, before: &EngineStats, now: &EngineStats) {
        self.conn_packets.inc_by(now.packets - before.packets);
        self.conn_non_ip_packets.inc_by(now.non_ip - before.non_ip);
        self.conns_created
            .inc_by(now.conns_created - before.conns_created);
        self.conns_evicted
            .inc_by(now.conns_evicted - before.conns_evicted);
        self.dropped.add(
            Stage::Conn,
            "conn_limit",
            now.conns_evicted - before.conns_evicted,
        );
        self.dropped.add(
            Stage::Conn,
            "interim_queue_full",
            now.interim_dropped.saturating_sub(before.interim_dropped),
        );
        self.interim_records
            .inc_by(now.interim_records - before.interim_records);
        // By name, not by zipping the non-zero counts of both: a weird
        // first seen in this delta would pair with another name.
        for &w in Weird::ALL {
            let (n, b) = (now.weirds.get(w), before.weirds.get(w));
            if n > b {
                self.decode_errors
                    .with_label_values(&[w.name()])
                    .inc_by(n - b);
            }
        }
        for (a, n) in now.analyzer_violations.iter() {
            let b = before.analyzer_violations.get(a);
            if n > b {
                self.analyzer_violations
                    .with_label_values(&[a.name()])
                    .inc_by(n - b);
            }
        }
        for d in FragDrop::ALL {
            let (n, b) = (
                now.fragments_dropped[d as usize],
                before.fragments_dropped[d as usize],
            );
            if n > b {
                self.fragments_evicted
                    .with_label_values(&[d.name()])
                    .inc_by(n - b);
                self.dropped
                    .add(Stage::Decode, &format!("fragment_{}", d.name()), n - b);
            }
        }
        for d in ReasmDrop::ALL {
            let (n, b) = (
                now.reassembly_dropped_bytes[d as usize],
                before.reassembly_dropped_bytes[d as usize],
            );
            if n > b {
                self.reassembly_evicted_bytes
                    .with_label_values(&[d.name()])
                    .inc_by(n - b);
            }
        }
        for (i, (n, b)) in now
            .records_by_state
            .iter()
            .zip(before.records_by_state.iter())
            .enumerate()
        {
            if n > b {
                let state = ConnState::ALL.get(i).map_or("other", |s| s.as_str());
                self.records.with_label_values(&[state]).inc_by(n - b);
            }
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_drops_reach_the_one_dropped_family() {
        let m = Metrics::new();
        let before = EngineStats::default();
        let now = EngineStats {
            conns_evicted: 4,
            interim_dropped: 3,
            ..EngineStats::default()
        };
        let (c0, i0) = (
            m.dropped.get(Stage::Conn, "conn_limit"),
            m.dropped.get(Stage::Conn, "interim_queue_full"),
        );
        m.add_engine_delta(&before, &now);
        assert_eq!(m.dropped.get(Stage::Conn, "conn_limit") - c0, 4);
        assert_eq!(m.dropped.get(Stage::Conn, "interim_queue_full") - i0, 3);
        assert!(m
            .render()
            .contains("osprey_dropped_total{reason=\"conn_limit\",stage=\"conn\"}"));
    }
}
