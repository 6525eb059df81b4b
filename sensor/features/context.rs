//! Host-context aggregates: what the other connections of the same host
//! did around the same time (how many, to how many ports and hosts, how
//! many were rejected, how big). Single-connection features cannot tell a
//! SYN-flood attempt from one failed connect; the context can.
//!
//! The window of a flow is every flow with the same key address whose
//! start time lies in `[ts - window, ts + ahead]`, the flow itself
//! included (for the keys it is a member of). It
//! depends only on the set of flows, not on the order they arrive in, so
//! the engine's records and Zeek's conn.log of the same traffic give the
//! same numbers. Flows are swept in time order with two pointers and
//! running integer sums, so a host with tens of thousands of flows costs
//! linear time and every source order gives bit-identical results.

use std::hash::Hash;

// foldhash (hashbrown's default): the windows hash addresses and ports
// per flow and column group, where SipHash was a third of featurize's time.
use hashbrown::HashMap;
use std::net::IpAddr;

use super::flow::{Flow, NumField};
use super::spec::{ContextKey, ContextStat, Feature, Value};

/// Integer form of a numeric field for exact running sums: durations in
/// microseconds (their resolution in conn.log), counts as they are.
fn int_value(f: NumField, flow: &Flow) -> i128 {
    match f {
        NumField::Duration => flow.duration.map_or(0, |d| (d * 1e6).round() as i128),
        _ => f.get(flow).map_or(0, |v| v as i128),
    }
}

fn from_int(f: NumField, v: f64) -> f64 {
    match f {
        NumField::Duration => v / 1e6,
        _ => v,
    }
}

/// Counts of values in the window, for distinct counts.
struct Multiset<T: Eq + Hash>(HashMap<T, u32>);

impl<T: Eq + Hash> Multiset<T> {
    fn new() -> Self {
        Multiset(HashMap::new())
    }
    fn add(&mut self, v: T) {
        *self.0.entry(v).or_insert(0) += 1;
    }
    fn remove(&mut self, v: &T) {
        if let Some(c) = self.0.get_mut(v) {
            *c -= 1;
            if *c == 0 {
                self.0.remove(v);
            }
        }
    }
    fn distinct(&self) -> usize {
        self.0.len()
    }
}

/// What a flow adds to the distinct counts of a window. `P` names the
/// transport: the batch sweep borrows the flow's string, the live state
/// (which outlives the flows it was given) keeps an interned id.
pub(super) struct Member<P> {
    pub orig_h: IpAddr,
    pub resp_h: IpAddr,
    pub orig_p: u16,
    pub resp_p: u16,
    pub proto: P,
}

/// The running state of one window, shared by the batch sweep and the
/// live featurizer so both compute every statistic with the same integer
/// arithmetic (and so give bit-identical values for the same set).
pub(super) struct Window<P: Eq + Hash> {
    n: u64,
    need: Distinct,
    resp_p: Multiset<(u16, P)>,
    resp_h: Multiset<IpAddr>,
    orig_h: Multiset<IpAddr>,
    orig_p: Multiset<(u16, P)>,
    /// Per stat: flows matching (share_state) or the integer sum (mean).
    sums: Vec<i128>,
}

/// A flow's addend to a stat's running sum (0 for stats without one).
pub(super) fn contribution(stat: &ContextStat, f: &Flow) -> i128 {
    match stat {
        ContextStat::ShareState(states) => i128::from(states.contains(&f.conn_state)),
        ContextStat::Mean(field) => int_value(*field, f),
        _ => 0,
    }
}

/// The distinct-value sets a window's columns read. Only those are kept:
/// each costs a hash-map update per flow entering or leaving the window,
/// and most column groups read one or none of the four.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Distinct {
    resp_p: bool,
    resp_h: bool,
    orig_h: bool,
    orig_p: bool,
}

impl Distinct {
    /// What the statistics `stats` read.
    pub(super) fn of<'a>(stats: impl IntoIterator<Item = &'a ContextStat>) -> Distinct {
        let mut d = Distinct::default();
        for s in stats {
            match s {
                ContextStat::DistinctRespP => d.resp_p = true,
                ContextStat::DistinctRespH => d.resp_h = true,
                ContextStat::DistinctOrigH => d.orig_h = true,
                ContextStat::DistinctOrigP => d.orig_p = true,
                ContextStat::Conns | ContextStat::ShareState(_) | ContextStat::Mean(_) => {}
            }
        }
        d
    }
}

impl<P: Eq + Hash + Copy> Window<P> {
    /// A window for `stats` columns that keeps the distinct sets `need`
    /// names (a statistic whose set is not kept reads 0).
    pub(super) fn new(stats: usize, need: Distinct) -> Self {
        Window {
            n: 0,
            need,
            resp_p: Multiset::new(),
            resp_h: Multiset::new(),
            orig_h: Multiset::new(),
            orig_p: Multiset::new(),
            sums: vec![0; stats],
        }
    }

    /// Adds a flow; `contributions` are its [`contribution`]s, one per
    /// column in the order the window was made for.
    pub(super) fn add(&mut self, m: &Member<P>, contributions: impl Iterator<Item = i128>) {
        self.n += 1;
        let need = self.need;
        // Ports are per transport: 53/udp and 53/tcp are different services.
        if need.resp_p {
            self.resp_p.add((m.resp_p, m.proto));
        }
        if need.orig_p {
            self.orig_p.add((m.orig_p, m.proto));
        }
        if need.resp_h {
            self.resp_h.add(m.resp_h);
        }
        if need.orig_h {
            self.orig_h.add(m.orig_h);
        }
        // Wrapping, so that removing a flow always undoes adding it: a
        // field's value comes from the traffic (or a log), and absurd ones
        // saturate to i128::MAX, which two flows then overflow.
        for (sum, c) in self.sums.iter_mut().zip(contributions) {
            *sum = sum.wrapping_add(c);
        }
    }

    /// Removes a flow added before, with the same contributions.
    pub(super) fn remove(&mut self, m: &Member<P>, contributions: impl Iterator<Item = i128>) {
        self.n -= 1;
        let need = self.need;
        if need.resp_p {
            self.resp_p.remove(&(m.resp_p, m.proto));
        }
        if need.orig_p {
            self.orig_p.remove(&(m.orig_p, m.proto));
        }
        if need.resp_h {
            self.resp_h.remove(&m.resp_h);
        }
        if need.orig_h {
            self.orig_h.remove(&m.orig_h);
        }
        for (sum, c) in self.sums.iter_mut().zip(contributions) {
            *sum = sum.wrapping_sub(c);
        }
    }

    /// The value of column `i`, whose statistic is `stat`.
    pub(super) fn value(&self, stat: &ContextStat, i: usize) -> f64 {
        let n = self.n.max(1) as f64;
        let sum = self.sums.get(i).copied().unwrap_or(0);
        match stat {
            ContextStat::Conns => self.n as f64,
            ContextStat::DistinctRespP => self.resp_p.distinct() as f64,
            ContextStat::DistinctRespH => self.resp_h.distinct() as f64,
            ContextStat::DistinctOrigH => self.orig_h.distinct() as f64,
            ContextStat::DistinctOrigP => self.orig_p.distinct() as f64,
            ContextStat::ShareState(_) => sum as f64 / n,
            ContextStat::Mean(field) => from_int(*field, sum as f64) / n,
        }
    }
}

fn member(f: &Flow) -> Member<&str> {
    Member {
        orig_h: f.orig_h,
        resp_h: f.resp_h,
        orig_p: f.orig_p,
        resp_p: f.resp_p,
        proto: f.proto.as_str(),
    }
}

fn contributions<'a>(
    columns: &'a [(usize, &ContextStat)],
    f: &'a Flow,
) -> impl Iterator<Item = i128> + 'a {
    columns.iter().map(move |(_, s)| contribution(s, f))
}

/// A (key, window bits, look-ahead bits) triple and the columns that share
/// its sweep.
type Group<'a> = ((ContextKey, u64, u64), Vec<(usize, &'a ContextStat)>);

/// The key value a flow is grouped under (as a member of windows) or looked
/// up by (as a query) for `key`.
fn key_value(key: ContextKey, f: &Flow) -> (IpAddr, u16, &str) {
    match key {
        ContextKey::OrigH => (f.orig_h, 0, ""),
        ContextKey::RespH | ContextKey::RespHAsOrig => (f.resp_h, 0, ""),
        ContextKey::OrigHRespP => (f.orig_h, f.resp_p, f.proto.as_str()),
    }
}

/// Values of the context columns of `features`, for every flow, row-major:
/// `out[flow * features.len() + column]`, with NaN in columns that are not
/// context columns.
pub fn context_columns(features: &[Feature], flows: &[Flow]) -> Vec<f64> {
    let cols = features.len();
    let mut out = vec![f64::NAN; cols * flows.len()];
    // One sweep per (key, window, look-ahead); all its columns share the state.
    let mut groups: Vec<Group> = Vec::new();
    for (c, f) in features.iter().enumerate() {
        if let Value::Context {
            key,
            stat,
            window_secs,
            ahead_secs,
        } = &f.value
        {
            let id = (*key, window_secs.to_bits(), ahead_secs.to_bits());
            match groups.iter_mut().find(|(g, _)| *g == id) {
                Some((_, v)) => v.push((c, stat)),
                None => groups.push((id, vec![(c, stat)])),
            }
        }
    }
    let by_ts = |a: &usize, b: &usize| flows[*a].ts.total_cmp(&flows[*b].ts);
    for ((key, window_bits, ahead_bits), columns) in groups {
        let window = f64::from_bits(window_bits);
        let ahead = f64::from_bits(ahead_bits);
        let need = Distinct::of(columns.iter().map(|(_, s)| *s));
        // Each key value's members (the flows its windows hold) and
        // queries (the flows that read them), both in time order.
        type Lists = (Vec<usize>, Vec<usize>);
        let mut by_host: HashMap<(IpAddr, u16, &str), Lists> = HashMap::new();
        for (i, f) in flows.iter().enumerate() {
            by_host
                .entry(key_value(key.members(), f))
                .or_default()
                .0
                .push(i);
            by_host.entry(key_value(key, f)).or_default().1.push(i);
        }
        for (members, queries) in by_host.values_mut() {
            if queries.is_empty() {
                continue;
            }
            members.sort_by(by_ts);
            queries.sort_by(by_ts);
            let mut w = Window::new(columns.len(), need);
            let (mut lo, mut hi) = (0, 0);
            for &i in queries.iter() {
                let ts = flows[i].ts;
                while let Some(&j) = members.get(hi) {
                    if flows[j].ts > ts + ahead {
                        break;
                    }
                    w.add(&member(&flows[j]), contributions(&columns, &flows[j]));
                    hi += 1;
                }
                while let Some(&j) = members.get(lo) {
                    if lo >= hi || flows[j].ts >= ts - window {
                        break;
                    }
                    w.remove(&member(&flows[j]), contributions(&columns, &flows[j]));
                    lo += 1;
                }
                for (k, (c, stat)) in columns.iter().enumerate() {
                    out[i * cols + *c] = w.value(stat, k);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// Durations no real flow has (a forged or damaged log's 1e300 s)
    /// saturate to i128::MAX; two of them in one window must neither
    /// overflow nor leave a trace once removed.
    #[test]
    fn absurd_sums_wrap_and_undo() {
        let need = Distinct::default();
        let mut w: Window<u8> = Window::new(1, need);
        let ip = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
        let m = Member {
            orig_h: ip,
            resp_h: ip,
            orig_p: 1,
            resp_p: 2,
            proto: 6u8,
        };
        let huge = (1e300f64 * 1e6).round() as i128;
        assert_eq!(huge, i128::MAX);
        w.add(&m, std::iter::once(huge));
        w.add(&m, std::iter::once(huge));
        w.add(&m, std::iter::once(5));
        w.remove(&m, std::iter::once(huge));
        w.remove(&m, std::iter::once(huge));
        let mean = ContextStat::Mean(NumField::OrigBytes);
        assert_eq!(w.value(&mean, 0), 5.0);
    }
}
