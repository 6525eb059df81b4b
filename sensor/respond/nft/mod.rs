//! The nftables enforcer: blocks and per-source rate limits in osprey's
//! own `inet` table (layout in `layout`), driven through `nft -j -f -`.
//!
//! Calls are synchronous (the responder runs them in `spawn_blocking`).
//! Every element carries its own timeout, so the kernel lifts a decision
//! on time even if osprey is gone; osprey also remembers each live
//! decision until it expires, so `reconcile` can put back what a
//! `nft flush ruleset` or a firewalld reload removed. A table left by an
//! earlier run is adopted with its elements, never recreated empty.
//!
//! The sets are interval sets, which refuse an element that overlaps one
//! already there: a host inside a range osprey holds is already enforced
//! (`apply` succeeds without a call), and a range over hosts osprey holds
//! replaces them (an aggregated IPv6 prefix). An overlap with an element
//! osprey does not know of is `NftError::Overlap`.

mod config;
mod error;
mod exec;
mod layout;
mod listing;
mod metrics;
mod worker;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use nftables::schema::{FlushObject, NfCmd, NfListObject, NfObject, Nftables};
use prometheus::Registry;
use tracing::{debug, info, warn};

pub use config::NftConfig;
pub use error::NftError;
pub use metrics::NftMetrics;
pub use worker::{NftWorker, Retrying, Snapshot};

use exec::Exec;
use layout::{check_rate, class_of, set_name, Class, Fam, Layout};
use listing::Listing;

use crate::respond::{Action, ActionKind, RateLimit};

/// What one `reconcile` pass found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileOutcome {
    /// The table, a set, the chain or its rules were missing and were
    /// re-created.
    pub rebuilt: bool,
    /// Live decisions that were missing from their set and were re-added.
    pub restored: usize,
    /// Decisions whose time was up, dropped from memory.
    pub forgotten: usize,
}

/// One decision osprey's sets hold, as `osprey decisions list` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Held {
    pub target: IpNet,
    /// `Block` or `RateLimit`.
    pub kind: ActionKind,
    /// Time left before the kernel drops the element.
    pub left: Duration,
}

/// Live decisions osprey holds, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActiveCounts {
    pub blocked: usize,
    pub rate_limited: usize,
}

/// osprey's nftables state and the decisions it enforces.
pub struct NftEnforcer {
    cfg: NftConfig,
    exec: Exec,
    metrics: NftMetrics,
    /// Live decisions and when they end.
    live: HashMap<(IpNet, Class), Instant>,
    /// Rate limits with sets and rules in the table; the default first.
    rates: Vec<RateLimit>,
}

impl NftEnforcer {
    /// Checks nft is there and permitted, then creates osprey's table or
    /// adopts the one an earlier run left (its elements keep their own
    /// timeouts and are remembered for `reconcile`).
    pub fn start(cfg: NftConfig, registry: &Registry) -> Result<NftEnforcer, NftError> {
        validate(&cfg)?;
        let metrics = NftMetrics::register(registry);
        let exec = Exec::new(&cfg, Some(metrics.clone()));
        let rates = vec![cfg.default_rate_limit];
        let mut e = NftEnforcer {
            cfg,
            exec,
            metrics,
            live: HashMap::new(),
            rates,
        };
        match e.list() {
            Ok(l) => {
                e.adopt(&l);
                info!(
                    table = %e.cfg.table,
                    elements = e.live.len(),
                    "adopting the nftables table of an earlier run"
                );
            }
            Err(NftError::NotFound { .. }) => {
                info!(table = %e.cfg.table, "creating nftables table")
            }
            Err(err) => return Err(e.fail("start", err)),
        }
        e.exec
            .run("start", &e.structure())
            .map_err(|err| e.fail("start", err))?;
        e.publish();
        Ok(e)
    }

    /// Enforces a block or rate limit on `action.target` for `action.ttl`.
    /// Applying the same decision again restarts its timeout. A dry-run
    /// action (`enforce == false`) is not enforced.
    pub fn apply(&mut self, action: &Action) -> Result<(), NftError> {
        if !action.enforce {
            debug!(rule = %action.rule, "dry-run action; not enforced");
            return Ok(());
        }
        let class = class_for(&action.kind)?;
        let mut ttl = ttl_secs(action.ttl)?;
        let net = action.target.trunc();
        let now = Instant::now();
        // An element of the same class that already covers the target
        // (an aggregated IPv6 prefix, a blocked range) enforces it: adding
        // the host would be refused as an overlap.
        if self
            .live
            .iter()
            .any(|((n, c), until)| *c == class && *n != net && *until > now && n.contains(&net))
        {
            debug!(target = %net, "already covered by a wider element");
            return Ok(());
        }
        // Elements the new one covers go in the same transaction, and the
        // wider element lasts as long as the longest of them.
        let inside: Vec<IpNet> = self
            .live
            .iter()
            .filter(|((n, c), until)| *c == class && *n != net && **until > now && net.contains(n))
            .map(|((n, _), until)| {
                let left = until.saturating_duration_since(now).as_secs();
                ttl = ttl.max(u32::try_from(left).unwrap_or(u32::MAX));
                *n
            })
            .collect();
        // The kernel's interval sets refuse the wider element while the
        // narrower ones are in, even when the same transaction deletes
        // them first: they go in a transaction of their own just before
        // (the hosts are unblocked for the milliseconds between).
        if !inside.is_empty() {
            let layout = Layout { cfg: &self.cfg };
            let del = batch(
                inside
                    .iter()
                    .map(|n| NfCmd::Delete(layout.element(&class, n, None)))
                    .collect(),
            );
            match self.exec.run("apply", &del) {
                Ok(_) | Err(NftError::NotFound { .. }) => {}
                Err(e) => return Err(self.fail("apply", e)),
            }
            for n in &inside {
                self.live.remove(&(*n, class));
            }
        }
        let result = match self
            .exec
            .run("apply", &self.element_batch(&class, &net, ttl))
        {
            // The table or a set vanished since the last reconcile:
            // rebuild and try once more.
            Err(NftError::NotFound { .. }) => {
                self.reconcile()?;
                self.exec
                    .run("apply", &self.element_batch(&class, &net, ttl))
            }
            r => r,
        };
        result.map_err(|e| self.fail("apply", e))?;
        if let Class::Rate(rl) = class {
            if !self.rates.contains(&rl) {
                self.rates.push(rl);
            }
        }
        let until = Instant::now() + Duration::from_secs(u64::from(ttl));
        self.live.insert((net, class), until);
        self.publish();
        Ok(())
    }

    /// Lifts a decision before its time. An element already expired or
    /// never added is success: the outcome asked for holds.
    pub fn remove(&mut self, target: &IpNet, kind: &ActionKind) -> Result<(), NftError> {
        let class = class_for(kind)?;
        let net = target.trunc();
        self.live.remove(&(net, class));
        let layout = Layout { cfg: &self.cfg };
        let batch = batch(vec![NfCmd::Delete(layout.element(&class, &net, None))]);
        let result = self.exec.run("remove", &batch);
        self.publish();
        match result {
            Ok(_) | Err(NftError::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fail("remove", e)),
        }
    }

    /// Lifts every decision whose range overlaps `net` (the address or
    /// range itself, ranges inside it, and a wider range around it): what
    /// an operator asks for when lifting an address is that it gets
    /// through again. Returns what was lifted; an element that fails to go
    /// is the error, and the ones before it stay lifted.
    pub fn remove_overlapping(&mut self, net: &IpNet) -> Result<Vec<Held>, NftError> {
        let net = net.trunc();
        let now = Instant::now();
        let hit: Vec<(IpNet, Class, Instant)> = self
            .live
            .iter()
            .filter(|((n, _), _)| n.contains(&net) || net.contains(n))
            .map(|((n, c), until)| (*n, *c, *until))
            .collect();
        let mut lifted = Vec::new();
        for (n, class, until) in hit {
            let kind = kind_of(&class);
            self.remove(&n, &kind)?;
            lifted.push(Held {
                target: n,
                kind,
                left: until.saturating_duration_since(now),
            });
        }
        Ok(lifted)
    }

    /// The decisions in force, longest-lasting first.
    pub fn held(&self) -> Vec<Held> {
        let now = Instant::now();
        let mut v: Vec<Held> = self
            .live
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|((n, c), until)| Held {
                target: *n,
                kind: kind_of(c),
                left: until.saturating_duration_since(now),
            })
            .collect();
        v.sort_by(|a, b| b.left.cmp(&a.left).then(a.target.cmp(&b.target)));
        v
    }

    /// Puts back whatever of osprey's table is gone: the table, sets,
    /// chain and rules, then every live decision missing from its set.
    /// Expired decisions are forgotten first.
    pub fn reconcile(&mut self) -> Result<ReconcileOutcome, NftError> {
        let now = Instant::now();
        let before = self.live.len();
        self.live.retain(|_, until| *until > now);
        let mut out = ReconcileOutcome {
            forgotten: before - self.live.len(),
            ..ReconcileOutcome::default()
        };
        let listing = match self.list() {
            Ok(l) => Some(l),
            Err(NftError::NotFound { .. }) => None,
            Err(e) => return Err(self.fail("reconcile", e)),
        };
        let empty = Listing::default();
        let l = listing.as_ref().unwrap_or(&empty);
        if listing.is_none() || !self.intact(l) {
            self.exec
                .run("reconcile", &self.structure())
                .map_err(|e| self.fail("reconcile", e))?;
            out.rebuilt = true;
        }
        let missing: Vec<(IpNet, Class, u32)> = self
            .live
            .iter()
            .filter(|((net, class), _)| {
                let name = set_name(class, Fam::of(net), &self.cfg.default_rate_limit);
                !l.sets
                    .get(&name)
                    .is_some_and(|els| els.iter().any(|(n, _)| n == net))
            })
            .map(|((net, class), until)| {
                let left = until.saturating_duration_since(now).as_secs_f64().ceil();
                (*net, *class, left as u32)
            })
            .collect();
        out.restored = self.restore(&missing);
        if out.rebuilt || out.restored > 0 {
            self.metrics.reconcile_repairs.inc();
            warn!(
                rebuilt = out.rebuilt,
                restored = out.restored,
                "osprey's nftables state had been removed; restored it"
            );
        }
        self.publish();
        Ok(out)
    }

    /// Live decisions by kind (expired ones not counted).
    pub fn active(&self) -> ActiveCounts {
        let now = Instant::now();
        let mut c = ActiveCounts::default();
        for ((_, class), until) in &self.live {
            if *until > now {
                match class {
                    Class::Block => c.blocked += 1,
                    Class::Rate(_) => c.rate_limited += 1,
                }
            }
        }
        c
    }

    /// The configuration in use (the caller reads the reconcile interval).
    pub fn config(&self) -> &NftConfig {
        &self.cfg
    }

    /// Deletes osprey's table and everything in it. False if there was none.
    pub fn cleanup(cfg: &NftConfig) -> Result<bool, NftError> {
        validate(cfg)?;
        let layout = Layout { cfg };
        let b = batch(vec![NfCmd::Delete(layout.table())]);
        match Exec::new(cfg, None).run("cleanup", &b) {
            Ok(_) => Ok(true),
            Err(NftError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn list(&self) -> Result<Listing, NftError> {
        let layout = Layout { cfg: &self.cfg };
        let out = self
            .exec
            .run("list", &batch(vec![NfCmd::List(layout.table())]))?;
        listing::parse("list", &out)
    }

    /// Remembers the elements of a leftover table and the rate limits its
    /// set names spell.
    fn adopt(&mut self, l: &Listing) {
        let now = Instant::now();
        for (name, elems) in &l.sets {
            let Some((class, _)) = class_of(name, &self.cfg.default_rate_limit) else {
                continue;
            };
            if let Class::Rate(rl) = class {
                if !self.rates.contains(&rl) && check_rate(&rl).is_ok() {
                    self.rates.push(rl);
                }
            }
            for (net, left) in elems {
                if let Some(s) = left {
                    let until = now + Duration::from_secs(u64::from(*s));
                    self.live.insert((*net, class), until);
                }
            }
        }
    }

    fn classes(&self) -> Vec<Class> {
        let mut c = vec![Class::Block];
        c.extend(self.rates.iter().map(|r| Class::Rate(*r)));
        c
    }

    /// Whether the listing has every set, the chain and exactly its rules.
    fn intact(&self, l: &Listing) -> bool {
        let classes = self.classes();
        let sets = classes.iter().all(|c| {
            [Fam::V4, Fam::V6].iter().all(|f| {
                l.sets
                    .contains_key(&set_name(c, *f, &self.cfg.default_rate_limit))
            })
        });
        sets && l.chain && l.rules == 2 * classes.len()
    }

    /// Table, sets, chain, and the chain's rules replaced in one
    /// transaction: adding what exists is a no-op, and existing sets keep
    /// their elements.
    fn structure(&self) -> Nftables<'_> {
        let layout = Layout { cfg: &self.cfg };
        let classes = self.classes();
        let mut cmds = vec![NfCmd::Add(layout.table())];
        for c in &classes {
            for f in [Fam::V4, Fam::V6] {
                cmds.push(NfCmd::Add(layout.set(c, f)));
            }
        }
        cmds.push(NfCmd::Add(layout.chain()));
        if let NfListObject::Chain(chain) = layout.chain() {
            cmds.push(NfCmd::Flush(FlushObject::Chain(chain)));
        }
        for c in &classes {
            for f in [Fam::V4, Fam::V6] {
                cmds.push(NfCmd::Add(layout.rule(c, f)));
            }
        }
        batch(cmds)
    }

    /// Adds `net` with a fresh timeout: add (a no-op if present), delete,
    /// add, in one transaction, because older kernels keep an existing
    /// element's old timeout on a plain add. A rate limit seen for the
    /// first time brings its sets and rules along.
    fn element_batch(&self, class: &Class, net: &IpNet, ttl: u32) -> Nftables<'_> {
        let layout = Layout { cfg: &self.cfg };
        let mut cmds = Vec::new();
        if let Class::Rate(rl) = class {
            if !self.rates.contains(rl) {
                for f in [Fam::V4, Fam::V6] {
                    cmds.push(NfCmd::Add(layout.set(class, f)));
                }
                for f in [Fam::V4, Fam::V6] {
                    cmds.push(NfCmd::Add(layout.rule(class, f)));
                }
            }
        }
        cmds.push(NfCmd::Add(layout.element(class, net, Some(ttl))));
        cmds.push(NfCmd::Delete(layout.element(class, net, None)));
        cmds.push(NfCmd::Add(layout.element(class, net, Some(ttl))));
        batch(cmds)
    }

    /// Re-adds missing decisions in one batch, or one by one if the batch
    /// is refused, so one bad element cannot keep the others out.
    fn restore(&self, missing: &[(IpNet, Class, u32)]) -> usize {
        if missing.is_empty() {
            return 0;
        }
        let layout = Layout { cfg: &self.cfg };
        let add = |(net, class, ttl): &(IpNet, Class, u32)| {
            NfCmd::Add(layout.element(class, net, Some(*ttl)))
        };
        let all = batch(missing.iter().map(add).collect());
        if self.exec.run("restore", &all).is_ok() {
            return missing.len();
        }
        let mut n = 0;
        for m in missing {
            match self.exec.run("restore", &batch(vec![add(m)])) {
                Ok(_) => n += 1,
                Err(e) => {
                    self.exec.count_error("restore");
                    warn!(error = %e, "could not restore a decision");
                }
            }
        }
        n
    }

    /// Sets the per-set gauges from the live decisions.
    fn publish(&self) {
        let d = &self.cfg.default_rate_limit;
        let mut counts: HashMap<String, i64> = HashMap::new();
        for c in self.classes() {
            for f in [Fam::V4, Fam::V6] {
                counts.insert(set_name(&c, f, d), 0);
            }
        }
        for (net, class) in self.live.keys() {
            *counts.entry(set_name(class, Fam::of(net), d)).or_default() += 1;
        }
        for (set, n) in counts {
            self.metrics
                .active_elements
                .with_label_values(&[set.as_str()])
                .set(n);
        }
    }

    fn fail(&self, op: &'static str, e: NftError) -> NftError {
        self.exec.count_error(op);
        warn!(op, error = %e, "nftables operation failed");
        e
    }
}

impl NftEnforcer {
    /// Deletes every element of osprey's sets that the allowlist covers
    /// (it contains an allowlisted address, or lies inside an allowlisted
    /// range) and forgets it, so that `reconcile` never puts it back.
    /// Reads the kernel's sets rather than osprey's memory: an element
    /// left by an earlier run, or added while the allowlist did not yet
    /// know the address, is caught too. The responder calls it right
    /// after `reconcile`, so an address allowlisted since it was blocked
    /// is free within one reconcile period. Returns how many were lifted.
    pub fn lift_allowlisted(
        &mut self,
        allowlist: &crate::respond::safety::Allowlist,
    ) -> Result<usize, NftError> {
        let listing = match self.list() {
            Ok(l) => l,
            Err(NftError::NotFound { .. }) => return Ok(0),
            Err(e) => return Err(self.fail("lift", e)),
        };
        let d = self.cfg.default_rate_limit;
        let mut covered: Vec<(IpNet, Class, crate::respond::safety::Entry)> = Vec::new();
        for (name, elems) in &listing.sets {
            let Some((class, _)) = class_of(name, &d) else {
                continue;
            };
            for (net, _) in elems {
                if let Some(why) = allowlist.covering(net) {
                    covered.push((*net, class, why));
                }
            }
        }
        if covered.is_empty() {
            return Ok(0);
        }
        let layout = Layout { cfg: &self.cfg };
        let delete =
            |(net, class, _): &(IpNet, Class, _)| NfCmd::Delete(layout.element(class, net, None));
        let all = batch(covered.iter().map(delete).collect());
        let lifted: Vec<&(IpNet, Class, _)> = if self.exec.run("lift", &all).is_ok() {
            covered.iter().collect()
        } else {
            // One by one, so one refused delete cannot keep the rest in;
            // an element that expired meanwhile is gone as asked.
            covered
                .iter()
                .filter(|c| match self.exec.run("lift", &batch(vec![delete(c)])) {
                    Ok(_) | Err(NftError::NotFound { .. }) => true,
                    Err(e) => {
                        self.exec.count_error("lift");
                        warn!(target = %c.0, error = %e, "could not lift an allowlisted element");
                        false
                    }
                })
                .collect()
        };
        let n = lifted.len();
        self.metrics.allowlist_lifted.inc_by(n as u64);
        for (net, class, why) in &lifted {
            self.live.remove(&(*net, *class));
            warn!(
                target = %net,
                set = %set_name(class, Fam::of(net), &d),
                reason = %format!("{} is allowlisted ({why})", net),
                "lifted an nftables decision on an allowlisted address"
            );
        }
        self.publish();
        Ok(n)
    }
}

fn batch(cmds: Vec<NfCmd<'_>>) -> Nftables<'_> {
    Nftables {
        objects: cmds.into_iter().map(NfObject::CmdObject).collect(),
    }
}

fn kind_of(class: &Class) -> ActionKind {
    match class {
        Class::Block => ActionKind::Block,
        Class::Rate(rl) => ActionKind::RateLimit(*rl),
    }
}

fn class_for(kind: &ActionKind) -> Result<Class, NftError> {
    match kind {
        ActionKind::Block => Ok(Class::Block),
        ActionKind::RateLimit(rl) => {
            check_rate(rl)?;
            Ok(Class::Rate(*rl))
        }
        other => Err(NftError::Invalid(format!(
            "`{}` is not an nftables action",
            other.name()
        ))),
    }
}

/// Whole seconds, rounded up (nft's timeouts are whole seconds); every
/// decision must end.
fn ttl_secs(ttl: Duration) -> Result<u32, NftError> {
    if ttl.is_zero() {
        return Err(NftError::Invalid("an nftables decision needs a TTL".into()));
    }
    let s = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    u32::try_from(s).map_err(|_| NftError::Invalid(format!("TTL too long: {ttl:?}")))
}

/// Names go to nft as JSON strings (no shell), but a name nft would
/// reject is better refused at start-up with the field named.
fn validate(cfg: &NftConfig) -> Result<(), NftError> {
    let ident = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if !ident(&cfg.table) {
        return Err(NftError::Invalid(format!(
            "table name {:?}: letters, digits, '_' and '-' only",
            cfg.table
        )));
    }
    if let Some(ns) = &cfg.netns {
        if !ident(ns) {
            return Err(NftError::Invalid(format!("netns name {ns:?}")));
        }
    }
    if cfg.nft_path.is_empty() {
        return Err(NftError::Invalid("nft_path is empty".into()));
    }
    check_rate(&cfg.default_rate_limit)
}
