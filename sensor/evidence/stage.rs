//! The evidence stage: per source, and per source and target service,
//! bounded windows of what it did, updated by every record.

use std::net::IpAddr;

use hashbrown::HashMap;
use smallvec::SmallVec;

use super::attempt::{classify, Attempt};
use super::column::{Column, Facts, FlaggedCount, ServiceFacts};
use super::table::Bounded;
use super::targets::{host_tag, Distinct, RecentTargets};
use super::window::{Counters, Windows};
use super::EvidenceConfig;
use crate::conn::{ConnRecord, Proto, Uid};

// Counter slots of a source or service; labels follow, two slots each
// (flagged, verified flagged).
const CONNS: usize = 0;
const FAILED: usize = 1;
const VERIFIED: usize = 2;
const PACKETS: usize = 3;
const AUTH: usize = 4;
const STALLED: usize = 5;
const BASE: usize = 6;
/// Counters a source or service keeps per window before any label.
pub(crate) const BASE_COUNTERS: usize = BASE;

/// A label as `model/label`, interned: rules and records name it by id.
pub type LabelId = u16;

/// The counters of a source or a service, with their labels' slots.
#[derive(Clone, Debug)]
struct Tally {
    last: f64,
    counts: Counters,
    labels: SmallVec<[LabelId; 4]>,
}

impl Tally {
    fn new(windows: &Windows, now: f64) -> Tally {
        Tally {
            last: now,
            counts: Counters::new(BASE, windows),
            labels: SmallVec::new(),
        }
    }

    fn slot(&mut self, id: LabelId) -> usize {
        let i = match self.labels.iter().position(|&l| l == id) {
            Some(i) => i,
            None => {
                self.labels.push(id);
                self.counts.grow(2);
                self.labels.len() - 1
            }
        };
        BASE + 2 * i
    }

    fn apply(&mut self, d: &Delta, windows: &Windows) {
        let t = d.now;
        self.last = self.last.max(t);
        self.counts.add(CONNS, u32::from(d.new_conn), windows, t);
        self.counts.add(FAILED, u32::from(d.failed), windows, t);
        if let Some(at) = d.unfailed_at {
            self.counts.sub(FAILED, windows, at);
        }
        self.counts.add(VERIFIED, u32::from(d.verified), windows, t);
        self.counts.add(
            PACKETS,
            u32::try_from(d.packets).unwrap_or(u32::MAX),
            windows,
            t,
        );
        self.counts
            .add(AUTH, u32::from(d.auth_failures), windows, t);
        self.counts.add(STALLED, u32::from(d.stalled), windows, t);
        for &(id, flagged, verified) in &d.labels {
            let s = self.slot(id);
            self.counts.add(s, u32::from(flagged), windows, t);
            self.counts.add(s + 1, u32::from(verified), windows, t);
        }
    }

    fn get(&self, c: usize, w: usize, windows: &Windows, t: f64) -> f64 {
        self.counts.get(c, w, windows, t)
    }

    /// Flagged (or verified flagged) connections over the given labels.
    fn flagged(&self, labels: &[LabelId], verified: bool, w: usize, win: &Windows, t: f64) -> f64 {
        self.labels
            .iter()
            .enumerate()
            .filter(|(_, l)| labels.contains(l))
            .map(|(i, _)| self.get(BASE + 2 * i + usize::from(verified), w, win, t))
            .sum()
    }

    fn heap_bytes(&self) -> usize {
        self.counts.heap_bytes()
            + if self.labels.spilled() {
                self.labels.capacity() * 2
            } else {
                0
            }
    }
}

/// Sizes of the tables' entries (hash, key and value), for the bound.
pub(crate) struct EntrySizes {
    pub source: usize,
    pub service: usize,
    pub open: usize,
    pub known: usize,
}

pub(crate) fn entry_sizes() -> EntrySizes {
    EntrySizes {
        source: Bounded::<IpAddr, Source>::entry_bytes(),
        service: Bounded::<ServiceKey, Tally>::entry_bytes(),
        open: Bounded::<Uid, Mark>::entry_bytes(),
        known: Bounded::<IpAddr, f64>::entry_bytes(),
    }
}

#[derive(Clone, Debug)]
struct Source {
    first: f64,
    tally: Tally,
    targets: RecentTargets,
}

/// A source and the service it talked to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ServiceKey {
    src: IpAddr,
    dst: IpAddr,
    port: u16,
    proto: Proto,
}

/// What was already counted of a connection that is still open (its
/// interim snapshots), so that it counts once whatever number of records
/// it has.
#[derive(Clone, Debug, Default)]
struct Mark {
    last: f64,
    failed_at: Option<f64>,
    verified: bool,
    packets: u64,
    auth_failures: u16,
    stalled: bool,
    labels: SmallVec<[LabelId; 2]>,
}

/// What one record adds.
#[derive(Default)]
struct Delta {
    now: f64,
    new_conn: bool,
    failed: bool,
    unfailed_at: Option<f64>,
    verified: bool,
    packets: u64,
    auth_failures: u16,
    stalled: bool,
    /// (label, count it as flagged, count it as verified flagged)
    labels: SmallVec<[(LabelId, bool, bool); 2]>,
}

/// Adds the labels of `flagged` that `mark`'s connection was not counted
/// with yet to `d` (as flagged, and verified flagged when `verified`).
fn count_new_labels(mark: &mut Mark, flagged: &[LabelId], verified: bool, d: &mut Delta) {
    for &id in flagged {
        if !mark.labels.contains(&id) {
            mark.labels.push(id);
            d.labels.push((id, true, verified));
        }
    }
}

/// Where a record's evidence is, for the rules that read it right after.
/// Valid until the next `observe`.
#[derive(Clone, Copy, Debug)]
pub struct Observed {
    /// The address the evidence is about: the originator, or for an ICMP
    /// unreachable answer the host whose packet failed.
    pub source: IpAddr,
    /// Whether the record was an ICMP error about someone else's attempt
    /// (rules are not run on it: the attempt's own record will come).
    pub answer: bool,
    /// Record time of the observation.
    pub now: f64,
    src: Option<usize>,
    svc: Option<usize>,
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvidenceStats {
    pub sources: usize,
    pub services: usize,
    pub open_conns: usize,
    pub known_good: usize,
    pub evicted_sources: u64,
    pub evicted_services: u64,
    pub evicted_open_conns: u64,
    pub evicted_known_good: u64,
}

pub struct EvidenceStage {
    cfg: EvidenceConfig,
    windows: Windows,
    sources: Bounded<IpAddr, Source>,
    services: Bounded<ServiceKey, Tally>,
    open: Bounded<Uid, Mark>,
    /// Last verified exchange per address.
    known: Bounded<IpAddr, f64>,
    labels: Vec<String>,
    label_ids: HashMap<String, LabelId>,
    last_expiry: f64,
}

/// Longest any window may be: state older than this is useless.
pub const MAX_WINDOW_SECS: f64 = 86_400.0;

impl EvidenceStage {
    pub fn new(cfg: EvidenceConfig, windows: Windows) -> EvidenceStage {
        EvidenceStage {
            sources: Bounded::new(cfg.max_sources),
            services: Bounded::new(cfg.max_services),
            open: Bounded::new(cfg.max_open_conns),
            known: Bounded::new(cfg.max_known_good),
            cfg,
            windows,
            labels: Vec::new(),
            label_ids: HashMap::new(),
            last_expiry: 0.0,
        }
    }

    pub fn windows(&self) -> &Windows {
        &self.windows
    }

    pub fn config(&self) -> &EvidenceConfig {
        &self.cfg
    }

    /// The id of `model/label`, interned on first use.
    pub fn label_id(&mut self, model: &str, label: &str) -> LabelId {
        let name = format!("{model}/{label}");
        if let Some(&id) = self.label_ids.get(&name) {
            return id;
        }
        let id = self.labels.len().min(usize::from(LabelId::MAX)) as LabelId;
        self.labels.push(name.clone());
        self.label_ids.insert(name, id);
        id
    }

    fn label_name(&self, id: LabelId) -> &str {
        self.labels.get(usize::from(id)).map_or("?", String::as_str)
    }

    /// Counts one record: `flagged` are the labels the models flagged it
    /// with. Every record goes through here (or through
    /// [`observe_pending`](Self::observe_pending) and then
    /// [`observe_verdicts`](Self::observe_verdicts)), scored or not.
    pub fn observe(&mut self, r: &ConnRecord, flagged: &[LabelId]) -> Observed {
        self.observe_conn(r, flagged, false)
    }

    /// Counts a record whose verdicts come later (the scorer holds it for
    /// its models' look-ahead): everything but the flagged columns, now,
    /// so rules on evidence alone do not wait for the models. Its
    /// connection's mark stays open until
    /// [`observe_verdicts`](Self::observe_verdicts) counts its labels.
    pub fn observe_pending(&mut self, r: &ConnRecord) -> Observed {
        self.observe_conn(r, &[], true)
    }

    /// The verdicts of a record counted by
    /// [`observe_pending`](Self::observe_pending): its flagged labels, each
    /// once per connection as [`observe`](Self::observe) counts them.
    pub fn observe_verdicts(&mut self, r: &ConnRecord, flagged: &[LabelId]) -> Observed {
        let now = r.ts + r.duration.unwrap_or(0.0);
        if let Attempt::Unreachable { to } = classify(r) {
            return Observed {
                source: to.to_canonical(),
                answer: true,
                now,
                src: None,
                svc: None,
            };
        }
        let orig = r.orig_h.to_canonical();
        let mut mark = if r.interim {
            self.open.get(&r.uid).cloned()
        } else {
            self.open.remove(&r.uid)
        }
        .unwrap_or_default();
        let mut d = Delta {
            now,
            ..Delta::default()
        };
        count_new_labels(&mut mark, flagged, r.orig_verified, &mut d);
        if r.interim && !d.labels.is_empty() {
            let i = self.open.index_or_insert(r.uid, Mark::default);
            if let Some(m) = self.open.at_mut(i) {
                m.labels = mark.labels;
            }
        }
        let src = self.source(orig, now);
        if let Some(s) = self.sources.at_mut(src) {
            s.tally.apply(&d, &self.windows);
        }
        let svc = self.count_service(r, orig, &d);
        Observed {
            source: orig,
            answer: false,
            now,
            src: Some(src),
            svc: Some(svc),
        }
    }

    /// The source's entry, made when new.
    fn source(&mut self, orig: IpAddr, now: f64) -> usize {
        let windows = &self.windows;
        self.sources.index_or_insert(orig, || Source {
            first: now,
            tally: Tally::new(windows, now),
            targets: RecentTargets::new(now),
        })
    }

    /// Applies `d` to the record's source+service tally; returns its entry.
    /// (An insertion into `services` cannot move `sources` entries.)
    fn count_service(&mut self, r: &ConnRecord, orig: IpAddr, d: &Delta) -> usize {
        let key = ServiceKey {
            src: orig,
            dst: r.resp_h.to_canonical(),
            port: r.resp_p,
            proto: r.proto,
        };
        let windows = &self.windows;
        let svc = self
            .services
            .index_or_insert(key, || Tally::new(windows, d.now));
        if let Some(s) = self.services.at_mut(svc) {
            s.apply(d, windows);
        }
        svc
    }

    fn observe_conn(&mut self, r: &ConnRecord, flagged: &[LabelId], pending: bool) -> Observed {
        let now = r.ts + r.duration.unwrap_or(0.0);
        // Records do not come in time order (a UDP record ends a minute
        // after its last packet): expiry follows the newest time seen,
        // every 10 s of it.
        if now - self.last_expiry >= 10.0 {
            self.expire(now);
        }
        let failed = match classify(r) {
            Attempt::Unreachable { to } => return self.observe_answer(to.to_canonical(), now),
            Attempt::Conn { failed } => failed,
        };
        let orig = r.orig_h.to_canonical();
        // A pending final keeps its mark until its verdicts are counted.
        let prior = if r.interim || pending {
            self.open.get(&r.uid).cloned()
        } else {
            self.open.remove(&r.uid)
        };
        let mut mark = prior.clone().unwrap_or_default();
        mark.last = now;
        let verified = r.orig_verified;
        // Held open, talking, never answered: only a proven source counts
        // (a forger cannot keep a connection open).
        let stalled = verified
            && r.duration.unwrap_or(0.0) >= self.cfg.stall_secs
            && r.orig_bytes.unwrap_or(0) > 0
            && r.resp_bytes.unwrap_or(0) == 0;
        let mut d = Delta {
            now,
            new_conn: prior.is_none(),
            failed: failed && mark.failed_at.is_none(),
            unfailed_at: if failed { None } else { mark.failed_at },
            verified: verified && !mark.verified,
            packets: r.orig_pkts.saturating_sub(mark.packets),
            auth_failures: if verified {
                r.auth_failures.saturating_sub(mark.auth_failures)
            } else {
                0
            },
            stalled: stalled && !mark.stalled,
            labels: SmallVec::new(),
        };
        if d.failed {
            mark.failed_at = Some(now);
        } else if d.unfailed_at.is_some() {
            mark.failed_at = None;
        }
        mark.verified |= verified;
        mark.packets = mark.packets.max(r.orig_pkts);
        if verified {
            mark.auth_failures = mark.auth_failures.max(r.auth_failures);
        }
        mark.stalled |= stalled;
        // Labels new to this connection count as flagged (and verified
        // flagged if it is verified); labels counted before count as
        // verified flagged once the connection gets verified.
        count_new_labels(&mut mark, flagged, verified, &mut d);
        if d.verified {
            for &id in &mark.labels {
                if !d.labels.iter().any(|x| x.0 == id) {
                    d.labels.push((id, false, true));
                }
            }
        }
        if r.interim || pending {
            let i = self.open.index_or_insert(r.uid, Mark::default);
            if let Some(m) = self.open.at_mut(i) {
                *m = mark;
            }
        }
        // Known-good takes a conversation, not a bare handshake: a connect
        // scan (nmap -sT) proves its address on every open port it finds,
        // and must not buy itself protection that way. A source that sent
        // data the responder acknowledged was talking to the service.
        if verified && r.orig_bytes.unwrap_or(0) > 0 {
            let i = self.known.index_or_insert(orig, || now);
            if let Some(t) = self.known.at_mut(i) {
                *t = t.max(now);
            }
        }

        let cap = self.cfg.max_targets_per_source;
        let src = self.source(orig, now);
        let (host, port, proto) = (host_tag(r.resp_h), r.resp_p, r.proto as u8);
        if let Some(s) = self.sources.at_mut(src) {
            s.tally.apply(&d, &self.windows);
            s.targets
                .touch(host, port, proto, now, failed && !verified, cap);
            if d.unfailed_at.is_some() {
                s.targets.unfail(host, port, proto);
            }
        }
        let svc = self.count_service(r, orig, &d);
        Observed {
            source: orig,
            answer: false,
            now,
            src: Some(src),
            svc: Some(svc),
        }
    }

    fn observe_answer(&mut self, to: IpAddr, now: f64) -> Observed {
        let src = self.source(to, now);
        if let Some(s) = self.sources.at_mut(src) {
            s.tally.last = s.tally.last.max(now);
            s.tally.counts.add(FAILED, 1, &self.windows, now);
        }
        Observed {
            source: to,
            answer: true,
            now,
            src: Some(src),
            svc: None,
        }
    }

    /// A column's value for the observed record over window `w`; `labels`
    /// are the ones flagged columns count.
    pub fn value(&self, o: &Observed, col: Column, w: usize, labels: &[LabelId]) -> f64 {
        let win = &self.windows;
        let t = o.now;
        let since = t - win.0.get(w).copied().unwrap_or(0.0);
        let src = o.src.and_then(|i| self.sources.at(i));
        let svc = o.svc.and_then(|i| self.services.at(i));
        if let Some((what, failed_only)) = col.distinct() {
            return src.map_or(0.0, |s| s.targets.count(what, since, failed_only) as f64);
        }
        let (tally, base) = match col {
            Column::Conns
            | Column::Failed
            | Column::Verified
            | Column::Packets
            | Column::AuthFailures
            | Column::Stalled
            | Column::Flagged
            | Column::VerifiedFlagged => (src.map(|s| &s.tally), col),
            _ => (svc, col),
        };
        let Some(tally) = tally else { return 0.0 };
        match base {
            Column::Conns | Column::ServiceConns => tally.get(CONNS, w, win, t),
            Column::Failed | Column::ServiceFailed => tally.get(FAILED, w, win, t),
            Column::Verified | Column::ServiceVerified => tally.get(VERIFIED, w, win, t),
            Column::Packets | Column::ServicePackets => tally.get(PACKETS, w, win, t),
            Column::AuthFailures | Column::ServiceAuthFailures => tally.get(AUTH, w, win, t),
            Column::Stalled | Column::ServiceStalled => tally.get(STALLED, w, win, t),
            Column::Flagged | Column::ServiceFlagged => tally.flagged(labels, false, w, win, t),
            Column::VerifiedFlagged | Column::ServiceVerifiedFlagged => {
                tally.flagged(labels, true, w, win, t)
            }
            _ => 0.0,
        }
    }

    /// The last verified exchange of `a` within the known-good period.
    pub fn last_verified(&self, a: IpAddr, now: f64) -> Option<f64> {
        self.known
            .get(&a.to_canonical())
            .copied()
            .filter(|&t| now - t <= self.cfg.known_good_secs)
    }

    /// What the observed source did over window `w`, for an action.
    pub fn facts(&self, o: &Observed, w: usize, forgeable: bool) -> Facts {
        let win = &self.windows;
        let t = o.now;
        let secs = win.0.get(w).copied().unwrap_or(0.0);
        let n = |x: f64| x.round().max(0.0) as u64;
        let mut f = Facts {
            window_secs: secs,
            forgeable,
            last_verified: self.last_verified(o.source, t),
            ..Facts::default()
        };
        let flagged_of = |tally: &Tally| {
            tally
                .labels
                .iter()
                .enumerate()
                .filter_map(|(i, &id)| {
                    let c = FlaggedCount {
                        conns: n(tally.get(BASE + 2 * i, w, win, t)),
                        verified: n(tally.get(BASE + 2 * i + 1, w, win, t)),
                    };
                    (c.conns > 0 || c.verified > 0).then(|| (self.label_name(id).to_string(), c))
                })
                .collect()
        };
        if let Some(s) = o.src.and_then(|i| self.sources.at(i)) {
            f.first_seen = s.first;
            f.conns = n(s.tally.get(CONNS, w, win, t));
            f.failed = n(s.tally.get(FAILED, w, win, t));
            f.verified = n(s.tally.get(VERIFIED, w, win, t));
            f.packets = n(s.tally.get(PACKETS, w, win, t));
            f.auth_failures = n(s.tally.get(AUTH, w, win, t));
            f.stalled = n(s.tally.get(STALLED, w, win, t));
            let since = t - secs;
            let c = |what, failed| s.targets.count(what, since, failed) as u64;
            f.targets = c(Distinct::Targets, false);
            f.hosts = c(Distinct::Hosts, false);
            f.ports = c(Distinct::Ports, false);
            f.failed_targets = c(Distinct::Targets, true);
            f.failed_hosts = c(Distinct::Hosts, true);
            f.failed_ports = c(Distinct::Ports, true);
            f.flagged = flagged_of(&s.tally);
        }
        let svc = o
            .svc
            .and_then(|i| Some((self.service_key(i)?, self.services.at(i)?)));
        if let Some((k, s)) = svc {
            f.service = Some(ServiceFacts {
                resp_h: k.dst,
                resp_p: k.port,
                proto: k.proto.as_str().to_string(),
                conns: n(s.get(CONNS, w, win, t)),
                failed: n(s.get(FAILED, w, win, t)),
                verified: n(s.get(VERIFIED, w, win, t)),
                packets: n(s.get(PACKETS, w, win, t)),
                auth_failures: n(s.get(AUTH, w, win, t)),
                stalled: n(s.get(STALLED, w, win, t)),
                flagged: flagged_of(s),
            });
        }
        f
    }

    fn service_key(&self, i: usize) -> Option<ServiceKey> {
        self.services.key_at(i).copied()
    }

    /// Forgets what no window can see any more.
    fn expire(&mut self, now: f64) {
        self.last_expiry = now;
        let longest = self.windows.0.iter().copied().fold(0.0, f64::max);
        let keep = now - longest - 1.0;
        self.sources.retain(|s| s.tally.last >= keep);
        self.services.retain(|s| s.last >= keep);
        // An open connection's snapshots come every few seconds while it
        // is active; one silent for longer than TCP's inactivity timeout
        // has ended without a final record reaching us.
        let open_keep = now - self.cfg.open_conn_secs;
        self.open.retain(|m| m.last >= open_keep);
        let known_keep = now - self.cfg.known_good_secs;
        self.known.retain(|&t| t >= known_keep);
    }

    pub fn stats(&self) -> EvidenceStats {
        EvidenceStats {
            sources: self.sources.len(),
            services: self.services.len(),
            open_conns: self.open.len(),
            known_good: self.known.len(),
            evicted_sources: self.sources.evicted,
            evicted_services: self.services.evicted,
            evicted_open_conns: self.open.evicted,
            evicted_known_good: self.known.evicted,
        }
    }

    /// The most heap this stage can hold (`bound.rs`).
    pub fn memory_bound(&self) -> super::bound::MemoryBound {
        super::bound::memory_bound(&self.cfg, self.windows.len(), self.labels.len())
    }

    /// Heap bytes held by the stage (tables and what their entries own).
    /// O(entries): for metrics and benches, not per record.
    pub fn memory_bytes(&self) -> usize {
        self.sources.table_bytes()
            + self
                .sources
                .values()
                .map(|s| s.tally.heap_bytes() + s.targets.heap_bytes())
                .sum::<usize>()
            + self.services.table_bytes()
            + self.services.values().map(Tally::heap_bytes).sum::<usize>()
            + self.open.table_bytes()
            + self
                .open
                .values()
                .map(|m| {
                    if m.labels.spilled() {
                        m.labels.capacity() * 2
                    } else {
                        0
                    }
                })
                .sum::<usize>()
            + self.known.table_bytes()
    }
}

#[cfg(test)]
#[path = "stage_tests.rs"]
mod tests;
