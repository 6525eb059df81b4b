//! Host context for a stream of conn records: the live daemon cannot wait
//! for the whole set of flows that [`context_columns`] sweeps, so it keeps
//! the recent flows of every key and answers each new flow from them.
//!
//! The window of a flow is the one [`context_columns`] defines (every
//! retained flow with the same key whose start time lies in
//! `[ts - window, ts + ahead]`), and the statistics run through the same
//! [`Window`] arithmetic, so a flow queried after every flow it could see
//! was pushed gets bit-identical values to the batch's, whatever order the
//! flows came in. A record whose uid was seen before (an interim snapshot
//! of a still-open connection, then its final record) replaces the earlier
//! one: a connection counts once, with the fields it was last seen with.
//!
//! Per (key, window) and key value the flows stay sorted by start time
//! with a running window over an index range that moves to each query's
//! range, adding and removing flows at its ends. Queries of a batch are
//! answered in start-time order, so a stream whose batches mostly advance
//! in time costs amortised O(log n) per flow and column group (the binary
//! searches; the window itself moves O(1) flows per query on average). A
//! flow that arrives late (the final record of a long connection) moves
//! its key's window back over the flows in between and forward again at
//! the next query: O(flows of that key since its start), once per batch.
//!
//! Memory is bounded twice: flows older than the longest window plus
//! [`LiveConfig::retention_secs`] (of packet time, before the newest start
//! time seen) are dropped, and at most [`LiveConfig::max_flows`] are kept
//! (the oldest are evicted and counted), so a flood of spoofed sources
//! costs a bounded amount of memory and degrades the context instead.
//!
//! [`context_columns`]: super::context::context_columns

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use hashbrown::HashMap;

use super::context::{contribution, Distinct, Member, Window};
use super::flow::Flow;
use super::spec::{ContextKey, ContextStat, Feature, FeatureSpec, Value};
use super::vector::push_rows;

/// How much of the past the live state keeps.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveConfig {
    /// Seconds of packet time flows are kept beyond the longest window,
    /// for the records that arrive after their start time: a final record
    /// is written when its connection ends, so a connection that lasted
    /// longer than this (or an interim snapshot delayed that long) sees
    /// only the part of its window that was still retained. Negative or
    /// NaN counts as 0; infinity keeps everything up to `max_flows`.
    pub retention_secs: f64,
    /// Flows kept at most, over all keys (each counted once however many
    /// column groups index it). Beyond it the oldest flow is evicted (or
    /// the new one is not kept when it is older than all of them).
    pub max_flows: usize,
}

impl Default for LiveConfig {
    /// Five minutes covers the connections that most attacks open and
    /// close (scans, floods, brute force); 500,000 flows is ~1,400 new
    /// flows per second held for the 60 s window plus retention. For the
    /// bundled classifier's columns (4 groups, 7 running sums) a flow
    /// costs roughly 0.5 to 1 KB with its index entries and its share of
    /// the windows' distinct-value sets (an estimate from the layout, not
    /// a measurement), so the cap bounds the state to a few hundred MB.
    fn default() -> Self {
        LiveConfig {
            retention_secs: 300.0,
            max_flows: 500_000,
        }
    }
}

/// Counters of the live state, for the daemon's stats and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveStats {
    /// Flows held now.
    pub retained: usize,
    /// Key values (hosts, host and service pairs) held now, over all
    /// column groups.
    pub keys: usize,
    /// Records that replaced an earlier record of the same uid.
    pub replaced: u64,
    /// Flows dropped for being older than the retention.
    pub pruned: u64,
    /// Flows dropped (or not kept) because `max_flows` was reached: when
    /// this grows, contexts are partial.
    pub evicted: u64,
    /// Records not kept because their start time was not a finite number.
    pub unusable: u64,
}

/// A key value: the address, and the responder port and transport id for
/// [`ContextKey::OrigHRespP`] (0 otherwise).
type HostKey = (IpAddr, u16, u32);

/// One retained flow: what any column group needs of it.
struct Slot {
    ts: f64,
    uid: Arc<str>,
    member: Member<u32>,
    /// Contributions to the summed statistics, indexed like
    /// `LiveFeaturizer::summed`.
    sums: Box<[i128]>,
}

/// A context column of the spec.
struct Column {
    /// Its position in the row.
    col: usize,
    stat: ContextStat,
    /// Its index in `LiveFeaturizer::summed` (stats without a sum: none).
    sum: Option<usize>,
}

/// The columns that share a key and a window, and the state per key value.
struct Group {
    key: ContextKey,
    window: f64,
    ahead: f64,
    columns: Vec<Column>,
    /// The distinct sets the columns read, kept by every key's window.
    distinct: Distinct,
    hosts: HashMap<HostKey, Host>,
}

/// A flow's place in a key's time order: the start time as an ordered
/// integer ([`age`], with -0 read as +0 so that the order agrees with the
/// float comparisons of the batch sweep), ties broken by slot.
type Entry = (u64, u32);

fn entry(ts: f64, slot: u32) -> Entry {
    (age(ts + 0.0), slot)
}

/// The flows of one key value, in time order, and the window over those
/// in `[lo, hi)`.
///
/// A B-tree, not a sorted array: records arrive out of start-time order
/// (a connection is logged when it ends; an interim snapshot is replaced
/// by its final record), and a flood puts hundreds of thousands of flows
/// under one key, where inserting or removing in the middle of an array
/// moved all of them every time.
struct Host {
    entries: BTreeSet<Entry>,
    window: Window<u32>,
    lo: Entry,
    hi: Entry,
}

fn slot_of(slots: &[Option<Slot>], id: u32) -> Option<&Slot> {
    slots.get(id as usize).and_then(Option::as_ref)
}

fn contributions<'a>(s: &'a Slot, columns: &'a [Column]) -> impl Iterator<Item = i128> + 'a {
    columns
        .iter()
        .map(|c| c.sum.and_then(|k| s.sums.get(k).copied()).unwrap_or(0))
}

impl Host {
    fn new(columns: usize, distinct: Distinct) -> Host {
        Host {
            entries: BTreeSet::new(),
            window: Window::new(columns, distinct),
            lo: (0, 0),
            hi: (0, 0),
        }
    }

    fn in_window(&self, e: Entry) -> bool {
        self.lo <= e && e < self.hi
    }

    /// Adds a flow; it joins the window when it lies in the window's range.
    fn insert(&mut self, e: Entry, s: &Slot, columns: &[Column]) {
        self.entries.insert(e);
        if self.in_window(e) {
            self.window.add(&s.member, contributions(s, columns));
        }
    }

    fn remove(&mut self, e: Entry, s: &Slot, columns: &[Column]) {
        if !self.entries.remove(&e) {
            debug_assert!(false, "a retained flow is missing from its key");
            return;
        }
        if self.in_window(e) {
            self.window.remove(&s.member, contributions(s, columns));
        }
    }

    /// Moves the window to the flows in `[lo, hi)`: adds those the new
    /// range has and the old one had not, removes those it no longer has.
    /// Window arithmetic is exact (integer sums, counted distinct values),
    /// so the order of these steps does not change any value.
    fn seek(&mut self, lo: Entry, hi: Entry, slots: &[Option<Slot>], columns: &[Column]) {
        let (old_lo, old_hi) = (self.lo, self.hi);
        let Host {
            entries, window, ..
        } = self;
        let mut apply = |from: Entry, to: Entry, adding: bool| {
            if from >= to {
                return;
            }
            for e in entries.range(from..to) {
                if let Some(s) = slot_of(slots, e.1) {
                    if adding {
                        window.add(&s.member, contributions(s, columns));
                    } else {
                        window.remove(&s.member, contributions(s, columns));
                    }
                }
            }
        };
        // new minus old, then old minus new.
        apply(lo, hi.min(old_lo), true);
        apply(lo.max(old_hi), hi, true);
        if old_lo < old_hi {
            apply(old_lo, old_hi.min(lo), false);
            apply(old_lo.max(hi), old_hi, false);
        }
        self.lo = lo;
        self.hi = hi;
    }
}

/// The key value a retained flow is indexed under in a group of `key`.
fn host_key(key: ContextKey, m: &Member<u32>) -> HostKey {
    match key.members() {
        ContextKey::RespH => (m.resp_h, 0, 0),
        ContextKey::OrigHRespP => (m.orig_h, m.resp_p, m.proto),
        ContextKey::OrigH | ContextKey::RespHAsOrig => (m.orig_h, 0, 0),
    }
}

/// A total order on finite start times as integers, for the age index.
fn age(ts: f64) -> u64 {
    let b = ts.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | 1 << 63
    }
}

/// Feature rows of flows as they arrive, with host context over the flows
/// seen so far (see the module documentation).
pub struct LiveFeaturizer {
    features: Vec<Feature>,
    config: LiveConfig,
    max_window: f64,
    /// The distinct statistics that keep a running sum, so a flow stores
    /// each contribution once however many groups use it.
    summed: Vec<ContextStat>,
    groups: Vec<Group>,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    by_uid: HashMap<Arc<str>, u32>,
    /// (start time, slot) of every retained flow: the oldest first, for
    /// pruning and eviction.
    by_age: BTreeSet<(u64, u32)>,
    /// Transport names as small ids: the engine knows four, so this stays
    /// tiny and the window's port sets hash integers.
    protos: HashMap<String, u32>,
    /// The newest start time seen.
    now: f64,
    stats: LiveStats,
    /// Per-batch scratch (context values, query order), kept between
    /// batches: a batch's buffers are large enough that allocating them
    /// afresh costs the kernel zeroing new pages every time.
    ctx: Vec<f64>,
    order: Vec<usize>,
}

impl LiveFeaturizer {
    /// The live state for `spec`'s columns, with the default retention.
    pub fn new(spec: &FeatureSpec) -> LiveFeaturizer {
        LiveFeaturizer::with_config(&spec.features, LiveConfig::default())
    }

    /// The live state for a list of columns: models whose specs list the
    /// same columns (the bundled two) can share one and scale its rows
    /// each their own way.
    pub fn with_config(features: &[Feature], config: LiveConfig) -> LiveFeaturizer {
        let mut summed: Vec<ContextStat> = Vec::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut max_window = 0.0f64;
        for (col, f) in features.iter().enumerate() {
            let Value::Context {
                key,
                stat,
                window_secs,
                ahead_secs,
            } = &f.value
            else {
                continue;
            };
            max_window = max_window.max(*window_secs);
            let sum = match stat {
                ContextStat::ShareState(_) | ContextStat::Mean(_) => {
                    Some(match summed.iter().position(|s| s == stat) {
                        Some(k) => k,
                        None => {
                            summed.push(stat.clone());
                            summed.len() - 1
                        }
                    })
                }
                _ => None,
            };
            let column = Column {
                col,
                stat: stat.clone(),
                sum,
            };
            let same = |g: &&mut Group| {
                g.key == *key
                    && g.window.to_bits() == window_secs.to_bits()
                    && g.ahead.to_bits() == ahead_secs.to_bits()
            };
            match groups.iter_mut().find(same) {
                Some(g) => g.columns.push(column),
                None => groups.push(Group {
                    key: *key,
                    window: *window_secs,
                    ahead: *ahead_secs,
                    columns: vec![column],
                    distinct: Distinct::default(),
                    hosts: HashMap::new(),
                }),
            }
        }
        for g in &mut groups {
            g.distinct = Distinct::of(g.columns.iter().map(|c| &c.stat));
        }
        let config = LiveConfig {
            retention_secs: config.retention_secs.max(0.0),
            max_flows: config.max_flows.min(u32::MAX as usize),
        };
        LiveFeaturizer {
            features: features.to_vec(),
            config,
            max_window,
            summed,
            groups,
            slots: Vec::new(),
            free: Vec::new(),
            by_uid: HashMap::new(),
            by_age: BTreeSet::new(),
            protos: HashMap::new(),
            now: f64::NEG_INFINITY,
            stats: LiveStats::default(),
            ctx: Vec::new(),
            order: Vec::new(),
        }
    }

    /// The columns rows are computed for.
    pub fn features(&self) -> &[Feature] {
        &self.features
    }

    pub fn config(&self) -> &LiveConfig {
        &self.config
    }

    pub fn stats(&self) -> LiveStats {
        LiveStats {
            retained: self.by_age.len(),
            keys: self.groups.iter().map(|g| g.hosts.len()).sum(),
            ..self.stats
        }
    }

    /// Records `flows`, then returns their rows: row-major, the layout and
    /// the unscaled values of `featurize(spec, flows, false)` (scale them
    /// with `scale_rows`), with context over every flow retained.
    pub fn push_and_featurize(&mut self, flows: &[Flow]) -> Vec<f64> {
        self.push(flows);
        self.featurize(flows)
    }

    /// Records `flows` without computing rows. Later records of a uid
    /// replace earlier ones, so an interim snapshot pushed after its final
    /// record would win: push in arrival order.
    pub fn push(&mut self, flows: &[Flow]) {
        // Without context columns nothing needs remembering.
        if self.groups.is_empty() {
            return;
        }
        let newest = flows
            .iter()
            .map(|f| f.ts)
            .filter(|ts| ts.is_finite())
            .fold(f64::NEG_INFINITY, f64::max);
        if newest > self.now {
            self.now = newest;
            self.prune();
        }
        for f in flows {
            if !f.ts.is_finite() {
                self.stats.unusable += 1;
                continue;
            }
            if let Some(&id) = self.by_uid.get(f.uid.as_str()) {
                self.remove(id);
                self.stats.replaced += 1;
            }
            if !self.make_room(f.ts) {
                self.stats.evicted += 1;
                continue;
            }
            self.insert(f);
        }
    }

    /// Rows of `flows` (as [`push_and_featurize`](Self::push_and_featurize)
    /// returns them) from the retained flows only: a flow that was not
    /// pushed is not in its own window.
    pub fn featurize(&mut self, flows: &[Flow]) -> Vec<f64> {
        let mut out = Vec::new();
        self.featurize_into(flows, &mut out);
        out
    }

    /// [`Self::featurize`] into `out` (cleared first), reusing its
    /// capacity and this featurizer's scratch.
    pub fn featurize_into(&mut self, flows: &[Flow], out: &mut Vec<f64>) {
        let cols = self.features.len();
        let mut ctx = std::mem::take(&mut self.ctx);
        ctx.clear();
        if !self.groups.is_empty() {
            ctx.resize(cols * flows.len(), f64::NAN);
            // In time order each key's window only moves forward within
            // the batch.
            let mut order = std::mem::take(&mut self.order);
            order.clear();
            order.extend(0..flows.len());
            order.sort_by(|&a, &b| flows[a].ts.total_cmp(&flows[b].ts));
            let empty = Window::<u32>::new(0, Distinct::default());
            let Self {
                groups,
                slots,
                protos,
                ..
            } = self;
            for g in groups.iter_mut() {
                for &i in &order {
                    let f = &flows[i];
                    let key = match g.key {
                        ContextKey::OrigH => Some((f.orig_h, 0, 0)),
                        ContextKey::RespH | ContextKey::RespHAsOrig => Some((f.resp_h, 0, 0)),
                        ContextKey::OrigHRespP => protos
                            .get(f.proto.as_str())
                            .map(|&p| (f.orig_h, f.resp_p, p)),
                    };
                    let host = key
                        .filter(|_| f.ts.is_finite())
                        .and_then(|k| g.hosts.get_mut(&k));
                    let w = match host {
                        Some(h) => {
                            // Start times in [ts - window, ts + ahead].
                            let lo = entry(f.ts - g.window, 0);
                            let hi = (age(f.ts + g.ahead + 0.0).saturating_add(1), 0);
                            h.seek(lo, hi, slots, &g.columns);
                            &h.window
                        }
                        None => &empty,
                    };
                    for (k, c) in g.columns.iter().enumerate() {
                        if let Some(v) = ctx.get_mut(i * cols + c.col) {
                            *v = w.value(&c.stat, k);
                        }
                    }
                }
            }
            self.order = order;
        }
        out.clear();
        out.reserve(flows.len() * cols);
        push_rows(&self.features, flows, &ctx, out);
        self.ctx = ctx;
    }

    /// Drops the flows no window can reach any more, oldest first.
    fn prune(&mut self) {
        let cutoff = self.now - self.max_window - self.config.retention_secs;
        while let Some(&(_, id)) = self.by_age.first() {
            match slot_of(&self.slots, id) {
                Some(s) if s.ts < cutoff => {
                    self.remove(id);
                    self.stats.pruned += 1;
                }
                Some(_) => break,
                None => {
                    // Not reachable: slots leave the index when freed.
                    self.by_age.pop_first();
                }
            }
        }
    }

    /// Evicts the oldest flows until one starting at `ts` fits; false when
    /// it should not be kept (no room, or older than everything kept).
    fn make_room(&mut self, ts: f64) -> bool {
        if self.config.max_flows == 0 {
            return false;
        }
        while self.by_age.len() >= self.config.max_flows {
            let Some(&(oldest, id)) = self.by_age.first() else {
                break;
            };
            if age(ts) <= oldest {
                return false;
            }
            self.remove(id);
            self.stats.evicted += 1;
        }
        true
    }

    fn insert(&mut self, f: &Flow) {
        let next = self.protos.len() as u32;
        let proto = *self.protos.entry_ref(f.proto.as_str()).or_insert(next);
        let slot = Slot {
            ts: f.ts,
            uid: Arc::from(f.uid.as_str()),
            member: Member {
                orig_h: f.orig_h,
                resp_h: f.resp_h,
                orig_p: f.orig_p,
                resp_p: f.resp_p,
                proto,
            },
            sums: self.summed.iter().map(|s| contribution(s, f)).collect(),
        };
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        let Self {
            groups,
            slots,
            by_uid,
            by_age,
            ..
        } = self;
        let Some(place) = slots.get_mut(id as usize) else {
            return;
        };
        let s = place.insert(slot);
        by_uid.insert(s.uid.clone(), id);
        by_age.insert((age(s.ts), id));
        let e = entry(s.ts, id);
        for g in groups.iter_mut() {
            let (n, distinct) = (g.columns.len(), g.distinct);
            g.hosts
                .entry(host_key(g.key, &s.member))
                .or_insert_with(|| Host::new(n, distinct))
                .insert(e, s, &g.columns);
        }
    }

    fn remove(&mut self, id: u32) {
        let Some(s) = self.slots.get_mut(id as usize).and_then(Option::take) else {
            return;
        };
        let e = entry(s.ts, id);
        for g in self.groups.iter_mut() {
            let k = host_key(g.key, &s.member);
            if let Some(h) = g.hosts.get_mut(&k) {
                h.remove(e, &s, &g.columns);
                if h.entries.is_empty() {
                    g.hosts.remove(&k);
                }
            }
        }
        self.by_age.remove(&(age(s.ts), id));
        if self.by_uid.get(&*s.uid) == Some(&id) {
            self.by_uid.remove(&*s.uid);
        }
        self.free.push(id);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap as StdMap;
    use std::net::Ipv4Addr;
    use std::path::Path;

    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::features::context::context_columns;
    use crate::features::featurize;

    /// Every key, every statistic, windows short enough for the generated
    /// times to land on their bounds, and per-flow columns.
    const SPEC: &str = r#"
[model]
name = "live-test"
version = "0"
onnx = "none.onnx"
kind = "anomaly"

[input]
name = "input"
dtype = "float32"

[context]
window_secs = 4.0

[[feature]]
name = "duration"
kind = "field"
field = "duration"
missing = -1.0

[[feature]]
name = "bytes_ratio"
kind = "ratio"
num = "orig_bytes"
den = "resp_bytes"
den_zero = 0.0

[[feature]]
name = "rej"
kind = "one_hot"
field = "conn_state"
equals = "REJ"

[[feature]]
name = "src_conns"
kind = "context"
key = "orig_h"
stat = "conns"
transform = "log1p"

[[feature]]
name = "src_ports_1s"
kind = "context"
key = "orig_h"
stat = "distinct_resp_p"
window_secs = 1.0

[[feature]]
name = "src_ports_ahead"
kind = "context"
key = "orig_h"
stat = "distinct_resp_p"
window_secs = 1.0
ahead_secs = 0.75

[[feature]]
name = "peer_conns"
kind = "context"
key = "resp_h_as_orig"
stat = "conns"

[[feature]]
name = "peer_share_s0_ahead"
kind = "context"
key = "resp_h_as_orig"
stat = "share_state"
states = ["S0", "REJ"]
ahead_secs = 2.0

[[feature]]
name = "src_hosts_half"
kind = "context"
key = "orig_h"
stat = "distinct_resp_h"
window_secs = 0.5

[[feature]]
name = "src_share_s0"
kind = "context"
key = "orig_h"
stat = "share_state"
states = ["S0", "REJ"]

[[feature]]
name = "dst_origs"
kind = "context"
key = "resp_h"
stat = "distinct_orig_h"

[[feature]]
name = "dst_orig_ports"
kind = "context"
key = "resp_h"
stat = "distinct_orig_p"
window_secs = 2.0

[[feature]]
name = "dst_mean_bytes"
kind = "context"
key = "resp_h"
stat = "mean"
field = "orig_bytes"
window_secs = 2.0

[[feature]]
name = "svc_conns"
kind = "context"
key = "orig_h_resp_p"
stat = "conns"
window_secs = 1.5

[[feature]]
name = "svc_mean_duration"
kind = "context"
key = "orig_h_resp_p"
stat = "mean"
field = "duration"
window_secs = 1.5

[[feature]]
name = "svc_share_s0"
kind = "context"
key = "orig_h_resp_p"
stat = "share_state"
states = ["S0", "REJ"]
window_secs = 1.5
"#;

    fn spec() -> FeatureSpec {
        FeatureSpec::parse(SPEC, Path::new("live-test.toml")).expect("the test spec")
    }

    fn classifier() -> FeatureSpec {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/osprey-classifier.toml");
        FeatureSpec::load(&path).expect("the bundled classifier spec")
    }

    /// A generated connection: few hosts, ports and start times so that
    /// windows overlap and start times tie, including on window bounds.
    #[derive(Clone, Debug)]
    struct Conn {
        eighths: u32,
        orig: u8,
        resp: u8,
        orig_p: u16,
        resp_p: u16,
        udp: bool,
        state: usize,
        bytes: Option<u64>,
        micros: Option<u32>,
        interims: usize,
    }

    const STATES: [&str; 7] = ["S0", "SF", "REJ", "RSTO", "S1", "OTH", ""];

    fn conn() -> impl Strategy<Value = Conn> {
        (
            (0u32..160, 0u8..4, 0u8..4, 40000u16..40004),
            (prop::sample::select(vec![22u16, 53, 80]), any::<bool>()),
            (0..STATES.len(), prop::option::of(0u64..5000)),
            (prop::option::of(0u32..3_000_000), 0usize..3),
        )
            .prop_map(
                |(
                    (eighths, orig, resp, orig_p),
                    (resp_p, udp),
                    (state, bytes),
                    (micros, interims),
                )| {
                    Conn {
                        eighths,
                        orig,
                        resp,
                        orig_p,
                        resp_p,
                        udp,
                        state,
                        bytes,
                        micros,
                        interims,
                    }
                },
            )
    }

    fn random_conn(rng: &mut StdRng, span: u32) -> Conn {
        Conn {
            eighths: rng.random_range(0..span),
            orig: rng.random_range(0..4),
            resp: rng.random_range(0..4),
            orig_p: rng.random_range(40000..40004),
            resp_p: [22, 53, 80][rng.random_range(0..3)],
            udp: rng.random_bool(0.3),
            state: rng.random_range(0..STATES.len()),
            bytes: rng.random_bool(0.8).then(|| rng.random_range(0..5000)),
            micros: rng.random_bool(0.8).then(|| rng.random_range(0..3_000_000)),
            interims: rng.random_range(0..3),
        }
    }

    /// Snapshot `k` of `interims + 1`: the last is the final record, the
    /// others carry less of everything and an open state.
    fn flow(uid: usize, c: &Conn, k: usize) -> Flow {
        let fin = k == c.interims;
        let part = |v: u64| {
            if fin {
                v
            } else {
                v * k as u64 / (c.interims as u64 + 1)
            }
        };
        let addr = |net: u8, host: u8| IpAddr::V4(Ipv4Addr::new(10, 0, net, host));
        Flow {
            ts: 1_700_000_000.0 + f64::from(c.eighths) / 8.0,
            uid: format!("C{uid}"),
            orig_h: addr(0, c.orig),
            orig_p: c.orig_p,
            resp_h: addr(1, c.resp),
            resp_p: c.resp_p,
            proto: if c.udp { "udp" } else { "tcp" }.to_string(),
            service: Vec::new(),
            duration: c.micros.map(|us| part(u64::from(us)) as f64 / 1e6),
            orig_bytes: c.bytes.map(part),
            resp_bytes: c.bytes.map(|b| part(b / 3)),
            conn_state: if fin { STATES[c.state] } else { "OTH" }.to_string(),
            local_orig: Some(true),
            local_resp: None,
            missed_bytes: Some(0),
            history: if fin { "ShADadFf" } else { "S" }.to_string(),
            orig_pkts: Some(part(7)),
            orig_ip_bytes: c.bytes.map(|b| part(b + 40)),
            resp_pkts: Some(part(5)),
            resp_ip_bytes: None,
            ip_proto: Some(if c.udp { 17 } else { 6 }),
        }
    }

    fn finals(conns: &[Conn]) -> Vec<Flow> {
        conns
            .iter()
            .enumerate()
            .map(|(u, c)| flow(u, c, c.interims))
            .collect()
    }

    /// Every snapshot of every conn, shuffled, each conn's snapshots kept
    /// in their own order (a final record is the last one of its uid).
    fn arrivals(conns: &[Conn], rng: &mut StdRng) -> Vec<Flow> {
        let mut uids: Vec<usize> = conns
            .iter()
            .enumerate()
            .flat_map(|(u, c)| std::iter::repeat_n(u, c.interims + 1))
            .collect();
        uids.shuffle(rng);
        let mut next = vec![0; conns.len()];
        uids.iter()
            .map(|&u| {
                next[u] += 1;
                flow(u, &conns[u], next[u] - 1)
            })
            .collect()
    }

    /// Pushes `flows` in batches of random sizes.
    fn push_in_batches(live: &mut LiveFeaturizer, flows: &[Flow], rng: &mut StdRng) {
        let mut rest = flows;
        while !rest.is_empty() {
            let n = rng.random_range(1..=rest.len().min(9));
            live.push(&rest[..n]);
            rest = &rest[n..];
        }
    }

    fn assert_bits(got: &[f64], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{what}: value {i}: {g} != {w}");
        }
    }

    /// The key property: once everything is pushed, in any order and with
    /// interim snapshots superseded by finals, the rows are the batch's.
    fn check_all_then_query(spec: &FeatureSpec, conns: &[Conn], seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let finals = finals(conns);
        let mut live = LiveFeaturizer::new(spec);
        push_in_batches(&mut live, &arrivals(conns, &mut rng), &mut rng);
        assert_eq!(live.stats().retained, finals.len());
        let want = featurize(spec, &finals, false);
        assert_bits(&live.featurize(&finals), &want, "all pushed, then queried");
        // Queried in another order (and so with other window moves).
        let mut order: Vec<usize> = (0..finals.len()).collect();
        order.shuffle(&mut rng);
        let cols = spec.columns();
        for chunk in order.chunks(5) {
            let flows: Vec<Flow> = chunk.iter().map(|&i| finals[i].clone()).collect();
            let rows = live.featurize(&flows);
            for (r, &i) in chunk.iter().enumerate() {
                let got = &rows[r * cols..(r + 1) * cols];
                assert_bits(got, &want[i * cols..(i + 1) * cols], "queried in chunks");
            }
        }
    }

    /// Each batch, pushed in the arrival order, sees the latest record of
    /// every uid pushed so far: the batch's rows over that set.
    fn check_seen_so_far(spec: &FeatureSpec, arrivals: &[Flow], config: LiveConfig, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut live = LiveFeaturizer::with_config(&spec.features, config);
        let mut seen: Vec<Flow> = Vec::new();
        let mut index: StdMap<String, usize> = StdMap::new();
        let cols = spec.columns();
        let mut rest = arrivals;
        while !rest.is_empty() {
            // No uid twice in a batch: a superseded snapshot's row would
            // have its own fields and its successor's context.
            let mut n = rng.random_range(1..=rest.len().min(9));
            for k in 1..n {
                if rest[..k].iter().any(|f| f.uid == rest[k].uid) {
                    n = k;
                    break;
                }
            }
            let batch = &rest[..n];
            rest = &rest[n..];
            for f in batch {
                match index.get(&f.uid) {
                    Some(&i) => seen[i] = f.clone(),
                    None => {
                        index.insert(f.uid.clone(), seen.len());
                        seen.push(f.clone());
                    }
                }
            }
            let rows = live.push_and_featurize(batch);
            let want = featurize(spec, &seen, false);
            for (r, f) in batch.iter().enumerate() {
                let i = index[&f.uid];
                let got = &rows[r * cols..(r + 1) * cols];
                assert_bits(got, &want[i * cols..(i + 1) * cols], "seen so far");
            }
        }
    }

    proptest! {
        #[test]
        fn all_pushed_then_queried_equals_featurize(
            conns in prop::collection::vec(conn(), 1..60),
            seed in any::<u64>(),
        ) {
            check_all_then_query(&spec(), &conns, seed);
        }

        #[test]
        fn out_of_order_batches_see_the_flows_seen_so_far(
            conns in prop::collection::vec(conn(), 1..50),
            seed in any::<u64>(),
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let arrivals = arrivals(&conns, &mut rng);
            check_seen_so_far(&spec(), &arrivals, LiveConfig::default(), seed);
        }
    }

    #[test]
    fn classifier_spec_all_pushed_then_queried() {
        let spec = classifier();
        let mut rng = StdRng::seed_from_u64(7);
        for round in 0..4 {
            let conns: Vec<Conn> = (0..300).map(|_| random_conn(&mut rng, 800)).collect();
            check_all_then_query(&spec, &conns, round);
        }
    }

    /// In start-time order, batch by batch, every flow's context is the
    /// prefix's: what `context_columns` gives over the flows pushed so
    /// far. Retention much shorter than the span makes pruning run
    /// throughout; it is longer than a batch spans (up to 20 flows, ~13 s),
    /// so no flow a window of the batch reaches is lost.
    #[test]
    fn in_order_batches_match_context_over_the_prefix() {
        for (spec, span) in [(spec(), 4000), (classifier(), 8000)] {
            let mut rng = StdRng::seed_from_u64(11);
            let mut conns: Vec<Conn> = (0..1500).map(|_| random_conn(&mut rng, span)).collect();
            conns.sort_by_key(|c| c.eighths);
            let flows = finals(&conns);
            let config = LiveConfig {
                retention_secs: 30.0,
                ..LiveConfig::default()
            };
            let mut live = LiveFeaturizer::with_config(&spec.features, config);
            let cols = spec.columns();
            let mut done = 0;
            let mut most = 0;
            while done < flows.len() {
                let n = rng.random_range(1..=(flows.len() - done).min(20));
                let rows = live.push_and_featurize(&flows[done..done + n]);
                let ctx = context_columns(&spec.features, &flows[..done + n]);
                let want = featurize(&spec, &flows[..done + n], false);
                for r in 0..n {
                    let i = done + r;
                    for (c, f) in spec.features.iter().enumerate() {
                        if !matches!(f.value, Value::Context { .. }) {
                            continue;
                        }
                        let got = rows[r * cols + c];
                        let raw = f.transform.apply(ctx[i * cols + c]);
                        assert_eq!(got.to_bits(), raw.to_bits(), "flow {i} {}", f.name);
                    }
                    let got = &rows[r * cols..(r + 1) * cols];
                    assert_bits(got, &want[i * cols..(i + 1) * cols], "prefix rows");
                }
                done += n;
                most = most.max(live.stats().retained);
            }
            // 30 s of retention past the longest window (60 s at most),
            // at 1.5 to 3 flows per second: far fewer than the 1500 pushed.
            assert!(most < 300, "{most} flows retained");
            assert!(live.stats().pruned > 1000);
        }
    }

    #[test]
    fn classifier_spec_out_of_order_with_interims() {
        let spec = classifier();
        let mut rng = StdRng::seed_from_u64(3);
        let conns: Vec<Conn> = (0..400).map(|_| random_conn(&mut rng, 600)).collect();
        let arrivals = arrivals(&conns, &mut rng);
        check_seen_so_far(&spec, &arrivals, LiveConfig::default(), 5);
    }

    /// Retention bounds what a late record sees, and keys whose flows are
    /// all gone are dropped.
    #[test]
    fn old_flows_and_empty_keys_are_dropped() {
        let spec = spec();
        let mut rng = StdRng::seed_from_u64(1);
        let conns: Vec<Conn> = (0..200).map(|_| random_conn(&mut rng, 80)).collect();
        let config = LiveConfig {
            retention_secs: 10.0,
            ..LiveConfig::default()
        };
        let mut live = LiveFeaturizer::with_config(&spec.features, config);
        live.push(&finals(&conns));
        assert_eq!(live.stats().retained, 200);
        assert!(live.stats().keys > 0);
        // 4 s (the longest window) + 10 s after the newest start, nothing
        // is reachable: a record starting now is alone in its windows.
        let mut late = flow(999, &conns[0], conns[0].interims);
        late.ts += 100.0;
        let rows = live.push_and_featurize(std::slice::from_ref(&late));
        assert_eq!(live.stats().retained, 1);
        assert_eq!(live.stats().pruned, 200);
        let want = featurize(&spec, std::slice::from_ref(&late), false);
        assert_bits(&rows, &want, "alone after pruning");
        // One flow: one key value per column group (9 groups, each
        // (key, window, look-ahead) its own).
        assert_eq!(live.stats().keys, 9);
        // A final record of a conn that started before the retention sees
        // only itself and what is still kept.
        let old = flow(0, &conns[0], conns[0].interims);
        let rows = live.push_and_featurize(std::slice::from_ref(&old));
        let want = featurize(&spec, std::slice::from_ref(&old), false);
        assert_bits(&rows, &want, "partial context of a late final");
    }

    #[test]
    fn the_cap_evicts_the_oldest_and_counts() {
        let spec = spec();
        let mut rng = StdRng::seed_from_u64(2);
        let mut conns: Vec<Conn> = (0..50).map(|_| random_conn(&mut rng, 40)).collect();
        conns.sort_by_key(|c| c.eighths);
        let flows = finals(&conns);
        let config = LiveConfig {
            max_flows: 10,
            ..LiveConfig::default()
        };
        let mut live = LiveFeaturizer::with_config(&spec.features, config);
        live.push(&flows);
        let stats = live.stats();
        assert_eq!((stats.retained, stats.evicted), (10, 40));
        // The newest ten are what is left: each has the context over them.
        let newest = &flows[40..];
        assert_bits(
            &live.featurize(newest),
            &featurize(&spec, newest, false),
            "after eviction",
        );
        // A flow older than everything kept is not kept.
        live.push(&flows[..1]);
        assert_eq!(live.stats().retained, 10);
        assert_eq!(live.stats().evicted, 41);
        let none = LiveConfig {
            max_flows: 0,
            ..LiveConfig::default()
        };
        let mut live = LiveFeaturizer::with_config(&spec.features, none);
        live.push(&flows);
        assert_eq!(live.stats().retained, 0);
    }

    #[test]
    fn unusable_start_times_are_not_kept() {
        let spec = spec();
        let mut rng = StdRng::seed_from_u64(4);
        let conns: Vec<Conn> = (0..20).map(|_| random_conn(&mut rng, 40)).collect();
        let mut flows = finals(&conns);
        flows[3].ts = f64::NAN;
        flows[5].ts = f64::INFINITY;
        let mut live = LiveFeaturizer::new(&spec);
        let rows = live.push_and_featurize(&flows);
        assert_eq!(rows.len(), flows.len() * spec.columns());
        assert!(rows.iter().all(|v| v.is_finite()));
        assert_eq!(live.stats().unusable, 2);
        assert_eq!(live.stats().retained, 18);
    }

    #[test]
    fn without_context_columns_nothing_is_kept() {
        let mut spec = spec();
        spec.features
            .retain(|f| !matches!(f.value, Value::Context { .. }));
        let mut rng = StdRng::seed_from_u64(6);
        let conns: Vec<Conn> = (0..30).map(|_| random_conn(&mut rng, 40)).collect();
        let flows = finals(&conns);
        let mut live = LiveFeaturizer::new(&spec);
        assert_bits(
            &live.push_and_featurize(&flows),
            &featurize(&spec, &flows, false),
            "no context",
        );
        assert_eq!(live.stats(), LiveStats::default());
    }

    /// Cost per flow against the batch path, by hand (`cargo test --lib
    /// live_cost -- --ignored --nocapture`): one host opening 2,000 flows
    /// per second among light ones, in ts-ordered batches of 256, with a
    /// tenth of the records arriving as interim snapshots first.
    #[test]
    #[ignore = "timing, by hand"]
    fn live_cost_per_flow() {
        let spec = classifier();
        let mut rng = StdRng::seed_from_u64(9);
        let n = 100_000;
        let mut conns: Vec<Conn> = (0..n)
            .map(|_| {
                let mut c = random_conn(&mut rng, 400);
                c.interims = usize::from(rng.random_bool(0.1));
                c
            })
            .collect();
        for (i, c) in conns.iter_mut().enumerate() {
            // 50 s at 2,000 flows per second; a third from one host.
            c.eighths = (i / 250) as u32;
            if i % 3 != 0 {
                c.orig = 4 + (i % 200) as u8;
            }
        }
        let flows = finals(&conns);
        let arrivals: Vec<Flow> = conns
            .iter()
            .enumerate()
            .flat_map(|(u, c)| (0..=c.interims).map(move |k| flow(u, c, k)))
            .collect();
        let t = std::time::Instant::now();
        let batch = featurize(&spec, &flows, false);
        let batch_ns = t.elapsed().as_nanos() as f64 / n as f64;
        let mut live = LiveFeaturizer::new(&spec);
        let t = std::time::Instant::now();
        let mut rows = 0;
        for chunk in arrivals.chunks(256) {
            rows += live.push_and_featurize(chunk).len();
        }
        let live_ns = t.elapsed().as_nanos() as f64 / arrivals.len() as f64;
        assert_eq!(rows, arrivals.len() * spec.columns());
        assert_eq!(batch.len(), n * spec.columns());
        eprintln!(
            "{} records: featurize {batch_ns:.0} ns/flow, live {live_ns:.0} ns/record, {:?}",
            arrivals.len(),
            live.stats()
        );
    }
}
